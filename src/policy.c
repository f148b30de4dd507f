/*
 * policy.c: a listener's decisions, compiled once and then only read.
 *
 * Routes' match patterns and allow entries become rules, numbered in
 * precedence order among equals (routes first, each in the order listed).
 * A rule sits under one key: an exact name in the exact table, the suffix
 * of a "*.suffix" pattern in the wildcard table, or the "*" chain. Rules
 * under the same key are chained in that order, so the first one that
 * applies is the one listed first. Address blocks (IP-literal allow
 * entries, allow_ranges, deny_ranges, the trusted peers) go into block
 * tables keyed by (family, prefix length, network), with the prefix
 * lengths in use kept longest first: a lookup masks the address once per
 * length and probes the table.
 *
 * The tables are open-addressing hash tables at most half full, sized
 * at compile time; the keys point into the listener's configuration,
 * which outlives the policy. Nothing here changes after policy_new.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hash.h"
#include "net.h"
#include "policy.h"
#include "route.h"

/* The port an allow entry without one admits in mode connect. */
#define ALLOW_DEFAULT_PORT 443

/* One route pattern or allow entry. */
struct rule {
	int route, pattern; /* a route's match pattern, or -1 */
	int allow;	    /* an allow entry, or -1 */
	uint16_t port;	    /* allow: the port admitted when one is asked for */
	int takes_ip;	    /* a route "*" that also matches IP literals */
	int sources;	    /* the source set the client must be in, or -1: anyone */
	int next;	    /* the next rule under the same key, or -1 */
};

struct name_slot {
	const char *key; /* NULL: empty */
	uint32_t hash;
	int first, last; /* the chain of rules under this key */
};

struct name_table {
	struct name_slot *slots;
	size_t mask; /* slots - 1; 0 with no slots */
};

struct block_slot {
	uint8_t used, family, prefix;
	uint8_t net[16]; /* the network, masked to prefix */
	int first, last; /* the chain of entries with this block */
};

struct block_table {
	struct block_slot *slots;
	size_t mask;
	int *next;		  /* per entry: the next one with the same block, or -1 */
	uint8_t prefixes[2][129]; /* per family (IPv4, IPv6): the lengths in use, longest first */
	unsigned n_prefixes[2];
	size_t n; /* entries */
};

/* A compiled 'sources': its blocks (entries: item indices) and its names. */
struct source_set {
	struct block_table blocks;
	struct name_table names;
};

/* What source names resolve to now: (address, name) pairs, by address. */
struct policy_names {
	struct block_table addrs; /* entries: pairs, each a /32 or /128 */
	const char **name;	  /* per pair */
};

struct policy {
	const struct config_listener *conf;
	int guarded;	/* an egress listener: IP literals match only themselves */
	int host_route; /* some route sends names to "$host" */
	struct rule *rules;
	size_t n_rules;
	struct name_table exact, wild;
	int star_first, star_last;
	struct block_table allow_blocks; /* entries: allow indices */
	struct block_table allow_ranges, deny_ranges, proxy_trusted, http_trusted;
	struct source_set *sets; /* the listener's, its client_sources, then per rule */
	size_t n_sets;
	int peer_set, client_set;     /* 'sources' and 'client_sources', or -1 */
	int *route_sets, *allow_sets; /* per route and allow entry: its set, or -1 */
	struct name_table all_names;  /* every source name once */
	struct name_table ancestors;  /* the parent domains of allow names and patterns */
	const char **source_names;    /* the same, in order of first mention */
	size_t n_source_names;
};

/* ---- hash tables ---- */

/* table_slots: a power of two at least twice n (0 for none). */
static size_t
table_slots(size_t n)
{
	size_t cap = 4;

	if (n == 0)
		return 0;
	while (cap < 2 * n)
		cap *= 2;
	return cap;
}

static int
name_table_init(struct name_table *t, size_t n)
{
	size_t cap = table_slots(n);

	t->mask = 0;
	t->slots = NULL;
	if (cap == 0)
		return 0;
	if ((t->slots = calloc(cap, sizeof(*t->slots))) == NULL)
		return -1;
	t->mask = cap - 1;
	return 0;
}

