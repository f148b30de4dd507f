"""Routing on the TLS SNI and the HTTP Host: mode tls and mode http listeners.

Backends are real: `openssl s_server`, Python TLS servers (tlsutil.TlsBackend,
which record the SNI they were sent, so a test sees that the ClientHello
reached them unchanged), whoami instances with different names, and dnsmasq
for `$host:PORT` upstreams. TLS is never terminated by gatekeeper: each TLS
backend has its own certificate, and the client checks which one it got.

Every refusal is checked three ways: what the client receives (an alert, an
HTTP status or a plain close), the access line (reason, decision, name), and
that nothing reached a backend; and a connection opened before it keeps
working, as does a new one.
"""

import os
import re
import socket
import time

import pytest

import gkharness as h
import tlsutil as t

A, B = "a.gk.test", "b.gk.test"


# --------------------------------------------------------------------------
# Fixtures

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    names = {
        "a": A, "b": B, "exact": "x.w.gk.test", "wild": "wild.w.gk.test",
        "deep": "deep.w.gk.test", "star": "star.gk.test", "first": "first.gk.test",
        "second": "second.gk.test", "fallback": "fallback.gk.test", "dyn": "x.gk.test",
    }
    return {k: t.make_cert(d, cn) for k, cn in names.items()}


@pytest.fixture
def tls_backend(certs):
    made = []

    def make(key, host="127.0.0.1", port=0):
        b = t.TlsBackend(certs[key], key, host=host, port=port)
        made.append(b)
        return b

    yield make
    for b in reversed(made):
        b.close()


@pytest.fixture
def s_server(certs):
    made = []

    def make(key):
        s = t.SServer(certs[key])
        made.append(s)
        return s

    yield make
    for s in reversed(made):
        s.close()


def tls_hello_and_tag(addr, name, **kw):
    """Handshake through gatekeeper; returns (TlsClient, greeting tag, sni)."""
    c = t.TlsClient(addr, name, **kw)
    line = c.recv_line().decode().strip()
    fields = dict(p.split("=", 1) for p in line.split())
    return c, fields["tag"], fields["sni"]


def check_good_tls(addr, name, tag, cert):
    """A fresh TLS connection through gatekeeper reaches `tag`, gets its
    certificate, and echoes."""
    c, got, sni = tls_hello_and_tag(addr, name)
    try:
        assert got == tag and sni == name
        assert c.peer_der == cert.der
        payload = h.deterministic_bytes(5000, seed=3)
        assert c.roundtrip(payload) == payload
    finally:
        c.close()


# --------------------------------------------------------------------------
# TLS routing

def test_tls_routes_on_sni_to_the_backend_with_that_certificate(gk, s_server, certs):
    sa, sb = s_server("a"), s_server("b")
    g = gk(t.config(t.listener("edge", "tls", routes=[([A], sa.addr), ([B], sb.addr)])))
    addr = g.addr("edge")
    for name, cert, srv in ((A, certs["a"], sa), (B, certs["b"], sb), (A, certs["a"], sa)):
        c = t.TlsClient(addr, name)
        try:
            assert c.peer_der == cert.der, "SNI %s got the wrong certificate" % name
            local = c.sock.getsockname()[:2]
            c.send(b"GET / HTTP/1.0\r\n\r\n")
            page = c.recv_until_eof()
        finally:
            c.close()
        # s_server -www answers with a status page naming its own certificate
        assert b"s_server" in page and cert.cert.encode() in page, page[:400]
        acc = g.wait_access_for(local)
        assert acc["listener"] == "edge"
        assert acc["name"] == name
        assert acc["decision"] == "allow"
        assert acc["upstream"] == srv.addr
        assert acc["reason"] == "closed"
        assert int(acc["bytes_in"]) > 0 and int(acc["bytes_out"]) > len(page)

    # the same through openssl s_client
    for name in (A, B):
        out = t.s_client(addr, name)
        assert t.s_client_subject_cn(out) == name, out[-2000:]


