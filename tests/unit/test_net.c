/*
 * test_net.c: unit tests for the address helpers in net.c: splitting
 * "host:port" text, parsing ports and IP literals, host name syntax,
 * formatting sockaddrs back into text, comparing them, and opening a
 * listening socket on 127.0.0.1 (an ephemeral port, then the same port
 * again to see the EADDRINUSE message).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "net.h"

/* ---- net_split_hostport ---- */

struct split_ok {
	const char *text;
	const char *host;
	uint16_t port;
};

static void
test_split_ok(void **state)
{
	static const struct split_ok cases[] = {
	    {"127.0.0.1:80", "127.0.0.1", 80},
	    {"10.1.2.3:65535", "10.1.2.3", 65535},
	    {"whoami:8080", "whoami", 8080},
	    {"api.example.com:443", "api.example.com", 443},
	    {"[::1]:8080", "::1", 8080},
	    {"[2001:db8::1]:443", "2001:db8::1", 443},
	    {"[::]:0", "::", 0},
	    {":8080", "", 8080},
	    {"*:8080", "", 8080},
	    {"0.0.0.0:0", "0.0.0.0", 0},
	    {"host:00080", "host", 80},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[NET_HOSTMAX + 1], err[256];
		uint16_t port = 1234;

		memset(host, 'X', sizeof(host));
		err[0] = '\0';
		if (net_split_hostport(cases[i].text, host, sizeof(host), &port, err,
				       sizeof(err)) != 0)
			fail_msg("'%s' rejected: %s", cases[i].text, err);
		assert_string_equal(host, cases[i].host);
		assert_int_equal(port, cases[i].port);
	}
}

struct split_bad {
	const char *text;
	const char *err; /* the exact message */
};

