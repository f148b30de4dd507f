/*
 * whoami: a small HTTP/1.1 backend to try out and test gatekeeper.
 *
 * Every answer says who served it and what arrived: the server's name, host
 * name and interface addresses, the peer address, then the request line and
 * headers byte for byte as received (case, order and line endings kept), so a
 * test can see exactly what a proxy forwarded. A few more endpoints exercise
 * what a proxy must get right: keep-alive and pipelining, request bodies
 * framed by Content-Length or chunked, and large responses produced only as
 * fast as the peer reads them. Framing comes from http_parser and the sockets
 * are libevent bufferevents; evhttp is not used because it rewrites the head.
 *
 *   whoami [-v] [-l ADDR:PORT]... [-n NAME]
 *
 *   /              the report above, then the request body (text/plain)
 *   /health        "ok"
 *   /data?size=N   N bytes of "abc...z" repeated, 0 <= N <= 1 GiB
 *   /echo          the request body
 *   /api           the report as JSON (headers object, no body)
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <http_parser.h>

#define MAX_HEAD    (64 * 1024)		/* request line and headers, bytes */
#define MAX_HEADERS 1000		/* header fields in one request */
#define MAX_DATA    (UINT64_C(1) << 30) /* largest /data?size= */
#define MAX_LISTEN  16
#define MAX_IPS	    64
#define IN_HIGH	    (MAX_HEAD + 16 * 1024) /* stop reading the socket above this */
#define OUT_HIGH    (256 * 1024)	   /* stop producing above this much unsent output */
#define OUT_LOW	    (64 * 1024)		   /* and resume below this */
#define FEED_STEP   (64 * 1024)		   /* body bytes given to the parser at once */
#define PATTERN_LEN (64 * 1024)		   /* one /data piece */
#define IDLE_SECS   60			   /* read and write timeouts */
#define LINGER_SECS 2			   /* wait for the peer's FIN after ours */
#define LINGER_MAX  (1024 * 1024)	   /* bytes discarded while lingering */
#define ADDR_LEN    64			   /* "[v6addr]:port" and a NUL */

#define ADDSTR(b, s) evbuffer_add((b), (s), sizeof(s) - 1)

struct conn;
TAILQ_HEAD(connlist, conn);

/* The one context: configuration, listeners, live connections, caches. */
struct whoami {
	struct event_base *base;
	const char *name;
	char hostname[256];
	int verbose;
	struct evconnlistener *listeners[MAX_LISTEN];
	size_t nlisteners;
	struct event *sigint, *sigterm, *resume_accept;
	struct connlist conns;
	char ips[MAX_IPS][INET6_ADDRSTRLEN];
	size_t nips;
	time_t ips_at; /* second of the last getifaddrs() */
	char date[40];
	time_t date_at;
};

enum cstate {
	C_HEAD,	   /* waiting for a request head */
	C_BODY,	   /* reading the request body */
	C_GEN,	   /* producing a /data response body */
	C_CLOSING, /* flushing the last response before FIN */
	C_LINGER,  /* FIN sent: discard input until the peer closes */
};

enum route { R_INFO, R_HEALTH, R_DATA, R_ECHO, R_API };

/* What a step of the connection's state machine asks for next. */
enum step {
	STEP_AGAIN, /* progress was made: run the next step */
	STEP_WAIT,  /* nothing to do until more input arrives */
};

/* One header field; both strings point into conn.head. */
struct header {
	const char *name, *value;
	size_t nlen, vlen;
};

struct conn {
	TAILQ_ENTRY(conn) entry;
	struct whoami *w;
	struct bufferevent *bev;
	char peer[ADDR_LEN];
	enum cstate state;
	int eof;	 /* the peer has finished sending */
	size_t scan;	 /* input already searched for a head's end */
	size_t lingered; /* bytes discarded in C_LINGER */

	/* The request being served; request_done() resets these. */
	http_parser parser;
	char *head; /* raw request line and headers, headlen bytes */
	size_t headlen;
	const char *url;
	size_t urllen;
	struct header *hdrs; /* the array is kept across requests */
	size_t nhdrs, hdrcap;
	int too_many; /* more than MAX_HEADERS fields */
	int headers_done, message_done;
	enum route route;
	int keepalive, head_only, chunked_out;
	int status; /* of the response once its head is queued, else 0 */
	int size_ok;
	uint64_t size;		    /* /data?size= */
	uint64_t gen_off, gen_left; /* /data progress */
};

/* 'a'..'z' repeated, 26 bytes longer than one piece so any phase fits. */
static char pattern[PATTERN_LEN + 26];

static void conn_run(struct conn *);
static void conn_free(struct conn *);

/* http_date returns the current time as an IMF-fixdate, cached per second. */
static const char *
http_date(struct whoami *w)
{
	struct timeval tv;
	struct tm tm;

	event_base_gettimeofday_cached(w->base, &tv);
	if (w->date[0] == '\0' || tv.tv_sec != w->date_at) {
		gmtime_r(&tv.tv_sec, &tm);
		strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		w->date_at = tv.tv_sec;
	}
	return w->date;
}

