/*
 * fuzz_http.c: libFuzzer target for mode http's request-rewriting path.
 * The input is a byte stream cut into segments, each from the client or
 * from the upstream, fed to an http_stream exactly as the relay would.
 * Contract checked: nothing crashes or leaks; after the stream ends the
 * connection nothing more is sent; and whatever went to the upstream
 * before a switch to raw is a valid HTTP/1.1 request stream (a fresh
 * http-parser reads it without error), so no input can make gatekeeper
 * send the upstream bytes it would frame differently. In those requests,
 * header by header: no name that reads as one of gatekeeper's only with
 * '_' for '-'; Connection says only close, keep-alive or upgrade (never
 * names a header); Upgrade never offers h2c; a forward proxy's requests
 * carry no Proxy-Authorization; and from an untrusted peer every
 * forwarding header is gatekeeper's own, one line of each at most.
 *
 * Input: byte 0 picks the settings (trusted peer, Forwarded, a low
 * max_requests, a forward proxy's client, misdirecting "b" hosts). Then
 * segments: one byte (bit 0: 0 client, 1 upstream; bits 1-7: length - 1)
 * and that many bytes.
 */
#include <ctype.h>
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
	uint8_t *up; /* bytes sent upstream before any switch to raw */
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

static enum reason
rec_admit(void *arg, const struct sniff_http_request *req, const uint8_t *buf)
{
	struct rec *r = arg;

	(void)buf;
	return r->misdirect && req->host[0] == 'b' ? REASON_MISDIRECTED : REASON_NONE;
}

