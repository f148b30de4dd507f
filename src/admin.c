/*
 * admin.c: /healthz, /readyz and /metrics over evhttp, and the health
 * check client behind `gatekeeper health`.
 *
 * The server is deliberately small: GET and HEAD on three paths, short
 * plain-text answers, a bounded request size and timeout (evhttp's), and
 * it lives on the first worker's loop so a hung loop shows as a failed
 * /healthz. The client is blocking on purpose: it runs alone in a
 * HEALTHCHECK, connects with a deadline and reads one status line.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "clock.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "observed.h"
#include "resolver.h"
#include "worker.h"

struct admin {
	struct evhttp *http;
	struct gk *workers;
	int n;
};

static void
reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
      struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static void
unresolved_line(void *arg, const char *listener, const char *kind, const char *host, uint16_t port,
		const char *error)
{
	const char *why = error ? error : "first lookup in progress";

	if (port == 0)
		evbuffer_add_printf(arg, "listener %s: %s %s has no address yet (%s)\n", listener,
				    kind, host, why);
	else
		evbuffer_add_printf(arg, "listener %s: %s %s:%u has no address yet (%s)\n",
				    listener, kind, host, (unsigned)port, why);
}

/*
 * not_ready writes why gatekeeper is not ready into body, one line per
 * missing piece (an unbound listener, a fixed upstream name without an
 * address); returns 0 when it is ready. Names looked up for one
 * connection ("$host") never make it unready: an egress gateway asked for
 * a name that does not exist is still ready for the others.
 */
static int
not_ready(struct admin *a, struct evbuffer *body)
{
	const struct gk *gk = &a->workers[0];
	size_t missing = 0;

	/* Its own thread's worker: no lock to read its listeners. */
	evbuffer_add_printf(body, "not ready\n");
	for (size_t i = 0; i < worker_n_listeners(gk); i++) {
		const struct listener *l = worker_listener(gk, i);
		if (l == NULL) {
			evbuffer_add_printf(body, "listener %zu is not bound\n", i);
			missing++;
			continue;
		}
		missing += listener_unresolved(l, unresolved_line, body);
	}
	if (missing == 0)
		evbuffer_drain(body, evbuffer_get_length(body));
	return missing > 0;
}

/* json_string writes s as a JSON string (names are normalized already; escape anyway). */
static void
json_string(struct evbuffer *out, const char *s)
{
	evbuffer_add(out, "\"", 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			evbuffer_add_printf(out, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			evbuffer_add_printf(out, "\\u%04x", c);
		else
			evbuffer_add(out, s, 1);
	}
	evbuffer_add(out, "\"", 1);
}

static const char *
rfc3339(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

/*
 * observed_json writes the observed table as a JSON array, one object per
 * line, highest count first. Returns -1 when out of memory.
 */
static int
observed_json(struct evbuffer *out)
{
	size_t n;
	struct observed_entry *e = observed_snapshot(&n);
	char addr[NET_ADDRSTRLEN], first[32], last[32];

	if (e == NULL && n > 0)
		return -1;
	evbuffer_add_printf(out, "[");
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(out, "%s\n  {\"listener\": ", i ? "," : "");
		json_string(out, e[i].listener);
		evbuffer_add_printf(out, ", \"mode\": \"%s\", \"name\": ", e[i].mode);
		if (e[i].name[0] != '\0')
			json_string(out, e[i].name);
		else
			evbuffer_add_printf(out, "null");
		evbuffer_add_printf(
		    out,
		    ", \"port\": %u, \"source\": \"%s\", \"reason\": \"%s\", \"count\": %" PRIu64
		    ", \"first_seen\": \"%s\", \"last_seen\": \"%s\"}",
		    e[i].port,
		    net_addr_format((const struct sockaddr *)&e[i].source, addr, sizeof(addr)),
		    reason_name(e[i].reason), e[i].count,
		    rfc3339(e[i].first_seen, first, sizeof(first)),
		    rfc3339(e[i].last_seen, last, sizeof(last)));
	}
	evbuffer_add_printf(out, "%s]\n", n ? "\n" : "");
	free(e);
	return 0;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evbuffer *body = evbuffer_new();

	if (body == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		evbuffer_add_printf(body, "use GET\n");
		reply(req, 405, "Method Not Allowed", "text/plain", body);
	} else if (path != NULL && strcmp(path, "/healthz") == 0) {
		evbuffer_add_printf(body, "ok\n");
		reply(req, 200, "OK", "text/plain", body);
	} else if (path != NULL && strcmp(path, "/readyz") == 0) {
		if (not_ready(a, body))
			reply(req, 503, "Service Unavailable", "text/plain", body);
		else {
			evbuffer_add_printf(body, "ready\n");
			reply(req, 200, "OK", "text/plain", body);
		}
	} else if (path != NULL && strcmp(path, "/metrics") == 0) {
		int rc;
		/* A reloading worker swaps its listeners under this lock. */
		worker_listeners_lock(&a->workers[0]);
		rc = metrics_render(body, a->workers, a->n);
		worker_listeners_unlock(&a->workers[0]);
		if (rc == -1) {
			evhttp_send_error(req, 500, "out of memory");
		} else {
			reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
		}
	} else if (path != NULL && strcmp(path, "/observed") == 0) {
		if (observed_json(body) == -1)
			evhttp_send_error(req, 500, "out of memory");
		else
			reply(req, 200, "OK", "application/json", body);
	} else {
		evbuffer_add_printf(body,
				    "not found: try /healthz, /readyz, /metrics or /observed\n");
		reply(req, 404, "Not Found", "text/plain", body);
	}
	evbuffer_free(body);
}

struct admin *
admin_new(const struct sockaddr *addr, socklen_t len, struct gk *workers, int n, char *err,
	  size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));
	char abuf[NET_ADDRSTRLEN];
	int fd;

	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->workers = workers;
	a->n = n;
	if ((a->http = evhttp_new(worker_base(&workers[0]))) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(a);
		return NULL;
	}
	evhttp_set_timeout(a->http, 10);
	evhttp_set_max_headers_size(a->http, 8192);
	evhttp_set_max_body_size(a->http, 0);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
						EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
	evhttp_set_gencb(a->http, on_request, a);
	if ((fd = net_listen(addr, len, 64, 0, err, errlen)) == -1 ||
	    evhttp_accept_socket_with_handle(a->http, fd) == NULL) {
		if (fd != -1) {
			snprintf(err, errlen, "cannot serve on %s",
				 net_format(addr, abuf, sizeof(abuf)));
			close(fd);
		}
		admin_free(a);
		return NULL;
	}
	log_kv(LOG_LEVEL_INFO, "admin listening",
	       LOG_STR("addr", net_format(addr, abuf, sizeof(abuf))));
	return a;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->http != NULL)
		evhttp_free(a->http);
	free(a);
}

