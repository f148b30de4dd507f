"""Upstream names resolved through a real DNS server (dnsmasq, see dnsserver.py).

Each test runs dnsmasq on 127.0.0.1 at a high port with a hosts file it rewrites,
points gatekeeper at it with `resolver.nameservers`, and uses short refresh/min_ttl
so that answer changes are seen within a second or two. Backends listen on
loopback aliases (127.0.0.2, 127.0.0.3, ...) at one shared port, so a DNS answer
picks the backend; each backend greets with its tag so the client knows which
one it reached. A "dead" address is a loopback alias where nothing listens.

Waits are polls with generous upper bounds; no test asserts a duration, except
that a proxy which stalls for a full DNS timeout (10 s) is caught by a 4 s read
bound in test_dns_never_blocks_the_loop.
"""

import re
import socket
import time

import pytest

import gkharness as h
from dnsserver import DnsServer
from gkharness import poll

NAME = "svc.gk.test"
LATE = "late.gk.test"
DEAD = "127.0.0.77"  # a loopback alias where nothing listens


# --------------------------------------------------------------------------
# Fixtures and helpers

@pytest.fixture
def dns_down():
    """A dnsmasq that is not running yet (its port is reserved but closed)."""
    d = DnsServer(ttl=1, start=False)
    yield d
    d.close()


def _greeter(tag):
    def handler(conn, server):
        conn.sendall(tag.encode() + b"\n")
        while True:
            b = conn.recv(65536)
            if not b:
                break
            conn.sendall(b)
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    return handler


@pytest.fixture
def backends():
    """Factory: backends(hosts) -> {host: server} all on one shared port.
    Each server greets with "<host>\\n" and then echoes."""
    made = []

    def make(hosts):
        for _ in range(50):
            servers = {}
            try:
                first = h.HandlerServer(_greeter(hosts[0]), host=hosts[0])
                servers[hosts[0]] = first
                for host in hosts[1:]:
                    servers[host] = h.HandlerServer(_greeter(host), host=host, port=first.port)
            except OSError:
                for s in servers.values():
                    s.close()
                continue
            made.extend(servers.values())
            return servers
        raise RuntimeError("no port free on all of %r" % (hosts,))

    yield make
    for s in made:
        s.close()


def config(nameserver, listeners, timeout="500ms", refresh="1s", level="info"):
    """listeners: [(name, upstream)] all listening on 127.0.0.1:0."""
    out = [
        "log:\n  level: %s\n" % level,
        "resolver:\n",
        '  nameservers: ["%s"]\n' % nameserver,
        "  refresh: %s\n  min_ttl: 1s\n  timeout: %s\n" % (refresh, timeout),
        "defaults:\n  connect_timeout: 2s\n  idle_timeout: 60s\n",
        "listeners:\n",
    ]
    for name, upstream in listeners:
        out.append(h.listener_yaml(name, "127.0.0.1:0", upstream))
    return "".join(out)


class Session:
    """A client connection through gatekeeper to a greeting echo backend."""

    def __init__(self, addr, timeout=5.0):
        self.sock = h.connect(addr, timeout=timeout)
        self.timeout = timeout
        try:
            self.tag = self._readline()
        except BaseException:
            self.sock.close()
            raise

    def _readline(self):
        buf = b""
        self.sock.settimeout(self.timeout)
        while not buf.endswith(b"\n"):
            b = self.sock.recv(1)
            if not b:
                raise ConnectionError("closed before the backend greeting (got %r)" % buf)
            buf += b
            if len(buf) > 200:
                raise AssertionError("greeting too long: %r" % buf)
        return buf[:-1].decode()

    def echo(self, data):
        self.sock.sendall(data)
        got = h.recv_exact(self.sock, len(data), timeout=self.timeout)
        assert got == data
        return got

    def finish(self):
        """Half-close, expect the backend's EOF, close."""
        self.sock.shutdown(socket.SHUT_WR)
        rest = h.recv_all(self.sock, timeout=self.timeout)
        self.sock.close()
        assert rest == b""

    def close(self):
        self.sock.close()


