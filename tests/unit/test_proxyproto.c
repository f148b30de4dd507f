/*
 * test_proxyproto.c: unit tests for the PROXY protocol parser and writers.
 * v1 vectors are text lines; v2 vectors are bytes with a comment per field,
 * in the manner of haproxy's reg-tests. Every proper prefix of a good header
 * must give PARSE_NEED_MORE; round trips run write -> parse for both
 * versions and both address families.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "proxyproto.h"

#define V(a) (a), sizeof(a)

/* The 12-byte v2 signature, spelled out once. */
#define V2_SIG 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a

/* assert_prefixes: every proper prefix of buf is a valid prefix. */
static void
assert_prefixes(const uint8_t *buf, size_t len)
{
	struct proxyproto_header h;
	size_t i;

	for (i = 0; i < len; i++) {
		enum parse_result r = proxyproto_parse(buf, i, &h);

		if (r != PARSE_NEED_MORE)
			fail_msg("prefix %zu of %zu: %s", i, len, parse_result_name(r));
	}
}

/* assert_prefixes_not_ok: a bad header is never accepted, whole or cut. */
static void
assert_prefixes_not_ok(const uint8_t *buf, size_t len)
{
	struct proxyproto_header h;
	size_t i;

	for (i = 0; i < len; i++) {
		enum parse_result r = proxyproto_parse(buf, i, &h);

		assert_true(r == PARSE_NEED_MORE || r == PARSE_MALFORMED);
	}
}

/* assert_in: ss holds addr:port of family af (addr in text form). */
static void
assert_in(const struct sockaddr_storage *ss, int af, const char *addr, uint16_t port)
{
	char text[INET6_ADDRSTRLEN];

	assert_int_equal(ss->ss_family, af);
	if (af == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, ss, sizeof(sin));
		assert_non_null(inet_ntop(AF_INET, &sin.sin_addr, text, sizeof(text)));
		assert_int_equal(ntohs(sin.sin_port), port);
	} else {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, ss, sizeof(sin6));
		assert_non_null(inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof(text)));
		assert_int_equal(ntohs(sin6.sin6_port), port);
	}
	assert_string_equal(text, addr);
}

/* --- v1 --- */

static void
test_v1_good(void **state)
{
	static const struct {
		const char *line;
		int family;
		const char *src, *dst;
		uint16_t sport, dport;
	} cases[] = {
	    {"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", AF_INET, "192.168.0.1",
	     "192.168.0.11", 56324, 443},
	    {"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", AF_INET,
	     "255.255.255.255", "255.255.255.255", 65535, 65535},
	    {"PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", AF_INET, "0.0.0.0", "10.0.0.1", 0, 0},
	    {"PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n", AF_INET6, "2001:db8::1",
	     "2001:db8::2", 1234, 80},
	    {"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	     AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535},
	    {"PROXY TCP6 ::FFFF:10.1.2.3 ::1 40000 8080\r\n", AF_INET6, "::ffff:10.1.2.3", "::1",
	     40000, 8080},
	};
	struct proxyproto_header h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const uint8_t *buf = (const uint8_t *)cases[i].line;
		size_t len = strlen(cases[i].line);

		assert_int_equal(proxyproto_parse(buf, len, &h), PARSE_OK);
		assert_int_equal(h.version, 1);
		assert_int_equal(h.local, 0);
		assert_int_equal(h.family, cases[i].family);
		assert_int_equal(h.len, len);
		assert_in(&h.src, cases[i].family, cases[i].src, cases[i].sport);
		assert_in(&h.dst, cases[i].family, cases[i].dst, cases[i].dport);
		assert_prefixes(buf, len);
	}
}

