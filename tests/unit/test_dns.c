/*
 * test_dns.c: unit tests for the DNS query parser, the TCP framing and the
 * reply writer. Vectors are bytes with a comment per field: whole queries
 * for the common cases, and queries assembled from a header and a question
 * (build_query) so that each rule of the parser has a good and a bad case.
 * Every proper prefix of every good vector must give PARSE_MALFORMED:
 * dropped below a header, FORMERR past it. Replies are read back by a small
 * reader here that knows only what the writer is meant to write.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <sys/socket.h>

#include <cmocka.h>

#include "dns.h"

#define V(a) (a), sizeof(a)

/* ---- vectors ---- */

/* example.com A as a stub resolver asks it: ID 0x1234, RD, one question, no records. */
static const uint8_t query_a[] = {
    0x12, 0x34,				      /* ID */
    0x01,				      /* QR 0, opcode 0, AA 0, TC 0, RD 1 */
    0x00,				      /* RA 0, Z 0, AD 0, CD 0, RCODE 0 */
    0x00, 0x01,				      /* QDCOUNT 1 */
    0x00, 0x00,				      /* ANCOUNT 0 */
    0x00, 0x00,				      /* NSCOUNT 0 */
    0x00, 0x00,				      /* ARCOUNT 0 */
    0x07, 'e',	'x', 'a', 'm', 'p', 'l', 'e', /* label "example" */
    0x03, 'c',	'o', 'm',		      /* label "com" */
    0x00,				      /* the root */
    0x00, 0x01,				      /* QTYPE A */
    0x00, 0x01,				      /* QCLASS IN */
};

/* AAAA for api.github.com, ID 0xbeef, RD and CD set. */
static const uint8_t query_aaaa[] = {
    0xbe, 0xef,				 /* ID */
    0x01,				 /* QR 0, opcode 0, RD 1 */
    0x10,				 /* CD 1 */
    0x00, 0x01,				 /* QDCOUNT 1 */
    0x00, 0x00,				 /* ANCOUNT 0 */
    0x00, 0x00,				 /* NSCOUNT 0 */
    0x00, 0x00,				 /* ARCOUNT 0 */
    0x03, 'a',	'p', 'i',		 /* label "api" */
    0x06, 'g',	'i', 't', 'h', 'u', 'b', /* label "github" */
    0x03, 'c',	'o', 'm',		 /* label "com" */
    0x00,				 /* the root */
    0x00, 0x1c,				 /* QTYPE AAAA */
    0x00, 0x01,				 /* QCLASS IN */
};

/* example.com A with an OPT record: size 4096, version 0, DO set, a client cookie. */
static const uint8_t query_edns[] = {
    0x00, 0x07,					    /* ID */
    0x01,					    /* RD 1 */
    0x20,					    /* AD 1 */
    0x00, 0x01,					    /* QDCOUNT 1 */
    0x00, 0x00,					    /* ANCOUNT 0 */
    0x00, 0x00,					    /* NSCOUNT 0 */
    0x00, 0x01,					    /* ARCOUNT 1 */
    0x07, 'e',	'x',  'a',  'm',  'p',	'l',  'e',  /* label "example" */
    0x03, 'c',	'o',  'm',			    /* label "com" */
    0x00,					    /* the root */
    0x00, 0x01,					    /* QTYPE A */
    0x00, 0x01,					    /* QCLASS IN */
    0x00,					    /* OPT owner: the root */
    0x00, 0x29,					    /* TYPE OPT */
    0x10, 0x00,					    /* CLASS: UDP payload size 4096 */
    0x00,					    /* extended RCODE 0 */
    0x00,					    /* version 0 */
    0x80, 0x00,					    /* flags: DO */
    0x00, 0x0c,					    /* RDLENGTH 12 */
    0x00, 0x0a,					    /* option COOKIE */
    0x00, 0x08,					    /* option length 8 */
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* client cookie */
};

/* The same with EDNS version 1: BADVERS. */
static const uint8_t query_edns1[] = {
    0x00, 0x08, /* ID */
    0x01,	/* RD 1 */
    0x00,	/* flags */
    0x00, 0x01, /* QDCOUNT 1 */
    0x00, 0x00, /* ANCOUNT 0 */
    0x00, 0x00, /* NSCOUNT 0 */
    0x00, 0x01, /* ARCOUNT 1 */
    0x01, 'x',	/* label "x" */
    0x00,	/* the root */
    0x00, 0x01, /* QTYPE A */
    0x00, 0x01, /* QCLASS IN */
    0x00,	/* OPT owner: the root */
    0x00, 0x29, /* TYPE OPT */
    0x04, 0xd0, /* CLASS: UDP payload size 1232 */
    0x00,	/* extended RCODE 0 */
    0x01,	/* version 1 */
    0x00, 0x00, /* flags */
    0x00, 0x00, /* RDLENGTH 0 */
};

/* The root, type NS: the name is one byte, the text "". */
static const uint8_t query_root[] = {
    0xff, 0xff, /* ID */
    0x00,	/* RD 0 */
    0x00,	/* flags */
    0x00, 0x01, /* QDCOUNT 1 */
    0x00, 0x00, /* ANCOUNT 0 */
    0x00, 0x00, /* NSCOUNT 0 */
    0x00, 0x00, /* ARCOUNT 0 */
    0x00,	/* the root */
    0x00, 0x02, /* QTYPE NS */
    0x00, 0xff, /* QCLASS ANY */
};

/* A query that carries an answer and an authority record (read over), then its OPT. */
static const uint8_t query_records[] = {
    0x00, 0x09,		    /* ID */
    0x00,		    /* flags */
    0x00,		    /* flags */
    0x00, 0x01,		    /* QDCOUNT 1 */
    0x00, 0x01,		    /* ANCOUNT 1 */
    0x00, 0x01,		    /* NSCOUNT 1 */
    0x00, 0x01,		    /* ARCOUNT 1 */
    0x01, 'a',		    /* label "a" */
    0x00,		    /* the root */
    0x00, 0x01,		    /* QTYPE A */
    0x00, 0x01,		    /* QCLASS IN */
    0xc0, 0x0c,		    /* answer: pointer to the question's name */
    0x00, 0x01,		    /* TYPE A */
    0x00, 0x01,		    /* CLASS IN */
    0x00, 0x00, 0x00, 0x3c, /* TTL 60 */
    0x00, 0x04,		    /* RDLENGTH 4 */
    0x0a, 0x00, 0x00, 0x01, /* 10.0.0.1 */
    0x01, 'b',		    /* authority: label "b" */
    0xc0, 0x0e,		    /* pointer to the root after "a" */
    0x00, 0x02,		    /* TYPE NS */
    0x00, 0x01,		    /* CLASS IN */
    0x00, 0x00, 0x00, 0x00, /* TTL 0 */
    0x00, 0x00,		    /* RDLENGTH 0 */
    0x00,		    /* OPT owner: the root */
    0x00, 0x29,		    /* TYPE OPT */
    0x01, 0x00,		    /* CLASS: UDP payload size 256 (read as 512) */
    0x00, 0x00, 0x00, 0x00, /* extended RCODE, version 0, flags */
    0x00, 0x00,		    /* RDLENGTH 0 */
};

/* ---- helpers ---- */

/*
 * build_query writes a header (ID 0x4242, RD, the given opcode and counts)
 * and then the name bytes as given, QTYPE and QCLASS, and extra after them.
 */