/* name_find returns the chain under key (len bytes), or -1. */
static int
name_find(const struct name_table *t, const char *key, size_t len)
{
	uint32_t h;

	if (t->slots == NULL)
		return -1;
	h = hash_bytes(HASH_SEED, key, len);
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		const struct name_slot *s = &t->slots[i];
		if (s->key == NULL)
			return -1;
		if (s->hash == h && strncmp(s->key, key, len) == 0 && s->key[len] == '\0')
			return s->first;
	}
}

/*
 * name_slot returns key's slot, claiming an empty one (first and last -1)
 * when key is new; the table has room: it was sized for every key.
 */
static struct name_slot *
name_slot(struct name_table *t, const char *key)
{
	uint32_t h = hash_bytes(HASH_SEED, key, strlen(key));

	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct name_slot *s = &t->slots[i];
		if (s->key == NULL) {
			s->key = key;
			s->hash = h;
			s->first = s->last = -1;
			return s;
		}
		if (s->hash == h && strcmp(s->key, key) == 0)
			return s;
	}
}

/* name_add chains rule r under key. */
static void
name_add(struct name_table *t, struct rule *rules, const char *key, int r)
{
	struct name_slot *s = name_slot(t, key);

	if (s->first < 0)
		s->first = r;
	else
		rules[s->last].next = r;
	s->last = r;
}

/* addr_bytes: the address of sa and its length in bits (32 or 128), or NULL for another family. */
static const uint8_t *
addr_bytes(const struct sockaddr *sa, unsigned *bits)
{
	size_t len;
	const uint8_t *a = net_addr_bytes(sa, &len);

	*bits = (unsigned)len * 8;
	return a;
}

static void
mask_to(uint8_t out[16], const uint8_t *addr, unsigned bits, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	memset(out, 0, 16);
	memcpy(out, addr, full);
	if (rest != 0 && full < bits / 8)
		out[full] = (uint8_t)(addr[full] & (0xff << (8 - rest)));
}

static uint32_t
block_hash(int family, unsigned prefix, const uint8_t net[16])
{
	uint8_t head[2] = {(uint8_t)family, (uint8_t)prefix};

	return hash_bytes(hash_bytes(HASH_SEED, head, 2), net, 16);
}

static int
block_table_init(struct block_table *t, size_t n)
{
	size_t cap = table_slots(n);

	memset(t, 0, sizeof(*t));
	if (cap == 0)
		return 0;
	if ((t->slots = calloc(cap, sizeof(*t->slots))) == NULL ||
	    (t->next = malloc(n * sizeof(*t->next))) == NULL)
		return -1;
	t->mask = cap - 1;
	t->n = n;
	return 0;
}

static void
block_table_free(struct block_table *t)
{
	free(t->slots);
	free(t->next);
}

/*
 * block_add puts entry e (of t->n) under the block c. A block inside
 * ::ffff:0:0/96 is filed as the IPv4 block it is, where lookups of both
 * forms find it.
 */
static void
block_add(struct block_table *t, const struct config_cidr *c, int e)
{
	const struct sockaddr *sa = (const struct sockaddr *)&c->addr;
	unsigned bits, prefix = c->prefix;
	struct sockaddr_in v4;
	const struct sockaddr *as_v4 = prefix >= 96 ? net_unmap_v4(sa, &v4) : NULL;
	const uint8_t *a;
	int fam, family;
	uint8_t net[16];
	uint32_t h;
	unsigned k;

	if (as_v4 != NULL) {
		sa = as_v4;
		prefix -= 96;
	}
	family = sa->sa_family;
	if ((a = addr_bytes(sa, &bits)) == NULL)
		return;
	fam = bits == 32 ? 0 : 1;
	if (prefix > bits)
		prefix = bits;
	mask_to(net, a, bits, prefix);
	t->next[e] = -1;
	h = block_hash(family, prefix, net);
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct block_slot *s = &t->slots[i];
		if (!s->used) {
			s->used = 1;
			s->family = (uint8_t)family;
			s->prefix = (uint8_t)prefix;
			memcpy(s->net, net, 16);
			s->first = s->last = e;
			break;
		}
		if (s->family == family && s->prefix == prefix && memcmp(s->net, net, 16) == 0) {
			t->next[s->last] = e;
			s->last = e;
			return;
		}
	}
	/* A new block: keep its length in the family's list, longest first. */
	for (k = 0; k < t->n_prefixes[fam] && t->prefixes[fam][k] > prefix; k++)
		;
	if (k < t->n_prefixes[fam] && t->prefixes[fam][k] == prefix)
		return;
	memmove(&t->prefixes[fam][k + 1], &t->prefixes[fam][k], t->n_prefixes[fam] - k);
	t->prefixes[fam][k] = (uint8_t)prefix;
	t->n_prefixes[fam]++;
}

