/*
 * listener.c: accepting connections, and when not to.
 *
 * Two conditions stop a listener from accepting without refusing anyone:
 * max_connections reached (as HAProxy's maxconn: further clients wait in
 * the kernel backlog until a session ends), and fd exhaustion (EMFILE or
 * ENFILE: accepting pauses briefly, as relayd does, instead of spinning on
 * an accept that cannot succeed). Both resume by themselves.
 *
 * An http listener can say no instead: it accepts a little beyond
 * max_connections (FULL_HEADROOM) so that those clients get a 503 rather
 * than a wait, as nginx's limit_conn answers; past the headroom it pauses
 * like the others.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "resolver.h"
#include "session.h"
#include "worker.h"

#define LISTEN_BACKLOG 511
#define FD_PAUSE_MS    250
/* Counters are read by the admin endpoint's thread: relaxed atomic adds. */
#define COUNT(field, n) __atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED)
#define FD_WARN_EVERY_S 5

struct listener {
	struct gk *gk;
	struct config *cfg; /* a reference: conf points into it */
	const struct config_listener *conf;
	struct evconnlistener *evl;
	struct resolver_name *upstream; /* the listener's upstream, NULL if none or $host */
	struct resolver_name **routes;	/* one per route, NULL for $host routes */
	struct sockaddr_storage bound;
	unsigned refs;
	int64_t active;
	int64_t max_connections; /* this worker's share of conf->max_connections */
	int full;		 /* paused: max_connections reached */
	int fd_pause;		 /* paused: out of file descriptors */
	struct timeval last_fd_warning;
	struct event *pause_timer;
	struct timeval last_unresolved_warning;
	unsigned unresolved_suppressed;
	struct listener_stats stats;
};

#define UNRESOLVED_WARN_EVERY_S 5

static int64_t pause_at(const struct listener *l);

static void
update_accepting(struct listener *l)
{
	if (l->evl == NULL)
		return;
	if (l->full || l->fd_pause)
		evconnlistener_disable(l->evl);
	else
		evconnlistener_enable(l->evl);
}

static void
on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;

	(void)evl;
	session_start(l->gk, l, fd, sa, (socklen_t)salen);
}

static void
on_pause_over(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)what;
	l->fd_pause = 0;
	update_accepting(l);
}

int
listener_out_of_resources(struct listener *l, int err)
{
	struct timeval tv = {0, FD_PAUSE_MS * 1000}, now;

	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return 0;
	/* One warning per episode: the pauses of one exhaustion come close together. */
	clock_now_tv(&now);
	if (l->last_fd_warning.tv_sec == 0 ||
	    now.tv_sec - l->last_fd_warning.tv_sec >= FD_WARN_EVERY_S)
		log_kv(LOG_LEVEL_WARN, "accept paused: out of resources",
		       LOG_STR("listener", l->conf->name), LOG_STR("error", strerror(err)),
		       LOG_NUM("pause_ms", FD_PAUSE_MS));
	l->last_fd_warning = now;
	l->fd_pause = 1;
	update_accepting(l);
	evtimer_add(l->pause_timer, &tv);
	return 1;
}

static void
on_accept_error(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	int err = errno;

	(void)evl;
	if (listener_out_of_resources(l, err))
		return;
	/* ECONNABORTED and friends concern one client only. */
	log_kv(LOG_LEVEL_DEBUG, "accept failed", LOG_STR("listener", l->conf->name),
	       LOG_STR("error", strerror(err)));
}

/* The names a listener keeps resolved: its upstream, and one per route. */
struct watches {
	struct resolver_name *upstream;
	struct resolver_name **routes; /* n_routes of them, NULL for $host routes */
	size_t n_routes;
};

static void
unwatch_all(struct watches *w)
{
	resolver_unwatch(w->upstream);
	for (size_t i = 0; w->routes != NULL && i < w->n_routes; i++)
		resolver_unwatch(w->routes[i]);
	free(w->routes);
	memset(w, 0, sizeof(*w));
}

/* watch_all starts resolving every fixed upstream conf may use. Returns 0, or -1 (none kept). */
static int
watch_all(struct resolver *res, const struct config_listener *conf, struct watches *w)
{
	memset(w, 0, sizeof(*w));
	if (conf->upstream.host != NULL && !conf->upstream.sniffed_host &&
	    (w->upstream = resolver_watch(res, conf->upstream.host, conf->upstream.port)) == NULL)
		return -1;
	if (conf->n_routes == 0)
		return 0;
	if ((w->routes = calloc(conf->n_routes, sizeof(*w->routes))) == NULL)
		goto fail;
	w->n_routes = conf->n_routes;
	for (size_t i = 0; i < conf->n_routes; i++) {
		const struct config_hostport *up = &conf->routes[i].upstream;
		if (up->sniffed_host)
			continue;
		if ((w->routes[i] = resolver_watch(res, up->host, up->port)) == NULL)
			goto fail;
	}
	return 0;
fail:
	unwatch_all(w);
	return -1;
}

