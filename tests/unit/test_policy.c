/*
 * test_policy.c: the compiled decisions (policy.c), table-driven: every
 * precedence rule of routing and the allowlist, the port rules of mode
 * connect, every address-guard class with allow_ranges, deny_ranges and
 * the translation forms, PROXY and forwarding trust, proxy credentials,
 * sources (the listener's, the client's, per route and per entry, names
 * and the IPv4-mapped form), and large lists checked entry by entry.
 *
 * Links policy.o with route.o and net.o only: the listeners are built
 * here by hand, as the configuration would build them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "net.h"
#include "policy.h"
#include "route.h"

/* ---- building listeners ---- */

#define MAX_ITEMS 16

struct fixture {
	struct config_listener l;
	struct config_route routes[MAX_ITEMS];
	char *patterns[MAX_ITEMS][4];
	struct config_allow allow[MAX_ITEMS];
	struct config_cidr allow_ranges[MAX_ITEMS], deny_ranges[MAX_ITEMS];
	struct config_cidr proxy_trusted[MAX_ITEMS], http_trusted[MAX_ITEMS];
	char *creds[MAX_ITEMS];
	/* source sets: [0] the listener's, [1] client_sources, then per route or entry */
	struct config_cidr src_blocks[2 + 2 * MAX_ITEMS][MAX_ITEMS];
	char *src_names[2 + 2 * MAX_ITEMS][MAX_ITEMS];
	size_t n_src_sets;
	struct policy *p;
};

static struct fixture F;

/* release frees what the last listener took (the strings are the fixture's own). */
static void
release(void)
{
	policy_free(F.p);
	for (size_t i = 0; i < F.l.n_routes; i++) {
		for (size_t j = 0; j < F.routes[i].match.n; j++)
			free(F.routes[i].match.v[j]);
		free(F.routes[i].upstream.host);
	}
	for (size_t i = 0; i < F.l.n_allow; i++)
		free(F.allow[i].pattern);
	for (size_t i = 0; i < F.l.proxy_auth_b64.n; i++)
		free(F.creds[i]);
	for (size_t i = 0; i < 2 + 2 * MAX_ITEMS; i++)
		for (size_t j = 0; j < MAX_ITEMS; j++)
			free(F.src_names[i][j]);
	free(F.l.upstream.host);
	memset(&F, 0, sizeof(F));
}

static void
reset(enum config_mode mode)
{
	release();
	F.l.name = "test";
	F.l.mode = mode;
	F.l.routes = F.routes;
	F.l.allow = F.allow;
	F.l.allow_ranges = F.allow_ranges;
	F.l.deny_ranges = F.deny_ranges;
	F.l.proxy.trusted = F.proxy_trusted;
	F.l.http.trusted = F.http_trusted;
	F.l.proxy_auth_b64.v = F.creds;
}

static void
hostport(struct config_hostport *hp, const char *text)
{
	const char *colon = strrchr(text, ':');

	assert_non_null(colon);
	hp->host = strndup(text, (size_t)(colon - text));
	hp->port = (uint16_t)atoi(colon + 1);
	hp->sniffed_host = strcmp(hp->host, "$host") == 0;
}

/* upstream sets the listener's own upstream, "host:port" or "$host:port". */
static void
upstream(const char *text)
{
	hostport(&F.l.upstream, text);
}

/* route adds a route: up to four patterns, then the upstream. */
static void
route(const char *upstream_text, const char *p0, const char *p1)
{
	struct config_route *rt = &F.routes[F.l.n_routes];

	rt->match.v = F.patterns[F.l.n_routes];
	rt->match.v[rt->match.n++] = strdup(p0);
	if (p1 != NULL)
		rt->match.v[rt->match.n++] = strdup(p1);
	hostport(&rt->upstream, upstream_text);
	F.l.n_routes++;
}

static void
cidr(struct config_cidr *c, const char *text)
{
	char addr[64];
	const char *slash = strchr(text, '/');
	socklen_t len;

	snprintf(addr, sizeof(addr), "%.*s", slash ? (int)(slash - text) : (int)strlen(text), text);
	assert_int_equal(net_parse_ip(addr, 0, &c->addr, &len), 0);
	c->prefix = slash ? (unsigned)atoi(slash + 1) : c->addr.ss_family == AF_INET ? 32 : 128;
}

/* allow adds an allow entry: "name", "*.suffix", "*", "ADDR[/PREFIX]", each with ":PORT"
 * ("[v6]:PORT"). */
static void
allow(const char *text)
{
	struct config_allow *a = &F.allow[F.l.n_allow++];
	char host[300];
	const char *colon = strrchr(text, ':');

	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		snprintf(host, sizeof(host), "%.*s", (int)(end - text - 1), text + 1);
		if (end[1] == ':')
			a->port = (uint16_t)atoi(end + 2);
		cidr(&a->cidr, host);
		return;
	}
	if (colon != NULL && strchr(text, ':') == colon) {
		snprintf(host, sizeof(host), "%.*s", (int)(colon - text), text);
		a->port = (uint16_t)atoi(colon + 1);
	} else {
		snprintf(host, sizeof(host), "%s", text);
	}
	if (strchr(host, '/') != NULL || strspn(host, "0123456789.") == strlen(host) ||
	    strchr(host, ':') != NULL) {
		cidr(&a->cidr, host);
		return;
	}
	a->pattern = strdup(host);
}

static void
compile(void)
{
	char err[128];

	F.p = policy_new(&F.l, err, sizeof(err));
	assert_non_null(F.p);
}

/* ---- routing ---- */

/* What one query must decide. */
struct route_case {
	const char *name; /* NULL: the client sent none */
	uint16_t want_port;
	int allowed;	     /* policy_route returned 0 */
	int route, allow;    /* the rule that matched (-1 none) */
	const char *rule;    /* its text */
	const char *target;  /* "host:port" of the target, NULL when none */
	enum reason refusal; /* when not allowed */
	uint16_t port_refused;
};