/* block_chain: the entries whose block is (sa's network at prefix), or -1. */
static int
block_chain(const struct block_table *t, int family, const uint8_t *a, unsigned bits,
	    unsigned prefix)
{
	uint8_t net[16];
	uint32_t h;

	mask_to(net, a, bits, prefix);
	h = block_hash(family, prefix, net);
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		const struct block_slot *s = &t->slots[i];
		if (!s->used)
			return -1;
		if (s->family == family && s->prefix == prefix && memcmp(s->net, net, 16) == 0)
			return s->first;
	}
}

/*
 * block_walk calls want(ctx, entry) for the entries whose block holds sa,
 * longest prefix first and in listed order among equal blocks, until it
 * returns nonzero. Returns that entry, or -1.
 */
static int
block_walk_as(const struct block_table *t, const struct sockaddr *sa,
	      int (*want)(void *ctx, int entry), void *ctx)
{
	unsigned bits;
	const uint8_t *a;
	int fam;

	if ((a = addr_bytes(sa, &bits)) == NULL)
		return -1;
	fam = bits == 32 ? 0 : 1;
	for (unsigned k = 0; k < t->n_prefixes[fam]; k++)
		for (int e = block_chain(t, sa->sa_family, a, bits, t->prefixes[fam][k]); e >= 0;
		     e = t->next[e])
			if (want == NULL || want(ctx, e))
				return e;
	return -1;
}

/*
 * An IPv4-mapped address is its IPv4 address: looked up as that alone
 * (blocks written inside ::ffff:0:0/96 were filed as IPv4 ones), so a
 * client gets one verdict in either form, and a wide IPv6 block such as
 * ::/0 means IPv6 addresses proper.
 */
static int
block_walk(const struct block_table *t, const struct sockaddr *sa,
	   int (*want)(void *ctx, int entry), void *ctx)
{
	struct sockaddr_in v4;
	const struct sockaddr *as_v4;

	if (t->slots == NULL)
		return -1;
	if ((as_v4 = net_unmap_v4(sa, &v4)) != NULL)
		sa = as_v4;
	return block_walk_as(t, sa, want, ctx);
}

static int
block_holds(const struct block_table *t, const struct sockaddr *sa)
{
	return block_walk(t, sa, NULL, NULL) >= 0;
}

static int
blocks_new(struct block_table *t, const struct config_cidr *c, size_t n)
{
	if (block_table_init(t, n) == -1)
		return -1;
	for (size_t i = 0; i < n; i++)
		block_add(t, &c[i], (int)i);
	return 0;
}

/* ---- compiling ---- */

static int
is_star(const char *pattern)
{
	return strcmp(pattern, "*") == 0;
}

static int
is_wildcard(const char *pattern)
{
	return strncmp(pattern, "*.", 2) == 0;
}

/* add_rule files rule r under its pattern's key. */
static void
add_rule(struct policy *p, const char *pattern, int r)
{
	p->rules[r].next = -1;
	if (is_star(pattern)) {
		if (p->star_first < 0)
			p->star_first = r;
		else
			p->rules[p->star_last].next = r;
		p->star_last = r;
	} else if (is_wildcard(pattern)) {
		name_add(&p->wild, p->rules, pattern + 2, r);
	} else {
		name_add(&p->exact, p->rules, pattern, r);
	}
}

static int
has_sources(const struct config_sources *src)
{
	return src->n_blocks > 0 || src->names.n > 0;
}

/*
 * source_set_add compiles src into the next set (the caller sized sets[])
 * and files its names among every source name. Returns the set's index,
 * -1 when src is empty (anyone), or -2 when out of memory.
 */
