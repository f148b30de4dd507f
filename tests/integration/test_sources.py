"""Who may connect: listener `sources` and `client_sources`,
`max_connections_per_source`, and `sources` on routes and allow entries.

Clients bind a loopback alias (127.0.0.2, 127.0.0.3, ...) or ::1 before they
connect, so gatekeeper sees each as its own source. Every refusal is checked
on the wire (a plain close, TLS alert access_denied, 403 / 429 with
X-Gatekeeper-Reason), in the access line (reason, decision, client, peer,
upstream "-"), at the backend (nothing accepted, nothing relayed), in
/metrics, and against a connection from an allowed source that was open
before it and keeps flowing.

Source names are served by a real dnsmasq (dnsserver.DnsServer) under
gk.test, whose hosts file the test rewrites; gatekeeper re-resolves them
every second. Addresses inside PROXY headers (10.9.9.x, 2001:db8::x) are only
text in a header: no packet goes anywhere but 127.0.0.0/8 and ::1.

Waits are upper bounds only; nothing asserts a duration.
"""

import json
import os
import re
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest

import gkharness as h
import tlsutil as t

C1, C2, C3, C4, C5 = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"

# TLS alert records: type 21, TLS 1.2, length 2, fatal (2), description.
ALERT_ACCESS_DENIED = bytes.fromhex("15030300020231")  # 49
ALERT_UNRECOGNIZED_NAME = bytes.fromhex("15030300020270")  # 112

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


# --------------------------------------------------------------------------
# Config

def yv(v):
    """A YAML value: JSON is YAML's flow style (lists, mappings, strings)."""
    return json.dumps(v)


def L(name, mode="tcp", listen="127.0.0.1:0", **keys):
    """One listeners[] entry; every value written as JSON flow."""
    lines = ["  - name: %s" % name, "    listen: %s" % yv(listen), "    mode: %s" % mode]
    for k, v in keys.items():
        lines.append("    %s: %s" % (k, yv(v)))
    return "\n".join(lines) + "\n"


def cfg(*listeners, dns=None, admin=None, workers=None, level="info"):
    out = ["log:\n  level: %s\n" % level]
    if workers:
        out.append("workers: %d\n" % workers)
    if admin:
        out.append("admin:\n  listen: 127.0.0.1:%d\n" % admin)
    if dns is not None:
        out.append('resolver:\n  nameservers: ["%s"]\n  refresh: 1s\n  min_ttl: 0s\n  timeout: 500ms\n'
                   % dns.nameserver)
    out.append("defaults:\n  connect_timeout: 3s\n  idle_timeout: 60s\n  sniff_timeout: 5s\n")
    out.append("listeners:\n")
    out.extend(listeners)
    return "".join(out)


LOOPBACK_OK = ["127.0.0.0/8"]  # the egress guard refuses loopback by default


# --------------------------------------------------------------------------
# Backends

class HttpBackend(h.HandlerServer):
    """A keep-alive HTTP/1.1 origin. Records every request it gets as
    {host, target, bytes, sha, xff}; answers 200 with the body
    "tag=T host=H target=P bytes=N sha=S\\n"."""

    def __init__(self, tag, host="127.0.0.1", port=0):
        self.tag = tag
        super().__init__(self._serve, host=host, port=port)

    def _serve(self, conn, server):
        conn.settimeout(30)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                b = conn.recv(65536)
                if not b:
                    return
                buf += b
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            n = int(hdrs.get("content-length", "0") or 0)
            while len(buf) < n:
                b = conn.recv(65536)
                if not b:
                    return
                buf += b
            body, buf = buf[:n], buf[n:]
            self.record({"host": hdrs.get("host"), "target": parts[1] if len(parts) > 1 else None,
                         "bytes": n, "sha": h.sha256(body), "xff": hdrs.get("x-forwarded-for")})
            out = ("tag=%s host=%s target=%s bytes=%d sha=%s\n"
                   % (self.tag, hdrs.get("host"), parts[1], n, h.sha256(body))).encode()
            close = "close" in hdrs.get("connection", "").lower()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
                         % (len(out), b"Connection: close\r\n" if close else b"") + out)
            if close:
                conn.shutdown(socket.SHUT_WR)
                return


@pytest.fixture
def backends():
    made = []

    def make(cls, *a, **kw):
        b = cls(*a, **kw)
        made.append(b)
        return b

    yield make
    for b in reversed(made):
        b.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return t.make_cert(tmp_path_factory.mktemp("sources-certs"), "a.gk.test")


# --------------------------------------------------------------------------
# Clients

class Conn:
    """A client connection from source address `src` (None: the kernel's
    choice). .mark is gatekeeper's log length before it connected, so only a
    later access line can be this connection's (client ports get reused)."""

    def __init__(self, g, addr, src=None, timeout=10):
        self.g = g
        self.mark = g.mark()
        host, port = addr[0], addr[1]
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            if src:
                self.sock.bind((src, 0))
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.local = self.sock.getsockname()[:2]
        self.client = h.join_hostport(*self.local)

    def send(self, data):
        return t.send_ignoring_reset(self.sock, data)

    def roundtrip(self, data, timeout=10):
        self.sock.sendall(data)
        return h.recv_exact(self.sock, len(data), timeout=timeout)

    def until_close(self, timeout=10):
        """Everything read until gatekeeper closes (raises if it stays open)."""
        return t.read_until_close(self.sock, timeout=timeout)[0]

    def finish(self):
        """Half-close, read to EOF, close: the session ends as reason=closed."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            h.recv_all(self.sock, timeout=10)
        except OSError:
            pass
        self.sock.close()

    def close(self):
        self.sock.close()

    def access(self, client=None, timeout=15):
        return access(self.g, client or self.client, self.mark, timeout)


def access(g, client, after=0, timeout=15):
    """The access line of `client` ("host:port") written after line `after`."""
    deadline = time.monotonic() + timeout
    while True:
        for line in g.lines()[after:]:
            d = h.parse_line(line)
            if d.get("msg") == "access" and d.get("client") == client:
                return d
        if time.monotonic() > deadline:
            raise AssertionError("no access line for client %s after %ss; log tail:\n%s"
                                 % (client, timeout, g.tail()))
        time.sleep(0.02)


def access_any(g, clients, after=0, timeout=15):
    """The access line of any of `clients` (a mapped client may be logged in
    either form) written after line `after`."""
    deadline = time.monotonic() + timeout
    while True:
        for line in g.lines()[after:]:
            d = h.parse_line(line)
            if d.get("msg") == "access" and d.get("client") in clients:
                return d
        if time.monotonic() > deadline:
            raise AssertionError("no access line for %s after %ss; log tail:\n%s"
                                 % (clients, timeout, g.tail()))
        time.sleep(0.02)


def assert_refused(acc, reason, client, peer=None):
    """An access line of a connection refused before any dial."""
    assert acc["reason"] == reason, acc
    assert acc["decision"] == ("deny" if reason == "source_denied" else "-"), acc
    assert acc["client"] == client, acc
    assert acc["upstream"] == "-", acc
    if peer is not None:
        assert acc.get("peer") == peer, acc


def read_head(sock, timeout=10):
    """One HTTP response head: (status, {lower name: value}, head, rest)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            b = b""
        if not b:
            raise AssertionError("EOF before a response head: %r" % buf[:300])
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert m, lines[0]
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(m.group(1)), hdrs, head + b"\r\n\r\n", rest


def connect_request(target, headers=()):
    lines = ["CONNECT %s HTTP/1.1" % target, "Host: %s" % target] + list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_refusal(c, raw, status, reason):
    """Send raw on Conn c; the answer is `status` with X-Gatekeeper-Reason
    `reason`, Connection: close, and gatekeeper closes."""
    c.send(raw)
    resp = t.HttpReader(c.sock).response()
    assert resp.status == status, resp
    assert resp.header("x-gatekeeper-reason") == reason, resp
    assert (resp.header("connection") or "").lower() == "close", resp
    c.until_close()
    return resp


def tls_open(g, addr, src, sni, timeout=10):
    """A real TLS client (Python's ssl) from src through gatekeeper to a
    TlsBackend; returns (Conn, ssl socket, greeting line)."""
    c = Conn(g, addr, src, timeout)
    tls = t.client_context().wrap_socket(c.sock, server_hostname=sni)
    f = b""
    while not f.endswith(b"\n"):
        b = tls.recv(4096)
        if not b:
            raise AssertionError("TLS connection closed before the greeting")
        f += b
    return c, tls, f.decode().strip()


def tls_finish(tls):
    """End a TLS session cleanly: close_notify both ways, then TCP EOF."""
    try:
        s = tls.unwrap()
    except (ssl.SSLError, OSError, ValueError):
        tls.close()
        return
    try:
        s.shutdown(socket.SHUT_WR)
        h.recv_all(s, timeout=10)
    except OSError:
        pass
    s.close()


def tls_refused(g, addr, src, sni):
    """A hand-made ClientHello for sni from src; returns (bytes gatekeeper
    sent before closing, Conn)."""
    c = Conn(g, addr, src)
    c.send(t.raw_client_hello(sni))
    got = c.until_close()
    c.close()
    return got, c


def http_get(c, host, path="/", close=True, body=b"", method=None):
    extra = ["Content-Length: %d" % len(body)] if body else []
    raw = t.http_request(host, path=path, method=method or ("POST" if body else "GET"),
                         extra=extra, close=close) + body
    c.sock.sendall(raw)
    return t.HttpReader(c.sock).response()


# --------------------------------------------------------------------------
# Admin

def admin_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(port):
    out = {}
    for line in admin_get(port, "/metrics")[1].splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def closed_total(port, listener, decision, reason):
    return metrics(port).get(("gatekeeper_connections_closed_total",
                              frozenset({"listener": listener, "decision": decision,
                                         "reason": reason}.items())), 0)


