"""A real DNS server for integration tests: dnsmasq on 127.0.0.1 at a high port.

DnsServer runs Debian's dnsmasq (dnsmasq-base) in the foreground, answering only
from a hosts file that the test rewrites with set()/remove(). Names under the
test domain (gk.test by default) that are not in the file get NXDOMAIN; every
other name is REFUSED, so nothing is ever forwarded off the machine.

Answers carry TTL `ttl` (--local-ttl). The server can be stopped and started
again on the same port (the DNS server dies and comes back: queries are refused
by the kernel meanwhile), or paused with SIGSTOP (queries are accepted by the
kernel but never answered, so clients time out).

dnsmasq drops root for "nobody" and rereads the hosts file on SIGHUP as that
user, so the file and its folder are world-readable and live outside pytest's
0700 tmp tree. set() does not return until dnsmasq itself answers with the new
addresses, so a test never races the reload.

query(name, qtype) is a tiny stub-resolver used to check what dnsmasq serves.
"""

import ipaddress
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

DNSMASQ = os.environ.get("DNSMASQ_BIN", "/usr/sbin/dnsmasq")

QTYPE_A = 1
QTYPE_AAAA = 28
RCODE_NOERROR = 0
RCODE_NXDOMAIN = 3
RCODE_REFUSED = 5


