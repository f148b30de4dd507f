"""Run an egress attack scenario inside a private network namespace.

The attack tests need the addresses an attacker aims at (10.0.0.5,
169.254.169.254, 192.168.1.1, NAT64 and mapped forms, ...) to exist, with a
canary server on each, so that a bypass of the address guard shows up as a
canary hit. They must exist nowhere but in a namespace the test made: this
module runs itself under `unshare -n` (a fresh network namespace holding
only a loopback interface, so no packet can leave the machine), and there

  1. brings lo up and adds every scenario address to it,
  2. starts a canary on every address and port: it counts accepted
     connections, records the first bytes it got, greets with
     "CANARY <addr> <port>\\n" and closes,
  3. starts dnsmasq (dnsserver.DnsServer) answering the scenario's names,
  4. starts gatekeeper with the scenario's config (@NAMESERVER@ replaced),
  5. runs each probe in order: connect to a listener, send the probe's
     bytes, read until gatekeeper closes; then takes the probe's access
     line and the canary hits it caused,
  6. prints one JSON object on stdout and tears everything down.

Optional scenario keys:

  "files": {"/etc/resolv.conf": text, "/etc/hosts": text}: the driver also
     gets a private mount namespace (`unshare -n -m`, propagation private)
     and bind-mounts these contents over those two files, for itself and
     its children only (gatekeeper's c-ares reads its search list, ndots and
     lookup order from them); nothing outside the namespace sees them;
  "http_ports": ports whose canaries answer like HTTP/1.1 servers instead
     of greeting: each complete request head (and its Content-Length body)
     gets "200 OK" with the body "CANARY <addr> <port> #<n>\n", the
     connection is kept alive unless the request says Connection: close,
     and the canary records every byte it got (the first 64 KiB) and how
     many requests it answered;
  "canary_wait": how long a greeting canary waits for more bytes before it
     records what it got and closes (0.5 s);
  "seen": true: each probe's result also says what every canary connection
     it caused received (out["seen"], key -> list of records), after
     waiting (boundedly) for those connections to end;

and per probe "steps": [{"send": b64, "responses": N, "pause": S}, ...]
instead of "send": the bytes are sent step by step on one connection; after
a step the probe reads until the reply holds N complete HTTP responses (or
the connection closes, or 5 s pass), then pauses S seconds; the reply
length after each step is in out["marks"]. Every probe's result also has
"elapsed" (seconds, for finding slow probes; never asserted on).

From a test:

    result = netns.run(scenario)       # dict, see main() for the shape

`available()` says whether `unshare -n` works here (root or a user
namespace with CAP_NET_ADMIN is needed).
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gkharness as h  # noqa: E402
from dnsserver import DnsServer  # noqa: E402


def available():
    """(True, "") when a network namespace can be made and configured here."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return False, "%s not found" % tool
    try:
        r = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "unshare -n failed: %s" % e
    if r.returncode != 0:
        return False, "unshare -n failed: %s" % r.stderr.strip()
    return True, ""