#define LISTEN_PORT 8443

static void
check_cases(const struct route_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct route_case *c = &cases[i];
		struct policy_verdict v;
		char rule[300], target[300];
		int rc = policy_route(F.p, c->name, c->want_port, LISTEN_PORT, NULL, &v);

		policy_rule(F.p, &v, rule, sizeof(rule));
		if (v.target != NULL)
			snprintf(target, sizeof(target), "%s:%u", v.target->host, v.target->port);
		print_message("case %zu: %s:%u\n", i, c->name ? c->name : "(none)", c->want_port);
		assert_int_equal(rc == 0, c->allowed);
		assert_int_equal(v.route, c->route);
		assert_int_equal(v.allow, c->allow);
		assert_string_equal(rule, c->rule);
		if (c->target == NULL)
			assert_null(v.target);
		else
			assert_string_equal(target, c->target);
		if (!c->allowed)
			assert_int_equal(v.refusal, c->refusal);
		assert_int_equal(v.port_refused, c->port_refused);
		assert_int_equal(v.matched, c->route >= 0 || c->allow >= 0);
	}
}

#define CHECK_CASES(c) check_cases(c, sizeof(c) / sizeof(c[0]))
#define OK(name, route, allow, rule, target)                                                       \
	{                                                                                          \
		name, 0, 1, route, allow, rule, target, 0, 0                                       \
	}
#define NO(name, reason, target)                                                                   \
	{                                                                                          \
		name, 0, 0, -1, -1, "", target, reason, 0                                          \
	}

static void
test_precedence_names(void **state)
{
	/* routes 0..5; the listener's own upstream serves the rest */
	static const struct route_case cases[] = {
	    OK("x.a.test", 1, -1, "x.a.test", "exact:1"),	/* exact above a wildcard */
	    OK("y.a.test", 2, -1, "*.a.test", "longer:1"),	/* longer suffix above shorter */
	    OK("deep.y.a.test", 2, -1, "*.a.test", "longer:1"), /* any depth below */
	    OK("y.b.test", 0, -1, "*.test", "short:1"),
	    OK("a.test", 0, -1, "*.test", "short:1"),		 /* the apex is not *.a.test */
	    OK("test", 3, -1, "*", "star:1"),			 /* the apex is not *.test either */
	    OK("other.example", 3, -1, "*", "star:1"),		 /* '*' below every wildcard */
	    OK("dup.test", 4, -1, "dup.test", "first:1"),	 /* equals: the one listed first */
	    OK("second.test", 5, -1, "second.test", "second:1"), /* a route's second pattern */
	    OK(NULL, 3, -1, "*", "star:1"),			 /* no name: only '*' */
	    OK("xa.test", 0, -1, "*.test", "short:1"), /* suffix on a label boundary only */
	    OK("10.1.2.3", 3, -1, "*", "star:1"),      /* not egress: '*' takes a literal */
	};

	(void)state;
	reset(CONFIG_MODE_TLS);
	route("short:1", "*.test", NULL);
	route("exact:1", "x.a.test", NULL);
	route("longer:1", "*.a.test", NULL);
	route("star:1", "*", NULL);
	route("first:1", "dup.test", NULL);
	route("second:1", "other.one", "second.test");
	route("never:1", "dup.test", NULL);
	upstream("fallback:1");
	compile();
	CHECK_CASES(cases);
}

static void
test_no_match(void **state)
{
	static const struct route_case with_upstream[] = {
	    {"nothing.example", 0, 1, -1, -1, "", "fallback:9", 0, 0},
	    {NULL, 0, 1, -1, -1, "", "fallback:9", 0, 0},
	};
	static const struct route_case without[] = {
	    NO("nothing.example", REASON_NO_ROUTE, NULL),
	    NO(NULL, REASON_NO_NAME, NULL),
	};

	(void)state;
	reset(CONFIG_MODE_HTTP);
	route("a:1", "a.test", NULL);
	upstream("fallback:9");
	compile();
	CHECK_CASES(with_upstream);
	reset(CONFIG_MODE_HTTP);
	route("a:1", "a.test", NULL);
	compile();
	CHECK_CASES(without);
}

static void
test_host_routes(void **state)
{
	static const struct route_case cases[] = {
	    OK("x.dyn.test", 0, -1, "*.dyn.test", "$host:443"),
	    /* a "$host" route needs a name */
	    {NULL, 0, 0, 1, -1, "*", "$host:80", REASON_NO_NAME, 0},
	    /* an IP literal matches only a rule naming it, and is not_allowed otherwise */
	    NO("10.0.0.5", REASON_NOT_ALLOWED, NULL),
	    OK("192.0.2.7", 2, -1, "192.0.2.7", "$host:443"),
	    OK("name.example", 1, -1, "*", "$host:80"),
	};

	(void)state;
	reset(CONFIG_MODE_TLS);
	route("$host:443", "*.dyn.test", NULL);
	route("$host:80", "*", NULL);
	route("$host:443", "192.0.2.7", NULL);
	compile();
	CHECK_CASES(cases);
}

static void
test_host_catch_all(void **state)
{
	static const struct route_case cases[] = {
	    {"name.example", 0, 1, -1, -1, "", "$host:443", 0, 0},
	    /* a catch-all "$host" upstream never takes a literal */
	    {"10.0.0.5", 0, 0, -1, -1, "", "$host:443", REASON_NOT_ALLOWED, 0},
	    {"::1", 0, 0, -1, -1, "", "$host:443", REASON_NOT_ALLOWED, 0},
	    {NULL, 0, 0, -1, -1, "", "$host:443", REASON_NO_NAME, 0},
	};

	(void)state;
	reset(CONFIG_MODE_TLS);
	upstream("$host:443");
	compile();
	CHECK_CASES(cases);
}

