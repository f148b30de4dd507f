"""Egress bypass attacks in a private network namespace: the rules that stand
between a client and an address it must not reach once the address guard
itself has been opened.

As in test_egress_netns.py, netns.py runs gatekeeper, dnsmasq and a canary
on every target address (ports 80 and 443) inside `unshare -n` (here with
`-m` too: /etc/resolv.conf and /etc/hosts are replaced for the namespace
only). Canaries on port 80 answer like HTTP servers, so responses can be
counted on a kept-alive connection and every byte a canary got is recorded;
canaries on 443 greet with "CANARY <addr> 443". Each attack is checked for
its refusal (status and X-Gatekeeper-Reason, TLS alert or plain close, the
reason on the access line, upstream "-") and for no canary hit; control
probes reach each canary when the policy allows it, which proves the canary
path works and that a refusal is the rule's doing.

Most attack listeners open the target block with allow_ranges, so that the
default address classes do not hide the hole: only the rule under test
stands between the attacker and the canary.

  * Keep-alive requests on connect listeners: every absolute-form request
    is checked on its own (allowlist, port, proxy_auth), carries no
    Proxy-Authorization / Proxy-Connection upstream, goes only to the
    origin the connection was opened for (421 misdirected / 403
    not_allowed otherwise), and is framed by the http-mode rules.
  * IPv4 literals in other spellings (leading zeros, octal, hex, fewer
    parts, bare integers, a trailing dot, 0X) are `malformed`, never
    resolved; a canonical literal never rides a `$host` catch-all.
  * Names from the wire are looked up exactly as written, in DNS only: no
    resolv.conf search list or ndots, no /etc/hosts (configured upstream
    names keep both).
  * The address guard refuses every IPv6 special-purpose block that is not
    globally reachable, and deny_ranges given as IPv4 catch the IPv4
    address inside every translation form (Teredo, local-use NAT64 at each
    RFC 6052 position, SIIT, IPv4-compatible, mapped, NAT64, 6to4), even
    when allow_ranges opens the IPv6 block.
"""

import base64
import ipaddress
import re

import pytest

import netns
import tlsutil as t

ok, why = netns.mounts_available()
pytestmark = pytest.mark.skipif(not ok, reason="no private network+mount namespace: %s" % why)

ALERT_UNRECOGNIZED_NAME = bytes.fromhex("15030300020270")
ALERT_ACCESS_DENIED = bytes.fromhex("15030300020231")
ALERT_INTERNAL_ERROR = bytes.fromhex("15030300020250")
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"

PORTS = [80, 443]
HTTP_PORTS = [80]


def v6(a):
    return str(ipaddress.ip_address(a))


def teredo(server, client):
    """A Teredo address (2001::/32): server IPv4 in bits 32-63, client IPv4
    in the last 32 bits XOR 0xffffffff."""
    s = ipaddress.ip_address(server).packed
    c = bytes(b ^ 0xFF for b in ipaddress.ip_address(client).packed)
    return v6(bytes.fromhex("20010000") + s + b"\x00" * 4 + c)


# local-use NAT64 64:ff9b:1::/48: the IPv4 address sits at a place that
# depends on the prefix length in use (RFC 6052 2.2; bits 64-71 are zero)
NAT64L_POSITIONS = {48: (6, 7, 9, 10), 56: (7, 9, 10, 11), 64: (9, 10, 11, 12), 96: (12, 13, 14, 15)}
# bytes 6..15 chosen so that every position holds a public IPv4 address
NAT64L_FILL = [8, 8, 0, 5, 6, 7, 9, 9, 9, 9]


def nat64l_embedded(addr):
    b = ipaddress.ip_address(addr).packed
    return {plen: str(ipaddress.ip_address(bytes(b[i] for i in pos))) for plen, pos in NAT64L_POSITIONS.items()}


def nat64l(v4=None, plen=None):
    b = bytearray(bytes.fromhex("0064ff9b0001") + bytes(NAT64L_FILL))
    if v4 is not None:
        for i, x in zip(NAT64L_POSITIONS[plen], ipaddress.ip_address(v4).packed):
            b[i] = x
    return v6(bytes(b))


# --------------------------------------------------------------------------
# Names and addresses

OK = "ok.gk.test"          # 10.0.0.5: the origin kept-alive connections are opened for
OK2 = "ok2.gk.test"        # 10.0.0.5 too: same address, another origin
OTHER = "other.gk.test"    # 10.0.0.8, allowed
EVIL = "evil.gk.test"      # 10.0.0.8, never allowed
META = "meta.gk.test"      # 169.254.169.254
CREDS = "alice:s3cret"
CREDS_B64 = base64.b64encode(CREDS.encode()).decode()
WRONG_B64 = base64.b64encode(b"alice:wrong").decode()

DNS = {
    OK: ["10.0.0.5"], OK2: ["10.0.0.5"], OTHER: ["10.0.0.8"], EVIL: ["10.0.0.8"],
    META: ["169.254.169.254"],
    # names whose first label only is numeric: ordinary names
    "123.gk.test": ["10.0.0.7"], "0x10.gk.test": ["10.0.0.7"],
}

# Section 4: the search list and /etc/hosts of the namespace
SEARCH = "sfx.gk.test"
RESOLV_CONF = "nameserver 127.0.0.1\nsearch %s\noptions ndots:5\n" % SEARCH
HOSTS = ("127.0.0.1 localhost\n"
         "10.0.0.6 hosted.gk.test\n"
         "10.0.0.6 hosted\n"
         "10.0.0.6 foo.123\n")
# wire names DNS does not know, and what a search-list retry would find
SEARCH_TRAPS = ["a.nx.test", "a.nx.gk.test", "intranet"]
HOSTS_TRAPS = ["hosted.gk.test", "hosted", "localhost"]
for n in SEARCH_TRAPS:
    DNS["%s.%s" % (n, SEARCH)] = ["10.0.0.7"]
DNS["srch.%s" % SEARCH] = ["10.0.0.7"]    # a configured short name (control)
DNS["known.gk.test"] = ["10.0.0.7"]       # the canary by its own name (control)

