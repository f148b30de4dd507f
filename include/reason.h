/*
 * reason.h: the closed list of how a session ends, and what each ending
 * tells the client.
 *
 * Every session ends with exactly one reason. Its name is the text of the
 * access line's `reason` field and of the `reason` label of
 * gatekeeper_connections_closed_total; the same row says which decision a
 * refusal for it records, which HTTP response a client of mode http or
 * connect gets (none: the connection just closes), and which TLS alert a
 * client of mode tls gets (0: none). A new way to end is one enum value
 * and one row in reason.c; a misspelt reason is a compile error.
 */
#ifndef GK_REASON_H
#define GK_REASON_H

#include <stdint.h>

/* The routing decision a session records (the access line's `decision`). */
enum decision {
	DECISION_NONE,	     /* not decided: logged as "-", counted as "none" */
	DECISION_ALLOW,	     /* a route, upstream or allow entry was chosen */
	DECISION_DENY,	     /* the policy refused */
	DECISION_WOULD_DENY, /* action: report let through what the policy refuses */
	DECISION_COUNT
};

enum reason {
	/* ends of a relayed connection */
	REASON_CLOSED,	       /* both directions ended */
	REASON_CLIENT_ERROR,   /* reset or error from the client mid-stream */
	REASON_UPSTREAM_ERROR, /* reset or error from the upstream mid-stream */
	REASON_IDLE_TIMEOUT,
	REASON_KEEPALIVE_TIMEOUT, /* mode http: an idle kept-alive connection */
	REASON_MALFORMED_BODY,	  /* mode http: a body's framing broke mid-stream */
	REASON_BAD_RESPONSE,	  /* mode http: the upstream's response is not HTTP we relay */
	REASON_SHUTDOWN,	  /* the drain timeout ended it */
	REASON_CLIENT_CLOSED,	  /* closed before its first bytes were complete */
	REASON_OUT_OF_MEMORY,
	/* before an upstream was dialed: what the client sent */
	REASON_MALFORMED,
	REASON_SMUGGLING,
	REASON_TOO_LARGE,
	REASON_SNIFF_TIMEOUT,
	REASON_HEADER_TIMEOUT,
	REASON_BAD_METHOD,
	REASON_NOT_PROXY_REQUEST,
	REASON_AUTH_REQUIRED,
	REASON_AUTH_FAILED,
	REASON_PROXY_MISSING,
	REASON_PROXY_MALFORMED,
	REASON_PROXY_UNTRUSTED,
	/* the policy */
	REASON_NO_NAME,
	REASON_NO_ROUTE,
	REASON_NOT_ALLOWED,
	REASON_ADDRESS_DENIED,
	REASON_SOURCE_DENIED, /* the client is not among the sources that may ask */
	REASON_MISDIRECTED,
	/* the upstream side */
	REASON_NO_ADDRESS,
	REASON_FULL,
	REASON_SOURCE_LIMIT, /* max_connections_per_source reached */
	REASON_CONNECT_FAILED,
	REASON_CONNECT_TIMEOUT,
	REASON_COUNT
};

/*
 * REASON_NONE is no reason: what a check that may refuse returns when it
 * does not, and what an ending not yet chosen holds. It has no row, and is
 * never logged, counted or passed to session_close.
 */
#define REASON_NONE REASON_COUNT

/* One row of the table: everything gatekeeper says about one reason. */
struct reason_info {
	const char *name; /* the log and label text */
	enum decision
	    decision; /* what a refusal for this reason records (NONE: not a policy refusal) */
	const char *http_status; /* "403 Forbidden", or NULL: no HTTP response */
	const char *http_body;	 /* one line, after "gatekeeper: " */
	const char *http_header; /* one more header line with its CRLF, or "" */
	const char
	    *proxy_body; /* for a client of a forward proxy (mode connect), if not the same */
	const char *proxy_header;
	uint8_t tls_alert; /* SNIFF_TLS_ALERT_*, or 0: none */
};

/* reason_info returns the row of r (never NULL; r must be a value of the enum). */
const struct reason_info *reason_info(enum reason r);

/* reason_name: the log and label text of r. */
const char *reason_name(enum reason r);

/* decision_name: "allow", "deny", or NULL for DECISION_NONE. */
const char *decision_name(enum decision d);

#endif