static void
test_split_bad(void **state)
{
	static const struct split_bad cases[] = {
	    {"127.0.0.1", "missing ':PORT'"},
	    {"whoami", "missing ':PORT'"},
	    {"", "missing ':PORT'"},
	    {"whoami:", "invalid port ''"},
	    {"whoami:http", "invalid port 'http'"},
	    {"whoami:65536", "invalid port '65536'"},
	    {"whoami:99999", "invalid port '99999'"},
	    {"whoami:123456", "invalid port '123456'"},
	    {"whoami:-1", "invalid port '-1'"},
	    {"whoami:+80", "invalid port '+80'"},
	    {"whoami: 80", "invalid port ' 80'"},
	    {"whoami:80 ", "invalid port '80 '"},
	    {"::1:80", "an IPv6 address needs brackets, like [::1]:80"},
	    {"2001:db8::1:443", "an IPv6 address needs brackets, like [::1]:80"},
	    {"[::1", "missing ']' after IPv6 address"},
	    {"[::1:80", "missing ']' after IPv6 address"},
	    {"[::1]", "expected ':PORT' after ']'"},
	    {"[::1]80", "expected ':PORT' after ']'"},
	    {"[::1]:", "invalid port ''"},
	    {"[::1]:x", "invalid port 'x'"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[NET_HOSTMAX + 1], err[256];
		uint16_t port = 0;

		err[0] = '\0';
		if (net_split_hostport(cases[i].text, host, sizeof(host), &port, err,
				       sizeof(err)) != -1)
			fail_msg("'%s' accepted (host '%s' port %u)", cases[i].text, host, port);
		if (strcmp(err, cases[i].err) != 0)
			fail_msg("'%s': got error '%s', want '%s'", cases[i].text, err,
				 cases[i].err);
	}
}

static void
test_split_host_length(void **state)
{
	char text[NET_HOSTMAX + 64], host[NET_HOSTMAX + 1], err[256];
	uint16_t port = 0;

	(void)state;
	/* Exactly NET_HOSTMAX characters fit. */
	memset(text, 'a', NET_HOSTMAX);
	strcpy(text + NET_HOSTMAX, ":80");
	assert_int_equal(net_split_hostport(text, host, sizeof(host), &port, err, sizeof(err)), 0);
	assert_int_equal(strlen(host), NET_HOSTMAX);
	assert_int_equal(port, 80);

	/* One more is too long, and host is not overrun. */
	memset(text, 'a', NET_HOSTMAX + 1);
	strcpy(text + NET_HOSTMAX + 1, ":80");
	assert_int_equal(net_split_hostport(text, host, sizeof(host), &port, err, sizeof(err)), -1);
	assert_string_equal(err, "host too long");

	/* The same inside brackets. */
	text[0] = '[';
	memset(text + 1, 'a', NET_HOSTMAX + 1);
	strcpy(text + NET_HOSTMAX + 2, "]:80");
	assert_int_equal(net_split_hostport(text, host, sizeof(host), &port, err, sizeof(err)), -1);
	assert_string_equal(err, "host too long");

	/* A small caller buffer is respected too. */
	{
		char small[8];
		assert_int_equal(net_split_hostport("abcdefgh:80", small, sizeof(small), &port, err,
						    sizeof(err)),
				 -1);
		assert_string_equal(err, "host too long");
		assert_int_equal(
		    net_split_hostport("abcdefg:80", small, sizeof(small), &port, err, sizeof(err)),
		    0);
		assert_string_equal(small, "abcdefg");
	}
}

static void
test_split_empty_brackets(void **state)
{
	char host[NET_HOSTMAX + 1], err[256];
	uint16_t port = 0;

	(void)state;
	/*
	 * "[]:80" names no IPv6 address. It must not come back as host "",
	 * which callers read as ":80", the IPv4 wildcard 0.0.0.0.
	 */
	err[0] = '\0';
	if (net_split_hostport("[]:80", host, sizeof(host), &port, err, sizeof(err)) != -1)
		fail_msg("'[]:80' accepted as host '%s' port %u", host, port);
	assert_true(err[0] != '\0');
}

/* ---- net_parse_port ---- */

static void
test_parse_port(void **state)
{
	uint16_t p = 7;

	(void)state;
	assert_int_equal(net_parse_port("1", 0, &p), 0);
	assert_int_equal(p, 1);
	assert_int_equal(net_parse_port("65535", 0, &p), 0);
	assert_int_equal(p, 65535);
	assert_int_equal(net_parse_port("08080", 0, &p), 0);
	assert_int_equal(p, 8080);

	p = 7;
	assert_int_equal(net_parse_port("0", 0, &p), -1);
	assert_int_equal(p, 7); /* untouched on failure */
	assert_int_equal(net_parse_port("0", 1, &p), 0);
	assert_int_equal(p, 0);
	assert_int_equal(net_parse_port("00000", 1, &p), 0);
	assert_int_equal(p, 0);

	p = 7;
	assert_int_equal(net_parse_port("65536", 1, &p), -1);
	assert_int_equal(net_parse_port("99999", 1, &p), -1);
	assert_int_equal(net_parse_port("100000", 1, &p), -1);
	assert_int_equal(net_parse_port("0000080", 1, &p), -1); /* more than 5 digits */
	assert_int_equal(net_parse_port("", 1, &p), -1);
	assert_int_equal(net_parse_port("-1", 1, &p), -1);
	assert_int_equal(net_parse_port("+1", 1, &p), -1);
	assert_int_equal(net_parse_port("8o", 1, &p), -1);
	assert_int_equal(net_parse_port(" 80", 1, &p), -1);
	assert_int_equal(net_parse_port("80 ", 1, &p), -1);
	assert_int_equal(net_parse_port("0x50", 1, &p), -1);
	assert_int_equal(p, 7);
}

/* ---- net_parse_ip ---- */

static void
test_parse_ip_v4(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	socklen_t len = 0;

	(void)state;
	assert_int_equal(net_parse_ip("192.0.2.7", 8080, &ss, &len), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 8080);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0xc0000207u);

	assert_int_equal(net_parse_ip("0.0.0.0", 0, &ss, &len), 0);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(sin->sin_port, 0);
}

