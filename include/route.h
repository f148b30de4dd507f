/*
 * route.h: the leaves the policy is made of: names from the wire, how a
 * pattern scores against one, and which address classes an egress route
 * may never reach.
 *
 * A name read from a TLS SNI or an HTTP Host is normalized before anything
 * looks at it (lower case, one trailing dot stripped, bounded length, only
 * host-name characters). A pattern's score orders matches: an exact name
 * beats a wildcard, a longer wildcard suffix beats a shorter one, a
 * wildcard beats "*". Choosing among a listener's routes and allow entries
 * is policy.c's (policy_route), which keeps that order without scoring
 * every pattern.
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
 * and IPv4/IPv6 literals (as text, IPv6 without brackets, rewritten in
 * inet_ntop's form). A name whose last label is a number (all digits, or
 * 0x and hex digits) is an IPv4 address to inet_aton and c-ares: it is
 * accepted only as the canonical dotted quad (10.0.0.5), never in another
 * spelling (0177.0.0.1, 127.1, 0x7f000001, 2130706433, a.123). Returns 0,
 * or -1 when the name is not acceptable (out is then an empty string).
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
 * egress destination, or NULL for a globally reachable address. IPv4:
 * "unspecified" (0/8), "private" (RFC 1918), "cgnat" (100.64/10),
 * "loopback", "link-local" (169.254/16, cloud metadata), "multicast",
 * "reserved" (192.0.0/24, documentation, 6to4 relay anycast, benchmarking,
 * 240/4, broadcast). IPv6, from the IANA special-purpose registry:
 * "unspecified", "loopback", "ula" (fc00::/7), "link-local", "private"
 * (fec0::/10), "multicast", "teredo" (2001::/32), and "reserved" for every
 * other block not globally reachable (2001::/23 but its global entries,
 * 2001:db8::/32, 3fff::/20, and everything outside 2000::/3: ::/96
 * IPv4-compatible, ::ffff:0:0:0/96 SIIT, 64:ff9b:1::/48 local NAT64,
 * 100::/64 discard, 5f00::/16 SRv6, unassigned space). The forms that hand
 * an IPv4 address to IPv4 when dialed (mapped ::ffff:0:0/96, NAT64
 * 64:ff9b::/96, 6to4 2002::/16) are judged by that address.
 */
const char *route_addr_class(const struct sockaddr *sa);

/* The most IPv4 addresses route_addr_embedded_v4 finds in one IPv6 address. */
#define ROUTE_EMBEDDED_MAX 4

/*
 * route_addr_embedded_v4 writes to v4 (port 0) every IPv4 address that sa,
 * an IPv6 address, carries in a translation form: mapped, NAT64 (the well-
 * known prefix), 6to4, SIIT, IPv4-compatible, Teredo (server and client),
 * and local-use NAT64 64:ff9b:1::/48 (at each RFC 6052 position, since the
 * prefix length in use is not known). Returns how many (0 for IPv4 or an
 * IPv6 address carrying none). Address blocks given as IPv4 must catch
 * these forms too, or ::ffff:1.2.3.4 would slip past 1.2.3.4/32.
 */
size_t route_addr_embedded_v4(const struct sockaddr *sa,
			      struct sockaddr_storage v4[ROUTE_EMBEDDED_MAX]);

#endif
