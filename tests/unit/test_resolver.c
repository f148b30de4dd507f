/*
 * test_resolver.c: unit tests for resolver.c against a fake DNS server.
 *
 * The server runs in the same event loop as the resolver, on a UDP socket
 * bound to 127.0.0.1:0 (libevent's evdns server API), and the resolver is
 * configured with that one nameserver, so no query leaves the loopback. The
 * server answers from a small table the test edits while the loop runs: A
 * and AAAA records with chosen TTLs, NXDOMAIN, SERVFAIL, or silence. Tests
 * run the loop in short slices until a condition holds; the only clock
 * checks are generous upper bounds that stop a test that would hang.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "net.h"
#include "resolver.h"

/* ---- the fake DNS server ---- */

enum behave {
	ANSWER,	  /* the records below (none: NOERROR with no answer) */
	NXDOMAIN, /* rcode 3 */
	SERVFAIL, /* rcode 2 */
	SILENT,	  /* no response at all */
};

struct zone {
	const char *name;
	enum behave behave;
	const char *v4[6];
	const char *v6[6];
	int ttl4, ttl6;
	unsigned queries; /* every question for this name, A or AAAA */
	unsigned a_queries;
};

struct fake_dns {
	struct event_base *base;
	evutil_socket_t fd;
	struct evdns_server_port *port;
	uint16_t portnum;
	struct zone zones[4];
	size_t n_zones;
	unsigned queries; /* every question, known name or not */
};

static void
fake_answer(struct evdns_server_request *req, void *arg)
{
	struct fake_dns *d = arg;
	int rcode = DNS_ERR_NONE;

	for (int i = 0; i < req->nquestions; i++) {
		const struct evdns_server_question *q = req->questions[i];
		struct zone *z = NULL;

		d->queries++;
		for (size_t j = 0; j < d->n_zones; j++)
			if (strcasecmp(d->zones[j].name, q->name) == 0)
				z = &d->zones[j];
		if (z == NULL) {
			rcode = DNS_ERR_NOTEXIST;
			continue;
		}
		z->queries++;
		if (q->type == EVDNS_TYPE_A)
			z->a_queries++;
		switch (z->behave) {
		case SILENT:
			evdns_server_request_drop(req);
			return;
		case NXDOMAIN:
			rcode = DNS_ERR_NOTEXIST;
			continue;
		case SERVFAIL:
			rcode = DNS_ERR_SERVERFAILED;
			continue;
		case ANSWER:
			break;
		}
		for (size_t k = 0; k < 6; k++) {
			unsigned char buf[16];
			if (q->type == EVDNS_TYPE_A && z->v4[k] != NULL) {
				assert_int_equal(inet_pton(AF_INET, z->v4[k], buf), 1);
				evdns_server_request_add_a_reply(req, q->name, 1, buf, z->ttl4);
			}
			if (q->type == EVDNS_TYPE_AAAA && z->v6[k] != NULL) {
				assert_int_equal(inet_pton(AF_INET6, z->v6[k], buf), 1);
				evdns_server_request_add_aaaa_reply(req, q->name, 1, buf, z->ttl6);
			}
		}
	}
	evdns_server_request_respond(req, rcode);
}

static void
fake_start(struct fake_dns *d, struct event_base *base)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(d, 0, sizeof(*d));
	d->base = base;
	d->fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(d->fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(d->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(d->fd, (struct sockaddr *)&sin, &len), 0);
	d->portnum = ntohs(sin.sin_port);
	assert_int_equal(evutil_make_socket_nonblocking(d->fd), 0);
	d->port = evdns_add_server_port_with_base(base, d->fd, 0, fake_answer, d);
	assert_non_null(d->port);
}

static void
fake_stop(struct fake_dns *d)
{
	evdns_close_server_port(d->port);
	evutil_closesocket(d->fd);
}

static struct zone *
fake_zone(struct fake_dns *d, const char *name)
{
	struct zone *z;

	for (size_t i = 0; i < d->n_zones; i++)
		if (strcmp(d->zones[i].name, name) == 0)
			return &d->zones[i];
	assert_true(d->n_zones < sizeof(d->zones) / sizeof(d->zones[0]));
	z = &d->zones[d->n_zones++];
	memset(z, 0, sizeof(*z));
	z->name = name;
	z->ttl4 = z->ttl6 = 300;
	return z;
}

/* ---- fixture: a loop, the server, a resolver that asks only the server ---- */

