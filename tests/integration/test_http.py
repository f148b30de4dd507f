"""mode http as an HTTP/1.1 reverse proxy: every request of a connection is
parsed, its head rewritten (forwarding headers, hop-by-hop headers) and
forwarded, its body streamed; refusals are short HTTP answers.

Backends are real: the project's whoami (its `/` report ends with the request
head exactly as it arrived, so a test sees byte for byte what gatekeeper
forwarded; `/echo` streams the body back, chunked when the request was
chunked) and small Python servers written here: a recording HTTP origin
(`Origin`, which keeps every byte it receives, so "the backend never saw the
bad request" can be checked) and a websocket echo server. Clients are raw
sockets, so every byte sent is under the test's control.

Every refusal is checked on the wire (status line, X-Gatekeeper-Reason,
text/plain body, Connection: close), then the connection must close, the
backend must not have received the refused request, the access line names
the reason and counts the requests forwarded, and a fresh connection
afterwards still gets a normal 200.

Timeouts (header_timeout, keepalive_timeout) are configured short and waited
for with generous upper bounds; nothing asserts a duration.
"""

import base64
import hashlib
import os
import random
import re
import select
import socket
import struct
import threading
import time

import pytest

import gkharness as h
import tlsutil as t

A, B = "a.gk.test", "b.gk.test"
C4 = "127.0.0.1"  # the address every IPv4 test client connects from
WS_GUID = b"258EAFA5-E914-47A5-95CA-C5AB0DC85B11"

PHRASES = {
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    408: "Request Timeout",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# The forwarding headers gatekeeper writes, in the order the spec adds them.
FWD_NAMES = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "forwarded")


# --------------------------------------------------------------------------
# Config

def _yv(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join('"%s"' % x for x in v) + "]"
    return str(v)


def http_listener(name, upstream=None, routes=(), http=None, listen="127.0.0.1:0", **opts):
    """A mode http listeners[] entry (tlsutil.listener) plus an `http:` block
    built from the dict `http` (lists become flow sequences, bools true/false,
    the rest is written as is: 1s, 4k, 3)."""
    text = t.listener(name, "http", upstream=upstream, routes=routes, listen=listen, **opts)
    if http:
        text += "    http:\n" + "".join("      %s: %s\n" % (k, _yv(v)) for k, v in http.items())
    return text


def http_config(*listeners, nameservers=None):
    return t.config(*listeners, nameservers=nameservers)


# --------------------------------------------------------------------------
# A raw HTTP/1.x client

class Resp:
    def __init__(self, status_line, headers, body, raw):
        self.status_line = status_line
        m = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", status_line)
        if not m:
            raise AssertionError("bad status line %r" % status_line)
        self.status = int(m.group(1))
        self.reason = m.group(2) or ""
        self.headers = headers  # [(name as sent, value stripped)]
        self.body = body
        self.raw = raw

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def field(self, key):
        """A `Key: value` line of a whoami/Origin report body."""
        m = re.search(rb"^" + re.escape(key.encode()) + rb": (.*)$", self.body, re.M)
        return m.group(1).decode("latin-1") if m else None

    def __repr__(self):
        return "<Resp %r %r>" % (self.status_line, self.raw[:400])


class Client:
    """One raw TCP connection to gatekeeper with a read buffer.  Every recv
    is bounded by `timeout`."""

    def __init__(self, addr, timeout=10):
        self.sock = h.connect(addr, timeout=timeout)
        self.local = self.sock.getsockname()[:2]
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = None  # None while open, else "eof" or "reset"

    def send(self, data):
        self.sock.sendall(data)

    def send_quiet(self, data):
        """sendall that tolerates gatekeeper closing first (it may refuse
        before reading everything)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self):
        if self.eof:
            return False
        try:
            b = self.sock.recv(1 << 17)
        except ConnectionResetError:
            self.eof = "reset"
            return False
        except socket.timeout:
            raise AssertionError("no data within %ss (buffered %r)" % (self.timeout, bytes(self.buf[:300])))
        if not b:
            self.eof = "eof"
            return False
        self.buf += b
        return True

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                return self._take(i + 2)[:-2]
            if not self._fill():
                raise AssertionError("connection %s before a full line: %r" % (self.eof, bytes(self.buf[:300])))

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise AssertionError("connection %s after %d of %d bytes" % (self.eof, len(self.buf), n))
        return self._take(n)

    def response(self):
        """Read one response: Content-Length, chunked (decoded) or until EOF."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError("connection %s before a full response head: %r"
                                     % (self.eof, bytes(self.buf[:500])))
        end = self.buf.find(b"\r\n\r\n") + 4
        head = self._take(end)
        lines = head[:-4].decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k, v.strip(" \t")))
        resp = Resp(lines[0], headers, b"", head)
        if resp.status in (101, 204, 304) or 100 <= resp.status < 200:
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                size = int(self.read_line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.read_line() != b"":
                        pass  # trailers
                    break
                parts.append(self.read_exact(size))
                assert self.read_exact(2) == b"\r\n", "bad chunk end"
            resp.body = b"".join(parts)
        elif resp.header("Content-Length") is not None:
            resp.body = self.read_exact(int(resp.header("Content-Length")))
        else:
            while self._fill():
                pass
            resp.body = self._take(len(self.buf))
        resp.raw = head + resp.body
        return resp

    def until_closed(self, timeout=15):
        """Read until EOF or reset; returns (bytes read, including what was
        buffered, and 'eof' or 'reset').  Raises if still open at timeout."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after %ss (read %r)" % (timeout, bytes(self.buf[:300])))
            self.sock.settimeout(left)
            try:
                self._fill()
            except AssertionError:
                continue
        self.sock.settimeout(self.timeout)
        return self._take(len(self.buf)), self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def req(host=A, path="/", method="GET", version="1.1", extra=(), body=b""):
    """A request head (CRLF line ends) with the given extra header lines
    (str or bytes), then body.  host None sends no Host."""
    lines = [("%s %s HTTP/%s" % (method, path, version)).encode()]
    if host is not None:
        lines.append(("Host: %s" % host).encode())
    for e in extra:
        lines.append(e if isinstance(e, bytes) else e.encode("latin-1"))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def get_ok(addr, host=A, path="/good"):
    """A fresh connection: one GET with Connection: close must get a 200."""
    with Client(addr) as c:
        c.send(req(host, path, extra=["Connection: close"]))
        r = c.response()
    assert r.status == 200, r
    return r


# --------------------------------------------------------------------------
# Forwarded heads as the backend saw them

def forwarded_head(resp):
    """The request head a whoami (or Origin) report shows, as received."""
    body = resp.body
    i = body.find(b"\nRemoteAddr: ")
    assert i >= 0, "not a report: %r" % body[:300]
    j = body.index(b"\n", i + 1) + 1
    end = body.find(b"\r\n\r\n", j)
    assert end >= 0, "no CRLF CRLF in the forwarded head: %r" % body[j:j + 600]
    return body[j:end + 4]


def head_lines(head):
    """(request line, [raw header lines]) of a head ending in CRLF CRLF."""
    assert head.endswith(b"\r\n\r\n"), head
    lines = head[:-4].split(b"\r\n")
    for l in lines:
        assert b"\n" not in l and b"\r" not in l, "bare CR/LF in forwarded head: %r" % head
    return lines[0], lines[1:]


def hname(line):
    return line.split(b":", 1)[0].decode("latin-1").lower()


def hval(line):
    return line.split(b":", 1)[1].strip(b" \t").decode("latin-1")


def values(lines, name):
    return [hval(l) for l in lines if hname(l) == name]


_TOKEN_QUOTED = re.compile(r'="([!#$%&\'*+.^_`|~0-9A-Za-z-]+)"')


def fwd_norm(value):
    """A Forwarded value with quoted-strings that are plain tokens unquoted
    (RFC 7239: `host="a.gk.test"` and `host=a.gk.test` are the same value);
    `for="[::1]"` must stay quoted."""
    return _TOKEN_QUOTED.sub(r"=\1", value)


def fwd_pairs(lines):
    """(name, value) of header lines, Forwarded values normalized."""
    return [(hname(l), fwd_norm(hval(l)) if hname(l) == "forwarded" else hval(l)) for l in lines]


def expected_added(c, host, forwarded=False, xff=None):
    """The forwarding headers appended for an untrusted peer (or a trusted
    one that sent none), in the spec's order."""
    out = [("x-forwarded-for", xff or c), ("x-forwarded-proto", "http"),
           ("x-forwarded-host", host), ("x-real-ip", c)]
    if forwarded:
        f = 'for="[%s]"' % c if ":" in c else "for=%s" % c
        out.append(("forwarded", "%s;host=%s;proto=http" % (f, host)))
    return out


def check_replaced(head, host, c=C4, forwarded=False, sent=None):
    """Untrusted peer: every incoming forwarding header is gone, the fresh
    ones are the last header lines (Connection aside) in the spec's order,
    and `sent` (the header lines the client sent, if given) minus the
    forwarding and hop-by-hop ones arrived byte for byte and in order."""
    reqline, lines = head_lines(head)
    exp = expected_added(c, host, forwarded)
    body = [l for l in lines if hname(l) != "connection"]
    tail = fwd_pairs(body[-len(exp):])
    assert tail == exp, "forwarding headers at the end:\n%s" % head.decode("latin-1")
    replaced = FWD_NAMES if forwarded else FWD_NAMES[:4]
    for n in replaced:
        assert len(values(lines, n)) == 1, "%s appears %d times:\n%s" % (n, len(values(lines, n)), head)
    if sent is not None:
        keep = [l for l in sent if hname(l) not in replaced and hname(l) not in HOP_BY_HOP]
        assert body[:-len(exp)] == keep, "other headers changed:\n%r\n%r" % (body[:-len(exp)], keep)
    return reqline, lines


HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "upgrade")


