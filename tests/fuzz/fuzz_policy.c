/*
 * fuzz_policy.c: the composed decision (policy_route, then policy_guard
 * over the addresses), checked against a reference that scans every rule.
 *
 * The input is a small listener written as text lines, then queries:
 *
 *   byte 0       mode (tls, http, connect), egress, and the listener's
 *                own upstream (none, fixed, "$host")
 *   r P [P]      a route with patterns P, upstream fixed; "R" for "$host"
 *   a ENTRY      an allow entry: name, *.suffix, *, ADDR[/LEN], [:PORT]
 *   + CIDR       allow_ranges;   - CIDR   deny_ranges
 *   s CIDR       a source block of the route or allow entry added last
 *   S CIDR       a source block of the listener's 'sources'
 *   f ADDR       the client of the queries that follow ("-": unknown)
 *   q NAME PORT  route NAME (as the wire gave it; "-" for none), asked at PORT
 *   g ADDR       guard ADDR for the last query's verdict
 *   p ADDR       is the peer ADDR admitted by the listener's 'sources'?
 *
 * Lines that configuration validation would refuse are skipped, as are
 * names that normalization refuses (the session closes those as
 * malformed before asking). The reference is the plain reading of the
 * documented precedence: every route pattern and allow entry scored, the
 * highest score wins, ties to the first listed, routes first; a rule
 * whose sources exclude the client is not scored; an IPv4 address and its
 * mapped form are one address, in blocks of either form. The
 * compiled policy must agree on every field: matched, route, pattern,
 * allow, target, refusal, the refused port, and the guard's answer.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "net.h"
#include "policy.h"
#include "route.h"
#include "fuzz.h"

#define MAX_ITEMS   24
#define SCORE_BLOCK 2000000u

static struct config_listener L;
static struct config_route routes[MAX_ITEMS];
static char *patterns[MAX_ITEMS][2];
static struct config_allow allows[MAX_ITEMS];
static struct config_cidr allow_ranges[MAX_ITEMS], deny_ranges[MAX_ITEMS];
static struct config_cidr source_blocks[2 * MAX_ITEMS + 1][4];
static size_t n_source_sets;
static struct config_sources *last_sources; /* of the rule added last */
static struct sockaddr_storage from_addr;
static int from_known;
static char store[MAX_ITEMS * 6][300];
static size_t n_store;

static char *
keep(const char *s)
{
	if (n_store == sizeof(store) / sizeof(store[0]))
		return NULL;
	snprintf(store[n_store], sizeof(store[0]), "%s", s);
	return store[n_store++];
}

static int
parse_cidr(const char *text, struct config_cidr *c)
{
	char addr[64];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	socklen_t len;
	unsigned max;
	char *end;
	long prefix;

	if (alen == 0 || alen >= sizeof(addr))
		return -1;
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	if (net_parse_ip(addr, 0, &c->addr, &len) == -1)
		return -1;
	max = c->addr.ss_family == AF_INET ? 32 : 128;
	c->prefix = max;
	if (slash != NULL) {
		prefix = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || prefix < 0 || prefix > (long)max)
			return -1;
		c->prefix = (unsigned)prefix;
	}
	return 0;
}

/* parse_allow: an allow entry as the configuration reads it (ports in mode connect only). */
static int
parse_allow(const char *text, struct config_allow *a)
{
	char host[300], err[300];
	const char *colon = strrchr(text, ':'), *hs = text, *he;

	memset(a, 0, sizeof(*a));
	if (text[0] == '[') {
		if ((he = strchr(text, ']')) == NULL || (he[1] != '\0' && he[1] != ':'))
			return -1;
		hs = text + 1;
		colon = he[1] == ':' ? he + 1 : NULL;
	} else {
		if (colon != NULL && memchr(text, ':', (size_t)(colon - text)) != NULL)
			colon = NULL;
		he = colon ? colon : text + strlen(text);
	}
	if (he == hs || (size_t)(he - hs) >= sizeof(host))
		return -1;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	if (colon != NULL) {
		long port = strtol(colon + 1, NULL, 10);
		if (L.mode != CONFIG_MODE_CONNECT || port < 1 || port > 65535)
			return -1;
		a->port = (uint16_t)port;
	}
	if (parse_cidr(host, &a->cidr) == 0)
		return 0;
	if (strchr(host, '/') != NULL || text[0] == '[' ||
	    route_pattern_check(host, err, sizeof(err)) == -1)
		return -1;
	return (a->pattern = keep(host)) != NULL ? 0 : -1;
}

/* ---- the reference: every rule scored, as the precedence is documented ---- */

static int
guarded(void)
{
	return L.egress || L.n_allow > 0 || L.mode == CONFIG_MODE_CONNECT;
}