def test_tls_curl_end_to_end_talks_to_the_backend(gk, s_server, certs):
    sa, sb = s_server("a"), s_server("b")
    g = gk(t.config(t.listener("edge", "tls", routes=[([A], sa.addr), ([B], sb.addr)])))
    port = g.addr("edge")[1]
    for name, key in ((B, "b"), (A, "a")):
        rc, out, err = t.curl_https(name, port)
        assert rc == 0, err
        # the certificate curl saw is the backend's: TLS is not terminated
        assert "subject: CN=%s" % name in err, err
        assert b"s_server" in out and certs[key].cert.encode() in out, out[:400]
    acc = g.wait_access(2)
    assert sorted(a["name"] for a in acc[:2]) == [A, B]
    assert all(a["decision"] == "allow" and a["reason"] == "closed" for a in acc[:2]), acc


def test_tls_wildcards_and_precedence(gk, tls_backend, certs):
    star = tls_backend("star")
    wild = tls_backend("wild")
    deep = tls_backend("deep")
    exact = tls_backend("exact")
    # listed in the reverse order of precedence: order must not matter here
    g = gk(t.config(t.listener("edge", "tls", routes=[
        ("*", star.addr),
        (["*.w.gk.test"], wild.addr),
        (["*.deep.w.gk.test"], deep.addr),
        (["x.w.gk.test"], exact.addr),
    ])))
    addr = g.addr("edge")
    cases = [
        ("x.w.gk.test", "exact"),        # exact beats every wildcard
        ("y.w.gk.test", "wild"),
        ("a.b.c.w.gk.test", "wild"),     # any depth below the suffix
        ("z.deep.w.gk.test", "deep"),    # longer suffix beats shorter
        ("q.r.deep.w.gk.test", "deep"),
        ("deep.w.gk.test", "wild"),      # apex of *.deep... is not matched by it
        ("w.gk.test", "star"),           # apex of *.w.gk.test is not matched by it
        ("xw.gk.test", "star"),          # a suffix match must start at a dot
        ("other.example", "star"),
    ]
    for name, tag in cases:
        c, got, sni = tls_hello_and_tag(addr, name)
        try:
            assert (name, got) == (name, tag)
            assert sni == name
            assert c.peer_der == certs[tag].der
            local = c.sock.getsockname()[:2]
        finally:
            c.close()
        acc = g.wait_access_for(local)
        assert acc["name"] == name and acc["decision"] == "allow"


def test_tls_names_are_normalized_before_matching(gk, tls_backend, certs):
    star = tls_backend("star")
    exact = tls_backend("exact")
    wild = tls_backend("wild")
    g = gk(t.config(t.listener("edge", "tls", routes=[
        (["x.w.gk.test"], exact.addr), (["*.w.gk.test"], wild.addr), ("*", star.addr)])))
    addr = g.addr("edge")
    for sent, tag, norm in (("X.W.GK.TEST", "exact", "x.w.gk.test"),
                            ("x.w.gk.test.", "exact", "x.w.gk.test"),
                            ("Y.W.Gk.Test.", "wild", "y.w.gk.test")):
        c, got, sni = tls_hello_and_tag(addr, sent)
        try:
            assert got == tag, sent
            # the hello is relayed unchanged: the backend sees the name as sent
            assert sni == sent
            local = c.sock.getsockname()[:2]
        finally:
            c.close()
        assert g.wait_access_for(local)["name"] == norm
    # openssl s_client too
    out = t.s_client(addr, "X.W.GK.TEST.")
    assert t.s_client_subject_cn(out) == "x.w.gk.test", out[-2000:]


def test_tls_ties_go_to_the_first_route(gk, tls_backend):
    first = tls_backend("first")
    second = tls_backend("second")
    star = tls_backend("star")
    g = gk(t.config(t.listener("edge", "tls", routes=[
        ("*", star.addr),
        (["*.tie.gk.test", "same.gk.test"], first.addr),
        (["same.gk.test", "*.tie.gk.test"], second.addr),
        ("*", second.addr),
    ])))
    addr = g.addr("edge")
    for name, tag in (("same.gk.test", "first"), ("u.tie.gk.test", "first"), ("nope.gk.test", "star")):
        c, got, _ = tls_hello_and_tag(addr, name)
        c.close()
        assert got == tag, name


