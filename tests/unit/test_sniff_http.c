/*
 * test_sniff_http.c: unit tests for the HTTP/1.x request head parser. Heads
 * are written one line per string, with a comment per line. The first three
 * were captured from curl 7.88.1 talking to a recording listener on
 * 127.0.0.1 (directly, through it as an HTTP proxy, and through it with -p
 * for CONNECT). Every proper prefix of every good head must give
 * PARSE_NEED_MORE; no prefix of a bad one may be accepted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sniff_http.h"

/* assert_prefixes: every proper prefix of buf is a valid prefix. */
static void
assert_prefixes(const uint8_t *buf, size_t len)
{
	struct sniff_http_request req;
	size_t i;

	for (i = 0; i < len; i++) {
		enum parse_result r = sniff_http_request(buf, i, &req);

		if (r != PARSE_NEED_MORE)
			fail_msg("prefix %zu of %zu: %s", i, len, parse_result_name(r));
	}
}

/* assert_prefixes_not_ok: a bad head is never accepted, whole or cut. */
static void
assert_prefixes_not_ok(const uint8_t *buf, size_t len)
{
	struct sniff_http_request req;
	size_t i;

	for (i = 0; i < len; i++) {
		enum parse_result r = sniff_http_request(buf, i, &req);

		assert_true(r == PARSE_NEED_MORE || r == PARSE_MALFORMED);
	}
}

struct good_case {
	const char *what;
	const char *req;
	enum parse_result want;
	const char *method;
	enum sniff_http_form form;
	const char *target;
	const char *host;
	uint16_t port;
	int https;
	int minor;
	size_t body; /* bytes after the head */
};

