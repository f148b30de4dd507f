/*
 * admin.h: the admin HTTP endpoint (libevent's evhttp), off unless
 * admin.listen is set.
 *
 *   /healthz  200 while the event loop answers
 *   /readyz   200 once every listener is bound and every fixed upstream
 *             name has addresses, else 503 naming what is missing
 *   /metrics  Prometheus text format (metrics.h)
 *
 * It runs on the first worker's loop and reads the other workers'
 * counters atomically. admin_health is the client side: what
 * `gatekeeper health` runs inside an image with no shell or curl.
 */
#ifndef GK_ADMIN_H
#define GK_ADMIN_H

#include <stddef.h>
#include <sys/socket.h>

struct admin;
struct gk;

/*
 * admin_new serves the endpoint on addr in workers[0]'s loop. Returns the
 * admin, or NULL with a reason in err.
 */
struct admin *admin_new(const struct sockaddr *addr, socklen_t len, struct gk *workers, int n,
			char *err, size_t errlen);

/* admin_free closes the endpoint (before the workers go away). */
void admin_free(struct admin *a);

/*
 * admin_health asks addr's /healthz (a wildcard address means this host's
 * loopback) and waits at most timeout_ms. Returns 0 when it answered 200,
 * else -1 with the reason in why.
 */
int admin_health(const struct sockaddr *addr, socklen_t len, int timeout_ms, char *why,
		 size_t whylen);

/* The largest answer admin_get takes. */
#define ADMIN_GET_MAX (64 * 1024 * 1024)

/*
 * admin_get asks addr (as admin_health does) for path and waits at most
 * timeout_ms for the whole answer. Returns the HTTP status with the body in
 * *body (NUL-terminated, the caller frees it), or -1 with the reason in why
 * and *body NULL.
 */
int admin_get(const struct sockaddr *addr, socklen_t len, const char *path, int timeout_ms,
	      char **body, char *why, size_t whylen);

#endif
