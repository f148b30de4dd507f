/*
 * net.h: address parsing and formatting, and socket helpers.
 *
 * Everything here is synchronous and small: turning "host:port" text into
 * parts, IP literals into sockaddrs, sockaddrs back into text, and creating
 * listening sockets. Errors are returned as text in a caller buffer (redis
 * anet style) so the caller, who knows the context, logs them once.
 */
#ifndef GK_NET_H
#define GK_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest text net_format can produce: "[v6addr%scope]:65535". */
#define NET_ADDRSTRLEN 72
/* Longest host name accepted in an address (RFC 1035 limit). */
#define NET_HOSTMAX 253

/*
 * net_split_hostport splits "host:port", "[v6]:port", ":port" or "*:port".
 * host (at least NET_HOSTMAX + 1 bytes) receives the host without brackets,
 * "" for ":port" and "*:port". Returns 0, or -1 with a reason in err.
 */
int net_split_hostport(const char *text, char *host, size_t hostlen, uint16_t *port, char *err,
		       size_t errlen);

/* net_parse_port parses a decimal port 1-65535 (0 too when allow_zero). */
int net_parse_port(const char *text, int allow_zero, uint16_t *port);

/*
 * net_parse_ip fills ss from an IPv4 or IPv6 literal (no brackets) and port.
 * Returns 0, or -1 when host is not an IP literal.
 */
int net_parse_ip(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);

/* net_valid_hostname: 1 if name is a syntactically valid DNS host name. */
int net_valid_hostname(const char *name);

/* net_format writes "ip:port" or "[ip]:port" into buf and returns buf. */
const char *net_format(const struct sockaddr *sa, char *buf, size_t len);

/*
 * net_unmap_v4: when sa is an IPv4-mapped IPv6 address (::ffff:a.b.c.d),
 * writes the IPv4 address it is (and its port) to out and returns out;
 * else NULL.
 */
const struct sockaddr *net_unmap_v4(const struct sockaddr *sa, struct sockaddr_in *out);

/*
 * net_addr_bytes: the address of sa in network order, its length (4 or
 * 16) in *len; NULL (and 0) for another family.
 */
const uint8_t *net_addr_bytes(const struct sockaddr *sa, size_t *len);

/* net_addr_format writes the address alone, without port. */
const char *net_addr_format(const struct sockaddr *sa, char *buf, size_t len);

/*
 * net_set_addr fills ss from a raw network-order address (4 bytes for
 * AF_INET, 16 for AF_INET6) and a host-order port.
 */
void net_set_addr(struct sockaddr_storage *ss, int family, const uint8_t *addr, uint16_t port);

/* net_port returns the port of an AF_INET/AF_INET6 sockaddr, host order (0 otherwise). */
uint16_t net_port(const struct sockaddr *sa);

/* net_sockaddr_len returns the length of a sockaddr of this family. */
socklen_t net_sockaddr_len(const struct sockaddr *sa);

/* net_sockaddr_equal compares family, address and port. */
int net_sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b);

/*
 * net_listen opens a non-blocking, close-on-exec listening TCP socket on sa
 * with SO_REUSEADDR (and IPV6_V6ONLY for IPv6, as nginx does, so 0.0.0.0:P
 * and [::]:P can both be listed). reuseport sets SO_REUSEPORT, so each
 * worker thread can own a socket on the same address and the kernel
 * spreads connections over them. TCP_NODELAY is set on it, and Linux
 * passes it on to every accepted socket. Returns the fd, or -1 with err set.
 */
int net_listen(const struct sockaddr *sa, socklen_t len, int backlog, int reuseport, char *err,
	       size_t errlen);

/* net_set_nodelay turns off Nagle on a connected TCP socket. */
void net_set_nodelay(int fd);

/*
 * net_connect starts a TCP connection to sa from a new non-blocking,
 * close-on-exec socket with Nagle off. Returns the fd (connected, or with
 * the connect in progress: writability then tells how it ended, see
 * net_connect_result), or -1 with errno set and no fd left open.
 */
int net_connect(const struct sockaddr *sa, socklen_t len);

/*
 * net_bind_udp opens a non-blocking UDP socket bound to sa that reports
 * each datagram's destination address (IP_PKTINFO / IPV6_RECVPKTINFO);
 * IPv6 only for an IPv6 address. Returns the fd, or -1 with a message in
 * err.
 */
int net_bind_udp(const struct sockaddr *sa, socklen_t len, int reuseport, char *err, size_t errlen);

/* net_connect_result returns 0 once fd's connect succeeded, else its errno. */
int net_connect_result(int fd);

#endif
