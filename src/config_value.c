/*
 * config_value.c: text -> value, one small parser per key type.
 *
 * key_parse dispatches on the entry's type to a parser that checks the
 * text, stores the value where the entry says, and otherwise writes a
 * message that names the key, quotes the text and says what would be
 * accepted. The YAML reader, quick mode and the defaults all come through
 * here, so a value means the same wherever it is written. For a list type
 * a parser adds one item; the caller splits.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "config_impl.h"
#include "net.h"
#include "route.h"

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

int
config_strlist_add(struct config_strlist *l, const char *s)
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

void
config_strlist_clear(struct config_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int
nomem(char *err, size_t errlen)
{
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* ---- address blocks and allow entries ---- */

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
	if ((a->pattern = strdup(host)) == NULL)
		return nomem(err, errlen);
	return 0;
bad:
	snprintf(err, errlen,
		 "invalid allow entry '%s' (use a name, '*.example.com', an address "
		 "or ADDRESS/PREFIX, each optionally with :PORT)",
		 text);
	return -1;
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
		snprintf(err, errlen,
			 "invalid nameserver '%s' (use an IP address, optionally with "
			 ":PORT, like 127.0.0.11 or 127.0.0.1:5353)",
			 text);
		return -1;
	}
	return 0;
}

/*
 * utf8_valid: 1 if s is well-formed UTF-8 (no overlong forms, surrogates or
 * code points past U+10FFFF). A file is UTF-8 by the time libyaml hands it
 * over; an option or a variable may hold any bytes, and those could not be
 * written back as YAML by the dump.
 */
static int
utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		unsigned c = *p, n, cp;
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return 0;
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
		p += n + 1;
	}
	return 1;
}

static int
not_utf8(const struct key *k, char *err, size_t errlen)
{
	snprintf(err, errlen, "'%s' must be UTF-8 text", k->name);
	return -1;
}

/* ---- one parser per type ---- */

typedef int (*parse_fn)(const struct key *k, const char *text, void *dst, char *err, size_t errlen);

static int
parse_string(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	char **s = dst;

	if (*text == '\0') {
		snprintf(err, errlen, "'%s' must not be empty", k->name);
		return -1;
	}
	if (!utf8_valid(text))
		return not_utf8(k, err, errlen);
	free(*s);
	if ((*s = strdup(text)) == NULL)
		return nomem(err, errlen);
	return 0;
}

static int
parse_duration_key(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	char lo[32], hi[32];
	int64_t v;

	if (config_parse_duration(text, &v) == -1) {
		snprintf(err, errlen,
			 "invalid duration '%s' for '%s' (use a whole number with ms, "
			 "s, m or h, like 250ms, 5s or 10m)",
			 text, k->name);
		return -1;
	}
	if (v < k->min || v > k->max) {
		snprintf(err, errlen, "'%s' must be between %s and %s, not '%s'", k->name,
			 config_format_duration(k->min, lo, sizeof(lo)),
			 config_format_duration(k->max, hi, sizeof(hi)), text);
		return -1;
	}
	*(int64_t *)dst = v;
	return 0;
}

static int
parse_count_key(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	int64_t v;

	if (parse_count(text, &v) == -1 || v < k->min || v > k->max) {
		snprintf(err, errlen,
			 "invalid number '%s' for '%s' (use a whole number from %" PRId64
			 " to %" PRId64 ")",
			 text, k->name, k->min, k->max);
		return -1;
	}
	*(int64_t *)dst = v;
	return 0;
}

static int
parse_workers(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	if (strcmp(text, "auto") == 0) {
		*(int64_t *)dst = 0;
		return 0;
	}
	return parse_count_key(k, text, dst, err, errlen);
}

static int
parse_size_key(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	int64_t v;

	if (config_parse_size(text, &v) == -1 || v < k->min || v > k->max) {
		snprintf(err, errlen,
			 "invalid size '%s' for '%s' (use bytes, or k or m, from %" PRId64
			 " to %" PRId64 " bytes, like 16k)",
			 text, k->name, k->min, k->max);
		return -1;
	}
	*(int64_t *)dst = v;
	return 0;
}

static int
parse_enum(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	size_t n;

	for (int i = 0; k->choices[i] != NULL; i++) {
		if (strcmp(k->choices[i], text) == 0) {
			*(int *)dst = i;
			return 0;
		}
	}
	snprintf(err, errlen, "invalid %s '%s' (use ", k->name, text);
	for (size_t i = 0; k->choices[i] != NULL; i++) {
		n = strlen(err);
		snprintf(err + n, errlen - n, "%s%s",
			 i == 0		     ? ""
			 : k->choices[i + 1] ? ", "
					     : " or ",
			 k->choices[i]);
	}
	n = strlen(err);
	snprintf(err + n, errlen - n, ")");
	return -1;
}

