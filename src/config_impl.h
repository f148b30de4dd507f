/*
 * config_impl.h: what the config_*.c files share, and nothing else includes.
 *
 * The config is described once, by the key tables of config_keys.c: one
 * table per YAML mapping, one entry per setting, giving its YAML key, its
 * type, where its value lands, its default, its quick-mode option and
 * GATEKEEPER_* variable, and its help text. config_value.c turns text into
 * a value for an entry, config_yaml.c walks a YAML document through the
 * tables, config_quick.c sets entries by option name, config.c holds the
 * model (defaults from the tables, validation, free) and config_dump.c
 * writes a config back as YAML, again by walking the tables.
 */
#ifndef GK_CONFIG_IMPL_H
#define GK_CONFIG_IMPL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

#define CONFIG_UNSET (-1)
#define DURATION_MAX ((int64_t)24 * 3600 * 1000 * 365)

enum key_type {
	K_STRING,
	K_DURATION,
	K_COUNT,
	K_SIZE, /* bytes: a whole number, optionally with k or m (1024-based) */
	K_ENUM,
	K_LISTEN,
	K_UPSTREAM,
	K_ADDRLIST, /* list of "ip" or "ip:port" (a scalar may hold several) */
	K_BOOL,
	K_CIDRLIST,    /* list of "ip/prefix": .off the array, .n_off its count */
	K_PATTERNS,    /* list of route patterns (a single one may stand alone) */
	K_ALLOWLIST,   /* list of allow entries: .off the array, .n_off its count */
	K_CREDENTIALS, /* list of "user:password" */
	K_SOURCES,     /* list of names, addresses and blocks: a struct config_sources */
	K_ALLOW_MATCH, /* the 'match' of an allow entry's mapping form: the struct config_allow */
	K_WORKERS,     /* "auto" (0) or a count */
	K_SECTION,     /* a nested mapping described by .sub, on the same struct */
	K_LISTENERS,   /* the list of listeners, each described by .sub */
	K_ROUTES,      /* a listener's routes, each described by .sub */
	K_NTYPES
};

/* Key flags. */
#define KF_INHERIT     0x01 /* unset until validation, then the same key of 'defaults' */
#define KF_OMIT_UNSET  0x02 /* the dump leaves it out while unset, empty, false or 0 */
#define KF_MODE_HTTP   0x04 /* a section that applies to mode http only */
#define KF_CONNECT_ALL 0x08 /* dumped even when empty if all the listener routes by (deny all) */
#define KF_MODE_DNS    0x10 /* a key of mode dns only */

/*
 * One setting. Sections, listeners and routes are entries too, with the
 * table of what is inside them in .sub; for a section the keys inside
 * land on the same struct as the section's own table.
 */
struct key {
	const char *name; /* the YAML key */
	enum key_type type;
	size_t off;		    /* where the value is, in its table's struct */
	size_t n_off;		    /* K_CIDRLIST, K_ALLOWLIST: where the count is */
	const struct key *sub;	    /* K_SECTION, K_LISTENERS, K_ROUTES */
	const char *const *choices; /* K_ENUM, NULL-terminated, in the enum's order */
	int64_t min, max;	    /* K_COUNT, K_WORKERS, K_SIZE, K_DURATION */
	const char *def;	    /* the default, as YAML text; NULL: none */
	const char *quick_def;	    /* quick mode's default, when it differs */
	unsigned flags;		    /* KF_* */
	struct config_option opt;   /* quick mode; opt.flag NULL when the key has none */
	const char *help;
};

extern const struct key config_top_keys[];
extern const struct key config_defaults_keys[];
extern const struct key config_listener_keys[];
extern const struct key config_route_keys[];
extern const struct key config_allow_keys[];
extern const char *const config_splice_names[];
extern const char *const config_send_names[];
extern const char *const config_mode_names[];

/* key_find returns the entry of table named name, or NULL. */
const struct key *key_find(const struct key *table, const char *name);

/* key_bit returns the bit of table's entry name in a 'seen' set (0 if none). */
unsigned key_bit(const struct key *table, const char *name);

/*
 * key_closest returns the entry name of table nearest to name (edit
 * distance, '-' for '_', case), or NULL when none is close enough to
 * suggest.
 */
const char *key_closest(const struct key *table, const char *name);

/* key_is_list: 1 for the types whose value is a list of items. */
int key_is_list(const struct key *k);

/*
 * key_parse converts text for k and stores it at dst (base + k->off); for
 * a list type it adds one item. Returns 0, or -1 with a message naming the
 * key and saying what is expected in err.
 */
int key_parse(const struct key *k, const char *text, void *base, char *err, size_t errlen);

/* key_clear empties a list value (base + k->off), freeing its items. */
void key_clear(const struct key *k, void *base);

/*
 * key_defaults gives every entry of table (and of its sections, not of its
 * listeners or routes) its default on base: the parsed .def, CONFIG_UNSET
 * for KF_INHERIT. Returns 0, or -1 when a default does not parse (a table
 * error) or memory ran out.
 */
int key_defaults(const struct key *table, void *base);

/* Where errors go, and how many there were. */
struct report {
	const char *name; /* the file, or "gatekeeper" for quick mode */
	FILE *out;
	int errors;
	int quick; /* settings came from options and variables */
};

/* report_error writes "NAME:LINE:COL: message" (line 0: "NAME: message") and counts it. */
void report_error(struct report *r, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void report_verror(struct report *r, int line, int col, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* A position in the file for messages about the whole config; line 0 = none. */
struct config_where {
	int min_ttl_line, min_ttl_col; /* resolver.min_ttl, for min_ttl > refresh */
	int listeners_reported;	       /* 'listeners' was bad: no "no listeners" on top */
};

/* config_new returns a config holding every default (refs 1), or NULL. */
struct config *config_new(void);

/* config_add_listener appends a listener holding its defaults; NULL when out of memory. */
struct config_listener *config_add_listener(struct config *cfg);

/* config_add_route appends a route holding its defaults; NULL when out of memory. */
struct config_route *config_add_route(struct config_listener *l);

/*
 * config_validate fills inherited listener values and checks what no
 * single key can (required keys, how keys fit together, unique names and
 * addresses), for a file and quick mode alike; every error goes to r.
 */
void config_validate(struct config *cfg, struct report *r, const struct config_where *w);

int config_strlist_add(struct config_strlist *l, const char *s);
void config_strlist_clear(struct config_strlist *l);
/* config_sources_clear and config_allow_clear free what a source set or an allow entry holds. */
void config_sources_clear(struct config_sources *s);
void config_allow_clear(struct config_allow *a);
/* config_add_allow appends an empty allow entry (the mapping form's); NULL when out of memory. */
struct config_allow *config_add_allow(struct config_listener *l);

#endif