/*
 * refresh_ips re-reads the interface addresses at most once a second, so a
 * network attached at run time shows up without a syscall per request. On
 * failure the previous list stays.
 */
static void
refresh_ips(struct whoami *w)
{
	struct ifaddrs *ifa, *i;
	struct timeval tv;
	const void *a;

	event_base_gettimeofday_cached(w->base, &tv);
	if (w->ips_at == tv.tv_sec)
		return;
	if (getifaddrs(&ifa) == -1)
		return;
	w->nips = 0;
	for (i = ifa; i != NULL && w->nips < MAX_IPS; i = i->ifa_next) {
		if (i->ifa_addr == NULL)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			a = &((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
		else if (i->ifa_addr->sa_family == AF_INET6)
			a = &((const struct sockaddr_in6 *)(const void *)i->ifa_addr)->sin6_addr;
		else
			continue;
		if (inet_ntop(i->ifa_addr->sa_family, a, w->ips[w->nips], INET6_ADDRSTRLEN))
			w->nips++;
	}
	freeifaddrs(ifa);
	w->ips_at = tv.tv_sec;
}

/*
 * format_addr writes "ip:port" or "[ip6]:port" for sa into buf (ADDR_LEN
 * bytes). IPv4-mapped IPv6 addresses are shown as plain IPv4.
 */
static void
format_addr(const struct sockaddr *sa, char *buf)
{
	char ip[INET6_ADDRSTRLEN];
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;

	if (sa->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, ADDR_LEN, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], ip, sizeof(ip));
			snprintf(buf, ADDR_LEN, "%s:%u", ip, (unsigned)ntohs(sin6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
			snprintf(buf, ADDR_LEN, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
		}
	} else {
		snprintf(buf, ADDR_LEN, "unknown");
	}
}

/*
 * parse_listen turns "IPv4:PORT", "[IPv6]:PORT" or ":PORT" (all IPv4
 * addresses) into a socket address. Hosts must be numeric. Returns 0, or -1
 * when spec is malformed.
 */
static int
parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sslen)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;
	char host[INET6_ADDRSTRLEN];
	const char *colon, *rb, *p;
	size_t hlen;
	unsigned long port = 0;

	memset(ss, 0, sizeof(*ss));
	if (spec[0] == '[') {
		if ((rb = strchr(spec, ']')) == NULL || rb[1] != ':')
			return -1;
		colon = rb + 1;
		spec++;
		hlen = (size_t)(rb - spec);
	} else {
		if ((colon = strrchr(spec, ':')) == NULL)
			return -1;
		hlen = (size_t)(colon - spec);
		if (memchr(spec, ':', hlen) != NULL)
			return -1; /* IPv6 needs brackets */
	}
	if (hlen >= sizeof(host))
		return -1;
	memcpy(host, spec, hlen);
	host[hlen] = '\0';

	if (colon[1] == '\0' || strlen(colon + 1) > 5)
		return -1;
	for (p = colon + 1; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port > 65535)
		return -1;

	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof(*sin6);
		return 0;
	}
	if (hlen == 0)
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return -1;
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	*sslen = sizeof(*sin);
	return 0;
}

/* header_value returns h's value without trailing blanks (never NULL). */
static const char *
header_value(const struct header *h, size_t *len)
{
	size_t n = h->vlen;

	if (h->value == NULL) {
		*len = 0;
		return "";
	}
	while (n > 0 && (h->value[n - 1] == ' ' || h->value[n - 1] == '\t'))
		n--;
	*len = n;
	return h->value;
}

/* find_header returns the first header named name (any case), or NULL. */
static const struct header *
find_header(const struct conn *c, const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; i < c->nhdrs; i++)
		if (c->hdrs[i].nlen == n && strncasecmp(c->hdrs[i].name, name, n) == 0)
			return &c->hdrs[i];
	return NULL;
}

/*
 * utf8_len returns the length of the well-formed UTF-8 sequence at s
 * (n bytes available; s[0] >= 0x80), or 0 when it is not one (overlong
 * forms, surrogates and code points above U+10FFFF included).
 */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t need, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		need = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		need = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		need = 4;
	else
		return 0;
	if (n < need)
		return 0;
	for (i = 1; i < need; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return need;
}

/*
 * json_str appends s (n bytes, from the wire) as a JSON string. Control
 * characters are escaped and bytes that are not UTF-8 become U+FFFD, so the
 * output is always valid JSON.
 */
