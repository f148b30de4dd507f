"""The DNS door (`mode: dns`), attacked from the outside with real clients.

Clients: dig over UDP and TCP (+tcp, +keepopen, +bufsize, +noedns, +edns=1),
hand-made datagrams and TCP frames, glibc's stub resolver (getent ahosts,
Python's socket.getaddrinfo) and c-ares (`gatekeeper audit --nameservers`).
The glibc and c-ares checks run in a private network namespace (unshare -n
-m) whose /etc/resolv.conf names a door on 10.77.0.53:53; this file is its
own driver there (run as a script with --netns-driver).

Every query goes to 127.0.0.0/8, ::1 or an address inside a namespace the
test made. The door answers from its allowlist and never forwards: canary
DNS servers (as gatekeeper's resolver.nameservers and as the namespace's
second nameserver) must never see a packet. Replies are matched to
queries in order: after a datagram whose reply may be absent, a known-good
"sentinel" query is sent on the same socket, and whatever arrives before
the sentinel's reply belongs to the datagram (one worker, loopback keeps
order), so no test waits out a timer to prove silence except where noted.
"""

import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gkharness as h  # noqa: E402
import netns  # noqa: E402

try:
    import pytest
except ImportError:  # the namespace driver does not need it
    pytest = None

T_A, T_NS, T_MX, T_TXT, T_AAAA, T_OPT, T_HTTPS, T_ANY = 1, 2, 15, 16, 28, 41, 65, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5


# --------------------------------------------------------------------------
# DNS wire format

def wire_name(name):
    """A name as labels; name may be a str ('a.b.', '.') or a list of bytes labels."""
    if isinstance(name, (list, tuple)):
        labels = list(name)
    else:
        labels = [l.encode() for l in name.rstrip(".").split(".") if l] if name not in (".", "") else []
    return b"".join(bytes([len(l)]) + l for l in labels) + b"\0"


def opt_rr(size=1232, version=0, ext_rcode=0, options=b""):
    return b"\0" + struct.pack("!HHBBHH", T_OPT, size, ext_rcode, version, 0, len(options)) + options


def query(name, qtype=T_A, qid=None, rd=1, edns=None, qclass=1, opcode=0, qd=1,
          extra=b"", arcount=None):
    """A query. edns: None, or a dict of opt_rr() keywords."""
    qid = random.randrange(65536) if qid is None else qid
    flags = (opcode << 11) | (rd << 8)
    ar = (1 if edns is not None else 0) if arcount is None else arcount
    msg = struct.pack("!HHHHHH", qid, flags, qd, 0, 0, ar)
    msg += wire_name(name) + struct.pack("!HH", qtype, qclass) + extra
    if edns is not None:
        msg += opt_rr(**edns)
    return msg


def _read_name(msg, off, hops=0):
    labels = []
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            ptr = ((n & 0x3F) << 8) | msg[off + 1]
            assert hops < 20, "pointer loop in a reply"
            rest, _ = _read_name(msg, ptr, hops + 1)
            return labels + rest, off + 2
        off += 1
        if n == 0:
            return labels, off
        labels.append(msg[off:off + n])
        off += n


def parse(msg):
    """A reply as a dict: id, qr, opcode, aa, tc, rd, ra, rcode (header), counts,
    question (labels, type, class), answers [(type, ttl, rdata text)], opt
    (size, ext_rcode, version) or None."""
    assert len(msg) >= 12, "reply shorter than a header: %r" % msg
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    out = {"id": qid, "qr": flags >> 15, "opcode": (flags >> 11) & 15, "aa": (flags >> 10) & 1,
           "tc": (flags >> 9) & 1, "rd": (flags >> 8) & 1, "ra": (flags >> 7) & 1,
           "rcode": flags & 15, "qd": qd, "an": an, "ns": ns, "ar": ar, "question": None,
           "answers": [], "opt": None, "len": len(msg)}
    off = 12
    if qd:
        labels, off = _read_name(msg, off)
        qt, qc = struct.unpack("!HH", msg[off:off + 4])
        off += 4
        out["question"] = (labels, qt, qc)
    for i in range(an + ns + ar):
        _, off = _read_name(msg, off)
        rt, rc, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        off += rdlen
        if rt == T_OPT:
            out["opt"] = {"size": rc, "ext_rcode": ttl >> 24, "version": (ttl >> 16) & 0xFF}
        elif i < an:
            if rt == T_A:
                text = socket.inet_ntop(socket.AF_INET, rdata)
            elif rt == T_AAAA:
                text = socket.inet_ntop(socket.AF_INET6, rdata)
            else:
                text = rdata.hex()
            out["answers"].append((rt, ttl, text))
    assert off == len(msg), "trailing bytes in a reply"
    return out


def addrs(reply):
    return sorted(a[2] for a in reply["answers"])


# --------------------------------------------------------------------------
# Clients

class Udp:
    """A UDP client socket bound to src (so the door sees that source)."""

    def __init__(self, server, src=None):
        self.server = server
        fam = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((src or ("::1" if fam == socket.AF_INET6 else "127.0.0.1"), 0))

    def send(self, data):
        self.sock.sendto(data, self.server)

    def recv(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            data, frm = self.sock.recvfrom(65535)
        except socket.timeout:
            return None
        self.last_from = frm
        return data

    def ask(self, data, timeout=5):
        """Send; return the raw reply (None after timeout)."""
        self.send(data)
        return self.recv(timeout)

    def q(self, name, qtype=T_A, **kw):
        r = self.ask(query(name, qtype, **kw))
        assert r is not None, "no reply to %s/%s" % (name, qtype)
        return parse(r)

    def around_sentinel(self, data, sentinel="sentinel.ok.test"):
        """Send data, then a known-good query: returns the replies that came
        before the sentinel's (the data's replies, if any)."""
        self.send(data)
        sq = query(sentinel, qid=0xBEEF)
        self.send(sq)
        got = []
        while True:
            r = self.recv(timeout=10)
            assert r is not None, "the sentinel query got no reply (door dead or stuck?)"
            if r[:2] == b"\xbe\xef" and len(r) > 12 and r[12:12 + len(sq) - 16] == sq[12:-4]:
                return got
            got.append(r)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def tcp_frame(msg):
    return struct.pack("!H", len(msg)) + msg


def tcp_read_reply(s, timeout=10):
    n = struct.unpack("!H", h.recv_exact(s, 2, timeout))[0]
    return h.recv_exact(s, n, timeout)


def dig(server, port, *args, src=None):
    """Run dig; returns a list of parsed answers (one per query given)."""
    argv = ["dig", "@" + server, "-p", str(port), "+tries=1", "+time=5"]
    if src:
        argv += ["-b", src]
    r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=60)
    return parse_dig(r.stdout), r