/*
 * same_contains: c holds sa, an IPv4-mapped address being its IPv4
 * address, and a block inside ::ffff:0:0/96 the IPv4 block it spells.
 */
static int
same_contains(const struct config_cidr *c, const struct sockaddr *sa)
{
	struct sockaddr_in v4, c4;
	const struct sockaddr *u = net_unmap_v4(sa, &v4);
	struct config_cidr as_v4;

	if (c->prefix >= 96 && net_unmap_v4((const struct sockaddr *)&c->addr, &c4) != NULL) {
		memset(&as_v4, 0, sizeof(as_v4));
		memcpy(&as_v4.addr, &c4, sizeof(c4));
		as_v4.prefix = c->prefix - 96;
		c = &as_v4;
	}
	return config_cidr_contains(c, u != NULL ? u : sa);
}

/* ref_in: may the client use a rule with these sources? */
static int
ref_in(const struct config_sources *src)
{
	if (src->n_blocks == 0)
		return 1;
	if (!from_known)
		return 0;
	for (size_t i = 0; i < src->n_blocks; i++)
		if (same_contains(&src->blocks[i], (const struct sockaddr *)&from_addr))
			return 1;
	return 0;
}

static int ref_source_refused;

static unsigned
ref_pattern_score(const struct config_route *rt, const char *pattern, const char *name)
{
	unsigned score;

	if (name != NULL && (guarded() || rt->upstream.sniffed_host) && route_name_is_ip(name))
		score = strcmp(pattern, name) == 0 ? route_pattern_score(pattern, name) : 0;
	else
		score = route_pattern_score(pattern, name);
	if (score > 0 && !ref_in(&rt->sources)) {
		ref_source_refused = 1;
		return 0;
	}
	return score;
}

static unsigned
ref_allow_score(const struct config_allow *a, const char *name, uint16_t want, uint16_t *refused)
{
	struct sockaddr_storage ss;
	socklen_t len;
	unsigned score;

	if (name == NULL)
		return 0;
	if (a->pattern != NULL)
		score = route_name_is_ip(name) ? 0 : route_pattern_score(a->pattern, name);
	else
		/* the longest block first, an IPv4 prefix counted as its IPv6 length */
		score = net_parse_ip(name, 0, &ss, &len) == 0 &&
				same_contains(&a->cidr, (struct sockaddr *)&ss)
			    ? SCORE_BLOCK + a->cidr.prefix +
				  (a->cidr.addr.ss_family == AF_INET ? 96 : 0)
			    : 0;
	if (score > 0 && !ref_in(&a->sources)) {
		ref_source_refused = 1;
		return 0;
	}
	if (score > 0 && want != 0 && want != (a->port ? a->port : 443)) {
		*refused = want;
		return 0;
	}
	return score;
}

struct ref {
	int allowed, matched, route, pattern, allow;
	const char *host;
	uint16_t port;
	enum reason refusal;
	uint16_t port_refused;
	int literal, guard, source_refused;
};

static void
ref_route(const char *name, uint16_t want, uint16_t listen_port, struct ref *r)
{
	unsigned best = 0, score;
	int host_route = 0, literal = name != NULL && route_name_is_ip(name);
	const struct config_hostport *t = NULL;
	uint16_t refused = 0;

	memset(r, 0, sizeof(*r));
	r->route = r->pattern = r->allow = -1;
	r->literal = literal;
	ref_source_refused = 0;
	for (size_t i = 0; i < L.n_routes; i++) {
		host_route |= L.routes[i].upstream.sniffed_host;
		for (size_t j = 0; j < L.routes[i].match.n; j++)
			if ((score = ref_pattern_score(&L.routes[i], L.routes[i].match.v[j],
						       name)) > best) {
				best = score;
				r->route = (int)i;
				r->pattern = (int)j;
			}
	}
	for (size_t i = 0; i < L.n_allow; i++)
		if ((score = ref_allow_score(&L.allow[i], name, want, &refused)) > best) {
			best = score;
			r->route = r->pattern = -1;
			r->allow = (int)i;
		}
	r->matched = best > 0;
	r->port_refused = r->allow < 0 ? refused : 0;
	if (r->allow >= 0) {
		r->host = "$host";
		r->port = want ? want : L.port ? (uint16_t)L.port : listen_port;
		r->allowed = 1;
		r->guard = 1;
		return;
	}
	t = r->route >= 0 ? &L.routes[r->route].upstream : L.upstream.host ? &L.upstream : NULL;
	if (t == NULL) {
		r->source_refused = ref_source_refused;
		r->refusal =
		    ref_source_refused ? REASON_SOURCE_DENIED
		    : L.n_allow > 0 || L.mode == CONFIG_MODE_CONNECT || (literal && host_route)
			? REASON_NOT_ALLOWED
		    : name ? REASON_NO_ROUTE
			   : REASON_NO_NAME;
		return;
	}
	r->host = t->host;
	r->port = t->port;
	if (t->sniffed_host && name == NULL) {
		r->refusal = REASON_NO_NAME;
		return;
	}
	if (t == &L.upstream && t->sniffed_host && literal) {
		r->refusal = REASON_NOT_ALLOWED;
		return;
	}
	r->allowed = 1;
	r->guard = guarded() || t->sniffed_host;
}

