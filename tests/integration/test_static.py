"""The static binary (make static), the one the image ships: no dynamic
section, and it relays and answers its health check on its own."""

import os
import socket
import subprocess

import pytest

import gkharness as h

STATIC = os.environ.get("GATEKEEPER_STATIC_BIN", "")


@pytest.fixture
def static_bin():
    if not STATIC:
        pytest.skip("no static binary in a sanitizer build (make test builds one)")
    assert os.access(STATIC, os.X_OK), STATIC
    return STATIC


def test_static_binary_has_no_dynamic_section(static_bin):
    out = subprocess.run(["readelf", "-d", static_bin], capture_output=True, text=True).stdout
    assert "There is no dynamic section" in out, out
    assert os.path.getsize(static_bin) < 8 << 20


def test_static_binary_relays_and_answers_health(static_bin, echo):
    e = echo()
    admin = h.free_port()
    g = h.Gatekeeper([static_bin, "--listen", "127.0.0.1:0", "--upstream", e.addr, "--allow-root", "true",
                      "--admin", "127.0.0.1:%d" % admin])
    try:
        g.wait_ready()
        s = h.connect(g.addr("default"))
        s.sendall(b"static")
        s.shutdown(socket.SHUT_WR)
        assert h.recv_all(s, timeout=10) == b"static"
        s.close()
        r = subprocess.run([static_bin, "health", "127.0.0.1:%d" % admin], capture_output=True,
                           timeout=30)
        assert r.returncode == 0, r
    finally:
        g.stop()