def parse_dig(text):
    out = []
    for part in text.split(";; Got answer:")[1:]:
        d = {"status": None, "flags": set(), "answers": [], "edns": None, "transport": None,
             "size": None}
        m = re.search(r"status: (\w+)", part)
        d["status"] = m and m.group(1)
        m = re.search(r";; flags:([^;]*);", part)
        d["flags"] = set(m.group(1).split()) if m else set()
        m = re.search(r"EDNS: version: (\d+), flags:[^;]*; udp: (\d+)", part)
        d["edns"] = m and (int(m.group(1)), int(m.group(2)))
        m = re.search(r"\((UDP|TCP)\)", part)
        d["transport"] = m and m.group(1)
        m = re.search(r"MSG SIZE\s+rcvd: (\d+)", part)
        d["size"] = m and int(m.group(1))
        sect = re.search(r";; ANSWER SECTION:\n(.*?)\n\n", part, re.S)
        if sect:
            for line in sect.group(1).splitlines():
                f = line.split()
                d["answers"].append((f[0], int(f[1]), f[3], f[4]))
        out.append(d)
    return out


def dig1(server, port, *args, src=None):
    res, r = dig(server, port, *args, src=src)
    assert len(res) == 1, "dig %r: %s%s" % (args, r.stdout, r.stderr)
    return res[0]


# --------------------------------------------------------------------------
# gatekeeper

def door(name="door", listen="127.0.0.1:0", **keys):
    return netns.listener(name, "dns", listen, **keys)


def cfg(*listeners, admin=None, level="info", extra=""):
    out = "log:\n  level: %s\n" % level
    if admin:
        out += "admin:\n  listen: 127.0.0.1:%d\n" % admin
    return out + extra + "listeners:\n" + "".join(listeners)


def admin_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read().decode()


def dns_metrics(port, listener="door"):
    out = {}
    for m in re.finditer(r'^gatekeeper_dns_queries_total\{listener="([^"]*)",result="(\w+)"\} (\S+)$',
                         admin_get(port, "/metrics"), re.M):
        if m.group(1) == listener:
            out[m.group(2)] = int(float(m.group(3)))
    return out


def refused_lines(g, client_prefix=None):
    out = [d for d in g.parsed() if d.get("msg") == "dns refused"]
    if client_prefix:
        out = [d for d in out if d.get("client", "").startswith(client_prefix)]
    return out


def srv(g, name="door"):
    return g.addr(name)


ALLOW = ["api.github.com", "*.pkg.test", "ok.test", "sentinel.ok.test"]


def skip_unless_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


# --------------------------------------------------------------------------
# Answers

def test_allowed_names_answered_with_the_address_asked(gk):
    """answer: [] -> the address the query came to, UDP and TCP; exact and
    wildcard names, any case, any depth below a *.suffix; AA set, RA clear."""
    g = gk(cfg(door(listen="0.0.0.0:0", allow=ALLOW, answer=[])))
    port = srv(g)[1]
    for dst in ("127.0.0.1", "127.0.0.7", "127.0.0.8"):
        for name in ("api.github.com", "API.GitHub.COM", "x.pkg.test", "a.b.C.Pkg.Test"):
            for tcp in ([], ["+tcp"]):
                d = dig1(dst, port, name, "A", *tcp)
                assert d["status"] == "NOERROR", (dst, name, tcp, d)
                assert [(a[2], a[3]) for a in d["answers"]] == [("A", dst)], (dst, name, d)
                assert d["answers"][0][1] == 30
                assert "aa" in d["flags"] and "ra" not in d["flags"], d
                assert d["transport"] == ("TCP" if tcp else "UDP")
        # raw: the reply comes from the address asked, echoes id, question as sent
        with Udp((dst, port)) as u:
            u.sock.connect((dst, port))  # a reply from any other address is not taken
            u.send(query("Api.GitHub.Com", qid=4242))
            r = parse(u.recv())
            assert r["id"] == 4242 and r["qr"] == 1 and r["rcode"] == NOERROR
            assert r["question"] == ([b"Api", b"GitHub", b"Com"], T_A, 1)
            assert addrs(r) == [dst]


def test_configured_answers_by_family(gk):
    g = gk(cfg(door(allow=ALLOW, answer=["10.1.2.3", "10.1.2.4"], ttl="5s"),
               door("dual", allow=ALLOW, answer=["10.9.9.9", "2001:db8::7"])))
    with Udp(srv(g)) as u:
        r = u.q("ok.test")
        assert r["rcode"] == NOERROR and addrs(r) == ["10.1.2.3", "10.1.2.4"]
        assert {a[1] for a in r["answers"]} == {5}
        # a v4-only answer list: AAAA is NODATA (NOERROR, no answers), never NXDOMAIN
        r = u.q("ok.test", T_AAAA)
        assert (r["rcode"], r["an"]) == (NOERROR, 0), r
        for t in (T_HTTPS, T_MX, T_TXT, T_NS, 64, 999):
            r = u.q("x.pkg.test", t)
            assert (r["rcode"], r["an"], r["aa"]) == (NOERROR, 0, 1), (t, r)
    with Udp(srv(g, "dual")) as u:
        r = u.q("ok.test", T_AAAA)
        assert r["answers"] == [(T_AAAA, 30, "2001:db8::7")], r
        r = u.q("ok.test", T_A)
        assert r["answers"] == [(T_A, 30, "10.9.9.9")], r
        r = u.q("ok.test", T_ANY, edns={})
        assert addrs(r) == ["10.9.9.9", "2001:db8::7"], r
    d = dig1(*map(str, srv(g, "dual")), "x.pkg.test", "AAAA", "+tcp")
    assert [(a[2], a[3]) for a in d["answers"]] == [("AAAA", "2001:db8::7")]


def test_ipv6_door_answers_aaaa_with_its_own_address(gk, ipv6_available):
    g = gk(cfg(door(listen="[::1]:0", allow=ALLOW, answer=[])))
    port = srv(g)[1]
    d = dig1("::1", port, "ok.test", "AAAA")
    assert [(a[2], a[3]) for a in d["answers"]] == [("AAAA", "::1")], d
    d = dig1("::1", port, "ok.test", "A", "+tcp")
    assert d["status"] == "NOERROR" and d["answers"] == [], d