def poll(fn, timeout=10, interval=0.1):
    """fn() until it returns a true value; returns it, or the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# tcp helpers

def tcp_passes(g, addr, src, payload=b"ping"):
    """True when a connection from src is relayed to the echo backend
    (the bytes come back), False when gatekeeper closes it unanswered."""
    c = Conn(g, addr, src)
    try:
        c.send(payload)
        c.sock.shutdown(socket.SHUT_WR)
        got = c.until_close()
    except OSError:
        got = b""
    finally:
        c.close()
    if got == payload:
        return True
    assert got == b"", "neither relayed nor refused: %r" % got[:200]
    return False


def tcp_refused(g, addr, src, reason="source_denied"):
    """A connection from src that sends nothing is closed by gatekeeper by
    itself, and logged as refused; returns the access line."""
    c = Conn(g, addr, src)
    got = c.until_close()
    c.close()
    assert got == b"", got[:200]
    acc = c.access()
    assert_refused(acc, reason, c.client)
    return acc


# ==========================================================================
# Listener `sources`, every mode

MODES = ["tcp", "tls", "http", "connect"]


@pytest.fixture
def mode_env(gk, backends, cert, request):
    """One listener of the given mode with sources [127.0.0.2], in front of
    a real backend, with the admin endpoint on."""
    mode = request.param
    admin = h.free_port()
    if mode == "tcp":
        be = backends(h.EchoServer)
        lst = L("in", "tcp", upstream=be.addr, sources=[C2])
    elif mode == "tls":
        be = backends(t.TlsBackend, cert, "a")
        lst = L("in", "tls", routes=[{"match": "a.gk.test", "upstream": be.addr}], sources=[C2])
    elif mode == "http":
        be = backends(HttpBackend, "web")
        lst = L("in", "http", routes=[{"match": "a.gk.test", "upstream": be.addr}], sources=[C2])
    else:
        be = backends(h.EchoServer)
        lst = L("in", "connect", allow=["127.0.0.1:%d" % be.port], allow_ranges=LOOPBACK_OK,
                sources=[C2])
    g = gk(cfg(lst, admin=admin))
    return mode, g, g.addr("in"), be, admin


class Session:
    """A session from an allowed source in the given mode: open() it, then
    check() that it still carries bytes, then end() it."""

    def __init__(self, mode, g, addr, be, src=C2):
        self.mode, self.g, self.addr, self.be, self.src = mode, g, addr, be, src

    def open(self):
        m = self.mode
        if m == "tcp":
            self.c = Conn(self.g, self.addr, self.src)
            assert self.c.roundtrip(b"hello") == b"hello"
        elif m == "tls":
            self.c, self.tls, line = tls_open(self.g, self.addr, self.src, "a.gk.test")
            assert line == "tag=a sni=a.gk.test", line
        elif m == "http":
            self.c = Conn(self.g, self.addr, self.src)
            self.reader = None
            resp = http_get(self.c, "a.gk.test", close=False)
            assert resp.status == 200 and resp.body.startswith(b"tag=web host=a.gk.test"), resp
        else:
            self.c = Conn(self.g, self.addr, self.src)
            self.c.sock.sendall(connect_request("127.0.0.1:%d" % self.be.port))
            status, _, head, rest = read_head(self.c.sock)
            assert status == 200 and head == ESTABLISHED and rest == b"", head
            # bytes through: the backend has accepted by now
            assert self.c.roundtrip(b"hello") == b"hello"
        return self

    def check(self, size=100000, seed=3):
        data = h.deterministic_bytes(size, seed)
        m = self.mode
        if m in ("tcp", "connect"):
            assert h.sha256(self.c.roundtrip(data)) == h.sha256(data)
        elif m == "tls":
            self.tls.sendall(data)
            got = b""
            while len(got) < len(data):
                b = self.tls.recv(65536)
                assert b, "TLS session ended early"
                got += b
            assert h.sha256(got) == h.sha256(data)
        else:
            resp = http_get(self.c, "a.gk.test", path="/again", close=False, body=data)
            assert resp.status == 200, resp
            assert ("bytes=%d sha=%s" % (len(data), h.sha256(data))).encode() in resp.body, resp

    def end(self):
        if self.mode == "tls":
            tls_finish(self.tls)
        else:
            self.c.finish()


def refuse_in_mode(mode, g, addr, src, be_port):
    """Connect from src, do what a client of this mode does, and check the
    source_denied refusal on the wire. Returns the Conn."""
    if mode == "tcp":
        c = Conn(g, addr, src)
        # the client sends nothing: gatekeeper closes by itself, at once
        assert c.until_close() == b""
    elif mode == "tls":
        c = Conn(g, addr, src)
        c.send(t.raw_client_hello("a.gk.test"))
        got = c.until_close()
        assert got == ALERT_ACCESS_DENIED, "expected alert access_denied (49), got %r" % got
    elif mode == "http":
        c = Conn(g, addr, src)
        http_refusal(c, t.http_request("a.gk.test", close=False), 403, "source_denied")
    else:
        c = Conn(g, addr, src)
        http_refusal(c, connect_request("127.0.0.1:%d" % be_port), 403, "source_denied")
    c.close()
    return c


@pytest.mark.parametrize("mode_env", MODES, indirect=True)
def test_listener_sources_admit_one_address_and_refuse_the_others(mode_env):
    mode, g, addr, be, admin = mode_env
    keeper = Session(mode, g, addr, be).open()
    accepted, requests = be.accepted, len(be.results)
    refused = []
    for src in (C3, C1, C4, "127.0.0.22", "127.1.0.2"):
        c = refuse_in_mode(mode, g, addr, src, be.port)
        acc = c.access()
        assert_refused(acc, "source_denied", c.client)
        assert acc["client"].startswith(src + ":"), acc
        refused.append(c)
        # the session opened before keeps flowing
        keeper.check(size=5000, seed=len(refused))
    assert be.accepted == accepted, "a refused client reached the backend"
    if mode == "http":
        assert len(be.results) == requests + len(refused), "keeper's requests only: %r" % be.results

    # a fresh client from the allowed source: end to end
    fresh = Session(mode, g, addr, be).open()
    fresh.check(size=300000, seed=9)
    fresh.end()
    keeper.check(size=1000, seed=11)
    keeper.end()
    for s in (fresh, keeper):
        acc = s.c.access()
        assert acc["reason"] not in ("source_denied", "source_limit"), acc
        assert acc["decision"] != "deny" and acc["upstream"] != "-", acc
    assert be.accepted == accepted + 1

    # counted: one per refusal, as deny/source_denied
    assert poll(lambda: closed_total(admin, "in", "deny", "source_denied") == len(refused)), \
        admin_get(admin, "/metrics")[1]
    assert g.alive()


def test_empty_sources_admit_anyone_and_client_sources_check_the_peer_without_proxy(gk, backends):
    be = backends(h.EchoServer)
    g = gk(cfg(L("open", upstream=be.addr, sources=[]),
               L("unset", upstream=be.addr),
               L("csrc", upstream=be.addr, client_sources=[C2]),
               L("both", upstream=be.addr, sources=["127.0.0.0/30"], client_sources=[C3])))
    for src in (C1, C2, C3, C5):
        assert tcp_passes(g, g.addr("open"), src)
        assert tcp_passes(g, g.addr("unset"), src)
    # client_sources without proxy_protocol: the peer is the client
    assert tcp_passes(g, g.addr("csrc"), C2)
    for src in (C1, C3):
        tcp_refused(g, g.addr("csrc"), src)
    # both lists must hold: .3 is in both, .2 only in sources, .5 only in none
    assert tcp_passes(g, g.addr("both"), C3)
    for src in (C2, C5):
        tcp_refused(g, g.addr("both"), src)
    assert g.alive()


def test_blocks_single_addresses_and_mapped_entries_on_a_v4_listener(gk, backends):
    be = backends(h.EchoServer)
    g = gk(cfg(L("block", upstream=be.addr, sources=["127.0.0.0/30"]),        # .0 - .3
               L("single", upstream=be.addr, sources=["127.0.0.3/32", C5]),
               L("mapped", upstream=be.addr, sources=["::ffff:127.0.0.2"]),
               L("mapped_block", upstream=be.addr, sources=["::ffff:127.0.0.0/126"]),  # .0 - .3
               L("mapped_other", upstream=be.addr, sources=["::ffff:10.0.0.0/104"]),
               L("mapped96", upstream=be.addr, sources=["::1", "::ffff:0:0/96"]),
               L("all4", upstream=be.addr, sources=["0.0.0.0/0"])))
    table = {
        "block": {C1: True, C2: True, C3: True, C4: False, C5: False},
        "single": {C1: False, C2: False, C3: True, C4: False, C5: True},
        "mapped": {C1: False, C2: True, C3: False, C4: False},
        "mapped_block": {C2: True, C3: True, C4: False, C5: False},
        "mapped_other": {C1: False, C2: False},
        # ::ffff:0:0/96 is every IPv4 address in its mapped form
        "mapped96": {C2: True, C3: True},
        "all4": {C2: True, C4: True},
    }
    for lname, cases in table.items():
        for src, ok in cases.items():
            if ok:
                assert tcp_passes(g, g.addr(lname), src), (lname, src, g.tail())
            else:
                tcp_refused(g, g.addr(lname), src)
    assert g.alive()


def test_ipv6_clients_and_blocks(gk, backends, cert, ipv6_available):
    be = backends(h.EchoServer)
    web = backends(HttpBackend, "web")
    tb = backends(t.TlsBackend, cert, "a")
    g = gk(cfg(L("one", upstream=be.addr, listen="[::1]:0", sources=["::1"]),
               L("tls6", "tls", listen="[::1]:0", sources=["::1"],
                 routes=[{"match": "a.gk.test", "upstream": tb.addr}]),
               L("tls4", "tls", listen="[::1]:0", sources=["127.0.0.1"],
                 routes=[{"match": "a.gk.test", "upstream": tb.addr}]),
               L("web6", "http", listen="[::1]:0", sources=["::1"],
                 routes=[{"match": "a.gk.test", "upstream": web.addr}]),
               L("proxy4", "connect", listen="[::1]:0", sources=["127.0.0.1"],
                 allow=["127.0.0.1:%d" % be.port], allow_ranges=LOOPBACK_OK),
               L("proxy6", "connect", listen="[::1]:0", sources=["::1"],
                 allow=["127.0.0.1:%d" % be.port], allow_ranges=LOOPBACK_OK),
               L("block", upstream=be.addr, listen="[::1]:0", sources=["::/127"]),
               L("ula", upstream=be.addr, listen="[::1]:0", sources=["fd00::/8", "127.0.0.1"]),
               L("v4", upstream=be.addr, listen="[::1]:0", sources=["127.0.0.0/8", "::ffff:0:0/96"]),
               L("all4", upstream=be.addr, listen="[::1]:0", sources=["0.0.0.0/0"]),
               L("low32", upstream=be.addr, listen="[::1]:0", sources=["0.0.0.1", "0.0.0.0/8"]),
               L("web", "http", listen="[::1]:0", sources=["fe80::/10"],
                 routes=[{"match": "a.gk.test", "upstream": web.addr}]),
               L("v4listener", upstream=be.addr, sources=["::1"])))
    assert tcp_passes(g, g.addr("one"), "::1")
    assert tcp_passes(g, g.addr("block"), "::1")
    # ::1 is not an IPv4 address, not 0.0.0.1, not inside 0.0.0.0/0
    for lname in ("ula", "v4", "all4", "low32"):
        acc = tcp_refused(g, g.addr(lname), "::1")
        assert acc["client"].startswith("[::1]:"), acc
    c = Conn(g, g.addr("web"), "::1")
    http_refusal(c, t.http_request("a.gk.test"), 403, "source_denied")
    c.close()
    assert_refused(c.access(), "source_denied", c.client)
    assert web.accepted == 0
    # ::1 in a v4 listener's list never admits 127.0.0.1
    tcp_refused(g, g.addr("v4listener"), C1)

    # every mode, from ::1: allowed end to end, or refused as the mode says
    c, tls, line = tls_open(g, g.addr("tls6"), "::1", "a.gk.test")
    assert line == "tag=a sni=a.gk.test"
    tls.sendall(b"six")
    assert tls.recv(10) == b"six"
    tls.close()
    got, c = tls_refused(g, g.addr("tls4"), "::1", "a.gk.test")
    assert got == ALERT_ACCESS_DENIED, got
    assert_refused(c.access(), "source_denied", c.client)
    c = Conn(g, g.addr("web6"), "::1")
    resp = http_get(c, "a.gk.test")
    assert resp.status == 200 and b"tag=web" in resp.body, resp
    c.close()
    assert web.results[-1]["xff"] == "::1", web.results
    c = Conn(g, g.addr("proxy6"), "::1")
    c.sock.sendall(connect_request("127.0.0.1:%d" % be.port))
    assert read_head(c.sock)[0] == 200
    assert c.roundtrip(b"tunnel") == b"tunnel"
    c.close()
    c = Conn(g, g.addr("proxy4"), "::1")
    http_refusal(c, connect_request("127.0.0.1:%d" % be.port), 403, "source_denied")
    c.close()
    assert_refused(c.access(), "source_denied", c.client)
    assert len(web.results) == 1
    assert g.alive()


def test_dual_stack_listener_sees_v4_clients_as_mapped(gk, backends, ipv6_available):
    """A listener on [::]:PORT: an IPv4 client arrives as ::ffff:a.b.c.d (if
    the listener takes IPv4 at all) and matches its IPv4 entry, a mapped
    block, or neither."""
    be = backends(h.EchoServer)
    g = gk(cfg(L("v4entry", upstream=be.addr, listen="[::]:0", sources=["127.0.0.2/32", "::1"]),
               L("mappedblock", upstream=be.addr, listen="[::]:0", sources=["::ffff:127.0.0.0/104"]),
               L("none", upstream=be.addr, listen="[::]:0", sources=["::1"])))
    port = g.addr("v4entry")[1]
    try:
        Conn(g, ("127.0.0.1", port), C2).close()
    except ConnectionRefusedError:
        pytest.skip("IPv6 listeners here take IPv6 only (IPV6_V6ONLY): no mapped clients")
    g.wait_log(r"msg=access", timeout=15)
    assert tcp_passes(g, ("127.0.0.1", port), C2)
    acc = tcp_refused(g, ("127.0.0.1", port), C3)
    assert acc["client"].startswith("[::ffff:127.0.0.3]:") or acc["client"].startswith("127.0.0.3:"), acc
    assert tcp_passes(g, ("::1", port), "::1")
    for src in (C2, C3):
        assert tcp_passes(g, ("127.0.0.1", g.addr("mappedblock")[1]), src)
    tcp_refused(g, ("::1", g.addr("mappedblock")[1]), "::1")
    tcp_refused(g, ("127.0.0.1", g.addr("none")[1]), C2)
    assert g.alive()


# ==========================================================================
# Source names, resolved by gatekeeper

def settled(g, addr, want, rounds=8):
    """True when `rounds` connections in a row from each source in want get
    the verdict want[src] (with several workers each has its own resolver:
    every one must have followed)."""
    for _ in range(rounds):
        for src, ok in want.items():
            if tcp_passes(g, addr, src) != ok:
                return False
    return True


@pytest.mark.parametrize("workers", [1, 2])
def test_source_name_follows_dns(gk, dns, backends, workers):
    be = backends(h.EchoServer)
    dns.set("builder.gk.test", [C2])
    g = gk(cfg(L("named", upstream=be.addr, sources=["builder.gk.test"]), dns=dns, workers=workers))
    addr = g.addr("named")
    assert poll(lambda: settled(g, addr, {C2: True, C3: False, C1: False})), \
        "the name's address never admitted (or others admitted too):\n" + g.tail()
    keep = Conn(g, addr, C2)
    assert keep.roundtrip(b"kept") == b"kept"
    for src in (C3, C1):
        tcp_refused(g, addr, src)

    dns.set("builder.gk.test", [C3])
    # the new address admitted, and the old one dropped, not kept alongside
    assert poll(lambda: settled(g, addr, {C3: True, C2: False})), \
        "the DNS change was not followed:\n" + g.tail()
    acc = tcp_refused(g, addr, C2)
    assert acc["client"].startswith(C2 + ":")
    # a session that was admitted before the change is not cut
    assert keep.roundtrip(b"still") == b"still"
    keep.finish()

    # an answer with several addresses admits each of them
    dns.set("builder.gk.test", [C5, C2, "127.0.0.7"])
    assert poll(lambda: settled(g, addr, {C2: True, C5: True, "127.0.0.7": True, C3: False}, rounds=3)), \
        g.tail()
    assert g.alive()


def test_source_names_in_client_sources_and_rules_match_the_proxy_client(gk, dns, backends):
    """A name in client_sources is matched against the address a PROXY
    header carried (in either form), and a name in a route's sources too;
    one name used in several lists is the same name."""
    be = backends(h.EchoServer)
    web = backends(HttpBackend, "web")
    dns.set("office.gk.test", ["10.9.9.9"])
    trusted = {"accept": True, "trusted": ["127.0.0.2/32"]}
    g = gk(cfg(L("pp", upstream=be.addr, client_sources=["office.gk.test"], proxy_protocol=trusted),
               L("web", "http", proxy_protocol=trusted, sources=["127.0.0.0/8"],
                 routes=[{"match": "a.gk.test", "upstream": web.addr},
                         {"match": "office.gk.test", "upstream": web.addr,
                          "sources": ["office.gk.test"]}]),
               dns=dns))

    def through(hdr):
        got, c = pp_attempt(g, g.addr("pp"), C2, hdr)
        return got == b"payload"

    assert poll(lambda: through(t.proxy_v1(("10.9.9.9", 1000), ("10.0.0.1", 80)))), g.tail()
    assert through(t.proxy_v2(("::ffff:10.9.9.9", 1001), ("::ffff:10.0.0.1", 80)))
    for hdr in (t.proxy_v1(("10.9.9.8", 1002), ("10.0.0.1", 80)), t.proxy_v2(command="LOCAL")):
        assert not through(hdr), hdr

    def get(hdr, host, src=C2):
        c = Conn(g, g.addr("web"), src)
        c.send(hdr + t.http_request(host))
        resp = t.HttpReader(c.sock).response()
        c.close()
        return resp

    assert get(t.proxy_v1(("10.9.9.9", 2000), ("10.0.0.1", 80)), "office.gk.test").status == 200
    for hdr, src in ((t.proxy_v1(("10.9.9.8", 2001), ("10.0.0.1", 80)), C2), (b"", C3)):
        resp = get(hdr, "office.gk.test", src)
        assert resp.status == 403 and resp.header("x-gatekeeper-reason") == "source_denied", resp
    assert get(b"", "a.gk.test", C3).status == 200
    assert [r["host"] for r in web.results] == ["office.gk.test", "a.gk.test"]
    assert g.alive()


def test_source_name_with_a_and_aaaa(gk, dns, backends, ipv6_available):
    be = backends(h.EchoServer)
    dns.set("both.gk.test", [C2, "::1"])
    g = gk(cfg(L("four", upstream=be.addr, sources=["both.gk.test"]),
               L("six", upstream=be.addr, listen="[::1]:0", sources=["both.gk.test"]), dns=dns))
    assert poll(lambda: tcp_passes(g, g.addr("four"), C2)), g.tail()
    assert poll(lambda: tcp_passes(g, g.addr("six"), "::1")), "AAAA answer not used:\n" + g.tail()
    tcp_refused(g, g.addr("four"), C3)
    dns.set("both.gk.test", [C3])
    assert poll(lambda: not tcp_passes(g, g.addr("six"), "::1")), g.tail()
    assert poll(lambda: tcp_passes(g, g.addr("four"), C3)), g.tail()


def test_unresolved_source_name_matches_nothing_and_makes_readyz_503(gk, dns, backends):
    be = backends(h.EchoServer)
    admin = h.free_port()
    g = gk(cfg(L("late", upstream=be.addr, sources=["late.gk.test"]),
               L("mixed", upstream=be.addr, sources=["late.gk.test", C3]),
               L("rule", "http", routes=[{"match": "a.gk.test", "upstream": be.addr,
                                          "sources": ["rule.gk.test"]}]),
               dns=dns, admin=admin))
    status, body = admin_get(admin, "/readyz")
    assert status == 503, body
    assert re.search(r"^listener late: source late\.gk\.test has no address yet \(.+\)$", body, re.M), body
    assert re.search(r"^listener mixed: source late\.gk\.test has no address yet", body, re.M), body
    assert re.search(r"^listener rule: source rule\.gk\.test has no address yet", body, re.M), body
    # never resolved: nobody is admitted through it (not "an empty list: anyone")
    for src in (C1, C2, C3):
        tcp_refused(g, g.addr("late"), src)
    # the other entry of a list still works meanwhile
    assert tcp_passes(g, g.addr("mixed"), C3)
    tcp_refused(g, g.addr("mixed"), C2)
    assert be.accepted == 1

    dns.set("late.gk.test", [C2])
    assert poll(lambda: "late.gk.test" not in admin_get(admin, "/readyz")[1], timeout=20), \
        admin_get(admin, "/readyz")
    status, body = admin_get(admin, "/readyz")
    assert status == 503 and "rule.gk.test" in body, body
    dns.set("rule.gk.test", [C4])
    assert poll(lambda: admin_get(admin, "/readyz")[0] == 200, timeout=15), admin_get(admin, "/readyz")
    assert admin_get(admin, "/readyz") == (200, "ready\n")
    assert poll(lambda: tcp_passes(g, g.addr("late"), C2)), g.tail()
    assert tcp_passes(g, g.addr("mixed"), C2)
    tcp_refused(g, g.addr("late"), C3)
    assert g.alive()


def test_dns_failure_keeps_the_last_good_answer(gk, dns, backends):
    be = backends(h.EchoServer)
    admin = h.free_port()
    dns.set("builder.gk.test", [C2])
    g = gk(cfg(L("named", upstream=be.addr, sources=["builder.gk.test"]), dns=dns, admin=admin))
    addr = g.addr("named")
    assert poll(lambda: tcp_passes(g, addr, C2)), g.tail()

    def failed():
        m = metrics(admin)
        return sum(v for (n, lab), v in m.items() if n == "gatekeeper_dns_lookups_total"
                   and dict(lab).get("result") in ("failed", "timeout"))

    before = failed()
    dns.stop()
    try:
        assert poll(lambda: failed() >= before + 2, timeout=20), \
            "no failed lookups counted while the DNS server is down:\n" + g.tail()
        assert tcp_passes(g, addr, C2), "the last good answer was dropped:\n" + g.tail()
        tcp_refused(g, addr, C3)
        # and it stays so over more failed refreshes
        mark = failed()
        assert poll(lambda: failed() >= mark + 2, timeout=20)
        assert tcp_passes(g, addr, C2)
    finally:
        dns.start()
    # DNS back with another answer: followed again
    dns.set("builder.gk.test", [C3])
    assert poll(lambda: tcp_passes(g, addr, C3), timeout=20), g.tail()
    assert g.alive()


def test_name_gone_from_dns_admits_nobody(gk, dns, backends):
    """A timeout keeps the last good answer (above), but a name that DNS
    says no longer exists (NXDOMAIN: the container was removed) stops
    matching: its old address may be handed to another container."""
    be = backends(h.EchoServer)
    dns.set("builder.gk.test", [C2])
    g = gk(cfg(L("named", upstream=be.addr, sources=["builder.gk.test"]), dns=dns))
    addr = g.addr("named")
    assert poll(lambda: tcp_passes(g, addr, C2)), g.tail()
    dns.remove("builder.gk.test")
    assert poll(lambda: not tcp_passes(g, addr, C2), timeout=20), \
        "a name gone from DNS still admits its old address:\n" + g.tail()
    acc = tcp_refused(g, addr, C2)
    assert acc["client"].startswith(C2 + ":")
    dns.set("builder.gk.test", [C2])
    assert poll(lambda: tcp_passes(g, addr, C2), timeout=20), g.tail()
    assert g.alive()


# ==========================================================================
# Per-rule sources: allow entries and routes

@pytest.fixture
def egress_names(dns):
    for n in ("a.gk.test", "x.b.gk.test", "b.gk.test", "c.gk.test"):
        dns.set(n, [C1])
    return dns


def test_egress_tls_allow_entry_sources(gk, egress_names, backends, cert):
    dns = egress_names
    be = backends(t.TlsBackend, cert, "be")
    g = gk(cfg(L("tls", "tls", port=be.port, allow_ranges=LOOPBACK_OK,
                 allow=["a.gk.test", {"match": "*.b.gk.test", "sources": [C2]}]),
               L("prec", "tls", port=be.port, allow_ranges=LOOPBACK_OK,
                 allow=[{"match": "*.b.gk.test", "sources": [C2]}, "*.gk.test"]),
               dns=dns))
    addr = g.addr("tls")
    keep, keep_tls, line = tls_open(g, addr, C3, "a.gk.test")
    assert line == "tag=be sni=a.gk.test"

    c, tls, line = tls_open(g, addr, C2, "x.b.gk.test")
    assert line == "tag=be sni=x.b.gk.test"
    tls.close()
    acc = c.access()
    assert acc["decision"] == "allow" and acc["rule"] == "*.b.gk.test", acc

    before = be.accepted
    for sni in ("x.b.gk.test", "deep.x.b.gk.test"):
        got, c = tls_refused(g, addr, C3, sni)
        assert got == ALERT_ACCESS_DENIED, (sni, got)
        acc = c.access()
        assert_refused(acc, "source_denied", c.client)
        assert acc["name"] == sni, acc
    # a name no entry matches stays not_allowed, whatever the source
    got, c = tls_refused(g, addr, C3, "c.gk.test")
    assert got == ALERT_UNRECOGNIZED_NAME
    assert c.access()["reason"] == "not_allowed"
    assert be.accepted == before

    # .3 still reaches the unrestricted entry
    c, tls, line = tls_open(g, addr, C3, "a.gk.test")
    assert line == "tag=be sni=a.gk.test"
    tls.close()
    keep_tls.sendall(b"flowing\n")
    assert keep_tls.recv(100) == b"flowing\n"
    keep_tls.close()

    # an entry that does not apply to the client leaves the others to match
    paddr = g.addr("prec")
    c, tls, line = tls_open(g, paddr, C3, "x.b.gk.test")
    tls.close()
    assert line == "tag=be sni=x.b.gk.test"
    acc = c.access()
    assert acc["rule"] == "*.gk.test" and acc["decision"] == "allow", acc
    c, tls, line = tls_open(g, paddr, C2, "x.b.gk.test")
    tls.close()
    assert c.access()["rule"] == "*.b.gk.test"
    assert g.alive()


def test_egress_http_allow_entry_sources_and_keepalive(gk, egress_names, backends):
    dns = egress_names
    be = backends(HttpBackend, "be")
    g = gk(cfg(L("http", "http", port=be.port, allow_ranges=LOOPBACK_OK,
                 allow=["a.gk.test", {"match": "*.b.gk.test", "sources": [C2]}]),
               dns=dns))
    addr = g.addr("http")
    c = Conn(g, addr, C2)
    resp = http_get(c, "x.b.gk.test")
    assert resp.status == 200 and b"host=x.b.gk.test" in resp.body, resp
    c.close()

    n = len(be.results)
    c = Conn(g, addr, C3)
    http_refusal(c, t.http_request("x.b.gk.test"), 403, "source_denied")
    c.close()
    acc = c.access()
    assert_refused(acc, "source_denied", c.client)
    assert acc["name"] == "x.b.gk.test", acc

    # keep-alive: a first request .3 may make, then one it may not
    c = Conn(g, addr, C3)
    resp = http_get(c, "a.gk.test", close=False)
    assert resp.status == 200 and b"host=a.gk.test" in resp.body, resp
    c.send(t.http_request("x.b.gk.test", close=False))
    resp = t.HttpReader(c.sock).response()
    assert resp.status in (403, 421), resp
    if resp.status == 403:
        assert resp.header("x-gatekeeper-reason") == "source_denied", resp
    c.until_close()
    c.close()
    hosts = [r["host"] for r in be.results[n:]]
    assert hosts == ["a.gk.test"], "a refused request was relayed: %r" % hosts
    assert g.alive()


def test_egress_connect_allow_entry_sources(gk, egress_names, backends):
    dns = egress_names
    be = backends(HttpBackend, "be")
    p = be.port
    g = gk(cfg(L("proxy", "connect", allow_ranges=LOOPBACK_OK,
                 allow=["a.gk.test:%d" % p, {"match": "*.b.gk.test:%d" % p, "sources": [C2]}]),
               dns=dns))
    addr = g.addr("proxy")

    def tunnel(src, target):
        c = Conn(g, addr, src)
        c.sock.sendall(connect_request(target))
        status, hdrs, head, rest = read_head(c.sock)
        return c, status, hdrs

    c, status, _ = tunnel(C2, "x.b.gk.test:%d" % p)
    assert status == 200
    resp = http_get(c, "x.b.gk.test")
    assert b"tag=be host=x.b.gk.test" in resp.body
    c.close()

    n = len(be.results)
    accepted = be.accepted
    c = Conn(g, addr, C3)
    http_refusal(c, connect_request("x.b.gk.test:%d" % p), 403, "source_denied")
    c.close()
    acc = c.access()
    assert_refused(acc, "source_denied", c.client)
    assert acc["name"] == "x.b.gk.test", acc
    assert be.accepted == accepted

    c, status, _ = tunnel(C3, "a.gk.test:%d" % p)
    assert status == 200
    assert b"host=a.gk.test" in http_get(c, "a.gk.test").body
    c.close()

    # absolute-form requests on one keep-alive connection: the second one
    # names a host .3 may not reach, and is not relayed
    c = Conn(g, addr, C3)
    resp = http_get(c, "a.gk.test:%d" % p, path="http://a.gk.test:%d/one" % p, close=False)
    assert resp.status == 200, resp
    c.send(t.http_request("x.b.gk.test:%d" % p, path="http://x.b.gk.test:%d/two" % p, close=False))
    resp = t.HttpReader(c.sock).response()
    assert resp.status in (403, 421), resp
    if resp.status == 403:
        assert resp.header("x-gatekeeper-reason") == "source_denied", resp
    c.until_close()
    c.close()
    hosts = [r["host"] for r in be.results[n:]]
    assert "x.b.gk.test:%d" % p not in hosts, "a refused request was relayed: %r" % hosts
    assert g.alive()


def test_route_sources_tls(gk, dns, backends, cert):
    pub = backends(t.TlsBackend, cert, "public")
    adm = backends(t.TlsBackend, cert, "admin")
    dns.set("ops.gk.test", [C2])
    g = gk(cfg(L("only", "tls", routes=[{"match": "a.gk.test", "upstream": pub.addr},
                                         {"match": "admin.gk.test", "upstream": adm.addr,
                                          "sources": [C2]}]),
               L("star", "tls", routes=[{"match": "*", "upstream": pub.addr},
                                         {"match": "admin.gk.test", "upstream": adm.addr,
                                          "sources": ["ops.gk.test"]}]),
               dns=dns))
    only, star = g.addr("only"), g.addr("star")
    c, tls, line = tls_open(g, only, C2, "admin.gk.test")
    tls.close()
    assert line == "tag=admin sni=admin.gk.test"
    before = adm.accepted
    got, c = tls_refused(g, only, C3, "admin.gk.test")
    assert got == ALERT_ACCESS_DENIED, got
    acc = c.access()
    assert_refused(acc, "source_denied", c.client)
    assert acc["name"] == "admin.gk.test"
    c, tls, line = tls_open(g, only, C3, "a.gk.test")
    tls.close()
    assert line == "tag=public sni=a.gk.test"

    # with a catch-all: the restricted route does not apply to .3, so the
    # route that does (*) takes it; .2 (ops.gk.test) gets the admin route
    def reaches(src, want):
        c, tls, line = tls_open(g, star, src, "admin.gk.test")
        tls.close()
        return line == "tag=%s sni=admin.gk.test" % want

    assert poll(lambda: reaches(C2, "admin")), "the name's address never got its route:\n" + g.tail()
    assert reaches(C3, "public")
    assert adm.accepted == before + 1
    assert g.alive()


def test_route_sources_http_keepalive_second_request_refused(gk, backends):
    """Both routes go to the same upstream: a keep-alive connection's second
    request for the restricted name must not ride the open upstream
    connection."""
    be = backends(HttpBackend, "be")
    g = gk(cfg(L("web", "http", routes=[{"match": "a.gk.test", "upstream": be.addr},
                                        {"match": "b.gk.test", "upstream": be.addr,
                                         "sources": [C2]}])))
    addr = g.addr("web")
    for host in ("a.gk.test", "b.gk.test"):
        c = Conn(g, addr, C2)
        assert http_get(c, host, close=False).status == 200
        assert http_get(c, host, close=False).status == 200
        c.finish()
    assert [r["host"] for r in be.results] == ["a.gk.test"] * 2 + ["b.gk.test"] * 2

    # .3: a first request it may make, then one for the restricted route.
    # (Another route on one connection is 421 misdirected anyway; whichever
    # refusal comes, the request must not reach the upstream.)
    c = Conn(g, addr, C3)
    resp = http_get(c, "a.gk.test", close=False)
    assert resp.status == 200, resp
    c.send(t.http_request("b.gk.test", path="/secret", close=False))
    resp = t.HttpReader(c.sock).response()
    assert resp.status in (403, 421), resp
    if resp.status == 403:
        assert resp.header("x-gatekeeper-reason") == "source_denied", resp
    c.until_close()
    c.close()
    acc = c.access()
    assert acc["reason"] in ("source_denied", "misdirected") and acc["client"] == c.client, acc
    assert [r["host"] for r in be.results][4:] == ["a.gk.test"], \
        "the refused request reached the upstream: %r" % be.results
    # and as a first request
    c = Conn(g, addr, C3)
    http_refusal(c, t.http_request("b.gk.test"), 403, "source_denied")
    c.close()
    assert_refused(c.access(), "source_denied", c.client)
    assert len(be.results) == 5
    assert g.alive()


# ==========================================================================
# max_connections_per_source

def test_per_source_limit_tcp(gk, backends):
    be = backends(h.EchoServer)
    admin = h.free_port()
    g = gk(cfg(L("lim", upstream=be.addr, max_connections_per_source=2),
               L("other", upstream=be.addr, max_connections_per_source=2), admin=admin))
    addr = g.addr("lim")
    held = [Conn(g, addr, C2) for _ in range(2)]
    for i, c in enumerate(held):
        assert c.roundtrip(b"held%d" % i) == b"held%d" % i
    acc = tcp_refused(g, addr, C2, reason="source_limit")
    assert acc["client"].startswith(C2 + ":")
    # refusals take no count, and give none back
    for _ in range(4):
        tcp_refused(g, addr, C2, reason="source_limit")
    # other sources are not affected, up to their own 2
    more = [Conn(g, addr, C3) for _ in range(2)]
    for c in more:
        assert c.roundtrip(b"three") == b"three"
    tcp_refused(g, addr, C3, reason="source_limit")
    # per listener: .2 still has its 2 on the other listener
    other = [Conn(g, g.addr("other"), C2) for _ in range(2)]
    for c in other:
        assert c.roundtrip(b"other") == b"other"
    for c in held:
        assert c.roundtrip(b"still") == b"still"

    # one closes: .2 may connect again (once its session has ended)
    held[0].finish()
    held[0].access()
    got = poll(lambda: tcp_passes_hold(g, addr, C2))
    assert got, "no new connection from .2 after one closed:\n" + g.tail()
    held[0] = got
    tcp_refused(g, addr, C2, reason="source_limit")
    assert poll(lambda: closed_total(admin, "lim", "none", "source_limit") >= 7), \
        admin_get(admin, "/metrics")[1]
    for c in held + more + other:
        c.finish()
    assert g.alive()


def tcp_passes_hold(g, addr, src):
    """A connection from src that gets relayed, kept open; else None."""
    c = Conn(g, addr, src)
    try:
        c.sock.sendall(b"again")
        if h.recv_exact(c.sock, 5) == b"again":
            return c
    except (OSError, AssertionError):
        pass
    c.close()
    return None


def test_per_source_limit_tls(gk, backends, cert):
    be = backends(t.TlsBackend, cert, "a")
    g = gk(cfg(L("lim", "tls", routes=[{"match": "a.gk.test", "upstream": be.addr}],
                 max_connections_per_source=1)))
    addr = g.addr("lim")
    c, tls, line = tls_open(g, addr, C2, "a.gk.test")
    assert line == "tag=a sni=a.gk.test"
    before = be.accepted
    got, r = tls_refused(g, addr, C2, "a.gk.test")
    assert got in (b"",), "a tls source_limit refusal is a plain close: %r" % got
    assert_refused(r.access(), "source_limit", r.client)
    assert be.accepted == before
    c2, tls2, line = tls_open(g, addr, C3, "a.gk.test")
    assert line == "tag=a sni=a.gk.test"
    tls.close()
    tls2.close()


@pytest.mark.parametrize("mode", ["http", "connect"])
def test_per_source_limit_http_and_connect_answer_429(gk, backends, mode):
    be = backends(HttpBackend, "be")
    if mode == "http":
        lst = L("lim", "http", routes=[{"match": "a.gk.test", "upstream": be.addr}],
                max_connections_per_source=2)
        first = t.http_request("a.gk.test", close=False)
    else:
        lst = L("lim", "connect", allow=["127.0.0.1:%d" % be.port], allow_ranges=LOOPBACK_OK,
                max_connections_per_source=2)
        first = connect_request("127.0.0.1:%d" % be.port)
    g = gk(cfg(lst))
    addr = g.addr("lim")

    def open_one(src):
        c = Conn(g, addr, src)
        c.sock.sendall(first)
        if mode == "http":
            resp = t.HttpReader(c.sock).response()
            assert resp.status == 200, resp
        else:
            status, _, head, _ = read_head(c.sock)
            assert status == 200, head
            assert b"tag=be" in http_get(c, "127.0.0.1", close=False).body
        return c

    held = [open_one(C2), open_one(C2)]
    before = (be.accepted, len(be.results))
    c = Conn(g, addr, C2)
    resp = http_refusal(c, first, 429, "source_limit")
    assert resp.reason.lower().startswith("too many"), resp
    c.close()
    assert_refused(c.access(), "source_limit", c.client)
    assert (be.accepted, len(be.results)) == before
    o = open_one(C3)
    held[1].finish()
    held[1].access()
    held[1] = poll(lambda: try_open(open_one, C2))
    assert held[1], g.tail()
    for c in held + [o]:
        c.finish()
    assert g.alive()


def test_per_source_limit_counts_connections_not_requests(gk, backends):
    be = backends(HttpBackend, "be")
    g = gk(cfg(L("lim", "http", routes=[{"match": "a.gk.test", "upstream": be.addr}],
                 max_connections_per_source=1)))
    c = Conn(g, g.addr("lim"), C2)
    for i in range(5):
        resp = http_get(c, "a.gk.test", path="/%d" % i, close=False)
        assert resp.status == 200, (i, resp)
    r = Conn(g, g.addr("lim"), C2)
    http_refusal(r, t.http_request("a.gk.test"), 429, "source_limit")
    r.close()
    assert http_get(c, "a.gk.test", path="/last", close=False).status == 200
    c.finish()
    assert len(be.results) == 6


def test_per_source_count_is_given_back_by_every_kind_of_ending(gk, backends, cert):
    """With a limit of 1, sessions that end early (a malformed request, a
    name with no route, an upstream that refuses) give their count back:
    the next client from the same source is served, not source_limit."""
    echo = backends(h.EchoServer)
    web = backends(HttpBackend, "web")
    tb = backends(t.TlsBackend, cert, "a")
    dead = "127.0.0.1:%d" % h.free_port()
    g = gk(cfg(L("web", "http", routes=[{"match": "a.gk.test", "upstream": web.addr}],
                 max_connections_per_source=1),
               L("tls", "tls", routes=[{"match": "a.gk.test", "upstream": tb.addr}],
                 max_connections_per_source=1),
               L("dead", upstream=dead, max_connections_per_source=1),
               L("tcp", upstream=echo.addr, max_connections_per_source=1)))
    for _ in range(3):
        c = Conn(g, g.addr("web"), C2)
        c.send(b"NOT HTTP AT ALL\r\n\r\n")
        resp = t.HttpReader(c.sock).response()
        assert resp.status == 400, resp
        c.close()
        assert c.access()["reason"] == "malformed"
        c = Conn(g, g.addr("web"), C2)
        http_refusal(c, t.http_request("nope.gk.test"), 421, "no_route")
        c.close()
        got, c = tls_refused(g, g.addr("tls"), C2, "nope.gk.test")
        assert got == ALERT_UNRECOGNIZED_NAME, got
        assert c.access()["reason"] == "no_route"
        c = Conn(g, g.addr("dead"), C2)
        assert c.until_close() == b""
        c.close()
        assert c.access()["reason"] in ("connect_failed", "connect_timeout"), c.access()
        # and an ordinary session, ended by the client
        c = Conn(g, g.addr("tcp"), C2)
        assert c.roundtrip(b"x") == b"x"
        c.finish()
        c.access()
    c = Conn(g, g.addr("web"), C2)
    assert http_get(c, "a.gk.test").status == 200
    c.close()
    c, tls, line = tls_open(g, g.addr("tls"), C2, "a.gk.test")
    assert line == "tag=a sni=a.gk.test"
    tls.close()
    c = Conn(g, g.addr("dead"), C2)
    c.until_close()
    c.close()
    assert c.access()["reason"] != "source_limit", c.access()
    assert g.alive()


def try_open(fn, src):
    try:
        return fn(src)
    except (OSError, AssertionError):
        return None


def test_per_source_limit_is_process_wide_across_workers(gk, backends):
    be = backends(h.EchoServer)
    g = gk(cfg(L("lim", upstream=be.addr, max_connections_per_source=2), workers=2))
    addr = g.addr("lim")

    def open_many(n, src):
        conns = [Conn(g, addr, src) for _ in range(n)]
        served, refused = [], []
        for c in conns:
            try:
                c.sock.sendall(b"x")
                got = c.sock.recv(1)
            except socket.timeout:
                raise AssertionError("a connection neither served nor refused")
            except OSError:
                got = b""
            (served if got == b"x" else refused).append(c)
        return served, refused

    served, refused = open_many(12, C2)
    assert len(served) == 2, "%d of 12 connections from one source served with a limit of 2" % len(served)
    for c in refused:
        assert_refused(c.access(), "source_limit", c.client)
        c.close()
    # another source has its own 2, whichever worker takes it
    s3, r3 = open_many(6, C3)
    assert len(s3) == 2, len(s3)
    for c in r3:
        c.close()
    # close .2's two: it is back to 0 on both workers
    for c in served:
        c.finish()
        c.access()
    served2, refused2 = open_many(8, C2)
    assert len(served2) == 2, len(served2)
    for c in served2 + refused2 + s3:
        c.close()
    assert g.alive()


# ==========================================================================
# PROXY protocol: sources (the peer) and client_sources (the client)

@pytest.fixture
def pp_env(gk, backends):
    be = backends(h.EchoServer)
    admin = h.free_port()
    g = gk(cfg(L("pp", upstream=be.addr, sources=[C2, C4, C5],
                 client_sources=["10.9.9.0/24", C5],
                 proxy_protocol={"accept": True, "trusted": ["127.0.0.2/32"]}),
               L("mapped", upstream=be.addr, client_sources=["::ffff:10.7.7.0/120"],
                 proxy_protocol={"accept": True, "trusted": ["127.0.0.0/8"]}),
               L("limit", upstream=be.addr, max_connections_per_source=1,
                 proxy_protocol={"accept": True, "trusted": ["127.0.0.2/32"]}),
               admin=admin))
    return g, be, admin


def pp_attempt(g, addr, src, header, payload=b"payload"):
    """Connect from src, send header + payload, half-close; returns (reply,
    Conn)."""
    c = Conn(g, addr, src)
    c.send(header + payload)
    try:
        c.sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    got = c.until_close()
    c.close()
    return got, c


def test_proxy_client_sources(pp_env):
    g, be, admin = pp_env
    addr = g.addr("pp")
    keep = Conn(g, addr, C2)
    keep.sock.sendall(t.proxy_v1(("10.9.9.50", 5050), ("10.0.0.1", 80)))
    assert keep.roundtrip(b"keep") == b"keep"
    passes = 1

    good = [t.proxy_v1(("10.9.9.1", 40001), ("10.0.0.1", 443)),
            t.proxy_v2(("10.9.9.200", 40002), ("10.0.0.1", 443)),
            t.proxy_v1(("::ffff:10.9.9.7", 40003), ("::ffff:10.0.0.1", 443)),
            t.proxy_v2(("::ffff:10.9.9.8", 40004), ("::ffff:10.0.0.1", 443))]
    for hdr in good:
        got, c = pp_attempt(g, addr, C2, hdr)
        assert got == b"payload", (hdr, got, g.tail())
        passes += 1
        info, _ = t.parse_proxy_header(hdr)
        acc = access(g, h.join_hostport(*info["src"]), c.mark)
        assert acc["peer"] == c.client and acc["reason"] == "closed", acc

    # from the trusted proxy, carrying a client outside client_sources
    for hdr, client in ((t.proxy_v1(("10.8.0.1", 40010), ("10.0.0.1", 443)), "10.8.0.1:40010"),
                        (t.proxy_v2(("10.9.10.1", 40011), ("10.0.0.1", 443)), "10.9.10.1:40011"),
                        (t.proxy_v1(("2001:db8::1", 40012), ("2001:db8::2", 443)),
                         "[2001:db8::1]:40012")):
        got, c = pp_attempt(g, addr, C2, hdr)
        assert got == b"", got
        assert_refused(access(g, client, c.mark), "source_denied", client, peer=c.client)

    # a header that names no client (LOCAL, UNKNOWN, UNSPEC): the client is
    # the peer itself, which client_sources does not hold
    for hdr in (t.proxy_v2(command="LOCAL"), b"PROXY UNKNOWN\r\n",
                t.proxy_v2(("10.9.9.1", 1), ("10.0.0.1", 2), command="LOCAL"), t.proxy_v2()):
        got, c = pp_attempt(g, addr, C2, hdr)
        assert got == b"", (hdr, got)
        acc = c.access()
        assert acc["reason"] == "source_denied" and acc["upstream"] == "-", (hdr, acc)

    # a peer outside `sources` is refused at accept, whatever it carries
    for hdr in (t.proxy_v1(("10.9.9.1", 40020), ("10.0.0.1", 443)), b""):
        c = Conn(g, addr, C3)
        c.send(hdr)
        assert c.until_close() == b""
        c.close()
        assert_refused(c.access(), "source_denied", c.client)

    # a peer in `sources` that is not a trusted proxy sends no header: it is
    # checked as itself and cannot get around client_sources
    got, c = pp_attempt(g, addr, C4, b"")
    assert got == b""
    assert_refused(c.access(), "source_denied", c.client)
    got, c = pp_attempt(g, addr, C4, b"GET / HTTP/1.0\r\n\r\n")
    assert got == b""
    assert_refused(c.access(), "source_denied", c.client)
    # ... nor by sending one (an untrusted peer may not)
    got, c = pp_attempt(g, addr, C4, t.proxy_v1(("10.9.9.1", 40030), ("10.0.0.1", 443)))
    assert got == b""
    acc = c.access()
    assert acc["reason"] in ("proxy_untrusted", "source_denied") and acc["upstream"] == "-", acc
    # and one that is in client_sources itself passes without a header
    got, c = pp_attempt(g, addr, C5, b"")
    assert got == b"payload", got
    passes += 1

    assert be.accepted == passes, "%d backend connections for %d admitted" % (be.accepted, passes)
    assert keep.roundtrip(b"after") == b"after"
    keep.finish()
    assert poll(lambda: closed_total(admin, "pp", "deny", "source_denied") >= 3 + 4 + 2 + 2), \
        admin_get(admin, "/metrics")[1]
    assert g.alive()


def test_proxy_client_sources_mapped_entry(pp_env):
    g, be, admin = pp_env
    addr = g.addr("mapped")
    for hdr in (t.proxy_v1(("10.7.7.7", 1000), ("10.0.0.1", 80)),
                t.proxy_v2(("10.7.7.255", 1001), ("10.0.0.1", 80)),
                t.proxy_v1(("::ffff:10.7.7.1", 1002), ("::ffff:10.0.0.1", 80))):
        got, _ = pp_attempt(g, addr, C1, hdr)
        assert got == b"payload", (hdr, g.tail())
    for hdr, client in ((t.proxy_v1(("10.7.8.1", 1003), ("10.0.0.1", 80)), "10.7.8.1:1003"),
                        (t.proxy_v2(("::ffff:10.7.6.1", 1004), ("::ffff:10.0.0.1", 80)),
                         "[::ffff:10.7.6.1]:1004")):
        got, c = pp_attempt(g, addr, C1, hdr)
        assert got == b""
        acc = access_any(g, [client, client.replace("[::ffff:", "").replace("]", "")], c.mark)
        assert acc["reason"] == "source_denied" and acc["peer"] == c.client, acc


def test_per_source_limit_counts_the_proxy_client(pp_env):
    g, be, admin = pp_env
    addr = g.addr("limit")
    held = Conn(g, addr, C2)
    held.sock.sendall(t.proxy_v1(("10.9.9.1", 1111), ("10.0.0.1", 80)))
    assert held.roundtrip(b"one") == b"one"
    # the same client through the same proxy: over its limit of 1
    c = Conn(g, addr, C2)
    c.send(t.proxy_v1(("10.9.9.1", 2222), ("10.0.0.1", 80)) + b"two")
    assert c.until_close() == b""
    c.close()
    assert_refused(access(g, "10.9.9.1:2222", c.mark), "source_limit", "10.9.9.1:2222", peer=c.client)
    # another client through the same proxy peer: its own count
    other = Conn(g, addr, C2)
    other.sock.sendall(t.proxy_v2(("10.9.9.2", 3333), ("10.0.0.1", 80)))
    assert other.roundtrip(b"three") == b"three"
    # the mapped form is the same client, over its limit (and the peer .2
    # itself is not what is counted: it holds two sessions already)
    c = Conn(g, addr, C2)
    c.send(t.proxy_v2(("::ffff:10.9.9.1", 4444), ("::ffff:10.0.0.1", 80)) + b"four")
    assert c.until_close() == b""
    c.close()
    acc = access_any(g, ["[::ffff:10.9.9.1]:4444", "10.9.9.1:4444"], c.mark)
    assert acc["reason"] == "source_limit", acc
    # the count is given back when the session ends: 10.9.9.1 may come again
    held.finish()
    access(g, "10.9.9.1:1111", held.mark)

    def again():
        c = Conn(g, addr, C2)
        c.sock.sendall(t.proxy_v1(("10.9.9.1", 5555), ("10.0.0.1", 80)))
        try:
            if c.roundtrip(b"five") == b"five":
                return c
        except (OSError, AssertionError):
            pass
        c.close()
        return None

    back = poll(again)
    assert back, "10.9.9.1 still over its limit after its session ended:\n" + g.tail()
    back.finish()
    other.finish()
    assert g.alive()


def test_client_sources_in_tls_and_connect_modes_behind_a_proxy(gk, backends, cert):
    """The client a PROXY header names is refused as its listener's mode
    says: a tls client hears access_denied after its ClientHello, a
    connect client 403; the one that client_sources holds is relayed."""
    tb = backends(t.TlsBackend, cert, "a")
    echo = backends(h.EchoServer)
    pp = {"accept": True, "trusted": ["127.0.0.2/32"]}
    g = gk(cfg(L("tls", "tls", proxy_protocol=pp, client_sources=["10.9.9.0/24"],
                 routes=[{"match": "a.gk.test", "upstream": tb.addr}]),
               L("proxy", "connect", proxy_protocol=pp, client_sources=["10.9.9.0/24"],
                 allow=["127.0.0.1:%d" % echo.port], allow_ranges=LOOPBACK_OK)))
    good = t.proxy_v2(("10.9.9.1", 7001), ("10.0.0.1", 443))
    bad = t.proxy_v1(("10.8.0.1", 7002), ("10.0.0.1", 443))

    c = Conn(g, g.addr("tls"), C2)
    c.sock.sendall(good)
    tls = t.client_context().wrap_socket(c.sock, server_hostname="a.gk.test")
    line = b""
    while not line.endswith(b"\n"):
        line += tls.recv(100)
    assert line == b"tag=a sni=a.gk.test\n"
    tls.close()
    c = Conn(g, g.addr("tls"), C2)
    c.send(bad + t.raw_client_hello("a.gk.test"))
    assert c.until_close() == ALERT_ACCESS_DENIED
    c.close()
    acc = access(g, "10.8.0.1:7002", c.mark)
    assert_refused(acc, "source_denied", "10.8.0.1:7002", peer=c.client)
    assert acc["name"] in ("a.gk.test", "-"), acc
    assert tb.accepted == 1

    c = Conn(g, g.addr("proxy"), C2)
    c.sock.sendall(t.proxy_v1(("10.9.9.2", 7003), ("10.0.0.1", 80)) +
                   connect_request("127.0.0.1:%d" % echo.port))
    assert read_head(c.sock)[0] == 200
    assert c.roundtrip(b"in") == b"in"
    c.close()
    c = Conn(g, g.addr("proxy"), C2)
    http_refusal(c, t.proxy_v1(("10.8.0.2", 7004), ("10.0.0.1", 80)) +
                 connect_request("127.0.0.1:%d" % echo.port), 403, "source_denied")
    c.close()
    assert_refused(access(g, "10.8.0.2:7004", c.mark), "source_denied", "10.8.0.2:7004", peer=c.client)
    assert echo.accepted == 1
    assert g.alive()


def test_a_source_name_that_is_also_the_upstream(gk, dns, backends):
    """One name as the upstream and as a source: two uses, both resolved,
    and a reload that drops one keeps the other working."""
    be = backends(h.EchoServer)
    dns.set("svc.gk.test", [C1])
    port = h.free_port()

    def text(sources):
        return cfg(L("svc", upstream="svc.gk.test:%d" % be.port, listen="127.0.0.1:%d" % port,
                     sources=sources), dns=dns)

    g = gk(text(["svc.gk.test"]))
    addr = ("127.0.0.1", port)
    assert poll(lambda: settled(g, addr, {C1: True, C2: False}, rounds=2)), g.tail()
    n = sum(1 for d in g.parsed() if d.get("msg") == "reloaded")
    tmp = g.config_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(h.as_root_ok(text([C2])))
    os.replace(tmp, g.config_path)
    g.signal(signal.SIGHUP)
    assert poll(lambda: sum(1 for d in g.parsed() if d.get("msg") == "reloaded") > n), g.tail()
    # the upstream still resolves, the source is now .2 alone
    assert poll(lambda: settled(g, addr, {C2: True, C1: False}, rounds=2)), g.tail()
    # once the name answers .3 too, .3 is still no source here
    mark = g.mark()
    dns.set("svc.gk.test", [C1, C3])
    g.wait_log(r"msg=resolved .*svc\.gk\.test.*127\.0\.0\.3", timeout=15, after=mark)
    assert settled(g, addr, {C2: True, C3: False, C1: False}, rounds=3)
    assert g.alive()


def test_mapped_and_plain_ipv4_are_one_source_for_every_block(gk, backends):
    """The same client in its two forms (a PROXY header of TCP4 10.9.9.1 and
    of TCP6 ::ffff:10.9.9.1) gets the same verdict from each list, whether
    the list's block is IPv4, inside ::ffff:0:0/96, or a wider IPv6 block
    that holds ::ffff:0:0/96 (::/80, ::/0: whether those take IPv4 clients
    is a choice, but one client cannot get two answers). IPv6 forms that
    merely embed an IPv4 address (IPv4-compatible ::a.b.c.d, NAT64
    64:ff9b::/96) are other addresses."""
    be = backends(h.EchoServer)
    trusted = {"accept": True, "trusted": ["127.0.0.0/8"]}
    lists = {
        "v4": ["10.9.9.0/24"],
        "mapped": ["::ffff:10.9.9.0/120"],
        "mapped96": ["::ffff:0:0/96"],
        "wide80": ["::/80"],
        "all6": ["::/0"],
        "all4": ["0.0.0.0/0"],
    }
    g = gk(cfg(*[L(n, upstream=be.addr, client_sources=v, proxy_protocol=trusted)
                 for n, v in lists.items()]))

    def verdict(lname, client):
        v6 = ":" in client
        hdr = t.proxy_v2((client, 4000), ("::ffff:10.0.0.1" if v6 else "10.0.0.1", 80))
        got, _ = pp_attempt(g, g.addr(lname), C2, hdr)
        return got == b"payload"

    # not the IPv4 address: compatible and NAT64 forms, and another v6 address
    for client in ("::10.9.9.1", "64:ff9b::a09:901", "2001:db8::a09:901"):
        assert not verdict("v4", client), client
        assert not verdict("mapped", client), client
        assert not verdict("all4", client), client
    for lname in ("v4", "mapped", "mapped96", "all4"):
        assert verdict(lname, "10.9.9.1") and verdict(lname, "::ffff:10.9.9.1"), lname
    wrong = []
    for lname in lists:
        a, b = verdict(lname, "10.9.9.1"), verdict(lname, "::ffff:10.9.9.1")
        if a != b:
            wrong.append("%s %s: 10.9.9.1 %s, ::ffff:10.9.9.1 %s"
                         % (lname, lists[lname], "admitted" if a else "refused",
                            "admitted" if b else "refused"))
    assert g.alive()
    assert not wrong, "one client, two verdicts:\n" + "\n".join(wrong)


def test_forwarding_headers_never_name_the_client(gk, backends):
    """X-Forwarded-For, X-Real-IP and Forwarded from a peer that http.trusted
    lists are passed on, but are not the client that client_sources and rule
    sources check: only a PROXY header is."""
    web = backends(HttpBackend, "web")
    g = gk(cfg(L("web", "http", client_sources=["10.9.9.0/24", C3],
                 http={"trusted": ["127.0.0.0/8"]},
                 routes=[{"match": "a.gk.test", "upstream": web.addr},
                         {"match": "b.gk.test", "upstream": web.addr, "sources": ["10.9.9.0/24"]}])))
    spoof = ["X-Forwarded-For: 10.9.9.1", "X-Real-IP: 10.9.9.1", "Forwarded: for=10.9.9.1",
             "Client-IP: 10.9.9.1", "True-Client-IP: 10.9.9.1"]
    c = Conn(g, g.addr("web"), C2)
    http_refusal(c, t.http_request("a.gk.test", extra=spoof), 403, "source_denied")
    c.close()
    assert_refused(c.access(), "source_denied", c.client)
    c = Conn(g, g.addr("web"), C3)
    resp = http_get(c, "a.gk.test", close=False)
    assert resp.status == 200, resp
    c.close()
    c = Conn(g, g.addr("web"), C3)
    http_refusal(c, t.http_request("b.gk.test", extra=spoof), 403, "source_denied")
    c.close()
    assert [r["host"] for r in web.results] == ["a.gk.test"], web.results
    assert g.alive()


def test_rule_sources_check_the_proxy_client_not_the_peer(gk, backends):
    web = backends(HttpBackend, "web")
    g = gk(cfg(L("web", "http", proxy_protocol={"accept": True, "trusted": ["127.0.0.2/32"]},
                 routes=[{"match": "a.gk.test", "upstream": web.addr},
                         {"match": "office.gk.test", "upstream": web.addr, "sources": ["10.9.9.0/24"]},
                         {"match": "proxy.gk.test", "upstream": web.addr, "sources": [C2]}])))
    addr = g.addr("web")

    def get(hdr, host, src=C2):
        c = Conn(g, addr, src)
        c.send(hdr + t.http_request(host))
        resp = t.HttpReader(c.sock).response()
        c.close()
        return resp, c

    ports = iter(range(5000, 6000))

    def office():
        return ("10.9.9.1", next(ports))

    def other():
        return ("10.8.0.1", next(ports))

    def hdr(client):
        return t.proxy_v1(client, ("10.0.0.1", 80))

    assert get(hdr(office()), "office.gk.test")[0].status == 200
    assert get(hdr(other()), "a.gk.test")[0].status == 200
    # the peer (.2) is in proxy.gk.test's sources, but the client is not
    for who, host in ((other(), "office.gk.test"), (office(), "proxy.gk.test"),
                      (other(), "proxy.gk.test")):
        client = "%s:%d" % who
        resp, c = get(hdr(who), host)
        assert resp.status == 403 and resp.header("x-gatekeeper-reason") == "source_denied", (host, resp)
        acc = access(g, client, c.mark)
        assert acc["reason"] == "source_denied" and acc["peer"] == c.client, acc
    # without a header (an untrusted peer) the client is the peer itself
    resp, c = get(b"", "office.gk.test", C3)
    assert resp.status == 403, resp
    # LOCAL from the proxy: the client is the proxy, which proxy.gk.test admits
    resp, c = get(t.proxy_v2(command="LOCAL"), "proxy.gk.test")
    assert resp.status == 200, resp
    assert [r["host"] for r in web.results] == ["office.gk.test", "a.gk.test", "proxy.gk.test"]
    assert g.alive()


def test_allow_blocks_and_star_with_sources(gk, egress_names, backends, cert):
    dns = egress_names
    tb = backends(t.TlsBackend, cert, "be")
    hb = backends(HttpBackend, "be")
    p = hb.port
    g = gk(cfg(L("proxy", "connect", allow_ranges=LOOPBACK_OK,
                 allow=[{"match": "127.0.0.0/8:%d" % p, "sources": [C2]}, "a.gk.test:%d" % p]),
               L("star", "tls", port=tb.port, allow_ranges=LOOPBACK_OK,
                 allow=[{"match": "*", "sources": [C2]}]),
               L("exact", "tls", port=tb.port, allow_ranges=LOOPBACK_OK,
                 allow=["*.b.gk.test", {"match": "x.b.gk.test", "sources": [C2]}]),
               dns=dns))
    paddr = g.addr("proxy")
    c = Conn(g, paddr, C2)
    c.sock.sendall(connect_request("127.0.0.1:%d" % p))
    assert read_head(c.sock)[0] == 200
    assert b"tag=be" in http_get(c, "127.0.0.1").body
    c.close()
    accepted = hb.accepted
    c = Conn(g, paddr, C3)
    http_refusal(c, connect_request("127.0.0.1:%d" % p), 403, "source_denied")
    c.close()
    assert_refused(c.access(), "source_denied", c.client)
    assert hb.accepted == accepted

    # "*" with sources: every name for .2, none for the others
    c, tls, line = tls_open(g, g.addr("star"), C2, "c.gk.test")
    tls.close()
    assert line == "tag=be sni=c.gk.test"
    for sni in ("c.gk.test", "a.gk.test"):
        got, c = tls_refused(g, g.addr("star"), C3, sni)
        assert got == ALERT_ACCESS_DENIED, (sni, got)
        assert_refused(c.access(), "source_denied", c.client)

    # an exact entry that does not apply leaves the wildcard to match
    c, tls, line = tls_open(g, g.addr("exact"), C3, "x.b.gk.test")
    tls.close()
    assert line == "tag=be sni=x.b.gk.test"
    assert c.access()["rule"] == "*.b.gk.test"
    c, tls, line = tls_open(g, g.addr("exact"), C2, "x.b.gk.test")
    tls.close()
    assert c.access()["rule"] == "x.b.gk.test"
    assert g.alive()


# ==========================================================================
# Config checks, quick mode, reload

BAD_CONFIG = """\
listeners:
  - name: a
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:1
    sources:
      - 10.0.0.0/33
      - 300.1.1.1
      - "*.x"
      - "bad name!"
      - ""
      - fd00::/129
      - 10.0.0.1:80
      - "::ffff:300.1.1.1"
    client_sources: [10.0.0.0/-1]
  - name: b
    listen: 127.0.0.1:0
    mode: tls
    port: 443
    allow:
      - a.gk.test
      - {sources: [127.0.0.2]}
      - {match: "*.b.gk.test", sourcse: [127.0.0.2]}
      - {match: "*.c.gk.test", sources: [999.0.0.1]}
  - name: c
    listen: 127.0.0.1:0
    mode: http
    routes:
      - match: a.gk.test
        upstream: 127.0.0.1:2
        sources: [1.2.3.4/40]
