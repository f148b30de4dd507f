/*
 * worker.h: one event loop and what runs in it.
 *
 * struct gk is one worker's context: its event loop, the config in force
 * (shared, read-only), its resolver, its listeners and its live sessions.
 * Each worker thread has its own struct gk and touches no other's; main.c
 * opens them, and every module below receives one explicitly, so there
 * are no scattered globals and tests can build a small one.
 *
 * Calls go down: listener.c and session.c use the context fields marked
 * below and report a session's end through worker_session_ended; admin.c
 * and metrics.c read a worker through the accessors at the end of this
 * file; the rest of the struct belongs to worker.c.
 */
#ifndef GK_WORKER_H
#define GK_WORKER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "pool.h"

/* The version: `gatekeeper --version` and gatekeeper_build_info. */
#define GK_VERSION "0.1.0"

struct event;
struct event_base;
struct config;
struct resolver;
struct listener;
struct session;
struct worker_reload;

TAILQ_HEAD(session_list, session);

struct gk {
	/* The context listener.c and session.c work in. */
	struct event_base *base;
	struct config *cfg;
	struct resolver *resolver;
	struct session_list sessions;
	size_t n_sessions;
	struct pool session_pool; /* sessions, with their events (session_size()) */
	struct pool http_pool;	  /* the http streams of mode http sessions */
	int draining;		  /* SIGTERM seen: no new sessions, exit when none left */
	int worker, n_workers;	  /* this loop's index, and how many there are */

	/* worker.c's own. */
	struct listener **listeners;
	size_t n_listeners;
	struct event *drain_timer;
	int notify[2]; /* a pipe: the main thread asks this worker to drain or reload */
	struct event *notify_ev;
	struct worker_reload *reload;	 /* the latest reload asked for (exchanged atomically) */
	pthread_mutex_t *listeners_lock; /* held while listeners[] changes, and by /metrics */
	uint64_t reloads_ok, reloads_failed; /* first worker only: counted by the main thread */
};

/*
 * worker_open builds worker index of n in gk: its loop, resolver and
 * listeners, from cfg (of which it takes a reference). Workers after the
 * first (first != NULL) bind the addresses first got, so "port 0" is one
 * port for all, and get a notify pipe. listeners_lock is the process's
 * one lock over every worker's listener list. Returns 0, or -1 after
 * logging; either way worker_close frees what was built.
 */
int worker_open(struct gk *gk, struct config *cfg, int index, int n, const struct gk *first,
		pthread_mutex_t *listeners_lock);

/* worker_close frees what worker_open built, closing any session left; the loop has stopped. */
void worker_close(struct gk *gk);

/*
 * worker_run runs gk's loop on the calling thread until it drains or is
 * stopped. Returns event_base_dispatch's result (-1 on error).
 */
int worker_run(struct gk *gk);

/*
 * worker_drain stops gk from accepting and lets its sessions finish
 * within drain_timeout; its loop ends when the last one is gone. Runs on
 * gk's thread; a second call does nothing.
 */
void worker_drain(struct gk *gk);

/* worker_draining: has gk started to drain? (Read on gk's thread.) */
int worker_draining(const struct gk *gk);

/*
 * worker_apply moves gk to cfg, on gk's thread. A listener whose address
 * is in both configs keeps its socket and takes its new settings; the
 * others open or close (closed ones stop accepting, their sessions
 * finish). New sockets are opened first, so when one cannot be (the first
 * worker: an address in use), nothing has changed and -1 is returned.
 * bound gives, for later workers, the addresses the first one bound (NULL:
 * the config's). added, kept and removed count the listeners.
 */
int worker_apply(struct gk *gk, struct config *cfg, const struct sockaddr_storage *bound,
		 size_t *added, size_t *kept, size_t *removed);

/*
 * worker_ask_drain asks a later worker, from the main thread, to drain
 * (through its notify pipe). Returns 0, or -1 with errno set.
 */
int worker_ask_drain(struct gk *gk);

/*
 * worker_ask_reload asks a later worker, from the main thread, to move to
 * cfg (it takes its own reference) with the addresses first has bound
 * for cfg's listeners, which first must already serve. A reload asked
 * for earlier and not yet taken is replaced. Returns 0, or -1 after
 * logging (the worker keeps its config).
 */
int worker_ask_reload(struct gk *gk, struct config *cfg, const struct gk *first);

/*
 * worker_session_ended is session_close's report to its worker, after the
 * session left gk->sessions: it ends a drain when the last session goes.
 */
void worker_session_ended(struct gk *gk);

/* ---- accessors, for admin.c and metrics.c ---- */

/* worker_base: gk's event loop (the admin endpoint and the signals live on the first one's). */
struct event_base *worker_base(const struct gk *gk);

/* worker_resolver: gk's resolver, NULL while a failed open left none. */
struct resolver *worker_resolver(const struct gk *gk);

/*
 * worker_listeners_lock and worker_listeners_unlock hold the lock under
 * which a reload swaps listener lists: another thread reading a worker's
 * listeners (as /metrics does) holds it meanwhile. gk's own thread needs
 * no lock to read its own.
 */
void worker_listeners_lock(struct gk *gk);
void worker_listeners_unlock(struct gk *gk);

/* worker_n_listeners: how many listeners gk serves (those of its config, in order). */
size_t worker_n_listeners(const struct gk *gk);

/* worker_listener: gk's listener i (< worker_n_listeners), or NULL when it is not bound. */
struct listener *worker_listener(const struct gk *gk, size_t i);

/* worker_count_reload counts one SIGHUP reload on the first worker: ok, or failed. */
void worker_count_reload(struct gk *gk, int ok);

/* worker_reloads reads the reload counters of the first worker; safe from any thread. */
void worker_reloads(const struct gk *gk, uint64_t *ok, uint64_t *failed);

#endif
