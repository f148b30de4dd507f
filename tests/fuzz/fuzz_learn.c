/*
 * fuzz_learn.c: learn_print over any bytes, as if the admin endpoint had
 * answered them: it must refuse or print, in every format and with every
 * collapse, and never read past the answer or crash. The first byte picks
 * the options; the rest is the answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "learn.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct learn_options o = {NULL, LEARN_YAML, 0};
	char why[256], *copy;
	FILE *out;

	if (size == 0)
		return 0;
	o.format = (data[0] & 1) ? LEARN_JSON : LEARN_YAML;
	o.collapse = (data[0] >> 1) & 7;
	if (data[0] & 0x10)
		o.listener = "egress";
	/* Exactly size - 1 bytes, in their own allocation: a read past them is caught. */
	if ((copy = malloc(size - 1 ? size - 1 : 1)) == NULL)
		return 0;
	memcpy(copy, data + 1, size - 1);
	if ((out = fopen("/dev/null", "w")) != NULL) {
		why[0] = '\0';
		if (learn_print(copy, size - 1, &o, out, why, sizeof(why)) == -1)
			CHECK(why[0] != '\0');
		fclose(out);
	}
	free(copy);
	return 0;
}
