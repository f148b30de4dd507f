/*
 * session.c: the life of one connection.
 *
 *   accept -> [PROXY header in] -> sniff (TLS SNI | HTTP Host | nothing)
 *          -> policy_route -> addresses from the resolver (never block on
 *             DNS) -> policy_guard on each (egress)
 *          -> connect, trying the next address on failure -> [PROXY out]
 *          -> relay both ways -> session_close(reason)
 *
 * This file is the state machine only: every decision (where a name goes,
 * which address may be dialed, whose PROXY or forwarding headers count,
 * whether proxy credentials are good) is a question to the listener's
 * compiled policy (policy.h), and how a refusal is told to the client
 * comes from the reason's row (reason.h).
 *
 * One timer serves every phase; what its expiry means depends on the state
 * (sniff timeout, first lookup of a "$host" name, connect attempt, refusal
 * flush). The connect phase shares connect_timeout between the addresses
 * still to try, so one blackholed address cannot eat the whole budget while
 * a healthy one waits, and a failed connect asks the resolver for a fresh
 * lookup, because in Docker it usually means a restarted container. Bytes
 * read while sniffing stay in the client's input buffer and are the first
 * thing the relay forwards. Every path out goes through session_close.
 *
 * The relay owns both sockets from the start; until relay_start their
 * events come to session_io, which reads the head while sniffing, sees the
 * upstream's connect finish, and writes refusals.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "worker.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "policy.h"
#include "pool.h"
#include "observed.h"
#include "proxyproto.h"
#include "reason.h"
#include "relay.h"
#include "resolver.h"
#include "route.h"
#include "session.h"
#include "sniff_http.h"
#include "sniff_tls.h"

/* How long a refusal (TLS alert, HTTP error) may take to reach the client. */
#define REFUSAL_FLUSH_MS 2000
/* The longest request head a connect listener reads. */
#define CONNECT_MAX_HEAD 16384

enum session_state {
	SESSION_SNIFFING,  /* reading the PROXY header and/or the first bytes */
	SESSION_RESOLVING, /* waiting for the first answer for a $host name */
	SESSION_CONNECTING,
	SESSION_RELAYING,
	SESSION_REFUSING, /* flushing a refusal, then closing */
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct gk *gk;
	struct listener *listener;
	struct config *cfg; /* a reference: conf points into it */
	const struct config_listener *conf;
	enum session_state state;
	struct sockaddr_storage peer;	/* the TCP peer */
	struct sockaddr_storage client; /* the client: peer, or what PROXY said */
	struct sockaddr_storage local;	/* where the client connected to (PROXY out only) */
	int proxied;			/* client and local came from a PROXY header */
	int proxy_done;
	int client_checked;	       /* client_sources and the per-source limit, done */
	int source_counted;	       /* holds a count of max_connections_per_source */
	enum reason source_refusal;    /* told once the first message is in, or REASON_NONE */
	enum reason source_would;      /* report mode: 'sources' refused it, let through */
	enum reason would_deny;	       /* report mode: what it was let through despite */
	int would_noted;	       /* and it is in the observed table */
	char name[ROUTE_NAME_MAX + 1]; /* sniffed, normalized; "" if none */
	enum decision decision;
	char rule[ROUTE_NAME_MAX + 16];	      /* the route pattern or allow entry that matched */
	struct policy_verdict verdict;	      /* where the policy sends the client */
	int route;			      /* verdict.route: -1 = listener upstream or allow */
	const struct config_hostport *target; /* verdict.target */
	uint16_t want_port;		      /* CONNECT / absolute-form: the port asked for */
	int connect_method;		      /* CONNECT (answer 200, drop the head) */
	size_t head_len;
	struct resolver_name *upstream_name; /* watched by us (a reload may drop the listener's) */
	struct resolver_name *dynamic;	     /* our own watch of a $host name */
	struct resolver_waiter waiter;
	uint8_t *in;	       /* bytes read while sniffing (in_cap), until the relay starts */
	size_t in_cap;	       /* a PROXY header, then a hello or a request head */
	size_t in_off, in_len; /* in[in_off .. in_len) is not consumed yet */
	char out[512];	       /* a refusal on its way to the client */
	size_t out_off, out_len;
	struct resolver_addrs *addrs;
	size_t first, tried; /* round-robin start, addresses tried so far */
	int timed_out;	     /* some attempt ran out of time */
	int upstream_set;    /* upstream holds the address tried or connected */
	struct sockaddr_storage upstream;
	char error[96]; /* last connect error, for the access line */
	enum reason refusal_reason;
	struct timeval started, deadline;
	struct event *timer; /* in the session's own storage (session_size) */
	struct relay relay;
	struct http_stream *http; /* mode http, once relaying */
	struct relay_filter filter;
};

/*
 * A session is one object of its worker's session pool: the struct, then
 * its timer's event, then its relay's events (see pool.h for why they are
 * not in malloc's heap). What a session still takes from malloc is either
 * short-lived (the sniffed head, bytes queued behind a slow peer) or small
 * (an egress session's checked addresses), and the heap trim covers it.
 */
static size_t
timer_offset(void)
{
	return pool_align(sizeof(struct session));
}

static size_t
relay_events_offset(void)
{
	return timer_offset() + pool_align(event_get_struct_event_size());
}

size_t
session_size(void)
{
	return relay_events_offset() + relay_events_size();
}

static void connect_next(struct session *s);
static void note_would_deny(struct session *s, enum reason why, const char *name, uint16_t port);
static void session_fail(struct session *s, enum reason reason);

static void
arm_timer(struct session *s, int64_t ms)
{
	struct timeval tv = clock_tv(ms);

	evtimer_add(s->timer, &tv);
}