def test_tls_no_sni_and_unknown_names_use_the_catch_all(gk, tls_backend, certs):
    a = tls_backend("a")
    fb = tls_backend("fallback")
    star = tls_backend("star")
    g = gk(t.config(
        t.listener("fb", "tls", upstream=fb.addr, routes=[([A], a.addr)]),
        t.listener("star", "tls", routes=[([A], a.addr), ("*", star.addr)]),
    ))
    for lname, tag in (("fb", "fallback"), ("star", "star")):
        addr = g.addr(lname)
        c, got, sni = tls_hello_and_tag(addr, None)
        c.close()
        assert (got, sni) == (tag, "-"), "no SNI on listener %s" % lname
        c, got, sni = tls_hello_and_tag(addr, "unknown.gk.test")
        c.close()
        assert (got, sni) == (tag, "unknown.gk.test")
        c, got, _ = tls_hello_and_tag(addr, A)
        c.close()
        assert got == "a"


def test_tls_hello_in_tiny_writes_and_many_records_still_routes(gk, tls_backend, certs):
    a = tls_backend("a")
    b = tls_backend("b")
    g = gk(t.config(t.listener("edge", "tls", routes=[([A], a.addr), ([B], b.addr)])))
    addr = g.addr("edge")
    # 1-5 byte TCP segments
    c, tag, sni = tls_hello_and_tag(addr, B, first_flight=t.trickle_sender())
    try:
        assert (tag, sni) == ("b", B)
        assert c.peer_der == certs["b"].der
        payload = h.deterministic_bytes(100000, seed=9)
        assert c.roundtrip(payload) == payload
    finally:
        c.close()
    # the hello cut into several handshake records (legal TLS), the first
    # ones a single byte, the SNI straddling a record boundary
    hello = t.client_hello(A)
    sni_at = hello.find(A.encode())
    sizes = [1, 1, 2, sni_at - 9, 4]
    c, tag, sni = tls_hello_and_tag(addr, A, transform=lambda d: t.refragment(d, sizes))
    c.close()
    assert (tag, sni) == ("a", A)
    # and both at once
    c, tag, sni = tls_hello_and_tag(addr, A, transform=lambda d: t.refragment(d, [3, 60, 7]),
                                   first_flight=t.trickle_sender(seed=11))
    c.close()
    assert (tag, sni) == ("a", A)


# --------------------------------------------------------------------------
# TLS refusals

def _oversized_hello():
    """A ClientHello that claims 65535 bytes, sent as full 16 KiB records of
    plausible content, and never finished: 17 KiB in all."""
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += b"\xff\xff" + bytes(16384 - 4 - len(body) - 2)  # extensions, claimed long
    first = t.record(22, b"\x01\x00\xff\xff" + body)
    return first + t.record(22, bytes(1024))


def _sent_hello(name):
    return t.client_hello(name)


TLS_REFUSALS = {
    # case: (bytes to send, expected reply, allowed reasons, decision, name)
    "unknown_sni": (lambda: _sent_hello("zzz.gk.test"), t.ALERT_UNRECOGNIZED_NAME, {"no_route"},
                    "deny", "zzz.gk.test"),
    "no_sni": (lambda: _sent_hello(None), t.ALERT_UNRECOGNIZED_NAME, {"no_name"}, "deny", "-"),
    "plain_http": (lambda: b"GET / HTTP/1.1\r\nHost: a.gk.test\r\n\r\n", b"", {"malformed"}, "-", "-"),
    "not_a_hello": (lambda: t.record(23, bytes(40)), b"", {"malformed"}, "-", "-"),
    "record_20000": (lambda: b"\x16\x03\x01\x4e\x20\x01\x00\x4e\x1c\x03\x03" + bytes(200), b"",
                     {"malformed", "too_large"}, "-", "-"),
    "hello_17k": (_oversized_hello, b"", {"too_large", "malformed"}, "-", "-"),
    "bad_sni_chars": (lambda: _sent_hello("bad name!.gk.test"), b"", {"malformed"}, "-", None),
    "silent": (lambda: b"", b"", {"sniff_timeout"}, "-", "-"),
    "partial_hello_then_silent": (lambda: _sent_hello(A)[:40], b"", {"sniff_timeout"}, "-", "-"),
}


