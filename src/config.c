/*
 * config.c: the configuration model, its defaults and its validation.
 *
 * A config starts holding every default of the key table (config_keys.c),
 * is filled by the YAML reader (config_yaml.c) or by quick mode
 * (config_quick.c), and is then checked here by config_validate, one
 * function for both: what no single key can check (required keys, how a
 * listener's mode, routes and allowlist fit together, unique names and
 * addresses) is checked once, with the same messages, wherever the
 * settings came from. Every error is reported and counted; a config that
 * had any is freed by its loader, never used.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "config_impl.h"
#include "net.h"
#include "policy.h"

void
report_verror(struct report *r, int line, int col, const char *fmt, va_list ap)
{
	if (line > 0)
		fprintf(r->out, "%s:%d:%d: ", r->name, line, col);
	else
		fprintf(r->out, "%s: ", r->name);
	vfprintf(r->out, fmt, ap);
	fputc('\n', r->out);
	r->errors++;
}

void
report_error(struct report *r, int line, int col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report_verror(r, line, col, fmt, ap);
	va_end(ap);
}

const char *
config_mode_name(enum config_mode mode)
{
	return config_mode_names[mode];
}

int
config_cidr_contains(const struct config_cidr *c, const struct sockaddr *sa)
{
	const unsigned char *a, *b;
	unsigned bits = c->prefix, full, rest;

	if (sa->sa_family != c->addr.ss_family)
		return 0;
	if (sa->sa_family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)
			->sin_addr;
		b = (const unsigned char *)&((const struct sockaddr_in *)&c->addr)->sin_addr;
	} else {
		a = (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)
			->sin6_addr;
		b = (const unsigned char *)&((const struct sockaddr_in6 *)&c->addr)->sin6_addr;
	}
	full = bits / 8;
	rest = bits % 8;
	if (memcmp(a, b, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ b[full]) & (0xff << (8 - rest))) == 0;
}

/* ---- the model and its defaults ---- */