# Section 3: other spellings of 127.0.0.3 (and what parsers make of them)
SPELLINGS = [
    "127.000.000.003",   # c-ares: 127.0.0.3
    "127.0.0.03",
    "127.000.0.3.",      # leading zeros and a trailing dot
    "0177.0.0.3",        # c-ares: 177.0.0.3, inet_aton: 127.0.0.3
    "0127.0.0.3",
    "0177.0.0.03",
    "127.1",             # inet_aton: 127.0.0.1
    "127.0.3",           # inet_aton: 127.0.0.3
    "127.0.1",
    "0x7f.1",
    "0x7f.0.0.3",
    "0X7F.0.0.3",
    "0x7F.0x0.0x0.0x3",
    "127.0x0.0.3",
    "0x7f000003",
    "0X7F000003",
    "2130706435",
    "017700000003",
    "127.0.0.300",
    "1.2.3.4.5",
    "foo.123",           # also in /etc/hosts
    "ok.gk.test.0x1",
    "0x7f.0.0.3.",
]
# a search-list retry of some of them lands on a canary
for n in SPELLINGS:
    DNS["%s.%s" % (n.rstrip(".").lower(), SEARCH)] = ["10.0.0.7"]
LIT = "127.0.0.3"

# Section 5: special-purpose IPv6 blocks not globally reachable
SPECIAL = {
    "nat64local.gk.test": "64:ff9b:1::a00:5",     # local-use NAT64, RFC 8215
    "siit.gk.test": "::ffff:0:a00:5",             # SIIT ::ffff:0:0:0/96
    "discard.gk.test": "100::5",                  # discard-only 100::/64
    "dummy.gk.test": "100:0:0:1::5",              # dummy prefix 100:0:0:1::/64
    "doc3fff.gk.test": "3fff::5",                 # documentation, RFC 9637
    "teredo.gk.test": "2001::5",                  # Teredo 2001::/32
    "teredoserver.gk.test": teredo("10.0.0.5", "1.2.3.5"),
    "teredoclient.gk.test": teredo("1.2.3.5", "10.0.0.5"),
    "ietf.gk.test": "2001:1::5",                  # 2001::/23 outside its global entries
    "bench.gk.test": "2001:2::5",                 # benchmarking 2001:2::/48
    "orchid.gk.test": "2001:10::5",               # ORCHID 2001:10::/28
    "srv6.gk.test": "5f00::5",                    # SRv6 SIDs 5f00::/16
    "docdb8.gk.test": "2001:db8::5",              # documentation
    "sitelocal.gk.test": "fec0::5",               # site-local, deprecated
    "compat.gk.test": "::a00:5",                  # IPv4-compatible, deprecated
    "compatpub.gk.test": "::102:305",             # IPv4-compatible holding a public address
    "mixedspecial.gk.test": ["100::5", "2001:db8::5", "5f00::5", "64:ff9b:1::a00:5"],
}
GLOBAL_SPECIAL = {
    "amt.gk.test": "2001:3::5",                   # AMT 2001:3::/32
    "as112.gk.test": "2001:4:112::5",             # AS112-v6 2001:4:112::/48
    "as112b.gk.test": "2620:4f:8000::5",          # AS112 direct delegation
    "orchid2.gk.test": "2001:20::5",              # ORCHIDv2 2001:20::/28
    "sixtofourpub.gk.test": "2002:102:305::1",    # 6to4 holding 1.2.3.5
    "nat64pub.gk.test": "64:ff9b::102:305",       # NAT64 holding 1.2.3.5
}
for n, a in list(SPECIAL.items()) + list(GLOBAL_SPECIAL.items()):
    DNS[n] = a if isinstance(a, list) else [a]

# deny_ranges [1.2.3.4/32] against 1.2.3.4 written inside IPv6
DENIED = {
    "dn-teredoserver.gk.test": teredo("1.2.3.4", "1.2.3.5"),
    "dn-teredoclient.gk.test": teredo("1.2.3.5", "1.2.3.4"),
    "dn-nat64l48.gk.test": nat64l("1.2.3.4", 48),
    "dn-nat64l56.gk.test": nat64l("1.2.3.4", 56),
    "dn-nat64l64.gk.test": nat64l("1.2.3.4", 64),
    "dn-nat64l96.gk.test": nat64l("1.2.3.4", 96),
    "dn-siit.gk.test": "::ffff:0:102:304",
    "dn-compat.gk.test": "::102:304",
    "dn-mapped.gk.test": "::ffff:1.2.3.4",        # dialed as 1.2.3.4
    "dn-nat64.gk.test": "64:ff9b::102:304",
    "dn-sixtofour.gk.test": "2002:102:304::1",
}
DENY_PASS = {   # the same forms holding only addresses that are not denied
    "dn-teredopub.gk.test": teredo("1.2.3.5", "1.2.3.5"),
    "dn-nat64lpub.gk.test": nat64l(),
}
for n, a in list(DENIED.items()) + list(DENY_PASS.items()):
    DNS[n] = [a]
DENY_RANGES = ["1.2.3.4/32"]
DENY_OPEN = ["2001::/32", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96", "::ffff:0:0/96",
             "64:ff9b::/96", "2002::/16"]

# the addresses above are what they claim to be
for plen in NAT64L_POSITIONS:
    emb = nat64l_embedded(DENIED["dn-nat64l%d.gk.test" % plen])
    assert emb[plen] == "1.2.3.4", emb
    assert all(ipaddress.ip_address(x).is_global for p, x in emb.items() if p != plen), emb
    assert all(x != "1.2.3.4" for p, x in emb.items() if p != plen), emb
assert all(ipaddress.ip_address(x).is_global and x != "1.2.3.4"
           for x in nat64l_embedded(DENY_PASS["dn-nat64lpub.gk.test"]).values())


def _dialed(a):
    """The address a connect() to a reaches (mapped forms speak IPv4)."""
    ip = ipaddress.ip_address(a)
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