static int
source_set_add(struct policy *p, const struct config_sources *src)
{
	struct source_set *set;

	if (!has_sources(src))
		return -1;
	set = &p->sets[p->n_sets];
	if (blocks_new(&set->blocks, src->blocks, src->n_blocks) == -1 ||
	    name_table_init(&set->names, src->names.n) == -1)
		return -2;
	p->n_sets++;
	for (size_t i = 0; i < src->names.n; i++) {
		struct name_slot *all = name_slot(&p->all_names, src->names.v[i]);
		name_slot(&set->names, src->names.v[i])->first = (int)i; /* found: not -1 */
		if (all->first < 0) {
			all->first = (int)p->n_source_names;
			p->source_names[p->n_source_names++] = src->names.v[i];
		}
	}
	return (int)p->n_sets - 1;
}

/* compile_sources builds the listener's source sets: its own two, then per route and entry. */
static int
compile_sources(struct policy *p, const struct config_listener *l)
{
	size_t sets = 0, names = 0;
	int set;

	sets += has_sources(&l->sources) + has_sources(&l->client_sources);
	names += l->sources.names.n + l->client_sources.names.n;
	for (size_t i = 0; i < l->n_routes; i++) {
		sets += has_sources(&l->routes[i].sources);
		names += l->routes[i].sources.names.n;
	}
	for (size_t i = 0; i < l->n_allow; i++) {
		sets += has_sources(&l->allow[i].sources);
		names += l->allow[i].sources.names.n;
	}
	if ((sets > 0 && (p->sets = calloc(sets, sizeof(*p->sets))) == NULL) ||
	    (names > 0 && (p->source_names = calloc(names, sizeof(*p->source_names))) == NULL) ||
	    name_table_init(&p->all_names, names) == -1 ||
	    (l->n_allow > 0 && (p->allow_sets = calloc(l->n_allow, sizeof(int))) == NULL) ||
	    (l->n_routes > 0 && (p->route_sets = calloc(l->n_routes, sizeof(int))) == NULL))
		return -1;
	if ((p->peer_set = source_set_add(p, &l->sources)) == -2 ||
	    (p->client_set = source_set_add(p, &l->client_sources)) == -2)
		return -1;
	for (size_t i = 0; i < l->n_routes; i++)
		if ((set = p->route_sets[i] = source_set_add(p, &l->routes[i].sources)) == -2)
			return -1;
	for (size_t i = 0; i < l->n_allow; i++)
		if ((set = p->allow_sets[i] = source_set_add(p, &l->allow[i].sources)) == -2)
			return -1;
	return 0;
}

/*
 * compile_ancestors files every parent domain of the allow entries' names
 * ("github.com" and "com" for "api.github.com"; "pkg.test" and "test" for
 * "*.pkg.test"), which the DNS door answers with NODATA, not NXDOMAIN.
 */
static int
compile_ancestors(struct policy *p, const struct config_listener *l)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n_allow; i++)
		for (const char *c = l->allow[i].pattern; c != NULL && *c != '\0'; c++)
			n += *c == '.';
	if (name_table_init(&p->ancestors, n) == -1)
		return -1;
	for (size_t i = 0; i < l->n_allow; i++)
		for (const char *c = l->allow[i].pattern; c != NULL && *c != '\0'; c++)
			if (*c == '.' && c[1] != '\0')
				name_slot(&p->ancestors, c + 1)->first = 0; /* found: not -1 */
	return 0;
}

int
policy_name_ancestor(const struct policy *p, const char *name)
{
	if (name[0] == '\0')
		return p->conf->n_allow > 0; /* the root is everyone's */
	return name_find(&p->ancestors, name, strlen(name)) >= 0;
}

