/*
 * fuzz_dns.c: libFuzzer target for dns_parse_query, dns_tcp_frame and
 * dns_write_reply. The input is read as a query and as a TCP stream. The
 * query's outcome is checked against its header (dropped only when short
 * or a response, NOTIMP only for another opcode, the name's text and wire
 * forms agreeing, text_ok only for names a host could have); then every
 * query that is answered gets replies with a few answers and limits taken
 * from the input's last bytes, each checked: no longer than cap, no longer
 * than the limit unless TC is set and the answers are gone, the query's
 * ID, QR set, and a question that parses back to the same one once QR is
 * cleared in a copy.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sys/socket.h>

#include "dns.h"
#include "fuzz.h"

#define OUT_CAP 1024

/* check_name: the text is the wire's labels joined by '.', and text_ok says what it should. */
static void
check_name(const struct dns_query *q)
{
	char text[DNS_NAME_WIRE_MAX + 1];
	size_t w = 0, t = 0;
	int ok = 1;

	CHECK(q->wire_len >= 1 && q->wire_len <= DNS_NAME_WIRE_MAX);
	for (;;) {
		uint8_t l;

		CHECK(w < q->wire_len);
		l = q->wire[w++];
		CHECK(l <= 63);
		if (l == 0)
			break;
		CHECK(w + l < q->wire_len); /* the root still to come */
		if (t > 0)
			text[t++] = '.';
		for (size_t i = 0; i < l; i++) {
			uint8_t c = q->wire[w + i];

			if (c <= 0x20 || c >= 0x7f || c == '.')
				ok = 0;
			text[t++] = (char)c;
		}
		w += l;
	}
	CHECK(w == q->wire_len);
	text[t] = '\0';
	CHECK(memcmp(q->name, text, t + 1) == 0);
	CHECK(q->text_ok == ok);
	if (q->text_ok) {
		/* as many dots as labels less one: none inside a label */
		size_t dots = 0, labels = 0;

		for (size_t i = 0; i < t; i++) {
			CHECK(q->name[i] > 0x20 && q->name[i] < 0x7f);
			dots += q->name[i] == '.';
		}
		for (w = 0; q->wire[w] != 0; w += 1 + q->wire[w])
			labels++;
		CHECK(strlen(q->name) == t);
		CHECK(labels == 0 ? t == 0 : dots == labels - 1);
	}
}

static void
check_parse(const uint8_t *msg, size_t len, enum parse_result r, const struct dns_query *q)
{
	CHECK(r == PARSE_OK || r == PARSE_MALFORMED);
	if (len < DNS_HEADER_LEN || (msg[2] & 0x80)) {
		CHECK(r == PARSE_MALFORMED && q->reply == 0);
		return;
	}
	CHECK(q->id == (msg[0] << 8 | msg[1]));
	CHECK(q->opcode == ((msg[2] >> 3) & 0x0f));
	CHECK(q->rd == (msg[2] & 1) && q->cd == ((msg[3] >> 4) & 1));
	if (r == PARSE_MALFORMED) {
		CHECK(q->reply == 1);
		CHECK(q->rcode == DNS_RCODE_FORMERR || q->rcode == DNS_RCODE_NOTIMP ||
		      q->rcode == DNS_RCODE_REFUSED || q->rcode == DNS_RCODE_BADVERS);
		CHECK((q->rcode == DNS_RCODE_NOTIMP) == (q->opcode != 0));
		if (q->rcode == DNS_RCODE_BADVERS)
			CHECK(q->edns && q->edns_version > 0 && q->question);
		if (q->rcode == DNS_RCODE_REFUSED)
			CHECK(q->question && q->qclass != DNS_CLASS_IN && q->qclass != 255);
	} else {
		CHECK(q->reply == 0 && q->question && q->opcode == 0);
		CHECK(q->qclass == DNS_CLASS_IN || q->qclass == 255);
		CHECK(!q->edns || q->edns_version == 0);
	}
	if (q->question != 0 || r == PARSE_OK)
		CHECK(msg[4] == 0 && msg[5] == 1);
	if (q->question) {
		const char *tn = dns_type_name(q->qtype);

		check_name(q);
		CHECK(tn == NULL || (tn[0] != '\0' && strlen(tn) <= 5));
	} else
		CHECK(q->wire_len == 0 && q->name[0] == '\0');
	if (q->edns)
		CHECK(q->edns_size >= 512);
}

