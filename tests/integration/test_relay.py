"""Relay behaviour of gatekeeper in tcp mode, against real loopback backends:
byte integrity, concurrency, half-close, access-log fields, upstream and
client failures, timeouts, max_connections, IPv6 and several listeners.

Timeouts below are upper bounds for waiting, never assertions on speed."""

import hashlib
import http.client
import socket
import struct
import threading
import time

import pytest

from gkharness import (
    connect,
    deterministic_bytes,
    echo_roundtrip,
    free_port,
    join_hostport,
    recv_all,
    recv_exact,
    rss_bytes,
    run_gatekeeper,
    sha256,
    simple_config,
    wait_closed,
    wait_stalled,
    write_config,
)

BIG = 64 << 20  # 64 MiB each way
LINGER0 = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST


@pytest.fixture(autouse=True, params=["copy", "splice"])
def relay_mode(request, monkeypatch):
    """Every relay test runs twice: bytes copied through user space
    (splice: off), and moved with splice(2) from the first byte (splice: on)."""
    import gkharness

    splice = {"copy": "off", "splice": "on"}[request.param]
    base = gkharness.simple_config

    def with_splice(listeners, defaults=None, **kw):
        return base(listeners, defaults=dict(defaults or {}, splice=splice), **kw)

    monkeypatch.setitem(globals(), "simple_config", with_splice)
    return request.param


def one_listener(upstream, name="t", listen="127.0.0.1:0", **opts):
    return simple_config([(name, listen, upstream, opts)])


def client_str(sock):
    return join_hostport(*sock.getsockname()[:2])


# --------------------------------------------------------------------------
# Byte integrity


def test_upload_64mib_intact(gk, sink):
    k = sink()
    g = gk(one_listener(k.addr))
    data = deterministic_bytes(BIG, seed=11)
    s = connect(g.addr("t"), timeout=60)
    me = client_str(s)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    reply = recv_all(s, timeout=60)
    s.close()
    res = k.wait_results(1)[0]
    assert res["bytes"] == BIG
    assert res["digest"] == sha256(data)
    assert reply.decode() == sha256(data)
    acc = g.wait_access_for(me)
    assert int(acc["bytes_in"]) == BIG
    assert int(acc["bytes_out"]) == 64
    assert acc["reason"] == "closed"


def test_download_64mib_intact(gk, source):
    src = source(BIG, seed=12)
    g = gk(one_listener(src.addr))
    s = connect(g.addr("t"), timeout=60)
    me = client_str(s)
    got = recv_all(s, timeout=60)
    assert len(got) == BIG
    assert sha256(got) == src.digest
    s.close()
    acc = g.wait_access_for(me)
    assert int(acc["bytes_out"]) == BIG
    assert int(acc["bytes_in"]) == 0
    assert acc["reason"] == "closed"