/* per_worker_max: this worker's share of max_connections (rounded up). */
static int64_t
per_worker_max(const struct gk *gk, const struct config_listener *conf)
{
	int64_t max = conf->max_connections;

	if (gk->n_workers > 1 && max > 0)
		max = (max + gk->n_workers - 1) / gk->n_workers;
	return max;
}

struct listener *
listener_new(struct gk *gk, struct config *cfg, const struct config_listener *conf,
	     const struct sockaddr *addr)
{
	struct listener *l;
	struct watches w;
	char err[256], abuf[NET_ADDRSTRLEN];
	socklen_t blen = sizeof(l->bound);
	int fd, watched;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->gk = gk;
	l->cfg = config_ref(cfg);
	l->conf = conf;
	l->refs = 1;
	if (addr == NULL)
		addr = (const struct sockaddr *)&conf->listen.ss;
	l->max_connections = per_worker_max(gk, conf);
	fd = net_listen(addr, net_sockaddr_len(addr), LISTEN_BACKLOG, gk->n_workers > 1, err,
			sizeof(err));
	if (fd == -1) {
		log_kv(LOG_LEVEL_ERROR, "cannot listen", LOG_STR("listener", conf->name),
		       LOG_STR("error", err));
		config_unref(l->cfg);
		free(l);
		return NULL;
	}
	if (getsockname(fd, (struct sockaddr *)&l->bound, &blen) == -1)
		memcpy(&l->bound, &conf->listen.ss, sizeof(l->bound));
	/* backlog 0: the socket is already listening. */
	l->evl = evconnlistener_new(gk->base, on_accept, l,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	l->pause_timer = evtimer_new(gk->base, on_pause_over, l);
	watched = watch_all(gk->resolver, conf, &w);
	if (watched == 0) {
		l->upstream = w.upstream;
		l->routes = w.routes;
	}
	if (watched == -1 || l->evl == NULL || l->pause_timer == NULL) {
		log_kv(LOG_LEVEL_ERROR, "cannot start listener", LOG_STR("listener", conf->name),
		       LOG_STR("error", "out of memory"));
		if (l->evl == NULL)
			close(fd);
		l->refs = 0;
		listener_close(l);
		return NULL;
	}
	evconnlistener_set_error_cb(l->evl, on_accept_error);
	/* With several workers, the first one speaks for all. */
	log_kv(gk->worker == 0 ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, "listening",
	       LOG_STR("listener", conf->name),
	       LOG_STR("addr", net_format((struct sockaddr *)&l->bound, abuf, sizeof(abuf))),
	       LOG_STR("mode", config_mode_name(conf->mode)),
	       LOG_STR("upstream", conf->upstream.host), LOG_NUM("port", conf->upstream.port),
	       LOG_NUM("routes", conf->n_routes), LOG_NUM("workers", gk->n_workers));
	return l;
}

static void
listener_unref(struct listener *l)
{
	if (l->refs > 0 && --l->refs > 0)
		return;
	log_kv(LOG_LEVEL_INFO, "listener closed", LOG_STR("listener", l->conf->name),
	       LOG_NUM("sessions", l->stats.sessions), LOG_NUM("allowed", l->stats.allowed),
	       LOG_NUM("denied", l->stats.denied));
	if (l->pause_timer)
		event_free(l->pause_timer);
	resolver_unwatch(l->upstream);
	for (size_t i = 0; l->routes != NULL && i < l->conf->n_routes; i++)
		resolver_unwatch(l->routes[i]);
	free(l->routes);
	config_unref(l->cfg);
	free(l);
}

/* One fixed upstream's readiness, for listener_unresolved. */
static size_t
report_unresolved(const struct listener *l, const struct resolver_name *n, uint16_t port,
		  listener_unresolved_fn *fn, void *arg)
{
	const char *error;

	if (n == NULL || resolver_name_status(n, &error))
		return 0;
	fn(arg, l->conf->name, resolver_name_host(n), port, error);
	return 1;
}

size_t
listener_unresolved(const struct listener *l, listener_unresolved_fn *fn, void *arg)
{
	size_t missing = report_unresolved(l, l->upstream, l->conf->upstream.port, fn, arg);

	for (size_t i = 0; l->routes != NULL && i < l->conf->n_routes; i++)
		missing +=
		    report_unresolved(l, l->routes[i], l->conf->routes[i].upstream.port, fn, arg);
	return missing;
}

int
listener_update(struct listener *l, struct config *cfg, const struct config_listener *conf)
{
	struct watches fresh, old = {l->upstream, l->routes, l->conf->n_routes};

	if (watch_all(l->gk->resolver, conf, &fresh) == -1)
		return -1;
	unwatch_all(&old);
	l->upstream = fresh.upstream;
	l->routes = fresh.routes;
	config_unref(l->cfg);
	l->cfg = config_ref(cfg);
	l->conf = conf;
	l->max_connections = per_worker_max(l->gk, conf);
	if (l->full && (l->max_connections == 0 || l->active < pause_at(l))) {
		l->full = 0;
		update_accepting(l);
	} else if (!l->full && l->max_connections > 0 && l->active >= pause_at(l)) {
		l->full = 1;
		update_accepting(l);
	}
	return 0;
}

struct config *
listener_config(const struct listener *l)
{
	return l->cfg;
}

void
listener_close(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->evl != NULL) {
		evconnlistener_free(l->evl);
		l->evl = NULL;
	}
	if (l->pause_timer)
		evtimer_del(l->pause_timer);
	listener_unref(l);
}

