"""TLS, HTTP and PROXY-protocol helpers for the sniffing/routing tests.

Everything here talks only to 127.0.0.1 / ::1 and uses real peers:

  make_cert(dir, cn)          throwaway self-signed certificate (openssl CLI)
  SServer(cert)               `openssl s_server -www` on 127.0.0.1:0 (serves
                              one connection at a time)
  TlsBackend(cert, tag)       threaded Python TLS server: records the SNI it
                              saw, greets "tag=<tag> sni=<sni>\\n", then echoes
  TlsClient(addr, name)       a TLS client driven through memory BIOs, so the
                              bytes of the first flight (the ClientHello) can
                              be written in any pattern: trickled, re-split
                              into several records, ...
  client_hello(name)          the ClientHello record(s) a real client sends
  s_client(addr, name)        `openssl s_client`, returns its output
  curl_https(name, port)      `curl --resolve name:port:127.0.0.1 -k`
  http_exchange(...)          one raw HTTP/1.x request, the parsed response
  proxy_v1(...)/proxy_v2(...) PROXY protocol headers, built byte by byte
  ProxyRecorder               a backend that parses the PROXY header it got

Waits are upper bounds only; nothing asserts a duration.
"""

import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import gkharness as h

# The one alert gatekeeper writes when it refuses a TLS client by name:
# record type alert (21), TLS 1.2, length 2, level fatal (2),
# description unrecognized_name (112).
ALERT_UNRECOGNIZED_NAME = bytes.fromhex("15030300020270")


# --------------------------------------------------------------------------
# Certificates

class Cert:
    """A self-signed certificate and its key, as files and as DER."""

    def __init__(self, cn, cert, key):
        self.cn = cn
        self.cert = cert
        self.key = key
        with open(cert) as f:
            self.pem_text = f.read()
        self.der = ssl.PEM_cert_to_DER_cert(self.pem_text)
        # cert + key in one file, as haproxy's `crt` wants it
        self.combined = cert + ".combined.pem"
        with open(self.combined, "w") as out, open(key) as k:
            out.write(self.pem_text)
            out.write(k.read())


def make_cert(directory, cn, sans=None):
    """Generate an EC P-256 self-signed certificate for CN=cn (with
    subjectAltName DNS:cn plus sans) into directory; returns a Cert."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, re.sub(r"[^A-Za-z0-9.-]", "_", cn))
    names = [cn] + list(sans or [])
    san = ",".join("DNS:" + n for n in names)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", base + ".key", "-out", base + ".crt", "-days", "2",
         "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san],
        check=True, capture_output=True, timeout=30)
    return Cert(cn, base + ".crt", base + ".key")


# --------------------------------------------------------------------------
# TLS servers

class SServer:
    """`openssl s_server -www` on host:0.  It serves connections one after
    the other and answers `GET /` with an HTML status page."""

    def __init__(self, cert, host="127.0.0.1", timeout=10):
        self.cert = cert
        self.host = host
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", h.join_hostport(host, 0), "-cert", cert.cert,
             "-key", cert.key, "-www", "-naccept", "1000"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._out = []
        deadline = time.monotonic() + timeout
        self.port = None
        while time.monotonic() < deadline:
            raw = self.proc.stdout.readline()
            if not raw:
                break
            line = raw.decode("utf-8", "replace").strip()
            self._out.append(line)
            m = re.match(r"ACCEPT\s+(\S+)$", line)
            if m:
                self.port = h.split_hostport(m.group(1))[1]
                break
        if self.port is None:
            self.close()
            raise AssertionError("s_server did not start: %r" % self._out)
        self.addr = h.join_hostport(host, self.port)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self._out.append(raw.decode("utf-8", "replace").rstrip())

    def output(self):
        return "\n".join(self._out)

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


class TlsBackend(h.HandlerServer):
    """A threaded TLS server with certificate `cert`.  For each connection it
    records {"sni": name or None, "tag": tag} (the name comes from the
    ClientHello it received, so it proves the hello arrived unchanged), then
    sends b"tag=<tag> sni=<sni>\\n" and echoes until EOF."""

    def __init__(self, cert, tag, host="127.0.0.1", port=0):
        self.tag = tag
        self.cert_obj = cert
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert.cert, cert.key)
        self._sni = {}
        self._sni_lock = threading.Lock()

        def on_sni(sslobj, name, ctx):
            with self._sni_lock:
                self._sni[id(sslobj)] = name
            return None

        self.ctx.sni_callback = on_sni
        super().__init__(self._serve, host=host, port=port)

    def _serve(self, conn, server):
        conn.settimeout(30)
        tls = self.ctx.wrap_socket(conn, server_side=True)
        with self._sni_lock:
            sni = self._sni.pop(id(tls), None)
        self.record({"sni": sni, "tag": self.tag})
        tls.sendall(("tag=%s sni=%s\n" % (self.tag, sni or "-")).encode())
        while True:
            b = tls.recv(65536)
            if not b:
                break
            tls.sendall(b)
        try:
            tls.unwrap()
        except (OSError, ValueError):
            pass


# --------------------------------------------------------------------------
# TLS client

def client_context(alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def client_hello(server_hostname, alpn=None):
    """The first flight a real (Python/OpenSSL) client sends for this name
    (None: no server_name extension): one or more TLS records."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(alpn).wrap_bio(inc, out, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def raw_client_hello(sni, extensions=b""):
    """A minimal well-formed TLS 1.2 ClientHello record built by hand, with a
    server_name extension carrying `sni` as raw bytes (no IDNA checks, so
    any name can be sent) or none when sni is None."""
    exts = b""
    if sni is not None:
        name = sni.encode("latin-1") if isinstance(sni, str) else sni
        entry = b"\x00" + struct.pack(">H", len(name)) + name
        lst = struct.pack(">H", len(entry)) + entry
        exts += struct.pack(">HH", 0, len(lst)) + lst
    exts += extensions
    body = (b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x00\x04\x13\x01\xc0\x2f" + b"\x01\x00"
            + struct.pack(">H", len(exts)) + exts)
    return record(22, b"\x01" + len(body).to_bytes(3, "big") + body)