static const char *
ref_guard(const struct sockaddr *sa, int literal)
{
	struct sockaddr_storage v4[ROUTE_EMBEDDED_MAX];
	size_t n = route_addr_embedded_v4(sa, v4);
	const char *class;

	for (size_t i = 0; i < L.n_deny_ranges; i++) {
		if (same_contains(&L.deny_ranges[i], sa))
			return "in deny_ranges";
		for (size_t j = 0; j < n; j++)
			if (same_contains(&L.deny_ranges[i], (struct sockaddr *)&v4[j]))
				return "in deny_ranges";
	}
	for (size_t i = 0; i < L.n_allow_ranges; i++)
		if (same_contains(&L.allow_ranges[i], sa))
			return NULL;
	if ((class = route_addr_class(sa)) == NULL)
		return NULL;
	if (literal)
		for (size_t i = 0; i < L.n_allow; i++)
			if (L.allow[i].pattern == NULL && same_contains(&L.allow[i].cidr, sa))
				return NULL;
	return class;
}

/* ---- the run ---- */

static void
compare(const struct policy *p, const char *name, uint16_t want, struct ref *r)
{
	struct policy_verdict v;
	struct policy_source src = {from_known ? (const struct sockaddr *)&from_addr : NULL, NULL};
	int rc = policy_route(p, name, want, 8443, &src, &v);

	ref_route(name, want, 8443, r);
	CHECK((rc == 0) == r->allowed);
	CHECK(v.matched == r->matched);
	CHECK(v.route == r->route && v.pattern == r->pattern && v.allow == r->allow);
	CHECK(v.port_refused == r->port_refused);
	CHECK(v.source_refused == r->source_refused);
	CHECK(v.literal == r->literal);
	CHECK((v.target == NULL) == (r->host == NULL));
	if (v.target != NULL)
		CHECK(strcmp(v.target->host, r->host) == 0 && v.target->port == r->port);
	if (rc != 0)
		CHECK(v.refusal == r->refusal);
	else
		CHECK(v.guarded == r->guard);
}

static void
setup(uint8_t flags)
{
	static const enum config_mode modes[] = {CONFIG_MODE_TLS, CONFIG_MODE_HTTP,
						 CONFIG_MODE_CONNECT, CONFIG_MODE_TLS};

	memset(&L, 0, sizeof(L));
	memset(allows, 0, sizeof(allows));
	n_store = 0;
	n_source_sets = 1; /* [0]: the listener's */
	last_sources = NULL;
	from_known = 0;
	L.sources.blocks = source_blocks[0];
	L.name = "fuzz";
	L.mode = modes[flags & 3];
	L.egress = (flags >> 2) & 1;
	L.routes = routes;
	L.allow = allows;
	L.allow_ranges = allow_ranges;
	L.deny_ranges = deny_ranges;
	if (L.mode != CONFIG_MODE_CONNECT) {
		switch ((flags >> 3) & 3) {
		case 1:
			L.upstream.host = keep("fixed");
			L.upstream.port = 80;
			break;
		case 2:
			L.upstream.host = keep("$host");
			L.upstream.port = 443;
			L.upstream.sniffed_host = 1;
			break;
		}
		if ((flags >> 5) & 1)
			L.port = 9443;
	}
}

/* next_line copies the next line of data into buf; returns 0 at the end. */
static int
next_line(const uint8_t **data, size_t *size, char *buf, size_t cap)
{
	size_t n = 0;

	if (*size == 0)
		return 0;
	while (*size > 0 && **data != '\n') {
		if (n < cap - 1)
			buf[n++] = (char)**data;
		(*data)++;
		(*size)--;
	}
	if (*size > 0) {
		(*data)++;
		(*size)--;
	}
	buf[n] = '\0';
	return 1;
}