static void
test_egress_literals(void **state)
{
	static const struct route_case cases[] = {
	    /* egress: '*' and wildcards never let an address through */
	    NO("10.0.0.5", REASON_NO_ROUTE, NULL),
	    OK("name.example", 0, -1, "*", "up:1"),
	    OK("192.0.2.9", 1, -1, "192.0.2.9", "lit:1"),
	};

	(void)state;
	reset(CONFIG_MODE_TLS);
	F.l.egress = 1;
	route("up:1", "*", NULL);
	route("lit:1", "192.0.2.9", NULL);
	compile();
	CHECK_CASES(cases);
}

static void
test_allowlist(void **state)
{
	static const struct route_case cases[] = {
	    /* routes before allow entries among equals */
	    OK("both.test", 0, -1, "both.test", "routed:1"),
	    OK("api.test", -1, 1, "api.test", "$host:8443"),
	    OK("x.cdn.test", -1, 2, "*.cdn.test", "$host:8443"),
	    OK("x.y.cdn.test", -1, 2, "*.cdn.test", "$host:8443"),
	    NO("cdn.test", REASON_NOT_ALLOWED, NULL),
	    NO("evil.example", REASON_NOT_ALLOWED, NULL),
	    NO(NULL, REASON_NOT_ALLOWED, NULL),
	    /* literals: the longest block holding them, above every pattern */
	    OK("10.1.2.3", -1, 4, "10.1.0.0/16", "$host:8443"),
	    OK("10.9.2.3", -1, 3, "10.0.0.0/8", "$host:8443"),
	    OK("10.1.2.4", -1, 6, "10.1.2.4/32", "$host:8443"),
	    OK("2001:db8::5", -1, 7, "2001:db8::/32", "$host:8443"),
	    NO("11.0.0.1", REASON_NOT_ALLOWED, NULL),
	    /* an IPv4-mapped literal is its IPv4 address: the same destination */
	    OK("::ffff:10.1.2.3", -1, 4, "10.1.0.0/16", "$host:8443"),
	    /* an IPv4 block never holds another IPv6 literal */
	    NO("::a01:203", REASON_NOT_ALLOWED, NULL),
	};

	(void)state;
	reset(CONFIG_MODE_TLS);
	route("routed:1", "both.test", NULL);
	allow("both.test");	/* 0 */
	allow("api.test");	/* 1 */
	allow("*.cdn.test");	/* 2 */
	allow("10.0.0.0/8");	/* 3 */
	allow("10.1.0.0/16");	/* 4 */
	allow("10.1.0.0/16");	/* 5: equal to 4, listed later */
	allow("10.1.2.4");	/* 6 */
	allow("2001:db8::/32"); /* 7 */
	compile();
	CHECK_CASES(cases);
	/* the 'port' key, then the listening port */
	{
		struct policy_verdict v;
		policy_free(F.p);
		F.l.port = 443;
		compile();
		assert_int_equal(policy_route(F.p, "api.test", 0, LISTEN_PORT, NULL, &v), 0);
		assert_int_equal(v.target->port, 443);
		assert_true(v.guarded);
	}
}

static void
test_allow_star_and_literals(void **state)
{
	static const struct route_case cases[] = {
	    OK("anything.example", -1, 0, "*", "$host:8443"),
	    /* an allow pattern, '*' included, never matches an IP literal */
	    NO("10.0.0.5", REASON_NOT_ALLOWED, NULL),
	    NO("::1", REASON_NOT_ALLOWED, NULL),
	};

	(void)state;
	reset(CONFIG_MODE_TLS);
	allow("*");
	compile();
	CHECK_CASES(cases);
}

static void
test_connect_ports(void **state)
{
	static const struct route_case cases[] = {
	    {"api.test", 8443, 1, -1, 0, "api.test:8443", "$host:8443", 0, 0},
	    {"api.test", 443, 1, -1, 1, "api.test", "$host:443", 0, 0}, /* no port: 443 */
	    {"api.test", 80, 0, -1, -1, "", NULL, REASON_NOT_ALLOWED, 80},
	    {"x.web.test", 80, 1, -1, 2, "*.web.test:80", "$host:80", 0, 0},
	    {"x.web.test", 443, 0, -1, -1, "", NULL, REASON_NOT_ALLOWED, 443},
	    /* a wildcard at the right port is found past an exact name at the wrong one */
	    {"x.any.test", 22, 1, -1, 4, "*.any.test:22", "$host:22", 0, 0},
	    {"192.0.2.1", 8080, 1, -1, 6, "192.0.2.0/24:8080", "$host:8080", 0, 0},
	    {"192.0.2.1", 443, 0, -1, -1, "", NULL, REASON_NOT_ALLOWED, 443},
	    {"2001:db8::1", 443, 1, -1, 7, "2001:db8::1/128", "$host:443", 0, 0},
	    {"nothing.test", 443, 0, -1, -1, "", NULL, REASON_NOT_ALLOWED, 0},
	};

	(void)state;
	reset(CONFIG_MODE_CONNECT);
	allow("api.test:8443");	    /* 0 */
	allow("api.test");	    /* 1 */
	allow("*.web.test:80");	    /* 2 */
	allow("x.any.test:23");	    /* 3 */
	allow("*.any.test:22");	    /* 4 */
	allow("192.0.2.1:80");	    /* 5 */
	allow("192.0.2.0/24:8080"); /* 6 */
	allow("[2001:db8::1]");	    /* 7 */
	compile();
	CHECK_CASES(cases);
}

/*
 * test_large_list: 50,000 exact names and 50,000 wildcards; every name
 * must find its own entry, wherever it sits in the list.
 */
