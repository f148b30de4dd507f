/*
 * learn.c: from what report mode observed to an allowlist.
 *
 * The /observed answer is read with a small JSON reader that knows only
 * what observed_json writes (an array of flat objects of strings, numbers
 * and null), and refuses anything else rather than guessing. The entries
 * of one listener are merged by what the allow entry would say (the name,
 * and in mode connect its port), optionally collapsed into "*.suffix"
 * where enough siblings were seen under a suffix that no stranger can
 * register under, sorted, and written as an `allow:` block whose every
 * line carries its count and sources as a comment.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "learn.h"

/* One object of the /observed array. */
struct obs {
	char listener[64], mode[16], name[256], source[64], reason[32], first[40], last[40];
	int has_name;
	unsigned port;
	uint64_t count;
};

/* One allow entry to suggest: a name (or "*.suffix") and its port, with what it covers. */
struct suggestion {
	char text[300]; /* as written in the allow list */
	char suffix[256];
	uint64_t count;
	unsigned names, port; /* names merged into it; the port (connect) */
	int mapping;	      /* {match, sources}: something was refused for its source */
	int gone;	      /* collapsed into another */
	const struct obs **seen;
	size_t n_seen;
};

/* ---- reading the JSON ---- */

struct reader {
	const char *p, *end;
};

static void
skip_ws(struct reader *r)
{
	while (r->p < r->end && isspace((unsigned char)*r->p))
		r->p++;
}

static int
take(struct reader *r, char c)
{
	skip_ws(r);
	if (r->p < r->end && *r->p == c) {
		r->p++;
		return 1;
	}
	return 0;
}

/* read_string reads a JSON string into buf (cap bytes, cut short if longer). Returns 0 or -1. */
static int
read_string(struct reader *r, char *buf, size_t cap)
{
	size_t n = 0;

	if (!take(r, '"'))
		return -1;
	while (r->p < r->end && *r->p != '"') {
		char c = *r->p++;
		if (c == '\\') {
			if (r->p >= r->end)
				return -1;
			c = *r->p++;
			if (c == 'u') {
				unsigned v = 0;
				for (int i = 0; i < 4; i++, r->p++) {
					if (r->p >= r->end || !isxdigit((unsigned char)*r->p))
						return -1;
					v = v * 16 +
					    (unsigned)(isdigit((unsigned char)*r->p)
							   ? *r->p - '0'
							   : (tolower((unsigned char)*r->p) - 'a' +
							      10));
				}
				c = v < 0x80 && v >= 0x20 ? (char)v : '?';
			} else if (c == 'n' || c == 't' || c == 'r' || c == 'b' || c == 'f') {
				c = '?';
			}
		}
		if (n + 1 < cap)
			buf[n++] = c;
	}
	buf[n] = '\0';
	return take(r, '"') ? 0 : -1;
}

static int
read_number(struct reader *r, uint64_t *v)
{
	skip_ws(r);
	if (r->p >= r->end || !isdigit((unsigned char)*r->p))
		return -1;
	*v = 0;
	while (r->p < r->end && isdigit((unsigned char)*r->p))
		*v = *v * 10 + (uint64_t)(*r->p++ - '0');
	return 0;
}