def split_records(data):
    """Split a byte string of TLS records into a list of (type, version, payload)."""
    recs = []
    i = 0
    while i < len(data):
        ctype, ver, n = struct.unpack(">BHH", data[i:i + 5])
        recs.append((ctype, ver, data[i + 5:i + 5 + n]))
        i += 5 + n
    return recs


def record(ctype, payload, version=0x0301):
    return struct.pack(">BHH", ctype, version, len(payload)) + payload


def refragment(hello, sizes):
    """Re-cut the handshake bytes of a ClientHello flight into several
    handshake records of the given payload sizes (the last one takes the
    rest).  The handshake transcript is unchanged, so a real server still
    completes the handshake."""
    recs = split_records(hello)
    assert all(r[0] == 22 for r in recs)
    body = b"".join(r[2] for r in recs)
    ver = recs[0][1]
    out = b""
    i = 0
    for n in sizes:
        out += record(22, body[i:i + n], ver)
        i += n
    if i < len(body):
        out += record(22, body[i:], ver)
    return out


def trickle_sender(min_chunk=1, max_chunk=5, pause=0.004, seed=5):
    """A writer that sends data in tiny TCP segments (TCP_NODELAY, a short
    pause between writes)."""
    import random

    rnd = random.Random(seed)

    def send(sock, data):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        i = 0
        while i < len(data):
            n = rnd.randint(min_chunk, max_chunk)
            sock.sendall(data[i:i + n])
            i += n
            time.sleep(pause)

    return send


