/*
 * fuzz_config.c: the YAML config loader on arbitrary text.
 *
 * Every input must either load (and then dump to YAML that loads again to
 * the same dump) or be rejected with at least one "NAME:" error line,
 * without leaks or crashes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *errs = NULL, *dump1 = NULL, *dump2 = NULL;
	size_t errs_len = 0, d1 = 0, d2 = 0;
	FILE *ef = open_memstream(&errs, &errs_len);
	struct config *cfg, *again;

	if (ef == NULL)
		return 0;
	cfg = config_load_string("f.yaml", (const char *)data, size, ef);
	fclose(ef);
	if (cfg == NULL) {
		if (errs_len == 0 || strncmp(errs, "f.yaml", 6) != 0)
			abort();
		free(errs);
		return 0;
	}
	free(errs);
	FILE *f1 = open_memstream(&dump1, &d1);
	config_dump(cfg, f1);
	fclose(f1);
	errs = NULL;
	ef = open_memstream(&errs, &errs_len);
	again = config_load_string("dump.yaml", dump1, d1, ef);
	fclose(ef);
	if (again == NULL) {
		fprintf(stderr, "dump does not load:\n%s\n%s\n", dump1, errs);
		abort();
	}
	FILE *f2 = open_memstream(&dump2, &d2);
	config_dump(again, f2);
	fclose(f2);
	if (d1 != d2 || memcmp(dump1, dump2, d1) != 0)
		abort();
	config_free(cfg);
	config_free(again);
	free(errs);
	free(dump1);
	free(dump2);
	return 0;
}
