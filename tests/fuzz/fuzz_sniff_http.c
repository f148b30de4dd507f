/*
 * fuzz_sniff_http.c: libFuzzer target for sniff_http_request. It runs the
 * parser on the raw input and checks the contract: NEED_MORE only below
 * SNIFF_HTTP_MAX_HEAD; on success the head ends in CRLF CRLF within the
 * input, the target lies inside the head, strings are NUL-terminated and of
 * the stated length, the head alone gives the same answer, and a cut-short
 * input never contradicts the whole one.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sniff_http.h"
#include "fuzz.h"

static void
check_out(const uint8_t *buf, size_t len, enum parse_result r, const struct sniff_http_request *q)
{
	size_t mlen;

	CHECK(r == PARSE_OK || r == PARSE_NEED_MORE || r == PARSE_NOT_FOUND ||
	      r == PARSE_MALFORMED);
	if (r == PARSE_NEED_MORE)
		CHECK(len < SNIFF_HTTP_MAX_HEAD);
	if (r != PARSE_OK && r != PARSE_NOT_FOUND)
		return;
	CHECK(q->head_len >= 4 && q->head_len <= len && q->head_len <= SNIFF_HTTP_MAX_HEAD);
	CHECK(memcmp(buf + q->head_len - 4, "\r\n\r\n", 4) == 0);
	mlen = strnlen(q->method, sizeof(q->method));
	CHECK(mlen > 0 && mlen < sizeof(q->method) && memcmp(buf, q->method, mlen) == 0);
	CHECK(buf[mlen] == ' ' && q->target_off == mlen + 1);
	CHECK(q->target_len > 0 && q->target_off + q->target_len < q->head_len);
	CHECK(q->host_len < sizeof(q->host) && q->host[q->host_len] == '\0');
	CHECK(strlen(q->host) == q->host_len);
	CHECK(q->version_minor == 0 || q->version_minor == 1);
	if (r == PARSE_NOT_FOUND)
		CHECK(q->host_len == 0 && q->port == 0 &&
		      (q->form == SNIFF_HTTP_ORIGIN || q->form == SNIFF_HTTP_ASTERISK));
	else
		CHECK(q->host_len > 0);
	if (q->form == SNIFF_HTTP_AUTHORITY)
		CHECK(q->port != 0 && strcmp(q->method, "CONNECT") == 0);
	if (q->https)
		CHECK(q->form == SNIFF_HTTP_ABSOLUTE);
}

static int
same(const struct sniff_http_request *a, const struct sniff_http_request *b)
{
	return strcmp(a->method, b->method) == 0 && a->form == b->form &&
	       a->target_off == b->target_off && a->target_len == b->target_len &&
	       strcmp(a->host, b->host) == 0 && a->port == b->port && a->https == b->https &&
	       a->version_minor == b->version_minor && a->head_len == b->head_len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sniff_http_request q, q2;
	enum parse_result r, r2;

	r = sniff_http_request(data, size, &q);
	check_out(data, size, r, &q);
	if (r == PARSE_OK || r == PARSE_NOT_FOUND) {
		r2 = sniff_http_request(data, q.head_len, &q2);
		CHECK(r2 == r && same(&q, &q2));
		CHECK(sniff_http_request(data, q.head_len - 1, &q2) == PARSE_NEED_MORE);
	}
	if (size > 1) {
		size_t k = size / 2;

		r2 = sniff_http_request(data, k, &q2);
		if (r == PARSE_MALFORMED)
			CHECK(r2 == PARSE_NEED_MORE || r2 == PARSE_MALFORMED);
		else if (r == PARSE_NEED_MORE || k < q.head_len)
			CHECK(r2 == PARSE_NEED_MORE);
		else
			CHECK(r2 == r && same(&q, &q2));
	}
	return 0;
}