@pytest.mark.parametrize("case", sorted(TLS_REFUSALS))
def test_tls_refusals_close_log_and_spare_the_others(gk, tls_backend, certs, case):
    make, reply, reasons, decision, name = TLS_REFUSALS[case]
    a = tls_backend("a")
    g = gk(t.config(t.listener("edge", "tls", sniff_timeout="1s", routes=[([A], a.addr)])))
    addr = g.addr("edge")

    good, tag, _ = tls_hello_and_tag(addr, A)
    assert tag == "a"
    assert good.roundtrip(b"before") == b"before"
    accepted = a.accepted

    bad = h.connect(addr)
    local = bad.getsockname()[:2]
    try:
        data = make()
        if data:
            t.send_ignoring_reset(bad, data)
        got, how = t.read_until_close(bad, timeout=10)
    finally:
        bad.close()
    assert got == reply, "%s: client received %r" % (case, got[:64])
    acc = g.wait_access_for(local)
    assert acc["reason"] in reasons, acc
    assert acc["decision"] == decision, acc
    if name is not None:
        assert acc["name"] == name, acc
    assert acc["upstream"] == "-", acc
    assert int(acc["bytes_out"]) == 0 or reply, acc

    # nothing reached the backend; the open connection and a new one work
    assert a.accepted == accepted
    assert good.roundtrip(b"after") == b"after"
    good.close()
    check_good_tls(addr, A, "a", certs["a"])
    assert g.alive()


def test_tls_valid_hello_over_16k_is_too_large(gk, tls_backend, certs):
    """A real client's hello made big by a long ALPN list (18 KiB, two
    records): well-formed, just over the cap, so the reason is too_large."""
    a = tls_backend("a")
    g = gk(t.config(t.listener("edge", "tls", routes=[([A], a.addr)])))
    addr = g.addr("edge")
    alpn = ["p%03d-" % i + "x" * 200 for i in range(90)]
    hello = t.client_hello(A, alpn=alpn)
    assert len(hello) > 17 * 1024 and len(t.split_records(hello)) == 2
    s = h.connect(addr)
    local = s.getsockname()[:2]
    t.send_ignoring_reset(s, hello)
    got, _ = t.read_until_close(s)
    s.close()
    assert got == b""
    acc = g.wait_access_for(local)
    assert acc["reason"] == "too_large", acc
    assert a.accepted == 0
    # the same client with a short ALPN list is routed
    c, tag, _ = tls_hello_and_tag(addr, A, alpn=["h2", "http/1.1"])
    c.close()
    assert tag == "a"


def test_tls_client_closing_before_its_hello_is_logged(gk, tls_backend):
    a = tls_backend("a")
    g = gk(t.config(t.listener("edge", "tls", routes=[([A], a.addr)])))
    addr = g.addr("edge")
    s = h.connect(addr)
    local = s.getsockname()[:2]
    s.shutdown(socket.SHUT_WR)
    got, _ = t.read_until_close(s)
    s.close()
    assert got == b""
    acc = g.wait_access_for(local)
    assert acc["reason"] == "client_closed", acc
    assert acc["upstream"] == "-"
    assert a.accepted == 0


# --------------------------------------------------------------------------
# HTTP routing on Host

@pytest.fixture
def http_pair(gk, whoami):
    """A mode http listener: a.gk.test -> whoami "A", b.gk.test -> whoami "B"."""
    wa, wb = whoami(name="A"), whoami(name="B")
    g = gk(t.config(t.listener("web", "http", sniff_timeout="1s",
                               routes=[([A], wa.addr), ([B], wb.addr)])))
    return g, g.addr("web"), wa, wb


def test_http_routes_on_host(http_pair):
    g, addr, wa, wb = http_pair
    for host, who, norm, up in ((A, "A", A, wa.addr), (B, "B", B, wb.addr),
                                ("A.GK.TEST", "A", A, wa.addr),
                                ("b.gk.test.", "B", B, wb.addr),
                                ("B.Gk.Test.:8080", "B", B, wb.addr),
                                ("a.gk.test:80", "A", A, wa.addr)):
        req = t.http_request(host)
        resp, how, local = t.http_exchange(addr, req)
        assert resp.status == 200, resp
        assert resp.field("Name") == who, (host, resp)
        # the request line and Host went on as sent, the client's address added
        assert b"GET / HTTP/1.1\r\nHost: %s\r\n" % host.encode() in resp.body, resp.body
        assert b"X-Forwarded-For: 127.0.0.1\r\n" in resp.body, resp.body
        acc = g.wait_access_for(local)
        assert acc["name"] == norm and acc["decision"] == "allow", acc
        assert acc["upstream"] == up and acc["reason"] == "closed", acc
        assert int(acc["bytes_in"]) == len(req), acc


