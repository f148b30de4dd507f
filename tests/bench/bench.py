#!/usr/bin/python3
"""gatekeeper benchmark: gatekeeper against nginx stream and HAProxy on the same cores.

One nginx backend (CPU 1) serves a fixed ~300-byte HTTP response and a 1 GiB
file from tmpfs. Each configuration in turn (direct, gatekeeper, nginx stream,
HAProxy tcp) runs pinned to CPU 0 (CPUs 0-1 for the N-worker rows); wrk and
this script (the bulk reader and the idle client) run on CPU 1 next to the
backend. For each one
it measures keep-alive req/s, new connections/s, p50/p99 latency, the proxy's
own CPU time per request (utime+stime of every process of the proxy, from
/proc/PID/stat), bulk throughput, RSS at start and RSS per idle proxied connection. It
prints one markdown table and writes it to build/bench/results.md (raw numbers
in build/bench/results.json).

Then the policy-scale section: a `mode: connect` listener with an allowlist of
10 entries against one of 100,000 (half exact names, half `*.suffix`
wildcards), the name asked for matched by the last entry and resolved through
a dnsmasq on a high port of 127.0.0.1. Short CONNECT sessions from this script
give new connections/s and gatekeeper's CPU µs per new connection, twice per
allowlist; `gatekeeper -t` on both files gives load time and peak RSS (from
wait4). It is printed under the table, added to results.md/results.json and
written to build/bench/policy.md/policy.json. `bench.py policy` (or
BENCH_ONLY=policy) runs only this section, in about three minutes, and leaves
results.md alone.

Within it, the sources rows: the same listener with the 10-entry allowlist and
no `sources`, against listener `sources` holding 10,000 blocks and addresses,
against listener `sources` holding 10,000 items (half blocks and addresses,
half names that the same dnsmasq resolves, the client matched by the last
name), against the allow entry that admits the name in
its mapping form with those 10,000 items as its `sources`, and against
`max_connections_per_source`, and against `action: report` with no entry
allowing the name (every session a would-deny, let through to the backend by
`allow_ranges` and recorded in /observed). Each waits for /readyz (every
source name resolved) before it is measured; a client from 127.0.0.2 must be
refused, and in report mode a name resolving to a private address too.

Last, the DNS section: a `mode: dns` listener (100 allow entries, 20 of them
`*.zoneN` wildcards, `max_queries_per_source: 0`) against dnsmasq serving
the same names from a hosts file and --address with --no-resolv (nothing
forwarded), each alone on CPU 0, driven by dnsperf on CPU 1 over UDP and
then TCP from a shuffled file of allowed names, wildcard names, parents
(NODATA) and refused names (NXDOMAIN): queries/s, the server's CPU µs per
query and the share of each response code; every name is checked once
before each run and the door's NXDOMAIN share must be the file's share of
refused names, or the run fails. Then the door with
`max_queries_per_source: 200` against one source sending 2,000 a second:
about 200 a second answered, the rest counted `rate_limited` in /metrics.
`bench.py dns` (or BENCH_ONLY=dns) runs only this section, in about three
minutes, and writes build/bench/dns.md/dns.json.

All traffic stays on 127.0.0.1. Every process started here runs in its own
session and is killed on exit, Ctrl-C or SIGTERM.

Environment:
  BENCH_SECONDS      length of each wrk run (default 10)
  BENCH_CONNECTIONS  wrk connections (default 64)
  BENCH_IDLE         idle proxied connections for the memory figure (default 10000)
  BENCH_BULK_MIB     size of the bulk transfer in MiB (default 1024)
  BENCH_BULK_RUNS    bulk transfers per configuration, median reported (default 3)
  BENCH_WORKERS      N for the multi-worker rows (default 2; 0 skips them)
  BENCH_NOISE        a load run is repeated when other processes took more than
                     this fraction of a CPU during it (default 0.05), at most
                     twice per run
  BENCH_RETRY_BUDGET seconds the repeats may add in total (default 60)
  BENCH_OUT          output directory (default build/bench)
  BENCH_KEEP         1: keep the temporary directory (configs, logs) for a look
  BENCH_ONLY         policy: only the policy-scale section; dns: only the DNS
                     section (same as the argument)
  BENCH_POLICY_ENTRIES      entries of the large allowlist (default 100000)
  BENCH_POLICY_SECONDS      length of each policy-scale run (default 8)
  BENCH_POLICY_CONNECTIONS  CONNECT sessions at a time (default 32)
  BENCH_SOURCES_ITEMS       items of the large `sources` lists (default 10000;
                            0 skips the sources rows)
  BENCH_DNS_SECONDS  length of each dnsperf run (default 10)
  BENCH_DNS_CLIENTS  dnsperf -c (default 4)
  BENCH_DNS_OUTSTANDING  dnsperf -q (default 200)
  BENCH_DNS_LIMIT_QPS    queries/s one source sends to the limiter row (default 2000)
  DNSMASQ_BIN        dnsmasq for the policy-scale and DNS sections (default /usr/sbin/dnsmasq)
  GATEKEEPER_BIN     binary under test (default build/gatekeeper); it is copied
                     at start so that a rebuild during the run changes nothing
"""

import datetime
import errno
import hashlib
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
IDLE = int(os.environ.get("BENCH_IDLE", "10000"))
BULK_MIB = int(os.environ.get("BENCH_BULK_MIB", "1024"))
BULK_RUNS = int(os.environ.get("BENCH_BULK_RUNS", "3"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
# A load run during which other processes took more than NOISE of a CPU is
# run again (up to RETRIES times), within RETRY_BUDGET seconds for the whole
# benchmark; the least disturbed run is kept.
NOISE = float(os.environ.get("BENCH_NOISE", "0.05"))
RETRIES = 2  # per load run
RETRY_BUDGET = float(os.environ.get("BENCH_RETRY_BUDGET", "60"))
OUT = os.path.join(ROOT, os.environ.get("BENCH_OUT", "build/bench"))
GK = os.path.abspath(os.environ.get("GATEKEEPER_BIN", os.path.join(ROOT, "build/gatekeeper")))
# The policy-scale section: a mode connect listener with POLICY_SMALL and
# then POLICY_LARGE allow entries, each measured POLICY_RUNS times.
POLICY_SMALL = 10
POLICY_LARGE = int(os.environ.get("BENCH_POLICY_ENTRIES", "100000"))
POLICY_SECONDS = int(os.environ.get("BENCH_POLICY_SECONDS", "8"))
POLICY_CONNS = int(os.environ.get("BENCH_POLICY_CONNECTIONS", "32"))
POLICY_RUNS = 2
# The sources rows of the policy-scale section: SOURCES_N items per list.
SOURCES_N = int(os.environ.get("BENCH_SOURCES_ITEMS", "10000"))
DNSMASQ = os.environ.get("DNSMASQ_BIN", "/usr/sbin/dnsmasq")
# The DNS section: the door against dnsmasq, under dnsperf.
DNS_SECONDS = int(os.environ.get("BENCH_DNS_SECONDS", "10"))
DNS_CLIENTS = int(os.environ.get("BENCH_DNS_CLIENTS", "4"))  # dnsperf -c
DNS_OUTSTANDING = int(os.environ.get("BENCH_DNS_OUTSTANDING", "200"))  # dnsperf -q
DNS_LIMIT_QPS = int(os.environ.get("BENCH_DNS_LIMIT_QPS", "2000"))  # offered to the limiter row
DNS_RUNS = 2

NOFILE = 65536  # RLIMIT_NOFILE given to every process; set in main()
IDLE_NOTE = ""
NPROC = "?"
GK_SHA = ["?"]
PROXY_CPU = "0"  # the proxy under test
LOAD_CPU = "1"  # wrk, the backend and this script
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

# The body is sized so that the whole response (nginx's headers + body) is
# about 300 bytes; the exact size is measured and printed in the header.
BODY = ("gatekeeper benchmark response " * 5)[:140]
BULK_PATH = "/bulk"


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


class Procs:
    """Every process the benchmark starts. Each runs in its own session, so a
    whole tree (nginx master and workers) dies with one killpg."""

    def __init__(self):
        self.live = []

    def start(self, argv, logpath, cpus=None, nofile=None):
        cmd = list(argv)
        if nofile:
            cmd = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] + cmd
        if cpus is not None:
            cmd = ["taskset", "-c", cpus] + cmd
        with open(logpath, "ab") as out:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 start_new_session=True)
        p.logpath = logpath
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=5.0):
        if p not in self.live:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        # Workers of a process-per-worker server may outlive the master by a
        # moment; the group is gone once killpg fails.
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.live.remove(p)

    def stop_all(self):
        for p in list(reversed(self.live)):
            try:
                self.stop(p, timeout=3.0)
            except Exception as e:  # keep cleaning up the others
                log(f"cleanup of pid {p.pid}: {e}")


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"exited with {proc.returncode} at start:\n{tail(proc.logpath)}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"port {port} not ready after {timeout}s:\n{tail(proc.logpath) if proc else ''}")


def http_get(port, path="/", timeout=5):
    """One HTTP/1.1 request with Connection: close; returns the raw response."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


# ------------------------------------------------------------ /proc figures


def proc_stats():
    """{pid: fields after the command name} for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        out[int(d)] = st[st.rindex(")") + 2:].split()
    return out