def test_whoami_http_through_proxy(gk, whoami):
    w = whoami(name="alpha")
    g = gk(one_listener(w.addr))
    host, port = g.addr("t")
    c = http.client.HTTPConnection(host, port, timeout=20)
    c.request("GET", "/hello?x=1", headers={"X-Probe": "gk-test"})
    r = c.getresponse()
    body = r.read()
    assert r.status == 200
    assert b"/hello?x=1" in body
    assert b"gk-test" in body
    assert b"alpha" in body
    n = 5 * 1000 * 1000 + 7
    c.request("GET", "/data?size=%d" % n)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200
    assert len(body) == n
    payload = deterministic_bytes(300000, seed=3)
    c.request("POST", "/echo", body=payload, headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    assert r.status == 200
    assert r.read() == payload
    c.close()
    g.wait_access(1)


def test_concurrent_clients_intact(gk, echo):
    e = echo()
    g = gk(one_listener(e.addr))
    addr = g.addr("t")
    n_clients = 16
    size = 1 << 20
    results = {}
    errors = []

    def client(i):
        try:
            data = deterministic_bytes(size, seed=100 + i)
            s = connect(addr, timeout=60)
            sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
            sender.start()
            got = recv_all(s, timeout=60)
            sender.join(60)
            s.close()
            results[i] = (sha256(got), sha256(data), len(got))
        except Exception as ex:  # reported below
            errors.append((i, repr(ex)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == n_clients
    for i, (got, want, n) in results.items():
        assert n == size, "client %d got %d bytes" % (i, n)
        assert got == want, "client %d data corrupted" % i
    acc = g.wait_access(n_clients)
    assert all(a["reason"] == "closed" for a in acc), [a["reason"] for a in acc]
    assert all(int(a["bytes_in"]) == size and int(a["bytes_out"]) == size for a in acc)


# --------------------------------------------------------------------------
# Half-close


def test_half_close_client_first(gk, echo):
    """Client sends everything and shuts its write side before reading:
    the echo of all it sent must still come back, then EOF."""
    e = echo()
    g = gk(one_listener(e.addr))
    data = deterministic_bytes(4 << 20, seed=21)
    s = connect(g.addr("t"), timeout=30)
    me = client_str(s)
    sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
    sender.start()
    got = recv_all(s, timeout=30)
    sender.join(30)
    s.close()
    assert len(got) == len(data)
    assert sha256(got) == sha256(data)
    acc = g.wait_access_for(me)
    assert acc["reason"] == "closed"


def test_half_close_client_first_then_reply(gk, handler_server):
    """Upstream reads to EOF first and only then answers: the answer must
    reach the client whose write side is already shut."""

    def handler(conn, srv):
        n = 0
        while True:
            b = conn.recv(65536)
            if not b:
                break
            n += len(b)
        time.sleep(0.2)  # answer well after the EOF went through
        conn.sendall(b"got %d\n" % n)
        conn.shutdown(socket.SHUT_WR)
        srv.record(n)

    srv = handler_server(handler)
    g = gk(one_listener(srv.addr))
    s = connect(g.addr("t"), timeout=30)
    s.sendall(b"x" * 100000)
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s, timeout=30) == b"got 100000\n"
    s.close()
    assert srv.wait_results(1) == [100000]


def test_half_close_upstream_first(gk, source):
    """Upstream sends its data and shuts its write side first; the client
    reads to EOF, then still sends, and the upstream receives it all."""
    src = source(2 << 20, seed=31)
    g = gk(one_listener(src.addr))
    s = connect(g.addr("t"), timeout=30)
    me = client_str(s)
    got = recv_all(s, timeout=30)
    assert sha256(got) == src.digest
    payload = deterministic_bytes(3 << 20, seed=32)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    # both directions are done: the connection must now end
    assert wait_closed(s, timeout=15) == "eof"
    s.close()
    res = src.wait_results(1)[0]
    assert res["error"] is None
    assert res["received_bytes"] == len(payload)
    assert res["received_digest"] == sha256(payload)
    acc = g.wait_access_for(me)
    assert acc["reason"] == "closed"
    assert int(acc["bytes_in"]) == len(payload)
    assert int(acc["bytes_out"]) == src.size


# --------------------------------------------------------------------------
# Access log


def test_access_log_fields(gk, sink):
    k = sink()
    g = gk(one_listener(k.addr, name="acc"))
    s = connect(g.addr("acc"))
    me = client_str(s)
    s.sendall(b"a" * 100000)
    s.shutdown(socket.SHUT_WR)
    assert len(recv_all(s)) == 64
    s.close()
    acc = g.wait_access_for(me)
    line = [l for l in g.lines() if "msg=access" in l][0]
    assert "level=info" in line
    assert acc["listener"] == "acc"
    assert acc["client"] == me
    assert acc["upstream"] == k.addr
    assert acc["bytes_in"] == "100000"
    assert acc["bytes_out"] == "64"
    assert acc["reason"] == "closed"
    assert int(acc["duration_ms"]) >= 0
    assert "ts" in acc


def test_access_log_json(gk, echo):
    e = echo()
    cfg = "log:\n  format: json\n" + one_listener(e.addr, name="js")
    g = gk(cfg)
    s = connect(g.addr("js"))
    me = client_str(s)
    s.sendall(b"hello json")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"hello json"
    s.close()
    acc = g.wait_access_for(me)
    raw = [l for l in g.lines() if '"access"' in l]
    assert raw and raw[0].lstrip().startswith("{"), g.tail()
    assert acc["level"] == "info"
    assert acc["listener"] == "js"
    assert acc["upstream"] == e.addr
    assert acc["bytes_in"] == 10 and isinstance(acc["bytes_in"], int)
    assert acc["bytes_out"] == 10 and isinstance(acc["bytes_out"], int)
    assert isinstance(acc["duration_ms"], int)
    assert acc["reason"] == "closed"


# --------------------------------------------------------------------------
# Failures of the upstream


def test_connect_timeout(gk, blackhole, echo):
    b = blackhole()
    e = echo()
    cfg = simple_config(
        [
            ("hole", "127.0.0.1:0", b.addr, {"connect_timeout": "1s"}),
            ("ok", "127.0.0.1:0", e.addr),
        ]
    )
    g = gk(cfg)
    s = connect(g.addr("hole"))
    me = client_str(s)
    # while that connect is pending, the other listener serves
    assert echo_roundtrip(g.addr("ok"), b"still here") == b"still here"
    assert wait_closed(s, timeout=20) in ("eof", "reset")
    s.close()
    acc = g.wait_access_for(me)
    assert acc["reason"] == "connect_timeout"
    assert acc["listener"] == "hole"
    # the access line names the address that did not answer
    assert acc["upstream"] == b.addr, acc
    assert int(acc["bytes_out"]) == 0
    # and after it, too
    assert echo_roundtrip(g.addr("ok"), b"after") == b"after"
    assert g.alive()


def test_connect_refused(gk, echo):
    e = echo()
    dead = free_port()
    cfg = simple_config(
        [
            ("dead", "127.0.0.1:0", "127.0.0.1:%d" % dead, {"connect_timeout": "5s"}),
            ("ok", "127.0.0.1:0", e.addr),
        ]
    )
    g = gk(cfg)
    clients = []
    for _ in range(3):
        s = connect(g.addr("dead"))
        clients.append(client_str(s))
        s.sendall(b"anyone?")
        assert wait_closed(s, timeout=15) in ("eof", "reset")
        s.close()
        assert echo_roundtrip(g.addr("ok"), b"ok") == b"ok"
    for c in clients:
        acc = g.wait_access_for(c)
        assert acc["reason"] == "connect_failed"
        # the access line names the address that refused
        assert acc["upstream"] == "127.0.0.1:%d" % dead, acc
        assert int(acc["bytes_out"]) == 0
    assert g.alive()


def test_upstream_dies_mid_transfer(gk, handler_server, echo):
    """The upstream resets the connection in the middle of a transfer: the
    client's connection is closed, reason=upstream_error, others go on."""
    die = threading.Event()
    chunk = deterministic_bytes(256 << 10, seed=41)

    def handler(conn, srv):
        conn.sendall(chunk)
        die.wait(30)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        conn.close()  # RST
        srv.record("reset")

    srv = handler_server(handler)
    e = echo()
    cfg = simple_config([("dying", "127.0.0.1:0", srv.addr), ("ok", "127.0.0.1:0", e.addr)])
    g = gk(cfg)
    other = connect(g.addr("ok"))
    other.sendall(b"before")
    assert recv_exact(other, 6) == b"before"

    s = connect(g.addr("dying"))
    me = client_str(s)
    assert recv_exact(s, len(chunk)) == chunk
    die.set()
    srv.wait_results(1)
    assert wait_closed(s, timeout=15) in ("eof", "reset")
    s.close()
    acc = g.wait_access_for(me)
    assert acc["reason"] == "upstream_error"
    assert int(acc["bytes_out"]) == len(chunk)

    # the unrelated session opened before the failure still works
    other.sendall(b"after")
    assert recv_exact(other, 5) == b"after"
    other.shutdown(socket.SHUT_WR)
    assert recv_all(other) == b""
    other.close()
    assert echo_roundtrip(g.addr("ok"), b"new") == b"new"


# --------------------------------------------------------------------------
# Timeouts and limits


def test_idle_timeout(gk, echo):
    e = echo()
    g = gk(one_listener(e.addr, idle_timeout="1s"))
    idle = connect(g.addr("t"))
    idle_me = client_str(idle)
    idle.sendall(b"i")
    assert recv_exact(idle, 1) == b"i"

    active = connect(g.addr("t"))
    active_me = client_str(active)
    stop = threading.Event()
    failures = []
    rounds = [0]

    def keep_busy():
        try:
            while not stop.is_set():
                active.sendall(b"p")
                if recv_exact(active, 1, timeout=10) != b"p":
                    failures.append("bad echo")
                    return
                rounds[0] += 1
                time.sleep(0.1)
        except Exception as ex:
            failures.append(repr(ex))

    t = threading.Thread(target=keep_busy)
    t.start()
    started = time.monotonic()
    try:
        assert wait_closed(idle, timeout=20) in ("eof", "reset")
        # keep the active one going for a while longer than the idle timeout
        while time.monotonic() - started < 3.0:
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(15)
    idle.close()
    assert not failures, failures
    acc = g.wait_access_for(idle_me)
    assert acc["reason"] == "idle_timeout"
    # the active connection is still open and working
    active.sendall(b"last")
    assert recv_exact(active, 4) == b"last"
    assert not [a for a in g.access_lines() if a.get("client") == active_me]
    active.shutdown(socket.SHUT_WR)
    assert recv_all(active) == b""
    active.close()
    assert g.wait_access_for(active_me)["reason"] == "closed"


def test_max_connections_queues_extra_clients(gk, echo):
    e = echo()
    g = gk(one_listener(e.addr, max_connections=2))
    addr = g.addr("t")
    a = connect(addr)
    a.sendall(b"A")
    assert recv_exact(a, 1) == b"A"
    b = connect(addr)
    b.sendall(b"B")
    assert recv_exact(b, 1) == b"B"

    # the third connects (kernel backlog) but is not served yet
    c = connect(addr)
    c_me = client_str(c)
    c.sendall(b"C")
    c.settimeout(1.5)
    with pytest.raises(socket.timeout):
        c.recv(1)
    assert e.accepted == 2, "a third upstream connection was made over max_connections=2"

    # a slot frees: the third is served, and nobody was reset
    a.shutdown(socket.SHUT_WR)
    assert recv_all(a) == b""
    a.close()
    assert recv_exact(c, 1, timeout=15) == b"C"
    b.sendall(b"BB")
    assert recv_exact(b, 2) == b"BB"
    for s in (b, c):
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s, timeout=15) == b""
        s.close()
    acc = g.wait_access(3)
    assert [x["reason"] for x in acc] == ["closed"] * 3
    assert g.wait_access_for(c_me)["bytes_in"] in ("1", 1)


# --------------------------------------------------------------------------
# Addresses and listeners


def test_ipv6_listener_to_ipv6_upstream(gk, echo, ipv6_available):
    e = echo(host="::1")
    g = gk(one_listener(e.addr, name="v6", listen="[::1]:0"))
    host, port = g.addr("v6")
    assert host == "::1"
    line = [l for l in g.lines() if "msg=listening" in l][0]
    assert "addr=[::1]:%d" % port in line
    s = connect((host, port))
    me = client_str(s)
    assert me.startswith("[::1]:")
    s.sendall(b"over v6")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"over v6"
    s.close()
    acc = g.wait_access_for(me)
    assert acc["upstream"] == "[::1]:%d" % e.port
    assert acc["reason"] == "closed"


def test_several_listeners_one_process(gk, source):
    srcs = [source(100000 + i * 1000, seed=50 + i) for i in range(3)]
    cfg = simple_config([("l%d" % i, "127.0.0.1:0", s.addr) for i, s in enumerate(srcs)])
    g = gk(cfg)
    ports = {g.addr("l%d" % i)[1] for i in range(3)}
    assert len(ports) == 3
    for rnd in range(2):
        for i, s in enumerate(srcs):
            c = connect(g.addr("l%d" % i))
            got = recv_all(c)
            c.close()
            assert sha256(got) == s.digest, "listener l%d relayed to the wrong upstream" % i
    acc = g.wait_access(6)
    assert sorted(a["listener"] for a in acc) == ["l0", "l0", "l1", "l1", "l2", "l2"]


def test_several_listeners_whoami_names(gk, whoami):
    w1 = whoami(name="alpha")
    w2 = whoami(name="bravo")
    g = gk(simple_config([("a", "127.0.0.1:0", w1.addr), ("b", "127.0.0.1:0", w2.addr)]))
    for lname, want, other in (("a", b"alpha", b"bravo"), ("b", b"bravo", b"alpha")):
        host, port = g.addr(lname)
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.request("GET", "/")
        body = c.getresponse().read()
        c.close()
        assert want in body and other not in body


def test_client_reset_does_not_disturb_others(gk, echo):
    e = echo()
    g = gk(one_listener(e.addr))
    addr = g.addr("t")
    keep = connect(addr)
    keep.sendall(b"k")
    assert recv_exact(keep, 1) == b"k"
    resets = []
    for i in range(30):
        s = connect(addr)
        resets.append(client_str(s))
        if i % 2:
            s.sendall(b"some bytes then reset")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        s.close()
    keep.sendall(b"still")
    assert recv_exact(keep, 5) == b"still"
    assert echo_roundtrip(addr, b"fresh") == b"fresh"
    # every reset connection that was logged ended as a client-side end
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mine = [a for a in g.access_lines() if a.get("client") in resets]
        if len(mine) == len(resets):
            break
        time.sleep(0.2)
    for a in [a for a in g.access_lines() if a.get("client") in resets]:
        assert a["reason"] in ("client_error", "closed"), a
    keep.shutdown(socket.SHUT_WR)
    assert recv_all(keep) == b""
    keep.close()
    assert g.alive()


# --------------------------------------------------------------------------
# Back-pressure, vanishing clients, many connections


def _sysctl_max(name):
    with open("/proc/sys/net/ipv4/" + name) as f:
        return int(f.read().split()[-1])


def test_backpressure_download_slow_client(gk, source):
    """A client that does not read stops the upstream (watermarks), rather
    than gatekeeper buffering the whole stream in memory."""
    src = source(BIG, seed=71)
    g = gk(one_listener(src.addr))
    base = rss_bytes(g.proc.pid)
    # A fixed receive buffer: the kernel may otherwise grow the client's
    # (tcp_rmem allows 32 MiB here), which would say nothing about gatekeeper.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    s.settimeout(60)
    s.connect(g.addr("t"))
    stalled_at = wait_stalled(lambda: src.progress, quiet=0.5, timeout=30)
    grown = rss_bytes(g.proc.pid) - base
    # What may sit in kernel buffers: gatekeeper's upstream socket can be
    # autotuned up to tcp_rmem's maximum (32 MiB on some kernels) before it
    # stops reading, plus two send buffers, the pipe and the client's
    # buffer. Beyond that, bytes could only be in gatekeeper's memory.
    in_kernel = _sysctl_max("tcp_rmem") + 2 * _sysctl_max("tcp_wmem") + (4 << 20)
    assert stalled_at < min(in_kernel, BIG), \
        "upstream sent %d bytes to a client that reads nothing" % stalled_at
    assert grown < 16 << 20, "gatekeeper RSS grew by %d bytes" % grown
    got = recv_all(s, timeout=60)
    s.close()
    assert sha256(got) == src.digest


def test_backpressure_upload_slow_upstream(gk, handler_server):
    go = threading.Event()

    def handler(conn, srv):
        go.wait(60)
        h = hashlib.sha256()
        while True:
            b = conn.recv(1 << 16)
            if not b:
                break
            h.update(b)
        conn.sendall(h.hexdigest().encode())
        conn.shutdown(socket.SHUT_WR)

    srv = handler_server(handler)
    g = gk(one_listener(srv.addr))
    base = rss_bytes(g.proc.pid)
    data = deterministic_bytes(BIG, seed=72)
    s = connect(g.addr("t"), timeout=60)
    sent = [0]

    def send():
        view = memoryview(data)
        while sent[0] < len(view):
            sent[0] += s.send(view[sent[0] : sent[0] + (1 << 16)])
        s.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=send)
    t.start()
    try:
        stalled_at = wait_stalled(lambda: sent[0], quiet=0.5, timeout=30)
        grown = rss_bytes(g.proc.pid) - base
    finally:
        go.set()
    t.join(60)
    # What may sit in kernel buffers: gatekeeper's client socket and the
    # upstream's socket can each be autotuned up to tcp_rmem's maximum
    # (32 MiB on some kernels), plus two send buffers. Beyond that, bytes
    # could only be in gatekeeper's memory, which the RSS check bounds.
    in_kernel = 2 * _sysctl_max("tcp_rmem") + 2 * _sysctl_max("tcp_wmem") + (4 << 20)
    assert stalled_at < min(in_kernel, BIG), \
        "client pushed %d bytes to an upstream that reads nothing" % stalled_at
    assert grown < 16 << 20, "gatekeeper RSS grew by %d bytes" % grown
    assert recv_all(s, timeout=60).decode() == sha256(data)
    s.close()