/*
 * requested_port is the upstream port the session is (or would have been)
 * for: the chosen target's, the one a proxy client asked for, or the one an
 * allow entry would use. 0 when none applies.
 */
static uint16_t
requested_port(const struct session *s)
{
	if (s->target != NULL)
		return s->target->port;
	if (s->want_port != 0)
		return s->want_port;
	if (s->conf->n_allow > 0)
		return s->conf->port ? (uint16_t)s->conf->port
				     : net_port(listener_bound(s->listener));
	return 0;
}

/* listen_port: the port the client connected to (an allow entry's upstream port by default). */
static uint16_t
listen_port(const struct session *s)
{
	return net_port(listener_bound(s->listener));
}

/* proxy_requests: a connect session serving absolute-form requests (not a CONNECT tunnel). */
static int
proxy_requests(const struct session *s)
{
	return s->conf->mode == CONFIG_MODE_CONNECT && s->head_len > 0 && !s->connect_method;
}

static void
log_access(struct session *s, enum reason reason)
{
	char client[NET_ADDRSTRLEN], upstream[NET_ADDRSTRLEN], peer[NET_ADDRSTRLEN];
	struct log_field f[17];
	struct timeval now;
	uint16_t port;
	size_t n = 0;

	clock_now_tv(&now);
	f[n++] = LOG_STR("listener", s->conf->name);
	f[n++] =
	    LOG_STR("client", net_format((struct sockaddr *)&s->client, client, sizeof(client)));
	if (s->proxied)
		f[n++] =
		    LOG_STR("peer", net_format((struct sockaddr *)&s->peer, peer, sizeof(peer)));
	f[n++] = LOG_STR("name", s->name[0] ? s->name : NULL);
	f[n++] = LOG_STR("decision", decision_name(s->decision));
	if ((port = requested_port(s)) != 0)
		f[n++] = LOG_NUM("port", port);
	f[n++] = LOG_STR("rule", s->rule[0] ? s->rule : NULL);
	f[n++] = LOG_STR("upstream", s->upstream_set ? net_format((struct sockaddr *)&s->upstream,
								  upstream, sizeof(upstream))
						     : "-");
	f[n++] = LOG_NUM("bytes_in", s->relay.bytes[RELAY_CLIENT]);
	f[n++] = LOG_NUM("bytes_out", s->relay.bytes[RELAY_UPSTREAM]);
	f[n++] = LOG_NUM("duration_ms", clock_ms_between(&s->started, &now));
	if (s->conf->mode == CONFIG_MODE_HTTP || proxy_requests(s))
		f[n++] = LOG_NUM("requests", s->http ? http_stream_requests(s->http) : 0);
	if (s->decision == DECISION_WOULD_DENY) {
		/* Report mode: why enforce mode would have refused it, and how it really ended. */
		f[n++] = LOG_STR("reason", reason_name(s->would_deny));
		f[n++] = LOG_STR("end", reason_name(reason));
	} else {
		f[n++] = LOG_STR("reason", reason_name(reason));
	}
	if (s->error[0] != '\0')
		f[n++] = LOG_STR("error", s->error);
	log_fields(LOG_LEVEL_INFO, "access", f, n);
}

void
session_close(struct session *s, enum reason reason)
{
	struct gk *gk = s->gk;
	struct listener_outcome outcome;

	/* A would-deny that ended before an address passed the guard (none found, say). */
	if (s->decision == DECISION_WOULD_DENY && !s->would_noted)
		note_would_deny(s, s->would_deny, s->name[0] ? s->name : NULL, requested_port(s));
	log_access(s, reason);
	relay_free(&s->relay);
	http_stream_release(s->http);
	pool_free(&gk->http_pool, s->http);
	free(s->in);
	resolver_wait_cancel(&s->waiter);
	event_del(s->timer);
	resolver_addrs_release(s->addrs);
	resolver_unwatch(s->upstream_name);
	resolver_unwatch(s->dynamic);
	if (s->source_counted)
		listener_source_release(s->listener, (const struct sockaddr *)&s->client);
	config_unref(s->cfg);
	TAILQ_REMOVE(&gk->sessions, s, entry);
	gk->n_sessions--;
	outcome.decision = s->decision;
	outcome.reason = s->decision == DECISION_WOULD_DENY ? s->would_deny : reason;
	outcome.bytes_in = s->relay.bytes[RELAY_CLIENT];
	outcome.bytes_out = s->relay.bytes[RELAY_UPSTREAM];
	listener_session_end(s->listener, &outcome);
	pool_free(&gk->session_pool, s);
	worker_session_ended(gk);
}

void
session_close_all(struct gk *gk, enum reason reason)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&gk->sessions)) != NULL)
		session_close(s, reason);
}

/* ---- refusals ---- */

/* refusal_write writes what is left of the refusal; the session closes once it is out. */
static void
refusal_write(struct session *s)
{
	ssize_t n =
	    relay_write(&s->relay, RELAY_CLIENT, s->out + s->out_off, s->out_len - s->out_off);

	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return; /* the client's next write edge brings us back */
	if (n > 0 && (s->out_off += (size_t)n) < s->out_len)
		return;
	session_close(s, s->refusal_reason);
}

/* refuse sends bytes to the client, then closes with reason once they are out. */
static void
refuse(struct session *s, const void *bytes, size_t len, enum reason reason)
{
	s->state = SESSION_REFUSING;
	s->refusal_reason = reason;
	if (len > sizeof(s->out))
		len = sizeof(s->out);
	memcpy(s->out, bytes, len);
	s->out_len = len;
	s->out_off = 0;
	if (relay_arm(&s->relay, RELAY_CLIENT) == -1) {
		session_close(s, reason);
		return;
	}
	arm_timer(s, REFUSAL_FLUSH_MS);
	refusal_write(s);
}

