"""mode http under attack: request smuggling through the Connection header,
`_` spellings of framing headers, `Upgrade: h2c`, a `101` nobody asked for,
and forwarding headers from peers that are not trusted.

Each attack is sent as raw bytes and checked on the wire and at the backend:

- A request whose Connection header names a header gatekeeper frames,
  routes or rewrites on (Content-Length, Transfer-Encoding, Host, the
  forwarding headers, and their `_` spellings), in any case, position or
  number of Connection lines, is refused: `400 Bad Request`,
  `X-Gatekeeper-Reason: smuggling`, `Connection: close`, then the
  connection closes; the access line says `reason=smuggling`; the recording
  backend (`Origin`) received nothing of that request and nothing after it;
  a fresh connection still gets a normal 200. That holds for the first
  request and for a later one on a kept-alive connection (sequential,
  pipelined, HTTP/1.0 keep-alive), with Content-Length and chunked bodies.
- A header spelled `Content_Length` / `Transfer_Encoding` (any case) is
  refused the same way: a backend that reads `_` as `-` would frame the
  body differently from gatekeeper.
- `Upgrade: h2c` never goes up: the backend (whoami, whose `/` report ends
  with the request head exactly as received) sees a plain HTTP/1.1 request;
  `Upgrade: websocket, h2c` keeps websocket only, and websockets still work.
- A `101` answering a request that did not ask to upgrade, or switching to
  a protocol the request did not offer, gets the client `502 Bad Gateway`
  (`bad_response`), never the 101, and the connection does not turn into a
  raw relay. A response nobody asked for stops the stream, and the session
  still ends when both sides close.
- From an untrusted peer every incoming forwarding header, and every other
  header naming the client's address (Client-IP, True-Client-IP, ...), is
  removed, whatever the switches say; `_` spellings are removed from anybody.
- On an egress http listener, a request smuggled inside another names a
  host that is not allowed: that Host never reaches a backend.

All traffic stays on 127.0.0.0/8. Waits are upper bounds only; nothing
asserts a duration.
"""

import threading
import time

import pytest

import gkharness as h
import test_http
import tlsutil as t
from test_http import (
    A,
    C4,
    Origin,
    check_refusal,
    forwarded_head,
    fwd_norm,
    get_ok,
    head_lines,
    hname,
    hval,
    http_listener,
    req,
    values,
    ws_frame,
    ws_handshake,
    ws_read,
)

def http_config(*listeners, nameservers=None):
    """test_http's config, with drain_timeout 0: when a test fails halfway,
    gatekeeper's stop at teardown does not wait for the connections it left open."""
    return t.config(*listeners, defaults={"drain_timeout": "0"}, nameservers=nameservers)


_OPEN = []