def test_http_keep_alive_a_host_routed_elsewhere_gets_421(http_pair):
    """Every request is routed: on a kept-alive connection to A, a request
    naming B is never sent to A (nor to B); it gets 421 and the connection
    closes, after A's answer to the request before it."""
    g, addr, wa, wb = http_pair
    s = h.connect(addr)
    local = s.getsockname()[:2]
    r = t.HttpReader(s)
    s.sendall(t.http_request(A, close=False))
    first = r.response()
    assert first.status == 200 and first.field("Name") == "A"
    s.sendall(t.http_request(A, path="/again", close=False))
    assert r.response().field("Name") == "A"
    s.sendall(t.http_request(B, path="/elsewhere", close=False))
    refused = r.response()
    assert refused.status == 421, refused
    assert refused.header("X-Gatekeeper-Reason") == "misdirected", refused
    assert h.wait_closed(s, timeout=10) in ("eof", "reset")
    s.close()
    acc = g.wait_access_for(local)
    assert acc["name"] == A and acc["upstream"] == wa.addr, acc
    assert acc["reason"] == "misdirected" and acc["requests"] == "2", acc


def test_http_bytes_after_the_head_and_half_close_are_relayed(http_pair):
    g, addr, wa, wb = http_pair
    # head and body in one write, then the client's half-close
    body = h.deterministic_bytes(20000, seed=12)
    req = (b"POST /echo HTTP/1.1\r\nHost: b.gk.test\r\nContent-Length: %d\r\n"
           b"Connection: close\r\n\r\n" % len(body)) + body
    s = h.connect(addr)
    local = s.getsockname()[:2]
    s.sendall(req)
    s.shutdown(socket.SHUT_WR)
    r = t.HttpReader(s)
    resp = r.response()
    s.close()
    assert resp.status == 200 and resp.body == body
    acc = g.wait_access_for(local)
    assert acc["name"] == B and int(acc["bytes_in"]) == len(req) and acc["reason"] == "closed", acc
    # two pipelined requests in one write: both reach the backend
    s = h.connect(addr)
    s.sendall(t.http_request(A, path="/one", close=False) + t.http_request(A, path="/two"))
    r = t.HttpReader(s)
    one, two = r.response(), r.response()
    s.close()
    assert b"GET /one " in one.body and b"GET /two " in two.body
    assert one.field("Name") == "A" and two.field("Name") == "A"


def test_tls_many_concurrent_clients_each_get_their_route(gk, tls_backend):
    import threading

    a = tls_backend("a")
    b = tls_backend("b")
    g = gk(t.config(t.listener("edge", "tls", routes=[([A], a.addr), ([B], b.addr)])))
    addr = g.addr("edge")
    errors = []
    n = 40

    def client(i):
        name, tag = (A, "a") if i % 2 else (B, "b")
        try:
            c, got, sni = tls_hello_and_tag(addr, name,
                                           first_flight=t.trickle_sender(8, 64, 0.002, seed=i))
            try:
                payload = h.deterministic_bytes(3000 + i, seed=i)
                if (got, sni) != (tag, name) or c.roundtrip(payload) != payload:
                    errors.append((i, got, sni))
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    acc = g.wait_access(n, timeout=20)
    assert sum(1 for x in acc if x["decision"] == "allow") == n


def test_http_without_host_uses_a_catch_all(gk, whoami):
    wa, wfb, wstar = whoami(name="A"), whoami(name="FB"), whoami(name="STAR")
    g = gk(t.config(
        t.listener("fb", "http", upstream=wfb.addr, routes=[([A], wa.addr)]),
        t.listener("star", "http", routes=[([A], wa.addr), ("*", wstar.addr)]),
    ))
    for lname, who in (("fb", "FB"), ("star", "STAR")):
        addr = g.addr(lname)
        resp, _, local = t.http_exchange(addr, t.http_request(None, version="1.0"))
        assert resp.status == 200 and resp.field("Name") == who, resp
        assert g.wait_access_for(local)["name"] == "-"
        resp, _, _ = t.http_exchange(addr, t.http_request("elsewhere.gk.test"))
        assert resp.field("Name") == who
        resp, _, _ = t.http_exchange(addr, t.http_request(A))
        assert resp.field("Name") == "A"


