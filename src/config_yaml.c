/*
 * config_yaml.c: a YAML file (libyaml) -> the configuration model.
 *
 * The file is loaded as a libyaml document tree, so every node carries its
 * line and column, then walked through the key tables of config_keys.c:
 * each key of a mapping is looked up in its table (an unknown one gets a
 * did-you-mean), and its value goes to the entry's parser. Before the walk,
 * ${NAME} and ${NAME:-default} in every value (keys excepted) are replaced
 * from the environment, once, in the document itself, so the walk and its
 * messages see the expanded text. Errors are FILE:LINE:COL: message, every
 * one of them; then config_validate (config.c) checks the whole, as it
 * does for quick mode.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_impl.h"

static void report_node(struct report *r, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* report_node reports at node's position (none when node is NULL). */
static void
report_node(struct report *r, const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (node == NULL)
		report_verror(r, 0, 0, fmt, ap);
	else
		report_verror(r, (int)node->start_mark.line + 1, (int)node->start_mark.column + 1,
			      fmt, ap);
	va_end(ap);
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
			snprintf(err, errlen,
				 "unterminated '${' in '%.*s' (end it with '}', or "
				 "write '$${' for a literal '${')",
				 (int)(len - i > 64 ? 64 : len - i), text + i);
			goto fail;
		}
		blen = (size_t)(close - body);
		sep = memmem(body, blen, ":-", 2);
		nlen = sep != NULL ? (size_t)(sep - body) : blen;
		if (!env_name_valid(body, nlen)) {
			snprintf(err, errlen,
				 "invalid environment variable name '%.*s' in '%.*s' "
				 "(use letters, digits and '_', not starting with a "
				 "digit, as in ${NAME} or ${NAME:-default})",
				 (int)(nlen > 64 ? 64 : nlen), body,
				 (int)(blen + 3 > 80 ? 80 : blen + 3), text + i);
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
			snprintf(err, errlen,
				 "environment variable '%s' is not set (set it, or "
				 "give a default: ${%s:-value})",
				 name, name);
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

/* ---- the YAML walk ---- */

struct walk {
	struct report *report;
	yaml_document_t *doc;
	struct config *cfg;
	const unsigned char *flags; /* per node, from expand_values */
	const yaml_node_t *min_ttl; /* for the cross-key check min_ttl <= refresh */
	int listeners_bad;	    /* 'listeners' was not a list: reported already */
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
#define NODE_KEY    1 /* a mapping key: not expanded */
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
		report_node(r, NULL, "out of memory");
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
			report_node(r, v, "%s", err);
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

/*
 * walk_items reads a list of mappings (listeners, or a listener's routes):
 * each item becomes a new element, described by k->sub, that remembers
 * where it was defined.
 */
static void
walk_items(struct walk *w, const struct key *k, const yaml_node_t *val, void *base,
	   const char *where)
{
	if (val->type != YAML_SEQUENCE_NODE) {
		report_node(w->report, val, "'%s' must be a list (each item starts with '- ')",
			    k->name);
		if (k->type == K_LISTENERS)
			w->listeners_bad = 1;
		return;
	}
	for (yaml_node_item_t *it = val->data.sequence.items.start;
	     it < val->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(w->doc, *it);
		unsigned *seen;
		char sub[96];
		void *elem;
		int *line, *col;

		if (k->type == K_LISTENERS) {
			struct config_listener *l = config_add_listener(w->cfg);
			if (l == NULL)
				goto nomem;
			snprintf(sub, sizeof(sub), "listeners[%zu]", w->cfg->n_listeners - 1);
			elem = l, seen = &l->seen, line = &l->line, col = &l->col;
		} else {
			struct config_listener *l = base;
			struct config_route *r = config_add_route(l);
			if (r == NULL)
				goto nomem;
			snprintf(sub, sizeof(sub), "%s.routes[%zu]", where, l->n_routes - 1);
			elem = r, seen = &r->seen, line = &r->line, col = &r->col;
		}
		*line = (int)item->start_mark.line + 1;
		*col = (int)item->start_mark.column + 1;
		if (item->type == YAML_MAPPING_NODE) {
			*seen = walk_mapping(w, item, k->sub, elem, sub);
		} else {
			report_node(w->report, item, "%s must be a mapping, not %s", sub,
				    node_kind(item));
			*seen = ~0u; /* reported once: no "missing key" errors for it */
		}
	}
	return;
nomem:
	report_node(w->report, val, "out of memory");
}

/*
 * walk_allow_mapping reads an allow entry in its mapping form,
 * {match: ENTRY, sources: [...]}, into a new entry of listener base.
 */
static void
walk_allow_mapping(struct walk *w, const yaml_node_t *item, void *base)
{
	struct config_listener *l = base;
	struct config_allow *a = config_add_allow(l);
	char where[96];
	unsigned seen;

	if (a == NULL) {
		report_node(w->report, item, "out of memory");
		return;
	}
	a->line = (int)item->start_mark.line + 1;
	a->col = (int)item->start_mark.column + 1;
	snprintf(where, sizeof(where), "allow[%zu]", l->n_allow - 1);
	seen = walk_mapping(w, item, config_allow_keys, a, where);
	if (!(seen & key_bit(config_allow_keys, "match")))
		report_node(
		    w->report, item,
		    "%s needs 'match' (like {match: \"*.example.com\", sources: [builder]})",
		    where);
}

/* walk_list reads a list value: a YAML list of single values, each one item. */
static void
walk_list(struct walk *w, const struct key *k, const yaml_node_t *val, void *base)
{
	char err[512];

	for (yaml_node_item_t *it = val->data.sequence.items.start;
	     it < val->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(w->doc, *it);
		if (k->type == K_ALLOWLIST && item->type == YAML_MAPPING_NODE) {
			walk_allow_mapping(w, item, base);
			continue;
		}
		if (item->type != YAML_SCALAR_NODE) {
			report_node(w->report, item,
				    k->type == K_ALLOWLIST
					? "'%s' items must be entries or {match, sources} mappings"
					: "'%s' items must be single values",
				    k->name);
			continue;
		}
		if (expand_failed(w, item))
			continue;
		if (key_parse(k, scalar(item), base, err, sizeof(err)) == -1)
			report_node(w->report, item, "%s", err);
	}
}

static void
walk_value(struct walk *w, const struct key *k, const yaml_node_t *val, void *base,
	   const char *where)
{
	char err[512];

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
			report_node(w->report, val, "'%s' must be a mapping, not %s", k->name,
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
		walk_items(w, k, val, base, where);
		return;
	}
	if (key_is_list(k) && val->type == YAML_SEQUENCE_NODE) {
		walk_list(w, k, val, base);
		return;
	}
	/* A single value; of the lists, a pattern or nameservers may stand alone. */
	if (val->type != YAML_SCALAR_NODE) {
		report_node(w->report, val, "'%s' in %s must be a single value, not %s", k->name,
			    where, node_kind(val));
		return;
	}
	if (base == w->cfg && k->off == offsetof(struct config, resolver.min_ttl))
		w->min_ttl = val;
	if (key_parse(k, scalar(val), base, err, sizeof(err)) == -1)
		report_node(w->report, val, "%s", err);
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
			report_node(w->report, kn, "keys in %s must be plain names", where);
			continue;
		}
		name = scalar(kn);
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *prev = yaml_document_get_node(w->doc, q->key);
			if (prev->type == YAML_SCALAR_NODE && strcmp(scalar(prev), name) == 0)
				dup = 1;
		}
		if (dup) {
			report_node(w->report, kn, "duplicate key '%s' in %s", name, where);
			continue;
		}
		if ((k = key_find(table, name)) == NULL) {
			hint = key_closest(table, name);
			if (hint != NULL)
				report_node(w->report, kn,
					    "unknown key '%s' in %s (did you mean '%s'?)", name,
					    where, hint);
			else
				report_node(w->report, kn, "unknown key '%s' in %s", name, where);
			continue;
		}
		seen |= 1u << (k - table);
		walk_value(w, k, vn, base, where);
	}
	return seen;
}