"""


def test_bad_source_items_are_all_reported_with_positions(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(h.as_root_ok(BAD_CONFIG))
    r = h.run_gatekeeper(["-t", "-c", "bad.yaml"], cwd=str(tmp_path))
    assert r.returncode != 0, r.stderr
    for m in h.SANITIZER_MARKERS:
        assert m not in r.stderr, r.stderr
    errs = []
    for line in r.stderr.splitlines():
        m = re.match(r"^bad\.yaml:(\d+):(\d+): (.+)$", line.strip())
        if m:
            errs.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    lines = BAD_CONFIG.splitlines()

    def where(needle, nth=0):
        for i, text in enumerate(lines):
            if needle in text:
                if nth == 0:
                    return i + 1, text.index(needle) + 1
                nth -= 1
        raise KeyError(needle)

    def expect(needle, *parts, col_slack=1):
        """The error on needle's line: at its column (col_slack None: any)."""
        ln, col = where(needle)
        hits = [e for e in errs if e[0] == ln]
        assert hits, "no error for line %d (%r):\n%s" % (ln, lines[ln - 1], r.stderr)
        e = hits[0]
        if col_slack is not None:
            assert col <= e[1] <= col + col_slack, (needle, e, col)
        for p in parts:
            assert p in e[2], (needle, p, e)
        return e

    for item, quoted in (("10.0.0.0/33", "'10.0.0.0/33'"), ("300.1.1.1", "'300.1.1.1'"),
                         ('"*.x"', "'*.x'"), ('"bad name!"', "'bad name!'"),
                         ("fd00::/129", "'fd00::/129'"), ("10.0.0.1:80", "'10.0.0.1:80'"),
                         ('"::ffff:300.1.1.1"', "'::ffff:300.1.1.1'")):
        expect(item, "invalid source " + quoted, "'sources'", "(use ")
    expect('""', "invalid source ''")
    expect("10.0.0.0/-1", "invalid source '10.0.0.0/-1'", "'client_sources'")
    expect("{sources: [127.0.0.2]}", "match", col_slack=None)
    expect("sourcse", "sourcse", "did you mean 'sources'", col_slack=None)
    expect("999.0.0.1", "invalid source '999.0.0.1'")
    expect("1.2.3.4/40", "invalid source '1.2.3.4/40'")
    assert "msg=listening" not in r.stderr


