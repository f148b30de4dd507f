/*
 * fuzz_sniff_tls.c: libFuzzer target for sniff_tls_client_hello. Besides
 * running the parser on the raw input under the sanitizers, it checks the
 * contract: outputs are NUL-terminated and in bounds, NEED_MORE only below
 * SNIFF_TLS_MAX_HELLO, a cut-short input never contradicts the whole one,
 * and the result does not depend on how the hello is cut into records (the
 * input, minus its first byte, is also framed as one record and as records
 * of 1 + data[0] bytes, and both parses must agree).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sniff_tls.h"
#include "fuzz.h"

static void
check_out(const uint8_t *buf, size_t len, enum parse_result r, const struct sniff_tls_hello *h)
{
	unsigned i;

	CHECK(r == PARSE_OK || r == PARSE_NEED_MORE || r == PARSE_NOT_FOUND ||
	      r == PARSE_MALFORMED);
	if (r == PARSE_NEED_MORE)
		CHECK(len < SNIFF_TLS_MAX_HELLO);
	if (r != PARSE_OK && r != PARSE_NOT_FOUND)
		return;
	CHECK(h->consumed > 0 && h->consumed <= len && h->consumed <= SNIFF_TLS_MAX_HELLO);
	CHECK(buf[0] == 0x16);
	CHECK(h->sni_len < sizeof(h->sni));
	CHECK(h->sni[h->sni_len] == '\0' && strlen(h->sni) == h->sni_len);
	CHECK(r == PARSE_OK ? h->sni_len > 0 : h->sni_len == 0);
	CHECK(h->alpn_count <= SNIFF_TLS_ALPN_MAX);
	for (i = 0; i < h->alpn_count; i++) {
		size_t n = strnlen(h->alpn[i], sizeof(h->alpn[i]));

		CHECK(n > 0 && n <= SNIFF_TLS_ALPN_NAMELEN);
	}
}

static int
same_hello(const struct sniff_tls_hello *a, const struct sniff_tls_hello *b)
{
	unsigned i;

	if (a->sni_len != b->sni_len || strcmp(a->sni, b->sni) != 0 ||
	    a->alpn_count != b->alpn_count)
		return 0;
	for (i = 0; i < a->alpn_count; i++)
		if (strcmp(a->alpn[i], b->alpn[i]) != 0)
			return 0;
	return 1;
}

/* frame cuts msg into handshake records of at most frag bytes. */
static size_t
frame(uint8_t *out, size_t cap, const uint8_t *msg, size_t len, size_t frag)
{
	size_t i, o = 0;

	for (i = 0; i < len; i += frag) {
		size_t k = len - i < frag ? len - i : frag;

		if (o + 5 + k > cap)
			return 0;
		out[o++] = 0x16;
		out[o++] = 0x03;
		out[o++] = 0x01;
		out[o++] = (uint8_t)(k >> 8);
		out[o++] = (uint8_t)k;
		memcpy(out + o, msg + i, k);
		o += k;
	}
	return o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t one[SNIFF_TLS_MAX_HELLO], many[SNIFF_TLS_MAX_HELLO];
	struct sniff_tls_hello h, h2;
	enum parse_result r, r2;
	size_t n1, n2;

	/* 1. The raw input. */
	r = sniff_tls_client_hello(data, size, &h);
	check_out(data, size, r, &h);
	if (r == PARSE_OK || r == PARSE_NOT_FOUND) {
		/* The hello's own bytes give the same answer... */
		r2 = sniff_tls_client_hello(data, h.consumed, &h2);
		CHECK(r2 == r && same_hello(&h, &h2) && h2.consumed == h.consumed);
		/* ...and one byte fewer is a valid prefix. */
		CHECK(sniff_tls_client_hello(data, h.consumed - 1, &h2) == PARSE_NEED_MORE);
	}
	if (size > 1) {
		/* A prefix never contradicts the whole. */
		size_t k = size / 2;

		r2 = sniff_tls_client_hello(data, k, &h2);
		if (r == PARSE_MALFORMED)
			CHECK(r2 != PARSE_OK && r2 != PARSE_NOT_FOUND);
		else if (r == PARSE_NEED_MORE || k < h.consumed)
			CHECK(r2 == PARSE_NEED_MORE);
		else
			CHECK(r2 == r && same_hello(&h, &h2));
	}

	/* 2. data[1..] as a handshake message, framed two ways. */
	if (size < 2)
		return 0;
	n1 = frame(one, sizeof(one), data + 1, size - 1, SNIFF_TLS_MAX_HELLO - 5);
	n2 = frame(many, sizeof(many), data + 1, size - 1, (size_t)data[0] + 1);
	if (n1 == 0 || n2 == 0)
		return 0;
	r = sniff_tls_client_hello(one, n1, &h);
	check_out(one, n1, r, &h);
	r2 = sniff_tls_client_hello(many, n2, &h2);
	check_out(many, n2, r2, &h2);
	if (r == PARSE_MALFORMED || r2 == PARSE_MALFORMED) {
		/*
		 * Only the framing can tell them apart: a hello that ends
		 * mid-record, or one too big once record headers are added.
		 */
		return 0;
	}
	CHECK(r == r2);
	if (r == PARSE_OK || r == PARSE_NOT_FOUND)
		CHECK(same_hello(&h, &h2) && h.consumed == n1 && h2.consumed == n2);
	return 0;
}