static size_t
build_query(uint8_t *out, unsigned opcode, unsigned qd, unsigned an, unsigned ar,
	    const uint8_t *name, size_t name_len, uint16_t qtype, uint16_t qclass,
	    const uint8_t *extra, size_t extra_len)
{
	size_t n = 0;

	out[n++] = 0x42;
	out[n++] = 0x42;
	out[n++] = (uint8_t)((opcode << 3) | 0x01);
	out[n++] = 0x00;
	out[n++] = (uint8_t)(qd >> 8);
	out[n++] = (uint8_t)qd;
	out[n++] = (uint8_t)(an >> 8);
	out[n++] = (uint8_t)an;
	out[n++] = 0;
	out[n++] = 0;
	out[n++] = (uint8_t)(ar >> 8);
	out[n++] = (uint8_t)ar;
	if (name_len > 0)
		memcpy(out + n, name, name_len);
	n += name_len;
	out[n++] = (uint8_t)(qtype >> 8);
	out[n++] = (uint8_t)qtype;
	out[n++] = (uint8_t)(qclass >> 8);
	out[n++] = (uint8_t)qclass;
	if (extra_len > 0)
		memcpy(out + n, extra, extra_len);
	return n + extra_len;
}

/* expect_reply: dns_parse_query refuses msg, answering rcode (or dropping it when reply is 0). */
static void
expect_reply(const uint8_t *msg, size_t len, int reply, uint8_t rcode, struct dns_query *q)
{
	assert_int_equal(dns_parse_query(msg, len, q), PARSE_MALFORMED);
	assert_int_equal(q->reply, reply);
	if (reply)
		assert_int_equal(q->rcode, rcode);
}

/*
 * assert_prefixes: every proper prefix of a message whose header says one
 * question and opcode 0 is refused: dropped without a whole header,
 * FORMERR with one.
 */
static void
assert_prefixes(const uint8_t *buf, size_t len)
{
	struct dns_query q;
	size_t i;

	for (i = 0; i < len; i++) {
		enum parse_result r = dns_parse_query(buf, i, &q);

		if (r != PARSE_MALFORMED)
			fail_msg("prefix %zu of %zu: %s", i, len, parse_result_name(r));
		if (i < DNS_HEADER_LEN && q.reply != 0)
			fail_msg("prefix %zu of %zu: answered", i, len);
		if (i >= DNS_HEADER_LEN && (q.reply != 1 || q.rcode != DNS_RCODE_FORMERR))
			fail_msg("prefix %zu of %zu: reply %d rcode %u", i, len, q.reply, q.rcode);
	}
}

/* ---- parsing ---- */

static void
test_a(void **state)
{
	static const uint8_t wire[] = {7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0};
	struct dns_query q;

	(void)state;
	assert_int_equal(dns_parse_query(V(query_a), &q), PARSE_OK);
	assert_int_equal(q.id, 0x1234);
	assert_int_equal(q.opcode, 0);
	assert_int_equal(q.rd, 1);
	assert_int_equal(q.cd, 0);
	assert_int_equal(q.question, 1);
	assert_int_equal(q.wire_len, sizeof(wire));
	assert_memory_equal(q.wire, wire, sizeof(wire));
	assert_string_equal(q.name, "example.com");
	assert_int_equal(q.text_ok, 1);
	assert_int_equal(q.qtype, DNS_TYPE_A);
	assert_int_equal(q.qclass, DNS_CLASS_IN);
	assert_int_equal(q.edns, 0);
	assert_int_equal(q.reply, 0);
	assert_prefixes(V(query_a));
}

static void
test_aaaa(void **state)
{
	struct dns_query q;

	(void)state;
	assert_int_equal(dns_parse_query(V(query_aaaa), &q), PARSE_OK);
	assert_int_equal(q.id, 0xbeef);
	assert_int_equal(q.rd, 1);
	assert_int_equal(q.cd, 1);
	assert_string_equal(q.name, "api.github.com");
	assert_int_equal(q.wire_len, 16);
	assert_int_equal(q.text_ok, 1);
	assert_int_equal(q.qtype, DNS_TYPE_AAAA);
	assert_int_equal(q.qclass, DNS_CLASS_IN);
	assert_prefixes(V(query_aaaa));
}

static void
test_root(void **state)
{
	struct dns_query q;

	(void)state;
	assert_int_equal(dns_parse_query(V(query_root), &q), PARSE_OK);
	assert_int_equal(q.id, 0xffff);
	assert_int_equal(q.rd, 0);
	assert_int_equal(q.wire_len, 1);
	assert_int_equal(q.wire[0], 0);
	assert_string_equal(q.name, "");
	assert_int_equal(q.text_ok, 1);
	assert_int_equal(q.qtype, 2);
	assert_int_equal(q.qclass, 255); /* ANY is answered like IN */
	assert_prefixes(V(query_root));
}

static void
test_edns(void **state)
{
	uint8_t buf[sizeof(query_edns)];
	struct dns_query q;

	(void)state;
	assert_int_equal(dns_parse_query(V(query_edns), &q), PARSE_OK);
	assert_int_equal(q.id, 7);
	assert_int_equal(q.cd, 0);
	assert_string_equal(q.name, "example.com");
	assert_int_equal(q.edns, 1);
	assert_int_equal(q.edns_size, 4096);
	assert_int_equal(q.edns_version, 0);
	assert_prefixes(V(query_edns));

	/* a size below 512 is read as 512 (RFC 6891 6.2.3) */
	memcpy(buf, query_edns, sizeof(buf));
	buf[32] = 0x00;
	buf[33] = 0x00;
	assert_int_equal(dns_parse_query(V(buf), &q), PARSE_OK);
	assert_int_equal(q.edns_size, 512);
	buf[32] = 0x02;
	buf[33] = 0x01;
	assert_int_equal(dns_parse_query(V(buf), &q), PARSE_OK);
	assert_int_equal(q.edns_size, 513);

	/* an RDLENGTH past the end */
	memcpy(buf, query_edns, sizeof(buf));
	buf[39] = 0x0d;
	expect_reply(V(buf), 1, DNS_RCODE_FORMERR, &q);
}

static void
test_badvers(void **state)
{
	uint8_t buf[sizeof(query_edns1)];
	struct dns_query q;
	size_t i;

	(void)state;
	expect_reply(V(query_edns1), 1, DNS_RCODE_BADVERS, &q);
	assert_int_equal(q.question, 1);
	assert_string_equal(q.name, "x");
	assert_int_equal(q.edns, 1);
	assert_int_equal(q.edns_version, 1);
	assert_int_equal(q.edns_size, 1232);
	/* cut short, it is a broken record first */
	for (i = DNS_HEADER_LEN; i < sizeof(query_edns1); i++)
		expect_reply(query_edns1, i, 1, DNS_RCODE_FORMERR, &q);
	/* version 255, and BADVERS comes before the class check */
	memcpy(buf, query_edns1, sizeof(buf));
	buf[25] = 0xff;
	buf[18] = 0x03;
	expect_reply(V(buf), 1, DNS_RCODE_BADVERS, &q);
	assert_int_equal(q.edns_version, 255);
}

