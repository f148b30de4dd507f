"""Egress on loopback: pinned tunnels, the allowlisted TLS/HTTP gateway, the
CONNECT proxy and the address guard.

Every "external" service is a real backend on a loopback alias (127.0.0.2,
127.0.0.3, 127.0.0.9, ...) and every name is served by a real dnsmasq
(dnsserver.DnsServer) under gk.test. Loopback is a class the guard refuses by
default, so each config that should connect says `allow_ranges:
[127.0.0.0/8]`; the tests that leave it out check that default. 127.0.0.9 is
the address a `deny_ranges` entry takes back, and a backend listens there too,
so a bypass shows up as a connection it accepted.

Clients are curl (--proxy, --proxy-user), openssl s_client, Python's ssl and
raw sockets. Every refusal is checked on the wire (TLS alert, HTTP status and
headers, or a plain close), in the access line (reason, decision, name,
upstream "-") and at the backends (nothing accepted); a connection opened
before it keeps flowing.

Waits are upper bounds only; nothing asserts a duration.
"""

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

import gkharness as h
import tlsutil as t

API = "api.gk.test"
FILES = "x.files.gk.test"
DENIED = "127.0.0.9"  # inside allow_ranges 127.0.0.0/8, but listed in deny_ranges

# TLS alert records: type 21, TLS 1.2, length 2, fatal, description.
ALERT_UNRECOGNIZED_NAME = bytes.fromhex("15030300020270")
ALERT_ACCESS_DENIED = bytes.fromhex("15030300020231")
ALERT_INTERNAL_ERROR = bytes.fromhex("15030300020250")

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


# --------------------------------------------------------------------------
# Config

def yv(v):
    """A YAML value: lists as flow sequences of quoted strings."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(json.dumps(str(x)) for x in v) + "]"
    return json.dumps(str(v))


def L(name, mode, **keys):
    """One listeners[] entry on 127.0.0.1:0."""
    lines = ["  - name: %s" % name, '    listen: "127.0.0.1:0"', "    mode: %s" % mode]
    for k, v in keys.items():
        lines.append("    %s: %s" % (k, yv(v)))
    return "\n".join(lines) + "\n"


def cfg(dns, *listeners, refresh="1s", timeout="500ms", connect_timeout="3s"):
    return "".join([
        "log:\n  level: debug\n",
        "resolver:\n",
        '  nameservers: ["%s"]\n' % dns.nameserver,
        "  refresh: %s\n  min_ttl: 1s\n  timeout: %s\n" % (refresh, timeout),
        "defaults:\n  connect_timeout: %s\n  idle_timeout: 60s\n  sniff_timeout: 3s\n" % connect_timeout,
        "listeners:\n",
    ] + list(listeners))


# --------------------------------------------------------------------------
# Fixtures

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("egress-certs")
    return {
        "api": t.make_cert(d, API),
        "files": t.make_cert(d, FILES),
        "denied": t.make_cert(d, "denied.gk.test"),
    }


def _greeter(conn, server):
    """Greets with "<its own address>\\n", then echoes until EOF."""
    conn.settimeout(30)
    conn.sendall(server.host.encode() + b"\n")
    while True:
        b = conn.recv(65536)
        if not b:
            break
        conn.sendall(b)
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class Pool:
    """Backends that share one port across several loopback aliases, so the
    DNS answer alone picks which one a connection reaches."""

    def __init__(self):
        self.made = []

    def same_port(self, hosts, make):
        for _ in range(50):
            got = {}
            try:
                first = make(hosts[0], 0)
                got[hosts[0]] = first
                for host in hosts[1:]:
                    got[host] = make(host, first.port)
            except OSError:
                for s in got.values():
                    s.close()
                continue
            self.made.extend(got.values())
            return got
        raise RuntimeError("no port free on all of %r" % (hosts,))

    def greeters(self, *hosts):
        return self.same_port(list(hosts), lambda host, port: h.HandlerServer(_greeter, host=host, port=port))

    def tls(self, by_host, certs):
        """by_host: {address: cert key}; TlsBackend tagged with the key."""
        hosts = list(by_host)
        return self.same_port(hosts, lambda host, port: t.TlsBackend(certs[by_host[host]], by_host[host],
                                                                     host=host, port=port))

    def add(self, obj):
        self.made.append(obj)
        return obj

    def close(self):
        for s in reversed(self.made):
            s.close()


@pytest.fixture
def pool():
    p = Pool()
    yield p
    p.close()


# --------------------------------------------------------------------------
# Client helpers

class Ep(tuple):
    """A listener's (host, port) that remembers its gatekeeper, so that a
    client helper notes where the log stood before it connected: client
    ports get reused, and only a later access line can be this client's."""

    def __new__(cls, g, name):
        self = tuple.__new__(cls, g.addr(name))
        self.g = g
        return self


class Local(tuple):
    """A client's (host, port), with .mark: the log length before it connected."""

    def __new__(cls, addr, mark):
        self = tuple.__new__(cls, addr)
        self.mark = mark
        return self


def _mark(addr):
    return addr.g.mark() if isinstance(addr, Ep) else 0


def dial(addr, timeout=10):
    mark = _mark(addr)
    s = h.connect(addr, timeout=timeout)
    return s, Local(s.getsockname()[:2], mark)


def access(g, local, timeout=15):
    """The access line of the connection from `local` (written after local.mark)."""
    client = h.join_hostport(*local)
    after = getattr(local, "mark", 0)
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


def greet(addr, timeout=10):
    """Connect to a plain (tcp) listener; returns (socket, greeting line or
    None when gatekeeper closed without relaying anything, local address)."""
    s, local = dial(addr, timeout=timeout)
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                s.close()
                return None, None, local
            buf += b
    except ConnectionResetError:
        s.close()
        return None, None, local
    return s, buf.decode().strip(), local


def roundtrip(sock, data, timeout=10):
    sock.sendall(data)
    return h.recv_exact(sock, len(data), timeout=timeout)


