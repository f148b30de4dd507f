/*
 * test_learn.c: learn.c, from an /observed answer to an allow list: names
 * merged and sorted, ports in mode connect only, counts and sources in the
 * comments, the mapping form for what was refused for its source,
 * collapsing into "*.suffix" but never over a public suffix, one block per
 * listener, JSON filtered back out, and malformed answers refused.
 *
 * Links learn.o alone: text in, text out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "learn.h"

#define OBS(listener, mode, name, port, source, reason, count)                                     \
	"{\"listener\": \"" listener "\", \"mode\": \"" mode "\", \"name\": " name                 \
	", \"port\": " #port ", \"source\": \"" source "\", \"reason\": \"" reason                 \
	"\", \"count\": " #count ", \"first_seen\": \"2026-12-02T10:00:00Z\", "                    \
	"\"last_seen\": \"2026-12-02T10:05:00Z\"}"

/* run returns what learn_print writes for json (the caller frees), or NULL with why set. */
static char *
run(const char *json, const char *listener, enum learn_format format, unsigned collapse, char *why,
    size_t whylen)
{
	struct learn_options o = {listener, format, collapse};
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	int rc;

	assert_non_null(out);
	rc = learn_print(json, strlen(json), &o, out, why, whylen);
	fclose(out);
	if (rc == -1) {
		free(text);
		return NULL;
	}
	return text;
}

static void
contains(const char *text, const char *want)
{
	if (strstr(text, want) == NULL)
		fail_msg("missing \"%s\" in:\n%s", want, text);
}

static void
lacks(const char *text, const char *unwanted)
{
	if (strstr(text, unwanted) != NULL)
		fail_msg("unexpected \"%s\" in:\n%s", unwanted, text);
}

static const char tls_answer[] =
    "[\n  " OBS("egress", "tls", "\"pypi.org\"", 443, "172.30.0.6", "not_allowed", 7) ",\n  " OBS(
	"egress", "tls", "\"api.github.com\"", 443, "172.30.0.5", "not_allowed",
	5) ",\n  " OBS("egress", "tls", "\"pypi.org\"", 443, "172.30.0.7", "not_allowed",
		       2) ",\n  " OBS("egress", "tls", "\"files.example.test\"", 443, "::1",
				      "source_denied", 1) ",\n  " OBS("egress", "tls", "null", 443,
								      "172.30.0.9", "source_denied",
								      3) "\n]\n";

static void
test_allow_block(void **state)
{
	char why[128];
	char *t = run(tls_answer, "egress", LEARN_YAML, 0, why, sizeof(why));

	(void)state;
	assert_non_null(t);
	contains(t, "# listener egress (tls): 18 connections");
	contains(t, "\nallow:\n");
	/* merged, sorted, with counts and sources; no ports outside mode connect */
	contains(t, "  - api.github.com  # 5 connections from 172.30.0.5\n");
	contains(t, "  - pypi.org  # 9 connections from 172.30.0.6, 172.30.0.7\n");
	assert_true(strstr(t, "api.github.com") < strstr(t, "pypi.org"));
	lacks(t, ":443");
	/* refused for its source: the mapping form with exactly those sources */
	contains(
	    t,
	    "  - {match: \"files.example.test\", sources: [\"::1\"]}  # 1 connection from ::1\n");
	/* nothing named: a comment, never an entry */
	contains(t, "# 172.30.0.9: 3 connections naming nothing (source_denied)");
	free(t);
}

static void
test_connect_ports(void **state)
{
	static const char answer[] =
	    "[" OBS("proxy", "connect", "\"api.example.test\"", 443, "10.0.0.2", "not_allowed",
		    1) "," OBS("proxy", "connect", "\"api.example.test\"", 8443, "10.0.0.2",
			       "not_allowed", 1) "," OBS("proxy", "connect", "\"2001:db8::1\"", 443,
							 "10.0.0.2", "not_allowed", 1) "]";
	char why[128];
	char *t = run(answer, NULL, LEARN_YAML, 0, why, sizeof(why));

	(void)state;
	assert_non_null(t);
	contains(t, "  - api.example.test:443  #");
	contains(t, "  - api.example.test:8443  #");
	contains(t, "  - \"[2001:db8::1]:443\"  #");
	free(t);
}