static void
add_route(char *args, int host)
{
	struct config_route *rt = &routes[L.n_routes];
	char err[300], *tok, *save = NULL;

	if (L.mode == CONFIG_MODE_CONNECT || L.n_routes == MAX_ITEMS)
		return;
	memset(rt, 0, sizeof(*rt));
	rt->match.v = patterns[L.n_routes];
	for (tok = strtok_r(args, " ", &save); tok != NULL && rt->match.n < 2;
	     tok = strtok_r(NULL, " ", &save))
		if (route_pattern_check(tok, err, sizeof(err)) == 0 &&
		    (rt->match.v[rt->match.n] = keep(tok)) != NULL)
			rt->match.n++;
	if (rt->match.n == 0)
		return;
	rt->upstream.host = keep(host ? "$host" : "routed");
	rt->upstream.port = (uint16_t)(host ? 443 : 1000 + L.n_routes);
	rt->upstream.sniffed_host = host;
	rt->sources.blocks = source_blocks[n_source_sets++];
	last_sources = &rt->sources;
	L.n_routes++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[512], name[ROUTE_NAME_MAX + 1], err[128];
	struct policy *p = NULL;
	struct ref last = {0};
	int have_query = 0;

	if (size == 0)
		return 0;
	setup(data[0]);
	data++;
	size--;
	while (next_line(&data, &size, line, sizeof(line))) {
		char *arg = line + (line[0] != '\0' && line[1] == ' ' ? 2 : 1);
		if (line[0] == '\0')
			continue;
		switch (line[0]) {
		case 'r':
		case 'R':
			if (p == NULL)
				add_route(arg, line[0] == 'R');
			continue;
		case 'a':
			if (p == NULL && L.n_allow < MAX_ITEMS &&
			    parse_allow(arg, &allows[L.n_allow]) == 0) {
				allows[L.n_allow].sources.blocks = source_blocks[n_source_sets++];
				last_sources = &allows[L.n_allow++].sources;
			}
			continue;
		case 's':
		case 'S': {
			struct config_sources *src = line[0] == 'S' ? &L.sources : last_sources;
			if (p == NULL && src != NULL && src->n_blocks < 4 &&
			    parse_cidr(arg, &src->blocks[src->n_blocks]) == 0)
				src->n_blocks++;
			continue;
		}
		case 'f': {
			socklen_t len;
			from_known = net_parse_ip(arg, 0, &from_addr, &len) == 0;
			continue;
		}
		case '+':
			if (p == NULL && L.n_allow_ranges < MAX_ITEMS &&
			    parse_cidr(arg, &allow_ranges[L.n_allow_ranges]) == 0)
				L.n_allow_ranges++;
			continue;
		case '-':
			if (p == NULL && L.n_deny_ranges < MAX_ITEMS &&
			    parse_cidr(arg, &deny_ranges[L.n_deny_ranges]) == 0)
				L.n_deny_ranges++;
			continue;
		}
		/* The listener is complete at the first query or guard line. */
		if (p == NULL) {
			if (L.mode == CONFIG_MODE_CONNECT && L.n_allow == 0)
				return 0; /* validation refuses it */
			if (L.n_allow == 0)
				L.port = 0;
			CHECK((p = policy_new(&L, err, sizeof(err))) != NULL);
		}
		if (line[0] == 'q') {
			char *sp = strrchr(arg, ' ');
			long port = 0;
			const char *n = NULL;
			if (sp != NULL) {
				port = strtol(sp + 1, NULL, 10);
				*sp = '\0';
			}
			if (L.mode != CONFIG_MODE_CONNECT || port < 1 || port > 65535)
				port = 0;
			if (strcmp(arg, "-") != 0) {
				if (route_normalize_name(arg, strlen(arg), name, sizeof(name)) ==
				    -1)
					continue;
				n = name;
			} else if (L.mode == CONFIG_MODE_CONNECT) {
				continue; /* a proxy request always names its destination */
			}
			compare(p, n, (uint16_t)port, &last);
			have_query = 1;
		} else if (line[0] == 'p') {
			struct sockaddr_storage ss;
			struct policy_source peer = {(const struct sockaddr *)&ss, NULL};
			socklen_t len;
			int want = L.sources.n_blocks == 0;
			if (net_parse_ip(arg, 0, &ss, &len) == -1)
				continue;
			for (size_t i = 0; i < L.sources.n_blocks; i++)
				want |= same_contains(&L.sources.blocks[i], (struct sockaddr *)&ss);
			CHECK(policy_peer_admitted(p, &peer) == want);
		} else if (line[0] == 'g' && have_query) {
			struct sockaddr_storage ss;
			socklen_t len;
			const char *a, *b;
			if (net_parse_ip(arg, 443, &ss, &len) == -1)
				continue;
			a = policy_guard(p, (struct sockaddr *)&ss, last.literal);
			b = ref_guard((struct sockaddr *)&ss, last.literal);
			CHECK((a == NULL) == (b == NULL));
			CHECK(a == NULL || strcmp(a, b) == 0);
		}
	}
	policy_free(p);
	return 0;
}
