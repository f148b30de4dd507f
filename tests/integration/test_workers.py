"""workers: N event loops, one thread each, SO_REUSEPORT sockets on one
address: every worker serves, a drain covers all of them, limits are shared."""

import hashlib
import os
import signal
import socket
import threading

from gkharness import connect, echo_roundtrip, simple_config


def two_workers(upstream, **opts):
    return "workers: 2\n" + simple_config([("w", "127.0.0.1:0", upstream, opts)])


def test_two_workers_share_one_port_and_both_serve(gk, echo):
    e = echo()
    g = gk(two_workers(e.addr))
    addr = g.addr("w")
    # one 'listening' line (the first worker speaks for all), one port
    assert len([p for p in g.parsed() if p.get("msg") == "listening"]) == 1
    for i in range(60):
        assert echo_roundtrip(addr, b"n%d" % i) == b"n%d" % i
    g.wait_access(60)
    g.stop()
    closed = [p for p in g.parsed() if p.get("msg") == "listener closed"]
    assert len(closed) == 2, g.tail()
    counts = sorted(int(p["sessions"]) for p in closed)
    assert sum(counts) == 60
    # the kernel spreads connections over both sockets
    assert counts[0] > 0, counts


def test_two_workers_relay_intact_in_parallel(gk, echo):
    e = echo()
    g = gk(two_workers(e.addr))
    addr = g.addr("w")
    results = []

    def one(n):
        data = os.urandom(2 * 1024 * 1024)
        s = connect(addr)
        got = bytearray()

        def rd():
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got.extend(d)

        t = threading.Thread(target=rd)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(60)
        s.close()
        results.append(hashlib.sha256(got).digest() == hashlib.sha256(data).digest())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == [True] * 8


def test_two_workers_drain_on_sigterm(gk, echo):
    e = echo()
    g = gk(two_workers(e.addr))
    addr = g.addr("w")
    held = [connect(addr) for _ in range(6)]
    for s in held:
        s.sendall(b"hi")
        assert s.recv(10) == b"hi"
    g.signal(signal.SIGTERM)
    g.wait_log(r"msg=draining worker=0")
    g.wait_log(r"msg=draining worker=1")
    # open sessions still work while draining, then end normally
    for s in held:
        s.sendall(b"more")
        assert s.recv(10) == b"more"
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""
        s.close()
    assert g.wait_exit(15) == 0
    reasons = [p["reason"] for p in g.access_lines()]
    assert reasons.count("closed") == 6, reasons


def test_two_workers_share_max_connections(gk, echo):
    e = echo()
    # 4 in all: each worker takes its share, 2
    g = gk(two_workers(e.addr, max_connections=4))
    addr = g.addr("w")
    held = [connect(addr) for _ in range(8)]
    served, waiting = [], []
    for s in held:
        s.sendall(b"x")
        s.settimeout(2)
        try:
            (served if s.recv(1) == b"x" else waiting).append(s)
        except socket.timeout:
            waiting.append(s)
    # the limit holds across workers; the rest wait in the backlog, not refused
    assert 1 <= len(served) <= 4, len(served)
    assert len(waiting) >= 4
    for s in served:
        s.close()
    for s in waiting:
        s.settimeout(20)
        assert s.recv(1) == b"x"
        s.close()
