"""Harness for the gatekeeper integration tests.

Runs the real build/gatekeeper binary and real TCP backends on loopback
(127.0.0.1 and ::1 only), and gives the tests small helpers to read its
logfmt/JSON log, wait for lines, and stop it cleanly.  Every backend binds an
ephemeral port and is a context manager with .close(); every helper that waits
takes a timeout that is only an upper bound (tests never assert on timings).

Environment:
  GATEKEEPER_BIN  path of the gatekeeper binary (default <repo>/build/gatekeeper)
  WHOAMI_BIN      path of the demo backend      (default <repo>/build/whoami)

Processes started here get the caller's environment minus every GATEKEEPER_*
variable (so GATEKEEPER_BIN never leaks into quick-mode settings), plus the
`env` dict a test passes.
"""

import hashlib
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GK_BIN = os.environ.get("GATEKEEPER_BIN", os.path.join(REPO, "build", "gatekeeper"))
WHOAMI_BIN = os.environ.get("WHOAMI_BIN", os.path.join(REPO, "build", "whoami"))

# Sanitizer reports that make a run fail even when the test itself passed.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


# --------------------------------------------------------------------------
# Log parsing

_LOGFMT_TOKEN = re.compile(r'\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s]*)')


def _unquote(v):
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        out = []
        i, body = 0, v[1:-1]
        while i < len(body):
            c = body[i]
            if c == "\\" and i + 1 < len(body):
                n = body[i + 1]
                out.append({"n": "\n", "t": "\t", "r": "\r"}.get(n, n))
                i += 2
            else:
                out.append(c)
                i += 1
        return "".join(out)
    return v


def parse_logfmt(line):
    """Parse one logfmt line into a dict of str -> str.

    Values may be bare (`k=v`) or double-quoted with \\" and \\\\ escapes
    (`k="a \\"b\\" c"`).  A bare key without '=' is ignored.
    """
    d = {}
    pos = 0
    line = line.rstrip("\r\n")
    while pos < len(line):
        m = _LOGFMT_TOKEN.match(line, pos)
        if not m:
            # skip a stray token (e.g. a bare word) up to the next blank
            nxt = line.find(" ", pos + 1)
            if nxt < 0:
                break
            pos = nxt
            continue
        d[m.group(1)] = _unquote(m.group(2))
        pos = m.end()
    return d


def parse_line(line):
    """Parse a log line in either format: JSON object or logfmt."""
    s = line.strip()
    if s.startswith("{"):
        try:
            obj = json.loads(s)
            if isinstance(obj, dict):
                return obj
        except ValueError:
            pass
    return parse_logfmt(s)


def split_hostport(addr):
    """'127.0.0.1:80' -> ('127.0.0.1', 80); '[::1]:80' -> ('::1', 80)."""
    addr = str(addr)
    if addr.startswith("["):
        host, _, port = addr[1:].partition("]:")
        return host, int(port)
    host, _, port = addr.rpartition(":")
    return host, int(port)


def join_hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# --------------------------------------------------------------------------
# Data helpers

def deterministic_bytes(n, seed=1):
    """n pseudo-random bytes, the same for the same (n, seed)."""
    return random.Random(seed).randbytes(n)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def recv_all(sock, timeout=30, limit=None):
    """Read until EOF (or `limit` bytes).  Returns bytes.  Raises on timeout."""
    sock.settimeout(timeout)
    chunks = []
    total = 0
    while limit is None or total < limit:
        b = sock.recv(1 << 16 if limit is None else min(1 << 16, limit - total))
        if not b:
            break
        chunks.append(b)
        total += len(b)
    return b"".join(chunks)


def recv_exact(sock, n, timeout=30):
    data = recv_all(sock, timeout=timeout, limit=n)
    if len(data) != n:
        raise AssertionError("expected %d bytes, got %d before EOF" % (n, len(data)))
    return data


# When each local address last connected: a client port is reused over a
# long run, and wait_access_for must not take an older connection's line.
_CONNECTED_AT = {}


def connect(addr, timeout=10):
    """Connect to (host, port) or 'host:port'.  Returns a blocking socket."""
    if isinstance(addr, str):
        addr = split_hostport(addr)
    host, port = addr
    s = socket.socket(_family(host), socket.SOCK_STREAM)
    s.settimeout(timeout)
    # Taken before connecting: gatekeeper may log this connection's access
    # line (a refused upstream) before connect() has even returned here.
    started = time.monotonic()
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    _CONNECTED_AT[join_hostport(*s.getsockname()[:2])] = started
    return s