CANARY_ADDRS = ["127.0.0.1", LIT, "177.0.0.3", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8",
                "169.254.169.254", "1.2.3.4", "1.2.3.5"]
for addrs in DNS.values():
    for a in addrs:
        d = _dialed(a)
        if d not in CANARY_ADDRS:
            CANARY_ADDRS.append(d)


def key(addr, port):
    a = _dialed(addr)
    return "[%s]:%d" % (a, port) if ":" in a else "%s:%d" % (a, port)


def marker(addr, port):
    return ("CANARY %s %d" % (_dialed(addr), port)).encode()


# --------------------------------------------------------------------------
# Config

L = netns.listener


def raw_listener(name, mode, lines):
    return "  - name: %s\n    listen: \"127.0.0.1:0\"\n    mode: %s\n%s" % (
        name, mode, "".join("    %s\n" % l for l in lines))


KA_OPEN = ["10.0.0.5/32", "10.0.0.8/32", "169.254.169.254/32"]
LIT_OPEN = ["127.0.0.0/8", "10.0.0.0/8"]
RES_OPEN = ["10.0.0.6/32", "10.0.0.7/32", "127.0.0.0/8"]
RES_EXACT = SEARCH_TRAPS + HOSTS_TRAPS

CONFIG = "".join([
    "log:\n  level: debug\n",
    "resolver:\n  nameservers: [\"@NAMESERVER@\"]\n  refresh: 30s\n  min_ttl: 1s\n  timeout: 1s\n",
    "defaults:\n  connect_timeout: 3s\n  sniff_timeout: 3s\n  idle_timeout: 30s\n",
    "listeners:\n",
    # 2. kept-alive absolute-form requests
    L("ka", "connect", allow=[OK, OK + ":80", OK2 + ":80", OTHER + ":80", META + ":80"],
      allow_ranges=KA_OPEN),
    L("ka-star", "connect", allow=["*", "*:80"], allow_ranges=KA_OPEN),
    L("ka-auth", "connect", allow=[OK + ":80", OTHER + ":80"], allow_ranges=KA_OPEN,
      proxy_auth=[CREDS]),
    # 3. IPv4 literal spellings; allow everything by name, loopback and 10/8 opened
    L("lit-connect", "connect", allow=["*", "*:80"], allow_ranges=LIT_OPEN),
    L("lit-tls", "tls", allow=["*"], port=443, allow_ranges=LIT_OPEN),
    L("lit-http", "http", allow=["*"], port=80, allow_ranges=LIT_OPEN),
    L("lit-host-tls", "tls", upstream="$host:443", egress=True, allow_ranges=LIT_OPEN),
    raw_listener("lit-route-tls", "tls", ["routes:", "  - match: \"*\"", "    upstream: \"$host:443\"",
                                          "allow_ranges: [\"127.0.0.0/8\", \"10.0.0.0/8\"]"]),
    L("lit-host-http", "http", upstream="$host:80", egress=True, allow_ranges=LIT_OPEN),
    # 3. controls: the canonical literal named by an allow entry, a block, a route
    L("lit-allow-connect", "connect", allow=[LIT, LIT + ":80", "177.0.0.3"]),
    L("lit-block-connect", "connect", allow=["127.0.0.0/24"]),
    L("lit-allow-tls", "tls", allow=[LIT], port=443),
    L("lit-allow-http", "http", allow=[LIT], port=80),
    raw_listener("lit-route-exact-tls", "tls", ["routes:", "  - match: \"%s\"" % LIT,
                                                "    upstream: \"$host:443\"",
                                                "allow_ranges: [\"127.0.0.0/8\"]"]),
    L("lit-loopback-connect", "connect", allow=["127.0.0.1"]),
    # 4. wire names: search list and /etc/hosts
    L("res-connect", "connect", allow=["*", "*:80"], allow_ranges=RES_OPEN),
    L("res-tls", "tls", allow=["*"], port=443, allow_ranges=RES_OPEN),
    L("res-http", "http", allow=["*"], port=80, allow_ranges=RES_OPEN),
    L("res-host-tls", "tls", upstream="$host:443", egress=True, allow_ranges=RES_OPEN),
    L("res-exact-connect", "connect", allow=RES_EXACT + ["%s:80" % n for n in RES_EXACT],
      allow_ranges=RES_OPEN),
    # 4. controls: configured names keep /etc/hosts and the search list
    L("res-pinned-hosts", "tcp", upstream="hosted.gk.test:443", egress=True, allow_ranges=["10.0.0.6/32"]),
    L("res-pinned-short", "tcp", upstream="hosted:443", egress=True, allow_ranges=["10.0.0.6/32"]),
    L("res-pinned-search", "tcp", upstream="srch:443", egress=True, allow_ranges=["10.0.0.7/32"]),
    # 5. special-purpose IPv6 blocks, default guard
    L("sp-connect", "connect", allow=["*", "*:80"]),
    L("sp-tls", "tls", allow=["*"], port=443),
    L("sp-http", "http", allow=["*"], port=80),
    L("sp-host-tls", "tls", upstream="$host:443", egress=True),
    # 5. deny_ranges on 1.2.3.4 with the translation blocks opened
    L("dn-connect", "connect", allow=["*", "*:80"], deny_ranges=DENY_RANGES, allow_ranges=DENY_OPEN),
    L("dn-tls", "tls", allow=["*"], port=443, deny_ranges=DENY_RANGES, allow_ranges=DENY_OPEN),
    L("dn-open-connect", "connect", allow=["*", "*:80"], allow_ranges=DENY_OPEN),
])


# --------------------------------------------------------------------------
# Requests

def connect_req(target, extra=()):
    return ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (target, target, "".join(
        "%s\r\n" % x for x in extra))).encode()


def absolute(host, path="/", close=True, extra=(), scheme="http", hostheader=None):
    lines = ["GET %s://%s%s HTTP/1.1" % (scheme, host, path), "Host: %s" % (hostheader or host)]
    lines.extend(extra)
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def origin_form(host, path="/latest/meta-data/"):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode()


