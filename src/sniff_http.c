/*
 * sniff_http.c: a strict reader for the head of an HTTP/1.x request. It walks
 * the bytes once, left to right, checking each character against the RFC 9110
 * and 9112 grammar as it comes, so a stream that is not HTTP is refused from
 * its first wrong byte instead of after a blank line that never arrives. Each
 * line is only interpreted (request-target form, Host value) once its CRLF
 * has arrived, so a valid head cut anywhere still reads as NEED_MORE. The
 * parser keeps no state between calls: the caller passes the whole buffer
 * again, which costs little for heads capped at SNIFF_HTTP_MAX_HEAD.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sniff_http.h"

static int is_alpha(uint8_t);
static int is_digit(uint8_t);
static int is_hex(uint8_t);
static int is_tchar(uint8_t);
static int is_field_char(uint8_t);
static int is_regname_char(uint8_t);
static int ascii_ieq(const void *, const char *, size_t);
static enum parse_result parse_port(const uint8_t *, size_t, uint16_t *);
static enum parse_result parse_authority(const uint8_t *, size_t, char *, size_t *, uint16_t *);
static enum parse_result parse_target(const uint8_t *, struct sniff_http_request *);
static enum parse_result parse_request_line(const uint8_t *, size_t, struct sniff_http_request *,
					    size_t *);
static enum parse_result parse_host(const uint8_t *, size_t, struct sniff_http_request *);
static enum parse_result parse_head(const uint8_t *, size_t, struct sniff_http_request *);

static int
is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static int
is_hex(uint8_t c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* tchar (RFC 9110 5.6.2): the characters of methods and field names. */
static int
is_tchar(uint8_t c)
{
	if (is_alpha(c) || is_digit(c))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value characters: HTAB, SP, VCHAR, obs-text. No CR, LF, NUL, DEL. */
static int
is_field_char(uint8_t c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* reg-name (RFC 3986 3.2.2): unreserved and sub-delims; '%' handled apart. */
static int
is_regname_char(uint8_t c)
{
	if (is_alpha(c) || is_digit(c))
		return 1;
	return c != '\0' && strchr("-._~!$&'()*+,;=", c) != NULL;
}

/* ascii_ieq compares n bytes, ASCII case-insensitively (no locale). */
static int
ascii_ieq(const void *a, const char *b, size_t n)
{
	const uint8_t *p = a;
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t x = p[i], y = (uint8_t)b[i];

		if (x >= 'A' && x <= 'Z')
			x = (uint8_t)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (uint8_t)(y - 'A' + 'a');
		if (x != y)
			return 0;
	}
	return 1;
}

/* parse_port reads 1 to 5 digits worth 1..65535 from s[0..n). */
static enum parse_result
parse_port(const uint8_t *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0 || n > 5)
		return PARSE_MALFORMED;
	for (i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return PARSE_MALFORMED;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return PARSE_MALFORMED;
	*port = (uint16_t)v;
	return PARSE_OK;
}

/*
 * parse_authority reads `host [":" port]` from s[0..n), the form shared by
 * the Host header, an absolute-form authority and a CONNECT target. host is
 * a reg-name (percent-encoding checked, not decoded) or a bracketed IPv6
 * literal, which is stored without its brackets. No userinfo, no IPvFuture,
 * no zone. Writes host (256 bytes, NUL-terminated), *host_len, and *port
 * (0 when absent). Returns PARSE_OK, PARSE_NOT_FOUND for an empty s, or
 * PARSE_MALFORMED.
 */
static enum parse_result
parse_authority(const uint8_t *s, size_t n, char *host, size_t *host_len, uint16_t *port)
{
	size_t i, hl;

	*host_len = 0;
	*port = 0;
	host[0] = '\0';
	if (n == 0)
		return PARSE_NOT_FOUND;
	if (s[0] == '[') {
		char tmp[INET6_ADDRSTRLEN];
		struct in6_addr a6;

		for (i = 1; i < n && s[i] != ']'; i++)
			if (!is_hex(s[i]) && s[i] != ':' && s[i] != '.')
				return PARSE_MALFORMED;
		if (i == n)
			return PARSE_MALFORMED;
		hl = i - 1;
		if (hl == 0 || hl >= sizeof(tmp))
			return PARSE_MALFORMED;
		memcpy(tmp, s + 1, hl);
		tmp[hl] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return PARSE_MALFORMED;
		memcpy(host, tmp, hl + 1);
		i++; /* past ']' */
	} else {
		for (i = 0; i < n && s[i] != ':'; i++) {
			if (s[i] == '%') {
				if (n - i < 3 || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
					return PARSE_MALFORMED;
				i += 2;
			} else if (!is_regname_char(s[i])) {
				return PARSE_MALFORMED; /* '@' (userinfo) lands here too */
			}
		}
		hl = i;
		if (hl == 0 || hl > 255)
			return PARSE_MALFORMED;
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	*host_len = hl;
	if (i == n)
		return PARSE_OK;
	if (s[i] != ':')
		return PARSE_MALFORMED;
	return parse_port(s + i + 1, n - i - 1, port);
}

/*
 * parse_target decides the request-target form (RFC 9112 3.2) and, for the
 * absolute and authority forms, fills out->host and out->port from it.
 */
static enum parse_result
parse_target(const uint8_t *buf, struct sniff_http_request *out)
{
	const uint8_t *t = buf + out->target_off;
	size_t n = out->target_len, p, e;

	if (strcmp(out->method, "CONNECT") == 0) {
		out->form = SNIFF_HTTP_AUTHORITY;
		if (parse_authority(t, n, out->host, &out->host_len, &out->port) != PARSE_OK ||
		    out->port == 0)
			return PARSE_MALFORMED;
		return PARSE_OK;
	}
	if (n == 1 && t[0] == '*') {
		if (strcmp(out->method, "OPTIONS") != 0)
			return PARSE_MALFORMED;
		out->form = SNIFF_HTTP_ASTERISK;
		return PARSE_OK;
	}
	if (t[0] == '/') {
		out->form = SNIFF_HTTP_ORIGIN;
		return PARSE_OK;
	}
	/* absolute-form; only the schemes a proxy request can carry */
	if (n >= 7 && ascii_ieq(t, "http://", 7)) {
		p = 7;
	} else if (n >= 8 && ascii_ieq(t, "https://", 8)) {
		p = 8;
		out->https = 1;
	} else {
		return PARSE_MALFORMED;
	}
	for (e = p; e < n && t[e] != '/' && t[e] != '?' && t[e] != '#'; e++)
		;
	if (parse_authority(t + p, e - p, out->host, &out->host_len, &out->port) != PARSE_OK)
		return PARSE_MALFORMED;
	out->form = SNIFF_HTTP_ABSOLUTE;
	return PARSE_OK;
}

/*
 * parse_request_line reads `method SP request-target SP HTTP/1.x CRLF`.
 * Single spaces only, as a strict server requires. On PARSE_OK *next is the
 * offset of the first header line.
 */
static enum parse_result
parse_request_line(const uint8_t *buf, size_t len, struct sniff_http_request *out, size_t *next)
{
	static const char version[] = "HTTP/1.";
	size_t i = 0, t, k;

	while (i < len && is_tchar(buf[i])) {
		if (i == SNIFF_HTTP_METHOD_MAX)
			return PARSE_MALFORMED;
		i++;
	}
	if (i == len)
		return PARSE_NEED_MORE;
	if (i == 0 || buf[i] != ' ')
		return PARSE_MALFORMED;
	memcpy(out->method, buf, i);
	out->method[i] = '\0';

	t = ++i;
	while (i < len && buf[i] > 0x20 && buf[i] < 0x7f) /* VCHAR */
		i++;
	if (i == len)
		return PARSE_NEED_MORE;
	if (i == t || buf[i] != ' ')
		return PARSE_MALFORMED;
	out->target_off = t;
	out->target_len = i - t;
	i++;

	for (k = 0; k < sizeof(version) - 1; k++, i++) {
		if (i == len)
			return PARSE_NEED_MORE;
		if (buf[i] != (uint8_t)version[k])
			return PARSE_MALFORMED;
	}
	if (i == len)
		return PARSE_NEED_MORE;
	if (buf[i] != '0' && buf[i] != '1')
		return PARSE_MALFORMED;
	out->version_minor = buf[i] - '0';
	i++;
	if (i == len)
		return PARSE_NEED_MORE;
	if (buf[i] != '\r')
		return PARSE_MALFORMED;
	i++;
	if (i == len)
		return PARSE_NEED_MORE;
	if (buf[i] != '\n')
		return PARSE_MALFORMED;
	*next = i + 1;
	return parse_target(buf, out);
}

/*
 * parse_host checks one Host value (OWS already trimmed). In origin and
 * asterisk form it becomes the request's host; in absolute form it must
 * name the same host and port as the target (ports compared after
 * defaulting to the scheme's); for CONNECT it only has to be well-formed.
 */
static enum parse_result
parse_host(const uint8_t *v, size_t n, struct sniff_http_request *out)
{
	char host[256];
	size_t host_len;
	uint16_t port, want_port, got_port;
	enum parse_result r;

	r = parse_authority(v, n, host, &host_len, &port);
	if (r == PARSE_MALFORMED)
		return r;
	switch (out->form) {
	case SNIFF_HTTP_ORIGIN:
	case SNIFF_HTTP_ASTERISK:
		memcpy(out->host, host, host_len + 1);
		out->host_len = host_len;
		out->port = port;
		return PARSE_OK;
	case SNIFF_HTTP_ABSOLUTE:
		if (r == PARSE_NOT_FOUND || host_len != out->host_len ||
		    !ascii_ieq(host, out->host, host_len))
			return PARSE_MALFORMED;
		want_port = out->port ? out->port : (out->https ? 443 : 80);
		got_port = port ? port : (out->https ? 443 : 80);
		return want_port == got_port ? PARSE_OK : PARSE_MALFORMED;
	case SNIFF_HTTP_AUTHORITY:
		return PARSE_OK;
	}
	return PARSE_MALFORMED;
}

/* parse_head reads the request line, then header lines up to CRLF CRLF. */
static enum parse_result
parse_head(const uint8_t *buf, size_t len, struct sniff_http_request *out)
{
	size_t i, name, colon, vs, ve;
	int host_seen = 0;
	enum parse_result r;

	r = parse_request_line(buf, len, out, &i);
	if (r != PARSE_OK)
		return r;
	for (;;) {
		if (i == len)
			return PARSE_NEED_MORE;
		if (buf[i] == '\r') {
			if (i + 1 == len)
				return PARSE_NEED_MORE;
			if (buf[i + 1] != '\n')
				return PARSE_MALFORMED;
			out->head_len = i + 2;
			break;
		}
		/* A line starting with SP or HTAB is obs-fold (RFC 9112 5.2). */
		name = i;
		while (i < len && is_tchar(buf[i]))
			i++;
		if (i == len)
			return PARSE_NEED_MORE;
		/* Also refuses "Name :", which RFC 9112 5.1 forbids. */
		if (i == name || buf[i] != ':')
			return PARSE_MALFORMED;
		colon = i++;
		while (i < len && is_field_char(buf[i]))
			i++;
		if (i == len)
			return PARSE_NEED_MORE;
		if (buf[i] != '\r')
			return PARSE_MALFORMED;
		if (i + 1 == len)
			return PARSE_NEED_MORE;
		if (buf[i + 1] != '\n')
			return PARSE_MALFORMED;
		vs = colon + 1;
		ve = i;
		i += 2;
		while (vs < ve && (buf[vs] == ' ' || buf[vs] == '\t'))
			vs++;
		while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t'))
			ve--;
		if (colon - name == 19 && ascii_ieq(buf + name, "proxy-authorization", 19)) {
			if (out->proxy_auth_len > 0)
				return PARSE_MALFORMED;
			out->proxy_auth_off = vs;
			out->proxy_auth_len = ve - vs;
		}
		if (colon - name == 4 && ascii_ieq(buf + name, "host", 4)) {
			if (host_seen++)
				return PARSE_MALFORMED;
			if (parse_host(buf + vs, ve - vs, out) != PARSE_OK)
				return PARSE_MALFORMED;
		}
	}
	return out->host_len > 0 ? PARSE_OK : PARSE_NOT_FOUND;
}

enum parse_result
sniff_http_request(const uint8_t *buf, size_t len, struct sniff_http_request *out)
{
	enum parse_result r;

	memset(out, 0, sizeof(*out));
	if (buf == NULL)
		len = 0;
	/* Never look past the cap: a head still open there is refused. */
	r = parse_head(buf, len < SNIFF_HTTP_MAX_HEAD ? len : SNIFF_HTTP_MAX_HEAD, out);
	if (r == PARSE_NEED_MORE && len >= SNIFF_HTTP_MAX_HEAD)
		r = PARSE_MALFORMED;
	if (r == PARSE_MALFORMED)
		memset(out, 0, sizeof(*out));
	return r;
}