def test_parents_nodata_others_nxdomain(gk):
    g = gk(cfg(door(allow=ALLOW, answer=[])))
    with Udp(srv(g)) as u:
        for name in ("github.com", "GitHub.com.", "com", "pkg.test", "test", "."):
            for t in (T_A, T_AAAA, T_NS, T_ANY):
                r = u.q(name, t)
                assert (r["rcode"], r["an"]) == (NOERROR, 0), (name, t, r)
        for name in ("evil.test", "github.com.evil.test", "xapi.github.com", "b.api.github.com",
                     "evilpkg.test", "pkg.test.evil", "ok.test.attacker.example", "okxtest",
                     "co", "m", "ithub.com"):
            r = u.q(name)
            assert (r["rcode"], r["an"], r["aa"]) == (NXDOMAIN, 0, 1), (name, r)


def test_refuse_refused(gk):
    g = gk(cfg(door(allow=ALLOW, refuse="refused")))
    d = dig1(*map(str, srv(g)), "evil.test")
    assert d["status"] == "REFUSED" and d["answers"] == []
    d = dig1(*map(str, srv(g)), "evil.test", "+tcp")
    assert d["status"] == "REFUSED"
    # parents still NODATA, allowed still answered
    assert dig1(*map(str, srv(g)), "github.com")["status"] == "NOERROR"
    assert dig1(*map(str, srv(g)), "ok.test")["answers"]


def test_ip_literals_never_allowed(gk):
    """allow: ['*'] answers any name, but an address written as a name is not one."""
    g = gk(cfg(door(allow=["*"], answer=["10.4.4.4"])))
    with Udp(srv(g)) as u:
        assert addrs(u.q("anything.example")) == ["10.4.4.4"]
        for name in ("10.0.0.1", "169.254.169.254", "127.0.0.1.", "::1",
                     [b"2001:db8::1"], [b"fe80::1"], [b"::"]):
            r = u.q(name)
            assert r["rcode"] == NXDOMAIN and r["an"] == 0, (name, r)


def test_odd_byte_names_are_not_allowed_names(gk):
    """A label holding a dot or a byte no host name has is not a name: not
    answered, and (not being a parent of an allowed name either) NXDOMAIN
    and logged like any other refusal; with refuse: refused, REFUSED."""
    odd = ([b"x.y", b"pkg", b"test"], [b"ok.test"], [b"a\x00", b"pkg", b"test"],
           [b"\xc3\xa9", b"pkg", b"test"], [b"a b", b"pkg", b"test"], [b"::ffff:127.0.0.1"],
           [b"tab\t", b"example"], [b"\xff", b"example"])
    g = gk(cfg(door(allow=ALLOW, answer=["10.4.4.4"]),
               door("r", allow=ALLOW, answer=["10.4.4.4"], refuse="refused"),
               door("any", allow=["*"], answer=["10.4.4.4"])))
    bad = []
    for lst, want in (("door", NXDOMAIN), ("r", REFUSED), ("any", NXDOMAIN)):
        with Udp(srv(g, lst)) as u:
            for labels in odd:
                r = u.q(labels)
                assert r["an"] == 0, (lst, labels, r)
                if r["rcode"] != want:
                    bad.append((lst, labels, r["rcode"]))
    assert not bad, "odd names answered NODATA instead of the refusal: %r" % bad
    n = len([d for d in refused_lines(g) if d.get("reason") == "not_allowed"])
    assert n >= 5, "odd names not logged as refused:\n" + g.tail(20)


# --------------------------------------------------------------------------
# Garbage, loops, amplification

def test_garbage_datagrams_dropped_or_formerr_no_larger(gk):
    g = gk(cfg(door(allow=ALLOW, max_queries_per_source=0)))
    rnd = random.Random(1919)
    sent = []
    with Udp(srv(g)) as u:
        # shorter than a header: never answered
        for n in range(0, 12):
            for _ in range(3):
                data = rnd.randbytes(n) if n else b""
                assert u.around_sentinel(data) == [], "reply to a %d-byte datagram" % n
        base = query("x.pkg.test", edns={})
        cases = [rnd.randbytes(rnd.randrange(12, 400)) for _ in range(150)]
        # a plausible header, then junk
        cases += [struct.pack("!HHHHHH", rnd.randrange(65536), 0x0100, 1, rnd.randrange(3),
                              rnd.randrange(3), rnd.randrange(3)) + rnd.randbytes(rnd.randrange(0, 80))
                  for _ in range(150)]
        # a real query mutated: truncated, or a few bytes flipped
        for _ in range(150):
            b = bytearray(base)
            if rnd.random() < 0.4:
                b = b[:rnd.randrange(12, len(b))]
            for _ in range(rnd.randrange(1, 4)):
                b[rnd.randrange(2, len(b))] = rnd.randrange(256)
            cases.append(bytes(b))
        for data in cases:
            got = u.around_sentinel(data)
            assert len(got) <= 1, (data, got)
            if got:
                r = got[0]
                assert r[:2] == data[:2] and r[2] & 0x80, (data, r)
                assert data[2] & 0x80 == 0, ("a QR=1 datagram was answered", data, r)
                p = parse(r)
                if p["rcode"] != NOERROR and p["rcode"] != NXDOMAIN:
                    assert len(r) <= len(data), ("error reply larger than the garbage", data, r)
                assert len(r) <= 3 * len(data), ("reply over 3x", data, r)
                sent.append(data)
    assert g.alive()