def tls_greet(addr, sni, **kw):
    """A TLS client through gatekeeper to a TlsBackend: (client, tag, sni seen)."""
    mark = _mark(addr)
    c = t.TlsClient(addr, sni, **kw)
    c.local = Local(c.sock.getsockname()[:2], mark)
    line = c.recv_line().decode().strip()
    fields = dict(p.split("=", 1) for p in line.split())
    return c, fields["tag"], fields["sni"]


def tls_finish(c):
    """Close a TlsClient cleanly: close_notify, half-close, read to EOF, so
    the session ends as reason=closed (no RST from unread bytes)."""
    try:
        c.obj.unwrap()
    except (ssl.SSLError, ValueError, OSError):
        pass
    c._flush()
    c.sock.shutdown(socket.SHUT_WR)
    try:
        h.recv_all(c.sock, timeout=10)
    finally:
        c.sock.close()


def send_and_read(addr, data, timeout=15):
    """Send raw bytes on a fresh connection and read until gatekeeper closes;
    returns (bytes received, local address)."""
    s, local = dial(addr)
    try:
        if data:
            t.send_ignoring_reset(s, data)
        got, _ = t.read_until_close(s, timeout=timeout)
    finally:
        s.close()
    return got, local


def raw_greeting(addr, data, timeout=10):
    """Send raw bytes (e.g. a hand-made ClientHello) through gatekeeper to a
    greeter; returns (its greeting line, local address)."""
    s, local = dial(addr, timeout=timeout)
    try:
        s.sendall(data)
        line, _ = read_line_after(s, b"", timeout)
    finally:
        s.close()
    return line, local


def connect_request(target, headers=(), version="1.1"):
    lines = ["CONNECT %s HTTP/%s" % (target, version), "Host: %s" % target]
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_head(sock, timeout=10):
    """Read one HTTP response head; returns (status, {lower name: value},
    head bytes, bytes read past the head)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = sock.recv(65536)
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


def tunnel(addr, target, headers=(), early=b""):
    """CONNECT through gatekeeper.  Returns (socket, status, headers, head,
    bytes after the head, local address)."""
    s, local = dial(addr)
    try:
        s.sendall(connect_request(target, headers) + early)
        status, hdrs, head, rest = read_head(s)
    except BaseException:
        s.close()
        raise
    return s, status, hdrs, head, rest, local


def read_line_after(sock, rest, timeout=10):
    sock.settimeout(timeout)
    buf = rest
    while b"\n" not in buf:
        b = sock.recv(4096)
        if not b:
            raise AssertionError("EOF before a line: %r" % buf)
        buf += b
    line, _, more = buf.partition(b"\n")
    return line.decode(), more


def tunnel_greeting(addr, target, headers=()):
    """CONNECT to a greeter; returns (socket, greeting, local).  Asserts the
    200 and its exact bytes."""
    s, status, hdrs, head, rest, local = tunnel(addr, target, headers)
    assert status == 200 and head == ESTABLISHED, (target, head)
    line, _ = read_line_after(s, rest)
    return s, line, local


def exchange(addr, raw, timeout=15):
    """One request on a fresh connection: (HttpResponse, how it ended, local)."""
    mark = _mark(addr)
    resp, how, local = t.http_exchange(addr, raw, timeout=timeout)
    return resp, how, Local(local, mark)


def refused_response(addr, raw, timeout=15):
    """Send a request that gatekeeper answers and closes: (HttpResponse, local)."""
    resp, how, local = exchange(addr, raw, timeout=timeout)
    assert how in ("eof", "reset"), "connection left open after %r" % resp
    return resp, local


def curl(args, timeout=20):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    r = subprocess.run(["curl", "-sS", "-v", "--max-time", str(timeout)] + list(args),
                       capture_output=True, timeout=timeout + 10, env=env)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


def assert_denied(acc, reason, name=None):
    """A refusal before any dial, logged as a deny."""
    assert acc["reason"] == reason, acc
    assert acc["decision"] == "deny", acc
    assert acc["upstream"] == "-", acc
    if name is not None:
        assert acc["name"] == name, acc


def poll(fn, timeout=15, interval=0.2):
    """Call fn() until it returns a true value; returns that value or the last
    one after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# Pinned tunnels (mode tcp, egress: true)

def test_pinned_tunnel_relays_and_follows_a_dns_change(gk, dns, pool):
    b = pool.greeters("127.0.0.2", "127.0.0.3")
    port = b["127.0.0.2"].port
    dns.set(API, ["127.0.0.2"])
    g = gk(cfg(dns, L("tunnel", "tcp", upstream="%s:%d" % (API, port), egress=True,
                      allow_ranges=["127.0.0.0/8"])))
    addr = Ep(g, "tunnel")

    def reach(want):
        s, tag, local = greet(addr)
        if tag == want:
            return s, local
        if s:
            s.close()
        return None

    got = poll(lambda: reach("127.0.0.2"))
    assert got, "tunnel never reached 127.0.0.2; log:\n" + g.tail()
    first, local = got
    data = h.deterministic_bytes(200000, seed=4)
    assert roundtrip(first, data) == data

    dns.set(API, ["127.0.0.3"])
    got = poll(lambda: reach("127.0.0.3"))
    assert got, "tunnel did not follow the DNS change; log:\n" + g.tail()
    second, local2 = got
    assert roundtrip(second, b"after the change") == b"after the change"
    # the session opened before the change still flows to the old address
    assert roundtrip(first, b"still here") == b"still here"
    first.close()
    second.close()
    acc = access(g, local)
    assert acc["upstream"] == "127.0.0.2:%d" % port and acc["reason"] == "closed", acc
    acc = access(g, local2)
    assert acc["upstream"] == "127.0.0.3:%d" % port and acc["reason"] == "closed", acc


