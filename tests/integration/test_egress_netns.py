"""Egress attack tests in a private network namespace (DESIGN.md section 7).

netns.py runs, under `unshare -n`, gatekeeper, dnsmasq and a canary server on
every address an attacker would aim at, on ports 80 and 443: 127.0.0.1, ::1,
10.0.0.5, 169.254.169.254 (cloud metadata), 192.168.1.1, 100.64.0.1,
172.16.0.1, fd00::5, and the IPv6 forms that embed 10.0.0.5 (NAT64
64:ff9b::a00:5, 6to4 2002:a00:5::1, compatible ::a00:5). Those addresses
exist only inside that namespace, which has nothing but a loopback
interface: no packet can leave the machine.

The gateways under attack use the DEFAULT guard (no allow_ranges): every
name they allow resolves into a refused class, and every IP literal they are
asked for is not in their allow list. The attacks go through each way in:
CONNECT, absolute-form requests, the TLS SNI, the HTTP Host and pinned
tunnels; with exact allow entries and with "*". Each must be refused with a
logged reason and hit no canary. Control listeners that explicitly allow
10.0.0.5 (allow_ranges) do reach its canary, which proves the canaries work
and that a refusal is the guard's doing.
"""

import base64
import ipaddress
import re
import socket

import pytest

import netns
import tlsutil as t

ok, why = netns.available()
pytestmark = pytest.mark.skipif(not ok, reason="no private network namespace: %s" % why)

ALERT_UNRECOGNIZED_NAME = bytes.fromhex("15030300020270")
ALERT_ACCESS_DENIED = bytes.fromhex("15030300020231")
ALERT_INTERNAL_ERROR = bytes.fromhex("15030300020250")
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"

CANARY_ADDRS = ["127.0.0.1", "::1", "10.0.0.5", "169.254.169.254", "192.168.1.1", "100.64.0.1",
                "172.16.0.1", "fd00::5", "64:ff9b::a00:5", "2002:a00:5::1", "::a00:5",
                # "public" addresses: unclassified, so only deny_ranges can refuse them
                "1.2.3.4", "1.2.3.5", "64:ff9b::102:304", "2002:102:304::1"]
PORTS = [80, 443]

# Names the gateways allow, each answered by DNS with refused addresses only.
ATTACK_NAMES = {
    "lo.gk.test": ["127.0.0.1"],
    "ten.gk.test": ["10.0.0.5"],
    "meta.gk.test": ["169.254.169.254"],
    "home.gk.test": ["192.168.1.1"],
    "cgnat.gk.test": ["100.64.0.1"],
    "rfc172.gk.test": ["172.16.0.1"],
    "zero.gk.test": ["0.0.0.0"],           # connect() to 0.0.0.0 reaches 127.0.0.1
    "v6lo.gk.test": ["::1"],
    "v6zero.gk.test": ["::"],              # connect() to :: reaches ::1
    "ula.gk.test": ["fd00::5"],
    "mapped.gk.test": ["::ffff:10.0.0.5"],
    "mappedmeta.gk.test": ["::ffff:169.254.169.254"],
    "nat64.gk.test": ["64:ff9b::a00:5"],
    "sixtofour.gk.test": ["2002:a00:5::1"],
    "compat.gk.test": ["::a00:5"],
    "mixed.gk.test": ["10.0.0.5", "169.254.169.254", "::ffff:10.0.0.5", "64:ff9b::a00:5"],
    "ok.gk.test": ["10.0.0.5"],            # allowed on the control listeners only
}
OK = "ok.gk.test"
# deny_ranges [1.2.3.4/32] on a public address, and the forms that reach it
PUBLIC_NAMES = {
    "pub.gk.test": ["1.2.3.4"],
    "pubmapped.gk.test": ["::ffff:1.2.3.4"],     # connect() goes to 1.2.3.4 itself
    "pubnat64.gk.test": ["64:ff9b::102:304"],    # 1.2.3.4 through NAT64
    "pubsixtofour.gk.test": ["2002:102:304::1"],  # 1.2.3.4 through 6to4
    "pubok.gk.test": ["1.2.3.5"],                # public and not denied: the control
}
DNS = dict(ATTACK_NAMES)
DNS.update(PUBLIC_NAMES)

