/*
 * config_quick.c: quick mode, a one-listener config from option values.
 *
 * A setting is named by its long option ("connect-timeout") and looked up
 * in the key table, so its value is parsed by the same parser as in a
 * file; a list takes its items comma-separated. The config built is the
 * same model a file gives (one listener, the table's defaults), and
 * config_quick_finish hands it to the same config_validate, so a listener
 * that a file may not describe cannot be started from the command line
 * either. Where a value came from (the option or the variable) is for the
 * caller to say: it knows, and prefixes each message with it.
 */
#include <stdlib.h>
#include <string.h>

#include "config_impl.h"

/* The name messages carry in quick mode, where there is no file. */
#define QUICK_NAME "gatekeeper"

struct config *
config_quick_new(void)
{
	struct config *cfg = config_new();

	if (cfg == NULL)
		return NULL;
	if ((cfg->path = strdup("(command line)")) == NULL || config_add_listener(cfg) == NULL) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

/*
 * find_option returns the entry whose option is flag, in table or its
 * sections (not its listeners), or NULL.
 */
static const struct key *
find_option(const struct key *table, const char *flag)
{
	const struct key *found;

	for (const struct key *k = table; k->name != NULL; k++) {
		if (k->opt.flag != NULL && strcmp(k->opt.flag, flag) == 0)
			return k;
		if (k->type == K_SECTION && (found = find_option(k->sub, flag)) != NULL)
			return found;
	}
	return NULL;
}

/* set_list replaces the list k with the comma-separated items of value. */
static int
set_list(const struct key *k, const char *value, void *base, char *err, size_t errlen)
{
	char *copy = strdup(value), *save = NULL, *tok;
	int rc = 0;

	if (copy == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	key_clear(k, base);
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *end = tok + strlen(tok);
		while (*tok == ' ' || *tok == '\t')
			tok++;
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*tok == '\0')
			continue;
		if ((rc = key_parse(k, tok, base, err, errlen)) == -1)
			break;
	}
	free(copy);
	return rc;
}

int
config_quick_set(struct config *cfg, const char *setting, const char *value, char *err,
		 size_t errlen)
{
	struct config_listener *l = &cfg->listeners[0];
	const struct key *k;
	void *base = l;
	int rc;

	if ((k = find_option(config_listener_keys, setting)) == NULL) {
		base = cfg;
		k = find_option(config_top_keys, setting);
	}
	if (k == NULL) {
		snprintf(err, errlen, "unknown setting '%s'", setting);
		return -2;
	}
	if (key_is_list(k))
		rc = set_list(k, value, base, err, errlen);
	else
		rc = key_parse(k, value, base, err, errlen);
	/* As a file's keys are: present, valid or not. */
	if (base == l)
		l->seen |= key_bit(config_listener_keys, k->name);
	return rc;
}

int
config_quick_finish(struct config *cfg, FILE *errs)
{
	struct report r = {QUICK_NAME, errs, 0, 1};
	struct config_where where = {0, 0, 0};
	struct config_listener *l = &cfg->listeners[0];

	for (const struct key *k = config_listener_keys; k->name != NULL; k++) {
		char err[256];
		if (k->quick_def == NULL || (l->seen & key_bit(config_listener_keys, k->name)))
			continue;
		if (key_parse(k, k->quick_def, l, err, sizeof(err)) == -1)
			report_error(&r, 0, 0, "%s", err);
	}
	config_validate(cfg, &r, &where);
	return r.errors ? -1 : 0;
}