def host_req(host):
    return t.http_request(host, path="/latest/meta-data/")


def auth(b64=CREDS_B64, name="Proxy-Authorization", scheme="Basic"):
    return "%s: %s %s" % (name, scheme, b64)


def bracket(a):
    return "[%s]" % a if ":" in a else a


# --------------------------------------------------------------------------
# Probes

PROBES = []
EXPECT = {}


def _add(pid, listener, exp, send=None, steps=None, retry_on=()):
    assert pid not in EXPECT, pid
    p = {"id": pid, "listener": listener, "retry_on": list(retry_on)}
    if steps is not None:
        p["steps"] = steps
        p["timeout"] = 8
    else:
        p["send"] = netns.b64(send)
    PROBES.append(p)
    EXPECT[pid] = exp


def control(pid, listener, data, addr, port, hole, retry_on=()):
    """The policy allows this: the canary on addr:port must be reached."""
    _add(pid, listener, dict(kind="control", hits={key(addr, port): 1}, marker=marker(addr, port),
                             hole=hole), send=data, retry_on=retry_on)


def refused(pid, listener, data, hole, kind, reasons, status=None, replies=None, names=()):
    """One request or hello that must be refused before anything is dialed."""
    _add(pid, listener, dict(kind=kind, reasons=set(reasons), status=status, replies=replies,
                             names=list(names), hole=hole), send=data)


def http_refused(pid, listener, data, reason, status, hole, names=()):
    refused(pid, listener, data, hole, "http", {reason}, status=status, names=names)


def tls_refused(pid, listener, data, reason, reply, hole, names=()):
    refused(pid, listener, data, hole, "tls", {reason}, replies={reply}, names=names)


def keepalive(pid, listener, requests, answers, hole, pipelined=False, forwarded=None,
              forbidden=(), canary=("10.0.0.5", 80), is_control=False):
    """Several requests on one connection. answers lists what the client
    must get, in order: an int n for the canary's n-th response, or
    (status, reason) for gatekeeper's refusal, which must be the last.
    forwarded: how many requests the canary gets (all on one upstream
    connection); forbidden: bytes (lower case) the canary must never see."""
    if pipelined:
        steps = [{"send": netns.b64(b"".join(requests))}]
    else:
        steps = [{"send": netns.b64(r), "responses": i + 1} for i, r in enumerate(requests)]
        steps[-1].pop("responses")
    if forwarded is None:
        forwarded = sum(1 for a in answers if isinstance(a, int))
    _add(pid, listener, dict(kind="keepalive", answers=answers, forwarded=forwarded,
                             forbidden=[f.lower() for f in forbidden], canary=canary, hole=hole,
                             is_control=is_control),
         steps=steps)


# ---- 2. connect mode: every kept-alive absolute-form request is admitted on its own

H2 = "keep-alive request on a connect listener"
NO_META = (b"meta", b"169.254.169.254")

control("ctl-ka-ok", "ka", absolute(OK), "10.0.0.5", 80, "canary " + OK)
control("ctl-ka-meta", "ka", absolute(META, "/latest/meta-data/"), "169.254.169.254", 80,
        "the metadata canary is reachable by name on ka (so a 421 is the origin rule's doing)")
control("ctl-ka-other", "ka", absolute(OTHER), "10.0.0.8", 80, "canary " + OTHER)
control("ctl-ka-auth", "ka-auth", absolute(OK, extra=[auth()]), "10.0.0.5", 80,
        "one authenticated request")
keepalive("ctl-ka-same-origin", "ka", [absolute(OK, "/one", close=False), absolute(OK, "/two")],
          [1, 2], "a later request for the same origin rides the same upstream connection",
          is_control=True)
keepalive("ctl-ka-same-origin-spelled", "ka",
          [absolute(OK, "/one", close=False), absolute("OK.GK.TEST:80", "/two")], [1, 2],
          "the same origin spelled in upper case with its default port", is_control=True)

for lname in ("ka", "ka-star"):
    for mode, pipe in (("seq", False), ("pipe", True)):
        keepalive("%s-%s-meta-name" % (lname, mode), lname,
                  [absolute(OK, close=False), absolute(META, "/latest/meta-data/")],
                  [1, (421, "misdirected")], H2 + ": a later request for the metadata name",
                  pipelined=pipe, forbidden=NO_META)
        keepalive("%s-%s-meta-literal" % (lname, mode), lname,
                  [absolute(OK, close=False), absolute("169.254.169.254", "/latest/meta-data/")],
                  [1, (403, "not_allowed")], H2 + ": a later request for the metadata literal",
                  pipelined=pipe, forbidden=NO_META)
keepalive("ka-seq-other", "ka", [absolute(OK, close=False), absolute(OTHER, "/x")],
          [1, (421, "misdirected")], H2 + ": another allowed name", forbidden=[b"other.gk.test"])
keepalive("ka-seq-same-address", "ka", [absolute(OK, close=False), absolute(OK2, "/x")],
          [1, (421, "misdirected")], H2 + ": another allowed name on the same address",
          forbidden=[b"ok2.gk.test"])
keepalive("ka-seq-evil", "ka", [absolute(OK, close=False), absolute(EVIL, "/x")],
          [1, (403, "not_allowed")], H2 + ": a name not allowed", forbidden=[b"evil"])
keepalive("ka-seq-port", "ka", [absolute(OK, close=False), absolute(OK + ":8080", "/x")],
          [1, (403, "not_allowed")], H2 + ": the same name on a port not allowed",
          forbidden=[b":8080"])
keepalive("ka-seq-https", "ka", [absolute(OK, close=False), absolute(OK, "/x", scheme="https")],
          [1, (421, "misdirected")], H2 + ": the same name as https (port 443, allowed)",
          forbidden=[b"https://"])
keepalive("ka-seq-connect", "ka", [absolute(OK, close=False), connect_req(META + ":443")],
          [1, (421, "misdirected")], H2 + ": a later CONNECT", forbidden=NO_META + (b"connect",))