ALL_NAMES = sorted(ATTACK_NAMES)
CONTROL_ALLOW = ["10.0.0.5/32"]

CONFIG = "".join([
    "log:\n  level: debug\n",
    "resolver:\n  nameservers: [\"@NAMESERVER@\"]\n  refresh: 30s\n  min_ttl: 1s\n  timeout: 1s\n",
    "defaults:\n  connect_timeout: 3s\n  sniff_timeout: 3s\n  idle_timeout: 30s\n",
    "listeners:\n",
    # default guard, exact allow entries
    netns.listener("gw-connect", "connect", allow=ALL_NAMES + ["%s:80" % n for n in ALL_NAMES]),
    netns.listener("gw-tls", "tls", allow=ALL_NAMES, port=443),
    netns.listener("gw-http", "http", allow=ALL_NAMES, port=80),
    # default guard, allow everything by name
    netns.listener("gw-star", "connect", allow=["*", "*:80"]),
    netns.listener("gw-star-tls", "tls", allow=["*"], port=443),
    netns.listener("gw-star-http", "http", allow=["*"], port=80),
] + [
    # default guard, pinned tunnels
    netns.listener("tunnel-" + n.split(".")[0], "tcp", upstream="%s:443" % n, egress=True)
    for n in ("meta.gk.test", "ten.gk.test", "lo.gk.test", "mapped.gk.test", "nat64.gk.test",
              "mixed.gk.test")
] + [
    # controls: 10.0.0.5 explicitly allowed
    netns.listener("ctl-connect", "connect",
                   allow=[OK, OK + ":80", "meta.gk.test", "10.0.0.5"], allow_ranges=CONTROL_ALLOW),
    netns.listener("ctl-tls", "tls", allow=[OK, "meta.gk.test"], port=443, allow_ranges=CONTROL_ALLOW),
    netns.listener("ctl-http", "http", allow=[OK, "meta.gk.test"], port=80, allow_ranges=CONTROL_ALLOW),
    netns.listener("ctl-tunnel", "tcp", upstream=OK + ":443", egress=True, allow_ranges=CONTROL_ALLOW),
    # an allow entry naming an IP literal admits that literal only, not names resolving to it
    netns.listener("lit-connect", "connect", allow=["10.0.0.5:443", "ten.gk.test"]),
    # deny_ranges on a public address
    netns.listener("deny-connect", "connect", allow=sorted(PUBLIC_NAMES), deny_ranges=["1.2.3.4/32"]),
    netns.listener("deny-tls", "tls", allow=sorted(PUBLIC_NAMES), port=443, deny_ranges=["1.2.3.4/32"]),
])


def connect_req(target):
    return ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode()


def get_req(url, host, close=True):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
            % (url, host, "Connection: close\r\n" if close else "")).encode()


def host_req(host):
    return t.http_request(host, path="/latest/meta-data/")


def bracket(a):
    return "[%s]" % a if ":" in a else a


# --------------------------------------------------------------------------
# Probes: (id, listener, bytes, expectation)

PROBES = []
EXPECT = {}


def probe(pid, listener, data, retry_on=(), **expect):
    assert pid not in EXPECT, pid
    PROBES.append({"id": pid, "listener": listener, "send": netns.b64(data), "retry_on": list(retry_on)})
    EXPECT[pid] = expect


def http_refusal(status, reasons):
    return dict(kind="http", status=status, reasons=reasons)


DENIED_HTTP = http_refusal({403}, {"address_denied"})
DENIED_TLS = dict(kind="tls", replies={ALERT_ACCESS_DENIED}, reasons={"address_denied"})
NOT_ALLOWED_HTTP = http_refusal({403}, {"not_allowed"})
NOT_ALLOWED_TLS = dict(kind="tls", replies={ALERT_UNRECOGNIZED_NAME}, reasons={"not_allowed"})
# Obfuscated literals: any refusal will do, as long as nothing is dialed.
ANY_HTTP = http_refusal({400, 403, 503}, {"not_allowed", "malformed", "address_denied", "no_address"})
ANY_TLS = dict(kind="tls", replies={ALERT_UNRECOGNIZED_NAME, ALERT_ACCESS_DENIED, ALERT_INTERNAL_ERROR, b""},
               reasons={"not_allowed", "malformed", "address_denied", "no_address"})