def wait_closed(sock, timeout=10):
    """Wait until the peer closes: returns 'eof' or 'reset'.  Data read on the
    way is discarded.  Raises AssertionError if still open after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("connection still open after %ss" % timeout)
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return "reset"
        if not b:
            return "eof"


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (bound then released)."""
    s = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def have_ipv6():
    """True when ::1 can be bound and reached."""
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        s.listen(1)
        c = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        c.settimeout(2)
        try:
            c.connect(s.getsockname()[:2])
        finally:
            c.close()
        return True
    except OSError:
        return False
    finally:
        s.close()


ipv6_available = have_ipv6


def poll(fn, timeout, what, gk=None, interval=0.1):
    """Call fn until it returns a truthy value (returned); fail after timeout
    with what, and gatekeeper gk's log tail when given."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            tail = ("\ngatekeeper log tail:\n" + gk.tail(60)) if gk else ""
            raise AssertionError("%s: not within %ss%s" % (what, timeout, tail))
        time.sleep(interval)


def rss_bytes(pid):
    """Resident set size of a process, from /proc."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def wait_stalled(get, quiet=0.5, timeout=30):
    """Wait until get() stops changing for `quiet` seconds; returns its value."""
    deadline = time.monotonic() + timeout
    last, since = get(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        v = get()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return v
    return last


def port_is_listening(host, port):
    try:
        s = connect((host, port), timeout=2)
    except OSError:
        return False
    s.close()
    return True


# --------------------------------------------------------------------------
# gatekeeper process

def _child_env(env, quick=False):
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
    if quick and os.geteuid() == 0:
        base["GATEKEEPER_ALLOW_ROOT"] = "true"  # see as_root_ok
    if env:
        base.update({k: str(v) for k, v in env.items()})
    return base


class Gatekeeper:
    """A running gatekeeper.  stderr (the log) and stdout are drained by
    background threads into lists; the helpers below read them."""

    def __init__(self, argv, config_path=None, env=None, quick=False):
        self.argv = list(argv)
        self.config_path = config_path
        self._lines = []
        self._arrived = []  # when each stderr line was read
        self._out = []
        self._cond = threading.Condition()
        self._stopped = False
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(env, quick),
        )
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stderr, self._lines), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stdout, self._out), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _drain(self, f, into):
        for raw in iter(f.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                into.append(line)
                if into is self._lines:
                    self._arrived.append(time.monotonic())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    # -- log access ---------------------------------------------------------
    def lines(self):
        with self._cond:
            return list(self._lines)

    def logs(self):
        return "\n".join(self.lines())

    def stdout(self):
        with self._cond:
            return "\n".join(self._out)

    def mark(self):
        """Current number of log lines; pass as after= to wait for new ones."""
        with self._cond:
            return len(self._lines)

    def tail(self, n=40):
        return "\n".join(self.lines()[-n:])

    def parsed(self):
        return [parse_line(l) for l in self.lines()]

    def wait_log(self, regex, timeout=10, after=0):
        """Wait for a log line matching regex (re.search, per line), at or
        after line index `after`.  Returns the match or raises AssertionError
        with the log tail."""
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        i = after
        with self._cond:
            while True:
                while i < len(self._lines):
                    m = rx.search(self._lines[i])
                    i += 1
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    if i >= len(self._lines):
                        break
                self._cond.wait(min(left, 0.2))
        raise AssertionError(
            "no log line matching %r within %ss (exit=%r); log tail:\n%s"
            % (regex, timeout, self.proc.poll(), self.tail())
        )

    def access_lines(self):
        return [d for d in self.parsed() if d.get("msg") == "access"]

    def wait_access(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            acc = self.access_lines()
            if len(acc) >= n:
                return acc
            if time.monotonic() > deadline:
                raise AssertionError(
                    "expected %d access lines, have %d after %ss; log tail:\n%s"
                    % (n, len(acc), timeout, self.tail())
                )
            with self._cond:
                self._cond.wait(0.2)

    def wait_access_for(self, client, timeout=10):
        """Wait for the access line of one client connection.  client is a
        socket (its local address is used), a (host, port) or 'host:port'."""
        if isinstance(client, socket.socket):
            client = client.getsockname()[:2]
        if isinstance(client, tuple):
            client = join_hostport(*client)
        deadline = time.monotonic() + timeout
        since = _CONNECTED_AT.get(client, 0)
        while True:
            with self._cond:
                fresh = [l for l, t in zip(self._lines, self._arrived) if t >= since]
            for d in (parse_line(l) for l in fresh):
                if d.get("msg") == "access" and d.get("client") == client:
                    return d
            if time.monotonic() > deadline:
                raise AssertionError(
                    "no access line for client %s after %ss; log tail:\n%s" % (client, timeout, self.tail())
                )
            with self._cond:
                self._cond.wait(0.2)

    def addr(self, listener_name):
        """(host, port) from the `msg=listening listener=NAME addr=...` line."""
        for d in self.parsed():
            if d.get("msg") == "listening" and d.get("listener") == listener_name:
                return split_hostport(d["addr"])
        raise AssertionError(
            "no 'listening' line for listener %r; log tail:\n%s" % (listener_name, self.tail())
        )

    def addr_str(self, listener_name):
        return join_hostport(*self.addr(listener_name))

    def check_sanitizers(self):
        text = self.logs()
        for m in SANITIZER_MARKERS:
            if m in text:
                raise AssertionError("sanitizer report in gatekeeper log:\n" + text[-6000:])

    # -- process control ----------------------------------------------------
    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout=10):
        """Wait for the process to exit; returns its returncode.  Raises
        AssertionError (with the log tail) if it is still running."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "gatekeeper still running after %ss; log tail:\n%s" % (timeout, self.tail())
            )
        for t in self._threads:
            t.join(timeout=5)
        return rc

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s.  Idempotent."""
        if self._stopped:
            return self.proc.returncode
        self._stopped = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for t in self._threads:
            t.join(timeout=5)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:
                pass
        return self.proc.returncode

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        rx = re.compile(r"(^|\s)msg=ready(\s|$)|\"msg\":\s*\"ready\"")
        with self._cond:
            i = 0
            while True:
                while i < len(self._lines):
                    if rx.search(self._lines[i]):
                        return self
                    i += 1
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    if i >= len(self._lines):
                        raise AssertionError(
                            "gatekeeper exited (%r) before ready; argv=%r stderr:\n%s"
                            % (self.proc.returncode, self.argv, "\n".join(self._lines))
                        )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "gatekeeper not ready after %ss; stderr:\n%s"
                        % (timeout, "\n".join(self._lines[-40:]))
                    )
                self._cond.wait(min(left, 0.2))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _config_file(tmp_path, name="gk.yaml"):
    p = os.path.join(str(tmp_path), name)
    n = 2
    while os.path.exists(p):
        p = os.path.join(str(tmp_path), "gk-%d.yaml" % n)
        n += 1
    return p