static int
parse_bool(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0 || strcmp(text, "on") == 0)
		*(int *)dst = 1;
	else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0 || strcmp(text, "off") == 0)
		*(int *)dst = 0;
	else {
		snprintf(err, errlen, "invalid value '%s' for '%s' (use true or false)", text,
			 k->name);
		return -1;
	}
	return 0;
}

static int
parse_listen(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	struct config_addr *a = dst;
	char host[NET_HOSTMAX + 1];
	uint16_t port;

	(void)k;
	if (net_split_hostport(text, host, sizeof(host), &port, err, errlen) == -1) {
		size_t n = strlen(err);
		snprintf(err + n, errlen - n,
			 " in listen '%s' (use IP:PORT with a port from 0 to "
			 "65535, like 0.0.0.0:80 or [::]:80)",
			 text);
		return -1;
	}
	if (host[0] == '\0')
		strcpy(host, "0.0.0.0");
	if (net_parse_ip(host, port, &a->ss, &a->len) == -1) {
		snprintf(err, errlen,
			 "invalid listen address '%s': '%s' is not an IP address (use "
			 "IP:PORT, like 0.0.0.0:80, [::]:80 or 127.0.0.1:8080)",
			 text, host);
		return -1;
	}
	return 0;
}

static int
parse_upstream(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	struct config_hostport *hp = dst;
	char host[NET_HOSTMAX + 1];
	struct sockaddr_storage ss;
	socklen_t len;
	uint16_t port;

	(void)k;
	if (net_split_hostport(text, host, sizeof(host), &port, err, errlen) == -1) {
		size_t n = strlen(err);
		snprintf(err + n, errlen - n,
			 " in upstream '%s' (use HOST:PORT with a port from 1 "
			 "to 65535, like whoami:80 or [::1]:8080)",
			 text);
		return -1;
	}
	if (port == 0) {
		snprintf(err, errlen, "invalid port '0' in upstream '%s' (use 1-65535)", text);
		return -1;
	}
	hp->sniffed_host = strcmp(host, "$host") == 0;
	if (!hp->sniffed_host && net_parse_ip(host, port, &ss, &len) == -1 &&
	    !net_valid_hostname(host)) {
		snprintf(err, errlen,
			 "invalid host '%s' in upstream '%s' (use a DNS name or an IP "
			 "address)",
			 host, text);
		return -1;
	}
	free(hp->host);
	if ((hp->host = strdup(host)) == NULL)
		return nomem(err, errlen);
	hp->port = port;
	return 0;
}

