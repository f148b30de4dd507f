/*
 * observed.h: what report mode let through, remembered for the operator.
 *
 * One table per process, shared by every worker and kept across reloads:
 * an entry per (listener, name, port, source address) that a listener in
 * action: report would have refused, with how often and when it was seen.
 * It holds at most observed_max entries; a new one pushes out the least
 * recently seen, and the evictions are counted. The admin endpoint serves
 * it as /observed, and `gatekeeper observed` turns that into an allowlist.
 */
#ifndef GK_OBSERVED_H
#define GK_OBSERVED_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "reason.h"
#include "route.h"

/* One observation, as observed_snapshot copies it out. */
struct observed_entry {
	char listener[64];
	char mode[8];		       /* the listener's mode: tls, http, connect, tcp */
	char name[ROUTE_NAME_MAX + 1]; /* "" when the client named nothing */
	uint16_t port;
	struct sockaddr_storage source; /* port 0; an IPv4-mapped address as IPv4 */
	enum reason reason;		/* what enforce mode would have refused it for */
	uint64_t count;
	time_t first_seen, last_seen;
};

/* observed_set_max sets the bound (at start and after each reload); extra entries go at once. */
void observed_set_max(size_t max);

/*
 * observed_record counts one would-deny: the entry for (listener, name,
 * port, source) is created or bumped and becomes the most recently seen.
 * name may be NULL. Safe from any thread.
 */
void observed_record(const char *listener, const char *mode, const char *name, uint16_t port,
		     const struct sockaddr *source, enum reason why);

/*
 * observed_snapshot copies the table, highest count first (then by
 * listener, name, port), into a new array the caller frees; *n gets its
 * length. Returns NULL with *n 0 when the table is empty or memory ran
 * out.
 */
struct observed_entry *observed_snapshot(size_t *n);

/* observed_stats: entries held now, and entries evicted since start. */
void observed_stats(size_t *entries, uint64_t *evicted);

/* observed_reset empties the table (tests). */
void observed_reset(void);

#endif
