/*
 * audit.h: `gatekeeper audit`, run inside a jailed container to prove what
 * it can and cannot reach.
 *
 * It probes only what it is told: --expect-open HOST:PORT (a TCP connect
 * must succeed), --expect-closed HOST:PORT (it must not: no address, no
 * route, refused or timed out), --expect-no-dns NAME (the name must not
 * resolve), --expect-dns NAME=ADDR[,ADDR...] (the name must resolve to
 * exactly that set of addresses), and --docker, a preset of the leaks a
 * Docker network is known for: the default gateway's well-known ports, an
 * external canary name (--canary, example.com) and an IPv6 default route.
 * Names are resolved with c-ares from /etc/resolv.conf, the way the proxy
 * itself resolves. It prints one table row per check and exits 1 when
 * anything differs from what was expected, 2 on bad arguments.
 */
#ifndef GK_AUDIT_H
#define GK_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* audit_main runs `gatekeeper audit` (argv[0] is "audit"), writing the table to out. */
int audit_main(int argc, char **argv, FILE *out);

/* One default route read from the kernel's routing table. */
struct audit_route {
	int has_via;	 /* 1: it goes through a gateway, whose address is in via */
	uint8_t via[16]; /* network order: 4 bytes for IPv4, 16 for IPv6 */
	char dev[32];	 /* the interface */
};

/*
 * audit_default_routes reads the text of /proc/net/route (family AF_INET)
 * or /proc/net/ipv6_route (AF_INET6) and fills out[] with its default
 * routes (destination 0/0 or ::/0) that are up and not reject routes (the
 * kernel lists an unreachable ::/0 on lo when there is no IPv6 default),
 * at most max of them. Returns how many it filled; lines it cannot read
 * are skipped. Pure: no allocation, no I/O.
 */
size_t audit_default_routes(int family, const char *text, struct audit_route *out, size_t max);

/*
 * audit_parse_expect_dns parses the value of --expect-dns, NAME=ADDR or
 * NAME=ADDR1,ADDR2,...: NAME (a host name, not an IP literal) goes to name
 * (namelen >= NET_HOSTMAX + 1), the addresses (IP literals, IPv6 with or
 * without brackets, duplicates dropped, port 0) to addrs[0..*n), at most
 * max of them. Returns 0, or -1 with the reason in err.
 */
int audit_parse_expect_dns(const char *spec, char *name, size_t namelen,
			   struct sockaddr_storage *addrs, size_t max, size_t *n, char *err,
			   size_t errlen);

#endif