class TlsClient:
    """A TLS client over a plain socket, driven through memory BIOs.

    first_flight(sock, data) writes the client's first flight (the
    ClientHello); transform(data) may rewrite it first (e.g. refragment).
    After the handshake: .peer_der (the server certificate, DER), .send(),
    .recv_line(), .recv_exact(), .close()."""

    def __init__(self, addr, server_hostname, first_flight=None, transform=None, timeout=10,
                 alpn=None):
        self.sock = h.connect(addr, timeout=timeout)
        self.sock.settimeout(timeout)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_context(alpn).wrap_bio(self.inc, self.out,
                                                 server_hostname=server_hostname)
        self._buf = b""
        first = True
        try:
            while True:
                try:
                    self.obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                data = self.out.read()
                if data:
                    if first:
                        if transform:
                            data = transform(data)
                        (first_flight or (lambda s, d: s.sendall(d)))(self.sock, data)
                        first = False
                    else:
                        self.sock.sendall(data)
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("EOF during the TLS handshake")
                self.inc.write(chunk)
            self._flush()
        except BaseException:
            self.sock.close()
            raise
        self.peer_der = self.obj.getpeercert(binary_form=True)

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def send(self, data):
        self.obj.write(data)
        self._flush()

    def _fill(self):
        while True:
            try:
                b = self.obj.read(65536)
                self._flush()
                if not b:
                    raise ConnectionError("TLS EOF")
                self._buf += b
                return
            except ssl.SSLWantReadError:
                self._flush()
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("TCP EOF inside the TLS stream")
                self.inc.write(chunk)

    def recv_line(self):
        while b"\n" not in self._buf:
            self._fill()
        line, _, self._buf = self._buf.partition(b"\n")
        return line + b"\n"

    def recv_exact(self, n):
        while len(self._buf) < n:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def recv_until_eof(self):
        """Everything the server sends until it closes (TLS close_notify or
        a bare TCP close)."""
        while True:
            try:
                self._fill()
            except (ConnectionError, ssl.SSLError):
                break
        data, self._buf = self._buf, b""
        return data

    def roundtrip(self, data):
        self.send(data)
        return self.recv_exact(len(data))

    def close(self):
        try:
            self.obj.unwrap()
        except (ssl.SSLError, ValueError, OSError):
            pass
        try:
            self._flush()
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def s_client(addr, servername, timeout=20):
    """Run `openssl s_client -connect addr -servername NAME` with stdin at EOF;
    returns its stdout+stderr text."""
    cmd = ["openssl", "s_client", "-connect", addr if isinstance(addr, str) else h.join_hostport(*addr)]
    if servername is not None:
        cmd += ["-servername", servername]
    else:
        cmd += ["-noservername"]
    r = subprocess.run(cmd, input=b"", capture_output=True, timeout=timeout)
    return (r.stdout + r.stderr).decode("utf-8", "replace")


def s_client_subject_cn(text):
    m = re.search(r"^subject=.*?CN\s*=\s*([^,/\n]+)", text, re.M)
    return m.group(1).strip() if m else None


def curl_https(name, port, path="/", timeout=20):
    """curl -v -k https://name:port/path with name resolved to 127.0.0.1 by
    --resolve; returns (exit status, stdout bytes, stderr text: the -v trace,
    which shows the server certificate's subject)."""
    r = subprocess.run(
        ["curl", "-sS", "-v", "-k", "--max-time", str(timeout), "--noproxy", "*",
         "--resolve", "%s:%d:127.0.0.1" % (name, port), "https://%s:%d%s" % (name, port, path)],
        capture_output=True, timeout=timeout + 10)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# Raw reading

def read_until_close(sock, timeout=10):
    """Read until EOF or reset; returns (data, how) with how 'eof' or 'reset'.
    Raises AssertionError when the connection is still open at the timeout."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("connection still open after %ss (read %r)"
                                 % (timeout, b"".join(chunks)[:200]))
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not b:
            return b"".join(chunks), "eof"
        chunks.append(b)


def send_ignoring_reset(sock, data):
    """sendall that tolerates the peer closing first (it may refuse early)."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


# --------------------------------------------------------------------------
# HTTP

