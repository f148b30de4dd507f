"""The egress scenarios of docker/ (egress-tunnel, egress-gateway,
egress-sources), run with docker-compose as they are, against a stand-in
internet (conftest.Internet): the scenario's outside network becomes an
internal bridge with its own addresses, a dnsmasq the test controls, and TLS
servers playing the allowed domains plus a canary that must never be
reached."""

import pytest

from conftest import (LABEL, TOOLS_IMAGE, Internet, Scenario, address, curl, docker,
                      jailed_audit, wait_until)

# service -> (last octet on the stand-in internet, the name it plays)
HOSTS = {
    "github-com": (10, "api.github.com"),
    "github-com-moved": (12, "api.github.com (moved)"),
    "pypi-org": (11, "pypi.org"),
    "pythonhosted-org": (13, "files.pythonhosted.org"),
    "canary": (66, "evil.example"),
}


def records(net):
    return {"api.github.com": net.ip(10), "pypi.org": net.ip(11),
            "files.pythonhosted.org": net.ip(13), "evil.example": net.ip(66)}


def fetch(scenario, url, *args, client="app"):
    code, body, _ = curl(scenario, client, url, *args)
    return body.strip() if code == 0 else None


def canary_hits(scenario):
    return scenario.logs("canary").count("FILE:")


def egress_scenario(name, gatekeepers, image, tools_image, subnet, clients=("app",),
                    docker_dns=False):
    """Run docker/<name> against a stand-in internet on subnet: each of
    clients is a curl container, each service in gatekeepers runs the local
    image, and EGRESS_NAMESERVERS points at the internet's dnsmasq. With
    docker_dns, the gatekeepers keep Docker's DNS as their resolver, and it
    forwards outside names to that dnsmasq (compose `dns:`)."""
    net = Internet(tools_image, "egress", HOSTS, subnet)
    services = net.services(records(net))
    services.update({c: {"image": TOOLS_IMAGE, "entrypoint": ["sleep", "infinity"]}
                     for c in clients})
    services.update({g: dict({"image": image},
                             **({"dns": [net.nameserver()]} if docker_dns else {}))
                     for g in gatekeepers})
    override = {"version": "3.8", "services": services, "networks": net.network_override()}
    s = Scenario(name, override, env={"EGRESS_NAMESERVERS": net.nameserver()})
    try:
        s.up()
        yield s, net
    finally:
        s.down()


# One scenario per module: each is started once and its tests run in order
# (the later ones re-point names); each internet has its own subnet, as both
# may be up at once.
@pytest.fixture(scope="module")
def tunnels(image, tools_image):
    yield from egress_scenario("egress-tunnel", ["github", "pypi"], image, tools_image,
                               "93.184.216")


def test_tunnel_reaches_only_its_pinned_name(tunnels, image):
    s, net = tunnels
    assert wait_until(lambda: fetch(s, "https://api.github.com/name.txt"),
                      what="api.github.com through its tunnel") == "api.github.com"
    assert fetch(s, "https://pypi.org/name.txt") == "pypi.org"
    # TLS passes through untouched: the certificate is the server's own
    code, _, verbose = curl(s, "app", "https://api.github.com/name.txt")
    assert code == 0 and "CN=api.github.com" in verbose, verbose

    # Any other name: no DNS for it on the private network, no route to its
    # address, and the tunnels' outside addresses cannot be dialled directly.
    assert fetch(s, "https://evil.example/name.txt") is None
    audit = jailed_audit(image, s.network("private"),
                         "--expect-open", "api.github.com:443",
                         "--expect-open", "pypi.org:443",
                         "--expect-closed", "%s:443" % net.ip(10),
                         "--expect-closed", "%s:443" % net.ip(66),
                         "--expect-closed", "%s:53" % net.nameserver(),
                         "--expect-no-dns", "evil.example",
                         "--expect-no-dns", "example.com")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "7 checks, 7 as expected, 0 not" in audit.stdout, audit.stdout

    # A tunnel pins its name: whatever the client says (SNI, Host), it goes
    # to api.github.com and nowhere else.
    forced = fetch(s, "https://evil.example/name.txt", "--resolve",
                   "evil.example:443:%s" % s.exec("app", "getent", "hosts", "api.github.com")
                   .stdout.split()[0])
    assert forced == "api.github.com"
    assert canary_hits(s) == 0
    logs = s.logs("github")
    assert "decision=allow" in logs and "upstream=api.github.com" in logs, logs[-2000:]