static void
test_records(void **state)
{
	uint8_t buf[sizeof(query_records)];
	struct dns_query q;

	(void)state;
	assert_int_equal(dns_parse_query(V(query_records), &q), PARSE_OK);
	assert_string_equal(q.name, "a");
	assert_int_equal(q.edns, 1);
	assert_int_equal(q.edns_size, 512);
	assert_prefixes(V(query_records));

	/* the answer's pointer forwards, or into the header: a broken record */
	memcpy(buf, query_records, sizeof(buf));
	buf[20] = 0x30;
	expect_reply(V(buf), 1, DNS_RCODE_FORMERR, &q);
	assert_int_equal(q.question, 1);
	buf[20] = 0x0b;
	expect_reply(V(buf), 1, DNS_RCODE_FORMERR, &q);
	/* one more answer than there is */
	memcpy(buf, query_records, sizeof(buf));
	buf[7] = 2;
	expect_reply(V(buf), 1, DNS_RCODE_FORMERR, &q);
}

static void
test_dropped(void **state)
{
	uint8_t buf[sizeof(query_a)];
	struct dns_query q;
	size_t i;

	(void)state;
	/* a response: never answered */
	memcpy(buf, query_a, sizeof(buf));
	buf[2] |= 0x80;
	expect_reply(V(buf), 0, 0, &q);
	/* even a response that is broken or has another opcode */
	buf[2] = 0x80 | (2 << 3);
	expect_reply(V(buf), 0, 0, &q);
	expect_reply(buf, DNS_HEADER_LEN, 0, 0, &q);
	/* shorter than a header, whatever its bytes */
	for (i = 0; i < DNS_HEADER_LEN; i++)
		expect_reply(query_a, i, 0, 0, &q);
	expect_reply(NULL, 0, 0, 0, &q);
}

static void
test_qdcount(void **state)
{
	static const uint8_t two[] = {
	    0x01, 'a',	0x00, /* "a" */
	    0x00, 0x01,	      /* QTYPE A */
	    0x00, 0x01,	      /* QCLASS IN */
	    0x01, 'b',	0x00, /* the second question's name "b" */
	};
	uint8_t buf[64];
	struct dns_query q;
	size_t n;

	(void)state;
	/* QDCOUNT 0: a header alone, or with a question it does not count */
	build_query(buf, 0, 0, 0, 0, NULL, 0, 0, 0, NULL, 0);
	expect_reply(buf, DNS_HEADER_LEN, 1, DNS_RCODE_FORMERR, &q);
	assert_int_equal(q.question, 0);
	n = build_query(buf, 0, 0, 0, 0, two, 3, 1, 1, NULL, 0);
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	assert_int_equal(q.question, 0);
	assert_int_equal(q.id, 0x4242);
	assert_int_equal(q.rd, 1);
	/* QDCOUNT 2 with two questions there */
	n = build_query(buf, 0, 2, 0, 0, two, sizeof(two), 1, 1, NULL, 0);
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	assert_int_equal(q.question, 0);
	/* QDCOUNT 0xffff */
	n = build_query(buf, 0, 0xffff, 0, 0, two, 3, 1, 1, NULL, 0);
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
}

static void
test_opcode(void **state)
{
	static const uint8_t name[] = {0x01, 'a', 0x00};
	static const unsigned notimp[] = {1, 2, 3, 4, 5, 6, 15};
	uint8_t buf[64];
	struct dns_query q;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(notimp) / sizeof(notimp[0]); i++) {
		n = build_query(buf, notimp[i], 1, 0, 0, V(name), 1, 1, NULL, 0);
		expect_reply(buf, n, 1, DNS_RCODE_NOTIMP, &q);
		assert_int_equal(q.opcode, notimp[i]);
		assert_int_equal(q.id, 0x4242);
		assert_int_equal(q.question, 0);
		/* the opcode decides before any count or name */
		expect_reply(buf, DNS_HEADER_LEN, 1, DNS_RCODE_NOTIMP, &q);
		buf[5] = 0;
		expect_reply(buf, n, 1, DNS_RCODE_NOTIMP, &q);
	}
}

static void
test_class(void **state)
{
	static const uint8_t name[] = {0x01, 'a', 0x00};
	uint8_t buf[64];
	struct dns_query q;
	size_t n;

	(void)state;
	n = build_query(buf, 0, 1, 0, 0, V(name), DNS_TYPE_A, 3, NULL, 0); /* CH */
	expect_reply(buf, n, 1, DNS_RCODE_REFUSED, &q);
	assert_int_equal(q.question, 1);
	assert_int_equal(q.qclass, 3);
	assert_string_equal(q.name, "a");
	n = build_query(buf, 0, 1, 0, 0, V(name), DNS_TYPE_A, 4, NULL, 0); /* HS */
	expect_reply(buf, n, 1, DNS_RCODE_REFUSED, &q);
	n = build_query(buf, 0, 1, 0, 0, V(name), DNS_TYPE_A, 254, NULL, 0); /* NONE */
	expect_reply(buf, n, 1, DNS_RCODE_REFUSED, &q);
	n = build_query(buf, 0, 1, 0, 0, V(name), DNS_TYPE_A, 0, NULL, 0);
	expect_reply(buf, n, 1, DNS_RCODE_REFUSED, &q);
	n = build_query(buf, 0, 1, 0, 0, V(name), DNS_TYPE_A, 255, NULL, 0); /* ANY */
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_int_equal(q.qclass, 255);
	assert_prefixes(buf, n);
	/* QTYPE ANY and unknown types are the caller's */
	n = build_query(buf, 0, 1, 0, 0, V(name), 255, 1, NULL, 0);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_int_equal(q.qtype, 255);
	n = build_query(buf, 0, 1, 0, 0, V(name), 65535, 1, NULL, 0);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_int_equal(q.qtype, 65535);
}

/*
 * Pointers: the question comes first, so a pointer in it can only point
 * back into the question itself.
 */
static void
test_pointers(void **state)
{
	static const struct {
		const char *what;
		uint8_t name[8];
		size_t len;
	} bad[] = {
	    {"to itself", {0x01, 'a', 0xc0, 0x0e}, 4},
	    {"forwards", {0x01, 'a', 0xc0, 0x10, 0x00}, 5},
	    {"into the header", {0x01, 'a', 0xc0, 0x0b}, 4},
	    {"to the ID", {0xc0, 0x00}, 2},
	    {"the name is a pointer to itself", {0xc0, 0x0c}, 2},
	    {"with its high bits", {0x01, 'a', 0xc1, 0x0c}, 4},
	    {"to the start, a loop", {0x01, 'a', 0xc0, 0x0c}, 4},
	    {"to a byte that is no label", {0x01, 'a', 0xc0, 0x0d}, 4},
	};
	/*
	 * Back into the first label's bytes: "\x01A\x00" is the first label
	 * at 12, and reading from 13 again gives "A" and the root.
	 */
	static const uint8_t back[] = {
	    0x03, 0x01, 'A', 0x00, /* label of three bytes */
	    0xc0, 0x0d,		   /* pointer to 13 */
	};
	static const uint8_t back_wire[] = {0x03, 0x01, 'A', 0x00, 0x01, 'A', 0x00};
	uint8_t buf[64];
	struct dns_query q;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = build_query(buf, 0, 1, 0, 0, bad[i].name, bad[i].len, 1, 1, NULL, 0);
		if (dns_parse_query(buf, n, &q) != PARSE_MALFORMED || q.reply != 1 ||
		    q.rcode != DNS_RCODE_FORMERR || q.question != 0)
			fail_msg("pointer %s: accepted", bad[i].what);
		assert_int_equal(q.wire_len, 0);
		assert_string_equal(q.name, "");
	}

	n = build_query(buf, 0, 1, 0, 0, V(back), DNS_TYPE_AAAA, 1, NULL, 0);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_int_equal(q.wire_len, sizeof(back_wire));
	assert_memory_equal(q.wire, back_wire, sizeof(back_wire));
	assert_memory_equal(q.name,
			    "\x01"
			    "A\0.A",
			    6);
	assert_int_equal(q.text_ok, 0);
	/* QTYPE right after the pointer */
	assert_int_equal(q.qtype, DNS_TYPE_AAAA);
	assert_prefixes(buf, n);
}