struct fx {
	struct event_base *base;
	struct fake_dns dns;
	struct config_resolver rcfg;
	char ns[64];
	char *nsv[1];
	struct resolver *res;
};

/* The fixture in use: fx_free clears it, the teardown frees it after a failure. */
static struct fx *cur_fx;

static struct fx *
fx_new(int64_t refresh, int64_t min_ttl, int64_t timeout)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	fx->base = event_base_new();
	assert_non_null(fx->base);
	fake_start(&fx->dns, fx->base);
	snprintf(fx->ns, sizeof(fx->ns), "127.0.0.1:%u", fx->dns.portnum);
	fx->nsv[0] = fx->ns;
	fx->rcfg.nameservers.v = fx->nsv;
	fx->rcfg.nameservers.n = 1;
	fx->rcfg.refresh = refresh;
	fx->rcfg.min_ttl = min_ttl;
	fx->rcfg.timeout = timeout;
	fx->res = resolver_new(fx->base, &fx->rcfg);
	assert_non_null(fx->res);
	cur_fx = fx;
	return fx;
}

static void
fx_free(struct fx *fx)
{
	resolver_free(fx->res);
	fake_stop(&fx->dns);
	event_base_free(fx->base);
	free(fx);
	cur_fx = NULL;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* run_ms runs the loop for about ms milliseconds. */
static void
run_ms(struct fx *fx, long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(fx->base, &tv);
	event_base_dispatch(fx->base);
}

/*
 * run_until runs the loop in 20 ms slices until cond holds; returns 1, or 0
 * after limit_s seconds (a guard against hanging, not a timing check).
 */
#define run_until(fx, limit_s, cond)                                                               \
	({                                                                                         \
		double deadline_ = now_s() + (limit_s);                                            \
		int ok_ = 0;                                                                       \
		while (!(ok_ = (cond)) && now_s() < deadline_)                                     \
			run_ms((fx), 20);                                                          \
		ok_;                                                                               \
	})

#define LIMIT 15.0

static int
resolved(struct resolver_name *n)
{
	size_t start;
	struct resolver_addrs *a = resolver_addrs(n, &start);

	if (a == NULL)
		return 0;
	resolver_addrs_release(a);
	return 1;
}

/* first_is: the snapshot's first address is ip. */
static int
first_is(struct resolver_name *n, const char *ip)
{
	size_t start;
	struct resolver_addrs *a = resolver_addrs(n, &start);
	char buf[NET_ADDRSTRLEN];
	int r;

	if (a == NULL)
		return 0;
	net_addr_format((struct sockaddr *)&a->addr[0], buf, sizeof(buf));
	r = strcmp(buf, ip) == 0;
	resolver_addrs_release(a);
	return r;
}

/* addrs_text writes the snapshot as "ip:port ip:port ..." */
static const char *
addrs_text(const struct resolver_addrs *a, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < a->n; i++) {
		char one[NET_ADDRSTRLEN];
		net_format((const struct sockaddr *)&a->addr[i], one, sizeof(one));
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? " " : "", one);
	}
	return buf;
}

static int
teardown_fx(void **state)
{
	(void)state;
	if (cur_fx != NULL && cur_fx->res != NULL)
		fx_free(cur_fx);
	return 0;
}

static int
setup_quiet(void **state)
{
	(void)state;
	/* Failed lookups are expected here; keep their warnings out of the report. */
	log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_LOGFMT);
	return 0;
}

/* ---- tests ---- */

static void
test_resolves_sorted_dedup_with_port(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "svc.gk.test");
	struct resolver_name *n;
	struct resolver_addrs *a;
	size_t start = 99;
	char buf[512];
	const char *error = "unset";

	(void)state;
	z->v4[0] = "10.0.0.3";
	z->v4[1] = "10.0.0.1";
	z->v4[2] = "10.0.0.3";
	z->v4[3] = "10.0.0.2";
	z->v6[0] = "2001:db8::2";
	z->v6[1] = "2001:db8::1";
	z->v6[2] = "2001:db8::2";

	n = resolver_watch(fx->res, "svc.gk.test", 8080);
	assert_non_null(n);
	assert_string_equal(resolver_name_host(n), "svc.gk.test");
	assert_null(resolver_addrs(n, &start)); /* nothing yet */
	assert_int_equal(resolver_name_status(n, &error), 0);
	assert_null(error); /* the first lookup is on its way */
	assert_true(run_until(fx, LIMIT, resolved(n)));
	assert_int_equal(resolver_name_status(n, &error), 1);
	assert_null(error);
	assert_true(z->queries >= 1);

	a = resolver_addrs(n, &start);
	assert_non_null(a);
	assert_int_equal(a->n, 5);
	assert_true(start < a->n);
	assert_string_equal(
	    addrs_text(a, buf, sizeof(buf)),
	    "10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080 [2001:db8::1]:8080 [2001:db8::2]:8080");
	resolver_addrs_release(a);

	resolver_unwatch(n);
	fx_free(fx);
}