struct policy *
policy_new(const struct config_listener *l, char *err, size_t errlen)
{
	struct policy *p = calloc(1, sizeof(*p));
	size_t n = 0, n_exact = 0, n_wild = 0, n_blocks = 0;

	if (p == NULL)
		goto oom;
	p->conf = l;
	/* An egress listener: every route's addresses are guarded. */
	p->guarded = l->egress || l->n_allow > 0 || l->mode == CONFIG_MODE_CONNECT;
	p->star_first = p->star_last = -1;
	p->peer_set = p->client_set = -1;
	for (size_t i = 0; i < l->n_routes; i++) {
		p->host_route |= l->routes[i].upstream.sniffed_host;
		for (size_t j = 0; j < l->routes[i].match.n; j++, n++) {
			const char *pat = l->routes[i].match.v[j];
			n_exact += !is_star(pat) && !is_wildcard(pat);
			n_wild += is_wildcard(pat);
		}
	}
	for (size_t i = 0; i < l->n_allow; i++) {
		const char *pat = l->allow[i].pattern;
		if (pat == NULL) {
			n_blocks++;
			continue;
		}
		n++;
		n_exact += !is_star(pat) && !is_wildcard(pat);
		n_wild += is_wildcard(pat);
	}
	if ((n > 0 && (p->rules = calloc(n, sizeof(*p->rules))) == NULL) ||
	    name_table_init(&p->exact, n_exact) == -1 || name_table_init(&p->wild, n_wild) == -1 ||
	    compile_sources(p, l) == -1)
		goto oom;
	for (size_t i = 0; i < l->n_routes; i++) {
		const struct config_route *rt = &l->routes[i];
		for (size_t j = 0; j < rt->match.n; j++) {
			struct rule *r = &p->rules[p->n_rules];
			r->route = (int)i;
			r->pattern = (int)j;
			r->allow = -1;
			r->takes_ip = !p->guarded && !rt->upstream.sniffed_host;
			r->sources = p->route_sets[i];
			add_rule(p, rt->match.v[j], (int)p->n_rules++);
		}
	}
	/* The IP-literal allow entries are blocks, indexed by their allow index. */
	if (block_table_init(&p->allow_blocks, n_blocks > 0 ? l->n_allow : 0) == -1)
		goto oom;
	for (size_t i = 0; i < l->n_allow; i++) {
		const struct config_allow *a = &l->allow[i];
		struct rule *r;
		if (a->pattern == NULL) {
			block_add(&p->allow_blocks, &a->cidr, (int)i);
			continue;
		}
		r = &p->rules[p->n_rules];
		r->route = r->pattern = -1;
		r->allow = (int)i;
		r->port = a->port ? a->port : ALLOW_DEFAULT_PORT;
		r->sources = p->allow_sets[i];
		add_rule(p, a->pattern, (int)p->n_rules++);
	}
	if (compile_ancestors(p, l) == -1 ||
	    blocks_new(&p->allow_ranges, l->allow_ranges, l->n_allow_ranges) == -1 ||
	    blocks_new(&p->deny_ranges, l->deny_ranges, l->n_deny_ranges) == -1 ||
	    blocks_new(&p->proxy_trusted, l->proxy.trusted, l->proxy.n_trusted) == -1 ||
	    blocks_new(&p->http_trusted, l->http.trusted, l->http.n_trusted) == -1)
		goto oom;
	return p;
oom:
	policy_free(p);
	snprintf(err, errlen, "out of memory compiling the policy of listener '%s'",
		 l->name ? l->name : "?");
	return NULL;
}

void
policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	free(p->rules);
	free(p->exact.slots);
	free(p->wild.slots);
	block_table_free(&p->allow_blocks);
	block_table_free(&p->allow_ranges);
	block_table_free(&p->deny_ranges);
	block_table_free(&p->proxy_trusted);
	block_table_free(&p->http_trusted);
	for (size_t i = 0; i < p->n_sets; i++) {
		block_table_free(&p->sets[i].blocks);
		free(p->sets[i].names.slots);
	}
	free(p->sets);
	free(p->all_names.slots);
	free(p->ancestors.slots);
	free(p->source_names);
	free(p->route_sets);
	free(p->allow_sets);
	free(p);
}

/* ---- sources ---- */

struct set_query {
	const struct source_set *set;
	const struct policy_names *names;
};

static int
name_in_set(void *ctx, int pair)
{
	const struct set_query *sq = ctx;
	const char *name = sq->names->name[pair];

	return name_find(&sq->set->names, name, strlen(name)) >= 0;
}

/* in_set: is the source one of set's blocks, or an address one of its names has now? */
static int
in_set(const struct policy *p, int set, const struct policy_source *src)
{
	struct set_query sq;

	if (set < 0)
		return 1;
	if (src == NULL || src->addr == NULL)
		return 0;
	sq.set = &p->sets[set];
	sq.names = src->names;
	if (block_holds(&sq.set->blocks, src->addr))
		return 1;
	return sq.set->names.slots != NULL && sq.names != NULL &&
	       block_walk(&sq.names->addrs, src->addr, name_in_set, &sq) >= 0;
}

