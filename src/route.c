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

/*
 * ends_in_number: the last label of name[0..len) is all digits, or "0x"
 * and hex digits. inet_aton, c-ares and URL parsers (WHATWG's "ends in a
 * number") read such a name as an IPv4 address in one of many spellings:
 * 0177.0.0.1, 127.1, 0x7f000001, 2130706433. Which address they make of it
 * differs between them (octal or decimal parts), so such a name is either
 * the canonical dotted quad or refused: never a name, never resolved.
 */
static int
ends_in_number(const char *name, size_t len)
{
	const char *label = name + len;
	size_t n, i = 0;
	int hex = 0;

	while (label > name && label[-1] != '.')
		label--;
	n = (size_t)(name + len - label);
	if (n >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X')) {
		hex = 1;
		i = 2;
	} else if (n == 0) {
		return 0;
	}
	for (; i < n; i++) {
		char c = label[i];
		if (!((c >= '0' && c <= '9') ||
		      (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))))
			return 0;
	}
	return 1;
}

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
	/*
	 * An IPv6 literal (Host: [::1] reaches us as "::1"), written the one
	 * way inet_ntop writes it, so equal addresses compare equal as text.
	 */
	if (memchr(out, ':', len) != NULL) {
		if (inet_pton(AF_INET6, out, v6) != 1 ||
		    inet_ntop(AF_INET6, v6, out, (socklen_t)outlen) == NULL) {
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
	/* Read as an IPv4 address somewhere downstream: the dotted quad only. */
	if (ends_in_number(out, len) && inet_pton(AF_INET, out, v6) != 1)
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
		snprintf(err, errlen,
			 "invalid pattern '%s' (a '*' may only stand alone or "
			 "start the pattern, as in '*.example.com')",
			 pattern);
		return -1;
	}
	if (route_normalize_name(name, strlen(name), norm, sizeof(norm)) == -1) {
		snprintf(err, errlen,
			 "invalid pattern '%s' (use a host name, '*.example.com' "
			 "or '*')",
			 pattern);
		return -1;
	}
	if (strcmp(norm, name) != 0) {
		snprintf(err, errlen,
			 "pattern '%s' must be written in lower case without a "
			 "trailing dot ('%s%s')",
			 pattern, name == pattern ? "" : "*.", norm);
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
    {0x00000000, 8, "unspecified"}, /* 0.0.0.0/8 "this network" */
    {0x0a000000, 8, "private"},	    /* 10/8 */
    {0x64400000, 10, "cgnat"},	    /* 100.64/10 */
    {0x7f000000, 8, "loopback"},    /* 127/8 */
    {0xa9fe0000, 16, "link-local"}, /* 169.254/16, cloud metadata */
    {0xac100000, 12, "private"},    /* 172.16/12 */
    {0xc0000000, 24, "reserved"},   /* 192.0.0/24 IETF protocol assignments */
    {0xc0000200, 24, "reserved"},   /* 192.0.2/24 TEST-NET-1 */
    {0xc0586300, 24, "reserved"},   /* 192.88.99/24 6to4 relay anycast */
    {0xc0a80000, 16, "private"},    /* 192.168/16 */
    {0xc6120000, 15, "reserved"},   /* 198.18/15 benchmarking */
    {0xc6336400, 24, "reserved"},   /* 198.51.100/24 TEST-NET-2 */
    {0xcb007100, 24, "reserved"},   /* 203.0.113/24 TEST-NET-3 */
    {0xe0000000, 4, "multicast"},   /* 224/4 */
    {0xf0000000, 4, "reserved"},    /* 240/4, incl. broadcast */
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
 * The IPv6 special-purpose registry (IANA, RFC 6890 and its updates), read
 * entry by entry, plus the address space registry: only 2000::/3 is
 * global unicast, so everything outside it that is not named here is
 * refused. The first block that holds the address decides, so the more
 * specific entries come first; a NULL class means globally reachable.
 */
struct v6_block {
	uint8_t net[16];
	unsigned prefix;
	const char *class;
};

static const struct v6_block v6_blocks[] = {
    {{0x20, 0x01, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01}, 128, NULL}, /* PCP anycast */
    {{0x20, 0x01, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02}, 128, NULL}, /* TURN anycast */
    {{0x20, 0x01, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03}, 128, NULL}, /* DNS-SD SRP */
    {{0x20, 0x01, 0, 0x02, 0, 0}, 48, "reserved"}, /* 2001:2::/48 benchmarking */
    {{0x20, 0x01, 0, 0x03}, 32, NULL},		   /* 2001:3::/32 AMT */
    {{0x20, 0x01, 0, 0x04, 0x01, 0x12}, 48, NULL}, /* 2001:4:112::/48 AS112-v6 */
    {{0x20, 0x01, 0, 0x10}, 28, "reserved"},	   /* 2001:10::/28 ORCHID */
    {{0x20, 0x01, 0, 0x20}, 28, NULL},		   /* 2001:20::/28 ORCHIDv2 */
    {{0x20, 0x01, 0, 0x30}, 28, NULL},		   /* 2001:30::/28 DETs */
    {{0x20, 0x01, 0, 0}, 32, "teredo"},		   /* 2001::/32 embeds IPv4 */
    {{0x20, 0x01}, 23, "reserved"},		   /* 2001::/23 IETF protocol assignments */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "reserved"},	   /* 2001:db8::/32 documentation */
    {{0x3f, 0xff, 0}, 20, "reserved"},		   /* 3fff::/20 documentation */
    {{0x20}, 3, NULL},				   /* 2000::/3 global unicast */
    {{0xfc}, 7, "ula"},				   /* fc00::/7 unique local */
    {{0xfe, 0x80}, 10, "link-local"},		   /* fe80::/10 */
    {{0xfe, 0xc0}, 10, "private"},		   /* fec0::/10 site-local, deprecated */
    {{0xff}, 8, "multicast"},			   /* ff00::/8 */
    /*
     * Everything else: ::/96 IPv4-compatible (deprecated), ::ffff:0:0:0/96
     * SIIT, 64:ff9b:1::/48 local-use NAT64, 100::/64 discard-only,
     * 100:0:0:1::/64 dummy, 5f00::/16 SRv6 SIDs, unassigned space.
     */
    {{0}, 0, "reserved"},
};

static int
v6_in(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, full) != 0)
		return 0;
	return rest == 0 || ((a[full] ^ net[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

static const uint8_t v6_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
static const uint8_t v6_nat64[12] = {0x00, 0x64, 0xff, 0x9b};

/*
 * translated_v4 finds the IPv4 address that an IPv6 translation form
 * hands to IPv4 when dialed: mapped ::ffff:0:0/96 (the socket speaks IPv4),
 * NAT64 64:ff9b::/96 and 6to4 2002::/16. These are judged by the address
 * inside them. Returns a pointer to its 4 bytes, or NULL.
 */
static const uint8_t *
translated_v4(const uint8_t *a)
{
	if (memcmp(a, v6_mapped, 12) == 0 || memcmp(a, v6_nat64, 12) == 0)
		return a + 12;
	if (a[0] == 0x20 && a[1] == 0x02)
		return a + 2;
	return NULL;
}

static void
put_v4(struct sockaddr_storage *out, const uint8_t *p, uint8_t flip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)out;
	uint8_t b[4] = {(uint8_t)(p[0] ^ flip), (uint8_t)(p[1] ^ flip), (uint8_t)(p[2] ^ flip),
			(uint8_t)(p[3] ^ flip)};

	memset(out, 0, sizeof(*out));
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, b, 4);
}

size_t
route_addr_embedded_v4(const struct sockaddr *sa, struct sockaddr_storage v4[ROUTE_EMBEDDED_MAX])
{
	static const uint8_t zero[16];
	static const uint8_t siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
	static const uint8_t nat64_local[6] = {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01};
	const uint8_t *a, *e;
	size_t n = 0;

	if (sa->sa_family != AF_INET6)
		return 0;
	a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
	if ((e = translated_v4(a)) != NULL) {
		put_v4(&v4[n++], e, 0);
	} else if (memcmp(a, siit, 12) == 0 ||
		   (memcmp(a, zero, 12) == 0 && !(memcmp(a, zero, 15) == 0 && a[15] <= 1))) {
		put_v4(&v4[n++], a + 12, 0); /* SIIT, IPv4-compatible (not :: or ::1) */
	} else if (memcmp(a, nat64_local, 6) == 0) {
		/* RFC 6052 places the address by prefix length; bits 64-71 are skipped. */
		const uint8_t at48[4] = {a[6], a[7], a[9], a[10]};
		const uint8_t at56[4] = {a[7], a[9], a[10], a[11]};
		put_v4(&v4[n++], at48, 0);
		put_v4(&v4[n++], at56, 0);
		put_v4(&v4[n++], a + 9, 0);
		put_v4(&v4[n++], a + 12, 0);
	} else if (v6_in(a, (const uint8_t[]){0x20, 0x01, 0, 0}, 32)) {
		put_v4(&v4[n++], a + 4, 0);	/* Teredo server */
		put_v4(&v4[n++], a + 12, 0xff); /* Teredo client, obfuscated */
	}
	return n;
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
	/* IPv4 inside IPv6, handed to IPv4 when dialed: judge that address. */
	if ((e = translated_v4(a)) != NULL)
		return v4_class(be32(e));
	for (size_t i = 0; i < sizeof(v6_blocks) / sizeof(v6_blocks[0]); i++)
		if (v6_in(a, v6_blocks[i].net, v6_blocks[i].prefix))
			return v6_blocks[i].class;
	return "reserved";
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