static void
test_round_robin_start(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "rr.gk.test");
	struct resolver_name *n;
	size_t seen[3] = {0, 0, 0}, prev = 0;

	(void)state;
	z->v4[0] = "10.0.1.1";
	z->v4[1] = "10.0.1.2";
	z->v4[2] = "10.0.1.3";
	n = resolver_watch(fx->res, "rr.gk.test", 443);
	assert_true(run_until(fx, LIMIT, resolved(n)));
	for (int i = 0; i < 9; i++) {
		size_t start = 99;
		struct resolver_addrs *a = resolver_addrs(n, &start);
		assert_non_null(a);
		assert_int_equal(a->n, 3);
		assert_true(start < 3);
		if (i > 0)
			assert_int_equal(start, (prev + 1) % 3); /* advances by one each time */
		prev = start;
		seen[start]++;
		resolver_addrs_release(a);
	}
	assert_int_equal(seen[0], 3);
	assert_int_equal(seen[1], 3);
	assert_int_equal(seen[2], 3);
	resolver_unwatch(n);
	fx_free(fx);
}

static void
test_ip_literals_need_no_query(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct resolver_name *n4, *n6;
	struct resolver_addrs *a;
	size_t start;
	char buf[128];

	(void)state;
	n4 = resolver_watch(fx->res, "127.0.0.1", 9);
	n6 = resolver_watch(fx->res, "::1", 10);
	assert_non_null(n4);
	assert_non_null(n6);
	/* Resolved at once, before the loop ever runs. */
	assert_int_equal(resolver_all_resolved(fx->res), 1);
	a = resolver_addrs(n4, &start);
	assert_non_null(a);
	assert_int_equal(start, 0);
	assert_string_equal(addrs_text(a, buf, sizeof(buf)), "127.0.0.1:9");
	resolver_addrs_release(a);
	a = resolver_addrs(n6, &start);
	assert_non_null(a);
	assert_string_equal(addrs_text(a, buf, sizeof(buf)), "[::1]:10");
	resolver_addrs_release(a);

	/* Neither the loop nor a refresh request sends anything. */
	resolver_refresh(n4);
	resolver_refresh(n6);
	run_ms(fx, 300);
	assert_int_equal(fx->dns.queries, 0);
	assert_int_equal(resolver_all_resolved(fx->res), 1);

	resolver_unwatch(n4);
	resolver_unwatch(n6);
	fx_free(fx);
}

static void
test_answer_change_picked_up(void **state)
{
	struct fx *fx = fx_new(1000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "move.gk.test");
	struct resolver_name *n;

	(void)state;
	z->v4[0] = "10.0.2.1";
	z->ttl4 = z->ttl6 = 1;
	n = resolver_watch(fx->res, "move.gk.test", 80);
	assert_true(run_until(fx, LIMIT, resolved(n)));
	assert_true(first_is(n, "10.0.2.1"));

	/* The container restarted with a new address. */
	z->v4[0] = "10.0.2.9";
	assert_true(run_until(fx, LIMIT, first_is(n, "10.0.2.9")));
	resolver_unwatch(n);
	fx_free(fx);
}

static void
test_lowest_ttl_drives_refresh(void **state)
{
	/* refresh is long; the AAAA TTL of 1 s is what brings the next lookup. */
	struct fx *fx = fx_new(60000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "ttl.gk.test");
	struct resolver_name *n;

	(void)state;
	z->v4[0] = "10.0.3.1";
	z->v6[0] = "2001:db8::31";
	z->ttl4 = 600;
	z->ttl6 = 1;
	n = resolver_watch(fx->res, "ttl.gk.test", 80);
	assert_true(run_until(fx, LIMIT, resolved(n)));
	assert_true(first_is(n, "10.0.3.1"));
	z->v4[0] = "10.0.3.2";
	assert_true(run_until(fx, LIMIT, first_is(n, "10.0.3.2")));
	resolver_unwatch(n);
	fx_free(fx);
}