def test_compression_pointers_in_the_question(gk):
    g = gk(cfg(door(allow=ALLOW, max_queries_per_source=0)))
    hdr = struct.pack("!HHHHHH", 77, 0x0100, 1, 0, 0, 0)
    tail = struct.pack("!HH", T_A, 1)
    cases = {
        "self": hdr + b"\xc0\x0c" + tail,
        "forward": hdr + b"\xc0\x0e" + b"\x02ok\x04test\x00" + tail,
        "into header": hdr + b"\xc0\x02" + tail,
        "loop": hdr + b"\x01a\xc0\x0c" + tail,
        "past end": hdr + b"\xc0\xff" + tail,
        "0x40 label": hdr + b"\x41a\x00" + tail,
        "too long": hdr + (b"\x3f" + b"a" * 63) * 4 + b"\x00" + tail,
    }
    with Udp(srv(g)) as u:
        for what, data in cases.items():
            got = u.around_sentinel(data)
            assert len(got) == 1, (what, got)
            r = parse(got[0])
            assert r["rcode"] == FORMERR and r["an"] == 0 and len(got[0]) <= len(data), (what, r)
        # opcode != QUERY: NOTIMP; class CH: REFUSED; QDCOUNT 0 or 2: FORMERR
        assert u.q("ok.test", opcode=2)["rcode"] == NOTIMP
        assert u.q("ok.test", qclass=3)["rcode"] == REFUSED
        assert u.q("ok.test", qclass=255)["rcode"] == NOERROR
        for qd in (0, 2):
            data = query("ok.test", qd=qd)
            got = u.around_sentinel(data)
            assert len(got) == 1 and parse(got[0])["rcode"] == FORMERR and len(got[0]) <= len(data)


def test_responses_never_answered_and_two_doors_do_not_loop(gk):
    """A response (QR=1) sent to a door is dropped. With root, a query is
    sent with the source address of a second door (raw socket): the first
    answers it to the second door, which must drop that answer, and a door
    asked by itself must too; the counters then stay still."""
    port = h.free_port()
    g = gk(cfg(door("a", allow=ALLOW), door("b", allow=ALLOW), admin=port))
    a, b = srv(g, "a"), srv(g, "b")
    with Udp(a) as u:
        resp = bytearray(query("ok.test"))
        resp[2] |= 0x80
        for data in (bytes(resp), bytes(resp[:12]), b"\x80" * 40,
                     parse_ok_reply(u, "ok.test")):
            d = bytearray(data)
            d[2] |= 0x80
            assert u.around_sentinel(bytes(d)) == []
    if os.geteuid() != 0:
        return
    before_a, before_b = dns_metrics(port, "a"), dns_metrics(port, "b")

    def total(m):
        return sum(m.values())

    spoof_udp(b, a, query("ok.test"))          # b -> a: a answers b, b drops it
    spoof_udp(b, a, query("evil.test"))        # same with an NXDOMAIN
    spoof_udp(a, a, query("ok.test"))          # a asks itself
    h.poll(lambda: total(dns_metrics(port, "a")) - total(before_a) >= 4
           and total(dns_metrics(port, "b")) - total(before_b) >= 2, 10,
           "the spoofed queries and their answers counted", g)
    ma = h.wait_stalled(lambda: dns_metrics(port, "a"), quiet=1.0, timeout=10)
    mb = h.wait_stalled(lambda: dns_metrics(port, "b"), quiet=0.2, timeout=10)
    da = {k: ma.get(k, 0) - before_a.get(k, 0) for k in ma}
    db = {k: mb.get(k, 0) - before_b.get(k, 0) for k in mb}
    assert {k: v for k, v in da.items() if v} == {"answered": 2, "nxdomain": 1, "dropped": 1}, da
    assert {k: v for k, v in db.items() if v} == {"dropped": 2}, db


def parse_ok_reply(u, name):
    r = u.ask(query(name))
    assert r is not None
    return r