/* check_reply writes a reply to q and checks it against the contract. */
static void
check_reply(const struct dns_query *q, size_t cap, size_t limit, unsigned rcode, int aa,
	    const struct dns_answer *answers, size_t n)
{
	static uint8_t out[OUT_CAP + 1], copy[OUT_CAP];
	size_t len, an, need, full;
	struct dns_query q2;
	enum parse_result r;
	int tc, has_q, has_opt;

	out[cap] = 0x5a;
	len = dns_write_reply(out, cap, limit, q, rcode, aa, answers, n, 60);
	CHECK(out[cap] == 0x5a); /* nothing past cap */
	need = DNS_HEADER_LEN + (q->question ? q->wire_len + 4 : 0) + (q->edns ? 11 : 0);
	full = need;
	has_q = q->question;
	has_opt = q->edns;
	for (size_t i = 0; q->question && i < n; i++)
		full += 12 + (answers[i].family == AF_INET ? 4 : 16);
	/*
	 * The limit takes the answers first, then the question, then the OPT
	 * record; then the reply fits cap whole or not at all.
	 */
	if (full > limit) {
		full = need;
		if (need > limit) {
			has_q = 0;
			need = full = DNS_HEADER_LEN + (has_opt ? 11 : 0);
			if (need > limit) {
				has_opt = 0;
				need = full = DNS_HEADER_LEN;
			}
		}
	}
	CHECK((len == 0) == (full > cap));
	if (len == 0)
		return;
	CHECK(len == full && len <= cap);
	CHECK(out[0] == q->id >> 8 && out[1] == (q->id & 0xff));
	CHECK(out[2] & 0x80);			    /* QR */
	CHECK(((out[2] >> 3) & 0x0f) == q->opcode); /* opcode echoed */
	CHECK(!!(out[2] & 0x04) == !!aa);
	CHECK((out[2] & 0x01) == q->rd);
	CHECK((out[3] & 0x80) == 0); /* RA */
	CHECK(!!(out[3] & 0x10) == !!q->cd);
	CHECK((out[3] & 0x0f) == (rcode & 0x0f));
	tc = !!(out[2] & 0x02);
	an = (size_t)(out[6] << 8 | out[7]);
	CHECK((out[4] << 8 | out[5]) == (has_q ? 1 : 0));
	CHECK(out[8] == 0 && out[9] == 0);
	CHECK((out[10] << 8 | out[11]) == (has_opt ? 1 : 0));
	/* never over the limit, but for a header alone (no query is shorter) */
	CHECK(len <= limit || len == DNS_HEADER_LEN);
	CHECK(an == (tc || !q->question ? 0 : n));
	if (tc)
		CHECK(len == need);
	if (has_opt) {
		const uint8_t *o = out + len - 11;

		CHECK(o[0] == 0 && o[1] == 0 && o[2] == DNS_TYPE_OPT);
		CHECK((o[3] << 8 | o[4]) == DNS_UDP_SIZE);
		CHECK(o[5] == (rcode >> 4) && o[6] == 0 && o[7] == (q->edns_do ? 0x80 : 0) &&
		      o[8] == 0);
		CHECK(o[9] == 0 && o[10] == 0);
	}
	if (!has_q)
		return;
	CHECK(memcmp(out + DNS_HEADER_LEN, q->wire, q->wire_len) == 0);
	for (size_t i = 0, at = need - (q->edns ? 11 : 0); i < an; i++) {
		size_t alen = answers[i].family == AF_INET ? 4 : 16;
		const uint8_t *a = out + at;

		CHECK(a[0] == 0xc0 && a[1] == DNS_HEADER_LEN); /* the question's name */
		CHECK(a[2] == 0 && a[3] == (alen == 4 ? DNS_TYPE_A : DNS_TYPE_AAAA));
		CHECK(a[4] == 0 && a[5] == DNS_CLASS_IN);
		CHECK(a[6] == 0 && a[7] == 0 && a[8] == 0 && a[9] == 60);
		CHECK(a[10] == 0 && a[11] == alen && memcmp(a + 12, answers[i].addr, alen) == 0);
		at += 12 + alen;
	}

	/* back to a query: the same question, and one OPT if there was one */
	memcpy(copy, out, len);
	copy[2] &= 0x7f;
	r = dns_parse_query(copy, len, &q2);
	CHECK(r == PARSE_OK || (r == PARSE_MALFORMED && q2.rcode == DNS_RCODE_REFUSED));
	CHECK(q2.question && q2.id == q->id && q2.opcode == q->opcode);
	CHECK(q2.wire_len == q->wire_len && memcmp(q2.wire, q->wire, q->wire_len) == 0);
	CHECK(strcmp(q2.name, q->name) == 0 && q2.text_ok == q->text_ok);
	CHECK(q2.qtype == q->qtype && q2.qclass == q->qclass);
	CHECK(q2.edns == has_opt && (!q2.edns || q2.edns_size == DNS_UDP_SIZE));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_answer answers[4];
	struct dns_query q;
	enum parse_result r;
	size_t msg_len = 0, k;
	uint8_t knobs[4] = {0};

	/* 1. the input as one datagram */
	r = dns_parse_query(data, size, &q);
	check_parse(data, size, r, &q);
	if (size > 0) {
		/* a cut-short query is never accepted where the whole one is refused */
		struct dns_query q2;
		enum parse_result r2 = dns_parse_query(data, size - 1, &q2);

		check_parse(data, size - 1, r2, &q2);
		if (q.reply == 0 && r == PARSE_MALFORMED)
			CHECK(r2 == PARSE_MALFORMED);
	}

	/* 2. the input as a TCP stream: each message framed in turn */
	for (k = 0; k < size;) {
		r = dns_tcp_frame(data + k, size - k, &msg_len);
		CHECK(r == PARSE_OK || r == PARSE_NEED_MORE || r == PARSE_MALFORMED);
		if (size - k < 2) {
			CHECK(r == PARSE_NEED_MORE);
			break;
		}
		if (r == PARSE_MALFORMED) {
			CHECK((size_t)(data[k] << 8 | data[k + 1]) < DNS_HEADER_LEN);
			break;
		}
		if (r == PARSE_NEED_MORE) {
			CHECK((size_t)(data[k] << 8 | data[k + 1]) > size - k - 2);
			break;
		}
		CHECK(msg_len == (size_t)(data[k] << 8 | data[k + 1]));
		CHECK(msg_len >= DNS_HEADER_LEN && msg_len <= size - k - 2);
		k += 2 + msg_len;
	}

	/* 3. replies, for a query that is answered */
	r = dns_parse_query(data, size, &q);
	if (r != PARSE_OK && !q.reply)
		return 0;
	if (size >= 4)
		memcpy(knobs, data + size - 4, 4);
	for (k = 0; k < 4; k++) {
		memset(&answers[k], 0, sizeof(answers[k]));
		answers[k].family = (knobs[0] >> k) & 1 ? AF_INET6 : AF_INET;
		answers[k].addr[0] = (uint8_t)k;
		answers[k].addr[15] = knobs[1];
	}
	{
		size_t n = knobs[0] >> 5 & 3;
		size_t cap = OUT_CAP - (knobs[2] & 0x3f) * 16;
		size_t limits[] = {512, 3 * size, size, DNS_UDP_SIZE, 65535, knobs[3]};
		unsigned rcodes[] = {q.rcode, DNS_RCODE_NOERROR, DNS_RCODE_NXDOMAIN,
				     DNS_RCODE_BADVERS};

		for (k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
			check_reply(&q, OUT_CAP, limits[k], rcodes[k % 4], 1, answers, n);
			check_reply(&q, cap, limits[k], rcodes[k % 4], 0, answers, 4);
		}
		check_reply(&q, DNS_HEADER_LEN, 512, q.rcode, 0, answers, n);
		check_reply(&q, 0, 0, q.rcode, 0, answers, 0);
	}
	return 0;
}
