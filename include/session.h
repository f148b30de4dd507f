/*
 * session.h: one client connection, from accept to its access-log line.
 *
 * A session takes the accepted socket, asks the listener's policy where
 * the client may go (policy.h), picks addresses from the resolver's
 * snapshot, connects (trying the next address on failure, all within the
 * connect timeout), relays both ways, and ends in exactly one place:
 * session_close, which frees everything, logs one access line and tells
 * its worker (worker_session_ended).
 */
#ifndef GK_SESSION_H
#define GK_SESSION_H

#include <event2/util.h>
#include <sys/socket.h>

#include "reason.h"

struct gk;
struct listener;
struct session;

/* session_size: the bytes of one session in gk->session_pool. */
size_t session_size(void);

/*
 * session_start owns fd from now on (closes it on any failure). The
 * session is linked into gk->sessions until session_close.
 */
void session_start(struct gk *gk, struct listener *l, evutil_socket_t fd,
		   const struct sockaddr *peer, socklen_t peerlen);

/*
 * session_close ends a session: frees it, logs the access line with
 * reason (a value of the enum, never REASON_NONE) and counts it.
 */
void session_close(struct session *s, enum reason reason);

/* session_close_all closes every live session with reason (drain timeout). */
void session_close_all(struct gk *gk, enum reason reason);

#endif