def spoof_udp(src, dst, payload):
    """Send one UDP datagram from src (host, port) to dst through a raw socket."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    try:
        s.bind((src[0], 0))
        s.sendto(struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload, (dst[0], 0))
    finally:
        s.close()


def test_amplification_bounded(gk):
    many = ["10.0.0.%d" % i for i in range(1, 9)]
    g = gk(cfg(door(allow=ALLOW, answer=many, max_queries_per_source=0)))
    with Udp(srv(g)) as u:
        # a short query whose answer would be ~5x its size: truncated, no answers
        q = query("ok.test", T_A)
        raw = u.ask(q)
        r = parse(raw)
        assert len(raw) <= 3 * len(q), (len(raw), len(q))
        assert r["tc"] == 1 and r["an"] == 0, r
        # a long name makes the same answer fit in 3x
        q = query("a" * 60 + ".pkg.test", T_A)
        raw = u.ask(q)
        assert len(raw) <= 3 * len(q) and parse(raw)["an"] == 8
        # padding: a big query gets a small answer, never an echo of the padding
        for pad in (100, 468, 1200, 4000):
            q = query("x.pkg.test", T_ANY, edns={"options": struct.pack("!HH", 12, pad) + b"\0" * pad})
            raw = u.ask(q)
            r = parse(raw)
            assert len(raw) <= 3 * len(q) and len(raw) < 200, (pad, len(raw))
            assert r["opt"] is not None
        # junk additional records are read over, not echoed
        junk = b"".join(b"\0" + struct.pack("!HHIH", T_TXT, 1, 0, 200) + b"j" * 200 for _ in range(20))
        q = query("x.pkg.test", arcount=20, extra=b"") + junk
        raw = u.ask(q)
        assert raw is not None and len(raw) < 200 and parse(raw)["rcode"] == NOERROR
    # dig: UDP truncates and dig retries over TCP, which has everything
    d = dig1(*map(str, srv(g)), "ok.test", "+noedns", "+ignore")
    assert "tc" in d["flags"] and d["answers"] == [], d
    d = dig1(*map(str, srv(g)), "ok.test", "+bufsize=512")
    assert sorted(a[3] for a in d["answers"]) == many and d["transport"] == "TCP", d
    d = dig1(*map(str, srv(g)), "ok.test", "+tcp")
    assert sorted(a[3] for a in d["answers"]) == many


def test_edns_echoed_and_badvers(gk):
    g = gk(cfg(door(allow=ALLOW)))
    host, port = map(str, srv(g))
    with Udp(srv(g)) as u:
        r = u.q("ok.test", edns={"size": 4096})
        assert r["opt"] == {"size": 1232, "ext_rcode": 0, "version": 0}, r
        r = u.q("ok.test")
        assert r["opt"] is None and r["ar"] == 0
        for ver in (1, 2, 255):
            raw = u.ask(query("ok.test", edns={"version": ver}))
            r = parse(raw)
            assert r["an"] == 0 and r["opt"] is not None, r
            assert (r["opt"]["ext_rcode"] << 4) | r["rcode"] == 16, ("BADVERS", ver, r)
            assert r["opt"]["version"] == 0
        # two OPT records: FORMERR
        data = query("ok.test", edns={}, arcount=2) + opt_rr()
        assert parse(u.ask(data))["rcode"] == FORMERR
    d = dig1(host, port, "ok.test")
    assert d["edns"] == (0, 1232)
    d = dig1(host, port, "ok.test", "+noedns")
    assert d["edns"] is None and d["answers"]
    d = dig1(host, port, "ok.test", "+edns=1", "+noednsnegotiation")
    assert d["status"] == "BADVERS" and d["edns"] == (0, 1232), d


# --------------------------------------------------------------------------
# TCP

def test_tcp_framing(gk):
    g = gk(cfg(door(allow=ALLOW, answer=["10.2.2.2"]), level="debug"))
    a = srv(g)
    s = h.connect(a)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # two queries in one segment: two answers, in order
    s.sendall(tcp_frame(query("ok.test", qid=1)) + tcp_frame(query("evil.test", qid=2)))
    r1, r2 = parse(tcp_read_reply(s)), parse(tcp_read_reply(s))
    assert (r1["id"], r1["rcode"], addrs(r1)) == (1, NOERROR, ["10.2.2.2"])
    assert (r2["id"], r2["rcode"]) == (2, NXDOMAIN)
    # one query split over several segments, the length itself split too
    data = tcp_frame(query("x.pkg.test", qid=3, edns={}))
    for part in (data[:1], data[1:5], data[5:20], data[20:]):
        s.sendall(part)
        time.sleep(0.05)
    r = parse(tcp_read_reply(s))
    assert (r["id"], addrs(r), r["opt"]["size"]) == (3, ["10.2.2.2"], 1232)
    # a garbage frame (valid length) gets FORMERR or nothing, the stream goes on
    s.sendall(tcp_frame(b"\x00\x09" + b"\xff" * 20) + tcp_frame(query("ok.test", qid=4)))
    r = parse(tcp_read_reply(s))
    if r["id"] == 9:
        r = parse(tcp_read_reply(s))
    assert r["id"] == 4 and addrs(r) == ["10.2.2.2"]
    # a frame shorter than a header closes the connection
    s.sendall(b"\x00\x05hello")
    assert h.wait_closed(s) in ("eof", "reset")
    s.close()
    # dig +keepopen: several queries on one connection
    mark = g.mark()
    res, proc = dig(*map(str, a), "+tcp", "+keepopen", "ok.test", "x.pkg.test", "evil.test", "github.com")
    assert [d["status"] for d in res] == ["NOERROR", "NOERROR", "NXDOMAIN", "NOERROR"], proc.stdout
    assert [len(d["answers"]) for d in res] == [1, 1, 0, 0]
    names = {"ok.test", "x.pkg.test", "evil.test", "github.com"}
    clients = h.poll(lambda: (lambda c: c if len(c) >= 4 else None)(
        [d["client"] for d in g.parsed()[mark:]
         if d.get("msg") in ("dns answered", "dns refused") and d.get("name") in names]),
        10, "the +keepopen queries logged", g)
    assert len(set(clients)) == 1, ("+keepopen: one connection expected", clients)


def test_tcp_pipelining_and_a_client_that_never_reads(gk):
    g = gk(cfg(door(allow=ALLOW, answer=["10.2.2.2"], max_queries_per_source=0)))
    a = srv(g)
    # 2000 queries in one go, then read: all answered, in order
    s = h.connect(a)
    s.sendall(b"".join(tcp_frame(query("p%d.pkg.test" % i, qid=i)) for i in range(2000)))
    for i in range(2000):
        r = parse(tcp_read_reply(s))
        assert r["id"] == i and addrs(r) == ["10.2.2.2"], (i, r)
    s.close()
    # a client that sends and never reads is cut off, not buffered for
    s = h.connect(a)
    s.settimeout(2)
    blob = b"".join(tcp_frame(query("n%d.pkg.test" % i, qid=i & 0xFFFF)) for i in range(5000))
    cut = False
    for _ in range(40):
        try:
            s.sendall(blob)
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            cut = True
            break
    assert cut, "gatekeeper kept reading queries from a client that reads no answers"
    with Udp(a) as u:
        assert addrs(u.q("ok.test")) == ["10.2.2.2"]
    s.close()
    assert g.alive()


def test_tcp_max_connections(gk):
    g = gk(cfg(door(allow=ALLOW, max_connections=2, max_queries_per_source=0)))
    a = srv(g)
    c1, c2 = h.connect(a), h.connect(a)
    for i, c in enumerate((c1, c2)):
        c.sendall(tcp_frame(query("ok.test", qid=i)))
        assert parse(tcp_read_reply(c))["id"] == i
    c3 = h.connect(a)  # the kernel's backlog takes it; gatekeeper does not yet
    c3.sendall(tcp_frame(query("ok.test", qid=3)))
    with Udp(a) as u:  # UDP is not held up by full TCP
        assert u.q("ok.test")["an"] == 1
    import select
    r, _, _ = select.select([c3], [], [], 0.3)
    assert not r, "a third connection served past max_connections: 2"
    c1.close()
    assert parse(tcp_read_reply(c3))["id"] == 3
    c2.close()
    c3.close()


def test_tcp_idle_timeout(gk):
    g = gk(cfg(door(allow=ALLOW, idle_timeout="1s")))
    s = h.connect(srv(g))
    s.sendall(tcp_frame(query("ok.test", qid=5)))
    assert parse(tcp_read_reply(s))["id"] == 5
    assert h.wait_closed(s, timeout=15) in ("eof", "reset")
    s.close()
    s = h.connect(srv(g))  # never says anything
    assert h.wait_closed(s, timeout=15) in ("eof", "reset")
    s.close()
    s = h.connect(srv(g))  # half a frame, then nothing
    s.sendall(b"\x00\x30\x00\x01")
    assert h.wait_closed(s, timeout=15) in ("eof", "reset")
    s.close()


# --------------------------------------------------------------------------
# Sources, rates, logs, report mode, metrics

def _flood(port, g, socks, rounds, per_round, name="f%d.pkg.test", listener="door"):
    """Send per_round queries from each socket, round after round; before the
    next round, wait until the door has counted every query so far, so the
    kernel never drops any for a full socket buffer (a flood has to go
    through the rate limit, not around it)."""
    sent = 0
    base = sum(dns_metrics(port, listener).values())
    for r in range(rounds):
        for i in range(per_round):
            for s in socks:
                s.send(query(name % (r * per_round + i)))
                sent += 1
        h.poll(lambda: sum(dns_metrics(port, listener).values()) - base >= sent, 10,
               "%d flood queries counted" % sent, g, interval=0.02)
    return sent


def _count_replies(sock):
    got = 0
    while sock.recv(timeout=1.0) is not None:
        got += 1
    return got


def test_rate_limit_per_source(gk):
    port = h.free_port()
    g = gk(cfg(door(allow=ALLOW, max_queries_per_source=20), admin=port))
    a = srv(g)
    with Udp(a, src="127.0.0.2") as flood:
        flood.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sent = _flood(port, g, [flood], 4, 50)
        # 127.0.0.3 is not held back by 127.0.0.2's exhausted bucket
        with Udp(a, src="127.0.0.3") as other:
            raw = other.ask(query("ok.test"))
            assert raw is not None, ("127.0.0.3 not answered after 127.0.0.2's flood", dns_metrics(port))
            r = parse(raw)
            assert r["rcode"] == NOERROR and r["an"] == 1
        got = _count_replies(flood)
    assert 0 < got < sent / 2, (got, sent)
    m = dns_metrics(port)
    assert m.get("rate_limited", 0) > 0 and m["rate_limited"] + m.get("answered", 0) == sent + 1, m
    assert m["rate_limited"] == sent - got, (m, got)


def test_rate_limit_not_reset_by_a_colliding_source(gk):
    """Two addresses an attacker owns must not reset each other's bucket: the
    limit is per source, whatever slot a source hashes to."""
    def slot(ip):
        hsh = 2166136261
        for b in socket.inet_aton(ip):
            hsh = ((hsh ^ b) * 16777619) & 0xFFFFFFFF
        return hsh % 4096

    def ip(x):
        return "127.%d.%d.%d" % (x >> 16, (x >> 8) & 255, x & 255)

    other = next(ip(x) for x in range(3, 1 << 24)
                 if slot(ip(x)) == slot("127.0.0.2") and x & 255 not in (0, 255))
    port = h.free_port()
    g = gk(cfg(door(allow=ALLOW, max_queries_per_source=20), admin=port))
    a = srv(g)
    with Udp(a, src="127.0.0.2") as one, Udp(a, src=other) as two:
        for s in (one, two):
            s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        _flood(port, g, [one, two], 4, 40)
        got1, got2 = _count_replies(one), _count_replies(two)
    assert got1 < 80 and got2 < 80, (
        "127.0.0.2 and %s, alternating, each got %d and %d of 160 answers past a 20/s limit"
        % (other, got1, got2))


def test_sources_refused(gk):
    g = gk(cfg(door(allow=ALLOW, sources=["127.0.0.2"])))
    host, port = map(str, srv(g))
    assert dig1(host, port, "ok.test", src="127.0.0.2")["answers"]
    for extra in ([], ["+tcp"]):
        d = dig1(host, port, "ok.test", *extra, src="127.0.0.3")
        assert d["status"] == "REFUSED" and d["answers"] == [], (extra, d)
        d = dig1(host, port, "github.com", *extra, src="127.0.0.3")
        assert d["status"] == "REFUSED", d
    h.poll(lambda: [d for d in refused_lines(g, "127.0.0.3:") if d.get("reason") == "source_denied"],
           10, "source_denied line", g)


def test_refusals_logged_and_suppressed(gk):
    g = gk(cfg(door(allow=ALLOW, max_queries_per_source=0)))
    with Udp(srv(g), src="127.0.0.4") as u:
        n = 0
        for i in range(40):
            assert u.q("q%d.attacker.example" % n, T_TXT)["rcode"] == NXDOMAIN
            n += 1
        found = None
        deadline = time.monotonic() + 15
        while found is None and time.monotonic() < deadline:
            time.sleep(0.3)
            assert u.q("q%d.attacker.example" % n, T_TXT)["rcode"] == NXDOMAIN
            n += 1
            for d in refused_lines(g, "127.0.0.4:"):
                if int(d.get("suppressed", 0)) > 0:
                    found = d
                    break
    assert found, "no dns refused line with suppressed>0:\n" + g.tail(30)
    lines = refused_lines(g, "127.0.0.4:")
    upto = lines[:lines.index(found) + 1]
    first_burst = [d for d in upto if int(d["name"][1:].split(".")[0]) < 40]
    assert len(first_burst) <= 10, len(first_burst)  # a flood is not one line per query
    k = int(found["name"][1:].split(".")[0])
    assert sum(1 + int(d["suppressed"]) for d in upto) == k + 1, upto
    d = upto[0]
    assert (d["listener"], d["type"], d["transport"], d["reason"]) == ("door", "TXT", "udp",
                                                                        "not_allowed"), d


def test_report_mode_answers_and_observes(gk):
    port = h.free_port()
    g = gk(cfg(door(allow=["ok.test"], action="report", sources=["127.0.0.2"]), admin=port))
    with Udp(srv(g), src="127.0.0.2") as u:
        r = u.q("exfil.attacker.example")
        assert r["rcode"] == NOERROR and addrs(r) == ["127.0.0.1"]
    with Udp(srv(g), src="127.0.0.3") as u:
        r = u.q("ok.test")
        assert r["rcode"] == NOERROR and addrs(r) == ["127.0.0.1"], r

    def entries():
        return json.loads(admin_get(port, "/observed"))

    e = h.poll(lambda: [x for x in entries() if x.get("name") == "exfil.attacker.example"], 10,
               "observed entry", g)
    assert len(e) == 1 and e[0]["mode"] == "dns" and e[0]["listener"] == "door", e
    assert (e[0]["port"], e[0]["source"], e[0]["reason"]) == (0, "127.0.0.2", "not_allowed"), e
    e = h.poll(lambda: [x for x in entries() if x.get("name") == "ok.test"], 10,
               "observed source_denied entry", g)
    assert len(e) == 1 and (e[0]["mode"], e[0]["source"], e[0]["reason"]) == (
        "dns", "127.0.0.3", "source_denied"), e


def test_metrics_results(gk):
    port = h.free_port()
    g = gk(cfg(door(allow=ALLOW, max_queries_per_source=0),
               door("door2", allow=ALLOW, refuse="refused", max_queries_per_source=0),
               door("door3", allow=ALLOW, max_queries_per_source=1), admin=port))
    with Udp(srv(g)) as u:
        u.q("ok.test"), u.q("x.pkg.test")                   # answered 2
        u.q("ok.test", T_AAAA), u.q("test"), u.q("ok.test", T_MX)  # nodata 3
        u.q("evil.test")                                     # nxdomain 1
        u.q("ok.test", opcode=4), u.q("ok.test", qd=2)       # error 2
        resp = bytearray(query("ok.test"))
        resp[2] |= 0x80
        assert u.around_sentinel(bytes(resp)) == [] and u.around_sentinel(b"\1" * 5) == []  # dropped 2
    with Udp(srv(g, "door2")) as u:
        assert u.q("evil.test")["rcode"] == REFUSED
    with Udp(srv(g, "door3")) as u:
        for _ in range(10):
            u.send(query("ok.test"))
    # (the two sentinel queries are answered too)
    want = {"answered": 2 + 2, "nodata": 3, "nxdomain": 1, "error": 2, "dropped": 2}
    h.poll(lambda: dns_metrics(port) == want, 10, "door metrics %r" % want, g)
    assert dns_metrics(port, "door2") == {"refused": 1}
    m3 = h.poll(lambda: (lambda m: m if sum(m.values()) == 10 else None)(dns_metrics(port, "door3")),
                10, "door3 counted", g)
    assert m3.get("rate_limited", 0) >= 1 and m3.get("answered", 0) >= 1, m3


# --------------------------------------------------------------------------
# Quick mode, config checks

def test_quick_mode(quick):
    g = quick(["--mode", "dns", "--listen", "127.0.0.1:0", "--allow", "q.test,*.w.test",
               "--answer", "10.9.8.7", "--ttl", "5s", "--refuse", "refused",
               "--max-queries-per-source", "0"])
    line = [d for d in g.parsed() if d.get("msg") == "listening"][0]
    host, port = h.split_hostport(line["addr"])
    assert line["mode"] == "dns"
    d = dig1(host, str(port), "q.test")
    assert [(a[1], a[3]) for a in d["answers"]] == [(5, "10.9.8.7")], d
    assert dig1(host, str(port), "deep.x.w.test", "+tcp")["answers"]
    assert dig1(host, str(port), "evil.test")["status"] == "REFUSED"


GOOD = """
listeners:
  - name: door
    listen: 127.0.0.1:5353
    mode: dns
    allow: [api.github.com, "*.pkg.test"]
    answer: [10.0.0.1, "2001:db8::1"]
    ttl: 1m
    refuse: refused
    max_queries_per_source: 50
    idle_timeout: 2s
    sources: [127.0.0.0/8]