int
policy_peer_admitted(const struct policy *p, const struct policy_source *peer)
{
	return in_set(p, p->peer_set, peer);
}

int
policy_client_admitted(const struct policy *p, const struct policy_source *client)
{
	return in_set(p, p->client_set, client);
}

size_t
policy_source_names(const struct policy *p, const char *const **names)
{
	*names = p->source_names;
	return p->n_source_names;
}

struct policy_names *
policy_names_new(const struct policy_name_addr *pairs, size_t n)
{
	struct policy_names *pn = calloc(1, sizeof(*pn));

	if (pn == NULL || block_table_init(&pn->addrs, n) == -1 ||
	    (n > 0 && (pn->name = calloc(n, sizeof(*pn->name))) == NULL)) {
		policy_names_free(pn);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		struct config_cidr c;
		socklen_t len = pairs[i].addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
								    : sizeof(struct sockaddr_in6);
		memset(&c, 0, sizeof(c));
		memcpy(&c.addr, pairs[i].addr, len);
		c.prefix = pairs[i].addr->sa_family == AF_INET ? 32 : 128;
		pn->name[i] = pairs[i].name;
		block_add(&pn->addrs, &c, (int)i);
	}
	return pn;
}

void
policy_names_free(struct policy_names *pn)
{
	if (pn == NULL)
		return;
	block_table_free(&pn->addrs);
	free(pn->name);
	free(pn);
}

/* ---- routing ---- */

/* A query under way: what the rules are asked. */
struct query {
	const struct policy *p;
	const char *name;
	uint16_t want_port;
	int literal; /* name is an IP literal */
	const struct policy_source *src;
	int any_source;	       /* report mode's second look: sources do not matter */
	uint16_t port_refused; /* a rule matched the name but not want_port */
	int source_refused;    /* a rule matched the name but not the client */
};

/*
 * applies: does rule r decide this query? A rule for other clients or
 * another port is noted and passed over.
 */
static int
applies(struct query *q, const struct rule *r)
{
	if (q->name == NULL && r->route < 0)
		return 0; /* only a route "*" takes a nameless client */
	if (q->literal && r->route < 0)
		return 0; /* an IP literal matches allow blocks, never allow patterns */
	if (!q->any_source && !in_set(q->p, r->sources, q->src)) {
		q->source_refused = 1;
		return 0;
	}
	if (r->allow >= 0 && q->want_port != 0 && q->want_port != r->port) {
		q->port_refused = q->want_port;
		return 0;
	}
	return 1;
}

static int
first_applying(struct query *q, int r)
{
	for (; r >= 0; r = q->p->rules[r].next)
		if (applies(q, &q->p->rules[r]))
			return r;
	return -1;
}

static int
star_applying(struct query *q)
{
	for (int r = q->p->star_first; r >= 0; r = q->p->rules[r].next)
		if ((!q->literal || q->p->rules[r].takes_ip) && applies(q, &q->p->rules[r]))
			return r;
	return -1;
}

/* wildcard_applying: the rule of the longest "*.suffix" of name that applies, or -1. */
static int
wildcard_applying(struct query *q)
{
	for (const char *dot = strchr(q->name, '.'); dot != NULL; dot = strchr(dot + 1, '.')) {
		int r = first_applying(q, name_find(&q->p->wild, dot + 1, strlen(dot + 1)));
		if (r >= 0)
			return r;
	}
	return -1;
}

static int
block_port_ok(void *ctx, int entry)
{
	struct query *q = ctx;
	const struct config_allow *a = &q->p->conf->allow[entry];

	if (!q->any_source && !in_set(q->p, q->p->allow_sets[entry], q->src)) {
		q->source_refused = 1;
		return 0;
	}
	if (q->want_port != 0 && q->want_port != (a->port ? a->port : ALLOW_DEFAULT_PORT)) {
		q->port_refused = q->want_port;
		return 0;
	}
	return 1;
}

