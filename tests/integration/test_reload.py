"""SIGHUP reload: a valid file takes over without refusing a connection; an
invalid one leaves the running config in force; kept listeners keep their
sockets, new ones open, removed ones close while their sessions finish;
sessions keep the config they started with."""

import os
import random
import signal
import socket
import threading
import time
import urllib.request

import pytest

import subprocess

import tlsutil as t
from gkharness import WHOAMI_BIN, as_root_ok, connect, free_port, recv_all


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(as_root_ok(text))
    os.replace(tmp, path)  # the reload never reads half a file


def hup_and_wait(g, n_before, msg="reloaded"):
    """Send SIGHUP and wait for the n_before+1-th line with msg."""
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while sum(1 for p in g.parsed() if p.get("msg", "").startswith(msg)) <= n_before:
        assert time.monotonic() < deadline, g.tail()
        time.sleep(0.05)


def count(g, msg):
    return sum(1 for p in g.parsed() if p.get("msg", "").startswith(msg))


def config(port, upstream, extra="", workers=1, admin=None, level="info"):
    head = "log:\n  level: %s\nworkers: %d\n" % (level, workers)
    if admin:
        head += "admin:\n  listen: 127.0.0.1:%d\n" % admin
    return head + "listeners:\n" + t.listener("main", upstream=upstream, listen="127.0.0.1:%d" % port) + extra