static void
test_parse_ip_v6(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len = 0;
	static const uint8_t loop6[16] = {[15] = 1};
	static const uint8_t doc6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x01};

	(void)state;
	assert_int_equal(net_parse_ip("::1", 443, &ss, &len), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 443);
	assert_memory_equal(&sin6->sin6_addr, loop6, 16);
	assert_int_equal(sin6->sin6_scope_id, 0);

	assert_int_equal(net_parse_ip("2001:DB8::1", 1, &ss, &len), 0);
	assert_memory_equal(&sin6->sin6_addr, doc6, 16);
}

static void
test_parse_ip_bad(void **state)
{
	static const char *const bad[] = {
	    "",		"localhost", "whoami", "1.2.3",	     "1.2.3.4.5", "256.1.1.1",	 "1.2.3.4 ",
	    " 1.2.3.4", "[::1]",     "::1:",   "1.2.3.4:80", "::g",	  "example.com",
	};
	struct sockaddr_storage ss;
	socklen_t len = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (net_parse_ip(bad[i], 80, &ss, &len) != -1)
			fail_msg("'%s' parsed as an IP literal", bad[i]);
}

/* ---- net_valid_hostname ---- */

static void
test_valid_hostname(void **state)
{
	char name[600];

	(void)state;
	assert_true(net_valid_hostname("whoami"));
	assert_true(net_valid_hostname("api.example.com"));
	assert_true(net_valid_hostname("api.example.com.")); /* one trailing dot */
	assert_true(net_valid_hostname("a"));
	assert_true(net_valid_hostname("a-b.c-d"));
	assert_true(net_valid_hostname("xn--bcher-kva.example"));
	assert_true(net_valid_hostname("1.2.3.4"));
	assert_true(net_valid_hostname("MiXeD.Case"));
	/* Docker names often carry underscores (project_service_1). */
	assert_true(net_valid_hostname("my_stack_web_1"));
	assert_true(net_valid_hostname("_srv._tcp.example"));

	assert_false(net_valid_hostname(""));
	assert_false(net_valid_hostname("."));
	assert_false(net_valid_hostname("api.example.com.."));
	assert_false(net_valid_hostname(".example.com"));
	assert_false(net_valid_hostname("a..b"));
	assert_false(net_valid_hostname("-a"));
	assert_false(net_valid_hostname("a-"));
	assert_false(net_valid_hostname("a.-b"));
	assert_false(net_valid_hostname("a-.b"));
	assert_false(net_valid_hostname("a.b-"));
	assert_false(net_valid_hostname("a.b-."));
	assert_false(net_valid_hostname("a b"));
	assert_false(net_valid_hostname("a:b"));
	assert_false(net_valid_hostname("a/b"));
	assert_false(net_valid_hostname("a*b"));
	assert_false(net_valid_hostname("caf\xc3\xa9.example"));
	assert_false(net_valid_hostname("a\tb"));

	/* A label of 63 is fine, 64 is not; wherever the label is. */
	memset(name, 'a', 63);
	name[63] = '\0';
	assert_true(net_valid_hostname(name));
	memset(name, 'a', 64);
	name[64] = '\0';
	assert_false(net_valid_hostname(name));
	strcpy(name, "x.");
	memset(name + 2, 'b', 64);
	strcpy(name + 66, ".y");
	assert_false(net_valid_hostname(name));
	strcpy(name + 2 + 63, ".y"); /* now labels of 1, 63 and 1 */
	assert_true(net_valid_hostname(name));

	/* 253 characters in total is fine (plus one trailing dot), 254 is not. */
	for (size_t i = 0; i < 253; i++)
		name[i] = (i % 2) ? '.' : 'a';
	name[252] = 'a';
	name[253] = '\0';
	assert_int_equal(strlen(name), 253);
	assert_true(net_valid_hostname(name));
	strcat(name, ".");
	assert_true(net_valid_hostname(name));
	name[253] = 'a';
	name[254] = '\0'; /* "a.a...a.aa": 254 characters */
	assert_false(net_valid_hostname(name));
	strcat(name, ".");
	assert_false(net_valid_hostname(name));
	memset(name, 'a', 63);
	for (size_t i = 63; i < 500; i += 64) {
		name[i] = '.';
		memset(name + i + 1, 'a', 63);
	}
	name[500] = '\0';
	assert_false(net_valid_hostname(name));
}