static const struct good_case good[] = {
    {"curl, direct",
     "GET /path?q=1 HTTP/1.1\r\n"  /* request line, origin-form */
     "Host: x.test:34545\r\n"	   /* host and port */
     "User-Agent: curl/7.88.1\r\n" /* other header */
     "Accept: */*\r\n"		   /* other header */
     "\r\n",			   /* end of head */
     PARSE_OK, "GET", SNIFF_HTTP_ORIGIN, "/path?q=1", "x.test", 34545, 0, 1, 0},
    {"curl, through an HTTP proxy",
     "GET http://example.com/a HTTP/1.1\r\n" /* request line, absolute-form */
     "Host: example.com\r\n"		     /* agrees with the target */
     "User-Agent: curl/7.88.1\r\n"
     "Accept: */*\r\n"
     "Proxy-Connection: Keep-Alive\r\n"
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ABSOLUTE, "http://example.com/a", "example.com", 0, 0, 1, 0},
    {"curl, CONNECT",
     "CONNECT example.com:443 HTTP/1.1\r\n" /* request line, authority-form */
     "Host: example.com:443\r\n"
     "User-Agent: curl/7.88.1\r\n"
     "Proxy-Connection: Keep-Alive\r\n"
     "\r\n",
     PARSE_OK, "CONNECT", SNIFF_HTTP_AUTHORITY, "example.com:443", "example.com", 443, 0, 1, 0},
    {"HTTP/1.0 with Host",
     "GET / HTTP/1.0\r\n" /* request line */
     "Host: a.test\r\n"	  /* host, no port */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ORIGIN, "/", "a.test", 0, 0, 0, 0},
    {"HTTP/1.0 without Host",
     "GET / HTTP/1.0\r\n" /* request line */
     "\r\n",
     PARSE_NOT_FOUND, "GET", SNIFF_HTTP_ORIGIN, "/", "", 0, 0, 0, 0},
    {"HTTP/1.1 without Host",
     "GET /x HTTP/1.1\r\n" /* request line */
     "Accept: */*\r\n"	   /* not a Host */
     "\r\n",
     PARSE_NOT_FOUND, "GET", SNIFF_HTTP_ORIGIN, "/x", "", 0, 0, 1, 0},
    {"empty Host",
     "GET / HTTP/1.1\r\n" /* request line */
     "Host:\r\n"	  /* empty value: no name */
     "\r\n",
     PARSE_NOT_FOUND, "GET", SNIFF_HTTP_ORIGIN, "/", "", 0, 0, 1, 0},
    {"IPv6 literal Host",
     "GET / HTTP/1.1\r\n"	    /* request line */
     "Host: [2001:db8::1]:8443\r\n" /* brackets dropped from host */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ORIGIN, "/", "2001:db8::1", 8443, 0, 1, 0},
    {"IPv4 Host, port 1",
     "GET / HTTP/1.1\r\n"   /* request line */
     "Host: 10.0.0.5:1\r\n" /* lowest port */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ORIGIN, "/", "10.0.0.5", 1, 0, 1, 0},
    {"https absolute-form, Host differs in case only",
     "GET HTTPS://Example.com:8443/x HTTP/1.1\r\n" /* scheme case ignored */
     "Host: example.COM:8443\r\n"		   /* same host and port */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ABSOLUTE, "HTTPS://Example.com:8443/x", "Example.com", 8443, 1, 1,
     0},
    {"absolute-form, Host with the default port spelled out",
     "GET http://a.test HTTP/1.1\r\n" /* no path at all */
     "Host: a.test:80\r\n"	      /* 80 is http's default */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ABSOLUTE, "http://a.test", "a.test", 0, 0, 1, 0},
    {"absolute-form with query, no Host",
     "GET http://a.test?x=1 HTTP/1.0\r\n" /* authority ends at '?' */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ABSOLUTE, "http://a.test?x=1", "a.test", 0, 0, 0, 0},
    {"OPTIONS *",
     "OPTIONS * HTTP/1.1\r\n" /* asterisk-form */
     "Host: a.test\r\n"
     "\r\n",
     PARSE_OK, "OPTIONS", SNIFF_HTTP_ASTERISK, "*", "a.test", 0, 0, 1, 0},
    {"Host name in odd case, OWS around the value",
     "GET / HTTP/1.1\r\n"    /* request line */
     "hOsT:\t a.test \t\r\n" /* OWS trimmed */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ORIGIN, "/", "a.test", 0, 0, 1, 0},
    {"body after the head",
     "POST /up HTTP/1.1\r\n" /* request line */
     "Host: a.test\r\n"
     "Content-Length: 3\r\n"
     "\r\n"
     "abc", /* body: not part of the head */
     PARSE_OK, "POST", SNIFF_HTTP_ORIGIN, "/up", "a.test", 0, 0, 1, 3},
    {"CONNECT to an IPv6 literal",
     "CONNECT [::1]:443 HTTP/1.1\r\n" /* authority-form, IPv6 */
     "\r\n",
     PARSE_OK, "CONNECT", SNIFF_HTTP_AUTHORITY, "[::1]:443", "::1", 443, 0, 1, 0},
    {"CONNECT with a Host naming something else",
     "CONNECT a.test:443 HTTP/1.1\r\n" /* the target decides */
     "Host: b.test\r\n"		       /* checked for syntax only */
     "\r\n",
     PARSE_OK, "CONNECT", SNIFF_HTTP_AUTHORITY, "a.test:443", "a.test", 443, 0, 1, 0},
    {"obs-text in another header",
     "GET / HTTP/1.1\r\n"      /* request line */
     "X-Name: caf\xc3\xa9\r\n" /* UTF-8 bytes are obs-text: allowed */
     "Host: a.test:65535\r\n"  /* highest port */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ORIGIN, "/", "a.test", 65535, 0, 1, 0},
    {"percent-encoded reg-name and sub-delims, kept raw",
     "GET / HTTP/1.1\r\n"	       /* request line */
     "Host: a%2Db.test!$&'()*+,;=\r\n" /* RFC 3986 reg-name */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ORIGIN, "/", "a%2Db.test!$&'()*+,;=", 0, 0, 1, 0},
    {"23-byte extension method",
     "ABCDEFGHIJKLMNOPQRSTUVW / HTTP/1.1\r\n" /* longest method */
     "Host: a.test\r\n"
     "\r\n",
     PARSE_OK, "ABCDEFGHIJKLMNOPQRSTUVW", SNIFF_HTTP_ORIGIN, "/", "a.test", 0, 0, 1, 0},
    {"port with a leading zero",
     "GET / HTTP/1.1\r\n"   /* request line */
     "Host: a.test:080\r\n" /* RFC 3986 port = *DIGIT */
     "\r\n",
     PARSE_OK, "GET", SNIFF_HTTP_ORIGIN, "/", "a.test", 80, 0, 1, 0},
};

