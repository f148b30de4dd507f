/*
 * http.c: mode http. Each request head is checked and rewritten (pure
 * functions at the top), and an http_stream follows the connection:
 *
 *   client bytes:   HEAD (collecting a head, at most max_header_size)
 *                   -> checked, routed, rewritten, sent
 *                   -> BODY (body_read frames Content-Length and chunked
 *                      bodies, stricter than http-parser; the bytes go on
 *                      as they come)
 *                   -> HEAD again, or WAIT_101 after an upgrade request,
 *                      or DONE after the connection's last request
 *   upstream bytes: sent on unchanged, and fed to a response parser that
 *                   counts complete responses (HEAD and 1xx understood), so
 *                   a refusal of request N waits until responses 1..N-1 are
 *                   out, and a 101 turns the connection raw both ways.
 *
 * Refusals are never mixed into a response: a refused request is not
 * forwarded, nothing after it is read, and the refusal follows the last
 * response owed.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "http.h"
#include "net.h"

/* Requests forwarded and not yet answered, at most (then reading waits). */
#define HTTP_MAX_OUTSTANDING 64
/* Headers a Connection header may name for removal. */
#define HTTP_MAX_CONNECTION_TOKENS 32

enum header_kind {
	HDR_OTHER,
	HDR_HOST,
	HDR_CONTENT_LENGTH,
	HDR_TRANSFER_ENCODING,
	HDR_CONNECTION,
	HDR_KEEP_ALIVE,
	HDR_PROXY_CONNECTION,
	HDR_TE,
	HDR_UPGRADE,
	HDR_XFF,
	HDR_XFP,
	HDR_XFH,
	HDR_XRIP,
	HDR_FORWARDED,
	HDR_XF_OTHER,	  /* any other X-Forwarded-*: a client's claim like the rest */
	HDR_CLIENT_CLAIM, /* another header naming the client's address (Client-IP, ...) */
	HDR_PROXY_AUTHORIZATION,
};

static const struct {
	const char *name;
	enum header_kind kind;
} header_names[] = {
    {"host", HDR_HOST},
    {"content-length", HDR_CONTENT_LENGTH},
    {"transfer-encoding", HDR_TRANSFER_ENCODING},
    {"connection", HDR_CONNECTION},
    {"keep-alive", HDR_KEEP_ALIVE},
    {"proxy-connection", HDR_PROXY_CONNECTION},
    {"te", HDR_TE},
    {"upgrade", HDR_UPGRADE},
    {"x-forwarded-for", HDR_XFF},
    {"x-forwarded-proto", HDR_XFP},
    {"x-forwarded-host", HDR_XFH},
    {"x-real-ip", HDR_XRIP},
    {"forwarded", HDR_FORWARDED},
    {"proxy-authorization", HDR_PROXY_AUTHORIZATION},
    /* what CDNs and other proxies write, and frameworks read as the client */
    {"x-forwarded", HDR_CLIENT_CLAIM},
    {"client-ip", HDR_CLIENT_CLAIM},
    {"true-client-ip", HDR_CLIENT_CLAIM},
    {"x-client-ip", HDR_CLIENT_CLAIM},
    {"cf-connecting-ip", HDR_CLIENT_CLAIM},
    {"fastly-client-ip", HDR_CLIENT_CLAIM},
    {"x-cluster-client-ip", HDR_CLIENT_CLAIM},
    {"x-original-forwarded-for", HDR_CLIENT_CLAIM},
};

/* One header line of a head sniff_http accepted: "name:OWS value OWS". */
struct header {
	const uint8_t *line; /* the whole line, without its CRLF */
	size_t line_len;
	const uint8_t *name, *value;
	size_t name_len, value_len; /* value trimmed of OWS */
	enum header_kind kind;
	/*
	 * A name that reads as one of ours only with '_' taken for '-'
	 * (X_Forwarded_For): CGI, WSGI and PHP backends map both spellings
	 * to the same variable. HDR_OTHER when the name is not such a one.
	 */
	enum header_kind folded;
};

static int
ieq(const uint8_t *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen != blen)
		return 0;
	for (size_t i = 0; i < alen; i++)
		if (tolower(a[i]) != tolower((unsigned char)b[i]))
			return 0;
	return 1;
}

/* folds_to: a equals b when case is ignored and '_' is read as '-'. */
static int
folds_to(const uint8_t *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen != blen)
		return 0;
	for (size_t i = 0; i < alen; i++) {
		int c = a[i] == '_' ? '-' : tolower(a[i]);
		if (c != b[i])
			return 0;
	}
	return 1;
}

/* is_xf: "x-forwarded-" and what follows, with '_' read as '-'. */
static int
is_xf(const uint8_t *name, size_t len)
{
	return len >= 12 && folds_to(name, 12, "x-forwarded-");
}

/*
 * header_kind names a header, by its exact name (any case), and by the
 * name it folds to with '_' read as '-' (*folded, HDR_OTHER if none).
 */
static enum header_kind
header_kind(const uint8_t *name, size_t len, enum header_kind *folded)
{
	enum header_kind k = HDR_OTHER;
	int underscore = memchr(name, '_', len) != NULL;

	*folded = HDR_OTHER;
	for (size_t i = 0; i < sizeof(header_names) / sizeof(header_names[0]); i++) {
		if (!underscore && ieq(name, len, header_names[i].name))
			return header_names[i].kind;
		if (underscore && folds_to(name, len, header_names[i].name))
			k = header_names[i].kind;
	}
	if (k == HDR_OTHER && is_xf(name, len)) {
		if (!underscore)
			return HDR_XF_OTHER;
		k = HDR_XF_OTHER;
	}
	*folded = k;
	return HDR_OTHER;
}

static int
is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/*
 * next_header reads the header line at *pos (buf's head ends at end).
 * Returns 1 with h filled, 0 at the blank line that ends the head.
 */
