"""Report mode (`action: report`), the observed table, `/observed` and
`gatekeeper observed`, from the side of someone trying to abuse them.

Report mode turns exactly two refusals into a pass-through: `not_allowed`
(the allowlist, a connect port not listed, an IP literal not listed) and
`source_denied` (listener `sources`, `client_sources`, a rule's `sources`).
Everything else must stay a real refusal, above all the address guard: a
report-mode gateway that dials 127.0.0.1, 10.0.0.5 or 169.254.169.254
because "it only reports" is an open proxy into the internal network.

- Pass-through on loopback: tls, http and connect listeners in report mode
  let a name outside their allowlist reach a real backend (bytes checked end
  to end); the access line says decision=would_deny reason=not_allowed and
  end= how it really ended; /observed has the entry with every field, counts
  grow, timestamps are RFC 3339, the array is sorted by count; /metrics
  counts would_deny; an enforcing twin of each listener still refuses.
- The guard in report mode: on loopback (the default guard refuses
  loopback; deny_ranges take 127.0.0.9 back) and in a private network
  namespace (netns.py) with canaries on 10.0.0.5, 169.254.169.254, ... where
  a canary hit is a bypass: names resolving inside refused classes, IP
  literals and their odd spellings, CONNECT to internal addresses, the
  second request of a kept-alive connection, a name whose answer mixes an
  internal and a public address, a name that rebinds.
- Limits and parsing stay: max_connections, max_connections_per_source,
  malformed and smuggled requests, no_name, no_route, PROXY protocol rules,
  proxy_auth (407, and an unauthenticated flood notes nothing).
- Sources: listener sources, client_sources, allow-entry and route sources
  pass as would_deny source_denied; no_route after them is still refused.
- The table: admin.observed_max bounds it, the least recently seen entry goes
  first (gatekeeper_observed_evicted_total), it is one per process across
  workers, keyed by source too, survives SIGHUP; switching action by reload
  applies to new connections.
- `gatekeeper observed`: YAML parsed, turned into a config, checked with -t
  and run in enforce mode (exactly the observed names pass), --listener,
  --format json, --collapse N (never a single label, never a public
  suffix, never across listeners), connect mode writes name:port (an IPv6
  literal quoted), exit 1 when the admin endpoint is unreachable or answers
  no table, the address from GATEKEEPER_ADMIN or the config; and output that
  stays safe to paste when the table it reads is hostile (a fake endpoint
  on loopback serves names, listeners and sources carrying newlines and "*").
- Quick mode --action / GATEKEEPER_ACTION; bad values are config errors.

Traffic goes only to 127.0.0.0/8 or inside the network namespace the netns
test creates. Waits are upper bounds only; nothing asserts a duration.
"""

import base64
import datetime
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import types
import urllib.error
import urllib.request

import pytest

import gkharness as h
import netns
import tlsutil as t
from dnsserver import DnsServer

try:
    import yaml
except ImportError:  # pragma: no cover - Debian's python3-yaml is usually there
    yaml = None

C1, C2, C3, C4, C5 = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
DENIED = "127.0.0.9"  # inside allow_ranges 127.0.0.0/8, taken back by deny_ranges
LOOPBACK_OK = ["127.0.0.0/8"]

API = "api.gk.test"      # the one allowed name
OTHER = "other.gk.test"  # not allowed, resolves to 127.0.0.2
MORE = "more.gk.test"    # not allowed, resolves to 127.0.0.2

ALERT_UNRECOGNIZED_NAME = bytes.fromhex("15030300020270")
ALERT_ACCESS_DENIED = bytes.fromhex("15030300020231")
ALERT_INTERNAL_ERROR = bytes.fromhex("15030300020250")
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"

# How a session that both sides ended cleanly may be said to have ended.
CLEAN_ENDS = {"closed", "client_closed", "upstream_closed"}
OBSERVED_KEYS = {"listener", "mode", "name", "port", "source", "reason", "count", "first_seen",
                 "last_seen"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


# --------------------------------------------------------------------------
# Config

def yv(v):
    """A YAML value: JSON is YAML's flow style."""
    return json.dumps(v)


def L(name, mode="tcp", listen="127.0.0.1:0", **keys):
    """One listeners[] entry; every value written as JSON flow."""
    lines = ["  - name: %s" % name, "    listen: %s" % yv(listen), "    mode: %s" % mode]
    for k, v in keys.items():
        lines.append("    %s: %s" % (k, yv(v)))
    return "\n".join(lines) + "\n"


def cfg(*listeners, dns=None, admin=None, observed_max=None, workers=None, level="info",
        refresh="1s"):
    out = ["log:\n  level: %s\n" % level]
    if workers:
        out.append("workers: %d\n" % workers)
    if admin or observed_max is not None:
        out.append("admin:\n")
        if admin:
            out.append("  listen: 127.0.0.1:%d\n" % admin)
        if observed_max is not None:
            out.append("  observed_max: %s\n" % observed_max)
    if dns is not None:
        out.append('resolver:\n  nameservers: ["%s"]\n  refresh: %s\n  min_ttl: 0s\n'
                   '  timeout: 500ms\n' % (dns.nameserver, refresh))
    out.append("defaults:\n  connect_timeout: 3s\n  idle_timeout: 60s\n  sniff_timeout: 5s\n")
    out.append("listeners:\n")
    out.extend(listeners)
    return "".join(out)


def write_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(h.as_root_ok(text))
    os.replace(tmp, path)  # a reload never reads half a file


# --------------------------------------------------------------------------
# Backends

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


class Greeter(h.HandlerServer):
    def __init__(self, host="127.0.0.1", port=0):
        super().__init__(_greeter, host=host, port=port)


class HttpBackend(h.HandlerServer):
    """A keep-alive HTTP/1.1 origin. Records {host, target} of every request;
    answers 200 "tag=T host=H target=P\\n"."""

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
            buf = buf[n:]
            self.record({"host": hdrs.get("host"), "target": parts[1] if len(parts) > 1 else None})
            out = ("tag=%s host=%s target=%s\n" % (self.tag, hdrs.get("host"), parts[1])).encode()
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


def same_port(backends, hosts, make):
    """One backend per host, all on one port (so the DNS answer alone picks
    which one a connection reaches). Returns {host: backend}."""
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
        return {k: backends(lambda s=s: s) for k, s in got.items()}
    raise RuntimeError("no port free on all of %r" % (hosts,))


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return t.make_cert(tmp_path_factory.mktemp("observe-certs"), "gk.test")


# --------------------------------------------------------------------------
# Clients

class Conn:
    """A client connection from source `src` (None: the kernel's choice).
    .mark is gatekeeper's log length before it connected, so only a later
    access line can be this connection's (client ports get reused)."""

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
        return t.read_until_close(self.sock, timeout=timeout)[0]

    def finish(self):
        """Half-close, read to EOF, close: a clean end."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            h.recv_all(self.sock, timeout=10)
        except OSError:
            pass
        self.sock.close()

    def close(self):
        self.sock.close()

    def access(self, timeout=15):
        return access(self.g, self.client, self.mark, timeout)


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
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_line(sock, rest=b"", timeout=10):
    sock.settimeout(timeout)
    buf = rest
    while b"\n" not in buf:
        b = sock.recv(4096)
        if not b:
            raise AssertionError("EOF before a line: %r" % buf)
        buf += b
    line, _, more = buf.partition(b"\n")
    return line.decode(), more


def tunnel(g, addr, target, src=None, headers=()):
    """CONNECT through gatekeeper: (Conn, status, headers, head, rest)."""
    c = Conn(g, addr, src)
    c.sock.sendall(connect_request(target, headers))
    status, hdrs, head, rest = read_head(c.sock)
    return c, status, hdrs, head, rest


def tunnel_greeting(g, addr, target, src=None, headers=()):
    """CONNECT to a greeter: (Conn, greeting). Asserts the exact 200."""
    c, status, hdrs, head, rest = tunnel(g, addr, target, src, headers)
    assert status == 200 and head == ESTABLISHED, (target, head)
    line, _ = read_line(c.sock, rest)
    return c, line


def http_get(c, host, path="/", close=True, extra=()):
    c.sock.sendall(t.http_request(host, path=path, close=close, extra=extra))
    return t.HttpReader(c.sock).response()


def http_refusal(c, raw, status, reason=None):
    """Send raw on Conn c; the answer is `status` (X-Gatekeeper-Reason
    `reason` when given) and gatekeeper closes."""
    c.send(raw)
    resp = t.HttpReader(c.sock).response()
    assert resp.status == status, resp
    if reason is not None:
        assert resp.header("x-gatekeeper-reason") == reason, resp
    c.until_close()
    return resp


def tls_open(g, addr, sni, src=None, timeout=10):
    """A real TLS client through gatekeeper to a TlsBackend: (Conn, ssl
    socket, greeting line)."""
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
    """close_notify both ways, then TCP EOF: a clean end."""
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


def hello_greeting(g, addr, sni, src=None):
    """A hand-made ClientHello through a tls listener to a Greeter: returns
    (greeting line or None when gatekeeper closed, bytes got, Conn)."""
    c = Conn(g, addr, src)
    c.send(t.raw_client_hello(sni))
    buf = b""
    try:
        c.sock.settimeout(10)
        while b"\n" not in buf:
            b = c.sock.recv(4096)
            if not b:
                break
            buf += b
    except ConnectionResetError:
        pass
    if b"\n" in buf:
        c.finish()
        return buf.split(b"\n")[0].decode(), buf, c
    rest, _ = t.read_until_close(c.sock)
    c.close()
    return None, buf + rest, c


def tls_refused(g, addr, sni, src=None):
    """A hand-made ClientHello; returns (bytes sent before the close, Conn)."""
    c = Conn(g, addr, src)
    c.send(t.raw_client_hello(sni))
    got = c.until_close()
    c.close()
    return got, c


def tcp_passes(g, addr, src, payload=b"ping"):
    """True when a tcp connection from src is relayed to the echo backend,
    False when gatekeeper closes it unanswered. Returns (bool, Conn)."""
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
        return True, c
    assert got == b"", "neither relayed nor refused: %r" % got[:200]
    return False, c


def poll(fn, timeout=15, interval=0.1):
    """fn() until it returns a true value; returns it, or the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# Admin

def admin_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def observed(port):
    status, ctype, body = admin_get(port, "/observed")
    assert status == 200, (status, body)
    assert ctype and ctype.startswith("application/json"), ctype
    data = json.loads(body)
    assert isinstance(data, list), body
    return data


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metrics(port):
    return parse_metrics(admin_get(port, "/metrics")[2])


def mval(m, name, **labels):
    return m.get((name, frozenset(labels.items())))


def closed_total(port, listener, decision, reason):
    return mval(metrics(port), "gatekeeper_connections_closed_total", listener=listener,
                decision=decision, reason=reason) or 0


def entries(_admin, **match):
    """The /observed entries whose fields equal every given one."""
    return [e for e in observed(_admin) if all(e.get(k) == v for k, v in match.items())]


def one_entry(_admin, count=None, timeout=15, **match):
    """The single /observed entry matching, polled until it exists (and has
    `count`, when given)."""
    def get():
        got = entries(_admin, **match)
        if len(got) == 1 and (count is None or got[0]["count"] == count):
            return got[0]
        return None

    e = poll(get, timeout=timeout)
    assert e, "no single /observed entry %r (count %r); table:\n%s" % (
        match, count, json.dumps(observed(_admin), indent=1))
    return e


def rfc3339(s):
    assert isinstance(s, str) and RFC3339.match(s), "not RFC 3339: %r" % (s,)
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def check_entry_shape(e):
    assert set(e) == OBSERVED_KEYS, "fields %r" % sorted(e)
    assert isinstance(e["listener"], str) and isinstance(e["mode"], str), e
    assert e["name"] is None or isinstance(e["name"], str), e
    assert isinstance(e["port"], int) and not isinstance(e["port"], bool), e
    assert isinstance(e["count"], int) and e["count"] >= 1, e
    assert isinstance(e["source"], str) and e["reason"] in ("not_allowed", "source_denied"), e
    first, last = rfc3339(e["first_seen"]), rfc3339(e["last_seen"])
    assert first <= last, e
    # a sanity bound on the clock, not a timing: the table was made today
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - last).total_seconds()) < 3600, e


def assert_would_deny(acc, reason, name=None, upstream=None):
    assert acc["decision"] == "would_deny", acc
    assert acc["reason"] == reason, acc
    assert acc.get("end") not in (None, "", "-"), "no end= on a would_deny line: %r" % acc
    if name is not None:
        assert acc["name"] == name, acc
    if upstream is not None:
        assert acc["upstream"] == upstream, acc
    else:
        assert acc["upstream"] != "-", acc


def assert_denied(acc, reason="address_denied"):
    assert acc["reason"] == reason, acc
    assert acc["decision"] == "deny", acc
    assert acc["upstream"] == "-", acc


# ==========================================================================
# Pass-through on loopback