# --------------------------------------------------------------------------
# Backends written here

class Origin:
    """A small HTTP/1.1 origin on a gkharness.HandlerServer.

    It keeps every byte it receives (`raw()`), parses requests with
    Content-Length or chunked bodies, records them (`requests`: dicts with
    conn, head, body, raw_body) and answers each with 200 and a report like
    whoami's: `Name:`, `Count:`, `RemoteAddr:` lines, then the head as
    received.  It honours Connection: close / HTTP/1.0 keep-alive.

    upgrade="ws": an upgrade request gets 101 and a correct
    Sec-WebSocket-Accept, plus one server text frame ("hello") in the same
    write; then frames are echoed unmasked until a close frame, which is
    answered and ends the connection.  Bytes after the head are kept in
    `ws_raw`.  upgrade="refuse": an upgrade request gets `refuse_status`
    with a body and the connection goes on as HTTP.
    """

    def __init__(self, handler_server, name="B", upgrade=None, refuse_status=200, host="127.0.0.1"):
        self.name = name
        self.upgrade = upgrade
        self.refuse_status = refuse_status
        self._lock = threading.Lock()
        self._raw = []
        self.requests = []
        self.ws_raw = bytearray()
        self.ws_frames = []
        self.errors = []
        self.srv = handler_server(self._handle, host=host)
        self.addr = self.srv.addr
        self.port = self.srv.port

    @property
    def accepted(self):
        return self.srv.accepted

    def raw(self):
        with self._lock:
            return b"".join(bytes(r) for r in self._raw)

    def paths(self):
        with self._lock:
            return [r["head"].split(b" ")[1].decode("latin-1") for r in self.requests]

    def wait_requests(self, n, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            if time.monotonic() > deadline:
                raise AssertionError("origin %s: %d requests, wanted %d" % (self.name, len(self.requests), n))
            time.sleep(0.02)

    def _handle(self, conn, server):
        conn.settimeout(60)
        raw = bytearray()
        with self._lock:
            self._raw.append(raw)
            idx = len(self._raw)
        peer = h.join_hostport(*conn.getpeername()[:2])
        buf = bytearray()

        def fill():
            b = conn.recv(1 << 16)
            if b:
                with self._lock:
                    raw.extend(b)
                buf.extend(b)
            return bool(b)

        def line():
            while b"\r\n" not in buf:
                if not fill():
                    raise EOFError
            i = buf.find(b"\r\n")
            out = bytes(buf[:i + 2])
            del buf[:i + 2]
            return out

        def exact(n):
            while len(buf) < n:
                if not fill():
                    raise EOFError
            out = bytes(buf[:n])
            del buf[:n]
            return out

        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    if not fill():
                        return
                end = buf.find(b"\r\n\r\n") + 4
                head = bytes(buf[:end])
                del buf[:end]
                reqline, lines = head[:-4].split(b"\r\n")[0], head[:-4].split(b"\r\n")[1:]
                names = [hname(l) for l in lines]
                version = reqline.rsplit(b" ", 1)[-1]
                conn_tokens = {x.strip().lower() for l in lines if hname(l) == "connection"
                               for x in hval(l).split(",")}
                te = ",".join(values(lines, "transfer-encoding")).lower()
                raw_body, body = b"", b""
                if "chunked" in te:
                    parts, rawparts = [], []
                    while True:
                        sl = line()
                        rawparts.append(sl)
                        tok = sl[:-2].split(b";")[0].rstrip(b" \t")
                        if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", tok):
                            raise ValueError("bad chunk size %r" % tok)
                        size = int(tok, 16)
                        if size == 0:
                            while True:
                                tl = line()
                                rawparts.append(tl)
                                if tl == b"\r\n":
                                    break
                            break
                        d = exact(size + 2)
                        rawparts.append(d)
                        if d[-2:] != b"\r\n":
                            raise ValueError("bad chunk end")
                        parts.append(d[:-2])
                    body, raw_body = b"".join(parts), b"".join(rawparts)
                elif "content-length" in names:
                    body = raw_body = exact(int(values(lines, "content-length")[0]))
                with self._lock:
                    self.requests.append({"conn": idx, "head": head, "body": body, "raw_body": raw_body})
                    count = len(self.requests)
                is_upgrade = "upgrade" in conn_tokens and "upgrade" in names
                if is_upgrade and self.upgrade == "ws":
                    self._websocket(conn, lines, buf, fill)
                    return
                if version == b"HTTP/1.1":
                    keep = "close" not in conn_tokens
                else:
                    keep = "keep-alive" in conn_tokens
                if is_upgrade and self.upgrade == "refuse":
                    rbody = b"not upgraded\n"
                    status = self.refuse_status
                else:
                    rbody = (b"Name: %s\nCount: %d\nRemoteAddr: %s\n"
                             % (self.name.encode(), count, peer.encode())) + head + body
                    status = 200
                out = b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % (
                    status, PHRASES.get(status, "Whatever").encode(), len(rbody))
                if not keep:
                    out += b"Connection: close\r\n"
                elif version == b"HTTP/1.0":
                    out += b"Connection: keep-alive\r\n"
                conn.sendall(out + b"\r\n" + rbody)
                if not keep:
                    conn.shutdown(socket.SHUT_WR)
                    while fill():
                        pass
                    return
        except EOFError:
            return
        except (ValueError, IndexError) as e:
            with self._lock:
                self.errors.append(repr(e))
            return

    def _websocket(self, conn, lines, buf, fill):
        key = values(lines, "sec-websocket-key")[0].encode()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                     + ws_frame(1, b"hello", mask=False))
        with self._lock:
            self.ws_raw.extend(buf)
        while True:
            f = ws_parse(buf)
            if f is None:
                before = len(buf)
                if not fill():
                    return
                with self._lock:
                    self.ws_raw.extend(buf[before:])
                continue
            fin, opcode, masked, payload, used = f
            del buf[:used]
            with self._lock:
                self.ws_frames.append((opcode, masked, payload))
            if not masked:
                with self._lock:
                    self.errors.append("unmasked client frame")
            conn.sendall(ws_frame(opcode, payload, mask=False))
            if opcode == 8:
                conn.shutdown(socket.SHUT_WR)
                while fill():
                    pass
                return


# --------------------------------------------------------------------------
# Websocket frames (RFC 6455)