def talk(addr, payload=b"hello through gatekeeper", timeout=5.0):
    """One full connection: greeting, echo, clean close. Returns the backend tag."""
    s = Session(addr, timeout)
    try:
        s.echo(payload)
        s.finish()
    finally:
        s.close()
    return s.tag


def try_talk(addr):
    try:
        return talk(addr)
    except (OSError, AssertionError):
        return None


def log_records(gk, after=0, **want):
    """Parsed log lines (from line index `after` on) whose fields match: a str
    value must be equal, a compiled regex must match the whole field."""
    out = []
    for d in gk.parsed()[after:]:
        ok = True
        for k, v in want.items():
            got = d.get(k)
            if got is None:
                ok = False
            elif hasattr(v, "fullmatch"):
                ok = v.fullmatch(str(got)) is not None
            else:
                ok = str(got) == str(v)
            if not ok:
                break
        if ok:
            out.append(d)
    return out


def wait_record(gk, timeout=10, after=0, **want):
    return poll(lambda: log_records(gk, after, **want), timeout,
                "log line with %r" % (want,), gk)[0]


# The resolver may name the upstream with or without its port.
def upstream_field(name):
    return re.compile(re.escape(name) + r"(:\d+)?")


def resolved_addrs(gk, name):
    """Address sets from `msg=resolved upstream=NAME addrs=...` lines, in order."""
    out = []
    for d in log_records(gk, msg="resolved", upstream=upstream_field(name)):
        addrs = (a.strip().strip("[]") for a in str(d.get("addrs", "")).split(","))
        out.append(sorted(a for a in addrs if a))
    return out


def expect_no_address(gk, addr, listener, timeout=5.0):
    """Connect to a listener whose upstream has no address: the connection is
    accepted, then closed by gatekeeper without relaying anything, and an
    access line says reason=no_address."""
    before = len(log_records(gk, msg="access", listener=listener, reason="no_address"))
    s = h.connect(addr, timeout=timeout)
    try:
        how = h.wait_closed(s, timeout=timeout)
    finally:
        s.close()
    assert how in ("eof", "reset")
    poll(lambda: len(log_records(gk, msg="access", listener=listener,
                                 reason="no_address")) > before,
         10, "access line reason=no_address for %s" % listener, gk)
    rec = log_records(gk, msg="access", listener=listener, reason="no_address")[-1]
    assert rec.get("upstream") == "-", rec
    assert str(rec.get("bytes_out")) == "0", rec


# --------------------------------------------------------------------------
# Tests

def test_dns_name_resolves_and_traffic_flows(dns, backends, gk):
    """An upstream given by name is resolved through the configured nameserver
    and connections reach the address it names."""
    b = backends(["127.0.0.2"])["127.0.0.2"]
    dns.set(NAME, ["127.0.0.2"])
    g = gk(config(dns.nameserver, [("named", "%s:%d" % (NAME, b.port))]))
    addr = g.addr("named")

    tag = poll(lambda: try_talk(addr), 10, "first connection through the named upstream", g)
    assert tag == "127.0.0.2"
    for _ in range(3):
        assert talk(addr) == "127.0.0.2"

    # the query really went to our dnsmasq, and the answer was logged
    assert dns.logged("query[A] %s" % NAME), dns.logs()
    assert ["127.0.0.2"] in resolved_addrs(g, NAME), g.tail(60)
    acc = poll(lambda: log_records(g, msg="access", listener="named", reason="closed"),
               10, "access line", g)
    assert acc[-1]["upstream"] == "127.0.0.2:%d" % b.port


