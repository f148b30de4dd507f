/*
 * resolver.c: c-ares 1.18 inside the libevent loop, and the refresh policy.
 *
 * c-ares tells us which sockets it wants watched through
 * ARES_OPT_SOCK_STATE_CB; each gets one persistent libevent event, and a
 * single timer re-armed from ares_timeout() drives retransmissions (the
 * pattern c-ares documents for 1.18, which has no ares_process_fds and no
 * event thread). Every watched name has its own refresh timer. A successful
 * answer replaces the address snapshot and schedules the next lookup at
 * clamp(lowest TTL, min_ttl, refresh); a failure keeps the old snapshot and
 * retries with exponential back-off capped at refresh.
 *
 * Two channels: configured names are looked up the way the system would
 * (resolv.conf's search list, /etc/hosts first), since an operator may
 * name a short host or one /etc/hosts holds. Names read from the wire go
 * through a channel that looks up exactly the name given, in DNS only:
 * with a search list, an allowed name that does not exist would be
 * retried under the container's search domains and that other name's
 * address dialed, and /etc/hosts would answer for names nobody allowed it
 * to.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "clock.h"
#include "config.h"
#include "hash.h"
#include "log.h"
#include "net.h"
#include "resolver.h"

#define RETRY_FIRST_MS 1000
/* Lookups in flight at once; more wait their turn (sniffed names can flood). */
#define MAX_IN_FLIGHT 64

/* One c-ares channel of the resolver. */
struct channel {
	struct resolver *res;
	ares_channel ch;
};

struct sock_watch {
	ares_socket_t fd;
	struct event *ev;
	struct channel *chan;
	LIST_ENTRY(sock_watch) entry;
};

struct resolver_name {
	struct resolver *res; /* NULL once unwatched while a lookup is in flight */
	TAILQ_ENTRY(resolver_name) entry;
	struct resolver_name *hash_next;	  /* the next in its bucket of res->buckets */
	TAILQ_ENTRY(resolver_name) pending_entry; /* waiting for a lookup slot */
	int pending;
	uint32_t hash;
	char *host;
	uint16_t port;
	unsigned refs;
	int literal;
	enum resolver_lookup how;
	int in_flight;
	unsigned failures;
	int gone;	   /* the last answer said the name has no address (NXDOMAIN, no records) */
	const char *error; /* why the last lookup failed (a static string), NULL after a success */
	size_t rr;
	struct resolver_addrs *addrs;
	struct event *timer;
	struct timeval last_lookup;
	TAILQ_HEAD(, resolver_waiter) waiters;
};

struct resolver {
	struct event_base *base;
	struct channel chan[2]; /* by enum resolver_lookup */
	struct event *timeout_ev;
	LIST_HEAD(, sock_watch) socks;
	TAILQ_HEAD(, resolver_name) names;
	struct resolver_name **buckets;	     /* the same names, by (host, port, how) */
	TAILQ_HEAD(, resolver_name) pending; /* names waiting for one of MAX_IN_FLIGHT slots */
	int closing;			     /* resolver_free is under way: start nothing */
	size_t n_buckets, n_names;
	int64_t refresh_ms, min_ttl_ms;
	unsigned in_flight;
	uint64_t generation;	     /* counts changes of any name's addresses */
	struct resolver_stats stats; /* written here, read by the admin thread */
};

static void lookup_start(struct resolver_name *n);
static void start_pending(struct resolver *res);

static void
arm_timeout(struct resolver *res)
{
	struct timeval tv[2], *tvp;

	tvp = ares_timeout(res->chan[0].ch, NULL, &tv[0]);
	tvp = ares_timeout(res->chan[1].ch, tvp, &tv[1]);
	if (tvp != NULL)
		evtimer_add(res->timeout_ev, tvp);
	else
		evtimer_del(res->timeout_ev);
}

