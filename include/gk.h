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

#include <stddef.h>
#include <sys/queue.h>

#define GK_VERSION "0.1.0"

struct event;
struct event_base;
struct config;
struct resolver;
struct listener;
struct session;

TAILQ_HEAD(session_list, session);

struct gk {
	struct event_base *base;
	struct config *cfg;
	struct resolver *resolver;
	struct listener **listeners;
	size_t n_listeners;
	struct session_list sessions;
	size_t n_sessions;
	int draining;           /* SIGTERM seen: no new sessions, exit when none left */
	struct event *drain_timer;
	int worker, n_workers;  /* this loop's index, and how many there are */
	int notify[2];          /* a pipe: the main thread asks this worker to drain */
	struct event *notify_ev;
};

/* gk_session_ended is called by session_close: it ends a drain when the last session goes. */
void gk_session_ended(struct gk *gk);

#endif