def process_tree(pid, stats=None):
    """pid and all its descendants (nginx master and workers)."""
    children = {}
    for p, fields in (stats or proc_stats()).items():
        children.setdefault(int(fields[1]), []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    """utime+stime of pid and every descendant, in seconds (all threads, and
    reaped children through cutime/cstime)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17
        total += sum(int(x) for x in fields[11:15])
    return total / CLK_TCK


def thread_count(pid):
    """Threads over pid's process tree."""
    n = 0
    for p in process_tree(pid):
        try:
            n += len(os.listdir(f"/proc/{p}/task"))
        except OSError:
            continue
    return n


def rss_bytes(pid):
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


def cpu_stat(cpu):
    """(busy, steal) jiffies of one CPU from /proc/stat. Busy counts irq and
    softirq too: /proc/stat samples ticks, and a tick in softirq context is
    put there even when the task's own (precise) utime+stime includes it."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
                return (user + nice + system + irq + softirq, steal)
    return (0, 0)


def established_to(port):
    """Established TCP sockets whose local port is `port` (the backend's side of
    the proxy's upstream connections)."""
    n = 0
    want = f":{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split(None, 4)
            if parts[1].endswith(want) and parts[3] == "01":
                n += 1
    return n


# ----------------------------------------------------------------- wrk etc.

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_duration_ms(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
    if not m:
        raise BenchError(f"cannot parse wrk duration {s!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(text):
    r = {"requests": 0, "duration": 0.0, "rps": 0.0, "errors": {}, "non2xx": 0,
         "p50_ms": None, "p99_ms": None}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if m:
        r["requests"] = int(m.group(1))
        r["duration"] = parse_duration_ms(m.group(2) + m.group(3)) / 1000.0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r["errors"] = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"), m.groups())}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        r["non2xx"] = int(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        if m:
            r[key] = parse_duration_ms(m.group(1))
    return r


def run_wrk(port, seconds, close=False, latency=False):
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", f"-c{CONNS}", "-t1", f"-d{seconds}s"]
    if latency:
        cmd.append("--latency")
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://{HOST}:{port}/")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise BenchError(f"wrk failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    r = parse_wrk(p.stdout)
    r["raw"] = p.stdout
    return r


def others_ticks():
    """{pid: utime+stime+cutime+cstime} of every user-space process that is
    not this benchmark or one of its descendants (children that exit roll
    into their parent's cutime/cstime). Kernel threads are left out: ksoftirqd
    and kworkers mostly carry the benchmark's own traffic."""
    stats = proc_stats()
    ours = set(process_tree(os.getpid(), stats))
    out = {}
    for p, fields in stats.items():
        if p in ours or p == 2 or fields[1] == "2":
            continue
        out[p] = sum(int(x) for x in fields[11:15])
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def others_delta(before, after):
    """CPU seconds other processes used between two others_ticks(), and a
    description of the biggest user."""
    t, top, top_pid = 0, 0, None
    for p, v in after.items():
        d = v - before.get(p, 0) if v >= before.get(p, 0) else v
        t += d
        if d > top:
            top, top_pid = d, p
    who = f"mostly {comm(top_pid)} (pid {top_pid}, {top / CLK_TCK:.1f}s)" if top_pid else ""
    return t / CLK_TCK, who


def self_and_children_cpu():
    """CPU seconds of this process plus its reaped children (wrk)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def measured_wrk(port, pid, backend_pid, close, latency):
    """One wrk run, measured as measured() says."""
    return measured(lambda: run_wrk(port, SECONDS, close=close, latency=latency), pid, backend_pid)


def measured(run, pid, backend_pid):
    """run() (a load run returning a dict with "requests"), with the proxy's
    CPU time (pid's tree) around it, and an estimate of the CPU time that
    other processes took on CPUs 0 and 1 meanwhile: the smaller of (busy time
    of the two CPUs from /proc/stat minus the proxy, the backend, the load
    generator and this process) and (the CPU time of every other user-space
    process)."""
    cpus = (PROXY_CPU, LOAD_CPU)
    x0 = others_ticks()
    c0 = cpu_seconds(pid) if pid else 0.0
    b0 = cpu_seconds(backend_pid) if backend_pid else 0.0
    o0 = self_and_children_cpu()
    s0 = [cpu_stat(c) for c in cpus]
    t0 = time.time()
    r = run()
    elapsed = time.time() - t0
    s1 = [cpu_stat(c) for c in cpus]
    o1 = self_and_children_cpu()
    b1 = cpu_seconds(backend_pid) if backend_pid else 0.0
    c1 = cpu_seconds(pid) if pid else 0.0
    others, who = others_delta(x0, others_ticks())
    busy = sum(x[0] - y[0] for x, y in zip(s1, s0)) / CLK_TCK
    ours = (c1 - c0) + (b1 - b0) + (o1 - o0)
    r["proxy_cpu_s"] = c1 - c0
    r["cpu_us_per_req"] = (c1 - c0) * 1e6 / r["requests"] if pid and r["requests"] else None
    r["elapsed"] = elapsed
    r["busy_cpu_s"], r["accounted_cpu_s"] = busy, ours
    r["busy_per_cpu_s"] = [(x[0] - y[0]) / CLK_TCK for x, y in zip(s1, s0)]
    r["others_cpu_s"], r["others_top"] = others, who
    # Both bounds overestimate: busy - ours also holds kernel work nobody is
    # charged for; `others` also counts processes on CPUs other than 0 and 1.
    r["foreign_cpu_s"] = max(0.0, min(busy - ours, others))
    r["steal_s"] = sum(x[1] - y[1] for x, y in zip(s1, s0)) / CLK_TCK
    return r


def bulk_once(port):
    """GET the bulk file through `port` and count its body bytes, reading 1 MiB
    at a time (a reader this cheap leaves the proxy as the bottleneck; this
    process runs on CPU 1). Returns MB/s (10^6 bytes) from the first byte of the
    request to the last byte of the body."""
    want = BULK_MIB * 1024 * 1024
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with socket.create_connection((HOST, port), timeout=30) as s:
        t0 = time.perf_counter()
        s.sendall(f"GET {BULK_PATH} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            k = s.recv_into(buf)
            if not k:
                raise BenchError(f"bulk: connection closed in the response head: {head[:200]!r}")
            head += bytes(view[:k])
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or f"Content-Length: {want}".encode() not in head:
            raise BenchError(f"bulk: unexpected response head {head[:200]!r}")
        got = len(rest)
        while True:
            k = s.recv_into(buf)
            if not k:
                break
            got += k
        t1 = time.perf_counter()
    if got != want:
        raise BenchError(f"bulk transfer got {got} body bytes, want {want}")
    return got / (t1 - t0) / 1e6


def run_bulk(port):
    """BULK_RUNS transfers of the bulk file through `port`; median MB/s."""
    speeds = [bulk_once(port) for _ in range(BULK_RUNS)]
    return {"mb_s": statistics.median(speeds), "runs_mb_s": speeds}


def raise_nofile(n):
    """Raise this process's RLIMIT_NOFILE (inherited by everything it starts)
    to n, or as far as the hard limit allows without CAP_SYS_RESOURCE.
    Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
        return n
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        return n
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


def idle_connections(port, backend_port, count):
    """Open `count` connections to the proxy and leave them idle until the
    proxy has opened as many to the backend. Returns (sockets, upstream count)."""
    socks = []
    base = established_to(backend_port)
    try:
        for i in range(count):
            s = socket.socket()
            s.settimeout(5)
            s.connect((HOST, port))
            socks.append(s)
        deadline = time.time() + 30
        n = 0
        while time.time() < deadline:
            n = established_to(backend_port) - base
            if n >= count:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # let the proxy finish whatever it does per session
        return socks, n
    except BaseException:
        for s in socks:
            s.close()
        raise


# ------------------------------------------------------------------ configs


def nginx_backend_conf(d, port, bulk_file):
    return f"""daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {NOFILE};
pid {d}/backend.pid;
error_log {d}/backend.err warn;
events {{ worker_connections {min(30000, NOFILE)}; }}
http {{
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_header_timeout 600s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {HOST}:{port} backlog=4096;
        location = / {{
            default_type text/plain;
            return 200 "{BODY}";
        }}
        location = {BULK_PATH} {{
            default_type application/octet-stream;
            alias {bulk_file};
        }}
    }}
}}
"""


def nginx_stream_conf(d, tag, port, backend_port, workers, idle):
    reuse = " reuseport" if workers > 1 else ""
    return f"""daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {NOFILE};
load_module {NGINX_STREAM_MODULE};
pid {d}/{tag}.pid;
error_log {d}/{tag}.err warn;
events {{ worker_connections {2 * idle + 200}; }}
stream {{
    server {{
        listen {HOST}:{port}{reuse};
        proxy_pass {HOST}:{backend_port};
        proxy_timeout 10m;
    }}
}}
"""


def haproxy_conf(port, backend_port, threads, idle):
    return f"""global
    nbthread {threads}
    maxconn {idle + 100}

defaults
    mode tcp
    maxconn {idle + 100}
    timeout connect 5s
    timeout client 10m
    timeout server 10m

frontend fe
    bind {HOST}:{port}
    default_backend be

backend be
    server s1 {HOST}:{backend_port}
"""


def gk_conf(port, backend_port, level, workers, mode="tcp"):
    w = f"workers: {workers}\n" if workers else ""
    if os.geteuid() == 0:
        w += "allow_root: true\n"  # measured as it runs, like nginx and HAProxy here
    return f"""log:
  level: {level}
{w}defaults:
  max_connections: 0
  idle_timeout: 10m
listeners:
  - name: bench
    listen: {HOST}:{port}
    mode: {mode}
    upstream: {HOST}:{backend_port}
"""


def gk_accepts_workers(d):
    path = os.path.join(d, "gk-workers-check.yaml")
    with open(path, "w") as f:
        f.write(gk_conf(free_port(), 9, "warn", 2))
    p = subprocess.run([GK, "-t", "-c", path], capture_output=True, text=True)
    return p.returncode == 0, (p.stderr or p.stdout).strip()


# ------------------------------------------------------------- policy scale
#
# A mode connect listener whose allowlist holds POLICY_SMALL or POLICY_LARGE
# entries: half exact names, half "*.suffix" wildcards, the last wildcard
# being the one that allows the name every client asks for. dnsmasq on a high
# port of 127.0.0.1 resolves that name to the backend.

POLICY_DOMAIN = "bench.test"
POLICY_NAME = f"api.last.{POLICY_DOMAIN}"  # matched by the last entry, "*.last.bench.test"
POLICY_DENIED = f"api.nowhere.{POLICY_DOMAIN}"  # matched by no entry


def policy_entries(n, port):
    """n allow entries, all for `port`: n//2 exact names first, then the
    wildcards; the very last one is "*.last.bench.test"."""
    exact = n // 2
    out = [f"svc{i}.exact.{POLICY_DOMAIN}:{port}" for i in range(exact)]
    out += [f"*.zone{i}.{POLICY_DOMAIN}:{port}" for i in range(n - exact - 1)]
    out.append(f"*.last.{POLICY_DOMAIN}:{port}")
    return out


def gk_policy_conf(port, dns_port, backend_port, n):
    root = "allow_root: true\n" if os.geteuid() == 0 else ""
    head = f"""log:
  level: warn
{root}resolver:
  nameservers: ["{HOST}:{dns_port}"]
  refresh: 10m
  min_ttl: 10m
defaults:
  max_connections: 0
  idle_timeout: 10m
listeners:
  - name: policy
    listen: {HOST}:{port}
    mode: connect
    allow_ranges: ["127.0.0.0/8"]
    allow:
"""
    return head + "".join(f'      - "{e}"\n' for e in policy_entries(n, backend_port))


# ------------------------------------------------------------ sources rows
#
# The 10-entry connect listener again, six ways: no sources; listener
# `sources` with SOURCES_N blocks and addresses only; listener `sources` with
# SOURCES_N items, half of them names; the allow entry that admits the name
# asked for in its mapping form, {match, sources} with those items (after an
# exact entry for the same name whose sources exclude the client); and
# max_connections_per_source; and action: report with the name allowed by
# no entry (a would-deny on every session). The blocks and addresses are IPv4 and IPv6,
# none holding 127.0.0.0/8; the names, under src.bench.test, resolve through
# dnsmasq to 10.200.x.y (every fourth one also to an fd00:200:: address);
# the last one, client.src.bench.test, resolves to 127.0.0.1, the bench
# client. So in the named lists the client is admitted only through a name,
# looked up among SOURCES_N items; in the blocks-only list through the last
# block. A client from 127.0.0.2 is in no list.

SOURCES_DOMAIN = f"src.{POLICY_DOMAIN}"
SOURCES_CLIENT = f"client.{SOURCES_DOMAIN}"  # the last item: resolves to HOST
SOURCES_OTHER = "127.0.0.2"  # a client address no item admits
SOURCES_VARIANTS = ("none", "blocks", "listener", "rule", "limit", "report")
SOURCES_LIMIT = 256  # max_connections_per_source of the "limit" variant
# The "report" variant: action: report, and the allowlist's last entry
# replaced by one that does not match, so every session is a would-deny
# (not_allowed) let through to the backend (127.0.0.1, which allow_ranges
# lets past the guard) and recorded in the observed table.
REPORT_MISS = f"*.other.{POLICY_DOMAIN}"
# A name dnsmasq resolves to 10.200.0.1 (private, outside allow_ranges): the
# guard must refuse it in report mode too, and /observed must not hold it.
REPORT_GUARDED = f"host1.{SOURCES_DOMAIN}"


def source_block(i):
    """The i-th block or address of a sources list: IPv4 and IPv6, blocks and
    single addresses in turn, none of them holding 127.0.0.0/8."""
    k = i % 4
    if k == 0:
        return f"10.{(i >> 8) & 255}.{i & 255}.0/24"
    if k == 1:
        return f"172.{16 + (i >> 16) % 16}.{(i >> 8) & 255}.{i & 255}"
    if k == 2:
        return f"fd00:{i:x}::/64"
    return f"2001:db8:{i:x}::1"


def source_blocks(n):
    """n items, all blocks and addresses, the last one the client's (HOST)."""
    return [source_block(i) for i in range(n - 1)] + [HOST]


def source_items(n):
    """(n source items, the hosts-file lines for their names): n//2 blocks and
    addresses first, then the names, the last one SOURCES_CLIENT."""
    nb = n // 2
    items = [source_block(i) for i in range(nb)]
    hosts = []
    for i in range(n - nb - 1):
        name = f"host{i}.{SOURCES_DOMAIN}"
        items.append(name)
        hosts.append(f"10.200.{(i >> 8) & 255}.{i & 255} {name}")
        if i % 4 == 0:
            hosts.append(f"fd00:200::{i:x} {name}")
    items.append(SOURCES_CLIENT)
    hosts.append(f"{HOST} {SOURCES_CLIENT}")
    return items, hosts


def gk_sources_conf(port, dns_port, admin_port, backend_port, variant, items):
    """The 10-entry connect listener of the policy rows, with an admin
    endpoint (for /readyz), in one of SOURCES_VARIANTS."""
    root = "allow_root: true\n" if os.geteuid() == 0 else ""
    entries = policy_entries(POLICY_SMALL, backend_port)
    text = f"""log:
  level: warn
{root}admin:
  listen: {HOST}:{admin_port}
resolver:
  nameservers: ["{HOST}:{dns_port}"]
  refresh: 10m
  min_ttl: 10m
defaults:
  max_connections: 0
  idle_timeout: 10m
listeners:
  - name: sources
    listen: {HOST}:{port}
    mode: connect
    allow_ranges: ["127.0.0.0/8"]
"""
    if variant == "listener":
        text += "    sources:\n" + "".join(f'      - "{x}"\n' for x in items)
    if variant == "blocks":
        text += "    sources:\n" + "".join(f'      - "{x}"\n' for x in source_blocks(len(items)))
    if variant == "limit":
        text += f"    max_connections_per_source: {SOURCES_LIMIT}\n"
    if variant == "report":
        text += "    action: report\n"
    text += "    allow:\n"
    if variant == "report":
        text += "".join(f'      - "{e}"\n' for e in entries[:-1])
        text += f'      - "{REPORT_MISS}:{backend_port}"\n'
    elif variant == "rule":
        text += "".join(f'      - "{e}"\n' for e in entries[:-1])
        text += (f'      - match: "{POLICY_NAME}:{backend_port}"\n'
                 f'        sources: ["192.0.2.1"]\n'
                 f'      - match: "{entries[-1]}"\n'
                 f'        sources:\n' + "".join(f'          - "{x}"\n' for x in items))
    else:
        text += "".join(f'      - "{e}"\n' for e in entries)
    return text


def readyz(admin_port, timeout=2):
    """(status code, body) of GET /readyz, or (None, error)."""
    try:
        resp = http_get(admin_port, "/readyz", timeout=timeout)
    except OSError as e:
        return None, str(e)
    head, _, body = resp.partition(b"\r\n\r\n")
    try:
        code = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, resp[:200].decode(errors="replace")
    return code, body.decode(errors="replace")


def connect_refusal(port, target, source, timeout=5):
    """`CONNECT target` from the local address `source`: (status line, the
    X-Gatekeeper-Reason value or "", what happened when no answer came)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout,
                                      source_address=(source, 0)) as s:
            s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                b = s.recv(4096)
                if not b:
                    break
                head += b
    except OSError as e:
        return "", "", errno.errorcode.get(e.errno, str(e)) if e.errno else str(e)
    lines = head.partition(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
    reason = next((x.split(":", 1)[1].strip() for x in lines[1:]
                   if x.lower().startswith("x-gatekeeper-reason:")), "")
    return lines[0], reason, "" if lines[0] else "closed without an answer"


def free_dns_port():
    """A port free for both UDP and TCP on HOST (dnsmasq binds both)."""
    for _ in range(100):
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind((HOST, 0))
            port = t.getsockname()[1]
            try:
                u.bind((HOST, port))
            except OSError:
                continue
            return port
    raise BenchError("no port free for both UDP and TCP")


def dns_a_answer(port, name, timeout=0.5):
    """One A query for name to HOST:port; the address of its single answer,
    or None (no answer, several, or not an A record of 4 bytes at the end)."""
    tid = (os.getpid() ^ int(time.time() * 1000)) & 0xFFFF
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    query = tid.to_bytes(2, "big") + bytes.fromhex("0100 0001 0000 0000 0000") + qname + bytes.fromhex("0001 0001")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query, (HOST, port))
        msg = s.recv(4096)
    if len(msg) < 12 + len(qname) + 4 + 16 or msg[:2] != query[:2]:
        return None
    ancount = int.from_bytes(msg[6:8], "big")
    rdlength = int.from_bytes(msg[-6:-4], "big")
    if ancount != 1 or rdlength != 4:
        return None
    return socket.inet_ntoa(msg[-4:])


def connect_exchange(port, target, timeout=5):
    """One CONNECT target through the proxy on `port`, blocking. Returns
    (status line, bytes received through the tunnel for GET / with
    Connection: close), the second empty when the proxy refused."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            b = s.recv(4096)
            if not b:
                break
            head += b
        head, _, rest = head.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if not status.startswith("HTTP/1.1 200"):
            return status, b""
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        chunks = [rest]
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return status, b"".join(chunks)


def connect_load(port, target, seconds, conns):
    """Short CONNECT sessions through the proxy on `port` for `seconds`,
    `conns` at a time, from this process (one thread, non-blocking sockets):
    connect, `CONNECT target`, wait for the 200, GET / through the tunnel,
    read the backend's answer to its end (the backend closes), close, and
    open the next one. Returns a dict like parse_wrk's: "requests" counts the
    sessions that completed with the right body."""
    connect_req = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
    get_req = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    body = BODY.encode()
    sel = selectors.DefaultSelector()
    r = {"requests": 0, "errors": {}, "non2xx": 0, "rps": 0.0}
    t0 = time.perf_counter()
    stop_at = t0 + seconds

    def fail(s, why):
        r["errors"][why] = r["errors"].get(why, 0) + 1
        sel.unregister(s)
        s.close()

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex((HOST, port))
        if err not in (0, errno.EINPROGRESS):
            r["errors"]["connect"] = r["errors"].get("connect", 0) + 1
            s.close()
            return False
        sel.register(s, selectors.EVENT_WRITE, [0, b""])
        return True

    for _ in range(conns):
        open_one()
    hard_stop = stop_at + 10.0
    while sel.get_map():
        now = time.perf_counter()
        if now > hard_stop:
            for key in list(sel.get_map().values()):
                fail(key.fileobj, "timeout")
            break
        events = sel.select(timeout=1.0)
        for key, _ in events:
            s, st = key.fileobj, key.data
            try:
                if st[0] == 0:  # connected (or not)
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        fail(s, "connect")
                        continue
                    if s.send(connect_req) != len(connect_req):
                        fail(s, "short write")
                        continue
                    st[0] = 1
                    sel.modify(s, selectors.EVENT_READ, st)
                    continue
                b = s.recv(65536)
                if st[0] == 1:  # the proxy's answer to CONNECT
                    if not b:
                        fail(s, "closed before 200")
                        continue
                    st[1] += b
                    if b"\r\n\r\n" not in st[1]:
                        continue
                    head, _, rest = st[1].partition(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 200"):
                        r["non2xx"] += 1
                        fail(s, "refused")
                        continue
                    if s.send(get_req) != len(get_req):
                        fail(s, "short write")
                        continue
                    st[0], st[1] = 2, rest
                    continue
                if b:  # the backend's answer, through the tunnel
                    st[1] += b
                    continue
                if not (st[1].startswith(b"HTTP/1.1 200") and st[1].endswith(body)):
                    fail(s, "wrong answer")
                else:
                    r["requests"] += 1
                    sel.unregister(s)
                    s.close()
            except OSError as e:
                fail(s, errno.errorcode.get(e.errno, "error").lower() if e.errno else "error")
                continue
        # Keep `conns` sessions open until the time is up; the ones open
        # then finish and count. A proxy that refuses everything ends the
        # run early instead of spinning.
        if time.perf_counter() < stop_at and sum(r["errors"].values()) <= 1000 + r["requests"]:
            for _ in range(conns - len(sel.get_map())):
                open_one()
    sel.close()
    r["duration"] = time.perf_counter() - t0
    r["rps"] = r["requests"] / r["duration"] if r["duration"] > 0 else 0.0
    return r


def config_check(path):
    """`gatekeeper -t -c path` on the proxy's CPU: (wall seconds, its user+sys
    CPU seconds, its peak RSS in bytes, exit code, output), from os.wait4."""
    logpath = path + ".check.log"
    with open(logpath, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen([GK, "-t", "-c", path], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=out, preexec_fn=lambda: os.sched_setaffinity(0, {int(PROXY_CPU)}))
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    # ru_maxrss is in KiB on Linux.
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024, p.returncode, tail(logpath, 5)


def start_dns(d, procs, extra=()):
    """dnsmasq on a high port of HOST, answering POLICY_NAME with HOST from a
    hosts file (and the `extra` hosts-file lines): any other name under
    POLICY_DOMAIN gets NXDOMAIN, any name outside it REFUSED (nothing is
    forwarded). Returns (Popen, port)."""
    port = free_dns_port()
    hosts = os.path.join(d, "policy-hosts")
    with open(hosts, "w") as f:
        f.write(f"{HOST} {POLICY_NAME}\n")
        f.write("".join(x + "\n" for x in extra))
    os.chmod(hosts, 0o644)  # dnsmasq reads it as nobody
    p = procs.start([DNSMASQ, "--keep-in-foreground", f"--port={port}", f"--listen-address={HOST}",
                     "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
                     f"--local=/{POLICY_DOMAIN}/", "--local-ttl=3600", "--log-facility=-",
                     f"--pid-file={d}/dnsmasq.pid"], os.path.join(d, "dnsmasq.log"), cpus=LOAD_CPU)
    deadline = time.time() + 10
    while time.time() < deadline:
        if p.poll() is not None:
            raise BenchError(f"dnsmasq exited with {p.returncode}:\n{tail(p.logpath)}")
        try:
            if dns_a_answer(port, POLICY_NAME) == HOST:
                return p, port
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(f"dnsmasq does not answer {POLICY_NAME} on port {port}:\n{tail(p.logpath)}")


# --------------------------------------------------------------- DNS door
#
# A `mode: dns` listener with DNS_EXACT exact names and DNS_WILD `*.zoneN`
# wildcards, against dnsmasq serving the same names from a hosts file (the
# exact ones) and --address (the wildcards), --no-resolv and --local for the
# domains the refused names are in: both answer everything themselves.
# dnsperf on LOAD_CPU sends the DNS_FILE queries, in a loop, for
# DNS_SECONDS; the server runs alone on PROXY_CPU.

DNS_DOMAIN = f"dns.{POLICY_DOMAIN}"
DNS_REFUSED_TLD = "example"  # names under it are refused (dnsmasq: --local=/example/)
DNS_EXACT, DNS_WILD = 80, 20  # the allowlist: 100 entries
# The query file: how many lines of each kind (the NXDOMAIN share is
# DNS_MIX["refused"] / the total).
DNS_MIX = {"exact": 400, "wildcard": 200, "parent": 150, "refused": 250}
DNS_KINDS = {"exact": "allowed names", "wildcard": "wildcard names", "parent": "parents (NODATA)",
             "refused": "refused names (NXDOMAIN)"}
DNS_SHARE_TOL = 0.005  # NXDOMAIN share against the file's: at most 0.5 points apart
DNS_LIMIT = 200  # max_queries_per_source of the limiter row
DNS_TIMEOUT = 2  # dnsperf -t: a query unanswered this long is lost (and the run waits this long at most)


def dns_allow():
    return ([f"svc{i}.exact.{DNS_DOMAIN}" for i in range(DNS_EXACT)]
            + [f"*.zone{i}.{DNS_DOMAIN}" for i in range(DNS_WILD)])


def dns_queries():
    """[(name, kind)] of the query file, shuffled (a fixed seed) so that a
    run cut off mid-file still holds each kind at its share."""
    import random
    out = []
    for k in range(DNS_MIX["exact"]):
        out.append((f"svc{k % DNS_EXACT}.exact.{DNS_DOMAIN}", "exact"))
    for k in range(DNS_MIX["wildcard"]):
        out.append((f"h{k}.zone{k % DNS_WILD}.{DNS_DOMAIN}", "wildcard"))
    parents = [f"exact.{DNS_DOMAIN}", DNS_DOMAIN] + [f"zone{i}.{DNS_DOMAIN}" for i in range(DNS_WILD)]
    for k in range(DNS_MIX["parent"]):
        out.append((parents[k % len(parents)], "parent"))
    for k in range(DNS_MIX["refused"]):
        # near misses (an exact entry's sibling), names in the domain no
        # entry names, and names outside it
        name = (f"svc{DNS_EXACT + k}.exact.{DNS_DOMAIN}", f"h{k}.other.{DNS_DOMAIN}",
                f"h{k}.nowhere.{DNS_REFUSED_TLD}")[k % 3]
        out.append((name, "refused"))
    random.Random(1).shuffle(out)
    return out


def gk_dns_conf(port, admin_port, limit, workers):
    root = "allow_root: true\n" if os.geteuid() == 0 else ""
    w = f"workers: {workers}\n" if workers else ""
    return (f"log:\n  level: warn\n{root}{w}admin:\n  listen: {HOST}:{admin_port}\n"
            f"defaults:\n  max_connections: 0\n"
            f"listeners:\n  - name: dns\n    listen: {HOST}:{port}\n    mode: dns\n"
            f"    max_queries_per_source: {limit}\n    allow:\n"
            + "".join(f'      - "{e}"\n' for e in dns_allow()))


def dnsmasq_peer_argv(d, port):
    """dnsmasq answering the same names: the exact ones from a hosts file,
    each wildcard with --address (which answers the zone itself too), the
    rest of bench.test and of .example NXDOMAIN (--local), nothing forwarded
    (--no-resolv, no server)."""
    hosts = os.path.join(d, "dns-peer-hosts")
    with open(hosts, "w") as f:
        f.write("".join(f"{HOST} {n}\n" for n in dns_allow() if not n.startswith("*.")))
    os.chmod(hosts, 0o644)  # dnsmasq reads it as nobody
    return ([DNSMASQ, "--keep-in-foreground", f"--port={port}", f"--listen-address={HOST}",
             "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
             f"--local=/{POLICY_DOMAIN}/", f"--local=/{DNS_REFUSED_TLD}/", "--local-ttl=30",
             "--log-facility=-", f"--pid-file={d}/dns-peer.pid"]
            + [f"--address=/{n[2:]}/{HOST}" for n in dns_allow() if n.startswith("*.")])


def dns_ask(port, name, qtype=1, tcp=False, timeout=1.0):
    """One query to HOST:port over UDP or TCP: (rcode, [A addresses of the
    answer section], answer count)."""
    tid = int.from_bytes(os.urandom(2), "big")
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".") if x) + b"\0"
    query = tid.to_bytes(2, "big") + bytes.fromhex("0100 0001 0000 0000 0000") + qname \
        + qtype.to_bytes(2, "big") + b"\0\1"
    if tcp:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(len(query).to_bytes(2, "big") + query)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                b = s.recv(65536)
                if not b:
                    raise BenchError(f"{name}: TCP connection closed before the answer")
                buf += b
            msg = buf[2:2 + int.from_bytes(buf[:2], "big")]
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(query, (HOST, port))
            msg = s.recv(65536)
    if len(msg) < 12 or msg[:2] != query[:2]:
        raise BenchError(f"{name}: a reply that is not the answer to the query: {msg[:40]!r}")
    rcode, qd, an = msg[3] & 15, int.from_bytes(msg[4:6], "big"), int.from_bytes(msg[6:8], "big")

    def skip_name(i):
        while True:
            n = msg[i]
            if n >= 0xC0:
                return i + 2
            if n == 0:
                return i + 1
            i += 1 + n
    i, addrs = 12, []
    for _ in range(qd):
        i = skip_name(i) + 4
    for _ in range(an):
        i = skip_name(i)
        rtype, rdlen = int.from_bytes(msg[i:i + 2], "big"), int.from_bytes(msg[i + 8:i + 10], "big")
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(msg[i + 10:i + 14]))
        i += 10 + rdlen
    return rcode, addrs, an


def dns_expect(kind, peer, name):
    """(rcode, A addresses) the door (peer False) or dnsmasq gives a query of
    this kind. dnsmasq's --address answers a wildcard's zone itself."""
    if kind in ("exact", "wildcard"):
        return 0, [HOST]
    if kind == "parent":
        return 0, ([HOST] if peer and name.startswith("zone") else [])
    return 3, []


def parse_dnsperf(text):
    r = {"sent": 0, "requests": 0, "lost": 0, "rcodes": {}, "duration": 0.0, "rps": 0.0,
         "latency_ms": None}
    for key, pat in (("sent", r"Queries sent:\s+(\d+)"), ("requests", r"Queries completed:\s+(\d+)"),
                     ("lost", r"Queries lost:\s+(\d+)")):
        m = re.search(pat, text)
        if m:
            r[key] = int(m.group(1))
    m = re.search(r"Response codes:\s+(.*)", text)
    if m:
        r["rcodes"] = {k: int(v) for k, v in re.findall(r"([A-Z]+) (\d+) \(", m.group(1))}
    m = re.search(r"Run time \(s\):\s+([\d.]+)", text)
    if m:
        r["duration"] = float(m.group(1))
    m = re.search(r"Queries per second:\s+([\d.]+)", text)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"Average Latency \(s\):\s+([\d.]+)", text)
    if m:
        r["latency_ms"] = float(m.group(1)) * 1000
    return r


def run_dnsperf(port, datafile, seconds, tcp=False, clients=None, outstanding=None, qps=None,
                timeout=None, verbose=False):
    """dnsperf for `seconds` on LOAD_CPU; with verbose, r["answers"] holds
    (rcode, name) of every answer (-v)."""
    cmd = ["taskset", "-c", LOAD_CPU, "dnsperf", "-s", HOST, "-p", str(port), "-d", datafile,
           "-l", str(seconds), "-c", str(clients or DNS_CLIENTS), "-T", "1",
           "-q", str(outstanding or DNS_OUTSTANDING)]
    if tcp:
        cmd += ["-m", "tcp"]
    if qps:
        cmd += ["-Q", str(qps)]
    if timeout:
        cmd += ["-t", str(timeout)]
    if verbose:
        cmd.append("-v")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    r = parse_dnsperf(p.stdout)
    if p.returncode != 0 or not r["sent"]:
        raise BenchError(f"dnsperf failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")
    if verbose:
        # "> T name type" is a query lost (timed out)
        r["answers"] = [x for x in re.findall(r"^> (\S+) (\S+) ", p.stdout, re.M) if x[0] != "T"]
    r["raw"] = p.stdout[p.stdout.find("Statistics:"):] if verbose else p.stdout
    return r


def dns_metrics(admin_port):
    """{result: count} of gatekeeper_dns_queries_total from /metrics."""
    resp = http_get(admin_port, "/metrics", timeout=5)
    out = {}
    for m in re.finditer(rb'^gatekeeper_dns_queries_total\{[^}]*result="([a-z_]+)"\} (\d+)$', resp, re.M):
        out[m.group(1).decode()] = out.get(m.group(1).decode(), 0) + int(m.group(2))
    return out


# ------------------------------------------------------------------ the run


class Bench:
    def __init__(self, d, procs):
        self.d = d
        self.procs = procs
        self.rows = []
        self.notes = []
        self.backend_port = None
        self.backend = None
        self.retry_budget = RETRY_BUDGET
        self.policy = None
        self.dns_port = None
        self.dns = None
        self.gk_workers = False

    def write(self, name, text):
        path = os.path.join(self.d, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_backend(self, bulk_mib=BULK_MIB):
        bulk = os.path.join(self.d, "bulk.bin")
        block = os.urandom(1 << 20)
        with open(bulk, "wb") as f:
            for _ in range(bulk_mib):
                f.write(block)
        os.chmod(bulk, 0o644)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.d, sub), exist_ok=True)
        self.backend_port = free_port()
        conf = self.write("backend.conf", nginx_backend_conf(self.d, self.backend_port, bulk))
        self.backend = self.procs.start(["nginx", "-p", self.d, "-e", f"{self.d}/backend.err",
                                         "-c", conf], os.path.join(self.d, "backend.log"),
                                        cpus=LOAD_CPU)
        wait_port(self.backend_port, self.backend)
        resp = http_get(self.backend_port)
        if not resp.endswith(BODY.encode()):
            raise BenchError(f"backend answered {resp[:200]!r}")
        self.response_bytes = len(resp) - len("Connection: close\r\n") + len("Connection: keep-alive\r\n")

    def start_proxy(self, kind, workers, level="warn", tag=None, mode="tcp"):
        """Start one proxy; returns (Popen, port)."""
        port = free_port()
        tag = tag or f"{kind}{workers}"
        cpus = PROXY_CPU if workers == 1 else f"{PROXY_CPU}-{LOAD_CPU}"
        logpath = os.path.join(self.d, f"{tag}.log")
        if kind == "gatekeeper":
            w = workers if self.gk_workers else 0
            conf = self.write(f"{tag}.yaml", gk_conf(port, self.backend_port, level, w, mode))
            p = self.procs.start([GK, "-c", conf], logpath, cpus=cpus, nofile=NOFILE)
        elif kind == "nginx":
            conf = self.write(f"{tag}.conf", nginx_stream_conf(self.d, tag, port, self.backend_port,
                                                               workers, IDLE))
            p = self.procs.start(["nginx", "-p", self.d, "-e", f"{self.d}/{tag}.err", "-c", conf],
                                 logpath, cpus=cpus)
        elif kind == "haproxy":
            conf = self.write(f"{tag}.cfg", haproxy_conf(port, self.backend_port, workers, IDLE))
            p = self.procs.start(["haproxy", "-db", "-f", conf], logpath, cpus=cpus)
        else:
            raise ValueError(kind)
        wait_port(port, p)
        # nginx forks its workers after the master listens: wait for them so
        # the CPU and RSS figures cover the whole tree.
        if kind == "nginx":
            deadline = time.time() + 5
            while len(process_tree(p.pid)) < workers + 1 and time.time() < deadline:
                time.sleep(0.05)
        time.sleep(0.3)
        resp = http_get(port)
        if not resp.endswith(BODY.encode()):
            raise BenchError(f"{tag}: the proxied response is wrong: {resp[:200]!r}")
        return p, port

    def memory(self, kind, workers, level, tag):
        """RSS at start and per idle connection, on a freshly started proxy."""
        p, port = self.start_proxy(kind, workers, level, tag + "-mem")
        try:
            time.sleep(0.5)
            rss0 = rss_bytes(p.pid)
            procs_threads = (len(process_tree(p.pid)), thread_count(p.pid))
            socks, n = idle_connections(port, self.backend_port, IDLE)
            try:
                rss1 = rss_bytes(p.pid)
                if p.poll() is not None:
                    raise BenchError(f"{tag} exited with idle connections open:\n{tail(p.logpath)}")
            finally:
                for s in socks:
                    s.close()
            if n < IDLE:
                self.notes.append(f"{tag}: only {n} of {IDLE} idle connections reached the backend; "
                                  f"bytes/idle conn divides by {max(n, 1)}")
            per = (rss1 - rss0) / max(n, 1)
            return {"rss_start": rss0, "rss_idle": rss1, "idle_upstream": n, "bytes_per_idle": per,
                    "processes": procs_threads[0], "threads": procs_threads[1]}
        finally:
            self.procs.stop(p)

    def run_config(self, label, kind, workers=1, level="warn", full=True, mode="tcp"):
        tag = f"{kind}{workers}-{level}-{mode}" if kind else "direct"
        log(f"== {label}")
        t0 = time.time()
        row = {"label": label, "kind": kind, "workers": workers, "level": level}
        try:
            if kind and full:
                row.update(self.memory(kind, workers, level, tag))
            p, port = (self.start_proxy(kind, workers, level, tag, mode) if kind
                       else (None, self.backend_port))
            try:
                pid = p.pid if p else None
                run_wrk(port, 1)  # warm-up, not measured
                row["ka"] = self.quiet_wrk(port, pid, close=False, latency=True)
                row["nc"] = self.quiet_wrk(port, pid, close=True, latency=False)
                if full:
                    c0 = cpu_seconds(pid) if pid else 0.0
                    row["bulk"] = run_bulk(port)
                    if pid:
                        row["bulk"]["proxy_cpu_s_per_gib"] = (
                            (cpu_seconds(pid) - c0) / (BULK_RUNS * BULK_MIB / 1024))
                if kind == "gatekeeper" and level == "info":
                    with open(p.logpath, "rb") as f:
                        data = f.read()
                    row["log_lines"], row["log_bytes"] = data.count(b"\n"), len(data)
                if p is not None and p.poll() is not None:
                    raise BenchError(f"{tag} exited during the run:\n{tail(p.logpath)}")
            finally:
                if p is not None:
                    self.procs.stop(p)
            if kind and level != "info":
                self.check_logs(label, tag)
        except BenchError as e:
            row["error"] = str(e).splitlines()[0]
            self.notes.append(f"{label}: FAILED: {e}")
            log(f"{label}: FAILED: {e}")
        self.rows.append(row)
        self.check(row)
        log(f"   {time.time() - t0:.0f}s")
        return row

    def policy_scale(self):
        """The policy-scale section: `gatekeeper -t` on both allowlists, then
        short CONNECT sessions through each, POLICY_RUNS times, alternating
        the two (a fresh gatekeeper for every run)."""
        sizes = (POLICY_SMALL, POLICY_LARGE)
        log(f"== policy scale: mode connect, {POLICY_SMALL} and {POLICY_LARGE:,} allow entries")
        t0 = time.time()
        pol = self.policy = {"sizes": list(sizes), "name": POLICY_NAME, "seconds": POLICY_SECONDS,
                             "connections": POLICY_CONNS, "check": [], "runs": [], "notes": []}
        try:
            items, hosts = source_items(SOURCES_N) if SOURCES_N > 0 else ([], [])
            dns, self.dns_port = start_dns(self.d, self.procs, hosts)
            pol["dns_port"], pol["backend_port"] = self.dns_port, self.backend_port
            checks = {n: self.write(f"policy-check-{n}.yaml",
                                    gk_policy_conf(free_port(), self.dns_port, self.backend_port, n))
                      for n in sizes}
            pol["file_bytes"] = {n: os.path.getsize(path) for n, path in checks.items()}
            for run in range(1, POLICY_RUNS + 1):
                for n in sizes:
                    wall, cpu, rss, rc, out = config_check(checks[n])
                    pol["check"].append({"entries": n, "run": run, "wall_s": wall, "cpu_s": cpu,
                                         "maxrss": rss, "rc": rc})
                    log(f"   gatekeeper -t, {n:,} entries: {wall:.3f}s, {rss / 1048576:.1f} MiB")
                    if rc != 0:
                        pol["notes"].append(f"`gatekeeper -t` with {n:,} entries exited {rc}: {out}")
            for run in range(1, POLICY_RUNS + 1):
                for n in sizes:
                    pol["runs"].append(self.policy_run(n, run))
            if SOURCES_N > 0:
                self.sources_scale(items)
        except BenchError as e:
            pol["error"] = str(e).splitlines()[0]
            pol["notes"].append(f"policy scale: FAILED: {e}")
            log(f"policy scale: FAILED: {e}")
        finally:
            if "dns" in locals():
                self.procs.stop(dns)
        log(f"   {time.time() - t0:.0f}s")

    def policy_run(self, n, run):
        """One measured run of short CONNECT sessions through a fresh
        gatekeeper with n allow entries."""
        tag = f"policy-{n}-{run}"
        row = {"entries": n, "run": run}
        target = f"{POLICY_NAME}:{self.backend_port}"
        port = free_port()
        conf = self.write(f"{tag}.yaml", gk_policy_conf(port, self.dns_port, self.backend_port, n))
        p = self.procs.start([GK, "-c", conf], os.path.join(self.d, f"{tag}.log"), cpus=PROXY_CPU,
                             nofile=NOFILE)
        try:
            wait_port(port, p, timeout=60)
            status, resp = connect_exchange(port, target)
            if not resp.endswith(BODY.encode()):
                raise BenchError(f"{tag}: CONNECT {target}: {status!r}, then {resp[:200]!r}")
            status, _ = connect_exchange(port, f"{POLICY_DENIED}:{self.backend_port}")
            if not status.startswith("HTTP/1.1 403"):
                raise BenchError(f"{tag}: CONNECT {POLICY_DENIED} (no entry allows it) got "
                                 f"{status!r}, want 403")
            row["rss"] = rss_bytes(p.pid)
            connect_load(port, target, 1, POLICY_CONNS)  # warm-up, not measured
            row.update(measured(lambda: connect_load(port, target, POLICY_SECONDS, POLICY_CONNS),
                                p.pid, self.backend.pid))
            if p.poll() is not None:
                raise BenchError(f"{tag} exited during the run:\n{tail(p.logpath)}")
            if row["cpu_us_per_req"] is None:
                raise BenchError(f"{tag}: no session completed")
            log(f"   {n:,} entries, run {run}: {row['rps']:,.0f} new conn/s, "
                f"{row['cpu_us_per_req']:.1f} CPU µs/new conn")
        except BenchError as e:
            row["error"] = str(e).splitlines()[0]
            self.policy["notes"].append(f"{n:,} entries, run {run}: FAILED: {e}")
            log(f"{tag}: FAILED: {e}")
        finally:
            self.procs.stop(p)
        label = f"{n:,} entries, run {run}"
        errs = sum(row.get("errors", {}).values())
        if errs:
            detail = ", ".join(f"{k} {v}" for k, v in row["errors"].items())
            self.policy["notes"].append(f"{label}: failed sessions: {detail} "
                                        f"(of {errs + row['requests']})")
            row["flag"] = errs > 0.001 * max(row["requests"], 1)
        if row.get("foreign_cpu_s", 0) > NOISE * row.get("elapsed", 1):
            self.policy["notes"].append(f"{label}: other processes took {row['foreign_cpu_s']:.1f} "
                                        f"CPU-s of CPUs {PROXY_CPU}-{LOAD_CPU} during the "
                                        f"{row['elapsed']:.0f}s run, {row['others_top']}: noisy")
        # At level warn gatekeeper logs nothing per session; run as root it
        # says so once at start, which is expected here.
        with open(p.logpath, "rb") as f:
            logged = [x for x in f.read().decode(errors="replace").splitlines()
                      if 'msg="running as root"' not in x]
        if logged:
            self.policy["notes"].append(f"{label}: {len(logged)} line(s) in gatekeeper's log at "
                                        f"level warn; first: `{logged[0][:200]}`")
        return row

    def sources_scale(self, items):
        """The sources rows: `gatekeeper -t` on each variant's file, then
        POLICY_RUNS rounds of the variants in turn, a fresh gatekeeper for
        every run."""
        log(f"== policy scale: sources, {len(items):,} items, per listener and per allow entry")
        t0 = time.time()
        src = self.policy["sources"] = {"items": len(items), "client_name": SOURCES_CLIENT,
                                        "limit": SOURCES_LIMIT, "check": [], "runs": []}
        notes = self.policy["notes"]
        files = {v: self.write(f"sources-check-{v}.yaml",
                               gk_sources_conf(free_port(), self.dns_port, free_port(),
                                               self.backend_port, v, items))
                 for v in SOURCES_VARIANTS}
        src["file_bytes"] = {v: os.path.getsize(path) for v, path in files.items()}
        for run in range(1, POLICY_RUNS + 1):
            for v in ("none", "blocks", "listener", "rule", "report"):
                wall, cpu, rss, rc, out = config_check(files[v])
                src["check"].append({"variant": v, "run": run, "wall_s": wall, "cpu_s": cpu,
                                     "maxrss": rss, "rc": rc})
                log(f"   gatekeeper -t, sources {v}: {wall:.3f}s, {rss / 1048576:.1f} MiB")
                if rc != 0:
                    if v == "report" and ("unknown key" in out or "action" in out):
                        src["report_unsupported"] = out.strip().splitlines()[-1][:200]
                        notes.append(f"report row skipped: this build does not know `action` "
                                     f"(`{src['report_unsupported']}`)")
                        log("   report: not supported by this build; skipped")
                        continue
                    if v != "none" and "unknown key" in out:
                        src["unsupported"] = out.strip().splitlines()[-1][:200]
                        notes.append(f"sources rows skipped: this build does not know the keys "
                                     f"(`{src['unsupported']}`)")
                        log("   sources: not supported by this build; skipped")
                        return
                    notes.append(f"`gatekeeper -t` of the sources file ({v}) exited {rc}: {out}")
        variants = [v for v in SOURCES_VARIANTS
                    if not (v == "report" and src.get("report_unsupported"))]
        for run in range(1, POLICY_RUNS + 1):
            for v in variants:
                src["runs"].append(self.sources_run(v, run, items))
        log(f"   {time.time() - t0:.0f}s")

    def sources_run(self, variant, run, items):
        """One measured run of short CONNECT sessions through a fresh
        gatekeeper in one of SOURCES_VARIANTS."""
        tag = f"sources-{variant}-{run}"
        label = f"sources {variant}, run {run}"
        row = {"variant": variant, "run": run}
        target = f"{POLICY_NAME}:{self.backend_port}"
        port, admin = free_port(), free_port()
        conf = self.write(f"{tag}.yaml", gk_sources_conf(port, self.dns_port, admin,
                                                         self.backend_port, variant, items))
        t_start = time.perf_counter()
        p = self.procs.start([GK, "-c", conf], os.path.join(self.d, f"{tag}.log"), cpus=PROXY_CPU,
                             nofile=NOFILE)
        try:
            wait_port(port, p, timeout=60)
            # Every source name resolved: /readyz says 200.
            deadline, code, body = time.time() + 120, None, ""
            while time.time() < deadline:
                if p.poll() is not None:
                    raise BenchError(f"{tag} exited at start:\n{tail(p.logpath)}")
                code, body = readyz(admin)
                if code == 200:
                    break
                time.sleep(0.02)
            if code != 200:
                first = body.strip().splitlines()[:2]
                raise BenchError(f"{tag}: /readyz still {code} after 120 s: {' / '.join(first)}")
            row["ready_s"] = time.perf_counter() - t_start
            status, resp = connect_exchange(port, target)
            if not resp.endswith(BODY.encode()):
                raise BenchError(f"{tag}: CONNECT {target}: {status!r}, then {resp[:200]!r}")
            if variant in ("blocks", "listener", "rule"):
                status, reason, what = connect_refusal(port, target, SOURCES_OTHER)
                row["other_client"] = {"status": status, "reason": reason, "what": what}
                if status.startswith("HTTP/1.1 200"):
                    raise BenchError(f"{tag}: CONNECT from {SOURCES_OTHER} (in no source list) "
                                     f"was admitted")
                if not (status.startswith("HTTP/1.1 403") and reason == "source_denied"):
                    notes_what = status or what
                    self.policy["notes"].append(f"{label}: a client from {SOURCES_OTHER} got "
                                                f"`{notes_what}` (reason `{reason or '-'}`), "
                                                f"not 403 source_denied")
            if variant == "report":
                # Report mode never relaxes the address guard.
                status, reason, what = connect_refusal(port, f"{REPORT_GUARDED}:{self.backend_port}",
                                                       HOST)
                row["guarded"] = {"status": status, "reason": reason, "what": what}
                if status.startswith("HTTP/1.1 200"):
                    raise BenchError(f"{tag}: CONNECT {REPORT_GUARDED} (10.200.0.1, private) was "
                                     f"let through in report mode")
                if not (status.startswith("HTTP/1.1 403") and reason == "address_denied"):
                    self.policy["notes"].append(f"{label}: CONNECT {REPORT_GUARDED} got "
                                                f"`{status or what}` (reason `{reason or '-'}`), "
                                                f"not 403 address_denied")
            row["rss"] = rss_bytes(p.pid)
            connect_load(port, target, 1, POLICY_CONNS)  # warm-up, not measured
            row.update(measured(lambda: connect_load(port, target, POLICY_SECONDS, POLICY_CONNS),
                                p.pid, self.backend.pid))
            if p.poll() is not None:
                raise BenchError(f"{tag} exited during the run:\n{tail(p.logpath)}")
            if row["cpu_us_per_req"] is None:
                raise BenchError(f"{tag}: no session completed")
            if variant == "report":
                self.check_observed(row, label, admin, target)
            log(f"   sources {variant}, run {run}: ready in {row['ready_s']:.2f}s, "
                f"{row['rps']:,.0f} new conn/s, {row['cpu_us_per_req']:.1f} CPU µs/new conn")
        except BenchError as e:
            row["error"] = str(e).splitlines()[0]
            self.policy["notes"].append(f"{label}: FAILED: {e}")
            log(f"{tag}: FAILED: {e}")
        finally:
            self.procs.stop(p)
        errs = sum(row.get("errors", {}).values())
        if errs:
            detail = ", ".join(f"{k} {v}" for k, v in row["errors"].items())
            self.policy["notes"].append(f"{label}: failed sessions: {detail} "
                                        f"(of {errs + row['requests']})")
            row["flag"] = errs > 0.001 * max(row["requests"], 1)
        if row.get("foreign_cpu_s", 0) > NOISE * row.get("elapsed", 1):
            self.policy["notes"].append(f"{label}: other processes took {row['foreign_cpu_s']:.1f} "
                                        f"CPU-s of CPUs {PROXY_CPU}-{LOAD_CPU} during the "
                                        f"{row['elapsed']:.0f}s run, {row['others_top']}: noisy")
        with open(p.logpath, "rb") as f:
            logged = [x for x in f.read().decode(errors="replace").splitlines()
                      if 'msg="running as root"' not in x]
        if logged:
            self.policy["notes"].append(f"{label}: {len(logged)} line(s) in gatekeeper's log at "
                                        f"level warn; first: `{logged[0][:200]}`")
        return row

    def check_observed(self, row, label, admin, target):
        """After a report-mode run: /observed must hold the name asked for
        (not_allowed, counted once per session) and not the guarded one."""
        try:
            resp = http_get(admin, "/observed", timeout=5)
            seen = json.loads(resp.partition(b"\r\n\r\n")[2].decode())
        except (OSError, ValueError) as e:
            self.policy["notes"].append(f"{label}: /observed unreadable: {e}")
            return
        name, port = target.rsplit(":", 1)
        mine = [e for e in seen if e.get("name") == name and e.get("port") == int(port)]
        row["observed"] = {"entries": len(seen), "count": sum(e.get("count", 0) for e in mine)}
        # The sessions measured, the warm-up and the check exchange all count;
        # failed ones may too (they were let through before they failed).
        least = row["requests"] + 1
        if not mine or any(e.get("reason") != "not_allowed" for e in mine) \
                or row["observed"]["count"] < least:
            self.policy["notes"].append(f"{label}: /observed has {mine!r} for {target}, want "
                                        f"reason not_allowed and a count of at least {least:,}")
        if any(e.get("name") == REPORT_GUARDED for e in seen):
            self.policy["notes"].append(f"{label}: /observed holds {REPORT_GUARDED}, which the "
                                        f"guard refused")

    # ------------------------------------------------------------- DNS door

    def dns_section(self):
        """The DNS section: the door and dnsmasq in turn, over UDP then TCP,
        DNS_RUNS rounds, a fresh server for every run; then the door with
        max_queries_per_source: DNS_LIMIT against one source sending
        DNS_LIMIT_QPS."""
        log(f"== DNS: the door against dnsmasq, {len(dns_allow())} allow entries, dnsperf "
            f"-c{DNS_CLIENTS} -q{DNS_OUTSTANDING}, {DNS_SECONDS}s per run")
        t0 = time.time()
        qs = dns_queries()
        dns = self.dns = {"entries": len(dns_allow()), "mix": dict(DNS_MIX), "seconds": DNS_SECONDS,
                          "clients": DNS_CLIENTS, "outstanding": DNS_OUTSTANDING,
                          "nx_share": DNS_MIX["refused"] / len(qs), "limit": DNS_LIMIT,
                          "limit_qps": DNS_LIMIT_QPS, "runs": [], "limiter": None, "notes": []}
        self.dns_file = self.write("dns-queries.txt", "".join(f"{n} A\n" for n, _ in qs))
        self.dns_kinds = {n: k for n, k in qs}
        try:
            path = self.write("dns-check.yaml", gk_dns_conf(free_dns_port(), free_port(), 0,
                                                            1 if self.gk_workers else 0))
            p = subprocess.run([GK, "-t", "-c", path], capture_output=True, text=True)
            if p.returncode != 0:
                raise BenchError(f"gatekeeper -t of the dns listener: {(p.stderr or p.stdout).strip()}")
            for run in range(1, DNS_RUNS + 1):
                for transport in ("udp", "tcp"):
                    for server in ("gatekeeper", "dnsmasq"):
                        dns["runs"].append(self.dns_run(server, transport, run))
            dns["limiter"] = self.dns_run("gatekeeper", "udp", 1, limit=DNS_LIMIT)
        except BenchError as e:
            dns["error"] = str(e).splitlines()[0]
            dns["notes"].append(f"DNS: FAILED: {e}")
            log(f"DNS: FAILED: {e}")
        log(f"   {time.time() - t0:.0f}s")

    def dns_check_answers(self, port, server, tcp, few=False):
        """Every name of the query file asked once over UDP (over TCP, or
        when few, one of each kind): the door must answer each as its kind
        says (a mismatch fails the run); for dnsmasq a mismatch is a note."""
        names = list(self.dns_kinds)
        if tcp or few:
            names = [next(n for n in names if self.dns_kinds[n] == k) for k in DNS_MIX]
        wrong = []
        for name in names:
            kind = self.dns_kinds[name]
            want = dns_expect(kind, server == "dnsmasq", name)
            try:
                rcode, addrs, _ = dns_ask(port, name, tcp=tcp)
            except (OSError, BenchError) as e:
                wrong.append(f"{name}: {e}")
                continue
            if (rcode, addrs) != want:
                wrong.append(f"{name} ({DNS_KINDS[kind]}): rcode {rcode} {addrs}, want rcode "
                             f"{want[0]} {want[1]}")
        if wrong and server == "gatekeeper":
            raise BenchError(f"{len(wrong)} of {len(names)} answers wrong: {'; '.join(wrong[:3])}")
        return wrong

    def dns_run(self, server, transport, run, limit=0):
        """One measured dnsperf run against a fresh door (limit: its
        max_queries_per_source) or dnsmasq."""
        tcp = transport == "tcp"
        tag = f"dns-{server}-{transport}-{run}" + (f"-limit{limit}" if limit else "")
        label = (f"{server} {transport}, run {run}" if not limit
                 else f"gatekeeper, max_queries_per_source: {limit}")
        row = {"server": server, "transport": transport, "run": run, "limit": limit}
        notes = self.dns["notes"]
        port, admin = free_dns_port(), free_port()
        logpath = os.path.join(self.d, f"{tag}.log")
        if server == "gatekeeper":
            conf = self.write(f"{tag}.yaml", gk_dns_conf(port, admin, limit, 1 if self.gk_workers else 0))
            p = self.procs.start([GK, "-c", conf], logpath, cpus=PROXY_CPU)
        else:
            p = self.procs.start(dnsmasq_peer_argv(self.d, port), logpath, cpus=PROXY_CPU)
        try:
            deadline = time.time() + 10
            while True:
                if p.poll() is not None:
                    raise BenchError(f"{tag} exited at start:\n{tail(p.logpath)}")
                try:
                    dns_ask(port, DNS_DOMAIN, timeout=0.2)
                    break
                except (OSError, BenchError):
                    if time.time() > deadline:
                        raise BenchError(f"{tag}: no answer on {HOST}:{port} after 10 s")
                    time.sleep(0.05)
            wrong = self.dns_check_answers(port, server, tcp, few=bool(limit))
            if wrong:
                notes.append(f"{label}: {len(wrong)} answer(s) unlike the door's, e.g. {wrong[0]}")
            row["rss"] = rss_bytes(p.pid)

            def one(seconds=DNS_SECONDS):
                """One dnsperf run; for the door with /metrics read around it."""
                m0 = dns_metrics(admin) if server == "gatekeeper" else {}
                if limit:
                    r = run_dnsperf(port, self.dns_file, seconds, clients=1,
                                    outstanding=max(DNS_OUTSTANDING, 2 * DNS_LIMIT_QPS),
                                    qps=DNS_LIMIT_QPS, timeout=1, verbose=True)
                else:
                    r = run_dnsperf(port, self.dns_file, seconds, tcp=tcp, timeout=DNS_TIMEOUT)
                if server == "gatekeeper":
                    m1 = dns_metrics(admin)
                    r["metrics"] = {k: m1.get(k, 0) - m0.get(k, 0) for k in m1}
                return r
            if limit:
                # No warm-up: the whole run is one source over its limit. A
                # second of quiet first refills the bucket (one second's worth).
                r = self.quiet(lambda: (time.sleep(1.0), measured(one, p.pid, None))[1])
            else:
                one(1)  # warm-up, not measured
                r = self.quiet(lambda: measured(one, p.pid, None))
            row.update(r)
            if p.poll() is not None:
                raise BenchError(f"{tag} exited during the run:\n{tail(p.logpath)}")
            if not row["requests"]:
                raise BenchError(f"{tag}: no query answered")
            done = row["requests"]
            row["noerror_share"] = row["rcodes"].get("NOERROR", 0) / done
            row["nx_share"] = row["rcodes"].get("NXDOMAIN", 0) / done
            others = {k: v for k, v in row["rcodes"].items() if k not in ("NOERROR", "NXDOMAIN")}
            want = self.dns["nx_share"]
            if limit:
                # Which queries get through depends on timing, so the share to
                # match is that of refused names among the queries answered;
                # every answer is checked against its name (dnsperf -v).
                answers = row.pop("answers", [])
                bad = [(c, n) for c, n in answers
                       if c != ("NXDOMAIN" if self.dns_kinds.get(n) == "refused" else "NOERROR")]
                if len(answers) != done or bad:
                    raise BenchError(f"{tag}: {len(bad)} of {len(answers)} answers (dnsperf counted "
                                     f"{done}) wrong for their name, e.g. {bad[:2]}")
                row["answers_checked"] = len(answers)
                want = row["refused_share"] = sum(
                    1 for _, n in answers if self.dns_kinds.get(n) == "refused") / done
            off = abs(row["nx_share"] - want) > DNS_SHARE_TOL
            if server == "gatekeeper" and (off or others):
                raise BenchError(f"{tag}: NXDOMAIN {100 * row['nx_share']:.2f}% of the answers, "
                                 f"refused names {100 * want:.2f}% of the "
                                 + ("queries answered" if limit else "file")
                                 + (f"; other codes {others}" if others else ""))
            if off or others:
                notes.append(f"{label}: NXDOMAIN {100 * row['nx_share']:.2f}% of the answers "
                             f"(the file's refused names: {100 * want:.1f}%)"
                             + (f", other codes {others}" if others else ""))
            if server == "gatekeeper" and not limit and row["metrics"].get("rate_limited"):
                raise BenchError(f"{tag}: {row['metrics']['rate_limited']} queries rate_limited "
                                 f"with max_queries_per_source: 0")
            if limit:
                self.dns_check_limiter(row, tag)
            log(f"   {label}: {row['rps']:,.0f} queries/s, "
                + (f"{row['cpu_us_per_req']:.2f} CPU µs/query, " if row["cpu_us_per_req"] else "")
                + f"NXDOMAIN {100 * row['nx_share']:.1f}%, lost {row['lost']}"
                + (f", rate_limited {row['metrics'].get('rate_limited', 0):,}" if limit else ""))
        except BenchError as e:
            row["error"] = str(e).splitlines()[0]
            notes.append(f"{label}: FAILED: {e}")
            log(f"{tag}: FAILED: {e}")
        finally:
            self.procs.stop(p)
        if row.get("lost") and not limit:
            notes.append(f"{label}: {row['lost']:,} of {row['sent']:,} queries lost (no answer "
                         f"within {DNS_TIMEOUT} s)")
            row["flag"] = row["lost"] > 0.001 * max(row["sent"], 1)
        if row.get("foreign_cpu_s", 0) > NOISE * row.get("elapsed", 1):
            notes.append(f"{label}: other processes took {row['foreign_cpu_s']:.1f} CPU-s of CPUs "
                         f"{PROXY_CPU}-{LOAD_CPU} during the {row['elapsed']:.0f}s run, "
                         f"{row['others_top']} (best of {row['attempts']} runs): noisy")
            row["noisy"] = True
        if row.get("steal_s", 0) > 0.02 * row.get("elapsed", 1):
            notes.append(f"{label}: steal time {row['steal_s']:.2f}s (the hypervisor took the CPUs)")
        # dnsperf's run time: the wait for lost queries at the end is left out.
        busy_s = row.get("duration") or row.get("elapsed", 0)
        if busy_s:
            row["server_cpu_pct"] = 100 * row["proxy_cpu_s"] / busy_s
        if (not limit and row.get("busy_per_cpu_s") and row["busy_per_cpu_s"][1] > 0.95 * busy_s
                and row["proxy_cpu_s"] < 0.9 * busy_s):
            row["load_bound"] = True
        if server == "gatekeeper":
            with open(logpath, "rb") as f:
                logged = [x for x in f.read().decode(errors="replace").splitlines()
                          if 'msg="running as root"' not in x]
            if logged:
                notes.append(f"{label}: {len(logged)} line(s) in gatekeeper's log at level warn; "
                             f"first: `{logged[0][:200]}`")
        return row

    def dns_check_limiter(self, row, tag):
        """One source sending DNS_LIMIT_QPS at a door allowing it DNS_LIMIT a
        second: about DNS_LIMIT a second answered (plus the first second's
        burst), the rest counted rate_limited in /metrics, and every query
        dnsperf sent counted once."""
        m, secs = row["metrics"], row["duration"] or row["elapsed"]
        row["rate_limited"] = limited = m.get("rate_limited", 0)
        counted = sum(m.values())
        answered = row["requests"]
        row["answered_per_s"] = answered / secs
        row["sent_per_s"] = row["sent"] / secs
        row["cpu_us_per_received"] = row["proxy_cpu_s"] * 1e6 / row["sent"] if row["sent"] else None
        most = DNS_LIMIT * (secs + 1) * 1.05 + 20
        if not limited:
            raise BenchError(f"{tag}: nothing rate_limited at {row['sent_per_s']:,.0f} queries/s "
                             f"from one source")
        if answered > most or answered < 0.8 * DNS_LIMIT * secs:
            raise BenchError(f"{tag}: {answered:,} answered in {secs:.1f}s, want about "
                             f"{DNS_LIMIT}/s (+{DNS_LIMIT} at once)")
        if abs(counted - row["sent"]) > 0.01 * row["sent"] + 10:
            self.dns["notes"].append(f"limiter: /metrics counted {counted:,} queries, dnsperf sent "
                                     f"{row['sent']:,}")

    def quiet_wrk(self, port, pid, close, latency):
        """measured_wrk, repeated while other processes on this machine took
        more than NOISE of a CPU during the run and the retry budget lasts;
        the least disturbed run is kept."""
        return self.quiet(lambda: measured_wrk(port, pid, self.backend.pid, close, latency))

    def quiet(self, measure):
        """measure() (a measured() run), repeated while other processes on
        this machine took more than NOISE of a CPU during the run and the
        retry budget lasts; the least disturbed run is kept."""
        best, attempts = None, 0
        while True:
            attempts += 1
            t0 = time.time()
            r = measure()
            if best is None or r["foreign_cpu_s"] < best["foreign_cpu_s"]:
                best = r
            if (r["foreign_cpu_s"] <= NOISE * r["elapsed"] or self.retry_budget <= 0
                    or attempts > RETRIES):
                break
            log(f"   other processes took {r['foreign_cpu_s']:.1f} CPU-s of "
                f"{r['elapsed']:.0f}s ({r['others_top']}): running it again")
            self.retry_budget -= time.time() - t0
        best["attempts"] = attempts
        return best

    def check_logs(self, label, tag):
        """A proxy at log level warn should have written nothing; show what
        it wrote (nginx's error log included)."""
        for name in (f"{tag}-mem.log", f"{tag}-mem.err", f"{tag}.log", f"{tag}.err"):
            path = os.path.join(self.d, name)
            if os.path.exists(path) and os.path.getsize(path):
                with open(path, "rb") as f:
                    lines = f.read().decode(errors="replace").splitlines()
                first = lines[0][:200] if lines else ""
                what = "idle connections" if "-mem." in name else "load runs"
                self.notes.append(f"{label}: {len(lines)} line(s) in its log during the {what}; "
                                  f"first: `{first}`")

    def check(self, row):
        """Sanity checks; anything odd becomes a note under the table."""
        for key, what in (("ka", "keep-alive"), ("nc", "new conn")):
            r = row.get(key)
            if not r:
                continue
            if r["requests"] == 0:
                self.notes.append(f"{row['label']} {what}: wrk completed no requests")
            errs = sum(r["errors"].values())
            if errs or r["non2xx"]:
                detail = ", ".join(f"{k} {v}" for k, v in r["errors"].items() if v)
                self.notes.append(f"{row['label']} {what}: wrk socket errors: {detail or 'none'}; "
                                  f"non-2xx responses: {r['non2xx']} (of {r['requests']} requests)")
                r["flag"] = errs + r["non2xx"] > 0.001 * max(r["requests"], 1)
            if r["foreign_cpu_s"] > NOISE * r["elapsed"]:
                self.notes.append(f"{row['label']} {what}: other processes took "
                                  f"{r['foreign_cpu_s']:.1f} CPU-s of CPUs {PROXY_CPU}-{LOAD_CPU} during "
                                  f"the {r['elapsed']:.0f}s run, {r['others_top']} "
                                  f"(best of {r['attempts']} runs): noisy")
            if r["steal_s"] > 0.02 * r["elapsed"]:
                self.notes.append(f"{row['label']} {what}: steal time {r['steal_s']:.2f}s "
                                  f"(the hypervisor took the CPUs)")
        if "log_lines" in row:
            conns = row["nc"]["requests"] + CONNS
            self.notes.append(f"{row['label']}: {row['log_lines']:,} log lines ({row['log_bytes']:,} bytes) "
                              f"written to a file for about {conns:,} connections")
        if row.get("kind") == "gatekeeper" and "threads" in row and row["threads"] < row["workers"]:
            self.notes.append(f"{row['label']}: only {row['threads']} thread(s) running; "
                              f"`workers: {row['workers']}` did not start {row['workers']} event loops")
        bulk = row.get("bulk")
        if bulk and min(bulk["runs_mb_s"]) > 0 and max(bulk["runs_mb_s"]) > 1.3 * min(bulk["runs_mb_s"]):
            runs = ", ".join(f"{x:.0f}" for x in bulk["runs_mb_s"])
            self.notes.append(f"{row['label']} bulk: the runs vary ({runs} MB/s); the median is shown")


# ------------------------------------------------------------------- output


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ratio(x, base):
    if x is None or not base:
        return "—"
    return f"{x / base:.2f}×"


def fmt_ms(x):
    return "—" if x is None else f"{x:.2f}"


def fmt_mib(b):
    return "—" if b is None else f"{b / 1048576:.1f} MiB"


def render(bench, header):
    direct = next((r for r in bench.rows if r["kind"] is None), {})
    d_ka = direct.get("ka", {}).get("rps")
    d_nc = direct.get("nc", {}).get("rps")
    d_bulk = direct.get("bulk", {}).get("mb_s")
    cols = ["config", "keep-alive req/s", "× direct", "new conn/s", "× direct", "p50 ms", "p99 ms",
            "CPU µs/req", "CPU µs/new conn", "proxy CPU %", "bulk MB/s", "× direct", "RSS start",
            "bytes/idle conn"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "|".join(
        ["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    for r in bench.rows:
        if r.get("unsupported"):
            cells = [r["label"], r["unsupported"]] + [""] * (len(cols) - 2)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        ka, nc, bulk = r.get("ka"), r.get("nc"), r.get("bulk")

        def rps(x):
            if not x:
                return "—"
            return fmt_int(x["rps"]) + (" ⚠" if x.get("flag") else "")
        cells = [
            r["label"],
            rps(ka), fmt_ratio(ka and ka["rps"], d_ka),
            rps(nc), fmt_ratio(nc and nc["rps"], d_nc),
            fmt_ms(ka and ka["p50_ms"]), fmt_ms(ka and ka["p99_ms"]),
            "—" if not ka or ka["cpu_us_per_req"] is None else f"{ka['cpu_us_per_req']:.1f}",
            "—" if not nc or nc["cpu_us_per_req"] is None else f"{nc['cpu_us_per_req']:.1f}",
            "—" if not ka or not r["kind"] else f"{100 * ka['proxy_cpu_s'] / ka['elapsed']:.0f}",
            fmt_int(bulk and bulk["mb_s"]), fmt_ratio(bulk and bulk["mb_s"], d_bulk),
            fmt_mib(r.get("rss_start")),
            fmt_int(r.get("bytes_per_idle")),
        ]
        if r.get("error"):
            cells[1] = "failed: " + r["error"][:80].replace("|", "/")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_policy(pol):
    """The policy-scale section: one table for the CONNECT runs, one for
    `gatekeeper -t`, and the targets, in markdown."""
    small, large = pol["sizes"]
    lines = [f"Policy scale: one `mode: connect` listener, gatekeeper on CPU {PROXY_CPU}, "
             f"`log.level: warn`; allowlists of {small} and {large:,} entries (half exact names, "
             f"then half `*.suffix` wildcards, every entry with the backend's port). Each session: "
             f"`CONNECT {pol['name']}:PORT`, allowed by the last entry (`*.last.{POLICY_DOMAIN}`) "
             f"and resolved by dnsmasq on 127.0.0.1 to the backend; `GET /` through the tunnel; "
             f"the backend's answer read to its close. {pol['connections']} sessions at a time "
             f"from the script on CPU {LOAD_CPU}, {pol['seconds']} s per run after a 1 s warm-up, "
             f"a fresh gatekeeper for every run, the two allowlists alternating.",
             "",
             "| allowlist | run | new conn/s | CPU µs/new conn | × " + f"{small} entries" +
             " | proxy CPU % | RSS | others' CPU-s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    by = {(r["entries"], r["run"]): r for r in pol["runs"]}
    for r in pol["runs"]:
        label = f"{r['entries']:,} entries"
        if r.get("error"):
            lines.append(f"| {label} | {r['run']} | failed: {r['error'][:80].replace('|', '/')} "
                         f"| | | | | |")
            continue
        base = by.get((small, r["run"]), {}).get("cpu_us_per_req")
        ratio = f"{r['cpu_us_per_req'] / base:.2f}×" if base and r["cpu_us_per_req"] else "—"
        lines.append(f"| {label} | {r['run']} | {fmt_int(r['rps'])}{' ⚠' if r.get('flag') else ''} | "
                     f"{r['cpu_us_per_req']:,.1f} | {ratio} | "
                     f"{100 * r['proxy_cpu_s'] / r['elapsed']:.0f} | {fmt_mib(r.get('rss'))} | "
                     f"{r['foreign_cpu_s']:.1f} |")
    src = pol.get("sources")
    if src and src.get("runs"):
        lines += ["", render_sources(pol, src)]
    lines += ["", "| `gatekeeper -t -c FILE` | file | run | wall s | CPU s | peak RSS |",
              "|---|---:|---:|---:|---:|---:|"]

    def size_of(size):
        return "—" if size is None else (f"{size / 1024:.1f} KiB" if size < 1048576 else fmt_mib(size))
    for c in pol["check"]:
        size = size_of(pol.get("file_bytes", {}).get(c["entries"]))
        lines.append(f"| {c['entries']:,} entries | {size} | {c['run']} | "
                     f"{c['wall_s']:.3f} | {c['cpu_s']:.3f} | {fmt_mib(c['maxrss'])} |"
                     + ("" if c["rc"] == 0 else f" exit {c['rc']}"))
    for c in (src or {}).get("check", []):
        size = size_of(src.get("file_bytes", {}).get(c["variant"]))
        lines.append(f"| {SOURCES_LABELS[c['variant']].format(n=src['items'])} | {size} | {c['run']} | "
                     f"{c['wall_s']:.3f} | {c['cpu_s']:.3f} | {fmt_mib(c['maxrss'])} |"
                     + ("" if c["rc"] == 0 else f" exit {c['rc']}"))

    # The targets: per new connection, the large list within 5% of the small
    # one (each run against the small list's run of the same round); -t of
    # the large file under 1 s and under 64 MiB.
    ratios = []
    for r in pol["runs"]:
        base = by.get((small, r["run"]), {}).get("cpu_us_per_req")
        if r["entries"] == large and base and r.get("cpu_us_per_req") and not r.get("error"):
            ratios.append(r["cpu_us_per_req"] / base)
    big = [c for c in pol["check"] if c["entries"] == large and c["rc"] == 0]

    def verdict(ok):
        return "met" if ok else "not met"
    targets = []
    if ratios:
        targets.append(f"CPU µs/new conn at {large:,} entries within 5% of {small} entries: "
                       + ", ".join(f"{x:.2f}×" for x in ratios) + f" ({verdict(max(ratios) <= 1.05)})")
    if big:
        targets.append(f"`-t` of {large:,} entries under 1 s: "
                       + ", ".join(f"{c['wall_s']:.2f} s" for c in big)
                       + f" ({verdict(max(c['wall_s'] for c in big) < 1.0)})")
        targets.append(f"under 64 MiB peak RSS: " + ", ".join(fmt_mib(c["maxrss"]) for c in big)
                       + f" ({verdict(max(c['maxrss'] for c in big) < 64 * 1048576)})")
    if targets:
        lines += ["", "Targets: " + "; ".join(targets) + "."]
    if pol["notes"]:
        lines += ["", "Policy-scale notes:"] + [f"- {n}" for n in pol["notes"]]
    return "\n".join(lines)


SOURCES_LABELS = {
    "none": "10 entries, no sources",
    "blocks": "listener `sources`, {n:,} blocks",
    "listener": "listener `sources`, {n:,} items",
    "rule": "allow `{{match, sources}}`, {n:,} items",
    "limit": f"`max_connections_per_source: {SOURCES_LIMIT}`",
    "report": "`action: report`, every session a would-deny",
}


def render_sources(pol, src):
    """The sources rows: one table, each variant against `none` of the same
    round, and a line saying how they were set up."""
    n = src["items"]
    lines = [f"Sources: the same listener with the {POLICY_SMALL}-entry allowlist, an admin endpoint "
             f"and `/readyz` awaited before each run; `sources` lists of {n:,} items ({n // 2:,} "
             f"blocks and addresses, IPv4 and IPv6, then {n - n // 2:,} names that dnsmasq resolves, "
             f"the last, `{src['client_name']}`, to 127.0.0.1: the client is admitted through a "
             f"name). `blocks`: {n:,} blocks and addresses, no names, the client's address "
             f"last. `rule`: the entry that admits the name is `{{match, sources}}` with those "
             f"items, after an exact entry for the name whose sources exclude the client. A CONNECT "
             f"from {SOURCES_OTHER} must be refused. `report`: `action: report` and no entry "
             f"allows the name (the last one is `{REPORT_MISS}`), so every session is let through "
             f"as a would-deny (`not_allowed`), through the guard to 127.0.0.1 (`allow_ranges`), "
             f"and counted in `/observed`; `{REPORT_GUARDED}` (10.200.0.1) must still get "
             f"`address_denied`. Same client, load and run length as above.",
             "",
             "| sources | run | new conn/s | CPU µs/new conn | × none | proxy CPU % | ready s | RSS "
             "| others' CPU-s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by = {(r["variant"], r["run"]): r for r in src["runs"]}
    for r in src["runs"]:
        label = SOURCES_LABELS[r["variant"]].format(n=n)
        if r.get("error"):
            lines.append(f"| {label} | {r['run']} | failed: {r['error'][:80].replace('|', '/')} "
                         f"| | | | | | |")
            continue
        base = by.get(("none", r["run"]), {}).get("cpu_us_per_req")
        ratio = f"{r['cpu_us_per_req'] / base:.2f}×" if base and r["cpu_us_per_req"] else "—"
        lines.append(f"| {label} | {r['run']} | {fmt_int(r['rps'])}{' ⚠' if r.get('flag') else ''} | "
                     f"{r['cpu_us_per_req']:,.1f} | {ratio} | "
                     f"{100 * r['proxy_cpu_s'] / r['elapsed']:.0f} | {r['ready_s']:.2f} | "
                     f"{fmt_mib(r.get('rss'))} | {r['foreign_cpu_s']:.1f} |")
    return "\n".join(lines)


def render_dns(dns):
    """The DNS section: the door against dnsmasq, then the limiter row, in
    markdown."""
    mix = dns["mix"]
    total = sum(mix.values())
    lines = [f"DNS: the door (`mode: dns`, {dns['entries']} allow entries: {DNS_EXACT} exact "
             f"names, {DNS_WILD} `*.zoneN.{DNS_DOMAIN}` wildcards, `max_queries_per_source: 0`, "
             f"`log.level: warn`) against dnsmasq (the same names from a hosts file and "
             f"`--address`, `--no-resolv`, nothing forwarded), each alone on CPU {PROXY_CPU}; "
             f"dnsperf on CPU {LOAD_CPU}, `-c{dns['clients']} -q{dns['outstanding']} -t{DNS_TIMEOUT}`, "
             f"{dns['seconds']} s per run after a 1 s warm-up, a fresh server for every run. "
             f"The query file ({total:,} A queries, shuffled, sent in a loop): "
             + ", ".join(f"{100 * n / total:.0f}% {DNS_KINDS[k]}" for k, n in mix.items())
             + f"; every name is asked once and checked before each run, and the door's NXDOMAIN "
             f"share must be the file's {100 * dns['nx_share']:.1f}% (±{100 * DNS_SHARE_TOL:.1f} "
             f"points) or the run fails.",
             "",
             "| server | transport | run | queries/s | CPU µs/query | server CPU % | NOERROR | "
             "NXDOMAIN | lost | avg latency ms | RSS | others' CPU-s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in dns["runs"]:
        name = "gatekeeper" if r["server"] == "gatekeeper" else "dnsmasq"
        if r.get("error"):
            lines.append(f"| {name} | {r['transport'].upper()} | {r['run']} | failed: "
                         f"{r['error'][:80].replace('|', '/')} | | | | | | | | |")
            continue
        mark = (" ⚠" if r.get("flag") else "") + (" (noisy)" if r.get("noisy") else "") \
            + (" †" if r.get("load_bound") else "")
        lines.append(f"| {name} | {r['transport'].upper()} | {r['run']} | {fmt_int(r['rps'])}{mark} | "
                     f"{r['cpu_us_per_req']:.2f} | {r['server_cpu_pct']:.0f} | "
                     f"{100 * r['noerror_share']:.2f}% | {100 * r['nx_share']:.2f}% | {r['lost']:,} | "
                     f"{fmt_ms(r['latency_ms'])} | {fmt_mib(r.get('rss'))} | "
                     f"{r['foreign_cpu_s']:.1f} |")
    if any(r.get("load_bound") for r in dns["runs"]):
        lines += ["", f"† CPU {LOAD_CPU} (dnsperf) was full while the server used under 90% of "
                      f"CPU {PROXY_CPU}: dnsperf set the rate, and CPU µs/query is the figure that "
                      f"tells the servers apart."]
    if any(r["server"] == "dnsmasq" and r["transport"] == "tcp" for r in dns["runs"]):
        lines += ["", "dnsmasq answers each TCP connection in a forked child and is not built for "
                      "load there: dnsperf pipelines queries on each connection, and dnsmasq "
                      "leaves some unanswered (the `lost` column). Its TCP rows show that path, "
                      "not a like-for-like race."]
    lim = dns.get("limiter")
    if lim:
        lines += ["", f"Limiter: the same door with `max_queries_per_source: {dns['limit']}`, one "
                      f"source (dnsperf `-c1 -Q{dns['limit_qps']} -t1`, the same file) for "
                      f"{dns['seconds']} s, after a second without queries (the bucket full: "
                      f"{dns['limit']} at once, then {dns['limit']} a second). Queries over the "
                      f"limit get no reply; `rate_limited` is the run's delta of "
                      f"`gatekeeper_dns_queries_total{{result=\"rate_limited\"}}` in `/metrics`. Which "
                      f"queries get through depends on timing, so every answer is checked against "
                      f"its name (dnsperf `-v`), and the NXDOMAIN share must be that of refused "
                      f"names among the queries answered.",
                  "",
                  "| limiter | sent | sent/s | answered | answered/s | rate_limited (/metrics) | "
                  "NXDOMAIN / refused names answered | CPU µs/query received | others' CPU-s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        label = f"`max_queries_per_source: {dns['limit']}`, one source"
        if lim.get("error") or "answered_per_s" not in lim:
            lines.append(f"| {label} | failed: {lim.get('error', '?')[:80].replace('|', '/')} "
                         f"| | | | | | | |")
        else:
            lines.append(f"| {label} | {lim['sent']:,} | {fmt_int(lim['sent_per_s'])} | "
                         f"{lim['requests']:,} | {fmt_int(lim['answered_per_s'])}"
                         f"{' (noisy)' if lim.get('noisy') else ''} | "
                         f"{lim['rate_limited']:,} | {100 * lim['nx_share']:.1f}% / {100 * lim['refused_share']:.1f}% | "
                         f"{lim['cpu_us_per_received']:.2f} | {lim['foreign_cpu_s']:.1f} |")
    if dns.get("notes"):
        lines += ["", "DNS notes:"] + [f"- {n}" for n in dns["notes"]]
    return "\n".join(lines)


def dns_failed(dns):
    return (not dns or bool(dns.get("error")) or any(r.get("error") for r in dns["runs"])
            or bool((dns.get("limiter") or {}).get("error")))


def write_dns(header, dns, text):
    """dns.md and dns.json in OUT: the latest DNS figures."""
    with open(os.path.join(OUT, "dns.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(OUT, "dns.json"), "w") as f:
        json.dump({"header": header, "dns": dns}, f, indent=1)


def machine_header(resp_bytes, policy_only=False, dns_only=False):
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    nproc = NPROC
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def ver(cmd, pat):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
            m = re.search(pat, p.stdout + p.stderr)
            return m.group(1) if m else "?"
        except OSError:
            return "?"
    gk = ver([GK, "--version"], r"gatekeeper (\S+)")
    try:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        rev = "?"
    nginx = ver(["nginx", "-v"], r"nginx/(\S+)")
    haproxy = ver(["haproxy", "-v"], r"version (\S+)")
    wrk = ver(["wrk", "--version"], r"wrk (\S+)")
    versions = (f"gatekeeper {gk} ({rev}, binary sha256 {GK_SHA[0]}), nginx {nginx}, "
                f"HAProxy {haproxy}, wrk {wrk}")
    dnsmasq = ver([DNSMASQ, "--version"], r"version (\S+)")
    dnsperf = ver(["dnsperf", "-h"], r"Version (\S+)")
    if dns_only:
        versions = (f"gatekeeper {gk} ({rev}, binary sha256 {GK_SHA[0]}), dnsmasq {dnsmasq}, "
                    f"dnsperf {dnsperf}")
    else:
        versions += f", dnsmasq {dnsmasq}, dnsperf {dnsperf}"
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    first = f"{date} · nproc {nproc} · {cpu} · Linux {platform.release()} · {versions}\n\n"
    if dns_only:
        return (first + f"DNS only (the other rows were not run): the server on CPU {PROXY_CPU}, "
                f"dnsperf on CPU {LOAD_CPU}. Load average before the run: {load}.")
    if policy_only:
        return (first + f"Policy scale only (the other rows were not run); the nginx backend (1 "
                f"worker), dnsmasq and the client on CPU {LOAD_CPU}, {resp_bytes}-byte responses. "
                f"Load average before the run: {load}.")
    return (first + f"Proxy on CPU {PROXY_CPU} (CPUs {PROXY_CPU}-{LOAD_CPU} for N-worker rows); wrk, the "
            f"nginx backend (1 worker), the bulk reader and the idle client on CPU {LOAD_CPU}. "
            f"wrk -t1 -c{CONNS} -d{SECONDS}s, "
            f"{resp_bytes}-byte responses; bulk = {BULK_MIB} MiB, median of {BULK_RUNS}; "
            f"{IDLE:,} idle connections{IDLE_NOTE}. Load average before the run: {load}.")


def policy_failed(pol):
    return (bool(pol.get("error")) or any(r.get("error") for r in pol["runs"])
            or any(r.get("error") for r in pol.get("sources", {}).get("runs", [])))


def write_policy(header, pol, text):
    """policy.md and policy.json in OUT: the latest policy-scale figures,
    from a full run or a BENCH_ONLY=policy one."""
    with open(os.path.join(OUT, "policy.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(OUT, "policy.json"), "w") as f:
        json.dump({"header": header, "policy": pol}, f, indent=1)


def main():
    global IDLE, NOFILE, IDLE_NOTE, GK, NPROC
    # BENCH_ONLY=policy (or the argument "policy"): only the policy-scale
    # section, written to policy.md and policy.json; the full table stays.
    # BENCH_ONLY=dns: only the DNS section, written to dns.md and dns.json.
    only = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BENCH_ONLY", "")).strip()
    if only not in ("", "all", "policy", "dns") or len(sys.argv) > 2:
        sys.exit(f"usage: bench.py [policy|dns]  (or BENCH_ONLY=policy|dns); not {only!r}")
    policy_only = only == "policy"
    dns_only = only == "dns"
    if not os.access(GK, os.X_OK):
        sys.exit(f"bench: {GK} not found; run make first")
    tools = (("nginx", "taskset", "prlimit") if policy_only
             else ("dnsperf", "taskset", "prlimit") if dns_only
             else ("nginx", "haproxy", "wrk", "dnsperf", "taskset", "prlimit"))
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found; run scripts/deps.sh bench")
    if not os.access(DNSMASQ, os.X_OK):
        sys.exit(f"bench: {DNSMASQ} not found; run scripts/deps.sh bench")
    if not dns_only and not os.path.exists(NGINX_STREAM_MODULE):
        sys.exit(f"bench: {NGINX_STREAM_MODULE} missing; install libnginx-mod-stream")
    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        sys.exit("bench: needs CPUs 0 and 1")

    # A proxy holds two descriptors per idle proxied connection.
    NOFILE = raise_nofile(max(65536, 2 * IDLE + 1000))
    if 2 * IDLE + 300 > NOFILE:
        IDLE_NOTE = (f" (not {IDLE}: the RLIMIT_NOFILE hard limit is {NOFILE} and cannot be "
                     f"raised without CAP_SYS_RESOURCE)")
        IDLE = (NOFILE - 300) // 2
        log(f"RLIMIT_NOFILE is {NOFILE}: measuring {IDLE} idle connections")
    NPROC = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    # The benchmark process (the idle client, the bulk reader) runs next to
    # wrk, off the proxy's CPU.
    os.sched_setaffinity(0, {int(LOAD_CPU)})

    procs = Procs()

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    # Even when started with SIGINT ignored (a background job), Ctrl-C or
    # kill -INT must stop the run and clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    d = tempfile.mkdtemp(prefix="gk-bench-", dir=shm)
    os.chmod(d, 0o755)  # nginx workers run as nobody and read the bulk file
    t_start = time.time()
    try:
        # Measure one binary throughout, even if build/ is rebuilt meanwhile.
        src_gk = GK
        GK = os.path.join(d, "gatekeeper")
        shutil.copy2(src_gk, GK)
        with open(GK, "rb") as f:
            GK_SHA[0] = hashlib.sha256(f.read()).hexdigest()[:12]
        bench = Bench(d, procs)
        os.makedirs(OUT, exist_ok=True)
        if dns_only:
            bench.gk_workers, _ = gk_accepts_workers(d)
            header = machine_header(0, dns_only=True)
            bench.dns_section()
            text = header + "\n\n" + render_dns(bench.dns)
            write_dns(header, bench.dns, text)
            print(text)
            log(f"done in {time.time() - t_start:.0f}s; written to {os.path.relpath(OUT, ROOT)}/dns.md")
            return 1 if dns_failed(bench.dns) else 0
        if policy_only:
            log(f"backend: nginx on CPU {LOAD_CPU}")
            bench.start_backend(bulk_mib=0)
            header = machine_header(bench.response_bytes, policy_only=True)
            bench.policy_scale()
            text = header + "\n\n" + render_policy(bench.policy)
            write_policy(header, bench.policy, text)
            print(text)
            log(f"done in {time.time() - t_start:.0f}s; written to {os.path.relpath(OUT, ROOT)}/policy.md")
            return 1 if policy_failed(bench.policy) else 0
        bench.gk_workers, why = gk_accepts_workers(d)
        log(f"backend: nginx on CPU {LOAD_CPU}, writing the {BULK_MIB} MiB bulk file")
        bench.start_backend()
        header = machine_header(bench.response_bytes)

        bench.run_config("direct (no proxy)", None)
        bench.run_config("gatekeeper, 1 worker", "gatekeeper", 1, "warn")
        bench.run_config("gatekeeper, 1 worker, log info", "gatekeeper", 1, "info", full=False)
        # The price of mode http (every request parsed and rewritten) against tcp.
        bench.run_config("gatekeeper, 1 worker, mode http", "gatekeeper", 1, "warn", full=False,
                         mode="http")
        bench.run_config("nginx stream, 1 worker", "nginx", 1)
        bench.run_config("HAProxy tcp, 1 thread", "haproxy", 1)
        if WORKERS > 1:
            n = WORKERS
            if bench.gk_workers:
                bench.run_config(f"gatekeeper, {n} workers", "gatekeeper", n, "warn")
            else:
                bench.rows.append({"label": f"gatekeeper, {n} workers", "kind": "gatekeeper",
                                   "workers": n, "unsupported": "workers: not supported by this build"})
                log(f"gatekeeper, {n} workers: not supported by this build ({why})")
            bench.run_config(f"nginx stream, {n} workers", "nginx", n)
            bench.run_config(f"HAProxy tcp, {n} threads", "haproxy", n)

        # With one worker the proxy has CPU 0 to itself while wrk and the
        # backend share CPU 1: when CPU 1 is the one that is full, req/s
        # hides part of the difference between proxies.
        bound = [r["label"] for r in bench.rows if r.get("kind") and r["workers"] == 1 and r.get("ka")
                 and r["ka"]["busy_per_cpu_s"][1] > 0.95 * r["ka"]["elapsed"]
                 and r["ka"]["proxy_cpu_s"] < 0.9 * r["ka"]["elapsed"]]
        if bound:
            bench.notes.append(f"keep-alive: CPU {LOAD_CPU} (wrk + backend) was full while the proxy used "
                               f"under 90% of CPU {PROXY_CPU} for: {', '.join(bound)}; there req/s is "
                               f"bounded by the load generator and CPU µs/req tells the proxies apart")

        # Direct should be the fastest; a proxy clearly ahead of it means
        # the setup, not the proxy, decided the figure.
        direct = bench.rows[0]
        for r in bench.rows[1:]:
            for key in ("ka", "nc"):
                if r.get(key) and direct.get(key) and r[key]["rps"] > 1.05 * direct[key]["rps"]:
                    what = "keep-alive" if key == "ka" else "new conn"
                    bench.notes.append(f"{r['label']}: {what} req/s is above direct "
                                       f"({r[key]['rps']:.0f} vs {direct[key]['rps']:.0f}); direct is "
                                       f"bound by CPU {LOAD_CPU} alone, so this shows the setup, "
                                       f"not a proxy faster than no proxy")

        # Last, so that it leaves the other rows as they were.
        bench.policy_scale()
        bench.dns_section()

        table = render(bench, header)
        notes = ""
        if bench.notes:
            notes = "\n\nNotes:\n" + "\n".join(f"- {n}" for n in bench.notes)
        policy = render_policy(bench.policy)
        dns = render_dns(bench.dns)
        with open(os.path.join(OUT, "results.md"), "w") as f:
            f.write(table + notes + "\n\n" + policy + "\n\n" + dns + "\n")
        with open(os.path.join(OUT, "results.json"), "w") as f:
            json.dump({"header": header, "rows": bench.rows, "notes": bench.notes,
                       "policy": bench.policy, "dns": bench.dns}, f, indent=1)
        write_policy(header, bench.policy, header + "\n\n" + policy)
        write_dns(header, bench.dns, header + "\n\n" + dns)
        print(table + notes + "\n\n" + policy + "\n\n" + dns)
        log(f"done in {time.time() - t_start:.0f}s; written to {os.path.relpath(OUT, ROOT)}/results.md")
        return 1 if (any(r.get("error") for r in bench.rows) or policy_failed(bench.policy)
                     or dns_failed(bench.dns)) else 0
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'SIGINT'}); cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        procs.stop_all()
        if os.environ.get("BENCH_KEEP") == "1":
            try:
                os.unlink(os.path.join(d, "bulk.bin"))
            except OSError:
                pass
            log(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