def ws_frame(opcode, payload, mask=True, fin=True, rng=random.Random(4)):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack(">BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        hdr = struct.pack(">BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        hdr = struct.pack(">BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return hdr + payload
    key = bytes(rng.randrange(256) for _ in range(4))
    return hdr + key + _xor(payload, key)


def _xor(data, key):
    if not data:
        return b""
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


def ws_parse(buf):
    """(fin, opcode, masked, payload unmasked, bytes used) or None."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n, off = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = struct.unpack(">H", bytes(buf[2:4]))[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = struct.unpack(">Q", bytes(buf[2:10]))[0], 10
    masked = bool(b1 & 0x80)
    key = b""
    if masked:
        if len(buf) < off + 4:
            return None
        key, off = bytes(buf[off:off + 4]), off + 4
    if len(buf) < off + n:
        return None
    payload = bytes(buf[off:off + n])
    if masked:
        payload = _xor(payload, key)
    return bool(b0 & 0x80), b0 & 0x0F, masked, payload, off + n


def ws_read(c):
    """Read one frame off a Client."""
    while True:
        f = ws_parse(c.buf)
        if f is not None:
            del c.buf[:f[4]]
            return f[:4]
        if not c._fill():
            raise AssertionError("connection %s inside a websocket frame" % c.eof)


def ws_handshake(host=A, path="/chat", key=None):
    key = key or base64.b64encode(bytes(range(16))).decode()
    return req(host, path, extra=[
        "Upgrade: websocket", "Connection: keep-alive, Upgrade", "Sec-WebSocket-Key: %s" % key,
        "Sec-WebSocket-Version: 13", "Origin: http://%s" % host]), key


# --------------------------------------------------------------------------
# Fixtures

@pytest.fixture
def origin(handler_server):
    def make(name="B", **kw):
        return Origin(handler_server, name, **kw)
    return make


@pytest.fixture
def single(gk, whoami):
    """A mode http listener with one upstream (whoami "A") and the default
    http settings."""
    wa = whoami(name="A")
    g = gk(http_config(http_listener("web", upstream=wa.addr)))
    return g, g.addr("web"), wa


# --------------------------------------------------------------------------
# 1. Forwarding headers

FORGED = ["X-Forwarded-For: 6.6.6.6", "x-forwarded-for: 7.7.7.7, 8.8.8.8", "X-Real-IP: 6.6.6.6",
          "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example"]


def test_forwarding_headers_on_every_request_of_a_keepalive_connection(single):
    """Requests 1, 2, ... 10 of one connection each get X-Forwarded-For,
    -Proto, -Host and X-Real-IP at the end of their head; an untrusted
    peer's forged values are removed; the connection keeps one upstream."""
    g, addr, wa = single
    c = Client(addr)
    upstream_ends = set()
    for i in range(1, 11):
        extra = ["User-Agent: raw/%d" % i, "Accept: */*"]
        if i % 2 == 0 or i == 10:
            extra = extra[:1] + FORGED[:2] + extra[1:] + FORGED[2:]
        sent = req(A, "/r%d" % i, extra=extra)
        c.send(sent)
        r = c.response()
        assert r.status == 200 and r.field("Name") == "A", (i, r)
        head = forwarded_head(r)
        reqline, lines = check_replaced(head, A, sent=head_lines(sent)[1])
        assert reqline == b"GET /r%d HTTP/1.1" % i
        assert not values(lines, "connection"), "request %d: no Connection header needed:\n%s" % (i, head)
        for bad in ("6.6.6.6", "7.7.7.7", "https", "evil.example"):
            assert bad.encode() not in head, (i, head)
        upstream_ends.add(r.field("RemoteAddr"))
    assert len(upstream_ends) == 1, "keep-alive requests used several upstream connections: %s" % upstream_ends
    c.close()
    acc = g.wait_access_for(c.local)
    assert acc["requests"] == "10", acc
    assert acc["name"] == A and acc["upstream"] == wa.addr, acc


def test_forwarding_headers_from_a_trusted_peer_are_kept_and_extended(gk, whoami):
    wa = whoami(name="A")
    g = gk(http_config(
        http_listener("trusted", upstream=wa.addr, http={"trusted": ["127.0.0.0/8"]}),
        http_listener("elsewhere", upstream=wa.addr, http={"trusted": ["10.0.0.0/8", "::1"]})))

    # trusted: every incoming X-Forwarded-For line joined, then C
    c = Client(g.addr("trusted"))
    c.send(req(A, "/t", extra=FORGED + ["Accept: */*"]))
    r = c.response()
    assert r.status == 200, r
    head = forwarded_head(r)
    _, lines = head_lines(head)
    assert values(lines, "x-forwarded-for") == ["6.6.6.6, 7.7.7.7, 8.8.8.8, " + C4], head
    assert values(lines, "x-forwarded-proto") == ["https"], head
    assert values(lines, "x-forwarded-host") == ["evil.example"], head
    assert values(lines, "x-real-ip") == ["6.6.6.6"], head
    assert b"X-Real-IP: 6.6.6.6" in lines and b"X-Forwarded-Proto: https" in lines, "kept headers lost their bytes"
    assert not values(lines, "forwarded"), "Forwarded is off by default"

    # trusted, nothing incoming: the same headers as for anybody
    c.send(req(A, "/t2", extra=["Accept: */*"]))
    r = c.response()
    check_replaced(forwarded_head(r), A, sent=[b"Host: a.gk.test", b"Accept: */*"])
    c.close()
    assert g.wait_access_for(c.local)["requests"] == "2"

    # a trusted list without 127.0.0.1: forged values are replaced
    c = Client(g.addr("elsewhere"))
    sent = req(A, "/u", extra=FORGED)
    c.send(sent)
    r = c.response()
    check_replaced(forwarded_head(r), A, sent=head_lines(sent)[1])
    c.close()


def test_forwarded_header_when_enabled(gk, whoami):
    """RFC 7239 Forwarded: added last (after X-Real-IP) with for/host/proto;
    an untrusted peer's is replaced, a trusted peer's extended; with the
    switch off (the default) an untrusted peer's is removed (a backend
    would take it for gatekeeper's) and a trusted peer's passes untouched."""
    wa = whoami(name="A")
    g = gk(http_config(
        http_listener("fwd", upstream=wa.addr, http={"forwarded": True}),
        http_listener("fwdtrusted", upstream=wa.addr, http={"forwarded": True, "trusted": ["127.0.0.0/8"]}),
        http_listener("plain", upstream=wa.addr),
        http_listener("plaintrusted", upstream=wa.addr, http={"trusted": ["127.0.0.0/8"]})))
    forged = "Forwarded: for=6.6.6.6;proto=https"

    sent = req(A, "/f", extra=["Accept: */*", forged])
    with Client(g.addr("fwd")) as c:
        c.send(sent)
        r = c.response()
    check_replaced(forwarded_head(r), A, forwarded=True, sent=head_lines(sent)[1])

    with Client(g.addr("fwdtrusted")) as c:
        c.send(sent)
        r = c.response()
    _, lines = head_lines(forwarded_head(r))
    fwd = fwd_norm(", ".join(values(lines, "forwarded")))
    assert fwd == "for=6.6.6.6;proto=https, for=%s;host=%s;proto=http" % (C4, A), fwd

    with Client(g.addr("plain")) as c:
        c.send(sent)
        r = c.response()
    head = forwarded_head(r)
    _, lines = head_lines(head)
    assert [l for l in lines if hname(l) == "forwarded"] == [], head

    with Client(g.addr("plaintrusted")) as c:
        c.send(sent)
        r = c.response()
    head = forwarded_head(r)
    _, lines = head_lines(head)
    assert [l for l in lines if hname(l) == "forwarded"] == [forged.encode()], head
    # untouched means in place too: right after Accept, before the added ones
    assert lines.index(forged.encode()) == 2, head
    check_replaced(head, A)


@pytest.mark.parametrize("switch", ["x_forwarded_for", "x_forwarded_proto", "x_forwarded_host", "x_real_ip"])
def test_forwarding_header_switched_off(gk, whoami, switch):
    """A switched-off forwarding header is not written. A trusted peer's
    lines of it pass untouched, in place; an untrusted peer's are removed,
    since a backend would take the client's claim for gatekeeper's."""
    wa = whoami(name="A")
    g = gk(http_config(http_listener("web", upstream=wa.addr, http={switch: False}),
                       http_listener("trusted", upstream=wa.addr,
                                     http={switch: False, "trusted": ["127.0.0.0/8"]})))
    name = switch.replace("_", "-")
    sent = req(A, "/off", extra=["Accept: */*"] + FORGED + ["User-Agent: raw"])
    sent_lines = head_lines(sent)[1]
    others = set(FWD_NAMES[:4]) - {name}
    with Client(g.addr("web")) as c:
        c.send(sent)
        r = c.response()
    _, lines = head_lines(forwarded_head(r))
    assert not values(lines, name), lines
    kept = [l for l in lines if hname(l) not in others and hname(l) != "connection"]
    assert kept == [l for l in sent_lines if hname(l) not in others and hname(l) != name], lines
    # the others are replaced and appended in order
    exp = [e for e in expected_added(C4, A) if e[0] != name]
    tail = [(hname(l), hval(l)) for l in lines if hname(l) != "connection"][-len(exp):]
    assert tail == exp, lines

    with Client(g.addr("trusted")) as c:
        c.send(sent)
        r = c.response()
    head = forwarded_head(r)
    _, lines = head_lines(head)
    # the switched-off header: exactly the client's lines, in place among
    # the headers gatekeeper leaves alone, and nothing of it added
    untouched = [l for l in lines if hname(l) not in others and hname(l) != "connection"]
    assert untouched == [l for l in sent_lines if hname(l) not in others], head

    # with nothing incoming, nothing of it is added
    with Client(g.addr("web")) as c:
        c.send(req(A, "/off2"))
        r = c.response()
    _, lines = head_lines(forwarded_head(r))
    assert not values(lines, name), lines


def test_all_switches_off_forwards_the_head_unchanged(gk, whoami):
    """With every forwarding header off, a trusted peer's head goes on byte
    for byte; an untrusted peer's loses only its forwarding headers."""
    off = {"x_forwarded_for": False, "x_forwarded_proto": False, "x_forwarded_host": False,
           "x_real_ip": False, "forwarded": False}
    wa = whoami(name="A")
    g = gk(http_config(http_listener("web", upstream=wa.addr, http=off),
                       http_listener("trusted", upstream=wa.addr,
                                     http=dict(off, trusted=["127.0.0.0/8"]))))
    sent = req(A, "/same", extra=FORGED + ["Forwarded: for=1.2.3.4", "Accept: */*"])
    with Client(g.addr("trusted")) as c:
        c.send(sent)
        r = c.response()
    assert forwarded_head(r) == sent
    with Client(g.addr("web")) as c:
        c.send(sent)
        r = c.response()
    assert forwarded_head(r) == req(A, "/same", extra=["Accept: */*"])


def test_forwarding_headers_over_ipv6(gk, whoami, ipv6_available):
    w6 = whoami(host="::1", name="V6")
    g = gk(http_config(http_listener("v6", upstream=w6.addr, listen="[::1]:0", http={"forwarded": True})))
    sent = req(A, "/v6", extra=FORGED)
    with Client(g.addr("v6")) as c:
        c.send(sent)
        r = c.response()
    assert r.field("Name") == "V6"
    check_replaced(forwarded_head(r), A, c="::1", forwarded=True, sent=head_lines(sent)[1])


def test_client_address_from_a_trusted_proxy_header(gk, whoami):
    """C is the source a trusted PROXY header gave, not the TCP peer."""
    wa = whoami(name="A")
    proxy = {"accept": "true", "trusted": '["127.0.0.1/32"]'}
    g = gk(http_config(
        http_listener("pp", upstream=wa.addr, proxy=proxy),
        http_listener("pptrusted", upstream=wa.addr, proxy=proxy, http={"trusted": ["127.0.0.0/8"]})))
    src = ("203.0.113.7", 41000)
    for lname, xff in (("pp", "203.0.113.7"), ("pptrusted", "6.6.6.6, 203.0.113.7")):
        addr = g.addr(lname)
        with Client(addr) as c:
            c.send(t.proxy_v1(src, (addr[0], addr[1])) + req(A, "/pp", extra=["X-Forwarded-For: 6.6.6.6"]))
            r = c.response()
        assert r.status == 200, r
        _, lines = head_lines(forwarded_head(r))
        assert values(lines, "x-forwarded-for") == [xff], (lname, lines)
        if lname == "pp":
            assert values(lines, "x-real-ip") == ["203.0.113.7"], lines


# --------------------------------------------------------------------------
# 2. Pipelining

def test_pipelined_requests_answered_in_order_each_rewritten(single):
    g, addr, wa = single
    body = b"pipelined body\n"
    reqs = [req(A, "/p1", extra=["X-Forwarded-For: 6.6.6.1"]),
            req(A, "/p2"),
            req(A, "/echo", method="POST", extra=["Content-Length: %d" % len(body), "X-Forwarded-For: 6.6.6.3"],
                body=body),
            req(A, "/p4", extra=["X-Real-IP: 6.6.6.4"]),
            req(A, "/p5", extra=["X-Forwarded-For: 6.6.6.5"])]
    c = Client(addr)
    c.send(b"".join(reqs))
    got = [c.response() for _ in reqs]
    for i, r in enumerate(got):
        assert r.status == 200, (i, r)
        if i == 2:
            assert r.body == body
            continue
        head = forwarded_head(r)
        reqline, _ = check_replaced(head, A, sent=head_lines(reqs[i][:reqs[i].index(b"\r\n\r\n") + 4])[1])
        assert reqline == b"GET /p%d HTTP/1.1" % (i + 1), head
        assert b"6.6.6" not in head
    c.close()
    assert g.wait_access_for(c.local)["requests"] == "5"


# --------------------------------------------------------------------------
# 3. Hop-by-hop headers

def test_hop_by_hop_headers_are_removed_the_rest_is_byte_identical(single):
    g, addr, wa = single
    extra = [
        b"X-First: 1",
        b"Connection: foo, Keep-Alive",
        b"Foo: bar",
        b"Keep-Alive: timeout=5, max=100",
        b"x-MiXeD-CaSe:value  with  two  spaces",
        b"Proxy-Connection: keep-alive",
        b"TE: trailers",
        b"Upgrade: h2c",
        b"connection: bar",
        b"Bar: baz",
        b"Foo-Bar: not named, kept",
        b"X-Empty:",
        b"X-Tab:\tvalue",
        b"X-Obs-Text: caf\xe9",
        b"Cookie: a=1; b=2",
        b"X-Dup: 1",
        b"X-Dup: 2",
        b"Accept: */*",
    ]
    sent = req(A, "/hop?x=1&y=2", extra=extra)
    c = Client(addr)
    c.send(sent)
    r = c.response()
    assert r.status == 200, r
    head = forwarded_head(r)
    reqline, lines = head_lines(head)
    assert reqline == b"GET /hop?x=1&y=2 HTTP/1.1"
    gone = {"connection", "foo", "bar", "keep-alive", "proxy-connection", "te", "upgrade"}
    for l in lines:
        assert hname(l) not in gone, "hop-by-hop header forwarded: %r\n%s" % (l, head.decode("latin-1"))
    keep = [l for l in head_lines(sent)[1] if hname(l) not in gone]
    assert lines[:len(keep)] == keep, "end-to-end headers changed:\n%r\n%r" % (lines, keep)
    assert [(hname(l), hval(l)) for l in lines[len(keep):]] == expected_added(C4, A)
    # the connection is still usable
    c.send(req(A, "/after"))
    assert c.response().status == 200
    c.close()


@pytest.mark.parametrize("version,conn_in,conn_out,stays_open", [
    ("1.1", None, None, True),
    ("1.1", "keep-alive", None, True),
    ("1.1", "close", "close", False),
    ("1.1", "Close, foo", "close", False),
    ("1.0", None, "close", False),
    ("1.0", "keep-alive", "keep-alive", True),
    ("1.0", "Keep-Alive, foo", "keep-alive", True),
])
def test_connection_header_sent_upstream(single, version, conn_in, conn_out, stays_open):
    """One Connection header only when needed: close for close or a plain
    HTTP/1.0 request, keep-alive for an HTTP/1.0 keep-alive request."""
    g, addr, wa = single
    extra = ["Foo: x"] + (["Connection: %s" % conn_in] if conn_in else [])
    c = Client(addr)
    c.send(req(A, "/conn", version=version, extra=extra))
    r = c.response()
    assert r.status == 200, r
    _, lines = head_lines(forwarded_head(r))
    got = values(lines, "connection")
    if conn_out is None:
        assert got == [], lines
    else:
        assert [v.lower() for v in got] == [conn_out], lines
    if conn_in and "foo" in conn_in:
        assert not values(lines, "foo")
    if stays_open:
        c.send(req(A, "/second", version=version, extra=["Connection: keep-alive"] if version == "1.0" else []))
        r = c.response()
        assert r.status == 200 and b"GET /second " in r.body, r
    else:
        rest, how = c.until_closed()
        assert rest == b"", rest[:200]
    c.close()


# --------------------------------------------------------------------------
# 4. Bodies

def _chunk_sizes(total, seed):
    rng = random.Random(seed)
    sizes = []
    while total > 0:
        kind = rng.random()
        if kind < 0.2:
            n = rng.randint(1, 16)
        elif kind < 0.7:
            n = rng.randint(100, 8000)
        else:
            n = rng.randint(8000, 300000)
        n = min(n, total)
        sizes.append(n)
        total -= n
    return sizes


def _sender(sock, pieces, errors):
    try:
        for p in pieces:
            sock.sendall(p)
    except OSError as e:
        errors.append(e)


def test_large_chunked_upload_streams_through(single):
    g, addr, wa = single
    size = 8 * 1024 * 1024
    data = h.deterministic_bytes(size, seed=21)
    sizes = _chunk_sizes(size, seed=22)
    pieces = [req(A, "/echo", method="POST", extra=["Transfer-Encoding: chunked",
                                                     "Content-Type: application/octet-stream"])]
    off = 0
    for i, n in enumerate(sizes):
        fmt = ("%x", "%X", "%06x")[i % 3]  # lower, upper, leading zeros: all valid hex
        pieces.append((fmt % n).encode() + b"\r\n" + data[off:off + n] + b"\r\n")
        off += n
    pieces.append(b"0\r\n\r\n")
    c = Client(addr, timeout=60)
    errors = []
    th = threading.Thread(target=_sender, args=(c.sock, pieces, errors), daemon=True)
    th.start()
    r = c.response()
    th.join(60)
    assert not errors, errors
    assert r.status == 200, r
    assert (r.header("Transfer-Encoding") or "").lower() == "chunked"
    assert len(r.body) == size and h.sha256(r.body) == h.sha256(data)

    # the next request on the same connection is parsed as a request
    c.send(req(A, "/next"))
    r = c.response()
    assert r.status == 200 and r.field("Name") == "A", r
    reqline, _ = check_replaced(forwarded_head(r), A)
    assert reqline == b"GET /next HTTP/1.1"
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["requests"] == "2", acc
    assert int(acc["bytes_in"]) > size and int(acc["bytes_out"]) > size, acc


def test_content_length_upload_then_next_request(single):
    g, addr, wa = single
    size = 5 * 1024 * 1024 + 17
    data = h.deterministic_bytes(size, seed=23)
    c = Client(addr, timeout=60)
    head = req(A, "/echo", method="PUT", extra=["Content-Length: %d" % size])
    pieces = [head] + [data[i:i + 100000] for i in range(0, size, 100000)]
    errors = []
    th = threading.Thread(target=_sender, args=(c.sock, pieces, errors), daemon=True)
    th.start()
    r = c.response()
    th.join(60)
    assert not errors, errors
    assert r.status == 200 and int(r.header("Content-Length")) == size, r
    assert h.sha256(r.body) == h.sha256(data)
    # body bytes that look like a request are body, not a request
    trap = req(A, "/trap")
    c.send(req(A, "/echo", method="POST", extra=["Content-Length: %d" % len(trap)], body=trap))
    r = c.response()
    assert r.body == trap
    c.send(req(A, "/next"))
    r = c.response()
    assert r.status == 200 and b"GET /next HTTP/1.1\r\n" in r.body, r
    c.close()
    assert g.wait_access_for(c.local, timeout=20)["requests"] == "3"


def test_chunk_extensions_and_trailers_pass_unchanged(gk, origin):
    """The chunked body reaches the upstream byte for byte (extensions,
    trailers and all), and the request after it is still found."""
    o = origin("O")
    g = gk(http_config(http_listener("web", upstream=o.addr)))
    body = (b"5;name=value\r\nhello\r\n"
            b"000A\r\n0123456789\r\n"
            b"1;a;b=\"q\"\r\nx\r\n"
            b"0\r\nX-Trailer: t1\r\nX-Other: t2\r\n\r\n")
    c = Client(g.addr("web"))
    c.send(req(A, "/chunked", method="POST", extra=["Transfer-Encoding: chunked"], body=body) + req(A, "/after"))
    r1, r2 = c.response(), c.response()
    assert r1.status == 200 and r2.status == 200, (r1, r2)
    reqs = o.wait_requests(2)
    assert reqs[0]["raw_body"] == body, reqs[0]["raw_body"]
    assert reqs[0]["body"] == b"hello0123456789x"
    assert reqs[1]["head"].startswith(b"GET /after HTTP/1.1\r\n")
    assert reqs[0]["conn"] == reqs[1]["conn"]
    assert not o.errors, o.errors
    c.close()


# --------------------------------------------------------------------------
# 5. Websockets

def test_websocket_upgrade_then_raw_relay(gk, origin):
    o = origin("WS", upgrade="ws")
    g = gk(http_config(http_listener("web", upstream=o.addr)))
    c = Client(g.addr("web"))
    hs, key = ws_handshake()
    c.send(hs)
    r = c.response()
    assert r.status == 101, r
    assert r.header("Sec-WebSocket-Accept") == base64.b64encode(
        hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    # the frame the backend wrote together with its 101 arrives raw
    assert ws_read(c) == (True, 1, False, b"hello")

    # what the backend received: Connection: upgrade, Upgrade and the key kept
    head = o.wait_requests(1)[0]["head"]
    _, lines = head_lines(head)
    assert [v.lower() for v in values(lines, "connection")] == ["upgrade"], head
    assert values(lines, "upgrade") == ["websocket"], head
    assert values(lines, "sec-websocket-key") == [key]
    assert values(lines, "x-forwarded-for") == [C4]

    sent = bytearray()
    payloads = [(1, b"hi"), (1, "grüße".encode()), (2, bytes(range(256)) * 3),
                (1, b"GET / HTTP/1.1\r\nHost: b.gk.test\r\n\r\n"),  # looks like HTTP, is not
                (2, h.deterministic_bytes(70000, seed=5)), (9, b"ping")]
    for op, p in payloads:
        f = ws_frame(op, p)
        sent += f
        c.send(f)
        assert ws_read(c) == (True, op, False, p)
    # a frame cut into tiny writes
    f = ws_frame(1, b"x" * 300)
    sent += f
    for i in range(0, len(f), 7):
        c.send(f[i:i + 7])
    assert ws_read(c) == (True, 1, False, b"x" * 300)
    close = ws_frame(8, struct.pack(">H", 1000) + b"bye")
    sent += close
    c.send(close)
    assert ws_read(c) == (True, 8, False, struct.pack(">H", 1000) + b"bye")
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    assert bytes(o.ws_raw) == bytes(sent), "bytes after 101 were not relayed unchanged"
    assert not o.errors, o.errors
    acc = g.wait_access_for(c.local)
    assert acc["requests"] == "1" and acc["reason"] == "closed", acc


def test_websocket_frame_sent_with_the_handshake(gk, origin):
    """Bytes the client sends right behind the upgrade request are not read
    as a request: once the 101 is in, they are relayed raw."""
    o = origin("WS", upgrade="ws")
    g = gk(http_config(http_listener("web", upstream=o.addr)))
    c = Client(g.addr("web"))
    hs, key = ws_handshake()
    early = ws_frame(1, b"early") + ws_frame(2, b"GET /x HTTP/1.1\r\n\r\n")
    c.send(hs + early)
    assert c.response().status == 101
    assert ws_read(c) == (True, 1, False, b"hello")
    assert ws_read(c) == (True, 1, False, b"early")
    assert ws_read(c) == (True, 2, False, b"GET /x HTTP/1.1\r\n\r\n")
    close = ws_frame(8, b"")
    c.send(close)
    assert ws_read(c)[1] == 8
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    assert bytes(o.ws_raw) == early + close, "bytes behind the upgrade request were not relayed unchanged"
    assert len(o.requests) == 1
    assert not o.errors, o.errors


@pytest.mark.parametrize("status", [200, 426])
@pytest.mark.parametrize("pipelined", [False, True], ids=["sequential", "pipelined"])
def test_upgrade_refused_by_the_backend_connection_goes_on_as_http(gk, origin, status, pipelined):
    o = origin("NO", upgrade="refuse", refuse_status=status)
    g = gk(http_config(http_listener("web", upstream=o.addr)))
    c = Client(g.addr("web"))
    hs, _ = ws_handshake()
    nxt = req(A, "/next", extra=["X-Forwarded-For: 6.6.6.6"])
    if pipelined:
        c.send(hs + nxt)
    else:
        c.send(hs)
    r = c.response()
    assert r.status == status and r.body == b"not upgraded\n", r
    if not pipelined:
        c.send(nxt)
    r = c.response()
    assert r.status == 200 and r.field("Count") == "2", r
    check_replaced(forwarded_head(r), A)
    reqs = o.wait_requests(2)
    assert reqs[0]["conn"] == reqs[1]["conn"] and o.accepted == 1
    c.close()
    assert g.wait_access_for(c.local)["requests"] == "2"


# --------------------------------------------------------------------------
# 6. Refusals: malformed heads, smuggling, limits

def _bad(line, *headers, body=b"", host=A):
    hl = [line.encode("latin-1") if isinstance(line, str) else line]
    if host is not None:
        hl.append(b"Host: " + host.encode())
    hl += [x.encode("latin-1") if isinstance(x, str) else x for x in headers]
    return b"\r\n".join(hl) + b"\r\n\r\n" + body


REFUSALS = {
    # case: (request bytes, status, reason).  Every one names /bad (or is
    # CONNECT / silent), so the backend's bytes can be searched for it.
    "bad_method": (_bad("G(T /bad HTTP/1.1"), 400, "malformed"),
    "bad_version": (_bad("GET /bad HTTQ/1.1"), 400, "malformed"),
    "version_2": (_bad("GET /bad HTTP/2.0"), 400, "malformed"),
    "no_version": (_bad("GET /bad"), 400, "malformed"),
    "space_in_target": (_bad("GET /bad path HTTP/1.1"), 400, "malformed"),
    "ctl_in_target": (_bad(b"GET /bad\x01 HTTP/1.1"), 400, "malformed"),
    "ctl_in_value": (_bad("GET /bad HTTP/1.1", "X-A: a\x01b"), 400, "malformed"),
    "nul_in_value": (_bad("GET /bad HTTP/1.1", "X-A: a\x00b"), 400, "malformed"),
    "del_in_value": (_bad("GET /bad HTTP/1.1", "X-A: a\x7fb"), 400, "malformed"),
    "bare_cr_in_value": (_bad("GET /bad HTTP/1.1", "X-A: a\rb"), 400, "malformed"),
    "bad_header_name": (_bad("GET /bad HTTP/1.1", "X(A): 1"), 400, "malformed"),
    "empty_header_name": (_bad("GET /bad HTTP/1.1", ": 1"), 400, "malformed"),
    "no_colon": (_bad("GET /bad HTTP/1.1", "X-A 1"), 400, "malformed"),
    "space_before_colon": (_bad("GET /bad HTTP/1.1", "X-A : 1"), 400, "malformed"),
    "tab_before_colon": (_bad("GET /bad HTTP/1.1", "Content-Length\t: 0"), 400, "malformed"),
    "obs_fold_space": (_bad("GET /bad HTTP/1.1", "X-A: 1", " 2"), 400, "malformed"),
    "obs_fold_tab": (_bad("GET /bad HTTP/1.1", "X-A: 1", "\t2"), 400, "malformed"),
    "bare_lf_head": (b"GET /bad HTTP/1.1\nHost: a.gk.test\n\n", 400, "malformed"),
    "bare_lf_one_line": (b"GET /bad HTTP/1.1\r\nHost: a.gk.test\nX-A: 1\r\n\r\n", 400, "malformed"),
    "bare_lf_end": (b"GET /bad HTTP/1.1\r\nHost: a.gk.test\r\n\n", 400, "malformed"),
    "cl_and_te": (_bad("POST /bad HTTP/1.1", "Content-Length: 5", "Transfer-Encoding: chunked",
                       body=b"0\r\n\r\n"), 400, "smuggling"),
    "te_and_cl": (_bad("POST /bad HTTP/1.1", "Transfer-Encoding: chunked", "Content-Length: 0",
                       body=b"0\r\n\r\n"), 400, "smuggling"),
    "two_cl_differ": (_bad("POST /bad HTTP/1.1", "Content-Length: 5", "Content-Length: 6",
                           body=b"hello!"), 400, "smuggling"),
    "cl_list_differs": (_bad("POST /bad HTTP/1.1", "Content-Length: 5, 6", body=b"hello!"), 400, "smuggling"),
    "cl_plus": (_bad("POST /bad HTTP/1.1", "Content-Length: +5", body=b"hello"), 400, "smuggling"),
    "cl_negative": (_bad("POST /bad HTTP/1.1", "Content-Length: -1"), 400, "smuggling"),
    "cl_hex": (_bad("POST /bad HTTP/1.1", "Content-Length: 0x5", body=b"hello"), 400, "smuggling"),
    "cl_empty": (_bad("POST /bad HTTP/1.1", "Content-Length: "), 400, "smuggling"),
    "cl_inner_space": (_bad("POST /bad HTTP/1.1", "Content-Length: 1 0", body=b"0123456789"), 400, "smuggling"),
    "cl_fraction": (_bad("POST /bad HTTP/1.1", "Content-Length: 5.0", body=b"hello"), 400, "smuggling"),
    "te_gzip_chunked": (_bad("POST /bad HTTP/1.1", "Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
                        400, "smuggling"),
    "te_chunked_identity": (_bad("POST /bad HTTP/1.1", "Transfer-Encoding: chunked, identity",
                                 body=b"0\r\n\r\n"), 400, "smuggling"),
    "te_xchunked": (_bad("POST /bad HTTP/1.1", "Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 400, "smuggling"),
    # A control character in a field value makes the head malformed before
    # its Transfer-Encoding is even read: 400 either way.
    "te_chunked_vtab": (_bad("POST /bad HTTP/1.1", "Transfer-Encoding: chunked\x0b", body=b"0\r\n\r\n"),
                        400, {"smuggling", "malformed"}),
    "te_two_lines": (_bad("POST /bad HTTP/1.1", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked",
                          body=b"0\r\n\r\n"), 400, "smuggling"),
    "te_identity": (_bad("POST /bad HTTP/1.1", "Transfer-Encoding: identity"), 400, "smuggling"),
    "te_in_http10": (_bad("POST /bad HTTP/1.0", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
                     400, "smuggling"),
    "too_large": (_bad("GET /bad HTTP/1.1", "X-Big: " + "a" * 5000), 431, "too_large"),
    "too_many_small_lines": (_bad("GET /bad HTTP/1.1", *["X-%d: v" % i for i in range(700)]), 431, "too_large"),
    "partial_head": (b"GET /bad HTTP/1.1\r\nHost: a.gk", 408, "header_timeout"),
    "silent": (b"", 408, "header_timeout"),
    "connect": (b"CONNECT a.gk.test:443 HTTP/1.1\r\nHost: a.gk.test:443\r\n\r\n", 405, "bad_method"),
    "no_host": (_bad("GET /bad HTTP/1.1", "Accept: */*", host=None), 400, "no_name"),
    "no_route": (_bad("GET /bad HTTP/1.1", host="c.gk.test"), 421, "no_route"),
}

# A refusal of a later request: the earlier ones are answered first.  A
# silent second request is the keep-alive timeout, not a refusal.
REFUSAL_CASES = [(c, "first") for c in sorted(REFUSALS)] + \
                [(c, "pipelined") for c in sorted(REFUSALS) if c != "silent"]

REFUSAL_HTTP = {"header_timeout": "1s", "max_header_size": "4k"}


def check_refusal(resp, status, reason):
    """The refusal format: status line, text/plain, Content-Length,
    X-Gatekeeper-Reason (reason: one name or a set), Connection: close, and
    a `gatekeeper: ...` line as the body."""
    reasons = {reason} if isinstance(reason, str) else set(reason)
    assert resp.status_line == "HTTP/1.1 %d %s" % (status, PHRASES[status]), resp
    assert resp.header("X-Gatekeeper-Reason") in reasons, resp
    assert (resp.header("Content-Type") or "").split(";")[0].strip() == "text/plain", resp
    assert (resp.header("Connection") or "").lower() == "close", resp
    assert resp.header("Content-Length") is not None, resp
    assert resp.body.startswith(b"gatekeeper: ") and resp.body.endswith(b"\n"), resp


@pytest.mark.parametrize("case,where", REFUSAL_CASES)
def test_refusals(gk, origin, case, where):
    data, status, reason = REFUSALS[case]
    reasons = {reason} if isinstance(reason, str) else set(reason)
    if case == "no_route" and where == "pipelined":
        # a later request whose Host matches no route: the table's no_route,
        # or the 421 for a Host that does not route to this connection's upstream
        reasons.add("misdirected")
    o = origin("O")
    g = gk(http_config(http_listener("web", routes=[([A], o.addr)], http=REFUSAL_HTTP)))
    addr = g.addr("web")

    c = Client(addr, timeout=20)
    good = req(A, "/good1")
    c.send_quiet((good if where == "pipelined" else b"") + data)
    if where == "pipelined":
        first = c.response()
        assert first.status == 200 and first.field("Name") == "O", first
        assert b"GET /good1 " in first.body
    r = c.response()
    check_refusal(r, status, reasons)
    rest, how = c.until_closed()
    assert rest == b"", "bytes after the refusal: %r" % rest[:200]
    assert how in ("eof", "reset")
    c.close()

    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] == r.header("X-Gatekeeper-Reason"), acc
    assert acc["requests"] == ("1" if where == "pipelined" else "0"), acc

    # the backend never received the refused request
    marker = b"CONNECT" if case == "connect" else b"/bad"
    assert marker not in o.raw(), o.raw()[:500]
    if where == "first":
        assert o.raw() == b"", o.raw()[:500]
    else:
        assert o.paths() == ["/good1"]

    # a fresh connection still gets a normal 200
    r = get_ok(addr)
    assert r.field("Name") == "O"
    assert g.alive()


def test_head_just_under_max_header_size_passes(gk, origin):
    o = origin("O")
    g = gk(http_config(http_listener("web", routes=[([A], o.addr)], http=REFUSAL_HTTP),
                       http_listener("default", routes=[([A], o.addr)])))
    with Client(g.addr("web")) as c:
        c.send(req(A, "/fits", extra=["X-Big: " + "a" * 3000]))
        assert c.response().status == 200
    # the default is 16k
    with Client(g.addr("default")) as c:
        c.send(req(A, "/fits", extra=["X-Big: " + "a" * 15000]))
        assert c.response().status == 200
    with Client(g.addr("default")) as c:
        c.send_quiet(req(A, "/bad", extra=["X-Big: " + "a" * 17000]))
        check_refusal(c.response(), 431, "too_large")
        c.until_closed()
    assert o.paths() == ["/fits", "/fits"]


BAD_BODIES = {
    "not_hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "0x_prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "overflow": b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "no_crlf_after_data": b"5\r\nhelloXX0\r\n\r\n",
    "bare_lf_size": b"5\nhello\r\n0\r\n\r\n",
    "empty_size": b"\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_chunk_framing_closes_without_response(gk, origin, case):
    o = origin("O")
    g = gk(http_config(http_listener("web", routes=[([A], o.addr)], http=REFUSAL_HTTP)))
    addr = g.addr("web")
    c = Client(addr, timeout=20)
    c.send_quiet(req(A, "/badbody", method="POST", extra=["Transfer-Encoding: chunked"]) + BAD_BODIES[case]
                 + req(A, "/bad"))
    rest, how = c.until_closed()
    assert rest == b"", "a chunk framing error gets no response: %r" % rest[:300]
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] == "malformed_body", acc
    assert b"/bad " not in o.raw()
    assert len(o.requests) == 0, "the backend completed a request with a bad body"
    get_ok(addr)
    assert g.alive()


@pytest.mark.parametrize("case", ["dead", "nx", "hole"])
def test_upstream_failures(gk, origin, blackhole, dns, case):
    o = origin("O")
    hole = blackhole()
    dead = "127.0.0.1:%d" % h.free_port()
    g = gk(http_config(http_listener("web", connect_timeout="1s", routes=[
        ([A], o.addr), (["dead.gk.test"], dead), (["nx.gk.test"], "nx.gk.test:80"),
        (["hole.gk.test"], hole.addr)]), nameservers=[dns.nameserver]))
    addr = g.addr("web")
    status, reason = {"dead": (502, "connect_failed"), "nx": (503, "no_address"),
                      "hole": (504, "connect_timeout")}[case]
    c = Client(addr, timeout=20)
    c.send(req("%s.gk.test" % case, "/x"))
    check_refusal(c.response(), status, reason)
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] == reason and acc["requests"] == "0", acc
    get_ok(addr)
    assert o.paths() == ["/good"]


def test_full_listener_answers_503_and_recovers(gk, origin):
    """max_connections reached: an HTTP client gets 503 (reason full) after
    its head instead of waiting in the backlog; the connections already in
    keep working, and once one closes a new client is served."""
    o = origin("O")
    g = gk(http_config(http_listener("web", routes=[([A], o.addr)], max_connections=2)))
    addr = g.addr("web")
    held = [Client(addr) for _ in range(2)]
    for i, c in enumerate(held):
        c.send(req(A, "/held%d" % i))
        assert c.response().status == 200
    extra = Client(addr, timeout=20)
    extra.send(req(A, "/over"))
    check_refusal(extra.response(), 503, "full")
    rest, how = extra.until_closed()
    assert rest == b""
    extra.close()
    acc = g.wait_access_for(extra.local, timeout=20)
    assert acc["reason"] == "full" and acc["requests"] == "0", acc
    assert b"/over" not in o.raw()
    # the two inside still work
    held[0].send(req(A, "/again"))
    assert held[0].response().status == 200
    # one leaves: the next client is served
    held[1].close()
    g.wait_access_for(held[1].local, timeout=20)
    assert get_ok(addr).status == 200
    held[0].close()


# --------------------------------------------------------------------------
# 7. A later request for another upstream

@pytest.mark.parametrize("pipelined", [False, True], ids=["sequential", "pipelined"])
def test_misdirected_later_request(gk, whoami, origin, pipelined):
    wa = whoami(name="A")
    ob = origin("B")
    g = gk(http_config(http_listener("web", routes=[([A, "a2.gk.test"], wa.addr), ([B], ob.addr)])))
    addr = g.addr("web")
    c = Client(addr)
    r1, r2, r3 = req(A, "/one"), req("a2.gk.test", "/same-upstream"), req(B, "/bad")
    if pipelined:
        c.send(r1 + r2 + r3)
    else:
        c.send(r1)
    got = c.response()
    assert got.status == 200 and got.field("Name") == "A" and b"GET /one " in got.body, got
    if not pipelined:
        c.send(r2)
    # another name, same upstream: fine
    got = c.response()
    assert got.status == 200 and got.field("Name") == "A" and b"GET /same-upstream " in got.body, got
    if not pipelined:
        c.send_quiet(r3)
    check_refusal(c.response(), 421, "misdirected")
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    assert ob.accepted == 0 and ob.raw() == b"", "B saw something"
    acc = g.wait_access_for(c.local)
    assert acc["reason"] == "misdirected" and acc["requests"] == "2", acc
    assert acc["upstream"] == wa.addr, acc
    # B is reachable on a connection of its own
    assert get_ok(addr, host=B).field("Name") == "B"


# --------------------------------------------------------------------------
# 8. header_timeout

def dribble(c, data, pause=0.3, limit=120):
    """Send data one byte per `pause` seconds until gatekeeper answers or
    closes.  Returns the number of bytes sent; fails if all were sent."""
    deadline = time.monotonic() + limit
    for i in range(len(data)):
        if time.monotonic() > deadline:
            break
        try:
            c.sock.send(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return i
        r, _, _ = select.select([c.sock], [], [], pause)
        if r:
            return i + 1
    raise AssertionError("the whole %d-byte head went out one byte at a time without an answer" % len(data))


SLOW_HEAD = req(A, "/bad", extra=["X-Pad-%d: %s" % (i, "p" * 40) for i in range(10)])


def test_header_timeout_on_the_first_request(gk, origin):
    o = origin("O")
    g = gk(http_config(http_listener("web", upstream=o.addr, http={"header_timeout": "1s"})))
    addr = g.addr("web")
    c = Client(addr, timeout=30)
    n = dribble(c, SLOW_HEAD)
    assert n < len(SLOW_HEAD)
    check_refusal(c.response(), 408, "header_timeout")
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] == "header_timeout" and acc["requests"] == "0", acc
    assert o.raw() == b""
    get_ok(addr)


def test_header_timeout_on_a_later_request(gk, origin):
    o = origin("O")
    g = gk(http_config(http_listener("web", upstream=o.addr,
                                     http={"header_timeout": "1s", "keepalive_timeout": "60s"})))
    addr = g.addr("web")
    c = Client(addr, timeout=30)
    c.send(req(A, "/first"))
    assert c.response().status == 200
    dribble(c, SLOW_HEAD)
    check_refusal(c.response(), 408, "header_timeout")
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] == "header_timeout" and acc["requests"] == "1", acc
    assert o.paths() == ["/first"] and b"/bad" not in o.raw()
    get_ok(addr)


# --------------------------------------------------------------------------
# 9. keepalive_timeout

def test_keepalive_timeout_closes_an_idle_connection_silently(gk, origin):
    o = origin("O")
    g = gk(http_config(http_listener("web", upstream=o.addr,
                                     http={"keepalive_timeout": "1s", "header_timeout": "60s"})))
    addr = g.addr("web")
    c = Client(addr, timeout=30)
    c.send(req(A, "/only"))
    assert c.response().status == 200
    rest, how = c.until_closed(timeout=30)
    assert rest == b"", "an idle keep-alive connection is closed without a response: %r" % rest[:200]
    assert how == "eof"
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["requests"] == "1", acc
    # the upstream connection went with it
    deadline = time.monotonic() + 20
    while o.srv.active() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert o.srv.active() == 0
    get_ok(addr)


# --------------------------------------------------------------------------
# 10. max_requests_per_connection

def test_max_requests_per_connection_sequential(gk, whoami):
    wa = whoami(name="A")
    g = gk(http_config(http_listener("web", upstream=wa.addr, http={"max_requests_per_connection": 3})))
    c = Client(g.addr("web"))
    for i in (1, 2, 3):
        c.send(req(A, "/m%d" % i))
        r = c.response()
        assert r.status == 200, r
        _, lines = head_lines(forwarded_head(r))
        conn = [v.lower() for v in values(lines, "connection")]
        assert conn == (["close"] if i == 3 else []), (i, lines)
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    assert g.wait_access_for(c.local)["requests"] == "3"


def test_max_requests_per_connection_pipelined(gk, origin):
    o = origin("O")
    g = gk(http_config(http_listener("web", upstream=o.addr, http={"max_requests_per_connection": 3})))
    addr = g.addr("web")
    c = Client(addr)
    c.send_quiet(b"".join(req(A, "/m%d" % i) for i in (1, 2, 3, 4)))
    for i in (1, 2, 3):
        r = c.response()
        assert r.status == 200 and b"GET /m%d " % i in r.body, (i, r)
    rest, how = c.until_closed()
    assert rest == b"", "nothing after the third response: %r" % rest[:200]
    c.close()
    reqs = o.wait_requests(3)
    assert o.paths() == ["/m1", "/m2", "/m3"], o.paths()
    assert b"/m4" not in o.raw()
    _, lines = head_lines(reqs[2]["head"])
    assert [v.lower() for v in values(lines, "connection")] == ["close"]
    assert g.wait_access_for(c.local)["requests"] == "3"
    get_ok(addr)


def test_max_requests_zero_means_no_limit(gk, origin):
    o = origin("O")
    g = gk(http_config(http_listener("web", upstream=o.addr, http={"max_requests_per_connection": 0})))
    c = Client(g.addr("web"))
    n = 1100  # above the default of 1000
    c.send(b"".join(req(A, "/z%d" % i) for i in range(n)))
    for i in range(n):
        assert c.response().status == 200
    c.send(req(A, "/last"))
    assert c.response().status == 200
    c.close()
    assert g.wait_access_for(c.local, timeout=20)["requests"] == str(n + 1)
    reqs = o.wait_requests(n + 1)
    assert all(not values(head_lines(r["head"])[1], "connection") for r in reqs), \
        "a Connection header was sent upstream although there is no limit"


# --------------------------------------------------------------------------
# 11. CONNECT; HTTP/1.0 without Host

def test_connect_is_refused_with_405(single):
    g, addr, wa = single
    c = Client(addr)
    c.send(b"CONNECT a.gk.test:443 HTTP/1.1\r\nHost: a.gk.test:443\r\n\r\n")
    check_refusal(c.response(), 405, "bad_method")
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    assert g.wait_access_for(c.local)["reason"] == "bad_method"
    get_ok(addr)


def test_http10_without_host_goes_to_the_listener_upstream(gk, whoami):
    wa, wb = whoami(name="A"), whoami(name="B")
    g = gk(http_config(http_listener("fb", upstream=wa.addr, routes=[([B], wb.addr)]),
                       http_listener("routesonly", routes=[([B], wb.addr)])))
    c = Client(g.addr("fb"))
    c.send(b"GET /old HTTP/1.0\r\nUser-Agent: raw\r\n\r\n")
    r = c.response()
    assert r.status == 200 and r.field("Name") == "A", r
    reqline, lines = head_lines(forwarded_head(r))
    assert reqline == b"GET /old HTTP/1.0"
    assert values(lines, "x-forwarded-for") == [C4] and values(lines, "x-real-ip") == [C4], lines
    assert [v.lower() for v in values(lines, "connection")] == ["close"], lines
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    assert g.wait_access_for(c.local)["requests"] == "1"
    # without a listener upstream there is nowhere to send it
    c = Client(g.addr("routesonly"))
    c.send(b"GET /old HTTP/1.0\r\nUser-Agent: raw\r\n\r\n")
    check_refusal(c.response(), 400, "no_name")
    c.until_closed()
    c.close()


# --------------------------------------------------------------------------
# 12. requests=N in the access line

def test_access_line_counts_requests(single):
    g, addr, wa = single
    c = Client(addr)
    for i in range(4):
        c.send(req(A, "/n%d" % i))
        assert c.response().status == 200
    c.close()
    acc = g.wait_access_for(c.local)
    assert acc["requests"] == "4", acc
    assert acc["reason"] == "closed" and acc["decision"] == "allow", acc
    # a connection that closes before any request
    c = Client(addr)
    c.sock.shutdown(socket.SHUT_WR)
    c.until_closed()
    c.close()
    assert g.wait_access_for(c.local)["requests"] == "0"


# --------------------------------------------------------------------------
# Config rules for the http block

def test_http_block_config_rules(tmp_path):
    def check(text):
        path = h.write_config(text, tmp_path)
        return path, h.run_gatekeeper(["-t", "-c", path])

    # not on a tcp listener
    path, r = check(t.config(t.listener("raw", "tcp", upstream="127.0.0.1:1") + "    http:\n      trusted: []\n"))
    assert r.returncode != 0, r.stderr
    assert re.search(r"%s:\d+:\d+: " % re.escape(os.path.basename(path)), r.stderr), r.stderr

    # a typo gets a suggestion
    path, r = check(http_config(http_listener("web", upstream="127.0.0.1:1", http={"header_timout": "1s"})))
    assert r.returncode != 0
    assert "did you mean 'header_timeout'" in r.stderr, r.stderr
    assert re.search(r"%s:\d+:\d+: " % re.escape(os.path.basename(path)), r.stderr), r.stderr

    # max_header_size stays within 1k..64k
    for bad in ("512", "100k"):
        path, r = check(http_config(http_listener("web", upstream="127.0.0.1:1", http={"max_header_size": bad})))
        assert r.returncode != 0, (bad, r.stderr)

    # every key, valid
    path, r = check(http_config(http_listener("web", upstream="127.0.0.1:1", http={
        "trusted": ["127.0.0.0/8", "::1"], "x_forwarded_for": True, "x_forwarded_proto": False,
        "x_forwarded_host": True, "x_real_ip": False, "forwarded": True, "max_header_size": "64k",
        "header_timeout": "2s", "keepalive_timeout": "75s", "max_requests_per_connection": 0})))
    assert r.returncode == 0, r.stderr