/* failure_keeps_last_good: after a good answer, the server turns to how. */
static void
failure_keeps_last_good(enum behave how)
{
	struct fx *fx = fx_new(1000, 1000, 200);
	struct zone *z = fake_zone(&fx->dns, "flaky.gk.test");
	struct resolver_name *n;
	struct resolver_addrs *a;
	unsigned before;
	size_t start;
	char buf[256];

	z->v4[0] = "10.0.4.1";
	z->v4[1] = "10.0.4.2";
	z->ttl4 = z->ttl6 = 1;
	n = resolver_watch(fx->res, "flaky.gk.test", 80);
	assert_true(run_until(fx, LIMIT, resolved(n)));

	z->behave = how;
	before = z->a_queries;
	/*
	 * A lookup sends one A query per attempt, and at most two attempts;
	 * three more A queries mean a later lookup started, so at least one
	 * failed lookup has been handled.
	 */
	assert_true(run_until(fx, LIMIT, z->a_queries >= before + 3));
	a = resolver_addrs(n, &start);
	assert_non_null(a);
	assert_string_equal(addrs_text(a, buf, sizeof(buf)), "10.0.4.1:80 10.0.4.2:80");
	resolver_addrs_release(a);
	assert_int_equal(resolver_all_resolved(fx->res), 1);

	/* And when the server recovers, the new answer replaces the old one. */
	z->behave = ANSWER;
	z->v4[0] = "10.0.4.7";
	z->v4[1] = NULL;
	assert_true(run_until(fx, LIMIT, first_is(n, "10.0.4.7")));
	a = resolver_addrs(n, &start);
	assert_int_equal(a->n, 1);
	resolver_addrs_release(a);

	resolver_unwatch(n);
	fx_free(fx);
}

static void
test_servfail_keeps_last_good(void **state)
{
	(void)state;
	failure_keeps_last_good(SERVFAIL);
}

static void
test_nxdomain_keeps_last_good(void **state)
{
	(void)state;
	failure_keeps_last_good(NXDOMAIN);
}

static void
test_timeout_keeps_last_good(void **state)
{
	(void)state;
	failure_keeps_last_good(SILENT);
}

static void
test_nxdomain_never_resolved(void **state)
{
	struct fx *fx = fx_new(1000, 1000, 1000);
	struct zone *ok = fake_zone(&fx->dns, "ok.gk.test");
	struct zone *nx = fake_zone(&fx->dns, "nx.gk.test");
	struct resolver_name *good, *bad;
	size_t start = 77;
	const char *error = NULL;

	(void)state;
	ok->v4[0] = "10.0.5.1";
	nx->behave = NXDOMAIN;
	good = resolver_watch(fx->res, "ok.gk.test", 80);
	bad = resolver_watch(fx->res, "nx.gk.test", 80);
	assert_non_null(bad);
	assert_true(run_until(fx, LIMIT, resolved(good)));
	/* Two lookups of the bad name: the first one's answer has been handled. */
	assert_true(run_until(fx, LIMIT, nx->a_queries >= 2));
	assert_null(resolver_addrs(bad, &start));
	assert_int_equal(start, 77);
	assert_int_equal(resolver_name_status(bad, &error), 0);
	assert_non_null(error);
	assert_string_equal(error, ares_strerror(ARES_ENOTFOUND));
	assert_int_equal(resolver_name_status(good, &error), 1);

	/* Once the name exists, it resolves by itself (start-up must not need it). */
	nx->behave = ANSWER;
	nx->v4[0] = "10.0.5.2";
	assert_true(run_until(fx, LIMIT, resolved(bad)));
	assert_int_equal(resolver_all_resolved(fx->res), 1);
	resolver_unwatch(good);
	resolver_unwatch(bad);
	fx_free(fx);
}

static void
test_no_records_is_not_resolved(void **state)
{
	struct fx *fx = fx_new(1000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "empty.gk.test");
	struct resolver_name *n;
	size_t start;

	(void)state;
	z->behave = ANSWER; /* NOERROR, but neither A nor AAAA */
	n = resolver_watch(fx->res, "empty.gk.test", 80);
	assert_true(run_until(fx, LIMIT, z->a_queries >= 2));
	assert_null(resolver_addrs(n, &start));
	assert_int_equal(resolver_all_resolved(fx->res), 0);
	resolver_unwatch(n);
	fx_free(fx);
}

