"""DNS servers that answer badly: SERVFAIL, a truncated or garbage reply.
An egress name that cannot be resolved is refused with a clear reason and a
log line, and names already resolved keep working."""

import socket
import struct
import threading

import pytest

from gkharness import connect


class BadDns:
    """A UDP DNS server on 127.0.0.1 answering every query one bad way:
    'servfail' (RCODE 2), 'garbage' (random bytes with the query ID), or
    'truncated' (a header promising an answer that is not there)."""

    def __init__(self, how):
        self.how = how
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.nameserver = "127.0.0.1:%d" % self.port
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                q, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(q) < 12:
                continue
            self.queries += 1
            qid = q[:2]
            if self.how == "servfail":
                # QR=1, opcode 0, RD copied, RA=1, RCODE=2; the question echoed
                flags = 0x8000 | (struct.unpack("!H", q[2:4])[0] & 0x0100) | 0x0080 | 2
                reply = qid + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + q[12:]
            elif self.how == "truncated":
                flags = 0x8180
                reply = qid + struct.pack("!HHHHH", flags, 1, 1, 0, 0) + q[12:] + b"\xc0\x0c\x00"
            else:
                reply = qid + bytes((i * 37 + 11) % 256 for i in range(300))
            self.sock.sendto(reply, peer)

    def close(self):
        self._stop = True
        self.sock.close()
        self.thread.join(2)


def connect_request(target):
    return ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode()


def read_response(sock, timeout=15):
    sock.settimeout(timeout)
    buf = b""
    while True:
        try:
            d = sock.recv(4096)
        except ConnectionResetError:
            break
        if not d:
            break
        buf += d
    return buf


@pytest.mark.parametrize("how", ["servfail", "truncated", "garbage"])
def test_bad_dns_answer_refuses_with_no_address(gk, echo, how):
    dns = BadDns(how)
    e = echo()
    try:
        g = gk(
            "resolver:\n  nameservers: [\"%s\"]\n  timeout: 300ms\n  refresh: 2s\n" % dns.nameserver
            + "listeners:\n"
            + "  - name: proxy\n    listen: 127.0.0.1:0\n    mode: connect\n"
            + "    allow: [\"api.gk.test:%d\"]\n    allow_ranges: [127.0.0.0/8]\n" % e.port
            + "  - name: inbound\n    listen: 127.0.0.1:0\n    upstream: %s\n" % e.addr
        )
        s = connect(g.addr("proxy"))
        local = s.getsockname()[:2]
        s.sendall(connect_request("api.gk.test:%d" % e.port))
        got = read_response(s)
        s.close()
        assert got.startswith(b"HTTP/1.1 503 "), got
        assert b"X-Gatekeeper-Reason: no_address" in got, got
        acc = g.wait_access_for(local, timeout=15)
        assert acc["reason"] == "no_address" and acc["upstream"] == "-", acc
        g.wait_log(r"resolve failed.*upstream=api\.gk\.test")
        assert dns.queries >= 1
        # the rest of the proxy is unaffected
        s = connect(g.addr("inbound"))
        s.sendall(b"still fine")
        s.shutdown(socket.SHUT_WR)
        assert read_response(s) == b"still fine"
        s.close()
        assert g.alive()
    finally:
        dns.close()
