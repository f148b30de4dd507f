/*
 * fuzz_http.c: libFuzzer target for mode http's request-rewriting path.
 * The input is a byte stream cut into segments, each from the client or
 * from the upstream, fed to an http_stream exactly as the relay would.
 * Contract checked: nothing crashes or leaks; after the stream ends the
 * connection nothing more is sent; and whatever went to the upstream
 * before a switch to raw is a valid HTTP/1.1 request stream (a fresh
 * http-parser reads it without error), so no input can make gatekeeper
 * send the upstream bytes it would frame differently.
 *
 * Input: byte 0 picks the settings (trusted peer, Forwarded, a low
 * max_requests, misdirecting "b" hosts). Then segments: one byte (bit 0:
 * 0 client, 1 upstream; bits 1-7: length - 1) and that many bytes.
 */
#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "net.h"
#include "fuzz.h"

#define UP_MAX (1 << 20)

struct rec {
	uint8_t *up;     /* bytes sent upstream before any switch to raw */
	size_t up_len;
	const char *ended;
	int raw, misdirect;
};

static int
rec_send(void *arg, int to, const void *data, size_t len)
{
	struct rec *r = arg;

	CHECK(r->ended == NULL || to == 0); /* a refusal may follow end's cause, nothing upstream */
	if (to == 1 && !r->raw && r->up_len + len <= UP_MAX) {
		memcpy(r->up + r->up_len, data, len);
		r->up_len += len;
	}
	return 0;
}

static const char *
rec_admit(void *arg, const struct sniff_http_request *req, const uint8_t *buf)
{
	struct rec *r = arg;

	(void)buf;
	return r->misdirect && req->host[0] == 'b' ? "misdirected" : NULL;
}

static void
rec_end(void *arg, const char *reason)
{
	struct rec *r = arg;

	CHECK(reason != NULL);
	if (r->ended == NULL)
		r->ended = reason;
}

static void
rec_raw(void *arg)
{
	((struct rec *)arg)->raw = 1;
}

static void
rec_rearm(void *arg)
{
	(void)arg;
}

static const struct http_ops ops = {rec_send, rec_admit, rec_end, rec_raw, rec_rearm};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t up[UP_MAX];
	struct config_http c;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct http_peer peer;
	struct rec r;
	struct http_stream *h;
	struct timeval now = {1000, 0};
	http_parser check;
	http_parser_settings none;
	size_t pos = 1, n;

	if (size < 1)
		return 0;
	memset(&c, 0, sizeof(c));
	c.x_forwarded_for = c.x_forwarded_proto = c.x_forwarded_host = c.x_real_ip = 1;
	c.forwarded = data[0] & 2;
	c.max_header_size = 1024 + (data[0] & 0x30) * 64;
	c.header_timeout = c.keepalive_timeout = 1000;
	c.max_requests = data[0] & 4 ? 3 : 0;
	net_parse_ip(data[0] & 8 ? "2001:db8::7" : "192.0.2.7", 1, &ss, &sl);
	peer.client = (struct sockaddr *)&ss;
	peer.trusted = data[0] & 1;
	memset(&r, 0, sizeof(r));
	r.up = up;
	r.misdirect = data[0] & 0x40;
	if ((h = http_stream_new(&c, &peer, &ops, &r, &now)) == NULL)
		return 0;
	while (pos < size) {
		int from = data[pos] & 1;
		n = (size_t)(data[pos] >> 1) + 1;
		pos++;
		if (n > size - pos)
			n = size - pos;
		if (r.ended != NULL)
			break; /* the relay reads nothing more */
		if (http_stream_may_read(h, from))
			http_stream_bytes(h, from, data + pos, n, &now);
		pos += n;
	}
	if (data[0] & 0x80) {
		now.tv_sec += 5;
		http_stream_expire(h, &now);
	}
	http_stream_free(h);

	/* What went upstream parses as requests, as far as it goes. */
	memset(&none, 0, sizeof(none));
	http_parser_init(&check, HTTP_REQUEST);
	n = http_parser_execute(&check, &none, (const char *)r.up, r.up_len);
	CHECK(HTTP_PARSER_ERRNO(&check) == HPE_OK || (check.upgrade && n < r.up_len) ||
	    r.up_len == UP_MAX);
	return 0;
}