/*
 * chain_name writes a question name that follows hops pointers: one label
 * at 12 whose bytes hold the root at 13 and hops - 1 pointers, each to the
 * one before (the first to the root), then a pointer to the last of them.
 */
static size_t
chain_name(uint8_t *name, unsigned hops)
{
	size_t n = 0;
	unsigned i;

	name[n++] = (uint8_t)(1 + 2 * (hops - 1)); /* the label at 12 */
	name[n++] = 0x00;			   /* 13: the root */
	for (i = 0; i < hops - 1; i++) {
		/* at 14 + 2i: to 13, then each to the one before */
		name[n++] = 0xc0;
		name[n++] = (uint8_t)(i == 0 ? 13 : 14 + 2 * (i - 1));
	}
	name[n++] = 0xc0;
	name[n++] = (uint8_t)(hops == 1 ? 13 : 14 + 2 * (hops - 2));
	return n;
}

static void
test_pointer_hops(void **state)
{
	uint8_t name[64], buf[128];
	struct dns_query q;
	unsigned hops;
	size_t n, nl;

	(void)state;
	for (hops = 1; hops <= DNS_POINTER_HOPS + 1; hops++) {
		nl = chain_name(name, hops);
		n = build_query(buf, 0, 1, 0, 0, name, nl, DNS_TYPE_A, 1, NULL, 0);
		if (hops <= DNS_POINTER_HOPS) {
			assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
			/* the first label, then the root it all comes back to */
			assert_int_equal(q.wire_len, 1 + name[0] + 1);
			assert_memory_equal(q.wire, name, 1 + name[0]);
			assert_int_equal(q.wire[q.wire_len - 1], 0);
			assert_int_equal(q.text_ok, 0);
			assert_int_equal(q.qtype, DNS_TYPE_A);
			assert_prefixes(buf, n);
		} else {
			expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
		}
	}
}

static void
test_label_types(void **state)
{
	static const uint8_t names[][4] = {
	    {0x40, 'a', 0x00},	     /* extended label type */
	    {0x80, 'a', 0x00},	     /* reserved label type */
	    {0x01, 'a', 0x41, 0x00}, /* the second label */
	    {0x01, 'a', 0xbf, 0x00},
	};
	uint8_t buf[64];
	struct dns_query q;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		n = build_query(buf, 0, 1, 0, 0, names[i], 4, 1, 1, NULL, 0);
		expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
		assert_int_equal(q.question, 0);
	}
	/* a label running past the end, a name without its root */
	n = build_query(buf, 0, 1, 0, 0, (const uint8_t *)"\x3f", 1, 1, 1, NULL, 0);
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	n = build_query(buf, 0, 1, 0, 0, (const uint8_t *)"\x01z", 2, 0, 0, NULL, 0);
	expect_reply(buf, n - 4, 1, DNS_RCODE_FORMERR, &q);
}

/* long_name writes labels of 63 bytes and a last one so that the name is total wire bytes. */
static size_t
long_name(uint8_t *out, size_t total, char fill)
{
	size_t n = 0, left = total - 1;

	while (left > 0) {
		size_t l = left - 1 > 63 ? 63 : left - 1;

		out[n++] = (uint8_t)l;
		memset(out + n, fill, l);
		n += l;
		left -= 1 + l;
	}
	out[n++] = 0;
	return n;
}

/*
 * nested_name writes, from offset 12 on, a name read through k pointers,
 * each re-reading a shorter stretch of the same bytes: level i is a label
 * at 12 + i running up to a pointer at p - 2i, which points to 13 + i; the
 * last level is a label of last bytes and the root. *wire is the length of
 * the name as read.
 */
static size_t
nested_name(uint8_t *out, unsigned p, unsigned k, unsigned last, size_t *wire)
{
	unsigned i;

	memset(out, 'n', p + 2 - DNS_HEADER_LEN);
	*wire = 0;
	for (i = 0; i < k; i++) {
		unsigned s = DNS_HEADER_LEN + i, at = p - 2 * i;

		out[s - DNS_HEADER_LEN] = (uint8_t)(at - s - 1);
		out[at - DNS_HEADER_LEN] = 0xc0;
		out[at + 1 - DNS_HEADER_LEN] = (uint8_t)(s + 1);
		*wire += at - s;
	}
	out[k] = (uint8_t)last;
	out[k + 1 + last] = 0x00;
	*wire += 1 + last + 1;
	return p + 2 - DNS_HEADER_LEN;
}

static void
test_name_length(void **state)
{
	uint8_t name[300], buf[400];
	struct dns_query q;
	size_t n, nl, wire;

	(void)state;
	/* 63 + 63 + 63 + 61, four length bytes and the root: 255 */
	nl = long_name(name, DNS_NAME_WIRE_MAX, 'x');
	assert_int_equal(nl, 255);
	assert_int_equal(name[192], 61);
	n = build_query(buf, 0, 1, 0, 0, name, nl, 1, 1, NULL, 0);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_int_equal(q.wire_len, 255);
	assert_memory_equal(q.wire, name, 255);
	assert_int_equal(strlen(q.name), 63 * 3 + 61 + 3);
	assert_int_equal(q.name[63], '.');
	assert_int_equal(q.text_ok, 1);
	assert_prefixes(buf, n);

	/* 256: the last label one longer */
	name[192] = 62;
	memmove(name + 193 + 62, name + 193 + 61, 1);
	name[193 + 61] = 'x';
	n = build_query(buf, 0, 1, 0, 0, name, 256, 1, 1, NULL, 0);
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	assert_int_equal(q.question, 0);
	assert_int_equal(q.wire_len, 0);

	/*
	 * 255 and 256 through nine pointers in 41 bytes: the cap counts the
	 * name as read, not as it sits in the message
	 */
	nl = nested_name(name, 51, 9, 10, &wire);
	assert_int_equal(wire, 255);
	n = build_query(buf, 0, 1, 0, 0, name, nl, 1, 1, NULL, 0);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_int_equal(q.wire_len, 255);
	assert_int_equal(q.text_ok, 0);
	assert_prefixes(buf, n);
	nl = nested_name(name, 51, 9, 11, &wire);
	assert_int_equal(wire, 256);
	n = build_query(buf, 0, 1, 0, 0, name, nl, 1, 1, NULL, 0);
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
}