class Client(test_http.Client):
    """test_http's raw client, closed at the end of the test even when an
    assertion stopped it halfway (an open client would hold gatekeeper's
    shutdown in its drain)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        _OPEN.append(self)


@pytest.fixture(autouse=True)
def _clients_closed_before_gatekeeper_stops(gk):
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def backends():
    """backends(handler, host=..., port=...) -> a gkharness.HandlerServer.
    At teardown they are closed in the background: their accept loops poll
    every 0.2 s, and several hundred tests should not wait for each one."""
    made = []

    def make(handler, **kw):
        s = h.HandlerServer(handler, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        threading.Thread(target=s.close, daemon=True).start()


@pytest.fixture
def origin(backends):
    """origin(name, **kw) -> test_http.Origin (a recording HTTP origin)."""
    def make(name="B", **kw):
        return Origin(backends, name, **kw)
    return make


# The request an attacker hides inside the body of another one.
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a.gk.test\r\nX-Smuggled: yes\r\n\r\n"
MARKERS = (b"/bad", b"/smuggled", b"X-Smuggled", b"/after")


def chunked(data):
    """data as one chunk plus the last chunk."""
    return b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n"


def token_list(lines, name):
    """The comma-list elements of every `name` header line, lower case."""
    return [t.strip(" \t").lower() for v in values(lines, name) for t in v.split(",") if t.strip(" \t")]


def settle(*servers, timeout=15):
    """Wait (bounded) until the backends hold no connection, so every byte
    gatekeeper sent them has been read and recorded."""
    deadline = time.monotonic() + timeout
    for s in servers:
        srv = getattr(s, "srv", s)
        while srv.active() and time.monotonic() < deadline:
            time.sleep(0.02)


# --------------------------------------------------------------------------
# The refused request and the ways to deliver it

GOOD = req(A, "/good1")
GOOD10 = req(A, "/good1", version="1.0", extra=["Connection: keep-alive"])

# first: the refused request opens the connection; later: it follows an
# answered request; pipelined: it is sent together with the one before it;
# http10_*: HTTP/1.0 keep-alive requests.
WHERES = ("first", "later", "pipelined", "http10_first", "http10_later")


def deliver(g, o, addr, make_bad, where, reason="smuggling"):
    """Send the bad request (make_bad(version) -> bytes) as `where` says and
    check everything the refusal must do: the 400 with reason, Connection:
    close and the close; the access line; the backend saw at most the good
    request before it, byte for byte, and nothing after; a fresh connection
    still gets a 200."""
    version = "1.0" if where.startswith("http10") else "1.1"
    bad = make_bad(version)
    before = GOOD10 if version == "1.0" else GOOD
    c = Client(addr, timeout=20)
    earlier = where in ("later", "pipelined", "http10_later")
    if where == "pipelined":
        c.send_quiet(before + bad)
    elif earlier:
        c.send(before)
    else:
        c.send_quiet(bad)
    if earlier:
        first = c.response()
        assert first.status == 200 and b"GET /good1 " in first.body, first
        if where != "pipelined":
            c.send_quiet(bad)
    r = c.response()
    forwarded = r.status == 200 and b"/bad" in r.body
    assert not forwarded, \
        "the smuggling request was forwarded and answered:\n%s" % r.raw.decode("latin-1")
    check_refusal(r, 400, reason)
    rest, how = c.until_closed()
    assert rest == b"", "bytes after the refusal: %r" % rest[:300]
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] == reason, acc
    assert acc["requests"] == ("1" if earlier else "0"), acc
    settle(o)
    raw = o.raw()
    for m in MARKERS:
        assert m not in raw, "the backend received %r:\n%s" % (m, raw[:800].decode("latin-1"))
    if earlier:
        assert len(o.requests) == 1, o.requests
        assert raw == o.requests[0]["head"], \
            "the backend got more than the request before the refused one:\n%r" % raw[:800]
    else:
        assert raw == b"", "the backend received bytes of a refused first request: %r" % raw[:800]
    assert get_ok(addr).field("Name") == "O"
    assert g.alive()


@pytest.fixture
def web(gk, origin):
    """A mode http listener routing a.gk.test to a recording origin "O"."""
    o = origin("O")
    g = gk(http_config(http_listener("web", routes=[([A], o.addr)],
                                     http={"header_timeout": "5s", "keepalive_timeout": "30s"})))
    return g, g.addr("web"), o


# --------------------------------------------------------------------------
# 1. Connection naming a header gatekeeper frames, routes or rewrites on

# name in Connection -> (framing of the request, a header line of that name
# the request also carries, or None)
CONNECTION_NAMES = {
    "content-length": ("cl", None),
    "transfer-encoding": ("chunked", None),
    "host": ("cl", None),
    "x-forwarded-for": ("cl", "X-Forwarded-For: 6.6.6.6"),
    "x-forwarded-proto": ("cl", "X-Forwarded-Proto: https"),
    "x-forwarded-host": ("cl", "X-Forwarded-Host: evil.example"),
    "x-real-ip": ("cl", "X-Real-IP: 6.6.6.6"),
    "forwarded": ("cl", "Forwarded: for=6.6.6.6"),
    # `_` for `-`: the same headers to a backend that folds them
    "content_length": ("cl", None),
    "Transfer_Encoding": ("chunked", None),
    "X_Forwarded_For": ("cl", None),
    "x_forwarded_proto": ("cl", None),
    "X_FORWARDED_HOST": ("cl", None),
    "x_real_ip": ("cl", None),
    "X-Real_IP": ("cl", None),
    "x-forwarded_for": ("cl", None),
    "Content_Length": ("chunked", None),
}


def conn_request(conn_lines, framing, version="1.1", named=None, conn_after=False, extra=()):
    """POST /bad carrying SMUGGLED as its body, framed by framing ("cl" or
    "chunked"), with the Connection lines before (or after) the framing
    header.  HTTP/1.0 requests ask for keep-alive on a line of their own."""
    conn = list(conn_lines)
    if version == "1.0":
        conn = ["Connection: keep-alive"] + conn
    if framing == "cl":
        frame, body = ["Content-Length: %d" % len(SMUGGLED)], SMUGGLED
    else:
        frame, body = ["Transfer-Encoding: chunked"], chunked(SMUGGLED)
    lines = ["User-Agent: attacker"] + list(extra) + ([named] if named else [])
    lines += (frame + conn) if conn_after else (conn + frame)
    return req(A, "/bad", method="POST", version=version, extra=lines, body=body)


def _name_cases():
    out = []
    for name, (framing, _) in CONNECTION_NAMES.items():
        for where in WHERES:
            if framing == "chunked" and where.startswith("http10"):
                continue  # chunked in HTTP/1.0 is refused on its own already
            out.append(pytest.param(name, where, id="%s-%s" % (name, where)))
    return out


@pytest.mark.parametrize("name,where", _name_cases())
def test_connection_naming_a_framing_routing_or_forwarding_header(web, name, where):
    """Attack: `Connection: <name>` asks the next hop to drop <name>, so a
    backend would lose the Content-Length / Transfer-Encoding gatekeeper
    framed the body with (the body then reads as a second request), the Host
    it routed on, or the forwarding headers it wrote.  Must: 400 smuggling,
    Connection: close, closed, nothing of it (or after it) at the backend."""
    g, addr, o = web
    framing, named = CONNECTION_NAMES[name]
    deliver(g, o, addr, lambda v: conn_request(["Connection: %s" % name], framing, v, named=named), where)


# spelling of the Connection header(s) -> the lines, with N for the name
SPELLINGS = {
    "upper": ["Connection: {U}"],
    "title": ["Connection: {T}"],
    "first_of_list": ["Connection: {N}, keep-alive"],
    "middle_of_list": ["Connection: foo, {N}, bar"],
    "last_of_list": ["Connection: keep-alive, foo, {N}"],
    "no_ows": ["Connection:{N}"],
    "no_ows_list": ["Connection:foo,{N},bar"],
    "tabs": ["Connection:\t{N}\t"],
    "wide_ows": ["Connection:   foo ,\t {N} \t, bar  "],
    "empty_elements": ["Connection: , ,{N},,"],
    "with_close": ["Connection: close, {N}"],
    "second_line": ["Connection: keep-alive", "Connection: {N}"],
    "third_line": ["Connection: foo", "Connection: bar", "connection: {U}"],
    "lower_header_name": ["connection: {N}"],
    "upper_header_name": ["CONNECTION: {N}"],
    "after_framing_header": ["Connection: {N}"],  # placed after Content-Length / Transfer-Encoding
    "with_upgrade": ["Connection: Upgrade, {N}"],  # plus Upgrade: websocket
}


def _spelled(spelling, name):
    return [l.format(N=name, U=name.upper(), T="-".join(p.capitalize() for p in name.split("-")))
            for l in SPELLINGS[spelling]]


def _spelling_cases():
    out = []
    for spelling in SPELLINGS:
        for name, wheres in (("content-length", ("first", "later", "http10_later")),
                             ("transfer-encoding", ("first", "later")),
                             ("host", ("first", "pipelined")),
                             ("x-forwarded-for", ("first", "later"))):
            for where in wheres:
                out.append(pytest.param(spelling, name, where, id="%s-%s-%s" % (spelling, name, where)))
    return out


@pytest.mark.parametrize("spelling,name,where", _spelling_cases())
def test_connection_name_in_every_spelling(web, spelling, name, where):
    """Attack: the same Connection smuggle written every way a list may be
    written: any case, first/middle/last in the list, no or odd OWS, empty
    elements, several Connection lines, before or after the framing header,
    next to `close` or `Upgrade`.  Must: refused as smuggling each time."""
    g, addr, o = web
    framing, named = CONNECTION_NAMES[name]
    lines = _spelled(spelling, name)
    extra = ["Upgrade: websocket", "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==",
             "Sec-WebSocket-Version: 13"] if spelling == "with_upgrade" else ()
    deliver(g, o, addr, lambda v: conn_request(lines, framing, v, named=named, extra=extra,
                                               conn_after=spelling == "after_framing_header"), where)


def test_connection_smuggle_after_a_chunked_and_a_content_length_request(web):
    """Attack: two good requests with bodies (chunked, then Content-Length)
    go first, then `Connection: content-length` on the third.  Must: both
    answered, the third refused as smuggling, the backend has exactly the two
    good requests."""
    g, addr, o = web
    c = Client(addr, timeout=20)
    c.send(req(A, "/good-chunked", method="POST", extra=["Transfer-Encoding: chunked"], body=chunked(b"hello")))
    assert c.response().status == 200
    c.send(req(A, "/good-cl", method="POST", extra=["Content-Length: 5"], body=b"world"))
    assert c.response().status == 200
    c.send_quiet(conn_request(["Connection: keep-alive, Content-Length"], "cl"))
    r = c.response()
    assert r.status != 200, "the smuggling request was forwarded and answered:\n%s" % r.raw.decode("latin-1")
    check_refusal(r, 400, "smuggling")
    rest, how = c.until_closed()
    assert rest == b""
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] == "smuggling" and acc["requests"] == "2", acc
    settle(o)
    assert o.paths() == ["/good-chunked", "/good-cl"], o.paths()
    assert [r["body"] for r in o.requests] == [b"hello", b"world"]
    for m in MARKERS:
        assert m not in o.raw()
    get_ok(addr)


def test_connection_naming_harmless_headers_still_works(web):
    """Control: Connection naming an ordinary hop-by-hop header (`foo`,
    `Keep-Alive`) is not an attack: the request goes up without them and
    the connection stays usable."""
    g, addr, o = web
    c = Client(addr)
    c.send(req(A, "/ctl", method="POST", extra=["Connection: foo, Keep-Alive", "Foo: 1",
                                                 "Keep-Alive: timeout=5", "Content-Length: 5"], body=b"hello"))
    r = c.response()
    assert r.status == 200, r
    c.send(req(A, "/ctl2"))
    assert c.response().status == 200
    c.close()
    reqs = o.wait_requests(2)
    _, lines = head_lines(reqs[0]["head"])
    assert not values(lines, "foo") and not values(lines, "keep-alive"), lines
    assert reqs[0]["body"] == b"hello"


# --------------------------------------------------------------------------
# 2. Content_Length / Transfer_Encoding header names

def _u(*lines, body=SMUGGLED):
    return lambda version: req(A, "/bad", method="POST", version=version,
                               extra=["User-Agent: attacker"] + list(lines), body=body)


UNDERSCORE_FRAMING = {
    # alone: gatekeeper sees no body, a folding backend a body
    "Content_Length": (_u("Content_Length: %d" % len(SMUGGLED)), True),
    "content_length": (_u("content_length: %d" % len(SMUGGLED)), True),
    "CONTENT_LENGTH": (_u("CONTENT_LENGTH: %d" % len(SMUGGLED)), True),
    "Content_length_zero": (_u("Content_length: 0", body=b""), True),
    "Transfer_Encoding": (_u("Transfer_Encoding: chunked", body=chunked(SMUGGLED)), True),
    "transfer_encoding": (_u("transfer_encoding: chunked", body=chunked(SMUGGLED)), True),
    "TRANSFER_ENCODING_identity": (_u("TRANSFER_ENCODING: identity"), True),
    # next to the real one
    "cl_and_Content_Length_same": (_u("Content-Length: %d" % len(SMUGGLED),
                                      "Content_Length: %d" % len(SMUGGLED)), True),
    "cl_and_Content_Length_differ": (_u("Content-Length: %d" % len(SMUGGLED), "Content_Length: 0"), True),
    "Content_Length_and_cl": (_u("Content_Length: 0", "Content-Length: %d" % len(SMUGGLED)), True),
    "cl_and_Transfer_Encoding": (_u("Content-Length: %d" % len(SMUGGLED), "Transfer_Encoding: chunked"), True),
    "te_and_Content_Length": (_u("Transfer-Encoding: chunked", "Content_Length: 3", body=chunked(SMUGGLED)),
                              False),
    "te_and_Transfer_Encoding": (_u("Transfer-Encoding: chunked", "Transfer_Encoding: chunked",
                                    body=chunked(SMUGGLED)), False),
}


def _underscore_cases():
    out = []
    for case, (_, http10) in UNDERSCORE_FRAMING.items():
        for where in WHERES:
            if where.startswith("http10") and not http10:
                continue
            out.append(pytest.param(case, where, id="%s-%s" % (case, where)))
    return out


@pytest.mark.parametrize("case,where", _underscore_cases())
def test_underscore_spelling_of_a_framing_header(web, case, where):
    """Attack: `Content_Length` / `Transfer_Encoding` (any case) is no
    framing header to gatekeeper, but CGI/WSGI-style backends map `_` and `-`
    to the same variable: the two read different bodies.  Must: 400
    smuggling, closed, the backend gets nothing of it."""
    g, addr, o = web
    deliver(g, o, addr, UNDERSCORE_FRAMING[case][0], where)


# --------------------------------------------------------------------------
# 3. Upgrade: h2c

SETTINGS = "AAMAAABkAARAAAAAAAIAAAAA"

# Connection / Upgrade / HTTP2-Settings lines of an h2c upgrade request
H2C = {
    "canonical": ["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: " + SETTINGS],
    "upper": ["CONNECTION: UPGRADE, HTTP2-SETTINGS", "UPGRADE: H2C", "HTTP2-SETTINGS: " + SETTINGS],
    "no_ows": ["connection:upgrade,http2-settings", "upgrade:h2c", "http2-settings:" + SETTINGS],
    "odd_ows": ["Connection: \tUpgrade ,\tHTTP2-Settings\t", "Upgrade: \t h2c \t", "HTTP2-Settings: " + SETTINGS],
    "two_connection_lines": ["Connection: Upgrade", "Connection: HTTP2-Settings", "Upgrade: h2c",
                             "HTTP2-Settings: " + SETTINGS],
    "keep_alive_first": ["Connection: keep-alive, Upgrade, HTTP2-Settings", "Upgrade: h2c",
                         "HTTP2-Settings: " + SETTINGS],
    "upgrade_before_connection": ["Upgrade: h2c", "HTTP2-Settings: " + SETTINGS,
                                  "Connection: HTTP2-Settings, Upgrade"],
    "h2c_twice": ["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c, H2C", "HTTP2-Settings: " + SETTINGS],
    "two_upgrade_lines": ["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "Upgrade: h2c",
                          "HTTP2-Settings: " + SETTINGS],
    "empty_elements": ["Connection: Upgrade, HTTP2-Settings", "Upgrade: , h2c ,", "HTTP2-Settings: " + SETTINGS],
    "settings_not_named": ["Connection: Upgrade", "Upgrade: h2c", "HTTP2-Settings: " + SETTINGS],
}


@pytest.mark.parametrize("case", sorted(H2C))
def test_h2c_upgrade_goes_up_as_plain_http11(gk, whoami, case):
    """Attack: `Upgrade: h2c` turns the connection into HTTP/2 after a 101,
    past gatekeeper's per-request routing and header rewriting.  Must: the
    backend gets a plain HTTP/1.1 request (no Upgrade, no HTTP2-Settings,
    no `upgrade` in Connection), the client a plain HTTP/1.1 response, and
    the next request on the connection is still parsed and rewritten."""
    wa = whoami(name="A")
    g = gk(http_config(http_listener("web", upstream=wa.addr)))
    c = Client(g.addr("web"))
    c.send(req(A, "/h2c", extra=["User-Agent: attacker"] + H2C[case]))
    r = c.response()
    assert r.status_line == "HTTP/1.1 200 OK", r
    head = forwarded_head(r)
    _, lines = head_lines(head)
    assert not values(lines, "upgrade"), "Upgrade reached the backend:\n%s" % head.decode("latin-1")
    assert "upgrade" not in token_list(lines, "connection"), head.decode("latin-1")
    if case != "settings_not_named":
        assert not values(lines, "http2-settings"), "HTTP2-Settings reached the backend:\n%s" % head.decode()
    assert values(lines, "x-forwarded-for") == [C4], head
    # still HTTP: the next request is read as one and rewritten
    c.send(req(A, "/next", extra=["X-Forwarded-For: 6.6.6.6"]))
    r = c.response()
    assert r.status == 200, r
    _, lines = head_lines(forwarded_head(r))
    assert values(lines, "x-forwarded-for") == [C4], lines
    c.close()
    assert g.wait_access_for(c.local)["requests"] == "2"


# Upgrade lines that list h2c next to websocket
WS_H2C = {
    "websocket_h2c": ["Upgrade: websocket, h2c"],
    "h2c_websocket": ["Upgrade: h2c, websocket"],
    "upper_no_ows": ["Upgrade:H2C,websocket"],
    "h2c_line_then_websocket_line": ["Upgrade: h2c", "Upgrade: websocket"],
    "websocket_line_then_h2c_line": ["Upgrade: websocket", "Upgrade: h2c"],
    "with_http2_settings": ["Upgrade: websocket, h2c", "HTTP2-Settings: " + SETTINGS],
}


def _ws_request(upgrade_lines, conn="Connection: keep-alive, Upgrade"):
    key = "AAECAwQFBgcICQoLDA0ODw=="
    return req(A, "/chat", extra=list(upgrade_lines) + [
        conn if "HTTP2-Settings: " + SETTINGS not in upgrade_lines else conn + ", HTTP2-Settings",
        "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13", "Origin: http://a.gk.test"])


def _websocket_works(c, o):
    r = c.response()
    assert r.status == 101, r
    assert ws_read(c) == (True, 1, False, b"hello")
    c.send(ws_frame(1, b"ping through"))
    assert ws_read(c) == (True, 1, False, b"ping through")
    c.send(ws_frame(8, b""))
    assert ws_read(c)[1] == 8
    rest, how = c.until_closed()
    assert rest == b""
    return o.wait_requests(1)[0]["head"]


@pytest.mark.parametrize("case", sorted(WS_H2C))
def test_h2c_next_to_websocket_keeps_websocket_only(gk, origin, case):
    """Attack: h2c hidden in an Upgrade list next to websocket.  Must: the
    backend sees websocket as the only Upgrade token (no empty Upgrade
    line, no HTTP2-Settings), Connection: upgrade, and the websocket works."""
    o = origin("WS", upgrade="ws")
    g = gk(http_config(http_listener("web", upstream=o.addr)))
    c = Client(g.addr("web"))
    c.send(_ws_request(WS_H2C[case]))
    head = _websocket_works(c, o)
    c.close()
    _, lines = head_lines(head)
    assert token_list(lines, "upgrade") == ["websocket"], \
        "Upgrade tokens at the backend are not just websocket:\n%s" % head.decode("latin-1")
    assert all(hval(l).strip(" ,\t") for l in lines if hname(l) == "upgrade"), head.decode("latin-1")
    assert not values(lines, "http2-settings"), head.decode("latin-1")
    assert token_list(lines, "connection") == ["upgrade"], head.decode("latin-1")


def test_websocket_upgrade_alone_keeps_working(gk, origin):
    """Control: a plain `Upgrade: websocket` request is forwarded as an
    upgrade and the 101 turns the connection into a raw relay."""
    o = origin("WS", upgrade="ws")
    g = gk(http_config(http_listener("web", upstream=o.addr)))
    c = Client(g.addr("web"))
    c.send(_ws_request(["Upgrade: websocket"]))
    head = _websocket_works(c, o)
    c.close()
    _, lines = head_lines(head)
    assert values(lines, "upgrade") == ["websocket"], head
    assert token_list(lines, "connection") == ["upgrade"], head
    assert g.wait_access_for(c.local)["requests"] == "1"


# --------------------------------------------------------------------------
# 4. A 101 nobody asked for

class Switcher:
    """A raw upstream: a request head whose path starts with /ok gets a 200;
    any other gets `answer` (a 101 and, behind it, bytes of the "new
    protocol").  Every byte received is recorded, until EOF."""

    def __init__(self, backends, answer):
        self.answer = answer
        self._lock = threading.Lock()
        self._raw = []
        self.heads = []
        self.srv = backends(self._handle)
        self.addr = self.srv.addr

    def raw(self):
        with self._lock:
            return b"".join(bytes(r) for r in self._raw)

    def _handle(self, conn, server):
        conn.settimeout(30)
        raw = bytearray()
        with self._lock:
            self._raw.append(raw)
        buf = bytearray()
        switched = False
        while True:
            try:
                b = conn.recv(65536)
            except OSError:
                return
            if not b:
                return
            with self._lock:
                raw.extend(b)
            if switched:
                continue
            buf.extend(b)
            while b"\r\n\r\n" in buf:
                end = buf.find(b"\r\n\r\n") + 4
                head = bytes(buf[:end])
                del buf[:end]
                with self._lock:
                    self.heads.append(head)
                if head.split(b" ")[1].startswith(b"/ok"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
                else:
                    conn.sendall(self.answer)
                    switched = True
                    break


NEW_PROTOCOL = b"SERVER-SPEAKS-RAW\n"
ANSWERS_101 = {
    "upgrade_headers": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "bare": b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    "h2c": b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    "other": b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp-raw\r\n\r\n",
}

UNASKED = {
    # case: (answer, requests answered 200 before, the switching request's
    # bytes, the access line's requests= values allowed)
    "no_upgrade_asked": ("upgrade_headers", [], req(A, "/switch"), {"1"}),
    "bare_101": ("bare", [], req(A, "/switch"), {"1"}),
    "only_h2c_asked": ("h2c", [], req(A, "/switch", extra=H2C["canonical"]), {"1"}),
    "later_request": ("upgrade_headers", [req(A, "/ok1")], req(A, "/switch"), {"2"}),
    "http10_keepalive": ("upgrade_headers", [], req(A, "/switch", version="1.0",
                                                     extra=["Connection: keep-alive"]), {"1"}),
    # the 101 answers the plain request, not the upgrade request pipelined
    # behind it (which may or may not have gone up yet)
    "pipelined_before_an_upgrade": ("upgrade_headers", [], req(A, "/switch") + ws_handshake()[0], {"1", "2"}),
    # a websocket request answered with a switch to a protocol it did not offer
    "websocket_asked_h2c_given": ("h2c", [], ws_handshake()[0], {"1"}),
    "websocket_asked_other_given": ("other", [], ws_handshake()[0], {"1"}),
}


@pytest.mark.parametrize("case", sorted(UNASKED))
def test_unasked_101_is_a_bad_response(gk, backends, case):
    """Attack: a backend (or a smuggled request's answer) sends `101
    Switching Protocols` to a request that did not ask to upgrade (or asked
    only for h2c, which gatekeeper strips), to turn the connection raw.
    Must: the client gets 502 bad_response with Connection: close, never
    the 101 nor the bytes behind it; the connection closes; later client
    bytes never reach the backend."""
    answer, before, switching, counts = UNASKED[case]
    sw = Switcher(backends, ANSWERS_101[answer] + NEW_PROTOCOL)
    g = gk(http_config(http_listener("web", upstream=sw.addr)))
    c = Client(g.addr("web"), timeout=20)
    for b in before:
        c.send(b)
        assert c.response().status == 200
    c.send(switching)
    r = c.response()
    assert r.status != 101, "the client got the unasked-for 101:\n%r" % r.raw
    check_refusal(r, 502, "bad_response")
    # what the client sends now would be raw bytes for the backend
    c.send_quiet(b"RAW-AFTER-101 " + req(A, "/after"))
    rest, how = c.until_closed()
    assert NEW_PROTOCOL not in rest and rest == b"", "bytes after the 502: %r" % rest[:300]
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] == "bad_response", acc
    assert acc["requests"] in counts, acc
    settle(sw)
    raw = sw.raw()
    assert b"RAW-AFTER-101" not in raw and b"/after" not in raw, "client bytes after the 101 reached the backend"
    assert len(sw.heads) == len(before) + 1, sw.heads


def test_asked_websocket_101_still_switches(gk, backends):
    """Control: the same raw backend answering a websocket upgrade request:
    the client gets the 101 and the bytes behind it, and bytes both ways
    are relayed raw."""
    sw = Switcher(backends, ANSWERS_101["upgrade_headers"] + NEW_PROTOCOL)
    g = gk(http_config(http_listener("web", upstream=sw.addr)))
    c = Client(g.addr("web"), timeout=20)
    hs, _ = ws_handshake()
    c.send(hs)
    r = c.response()
    assert r.status == 101, r
    assert c.read_exact(len(NEW_PROTOCOL)) == NEW_PROTOCOL
    c.send(b"CLIENT-RAW")
    deadline = time.monotonic() + 15
    while b"CLIENT-RAW" not in sw.raw() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sw.raw().endswith(b"CLIENT-RAW"), sw.raw()[-200:]
    c.close()


# --------------------------------------------------------------------------
# 5. Forwarding headers

XFF, XFP, XFH, XRIP, FWD = "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "forwarded"
CANON = (XFF, XFP, XFH, XRIP, FWD)

CANONICAL_SENT = [
    "X-Forwarded-For: 6.6.6.1",
    "x-forwarded-for: 6.6.6.2, 6.6.6.3",
    "X-Forwarded-Proto: https",
    "X-Forwarded-Host: evil-xfh.example",
    "X-Real-IP: 6.6.6.4",
    "Forwarded: for=6.6.6.5;proto=https",
    "FORWARDED: for=6.6.6.6",
]
OTHER_XF_SENT = [
    "X-Forwarded-Port: 8443",
    "X-Forwarded-Server: evil-server.example",
    "x-forwarded-prefix: /evil-prefix",
    "X-FORWARDED-SSL: on",
]
UNDERSCORE_SENT = [
    "X_Forwarded_For: 6.6.7.1",
    "X-Forwarded_For: 6.6.7.2",
    "X-Real_IP: 6.6.7.3",
    "X_Real_Ip: 6.6.7.4",
    "x_forwarded_host: evil-underscore.example",
    "X_FORWARDED_PROTO: gopher",
    "X_Forwarded_Port: 6543",
]
NEUTRAL_SENT = ["Accept: */*", "X-Forwarding-Note: kept", "User-Agent: raw"]

ALL_ON = {"x_forwarded_for": True, "x_forwarded_proto": True, "x_forwarded_host": True,
          "x_real_ip": True, "forwarded": True}
SWITCHES = {
    "defaults": {},
    "x_forwarded_for_off": {"x_forwarded_for": False},
    "x_forwarded_proto_off": {"x_forwarded_proto": False},
    "x_forwarded_host_off": {"x_forwarded_host": False},
    "x_real_ip_off": {"x_real_ip": False},
    "forwarded_on": {"forwarded": True},
    "all_off": {k: False for k in ALL_ON},
    "all_on": ALL_ON,
}
DEFAULT_SWITCHES = {"x_forwarded_for": True, "x_forwarded_proto": True, "x_forwarded_host": True,
                    "x_real_ip": True, "forwarded": False}

# A `_` spelling whose fate from a trusted peer the rule leaves open: it folds
# to X-Forwarded-Port, which a trusted peer may send.
OPEN_FOR_TRUSTED = ("x_forwarded_port",)


def fwd_family(name):
    f = name.lower().replace("_", "-")
    return f in CANON or f.startswith("x-forwarded-")


def expected_head(sent, trusted, sw):
    """(header lines kept in place, (name, value) pairs appended) for the
    header lines `sent` (bytes), as the rule says."""
    kept = []
    for l in sent:
        n = hname(l)
        if not fwd_family(n):
            kept.append(l)
        elif "_" in n or not trusted:
            continue  # `_` spellings from anybody, every one from an untrusted peer
        elif n == XFF and sw["x_forwarded_for"]:
            continue  # joined into the new one
        elif n == FWD and sw["forwarded"]:
            continue
        else:
            kept.append(l)  # a trusted peer's canonical header: kept as today
    canon = lambda n: [hval(l) for l in sent if hname(l) == n and hval(l)]  # noqa: E731
    added = []
    if sw["x_forwarded_for"]:
        added.append((XFF, ", ".join(canon(XFF) + [C4]) if trusted else C4))
    if sw["x_forwarded_proto"] and not (trusted and canon(XFP)):
        added.append((XFP, "http"))
    if sw["x_forwarded_host"] and not (trusted and canon(XFH)):
        added.append((XFH, A))
    if sw["x_real_ip"] and not (trusted and canon(XRIP)):
        added.append((XRIP, C4))
    if sw["forwarded"]:
        mine = "for=%s;host=%s;proto=http" % (C4, A)
        added.append((FWD, fwd_norm(", ".join(canon(FWD) + [mine])) if trusted else mine))
    return kept, added


def check_forwarding(gk, whoami, switches, trusted, sent_lines):
    sw = dict(DEFAULT_SWITCHES, **SWITCHES[switches])
    wa = whoami(name="A")
    conf = dict(SWITCHES[switches])
    if trusted:
        conf["trusted"] = ["127.0.0.0/8"]
    g = gk(http_config(http_listener("web", upstream=wa.addr, http=conf or None)))
    sent = req(A, "/fwd", extra=sent_lines)
    with Client(g.addr("web")) as c:
        c.send(sent)
        r = c.response()
    assert r.status == 200, r
    head = forwarded_head(r)
    _, lines = head_lines(head)
    sent_h = head_lines(sent)[1]
    if trusted:
        lines = [l for l in lines if hname(l) not in OPEN_FOR_TRUSTED]
        sent_h = [l for l in sent_h if hname(l) not in OPEN_FOR_TRUSTED]
    kept, added = expected_head(sent_h, trusted, sw)
    who = "a trusted" if trusted else "an untrusted"
    text = head.decode("latin-1")
    leaked = [l.decode("latin-1") for l in lines[:len(lines) - len(added)]
              if fwd_family(hname(l)) and l not in kept]
    assert not leaked, "from %s peer (%s) these incoming headers reached the backend: %s\n%s" % (
        who, switches, leaked, text)
    assert lines[:len(kept)] == kept, "headers kept in place differ from %r:\n%s" % (
        [k.decode("latin-1") for k in kept], text)
    got_added = [(hname(l), fwd_norm(hval(l)) if hname(l) == FWD else hval(l)) for l in lines[len(kept):]]
    assert got_added == added, "headers gatekeeper added: %r, wanted %r:\n%s" % (got_added, added, text)
    for l in sent_h:
        if "_" in hname(l) and fwd_family(hname(l)):
            assert hval(l).encode() not in head, "the value of %r reached the backend:\n%s" % (l, text)


@pytest.mark.parametrize("switches", list(SWITCHES))
def test_untrusted_peer_forwarding_headers_are_removed(gk, whoami, switches):
    """Attack: an untrusted client forges X-Forwarded-For/-Proto/-Host,
    X-Real-IP, Forwarded and other X-Forwarded-* headers, hoping one whose
    switch is off (Forwarded by default) passes untouched.  Must: every one
    is removed whatever the switches; only gatekeeper's own (for the
    switches on) reach the backend."""
    check_forwarding(gk, whoami, switches, False, CANONICAL_SENT + OTHER_XF_SENT + NEUTRAL_SENT)


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
@pytest.mark.parametrize("switches", list(SWITCHES))
def test_underscore_forwarding_headers_never_pass(gk, whoami, switches, trusted):
    """Attack: `X_Forwarded_For`, `X-Real_IP`, `x_forwarded_host`, ... are
    other headers to gatekeeper, but the same to a backend that reads `_`
    as `-`: a forged client address or host.  Must: removed, from trusted
    peers too; the canonical headers are treated as for that peer."""
    check_forwarding(gk, whoami, switches, trusted,
                     NEUTRAL_SENT[:1] + UNDERSCORE_SENT + CANONICAL_SENT + OTHER_XF_SENT + NEUTRAL_SENT[1:])


@pytest.mark.parametrize("switches", list(SWITCHES))
def test_trusted_peer_canonical_forwarding_headers_keep_todays_behaviour(gk, whoami, switches):
    """Control: a trusted peer (`http.trusted: [127.0.0.0/8]`) sending only
    canonical forwarding headers: its X-Forwarded-For is extended, its
    X-Forwarded-Proto/-Host and X-Real-IP kept, Forwarded extended (switch
    on) or kept (off), other X-Forwarded-* kept."""
    check_forwarding(gk, whoami, switches, True, CANONICAL_SENT + OTHER_XF_SENT + NEUTRAL_SENT)


def test_untrusted_forwarding_headers_removed_on_every_keepalive_request(gk, whoami):
    """Attack: the forged Forwarded / X-Forwarded-Port / X_Forwarded_For
    come on the later requests of a kept-alive connection.  Must: removed
    on each one."""
    wa = whoami(name="A")
    g = gk(http_config(http_listener("web", upstream=wa.addr)))
    c = Client(g.addr("web"))
    for i in range(4):
        extra = [] if i == 0 else ["Forwarded: for=6.6.6.%d" % i, "X-Forwarded-Port: 6%d" % i,
                                   "X_Forwarded_For: 6.6.8.%d" % i]
        c.send(req(A, "/k%d" % i, extra=extra))
        r = c.response()
        assert r.status == 200, r
        head = forwarded_head(r)
        _, lines = head_lines(head)
        assert not values(lines, "forwarded") and not values(lines, "x-forwarded-port"), (i, head)
        assert not values(lines, "x_forwarded_for") and b"6.6." not in head, (i, head)
        assert values(lines, XFF) == [C4]
    c.close()
    assert g.wait_access_for(c.local)["requests"] == "4"


# --------------------------------------------------------------------------
# 6. Egress: the smuggled request names a host that is not allowed

API, EVIL = "api.gk.test", "evil.gk.test"
EVIL_REQUEST = b"GET /smuggled HTTP/1.1\r\nHost: evil.gk.test\r\nX-Smuggled: yes\r\n\r\n"

EGRESS = {
    "connection_content_length": (["Connection: keep-alive, Content-Length",
                                   "Content-Length: %d" % len(EVIL_REQUEST)], EVIL_REQUEST),
    "connection_transfer_encoding": (["Transfer-Encoding: chunked", "Connection: Transfer-Encoding"],
                                     chunked(EVIL_REQUEST)),
    "connection_host": (["Connection: host", "Content-Length: %d" % len(EVIL_REQUEST)], EVIL_REQUEST),
    "Content_Length": (["Content_Length: %d" % len(EVIL_REQUEST)], EVIL_REQUEST),
    "Transfer_Encoding": (["Transfer_Encoding: chunked"], chunked(EVIL_REQUEST)),
}


class Recorder:
    """A backend that records every byte and never answers."""

    def __init__(self, backends, host, port):
        self.data = bytearray()
        self.srv = backends(self._handle, host=host, port=port)

    def _handle(self, conn, server):
        conn.settimeout(30)
        while True:
            try:
                b = conn.recv(65536)
            except OSError:
                return
            if not b:
                return
            self.data.extend(b)


@pytest.mark.parametrize("where", ["first", "later"])
@pytest.mark.parametrize("case", sorted(EGRESS))
def test_egress_smuggled_request_for_a_host_not_allowed(gk, dns, origin, backends, case, where):
    """Attack: on an egress http listener (`allow: [api.gk.test]`,
    `allow_ranges: [127.0.0.0/8]`) a request for the allowed api.gk.test
    carries, inside a body framed one way for gatekeeper and another way for
    the backend, a request for evil.gk.test, which is not on the list.
    Must: 400 smuggling, closed, and `evil.gk.test` reaches no backend (the
    allowed one, nor a canary on the address evil.gk.test resolves to)."""
    api = origin("API", host="127.0.0.2")
    canary = Recorder(backends, "127.0.0.3", api.port)
    dns.set(API, ["127.0.0.2"])
    dns.set(EVIL, ["127.0.0.3"])
    g = gk(http_config(http_listener("egress", allow='["%s"]' % API, port=api.port,
                                     allow_ranges='["127.0.0.0/8"]'), nameservers=[dns.nameserver]))
    addr = g.addr("egress")
    lines, body = EGRESS[case]
    bad = req(API, "/bad", method="POST", extra=lines, body=body)
    c = Client(addr, timeout=20)
    if where == "later":
        c.send(req(API, "/good1"))
        assert c.response().status == 200
    c.send_quiet(bad)
    r = c.response()
    assert r.status != 200, "the smuggling request was forwarded:\n%r" % r.raw[:600]
    check_refusal(r, 400, "smuggling")
    rest, how = c.until_closed()
    assert rest == b"", rest[:300]
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] == "smuggling", acc
    settle(api, canary)
    assert EVIL.encode() not in api.raw(), "the not-allowed Host reached the allowed backend:\n%s" % (
        api.raw()[:800].decode("latin-1"))
    assert canary.srv.accepted == 0 and EVIL.encode() not in bytes(canary.data)
    assert b"/bad" not in api.raw()
    assert api.paths() == (["/good1"] if where == "later" else [])
    assert get_ok(addr, host=API).field("Name") == "API"