def test_dns_answer_change_is_followed_without_restart(dns, backends, gk):
    """When the DNS answer changes from A to B, new connections go to B within
    a few refresh periods; a connection opened before keeps working on A."""
    bs = backends(["127.0.0.2", "127.0.0.3"])
    port = bs["127.0.0.2"].port
    dns.set(NAME, ["127.0.0.2"])
    g = gk(config(dns.nameserver, [("named", "%s:%d" % (NAME, port))]))
    addr = g.addr("named")
    pid = g.proc.pid

    assert poll(lambda: try_talk(addr), 10, "first connection", g) == "127.0.0.2"
    old = Session(addr)
    try:
        assert old.tag == "127.0.0.2"
        old.echo(b"before the switch")

        dns.set(NAME, ["127.0.0.3"])
        poll(lambda: try_talk(addr) == "127.0.0.3", 15,
             "a new connection reaching B after the DNS switch", g)
        # the new answer replaced the old set: A is no longer used
        tags = [talk(addr) for _ in range(6)]
        assert tags == ["127.0.0.3"] * 6, tags

        # the session opened before the switch still relays, to A
        old.echo(b"after the switch")
        old.finish()
    finally:
        old.close()

    assert g.alive() and g.proc.pid == pid
    sets = resolved_addrs(g, NAME)
    assert ["127.0.0.2"] in sets and ["127.0.0.3"] in sets, g.tail(60)
    assert bs["127.0.0.2"].accepted >= 2 and bs["127.0.0.3"].accepted >= 7


@pytest.mark.parametrize("outage", ["down", "hung"])
def test_dns_unreachable_at_start(dns_down, backends, gk, outage):
    """The DNS server is unreachable when gatekeeper starts (down: nothing on
    the port, queries are refused; hung: the server takes queries and never
    answers). gatekeeper starts anyway, warns naming the upstream, closes
    connections to that listener with reason=no_address, serves another
    listener meanwhile, and once DNS answers, connections succeed."""
    dns = dns_down
    bs = backends(["127.0.0.2", "127.0.0.4"])
    port = bs["127.0.0.2"].port
    dns.set(NAME, ["127.0.0.2"])  # written, served once the server is up
    if outage == "hung":
        dns.start()
        dns.pause()

    g = gk(config(dns.nameserver, [("named", "%s:%d" % (NAME, port)),
                                   ("literal", "127.0.0.4:%d" % port)]))
    assert log_records(g, msg="ready"), g.tail()
    wait_record(g, timeout=20, level="warn", msg="resolve failed",
                upstream=upstream_field(NAME))

    named, literal = g.addr("named"), g.addr("literal")
    for _ in range(2):
        expect_no_address(g, named, "named")
        assert talk(literal) == "127.0.0.4"
    assert bs["127.0.0.2"].accepted == 0

    if outage == "down":
        dns.start()
    else:
        dns.resume()
    tag = poll(lambda: try_talk(named), 20,
               "a connection succeeding once DNS answers", g)
    assert tag == "127.0.0.2"
    assert talk(named) == "127.0.0.2"
    assert talk(literal) == "127.0.0.4"
    assert g.alive()


def test_dns_nxdomain_at_start_then_added(dns, backends, gk):
    """The upstream name does not exist (NXDOMAIN) at start; gatekeeper starts,
    warns, refuses with reason=no_address, serves another listener; once the
    name is added, connections succeed without restart."""
    bs = backends(["127.0.0.2", "127.0.0.4"])
    port = bs["127.0.0.2"].port
    g = gk(config(dns.nameserver, [("named", "%s:%d" % (LATE, port)),
                                   ("literal", "127.0.0.4:%d" % port)]))
    wait_record(g, timeout=20, level="warn", msg="resolve failed",
                upstream=upstream_field(LATE))
    assert dns.logged("%s is NXDOMAIN" % LATE), dns.logs()

    named, literal = g.addr("named"), g.addr("literal")
    for _ in range(2):
        expect_no_address(g, named, "named")
        assert talk(literal) == "127.0.0.4"
    assert bs["127.0.0.2"].accepted == 0

    dns.set(LATE, ["127.0.0.2"])
    tag = poll(lambda: try_talk(named), 20, "a connection succeeding once the name exists", g)
    assert tag == "127.0.0.2"
    assert talk(named) == "127.0.0.2"
    assert ["127.0.0.2"] in resolved_addrs(g, LATE), g.tail(60)


