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
#include <pthread.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "door.h"
#include "hash.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "policy.h"
#include "resolver.h"
#include "session.h"
#include "worker.h"

#define LISTEN_BACKLOG 511
#define FD_PAUSE_MS    250
/* Counters are read by the admin endpoint's thread: relaxed atomic adds. */
#define COUNT(field, n) __atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED)
#define FD_WARN_EVERY_S 5

/* The names a listener keeps resolved: its upstream, one per route, one per source name. */
struct watches {
	struct resolver_name *upstream;
	struct resolver_name **routes; /* n_routes of them, NULL for $host routes */
	size_t n_routes;
	struct resolver_name **sources; /* n_sources, as policy_source_names lists them */
	size_t n_sources;
};

struct listener {
	struct gk *gk;
	struct config *cfg; /* a reference: conf points into it */
	const struct config_listener *conf;
	struct evconnlistener *evl;
	struct watches names;		   /* what it keeps resolved */
	struct door *door;		   /* mode dns: its UDP side and TCP connections */
	struct policy_names *source_index; /* what the source names resolve to now */
	const struct policy *index_policy; /* the policy source_index was built for */
	uint64_t index_generation;	   /* and the resolver's generation then */
	int index_stale;		   /* build it again at the next use */
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
#define SOURCE_KEY_LEN		36 /* family, port, address; family, address */

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
	if (l->conf->mode == CONFIG_MODE_DNS)
		door_tcp_start(l->gk, l, fd, sa, (socklen_t)salen);
	else
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

static void
unwatch_all(struct watches *w)
{
	resolver_unwatch(w->upstream);
	for (size_t i = 0; w->routes != NULL && i < w->n_routes; i++)
		resolver_unwatch(w->routes[i]);
	for (size_t i = 0; w->sources != NULL && i < w->n_sources; i++)
		resolver_unwatch(w->sources[i]);
	free(w->routes);
	free(w->sources);
	memset(w, 0, sizeof(*w));
}

/* watch_sources starts resolving the source names of conf's policy. Returns 0 or -1. */
static int
watch_sources(struct resolver *res, const struct config_listener *conf, struct watches *w)
{
	const char *const *names;
	size_t n = conf->policy ? policy_source_names(conf->policy, &names) : 0;

	if (n == 0)
		return 0;
	if ((w->sources = calloc(n, sizeof(*w->sources))) == NULL)
		return -1;
	for (; w->n_sources < n; w->n_sources++)
		if ((w->sources[w->n_sources] = resolver_watch(res, names[w->n_sources], 0)) ==
		    NULL)
			return -1;
	return 0;
}

/* watch_all starts resolving every fixed upstream conf may use. Returns 0, or -1 (none kept). */
static int
watch_all(struct resolver *res, const struct config_listener *conf, struct watches *w)
{
	memset(w, 0, sizeof(*w));
	if (watch_sources(res, conf, w) == -1)
		goto fail;
	if (conf->upstream.host != NULL && !conf->upstream.sniffed_host &&
	    (w->upstream = resolver_watch(res, conf->upstream.host, conf->upstream.port)) == NULL)
		goto fail;
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
	if (watched == 0)
		l->names = w;
	if (conf->mode == CONFIG_MODE_DNS &&
	    (l->door = door_open(gk, l, (struct sockaddr *)&l->bound)) == NULL) {
		l->refs = 0;
		listener_close(l);
		return NULL;
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
	unwatch_all(&l->names);
	policy_names_free(l->source_index);
	door_free(l->door);
	config_unref(l->cfg);
	free(l);
}

/* One name's readiness, for listener_unresolved. */
static size_t
report_unresolved(const struct listener *l, const char *kind, const struct resolver_name *n,
		  uint16_t port, listener_unresolved_fn *fn, void *arg)
{
	const char *error;

	if (n == NULL || resolver_name_status(n, &error))
		return 0;
	fn(arg, l->conf->name, kind, resolver_name_host(n), port, error);
	return 1;
}

size_t
listener_unresolved(const struct listener *l, listener_unresolved_fn *fn, void *arg)
{
	const struct watches *w = &l->names;
	size_t missing =
	    report_unresolved(l, "upstream", w->upstream, l->conf->upstream.port, fn, arg);

	for (size_t i = 0; w->routes != NULL && i < w->n_routes; i++)
		missing += report_unresolved(l, "upstream", w->routes[i],
					     l->conf->routes[i].upstream.port, fn, arg);
	for (size_t i = 0; i < w->n_sources; i++)
		missing += report_unresolved(l, "source", w->sources[i], 0, fn, arg);
	return missing;
}

/*
 * listener_source_names indexes what the source names resolve to now,
 * again whenever the resolver's answers or the listener's policy changed
 * since the last time. A name without an answer has no address in it.
 */
const struct policy_names *
listener_source_names(struct listener *l)
{
	struct resolver *res = l->gk->resolver;
	struct policy_name_addr *pairs = NULL;
	const char *const *names;
	struct resolver_addrs **held = NULL;
	size_t n_names, n_pairs = 0;

	if (l->names.n_sources == 0)
		return NULL;
	if (!l->index_stale && l->source_index != NULL && l->index_policy == l->conf->policy &&
	    l->index_generation == resolver_generation(res))
		return l->source_index;
	n_names = policy_source_names(l->conf->policy, &names);
	if (n_names != l->names.n_sources)
		return l->source_index; /* cannot happen: watched from this very policy */
	if ((held = calloc(n_names, sizeof(*held))) == NULL)
		goto oom;
	for (size_t i = 0; i < n_names; i++) {
		size_t start;
		/* A name DNS says is gone has no address any more, whatever was kept. */
		if (resolver_name_gone(l->names.sources[i]))
			continue;
		if ((held[i] = resolver_addrs(l->names.sources[i], &start)) != NULL)
			n_pairs += held[i]->n;
	}
	if (n_pairs > 0 && (pairs = calloc(n_pairs, sizeof(*pairs))) == NULL)
		goto oom;
	n_pairs = 0;
	for (size_t i = 0; i < n_names; i++)
		for (size_t j = 0; held[i] != NULL && j < held[i]->n; j++) {
			pairs[n_pairs].addr = (const struct sockaddr *)&held[i]->addr[j];
			pairs[n_pairs++].name = names[i];
		}
	policy_names_free(l->source_index);
	l->source_index = policy_names_new(pairs, n_pairs);
	if (l->source_index == NULL)
		goto oom;
	l->index_policy = l->conf->policy;
	l->index_generation = resolver_generation(res);
	l->index_stale = 0;
	goto done;
oom:
	/* The names match nothing until memory comes back: refused, never let through. */
	log_kv(LOG_LEVEL_ERROR, "source names: out of memory", LOG_STR("listener", l->conf->name));
	policy_names_free(l->source_index);
	l->source_index = NULL;
	l->index_stale = 1;
done:
	for (size_t i = 0; held != NULL && i < n_names; i++)
		resolver_addrs_release(held[i]);
	free(held);
	free(pairs);
	return l->source_index;
}

/*
 * Sessions per (listener address, client address), for
 * max_connections_per_source. The limit is the process's, not a
 * worker's, so this one table is shared by every worker (the only state
 * they share), under its own lock; an entry lives while its count is
 * above zero. Workers of one listener bind one address, and a reload keeps
 * a listener's address, so the key holds across both.
 */
struct source_count {
	struct source_count *next;
	uint32_t hash;
	int64_t n;
	uint8_t key[SOURCE_KEY_LEN];
};

static struct {
	pthread_mutex_t lock;
	struct source_count **buckets;
	size_t n_buckets, n;
} source_counts = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

/* source_key: the listener's bound address and port, and the client's address (IPv4 unmapped). */
static void
source_key(const struct listener *l, const struct sockaddr *client, uint8_t key[SOURCE_KEY_LEN])
{
	struct sockaddr_in v4;
	const struct sockaddr *c = net_unmap_v4(client, &v4);
	uint16_t port = net_port((const struct sockaddr *)&l->bound);
	const struct sockaddr *b = (const struct sockaddr *)&l->bound;
	const uint8_t *a;
	size_t len;

	memset(key, 0, SOURCE_KEY_LEN);
	if (c == NULL)
		c = client;
	key[0] = (uint8_t)b->sa_family;
	key[1] = (uint8_t)(port >> 8);
	key[2] = (uint8_t)port;
	if ((a = net_addr_bytes(b, &len)) != NULL)
		memcpy(key + 3, a, len);
	key[19] = (uint8_t)c->sa_family;
	if ((a = net_addr_bytes(c, &len)) != NULL)
		memcpy(key + 20, a, len);
}

/* source_counts_grow doubles the buckets when the table is more than twice full (lock held). */
static void
source_counts_grow(void)
{
	size_t n = source_counts.n_buckets ? source_counts.n_buckets * 2 : 256;
	struct source_count **b;

	if (source_counts.n < 2 * source_counts.n_buckets && source_counts.buckets != NULL)
		return;
	if ((b = calloc(n, sizeof(*b))) == NULL)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < source_counts.n_buckets; i++)
		for (struct source_count *e = source_counts.buckets[i], *next; e != NULL;
		     e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	free(source_counts.buckets);
	source_counts.buckets = b;
	source_counts.n_buckets = n;
}

enum reason
listener_source_acquire(struct listener *l, const struct config_listener *conf,
			const struct sockaddr *client)
{
	uint8_t key[SOURCE_KEY_LEN];
	struct source_count *e;
	enum reason why = REASON_NONE;
	uint32_t h;

	if (conf->max_connections_per_source <= 0)
		return REASON_NONE;
	source_key(l, client, key);
	h = hash_bytes(HASH_SEED, key, SOURCE_KEY_LEN);
	pthread_mutex_lock(&source_counts.lock);
	source_counts_grow();
	if (source_counts.buckets == NULL) {
		why = REASON_OUT_OF_MEMORY;
		goto out;
	}
	for (e = source_counts.buckets[h & (source_counts.n_buckets - 1)]; e != NULL; e = e->next)
		if (e->hash == h && memcmp(e->key, key, SOURCE_KEY_LEN) == 0)
			break;
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL) {
			why = REASON_OUT_OF_MEMORY;
			goto out;
		}
		memcpy(e->key, key, SOURCE_KEY_LEN);
		e->hash = h;
		e->next = source_counts.buckets[h & (source_counts.n_buckets - 1)];
		source_counts.buckets[h & (source_counts.n_buckets - 1)] = e;
		source_counts.n++;
	}
	if (e->n >= conf->max_connections_per_source)
		why = REASON_SOURCE_LIMIT;
	else
		e->n++;
out:
	pthread_mutex_unlock(&source_counts.lock);
	return why;
}

