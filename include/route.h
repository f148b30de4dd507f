/*
 * route.h: names from the wire, which route they select, and which
 * addresses an egress route may never reach.
 *
 * A name read from a TLS SNI or an HTTP Host is normalized before anything
 * looks at it (lower case, one trailing dot stripped, bounded length, only
 * host-name characters), then matched against the route patterns of a
 * listener. Matching is deterministic: an exact name beats a wildcard, a
 * longer wildcard suffix beats a shorter one, a wildcard beats "*", and
 * between equals the route listed first wins.
 */
#ifndef GK_ROUTE_H
#define GK_ROUTE_H

#include <stddef.h>
#include <sys/socket.h>

#define ROUTE_NAME_MAX 253

/*
 * route_normalize_name writes the normalized form of name[0..len) into out
 * (at least ROUTE_NAME_MAX + 1 bytes). Accepted: DNS names made of
 * letters, digits, '-' and '_', labels of 1-63 bytes, 253 bytes in all,
 * and IPv4/IPv6 literals (as text, IPv6 without brackets). Returns 0, or -1
 * when the name is not acceptable (out is then an empty string).
 */
int route_normalize_name(const char *name, size_t len, char *out, size_t outlen);

/*
 * route_pattern_check validates a match pattern: "*", "*.example.com" or
 * an exact name. Returns 0, or -1 with a reason in err.
 */
int route_pattern_check(const char *pattern, char *err, size_t errlen);

/*
 * route_pattern_score says how well pattern matches a normalized name:
 * 0 for no match, else a score where a higher value is more specific.
 * name may be NULL (the client sent no name): only "*" matches it.
 */
unsigned route_pattern_score(const char *pattern, const char *name);

/* route_name_is_ip: 1 if a normalized name is an IPv4 or IPv6 literal. */
int route_name_is_ip(const char *name);

/*
 * route_addr_class names the address class that makes sa unsafe as an
 * egress destination: "loopback", "private" (RFC 1918), "link-local"
 * (including cloud metadata 169.254.169.254), "cgnat", "multicast",
 * "unspecified", "reserved" (documentation, benchmarking, 240/4,
 * broadcast), "ula" (fc00::/7). IPv6 addresses embedding an IPv4 address
 * (mapped ::ffff:0:0/96, compatible ::/96, NAT64 64:ff9b::/96, 6to4
 * 2002::/16) are judged by the embedded address. Returns NULL for an
 * address in none of these classes.
 */
const char *route_addr_class(const struct sockaddr *sa);

/*
 * route_addr_embedded_v4: when sa is an IPv6 address carrying an IPv4 one
 * (the forms route_addr_class judges by it), writes that IPv4 address
 * (port 0) to v4 and returns 1; else 0. Address blocks given as IPv4 must
 * catch these forms too, or ::ffff:1.2.3.4 would slip past 1.2.3.4/32.
 */
int route_addr_embedded_v4(const struct sockaddr *sa, struct sockaddr_storage *v4);

#endif