/*
 * session_fail ends a session that has not started relaying. Before the
 * connection closes, an HTTP client gets a short error response and a TLS
 * client the alert of the reason's row (unrecognized_name for a name with
 * no route, ...), so both see why. PROXY errors get nothing: the peer is a
 * proxy, not a client.
 */
static void
session_fail(struct session *s, enum reason reason)
{
	if ((s->conf->mode == CONFIG_MODE_HTTP || s->conf->mode == CONFIG_MODE_CONNECT) &&
	    s->proxy_done) {
		char buf[512];
		size_t n =
		    http_refusal(reason, s->conf->mode == CONFIG_MODE_CONNECT, buf, sizeof(buf));
		if (n > 0) {
			refuse(s, buf, n, reason);
			return;
		}
	}
	if (s->conf->mode == CONFIG_MODE_TLS) {
		uint8_t alert[SNIFF_TLS_ALERT_LEN], desc = reason_info(reason)->tls_alert;
		if (desc != 0) {
			refuse(s, alert, sniff_tls_alert(alert, sizeof(alert), desc), reason);
			return;
		}
	}
	session_close(s, reason);
}

/* deny fails the session for a policy refusal, recording the decision its reason's row gives. */
static void
deny(struct session *s, enum reason why)
{
	s->decision = reason_info(why)->decision;
	session_fail(s, why);
}

/* ---- sources ---- */

/* client_source: the client, as the policy sees it (names resolved as of now). */
static struct policy_source
client_source(const struct session *s)
{
	struct policy_source src = {(const struct sockaddr *)&s->client,
				    listener_source_names(s->listener)};

	return src;
}

/*
 * source_refused refuses a client on account of who it is. tcp, and a tls
 * client over its limit, are closed at once; http and connect clients
 * hear why after their request head, and a tls client not among the
 * sources gets its access_denied alert after the ClientHello. Returns 1
 * when the session is gone.
 */
static int
source_refused(struct session *s, enum reason why)
{
	if (why == REASON_SOURCE_DENIED && s->conf->report) {
		s->source_would = why; /* noted once the destination is known */
		return 0;
	}
	if (s->conf->mode == CONFIG_MODE_HTTP || s->conf->mode == CONFIG_MODE_CONNECT ||
	    (s->conf->mode == CONFIG_MODE_TLS && why == REASON_SOURCE_DENIED)) {
		if (s->source_refusal == REASON_NONE)
			s->source_refusal = why;
		return 0;
	}
	deny(s, why);
	return 1;
}

/*
 * admit_client checks the client as gatekeeper knows it (what a PROXY
 * header said, else the peer) once: client_sources, then the per-source
 * limit, which a refused client never takes a count of. Returns 1 when the
 * session is gone.
 */
static int
admit_client(struct session *s)
{
	struct policy_source client = client_source(s);
	enum reason why;

	s->client_checked = 1;
	if (s->source_refusal != REASON_NONE)
		return 0;
	if (!policy_client_admitted(s->conf->policy, &client) &&
	    source_refused(s, REASON_SOURCE_DENIED))
		return 1;
	if (s->source_refusal != REASON_NONE)
		return 0;
	why = listener_source_acquire(s->listener, s->conf, (const struct sockaddr *)&s->client);
	if (why == REASON_OUT_OF_MEMORY) {
		session_close(s, why);
		return 1;
	}
	if (why != REASON_NONE)
		return source_refused(s, why);
	s->source_counted = s->conf->max_connections_per_source > 0;
	return 0;
}

/*
 * note_would_deny records what report mode let through: the observed
 * table (name, port, client) and the listener's count.
 */
static void
note_would_deny(struct session *s, enum reason why, const char *name, uint16_t port)
{
	s->would_noted = 1;
	observed_record(s->conf->name, config_mode_name(s->conf->mode), name, port,
			(const struct sockaddr *)&s->client, why);
	listener_count_would_deny(s->listener);
}

/* ---- connecting ---- */

static void
on_relay_done(void *arg, enum reason reason)
{
	session_close(arg, reason);
}

static void
set_error(struct session *s, int err)
{
	snprintf(s->error, sizeof(s->error), "%s", strerror(err));
}

/* upstream_failed drops the current attempt and moves on to the next address. */
static void
upstream_failed(struct session *s)
{
	listener_connect_failed(s->listener);
	relay_close_side(&s->relay, RELAY_UPSTREAM);
	resolver_refresh(s->upstream_name);
	connect_next(s);
}

static int
proxy_send_version(const struct session *s)
{
	if (s->route >= 0 && s->conf->routes[s->route].send != CONFIG_PROXY_INHERIT)
		return s->conf->routes[s->route].send;
	return s->conf->proxy.send;
}

/* send_proxy_header queues the PROXY header for the upstream, if configured. */
static int
send_proxy_header(struct session *s)
{
	uint8_t buf[PROXYPROTO_V2_MAX > PROXYPROTO_V1_MAX ? PROXYPROTO_V2_MAX : PROXYPROTO_V1_MAX];
	const struct sockaddr *src = (const struct sockaddr *)&s->client;
	const struct sockaddr *dst = (const struct sockaddr *)&s->local;
	socklen_t llen = sizeof(s->local);
	int version = proxy_send_version(s);
	size_t n;

	if (version == CONFIG_PROXY_NONE)
		return 0;
	/* The address the client connected to, unless a PROXY header gave it. */
	if (!s->proxied &&
	    getsockname(s->relay.end[RELAY_CLIENT].fd, (struct sockaddr *)&s->local, &llen) == -1)
		memcpy(&s->local, listener_bound(s->listener), sizeof(s->local));
	switch (version) {
	case CONFIG_PROXY_V1:
		n = proxyproto_write_v1(buf, sizeof(buf), src, dst);
		break;
	case CONFIG_PROXY_V2:
		n = proxyproto_write_v2(buf, sizeof(buf), src, dst);
		break;
	default:
		return 0;
	}
	return relay_queue(&s->relay, RELAY_UPSTREAM, buf, n, 0);
}