def test_pinned_tunnel_default_guard_refuses_loopback(gk, dns, pool):
    """The same tunnel without allow_ranges: the default guard refuses the
    loopback answer, names the address and its class, and dials nothing. An
    IP-literal upstream on an egress listener is guarded too; an inbound
    listener (no egress) to the same name is not."""
    b = pool.greeters("127.0.0.2")["127.0.0.2"]
    dns.set(API, ["127.0.0.2"])
    g = gk(cfg(dns,
               L("tunnel", "tcp", upstream="%s:%d" % (API, b.port), egress=True),
               L("literal", "tcp", upstream="127.0.0.2:%d" % b.port, egress=True),
               L("inbound", "tcp", upstream="%s:%d" % (API, b.port))))

    # the inbound listener reaches the backend once the name resolved
    def inbound():
        s, tag, _ = greet(Ep(g, "inbound"))
        if s:
            s.close()
        return tag == "127.0.0.2"

    assert poll(inbound), g.tail()
    inbound_hits = b.accepted

    for lname in ("tunnel", "literal"):
        def attempt():
            s, tag, local = greet(Ep(g, lname))
            if s:
                s.close()
                raise AssertionError("%s relayed to the backend (greeting %r)" % (lname, tag))
            acc = access(g, local)
            return acc if acc["reason"] != "no_address" else None

        acc = poll(attempt)
        assert acc, "%s: still no_address; log:\n%s" % (lname, g.tail())
        assert_denied(acc, "address_denied")
        assert "127.0.0.2" in acc.get("error", "") and "loopback" in acc.get("error", ""), acc
        # and every later connection the same
        for _ in range(3):
            s, tag, local = greet(Ep(g, lname))
            assert s is None, tag
            assert_denied(access(g, local), "address_denied")
    assert b.accepted == inbound_hits
    assert g.alive()


# --------------------------------------------------------------------------
# Allowlisted TLS gateway

@pytest.fixture
def tls_gw(gk, dns, pool, certs):
    """mode tls, allow [api.gk.test, *.files.gk.test], port P, loopback allowed.
    api -> 127.0.0.2, files -> 127.0.0.3, decoys (names that must not pass)
    -> a backend on 127.0.0.9, which the allowlist alone keeps out."""
    srv = pool.tls({"127.0.0.2": "api", "127.0.0.3": "files", DENIED: "denied"}, certs)
    port = srv["127.0.0.2"].port
    dns.set(API, ["127.0.0.2"])
    for n in (FILES, "a.b.files.gk.test"):
        dns.set(n, ["127.0.0.3"])
    for n in ("files.gk.test", "evil-files.gk.test", "other.gk.test", "xapi.gk.test"):
        dns.set(n, [DENIED])
    g = gk(cfg(dns, L("egress-tls", "tls", allow=[API, "*.files.gk.test"], port=port,
                      allow_ranges=["127.0.0.0/8"])))
    return g, Ep(g, "egress-tls"), srv, port


def test_tls_gateway_allowed_names_reach_their_backends(tls_gw, certs):
    g, addr, srv, port = tls_gw
    for sni, key, backend, rule in ((API, "api", "127.0.0.2", API),
                                    (FILES, "files", "127.0.0.3", "*.files.gk.test"),
                                    ("a.b.files.gk.test", "files", "127.0.0.3", "*.files.gk.test")):
        c, tag, seen = tls_greet(addr, sni)
        try:
            assert (tag, seen) == (key, sni)
            assert c.peer_der == certs[key].der  # TLS is not terminated
            payload = h.deterministic_bytes(30000, seed=2)
            assert c.roundtrip(payload) == payload
            local = c.local
        finally:
            tls_finish(c)
        acc = access(g, local)
        assert acc["name"] == sni and acc["decision"] == "allow", acc
        assert acc["upstream"] == "%s:%d" % (backend, port), acc
        assert acc["rule"] == rule, acc
        assert acc["port"] == str(port), acc
        assert acc["reason"] == "closed", acc
    # openssl s_client gets the backend's certificate too
    out = t.s_client(addr, API)
    assert t.s_client_subject_cn(out) == API, out[-2000:]
    assert srv[DENIED].accepted == 0


NOT_ALLOWED_SNI = [
    "files.gk.test",            # the apex is not matched by *.files.gk.test
    "evil-files.gk.test",       # a suffix match must start at a dot
    "files.gk.test.evil.test",  # the allowed name as a prefix
    "api.gk.test.evil.test",
    "xapi.gk.test",
    "other.gk.test",
    "127.0.0.2",                # IP literal: not_allowed unless listed
    "::1",
]


def test_tls_gateway_refuses_names_outside_the_allowlist(tls_gw, certs):
    g, addr, srv, port = tls_gw
    good, tag, _ = tls_greet(addr, API)
    assert tag == "api"
    before = {k: s.accepted for k, s in srv.items()}
    for sni in NOT_ALLOWED_SNI:
        got, local = send_and_read(addr, t.raw_client_hello(sni))
        assert got == ALERT_UNRECOGNIZED_NAME, (sni, got)
        acc = access(g, local)
        assert_denied(acc, "not_allowed", sni)
        assert good.roundtrip(sni.encode()) == sni.encode()
    # with real clients too
    for sni in ("evil-files.gk.test", "files.gk.test.evil.test"):
        with pytest.raises((ConnectionError, OSError)):
            t.TlsClient(addr, sni).close()
        out = t.s_client(addr, sni)
        assert "unrecognized name" in out or "alert number 112" in out, out[-1500:]
    assert {k: s.accepted for k, s in srv.items()} == before
    good.close()
    assert g.alive()


