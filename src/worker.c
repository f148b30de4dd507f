/*
 * worker.c: one event loop, with its listeners, sessions and resolver.
 *
 * A worker is opened with every listener of the config bound (later
 * workers share the first one's addresses through SO_REUSEPORT), runs its
 * loop on one thread, and ends in a drain: its listeners close first, its
 * sessions get drain_timeout to finish, then the loop stops. A reload
 * reconciles its listeners with the new config, keeping the socket of
 * every address in both, so no connection is refused across a SIGHUP.
 * Later workers hear from the main thread through a notify pipe: "d" to
 * drain, "r" to take the reload left for them; the first worker runs on
 * the main thread and is called directly.
 */
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "resolver.h"
#include "session.h"
#include "worker.h"

/* A reload handed from the main thread to a later worker (gk->reload). */
struct worker_reload {
	struct config *cfg; /* a reference, for this worker */
	struct sockaddr_storage
	    *bound; /* per listener of cfg: the address the first worker bound */
};

void
worker_session_ended(struct gk *gk)
{
	if (gk->draining && gk->n_sessions == 0)
		event_base_loopexit(gk->base, NULL);
}

static void
close_listeners(struct gk *gk)
{
	for (size_t i = 0; i < gk->n_listeners; i++)
		listener_close(gk->listeners[i]);
	gk->n_listeners = 0;
}

static void
on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct gk *gk = arg;

	(void)fd;
	(void)what;
	log_kv(LOG_LEVEL_WARN, "drain timeout, closing sessions", LOG_NUM("worker", gk->worker),
	       LOG_NUM("sessions", gk->n_sessions));
	session_close_all(gk, REASON_SHUTDOWN);
	event_base_loopexit(gk->base, NULL);
}

void
worker_drain(struct gk *gk)
{
	struct timeval tv = clock_tv(gk->cfg->defaults.drain_timeout);

	if (gk->draining)
		return;
	gk->draining = 1;
	/* Listeners first: once the line is out, new connections are refused. */
	close_listeners(gk);
	log_kv(LOG_LEVEL_INFO, "draining", LOG_NUM("worker", gk->worker),
	       LOG_NUM("sessions", gk->n_sessions),
	       LOG_NUM("drain_timeout_ms", gk->cfg->defaults.drain_timeout));
	if (gk->n_sessions == 0) {
		event_base_loopexit(gk->base, NULL);
		return;
	}
	gk->drain_timer = evtimer_new(gk->base, on_drain_timeout, gk);
	if (gk->drain_timer == NULL || evtimer_add(gk->drain_timer, &tv) == -1)
		on_drain_timeout(-1, 0, gk);
}

int
worker_draining(const struct gk *gk)
{
	return gk->draining;
}

static void
reload_free(struct worker_reload *r)
{
	if (r == NULL)
		return;
	config_unref(r->cfg);
	free(r->bound);
	free(r);
}

static int
same_listen(const struct config_listener *a, const struct config_listener *b)
{
	return a->listen.len == b->listen.len &&
	       net_sockaddr_equal((const struct sockaddr *)&a->listen.ss,
				  (const struct sockaddr *)&b->listen.ss);
}

int
worker_apply(struct gk *gk, struct config *cfg, const struct sockaddr_storage *bound, size_t *added,
	     size_t *kept, size_t *removed)
{
	size_t n = cfg->n_listeners, old_n = gk->n_listeners;
	struct listener **fresh = calloc(n ? n : 1, sizeof(*fresh)), **old = gk->listeners;
	int *match = malloc((n ? n : 1) * sizeof(*match));
	char *taken = calloc(old_n ? old_n : 1, 1);

	if (fresh == NULL || match == NULL || taken == NULL)
		goto fail;
	/*
	 * Same address and same name first (several "IP:0" listeners stay
	 * who they were), then same address alone (a renamed listener).
	 */
	for (int by_name = 1; by_name >= 0; by_name--)
		for (size_t i = 0; i < n; i++) {
			if (by_name)
				match[i] = -1;
			for (size_t j = 0; j < old_n && match[i] < 0; j++)
				if (old[j] != NULL && !taken[j] &&
				    same_listen(listener_conf(old[j]), &cfg->listeners[i]) &&
				    (!by_name || strcmp(listener_conf(old[j])->name,
							cfg->listeners[i].name) == 0)) {
					match[i] = (int)j;
					taken[j] = 1;
				}
		}
	for (size_t i = 0; i < n; i++) {
		if (match[i] >= 0)
			continue;
		fresh[i] = listener_new(gk, cfg, &cfg->listeners[i],
					bound ? (const struct sockaddr *)&bound[i] : NULL);
		if (fresh[i] == NULL && gk->worker == 0)
			goto fail;
	}
	*added = *kept = *removed = 0;
	for (size_t i = 0; i < n; i++) {
		if (match[i] < 0) {
			*added += 1;
			continue;
		}
		fresh[i] = old[match[i]];
		if (listener_update(fresh[i], cfg, &cfg->listeners[i]) == -1)
			log_kv(LOG_LEVEL_ERROR, "reload: listener keeps its old settings",
			       LOG_STR("listener", cfg->listeners[i].name),
			       LOG_STR("error", "out of memory"));
		*kept += 1;
	}
	pthread_mutex_lock(gk->listeners_lock);
	gk->listeners = fresh;
	gk->n_listeners = n;
	pthread_mutex_unlock(gk->listeners_lock);
	for (size_t j = 0; j < old_n; j++)
		if (!taken[j] && old[j] != NULL) {
			listener_close(old[j]);
			*removed += 1;
		}
	free(old);
	free(match);
	free(taken);
	config_unref(gk->cfg);
	gk->cfg = config_ref(cfg);
	return 0;
fail:
	for (size_t i = 0; fresh != NULL && i < n; i++)
		if (match != NULL && match[i] < 0)
			listener_close(fresh[i]);
	free(fresh);
	free(match);
	free(taken);
	return -1;
}