class HttpResponse:
    def __init__(self, status, reason, headers, body, raw):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name lower-cased, value)
        self.body = body
        self.raw = raw

    def header(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def field(self, key):
        """A `Key: value` line of a whoami body (e.g. field("Name"))."""
        m = re.search(rb"^" + re.escape(key.encode()) + rb": (.*)$", self.body, re.M)
        return m.group(1).decode() if m else None

    def __repr__(self):
        return "<HttpResponse %s %r>" % (self.status, self.raw[:300])


class HttpReader:
    """Reads HTTP/1.x responses off a socket (Content-Length or until EOF)."""

    def __init__(self, sock, timeout=10):
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def _more(self):
        self.sock.settimeout(self.timeout)
        try:
            b = self.sock.recv(65536)
        except ConnectionResetError:
            b = b""
        if not b:
            self.eof = True
            return False
        self.buf += b
        return True

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise AssertionError("no complete response head before EOF: %r" % self.buf[:500])
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
        if not m:
            raise AssertionError("bad status line: %r" % lines[0])
        headers = []
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        clen = None
        for k, v in headers:
            if k == "content-length":
                clen = int(v)
        self.buf = rest
        if clen is None:
            while self._more():
                pass
            body, self.buf = self.buf, b""
        else:
            while len(self.buf) < clen:
                if not self._more():
                    raise AssertionError("body cut short: %d of %d" % (len(self.buf), clen))
            body, self.buf = self.buf[:clen], self.buf[clen:]
        return HttpResponse(int(m.group(1)), m.group(2), headers, body, head + b"\r\n\r\n" + body)


def http_request(host_header, path="/", method="GET", version="1.1", extra=(), close=True):
    lines = ["%s %s HTTP/%s" % (method, path, version)]
    if host_header is not None:
        lines.append("Host: %s" % host_header)
    lines.extend(extra)
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_exchange(addr, raw_request, timeout=10):
    """Send raw_request on a fresh connection, read one response and then
    wait for the close; returns (HttpResponse, how) where how is 'eof' or
    'reset' (or 'open' if the connection stayed open), plus the socket's
    local address as a third item."""
    s = h.connect(addr, timeout=timeout)
    local = s.getsockname()[:2]
    try:
        send_ignoring_reset(s, raw_request)
        r = HttpReader(s, timeout)
        resp = r.response()
        if r.eof:
            how = "eof"
        else:
            try:
                rest, how = read_until_close(s, timeout)
            except AssertionError:
                how = "open"
                rest = b""
            if rest:
                raise AssertionError("bytes after the response: %r" % rest[:200])
        return resp, how, local
    finally:
        s.close()


# --------------------------------------------------------------------------
# PROXY protocol

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src, dst, proto=None):
    """v1 header.  src/dst are (ip, port); proto TCP4/TCP6 from the address
    family unless given; proto "UNKNOWN" gives `PROXY UNKNOWN\\r\\n`."""
    if proto == "UNKNOWN":
        return b"PROXY UNKNOWN\r\n"
    proto = proto or ("TCP6" if ":" in src[0] else "TCP4")
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src[0], dst[0], src[1], dst[1])).encode()


def tlv(t, value):
    return struct.pack(">BH", t, len(value)) + value


def proxy_v2(src=None, dst=None, command="PROXY", tlvs=b"", family=None):
    """v2 header.  command PROXY or LOCAL; with src None the address family
    is UNSPEC (no address block).  tlvs: raw TLV bytes appended."""
    cmd = 0x21 if command == "PROXY" else 0x20
    if src is None:
        fam, block = 0x00, b""
    elif ":" in src[0]:
        fam = 0x21
        block = (socket.inet_pton(socket.AF_INET6, src[0]) + socket.inet_pton(socket.AF_INET6, dst[0])
                 + struct.pack(">HH", src[1], dst[1]))
    else:
        fam = 0x11
        block = (socket.inet_pton(socket.AF_INET, src[0]) + socket.inet_pton(socket.AF_INET, dst[0])
                 + struct.pack(">HH", src[1], dst[1]))
    if family is not None:
        fam = family
    body = block + tlvs
    return PP2_SIG + bytes([cmd, fam]) + struct.pack(">H", len(body)) + body


