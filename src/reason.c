/*
 * reason.c: the one table of session-end reasons (see reason.h). The HTTP
 * columns are what http_refusal writes, the TLS column what a tls
 * listener's refusal sends before it closes.
 */
#include <stddef.h>

#include "reason.h"
#include "sniff_tls.h"

#define AUTH_HEADER "Proxy-Authenticate: Basic realm=\"gatekeeper\"\r\n"
#define TIMEOUT_408 "408 Request Timeout", "request not received in time", ""

static const struct reason_info table[REASON_COUNT] = {
    [REASON_CLOSED] = {"closed", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},
    [REASON_CLIENT_ERROR] = {"client_error", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},
    [REASON_UPSTREAM_ERROR] = {"upstream_error", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},
    [REASON_IDLE_TIMEOUT] = {"idle_timeout", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},
    [REASON_KEEPALIVE_TIMEOUT] = {"keepalive_timeout", DECISION_NONE, NULL, NULL, NULL, NULL, NULL,
				  0},
    [REASON_MALFORMED_BODY] = {"malformed_body", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},
    [REASON_BAD_RESPONSE] = {"bad_response", DECISION_NONE, "502 Bad Gateway",
			     "upstream sent an invalid response", "", NULL, NULL, 0},
    [REASON_SHUTDOWN] = {"shutdown", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},
    [REASON_CLIENT_CLOSED] = {"client_closed", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},
    [REASON_OUT_OF_MEMORY] = {"out_of_memory", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},

    [REASON_MALFORMED] = {"malformed", DECISION_NONE, "400 Bad Request", "malformed request", "",
			  NULL, NULL, 0},
    [REASON_SMUGGLING] = {"smuggling", DECISION_NONE, "400 Bad Request",
			  "ambiguous request framing", "", NULL, NULL, 0},
    [REASON_TOO_LARGE] = {"too_large", DECISION_NONE, "431 Request Header Fields Too Large",
			  "request head too large", "", NULL, NULL, 0},
    [REASON_SNIFF_TIMEOUT] = {"sniff_timeout", DECISION_NONE, TIMEOUT_408, NULL, NULL, 0},
    [REASON_HEADER_TIMEOUT] = {"header_timeout", DECISION_NONE, TIMEOUT_408, NULL, NULL, 0},
    [REASON_BAD_METHOD] = {"bad_method", DECISION_NONE, "405 Method Not Allowed",
			   "CONNECT is not served here", "", "use CONNECT or an absolute URL",
			   "Allow: CONNECT\r\n", 0},
    [REASON_NOT_PROXY_REQUEST] = {"not_proxy_request", DECISION_NONE, "400 Bad Request",
				  "this is a proxy: use CONNECT or an absolute URL", "", NULL, NULL,
				  0},
    [REASON_AUTH_REQUIRED] = {"auth_required", DECISION_NONE, "407 Proxy Authentication Required",
			      "proxy authentication required", AUTH_HEADER, NULL, NULL, 0},
    [REASON_AUTH_FAILED] = {"auth_failed", DECISION_NONE, "407 Proxy Authentication Required",
			    "proxy authentication failed", AUTH_HEADER, NULL, NULL, 0},
    [REASON_PROXY_MISSING] = {"proxy_missing", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},
    [REASON_PROXY_MALFORMED] = {"proxy_malformed", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},
    [REASON_PROXY_UNTRUSTED] = {"proxy_untrusted", DECISION_NONE, NULL, NULL, NULL, NULL, NULL, 0},

    [REASON_NO_NAME] = {"no_name", DECISION_DENY, "400 Bad Request", "the request names no host",
			"", NULL, NULL, SNIFF_TLS_ALERT_UNRECOGNIZED_NAME},
    [REASON_NO_ROUTE] = {"no_route", DECISION_DENY, "421 Misdirected Request",
			 "no route for this host", "", NULL, NULL,
			 SNIFF_TLS_ALERT_UNRECOGNIZED_NAME},
    [REASON_NOT_ALLOWED] = {"not_allowed", DECISION_DENY, "403 Forbidden",
			    "destination not allowed", "", NULL, NULL,
			    SNIFF_TLS_ALERT_UNRECOGNIZED_NAME},
    [REASON_ADDRESS_DENIED] = {"address_denied", DECISION_DENY, "403 Forbidden",
			       "destination address not allowed", "", NULL, NULL,
			       SNIFF_TLS_ALERT_ACCESS_DENIED},
    [REASON_SOURCE_DENIED] = {"source_denied", DECISION_DENY, "403 Forbidden",
			      "not allowed from this client", "", NULL, NULL,
			      SNIFF_TLS_ALERT_ACCESS_DENIED},
    [REASON_MISDIRECTED] = {"misdirected", DECISION_NONE, "421 Misdirected Request",
			    "this connection serves another host", "", NULL, NULL, 0},

    [REASON_NO_ADDRESS] = {"no_address", DECISION_NONE, "503 Service Unavailable",
			   "upstream not resolvable yet", "", NULL, NULL,
			   SNIFF_TLS_ALERT_INTERNAL_ERROR},
    [REASON_FULL] = {"full", DECISION_NONE, "503 Service Unavailable",
		     "too many connections, try again", "", NULL, NULL, 0},
    [REASON_SOURCE_LIMIT] = {"source_limit", DECISION_NONE, "429 Too Many Requests",
			     "too many connections from this address", "", NULL, NULL, 0},
    [REASON_CONNECT_FAILED] = {"connect_failed", DECISION_NONE, "502 Bad Gateway",
			       "upstream unreachable", "", NULL, NULL, 0},
    [REASON_CONNECT_TIMEOUT] = {"connect_timeout", DECISION_NONE, "504 Gateway Timeout",
				"upstream did not answer in time", "", NULL, NULL, 0},
};

const struct reason_info *
reason_info(enum reason r)
{
	return &table[(unsigned)r < REASON_COUNT ? r : REASON_OUT_OF_MEMORY];
}

const char *
reason_name(enum reason r)
{
	return reason_info(r)->name;
}

const char *
decision_name(enum decision d)
{
	switch (d) {
	case DECISION_ALLOW:
		return "allow";
	case DECISION_DENY:
		return "deny";
	case DECISION_WOULD_DENY:
		return "would_deny";
	default:
		return NULL;
	}
}