static void
json_str(struct evbuffer *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run, k;

	ADDSTR(b, "\"");
	while (i < n) {
		for (run = i;
		     run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\';
		     run++)
			;
		evbuffer_add(b, s + i, run - i);
		if ((i = run) == n)
			break;
		if (u[i] == '"' || u[i] == '\\') {
			evbuffer_add_printf(b, "\\%c", u[i]);
			i++;
		} else if (u[i] < 0x80) {
			evbuffer_add_printf(b, "\\u%04x", u[i]);
			i++;
		} else if ((k = utf8_len(u + i, n - i)) > 0) {
			evbuffer_add(b, s + i, k);
			i += k;
		} else {
			ADDSTR(b, "\\ufffd");
			i++;
		}
	}
	ADDSTR(b, "\"");
}

/*
 * start_response queues the status line and headers of c's response.
 * length is the body length, or -1 for a chunked body; the caller queues
 * the body (and nothing of it for HEAD).
 */
static void
start_response(struct conn *c, int status, const char *type, int64_t length)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const char *reason = http_status_str((enum http_status)status);

	c->status = status;
	evbuffer_add_printf(out,
			    "HTTP/1.1 %d %s\r\nServer: whoami\r\nDate: %s\r\nContent-Type: %s\r\n",
			    status, reason, http_date(c->w), type);
	if (length < 0)
		ADDSTR(out, "Transfer-Encoding: chunked\r\n");
	else
		evbuffer_add_printf(out, "Content-Length: %" PRId64 "\r\n", length);
	if (!c->keepalive)
		ADDSTR(out, "Connection: close\r\n");
	else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
		ADDSTR(out, "Connection: keep-alive\r\n");
	ADDSTR(out, "\r\n");
}

/* respond queues a complete response with a body of len bytes. */
static void
respond(struct conn *c, int status, const char *type, const char *body, size_t len)
{
	start_response(c, status, type, (int64_t)len);
	if (!c->head_only)
		evbuffer_add(bufferevent_get_output(c->bev), body, len);
}

/* log_request writes one line per answered request when -v was given. */
static void
log_request(const struct conn *c)
{
	char url[256];
	size_t i, n = 0;

	if (!c->w->verbose || c->status == 0)
		return;
	for (i = 0; c->url != NULL && i < c->urllen && n + 5 < sizeof(url); i++) {
		unsigned char ch = (unsigned char)c->url[i];

		if (ch < 0x21 || ch > 0x7e || ch == '"' || ch == '\\')
			n += (size_t)snprintf(url + n, sizeof(url) - n, "\\x%02x", ch);
		else
			url[n++] = (char)ch;
	}
	url[n] = '\0';
	fprintf(stderr, "whoami: %s \"%s %s\" %d\n", c->peer,
		c->headers_done ? http_method_str((enum http_method)c->parser.method) : "-", url,
		c->status);
}

/*
 * request_done ends the current request once its whole response is queued:
 * it frees the request's state and either waits for the next request or
 * starts closing the connection.
 */
static void
request_done(struct conn *c)
{
	log_request(c);
	free(c->head);
	c->head = NULL;
	c->headlen = 0;
	c->url = NULL;
	c->urllen = 0;
	c->nhdrs = 0;
	c->too_many = c->headers_done = c->message_done = 0;
	c->chunked_out = c->head_only = c->status = 0;
	c->gen_off = c->gen_left = 0;
	c->scan = 0;
	c->state = c->keepalive ? C_HEAD : C_CLOSING;
}

/*
 * reject answers the current request with an error and closes the
 * connection after it. When a response is already under way (a streamed
 * body failed half-way) it can only cut the connection.
 */
static void
reject(struct conn *c, int status, const char *msg)
{
	char body[256];
	int n;

	c->keepalive = 0;
	if (c->status == 0) {
		n = snprintf(body, sizeof(body), "%s\n", msg);
		if (n < 0 || (size_t)n >= sizeof(body))
			n = 0;
		respond(c, status, "text/plain; charset=utf-8", body, (size_t)n);
	}
	request_done(c);
}

/* add_info appends the plain-text report and the raw request head to b. */
static void
add_info(struct conn *c, struct evbuffer *b)
{
	struct whoami *w = c->w;
	size_t i;

	refresh_ips(w);
	evbuffer_add_printf(b, "Name: %s\nHostname: %s\n", w->name, w->hostname);
	for (i = 0; i < w->nips; i++)
		evbuffer_add_printf(b, "IP: %s\n", w->ips[i]);
	evbuffer_add_printf(b, "RemoteAddr: %s\n", c->peer);
	evbuffer_add(b, c->head, c->headlen);
}

/*
 * respond_api queues the JSON report. Header fields that repeat (in any
 * case) are grouped under their first spelling, in order of appearance,
 * each with an array of values.
 */
