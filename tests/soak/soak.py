#!/usr/bin/python3
"""gatekeeper soak test: many connections, then back to the baseline.

Starts build/gatekeeper (one worker, tcp mode, log level warn, an admin
listener for /metrics) in front of two backends in their own processes: a TCP
echo server (this script run with --echo-backend) and build/whoami (HTTP).
Records gatekeeper's open descriptors, RSS, heap in use and threads at
start, then runs:

  1. hold   SOAK_CONCURRENT connections open at once (each one echoes a line
            through gatekeeper when opened and again after the hold), held
            SOAK_HOLD_SECONDS, then closed;
  2. short  SOAK_SHORT connections (connect, send, read the echo, close),
            SOAK_SHORT_INFLIGHT at a time;
  3. mix    for SOAK_MIX_SECONDS at once: 64 MiB bulk downloads from whoami
            and 64 MiB uploads echoed back (both checked by sha256), HTTP
            keep-alive loops, echo ping-pong loops with sizes from 1 byte to
            256 KiB, short-connection churn, and idle connections held across
            the whole phase.

After each phase it waits until gatekeeper holds no session
(gatekeeper_connections_active is 0 on /metrics) and its descriptor count has
stopped changing, then measures again. It passes when, after every phase:
  - no connection failed (refused, reset, timed out, short or wrong data);
  - gatekeeper's descriptor count is the baseline exactly, and its thread
    count too;
  - its heap in use (glibc's malloc_stats(), called through gdb while it is
    idle; skipped with a note when gdb is missing) is within
    SOAK_HEAP_MARGIN_MIB of the baseline;
  - its RSS is within SOAK_RSS_MARGIN_MIB of the baseline (measured once it
    has stopped falling: gatekeeper gives freed heap back every few seconds);
  - gatekeeper's counters agree with the client's: connections accepted, each
    one closed with reason `closed`, no upstream connect failure, and bytes
    each way to the byte;
and at the end the process is alive, exits 0 on SIGTERM, and its log holds no
error line. No timing is asserted: timeouts only guard against hangs.

Clients bind 127.0.0.2 .. 127.0.0.254 in turn (IP_BIND_ADDRESS_NO_PORT, so
the port is still chosen at connect) and close gracefully; all traffic stays
on 127.0.0.0/8. Every process started here runs in its own session and is
stopped on exit, Ctrl-C or SIGTERM.

Run:  /usr/bin/python3 tests/soak/soak.py        (after `make all`)

Environment:
  SOAK_CONCURRENT      phase 1 connections held at once (default 10000; fewer
                       when gatekeeper's RLIMIT_NOFILE cannot hold 2 per
                       connection, with a note saying so)
  SOAK_HOLD_SECONDS    how long phase 1 holds them (default 20)
  SOAK_SHORT           phase 2 connections (default 100000)
  SOAK_SHORT_INFLIGHT  phase 2 connections in flight (default 200)
  SOAK_MIX_SECONDS     phase 3 length (default 180)
  SOAK_BULK_MIB        size of each bulk transfer (default 64)
  SOAK_RSS_MARGIN_MIB  RSS allowed above the baseline after a phase (default 4)
  SOAK_HEAP_MARGIN_MIB heap in use allowed above the baseline (default 2)
  SOAK_OUT             also write the result table (markdown) to this file
  SOAK_KEEP            1: keep the temporary directory (config, logs)
  GATEKEEPER_BIN       binary under test (default build/gatekeeper)
  WHOAMI_BIN           HTTP backend (default build/whoami)
Both binaries are copied at start, so a rebuild during the run changes nothing.
"""

import asyncio
import datetime
import hashlib
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from bench import http_get as bench_http_get  # noqa: E402
from bench import raise_nofile  # noqa: E402  (the same limit-raising as the benchmark)
from gkharness import wait_stalled  # noqa: E402  (the integration tests' settle wait)

NOFILE = 65536  # wanted; soft = hard when the hard limit cannot be raised

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GK_SRC = os.path.abspath(os.environ.get("GATEKEEPER_BIN", os.path.join(ROOT, "build/gatekeeper")))
WHOAMI_SRC = os.path.abspath(os.environ.get("WHOAMI_BIN", os.path.join(ROOT, "build/whoami")))
CONCURRENT = int(os.environ.get("SOAK_CONCURRENT", "10000"))
HOLD_SECONDS = float(os.environ.get("SOAK_HOLD_SECONDS", "20"))
SHORT = int(os.environ.get("SOAK_SHORT", "100000"))
SHORT_INFLIGHT = int(os.environ.get("SOAK_SHORT_INFLIGHT", "200"))
MIX_SECONDS = float(os.environ.get("SOAK_MIX_SECONDS", "180"))
BULK = int(float(os.environ.get("SOAK_BULK_MIB", "64")) * 1048576)
RSS_MARGIN = int(float(os.environ.get("SOAK_RSS_MARGIN_MIB", "4")) * 1048576)
HEAP_MARGIN = int(float(os.environ.get("SOAK_HEAP_MARGIN_MIB", "2")) * 1048576)
OUT = os.environ.get("SOAK_OUT")
KEEP = os.environ.get("SOAK_KEEP") == "1"

HOST = "127.0.0.1"
SOURCES = [f"127.0.0.{i}" for i in range(2, 255)]
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
OPEN_INFLIGHT = 256  # phase 1: connects (and closes) in flight at once
MIX_IDLE = 200  # phase 3: connections idle for the whole phase
MIX_HTTP_LANES = 8  # phase 3: HTTP keep-alive loops
MIX_PING_LANES = 4  # phase 3: echo ping-pong loops
MIX_CHURN = 32  # phase 3: short connections in flight
HANG = 300.0  # seconds before one exchange counts as hung (not a timing check)
FD_RESERVE = 16  # descriptors left to gatekeeper beyond 2 per held connection
ALPHABET = b"abcdefghijklmnopqrstuvwxyz"
# Lines gatekeeper writes at level warn that this run expects.
EXPECTED_WARN = ('msg="running as root"',)
PAGE = os.sysconf("SC_PAGE_SIZE")
RSS_QUIET = 6.0  # seconds RSS must hold still before it is measured (gatekeeper trims every 5 s)


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def mib(b):
    return "—" if b is None else f"{b / 1048576:.1f} MiB"


