/*
 * config_dump.c: a config -> YAML text (-T), by walking the key table.
 *
 * Every entry of the table is written in table order with its value in
 * full, defaults and inherited values included, in a form the YAML reader
 * reads back to the same config (strings quoted and escaped, "${" written
 * "$${"), so loading a dump and dumping it again gives the same text. An
 * entry flagged KF_OMIT_UNSET is left out while it is unset; a section
 * whose keys are all left out, or that belongs to another mode, is left
 * out whole. Passwords are never printed.
 */
#include <inttypes.h>
#include <string.h>
#include <netinet/in.h>

#include "config_impl.h"
#include "net.h"

/*
 * dump_chars writes n bytes of s as the inside of a double-quoted YAML
 * string, safe for any name. A "${" is written "$${", so that loading the
 * dump gives the text back instead of expanding it.
 */
static void
dump_chars(FILE *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else if (c == '$' && i + 1 < n && s[i + 1] == '{')
			fputs("$$", out);
		else
			fputc(c, out);
	}
}

static void
dump_string(FILE *out, const char *s)
{
	fputc('"', out);
	dump_chars(out, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
	fputc('"', out);
}

static void
dump_cidr(FILE *out, const struct config_cidr *c)
{
	char abuf[NET_ADDRSTRLEN];

	fprintf(out, "\"%s/%u\"",
		net_addr_format((const struct sockaddr *)&c->addr, abuf, sizeof(abuf)), c->prefix);
}

/* An address block with a port needs brackets for IPv6: "[::1/128]:443". */
/* dump_sources writes a source set in flow style: [blocks..., names...]. */
static void
dump_sources(FILE *out, const struct config_sources *src)
{
	fputc('[', out);
	for (size_t i = 0; i < src->n_blocks; i++) {
		fprintf(out, "%s", i ? ", " : "");
		dump_cidr(out, &src->blocks[i]);
	}
	for (size_t i = 0; i < src->names.n; i++) {
		fprintf(out, "%s", i || src->n_blocks ? ", " : "");
		dump_string(out, src->names.v[i]);
	}
	fputc(']', out);
}

static void dump_allow_match(FILE *out, const struct config_allow *a);

/* dump_allow writes an entry as a string, or in the mapping form when it has sources. */
static void
dump_allow(FILE *out, const struct config_allow *a)
{
	if (a->sources.n_blocks == 0 && a->sources.names.n == 0) {
		dump_allow_match(out, a);
		return;
	}
	fprintf(out, "{match: ");
	dump_allow_match(out, a);
	fprintf(out, ", sources: ");
	dump_sources(out, &a->sources);
	fputc('}', out);
}

static void
dump_allow_match(FILE *out, const struct config_allow *a)
{
	char abuf[NET_ADDRSTRLEN];
	int v6 = a->cidr.addr.ss_family == AF_INET6;

	if (a->pattern != NULL && a->port != 0) {
		fprintf(out, "\"%s:%u\"", a->pattern, a->port);
		return;
	}
	if (a->pattern != NULL) {
		dump_string(out, a->pattern);
		return;
	}
	net_addr_format((const struct sockaddr *)&a->cidr.addr, abuf, sizeof(abuf));
	if (a->port == 0)
		fprintf(out, "\"%s/%u\"", abuf, a->cidr.prefix);
	else
		fprintf(out, "\"%s%s/%u%s:%u\"", v6 ? "[" : "", abuf, a->cidr.prefix, v6 ? "]" : "",
			a->port);
}

/* dump_credential writes "user:***": passwords are not printed. */
static void
dump_credential(FILE *out, const char *cred)
{
	fputc('"', out);
	dump_chars(out, cred, (size_t)(strchr(cred, ':') - cred));
	fprintf(out, ":***\"");
}

static size_t
count_of(const struct key *k, const void *base)
{
	if (k->type == K_CIDRLIST || k->type == K_ALLOWLIST)
		return *(const size_t *)((const char *)base + k->n_off);
	if (k->type == K_ROUTES)
		return ((const struct config_listener *)base)->n_routes;
	if (k->type == K_SOURCES) {
		const struct config_sources *src =
		    (const struct config_sources *)(const void *)((const char *)base + k->off);
		return src->n_blocks + src->names.n;
	}
	return ((const struct config_strlist *)((const char *)base + k->off))->n;
}

/* is_unset: k holds nothing on base (no value, an empty list, false or 0). */
static int
is_unset(const struct key *k, const void *base)
{
	const void *v = (const char *)base + k->off;

	switch (k->type) {
	case K_STRING:
		return *(char *const *)v == NULL;
	case K_LISTEN:
		return ((const struct config_addr *)v)->len == 0;
	case K_UPSTREAM:
		return ((const struct config_hostport *)v)->host == NULL;
	case K_BOOL:
		return *(const int *)v == 0;
	case K_ENUM:
		return *(const int *)v < 0;
	case K_COUNT:
		return *(const int64_t *)v == 0;
	case K_SECTION:
	case K_LISTENERS:
		return 0;
	default:
		return count_of(k, base) == 0;
	}
}

static int
omitted(const struct key *k, const void *base, const struct config_listener *l)
{
	if (k->type == K_SECTION) {
		if ((k->flags & KF_MODE_HTTP) && (l == NULL || l->mode != CONFIG_MODE_HTTP))
			return 1;
		for (const struct key *s = k->sub; s->name != NULL; s++)
			if (!omitted(s, base, l))
				return 0;
		return 1;
	}
	if ((k->flags & KF_MODE_DNS) && (l == NULL || l->mode != CONFIG_MODE_DNS))
		return 1;
	/* An empty allowlist that is all the listener routes by denies everything: keep it said. */
	if ((k->flags & KF_CONNECT_ALL) && l != NULL &&
	    (l->mode == CONFIG_MODE_CONNECT || l->mode == CONFIG_MODE_DNS ||
	     (l->upstream.host == NULL && l->n_routes == 0)))
		return 0;
	return (k->flags & KF_OMIT_UNSET) && is_unset(k, base);
}

/* dump_list writes a list value in flow style: [a, b]. */
static void
dump_list(FILE *out, const struct key *k, const void *base)
{
	const void *v = (const char *)base + k->off;
	size_t n = count_of(k, base);

	fputc('[', out);
	for (size_t i = 0; i < n; i++) {
		fprintf(out, "%s", i ? ", " : "");
		if (k->type == K_CIDRLIST)
			dump_cidr(out, &(*(struct config_cidr *const *)v)[i]);
		else if (k->type == K_ALLOWLIST)
			dump_allow(out, &(*(struct config_allow *const *)v)[i]);
		else if (k->type == K_CREDENTIALS)
			dump_credential(out, ((const struct config_strlist *)v)->v[i]);
		else
			dump_string(out, ((const struct config_strlist *)v)->v[i]);
	}
	fputc(']', out);
}

/* dump_scalar writes the value of a single-value entry. */
static void
dump_scalar(FILE *out, const struct key *k, const void *base)
{
	const void *v = (const char *)base + k->off;
	char buf[NET_ADDRSTRLEN];
	int64_t n;

	switch (k->type) {
	case K_STRING:
		dump_string(out, *(char *const *)v);
		break;
	case K_DURATION:
		fputs(config_format_duration(*(const int64_t *)v, buf, sizeof(buf)), out);
		break;
	case K_WORKERS:
		if (*(const int64_t *)v == 0) {
			fputs("auto", out);
			break;
		}
		/* FALLTHROUGH */
	case K_COUNT:
		fprintf(out, "%" PRId64, *(const int64_t *)v);
		break;
	case K_SIZE:
		n = *(const int64_t *)v;
		if (n % 1024 == 0)
			fprintf(out, "%" PRId64 "k", n / 1024);
		else
			fprintf(out, "%" PRId64, n);
		break;
	case K_ENUM:
		fputs(k->choices[*(const int *)v], out);
		break;
	case K_BOOL:
		fputs(*(const int *)v ? "true" : "false", out);
		break;
	case K_LISTEN:
		fprintf(out, "\"%s\"",
			net_format((const struct sockaddr *)&((const struct config_addr *)v)->ss,
				   buf, sizeof(buf)));
		break;
	case K_UPSTREAM: {
		const struct config_hostport *hp = v;
		int v6 = strchr(hp->host, ':') != NULL;
		fprintf(out, "\"%s%s%s:%u\"", v6 ? "[" : "", hp->host, v6 ? "]" : "", hp->port);
		break;
	}
	case K_SOURCES:
		dump_sources(out, v);
		break;
	default:
		dump_list(out, k, base);
		break;
	}
}

static void dump_mapping(FILE *out, const struct key *table, const void *base, int indent, int dash,
			 const struct config *cfg, const struct config_listener *l);

/* dump_items writes the listeners, or a listener's routes, one list item each. */
static void
dump_items(FILE *out, const struct key *k, const void *base, int indent, const struct config *cfg)
{
	if (k->type == K_LISTENERS) {
		for (size_t i = 0; i < cfg->n_listeners; i++)
			dump_mapping(out, k->sub, &cfg->listeners[i], indent + 4, 1, cfg,
				     &cfg->listeners[i]);
	} else {
		const struct config_listener *l = base;
		for (size_t i = 0; i < l->n_routes; i++)
			dump_mapping(out, k->sub, &l->routes[i], indent + 4, 1, cfg, l);
	}
}

/*
 * dump_mapping writes the entries of table on base at indent; with dash,
 * the first line starts the item of a list ("- " two columns before).
 */
static void
dump_mapping(FILE *out, const struct key *table, const void *base, int indent, int dash,
	     const struct config *cfg, const struct config_listener *l)
{
	for (const struct key *k = table; k->name != NULL; k++) {
		if (omitted(k, base, l))
			continue;
		if (dash)
			fprintf(out, "%*s- %s:", indent - 2, "", k->name);
		else
			fprintf(out, "%*s%s:", indent, "", k->name);
		dash = 0;
		if (k->type == K_SECTION) {
			fputc('\n', out);
			dump_mapping(out, k->sub, base, indent + 2, 0, cfg, l);
		} else if (k->type == K_LISTENERS || k->type == K_ROUTES) {
			fputc('\n', out);
			dump_items(out, k, base, indent, cfg);
		} else {
			fputc(' ', out);
			dump_scalar(out, k, base);
			fputc('\n', out);
		}
	}
}

void
config_dump(const struct config *cfg, FILE *out)
{
	dump_mapping(out, config_top_keys, cfg, 0, 0, cfg, NULL);
}