def as_root_ok(config_text):
    """The suite runs as root in CI, and gatekeeper refuses to stay root
    unless the config says so: say so, unless the test sets it itself."""
    if os.geteuid() != 0 or re.search(r"^(allow_root|user):", config_text, re.M):
        return config_text
    return config_text.rstrip("\n") + "\nallow_root: true\n"


def write_config(config_text, tmp_path, name="gk.yaml"):
    """Write config text (as_root_ok) to a fresh file under tmp_path; returns its path."""
    p = _config_file(tmp_path, name)
    with open(p, "w") as f:
        f.write(as_root_ok(config_text))
    return p


def start_gatekeeper(config_text, tmp_path, args=(), env=None, wait_ready=True, ready_timeout=10):
    """Write config_text to tmp_path/gk.yaml (gk-N.yaml if taken), run
    `gatekeeper -c FILE *args`, and wait for msg=ready."""
    path = write_config(config_text, tmp_path)
    g = Gatekeeper([GK_BIN, "-c", path, *args], config_path=path, env=env)
    if wait_ready:
        try:
            g.wait_ready(ready_timeout)
        except BaseException:
            g.stop()
            raise
    return g


def start_quick(args, env=None, wait_ready=True, ready_timeout=10):
    """Run gatekeeper in quick mode (no -c) with the given args/env."""
    g = Gatekeeper([GK_BIN, *args], env=env, quick=True)
    if wait_ready:
        try:
            g.wait_ready(ready_timeout)
        except BaseException:
            g.stop()
            raise
    return g