/* A nameserver value may hold several, separated by commas or spaces. */
static int
parse_addrlist(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	char *copy = strdup(text), *save = NULL, *tok;
	int rc = 0;

	(void)k;
	if (copy == NULL)
		return nomem(err, errlen);
	for (tok = strtok_r(copy, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		if (parse_nameserver(tok, err, errlen) == -1) {
			rc = -1;
			break;
		}
		if (config_strlist_add(dst, tok) == -1) {
			rc = nomem(err, errlen);
			break;
		}
	}
	free(copy);
	return rc;
}

static int
parse_cidr_item(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	struct config_cidr **cidrs = dst, *grown, c;
	size_t *n = (size_t *)((char *)dst - k->off + k->n_off);

	if (parse_cidr(text, &c) == -1) {
		snprintf(err, errlen,
			 "invalid address block '%s' in '%s' (use an address or "
			 "ADDRESS/PREFIX, like 10.0.0.0/8 or ::1/128)",
			 text, k->name);
		return -1;
	}
	if ((grown = realloc(*cidrs, (*n + 1) * sizeof(**cidrs))) == NULL)
		return nomem(err, errlen);
	*cidrs = grown;
	grown[(*n)++] = c;
	return 0;
}

static int
parse_pattern(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	(void)k;
	if (route_pattern_check(text, err, errlen) == -1)
		return -1;
	if (config_strlist_add(dst, text) == -1)
		return nomem(err, errlen);
	return 0;
}

static int
parse_allow_item(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	struct config_allow **allows = dst, *grown, a;
	size_t *n = (size_t *)((char *)dst - k->off + k->n_off);

	if (parse_allow(text, &a, err, errlen) == -1)
		return -1;
	if ((grown = realloc(*allows, (*n + 1) * sizeof(**allows))) == NULL) {
		free(a.pattern);
		return nomem(err, errlen);
	}
	*allows = grown;
	grown[(*n)++] = a;
	return 0;
}

/*
 * looks_numeric: the last label of name is all digits, as in an address
 * mistyped ("300.1.1.1", "10.0.0"): not a name anybody means.
 */
static int
looks_numeric(const char *name)
{
	const char *last = strrchr(name, '.');

	last = last ? last + 1 : name;
	if (*last == '\0')
		return 0;
	for (; *last != '\0'; last++)
		if (!isdigit((unsigned char)*last))
			return 0;
	return 1;
}

/* A source: an address block (an address is a /32 or /128), or a name resolved at run time. */
static int
parse_source_item(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	struct config_sources *src = dst;
	struct config_cidr c, *grown;
	char name[NET_HOSTMAX + 1];
	size_t len = strlen(text);

	if (parse_cidr(text, &c) == 0) {
		if ((grown = realloc(src->blocks, (src->n_blocks + 1) * sizeof(*grown))) == NULL)
			return nomem(err, errlen);
		src->blocks = grown;
		grown[src->n_blocks++] = c;
		return 0;
	}
	if (len > 0 && text[len - 1] == '.')
		len--; /* "traefik." is traefik */
	if (len == 0 || len >= sizeof(name) || strchr(text, '/') != NULL)
		goto bad;
	for (size_t i = 0; i < len; i++)
		name[i] = (char)tolower((unsigned char)text[i]);
	name[len] = '\0';
	if (!net_valid_hostname(name) || looks_numeric(name))
		goto bad;
	if (config_strlist_add(&src->names, name) == -1)
		return nomem(err, errlen);
	return 0;
bad:
	snprintf(err, errlen,
		 "invalid source '%s' in '%s' (use a name, an address or ADDRESS/PREFIX, like "
		 "traefik, 172.30.5.0/24 or ::1)",
		 text, k->name);
	return -1;
}

/* The 'match' of an allow entry's mapping form: parsed as a plain entry, into the entry itself. */
static int
parse_allow_match(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	struct config_allow *a = dst, parsed;

	(void)k;
	if (parse_allow(text, &parsed, err, errlen) == -1)
		return -1;
	free(a->pattern);
	a->pattern = parsed.pattern;
	a->cidr = parsed.cidr;
	a->port = parsed.port;
	return 0;
}

static int
parse_credentials(const struct key *k, const char *text, void *dst, char *err, size_t errlen)
{
	if (strchr(text, ':') == NULL || text[0] == ':') {
		snprintf(err, errlen, "invalid credentials in '%s' (use \"USER:PASSWORD\")",
			 k->name);
		return -1;
	}
	if (!utf8_valid(text))
		return not_utf8(k, err, errlen);
	if (config_strlist_add(dst, text) == -1)
		return nomem(err, errlen);
	return 0;
}

static const parse_fn parsers[K_NTYPES] = {
    [K_STRING] = parse_string,
    [K_DURATION] = parse_duration_key,
    [K_COUNT] = parse_count_key,
    [K_SIZE] = parse_size_key,
    [K_ENUM] = parse_enum,
    [K_LISTEN] = parse_listen,
    [K_UPSTREAM] = parse_upstream,
    [K_ADDRLIST] = parse_addrlist,
    [K_BOOL] = parse_bool,
    [K_CIDRLIST] = parse_cidr_item,
    [K_PATTERNS] = parse_pattern,
    [K_ALLOWLIST] = parse_allow_item,
    [K_CREDENTIALS] = parse_credentials,
    [K_SOURCES] = parse_source_item,
    [K_ALLOW_MATCH] = parse_allow_match,
    [K_WORKERS] = parse_workers,
};

int
key_parse(const struct key *k, const char *text, void *base, char *err, size_t errlen)
{
	if (parsers[k->type] == NULL) {
		snprintf(err, errlen, "'%s' is not a single value", k->name);
		return -1;
	}
	return parsers[k->type](k, text, (char *)base + k->off, err, errlen);
}

void
key_clear(const struct key *k, void *base)
{
	void *dst = (char *)base + k->off;
	size_t *n = (size_t *)((char *)base + k->n_off);

	switch (k->type) {
	case K_ADDRLIST:
	case K_PATTERNS:
	case K_CREDENTIALS:
		config_strlist_clear(dst);
		break;
	case K_SOURCES:
		config_sources_clear(dst);
		break;
	case K_ALLOWLIST:
		for (size_t i = 0; i < *n; i++)
			config_allow_clear(&(*(struct config_allow **)dst)[i]);
		/* FALLTHROUGH */
	case K_CIDRLIST:
		free(*(void **)dst);
		*(void **)dst = NULL;
		*n = 0;
		break;
	default:
		break;
	}
}

int
key_defaults(const struct key *table, void *base)
{
	char err[256];

	for (const struct key *k = table; k->name != NULL; k++) {
		void *dst = (char *)base + k->off;

		if (k->type == K_SECTION) {
			if (key_defaults(k->sub, base) == -1)
				return -1;
		} else if (k->flags & KF_INHERIT) {
			if (k->type == K_ENUM || k->type == K_BOOL)
				*(int *)dst = CONFIG_UNSET;
			else
				*(int64_t *)dst = CONFIG_UNSET;
		} else if (k->def != NULL && key_parse(k, k->def, base, err, sizeof(err)) == -1) {
			return -1;
		}
	}
	return 0;
}
