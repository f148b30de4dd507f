/*
 * listener.h: a bound socket that accepts connections for one listener.
 *
 * A listener owns its socket, its upstream watches and its connection
 * count. It is reference-counted: its worker (worker.h) holds one
 * reference while it accepts, and each session holds one, so a listener
 * closed by a drain or a reload stays valid until its last session ends.
 * Accepted connections go to session_start in the worker's context.
 */
#ifndef GK_LISTENER_H
#define GK_LISTENER_H

#include <stdint.h>
#include <sys/socket.h>

#include "reason.h"

struct gk;
struct config;
struct config_listener;
struct resolver;
struct resolver_name;
struct listener;

/*
 * listener_new binds conf->listen (or addr, when not NULL: the address a
 * first worker actually bound, so port 0 means the same port for all) and
 * starts accepting into sessions, in gk's loop with gk's resolver (gk
 * must outlive the listener). conf belongs to cfg, of which the
 * listener holds a reference. With several workers the socket is
 * SO_REUSEPORT and max_connections is shared out between them. Returns
 * NULL after logging why (address in use, permission, ...).
 */
struct listener *listener_new(struct gk *gk, struct config *cfg, const struct config_listener *conf,
			      const struct sockaddr *addr);

/*
 * listener_update gives a listener that a reload keeps (same address) its
 * new settings, from cfg: its socket stays open, so no connection is
 * refused; new sessions use conf, running ones keep the config they
 * started with. The upstream names of conf are watched before the old ones
 * are dropped. Returns 0, or -1 (out of memory: nothing changed).
 */
int listener_update(struct listener *l, struct config *cfg, const struct config_listener *conf);

/* listener_config: the config the listener's settings come from (sessions take a reference). */
struct config *listener_config(const struct listener *l);

/* listener_close stops accepting and drops its worker's reference. */
void listener_close(struct listener *l);

const struct config_listener *listener_conf(const struct listener *l);
struct resolver *listener_resolver(const struct listener *l);
/* The address actually bound (port 0 resolved). */
const struct sockaddr *listener_bound(const struct listener *l);

/*
 * listener_unresolved calls fn for each fixed upstream of l (its upstream
 * and its routes' upstreams; "$host" ones are per connection and left out)
 * and each source name that has no address yet, with kind "upstream" or
 * "source" (port 0) and the last lookup's error (NULL while the first
 * lookup is on its way). Returns how many there are.
 */
typedef void listener_unresolved_fn(void *arg, const char *listener, const char *kind,
				    const char *host, uint16_t port, const char *error);
size_t listener_unresolved(const struct listener *l, listener_unresolved_fn *fn, void *arg);

/*
 * listener_source_names gives what the source names of l's policy resolve
 * to now, for struct policy_source (NULL when it has none); valid until
 * the loop runs again. Built again when an answer changed.
 */
struct policy_names;
const struct policy_names *listener_source_names(struct listener *l);

/*
 * listener_source_acquire counts one more session from client on l, under
 * conf's max_connections_per_source (0: not counted), across every worker.
 * Returns REASON_NONE when counted (pair it with listener_source_release),
 * REASON_SOURCE_LIMIT when the client has its limit already, or
 * REASON_OUT_OF_MEMORY; neither of those is counted.
 */
enum reason listener_source_acquire(struct listener *l, const struct config_listener *conf,
				    const struct sockaddr *client);
void listener_source_release(struct listener *l, const struct sockaddr *client);

/*
 * listener_warn_unresolved logs that a connection was refused because the
 * upstream has no address yet: at most once per 5 s per listener, with the
 * number of refusals not logged since.
 */
void listener_warn_unresolved(struct listener *l, const char *upstream);

/*
 * listener_out_of_resources pauses accepting for a moment when err says
 * the process ran out of fds or memory (from accept, or from a session's
 * upstream socket), with one warning per episode. Returns 1 if it paused,
 * 0 for any other err.
 */
int listener_out_of_resources(struct listener *l, int err);

/*
 * listener_over_limit: more sessions than max_connections are open (an
 * http listener accepts a few beyond it, to answer them 503).
 */
int listener_over_limit(const struct listener *l);

/*
 * A session holds a reference from listener_session_begin to
 * listener_session_end; the count drives max_connections. The outcome's
 * decision and reason are counted.
 */
void listener_session_begin(struct listener *l);

/* How a session ended, for the listener's counters. */
struct listener_outcome {
	enum decision decision; /* the session's routing decision */
	enum reason reason;	/* the access line's reason */
	uint64_t bytes_in, bytes_out;
};
void listener_session_end(struct listener *l, const struct listener_outcome *o);

/* listener_count_dns counts one query of a mode dns listener, by enum door_result. */
void listener_count_dns(struct listener *l, int result);

/* listener_door: a mode dns listener's door (door.h), else NULL. */
struct door;
struct door *listener_door(const struct listener *l);

/* listener_count_would_deny counts one refusal that action: report let through. */
void listener_count_would_deny(struct listener *l);

/* listener_connect_failed counts one failed attempt to reach an upstream address. */
void listener_connect_failed(struct listener *l);

/*
 * Totals since the listener opened, per worker. The worker writes them;
 * the admin endpoint reads them from another thread through
 * listener_stats_read, which loads every field atomically.
 */
struct listener_stats {
	uint64_t accepted;
	uint64_t sessions;	      /* ended */
	uint64_t allowed;	      /* routed to an upstream */
	uint64_t denied;	      /* refused by routes, allowlist or address guard */
	uint64_t bytes_in, bytes_out; /* from clients, from upstreams */
	uint64_t connect_failures;
	uint64_t would_deny; /* refusals report mode let through (one per request) */
	uint64_t dns[8];     /* mode dns: queries by enum door_result */
	int64_t active;
	/* closed[d][r]: sessions ended with decision d and reason r (both sets are closed) */
	uint64_t closed[DECISION_COUNT][REASON_COUNT];
};

/* listener_stats_read copies l's counters into out; safe from any thread. */
void listener_stats_read(const struct listener *l, struct listener_stats *out);

#endif