static void
test_text(void **state)
{
	static const struct {
		uint8_t name[12];
		size_t len;
		int ok;
		const char *text;
	} cases[] = {
	    {{0x03, 'a', '.', 'b', 0x03, 'c', 'o', 'm', 0x00}, 9, 0, "a.b.com"},
	    {{0x03, 'a', ' ', 'b', 0x00}, 5, 0, "a b"},
	    {{0x03, 'a', 0x80, 'b', 0x00}, 5, 0, "a\200b"},
	    {{0x03, 'a', 0x7f, 'b', 0x00}, 5, 0, "a\177b"},
	    {{0x02, 'a', 0x09, 0x00}, 4, 0, "a\t"},
	    {{0x03, 'a', 0xff, 'b', 0x00}, 5, 0, "a\377b"},
	    {{0x05, 'a', '-', 'b', '_', '*', 0x03, 'c', 'o', 'm', 0x00}, 11, 1, "a-b_*.com"},
	    {{0x02, '1', '0', 0x01, '0', 0x01, '0', 0x01, '1', 0x00}, 10, 1, "10.0.0.1"},
	    {{0x03, '!', '~', '/', 0x00}, 5, 1, "!~/"},
	};
	static const uint8_t nul[] = {0x02, 'a', 0x00, 0x00};
	uint8_t buf[64];
	struct dns_query q;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = build_query(buf, 0, 1, 0, 0, cases[i].name, cases[i].len, 1, 1, NULL, 0);
		assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
		assert_int_equal(q.text_ok, cases[i].ok);
		assert_string_equal(q.name, cases[i].text);
		assert_int_equal(q.wire_len, cases[i].len);
		assert_memory_equal(q.wire, cases[i].name, cases[i].len);
	}
	/* a NUL in a label: the text holds it, text_ok says not to read it as text */
	n = build_query(buf, 0, 1, 0, 0, nul, sizeof(nul), 1, 1, NULL, 0);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_int_equal(q.text_ok, 0);
	assert_memory_equal(q.name, "a\0", 3);
}

static void
test_case_kept(void **state)
{
	static const uint8_t name[] = {
	    0x07, 'E', 'x', 'A', 'm', 'P', 'l', 'E', /* "ExAmPlE" */
	    0x03, 'C', 'O', 'M',		     /* "COM" */
	    0x00,				     /* the root */
	};
	uint8_t buf[64];
	struct dns_query q;
	size_t n;

	(void)state;
	n = build_query(buf, 0, 1, 0, 0, V(name), 1, 1, NULL, 0);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_string_equal(q.name, "ExAmPlE.COM"); /* normalizing is the caller's */
	assert_memory_equal(q.wire, name, sizeof(name));
	assert_int_equal(q.text_ok, 1);
}

static void
test_trailing(void **state)
{
	static const uint8_t name[] = {0x01, 'a', 0x00};
	static const uint8_t garbage[] = {0xde, 0xad, 0xbe, 0xef};
	static const uint8_t txt_record[] = {
	    0x00,		    /* owner: the root */
	    0x00, 0x10,		    /* TYPE TXT */
	    0x00, 0x01,		    /* CLASS IN */
	    0x00, 0x00, 0x00, 0x00, /* TTL */
	    0x00, 0x01,		    /* RDLENGTH 1 */
	    0x00,		    /* an empty string */
	};
	static const uint8_t a_record[] = {
	    0x00,		    /* owner: the root */
	    0x00, 0x01,		    /* TYPE A */
	    0x00, 0x01,		    /* CLASS IN */
	    0x00, 0x00, 0x00, 0x00, /* TTL */
	    0x00, 0x04,		    /* RDLENGTH 4 */
	    0x7f, 0x00, 0x00,	    /* 3 of the 4 bytes */
	};
	uint8_t buf[64];
	struct dns_query q;
	size_t n;

	(void)state;
	/* ANCOUNT 1 and garbage where the record would be */
	n = build_query(buf, 0, 1, 1, 0, V(name), 1, 1, garbage, 4);
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	assert_int_equal(q.question, 1); /* the question was read: it is echoed */
	assert_string_equal(q.name, "a");
	/* ANCOUNT 1, a record whose RDATA is cut short */
	n = build_query(buf, 0, 1, 1, 0, V(name), 1, 1, V(a_record));
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	/* ARCOUNT 1 and nothing */
	n = build_query(buf, 0, 1, 0, 1, V(name), 1, 1, NULL, 0);
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	/* ANCOUNT 1 and a whole record */
	n = build_query(buf, 0, 1, 1, 0, V(name), 1, 1, V(txt_record));
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_prefixes(buf, n);
	/*
	 * Bytes after the last counted record are not read: dns.h says
	 * nothing of them, and dns.c accepts them today.
	 */
	n = build_query(buf, 0, 1, 0, 0, V(name), 1, 1, garbage, 4);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
}

static void
test_opt_rules(void **state)
{
	static const uint8_t name[] = {0x01, 'a', 0x00};
	static const uint8_t opt[] = {
	    0x00,		    /* owner: the root */
	    0x00, 0x29,		    /* TYPE OPT */
	    0x04, 0xd0,		    /* size 1232 */
	    0x00, 0x00, 0x00, 0x00, /* extended RCODE, version, flags */
	    0x00, 0x00,		    /* RDLENGTH 0 */
	};
	static const uint8_t opt_owned[] = {
	    0x01, 'a',	0x00,	    /* owner: "a" */
	    0x00, 0x29,		    /* TYPE OPT */
	    0x04, 0xd0,		    /* size 1232 */
	    0x00, 0x00, 0x00, 0x00, /* extended RCODE, version, flags */
	    0x00, 0x00,		    /* RDLENGTH 0 */
	};
	/* RFC 6891 6.1.2 says the owner is 0: a pointer to a root is not taken either */
	static const uint8_t opt_pointer[] = {
	    0xc0, 0x0e,		    /* owner: a pointer to the question's root */
	    0x00, 0x29,		    /* TYPE OPT */
	    0x04, 0xd0,		    /* size 1232 */
	    0x00, 0x00, 0x00, 0x00, /* extended RCODE, version, flags */
	    0x00, 0x00,		    /* RDLENGTH 0 */
	};
	uint8_t two[2 * sizeof(opt)], buf[128];
	struct dns_query q;
	size_t n;

	(void)state;
	n = build_query(buf, 0, 1, 0, 1, V(name), 1, 1, V(opt));
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_int_equal(q.edns, 1);
	assert_int_equal(q.edns_size, 1232);
	assert_prefixes(buf, n);
	/* two OPT records */
	memcpy(two, opt, sizeof(opt));
	memcpy(two + sizeof(opt), opt, sizeof(opt));
	n = build_query(buf, 0, 1, 0, 2, V(name), 1, 1, V(two));
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	/* an OPT record owned by a name, or by a pointer to the root */
	n = build_query(buf, 0, 1, 0, 1, V(name), 1, 1, V(opt_owned));
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	n = build_query(buf, 0, 1, 0, 1, V(name), 1, 1, V(opt_pointer));
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	/* an OPT record in the answer section */
	n = build_query(buf, 0, 1, 1, 0, V(name), 1, 1, V(opt));
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	/* a broken record after an OPT of version 1: FORMERR, not BADVERS */
	memcpy(two, opt, sizeof(opt));
	two[6] = 1;
	two[sizeof(opt)] = 0x80;
	n = build_query(buf, 0, 1, 0, 2, V(name), 1, 1, two, sizeof(opt) + 1);
	expect_reply(buf, n, 1, DNS_RCODE_FORMERR, &q);
	assert_int_equal(q.edns, 1);
}

/* ---- TCP framing ---- */