static void
on_ares_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct resolver *res = arg;

	(void)fd;
	(void)what;
	ares_process_fd(res->chan[0].ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	ares_process_fd(res->chan[1].ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	arm_timeout(res);
}

static void
on_ares_socket(evutil_socket_t fd, short what, void *arg)
{
	struct sock_watch *sw = arg;
	struct channel *chan = sw->chan;
	struct resolver *res = chan->res;

	/* sw may be freed inside ares_process_fd (socket closed): use chan only. */
	ares_process_fd(chan->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	arm_timeout(res);
}

/* Called by c-ares when a socket opens, changes interest, or closes (0, 0). */
static void
on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct channel *chan = data;
	struct resolver *res = chan->res;
	struct sock_watch *sw;

	LIST_FOREACH(sw, &res->socks, entry)
	if (sw->fd == fd && sw->chan == chan)
		break;
	if (sw != NULL) {
		event_free(sw->ev);
		sw->ev = NULL;
	}
	if (!readable && !writable) {
		if (sw != NULL) {
			LIST_REMOVE(sw, entry);
			free(sw);
		}
		return;
	}
	if (sw == NULL) {
		if ((sw = calloc(1, sizeof(*sw))) == NULL) {
			log_error("resolver: out of memory watching a DNS socket");
			return;
		}
		sw->fd = fd;
		sw->chan = chan;
		LIST_INSERT_HEAD(&res->socks, sw, entry);
	}
	sw->ev =
	    event_new(res->base, fd,
		      (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) | EV_PERSIST),
		      on_ares_socket, sw);
	if (sw->ev == NULL || event_add(sw->ev, NULL) == -1)
		log_error("resolver: cannot watch a DNS socket");
}

/*
 * channel_init makes one channel: exact (names from the wire) asks DNS for
 * the very name, with no search domains and no /etc/hosts. nameservers
 * from cfg override resolv.conf's. Returns 0, or -1 after logging.
 */
static int
channel_init(struct resolver *res, struct channel *chan, const struct config_resolver *cfg,
	     int exact)
{
	static char dns_only[] = "b";
	struct ares_options opts;
	int rc, mask;

	chan->res = res;
	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = on_sock_state;
	opts.sock_state_cb_data = chan;
	opts.timeout = (int)cfg->timeout;
	opts.tries = 2;
	mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
	if (exact) {
		opts.flags = ARES_FLAG_NOSEARCH;
		opts.domains = NULL;
		opts.ndomains = 0; /* and no search list from resolv.conf */
		opts.lookups = dns_only;
		mask |= ARES_OPT_FLAGS | ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS;
	}
	if ((rc = ares_init_options(&chan->ch, &opts, mask)) != ARES_SUCCESS) {
		log_error("resolver: c-ares channel: %s", ares_strerror(rc));
		return -1;
	}
	if (cfg->nameservers.n > 0) {
		/* "ip" or "ip:port" / "[v6]:port", comma-separated, as c-ares wants. */
		size_t len = 1;
		char *csv;
		for (size_t i = 0; i < cfg->nameservers.n; i++)
			len += strlen(cfg->nameservers.v[i]) + 1;
		if ((csv = calloc(1, len)) == NULL)
			goto fail;
		for (size_t i = 0; i < cfg->nameservers.n; i++) {
			if (i)
				strcat(csv, ",");
			strcat(csv, cfg->nameservers.v[i]);
		}
		rc = ares_set_servers_ports_csv(chan->ch, csv);
		free(csv);
		if (rc != ARES_SUCCESS) {
			log_error("resolver: nameservers: %s", ares_strerror(rc));
			goto fail;
		}
	}
	return 0;
fail:
	ares_destroy(chan->ch);
	chan->ch = NULL;
	return -1;
}

/* ---- the names, listed and hashed ---- */

static uint32_t
name_hash(const char *host, uint16_t port, enum resolver_lookup how)
{
	uint8_t tail[3] = {(uint8_t)(port >> 8), (uint8_t)port, (uint8_t)how};

	return hash_bytes(hash_bytes(HASH_SEED, host, strlen(host)), tail, sizeof(tail));
}

/*
 * names_rehash puts every listed name into twice as many buckets, once
 * there are twice as many names as buckets (or none yet). When memory is
 * short the old buckets stay; names_find walks the list if there are none.
 */
static int
names_rehash(struct resolver *res)
{
	size_t n = res->n_buckets ? res->n_buckets * 2 : 64;
	struct resolver_name **b, *e;

	if ((b = calloc(n, sizeof(*b))) == NULL)
		return -1;
	TAILQ_FOREACH(e, &res->names, entry)
	{
		e->hash_next = b[e->hash & (n - 1)];
		b[e->hash & (n - 1)] = e;
	}
	free(res->buckets);
	res->buckets = b;
	res->n_buckets = n;
	return 0;
}

