/*
 * config.c: YAML (libyaml) and quick-mode settings -> struct config.
 *
 * The file is loaded as a libyaml document tree, so every node carries its
 * line and column, then walked through key tables: one table per mapping
 * (top level, log, resolver, defaults, a listener). A table entry names the
 * key, its type and where it lands in the struct, so parsing, the
 * did-you-mean for unknown keys and quick mode all share one description of
 * the config. Before the walk, ${NAME} and ${NAME:-default} in every value
 * (keys excepted) are replaced from the environment, once, in the document
 * itself, so the walk and its messages see the expanded text. Every error
 * is reported and counted; the result is either a complete, validated
 * config or NULL.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <yaml.h>

#include "config.h"
#include "net.h"
#include "policy.h"
#include "route.h"

#define UNSET (-1)
#define DURATION_MAX ((int64_t)24 * 3600 * 1000 * 365)

enum key_type {
	K_STRING,
	K_DURATION,
	K_COUNT,
	K_SIZE,     /* bytes: a whole number, optionally with k or m (1024-based) */
	K_ENUM,
	K_LISTEN,
	K_UPSTREAM,
	K_ADDRLIST, /* list of "ip" or "ip:port" */
	K_BOOL,
	K_CIDRLIST, /* list of "ip/prefix" into .off: cidr array, .off2: count */
	K_PATTERNS, /* list of route patterns (a single one may stand alone) */
	K_ALLOWLIST, /* list of allow entries: pattern or address block, optional :PORT */
	K_CREDENTIALS, /* list of "user:password" */
	K_WORKERS,  /* "auto" (0) or a count */
	K_SECTION,  /* a nested mapping described by .sub */
	K_LISTENERS,
	K_ROUTES,
};

struct key {
	const char *name;
	enum key_type type;
	size_t off;
	const struct key *sub;      /* K_SECTION */
	const char *const *choices; /* K_ENUM, NULL-terminated */
	int64_t min, max;           /* K_COUNT, K_DURATION; K_CIDRLIST: offset of the count */
};

