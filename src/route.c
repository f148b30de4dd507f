/*
 * route.c: normalizing names from the wire and scoring route patterns.
 *
 * Both functions are pure, so they are unit-tested and fuzzed without a
 * loop. The score encodes the precedence documented in route.h in one
 * integer: exact names score above every wildcard, wildcards score by the
 * length of their suffix, and "*" scores 1.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "route.h"

#define SCORE_EXACT 1000000u

int
route_normalize_name(const char *name, size_t len, char *out, size_t outlen)
{
	size_t label = 0, i;
	unsigned char v6[16];

	out[0] = '\0';
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > ROUTE_NAME_MAX || len >= outlen)
		return -1;
	for (i = 0; i < len; i++) {
		char c = name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[i] = c;
	}
	out[len] = '\0';
	/* An IPv6 literal (Host: [::1] reaches us as "::1"). */
	if (memchr(out, ':', len) != NULL) {
		if (inet_pton(AF_INET6, out, v6) != 1) {
			out[0] = '\0';
			return -1;
		}
		return 0;
	}
	for (i = 0; i < len; i++) {
		char c = out[i];
		if (c == '.') {
			if (label == 0 || out[i - 1] == '-')
				goto bad;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			goto bad;
		if (label == 0 && c == '-')
			goto bad;
		if (++label > 63)
			goto bad;
	}
	/* a last label that is empty ("a.b..") or ends in '-' */
	if (out[len - 1] == '-' || out[len - 1] == '.')
		goto bad;
	return 0;
bad:
	out[0] = '\0';
	return -1;
}

int
route_pattern_check(const char *pattern, char *err, size_t errlen)
{
	char norm[ROUTE_NAME_MAX + 1];
	const char *name = pattern;

	if (strcmp(pattern, "*") == 0)
		return 0;
	if (strncmp(pattern, "*.", 2) == 0)
		name = pattern + 2;
	if (strchr(name, '*') != NULL) {
		snprintf(err, errlen, "invalid pattern '%s' (a '*' may only stand alone or "
				      "start the pattern, as in '*.example.com')", pattern);
		return -1;
	}
	if (route_normalize_name(name, strlen(name), norm, sizeof(norm)) == -1) {
		snprintf(err, errlen, "invalid pattern '%s' (use a host name, '*.example.com' "
				      "or '*')", pattern);
		return -1;
	}
	if (strcmp(norm, name) != 0) {
		snprintf(err, errlen, "pattern '%s' must be written in lower case without a "
				      "trailing dot ('%s%s')", pattern, name == pattern ? "" : "*.", norm);
		return -1;
	}
	return 0;
}

unsigned
route_pattern_score(const char *pattern, const char *name)
{
	size_t plen, nlen;

	if (strcmp(pattern, "*") == 0)
		return 1;
	if (name == NULL)
		return 0;
	if (strncmp(pattern, "*.", 2) != 0)
		return strcmp(pattern, name) == 0 ? SCORE_EXACT : 0;
	/* "*.example.com" matches any depth below example.com, not the apex. */
	plen = strlen(pattern) - 1; /* ".example.com" */
	nlen = strlen(name);
	if (nlen <= plen || strcmp(name + nlen - plen, pattern + 1) != 0)
		return 0;
	return 2 + (unsigned)plen;
}
