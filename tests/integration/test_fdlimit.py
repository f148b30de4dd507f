"""The file descriptor limit: gatekeeper raises its soft RLIMIT_NOFILE to the
hard one at start (Docker 29 starts containers at a soft 1024), logs the
figure, warns when max_connections needs more than that (two descriptors per
relayed connection), at start and after a reload, and /metrics exports the
limit and the descriptors in use.

Each test starts gatekeeper with a low soft limit (set on this process
around the start, restored at once: the child inherits it)."""

import os
import resource
import signal
import socket
import time

import tlsutil as t
from gkharness import as_root_ok, free_port, poll
from test_admin import relay_once
from test_admin import get, samples

FDS = ("process_open_fds", frozenset())
MAX_FDS = ("process_max_fds", frozenset())

SOFT = 256


def hard_limit():
    """The limit gatekeeper may raise to: the hard one, or the kernel's ceiling."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    return hard


def start_low(gk, text, soft=SOFT):
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        return gk(text)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def records(g, msg):
    return [p for p in g.parsed() if p.get("msg", "") == msg]


def warnings(g):
    return [p for p in g.parsed()
            if p.get("msg", "").startswith("file descriptor limit below")]


def config(admin, upstream, max_connections=None):
    extra = {} if max_connections is None else {"max_connections": max_connections}
    return ("admin:\n  listen: 127.0.0.1:%d\n" % admin
            + t.config(t.listener("echo", upstream=upstream, **extra)))


def test_soft_limit_raised_to_hard_logged_and_exported(gk, echo):
    e = echo()
    admin = free_port()
    g = start_low(gk, config(admin, e.addr, max_connections=16))
    hard = hard_limit()
    rec = poll(lambda: records(g, "file descriptor limit"), 10, "the limit's log line", g)
    assert int(rec[0]["limit"]) == hard, rec
    assert int(rec[0]["was"]) == SOFT, rec
    assert warnings(g) == [], g.tail()
    assert relay_once(g.addr("echo"), b"ping") == b"ping"
    status, _, text = get(admin, "/metrics")
    assert status == 200
    m = samples(text)
    assert m[MAX_FDS] == hard
    # stdio, loop, listener, admin, resolver: a handful, far below the limit
    assert 5 <= m[FDS] < 200, m[FDS]
    assert "# TYPE process_max_fds gauge" in text and "# TYPE process_open_fds gauge" in text


def test_open_fds_follow_connections(gk, echo):
    e = echo()
    admin = free_port()
    g = start_low(gk, config(admin, e.addr, max_connections=0))
    before = samples(get(admin, "/metrics")[2])[FDS]
    held = []
    for _ in range(20):
        s = socket.create_connection(g.addr("echo"))
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        held.append(s)
    during = samples(get(admin, "/metrics")[2])[FDS]
    assert during >= before + 40, (before, during)  # two per relayed connection
    for s in held:
        s.close()
    poll(lambda: samples(get(admin, "/metrics")[2])[FDS] <= before + 2, 10,
         "descriptors given back", g)


def test_warns_when_max_connections_needs_more(gk, echo):
    e = echo()
    admin = free_port()
    hard = hard_limit()
    g = start_low(gk, config(admin, e.addr, max_connections=hard))
    w = poll(lambda: warnings(g), 10, "the warning", g)
    assert w[0]["level"] == "warn"
    assert int(w[0]["limit"]) == hard and int(w[0]["needed"]) > 2 * hard, w
    assert "ulimits" in w[0]["msg"]
    # a warning, not a refusal: it serves
    assert relay_once(g.addr("echo"), b"ping") == b"ping"


def test_no_max_connections_says_what_caps_it(gk, echo):
    e = echo()
    g = start_low(gk, config(free_port(), e.addr, max_connections=0))
    rec = poll(lambda: records(
        g, "listeners without max_connections are capped by the file descriptor limit"),
        10, "the cap's log line", g)
    assert 0 < int(rec[0]["connections"]) < hard_limit() // 2
    assert warnings(g) == []


def test_reload_checks_the_new_limits(gk, echo):
    e = echo()
    admin = free_port()
    g = start_low(gk, config(admin, e.addr, max_connections=16))
    assert warnings(g) == []
    path = g.config_path
    with open(path + ".tmp", "w") as f:
        f.write(as_root_ok(config(admin, e.addr, max_connections=hard_limit())))
    os.replace(path + ".tmp", path)
    g.proc.send_signal(signal.SIGHUP)
    poll(lambda: records(g, "reloaded"), 15, "the reload", g)
    w = poll(lambda: warnings(g), 10, "the warning after the reload", g)
    assert int(w[0]["needed"]) > 2 * hard_limit()
    time.sleep(0.1)
    assert relay_once(g.addr("echo"), b"ping") == b"ping"