static void
test_tcp_frame(void **state)
{
	uint8_t buf[2 * (2 + sizeof(query_a))];
	size_t len = sizeof(query_a), msg_len, i;
	struct dns_query q;

	(void)state;
	buf[0] = (uint8_t)(len >> 8);
	buf[1] = (uint8_t)len;
	memcpy(buf + 2, query_a, len);
	memcpy(buf + 2 + len, buf, 2 + len);

	assert_int_equal(dns_tcp_frame(buf, 0, &msg_len), PARSE_NEED_MORE);
	assert_int_equal(dns_tcp_frame(buf, 1, &msg_len), PARSE_NEED_MORE);
	for (i = 2; i < 2 + len; i++)
		assert_int_equal(dns_tcp_frame(buf, i, &msg_len), PARSE_NEED_MORE);
	msg_len = 0;
	assert_int_equal(dns_tcp_frame(buf, 2 + len, &msg_len), PARSE_OK);
	assert_int_equal(msg_len, len);
	assert_int_equal(dns_parse_query(buf + 2, msg_len, &q), PARSE_OK);

	/* two back to back: the first, then the second after it */
	msg_len = 0;
	assert_int_equal(dns_tcp_frame(buf, sizeof(buf), &msg_len), PARSE_OK);
	assert_int_equal(msg_len, len);
	msg_len = 0;
	assert_int_equal(dns_tcp_frame(buf + 2 + len, sizeof(buf) - 2 - len, &msg_len), PARSE_OK);
	assert_int_equal(msg_len, len);
	assert_int_equal(dns_parse_query(buf + 2 + len + 2, msg_len, &q), PARSE_OK);
	assert_int_equal(q.id, 0x1234);
	for (i = 0; i < 2 + len; i++)
		assert_int_equal(dns_tcp_frame(buf + 2 + len, i, &msg_len), PARSE_NEED_MORE);

	/* lengths below a header close the connection, as soon as they are read */
	for (i = 0; i < DNS_HEADER_LEN; i++) {
		uint8_t b[2 + DNS_HEADER_LEN] = {0};

		b[1] = (uint8_t)i;
		assert_int_equal(dns_tcp_frame(b, 2, &msg_len), PARSE_MALFORMED);
		assert_int_equal(dns_tcp_frame(b, sizeof(b), &msg_len), PARSE_MALFORMED);
	}
	{
		uint8_t b[2 + DNS_HEADER_LEN] = {0x00, 0x0c};

		assert_int_equal(dns_tcp_frame(b, sizeof(b), &msg_len), PARSE_OK);
		assert_int_equal(msg_len, DNS_HEADER_LEN);
		assert_int_equal(dns_tcp_frame(b, sizeof(b) - 1, &msg_len), PARSE_NEED_MORE);
	}
	{
		uint8_t b[2] = {0xff, 0xff};

		assert_int_equal(dns_tcp_frame(b, 2, &msg_len), PARSE_NEED_MORE);
	}
}

/* ---- replies ---- */

/* What read_reply finds in a reply. */
struct view {
	uint16_t id;
	uint8_t flags2, flags3;
	unsigned qd, an, ns, ar;
	size_t name_len; /* the question's name, uncompressed */
	uint16_t qtype, qclass;
	struct {
		uint16_t type, class;
		uint32_t ttl;
		size_t rdlen;
		const uint8_t *rdata;
	} ans[8];
	int opt;
	uint16_t opt_size;
	uint32_t opt_ttl;
};

static uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/*
 * read_reply reads what dns_write_reply writes and nothing else: a header,
 * at most one question with an uncompressed name, answers named by 0xc00c,
 * at most one OPT record, and no byte more. Returns 0, or -1.
 */
static int
read_reply(const uint8_t *r, size_t len, struct view *v)
{
	size_t off = DNS_HEADER_LEN;
	unsigned i;

	memset(v, 0, sizeof(*v));
	if (len < DNS_HEADER_LEN)
		return -1;
	v->id = rd16(r);
	v->flags2 = r[2];
	v->flags3 = r[3];
	v->qd = rd16(r + 4);
	v->an = rd16(r + 6);
	v->ns = rd16(r + 8);
	v->ar = rd16(r + 10);
	if (v->qd > 1 || v->an > 8 || v->ns != 0 || v->ar > 1 || (v->an > 0 && v->qd == 0))
		return -1;
	if (v->qd == 1) {
		size_t start = off;

		for (;;) {
			if (off >= len || r[off] > 63)
				return -1;
			if (r[off] == 0)
				break;
			off += 1 + r[off];
		}
		off++;
		v->name_len = off - start;
		if (off + 4 > len)
			return -1;
		v->qtype = rd16(r + off);
		v->qclass = rd16(r + off + 2);
		off += 4;
	}
	for (i = 0; i < v->an; i++) {
		if (off + 12 > len || r[off] != 0xc0 || r[off + 1] != 0x0c)
			return -1;
		v->ans[i].type = rd16(r + off + 2);
		v->ans[i].class = rd16(r + off + 4);
		v->ans[i].ttl = (uint32_t)rd16(r + off + 6) << 16 | rd16(r + off + 8);
		v->ans[i].rdlen = rd16(r + off + 10);
		v->ans[i].rdata = r + off + 12;
		off += 12;
		if (off + v->ans[i].rdlen > len)
			return -1;
		off += v->ans[i].rdlen;
	}
	if (v->ar == 1) {
		if (off + 11 > len || r[off] != 0 || rd16(r + off + 1) != DNS_TYPE_OPT ||
		    rd16(r + off + 9) != 0)
			return -1;
		v->opt = 1;
		v->opt_size = rd16(r + off + 3);
		v->opt_ttl = (uint32_t)rd16(r + off + 5) << 16 | rd16(r + off + 7);
		off += 11;
	}
	return off == len ? 0 : -1;
}

static const struct dns_answer v4[2] = {
    {AF_INET, {192, 0, 2, 1}},
    {AF_INET, {192, 0, 2, 2}},
};
static const struct dns_answer v6[1] = {
    {AF_INET6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01}},
};

static void
test_write_a(void **state)
{
	static const uint8_t want[] = {
	    0x12, 0x34,					 /* ID echoed */
	    0x85,					 /* QR 1, opcode 0, AA 1, TC 0, RD 1 */
	    0x00,					 /* RA 0, Z 0, AD 0, CD 0, NOERROR */
	    0x00, 0x01,					 /* QDCOUNT 1 */
	    0x00, 0x02,					 /* ANCOUNT 2 */
	    0x00, 0x00,					 /* NSCOUNT 0 */
	    0x00, 0x00,					 /* ARCOUNT 0 */
	    0x07, 'e',	'x',  'a',  'm',  'p', 'l', 'e', /* the question again */
	    0x03, 'c',	'o',  'm',  0x00,		 /* */
	    0x00, 0x01,					 /* QTYPE A */
	    0x00, 0x01,					 /* QCLASS IN */
	    0xc0, 0x0c,					 /* answer: the question's name */
	    0x00, 0x01,					 /* TYPE A */
	    0x00, 0x01,					 /* CLASS IN */
	    0x00, 0x00, 0x00, 0x1e,			 /* TTL 30 */
	    0x00, 0x04,					 /* RDLENGTH 4 */
	    0xc0, 0x00, 0x02, 0x01,			 /* 192.0.2.1 */
	    0xc0, 0x0c,					 /* answer: the question's name */
	    0x00, 0x01,					 /* TYPE A */
	    0x00, 0x01,					 /* CLASS IN */
	    0x00, 0x00, 0x00, 0x1e,			 /* TTL 30 */
	    0x00, 0x04,					 /* RDLENGTH 4 */
	    0xc0, 0x00, 0x02, 0x02,			 /* 192.0.2.2 */
	};
	uint8_t out[512];
	struct dns_query q;
	struct view v;
	size_t n;

	(void)state;
	assert_int_equal(dns_parse_query(V(query_a), &q), PARSE_OK);
	memset(out, 0xaa, sizeof(out));
	n = dns_write_reply(out, sizeof(out), 512, &q, DNS_RCODE_NOERROR, 1, v4, 2, 30);
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(out[n], 0xaa); /* nothing past it */

	assert_int_equal(read_reply(out, n, &v), 0);
	assert_int_equal(v.name_len, q.wire_len);
	assert_int_equal(v.ans[1].ttl, 30);

	/* exactly the room it needs, in cap and in limit */
	assert_int_equal(dns_write_reply(out, n, n, &q, 0, 1, v4, 2, 30), n);
	assert_memory_equal(out, want, sizeof(want));
	/* one byte short of cap with the limit far: nothing */
	assert_int_equal(dns_write_reply(out, n - 1, 512, &q, 0, 1, v4, 2, 30), 0);
}

