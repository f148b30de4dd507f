/*
 * test_http.c: unit tests for mode http's head rewriting and its stream.
 * Heads are written one line per string. The rewrite must keep every
 * header it does not own byte for byte and in order, drop hop-by-hop
 * headers, set the forwarding headers as configured, and refuse framing
 * that two parsers could read two ways. The stream tests drive an
 * http_stream with recorded callbacks: pipelined requests, bodies,
 * refusals after the responses owed, and the switch to raw on 101.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "config.h"
#include "http.h"
#include "net.h"

static struct config_http
defaults(void)
{
	struct config_http c;

	memset(&c, 0, sizeof(c));
	c.x_forwarded_for = c.x_forwarded_proto = c.x_forwarded_host = c.x_real_ip = 1;
	c.max_header_size = 16 * 1024;
	c.header_timeout = 10000;
	c.keepalive_timeout = 75000;
	c.max_requests = 1000;
	return c;
}

static struct sockaddr_storage client_ss;

static struct http_peer
peer(const char *ip, int trusted)
{
	struct http_peer p;
	socklen_t len;

	assert_int_equal(net_parse_ip(ip, 5555, &client_ss, &len), 0);
	memset(&p, 0, sizeof(p));
	p.client = (struct sockaddr *)&client_ss;
	p.trusted = trusted;
	return p;
}

static uint8_t out[2 * 4096 + HTTP_REWRITE_EXTRA];

/*
 * rewrite runs the head through sniff_http and http_rewrite_head. Returns
 * the refusal reason's name, or NULL with the new head NUL-terminated in out.
 */
static const char *
rewrite(const char *head, const struct config_http *c, const struct http_peer *p, int last,
	struct http_head *info)
{
	struct sniff_http_request req;
	enum parse_result r = sniff_http_request((const uint8_t *)head, strlen(head), &req);
	size_t len = 0;
	enum reason why;

	assert_true(r == PARSE_OK || r == PARSE_NOT_FOUND);
	assert_true(req.head_len == strlen(head));
	why = http_rewrite_head((const uint8_t *)head, &req, c, p, last, info, out, &len);
	if (why == REASON_NONE) {
		assert_true(len < sizeof(out));
		out[len] = '\0';
		return NULL;
	}
	return reason_name(why);
}

static void
test_untrusted_client_gets_its_own_address(void **state)
{
	struct config_http c = defaults();
	struct http_peer p = peer("192.0.2.7", 0);
	struct http_head info;

	(void)state;
	assert_null(rewrite("GET /a?b=1 HTTP/1.1\r\n"
			    "Host: app.example:8080\r\n"
			    "User-Agent: t/1\r\n"
			    "X-Forwarded-For: 10.9.9.9\r\n" /* forged: replaced */
			    "x-forwarded-for: 10.8.8.8\r\n" /* any case */
			    "X-Real-IP: 10.9.9.9\r\n"	    /* forged: replaced */
			    "X-Forwarded-Proto: https\r\n"  /* forged: replaced */
			    "Accept: */*\r\n"
			    "\r\n",
			    &c, &p, 0, &info));
	assert_string_equal((char *)out, "GET /a?b=1 HTTP/1.1\r\n"
					 "Host: app.example:8080\r\n"
					 "User-Agent: t/1\r\n"
					 "Accept: */*\r\n"
					 "X-Forwarded-For: 192.0.2.7\r\n"
					 "X-Forwarded-Proto: http\r\n"
					 "X-Forwarded-Host: app.example:8080\r\n"
					 "X-Real-IP: 192.0.2.7\r\n"
					 "\r\n");
	assert_false(info.wants_close);
	assert_false(info.upgrade);
	assert_false(info.has_body);
}