def test_client_vanishes_mid_download(gk, source, echo):
    """The client resets while gatekeeper is writing to it: the session
    ends as client_error and the process (SIGPIPE ignored) keeps serving."""
    src = source(BIG, seed=73)
    e = echo()
    g = gk(simple_config([("big", "127.0.0.1:0", src.addr), ("ok", "127.0.0.1:0", e.addr)]))
    for _ in range(3):
        s = connect(g.addr("big"))
        me = client_str(s)
        assert len(recv_exact(s, 1 << 20)) == 1 << 20
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        s.close()
        acc = g.wait_access_for(me, timeout=15)
        assert acc["reason"] == "client_error", acc
        assert g.alive()
    assert echo_roundtrip(g.addr("ok"), b"alive") == b"alive"
    # the upstream side of those sessions was closed too
    src.wait_results(3, timeout=15)


def test_many_short_connections(gk, echo):
    e = echo()
    g = gk(one_listener(e.addr))
    addr = g.addr("t")
    errors = []

    def worker(w):
        for i in range(25):
            msg = b"w%d-i%d" % (w, i)
            try:
                got = echo_roundtrip(addr, msg)
                if got != msg:
                    errors.append((msg, got))
            except Exception as ex:
                errors.append((msg, repr(ex)))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    acc = g.wait_access(400, timeout=30)
    assert len(acc) == 400
    assert {a["reason"] for a in acc} == {"closed"}