@pytest.mark.parametrize("workers", [1, 2])
def test_twenty_reloads_under_load_lose_nothing(gk, echo, workers):
    e = echo()
    port = free_port()
    extra_port = free_port()
    cfg_a = config(port, e.addr, workers=workers)
    cfg_b = config(port, e.addr, workers=workers,
                   extra=t.listener("extra", upstream=e.addr, listen="127.0.0.1:%d" % extra_port,
                                    idle_timeout="30s"))
    g = gk(cfg_a)
    stop = threading.Event()
    done, failures = [0], []

    def client(seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            data = rnd.randbytes(rnd.randint(1, 256 << 10))
            try:
                s = connect(("127.0.0.1", port), timeout=15)
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                got = recv_all(s, timeout=15)
                s.close()
            except OSError as err:
                failures.append(repr(err))
                continue
            if got != data:
                failures.append("corrupted: sent %d bytes, got %d" % (len(data), len(got)))
            done[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    try:
        for i in range(20):
            write(g.config_path, cfg_b if i % 2 == 0 else cfg_a)
            hup_and_wait(g, i)
            time.sleep(0.05)
    finally:
        stop.set()
        for th in threads:
            th.join(60)
    assert failures == [], failures[:5]
    assert done[0] > 20, done
    assert count(g, "reloaded") == 20 and count(g, "reload failed") == 0, g.tail()
    assert g.alive()


def test_invalid_file_keeps_the_running_config(gk, echo):
    e = echo()
    port, admin = free_port(), free_port()
    good = config(port, e.addr, admin=admin)
    g = gk(good)
    held = connect(("127.0.0.1", port))
    write(g.config_path, good.replace("    upstream:", "    upstrem:"))
    hup_and_wait(g, 0, "reload failed")
    lines = [p for p in g.parsed() if p.get("msg", "").startswith("reload failed")]
    assert any("gk.yaml:" in p.get("error", "") and "did you mean 'upstream'" in p["error"]
               for p in lines), lines
    # still serving: the held connection and new ones
    held.sendall(b"held")
    assert held.recv(4) == b"held"
    held.close()
    s = connect(("127.0.0.1", port))
    s.sendall(b"new")
    assert s.recv(3) == b"new"
    s.close()
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10) as r:
        text = r.read().decode()
    assert 'gatekeeper_reloads_total{result="failed"} 1' in text, text
    assert 'gatekeeper_reloads_total{result="ok"} 0' in text, text
    # a listener address already taken: also refused as a whole
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        write(g.config_path, good + t.listener("clash", upstream=e.addr,
                                               listen="127.0.0.1:%d" % taken.getsockname()[1]))
        hup_and_wait(g, 1, "reload failed")
    finally:
        taken.close()
    s = connect(("127.0.0.1", port))
    s.sendall(b"still")
    assert s.recv(5) == b"still"
    s.close()
    assert g.alive()


def http_get(s, reader, host="x", path="/"):
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
    return reader.response()


def test_changes_take_effect_for_new_connections_only(gk, whoami):
    wa, wb = whoami(name="A"), whoami(name="B")
    port, old_port, new_port = free_port(), free_port(), free_port()
    before = (config(port, wa.addr)
              + t.listener("old", upstream=wa.addr, listen="127.0.0.1:%d" % old_port))
    after = (config(port, wb.addr, level="debug")
             + t.listener("new", upstream=wb.addr, listen="127.0.0.1:%d" % new_port))
    g = gk(before)
    # sessions that started before the reload
    main = connect(("127.0.0.1", port))
    main_r = t.HttpReader(main)
    assert http_get(main, main_r).field("Name") == "A"
    old = connect(("127.0.0.1", old_port))
    old_r = t.HttpReader(old)
    assert http_get(old, old_r).field("Name") == "A"

    write(g.config_path, after)
    hup_and_wait(g, 0)
    rel = [p for p in g.parsed() if p.get("msg") == "reloaded"][0]
    assert (rel["added"], rel["kept"], rel["removed"]) == ("1", "1", "1"), rel

    # they keep their upstream and their listener's old settings
    assert http_get(main, main_r, path="/again").field("Name") == "A"
    assert http_get(old, old_r, path="/again").field("Name") == "A"
    # new connections see the new config
    s = connect(("127.0.0.1", port))
    assert http_get(s, t.HttpReader(s)).field("Name") == "B"
    s.close()
    s = connect(("127.0.0.1", new_port))
    assert http_get(s, t.HttpReader(s)).field("Name") == "B"
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", old_port), timeout=5)
    # the removed listener closes once its last session is gone
    old.close()
    main.close()
    g.wait_log(r'msg="listener closed" listener=old', timeout=10)
    # log.level changed with the reload: debug lines appear now
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    write(g.config_path,
          after + t.listener("dead", upstream="127.0.0.1:%d" % dead_port, listen="127.0.0.1:0"))
    hup_and_wait(g, 1)
    s = connect(g.addr("dead"))
    s.sendall(b"x")
    try:
        recv_all(s, timeout=10)
    except ConnectionResetError:
        pass  # closed with our byte unread: a reset is fine
    s.close()
    g.wait_log(r"level=debug msg=\"connect failed\"", timeout=10)
    assert g.alive()


def test_sighup_in_quick_mode_is_refused_politely(quick, echo):
    e = echo()
    g = quick(["--listen", "127.0.0.1:0", "--upstream", e.addr])
    g.proc.send_signal(signal.SIGHUP)
    g.wait_log(r"quick mode has no file to reload", timeout=10)
    assert g.alive()


def test_allowlist_change_applies_to_new_connections(gk):
    """An egress gateway's allowlist flips on reload: new connections follow
    it at once; a kept-alive connection keeps the list it started with."""
    port = free_port()
    w = subprocess.Popen([WHOAMI_BIN, "-l", "127.0.0.2:%d" % port, "-l", "127.0.0.3:%d" % port,
                          "-n", "W"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        w.stdout.readline()
        w.stdout.readline()
        gw = free_port()

        def cfg(allowed):
            return ("log:\n  level: info\nlisteners:\n" +
                    t.listener("gw", "http", listen="127.0.0.1:%d" % gw, port=port,
                               allow='["%s"]' % allowed, allow_ranges='["127.0.0.0/8"]'))

        g = gk(cfg("127.0.0.2"))

        def status(sock, reader, host):
            sock.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
            return reader.response().status

        def fresh(host):
            s = connect(("127.0.0.1", gw))
            try:
                return status(s, t.HttpReader(s), host)
            finally:
                s.close()

        assert fresh("127.0.0.2") == 200 and fresh("127.0.0.3") == 403
        kept = connect(("127.0.0.1", gw))
        kept_r = t.HttpReader(kept)
        assert status(kept, kept_r, "127.0.0.2") == 200
        write(g.config_path, cfg("127.0.0.3"))
        hup_and_wait(g, 0)
        assert fresh("127.0.0.3") == 200 and fresh("127.0.0.2") == 403
        # the connection from before still runs on the list it started with
        assert status(kept, kept_r, "127.0.0.2") == 200
        kept.close()
    finally:
        w.kill()
        w.wait()


def test_every_line_is_json_when_asked(gk, echo):
    """log.format json covers every line, not only access lines: start-up,
    access, reloads (the failed one's FILE:LINE:COL errors included), drain."""
    import json

    e = echo()
    port = free_port()
    text = config(port, e.addr).replace("log:\n  level: info\n", "log:\n  level: debug\n  format: json\n")
    g = gk(text)
    s = connect(("127.0.0.1", port))
    s.sendall(b"hi \x01\xff\"quoted\"")
    s.shutdown(socket.SHUT_WR)
    recv_all(s, timeout=10)
    s.close()
    g.wait_access(1)
    hup_and_wait(g, 0)
    write(g.config_path, text + "bogus: 1\n")
    hup_and_wait(g, 0, "reload failed")
    g.stop()
    lines = g.lines()
    assert len(lines) > 6
    for line in lines:
        d = json.loads(line)  # raises on any line that is not JSON
        assert {"ts", "level", "msg"} <= set(d), line
    msgs = [json.loads(l)["msg"] for l in lines]
    for want in ("listening", "ready", "access", "reloaded", "draining", "exit"):
        assert want in msgs, msgs
    assert any("gk.yaml:" in json.loads(l).get("error", "") for l in lines if "reload failed" in l)


def test_a_session_sniffing_across_a_reload_keeps_its_routes(gk, whoami):
    """A request head half-sent before a reload that removes its route: the
    session routes on the config it started with (no stray index into the
    new route list)."""
    wa, wb, wc = whoami(name="A"), whoami(name="B"), whoami(name="C")
    port = free_port()

    def cfg(routes):
        return ("log:\n  level: info\nlisteners:\n" +
                t.listener("web", "http", listen="127.0.0.1:%d" % port, routes=routes))

    g = gk(cfg([(["a.gk.test"], wa.addr), (["b.gk.test"], wb.addr)]))
    s = connect(("127.0.0.1", port))
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: b.gk.test\r\n")  # not finished yet
    write(g.config_path, cfg([(["c.gk.test"], wc.addr)]))
    hup_and_wait(g, 0)
    s.sendall(b"Connection: close\r\n\r\n")
    resp = t.HttpReader(s).response()
    assert resp.status == 200 and resp.field("Name") == "B", resp
    s.close()
    # new connections: the new routes
    s = connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: c.gk.test\r\nConnection: close\r\n\r\n")
    assert t.HttpReader(s).response().field("Name") == "C"
    s.close()
    s = connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: b.gk.test\r\nConnection: close\r\n\r\n")
    assert t.HttpReader(s).response().status == 421
    s.close()
    assert g.alive()