# --------------------------------------------------------------------------
# Other headers that name the client's address

CLAIMS = ["X-Forwarded: for=6.6.6.6", "Client-IP: 6.6.6.6", "True-Client-IP: 6.6.6.6",
          "X-Client-IP: 6.6.6.6", "CF-Connecting-IP: 6.6.6.6", "Fastly-Client-IP: 6.6.6.6",
          "X-Cluster-Client-IP: 6.6.6.6", "X-Original-Forwarded-For: 6.6.6.6"]


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_client_address_claims_from_untrusted_peers_are_removed(gk, whoami, trusted):
    """Attack: the headers CDNs write and frameworks read as the client's
    address (Rails' Client-IP, True-Client-IP, CF-Connecting-IP, ...),
    forged by an untrusted client.  Must: removed; a trusted peer's pass
    untouched, in place; their `_` spellings never pass."""
    wa = whoami(name="A")
    conf = {"trusted": ["127.0.0.0/8"]} if trusted else None
    g = gk(http_config(http_listener("web", upstream=wa.addr, http=conf)))
    sent = req(A, "/claims", extra=CLAIMS + ["True_Client_IP: 7.7.7.7", "Accept: */*"])
    with Client(g.addr("web")) as c:
        c.send(sent)
        r = c.response()
    assert r.status == 200, r
    head = forwarded_head(r)
    _, lines = head_lines(head)
    got = [l.decode("latin-1") for l in lines if hname(l) in {x.split(":")[0].lower() for x in CLAIMS}]
    assert got == (CLAIMS if trusted else []), head
    assert b"7.7.7.7" not in head, head
    assert b"Accept: */*" in lines, head