keepalive("ka-seq-origin-form", "ka", [absolute(OK, close=False), origin_form(META)],
          [1, (400, "not_proxy_request")], H2 + ": a later origin-form request",
          forbidden=NO_META)
keepalive("ka-seq-same-then-meta", "ka",
          [absolute(OK, "/one", close=False), absolute(OK, "/two", close=False),
           absolute(META, "/latest/meta-data/")],
          [1, 2, (421, "misdirected")], H2 + ": the same origin, then the metadata name",
          forbidden=NO_META)
keepalive("ka-pipe-evil-after-same", "ka-star",
          [absolute(OK, "/one", close=False), absolute(OK, "/two", close=False),
           absolute("169.254.169.254", "/latest/meta-data/")],
          [1, 2, (403, "not_allowed")], H2 + ": pipelined, the same origin, then the metadata literal",
          pipelined=True, forbidden=NO_META)
keepalive("ka-seq-proxy-connection", "ka",
          [absolute(OK, "/one", close=False, extra=["Proxy-Connection: keep-alive"]),
           absolute(OK, "/two", extra=["Proxy-Connection: keep-alive"])],
          [1, 2], "Proxy-Connection is removed from every request", forbidden=[b"proxy-connection"])
# the framing rules of mode http hold on connect listeners
SMUGGLED = absolute(META, "/latest/meta-data/")
for pid, head in (
        ("ka-first-connection-cl", ["Connection: keep-alive, Content-Length", "Content-Length: %d"]),
        ("ka-first-cl-te", ["Content-Length: %d", "Transfer-Encoding: chunked"]),
        ("ka-first-content_length", ["Content_Length: %d"])):
    req = absolute(OK, "/one", close=False, extra=[h % len(SMUGGLED) if "%d" in h else h for h in head])
    http_refused(pid, "ka", req + SMUGGLED, "smuggling", 400,
                 "framing on a connect listener: " + " + ".join(head).replace("%d", "N"))
keepalive("ka-later-connection-cl", "ka",
          [absolute(OK, "/one", close=False),
           absolute(OK, "/two", close=False,
                    extra=["Connection: Content-Length", "Content-Length: %d" % len(SMUGGLED)]) + SMUGGLED],
          [1, (400, "smuggling")], H2 + ": a later request whose Connection names Content-Length",
          forbidden=NO_META + (b"/two",))
# proxy_auth on every request
keepalive("auth-seq-same", "ka-auth",
          [absolute(OK, "/one", close=False, extra=[auth()]), absolute(OK, "/two", extra=[auth()])],
          [1, 2], "Proxy-Authorization is removed from a later request too",
          forbidden=[b"proxy-authorization", CREDS_B64.lower().encode()])
keepalive("auth-pipe-same", "ka-auth",
          [absolute(OK, "/one", close=False, extra=[auth()]), absolute(OK, "/two", extra=[auth()])],
          [1, 2], "pipelined: Proxy-Authorization removed from both",
          pipelined=True, forbidden=[b"proxy-authorization", CREDS_B64.lower().encode()])
keepalive("auth-first-lowercase", "ka-auth",
          [absolute(OK, "/one", close=False, extra=[auth(name="proxy-authorization", scheme="basic"),
                                                    "proxy-connection: keep-alive"]),
           absolute(OK, "/two", extra=[auth(name="PROXY-AUTHORIZATION")])],
          [1, 2], "header names in any case are removed",
          forbidden=[b"proxy-authorization", b"proxy-connection", CREDS_B64.lower().encode()])
keepalive("auth-seq-missing", "ka-auth",
          [absolute(OK, "/one", close=False, extra=[auth()]), absolute(OK, "/two")],
          [1, (407, "auth_required")], H2 + ": a later request without credentials",
          forbidden=[b"/two", b"proxy-authorization"])
keepalive("auth-seq-wrong", "ka-auth",
          [absolute(OK, "/one", close=False, extra=[auth()]), absolute(OK, "/two", extra=[auth(WRONG_B64)])],
          [1, (407, "auth_failed")], H2 + ": a later request with wrong credentials",
          forbidden=[b"/two", b"proxy-authorization", WRONG_B64.lower().encode()])
keepalive("auth-pipe-missing", "ka-auth",
          [absolute(OK, "/one", close=False, extra=[auth()]), absolute(OK, "/two")],
          [1, (407, "auth_required")], H2 + ": pipelined, a later request without credentials",
          pipelined=True, forbidden=[b"/two", b"proxy-authorization"])
keepalive("auth-seq-meta-literal", "ka-auth",
          [absolute(OK, close=False, extra=[auth()]),
           absolute("169.254.169.254", "/latest/meta-data/", extra=[auth()])],
          [1, (403, "not_allowed")], H2 + ": authenticated, then the metadata literal",
          forbidden=NO_META + (b"proxy-authorization",))
keepalive("auth-seq-other", "ka-auth",
          [absolute(OK, close=False, extra=[auth()]), absolute(OTHER, "/x", extra=[auth()])],
          [1, (421, "misdirected")], H2 + ": authenticated, then another allowed origin",
          forbidden=[b"other.gk.test", b"proxy-authorization"])

# ---- 3. IPv4 literals in other spellings are malformed

H3 = "IPv4 literal spelled otherwise"
for s in SPELLINGS:
    hole = "%s (%s)" % (H3, s)
    http_refused("lit-connect-" + s, "lit-connect", connect_req(s + ":443"), "malformed", 400, hole)
    http_refused("lit-absolute-" + s, "lit-connect", absolute(s, "/latest/meta-data/"), "malformed", 400, hole)
    tls_refused("lit-sni-" + s, "lit-tls", t.raw_client_hello(s), "malformed", b"", hole)
    http_refused("lit-host-" + s, "lit-http", host_req(s), "malformed", 400, hole)
    tls_refused("lit-hosttls-" + s, "lit-host-tls", t.raw_client_hello(s), "malformed", b"", hole)
    http_refused("lit-hosthttp-" + s, "lit-host-http", host_req(s), "malformed", 400, hole)