static void
test_write_bits(void **state)
{
	uint8_t out[512], buf[64];
	static const uint8_t name[] = {0x01, 'a', 0x00};
	struct dns_query q;
	struct view v;
	size_t n;

	(void)state;
	/* AAAA, CD echoed, RD echoed, not authoritative, NXDOMAIN */
	assert_int_equal(dns_parse_query(V(query_aaaa), &q), PARSE_OK);
	n = dns_write_reply(out, sizeof(out), 512, &q, DNS_RCODE_NXDOMAIN, 0, v6, 1, 0xffffffff);
	assert_int_equal(read_reply(out, n, &v), 0);
	assert_int_equal(v.id, 0xbeef);
	assert_int_equal(v.flags2, 0x81); /* QR, RD */
	assert_int_equal(v.flags3, 0x13); /* CD, NXDOMAIN; RA and AD clear */
	assert_int_equal(v.qd, 1);
	assert_int_equal(v.an, 1);
	assert_int_equal(v.ar, 0);
	assert_int_equal(v.qtype, DNS_TYPE_AAAA);
	assert_int_equal(v.ans[0].type, DNS_TYPE_AAAA);
	assert_int_equal(v.ans[0].class, DNS_CLASS_IN);
	assert_int_equal(v.ans[0].ttl, 0xffffffff);
	assert_int_equal(v.ans[0].rdlen, 16);
	assert_memory_equal(v.ans[0].rdata, v6[0].addr, 16);
	assert_memory_equal(out + DNS_HEADER_LEN, q.wire, q.wire_len);

	/* mixed families: each answer by its own */
	n = dns_write_reply(out, sizeof(out), 512, &q, 0, 1,
			    (const struct dns_answer[]){v4[0], v6[0]}, 2, 5);
	assert_int_equal(read_reply(out, n, &v), 0);
	assert_int_equal(v.ans[0].type, DNS_TYPE_A);
	assert_int_equal(v.ans[0].rdlen, 4);
	assert_int_equal(v.ans[1].type, DNS_TYPE_AAAA);
	assert_int_equal(v.ans[1].rdlen, 16);

	/* RD 0 stays 0; REFUSED for class CH, the question echoed as it came */
	n = build_query(buf, 0, 1, 0, 0, V(name), DNS_TYPE_A, 3, NULL, 0);
	buf[2] = 0x00;
	expect_reply(buf, n, 1, DNS_RCODE_REFUSED, &q);
	n = dns_write_reply(out, sizeof(out), 512, &q, q.rcode, 0, NULL, 0, 0);
	assert_int_equal(read_reply(out, n, &v), 0);
	assert_int_equal(v.flags2, 0x80);
	assert_int_equal(v.flags3, DNS_RCODE_REFUSED);
	assert_int_equal(v.qclass, 3);
	assert_int_equal(n, sizeof(name) + 4 + DNS_HEADER_LEN);

	/* NOTIMP: the opcode echoed, no question */
	n = build_query(buf, 2, 1, 0, 0, V(name), DNS_TYPE_A, 1, NULL, 0);
	expect_reply(buf, n, 1, DNS_RCODE_NOTIMP, &q);
	n = dns_write_reply(out, sizeof(out), 512, &q, q.rcode, 0, v4, 2, 0);
	assert_int_equal(n, DNS_HEADER_LEN);
	assert_int_equal(read_reply(out, n, &v), 0);
	assert_int_equal(v.flags2, 0x80 | (2 << 3) | 0x01);
	assert_int_equal(v.flags3, DNS_RCODE_NOTIMP);
	assert_int_equal(v.qd, 0);
	assert_int_equal(v.an, 0); /* no question, no answers */

	/* FORMERR for QDCOUNT 0: the header alone, no larger than the query */
	build_query(buf, 0, 0, 0, 0, NULL, 0, 0, 0, NULL, 0);
	expect_reply(buf, DNS_HEADER_LEN, 1, DNS_RCODE_FORMERR, &q);
	n = dns_write_reply(out, sizeof(out), DNS_HEADER_LEN, &q, q.rcode, 0, NULL, 0, 0);
	assert_int_equal(n, DNS_HEADER_LEN);
	assert_int_equal(out[3], DNS_RCODE_FORMERR);
	assert_int_equal(dns_write_reply(out, DNS_HEADER_LEN - 1, 512, &q, 1, 0, NULL, 0, 0), 0);
}

static void
test_write_edns(void **state)
{
	static const uint8_t opt[] = {
	    0x00,	/* owner: the root */
	    0x00, 0x29, /* TYPE OPT */
	    0x04, 0xd0, /* our UDP payload size, 1232 */
	    0x00,	/* extended RCODE 0 */
	    0x00,	/* version 0 */
	    0x80, 0x00, /* flags: DO, echoed (the query set it; RFC 3225 3) */
	    0x00, 0x00, /* RDLENGTH 0: no cookie back */
	};
	uint8_t out[512];
	struct dns_query q;
	struct view v;
	size_t n;

	(void)state;
	assert_int_equal(dns_parse_query(V(query_edns), &q), PARSE_OK);
	n = dns_write_reply(out, sizeof(out), 512, &q, 0, 1, v4, 1, 30);
	assert_int_equal(n, DNS_HEADER_LEN + 17 + 16 + 11);
	assert_memory_equal(out + n - 11, opt, sizeof(opt));
	assert_int_equal(read_reply(out, n, &v), 0);
	assert_int_equal(v.ar, 1);
	assert_int_equal(v.opt_size, DNS_UDP_SIZE);
	assert_int_equal(v.flags3, 0x00); /* AD not echoed */

	/* BADVERS: 16 is 0 in the header and 1 in the OPT record's upper bits */
	expect_reply(V(query_edns1), 1, DNS_RCODE_BADVERS, &q);
	n = dns_write_reply(out, sizeof(out), sizeof(query_edns1), &q, q.rcode, 0, NULL, 0, 0);
	assert_int_equal(n, sizeof(query_edns1));
	assert_int_equal(read_reply(out, n, &v), 0);
	assert_int_equal(v.flags3 & 0x0f, 0);
	assert_int_equal(v.opt, 1);
	assert_int_equal(v.opt_ttl, 0x01000000);
	assert_int_equal((v.opt_ttl >> 24) << 4 | (v.flags3 & 0x0f), DNS_RCODE_BADVERS);
	assert_int_equal(v.opt_size, DNS_UDP_SIZE);
}