HTTP_REFUSALS = {
    # case: (request bytes, status, reasons, decision)
    "no_route": (t.http_request("c.gk.test"), 421, {"no_route"}, "deny"),
    "no_route_ip_literal": (t.http_request("127.0.0.9:8080"), 421, {"no_route"}, "deny"),
    "missing_host_http11": (t.http_request(None), 400, {"no_name"}, "deny"),
    "empty_host": (b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n", 400, {"no_name"}, "deny"),
    "duplicate_host": (b"GET / HTTP/1.1\r\nHost: a.gk.test\r\nHost: b.gk.test\r\n\r\n", 400,
                       {"malformed"}, "-"),
    "bare_lf": (b"GET / HTTP/1.1\nHost: a.gk.test\n\n", 400, {"malformed"}, "-"),
    "bad_host_chars": (t.http_request("a_b!.gk.test"), 400, {"malformed"}, "-"),
    "space_before_colon": (b"GET / HTTP/1.1\r\nHost : a.gk.test\r\n\r\n", 400, {"malformed"}, "-"),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: a.gk.test\r\nX-A: 1\r\n  2\r\n\r\n", 400, {"malformed"}, "-"),
    "http2_version": (b"GET / HTTP/2.0\r\nHost: a.gk.test\r\n\r\n", 400, {"malformed"}, "-"),
    "control_char": (b"GET / HTTP/1.1\r\nHost: a.gk.test\r\nX-A: a\x01b\r\n\r\n", 400, {"malformed"}, "-"),
    "not_http": (b"\x16\x03\x01\x00\x05hello" + bytes(20), 400, {"malformed"}, "-"),
    "huge_head": (b"GET / HTTP/1.1\r\nHost: a.gk.test\r\nX-Big: " + b"a" * (17 * 1024) + b"\r\n\r\n",
                  431, {"too_large"}, "-"),
    "silent": (b"", 408, {"sniff_timeout"}, "-"),
    "partial_head": (b"GET / HTTP/1.1\r\nHost: a.gk", 408, {"sniff_timeout"}, "-"),
}


@pytest.mark.parametrize("case", sorted(HTTP_REFUSALS))
def test_http_refusals_answer_close_log_and_spare_the_others(http_pair, case):
    req, status, reasons, decision = HTTP_REFUSALS[case]
    g, addr, wa, wb = http_pair

    # a keep-alive connection routed before the refusal
    good = h.connect(addr)
    gr = t.HttpReader(good)
    good.sendall(t.http_request(A, close=False))
    assert gr.response().field("Name") == "A"

    resp, how, local = t.http_exchange(addr, req, timeout=10)
    assert resp.status == status, (case, resp)
    assert resp.body.startswith(b"gatekeeper:"), resp
    assert how in ("eof", "reset"), "connection not closed after %d (%s)" % (status, how)
    acc = g.wait_access_for(local)
    assert acc["reason"] in reasons, acc
    assert acc["decision"] == decision, acc
    assert acc["upstream"] == "-", acc
    if case == "no_route":
        assert acc["name"] == "c.gk.test"

    # the routed connection still works, and so does a new one
    good.sendall(t.http_request(A, path="/after"))
    assert gr.response().field("Name") == "A"
    good.close()
    resp, _, _ = t.http_exchange(addr, t.http_request(B))
    assert resp.field("Name") == "B"
    assert g.alive()


# --------------------------------------------------------------------------
# $host upstreams, resolved through dnsmasq. A $host route is an egress
# route: the address guard refuses loopback unless allow_ranges lets it in.

def test_tls_host_upstream_resolves_the_sni(gk, tls_backend, certs, dns):
    dyn = tls_backend("dyn", host="127.0.0.2")
    dns.set("x.gk.test", ["127.0.0.2"])
    g = gk(t.config(
        t.listener("egress", "tls", connect_timeout="3s",
                   routes=[(["*.gk.test"], "$host:%d" % dyn.port)],
                   allow_ranges='["127.0.0.0/8"]'),
        nameservers=[dns.nameserver]))
    addr = g.addr("egress")
    c, tag, sni = tls_hello_and_tag(addr, "x.gk.test")
    try:
        assert (tag, sni) == ("dyn", "x.gk.test")
        assert c.peer_der == certs["dyn"].der
        assert c.roundtrip(b"through $host") == b"through $host"
        local = c.sock.getsockname()[:2]
    finally:
        c.close()
    acc = g.wait_access_for(local)
    assert acc["name"] == "x.gk.test" and acc["upstream"] == dyn.addr and acc["decision"] == "allow"

    # a name dnsmasq does not know: refused with no_address and a TLS
    # internal_error alert, nothing tried
    s = h.connect(addr)
    local = s.getsockname()[:2]
    t.send_ignoring_reset(s, t.client_hello("nx.gk.test"))
    got, _ = t.read_until_close(s, timeout=15)
    s.close()
    assert got == b"\x15\x03\x03\x00\x02\x02\x50"
    acc = g.wait_access_for(local, timeout=15)
    assert acc["reason"] == "no_address", acc
    assert acc["name"] == "nx.gk.test" and acc["upstream"] == "-", acc
    assert dyn.accepted == 1
    # a name outside every route is no_route, not looked up
    s = h.connect(addr)
    t.send_ignoring_reset(s, t.client_hello("x.other.test"))
    got, _ = t.read_until_close(s)
    s.close()
    assert got == t.ALERT_UNRECOGNIZED_NAME


def test_http_host_upstream_resolves_the_host(gk, whoami, dns):
    wx = whoami(host="127.0.0.2", name="X")
    dns.set("x.gk.test", ["127.0.0.2"])
    g = gk(t.config(
        t.listener("egress", "http", connect_timeout="3s",
                   routes=[(["*.gk.test"], "$host:%d" % wx.port)],
                   allow_ranges='["127.0.0.0/8"]'),
        nameservers=[dns.nameserver]))
    addr = g.addr("egress")
    resp, _, local = t.http_exchange(addr, t.http_request("X.gk.test:%d" % wx.port))
    assert resp.status == 200 and resp.field("Name") == "X", resp
    acc = g.wait_access_for(local)
    assert acc["name"] == "x.gk.test" and acc["upstream"] == wx.addr

    resp, how, local = t.http_exchange(addr, t.http_request("nx.gk.test"), timeout=15)
    assert resp.status == 503, resp
    assert resp.body.startswith(b"gatekeeper:")
    acc = g.wait_access_for(local, timeout=15)
    assert acc["reason"] == "no_address" and acc["upstream"] == "-", acc

    # still fine afterwards
    resp, _, _ = t.http_exchange(addr, t.http_request("x.gk.test"))
    assert resp.field("Name") == "X"


def test_tls_host_upstream_looks_up_the_normalized_name(gk, tls_backend, dns):
    dyn = tls_backend("dyn", host="127.0.0.2")
    dns.set("x.gk.test", ["127.0.0.2"])
    g = gk(t.config(
        t.listener("egress", "tls", routes=[(["*.gk.test"], "$host:%d" % dyn.port)],
                   allow_ranges='["127.0.0.0/8"]'),
        nameservers=[dns.nameserver]))
    c, tag, sni = tls_hello_and_tag(g.addr("egress"), "X.GK.Test.")
    c.close()
    assert (tag, sni) == ("dyn", "X.GK.Test.")


# --------------------------------------------------------------------------
# Names at the limits, upstream failures in http mode, config rules

def test_name_length_and_label_limits(gk, tls_backend):
    star = tls_backend("star")
    g = gk(t.config(t.listener("edge", "tls", sniff_timeout="2s", routes=[("*", star.addr)])))
    addr = g.addr("edge")
    label = "a" * 63
    n253 = ".".join([label, label, label, "b" * 61])  # 63*3 + 61 + 3 dots = 253
    assert len(n253) == 253
    # the hand-made hello is good enough to be routed
    s = h.connect(addr)
    local = s.getsockname()[:2]
    s.sendall(t.raw_client_hello("raw.gk.test"))
    s.shutdown(socket.SHUT_WR)
    t.read_until_close(s)  # the backend answers (and gives up) as it likes
    s.close()
    acc = g.wait_access_for(local)
    assert acc["name"] == "raw.gk.test" and acc["upstream"] == star.addr, acc
    for sent, norm in ((n253, n253), (n253 + ".", n253), ("under_score-ok.gk.test", "under_score-ok.gk.test")):
        c, tag, _ = tls_hello_and_tag(addr, sent)
        local = c.sock.getsockname()[:2]
        c.close()
        assert tag == "star"
        assert g.wait_access_for(local)["name"] == norm
    for bad in ("c" + n253,                     # 254 bytes
                "x" * 64 + ".gk.test",          # a 64-byte label
                "a..gk.test",                   # empty label
                "a.gk.test..",                  # two trailing dots
                "a b.gk.test", "a/b.gk.test", "a:b.gk.test"):
        s = h.connect(addr)
        local = s.getsockname()[:2]
        t.send_ignoring_reset(s, t.raw_client_hello(bad))
        got, _ = t.read_until_close(s)
        s.close()
        assert got == b"", bad
        assert g.wait_access_for(local)["reason"] == "malformed", bad
    assert star.accepted == 4


def test_http_upstream_failures_answer_502_and_504(gk, whoami, blackhole):
    wa = whoami(name="A")
    dead = "127.0.0.1:%d" % h.free_port()
    hole = blackhole()
    g = gk(t.config(t.listener("web", "http", connect_timeout="1s", routes=[
        ([A], wa.addr), (["dead.gk.test"], dead), (["hole.gk.test"], hole.addr)])))
    addr = g.addr("web")
    for host, status, reason, up in (("dead.gk.test", 502, "connect_failed", dead),
                                     ("hole.gk.test", 504, "connect_timeout", hole.addr)):
        resp, how, local = t.http_exchange(addr, t.http_request(host), timeout=15)
        assert resp.status == status, resp
        assert resp.body.startswith(b"gatekeeper:"), resp
        acc = g.wait_access_for(local, timeout=15)
        assert acc["reason"] == reason and acc["upstream"] == up, acc
        assert acc["name"] == host and acc["decision"] == "allow", acc
    resp, _, _ = t.http_exchange(addr, t.http_request(A))
    assert resp.field("Name") == "A"


def test_routing_config_rules(tmp_path):
    text = """listeners:
  - name: tcp_routes
    listen: 127.0.0.1:0
    mode: tcp
    upstream: 127.0.0.1:1
    routes:
      - match: ["a.gk.test"]
        upstream: 127.0.0.1:2
  - name: tcp_host
    listen: 127.0.0.1:0
    mode: tcp
    upstream: $host:443
  - name: patterns
    listen: 127.0.0.1:0
    mode: tls
    routes:
      - match: ["A.gk.test"]
        upstream: 127.0.0.1:2
      - match: ["*foo.gk.test"]
        upstream: 127.0.0.1:2
      - match: ["a.*.gk.test"]
        upstream: 127.0.0.1:2
  - name: noupstream
    listen: 127.0.0.1:0
    mode: tls
    routes:
      - match: ["a.gk.test"]
"""
    path = h.write_config(text, tmp_path)
    r = h.run_gatekeeper(["-t", "-c", path])
    assert r.returncode == 1, r.stderr
    err = r.stderr
    base = os.path.basename(path)
    for line in (2, 9, 17, 19, 21, 27):
        assert re.search(r"%s:%d:\d+: " % (re.escape(base), line), err) or \
            re.search(r"%s:%d:\d+: " % (re.escape(path), line), err), (line, err)
    assert "routes" in err and "$host" in err and "lower case" in err
    # and a good one passes
    good = t.config(t.listener("ok", "tls", upstream="127.0.0.1:1", routes=[
        ("*", "$host:443"), (["a.gk.test", "*.b.gk.test"], "127.0.0.1:2", "v2")]),
        t.listener("web", "http", routes=[("*", "$host:80")]))
    r = h.run_gatekeeper(["-t", "-c", h.write_config(good, tmp_path)])
    assert r.returncode == 0, r.stderr