for s in ("127.000.000.003", "0x7f000003", "0177.0.0.3"):
    tls_refused("lit-routetls-" + s, "lit-route-tls", t.raw_client_hello(s), "malformed", b"",
                "%s (%s) through a \"*\" $host route" % (H3, s))
# upper case 0X and a trailing dot through the exact-literal listeners too
for s in ("0X7F.0.0.3", "127.000.000.003", "0177.0.0.3", "127.0.0.03."):
    http_refused("lit-allowconnect-" + s, "lit-allow-connect", connect_req(s + ":443"), "malformed", 400,
                 "%s (%s) where the canonical literal is allowed" % (H3, s))
    tls_refused("lit-allowtls-" + s, "lit-allow-tls", t.raw_client_hello(s), "malformed", b"",
                "%s (%s) where the canonical literal is allowed" % (H3, s))
# the canonical literal never rides a $host catch-all
H3H = "canonical IPv4 literal through a $host catch-all"
for lname in ("lit-host-tls", "lit-route-tls"):
    for s in (LIT, LIT + "."):
        tls_refused("lit-catchall-%s-%s" % (lname, s), lname, t.raw_client_hello(s), "not_allowed",
                    ALERT_UNRECOGNIZED_NAME, H3H)
for s in (LIT, LIT + ":80"):
    http_refused("lit-catchall-lit-host-http-" + s, "lit-host-http", host_req(s), "not_allowed", 403, H3H)
# and is an IP literal, not a name, for "*"
for s in (LIT, LIT + "."):
    http_refused("lit-star-connect-" + s, "lit-connect", connect_req(s + ":443"), "not_allowed", 403,
                 "canonical literal against \"*\"")
    tls_refused("lit-star-sni-" + s, "lit-tls", t.raw_client_hello(s), "not_allowed",
                ALERT_UNRECOGNIZED_NAME, "canonical literal against \"*\"")
# controls: the canonical literal where it is named; names with a numeric first label
control("ctl-lit-connect", "lit-allow-connect", connect_req(LIT + ":443"), LIT, 443, "allow entry " + LIT)
control("ctl-lit-absolute", "lit-allow-connect", absolute(LIT), LIT, 80, "allow entry %s:80" % LIT)
control("ctl-lit-177", "lit-allow-connect", connect_req("177.0.0.3:443"), "177.0.0.3", 443,
        "allow entry 177.0.0.3")
control("ctl-lit-block", "lit-block-connect", connect_req(LIT + ":443"), LIT, 443, "allow block 127.0.0.0/24")
control("ctl-lit-sni", "lit-allow-tls", t.raw_client_hello(LIT), LIT, 443, "allow entry %s (SNI)" % LIT)
control("ctl-lit-host", "lit-allow-http", host_req(LIT), LIT, 80, "allow entry %s (Host)" % LIT)
control("ctl-lit-route", "lit-route-exact-tls", t.raw_client_hello(LIT), LIT, 443, "route match " + LIT)
control("ctl-lit-loopback", "lit-loopback-connect", connect_req("127.0.0.1:443"), "127.0.0.1", 443,
        "allow entry 127.0.0.1")
for n in ("123.gk.test", "0x10.gk.test"):
    control("ctl-lit-name-sni-" + n, "lit-tls", t.raw_client_hello(n), "10.0.0.7", 443,
            "a name whose first label is numeric")
    control("ctl-lit-name-host-" + n, "lit-http", host_req(n), "10.0.0.7", 80,
            "a name whose first label is numeric")

# ---- 4. wire names: exactly as written, in DNS only
# res-pinned-hosts resolves hosted.gk.test:443 through /etc/hosts at start-up,
# so a wire lookup of that very name and port that shared its cache entry
# would find 10.0.0.6 too: res-sni-hosted.gk.test checks that it does not.

H4S = "wire name retried under the resolv.conf search list"
H4H = "wire name answered from /etc/hosts"
for n in SEARCH_TRAPS + HOSTS_TRAPS + ["HOSTED.gk.test."]:
    hole = (H4S if n in SEARCH_TRAPS else H4H) + " (%s)" % n
    http_refused("res-connect-" + n, "res-connect", connect_req(n + ":443"), "no_address", 503, hole)
    http_refused("res-absolute-" + n, "res-connect", absolute(n), "no_address", 503, hole)
    tls_refused("res-sni-" + n, "res-tls", t.raw_client_hello(n), "no_address", ALERT_INTERNAL_ERROR, hole)
    http_refused("res-host-" + n, "res-http", host_req(n), "no_address", 503, hole)
    tls_refused("res-hosttls-" + n, "res-host-tls", t.raw_client_hello(n), "no_address",
                ALERT_INTERNAL_ERROR, hole)
    if n in RES_EXACT:
        http_refused("res-exact-connect-" + n, "res-exact-connect", connect_req(n + ":443"), "no_address",
                     503, hole + ", allowed by name")
        http_refused("res-exact-absolute-" + n, "res-exact-connect", absolute(n), "no_address", 503,
                     hole + ", allowed by name")
control("ctl-res-pinned-hosts", "res-pinned-hosts", b"", "10.0.0.6", 443,
        "a configured upstream name still resolves through /etc/hosts", retry_on=("no_address",))
control("ctl-res-pinned-short", "res-pinned-short", b"", "10.0.0.6", 443,
        "a configured short name still resolves through /etc/hosts", retry_on=("no_address",))
control("ctl-res-pinned-search", "res-pinned-search", b"", "10.0.0.7", 443,
        "a configured short name still resolves through the search list", retry_on=("no_address",))
control("ctl-res-fqdn-sni", "res-tls", t.raw_client_hello("a.nx.test." + SEARCH), "10.0.0.7", 443,
        "the search-list name asked for itself")
control("ctl-res-known-connect", "res-connect", connect_req("known.gk.test:443"), "10.0.0.7", 443,
        "a name DNS knows")