/* ---- the client ---- */

/* wait_fd polls fd for events until deadline. Returns 1 when ready, 0 on timeout, -1 on error. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = {fd, events, 0};
	int64_t left;
	int rc;

	while ((left = deadline - clock_now_ms()) > 0) {
		rc = poll(&p, 1, (int)left);
		if (rc > 0)
			return 1;
		if (rc == -1 && errno != EINTR)
			return -1;
	}
	return 0;
}

int
admin_get(const struct sockaddr *addr, socklen_t len, const char *path, int timeout_ms, char **body,
	  char *why, size_t whylen)
{
	struct sockaddr_storage to;
	int64_t deadline = clock_now_ms() + timeout_ms;
	char request[300], abuf[NET_ADDRSTRLEN], *buf = NULL, *grown, *head_end;
	size_t got = 0, cap = 0;
	ssize_t n;
	int fd, err, status = -1, rlen;

	*body = NULL;
	/* A wildcard listen address is reached through this host's loopback. */
	memcpy(&to, addr, len);
	if (to.ss_family == AF_INET && ((struct sockaddr_in *)&to)->sin_addr.s_addr == INADDR_ANY)
		((struct sockaddr_in *)&to)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (to.ss_family == AF_INET6 &&
		 IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&to)->sin6_addr))
		((struct sockaddr_in6 *)&to)->sin6_addr = in6addr_loopback;
	net_format((struct sockaddr *)&to, abuf, sizeof(abuf));
	rlen =
	    snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\nHost: gatekeeper\r\n\r\n", path);
	if ((fd = net_connect((struct sockaddr *)&to, len)) == -1) {
		snprintf(why, whylen, "%s: %s", abuf, strerror(errno));
		return -1;
	}
	if (wait_fd(fd, POLLOUT, deadline) != 1) {
		snprintf(why, whylen, "%s: no answer within %d ms", abuf, timeout_ms);
		goto done;
	}
	if ((err = net_connect_result(fd)) != 0) {
		snprintf(why, whylen, "%s: %s", abuf, strerror(err));
		goto done;
	}
	if (write(fd, request, (size_t)rlen) != rlen) {
		snprintf(why, whylen, "%s: %s", abuf, strerror(errno));
		goto done;
	}
	/* HTTP/1.0: the answer ends where the connection does. */
	for (;;) {
		if (got + 4096 + 1 > cap) {
			if (cap >= ADMIN_GET_MAX) {
				snprintf(why, whylen, "%s: answer larger than %d bytes", abuf,
					 ADMIN_GET_MAX);
				goto done;
			}
			if ((grown = realloc(buf, cap = cap ? cap * 2 : 8192)) == NULL) {
				snprintf(why, whylen, "out of memory");
				goto done;
			}
			buf = grown;
		}
		if (wait_fd(fd, POLLIN, deadline) != 1) {
			snprintf(why, whylen, "%s: no answer within %d ms", abuf, timeout_ms);
			goto done;
		}
		if ((n = read(fd, buf + got, cap - 1 - got)) == 0)
			break;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			snprintf(why, whylen, "%s: %s", abuf, strerror(errno));
			goto done;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (got < 12 || strncmp(buf, "HTTP/1.", 7) != 0 ||
	    (head_end = strstr(buf, "\r\n\r\n")) == NULL) {
		snprintf(why, whylen, "%s: %s answered \"%.60s\"", abuf, path, got ? buf : "");
		goto done;
	}
	status = atoi(buf + 9);
	memmove(buf, head_end + 4, got - (size_t)(head_end + 4 - buf) + 1);
	*body = buf;
	buf = NULL;
done:
	free(buf);
	close(fd);
	return status;
}

int
admin_health(const struct sockaddr *addr, socklen_t len, int timeout_ms, char *why, size_t whylen)
{
	char *body;
	int status = admin_get(addr, len, "/healthz", timeout_ms, &body, why, whylen);

	free(body);
	if (status == -1)
		return -1;
	if (status != 200) {
		snprintf(why, whylen, "/healthz answered %d", status);
		return -1;
	}
	return 0;
}