/* ---- mode http ---- */

static void
arm_relay_timer(struct session *s)
{
	struct timeval now;
	int64_t next = -1, ms;

	clock_now_tv(&now);
	if (s->conf->idle_timeout > 0)
		next = s->conf->idle_timeout - relay_idle_ms(&s->relay);
	if (s->http != NULL && http_stream_deadline(s->http, &now, &ms) && (next < 0 || ms < next))
		next = ms;
	if (next >= 0)
		arm_timer(s, next < 1 ? 1 : next);
	else
		evtimer_del(s->timer);
}

static int
http_send(void *arg, int to, const void *data, size_t len)
{
	struct session *s = arg;

	return relay_queue(&s->relay, to, data, len, 0);
}

/*
 * http_admit decides whether a later request on a kept-alive connection
 * may go where the connection goes: its Host must pick the same route (or
 * the same allow entry and name). Anything else would reach the wrong
 * upstream, so it is refused instead.
 */
/*
 * proxy_admit decides a later absolute-form request on a connect listener
 * on its own: its form, the proxy credentials, the name and port. One
 * for the connection's origin goes on; one for another origin never rides
 * this upstream connection: refused as not_allowed when the policy would
 * refuse it anyway, else as misdirected (421: the client asks again on a
 * new connection).
 */
static enum reason
proxy_admit(struct session *s, const struct sniff_http_request *req, const uint8_t *buf)
{
	char name[ROUTE_NAME_MAX + 1] = "";
	struct policy_verdict v;
	struct policy_source client;
	enum reason why;
	uint16_t port;

	if (policy_proxy_request(s->conf->policy, req, buf, &why) == -1)
		return why;
	if (route_normalize_name(req->host, req->host_len, name, sizeof(name)) == -1)
		return REASON_MALFORMED;
	port = req->port ? req->port : req->https ? 443 : 80;
	if (port == s->want_port && strcmp(name, s->name) == 0)
		return REASON_NONE;
	client = client_source(s);
	if (policy_route(s->conf->policy, name, port, listen_port(s), &client, &v) == -1) {
		s->decision = reason_info(v.refusal)->decision;
		return v.refusal == REASON_SOURCE_DENIED ? v.refusal : REASON_NOT_ALLOWED;
	}
	return REASON_MISDIRECTED;
}

static enum reason
http_admit(void *arg, const struct sniff_http_request *req, const uint8_t *buf)
{
	struct session *s = arg;
	char name[ROUTE_NAME_MAX + 1] = "";
	struct policy_verdict v;
	struct policy_source client;
	int rc;

	if (s->conf->mode == CONFIG_MODE_CONNECT)
		return proxy_admit(s, req, buf);
	if (req->host_len == 0 && req->version_minor == 1)
		return REASON_NO_NAME;
	if (req->host_len > 0 &&
	    route_normalize_name(req->host, req->host_len, name, sizeof(name)) == -1)
		return REASON_MALFORMED;
	client = client_source(s);
	rc = policy_route(s->conf->policy, name[0] ? name : NULL, s->want_port, listen_port(s),
			  &client, &v);
	if (rc == -1 && v.refusal == REASON_SOURCE_DENIED) {
		s->decision = reason_info(v.refusal)->decision;
		return v.refusal;
	}
	if (!v.matched && v.would_deny == REASON_NONE && s->conf->upstream.host == NULL)
		return name[0] ? REASON_NO_ROUTE : REASON_NO_NAME;
	/* The same rule, and for "$host" the same name: else another upstream. */
	if (v.route != s->verdict.route || v.allow != s->verdict.allow ||
	    v.would_deny != s->verdict.would_deny ||
	    (s->target->sniffed_host && strcmp(name, s->name) != 0))
		return REASON_MISDIRECTED;
	if (v.would_deny != REASON_NONE)
		note_would_deny(s, v.would_deny, name[0] ? name : NULL, requested_port(s));
	return REASON_NONE;
}

static void
http_end(void *arg, enum reason reason)
{
	struct session *s = arg;

	relay_end(&s->relay, reason);
}

static void
http_raw(void *arg)
{
	struct session *s = arg;

	relay_set_filter(&s->relay, NULL);
}

static void
http_rearm(void *arg)
{
	arm_relay_timer(arg);
}

static const struct http_ops http_ops = {
    .send = http_send,
    .admit = http_admit,
    .end = http_end,
    .raw = http_raw,
    .rearm = http_rearm,
};

static void
http_filter_bytes(void *arg, int from, const uint8_t *data, size_t len)
{
	struct session *s = arg;
	struct timeval now;

	clock_now_tv(&now);
	http_stream_bytes(s->http, from, data, len, &now);
}

static int
http_filter_may_read(void *arg, int from)
{
	struct session *s = arg;

	return http_stream_may_read(s->http, from);
}

/* http_start puts an http_stream between the sides. Returns 0 or -1. */
static int
http_start(struct session *s)
{
	struct http_peer peer = {
	    (const struct sockaddr *)&s->client,
	    policy_forwarding_trusted(s->conf->policy, (const struct sockaddr *)&s->peer),
	    s->conf->mode == CONFIG_MODE_CONNECT};
	struct timeval now;

	clock_now_tv(&now);
	if ((s->http = http_stream_init(pool_alloc(&s->gk->http_pool), &s->conf->http, &peer,
					&http_ops, s, &now)) == NULL)
		return -1;
	s->filter.bytes = http_filter_bytes;
	s->filter.may_read = http_filter_may_read;
	s->filter.arg = s;
	relay_set_filter(&s->relay, &s->filter);
	return 0;
}

