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


def run(scenario, timeout=150):
    """Run scenario (a JSON-able dict) in a fresh network namespace; returns
    the driver's result dict.  Raises AssertionError when the driver fails."""
    r = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__)],
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
    """Counts connections (self.accepted), greets, records what arrived."""

    def __init__(self, host, port):
        self.key = h.join_hostport(host, port)
        super().__init__(self._serve, host=host, port=port)

    def _serve(self, conn, server):
        try:
            conn.sendall(("CANARY %s %d\n" % (self.host, self.port)).encode())
            conn.settimeout(0.5)
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


def _probe(g, canaries, p):
    """Run one probe; with p["retry_on"] (reasons), repeat it while the
    access line shows one of them and no canary was hit (a pinned upstream
    not resolved yet), for up to 10 s."""
    deadline = time.monotonic() + 10
    while True:
        out = _probe_once(g, canaries, p)
        acc = out["access"] or {}
        if (acc.get("reason") in p.get("retry_on", ()) and not out["hits"]
                and time.monotonic() < deadline):
            time.sleep(0.2)
            continue
        return out


def _probe_once(g, canaries, p):
    before = _counts(canaries)
    addr = g.addr(p["listener"])
    mark = g.mark()
    out = {"id": p["id"], "reply": "", "how": None, "access": None, "hits": {}}
    s = h.connect(addr, timeout=10)
    local = s.getsockname()[:2]
    try:
        data = base64.b64decode(p["send"])
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        deadline = time.monotonic() + p.get("timeout", 10)
        how = "open"
        while time.monotonic() < deadline:
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
    return out


def main():
    scenario = json.load(sys.stdin)
    result = {"error": None, "probes": [], "canaries": {}, "log": [], "alive": None,
              "sanitizer": None, "dns_log": ""}
    canaries, dns, g = [], None, None
    tmp = tempfile.mkdtemp(prefix="gk-netns-")
    try:
        _setup_lo(scenario["addrs"])
        for a in scenario["addrs"]:
            for port in scenario["ports"]:
                canaries.append(Canary(a, port))
        dns = DnsServer(ttl=scenario.get("ttl", 60))
        for name, addrs in scenario["dns"].items():
            dns.set(name, addrs)
        text = scenario["config"].replace("@NAMESERVER@", dns.nameserver)
        g = h.start_gatekeeper(text, tmp)
        for p in scenario["probes"]:
            result["probes"].append(_probe(g, canaries, p))
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
            result["canaries"][c.key] = {"accepted": c.accepted, "results": c.results}
            c.close()
        if dns is not None:
            result["dns_log"] = dns.logs()[-20000:]
            dns.close()
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump(result, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