static const char *const mode_names[] = {"tcp", "tls", "http", "connect", NULL};
static const char *const send_names[] = {"none", "v1", "v2", NULL};
/* In the order of enum relay_splice. */
static const char *const splice_names[] = {"auto", "on", "off", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_names[] = {"logfmt", "json", NULL};

#define END {NULL, K_STRING, 0, NULL, NULL, 0, 0}

static const struct key log_keys[] = {
	{"level", K_ENUM, offsetof(struct config, log.level), NULL, level_names, 0, 0},
	{"format", K_ENUM, offsetof(struct config, log.format), NULL, format_names, 0, 0},
	END,
};

static const struct key admin_keys[] = {
	{"listen", K_LISTEN, offsetof(struct config, admin_listen), NULL, NULL, 0, 0},
	END,
};

static const struct key resolver_keys[] = {
	{"nameservers", K_ADDRLIST, offsetof(struct config, resolver.nameservers), NULL, NULL, 0, 0},
	{"refresh", K_DURATION, offsetof(struct config, resolver.refresh), NULL, NULL, 1000,
	    DURATION_MAX},
	{"min_ttl", K_DURATION, offsetof(struct config, resolver.min_ttl), NULL, NULL, 0,
	    DURATION_MAX},
	{"timeout", K_DURATION, offsetof(struct config, resolver.timeout), NULL, NULL, 10, 60000},
	END,
};

static const struct key defaults_keys[] = {
	{"splice", K_ENUM, offsetof(struct config, defaults.splice), NULL, splice_names, 0, 0},
	{"sniff_timeout", K_DURATION, offsetof(struct config, defaults.sniff_timeout), NULL, NULL,
	    1, DURATION_MAX},
	{"connect_timeout", K_DURATION, offsetof(struct config, defaults.connect_timeout), NULL,
	    NULL, 1, DURATION_MAX},
	{"idle_timeout", K_DURATION, offsetof(struct config, defaults.idle_timeout), NULL, NULL, 0,
	    DURATION_MAX},
	{"max_connections", K_COUNT, offsetof(struct config, defaults.max_connections), NULL, NULL,
	    0, 10000000},
	{"drain_timeout", K_DURATION, offsetof(struct config, defaults.drain_timeout), NULL, NULL,
	    0, DURATION_MAX},
	END,
};

static const struct key proxy_keys[] = {
	{"accept", K_BOOL, offsetof(struct config_listener, proxy.accept), NULL, NULL, 0, 0},
	{"trusted", K_CIDRLIST, offsetof(struct config_listener, proxy.trusted), NULL, NULL,
	    offsetof(struct config_listener, proxy.n_trusted), 0},
	{"send", K_ENUM, offsetof(struct config_listener, proxy.send), NULL, send_names, 0, 0},
	END,
};

#define HTTP_KEY(name, type, field, min, max) \
	{name, type, offsetof(struct config_listener, http.field), NULL, NULL, min, max}
static const struct key http_keys[] = {
	{"trusted", K_CIDRLIST, offsetof(struct config_listener, http.trusted), NULL, NULL,
	    offsetof(struct config_listener, http.n_trusted), 0},
	HTTP_KEY("x_forwarded_for", K_BOOL, x_forwarded_for, 0, 0),
	HTTP_KEY("x_forwarded_proto", K_BOOL, x_forwarded_proto, 0, 0),
	HTTP_KEY("x_forwarded_host", K_BOOL, x_forwarded_host, 0, 0),
	HTTP_KEY("x_real_ip", K_BOOL, x_real_ip, 0, 0),
	HTTP_KEY("forwarded", K_BOOL, forwarded, 0, 0),
	HTTP_KEY("max_header_size", K_SIZE, max_header_size, 1024, 65536),
	HTTP_KEY("header_timeout", K_DURATION, header_timeout, 1, DURATION_MAX),
	HTTP_KEY("keepalive_timeout", K_DURATION, keepalive_timeout, 1, DURATION_MAX),
	HTTP_KEY("max_requests_per_connection", K_COUNT, max_requests, 0, 1000000000),
	END,
};

static const struct key route_proxy_keys[] = {
	{"send", K_ENUM, offsetof(struct config_route, send), NULL, send_names, 0, 0},
	END,
};

static const struct key route_keys[] = {
	{"match", K_PATTERNS, offsetof(struct config_route, match), NULL, NULL, 0, 0},
	{"upstream", K_UPSTREAM, offsetof(struct config_route, upstream), NULL, NULL, 0, 0},
	{"proxy_protocol", K_SECTION, 0, route_proxy_keys, NULL, 0, 0},
	END,
};

static const struct key listener_keys[] = {
	{"name", K_STRING, offsetof(struct config_listener, name), NULL, NULL, 0, 0},
	{"listen", K_LISTEN, offsetof(struct config_listener, listen), NULL, NULL, 0, 0},
	{"mode", K_ENUM, offsetof(struct config_listener, mode), NULL, mode_names, 0, 0},
	{"upstream", K_UPSTREAM, offsetof(struct config_listener, upstream), NULL, NULL, 0, 0},
	{"routes", K_ROUTES, 0, NULL, NULL, 0, 0},
	{"proxy_protocol", K_SECTION, 0, proxy_keys, NULL, 0, 0},
	{"sniff_timeout", K_DURATION, offsetof(struct config_listener, sniff_timeout), NULL, NULL,
	    1, DURATION_MAX},
	{"allow", K_ALLOWLIST, offsetof(struct config_listener, allow), NULL, NULL,
	    offsetof(struct config_listener, n_allow), 0},
	{"port", K_COUNT, offsetof(struct config_listener, port), NULL, NULL, 1, 65535},
	{"egress", K_BOOL, offsetof(struct config_listener, egress), NULL, NULL, 0, 0},
	{"splice", K_ENUM, offsetof(struct config_listener, splice), NULL, splice_names, 0, 0},
	{"allow_ranges", K_CIDRLIST, offsetof(struct config_listener, allow_ranges), NULL, NULL,
	    offsetof(struct config_listener, n_allow_ranges), 0},
	{"deny_ranges", K_CIDRLIST, offsetof(struct config_listener, deny_ranges), NULL, NULL,
	    offsetof(struct config_listener, n_deny_ranges), 0},
	{"proxy_auth", K_CREDENTIALS, offsetof(struct config_listener, proxy_auth), NULL, NULL, 0,
	    0},
	{"connect_timeout", K_DURATION, offsetof(struct config_listener, connect_timeout), NULL,
	    NULL, 1, DURATION_MAX},
	{"idle_timeout", K_DURATION, offsetof(struct config_listener, idle_timeout), NULL, NULL, 0,
	    DURATION_MAX},
	{"max_connections", K_COUNT, offsetof(struct config_listener, max_connections), NULL, NULL,
	    0, 10000000},
	{"http", K_SECTION, 0, http_keys, NULL, 0, 0},
	END,
};

static const struct key top_keys[] = {
	{"workers", K_WORKERS, offsetof(struct config, workers), NULL, NULL, 1, 256},
	{"user", K_STRING, offsetof(struct config, user), NULL, NULL, 0, 0},
	{"group", K_STRING, offsetof(struct config, group), NULL, NULL, 0, 0},
	{"allow_root", K_BOOL, offsetof(struct config, allow_root), NULL, NULL, 0, 0},
	{"log", K_SECTION, 0, log_keys, NULL, 0, 0},
	{"resolver", K_SECTION, 0, resolver_keys, NULL, 0, 0},
	{"admin", K_SECTION, 0, admin_keys, NULL, 0, 0},
	{"defaults", K_SECTION, 0, defaults_keys, NULL, 0, 0},
	{"listeners", K_LISTENERS, 0, NULL, NULL, 0, 0},
	END,
};

/* Where an error is reported, and how many there were. */
struct report {
	const char *file;
	FILE *out;
	int errors;
};

static void report_error(struct report *r, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
report_error(struct report *r, const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;

	if (node != NULL)
		fprintf(r->out, "%s:%zu:%zu: ", r->file, node->start_mark.line + 1,
		    node->start_mark.column + 1);
	else
		fprintf(r->out, "%s: ", r->file);
	va_start(ap, fmt);
	vfprintf(r->out, fmt, ap);
	va_end(ap);
	fputc('\n', r->out);
	r->errors++;
}

/* ---- scalar values ---- */

int
config_parse_duration(const char *text, int64_t *ms)
{
	const char *p = text;
	int64_t v = 0, mult;

	if (strcmp(text, "0") == 0) {
		*ms = 0;
		return 0;
	}
	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > DURATION_MAX)
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (strcmp(p, "ms") == 0)
		mult = 1;
	else if (strcmp(p, "s") == 0)
		mult = 1000;
	else if (strcmp(p, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(p, "h") == 0)
		mult = 3600 * 1000;
	else
		return -1;
	if (v > DURATION_MAX / mult)
		return -1;
	*ms = v * mult;
	return 0;
}

const char *
config_format_duration(int64_t ms, char *buf, size_t len)
{
	if (ms == 0)
		snprintf(buf, len, "0");
	else if (ms % 3600000 == 0)
		snprintf(buf, len, "%" PRId64 "h", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, len, "%" PRId64 "m", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%" PRId64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRId64 "ms", ms);
	return buf;
}

const char *
config_mode_name(enum config_mode mode)
{
	return mode_names[mode];
}

static int
parse_count(const char *text, int64_t *out)
{
	int64_t v = 0;
	const char *p;

	if (*text == '\0' || strlen(text) > 12)
		return -1;
	for (p = text; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return 0;
}

int
config_parse_size(const char *text, int64_t *out)
{
	char digits[16];
	size_t n = strlen(text);
	int64_t v, unit = 1;

	if (n > 0 && (text[n - 1] == 'k' || text[n - 1] == 'K'))
		unit = 1024, n--;
	else if (n > 0 && (text[n - 1] == 'm' || text[n - 1] == 'M'))
		unit = 1024 * 1024, n--;
	if (n == 0 || n >= sizeof(digits))
		return -1;
	memcpy(digits, text, n);
	digits[n] = '\0';
	if (parse_count(digits, &v) == -1)
		return -1;
	*out = v * unit;
	return 0;
}

static void
append_choices(char *err, size_t errlen, const char *const *choices)
{
	size_t n = strlen(err);

	snprintf(err + n, errlen - n, " (use ");
	for (size_t i = 0; choices[i] != NULL; i++) {
		n = strlen(err);
		snprintf(err + n, errlen - n, "%s%s", i == 0 ? "" : choices[i + 1] ? ", " : " or ",
		    choices[i]);
	}
	n = strlen(err);
	snprintf(err + n, errlen - n, ")");
}

static int
parse_nameserver(const char *text, char *err, size_t errlen)
{
	char host[NET_HOSTMAX + 1];
	struct sockaddr_storage ss;
	socklen_t len;
	uint16_t port;

	/* A bare IP literal (53 implied), or IP:PORT / [IPv6]:PORT. */
	if (net_parse_ip(text, 53, &ss, &len) == 0)
		return 0;
	if (net_split_hostport(text, host, sizeof(host), &port, err, errlen) == -1 ||
	    net_parse_ip(host, port, &ss, &len) == -1 || port == 0) {
		snprintf(err, errlen, "invalid nameserver '%s' (use an IP address, optionally with "
				      ":PORT, like 127.0.0.11 or 127.0.0.1:5353)", text);
		return -1;
	}
	return 0;
}

static int
strlist_add(struct config_strlist *l, const char *s)
{
	char **v = realloc(l->v, (l->n + 1) * sizeof(*v));

	if (v == NULL)
		return -1;
	l->v = v;
	if ((l->v[l->n] = strdup(s)) == NULL)
		return -1;
	l->n++;
	return 0;
}

static void
strlist_clear(struct config_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* ---- address blocks ---- */

static int
parse_cidr(const char *text, struct config_cidr *c)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	socklen_t len;
	int64_t prefix;

	if (alen == 0 || alen >= sizeof(addr))
		return -1;
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	if (net_parse_ip(addr, 0, &c->addr, &len) == -1)
		return -1;
	prefix = c->addr.ss_family == AF_INET ? 32 : 128;
	if (slash != NULL) {
		int64_t max = prefix;
		if (parse_count(slash + 1, &prefix) == -1 || prefix > max)
			return -1;
	}
	c->prefix = (unsigned)prefix;
	return 0;
}

/*
 * parse_allow reads one allow entry: a name pattern, an IP literal or an
 * ADDRESS/PREFIX block, optionally followed by :PORT ("[v6]:PORT" for
 * IPv6). IP literals become one-address blocks.
 */
static int
parse_allow(const char *text, struct config_allow *a, char *err, size_t errlen)
{
	char host[NET_HOSTMAX + 8];
	const char *colon = NULL, *hs = text, *he;
	uint16_t port = 0;

	memset(a, 0, sizeof(*a));
	if (text[0] == '[') {
		he = strchr(text, ']');
		if (he == NULL || (he[1] != '\0' && he[1] != ':'))
			goto bad;
		hs = text + 1;
		colon = he[1] == ':' ? he + 1 : NULL;
	} else {
		colon = strrchr(text, ':');
		/* More than one ':' without brackets: an IPv6 address, no port. */
		if (colon != NULL && memchr(text, ':', (size_t)(colon - text)) != NULL)
			colon = NULL;
		he = colon ? colon : text + strlen(text);
	}
	if ((size_t)(he - hs) >= sizeof(host) || he == hs)
		goto bad;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	if (colon != NULL && net_parse_port(colon + 1, 0, &port) == -1) {
		snprintf(err, errlen, "invalid port in allow entry '%s' (use 1-65535)", text);
		return -1;
	}
	a->port = port;
	if (parse_cidr(host, &a->cidr) == 0)
		return 0;
	if (strchr(host, '/') != NULL || text[0] == '[')
		goto bad;
	if (route_pattern_check(host, err, errlen) == -1)
		return -1;
	if ((a->pattern = strdup(host)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "invalid allow entry '%s' (use a name, '*.example.com', an address "
			      "or ADDRESS/PREFIX, each optionally with :PORT)", text);
	return -1;
}

int
config_cidr_contains(const struct config_cidr *c, const struct sockaddr *sa)
{
	const unsigned char *a, *b;
	unsigned bits = c->prefix, full, rest;

	if (sa->sa_family != c->addr.ss_family)
		return 0;
	if (sa->sa_family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
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

/*
 * parse_scalar converts text for key k and stores it at dst. Returns 0, or
 * -1 with a message (naming the key and saying what is expected) in err.
 */
static int
parse_scalar(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	char host[NET_HOSTMAX + 1], dbuf[32], dbuf2[32];
	uint16_t port;
	int64_t v;

	switch (k->type) {
	case K_STRING:
		if (*text == '\0') {
			snprintf(err, errlen, "'%s' must not be empty", k->name);
			return -1;
		}
		free(*(char **)dst);
		if ((*(char **)dst = strdup(text)) == NULL)
			goto nomem;
		return 0;
	case K_DURATION:
		if (config_parse_duration(text, &v) == -1) {
			snprintf(err, errlen,
			    "invalid duration '%s' for '%s' (use a whole number with ms, s, m or h, "
			    "like 250ms, 5s or 10m)", text, k->name);
			return -1;
		}
		if (v < k->min || v > k->max) {
			snprintf(err, errlen, "'%s' must be between %s and %s, not '%s'", k->name,
			    config_format_duration(k->min, dbuf, sizeof(dbuf)),
			    config_format_duration(k->max, dbuf2, sizeof(dbuf2)), text);
			return -1;
		}
		*(int64_t *)dst = v;
		return 0;
	case K_WORKERS:
		if (strcmp(text, "auto") == 0) {
			*(int64_t *)dst = 0;
			return 0;
		}
		/* FALLTHROUGH */
	case K_COUNT:
		if (parse_count(text, &v) == -1 || v < k->min || v > k->max) {
			snprintf(err, errlen,
			    "invalid number '%s' for '%s' (use a whole number from %" PRId64
			    " to %" PRId64 ")", text, k->name, k->min, k->max);
			return -1;
		}
		*(int64_t *)dst = v;
		return 0;
	case K_SIZE:
		if (config_parse_size(text, &v) == -1 || v < k->min || v > k->max) {
			snprintf(err, errlen,
			    "invalid size '%s' for '%s' (use bytes, or k or m, from %" PRId64
			    " to %" PRId64 " bytes, like 16k)", text, k->name, k->min, k->max);
			return -1;
		}
		*(int64_t *)dst = v;
		return 0;
	case K_ENUM:
		for (int i = 0; k->choices[i] != NULL; i++) {
			if (strcmp(k->choices[i], text) == 0) {
				*(int *)dst = i;
				return 0;
			}
		}
		snprintf(err, errlen, "invalid %s '%s'", k->name, text);
		append_choices(err, errlen, k->choices);
		return -1;
	case K_LISTEN: {
		struct config_addr *a = dst;
		if (net_split_hostport(text, host, sizeof(host), &port, err, errlen) == -1) {
			size_t n = strlen(err);
			snprintf(err + n, errlen - n, " in listen '%s' (use IP:PORT with a port "
						      "from 0 to 65535, like 0.0.0.0:80 or [::]:80)", text);
			return -1;
		}
		if (host[0] == '\0')
			strcpy(host, "0.0.0.0");
		if (net_parse_ip(host, port, &a->ss, &a->len) == -1) {
			snprintf(err, errlen,
			    "invalid listen address '%s': '%s' is not an IP address (use IP:PORT, "
			    "like 0.0.0.0:80, [::]:80 or 127.0.0.1:8080)", text, host);
			return -1;
		}
		return 0;
	}
	case K_UPSTREAM: {
		struct config_hostport *hp = dst;
		struct sockaddr_storage ss;
		socklen_t len;
		if (net_split_hostport(text, host, sizeof(host), &port, err, errlen) == -1) {
			size_t n = strlen(err);
			snprintf(err + n, errlen - n, " in upstream '%s' (use HOST:PORT with a port "
						      "from 1 to 65535, like whoami:80 or [::1]:8080)", text);
			return -1;
		}
		if (port == 0) {
			snprintf(err, errlen, "invalid port '0' in upstream '%s' (use 1-65535)",
			    text);
			return -1;
		}
		hp->sniffed_host = strcmp(host, "$host") == 0;
		if (!hp->sniffed_host && net_parse_ip(host, port, &ss, &len) == -1 &&
		    !net_valid_hostname(host)) {
			snprintf(err, errlen, "invalid host '%s' in upstream '%s' (use a DNS name "
					      "or an IP address)", host, text);
			return -1;
		}
		free(hp->host);
		if ((hp->host = strdup(host)) == NULL)
			goto nomem;
		hp->port = port;
		return 0;
	}
	case K_ADDRLIST: {
		/* In quick mode the whole list comes as one comma-separated value. */
		struct config_strlist *l = dst;
		char *copy = strdup(text), *save = NULL, *tok;
		int rc = 0;
		if (copy == NULL)
			goto nomem;
		for (tok = strtok_r(copy, ", ", &save); tok != NULL;
		     tok = strtok_r(NULL, ", ", &save)) {
			if (parse_nameserver(tok, err, errlen) == -1 || strlist_add(l, tok) == -1) {
				rc = -1;
				break;
			}
		}
		free(copy);
		return rc;
	}
	case K_BOOL:
		if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0 || strcmp(text, "on") == 0)
			*(int *)dst = 1;
		else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0 ||
			 strcmp(text, "off") == 0)
			*(int *)dst = 0;
		else {
			snprintf(err, errlen, "invalid value '%s' for '%s' (use true or false)", text,
			    k->name);
			return -1;
		}
		return 0;
	case K_CIDRLIST: {
		struct config_cidr **cidrs = dst, *grown;
		size_t *n = (size_t *)((char *)dst - k->off + (size_t)k->min);
		struct config_cidr c;
		if (parse_cidr(text, &c) == -1) {
			snprintf(err, errlen, "invalid address block '%s' in '%s' (use an address "
					      "or ADDRESS/PREFIX, like 10.0.0.0/8 or ::1/128)", text,
			    k->name);
			return -1;
		}
		if ((grown = realloc(*cidrs, (*n + 1) * sizeof(**cidrs))) == NULL)
			goto nomem;
		*cidrs = grown;
		grown[(*n)++] = c;
		return 0;
	}
	case K_PATTERNS:
		if (route_pattern_check(text, err, errlen) == -1)
			return -1;
		if (strlist_add(dst, text) == -1)
			goto nomem;
		return 0;
	case K_ALLOWLIST: {
		struct config_allow **allows = dst, *grown, a;
		size_t *n = (size_t *)((char *)dst - k->off + (size_t)k->min);
		if (parse_allow(text, &a, err, errlen) == -1)
			return -1;
		if ((grown = realloc(*allows, (*n + 1) * sizeof(**allows))) == NULL) {
			free(a.pattern);
			goto nomem;
		}
		*allows = grown;
		grown[(*n)++] = a;
		return 0;
	}
	case K_CREDENTIALS:
		if (strchr(text, ':') == NULL || text[0] == ':') {
			snprintf(err, errlen, "invalid credentials in '%s' (use \"USER:PASSWORD\")",
			    k->name);
			return -1;
		}
		if (strlist_add(dst, text) == -1)
			goto nomem;
		return 0;
	case K_SECTION:
	case K_LISTENERS:
	case K_ROUTES:
		break;
	}
	snprintf(err, errlen, "'%s' is not a single value", k->name);
	return -1;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* ---- environment variables in values ---- */

/* A growing output buffer for expand_env; p is always NUL-terminated once used. */
struct ebuf {
	char *p;
	size_t len, cap;
};

static int
ebuf_add(struct ebuf *b, const char *s, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len - 1)
		return -1;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* env_name_valid: 1 if s (n bytes) is [A-Za-z_][A-Za-z0-9_]*. */
static int
env_name_valid(const char *s, size_t n)
{
	if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '_'))
			return 0;
	}
	return 1;
}

/*
 * expand_env returns text (len bytes, NULs allowed) with each ${NAME}
 * replaced by the value of environment variable NAME, each ${NAME:-default}
 * by that value or, when NAME is unset or empty, by default (anything up to
 * the next '}'), and each $${ by a literal ${. Any other '$' is kept, so
 * "$host:443" passes through. The result is a new NUL-terminated string
 * (caller frees) with its length in *outlen; it is never scanned again, so a
 * value that contains "${" stays as it is and expansion cannot recurse.
 * Returns NULL with a message in err for an unset NAME without a default, an
 * unterminated ${, an invalid NAME, or no memory.
 */
static char *
expand_env(const char *text, size_t len, size_t *outlen, char *err, size_t errlen)
{
	struct ebuf b = {NULL, 0, 0};
	size_t i = 0;

	if (ebuf_add(&b, "", 0) == -1)
		goto nomem;
	while (i < len) {
		const char *dollar = memchr(text + i, '$', len - i);
		size_t at = dollar != NULL ? (size_t)(dollar - text) : len;
		const char *body, *close, *sep, *value;
		size_t blen, nlen;
		char *name;

		if (ebuf_add(&b, text + i, at - i) == -1)
			goto nomem;
		if (at == len)
			break;
		i = at;
		if (i + 2 < len && text[i + 1] == '$' && text[i + 2] == '{') {
			if (ebuf_add(&b, "${", 2) == -1)
				goto nomem;
			i += 3;
			continue;
		}
		if (i + 1 >= len || text[i + 1] != '{') {
			if (ebuf_add(&b, "$", 1) == -1)
				goto nomem;
			i++;
			continue;
		}
		body = text + i + 2;
		close = memchr(body, '}', len - i - 2);
		if (close == NULL) {
			snprintf(err, errlen, "unterminated '${' in '%.*s' (end it with '}', or "
					      "write '$${' for a literal '${')",
			    (int)(len - i > 64 ? 64 : len - i), text + i);
			goto fail;
		}
		blen = (size_t)(close - body);
		sep = memmem(body, blen, ":-", 2);
		nlen = sep != NULL ? (size_t)(sep - body) : blen;
		if (!env_name_valid(body, nlen)) {
			snprintf(err, errlen, "invalid environment variable name '%.*s' in '%.*s' "
					      "(use letters, digits and '_', not starting with a "
					      "digit, as in ${NAME} or ${NAME:-default})",
			    (int)(nlen > 64 ? 64 : nlen), body, (int)(blen + 3 > 80 ? 80 : blen + 3),
			    text + i);
			goto fail;
		}
		if ((name = strndup(body, nlen)) == NULL)
			goto nomem;
		value = getenv(name);
		if (value != NULL && (value[0] != '\0' || sep == NULL)) {
			free(name);
			if (ebuf_add(&b, value, strlen(value)) == -1)
				goto nomem;
		} else if (sep != NULL) {
			free(name);
			if (ebuf_add(&b, sep + 2, (size_t)(close - sep - 2)) == -1)
				goto nomem;
		} else {
			snprintf(err, errlen, "environment variable '%s' is not set (set it, or "
					      "give a default: ${%s:-value})", name, name);
			free(name);
			goto fail;
		}
		i = (size_t)(close - text) + 1;
	}
	*outlen = b.len;
	return b.p;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	free(b.p);
	return NULL;
}

/* ---- did you mean ---- */

static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof(size_t));
	}
	return prev[lb];
}