def run_gatekeeper(args, env=None, timeout=10, cwd=None):
    """Run gatekeeper to completion (for -t/-T/--version/error cases)."""
    return subprocess.run(
        [GK_BIN, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_child_env(env),
        timeout=timeout,
        cwd=cwd,
    )


# --------------------------------------------------------------------------
# Backends

class _Server:
    """Threaded TCP server on host:0.  Subclasses implement handle(conn).

    Attributes: host, port, addr ("host:port", brackets for v6), accepted (count),
    results (list filled by handlers)."""

    def __init__(self, host="127.0.0.1", port=0, backlog=128):
        self.host = host
        self._lsock = socket.socket(_family(host), socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if ":" in host:
            self._lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self._lsock.bind((host, port))
        self._lsock.listen(backlog)
        self.port = self._lsock.getsockname()[1]
        self.addr = join_hostport(host, self.port)
        self.accepted = 0
        self.results = []
        self._conns = set()
        self._resetting = set()
        self._lock = threading.Condition()
        self._closing = False
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self):
        while not self._closing:
            try:
                r, _, _ = select.select([self._lsock], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                conn, _ = self._lsock.accept()
            except OSError:
                continue
            conn.setblocking(True)
            with self._lock:
                self.accepted += 1
                self._conns.add(conn)
                self._lock.notify_all()
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn):
        try:
            self.handle(conn)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._resetting.discard(conn)
                self._lock.notify_all()
            try:
                conn.close()
            except OSError:
                pass

    def handle(self, conn):  # pragma: no cover - overridden
        raise NotImplementedError

    def resetting(self, conn):
        """True once reset_all() picked this connection: send no FIN."""
        with self._lock:
            return conn in self._resetting

    def record(self, item):
        with self._lock:
            self.results.append(item)
            self._lock.notify_all()

    def wait_results(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.results) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "%s: expected %d results, have %d" % (type(self).__name__, n, len(self.results))
                    )
                self._lock.wait(left)
            return list(self.results)

    def wait_accepted(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.accepted < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "%s: expected %d accepted, have %d" % (type(self).__name__, n, self.accepted)
                    )
                self._lock.wait(left)

    def active(self):
        with self._lock:
            return len(self._conns)

    def reset_all(self):
        """Abort every live connection with a TCP RST (SO_LINGER 0 + close)."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                with self._lock:
                    self._resetting.add(c)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # wake the handler, whose close() then sends the RST
                c.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._acceptor.join(timeout=5)
        try:
            self._lsock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EchoServer(_Server):
    """Echoes bytes back.  On EOF from the client it has already echoed all
    it read, so it shuts its write side (half-close) and closes.
    results: one dict per connection {bytes: N, error: None|OSError}."""

    def handle(self, conn):
        n = 0
        err = None
        try:
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                conn.sendall(b)
                n += len(b)
            if not self.resetting(conn):
                conn.shutdown(socket.SHUT_WR)
        except OSError as e:
            err = e
        self.record({"bytes": n, "error": err})


class SinkServer(_Server):
    """Reads and sha256-hashes everything until EOF, then sends the hex
    digest (64 ASCII bytes) and closes.  results: {bytes, digest, error}."""

    def handle(self, conn):
        h = hashlib.sha256()
        n = 0
        try:
            while True:
                b = conn.recv(1 << 16)
                if not b:
                    break
                h.update(b)
                n += len(b)
        except OSError as e:
            self.record({"bytes": n, "digest": None, "error": e})
            return
        d = h.hexdigest()
        self.record({"bytes": n, "digest": d, "error": None})
        if self.resetting(conn):
            return
        conn.sendall(d.encode())
        conn.shutdown(socket.SHUT_WR)


class SourceServer(_Server):
    """Sends `size` bytes of deterministic data (deterministic_bytes(size,
    seed)), then shuts its write side; then reads whatever the client sends
    until EOF and records it.  .digest is the sha256 of the data sent;
    .progress is how many bytes the latest connection has sent so far.
    results: {sent, received_bytes, received_digest, error}."""

    def __init__(self, size, host="127.0.0.1", seed=7, **kw):
        self.size = size
        self.progress = 0
        self.data = deterministic_bytes(size, seed)
        self.digest = sha256(self.data)
        super().__init__(host=host, **kw)

    def handle(self, conn):
        sent = 0
        err = None
        try:
            view = memoryview(self.data)
            while sent < len(view):
                sent += conn.send(view[sent : sent + (1 << 18)])
                self.progress = sent
            conn.shutdown(socket.SHUT_WR)
        except OSError as e:
            err = e
        h = hashlib.sha256()
        n = 0
        try:
            while True:
                b = conn.recv(1 << 16)
                if not b:
                    break
                h.update(b)
                n += len(b)
        except OSError as e:
            err = err or e
        self.record({"sent": sent, "received_bytes": n, "received_digest": h.hexdigest(), "error": err})


class HandlerServer(_Server):
    """Runs handler(conn, server) for each accepted connection."""

    def __init__(self, handler, host="127.0.0.1", **kw):
        self._handler = handler
        super().__init__(host=host, **kw)

    def handle(self, conn):
        self._handler(conn, self)


class BlackholeServer:
    """A listening socket that never completes new handshakes: backlog 0 and
    its accept queue already holds one connection that is never accepted, so
    the kernel drops further SYNs and a connect() to it times out."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self._lsock = socket.socket(_family(host), socket.SOCK_STREAM)
        self._lsock.bind((host, 0))
        self._lsock.listen(0)
        self.port = self._lsock.getsockname()[1]
        self.addr = join_hostport(host, self.port)
        self._fillers = []
        # fill the accept queue: one completed handshake, never accepted
        f = socket.socket(_family(host), socket.SOCK_STREAM)
        f.settimeout(5)
        f.connect((host, self.port))
        self._fillers.append(f)
        # confirm that further handshakes do not complete
        probe = socket.socket(_family(host), socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            probe.connect((host, self.port))
        except BlockingIOError:
            pass
        _, w, _ = select.select([], [probe], [], 0.5)
        self._fillers.append(probe)
        if w and probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            try:
                probe.getpeername()
                raise RuntimeError("BlackholeServer: kernel still completes handshakes")
            except OSError:
                pass

    def close(self):
        for s in self._fillers:
            try:
                s.close()
            except OSError:
                pass
        self._fillers = []
        try:
            self._lsock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class WhoamiServer:
    """The demo backend: WHOAMI_BIN -l HOST:0 -n NAME.  Reads its
    `listening ADDR:PORT` line from stdout."""

    def __init__(self, host="127.0.0.1", name="whoami", timeout=10):
        self.host = host
        self.name = name
        listen = join_hostport(host, 0)
        self.proc = subprocess.Popen(
            [WHOAMI_BIN, "-l", listen, "-n", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(None),
        )
        self._err = []
        threading.Thread(target=self._drain_err, daemon=True).start()
        line = self._read_listening(timeout)
        self.port = split_hostport(line.split()[1])[1]
        self.addr = join_hostport(host, self.port)
        threading.Thread(target=self._drain_out, daemon=True).start()

    def _drain_err(self):
        for raw in iter(self.proc.stderr.readline, b""):
            self._err.append(raw.decode("utf-8", "replace"))

    def _drain_out(self):
        for _ in iter(self.proc.stdout.readline, b""):
            pass

    def _read_listening(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                raw = fd.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if line.startswith("listening "):
                    return line
        self.close()
        raise AssertionError("whoami did not print 'listening': stderr=%r" % "".join(self._err))

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# Config snippets

def listener_yaml(name, listen, upstream, **opts):
    """One `listeners:` entry as YAML text (indented for a top-level list)."""
    lines = ["  - name: %s" % name, "    listen: \"%s\"" % listen, "    upstream: \"%s\"" % upstream]
    for k, v in opts.items():
        lines.append("    %s: %s" % (k, v))
    return "\n".join(lines) + "\n"


def simple_config(listeners, defaults=None, log=None, extra=""):
    """Build a config: listeners is a list of (name, listen, upstream, opts)
    or of ready-made listener_yaml() strings."""
    out = []
    if log:
        out.append("log:\n" + "".join("  %s: %s\n" % kv for kv in log.items()))
    if defaults:
        out.append("defaults:\n" + "".join("  %s: %s\n" % kv for kv in defaults.items()))
    out.append(extra)
    out.append("listeners:\n")
    for l in listeners:
        if isinstance(l, str):
            out.append(l)
        else:
            name, listen, upstream = l[:3]
            opts = l[3] if len(l) > 3 else {}
            out.append(listener_yaml(name, listen, upstream, **opts))
    return "".join(out)


def echo_roundtrip(addr, payload=b"ping", timeout=10):
    """Connect, send payload, half-close, read until EOF; returns the reply."""
    s = connect(addr, timeout=timeout)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s, timeout=timeout)
    finally:
        s.close()