static void
test_write_limit(void **state)
{
	uint8_t out[512];
	struct dns_query q;
	struct view v;
	size_t full, n;

	(void)state;
	assert_int_equal(dns_parse_query(V(query_edns), &q), PARSE_OK);
	full = DNS_HEADER_LEN + 17 + 2 * 16 + 11;
	assert_int_equal(dns_write_reply(out, sizeof(out), full, &q, 0, 1, v4, 2, 30), full);
	assert_int_equal(out[2] & 0x02, 0);

	/* a byte over the limit: no answers, TC set, question and OPT kept */
	n = dns_write_reply(out, sizeof(out), full - 1, &q, 0, 1, v4, 2, 30);
	assert_int_equal(n, DNS_HEADER_LEN + 17 + 11);
	assert_int_equal(read_reply(out, n, &v), 0);
	assert_int_equal(v.flags2, 0x80 | 0x04 | 0x02 | 0x01); /* QR AA TC RD */
	assert_int_equal(v.an, 0);
	assert_int_equal(v.qd, 1);
	assert_int_equal(v.opt, 1);

	/* a limit below even that: the question goes, then the OPT record; TC set */
	n = dns_write_reply(out, sizeof(out), DNS_HEADER_LEN + 11, &q, 0, 1, v4, 2, 30);
	assert_int_equal(n, DNS_HEADER_LEN + 11);
	assert_int_equal(read_reply(out, n, &v), 0);
	assert_int_equal(v.qd, 0);
	assert_int_equal(v.opt, 1);
	n = dns_write_reply(out, sizeof(out), 20, &q, 0, 1, v4, 2, 30);
	assert_int_equal(n, DNS_HEADER_LEN);
	assert_int_equal(out[2] & 0x02, 0x02);
	/* ... unless it does not fit cap */
	assert_int_equal(dns_write_reply(out, n - 1, 20, &q, 0, 1, v4, 2, 30), 0);
	assert_int_equal(dns_write_reply(out, n, 20, &q, 0, 1, v4, 2, 30), n);
	assert_int_equal(dns_write_reply(out, 0, 0, &q, 0, 1, v4, 2, 30), 0);

	/* no answers and a limit exactly the reply: no TC */
	n = dns_write_reply(out, sizeof(out), DNS_HEADER_LEN + 17 + 11, &q, 3, 1, NULL, 0, 30);
	assert_int_equal(n, DNS_HEADER_LEN + 17 + 11);
	assert_int_equal(out[2] & 0x02, 0);
	assert_int_equal(out[3], 3);
}

/* A reply written for a query, flipped back to a query, parses to the same question. */
static void
test_write_reparse(void **state)
{
	const uint8_t *vec[] = {query_a, query_aaaa, query_edns, query_root, query_records};
	const size_t len[] = {sizeof(query_a), sizeof(query_aaaa), sizeof(query_edns),
			      sizeof(query_root), sizeof(query_records)};
	uint8_t out[512];
	struct dns_query q, q2;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		assert_int_equal(dns_parse_query(vec[i], len[i], &q), PARSE_OK);
		n = dns_write_reply(out, sizeof(out), 512, &q, 0, 1, v4, 2, 30);
		assert_true(n > 0);
		/* a reply is never taken for a query */
		expect_reply(out, n, 0, 0, &q2);
		out[2] &= 0x7f;
		assert_int_equal(dns_parse_query(out, n, &q2), PARSE_OK);
		assert_int_equal(q2.id, q.id);
		assert_int_equal(q2.rd, q.rd);
		assert_int_equal(q2.cd, q.cd);
		assert_int_equal(q2.wire_len, q.wire_len);
		assert_memory_equal(q2.wire, q.wire, q.wire_len);
		assert_string_equal(q2.name, q.name);
		assert_int_equal(q2.qtype, q.qtype);
		assert_int_equal(q2.qclass, q.qclass);
		assert_int_equal(q2.edns, q.edns);
		if (q.edns)
			assert_int_equal(q2.edns_size, DNS_UDP_SIZE);
	}
}

static void
test_type_name(void **state)
{
	static const struct {
		uint16_t type;
		const char *name;
	} names[] = {
	    {1, "A"},	 {2, "NS"},    {5, "CNAME"}, {6, "SOA"},   {12, "PTR"},	  {15, "MX"},
	    {16, "TXT"}, {28, "AAAA"}, {33, "SRV"},  {64, "SVCB"}, {65, "HTTPS"}, {255, "ANY"},
	};
	static const uint16_t none[] = {0, 3, 41, 99, 254, 256, 257, 65535};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_string_equal(dns_type_name(names[i].type), names[i].name);
	for (i = 0; i < sizeof(none) / sizeof(none[0]); i++)
		assert_null(dns_type_name(none[i]));
}

/*
 * A question whose pointers re-read its own bytes parses to a name far
 * longer than the query; the reply still never exceeds the limit (three
 * times the query over UDP, the query itself for an error).
 */
static void
test_inflated_question(void **state)
{
	static const uint8_t query[] = {
	    0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* header */
	    0x25, 0x22, 0x1f, 0x1c, 0x19, 0x16, 0x13, 0x10, 0x0d, 0x0a, 0x08,	    /* lengths */
	    0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x00,		    /* "aaaaaaaa" */
	    0xc0, 0x16, 0xc0, 0x15, 0xc0, 0x14, 0xc0, 0x13, 0xc0, 0x12, 0xc0, 0x11,
	    0xc0, 0x10, 0xc0, 0x0f, 0xc0, 0x0e, 0xc0, 0x0d, /* pointers into itself */
	    0x00, 0x01, 0x00, 0x01,			    /* A, IN */
	};
	uint8_t out[1024], bad[sizeof(query)];
	struct dns_query q;
	size_t n;

	(void)state;
	assert_int_equal(dns_parse_query(query, sizeof(query), &q), PARSE_OK);
	assert_true(q.wire_len > 3 * sizeof(query));
	n = dns_write_reply(out, sizeof(out), 3 * sizeof(query), &q, DNS_RCODE_NXDOMAIN, 1, NULL, 0,
			    30);
	assert_true(n > 0 && n <= 3 * sizeof(query));
	assert_int_equal(out[2] & 0x02, 0x02); /* TC */
	memcpy(bad, query, sizeof(query));
	bad[7] = 1; /* ANCOUNT 1 and no record: FORMERR, no larger than the query */
	assert_int_equal(dns_parse_query(bad, sizeof(bad), &q), PARSE_MALFORMED);
	assert_true(q.reply);
	n = dns_write_reply(out, sizeof(out), sizeof(bad), &q, q.rcode, 0, NULL, 0, 0);
	assert_true(n > 0 && n <= sizeof(bad));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_inflated_question),
	    cmocka_unit_test(test_a),
	    cmocka_unit_test(test_aaaa),
	    cmocka_unit_test(test_root),
	    cmocka_unit_test(test_edns),
	    cmocka_unit_test(test_badvers),
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_dropped),
	    cmocka_unit_test(test_qdcount),
	    cmocka_unit_test(test_opcode),
	    cmocka_unit_test(test_class),
	    cmocka_unit_test(test_pointers),
	    cmocka_unit_test(test_pointer_hops),
	    cmocka_unit_test(test_label_types),
	    cmocka_unit_test(test_name_length),
	    cmocka_unit_test(test_text),
	    cmocka_unit_test(test_case_kept),
	    cmocka_unit_test(test_trailing),
	    cmocka_unit_test(test_opt_rules),
	    cmocka_unit_test(test_tcp_frame),
	    cmocka_unit_test(test_write_a),
	    cmocka_unit_test(test_write_bits),
	    cmocka_unit_test(test_write_edns),
	    cmocka_unit_test(test_write_limit),
	    cmocka_unit_test(test_write_reparse),
	    cmocka_unit_test(test_type_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