const struct config_listener *
listener_conf(const struct listener *l)
{
	return l->conf;
}

struct resolver *
listener_resolver(const struct listener *l)
{
	return l->gk->resolver;
}

const struct sockaddr *
listener_bound(const struct listener *l)
{
	return (const struct sockaddr *)&l->bound;
}

void
listener_warn_unresolved(struct listener *l, const char *upstream)
{
	struct timeval now;

	/* Every refused connection has its access line; the warning explains them. */
	clock_now_tv(&now);
	if (l->last_unresolved_warning.tv_sec != 0 &&
	    now.tv_sec - l->last_unresolved_warning.tv_sec < UNRESOLVED_WARN_EVERY_S) {
		l->unresolved_suppressed++;
		return;
	}
	log_kv(LOG_LEVEL_WARN, "upstream not resolved yet, connection refused",
	       LOG_STR("listener", l->conf->name), LOG_STR("upstream", upstream),
	       LOG_NUM("suppressed", l->unresolved_suppressed));
	l->last_unresolved_warning = now;
	l->unresolved_suppressed = 0;
}

/* pause_at: how many sessions stop accepting (max_connections, plus an http listener's headroom).
 */
static int64_t
pause_at(const struct listener *l)
{
	if (l->conf->mode != CONFIG_MODE_HTTP)
		return l->max_connections;
	return l->max_connections + (l->max_connections / 8 > 16 ? l->max_connections / 8 : 16);
}

int
listener_over_limit(const struct listener *l)
{
	return l->max_connections > 0 && l->active > l->max_connections;
}

void
listener_session_begin(struct listener *l)
{
	l->refs++;
	l->active++;
	COUNT(l->stats.accepted, 1);
	__atomic_store_n(&l->stats.active, l->active, __ATOMIC_RELAXED);
	if (l->max_connections > 0 && l->active >= pause_at(l) && !l->full) {
		l->full = 1;
		log_kv(LOG_LEVEL_DEBUG, "max_connections reached, accept paused",
		       LOG_STR("listener", l->conf->name), LOG_NUM("active", l->active));
		update_accepting(l);
	}
}

void
listener_session_end(struct listener *l, const struct listener_outcome *o)
{
	COUNT(l->stats.sessions, 1);
	if (o->decision == DECISION_ALLOW)
		COUNT(l->stats.allowed, 1);
	else if (o->decision == DECISION_DENY)
		COUNT(l->stats.denied, 1);
	COUNT(l->stats.bytes_in, o->bytes_in);
	COUNT(l->stats.bytes_out, o->bytes_out);
	if ((unsigned)o->decision < DECISION_COUNT && (unsigned)o->reason < REASON_COUNT)
		COUNT(l->stats.closed[o->decision][o->reason], 1);
	l->active--;
	__atomic_store_n(&l->stats.active, l->active, __ATOMIC_RELAXED);
	if (l->full && l->active < pause_at(l)) {
		l->full = 0;
		update_accepting(l);
	}
	listener_unref(l);
}

void
listener_connect_failed(struct listener *l)
{
	COUNT(l->stats.connect_failures, 1);
}

void
listener_stats_read(const struct listener *l, struct listener_stats *out)
{
	const struct listener_stats *st = &l->stats;

	memset(out, 0, sizeof(*out));
	out->accepted = __atomic_load_n(&st->accepted, __ATOMIC_RELAXED);
	out->sessions = __atomic_load_n(&st->sessions, __ATOMIC_RELAXED);
	out->allowed = __atomic_load_n(&st->allowed, __ATOMIC_RELAXED);
	out->denied = __atomic_load_n(&st->denied, __ATOMIC_RELAXED);
	out->bytes_in = __atomic_load_n(&st->bytes_in, __ATOMIC_RELAXED);
	out->bytes_out = __atomic_load_n(&st->bytes_out, __ATOMIC_RELAXED);
	out->connect_failures = __atomic_load_n(&st->connect_failures, __ATOMIC_RELAXED);
	out->active = __atomic_load_n(&st->active, __ATOMIC_RELAXED);
	for (int d = 0; d < DECISION_COUNT; d++)
		for (int r = 0; r < REASON_COUNT; r++)
			out->closed[d][r] = __atomic_load_n(&st->closed[d][r], __ATOMIC_RELAXED);
}