static int
next_header(const uint8_t *buf, size_t end, size_t *pos, struct header *h)
{
	size_t p = *pos, eol = p, colon;

	while (eol + 1 < end && !(buf[eol] == '\r' && buf[eol + 1] == '\n'))
		eol++;
	if (eol == p)
		return 0;
	h->line = buf + p;
	h->line_len = eol - p;
	for (colon = p; colon < eol && buf[colon] != ':'; colon++)
		;
	h->name = buf + p;
	h->name_len = colon - p;
	p = colon + 1;
	while (p < eol && is_ows(buf[p]))
		p++;
	h->value = buf + p;
	h->value_len = eol - p;
	while (h->value_len > 0 && is_ows(h->value[h->value_len - 1]))
		h->value_len--;
	h->kind = header_kind(h->name, h->name_len, &h->folded);
	*pos = eol + 2;
	return 1;
}

/* A token of a comma-separated list, trimmed. */
struct token {
	const uint8_t *p;
	size_t len;
};

/* next_token reads the next element of a comma list; returns 0 when none is left. */
static int
next_token(const uint8_t *v, size_t len, size_t *pos, struct token *t)
{
	size_t p = *pos, e;

	while (p < len && (is_ows(v[p]) || v[p] == ','))
		p++;
	if (p >= len)
		return 0;
	for (e = p; e < len && v[e] != ','; e++)
		;
	t->p = v + p;
	t->len = e - p;
	while (t->len > 0 && is_ows(t->p[t->len - 1]))
		t->len--;
	*pos = e;
	return 1;
}