static void
respond_api(struct conn *c)
{
	struct whoami *w = c->w;
	struct evbuffer *b;
	const struct header *h;
	const char *v;
	size_t i, j, vlen;
	int first;

	if ((b = evbuffer_new()) == NULL) {
		reject(c, 500, "out of memory");
		return;
	}
	refresh_ips(w);
	ADDSTR(b, "{\"name\":");
	json_str(b, w->name, strlen(w->name));
	ADDSTR(b, ",\"hostname\":");
	json_str(b, w->hostname, strlen(w->hostname));
	ADDSTR(b, ",\"ip\":[");
	for (i = 0; i < w->nips; i++) {
		if (i > 0)
			ADDSTR(b, ",");
		json_str(b, w->ips[i], strlen(w->ips[i]));
	}
	ADDSTR(b, "],\"remote_addr\":");
	json_str(b, c->peer, strlen(c->peer));
	ADDSTR(b, ",\"method\":");
	v = http_method_str((enum http_method)c->parser.method);
	json_str(b, v, strlen(v));
	ADDSTR(b, ",\"url\":");
	json_str(b, c->url, c->urllen);
	evbuffer_add_printf(b, ",\"proto\":\"HTTP/%u.%u\",\"host\":", c->parser.http_major,
			    c->parser.http_minor);
	if ((h = find_header(c, "host")) != NULL) {
		v = header_value(h, &vlen);
		json_str(b, v, vlen);
	} else {
		ADDSTR(b, "\"\"");
	}
	ADDSTR(b, ",\"headers\":{");
	for (i = 0; i < c->nhdrs; i++) {
		h = &c->hdrs[i];
		for (j = 0; j < i; j++)
			if (c->hdrs[j].nlen == h->nlen &&
			    strncasecmp(c->hdrs[j].name, h->name, h->nlen) == 0)
				break;
		if (j < i)
			continue; /* already listed with its first spelling */
		if (i > 0)
			ADDSTR(b, ",");
		json_str(b, h->name, h->nlen);
		ADDSTR(b, ":[");
		first = 1;
		for (j = i; j < c->nhdrs; j++) {
			if (c->hdrs[j].nlen != h->nlen ||
			    strncasecmp(c->hdrs[j].name, h->name, h->nlen) != 0)
				continue;
			if (!first)
				ADDSTR(b, ",");
			first = 0;
			v = header_value(&c->hdrs[j], &vlen);
			json_str(b, v, vlen);
		}
		ADDSTR(b, "]");
	}
	ADDSTR(b, "}}\n");

	start_response(c, 200, "application/json", (int64_t)evbuffer_get_length(b));
	if (!c->head_only)
		evbuffer_add_buffer(bufferevent_get_output(c->bev), b);
	evbuffer_free(b);
}

/*
 * parse_size finds "size=N" in a query string (n bytes). Returns 0 and sets
 * *size when N is a decimal number no larger than MAX_DATA, else -1.
 */
static int
parse_size(const char *q, size_t n, uint64_t *size)
{
	const char *p = q, *end = q + n, *e, *d;
	uint64_t v = 0;

	while (p < end) {
		if ((e = memchr(p, '&', (size_t)(end - p))) == NULL)
			e = end;
		if (e - p > 5 && memcmp(p, "size=", 5) == 0) {
			for (d = p + 5; d < e; d++) {
				if (*d < '0' || *d > '9')
					return -1;
				v = v * 10 + (uint64_t)(*d - '0');
				if (v > MAX_DATA)
					return -1;
			}
			*size = v;
			return 0;
		}
		p = e + 1;
	}
	return -1;
}

/* route_of picks the endpoint for the current request by its path. */
static enum route
route_of(struct conn *c)
{
	struct http_parser_url u;
	const char *path = c->url, *query = "";
	size_t plen = c->urllen, qlen = 0;

	http_parser_url_init(&u);
	if (c->url != NULL && http_parser_parse_url(c->url, c->urllen, 0, &u) == 0) {
		plen = 0;
		if (u.field_set & (1 << UF_PATH)) {
			path = c->url + u.field_data[UF_PATH].off;
			plen = u.field_data[UF_PATH].len;
		}
		if (u.field_set & (1 << UF_QUERY)) {
			query = c->url + u.field_data[UF_QUERY].off;
			qlen = u.field_data[UF_QUERY].len;
		}
	}
#define IS(s) (plen == sizeof(s) - 1 && memcmp(path, s, plen) == 0)
	if (IS("/health"))
		return R_HEALTH;
	if (IS("/echo"))
		return R_ECHO;
	if (IS("/api"))
		return R_API;
	if (IS("/data")) {
		c->size_ok = parse_size(query, qlen, &c->size) == 0;
		return R_DATA;
	}
#undef IS
	return R_INFO;
}

/*
 * begin_stream queues the head of a response that carries the request body
 * (/ and /echo) before that body has arrived. A Content-Length request gets
 * a Content-Length response; a chunked one gets a chunked response, whose
 * pieces on_body() then writes as they come.
 */
