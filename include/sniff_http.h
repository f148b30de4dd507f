/*
 * sniff_http.h: read the request line and Host of an HTTP/1.0 or 1.1 request
 * head, so a listener can route plain HTTP by name and serve CONNECT. The
 * parser is pure and bounded: it reads the caller's buffer, allocates
 * nothing, logs nothing, and is strict, because whatever it accepts is
 * relayed to a server that may read the same bytes differently.
 */
#ifndef GK_SNIFF_HTTP_H
#define GK_SNIFF_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "parse.h"

/*
 * Cap on a request head, blank line included. A head that has not ended
 * within this many bytes is MALFORMED, so a caller holding
 * SNIFF_HTTP_MAX_HEAD bytes never sees NEED_MORE.
 */
#define SNIFF_HTTP_MAX_HEAD 65536

#define SNIFF_HTTP_METHOD_MAX 23 /* longest method accepted */

enum sniff_http_form {
	SNIFF_HTTP_ORIGIN,    /* GET /path */
	SNIFF_HTTP_ABSOLUTE,  /* GET http://host/path (a proxy request) */
	SNIFF_HTTP_AUTHORITY, /* CONNECT host:port */
	SNIFF_HTTP_ASTERISK,  /* OPTIONS * */
};

struct sniff_http_request {
	char method[SNIFF_HTTP_METHOD_MAX + 1]; /* NUL-terminated, case kept */
	enum sniff_http_form form;
	size_t target_off, target_len; /* request-target, as an offset into buf */
	/*
	 * The host the request is for: from the request-target in absolute
	 * and authority form, else from the Host header. Host part only: no
	 * port, raw case, IPv6 without brackets. NUL-terminated.
	 */
	char host[256];
	size_t host_len;   /* 0 when no host was found */
	uint16_t port;	   /* explicit port, 0 if absent */
	int https;	   /* absolute form with the https scheme */
	int version_minor; /* 0 or 1 */
	size_t head_len;   /* bytes up to and including the blank line */
	/*
	 * The Proxy-Authorization value (trimmed), as an offset into buf;
	 * length 0 when absent. A second such header is MALFORMED.
	 */
	size_t proxy_auth_off, proxy_auth_len;
};

/*
 * sniff_http_request parses the request head at the start of buf[0..len).
 *
 * Returns:
 *   PARSE_OK         the head is complete and names a host: every field
 *                    of out is set.
 *   PARSE_NOT_FOUND  the head is complete and valid but names no host
 *                    (origin or asterisk form with no Host header, or an
 *                    empty one): out is set, with host "" and port 0.
 *   PARSE_NEED_MORE  buf is a valid prefix of a head that has not ended
 *                    yet. Only when len < SNIFF_HTTP_MAX_HEAD.
 *   PARSE_MALFORMED  not an HTTP/1.0 or 1.1 request head, or one a strict
 *                    server must refuse: a bad method or header name
 *                    (including whitespace before the colon), a version
 *                    other than HTTP/1.0 or HTTP/1.1, bare LF or CR, control
 *                    characters, obs-fold continuation lines, a duplicate
 *                    Host, a host longer than 255, a bad port (empty, 0,
 *                    over 65535, not digits), userinfo in an authority, a
 *                    scheme other than http/https, a Host that disagrees
 *                    with an absolute-form target, CONNECT without host:port,
 *                    "*" with a method other than OPTIONS, a head over
 *                    SNIFF_HTTP_MAX_HEAD. Detected as early as the bytes
 *                    allow, not only once the head is complete.
 *
 * For CONNECT the target is authoritative; a Host header is checked for
 * syntax and duplicates but not compared. Empty lines before the request
 * line (RFC 9112 2.2 allows skipping them) are MALFORMED here.
 *
 * out is always written (zeroed first); its fields mean something only for
 * PARSE_OK and PARSE_NOT_FOUND.
 */
enum parse_result sniff_http_request(const uint8_t *buf, size_t len,
				     struct sniff_http_request *out);

#endif