@pytest.fixture
def rep(gk, dns, backends, cert):
    """Report-mode tls, http and connect listeners (allow: api.gk.test only,
    loopback allowed) in front of real backends on 127.0.0.2, an enforcing
    twin of each, and the admin endpoint."""
    for n in (API, OTHER, MORE, "third.gk.test", "fourth.gk.test"):
        dns.set(n, [C2])
    tlsb = backends(t.TlsBackend, cert, "be", host=C2)
    web = backends(HttpBackend, "web", host=C2)
    gre = backends(Greeter, host=C2)
    admin = h.free_port()
    g = gk(cfg(
        L("rtls", "tls", action="report", allow=[API], port=tlsb.port, allow_ranges=LOOPBACK_OK),
        L("rgre", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
        L("rhttp", "http", action="report", allow=[API], port=web.port, allow_ranges=LOOPBACK_OK),
        L("rconn", "connect", action="report", allow=["%s:%d" % (API, gre.port)],
          allow_ranges=LOOPBACK_OK),
        L("etls", "tls", action="enforce", allow=[API], port=tlsb.port, allow_ranges=LOOPBACK_OK),
        L("ehttp", "http", allow=[API], port=web.port, allow_ranges=LOOPBACK_OK),
        L("econn", "connect", allow=["%s:%d" % (API, gre.port)], allow_ranges=LOOPBACK_OK),
        dns=dns, admin=admin))
    return types.SimpleNamespace(g=g, admin=admin, tlsb=tlsb, web=web, gre=gre, dns=dns)


def test_report_tls_passes_a_name_outside_the_allowlist(rep):
    g, admin, tlsb = rep.g, rep.admin, rep.tlsb
    addr = g.addr("rtls")
    c, tls, line = tls_open(g, addr, OTHER)
    assert line == "tag=be sni=%s" % OTHER, line
    data = h.deterministic_bytes(60000, seed=3)
    tls.sendall(data)
    got = b""
    while len(got) < len(data):
        b = tls.recv(65536)
        assert b, "TLS session ended early"
        got += b
    assert h.sha256(got) == h.sha256(data)
    tls_finish(tls)
    acc = c.access()
    assert_would_deny(acc, "not_allowed", OTHER, "%s:%d" % (C2, tlsb.port))
    assert acc["end"] in CLEAN_ENDS, acc
    assert acc["listener"] == "rtls", acc

    # the enforcing twin still refuses the same name, at the same backend
    accepted = tlsb.accepted
    got, c2 = tls_refused(g, g.addr("etls"), OTHER)
    assert got == ALERT_UNRECOGNIZED_NAME, got
    assert_denied(c2.access(), "not_allowed")
    assert tlsb.accepted == accepted

    # an allowed name on the report listener is a plain allow, and not noted
    c, tls, line = tls_open(g, addr, API)
    assert line == "tag=be sni=%s" % API
    tls_finish(tls)
    acc = c.access()
    assert acc["decision"] == "allow" and acc["name"] == API, acc

    first = one_entry(admin, count=1, listener="rtls", name=OTHER)
    for _ in range(2):
        c, tls, line = tls_open(g, addr, OTHER)
        assert line == "tag=be sni=%s" % OTHER
        tls_finish(tls)
        assert_would_deny(c.access(), "not_allowed", OTHER)
    e = one_entry(admin, count=3, listener="rtls", name=OTHER)
    check_entry_shape(e)
    assert e == dict(e, listener="rtls", mode="tls", name=OTHER, port=tlsb.port, source=C1,
                     reason="not_allowed", count=3), e
    assert e["first_seen"] == first["first_seen"], (first, e)
    assert rfc3339(e["last_seen"]) >= rfc3339(first["last_seen"]), (first, e)
    table = observed(admin)
    assert not [x for x in table if x["name"] == API], table
    assert not [x for x in table if x["listener"].startswith("e")], "an enforcing listener noted: %r" % table

    m = metrics(admin)
    assert mval(m, "gatekeeper_would_deny_total", listener="rtls") == 3, m
    assert mval(m, "gatekeeper_connections_closed_total", listener="rtls", decision="would_deny",
                reason="not_allowed") == 3
    assert mval(m, "gatekeeper_connections_closed_total", listener="etls", decision="deny",
                reason="not_allowed") == 1
    assert (mval(m, "gatekeeper_would_deny_total", listener="etls") or 0) == 0
    assert mval(m, "gatekeeper_observed_entries") == len(table), m
    assert g.alive()


def test_report_http_passes_a_host_outside_the_allowlist(rep):
    g, admin, web = rep.g, rep.admin, rep.web
    c = Conn(g, g.addr("rhttp"))
    resp = http_get(c, OTHER, path="/one", close=False)
    assert resp.status == 200 and resp.body == b"tag=web host=%s target=/one\n" % OTHER.encode(), resp
    resp = http_get(c, OTHER, path="/two", close=True)
    assert resp.status == 200 and b"target=/two" in resp.body, resp
    c.until_close()
    c.close()
    acc = c.access()
    assert_would_deny(acc, "not_allowed", OTHER, "%s:%d" % (C2, web.port))
    assert [r["host"] for r in web.results] == [OTHER, OTHER]

    # the enforcing twin: 403 and nothing relayed
    c = Conn(g, g.addr("ehttp"))
    http_refusal(c, t.http_request(OTHER), 403, "not_allowed")
    c.close()
    assert_denied(c.access(), "not_allowed")
    assert len(web.results) == 2

    e = one_entry(admin, listener="rhttp", name=OTHER)
    check_entry_shape(e)
    assert (e["mode"], e["port"], e["source"], e["reason"]) == ("http", web.port, C1, "not_allowed"), e
    assert e["count"] in (1, 2), e  # one per connection, or one per request
    m = metrics(admin)
    assert mval(m, "gatekeeper_would_deny_total", listener="rhttp") in (1, 2), m
    assert mval(m, "gatekeeper_connections_closed_total", listener="rhttp", decision="would_deny",
                reason="not_allowed") == 1, m

    # spellings of one name are one entry; a client's claim about its
    # address is not its source
    n = e["count"]
    for host in ("OTHER.gk.test", "other.gk.test.", "Other.GK.Test.", "%s:%d" % (OTHER, web.port)):
        c = Conn(g, g.addr("rhttp"))
        resp = http_get(c, host, extra=["X-Forwarded-For: 10.1.2.3", "X-Real-IP: 10.1.2.3",
                                        "Forwarded: for=10.1.2.3"])
        assert resp.status == 200, (host, resp)
        c.until_close()
        c.close()
        assert_would_deny(c.access(), "not_allowed", OTHER)
    e = one_entry(admin, count=n + 4, listener="rhttp", name=OTHER)
    assert e["source"] == C1, e
    assert not [x for x in observed(admin) if x["source"] != C1 or x["name"] != OTHER], observed(admin)
    r = run_observed("127.0.0.1:%d" % admin, "--listener", "rhttp")
    assert r.returncode == 0, r.stderr
    assert cli_blocks(r.stdout)["rhttp"]["allow"] == [OTHER], r.stdout
    assert g.alive()


def test_report_connect_passes_names_ports_and_literals_outside_the_allowlist(rep):
    g, admin, gre, web = rep.g, rep.admin, rep.gre, rep.web
    addr = g.addr("rconn")
    # a name not allowed
    c, line = tunnel_greeting(g, addr, "%s:%d" % (OTHER, gre.port))
    assert line == C2
    data = h.deterministic_bytes(100000, seed=5)
    assert h.sha256(c.roundtrip(data)) == h.sha256(data)
    c.finish()
    acc = c.access()
    assert_would_deny(acc, "not_allowed", OTHER, "%s:%d" % (C2, gre.port))
    assert acc["port"] == str(gre.port) and acc["end"] in CLEAN_ENDS, acc

    # the allowed name at a port the allowlist does not list: that port
    c, status, _, head, _ = tunnel(g, addr, "%s:%d" % (API, web.port))
    assert status == 200 and head == ESTABLISHED, head
    resp = http_get(c, API, path="/port")
    assert resp.body == b"tag=web host=%s target=/port\n" % API.encode(), resp
    c.close()
    assert_would_deny(c.access(), "not_allowed", API, "%s:%d" % (C2, web.port))

    # an IP literal not listed (inside allow_ranges, so the guard lets it by)
    c, line = tunnel_greeting(g, addr, "%s:%d" % (C2, gre.port))
    assert line == C2
    c.finish()
    assert_would_deny(c.access(), "not_allowed", upstream="%s:%d" % (C2, gre.port))

    # absolute-form
    c = Conn(g, addr)
    resp = http_get(c, "%s:%d" % (MORE, web.port), path="http://%s:%d/abs" % (MORE, web.port))
    assert resp.status == 200 and b"host=%s:%d" % (MORE.encode(), web.port) in resp.body, resp
    c.until_close()
    c.close()
    assert_would_deny(c.access(), "not_allowed", MORE, "%s:%d" % (C2, web.port))

    # nothing listens there: still a would-deny, ended by connect_failed
    dead = h.free_port(C2)
    c, status, hdrs, _, _ = tunnel(g, addr, "%s:%d" % (OTHER, dead))
    assert status == 502, status
    c.until_close()
    c.close()
    acc = c.access()
    assert acc["decision"] == "would_deny" and acc["reason"] == "not_allowed", acc
    assert acc.get("end") == "connect_failed", acc

    # the enforcing twin refuses each of them
    for target in ("%s:%d" % (OTHER, gre.port), "%s:%d" % (API, web.port), "%s:%d" % (C2, gre.port)):
        c = Conn(g, g.addr("econn"))
        http_refusal(c, connect_request(target), 403, "not_allowed")
        c.close()

    for name, port in ((OTHER, gre.port), (API, web.port), (C2, gre.port), (MORE, web.port),
                       (OTHER, dead)):
        e = one_entry(admin, listener="rconn", name=name, port=port)
        check_entry_shape(e)
        assert (e["mode"], e["source"], e["reason"], e["count"]) == ("connect", C1, "not_allowed", 1), e
    assert mval(metrics(admin), "gatekeeper_would_deny_total", listener="rconn") == 5
    assert g.alive()


def test_report_tls_without_port_dials_the_listen_port(gk, dns, backends):
    dns.set(OTHER, [C2])
    for _ in range(20):
        gre = backends(Greeter, host=C2)
        if not h.port_is_listening(C1, gre.port):
            try:
                g = gk(cfg(L("np", "tls", listen="127.0.0.1:%d" % gre.port, action="report", allow=[API],
                             allow_ranges=LOOPBACK_OK), dns=dns))
                break
            except AssertionError:
                continue
    else:
        pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")
    line, _, c = hello_greeting(g, g.addr("np"), OTHER)
    assert line == C2
    assert_would_deny(c.access(), "not_allowed", OTHER, "%s:%d" % (C2, gre.port))


def test_observed_is_sorted_by_count_and_keyed_by_source(rep):
    g, admin = rep.g, rep.admin
    addr = g.addr("rgre")
    plan = [(OTHER, C1)] * 4 + [(MORE, C1)] * 1 + [("third.gk.test", C1)] * 3 + \
           [(OTHER, C3)] * 2 + [("fourth.gk.test", C1)] * 2
    for name, src in plan:
        line, _, c = hello_greeting(g, addr, name, src)
        assert line == C2, (name, line)
        assert_would_deny(c.access(), "not_allowed", name)
    want = {(OTHER, C1): 4, (MORE, C1): 1, ("third.gk.test", C1): 3, (OTHER, C3): 2,
            ("fourth.gk.test", C1): 2}

    def settled():
        got = {(e["name"], e["source"]): e["count"] for e in observed(admin) if e["listener"] == "rgre"}
        return got if got == want else None

    assert poll(settled), json.dumps(observed(admin), indent=1)
    table = observed(admin)
    counts = [e["count"] for e in table]
    assert counts == sorted(counts, reverse=True), "not sorted by count: %r" % counts
    for e in table:
        check_entry_shape(e)
    assert table[0]["name"] == OTHER and table[0]["source"] == C1, table[0]
    assert g.alive()


def test_promtool_accepts_the_metrics_with_report_counters(rep):
    g, admin = rep.g, rep.admin
    line, _, _ = hello_greeting(g, g.addr("rgre"), OTHER)
    assert line == C2
    one_entry(admin, listener="rgre", name=OTHER)
    text = admin_get(admin, "/metrics")[2]
    for fam in ("gatekeeper_would_deny_total", "gatekeeper_observed_evicted_total",
                "gatekeeper_observed_entries"):
        assert re.search(r"^# TYPE %s (counter|gauge)$" % fam, text, re.M), fam
    assert re.search(r'^gatekeeper_connections_closed_total\{[^}]*decision="would_deny"', text, re.M), text
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


# ==========================================================================
# The guard in report mode, on loopback

@pytest.fixture
def guarded(gk, dns, backends):
    """Greeters on 127.0.0.2 and 127.0.0.9 at one port P. Report listeners
    with the default guard (g*: loopback refused) and with allow_ranges
    127.0.0.0/8 + deny_ranges 127.0.0.9 (d*)."""
    b = same_port(backends, [C2, DENIED], lambda host, port: Greeter(host, port))
    port = b[C2].port
    dns.set("lo.gk.test", [C2])
    dns.set("deny.gk.test", [DENIED])
    dns.set("two.gk.test", [DENIED, C2])
    dns.set(OTHER, [C2])
    dns.set(API, [C2])
    guard = dict(allow_ranges=LOOPBACK_OK, deny_ranges=["%s/32" % DENIED])
    admin = h.free_port()
    g = gk(cfg(
        L("gtls", "tls", action="report", allow=[API], port=port),
        L("ghttp", "http", action="report", allow=[API], port=port),
        L("gconn", "connect", action="report", allow=["%s:%d" % (API, port)]),
        L("dtls", "tls", action="report", allow=[API], port=port, **guard),
        L("dhttp", "http", action="report", allow=[API], port=port, **guard),
        L("dconn", "connect", action="report", allow=["%s:%d" % (API, port)], **guard),
        dns=dns, admin=admin))
    return types.SimpleNamespace(g=g, b=b, port=port, admin=admin, dns=dns)


def _refused(g, lname, kind, data, reasons=("address_denied",), statuses=(403,)):
    """Send data to listener lname; check it was refused (TLS alert, HTTP
    status, or close) and return the access line."""
    c = Conn(g, g.addr(lname))
    c.send(data)
    if kind == "http":
        try:
            resp = t.HttpReader(c.sock).response()
        except AssertionError:
            resp = None
        assert resp is not None and resp.status in statuses, (lname, data[:80], resp)
        if resp.status == 403 and len(reasons) == 1:
            assert resp.header("x-gatekeeper-reason") == reasons[0], resp
        try:
            c.until_close()
        except OSError:
            pass
    else:
        got = c.until_close()
        if reasons == ("address_denied",):
            assert got == ALERT_ACCESS_DENIED, (lname, data[:80], got)
        else:
            assert got in (ALERT_ACCESS_DENIED, ALERT_UNRECOGNIZED_NAME, ALERT_INTERNAL_ERROR, b""), got
    c.close()
    acc = c.access()
    assert acc["upstream"] == "-", acc
    assert_nothing_dialed(acc, reasons)
    return acc


def assert_nothing_dialed(acc, reasons):
    """A refusal, or a would-deny that ended before any dial (the name did
    not resolve): never an allow, never a would-deny that reached anything."""
    assert acc["upstream"] == "-", acc
    assert acc["decision"] != "allow", acc
    if acc["decision"] == "would_deny":
        assert acc.get("end") == "no_address", acc
        assert "no_address" in reasons, acc
        return
    assert acc["reason"] in reasons, acc
    if acc["reason"] == "address_denied":
        assert acc["decision"] == "deny", acc


def test_report_mode_default_guard_still_refuses_loopback(guarded):
    g, b, p = guarded.g, guarded.b, guarded.port
    lit = [C2, "[::ffff:%s]" % C2, "[::1]", C1]
    cases = [
        ("gtls", "tls", t.raw_client_hello("lo.gk.test")),
        ("gtls", "tls", t.raw_client_hello(API)),              # allowed, yet loopback
        ("gtls", "tls", t.raw_client_hello(C2)),                # IP literal SNI
        ("ghttp", "http", t.http_request("lo.gk.test")),
        ("ghttp", "http", t.http_request(API)),
        ("ghttp", "http", t.http_request(C2)),
        ("ghttp", "http", t.http_request("%s:%d" % (C2, p))),
        ("gconn", "http", connect_request("lo.gk.test:%d" % p)),
        ("gconn", "http", connect_request("%s:%d" % (API, p))),
        ("gconn", "http", t.http_request("lo.gk.test:%d" % p, path="http://lo.gk.test:%d/" % p)),
    ] + [("gconn", "http", connect_request("%s:%d" % (a, p))) for a in lit] + [
        ("gconn", "http", t.http_request("%s:%d" % (a, p), path="http://%s:%d/x" % (a, p))) for a in lit]
    for lname, kind, data in cases:
        acc = _refused(g, lname, kind, data)
        assert "127.0.0" in acc.get("error", "") or "::1" in acc.get("error", "") \
            or "loopback" in acc.get("error", ""), acc
    # other spellings of loopback: any refusal, nothing dialed
    odd = ["localhost", "LOCALHOST", "localhost.", "2130706434", "0x7f000002", "0177.0.0.2", "127.2",
           "[::ffff:7f00:2]", "[0:0:0:0:0:0:0:1]", "[::]", "0.0.0.0", "0"]
    anyr = ("address_denied", "not_allowed", "malformed", "no_address", "no_name")
    for a in odd:
        _refused(g, "gconn", "http", connect_request("%s:%d" % (a, p)), anyr, (400, 403, 503))
        if not a.startswith("["):
            _refused(g, "gtls", "tls", t.raw_client_hello(a), anyr)
        _refused(g, "ghttp", "http", t.http_request(a), anyr, (400, 403, 503))
    assert b[C2].accepted == 0 and b[DENIED].accepted == 0, "the guard was bypassed in report mode"
    assert g.alive()


def test_report_mode_deny_ranges_still_apply(guarded):
    g, b, p = guarded.g, guarded.b, guarded.port
    # control: a name not allowed, at an address the guard allows, passes
    c, line = tunnel_greeting(g, g.addr("dconn"), "%s:%d" % (OTHER, p))
    assert line == C2
    c.finish()
    assert_would_deny(c.access(), "not_allowed", OTHER)
    for lname, kind, data in (
            ("dconn", "http", connect_request("deny.gk.test:%d" % p)),
            ("dconn", "http", connect_request("%s:%d" % (DENIED, p))),
            ("dconn", "http", connect_request("[::ffff:%s]:%d" % (DENIED, p))),
            ("dconn", "http", t.http_request("deny.gk.test:%d" % p, path="http://deny.gk.test:%d/" % p)),
            ("dconn", "http", t.http_request("%s:%d" % (DENIED, p), path="http://%s:%d/" % (DENIED, p))),
            ("dtls", "tls", t.raw_client_hello("deny.gk.test")),
            ("dtls", "tls", t.raw_client_hello(DENIED)),
            ("dhttp", "http", t.http_request("deny.gk.test")),
            ("dhttp", "http", t.http_request(DENIED))):
        acc = _refused(g, lname, kind, data)
        assert DENIED in acc.get("error", ""), acc
    for a in ("2130706441", "0x7f000009", "127.9", "[::ffff:7f00:9]"):
        _refused(g, "dconn", "http", connect_request("%s:%d" % (a, p)),
                 ("address_denied", "not_allowed", "malformed", "no_address"), (400, 403, 503))
    # a name answering a denied and an allowed address: only the allowed one
    for lname in ("dconn", "dtls"):
        for _ in range(3):
            if lname == "dconn":
                c, line = tunnel_greeting(g, g.addr(lname), "two.gk.test:%d" % p)
                c.finish()
            else:
                line, _, c = hello_greeting(g, g.addr(lname), "two.gk.test")
            assert line == C2, line
            assert_would_deny(c.access(), "not_allowed", "two.gk.test", "%s:%d" % (C2, p))
    assert b[DENIED].accepted == 0, "deny_ranges bypassed in report mode"
    assert g.alive()


def test_report_mode_rebinding_to_a_denied_address_is_refused(guarded):
    g, b, p, dns = guarded.g, guarded.b, guarded.port, guarded.dns
    dns.set("rebind.gk.test", [C2])
    addr = g.addr("dconn")
    first, line = tunnel_greeting(g, addr, "rebind.gk.test:%d" % p)
    assert line == C2
    dns.set("rebind.gk.test", [DENIED])

    def refused():
        c, status, hdrs, head, rest = tunnel(g, addr, "rebind.gk.test:%d" % p)
        if status == 200:
            line, _ = read_line(c.sock, rest)
            c.close()
            assert line == C2, "dialed %s after the rebinding" % line
            return None
        c.close()
        return status, hdrs, c

    got = poll(refused, timeout=20)
    assert got, "the new answer was never used:\n" + g.tail()
    status, hdrs, c = got
    assert status == 403 and hdrs.get("x-gatekeeper-reason") == "address_denied", (status, hdrs)
    assert_denied(c.access())
    assert first.roundtrip(b"still") == b"still"
    first.finish()
    assert b[DENIED].accepted == 0
    assert g.alive()


def test_report_http_keepalive_second_request_to_a_denied_name(gk, dns, backends):
    """A kept-alive connection passed for one host (allowed, or would-deny)
    must not carry a later request for a host whose address is denied, to
    the denied address or on the open upstream connection."""
    b = same_port(backends, [C2, DENIED], lambda host, port: HttpBackend(host, host, port))
    p = b[C2].port
    dns.set(OTHER, [C2])
    dns.set(API, [C2])
    dns.set("deny.gk.test", [DENIED])
    guard = dict(allow_ranges=LOOPBACK_OK, deny_ranges=["%s/32" % DENIED])
    g = gk(cfg(L("dhttp", "http", action="report", allow=[API], port=p, **guard),
               L("dconn", "connect", action="report", allow=["%s:%d" % (API, p)], **guard),
               dns=dns))
    for first in (OTHER, API):
        c = Conn(g, g.addr("dhttp"))
        resp = http_get(c, first, close=False)
        assert resp.status == 200 and resp.body.startswith(b"tag=127.0.0.2 host=%s" % first.encode()), resp
        c.send(t.http_request("deny.gk.test", path="/secret", close=False))
        resp = t.HttpReader(c.sock).response()
        assert resp.status in (403, 421), resp
        if resp.status == 403:
            assert resp.header("x-gatekeeper-reason") == "address_denied", resp
        c.until_close()
        c.close()
    # absolute-form on the connect listener: the same
    c = Conn(g, g.addr("dconn"))
    resp = http_get(c, "%s:%d" % (OTHER, p), path="http://%s:%d/one" % (OTHER, p), close=False)
    assert resp.status == 200, resp
    c.send(t.http_request("deny.gk.test:%d" % p, path="http://deny.gk.test:%d/secret" % p, close=False))
    resp = t.HttpReader(c.sock).response()
    assert resp.status in (403, 421), resp
    c.until_close()
    c.close()
    assert b[DENIED].results == [], "a request reached the denied address: %r" % b[DENIED].results
    assert "/secret" not in [r["target"] for r in b[C2].results] and \
        not [r for r in b[C2].results if "deny" in (r["host"] or "")], \
        "the denied host's request rode the open connection: %r" % b[C2].results
    assert g.alive()


# ==========================================================================
# Limits and parsing stay in report mode

def test_report_mode_keeps_per_source_and_listener_limits(gk, dns, backends):
    web = backends(HttpBackend, "web", host=C2)
    dns.set(OTHER, [C2])
    admin = h.free_port()
    g = gk(cfg(L("lim", "http", action="report", allow=[API], port=web.port, allow_ranges=LOOPBACK_OK,
                 max_connections_per_source=1),
               L("full", "http", action="report", allow=[API], port=web.port, allow_ranges=LOOPBACK_OK,
                 max_connections=1),
               L("climit", "connect", action="report", allow=["%s:%d" % (API, web.port)],
                 allow_ranges=LOOPBACK_OK, max_connections_per_source=1),
               dns=dns, admin=admin))
    # max_connections_per_source: one from .2 held, the second from .2 429
    held = Conn(g, g.addr("lim"), C2)
    assert http_get(held, OTHER, close=False).status == 200
    n = len(web.results)
    c = Conn(g, g.addr("lim"), C2)
    http_refusal(c, t.http_request(OTHER), 429, "source_limit")
    c.close()
    acc = c.access()
    assert acc["reason"] == "source_limit" and acc["upstream"] == "-", acc
    assert len(web.results) == n
    o = Conn(g, g.addr("lim"), C3)
    assert http_get(o, OTHER).status == 200
    o.close()
    # the held one still works
    assert http_get(held, OTHER, path="/again", close=False).status == 200

    # connect mode: 429 too
    hc, status, _, _, _ = tunnel(g, g.addr("climit"), "%s:%d" % (OTHER, web.port), C4)
    assert status == 200
    c = Conn(g, g.addr("climit"), C4)
    http_refusal(c, connect_request("%s:%d" % (OTHER, web.port)), 429, "source_limit")
    c.close()
    hc.close()

    # max_connections: the second connection is answered 503 (full)
    f = Conn(g, g.addr("full"), C5)
    assert http_get(f, OTHER, close=False).status == 200
    n = len(web.results)
    c = Conn(g, g.addr("full"), C3)
    http_refusal(c, t.http_request(OTHER), 503, "full")
    c.close()
    acc = c.access()
    assert acc["reason"] == "full" and acc["upstream"] == "-", acc
    assert len(web.results) == n
    f.close()
    held.close()
    # the limit refusals are no would-deny
    m = metrics(admin)
    assert (mval(m, "gatekeeper_connections_closed_total", listener="lim", decision="would_deny",
                 reason="source_limit") or 0) == 0
    assert g.alive()


MALFORMED_HTTP = [
    # (raw, status, reason)
    (b"HELLO THERE\r\n\r\n", 400, "malformed"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "no_name"),
    (b"POST / HTTP/1.1\r\nHost: other.gk.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400, "smuggling"),
    (b"POST / HTTP/1.1\r\nHost: other.gk.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
     400, "smuggling"),
    (b"GET / HTTP/1.1\r\nHost: other.gk.test\r\nConnection: Host\r\n\r\n", 400, "smuggling"),
    (b"CONNECT other.gk.test:443 HTTP/1.1\r\nHost: other.gk.test:443\r\n\r\n", 405, "bad_method"),
    (b"GET / HTTP/1.1\r\nHost: other.gk.test\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431, "too_large"),
]


def test_report_mode_still_refuses_malformed_and_smuggled_input(gk, dns, backends):
    web = backends(HttpBackend, "web", host=C2)
    gre = backends(Greeter, host=C2)
    dns.set(OTHER, [C2])
    g = gk(cfg(L("rhttp", "http", action="report", allow=[API], port=web.port, allow_ranges=LOOPBACK_OK),
               L("rtls", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
               L("rconn", "connect", action="report", allow=["%s:%d" % (API, web.port)],
                 allow_ranges=LOOPBACK_OK),
               L("rslow", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK,
                 sniff_timeout="300ms"),
               dns=dns))
    # a client that names nothing in time is closed, as in enforce mode
    c = Conn(g, g.addr("rslow"))
    c.send(t.raw_client_hello(OTHER)[:20])
    assert c.until_close() == b""
    c.close()
    acc = c.access()
    assert acc["reason"] == "sniff_timeout" and acc["upstream"] == "-", acc
    for raw, status, reason in MALFORMED_HTTP:
        c = Conn(g, g.addr("rhttp"))
        http_refusal(c, raw, status)
        c.close()
        acc = c.access()
        assert acc["reason"] == reason and acc["upstream"] == "-", (raw[:60], acc)
        assert acc["decision"] != "would_deny", acc
    # a smuggled request after a passed one on the same connection
    c = Conn(g, g.addr("rhttp"))
    assert http_get(c, OTHER, close=False).status == 200
    http_refusal(c, MALFORMED_HTTP[2][0], 400, "smuggling")
    c.close()
    assert [r["host"] for r in web.results] == [OTHER], web.results

    # tls: not TLS, no SNI, a broken hello
    for data, reasons in ((b"GET / HTTP/1.1\r\nHost: other.gk.test\r\n\r\n", ("malformed",)),
                          # no name: nothing to pass to (enforce mode says not_allowed too)
                          (t.raw_client_hello(None), ("no_name", "not_allowed")),
                          (t.record(22, b"\x01\x00\x00\x04\x03\x03\x00\x00"), ("malformed",)),
                          (t.raw_client_hello("bad name!.gk.test"), ("malformed", "no_name"))):
        c = Conn(g, g.addr("rtls"))
        c.send(data)
        got = c.until_close()
        c.close()
        assert got in (b"", ALERT_UNRECOGNIZED_NAME), got
        acc = c.access()
        assert acc["reason"] in reasons and acc["upstream"] == "-", acc
        assert acc["decision"] != "would_deny", acc
    assert gre.accepted == 0

    # connect: origin-form, OPTIONS *, garbage
    for raw, status in ((t.http_request(OTHER), 400), (t.http_request(OTHER, path="*", method="OPTIONS"), 405),
                        (b"\x16\x03\x01\x00\x20" + bytes(32) + b"\r\n\r\n", 400)):
        c = Conn(g, g.addr("rconn"))
        http_refusal(c, raw, status)
        c.close()
        assert c.access()["upstream"] == "-"
    assert len(web.results) == 1
    assert g.alive()


def test_report_mode_keeps_proxy_auth(gk, dns, backends):
    gre = backends(Greeter, host=C2)
    dns.set(OTHER, [C2])
    admin = h.free_port()
    g = gk(cfg(L("auth", "connect", action="report", allow=["%s:%d" % (API, gre.port)],
                 allow_ranges=LOOPBACK_OK, proxy_auth=["alice:s3cret"]),
               dns=dns, admin=admin))
    target = "%s:%d" % (OTHER, gre.port)

    def basic(cred):
        return "Proxy-Authorization: Basic " + base64.b64encode(cred).decode()

    for headers, reason in (((), "auth_required"), ((basic(b"alice:wrong"),), "auth_failed"),
                            ((basic(b"mallory:s3cret"),), "auth_failed")):
        for _ in range(3):  # an unauthenticated flood
            c = Conn(g, g.addr("auth"))
            resp = http_refusal(c, connect_request(target, headers), 407)
            assert resp.header("proxy-authenticate") == 'Basic realm="gatekeeper"', resp
            c.close()
            acc = c.access()
            assert acc["reason"] == reason and acc["upstream"] == "-", acc
    c = Conn(g, g.addr("auth"))
    http_refusal(c, t.http_request(target, path="http://%s/" % target), 407)
    c.close()
    assert gre.accepted == 0
    c, line = tunnel_greeting(g, g.addr("auth"), target, headers=[basic(b"alice:s3cret")])
    assert line == C2
    c.finish()
    assert_would_deny(c.access(), "not_allowed", OTHER)
    assert gre.accepted == 1
    # clients that never authenticated noted nothing
    e = one_entry(admin, listener="auth", name=OTHER)
    assert e["count"] == 1, "unauthenticated clients were noted: %r" % observed(admin)
    assert len(observed(admin)) == 1, observed(admin)
    assert g.alive()


# ==========================================================================
# Sources in report mode

def test_report_mode_lets_source_refusals_through(gk, dns, backends, cert):
    echo = backends(h.EchoServer)
    gre = backends(Greeter, host=C2)
    web = backends(HttpBackend, "web")
    dns.set(API, [C2])
    dns.set(OTHER, [C2])
    admin = h.free_port()
    g = gk(cfg(
        L("tsrc", upstream=echo.addr, action="report", sources=[C2]),
        L("tcsrc", upstream=echo.addr, action="report", client_sources=[C2]),
        L("tenf", upstream=echo.addr, sources=[C2]),
        L("rule", "tls", action="report", port=gre.port, allow_ranges=LOOPBACK_OK,
          allow=[{"match": API, "sources": [C2]}]),
        L("route", "http", action="report",
          routes=[{"match": "a.gk.test", "upstream": web.addr, "sources": [C2]}]),
        L("lsrc", "tls", action="report", sources=[C2],
          routes=[{"match": "a.gk.test", "upstream": "%s:%d" % (C2, gre.port)}]),
        L("csrc", "connect", action="report", sources=[C2], allow=["%s:%d" % (API, gre.port)],
          allow_ranges=LOOPBACK_OK),
        dns=dns, admin=admin))

    # listener sources and client_sources, tcp: passes, would_deny source_denied
    for lname in ("tsrc", "tcsrc"):
        ok, c = tcp_passes(g, g.addr(lname), C3)
        assert ok, "report mode refused a source:\n" + g.tail()
        assert_would_deny(c.access(), "source_denied", upstream=echo.addr)
        ok, c = tcp_passes(g, g.addr(lname), C2)
        assert ok and c.access()["decision"] != "would_deny", c.access()
    ok, c = tcp_passes(g, g.addr("tenf"), C3)
    assert not ok
    assert_denied(c.access(), "source_denied")

    # an allow entry's sources
    line, _, c = hello_greeting(g, g.addr("rule"), API, C3)
    assert line == C2
    assert_would_deny(c.access(), "source_denied", API)
    line, _, c = hello_greeting(g, g.addr("rule"), API, C2)
    assert line == C2 and c.access()["decision"] == "allow", c.access()
    line, _, c = hello_greeting(g, g.addr("rule"), OTHER, C3)
    assert line == C2
    assert_would_deny(c.access(), "not_allowed", OTHER)

    # a route's sources (inbound http); no_route is still refused
    c = Conn(g, g.addr("route"), C3)
    resp = http_get(c, "a.gk.test", path="/r")
    assert resp.status == 200 and b"host=a.gk.test target=/r" in resp.body, resp
    c.until_close()
    c.close()
    assert_would_deny(c.access(), "source_denied", "a.gk.test", web.addr)
    c = Conn(g, g.addr("route"), C3)
    http_refusal(c, t.http_request("nope.gk.test"), 421, "no_route")
    c.close()
    acc = c.access()
    assert acc["reason"] == "no_route" and acc["decision"] == "deny", acc

    # listener sources on an inbound tls listener: on to routing, which
    # still refuses a name with no route
    line, _, c = hello_greeting(g, g.addr("lsrc"), "a.gk.test", C3)
    assert line == C2
    assert_would_deny(c.access(), "source_denied", "a.gk.test")
    accepted = gre.accepted
    got, c = tls_refused(g, g.addr("lsrc"), "nope.gk.test", C3)
    assert got == ALERT_UNRECOGNIZED_NAME, got
    acc = c.access()
    assert acc["reason"] == "no_route" and acc["upstream"] == "-", acc
    assert gre.accepted == accepted

    # listener sources + a name not allowed on a connect listener: both let through
    c, line = tunnel_greeting(g, g.addr("csrc"), "%s:%d" % (OTHER, gre.port), C3)
    assert line == C2
    c.finish()
    acc = c.access()
    assert acc["decision"] == "would_deny" and acc["reason"] in ("source_denied", "not_allowed"), acc

    # the table: tcp observations carry no name; the source is the client
    e = one_entry(admin, listener="tsrc")
    check_entry_shape(e)
    assert e["name"] is None and e["mode"] == "tcp", e
    assert e["source"] == C3 and e["reason"] == "source_denied", e
    e = one_entry(admin, listener="rule", name=API)
    assert e["source"] == C3 and e["reason"] == "source_denied" and e["port"] == gre.port, e
    e = one_entry(admin, listener="route", name="a.gk.test")
    assert e["source"] == C3 and e["reason"] == "source_denied", e
    assert not [x for x in observed(admin) if x["source"] == C2 and x["listener"] in ("tsrc", "tcsrc",
                                                                                       "rule", "lsrc")]
    assert not entries(admin, name="nope.gk.test"), "a no_route refusal was noted"
    assert mval(metrics(admin), "gatekeeper_connections_closed_total", listener="tsrc",
                decision="would_deny", reason="source_denied") == 1
    assert g.alive()


def test_report_mode_keeps_proxy_protocol_rules_and_notes_the_proxied_client(gk, backends):
    echo = backends(h.EchoServer)
    admin = h.free_port()
    g = gk(cfg(L("pp", upstream=echo.addr, action="report", client_sources=["10.9.9.0/24"],
                 proxy_protocol={"accept": True, "trusted": ["127.0.0.2/32"]}), admin=admin))
    addr = g.addr("pp")

    def attempt(src, header):
        c = Conn(g, addr, src)
        c.send(header + b"payload")
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        got = c.until_close()
        c.close()
        return got, c

    got, c = attempt(C2, t.proxy_v1(("10.9.9.1", 1000), ("10.0.0.1", 80)))
    assert got == b"payload"
    got, c = attempt(C2, t.proxy_v1(("10.8.8.8", 1001), ("10.0.0.1", 80)))
    assert got == b"payload", "report mode refused a client outside client_sources"
    acc = access(g, "10.8.8.8:1001", c.mark)
    assert_would_deny(acc, "source_denied", upstream=echo.addr)
    accepted = echo.accepted
    # PROXY rules are no policy refusal: still refused
    for src, header, reason in ((C3, t.proxy_v1(("10.8.8.9", 1002), ("10.0.0.1", 80)), "proxy_untrusted"),
                                (C2, b"PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n", "proxy_malformed"),
                                (C2, b"GET / HTTP/1.0\r\n\r\n", "proxy_missing")):
        got, c = attempt(src, header)
        assert got == b"", (reason, got)
        acc = c.access()
        assert acc["reason"] == reason and acc["upstream"] == "-", acc
    assert echo.accepted == accepted
    e = one_entry(admin, listener="pp")
    assert e["source"] == "10.8.8.8" and e["reason"] == "source_denied" and e["count"] == 1, e
    assert len(observed(admin)) == 1, observed(admin)
    assert g.alive()


def test_source_denied_pass_through_is_still_guarded(gk, dns, backends):
    """A client outside `sources`, let through by report mode, asking for a
    name that resolves to loopback (refused by the default guard)."""
    gre = backends(Greeter, host=C2)
    dns.set("lo.gk.test", [C2])
    dns.set(OTHER, [C2])
    g = gk(cfg(L("s", "connect", action="report", sources=["10.9.9.9/32"],
                 allow=["lo.gk.test:%d" % gre.port]), dns=dns))
    for target in ("lo.gk.test:%d" % gre.port, "%s:%d" % (C2, gre.port), "%s:%d" % (OTHER, gre.port)):
        c = Conn(g, g.addr("s"), C3)
        http_refusal(c, connect_request(target), 403, "address_denied")
        c.close()
        assert_denied(c.access())
    assert gre.accepted == 0
    assert g.alive()


# ==========================================================================
# The table: bound, eviction, one per process

def test_observed_max_bounds_the_table_and_evicts_the_least_recently_seen(gk, dns, backends):
    gre = backends(Greeter, host=C2)
    names = ["n%d.gk.test" % i for i in range(1, 7)]
    for n in names:
        dns.set(n, [C2])
    admin = h.free_port()
    g = gk(cfg(L("r", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
               dns=dns, admin=admin, observed_max=3))

    def visit(name):
        line, _, c = hello_greeting(g, g.addr("r"), name)
        assert line == C2, (name, line)
        assert_would_deny(c.access(), "not_allowed", name)

    def table_names():
        return sorted(e["name"] for e in observed(admin))

    for n in names[:5]:
        visit(n)
    want = sorted(names[2:5])
    assert poll(lambda: table_names() == want), (table_names(), want)
    m = metrics(admin)
    assert mval(m, "gatekeeper_observed_evicted_total") == 2, m
    assert mval(m, "gatekeeper_observed_entries") == 3, m
    # n3 seen again: now n4 is the least recently seen, and goes for n6
    visit(names[2])
    visit(names[5])
    want = sorted([names[2], names[4], names[5]])
    assert poll(lambda: table_names() == want), (table_names(), want)
    assert one_entry(admin, name=names[2])["count"] == 2
    m = metrics(admin)
    assert mval(m, "gatekeeper_observed_evicted_total") == 3, m
    assert mval(m, "gatekeeper_observed_entries") == 3, m
    assert mval(m, "gatekeeper_would_deny_total", listener="r") == 7, m
    # a flood of distinct names keeps the bound
    flood = ["flood%d.gk.test" % i for i in range(12)]
    for n in flood:
        dns.set(n, [C2])
    for n in flood:
        line, _, _ = hello_greeting(g, g.addr("r"), n)
        assert line == C2
    want = sorted(flood[-3:])
    assert poll(lambda: table_names() == want), (table_names(), want)
    assert mval(metrics(admin), "gatekeeper_observed_evicted_total") == 3 + 12
    assert g.alive()


def test_a_would_deny_that_finds_no_address_is_noted_as_logged(gk, dns, backends):
    """A would-deny is noted when it is decided: a name that then does not
    resolve is logged decision=would_deny (end=no_address), and the table,
    which an operator turns into an allow list, has it too."""
    gre = backends(Greeter, host=C2)
    admin = h.free_port()
    g = gk(cfg(L("r", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
               dns=dns, admin=admin))
    got, c = tls_refused(g, g.addr("r"), "nx.gk.test")
    acc = c.access()
    assert acc["decision"] == "would_deny" and acc.get("end") == "no_address", acc
    assert acc["upstream"] == "-", acc
    assert gre.accepted == 0
    poll(lambda: entries(admin, listener="r", name="nx.gk.test"), timeout=5)
    m = metrics(admin)
    facts = {
        "closed_total{would_deny}": mval(m, "gatekeeper_connections_closed_total", listener="r",
                                        decision="would_deny", reason="not_allowed"),
        "would_deny_total": mval(m, "gatekeeper_would_deny_total", listener="r"),
        "observed": [(e["name"], e["count"], e["reason"]) for e in entries(admin, listener="r")],
    }
    assert facts == {"closed_total{would_deny}": 1, "would_deny_total": 1,
                     "observed": [("nx.gk.test", 1, "not_allowed")]}, \
        "logged as a would-deny, but counted/noted as: %r" % facts


def test_observed_max_zero_records_nothing_but_passes(gk, dns, backends):
    gre = backends(Greeter, host=C2)
    dns.set(OTHER, [C2])
    admin = h.free_port()
    g = gk(cfg(L("r", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
               dns=dns, admin=admin, observed_max=0))
    for _ in range(3):
        line, _, c = hello_greeting(g, g.addr("r"), OTHER)
        assert line == C2
        assert_would_deny(c.access(), "not_allowed", OTHER)
    assert observed(admin) == []
    m = metrics(admin)
    assert mval(m, "gatekeeper_observed_entries") == 0, m
    assert mval(m, "gatekeeper_would_deny_total", listener="r") == 3, m


def test_the_table_is_one_per_process_across_workers(gk, dns, backends):
    gre = backends(Greeter, host=C2)
    dns.set(OTHER, [C2])
    admin = h.free_port()
    g = gk(cfg(L("r", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
               dns=dns, admin=admin, workers=2))
    n = 16
    for _ in range(n):
        line, _, _ = hello_greeting(g, g.addr("r"), OTHER)
        assert line == C2
    e = one_entry(admin, count=n, listener="r", name=OTHER)
    assert e["source"] == C1
    assert len(observed(admin)) == 1, observed(admin)
    assert mval(metrics(admin), "gatekeeper_would_deny_total", listener="r") == n


def test_concurrent_would_denies_across_workers_count_exactly(gk, backends):
    """Many clients at once on two workers: one key's count is exact, and
    with a small bound every distinct key is either in the table or
    counted as evicted."""
    gre = backends(Greeter, host=C2)
    admin = h.free_port()
    g = gk(cfg(L("p", "connect", action="report", allow=["api.gk.test:443"], allow_ranges=LOOPBACK_OK),
               admin=admin, workers=2, observed_max=5))
    addr = g.addr("p")
    errors = []

    def hammer(targets):
        try:
            for target in targets:
                s = socket.create_connection(addr, timeout=10)
                try:
                    s.sendall(connect_request(target))
                    status, _, _, rest = read_head(s)
                    if status == 200:
                        line, _ = read_line(s, rest)
                        assert line == C2, line
                    else:
                        assert status == 502, status
                finally:
                    s.close()
        except Exception as e:  # reported below
            errors.append(repr(e))

    same = "%s:%d" % (C2, gre.port)
    threads = [threading.Thread(target=hammer, args=([same] * 20,)) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors[:5]
    one_entry(admin, count=160, listener="p", name=C2, port=gre.port)

    dead = h.free_port(C2)
    distinct = ["127.0.1.%d:%d" % (i, dead) for i in range(1, 41)]
    threads = [threading.Thread(target=hammer, args=(distinct[i::8],)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors[:5]

    def settled():
        m = metrics(admin)
        return (mval(m, "gatekeeper_observed_entries"), mval(m, "gatekeeper_observed_evicted_total"),
                mval(m, "gatekeeper_would_deny_total", listener="p"))

    assert poll(lambda: settled() == (5, 36, 200)), settled()
    assert len(observed(admin)) == 5
    assert g.alive()


# ==========================================================================
# Reload

def test_table_survives_sighup_and_action_switches_for_new_connections(gk, dns, backends):
    web = backends(HttpBackend, "web", host=C2)
    dns.set(OTHER, [C2])
    dns.set(MORE, [C2])
    admin = h.free_port()
    port = h.free_port()

    def text(action):
        return cfg(L("r", "http", listen="127.0.0.1:%d" % port, action=action, allow=[API],
                     port=web.port, allow_ranges=LOOPBACK_OK), dns=dns, admin=admin)

    g = gk(text("report"))
    addr = ("127.0.0.1", port)
    for _ in range(2):
        c = Conn(g, addr)
        assert http_get(c, OTHER).status == 200
        c.close()
    before = one_entry(admin, count=2, listener="r", name=OTHER)

    def reload(body, msg="reloaded"):
        n = sum(1 for d in g.parsed() if d.get("msg", "").startswith(msg))
        write_file(g.config_path, body)
        g.signal(signal.SIGHUP)
        assert poll(lambda: sum(1 for d in g.parsed() if d.get("msg", "").startswith(msg)) > n), g.tail()

    # the same file: the table stays, with its counts and first_seen
    reload(text("report"))
    assert one_entry(admin, count=2, listener="r", name=OTHER) == before
    # a bad action: the reload fails, report mode stays
    reload(text("report").replace("action: \"report\"", "action: \"reprot\""), "reload failed")
    c = Conn(g, addr)
    assert http_get(c, OTHER).status == 200
    c.close()
    assert one_entry(admin, count=3, listener="r", name=OTHER)["first_seen"] == before["first_seen"]

    # kept-alive connection from report mode, then switch to enforce
    kept = Conn(g, addr)
    assert http_get(kept, MORE, close=False).status == 200
    reload(text("enforce"))
    c = Conn(g, addr)
    http_refusal(c, t.http_request(OTHER), 403, "not_allowed")
    c.close()
    assert_denied(c.access(), "not_allowed")
    assert one_entry(admin, listener="r", name=OTHER)["count"] == 3, "enforce mode noted a refusal"
    # the connection from before keeps the settings it started with
    resp = http_get(kept, MORE, path="/kept", close=True)
    assert resp.status == 200, resp
    kept.close()
    # and back to report: new connections pass again, the same entry grows
    reload(text("report"))
    c = Conn(g, addr)
    assert http_get(c, OTHER).status == 200
    c.close()
    e = one_entry(admin, count=4, listener="r", name=OTHER)
    assert e["first_seen"] == before["first_seen"], (before, e)
    assert g.alive()


# ==========================================================================
# gatekeeper observed

LISTENER_COMMENT = re.compile(r"^# listener (\S+) \(([a-z]+)\)")


def _hand_yaml(lines):
    """The allow list of a simple `allow:` block sequence (used when PyYAML
    is not installed)."""
    out, inside = [], False
    for line in lines:
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        if re.match(r"^allow:\s*(\[\s*\])?\s*(#.*)?$", line):
            inside = True
            continue
        m = re.match(r"^\s+-\s+(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s#]+)", line)
        if inside and m:
            v = m.group(1)
            out.append(json.loads(v) if v.startswith('"') else v.strip("'"))
        else:
            inside = False
    return out


def cli_blocks(text):
    """{listener: {"mode", "lines", "allow"}} of `gatekeeper observed` YAML."""
    blocks, cur = {}, None
    for line in text.splitlines():
        m = LISTENER_COMMENT.match(line)
        if m:
            cur = m.group(1)
            blocks[cur] = {"mode": m.group(2), "lines": []}
            continue
        if cur is not None:
            blocks[cur]["lines"].append(line)
    for b in blocks.values():
        if yaml is not None:
            doc = yaml.safe_load("\n".join(b["lines"]))
            b["allow"] = (doc or {}).get("allow") or []
        else:
            b["allow"] = _hand_yaml(b["lines"])
    return blocks


def run_observed(*args, env=None):
    return h.run_gatekeeper(["observed"] + list(args), env=env)


def test_cli_yaml_round_trips_into_an_enforcing_config(gk, dns, backends, tmp_path):
    gre = backends(Greeter, host=C2)
    seen = ["a.gk.test", "b.gk.test", "c.sub.gk.test"]
    for n in seen + ["new.gk.test", API]:
        dns.set(n, [C2])
    admin = h.free_port()
    g = gk(cfg(L("tls-gw", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
               L("proxy", "connect", action="report", allow=["%s:%d" % (API, gre.port)],
                 allow_ranges=LOOPBACK_OK),
               dns=dns, admin=admin))
    visits = {"a.gk.test": 3, "b.gk.test": 1, "c.sub.gk.test": 2}
    for n, k in visits.items():
        for i in range(k):
            line, _, _ = hello_greeting(g, g.addr("tls-gw"), n, C2 if i == 0 else C1)
            assert line == C2
    c, line = tunnel_greeting(g, g.addr("proxy"), "a.gk.test:%d" % gre.port)
    c.finish()
    c, line = tunnel_greeting(g, g.addr("proxy"), "%s:%d" % (API, gre.port))
    c.finish()  # the allowed name at its allowed port: not noted
    dead = h.free_port(C2)
    c, status, _, _, _ = tunnel(g, g.addr("proxy"), "b.gk.test:%d" % dead)
    assert status == 502, status
    c.close()
    # tls-gw: a from .2 and .1, b from .2, c from .2 and .1; proxy: two
    assert poll(lambda: len(observed(admin)) == 5 + 2), json.dumps(observed(admin), indent=1)

    r = run_observed("127.0.0.1:%d" % admin)
    assert r.returncode == 0, r.stderr
    blocks = cli_blocks(r.stdout)
    assert set(blocks) == {"tls-gw", "proxy"}, r.stdout
    assert blocks["tls-gw"]["mode"] == "tls" and blocks["proxy"]["mode"] == "connect", r.stdout
    allow = blocks["tls-gw"]["allow"]
    assert allow == sorted(set(allow)), "not sorted and deduplicated: %r" % allow
    assert allow == sorted(visits), r.stdout
    # each line commented with its count and the sources seen
    sources = {"a.gk.test": {C1, C2}, "b.gk.test": {C2}, "c.sub.gk.test": {C1, C2}}
    for n, k in visits.items():
        line = [l for l in blocks["tls-gw"]["lines"]
                if re.match(r"^\s*-\s+[\"']?%s[\"']?\s" % re.escape(n), l)]
        assert len(line) == 1, (n, r.stdout)
        comment = line[0].split("#", 1)[1] if "#" in line[0] else ""
        assert re.search(r"\b%d\b" % k, comment), (n, line)
        for src in sources[n]:
            assert src in comment, (n, src, line)
        for src in {C1, C2} - sources[n]:
            assert src not in comment, (n, src, line)
    # connect mode writes name:port
    assert blocks["proxy"]["allow"] == sorted(["a.gk.test:%d" % gre.port, "b.gk.test:%d" % dead]), r.stdout

    # --listener: one block, which is itself a YAML document with allow:
    r = run_observed("127.0.0.1:%d" % admin, "--listener", "tls-gw")
    assert r.returncode == 0, r.stderr
    assert set(cli_blocks(r.stdout)) == {"tls-gw"}, r.stdout
    if yaml is not None:
        assert yaml.safe_load(r.stdout) == {"allow": sorted(visits)}, r.stdout

    # pasted into a listener as it is (comments and all), checked with -t,
    # run in enforce mode
    pasted = "".join("    %s\n" % l for l in r.stdout.splitlines() if l.strip())
    listener = L("gw", "tls", port=gre.port, allow_ranges=LOOPBACK_OK) + pasted
    text = cfg(listener, dns=dns)
    path = tmp_path / "from-observed.yaml"
    path.write_text(h.as_root_ok(text))
    chk = h.run_gatekeeper(["-t", "-c", str(path)])
    assert chk.returncode == 0, chk.stderr
    g2 = gk(text)
    for n in visits:
        line, _, c = hello_greeting(g2, g2.addr("gw"), n)
        assert line == C2, n
        assert c.access()["decision"] == "allow"
    got, c = tls_refused(g2, g2.addr("gw"), "new.gk.test")
    assert got == ALERT_UNRECOGNIZED_NAME
    assert_denied(c.access(), "not_allowed")
    got, c = tls_refused(g2, g2.addr("gw"), API)
    assert got == ALERT_UNRECOGNIZED_NAME, "a name that was allowed (never observed) passed"

    # the connect block too: exactly its name:port pairs
    plist = cli_blocks(run_observed("127.0.0.1:%d" % admin, "--listener", "proxy").stdout)["proxy"]["allow"]
    g3 = gk(cfg(L("p", "connect", allow=plist, allow_ranges=LOOPBACK_OK), dns=dns))
    c, line = tunnel_greeting(g3, g3.addr("p"), "a.gk.test:%d" % gre.port)
    assert line == C2
    c.finish()
    c = Conn(g3, g3.addr("p"))
    http_refusal(c, connect_request("c.sub.gk.test:%d" % gre.port), 403, "not_allowed")
    c.close()

    # --format json: the /observed array, filtered
    def key(e):
        return (e["listener"], e["name"] or "", e["port"], e["source"])

    r = run_observed("127.0.0.1:%d" % admin, "--format", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert sorted(got, key=key) == sorted(observed(admin), key=key)
    assert [e["count"] for e in got] == sorted((e["count"] for e in got), reverse=True), got
    r = run_observed("127.0.0.1:%d" % admin, "--format", "json", "--listener", "proxy")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout), key=key) == sorted(
        [e for e in observed(admin) if e["listener"] == "proxy"], key=key)
    assert g.alive()


class WideDns(DnsServer):
    """dnsmasq answering from its hosts file under .test, .uk and .au too
    (the names stay local: nothing is forwarded anywhere)."""

    def _argv(self):
        return super()._argv() + ["--local=/test/", "--local=/uk/", "--local=/au/"]


@pytest.fixture
def wide_dns():
    d = WideDns(ttl=1)
    yield d
    d.close()


def test_cli_yaml_quotes_an_ipv6_literal_target(gk, backends, tmp_path, ipv6_available):
    gre = backends(Greeter, host="::1")
    admin = h.free_port()
    g = gk(cfg(L("p6", "connect", listen="[::1]:0", action="report", allow=["api.gk.test:443"],
                 allow_ranges=["::1/128"]), admin=admin))
    c, line = tunnel_greeting(g, g.addr("p6"), "[::1]:%d" % gre.port, src="::1")
    assert line == "::1"
    c.finish()
    assert_would_deny(c.access(), "not_allowed", upstream="[::1]:%d" % gre.port)
    e = one_entry(admin, listener="p6", port=gre.port)
    check_entry_shape(e)
    assert e["source"] == "::1" and e["name"] == "::1", e
    r = run_observed("127.0.0.1:%d" % admin, "--listener", "p6")
    assert r.returncode == 0, r.stderr
    allow = cli_blocks(r.stdout)["p6"]["allow"]
    assert allow == ["[::1]:%d" % gre.port], r.stdout
    # pasted as it is, the list is a config gatekeeper takes
    body = "\n".join(l for l in r.stdout.splitlines() if not l.startswith("#"))
    text = ("listeners:\n  - name: p\n    listen: 127.0.0.1:0\n    mode: connect\n"
            "    allow_ranges: [\"::1/128\"]\n" + "\n".join("    " + l for l in body.splitlines()) + "\n")
    path = tmp_path / "pasted.yaml"
    path.write_text(text)
    chk = h.run_gatekeeper(["-t", "-c", str(path)])
    assert chk.returncode == 0, (text, chk.stderr)


def test_cli_collapse(gk, wide_dns, backends):
    dns = wide_dns
    gre = backends(Greeter, host=C2)
    names = ["a.x.test", "b.x.test", "a.test", "b.test", "foo.co.uk", "bar.co.uk", "foo.com.au",
             "bar.com.au", "solo.gk.test", "p.deep.y.test", "q.deep.y.test", "r.deep.y.test"]
    # siblings on two listeners are no siblings: m.z.test on one, n.z.test on the other
    for n in names + ["m.z.test", "n.z.test", "c.x.test"]:
        dns.set(n, [C2])
    admin = h.free_port()
    g = gk(cfg(L("gw", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
               L("gw2", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
               dns=dns, admin=admin))
    for lname, n in [("gw", n) for n in names + ["m.z.test"]] + [("gw2", "n.z.test"), ("gw2", "c.x.test")]:
        line, _, c = hello_greeting(g, g.addr(lname), n)
        assert line == C2, (n, c.access())
    assert poll(lambda: len(observed(admin)) == len(names) + 3), observed(admin)
    r = run_observed("127.0.0.1:%d" % admin, "--collapse", "2")
    assert r.returncode == 0, r.stderr
    b2 = cli_blocks(r.stdout)
    assert b2["gw2"]["allow"] == ["c.x.test", "n.z.test"], r.stdout
    assert "m.z.test" in b2["gw"]["allow"] and "*.z.test" not in b2["gw"]["allow"], r.stdout
    names.append("m.z.test")

    def allow(*args):
        r = run_observed("127.0.0.1:%d" % admin, "--listener", "gw", *args)
        assert r.returncode == 0, r.stderr
        return r.stdout, cli_blocks(r.stdout)["gw"]["allow"]

    out, got = allow()
    assert got == sorted(names), out
    out, got = allow("--collapse", "2")
    assert "*.x.test" in got and "a.x.test" not in got and "b.x.test" not in got, out
    assert "*.deep.y.test" in got, out
    for bad in ("*.test", "*.co.uk", "*.com.au", "*.uk", "*.au", "*"):
        assert bad not in got, "collapsed to %s: %r" % (bad, got)
    for keep in ("a.test", "b.test", "foo.co.uk", "bar.co.uk", "foo.com.au", "bar.com.au", "solo.gk.test"):
        assert keep in got, (keep, out)
    assert all(not e.startswith("*.") or e.count(".") >= 2 for e in got), got
    out, got = allow("--collapse", "3")
    assert "*.deep.y.test" in got and "*.x.test" not in got and "a.x.test" in got, out
    # the collapsed list is a valid allow list
    r = h.run_gatekeeper(["-t"], env={"GATEKEEPER_LISTEN": "127.0.0.1:0", "GATEKEEPER_MODE": "tls",
                                      "GATEKEEPER_ALLOW": ",".join(allow("--collapse", "2")[1])})
    assert r.returncode == 0, r.stderr


def test_cli_collapse_in_connect_mode_never_widens_ports(gk, dns, backends):
    """Siblings at one port collapse to "*.suffix:PORT"; siblings seen at
    different ports do not become one entry that admits a port (or every
    port) neither of them used."""
    gre = backends(Greeter, host=C2)
    dead = h.free_port(C2)
    for n in ("a.x.gk.test", "b.x.gk.test", "c.y.gk.test", "d.y.gk.test"):
        dns.set(n, [C2])
    admin = h.free_port()
    g = gk(cfg(L("p", "connect", action="report", allow=["api.gk.test:443"], allow_ranges=LOOPBACK_OK),
               dns=dns, admin=admin))
    for target in ("a.x.gk.test:%d" % gre.port, "b.x.gk.test:%d" % gre.port,
                   "c.y.gk.test:%d" % gre.port, "d.y.gk.test:%d" % dead):
        c, status, _, _, _ = tunnel(g, g.addr("p"), target)
        assert status in (200, 502), (target, status)
        c.close()
    assert poll(lambda: len(observed(admin)) == 4), observed(admin)
    r = run_observed("127.0.0.1:%d" % admin, "--collapse", "2")
    assert r.returncode == 0, r.stderr
    got = cli_blocks(r.stdout)["p"]["allow"]
    assert "*.x.gk.test:%d" % gre.port in got, r.stdout
    assert sorted(e for e in got if "y.gk.test" in e) == ["c.y.gk.test:%d" % gre.port,
                                                         "d.y.gk.test:%d" % dead], r.stdout
    for e in got:
        assert re.match(r"^.+:(%d|%d)$" % (gre.port, dead), e), "an entry without an observed port: %r" % e


def test_cli_address_from_the_environment_or_the_config_and_errors(gk, dns, backends, tmp_path):
    gre = backends(Greeter, host=C2)
    dns.set(OTHER, [C2])
    admin = h.free_port()
    text = cfg(L("gw", "tls", action="report", allow=[API], port=gre.port, allow_ranges=LOOPBACK_OK),
               dns=dns, admin=admin)
    g = gk(text)
    line, _, _ = hello_greeting(g, g.addr("gw"), OTHER)
    assert line == C2
    one_entry(admin, listener="gw", name=OTHER)
    r = run_observed(env={"GATEKEEPER_ADMIN": "127.0.0.1:%d" % admin})
    assert r.returncode == 0, r.stderr
    assert cli_blocks(r.stdout)["gw"]["allow"] == [OTHER], r.stdout
    r = run_observed("--format", "json", env={"GATEKEEPER_CONFIG": g.config_path})
    assert r.returncode == 0, r.stderr
    assert [e["name"] for e in json.loads(r.stdout)] == [OTHER]
    # unreachable: exit 1, a message, nothing on stdout
    dead = h.free_port()
    r = run_observed("127.0.0.1:%d" % dead)
    assert r.returncode == 1 and r.stderr.strip() and not r.stdout.strip(), (r.stdout, r.stderr)
    r = run_observed("--format", "json", env={"GATEKEEPER_ADMIN": "127.0.0.1:%d" % dead})
    assert r.returncode == 1 and r.stderr.strip(), r.stderr
    # bad arguments
    for args in (["127.0.0.1:%d" % admin, "--format", "xml"], ["127.0.0.1:%d" % admin, "--collapse", "x"],
                 ["127.0.0.1:%d" % admin, "--collapse", "-1"], ["not-an-address"]):
        r = run_observed(*args)
        assert r.returncode != 0 and r.stderr.strip(), (args, r.stdout, r.stderr)
    # no admin endpoint in the config, none given: exit 1 with a message
    bare = tmp_path / "no-admin.yaml"
    bare.write_text(h.as_root_ok("listeners:\n  - name: a\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:1\n"))
    r = run_observed(env={"GATEKEEPER_CONFIG": str(bare)})
    assert r.returncode == 1 and r.stderr.strip(), (r.stdout, r.stderr)
    # a listener that noted nothing: no allow entries
    r = run_observed("127.0.0.1:%d" % admin, "--listener", "nosuch", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout) == [], (r.stdout, r.stderr)
    assert g.alive()


def _fake_admin(body, status=b"200 OK", ctype=b"application/json"):
    def serve(conn, server):
        conn.settimeout(10)
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = conn.recv(4096)
            if not b:
                return
            buf += b
        server.record(buf.split(b"\r\n")[0])
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(body) + body)
        conn.shutdown(socket.SHUT_WR)
    return serve


def _entry(**kw):
    e = {"listener": "web", "mode": "tls", "name": "ok.gk.test", "port": 443, "source": "10.1.1.1",
         "reason": "not_allowed", "count": 1, "first_seen": "2026-12-02T17:40:00Z",
         "last_seen": "2026-12-02T17:41:07Z"}
    e.update(kw)
    return e


HOSTILE = [
    _entry(name='evil.gk.test\n  - "*"'),
    _entry(name="x.gk.test  # ok"),
    _entry(name="*"),
    _entry(name='a.gk.test"\n  - "*'),
    _entry(listener='web2 (tls): x\nallow:\n  - "*"\n#', name="b.gk.test"),
    _entry(source='10.1.1.2\n  - "*"', name="c.gk.test"),
    _entry(mode="connect\nallow:\n  - '*'", name="d.gk.test"),
]


def test_cli_output_stays_safe_to_paste_from_a_hostile_table(backends):
    """`gatekeeper observed` writes config an operator pastes: whatever the
    endpoint answers, what it prints never parses to an allow entry the
    table did not hold as a plain name (no "*" smuggled in by a newline in
    a name, listener, mode or source)."""
    fake = backends(h.HandlerServer, _fake_admin(json.dumps(HOSTILE).encode()))
    r = run_observed(fake.addr)
    assert fake.results and fake.results[0].startswith(b"GET /observed "), fake.results
    if r.returncode != 0:
        assert r.stderr.strip(), "refused without a message"
        return
    # every allow: block in the output, whatever its heading says
    chunks, cur = [], None
    for line in r.stdout.splitlines():
        if line.startswith("allow:"):
            cur = [line]
            chunks.append(cur)
        elif line.startswith("# listener "):
            cur = None
        elif cur is not None:
            cur.append(line)
    assert chunks, r.stdout
    allow = []
    for chunk in chunks:
        if yaml is not None:
            try:
                doc = yaml.safe_load("\n".join(chunk))
            except yaml.YAMLError as e:
                raise AssertionError("the output is not YAML (%s):\n%s" % (e, r.stdout))
            allow += (doc or {}).get("allow") or []
        else:
            allow += _hand_yaml(chunk)
    assert "*" not in allow and "'*'" not in allow, "an entry was smuggled in:\n" + r.stdout
    for a in allow:
        assert isinstance(a, str) and re.match(r"^[A-Za-z0-9.*:\[\]_-]+$", a), (a, r.stdout)
    assert set(allow) <= {"ok.gk.test", "b.gk.test", "c.gk.test", "d.gk.test"}, r.stdout
    for line in r.stdout.splitlines():
        assert line.startswith("#") or line == "" or re.match(r"^(allow:.*|\s+- .*)$", line), \
            "a line that is neither comment nor allow entry: %r\n%s" % (line, r.stdout)


@pytest.mark.parametrize("body,status", [
    (b"tag=web host=x\n", b"200 OK"),
    (b"[{\"listener\": 5, \"name\": [\"*\"], \"port\": \"x\"}]", b"200 OK"),
    (b"{\"not\": \"a list\"}", b"200 OK"),
    (b"[" * 100000, b"200 OK"),
    (b"not found", b"404 Not Found"),
])
def test_cli_refuses_an_answer_that_is_no_table(backends, body, status):
    fake = backends(h.HandlerServer, _fake_admin(body, status))
    r = run_observed(fake.addr)
    assert r.returncode == 1 and r.stderr.strip(), (r.returncode, r.stdout[:300], r.stderr[:300])
    assert "allow:" not in r.stdout, r.stdout[:300]


def test_cli_puts_nameless_observations_in_comments(gk, backends):
    echo = backends(h.EchoServer)
    admin = h.free_port()
    g = gk(cfg(L("t", upstream=echo.addr, action="report", sources=[C2]), admin=admin))
    ok, _ = tcp_passes(g, g.addr("t"), C3)
    assert ok
    one_entry(admin, listener="t")
    r = run_observed("127.0.0.1:%d" % admin)
    assert r.returncode == 0, r.stderr
    b = cli_blocks(r.stdout)["t"]
    assert b["allow"] == [], r.stdout
    assert any(C3 in l for l in r.stdout.splitlines() if l.lstrip().startswith("#")), r.stdout
    assert not any(C3 in l for l in r.stdout.splitlines() if not l.lstrip().startswith("#")), r.stdout
    if yaml is not None:
        yaml.safe_load(r.stdout)  # still valid YAML


# ==========================================================================
# Quick mode and config errors

def test_quick_mode_action_flag_and_variable(quick, dns, backends):
    gre = backends(Greeter, host=C2)
    dns.set(OTHER, [C2])
    base = ["--listen", "127.0.0.1:0", "--name", "q", "--mode", "tls", "--allow", API,
            "--port", str(gre.port), "--allow-ranges", "127.0.0.0/8", "--nameservers", dns.nameserver]
    for args, env in ((["--action", "report"], None), ([], {"GATEKEEPER_ACTION": "report"})):
        admin = h.free_port()
        g = quick(base + args + ["--admin", "127.0.0.1:%d" % admin], env=env)
        line, _, c = hello_greeting(g, g.addr("q"), OTHER)
        assert line == C2, g.tail()
        assert_would_deny(c.access(), "not_allowed", OTHER)
        one_entry(admin, listener="q", name=OTHER)
        g.stop()
    r = h.run_gatekeeper(["-T"] + base + ["--action", "report", "--observed-max", "7"])
    assert r.returncode == 0, r.stderr
    assert re.search(r"^    action: \"?report\"?$", r.stdout, re.M), r.stdout
    assert re.search(r"^  observed_max: 7$", r.stdout, re.M), r.stdout
    # enforce (the default) refuses
    g = quick(base)
    got, c = tls_refused(g, g.addr("q"), OTHER)
    assert got == ALERT_UNRECOGNIZED_NAME
    assert_denied(c.access(), "not_allowed")


def test_bad_action_and_observed_max_values_are_config_errors(tmp_path):
    r = h.run_gatekeeper(["-t", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--action", "observe"])
    assert r.returncode == 1 and "configuration ok" not in r.stderr
    assert any(l.startswith("--action: ") and "observe" in l for l in r.stderr.splitlines()), r.stderr
    r = h.run_gatekeeper(["-t", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1"],
                         env={"GATEKEEPER_ACTION": "Reporting"})
    assert r.returncode == 1
    assert any(l.startswith("GATEKEEPER_ACTION: ") for l in r.stderr.splitlines()), r.stderr
    r = h.run_gatekeeper(["-t", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1",
                          "--observed-max", "-5"])
    assert r.returncode == 1 and "--observed-max" in r.stderr, r.stderr
    for snippet, line in (("    action: reprot\n", 6), ("    action: [report]\n", 6), ("    action: \"\"\n", 6),
                          ("    action: true\n", 6)):
        text = ("listeners:\n  - name: a\n    listen: 127.0.0.1:0\n    mode: tls\n    allow: [a.example.com]\n"
                + snippet)
        p = tmp_path / "bad.yaml"
        p.write_text(text)
        r = h.run_gatekeeper(["-t", "-c", str(p)])
        assert r.returncode == 1, (snippet, r.stderr)
        assert re.search(r"bad\.yaml:%d:\d+: " % line, r.stderr), (snippet, r.stderr)
    for value in ("-1", "lots", "1.5", "[3]"):
        p = tmp_path / "om.yaml"
        p.write_text("admin:\n  observed_max: %s\nlisteners:\n  - name: a\n    listen: 127.0.0.1:0\n"
                     "    upstream: 127.0.0.1:1\n" % value)
        r = h.run_gatekeeper(["-t", "-c", str(p)])
        assert r.returncode == 1, (value, r.stderr)
        assert re.search(r"om\.yaml:2:\d+: ", r.stderr), (value, r.stderr)
    # the good forms
    p = tmp_path / "good.yaml"
    p.write_text("admin:\n  observed_max: 0\nlisteners:\n  - name: a\n    listen: 127.0.0.1:0\n"
                 "    mode: tls\n    action: report\n    allow: [a.example.com]\n"
                 "  - name: b\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:1\n    action: enforce\n")
    r = h.run_gatekeeper(["-t", "-c", str(p)])
    assert r.returncode == 0, r.stderr
    # the dump round-trips
    d = h.run_gatekeeper(["-T", "-c", str(p)])
    assert d.returncode == 0 and "action: report" in d.stdout.replace('"', ""), d.stdout
    (tmp_path / "dumped.yaml").write_text(d.stdout)
    r = h.run_gatekeeper(["-t", "-c", str(tmp_path / "dumped.yaml")])
    assert r.returncode == 0, r.stderr


# ==========================================================================
# Attacks in a private network namespace (canaries on the internal addresses)

ns_ok, ns_why = netns.available()

CANARY_ADDRS = ["127.0.0.1", "::1", "10.0.0.5", "169.254.169.254", "192.168.1.1", "100.64.0.1",
                "172.16.0.1", "fd00::5", "64:ff9b::a00:5", "2002:a00:5::1", "::a00:5",
                "1.2.3.4", "1.2.3.5", "64:ff9b::102:304"]
PUBLIC = "1.2.3.5"        # unclassified: the one address report mode may reach
NS_ADMIN = 9901            # the admin endpoint inside the namespace

INTERNAL_NAMES = {
    "lo.gk.test": ["127.0.0.1"],
    "ten.gk.test": ["10.0.0.5"],
    "meta.gk.test": ["169.254.169.254"],
    "home.gk.test": ["192.168.1.1"],
    "cgnat.gk.test": ["100.64.0.1"],
    "rfc172.gk.test": ["172.16.0.1"],
    "zero.gk.test": ["0.0.0.0"],
    "v6lo.gk.test": ["::1"],
    "v6zero.gk.test": ["::"],
    "ula.gk.test": ["fd00::5"],
    "mapped.gk.test": ["::ffff:10.0.0.5"],
    "mappedmeta.gk.test": ["::ffff:169.254.169.254"],
    "nat64.gk.test": ["64:ff9b::a00:5"],
    "sixtofour.gk.test": ["2002:a00:5::1"],
    "compat.gk.test": ["::a00:5"],
    "mixed.gk.test": ["10.0.0.5", "169.254.169.254", "::ffff:10.0.0.5", "64:ff9b::a00:5"],
}
NS_DNS = dict(INTERNAL_NAMES)
NS_DNS.update({
    "allowed.gk.test": [PUBLIC],
    "pubok.gk.test": [PUBLIC],
    "mixpub.gk.test": ["10.0.0.5", "169.254.169.254", PUBLIC],
    "pub.gk.test": ["1.2.3.4"],
    "pubmapped.gk.test": ["::ffff:1.2.3.4"],
    "pubnat64.gk.test": ["64:ff9b::102:304"],
})

NS_CONFIG = "".join([
    "log:\n  level: info\n",
    "admin:\n  listen: 127.0.0.1:%d\n" % NS_ADMIN,
    "resolver:\n  nameservers: [\"@NAMESERVER@\"]\n  refresh: 30s\n  min_ttl: 1s\n  timeout: 1s\n",
    "defaults:\n  connect_timeout: 3s\n  sniff_timeout: 3s\n  idle_timeout: 30s\n",
    "listeners:\n",
    netns.listener("r-connect", "connect", action="report", allow=["allowed.gk.test:443"]),
    netns.listener("r-tls", "tls", action="report", allow=["allowed.gk.test"], port=443),
    netns.listener("r-http", "http", action="report", allow=["allowed.gk.test"], port=80),
    netns.listener("r-src", "connect", action="report", allow=["allowed.gk.test:443"],
                   sources=["10.9.9.9/32"]),
    netns.listener("r-deny-connect", "connect", action="report", allow=["allowed.gk.test:443"],
                   deny_ranges=["1.2.3.4/32"]),
    netns.listener("r-deny-tls", "tls", action="report", allow=["allowed.gk.test"], port=443,
                   deny_ranges=["1.2.3.4/32"]),
    # pinned tunnels: report mode has nothing to relax there, the guard holds
    netns.listener("r-tunnel", "tcp", action="report", upstream="ten.gk.test:443", egress=True),
    netns.listener("r-tunnel-src", "tcp", action="report", upstream="meta.gk.test:443", egress=True,
                   sources=["10.9.9.9/32"]),
    netns.listener("r-tunnel-pub", "tcp", action="report", upstream="pubok.gk.test:443", egress=True,
                   sources=["10.9.9.9/32"]),
    # the admin endpoint, reached from a probe through an inbound tunnel
    netns.listener("admin-fwd", "tcp", upstream="127.0.0.1:%d" % NS_ADMIN),
])

NS_PROBES = []
NS_EXPECT = {}


def ns_probe(pid, listener, data=None, steps=None, retry_on=(), **expect):
    assert pid not in NS_EXPECT, pid
    p = {"id": pid, "listener": listener, "retry_on": list(retry_on)}
    if steps is not None:
        p["steps"] = [{"send": netns.b64(s[0]), "responses": s[1]} for s in steps]
    else:
        p["send"] = netns.b64(data)
    NS_PROBES.append(p)
    NS_EXPECT[pid] = expect


def creq(target):
    return connect_request(target)


def get_abs(url, host, close=True):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
            % (url, host, "Connection: close\r\n" if close else "")).encode()


def host_req(host, close=True, path="/latest/meta-data/"):
    return t.http_request(host, path=path, close=close)


def br(a):
    return "[%s]" % a if ":" in a else a


FOLLOW_80 = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

# Pass-throughs to the public canary: report mode works at all.
ns_probe("pass-tls", "r-tls", t.raw_client_hello("pubok.gk.test"), kind="pass",
         prefix=b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1}, decision="would_deny")
ns_probe("pass-tls-allowed", "r-tls", t.raw_client_hello("allowed.gk.test"), kind="pass",
         prefix=b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1}, decision="allow")
ns_probe("pass-http", "r-http", host_req("pubok.gk.test"), kind="pass",
         prefix=b"HTTP/1.1 200 OK", hits={"1.2.3.5:80": 1}, decision="would_deny")
ns_probe("pass-connect", "r-connect", creq("pubok.gk.test:443"), kind="pass",
         prefix=ESTABLISHED + b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1}, decision="would_deny")
ns_probe("pass-connect-port", "r-connect", creq("allowed.gk.test:80") + FOLLOW_80, kind="pass",
         prefix=ESTABLISHED + b"HTTP/1.1 200 OK", hits={"1.2.3.5:80": 1}, decision="would_deny")
ns_probe("pass-connect-literal", "r-connect", creq("1.2.3.5:443"), kind="pass",
         prefix=ESTABLISHED + b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1}, decision="would_deny")
ns_probe("pass-absolute", "r-connect", get_abs("http://pubok.gk.test/", "pubok.gk.test"), kind="pass",
         prefix=b"HTTP/1.1 200 OK", hits={"1.2.3.5:80": 1}, decision="would_deny")
ns_probe("pass-src", "r-src", creq("pubok.gk.test:443"), kind="pass",
         prefix=ESTABLISHED + b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1}, decision="would_deny")
ns_probe("pass-deny-listener", "r-deny-connect", creq("pubok.gk.test:443"), kind="pass",
         prefix=ESTABLISHED + b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1}, decision="would_deny")
# a name answering internal addresses and a public one: only the public one
for i in range(3):
    ns_probe("mixpub-connect-%d" % i, "r-connect", creq("mixpub.gk.test:443"), kind="pass",
             prefix=ESTABLISHED + b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1}, decision="would_deny")
    ns_probe("mixpub-tls-%d" % i, "r-tls", t.raw_client_hello("mixpub.gk.test"), kind="pass",
             prefix=b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1}, decision="would_deny")

# Kept-alive connections: a later request for an internal name rides
# nothing and reaches nothing.
for first, lst, mk in (("pubok.gk.test", "r-http", lambda n, c: host_req(n, close=c, path="/")),
                       ("allowed.gk.test", "r-http", lambda n, c: host_req(n, close=c, path="/")),
                       ("pubok.gk.test", "r-connect",
                        lambda n, c: get_abs("http://%s/" % n, n, close=c))):
    for second in ("meta.gk.test", "ten.gk.test", "169.254.169.254"):
        ns_probe("keepalive-%s-%s-%s" % (lst, first.split(".")[0], second.split(".")[0]), lst,
                 steps=[(mk(first, False), 1), (mk(second, True), 2)], kind="keepalive",
                 hits={"1.2.3.5:80": 1}, first=first, second=second)

# Names resolving into refused classes, every way in.
DENIED_HTTP = dict(kind="http", statuses={403}, reasons={"address_denied"})
DENIED_TLS = dict(kind="tls", replies={ALERT_ACCESS_DENIED}, reasons={"address_denied"})
ANY_REASONS = {"address_denied", "not_allowed", "malformed", "no_address", "no_name"}
ANY_HTTP = dict(kind="http", statuses={400, 403, 503}, reasons=ANY_REASONS)
ANY_TLS = dict(kind="tls", replies={ALERT_ACCESS_DENIED, ALERT_UNRECOGNIZED_NAME, ALERT_INTERNAL_ERROR, b""},
               reasons=ANY_REASONS)

for n in sorted(INTERNAL_NAMES):
    s = n.split(".")[0]
    ns_probe("name-connect-" + s, "r-connect", creq(n + ":443"), **DENIED_HTTP)
    ns_probe("name-connect80-" + s, "r-connect", creq(n + ":80"), **DENIED_HTTP)
    ns_probe("name-absolute-" + s, "r-connect", get_abs("http://%s/latest/meta-data/" % n, n), **DENIED_HTTP)
    ns_probe("name-sni-" + s, "r-tls", t.raw_client_hello(n), **DENIED_TLS)
    ns_probe("name-host-" + s, "r-http", host_req(n), **DENIED_HTTP)
    ns_probe("name-src-" + s, "r-src", creq(n + ":443"), **DENIED_HTTP)

# deny_ranges on a public address, and the forms that reach it
for n in ("pub.gk.test", "pubmapped.gk.test", "pubnat64.gk.test"):
    s = n.split(".")[0]
    ns_probe("deny-connect-" + s, "r-deny-connect", creq(n + ":443"), **DENIED_HTTP)
    ns_probe("deny-tls-" + s, "r-deny-tls", t.raw_client_hello(n), **DENIED_TLS)
for a in ("1.2.3.4", "::ffff:1.2.3.4", "64:ff9b::102:304"):
    ns_probe("deny-literal-" + a, "r-deny-connect", creq(br(a) + ":443"), **DENIED_HTTP)

# IP literals: not allowed (let through by report mode), then refused by the guard
LITERALS = ["169.254.169.254", "10.0.0.5", "127.0.0.1", "192.168.1.1", "100.64.0.1", "172.16.0.1",
            "0.0.0.0", "::1", "::ffff:10.0.0.5", "::ffff:169.254.169.254", "64:ff9b::a00:5",
            "2002:a00:5::1", "::a00:5", "fd00::5"]
for a in LITERALS:
    for port in (80, 443):
        ns_probe("lit-connect-%s-%d" % (a, port), "r-connect", creq("%s:%d" % (br(a), port)), **DENIED_HTTP)
        ns_probe("lit-src-%s-%d" % (a, port), "r-src", creq("%s:%d" % (br(a), port)), **DENIED_HTTP)
    ns_probe("lit-absolute-" + a, "r-connect", get_abs("http://%s/latest/meta-data/" % br(a), br(a)),
             **DENIED_HTTP)
    ns_probe("lit-host-" + a, "r-http", host_req(br(a)), **DENIED_HTTP)
    ns_probe("lit-hostport-" + a, "r-http", host_req(br(a) + ":80"), **DENIED_HTTP)
    if ":" not in a:
        ns_probe("lit-sni-" + a, "r-tls", t.raw_client_hello(a), **DENIED_TLS)

# Other spellings of 169.254.169.254, 10.0.0.5 and 127.0.0.1
ODD = ["2852039166", "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376", "169.254.43518", "0xa9fea9fe",
       "169.254.169.254.", "167772165", "10.5", "012.0.0.05", "127.1", "0x7f.1", "017700000001",
       "0x7f000001", "localhost", "localhost.", "LOCALHOST", "ip6-localhost", "[0:0:0:0:0:ffff:a9fe:a9fe]",
       "[::ffff:0a00:0005]", "[0::1]", "[::]", "[::ffff:a9fe:a9fe%25lo]", "169.254.169.254%00.gk.test"]
for i, a in enumerate(ODD):
    ns_probe("odd-connect-%d" % i, "r-connect", creq(a + ":443"), **ANY_HTTP)
    ns_probe("odd-absolute-%d" % i, "r-connect", get_abs("http://%s/" % a, a), **ANY_HTTP)
    ns_probe("odd-host-%d" % i, "r-http", host_req(a), **ANY_HTTP)
    if not a.startswith("["):
        ns_probe("odd-sni-%d" % i, "r-tls", t.raw_client_hello(a), **ANY_TLS)

# Requests that name one host in one place and another elsewhere: whatever
# gatekeeper makes of them, nothing but the public address may be reached
# (and in http mode only at the listener's port, not a port the Host names).
CONFUSION = [
    ("r-connect", get_abs("http://pubok.gk.test@10.0.0.5/", "pubok.gk.test")),
    ("r-connect", get_abs("http://10.0.0.5#@pubok.gk.test/", "pubok.gk.test")),
    ("r-connect", get_abs("http://pubok.gk.test/", "ten.gk.test")),
    ("r-connect", get_abs("http://ten.gk.test/", "pubok.gk.test")),
    ("r-connect", get_abs("http://pubok.gk.test:80@169.254.169.254/", "pubok.gk.test")),
    ("r-connect", get_abs("http://[::ffff:169.254.169.254]/", "pubok.gk.test")),
    ("r-connect", creq("pubok.gk.test:443@10.0.0.5")),
    ("r-connect", creq("10.0.0.5:443#pubok.gk.test")),
    ("r-connect", b"CONNECT pubok.gk.test:443 HTTP/1.1\r\nHost: 169.254.169.254:443\r\n\r\n"),
    ("r-connect", b"CONNECT pubok.gk.test HTTP/1.1\r\nHost: pubok.gk.test\r\n\r\n"),
    ("r-connect", b"CONNECT pubok.gk.test:0 HTTP/1.1\r\nHost: pubok.gk.test:0\r\n\r\n"),
    ("r-connect", b"CONNECT pubok.gk.test:65616 HTTP/1.1\r\nHost: pubok.gk.test\r\n\r\n"),
    ("r-http", host_req("pubok.gk.test@10.0.0.5")),
    ("r-http", host_req("pubok.gk.test:443")),
    ("r-http", host_req("pubok.gk.test:80@ten.gk.test")),
    ("r-http", b"GET / HTTP/1.1\r\nHost: pubok.gk.test\r\nHost: ten.gk.test\r\nConnection: close\r\n\r\n"),
    ("r-http", b"GET http://ten.gk.test/ HTTP/1.1\r\nHost: pubok.gk.test\r\nConnection: close\r\n\r\n"),
    ("r-http", b"GET http://pubok.gk.test/ HTTP/1.1\r\nHost: meta.gk.test\r\nConnection: close\r\n\r\n"),
    ("r-http", b"GET / HTTP/1.1\r\nHost: pubok.gk.test\r\nX-Forwarded-Host: 169.254.169.254\r\n"
               b"Connection: close\r\n\r\n"),
    ("r-tls", t.raw_client_hello("pubok.gk.test\x0010.0.0.5")),
    ("r-tls", t.raw_client_hello("10.0.0.5\x00.pubok.gk.test")),
    ("r-tls", t.raw_client_hello("pubok.gk.test:80")),
]
for i, (lst, data) in enumerate(CONFUSION):
    ns_probe("confusion-%d" % i, lst, data, kind="confusion")

for lst in ("r-tunnel", "r-tunnel-src"):
    ns_probe(lst, lst, b"", retry_on=("no_address",), kind="close", reasons={"address_denied"})
ns_probe("r-tunnel-pub", "r-tunnel-pub", b"", retry_on=("no_address",), kind="pass",
         prefix=b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1}, decision="would_deny")

# last: the table and the counters, read through the inbound tunnel
ns_probe("admin-observed", "admin-fwd", b"GET /observed HTTP/1.0\r\n\r\n", kind="admin")
ns_probe("admin-metrics", "admin-fwd", b"GET /metrics HTTP/1.0\r\n\r\n", kind="admin")

NS_ATTACKS = [p["id"] for p in NS_PROBES if NS_EXPECT[p["id"]]["kind"] in ("http", "tls", "close")]
NS_CONFUSION = [p["id"] for p in NS_PROBES if NS_EXPECT[p["id"]]["kind"] == "confusion"]
NS_PASSES = [p["id"] for p in NS_PROBES if NS_EXPECT[p["id"]]["kind"] == "pass"]
NS_KEEPALIVE = [p["id"] for p in NS_PROBES if NS_EXPECT[p["id"]]["kind"] == "keepalive"]


@pytest.fixture(scope="module")
def ns_result():
    if not ns_ok:
        pytest.skip("no private network namespace: %s" % ns_why)
    scenario = {"addrs": CANARY_ADDRS, "ports": [80, 443], "http_ports": [80], "dns": NS_DNS,
                "config": NS_CONFIG, "probes": NS_PROBES, "ttl": 60, "seen": True}
    res = netns.run(scenario, timeout=170)
    res["by_id"] = {p["id"]: p for p in res["probes"]}
    return res


def _ctx(res, p):
    return "probe %s: reply=%r access=%r hits=%r\nlog tail:\n%s" % (
        p["id"], base64.b64decode(p["reply"])[:300], p["access"], p["hits"], "\n".join(res["log"][-15:]))


def _status(reply):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return int(m.group(1)) if m else None


def _http_body(reply):
    return reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b""


@pytest.mark.parametrize("pid", NS_PASSES)
def test_ns_report_mode_reaches_the_public_canary(ns_result, pid):
    p = ns_result["by_id"][pid]
    exp = NS_EXPECT[pid]
    reply = base64.b64decode(p["reply"])
    assert p["hits"] == exp["hits"], _ctx(ns_result, p)
    assert reply.startswith(exp["prefix"]), _ctx(ns_result, p)
    acc = p["access"]
    assert acc and acc["decision"] == exp["decision"], _ctx(ns_result, p)
    assert acc["upstream"].startswith(PUBLIC + ":") or acc["upstream"].startswith("[%s]:" % PUBLIC), \
        _ctx(ns_result, p)
    if exp["decision"] == "would_deny":
        assert acc["reason"] in ("not_allowed", "source_denied") and acc.get("end") not in (None, "-"), \
            _ctx(ns_result, p)


@pytest.mark.parametrize("pid", NS_ATTACKS)
def test_ns_report_mode_attack_is_refused_and_hits_no_canary(ns_result, pid):
    p = ns_result["by_id"][pid]
    exp = NS_EXPECT[pid]
    reply = base64.b64decode(p["reply"])
    assert p["hits"] == {}, "CANARY HIT (report mode became an open proxy): " + _ctx(ns_result, p)
    assert b"CANARY" not in reply, _ctx(ns_result, p)
    acc = p["access"]
    assert acc is not None, "no access line: " + _ctx(ns_result, p)
    assert acc["upstream"] == "-", _ctx(ns_result, p)
    try:
        assert_nothing_dialed(acc, exp["reasons"])
    except AssertionError:
        raise AssertionError(_ctx(ns_result, p))
    if acc["reason"] in ("address_denied", "not_allowed") and acc["decision"] != "would_deny":
        assert acc["decision"] == "deny", _ctx(ns_result, p)
    assert p["how"] in ("eof", "reset"), _ctx(ns_result, p)
    if exp["kind"] == "http":
        assert _status(reply) in exp["statuses"], _ctx(ns_result, p)
    elif exp["kind"] == "tls":
        assert reply in exp["replies"], _ctx(ns_result, p)
    else:
        assert reply == b"", _ctx(ns_result, p)


@pytest.mark.parametrize("pid", NS_CONFUSION)
def test_ns_confused_requests_reach_only_the_public_address(ns_result, pid):
    p = ns_result["by_id"][pid]
    reply = base64.b64decode(p["reply"])
    acc = p["access"]
    assert acc is not None, _ctx(ns_result, p)
    # an http listener dials its own port, whatever port the Host names
    public = {"1.2.3.5:80"} if acc.get("listener") == "r-http" else {"1.2.3.5:80", "1.2.3.5:443"}
    assert set(p["hits"]) <= public, "CANARY HIT: " + _ctx(ns_result, p)
    assert acc["upstream"] == "-" or acc["upstream"] in public, _ctx(ns_result, p)
    if acc.get("listener") == "r-http":
        assert b"CANARY 1.2.3.5 443" not in reply, _ctx(ns_result, p)


@pytest.mark.parametrize("pid", NS_KEEPALIVE)
def test_ns_keepalive_second_request_reaches_nothing(ns_result, pid):
    p = ns_result["by_id"][pid]
    exp = NS_EXPECT[pid]
    reply = base64.b64decode(p["reply"])
    assert p["hits"] == exp["hits"], "CANARY HIT: " + _ctx(ns_result, p)
    assert reply.count(b"CANARY 1.2.3.5 80 #") == 1, _ctx(ns_result, p)
    second = reply.split(b"CANARY 1.2.3.5 80 #1\n", 1)[1]
    assert _status(second) in (403, 421), _ctx(ns_result, p)
    seen = p.get("seen", {}).get("1.2.3.5:80", [])
    assert len(seen) == 1 and seen[0]["requests"] == 1, (seen, _ctx(ns_result, p))
    got = base64.b64decode(seen[0]["first"])
    assert exp["second"].encode() not in got, "the second request rode the open connection: %r" % got
    assert p["access"] is not None, _ctx(ns_result, p)


def test_ns_only_the_public_address_was_ever_dialed(ns_result):
    expected = {}
    for pid in NS_PASSES + NS_KEEPALIVE:
        for k, v in NS_EXPECT[pid]["hits"].items():
            expected[k] = expected.get(k, 0) + v
    for pid in NS_CONFUSION:
        for k, v in ns_result["by_id"][pid]["hits"].items():
            expected[k] = expected.get(k, 0) + v
    got = {k: c["accepted"] for k, c in ns_result["canaries"].items() if c["accepted"]}
    assert got == expected, "canary hits %r, expected only %r" % (got, expected)
    # every would_deny line names the public address as its upstream
    for line in ns_result["log"]:
        d = h.parse_line(line)
        if d.get("msg") == "access" and d.get("decision") == "would_deny":
            assert d["upstream"].split(":")[0] in (PUBLIC, "-"), d
    assert ns_result["alive"], "\n".join(ns_result["log"][-40:])
    assert ns_result["sanitizer"] is None, ns_result["sanitizer"]


def test_ns_observed_table_holds_what_passed(ns_result):
    obs = base64.b64decode(ns_result["by_id"]["admin-observed"]["reply"])
    assert _status(obs) == 200, obs[:300]
    table = json.loads(_http_body(obs))
    for e in table:
        check_entry_shape(e)
        assert e["source"] == "127.0.0.1", e
    counts = [e["count"] for e in table]
    assert counts == sorted(counts, reverse=True), counts

    def find(**kw):
        return [e for e in table if all(e.get(k) == v for k, v in kw.items())]

    assert find(listener="r-tls", name="pubok.gk.test", port=443, mode="tls", reason="not_allowed")
    assert find(listener="r-tls", name="mixpub.gk.test", count=3)
    assert find(listener="r-connect", name="allowed.gk.test", port=80, reason="not_allowed")
    assert find(listener="r-connect", name="pubok.gk.test", port=443)
    assert find(listener="r-connect", name="1.2.3.5", port=443)
    assert find(listener="r-http", name="pubok.gk.test", mode="http")
    assert [e for e in find(listener="r-src", name="pubok.gk.test")
            if e["reason"] in ("source_denied", "not_allowed")], table
    assert not find(name="allowed.gk.test", listener="r-tls"), "an allowed name was noted"



def test_ns_metrics_agree_with_the_log(ns_result):
    met = base64.b64decode(ns_result["by_id"]["admin-metrics"]["reply"])
    assert _status(met) == 200
    m = parse_metrics(_http_body(met).decode())
    lines = [h.parse_line(l) for l in ns_result["log"]]
    for lname in ("r-tls", "r-connect", "r-src", "r-deny-connect"):
        n = sum(1 for d in lines if d.get("msg") == "access" and d.get("listener") == lname
                and d.get("decision") == "would_deny")
        got = sum(v for (name, labels), v in m.items()
                  if name == "gatekeeper_connections_closed_total" and ("listener", lname) in labels
                  and ("decision", "would_deny") in labels)
        assert got == n, (lname, got, n)
        wd = mval(m, "gatekeeper_would_deny_total", listener=lname) or 0
        assert wd >= n, "%s: %d access lines say would_deny, gatekeeper_would_deny_total is %d" % (lname, n, wd)
