"""Configuration and command line: -t/-T checks, error reports with
FILE:LINE:COL: positions, quick mode from flags and GATEKEEPER_* variables,
and their precedence."""

import glob
import os
import re
import socket
import time

import pytest

import gkharness
from gkharness import (
    REPO,
    Gatekeeper,
    GK_BIN,
    echo_roundtrip,
    free_port,
    simple_config,
)


def run_gatekeeper(args, **kw):
    """gkharness.run_gatekeeper, failing on any sanitizer report."""
    r = gkharness.run_gatekeeper(args, **kw)
    for m in gkharness.SANITIZER_MARKERS:
        assert m not in r.stderr, r.stderr
    return r

ERR_LINE = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def check(tmp_path, name, text, *extra):
    """Write text to tmp_path/name and run `gatekeeper -t -c name` from tmp_path."""
    write(tmp_path, name, text)
    return run_gatekeeper(["-t", "-c", name, *extra], cwd=str(tmp_path))


def errors(stderr, fname):
    """Parsed FILE:LINE:COL: lines of stderr that name fname."""
    out = []
    for l in stderr.splitlines():
        m = ERR_LINE.match(l.strip())
        if m and m.group("file") == fname:
            out.append((int(m.group("line")), int(m.group("col")), m.group("msg")))
    return out


def pos(text, needle, nth=0):
    """1-based (line, col) of the nth occurrence of needle in text."""
    i = -1
    for _ in range(nth + 1):
        i = text.index(needle, i + 1)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


def find_error(errs, *parts):
    for e in errs:
        if all(p in e[2] for p in parts):
            return e
    return None


VALID = """\
log:
  level: info
  format: logfmt
resolver:
  nameservers: []
  refresh: 30s
  min_ttl: 1s
  timeout: 2s
defaults:
  connect_timeout: 5s
  idle_timeout: 7m
  max_connections: 100
  drain_timeout: 8s
listeners:
  - name: web
    listen: 127.0.0.1:0
    mode: tcp
    upstream: whoami.invalid:80
    connect_timeout: 250ms
    idle_timeout: 1h
    max_connections: 10
  - name: six
    listen: "[::1]:0"
    upstream: "[::1]:8080"
  - name: any
    listen: ":0"
    upstream: 127.0.0.1:9
"""


# --------------------------------------------------------------------------
# -t / -T


def test_check_valid_config(tmp_path):
    r = check(tmp_path, "ok.yaml", VALID)
    assert r.returncode == 0, r.stderr
    assert "ok.yaml: configuration ok" in r.stderr
    assert "msg=listening" not in r.stderr


DUR = re.compile(r"^\s*(\d+)(ms|s|m|h)\s*$")


def dur_ms(v):
    m = DUR.match(v.strip().strip("\"'"))
    assert m, "not a duration: %r" % v
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60000, "h": 3600000}[m.group(2)]