# --------------------------------------------------------------------------
# Listen address forms


def test_wildcard_listen_forms(gk, echo):
    e = echo()
    g = gk(simple_config([("colon", ":0", e.addr), ("star", "*:0", e.addr), ("zero", "0.0.0.0:0", e.addr)]))
    for name in ("colon", "star", "zero"):
        host, port = g.addr(name)
        assert host == "0.0.0.0", (name, host)
        assert echo_roundtrip(("127.0.0.1", port), name.encode()) == name.encode()


def test_ipv6_any_is_v6only_and_coexists_with_v4(gk, echo, ipv6_available):
    e = echo()
    port = free_port()
    e6 = echo(host="::1")
    g = gk(
        simple_config(
            [
                ("v4", "0.0.0.0:%d" % port, e.addr),
                ("v6", "[::]:%d" % port, e6.addr),
            ]
        )
    )
    assert g.addr("v4") == ("0.0.0.0", port)
    assert g.addr("v6") == ("::", port)
    assert echo_roundtrip(("127.0.0.1", port), b"four") == b"four"
    assert echo_roundtrip(("::1", port), b"six") == b"six"
    assert e.accepted == 1 and e6.accepted == 1, "v4 and v6 traffic went to the wrong listener"


def test_ipv6_only_any_does_not_take_v4(gk, echo, ipv6_available):
    e = echo()
    g = gk(one_listener(e.addr, name="v6", listen="[::]:0"))
    _, port = g.addr("v6")
    assert echo_roundtrip(("::1", port), b"six") == b"six"
    with pytest.raises(ConnectionRefusedError):
        connect(("127.0.0.1", port), timeout=5).close()


def test_cross_family_relay(gk, echo, ipv6_available):
    e6 = echo(host="::1")
    e4 = echo()
    g = gk(
        simple_config(
            [
                ("to6", "127.0.0.1:0", e6.addr),
                ("to4", "[::1]:0", e4.addr),
            ]
        )
    )
    assert echo_roundtrip(g.addr("to6"), b"4->6") == b"4->6"
    assert echo_roundtrip(g.addr("to4"), b"6->4") == b"6->4"
    ups = sorted(a["upstream"] for a in g.wait_access(2))
    assert ups == sorted([e6.addr, e4.addr])


def test_listen_address_in_use_fails_start(tmp_path, echo):
    e = echo()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        cfg = simple_config([("free", "127.0.0.1:0", e.addr), ("taken", "127.0.0.1:%d" % port, e.addr)])
        path = write_config(cfg, tmp_path)
        r = run_gatekeeper(["-c", path], timeout=15)
    finally:
        holder.close()
    assert r.returncode != 0
    assert "msg=ready" not in r.stderr
    assert "127.0.0.1:%d" % port in r.stderr, r.stderr