def mounts_available():
    """(True, "") when a private mount namespace can also be made here and a
    file bind-mounted over /etc/resolv.conf inside it."""
    ok, why = available()
    if not ok:
        return ok, why
    if shutil.which("mount") is None:
        return False, "mount not found"
    try:
        r = subprocess.run(["unshare", "-n", "-m", "--propagation", "private", "sh", "-c",
                            "mount --bind /dev/null /etc/resolv.conf && test ! -s /etc/resolv.conf"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "unshare -n -m failed: %s" % e
    if r.returncode != 0:
        return False, "no private mount namespace: %s" % r.stderr.strip()
    return True, ""


def run(scenario, timeout=150):
    """Run scenario (a JSON-able dict) in a fresh network namespace; returns
    the driver's result dict.  Raises AssertionError when the driver fails."""
    argv = ["unshare", "-n"]
    if scenario.get("files"):
        argv += ["-m", "--propagation", "private"]
    r = subprocess.run(argv + [sys.executable, os.path.abspath(__file__)],
                       input=json.dumps(scenario), capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ))
    try:
        result = json.loads(r.stdout)
    except ValueError:
        raise AssertionError("netns driver exited %d without a result:\nstdout:\n%s\nstderr:\n%s"
                             % (r.returncode, r.stdout[-4000:], r.stderr[-4000:]))
    if result.get("error"):
        raise AssertionError("netns driver failed: %s\ngatekeeper log tail:\n%s"
                             % (result["error"], "\n".join(result.get("log", [])[-60:])))
    return result


def b64(data):
    return base64.b64encode(data).decode()


def yaml_value(v):
    """A YAML value: lists as flow sequences of quoted strings."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(json.dumps(str(x)) for x in v) + "]"
    return json.dumps(str(v))


def listener(name, mode, listen="127.0.0.1:0", **keys):
    """One listeners[] entry of a gatekeeper config."""
    lines = ["  - name: %s" % name, "    listen: %s" % json.dumps(listen), "    mode: %s" % mode]
    for k, v in keys.items():
        lines.append("    %s: %s" % (k, yaml_value(v)))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Inside the namespace

def _ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True, timeout=20)


def _setup_lo(addrs):
    _ip("link", "set", "lo", "up")
    for a in addrs:
        if a in ("127.0.0.1", "::1"):
            continue
        if ":" in a:
            _ip("-6", "addr", "add", a + "/128", "dev", "lo", "nodad")
        else:
            _ip("addr", "add", a + "/32", "dev", "lo")


class Canary(h.HandlerServer):
    """Counts connections (self.accepted), greets, records what arrived
    (reading until EOF, or until nothing came for `wait` seconds)."""

    def __init__(self, host, port, wait=0.5):
        self.key = h.join_hostport(host, port)
        self.wait = wait
        super().__init__(self._serve, host=host, port=port)

    def _serve(self, conn, server):
        try:
            conn.sendall(("CANARY %s %d\n" % (self.host, self.port)).encode())
            conn.settimeout(self.wait)
            data = b""
            try:
                while len(data) < 4096:
                    b = conn.recv(4096)
                    if not b:
                        break
                    data += b
            except OSError:
                pass
            self.record({"first": b64(data[:4096])})
        except OSError as e:
            self.record({"first": "", "error": str(e)})


class HttpCanary(h.HandlerServer):
    """A canary that answers like an HTTP/1.1 server (see "http_ports"):
    counts connections, answers every request, records what arrived. Its
    record is made when the connection is accepted and filled as bytes
    come, so a probe can read it once "done" is set."""

    LIMIT = 65536
    IDLE = 3.0     # an idle connection is closed after this
    LIFE = 15.0    # and any connection after this

    def __init__(self, host, port):
        self.key = h.join_hostport(host, port)
        super().__init__(self._serve, host=host, port=port)

    def _serve(self, conn, server):
        rec = {"first": "", "requests": 0, "done": False}
        self.record(rec)
        data = b""
        pending = b""
        end = time.monotonic() + self.LIFE
        try:
            while time.monotonic() < end:
                conn.settimeout(self.IDLE)
                try:
                    b = conn.recv(65536)
                except socket.timeout:
                    break
                if not b:
                    break
                if len(data) < self.LIMIT:
                    data += b[:self.LIMIT - len(data)]
                    rec["first"] = b64(data)
                pending += b
                close = False
                while True:
                    got = _one_request(pending)
                    if got is None:
                        break
                    n, wants_close = got
                    pending = pending[n:]
                    rec["requests"] += 1
                    body = ("CANARY %s %d #%d\n" % (self.host, self.port, rec["requests"])).encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                 b"Content-Length: %d\r\n%s\r\n" % (
                                     len(body), b"Connection: close\r\n" if wants_close else b"")
                                 + body)
                    if wants_close:
                        close = True
                        break
                if close:
                    break
        except OSError as e:
            rec["error"] = str(e)
        finally:
            rec["done"] = True


def _header_values(head, name):
    out = []
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            out.append(v.strip())
    return out


def _framed(buf, pos=0):
    """(head, end) of the message starting at buf[pos]: end is where its
    Content-Length body ends (the head's end without one), or None when the
    head is not complete or its Content-Length is not a number."""
    end = buf.find(b"\r\n\r\n", pos)
    if end < 0:
        return None
    head = buf[pos:end]
    n = end + 4
    cl = _header_values(head, b"content-length")
    if cl:
        try:
            n += int(cl[0])
        except ValueError:
            return head, None
    return head, n


def _one_request(buf):
    """(length, wants_close) of the complete request at the start of buf, or
    None when it is not complete yet (a bad Content-Length counts as none)."""
    framed = _framed(buf)
    if framed is None:
        return None
    head, n = framed
    if n is None:
        n = buf.find(b"\r\n\r\n") + 4
    if len(buf) < n:
        return None
    conn = b",".join(_header_values(head, b"connection")).lower()
    close = b"close" in conn or head.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0")
    return n, close


def count_responses(data):
    """How many complete HTTP responses data starts with (a response with
    neither Content-Length nor chunked framing counts as complete at the end
    of its head, like "200 Connection established")."""
    count, pos = 0, 0
    for _ in range(100):
        if not data.startswith(b"HTTP/1.", pos):
            break
        framed = _framed(data, pos)
        if framed is None or framed[1] is None or len(data) < framed[1]:
            break
        count += 1
        pos = framed[1]
    return count


def _bind_files(files, tmp):
    """Bind-mount the given contents over /etc/resolv.conf and /etc/hosts
    (only those; the mount namespace is the driver's own)."""
    for i, (path, text) in enumerate(sorted(files.items())):
        if path not in ("/etc/resolv.conf", "/etc/hosts"):
            raise ValueError("files: %s may not be replaced" % path)
        src = os.path.join(tmp, "file-%d" % i)
        with open(src, "w") as f:
            f.write(text)
        os.chmod(src, 0o644)
        subprocess.run(["mount", "--bind", src, path], check=True, capture_output=True, timeout=20)
        with open(path) as f:
            if f.read() != text:
                raise RuntimeError("bind mount over %s did not take" % path)


def _access_after(g, local, mark, timeout):
    """The access line of the connection from `local`, looking only at log
    lines written after `mark` (ephemeral client ports get reused)."""
    client = h.join_hostport(*local)
    deadline = time.monotonic() + timeout
    while True:
        for line in g.lines()[mark:]:
            d = h.parse_line(line)
            if d.get("msg") == "access" and d.get("client") == client:
                return d
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def _counts(canaries):
    return {c.key: c.accepted for c in canaries}


def _probe(g, canaries, p, want_seen=False):
    """Run one probe; with p["retry_on"] (reasons), repeat it while the
    access line shows one of them and no canary was hit (a pinned upstream
    not resolved yet), for up to 10 s."""
    deadline = time.monotonic() + 10
    while True:
        out = _probe_once(g, canaries, p, want_seen)
        acc = out["access"] or {}
        if (acc.get("reason") in p.get("retry_on", ()) and not out["hits"]
                and time.monotonic() < deadline):
            time.sleep(0.2)
            continue
        return out


def _read_steps(s, steps, chunks, out):
    """Send steps one by one (see the module doc); returns "eof"/"reset"
    when gatekeeper closed meanwhile, else None."""
    out["marks"] = []
    for st in steps:
        try:
            s.sendall(base64.b64decode(st["send"]))
        except (BrokenPipeError, ConnectionResetError):
            pass
        want = st.get("responses")
        deadline = time.monotonic() + 5
        while want and count_responses(b"".join(chunks)) < want and time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                out["marks"].append(len(b"".join(chunks)))
                return "reset"
            if not b:
                out["marks"].append(len(b"".join(chunks)))
                return "eof"
            chunks.append(b)
        out["marks"].append(len(b"".join(chunks)))
        if st.get("pause"):
            time.sleep(st["pause"])
    return None


def _seen_after(canaries, before_results):
    """The records of the canary connections made since before_results (one
    length per canary), once they ended (waiting up to 3 s)."""
    deadline = time.monotonic() + 3
    while True:
        pending = False
        for c in canaries:
            with c._lock:
                accepted, results = c.accepted, list(c.results)
            if len(results) < accepted or any(not r.get("done", True) for r in results):
                pending = True
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    seen = {}
    for c, n in zip(canaries, before_results):
        with c._lock:
            new = [dict(r) for r in c.results[n:]]
        if new:
            seen[c.key] = new
    return seen


def _probe_once(g, canaries, p, want_seen=False):
    started = time.monotonic()
    before = _counts(canaries)
    before_results = [len(c.results) for c in canaries]
    addr = g.addr(p["listener"])
    mark = g.mark()
    out = {"id": p["id"], "reply": "", "how": None, "access": None, "hits": {}}
    s = h.connect(addr, timeout=10)
    local = s.getsockname()[:2]
    try:
        chunks = []
        how = None
        if "steps" in p:
            how = _read_steps(s, p["steps"], chunks, out)
        else:
            data = base64.b64decode(p["send"])
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
        deadline = time.monotonic() + p.get("timeout", 10)
        if how is None:
            how = "open"
        while how == "open" and time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                how = "reset"
                break
            if not b:
                how = "eof"
                break
            chunks.append(b)
        out["reply"] = b64(b"".join(chunks))
        out["how"] = how
    finally:
        s.close()
    out["access"] = _access_after(g, local, mark, timeout=10)
    # a canary counts in its accept thread: let late accepts land
    time.sleep(0.05)
    after = _counts(canaries)
    out["hits"] = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    if want_seen:
        out["seen"] = _seen_after(canaries, before_results)
    out["elapsed"] = round(time.monotonic() - started, 3)
    return out


def main():
    scenario = json.load(sys.stdin)
    result = {"error": None, "probes": [], "canaries": {}, "log": [], "alive": None,
              "sanitizer": None, "dns_log": ""}
    canaries, dns, g = [], None, None
    tmp = tempfile.mkdtemp(prefix="gk-netns-")
    try:
        if scenario.get("files"):
            _bind_files(scenario["files"], tmp)
        _setup_lo(scenario["addrs"])
        http_ports = set(scenario.get("http_ports", ()))
        wait = scenario.get("canary_wait", 0.5)
        for a in scenario["addrs"]:
            for port in scenario["ports"]:
                canaries.append(HttpCanary(a, port) if port in http_ports else Canary(a, port, wait))
        dns = DnsServer(ttl=scenario.get("ttl", 60))
        for name, addrs in scenario["dns"].items():
            dns.set(name, addrs)
        text = scenario["config"].replace("@NAMESERVER@", dns.nameserver)
        g = h.start_gatekeeper(text, tmp)
        for p in scenario["probes"]:
            result["probes"].append(_probe(g, canaries, p, bool(scenario.get("seen"))))
        result["alive"] = g.alive()
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        if g is not None:
            g.stop()
            result["log"] = g.lines()
            try:
                g.check_sanitizers()
            except AssertionError as e:
                result["sanitizer"] = str(e)[:4000]
        for c in canaries:
            c._closing = True  # every accept loop stops at once, not one after another
        for c in canaries:
            c.close()
            result["canaries"][c.key] = {"accepted": c.accepted, "results": c.results}
        if dns is not None:
            result["dns_log"] = dns.logs()[-20000:]
            dns.close()
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump(result, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