control("ctl-res-known-host", "res-http", host_req("known.gk.test"), "10.0.0.7", 80, "a name DNS knows")

# ---- 5. special-purpose IPv6 blocks and deny_ranges inside translation forms

H5 = "special-purpose block not globally reachable"
for n, a in SPECIAL.items():
    hole = "%s (%s)" % (H5, a)
    short = n.split(".")[0]
    http_refused("sp-connect-" + short, "sp-connect", connect_req(n + ":443"), "address_denied", 403, hole, [n])
    http_refused("sp-absolute-" + short, "sp-connect", absolute(n), "address_denied", 403, hole, [n])
    tls_refused("sp-sni-" + short, "sp-tls", t.raw_client_hello(n), "address_denied", ALERT_ACCESS_DENIED,
                hole, [n])
    http_refused("sp-host-" + short, "sp-http", host_req(n), "address_denied", 403, hole, [n])
    tls_refused("sp-hosttls-" + short, "sp-host-tls", t.raw_client_hello(n), "address_denied",
                ALERT_ACCESS_DENIED, hole, [n])
for n, a in GLOBAL_SPECIAL.items():
    short = n.split(".")[0]
    hole = "globally reachable special entry %s" % a
    control("ctl-sp-connect-" + short, "sp-connect", connect_req(n + ":443"), a, 443, hole)
    control("ctl-sp-absolute-" + short, "sp-connect", absolute(n), a, 80, hole)
    control("ctl-sp-sni-" + short, "sp-tls", t.raw_client_hello(n), a, 443, hole)
    control("ctl-sp-host-" + short, "sp-http", host_req(n), a, 80, hole)
    control("ctl-sp-hosttls-" + short, "sp-host-tls", t.raw_client_hello(n), a, 443, hole)
H5D = "deny_ranges 1.2.3.4/32 against it written inside IPv6"
for n, a in DENIED.items():
    short = n.split(".")[0]
    hole = "%s (%s), its block opened by allow_ranges" % (H5D, a)
    http_refused(short + "-connect", "dn-connect", connect_req(n + ":443"), "address_denied", 403, hole, [n])
    http_refused(short + "-absolute", "dn-connect", absolute(n), "address_denied", 403, hole, [n])
    tls_refused(short + "-sni", "dn-tls", t.raw_client_hello(n), "address_denied", ALERT_ACCESS_DENIED,
                hole, [n])
    control("ctl-%s-open" % short, "dn-open-connect", connect_req(n + ":443"), a, 443,
            "the canary on %s, without deny_ranges" % a)
for n, a in DENY_PASS.items():
    short = n.split(".")[0]
    control("ctl-%s-connect" % short, "dn-connect", connect_req(n + ":443"), a, 443,
            "%s holds no denied address" % a)
    control("ctl-%s-sni" % short, "dn-tls", t.raw_client_hello(n), a, 443, "%s holds no denied address" % a)

CONTROLS = [p["id"] for p in PROBES if EXPECT[p["id"]]["kind"] == "control"]
KEEPALIVE = [p["id"] for p in PROBES if EXPECT[p["id"]]["kind"] == "keepalive"]
REFUSALS = [p["id"] for p in PROBES if EXPECT[p["id"]]["kind"] in ("http", "tls")]


# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def result():
    scenario = {"addrs": CANARY_ADDRS, "ports": PORTS, "http_ports": HTTP_PORTS, "dns": DNS,
                "config": CONFIG, "probes": PROBES, "ttl": 60, "seen": True, "canary_wait": 0.1,
                "files": {"/etc/resolv.conf": RESOLV_CONF, "/etc/hosts": HOSTS}}
    res = netns.run(scenario, timeout=240)
    res["by_id"] = {p["id"]: p for p in res["probes"]}
    return res


def _reply(p):
    return base64.b64decode(p["reply"])


def _ctx(res, p):
    seen = {k: [(base64.b64decode(r.get("first", ""))[:400], r.get("requests")) for r in v]
            for k, v in (p.get("seen") or {}).items()}
    return "probe %s [%s]: reply=%r how=%s access=%r hits=%r seen=%r" % (
        p["id"], EXPECT[p["id"]]["hole"], _reply(p)[:600], p["how"], p["access"], p["hits"], seen)


