/*
 * learn.h: turn what report mode observed into an allowlist to paste.
 *
 * `gatekeeper observed` fetches the admin endpoint's /observed (JSON, see
 * observed.h) and hands it here. learn_print reads it and writes, per
 * listener, an `allow:` block that would have let through exactly what was
 * observed, or the observations again as JSON. Pure: text in, text out.
 */
#ifndef GK_LEARN_H
#define GK_LEARN_H

#include <stddef.h>
#include <stdio.h>

enum learn_format {
	LEARN_YAML,
	LEARN_JSON,
};

struct learn_options {
	const char *listener; /* only this listener; NULL: every one */
	enum learn_format format;
	unsigned collapse; /* N sibling names or more become "*.suffix"; 0: never */
};

/*
 * learn_print writes what json (an /observed answer, len bytes) says, as
 * o asks, to out. Returns 0, or -1 with the reason in why (the answer is
 * not what /observed sends, or out of memory).
 */
int learn_print(const char *json, size_t len, const struct learn_options *o, FILE *out, char *why,
		size_t whylen);

/*
 * learn_public_suffix: 1 when suffix (lower case, no leading dot) is one
 * label, or a suffix under which unrelated parties register names
 * ("co.uk", "github.io", ...): "*.suffix" would reach strangers.
 */
int learn_public_suffix(const char *suffix);

#endif