def parse_proxy_header(data):
    """Parse a PROXY header at the start of data.  Returns (info, rest) with
    info a dict {version, command, proto, src, dst, tlvs, raw}, or
    (None, data) when data does not start with a header.  Raises
    AssertionError on a malformed one; returns ("more", data) if incomplete."""
    if data.startswith(b"PROXY "):
        end = data.find(b"\r\n")
        if end < 0:
            return "more", data
        raw = data[:end + 2]
        parts = data[:end].decode("ascii").split(" ")
        info = {"version": 1, "command": "PROXY", "proto": parts[1], "raw": raw, "tlvs": []}
        if parts[1] in ("TCP4", "TCP6"):
            assert len(parts) == 6, raw
            info["src"] = (parts[2], int(parts[4]))
            info["dst"] = (parts[3], int(parts[5]))
        else:
            assert parts == ["PROXY", "UNKNOWN"] or parts[1] == "UNKNOWN", raw
            info["src"] = info["dst"] = None
        return info, data[end + 2:]
    if len(data) < 16:
        if PP2_SIG.startswith(data[:12]) or b"PROXY ".startswith(data[:6]):
            return "more", data
        return None, data
    if not data.startswith(PP2_SIG):
        return None, data
    ver_cmd, fam, n = data[12], data[13], struct.unpack(">H", data[14:16])[0]
    if len(data) < 16 + n:
        return "more", data
    assert ver_cmd >> 4 == 2, data[:16]
    body = data[16:16 + n]
    info = {"version": 2, "command": {0: "LOCAL", 1: "PROXY"}[ver_cmd & 0xF],
            "raw": data[:16 + n], "src": None, "dst": None}
    if fam == 0x11:
        info["proto"] = "TCP4"
        info["src"] = (socket.inet_ntop(socket.AF_INET, body[0:4]), struct.unpack(">H", body[8:10])[0])
        info["dst"] = (socket.inet_ntop(socket.AF_INET, body[4:8]), struct.unpack(">H", body[10:12])[0])
        rest = body[12:]
    elif fam == 0x21:
        info["proto"] = "TCP6"
        info["src"] = (socket.inet_ntop(socket.AF_INET6, body[0:16]), struct.unpack(">H", body[32:34])[0])
        info["dst"] = (socket.inet_ntop(socket.AF_INET6, body[16:32]), struct.unpack(">H", body[34:36])[0])
        rest = body[36:]
    else:
        info["proto"] = "UNSPEC"
        rest = body
    tl = []
    i = 0
    while i + 3 <= len(rest):
        t, ln = rest[i], struct.unpack(">H", rest[i + 1:i + 3])[0]
        tl.append((t, rest[i + 3:i + 3 + ln]))
        i += 3 + ln
    info["tlvs"] = tl
    return info, data[16 + n:]


class ProxyRecorder(h.HandlerServer):
    """A backend that reads an optional PROXY header first.  Records
    {"header": info or None, "first": the first bytes after it}.  Then it
    greets with b"ok\\n" and echoes everything after the header."""

    def __init__(self, host="127.0.0.1", port=0):
        super().__init__(self._serve, host=host, port=port)

    def _serve(self, conn, server):
        conn.settimeout(30)
        data = b""
        while True:
            info, rest = parse_proxy_header(data)
            if info != "more":
                break
            b = conn.recv(65536)
            if not b:
                info, rest = None, data
                break
            data += b
        self.record({"header": info if isinstance(info, dict) else None, "first": rest})
        conn.sendall(b"ok\n" + rest)
        while True:
            b = conn.recv(65536)
            if not b:
                break
            conn.sendall(b)
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


# --------------------------------------------------------------------------
# gatekeeper configs with routes

def _q(s):
    return '"%s"' % s


def listener(name, mode="tcp", upstream=None, routes=(), proxy=None, listen="127.0.0.1:0", **opts):
    """One listeners[] entry.  routes: a list of (match list or string,
    upstream[, route proxy send]).  proxy: a dict for proxy_protocol, e.g.
    {"accept": "true", "trusted": '["127.0.0.1/32"]', "send": "v1"}."""
    lines = ["  - name: %s" % name, "    listen: %s" % _q(listen), "    mode: %s" % mode]
    if upstream is not None:
        lines.append("    upstream: %s" % _q(upstream))
    for k, v in opts.items():
        lines.append("    %s: %s" % (k, v))
    if proxy:
        lines.append("    proxy_protocol:")
        for k, v in proxy.items():
            lines.append("      %s: %s" % (k, v))
    if routes:
        lines.append("    routes:")
        for r in routes:
            match = r[0]
            if isinstance(match, str):
                lines.append("      - match: %s" % _q(match))
            else:
                lines.append("      - match: [%s]" % ", ".join(_q(m) for m in match))
            lines.append("        upstream: %s" % _q(r[1]))
            if len(r) > 2 and r[2]:
                lines.append("        proxy_protocol: {send: %s}" % r[2])
    return "\n".join(lines) + "\n"


def config(*listeners, defaults=None, nameservers=None):
    out = ["log:\n  level: debug\n"]
    if nameservers:
        out.append("resolver:\n  nameservers: [%s]\n  refresh: 2s\n  min_ttl: 1s\n  timeout: 1s\n"
                   % ", ".join(_q(n) for n in nameservers))
    if defaults:
        out.append("defaults:\n" + "".join("  %s: %s\n" % kv for kv in defaults.items()))
    out.append("listeners:\n")
    out.extend(listeners)
    return "".join(out)