def test_dns_server_dies_last_good_addresses_kept(dns, backends, gk):
    """After a good answer the DNS server dies: service continues on the last
    good addresses over several refresh periods, a warning is logged; when the
    server returns with a new answer, it is followed."""
    bs = backends(["127.0.0.2", "127.0.0.3"])
    port = bs["127.0.0.2"].port
    dns.set(NAME, ["127.0.0.2"])
    g = gk(config(dns.nameserver, [("named", "%s:%d" % (NAME, port))]))
    addr = g.addr("named")
    assert poll(lambda: try_talk(addr), 10, "first connection", g) == "127.0.0.2"

    mark = g.mark()
    dns.stop()
    # keep connecting for ~5 s (five refresh periods): every one must succeed
    end = time.monotonic() + 5
    n = 0
    while time.monotonic() < end:
        tag = talk(addr)
        assert tag == "127.0.0.2", tag
        n += 1
        time.sleep(0.1)
    assert n >= 10
    wait_record(g, timeout=10, after=mark, level="warn", msg="resolve failed",
                upstream=upstream_field(NAME))
    assert talk(addr) == "127.0.0.2"
    assert not log_records(g, after=mark, msg="access", reason="no_address"), g.tail(60)

    # the server comes back, with a different answer
    dns.set(NAME, ["127.0.0.3"])
    dns.start()
    poll(lambda: try_talk(addr) == "127.0.0.3", 20,
         "a new connection reaching B after DNS came back", g)


def test_dns_one_dead_address_of_two(dns, backends, gk):
    """The answer holds a dead address (nothing listens) and a live one: every
    connection succeeds, the dead one is skipped by trying the next."""
    b = backends(["127.0.0.2"])["127.0.0.2"]
    with pytest.raises(ConnectionRefusedError):
        h.connect((DEAD, b.port), timeout=2).close()
    dns.set(NAME, [DEAD, "127.0.0.2"])
    g = gk(config(dns.nameserver, [("named", "%s:%d" % (NAME, b.port))]))
    addr = g.addr("named")
    poll(lambda: sorted([DEAD, "127.0.0.2"]) in resolved_addrs(g, NAME), 10,
         "both addresses resolved", g)

    tags = []
    for i in range(20):
        try:
            tags.append(talk(addr))
        except (OSError, AssertionError) as e:
            pytest.fail("connection %d of 20 failed: %r\ngatekeeper log tail:\n%s"
                        % (i + 1, e, g.tail(60)))
    assert tags == ["127.0.0.2"] * 20
    acc = g.wait_access(20, timeout=10)
    named = [a for a in acc if a.get("listener") == "named"]
    assert all(a.get("reason") == "closed" for a in named), named
    assert all(a.get("upstream") == "127.0.0.2:%d" % b.port for a in named), named


@pytest.mark.skipif(not h.have_ipv6(), reason="::1 not available")
def test_dns_a_and_aaaa_both_used(dns, backends, gk):
    """An answer with an A (127.0.0.2) and an AAAA (::1) record: connections
    are spread over both backends."""
    bs = backends(["127.0.0.2", "::1"])
    port = bs["127.0.0.2"].port
    dns.set(NAME, ["127.0.0.2", "::1"])
    g = gk(config(dns.nameserver, [("named", "%s:%d" % (NAME, port))]))
    addr = g.addr("named")
    poll(lambda: ["127.0.0.2", "::1"] in resolved_addrs(g, NAME), 10,
         "A and AAAA resolved together", g)

    tags = [talk(addr) for _ in range(20)]
    assert set(tags) == {"127.0.0.2", "::1"}, tags
    ups = {a.get("upstream") for a in g.wait_access(20, timeout=10)}
    assert {"127.0.0.2:%d" % port, "[::1]:%d" % port} <= ups, ups


@pytest.mark.parametrize("how", ["env", "flags"])
def test_dns_quick_mode(dns, backends, quick, how):
    """Quick mode: the upstream name and the nameserver come from
    GATEKEEPER_UPSTREAM/GATEKEEPER_NAMESERVERS (or --upstream/--nameservers)."""
    bs = backends(["127.0.0.2", "127.0.0.3"])
    port = bs["127.0.0.2"].port
    dns.set(NAME, ["127.0.0.2"])
    settings = {
        "LISTEN": "127.0.0.1:0",
        "UPSTREAM": "%s:%d" % (NAME, port),
        "NAMESERVERS": dns.nameserver,
        "REFRESH": "1s",
        "MIN_TTL": "1s",
    }
    if how == "env":
        args, env = [], {"GATEKEEPER_" + k: v for k, v in settings.items()}
    else:
        args, env = [], None
        for k, v in settings.items():
            args += ["--" + k.lower().replace("_", "-"), v]
    g = quick(args, env=env)
    addr = g.addr("default")
    assert poll(lambda: try_talk(addr), 10, "first connection (quick mode)", g) == "127.0.0.2"
    assert dns.logged("query[A] %s" % NAME), dns.logs()
    # refresh applies in quick mode too
    dns.set(NAME, ["127.0.0.3"])
    poll(lambda: try_talk(addr) == "127.0.0.3", 15, "switch to B (quick mode)", g)


