"""docker/egress-dns, run with docker-compose as it is, against the stand-in
internet of test_egress (conftest.Internet): the app's `dns:` is the
gatekeeper's fixed address, whose DNS door answers the allowed names
(a wildcard among them) with that address; the TLS listener there checks
the SNI and relays to the server playing the name. Compose service names
still resolve through Docker's DNS, and every other name is NXDOMAIN,
never forwarded: the stand-in's resolver never hears of it and its canary
is never reached."""

import re

import pytest

from conftest import (LABEL, TOOLS_IMAGE, Internet, Scenario, address, admin_get, curl, docker,
                      wait_until)

DOOR = "10.53.0.53"  # the gatekeeper's ipv4_address on `private` (docker-compose.yml)
SUBNET = "93.184.220"  # one per scenario that may run at once

# service -> (last octet on the stand-in internet, the name it plays)
HOSTS = {
    "github-com": (10, "api.github.com"),
    "pypi-org": (11, "pypi.org"),
    "pythonhosted-org": (13, "files.pythonhosted.org"),
    "canary": (66, "evil.example"),
}


def records(net):
    return {"api.github.com": net.ip(10), "pypi.org": net.ip(11),
            "files.pythonhosted.org": net.ip(13), "evil.example": net.ip(66)}


def engine_version():
    v = docker("version", "-f", "{{.Server.Version}}").stdout.strip()
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", v)
    return v, tuple(int(x) for x in m.groups()) if m else ()


@pytest.fixture(scope="module")
def door(image, tools_image, whoami_image):
    v, t = engine_version()
    if (26, 0, 0) <= t < (26, 1, 3):
        pytest.skip("Docker %s does not forward to a `dns:` server on an internal network "
                    "(moby#47822, fixed in 26.1.3)" % v)
    net = Internet(tools_image, "egress", HOSTS, SUBNET)
    services = net.services(records(net))
    services.update({
        # The app keeps the file's `dns:`; only its image is swapped (bash, curl, getent).
        "app": {"image": TOOLS_IMAGE, "entrypoint": ["sleep", "infinity"]},
        # traefik/whoami's part, played by the project's whoami.
        "api": {"image": whoami_image, "user": "0:0",
                "entrypoint": ["/whoami", "-l", "0.0.0.0:80", "-n", "api"]},
        "gatekeeper": {"image": image},
    })
    override = {"version": "3.8", "services": services, "networks": net.network_override()}
    s = Scenario("egress-dns", override, env={"EGRESS_NAMESERVERS": net.nameserver()})
    try:
        s.up()
        yield s, net
    finally:
        s.down()


def fetch(s, url, *args):
    code, body, _ = curl(s, "app", url, *args)
    return body.strip() if code == 0 else None


def getent(s, name, service="app"):
    """The IPv4 addresses glibc finds for name in service, [] for none."""
    r = s.exec(service, "getent", "ahostsv4", name)
    return sorted({line.split()[0] for line in r.stdout.splitlines() if line.strip()})


def query_packet(name, qtype=1, qid=0x4b1d):
    """A DNS query (RD set, no EDNS) for name, type qtype, class IN. name
    is text ("a.b.c"), or a list of labels (bytes, any content)."""
    q = bytes([qid >> 8, qid & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])
    if isinstance(name, str):
        name = [x.encode() for x in name.rstrip(".").split(".")] if name != "." else []
    for label in name:
        q += bytes([len(label)]) + label
    return q + bytes([0, qtype >> 8, qtype & 0xff, 0, 1])


def ask(s, server, name, qtype=1, tcp=False, service="app"):
    """One query from service to server:53 over UDP or TCP (bash's /dev/udp,
    /dev/tcp; the app image has no dig): (rcode, [A addresses], flags) or
    None when no reply came."""
    pkt = query_packet(name, qtype)
    if tcp:
        pkt = bytes([len(pkt) >> 8, len(pkt) & 0xff]) + pkt
    esc = "".join("\\x%02x" % b for b in pkt)
    script = ("exec 3<>/dev/%s/%s/53 || exit 7; printf '%s' >&3; timeout 3 cat <&3 | od -An -v -tu1"
              % ("tcp" if tcp else "udp", server, esc))
    r = s.exec(service, "timeout", "10", "bash", "-c", script, timeout=30)
    b = bytes(int(x) for x in r.stdout.split())
    if tcp:
        b = b[2:2 + ((b[0] << 8 | b[1]) if len(b) >= 2 else 0)]
    if len(b) < 12:
        return None
    flags, ancount = b[2] << 8 | b[3], b[6] << 8 | b[7]
    addrs = []
    if ancount and qtype == 1:
        # The question as sent, then ancount A records of 16 bytes each
        # (a 2-byte name pointer, type, class, TTL, length, address).
        off = len(query_packet(name, qtype))
        for i in range(ancount):
            rr = b[off + 16 * i:off + 16 * (i + 1)]
            if len(rr) == 16 and rr[2:4] == b"\x00\x01":
                addrs.append(".".join(str(x) for x in rr[12:16]))
    return flags & 0xf, addrs, flags