static void
names_add(struct resolver *res, struct resolver_name *n)
{
	n->hash = name_hash(n->host, n->port, n->how);
	TAILQ_INSERT_TAIL(&res->names, n, entry);
	if ((++res->n_names > 2 * res->n_buckets || res->buckets == NULL) && names_rehash(res) == 0)
		return; /* n is in them now */
	if (res->buckets == NULL)
		return;
	n->hash_next = res->buckets[n->hash & (res->n_buckets - 1)];
	res->buckets[n->hash & (res->n_buckets - 1)] = n;
}

static void
names_remove(struct resolver *res, struct resolver_name *n)
{
	if (n->pending) {
		TAILQ_REMOVE(&res->pending, n, pending_entry);
		n->pending = 0;
	}
	TAILQ_REMOVE(&res->names, n, entry);
	res->n_names--;
	if (res->buckets == NULL)
		return;
	for (struct resolver_name **pp = &res->buckets[n->hash & (res->n_buckets - 1)]; *pp != NULL;
	     pp = &(*pp)->hash_next)
		if (*pp == n) {
			*pp = n->hash_next;
			return;
		}
}

/* names_find: the watched name (host, port, how), or NULL; a list walk if the buckets are missing.
 */
static struct resolver_name *
names_find(struct resolver *res, const char *host, uint16_t port, enum resolver_lookup how)
{
	struct resolver_name *n;

	if (res->buckets == NULL) {
		TAILQ_FOREACH(n, &res->names, entry)
		if (n->port == port && n->how == how && strcmp(n->host, host) == 0)
			return n;
		return NULL;
	}
	for (n = res->buckets[name_hash(host, port, how) & (res->n_buckets - 1)]; n != NULL;
	     n = n->hash_next)
		if (n->port == port && n->how == how && strcmp(n->host, host) == 0)
			return n;
	return NULL;
}

struct resolver *
resolver_new(struct event_base *base, const struct config_resolver *cfg)
{
	struct resolver *res;
	int rc;

	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		log_error("resolver: c-ares init failed: %s", ares_strerror(rc));
		return NULL;
	}
	if ((res = calloc(1, sizeof(*res))) == NULL)
		return NULL;
	res->base = base;
	res->refresh_ms = cfg->refresh;
	res->min_ttl_ms = cfg->min_ttl;
	LIST_INIT(&res->socks);
	TAILQ_INIT(&res->names);
	TAILQ_INIT(&res->pending);
	if (channel_init(res, &res->chan[RESOLVER_CONFIGURED], cfg, 0) == -1)
		goto fail;
	if (channel_init(res, &res->chan[RESOLVER_EXACT], cfg, 1) == -1)
		goto fail;
	if ((res->timeout_ev = evtimer_new(base, on_ares_timeout, res)) == NULL)
		goto fail;
	return res;
fail:
	for (int i = 0; i < 2; i++)
		if (res->chan[i].ch != NULL)
			ares_destroy(res->chan[i].ch);
	free(res);
	return NULL;
}

/*
 * wake_waiters runs every waiter's callback. A callback may drop the last
 * watch of the name (a session closing because the lookup failed), so the
 * name is held for the duration and released through resolver_unwatch.
 */
static void
wake_waiters(struct resolver_name *n)
{
	struct resolver_waiter *w;

	if (TAILQ_EMPTY(&n->waiters))
		return;
	n->refs++;
	while ((w = TAILQ_FIRST(&n->waiters)) != NULL) {
		TAILQ_REMOVE(&n->waiters, w, entry);
		w->name = NULL;
		w->cb(w->arg);
	}
	resolver_unwatch(n);
}

int
resolver_wait(struct resolver_name *n, struct resolver_waiter *w, void (*cb)(void *), void *arg)
{
	if (n->addrs != NULL && n->addrs->n > 0)
		return 1;
	/* Failed and waiting for its retry: the failure is the answer for now. */
	if (n->failures > 0 && !n->in_flight)
		return -1;
	w->name = n;
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&n->waiters, w, entry);
	return 0;
}

void
resolver_wait_cancel(struct resolver_waiter *w)
{
	if (w->name == NULL)
		return;
	TAILQ_REMOVE(&w->name->waiters, w, entry);
	w->name = NULL;
}

static void
name_free(struct resolver_name *n)
{
	if (n->timer)
		event_free(n->timer);
	if (n->addrs)
		resolver_addrs_release(n->addrs);
	free(n->host);
	free(n);
}

