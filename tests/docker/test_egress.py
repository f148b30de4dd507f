"""The egress scenarios of docker/ (egress-tunnel, egress-gateway), run with
docker-compose as they are, against a stand-in internet (conftest.Internet):
the scenario's outside network becomes an internal bridge with its own
addresses, a dnsmasq the test controls, and TLS servers playing the allowed
domains plus a canary that must never be reached."""

import pytest

from conftest import TOOLS_IMAGE, Internet, Scenario, curl, jailed_audit, wait_until

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


def fetch(scenario, url, *args):
    code, body, _ = curl(scenario, "app", url, *args)
    return body.strip() if code == 0 else None


def canary_hits(scenario):
    return scenario.logs("canary").count("FILE:")


def egress_scenario(name, gatekeepers, image, tools_image, subnet):
    """Run docker/<name> against a stand-in internet on subnet: the app is a
    curl container, each service in gatekeepers runs the local image, and
    EGRESS_NAMESERVERS points at the internet's dnsmasq."""
    net = Internet(tools_image, "egress", HOSTS, subnet)
    services = dict(net.services(records(net)),
                    app={"image": TOOLS_IMAGE, "entrypoint": ["sleep", "infinity"]})
    services.update({g: {"image": image} for g in gatekeepers})
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