/* match finds the rule for q: sets v's route, pattern and allow. */
static void
match(struct query *q, struct policy_verdict *v)
{
	const struct policy *p = q->p;
	int r = -1;

	if (q->name == NULL) {
		r = star_applying(q);
	} else if (q->literal) {
		struct sockaddr_storage ss;
		socklen_t len;
		int a = -1;
		/* An allow block naming the address ranks above every pattern. */
		if (net_parse_ip(q->name, 0, &ss, &len) == 0)
			a = block_walk(&p->allow_blocks, (struct sockaddr *)&ss, block_port_ok, q);
		if (a >= 0) {
			v->matched = 1;
			v->allow = a;
			return;
		}
		if ((r = first_applying(q, name_find(&p->exact, q->name, strlen(q->name)))) < 0)
			r = star_applying(q);
	} else if ((r = first_applying(q, name_find(&p->exact, q->name, strlen(q->name)))) < 0 &&
		   (r = wildcard_applying(q)) < 0) {
		r = star_applying(q);
	}
	if (r < 0)
		return;
	v->matched = 1;
	v->route = p->rules[r].route;
	v->pattern = p->rules[r].pattern;
	v->allow = p->rules[r].allow;
}

static int
refuse(struct policy_verdict *v, enum reason why)
{
	v->refusal = why;
	return -1;
}

/* admitted_port: the port a "$host" target dials: asked for, else 'port', else the listen port. */
static uint16_t
admitted_port(const struct policy *p, uint16_t want_port, uint16_t listen_port)
{
	return want_port ? want_port : p->conf->port ? (uint16_t)p->conf->port : listen_port;
}

/* decide is policy_route as enforced; any_source: every rule applies to this client. */
static int
decide(const struct policy *p, const char *name, uint16_t want_port, uint16_t listen_port,
       const struct policy_source *src, int any_source, struct policy_verdict *v)
{
	const struct config_listener *c = p->conf;
	struct query q = {p,   name,	   want_port, name != NULL && route_name_is_ip(name),
			  src, any_source, 0,	      0};

	memset(v, 0, sizeof(*v));
	v->route = v->pattern = v->allow = -1;
	v->would_deny = REASON_NONE;
	v->literal = q.literal;
	match(&q, v);
	v->port_refused = v->allow < 0 ? q.port_refused : 0;
	if (v->allow >= 0) {
		v->allow_target.host = "$host";
		v->allow_target.sniffed_host = 1;
		v->allow_target.port = admitted_port(p, want_port, listen_port);
		v->target = &v->allow_target;
	} else {
		v->target = v->route >= 0	       ? &c->routes[v->route].upstream
			    : c->upstream.host != NULL ? &c->upstream
						       : NULL;
	}
	v->source_refused = v->target == NULL && q.source_refused;
	if (v->source_refused)
		return refuse(v, REASON_SOURCE_DENIED);
	if (v->target == NULL)
		return refuse(v, c->n_allow > 0 || c->mode == CONFIG_MODE_CONNECT ||
					 (c->upstream.host == NULL && c->n_routes == 0) ||
					 (q.literal && p->host_route)
				     ? REASON_NOT_ALLOWED
				 : name ? REASON_NO_ROUTE
					: REASON_NO_NAME);
	/* Refused with a target: it still names the port the client was refused for. */
	if (v->target->sniffed_host && name == NULL)
		return refuse(v, REASON_NO_NAME);
	/* A "$host" catch-all is for names: only a rule naming an address admits it. */
	if (v->target == &c->upstream && c->upstream.sniffed_host && q.literal)
		return refuse(v, REASON_NOT_ALLOWED);
	v->guarded = p->guarded || v->target->sniffed_host;
	return 0;
}

int
policy_route(const struct policy *p, const char *name, uint16_t want_port, uint16_t listen_port,
	     const struct policy_source *src, struct policy_verdict *v)
{
	enum reason refusal;
	int rc = decide(p, name, want_port, listen_port, src, 0, v);

	if (rc == 0 || !p->conf->report || name == NULL)
		return rc;
	refusal = v->refusal;
	if (refusal == REASON_SOURCE_DENIED &&
	    decide(p, name, want_port, listen_port, src, 1, v) == 0) {
		/* Report mode: as if the rule applied to this client too. */
		v->would_deny = refusal;
		return 0;
	}
	if (refusal != REASON_NOT_ALLOWED && refusal != REASON_SOURCE_DENIED)
		return -1;
	/* Report mode: on to the name asked for, through the address guard like any egress. */
	memset(v, 0, sizeof(*v));
	v->route = v->pattern = v->allow = -1;
	v->literal = route_name_is_ip(name);
	v->allow_target.host = "$host";
	v->allow_target.sniffed_host = 1;
	v->allow_target.port = admitted_port(p, want_port, listen_port);
	v->target = &v->allow_target;
	v->guarded = 1;
	v->would_deny = refusal;
	return 0;
}