/*
 * connected starts the relay: first what gatekeeper itself says (the
 * CONNECT answer to the client, a PROXY header to the upstream), then the
 * bytes read while sniffing, then whatever the peers send.
 */
static void
connected(struct session *s)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

	evtimer_del(s->timer);
	s->error[0] = '\0';
	s->state = SESSION_RELAYING;
	if (s->connect_method) {
		/* The CONNECT head is for us; the tunnel starts after it. */
		s->in_off += s->head_len;
		if (relay_queue(&s->relay, RELAY_CLIENT, ok, sizeof(ok) - 1, 0) == -1)
			goto oom;
	}
	if (send_proxy_header(s) == -1)
		goto oom;
	if (s->conf->mode == CONFIG_MODE_HTTP || proxy_requests(s)) {
		/* The first request goes through the stream like every later one. */
		if (http_start(s) == -1)
			goto oom;
		s->relay.bytes[RELAY_CLIENT] += s->in_len - s->in_off;
		http_filter_bytes(s, RELAY_CLIENT, s->in + s->in_off, s->in_len - s->in_off);
	} else if (relay_queue(&s->relay, RELAY_UPSTREAM, s->in + s->in_off, s->in_len - s->in_off,
			       1) == -1) {
		goto oom;
	}
	free(s->in);
	s->in = NULL;
	s->in_off = s->in_len = 0;
	arm_relay_timer(s);
	/* From here the relay may finish, and free s, at any time. */
	if (relay_start(&s->relay, (enum relay_splice)s->conf->splice) == -1)
		goto oom;
	return;
oom:
	session_close(s, REASON_OUT_OF_MEMORY);
}

/* upstream_io: the upstream socket being connected had an event. */
static void
upstream_io(struct session *s, short what)
{
	int err;

	if (!(what & EV_WRITE))
		return;
	if ((err = net_connect_result(s->relay.end[RELAY_UPSTREAM].fd)) == 0) {
		connected(s);
		return;
	}
	set_error(s, err);
	log_kv(LOG_LEVEL_DEBUG, "connect failed", LOG_STR("listener", s->conf->name),
	       LOG_STR("error", s->error));
	upstream_failed(s);
}

/*
 * connect_next starts a connection to the next untried address, giving it
 * an equal share of the time left. When none is left, the session fails
 * with connect_timeout if any attempt timed out, else connect_failed.
 */
static void
connect_next(struct session *s)
{
	struct timeval now;
	int64_t left, share;
	int fd;

	clock_now_tv(&now);
	left = clock_ms_between(&now, &s->deadline);
	while (s->tried < s->addrs->n) {
		size_t i = (s->first + s->tried) % s->addrs->n;
		size_t remaining = s->addrs->n - s->tried;
		struct sockaddr *sa = (struct sockaddr *)&s->addrs->addr[i];

		if (left <= 0)
			break;
		s->tried++;
		memcpy(&s->upstream, sa, sizeof(s->upstream));
		s->upstream_set = 1;
		if ((fd = net_connect(sa, net_sockaddr_len(sa))) == -1) {
			set_error(s, errno);
			listener_connect_failed(s->listener);
			/* Out of fds: take no more clients for a moment either. */
			listener_out_of_resources(s->listener, errno);
			continue;
		}
		/* Its first write edge says how the connect ended (upstream_io). */
		if (relay_attach(&s->relay, RELAY_UPSTREAM, fd, 1) == -1) {
			session_close(s, REASON_OUT_OF_MEMORY);
			return;
		}
		share = left / (int64_t)remaining;
		arm_timer(s, share < 1 ? 1 : share);
		return;
	}
	if (left <= 0)
		s->timed_out = 1;
	session_fail(s, s->timed_out ? REASON_CONNECT_TIMEOUT : REASON_CONNECT_FAILED);
}

/*
 * guard_addresses keeps only the addresses an egress session may dial, in
 * a snapshot of the session's own. The addresses dialed are exactly the
 * ones checked here: nothing is resolved again. Returns 0, or -1 after
 * failing the session when none is left.
 */
static int
guard_addresses(struct session *s)
{
	struct resolver_addrs *ok;
	char abuf[NET_ADDRSTRLEN];
	const char *why;
	size_t n = 0;

	ok = calloc(1, sizeof(*ok) + s->addrs->n * sizeof(ok->addr[0]));
	if (ok == NULL) {
		session_close(s, REASON_OUT_OF_MEMORY);
		return -1;
	}
	ok->refs = 1;
	for (size_t i = 0; i < s->addrs->n; i++) {
		size_t j = (s->first + i) % s->addrs->n;
		const struct sockaddr *sa = (const struct sockaddr *)&s->addrs->addr[j];
		if ((why = policy_guard(s->conf->policy, sa, s->verdict.literal)) == NULL) {
			ok->addr[n++] = s->addrs->addr[j];
			continue;
		}
		net_addr_format(sa, abuf, sizeof(abuf));
		log_kv(LOG_LEVEL_DEBUG, "address refused", LOG_STR("listener", s->conf->name),
		       LOG_STR("name", s->name[0] ? s->name : s->target->host),
		       LOG_STR("addr", abuf), LOG_STR("why", why));
		if (s->error[0] == '\0')
			snprintf(s->error, sizeof(s->error), "%s is %s", abuf, why);
	}
	ok->n = n;
	resolver_addrs_release(s->addrs);
	s->addrs = ok;
	s->first = 0;
	if (n == 0) {
		deny(s, REASON_ADDRESS_DENIED);
		return -1;
	}
	s->error[0] = '\0';
	if (s->would_deny != REASON_NONE && !s->would_noted)
		note_would_deny(s, s->would_deny, s->name[0] ? s->name : NULL, requested_port(s));
	return 0;
}

