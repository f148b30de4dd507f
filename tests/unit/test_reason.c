/*
 * test_reason.c: unit tests for reason.c, the one table of session-end
 * reasons: every value has a unique name of the log's alphabet, the HTTP
 * and TLS columns are consistent, http_refusal writes exactly the bytes
 * clients have always received, and each refusal of the policy sends the
 * TLS alert a tls listener has always sent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"
#include "reason.h"
#include "sniff_tls.h"

/* log_word: s is one or more of [a-z_]. */
static int
log_word(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || *s == '_'))
			return 0;
	return 1;
}

static void
test_every_reason_has_a_unique_name(void **state)
{
	(void)state;
	for (int r = 0; r < REASON_COUNT; r++) {
		const char *name = reason_name((enum reason)r);
		if (!log_word(name))
			fail_msg("reason %d: name \"%s\" is not [a-z_]+", r,
				 name ? name : "(null)");
		assert_ptr_equal(reason_info((enum reason)r)->name, name);
		for (int o = 0; o < r; o++)
			if (strcmp(reason_name((enum reason)o), name) == 0)
				fail_msg("reasons %d and %d are both \"%s\"", o, r, name);
	}
	/* The names other code and the docs know, pinned to their values. */
	assert_string_equal(reason_name(REASON_CLOSED), "closed");
	assert_string_equal(reason_name(REASON_SHUTDOWN), "shutdown");
	assert_string_equal(reason_name(REASON_NO_ROUTE), "no_route");
	assert_string_equal(reason_name(REASON_CONNECT_TIMEOUT), "connect_timeout");
}

static void
test_decisions(void **state)
{
	(void)state;
	assert_string_equal(decision_name(DECISION_ALLOW), "allow");
	assert_string_equal(decision_name(DECISION_DENY), "deny");
	assert_null(decision_name(DECISION_NONE));
	for (int r = 0; r < REASON_COUNT; r++) {
		enum decision d = reason_info((enum reason)r)->decision;
		int policy = r == REASON_NO_NAME || r == REASON_NO_ROUTE ||
			     r == REASON_NOT_ALLOWED || r == REASON_ADDRESS_DENIED ||
			     r == REASON_SOURCE_DENIED;
		if (d != (policy ? DECISION_DENY : DECISION_NONE))
			fail_msg("%s records decision %d", reason_name((enum reason)r), (int)d);
	}
}

static void
test_http_columns_consistent(void **state)
{
	char buf[512];

	(void)state;
	for (int r = 0; r < REASON_COUNT; r++) {
		const struct reason_info *ri = reason_info((enum reason)r);
		if (ri->http_status == NULL) {
			/* No response: nothing else of the HTTP columns may be set. */
			if (ri->http_body || ri->http_header || ri->proxy_body || ri->proxy_header)
				fail_msg("%s has HTTP text but no status", ri->name);
			for (int proxy = 0; proxy < 2; proxy++)
				assert_int_equal(
				    http_refusal((enum reason)r, proxy, buf, sizeof(buf)), 0);
			continue;
		}
		if (ri->http_body == NULL || ri->http_header == NULL)
			fail_msg("%s has a status but no body or header", ri->name);
		assert_true(strlen(ri->http_status) > 4 && ri->http_status[3] == ' ');
		for (int proxy = 0; proxy < 2; proxy++) {
			char want[96];
			size_t n = http_refusal((enum reason)r, proxy, buf, sizeof(buf) - 1);
			if (n == 0)
				fail_msg("%s (proxy %d) wrote no response", ri->name, proxy);
			buf[n] = '\0';
			assert_int_equal(strncmp(buf, "HTTP/1.1 ", 9), 0);
			assert_int_equal(strncmp(buf + 9, ri->http_status, strlen(ri->http_status)),
					 0);
			snprintf(want, sizeof(want), "\r\nX-Gatekeeper-Reason: %s\r\n", ri->name);
			assert_non_null(strstr(buf, want));
			assert_int_equal(strlen(strstr(buf, "\r\n\r\n") + 4),
					 (size_t)atoi(strstr(buf, "Content-Length: ") + 16));
		}
	}
	assert_int_equal(http_refusal(REASON_NONE, 0, buf, sizeof(buf)), 0);
	assert_int_equal(http_refusal(REASON_NONE, 1, buf, sizeof(buf)), 0);
	/* Too small a buffer: nothing, never a cut response. */
	assert_int_equal(http_refusal(REASON_NO_ROUTE, 0, buf, 100), 0);
}

