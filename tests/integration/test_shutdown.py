"""Shutdown: SIGTERM/SIGINT drain in-flight sessions, refuse new ones, cut
what is left at drain_timeout, and a second signal exits at once."""

import signal
import socket
import time

import pytest

from gkharness import (
    connect,
    deterministic_bytes,
    echo_roundtrip,
    recv_all,
    recv_exact,
    sha256,
    simple_config,
    wait_closed,
)


def cfg(upstream, drain="30s", **opts):
    return simple_config([("t", "127.0.0.1:0", upstream, opts)], defaults={"drain_timeout": drain})


def assert_refused(addr, timeout=5):
    """The listener is closed: a connect is refused.  The draining line and
    the close of the listeners happen in one step of gatekeeper, in either
    order, so allow that step to finish."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = connect(addr, timeout=5)
        except ConnectionRefusedError:
            return
        s.close()
        if time.monotonic() > deadline:
            pytest.fail("listener %r still accepts connections while draining" % (addr,))
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_drain_completes_in_flight_transfer(gk, sink, sig):
    k = sink()
    g = gk(cfg(k.addr, drain="30s"))
    addr = g.addr("t")
    data = deterministic_bytes(4 << 20, seed=61)
    chunks = [data[i : i + (256 << 10)] for i in range(0, len(data), 256 << 10)]

    s = connect(addr, timeout=30)
    me = s.getsockname()[:2]
    s.sendall(chunks[0])
    k.wait_accepted(1)  # the session is relaying

    mark = g.mark()
    g.signal(sig)
    m = g.wait_log(r"msg=draining", after=mark)
    assert "sessions=1" in m.string, m.string

    # listeners are closed: new connections are refused
    assert_refused(addr)

    # the in-flight transfer goes on, paced by the test, in both directions
    for c in chunks[1:]:
        s.sendall(c)
        time.sleep(0.05)
    assert g.alive(), "gatekeeper exited while a session was still draining"
    s.shutdown(socket.SHUT_WR)
    reply = recv_all(s, timeout=30)
    s.close()
    assert reply.decode() == sha256(data)
    assert k.wait_results(1)[0]["digest"] == sha256(data)

    assert g.wait_exit(20) == 0
    acc = g.wait_access_for(me)
    assert acc["reason"] == "closed"
    assert int(acc["bytes_in"]) == len(data)
    g.wait_log(r"msg=exit", after=mark)
    assert "reason=shutdown" not in g.logs()


def test_drain_with_no_sessions_exits_zero(gk, echo):
    e = echo()
    g = gk(cfg(e.addr, drain="30s"))
    assert echo_roundtrip(g.addr("t"), b"x") == b"x"
    g.signal(signal.SIGTERM)
    g.wait_log(r"msg=draining")
    assert g.wait_exit(15) == 0
    g.wait_log(r"msg=exit")


def test_drain_timeout_cuts_stuck_session(gk, echo):
    e = echo()
    g = gk(cfg(e.addr, drain="1s", idle_timeout="10m"))
    addr = g.addr("t")
    s = connect(addr)
    me = s.getsockname()[:2]
    s.sendall(b"held open")
    assert recv_exact(s, 9) == b"held open"

    g.signal(signal.SIGTERM)
    g.wait_log(r"msg=draining")
    assert wait_closed(s, timeout=20) in ("eof", "reset")
    s.close()
    assert g.wait_exit(20) == 0
    acc = g.wait_access_for(me)
    assert acc["reason"] == "shutdown"
    assert int(acc["bytes_in"]) == 9 and int(acc["bytes_out"]) == 9
    g.wait_log(r"msg=exit")


def test_second_signal_exits_at_once(gk, echo):
    e = echo()
    g = gk(cfg(e.addr, drain="120s", idle_timeout="10m"))
    s = connect(g.addr("t"))
    s.sendall(b"live")
    assert recv_exact(s, 4) == b"live"

    g.signal(signal.SIGTERM)
    g.wait_log(r"msg=draining")
    # the session keeps working during the drain
    s.sendall(b"more")
    assert recv_exact(s, 4) == b"more"
    g.signal(signal.SIGTERM)
    # drain_timeout is 120s: gone within a few seconds means "at once"
    g.wait_exit(5)
    assert wait_closed(s, timeout=10) in ("eof", "reset")
    s.close()


def test_sigint_then_sigterm_exits_at_once(gk, echo):
    e = echo()
    g = gk(cfg(e.addr, drain="120s", idle_timeout="10m"))
    s = connect(g.addr("t"))
    s.sendall(b"z")
    assert recv_exact(s, 1) == b"z"
    g.signal(signal.SIGINT)
    g.wait_log(r"msg=draining")
    g.signal(signal.SIGTERM)
    g.wait_exit(5)
    s.close()


def test_sessions_of_several_listeners_drain(gk, echo, sink):
    """Draining covers every listener; exit comes after the last session."""
    e = echo()
    k = sink()
    conf = simple_config(
        [("a", "127.0.0.1:0", e.addr), ("b", "127.0.0.1:0", k.addr)],
        defaults={"drain_timeout": "30s"},
    )
    g = gk(conf)
    sa = connect(g.addr("a"))
    sa.sendall(b"a1")
    assert recv_exact(sa, 2) == b"a1"
    sb = connect(g.addr("b"))
    sb.sendall(b"b1")
    k.wait_accepted(1)

    g.signal(signal.SIGTERM)
    m = g.wait_log(r"msg=draining")
    assert "sessions=2" in m.string, m.string
    assert_refused(g.addr("a"))
    assert_refused(g.addr("b"))

    # end the first session; the process must keep running for the second
    sa.shutdown(socket.SHUT_WR)
    assert recv_all(sa) == b""
    sa.close()
    g.wait_access(1)
    time.sleep(0.5)
    assert g.alive(), "gatekeeper exited before its last session ended"
    sb.sendall(b"b2")
    sb.shutdown(socket.SHUT_WR)
    assert recv_all(sb).decode() == sha256(b"b1b2")
    sb.close()
    assert g.wait_exit(20) == 0
    acc = g.wait_access(2)
    assert [a["reason"] for a in acc] == ["closed", "closed"]
