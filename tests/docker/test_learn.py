"""docker/egress-learn: an allowlist learned in report mode, then enforced.

The scenario runs as it is against a stand-in internet (conftest.Internet),
with its config directory copied to a temporary one the test edits. The
workload (workload.sh) fetches its URLs every two seconds through both
doors while the listeners have `action: report`; the test reads `gatekeeper
observed` from inside the gatekeeper container (the image has no shell:
`docker exec ... /gatekeeper observed`), pastes the suggested entries into
the config, switches the listeners to `action: enforce` and reloads with
SIGHUP. The same workload then still gets through, a new name is refused,
and the observed table has kept what it learned. In report mode, a
private, loopback or metadata target is refused all the same, never let
through and never suggested."""

import json
import os
import re
import shutil
import tempfile

import pytest

from conftest import (REPO, TOOLS_IMAGE, Internet, Scenario, address, admin_get, curl, docker,
                      wait_until)

# service -> (last octet on the stand-in internet, the name it plays)
HOSTS = {
    "github-com": (10, "api.github.com"),
    "pypi-org": (11, "pypi.org"),
    "pythonhosted-org": (13, "files.pythonhosted.org"),
    "canary": (66, "evil.example"),
}
SUBNET = "93.184.219"  # one per scenario that may run at once (test_egress has .216-.218)

# The workload's URLs: two by name (the aliases of the compose file), two by
# CONNECT. The stand-in servers serve /name.txt with their own name.
URLS = ["https://api.github.com/name.txt", "https://pypi.org/name.txt",
        "proxy:https://files.pythonhosted.org/name.txt", "proxy:https://api.github.com/name.txt"]
PROXY = ("-x", "http://gatekeeper:3128")

# What report mode must suggest: egress-tls starts with api.github.com.
LEARNED = {"egress-tls": ["pypi.org"],
           "egress-proxy": ["api.github.com:443", "files.pythonhosted.org:443"]}

# Inside names: never let through, never suggested.
INSIDE = ("metadata.example", "intranet.example", "169.254.169.254", "127.0.0.1")


@pytest.fixture(scope="module")
def learn(image, tools_image):
    net = Internet(tools_image, "egress", HOSTS, SUBNET)
    services = net.services({"api.github.com": net.ip(10), "pypi.org": net.ip(11),
                             "files.pythonhosted.org": net.ip(13), "evil.example": net.ip(66),
                             # a name the cloud metadata address answers
                             "metadata.example": "169.254.169.254"})
    # The config the test edits: a copy, readable by the image's user (65532).
    conf = tempfile.mkdtemp(prefix="gk-learn-")
    os.chmod(conf, 0o755)
    shutil.copy(os.path.join(REPO, "docker", "egress-learn", "config", "gatekeeper.yaml"), conf)
    os.chmod(os.path.join(conf, "gatekeeper.yaml"), 0o644)
    services.update({
        "app": {"image": TOOLS_IMAGE,
                "environment": {"URLS": " ".join(URLS), "CURL_OPTS": "-k", "EVERY": "2"}},
        "gatekeeper": {"image": image, "volumes": ["%s:/etc/gatekeeper:ro" % conf]},
        # A service on the private side that the gateway itself could reach:
        # report mode must not let the app get to it through the gateway.
        "intranet": {"image": tools_image, "networks": ["private"], "command": [
            "sh", "-c", 'cd /tmp && echo intranet > name.txt && openssl req -x509 -newkey '
            'rsa:2048 -nodes -subj "/CN=intranet" -keyout k.pem -out c.pem -days 2 2>/dev/null '
            "&& exec openssl s_server -accept 443 -cert c.pem -key k.pem -WWW"]},
    })
    override = {"version": "3.8", "services": services, "networks": net.network_override()}
    s = Scenario("egress-learn", override, env={"EGRESS_NAMESERVERS": net.nameserver()})
    s.conf = os.path.join(conf, "gatekeeper.yaml")
    try:
        s.up()
        net.point(s, "intranet.example", address(s.container("intranet"), s.network("private")))
        yield s, net
    finally:
        s.down()
        shutil.rmtree(conf, ignore_errors=True)