static void
test_trusted_peer_values_are_kept_and_extended(void **state)
{
	struct config_http c = defaults();
	struct http_peer p = peer("2001:db8::1", 1);
	struct http_head info;

	(void)state;
	c.forwarded = 1;
	assert_null(rewrite("POST /x HTTP/1.1\r\n"
			    "Host: a.test\r\n"
			    "X-Forwarded-For: 198.51.100.1, 10.0.0.1\r\n"
			    "X-Forwarded-For: 10.0.0.2\r\n"
			    "X-Forwarded-Proto: https\r\n"
			    "Forwarded: for=198.51.100.1\r\n"
			    "Content-Length: 3\r\n"
			    "\r\n",
			    &c, &p, 0, &info));
	assert_string_equal(
	    (char *)out,
	    "POST /x HTTP/1.1\r\n"
	    "Host: a.test\r\n"
	    "X-Forwarded-Proto: https\r\n"
	    "Content-Length: 3\r\n"
	    "X-Forwarded-For: 198.51.100.1, 10.0.0.1, 10.0.0.2, 2001:db8::1\r\n"
	    "X-Forwarded-Host: a.test\r\n"
	    "X-Real-IP: 2001:db8::1\r\n"
	    "Forwarded: for=198.51.100.1, for=\"[2001:db8::1]\";host=a.test;proto=http\r\n"
	    "\r\n");
	assert_true(info.has_body);
}

static void
test_switches_off_leave_headers_alone(void **state)
{
	struct config_http c = defaults();
	struct http_peer p = peer("192.0.2.7", 1);
	struct http_head info;
	const char *head = "GET / HTTP/1.1\r\n"
			   "Host: a.test\r\n"
			   "X-Forwarded-For: 10.9.9.9\r\n"
			   "X-Real-IP: 10.9.9.9\r\n"
			   "X-Forwarded-Proto: https\r\n"
			   "X-Forwarded-Host: b.test\r\n"
			   "\r\n";

	(void)state;
	c.x_forwarded_for = c.x_forwarded_proto = c.x_forwarded_host = c.x_real_ip = 0;
	/* a trusted peer's: as they are */
	assert_null(rewrite(head, &c, &p, 0, &info));
	assert_string_equal((char *)out, head);
	/* an untrusted peer's: a claim the backend would take for ours, removed */
	p.trusted = 0;
	assert_null(rewrite(head, &c, &p, 0, &info));
	assert_string_equal((char *)out, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
}

/*
 * A Connection header may not name a header gatekeeper framed, routed or
 * rewrote the request on: removing it afterwards would hand the upstream a
 * different request (a POST with no length, its body the next request).
 */
static void
test_connection_may_not_name_what_gatekeeper_reads(void **state)
{
	static const char *const names[] = {
	    "content-length",  "Content-Length",    "transfer-encoding", "host",      "HOST",
	    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",	 "x-real-ip", "forwarded",
	    "content_length",  "Transfer_Encoding", "X_Forwarded_For",	 "x-real_ip"};
	static const char *const lists[][2] = {
	    {"", ""},	      {"close, ", ""}, {"", ", keep-alive"},
	    {"foo,", ",bar"}, {" ", " "},      {"keep-alive\r\nConnection: ", ""}};
	struct config_http c = defaults();
	struct http_peer p = peer("192.0.2.7", 1);
	struct http_head info;
	char head[512], conn[128];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		for (size_t j = 0; j < sizeof(lists) / sizeof(lists[0]); j++) {
			snprintf(conn, sizeof(conn), "%s%s%s", lists[j][0], names[i], lists[j][1]);
			snprintf(head, sizeof(head),
				 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: "
				 "%s\r\n\r\n",
				 conn);
			if (rewrite(head, &c, &p, 0, &info) == NULL ||
			    strcmp(rewrite(head, &c, &p, 0, &info), "smuggling") != 0)
				fail_msg("Connection: %s was not refused", conn);
		}
	}
	/* other names are hop-by-hop as ever */
	assert_null(rewrite("GET / HTTP/1.1\r\nHost: a\r\nConnection: x-hostname, hosts\r\n\r\n",
			    &c, &p, 0, &info));
}

