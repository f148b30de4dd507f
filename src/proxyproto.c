/*
 * proxyproto.c: parse and build PROXY protocol headers (HAProxy's
 * proxy-protocol.txt, versions 1 and 2). The parser looks at the first byte
 * to pick a version, then holds each one to the letter of the spec: v1 is a
 * single CRLF-terminated line of exact syntax, v2 a 16-byte header and a
 * length-delimited block whose TLVs must nest inside it. A stream that
 * cannot start with either signature is reported as NOT_FOUND rather than
 * MALFORMED, so a caller can tell "no header" from "bad header". The writers
 * fill a local buffer first and copy it out only when it fits, so a short
 * output buffer is never left half-written.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "net.h"
#include "proxyproto.h"

#define V1_SIG_LEN 6 /* "PROXY " */
#define V2_SIG_LEN 12

#define V2_VERSION   0x20 /* high nibble of ver_cmd */
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1

#define V2_FAM_UNSPEC	   0x00
#define V2_FAM_TCP4	   0x11
#define V2_FAM_UDP4	   0x12
#define V2_FAM_TCP6	   0x21
#define V2_FAM_UDP6	   0x22
#define V2_FAM_UNIX_STREAM 0x31
#define V2_FAM_UNIX_DGRAM  0x32

#define V2_ADDR_INET  12  /* 2 * 4 + 2 * 2 */
#define V2_ADDR_INET6 36  /* 2 * 16 + 2 * 2 */
#define V2_ADDR_UNIX  216 /* 2 * 108 */
#define V2_TLV_HDR    3	  /* type, 16-bit length */

static const char v1_sig[V1_SIG_LEN + 1] = "PROXY ";
static const uint8_t v2_sig[V2_SIG_LEN] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

static int is_digit(uint8_t);
static int is_hex(uint8_t);
static int v1_ipv4(const uint8_t *, size_t, uint8_t *);
static int v1_ipv6(const uint8_t *, size_t, uint8_t *);
static int v1_port(const uint8_t *, size_t, uint16_t *);
static enum parse_result v1_partial(const uint8_t *, size_t);
static enum parse_result v1_line(const uint8_t *, size_t, struct proxyproto_header *);
static enum parse_result parse_v1(const uint8_t *, size_t, struct proxyproto_header *);
static enum parse_result parse_v2(const uint8_t *, size_t, struct proxyproto_header *);
static int usable(const struct sockaddr *, const struct sockaddr *);

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

/*
 * v1_ipv4 reads exactly four dot-separated decimal octets, 0..255, with no
 * leading zeros (spec 2.1: they could be read as octal). Writes 4 bytes in
 * network order to a. Returns 0, or -1 on any deviation.
 */
static int
v1_ipv4(const uint8_t *s, size_t n, uint8_t *a)
{
	size_t i = 0, start;
	unsigned o, v;

	for (o = 0; o < 4; o++) {
		if (o > 0) {
			if (i >= n || s[i] != '.')
				return -1;
			i++;
		}
		start = i;
		v = 0;
		while (i < n && is_digit(s[i]) && i - start < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || (s[start] == '0' && i - start > 1) || v > 255)
			return -1;
		a[o] = (uint8_t)v;
	}
	return i == n ? 0 : -1;
}

/* v1_ipv6 reads an IPv6 address as inet_pton does; writes 16 bytes to a. */
static int
v1_ipv6(const uint8_t *s, size_t n, uint8_t *a)
{
	char tmp[INET6_ADDRSTRLEN];
	size_t i;

	if (n == 0 || n >= sizeof(tmp))
		return -1;
	for (i = 0; i < n; i++) {
		if (!is_hex(s[i]) && s[i] != ':' && s[i] != '.')
			return -1;
		tmp[i] = (char)s[i];
	}
	tmp[n] = '\0';
	return inet_pton(AF_INET6, tmp, a) == 1 ? 0 : -1;
}