static void
test_v1_unknown(void **state)
{
	static const char *const lines[] = {
	    "PROXY UNKNOWN\r\n",
	    /* the spec's worst case: 107 bytes, the rest ignored */
	    ("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
	    "PROXY UNKNOWN whatever the sender liked\r\n",
	};
	struct proxyproto_header h;
	size_t i;

	(void)state;
	assert_int_equal(strlen(lines[1]), PROXYPROTO_V1_MAX);
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		const uint8_t *buf = (const uint8_t *)lines[i];
		size_t len = strlen(lines[i]);

		assert_int_equal(proxyproto_parse(buf, len, &h), PARSE_OK);
		assert_int_equal(h.version, 1);
		assert_int_equal(h.local, 1);
		assert_int_equal(h.family, AF_UNSPEC);
		assert_int_equal(h.len, len);
		assert_prefixes(buf, len);
	}
}

/* The header ends at CRLF; the payload after it is the caller's. */
static void
test_v1_payload_follows(void **state)
{
	static const char buf[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" /* header */
				  "GET / HTTP/1.1\r\n"				      /* payload */
				  "Host: 192.168.0.11\r\n\r\n";
	struct proxyproto_header h;

	(void)state;
	assert_int_equal(proxyproto_parse((const uint8_t *)buf, sizeof(buf) - 1, &h), PARSE_OK);
	assert_int_equal(h.len, 47);
}

static void
test_v1_bad(void **state)
{
	static const char *const bad[] = {
	    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",	  /* bare LF */
	    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX",	  /* lone CR */
	    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n", /* trailing space */
	    "PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n", /* double space */
	    "PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", /* double space */
	    "PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",	  /* three fields */
	    "PROXY TCP4 192.168.0.1 192.168.0.11 1 2 3\r\n",	  /* five fields */
	    "PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n", /* leading zero */
	    "PROXY TCP4 192.168.0.256 192.168.0.11 1 443\r\n",	  /* octet > 255 */
	    "PROXY TCP4 192.168.0 192.168.0.11 56324 443\r\n",	  /* three octets */
	    "PROXY TCP4 1.2.3.4.5 192.168.0.11 56324 443\r\n",	  /* five octets */
	    "PROXY TCP4 1.2.3.4 1.2.3.4 056324 443\r\n",	  /* port leading zero */
	    "PROXY TCP4 1.2.3.4 1.2.3.4 00 443\r\n",		  /* port "00" */
	    "PROXY TCP4 1.2.3.4 1.2.3.4 65536 443\r\n",		  /* port > 65535 */
	    "PROXY TCP4 1.2.3.4 1.2.3.4 -1 443\r\n",		  /* sign */
	    "PROXY TCP4 ::1 ::1 1 2\r\n",			  /* v6 under TCP4 */
	    "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",		  /* v4 under TCP6 */
	    "PROXY TCP6 ::1 ::g 1 2\r\n",			  /* not hex */
	    "PROXY TCP6 1:2:3 ::1 1 2\r\n",			  /* too few groups */
	    "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",		  /* zone */
	    "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",		  /* unknown keyword */
	    "PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n",		  /* keyword case */
	    "PROXY UNKNOWNX\r\n",				  /* not UNKNOWN */
	    "PROXY \r\n",					  /* empty */
	    "PROXY UNKNOWN\r\r\n",				  /* CR inside */
	    /* no CRLF within 107 bytes */
	    ("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655355\r\n"),
	};
	struct proxyproto_header h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const uint8_t *buf = (const uint8_t *)bad[i];
		size_t len = strlen(bad[i]);
		enum parse_result r = proxyproto_parse(buf, len, &h);

		if (r != PARSE_MALFORMED)
			fail_msg("\"%s\": got %s", bad[i], parse_result_name(r));
		assert_int_equal(h.len, 0);
		assert_prefixes_not_ok(buf, len);
	}
}