def test_good_source_forms_pass_the_check(tmp_path):
    text = cfg(
        L("a", upstream="127.0.0.1:1",
          sources=["builder.gk.test", "traefik", "10.1.2.3", "::1", "10.0.0.0/8", "fd00::/8",
                   "::ffff:10.1.0.0/112", "::ffff:10.1.2.3", "0.0.0.0/0", "::/0"],
          client_sources=["192.0.2.0/24", "2001:db8::/32"], max_connections_per_source=10,
          proxy_protocol={"accept": True}),
        L("b", "tls", port=443, allow=["a.gk.test", {"match": "*.b.gk.test", "sources": ["10.0.0.0/8"]},
                                       {"match": "c.gk.test", "sources": ["builder.gk.test", "::1"]}]),
        L("c", "connect", allow=["a.gk.test:443", {"match": "*.b.gk.test:8443", "sources": ["10.1.2.3"]}]),
        L("d", "http", routes=[{"match": "a.gk.test", "upstream": "127.0.0.1:2", "sources": ["10.0.0.0/8"]},
                               {"match": "*", "upstream": "127.0.0.1:3"}]))
    path = h.write_config(text, tmp_path)
    r = h.run_gatekeeper(["-t", "-c", path])
    assert r.returncode == 0, r.stderr


