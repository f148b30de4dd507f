"""File-descriptor exhaustion: gatekeeper pauses accepting, says so once,
keeps the sessions it has, and recovers by itself when fds free up."""

import socket
import time

from gkharness import GK_BIN, Gatekeeper, connect, write_config, wait_closed

FD_LIMIT = 48


def echo_once(addr, payload):
    s = connect(addr)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        s.settimeout(10)
        while True:
            d = s.recv(65536)
            if not d:
                return got
            got += d
    finally:
        s.close()


def test_emfile_pauses_accept_and_recovers(tmp_path, echo):
    e = echo()
    path = write_config(
        """\
listeners:
  - name: capped
    listen: 127.0.0.1:0
    upstream: %s
    max_connections: 0
""" % e.addr,
        tmp_path,
    )
    g = Gatekeeper(["prlimit", "--nofile=%d:%d" % (FD_LIMIT, FD_LIMIT), GK_BIN, "-c", path], config_path=path)
    try:
        g.wait_ready()
        addr = g.addr("capped")
        assert echo_once(addr, b"before") == b"before"

        # Each session costs two fds: far more clients than the limit allows.
        held = []
        for _ in range(FD_LIMIT * 2):
            held.append(connect(addr))
        g.wait_log(r"accept paused: out of resources", timeout=15)
        # The sessions that did start are intact: the first one still echoes.
        held[0].sendall(b"still here")
        held[0].settimeout(10)
        assert held[0].recv(100) == b"still here"

        warnings_before = len([l for l in g.lines() if "accept paused" in l])
        for s in held:
            s.close()
        # Once fds are free again, new connections are served without a restart.
        deadline = time.monotonic() + 20
        while True:
            try:
                if echo_once(addr, b"after") == b"after":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, g.tail()
            time.sleep(0.2)
        # One warning per exhaustion episode, not one per failed accept.
        assert warnings_before <= 3, g.tail()
        assert g.alive()
    finally:
        g.stop()
        g.check_sanitizers()
