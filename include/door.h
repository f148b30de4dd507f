/*
 * door.h: the DNS door, a listener in mode dns.
 *
 * It answers queries over UDP and TCP on the listener's address from the
 * listener's policy alone: an allowed name gets the door's own address
 * (or the listener's 'answer'), its parent domains an empty answer, every
 * other name NXDOMAIN (or REFUSED), and a source not allowed to ask
 * REFUSED. Nothing is ever forwarded to another server, so a query cannot
 * carry data out. Each worker runs a door per dns listener, in its loop.
 */
#ifndef GK_DOOR_H
#define GK_DOOR_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct gk;
struct listener;
struct door;

/* How one query ended, for /metrics. */
enum door_result {
	DOOR_ANSWERED,	   /* NOERROR with addresses */
	DOOR_NODATA,	   /* NOERROR, no address of that type (or a parent domain) */
	DOOR_NXDOMAIN,	   /* not allowed */
	DOOR_REFUSED,	   /* not allowed (refuse: refused), or from a source not allowed */
	DOOR_ERROR,	   /* FORMERR, NOTIMP, BADVERS answered */
	DOOR_DROPPED,	   /* a response, or too short to answer: no reply */
	DOOR_RATE_LIMITED, /* over max_queries_per_source: no reply */
	DOOR_RESULT_COUNT
};

/* door_result_name: the label of r in /metrics. */
const char *door_result_name(enum door_result r);

/*
 * door_open binds the UDP side of l at addr (the address its TCP socket
 * bound) in gk's loop. Returns the door, or NULL after logging why.
 */
struct door *door_open(struct gk *gk, struct listener *l, const struct sockaddr *addr);

/*
 * door_shutdown stops answering: the UDP socket stops being read and the
 * TCP connections close (the listener stops accepting). door_free then
 * frees it, once the listener goes (NULL is fine for both).
 */
void door_shutdown(struct door *d);
void door_free(struct door *d);

/*
 * door_tcp_start serves one TCP connection that l accepted: queries
 * framed by their two-byte lengths, answered in order, until the client
 * closes or stays idle for idle_timeout. It counts as one of l's sessions.
 */
void door_tcp_start(struct gk *gk, struct listener *l, evutil_socket_t fd,
		    const struct sockaddr *peer, socklen_t peerlen);

#endif