NOERROR, NXDOMAIN = 0, 3


def test_door_brings_a_wildcard_name_to_the_gateway_by_name(door):
    s, net = door
    gk = s.container("gatekeeper")
    assert address(gk, s.network("private")) == DOOR
    # Bound to 53 and 443 unprivileged, every capability dropped: healthy.
    wait_until(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", gk).stdout.strip()
               == "healthy", timeout=60, what="the gatekeeper healthy")
    assert docker("inspect", "-f", "{{.Config.User}} {{.HostConfig.CapDrop}}", gk).stdout.split() \
        == ["65532:65532", "[ALL]"]
    # No alias for any outside name: the door's answer is the only way there.
    aliases = docker("inspect", "-f", "{{json (index .NetworkSettings.Networks \"%s\").Aliases}}"
                     % s.network("private"), gk).stdout
    for name in records(net):
        assert name not in aliases, aliases
    # The app's resolver is Docker's DNS, which forwards to the door.
    resolv = s.exec("app", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11" in resolv, resolv

    # *.pythonhosted.org: by name, the server's own certificate back.
    assert wait_until(lambda: fetch(s, "https://files.pythonhosted.org/name.txt"),
                      what="files.pythonhosted.org by name") == "files.pythonhosted.org"
    code, _, verbose = curl(s, "app", "https://files.pythonhosted.org/name.txt")
    assert code == 0 and "CN=files.pythonhosted.org" in verbose, verbose
    assert "Connected to files.pythonhosted.org (%s) port 443" % DOOR in verbose, verbose
    assert getent(s, "files.pythonhosted.org") == [DOOR]
    # Exact entries too.
    assert fetch(s, "https://pypi.org/name.txt") == "pypi.org"
    assert fetch(s, "https://api.github.com/name.txt") == "api.github.com"

    # Any name below the wildcard is answered by the door; the TLS listener
    # then finds no address for it outside (the stand-in knows none).
    assert getent(s, "anything.pythonhosted.org") == [DOOR]
    assert fetch(s, "https://anything.pythonhosted.org/name.txt") is None

    logs = s.logs("gatekeeper")
    assert [line for line in logs.splitlines() if "msg=access" in line
            and "listener=egress-tls" in line and "decision=allow" in line
            and "files.pythonhosted.org" in line], logs[-3000:]
    # The outside lookups were the gatekeeper's, from its egress address.
    gk_out = address(gk, s.network("egress"))
    queries = [line for line in s.logs("dns").splitlines() if "query[" in line]
    assert [q for q in queries if "files.pythonhosted.org from %s" % gk_out in q], queries
    assert not [q for q in queries if not q.endswith(" from " + gk_out)], queries


def test_door_answers_over_udp_and_tcp(door):
    s, _ = door
    for tcp in (False, True):
        rcode, addrs, flags = wait_until(lambda: ask(s, DOOR, "files.pythonhosted.org", tcp=tcp),
                                         what="an answer from the door (tcp=%s)" % tcp)
        assert (rcode, addrs) == (NOERROR, [DOOR]), (tcp, rcode, addrs)
        assert flags & 0x0400 and not flags & 0x0080, hex(flags)  # AA set, RA clear
        assert ask(s, DOOR, "evil.example", tcp=tcp)[0] == NXDOMAIN
        # AAAA of an allowed name, the apex of a wildcard: no records.
        assert ask(s, DOOR, "files.pythonhosted.org", qtype=28, tcp=tcp)[:2] == (NOERROR, [])
        assert ask(s, DOOR, "pythonhosted.org", tcp=tcp)[:2] == (NOERROR, [])
    # The same through Docker's DNS, as every lookup of the app goes.
    assert ask(s, "127.0.0.11", "files.pythonhosted.org")[:2] == (NOERROR, [DOOR])
    assert ask(s, "127.0.0.11", "evil.example")[0] == NXDOMAIN
    # The door listens on `private` only: not on the gatekeeper's egress side.
    gk_out = address(s.container("gatekeeper"), s.network("egress"))
    assert ask(s, gk_out, "files.pythonhosted.org", service="dns") is None


def test_compose_names_still_resolve(door):
    """Docker's DNS answers the project's own names before forwarding."""
    s, _ = door
    api = address(s.container("api"), s.network("private"))
    assert getent(s, "api") == [api]
    assert getent(s, "gatekeeper") == [DOOR]
    r = s.exec("app", "curl", "-sS", "--max-time", "10", "http://api/", timeout=40)
    assert r.returncode == 0 and "Name: api" in r.stdout, r.stdout + r.stderr
    # The door was not asked for them (it would have refused them).
    assert "name=api " not in s.logs("gatekeeper")


def test_door_refuses_every_other_name(door):
    s, net = door
    wait_until(lambda: fetch(s, "https://pypi.org/name.txt"), what="pypi.org by name")
    for name in ("evil.example", "example.com", "pypi.org.evil.example", "pythonhosted.org",
                 "%s.nip.io" % net.ip(66)):
        assert getent(s, name) == [], name
    code, _, verbose = curl(s, "app", "https://evil.example/name.txt")
    assert code == 6 and "Could not resolve host" in verbose, verbose
    # An IP literal is not a name, even as a query.
    assert ask(s, DOOR, net.ip(66))[0] == NXDOMAIN
    # The SNI decides too: the gateway's address with a name off the list.
    assert fetch(s, "https://evil.example/name.txt", "--resolve",
                 "evil.example:443:" + DOOR) is None

    gk = s.container("gatekeeper")
    app_ip = address(s.container("app"), s.network("private"))
    logs = wait_until(lambda: (lambda t: t if "name=evil.example" in t else None)(
        s.logs("gatekeeper")), timeout=10, what="the refusal logged")
    refused = [line for line in logs.splitlines() if 'msg="dns refused"' in line
               and "listener=dns-door" in line and "name=evil.example" in line]
    assert refused and "reason=not_allowed" in refused[0], logs[-3000:]
    # Docker's DNS asks from the app's own network namespace: the door sees the app.
    assert "client=%s:" % app_ip in refused[0], refused
    assert [line for line in logs.splitlines() if "listener=egress-tls" in line
            and "decision=deny" in line and "not_allowed" in line], logs[-3000:]
    metrics = admin_get(gk, "/metrics")
    m = re.search(r'gatekeeper_dns_queries_total\{listener="dns-door",result="nxdomain"\} (\d+)',
                  metrics)
    assert m and int(m.group(1)) > 0, metrics[-3000:]

    # Nothing leaked: the stand-in's resolver never heard of a refused name
    # (nor from anyone but the gatekeeper), and its canary got no connection.
    dnslog = s.logs("dns")
    for name in ("evil.example", "example.com", "nip.io"):
        assert name not in dnslog, dnslog
    assert s.logs("canary").count("FILE:") == 0


def test_audit_from_private(door, image):
    """`gatekeeper audit` in a hardened throwaway container on `private` with
    the same `dns:` as the app."""
    s, net = door
    wait_until(lambda: fetch(s, "https://pypi.org/name.txt"), what="pypi.org by name")
    r = docker("run", "--rm", "--label", LABEL, "--network", s.network("private"),
               "--dns", DOOR, "--read-only", "--cap-drop", "ALL", "--security-opt",
               "no-new-privileges", image, "audit", "--timeout", "2s",
               "--expect-open", "files.pythonhosted.org:443",
               "--expect-open", "api:80",
               "--expect-no-dns", "evil.example",
               "--expect-no-dns", "example.com",
               "--expect-closed", "%s:443" % net.ip(13),
               "--expect-closed", "%s:443" % net.ip(66),
               "--expect-closed", "%s:53" % net.nameserver(),
               check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "7 checks, 7 as expected, 0 not" in r.stdout, r.stdout
    assert s.logs("canary").count("FILE:") == 0
    assert "evil.example" not in s.logs("dns")


def test_door_refuses_names_no_host_has(door):
    """Names no host has are never allowed: NXDOMAIN, as for any other name
    off the list, whether asked of the door or through Docker's DNS."""
    s, _ = door
    got = {(b".".join(labels), server): (ask(s, server, labels) or (None,))[:2]
           for labels in ([b"evil.example", b"com"], [b"\x80evil", b"com"], [b"ev il", b"com"],
                          [b"a*b", b"evil", b"com"], [b"-x", b"evil", b"com"])
           for server in (DOOR, "127.0.0.11")}
    assert [k for k, v in got.items() if v != (NXDOMAIN, [])] == [], got
