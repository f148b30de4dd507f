/*
 * route.c: normalizing names from the wire, scoring route patterns, and
 * classifying the addresses an egress route must not reach.
 *
 * Both functions are pure, so they are unit-tested and fuzzed without a
 * loop. The score encodes the precedence documented in route.h in one
 * integer: exact names score above every wildcard, wildcards score by the
 * length of their suffix, and "*" scores 1.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "route.h"

#define SCORE_EXACT 1000000u

int
route_normalize_name(const char *name, size_t len, char *out, size_t outlen)
{
	size_t label = 0, i;
	unsigned char v6[16];

	out[0] = '\0';
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > ROUTE_NAME_MAX || len >= outlen)
		return -1;
	for (i = 0; i < len; i++) {
		char c = name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[i] = c;
	}
	out[len] = '\0';
	/* An IPv6 literal (Host: [::1] reaches us as "::1"). */
	if (memchr(out, ':', len) != NULL) {
		if (inet_pton(AF_INET6, out, v6) != 1) {
			out[0] = '\0';
			return -1;
		}
		return 0;
	}
	for (i = 0; i < len; i++) {
		char c = out[i];
		if (c == '.') {
			if (label == 0 || out[i - 1] == '-')
				goto bad;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			goto bad;
		if (label == 0 && c == '-')
			goto bad;
		if (++label > 63)
			goto bad;
	}
	/* a last label that is empty ("a.b..") or ends in '-' */
	if (out[len - 1] == '-' || out[len - 1] == '.')
		goto bad;
	return 0;
bad:
	out[0] = '\0';
	return -1;
}

int
route_pattern_check(const char *pattern, char *err, size_t errlen)
{
	char norm[ROUTE_NAME_MAX + 1];
	const char *name = pattern;

	if (strcmp(pattern, "*") == 0)
		return 0;
	if (strncmp(pattern, "*.", 2) == 0)
		name = pattern + 2;
	if (strchr(name, '*') != NULL) {
		snprintf(err, errlen, "invalid pattern '%s' (a '*' may only stand alone or "
				      "start the pattern, as in '*.example.com')", pattern);
		return -1;
	}
	if (route_normalize_name(name, strlen(name), norm, sizeof(norm)) == -1) {
		snprintf(err, errlen, "invalid pattern '%s' (use a host name, '*.example.com' "
				      "or '*')", pattern);
		return -1;
	}
	if (strcmp(norm, name) != 0) {
		snprintf(err, errlen, "pattern '%s' must be written in lower case without a "
				      "trailing dot ('%s%s')", pattern, name == pattern ? "" : "*.", norm);
		return -1;
	}
	return 0;
}

unsigned
route_pattern_score(const char *pattern, const char *name)
{
	size_t plen, nlen;

	if (strcmp(pattern, "*") == 0)
		return 1;
	if (name == NULL)
		return 0;
	if (strncmp(pattern, "*.", 2) != 0)
		return strcmp(pattern, name) == 0 ? SCORE_EXACT : 0;
	/* "*.example.com" matches any depth below example.com, not the apex. */
	plen = strlen(pattern) - 1; /* ".example.com" */
	nlen = strlen(name);
	if (nlen <= plen || strcmp(name + nlen - plen, pattern + 1) != 0)
		return 0;
	return 2 + (unsigned)plen;
}

int
route_name_is_ip(const char *name)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* A block of IPv4 addresses in host byte order. */
struct v4_block {
	uint32_t net;
	unsigned prefix;
	const char *class;
};

static const struct v4_block v4_refused[] = {
    {0x00000000, 8, "unspecified"},  /* 0.0.0.0/8 "this network" */
    {0x0a000000, 8, "private"},      /* 10/8 */
    {0x64400000, 10, "cgnat"},       /* 100.64/10 */
    {0x7f000000, 8, "loopback"},     /* 127/8 */
    {0xa9fe0000, 16, "link-local"},  /* 169.254/16, cloud metadata */
    {0xac100000, 12, "private"},     /* 172.16/12 */
    {0xc0000000, 24, "reserved"},    /* 192.0.0/24 IETF protocol assignments */
    {0xc0000200, 24, "reserved"},    /* 192.0.2/24 TEST-NET-1 */
    {0xc0586300, 24, "reserved"},    /* 192.88.99/24 6to4 relay anycast */
    {0xc0a80000, 16, "private"},     /* 192.168/16 */
    {0xc6120000, 15, "reserved"},    /* 198.18/15 benchmarking */
    {0xc6336400, 24, "reserved"},    /* 198.51.100/24 TEST-NET-2 */
    {0xcb007100, 24, "reserved"},    /* 203.0.113/24 TEST-NET-3 */
    {0xe0000000, 4, "multicast"},    /* 224/4 */
    {0xf0000000, 4, "reserved"},     /* 240/4, incl. broadcast */
};

static const char *
v4_class(uint32_t a)
{
	for (size_t i = 0; i < sizeof(v4_refused) / sizeof(v4_refused[0]); i++) {
		const struct v4_block *b = &v4_refused[i];
		uint32_t mask = b->prefix == 0 ? 0 : 0xffffffffu << (32 - b->prefix);
		if ((a & mask) == b->net)
			return b->class;
	}
	return NULL;
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * embedded_v4 finds an IPv4 address carried inside an IPv6 one: mapped
 * ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::a.b.c.d and 6to4
 * 2002:AABB:CCDD::/48. Returns a pointer to its 4 bytes, or NULL. "::" and
 * "::1" are not IPv4 addresses.
 */
static const uint8_t *
embedded_v4(const uint8_t *a)
{
	static const uint8_t zero[16];
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};

	if (memcmp(a, zero, 15) == 0 && a[15] <= 1)
		return NULL;
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 || memcmp(a, zero, 12) == 0)
		return a + 12;
	if (a[0] == 0x20 && a[1] == 0x02)
		return a + 2;
	return NULL;
}

int
route_addr_embedded_v4(const struct sockaddr *sa, struct sockaddr_storage *v4)
{
	const uint8_t *e;

	if (sa->sa_family != AF_INET6)
		return 0;
	e = embedded_v4(((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr);
	if (e == NULL)
		return 0;
	memset(v4, 0, sizeof(*v4));
	((struct sockaddr_in *)v4)->sin_family = AF_INET;
	memcpy(&((struct sockaddr_in *)v4)->sin_addr, e, 4);
	return 1;
}

static const char *
v6_class(const uint8_t *a)
{
	static const uint8_t zero[16];
	const uint8_t *e;

	if (memcmp(a, zero, 16) == 0)
		return "unspecified";
	if (memcmp(a, zero, 15) == 0 && a[15] == 1)
		return "loopback";
	/* IPv4 inside IPv6: judge the embedded address. */
	if ((e = embedded_v4(a)) != NULL)
		return v4_class(be32(e));
	if (a[0] == 0xff)
		return "multicast";
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return "link-local";
	if ((a[0] & 0xfe) == 0xfc)
		return "ula";
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return "reserved"; /* 2001:db8::/32 documentation */
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
		return "private"; /* fec0::/10, deprecated site-local */
	return NULL;
}

const char *
route_addr_class(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
		return v4_class(ntohl(sin->sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		return v6_class(sin6->sin6_addr.s6_addr);
	}
	return "unspecified";
}