void
listener_source_release(struct listener *l, const struct sockaddr *client)
{
	uint8_t key[SOURCE_KEY_LEN];
	struct source_count **pe, *e;
	uint32_t h;

	source_key(l, client, key);
	h = hash_bytes(HASH_SEED, key, SOURCE_KEY_LEN);
	pthread_mutex_lock(&source_counts.lock);
	for (pe = &source_counts.buckets[h & (source_counts.n_buckets - 1)]; (e = *pe) != NULL;
	     pe = &e->next)
		if (e->hash == h && memcmp(e->key, key, SOURCE_KEY_LEN) == 0)
			break;
	if (e != NULL && --e->n <= 0) {
		*pe = e->next;
		free(e);
		source_counts.n--;
	}
	pthread_mutex_unlock(&source_counts.lock);
}

int
listener_update(struct listener *l, struct config *cfg, const struct config_listener *conf)
{
	struct watches fresh;

	if (watch_all(l->gk->resolver, conf, &fresh) == -1)
		return -1;
	/* A kept address that turns into a DNS door (or stops being one). */
	if (conf->mode == CONFIG_MODE_DNS && l->door == NULL &&
	    (l->door = door_open(l->gk, l, (struct sockaddr *)&l->bound)) == NULL) {
		unwatch_all(&fresh);
		return -1;
	}
	if (conf->mode != CONFIG_MODE_DNS && l->door != NULL)
		door_shutdown(l->door);
	unwatch_all(&l->names);
	l->names = fresh;
	l->index_stale = 1; /* the names may be others: built again at the next use */
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
	door_shutdown(l->door);
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
listener_count_dns(struct listener *l, int result)
{
	if (result >= 0 && result < DOOR_RESULT_COUNT)
		COUNT(l->stats.dns[result], 1);
}

struct door *
listener_door(const struct listener *l)
{
	return l->door;
}

void
listener_count_would_deny(struct listener *l)
{
	COUNT(l->stats.would_deny, 1);
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
	out->would_deny = __atomic_load_n(&st->would_deny, __ATOMIC_RELAXED);
	for (int i = 0; i < DOOR_RESULT_COUNT; i++)
		out->dns[i] = __atomic_load_n(&st->dns[i], __ATOMIC_RELAXED);
	out->active = __atomic_load_n(&st->active, __ATOMIC_RELAXED);
	for (int d = 0; d < DECISION_COUNT; d++)
		for (int r = 0; r < REASON_COUNT; r++)
			out->closed[d][r] = __atomic_load_n(&st->closed[d][r], __ATOMIC_RELAXED);
}