# Controls first: they prove every canary path works.
probe("ctl-connect-name", "ctl-connect", connect_req(OK + ":443"), kind="control",
      prefix=ESTABLISHED + b"CANARY 10.0.0.5 443\n", hits={"10.0.0.5:443": 1})
probe("ctl-connect-literal", "ctl-connect", connect_req("10.0.0.5:443"), kind="control",
      prefix=ESTABLISHED + b"CANARY 10.0.0.5 443\n", hits={"10.0.0.5:443": 1})
probe("ctl-absolute", "ctl-connect", get_req("http://%s/" % OK, OK), kind="control",
      prefix=b"CANARY 10.0.0.5 80\n", hits={"10.0.0.5:80": 1})
# a second, pipelined request naming the metadata host is admitted on its
# own: another origin never rides the connection checked for ok.gk.test, so
# it never reaches 10.0.0.5 (nor anything else)
probe("ctl-absolute-pipelined", "ctl-connect",
      get_req("http://%s/" % OK, OK, close=False) + get_req("http://meta.gk.test/latest/meta-data/",
                                                            "meta.gk.test"),
      kind="control", prefix=b"CANARY 10.0.0.5 80\n", hits={"10.0.0.5:80": 1},
      decision="deny", reason="not_allowed")  # meta.gk.test is allowed on 443 only
probe("ctl-tls", "ctl-tls", t.raw_client_hello(OK), kind="control",
      prefix=b"CANARY 10.0.0.5 443\n", hits={"10.0.0.5:443": 1})
probe("ctl-http", "ctl-http", host_req(OK), kind="control",
      prefix=b"CANARY 10.0.0.5 80\n", hits={"10.0.0.5:80": 1})
probe("ctl-tunnel", "ctl-tunnel", b"", retry_on=("no_address",), kind="control",
      prefix=b"CANARY 10.0.0.5 443\n", hits={"10.0.0.5:443": 1})
probe("lit-connect-literal", "lit-connect", connect_req("10.0.0.5:443"), kind="control",
      prefix=ESTABLISHED + b"CANARY 10.0.0.5 443\n", hits={"10.0.0.5:443": 1})
probe("deny-connect-control", "deny-connect", connect_req("pubok.gk.test:443"), kind="control",
      prefix=ESTABLISHED + b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1})
probe("deny-tls-control", "deny-tls", t.raw_client_hello("pubok.gk.test"), kind="control",
      prefix=b"CANARY 1.2.3.5 443\n", hits={"1.2.3.5:443": 1})
probe("lit-connect-name", "lit-connect", connect_req("ten.gk.test:443"), names=["ten.gk.test"], **DENIED_HTTP)
for n in ("pub.gk.test", "pubmapped.gk.test", "pubnat64.gk.test", "pubsixtofour.gk.test"):
    short = n.split(".")[0]
    probe("deny-connect-" + short, "deny-connect", connect_req(n + ":443"), names=[n], **DENIED_HTTP)
    probe("deny-tls-" + short, "deny-tls", t.raw_client_hello(n), names=[n], **DENIED_TLS)
# allow_ranges for 10.0.0.5 does not open the metadata address
probe("ctl-connect-meta", "ctl-connect", connect_req("meta.gk.test:443"), **DENIED_HTTP)
probe("ctl-tls-meta", "ctl-tls", t.raw_client_hello("meta.gk.test"), **DENIED_TLS)
probe("ctl-http-meta", "ctl-http", host_req("meta.gk.test"), **DENIED_HTTP)
probe("ctl-connect-literal-meta", "ctl-connect", connect_req("169.254.169.254:443"), **NOT_ALLOWED_HTTP)

