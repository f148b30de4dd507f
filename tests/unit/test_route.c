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
	    {"Example.COM", "example.com"},  /* lower-cased */
	    {"example.com.", "example.com"}, /* one trailing dot stripped */
	    {"a-b_c.d9.test", "a-b_c.d9.test"},
	    {"x", "x"},
	    {"10.0.0.1", "10.0.0.1"}, /* IPv4 literal (Host header) */
	    {"::1", "::1"},	      /* IPv6 literal, brackets already removed */
	    {"2001:DB8::1", "2001:db8::1"},
	    /* IPv6 literals come out in inet_ntop's one spelling */
	    {"0:0:0:0:0:0:0:1", "::1"},
	    {"0::1", "::1"},
	    {"2001:0db8:0000::0001", "2001:db8::1"},
	    {"::FFFF:0A00:0005", "::ffff:10.0.0.5"},
	    {"0.0.0.0", "0.0.0.0"},
	    {"255.255.255.255", "255.255.255.255"},
	    /* a last label with a letter is a name, digits elsewhere are fine */
	    {"127.0.0.1.nip.io", "127.0.0.1.nip.io"},
	    {"1.2.3.4a", "1.2.3.4a"},
	    {"0x7f.example", "0x7f.example"},
	    {"a.0xg", "a.0xg"},
	    {"123.com", "123.com"},
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
	    "",		     /* empty */
	    ".",	     /* only the dot */
	    "example.com..", /* two trailing dots */
	    "a..b",	     /* empty label */
	    ".a",	     /* leading empty label */
	    "-a.com",	     /* label starts with '-' */
	    "a-.com",	     /* label ends with '-' */
	    "a.com-",
	    "a b.com", /* space */
	    "a/b",     /* slash */
	    "a*b.com", /* wildcard char from the wire */
	    "a%00b",
	    "1::2::3",		    /* not an IPv6 address */
	    "\xc3\xa9t\xc3\xa9.fr", /* non-ASCII (IDNs arrive as punycode) */
	    /* IPv4 in any spelling but the dotted quad (inet_aton, c-ares, URLs) */
	    "127.000.000.003", /* leading zeros: octal to some, decimal to others */
	    "0177.0.0.3",      /* octal */
	    "010.0.0.5",
	    "127.0.0.03",
	    "0x7f.0.0.3", /* hex part */
	    "0X7F.0.0.3",
	    "0x7f000001",   /* one hex number */
	    "0x",	    /* WHATWG: zero */
	    "2130706435",   /* one decimal number */
	    "017700000003", /* one octal number */
	    "127.1",	    /* fewer than four parts */
	    "127.0.1",
	    "169.254.43518",
	    "1.2.3.4.5", /* more than four */
	    "256.0.0.1", /* out of range */
	    "foo.123",	 /* a numeric last label is never a name */
	    "foo.0x1f",
	    "127.000.000.003.",
	    "::ffff:010.0.0.5", /* leading zero inside an IPv6 literal */
	    "::ffff:127.1",
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
	static const char *const good[] = {"*", "*.example.com", "example.com", "a.b.c",
					   "10.0.0.1"};
	static const char *const bad[] = {"",	  "**",	     "*example.com", "a.*.com",
					  "*.",	  "*.*.com", "Example.com",  "example.com.",
					  "a..b", "*.-x.com"};

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
		assert_true(route_pattern_score("x.y", "x.y") >
			    route_pattern_score(longpat, longname));
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
	    {"127.0.0.1", "loopback"},
	    {"10.0.0.5", "private"},
	    {"172.31.255.255", "private"},
	    {"172.32.0.1", NULL},
	    {"192.168.1.1", "private"},
	    {"169.254.169.254", "link-local"},
	    {"100.64.0.1", "cgnat"},
	    {"100.128.0.1", NULL},
	    {"0.0.0.0", "unspecified"},
	    {"224.0.0.1", "multicast"},
	    {"240.0.0.1", "reserved"},
	    {"255.255.255.255", "reserved"},
	    {"192.0.2.1", "reserved"},
	    {"198.51.100.1", "reserved"},
	    {"203.0.113.9", "reserved"},
	    {"198.18.0.1", "reserved"},
	    {"8.8.8.8", NULL},
	    {"1.2.3.4", NULL},
	    {"::1", "loopback"},
	    {"::", "unspecified"},
	    {"fe80::1", "link-local"},
	    {"fc00::1", "ula"},
	    {"fd12::1", "ula"},
	    {"ff02::1", "multicast"},
	    {"2001:db8::1", "reserved"},
	    {"2606:4700::1", NULL},
	    /* IPv4 inside IPv6 is judged by the IPv4 address */
	    {"::ffff:10.0.0.5", "private"},
	    {"::ffff:8.8.8.8", NULL},
	    {"64:ff9b::a00:5", "private"},
	    {"64:ff9b::808:808", NULL},
	    {"2002:a9fe:a9fe::1", "link-local"},
	    {"2002:808:808::1", NULL},
	    /* IPv4-compatible ::/96 is deprecated: refused whatever it holds */
	    {"::127.0.0.1", "reserved"},
	    {"::8.8.8.8", "reserved"},
	    /* the IANA special-purpose registry, entry by entry */
	    {"::ffff:0:a00:5", "reserved"}, /* SIIT ::ffff:0:0:0/96 */
	    {"::ffff:0:808:808", "reserved"},
	    {"64:ff9b:1::a00:5", "reserved"}, /* local-use NAT64, RFC 8215 */
	    {"64:ff9b:1::808:808", "reserved"},
	    {"100::5", "reserved"},	  /* discard-only 100::/64 */
	    {"100:0:0:1::5", "reserved"}, /* dummy prefix */
	    {"2001::5", "teredo"},	  /* 2001::/32 */
	    {"2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"},
	    {"2001:1::1", NULL},
	    {"2001:1::2", NULL},
	    {"2001:1::3", NULL}, /* anycast */
	    {"2001:1::4", "reserved"},
	    {"2001:2::5", "reserved"}, /* benchmarking 2001:2::/48 */
	    {"2001:2:0:1::5", "reserved"},
	    {"2001:3::5", NULL},     /* AMT */
	    {"2001:4:112::5", NULL}, /* AS112-v6 */
	    {"2001:4:113::5", "reserved"},
	    {"2001:10::5", "reserved"}, /* ORCHID, deprecated */
	    {"2001:1f::5", "reserved"},
	    {"2001:20::5", NULL},	 /* ORCHIDv2 */
	    {"2001:30::5", NULL},	 /* DETs */
	    {"2001:1ff::5", "reserved"}, /* rest of 2001::/23 */
	    {"2001:200::1", NULL},	 /* just past 2001::/23 */
	    {"2620:4f:8000::5", NULL},	 /* AS112 direct delegation */
	    {"3fff::5", "reserved"},	 /* documentation, RFC 9637 */
	    {"3fff:fff::5", "reserved"},
	    {"3fff:1000::5", NULL},
	    {"5f00::5", "reserved"}, /* SRv6 SIDs */
	    {"4000::1", "reserved"}, /* outside 2000::/3 */
	    {"1fff::1", "reserved"},
	    {"fec0::5", "private"},    /* site-local, deprecated */
	    {"2002:102:305::1", NULL}, /* 6to4 of a public address */
	    {"2002:7f00:1::1", "loopback"},
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
	/* Each form carrying 1.2.3.4, and how many candidates it yields. */
	static const struct {
		const char *ip;
		size_t n;
	} carrying[] = {
	    {"::ffff:1.2.3.4", 1},	   /* mapped */
	    {"64:ff9b::102:304", 1},	   /* NAT64 */
	    {"2002:102:304::1", 1},	   /* 6to4 */
	    {"::1.2.3.4", 1},		   /* compatible */
	    {"::ffff:0:102:304", 1},	   /* SIIT */
	    {"2001:0:102:304::", 2},	   /* Teredo server */
	    {"2001:0:5::fefd:fcfb", 2},	   /* Teredo client: ~1.2.3.4 */
	    {"64:ff9b:1:102:3:400::", 4},  /* local NAT64 /48: 1.2 | u | 3.4 */
	    {"64:ff9b:1:1:2:304::", 4},	   /* /56: 1 | u | 2.3.4 */
	    {"64:ff9b:1::1:203:400:0", 4}, /* /64 */
	    {"64:ff9b:1::102:304", 4},	   /* /96 */
	};
	static const char *const not_carrying[] = {"::",      "::1",	     "2606:4700::1",
						   "1.2.3.4", "2001:db8::1", "fe80::1"};
	struct sockaddr_storage ss, v4[ROUTE_EMBEDDED_MAX];
	socklen_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(carrying) / sizeof(carrying[0]); i++) {
		size_t n, hits = 0;
		assert_int_equal(net_parse_ip(carrying[i].ip, 80, &ss, &len), 0);
		n = route_addr_embedded_v4((struct sockaddr *)&ss, v4);
		assert_int_equal(n, carrying[i].n);
		for (size_t j = 0; j < n; j++) {
			assert_int_equal(v4[j].ss_family, AF_INET);
			hits +=
			    ((struct sockaddr_in *)&v4[j])->sin_addr.s_addr == htonl(0x01020304);
		}
		if (hits == 0)
			fail_msg("%s: 1.2.3.4 not among its embedded addresses", carrying[i].ip);
	}
	for (size_t i = 0; i < sizeof(not_carrying) / sizeof(not_carrying[0]); i++) {
		assert_int_equal(net_parse_ip(not_carrying[i], 80, &ss, &len), 0);
		assert_int_equal(route_addr_embedded_v4((struct sockaddr *)&ss, v4), 0);
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
	    cmocka_unit_test(test_normalize_good),    cmocka_unit_test(test_normalize_bad),
	    cmocka_unit_test(test_normalize_lengths), cmocka_unit_test(test_pattern_check),
	    cmocka_unit_test(test_pattern_score),     cmocka_unit_test(test_pattern_precedence),
	    cmocka_unit_test(test_addr_classes),      cmocka_unit_test(test_embedded_v4),
	    cmocka_unit_test(test_name_is_ip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