/* read_object reads one observation; unknown keys with string or number values are skipped. */
static int
read_object(struct reader *r, struct obs *o)
{
	char key[32], skip[300];
	uint64_t num;

	memset(o, 0, sizeof(*o));
	if (!take(r, '{'))
		return -1;
	if (take(r, '}'))
		return 0;
	do {
		if (read_string(r, key, sizeof(key)) == -1 || !take(r, ':'))
			return -1;
		skip_ws(r);
		if (strcmp(key, "name") == 0 && r->end - r->p >= 4 &&
		    strncmp(r->p, "null", 4) == 0) {
			r->p += 4;
			continue;
		}
		if (r->p < r->end && *r->p == '"') {
			char *dst = strcmp(key, "listener") == 0     ? o->listener
				    : strcmp(key, "mode") == 0	     ? o->mode
				    : strcmp(key, "name") == 0	     ? o->name
				    : strcmp(key, "source") == 0     ? o->source
				    : strcmp(key, "reason") == 0     ? o->reason
				    : strcmp(key, "first_seen") == 0 ? o->first
				    : strcmp(key, "last_seen") == 0  ? o->last
								     : skip;
			size_t cap = dst == o->listener ? sizeof(o->listener)
				     : dst == o->mode	? sizeof(o->mode)
				     : dst == o->name	? sizeof(o->name)
				     : dst == o->source ? sizeof(o->source)
				     : dst == o->reason ? sizeof(o->reason)
				     : dst == skip	? sizeof(skip)
							: sizeof(o->first);
			if (read_string(r, dst, cap) == -1)
				return -1;
			if (dst == o->name)
				o->has_name = o->name[0] != '\0';
		} else if (read_number(r, &num) == 0) {
			if (strcmp(key, "port") == 0)
				o->port = num <= 65535 ? (unsigned)num : 0;
			else if (strcmp(key, "count") == 0)
				o->count = num;
		} else {
			return -1;
		}
	} while (take(r, ','));
	return take(r, '}') ? 0 : -1;
}

/*
 * The answer may come from anywhere the operator pointed the command at,
 * and what is printed gets pasted into a config: a name that is not one
 * gatekeeper would have recorded (normalized: lower-case letters, digits,
 * '-', '_', '.', and ':' of an IPv6 literal), or a source that is not an
 * address, drops the observation rather than reach the output; the other
 * fields only ever land in comments, cleaned.
 */
static int
safe_name(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 253 || n[0] == '.' || n[0] == '-')
		return 0;
	return strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789-_.:") == len;
}

static int
safe_source(const char *a)
{
	size_t len = strlen(a);

	return len > 0 && strspn(a, "0123456789abcdefABCDEF.:") == len;
}

static void
clean(char *s)
{
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("._:@/+=-", *s) == NULL)
			*s = '?';
}

/* usable checks and cleans one observation; 0 drops it. */
static int
usable(struct obs *o)
{
	if ((o->has_name && !safe_name(o->name)) || !safe_source(o->source))
		return 0;
	clean(o->listener);
	clean(o->mode);
	clean(o->reason);
	clean(o->first);
	clean(o->last);
	return 1;
}

static struct obs *
read_all(const char *json, size_t len, size_t *n, char *why, size_t whylen)
{
	struct reader r = {json, json + len};
	struct obs *all = NULL, *grown;
	size_t cap = 0;

	*n = 0;
	if (!take(&r, '[')) {
		snprintf(why, whylen, "the answer is not a JSON array (is this /observed?)");
		return NULL;
	}
	if (take(&r, ']'))
		return calloc(1, sizeof(*all));
	do {
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((grown = realloc(all, cap * sizeof(*all))) == NULL) {
				snprintf(why, whylen, "out of memory");
				free(all);
				return NULL;
			}
			all = grown;
		}
		if (read_object(&r, &all[*n]) == -1) {
			snprintf(why, whylen, "malformed observation %zu in the answer", *n + 1);
			free(all);
			return NULL;
		}
		if (usable(&all[*n]))
			(*n)++;
	} while (take(&r, ','));
	if (!take(&r, ']')) {
		snprintf(why, whylen, "the answer's array does not end");
		free(all);
		return NULL;
	}
	return all;
}

/* ---- public suffixes ---- */

/*
 * Suffixes under which names belong to unrelated parties: country
 * second levels and shared hosting. Not the whole Public Suffix List; a
 * wildcard is only ever suggested, and a person reads it before pasting.
 */