struct config *
config_new(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (cfg == NULL)
		return NULL;
	cfg->refs = 1;
	if (key_defaults(config_top_keys, cfg) == -1) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

struct config_listener *
config_add_listener(struct config *cfg)
{
	struct config_listener *grown, *l;

	grown = realloc(cfg->listeners, (cfg->n_listeners + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	cfg->listeners = grown;
	l = &grown[cfg->n_listeners++];
	memset(l, 0, sizeof(*l));
	if (key_defaults(config_listener_keys, l) == -1)
		return NULL;
	return l;
}

struct config_route *
config_add_route(struct config_listener *l)
{
	struct config_route *grown, *r;

	grown = realloc(l->routes, (l->n_routes + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	l->routes = grown;
	r = &grown[l->n_routes++];
	memset(r, 0, sizeof(*r));
	if (key_defaults(config_route_keys, r) == -1)
		return NULL;
	return r;
}

struct config_allow *
config_add_allow(struct config_listener *l)
{
	struct config_allow *grown = realloc(l->allow, (l->n_allow + 1) * sizeof(*grown));

	if (grown == NULL)
		return NULL;
	l->allow = grown;
	memset(&grown[l->n_allow], 0, sizeof(grown[0]));
	return &grown[l->n_allow++];
}

void
config_sources_clear(struct config_sources *s)
{
	free(s->blocks);
	s->blocks = NULL;
	s->n_blocks = 0;
	config_strlist_clear(&s->names);
}

void
config_allow_clear(struct config_allow *a)
{
	free(a->pattern);
	a->pattern = NULL;
	config_sources_clear(&a->sources);
}

/* inherit gives each KF_INHERIT key of l that is still unset its value from 'defaults'. */
static void
inherit(struct config *cfg, struct config_listener *l)
{
	for (const struct key *k = config_listener_keys; k->name != NULL; k++) {
		const struct key *d;
		void *dst = (char *)l + k->off;

		if (!(k->flags & KF_INHERIT) ||
		    (d = key_find(config_defaults_keys, k->name)) == NULL)
			continue;
		if (k->type == K_ENUM || k->type == K_BOOL) {
			if (*(int *)dst == CONFIG_UNSET)
				*(int *)dst = *(int *)((char *)cfg + d->off);
		} else if (*(int64_t *)dst == CONFIG_UNSET) {
			*(int64_t *)dst = *(int64_t *)((char *)cfg + d->off);
		}
	}
}

/* ---- validation ---- */

#define KEY_BIT(name) key_bit(config_listener_keys, (name))

/* base64 writes the standard base64 form of s, as HTTP Basic credentials carry it. */
static char *
base64(const char *s)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(s), o = 0;
	char *out = malloc((n + 2) / 3 * 4 + 1);

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned char)s[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)s[i + 2];
		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? tab[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

/*
 * missing reports a required listener key that is absent. In quick mode
 * the message goes on to say which option and variable give it.
 */
static void
missing(struct report *r, const struct config_listener *l, size_t i, const char *name,
	const char *alt)
{
	const struct key *k = key_find(config_listener_keys, name);

	if (r->quick && k != NULL && k->opt.flag != NULL)
		report_error(r, l->line, l->col,
			     "listeners[%zu]: missing required key '%s'%s; give --%s or %s", i,
			     name, alt, k->opt.flag, k->opt.env);
	else
		report_error(r, l->line, l->col, "listeners[%zu]: missing required key '%s'%s", i,
			     name, alt);
}

/* validate_routing checks how a listener's mode, routes and PROXY settings fit together. */
static void
validate_routing(const struct config_listener *l, size_t i, struct report *r)
{
	int line = l->line, col = l->col;

	if (l->mode == CONFIG_MODE_TCP) {
		if (l->n_routes > 0)
			report_error(r, line, col,
				     "listeners[%zu]: 'routes' need mode tls or http "
				     "(mode tcp reads no name to route on)",
				     i);
		if (l->upstream.host && l->upstream.sniffed_host)
			report_error(r, line, col,
				     "listeners[%zu]: upstream '$host:%u' needs mode "
				     "tls or http",
				     i, l->upstream.port);
	}
	if (l->n_allow > 0 && l->mode == CONFIG_MODE_TCP)
		report_error(r, line, col,
			     "listeners[%zu]: 'allow' needs mode tls, http or "
			     "connect (a tcp tunnel takes 'upstream' and 'egress: true')",
			     i);
	if (l->mode == CONFIG_MODE_CONNECT) {
		if (l->n_allow == 0 && !(l->seen & KEY_BIT("allow")))
			report_error(r, line, col,
				     "listeners[%zu]: mode connect needs an 'allow' "
				     "list",
				     i);
		if (l->n_routes > 0 || l->upstream.host != NULL)
			report_error(r, line, col,
				     "listeners[%zu]: mode connect takes 'allow', not "
				     "'routes' or 'upstream'",
				     i);
	} else {
		for (size_t j = 0; j < l->n_allow; j++)
			if (l->allow[j].port != 0)
				report_error(r, line, col,
					     "listeners[%zu]: allow entries carry "
					     "ports only in mode connect (use 'port' for "
					     "the upstream port)",
					     i);
		if (l->proxy_auth.n > 0)
			report_error(r, line, col,
				     "listeners[%zu]: 'proxy_auth' needs mode connect", i);
	}
	if (l->port != 0 && l->n_allow == 0)
		report_error(r, line, col, "listeners[%zu]: 'port' applies to 'allow' entries only",
			     i);
	if (l->proxy.n_trusted > 0 && !l->proxy.accept)
		report_error(r, line, col,
			     "listeners[%zu]: proxy_protocol.trusted has no effect "
			     "without 'accept: true'",
			     i);
	for (size_t j = 0; j < l->n_routes; j++) {
		const struct config_route *rt = &l->routes[j];

		if (rt->match.n == 0 && !(rt->seen & key_bit(config_route_keys, "match")))
			report_error(r, rt->line, rt->col,
				     "listeners[%zu].routes[%zu]: missing "
				     "required key 'match'",
				     i, j);
		if (rt->upstream.host == NULL &&
		    !(rt->seen & key_bit(config_route_keys, "upstream")))
			report_error(r, rt->line, rt->col,
				     "listeners[%zu].routes[%zu]: missing "
				     "required key 'upstream'",
				     i, j);
	}
}

/* validate_door checks a dns listener: names to answer, and nothing to relay. */
static void
validate_door(struct config_listener *l, size_t i, struct report *r)
{
	int line = l->line, col = l->col;

	if (l->mode != CONFIG_MODE_DNS) {
		for (const struct key *k = config_listener_keys; k->name != NULL; k++)
			if ((k->flags & KF_MODE_DNS) && (l->seen & KEY_BIT(k->name)) &&
			    l->seen != ~0u)
				report_error(r, line, col,
					     "listeners[%zu]: '%s' needs mode dns (mode is %s)", i,
					     k->name, config_mode_names[l->mode]);
		return;
	}
	if (l->n_allow == 0 && !(l->seen & KEY_BIT("allow")))
		report_error(
		    r, line, col,
		    "listeners[%zu]: mode dns needs an 'allow' list (the names it answers)", i);
	if (l->upstream.host != NULL || l->n_routes > 0)
		report_error(
		    r, line, col,
		    "listeners[%zu]: mode dns answers from 'allow'; it takes no 'upstream' "
		    "or 'routes'",
		    i);
	if (l->proxy.accept || l->proxy.send != CONFIG_PROXY_NONE)
		report_error(r, line, col, "listeners[%zu]: mode dns takes no 'proxy_protocol'", i);
	for (size_t j = 0; j < l->n_allow; j++)
		if (l->allow[j].pattern == NULL)
			report_error(r, line, col,
				     "listeners[%zu]: allow entries of mode dns are names or "
				     "*.suffix patterns, not addresses",
				     i);
	for (size_t j = 0; j < l->n_answer; j++) {
		const struct config_cidr *c = &l->answer[j];
		if (c->prefix != (c->addr.ss_family == AF_INET ? 32u : 128u))
			report_error(r, line, col,
				     "listeners[%zu]: 'answer' takes addresses, not blocks", i);
	}
	/* A DNS client keeps a TCP connection open for a few queries, not minutes. */
	if (!(l->seen & KEY_BIT("idle_timeout")))
		l->idle_timeout = 10000;
}

/* validate_sections checks the sections that apply to one mode only. */
static void
validate_sections(const struct config_listener *l, size_t i, struct report *r)
{
	/* (seen is all ones for an item that was not a mapping: nothing to add then.) */
	if (l->seen == ~0u)
		return;
	for (const struct key *k = config_listener_keys; k->name != NULL; k++)
		if ((k->flags & KF_MODE_HTTP) && (l->seen & KEY_BIT(k->name)) &&
		    l->mode != CONFIG_MODE_HTTP)
			report_error(r, l->line, l->col,
				     "listeners[%zu]: '%s' settings need mode "
				     "http (mode is %s)",
				     i, k->name, config_mode_names[l->mode]);
}

/* validate_unique checks listener i against the ones before it. */
static void
validate_unique(const struct config *cfg, size_t i, struct report *r)
{
	const struct config_listener *l = &cfg->listeners[i];

	for (size_t j = 0; j < i; j++) {
		const struct config_listener *o = &cfg->listeners[j];
		if (l->name && o->name && strcmp(l->name, o->name) == 0)
			report_error(r, l->line, l->col,
				     "listeners[%zu]: duplicate name '%s' "
				     "(listeners[%zu] has it already)",
				     i, l->name, j);
		if (l->listen.len && o->listen.len &&
		    net_sockaddr_equal((const struct sockaddr *)&l->listen.ss,
				       (const struct sockaddr *)&o->listen.ss) &&
		    ((const struct sockaddr_in *)&l->listen.ss)->sin_port != 0)
			report_error(r, l->line, l->col,
				     "listeners[%zu]: duplicate listen address "
				     "(listeners[%zu] has it already)",
				     i, j);
	}
}

/*
 * compile_policies builds each listener's policy once the model is whole
 * and valid (the policy points into it, and the listeners no longer move).
 */
static void
compile_policies(struct config *cfg, struct report *r)
{
	char err[128];

	for (size_t i = 0; i < cfg->n_listeners && r->errors == 0; i++) {
		struct config_listener *l = &cfg->listeners[i];
		if ((l->policy = policy_new(l, err, sizeof(err))) == NULL)
			report_error(r, l->line, l->col, "%s", err);
	}
}

void
config_validate(struct config *cfg, struct report *r, const struct config_where *w)
{
	if (cfg->resolver.min_ttl > cfg->resolver.refresh)
		report_error(r, w->min_ttl_line, w->min_ttl_col,
			     "resolver: min_ttl must not exceed refresh");
	if (cfg->n_listeners == 0 && !w->listeners_reported)
		report_error(r, 0, 0, "no listeners defined (add a 'listeners:' list)");
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct config_listener *l = &cfg->listeners[i];

		inherit(cfg, l);
		validate_routing(l, i, r);
		validate_sections(l, i, r);
		validate_door(l, i, r);
		for (size_t j = 0; j < l->proxy_auth.n; j++) {
			char *b = base64(l->proxy_auth.v[j]);
			if (b == NULL || config_strlist_add(&l->proxy_auth_b64, b) == -1)
				report_error(r, l->line, l->col, "out of memory");
			free(b);
		}
		/* A key that was present but invalid has been reported already. */
		if (l->name == NULL && !(l->seen & KEY_BIT("name")))
			missing(r, l, i, "name", "");
		if (l->listen.len == 0 && !(l->seen & KEY_BIT("listen")))
			missing(r, l, i, "listen", "");
		if (l->upstream.host == NULL && l->n_routes == 0 && l->n_allow == 0 &&
		    l->mode != CONFIG_MODE_CONNECT && l->mode != CONFIG_MODE_DNS &&
		    !(l->seen & (KEY_BIT("upstream") | KEY_BIT("routes") | KEY_BIT("allow"))))
			missing(r, l, i, "upstream",
				l->mode == CONFIG_MODE_TCP ? "" : " (or 'routes')");
		validate_unique(cfg, i, r);
	}
	compile_policies(cfg, r);
}

/* ---- references and free ---- */

struct config *
config_ref(struct config *cfg)
{
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

void
config_unref(struct config *cfg)
{
	if (cfg != NULL && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct config_listener *l = &cfg->listeners[i];
		policy_free(l->policy);
		for (size_t j = 0; j < l->n_routes; j++) {
			config_strlist_clear(&l->routes[j].match);
			config_sources_clear(&l->routes[j].sources);
			free(l->routes[j].upstream.host);
		}
		free(l->routes);
		free(l->proxy.trusted);
		for (size_t j = 0; j < l->n_allow; j++)
			config_allow_clear(&l->allow[j]);
		free(l->allow);
		config_sources_clear(&l->sources);
		config_sources_clear(&l->client_sources);
		free(l->allow_ranges);
		free(l->answer);
		free(l->deny_ranges);
		free(l->http.trusted);
		config_strlist_clear(&l->proxy_auth);
		config_strlist_clear(&l->proxy_auth_b64);
		free(l->name);
		free(l->upstream.host);
	}
	free(cfg->listeners);
	config_strlist_clear(&cfg->resolver.nameservers);
	free(cfg->user);
	free(cfg->group);
	free(cfg->path);
	free(cfg);
}
