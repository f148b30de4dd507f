"""The admin endpoint (/healthz, /readyz, /metrics) and `gatekeeper health`.

Metrics are checked as values after known traffic, and the whole exposition
is validated by promtool (Debian's prometheus package)."""

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import tlsutil as t
from dnsserver import DnsServer
from gkharness import GK_BIN, connect, free_port, recv_all, start_gatekeeper, wait_closed


def admin_config(port, *listeners, nameservers=None, workers=None):
    text = t.config(*listeners, nameservers=nameservers)
    head = "admin:\n  listen: 127.0.0.1:%d\n" % port
    if workers:
        head += "workers: %d\n" % workers
    return head + text


def get(port, path, method="GET"):
    """(status, content type, body) of one admin request."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(s, name, **labels):
    return s.get((name, frozenset(labels.items())))


def promtool_check(text):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing (Debian package prometheus; scripts/deps.sh test installs it)"
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def relay_once(addr, payload):
    s = connect(addr)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s, timeout=10)
    s.close()
    return got


def test_metrics_after_known_traffic(gk, echo, blackhole):
    e = echo()
    dead = "127.0.0.1:%d" % free_port()
    port = free_port()
    with DnsServer(ttl=1) as dns:
        dns.set("two.gk.test", ["127.0.0.2", "127.0.0.3"])
        g = gk(admin_config(port,
                            t.listener("echo", upstream=e.addr),
                            t.listener("dead", upstream=dead, connect_timeout="2s"),
                            t.listener("named", upstream="two.gk.test:9"),
                            t.listener("edge", "tls", routes=[(["a.gk.test"], e.addr)]),
                            nameservers=[dns.nameserver]))
        for payload in (b"x" * 100, b"y" * 1000, b"z" * 10):
            assert relay_once(g.addr("echo"), payload) == payload
        for _ in range(2):
            s = connect(g.addr("dead"))
            assert wait_closed(s) in ("eof", "reset")
            s.close()
        s = connect(g.addr("edge"))
        t.send_ignoring_reset(s, t.client_hello("nope.gk.test"))
        t.read_until_close(s)
        s.close()
        g.wait_access(6)
        deadline = time.monotonic() + 10
        while True:
            status, ctype, text = get(port, "/metrics")
            m = samples(text)
            if value(m, "gatekeeper_upstream_addresses", upstream="two.gk.test:9") == 2:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)

    assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), (status, ctype)
    promtool_check(text)
    assert value(m, "gatekeeper_build_info", version=re.search(r'version="([^"]+)"', text).group(1)) == 1
    assert value(m, "gatekeeper_connections_accepted_total", listener="echo") == 3
    assert value(m, "gatekeeper_connections_active", listener="echo") == 0
    assert value(m, "gatekeeper_connections_closed_total", listener="echo", decision="allow",
                 reason="closed") == 3
    assert value(m, "gatekeeper_bytes_total", listener="echo", direction="in") == 1110
    assert value(m, "gatekeeper_bytes_total", listener="echo", direction="out") == 1110
    assert value(m, "gatekeeper_connections_closed_total", listener="dead", decision="allow",
                 reason="connect_failed") == 2
    assert value(m, "gatekeeper_upstream_connect_failures_total", listener="dead") == 2
    assert value(m, "gatekeeper_connections_closed_total", listener="edge", decision="deny",
                 reason="no_route") == 1
    assert value(m, "gatekeeper_dns_lookups_total", result="ok") >= 1
    assert value(m, "gatekeeper_dns_lookups_total", result="failed") is not None


def test_metrics_sum_over_workers(gk, echo):
    e = echo()
    port = free_port()
    g = gk(admin_config(port, t.listener("echo", upstream=e.addr), workers=2))
    for i in range(20):
        assert relay_once(g.addr("echo"), b"%d" % i) == b"%d" % i
    g.wait_access(20)
    status, _, text = get(port, "/metrics")
    promtool_check(text)
    m = samples(text)
    assert value(m, "gatekeeper_connections_accepted_total", listener="echo") == 20, text
    assert value(m, "gatekeeper_connections_closed_total", listener="echo", decision="allow",
                 reason="closed") == 20, text


def test_active_connections_gauge(gk, echo):
    e = echo()
    port = free_port()
    g = gk(admin_config(port, t.listener("echo", upstream=e.addr)))
    held = [connect(g.addr("echo")) for _ in range(3)]
    for s in held:
        s.sendall(b"hi")
        assert s.recv(2) == b"hi"
    m = samples(get(port, "/metrics")[2])
    assert value(m, "gatekeeper_connections_active", listener="echo") == 3
    for s in held:
        s.close()
    g.wait_access(3)
    m = samples(get(port, "/metrics")[2])
    assert value(m, "gatekeeper_connections_active", listener="echo") == 0


def test_healthz_readyz_and_other_paths(gk, echo):
    e = echo()
    port = free_port()
    with DnsServer(ttl=1) as dns:
        g = gk(admin_config(port, t.listener("named", upstream="late.gk.test:%d" % e.port),
                            nameservers=[dns.nameserver]))
        assert get(port, "/healthz")[::2] == (200, "ok\n")
        status, _, body = get(port, "/readyz")
        assert status == 503 and "no address" in body, body
        # the name appears: ready, without a restart
        dns.set("late.gk.test", ["127.0.0.1"])
        deadline = time.monotonic() + 15
        while get(port, "/readyz")[0] != 200:
            assert time.monotonic() < deadline, g.tail()
            time.sleep(0.2)
        assert get(port, "/readyz")[::2] == (200, "ready\n")
    assert get(port, "/nope")[0] == 404
    assert get(port, "/healthz", method="POST")[0] == 405
    assert get(port, "/healthz", method="HEAD")[0] == 200
    # a client that sends garbage is closed and the endpoint keeps answering
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"\x16\x03\x01 not http\r\n\r\n")
    try:
        s.recv(100)
    except OSError:
        pass
    s.close()
    assert get(port, "/healthz")[0] == 200
    assert g.alive()


def test_admin_port_taken_is_a_start_error(tmp_path, echo):
    e = echo()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        g = start_gatekeeper(admin_config(taken.getsockname()[1], t.listener("a", upstream=e.addr)),
                             tmp_path, wait_ready=False)
        assert g.wait_exit(10) == 1
        assert any("admin endpoint" in l and "in use" in l.lower() for l in g.lines()), g.tail()
    finally:
        taken.close()


def health(*args, env=None):
    full = dict(os.environ)
    full.pop("GATEKEEPER_ADMIN", None)
    full.pop("GATEKEEPER_CONFIG", None)
    full.update(env or {})
    return subprocess.run([GK_BIN, "health", *args], capture_output=True, text=True, timeout=30,
                          env=full)


def test_health_command(gk, echo, tmp_path):
    e = echo()
    port = free_port()
    g = gk(admin_config(port, t.listener("a", upstream=e.addr)))
    # live: by address, through GATEKEEPER_ADMIN, and through the config file
    assert health("127.0.0.1:%d" % port).returncode == 0
    assert health(env={"GATEKEEPER_ADMIN": "127.0.0.1:%d" % port}).returncode == 0
    assert health(env={"GATEKEEPER_CONFIG": g.config_path}).returncode == 0
    # a wildcard admin address is checked through loopback
    assert health("0.0.0.0:%d" % port).returncode == 0
    # dead: nothing listens there
    dead = health("127.0.0.1:%d" % free_port())
    assert dead.returncode == 1 and "refused" in dead.stderr.lower(), dead
    # a port that accepts and never answers: bounded by the timeout
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen()
    try:
        r = health("127.0.0.1:%d" % mute.getsockname()[1])
        assert r.returncode == 1 and "no answer" in r.stderr, r
    finally:
        mute.close()
    # not an admin endpoint: the echo server answers nothing like HTTP 200
    r = health(e.addr)
    assert r.returncode == 1, r
    # no address anywhere
    cfg = tmp_path / "noadmin.yaml"
    cfg.write_text(t.config(t.listener("a", upstream=e.addr)))
    r = health(env={"GATEKEEPER_CONFIG": str(cfg)})
    assert r.returncode == 1 and "no admin address" in r.stderr, r
    r = health("not-an-address")
    assert r.returncode == 1 and "not IP:PORT" in r.stderr, r
    # after the process stops, the check fails
    g.stop()
    assert health("127.0.0.1:%d" % port).returncode == 1


def test_quick_mode_admin_flag(quick, echo):
    e = echo()
    port = free_port()
    g = quick(["--listen", "127.0.0.1:0", "--upstream", e.addr, "--admin", "127.0.0.1:%d" % port])
    assert get(port, "/healthz")[0] == 200
    assert health("127.0.0.1:%d" % port).returncode == 0