def kib(b):
    return "—" if b is None else f"{b / 1024:,.0f} KiB"


def sysctl(name):
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return " ".join(f.read().split())
    except OSError:
        return "?"


class SoakError(Exception):
    pass


class Interrupted(BaseException):
    pass


# ------------------------------------------------------------ echo backend


class EchoProtocol(asyncio.Protocol):
    """Writes back what it reads; stops reading while its output is backed
    up; closes once the peer's EOF came and everything is written."""

    def connection_made(self, transport):
        self.t = transport
        transport.set_write_buffer_limits(high=1 << 20, low=256 << 10)

    def data_received(self, data):
        self.t.write(data)

    def pause_writing(self):
        self.t.pause_reading()

    def resume_writing(self):
        if not self.t.is_closing():
            self.t.resume_reading()

    def eof_received(self):
        return False  # close once the write buffer is flushed


def echo_backend():
    """The echo server, in its own process; prints its port on stdout."""
    raise_nofile(NOFILE)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    loop = asyncio.new_event_loop()
    srv = loop.run_until_complete(
        loop.create_server(EchoProtocol, HOST, 0, backlog=4096, reuse_address=True))
    print(srv.sockets[0].getsockname()[1], flush=True)
    loop.run_forever()


# ------------------------------------------------------------- processes