def test_tunnel_follows_a_moved_name_and_refuses_a_poisoned_one(tunnels):
    s, net = tunnels
    wait_until(lambda: fetch(s, "https://api.github.com/name.txt"), what="first answer")
    # The name moves (a CDN, a failover): followed without a restart.
    net.point(s, "api.github.com", net.ip(12))
    assert wait_until(lambda: fetch(s, "https://api.github.com/name.txt") == "api.github.com (moved)",
                      timeout=90, what="the moved address")
    # A poisoned answer pointing inwards (a private address) is refused, and
    # the other tunnel is not affected.
    wait_until(lambda: fetch(s, "https://pypi.org/name.txt"), what="pypi")
    net.point(s, "pypi.org", "10.0.0.5")
    wait_until(lambda: fetch(s, "https://pypi.org/name.txt") is None, timeout=90,
               what="the poisoned answer refused")
    logs = s.logs("pypi")
    assert "address_denied" in logs or "no_address" in logs, logs[-3000:]
    assert fetch(s, "https://api.github.com/name.txt") == "api.github.com (moved)"
    assert canary_hits(s) == 0


@pytest.fixture(scope="module")
def gateway(image, tools_image):
    yield from egress_scenario("egress-gateway", ["gatekeeper"], image, tools_image,
                               "93.184.217")


PROXY = ("-x", "http://gatekeeper:3128")


def test_gateway_allows_its_list_by_name_and_by_proxy(gateway, image):
    s, net = gateway
    # by name: the alias brings the app to the gateway, the SNI decides
    assert wait_until(lambda: fetch(s, "https://api.github.com/name.txt"),
                      what="api.github.com by SNI") == "api.github.com"
    assert fetch(s, "https://pypi.org/name.txt") == "pypi.org"
    assert fetch(s, "https://files.pythonhosted.org/name.txt") == "files.pythonhosted.org"
    code, _, verbose = curl(s, "app", "https://pypi.org/name.txt")
    assert code == 0 and "CN=pypi.org" in verbose, verbose
    # by proxy: CONNECT, the same list (a wildcard entry needs no alias)
    assert fetch(s, "https://api.github.com/name.txt", *PROXY) == "api.github.com"
    assert fetch(s, "https://files.pythonhosted.org/name.txt", *PROXY) == "files.pythonhosted.org"

    # Refused: a name off the list, by SNI (sent to the gateway's address)
    # and by CONNECT, and an address as CONNECT target.
    gw = s.exec("app", "getent", "hosts", "api.github.com").stdout.split()[0]
    assert fetch(s, "https://evil.example/name.txt", "--resolve", "evil.example:443:" + gw) is None
    code, _, verbose = curl(s, "app", "https://evil.example/name.txt", *PROXY)
    assert code != 0 and "403" in verbose, verbose
    code, _, verbose = curl(s, "app", "https://%s/name.txt" % net.ip(66), *PROXY)
    assert code != 0 and "403" in verbose, verbose
    assert canary_hits(s) == 0
    logs = s.logs("gatekeeper")
    assert "listener=egress-tls" in logs and "decision=deny" in logs, logs[-3000:]
    assert "not_allowed" in logs, logs[-3000:]

    audit = jailed_audit(image, s.network("private"),
                         "--expect-open", "api.github.com:443",
                         "--expect-open", "gatekeeper:3128",
                         "--expect-closed", "%s:443" % net.ip(10),
                         "--expect-closed", "%s:443" % net.ip(66),
                         "--expect-no-dns", "evil.example")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "5 checks, 5 as expected, 0 not" in audit.stdout, audit.stdout


def test_gateway_refuses_an_answer_pointing_inwards(gateway):
    """DNS rebinding: an allowed name whose answer turns to the cloud
    metadata address is refused on both doors; the other names still work."""
    s, net = gateway
    wait_until(lambda: fetch(s, "https://pypi.org/name.txt"), what="pypi by SNI")
    net.point(s, "pypi.org", "169.254.169.254")
    wait_until(lambda: fetch(s, "https://pypi.org/name.txt") is None, timeout=90,
               what="the rebound answer refused by SNI")
    code, _, verbose = curl(s, "app", "https://pypi.org/name.txt", *PROXY)
    assert code != 0 and "403" in verbose, verbose
    assert "address_denied" in s.logs("gatekeeper")
    assert fetch(s, "https://api.github.com/name.txt") == "api.github.com"
    assert fetch(s, "https://api.github.com/name.txt", *PROXY) == "api.github.com"


@pytest.fixture(scope="module")
def by_source(image, tools_image):
    yield from egress_scenario("egress-sources", ["gatekeeper"], image, tools_image,
                               "93.184.218", clients=("agent", "builder"), docker_dns=True)


def source_denied(s, client, url):
    """client's CONNECT for url is refused because the name is another's,
    and logged with client's address."""
    code, _, verbose = curl(s, client, url)
    assert code != 0, verbose
    assert "< HTTP/1.1 403" in verbose and "X-Gatekeeper-Reason: source_denied" in verbose, verbose
    ip = address(s.container(client), s.network("private"))
    assert wait_until(lambda: [line for line in s.logs("gatekeeper").splitlines()
                               if "msg=access" in line and "reason=source_denied" in line
                               and "decision=deny" in line and "client=%s:" % ip in line],
                      timeout=10, what="source_denied for %s (%s) logged" % (client, ip))