def test_dumped_sources_read_back_the_same(tmp_path):
    """-t -T prints every source form; that output is itself a config that
    checks and prints the same."""
    text = cfg(
        L("a", upstream="127.0.0.1:1", sources=["builder.gk.test", "10.0.0.0/8", "::1", "::ffff:10.1.0.0/112"],
          client_sources=["192.0.2.0/24"], max_connections_per_source=3, proxy_protocol={"accept": True}),
        L("b", "connect", allow=["a.gk.test:443", {"match": "*.b.gk.test:8443", "sources": ["10.1.2.3"]}]),
        L("c", "http", routes=[{"match": "a.gk.test", "upstream": "127.0.0.1:2", "sources": ["fd00::/8"]}]))
    r = h.run_gatekeeper(["-t", "-T", "-c", h.write_config(text, tmp_path)])
    assert r.returncode == 0, r.stderr
    first = r.stdout
    for item in ("builder.gk.test", "10.0.0.0/8", "192.0.2.0/24", "max_connections_per_source: 3",
                 "*.b.gk.test:8443", "10.1.2.3", "fd00::/8"):
        assert item in first, (item, first)
    again = tmp_path / "again.yaml"
    again.write_text(first)
    r = h.run_gatekeeper(["-t", "-T", "-c", str(again)])
    assert r.returncode == 0, r.stderr
    assert r.stdout == first