def test_dump_normalized_config_roundtrips(tmp_path):
    write(tmp_path, "in.yaml", VALID)
    r = run_gatekeeper(["-T", "-c", "in.yaml"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.strip(), "-T printed nothing on stdout"
    for needle in ("web", "six", "any", "whoami.invalid:80", "[::1]:8080", "listeners"):
        assert needle in out, "%r missing from -T output:\n%s" % (needle, out)
    # the values survive normalisation (in whatever unit it prints)
    cts = sorted(dur_ms(v) for v in re.findall(r"connect_timeout:\s*(\S+)", out))
    assert 250 in cts and 5000 in cts, out
    its = [dur_ms(v) for v in re.findall(r"idle_timeout:\s*(\S+)", out)]
    assert 7 * 60000 in its and 3600000 in its, out
    # the output is itself a valid config ...
    write(tmp_path, "norm.yaml", out)
    r2 = run_gatekeeper(["-t", "-c", "norm.yaml"], cwd=str(tmp_path))
    assert r2.returncode == 0, r2.stderr + "\n---\n" + out
    # ... and normalising it again changes nothing
    r3 = run_gatekeeper(["-T", "-c", "norm.yaml"], cwd=str(tmp_path))
    assert r3.returncode == 0, r3.stderr
    assert r3.stdout == out


def test_dump_invalid_config_fails(tmp_path):
    write(tmp_path, "bad.yaml", VALID.replace("connect_timeout: 250ms", "connect_timeout: 250"))
    r = run_gatekeeper(["-T", "-c", "bad.yaml"], cwd=str(tmp_path))
    assert r.returncode == 1
    assert errors(r.stderr, "bad.yaml")


def test_shipped_config_passes_check():
    path = os.path.join(REPO, "conf", "gatekeeper.yaml")
    assert os.path.exists(path), "conf/gatekeeper.yaml is not shipped"
    r = run_gatekeeper(["-t", "-c", path])
    assert r.returncode == 0, r.stderr


def test_all_shipped_example_configs_pass_check():
    paths = sorted(glob.glob(os.path.join(REPO, "conf", "*.yaml")) + glob.glob(os.path.join(REPO, "conf", "*.yml")))
    assert paths, "no example configs in conf/"
    bad = {}
    for p in paths:
        r = run_gatekeeper(["-t", "-c", p])
        if r.returncode != 0:
            bad[os.path.basename(p)] = r.stderr
    assert not bad, bad


def test_missing_config_file(tmp_path):
    r = run_gatekeeper(["-t", "-c", str(tmp_path / "nope.yaml")])
    assert r.returncode == 1
    assert "nope.yaml" in r.stderr


# --------------------------------------------------------------------------
# Error reports


def test_yaml_syntax_error(tmp_path):
    text = """\
listeners:
  - name: web
    listen: "127.0.0.1:0
    upstream: 127.0.0.1:80
"""
    r = check(tmp_path, "syn.yaml", text)
    assert r.returncode == 1
    errs = errors(r.stderr, "syn.yaml")
    assert errs, r.stderr
    e = find_error(errs, "YAML syntax error")
    assert e, r.stderr
    assert 3 <= e[0] <= 5, e
    assert "configuration ok" not in r.stderr


def test_yaml_syntax_error_bad_indent(tmp_path):
    text = """\
listeners:
  - name: web
    listen: 127.0.0.1:0
   upstream: 127.0.0.1:80
"""
    r = check(tmp_path, "ind.yaml", text)
    assert r.returncode == 1
    e = find_error(errors(r.stderr, "ind.yaml"), "YAML syntax error")
    assert e, r.stderr
    assert e[0] in (3, 4), e


def test_unknown_key_did_you_mean(tmp_path):
    text = """\
listeners:
  - name: web
    listen: 127.0.0.1:0
    upstrem: 127.0.0.1:80
"""
    r = check(tmp_path, "x.yaml", text)
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if "upstrem" in l]
    assert lines, r.stderr
    l = lines[0]
    assert l.startswith("x.yaml:4:5: "), l
    assert "unknown key 'upstrem'" in l
    assert "listeners[0]" in l
    assert "did you mean 'upstream'" in l


def test_unknown_key_top_level_and_nested(tmp_path):
    text = """\
resolvr:
  refresh: 30s
defaults:
  idle_timeot: 5m
listeners:
  - name: web
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:80
"""
    r = check(tmp_path, "k.yaml", text)
    assert r.returncode == 1
    errs = errors(r.stderr, "k.yaml")
    e1 = find_error(errs, "'resolvr'")
    assert e1 and e1[:2] == (1, 1), r.stderr
    assert "did you mean 'resolver'" in e1[2]
    e2 = find_error(errs, "'idle_timeot'")
    assert e2 and e2[:2] == (4, 3), r.stderr
    assert "did you mean 'idle_timeout'" in e2[2]


def test_bad_duration(tmp_path):
    text = """\
listeners:
  - name: web
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:80
    connect_timeout: 5x
"""
    r = check(tmp_path, "d.yaml", text)
    assert r.returncode == 1
    e = find_error(errors(r.stderr, "d.yaml"), "'5x'")
    assert e, r.stderr
    assert e[:2] == pos(text, "5x")  # (5, 22): the value
    assert "duration" in e[2] and "connect_timeout" in e[2]


@pytest.mark.parametrize("value", ["30", "-5s", "5 s", "1.5s", "s", "99999999999999999999s"])
def test_bad_duration_forms(tmp_path, value):
    text = simple_config([("web", "127.0.0.1:0", "127.0.0.1:80", {"idle_timeout": '"%s"' % value})])
    r = check(tmp_path, "d.yaml", text)
    assert r.returncode == 1, "idle_timeout %r was accepted" % value
    e = find_error(errors(r.stderr, "d.yaml"), "idle_timeout")
    assert e, r.stderr
    assert e[0] == pos(text, "idle_timeout")[0]


def test_bad_port(tmp_path):
    text = """\
listeners:
  - name: web
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:99999
"""
    r = check(tmp_path, "p.yaml", text)
    assert r.returncode == 1
    e = find_error(errors(r.stderr, "p.yaml"), "'99999'")
    assert e, r.stderr
    assert e[:2] == (4, 15), e
    assert "port" in e[2] and "upstream" in e[2]


@pytest.mark.parametrize(
    "value",
    ["127.0.0.1:http", "127.0.0.1", "127.0.0.1:", "host:-1", "host:0", "[::1", ":80:", ""],
)
def test_bad_upstream_forms(tmp_path, value):
    text = simple_config([("web", "127.0.0.1:0", value)])
    r = check(tmp_path, "u.yaml", text)
    assert r.returncode == 1, "upstream %r was accepted" % value
    e = find_error(errors(r.stderr, "u.yaml"), "upstream")
    assert e, r.stderr
    assert e[0] == pos(text, "upstream:")[0]


@pytest.mark.parametrize(
    "value",
    ["300.1.2.3:80", "localhost:80", "127.0.0.1", "127.0.0.1:70000", "[::1:80", "::1:80", "*:x"],
)
def test_bad_listen_address(tmp_path, value):
    text = simple_config([("web", value, "127.0.0.1:80")])
    r = check(tmp_path, "l.yaml", text)
    assert r.returncode == 1, "listen %r was accepted" % value
    e = find_error(errors(r.stderr, "l.yaml"), "listen")
    assert e, r.stderr
    assert e[0] == pos(text, "listen:")[0]


def test_missing_upstream(tmp_path):
    text = """\
listeners:
  - name: a
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:80
  - name: b
    listen: 127.0.0.1:0
"""
    r = check(tmp_path, "m.yaml", text)
    assert r.returncode == 1
    e = find_error(errors(r.stderr, "m.yaml"), "missing required key 'upstream'")
    assert e, r.stderr
    assert "listeners[1]" in e[2]
    assert e[0] in (5, 6), e


def test_duplicate_listener_name(tmp_path):
    text = """\
listeners:
  - name: web
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:80
  - name: web
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:81
"""
    r = check(tmp_path, "dup.yaml", text)
    assert r.returncode == 1
    e = find_error(errors(r.stderr, "dup.yaml"), "duplicate")
    assert e, r.stderr
    assert "web" in e[2]
    assert e[0] in (5, 6, 7), e


def test_bad_enum_values(tmp_path):
    text = """\
log:
  level: loud
  format: xml
listeners:
  - name: web
    listen: 127.0.0.1:0
    mode: udp
    upstream: 127.0.0.1:80
"""
    r = check(tmp_path, "e.yaml", text)
    assert r.returncode == 1
    errs = errors(r.stderr, "e.yaml")
    got = {e[0] for e in errs}
    assert {2, 3, 7} <= got, r.stderr


def test_all_errors_reported(tmp_path):
    text = """\
defaults:
  max_connections: lots
listeners:
  - name: a
    listen: 127.0.0.1:0
    upstrem: 127.0.0.1:80
  - name: b
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:80
    connect_timeout: 5x
  - name: c
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:99999
  - name: d
    listen: 127.0.0.1:0
  - name: e
    listen: 999.0.0.1:0
    upstream: 127.0.0.1:80
"""
    r = check(tmp_path, "many.yaml", text)
    assert r.returncode == 1
    errs = errors(r.stderr, "many.yaml")
    lines = {e[0] for e in errs}
    # max_connections, upstrem, 5x, 99999, listener d (no upstream; also a)
    assert 2 in lines, r.stderr
    assert (6, 5) in {e[:2] for e in errs}, r.stderr
    assert (10, 22) in {e[:2] for e in errs}, r.stderr
    assert (13, 15) in {e[:2] for e in errs}, r.stderr
    assert 17 in lines, r.stderr
    assert find_error(errs, "listeners[3]", "missing required key 'upstream'"), r.stderr
    assert len(errs) >= 6, r.stderr
    # each error is on its own line
    assert all(ERR_LINE.match(l) for l in r.stderr.splitlines() if "many.yaml:" in l)


def test_errors_mean_nothing_started(tmp_path):
    """With config errors, `gatekeeper -c` exits 1 and never binds the
    (valid) listener port in the same file."""
    port = free_port()
    text = simple_config(
        [
            ("good", "127.0.0.1:%d" % port, "127.0.0.1:80"),
            ("bad", "127.0.0.1:0", "127.0.0.1:80", {"idle_timeout": "forever"}),
        ]
    )
    p = write(tmp_path, "run.yaml", text)
    g = Gatekeeper([GK_BIN, "-c", str(p)], config_path=str(p))
    try:
        deadline = time.monotonic() + 10
        while g.alive() and time.monotonic() < deadline:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=1)
                s.close()
                pytest.fail("listener port was bound despite config errors")
            except OSError:
                pass
            time.sleep(0.02)
        rc = g.wait_exit(10)
    finally:
        g.stop()
    assert rc == 1
    logs = g.logs()
    assert "msg=listening" not in logs and "msg=ready" not in logs
    assert "forever" in logs


