/*
 * resolver.h: upstream names, resolved in the background and kept fresh.
 *
 * A listener "watches" its upstream HOST:PORT once; the resolver looks the
 * name up with c-ares inside the libevent loop (it never blocks), re-resolves
 * it at clamp(TTL, min_ttl, refresh), retries failures with back-off and
 * keeps the last good answer until a new one succeeds. Sessions take a
 * reference-counted snapshot of the current addresses, so a refresh never
 * pulls an address list out from under a connection attempt.
 */
#ifndef GK_RESOLVER_H
#define GK_RESOLVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

struct event_base;
struct config_resolver;
struct resolver;
struct resolver_name;

/* An immutable snapshot of a name's addresses, ports already set. */
struct resolver_addrs {
	unsigned refs;
	size_t n;
	struct sockaddr_storage addr[];
};

/*
 * resolver_new creates the c-ares channels on base. nameservers from cfg
 * override /etc/resolv.conf's. Returns NULL and logs on failure.
 */
struct resolver *resolver_new(struct event_base *base, const struct config_resolver *cfg);

/* resolver_free cancels every lookup and frees all names. */
void resolver_free(struct resolver *res);

/*
 * resolver_watch starts keeping HOST:PORT resolved and returns its handle.
 * Watching the same HOST:PORT twice returns the same handle with one more
 * reference; each watch is paired with resolver_unwatch. An IP literal is
 * "resolved" at once and never looked up. Returns NULL on out of memory.
 * A name nobody watches any more is kept (with its answer) until its next
 * refresh is due, so a name asked for again and again, like a "$host"
 * upstream, is not looked up for every connection.
 */
struct resolver_name *resolver_watch(struct resolver *res, const char *host, uint16_t port);

/*
 * How a name is looked up. CONFIGURED: as the system would, with
 * resolv.conf's search list and /etc/hosts (names from the config).
 * EXACT: the very name, in DNS only: no search list, no ndots, no
 * /etc/hosts (names read from the wire: SNI, Host, CONNECT). The same
 * name watched both ways is two names, with answers of their own.
 */
enum resolver_lookup {
	RESOLVER_CONFIGURED,
	RESOLVER_EXACT,
};

/* resolver_watch_as is resolver_watch with the way of lookup chosen; resolver_watch is CONFIGURED.
 */
struct resolver_name *resolver_watch_as(struct resolver *res, const char *host, uint16_t port,
					enum resolver_lookup how);
void resolver_unwatch(struct resolver_name *name);

/* resolver_ref takes one more watch of a watched name (NULL stays NULL); resolver_unwatch drops it.
 */
struct resolver_name *resolver_ref(struct resolver_name *name);

/*
 * resolver_addrs returns the current addresses with a reference the caller
 * drops with resolver_addrs_release, or NULL when the name has never
 * resolved. *start receives a round-robin index to begin connecting at, so
 * new connections spread over every address.
 */
struct resolver_addrs *resolver_addrs(struct resolver_name *name, size_t *start);
void resolver_addrs_release(struct resolver_addrs *addrs);

/*
 * Waiting for a name's first answer (a "$host" upstream seen for the first
 * time). resolver_wait returns 1 when the name already has addresses (no
 * wait), -1 when its last lookup failed and the retry is not due yet (a
 * negative cache: the caller refuses at once), else 0 and calls cb(arg)
 * once, when the lookup in flight ends, successfully or not. The waiter struct belongs to the
 * caller and must stay valid until cb runs or resolver_wait_cancel is called.
 */
struct resolver_waiter {
	TAILQ_ENTRY(resolver_waiter) entry;
	struct resolver_name *name; /* NULL when not waiting */
	void (*cb)(void *arg);
	void *arg;
};

int resolver_wait(struct resolver_name *name, struct resolver_waiter *w, void (*cb)(void *),
		  void *arg);
void resolver_wait_cancel(struct resolver_waiter *w);

/*
 * resolver_refresh asks for a new lookup soon, as after a failed connect.
 * It is rate-limited to one lookup per min_ttl (at least one second).
 */
void resolver_refresh(struct resolver_name *name);

const char *resolver_name_host(const struct resolver_name *name);

/*
 * resolver_generation changes whenever some name's addresses change (a
 * first answer, or one that differs from the last), so a caller holding
 * something built from answers knows when to build it again.
 */
uint64_t resolver_generation(const struct resolver *res);

/* resolver_all_resolved: 1 if every watched name, "$host" ones included, has addresses. */
int resolver_all_resolved(const struct resolver *res);

/*
 * resolver_name_status: 1 when the name has addresses; otherwise 0, with
 * *error saying why its last lookup failed (a static string), or NULL
 * while its first lookup is still on its way.
 */
int resolver_name_status(const struct resolver_name *name, const char **error);

/*
 * resolver_name_gone: 1 when the last answer said the name has no
 * address (NXDOMAIN, or no A or AAAA records), as opposed to a failure to
 * get an answer (a timeout, SERVFAIL). resolver_addrs still gives the last
 * good addresses then: right for an upstream, wrong for a source, whose
 * old address another container may be given.
 */
int resolver_name_gone(const struct resolver_name *name);

/* Lookups finished since the resolver started, by result. */
struct resolver_stats {
	uint64_t lookups_ok;	  /* at least one address */
	uint64_t lookups_failed;  /* NXDOMAIN, SERVFAIL, no records, ... */
	uint64_t lookups_timeout; /* no server answered */
};

/* resolver_stats copies the counters; safe from any thread. */
void resolver_stats(const struct resolver *res, struct resolver_stats *out);

/*
 * resolver_foreach calls fn for every watched DNS name (IP literals left
 * out) with the addresses it holds now. The resolver's own thread only.
 */
void resolver_foreach(const struct resolver *res,
		      void (*fn)(void *arg, const char *host, uint16_t port, size_t n_addrs),
		      void *arg);

#endif