# --------------------------------------------------------------------------
# An upstream that answers more than it was asked

def test_response_nobody_asked_for_does_not_hold_the_connection(gk, backends):
    """Attack: the upstream answers one request with two responses (or a
    smuggled request's answer arrives).  Must: the client gets the bytes,
    no later request goes up on that connection, and once both sides have
    closed the session ends (before, it waited for idle_timeout)."""
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    seen = []

    def handle(conn, server):
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                b = conn.recv(4096)
                if not b:
                    return
                data += b
            conn.sendall(extra + extra)
            time.sleep(0.5)
            conn.settimeout(0.5)
            try:
                data += conn.recv(4096)
            except OSError:
                pass
        finally:
            seen.append(data)
            conn.close()

    srv = backends(handle)
    g = gk(http_config(http_listener("web", upstream=srv.addr, idle_timeout="5m")))
    c = Client(g.addr("web"), timeout=20)
    c.send(req(A, "/one"))
    assert c.response().status == 200
    assert c.response().status == 200  # the one nobody asked for
    c.send_quiet(req(A, "/two"))
    rest, how = c.until_closed()
    c.close()
    acc = g.wait_access_for(c.local, timeout=20)
    assert acc["reason"] != "idle_timeout", acc
    settle(srv)
    assert seen and b"/two" not in b"".join(seen), seen