/* start_connect takes the address snapshot, or fails/waits when there is none. */
static void
start_connect(struct session *s)
{
	s->addrs = resolver_addrs(s->upstream_name, &s->first);
	if (s->addrs == NULL) {
		if (s->dynamic == NULL)
			listener_warn_unresolved(s->listener, s->target->host);
		session_fail(s, REASON_NO_ADDRESS);
		return;
	}
	if (s->verdict.guarded && guard_addresses(s) == -1)
		return;
	s->state = SESSION_CONNECTING;
	connect_next(s);
}

static void
on_first_answer(void *arg)
{
	struct session *s = arg;

	evtimer_del(s->timer);
	start_connect(s);
}

/*
 * upstream_chosen resolves the target of the chosen route: a fixed
 * upstream is already watched by the listener; a "$host" upstream is
 * watched here, and the session waits (without blocking anything) for the
 * first answer if the name is new, within the connect timeout.
 */
static void
upstream_chosen(struct session *s)
{
	struct timeval budget;

	s->decision = s->would_deny != REASON_NONE ? DECISION_WOULD_DENY : DECISION_ALLOW;
	budget = clock_tv(s->conf->connect_timeout);
	clock_now_tv(&s->deadline);
	timeradd(&s->deadline, &budget, &s->deadline);
	/* Sniffed bytes wait in s->in; the rest waits in the kernel. */
	if (!s->target->sniffed_host) {
		/*
		 * By name, from the session's own config: after a reload the
		 * listener's routes may no longer be the ones s->route counts
		 * in. The listener watches the same name, so this finds it.
		 */
		s->upstream_name = resolver_watch(listener_resolver(s->listener), s->target->host,
						  s->target->port);
		if (s->upstream_name == NULL) {
			session_close(s, REASON_OUT_OF_MEMORY);
			return;
		}
		start_connect(s);
		return;
	}
	/* A name from the wire: looked up exactly as written, in DNS only. */
	s->dynamic = resolver_watch_as(listener_resolver(s->listener), s->name, s->target->port,
				       RESOLVER_EXACT);
	if (s->dynamic == NULL) {
		session_close(s, REASON_OUT_OF_MEMORY);
		return;
	}
	s->upstream_name = resolver_ref(s->dynamic);
	if (resolver_wait(s->dynamic, &s->waiter, on_first_answer, s) != 0) {
		/* Addresses at hand (1), or a recent failure (-1): no wait. */
		start_connect(s);
		return;
	}
	s->state = SESSION_RESOLVING;
	arm_timer(s, s->conf->connect_timeout);
}

/*
 * route picks the upstream for the sniffed name (s->name, "" for none);
 * the listener's own upstream serves names nothing matches. An allow entry
 * means "$host" at the port asked for (connect mode), the listener's
 * 'port', or its own listening port.
 */
static void
route(struct session *s)
{
	const char *name = s->name[0] ? s->name : NULL;
	struct policy_verdict *v = &s->verdict;
	struct policy_source client;
	int refused;

	if (s->conf->mode == CONFIG_MODE_HTTP && listener_over_limit(s->listener)) {
		/* Over max_connections: an HTTP client is told so (503) after its head. */
		session_fail(s, REASON_FULL);
		return;
	}
	client = client_source(s);
	refused =
	    policy_route(s->conf->policy, name, s->want_port, listen_port(s), &client, v) == -1;
	s->route = v->route;
	s->target = v->target;
	policy_rule(s->conf->policy, v, s->rule, sizeof(s->rule));
	if (v->port_refused != 0)
		snprintf(s->error, sizeof(s->error), "port %u not allowed", v->port_refused);
	if (refused) {
		deny(s, v->refusal);
		return;
	}
	s->would_deny = v->would_deny != REASON_NONE ? v->would_deny : s->source_would;
	/*
	 * Noted once an address passes the guard, or when the session ends
	 * still a would-deny: what the guard refuses is a deny, and must not
	 * come back as a suggestion to allow.
	 */
	if (s->would_deny != REASON_NONE && !v->guarded)
		note_would_deny(s, s->would_deny, name, requested_port(s));
	upstream_chosen(s);
}

/* ---- sniffing ---- */

/*
 * read_proxy_header consumes a PROXY header at the start of in. Returns 1
 * when done (header consumed, or none expected from this peer), 0 to wait
 * for more bytes, -1 after failing the session.
 */
static int
read_proxy_header(struct session *s)
{
	struct proxyproto_header h;
	enum parse_result r;
	int trusted = policy_proxy_trusted(s->conf->policy, (struct sockaddr *)&s->peer);

	r = proxyproto_parse(s->in + s->in_off, s->in_len - s->in_off, &h);
	if (r == PARSE_NEED_MORE)
		return 0;
	if (!trusted) {
		if (r == PARSE_NOT_FOUND) {
			s->proxy_done = 1;
			return 1;
		}
		session_fail(s, REASON_PROXY_UNTRUSTED);
		return -1;
	}
	if (r != PARSE_OK) {
		session_fail(s,
			     r == PARSE_NOT_FOUND ? REASON_PROXY_MISSING : REASON_PROXY_MALFORMED);
		return -1;
	}
	if (!h.local && (h.family == AF_INET || h.family == AF_INET6)) {
		memcpy(&s->client, &h.src, sizeof(s->client));
		memcpy(&s->local, &h.dst, sizeof(s->local));
		s->proxied = 1;
	}
	s->in_off += h.len;
	s->proxy_done = 1;
	return 1;
}