void
policy_rule(const struct policy *p, const struct policy_verdict *v, char *buf, size_t len)
{
	const struct config_listener *c = p->conf;
	char abuf[NET_ADDRSTRLEN];
	const struct config_allow *a;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (v->route >= 0 && v->pattern >= 0) {
		snprintf(buf, len, "%s", c->routes[v->route].match.v[v->pattern]);
		return;
	}
	if (v->allow < 0)
		return;
	a = &c->allow[v->allow];
	if (a->pattern != NULL)
		snprintf(buf, len, "%s", a->pattern);
	else
		snprintf(
		    buf, len, "%s/%u",
		    net_addr_format((const struct sockaddr *)&a->cidr.addr, abuf, sizeof(abuf)),
		    a->cidr.prefix);
	if (a->port != 0 && strlen(buf) < len)
		snprintf(buf + strlen(buf), len - strlen(buf), ":%u", a->port);
}

/* ---- the address guard ---- */

const char *
policy_guard(const struct policy *p, const struct sockaddr *sa, int literal)
{
	struct sockaddr_storage v4[ROUTE_EMBEDDED_MAX];
	const char *class;

	if (p->deny_ranges.n > 0) {
		size_t n = route_addr_embedded_v4(sa, v4);
		if (block_holds(&p->deny_ranges, sa))
			return "in deny_ranges";
		/* An IPv4 block also denies that address written inside IPv6. */
		for (size_t i = 0; i < n; i++)
			if (block_holds(&p->deny_ranges, (struct sockaddr *)&v4[i]))
				return "in deny_ranges";
	}
	if (block_holds(&p->allow_ranges, sa))
		return NULL;
	if ((class = route_addr_class(sa)) == NULL)
		return NULL;
	if (literal && block_holds(&p->allow_blocks, sa))
		return NULL;
	return class;
}

/* ---- trust and credentials ---- */

int
policy_proxy_trusted(const struct policy *p, const struct sockaddr *peer)
{
	return p->proxy_trusted.n == 0 || block_holds(&p->proxy_trusted, peer);
}

int
policy_forwarding_trusted(const struct policy *p, const struct sockaddr *peer)
{
	return block_holds(&p->http_trusted, peer);
}

/* creds_match compares a Basic credential with each configured one, in constant time each. */
static int
creds_match(const struct config_strlist *creds, const char *v, size_t vlen)
{
	int found = 0;

	for (size_t i = 0; i < creds->n; i++) {
		const char *c = creds->v[i];
		size_t clen = strlen(c);
		unsigned diff = clen != vlen;
		for (size_t j = 0; j < clen && j < vlen; j++)
			diff |= (unsigned)(c[j] ^ v[j]);
		found |= diff == 0;
	}
	return found;
}

int
policy_proxy_credentials(const struct policy *p, const char *v, size_t vlen, enum reason *why)
{
	const struct config_strlist *creds = &p->conf->proxy_auth_b64;

	if (creds->n == 0)
		return 0;
	*why = REASON_AUTH_FAILED;
	if (vlen == 0) {
		*why = REASON_AUTH_REQUIRED;
		return -1;
	}
	if (vlen < 6 || strncasecmp(v, "basic ", 6) != 0)
		return -1;
	for (v += 6, vlen -= 6; vlen > 0 && *v == ' '; v++, vlen--)
		;
	return creds_match(creds, v, vlen) ? 0 : -1;
}

int
policy_proxy_request(const struct policy *p, const struct sniff_http_request *req,
		     const uint8_t *head, enum reason *why)
{
	if (req->form == SNIFF_HTTP_ASTERISK) {
		*why = REASON_BAD_METHOD;
		return -1;
	}
	if (req->form == SNIFF_HTTP_ORIGIN) {
		*why = REASON_NOT_PROXY_REQUEST;
		return -1;
	}
	return policy_proxy_credentials(p, (const char *)head + req->proxy_auth_off,
					req->proxy_auth_len, why);
}