/* Without CRLF, a long line is refused at byte 107, not left waiting. */
static void
test_v1_cap(void **state)
{
	uint8_t buf[200];
	struct proxyproto_header h;

	(void)state;
	memcpy(buf, "PROXY UNKNOWN ", 14);
	memset(buf + 14, 'x', sizeof(buf) - 14);
	assert_int_equal(proxyproto_parse(buf, PROXYPROTO_V1_MAX - 1, &h), PARSE_NEED_MORE);
	assert_int_equal(proxyproto_parse(buf, PROXYPROTO_V1_MAX, &h), PARSE_MALFORMED);
	/* CR as byte 107: the LF would be byte 108 */
	buf[PROXYPROTO_V1_MAX - 1] = '\r';
	assert_int_equal(proxyproto_parse(buf, PROXYPROTO_V1_MAX, &h), PARSE_MALFORMED);
	/* junk shows before the CRLF */
	memcpy(buf, "PROXY TCP4 1.2.3.4 x", 20);
	assert_int_equal(proxyproto_parse(buf, 20, &h), PARSE_MALFORMED);
	memcpy(buf, "PROXY TCP5", 10);
	assert_int_equal(proxyproto_parse(buf, 10, &h), PARSE_MALFORMED);
	memcpy(buf, "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 ", 31); /* a fifth field starts */
	assert_int_equal(proxyproto_parse(buf, 30, &h), PARSE_NEED_MORE);
	assert_int_equal(proxyproto_parse(buf, 31, &h), PARSE_MALFORMED);
	memcpy(buf, "PROXY UNKNOWN-", 14); /* UNKNOWN, then not a space */
	assert_int_equal(proxyproto_parse(buf, 13, &h), PARSE_NEED_MORE);
	assert_int_equal(proxyproto_parse(buf, 14, &h), PARSE_MALFORMED);
}

/* --- v2 --- */

static const uint8_t v2_tcp4[] = {
    V2_SIG,		      /* signature */
    0x21,		      /* version 2, command PROXY */
    0x11,		      /* family: TCP over IPv4 */
    0x00,   0x0c,	      /* address length: 12 */
    0xc0,   0x00, 0x02, 0x01, /* source 192.0.2.1 */
    0xc6,   0x33, 0x64, 0x07, /* destination 198.51.100.7 */
    0xd4,   0x31,	      /* source port 54321 */
    0x01,   0xbb,	      /* destination port 443 */
};

static const uint8_t v2_tcp6_tlvs[] = {
    V2_SIG,					      /* signature */
    0x21,					      /* version 2, command PROXY */
    0x21,					      /* family: TCP over IPv6 */
    0x00,   0x3c,				      /* address length: 36 + 24 of TLVs */
    0x20,   0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, /* source 2001:db8::1 */
    0x00,   0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01,
    0x0d,   0xb8, 0x00, 0x00, 0x00, 0x00,			  /* destination 2001:db8::2 */
    0x00,   0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x30, 0x39, /* source port 12345 */
    0x00,   0x50,						  /* destination port 80 */
    0x02,							  /* TLV: PP2_TYPE_AUTHORITY */
    0x00,   0x06,						  /* length 6 */
    'a',    '.',  't',	'e',  's',  't',  0x04,			  /* TLV: PP2_TYPE_NOOP */
    0x00,   0x00,						  /* length 0 */
    0x03,			    /* TLV: PP2_TYPE_CRC32C (not verified) */
    0x00,   0x04,		    /* length 4 */
    0x00,   0x00, 0x00, 0x00, 0x05, /* TLV: PP2_TYPE_UNIQUE_ID */
    0x00,   0x02,		    /* length 2 */
    0xab,   0xcd,
};

static const uint8_t v2_local[] = {
    V2_SIG,	  /* signature */
    0x20,	  /* version 2, command LOCAL */
    0x00,	  /* family: UNSPEC */
    0x00,   0x00, /* address length: 0 */
};

static const uint8_t v2_local_with_block[] = {
    V2_SIG,	  /* signature */
    0x20,	  /* version 2, command LOCAL */
    0x11,	  /* family: ignored under LOCAL */
    0x00,   0x05, /* address length: 5, skipped unread */
    0x01,   0x02, 0x03, 0x04, 0x05,
};