static struct config *
load_document(const char *name, yaml_parser_t *parser, FILE *errs)
{
	struct report r = {name, errs, 0, 0};
	struct config_where where = {0, 0, 0};
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
	if ((cfg = config_new()) == NULL) {
		report_node(&r, NULL, "out of memory");
		goto done;
	}
	if ((cfg->path = strdup(name)) == NULL) {
		report_node(&r, NULL, "out of memory");
		goto done;
	}
	root = yaml_document_get_root_node(&doc);
	if (root == NULL || (root->type == YAML_SCALAR_NODE && scalar(root)[0] == '\0' &&
			     root->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)) {
		/* No document, or one with nothing in it ("---"). */
		report_node(&r, NULL, "the file is empty (it needs at least 'listeners:')");
		goto done;
	}
	if (root->type != YAML_MAPPING_NODE) {
		report_node(&r, root,
			    "the top level must be a mapping of sections (log, "
			    "resolver, defaults, listeners), not %s",
			    node_kind(root));
		goto done;
	}
	if ((flags = expand_values(&doc, &r)) == NULL)
		goto done;
	struct walk w = {&r, &doc, cfg, flags, NULL, 0};
	walk_mapping(&w, root, config_top_keys, cfg, "the top level");
	where.listeners_reported = w.listeners_bad;
	if (w.min_ttl != NULL) {
		where.min_ttl_line = (int)w.min_ttl->start_mark.line + 1;
		where.min_ttl_col = (int)w.min_ttl->start_mark.column + 1;
	}
	config_validate(cfg, &r, &where);
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