def _head(resp):
    return resp.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def _status(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else None


def _header(resp, name):
    for line in _head(resp).split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name:
            return v.strip()
    return None


def _split_responses(data):
    """The complete HTTP responses data starts with, and what follows."""
    out = []
    while True:
        n = netns.count_responses(data)
        if n == 0:
            return out, data
        end = data.find(b"\r\n\r\n") + 4
        cl = _header(data[:end], "content-length")
        end += int(cl) if cl else 0
        out.append(data[:end])
        data = data[end:]


def _hostport(s):
    """An access line's upstream or a canary key as (address dialed, port)."""
    host, _, port = s.rpartition(":")
    return ipaddress.ip_address(_dialed(host.strip("[]"))), int(port)


def _check_refusal_response(resp, status, reason, ctx):
    assert _status(resp) == status, ctx
    assert _header(resp, "x-gatekeeper-reason") == reason, ctx
    assert (_header(resp, "connection") or "").lower() == "close", ctx


def _address_forms(a):
    ip = ipaddress.ip_address(a)
    forms = {a, str(ip), ip.exploded}
    if ip.version == 6:
        if ip.ipv4_mapped:
            forms.add(str(ip.ipv4_mapped))
        if ip.packed[:12] == bytes(12):
            forms.add("::" + str(ipaddress.ip_address(ip.packed[12:])))
        if ip.packed[:10] == bytes(10):
            forms.add("::ffff:" + str(ipaddress.ip_address(ip.packed[12:])))
            forms.add("::ffff:0:" + str(ipaddress.ip_address(ip.packed[12:])))
    return forms


@pytest.mark.parametrize("pid", CONTROLS)
def test_control_reaches_its_canary(result, pid):
    """Where the policy allows the destination (an allow entry or route
    naming the literal, allow_ranges, a globally reachable block, a
    configured upstream name), the connection reaches the canary on that
    address: the canary path works, so a refusal elsewhere is the rule's
    doing and not a broken canary."""
    p = result["by_id"][pid]
    exp = EXPECT[pid]
    ctx = _ctx(result, p)
    assert p["hits"] == exp["hits"], ctx
    assert exp["marker"] in _reply(p), ctx
    acc = p["access"]
    assert acc and acc["decision"] == "allow", ctx
    assert _hostport(acc["upstream"]) == _hostport(list(exp["hits"])[0]), ctx


@pytest.mark.parametrize("pid", REFUSALS)
def test_attack_is_refused_and_hits_no_canary(result, pid):
    """A name or literal the new rules refuse (an IPv4 literal spelled
    otherwise, a canonical literal on a $host catch-all, a wire name only
    the search list or /etc/hosts knows, a special-purpose IPv6 address, an
    IPv4 in deny_ranges written inside IPv6, a smuggling head on a connect
    listener) is refused with its reason (HTTP status and
    X-Gatekeeper-Reason, TLS alert or a plain close), nothing is dialed
    (upstream "-"), and no canary sees a connection, although the listener
    would otherwise let the destination through."""
    p = result["by_id"][pid]
    exp = EXPECT[pid]
    ctx = _ctx(result, p)
    reply = _reply(p)
    assert p["hits"] == {}, "CANARY HIT: " + ctx
    acc = p["access"]
    assert acc is not None, "no access line: " + ctx
    assert acc["reason"] in exp["reasons"], ctx
    assert acc["upstream"] == "-", ctx
    assert p["how"] in ("eof", "reset"), ctx
    if acc["reason"] in ("address_denied", "not_allowed"):
        assert acc["decision"] == "deny", ctx
    if exp["kind"] == "http":
        _check_refusal_response(reply, exp["status"], acc["reason"], ctx)
    else:
        assert reply in exp["replies"], ctx
    if acc["reason"] == "address_denied" and exp["names"]:
        forms = set()
        for n in exp["names"]:
            for a in DNS[n]:
                forms |= _address_forms(a)
        err = acc.get("error", "")
        assert any(f in err for f in forms), "error %r names none of %r: %s" % (err, sorted(forms), ctx)


@pytest.mark.parametrize("pid", KEEPALIVE)
def test_keepalive_request_is_checked_on_its_own(result, pid):
    """On a connect listener, a kept-alive connection that served an
    absolute-form request for an allowed origin sends further requests
    for that origin, and only those, to the same upstream connection, each
    authenticated and stripped of Proxy-Authorization / Proxy-Connection.
    A later request for another origin (the metadata name or literal,
    another allowed name, the same name on another port or scheme, a
    CONNECT, an origin-form request), without valid credentials, or with
    a smuggling head, is answered by gatekeeper after the responses owed
    (421 misdirected / 403 not_allowed / 407 / 400, Connection: close) and
    never reaches any canary; the access line counts the requests
    forwarded."""
    p = result["by_id"][pid]
    exp = EXPECT[pid]
    ctx = _ctx(result, p)
    addr, port = exp["canary"]
    k = key(addr, port)
    assert p["hits"] == {k: 1}, "canaries hit: " + ctx
    seen = (p.get("seen") or {}).get(k, [])
    assert len(seen) == 1, ctx
    got = base64.b64decode(seen[0].get("first", ""))
    assert seen[0].get("requests") == exp["forwarded"], ctx
    for f in exp["forbidden"]:
        assert f not in got.lower(), "canary saw %r: %s" % (f, ctx)
    responses, rest = _split_responses(_reply(p))
    assert len(responses) == len(exp["answers"]), ctx
    for resp, want in zip(responses, exp["answers"]):
        if isinstance(want, int):
            assert _status(resp) == 200, ctx
            assert resp.endswith(marker(addr, port) + b" #%d\n" % want), ctx
        else:
            _check_refusal_response(resp, want[0], want[1], ctx)
    assert rest == b"", ctx
    assert p["how"] in ("eof", "reset"), ctx
    acc = p["access"]
    assert acc is not None, "no access line: " + ctx
    assert _hostport(acc["upstream"]) == _hostport(k), ctx
    if exp["is_control"]:
        return  # what today's gatekeeper did already
    assert acc.get("requests") == str(exp["forwarded"]), ctx
    last = exp["answers"][-1]
    if not isinstance(last, int):
        assert acc["reason"] == last[1], ctx


def test_no_canary_saw_anything_but_the_allowed(result):
    """Over the whole run, the canaries were reached exactly by the
    controls and by the first (allowed) request of each kept-alive probe:
    no attack reached any address, on any port."""
    expected = {}
    for pid in CONTROLS:
        for k, v in EXPECT[pid]["hits"].items():
            expected[k] = expected.get(k, 0) + v
    for pid in KEEPALIVE:
        k = key(*EXPECT[pid]["canary"])
        expected[k] = expected.get(k, 0) + 1
    got = {k: c["accepted"] for k, c in result["canaries"].items() if c["accepted"]}
    assert got == expected, "canary hits %r, expected %r" % (got, expected)


def test_proxy_credentials_never_reach_a_canary(result):
    """No canary, on any connection of the run, received a
    Proxy-Authorization or Proxy-Connection header or the credentials."""
    bad = []
    for k, c in result["canaries"].items():
        for r in c["results"]:
            data = base64.b64decode(r.get("first", "")).lower()
            for f in (b"proxy-authorization", b"proxy-connection", CREDS_B64.lower().encode(),
                      WRONG_B64.lower().encode()):
                if f in data:
                    bad.append((k, f, data[:300]))
    assert bad == [], bad


def test_gatekeeper_survived_the_attacks(result):
    """gatekeeper is still running after the run, with no sanitizer
    report, and wrote an access line for every probe."""
    assert result["alive"], "\n".join(result["log"][-40:])
    assert result["sanitizer"] is None, result["sanitizer"]
    n_access = sum(1 for l in result["log"] if "msg=access" in l)
    assert n_access >= len(PROBES)