void
resolver_free(struct resolver *res)
{
	struct resolver_name *n;
	struct sock_watch *sw;

	if (res == NULL)
		return;
	/* Pending callbacks run now with ARES_EDESTRUCTION; they must start nothing. */
	res->closing = 1;
	ares_destroy(res->chan[0].ch);
	ares_destroy(res->chan[1].ch);
	while ((n = TAILQ_FIRST(&res->names)) != NULL) {
		names_remove(res, n);
		name_free(n);
	}
	free(res->buckets);
	while ((sw = LIST_FIRST(&res->socks)) != NULL) {
		LIST_REMOVE(sw, entry);
		if (sw->ev)
			event_free(sw->ev);
		free(sw);
	}
	event_free(res->timeout_ev);
	free(res);
	ares_library_cleanup();
}

void
resolver_addrs_release(struct resolver_addrs *a)
{
	if (a != NULL && --a->refs == 0)
		free(a);
}

struct resolver_addrs *
resolver_addrs(struct resolver_name *n, size_t *start)
{
	if (n->addrs == NULL || n->addrs->n == 0)
		return NULL;
	n->addrs->refs++;
	*start = n->rr++ % n->addrs->n;
	return n->addrs;
}

const char *
resolver_name_host(const struct resolver_name *n)
{
	return n->host;
}

void
resolver_stats(const struct resolver *res, struct resolver_stats *out)
{
	out->lookups_ok = __atomic_load_n(&res->stats.lookups_ok, __ATOMIC_RELAXED);
	out->lookups_failed = __atomic_load_n(&res->stats.lookups_failed, __ATOMIC_RELAXED);
	out->lookups_timeout = __atomic_load_n(&res->stats.lookups_timeout, __ATOMIC_RELAXED);
}

void
resolver_foreach(const struct resolver *res,
		 void (*fn)(void *arg, const char *host, uint16_t port, size_t n_addrs), void *arg)
{
	const struct resolver_name *n;

	TAILQ_FOREACH(n, &res->names, entry)
	if (n->refs > 0 && !n->literal)
		fn(arg, n->host, n->port, n->addrs ? n->addrs->n : 0);
}

uint64_t
resolver_generation(const struct resolver *res)
{
	return res->generation;
}

int
resolver_all_resolved(const struct resolver *res)
{
	const struct resolver_name *n;

	TAILQ_FOREACH(n, &res->names, entry)
	if (n->refs > 0 && n->addrs == NULL)
		return 0;
	return 1;
}

int
resolver_name_gone(const struct resolver_name *n)
{
	return n->gone;
}

int
resolver_name_status(const struct resolver_name *n, const char **error)
{
	*error = n->addrs != NULL ? NULL : n->error;
	return n->addrs != NULL;
}

static void
schedule(struct resolver_name *n, int64_t ms)
{
	struct timeval tv = clock_tv(ms);

	evtimer_add(n->timer, &tv);
}

static int
addr_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct sockaddr_storage));
}

static int
addrs_equal(const struct resolver_addrs *a, const struct resolver_addrs *b)
{
	if (a == NULL || b == NULL || a->n != b->n)
		return 0;
	return memcmp(a->addr, b->addr, a->n * sizeof(a->addr[0])) == 0;
}

/* format_addrs writes "ip,ip,..." (addresses without ports) into buf. */
static const char *
format_addrs(const struct resolver_addrs *a, char *buf, size_t len)
{
	char ip[NET_ADDRSTRLEN];
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; a != NULL && i < a->n && off < len; i++) {
		net_addr_format((const struct sockaddr *)&a->addr[i], ip, sizeof(ip));
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", ip);
	}
	return buf;
}

/*
 * addrs_from_result copies the A and AAAA answers into a new sorted,
 * de-duplicated snapshot with the port set, and the lowest TTL into *ttl.
 */