# --------------------------------------------------------------------------
# Command line and quick mode


def test_version():
    r = run_gatekeeper(["--version"])
    assert r.returncode == 0
    assert re.match(r"^gatekeeper \d+\.\d+\.\d+\S*$", r.stdout.strip()), repr(r.stdout)


def test_quick_mode_flags(quick, echo):
    e = echo()
    g = quick(["--listen", "127.0.0.1:0", "--upstream", e.addr])
    assert echo_roundtrip(g.addr("default"), b"quick") == b"quick"
    acc = g.wait_access(1)[0]
    assert acc["listener"] == "default"
    assert acc["upstream"] == e.addr
    assert acc["reason"] == "closed"


def test_quick_mode_flags_with_options(quick, echo):
    e = echo()
    g = quick(
        [
            "--listen", "127.0.0.1:0", "--upstream", e.addr, "--mode", "tcp", "--name", "qq",
            "--connect-timeout", "2s", "--idle-timeout", "1m", "--max-connections", "5",
            "--log-level", "info", "--log-format", "json", "--drain-timeout", "2s",
        ]
    )
    assert g.lines()[0].lstrip().startswith("{"), g.tail()
    assert echo_roundtrip(g.addr("qq"), b"opts") == b"opts"
    acc = g.wait_access(1)[0]
    assert acc["listener"] == "qq" and acc["bytes_in"] == 4