static const char *const public_suffixes[] = {
    "ac.uk",
    "co.uk",
    "gov.uk",
    "ltd.uk",
    "me.uk",
    "net.uk",
    "org.uk",
    "plc.uk",
    "com.au",
    "net.au",
    "org.au",
    "edu.au",
    "gov.au",
    "co.nz",
    "org.nz",
    "net.nz",
    "co.jp",
    "ne.jp",
    "or.jp",
    "ac.jp",
    "co.kr",
    "or.kr",
    "com.br",
    "net.br",
    "org.br",
    "com.cn",
    "net.cn",
    "org.cn",
    "gov.cn",
    "com.hk",
    "com.tw",
    "com.sg",
    "com.my",
    "co.in",
    "net.in",
    "org.in",
    "co.id",
    "co.il",
    "co.za",
    "com.mx",
    "com.ar",
    "com.tr",
    "com.ua",
    "com.pl",
    "co.th",
    "com.vn",
    "com.ph",
    "com.pk",
    "com.eg",
    "com.sa",
    "com.es",
    "com.pt",
    "co.at",
    "or.at",
    "eu.org",
    "github.io",
    "githubusercontent.com",
    "gitlab.io",
    "herokuapp.com",
    "appspot.com",
    "blogspot.com",
    "cloudfront.net",
    "azurewebsites.net",
    "cloudapp.net",
    "netlify.app",
    "vercel.app",
    "pages.dev",
    "workers.dev",
    "web.app",
    "firebaseapp.com",
    "fly.dev",
    "onrender.com",
    "s3.amazonaws.com",
    "elasticbeanstalk.com",
    "ngrok.io",
    "ngrok-free.app",
    "glitch.me",
    "repl.co",
    "duckdns.org",
    "dyndns.org",
    "no-ip.org",
    "readthedocs.io",
    "pythonanywhere.com",
    "shopify.com",
    "myshopify.com",
    "wordpress.com",
    "tumblr.com",
    "azure-api.net",
    "trafficmanager.net",
    NULL,
};

int
learn_public_suffix(const char *suffix)
{
	if (strchr(suffix, '.') == NULL)
		return 1;
	for (size_t i = 0; public_suffixes[i] != NULL; i++)
		if (strcmp(suffix, public_suffixes[i]) == 0)
			return 1;
	/* compute.amazonaws.com and its regions: one per customer. */
	{
		size_t n = strlen(suffix), m = strlen(".amazonaws.com");
		if (n > m && strcmp(suffix + n - m, ".amazonaws.com") == 0)
			return 1;
	}
	return 0;
}

/* ---- suggesting ---- */

static int
is_ip(const char *name)
{
	return strchr(name, ':') != NULL || strspn(name, "0123456789.") == strlen(name);
}

static int
connect_mode(const struct obs *o)
{
	return strcmp(o->mode, "connect") == 0;
}

/* entry_text writes what the allow entry for name (and port) says. */
static void
entry_text(char *buf, size_t len, const char *name, unsigned port, int with_port)
{
	if (!with_port)
		snprintf(buf, len, "%s", name);
	else if (strchr(name, ':') != NULL)
		snprintf(buf, len, "[%s]:%u", name, port);
	else
		snprintf(buf, len, "%s:%u", name, port);
}

static int
add_seen(struct suggestion *s, const struct obs *o)
{
	const struct obs **grown = realloc(s->seen, (s->n_seen + 1) * sizeof(*grown));

	if (grown == NULL)
		return -1;
	s->seen = grown;
	s->seen[s->n_seen++] = o;
	s->count += o->count;
	s->mapping |= strcmp(o->reason, "not_allowed") != 0;
	return 0;
}