def test_dns_never_blocks_the_loop(dns, backends, gk):
    """While the DNS server hangs (queries time out after 10 s each), nothing
    waits for it: a session on an IP-literal listener keeps relaying, new
    connections to it and to a name resolved earlier succeed, and a listener
    whose name is unresolved still closes its connections at once.
    A proxy that blocked its loop on a lookup would stall for 10 s, far beyond
    the 4 s read bound used here."""
    bs = backends(["127.0.0.2", "127.0.0.4"])
    port = bs["127.0.0.2"].port
    dns.set(NAME, ["127.0.0.2"])
    g = gk(config(dns.nameserver, [("pinned", "%s:%d" % (NAME, port)),
                                   ("late", "%s:%d" % (LATE, port)),
                                   ("literal", "127.0.0.4:%d" % port)],
                  timeout="10s"))
    pinned, late, literal = g.addr("pinned"), g.addr("late"), g.addr("literal")
    assert poll(lambda: try_talk(pinned), 10, "first connection", g) == "127.0.0.2"
    wait_record(g, timeout=20, level="warn", msg="resolve failed",
                upstream=upstream_field(LATE))

    long = Session(literal, timeout=4)
    try:
        assert long.tag == "127.0.0.4"
        long.echo(b"before the hang")
        queries_before = dns.logs().count("query[")
        dns.pause()
        end = time.monotonic() + 6
        i = 0
        while time.monotonic() < end:
            long.echo(b"tick %d" % i)
            assert talk(literal, timeout=4) == "127.0.0.4"
            assert talk(pinned, timeout=4) == "127.0.0.2"
            if i % 5 == 0:
                expect_no_address(g, late, "late", timeout=4)
            i += 1
            time.sleep(0.1)
        long.echo(b"after the hang")
        dns.resume()
        long.finish()
    finally:
        long.close()
    # gatekeeper did ask the hung server during the window (the queries were
    # queued by the kernel and logged by dnsmasq once it resumed)
    poll(lambda: dns.logs().count("query[") > queries_before, 10,
         "queries sent to the hung DNS server", g)
    assert g.alive()


def test_dns_connect_failure_triggers_fresh_lookup(backends, gk):
    """The upstream moves (a container restarted with a new address): the DNS
    answer changes and the old address stops listening. Answers carry TTL 60 s
    and refresh is 60 s, so only a lookup requested by the failed connect can
    find the new address within the 15 s bound used here."""
    bs = backends(["127.0.0.2", "127.0.0.3"])
    port = bs["127.0.0.2"].port
    with DnsServer(ttl=60) as dns:
        dns.set(NAME, ["127.0.0.2"])
        g = gk(config(dns.nameserver, [("named", "%s:%d" % (NAME, port))], refresh="60s"))
        addr = g.addr("named")
        assert poll(lambda: try_talk(addr), 10, "first connection", g) == "127.0.0.2"
        poll(lambda: ["127.0.0.2"] in resolved_addrs(g, NAME), 10, "first answer logged", g)

        mark = g.mark()
        dns.set(NAME, ["127.0.0.3"])
        bs["127.0.0.2"].close()  # the old address now refuses connections
        poll(lambda: try_talk(addr) == "127.0.0.3", 15,
             "a connection reaching the new address after a connect failure", g)
        failed = log_records(g, after=mark, msg="access", listener="named",
                             reason="connect_failed")
        assert failed, g.tail(60)
        assert ["127.0.0.3"] in resolved_addrs(g, NAME), g.tail(60)
        g.stop()