def test_max_connections_per_source_bad_values(tmp_path):
    for bad in ("-1", "lots", "1.5"):
        text = ("listeners:\n  - name: a\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:1\n"
                "    max_connections_per_source: %s\n" % bad)
        path = h.write_config(text, tmp_path)
        r = h.run_gatekeeper(["-t", "-c", path])
        assert r.returncode != 0, (bad, r.stderr)
        assert re.search(r":5:\d+: .*max_connections_per_source", r.stderr), (bad, r.stderr)


def test_quick_mode_sources_flag_and_env(quick, backends):
    be = backends(h.EchoServer)
    g = quick(["--listen", "127.0.0.1:0", "--upstream", be.addr, "--sources", "127.0.0.2, 10.0.0.0/8"])
    addr = g.addr("default")
    assert tcp_passes(g, addr, C2)
    tcp_refused(g, addr, C3)
    g2 = quick([], env={"GATEKEEPER_LISTEN": "127.0.0.1:0", "GATEKEEPER_UPSTREAM": be.addr,
                        "GATEKEEPER_NAME": "env", "GATEKEEPER_SOURCES": "127.0.0.3,::1"})
    addr = g2.addr("env")
    assert tcp_passes(g2, addr, C3)
    tcp_refused(g2, addr, C2)
    # the flag wins over the variable
    g3 = quick(["--sources", "127.0.0.4"], env={"GATEKEEPER_LISTEN": "127.0.0.1:0",
                                                "GATEKEEPER_UPSTREAM": be.addr,
                                                "GATEKEEPER_NAME": "both",
                                                "GATEKEEPER_SOURCES": "127.0.0.3"})
    assert tcp_passes(g3, g3.addr("both"), C4)
    tcp_refused(g3, g3.addr("both"), C3)