def _free_udp_tcp_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host (best effort: the caller retries)."""
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind((host, 0))
            port = t.getsockname()[1]
            try:
                u.bind((host, port))
            except OSError:
                continue
            if port >= 1024:
                return port
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free UDP+TCP port on %s" % host)


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _skip_name(msg, off):
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def query(name, qtype=QTYPE_A, server=("127.0.0.1", 53), timeout=1.0):
    """One UDP query. Returns (rcode, [addresses as strings], ttls); raises
    socket.timeout / OSError when the server does not answer."""
    tid = random.randrange(65536)
    pkt = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0)
    pkt += _encode_name(name) + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.connect(server)
        s.send(pkt)
        while True:
            msg = s.recv(4096)
            if len(msg) >= 12 and struct.unpack(">H", msg[:2])[0] == tid:
                break
    finally:
        s.close()
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        off = _skip_name(msg, off) + 4
    addrs, ttls = [], []
    for _ in range(an):
        off = _skip_name(msg, off)
        rtype, _cls, ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        off += rdlen
        if rtype == QTYPE_A and rdlen == 4:
            addrs.append(socket.inet_ntop(socket.AF_INET, rdata))
            ttls.append(ttl)
        elif rtype == QTYPE_AAAA and rdlen == 16:
            addrs.append(socket.inet_ntop(socket.AF_INET6, rdata))
            ttls.append(ttl)
    return flags & 0xF, addrs, ttls


class DnsServer:
    """dnsmasq answering from a rewritable hosts file on 127.0.0.1:port."""

    def __init__(self, domain="gk.test", ttl=1, port=None, start=True):
        self.domain = domain
        self.ttl = ttl
        self.port = port or _free_udp_tcp_port()
        self.dir = tempfile.mkdtemp(prefix="gk-dns-")
        # dnsmasq rereads the file as "nobody": the folder must be traversable.
        os.chmod(self.dir, 0o755)
        self.hosts_path = os.path.join(self.dir, "hosts")
        self.pid_path = os.path.join(self.dir, "dnsmasq.pid")
        self.records = {}  # name -> [addr, ...]
        self.proc = None
        self.paused = False
        self._log = []
        self._log_lock = threading.Lock()
        self._write_hosts()
        if start:
            self.start()

    # -- properties ---------------------------------------------------------

    @property
    def nameserver(self):
        return "127.0.0.1:%d" % self.port

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def logs(self):
        with self._log_lock:
            return "".join(self._log)

    def logged(self, text, timeout=10):
        """True once dnsmasq's log holds text. Its lines arrive through a
        reader thread, so a line may trail the answer gatekeeper already has."""
        deadline = time.monotonic() + timeout
        while text not in self.logs():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # -- hosts file ---------------------------------------------------------

    def _write_hosts(self):
        lines = []
        for name, addrs in self.records.items():
            for a in addrs:
                ipaddress.ip_address(a)  # only literal addresses belong here
                lines.append("%s %s\n" % (a, name))
        tmp = self.hosts_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(lines))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.hosts_path)

    def set(self, name, addrs, timeout=10.0):
        """Make `name` resolve to exactly `addrs` (may mix v4 and v6; [] removes it).
        Returns once dnsmasq serves the new answer."""
        name = name.rstrip(".").lower()
        if addrs:
            self.records[name] = list(addrs)
        else:
            self.records.pop(name, None)
        self._write_hosts()
        if self.running and not self.paused:
            self.proc.send_signal(signal.SIGHUP)
            self._wait_serving(name, timeout)

    def remove(self, name, timeout=10.0):
        self.set(name, [], timeout)

    def _expected(self, name, qtype):
        want = []
        for a in self.records.get(name, []):
            v = ipaddress.ip_address(a).version
            if (v == 4) == (qtype == QTYPE_A):
                want.append(str(ipaddress.ip_address(a)))
        return sorted(want)

    def _wait_serving(self, name, timeout):
        """Poll dnsmasq until its A and AAAA answers for name match self.records."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            ok = True
            for qtype in (QTYPE_A, QTYPE_AAAA):
                try:
                    rcode, addrs, _ = query(name, qtype, ("127.0.0.1", self.port), 0.5)
                except OSError as e:
                    ok, last = False, e
                    break
                got = sorted(str(ipaddress.ip_address(a)) for a in addrs)
                want = self._expected(name, qtype)
                if name in self.records:
                    good = rcode == RCODE_NOERROR and got == want
                else:
                    good = rcode == RCODE_NXDOMAIN
                if not good:
                    ok, last = False, (qtype, rcode, got, want)
                    break
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("dnsmasq does not serve %s as %r (last: %r)\n%s"
                                   % (name, self.records.get(name), last, self.logs()))
            time.sleep(0.05)

    # -- process control ----------------------------------------------------

    def _argv(self):
        return [
            DNSMASQ,
            "--no-daemon",
            "--keep-in-foreground",
            "--port=%d" % self.port,
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--no-negcache",
            "--addn-hosts=%s" % self.hosts_path,
            "--local=/%s/" % self.domain,
            "--local-ttl=%d" % self.ttl,
            "--log-queries=extra",
            "--log-facility=-",
            "--pid-file=%s" % self.pid_path,
        ]

    def _reader(self, stream):
        for line in iter(stream.readline, ""):
            with self._log_lock:
                self._log.append(line)
        stream.close()

    def start(self, timeout=10.0):
        """Start dnsmasq on self.port (the same port after a stop()).
        Returns once it answers queries."""
        if self.running:
            return
        self.paused = False
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(
                self._argv(), cwd=self.dir, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            threading.Thread(target=self._reader, args=(self.proc.stdout,),
                             daemon=True).start()
            while self.proc.poll() is None:
                try:
                    query("ready." + self.domain, QTYPE_A, ("127.0.0.1", self.port), 0.2)
                    return
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self._kill()
            # The port may have been grabbed meanwhile (rare): retry, same port.
            if time.monotonic() > deadline:
                raise RuntimeError("dnsmasq did not start on port %d:\n%s"
                                   % (self.port, self.logs()))
            time.sleep(0.2)

    def _kill(self):
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            if self.paused:
                p.send_signal(signal.SIGCONT)
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.paused = False

    def stop(self):
        """The DNS server dies: queries to the port are refused until start()."""
        self._kill()

    def pause(self):
        """The DNS server hangs: queries reach the socket but get no answer."""
        if self.running and not self.paused:
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self):
        """Undo pause(); a hosts file changed meanwhile is reread."""
        if self.running and self.paused:
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False
            self.proc.send_signal(signal.SIGHUP)
            for name in list(self.records):
                self._wait_serving(name, 10.0)

    def close(self):
        self._kill()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