static void
test_collapse(void **state)
{
	static const char answer[] =
	    "[" OBS("e", "tls", "\"a.cdn.test\"", 443, "10.0.0.2", "not_allowed", 1) "," OBS(
		"e", "tls", "\"b.cdn.test\"", 443, "10.0.0.3", "not_allowed",
		2) "," OBS("e", "tls", "\"c.cdn.test\"", 443, "10.0.0.2", "not_allowed",
			   3) "," OBS("e", "tls", "\"x.co.uk\"", 443, "10.0.0.2", "not_allowed",
				      1) "," OBS("e", "tls", "\"y.co.uk\"", 443, "10.0.0.2",
						 "not_allowed",
						 1) "," OBS("e", "tls", "\"one.test\"", 443,
							    "10.0.0.2", "not_allowed",
							    1) "," OBS("e", "tls", "\"two.test\"",
								       443, "10.0.0.2",
								       "not_allowed", 1) "]";
	char why[128];
	char *t = run(answer, "e", LEARN_YAML, 3, why, sizeof(why));

	(void)state;
	assert_non_null(t);
	contains(t, "  - \"*.cdn.test\"  # 3 names, 6 connections from 10.0.0.2, 10.0.0.3\n");
	lacks(t, "a.cdn.test");
	/* a public suffix and a single label never collapse */
	contains(t, "  - x.co.uk  #");
	contains(t, "  - y.co.uk  #");
	lacks(t, "*.co.uk");
	lacks(t, "*.test\"");
	free(t);
	/* under the threshold: the names as they are */
	t = run(answer, "e", LEARN_YAML, 4, why, sizeof(why));
	assert_non_null(t);
	lacks(t, "*.cdn.test");
	contains(t, "  - b.cdn.test  #");
	free(t);
	assert_true(learn_public_suffix("com"));
	assert_true(learn_public_suffix("co.uk"));
	assert_true(learn_public_suffix("github.io"));
	assert_true(learn_public_suffix("eu-west-1.compute.amazonaws.com"));
	assert_false(learn_public_suffix("pythonhosted.org"));
	assert_false(learn_public_suffix("api.example.co.uk"));
}

static void
test_listeners_and_json(void **state)
{
	static const char answer[] =
	    "[" OBS("b", "http", "\"x.test\"", 80, "10.0.0.2", "not_allowed",
		    9) "," OBS("a", "tls", "\"y.test\"", 443, "10.0.0.3", "not_allowed", 1) "]";
	char why[128];
	char *t = run(answer, NULL, LEARN_YAML, 0, why, sizeof(why));

	(void)state;
	assert_non_null(t);
	/* one block per listener, the busiest first */
	contains(t, "# listener b (http)");
	contains(t, "# listener a (tls)");
	assert_true(strstr(t, "# listener b") < strstr(t, "# listener a"));
	free(t);
	/* a listener with nothing observed: an empty list, still YAML */
	t = run(answer, "c", LEARN_YAML, 0, why, sizeof(why));
	assert_non_null(t);
	contains(t, "allow: []\n");
	free(t);
	t = run(answer, "a", LEARN_JSON, 0, why, sizeof(why));
	assert_non_null(t);
	contains(t, "\"listener\": \"a\"");
	contains(t, "\"name\": \"y.test\"");
	contains(t, "\"count\": 1");
	lacks(t, "\"listener\": \"b\"");
	free(t);
	t = run("[]", NULL, LEARN_YAML, 0, why, sizeof(why));
	assert_non_null(t);
	contains(t, "# nothing observed");
	free(t);
}

static void
test_malformed(void **state)
{
	static const char *const bad[] = {
	    "",
	    "{}",
	    "[{\"listener\": }]",
	    "[{\"listener\": \"a\"",
	    "[{\"listener\": \"a\"}",
	    "[{\"count\": -1}]",
	    "[{\"name\": \"a\\u00\"}]",
	    "<html>not found</html>",
	};
	char why[128];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *t = run(bad[i], NULL, LEARN_YAML, 0, why, sizeof(why));
		if (t != NULL)
			fail_msg("accepted '%s':\n%s", bad[i], t);
		assert_true(why[0] != '\0');
	}
}

/* What is printed gets pasted: nothing the answer holds may become an entry it did not name. */
static void
test_hostile_answer(void **state)
{
	static const char answer[] =
	    "[" OBS("w\\nallow:\\n  - \\\"*\\\"", "tls", "\"a.test\\n  - \\\"*\"", 443, "10.0.0.1",
		    "not_allowed",
		    1) "," OBS("w", "tls", "\"*\"", 443, "10.0.0.1", "not_allowed",
			       1) "," OBS("w", "tls", "\"B.test\"", 443, "10.0.0.1", "not_allowed",
					  1) "," OBS("w", "tls", "\"ok.test\"", 443,
						     "10.0.0.1\\n  - x", "not_allowed",
						     1) "," OBS("w", "tls", "\"c.test\"", 443,
								"10.0.0.2", "x\\ny", 1) "]";
	char why[128];
	char *t = run(answer, NULL, LEARN_YAML, 0, why, sizeof(why));

	(void)state;
	assert_non_null(t);
	/* only c.test survives, in the mapping form (its reason is not not_allowed) */
	contains(t, "{match: \"c.test\", sources: [\"10.0.0.2\"]}");
	lacks(t, "\"*\"");
	lacks(t, "a.test");
	lacks(t, "B.test");
	lacks(t, "ok.test");
	for (const char *line = t; *line != '\0'; line = strchr(line, '\n') + 1) {
		if (strncmp(line, "#", 1) != 0 && strncmp(line, "allow:", 6) != 0 &&
		    strncmp(line, "  - ", 4) != 0 && line[0] != '\n')
			fail_msg("a line that is neither comment nor entry:\n%s", t);
		if (strchr(line, '\n') == NULL)
			break;
	}
	free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_allow_block), cmocka_unit_test(test_connect_ports),
	    cmocka_unit_test(test_collapse),	cmocka_unit_test(test_listeners_and_json),
	    cmocka_unit_test(test_malformed),	cmocka_unit_test(test_hostile_answer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
