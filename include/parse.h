/*
 * parse.h: the result every wire parser returns.
 *
 * The protocol parsers (sniff_tls, sniff_http, proxyproto) are pure and
 * bounded: they read a byte range, allocate nothing, log nothing, and report
 * one of these outcomes. The caller decides whether to wait for more bytes,
 * route, or close the connection.
 */
#ifndef GK_PARSE_H
#define GK_PARSE_H

enum parse_result {
	PARSE_OK,	 /* the field was found and written to the output */
	PARSE_NEED_MORE, /* the bytes so far are a valid prefix: read more */
	PARSE_NOT_FOUND, /* complete and valid, but the field is absent */
	PARSE_MALFORMED, /* not this protocol, or violates it: close */
};

/* parse_result_name returns a static lower-case name for logs ("ok", ...). */
static inline const char *
parse_result_name(enum parse_result r)
{
	switch (r) {
	case PARSE_OK:
		return "ok";
	case PARSE_NEED_MORE:
		return "need_more";
	case PARSE_NOT_FOUND:
		return "not_found";
	case PARSE_MALFORMED:
		return "malformed";
	}
	return "unknown";
}

#endif