static void
test_watch_twice_same_handle(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "twice.gk.test");
	struct resolver_name *a, *b, *c;
	size_t start;
	struct resolver_addrs *s;

	(void)state;
	z->v4[0] = "10.0.6.1";
	a = resolver_watch(fx->res, "twice.gk.test", 80);
	b = resolver_watch(fx->res, "twice.gk.test", 80);
	c = resolver_watch(fx->res, "twice.gk.test", 81);
	assert_non_null(a);
	assert_ptr_equal(a, b);
	assert_ptr_not_equal(a, c);
	assert_true(run_until(fx, LIMIT, resolved(a) && resolved(c)));

	/* One unwatch leaves the other holder's handle working. */
	resolver_unwatch(a);
	s = resolver_addrs(b, &start);
	assert_non_null(s);
	assert_int_equal(ntohs(((struct sockaddr_in *)&s->addr[0])->sin_port), 80);
	resolver_addrs_release(s);
	s = resolver_addrs(c, &start);
	assert_non_null(s);
	assert_int_equal(ntohs(((struct sockaddr_in *)&s->addr[0])->sin_port), 81);
	resolver_addrs_release(s);
	resolver_unwatch(b);
	/* The last unwatch removed it: only c is left, and it is resolved. */
	assert_int_equal(resolver_all_resolved(fx->res), 1);

	/* Watching it again starts over with a fresh handle that resolves. */
	a = resolver_watch(fx->res, "twice.gk.test", 80);
	assert_non_null(a);
	assert_true(run_until(fx, LIMIT, resolved(a)));
	resolver_unwatch(a);
	resolver_unwatch(c);
	fx_free(fx);
}

static void
test_unwatch_in_flight_then_answer(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 200);
	struct zone *z = fake_zone(&fx->dns, "slow.gk.test");
	struct resolver_name *n;
	unsigned before;

	(void)state;
	z->behave = SILENT;
	n = resolver_watch(fx->res, "slow.gk.test", 80);
	assert_true(run_until(fx, LIMIT, z->queries >= 1)); /* the query is out */
	resolver_unwatch(n);
	assert_int_equal(resolver_all_resolved(fx->res), 1); /* nothing watched */

	/* Let the lookup end (it times out) with its name gone; then answer late ones. */
	before = z->a_queries;
	z->behave = ANSWER;
	z->v4[0] = "10.0.7.1";
	run_ms(fx, 1500);
	/* No lookup was started again for a name nobody watches. */
	assert_true(z->a_queries <= before + 2);
	fx_free(fx);
}

static void
test_unwatch_in_flight_then_free(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "gone.gk.test");
	struct resolver_name *n, *m;

	(void)state;
	z->behave = SILENT;
	n = resolver_watch(fx->res, "gone.gk.test", 80);
	m = resolver_watch(fx->res, "gone.gk.test", 81);
	assert_true(run_until(fx, LIMIT, z->queries >= 2));
	resolver_unwatch(n);
	/* m is still watched and in flight when the resolver goes away. */
	(void)m;
	fx_free(fx);
}

static void
test_unwatch_in_flight_answer_arrives(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "late.gk.test");
	struct resolver_name *n, *other;

	(void)state;
	z->v4[0] = "10.0.8.1";
	/* Watch and unwatch before the loop runs: the answer comes for a freed handle. */
	n = resolver_watch(fx->res, "late.gk.test", 80);
	assert_non_null(n);
	resolver_unwatch(n);
	other = resolver_watch(fx->res, "late.gk.test", 81);
	assert_true(run_until(fx, LIMIT, resolved(other)));
	run_ms(fx, 100);
	resolver_unwatch(other);
	fx_free(fx);
}

