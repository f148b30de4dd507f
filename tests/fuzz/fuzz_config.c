/*
 * fuzz_config.c: the YAML config loader on arbitrary text.
 *
 * Every input must either load (and then dump to YAML that loads again to
 * the same dump) or be rejected with at least one "NAME:" error line,
 * without leaks or crashes. An input that starts with "Q\n" is quick-mode
 * settings instead, one "option=value" a line: a config they give must
 * dump to YAML that loads to the same dump too, and a refused one must say
 * why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

/* dump_text returns config_dump's output and its length in *len (caller frees). */
static char *
dump_text(const struct config *cfg, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);

	if (f == NULL)
		abort();
	config_dump(cfg, f);
	fclose(f);
	return text;
}

/* quick runs the "option=value" lines of text (NUL-terminated) through quick mode. */
static void
quick(char *text)
{
	struct config *cfg = config_quick_new(), *again;
	char *save = NULL, *errs = NULL, *dump1, *dump2, err[512];
	size_t errs_len = 0, d1, d2;
	int bad = 0;
	FILE *ef;

	if (cfg == NULL)
		return;
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		if (config_quick_set(cfg, line, eq + 1, err, sizeof(err)) == -1) {
			if (err[0] == '\0')
				abort(); /* a refusal says why */
			bad = 1;
		}
	}
	if ((ef = open_memstream(&errs, &errs_len)) == NULL)
		abort();
	if (config_quick_finish(cfg, ef) == -1 || bad) {
		fclose(ef);
		if (!bad && (errs_len == 0 || strncmp(errs, "gatekeeper: ", 12) != 0))
			abort();
		free(errs);
		config_free(cfg);
		return;
	}
	fclose(ef);
	free(errs);
	dump1 = dump_text(cfg, &d1);
	errs = NULL;
	if ((ef = open_memstream(&errs, &errs_len)) == NULL)
		abort();
	again = config_load_string("dump.yaml", dump1, d1, ef);
	fclose(ef);
	if (again == NULL) {
		fprintf(stderr, "quick dump does not load:\n%s\n%s\n", dump1, errs);
		abort();
	}
	dump2 = dump_text(again, &d2);
	if (d1 != d2 || memcmp(dump1, dump2, d1) != 0)
		abort();
	config_free(cfg);
	config_free(again);
	free(errs);
	free(dump1);
	free(dump2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *errs = NULL, *dump1 = NULL, *dump2 = NULL;
	size_t errs_len = 0, d1 = 0, d2 = 0;
	FILE *ef = open_memstream(&errs, &errs_len);
	struct config *cfg, *again;

	if (ef == NULL)
		return 0;
	if (size >= 2 && data[0] == 'Q' && data[1] == '\n') {
		char *text = strndup((const char *)data + 2, size - 2);
		fclose(ef);
		free(errs);
		if (text != NULL)
			quick(text);
		free(text);
		return 0;
	}
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