static void
begin_stream(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer *pre;
	const char *type;
	uint64_t body = 0;
	size_t plen;

	if ((pre = evbuffer_new()) == NULL) {
		reject(c, 500, "out of memory");
		return;
	}
	if (c->route == R_INFO) {
		add_info(c, pre);
		type = "text/plain; charset=utf-8";
	} else {
		type = "application/octet-stream";
	}
	plen = evbuffer_get_length(pre);
	if (c->parser.flags & F_CHUNKED) {
		c->chunked_out = 1;
		start_response(c, 200, type, -1);
		if (plen > 0 && !c->head_only) {
			evbuffer_add_printf(out, "%zx\r\n", plen);
			evbuffer_add_buffer(out, pre);
			ADDSTR(out, "\r\n");
		}
	} else {
		if (c->parser.flags & F_CONTENTLENGTH)
			body = c->parser.content_length;
		if (body > (uint64_t)INT64_MAX - plen) {
			evbuffer_free(pre);
			reject(c, 413, "request body too large");
			return;
		}
		start_response(c, 200, type, (int64_t)(body + plen));
		if (!c->head_only)
			evbuffer_add_buffer(out, pre);
	}
	evbuffer_free(pre);
}

/*
 * finish_request runs once the whole request (body included) is read: it
 * completes or produces the response. /data only gets its head here; the
 * body follows in C_GEN as the peer reads.
 */
static void
finish_request(struct conn *c)
{
	static const char data_usage[] = "usage: /data?size=N with 0 <= N <= 1073741824\n";
	struct evbuffer *out = bufferevent_get_output(c->bev);

	switch (c->route) {
	case R_INFO:
	case R_ECHO:
		if (c->chunked_out && !c->head_only)
			ADDSTR(out, "0\r\n\r\n");
		break;
	case R_HEALTH:
		respond(c, 200, "text/plain; charset=utf-8", "ok\n", 3);
		break;
	case R_API:
		respond_api(c);
		if (c->state != C_BODY)
			return; /* rejected */
		break;
	case R_DATA:
		if (!c->size_ok) {
			respond(c, 400, "text/plain; charset=utf-8", data_usage,
				sizeof(data_usage) - 1);
			break;
		}
		start_response(c, 200, "application/octet-stream", (int64_t)c->size);
		c->gen_off = 0;
		c->gen_left = c->head_only ? 0 : c->size;
		c->state = C_GEN;
		return;
	}
	request_done(c);
}

/* Parser callbacks. The head is parsed in one call over conn.head, so the
 * url and every header name arrive in one piece; only obsolete line folding
 * splits a value, and the value then spans its continuation lines. */
static int
on_url(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;

	if (c->url == NULL)
		c->url = at;
	c->urllen = (size_t)(at + len - c->url);
	return 0;
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	struct header *h;
	size_t cap;

	if (c->nhdrs == MAX_HEADERS) {
		c->too_many = 1;
		return -1;
	}
	if (c->nhdrs == c->hdrcap) {
		cap = c->hdrcap ? c->hdrcap * 2 : 32;
		if (cap > MAX_HEADERS)
			cap = MAX_HEADERS;
		if ((h = realloc(c->hdrs, cap * sizeof(*h))) == NULL)
			return -1;
		c->hdrs = h;
		c->hdrcap = cap;
	}
	h = &c->hdrs[c->nhdrs++];
	h->name = at;
	h->nlen = len;
	h->value = NULL;
	h->vlen = 0;
	return 0;
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	struct header *h;

	if (c->nhdrs == 0)
		return -1;
	h = &c->hdrs[c->nhdrs - 1];
	if (h->value == NULL)
		h->value = at;
	h->vlen = (size_t)(at + len - h->value);
	return 0;
}

static int
on_headers_complete(http_parser *p)
{
	struct conn *c = p->data;

	c->headers_done = 1;
	return 0;
}

/* on_body passes body bytes on to / and /echo responses, drops the rest. */
static int
on_body(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if ((c->route != R_INFO && c->route != R_ECHO) || c->head_only || len == 0)
		return 0;
	if (c->chunked_out) {
		evbuffer_add_printf(out, "%zx\r\n", len);
		evbuffer_add(out, at, len);
		ADDSTR(out, "\r\n");
	} else {
		evbuffer_add(out, at, len);
	}
	return 0;
}

/* Pausing makes http_parser_execute() stop right after this message, so
 * pipelined bytes behind it stay in the input buffer for the next head. */