/* closest_key returns the key name nearest to name, or NULL if none is close. */
static const char *
closest_key(const struct key *table, const char *name)
{
	const char *best = NULL;
	size_t best_d = 99, limit = strlen(name) <= 4 ? 1 : strlen(name) <= 8 ? 2 : 3;

	for (const struct key *k = table; k->name != NULL; k++) {
		size_t d = edit_distance(name, k->name);
		/* Also catch '-' for '_' and case slips, which are common. */
		char norm[64];
		size_t i;
		for (i = 0; name[i] && i < sizeof(norm) - 1; i++)
			norm[i] = name[i] == '-' ? '_' : (char)tolower((unsigned char)name[i]);
		norm[i] = '\0';
		if (strcmp(norm, k->name) == 0)
			d = 0;
		if (d < best_d) {
			best_d = d;
			best = k->name;
		}
	}
	return best_d <= limit ? best : NULL;
}

/* ---- the YAML walk ---- */

struct walk {
	struct report *report;
	yaml_document_t *doc;
	struct config *cfg;
	const unsigned char *flags; /* per node, from expand_values */
	const yaml_node_t *min_ttl; /* for the cross-key check min_ttl <= refresh */
	int listeners_bad;          /* 'listeners' was not a list: reported already */
};

static const char *
node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a single value";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