def test_sources_give_each_workload_its_own_names(by_source):
    s, net = by_source
    # Each workload reaches its own names through the proxy (HTTPS_PROXY in
    # the compose file; the server's own certificate comes back).
    assert wait_until(lambda: fetch(s, "https://api.github.com/name.txt", client="agent"),
                      what="api.github.com for the agent") == "api.github.com"
    code, _, verbose = curl(s, "agent", "https://api.github.com/name.txt")
    assert code == 0 and "CN=api.github.com" in verbose and "CONNECT api.github.com:443" in verbose
    assert wait_until(lambda: fetch(s, "https://pypi.org/name.txt", client="builder"),
                      what="pypi.org for the builder") == "pypi.org"
    assert fetch(s, "https://files.pythonhosted.org/name.txt", client="builder") == \
        "files.pythonhosted.org"

    # ... and is refused the other's, which the other still reaches.
    source_denied(s, "agent", "https://pypi.org/name.txt")
    source_denied(s, "agent", "https://files.pythonhosted.org/name.txt")
    source_denied(s, "builder", "https://api.github.com/name.txt")
    assert fetch(s, "https://api.github.com/name.txt", client="agent") == "api.github.com"
    assert fetch(s, "https://pypi.org/name.txt", client="builder") == "pypi.org"

    # A name on no entry is not a source question: not_allowed, for both.
    for client in ("agent", "builder"):
        code, _, verbose = curl(s, client, "https://evil.example/name.txt")
        assert code != 0 and "X-Gatekeeper-Reason: not_allowed" in verbose, verbose
    assert canary_hits(s) == 0
    logs = s.logs("gatekeeper")
    agent_ip = address(s.container("agent"), s.network("private"))
    assert [line for line in logs.splitlines() if "decision=allow" in line
            and "client=%s:" % agent_ip in line and "api.github.com" in line], logs[-3000:]


def test_sources_refuse_every_other_container(by_source):
    """A container on `private` that the allowlist does not name reaches
    none of the names, whatever it asks."""
    s, net = by_source
    r = docker("run", "--rm", "--label", LABEL, "--network", s.network("private"), TOOLS_IMAGE,
               "sh", "-c", "for n in api.github.com pypi.org files.pythonhosted.org; do "
               "curl -sSkv --max-time 10 -x http://gatekeeper:3128 https://$n/name.txt "
               "2>&1 | grep -E '^< (HTTP/|X-Gatekeeper-Reason)'; done",
               check=False, timeout=120)
    lines = r.stdout.replace("\r", "").split("\n")
    assert lines.count("< X-Gatekeeper-Reason: source_denied") == 3, r.stdout + r.stderr
    assert not [line for line in lines if line.startswith("< HTTP/1.1 200")], r.stdout
    assert canary_hits(s) == 0


def test_sources_workloads_cannot_forge_addresses(by_source):
    """cap_drop: [NET_RAW] in the compose file: neither workload holds the
    capability that would let it pass for the other."""
    s, _ = by_source
    for client in ("agent", "builder"):
        status = s.exec(client, "cat", "/proc/1/status").stdout
        eff = int([line for line in status.splitlines() if line.startswith("CapEff:")][0]
                  .split()[1], 16)
        assert not eff & (1 << 13), "%s holds CAP_NET_RAW: %s" % (client, status)


def test_sources_follow_a_restarted_workload(by_source):
    """The agent restarts with a new address (another container holds its
    old one): it reaches its name again after a refresh, the old address
    does not, and the builder is refused all along."""
    s, net = by_source
    private = s.network("private")
    agent = s.container("agent")
    old = address(agent, private)
    s.compose("stop", "-t", "1", "agent")
    holder = docker("run", "-d", "--label", LABEL, "--network", private, TOOLS_IMAGE,
                    "sleep", "infinity").stdout.strip()
    try:
        s.compose("start", "agent")
        new = address(agent, private)
        assert new and new != old, (old, new)
        assert wait_until(lambda: fetch(s, "https://api.github.com/name.txt", client="agent"),
                          timeout=90, what="the restarted agent (%s) let through" % new) == \
            "api.github.com"
        if address(holder, private) == old:
            r = docker("exec", holder, "curl", "-sSkv", "--max-time", "10", "-x",
                       "http://gatekeeper:3128", "https://api.github.com/name.txt",
                       check=False, timeout=60)
            assert r.returncode != 0 and "X-Gatekeeper-Reason: source_denied" in r.stderr, \
                r.stderr
        source_denied(s, "builder", "https://api.github.com/name.txt")
    finally:
        docker("rm", "-f", holder, check=False)
