"""Fault injection: a DNS server that never answers, oversized and bogus DNS
answers, an upstream that resets mid-stream, wall-clock steps (libfaketime),
and a burst of 1000 connections at max_connections.

Already covered elsewhere, and not repeated here:
  - SERVFAIL, a truncated (header-only) and a garbage DNS answer:
    test_dns_faults.py
  - a DNS server down or hung (SIGSTOPped dnsmasq) at start, dying after a good
    answer, never blocking the loop: test_dns.py
  - EMFILE: accept pauses and recovers: test_limits.py
  - an upstream that dies (RST) after sending, on its own listener;
    back-pressure with bounded RSS in both directions; a client vanishing
    mid-download; max_connections=2 queueing: test_relay.py

The DNS servers here are scripted (ScriptedDns: UDP and TCP on one port of
127.0.0.1) so that a test chooses every byte of the answer. Every address a
test lets gatekeeper dial is 127.0.0.1 or ::1; the many-record answer carries
other 127/8 addresses, which the egress guard (allow_ranges 127.0.0.1/32)
skips without dialing. Waits are polls with generous upper bounds: no test
asserts a duration.

c-ares 1.18.1 (Debian 12), as observed by these tests: a UDP answer with the
TC bit is retried over TCP to the same server, and when nothing listens there
the lookup fails with "Could not contact DNS servers"; a server that never
answers (over UDP, or over TCP after TC) fails with "Timeout while contacting
DNS servers"; an A answer whose RDLENGTH runs past the message, or whose
ANCOUNT promises more records than it holds (up to a full 64 KiB TCP answer),
fails the whole lookup ("DNS server returned answer with no data" next to an
empty AAAA answer, "Misformatted DNS reply").

The clock tests (section 4) are skipped without libfaketime and under a
sanitizer build. Four of them guard against a wall-clock step (NTP) reaching
the spans gatekeeper measures: a busy session cut as idle, an idle one that
never expires, a negative logged duration, and no re-resolve after a connect
failure. All spans use the monotonic clock (clock_now_tv).
"""

import hashlib
import os
import re
import resource
import select
import selectors
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest

import gkharness as h
from gkharness import (
    connect,
    deterministic_bytes,
    echo_roundtrip,
    free_port,
    poll,
    recv_all,
    recv_exact,
    rss_bytes,
    wait_closed,
)