def test_quick_mode_env(quick, echo):
    e = echo()
    g = quick(
        [],
        env={
            "GATEKEEPER_LISTEN": "127.0.0.1:0",
            "GATEKEEPER_UPSTREAM": e.addr,
            "GATEKEEPER_NAME": "fromenv",
            "GATEKEEPER_IDLE_TIMEOUT": "1m",
            "GATEKEEPER_MAX_CONNECTIONS": "10",
        },
    )
    assert echo_roundtrip(g.addr("fromenv"), b"env") == b"env"
    acc = g.wait_access(1)[0]
    assert acc["listener"] == "fromenv"
    assert acc["upstream"] == e.addr


def test_quick_mode_flag_beats_env(quick, echo):
    e = echo()
    dead = free_port()
    g = quick(
        ["--upstream", e.addr, "--name", "flagname"],
        env={
            "GATEKEEPER_LISTEN": "127.0.0.1:0",  # no flag: taken from env
            "GATEKEEPER_UPSTREAM": "127.0.0.1:%d" % dead,
            "GATEKEEPER_NAME": "envname",
        },
    )
    assert "listener=envname" not in g.logs()
    assert echo_roundtrip(g.addr("flagname"), b"prec") == b"prec"
    assert e.accepted == 1
    acc = g.wait_access(1)[0]
    assert acc["upstream"] == e.addr and acc["reason"] == "closed"