def test_a_denied_access_line_carries_port_and_rule(gk, dns, pool):
    """Every allow or deny logs name, port, decision, rule (- when no entry
    matched), upstream and reason; a not_allowed refusal too."""
    b = pool.greeters("127.0.0.2")["127.0.0.2"]
    dns.set(API, ["127.0.0.2"])
    guard = dict(allow_ranges=["127.0.0.0/8"])
    g = gk(cfg(dns,
               L("proxy", "connect", allow=["%s:%d" % (API, b.port)], **guard),
               L("tls", "tls", allow=[API], port=b.port, **guard),
               L("http", "http", allow=[API], port=b.port, **guard)))
    resp, local = refused_response(Ep(g, "proxy"), connect_request("other.gk.test:%d" % b.port))
    assert resp.status == 403
    acc = access(g, local)
    assert (acc["name"], acc.get("port"), acc["decision"], acc.get("rule"), acc["reason"]) == \
        ("other.gk.test", str(b.port), "deny", "-", "not_allowed"), acc
    got, local = send_and_read(Ep(g, "tls"), t.raw_client_hello("other.gk.test"))
    assert got == ALERT_UNRECOGNIZED_NAME
    acc = access(g, local)
    assert (acc["name"], acc.get("port"), acc["decision"], acc.get("rule"), acc["reason"]) == \
        ("other.gk.test", str(b.port), "deny", "-", "not_allowed"), acc
    resp, local = refused_response(Ep(g, "http"), t.http_request("other.gk.test"))
    assert resp.status == 403
    acc = access(g, local)
    assert (acc["name"], acc.get("port"), acc["decision"], acc.get("rule"), acc["reason"]) == \
        ("other.gk.test", str(b.port), "deny", "-", "not_allowed"), acc
    assert b.accepted == 0


def test_tls_gateway_name_tricks(tls_gw, certs, dns):
    """Case and a trailing dot are normalized, then allowed; names that are
    too long or carry NUL or blanks are malformed (plain close); an allowed
    connection keeps flowing throughout."""
    g, addr, srv, port = tls_gw
    good, tag, _ = tls_greet(addr, FILES)
    assert tag == "files"

    for sent, key, norm in (("API.GK.TEST", "api", API), ("api.gk.test.", "api", API),
                            ("X.Files.GK.test.", "files", FILES)):
        c, tag, seen = tls_greet(addr, sent)
        local = c.local
        c.close()
        assert (tag, seen) == (key, sent)
        acc = access(g, local)
        assert acc["name"] == norm and acc["decision"] == "allow", acc

    # 253 bytes in all is still a name; 254 is not
    n253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 47]) + ".files.gk.test"
    assert len(n253) == 253
    dns.set(n253, ["127.0.0.3"])
    files_before = srv["127.0.0.3"].accepted
    s, local = dial(addr)
    s.sendall(t.raw_client_hello(n253))
    t.read_until_close(s, timeout=15)  # the backend refuses the hand-made hello and closes
    s.close()
    acc = access(g, local)
    assert acc["name"] == n253 and acc["decision"] == "allow", acc
    assert acc["upstream"] == "127.0.0.3:%d" % port, acc
    assert srv["127.0.0.3"].accepted == files_before + 1

    before = {k: b.accepted for k, b in srv.items()}
    for bad in ("e" + n253,                      # 254 bytes
                b"api.gk.test\x00.evil.test",     # NUL inside
                b"api.gk.test\x00",               # NUL at the end
                b"x\x00.files.gk.test",
                "x y.files.gk.test",              # a space
                "api.gk.test ",
                "x\t.files.gk.test"):
        got, local = send_and_read(addr, t.raw_client_hello(bad))
        assert got == b"", (bad, got)
        acc = access(g, local)
        assert acc["reason"] == "malformed", (bad, acc)
        assert acc["upstream"] == "-", acc
        assert good.roundtrip(b"flowing") == b"flowing"
    assert {k: b.accepted for k, b in srv.items()} == before
    good.close()
    assert g.alive()


def test_tls_gateway_ip_literal_only_when_listed(gk, dns, pool, certs):
    srv = pool.tls({"127.0.0.2": "api", "127.0.0.3": "files"}, certs)
    port = srv["127.0.0.2"].port
    dns.set(API, ["127.0.0.2"])
    g = gk(cfg(dns,
               L("literal", "tls", allow=["127.0.0.2"], port=port, allow_ranges=["127.0.0.0/8"]),
               L("block", "tls", allow=["127.0.0.0/30"], port=port, allow_ranges=["127.0.0.0/8"]),
               L("star", "tls", allow=["*"], port=port, allow_ranges=["127.0.0.0/8"])))

    # openssl sends an IP literal as SNI when told to; the listed one passes
    out = t.s_client(Ep(g, "literal"), "127.0.0.2")
    assert t.s_client_subject_cn(out) == API, out[-2000:]
    assert srv["127.0.0.2"].results[-1]["sni"] == "127.0.0.2"
    # inside the listed block
    out = t.s_client(Ep(g, "block"), "127.0.0.3")
    assert t.s_client_subject_cn(out) == FILES, out[-2000:]
    # "*" admits names, never IP literals
    c, tag, _ = tls_greet(Ep(g, "star"), API)
    c.close()
    assert tag == "api"

    before = {k: b.accepted for k, b in srv.items()}
    for lname, sni in (("literal", "127.0.0.3"), ("literal", API), ("block", "127.0.0.4"),
                       ("star", "127.0.0.2"), ("star", "::1"), ("star", "::ffff:127.0.0.2")):
        got, local = send_and_read(Ep(g, lname), t.raw_client_hello(sni))
        assert got == ALERT_UNRECOGNIZED_NAME, (lname, sni, got)
        assert_denied(access(g, local), "not_allowed")
    assert {k: b.accepted for k, b in srv.items()} == before


# --------------------------------------------------------------------------
# Allowlisted HTTP gateway