/* The exact bytes of a few refusals, as clients have always received them. */
static const struct {
	enum reason reason;
	int proxy;
	const char *bytes;
} exact[] = {
    {REASON_NO_ROUTE, 0,
     "HTTP/1.1 421 Misdirected Request\r\nContent-Type: text/plain\r\nContent-Length: 35\r\n"
     "X-Gatekeeper-Reason: no_route\r\nConnection: close\r\n\r\n"
     "gatekeeper: no route for this host\n"},
    {REASON_TOO_LARGE, 0,
     "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
     "Content-Length: 35\r\nX-Gatekeeper-Reason: too_large\r\nConnection: close\r\n\r\n"
     "gatekeeper: request head too large\n"},
    {REASON_SNIFF_TIMEOUT, 1,
     "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 41\r\n"
     "X-Gatekeeper-Reason: sniff_timeout\r\nConnection: close\r\n\r\n"
     "gatekeeper: request not received in time\n"},
    {REASON_BAD_METHOD, 0,
     "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 39\r\n"
     "X-Gatekeeper-Reason: bad_method\r\nConnection: close\r\n\r\n"
     "gatekeeper: CONNECT is not served here\n"},
    {REASON_BAD_METHOD, 1,
     "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 43\r\n"
     "X-Gatekeeper-Reason: bad_method\r\nAllow: CONNECT\r\nConnection: close\r\n\r\n"
     "gatekeeper: use CONNECT or an absolute URL\n"},
    {REASON_AUTH_REQUIRED, 1,
     "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Type: text/plain\r\n"
     "Content-Length: 42\r\nX-Gatekeeper-Reason: auth_required\r\n"
     "Proxy-Authenticate: Basic realm=\"gatekeeper\"\r\nConnection: close\r\n\r\n"
     "gatekeeper: proxy authentication required\n"},
};

static void
test_refusal_bytes(void **state)
{
	char buf[512];

	(void)state;
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
		size_t n = http_refusal(exact[i].reason, exact[i].proxy, buf, sizeof(buf));
		if (n != strlen(exact[i].bytes) || memcmp(buf, exact[i].bytes, n) != 0)
			fail_msg("%s (proxy %d): %.*s", reason_name(exact[i].reason),
				 exact[i].proxy, (int)n, buf);
	}
}

static void
test_tls_alerts(void **state)
{
	(void)state;
	for (int r = 0; r < REASON_COUNT; r++) {
		uint8_t want = 0;
		switch ((enum reason)r) {
		case REASON_NO_NAME:
		case REASON_NO_ROUTE:
		case REASON_NOT_ALLOWED:
			want = SNIFF_TLS_ALERT_UNRECOGNIZED_NAME;
			break;
		case REASON_ADDRESS_DENIED:
		case REASON_SOURCE_DENIED:
			want = SNIFF_TLS_ALERT_ACCESS_DENIED;
			break;
		case REASON_NO_ADDRESS:
			want = SNIFF_TLS_ALERT_INTERNAL_ERROR;
			break;
		default:
			break;
		}
		if (reason_info((enum reason)r)->tls_alert != want)
			fail_msg("%s: alert %u, want %u", reason_name((enum reason)r),
				 reason_info((enum reason)r)->tls_alert, want);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_reason_has_a_unique_name),
	    cmocka_unit_test(test_decisions),
	    cmocka_unit_test(test_http_columns_consistent),
	    cmocka_unit_test(test_refusal_bytes),
	    cmocka_unit_test(test_tls_alerts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