NAME = "api.gk.test"
LINGER0 = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST
LIBFAKETIME = os.environ.get("LIBFAKETIME", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def _sanitized_binary():
    """True for a sanitizer build of gatekeeper (make asan): its path, or
    the sanitizer runtimes it links."""
    if "build-asan" in h.GK_BIN:
        return True
    try:
        out = subprocess.run(["ldd", h.GK_BIN], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return re.search(r"lib(asan|ubsan|tsan|lsan)\.so", out) is not None


SANITIZED = _sanitized_binary()


def rss_bound(normal):
    """The RSS growth allowed: `normal`, or under AddressSanitizer that plus
    its quarantine of freed memory (256 MiB by default), which RSS cannot
    tell from a leak; LeakSanitizer checks for real leaks at exit there."""
    return normal + (320 << 20 if SANITIZED else 0)


# --------------------------------------------------------------------------
# A scripted DNS server

QTYPE_A = 1
QTYPE_AAAA = 28


def parse_query(q):
    """(name, qtype, question bytes) of a DNS query."""
    off, labels = 12, []
    while q[off]:
        n = q[off]
        labels.append(q[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    off += 1
    qtype, _ = struct.unpack("!HH", q[off:off + 4])
    return ".".join(labels).lower(), qtype, q[12:off + 4]


def dns_answer(q, addrs=(), tc=False, ttl=1, ancount=None, rdlength=None, pad_to=None):
    """A response to query q: A records for addrs (an AAAA query gets an empty
    NOERROR answer). tc sets the TC bit; ancount/rdlength lie in the header /
    in every record; pad_to fills the message with valid-looking A records of
    127.0.0.1 up to that size (and claims ancount, if given)."""
    _, qtype, question = parse_query(q)
    flags = 0x8000 | (struct.unpack("!H", q[2:4])[0] & 0x0100) | 0x0080
    if tc:
        flags |= 0x0200
    rrs, n = [], 0
    if qtype == QTYPE_A:
        for a in addrs:
            rd = socket.inet_aton(a)
            rrs.append(b"\xc0\x0c" + struct.pack("!HHIH", QTYPE_A, 1, ttl,
                                                  len(rd) if rdlength is None else rdlength) + rd)
            n += 1
    body = q[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + question + b"".join(rrs)
    if pad_to is not None and qtype == QTYPE_A:
        rr = b"\xc0\x0c" + struct.pack("!HHIH", QTYPE_A, 1, ttl, 4) + socket.inet_aton("127.0.0.1")
        while len(body) + len(rr) <= pad_to:
            body += rr
            n += 1
        body += b"\0" * (pad_to - len(body))
    an = n if ancount is None or qtype != QTYPE_A else ancount
    return body[:6] + struct.pack("!H", an) + body[8:]


class ScriptedDns:
    """UDP and TCP DNS on one port of 127.0.0.1. udp(query) and tcp(query)
    return the response bytes, or None (UDP: drop it; TCP: close the
    connection). tcp=False: nothing listens on TCP (connections are refused).
    The handlers can be swapped while the server runs. udp_queries and
    tcp_queries count the queries received."""

    def __init__(self, udp=None, tcp=None):
        self.udp = udp
        self.tcp = tcp
        self.udp_queries = 0
        self.tcp_queries = 0
        self._lock = threading.Lock()
        for _ in range(100):
            self._u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._u.bind(("127.0.0.1", 0))
            self.port = self._u.getsockname()[1]
            self._t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self._t.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self._u.close()
                self._t.close()
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        if tcp is not False:
            self._t.listen(64)
        self.nameserver = "127.0.0.1:%d" % self.port
        self._stop = False
        self._threads = [threading.Thread(target=self._run, daemon=True)]
        self._threads[0].start()

    def _run(self):
        socks = [self._u] + ([self._t] if self.tcp is not False else [])
        while not self._stop:
            try:
                r, _, _ = select.select(socks, [], [], 0.2)
            except (OSError, ValueError):
                return
            for s in r:
                if s is self._u:
                    try:
                        q, peer = self._u.recvfrom(4096)
                    except OSError:
                        continue
                    if len(q) < 17:
                        continue
                    with self._lock:
                        self.udp_queries += 1
                    handler = self.udp
                    rep = handler(q) if handler else None
                    if rep is not None:
                        try:
                            self._u.sendto(rep, peer)
                        except OSError:
                            pass
                else:
                    try:
                        c, _ = self._t.accept()
                    except OSError:
                        continue
                    t = threading.Thread(target=self._serve_tcp, args=(c,), daemon=True)
                    self._threads.append(t)
                    t.start()

    def _serve_tcp(self, c):
        c.settimeout(10)
        try:
            while not self._stop:
                hdr = recv_exact(c, 2, timeout=10)
                q = recv_exact(c, struct.unpack("!H", hdr)[0], timeout=10)
                with self._lock:
                    self.tcp_queries += 1
                handler = self.tcp
                rep = handler(q) if handler else None
                if rep is None:
                    return
                c.sendall(struct.pack("!H", len(rep)) + rep)
        except (OSError, AssertionError):
            pass
        finally:
            c.close()

    def queries(self):
        with self._lock:
            return self.udp_queries + self.tcp_queries

    def close(self):
        self._stop = True
        for t in self._threads:
            t.join(2)
        self._u.close()
        self._t.close()


@pytest.fixture
def scripted_dns():
    made = []

    def make(**kw):
        d = ScriptedDns(**kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def answering(*addrs):
    """A handler answering every A query with addrs (AAAA: empty)."""
    return lambda q: dns_answer(q, addrs)


# --------------------------------------------------------------------------
# Helpers

def resolver_config(nameserver, listeners, admin_port=None, timeout="300ms", refresh="2s",
                    level="info", defaults=None):
    """listeners: ready-made listener YAML entries (listener())."""
    out = []
    if admin_port:
        out.append("admin:\n  listen: 127.0.0.1:%d\n" % admin_port)
    out.append("log:\n  level: %s\n" % level)
    out.append('resolver:\n  nameservers: ["%s"]\n  refresh: %s\n  min_ttl: 1s\n  timeout: %s\n'
               % (nameserver, refresh, timeout))
    d = {"connect_timeout": "3s", "idle_timeout": "60s"}
    d.update(defaults or {})
    out.append("defaults:\n" + "".join("  %s: %s\n" % kv for kv in d.items()))
    out.append("listeners:\n")
    out.extend(listeners)
    return "".join(out)


def listener(name, upstream=None, **keys):
    lines = ["  - name: %s" % name, '    listen: "127.0.0.1:0"']
    if upstream:
        lines.append('    upstream: "%s"' % upstream)
    for k, v in keys.items():
        if isinstance(v, (list, tuple)):
            v = "[%s]" % ", ".join('"%s"' % x for x in v)
        elif isinstance(v, bool):
            v = "true" if v else "false"
        lines.append("    %s: %s" % (k, v))
    return "\n".join(lines) + "\n"


def guarded(name, upstream):
    """A pinned egress tunnel that may dial 127.0.0.1 and nothing else."""
    return listener(name, upstream, egress=True, allow_ranges=["127.0.0.1/32"])


def admin_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(port):
    """{(name, frozenset(labels)): value} from /metrics."""
    status, text = admin_get(port, "/metrics")
    assert status == 200, (status, text)
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        if m:
            labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(m, name, **labels):
    return m.get((name, frozenset(labels.items())))


def try_echo(addr, payload=b"ping"):
    try:
        return echo_roundtrip(addr, payload, timeout=5) == payload
    except OSError:
        return False


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def records(g, after=0, **want):
    out = []
    for d in g.parsed()[after:]:
        if all(str(d.get(k)) == str(v) for k, v in want.items()):
            out.append(d)
    return out


def refused_no_address(g, addr, listener_name):
    s = connect(addr)
    me = s.getsockname()[:2]
    try:
        how = wait_closed(s, timeout=15)
    finally:
        s.close()
    assert how in ("eof", "reset")
    acc = g.wait_access_for(me, timeout=15)
    assert acc["listener"] == listener_name, acc
    assert acc["reason"] == "no_address", acc
    assert acc["upstream"] == "-" and str(acc["bytes_out"]) == "0", acc
    return acc


class LongSession:
    """An echo session kept open across a test; check() sends and expects
    the same bytes back, and keeps a digest of everything."""

    def __init__(self, addr):
        self.sock = connect(addr, timeout=15)
        self.me = self.sock.getsockname()[:2]
        self.sent = hashlib.sha256()
        self.got = hashlib.sha256()
        self.n = 0

    def check(self, tag=b""):
        data = deterministic_bytes(4096, seed=self.n) + tag
        self.n += 1
        self.sock.sendall(data)
        back = recv_exact(self.sock, len(data), timeout=15)
        self.sent.update(data)
        self.got.update(back)
        assert back == data, "session data corrupted"

    def finish(self):
        self.sock.shutdown(socket.SHUT_WR)
        assert recv_all(self.sock, timeout=15) == b""
        self.sock.close()
        assert self.sent.hexdigest() == self.got.hexdigest()


# --------------------------------------------------------------------------
# 1. A DNS server that never answers


def test_dns_never_answers_refuses_then_recovers_without_restart(gk, echo, scripted_dns):
    """The DNS server takes every query and never answers. gatekeeper starts
    anyway, each lookup ends as a timeout (logged, counted in
    gatekeeper_dns_lookups_total{result="timeout"}), connections to the named
    listener are closed with reason=no_address and a warning naming the
    upstream, /readyz says not ready, the lookups go on being retried without
    piling up sockets. A listener with a literal upstream serves throughout,
    and a session on it stays open and intact. Once the server answers, the
    same process serves the named listener."""
    named_backend, literal_backend = echo(), echo()
    dns = scripted_dns(udp=None, tcp=None)  # reads every query, answers none
    admin = free_port()
    g = gk(resolver_config(dns.nameserver, [
        listener("named", "%s:%d" % (NAME, named_backend.port)),
        listener("literal", literal_backend.addr),
    ], admin_port=admin))
    pid = g.proc.pid

    long = LongSession(g.addr("literal"))
    long.check(b"before")

    g.wait_log(r'msg="resolve failed" upstream=api\.gk\.test .*error="Timeout while contacting DNS servers"',
               timeout=20)
    acc = refused_no_address(g, g.addr("named"), "named")
    assert acc["decision"] == "allow", acc
    warn = records(g, msg="upstream not resolved yet, connection refused", listener="named")
    assert warn and warn[0]["level"] == "warn" and warn[0]["upstream"] == NAME, g.tail()

    m = metrics(admin)
    assert metric(m, "gatekeeper_dns_lookups_total", result="timeout") >= 1, m
    assert not metric(m, "gatekeeper_dns_lookups_total", result="ok"), m
    assert metric(m, "gatekeeper_upstream_addresses", upstream="%s:%d" % (NAME, named_backend.port)) == 0
    status, body = admin_get(admin, "/readyz")
    assert status == 503, (status, body)
    # It says which upstream of which listener, and why.
    assert body == ("not ready\nlistener named: upstream %s:%d has no address yet "
                    "(Timeout while contacting DNS servers)\n" % (NAME, named_backend.port)), body

    # the lookups go on (back-off capped at refresh), and no socket piles up
    fds = fd_count(pid)
    failures = len(records(g, msg="resolve failed"))
    queries = dns.queries()
    poll(lambda: len(records(g, msg="resolve failed")) >= failures + 2, 20,
         "two more timed-out lookups", g)
    assert dns.queries() > queries
    assert fd_count(pid) <= fds + 2, "fds grew from %d to %d" % (fds, fd_count(pid))

    # the rest of the proxy is unaffected meanwhile
    for i in range(3):
        assert echo_roundtrip(g.addr("literal"), b"literal %d" % i) == b"literal %d" % i
        long.check(b"during %d" % i)
        refused_no_address(g, g.addr("named"), "named")
    assert named_backend.accepted == 0

    # the server answers again: the same process serves the named listener
    dns.udp = answering("127.0.0.1")
    poll(lambda: try_echo(g.addr("named"), b"back"), 20, "the named listener serving", g)
    assert g.alive() and g.proc.pid == pid
    s = connect(g.addr("named"))
    me = s.getsockname()[:2]
    s.sendall(b"after recovery")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"after recovery"
    s.close()
    acc = g.wait_access_for(me, timeout=15)
    assert acc["reason"] == "closed" and acc["upstream"] == named_backend.addr, acc
    assert admin_get(admin, "/readyz")[0] == 200
    m = metrics(admin)
    assert metric(m, "gatekeeper_dns_lookups_total", result="ok") >= 1, m
    assert metric(m, "gatekeeper_upstream_addresses", upstream="%s:%d" % (NAME, named_backend.port)) == 1

    long.check(b"after")
    long.finish()
    assert g.wait_access_for(long.me)["reason"] == "closed"
    assert g.alive()


def test_readyz_names_every_missing_upstream_and_ignores_per_connection_names(gk, echo, scripted_dns):
    """/readyz lists each fixed upstream without an address, one line per
    listener and route, with the lookup's error, and turns 200 once they
    resolve. Names looked up for one connection ("$host", CONNECT targets)
    never make gatekeeper unready: not while such a lookup is in flight,
    and not after it failed."""
    b = echo()
    state = {"fixed": None}
    asked = []

    def udp(q):
        name, _, _ = parse_query(q)
        asked.append(name)
        if name in ("one.gk.test", "two.gk.test"):
            return None if state["fixed"] is None else dns_answer(q, state["fixed"])
        if name == "nx.gk.test":
            ok = dns_answer(q)
            return ok[:3] + bytes([ok[3] | 3]) + ok[4:]  # rcode 3: NXDOMAIN
        return None  # the slow per-connection name: never answered
    dns = scripted_dns(udp=udp, tcp=None)
    admin = free_port()
    g = gk(resolver_config(dns.nameserver, [
        listener("one", "one.gk.test:%d" % b.port),
        listener("literal", b.addr),
        listener("proxy", mode="connect", allow=["*.gk.test:%d" % b.port]),
    ] + ["""  - name: routed
    listen: "127.0.0.1:0"
    mode: tls
    routes:
      - match: ["a.example"]
        upstream: "two.gk.test:%d"
      - match: ["*.gk.test"]
        upstream: "$host:%d"
""" % (b.port, b.port)], admin_port=admin, timeout="2s"))

    status, body = admin_get(admin, "/readyz")
    assert status == 503, (status, body)
    lines = body.splitlines()
    assert lines[0] == "not ready" and len(lines) == 3, body
    assert {line.split(" (")[0] for line in lines[1:]} == {
        "listener one: upstream one.gk.test:%d has no address yet" % b.port,
        "listener routed: upstream two.gk.test:%d has no address yet" % b.port}, body
    for line in lines[1:]:
        assert line.endswith(("(first lookup in progress)", "(Timeout while contacting DNS servers)")), body

    state["fixed"] = ("127.0.0.1",)
    poll(lambda: admin_get(admin, "/readyz")[0] == 200, 30, "/readyz 200 once both names resolve", g)
    assert admin_get(admin, "/readyz") == (200, "ready\n")

    # A per-connection lookup in flight: still ready.
    s = connect(g.addr("proxy"), timeout=20)
    s.sendall(connect_request("slow.gk.test:%d" % b.port))
    poll(lambda: "slow.gk.test" in asked, 10, "the CONNECT target's lookup sent", g)
    assert admin_get(admin, "/readyz") == (200, "ready\n")
    s.settimeout(20)
    assert recv_all(s).startswith(b"HTTP/1.1 503 "), "refused once the lookup timed out"
    s.close()
    # A per-connection name that does not exist: refused, and still ready.
    status, s = connect_status(g.addr("proxy"), "nx.gk.test:%d" % b.port)
    s.close()
    assert status == 503
    assert admin_get(admin, "/readyz") == (200, "ready\n")
    assert try_echo(g.addr("one"), b"one") and try_echo(g.addr("literal"), b"literal")


# --------------------------------------------------------------------------
# 2. Oversized DNS answers


@pytest.mark.parametrize("tcp", ["answers", "refused", "hangs"])
def test_dns_truncated_udp_answer_falls_back_to_tcp(gk, echo, scripted_dns, tcp):
    """Every UDP answer has the TC bit set and no records, as a server sends
    when the answer does not fit. answers: the same server answers over TCP,
    and that answer is used. refused: nothing listens on TCP; hangs: the TCP
    connection never gets an answer. Then the lookup fails cleanly
    (reason=no_address, a warning), another listener serves meanwhile, and
    once UDP answers in full the same process serves."""
    b, other = echo(), echo()
    hold = threading.Event()

    def never_answer(q):
        hold.wait(30)  # holds the TCP connection open, silent, while the test runs
        return None

    tcp_handler = {"answers": answering("127.0.0.1"), "refused": False, "hangs": never_answer}[tcp]
    dns = scripted_dns(udp=lambda q: dns_answer(q, (), tc=True), tcp=tcp_handler)
    g = gk(resolver_config(dns.nameserver, [guarded("named", "%s:%d" % (NAME, b.port)),
                                            listener("other", other.addr)]))
    addr = g.addr("named")
    try:
        if tcp == "answers":
            poll(lambda: try_echo(addr, b"over tcp"), 15, "a connection through the TCP answer", g)
            assert dns.tcp_queries >= 1 and dns.udp_queries >= 1
            g.wait_log(r"msg=resolved upstream=api\.gk\.test .*addrs=127\.0\.0\.1 ", timeout=5)
            assert not records(g, msg="resolve failed"), g.tail()
        else:
            want = {"refused": "Could not contact DNS servers",
                    "hangs": "Timeout while contacting DNS servers"}[tcp]
            g.wait_log(r'msg="resolve failed" upstream=api\.gk\.test .*error="%s"' % want, timeout=20)
            assert dns.udp_queries >= 1
            if tcp == "hangs":
                assert dns.tcp_queries >= 1
            refused_no_address(g, addr, "named")
            assert echo_roundtrip(g.addr("other"), b"unaffected") == b"unaffected"
            assert b.accepted == 0
            dns.udp = answering("127.0.0.1")
            poll(lambda: try_echo(addr, b"over udp"), 20, "serving once UDP answers in full", g)
    finally:
        hold.set()
    assert echo_roundtrip(g.addr("other"), b"still") == b"still"
    assert g.alive()


def test_dns_answer_with_300_records(gk, echo, scripted_dns):
    """An answer with 300 A records (too big for UDP: the UDP answer is
    truncated, the full one comes over TCP). Every record is kept (the
    gatekeeper_upstream_addresses gauge says 300), the guard dials only the
    one it allows (127.0.0.1; the others are other 127/8 addresses, refused
    as loopback without a connect), and re-reading the answer every second
    does not grow memory."""
    b = echo()
    many = ["127.0.0.1"] + ["127.0.%d.%d" % (1 + i // 250, 1 + i % 250) for i in range(299)]
    dns = scripted_dns(udp=lambda q: dns_answer(q, (), tc=True), tcp=answering(*many))
    admin = free_port()
    g = gk(resolver_config(dns.nameserver, [guarded("named", "%s:%d" % (NAME, b.port))],
                           admin_port=admin, refresh="1s", level="debug"))
    addr = g.addr("named")
    poll(lambda: try_echo(addr, b"first"), 15, "a connection to the 300-record name", g)
    gauge = lambda: metric(metrics(admin), "gatekeeper_upstream_addresses",  # noqa: E731
                           upstream="%s:%d" % (NAME, b.port))
    assert gauge() == 300
    line = g.wait_log(r"msg=resolved upstream=api\.gk\.test .*addrs=(\S+)").group(1)
    assert line.startswith("127.0.0.1,127.0.1.1,127.0.1.2,"), line

    # warm up, then many more refreshes of the same big answer
    lookups = lambda: len(records(g, msg="resolved"))  # noqa: E731
    poll(lambda: lookups() >= 3, 15, "three lookups", g)
    before = rss_bytes(g.proc.pid)
    n = lookups()
    clients = 0
    while lookups() < n + 10:
        assert echo_roundtrip(addr, b"c%d" % clients) == b"c%d" % clients
        clients += 1
        time.sleep(0.2)
    grown = rss_bytes(g.proc.pid) - before
    assert grown < rss_bound(2 << 20), "RSS grew by %d bytes over 10 lookups of 300 records" % grown
    assert gauge() == 300
    acc = [a for a in g.wait_access(clients + 1) if a["reason"] == "closed"]
    assert len(acc) == clients + 1 and {a["upstream"] for a in acc} == {b.addr}, acc
    # before the first answer came, a connection may have been refused; nothing else
    assert {a["reason"] for a in g.access_lines()} <= {"closed", "no_address"}
    assert b.accepted == clients + 1
    assert dns.tcp_queries >= 10
    assert g.alive()


BOGUS = {
    # RDLENGTH 65535 in a record of a small UDP answer
    "rdlength": dict(udp=lambda q: dns_answer(q, ["127.0.0.1"], rdlength=65535)),
    # ANCOUNT 65535 with one record present
    "ancount": dict(udp=lambda q: dns_answer(q, ["127.0.0.1"], ancount=65535)),
    # UDP says TC; over TCP a 65535-byte answer (4000 records) claiming ANCOUNT 65535
    "tcp_64k": dict(udp=lambda q: dns_answer(q, (), tc=True),
                    tcp=lambda q: dns_answer(q, (), ancount=65535, pad_to=65535)),
}
# What c-ares 1.18.1 reports for the lookup: the A answer is broken, the
# AAAA answer is a valid empty one, and the whole lookup fails.
BOGUS_ERROR = "DNS server returned answer with no data|Misformatted DNS reply"


def connect_request(target):
    return ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode()


def connect_status(addr, target):
    """Status code of a CONNECT through the proxy, and the socket (open on 200)."""
    s = connect(addr, timeout=20)
    s.settimeout(20)
    s.sendall(connect_request(target))
    head = b""
    while b"\r\n\r\n" not in head:
        try:
            d = s.recv(4096)
        except ConnectionResetError:
            d = b""
        if not d:
            break
        head += d
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", head)
    assert m, head
    return int(m.group(1)), s


@pytest.mark.parametrize("kind", sorted(BOGUS))
def test_dns_bogus_huge_answers(gk, echo, scripted_dns, kind):
    """Answers that lie about their size: each lookup fails cleanly with the
    c-ares error named in the log, connections are refused with no_address
    (a pinned tunnel, and CONNECT requests for 200 distinct names, each one
    a lookup), memory stays bounded, another listener serves, and once the
    server answers properly the answer is used without a restart."""
    b, other = echo(), echo()
    dns = scripted_dns(**BOGUS[kind])
    g = gk(resolver_config(dns.nameserver, [
        guarded("pinned", "%s:%d" % (NAME, b.port)),
        listener("proxy", mode="connect", allow=["*.gk.test:%d" % b.port],
                 allow_ranges=["127.0.0.1/32"]),
        listener("other", other.addr),
    ], refresh="1s"))
    g.wait_log(r'msg="resolve failed" upstream=api\.gk\.test .*error="(%s)"' % BOGUS_ERROR,
               timeout=20)
    refused_no_address(g, g.addr("pinned"), "pinned")
    proxy = g.addr("proxy")

    def burst(prefix, n):
        for i in range(n):
            status, s = connect_status(proxy, "%s%d.gk.test:%d" % (prefix, i, b.port))
            s.close()
            assert status == 503, (i, status)

    burst("warm", 20)
    before = rss_bytes(g.proc.pid)
    queries = dns.queries()
    burst("n", 200)
    grown = rss_bytes(g.proc.pid) - before
    assert dns.queries() - queries >= 200, "each new name is a lookup"
    assert grown < rss_bound(8 << 20), "RSS grew by %d bytes over 200 bogus answers" % grown
    acc = g.wait_access(1 + 220, timeout=30)
    refusals = [a for a in acc if a["listener"] == "proxy"]
    assert len(refusals) == 220 and {a["reason"] for a in refusals} == {"no_address"}
    assert echo_roundtrip(g.addr("other"), b"unaffected") == b"unaffected"
    assert b.accepted == 0

    # a good answer is used, by the pinned tunnel and by a new name
    dns.udp, dns.tcp = answering("127.0.0.1"), answering("127.0.0.1")
    poll(lambda: try_echo(g.addr("pinned"), b"pinned"), 20, "the pinned tunnel serving", g)
    status, s = connect_status(proxy, "fresh.gk.test:%d" % b.port)
    assert status == 200
    s.sendall(b"through the tunnel")
    assert recv_exact(s, 18) == b"through the tunnel"
    s.close()
    assert g.alive()


# --------------------------------------------------------------------------
# 3. The upstream resets mid-stream


def _rst_backend(conn, srv):
    """First line says the role. keeper: echo until EOF. victim: stream
    deterministic bytes while draining what the client sends, then abort
    with a RST (SO_LINGER 0) while both directions are busy."""
    role = b""
    while not role.endswith(b"\n"):
        b = conn.recv(1)
        if not b:
            return
        role += b
    if role == b"keeper\n":
        while True:
            b = conn.recv(1 << 16)
            if not b:
                break
            conn.sendall(b)
        conn.shutdown(socket.SHUT_WR)
        return
    stream = deterministic_bytes(8 << 20, seed=91)
    conn.setblocking(False)
    sent = drained = 0
    while sent < len(stream) // 2 or drained < (1 << 20):
        r, w, _ = select.select([conn], [conn], [], 10)
        if not r and not w:
            break
        if r:
            try:
                d = conn.recv(1 << 16)
            except BlockingIOError:
                d = None
            if d == b"":
                break
            drained += len(d or b"")
        if w:
            try:
                sent += conn.send(stream[sent:sent + (1 << 16)])
            except BlockingIOError:
                pass
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    srv.record({"sent": sent, "drained": drained})
    conn.close()  # RST, with bytes still flowing both ways


@pytest.mark.parametrize("splice", ["off", "on"])
def test_upstream_rst_mid_stream_spares_a_parallel_session(gk, handler_server, splice):
    """While bytes flow both ways, the upstream aborts one session with a
    RST. That session ends with reason=upstream_error, its client's
    connection is closed (RST or FIN) after an intact prefix of the stream,
    and a long transfer through the same listener, running meanwhile, goes
    on to the end with every byte intact. Relayed by copy and by splice."""
    srv = handler_server(_rst_backend)
    g = gk(h.simple_config([("t", "127.0.0.1:0", srv.addr)], defaults={"splice": splice}))
    addr = g.addr("t")

    # the keeper: a long echo transfer, both ways at once, until told to stop
    keeper = connect(addr, timeout=30)
    keeper_me = keeper.getsockname()[:2]
    keeper.sendall(b"keeper\n")
    stop = threading.Event()
    sent_hash, got_hash = hashlib.sha256(), hashlib.sha256()
    progress = {"sent": 0, "got": 0}
    errors = []

    def keeper_send():
        try:
            i = 0
            while not stop.is_set() or i < 16:
                chunk = deterministic_bytes(1 << 16, seed=1000 + i)
                keeper.sendall(chunk)
                sent_hash.update(chunk)
                progress["sent"] += len(chunk)
                i += 1
            keeper.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(("send", repr(e)))

    def keeper_recv():
        try:
            keeper.settimeout(60)
            while True:
                d = keeper.recv(1 << 16)
                if not d:
                    return
                got_hash.update(d)
                progress["got"] += len(d)
        except OSError as e:
            errors.append(("recv", repr(e)))

    threads = [threading.Thread(target=keeper_send), threading.Thread(target=keeper_recv)]
    for t in threads:
        t.start()
    try:
        poll(lambda: progress["got"] >= 4 << 20, 30, "the keeper session moving data", g)

        # the victim: reads the stream while sending, until the upstream aborts
        victim = connect(addr, timeout=30)
        victim_me = victim.getsockname()[:2]
        victim.sendall(b"victim\n")
        vstop = threading.Event()

        def victim_send():
            i = 0
            try:
                while not vstop.is_set():
                    victim.sendall(deterministic_bytes(1 << 16, seed=i))
                    i += 1
            except OSError:
                pass  # the reset reaches the sender too

        vs = threading.Thread(target=victim_send)
        vs.start()
        got = bytearray()
        how = None
        victim.settimeout(30)
        try:
            while True:
                try:
                    d = victim.recv(1 << 16)
                except ConnectionResetError:
                    how = "reset"
                    break
                if not d:
                    how = "eof"
                    break
                got += d
        finally:
            vstop.set()
            vs.join(30)
            victim.close()
        res = srv.wait_results(1, timeout=30)[0]
        # the abort came while both directions were busy
        assert res["sent"] >= 4 << 20 and res["drained"] >= 1 << 20, res
        assert how in ("eof", "reset")
        assert len(got) > 0
        stream = deterministic_bytes(8 << 20, seed=91)
        assert len(got) <= res["sent"] and bytes(got) == stream[:len(got)], \
            "the victim's bytes are not a prefix of what the upstream sent"
        acc = g.wait_access_for(victim_me, timeout=15)
        assert acc["reason"] == "upstream_error", acc
        assert int(acc["bytes_out"]) >= len(got), acc
        assert int(acc["bytes_in"]) >= res["drained"], acc

        # the keeper is still mid-transfer, and goes on to the end
        moved = progress["got"]
        poll(lambda: progress["got"] >= moved + (2 << 20), 30, "the keeper still moving data", g)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    keeper.close()
    assert not errors, errors
    assert progress["got"] == progress["sent"]
    assert got_hash.hexdigest() == sent_hash.hexdigest(), "the parallel session's data was corrupted"
    acc = g.wait_access_for(keeper_me, timeout=15)
    assert acc["reason"] == "closed", acc
    assert int(acc["bytes_in"]) == progress["sent"] + len(b"keeper\n"), acc
    assert int(acc["bytes_out"]) == progress["sent"], acc
    assert echo_roundtrip(addr, b"keeper\nnew") == b"new"
    assert g.alive()


# --------------------------------------------------------------------------
# 5. 1000 connections in one burst at max_connections

BURST = 1000
LIMIT = 100


class Gate:
    """The burst's backend handler: echoes one line, but holds each answer
    until LIMIT connections are open at once (or a second passed), so that
    sessions overlap as much as gatekeeper lets them. peak: the most
    connections open at once, each counted from its accept until its
    client's EOF arrives (a stretch inside gatekeeper's session for it)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.open = 0
        self.peak = 0

    def handler(self, conn, srv):
        with self.cond:
            self.open += 1
            self.peak = max(self.peak, self.open)
            self.cond.notify_all()
        counted = True
        try:
            line = b""
            while not line.endswith(b"\n"):
                b = conn.recv(256)
                if not b:
                    break
                line += b
            with self.cond:
                self.cond.wait_for(lambda: self.open >= LIMIT, timeout=1.0)
            conn.sendall(line)
            while conn.recv(256):
                pass
            with self.cond:
                self.open -= 1
                counted = False
            conn.shutdown(socket.SHUT_WR)
            srv.record(line)
        finally:
            if counted:
                with self.cond:
                    self.open -= 1


def _burst_clients(addr, n, deadline):
    """Open n non-blocking connections at once; each sends one line,
    half-closes, and reads the echo to EOF. Returns {i: reply or error}."""
    sel = selectors.DefaultSelector()
    state = {}
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(addr)
        if err not in (0, 115):  # EINPROGRESS
            state[i] = OSError(err, os.strerror(err))
            s.close()
            continue
        sel.register(s, selectors.EVENT_WRITE, (i, bytearray(), [False]))
    results = dict(state)
    while len(results) < n and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=0.5):
            s = key.fileobj
            i, buf, sent = key.data
            if not sent[0]:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                try:
                    if err:
                        raise OSError(err, os.strerror(err))
                    s.send(b"request %d\n" % i)  # tiny: fits any socket buffer
                    s.shutdown(socket.SHUT_WR)
                except OSError as e:
                    results[i] = e
                    sel.unregister(s)
                    s.close()
                    continue
                sent[0] = True
                sel.modify(s, selectors.EVENT_READ, key.data)
                continue
            try:
                d = s.recv(4096)
            except ConnectionError as e:
                results[i] = e
                sel.unregister(s)
                s.close()
                continue
            if d:
                buf += d
                continue
            results[i] = bytes(buf)
            sel.unregister(s)
            s.close()
    for key in list(sel.get_map().values()):
        results.setdefault(key.data[0], TimeoutError("not served before the deadline"))
        key.fileobj.close()
    sel.close()
    return results


def test_burst_of_1000_connections_at_max_connections(gk, echo, handler_server):
    """1000 clients connect in one burst to a tcp listener with
    max_connections: 100. As documented (README, Limits), the listener stops
    accepting at the limit and the others wait: in the kernel's accept queue
    (backlog 511), the rest retransmitting their SYN, and nobody is accepted
    and then dropped. So every client is served with its own bytes, in
    exactly 1000 sessions all ending 'closed', gatekeeper never holds more
    than 100 sessions (its connections_active gauge, sampled all along, and
    the backend's own count), RSS stays bounded, and a client of another
    listener is served meanwhile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = BURST + 1024  # the clients here; gatekeeper inherits the limit
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip("RLIMIT_NOFILE hard limit %d is below the %d this test needs" % (hard, want))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    gate = Gate()
    backend = handler_server(gate.handler, backlog=LIMIT * 2)
    try:
        other_backend = echo()
        admin = free_port()
        g = gk("admin:\n  listen: 127.0.0.1:%d\n" % admin + h.simple_config([
            ("t", "127.0.0.1:0", backend.addr, {"max_connections": LIMIT}),
            ("other", "127.0.0.1:0", other_backend.addr),
        ], defaults={"connect_timeout": "10s", "idle_timeout": "120s"}))
        addr = g.addr("t")
        pid = g.proc.pid
        base = rss_bytes(pid)

        samples = {"active_max": 0, "rss_max": base, "n": 0}
        done = threading.Event()
        scrape_errors = []

        def sample():
            while not done.is_set():
                try:
                    m = metrics(admin)
                    v = metric(m, "gatekeeper_connections_active", listener="t") or 0
                    samples["active_max"] = max(samples["active_max"], v)
                    samples["rss_max"] = max(samples["rss_max"], rss_bytes(pid))
                    samples["n"] += 1
                except Exception as e:  # reported below
                    scrape_errors.append(repr(e))
                    return
                time.sleep(0.02)

        other_results = []

        def other_client():
            i = 0
            while not done.is_set() or i < 3:
                try:
                    other_results.append(echo_roundtrip(g.addr("other"), b"other %d" % i, timeout=20)
                                         == b"other %d" % i)
                except OSError as e:
                    other_results.append(repr(e))
                i += 1
                time.sleep(0.1)

        threads = [threading.Thread(target=sample), threading.Thread(target=other_client)]
        for t in threads:
            t.start()
        try:
            results = _burst_clients(addr, BURST, time.monotonic() + 150)
        finally:
            done.set()
            for t in threads:
                t.join(60)

        failed = {i: r for i, r in results.items() if r != b"request %d\n" % i}
        assert not failed, "%d of %d clients not served, e.g. %r" % (
            len(failed), BURST, sorted(failed.items())[:5])
        assert not scrape_errors, scrape_errors
        assert samples["n"] > 0
        assert samples["active_max"] <= LIMIT, "gatekeeper held %d sessions" % samples["active_max"]
        assert gate.peak <= LIMIT, "the backend saw %d connections at once" % gate.peak
        # the limit was reached (so the test did test it)
        assert gate.peak == LIMIT, gate.peak
        assert other_results and all(r is True for r in other_results), other_results

        acc = [a for a in g.wait_access(BURST + len(other_results), timeout=60) if a["listener"] == "t"]
        assert len(acc) == BURST
        assert {a["reason"] for a in acc} == {"closed"}, {a["reason"] for a in acc}
        m = metrics(admin)
        assert metric(m, "gatekeeper_connections_accepted_total", listener="t") == BURST
        assert metric(m, "gatekeeper_connections_active", listener="t") == 0
        assert backend.accepted == BURST
        grown = samples["rss_max"] - base
        assert grown < rss_bound(32 << 20), "RSS grew by %d bytes during the burst" % grown
        assert g.alive()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --------------------------------------------------------------------------
# 4. Clock steps (libfaketime)
#
# gatekeeper runs under libfaketime with FAKETIME_TIMESTAMP_FILE, so the test
# changes the offset while it runs (FAKETIME_NO_CACHE=1 rereads it on every
# call). FAKETIME_DONT_FAKE_MONOTONIC=1 steps only the wall clock, as NTP
# does; libevent's timers run on the monotonic clock. libevent re-reads the
# wall clock's offset from the monotonic one at most every 5 s
# (CLOCK_SYNC_INTERVAL), so after a step the tests keep going for longer than
# that before they conclude.

needs_faketime = [
    pytest.mark.skipif(not os.path.exists(LIBFAKETIME),
                       reason="libfaketime not installed (%s; Debian package faketime, "
                              "scripts/deps.sh test installs it)" % LIBFAKETIME),
    pytest.mark.skipif(SANITIZED, reason="a sanitizer build (%s) cannot run under "
                                         "LD_PRELOAD=libfaketime" % h.GK_BIN),
]

# A ping every 2.51 s keeps a session with idle_timeout 5s busy with a wide
# margin, and puts every expiry of its idle timer (5 s after the ping before
# last) just before a ping: the timer always fires with the latest ping
# 2.5 s old.
PING_EVERY = 2.51


def faketime(fn):
    for m in needs_faketime:
        fn = m(fn)
    return fn


class FakeClock:
    """The offset file libfaketime reads, and the env that preloads it."""

    def __init__(self, tmp_path, fake_monotonic=False):
        self.path = str(tmp_path / "faketime-offset")
        self.set("+0")
        self.env = {
            "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME_TIMESTAMP_FILE": self.path,
            "FAKETIME_NO_CACHE": "1",
        }
        if not fake_monotonic:
            self.env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"

    def set(self, offset):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(offset + "\n")
        os.replace(tmp, self.path)


def log_time(rec):
    return datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def probe(g, listener_name, payload=b"probe"):
    """A new connection through listener_name; returns how far gatekeeper's
    wall clock is from the real one, in hours, by its access line."""
    s = connect(g.addr(listener_name))
    me = s.getsockname()[:2]
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s, timeout=15) == payload
    s.close()
    acc = g.wait_access_for(me, timeout=15)
    assert acc["reason"] == "closed", acc
    return (log_time(acc) - time.time()) / 3600


def keep_busy(session, seconds):
    """Ping session every PING_EVERY seconds for `seconds`; a session cut
    meanwhile fails the test with its access line."""
    end = time.monotonic() + seconds
    nxt = time.monotonic()
    while time.monotonic() < end:
        session.check()
        nxt += PING_EVERY
        time.sleep(max(0.0, nxt - time.monotonic()))


def session_cut(g, session):
    acc = [a for a in g.access_lines() if a.get("client") == h.join_hostport(*session.me)]
    return "session cut by gatekeeper: %r" % (acc[-1] if acc else "no access line yet")


def idle_timeout_session(gk, echo, tmp_path):
    """A gatekeeper under a fake clock with listener "t" (idle_timeout 5s)
    and "probe" (for reading the wall clock), and a long session on "t"."""
    e = echo()
    clock = FakeClock(tmp_path)
    g = gk(h.simple_config([("t", "127.0.0.1:0", e.addr, {"idle_timeout": "5s"}),
                            ("probe", "127.0.0.1:0", e.addr)]), env=clock.env)
    return clock, g, LongSession(g.addr("t"))


@faketime
def test_wall_clock_step_forward_does_not_cut_an_active_session(gk, echo, tmp_path):
    """A session with idle_timeout 5s that moves bytes every 2.5 s is not
    closed when the wall clock steps forward 2 h (twice), and new
    connections are served after each step."""
    clock, g, session = idle_timeout_session(gk, echo, tmp_path)
    try:
        session.check()
        assert abs(probe(g, "probe")) < 0.5
        for hours in (2, 4):
            clock.set("+%dh" % hours)
            assert abs(probe(g, "probe") - hours) < 0.5, "the wall clock did not step"
            try:
                keep_busy(session, 10)
            except (OSError, AssertionError):
                raise AssertionError(session_cut(g, session))
        session.finish()
    finally:
        session.sock.close()
    assert g.wait_access_for(session.me)["reason"] == "closed"
    assert g.alive()


@faketime
def test_wall_clock_step_back_keeps_the_idle_timeout(gk, echo, tmp_path):
    """After the wall clock steps back 2 h (twice) under a busy session with
    idle_timeout 5s, the session is not cut, and once it goes idle it is
    closed with reason=idle_timeout as usual (waited for up to 30 s)."""
    clock, g, session = idle_timeout_session(gk, echo, tmp_path)
    try:
        session.check()
        for hours in (2, 4):
            clock.set("-%dh" % hours)
            assert abs(probe(g, "probe") + hours) < 0.5, "the wall clock did not step"
            try:
                keep_busy(session, 10)
            except (OSError, AssertionError) as ex:
                pytest.fail("%s (%r)" % (session_cut(g, session), ex))
        how = wait_closed(session.sock, timeout=30)  # AssertionError: still open
    finally:
        session.sock.close()
    assert how in ("eof", "reset")
    assert g.wait_access_for(session.me)["reason"] == "idle_timeout"
    assert g.alive()


@faketime
def test_wall_clock_steps_keep_logging_serving_and_resolving(gk, echo, dns, tmp_path):
    """The wall clock steps +2h, then back -2h. After each step: log lines
    keep coming and carry the stepped time, new connections are served, a
    session without idle timeout relays on intact, the resolver keeps
    refreshing a resolved name every second (dnsmasq sees the queries), and a
    name added to DNS after the step is picked up by its retries."""
    e = echo()
    dns.set("c.gk.test", ["127.0.0.1"])
    clock = FakeClock(tmp_path)
    g = gk(resolver_config(dns.nameserver, [
        listener("a", "a.gk.test:%d" % e.port),
        listener("b", "b.gk.test:%d" % e.port),
        listener("c", "c.gk.test:%d" % e.port),
        listener("plain", e.addr, idle_timeout=0),
    ], timeout="500ms", refresh="1s"), env=clock.env)
    poll(lambda: try_echo(g.addr("c")), 15, "the resolved name serving", g)
    session = LongSession(g.addr("plain"))
    session.check()

    def c_queries():
        return dns.logs().count("query[A] c.gk.test ")

    for offset, hours, name in (("+2h", 2, "a"), ("+0", 0, "b")):
        clock.set(offset)
        assert abs(probe(g, "c") - hours) < 0.5, "the wall clock did not step"
        mark = g.mark()  # every line from here on was written after the step
        assert abs(probe(g, "plain") - hours) < 0.5
        # the periodic refresh goes on: seven more lookups, spanning the
        # moment libevent picks up the new wall-clock offset
        n = c_queries()
        poll(lambda: c_queries() >= n + 7, 30, "c.gk.test refreshed after the step", g)
        # a name that appears in DNS after the step is found by the retries
        refused_no_address(g, g.addr(name), name)
        dns.set("%s.gk.test" % name, ["127.0.0.1"])
        poll(lambda: try_echo(g.addr(name)), 20, "%s.gk.test serving after the step" % name, g)
        session.check(b"after %s" % offset.encode())
        # log lines kept coming, stamped with the stepped clock
        stamped = [log_time(d) for d in g.parsed()[mark:] if "ts" in d]
        assert len(stamped) >= 5, g.tail()
        assert all(abs((t - time.time()) / 3600 - hours) < 0.5 for t in stamped), g.tail()
    assert try_echo(g.addr("a")) and try_echo(g.addr("b")) and try_echo(g.addr("c"))
    session.finish()
    assert g.wait_access_for(session.me)["reason"] == "closed"
    assert g.alive()


@faketime
def test_wall_clock_step_back_access_line_duration(gk, echo, tmp_path):
    """A session that spans a -2h wall-clock step (and lasts ~10 s) is logged
    with a duration_ms between 0 and one hour."""
    e = echo()
    clock = FakeClock(tmp_path)
    g = gk(h.simple_config([("t", "127.0.0.1:0", e.addr, {"idle_timeout": "0"})]), env=clock.env)
    session = LongSession(g.addr("t"))
    session.check()
    clock.set("-2h")
    keep_busy(session, 10)
    session.finish()
    acc = g.wait_access_for(session.me)
    assert acc["reason"] == "closed", acc
    assert 0 <= int(acc["duration_ms"]) < 3600 * 1000, acc


@faketime
@pytest.mark.ipv6
def test_wall_clock_step_back_keeps_reresolve_after_connect_failure(gk, tmp_path, ipv6_available):
    """The upstream moves (its old address stops listening, DNS gives the new
    one; TTL and refresh are 60 s) after the wall clock stepped back 2 h: a
    failed connect still triggers a fresh lookup, and a connection reaches the
    new address within 15 s, as it does without the step
    (test_dns.py::test_dns_connect_failure_triggers_fresh_lookup)."""
    from dnsserver import DnsServer

    def greeter(tag):
        def handler(conn, srv):
            conn.sendall(tag + b"\n")
            while conn.recv(4096):
                pass
        return handler

    for _ in range(50):
        old = h.HandlerServer(greeter(b"v4"), host="127.0.0.1")
        try:
            new = h.HandlerServer(greeter(b"v6"), host="::1", port=old.port)
            break
        except OSError:
            old.close()
    else:
        pytest.skip("no port free on both 127.0.0.1 and ::1")
    dns = DnsServer(ttl=60)
    clock = FakeClock(tmp_path)
    try:
        dns.set(NAME, ["127.0.0.1"])
        g = gk(resolver_config(dns.nameserver, [listener("named", "%s:%d" % (NAME, old.port))],
                               timeout="500ms", refresh="60s"), env=clock.env)
        addr = g.addr("named")

        def greeting():
            try:
                s = connect(addr, timeout=5)
            except OSError:
                return None
            try:
                s.settimeout(5)
                return s.recv(3)
            except OSError:
                return None
            finally:
                s.close()

        assert poll(greeting, 15, "the first connection", g) == b"v4\n"
        clock.set("-2h")
        # traffic for longer than libevent's 5 s clock re-sync, all served
        end = time.monotonic() + 8
        while time.monotonic() < end:
            assert greeting() == b"v4\n"
            time.sleep(0.5)
        mark = g.mark()
        dns.set(NAME, ["::1"])
        old.close()  # the old address now refuses connections
        poll(lambda: greeting() == b"v6\n", 15,
             "a connection reaching the new address after a connect failure", g)
        assert records(g, after=mark, msg="access", reason="connect_failed"), g.tail()
    finally:
        dns.close()
        old.close()
        new.close()


@faketime
def test_monotonic_clock_jump_forward(gk, echo, dns, tmp_path):
    """Both clocks (wall and monotonic) jump forward 1 h: every pending timer
    is due at once. gatekeeper does not crash, keeps logging, and new
    connections to a literal and a named upstream are served."""
    e = echo()
    dns.set(NAME, ["127.0.0.1"])
    clock = FakeClock(tmp_path, fake_monotonic=True)
    g = gk(resolver_config(dns.nameserver, [
        listener("named", "%s:%d" % (NAME, e.port)),
        listener("literal", e.addr, idle_timeout="5s"),
    ], timeout="500ms", refresh="1s"), env=clock.env)
    poll(lambda: try_echo(g.addr("named")), 15, "the named listener serving", g)
    held = connect(g.addr("literal"))
    held.sendall(b"held")
    assert recv_exact(held, 4) == b"held"
    clock.set("+1h")
    for _ in range(3):
        poll(lambda: try_echo(g.addr("literal"), b"after"), 15, "the literal listener serving", g)
        poll(lambda: try_echo(g.addr("named"), b"after"), 15, "the named listener serving", g)
        time.sleep(1)
    assert abs(probe(g, "literal") - 1) < 0.5, "the clock did not jump"
    held.close()
    assert g.alive()
    assert g.stop() == 0