def test_http_gateway_allowlist(gk, dns, whoami):
    w = whoami(host="127.0.0.2", name="API")
    dns.set(API, ["127.0.0.2"])
    dns.set("other.gk.test", ["127.0.0.2"])
    g = gk(cfg(dns, L("egress-http", "http", allow=[API], port=w.port, allow_ranges=["127.0.0.0/8"])))
    addr = Ep(g, "egress-http")

    for host in (API, "API.gk.test.", "%s:%d" % (API, w.port)):
        req = t.http_request(host, path="/hello")
        resp, _, local = exchange(addr, req)
        assert resp.status == 200 and resp.field("Name") == "API", (host, resp)
        # forwarded with its request line and Host as received, plus the client's address
        assert b"GET /hello HTTP/1.1\r\nHost: %s\r\n" % host.encode() in resp.body
        assert b"X-Forwarded-For: 127.0.0.1\r\n" in resp.body
        acc = access(g, local)
        assert acc["name"] == API and acc["decision"] == "allow", acc
        assert acc["upstream"] == w.addr and acc["rule"] == API, acc

    # a keep-alive client keeps its connection while others are refused
    good = h.connect(addr)
    good.sendall(t.http_request(API, close=False))
    gr = t.HttpReader(good)
    assert gr.response().status == 200

    for host in ("other.gk.test", "api.gk.test.evil.test", "127.0.0.2", "127.0.0.2:%d" % w.port,
                 "[::1]:%d" % w.port):
        resp, local = refused_response(addr, t.http_request(host))
        assert resp.status == 403, (host, resp)
        assert resp.body.startswith(b"gatekeeper:"), resp
        assert_denied(access(g, local), "not_allowed")
        good.sendall(t.http_request(API, path="/again", close=False))
        assert gr.response().field("Name") == "API"
    good.close()
    assert g.alive()


# --------------------------------------------------------------------------
# CONNECT proxy

def test_connect_curl_https_through_the_proxy(gk, dns, pool, certs):
    ss = pool.add(t.SServer(certs["api"], host="127.0.0.2"))
    dns.set(API, ["127.0.0.2"])
    dns.set("other.gk.test", ["127.0.0.2"])
    g = gk(cfg(dns, L("proxy", "connect", allow=["%s:%d" % (API, ss.port)],
                      allow_ranges=["127.0.0.0/8"])))
    proxy = "http://%s" % g.addr_str("proxy")
    rc, out, err = curl(["-k", "--proxy", proxy, "https://%s:%d/" % (API, ss.port)])
    assert rc == 0, err
    assert "subject: CN=%s" % API in err, err
    assert b"s_server" in out, out[:300]
    acc = g.wait_access(1)[-1]
    assert acc["name"] == API and acc["port"] == str(ss.port), acc
    assert acc["decision"] == "allow" and acc["upstream"] == "127.0.0.2:%d" % ss.port, acc
    assert acc["reason"] == "closed", acc

    # a name outside the list: curl sees the 403
    rc, out, err = curl(["-k", "--proxy", proxy, "https://other.gk.test:%d/" % ss.port])
    assert rc != 0
    assert re.search(r"< HTTP/1\.1 403", err), err
    assert re.search(r"(?i)< X-Gatekeeper-Reason: not_allowed", err), err


@pytest.fixture
def proxy_env(gk, dns, pool):
    """Greeters on 127.0.0.2/.3/.9 at port EP; a CONNECT listener allowing
    api.gk.test:EP, plain.gk.test (port 443 only), the block 127.0.0.3/32:EP."""
    b = pool.greeters("127.0.0.2", "127.0.0.3", DENIED)
    ep = b["127.0.0.2"].port
    dns.set(API, ["127.0.0.2"])
    dns.set("plain.gk.test", ["127.0.0.2"])
    dns.set("other.gk.test", ["127.0.0.2"])
    g = gk(cfg(dns, L("proxy", "connect",
                      allow=["%s:%d" % (API, ep), "plain.gk.test", "127.0.0.3/32:%d" % ep],
                      allow_ranges=["127.0.0.0/8"])))
    return g, Ep(g, "proxy"), b, ep


def test_connect_tunnels_to_an_allowed_target(proxy_env):
    g, addr, b, ep = proxy_env
    s, line, local = tunnel_greeting(addr, "%s:%d" % (API, ep))
    assert line == "127.0.0.2"
    data = h.deterministic_bytes(100000, seed=6)
    assert roundtrip(s, data) == data
    s.shutdown(socket.SHUT_WR)
    assert h.recv_all(s) == b""
    s.close()
    acc = access(g, local)
    assert acc["name"] == API and acc["port"] == str(ep) and acc["decision"] == "allow", acc
    assert acc["upstream"] == "127.0.0.2:%d" % ep and acc["reason"] == "closed", acc
    assert int(acc["bytes_in"]) >= len(data), acc
    # an IP literal inside an allowed block
    s, line, local = tunnel_greeting(addr, "127.0.0.3:%d" % ep)
    s.close()
    assert line == "127.0.0.3"
    acc = access(g, local)
    assert acc["upstream"] == "127.0.0.3:%d" % ep and acc["decision"] == "allow", acc


def test_connect_forwards_bytes_sent_right_after_the_head(proxy_env):
    g, addr, b, ep = proxy_env
    early = b"sent with the head\n" + h.deterministic_bytes(3000, seed=8)
    s, status, hdrs, head, rest, local = tunnel(addr, "%s:%d" % (API, ep), early=early)
    assert head == ESTABLISHED, head
    line, more = read_line_after(s, rest)
    assert line == "127.0.0.2"
    got = more + h.recv_exact(s, len(early) - len(more))
    assert got == early
    s.close()
    acc = access(g, local)
    assert acc["decision"] == "allow" and int(acc["bytes_in"]) >= len(early), acc