/* ---- formatting ---- */

static void
test_format_round_trip(void **state)
{
	static const char *const texts[] = {
	    "127.0.0.1:80",
	    "0.0.0.0:0",
	    "255.255.255.255:65535",
	    "[::1]:8080",
	    "[::]:0",
	    "[2001:db8::1]:443",
	    "[fe80::1:2:3:4]:1",
	    "[::ffff:192.0.2.1]:25",
	    "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		char host[NET_HOSTMAX + 1], err[128], out[NET_ADDRSTRLEN], again[NET_ADDRSTRLEN];
		struct sockaddr_storage ss, ss2;
		socklen_t len, len2;
		uint16_t port;

		assert_int_equal(
		    net_split_hostport(texts[i], host, sizeof(host), &port, err, sizeof(err)), 0);
		assert_int_equal(net_parse_ip(host, port, &ss, &len), 0);
		assert_ptr_equal(net_format((struct sockaddr *)&ss, out, sizeof(out)), out);
		assert_string_equal(out, texts[i]);
		assert_int_equal(net_sockaddr_len((struct sockaddr *)&ss), len);

		/* And back again. */
		assert_int_equal(
		    net_split_hostport(out, host, sizeof(host), &port, err, sizeof(err)), 0);
		assert_int_equal(net_parse_ip(host, port, &ss2, &len2), 0);
		assert_int_equal(len, len2);
		assert_true(net_sockaddr_equal((struct sockaddr *)&ss, (struct sockaddr *)&ss2));
		net_format((struct sockaddr *)&ss2, again, sizeof(again));
		assert_string_equal(again, out);
	}
}

static void
test_format_normalizes(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char out[NET_ADDRSTRLEN];

	(void)state;
	/* Long and upper-case IPv6 text comes back in the canonical short form. */
	assert_int_equal(net_parse_ip("2001:0DB8:0000:0000:0000:0000:0000:0001", 53, &ss, &len), 0);
	assert_string_equal(net_format((struct sockaddr *)&ss, out, sizeof(out)),
			    "[2001:db8::1]:53");
	assert_string_equal(net_addr_format((struct sockaddr *)&ss, out, sizeof(out)),
			    "2001:db8::1");
	assert_int_equal(net_parse_ip("10.0.0.1", 1, &ss, &len), 0);
	assert_string_equal(net_addr_format((struct sockaddr *)&ss, out, sizeof(out)), "10.0.0.1");

	/* An unknown family does not crash. */
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	assert_string_equal(net_addr_format((struct sockaddr *)&ss, out, sizeof(out)), "unknown");
	assert_string_equal(net_format((struct sockaddr *)&ss, out, sizeof(out)), "unknown");
}

static void
test_format_small_buffer(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char out[8];

	(void)state;
	memset(out, 'Z', sizeof(out));
	assert_int_equal(net_parse_ip("192.168.100.200", 65535, &ss, &len), 0);
	net_format((struct sockaddr *)&ss, out, sizeof(out));
	assert_int_equal(strlen(out), sizeof(out) - 1); /* cut, but terminated */
	assert_int_equal(net_parse_ip("2001:db8::1", 1, &ss, &len), 0);
	net_format((struct sockaddr *)&ss, out, sizeof(out));
	assert_int_equal(strlen(out), sizeof(out) - 1);
}

/* ---- net_sockaddr_equal ---- */

static struct sockaddr_storage
mk(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;

	assert_int_equal(net_parse_ip(ip, port, &ss, &len), 0);
	return ss;
}

static int
eq(struct sockaddr_storage a, struct sockaddr_storage b)
{
	int r = net_sockaddr_equal((struct sockaddr *)&a, (struct sockaddr *)&b);

	/* Symmetric. */
	assert_int_equal(r, net_sockaddr_equal((struct sockaddr *)&b, (struct sockaddr *)&a));
	return r;
}

