/*
 * gk.h: the one context passed through gatekeeper.
 *
 * struct gk holds the event loop, the config in force, the resolver, the
 * listeners and the live sessions. main.c builds it; every module receives
 * it explicitly, so there are no scattered globals and tests can build a
 * small one.
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
};

/* gk_session_ended is called by session_close: it ends a drain when the last session goes. */
void gk_session_ended(struct gk *gk);

#endif