static void
test_snapshot_survives_refresh(void **state)
{
	struct fx *fx = fx_new(1000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "snap.gk.test");
	struct resolver_name *n;
	struct resolver_addrs *held, *now;
	size_t start;
	char buf[256];

	(void)state;
	z->v4[0] = "10.0.9.1";
	z->v4[1] = "10.0.9.2";
	z->ttl4 = z->ttl6 = 1;
	n = resolver_watch(fx->res, "snap.gk.test", 80);
	assert_true(run_until(fx, LIMIT, resolved(n)));
	held = resolver_addrs(n, &start);
	assert_non_null(held);

	z->v4[0] = "10.0.9.5";
	z->v4[1] = NULL;
	assert_true(run_until(fx, LIMIT, first_is(n, "10.0.9.5")));
	now = resolver_addrs(n, &start);
	assert_ptr_not_equal(now, held);
	assert_int_equal(now->n, 1);
	resolver_addrs_release(now);

	/* The old snapshot is untouched and still readable. */
	assert_int_equal(held->n, 2);
	assert_string_equal(addrs_text(held, buf, sizeof(buf)), "10.0.9.1:80 10.0.9.2:80");

	/* Even after the name is gone. */
	resolver_unwatch(n);
	assert_string_equal(addrs_text(held, buf, sizeof(buf)), "10.0.9.1:80 10.0.9.2:80");
	resolver_addrs_release(held);
	fx_free(fx);
}

static void
test_refresh_request(void **state)
{
	/* refresh 30 s and TTL 600 s: only resolver_refresh can bring the change in time. */
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "kick.gk.test");
	struct resolver_name *n;

	(void)state;
	z->v4[0] = "10.0.10.1";
	z->ttl4 = z->ttl6 = 600;
	n = resolver_watch(fx->res, "kick.gk.test", 80);
	assert_true(run_until(fx, LIMIT, resolved(n)));
	z->v4[0] = "10.0.10.2";
	/* The rate limit is one lookup per second: wait that out first. */
	run_ms(fx, 1500);
	assert_true(first_is(n, "10.0.10.1"));
	resolver_refresh(n);
	assert_true(run_until(fx, 10.0, first_is(n, "10.0.10.2")));
	resolver_unwatch(n);
	fx_free(fx);
}

static void
test_unwatched_name_lingers_one_refresh(void **state)
{
	struct fx *fx = fx_new(1000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "linger.gk.test");
	struct resolver_name *n;
	unsigned before;

	(void)state;
	z->v4[0] = "10.0.11.1";
	z->ttl4 = z->ttl6 = 1;
	n = resolver_watch(fx->res, "linger.gk.test", 80);
	assert_true(run_until(fx, LIMIT, resolved(n)));
	resolver_unwatch(n);
	/* Asked for again before its refresh: the answer is still there. */
	n = resolver_watch(fx->res, "linger.gk.test", 80);
	assert_true(resolved(n));
	resolver_unwatch(n);
	assert_int_equal(resolver_all_resolved(fx->res), 1); /* nobody watches it */

	/* Unused for a whole refresh period, it is forgotten, not looked up again. */
	before = z->queries;
	run_ms(fx, 2500);
	assert_int_equal(z->queries, before);
	n = resolver_watch(fx->res, "linger.gk.test", 80);
	assert_false(resolved(n)); /* a fresh name: it must be looked up */
	assert_true(run_until(fx, LIMIT, resolved(n)));
	resolver_unwatch(n);
	fx_free(fx);
}

struct wait_rec {
	struct resolver_name *name;
	int calls;
	int had_addrs;
	int unwatch; /* unwatch the name from inside the callback */
};

static void
on_wait(void *arg)
{
	struct wait_rec *r = arg;

	r->calls++;
	r->had_addrs = resolved(r->name);
	if (r->unwatch)
		resolver_unwatch(r->name);
}

static void
test_wait_for_first_answer(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 200);
	struct zone *z = fake_zone(&fx->dns, "wait.gk.test");
	struct resolver_waiter w, w2;
	struct wait_rec r = {0}, r2 = {0};

	(void)state;
	z->v4[0] = "10.0.12.1";
	z->behave = SILENT; /* the first attempt gets no answer */
	r.name = r2.name = resolver_watch(fx->res, "wait.gk.test", 80);
	assert_int_equal(resolver_wait(r.name, &w, on_wait, &r), 0);
	assert_int_equal(resolver_wait(r.name, &w2, on_wait, &r2), 0);
	assert_int_equal(r.calls, 0); /* never from inside resolver_wait */
	assert_true(run_until(fx, LIMIT, z->queries >= 1));
	resolver_wait_cancel(&w2); /* this one gives up */
	z->behave = ANSWER;
	assert_true(run_until(fx, LIMIT, r.calls > 0));
	run_ms(fx, 100);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.had_addrs, 1); /* the answer is in place when the callback runs */
	assert_int_equal(r2.calls, 0);
	assert_null(w.name);

	/* Once resolved, there is nothing to wait for. */
	memset(&r2, 0, sizeof(r2));
	r2.name = r.name;
	assert_int_equal(resolver_wait(r.name, &w2, on_wait, &r2), 1);
	run_ms(fx, 100);
	assert_int_equal(r2.calls, 0);
	resolver_unwatch(r.name);
	fx_free(fx);
}