static const uint8_t v2_proxy_unspec[] = {
    V2_SIG,	  /* signature */
    0x21,	  /* version 2, command PROXY */
    0x00,	  /* family: UNSPEC */
    0x00,   0x02, /* address length: 2, skipped unread */
    0xff,   0xff,
};

static const uint8_t v2_udp4[] = {
    V2_SIG,		      /* signature */
    0x21,		      /* version 2, command PROXY */
    0x12,		      /* family: UDP over IPv4, read as UNSPEC */
    0x00,   0x0c,	      /* address length: 12 */
    0x0a,   0x00, 0x00, 0x01, /* source */
    0x0a,   0x00, 0x00, 0x02, /* destination */
    0x00,   0x35,	      /* source port */
    0x00,   0x35,	      /* destination port */
};

static void
test_v2_good(void **state)
{
	struct proxyproto_header h;

	(void)state;
	assert_int_equal(proxyproto_parse(V(v2_tcp4), &h), PARSE_OK);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.local, 0);
	assert_int_equal(h.family, AF_INET);
	assert_int_equal(h.len, sizeof(v2_tcp4));
	assert_in(&h.src, AF_INET, "192.0.2.1", 54321);
	assert_in(&h.dst, AF_INET, "198.51.100.7", 443);
	assert_prefixes(V(v2_tcp4));

	assert_int_equal(proxyproto_parse(V(v2_tcp6_tlvs), &h), PARSE_OK);
	assert_int_equal(h.family, AF_INET6);
	assert_int_equal(h.len, sizeof(v2_tcp6_tlvs));
	assert_in(&h.src, AF_INET6, "2001:db8::1", 12345);
	assert_in(&h.dst, AF_INET6, "2001:db8::2", 80);
	assert_prefixes(V(v2_tcp6_tlvs));
}

static void
test_v2_local_and_fallbacks(void **state)
{
	static const struct {
		const uint8_t *buf;
		size_t len;
	} cases[] = {
	    {V(v2_local)},
	    {V(v2_local_with_block)},
	    {V(v2_proxy_unspec)},
	    {V(v2_udp4)},
	};
	struct proxyproto_header h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(proxyproto_parse(cases[i].buf, cases[i].len, &h), PARSE_OK);
		assert_int_equal(h.version, 2);
		assert_int_equal(h.local, 1);
		assert_int_equal(h.family, AF_UNSPEC);
		assert_int_equal(h.src.ss_family, AF_UNSPEC);
		assert_int_equal(h.len, cases[i].len);
		assert_prefixes(cases[i].buf, cases[i].len);
	}
}

/* AF_UNIX stream: a 216-byte block, read as UNSPEC. */
static void
test_v2_unix(void **state)
{
	uint8_t buf[16 + 216 + 4];
	struct proxyproto_header h;

	(void)state;
	memcpy(buf, v2_local, 12);
	buf[12] = 0x21; /* version 2, command PROXY */
	buf[13] = 0x31; /* family: UNIX stream */
	buf[14] = 0x00; /* address length: 216 + a 4-byte TLV */
	buf[15] = 0xdc;
	memset(buf + 16, 0, 216);
	memcpy(buf + 16, "/run/a.sock", 11);
	buf[232] = 0x04; /* TLV: NOOP */
	buf[233] = 0x00; /* length 1 */
	buf[234] = 0x01;
	buf[235] = 0x00;
	assert_int_equal(proxyproto_parse(V(buf), &h), PARSE_OK);
	assert_int_equal(h.local, 1);
	assert_int_equal(h.family, AF_UNSPEC);
	assert_int_equal(h.len, sizeof(buf));
	assert_prefixes(V(buf));
	/* 215 bytes cannot hold two AF_UNIX addresses */
	buf[15] = 0xd7;
	assert_int_equal(proxyproto_parse(buf, 16 + 215, &h), PARSE_MALFORMED);
}

static const uint8_t v2_bad_version[] = {
    V2_SIG,	  /* signature */
    0x11,	  /* version 1 in a binary header */
    0x11,	  /* family: TCP over IPv4 */
    0x00,   0x0c, /* address length */
};