CONNECT_REFUSALS = {
    # case: (raw request, status, reason)
    "name_not_allowed": (lambda ep: connect_request("other.gk.test:%d" % ep), 403, "not_allowed"),
    "port_not_listed": (lambda ep: connect_request("%s:443" % API), 403, "not_allowed"),
    "default_port_only_443": (lambda ep: connect_request("plain.gk.test:%d" % ep), 403, "not_allowed"),
    "ip_literal": (lambda ep: connect_request("127.0.0.2:%d" % ep), 403, "not_allowed"),
    "ip_literal_outside_block": (lambda ep: connect_request("127.0.0.4:%d" % ep), 403, "not_allowed"),
    "ipv6_literal": (lambda ep: connect_request("[::1]:%d" % ep), 403, "not_allowed"),
    "mapped_literal": (lambda ep: connect_request("[::ffff:127.0.0.2]:%d" % ep), 403, "not_allowed"),
    "absolute_form_name_not_allowed": (
        lambda ep: t.http_request("other.gk.test:%d" % ep, path="http://other.gk.test:%d/" % ep),
        403, "not_allowed"),
    "absolute_form_default_port_80": (
        lambda ep: t.http_request(API, path="http://%s/" % API), 403, "not_allowed"),
    "absolute_form_ip_literal": (
        lambda ep: t.http_request("127.0.0.2:%d" % ep, path="http://127.0.0.2:%d/" % ep),
        403, "not_allowed"),
    "origin_form": (lambda ep: t.http_request(API), 400, None),
    "options_star": (lambda ep: t.http_request(API, path="*", method="OPTIONS"), 405, None),
    "garbage": (lambda ep: b"\x16\x03\x01\x00\x20" + bytes(32) + b"\r\n\r\n", 400, None),
    "not_http": (lambda ep: b"HELLO THERE\r\n\r\n", 400, None),
}


@pytest.mark.parametrize("case", sorted(CONNECT_REFUSALS))
def test_connect_refusals(proxy_env, case):
    g, addr, b, ep = proxy_env
    make, status, reason = CONNECT_REFUSALS[case]
    good, line, _ = tunnel_greeting(addr, "%s:%d" % (API, ep))
    before = {k: s.accepted for k, s in b.items()}
    resp, local = refused_response(addr, make(ep))
    assert resp.status == status, (case, resp)
    acc = access(g, local)
    assert acc["upstream"] == "-", acc
    if reason:
        assert resp.header("x-gatekeeper-reason") == reason, resp
        assert_denied(acc, reason)
    if case.startswith("port") or case.startswith("default_port"):
        assert "port" in acc.get("error", ""), acc
    assert {k: s.accepted for k, s in b.items()} == before
    assert roundtrip(good, b"still flowing") == b"still flowing"
    good.close()
    assert g.alive()


def test_connect_absolute_form_via_curl(gk, dns, whoami):
    w = whoami(host="127.0.0.2", name="API")
    dns.set(API, ["127.0.0.2"])
    g = gk(cfg(dns, L("proxy", "connect", allow=["%s:%d" % (API, w.port)],
                      allow_ranges=["127.0.0.0/8"])))
    url = "http://%s:%d/hello?x=1" % (API, w.port)
    rc, out, err = curl(["--proxy", "http://%s" % g.addr_str("proxy"), url])
    assert rc == 0, err
    assert re.search(rb"^Name: API$", out, re.M), out
    # forwarded as received: the absolute-form request line reaches whoami
    assert ("GET %s HTTP/1.1" % url).encode() in out, out
    acc = g.wait_access(1)[-1]
    assert acc["name"] == API and acc["port"] == str(w.port), acc
    assert acc["upstream"] == w.addr and acc["decision"] == "allow", acc


def test_connect_proxy_auth(gk, dns, pool, whoami, certs):
    ss = pool.add(t.SServer(certs["api"], host="127.0.0.2"))
    w = whoami(host="127.0.0.2", name="API")
    dns.set(API, ["127.0.0.2"])
    g = gk(cfg(dns, L("proxy", "connect",
                      allow=["%s:%d" % (API, ss.port), "%s:%d" % (API, w.port)],
                      proxy_auth=["alice:s3cret"], allow_ranges=["127.0.0.0/8"])))
    addr = Ep(g, "proxy")
    proxy = "http://%s" % g.addr_str("proxy")
    target = "%s:%d" % (API, ss.port)

    def basic(cred):
        return "Proxy-Authorization: Basic " + base64.b64encode(cred).decode()

    for headers, reason in (((), "auth_required"),
                            ((basic(b"alice:wrong"),), "auth_failed"),
                            ((basic(b"bob:s3cret"),), "auth_failed"),
                            ((basic(b"alice:s3cret2"),), "auth_failed"),
                            (("Proxy-Authorization: Basic !!!notbase64",), "auth_failed"),
                            (("Proxy-Authorization: Bearer YWxpY2U6czNjcmV0",), "auth_failed")):
        resp, local = refused_response(addr, connect_request(target, headers))
        assert resp.status == 407, (headers, resp)
        assert resp.header("proxy-authenticate") == 'Basic realm="gatekeeper"', resp
        acc = access(g, local)
        assert acc["reason"] == reason and acc["upstream"] == "-", (headers, acc)
    # absolute-form needs the credentials as well
    resp, _ = refused_response(addr, t.http_request("%s:%d" % (API, w.port),
                                                    path="http://%s:%d/" % (API, w.port)))
    assert resp.status == 407, resp

    # curl without and with the right credentials
    rc, out, err = curl(["-k", "--proxy", proxy, "https://%s/" % target])
    assert rc != 0 and re.search(r"< HTTP/1\.1 407", err), err
    rc, out, err = curl(["-k", "--proxy", proxy, "--proxy-user", "alice:wrong", "https://%s/" % target])
    assert rc != 0 and re.search(r"< HTTP/1\.1 407", err), err
    rc, out, err = curl(["-k", "--proxy", proxy, "--proxy-user", "alice:s3cret", "https://%s/" % target])
    assert rc == 0, err
    assert "subject: CN=%s" % API in err and b"s_server" in out, err
    rc, out, err = curl(["--proxy", proxy, "--proxy-user", "alice:s3cret",
                         "http://%s:%d/" % (API, w.port)])
    assert rc == 0 and re.search(rb"^Name: API$", out, re.M), (err, out)
    assert g.alive()


def test_connect_proxy_auth_header_and_scheme_are_case_insensitive(gk, dns, pool):
    """RFC 9110: field names and the auth scheme are case-insensitive."""
    b = pool.greeters("127.0.0.2")["127.0.0.2"]
    dns.set(API, ["127.0.0.2"])
    g = gk(cfg(dns, L("proxy", "connect", allow=["%s:%d" % (API, b.port)],
                      proxy_auth=["alice:s3cret"], allow_ranges=["127.0.0.0/8"])))
    cred = base64.b64encode(b"alice:s3cret").decode()
    for header in ("proxy-authorization: basic " + cred, "PROXY-AUTHORIZATION: BASIC " + cred):
        s, line, _ = tunnel_greeting(Ep(g, "proxy"), "%s:%d" % (API, b.port), headers=[header])
        s.close()
        assert line == "127.0.0.2", header