static void
test_sockaddr_equal(void **state)
{
	struct sockaddr_storage a, b;

	(void)state;
	assert_true(eq(mk("127.0.0.1", 80), mk("127.0.0.1", 80)));
	assert_false(eq(mk("127.0.0.1", 80), mk("127.0.0.1", 81)));
	assert_false(eq(mk("127.0.0.1", 80), mk("127.0.0.2", 80)));
	assert_true(eq(mk("::1", 80), mk("0:0::1", 80)));
	assert_false(eq(mk("::1", 80), mk("::1", 81)));
	assert_false(eq(mk("::1", 80), mk("::2", 80)));
	/* Different families never compare equal, not even for a mapped address. */
	assert_false(eq(mk("127.0.0.1", 80), mk("::ffff:127.0.0.1", 80)));
	assert_false(eq(mk("0.0.0.0", 0), mk("::", 0)));

	/* The scope distinguishes link-local addresses. */
	a = mk("fe80::1", 80);
	b = mk("fe80::1", 80);
	((struct sockaddr_in6 *)&b)->sin6_scope_id = 2;
	assert_false(eq(a, b));

	/* Bytes that are not part of the address do not matter. */
	a = mk("10.0.0.1", 80);
	b = mk("10.0.0.1", 80);
	memset(((struct sockaddr_in *)&b)->sin_zero, 0xaa, 8);
	assert_true(eq(a, b));

	/* Unknown families are never equal. */
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.ss_family = b.ss_family = AF_UNIX;
	assert_false(eq(a, b));
}

/* ---- net_listen ---- */

static void
test_listen_ephemeral_and_in_use(void **state)
{
	struct sockaddr_storage ss, got;
	struct sockaddr_in *sin = (struct sockaddr_in *)&got;
	socklen_t len, glen = sizeof(got);
	char err[256], want[300];
	int fd, fd2, fl;
	uint16_t port;

	(void)state;
	assert_int_equal(net_parse_ip("127.0.0.1", 0, &ss, &len), 0);
	err[0] = '\0';
	fd = net_listen((struct sockaddr *)&ss, len, 16, 0, err, sizeof(err));
	if (fd < 0)
		fail_msg("net_listen: %s", err);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&got, &glen), 0);
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	port = ntohs(sin->sin_port);
	assert_int_not_equal(port, 0);

	/* Non-blocking and close-on-exec, as promised. */
	fl = fcntl(fd, F_GETFL);
	assert_true(fl & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

	/* It really listens: a connect on loopback succeeds. */
	{
		int c = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(c >= 0);
		assert_int_equal(connect(c, (struct sockaddr *)&got, glen), 0);
		close(c);
	}

	/* The same address again: EADDRINUSE, with the address in the message. */
	((struct sockaddr_in *)&ss)->sin_port = htons(port);
	errno = 0;
	fd2 = net_listen((struct sockaddr *)&ss, len, 16, 0, err, sizeof(err));
	assert_int_equal(fd2, -1);
	assert_int_equal(errno, EADDRINUSE);
	snprintf(want, sizeof(want), "listen on 127.0.0.1:%u: %s", port, strerror(EADDRINUSE));
	assert_string_equal(err, want);
	close(fd);
}

static void
test_listen_v6_loopback(void **state)
{
	struct sockaddr_storage ss, got;
	socklen_t len, glen = sizeof(got);
	char err[256], out[NET_ADDRSTRLEN];
	int fd, on = 0;
	socklen_t olen = sizeof(on);

	(void)state;
	assert_int_equal(net_parse_ip("::1", 0, &ss, &len), 0);
	fd = net_listen((struct sockaddr *)&ss, len, 16, 0, err, sizeof(err));
	if (fd < 0) {
		/* No IPv6 on this host: the message must still name the address. */
		assert_non_null(strstr(err, "listen on [::1]:0: "));
		skip();
	}
	assert_int_equal(getsockname(fd, (struct sockaddr *)&got, &glen), 0);
	net_format((struct sockaddr *)&got, out, sizeof(out));
	assert_true(strncmp(out, "[::1]:", 6) == 0);
	assert_int_not_equal(((struct sockaddr_in6 *)&got)->sin6_port, 0);
	assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, &olen), 0);
	assert_int_equal(on, 1);
	close(fd);
}

