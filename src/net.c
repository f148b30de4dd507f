/*
 * net.c: address text <-> sockaddr, and listening sockets.
 *
 * Only IP literals are turned into sockaddrs here; names go through the
 * asynchronous resolver, never through a blocking getaddrinfo.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"

int
net_parse_port(const char *text, int allow_zero, uint16_t *port)
{
	unsigned long v = 0;
	const char *p;

	if (*text == '\0' || strlen(text) > 5)
		return -1;
	for (p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535 || (v == 0 && !allow_zero))
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int
net_split_hostport(const char *text, char *host, size_t hostlen, uint16_t *port, char *err,
		   size_t errlen)
{
	const char *colon, *hs, *he;

	if (text[0] == '[') {
		he = strchr(text, ']');
		if (he == NULL) {
			snprintf(err, errlen, "missing ']' after IPv6 address");
			return -1;
		}
		if (he[1] != ':') {
			snprintf(err, errlen, "expected ':PORT' after ']'");
			return -1;
		}
		hs = text + 1;
		colon = he + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "missing ':PORT'");
			return -1;
		}
		if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
			snprintf(err, errlen, "an IPv6 address needs brackets, like [::1]:80");
			return -1;
		}
		hs = text;
		he = colon;
		if (he - hs == 1 && *hs == '*')
			he = hs;
	}
	if ((size_t)(he - hs) >= hostlen || (size_t)(he - hs) > NET_HOSTMAX) {
		snprintf(err, errlen, "host too long");
		return -1;
	}
	/* Brackets hold an IPv6 address, nothing else. */
	if (text[0] == '[' && memchr(hs, ':', (size_t)(he - hs)) == NULL) {
		snprintf(err, errlen, "brackets must hold an IPv6 address");
		return -1;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	if (net_parse_port(colon + 1, 1, port) == -1) {
		snprintf(err, errlen, "invalid port '%s'", colon + 1);
		return -1;
	}
	return 0;
}

int
net_parse_ip(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

int
net_valid_hostname(const char *name)
{
	size_t label = 0, total = 0;
	const char *p;

	if (*name == '\0')
		return 0;
	for (p = name; *p; p++, total++) {
		char c = *p;
		if (c == '.') {
			/* empty label, or label ending in '-' */
			if (label == 0 || p[-1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return 0;
		if (label == 0 && c == '-')
			return 0;
		if (++label > 63)
			return 0;
	}
	/* one trailing dot is allowed (absolute name) */
	if (total > NET_HOSTMAX + (p[-1] == '.'))
		return 0;
	return p[-1] != '-';
}

const char *
net_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a;

	switch (sa->sa_family) {
	case AF_INET:
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		break;
	case AF_INET6:
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		break;
	default:
		snprintf(buf, len, "unknown");
		return buf;
	}
	if (inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "invalid");
	return buf;
}

const char *
net_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	net_addr_format(sa, ip, sizeof(ip));
	if (sa->sa_family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", ip,
			 ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port));
	else if (sa->sa_family == AF_INET)
		snprintf(buf, len, "%s:%u", ip,
			 ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port));
	else
		snprintf(buf, len, "%s", ip);
	return buf;
}

void
net_set_addr(struct sockaddr_storage *ss, int family, const uint8_t *addr, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in sin;

		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons(port);
		memcpy(&sin.sin_addr, addr, 4);
		memcpy(ss, &sin, sizeof(sin));
	} else {
		struct sockaddr_in6 sin6;

		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons(port);
		memcpy(&sin6.sin6_addr, addr, 16);
		memcpy(ss, &sin6, sizeof(sin6));
	}
}

uint16_t
net_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	return 0;
}

socklen_t
net_sockaddr_len(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

int
net_sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
		       x->sin6_scope_id == y->sin6_scope_id;
	}
	return 0;
}

int
net_listen(const struct sockaddr *sa, socklen_t len, int backlog, int reuseport, char *err,
	   size_t errlen)
{
	int fd, on = 1, saved;
	char abuf[NET_ADDRSTRLEN];

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1)
		goto fail;
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == -1)
		goto fail;
	if (sa->sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1)
		goto fail;
	/* Accepted sockets inherit it (Linux), so accepting costs no setsockopt. */
	net_set_nodelay(fd);
	if (bind(fd, sa, len) == -1)
		goto fail;
	if (listen(fd, backlog) == -1)
		goto fail;
	return fd;
fail:
	saved = errno;
	snprintf(err, errlen, "listen on %s: %s", net_format(sa, abuf, sizeof(abuf)),
		 strerror(saved));
	if (fd != -1)
		close(fd);
	errno = saved;
	return -1;
}

int
net_bind_udp(const struct sockaddr *sa, socklen_t len, int reuseport, char *err, size_t errlen)
{
	int fd, on = 1, saved;
	char abuf[NET_ADDRSTRLEN];

	fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == -1)
		goto fail;
	/* Where each datagram came to: the answer is sent from there, and may name it. */
	if (sa->sa_family == AF_INET6) {
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1 ||
		    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) == -1)
			goto fail;
	} else if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) == -1) {
		goto fail;
	}
	if (bind(fd, sa, len) == -1)
		goto fail;
	return fd;
fail:
	saved = errno;
	snprintf(err, errlen, "udp on %s: %s", net_format(sa, abuf, sizeof(abuf)), strerror(saved));
	if (fd != -1)
		close(fd);
	errno = saved;
	return -1;
}

void
net_set_nodelay(int fd)
{
	int on = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

int
net_connect(const struct sockaddr *sa, socklen_t len)
{
	int fd, err;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/* Before connect, so the first segment already goes out without delay. */
	net_set_nodelay(fd);
	if (connect(fd, sa, len) == 0 || errno == EINPROGRESS)
		return fd;
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

int
net_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return errno;
	return err;
}

const struct sockaddr *
net_unmap_v4(const struct sockaddr *sa, struct sockaddr_in *out)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;

	if (sa->sa_family != AF_INET6 || memcmp(s6->sin6_addr.s6_addr, mapped, 12) != 0)
		return NULL;
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	memcpy(&out->sin_addr, s6->sin6_addr.s6_addr + 12, 4);
	out->sin_port = s6->sin6_port;
	return (const struct sockaddr *)out;
}

const uint8_t *
net_addr_bytes(const struct sockaddr *sa, size_t *len)
{
	if (sa->sa_family == AF_INET) {
		*len = 4;
		return (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	}
	if (sa->sa_family == AF_INET6) {
		*len = 16;
		return ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
	}
	*len = 0;
	return NULL;
}