static void
test_large_list(void **state)
{
	enum { N = 50000 };
	struct config_allow *entries = calloc(2 * N, sizeof(*entries));
	char err[128], name[64], want[64], rule[300];
	struct config_listener l;
	struct policy *p;

	(void)state;
	assert_non_null(entries);
	memset(&l, 0, sizeof(l));
	l.name = "large";
	l.mode = CONFIG_MODE_TLS;
	l.allow = entries;
	l.n_allow = 2 * N;
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "host%d.exact.test", i);
		entries[i].pattern = strdup(name);
		snprintf(name, sizeof(name), "*.zone%d.wild.test", i);
		entries[N + i].pattern = strdup(name);
	}
	assert_non_null(p = policy_new(&l, err, sizeof(err)));
	for (int i = 0; i < N; i += 997) {
		struct policy_verdict v;
		snprintf(name, sizeof(name), "host%d.exact.test", i);
		assert_int_equal(policy_route(p, name, 0, 443, NULL, &v), 0);
		assert_int_equal(v.allow, i);
		snprintf(name, sizeof(name), "a.b.zone%d.wild.test", i);
		assert_int_equal(policy_route(p, name, 0, 443, NULL, &v), 0);
		assert_int_equal(v.allow, N + i);
		policy_rule(p, &v, rule, sizeof(rule));
		snprintf(want, sizeof(want), "*.zone%d.wild.test", i);
		assert_string_equal(rule, want);
		snprintf(name, sizeof(name), "host%d.exact.test.x", i);
		assert_int_equal(policy_route(p, name, 0, 443, NULL, &v), -1);
		snprintf(name, sizeof(name), "zone%d.wild.test", i);
		assert_int_equal(policy_route(p, name, 0, 443, NULL, &v), -1);
	}
	policy_free(p);
	for (int i = 0; i < 2 * N; i++)
		free(entries[i].pattern);
	free(entries);
}

/* ---- the address guard ---- */

struct guard_case {
	const char *addr;
	int literal;
	const char *why; /* NULL: may be dialed */
};

static void
check_guard(const struct guard_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		const char *why;

		print_message("guard %s (literal %d)\n", cases[i].addr, cases[i].literal);
		assert_int_equal(net_parse_ip(cases[i].addr, 443, &ss, &len), 0);
		why = policy_guard(F.p, (struct sockaddr *)&ss, cases[i].literal);
		if (cases[i].why == NULL)
			assert_null(why);
		else
			assert_string_equal(why, cases[i].why);
	}
}

static void
test_guard_classes(void **state)
{
	static const struct guard_case cases[] = {
	    {"8.8.8.8", 0, NULL},
	    {"0.1.2.3", 0, "unspecified"},
	    {"10.0.0.5", 0, "private"},
	    {"172.16.0.1", 0, "private"},
	    {"192.168.1.1", 0, "private"},
	    {"100.64.0.1", 0, "cgnat"},
	    {"127.0.0.1", 0, "loopback"},
	    {"169.254.169.254", 0, "link-local"},
	    {"224.0.0.1", 0, "multicast"},
	    {"192.0.2.1", 0, "reserved"},
	    {"255.255.255.255", 0, "reserved"},
	    {"::", 0, "unspecified"},
	    {"::1", 0, "loopback"},
	    {"fd00::1", 0, "ula"},
	    {"fe80::1", 0, "link-local"},
	    {"fec0::1", 0, "private"},
	    {"ff02::1", 0, "multicast"},
	    {"2001::1", 0, "teredo"},
	    {"2001:db8::1", 0, "reserved"},
	    {"2606:4700::1", 0, NULL},
	    /* IPv4 inside IPv6 is judged by that IPv4 address */
	    {"::ffff:10.0.0.5", 0, "private"},
	    {"64:ff9b::a9fe:a9fe", 0, "link-local"},
	    {"2002:7f00:1::", 0, "loopback"},
	    {"::ffff:8.8.8.8", 0, NULL},
	};

	(void)state;
	reset(CONFIG_MODE_TLS);
	allow("example.test");
	compile();
	check_guard(cases, sizeof(cases) / sizeof(cases[0]));
}