/* merge folds the observations of one listener into suggestions, one per entry text. */
static struct suggestion *
merge(const struct obs *all, size_t n, const char *listener, size_t *out_n)
{
	struct suggestion *s = calloc(n ? n : 1, sizeof(*s));
	size_t k = 0;

	*out_n = 0;
	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct obs *o = &all[i];
		char text[sizeof(s[0].text)];
		size_t j;
		if (strcmp(o->listener, listener) != 0 || !o->has_name)
			continue;
		entry_text(text, sizeof(text), o->name, o->port, connect_mode(o));
		for (j = 0; j < k && strcmp(s[j].text, text) != 0; j++)
			;
		if (j == k) {
			const char *dot = strchr(o->name, '.');
			snprintf(s[k].text, sizeof(s[k].text), "%s", text);
			snprintf(s[k].suffix, sizeof(s[k].suffix), "%s",
				 dot && !is_ip(o->name) ? dot + 1 : "");
			s[k].port = o->port;
			s[k].names = 1;
			k++;
		}
		if (add_seen(&s[j], o) == -1)
			return NULL;
	}
	*out_n = k;
	return s;
}

/*
 * collapse replaces N or more plain sibling entries under one suffix (and,
 * in mode connect, one port) by "*.suffix", unless the suffix is public.
 */
static void
collapse(struct suggestion *s, size_t n, unsigned at_least, int with_port)
{
	for (size_t i = 0; i < n && at_least > 0; i++) {
		unsigned siblings = 0;
		if (s[i].gone || s[i].mapping || s[i].suffix[0] == '\0' ||
		    learn_public_suffix(s[i].suffix))
			continue;
		for (size_t j = i; j < n; j++)
			siblings += !s[j].gone && !s[j].mapping && s[j].port == s[i].port &&
				    strcmp(s[j].suffix, s[i].suffix) == 0;
		if (siblings < at_least || siblings < 2)
			continue;
		for (size_t j = i + 1; j < n; j++) {
			if (s[j].gone || s[j].mapping || s[j].port != s[i].port ||
			    strcmp(s[j].suffix, s[i].suffix) != 0)
				continue;
			for (size_t m = 0; m < s[j].n_seen; m++)
				if (add_seen(&s[i], s[j].seen[m]) == -1)
					return;
			s[i].names += s[j].names;
			s[j].gone = 1;
		}
		{
			char wild[sizeof(s[i].suffix) + 2];
			snprintf(wild, sizeof(wild), "*.%s", s[i].suffix);
			entry_text(s[i].text, sizeof(s[i].text), wild, s[i].port, with_port);
		}
	}
}

static int
by_text(const void *a, const void *b)
{
	return strcmp(((const struct suggestion *)a)->text, ((const struct suggestion *)b)->text);
}

/*
 * sources_text writes the distinct sources of s: for a comment at most
 * five, then how many more; bare: every one, quoted, for a YAML list.
 */
static void
sources_text(const struct suggestion *s, char *buf, size_t len, int bare)
{
	size_t off = 0, shown = 0, distinct = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < s->n_seen; i++) {
		size_t j;
		for (j = 0; j < i && strcmp(s->seen[j]->source, s->seen[i]->source) != 0; j++)
			;
		if (j < i)
			continue;
		distinct++;
		if (shown == 5 && !bare)
			continue;
		if (off < len)
			off += (size_t)snprintf(buf + off, len - off, bare ? "%s\"%s\"" : "%s%s",
						shown ? ", " : "", s->seen[i]->source);
		shown++;
	}
	if (distinct > shown && off < len)
		snprintf(buf + off, len - off, " and %zu more", distinct - shown);
}

static void
write_entry(FILE *out, const struct suggestion *s)
{
	char from[1024], all_sources[4096];
	int quote = s->text[0] == '*' || s->text[0] == '[';

	sources_text(s, from, sizeof(from), 0);
	fprintf(out, "  - ");
	if (s->mapping) {
		sources_text(s, all_sources, sizeof(all_sources), 1);
		fprintf(out, "{match: \"%s\", sources: [%s]}", s->text, all_sources);
	} else {
		fprintf(out, quote ? "\"%s\"" : "%s", s->text);
	}
	fprintf(out, "  # ");
	if (s->names > 1)
		fprintf(out, "%u names, ", s->names);
	fprintf(out, "%" PRIu64 " connection%s from %s\n", s->count, s->count == 1 ? "" : "s",
		from);
}