static void
test_wait_ends_on_failure(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "nowait.gk.test");
	struct resolver_waiter w;
	struct wait_rec r = {0};

	(void)state;
	z->behave = NXDOMAIN;
	r.name = resolver_watch(fx->res, "nowait.gk.test", 80);
	assert_int_equal(resolver_wait(r.name, &w, on_wait, &r), 0);
	assert_true(run_until(fx, LIMIT, r.calls > 0));
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.had_addrs, 0);
	resolver_unwatch(r.name);
	fx_free(fx);
}

static void
test_literal_needs_no_wait(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct resolver_waiter w;
	struct wait_rec r = {0};

	(void)state;
	r.name = resolver_watch(fx->res, "10.9.8.7", 80);
	assert_int_equal(resolver_wait(r.name, &w, on_wait, &r), 1);
	resolver_unwatch(r.name);
	fx_free(fx);
}

static void
test_waiter_unwatches_after_failure(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);
	struct zone *z = fake_zone(&fx->dns, "giveup.gk.test");
	struct resolver_waiter w;
	struct wait_rec r = {0};

	(void)state;
	/*
	 * A connection waits for a name that does not exist, and when told
	 * the lookup failed, closes and drops its watch (the last one) from
	 * inside the callback. The resolver must not touch the name after.
	 */
	z->behave = NXDOMAIN;
	r.unwatch = 1;
	r.name = resolver_watch(fx->res, "giveup.gk.test", 80);
	assert_int_equal(resolver_wait(r.name, &w, on_wait, &r), 0);
	assert_true(run_until(fx, LIMIT, r.calls > 0));
	run_ms(fx, 100);
	assert_int_equal(r.calls, 1);
	assert_int_equal(resolver_all_resolved(fx->res), 1);
	fx_free(fx);
}

static void
test_empty_resolver(void **state)
{
	struct fx *fx = fx_new(30000, 1000, 1000);

	(void)state;
	assert_int_equal(resolver_all_resolved(fx->res), 1);
	run_ms(fx, 50);
	assert_int_equal(fx->dns.queries, 0);
	fx_free(fx);
	resolver_free(NULL);
	resolver_unwatch(NULL);
	resolver_addrs_release(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_resolves_sorted_dedup_with_port, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_round_robin_start, setup_quiet, teardown_fx),
	    cmocka_unit_test_setup_teardown(test_ip_literals_need_no_query, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_answer_change_picked_up, setup_quiet, teardown_fx),
	    cmocka_unit_test_setup_teardown(test_lowest_ttl_drives_refresh, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_servfail_keeps_last_good, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_nxdomain_keeps_last_good, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_timeout_keeps_last_good, setup_quiet, teardown_fx),
	    cmocka_unit_test_setup_teardown(test_nxdomain_never_resolved, setup_quiet, teardown_fx),
	    cmocka_unit_test_setup_teardown(test_no_records_is_not_resolved, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_watch_twice_same_handle, setup_quiet, teardown_fx),
	    cmocka_unit_test_setup_teardown(test_unwatch_in_flight_then_answer, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_unwatch_in_flight_then_free, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_unwatch_in_flight_answer_arrives, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_snapshot_survives_refresh, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_refresh_request, setup_quiet, teardown_fx),
	    cmocka_unit_test_setup_teardown(test_empty_resolver, setup_quiet, teardown_fx),
	    cmocka_unit_test_setup_teardown(test_unwatched_name_lingers_one_refresh, setup_quiet,
					    teardown_fx),
	    cmocka_unit_test_setup_teardown(test_wait_for_first_answer, setup_quiet, teardown_fx),
	    cmocka_unit_test_setup_teardown(test_wait_ends_on_failure, setup_quiet, teardown_fx),
	    cmocka_unit_test_setup_teardown(test_literal_needs_no_wait, setup_quiet, teardown_fx),
	    /* Last: under ASan a use after free here ends the whole run. */
	    cmocka_unit_test_setup_teardown(test_waiter_unwatches_after_failure, setup_quiet,
					    teardown_fx),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