static void
test_guard_ranges(void **state)
{
	static const struct guard_case cases[] = {
	    /* allow_ranges re-allow a refused class */
	    {"10.1.2.3", 0, NULL},
	    {"10.2.0.1", 0, "private"},
	    {"fd00::5", 0, NULL},
	    /* deny_ranges refuse, above allow_ranges, and catch every IPv6 spelling of IPv4 */
	    {"10.1.9.9", 0, "in deny_ranges"},
	    {"8.8.8.8", 0, "in deny_ranges"},
	    {"::ffff:8.8.8.8", 0, "in deny_ranges"},
	    {"64:ff9b::808:808", 0, "in deny_ranges"},
	    {"2002:808:808::1", 0, "in deny_ranges"},
	    {"::808:808", 0, "in deny_ranges"},
	    {"::ffff:0:808:808", 0, "in deny_ranges"},
	    {"64:ff9b:1:808:8:800::", 0, "in deny_ranges"},
	    {"2001:0:808:808::f7f7:f7f7", 0, "in deny_ranges"},
	    {"8.8.4.4", 0, NULL},
	    {"2a00::1", 0, "in deny_ranges"},
	    {"2a00:1::1", 0, NULL},
	    /* an allow entry naming the literal re-allows it, but only for a literal */
	    {"192.168.7.7", 1, NULL},
	    {"192.168.7.7", 0, "private"},
	    {"192.168.7.8", 1, "private"},
	    /* a block written in the mapped form is the IPv4 block: both spellings caught */
	    {"10.9.0.1", 0, "in deny_ranges"},
	    {"::ffff:10.9.0.1", 0, "in deny_ranges"},
	    {"10.9.1.1", 0, "private"},
	    /* and re-allowed likewise: an answer in the mapped form is the same address */
	    {"::ffff:10.1.2.3", 0, NULL},
	    {"10.3.0.7", 0, NULL},
	    {"::ffff:10.3.0.7", 0, NULL},
	};

	(void)state;
	reset(CONFIG_MODE_TLS);
	allow("192.168.7.7");
	cidr(&F.allow_ranges[F.l.n_allow_ranges++], "::ffff:10.3.0.0/120");
	cidr(&F.deny_ranges[F.l.n_deny_ranges++], "::ffff:10.9.0.0/120");
	cidr(&F.allow_ranges[F.l.n_allow_ranges++], "10.1.0.0/16");
	cidr(&F.allow_ranges[F.l.n_allow_ranges++], "fd00::/64");
	cidr(&F.allow_ranges[F.l.n_allow_ranges++], "8.8.8.0/24");
	cidr(&F.deny_ranges[F.l.n_deny_ranges++], "10.1.9.0/24");
	cidr(&F.deny_ranges[F.l.n_deny_ranges++], "8.8.8.8");
	cidr(&F.deny_ranges[F.l.n_deny_ranges++], "2a00::/32");
	compile();
	check_guard(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---- trust and credentials ---- */

static int
trusted(int (*fn)(const struct policy *, const struct sockaddr *), const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;

	assert_int_equal(net_parse_ip(addr, 1234, &ss, &len), 0);
	return fn(F.p, (struct sockaddr *)&ss);
}

static void
test_trust(void **state)
{
	(void)state;
	reset(CONFIG_MODE_HTTP);
	upstream("app:80");
	compile();
	/* no proxy_protocol.trusted: every peer may send PROXY; no http.trusted: none forwards */
	assert_true(trusted(policy_proxy_trusted, "203.0.113.9"));
	assert_false(trusted(policy_forwarding_trusted, "127.0.0.1"));
	reset(CONFIG_MODE_HTTP);
	upstream("app:80");
	cidr(&F.proxy_trusted[F.l.proxy.n_trusted++], "172.30.0.0/16");
	cidr(&F.proxy_trusted[F.l.proxy.n_trusted++], "::1");
	cidr(&F.http_trusted[F.l.http.n_trusted++], "10.0.0.7");
	compile();
	assert_true(trusted(policy_proxy_trusted, "172.30.9.9"));
	assert_true(trusted(policy_proxy_trusted, "::1"));
	assert_false(trusted(policy_proxy_trusted, "172.31.0.1"));
	/* a dual-stack socket sees IPv4 peers mapped: the same peer */
	assert_true(trusted(policy_proxy_trusted, "::ffff:172.30.9.9"));
	assert_false(trusted(policy_proxy_trusted, "::ffff:172.31.0.1"));
	assert_true(trusted(policy_forwarding_trusted, "10.0.0.7"));
	assert_false(trusted(policy_forwarding_trusted, "10.0.0.8"));
}

static void
test_credentials(void **state)
{
	static const struct {
		const char *header; /* NULL: no Proxy-Authorization */
		int ok;
		enum reason why;
	} cases[] = {
	    {"Basic dXNlcjpwYXNz", 1, 0},
	    {"basic    dXNlcjpwYXNz", 1, 0},
	    {"BASIC b3RoZXI6c2VjcmV0", 1, 0},
	    {NULL, 0, REASON_AUTH_REQUIRED},
	    {"Basic dXNlcjpwYXN", 0, REASON_AUTH_FAILED},    /* a prefix */
	    {"Basic dXNlcjpwYXNzeA", 0, REASON_AUTH_FAILED}, /* longer */
	    {"Bearer dXNlcjpwYXNz", 0, REASON_AUTH_FAILED},
	    {"Basic", 0, REASON_AUTH_FAILED},
	    {"Basic ", 0, REASON_AUTH_FAILED},
	};
	enum reason why;

	(void)state;
	reset(CONFIG_MODE_CONNECT);
	allow("*");
	compile();
	assert_int_equal(policy_proxy_credentials(F.p, NULL, 0, &why), 0);
	reset(CONFIG_MODE_CONNECT);
	allow("*");
	F.creds[F.l.proxy_auth_b64.n++] = strdup("dXNlcjpwYXNz");     /* user:pass */
	F.creds[F.l.proxy_auth_b64.n++] = strdup("b3RoZXI6c2VjcmV0"); /* other:secret */
	compile();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *h = cases[i].header;
		int rc = policy_proxy_credentials(F.p, h, h ? strlen(h) : 0, &why);
		print_message("credentials '%s'\n", h ? h : "(none)");
		assert_int_equal(rc == 0, cases[i].ok);
		if (!cases[i].ok)
			assert_int_equal(why, cases[i].why);
	}
}

static void
test_proxy_request_form(void **state)
{
	struct sniff_http_request req;
	enum reason why;

	(void)state;
	reset(CONFIG_MODE_CONNECT);
	allow("*");
	compile();
	memset(&req, 0, sizeof(req));
	req.form = SNIFF_HTTP_ASTERISK;
	assert_int_equal(policy_proxy_request(F.p, &req, (const uint8_t *)"", &why), -1);
	assert_int_equal(why, REASON_BAD_METHOD);
	req.form = SNIFF_HTTP_ORIGIN;
	assert_int_equal(policy_proxy_request(F.p, &req, (const uint8_t *)"", &why), -1);
	assert_int_equal(why, REASON_NOT_PROXY_REQUEST);
	req.form = SNIFF_HTTP_AUTHORITY;
	assert_int_equal(policy_proxy_request(F.p, &req, (const uint8_t *)"", &why), 0);
	req.form = SNIFF_HTTP_ABSOLUTE;
	assert_int_equal(policy_proxy_request(F.p, &req, (const uint8_t *)"", &why), 0);
}

static int
teardown(void **state)
{
	(void)state;
	release();
	return 0;
}

/* ---- sources ---- */

/*
 * sources fills src from a comma-separated list of names, addresses and
 * blocks (an item with a digit first or a ':' is an address).
 */
static void
sources(struct config_sources *src, const char *list)
{
	size_t set = F.n_src_sets++;
	char *copy = strdup(list), *save = NULL;

	src->blocks = F.src_blocks[set];
	src->names.v = F.src_names[set];
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save))
		if ((tok[0] >= '0' && tok[0] <= '9') || strchr(tok, ':') != NULL)
			cidr(&src->blocks[src->n_blocks++], tok);
		else
			src->names.v[src->names.n++] = strdup(tok);
	free(copy);
}

