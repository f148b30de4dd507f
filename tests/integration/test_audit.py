"""`gatekeeper audit`: it probes exactly what it is told, prints one row per
check, and exits 0 only when everything is as expected (1 otherwise, 2 on
bad arguments). All targets here are on 127.0.0.1 and a test DNS server."""

import socket
import subprocess
import time

import pytest

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
