/*
 * http.h: mode http, a careful HTTP/1.1 reverse proxy on top of the relay.
 *
 * Two parts. http_rewrite_head is pure: it checks one request head for
 * smuggling (Content-Length with Transfer-Encoding, differing lengths, a
 * coding other than plain "chunked") and writes the head the upstream
 * gets: hop-by-hop headers gone, X-Forwarded-For / -Proto / -Host,
 * X-Real-IP and Forwarded set as configured. An http_stream follows one
 * connection request by request: it rewrites each head, streams bodies
 * (Content-Length and chunked, framed by gatekeeper's own strict reader:
 * http-parser only judges heads and counts responses) without holding them,
 * watches the responses (so a refusal never cuts into an earlier response,
 * and a 101 turns the connection into a raw relay), and applies the limits.
 */
#ifndef GK_HTTP_H
#define GK_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "reason.h"
#include "sniff_http.h"

struct config_http;

/* What the rewrite needs to know about the connection. */
struct http_peer {
	const struct sockaddr *client; /* the client: TCP peer, or what PROXY said */
	int trusted;		       /* the TCP peer may set forwarding headers */
	/*
	 * A forward proxy's client (mode connect, absolute-form requests):
	 * its requests go on with their own headers and none of ours, less
	 * Proxy-Authorization, and a CONNECT among them is misdirected.
	 */
	int proxy;
};

/* The most bytes of Upgrade tokens a request may offer. */
#define HTTP_UPGRADE_MAX 128

/* What http_rewrite_head learned about the request. */
struct http_head {
	int head_method;		/* HEAD: its response has no body */
	int upgrade;			/* Connection: upgrade with an Upgrade header */
	char offered[HTTP_UPGRADE_MAX]; /* upgrade: the protocols offered, lower case, comma-joined
					 */
	int wants_close;		/* the client ends the connection after this request */
	int has_body;			/* Content-Length > 0 or chunked */
	int chunked;			/* Transfer-Encoding: chunked */
	uint64_t content_length;
};

/* Room http_rewrite_head may need beyond the head itself. */
#define HTTP_REWRITE_EXTRA 1024

/*
 * http_rewrite_head checks the complete request head buf[0..req->head_len)
 * (already accepted by sniff_http_request, which filled req) and, when out
 * is not NULL, writes the head to send upstream into out, which must hold
 * 2 * req->head_len + HTTP_REWRITE_EXTRA bytes; *out_len gets its length.
 * last adds "Connection: close" (the connection's last request). Returns
 * REASON_NONE, or the refusal reason: REASON_SMUGGLING (ambiguous framing,
 * a Connection header naming a header gatekeeper frames, routes or writes
 * on, a framing header spelled with '_'), REASON_BAD_METHOD (CONNECT),
 * REASON_MALFORMED or REASON_TOO_LARGE. An Upgrade to HTTP/2 (h2c) is
 * dropped: the request goes on as HTTP/1.1.
 */
enum reason http_rewrite_head(const uint8_t *buf, const struct sniff_http_request *req,
			      const struct config_http *conf, const struct http_peer *peer,
			      int last, struct http_head *info, uint8_t *out, size_t *out_len);

/*
 * http_refusal writes the short response for a refusal reason (the HTTP
 * columns of its row in reason.c) into buf; proxy picks the wording of a
 * forward proxy (mode connect) over a reverse proxy's. Returns its length,
 * or 0 when the reason has no HTTP response (the connection just closes),
 * for REASON_NONE, or when buf is too small.
 */
size_t http_refusal(enum reason reason, int proxy, char *buf, size_t len);

/* What an http_stream asks of the session around it. */
struct http_ops {
	/* Send bytes towards side "to" (0 client, 1 upstream). Returns 0 or -1. */
	int (*send)(void *arg, int to, const void *data, size_t len);
	/*
	 * May this request (a later one on the connection) go to the
	 * connection's upstream? REASON_NONE, or the refusal reason:
	 * REASON_MISDIRECTED, REASON_NO_ROUTE, REASON_NO_NAME, ...
	 */
	enum reason (*admit)(void *arg, const struct sniff_http_request *req, const uint8_t *buf);
	/* End the connection with reason once what was sent to the client is out. */
	void (*end)(void *arg, enum reason reason);
	/* A 101 switched protocols: relay raw from now on. */
	void (*raw)(void *arg);
	/* A new deadline started (http_stream_deadline changed). */
	void (*rearm)(void *arg);
};

struct http_stream;

/*
 * http_stream_new starts following a connection whose first request head
 * has been read (nothing of it sent yet). The stream copies peer. Returns
 * NULL when out of memory.
 */
struct http_stream *http_stream_new(const struct config_http *conf, const struct http_peer *peer,
				    const struct http_ops *ops, void *arg,
				    const struct timeval *now);

void http_stream_free(struct http_stream *h);

/*
 * The same in storage the caller owns (a session pool): http_stream_init
 * builds a stream in mem, http_stream_size() bytes aligned like malloc's,
 * and returns it (NULL when mem is NULL). http_stream_release frees what
 * the stream holds, not mem.
 */
size_t http_stream_size(void);
struct http_stream *http_stream_init(void *mem, const struct config_http *conf,
				     const struct http_peer *peer, const struct http_ops *ops,
				     void *arg, const struct timeval *now);
void http_stream_release(struct http_stream *h);

/*
 * http_stream_bytes takes bytes read from side "from" (0 client, 1
 * upstream), sends what should go on through ops->send, and may call
 * ops->end or ops->raw. Returns 0 (it never ends the connection by itself).
 */
int http_stream_bytes(struct http_stream *h, int from, const uint8_t *data, size_t len,
		      const struct timeval *now);

/* http_stream_may_read: 0 while bytes from side must wait in the kernel. */
int http_stream_may_read(const struct http_stream *h, int from);

/*
 * http_stream_deadline: 1 with *ms the milliseconds until the header or
 * keep-alive timeout expires (<= 0: expired), 0 when none runs.
 */
int http_stream_deadline(const struct http_stream *h, const struct timeval *now, int64_t *ms);

/* http_stream_expire acts on an expired deadline: 408, or closing an idle keep-alive. */
void http_stream_expire(struct http_stream *h, const struct timeval *now);

/* Requests forwarded so far. */
uint64_t http_stream_requests(const struct http_stream *h);

#endif