static struct sockaddr_storage source_addr;

/* from: a source at address text (NULL: unknown), with what the names resolve to. */
static struct policy_source
from(const char *text, const struct policy_names *names)
{
	struct policy_source src = {NULL, names};
	socklen_t len;

	if (text != NULL) {
		assert_int_equal(net_parse_ip(text, 0, &source_addr, &len), 0);
		src.addr = (const struct sockaddr *)&source_addr;
	}
	return src;
}

/* names_index builds what "name=addr" pairs say the names resolve to now. */
static struct policy_names *
names_index(const char *const *pairs, size_t n, struct sockaddr_storage *store)
{
	struct policy_name_addr pa[16];
	static char kept[16][64];
	socklen_t len;

	assert_true(n <= 16);
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(pairs[i], '=');
		snprintf(kept[i], sizeof(kept[i]), "%.*s", (int)(eq - pairs[i]), pairs[i]);
		assert_int_equal(net_parse_ip(eq + 1, 0, &store[i], &len), 0);
		pa[i].addr = (const struct sockaddr *)&store[i];
		pa[i].name = kept[i];
	}
	return policy_names_new(pa, n);
}

static int
peer_ok(const char *addr, const struct policy_names *names)
{
	struct policy_source src = from(addr, names);

	return policy_peer_admitted(F.p, &src);
}

static void
test_listener_sources(void **state)
{
	static const char *const resolved[] = {"traefik=172.20.0.5", "traefik=2001:db8::5",
					       "builder=10.200.0.9", "other=192.0.2.1"};
	struct sockaddr_storage store[16];
	struct policy_names *names = names_index(resolved, 4, store);
	const char *const *listed;
	struct policy_source src;

	(void)state;
	assert_non_null(names);
	reset(CONFIG_MODE_TCP);
	upstream("app:80");
	compile();
	/* no 'sources': anyone, even a client whose address is unknown */
	assert_true(peer_ok("203.0.113.9", NULL));
	assert_true(peer_ok(NULL, NULL));
	assert_int_equal(policy_source_names(F.p, &listed), 0);

	reset(CONFIG_MODE_TCP);
	upstream("app:80");
	sources(&F.l.sources, "10.0.0.0/8,::ffff:172.30.0.0/112,fd00::/8,traefik,builder");
	compile();
	assert_int_equal(policy_source_names(F.p, &listed), 2);
	assert_string_equal(listed[0], "traefik");
	assert_string_equal(listed[1], "builder");
	assert_true(peer_ok("10.1.2.3", names));
	assert_false(peer_ok("11.0.0.1", names));
	/* an IPv4 address and its mapped form are one source, in blocks of either form */
	assert_true(peer_ok("::ffff:10.1.2.3", names));
	assert_false(peer_ok("::ffff:11.0.0.1", names));
	assert_true(peer_ok("172.30.1.1", names));
	assert_true(peer_ok("::ffff:172.30.1.1", names));
	assert_false(peer_ok("172.31.0.1", names));
	assert_true(peer_ok("fd12::1", names));
	assert_false(peer_ok("fe80::1", names));
	/* names: the addresses they resolve to now, both families and the mapped form */
	assert_true(peer_ok("172.20.0.5", names));
	assert_true(peer_ok("::ffff:172.20.0.5", names));
	assert_true(peer_ok("2001:db8::5", names));
	assert_true(peer_ok("10.200.0.9", names));
	assert_false(peer_ok("2001:db8::6", names));
	assert_false(peer_ok("172.20.0.6", names));
	/* a name not in this set does not admit its address */
	assert_false(peer_ok("192.0.2.1", names));
	/* nothing resolved: names admit nobody, blocks still do */
	assert_false(peer_ok("172.20.0.5", NULL));
	assert_true(peer_ok("10.1.2.3", NULL));
	assert_false(peer_ok(NULL, names));
	/* client_sources is its own set: absent here, so every client */
	src = from("192.0.2.77", names);
	assert_true(policy_client_admitted(F.p, &src));

	reset(CONFIG_MODE_TCP);
	upstream("app:80");
	sources(&F.l.client_sources, "other");
	compile();
	assert_true(peer_ok("198.51.100.1", names));
	src = from("192.0.2.1", names);
	assert_true(policy_client_admitted(F.p, &src));
	src = from("::ffff:192.0.2.1", names);
	assert_true(policy_client_admitted(F.p, &src));
	src = from("192.0.2.2", names);
	assert_false(policy_client_admitted(F.p, &src));
	policy_names_free(names);
}

/* route_from: policy_route for name from address addr; returns the verdict's target text. */
static const char *
route_from(const char *name, uint16_t want, const char *addr, const struct policy_names *names,
	   struct policy_verdict *v)
{
	static char target[300];
	struct policy_source src = from(addr, names);

	if (policy_route(F.p, name, want, LISTEN_PORT, &src, v) == -1)
		return NULL;
	snprintf(target, sizeof(target), "%s:%u", v->target->host, v->target->port);
	return target;
}

