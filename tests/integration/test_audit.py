"""`gatekeeper audit`: it probes exactly what it is told, prints one row per
check, and exits 0 only when everything is as expected (1 otherwise, 2 on
bad arguments). All targets here are on 127.0.0.1 and a test DNS server,
except those of --docker, which run in a private network namespace whose
routes, "gateway" and DNS server the test makes."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

import netns
from dnsserver import DnsServer
from gkharness import GK_BIN, free_port


def audit(*args):
    return subprocess.run([GK_BIN, "audit", *args], capture_output=True, text=True, timeout=60)


def rows(out):
    """{target: (expect, found, ok)} from the table."""
    table = {}
    for line in out.splitlines()[1:-1]:
        parts = line.split()
        table[parts[1]] = (parts[0], parts[2], parts[-1])
    return table


@pytest.fixture
def listening():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield "127.0.0.1:%d" % s.getsockname()[1]
    s.close()


def test_all_as_expected(listening, blackhole):
    hole = blackhole()
    closed = "127.0.0.1:%d" % free_port()
    with DnsServer(ttl=1) as dns:
        dns.set("in.gk.test", ["127.0.0.1"])
        port = listening.rsplit(":", 1)[1]
        r = audit("--timeout", "1s", "--nameservers", dns.nameserver,
                  "--expect-open", listening, "--expect-open", "in.gk.test:%s" % port,
                  "--expect-closed", closed, "--expect-closed", hole.addr,
                  "--expect-closed", "nowhere.gk.test:80", "--expect-no-dns", "nowhere.gk.test")
    assert r.returncode == 0, r.stdout + r.stderr
    t = rows(r.stdout)
    assert t[listening] == ("open", "open", "yes")
    assert t["in.gk.test:%s" % port] == ("open", "open", "yes")
    assert t[closed] == ("closed", "closed", "yes") and "refused" in r.stdout
    assert t[hole.addr] == ("closed", "closed", "yes") and "timed out" in r.stdout
    assert t["nowhere.gk.test:80"] == ("closed", "closed", "yes")
    assert t["nowhere.gk.test"] == ("no-dns", "no-dns", "yes")
    assert r.stdout.splitlines()[-1] == "6 checks, 6 as expected, 0 not"


def test_a_difference_exits_1_and_says_which(listening):
    closed = "127.0.0.1:%d" % free_port()
    with DnsServer(ttl=1) as dns:
        dns.set("leak.gk.test", ["127.0.0.1"])
        r = audit("--timeout", "1s", "--nameservers", dns.nameserver,
                  "--expect-closed", listening, "--expect-open", closed,
                  "--expect-no-dns", "leak.gk.test")
    assert r.returncode == 1, r.stdout
    t = rows(r.stdout)
    assert t[listening] == ("closed", "open", "NO")
    assert t[closed] == ("open", "closed", "NO")
    assert t["leak.gk.test"] == ("no-dns", "resolved", "NO")
    assert r.stdout.splitlines()[-1] == "3 checks, 0 as expected, 3 not"


def test_wait_retries_open_checks_until_the_service_is_up(listening):
    """--wait: a target that starts listening while the audit waits is
    found open; a closed expectation that is wrong still fails at once."""
    port = free_port()
    target = "127.0.0.1:%d" % port
    p = subprocess.Popen([GK_BIN, "audit", "--timeout", "1s", "--wait", "30s",
                          "--expect-open", target], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # the audit's first attempt is refused meanwhile
        late = socket.socket()
        late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        late.bind(("127.0.0.1", port))
        late.listen()
        out, _ = p.communicate(timeout=60)
        late.close()
    finally:
        p.kill()
    assert p.returncode == 0, out
    assert rows(out)[target] == ("open", "open", "yes")
    # the wait applies to open checks only
    r = audit("--timeout", "1s", "--wait", "30s", "--expect-closed", listening)
    assert r.returncode == 1 and rows(r.stdout)[listening] == ("closed", "open", "NO")


@pytest.mark.parametrize("args", [
    [],
    ["--expect-open"],
    ["--expect-open", "no-port"],
    ["--expect-open", "127.0.0.1:0"],
    ["--timeout", "soon", "--expect-no-dns", "x"],
    ["--wait", "later", "--expect-no-dns", "x"],
    ["--bogus", "1"],
])
def test_bad_arguments_exit_2(args):
    r = audit(*args)
    assert r.returncode == 2, r
    assert "usage" in r.stderr or "gatekeeper audit:" in r.stderr


# --expect-dns NAME=ADDRESS[,ADDRESS...]: the set of A and AAAA answers is
# exactly that set, resolved through the test dnsmasq (--nameservers).

def test_expect_dns_matches_the_exact_set(dns):
    dns.set("one.gk.test", ["10.0.0.5"])
    dns.set("two.gk.test", ["10.0.0.5", "fd00::5"])
    dns.set("three.gk.test", ["10.0.0.5", "10.0.0.6", "fd00::5"])
    r = audit("--timeout", "2s", "--nameservers", dns.nameserver,
              "--expect-dns", "one.gk.test=10.0.0.5",
              "--expect-dns", "two.gk.test=fd00::5,10.0.0.5",
              "--expect-dns", "three.gk.test=10.0.0.6,[fd00::5],10.0.0.5,10.0.0.6")
    assert r.returncode == 0, r.stdout + r.stderr
    t = rows(r.stdout)
    assert t["one.gk.test=10.0.0.5"] == ("dns", "dns", "yes")
    assert t["two.gk.test=fd00::5,10.0.0.5"] == ("dns", "dns", "yes")
    assert t["three.gk.test=10.0.0.6,[fd00::5],10.0.0.5,10.0.0.6"] == ("dns", "dns", "yes")
    assert r.stdout.splitlines()[-1] == "3 checks, 3 as expected, 0 not"


def test_expect_dns_a_different_set_fails_and_shows_what_it_resolved_to(dns):
    dns.set("moved.gk.test", ["10.0.0.7"])
    dns.set("more.gk.test", ["10.0.0.5", "10.0.0.9"])
    dns.set("fewer.gk.test", ["10.0.0.5"])
    r = audit("--timeout", "2s", "--nameservers", dns.nameserver,
              "--expect-dns", "moved.gk.test=10.0.0.5",
              "--expect-dns", "more.gk.test=10.0.0.5",          # one answer too many
              "--expect-dns", "fewer.gk.test=10.0.0.5,fd00::5",  # one missing
              "--expect-dns", "nowhere.gk.test=10.0.0.5")        # NXDOMAIN
    assert r.returncode == 1, r.stdout + r.stderr
    t = rows(r.stdout)
    assert t["moved.gk.test=10.0.0.5"] == ("dns", "other", "NO")
    assert t["more.gk.test=10.0.0.5"] == ("dns", "other", "NO")
    assert t["fewer.gk.test=10.0.0.5,fd00::5"] == ("dns", "other", "NO")
    assert t["nowhere.gk.test=10.0.0.5"] == ("dns", "no-dns", "NO")
    lines = {line.split()[1]: line for line in r.stdout.splitlines()[1:-1]}
    assert "10.0.0.7" in lines["moved.gk.test=10.0.0.5"]
    assert "10.0.0.5" in lines["more.gk.test=10.0.0.5"] and "10.0.0.9" in lines["more.gk.test=10.0.0.5"]
    assert "not found" in lines["nowhere.gk.test=10.0.0.5"].lower()
    assert r.stdout.splitlines()[-1] == "4 checks, 0 as expected, 4 not"


def test_expect_dns_mixed_with_the_other_checks(dns, listening):
    dns.set("in.gk.test", ["127.0.0.1"])
    r = audit("--timeout", "2s", "--nameservers", dns.nameserver,
              "--expect-open", listening, "--expect-dns", "in.gk.test=127.0.0.1",
              "--expect-dns", "in.gk.test=127.0.0.2", "--expect-no-dns", "out.gk.test")
    assert r.returncode == 1, r.stdout + r.stderr
    t = rows(r.stdout)
    assert t[listening] == ("open", "open", "yes")
    assert t["in.gk.test=127.0.0.1"] == ("dns", "dns", "yes")
    assert t["in.gk.test=127.0.0.2"] == ("dns", "other", "NO")
    assert t["out.gk.test"] == ("no-dns", "no-dns", "yes")
    assert r.stdout.splitlines()[-1] == "4 checks, 3 as expected, 1 not"


@pytest.mark.parametrize("spec", [
    "db.gk.test",              # no '='
    "=10.0.0.5",               # no name
    "db.gk.test=",             # no address
    "db.gk.test=10.0.0.5,",    # an empty address
    "db.gk.test=10.0.0.5,,::1",
    "db.gk.test=elsewhere",    # a name where an address goes
    "db.gk.test=10.0.0.5:53",  # a port
    "10.0.0.5=10.0.0.5",       # an IP literal is not a name to look up
    "no such=10.0.0.5",
])
def test_expect_dns_bad_syntax_exits_2(spec):
    r = audit("--expect-dns", spec)
    assert r.returncode == 2, r
    assert "gatekeeper audit: --expect-dns" in r.stderr and "NAME=ADDRESS" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args", [
    ["--canary", "leak.gk.test", "--expect-no-dns", "x"],  # --canary without --docker
    ["--docker", "--canary", "not a name"],
    ["--docker", "--canary"],
    ["--expect-dns"],
])
def test_docker_bad_arguments_exit_2(args):
    r = audit(*args)
    assert r.returncode == 2, r
    assert "gatekeeper audit:" in r.stderr


# --docker in a private network namespace (netns.py explains why): the
# routes are the test's own, the "gateway" is an address of a veth pair in
# that namespace, and dnsmasq runs there too. Nothing leaves it.

DRIVER = r'''
import json, os, socket, subprocess, sys, time
sys.path.insert(0, os.environ["GK_TEST_DIR"])
from dnsserver import DnsServer

sc = json.load(sys.stdin)

def ip(*a):
    subprocess.run(["ip"] + list(a), check=True, capture_output=True, timeout=20)

ip("link", "set", "lo", "up")
if sc.get("gateway"):
    ip("link", "add", "gka", "type", "veth", "peer", "name", "gkb")
    ip("link", "set", "gka", "up")
    ip("link", "set", "gkb", "up")
    ip("addr", "add", "10.99.0.2/24", "dev", "gka")
    ip("addr", "add", "10.99.0.1/24", "dev", "gkb")  # the gateway: here, nothing listening
    ip("route", "add", "default", "via", "10.99.0.1", "dev", "gka")
if sc.get("ipv6_default"):
    deadline = time.monotonic() + 10
    while True:  # the veth's IPv6 may take a moment to come up
        r = subprocess.run(["ip", "-6", "route", "add", "default", "via", "fe80::1", "dev",
                            "gka" if sc.get("gateway") else "lo"],
                           capture_output=True, text=True, timeout=20)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if r.returncode != 0:
        raise SystemExit("ip -6 route add default: " + r.stderr)
listeners = []
for port in sc.get("listen", []):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.99.0.1", port))
    s.listen()
    listeners.append(s)
dns = DnsServer(ttl=1)
try:
    for name, addrs in sc.get("dns", {}).items():
        dns.set(name, addrs)
    with open("/proc/net/route") as f:
        route = f.read()
    with open("/proc/net/ipv6_route") as f:
        route6 = f.read()
    r = subprocess.run([sc["bin"], "audit", "--timeout", "2s", "--nameservers", dns.nameserver]
                       + sc["args"], capture_output=True, text=True, timeout=120)
finally:
    dns.close()
    for s in listeners:
        s.close()
json.dump({"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr,
           "route": route, "route6": route6}, sys.stdout)
'''


def in_netns(args, **scenario):
    scenario.update(bin=GK_BIN, args=list(args))
    env = dict(os.environ, GK_TEST_DIR=os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", DRIVER], input=json.dumps(scenario),
                       capture_output=True, text=True, timeout=180, env=env)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise AssertionError("netns driver exited %d:\n%s\n%s" % (r.returncode, r.stdout, r.stderr))
    return out


needs_netns = pytest.mark.skipif(not netns.available()[0],
                                 reason="no private network namespace: %s" % netns.available()[1])

GW_PORTS = ["10.99.0.1:%d" % p for p in (22, 80, 443, 2375, 2376)]


def explain(out):
    return "%s\n%s\n/proc/net/route:\n%s\n/proc/net/ipv6_route:\n%s" % (
        out["stdout"], out["stderr"], out["route"], out["route6"])


@needs_netns
def test_docker_gateway_closed_canary_unresolvable_no_ipv6_default():
    out = in_netns(["--docker"], gateway=True)
    assert out["rc"] == 0, explain(out)
    t = rows(out["stdout"])
    for target in GW_PORTS:
        assert t[target] == ("closed", "closed", "yes"), explain(out)
    assert "gateway: Connection refused" in out["stdout"]
    # example.com: dnsmasq answers only gk.test and refuses everything else
    assert t["example.com"] == ("no-dns", "no-dns", "yes")
    assert t["ipv6-default-route"] == ("no-route", "no-route", "yes")
    assert out["stdout"].splitlines()[-1] == "7 checks, 7 as expected, 0 not"


@needs_netns
def test_docker_gateway_listening_on_80_fails_that_row():
    out = in_netns(["--docker", "--expect-no-dns", "x.gk.test"], gateway=True, listen=[80])
    assert out["rc"] == 1, explain(out)
    t = rows(out["stdout"])
    assert t["10.99.0.1:80"] == ("closed", "open", "NO"), explain(out)
    for target in GW_PORTS:
        if target != "10.99.0.1:80":
            assert t[target] == ("closed", "closed", "yes"), explain(out)
    assert t["x.gk.test"] == ("no-dns", "no-dns", "yes")  # the user's own checks come first
    assert out["stdout"].splitlines()[1].split()[1] == "x.gk.test"
    assert out["stdout"].splitlines()[-1] == "8 checks, 7 as expected, 1 not"


@needs_netns
def test_docker_ipv6_default_route_fails_that_row():
    out = in_netns(["--docker"], gateway=True, ipv6_default=True)
    assert out["rc"] == 1, explain(out)
    t = rows(out["stdout"])
    assert t["ipv6-default-route"] == ("no-route", "route", "NO"), explain(out)
    assert "default via fe80::1 dev gka" in out["stdout"]
    for target in GW_PORTS:
        assert t[target] == ("closed", "closed", "yes")
    assert out["stdout"].splitlines()[-1] == "7 checks, 6 as expected, 1 not"


@needs_netns
def test_docker_without_a_default_route_says_so_and_passes():
    """An internal network (Docker 25.0 and later): no default route at all."""
    out = in_netns(["--docker"])
    assert out["rc"] == 0, explain(out)
    t = rows(out["stdout"])
    assert t["gateway"] == ("closed", "no-route", "yes"), explain(out)
    assert "no IPv4 default route" in out["stdout"]
    assert t["ipv6-default-route"] == ("no-route", "no-route", "yes")
    assert out["stdout"].splitlines()[-1] == "3 checks, 3 as expected, 0 not"


@needs_netns
def test_docker_canary_that_resolves_fails():
    out = in_netns(["--docker", "--canary", "leak.gk.test"], gateway=True,
                   dns={"leak.gk.test": ["10.99.0.1"]})
    assert out["rc"] == 1, explain(out)
    t = rows(out["stdout"])
    assert t["leak.gk.test"] == ("no-dns", "resolved", "NO"), explain(out)
    assert "canary: 10.99.0.1" in out["stdout"]
    assert "example.com" not in t
    assert out["stdout"].splitlines()[-1] == "7 checks, 6 as expected, 1 not"
