"""Decision counters: each listener counts the sessions it routed (allow) and
refused (deny), and reports the totals in one line when it closes."""

import socket

import tlsutil as t
from gkharness import connect


def test_listener_counts_allowed_and_denied_sessions(gk, echo):
    e = echo()
    g = gk(t.config(t.listener("edge", "tls", routes=[(["a.gk.test"], e.addr)])))
    addr = g.addr("edge")
    for name in ("a.gk.test", "a.gk.test", "x.gk.test", "y.gk.test", "z.gk.test"):
        s = connect(addr)
        t.send_ignoring_reset(s, t.client_hello(name))
        if name != "a.gk.test":
            t.read_until_close(s)
        s.shutdown(socket.SHUT_WR)
        t.read_until_close(s)
        s.close()
    g.wait_access(5)
    g.stop()
    closed = [p for p in g.parsed() if p.get("msg") == "listener closed"]
    assert len(closed) == 1, g.tail()
    assert closed[0]["listener"] == "edge"
    assert (closed[0]["sessions"], closed[0]["allowed"], closed[0]["denied"]) == ("5", "2", "3"), closed