static const uint8_t v2_bad_command[] = {
    V2_SIG,	  /* signature */
    0x22,	  /* version 2, command 2 (unassigned) */
    0x11,	  /* family: TCP over IPv4 */
    0x00,   0x0c, /* address length */
};

static const uint8_t v2_bad_family[] = {
    V2_SIG,	  /* signature */
    0x21,	  /* version 2, command PROXY */
    0x41,	  /* family 4 (unassigned) */
    0x00,   0x0c, /* address length */
};

static const uint8_t v2_bad_proto[] = {
    V2_SIG,	  /* signature */
    0x21,	  /* version 2, command PROXY */
    0x13,	  /* IPv4, transport 3 (unassigned) */
    0x00,   0x0c, /* address length */
};

static const uint8_t v2_bad_inet_unspec_proto[] = {
    V2_SIG,	  /* signature */
    0x21,	  /* version 2, command PROXY */
    0x10,	  /* IPv4 with transport UNSPEC: not a listed pair */
    0x00,   0x0c, /* address length */
};

static const uint8_t v2_short_tcp4[] = {
    V2_SIG,		      /* signature */
    0x21,		      /* version 2, command PROXY */
    0x11,		      /* family: TCP over IPv4 */
    0x00,   0x08,	      /* address length: 8, under 12 */
    0xc0,   0x00, 0x02, 0x01, /* source */
    0xc6,   0x33, 0x64, 0x07, /* destination, then no ports */
};

static const uint8_t v2_short_tcp6[] = {
    V2_SIG,	  /* signature */
    0x21,	  /* version 2, command PROXY */
    0x21,	  /* family: TCP over IPv6 */
    0x00,   0x0c, /* address length: 12, under 36 */
    0,	    0,	  0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static const uint8_t v2_tlv_overrun[] = {
    V2_SIG,		      /* signature */
    0x21,		      /* version 2, command PROXY */
    0x11,		      /* family: TCP over IPv4 */
    0x00,   0x11,	      /* address length: 12 + 5 */
    0xc0,   0x00, 0x02, 0x01, /* source */
    0xc6,   0x33, 0x64, 0x07, /* destination */
    0xd4,   0x31,	      /* source port */
    0x01,   0xbb,	      /* destination port */
    0x02,		      /* TLV: AUTHORITY */
    0x00,   0x03,	      /* length 3, but 2 bytes left in the block */
    'a',    'b',
};

static const uint8_t v2_tlv_cut[] = {
    V2_SIG,		      /* signature */
    0x21,		      /* version 2, command PROXY */
    0x11,		      /* family: TCP over IPv4 */
    0x00,   0x0e,	      /* address length: 12 + 2 */
    0xc0,   0x00, 0x02, 0x01, /* source */
    0xc6,   0x33, 0x64, 0x07, /* destination */
    0xd4,   0x31,	      /* source port */
    0x01,   0xbb,	      /* destination port */
    0x04,   0x00,	      /* two bytes: no room for a TLV header */
};

static const uint8_t v2_udp6_tlv_overrun[] = {
    V2_SIG,	  /* signature */
    0x21,	  /* version 2, command PROXY */
    0x22,	  /* family: UDP over IPv6 (read as UNSPEC) */
    0x00,   0x27, /* address length: 36 + 3 */
    0,	    0,	  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* source */
    0,	    0,	  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* destination */
    0x00,   0x35,					    /* source port */
    0x00,   0x35,					    /* destination port */
    0x04,						    /* TLV: NOOP */
    0x00,   0x01,					    /* length 1, but nothing left */
};

static const uint8_t v2_too_long[] = {
    V2_SIG,	  /* signature */
    0x21,	  /* version 2, command PROXY */
    0x11,	  /* family: TCP over IPv4 */
    0x0f,   0xf1, /* address length: 4081, header over PROXYPROTO_PARSE_MAX */
};

static void
test_v2_bad(void **state)
{
	static const struct {
		const char *what;
		const uint8_t *buf;
		size_t len;
	} cases[] = {
	    {"version 1", V(v2_bad_version)},
	    {"command 2", V(v2_bad_command)},
	    {"family 4", V(v2_bad_family)},
	    {"transport 3", V(v2_bad_proto)},
	    {"IPv4 with UNSPEC transport", V(v2_bad_inet_unspec_proto)},
	    {"TCP4 block too short", V(v2_short_tcp4)},
	    {"TCP6 block too short", V(v2_short_tcp6)},
	    {"TLV overruns", V(v2_tlv_overrun)},
	    {"TLV header cut", V(v2_tlv_cut)},
	    {"UDP6 TLV overruns", V(v2_udp6_tlv_overrun)},
	    {"over PROXYPROTO_PARSE_MAX", V(v2_too_long)},
	};
	struct proxyproto_header h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum parse_result r = proxyproto_parse(cases[i].buf, cases[i].len, &h);

		if (r != PARSE_MALFORMED)
			fail_msg("%s: got %s", cases[i].what, parse_result_name(r));
		assert_prefixes_not_ok(cases[i].buf, cases[i].len);
	}
	/* A bad ver_cmd byte shows at byte 13, before the rest arrives. */
	assert_int_equal(proxyproto_parse(v2_bad_version, 13, &h), PARSE_MALFORMED);
	assert_int_equal(proxyproto_parse(v2_bad_family, 14, &h), PARSE_MALFORMED);
}