/* v1_port reads 0..65535 in decimal, no leading zeros except "0" itself. */
static int
v1_port(const uint8_t *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
		return -1;
	for (i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/*
 * v1_partial vets the start of a v1 line whose CRLF has not arrived: s[0..n)
 * follows "PROXY " and holds no CR or LF. It only checks what cannot change
 * (the keyword, the character set, the number of fields), so any prefix of
 * a valid line passes. Returns PARSE_NEED_MORE or PARSE_MALFORMED.
 */
static enum parse_result
v1_partial(const uint8_t *s, size_t n)
{
	static const char *const kw[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
	size_t k, i, m, spaces = 0;

	for (k = 0; k < sizeof(kw) / sizeof(kw[0]); k++) {
		m = strlen(kw[k]);
		if (memcmp(s, kw[k], n < m ? n : m) == 0)
			break;
	}
	if (k == sizeof(kw) / sizeof(kw[0]))
		return PARSE_MALFORMED;
	if (n <= m)
		return PARSE_NEED_MORE;
	if (k == 2) /* UNKNOWN: a space, then anything but CR/LF */
		return s[m] == ' ' ? PARSE_NEED_MORE : PARSE_MALFORMED;
	for (i = m; i < n; i++) {
		if (s[i] == ' ') {
			if (++spaces > 3)
				return PARSE_MALFORMED;
		} else if (k == 0 ? !is_digit(s[i]) && s[i] != '.'
				  : !is_hex(s[i]) && s[i] != ':' && s[i] != '.') {
			return PARSE_MALFORMED;
		}
	}
	return PARSE_NEED_MORE;
}

/*
 * v1_line parses a complete v1 line s[0..n): what follows "PROXY ", without
 * the CRLF. Fills out except out->len.
 */
static enum parse_result
v1_line(const uint8_t *s, size_t n, struct proxyproto_header *out)
{
	const uint8_t *f[4];
	size_t fl[4], p, k, start;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	int family, rc;

	out->version = 1;
	if (n >= 7 && memcmp(s, "UNKNOWN", 7) == 0 && (n == 7 || s[7] == ' ')) {
		out->local = 1;
		out->family = AF_UNSPEC;
		return PARSE_OK;
	}
	if (n < 5)
		return PARSE_MALFORMED;
	if (memcmp(s, "TCP4 ", 5) == 0)
		family = AF_INET;
	else if (memcmp(s, "TCP6 ", 5) == 0)
		family = AF_INET6;
	else
		return PARSE_MALFORMED;

	/* Exactly four fields, one space between each. */
	p = 5;
	for (k = 0; k < 4; k++) {
		start = p;
		while (p < n && s[p] != ' ')
			p++;
		if (p == start)
			return PARSE_MALFORMED;
		f[k] = s + start;
		fl[k] = p - start;
		if (k < 3) {
			if (p == n)
				return PARSE_MALFORMED;
			p++;
		}
	}
	if (p != n)
		return PARSE_MALFORMED;

	if (family == AF_INET)
		rc = v1_ipv4(f[0], fl[0], src) | v1_ipv4(f[1], fl[1], dst);
	else
		rc = v1_ipv6(f[0], fl[0], src) | v1_ipv6(f[1], fl[1], dst);
	if (rc != 0 || v1_port(f[2], fl[2], &sport) == -1 || v1_port(f[3], fl[3], &dport) == -1)
		return PARSE_MALFORMED;
	out->family = family;
	net_set_addr(&out->src, family, src, sport);
	net_set_addr(&out->dst, family, dst, dport);
	return PARSE_OK;
}

/* parse_v1: buf[0] is 'P'. */
static enum parse_result
parse_v1(const uint8_t *buf, size_t len, struct proxyproto_header *out)
{
	size_t lim, i;
	enum parse_result r;

	if (memcmp(buf, v1_sig, len < V1_SIG_LEN ? len : V1_SIG_LEN) != 0)
		return PARSE_NOT_FOUND;
	if (len < V1_SIG_LEN)
		return PARSE_NEED_MORE;

	/* The CRLF must end within the first PROXYPROTO_V1_MAX bytes. */
	lim = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
	for (i = V1_SIG_LEN; i < lim && buf[i] != '\r'; i++)
		if (buf[i] == '\n')
			return PARSE_MALFORMED;
	if (i == lim) {
		if (len >= PROXYPROTO_V1_MAX)
			return PARSE_MALFORMED;
		return v1_partial(buf + V1_SIG_LEN, i - V1_SIG_LEN);
	}
	if (i + 1 >= PROXYPROTO_V1_MAX)
		return PARSE_MALFORMED;
	if (i + 1 >= len)
		return v1_partial(buf + V1_SIG_LEN, i - V1_SIG_LEN);
	if (buf[i + 1] != '\n') /* a lone CR is no line end (spec 2.1) */
		return PARSE_MALFORMED;
	r = v1_line(buf + V1_SIG_LEN, i - V1_SIG_LEN, out);
	out->len = i + 2;
	return r;
}

/* parse_v2: buf[0] is CR. */
static enum parse_result
parse_v2(const uint8_t *buf, size_t len, struct proxyproto_header *out)
{
	size_t alen, total, need = 0, p, tlen;
	uint8_t cmd, fam;

	if (memcmp(buf, v2_sig, len < V2_SIG_LEN ? len : V2_SIG_LEN) != 0)
		return PARSE_NOT_FOUND;
	if (len < V2_SIG_LEN + 1)
		return PARSE_NEED_MORE;
	if ((buf[12] & 0xf0) != V2_VERSION)
		return PARSE_MALFORMED;
	cmd = buf[12] & 0x0f;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return PARSE_MALFORMED;
	if (len < V2_SIG_LEN + 2)
		return PARSE_NEED_MORE;
	fam = buf[13];
	if (cmd == V2_CMD_PROXY) {
		switch (fam) {
		case V2_FAM_UNSPEC:
			need = 0;
			break;
		case V2_FAM_TCP4:
		case V2_FAM_UDP4:
			need = V2_ADDR_INET;
			break;
		case V2_FAM_TCP6:
		case V2_FAM_UDP6:
			need = V2_ADDR_INET6;
			break;
		case V2_FAM_UNIX_STREAM:
		case V2_FAM_UNIX_DGRAM:
			need = V2_ADDR_UNIX;
			break;
		default:
			return PARSE_MALFORMED;
		}
	}
	if (len < PROXYPROTO_V2_HDR)
		return PARSE_NEED_MORE;
	alen = (size_t)buf[14] << 8 | buf[15];
	total = PROXYPROTO_V2_HDR + alen;
	if (total > PROXYPROTO_PARSE_MAX || alen < need)
		return PARSE_MALFORMED;
	if (len < total)
		return PARSE_NEED_MORE;

	out->version = 2;
	out->len = total;
	if (cmd == V2_CMD_LOCAL || fam == V2_FAM_UNSPEC) {
		out->local = 1;
		out->family = AF_UNSPEC;
		return PARSE_OK;
	}
	/* Whatever follows the addresses is a run of TLVs inside the block. */
	for (p = PROXYPROTO_V2_HDR + need; p < total; p += V2_TLV_HDR + tlen) {
		if (total - p < V2_TLV_HDR)
			return PARSE_MALFORMED;
		tlen = (size_t)buf[p + 1] << 8 | buf[p + 2];
		if (tlen > total - p - V2_TLV_HDR)
			return PARSE_MALFORMED;
	}
	if (fam == V2_FAM_TCP4) {
		const uint8_t *a = buf + PROXYPROTO_V2_HDR;

		out->family = AF_INET;
		net_set_addr(&out->src, AF_INET, a, (uint16_t)(a[8] << 8 | a[9]));
		net_set_addr(&out->dst, AF_INET, a + 4, (uint16_t)(a[10] << 8 | a[11]));
	} else if (fam == V2_FAM_TCP6) {
		const uint8_t *a = buf + PROXYPROTO_V2_HDR;

		out->family = AF_INET6;
		net_set_addr(&out->src, AF_INET6, a, (uint16_t)(a[32] << 8 | a[33]));
		net_set_addr(&out->dst, AF_INET6, a + 16, (uint16_t)(a[34] << 8 | a[35]));
	} else {
		/* UDP and AF_UNIX: fall back to UNSPEC (spec 2.2). */
		out->local = 1;
		out->family = AF_UNSPEC;
	}
	return PARSE_OK;
}

enum parse_result
proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_header *out)
{
	enum parse_result r;

	memset(out, 0, sizeof(*out));
	if (buf == NULL || len == 0)
		return PARSE_NEED_MORE;
	if (buf[0] == (uint8_t)v1_sig[0])
		r = parse_v1(buf, len, out);
	else if (buf[0] == v2_sig[0])
		r = parse_v2(buf, len, out);
	else
		return PARSE_NOT_FOUND;
	if (r != PARSE_OK)
		memset(out, 0, sizeof(*out));
	return r;
}

/* usable: both addresses present, same family, and one PROXY can carry. */
static int
usable(const struct sockaddr *src, const struct sockaddr *dst)
{
	if (src == NULL || dst == NULL || src->sa_family != dst->sa_family)
		return 0;
	return src->sa_family == AF_INET || src->sa_family == AF_INET6;
}

size_t
proxyproto_write_v1(uint8_t *out, size_t cap, const struct sockaddr *src,
		    const struct sockaddr *dst)
{
	char line[PROXYPROTO_V1_MAX + 1], a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	unsigned sport, dport;
	const char *proto;
	int n;

	if (!usable(src, dst)) {
		n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
	} else {
		if (src->sa_family == AF_INET) {
			struct sockaddr_in s4, d4;

			memcpy(&s4, src, sizeof(s4));
			memcpy(&d4, dst, sizeof(d4));
			if (inet_ntop(AF_INET, &s4.sin_addr, a, sizeof(a)) == NULL ||
			    inet_ntop(AF_INET, &d4.sin_addr, b, sizeof(b)) == NULL)
				return 0;
			sport = ntohs(s4.sin_port);
			dport = ntohs(d4.sin_port);
			proto = "TCP4";
		} else {
			struct sockaddr_in6 s6, d6;

			memcpy(&s6, src, sizeof(s6));
			memcpy(&d6, dst, sizeof(d6));
			if (inet_ntop(AF_INET6, &s6.sin6_addr, a, sizeof(a)) == NULL ||
			    inet_ntop(AF_INET6, &d6.sin6_addr, b, sizeof(b)) == NULL)
				return 0;
			sport = ntohs(s6.sin6_port);
			dport = ntohs(d6.sin6_port);
			proto = "TCP6";
		}
		n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n", proto, a, b, sport,
			     dport);
	}
	if (n < 0 || (size_t)n >= sizeof(line) || (size_t)n > cap || out == NULL)
		return 0;
	memcpy(out, line, (size_t)n);
	return (size_t)n;
}

size_t
proxyproto_write_v2(uint8_t *out, size_t cap, const struct sockaddr *src,
		    const struct sockaddr *dst)
{
	uint8_t hdr[PROXYPROTO_V2_MAX];
	size_t alen = 0;

	memcpy(hdr, v2_sig, V2_SIG_LEN);
	if (!usable(src, dst)) {
		hdr[12] = V2_VERSION | V2_CMD_LOCAL;
		hdr[13] = V2_FAM_UNSPEC;
	} else if (src->sa_family == AF_INET) {
		struct sockaddr_in s4, d4;

		memcpy(&s4, src, sizeof(s4));
		memcpy(&d4, dst, sizeof(d4));
		hdr[12] = V2_VERSION | V2_CMD_PROXY;
		hdr[13] = V2_FAM_TCP4;
		/* Addresses and ports are already in network order. */
		memcpy(hdr + 16, &s4.sin_addr, 4);
		memcpy(hdr + 20, &d4.sin_addr, 4);
		memcpy(hdr + 24, &s4.sin_port, 2);
		memcpy(hdr + 26, &d4.sin_port, 2);
		alen = V2_ADDR_INET;
	} else {
		struct sockaddr_in6 s6, d6;

		memcpy(&s6, src, sizeof(s6));
		memcpy(&d6, dst, sizeof(d6));
		hdr[12] = V2_VERSION | V2_CMD_PROXY;
		hdr[13] = V2_FAM_TCP6;
		memcpy(hdr + 16, &s6.sin6_addr, 16);
		memcpy(hdr + 32, &d6.sin6_addr, 16);
		memcpy(hdr + 48, &s6.sin6_port, 2);
		memcpy(hdr + 50, &d6.sin6_port, 2);
		alen = V2_ADDR_INET6;
	}
	hdr[14] = (uint8_t)(alen >> 8);
	hdr[15] = (uint8_t)alen;
	if (PROXYPROTO_V2_HDR + alen > cap || out == NULL)
		return 0;
	memcpy(out, hdr, PROXYPROTO_V2_HDR + alen);
	return PROXYPROTO_V2_HDR + alen;
}