static int
print_listener(const struct obs *all, size_t n, const char *listener, unsigned collapse_at,
	       FILE *out)
{
	size_t k = 0, nameless = 0;
	struct suggestion *s = merge(all, n, listener, &k);
	const char *mode = "";
	uint64_t total = 0;

	if (s == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (strcmp(all[i].listener, listener) == 0) {
			mode = all[i].mode;
			total += all[i].count;
			nameless += !all[i].has_name;
		}
	collapse(s, k, collapse_at, strcmp(mode, "connect") == 0);
	qsort(s, k, sizeof(*s), by_text);
	fprintf(out,
		"# listener %s (%s): %" PRIu64 " connection%s that enforce mode would refuse\n",
		listener, mode, total, total == 1 ? "" : "s");
	fprintf(out, k > 0 ? "allow:\n" : "allow: []\n");
	for (size_t i = 0; i < k; i++)
		if (!s[i].gone)
			write_entry(out, &s[i]);
	for (size_t i = 0; i < n && nameless > 0; i++)
		if (strcmp(all[i].listener, listener) == 0 && !all[i].has_name)
			fprintf(out,
				"# %s: %" PRIu64
				" connection%s naming nothing (%s): add the source "
				"to the listener's sources\n",
				all[i].source, all[i].count, all[i].count == 1 ? "" : "s",
				all[i].reason);
	for (size_t i = 0; i < k; i++)
		free(s[i].seen);
	free(s);
	return 0;
}

static void
json_string(FILE *out, const char *v)
{
	fputc('"', out);
	for (; *v != '\0'; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void
print_json(const struct obs *all, size_t n, const char *listener, FILE *out)
{
	size_t shown = 0;

	fprintf(out, "[");
	for (size_t i = 0; i < n; i++) {
		const struct obs *o = &all[i];
		if (listener != NULL && strcmp(o->listener, listener) != 0)
			continue;
		fprintf(out, "%s\n  {\"listener\": ", shown++ ? "," : "");
		json_string(out, o->listener);
		fprintf(out, ", \"mode\": ");
		json_string(out, o->mode);
		fprintf(out, ", \"name\": ");
		if (o->has_name)
			json_string(out, o->name);
		else
			fprintf(out, "null");
		fprintf(out, ", \"port\": %u, \"source\": ", o->port);
		json_string(out, o->source);
		fprintf(out, ", \"reason\": ");
		json_string(out, o->reason);
		fprintf(out, ", \"count\": %" PRIu64 ", \"first_seen\": ", o->count);
		json_string(out, o->first);
		fprintf(out, ", \"last_seen\": ");
		json_string(out, o->last);
		fprintf(out, "}");
	}
	fprintf(out, "%s]\n", shown ? "\n" : "");
}

int
learn_print(const char *json, size_t len, const struct learn_options *o, FILE *out, char *why,
	    size_t whylen)
{
	size_t n, blocks = 0;
	struct obs *all = read_all(json, len, &n, why, whylen);
	int rc = 0;

	if (all == NULL)
		return -1;
	if (o->format == LEARN_JSON) {
		print_json(all, n, o->listener, out);
		free(all);
		return 0;
	}
	if (o->listener != NULL) {
		rc = print_listener(all, n, o->listener, o->collapse, out);
		blocks = 1;
	} else {
		/* One block per listener, in the order they first appear (the busiest first). */
		for (size_t i = 0; i < n && rc == 0; i++) {
			size_t j;
			for (j = 0; j < i && strcmp(all[j].listener, all[i].listener) != 0; j++)
				;
			if (j < i)
				continue;
			if (blocks++ > 0)
				fputc('\n', out);
			rc = print_listener(all, n, all[i].listener, o->collapse, out);
		}
	}
	if (blocks == 0)
		fprintf(out,
			"# nothing observed: no listener in action: report refused anything yet\n");
	if (rc == -1)
		snprintf(why, whylen, "out of memory");
	free(all);
	return rc;
}