static void
test_listen_bad_address(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];

	(void)state;
	/* 192.0.2.1 (TEST-NET-1) is not configured here: bind fails, nothing is sent. */
	assert_int_equal(net_parse_ip("192.0.2.1", 0, &ss, &len), 0);
	errno = 0;
	assert_int_equal(net_listen((struct sockaddr *)&ss, len, 16, 0, err, sizeof(err)), -1);
	assert_int_equal(errno, EADDRNOTAVAIL);
	assert_non_null(strstr(err, "listen on 192.0.2.1:0: "));
}

/* ---- net_connect, and Nagle off on both sides of a relay ---- */

static int
nodelay(int fd)
{
	int v = 0;
	socklen_t len = sizeof(v);

	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
	return v;
}

static void
test_connect_and_accept_nodelay(void **state)
{
	struct sockaddr_storage ss, bound;
	socklen_t len, blen = sizeof(bound);
	char err[128];
	struct pollfd p;
	int lfd, cfd, afd;

	(void)state;
	assert_int_equal(net_parse_ip("127.0.0.1", 0, &ss, &len), 0);
	lfd = net_listen((struct sockaddr *)&ss, len, 16, 0, err, sizeof(err));
	assert_true(lfd >= 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&bound, &blen), 0);

	cfd = net_connect((struct sockaddr *)&bound, blen);
	assert_true(cfd >= 0);
	assert_true(fcntl(cfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(cfd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(nodelay(cfd), 1);
	p.fd = cfd;
	p.events = POLLOUT;
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(net_connect_result(cfd), 0);

	/* The accepted socket has Nagle off without a setsockopt of its own. */
	p.fd = lfd;
	p.events = POLLIN;
	assert_int_equal(poll(&p, 1, 5000), 1);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	assert_int_equal(nodelay(afd), 1);
	close(afd);
	close(cfd);
	close(lfd);
}

static void
test_connect_refused(void **state)
{
	struct sockaddr_storage ss, bound;
	socklen_t len, blen = sizeof(bound);
	char err[128];
	struct pollfd p;
	int lfd, cfd;

	(void)state;
	/* A port that was just free: bind, note it, close. */
	assert_int_equal(net_parse_ip("127.0.0.1", 0, &ss, &len), 0);
	lfd = net_listen((struct sockaddr *)&ss, len, 16, 0, err, sizeof(err));
	assert_true(lfd >= 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&bound, &blen), 0);
	close(lfd);

	cfd = net_connect((struct sockaddr *)&bound, blen);
	if (cfd == -1) {
		assert_int_equal(errno, ECONNREFUSED);
		return;
	}
	p.fd = cfd;
	p.events = POLLOUT;
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(net_connect_result(cfd), ECONNREFUSED);
	close(cfd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_split_ok),
	    cmocka_unit_test(test_split_bad),
	    cmocka_unit_test(test_split_host_length),
	    cmocka_unit_test(test_split_empty_brackets),
	    cmocka_unit_test(test_parse_port),
	    cmocka_unit_test(test_parse_ip_v4),
	    cmocka_unit_test(test_parse_ip_v6),
	    cmocka_unit_test(test_parse_ip_bad),
	    cmocka_unit_test(test_valid_hostname),
	    cmocka_unit_test(test_format_round_trip),
	    cmocka_unit_test(test_format_normalizes),
	    cmocka_unit_test(test_format_small_buffer),
	    cmocka_unit_test(test_sockaddr_equal),
	    cmocka_unit_test(test_listen_ephemeral_and_in_use),
	    cmocka_unit_test(test_listen_v6_loopback),
	    cmocka_unit_test(test_listen_bad_address),
	    cmocka_unit_test(test_connect_and_accept_nodelay),
	    cmocka_unit_test(test_connect_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