static void
test_rule_sources(void **state)
{
	static const char *const resolved[] = {"builder=10.0.0.9", "builder=fd00::9"};
	struct sockaddr_storage store[16];
	struct policy_names *names = names_index(resolved, 2, store);
	struct policy_verdict v;

	(void)state;
	/* the egress gateway of the issue: one list for all, one entry for the builder */
	reset(CONFIG_MODE_TLS);
	allow("api.github.com");
	allow("*.pythonhosted.org");
	sources(&F.allow[1].sources, "builder,172.30.5.0/24");
	allow("files.pythonhosted.org");
	sources(&F.allow[2].sources, "10.0.0.7");
	allow("10.50.0.0/16");
	sources(&F.allow[3].sources, "10.0.0.7");
	compile();
	assert_non_null(route_from("api.github.com", 0, "10.0.0.1", names, &v));
	assert_non_null(route_from("x.pythonhosted.org", 0, "10.0.0.9", names, &v));
	assert_int_equal(v.allow, 1);
	assert_non_null(route_from("x.pythonhosted.org", 0, "fd00::9", names, &v));
	assert_non_null(route_from("x.pythonhosted.org", 0, "::ffff:172.30.5.20", names, &v));
	assert_null(route_from("x.pythonhosted.org", 0, "10.0.0.1", names, &v));
	assert_int_equal(v.refusal, REASON_SOURCE_DENIED);
	assert_true(v.source_refused);
	assert_int_equal(v.allow, -1);
	/* unresolved, the builder is nobody */
	assert_null(route_from("x.pythonhosted.org", 0, "10.0.0.9", NULL, &v));
	assert_int_equal(v.refusal, REASON_SOURCE_DENIED);
	/* an exact name for another client: the wildcard that applies decides */
	assert_non_null(route_from("files.pythonhosted.org", 0, "10.0.0.9", names, &v));
	assert_int_equal(v.allow, 1);
	assert_non_null(route_from("files.pythonhosted.org", 0, "10.0.0.7", names, &v));
	assert_int_equal(v.allow, 2);
	/* a name nobody may reach is still not_allowed */
	assert_null(route_from("evil.example", 0, "10.0.0.9", names, &v));
	assert_int_equal(v.refusal, REASON_NOT_ALLOWED);
	assert_false(v.source_refused);
	/* an allow block with sources */
	assert_non_null(route_from("10.50.1.1", 0, "10.0.0.7", names, &v));
	assert_int_equal(v.allow, 3);
	assert_null(route_from("10.50.1.1", 0, "10.0.0.8", names, &v));
	assert_int_equal(v.refusal, REASON_SOURCE_DENIED);
	/* unknown client: only the entries without sources */
	assert_non_null(route_from("api.github.com", 0, NULL, names, &v));
	assert_null(route_from("x.pythonhosted.org", 0, NULL, names, &v));

	/* routes: a route with sources, the listener's upstream for everyone else */
	reset(CONFIG_MODE_HTTP);
	upstream("app:80");
	route("admin:8080", "admin.example", NULL);
	sources(&F.routes[0].sources, "10.0.0.2");
	route("$host:80", "*.internal.example", NULL);
	sources(&F.routes[1].sources, "builder");
	compile();
	assert_string_equal(route_from("admin.example", 0, "10.0.0.2", names, &v), "admin:8080");
	assert_int_equal(v.route, 0);
	assert_string_equal(route_from("admin.example", 0, "10.0.0.3", names, &v), "app:80");
	assert_int_equal(v.route, -1);
	assert_string_equal(route_from("a.internal.example", 0, "10.0.0.9", names, &v), "$host:80");
	assert_string_equal(route_from("a.internal.example", 0, "10.0.0.3", names, &v), "app:80");

	/* no fallback: a route for others is source_denied, a name with no route no_route */
	reset(CONFIG_MODE_TLS);
	route("admin:443", "admin.example", NULL);
	sources(&F.routes[0].sources, "10.0.0.2");
	route("www:443", "*", NULL);
	sources(&F.routes[1].sources, "10.0.0.0/24");
	compile();
	assert_non_null(route_from("admin.example", 0, "10.0.0.2", names, &v));
	assert_string_equal(route_from("admin.example", 0, "10.0.0.3", names, &v), "www:443");
	assert_null(route_from("admin.example", 0, "10.0.1.3", names, &v));
	assert_int_equal(v.refusal, REASON_SOURCE_DENIED);
	/* a nameless client only reaches a "*" route that applies to it */
	assert_non_null(route_from(NULL, 0, "10.0.0.4", names, &v));
	assert_null(route_from(NULL, 0, "10.0.1.4", names, &v));
	assert_int_equal(v.refusal, REASON_SOURCE_DENIED);

	/* connect: ports and sources together */
	reset(CONFIG_MODE_CONNECT);
	allow("api.example:443");
	sources(&F.allow[0].sources, "10.0.0.2");
	allow("api.example:8443");
	compile();
	assert_non_null(route_from("api.example", 443, "10.0.0.2", names, &v));
	assert_null(route_from("api.example", 443, "10.0.0.3", names, &v));
	assert_int_equal(v.refusal, REASON_SOURCE_DENIED);
	assert_non_null(route_from("api.example", 8443, "10.0.0.3", names, &v));
	policy_names_free(names);
}