# --------------------------------------------------------------------------
# The address guard

def test_deny_ranges_beat_allow_ranges(gk, dns, pool):
    b = pool.greeters("127.0.0.2", DENIED)
    ep = b["127.0.0.2"].port
    dns.set("deny.gk.test", [DENIED])
    dns.set(API, ["127.0.0.2"])
    guard = dict(allow_ranges=["127.0.0.0/8"], deny_ranges=["%s/32" % DENIED])
    g = gk(cfg(dns,
               L("proxy", "connect", allow=["deny.gk.test:%d" % ep, "%s:%d" % (API, ep)], **guard),
               L("tls", "tls", allow=["deny.gk.test", API], port=ep, **guard),
               L("http", "http", allow=["deny.gk.test", API], port=ep, **guard),
               L("tunnel", "tcp", upstream="deny.gk.test:%d" % ep, egress=True, **guard)))

    # the allowed name passes on each listener
    s, line, _ = tunnel_greeting(Ep(g, "proxy"), "%s:%d" % (API, ep))
    s.close()
    assert line == "127.0.0.2"
    line, local = raw_greeting(Ep(g, "tls"), t.raw_client_hello(API))
    assert line == "127.0.0.2"
    assert access(g, local)["upstream"] == "127.0.0.2:%d" % ep

    resp, local = refused_response(Ep(g, "proxy"), connect_request("deny.gk.test:%d" % ep))
    assert resp.status == 403 and resp.header("x-gatekeeper-reason") == "address_denied", resp
    acc = access(g, local)
    assert_denied(acc, "address_denied", "deny.gk.test")
    assert DENIED in acc.get("error", ""), acc

    got, local = send_and_read(Ep(g, "tls"), t.raw_client_hello("deny.gk.test"))
    assert got == ALERT_ACCESS_DENIED, got
    assert_denied(access(g, local), "address_denied", "deny.gk.test")

    resp, local = refused_response(Ep(g, "http"), t.http_request("deny.gk.test"))
    assert resp.status == 403, resp
    assert_denied(access(g, local), "address_denied", "deny.gk.test")

    def tunnel_refused():
        s, tag, local = greet(Ep(g, "tunnel"))
        assert s is None, "the pinned tunnel reached %r" % tag
        acc = access(g, local)
        return acc if acc["reason"] != "no_address" else None

    acc = poll(tunnel_refused)
    assert acc and acc["reason"] == "address_denied", (acc, g.tail())
    assert b[DENIED].accepted == 0


def test_a_guard_refusal_is_logged_as_a_deny(gk, dns, pool):
    """The access line of a connection the address guard refused says
    decision=deny, like every other refusal: an operator looking for denied
    egress (decision=deny) must find the SSRF attempts among them."""
    b = pool.greeters("127.0.0.2")["127.0.0.2"]
    dns.set(API, ["127.0.0.2"])
    g = gk(cfg(dns,
               L("proxy", "connect", allow=["%s:%d" % (API, b.port)]),
               L("tls", "tls", allow=[API], port=b.port)))
    resp, local = refused_response(Ep(g, "proxy"), connect_request("%s:%d" % (API, b.port)))
    assert resp.status == 403 and resp.header("x-gatekeeper-reason") == "address_denied", resp
    acc = access(g, local)
    assert acc["reason"] == "address_denied" and acc["upstream"] == "-", acc
    assert "loopback" in acc.get("error", ""), acc
    assert acc["decision"] == "deny", acc
    got, local = send_and_read(Ep(g, "tls"), t.raw_client_hello(API))
    assert got == ALERT_ACCESS_DENIED, got
    acc = access(g, local)
    assert acc["reason"] == "address_denied" and acc["decision"] == "deny", acc
    assert b.accepted == 0


def test_a_name_with_a_denied_and_an_allowed_address_dials_the_allowed_one(gk, dns, pool):
    b = pool.greeters("127.0.0.2", DENIED)
    ep = b["127.0.0.2"].port
    dns.set("two.gk.test", [DENIED, "127.0.0.2"])
    guard = dict(allow_ranges=["127.0.0.0/8"], deny_ranges=["%s/32" % DENIED])
    g = gk(cfg(dns,
               L("proxy", "connect", allow=["two.gk.test:%d" % ep], **guard),
               L("tls", "tls", allow=["two.gk.test"], port=ep, **guard)))
    for _ in range(6):
        s, line, local = tunnel_greeting(Ep(g, "proxy"), "two.gk.test:%d" % ep)
        s.close()
        assert line == "127.0.0.2"
        acc = access(g, local)
        assert acc["upstream"] == "127.0.0.2:%d" % ep and acc["decision"] == "allow", acc
        line, local = raw_greeting(Ep(g, "tls"), t.raw_client_hello("two.gk.test"))
        assert line == "127.0.0.2"
        assert access(g, local)["upstream"] == "127.0.0.2:%d" % ep
    assert b[DENIED].accepted == 0