/* A header of exactly PROXYPROTO_PARSE_MAX bytes is accepted. */
static void
test_v2_cap(void **state)
{
	static uint8_t buf[PROXYPROTO_PARSE_MAX];
	size_t alen = PROXYPROTO_PARSE_MAX - 16, tlv = alen - 12 - 3;
	struct proxyproto_header h;

	(void)state;
	memset(buf, 0, sizeof(buf));
	memcpy(buf, v2_tcp4, 16);
	buf[14] = (uint8_t)(alen >> 8); /* address length */
	buf[15] = (uint8_t)alen;
	buf[28] = 0x04; /* one NOOP TLV filling the rest */
	buf[29] = (uint8_t)(tlv >> 8);
	buf[30] = (uint8_t)tlv;
	assert_int_equal(proxyproto_parse(V(buf), &h), PARSE_OK);
	assert_int_equal(h.len, PROXYPROTO_PARSE_MAX);
	assert_prefixes(V(buf));
}

/* --- neither signature --- */

static void
test_not_found(void **state)
{
	static const struct {
		const char *buf;
		size_t len;
	} cases[] = {
	    {"GET / HTTP/1.1\r\n", 16}, /* HTTP */
	    {"POST /", 6},		/* P, then not R */
	    {"PROPFIND /", 10},		/* PRO, then not X */
	    {"PROXYX", 6},		/* PROXY, then not a space */
	    {"\x16\x03\x01", 3},	/* TLS */
	    {"\r\n\r\nX", 5},		/* CRLF CRLF, then not NUL */
	    {"\r\n\r\n\0\r\nQUIX", 11}, /* almost the v2 signature */
	    {"SSH-2.0-x\r\n", 11},	/* SSH */
	};
	struct proxyproto_header h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(proxyproto_parse((const uint8_t *)cases[i].buf, cases[i].len, &h),
				 PARSE_NOT_FOUND);
	/* prefixes of a signature are not "not found" */
	assert_int_equal(proxyproto_parse((const uint8_t *)"PROX", 4, &h), PARSE_NEED_MORE);
	assert_int_equal(proxyproto_parse((const uint8_t *)"\r\n\r\n\0", 5, &h), PARSE_NEED_MORE);
	assert_int_equal(proxyproto_parse(NULL, 0, &h), PARSE_NEED_MORE);
}

/* --- writers --- */

static struct sockaddr_in
in4(const char *addr, uint16_t port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, addr, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6
in6(const char *addr, uint16_t port)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, addr, &sin6.sin6_addr), 1);
	return sin6;
}