static void
rec_end(void *arg, enum reason reason)
{
	struct rec *r = arg;

	CHECK((unsigned)reason < REASON_COUNT);
	if (r->ended == NULL)
		r->ended = reason_name(reason);
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

/* ---- the headers of what went upstream, one by one ---- */

struct chk {
	char name[64], value[512];
	size_t name_len, value_len;
	int in_value, has_header;
	int trusted, proxy, forwarded;
	unsigned xff, xfp, xfh, xrip, fwd; /* lines of each in the current request */
};

static void
append(char *buf, size_t cap, size_t *len, const char *at, size_t n)
{
	size_t take = n < cap - 1 - *len ? n : cap - 1 - *len;

	memcpy(buf + *len, at, take);
	*len += take;
	buf[*len] = '\0';
}

/* each comma-separated token of v, trimmed and lower-cased, to fn */
static void
tokens(const char *v, void (*fn)(const char *tok))
{
	char tok[128];
	size_t n = 0;

	for (;; v++) {
		if (*v == ',' || *v == '\0') {
			while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
				n--;
			tok[n] = '\0';
			if (n > 0)
				fn(tok);
			n = 0;
			if (*v == '\0')
				return;
		} else if (n > 0 || (*v != ' ' && *v != '\t')) {
			if (n < sizeof(tok) - 1)
				tok[n++] = (char)tolower((unsigned char)*v);
		}
	}
}

static void
connection_token(const char *t)
{
	CHECK(strcmp(t, "close") == 0 || strcmp(t, "keep-alive") == 0 || strcmp(t, "upgrade") == 0);
}

static void
upgrade_token(const char *t)
{
	CHECK(strcmp(t, "h2c") != 0 && strcmp(t, "h2") != 0);
}

static void
header_done(struct chk *k)
{
	static const char *const ours[] = {
	    "host",	 "content-length",  "transfer-encoding",  "connection",
	    "upgrade",	 "x-forwarded-for", "x-forwarded-proto",  "x-forwarded-host",
	    "x-real-ip", "forwarded",	    "proxy-authorization"};
	char folded[64];

	if (!k->has_header)
		return;
	k->has_header = 0;
	for (size_t i = 0; i <= k->name_len; i++)
		folded[i] = k->name[i] == '_' ? '-' : (char)tolower((unsigned char)k->name[i]);
	if (memchr(k->name, '_', k->name_len) != NULL) {
		for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
			CHECK(strcmp(folded, ours[i]) != 0);
		CHECK(strncmp(folded, "x-forwarded-", 12) != 0);
		return;
	}
	if (strcmp(folded, "connection") == 0)
		tokens(k->value, connection_token);
	else if (strcmp(folded, "upgrade") == 0)
		tokens(k->value, upgrade_token);
	else if (strcmp(folded, "proxy-authorization") == 0)
		CHECK(!k->proxy);
	else if (strcmp(folded, "x-forwarded-for") == 0)
		k->xff++;
	else if (strcmp(folded, "x-forwarded-proto") == 0)
		k->xfp++;
	else if (strcmp(folded, "x-forwarded-host") == 0)
		k->xfh++;
	else if (strcmp(folded, "x-real-ip") == 0)
		k->xrip++;
	else if (strcmp(folded, "forwarded") == 0)
		k->fwd++;
	else if (strncmp(folded, "x-forwarded-", 12) == 0)
		CHECK(k->trusted || k->proxy);
}

static int
on_field(http_parser *p, const char *at, size_t n)
{
	struct chk *k = p->data;

	if (k->in_value) {
		header_done(k);
		k->in_value = 0;
		k->name_len = k->value_len = 0;
		k->name[0] = k->value[0] = '\0';
	}
	k->has_header = 1;
	append(k->name, sizeof(k->name), &k->name_len, at, n);
	return 0;
}

static int
on_value(http_parser *p, const char *at, size_t n)
{
	struct chk *k = p->data;

	k->in_value = 1;
	append(k->value, sizeof(k->value), &k->value_len, at, n);
	return 0;
}

static int
on_begin(http_parser *p)
{
	struct chk *k = p->data;

	k->xff = k->xfp = k->xfh = k->xrip = k->fwd = 0;
	k->in_value = k->has_header = 0;
	k->name_len = k->value_len = 0;
	k->name[0] = k->value[0] = '\0';
	return 0;
}

static int
on_headers(http_parser *p)
{
	struct chk *k = p->data;

	header_done(k);
	if (!k->trusted && !k->proxy) {
		/* nothing of the client's claims: gatekeeper's own lines only */
		CHECK(k->xff <= 1 && k->xfp <= 1 && k->xfh <= 1 && k->xrip <= 1);
		CHECK(k->fwd <= (k->forwarded ? 1u : 0u));
	}
	return 0;
}

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
	struct chk k;
	size_t pos = 1, n;

	if (size < 1)
		return 0;
	memset(&c, 0, sizeof(c));
	c.x_forwarded_for = c.x_forwarded_proto = c.x_forwarded_host = c.x_real_ip = 1;
	c.forwarded = data[0] & 2;
	c.max_header_size = 1024 + (data[0] & 0x10) * 64;
	c.header_timeout = c.keepalive_timeout = 1000;
	c.max_requests = data[0] & 4 ? 3 : 0;
	net_parse_ip(data[0] & 8 ? "2001:db8::7" : "192.0.2.7", 1, &ss, &sl);
	peer.client = (struct sockaddr *)&ss;
	peer.trusted = data[0] & 1;
	peer.proxy = (data[0] & 0x20) != 0;
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
	none.on_message_begin = on_begin;
	none.on_header_field = on_field;
	none.on_header_value = on_value;
	none.on_headers_complete = on_headers;
	memset(&k, 0, sizeof(k));
	k.trusted = peer.trusted;
	k.proxy = peer.proxy;
	k.forwarded = c.forwarded;
	http_parser_init(&check, HTTP_REQUEST);
	check.data = &k;
	n = http_parser_execute(&check, &none, (const char *)r.up, r.up_len);
	CHECK(HTTP_PARSER_ERRNO(&check) == HPE_OK || (check.upgrade && n < r.up_len) ||
	      r.up_len == UP_MAX);
	return 0;
}