def test_quick_mode_env_log_format_overridden_by_flag(quick, echo):
    e = echo()
    g = quick(
        ["--listen", "127.0.0.1:0", "--upstream", e.addr, "--log-format", "logfmt"],
        env={"GATEKEEPER_LOG_FORMAT": "json"},
    )
    assert not g.lines()[0].lstrip().startswith("{"), g.tail()
    assert "msg=ready" in g.logs()


def test_quick_mode_bad_value_flag(tmp_path):
    r = run_gatekeeper(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:99999"])
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.startswith("--upstream: ")]
    assert lines, r.stderr
    assert "99999" in lines[0]
    assert "msg=listening" not in r.stderr


def test_quick_mode_bad_value_env():
    r = run_gatekeeper([], env={"GATEKEEPER_LISTEN": "127.0.0.1:0", "GATEKEEPER_UPSTREAM": "nohostport"})
    assert r.returncode == 1
    assert any(l.startswith("GATEKEEPER_UPSTREAM: ") for l in r.stderr.splitlines()), r.stderr


def test_quick_mode_bad_duration_flag():
    r = run_gatekeeper(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:80", "--connect-timeout", "5x"])
    assert r.returncode == 1
    assert any(l.startswith("--connect-timeout: ") for l in r.stderr.splitlines()), r.stderr


def test_unknown_option():
    r = run_gatekeeper(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:80", "--bogus-flag", "1"])
    assert r.returncode == 1
    assert "bogus-flag" in r.stderr
    assert "msg=listening" not in r.stderr


def test_quick_mode_missing_upstream():
    r = run_gatekeeper(["--listen", "127.0.0.1:0"])
    assert r.returncode == 1
    assert "upstream" in r.stderr.lower()


def test_config_and_listen_flag_conflict(tmp_path):
    p = write(tmp_path, "ok.yaml", VALID)
    r = run_gatekeeper(["-c", str(p), "--listen", "127.0.0.1:0"])
    assert r.returncode == 1
    assert "msg=listening" not in r.stderr
    r = run_gatekeeper(["-c", str(p), "--upstream", "127.0.0.1:80"])
    assert r.returncode == 1


def test_env_ignored_with_config_file(gk, echo):
    e = echo()
    g = gk(
        simple_config([("file", "127.0.0.1:0", e.addr)]),
        env={
            "GATEKEEPER_LISTEN": "not an address",
            "GATEKEEPER_UPSTREAM": "127.0.0.1:1",
            "GATEKEEPER_NAME": "envname",
            "GATEKEEPER_LOG_FORMAT": "json",
        },
    )
    assert echo_roundtrip(g.addr("file"), b"file wins") == b"file wins"
    assert "listener=envname" not in g.logs()
    assert "msg=ready" in g.logs()  # still logfmt


def test_check_mode_does_not_bind(tmp_path):
    port = free_port()
    text = simple_config([("web", "127.0.0.1:%d" % port, "127.0.0.1:80")])
    # hold the port: -t must not try to bind it, so it still passes
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        r = check(tmp_path, "bind.yaml", text)
    finally:
        holder.close()
    assert r.returncode == 0, r.stderr