static int
on_message_complete(http_parser *p)
{
	struct conn *c = p->data;

	c->message_done = 1;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* skip_blank_lines drops CR and LF before a request line (RFC 9112 2.2). */
static void
skip_blank_lines(struct evbuffer *in)
{
	char buf[64];
	ev_ssize_t n;
	size_t k;

	for (;;) {
		if ((n = evbuffer_copyout(in, buf, sizeof(buf))) <= 0)
			return;
		for (k = 0; k < (size_t)n && (buf[k] == '\r' || buf[k] == '\n'); k++)
			;
		evbuffer_drain(in, k);
		if (k < (size_t)n)
			return;
	}
}

/*
 * find_head_end searches the first limit bytes of in, from offset from, for
 * the empty line that ends a head ("\n\r\n" or "\n\n", as http_parser
 * accepts both). Returns 0 and sets *end to the head's length, or -1.
 */
static int
find_head_end(struct evbuffer *in, size_t from, size_t limit, size_t *end)
{
	struct evbuffer_ptr start, stop, crlf, lf;

	if (evbuffer_ptr_set(in, &start, from, EVBUFFER_PTR_SET) == -1 ||
	    evbuffer_ptr_set(in, &stop, limit, EVBUFFER_PTR_SET) == -1)
		return -1;
	crlf = evbuffer_search_range(in, "\n\r\n", 3, &start, &stop);
	if (crlf.pos != -1 &&
	    evbuffer_ptr_set(in, &stop, (size_t)crlf.pos + 2, EVBUFFER_PTR_SET) == -1)
		return -1;
	lf = evbuffer_search_range(in, "\n\n", 2, &start, &stop);
	if (lf.pos != -1)
		*end = (size_t)lf.pos + 2;
	else if (crlf.pos != -1)
		*end = (size_t)crlf.pos + 3;
	else
		return -1;
	return 0;
}

/*
 * read_head takes one complete request head off the input, parses it and
 * starts the response. Returns STEP_WAIT until a whole head is buffered;
 * bad or oversized heads are answered (400, 431) and close the connection.
 */
static enum step
read_head(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	http_parser *p = &c->parser;
	enum http_errno err;
	size_t len, end, n;

	if (c->scan == 0)
		skip_blank_lines(in);
	if ((len = evbuffer_get_length(in)) == 0)
		return STEP_WAIT;
	if (find_head_end(in, c->scan, len < MAX_HEAD ? len : MAX_HEAD, &end) == -1) {
		if (len >= MAX_HEAD) {
			reject(c, 431, "request head too large");
			return STEP_AGAIN;
		}
		c->scan = len > 2 ? len - 2 : 0;
		return STEP_WAIT;
	}
	if ((c->head = malloc(end)) == NULL) {
		reject(c, 503, "out of memory");
		return STEP_AGAIN;
	}
	c->headlen = (size_t)evbuffer_remove(in, c->head, end);
	c->scan = 0;

	http_parser_init(p, HTTP_REQUEST);
	p->data = c;
	n = http_parser_execute(p, &parser_settings, c->head, c->headlen);
	err = HTTP_PARSER_ERRNO(p);
	if (err == HPE_PAUSED) {
		http_parser_pause(p, 0);
	} else if (c->too_many) {
		reject(c, 431, "too many header fields");
		return STEP_AGAIN;
	} else if (err != HPE_OK || n != c->headlen || !c->headers_done) {
		c->headers_done = 0; /* the method is not known */
		reject(c, 400, err != HPE_OK ? http_errno_description(err) : "bad request head");
		return STEP_AGAIN;
	}

	/* We never switch protocols, and what follows an Upgrade or CONNECT
	 * head is not HTTP, so such a request is the connection's last. */
	c->keepalive = http_should_keep_alive(p) && !p->upgrade;
	c->head_only = p->method == HTTP_HEAD;
	if (p->method == HTTP_CONNECT) {
		reject(c, 405, "CONNECT is not supported");
		return STEP_AGAIN;
	}
	if ((p->flags & F_CHUNKED) &&
	    (p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0))) {
		/* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing. */
		reject(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
		return STEP_AGAIN;
	}
	c->route = route_of(c);
	c->state = C_BODY;
	if (!c->message_done && (p->http_major > 1 || p->http_minor >= 1)) {
		const struct header *h = find_header(c, "expect");
		const char *v;
		size_t vlen = 0;

		v = h ? header_value(h, &vlen) : "";
		if (vlen == 12 && strncasecmp(v, "100-continue", 12) == 0)
			ADDSTR(out, "HTTP/1.1 100 Continue\r\n\r\n");
	}
	if (c->route == R_INFO || c->route == R_ECHO) {
		begin_stream(c);
		if (c->state != C_BODY)
			return STEP_AGAIN; /* rejected */
	}
	if (c->message_done)
		finish_request(c);
	return STEP_AGAIN;
}

/*
 * read_body feeds buffered body bytes to the parser, at most FEED_STEP at a
 * time so that the caller can check output back-pressure in between.
 */
static enum step
read_body(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	const char *data;
	enum http_errno err;
	size_t len, n;

	if ((len = evbuffer_get_length(in)) == 0)
		return STEP_WAIT;
	if (len > FEED_STEP)
		len = FEED_STEP;
	if ((data = (const char *)evbuffer_pullup(in, (ev_ssize_t)len)) == NULL) {
		reject(c, 503, "out of memory");
		return STEP_AGAIN;
	}
	n = http_parser_execute(&c->parser, &parser_settings, data, len);
	err = HTTP_PARSER_ERRNO(&c->parser);
	evbuffer_drain(in, n);
	if (err == HPE_PAUSED) {
		http_parser_pause(&c->parser, 0);
	} else if (err != HPE_OK) {
		reject(c, 400, http_errno_description(err));
		return STEP_AGAIN;
	}
	if (c->message_done)
		finish_request(c);
	return STEP_AGAIN;
}

/* generate queues /data bytes until the output is full or all are queued. */
static enum step
generate(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t n;

	while (c->gen_left > 0 && evbuffer_get_length(out) < OUT_HIGH) {
		n = c->gen_left < PATTERN_LEN ? (size_t)c->gen_left : PATTERN_LEN;
		if (evbuffer_add_reference(out, pattern + c->gen_off % 26, n, NULL, NULL) == -1) {
			reject(c, 503, "out of memory");
			return STEP_AGAIN;
		}
		c->gen_off += n;
		c->gen_left -= n;
	}
	if (c->gen_left == 0)
		request_done(c);
	return STEP_AGAIN;
}

/*
 * conn_closing flushes the output, then half-closes and discards what the
 * peer still sends until it closes too (or LINGER_SECS / LINGER_MAX pass),
 * so that a final response is not lost to a reset. May free c.
 */
static void
conn_closing(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct timeval tv = {LINGER_SECS, 0};
	size_t len = evbuffer_get_length(in);

	if (c->state == C_CLOSING) {
		bufferevent_disable(c->bev, EV_READ);
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
			bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
			return; /* conn_writecb calls back when empty */
		}
		if (c->eof) {
			conn_free(c);
			return;
		}
		shutdown(bufferevent_getfd(c->bev), SHUT_WR);
		c->state = C_LINGER;
		bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
		bufferevent_set_timeouts(c->bev, &tv, NULL);
		bufferevent_enable(c->bev, EV_READ);
	}
	evbuffer_drain(in, len);
	c->lingered += len;
	if (c->lingered > LINGER_MAX)
		conn_free(c);
}