static void
test_write_v1(void **state)
{
	struct sockaddr_in s4 = in4("192.168.0.1", 56324), d4 = in4("192.168.0.11", 443);
	struct sockaddr_in6 s6 = in6("2001:db8::1", 1), d6 = in6("::1", 65535);
	static const char want4[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	static const char want6[] = "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
	static const char unknown[] = "PROXY UNKNOWN\r\n";
	struct sockaddr_un su;
	uint8_t out[PROXYPROTO_V1_MAX];

	(void)state;
	assert_int_equal(
	    proxyproto_write_v1(out, sizeof(out), (struct sockaddr *)&s4, (struct sockaddr *)&d4),
	    sizeof(want4) - 1);
	assert_memory_equal(out, want4, sizeof(want4) - 1);
	assert_int_equal(
	    proxyproto_write_v1(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d6),
	    sizeof(want6) - 1);
	assert_memory_equal(out, want6, sizeof(want6) - 1);

	/* no source, mixed families, a family PROXY cannot carry: UNKNOWN */
	assert_int_equal(proxyproto_write_v1(out, sizeof(out), NULL, (struct sockaddr *)&d4),
			 sizeof(unknown) - 1);
	assert_memory_equal(out, unknown, sizeof(unknown) - 1);
	assert_int_equal(
	    proxyproto_write_v1(out, sizeof(out), (struct sockaddr *)&s4, (struct sockaddr *)&d6),
	    sizeof(unknown) - 1);
	memset(&su, 0, sizeof(su));
	su.sun_family = AF_UNIX;
	assert_int_equal(
	    proxyproto_write_v1(out, sizeof(out), (struct sockaddr *)&su, (struct sockaddr *)&su),
	    sizeof(unknown) - 1);

	/* too small: 0, and nothing written */
	memset(out, 0xee, sizeof(out));
	assert_int_equal(proxyproto_write_v1(out, sizeof(want4) - 2, (struct sockaddr *)&s4,
					     (struct sockaddr *)&d4),
			 0);
	assert_int_equal(out[0], 0xee);
	assert_int_equal(proxyproto_write_v1(out, sizeof(want4) - 1, (struct sockaddr *)&s4,
					     (struct sockaddr *)&d4),
			 sizeof(want4) - 1);
	assert_int_equal(proxyproto_write_v1(out, sizeof(unknown) - 2, NULL, NULL), 0);
}

static void
test_write_v2(void **state)
{
	struct sockaddr_in s4 = in4("192.0.2.1", 54321), d4 = in4("198.51.100.7", 443);
	struct sockaddr_in6 s6 = in6("2001:db8::1", 12345), d6 = in6("2001:db8::2", 80);
	static const uint8_t want_local[] = {
	    V2_SIG,	  /* signature */
	    0x20,	  /* version 2, command LOCAL */
	    0x00,	  /* family: UNSPEC */
	    0x00,   0x00, /* address length: 0 */
	};
	uint8_t out[PROXYPROTO_V2_MAX];

	(void)state;
	assert_int_equal(
	    proxyproto_write_v2(out, sizeof(out), (struct sockaddr *)&s4, (struct sockaddr *)&d4),
	    sizeof(v2_tcp4));
	assert_memory_equal(out, v2_tcp4, sizeof(v2_tcp4));
	/* the TCP6 vector minus its TLVs, with the length set to 36 */
	assert_int_equal(
	    proxyproto_write_v2(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d6),
	    52);
	assert_memory_equal(out, v2_tcp6_tlvs, 15);
	assert_int_equal(out[15], 36);
	assert_memory_equal(out + 16, v2_tcp6_tlvs + 16, 36);

	assert_int_equal(proxyproto_write_v2(out, sizeof(out), (struct sockaddr *)&s4, NULL),
			 sizeof(want_local));
	assert_memory_equal(out, want_local, sizeof(want_local));
	assert_int_equal(
	    proxyproto_write_v2(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d4),
	    sizeof(want_local));

	memset(out, 0xee, sizeof(out));
	assert_int_equal(
	    proxyproto_write_v2(out, 27, (struct sockaddr *)&s4, (struct sockaddr *)&d4), 0);
	assert_int_equal(out[0], 0xee);
	assert_int_equal(proxyproto_write_v2(out, 15, NULL, NULL), 0);
	assert_int_equal(proxyproto_write_v2(out, 16, NULL, NULL), 16);
}

/* write -> parse gives back what went in, for both versions and families. */
static void
test_round_trip(void **state)
{
	static const struct {
		int family;
		const char *src, *dst;
		uint16_t sport, dport;
	} cases[] = {
	    {AF_INET, "10.0.0.5", "172.16.0.1", 40000, 80},
	    {AF_INET, "0.0.0.0", "255.255.255.255", 0, 65535},
	    {AF_INET6, "fe80::1:2", "2001:db8:0:1::9", 1, 443},
	    {AF_INET6, "::ffff:1.2.3.4", "::", 65535, 0},
	    {AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535, 65535},
	};
	struct proxyproto_header h;
	uint8_t out[PROXYPROTO_V2_MAX];
	size_t i, v, n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage src, dst;

		memset(&src, 0, sizeof(src));
		memset(&dst, 0, sizeof(dst));
		if (cases[i].family == AF_INET) {
			struct sockaddr_in a = in4(cases[i].src, cases[i].sport);
			struct sockaddr_in b = in4(cases[i].dst, cases[i].dport);

			memcpy(&src, &a, sizeof(a));
			memcpy(&dst, &b, sizeof(b));
		} else {
			struct sockaddr_in6 a = in6(cases[i].src, cases[i].sport);
			struct sockaddr_in6 b = in6(cases[i].dst, cases[i].dport);

			memcpy(&src, &a, sizeof(a));
			memcpy(&dst, &b, sizeof(b));
		}
		for (v = 1; v <= 2; v++) {
			n = v == 1 ? proxyproto_write_v1(out, sizeof(out), (struct sockaddr *)&src,
							 (struct sockaddr *)&dst)
				   : proxyproto_write_v2(out, sizeof(out), (struct sockaddr *)&src,
							 (struct sockaddr *)&dst);
			assert_true(n > 0);
			assert_true(n <= (v == 1 ? PROXYPROTO_V1_MAX : PROXYPROTO_V2_MAX));
			assert_int_equal(proxyproto_parse(out, n, &h), PARSE_OK);
			assert_int_equal(h.version, v);
			assert_int_equal(h.local, 0);
			assert_int_equal(h.family, cases[i].family);
			assert_int_equal(h.len, n);
			assert_memory_equal(&h.src, &src, sizeof(src));
			assert_memory_equal(&h.dst, &dst, sizeof(dst));
			assert_prefixes(out, n);
		}
	}
	/* UNKNOWN and LOCAL come back as local */
	n = proxyproto_write_v1(out, sizeof(out), NULL, NULL);
	assert_int_equal(proxyproto_parse(out, n, &h), PARSE_OK);
	assert_int_equal(h.local, 1);
	n = proxyproto_write_v2(out, sizeof(out), NULL, NULL);
	assert_int_equal(proxyproto_parse(out, n, &h), PARSE_OK);
	assert_int_equal(h.local, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v1_good),
	    cmocka_unit_test(test_v1_unknown),
	    cmocka_unit_test(test_v1_payload_follows),
	    cmocka_unit_test(test_v1_bad),
	    cmocka_unit_test(test_v1_cap),
	    cmocka_unit_test(test_v2_good),
	    cmocka_unit_test(test_v2_local_and_fallbacks),
	    cmocka_unit_test(test_v2_unix),
	    cmocka_unit_test(test_v2_bad),
	    cmocka_unit_test(test_v2_cap),
	    cmocka_unit_test(test_not_found),
	    cmocka_unit_test(test_write_v1),
	    cmocka_unit_test(test_write_v2),
	    cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
