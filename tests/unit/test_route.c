/*
 * test_route.c: name normalization and route-pattern precedence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "net.h"
#include "route.h"

static const char *
norm(const char *in, char *out)
{
	if (route_normalize_name(in, strlen(in), out, ROUTE_NAME_MAX + 1) == -1)
		return NULL;
	return out;
}

static void
test_normalize_good(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"example.com", "example.com"},
	    {"Example.COM", "example.com"},   /* lower-cased */
	    {"example.com.", "example.com"},  /* one trailing dot stripped */
	    {"a-b_c.d9.test", "a-b_c.d9.test"},
	    {"x", "x"},
	    {"10.0.0.1", "10.0.0.1"},         /* IPv4 literal (Host header) */
	    {"::1", "::1"},                   /* IPv6 literal, brackets already removed */
	    {"2001:DB8::1", "2001:db8::1"},
	};
	char out[ROUTE_NAME_MAX + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = norm(cases[i].in, out);
		assert_non_null(got);
		assert_string_equal(got, cases[i].out);
	}
}

static void
test_normalize_bad(void **state)
{
	static const char *const bad[] = {
	    "",                /* empty */
	    ".",               /* only the dot */
	    "example.com..",   /* two trailing dots */
	    "a..b",            /* empty label */
	    ".a",              /* leading empty label */
	    "-a.com",          /* label starts with '-' */
	    "a-.com",          /* label ends with '-' */
	    "a.com-",
	    "a b.com",         /* space */
	    "a/b",             /* slash */
	    "a*b.com",         /* wildcard char from the wire */
	    "a%00b",
	    "1::2::3",         /* not an IPv6 address */
	    "\xc3\xa9t\xc3\xa9.fr", /* non-ASCII (IDNs arrive as punycode) */
	};
	char out[ROUTE_NAME_MAX + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_null(norm(bad[i], out));
		assert_string_equal(out, "");
	}
	/* An embedded NUL is not hidden by the length-bounded API. */
	assert_int_equal(route_normalize_name("a\0b.com", 7, out, sizeof(out)), -1);
}

static void
test_normalize_lengths(void **state)
{
	char name[400], out[ROUTE_NAME_MAX + 1];
	size_t n = 0;

	(void)state;
	/* 63-byte labels are fine, 64 is not. */
	memset(name, 'a', 63);
	strcpy(name + 63, ".com");
	assert_non_null(norm(name, out));
	memset(name, 'a', 64);
	strcpy(name + 64, ".com");
	assert_null(norm(name, out));
	/* 253 bytes in all is the limit (plus one trailing dot). */
	while (n + 10 <= 253) {
		memcpy(name + n, "abcdefghi.", 10);
		n += 10;
	}
	memset(name + n, 'z', 253 - n);
	name[253] = '\0';
	assert_non_null(norm(name, out));
	assert_int_equal(strlen(out), 253);
	name[253] = '.';
	name[254] = '\0';
	assert_non_null(norm(name, out));
	name[253] = 'z';
	assert_null(norm(name, out));
	/* The output buffer bounds the result too. */
	assert_int_equal(route_normalize_name("example.com", 11, out, 5), -1);
}