/*
 * conn_run drives the connection's state machine as far as the buffered
 * input and the output budget allow. Reading is enabled only while a step
 * waits for input, and producing stops while more than OUT_HIGH bytes are
 * unsent; conn_writecb resumes below OUT_LOW. May free c.
 */
static void
conn_run(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	enum step r = STEP_WAIT;

	for (;;) {
		if (c->state == C_CLOSING || c->state == C_LINGER) {
			conn_closing(c);
			return;
		}
		if (evbuffer_get_length(out) >= OUT_HIGH) {
			bufferevent_disable(c->bev, EV_READ);
			return;
		}
		switch (c->state) {
		case C_HEAD:
			r = read_head(c);
			break;
		case C_BODY:
			r = read_body(c);
			break;
		case C_GEN:
			r = generate(c);
			break;
		case C_CLOSING:
		case C_LINGER:
			break;
		}
		if (r == STEP_AGAIN)
			continue;
		if (c->eof) {
			/* Between requests this is a normal close; inside
			 * one, the request is cut short and so is its answer. */
			c->keepalive = 0;
			c->state = C_CLOSING;
			continue;
		}
		bufferevent_enable(c->bev, EV_READ);
		return;
	}
}

static void
conn_readcb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_run(arg);
}

static void
conn_writecb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_run(arg);
}

static void
conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if ((what & BEV_EVENT_EOF) && c->state != C_LINGER) {
		c->eof = 1;
		conn_run(c);
		return;
	}
	conn_free(c); /* error, timeout, or the peer closed while lingering */
}

/* conn_free closes the connection and frees everything it holds. */
static void
conn_free(struct conn *c)
{
	TAILQ_REMOVE(&c->w->conns, c, entry);
	bufferevent_free(c->bev);
	free(c->head);
	free(c->hdrs);
	free(c);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct whoami *w = arg;
	struct conn *c;
	struct timeval tv = {IDLE_SECS, 0};
	int on = 1;

	(void)l;
	(void)salen;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto fail;
	c->w = w;
	format_addr(sa, c->peer);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	if ((c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		goto fail;
	bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, IN_HIGH);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	TAILQ_INSERT_TAIL(&w->conns, c, entry);
	bufferevent_enable(c->bev, EV_READ);
	return;
fail:
	fprintf(stderr, "whoami: accept: out of memory\n");
	free(c);
	evutil_closesocket(fd);
}

/* On EMFILE and the like, stop accepting for a second instead of spinning. */
static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct whoami *w = arg;
	struct timeval tv = {1, 0};
	int err = EVUTIL_SOCKET_ERROR();
	size_t i;

	(void)l;
	fprintf(stderr, "whoami: accept: %s\n", evutil_socket_error_to_string(err));
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		for (i = 0; i < w->nlisteners; i++)
			evconnlistener_disable(w->listeners[i]);
		evtimer_add(w->resume_accept, &tv);
	}
}

static void
resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct whoami *w = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < w->nlisteners; i++)
		evconnlistener_enable(w->listeners[i]);
}