static void
test_good(void **state)
{
	struct sniff_http_request req;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const struct good_case *c = &good[i];
		const uint8_t *buf = (const uint8_t *)c->req;
		size_t len = strlen(c->req);
		enum parse_result r = sniff_http_request(buf, len, &req);

		if (r != c->want)
			fail_msg("%s: got %s", c->what, parse_result_name(r));
		assert_string_equal(req.method, c->method);
		assert_int_equal(req.form, c->form);
		assert_int_equal(req.target_len, strlen(c->target));
		assert_memory_equal(buf + req.target_off, c->target, req.target_len);
		assert_string_equal(req.host, c->host);
		assert_int_equal(req.host_len, strlen(c->host));
		assert_int_equal(req.port, c->port);
		assert_int_equal(req.https, c->https);
		assert_int_equal(req.version_minor, c->minor);
		assert_int_equal(req.head_len, len - c->body);
		assert_prefixes(buf, len - c->body);
	}
}

struct bad_case {
	const char *what;
	const char *req;
};

static const struct bad_case bad[] = {
    {"bare LF ending the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n"},
    {"bare LF ending a header", "GET / HTTP/1.1\r\nHost: a\n\r\n"},
    {"bare LF ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n"},
    {"CR without LF", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"},
    {"obs-fold continuation", "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"},
    {"first header folded", "GET / HTTP/1.1\r\n\tHost: a\r\n\r\n"},
    {"space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},
    {"space in a header name", "GET / HTTP/1.1\r\nBad Name: x\r\nHost: a\r\n\r\n"},
    {"bad char in a header name", "GET / HTTP/1.1\r\nHo(st: a\r\n\r\n"},
    {"header line without colon", "GET / HTTP/1.1\r\nHost\r\n\r\n"},
    {"empty header name", "GET / HTTP/1.1\r\n: a\r\n\r\n"},
    {"bad char in the method", "GE@T / HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"24-byte method", "ABCDEFGHIJKLMNOPQRSTUVWX / HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"control char in a value", "GET / HTTP/1.1\r\nX: a\x01"
				"b\r\nHost: a\r\n\r\n"},
    {"DEL in a value", "GET / HTTP/1.1\r\nX: a\x7f\r\nHost: a\r\n\r\n"},
    {"control char in the target", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"obs-text in the target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"HTTP/0.9 request line", "GET /\r\n\r\n"},
    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n"},
    {"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n"},
    {"space after the version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n"},
    {"two spaces after the method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
    {"empty line first", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"TLS bytes", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
    {"duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"},
    {"duplicate Host, other case", "GET / HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\n"},
    {"userinfo in Host", "GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n"},
    {"space inside Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
    {"Host port 0", "GET / HTTP/1.1\r\nHost: a.test:0\r\n\r\n"},
    {"Host port 65536", "GET / HTTP/1.1\r\nHost: a.test:65536\r\n\r\n"},
    {"Host port 6 digits", "GET / HTTP/1.1\r\nHost: a.test:000080\r\n\r\n"},
    {"Host port not digits", "GET / HTTP/1.1\r\nHost: a.test:8x\r\n\r\n"},
    {"Host port empty", "GET / HTTP/1.1\r\nHost: a.test:\r\n\r\n"},
    {"Host with port only", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n"},
    {"Host bad percent", "GET / HTTP/1.1\r\nHost: a%2\r\n\r\n"},
    {"Host IPv6 bad digit", "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n"},
    {"Host IPv6 unclosed", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"},
    {"Host IPv6 zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n"},
    {"Host IPv6 not an address", "GET / HTTP/1.1\r\nHost: [1:2:3]\r\n\r\n"},
    {"Host IPv6 empty", "GET / HTTP/1.1\r\nHost: []\r\n\r\n"},
    {"Host IPv6 junk after", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"},
    {"absolute-form, other host", "GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n"},
    {"absolute-form, other port", "GET http://a.test:8080/ HTTP/1.1\r\nHost: a.test\r\n\r\n"},
    {"absolute-form https, Host port 80",
     "GET https://a.test/ HTTP/1.1\r\nHost: a.test:80\r\n\r\n"},
    {"absolute-form, empty Host", "GET http://a.test/ HTTP/1.1\r\nHost:\r\n\r\n"},
    {"absolute-form, userinfo", "GET http://u:p@a.test/ HTTP/1.1\r\n\r\n"},
    {"absolute-form, empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"absolute-form, bad port", "GET http://a.test:99999/ HTTP/1.1\r\n\r\n"},
    {"absolute-form, ftp scheme", "GET ftp://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"},
    {"authority-form without CONNECT", "GET a.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n"},
    {"CONNECT without port", "CONNECT a.test HTTP/1.1\r\nHost: a.test\r\n\r\n"},
    {"CONNECT port 0", "CONNECT a.test:0 HTTP/1.1\r\n\r\n"},
    {"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: a.test\r\n\r\n"},
    {"CONNECT absolute-form", "CONNECT http://a.test:443/ HTTP/1.1\r\n\r\n"},
    {"CONNECT userinfo", "CONNECT u@a.test:443 HTTP/1.1\r\n\r\n"},
    {"CONNECT with a bad Host", "CONNECT a.test:443 HTTP/1.1\r\nHost: a b\r\n\r\n"},
    {"asterisk with GET", "GET * HTTP/1.1\r\nHost: a.test\r\n\r\n"},
};

static void
test_bad(void **state)
{
	struct sniff_http_request req;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const uint8_t *buf = (const uint8_t *)bad[i].req;
		size_t len = strlen(bad[i].req);
		enum parse_result r = sniff_http_request(buf, len, &req);

		if (r != PARSE_MALFORMED)
			fail_msg("%s: got %s", bad[i].what, parse_result_name(r));
		assert_string_equal(req.host, "");
		assert_prefixes_not_ok(buf, len);
	}
}

/* NUL cannot sit in a C string vector: its own case. */
static void
test_nul_in_value(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\n" /* request line */
				  "X: a\0b\r\n"	       /* NUL in a value */
				  "Host: a\r\n"
				  "\r\n";
	struct sniff_http_request r;

	(void)state;
	assert_int_equal(sniff_http_request((const uint8_t *)req, sizeof(req) - 1, &r),
			 PARSE_MALFORMED);
	assert_int_equal(sniff_http_request((const uint8_t *)req, 21, &r), PARSE_MALFORMED);
	assert_prefixes_not_ok((const uint8_t *)req, sizeof(req) - 1);
}

/* Refused at the first byte that proves it, not at the end of the head. */
static void
test_early_refusal(void **state)
{
	static const struct {
		const char *buf;
		size_t at; /* bytes needed to tell */
	} cases[] = {
	    {"\x16\x03\x01", 1},		 /* TLS record */
	    {"\r\nGET", 1},			 /* empty line first */
	    {"GET / HTTP/2.0\r\n", 12},		 /* the '2' */
	    {"GET / HTTP/1.1\nHost", 15},	 /* the LF */
	    {"GET / HTTP/1.1\r\nHost : a", 21},	 /* the space */
	    {"CONNECT a.test HTTP/1.1\r\n", 25}, /* on its CRLF */
	};
	struct sniff_http_request req;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const uint8_t *buf = (const uint8_t *)cases[i].buf;

		assert_int_equal(sniff_http_request(buf, cases[i].at - 1, &req), PARSE_NEED_MORE);
		assert_int_equal(sniff_http_request(buf, cases[i].at, &req), PARSE_MALFORMED);
	}
}

/* A Host of 255 bytes passes; 256 is MALFORMED, in Host and in the target. */
static void
test_host_length(void **state)
{
	char buf[600];
	struct sniff_http_request req;
	char name[300];
	size_t n;

	(void)state;
	for (n = 254; n <= 256; n++) {
		memset(name, 'h', n);
		name[n] = '\0';
		snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s:81\r\n\r\n", name);
		if (n <= 255) {
			assert_int_equal(
			    sniff_http_request((const uint8_t *)buf, strlen(buf), &req), PARSE_OK);
			assert_int_equal(req.host_len, n);
			assert_string_equal(req.host, name);
			assert_int_equal(req.port, 81);
		} else {
			assert_int_equal(
			    sniff_http_request((const uint8_t *)buf, strlen(buf), &req),
			    PARSE_MALFORMED);
		}
		snprintf(buf, sizeof(buf), "CONNECT %s:443 HTTP/1.1\r\n\r\n", name);
		assert_int_equal(sniff_http_request((const uint8_t *)buf, strlen(buf), &req),
				 n <= 255 ? PARSE_OK : PARSE_MALFORMED);
	}
}

/* A head of exactly SNIFF_HTTP_MAX_HEAD bytes passes; one more byte fails. */
static void
test_max_head(void **state)
{
	static uint8_t buf[SNIFF_HTTP_MAX_HEAD + 16];
	static const char start[] = "GET / HTTP/1.1\r\nHost: a.test\r\nX: ";
	struct sniff_http_request req;
	size_t total, fill, i;

	(void)state;
	for (total = SNIFF_HTTP_MAX_HEAD; total <= SNIFF_HTTP_MAX_HEAD + 1; total++) {
		fill = total - (sizeof(start) - 1) - 4; /* "\r\n\r\n" ends it */
		memcpy(buf, start, sizeof(start) - 1);
		memset(buf + sizeof(start) - 1, 'v', fill);
		memcpy(buf + sizeof(start) - 1 + fill, "\r\n\r\n", 4);
		if (total == SNIFF_HTTP_MAX_HEAD) {
			assert_int_equal(sniff_http_request(buf, total, &req), PARSE_OK);
			assert_int_equal(req.head_len, SNIFF_HTTP_MAX_HEAD);
			/* spot-check prefixes; all of them would be slow */
			for (i = 0; i < total; i += 97)
				assert_int_equal(sniff_http_request(buf, i, &req), PARSE_NEED_MORE);
			assert_int_equal(sniff_http_request(buf, total - 1, &req), PARSE_NEED_MORE);
		} else {
			assert_int_equal(sniff_http_request(buf, total, &req), PARSE_MALFORMED);
			/* the cap alone decides, even before the rest arrives */
			assert_int_equal(sniff_http_request(buf, SNIFF_HTTP_MAX_HEAD, &req),
					 PARSE_MALFORMED);
		}
	}
}

static void
test_empty_input(void **state)
{
	struct sniff_http_request req;

	(void)state;
	assert_int_equal(sniff_http_request(NULL, 0, &req), PARSE_NEED_MORE);
	assert_int_equal(sniff_http_request((const uint8_t *)"GET", 0, &req), PARSE_NEED_MORE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),	 cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_nul_in_value), cmocka_unit_test(test_early_refusal),
	    cmocka_unit_test(test_host_length),	 cmocka_unit_test(test_max_head),
	    cmocka_unit_test(test_empty_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
