"""Quick mode reaches every role: egress from flags and GATEKEEPER_* variables.

The egress keys (allow, port, egress, allow_ranges, deny_ranges, proxy_auth)
have flags and variables, lists comma-separated; a listener built from them
is checked exactly as the same listener in a file (same messages), and runs
the same: here a CONNECT proxy configured by the environment alone admits
an allowed target with credentials, and refuses the rest on the wire.
Loopback is refused by the egress guard by default, so the proxy re-allows
127.0.0.0/8 with GATEKEEPER_ALLOW_RANGES, as the egress tests' files do.
"""

import base64
import re
import socket

from gkharness import free_port, recv_exact, run_gatekeeper


def head(sock, timeout=10):
    """The response head of a CONNECT, up to and including the blank line."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        b = sock.recv(4096)
        if not b:
            break
        data += b
    return data


def connect_request(addr, target, cred=None):
    s = socket.create_connection(addr, timeout=10)
    req = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (target, target)
    if cred is not None:
        req += "Proxy-Authorization: Basic %s\r\n" % base64.b64encode(cred.encode()).decode()
    s.sendall((req + "\r\n").encode())
    return s


def test_connect_proxy_from_the_environment_alone(quick, echo):
    e = echo()
    port = int(e.addr.rsplit(":", 1)[1])
    other = free_port()
    g = quick(
        [],
        env={
            "GATEKEEPER_MODE": "connect",
            "GATEKEEPER_LISTEN": "127.0.0.1:0",
            "GATEKEEPER_NAME": "proxy",
            "GATEKEEPER_ALLOW": "127.0.0.0/24:%d, 127.0.0.1:%d" % (port, other),
            "GATEKEEPER_ALLOW_RANGES": "127.0.0.0/8",
            "GATEKEEPER_DENY_RANGES": "127.0.0.9",
            "GATEKEEPER_PROXY_AUTH": "ann:secret,bob:pw",
        },
    )
    addr = g.addr("proxy")
    # Allowed, with credentials: a tunnel to the echo server.
    s = connect_request(addr, e.addr, "ann:secret")
    try:
        assert head(s).startswith(b"HTTP/1.1 200 "), "CONNECT refused"
        s.sendall(b"through")
        assert recv_exact(s, 7) == b"through"
    finally:
        s.close()
    # No credentials: 407.
    s = connect_request(addr, e.addr)
    try:
        assert head(s).startswith(b"HTTP/1.1 407 ")
    finally:
        s.close()
    # A port the allowlist does not name: 403, and nothing reaches the echo server.
    s = connect_request(addr, "127.0.0.1:%d" % (other + 1 if other < 65535 else other - 1), "bob:pw")
    try:
        h = head(s)
        assert h.startswith(b"HTTP/1.1 403 ") and b"X-Gatekeeper-Reason: not_allowed\r\n" in h, h
    finally:
        s.close()
    # deny_ranges wins over the allowlist's block.
    s = connect_request(addr, "127.0.0.9:%d" % port, "bob:pw")
    try:
        h = head(s)
        assert h.startswith(b"HTTP/1.1 403 ") and b"X-Gatekeeper-Reason: address_denied\r\n" in h, h
    finally:
        s.close()
    assert e.accepted == 1


def test_tls_gateway_from_the_environment_matches_the_file(tmp_path):
    """The README's example: an allowlisted TLS gateway from variables only
    is the config the same listener in a file gives (-T prints both)."""
    env = {
        "GATEKEEPER_MODE": "tls",
        "GATEKEEPER_ALLOW": "api.github.com,*.pypi.org",
    }
    quick = run_gatekeeper(["-T", "--listen", "0.0.0.0:443"], env=env)
    assert quick.returncode == 0, quick.stderr
    assert "(command line): configuration ok" in quick.stderr
    (tmp_path / "gw.yaml").write_text(
        "listeners:\n"
        "  - name: default\n"
        "    listen: 0.0.0.0:443\n"
        "    mode: tls\n"
        '    allow: [api.github.com, "*.pypi.org"]\n'
    )
    file = run_gatekeeper(["-T", "-c", str(tmp_path / "gw.yaml")])
    assert file.returncode == 0, file.stderr
    assert quick.stdout == file.stdout
    assert '    allow: ["api.github.com", "*.pypi.org"]\n' in quick.stdout


def bodies(stderr):
    """Error messages without their 'NAME: ' or 'FILE:LINE:COL: ' prefix."""
    return [re.sub(r"^\S+?(:\d+:\d+)?: ", "", l) for l in stderr.splitlines()]


def test_quick_mode_is_refused_as_the_file_is(tmp_path):
    r = run_gatekeeper(["-t", "--mode", "connect", "--upstream", "x:1", "--listen", "127.0.0.1:0"])
    assert r.returncode == 1
    assert "configuration ok" not in r.stderr
    (tmp_path / "c.yaml").write_text(
        "listeners:\n"
        "  - name: default\n"
        "    listen: 127.0.0.1:0\n"
        "    mode: connect\n"
        "    upstream: x:1\n"
    )
    f = run_gatekeeper(["-t", "-c", str(tmp_path / "c.yaml")])
    assert f.returncode == 1
    assert bodies(r.stderr) == bodies(f.stderr) and len(bodies(r.stderr)) == 2, (r.stderr, f.stderr)
    assert all(l.startswith("gatekeeper: listeners[0]: ") for l in r.stderr.splitlines()), r.stderr
    # The brief's form, without --listen: that is missing too, and named by its flag.
    r = run_gatekeeper(["-t", "--mode", "connect", "--upstream", "x:1"])
    assert r.returncode == 1
    assert "gatekeeper: listeners[0]: mode connect needs an 'allow' list" in r.stderr
    assert "missing required key 'listen'; give --listen or GATEKEEPER_LISTEN" in r.stderr


def test_egress_value_errors_name_their_source():
    r = run_gatekeeper(
        ["--listen", "127.0.0.1:0", "--mode", "connect", "--allow-ranges", "10.0.0.0/33"],
        env={"GATEKEEPER_ALLOW": "ok.example.com,bad name!", "GATEKEEPER_PROXY_AUTH": "nocolon"},
    )
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert any(l.startswith("GATEKEEPER_ALLOW: ") and "bad name!" in l for l in lines), r.stderr
    assert any(l.startswith("GATEKEEPER_PROXY_AUTH: invalid credentials") and "USER:PASSWORD" in l
               for l in lines), r.stderr
    assert any(l.startswith("--allow-ranges: invalid address block '10.0.0.0/33'") and "ADDRESS/PREFIX" in l
               for l in lines), r.stderr
    assert "msg=listening" not in r.stderr


def test_misspelt_flag_gets_a_suggestion():
    r = run_gatekeeper(["--listen", "127.0.0.1:0", "--alow-ranges", "10.0.0.0/8"])
    assert r.returncode == 1
    assert "alow-ranges" in r.stderr
    assert "did you mean '--allow-ranges'?" in r.stderr


def test_help_lists_every_flag_with_its_default():
    r = run_gatekeeper(["--help"])
    assert r.returncode == 0
    for flag in ("--allow NAME", "--port PORT", "--egress", "--allow-ranges", "--deny-ranges",
                 "--proxy-auth", "--listen ADDR:PORT", "--upstream HOST:PORT", "--admin"):
        assert "\n  " + flag in r.stdout, r.stdout
    assert re.search(r"--connect-timeout DURATION +.*\(default: 5s\)", r.stdout), r.stdout


def test_port_variable_alone_does_not_select_quick_mode(tmp_path):
    """Kubernetes and Docker links set GATEKEEPER_PORT=tcp://... for a service
    named gatekeeper; a file-configured gatekeeper must keep its file."""
    (tmp_path / "f.yaml").write_text(
        "listeners:\n  - name: f\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:9\n")
    r = run_gatekeeper(["-t"], env={"GATEKEEPER_PORT": "tcp://10.0.0.11:443",
                                    "GATEKEEPER_CONFIG": str(tmp_path / "f.yaml")})
    assert r.returncode == 0, r.stderr
    assert "f.yaml: configuration ok" in r.stderr
    # Next to another quick-mode variable it is read, and a bad one says so.
    r = run_gatekeeper(["-t"], env={"GATEKEEPER_PORT": "tcp://10.0.0.11:443",
                                    "GATEKEEPER_LISTEN": "127.0.0.1:0", "GATEKEEPER_MODE": "tls",
                                    "GATEKEEPER_ALLOW": "a.example.com"})
    assert r.returncode == 1
    assert r.stderr.startswith("GATEKEEPER_PORT: invalid number 'tcp://10.0.0.11:443' for 'port'"), r.stderr