/* A worker's notify pipe became readable: "d" asks it to drain, "r" to reload. */
static void
on_notify(evutil_socket_t fd, short what, void *arg)
{
	struct gk *gk = arg;
	struct worker_reload *r;
	int stop = 0;
	char c;
	size_t added, kept, removed;

	(void)what;
	while (read(fd, &c, 1) > 0)
		stop |= c == 'd';
	if (stop) {
		worker_drain(gk);
		return;
	}
	r = __atomic_exchange_n(&gk->reload, NULL, __ATOMIC_ACQ_REL);
	if (r != NULL && !gk->draining)
		worker_apply(gk, r->cfg, r->bound, &added, &kept, &removed);
	reload_free(r);
}

int
worker_ask_drain(struct gk *gk)
{
	return write(gk->notify[1], "d", 1) == 1 ? 0 : -1;
}

int
worker_ask_reload(struct gk *gk, struct config *cfg, const struct gk *first)
{
	struct worker_reload *r = calloc(1, sizeof(*r)), *prev;
	struct sockaddr_storage *bound;

	bound = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*bound));
	if (r == NULL || bound == NULL) {
		free(r);
		free(bound);
		log_warnx("reload: worker %d keeps the old config (out of memory)", gk->worker);
		return -1;
	}
	/* The first worker's listeners are cfg's, in order: it applied cfg already. */
	for (size_t k = 0; k < cfg->n_listeners; k++)
		memcpy(&bound[k], listener_bound(first->listeners[k]), sizeof(bound[k]));
	r->cfg = config_ref(cfg);
	r->bound = bound;
	prev = __atomic_exchange_n(&gk->reload, r, __ATOMIC_ACQ_REL);
	reload_free(prev);
	if (write(gk->notify[1], "r", 1) == -1) {
		log_warn("cannot ask worker %d to reload", gk->worker);
		return -1;
	}
	return 0;
}

int
worker_open(struct gk *gk, struct config *cfg, int index, int n, const struct gk *first,
	    pthread_mutex_t *listeners_lock)
{
	memset(gk, 0, sizeof(*gk));
	TAILQ_INIT(&gk->sessions);
	pool_init(&gk->session_pool, session_size());
	pool_init(&gk->http_pool, http_stream_size());
	gk->cfg = config_ref(cfg);
	gk->worker = index;
	gk->n_workers = n;
	gk->notify[0] = gk->notify[1] = -1;
	gk->listeners_lock = listeners_lock;
	if ((gk->base = event_base_new()) == NULL) {
		log_error("cannot create an event loop");
		return -1;
	}
	if ((gk->resolver = resolver_new(gk->base, &cfg->resolver)) == NULL)
		return -1;
	if ((gk->listeners = calloc(cfg->n_listeners, sizeof(*gk->listeners))) == NULL)
		return -1;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct sockaddr *addr = first ? listener_bound(first->listeners[i]) : NULL;
		if ((gk->listeners[i] = listener_new(gk, cfg, &cfg->listeners[i], addr)) == NULL)
			return -1;
		gk->n_listeners++;
	}
	if (first != NULL) {
		if (pipe2(gk->notify, O_NONBLOCK | O_CLOEXEC) == -1)
			return -1;
		gk->notify_ev =
		    event_new(gk->base, gk->notify[0], EV_READ | EV_PERSIST, on_notify, gk);
		if (gk->notify_ev == NULL || event_add(gk->notify_ev, NULL) == -1)
			return -1;
	}
	return 0;
}

void
worker_close(struct gk *gk)
{
	close_listeners(gk);
	session_close_all(gk, REASON_SHUTDOWN);
	pool_destroy(&gk->session_pool);
	pool_destroy(&gk->http_pool);
	if (gk->drain_timer)
		event_free(gk->drain_timer);
	if (gk->notify_ev)
		event_free(gk->notify_ev);
	for (int i = 0; i < 2; i++)
		if (gk->notify[i] >= 0)
			close(gk->notify[i]);
	resolver_free(gk->resolver);
	free(gk->listeners);
	reload_free(gk->reload);
	config_unref(gk->cfg);
	if (gk->base)
		event_base_free(gk->base);
}

int
worker_run(struct gk *gk)
{
	return event_base_dispatch(gk->base);
}

/* ---- accessors ---- */

struct event_base *
worker_base(const struct gk *gk)
{
	return gk->base;
}

struct resolver *
worker_resolver(const struct gk *gk)
{
	return gk->resolver;
}

void
worker_listeners_lock(struct gk *gk)
{
	pthread_mutex_lock(gk->listeners_lock);
}

void
worker_listeners_unlock(struct gk *gk)
{
	pthread_mutex_unlock(gk->listeners_lock);
}

size_t
worker_n_listeners(const struct gk *gk)
{
	return gk->n_listeners;
}

struct listener *
worker_listener(const struct gk *gk, size_t i)
{
	return i < gk->n_listeners ? gk->listeners[i] : NULL;
}

void
worker_count_reload(struct gk *gk, int ok)
{
	__atomic_fetch_add(ok ? &gk->reloads_ok : &gk->reloads_failed, 1, __ATOMIC_RELAXED);
}

void
worker_reloads(const struct gk *gk, uint64_t *ok, uint64_t *failed)
{
	*ok = __atomic_load_n(&gk->reloads_ok, __ATOMIC_RELAXED);
	*failed = __atomic_load_n(&gk->reloads_failed, __ATOMIC_RELAXED);
}
