"""PROXY protocol v1/v2: accepted from a proxy in front, sent to the upstream.

Real peers on loopback: HAProxy 2.6 as the sender in front of gatekeeper (the
Traefik role: `send-proxy` / `send-proxy-v2`) and as the receiver behind it
(`accept-proxy`, answering with the address it decoded), plus raw headers
built byte by byte by the test. tlsutil.ProxyRecorder is a backend that
parses whatever PROXY header it gets, so a test sees the exact header
gatekeeper wrote, or that it wrote none.

Addresses inside headers (192.0.2.x, 2001:db8::x) are only text in a header:
no packet goes anywhere but 127.0.0.1 / ::1.
"""

import os
import re
import socket
import subprocess
import threading
import time

import pytest

import gkharness as h
import tlsutil as t

TRUST_LOCAL = {"accept": "true", "trusted": '["127.0.0.1/32"]'}


# --------------------------------------------------------------------------
# HAProxy

def _listening(port):
    """True when some socket listens on TCP port `port` (any address)."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


class HAProxy:
    """haproxy -db -f CFG in the foreground.  `frontends` is the config text
    after the defaults section; `ports` the ports it binds (waited for)."""

    def __init__(self, directory, frontends, ports, timeout=10):
        self.cfg = os.path.join(str(directory), "haproxy-%d.cfg" % ports[0])
        with open(self.cfg, "w") as f:
            f.write(
                "global\n    maxconn 256\n\n"
                "defaults\n    mode tcp\n    timeout connect 5s\n"
                "    timeout client 30s\n    timeout server 30s\n\n" + frontends)
        self._out = []
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not all(_listening(p) for p in ports):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError("haproxy did not start:\n%s\n%s"
                                     % (open(self.cfg).read(), self.output()))
            time.sleep(0.05)

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


@pytest.fixture
def haproxy(tmp_path):
    made = []

    def make(frontends, ports):
        hp = HAProxy(tmp_path, frontends, ports)
        made.append(hp)
        return hp

    yield make
    for hp in reversed(made):
        hp.close()


@pytest.fixture
def recorder():
    made = []

    def make(host="127.0.0.1"):
        r = t.ProxyRecorder(host=host)
        made.append(r)
        return r

    yield make
    for r in reversed(made):
        r.close()


# The haproxy frontend that reports the addresses it decoded from the PROXY
# header: "src=IP sport=P dst=IP dport=P".
REPORT = ('    http-request return status 200 content-type text/plain '
          'lf-string "src=%[src] sport=%[src_port] dst=%[dst] dport=%[dst_port]\\n"\n')


def report_frontend(name, port, ssl_pem=None):
    bind = "    bind 127.0.0.1:%d accept-proxy" % port
    if ssl_pem:
        bind += " ssl crt %s" % ssl_pem
    return "frontend %s\n    mode http\n%s\n%s\n" % (name, bind, REPORT)


def parse_report(body):
    fields = dict(p.split("=", 1) for p in body.decode().split())
    return (fields["src"], int(fields["sport"])), (fields["dst"], int(fields["dport"]))


def get_report(addr, payload=b"GET / HTTP/1.0\r\nHost: r\r\n\r\n", before=b""):
    """Send before+payload through gatekeeper to the report frontend; returns
    ((src, sport), (dst, dport), local address of the test's socket)."""
    s = h.connect(addr)
    local = s.getsockname()[:2]
    try:
        s.sendall(before + payload)
        resp = t.HttpReader(s).response()
    finally:
        s.close()
    assert resp.status == 200, resp
    src, dst = parse_report(resp.body)
    return src, dst, local


def echo_through(addr, payload, before=b"", src=None, greet=b""):
    """Connect (from source address src), send before + payload, half-close,
    read to EOF.  Returns (reply, local address)."""
    fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(15)
    if src:
        s.bind((src, 0))
    s.connect(addr)
    local = s.getsockname()[:2]
    try:
        s.sendall(before + payload)
        s.shutdown(socket.SHUT_WR)
        return h.recv_all(s, timeout=15), local
    finally:
        s.close()


class Keeper:
    """A connection opened before a failure case and checked after it."""

    def __init__(self, addr, before=b"", src=None):
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.s = socket.socket(fam, socket.SOCK_STREAM)
        self.s.settimeout(10)
        if src:
            self.s.bind((src, 0))
        self.s.connect(addr)
        self.s.sendall(before + b"one")
        assert h.recv_exact(self.s, 6) == b"ok\none"

    def check(self):
        self.s.sendall(b"two")
        assert h.recv_exact(self.s, 3) == b"two"
        self.s.shutdown(socket.SHUT_WR)
        assert h.recv_all(self.s) == b""
        self.s.close()


# --------------------------------------------------------------------------
# HAProxy in front: it sends, gatekeeper accepts

def test_haproxy_in_front_sends_v1_and_v2_and_gatekeeper_logs_the_real_client(gk, haproxy, recorder):
    rec = recorder()
    g = gk(t.config(t.listener("in", "tcp", upstream=rec.addr,
                               proxy=dict(TRUST_LOCAL, send="v1"))))
    gport = g.addr("in")[1]
    p1, p2 = h.free_port(), h.free_port()
    haproxy("frontend f1\n    bind 127.0.0.1:%d\n    default_backend gk1\n"
            "backend gk1\n    server gk 127.0.0.1:%d send-proxy\n\n"
            "frontend f2\n    bind 127.0.0.1:%d\n    default_backend gk2\n"
            "backend gk2\n    server gk 127.0.0.1:%d send-proxy-v2\n" % (p1, gport, p2, gport),
            [p1, p2])
    payload = h.deterministic_bytes(1 << 20, seed=21)
    for i, fport in enumerate((p1, p2)):
        reply, local = echo_through(("127.0.0.1", fport), payload)
        assert reply[:3] == b"ok\n" and len(reply) == 3 + len(payload)
        assert h.sha256(reply[3:]) == h.sha256(payload), "bytes changed on the way"
        acc = g.wait_access_for(local)
        assert acc["listener"] == "in"
        assert acc["client"] == h.join_hostport(*local)
        # peer: haproxy's own connection to gatekeeper, not the client
        peer = h.split_hostport(acc["peer"])
        assert peer[0] == "127.0.0.1" and peer != local, acc
        assert acc["reason"] == "closed", acc
        assert int(acc["bytes_in"]) == len(payload), acc
        assert int(acc["bytes_out"]) == 3 + len(payload), acc
        # and what gatekeeper sent on: the client, and the address the client
        # connected to (haproxy's frontend), from haproxy's header
        hdr = rec.wait_results(i + 1)[i]["header"]
        assert hdr["version"] == 1 and hdr["proto"] == "TCP4"
        assert hdr["src"] == local
        assert hdr["dst"] == ("127.0.0.1", fport)


# --------------------------------------------------------------------------
# HAProxy behind: gatekeeper sends, HAProxy accepts

def test_haproxy_behind_decodes_the_headers_gatekeeper_sends(gk, haproxy, ipv6_available):
    rx = h.free_port()
    haproxy(report_frontend("rx", rx), [rx])
    up = "127.0.0.1:%d" % rx
    g = gk(t.config(
        t.listener("v1", "tcp", upstream=up, proxy={"send": "v1"}),
        t.listener("v2", "tcp", upstream=up, proxy={"send": "v2"}),
        t.listener("v1six", "tcp", upstream=up, proxy={"send": "v1"}, listen="[::1]:0"),
        t.listener("v2six", "tcp", upstream=up, proxy={"send": "v2"}, listen="[::1]:0"),
        t.listener("none", "tcp", upstream=up),
    ))
    for name in ("v1", "v2", "v1six", "v2six"):
        addr = g.addr(name)
        src, dst, local = get_report(addr)
        assert src == local, (name, src, local)
        assert dst == addr, (name, dst, addr)
        acc = g.wait_access_for(local)
        assert acc["reason"] == "closed" and acc["upstream"] == up, acc
    # without `send`, haproxy gets no header and drops the connection
    s = h.connect(g.addr("none"))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    got, _ = t.read_until_close(s)
    s.close()
    assert b"src=" not in got


PASS_ON = {
    # case: (incoming header, src haproxy must see, dst haproxy must see); None = the real one
    "v1_tcp4": (t.proxy_v1(("192.0.2.10", 40000), ("198.51.100.20", 8443)),
                ("192.0.2.10", 40000), ("198.51.100.20", 8443)),
    "v1_tcp6": (t.proxy_v1(("2001:db8::10", 40001), ("2001:db8::20", 443)),
                ("2001:db8::10", 40001), ("2001:db8::20", 443)),
    "v2_tcp4": (t.proxy_v2(("192.0.2.11", 40002), ("198.51.100.21", 80)),
                ("192.0.2.11", 40002), ("198.51.100.21", 80)),
    "v2_tcp6": (t.proxy_v2(("2001:db8::11", 40003), ("2001:db8::21", 80)),
                ("2001:db8::11", 40003), ("2001:db8::21", 80)),
    "v2_local": (t.proxy_v2(("192.0.2.12", 1), ("192.0.2.13", 2), command="LOCAL"), None, None),
    "v1_unknown": (b"PROXY UNKNOWN\r\n", None, None),
}


@pytest.mark.parametrize("send", ["v1", "v2"])
def test_gatekeeper_passes_the_incoming_client_on(gk, haproxy, send):
    rx = h.free_port()
    haproxy(report_frontend("rx", rx), [rx])
    g = gk(t.config(t.listener("relay", "tcp", upstream="127.0.0.1:%d" % rx,
                               proxy=dict(TRUST_LOCAL, send=send))))
    addr = g.addr("relay")
    for case, (hdr, want_src, want_dst) in sorted(PASS_ON.items()):
        src, dst, local = get_report(addr, before=hdr)
        assert src == (want_src or local), (case, src)
        assert dst == (want_dst or addr), (case, dst)


def test_route_proxy_protocol_overrides_the_listener(gk, haproxy, recorder, whoami, tmp_path):
    a = t.make_cert(tmp_path / "certs", "a.gk.test")
    b = t.make_cert(tmp_path / "certs", "b.gk.test")
    rx, rxs = h.free_port(), h.free_port()
    haproxy(report_frontend("rx", rx) + "\n" + report_frontend("rxs", rxs, ssl_pem=a.combined),
            [rx, rxs])
    plain_b = t.TlsBackend(b, "b")
    rec = recorder()
    wb = whoami(name="B")
    try:
        g = gk(t.config(
            # tls: no header by default; a.gk.test's route sends v2 to haproxy,
            # which terminates TLS and reports the client
            t.listener("tls", "tls", routes=[
                (["a.gk.test"], "127.0.0.1:%d" % rxs, "v2"),
                (["b.gk.test"], plain_b.addr),
            ]),
            # http: v1 by default; b.gk.test's route turns it off, c's sends v2
            t.listener("web", "http", proxy={"send": "v1"}, routes=[
                (["a.gk.test"], "127.0.0.1:%d" % rx),
                (["b.gk.test"], wb.addr, "none"),
                (["c.gk.test"], rec.addr, "v2"),
            ]),
        ))
        taddr = g.addr("tls")
        c = t.TlsClient(taddr, "a.gk.test")
        try:
            assert c.peer_der == a.der
            local = c.sock.getsockname()[:2]
            c.send(b"GET / HTTP/1.0\r\nHost: a.gk.test\r\n\r\n")
            page = c.recv_until_eof()
        finally:
            c.close()
        body = page.partition(b"\r\n\r\n")[2]
        src, dst = parse_report(body)
        assert src == local and dst == taddr
        c = t.TlsClient(taddr, "b.gk.test")
        assert c.recv_line() == b"tag=b sni=b.gk.test\n"
        c.close()

        waddr = g.addr("web")
        src, dst, local = get_report(waddr, payload=t.http_request("a.gk.test"))
        assert src == local and dst == waddr
        resp, _, local = t.http_exchange(waddr, t.http_request("b.gk.test"))
        assert resp.status == 200 and resp.field("Name") == "B", resp
        assert resp.body.count(b"GET / HTTP/1.1") == 1 and b"PROXY" not in resp.body
        req = t.http_request("c.gk.test")
        s = h.connect(waddr)
        local = s.getsockname()[:2]
        s.sendall(req)
        assert h.recv_exact(s, 3) == b"ok\n"
        s.close()
        got = rec.wait_results(1)[0]
        assert got["header"]["version"] == 2 and got["header"]["command"] == "PROXY"
        assert got["header"]["src"] == local and got["header"]["dst"] == waddr
        # after the PROXY header: the request, its line and Host as sent (http mode adds headers)
        assert got["first"].startswith(b"GET / HTTP/1.1\r\nHost: c.gk.test\r\n"), got["first"]
    finally:
        plain_b.close()


# --------------------------------------------------------------------------
# Raw headers from the test

@pytest.fixture
def pp_listener(gk, recorder):
    """tcp listener accepting PROXY headers from 127.0.0.1, relaying (with no
    header of its own) to a ProxyRecorder."""
    rec = recorder()
    g = gk(t.config(t.listener("pp", "tcp", upstream=rec.addr, sniff_timeout="2s",
                               proxy=TRUST_LOCAL)))
    return g, g.addr("pp"), rec


TLVS = (t.tlv(0x01, b"h2") + t.tlv(0x02, b"a.gk.test") + t.tlv(0x04, bytes(17))
        + t.tlv(0xE0, b"custom") + t.tlv(0x05, b"\x01\x02\x03"))

GOOD_HEADERS = {
    # case: (header, the client it names; None = the real peer)
    "v1_tcp4": (t.proxy_v1(("192.0.2.1", 40001), ("198.51.100.2", 443)), "192.0.2.1:40001"),
    "v1_tcp6": (t.proxy_v1(("2001:db8::1", 40002), ("2001:db8::2", 443)), "[2001:db8::1]:40002"),
    "v1_unknown": (b"PROXY UNKNOWN\r\n", None),
    "v1_unknown_with_addresses": (b"PROXY UNKNOWN 192.0.2.9 192.0.2.8 1 2\r\n", None),
    "v1_longest": (t.proxy_v1(("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
                              ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535)),
                   "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
    "v2_tcp4": (t.proxy_v2(("192.0.2.3", 40003), ("198.51.100.4", 443)), "192.0.2.3:40003"),
    "v2_tcp6": (t.proxy_v2(("2001:db8::3", 40004), ("2001:db8::4", 443)), "[2001:db8::3]:40004"),
    "v2_local": (t.proxy_v2(command="LOCAL"), None),
    "v2_local_with_addresses": (t.proxy_v2(("192.0.2.5", 1), ("192.0.2.6", 2), command="LOCAL"), None),
    "v2_proxy_unspec": (t.proxy_v2(), None),
    "v2_tlvs": (t.proxy_v2(("192.0.2.7", 40007), ("198.51.100.8", 443), tlvs=TLVS), "192.0.2.7:40007"),
    "v2_tcp6_tlvs": (t.proxy_v2(("2001:db8::7", 40008), ("2001:db8::8", 443), tlvs=TLVS),
                     "[2001:db8::7]:40008"),
}


@pytest.mark.parametrize("case", sorted(GOOD_HEADERS))
def test_accepted_header_names_the_client(pp_listener, case):
    g, addr, rec = pp_listener
    hdr, client = GOOD_HEADERS[case]
    payload = h.deterministic_bytes(3000, seed=4) + b"end"
    reply, local = echo_through(addr, payload, before=hdr)
    assert reply == b"ok\n" + payload
    acc = g.wait_access_for(client or local)
    assert acc["reason"] == "closed", acc
    if client:
        assert acc["peer"] == h.join_hostport(*local), acc
    else:
        # LOCAL / UNKNOWN / UNSPEC: the connection is logged as the real peer
        assert acc["client"] == h.join_hostport(*local), acc
        assert acc.get("peer") in (None, acc["client"]), acc
    # the header is consumed, not relayed
    got = rec.wait_results(1)[0]
    assert got["header"] is None and payload.startswith(got["first"]) and got["first"], got
    assert int(acc["bytes_in"]) == len(payload), acc


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_header_split_across_writes(pp_listener, version):
    g, addr, rec = pp_listener
    hdr = (t.proxy_v1(("192.0.2.44", 4444), ("192.0.2.45", 80)) if version == "v1"
           else t.proxy_v2(("192.0.2.44", 4444), ("192.0.2.45", 80), tlvs=TLVS))
    s = h.connect(addr)
    local = s.getsockname()[:2]
    t.trickle_sender(1, 3, pause=0.01)(s, hdr)
    time.sleep(0.1)
    s.sendall(b"payload")
    s.shutdown(socket.SHUT_WR)
    assert h.recv_all(s) == b"ok\npayload"
    s.close()
    acc = g.wait_access_for(("192.0.2.44", 4444))
    assert acc["peer"] == h.join_hostport(*local)
    assert rec.wait_results(1)[0]["header"] is None


BAD_HEADERS = {
    "v1_bad_address": (b"PROXY TCP4 999.0.0.1 198.51.100.2 40000 443\r\n", "proxy_malformed"),
    "v1_missing_fields": (b"PROXY TCP4 192.0.2.1 198.51.100.2\r\n", "proxy_malformed"),
    "v1_bad_port": (b"PROXY TCP4 192.0.2.1 198.51.100.2 70000 443\r\n", "proxy_malformed"),
    "v1_family_mismatch": (b"PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n", "proxy_malformed"),
    "v1_bad_proto": (b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n", "proxy_malformed"),
    "v1_lf_only": (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", "proxy_malformed"),
    "v1_no_crlf_in_108": (b"PROXY TCP4 " + b"1" * 120, "proxy_malformed"),
    "v2_bad_version": (b"\r\n\r\n\x00\r\nQUIT\n\x11\x11\x00\x0c" + bytes(12), "proxy_malformed"),
    "v2_bad_command": (b"\r\n\r\n\x00\r\nQUIT\n\x25\x11\x00\x0c" + bytes(12), "proxy_malformed"),
    "v2_short_address_block": (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04" + bytes(4), "proxy_malformed"),
    "missing": (b"GET / HTTP/1.0\r\n\r\n", "proxy_missing"),
    "missing_binary": (b"\x16\x03\x01\x00\x10" + bytes(16), "proxy_missing"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_bad_or_missing_header_closes_and_spares_the_others(pp_listener, case):
    g, addr, rec = pp_listener
    data, reason = BAD_HEADERS[case]
    keep = Keeper(addr, before=t.proxy_v1(("192.0.2.50", 5050), ("192.0.2.51", 80)))
    s = h.connect(addr)
    local = s.getsockname()[:2]
    t.send_ignoring_reset(s, data)
    got, _ = t.read_until_close(s)
    s.close()
    assert got == b"", "a PROXY error gets no response: %r" % got[:100]
    acc = g.wait_access_for(local)
    assert acc["reason"] == reason, acc
    assert acc["upstream"] == "-", acc
    assert rec.accepted == 1, "the bad connection reached the backend"
    keep.check()
    reply, _ = echo_through(addr, b"fresh", before=t.proxy_v2(("192.0.2.52", 1), ("192.0.2.53", 2)))
    assert reply == b"ok\nfresh"
    assert g.alive()


def test_untrusted_source_may_not_send_a_header_but_is_served_without(gk, recorder):
    """trusted = 127.0.0.2 only: 127.0.0.1 is untrusted."""
    rec = recorder()
    g = gk(t.config(t.listener("pp", "tcp", upstream=rec.addr,
                               proxy={"accept": "true", "trusted": '["127.0.0.2/32"]'})))
    addr = g.addr("pp")
    keep = Keeper(addr)  # untrusted, plain: served
    for hdr in (t.proxy_v1(("192.0.2.1", 1), ("192.0.2.2", 2)),
                t.proxy_v2(("192.0.2.1", 1), ("192.0.2.2", 2)),
                t.proxy_v2(command="LOCAL")):
        s = h.connect(addr)
        local = s.getsockname()[:2]
        t.send_ignoring_reset(s, hdr + b"data")
        got, _ = t.read_until_close(s)
        s.close()
        assert got == b""
        acc = g.wait_access_for(local)
        assert acc["reason"] == "proxy_untrusted", acc
        assert acc["client"] == h.join_hostport(*local)
    assert rec.accepted == 1, "a refused header reached the backend"
    # plain bytes from the untrusted source, even ones starting like "PROXY"
    for payload in (b"hello", b"PUT /x HTTP/1.0\r\n\r\n", b"\r\n\r\nnot a v2 signature"):
        reply, local = echo_through(addr, payload)
        assert reply == b"ok\n" + payload
        acc = g.wait_access_for(local)
        assert acc["reason"] == "closed" and acc["client"] == h.join_hostport(*local)
    # the trusted source must send one, and is believed
    reply, local = echo_through(addr, b"x", before=t.proxy_v1(("192.0.2.77", 7777), ("192.0.2.2", 80)),
                                src="127.0.0.2")
    assert reply == b"ok\nx"
    acc = g.wait_access_for(("192.0.2.77", 7777))
    assert acc["peer"] == h.join_hostport(*local) and local[0] == "127.0.0.2"
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.settimeout(10)
    s.connect(addr)
    local = s.getsockname()[:2]
    s.sendall(b"no header")
    got, _ = t.read_until_close(s)
    s.close()
    assert got == b""
    assert g.wait_access_for(local)["reason"] == "proxy_missing"
    assert rec.accepted == 1 + 3 + 1
    keep.check()


def test_silent_client_on_an_accepting_listener_times_out(gk, recorder):
    rec = recorder()
    g = gk(t.config(t.listener("pp", "tcp", upstream=rec.addr, sniff_timeout="1s",
                               proxy={"accept": "true"})))
    addr = g.addr("pp")
    keep = Keeper(addr, before=t.proxy_v2(("192.0.2.60", 6060), ("192.0.2.61", 80)))
    for first in (b"", b"PROXY TCP4 192.0.2.1 ", t.PP2_SIG[:7], t.proxy_v2(("192.0.2.1", 1), ("192.0.2.2", 2))[:20]):
        s = h.connect(addr)
        local = s.getsockname()[:2]
        if first:
            s.sendall(first)
        got, _ = t.read_until_close(s, timeout=10)
        s.close()
        assert got == b""
        acc = g.wait_access_for(local)
        assert acc["reason"] == "sniff_timeout", (first, acc)
    assert rec.accepted == 1
    keep.check()


def test_header_then_hello_on_a_tls_listener(gk, tmp_path):
    a = t.make_cert(tmp_path, "a.gk.test")
    be = t.TlsBackend(a, "a")
    try:
        g = gk(t.config(t.listener("edge", "tls", proxy=TRUST_LOCAL,
                                   routes=[(["a.gk.test"], be.addr)])))
        addr = g.addr("edge")
        hdr = t.proxy_v2(("192.0.2.90", 9090), ("198.51.100.91", 443))
        # header and ClientHello in one write
        c = t.TlsClient(addr, "a.gk.test", first_flight=lambda s, d: s.sendall(hdr + d))
        assert c.recv_line() == b"tag=a sni=a.gk.test\n"
        local = c.sock.getsockname()[:2]
        c.close()
        acc = g.wait_access_for(("192.0.2.90", 9090))
        assert acc["peer"] == h.join_hostport(*local) and acc["name"] == "a.gk.test"
        # a refusal after an accepted header: the alert still goes to the client
        s = h.connect(addr)
        s.sendall(t.proxy_v1(("192.0.2.92", 9292), ("198.51.100.91", 443)) + t.client_hello("zz.gk.test"))
        got, _ = t.read_until_close(s)
        s.close()
        assert got == t.ALERT_UNRECOGNIZED_NAME
        acc = g.wait_access_for(("192.0.2.92", 9292))
        assert acc["reason"] == "no_route"
    finally:
        be.close()


def test_proxy_errors_on_an_http_listener_get_no_http_response(gk, whoami):
    w = whoami(name="A")
    g = gk(t.config(t.listener("web", "http", proxy=TRUST_LOCAL, routes=[(["a.gk.test"], w.addr)])))
    addr = g.addr("web")
    # a good header then a request: routed, the header's client logged
    s = h.connect(addr)
    local = s.getsockname()[:2]
    s.sendall(t.proxy_v1(("192.0.2.31", 3131), ("198.51.100.1", 80)) + t.http_request("a.gk.test"))
    resp = t.HttpReader(s).response()
    s.close()
    assert resp.field("Name") == "A"
    assert resp.body.count(b"PROXY") == 0
    acc = g.wait_access_for(("192.0.2.31", 3131))
    assert acc["peer"] == h.join_hostport(*local) and acc["name"] == "a.gk.test"
    for data, reason in ((b"PROXY TCP4 bad\r\n" + t.http_request("a.gk.test"), "proxy_malformed"),
                         (t.http_request("a.gk.test"), "proxy_missing")):
        s = h.connect(addr)
        local = s.getsockname()[:2]
        t.send_ignoring_reset(s, data)
        got, _ = t.read_until_close(s)
        s.close()
        assert got == b"", got[:200]
        assert g.wait_access_for(local)["reason"] == reason


def test_proxy_protocol_config_rules(tmp_path):
    text = """listeners:
  - name: no_accept
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:1
    proxy_protocol: {trusted: ["127.0.0.1/32"]}
  - name: bad_send
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:1
    proxy_protocol: {send: v3}
  - name: bad_trusted
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:1
    proxy_protocol: {accept: true, trusted: ["not-an-address"]}
  - name: route_accept
    listen: 127.0.0.1:0
    mode: http
    routes:
      - match: "*"
        upstream: 127.0.0.1:2
        proxy_protocol: {accept: true}
"""
    path = h.write_config(text, tmp_path)
    r = h.run_gatekeeper(["-t", "-c", path])
    assert r.returncode == 1, r.stderr
    for line in (2, 9, 13, 20):
        assert re.search(r":%d:\d+: " % line, r.stderr), (line, r.stderr)
    assert "trusted" in r.stderr and "v3" in r.stderr and "accept" in r.stderr
    good = t.config(
        t.listener("a", "tcp", upstream="127.0.0.1:1",
                   proxy={"accept": "true", "trusted": '["127.0.0.1/32", "::1", "10.0.0.0/8"]',
                          "send": "v2"}),
        t.listener("b", "tcp", upstream="127.0.0.1:1", proxy={"accept": "true"}),
        t.listener("c", "tls", proxy={"send": "v1"}, routes=[("*", "127.0.0.1:2", "none")]))
    r = h.run_gatekeeper(["-t", "-c", h.write_config(good, tmp_path)])
    assert r.returncode == 0, r.stderr