def rounds(s):
    """The workload's finished rounds: {round: (ok, failed)}."""
    return {int(n): (int(ok), int(fail)) for n, ok, fail in
            re.findall(r"^round=(\d+) done ok=(\d+) fail=(\d+)$", s.logs("app"), re.M)}


def workload_passes(s, after=0, timeout=60):
    """Waits for a round of the workload, begun after round `after`, in
    which every fetch succeeded; returns its number."""
    def passed():
        done = [n for n, (ok, fail) in rounds(s).items()
                if n > after and ok == len(URLS) and fail == 0]
        return min(done) if done else None
    return wait_until(passed, timeout=timeout, what="a round of the workload all through "
                      "after round %d (%s)" % (after, s.logs("app")[-1500:]))


def last_round(s):
    return max(rounds(s) or {0: None})


def observed(s, *args):
    """`gatekeeper observed` run in the gatekeeper container: its stdout."""
    r = s.exec("gatekeeper", "/gatekeeper", "observed", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def observed_json(s):
    return json.loads(observed(s, "--format", "json"))


def entries(block):
    """The allow entries of a `gatekeeper observed` block, comments dropped."""
    return [line[4:].split("  #")[0].strip() for line in block.splitlines()
            if line.startswith("  - ")]


def access(logs, *needles):
    return [line for line in logs.splitlines()
            if "msg=access" in line and all(n in line for n in needles)]


def enforce(config, listener, block):
    """config with the learned block's entries appended to the allow list of
    listener (the last key of its item), and its action switched to enforce:
    what a person does with the output."""
    lines = config.rstrip("\n").split("\n")
    start = lines.index("  - name: %s" % listener)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  - name:")),
               len(lines))
    while not lines[end - 1].strip() or lines[end - 1].startswith("  #"):
        end -= 1  # blank lines and the next item's comment
    item = lines[start:end]
    assert "    action: report" in item and item[-1].startswith(("    allow:", "      - ")), item
    item[item.index("    action: report")] = "    action: enforce"
    if item[-1] == "    allow: []":
        item[-1] = "    allow:"
    item += ["    " + line for line in block.splitlines() if line.startswith("  - ")]
    return "\n".join(lines[:start] + item + lines[end:]) + "\n"


def test_report_mode_lets_the_workload_through_and_learns_it(learn):
    s, net = learn
    gk = s.container("gatekeeper")
    app_ip = address(s.container("app"), s.network("private"))
    workload_passes(s, after=workload_passes(s))  # two rounds: the first one's lines all in
    assert 'got="pypi.org"' in s.logs("app") and 'got="files.pythonhosted.org"' in s.logs("app")

    # Let through, and said so: decision=would_deny with the reason it would
    # have had and how it really ended. The seeded name is a plain allow.
    logs = s.logs("gatekeeper")
    for listener, name in (("egress-tls", "pypi.org"), ("egress-proxy", "files.pythonhosted.org"),
                           ("egress-proxy", "api.github.com")):
        lines = access(logs, "listener=%s" % listener, "name=%s " % name,
                       "client=%s:" % app_ip)
        assert lines and all("decision=would_deny" in line and "reason=not_allowed" in line
                             and " end=" in line for line in lines), (listener, name, lines)
    seeded = access(logs, "listener=egress-tls", "name=api.github.com ")
    assert seeded and all("decision=allow" in line for line in seeded), seeded

    # The observed table, read from the container as JSON: one entry per
    # listener, name, port and source, the workload's address as source.
    table = observed_json(s)
    seen = sorted((o["listener"], o["mode"], o["name"], o["port"], o["source"], o["reason"])
                  for o in table)
    assert seen == sorted([
        ("egress-proxy", "connect", "api.github.com", 443, app_ip, "not_allowed"),
        ("egress-proxy", "connect", "files.pythonhosted.org", 443, app_ip, "not_allowed"),
        ("egress-tls", "tls", "pypi.org", 443, app_ip, "not_allowed")]), table
    assert all(o["count"] >= 1 and o["first_seen"] <= o["last_seen"] for o in table), table

    # ... and as the allow blocks to paste, one per listener.
    for listener, want in LEARNED.items():
        block = observed(s, "--listener", listener)
        assert block.startswith("# listener %s (" % listener), block
        assert "allow:\n" in block and entries(block) == want, block
        assert "from %s" % app_ip in block, block
    both = observed(s)
    assert both.count("# listener ") == 2 and both.count("allow:\n") == 2, both

    metrics = admin_get(gk, "/metrics")
    m = re.search(r'^gatekeeper_would_deny_total\{listener="egress-proxy"\} (\d+)', metrics, re.M)
    assert m and int(m.group(1)) >= 2, metrics[-3000:]
    assert re.search(r"^gatekeeper_observed_entries 3$", metrics, re.M), metrics[-3000:]


