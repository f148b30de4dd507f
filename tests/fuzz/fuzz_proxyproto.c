/*
 * fuzz_proxyproto.c: libFuzzer target for proxyproto_parse and the two
 * writers. The raw input is parsed and the contract checked: NEED_MORE only
 * below PROXYPROTO_PARSE_MAX, NOT_FOUND only when the input really cannot
 * start a signature, a header that fits the input and ends where the spec
 * says, usable addresses only when not local, and a cut-short input that
 * never contradicts the whole one. Then the input is read as two addresses
 * and ports, written as v1 and v2, and parsed back: the round trip must
 * return them unchanged. Any header parsed with addresses is also
 * re-emitted and re-parsed.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "net.h"
#include "proxyproto.h"
#include "fuzz.h"

static const uint8_t v2_sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

static int
is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

static int
could_start(const uint8_t *buf, size_t len)
{
	size_t n1 = len < 6 ? len : 6, n2 = len < 12 ? len : 12;

	return memcmp(buf, "PROXY ", n1) == 0 || memcmp(buf, v2_sig, n2) == 0;
}

static void
check_out(const uint8_t *buf, size_t len, enum parse_result r, const struct proxyproto_header *h)
{
	CHECK(r == PARSE_OK || r == PARSE_NEED_MORE || r == PARSE_NOT_FOUND ||
	      r == PARSE_MALFORMED);
	if (r == PARSE_NEED_MORE)
		CHECK(len < PROXYPROTO_PARSE_MAX && (len == 0 || could_start(buf, len)));
	if (r == PARSE_NOT_FOUND)
		CHECK(len > 0 && !could_start(buf, len));
	if (r != PARSE_OK)
		return;
	CHECK(h->len <= len && h->len <= PROXYPROTO_PARSE_MAX);
	if (h->version == 1) {
		CHECK(h->len >= 15 && h->len <= PROXYPROTO_V1_MAX);
		CHECK(buf[h->len - 2] == '\r' && buf[h->len - 1] == '\n');
	} else {
		CHECK(h->version == 2 && h->len >= 16);
		CHECK(h->len == 16 + ((size_t)buf[14] << 8 | buf[15]));
	}
	if (h->local) {
		CHECK(h->family == AF_UNSPEC);
		CHECK(is_zero(&h->src, sizeof(h->src)) && is_zero(&h->dst, sizeof(h->dst)));
	} else {
		CHECK(h->family == AF_INET || h->family == AF_INET6);
		CHECK(h->src.ss_family == h->family && h->dst.ss_family == h->family);
	}
}

/* emit writes src/dst with version v, parses it back and compares. */
static void
round_trip(int v, const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
	   int usable)
{
	uint8_t out[PROXYPROTO_V2_MAX];
	struct proxyproto_header h;
	size_t n;

	n = v == 1 ? proxyproto_write_v1(out, sizeof(out), (const struct sockaddr *)src,
					 (const struct sockaddr *)dst)
		   : proxyproto_write_v2(out, sizeof(out), (const struct sockaddr *)src,
					 (const struct sockaddr *)dst);
	CHECK(n > 0 && n <= (v == 1 ? PROXYPROTO_V1_MAX : PROXYPROTO_V2_MAX));
	CHECK(proxyproto_parse(out, n, &h) == PARSE_OK);
	CHECK(h.version == v && h.len == n);
	if (!usable) {
		CHECK(h.local == 1);
		return;
	}
	CHECK(h.local == 0 && h.family == src->ss_family);
	CHECK(memcmp(&h.src, src, sizeof(*src)) == 0 && memcmp(&h.dst, dst, sizeof(*dst)) == 0);
	/* one byte short of room: nothing */
	CHECK((v == 1 ? proxyproto_write_v1(out, n - 1, (const struct sockaddr *)src,
					    (const struct sockaddr *)dst)
		      : proxyproto_write_v2(out, n - 1, (const struct sockaddr *)src,
					    (const struct sockaddr *)dst)) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto_header h, h2;
	enum parse_result r, r2;

	/* 1. The raw input. */
	r = proxyproto_parse(data, size, &h);
	check_out(data, size, r, &h);
	if (r == PARSE_OK) {
		r2 = proxyproto_parse(data, h.len, &h2);
		CHECK(r2 == PARSE_OK && memcmp(&h, &h2, sizeof(h)) == 0);
		CHECK(proxyproto_parse(data, h.len - 1, &h2) == PARSE_NEED_MORE);
		if (!h.local) {
			round_trip(1, &h.src, &h.dst, 1);
			round_trip(2, &h.src, &h.dst, 1);
		}
	}
	if (size > 1) {
		size_t k = size / 2;

		r2 = proxyproto_parse(data, k, &h2);
		if (r == PARSE_OK && k >= h.len)
			CHECK(r2 == PARSE_OK && memcmp(&h, &h2, sizeof(h)) == 0);
		else if (r == PARSE_OK || r == PARSE_NEED_MORE)
			CHECK(r2 == PARSE_NEED_MORE);
		else
			CHECK(r2 == PARSE_NEED_MORE || r2 == r);
	}

	/* 2. data as flags, two addresses and two ports, written and re-read. */
	if (size >= 1 + 32 + 4) {
		struct sockaddr_storage src, dst;
		int fam_src = data[0] & 1 ? AF_INET6 : AF_INET;
		int fam_dst = data[0] & 2 ? (fam_src == AF_INET ? AF_INET6 : AF_INET) : fam_src;
		uint16_t sport = (uint16_t)(data[33] << 8 | data[34]);
		uint16_t dport = (uint16_t)(data[35] << 8 | data[36]);

		net_set_addr(&src, fam_src, data + 1, sport);
		net_set_addr(&dst, fam_dst, data + 17, dport);
		round_trip(1, &src, &dst, fam_src == fam_dst);
		round_trip(2, &src, &dst, fam_src == fam_dst);
	}
	return 0;
}