static struct resolver_addrs *
addrs_from_result(const struct ares_addrinfo *ai, uint16_t port, int *ttl)
{
	const struct ares_addrinfo_node *nd;
	struct resolver_addrs *a;
	size_t count = 0, n = 0;

	*ttl = -1;
	for (nd = ai->nodes; nd != NULL; nd = nd->ai_next)
		count++;
	a = calloc(1, sizeof(*a) + (count ? count : 1) * sizeof(a->addr[0]));
	if (a == NULL)
		return NULL;
	for (nd = ai->nodes; nd != NULL; nd = nd->ai_next) {
		struct sockaddr_storage *ss = &a->addr[n];
		if (nd->ai_family == AF_INET && nd->ai_addrlen >= sizeof(struct sockaddr_in)) {
			struct sockaddr_in *sin = (struct sockaddr_in *)ss;
			memcpy(sin, nd->ai_addr, sizeof(*sin));
			sin->sin_port = htons(port);
		} else if (nd->ai_family == AF_INET6 &&
			   nd->ai_addrlen >= sizeof(struct sockaddr_in6)) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
			memcpy(sin6, nd->ai_addr, sizeof(*sin6));
			sin6->sin6_port = htons(port);
		} else {
			continue;
		}
		if (*ttl < 0 || nd->ai_ttl < *ttl)
			*ttl = nd->ai_ttl;
		n++;
	}
	qsort(a->addr, n, sizeof(a->addr[0]), addr_cmp);
	a->n = 0;
	for (size_t i = 0; i < n; i++)
		if (a->n == 0 || addr_cmp(&a->addr[a->n - 1], &a->addr[i]) != 0)
			a->addr[a->n++] = a->addr[i];
	a->refs = 1;
	return a;
}

static void
on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *result)
{
	struct resolver_name *n = arg;
	struct resolver_addrs *fresh = NULL;
	char list[1024];
	int ttl = 0;
	int64_t next;

	(void)timeouts;
	n->in_flight = 0;
	if (n->res != NULL) {
		n->res->in_flight--;
		start_pending(n->res);
	}
	if (n->res == NULL) {
		/* Unwatched while the lookup was in flight. */
		if (result)
			ares_freeaddrinfo(result);
		name_free(n);
		return;
	}
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
		if (result)
			ares_freeaddrinfo(result);
		return;
	}
	if (status == ARES_SUCCESS && result != NULL)
		fresh = addrs_from_result(result, n->port, &ttl);
	if (result)
		ares_freeaddrinfo(result);
	if (fresh == NULL || fresh->n == 0) {
		const char *why = status != ARES_SUCCESS ? ares_strerror(status)
				  : fresh == NULL	 ? "out of memory"
							 : "no A or AAAA records";
		int64_t retry = (int64_t)RETRY_FIRST_MS << (n->failures < 16 ? n->failures : 16);
		if (retry > n->res->refresh_ms)
			retry = n->res->refresh_ms;
		n->failures++;
		n->error = why;
		/* NXDOMAIN, or an answer without addresses; a timeout or SERVFAIL says nothing. */
		int gone = status == ARES_ENOTFOUND || status == ARES_ENODATA ||
			   (status == ARES_SUCCESS && fresh != NULL);
		if (n->gone != gone) {
			n->gone = gone;
			n->res->generation++;
		}
		__atomic_fetch_add(status == ARES_ETIMEOUT ? &n->res->stats.lookups_timeout
							   : &n->res->stats.lookups_failed,
				   1, __ATOMIC_RELAXED);
		resolver_addrs_release(fresh);
		log_kv(
		    n->refs > 0 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, "resolve failed",
		    LOG_STR("upstream", n->host), LOG_NUM("port", n->port), LOG_STR("error", why),
		    LOG_STR("keeping", n->addrs ? format_addrs(n->addrs, list, sizeof(list)) : "-"),
		    LOG_NUM("retry_ms", retry));
		schedule(n, retry);
		wake_waiters(n);
		return;
	}
	next = ttl < 0 ? n->res->refresh_ms : (int64_t)ttl * 1000;
	if (next < n->res->min_ttl_ms)
		next = n->res->min_ttl_ms;
	if (next > n->res->refresh_ms)
		next = n->res->refresh_ms;
	if (next < 1000)
		next = 1000;
	log_kv(addrs_equal(n->addrs, fresh) && n->failures == 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO,
	       "resolved", LOG_STR("upstream", n->host), LOG_NUM("port", n->port),
	       LOG_STR("addrs", format_addrs(fresh, list, sizeof(list))), LOG_NUM("ttl", ttl),
	       LOG_NUM("next_ms", next));
	__atomic_fetch_add(&n->res->stats.lookups_ok, 1, __ATOMIC_RELAXED);
	if (!addrs_equal(n->addrs, fresh))
		n->res->generation++;
	resolver_addrs_release(n->addrs);
	n->addrs = fresh;
	n->failures = 0;
	if (n->gone) {
		n->gone = 0;
		n->res->generation++;
	}
	n->error = NULL;
	schedule(n, next);
	wake_waiters(n);
}