/* 10,000 blocks and 10,000 names in one set: each found, others not. */
static void
test_sources_scale(void **state)
{
	enum { N = 10000 };
	static struct config_cidr blocks[N];
	static char *listed[N];
	static struct policy_name_addr pairs[N];
	static struct sockaddr_storage addrs[N];
	struct config_listener l;
	struct policy *p;
	struct policy_names *names;
	char err[128], text[64];
	socklen_t len;

	(void)state;
	memset(&l, 0, sizeof(l));
	l.name = "scale";
	l.mode = CONFIG_MODE_TCP;
	l.upstream.host = "app";
	l.upstream.port = 80;
	for (int i = 0; i < N; i++) {
		snprintf(text, sizeof(text), "10.%d.%d.0", i / 256, i % 256);
		assert_int_equal(net_parse_ip(text, 0, &blocks[i].addr, &len), 0);
		blocks[i].prefix = 24 + (unsigned)(i % 9);
		snprintf(text, sizeof(text), "svc%d", i);
		listed[i] = strdup(text);
		snprintf(text, sizeof(text), "fd00::%x:%x", i / 65536, i % 65536 + 1);
		assert_int_equal(net_parse_ip(text, 0, &addrs[i], &len), 0);
		pairs[i].addr = (const struct sockaddr *)&addrs[i];
		pairs[i].name = listed[i];
	}
	l.sources.blocks = blocks;
	l.sources.n_blocks = N;
	l.sources.names.v = listed;
	l.sources.names.n = N;
	assert_non_null(p = policy_new(&l, err, sizeof(err)));
	assert_non_null(names = policy_names_new(pairs, N));
	for (int i = 0; i < N; i += 7) {
		struct sockaddr_storage ss;
		struct policy_source src = {(const struct sockaddr *)&ss, names};
		snprintf(text, sizeof(text), "10.%d.%d.0", i / 256, i % 256);
		assert_int_equal(net_parse_ip(text, 0, &ss, &len), 0);
		assert_true(policy_peer_admitted(p, &src));
		src.addr = (const struct sockaddr *)&addrs[i];
		assert_true(policy_peer_admitted(p, &src));
	}
	{
		struct sockaddr_storage ss;
		struct policy_source src = {(const struct sockaddr *)&ss, names};
		assert_int_equal(net_parse_ip("11.0.0.1", 0, &ss, &len), 0);
		assert_false(policy_peer_admitted(p, &src));
		assert_int_equal(net_parse_ip("fd00::1:0", 0, &ss, &len), 0);
		assert_false(policy_peer_admitted(p, &src));
	}
	policy_names_free(names);
	policy_free(p);
	for (int i = 0; i < N; i++)
		free(listed[i]);
}

/* action: report: allowlist and sources refusals let through, guarded; nothing else. */
static void
test_report_mode(void **state)
{
	struct policy_verdict v;

	(void)state;
	reset(CONFIG_MODE_CONNECT);
	allow("api.example:443");
	allow("pkg.example:443");
	sources(&F.allow[1].sources, "10.0.0.9");
	F.l.report = 1;
	compile();
	/* allowed stays allowed, with no would-deny */
	assert_string_equal(route_from("api.example", 443, "10.0.0.1", NULL, &v), "$host:443");
	assert_int_equal(v.would_deny, REASON_NONE);
	/* not allowed: on to the name asked for, at the port asked for, guarded */
	assert_string_equal(route_from("evil.example", 8080, "10.0.0.1", NULL, &v), "$host:8080");
	assert_int_equal(v.would_deny, REASON_NOT_ALLOWED);
	assert_true(v.guarded);
	assert_int_equal(v.allow, -1);
	/* a port not allowed, and an IP literal, the same */
	assert_string_equal(route_from("api.example", 22, "10.0.0.1", NULL, &v), "$host:22");
	assert_int_equal(v.would_deny, REASON_NOT_ALLOWED);
	assert_string_equal(route_from("10.0.0.5", 443, "10.0.0.1", NULL, &v), "$host:443");
	assert_true(v.literal && v.guarded);
	/* refused for its source: as if the entry applied, and said why */
	assert_non_null(route_from("pkg.example", 443, "10.0.0.1", NULL, &v));
	assert_int_equal(v.allow, 1);
	assert_int_equal(v.would_deny, REASON_SOURCE_DENIED);
	assert_true(v.guarded);
	assert_non_null(route_from("pkg.example", 443, "10.0.0.9", NULL, &v));
	assert_int_equal(v.would_deny, REASON_NONE);

	/* tls: a nameless client is still refused, as is a route missing on an inbound listener */
	reset(CONFIG_MODE_TLS);
	allow("api.example");
	F.l.report = 1;
	compile();
	assert_null(route_from(NULL, 0, "10.0.0.1", NULL, &v));
	assert_string_equal(route_from("x.example", 0, "10.0.0.1", NULL, &v), "$host:8443");
	reset(CONFIG_MODE_TLS);
	route("app:443", "app.example", NULL);
	sources(&F.routes[0].sources, "10.0.0.2");
	F.l.report = 1;
	compile();
	assert_null(route_from("other.example", 0, "10.0.0.1", NULL, &v));
	assert_int_equal(v.refusal, REASON_NO_ROUTE);
	/* a route refused for its source: its own upstream, and noted */
	assert_string_equal(route_from("app.example", 0, "10.0.0.1", NULL, &v), "app:443");
	assert_int_equal(v.would_deny, REASON_SOURCE_DENIED);
	assert_int_equal(v.route, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_precedence_names, teardown),
	    cmocka_unit_test_teardown(test_no_match, teardown),
	    cmocka_unit_test_teardown(test_host_routes, teardown),
	    cmocka_unit_test_teardown(test_host_catch_all, teardown),
	    cmocka_unit_test_teardown(test_egress_literals, teardown),
	    cmocka_unit_test_teardown(test_allowlist, teardown),
	    cmocka_unit_test_teardown(test_allow_star_and_literals, teardown),
	    cmocka_unit_test_teardown(test_connect_ports, teardown),
	    cmocka_unit_test(test_large_list),
	    cmocka_unit_test_teardown(test_guard_classes, teardown),
	    cmocka_unit_test_teardown(test_guard_ranges, teardown),
	    cmocka_unit_test_teardown(test_trust, teardown),
	    cmocka_unit_test_teardown(test_credentials, teardown),
	    cmocka_unit_test_teardown(test_listener_sources, teardown),
	    cmocka_unit_test_teardown(test_rule_sources, teardown),
	    cmocka_unit_test(test_sources_scale),
	    cmocka_unit_test_teardown(test_report_mode, teardown),
	    cmocka_unit_test_teardown(test_proxy_request_form, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