# Allowed names whose every address is refused, through each way in.
for n in ALL_NAMES:
    short = n.split(".")[0]
    probe("connect-" + short, "gw-connect", connect_req(n + ":443"), names=[n], **DENIED_HTTP)
    probe("absolute-" + short, "gw-connect", get_req("http://%s/latest/meta-data/" % n, n),
          names=[n], **DENIED_HTTP)
    probe("sni-" + short, "gw-tls", t.raw_client_hello(n), names=[n], **DENIED_TLS)
    probe("host-" + short, "gw-http", host_req(n), names=[n], **DENIED_HTTP)
    probe("star-connect-" + short, "gw-star", connect_req(n + ":443"), names=[n], **DENIED_HTTP)
    probe("star-absolute-" + short, "gw-star", get_req("http://%s/" % n, n), names=[n], **DENIED_HTTP)
    probe("star-sni-" + short, "gw-star-tls", t.raw_client_hello(n), names=[n], **DENIED_TLS)
    probe("star-host-" + short, "gw-star-http", host_req(n), names=[n], **DENIED_HTTP)

# Pinned tunnels with the default guard.
for n in ("meta.gk.test", "ten.gk.test", "lo.gk.test", "mapped.gk.test", "nat64.gk.test", "mixed.gk.test"):
    short = n.split(".")[0]
    probe("tunnel-" + short, "tunnel-" + short, b"", retry_on=("no_address",), names=[n],
          kind="close", reasons={"address_denied"})

# IP literals: not in any allow list ("*" never matches them).
LITERALS = ["169.254.169.254", "10.0.0.5", "127.0.0.1", "192.168.1.1", "0.0.0.0", "::1",
            "::ffff:10.0.0.5", "::ffff:169.254.169.254", "64:ff9b::a00:5", "::a00:5", "fd00::5"]
for i, a in enumerate(LITERALS):
    for lname in ("gw-connect", "gw-star"):
        for port in (80, 443):
            probe("literal-%s-connect-%d-%d" % (lname, i, port), lname,
                  connect_req("%s:%d" % (bracket(a), port)), **NOT_ALLOWED_HTTP)
        probe("literal-%s-absolute-%d" % (lname, i), lname,
              get_req("http://%s/latest/meta-data/" % bracket(a), bracket(a)), **NOT_ALLOWED_HTTP)
    for lname in ("gw-tls", "gw-star-tls"):
        probe("literal-%s-sni-%d" % (lname, i), lname, t.raw_client_hello(a), **NOT_ALLOWED_TLS)
    for lname in ("gw-http", "gw-star-http"):
        probe("literal-%s-host-%d" % (lname, i), lname, host_req(bracket(a)), **NOT_ALLOWED_HTTP)
        probe("literal-%s-hostport-%d" % (lname, i), lname, host_req(bracket(a) + ":80"),
              **NOT_ALLOWED_HTTP)

# Other spellings of 169.254.169.254 and 127.0.0.1 (inet_aton forms, a
# trailing dot, long IPv6 forms), and names /etc/hosts may answer with
# loopback; against the "*" gateways, which admit any name.
OBFUSCATED = ["2852039166", "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376", "169.254.43518",
              "0xa9fea9fe", "169.254.169.254.", "127.1", "0x7f.1", "017700000001", "0x7f000001",
              "localhost", "localhost.", "LOCALHOST", "ip6-localhost", "[0:0:0:0:0:ffff:a9fe:a9fe]",
              "[::ffff:0a00:0005]", "[0::1]"]
for i, a in enumerate(OBFUSCATED):
    probe("odd-connect-%d" % i, "gw-star", connect_req(a + ":443"), **ANY_HTTP)
    probe("odd-absolute-%d" % i, "gw-star", get_req("http://%s/" % a, a), **ANY_HTTP)
    probe("odd-host-%d" % i, "gw-star-http", host_req(a), **ANY_HTTP)
    if not a.startswith("["):
        probe("odd-sni-%d" % i, "gw-star-tls", t.raw_client_hello(a), **ANY_TLS)
    probe("odd-exact-connect-%d" % i, "gw-connect", connect_req(a + ":443"), **ANY_HTTP)

ATTACKS = [p["id"] for p in PROBES if EXPECT[p["id"]]["kind"] != "control"]
CONTROLS = [p["id"] for p in PROBES if EXPECT[p["id"]]["kind"] == "control"]


# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def result():
    scenario = {"addrs": CANARY_ADDRS, "ports": PORTS, "dns": DNS, "config": CONFIG,
                "probes": PROBES, "ttl": 60}
    res = netns.run(scenario, timeout=170)
    res["by_id"] = {p["id"]: p for p in res["probes"]}
    return res


def _ctx(res, p):
    return "probe %s: reply=%r access=%r hits=%r\nlog tail:\n%s" % (
        p["id"], base64.b64decode(p["reply"])[:300], p["access"], p["hits"], "\n".join(res["log"][-20:]))


def _status(reply):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return int(m.group(1)) if m else None


def _header(reply, name):
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name:
            return v.strip()
    return None


def _address_forms(a):
    ip = ipaddress.ip_address(a)
    forms = {a, str(ip)}
    if ip.version == 6:
        forms.add(socket.inet_ntop(socket.AF_INET6, ip.packed))
        if ip.ipv4_mapped:
            forms.add(str(ip.ipv4_mapped))
    return forms


@pytest.mark.parametrize("pid", CONTROLS)
def test_control_connection_reaches_its_canary(result, pid):
    p = result["by_id"][pid]
    exp = EXPECT[pid]
    reply = base64.b64decode(p["reply"])
    assert p["hits"] == exp["hits"], _ctx(result, p)
    assert reply.startswith(exp["prefix"]), _ctx(result, p)
    acc = p["access"]
    assert acc and acc["decision"] == exp.get("decision", "allow"), _ctx(result, p)
    if "reason" in exp:
        assert acc["reason"] == exp["reason"], _ctx(result, p)
    assert acc["upstream"] == list(exp["hits"])[0], _ctx(result, p)


@pytest.mark.parametrize("pid", ATTACKS)
def test_attack_is_refused_and_hits_no_canary(result, pid):
    p = result["by_id"][pid]
    exp = EXPECT[pid]
    reply = base64.b64decode(p["reply"])
    assert p["hits"] == {}, "CANARY HIT: " + _ctx(result, p)
    acc = p["access"]
    assert acc is not None, "no access line: " + _ctx(result, p)
    assert acc["reason"] in exp["reasons"], _ctx(result, p)
    assert acc["upstream"] == "-", _ctx(result, p)
    assert p["how"] in ("eof", "reset"), _ctx(result, p)
    if acc["reason"] in ("address_denied", "not_allowed"):
        assert acc["decision"] == "deny", _ctx(result, p)
    if exp["kind"] == "http":
        assert _status(reply) in exp["status"], _ctx(result, p)
        if _status(reply) == 403 and "listener" in acc and "connect" in acc["listener"]:
            assert _header(reply, "x-gatekeeper-reason") == acc["reason"], _ctx(result, p)
    elif exp["kind"] == "tls":
        assert reply in exp["replies"], _ctx(result, p)
    elif exp["kind"] == "close":
        assert reply == b"", _ctx(result, p)
    if acc["reason"] == "address_denied" and exp.get("names"):
        # error= names a refused address of the answer
        forms = set()
        for n in exp["names"]:
            for a in DNS[n]:
                forms |= _address_forms(a)
        err = acc.get("error", "")
        assert any(f in err for f in forms), "error %r names none of %r: %s" % (err, forms, _ctx(result, p))


def test_no_canary_saw_anything_but_the_controls(result):
    expected = {}
    for pid in CONTROLS:
        for k, v in EXPECT[pid]["hits"].items():
            expected[k] = expected.get(k, 0) + v
    got = {k: c["accepted"] for k, c in result["canaries"].items() if c["accepted"]}
    assert got == expected, "canary hits %r, expected only the controls' %r" % (got, expected)
    # the pipelined request for the metadata host did not ride the
    # connection checked for ok.gk.test
    seen = [base64.b64decode(r["first"]) for r in result["canaries"]["10.0.0.5:80"]["results"]]
    assert any(b"GET http://ok.gk.test/" in s for s in seen), seen
    assert not any(b"meta.gk.test" in s for s in seen), seen


def test_gatekeeper_survived_the_attacks(result):
    assert result["alive"], "\n".join(result["log"][-40:])
    assert result["sanitizer"] is None, result["sanitizer"]
    n_access = sum(1 for l in result["log"] if "msg=access" in l)
    assert n_access >= len(PROBES)
