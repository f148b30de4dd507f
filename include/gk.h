/*
 * gk.h: the one context passed through gatekeeper.
 *
 * struct gk holds one worker's event loop, the config in force (shared,
 * read-only), its resolver, its listeners and its live sessions. Each
 * worker thread has its own struct gk and touches no other; main.c builds
 * them, and every module receives one explicitly, so there are no
 * scattered globals and tests can build a small one.
 */
#ifndef GK_GK_H
#define GK_GK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "pool.h"

#define GK_VERSION "0.1.0"

struct event;
struct event_base;
struct config;
struct resolver;
struct listener;
struct session;

TAILQ_HEAD(session_list, session);

/* A reload handed from the main thread to a worker (gk.reload). */
struct gk_reload {
	struct config *cfg;             /* a reference, for this worker */
	struct sockaddr_storage *bound; /* per listener of cfg: the address the first worker bound */
};

struct gk {
	struct event_base *base;
	struct config *cfg;
	struct resolver *resolver;
	struct listener **listeners;
	size_t n_listeners;
	struct session_list sessions;
	size_t n_sessions;
	struct pool session_pool; /* sessions, with their events (session_size()) */
	struct pool http_pool;    /* the http streams of mode http sessions */
	int draining;           /* SIGTERM seen: no new sessions, exit when none left */
	struct event *drain_timer;
	int worker, n_workers;  /* this loop's index, and how many there are */
	int notify[2];          /* a pipe: the main thread asks this worker to drain or reload */
	struct event *notify_ev;
	struct gk_reload *reload; /* the latest reload asked for (exchanged atomically) */
	pthread_mutex_t *listeners_lock; /* held while listeners[] changes, and by /metrics */
	uint64_t reloads_ok, reloads_failed; /* first worker only: counted by the main thread */
};

/* gk_session_ended is called by session_close: it ends a drain when the last session goes. */
void gk_session_ended(struct gk *gk);

#endif