def test_report_mode_still_refuses_inside_addresses(learn):
    """What the address guard refuses is a real refusal in report mode too
    (decision=deny reason=address_denied), on both doors, and it is not
    suggested: the metadata address, a container on the private side (by
    name and by address), the gateway's own loopback."""
    s, net = learn
    intranet = address(s.container("intranet"), s.network("private"))
    gw = address(s.container("gatekeeper"), s.network("private"))
    before = observed_json(s)

    for url, extra in (("http://169.254.169.254/latest/meta-data/", ("-p",)),
                       ("https://metadata.example/name.txt", ()),
                       ("https://intranet.example/name.txt", ()),
                       ("https://%s/name.txt" % intranet, ()),
                       ("http://127.0.0.1:9090/observed", ("-p",))):
        code, body, verbose = curl(s, "app", url, *PROXY, *extra)
        assert code != 0 and "< HTTP/1.1 403" in verbose, (url, verbose)
        assert "X-Gatekeeper-Reason: address_denied" in verbose, (url, verbose)
        assert "intranet" not in body and "[" not in body, (url, body)
    for name in ("metadata.example", "intranet.example"):
        code, body, verbose = curl(s, "app", "https://%s/name.txt" % name, "--resolve",
                                   "%s:443:%s" % (name, gw))
        assert code != 0 and "intranet" not in body, (name, verbose)
        assert "alert access denied" in verbose, (name, verbose)  # address_denied's alert

    refused = [("egress-proxy", n) for n in INSIDE + (intranet,)] + \
        [("egress-tls", "metadata.example"), ("egress-tls", "intranet.example")]
    for listener, name in refused:
        lines = wait_until(lambda: access(s.logs("gatekeeper"), "listener=%s" % listener,
                                          "name=%s " % name), timeout=10,
                           what="the access line of %s on %s" % (name, listener))
        assert all("decision=deny" in line and "reason=address_denied" in line
                   for line in lines), (listener, name, lines)
    inside = [line for line in s.logs("gatekeeper").splitlines()
              if any("name=%s " % n in line for n in INSIDE + (intranet,))]
    assert inside and not [line for line in inside if "would_deny" in line], inside
    # Nobody reached the private side, and nothing of it is suggested.
    assert "FILE:" not in s.logs("intranet"), s.logs("intranet")
    after = observed_json(s)
    assert not [o for o in after if o["name"] in INSIDE + (intranet,)], after
    assert {(o["listener"], o["name"]) for o in after} == \
        {(o["listener"], o["name"]) for o in before}, (before, after)
    suggested = observed(s)
    assert sorted(entries(suggested)) == sorted(sum(LEARNED.values(), [])), suggested