/*
 * proxy_request checks a request on a connect listener: the form (CONNECT
 * host:port, or an absolute URL as HTTP_PROXY clients send), the proxy
 * credentials, and which port is asked for. An absolute-form request then
 * goes through the http stream like every later one on the connection
 * (which drops the Proxy-Authorization meant for us). Returns 0, or -1
 * after failing the session.
 */
static int
proxy_request(struct session *s, uint8_t *buf, const struct sniff_http_request *req)
{
	enum reason why;

	if (policy_proxy_request(s->conf->policy, req, buf, &why) == -1) {
		session_fail(s, why);
		return -1;
	}
	s->head_len = req->head_len;
	if (req->form == SNIFF_HTTP_AUTHORITY) {
		s->connect_method = 1;
		s->want_port = req->port;
		return 0;
	}
	s->want_port = req->port ? req->port : req->https ? 443 : 80;
	return 0;
}

/* sniff_cap: the most bytes the mode's first message may take. */
static size_t
sniff_cap(const struct session *s)
{
	switch (s->conf->mode) {
	case CONFIG_MODE_TLS:
		return SNIFF_TLS_MAX_HELLO;
	case CONFIG_MODE_HTTP:
		return (size_t)s->conf->http.max_header_size;
	case CONFIG_MODE_CONNECT:
		return CONNECT_MAX_HEAD;
	default:
		return 0;
	}
}

/*
 * http_request_refused checks the first request on an http listener before
 * any upstream is dialed: CONNECT, a missing Host, and ambiguous framing
 * are refused here. Returns 1 after failing the session, else 0.
 */
static int
http_request_refused(struct session *s, const uint8_t *buf, enum parse_result r,
		     const struct sniff_http_request *req)
{
	struct http_peer peer = {(const struct sockaddr *)&s->client, 0,
				 s->conf->mode == CONFIG_MODE_CONNECT};
	struct http_head info;
	enum reason why;

	if (r == PARSE_NOT_FOUND && req->version_minor == 1) {
		/* RFC 9112 3.2: an HTTP/1.1 request without Host gets 400. */
		deny(s, REASON_NO_NAME);
		return 1;
	}
	why = http_rewrite_head(buf, req, &s->conf->http, &peer, 0, &info, NULL, NULL);
	if (why != REASON_NONE) {
		session_fail(s, why);
		return 1;
	}
	return 0;
}

/*
 * sniff_name runs the mode's parser over the buffered bytes. Returns 1 with
 * s->name set ("" when the client named nothing), 0 to wait, -1 after
 * failing the session.
 */
static int
sniff_name(struct session *s)
{
	size_t len = s->in_len - s->in_off, cap, plen;
	uint8_t *buf = s->in + s->in_off;
	const char *raw;
	size_t raw_len;
	enum parse_result r;
	struct sniff_tls_hello hello;
	struct sniff_http_request req;

	if (len == 0)
		return 0;
	/*
	 * Parse at most cap - 1 bytes: a head still incomplete there is too
	 * large (not malformed), whatever follows.
	 */
	cap = sniff_cap(s);
	plen = len < cap ? len : cap - 1;
	if (s->conf->mode == CONFIG_MODE_TLS) {
		r = sniff_tls_client_hello(buf, plen, &hello);
		raw = hello.sni;
		raw_len = hello.sni_len;
	} else {
		r = sniff_http_request(buf, plen, &req);
		raw = req.host;
		raw_len = req.host_len;
	}
	switch (r) {
	case PARSE_NEED_MORE:
		if (len >= cap) {
			session_fail(s, REASON_TOO_LARGE);
			return -1;
		}
		return 0;
	case PARSE_MALFORMED:
		session_fail(s, s->conf->mode == CONFIG_MODE_TLS && hello.too_large
				    ? REASON_TOO_LARGE
				    : REASON_MALFORMED);
		return -1;
	case PARSE_NOT_FOUND:
	case PARSE_OK:
		break;
	}
	if (s->source_refusal != REASON_NONE) {
		/* Refused for who it is: said now that the client can hear it. */
		if (r == PARSE_OK &&
		    route_normalize_name(raw, raw_len, s->name, sizeof(s->name)) == -1)
			s->name[0] = '\0';
		deny(s, s->source_refusal);
		return -1;
	}
	if (s->conf->mode == CONFIG_MODE_CONNECT && proxy_request(s, buf, &req) == -1)
		return -1;
	if ((s->conf->mode == CONFIG_MODE_HTTP || proxy_requests(s)) &&
	    http_request_refused(s, buf, r, &req))
		return -1;
	if (r == PARSE_NOT_FOUND) {
		s->name[0] = '\0';
		return 1;
	}
	if (route_normalize_name(raw, raw_len, s->name, sizeof(s->name)) == -1) {
		session_fail(s, REASON_MALFORMED);
		return -1;
	}
	return 1;
}

/*
 * sniff_parse looks at what has been read so far. Returns 0 to read more,
 * or 1 when the session went on (routed) or failed: s may be gone then.
 */
static int
sniff_parse(struct session *s)
{
	int rc;

	if (!s->proxy_done && (rc = read_proxy_header(s)) <= 0)
		return rc < 0;
	if (!s->client_checked && admit_client(s))
		return 1;
	if (s->conf->mode != CONFIG_MODE_TCP && (rc = sniff_name(s)) <= 0)
		return rc < 0;
	evtimer_del(s->timer);
	route(s);
	return 1;
}

/*
 * sniff reads the client's first bytes until the PROXY header and the
 * hello or head are complete. It reads no further than that: the rest is
 * the relay's, and an EOF right after a complete head is the relay's to
 * forward.
 */