"""


def _check(tmp_path, text):
    p = h.write_config(text, tmp_path)
    return h.run_gatekeeper(["-t", "-c", p])


def test_check_accepts_a_dns_config(tmp_path):
    r = _check(tmp_path, GOOD)
    assert r.returncode == 0, r.stderr


BAD = {
    "upstream": ("    upstream: 127.0.0.1:53\n", r"takes no 'upstream'"),
    "routes": ("    routes:\n      - match: a.test\n        upstream: 127.0.0.1:53\n", r"'routes'"),
    "address in allow": ("    allow: [ok.test, 10.0.0.1]\n", r"not addresses"),
    "block in allow": ("    allow: [ok.test, 10.0.0.0/8]\n", r"not addresses"),
    "block in answer": ("    allow: [ok.test]\n    answer: [10.0.0.0/24]\n", r"not blocks"),
    "no allow": ("", r"needs an 'allow'"),
}


def test_check_rejects_bad_dns_configs(tmp_path):
    for what, (body, rx) in BAD.items():
        extra = "" if "allow" in body or what == "no allow" else "    allow: [ok.test]\n"
        text = ("listeners:\n  - name: door\n    listen: 127.0.0.1:5353\n    mode: dns\n"
                + extra + body)
        r = _check(tmp_path, text)
        assert r.returncode != 0, (what, r.stderr)
        assert re.search(r"gk(-\d+)?\.yaml:\d+:\d+: .*" + rx, r.stderr), (what, r.stderr)
    for key, val in (("answer", "[10.0.0.1]"), ("ttl", "5s"), ("refuse", "refused"),
                     ("max_queries_per_source", "5")):
        text = ("listeners:\n  - name: t\n    listen: 127.0.0.1:8443\n    mode: tls\n"
                "    upstream: 127.0.0.1:443\n    %s: %s\n" % (key, val))
        r = _check(tmp_path, text)
        assert r.returncode != 0, (key, r.stderr)
        assert re.search(r"\.yaml:2:5: .*'%s' needs mode dns" % key, r.stderr), (key, r.stderr)


# --------------------------------------------------------------------------
# Exfiltration: nothing is ever forwarded

class CanaryDns:
    """A UDP+TCP listener on host:port that records every packet/connection."""

    def __init__(self, host="127.0.0.1", port=0):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.udp = socket.socket(fam, socket.SOCK_DGRAM)
        self.udp.bind((host, port))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(fam, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, self.port))
        self.tcp.listen(16)
        self.host = host
        self.hits = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        import select
        while not self._stop:
            try:
                r, _, _ = select.select([self.udp, self.tcp], [], [], 0.1)
            except (OSError, ValueError):
                return
            for s in r:
                try:
                    if s is self.udp:
                        data, frm = s.recvfrom(65535)
                        self.hits.append(("udp", frm[0], data[:64].hex()))
                    else:
                        c, frm = s.accept()
                        self.hits.append(("tcp", frm[0], ""))
                        c.close()
                except OSError:
                    pass

    def close(self):
        self._stop = True
        self._t.join(timeout=5)
        self.udp.close()
        self.tcp.close()


EXFIL = "6578666974726174696f6e2d7365637265742d30303031.c2.attacker.example"


def test_exfiltration_names_never_forwarded(gk):
    canary = CanaryDns()
    try:
        extra = ("resolver:\n  nameservers: [\"127.0.0.1:%d\"]\n  timeout: 1s\n" % canary.port)
        g = gk(cfg(door(allow=ALLOW, max_queries_per_source=0), extra=extra))
        host, port = srv(g)
        for args in (["A"], ["TXT"], ["AAAA", "+tcp"], ["ANY"], ["NS", "+rec"], ["TXT", "+norec"]):
            d = dig1(host, str(port), EXFIL, *args)
            assert d["status"] == "NXDOMAIN" and d["answers"] == [], (args, d)
        with Udp((host, port)) as u:
            for i in range(50):
                assert u.q("%04x%s.c2.attacker.example" % (i, "ab" * 20), T_TXT)["rcode"] == NXDOMAIN
        r = subprocess.run([h.GK_BIN, "audit", "--timeout", "2s", "--nameservers",
                            "127.0.0.1:%d" % port, "--expect-no-dns", EXFIL,
                            "--expect-dns", "ok.test=127.0.0.1"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        time.sleep(0.5)  # anything forwarded would have reached the canary by now
        assert canary.hits == [], canary.hits
    finally:
        canary.close()


# --------------------------------------------------------------------------
# glibc and c-ares, in a namespace of our own

NS_DOOR, NS_CANARY = "10.77.0.53", "10.77.0.54"


def test_stub_resolvers_in_a_namespace():
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace with port 53")
    ok, why = netns.mounts_available()
    if not ok:
        pytest.skip(why)
    r = subprocess.run(["unshare", "-n", "-m", "--propagation", "private", sys.executable,
                        os.path.abspath(__file__), "--netns-driver"],
                       capture_output=True, text=True, timeout=90)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise AssertionError("driver: rc=%d\n%s\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    assert not out.get("error"), out["error"] + "\n" + "\n".join(out.get("log", [])[-40:])
    p = out["probes"]
    for name in ("ok.gk.test", "OK.Gk.Test.", "x.pkg.gk.test"):
        for env in ("udp", "edns0", "tcp"):
            got = p["getent %s %s" % (env, name)]
            assert got["rc"] == 0 and set(got["addrs"]) == {NS_DOOR}, (name, env, got)
    for name in (EXFIL, "gk.test", "evil.test", "10.77.0.54.evil"):
        for env in ("udp", "tcp"):
            got = p["getent %s %s" % (env, name)]
            assert got["rc"] == 2 and not got["addrs"], (name, env, got)
    assert p["py ok"] == [NS_DOOR], p["py ok"]
    # NODATA for the v6-only lookup (EAI_NODATA), NXDOMAIN for the exfiltration (EAI_NONAME)
    assert p["py ok v6"].startswith("gaierror [Errno %d]" % socket.EAI_NODATA), p["py ok v6"]
    assert p["py exfil"].startswith("gaierror [Errno %d]" % socket.EAI_NONAME), p["py exfil"]
    audit = p["audit"]
    assert audit["rc"] == 0, audit
    assert p["dig"]["status"] == "NOERROR" and p["dig"]["answers"][0][3] == NS_DOOR, p["dig"]
    assert out["canary"] == [], ("a query went past the door", out["canary"])


def _ns_driver():
    out = {"error": None, "probes": {}, "canary": [], "log": []}
    g = None
    canaries = []
    import tempfile
    import traceback
    tmp = tempfile.mkdtemp(prefix="gk-dnsdoor-")
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        for a in (NS_DOOR, NS_CANARY):
            subprocess.run(["ip", "addr", "add", a + "/32", "dev", "lo"], check=True)
        netns._bind_files({
            "/etc/resolv.conf": "nameserver %s\nnameserver %s\noptions timeout:2 attempts:1\n"
                                % (NS_DOOR, NS_CANARY),
            "/etc/hosts": "127.0.0.1 localhost\n"}, tmp)
        canaries = [CanaryDns(NS_CANARY, 53), CanaryDns("127.0.0.1", 0)]
        text = cfg(door(listen="%s:53" % NS_DOOR, allow=["ok.gk.test", "*.pkg.gk.test"], answer=[]),
                   extra="resolver:\n  nameservers: [\"127.0.0.1:%d\"]\n" % canaries[1].port)
        g = h.start_gatekeeper(text, tmp)
        envs = {"udp": {}, "edns0": {"RES_OPTIONS": "edns0"}, "tcp": {"RES_OPTIONS": "use-vc"}}
        for name in ("ok.gk.test", "OK.Gk.Test.", "x.pkg.gk.test", EXFIL, "gk.test", "evil.test",
                     "10.77.0.54.evil"):
            for env, extra in envs.items():
                r = subprocess.run(["getent", "ahosts", name], capture_output=True, text=True,
                                   timeout=30, env=dict(os.environ, **extra))
                out["probes"]["getent %s %s" % (env, name)] = {
                    "rc": r.returncode, "addrs": sorted({l.split()[0] for l in r.stdout.splitlines()})}
        py = ("import socket,sys\n"
              "fam=socket.AF_INET6 if sys.argv[2]=='6' else socket.AF_UNSPEC\n"
              "try:\n print(','.join(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1],443,fam)})) or 'no address')\n"
              "except socket.gaierror as e:\n print('gaierror %s' % e)\n")
        for key, name, fam in (("py ok", "ok.gk.test", "0"), ("py ok v6", "ok.gk.test", "6"),
                               ("py exfil", EXFIL, "0")):
            r = subprocess.run([sys.executable, "-c", py, name, fam], capture_output=True, text=True,
                               timeout=30)
            v = r.stdout.strip()
            out["probes"][key] = v.split(",") if key == "py ok" else v
        r = subprocess.run([h.GK_BIN, "audit", "--timeout", "3s", "--nameservers", NS_DOOR,
                            "--expect-no-dns", EXFIL, "--expect-no-dns", "gk.test",
                            "--expect-dns", "ok.gk.test=" + NS_DOOR,
                            "--expect-open", "x.pkg.gk.test:53"],
                           capture_output=True, text=True, timeout=60)
        out["probes"]["audit"] = {"rc": r.returncode, "out": r.stdout + r.stderr}
        res, _ = dig(NS_DOOR, 53, "ok.gk.test")
        out["probes"]["dig"] = res[0] if res else {"status": None}
        time.sleep(0.5)  # anything forwarded reaches a canary by now
    except Exception:
        out["error"] = traceback.format_exc()
    finally:
        for c in canaries:
            out["canary"] += c.hits
            c.close()
        if g is not None:
            g.stop()
            out["log"] = g.lines()
        shutil.rmtree(tmp, ignore_errors=True)
    for v in out["probes"].values():
        if isinstance(v, dict) and "flags" in v:
            v["flags"] = sorted(v["flags"])
    json.dump(out, sys.stdout)


if __name__ == "__main__" and "--netns-driver" in sys.argv:
    _ns_driver()