def test_learned_list_enforced_after_a_reload(learn):
    s, net = learn
    gk = s.container("gatekeeper")
    learned = {listener: observed(s, "--listener", listener) for listener in LEARNED}
    with open(s.conf) as f:
        config = f.read()
    for listener, block in learned.items():
        config = enforce(config, listener, block)
    # A new file in the mounted directory (as an editor writes it).
    with open(s.conf + ".new", "w") as f:
        f.write(config)
    os.chmod(s.conf + ".new", 0o644)
    os.replace(s.conf + ".new", s.conf)
    check = s.exec("gatekeeper", "/gatekeeper", "-t", "-c", "/etc/gatekeeper/gatekeeper.yaml")
    assert check.returncode == 0, config + check.stdout + check.stderr

    reloads = s.logs("gatekeeper").count("msg=reloaded")
    round_at_reload = last_round(s)
    docker("kill", "-s", "HUP", gk)
    wait_until(lambda: s.logs("gatekeeper").count("msg=reloaded") > reloads, timeout=30,
               what="the reload")
    logs = s.logs("gatekeeper")
    assert "reload failed" not in logs, logs[-3000:]
    assert "listeners=2" in logs.split("msg=reloaded")[-1].split("\n")[0], logs[-2000:]

    # The same workload, unchanged and not restarted, still gets through:
    # now as decision=allow, by the rules just pasted.
    passed = workload_passes(s, after=round_at_reload + 1)
    mark = len(s.logs("gatekeeper"))
    workload_passes(s, after=passed + 1)
    table = observed_json(s)
    fresh = s.logs("gatekeeper")[mark:]
    for listener, name, rule in (("egress-tls", "api.github.com", "api.github.com"),
                                 ("egress-tls", "pypi.org", "pypi.org"),
                                 ("egress-proxy", "api.github.com", "api.github.com:443"),
                                 ("egress-proxy", "files.pythonhosted.org",
                                  "files.pythonhosted.org:443")):
        lines = access(fresh, "listener=%s" % listener, "name=%s " % name)
        assert lines and all("decision=allow" in line and "rule=%s " % rule in line
                             for line in lines), (listener, name, lines)
    assert "would_deny" not in fresh, fresh

    # A new name is refused on both doors, and so is a learned name on
    # another port: enforce means the list.
    code, _, verbose = curl(s, "app", "https://evil.example/name.txt", *PROXY)
    assert code != 0 and "< HTTP/1.1 403" in verbose, verbose
    assert "X-Gatekeeper-Reason: not_allowed" in verbose, verbose
    code, _, verbose = curl(s, "app", "https://api.github.com:8443/name.txt", *PROXY)
    assert code != 0 and "X-Gatekeeper-Reason: not_allowed" in verbose, verbose
    gw = address(gk, s.network("private"))
    code, _, verbose = curl(s, "app", "https://evil.example/name.txt", "--resolve",
                            "evil.example:443:" + gw)
    assert code != 0 and "unrecognized name" in verbose, verbose
    for listener in ("egress-proxy", "egress-tls"):
        lines = wait_until(lambda: access(s.logs("gatekeeper"), "listener=%s" % listener,
                                          "name=evil.example "), timeout=10,
                           what="evil.example refused on %s" % listener)
        assert all("decision=deny" in line and "reason=not_allowed" in line for line in lines), \
            lines
    logs = s.logs("gatekeeper")
    assert access(logs, "listener=egress-proxy", "name=api.github.com ", "port=8443",
                  "decision=deny", "reason=not_allowed"), logs[-3000:]
    assert s.logs("canary").count("FILE:") == 0

    # The observed table survived the reload, and enforce mode adds nothing.
    assert observed_json(s) == table
    assert {(o["listener"], o["name"]) for o in table} == \
        {("egress-tls", "pypi.org"), ("egress-proxy", "api.github.com"),
         ("egress-proxy", "files.pythonhosted.org")}, table
    after = {listener: entries(observed(s, "--listener", listener)) for listener in LEARNED}
    assert after == LEARNED, after