static void
test_pattern_check(void **state)
{
	char err[256];
	static const char *const good[] = {"*", "*.example.com", "example.com", "a.b.c", "10.0.0.1"};
	static const char *const bad[] = {"", "**", "*example.com", "a.*.com", "*.", "*.*.com",
	    "Example.com", "example.com.", "a..b", "*.-x.com"};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(route_pattern_check(good[i], err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(route_pattern_check(bad[i], err, sizeof(err)), -1);
		assert_true(strlen(err) > 0);
	}
	/* Upper case gets a suggestion with the normalized spelling. */
	route_pattern_check("*.Example.COM", err, sizeof(err));
	assert_non_null(strstr(err, "'*.example.com'"));
}

static void
test_pattern_score(void **state)
{
	(void)state;
	/* exact */
	assert_true(route_pattern_score("a.example.com", "a.example.com") > 0);
	assert_int_equal(route_pattern_score("a.example.com", "b.example.com"), 0);
	assert_int_equal(route_pattern_score("example.com", "xexample.com"), 0);
	/* wildcard: any depth, never the apex, never a mere suffix of a label */
	assert_true(route_pattern_score("*.example.com", "a.example.com") > 0);
	assert_true(route_pattern_score("*.example.com", "x.y.z.example.com") > 0);
	assert_int_equal(route_pattern_score("*.example.com", "example.com"), 0);
	assert_int_equal(route_pattern_score("*.example.com", "badexample.com"), 0);
	assert_int_equal(route_pattern_score("*.example.com", "a.example.com.evil"), 0);
	/* catch-all */
	assert_int_equal(route_pattern_score("*", "anything.at.all"), 1);
	/* no name: only "*" */
	assert_int_equal(route_pattern_score("*", NULL), 1);
	assert_int_equal(route_pattern_score("*.example.com", NULL), 0);
	assert_int_equal(route_pattern_score("example.com", NULL), 0);
}

static void
test_pattern_precedence(void **state)
{
	const char *name = "api.eu.example.com";
	unsigned exact = route_pattern_score("api.eu.example.com", name);
	unsigned longer = route_pattern_score("*.eu.example.com", name);
	unsigned shorter = route_pattern_score("*.example.com", name);
	unsigned any = route_pattern_score("*", name);

	(void)state;
	/* exact > longer wildcard > shorter wildcard > "*" > no match */
	assert_true(exact > longer);
	assert_true(longer > shorter);
	assert_true(shorter > any);
	assert_true(any > 0);
	/* the longest possible wildcard still loses to an exact name */
	{
		char longpat[260] = "*.", longname[260] = "a.";
		memset(longpat + 2, 'b', 240);
		longpat[242] = '\0';
		memset(longname + 2, 'b', 240);
		longname[242] = '\0';
		assert_true(route_pattern_score("x.y", "x.y") > route_pattern_score(longpat, longname));
	}
}

static const char *
class_of(const char *ip)
{
	struct sockaddr_storage ss;
	socklen_t len;

	assert_int_equal(net_parse_ip(ip, 443, &ss, &len), 0);
	return route_addr_class((struct sockaddr *)&ss);
}

static void
test_addr_classes(void **state)
{
	static const struct {
		const char *ip, *class;
	} cases[] = {
	    {"127.0.0.1", "loopback"}, {"10.0.0.5", "private"}, {"172.31.255.255", "private"},
	    {"172.32.0.1", NULL}, {"192.168.1.1", "private"}, {"169.254.169.254", "link-local"},
	    {"100.64.0.1", "cgnat"}, {"100.128.0.1", NULL}, {"0.0.0.0", "unspecified"},
	    {"224.0.0.1", "multicast"}, {"240.0.0.1", "reserved"}, {"255.255.255.255", "reserved"},
	    {"192.0.2.1", "reserved"}, {"198.51.100.1", "reserved"}, {"203.0.113.9", "reserved"},
	    {"198.18.0.1", "reserved"}, {"8.8.8.8", NULL}, {"1.2.3.4", NULL},
	    {"::1", "loopback"}, {"::", "unspecified"}, {"fe80::1", "link-local"},
	    {"fc00::1", "ula"}, {"fd12::1", "ula"}, {"ff02::1", "multicast"},
	    {"2001:db8::1", "reserved"}, {"2606:4700::1", NULL},
	    /* IPv4 inside IPv6 is judged by the IPv4 address */
	    {"::ffff:10.0.0.5", "private"}, {"::ffff:8.8.8.8", NULL},
	    {"64:ff9b::a00:5", "private"}, {"64:ff9b::808:808", NULL},
	    {"2002:a9fe:a9fe::1", "link-local"}, {"2002:808:808::1", NULL},
	    {"::127.0.0.1", "loopback"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = class_of(cases[i].ip);
		if (cases[i].class == NULL)
			assert_null(got);
		else
			assert_string_equal(got, cases[i].class);
	}
}

static void
test_embedded_v4(void **state)
{
	static const char *const carrying[] = {"::ffff:1.2.3.4", "64:ff9b::102:304",
	    "2002:102:304::1", "::1.2.3.4"};
	static const char *const not_carrying[] = {"::", "::1", "2606:4700::1", "1.2.3.4"};
	struct sockaddr_storage ss, v4;
	socklen_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(carrying) / sizeof(carrying[0]); i++) {
		net_parse_ip(carrying[i], 80, &ss, &len);
		assert_int_equal(route_addr_embedded_v4((struct sockaddr *)&ss, &v4), 1);
		assert_int_equal(((struct sockaddr_in *)&v4)->sin_addr.s_addr, htonl(0x01020304));
	}
	for (size_t i = 0; i < sizeof(not_carrying) / sizeof(not_carrying[0]); i++) {
		net_parse_ip(not_carrying[i], 80, &ss, &len);
		assert_int_equal(route_addr_embedded_v4((struct sockaddr *)&ss, &v4), 0);
	}
}

static void
test_name_is_ip(void **state)
{
	(void)state;
	assert_true(route_name_is_ip("10.0.0.5"));
	assert_true(route_name_is_ip("::1"));
	assert_false(route_name_is_ip("example.com"));
	assert_false(route_name_is_ip("10.0.0.5.nip.io"));
	assert_false(route_name_is_ip("127.1")); /* not a literal: a name to resolve */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_normalize_good),
	    cmocka_unit_test(test_normalize_bad),
	    cmocka_unit_test(test_normalize_lengths),
	    cmocka_unit_test(test_pattern_check),
	    cmocka_unit_test(test_pattern_score),
	    cmocka_unit_test(test_pattern_precedence),
	    cmocka_unit_test(test_addr_classes),
	    cmocka_unit_test(test_embedded_v4),
	    cmocka_unit_test(test_name_is_ip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