static const char *
scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* What expand_values learned about each node (indexed from doc->nodes.start). */
#define NODE_KEY 1    /* a mapping key: not expanded */
#define NODE_FAILED 2 /* a value whose ${...} failed: reported, then skipped */

/*
 * expand_values runs expand_env over every scalar of doc that is not a
 * mapping key and puts the result in the node in place of the text (libyaml
 * frees both with free()). Each node is visited once, so a value reached
 * through an alias is expanded once, and nothing is expanded twice. Errors
 * go to r at the scalar's position. Returns the per-node NODE_ flags (caller
 * frees), or NULL when out of memory (reported).
 */
static unsigned char *
expand_values(yaml_document_t *doc, struct report *r)
{
	size_t n = (size_t)(doc->nodes.top - doc->nodes.start);
	unsigned char *flags = calloc(n ? n : 1, 1);
	char err[512];

	if (flags == NULL) {
		report_error(r, NULL, "out of memory");
		return NULL;
	}
	for (yaml_node_t *m = doc->nodes.start; m < doc->nodes.top; m++) {
		if (m->type != YAML_MAPPING_NODE)
			continue;
		for (yaml_node_pair_t *p = m->data.mapping.pairs.start;
		     p < m->data.mapping.pairs.top; p++)
			if (p->key >= 1 && (size_t)p->key <= n)
				flags[p->key - 1] |= NODE_KEY;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *v = &doc->nodes.start[i];
		char *text;
		size_t len;

		if (v->type != YAML_SCALAR_NODE || (flags[i] & NODE_KEY) ||
		    memmem(v->data.scalar.value, v->data.scalar.length, "${", 2) == NULL)
			continue;
		text = expand_env(scalar(v), v->data.scalar.length, &len, err, sizeof(err));
		if (text == NULL) {
			report_error(r, v, "%s", err);
			flags[i] |= NODE_FAILED;
			continue;
		}
		free(v->data.scalar.value);
		v->data.scalar.value = (yaml_char_t *)text;
		v->data.scalar.length = len;
	}
	return flags;
}

/* expand_failed: 1 if n is a value whose expansion failed (reported already). */
static int
expand_failed(const struct walk *w, const yaml_node_t *n)
{
	return w->flags != NULL && (w->flags[n - w->doc->nodes.start] & NODE_FAILED);
}

static unsigned walk_mapping(struct walk *w, const yaml_node_t *map, const struct key *table,
    void *base, const char *where);