def test_quick_mode_bad_sources_are_errors():
    r = h.run_gatekeeper(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1",
                          "--sources", "127.0.0.2,10.0.0.0/33"])
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.startswith("--sources: ")]
    assert lines and "10.0.0.0/33" in lines[0], r.stderr
    assert "msg=listening" not in r.stderr
    r = h.run_gatekeeper([], env={"GATEKEEPER_LISTEN": "127.0.0.1:0", "GATEKEEPER_UPSTREAM": "127.0.0.1:1",
                                  "GATEKEEPER_SOURCES": "300.1.1.1"})
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.startswith("GATEKEEPER_SOURCES: ")]
    assert lines and "300.1.1.1" in lines[0], r.stderr
    assert "msg=listening" not in r.stderr


def test_reload_changes_sources_for_new_connections(gk, dns, backends):
    be = backends(h.EchoServer)
    port = h.free_port()
    dns.set("builder.gk.test", [C4])

    def text(sources, limit=0):
        return cfg(L("main", upstream=be.addr, listen="127.0.0.1:%d" % port, sources=sources,
                     max_connections_per_source=limit), dns=dns)

    g = gk(text([C2]))
    addr = ("127.0.0.1", port)
    assert tcp_passes(g, addr, C2)
    tcp_refused(g, addr, C3)
    kept = Conn(g, addr, C2)
    assert kept.roundtrip(b"before") == b"before"

    def reload(new):
        n = sum(1 for d in g.parsed() if d.get("msg") == "reloaded")
        tmp = g.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(h.as_root_ok(new))
        os.replace(tmp, g.config_path)
        g.signal(signal.SIGHUP)
        assert poll(lambda: sum(1 for d in g.parsed() if d.get("msg") == "reloaded") > n), g.tail()

    reload(text([C3], limit=1))
    assert tcp_passes(g, addr, C3)
    tcp_refused(g, addr, C2)
    held = Conn(g, addr, C3)
    assert held.roundtrip(b"held") == b"held"
    tcp_refused(g, addr, C3, reason="source_limit")
    # the session admitted under the old config carries on
    assert kept.roundtrip(b"after") == b"after"

    # a bad source in the new file: the running config stays
    n_fail = sum(1 for d in g.parsed() if d.get("msg", "").startswith("reload failed"))
    tmp = g.config_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(h.as_root_ok(text(["300.1.1.1"])))
    os.replace(tmp, g.config_path)
    g.signal(signal.SIGHUP)
    assert poll(lambda: sum(1 for d in g.parsed()
                            if d.get("msg", "").startswith("reload failed")) > n_fail), g.tail()
    tcp_refused(g, addr, C2)

    # to a name: resolved and used from the new config on
    reload(text(["builder.gk.test"]))
    assert poll(lambda: settled(g, addr, {C4: True, C3: False, C2: False}, rounds=2)), g.tail()

    reload(text([]))
    assert tcp_passes(g, addr, C2)
    held.finish()
    kept.finish()
    assert g.alive()