static void
sniff(struct session *s)
{
	ssize_t n;

	while (s->relay.end[RELAY_CLIENT].readable) {
		if (s->in_len == s->in_cap) {
			session_fail(s, REASON_TOO_LARGE);
			return;
		}
		n = relay_read(&s->relay, RELAY_CLIENT, s->in + s->in_len, s->in_cap - s->in_len);
		if (n == 0) {
			session_close(s, REASON_CLIENT_CLOSED);
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				session_close(s, REASON_CLIENT_ERROR);
			return;
		}
		s->in_len += (size_t)n;
		if (sniff_parse(s))
			return;
	}
}

/* session_io: a socket had an event before the relay started. */
static void
session_io(void *arg, int side, short what)
{
	struct session *s = arg;

	switch (s->state) {
	case SESSION_SNIFFING:
		if (side == RELAY_CLIENT)
			sniff(s);
		break;
	case SESSION_CONNECTING:
		if (side == RELAY_UPSTREAM)
			upstream_io(s, what);
		break;
	case SESSION_REFUSING:
		if (side == RELAY_CLIENT && (what & EV_WRITE))
			refusal_write(s);
		break;
	case SESSION_RESOLVING:
	case SESSION_RELAYING:
		/* The client's bytes and EOF wait in the kernel for the relay. */
		break;
	}
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	switch (s->state) {
	case SESSION_SNIFFING:
		session_fail(s, s->conf->mode == CONFIG_MODE_HTTP && s->proxy_done &&
					s->conf->http.header_timeout < s->conf->sniff_timeout
				    ? REASON_HEADER_TIMEOUT
				    : REASON_SNIFF_TIMEOUT);
		break;
	case SESSION_RESOLVING:
		resolver_wait_cancel(&s->waiter);
		session_fail(s, REASON_NO_ADDRESS);
		break;
	case SESSION_CONNECTING:
		s->timed_out = 1;
		snprintf(s->error, sizeof(s->error), "connect timed out");
		upstream_failed(s);
		break;
	case SESSION_REFUSING:
		session_close(s, s->refusal_reason);
		break;
	case SESSION_RELAYING: {
		struct timeval now;
		if (s->conf->idle_timeout > 0 &&
		    relay_idle_ms(&s->relay) >= s->conf->idle_timeout) {
			session_close(s, REASON_IDLE_TIMEOUT);
			break;
		}
		clock_now_tv(&now);
		if (s->http != NULL)
			http_stream_expire(s->http, &now); /* 408, or an idle keep-alive ends */
		arm_relay_timer(s);
		break;
	}
	}
}

/*
 * first_bytes_timeout: how long the first bytes may take. In mode http the
 * first request head is bound by header_timeout too, whichever is shorter.
 */
static int64_t
first_bytes_timeout(const struct session *s)
{
	int64_t t = s->conf->sniff_timeout;

	if (s->conf->mode == CONFIG_MODE_HTTP && s->conf->http.header_timeout < t)
		t = s->conf->http.header_timeout;
	return t;
}

void
session_start(struct gk *gk, struct listener *l, evutil_socket_t fd, const struct sockaddr *peer,
	      socklen_t peerlen)
{
	struct policy_source who;
	struct session *s;

	if (gk->draining) {
		evutil_closesocket(fd);
		return;
	}
	if ((s = pool_alloc(&gk->session_pool)) == NULL) {
		log_error("session: out of memory, connection closed");
		evutil_closesocket(fd);
		return;
	}
	s->gk = gk;
	s->listener = l;
	s->cfg = config_ref(listener_config(l));
	s->conf = listener_conf(l);
	s->state = SESSION_SNIFFING;
	s->route = -1;
	if (peerlen <= sizeof(s->peer))
		memcpy(&s->peer, peer, peerlen);
	memcpy(&s->client, &s->peer, sizeof(s->client));
	clock_now_tv(&s->started);
	TAILQ_INSERT_TAIL(&gk->sessions, s, entry);
	gk->n_sessions++;
	listener_session_begin(l);

	s->timer = (struct event *)((char *)s + timer_offset());
	evtimer_assign(s->timer, gk->base, on_timer, s);
	relay_init(&s->relay, gk->base, (char *)s + relay_events_offset(), session_io,
		   on_relay_done, s);
	s->proxy_done = !s->conf->proxy.accept;
	s->source_refusal = s->source_would = s->would_deny = REASON_NONE;
	/*
	 * In tcp mode with nothing to read first, the client's socket is
	 * registered only when the relay starts: bytes sent meanwhile wait in
	 * the kernel.
	 */
	if (relay_attach(&s->relay, RELAY_CLIENT, fd,
			 !(s->proxy_done && s->conf->mode == CONFIG_MODE_TCP)) == -1) {
		session_close(s, REASON_OUT_OF_MEMORY);
		return;
	}
	/* 'sources' is about the TCP peer: decided now, before a byte is read. */
	who.addr = (const struct sockaddr *)&s->peer;
	who.names = listener_source_names(l);
	if (!policy_peer_admitted(s->conf->policy, &who) && source_refused(s, REASON_SOURCE_DENIED))
		return;
	if (s->proxy_done && admit_client(s))
		return;
	if (s->proxy_done && s->conf->mode == CONFIG_MODE_TCP) {
		route(s);
		return;
	}
	s->in_cap = sniff_cap(s) + (s->proxy_done ? 0 : PROXYPROTO_PARSE_MAX);
	if ((s->in = malloc(s->in_cap)) == NULL) {
		session_close(s, REASON_OUT_OF_MEMORY);
		return;
	}
	arm_timer(s, first_bytes_timeout(s));
}