class Procs:
    """Processes started here, each in its own session; stopped by pid."""

    def __init__(self):
        self.live = []

    def start(self, argv, logpath, outpath=None):
        with open(logpath, "ab") as err, open(outpath or logpath, "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 start_new_session=True)
        p.logpath = logpath
        self.live.append(p)
        return p

    def stop(self, p, timeout=15.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status."""
        if p not in self.live:
            return p.returncode
        self.live.remove(p)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def stop_all(self):
        for p in list(reversed(self.live)):
            try:
                self.stop(p, timeout=5.0)
            except Exception as e:  # keep cleaning up the others
                log(f"cleanup of pid {p.pid}: {e}")


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def tail(path, n=15):
    return "\n".join(read_file(path).splitlines()[-n:])


def wait_line(path, proc, what, timeout=15.0):
    """First line of `path` once it is complete (a process's start-up line)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = read_file(path)
        if "\n" in text:
            return text.split("\n", 1)[0]
        if proc.poll() is not None:
            raise SoakError(f"{what} exited with {proc.returncode} at start:\n{tail(proc.logpath)}")
        time.sleep(0.05)
    raise SoakError(f"{what} printed nothing within {timeout}s:\n{tail(proc.logpath)}")


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------ /proc figures


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def status_field(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split()[1]
    raise SoakError(f"no {key} for pid {pid}")


def rss_bytes(pid):
    return int(status_field(pid, "VmRSS")) * 1024


def thread_count(pid):
    return int(status_field(pid, "Threads"))


def nofile_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise SoakError(f"no open-files limit for pid {pid}")


def time_wait_to(ports):
    """TIME_WAIT sockets whose remote port is one of `ports`: gatekeeper's
    side of its upstream connections once they closed (it sends the first
    FIN upstream when a client closes)."""
    want = {f":{p:04X}" for p in ports}
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split(None, 4)
            if parts[3] == "06" and parts[2][-5:] in want:
                n += 1
    return n


# ------------------------------------------------------------------ metrics


def http_get(port, path, timeout=10.0):
    """(status, body) of one GET on 127.0.0.1:port (the benchmark's request)."""
    data = bench_http_get(port, path, timeout=timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise SoakError(f"bad HTTP answer from port {port}: {data[:200]!r}")
    return status, body.decode(errors="replace")


def parse_labels(s):
    out = {}
    for part in s.split(","):
        if "=" in part:
            k, _, v = part.partition("=")
            out[k.strip()] = v.strip().strip('"')
    return out


class Metrics:
    """One /metrics scrape: samples as (name, labels dict, value)."""

    def __init__(self, text):
        self.samples = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            name, _, labels = key.partition("{")
            self.samples.append((name, parse_labels(labels.rstrip("}")), float(value)))

    def sum(self, name, **labels):
        return sum(v for n, lab, v in self.samples
                   if n == name and all(lab.get(k) == x for k, x in labels.items()))

    def by(self, name, key, **labels):
        out = {}
        for n, lab, v in self.samples:
            if n == name and all(lab.get(k) == x for k, x in labels.items()):
                out[lab.get(key)] = out.get(lab.get(key), 0) + v
        return out


# ------------------------------------------------------------ client stats


class Phase:
    def __init__(self, name):
        self.name = name
        self.attempts = 0  # connections tried
        self.failures = 0  # connections that failed at any point
        self.errors = []  # the first few failure messages
        self.connected = {}  # listener -> connections that connected
        self.sent = {}  # listener -> bytes written to gatekeeper
        self.recvd = {}  # listener -> bytes read from gatekeeper
        self.detail = []  # lines printed under the table
        self.counts = {}  # mix: what each lane did
        self.peak_fds = self.peak_rss = self.peak_tw = 0
        self.fds_after = self.rss_after = self.threads_after = self.heap_after = None
        self.t0 = self.t1 = None
        self.is_end = False  # the last look: no connections of its own
        self.failed_checks = []
        self.notes = []

    def fail(self, msg):
        self.failures += 1
        if len(self.errors) < 10:
            self.errors.append(msg)

    def count(self, key, n=1):
        self.counts[key] = self.counts.get(key, 0) + n

    def account(self, conn):
        ln = conn.listener
        self.connected[ln] = self.connected.get(ln, 0) + 1
        self.sent[ln] = self.sent.get(ln, 0) + conn.sent
        self.recvd[ln] = self.recvd.get(ln, 0) + conn.recvd

    @property
    def duration(self):
        return (self.t1 or time.time()) - self.t0


class Sampler(threading.Thread):
    """Samples gatekeeper's fds and RSS twice a second (TIME_WAIT towards
    the backends every 2 s) and keeps the peak for the current phase."""

    def __init__(self, pid, backend_ports):
        super().__init__(daemon=True)
        self.pid = pid
        self.ports = backend_ports
        self.phase = None
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.error = None

    def run(self):
        n = 0
        while not self.stop_ev.wait(0.5):
            try:
                fds, rss = fd_count(self.pid), rss_bytes(self.pid)
                tw = time_wait_to(self.ports) if n % 4 == 0 else 0
            except (OSError, SoakError) as e:
                self.error = str(e)  # the process is gone; the main thread reports it
                continue
            n += 1
            with self.lock:
                ph = self.phase
                if ph is not None:
                    ph.peak_fds = max(ph.peak_fds, fds)
                    ph.peak_rss = max(ph.peak_rss, rss)
                    ph.peak_tw = max(ph.peak_tw, tw)

    def set_phase(self, ph):
        with self.lock:
            self.phase = ph


# ------------------------------------------------------------------ client


class Conn:
    """One client connection through gatekeeper (non-blocking socket driven
    by the running asyncio loop), counting the bytes each way."""

    def __init__(self, listener, port, src):
        self.listener = listener
        self.port = port
        self.src = src
        self.sent = self.recvd = 0
        self.buf = bytearray()
        self.loop = asyncio.get_running_loop()
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setblocking(False)

    async def connect(self):
        # Bind only the address; the port is picked at connect time, per
        # destination, so 253 sources give 253 separate port ranges.
        self.s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        self.s.bind((self.src, 0))
        await self.loop.sock_connect(self.s, (HOST, self.port))

    async def send(self, data):
        await self.loop.sock_sendall(self.s, data)
        self.sent += len(data)

    async def _fill(self, size=262144):
        b = await self.loop.sock_recv(self.s, size)
        if not b:
            raise SoakError(f"EOF from gatekeeper after {self.recvd} bytes")
        self.recvd += len(b)
        self.buf += b

    async def read_exact(self, n):
        while len(self.buf) < n:
            await self._fill(max(65536, min(n - len(self.buf), 1 << 20)))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_until(self, sep, limit=65536):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise SoakError(f"no {sep!r} in the first {limit} bytes")
            await self._fill(65536)

    async def read_stream(self, n, hasher, chunk):
        """Hash the next n bytes without keeping them."""
        view = memoryview(chunk)
        take = min(n, len(self.buf))
        hasher.update(self.buf[:take])
        del self.buf[:take]
        n -= take
        while n > 0:
            k = await self.loop.sock_recv_into(self.s, view[:min(n, len(chunk))])
            if not k:
                raise SoakError(f"EOF from gatekeeper with {n} bytes of a stream still due")
            self.recvd += k
            hasher.update(view[:k])
            n -= k

    async def roundtrip(self, payload):
        await self.send(payload)
        echo = await self.read_exact(len(payload))
        if echo != payload:
            raise SoakError(f"echo differs: sent {len(payload)} bytes, first difference at "
                            f"{next(i for i, (a, b) in enumerate(zip(echo, payload)) if a != b)}")

    async def finish(self):
        """Graceful close: send our FIN, then read up to gatekeeper's EOF,
        which proves the close went both ways through it."""
        self.s.shutdown(socket.SHUT_WR)
        if self.buf:
            raise SoakError(f"{len(self.buf)} unexpected bytes before EOF")
        while True:
            b = await self.loop.sock_recv(self.s, 65536)
            if not b:
                break
            self.recvd += len(b)
            raise SoakError(f"{len(b)} unexpected bytes before EOF")

    def close(self):
        self.s.close()


class Client:
    def __init__(self, ports):
        self.ports = ports  # listener name -> gatekeeper port
        self.next_src = 0

    def conn(self, listener):
        self.next_src = (self.next_src + 1) % len(SOURCES)
        return Conn(listener, self.ports[listener], SOURCES[self.next_src])

    async def guarded(self, ph, what, coro):
        """Run one connection's exchange; a failure (or a hang of HANG
        seconds) counts against the phase. Returns True on success."""
        try:
            await asyncio.wait_for(coro, HANG)
            return True
        except asyncio.TimeoutError:
            ph.fail(f"{what}: no progress within {HANG:.0f}s")
        except (OSError, SoakError) as e:
            ph.fail(f"{what}: {type(e).__name__}: {e}")
        return False

    async def short(self, ph, i, listener="echo"):
        """One short connection: connect, send, read the echo, close."""
        ph.attempts += 1
        c = self.conn(listener)

        async def go():
            await c.connect()
            await c.roundtrip(b"short %d from %s\n" % (i, c.src.encode()) + b"." * (i % 200))
            await c.finish()
        try:
            if await self.guarded(ph, f"short #{i} from {c.src}", go()):
                ph.account(c)
        finally:
            c.close()


# -------------------------------------------------------------- the phases


async def phase_hold(cl, ph, n):
    """n connections open at once, each echoing once when opened and once
    after the hold; then all closed."""
    conns = [None] * n
    bad = set()
    sem = asyncio.Semaphore(OPEN_INFLIGHT)

    async def open_one(i):
        async with sem:
            ph.attempts += 1
            c = conns[i] = cl.conn("echo")

            async def go():
                await c.connect()
                await c.roundtrip(b"hold %d open\n" % i)
            if not await cl.guarded(ph, f"hold #{i} open from {c.src}", go()):
                bad.add(i)

    async def again(i):
        async with sem:
            if i not in bad and not await cl.guarded(
                    ph, f"hold #{i} after the hold", conns[i].roundtrip(b"hold %d still here\n" % i)):
                bad.add(i)

    async def close_one(i):
        async with sem:
            c = conns[i]
            if i not in bad and await cl.guarded(ph, f"hold #{i} close", c.finish()):
                ph.account(c)
            c.close()

    try:
        await asyncio.gather(*(open_one(i) for i in range(n)))
        log(f"   {n - len(bad):,} connections open")
        ph.at_peak = await asyncio.get_running_loop().run_in_executor(None, ph.measure_peak)
        log(f"   holding them {HOLD_SECONDS:g}s")
        await asyncio.sleep(HOLD_SECONDS)
        await asyncio.gather(*(again(i) for i in range(n)))
        await asyncio.gather(*(close_one(i) for i in range(n)))
    finally:
        for c in conns:
            if c is not None:
                c.close()


async def phase_short(cl, ph, n, inflight):
    nxt = iter(range(n))
    done = [0]

    async def worker():
        for i in nxt:
            await cl.short(ph, i)
            done[0] += 1
            if done[0] % 20000 == 0:
                log(f"   {done[0]:,} of {n:,}")
    await asyncio.gather(*(worker() for _ in range(inflight)))


def data_sha256(n):
    return hashlib.sha256((ALPHABET * (n // 26 + 1))[:n]).hexdigest()


async def phase_mix(cl, ph, seconds, rng):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    expired = lambda: loop.time() >= deadline  # noqa: E731
    want_data = await loop.run_in_executor(None, data_sha256, BULK)
    block = rng.randbytes(1 << 20)
    chunk_dl, chunk_ul = bytearray(1 << 20), bytearray(1 << 20)

    async def download():
        while not expired():
            ph.attempts += 1
            c = cl.conn("http")

            async def go():
                await c.connect()
                await c.send(b"GET /data?size=%d HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
                             % BULK)
                head = await c.read_until(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200 ") or b"\r\nContent-Length: %d\r\n" % BULK not in head:
                    raise SoakError(f"bulk download: unexpected head {head[:200]!r}")
                h = hashlib.sha256()
                await c.read_stream(BULK, h, chunk_dl)
                if h.hexdigest() != want_data:
                    raise SoakError("bulk download: sha256 differs from /data's pattern")
                await c.finish()
            try:
                if await cl.guarded(ph, f"bulk download from {c.src}", go()):
                    ph.account(c)
                    ph.count("bulk_down")
                    ph.count("bulk_bytes", BULK)
            finally:
                c.close()

    async def upload():
        """BULK bytes (1 MiB blocks, each stamped with its index) through the
        echo backend, written and read at once; both ends hashed."""
        while not expired():
            ph.attempts += 1
            c = cl.conn("echo")
            sent_h, got_h = hashlib.sha256(), hashlib.sha256()

            async def writer():
                for k in range((BULK + len(block) - 1) // len(block)):
                    b = (b"%016d" % k + block[16:])[:min(len(block), BULK - k * len(block))]
                    sent_h.update(b)
                    await c.send(b)
                c.s.shutdown(socket.SHUT_WR)

            async def go():
                await c.connect()
                w = asyncio.ensure_future(writer())
                try:
                    await c.read_stream(BULK, got_h, chunk_ul)
                    await w
                finally:
                    w.cancel()
                if got_h.hexdigest() != sent_h.hexdigest():
                    raise SoakError("bulk upload: the echoed stream's sha256 differs")
                b = await c.loop.sock_recv(c.s, 65536)
                if b:
                    raise SoakError(f"bulk upload: {len(b)} bytes past the end")
            try:
                if await cl.guarded(ph, f"bulk upload from {c.src}", go()):
                    ph.account(c)
                    ph.count("bulk_up")
                    ph.count("bulk_bytes", BULK)
            finally:
                c.close()

    async def http_lane(lane):
        r = random.Random(rng.random())
        while not expired():
            ph.attempts += 1
            c = cl.conn("http")
            requests = r.randint(50, 500)

            async def go():
                await c.connect()
                for k in range(requests):
                    if k and expired():
                        break
                    size = r.choice((None, 0, 1, 100, 1400, 16384, 65536, r.randint(0, 200000)))
                    path = b"/health" if size is None else b"/data?size=%d" % size
                    await c.send(b"GET %s HTTP/1.1\r\nHost: soak\r\nUser-Agent: soak/%d\r\n\r\n"
                                 % (path, lane))
                    head = await c.read_until(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 200 "):
                        raise SoakError(f"keep-alive: unexpected head {head[:200]!r}")
                    try:
                        i = head.index(b"\r\nContent-Length: ") + 18
                        length = int(head[i:head.index(b"\r\n", i)])
                    except ValueError:
                        raise SoakError(f"keep-alive: no Content-Length in {head[:200]!r}")
                    body = await c.read_exact(length)
                    want = b"ok\n" if size is None else (ALPHABET * (size // 26 + 1))[:size]
                    if body != want:
                        raise SoakError(f"keep-alive: wrong body for {path.decode()}")
                    ph.count("http_requests")
                await c.finish()
            try:
                if await cl.guarded(ph, f"keep-alive lane {lane} from {c.src}", go()):
                    ph.account(c)
            finally:
                c.close()

    async def ping_lane(lane):
        r = random.Random(rng.random())
        while not expired():
            ph.attempts += 1
            c = cl.conn("echo")
            rounds = r.randint(20, 300)

            async def go():
                await c.connect()
                for k in range(rounds):
                    if k and expired():
                        break
                    size = r.choice((1, 7, 100, 1400, 4096, 16384, 65536, 262144))
                    start = r.randrange(len(block) - size)
                    await c.roundtrip(block[start:start + size])
                    ph.count("echo_roundtrips")
                await c.finish()
            try:
                if await cl.guarded(ph, f"ping-pong lane {lane} from {c.src}", go()):
                    ph.account(c)
            finally:
                c.close()

    counter = iter(range(1 << 62))

    async def churn():
        while not expired():
            await cl.short(ph, next(counter))
            ph.count("churn")

    idle = [cl.conn("echo") for _ in range(MIX_IDLE)]
    idle_ok = []

    async def idle_open(i, c):
        ph.attempts += 1

        async def go():
            await c.connect()
            await c.roundtrip(b"idle %d\n" % i)
        if await cl.guarded(ph, f"idle #{i} open from {c.src}", go()):
            idle_ok.append((i, c))

    async def idle_close(i, c):
        async def go():
            await c.roundtrip(b"idle %d after %gs\n" % (i, seconds))
            await c.finish()
        if await cl.guarded(ph, f"idle #{i} close", go()):
            ph.account(c)
            ph.count("idle")

    async def progress():
        while not expired():
            await asyncio.sleep(min(30.0, max(0.1, deadline - loop.time())))
            left = max(0.0, deadline - loop.time())
            log(f"   {ph.counts.get('bulk_bytes', 0) / 1048576:,.0f} MiB bulk, "
                f"{ph.counts.get('http_requests', 0):,} requests, "
                f"{ph.counts.get('echo_roundtrips', 0):,} echo round trips, "
                f"{ph.counts.get('churn', 0):,} short connections; {left:.0f}s left")

    try:
        await asyncio.gather(*(idle_open(i, c) for i, c in enumerate(idle)))
        await asyncio.gather(download(), upload(),
                             *(http_lane(k) for k in range(MIX_HTTP_LANES)),
                             *(ping_lane(k) for k in range(MIX_PING_LANES)),
                             *(churn() for _ in range(MIX_CHURN)), progress())
        await asyncio.gather(*(idle_close(i, c) for i, c in idle_ok))
    finally:
        for c in idle:
            c.close()


# ---------------------------------------------------------------- the run


def gk_config(listen, admin, echo_port, http_port):
    root = "allow_root: true\n" if os.geteuid() == 0 else ""
    return f"""# written by tests/soak/soak.py
log:
  level: warn
workers: 1
{root}admin:
  listen: {HOST}:{admin}
defaults:
  max_connections: 20000
  idle_timeout: 10m
listeners:
  - name: echo
    listen: {HOST}:{listen['echo']}
    mode: tcp
    upstream: {HOST}:{echo_port}
  - name: http
    listen: {HOST}:{listen['http']}
    mode: tcp
    upstream: {HOST}:{http_port}
"""


# What glibc's malloc_stats() writes to gatekeeper's stderr (see heap_in_use).
MALLOC_STATS_LINE = re.compile(r"^(Arena \d+:|Total \(incl\. mmap\):|system bytes\s+=|in use bytes\s+=|"
                               r"max mmap (regions|bytes)\s*=)")


class Soak:
    def __init__(self, d, procs):
        self.d = d
        self.procs = procs
        self.phases = []
        self.notes = []
        self.failed = []
        self.heap_note = None

    def start(self):
        gk, whoami = os.path.join(self.d, "gatekeeper"), os.path.join(self.d, "whoami")
        shutil.copy2(GK_SRC, gk)
        shutil.copy2(WHOAMI_SRC, whoami)
        with open(gk, "rb") as f:
            self.gk_sha = hashlib.sha256(f.read()).hexdigest()[:12]
        self.gk_version = subprocess.run([gk, "--version"], capture_output=True,
                                         text=True).stdout.strip() or "?"

        self.echo = self.procs.start([sys.executable, os.path.abspath(__file__), "--echo-backend"],
                                     os.path.join(self.d, "echo.log"), os.path.join(self.d, "echo.out"))
        self.echo_port = int(wait_line(os.path.join(self.d, "echo.out"), self.echo, "echo backend"))
        self.whoami = self.procs.start([whoami, "-l", f"{HOST}:0"], os.path.join(self.d, "whoami.log"),
                                       os.path.join(self.d, "whoami.out"))
        line = wait_line(os.path.join(self.d, "whoami.out"), self.whoami, "whoami")
        self.http_port = int(line.rsplit(":", 1)[1])

        self.ports = {"echo": free_port(), "http": free_port()}
        self.admin = free_port()
        conf = os.path.join(self.d, "gatekeeper.yaml")
        with open(conf, "w") as f:
            f.write(gk_config(self.ports, self.admin, self.echo_port, self.http_port))
        self.gk_log = os.path.join(self.d, "gatekeeper.log")
        self.gk = self.procs.start([gk, "-c", conf], self.gk_log)
        self.pid = self.gk.pid
        deadline = time.time() + 15
        while True:
            if self.gk.poll() is not None:
                raise SoakError(f"gatekeeper exited with {self.gk.returncode} at start:\n"
                                f"{tail(self.gk_log)}")
            try:
                if http_get(self.admin, "/readyz", timeout=2)[0] == 200:
                    break
            except (OSError, SoakError):
                pass
            if time.time() > deadline:
                raise SoakError(f"gatekeeper not ready within 15s:\n{tail(self.gk_log)}")
            time.sleep(0.1)
        self.nofile = nofile_limit(self.pid)
        self.client = Client(self.ports)
        # Baseline: started and ready, nothing proxied yet.
        time.sleep(0.5)
        self.base_fds = wait_stalled(lambda: fd_count(self.pid), quiet=1.0, timeout=30)
        self.base_rss = rss_bytes(self.pid)
        self.base_threads = thread_count(self.pid)
        self.base_heap = self.heap_in_use()
        self.sampler = Sampler(self.pid, (self.echo_port, self.http_port))
        self.sampler.start()
        heap = "" if self.base_heap is None else f", heap in use {kib(self.base_heap)}"
        log(f"{self.gk_version} (sha256 {self.gk_sha}) pid {self.pid}: "
            f"{self.base_fds} fds, RSS {mib(self.base_rss)}{heap}, {self.base_threads} thread(s), "
            f"RLIMIT_NOFILE {self.nofile}; echo backend port {self.echo_port}, whoami port "
            f"{self.http_port}")

    def heap_in_use(self):
        """Bytes gatekeeper's malloc holds for live allocations ("in use
        bytes" of glibc's malloc_stats(), every arena and mmap), or None.
        gdb calls malloc_stats() in the process, which prints to its stderr
        (the log file). Only called while gatekeeper is idle, in epoll_wait,
        so no malloc lock can be held. RSS alone cannot show a leak once a
        peak has left freed pages inside the heap (see the README)."""
        if self.heap_note is not None:
            return None
        gdb = shutil.which("gdb")
        if not gdb:
            self.heap_note = "gdb not found: heap in use not measured (RSS only)"
            return None
        size0 = os.path.getsize(self.gk_log)
        try:
            r = subprocess.run([gdb, "-p", str(self.pid), "-batch", "-nx", "-ex",
                                "call (void)malloc_stats()"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.heap_note = f"gdb failed ({e}): heap in use not measured (RSS only)"
            return None
        deadline = time.time() + 5
        while time.time() < deadline:
            with open(self.gk_log, "rb") as f:
                f.seek(size0)
                text = f.read().decode(errors="replace")
            found = re.findall(r"^in use bytes\s*=\s*(\d+)", text, re.M)
            if "max mmap bytes" in text and found:
                return int(found[-1])  # the last one is the total
            time.sleep(0.05)
        why = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        self.heap_note = f"gdb could not call malloc_stats() ({why[0][:150]}): heap in use not measured"
        return None

    def metrics(self):
        status, body = http_get(self.admin, "/metrics")
        if status != 200:
            raise SoakError(f"/metrics answered {status}")
        return Metrics(body)

    def alive(self):
        return self.gk.poll() is None

    def run_phase(self, name, coro_fn):
        ph = Phase(name)
        ph.measure_peak = lambda: self.measure_peak(ph)
        self.phases.append(ph)
        log(f"== {name}")
        m0 = self.metrics()
        self.sampler.set_phase(ph)
        ph.t0 = time.time()
        try:
            asyncio.run(coro_fn(ph))
        finally:
            ph.t1 = time.time()
        self.settle(ph)
        self.sampler.set_phase(None)
        self.check_phase(ph, m0)
        log(f"   {ph.attempts:,} connections, {ph.failures} failed; fds {ph.fds_after} "
            f"(baseline {self.base_fds}), RSS {mib(ph.rss_after)}, heap in use {kib(ph.heap_after)}; "
            f"{ph.duration:.0f}s")
        return ph

    def measure_peak(self, ph):
        """Called with every phase-1 connection open: gatekeeper's own view."""
        m = self.metrics()
        active = m.sum("gatekeeper_connections_active")
        fds, rss = fd_count(self.pid), rss_bytes(self.pid)
        ph.peak_fds, ph.peak_rss = max(ph.peak_fds, fds), max(ph.peak_rss, rss)
        return {"active": active, "fds": fds, "rss": rss}

    def settle(self, ph):
        """Wait for gatekeeper to hold no session and a steady fd count, then
        measure."""
        deadline = time.time() + 120
        active = None
        while time.time() < deadline and self.alive():
            try:
                active = self.metrics().sum("gatekeeper_connections_active")
            except (OSError, SoakError) as e:
                active = f"unknown ({e})"
            if active == 0:
                break
            time.sleep(0.2)
        if active != 0:
            ph.failed_checks.append(f"sessions still active 120s after the phase: {active}")
        if not self.alive():
            ph.failed_checks.append(f"gatekeeper exited with status {self.gk.returncode}")
            return
        fds = wait_stalled(lambda: fd_count(self.pid), quiet=1.0, timeout=30)
        t = time.time() + 10
        while fds != self.base_fds and time.time() < t:  # a close still on its way
            time.sleep(0.2)
            fds = fd_count(self.pid)
        ph.fds_after = fds
        # Freed heap goes back on gatekeeper's trim timer (every 5 s): wait
        # until RSS has held still for longer than that.
        ph.rss_after = wait_stalled(lambda: rss_bytes(self.pid), quiet=RSS_QUIET, timeout=60)
        ph.threads_after = thread_count(self.pid)
        ph.heap_after = self.heap_in_use()
        ph.peak_fds = max(ph.peak_fds, fds)
        ph.peak_rss = max(ph.peak_rss, ph.rss_after)

    def check_memory(self, ph):
        """fds exactly back, heap in use back within HEAP_MARGIN of the
        baseline, RSS within RSS_MARGIN of the baseline; threads unchanged."""
        bad = ph.failed_checks
        if ph.fds_after != self.base_fds:
            bad.append(f"{ph.fds_after} fds after the phase, baseline {self.base_fds}: "
                       f"{self.fd_listing()}")
        if self.base_heap is not None and ph.heap_after is not None and \
                ph.heap_after > self.base_heap + HEAP_MARGIN:
            bad.append(f"heap in use {kib(ph.heap_after)} after the phase, over baseline "
                       f"{kib(self.base_heap)} + {kib(HEAP_MARGIN)}")
        limit = self.base_rss + RSS_MARGIN
        if ph.rss_after > limit:
            bad.append(f"RSS {mib(ph.rss_after)} after the phase, over baseline {mib(self.base_rss)} + "
                       f"{mib(RSS_MARGIN)}")
        if ph.threads_after != self.base_threads:
            bad.append(f"{ph.threads_after} threads after the phase, baseline {self.base_threads}")

    def check_phase(self, ph, m0):
        bad = ph.failed_checks
        if ph.failures:
            bad.append(f"{ph.failures} failed connection(s); first: " + "; ".join(ph.errors[:3]))
        if not self.alive():
            return
        self.check_memory(ph)
        # gatekeeper's counters against the client's.
        m1 = self.metrics()

        def delta(name, **labels):
            return int(m1.sum(name, **labels) - m0.sum(name, **labels))
        for ln in self.ports:
            acc = delta("gatekeeper_connections_accepted_total", listener=ln)
            r0 = m0.by("gatekeeper_connections_closed_total", "reason", listener=ln)
            r1 = m1.by("gatekeeper_connections_closed_total", "reason", listener=ln)
            reasons = {k: int(v - r0.get(k, 0)) for k, v in r1.items() if v - r0.get(k, 0)}
            closed = sum(reasons.values())
            cfail = delta("gatekeeper_upstream_connect_failures_total", listener=ln)
            b_in = delta("gatekeeper_bytes_total", listener=ln, direction="in")
            b_out = delta("gatekeeper_bytes_total", listener=ln, direction="out")
            if acc == 0 and not ph.connected.get(ln):
                continue
            ph.detail.append(f"listener {ln}: gatekeeper accepted {acc:,}, closed {closed:,} "
                             f"({', '.join(f'{k} {v:,}' for k, v in sorted(reasons.items()))}), "
                             f"upstream connect failures {cfail}, bytes in {b_in:,} / out {b_out:,}")
            if acc != closed:
                bad.append(f"{ln}: accepted {acc} but closed {closed}")
            if set(reasons) - {"closed"}:
                bad.append(f"{ln}: close reasons other than `closed`: {reasons}")
            if cfail:
                bad.append(f"{ln}: {cfail} upstream connect failure(s)")
            if ph.failures == 0:
                want = (ph.connected.get(ln, 0), ph.sent.get(ln, 0), ph.recvd.get(ln, 0))
                if (acc, b_in, b_out) != want:
                    bad.append(f"{ln}: gatekeeper counted {acc} connections, {b_in} bytes in, "
                               f"{b_out} out; the client made {want[0]}, sent {want[1]}, "
                               f"read {want[2]}")

    def fd_listing(self):
        """What gatekeeper's descriptors point at, by kind."""
        kinds = {}
        try:
            for fd in os.listdir(f"/proc/{self.pid}/fd"):
                try:
                    t = os.readlink(f"/proc/{self.pid}/fd/{fd}")
                except OSError:
                    continue
                t = t.split(":")[0] if ":" in t else t
                kinds[t] = kinds.get(t, 0) + 1
        except OSError:
            return "?"
        return ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))

    def log_check(self):
        """Error-level lines fail the run; unexpected warnings are noted."""
        errors, warns = [], []
        for line in read_file(self.gk_log).splitlines():
            if MALLOC_STATS_LINE.match(line.strip()):
                continue  # heap_in_use's
            lvl = next((w[6:] for w in line.split() if w.startswith("level=")), "")
            if lvl in ("error", "fatal", "crit", "critical"):
                errors.append(line)
            elif lvl == "warn" and not any(e in line for e in EXPECTED_WARN):
                warns.append(line)
            elif not lvl and line.strip():
                errors.append(line)  # not one of gatekeeper's log lines: a crash report?
        return errors, warns


# ------------------------------------------------------------------ output


def render(s, header):
    cols = ["phase", "connections", "failures", "peak fds", "fds after", "peak RSS", "RSS after",
            "heap in use after", "duration"]
    lines = [header, "", "| " + " | ".join(cols) + " |",
             "|---|" + "|".join(["---:"] * (len(cols) - 1)) + "|"]
    lines.append(f"| baseline (started, nothing proxied) | — | — | — | {s.base_fds} | — | "
                 f"{mib(s.base_rss)} | {kib(s.base_heap)} | — |")
    for ph in s.phases:
        if ph.is_end:
            lines.append(f"| {ph.name} | — | — | — | {ph.fds_after} | — | {mib(ph.rss_after)} | "
                         f"{kib(ph.heap_after)} | — |")
            continue
        lines.append(f"| {ph.name} | {ph.attempts:,} | {ph.failures:,} | {ph.peak_fds:,} | "
                     f"{ph.fds_after if ph.fds_after is not None else '—'} | {mib(ph.peak_rss)} | "
                     f"{mib(ph.rss_after)} | {kib(ph.heap_after)} | {ph.duration:.0f} s |")
    return "\n".join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--echo-backend":
        return echo_backend()
    for path, what in ((GK_SRC, "GATEKEEPER_BIN"), (WHOAMI_SRC, "WHOAMI_BIN")):
        if not os.access(path, os.X_OK):
            sys.exit(f"soak: {path} not found ({what}); run `make all` first")
    own_nofile = raise_nofile(NOFILE)

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    for sg in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sg, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    procs = Procs()
    d = tempfile.mkdtemp(prefix="gk-soak-")
    rng = random.Random(20261123)
    t_start = time.time()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    try:
        s = Soak(d, procs)
        s.start()
        if s.heap_note:
            s.notes.append(s.heap_note)
        # Two descriptors per held connection, within gatekeeper's limit;
        # this process holds one per connection.
        n_hold = CONCURRENT
        room = min((s.nofile - s.base_fds - FD_RESERVE) // 2, own_nofile - 300)
        if n_hold > room:
            s.notes.append(
                f"phase 1 holds {room:,} connections, not {CONCURRENT:,}: gatekeeper's RLIMIT_NOFILE "
                f"is {s.nofile:,} (the hard limit here; raising it needs CAP_SYS_RESOURCE) and each "
                f"proxied connection takes 2 descriptors on top of its {s.base_fds} at start")
            log(s.notes[-1])
            n_hold = room

        cl = s.client
        if n_hold > 0:
            ph = s.run_phase(f"1 hold: {n_hold:,} concurrent, {HOLD_SECONDS:g} s",
                             lambda ph: phase_hold(cl, ph, n_hold))
            at = getattr(ph, "at_peak", None)
            if at:
                ph.detail.append(f"with all open: {int(at['active']):,} sessions active in gatekeeper, "
                                 f"{at['fds']:,} fds (baseline {s.base_fds} + {at['fds'] - s.base_fds:,}), "
                                 f"RSS {mib(at['rss'])} ({(at['rss'] - s.base_rss) / max(1, n_hold):,.0f} "
                                 f"bytes per connection)")
                if int(at["active"]) != n_hold - ph.failures:
                    ph.failed_checks.append(f"{int(at['active'])} sessions active with {n_hold} open")
        if s.alive() and SHORT > 0:
            ph = s.run_phase(f"2 short: {SHORT:,} connections, {SHORT_INFLIGHT} in flight",
                             lambda ph: phase_short(cl, ph, SHORT, SHORT_INFLIGHT))
            ph.detail.append(
                f"peak TIME_WAIT sockets towards the backends (gatekeeper's upstream side, sampled "
                f"every 2 s): {ph.peak_tw:,}; gatekeeper binds no source address upstream, so all "
                f"its upstream connections come from 127.0.0.1 with the kernel's ephemeral ports "
                f"({sysctl('net.ipv4.ip_local_port_range')}; net.ipv4.tcp_tw_reuse="
                f"{sysctl('net.ipv4.tcp_tw_reuse')}, tcp_timestamps="
                f"{sysctl('net.ipv4.tcp_timestamps')})")
        if s.alive() and MIX_SECONDS > 0:
            ph = s.run_phase(f"3 mix: {MIX_SECONDS:g} s", lambda ph: phase_mix(cl, ph, MIX_SECONDS, rng))
            c = ph.counts
            ph.detail.append(
                f"{c.get('bulk_down', 0)} downloads and {c.get('bulk_up', 0)} echoed uploads of "
                f"{BULK / 1048576:g} MiB (sha256 checked), {c.get('http_requests', 0):,} keep-alive "
                f"HTTP requests, {c.get('echo_roundtrips', 0):,} echo round trips (1 B to 256 KiB), "
                f"{c.get('churn', 0):,} short connections, {c.get('idle', 0)} of {MIX_IDLE} idle "
                f"connections held throughout; peak TIME_WAIT towards the backends {ph.peak_tw:,}")

        # The end: a last look after a quiet moment, then SIGTERM.
        if s.alive():
            end = Phase("end (5 s later)")
            end.is_end = True
            end.t0 = time.time()
            time.sleep(5)
            s.settle(end)
            end.t1 = time.time()
            s.phases.append(end)
            if s.alive():
                s.check_memory(end)
        s.sampler.stop_ev.set()
        alive = s.alive()
        status = procs.stop(s.gk) if alive else s.gk.returncode
        if not alive:
            s.failed.append(f"gatekeeper died during the run (status {status}):\n{tail(s.gk_log)}")
        elif status != 0:
            s.failed.append(f"gatekeeper exited with status {status} on SIGTERM:\n{tail(s.gk_log)}")
        errors, warns = s.log_check()
        if errors:
            s.failed.append(f"{len(errors)} error line(s) in gatekeeper's log; first: {errors[0][:300]}")
        if warns:
            s.notes.append(f"{len(warns)} unexpected warning line(s) in gatekeeper's log; first: "
                           f"`{warns[0][:300]}`")
        for name, what in (("echo.log", "the echo backend"), ("whoami.log", "whoami")):
            text = read_file(os.path.join(d, name)).strip()
            if text:
                s.notes.append(f"{what} wrote {len(text.splitlines())} line(s) to stderr; first: "
                               f"`{text.splitlines()[0][:200]}`")

        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
        try:
            rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                 capture_output=True, text=True).stdout.strip() or "?"
        except OSError:
            rev = "?"
        header = (f"{date} · {os.cpu_count()} CPUs · {cpu} · Linux {platform.release()} · "
                  f"{s.gk_version} ({rev}, binary sha256 {s.gk_sha}) · workers: 1, tcp mode, "
                  f"log level warn · gatekeeper RLIMIT_NOFILE {s.nofile:,} · load average before "
                  f"{load} · total {time.time() - t_start:.0f} s")
        out = [render(s, header), ""]
        for ph in s.phases:
            for line in ph.detail:
                out.append(f"- {ph.name}: {line}")
        out.append(f"- memory limits: heap in use ≤ baseline + {mib(HEAP_MARGIN)} and RSS ≤ baseline + "
                   f"{mib(RSS_MARGIN)} after every phase")
        out.append(f"- threads: {s.base_threads} at start, "
                   + ", ".join(f"{ph.threads_after} after {ph.name.split(':')[0]}"
                               for ph in s.phases if ph.threads_after is not None))
        out.append(f"- gatekeeper exit status on SIGTERM: {status}")
        for n in s.notes:
            out.append(f"- note: {n}")
        verdict = []
        for ph in s.phases:
            for b in ph.failed_checks:
                verdict.append(f"FAIL {ph.name}: {b}")
        for b in s.failed:
            verdict.append(f"FAIL: {b}")
        out.append("")
        out.extend(verdict or ["PASS: zero failed connections; after every phase fds back to the baseline "
                               "exactly, heap and RSS within their limits, threads unchanged; "
                               "gatekeeper's counters agree with the client's; no error line; exit 0 "
                               "on SIGTERM"])
        text = "\n".join(out)
        print(text, flush=True)
        if OUT:
            with open(OUT, "w") as f:
                f.write(text + "\n")
        return 1 if verdict else 0
    except SoakError as e:
        log(f"FAILED: {e}")
        return 1
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'SIGINT'}); cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.stop_all()
        if KEEP:
            log(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