def test_rebinding_to_a_denied_address_is_refused_after_refresh(gk, dns, pool):
    b = pool.greeters("127.0.0.2", DENIED)
    ep = b["127.0.0.2"].port
    dns.set("rebind.gk.test", ["127.0.0.2"])
    guard = dict(allow_ranges=["127.0.0.0/8"], deny_ranges=["%s/32" % DENIED])
    g = gk(cfg(dns,
               L("proxy", "connect", allow=["rebind.gk.test:%d" % ep], **guard),
               L("tls", "tls", allow=["rebind.gk.test"], port=ep, **guard)))
    addr = Ep(g, "proxy")
    first, line, _ = tunnel_greeting(addr, "rebind.gk.test:%d" % ep)
    assert line == "127.0.0.2"

    dns.set("rebind.gk.test", [DENIED])

    def refused():
        s, status, hdrs, head, rest, local = tunnel(addr, "rebind.gk.test:%d" % ep)
        if status == 200:
            line, _ = read_line_after(s, rest)
            s.close()
            assert line == "127.0.0.2", "dialed %s after the rebinding" % line
            return None
        s.close()
        return status, hdrs, local

    got = poll(refused, timeout=20)
    assert got, "still connecting after the name moved to a denied address; log:\n" + g.tail()
    status, hdrs, local = got
    assert status == 403 and hdrs.get("x-gatekeeper-reason") == "address_denied", (status, hdrs)
    acc = access(g, local)
    assert_denied(acc, "address_denied", "rebind.gk.test")
    assert DENIED in acc.get("error", ""), acc
    got, local = send_and_read(Ep(g, "tls"), t.raw_client_hello("rebind.gk.test"))
    assert got == ALERT_ACCESS_DENIED, got
    # the tunnel opened before keeps its checked address
    assert roundtrip(first, b"old tunnel") == b"old tunnel"
    first.close()
    assert b[DENIED].accepted == 0


def test_dns_failure_refuses_with_no_address_and_spares_cached_names(gk, dns, pool, certs):
    g_ = pool.greeters("127.0.0.2")["127.0.0.2"]
    ep = g_.port
    dns.set(API, ["127.0.0.2"])
    g = gk(cfg(dns,
               L("proxy", "connect", allow=["%s:%d" % (API, ep), "*.files.gk.test:%d" % ep,
                                            "api.other.test:%d" % ep],
                 allow_ranges=["127.0.0.0/8"]),
               L("tls", "tls", allow=[API, "*.files.gk.test"], port=ep, allow_ranges=["127.0.0.0/8"]),
               L("http", "http", allow=[API, "*.files.gk.test"], port=ep, allow_ranges=["127.0.0.0/8"]),
               connect_timeout="5s"))
    paddr = Ep(g, "proxy")
    open_tunnel, line, _ = tunnel_greeting(paddr, "%s:%d" % (API, ep))
    assert line == "127.0.0.2"
    line, _ = raw_greeting(Ep(g, "tls"), t.raw_client_hello(API))
    assert line == "127.0.0.2"

    # NXDOMAIN, and REFUSED (a name outside dnsmasq's domain)
    for target in ("nx.files.gk.test:%d" % ep, "api.other.test:%d" % ep):
        resp, local = refused_response(paddr, connect_request(target))
        assert resp.status == 503, (target, resp)
        acc = access(g, local)
        assert acc["reason"] == "no_address" and acc["upstream"] == "-", acc

    dns.pause()  # queries now time out
    try:
        mark = g.mark()
        resp, local = refused_response(paddr, connect_request("new.files.gk.test:%d" % ep), timeout=20)
        assert resp.status == 503, resp
        acc = access(g, local)
        assert acc["reason"] == "no_address" and acc["upstream"] == "-", acc
        assert acc["name"] == "new.files.gk.test", acc
        g.wait_log(r"resolve failed.*new\.files\.gk\.test", after=mark)

        got, local = send_and_read(Ep(g, "tls"), t.raw_client_hello("tls.files.gk.test"), timeout=20)
        assert got == ALERT_INTERNAL_ERROR, got
        acc = access(g, local, timeout=20)
        assert acc["reason"] == "no_address" and acc["name"] == "tls.files.gk.test", acc

        resp, local = refused_response(Ep(g, "http"), t.http_request("web.files.gk.test"), timeout=20)
        assert resp.status == 503, resp
        assert access(g, local, timeout=20)["reason"] == "no_address"

        # refreshes of the cached name fail meanwhile: the last good answer stays
        time.sleep(2.5)
        for _ in range(3):
            s, line, local = tunnel_greeting(paddr, "%s:%d" % (API, ep))
            s.close()
            assert line == "127.0.0.2"
        line, _ = raw_greeting(Ep(g, "tls"), t.raw_client_hello(API))
        assert line == "127.0.0.2"
        assert roundtrip(open_tunnel, b"during the outage") == b"during the outage"
    finally:
        dns.resume()
    open_tunnel.close()
    assert g.alive()


def test_a_burst_for_one_unknown_name_does_not_flood_dns(gk, dns, pool):
    b = pool.greeters("127.0.0.2")["127.0.0.2"]
    ep = b.port
    dns.set(API, ["127.0.0.2"])
    g = gk(cfg(dns, L("proxy", "connect", allow=["*.files.gk.test:%d" % ep, "%s:%d" % (API, ep)],
                      allow_ranges=["127.0.0.0/8"], max_connections=1000)))
    addr = Ep(g, "proxy")
    target = "nx-burst.files.gk.test:%d" % ep
    statuses = []
    errors = []
    lock = threading.Lock()

    def worker(n):
        for _ in range(n):
            try:
                resp, _, _ = t.http_exchange(addr, connect_request(target), timeout=20)
                with lock:
                    statuses.append(resp.status)
            except Exception as e:  # recorded, asserted below
                with lock:
                    errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(10,)) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors[:5]
    assert statuses == [503] * 200, sorted(set(statuses))
    acc = g.wait_access(200, timeout=30)
    assert sum(1 for a in acc if a.get("name") == "nx-burst.files.gk.test"
               and a["reason"] == "no_address") == 200
    dns.logged("nx-burst.files.gk.test")
    queries = [l for l in dns.logs().splitlines()
               if re.search(r"query\[\w+\] nx-burst\.files\.gk\.test", l)]
    assert 1 <= len(queries) <= 30, "%d DNS queries for one name:\n%s" % (
        len(queries), "\n".join(queries[:50]))
    assert g.alive()
    s, line, _ = tunnel_greeting(addr, "%s:%d" % (API, ep))
    s.close()
    assert line == "127.0.0.2"