/* listener_init: what a listener has before its keys are read. */
static void
listener_init(struct config_listener *l)
{
	memset(l, 0, sizeof(*l));
	l->sniff_timeout = l->connect_timeout = l->idle_timeout = l->max_connections = UNSET;
	l->splice = UNSET;
	l->http.x_forwarded_for = l->http.x_forwarded_proto = l->http.x_forwarded_host = 1;
	l->http.x_real_ip = 1;
	l->http.max_header_size = 16 * 1024;
	l->http.header_timeout = 10 * 1000;
	l->http.keepalive_timeout = 75 * 1000;
	l->http.max_requests = 1000;
}

static struct config_listener *
add_listener(struct config *cfg)
{
	struct config_listener *grown, *l;

	grown = realloc(cfg->listeners, (cfg->n_listeners + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	cfg->listeners = grown;
	l = &grown[cfg->n_listeners++];
	listener_init(l);
	return l;
}

static struct config_route *
add_route(struct config_listener *l)
{
	struct config_route *grown, *r;

	grown = realloc(l->routes, (l->n_routes + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	l->routes = grown;
	r = &grown[l->n_routes++];
	memset(r, 0, sizeof(*r));
	r->send = CONFIG_PROXY_INHERIT;
	return r;
}

static void
walk_value(struct walk *w, const struct key *k, const yaml_node_t *val, void *base,
    const char *where)
{
	char err[512];
	void *dst = (char *)base + k->off;

	if (val->type == YAML_SCALAR_NODE && expand_failed(w, val)) {
		if (k->type == K_LISTENERS)
			w->listeners_bad = 1; /* no "no listeners" on top */
		return;
	}
	if (k->type == K_SECTION) {
		char sub[128];
		if (val->type == YAML_SCALAR_NODE && scalar(val)[0] == '\0')
			return; /* "log:" with nothing under it */
		if (val->type != YAML_MAPPING_NODE) {
			report_error(w->report, val, "'%s' must be a mapping, not %s", k->name,
			    node_kind(val));
			return;
		}
		if (strcmp(where, "the top level") == 0)
			snprintf(sub, sizeof(sub), "%s", k->name);
		else
			snprintf(sub, sizeof(sub), "%s.%s", where, k->name);
		walk_mapping(w, val, k->sub, base, sub);
		return;
	}
	if (k->type == K_LISTENERS || k->type == K_ROUTES) {
		if (val->type != YAML_SEQUENCE_NODE) {
			report_error(w->report, val,
			    "'%s' must be a list (each item starts with '- ')", k->name);
			if (k->type == K_LISTENERS)
				w->listeners_bad = 1;
			return;
		}
		for (yaml_node_item_t *it = val->data.sequence.items.start;
		     it < val->data.sequence.items.top; it++) {
			yaml_node_t *item = yaml_document_get_node(w->doc, *it);
			char sub[96];

			if (k->type == K_LISTENERS) {
				struct config_listener *l = add_listener(w->cfg);
				if (l == NULL)
					goto nomem;
				l->line = (int)item->start_mark.line + 1;
				l->col = (int)item->start_mark.column + 1;
				snprintf(sub, sizeof(sub), "listeners[%zu]", w->cfg->n_listeners - 1);
				if (item->type == YAML_MAPPING_NODE)
					l->seen = walk_mapping(w, item, listener_keys, l, sub);
			} else {
				struct config_listener *l = base;
				struct config_route *r = add_route(l);
				if (r == NULL)
					goto nomem;
				r->line = (int)item->start_mark.line + 1;
				r->col = (int)item->start_mark.column + 1;
				snprintf(sub, sizeof(sub), "%s.routes[%zu]", where, l->n_routes - 1);
				if (item->type == YAML_MAPPING_NODE)
					r->seen = walk_mapping(w, item, route_keys, r, sub);
			}
			if (item->type != YAML_MAPPING_NODE) {
				report_error(w->report, item, "%s must be a mapping, not %s", sub,
				    node_kind(item));
				/* Reported once: no "missing key" errors for it. */
				if (k->type == K_LISTENERS)
					w->cfg->listeners[w->cfg->n_listeners - 1].seen = ~0u;
				else
					((struct config_listener *)base)
					    ->routes[((struct config_listener *)base)->n_routes - 1]
					    .seen = ~0u;
			}
		}
		return;
nomem:
		report_error(w->report, val, "out of memory");
		return;
	}
	if (k->type == K_PATTERNS && val->type == YAML_SCALAR_NODE) {
		if (parse_scalar(k, scalar(val), dst, err, sizeof(err)) == -1)
			report_error(w->report, val, "%s", err);
		return;
	}
	if ((k->type == K_ADDRLIST || k->type == K_CIDRLIST || k->type == K_PATTERNS ||
		k->type == K_ALLOWLIST || k->type == K_CREDENTIALS) &&
	    val->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *it = val->data.sequence.items.start;
		     it < val->data.sequence.items.top; it++) {
			yaml_node_t *item = yaml_document_get_node(w->doc, *it);
			if (item->type != YAML_SCALAR_NODE) {
				report_error(w->report, item, "'%s' items must be single values",
				    k->name);
				continue;
			}
			if (expand_failed(w, item))
				continue;
			if (parse_scalar(k, scalar(item), dst, err, sizeof(err)) == -1)
				report_error(w->report, item, "%s", err);
		}
		return;
	}
	if (val->type != YAML_SCALAR_NODE) {
		report_error(w->report, val, "'%s' in %s must be a single value, not %s", k->name,
		    where, node_kind(val));
		return;
	}
	if (base == w->cfg && k->off == offsetof(struct config, resolver.min_ttl))
		w->min_ttl = val;
	if (parse_scalar(k, scalar(val), dst, err, sizeof(err)) == -1)
		report_error(w->report, val, "%s", err);
}

/* walk_mapping returns a bit per table entry that was present (valid or not). */
static unsigned
walk_mapping(struct walk *w, const yaml_node_t *map, const struct key *table, void *base,
    const char *where)
{
	unsigned seen = 0;

	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *kn = yaml_document_get_node(w->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(w->doc, p->value);
		const struct key *k;
		const char *name, *hint;
		int dup = 0;

		if (kn->type != YAML_SCALAR_NODE) {
			report_error(w->report, kn, "keys in %s must be plain names", where);
			continue;
		}
		name = scalar(kn);
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *prev = yaml_document_get_node(w->doc, q->key);
			if (prev->type == YAML_SCALAR_NODE && strcmp(scalar(prev), name) == 0)
				dup = 1;
		}
		if (dup) {
			report_error(w->report, kn, "duplicate key '%s' in %s", name, where);
			continue;
		}
		for (k = table; k->name != NULL; k++)
			if (strcmp(k->name, name) == 0)
				break;
		if (k->name == NULL) {
			hint = closest_key(table, name);
			if (hint != NULL)
				report_error(w->report, kn,
				    "unknown key '%s' in %s (did you mean '%s'?)", name, where,
				    hint);
			else
				report_error(w->report, kn, "unknown key '%s' in %s", name, where);
			continue;
		}
		seen |= 1u << (k - table);
		walk_value(w, k, vn, base, where);
	}
	return seen;
}

/* ---- defaults and validation ---- */


static struct config *
config_new_defaults(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (cfg == NULL)
		return NULL;
	cfg->refs = 1;
	cfg->workers = 1;
	cfg->log.level = LOG_LEVEL_INFO;
	cfg->log.format = LOG_FORMAT_LOGFMT;
	cfg->resolver.refresh = 30 * 1000;
	cfg->resolver.min_ttl = 1000;
	cfg->resolver.timeout = 2000;
	cfg->defaults.sniff_timeout = 5000;
	cfg->defaults.connect_timeout = 5000;
	cfg->defaults.idle_timeout = 5 * 60 * 1000;
	cfg->defaults.max_connections = 4096;
	cfg->defaults.drain_timeout = 8000;
	return cfg;
}

static unsigned
key_bit(const struct key *table, const char *name)
{
	for (const struct key *k = table; k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			return 1u << (k - table);
	return 0;
}
#define KEY_BIT(name) key_bit(listener_keys, (name))

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

static void
position(yaml_node_t *pos, int line, int col)
{
	memset(pos, 0, sizeof(*pos));
	pos->start_mark.line = (size_t)(line > 0 ? line - 1 : 0);
	pos->start_mark.column = (size_t)(col > 0 ? col - 1 : 0);
}

/* validate_routing checks how a listener's mode, routes and PROXY settings fit together. */
static void
validate_routing(const struct config_listener *l, size_t i, yaml_node_t *pos, struct report *r)
{
	if (l->mode == CONFIG_MODE_TCP) {
		if (l->n_routes > 0)
			report_error(r, pos, "listeners[%zu]: 'routes' need mode tls or http (mode "
					     "tcp reads no name to route on)", i);
		if (l->upstream.host && l->upstream.sniffed_host)
			report_error(r, pos, "listeners[%zu]: upstream '$host:%u' needs mode tls or "
					     "http", i, l->upstream.port);
	}
	if (l->n_allow > 0 && l->mode == CONFIG_MODE_TCP)
		report_error(r, pos, "listeners[%zu]: 'allow' needs mode tls, http or connect (a "
				     "tcp tunnel takes 'upstream' and 'egress: true')", i);
	if (l->mode == CONFIG_MODE_CONNECT) {
		if (l->n_allow == 0 && !(l->seen & KEY_BIT("allow")))
			report_error(r, pos, "listeners[%zu]: mode connect needs an 'allow' list",
			    i);
		if (l->n_routes > 0 || l->upstream.host != NULL)
			report_error(r, pos, "listeners[%zu]: mode connect takes 'allow', not "
					     "'routes' or 'upstream'", i);
	} else {
		for (size_t j = 0; j < l->n_allow; j++)
			if (l->allow[j].port != 0)
				report_error(r, pos, "listeners[%zu]: allow entries carry ports "
						     "only in mode connect (use 'port' for the "
						     "upstream port)", i);
		if (l->proxy_auth.n > 0)
			report_error(r, pos, "listeners[%zu]: 'proxy_auth' needs mode connect", i);
	}
	if (l->port != 0 && l->n_allow == 0)
		report_error(r, pos, "listeners[%zu]: 'port' applies to 'allow' entries only", i);
	if (l->proxy.n_trusted > 0 && !l->proxy.accept)
		report_error(r, pos, "listeners[%zu]: proxy_protocol.trusted has no effect without "
				     "'accept: true'", i);
	for (size_t j = 0; j < l->n_routes; j++) {
		const struct config_route *rt = &l->routes[j];
		yaml_node_t rpos;

		position(&rpos, rt->line, rt->col);
		if (rt->match.n == 0 && !(rt->seen & key_bit(route_keys, "match")))
			report_error(r, &rpos, "listeners[%zu].routes[%zu]: missing required key "
					       "'match'", i, j);
		if (rt->upstream.host == NULL && !(rt->seen & key_bit(route_keys, "upstream")))
			report_error(r, &rpos, "listeners[%zu].routes[%zu]: missing required key "
					       "'upstream'", i, j);
	}
}

/*
 * validate fills inherited listener values and checks what no single key
 * can: required keys, unique names and addresses.
 */
static void
validate(struct config *cfg, struct report *r, int quick, const yaml_node_t *min_ttl,
    int listeners_reported)
{
	if (cfg->resolver.min_ttl > cfg->resolver.refresh)
		report_error(r, min_ttl, "resolver: min_ttl must not exceed refresh");
	if (cfg->n_listeners == 0 && !listeners_reported)
		report_error(r, NULL, "no listeners defined (add a 'listeners:' list)");
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct config_listener *l = &cfg->listeners[i];
		yaml_node_t pos;

		position(&pos, l->line, l->col);
		if (l->sniff_timeout == UNSET)
			l->sniff_timeout = cfg->defaults.sniff_timeout;
		if (l->splice == UNSET)
			l->splice = cfg->defaults.splice;
		if (l->connect_timeout == UNSET)
			l->connect_timeout = cfg->defaults.connect_timeout;
		if (l->idle_timeout == UNSET)
			l->idle_timeout = cfg->defaults.idle_timeout;
		if (l->max_connections == UNSET)
			l->max_connections = cfg->defaults.max_connections;
		if (quick) {
			if (l->listen.len == 0)
				report_error(r, NULL, "--listen (or GATEKEEPER_LISTEN) is required");
			if (l->upstream.host == NULL)
				report_error(r, NULL, "--upstream (or GATEKEEPER_UPSTREAM) is required");
			else if (l->upstream.sniffed_host && l->mode == CONFIG_MODE_TCP)
				report_error(r, NULL, "--upstream $host:PORT needs --mode tls or http");
			continue;
		}
		validate_routing(l, i, &pos, r);
		/* (seen is all ones for an item that was not a mapping: nothing to add then.) */
		if ((l->seen & KEY_BIT("http")) && l->seen != ~0u && l->mode != CONFIG_MODE_HTTP)
			report_error(r, &pos, "listeners[%zu]: 'http' settings need mode http (mode "
					      "is %s)", i, mode_names[l->mode]);
		for (size_t j = 0; j < l->proxy_auth.n; j++) {
			char *b = base64(l->proxy_auth.v[j]);
			if (b == NULL || strlist_add(&l->proxy_auth_b64, b) == -1)
				report_error(r, &pos, "out of memory");
			free(b);
		}
		/* A key that was present but invalid has been reported already. */
		if (l->name == NULL && !(l->seen & KEY_BIT("name")))
			report_error(r, &pos, "listeners[%zu]: missing required key 'name'", i);
		if (l->listen.len == 0 && !(l->seen & KEY_BIT("listen")))
			report_error(r, &pos, "listeners[%zu]: missing required key 'listen'", i);
		if (l->upstream.host == NULL && l->n_routes == 0 && l->n_allow == 0 &&
		    l->mode != CONFIG_MODE_CONNECT &&
		    !(l->seen & (KEY_BIT("upstream") | KEY_BIT("routes") | KEY_BIT("allow"))))
			report_error(r, &pos, "listeners[%zu]: missing required key 'upstream'%s", i,
			    l->mode == CONFIG_MODE_TCP ? "" : " (or 'routes')");
		for (size_t j = 0; j < i; j++) {
			struct config_listener *o = &cfg->listeners[j];
			if (l->name && o->name && strcmp(l->name, o->name) == 0)
				report_error(r, &pos,
				    "listeners[%zu]: duplicate name '%s' (listeners[%zu] has it already)",
				    i, l->name, j);
			if (l->listen.len && o->listen.len &&
			    net_sockaddr_equal((struct sockaddr *)&l->listen.ss,
				(struct sockaddr *)&o->listen.ss) &&
			    ((struct sockaddr_in *)&l->listen.ss)->sin_port != 0)
				report_error(r, &pos,
				    "listeners[%zu]: duplicate listen address (listeners[%zu] has it already)", i,
				    j);
		}
	}
}

/* compile_policies builds each listener's policy once the model is whole (pointers stay put). */
static void
compile_policies(struct config *cfg, struct report *r)
{
	char err[128];

	for (size_t i = 0; i < cfg->n_listeners && r->errors == 0; i++) {
		struct config_listener *l = &cfg->listeners[i];
		if ((l->policy = policy_new(l, err, sizeof(err))) == NULL)
			report_error(r, NULL, "%s", err);
	}
}

static struct config *
load_document(const char *name, yaml_parser_t *parser, FILE *errs)
{
	struct report r = {name, errs, 0};
	struct config *cfg = NULL;
	unsigned char *flags = NULL;
	yaml_document_t doc;
	yaml_node_t *root;

	if (!yaml_parser_load(parser, &doc)) {
		fprintf(errs, "%s:%zu:%zu: YAML syntax error: %s", name,
		    parser->problem_mark.line + 1, parser->problem_mark.column + 1,
		    parser->problem ? parser->problem : "unknown problem");
		if (parser->context)
			fprintf(errs, " (%s, line %zu)", parser->context,
			    parser->context_mark.line + 1);
		fputc('\n', errs);
		return NULL;
	}
	if ((cfg = config_new_defaults()) == NULL) {
		report_error(&r, NULL, "out of memory");
		goto done;
	}
	if ((cfg->path = strdup(name)) == NULL) {
		report_error(&r, NULL, "out of memory");
		goto done;
	}
	root = yaml_document_get_root_node(&doc);
	if (root == NULL || (root->type == YAML_SCALAR_NODE && scalar(root)[0] == '\0' &&
				root->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)) {
		/* No document, or one with nothing in it ("---"). */
		report_error(&r, NULL, "the file is empty (it needs at least 'listeners:')");
		goto done;
	}
	if (root->type != YAML_MAPPING_NODE) {
		report_error(&r, root, "the top level must be a mapping of sections (log, "
				       "resolver, defaults, listeners), not %s", node_kind(root));
		goto done;
	}
	if ((flags = expand_values(&doc, &r)) == NULL)
		goto done;
	struct walk w = {&r, &doc, cfg, flags, NULL, 0};
	walk_mapping(&w, root, top_keys, cfg, "the top level");
	validate(cfg, &r, 0, w.min_ttl, w.listeners_bad);
	compile_policies(cfg, &r);
done:
	free(flags);
	yaml_document_delete(&doc);
	if (r.errors > 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

struct config *
config_load_string(const char *name, const char *text, size_t len, FILE *errs)
{
	yaml_parser_t parser;
	struct config *cfg;

	if (!yaml_parser_initialize(&parser)) {
		fprintf(errs, "%s: out of memory\n", name);
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	cfg = load_document(name, &parser, errs);
	yaml_parser_delete(&parser);
	return cfg;
}

struct config *
config_load(const char *path, FILE *errs)
{
	yaml_parser_t parser;
	struct config *cfg;
	FILE *f;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(errs, "%s: cannot open: %s\n", path, strerror(errno));
		return NULL;
	}
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		fprintf(errs, "%s: out of memory\n", path);
		return NULL;
	}
	yaml_parser_set_input_file(&parser, f);
	cfg = load_document(path, &parser, errs);
	yaml_parser_delete(&parser);
	fclose(f);
	return cfg;
}

/* ---- quick mode ---- */

/* Each quick setting names a table entry, so values parse exactly as in YAML. */
static const struct quick {
	const char *setting;
	const struct key *table;
	const char *key;
} quick_map[] = {
    {"listen", listener_keys, "listen"},
    {"upstream", listener_keys, "upstream"},
    {"mode", listener_keys, "mode"},
    {"name", listener_keys, "name"},
    {"connect-timeout", listener_keys, "connect_timeout"},
    {"idle-timeout", listener_keys, "idle_timeout"},
    {"max-connections", listener_keys, "max_connections"},
    {"log-level", log_keys, "level"},
    {"log-format", log_keys, "format"},
    {"nameservers", resolver_keys, "nameservers"},
    {"refresh", resolver_keys, "refresh"},
    {"min-ttl", resolver_keys, "min_ttl"},
    {"drain-timeout", defaults_keys, "drain_timeout"},
    {"sniff-timeout", listener_keys, "sniff_timeout"},
    {"splice", listener_keys, "splice"},
    {"workers", top_keys, "workers"},
    {"admin", admin_keys, "listen"},
    {"user", top_keys, "user"},
    {"group", top_keys, "group"},
    {"allow-root", top_keys, "allow_root"},
};

const char *const config_quick_settings[] = {"listen", "upstream", "mode", "name",
    "connect-timeout", "idle-timeout", "max-connections", "log-level", "log-format",
    "nameservers", "refresh", "min-ttl", "drain-timeout", "sniff-timeout", "splice", "workers",
    "admin", "user", "group", "allow-root", NULL};

struct config *
config_quick_new(void)
{
	struct config *cfg = config_new_defaults();
	struct config_listener *l;

	if (cfg == NULL)
		return NULL;
	cfg->path = strdup("(command line)");
	cfg->listeners = l = calloc(1, sizeof(*l));
	if (cfg->path == NULL || l == NULL) {
		config_free(cfg);
		return NULL;
	}
	cfg->n_listeners = 1;
	listener_init(l);
	return cfg;
}

int
config_quick_set(struct config *cfg, const char *setting, const char *value, char *err,
    size_t errlen)
{
	for (size_t i = 0; i < sizeof(quick_map) / sizeof(quick_map[0]); i++) {
		const struct quick *q = &quick_map[i];
		const struct key *k;
		void *base;

		if (strcmp(q->setting, setting) != 0)
			continue;
		for (k = q->table; strcmp(k->name, q->key) != 0; k++)
			;
		base = q->table == listener_keys ? (void *)&cfg->listeners[0] : (void *)cfg;
		if (k->type == K_ADDRLIST)
			strlist_clear((struct config_strlist *)((char *)base + k->off));
		return parse_scalar(k, value, (char *)base + k->off, err, errlen);
	}
	snprintf(err, errlen, "unknown setting '%s'", setting);
	return -2;
}

int
config_quick_finish(struct config *cfg, FILE *errs)
{
	struct report r = {"gatekeeper", errs, 0};
	struct config_listener *l = &cfg->listeners[0];

	if (l->name == NULL && (l->name = strdup("default")) == NULL)
		report_error(&r, NULL, "out of memory");
	validate(cfg, &r, 1, NULL, 1);
	compile_policies(cfg, &r);
	return r.errors ? -1 : 0;
}

/* ---- dump and free ---- */

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
	dump_chars(out, s, strlen(s));
	fputc('"', out);
}

static void
dump_hostport(FILE *out, const struct config_hostport *hp)
{
	int v6 = strchr(hp->host, ':') != NULL;

	fprintf(out, "\"%s%s%s:%u\"", v6 ? "[" : "", hp->host, v6 ? "]" : "", hp->port);
}

static void
dump_cidr(FILE *out, const struct config_cidr *c)
{
	char abuf[NET_ADDRSTRLEN];

	fprintf(out, "\"%s/%u\"",
	    net_addr_format((const struct sockaddr *)&c->addr, abuf, sizeof(abuf)), c->prefix);
}

static void
dump_cidrs(FILE *out, const char *key, const struct config_cidr *c, size_t n)
{
	fprintf(out, "    %s: [", key);
	for (size_t k = 0; k < n; k++) {
		fprintf(out, "%s", k ? ", " : "");
		dump_cidr(out, &c[k]);
	}
	fprintf(out, "]\n");
}

/* An address block with a port needs brackets for IPv6: "[::1/128]:443". */
static void
dump_allow_cidr(FILE *out, const struct config_allow *a)
{
	char abuf[NET_ADDRSTRLEN];
	int v6 = a->cidr.addr.ss_family == AF_INET6;

	net_addr_format((const struct sockaddr *)&a->cidr.addr, abuf, sizeof(abuf));
	if (a->port == 0)
		fprintf(out, "\"%s/%u\"", abuf, a->cidr.prefix);
	else
		fprintf(out, "\"%s%s/%u%s:%u\"", v6 ? "[" : "", abuf, a->cidr.prefix, v6 ? "]" : "",
		    a->port);
}

static void
dump_duration(FILE *out, const char *indent, const char *key, int64_t ms)
{
	char d[32];

	fprintf(out, "%s%s: %s\n", indent, key, config_format_duration(ms, d, sizeof(d)));
}

static void
dump_http(FILE *out, const struct config_http *h)
{
	fprintf(out, "    http:\n      trusted: [");
	for (size_t k = 0; k < h->n_trusted; k++) {
		fprintf(out, "%s", k ? ", " : "");
		dump_cidr(out, &h->trusted[k]);
	}
	fprintf(out, "]\n");
	fprintf(out, "      x_forwarded_for: %s\n", h->x_forwarded_for ? "true" : "false");
	fprintf(out, "      x_forwarded_proto: %s\n", h->x_forwarded_proto ? "true" : "false");
	fprintf(out, "      x_forwarded_host: %s\n", h->x_forwarded_host ? "true" : "false");
	fprintf(out, "      x_real_ip: %s\n", h->x_real_ip ? "true" : "false");
	fprintf(out, "      forwarded: %s\n", h->forwarded ? "true" : "false");
	if (h->max_header_size % 1024 == 0)
		fprintf(out, "      max_header_size: %" PRId64 "k\n", h->max_header_size / 1024);
	else
		fprintf(out, "      max_header_size: %" PRId64 "\n", h->max_header_size);
	dump_duration(out, "      ", "header_timeout", h->header_timeout);
	dump_duration(out, "      ", "keepalive_timeout", h->keepalive_timeout);
	fprintf(out, "      max_requests_per_connection: %" PRId64 "\n", h->max_requests);
}

void
config_dump(const struct config *cfg, FILE *out)
{
	char abuf[NET_ADDRSTRLEN];

	if (cfg->workers == 0)
		fprintf(out, "workers: auto\n");
	else
		fprintf(out, "workers: %" PRId64 "\n", cfg->workers);
	if (cfg->user != NULL) {
		fprintf(out, "user: ");
		dump_string(out, cfg->user);
		fputc('\n', out);
	}
	if (cfg->group != NULL) {
		fprintf(out, "group: ");
		dump_string(out, cfg->group);
		fputc('\n', out);
	}
	if (cfg->allow_root)
		fprintf(out, "allow_root: true\n");
	fprintf(out, "log:\n  level: %s\n  format: %s\n", log_level_name(cfg->log.level),
	    log_format_name(cfg->log.format));
	fprintf(out, "resolver:\n  nameservers: [");
	for (size_t i = 0; i < cfg->resolver.nameservers.n; i++) {
		fprintf(out, "%s", i ? ", " : "");
		dump_string(out, cfg->resolver.nameservers.v[i]);
	}
	fprintf(out, "]\n");
	dump_duration(out, "  ", "refresh", cfg->resolver.refresh);
	dump_duration(out, "  ", "min_ttl", cfg->resolver.min_ttl);
	dump_duration(out, "  ", "timeout", cfg->resolver.timeout);
	fprintf(out, "defaults:\n  splice: %s\n", splice_names[cfg->defaults.splice]);
	dump_duration(out, "  ", "sniff_timeout", cfg->defaults.sniff_timeout);
	dump_duration(out, "  ", "connect_timeout", cfg->defaults.connect_timeout);
	dump_duration(out, "  ", "idle_timeout", cfg->defaults.idle_timeout);
	fprintf(out, "  max_connections: %" PRId64 "\n", cfg->defaults.max_connections);
	dump_duration(out, "  ", "drain_timeout", cfg->defaults.drain_timeout);
	if (cfg->admin_listen.len > 0)
		fprintf(out, "admin:\n  listen: \"%s\"\n",
		    net_format((const struct sockaddr *)&cfg->admin_listen.ss, abuf, sizeof(abuf)));
	fprintf(out, "listeners:\n");
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];

		fprintf(out, "  - name: ");
		dump_string(out, l->name);
		fprintf(out, "\n    listen: \"%s\"\n    mode: %s\n",
		    net_format((const struct sockaddr *)&l->listen.ss, abuf, sizeof(abuf)),
		    config_mode_name(l->mode));
		if (l->upstream.host != NULL) {
			fprintf(out, "    upstream: ");
			dump_hostport(out, &l->upstream);
			fputc('\n', out);
		}
		if (l->n_routes > 0)
			fprintf(out, "    routes:\n");
		for (size_t j = 0; j < l->n_routes; j++) {
			const struct config_route *rt = &l->routes[j];
			fprintf(out, "      - match: [");
			for (size_t k = 0; k < rt->match.n; k++) {
				fprintf(out, "%s", k ? ", " : "");
				dump_string(out, rt->match.v[k]);
			}
			fprintf(out, "]\n        upstream: ");
			dump_hostport(out, &rt->upstream);
			fputc('\n', out);
			if (rt->send != CONFIG_PROXY_INHERIT)
				fprintf(out, "        proxy_protocol: {send: %s}\n",
				    send_names[rt->send]);
		}
		fprintf(out, "    proxy_protocol:\n      accept: %s\n      trusted: [",
		    l->proxy.accept ? "true" : "false");
		for (size_t k = 0; k < l->proxy.n_trusted; k++) {
			fprintf(out, "%s", k ? ", " : "");
			dump_cidr(out, &l->proxy.trusted[k]);
		}
		fprintf(out, "]\n      send: %s\n", send_names[l->proxy.send]);
		/* connect: an empty list is deny-all, and must stay said */
		if (l->n_allow > 0 || l->mode == CONFIG_MODE_CONNECT) {
			fprintf(out, "    allow: [");
			for (size_t k = 0; k < l->n_allow; k++) {
				const struct config_allow *a = &l->allow[k];
				fprintf(out, "%s", k ? ", " : "");
				if (a->pattern != NULL && a->port != 0)
					fprintf(out, "\"%s:%u\"", a->pattern, a->port);
				else if (a->pattern != NULL)
					dump_string(out, a->pattern);
				else
					dump_allow_cidr(out, a);
			}
			fprintf(out, "]\n");
		}
		if (l->port != 0)
			fprintf(out, "    port: %" PRId64 "\n", l->port);
		fprintf(out, "    egress: %s\n", l->egress ? "true" : "false");
		dump_cidrs(out, "allow_ranges", l->allow_ranges, l->n_allow_ranges);
		dump_cidrs(out, "deny_ranges", l->deny_ranges, l->n_deny_ranges);
		if (l->proxy_auth.n > 0) {
			/* Passwords are not printed. */
			fprintf(out, "    proxy_auth: [");
			for (size_t k = 0; k < l->proxy_auth.n; k++) {
				const char *cred = l->proxy_auth.v[k];
				fprintf(out, "%s\"", k ? ", " : "");
				dump_chars(out, cred, (size_t)(strchr(cred, ':') - cred));
				fprintf(out, ":***\"");
			}
			fprintf(out, "]\n");
		}
		fprintf(out, "    splice: %s\n", splice_names[l->splice]);
		dump_duration(out, "    ", "sniff_timeout", l->sniff_timeout);
		dump_duration(out, "    ", "connect_timeout", l->connect_timeout);
		dump_duration(out, "    ", "idle_timeout", l->idle_timeout);
		fprintf(out, "    max_connections: %" PRId64 "\n", l->max_connections);
		if (l->mode == CONFIG_MODE_HTTP)
			dump_http(out, &l->http);
	}
}

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
			strlist_clear(&l->routes[j].match);
			free(l->routes[j].upstream.host);
		}
		free(l->routes);
		free(l->proxy.trusted);
		for (size_t j = 0; j < l->n_allow; j++)
			free(l->allow[j].pattern);
		free(l->allow);
		free(l->allow_ranges);
		free(l->deny_ranges);
		free(l->http.trusted);
		strlist_clear(&l->proxy_auth);
		strlist_clear(&l->proxy_auth_b64);
		free(l->name);
		free(l->upstream.host);
	}
	free(cfg->listeners);
	strlist_clear(&cfg->resolver.nameservers);
	free(cfg->user);
	free(cfg->group);
	free(cfg->path);
	free(cfg);
}