/* start_pending starts waiting lookups while slots are free. */
static void
start_pending(struct resolver *res)
{
	struct resolver_name *n;

	while (!res->closing && res->in_flight < MAX_IN_FLIGHT &&
	       (n = TAILQ_FIRST(&res->pending)) != NULL) {
		TAILQ_REMOVE(&res->pending, n, pending_entry);
		n->pending = 0;
		lookup_start(n);
	}
}

static void
lookup_start(struct resolver_name *n)
{
	struct ares_addrinfo_hints hints;

	if (n->in_flight)
		return;
	if (n->res->in_flight >= MAX_IN_FLIGHT) {
		/* Started as soon as a lookup in flight ends, in the order asked. */
		if (!n->pending) {
			TAILQ_INSERT_TAIL(&n->res->pending, n, pending_entry);
			n->pending = 1;
		}
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* Sorting would probe each address with a UDP connect: not needed. */
	hints.ai_flags = ARES_AI_NOSORT;
	n->in_flight = 1;
	n->res->in_flight++;
	clock_now_tv(&n->last_lookup);
	ares_getaddrinfo(n->res->chan[n->how].ch, n->host, NULL, &hints, on_answer, n);
	arm_timeout(n->res);
}

static void
on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
	struct resolver_name *n = arg;

	(void)fd;
	(void)what;
	if (n->refs == 0) {
		/* Unused for a whole refresh period: forget it. */
		names_remove(n->res, n);
		name_free(n);
		return;
	}
	lookup_start(n);
}

struct resolver_name *
resolver_watch(struct resolver *res, const char *host, uint16_t port)
{
	return resolver_watch_as(res, host, port, RESOLVER_CONFIGURED);
}

struct resolver_name *
resolver_watch_as(struct resolver *res, const char *host, uint16_t port, enum resolver_lookup how)
{
	struct resolver_name *n;
	struct sockaddr_storage ss;
	socklen_t len;

	if ((n = names_find(res, host, port, how)) != NULL) {
		n->refs++;
		return n;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	TAILQ_INIT(&n->waiters);
	n->res = res;
	n->port = port;
	n->how = how;
	n->refs = 1;
	if ((n->host = strdup(host)) == NULL)
		goto fail;
	if ((n->timer = evtimer_new(res->base, on_refresh_timer, n)) == NULL)
		goto fail;
	if (net_parse_ip(host, port, &ss, &len) == 0) {
		n->literal = 1;
		if ((n->addrs = calloc(1, sizeof(*n->addrs) + sizeof(n->addrs->addr[0]))) == NULL)
			goto fail;
		n->addrs->refs = 1;
		n->addrs->n = 1;
		n->addrs->addr[0] = ss;
	}
	names_add(res, n);
	if (!n->literal)
		lookup_start(n);
	return n;
fail:
	name_free(n);
	return NULL;
}

struct resolver_name *
resolver_ref(struct resolver_name *n)
{
	if (n != NULL)
		n->refs++;
	return n;
}

void
resolver_unwatch(struct resolver_name *n)
{
	if (n == NULL || --n->refs > 0)
		return;
	/*
	 * Keep a name until its refresh or retry is due (on_refresh_timer
	 * frees it then, unless it was watched again): a resolved one as a
	 * cache, a failed one as a negative cache. Literals go now.
	 */
	if (!n->literal && (n->addrs != NULL || n->failures > 0) && evtimer_pending(n->timer, NULL))
		return;
	names_remove(n->res, n);
	if (n->in_flight) {
		/* c-ares cannot cancel one query: free it when its answer comes. Its slot is free
		 * now. */
		struct resolver *res = n->res;
		evtimer_del(n->timer);
		n->res = NULL;
		res->in_flight--;
		start_pending(res);
		return;
	}
	name_free(n);
}

void
resolver_refresh(struct resolver_name *n)
{
	struct timeval now;
	int64_t since, floor_ms;

	if (n->literal || n->in_flight)
		return;
	clock_now_tv(&now);
	since = clock_ms_between(&n->last_lookup, &now);
	floor_ms = n->res->min_ttl_ms > 1000 ? n->res->min_ttl_ms : 1000;
	if (since < floor_ms)
		return;
	log_kv(LOG_LEVEL_DEBUG, "re-resolving after connect failure", LOG_STR("upstream", n->host));
	evtimer_del(n->timer);
	lookup_start(n);
}
