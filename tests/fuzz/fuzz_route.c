/*
 * fuzz_route.c: name normalization and pattern scoring on hostile names.
 *
 * The first byte splits the input into a wire name and a pattern. Checks:
 * an accepted name is NUL-terminated, at most ROUTE_NAME_MAX bytes, lower
 * case, and normalizing it again is a no-op; a pattern that passes
 * route_pattern_check scores an accepted name without crashing, and "*"
 * always matches.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[ROUTE_NAME_MAX + 1], again[ROUTE_NAME_MAX + 1], pattern[300], err[256];
	size_t split, plen;

	if (size == 0)
		return 0;
	split = data[0] % (size);
	data++;
	size--;
	if (split > size)
		split = size;
	if (route_normalize_name((const char *)data, split, name, sizeof(name)) == 0) {
		size_t n = strlen(name);
		if (n == 0 || n > ROUTE_NAME_MAX)
			abort();
		for (size_t i = 0; i < n; i++)
			if (name[i] >= 'A' && name[i] <= 'Z')
				abort();
		if (route_normalize_name(name, n, again, sizeof(again)) != 0 ||
		    strcmp(name, again) != 0)
			abort();
		if (route_pattern_score("*", name) != 1)
			abort();
	} else if (name[0] != '\0') {
		abort();
	}
	plen = size - split < sizeof(pattern) - 1 ? size - split : sizeof(pattern) - 1;
	memcpy(pattern, data + split, plen);
	pattern[plen] = '\0';
	if (route_pattern_check(pattern, err, sizeof(err)) == 0) {
		(void)route_pattern_score(pattern, name[0] ? name : NULL);
		/* a valid exact pattern matches itself */
		if (pattern[0] != '*' && route_pattern_score(pattern, pattern) == 0)
			abort();
	}
	return 0;
}