/* parse_length reads a Content-Length element: digits only, no overflow. */
static int
parse_length(const struct token *t, uint64_t *out)
{
	uint64_t v = 0;

	if (t->len == 0 || t->len > 18)
		return -1;
	for (size_t i = 0; i < t->len; i++) {
		if (t->p[i] < '0' || t->p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(t->p[i] - '0');
	}
	*out = v;
	return 0;
}

/* ---- writing the new head ---- */

struct out {
	uint8_t *p;
	size_t len, cap;
	int overflow;
};

static void
put(struct out *o, const void *data, size_t len)
{
	if (o->p == NULL)
		return;
	if (len > o->cap - o->len) {
		o->overflow = 1;
		return;
	}
	memcpy(o->p + o->len, data, len);
	o->len += len;
}

static void
puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* is_h2_token: an Upgrade token that would switch to HTTP/2 ("h2c"; "h2" is not one, but never pass
 * it). */
static int
is_h2_token(const struct token *t)
{
	return ieq(t->p, t->len, "h2c") || ieq(t->p, t->len, "h2");
}

/*
 * protected_token: may a Connection header not name this header? Removing
 * a header that gatekeeper framed the request on (Content-Length,
 * Transfer-Encoding), routed it on (Host) or writes itself (the
 * forwarding headers) would let the upstream read a request other than
 * the one checked: a body with no length is the next request, smuggled.
 */
static int
protected_token(const struct token *t)
{
	enum header_kind folded, k = header_kind(t->p, t->len, &folded);

	if (k == HDR_OTHER)
		k = folded;
	switch (k) {
	case HDR_HOST:
	case HDR_CONTENT_LENGTH:
	case HDR_TRANSFER_ENCODING:
	case HDR_XFF:
	case HDR_XFP:
	case HDR_XFH:
	case HDR_XRIP:
	case HDR_FORWARDED:
		return 1;
	default:
		return 0;
	}
}

/* Everything learned from the header lines, first pass. */
struct scan {
	int n_cl, n_te, chunked, conn_close, conn_keepalive, conn_upgrade, has_upgrade;
	uint64_t length;
	struct token listed[HTTP_MAX_CONNECTION_TOKENS]; /* headers Connection names */
	size_t n_listed;
	int has_xff, has_xfp, has_xfh, has_xrip, has_forwarded;
	const uint8_t *host; /* the Host header's value */
	size_t host_len;
	char offered[HTTP_UPGRADE_MAX]; /* the Upgrade tokens but HTTP/2's, lower case, comma-joined
					 */
};

/* scan_headers fills sc. Returns REASON_NONE, or REASON_SMUGGLING / REASON_MALFORMED. */
static enum reason
scan_headers(const uint8_t *buf, size_t head_len, size_t first, struct scan *sc)
{
	struct header h;
	struct token t;
	size_t pos = first, tp;
	uint64_t v;

	memset(sc, 0, sizeof(*sc));
	while (next_header(buf, head_len, &pos, &h)) {
		/* Content_Length frames the body for some backend, not for us. */
		if (h.folded == HDR_CONTENT_LENGTH || h.folded == HDR_TRANSFER_ENCODING)
			return REASON_SMUGGLING;
		switch (h.kind) {
		case HDR_CONTENT_LENGTH:
			tp = 0;
			if (!next_token(h.value, h.value_len, &tp, &t))
				return REASON_SMUGGLING;
			do {
				if (parse_length(&t, &v) == -1 || (sc->n_cl > 0 && v != sc->length))
					return REASON_SMUGGLING;
				sc->length = v;
				sc->n_cl++;
			} while (next_token(h.value, h.value_len, &tp, &t));
			break;
		case HDR_TRANSFER_ENCODING:
			/* Only a lone "chunked": anything else could frame differently downstream.
			 */
			if (++sc->n_te > 1 || !ieq(h.value, h.value_len, "chunked"))
				return REASON_SMUGGLING;
			sc->chunked = 1;
			break;
		case HDR_CONNECTION:
			tp = 0;
			while (next_token(h.value, h.value_len, &tp, &t)) {
				if (ieq(t.p, t.len, "close"))
					sc->conn_close = 1;
				else if (ieq(t.p, t.len, "keep-alive"))
					sc->conn_keepalive = 1;
				else if (ieq(t.p, t.len, "upgrade"))
					sc->conn_upgrade = 1;
				else if (protected_token(&t))
					return REASON_SMUGGLING;
				else if (sc->n_listed == HTTP_MAX_CONNECTION_TOKENS)
					return REASON_MALFORMED;
				else
					sc->listed[sc->n_listed++] = t;
			}
			break;
		case HDR_UPGRADE:
			/* An HTTP/2 upgrade is never passed on: only other protocols count. */
			tp = 0;
			while (next_token(h.value, h.value_len, &tp, &t)) {
				size_t at = strlen(sc->offered);
				if (is_h2_token(&t))
					continue;
				sc->has_upgrade = 1;
				if (at + t.len + 2 > sizeof(sc->offered))
					return REASON_MALFORMED; /* no client offers that much */
				if (at > 0)
					sc->offered[at++] = ',';
				for (size_t i = 0; i < t.len; i++)
					sc->offered[at++] = (char)tolower(t.p[i]);
				sc->offered[at] = '\0';
			}
			break;
		case HDR_HOST:
			sc->host = h.value;
			sc->host_len = h.value_len;
			break;
		case HDR_XFF:
			sc->has_xff = 1;
			break;
		case HDR_XFP:
			sc->has_xfp = 1;
			break;
		case HDR_XFH:
			sc->has_xfh = 1;
			break;
		case HDR_XRIP:
			sc->has_xrip = 1;
			break;
		case HDR_FORWARDED:
			sc->has_forwarded = 1;
			break;
		default:
			break;
		}
	}
	if (sc->n_cl > 0 && sc->n_te > 0)
		return REASON_SMUGGLING;
	return REASON_NONE;
}

static int
listed(const struct scan *sc, const struct header *h)
{
	for (size_t i = 0; i < sc->n_listed; i++)
		if (sc->listed[i].len == h->name_len &&
		    strncasecmp((const char *)sc->listed[i].p, (const char *)h->name,
				h->name_len) == 0)
			return 1;
	return 0;
}

/*
 * keep_line says whether a header line goes upstream as it is. Hop-by-hop
 * headers never do. A forwarding header is a claim about the client: only
 * a trusted peer's is kept (inside gatekeeper's own, or as it is), and
 * never a spelling with '_' that a backend would read as one. The
 * forwarding headers gatekeeper sets are rebuilt at the end. A forward
 * proxy's client (peer->proxy) is trusted with its own headers, and its
 * Proxy-Authorization was meant for gatekeeper.
 */
static int
keep_line(const struct header *h, const struct scan *sc, const struct config_http *c,
	  const struct http_peer *peer, const struct http_head *info)
{
	int trusted = peer->trusted || peer->proxy;

	if (listed(sc, h) || h->folded != HDR_OTHER)
		return 0;
	switch (h->kind) {
	case HDR_CONNECTION:
	case HDR_KEEP_ALIVE:
	case HDR_PROXY_CONNECTION:
	case HDR_TE:
		return 0;
	case HDR_UPGRADE:
		return info->upgrade;
	case HDR_PROXY_AUTHORIZATION:
		return !peer->proxy;
	case HDR_XFF:
		return !c->x_forwarded_for && trusted;
	case HDR_FORWARDED:
		return !c->forwarded && trusted;
	case HDR_XFP:
	case HDR_XFH:
	case HDR_XRIP:
	case HDR_XF_OTHER:
	case HDR_CLIENT_CLAIM:
		return trusted;
	default:
		return 1;
	}
}

/*
 * put_upgrade writes an Upgrade line without its HTTP/2 tokens, or nothing
 * when none is left.
 */
static void
put_upgrade(struct out *o, const struct header *h)
{
	struct token t;
	size_t tp = 0;
	int n = 0;

	while (next_token(h->value, h->value_len, &tp, &t)) {
		if (is_h2_token(&t))
			continue;
		puts_(o, n++ ? ", " : "Upgrade: ");
		put(o, t.p, t.len);
	}
	if (n > 0)
		puts_(o, "\r\n");
}

/* put_joined writes the values of every kind line, joined with ", ". Returns how many. */
static int
put_joined(struct out *o, const uint8_t *buf, size_t head_len, size_t first, enum header_kind kind)
{
	struct header h;
	size_t pos = first;
	int n = 0;

	while (next_header(buf, head_len, &pos, &h)) {
		if (h.kind != kind || h.value_len == 0)
			continue;
		if (n++ > 0)
			puts_(o, ", ");
		put(o, h.value, h.value_len);
	}
	return n;
}

enum reason
http_rewrite_head(const uint8_t *buf, const struct sniff_http_request *req,
		  const struct config_http *c, const struct http_peer *peer, int last,
		  struct http_head *info, uint8_t *out, size_t *out_len)
{
	struct out o = {out, 0, out ? 2 * req->head_len + HTTP_REWRITE_EXTRA : 0, 0};
	char addr[NET_ADDRSTRLEN];
	enum reason why;
	const uint8_t *host;
	size_t first = 0, pos, host_len;
	struct scan sc;
	struct header h;

	memset(info, 0, sizeof(*info));
	if (strcmp(req->method, "CONNECT") == 0)
		return REASON_BAD_METHOD;
	if (peer->proxy) {
		/* A forward proxy passes the client's request on as it is: no headers of ours. */
		static const struct config_http none;
		c = &none;
	}
	while (first + 1 < req->head_len && !(buf[first] == '\r' && buf[first + 1] == '\n'))
		first++;
	first += 2;
	if ((why = scan_headers(buf, req->head_len, first, &sc)) != REASON_NONE)
		return why;
	if (sc.n_te > 0 && req->version_minor == 0)
		return REASON_SMUGGLING; /* HTTP/1.0 has no chunked coding */
	info->head_method = strcmp(req->method, "HEAD") == 0;
	info->upgrade = sc.conn_upgrade && sc.has_upgrade;
	if (info->upgrade)
		memcpy(info->offered, sc.offered, sizeof(info->offered));
	info->wants_close = sc.conn_close || (req->version_minor == 0 && !sc.conn_keepalive);
	info->has_body = sc.chunked || sc.length > 0;
	info->chunked = sc.chunked;
	info->content_length = sc.length;
	if (out == NULL)
		return REASON_NONE;

	net_addr_format(peer->client, addr, sizeof(addr));
	host = sc.host ? sc.host : (const uint8_t *)req->host;
	host_len = sc.host ? sc.host_len : req->host_len;
	put(&o, buf, first); /* the request line */
	for (pos = first; next_header(buf, req->head_len, &pos, &h);) {
		if (!keep_line(&h, &sc, c, peer, info))
			continue;
		if (h.kind == HDR_UPGRADE) {
			put_upgrade(&o, &h);
			continue;
		}
		put(&o, h.line, h.line_len);
		puts_(&o, "\r\n");
	}
	if (c->x_forwarded_for) {
		puts_(&o, "X-Forwarded-For: ");
		if (peer->trusted && put_joined(&o, buf, req->head_len, first, HDR_XFF) > 0)
			puts_(&o, ", ");
		puts_(&o, addr);
		puts_(&o, "\r\n");
	}
	if (c->x_forwarded_proto && !(peer->trusted && sc.has_xfp))
		puts_(&o, "X-Forwarded-Proto: http\r\n");
	if (c->x_forwarded_host && !(peer->trusted && sc.has_xfh) && host_len > 0) {
		puts_(&o, "X-Forwarded-Host: ");
		put(&o, host, host_len);
		puts_(&o, "\r\n");
	}
	if (c->x_real_ip && !(peer->trusted && sc.has_xrip)) {
		puts_(&o, "X-Real-IP: ");
		puts_(&o, addr);
		puts_(&o, "\r\n");
	}
	if (c->forwarded) {
		int v6 = peer->client->sa_family == AF_INET6;
		puts_(&o, "Forwarded: ");
		if (peer->trusted && put_joined(&o, buf, req->head_len, first, HDR_FORWARDED) > 0)
			puts_(&o, ", ");
		puts_(&o, v6 ? "for=\"[" : "for=");
		puts_(&o, addr);
		puts_(&o, v6 ? "]\"" : "");
		if (host_len > 0) {
			/* A token as it is; host:port or [v6] needs the quoted form. */
			int quote = memchr(host, ':', host_len) != NULL;
			puts_(&o, quote ? ";host=\"" : ";host=");
			put(&o, host, host_len);
			puts_(&o, quote ? "\"" : "");
		}
		puts_(&o, ";proto=http\r\n");
	}
	if (info->upgrade)
		puts_(&o, "Connection: upgrade\r\n");
	else if (last || info->wants_close)
		puts_(&o, "Connection: close\r\n");
	else if (req->version_minor == 0)
		puts_(&o, "Connection: keep-alive\r\n");
	puts_(&o, "\r\n");
	if (o.overflow)
		return REASON_TOO_LARGE;
	*out_len = o.len;
	return REASON_NONE;
}

/* ---- refusals ---- */

size_t
http_refusal(enum reason reason, int proxy, char *buf, size_t len)
{
	const struct reason_info *ri = reason_info(reason);
	const char *body = ri->http_body, *header = ri->http_header;
	int n;

	if ((unsigned)reason >= REASON_COUNT || ri->http_status == NULL)
		return 0;
	if (proxy && ri->proxy_body != NULL)
		body = ri->proxy_body;
	if (proxy && ri->proxy_header != NULL)
		header = ri->proxy_header;
	n = snprintf(buf, len,
		     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
		     "X-Gatekeeper-Reason: %s\r\n%sConnection: close\r\n\r\ngatekeeper: %s\n",
		     ri->http_status, strlen(body) + 13, ri->name, header, body);
	return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

/* ---- request bodies ---- */

/*
 * A strict reader of a request body's framing (RFC 9112 6 and 7.1). It
 * is stricter than http-parser, which lets a chunk's data run on without
 * its CRLF: whatever this accepts, any server frames the same way.
 */
enum body_state {
	B_LENGTH, /* Content-Length bytes left */
	B_SIZE,	  /* chunk-size hex digits */
	B_EXT,	  /* a chunk extension, up to CR */
	B_SIZE_LF,
	B_DATA,
	B_DATA_CR,
	B_DATA_LF,
	B_TRAILER_START,
	B_TRAILER_NAME, /* a trailer field's name, up to its colon */
	B_TRAILER,	/* a trailer field's value, up to CR */
	B_TRAILER_LF,
	B_END_LF,
	B_DONE,
};

struct body {
	enum body_state state;
	uint64_t left;	 /* B_LENGTH, B_DATA: bytes to go; B_SIZE: the size so far */
	unsigned digits; /* hex digits of the chunk size */
	size_t extra;	 /* extension and trailer bytes so far (bounded) */
	char name[24];	 /* the trailer field name being read (its start) */
	size_t name_len;
};

/*
 * Fields that frame or route a message never come as trailers (RFC 9110
 * 6.5.1): a server that merged one into the head could read the message
 * differently. Nor do the forwarding headers and proxy credentials: a
 * trailer would slip past what the head's rewrite removed.
 */
static int
forbidden_trailer(const struct body *b)
{
	static const char *const names[] = {"content-length",
					    "transfer-encoding",
					    "host",
					    "connection",
					    "upgrade",
					    "trailer",
					    "te",
					    "x-real-ip",
					    "forwarded",
					    "proxy-authorization"};
	const uint8_t *name = (const uint8_t *)b->name;

	/* Read with '_' as '-': a backend that merges trailers may map both. */
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (folds_to(name, b->name_len, names[i]))
			return 1;
	return is_xf(name, b->name_len); /* a forwarding claim, not gatekeeper's */
}

static void
body_start(struct body *b, const struct http_head *info)
{
	memset(b, 0, sizeof(*b));
	b->state = info->chunked ? B_SIZE : B_LENGTH;
	b->left = info->chunked ? 0 : info->content_length;
}

/* is_token_char: a tchar of RFC 9110 5.6.2, what a field name is made of. */
static int
is_token_char(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int
hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (uint8_t)tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * body_read frames data. Returns how many bytes belong to the body (the
 * body ended when b->state is B_DONE), or -1 when the framing is invalid.
 * limit bounds extensions and trailers together.
 */
static ssize_t
body_read(struct body *b, const uint8_t *data, size_t len, size_t limit)
{
	size_t i = 0, take;
	int v;

	while (i < len && b->state != B_DONE) {
		uint8_t c = data[i];
		switch (b->state) {
		case B_LENGTH:
		case B_DATA:
			take = len - i < b->left ? len - i : (size_t)b->left;
			b->left -= take;
			i += take;
			if (b->left == 0)
				b->state = b->state == B_LENGTH ? B_DONE : B_DATA_CR;
			continue;
		case B_SIZE:
			if ((v = hexval(c)) >= 0) {
				if (++b->digits > 15)
					return -1; /* no chunk is that large */
				b->left = b->left * 16 + (uint64_t)v;
			} else if (b->digits > 0 && c == ';') {
				b->state = B_EXT;
			} else if (b->digits > 0 && c == '\r') {
				b->state = B_SIZE_LF;
			} else {
				return -1;
			}
			break;
		case B_EXT:
			if (c == '\r')
				b->state = B_SIZE_LF;
			else if ((c < 0x20 && c != '\t') || c == 0x7f || ++b->extra > limit)
				return -1;
			break;
		case B_SIZE_LF:
			if (c != '\n')
				return -1;
			b->state = b->left == 0 ? B_TRAILER_START : B_DATA;
			b->digits = 0;
			break;
		case B_DATA_CR:
			if (c != '\r')
				return -1;
			b->state = B_DATA_LF;
			break;
		case B_DATA_LF:
			if (c != '\n')
				return -1;
			b->state = B_SIZE;
			b->left = 0;
			break;
		case B_TRAILER_START:
			if (c == '\r')
				b->state = B_END_LF;
			else if (is_token_char(c)) {
				b->state = B_TRAILER_NAME;
				b->name[0] = (char)c;
				b->name_len = 1;
			} else {
				return -1; /* obs-fold, an empty name, or no field at all */
			}
			if (++b->extra > limit)
				return -1;
			break;
		case B_TRAILER_NAME:
			if (c == ':') {
				if (forbidden_trailer(b))
					return -1;
				b->state = B_TRAILER;
			} else if (!is_token_char(c) || ++b->extra > limit) {
				return -1;
			} else if (b->name_len < sizeof(b->name)) {
				b->name[b->name_len++] = (char)c;
			}
			break;
		case B_TRAILER:
			if (c == '\r')
				b->state = B_TRAILER_LF;
			else if ((c < 0x20 && c != '\t') || c == 0x7f || ++b->extra > limit)
				return -1;
			break;
		case B_TRAILER_LF:
			if (c != '\n')
				return -1;
			b->state = B_TRAILER_START;
			break;
		case B_END_LF:
			if (c != '\n')
				return -1;
			b->state = B_DONE;
			break;
		case B_DONE:
			break;
		}
		i++;
	}
	return (ssize_t)i;
}

/* ---- the stream ---- */

enum stream_state {
	ST_HEAD,     /* collecting a request head */
	ST_BODY,     /* streaming a request body */
	ST_WAIT_101, /* an upgrade request went up: its answer decides */
	ST_REFUSING, /* a refusal waits for the responses owed */
	ST_DONE,     /* the last request went up: later bytes are dropped */
	ST_RAW,	     /* switched protocols: bytes go on untouched */
};

struct http_stream {
	const struct config_http *conf;
	struct sockaddr_storage client;
	struct http_peer peer;
	const struct http_ops *ops;
	void *arg;
	enum stream_state state;
	uint8_t *head; /* the head being collected (max_header_size), or NULL */
	size_t head_len;
	struct timeval head_started, idle_since;
	http_parser req, resp;
	struct body body; /* ST_BODY: the request body's framing */
	enum stream_state after_body;
	uint64_t requests, responses;
	uint8_t owed_head[HTTP_MAX_OUTSTANDING]; /* per unanswered request: was it HEAD? */
	int resp_done, resp_status;
	int resp_unparsed;		/* the upstream's bytes stopped parsing as responses */
	int resp_started;		/* some of the response being parsed went to the client */
	int resp_bad_101;		/* a 101 answered a request that asked for no upgrade */
	char offered[HTTP_UPGRADE_MAX]; /* ST_WAIT_101: the protocols the request offered */
	/* the Upgrade header of the response being parsed, as far as it went */
	char resp_field[16], resp_upgrade[HTTP_UPGRADE_MAX];
	size_t resp_field_len, resp_upgrade_len;
	int resp_in_value, resp_is_upgrade, resp_upgrade_long;
	enum reason refusal; /* ST_REFUSING: the reason (REASON_NONE: the stream only ends) */
	int ended;	     /* ops->end was called: nothing more happens */
};

static void
finish(struct http_stream *h, enum reason reason)
{
	h->ended = 1;
	h->ops->end(h->arg, reason);
}

/* No callbacks: http-parser only gives its verdict on a head (bodies are body_read's). */
static const http_parser_settings req_settings;

static int switch_offered(const struct http_stream *h);

static int
on_resp_headers(http_parser *p)
{
	struct http_stream *h = p->data;

	h->resp_status = p->status_code;
	if (p->status_code == 101) {
		/*
		 * Only the answer to the upgrade request the stream waits on may
		 * switch; any other 101 would make the rest of the connection
		 * raw, with requests nobody checked. Stop here: the head goes
		 * nowhere.
		 */
		if (h->state != ST_WAIT_101 || h->responses + 1 != h->requests ||
		    !switch_offered(h)) {
			h->resp_bad_101 = 1;
			return -1;
		}
		return 2; /* no body, and nothing HTTP after it */
	}
	/* A HEAD response announces a body it does not have. */
	if (p->status_code >= 200 && h->responses < h->requests &&
	    h->owed_head[h->responses % HTTP_MAX_OUTSTANDING])
		return 1;
	return 0;
}

static int
on_resp_begin(http_parser *p)
{
	struct http_stream *h = p->data;

	h->resp_field_len = h->resp_upgrade_len = 0;
	h->resp_in_value = h->resp_is_upgrade = h->resp_upgrade_long = 0;
	return 0;
}

static int
on_resp_field(http_parser *p, const char *at, size_t n)
{
	struct http_stream *h = p->data;

	if (h->resp_in_value) {
		h->resp_in_value = 0;
		h->resp_field_len = 0;
	}
	for (size_t i = 0; i < n; i++)
		if (h->resp_field_len < sizeof(h->resp_field))
			h->resp_field[h->resp_field_len++] = (char)tolower((unsigned char)at[i]);
		else
			h->resp_field_len = sizeof(h->resp_field) + 1; /* too long to be Upgrade */
	return 0;
}

static int
on_resp_value(http_parser *p, const char *at, size_t n)
{
	struct http_stream *h = p->data;

	if (!h->resp_in_value) {
		h->resp_in_value = 1;
		h->resp_is_upgrade =
		    h->resp_field_len == 7 && memcmp(h->resp_field, "upgrade", 7) == 0;
		if (h->resp_is_upgrade && h->resp_upgrade_len > 0 &&
		    h->resp_upgrade_len < sizeof(h->resp_upgrade))
			h->resp_upgrade[h->resp_upgrade_len++] = ','; /* a second Upgrade line */
	}
	if (!h->resp_is_upgrade)
		return 0;
	if (n > sizeof(h->resp_upgrade) - h->resp_upgrade_len) {
		h->resp_upgrade_long = 1;
		return 0;
	}
	memcpy(h->resp_upgrade + h->resp_upgrade_len, at, n);
	h->resp_upgrade_len += n;
	return 0;
}

/*
 * switch_offered: does the 101's Upgrade name only protocols the request
 * offered (RFC 9110 7.8)? A switch to anything else, h2c above all, would
 * relay a protocol nobody asked for, with nothing checking it.
 */
static int
switch_offered(const struct http_stream *h)
{
	struct token t, o;
	size_t tp = 0, op, n = 0;

	if (h->resp_upgrade_long)
		return 0;
	while (next_token((const uint8_t *)h->resp_upgrade, h->resp_upgrade_len, &tp, &t)) {
		int found = 0;
		if (is_h2_token(&t))
			return 0;
		op = 0;
		while (!found &&
		       next_token((const uint8_t *)h->offered, strlen(h->offered), &op, &o))
			found = o.len == t.len &&
				strncasecmp((const char *)o.p, (const char *)t.p, t.len) == 0;
		if (!found)
			return 0;
		n++;
	}
	return n > 0;
}

static int
on_resp_complete(http_parser *p)
{
	struct http_stream *h = p->data;

	h->resp_done = 1;
	h->resp_started = 0;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings resp_settings = {
    .on_message_begin = on_resp_begin,
    .on_header_field = on_resp_field,
    .on_header_value = on_resp_value,
    .on_headers_complete = on_resp_headers,
    .on_message_complete = on_resp_complete,
};

size_t
http_stream_size(void)
{
	return sizeof(struct http_stream);
}

struct http_stream *
http_stream_new(const struct config_http *conf, const struct http_peer *peer,
		const struct http_ops *ops, void *arg, const struct timeval *now)
{
	return http_stream_init(malloc(sizeof(struct http_stream)), conf, peer, ops, arg, now);
}

struct http_stream *
http_stream_init(void *mem, const struct config_http *conf, const struct http_peer *peer,
		 const struct http_ops *ops, void *arg, const struct timeval *now)
{
	struct http_stream *h = mem;

	if (h == NULL)
		return NULL;
	memset(h, 0, sizeof(*h));
	h->conf = conf;
	memcpy(&h->client, peer->client, net_sockaddr_len(peer->client));
	h->peer.client = (struct sockaddr *)&h->client;
	h->peer.trusted = peer->trusted;
	h->peer.proxy = peer->proxy;
	h->ops = ops;
	h->arg = arg;
	h->state = ST_HEAD;
	h->refusal = REASON_NONE;
	h->head_started = h->idle_since = *now;
	http_parser_init(&h->resp, HTTP_RESPONSE);
	h->resp.data = h;
	return h;
}

void
http_stream_release(struct http_stream *h)
{
	if (h == NULL)
		return;
	free(h->head);
	h->head = NULL;
}

void
http_stream_free(struct http_stream *h)
{
	http_stream_release(h);
	free(h);
}

uint64_t
http_stream_requests(const struct http_stream *h)
{
	return h->requests;
}

static void
idle_if_caught_up(struct http_stream *h, const struct timeval *now)
{
	if (h->state == ST_HEAD && h->head_len == 0 && h->responses == h->requests) {
		h->idle_since = *now;
		h->ops->rearm(h->arg);
	}
}

/* refuse answers the current request with reason once earlier responses are out. */
static void
refuse(struct http_stream *h, enum reason reason)
{
	char buf[512];
	size_t n;

	h->state = ST_REFUSING;
	h->refusal = reason;
	free(h->head);
	h->head = NULL;
	h->head_len = 0;
	if (h->responses < h->requests)
		return; /* on_resp_complete's caller comes back here */
	if ((n = http_refusal(reason, h->peer.proxy, buf, sizeof(buf))) > 0)
		h->ops->send(h->arg, 0, buf, n);
	finish(h, reason);
}

/*
 * take_head handles a complete head h->head[0..len). Returns 0 when the
 * request went up, -1 when it was refused.
 */
static int
take_head(struct http_stream *h, size_t len)
{
	static _Thread_local uint8_t out[2 * SNIFF_HTTP_MAX_HEAD + HTTP_REWRITE_EXTRA];
	struct sniff_http_request req;
	struct http_head info;
	enum parse_result r;
	enum reason why;
	size_t out_len = 0, n;
	int last;

	r = sniff_http_request(h->head, len, &req);
	if (r == PARSE_MALFORMED || r == PARSE_NEED_MORE) {
		refuse(h, REASON_MALFORMED);
		return -1;
	}
	if (strcmp(req.method, "CONNECT") == 0) {
		/* A forward proxy's tunnel to somewhere needs a connection of its own. */
		refuse(h, h->peer.proxy ? REASON_MISDIRECTED : REASON_BAD_METHOD);
		return -1;
	}
	if (h->requests > 0 && (why = h->ops->admit(h->arg, &req, h->head)) != REASON_NONE) {
		refuse(h, why);
		return -1;
	}
	last = h->conf->max_requests > 0 && h->requests + 1 >= (uint64_t)h->conf->max_requests;
	why = http_rewrite_head(h->head, &req, h->conf, &h->peer, last, &info, out, &out_len);
	if (why != REASON_NONE) {
		refuse(h, why);
		return -1;
	}
	/* A second opinion on the head: http-parser must read it the same way. */
	http_parser_init(&h->req, HTTP_REQUEST);
	n = http_parser_execute(&h->req, &req_settings, (const char *)h->head, len);
	if (HTTP_PARSER_ERRNO(&h->req) != HPE_OK || (n != len && !h->req.upgrade)) {
		refuse(h, REASON_MALFORMED);
		return -1;
	}
	h->owed_head[h->requests % HTTP_MAX_OUTSTANDING] = (uint8_t)info.head_method;
	if (info.upgrade)
		memcpy(h->offered, info.offered, sizeof(h->offered));
	h->requests++;
	h->ops->send(h->arg, 1, out, out_len);
	h->after_body = info.upgrade ? ST_WAIT_101 : last || info.wants_close ? ST_DONE : ST_HEAD;
	if (info.has_body) {
		body_start(&h->body, &info);
		h->state = ST_BODY;
	} else {
		h->state = h->after_body;
	}
	return 0;
}

/*
 * client_head collects head bytes. Returns how many of data it used, or
 * -1 when the stream stopped taking client bytes (refused).
 */
static ssize_t
client_head(struct http_stream *h, const uint8_t *data, size_t len, const struct timeval *now)
{
	size_t cap = (size_t)h->conf->max_header_size, old = h->head_len, take, from, end, scan_end;
	const uint8_t *blank;

	if (h->head == NULL && (h->head = malloc(cap)) == NULL) {
		finish(h, REASON_OUT_OF_MEMORY);
		return -1;
	}
	if (old == 0) {
		h->head_started = *now;
		h->ops->rearm(h->arg);
	}
	take = len < cap - old ? len : cap - old;
	memcpy(h->head + old, data, take);
	h->head_len += take;
	from = old > 3 ? old - 3 : 0;
	blank = memmem(h->head + from, h->head_len - from, "\r\n\r\n", 4);
	/*
	 * A bare LF or CR in the head is refused at once, not after a blank
	 * line that never comes (bytes after the head are not the head's).
	 */
	scan_end = blank ? (size_t)(blank - h->head) + 4 : h->head_len;
	for (size_t i = old; i < scan_end; i++) {
		if ((h->head[i] == '\n' && (i == 0 || h->head[i - 1] != '\r')) ||
		    (i > 0 && h->head[i - 1] == '\r' && h->head[i] != '\n')) {
			refuse(h, REASON_MALFORMED);
			return -1;
		}
	}
	if (blank == NULL) {
		if (h->head_len == cap) {
			refuse(h, REASON_TOO_LARGE);
			return -1;
		}
		return (ssize_t)take;
	}
	end = (size_t)(blank - h->head) + 4;
	if (take_head(h, end) == -1)
		return -1;
	h->head_len = 0;
	if (h->state == ST_HEAD) {
		free(h->head);
		h->head = NULL;
	}
	return (ssize_t)(end - old);
}

/* client_body streams body bytes; returns how many were body, or -1. */
static ssize_t
client_body(struct http_stream *h, const uint8_t *data, size_t len, const struct timeval *now)
{
	ssize_t n = body_read(&h->body, data, len, (size_t)h->conf->max_header_size);

	if (n < 0) {
		/* The upstream has part of this body: no response can be trusted now. */
		h->state = ST_REFUSING;
		finish(h, REASON_MALFORMED_BODY);
		return -1;
	}
	if (n > 0)
		h->ops->send(h->arg, 1, data, (size_t)n);
	if (h->body.state == B_DONE) {
		h->state = h->after_body;
		idle_if_caught_up(h, now);
	}
	return n;
}

static void
client_bytes(struct http_stream *h, const uint8_t *data, size_t len, const struct timeval *now)
{
	ssize_t used = 0;

	while (len > 0) {
		switch (h->state) {
		case ST_HEAD:
			used = client_head(h, data, len, now);
			break;
		case ST_BODY:
			used = client_body(h, data, len, now);
			break;
		case ST_WAIT_101:
			/*
			 * Bytes after an upgrade request wait for its answer: the
			 * new protocol's first bytes, or the next request.
			 */
			if (h->head == NULL &&
			    (h->head = malloc((size_t)h->conf->max_header_size)) == NULL) {
				finish(h, REASON_OUT_OF_MEMORY);
				return;
			}
			if (len > (size_t)h->conf->max_header_size - h->head_len) {
				refuse(h, REASON_TOO_LARGE);
				return;
			}
			memcpy(h->head + h->head_len, data, len);
			h->head_len += len;
			return;
		case ST_RAW:
			h->ops->send(h->arg, 1, data, len);
			return;
		case ST_DONE:
		case ST_REFUSING:
			return; /* nothing after the last request goes up */
		}
		if (used <= 0)
			return;
		data += used;
		len -= (size_t)used;
	}
}

/* response_done: one final response went to the client. */
static void
response_done(struct http_stream *h, const struct timeval *now)
{
	uint8_t *held;
	size_t held_len;

	h->responses++;
	if (h->state == ST_REFUSING && h->responses == h->requests && h->refusal != REASON_NONE) {
		refuse(h, h->refusal);
		return;
	}
	if (h->state == ST_WAIT_101 && h->responses == h->requests) {
		/* Not switched: what the client sent meanwhile is its next request. */
		h->state = ST_HEAD;
		held = h->head;
		held_len = h->head_len;
		h->head = NULL;
		h->head_len = 0;
		if (held_len > 0)
			client_bytes(h, held, held_len, now);
		free(held);
	}
	idle_if_caught_up(h, now);
}

static void
upstream_bytes(struct http_stream *h, const uint8_t *data, size_t len, const struct timeval *now)
{
	size_t n;
	enum http_errno e;

	while (len > 0 && h->state != ST_RAW && !h->resp_unparsed) {
		h->resp_done = 0;
		n = http_parser_execute(&h->resp, &resp_settings, (const char *)data, len);
		e = HTTP_PARSER_ERRNO(&h->resp);
		if (h->resp_bad_101) {
			/*
			 * A broken upstream: the client is told so, unless part
			 * of this response already reached it (then it only
			 * sees the connection close). Nothing more goes up.
			 */
			char buf[512];
			size_t m;
			h->state = ST_REFUSING;
			if (!h->resp_started &&
			    (m = http_refusal(REASON_BAD_RESPONSE, h->peer.proxy, buf,
					      sizeof(buf))) > 0)
				h->ops->send(h->arg, 0, buf, m);
			finish(h, REASON_BAD_RESPONSE);
			return;
		}
		if ((e != HPE_OK && e != HPE_PAUSED) || (h->responses >= h->requests && n > 0)) {
			/*
			 * Not responses to what was asked (not HTTP, or bytes
			 * nobody asked for): the client gets them as they are, but
			 * no further request goes up, since their answers could
			 * no longer be told apart.
			 */
			h->resp_unparsed = 1;
			if (h->state != ST_REFUSING)
				h->state = ST_DONE;
			break;
		}
		h->ops->send(h->arg, 0, data, n);
		h->resp_started = n > 0 && !h->resp_done;
		data += n;
		len -= n;
		if (h->resp.upgrade && h->resp_status == 101) {
			/* Switched: both ways raw, starting with what each side sent early. */
			h->responses++;
			h->state = ST_RAW;
			h->ops->raw(h->arg);
			if (len > 0)
				h->ops->send(h->arg, 0, data, len);
			if (h->head_len > 0)
				h->ops->send(h->arg, 1, h->head, h->head_len);
			free(h->head);
			h->head = NULL;
			h->head_len = 0;
			return;
		}
		if (e == HPE_PAUSED) {
			http_parser_pause(&h->resp, 0);
			if (h->resp_status < 100 || h->resp_status >= 200)
				response_done(h, now);
			if (h->ended)
				return; /* the refusal this response was holding back went out */
		}
	}
	if (len > 0 && (h->state == ST_RAW || h->resp_unparsed))
		h->ops->send(h->arg, 0, data, len);
	if (h->resp_unparsed && h->state == ST_REFUSING && !h->ended) {
		/* The response a refusal waits for will never be told complete. */
		finish(h, h->refusal != REASON_NONE ? h->refusal : REASON_BAD_RESPONSE);
	}
}

int
http_stream_bytes(struct http_stream *h, int from, const uint8_t *data, size_t len,
		  const struct timeval *now)
{
	if (from == 0)
		client_bytes(h, data, len, now);
	else
		upstream_bytes(h, data, len, now);
	return 0;
}

int
http_stream_may_read(const struct http_stream *h, int from)
{
	if (from == 1)
		return 1; /* responses owed before a refusal must be read */
	switch (h->state) {
	case ST_HEAD:
	case ST_BODY:
		return h->responses >= h->requests ||
		       h->requests - h->responses < HTTP_MAX_OUTSTANDING;
	case ST_RAW:
	case ST_DONE:
		return 1;
	default:
		return 0;
	}
}

int
http_stream_deadline(const struct http_stream *h, const struct timeval *now, int64_t *ms)
{
	if (h->state != ST_HEAD)
		return 0;
	if (h->head_len > 0)
		*ms = h->conf->header_timeout - clock_ms_between(&h->head_started, now);
	else if (h->responses == h->requests)
		*ms = h->conf->keepalive_timeout - clock_ms_between(&h->idle_since, now);
	else
		return 0;
	return 1;
}

void
http_stream_expire(struct http_stream *h, const struct timeval *now)
{
	int64_t left;

	if (!http_stream_deadline(h, now, &left) || left > 0)
		return;
	if (h->head_len > 0)
		refuse(h, REASON_HEADER_TIMEOUT);
	else {
		h->state = ST_REFUSING;
		finish(h, REASON_KEEPALIVE_TIMEOUT);
	}
}