/* '_' for '-': CGI, WSGI and PHP read X_Forwarded_For as X-Forwarded-For. */
static void
test_underscore_spellings(void **state)
{
	static const char *const framing[] = {"Content_Length: 3", "content_length: 3",
					      "Transfer_Encoding: chunked"};
	struct config_http c = defaults();
	struct http_peer p = peer("192.0.2.7", 1); /* even from a trusted peer */
	struct http_head info;
	char head[256];

	(void)state;
	for (size_t i = 0; i < sizeof(framing) / sizeof(framing[0]); i++) {
		snprintf(head, sizeof(head), "POST / HTTP/1.1\r\nHost: a\r\n%s\r\n\r\n",
			 framing[i]);
		assert_string_equal(rewrite(head, &c, &p, 0, &info), "smuggling");
	}
	c.x_forwarded_for = c.x_forwarded_proto = c.x_forwarded_host = c.x_real_ip = 0;
	assert_null(rewrite("GET / HTTP/1.1\r\nHost: a\r\n"
			    "X_Forwarded_For: 6.6.6.6\r\n"
			    "X-Real_IP: 6.6.6.6\r\n"
			    "x_forwarded_host: evil\r\n"
			    "X-Forwarded_Proto: https\r\n"
			    "X_Forwarded_Port: 1\r\n"
			    "X-Forwarded-Port: 2\r\n"
			    "X_Kept: 1\r\n"
			    "\r\n",
			    &c, &p, 0, &info));
	assert_string_equal(
	    (char *)out, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Port: 2\r\nX_Kept: 1\r\n\r\n");
	/* an untrusted peer's other X-Forwarded-* and client-address claims go as well */
	p.trusted = 0;
	assert_null(
	    rewrite("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Port: 2\r\n"
		    "X-Forwarded-Server: s\r\nX-Forwarded: for=6.6.6.6\r\nClient-IP: 6.6.6.6\r\n"
		    "True-Client-IP: 6.6.6.6\r\nX-Client-IP: 6.6.6.6\r\n"
		    "CF-Connecting-IP: 6.6.6.6\r\nFastly-Client-IP: 6.6.6.6\r\n"
		    "X-Cluster-Client-IP: 6.6.6.6\r\nX-Original-Forwarded-For: 6.6.6.6\r\n"
		    "True_Client_IP: 6.6.6.6\r\n\r\n",
		    &c, &p, 0, &info));
	assert_string_equal((char *)out, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
}

/* After a 101 to h2c the upstream would read HTTP/2 streams nobody checked. */
static void
test_h2c_is_never_forwarded(void **state)
{
	struct config_http c = defaults();
	struct http_peer p = peer("192.0.2.7", 0);
	struct http_head info;

	(void)state;
	c.x_forwarded_for = c.x_forwarded_proto = c.x_forwarded_host = c.x_real_ip = 0;
	assert_null(rewrite("GET / HTTP/1.1\r\nHost: a\r\n"
			    "Connection: Upgrade, HTTP2-Settings\r\n"
			    "Upgrade: h2c\r\n"
			    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
			    "\r\n",
			    &c, &p, 0, &info));
	assert_false(info.upgrade);
	assert_string_equal((char *)out, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_null(rewrite("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
			    "Upgrade: H2C, h2\r\n\r\n",
			    &c, &p, 0, &info));
	assert_false(info.upgrade);
	assert_string_equal((char *)out, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	/* among others, only h2c goes */
	assert_null(rewrite("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
			    "Upgrade: h2c, websocket\r\n\r\n",
			    &c, &p, 0, &info));
	assert_true(info.upgrade);
	assert_string_equal((char *)out, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
					 "Connection: upgrade\r\n\r\n");
}

/* A forward proxy's request goes on with the client's headers, none of ours, less its credentials.
 */
static void
test_forward_proxy_rewrite(void **state)
{
	struct config_http c = defaults();
	struct http_peer p = peer("192.0.2.7", 0);
	struct http_head info;

	(void)state;
	c.forwarded = 1;
	p.proxy = 1;
	assert_null(rewrite("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n"
			    "Proxy-Authorization: Basic dTpw\r\n"
			    "Proxy-Connection: keep-alive\r\n"
			    "Proxy_Authorization: Basic dTpw\r\n"
			    "X-Forwarded-For: 1.1.1.1\r\n"
			    "Accept: */*\r\n\r\n",
			    &c, &p, 0, &info));
	assert_string_equal((char *)out, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n"
					 "X-Forwarded-For: 1.1.1.1\r\nAccept: */*\r\n\r\n");
	/* the framing rules are the same */
	assert_string_equal(rewrite("POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\n"
				    "Content-Length: 5\r\nConnection: content-length\r\n\r\n",
				    &c, &p, 0, &info),
			    "smuggling");
	/* a reverse proxy passes Proxy-Authorization on, as before */
	p.proxy = 0;
	c = defaults();
	c.x_forwarded_for = c.x_forwarded_proto = c.x_forwarded_host = c.x_real_ip = 0;
	assert_null(rewrite("GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic dTpw\r\n\r\n",
			    &c, &p, 0, &info));
	assert_non_null(strstr((char *)out, "Proxy-Authorization: Basic dTpw\r\n"));
}

static void
test_hop_by_hop_headers_are_dropped(void **state)
{
	struct config_http c = defaults();
	struct http_peer p = peer("192.0.2.7", 0);
	struct http_head info;

	(void)state;
	c.x_forwarded_for = c.x_forwarded_proto = c.x_forwarded_host = c.x_real_ip = 0;
	assert_null(rewrite("GET / HTTP/1.1\r\n"
			    "Host: a.test\r\n"
			    "Connection: keep-alive, X-Secret, foo\r\n"
			    "X-Secret: s\r\n" /* named by Connection */
			    "Foo: bar\r\n"    /* named by Connection, any case */
			    "Keep-Alive: timeout=5\r\n"
			    "Proxy-Connection: keep-alive\r\n"
			    "TE: trailers\r\n"
			    "Upgrade: h2c\r\n" /* not an upgrade request: dropped */
			    "X-Kept: 1\r\n"
			    "\r\n",
			    &c, &p, 0, &info));
	assert_string_equal((char *)out, "GET / HTTP/1.1\r\nHost: a.test\r\nX-Kept: 1\r\n\r\n");
	assert_false(info.upgrade);
}

static void
test_connection_header_says_what_is_needed(void **state)
{
	struct config_http c = defaults();
	struct http_peer p = peer("192.0.2.7", 0);
	struct http_head info;

	(void)state;
	c.x_forwarded_for = c.x_forwarded_proto = c.x_forwarded_host = c.x_real_ip = 0;
	/* the client closes */
	assert_null(
	    rewrite("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &c, &p, 0, &info));
	assert_string_equal((char *)out, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	assert_true(info.wants_close);
	/* HTTP/1.0 closes unless it asks for keep-alive */
	assert_null(rewrite("GET / HTTP/1.0\r\nHost: a\r\n\r\n", &c, &p, 0, &info));
	assert_string_equal((char *)out, "GET / HTTP/1.0\r\nHost: a\r\nConnection: close\r\n\r\n");
	assert_true(info.wants_close);
	assert_null(rewrite("GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n", &c, &p,
			    0, &info));
	assert_string_equal((char *)out,
			    "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
	assert_false(info.wants_close);
	/* the connection's last request */
	assert_null(rewrite("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &c, &p, 1, &info));
	assert_string_equal((char *)out, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	/* an upgrade keeps Upgrade and says so */
	assert_null(rewrite("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
			    &c, &p, 0, &info));
	assert_string_equal(
	    (char *)out,
	    "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
	    "Connection: upgrade\r\n\r\n");
	assert_true(info.upgrade);
	/* HEAD is noted: its response has no body */
	assert_null(rewrite("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", &c, &p, 0, &info));
	assert_true(info.head_method);
}

static void
test_framing_that_reads_two_ways_is_refused(void **state)
{
	static const char *const smuggling[] = {
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n",
	    "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
	};
	struct config_http c = defaults();
	struct http_peer p = peer("192.0.2.7", 0);
	struct http_head info;

	(void)state;
	for (size_t i = 0; i < sizeof(smuggling) / sizeof(smuggling[0]); i++) {
		const char *why = rewrite(smuggling[i], &c, &p, 0, &info);
		if (why == NULL || strcmp(why, "smuggling") != 0)
			fail_msg("case %zu accepted: %s", i, smuggling[i]);
	}
	/* the same length twice is one length */
	assert_null(rewrite("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", &c, &p, 0,
			    &info));
	assert_true(info.has_body);
	assert_null(rewrite("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", &c,
			    &p, 0, &info));
	assert_true(info.has_body);
	/* CONNECT is not for a reverse proxy */
	assert_string_equal(
	    rewrite("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", &c, &p, 0, &info),
	    "bad_method");
}

static void
test_refusal_texts(void **state)
{
	char buf[512];
	size_t n;

	(void)state;
	n = http_refusal(REASON_MISDIRECTED, 0, buf, sizeof(buf));
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "HTTP/1.1 421 Misdirected Request\r\n"));
	assert_non_null(strstr(buf, "X-Gatekeeper-Reason: misdirected\r\n"));
	assert_non_null(strstr(buf, "Connection: close\r\n"));
	/* Content-Length matches the body */
	assert_int_equal(strlen(strstr(buf, "\r\n\r\n") + 4),
			 (size_t)atoi(strstr(buf, "Content-Length: ") + 16));
	/* CONNECT's 405 differs between a forward and a reverse proxy */
	n = http_refusal(REASON_BAD_METHOD, 1, buf, sizeof(buf));
	buf[n] = '\0';
	assert_non_null(strstr(buf, "Allow: CONNECT\r\n"));
	n = http_refusal(REASON_BAD_METHOD, 0, buf, sizeof(buf));
	buf[n] = '\0';
	assert_null(strstr(buf, "Allow:"));
	assert_int_equal(http_refusal(REASON_KEEPALIVE_TIMEOUT, 0, buf, sizeof(buf)), 0);
	assert_int_equal(http_refusal(REASON_NONE, 0, buf, sizeof(buf)), 0);
}

/* ---- the stream, with recorded callbacks ---- */

struct rec {
	char sent[2][8192]; /* [0] to the client, [1] to the upstream */
	size_t sent_len[2];
	const char *ended;
	int raw, misdirect;
};

static int
rec_send(void *arg, int to, const void *data, size_t len)
{
	struct rec *r = arg;

	assert_true(r->sent_len[to] + len < sizeof(r->sent[to]));
	memcpy(r->sent[to] + r->sent_len[to], data, len);
	r->sent_len[to] += len;
	r->sent[to][r->sent_len[to]] = '\0';
	return 0;
}

static enum reason
rec_admit(void *arg, const struct sniff_http_request *req, const uint8_t *buf)
{
	struct rec *r = arg;

	(void)buf;
	return r->misdirect && strcmp(req->host, "b.test") == 0 ? REASON_MISDIRECTED : REASON_NONE;
}

static void
rec_end(void *arg, enum reason reason)
{
	((struct rec *)arg)->ended = reason_name(reason);
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

static const struct http_ops rec_ops = {rec_send, rec_admit, rec_end, rec_raw, rec_rearm};

static struct http_stream *
stream(struct rec *r, struct config_http *c)
{
	struct http_peer p = peer("192.0.2.7", 0);
	struct timeval now = {1000, 0};

	memset(r, 0, sizeof(*r));
	c->x_forwarded_proto = c->x_forwarded_host = c->x_real_ip = 0;
	return http_stream_new(c, &p, &rec_ops, r, &now);
}

static void
feed(struct http_stream *h, int from, const char *s)
{
	struct timeval now = {1000, 0};

	http_stream_bytes(h, from, (const uint8_t *)s, strlen(s), &now);
}

static void
test_stream_pipelined_requests_each_rewritten(void **state)
{
	struct config_http c = defaults();
	struct rec r;
	struct http_stream *h = stream(&r, &c);

	(void)state;
	/* three requests in one read, the second with a chunked body, cut oddly */
	feed(h, 0,
	     "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\n"
	     "Transfer-Encoding: chunked\r\n\r\n5\r\nhel");
	feed(h, 0, "lo\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHo");
	feed(h, 0, "st: a\r\n\r\n");
	assert_string_equal(r.sent[1],
			    "GET /1 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n"
			    "POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
			    "X-Forwarded-For: 192.0.2.7\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
			    "GET /3 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n");
	assert_int_equal(http_stream_requests(h), 3);
	assert_null(r.ended);
	http_stream_free(h);
}

static void
test_stream_refusal_waits_for_the_responses_owed(void **state)
{
	struct config_http c = defaults();
	struct rec r;
	struct http_stream *h = stream(&r, &c);

	(void)state;
	r.misdirect = 1;
	feed(h, 0,
	     "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b.test\r\n\r\n"
	     "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(http_stream_requests(h), 1); /* /2 and /3 never went up */
	assert_null(r.ended);
	assert_int_equal(r.sent_len[0], 0);
	assert_false(http_stream_may_read(h, 0));
	feed(h, 1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	assert_string_equal(r.ended, "misdirected");
	assert_true(strncmp(r.sent[0],
			    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 421 ",
			    48) == 0);
	http_stream_free(h);

	/* two answers owed, arriving in one read */
	h = stream(&r, &c);
	r.misdirect = 1;
	feed(h, 0,
	     "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
	     "GET /3 HTTP/1.1\r\nHost: b.test\r\n\r\n");
	assert_int_equal(http_stream_requests(h), 2);
	feed(h, 1,
	     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
	     "Content-Length: 2\r\n\r\nok");
	assert_string_equal(r.ended, "misdirected");
	assert_true(strncmp(r.sent[0],
			    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 421 ",
			    90) == 0);
	http_stream_free(h);
}

static void
test_stream_head_response_and_interim_responses(void **state)
{
	struct config_http c = defaults();
	struct rec r;
	struct http_stream *h = stream(&r, &c);

	(void)state;
	r.misdirect = 1;
	feed(h, 0, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: b.test\r\n\r\n");
	/* a HEAD answer announces a body it does not carry; a 100 is not the answer */
	feed(h, 1, "HTTP/1.1 100 Continue\r\n\r\n");
	assert_null(r.ended);
	feed(h, 1, "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n");
	assert_string_equal(r.ended, "misdirected");
	http_stream_free(h);
}

static void
test_stream_upgrade_goes_raw_on_101_only(void **state)
{
	struct config_http c = defaults();
	struct rec r;
	struct http_stream *h = stream(&r, &c);
	const char *up =
	    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";

	(void)state;
	/* refused by the upstream: the bytes sent meanwhile are the next request */
	feed(h, 0, up);
	feed(h, 0, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(http_stream_requests(h), 1);
	assert_false(http_stream_may_read(h, 0));
	feed(h, 1, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(http_stream_requests(h), 2);
	assert_false(r.raw);
	feed(h, 1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	/* accepted: raw both ways, early bytes included */
	feed(h, 0, up);
	feed(h, 0,
	     "\x81\x05"
	     "early");
	feed(h, 1,
	     "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
	     "\x81\x02hi");
	assert_true(r.raw);
	assert_non_null(strstr(r.sent[1], "\x81\x05"
					  "early"));
	assert_non_null(strstr(r.sent[0], "\r\n\r\n\x81\x02hi"));
	feed(h, 0, "anything at all");
	assert_non_null(strstr(r.sent[1], "anything at all"));
	assert_null(r.ended);
	http_stream_free(h);
}

/*
 * switched_after runs request, then the upstream's reply in its pieces (NULL
 * ends them), through a fresh stream; returns it with r recorded. The
 * client's next bytes ("later") are fed too: they must never go up raw.
 */
static struct http_stream *
switched_after(struct rec *r, struct config_http *c, const char *request, const char *const *reply)
{
	struct http_stream *h = stream(r, c);

	feed(h, 0, request);
	for (size_t i = 0; reply[i] != NULL; i++)
		feed(h, 1, reply[i]);
	if (http_stream_may_read(h, 0))
		feed(h, 0, "later");
	return h;
}

/* A 101 answers only the upgrade request waited on; any other is a broken upstream. */
static void
test_stream_unasked_101_is_bad_response(void **state)
{
	static const char ws[] =
	    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
	static const struct {
		const char *why, *request, *reply[4];
	} bad[] = {
	    {"a plain request",
	     "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	     {"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
	      "\x00\x00\x00\x04"}},
	    /* h2c stripped: the request asked for nothing */
	    {"only h2c asked",
	     "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
	     {"HTTP/1.1 101 Switching Protocols\r\n", "Upgrade: h2c\r\n\r\n"}},
	    {"a protocol not offered",
	     ws,
	     {"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"}},
	    {"no protocol named", ws, {"HTTP/1.1 101 Switching Protocols\r\n\r\n"}},
	    /* the first of two requests, the second the upgrade one */
	    {"an earlier request",
	     "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
	     "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
	     {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"}},
	};
	static const char *const offered[] = {"HTTP/1.1 101 Switching Protocols\r\nUpg",
					      "rade: webso", "cket\r\n\r\n", NULL};
	static const char *const surplus[] = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
					      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
					      NULL};
	struct config_http c = defaults();
	struct rec r;
	struct http_stream *h;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = switched_after(&r, &c, bad[i].request, bad[i].reply);
		if (r.raw || r.ended == NULL || strcmp(r.ended, "bad_response") != 0)
			fail_msg("a 101 to %s: raw %d, ended %s", bad[i].why, r.raw,
				 r.ended ? r.ended : "-");
		assert_null(strstr(r.sent[1], "later"));
		/* A 101 that came whole is replaced; one begun in an earlier read only closes. */
		if (bad[i].reply[1] == NULL) {
			assert_non_null(strstr(r.sent[0], "HTTP/1.1 502 Bad Gateway\r\n"));
			assert_null(strstr(r.sent[0], "101"));
		}
		http_stream_free(h);
	}

	/* the protocol offered, in any case, split across reads: switched */
	c = defaults();
	h = switched_after(&r, &c,
			   "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo/2, "
			   "WebSocket\r\n\r\n",
			   offered);
	assert_true(r.raw);
	assert_null(r.ended);
	http_stream_free(h);

	/* a response nobody asked for: no more requests, and the client may still be read */
	h = switched_after(&r, &c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", surplus);
	assert_true(http_stream_may_read(h, 0));
	feed(h, 0, "GET /later HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_null(strstr(r.sent[1], "/later"));
	http_stream_free(h);
}

static void
test_stream_limits(void **state)
{
	struct config_http c = defaults();
	struct rec r;
	struct http_stream *h;
	char big[2048];
	struct timeval later = {1000 + 11, 0};

	(void)state;
	/* max_requests: the last request says close; later bytes never go up */
	c.max_requests = 2;
	h = stream(&r, &c);
	feed(h, 0,
	     "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
	     "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(http_stream_requests(h), 2);
	assert_non_null(strstr(r.sent[1],
			       "GET /2 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\n"
			       "Connection: close\r\n\r\n"));
	assert_null(strstr(r.sent[1], "/3"));
	http_stream_free(h);

	/* a head over max_header_size: 431 */
	c = defaults();
	c.max_header_size = 1024;
	h = stream(&r, &c);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	feed(h, 0, "GET / HTTP/1.1\r\nX-Big: ");
	feed(h, 0, big);
	assert_string_equal(r.ended, "too_large");
	assert_non_null(strstr(r.sent[0], " 431 "));
	http_stream_free(h);

	/* a head dribbled past header_timeout: 408 */
	c = defaults();
	h = stream(&r, &c);
	feed(h, 0, "GET / HTTP/1.1\r\nHo");
	http_stream_expire(h, &later);
	assert_string_equal(r.ended, "header_timeout");
	assert_non_null(strstr(r.sent[0], " 408 "));
	http_stream_free(h);

	/* a bad chunk size: closed, nothing sent to the client */
	c = defaults();
	h = stream(&r, &c);
	feed(h, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
	assert_string_equal(r.ended, "malformed_body");
	assert_int_equal(r.sent_len[0], 0);
	http_stream_free(h);
}

static void
test_stream_chunk_framing_is_strict(void **state)
{
	static const char *const bad[] = {
	    "5\r\nhelloXX0\r\n\r\n",		     /* data runs on without its CRLF */
	    "5\nhello\r\n0\r\n\r\n",		     /* bare LF after the size */
	    "-5\r\nhello\r\n0\r\n\r\n",		     /* not hex */
	    " 5\r\nhello\r\n0\r\n\r\n",		     /* space before the size */
	    "5 \r\nhello\r\n0\r\n\r\n",		     /* space after it */
	    "\r\nhello\r\n0\r\n\r\n",		     /* no size */
	    "1000000000000000\r\n",		     /* 16 hex digits */
	    "0\r\nX: 1\n\r\n",			     /* bare LF in a trailer */
	    "0\r\n folded\r\n\r\n",		     /* obs-fold in the trailers */
	    "0\r\n\r\r",			     /* the end is CRLF */
	    "0\r\nhello\r\n\r\n",		     /* a trailer line that is not a field */
	    "0\r\nA B: 1\r\n\r\n",		     /* a space in a trailer's name */
	    "0\r\nContent-Length: 3\r\n\r\n",	     /* framing fields never come as trailers */
	    "0\r\nContent_Length: 3\r\n\r\n",	     /* nor spelled with '_' */
	    "0\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", /* nor forwarding claims */
	    "0\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n",
	    "0\r\nX-Forwarded-Anything-Long-Name: 1\r\n\r\n",
	    "0\r\nForwarded: for=6.6.6.6\r\n\r\n",
	    "0\r\nX-Real_IP: 6.6.6.6\r\n\r\n",
	    "0\r\nProxy-Authorization: Basic eA==\r\n\r\n",
	    "0\r\ntransfer-encoding: chunked\r\n\r\n",
	};
	static const char *const good[] = {
	    "5;name=val\r\nhello\r\n0\r\n\r\n",
	    "A\r\n0123456789\r\n00\r\nTrailer-A: 1\r\nB: x y\r\n\r\n",
	};
	struct config_http c = defaults();
	struct rec r;
	struct http_stream *h;
	char buf[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = stream(&r, &c);
		feed(h, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
		feed(h, 0, bad[i]);
		if (r.ended == NULL || strcmp(r.ended, "malformed_body") != 0)
			fail_msg("bad body %zu accepted", i);
		assert_int_equal(r.sent_len[0], 0);
		http_stream_free(h);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		h = stream(&r, &c);
		/* byte by byte: the framing holds across any cut */
		feed(h, 0, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
		for (const char *p = good[i]; *p; p++) {
			buf[0] = *p;
			buf[1] = '\0';
			feed(h, 0, buf);
		}
		feed(h, 0, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
		assert_null(r.ended);
		assert_int_equal(http_stream_requests(h), 2);
		assert_non_null(strstr(r.sent[1], good[i]));
		http_stream_free(h);
	}
	/* a bare LF in a head is refused before the head ends */
	h = stream(&r, &c);
	feed(h, 0, "GET / HTTP/1.1\nHost");
	assert_string_equal(r.ended, "malformed");
	http_stream_free(h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_untrusted_client_gets_its_own_address),
	    cmocka_unit_test(test_trusted_peer_values_are_kept_and_extended),
	    cmocka_unit_test(test_switches_off_leave_headers_alone),
	    cmocka_unit_test(test_connection_may_not_name_what_gatekeeper_reads),
	    cmocka_unit_test(test_underscore_spellings),
	    cmocka_unit_test(test_h2c_is_never_forwarded),
	    cmocka_unit_test(test_forward_proxy_rewrite),
	    cmocka_unit_test(test_hop_by_hop_headers_are_dropped),
	    cmocka_unit_test(test_connection_header_says_what_is_needed),
	    cmocka_unit_test(test_framing_that_reads_two_ways_is_refused),
	    cmocka_unit_test(test_refusal_texts),
	    cmocka_unit_test(test_stream_pipelined_requests_each_rewritten),
	    cmocka_unit_test(test_stream_refusal_waits_for_the_responses_owed),
	    cmocka_unit_test(test_stream_head_response_and_interim_responses),
	    cmocka_unit_test(test_stream_upgrade_goes_raw_on_101_only),
	    cmocka_unit_test(test_stream_unasked_101_is_bad_response),
	    cmocka_unit_test(test_stream_limits),
	    cmocka_unit_test(test_stream_chunk_framing_is_strict),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
