"""Privileges: started as root, gatekeeper binds (a low port too), then
switches to the configured user and group, and it refuses to stay root
unless the config says `allow_root: true`. Run as root (CI is); as another
user only the "not root" case applies."""

import os
import shutil
import signal
import socket
import tempfile

import pytest

from gkharness import GK_BIN, Gatekeeper, connect, recv_all, run_gatekeeper

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def config(listen, upstream, extra=""):
    return ("%slisteners:\n  - name: a\n    listen: %s\n    upstream: %s\n"
            % (extra, listen, upstream))


@pytest.fixture
def readable_dir():
    """A folder (and config files in it) that the dropped user can read, so
    a reload works after the switch (pytest's own tmp_path is root's only)."""
    d = tempfile.mkdtemp(prefix="gk-priv-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write(d, text, name="gk.yaml"):
    p = os.path.join(str(d), name)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, 0o644)
    return p


def ids(pid):
    """(uids, gids, groups) from /proc/PID/status: real, effective, saved, fs."""
    with open("/proc/%d/status" % pid) as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return (fields["Uid"].split(), fields["Gid"].split(), fields["Groups"].split())


def low_port():
    """A free port below 1024 on 127.0.0.1 (only root may bind it)."""
    for port in range(1023, 900, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024")


def echo_once(g, listener="a", payload=b"ping"):
    s = connect(g.addr(listener))
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data = recv_all(s)
    s.close()
    return data


def run(path):
    return Gatekeeper([GK_BIN, "-c", path], config_path=path)


@root_only
def test_root_without_user_is_refused(readable_dir, echo):
    e = echo()
    path = write(readable_dir, config("127.0.0.1:0", e.addr))
    g = run(path)
    assert g.wait_exit(10) == 1
    assert "refusing to run as root" in g.logs() and "allow_root" in g.logs(), g.tail()


@root_only
@pytest.mark.parametrize("user,group,uid,gid", [
    ("nobody", None, "65534", "65534"),
    ("65534", "65533", "65534", "65533"),
    ("54321", None, "54321", "54321"),   # no passwd entry: its own number as group (as Docker)
])
def test_drops_to_user_and_group_after_binding_a_low_port(readable_dir, echo, user, group,
                                                          uid, gid):
    e = echo()
    port = low_port()
    extra = "user: %s\n" % user + ("group: %s\n" % group if group else "")
    g = run(write(readable_dir, config("127.0.0.1:%d" % port, e.addr, extra)))
    try:
        g.wait_ready()
        uids, gids, groups = ids(g.proc.pid)
        assert uids == [uid] * 4, uids
        assert gids == [gid] * 4, gids
        assert groups == [gid], groups
        assert echo_once(g) == b"ping"
        assert g.wait_log(r"msg=\"privileges dropped\"")
    finally:
        g.stop()


@root_only
def test_allow_root_keeps_root_with_a_warning(readable_dir, echo):
    e = echo()
    g = run(write(readable_dir, config("127.0.0.1:0", e.addr, "allow_root: true\n")))
    try:
        g.wait_ready()
        assert ids(g.proc.pid)[0][1] == "0"
        assert "running as root" in g.logs()
        assert echo_once(g) == b"ping"
    finally:
        g.stop()


@root_only
@pytest.mark.parametrize("extra,message", [
    ("user: no-such-user-gk\n", "unknown user 'no-such-user-gk'"),
    ("user: nobody\ngroup: no-such-group-gk\n", "unknown group 'no-such-group-gk'"),
    ("user: root\n", "refusing to run as root"),
    ("user: 0\n", "refusing to run as root"),
])
def test_bad_user_or_group_stops_start(readable_dir, echo, extra, message):
    e = echo()
    g = run(write(readable_dir, config("127.0.0.1:0", e.addr, extra)))
    assert g.wait_exit(10) == 1
    assert message in g.logs(), g.tail()


@root_only
def test_quick_mode_user_flag(echo):
    e = echo()
    g = Gatekeeper([GK_BIN, "--listen", "127.0.0.1:0", "--upstream", e.addr, "--user", "nobody"])
    try:
        g.wait_ready()
        assert ids(g.proc.pid)[0] == ["65534"] * 4
        assert echo_once(g, "default") == b"ping"
    finally:
        g.stop()


@root_only
def test_reload_after_the_switch(readable_dir, echo, tmp_path_factory):
    """After dropping, SIGHUP re-reads the file as the new user: a readable
    file reloads; an unreadable one fails the reload and the running config
    stays; a change of `user` waits for a restart."""
    e = echo()
    path = write(readable_dir, config("127.0.0.1:0", e.addr, "user: nobody\n"))
    g = run(path)
    try:
        g.wait_ready()
        write(readable_dir, config("127.0.0.1:0", e.addr, "user: daemon\nlog:\n  level: debug\n"))
        g.signal(signal.SIGHUP)
        g.wait_log(r"msg=reloaded")
        assert "change on restart only" in g.logs()
        assert ids(g.proc.pid)[0] == ["65534"] * 4
        os.chmod(path, 0o600)
        g.signal(signal.SIGHUP)
        g.wait_log(r"reload failed")
        assert "ermission denied" in g.logs(), g.tail()
        assert echo_once(g) == b"ping"
    finally:
        g.stop()


def test_not_root_ignores_user_with_a_warning(readable_dir, echo):
    """Started by an ordinary user, `user` cannot apply: said, not fatal."""
    e = echo()
    path = write(readable_dir, config("127.0.0.1:0", e.addr, "user: daemon\n"))
    argv = [GK_BIN, "-c", path]
    if os.geteuid() == 0:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
    g = Gatekeeper(argv, config_path=path)
    try:
        g.wait_ready()
        assert "'user' ignored: not started as root" in g.logs(), g.tail()
        assert echo_once(g) == b"ping"
    finally:
        g.stop()


def test_check_mode_shows_the_keys(readable_dir):
    path = write(readable_dir, config("127.0.0.1:0", "127.0.0.1:9",
                                      "user: nobody\ngroup: nogroup\nallow_root: true\n"))
    r = run_gatekeeper(["-t", "-T", "-c", path])
    assert r.returncode == 0, r.stderr
    assert 'user: "nobody"\ngroup: "nogroup"\nallow_root: true\n' in r.stdout
    bad = write(readable_dir, config("127.0.0.1:0", "127.0.0.1:9", "allow_root: sometimes\n"),
                "bad.yaml")
    r = run_gatekeeper(["-t", "-c", bad])
    assert r.returncode == 1 and "bad.yaml:1:13:" in r.stderr, r.stderr