/*
 * listen_on binds spec and prints "listening ADDR:PORT" with the port the
 * kernel chose. IPv6 sockets are IPv6-only, so "[::]:P" and "0.0.0.0:P" can
 * be used together. Returns 0, or -1 after printing why.
 */
static int
listen_on(struct whoami *w, const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct evconnlistener *lev;
	char addr[ADDR_LEN];
	int fd = -1, on = 1, saved;

	if (parse_listen(spec, &ss, &sslen) == -1) {
		fprintf(stderr, "whoami: bad listen address '%s' (want IPv4:PORT or [IPv6]:PORT)\n",
			spec);
		return -1;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1)
		goto fail;
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1)
		goto fail;
	if (bind(fd, (struct sockaddr *)&ss, sslen) == -1 || listen(fd, SOMAXCONN) == -1)
		goto fail;
	sslen = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == -1)
		goto fail;
	lev = evconnlistener_new(w->base, accept_cb, w,
				 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (lev == NULL)
		goto fail;
	evconnlistener_set_error_cb(lev, accept_error_cb);
	w->listeners[w->nlisteners++] = lev;
	format_addr((struct sockaddr *)&ss, addr);
	printf("listening %s\n", addr);
	fflush(stdout);
	return 0;
fail:
	saved = errno;
	fprintf(stderr, "whoami: listen %s: %s\n", spec, strerror(saved));
	if (fd != -1)
		close(fd);
	return -1;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct whoami *w = arg;

	(void)sig;
	(void)what;
	event_base_loopbreak(w->base);
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: whoami [-v] [-l ADDR:PORT]... [-n NAME]\n"
		   "  -l ADDR:PORT  listen here (repeatable; 127.0.0.1:8081, [::1]:8081,\n"
		   "                :8081 for all IPv4; port 0 picks one). Default 127.0.0.1:8081\n"
		   "  -n NAME       name to report (default $WHOAMI_NAME, else the host name)\n"
		   "  -v            log each request to stderr\n"
		   "endpoints: / /health /data?size=N /echo /api\n");
}

int
main(int argc, char **argv)
{
	struct whoami w;
	struct conn *c;
	const char *specs[MAX_LISTEN];
	size_t nspecs = 0, i;
	int ch, rc = 1;

	memset(&w, 0, sizeof(w));
	TAILQ_INIT(&w.conns);
	w.ips_at = -1;
	while ((ch = getopt(argc, argv, "hl:n:v")) != -1) {
		switch (ch) {
		case 'l':
			if (nspecs == MAX_LISTEN) {
				fprintf(stderr, "whoami: at most %d -l options\n", MAX_LISTEN);
				return 2;
			}
			specs[nspecs++] = optarg;
			break;
		case 'n':
			w.name = optarg;
			break;
		case 'v':
			w.verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (nspecs == 0)
		specs[nspecs++] = "127.0.0.1:8081";
	if (gethostname(w.hostname, sizeof(w.hostname) - 1) == -1)
		snprintf(w.hostname, sizeof(w.hostname), "localhost");
	if (w.name == NULL || w.name[0] == '\0')
		w.name = getenv("WHOAMI_NAME");
	if (w.name == NULL || w.name[0] == '\0')
		w.name = w.hostname;
	for (i = 0; i < sizeof(pattern); i++)
		pattern[i] = (char)('a' + i % 26);
	signal(SIGPIPE, SIG_IGN);

	if ((w.base = event_base_new()) == NULL) {
		fprintf(stderr, "whoami: cannot create the event loop\n");
		goto out;
	}
	for (i = 0; i < nspecs; i++)
		if (listen_on(&w, specs[i]) == -1)
			goto out;
	w.sigint = evsignal_new(w.base, SIGINT, on_signal, &w);
	w.sigterm = evsignal_new(w.base, SIGTERM, on_signal, &w);
	w.resume_accept = evtimer_new(w.base, resume_accept_cb, &w);
	if (w.sigint == NULL || w.sigterm == NULL || w.resume_accept == NULL ||
	    evsignal_add(w.sigint, NULL) == -1 || evsignal_add(w.sigterm, NULL) == -1) {
		fprintf(stderr, "whoami: cannot set up signal handling\n");
		goto out;
	}
	if (event_base_dispatch(w.base) == -1) {
		fprintf(stderr, "whoami: event loop failed\n");
		goto out;
	}
	rc = 0;
out:
	while ((c = TAILQ_FIRST(&w.conns)) != NULL)
		conn_free(c);
	for (i = 0; i < w.nlisteners; i++)
		evconnlistener_free(w.listeners[i]);
	if (w.sigint != NULL)
		event_free(w.sigint);
	if (w.sigterm != NULL)
		event_free(w.sigterm);
	if (w.resume_accept != NULL)
		event_free(w.resume_accept);
	if (w.base != NULL)
		event_base_free(w.base);
	libevent_global_shutdown();
	return rc;
}
