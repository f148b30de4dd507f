/*
 * test_audit.c: the pure parts of audit.c. The routing-table readers that
 * `gatekeeper audit --docker` uses (the default routes of /proc/net/route
 * and /proc/net/ipv6_route, as the kernel prints them), and the parser of
 * --expect-dns NAME=ADDRESS[,ADDRESS...].
 *
 * Links libgk.a (audit.o and the net.o it reads addresses with).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "audit.h"
#include "net.h"

static const char *
v4(const struct audit_route *r, char *buf)
{
	return inet_ntop(AF_INET, r->via, buf, INET_ADDRSTRLEN);
}

static const char *
v6(const struct audit_route *r, char *buf)
{
	return inet_ntop(AF_INET6, r->via, buf, INET6_ADDRSTRLEN);
}

/* A Docker bridge container: default via 172.17.0.1 on eth0, and its subnet. */
static void
test_ipv4_default_via_gateway(void **state)
{
	/* Destination, Gateway and Mask are the __be32 printed as a host integer */
	char text[512];
	struct audit_route r[4];
	char a[INET_ADDRSTRLEN];
	uint32_t gw = inet_addr("172.17.0.1"), net = inet_addr("172.17.0.0"),
		 mask = inet_addr("255.255.0.0");

	(void)state;
	snprintf(
	    text, sizeof(text),
	    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	    "eth0\t00000000\t%08X\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
	    "eth0\t%08X\t00000000\t0001\t0\t0\t0\t%08X\t0\t0\t0\n",
	    gw, net, mask);
	assert_int_equal(audit_default_routes(AF_INET, text, r, 4), 1);
	assert_int_equal(r[0].has_via, 1);
	assert_string_equal(v4(&r[0], a), "172.17.0.1");
	assert_string_equal(r[0].dev, "eth0");
}

/* An internal network (Docker 25.0 and later): the subnet route only. */
static void
test_ipv4_no_default_route(void **state)
{
	struct audit_route r[4];
	char text[512];

	(void)state;
	snprintf(
	    text, sizeof(text),
	    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	    "eth0\t%08X\t00000000\t0001\t0\t0\t0\t%08X\t0\t0\t0\n",
	    inet_addr("172.20.0.0"), inet_addr("255.255.0.0"));
	assert_int_equal(audit_default_routes(AF_INET, text, r, 4), 0);
	assert_int_equal(audit_default_routes(AF_INET, "", r, 4), 0);
	/* only the header, and lines that are not routes */
	assert_int_equal(audit_default_routes(AF_INET, "Iface\tDestination\nfoo\nbar baz\n", r, 4),
			 0);
}

/* A default route with no gateway (on-link), one that is down, one that rejects. */
static void
test_ipv4_default_flags(void **state)
{
	struct audit_route r[4];
	char a[INET_ADDRSTRLEN];
	const char *text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
			   "eth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n"
			   "eth1\t00000000\t0101A8C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"
			   "eth2\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n"
			   "eth3\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0";

	(void)state;
	assert_int_equal(audit_default_routes(AF_INET, text, r, 4), 2);
	assert_int_equal(r[0].has_via, 0); /* up, no RTF_GATEWAY */
	assert_string_equal(r[0].dev, "eth0");
	assert_int_equal(r[1].has_via, 1); /* the last line has no newline */
	assert_string_equal(r[1].dev, "eth3");
	/* 0101A8C0 is the bytes c0 a8 01 01 printed as a little-endian integer */
	if (htonl(1) != 1)
		assert_string_equal(v4(&r[1], a), "192.168.1.1");
	/* max bounds what is filled */
	assert_int_equal(audit_default_routes(AF_INET, text, r, 1), 1);
	assert_string_equal(r[0].dev, "eth0");
}

/* What a fresh network namespace shows: the kernel's unreachable ::/0 on lo. */
static const char ipv6_none[] =
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
    "00000000000000000000000000000001 80 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n"
    "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n";

static void
test_ipv6_no_default_route(void **state)
{
	struct audit_route r[2];

	(void)state;
	assert_int_equal(audit_default_routes(AF_INET6, ipv6_none, r, 2), 0);
	assert_int_equal(audit_default_routes(AF_INET6, "", r, 2), 0);
	/* a ::/64 (prefix length not 0) is not a default route */
	assert_int_equal(
	    audit_default_routes(AF_INET6,
				 "00000000000000000000000000000000 40 "
				 "00000000000000000000000000000000 00 "
				 "fe800000000000000000000000000001 00000400 00000001 00000000 "
				 "00000003     eth0\n",
				 r, 2),
	    0);
}

static void
test_ipv6_default_route(void **state)
{
	struct audit_route r[2];
	char a[INET6_ADDRSTRLEN], text[1024];

	(void)state;
	/* via fe80::1 (RTF_UP | RTF_GATEWAY) */
	snprintf(text, sizeof(text), "%s%s", ipv6_none,
		 "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
		 "fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n");
	assert_int_equal(audit_default_routes(AF_INET6, text, r, 2), 1);
	assert_int_equal(r[0].has_via, 1);
	assert_string_equal(v6(&r[0], a), "fe80::1");
	assert_string_equal(r[0].dev, "eth0");
	/* on-link: `ip -6 route add default dev eth0` */
	assert_int_equal(
	    audit_default_routes(AF_INET6,
				 "00000000000000000000000000000000 00 "
				 "00000000000000000000000000000000 00 "
				 "00000000000000000000000000000000 00000400 00000001 00000000 "
				 "00000001     eth1\n",
				 r, 2),
	    1);
	assert_int_equal(r[0].has_via, 0);
	assert_string_equal(r[0].dev, "eth1");
	/* truncated lines are skipped */
	assert_int_equal(audit_default_routes(AF_INET6,
					      "00000000000000000000000000000000 00 "
					      "00000000000000000000000000000000 00 fe80",
					      r, 2),
			 0);
}

static void
addr_is(const struct sockaddr_storage *ss, const char *want)
{
	char a[NET_ADDRSTRLEN];
	net_addr_format((const struct sockaddr *)ss, a, sizeof(a));
	assert_string_equal(a, want);
}

static void
test_expect_dns_ok(void **state)
{
	char name[NET_HOSTMAX + 1], err[128];
	struct sockaddr_storage addrs[4];
	size_t n;

	(void)state;
	assert_int_equal(audit_parse_expect_dns("db.gk.test=10.0.0.5", name, sizeof(name), addrs, 4,
						&n, err, sizeof(err)),
			 0);
	assert_string_equal(name, "db.gk.test");
	assert_int_equal(n, 1);
	addr_is(&addrs[0], "10.0.0.5");
	assert_int_equal(net_port((struct sockaddr *)&addrs[0]), 0);

	/* a set, IPv6 with and without brackets, a duplicate once */
	assert_int_equal(audit_parse_expect_dns("gk=10.0.0.5,[fd00::5],10.0.0.5,::1", name,
						sizeof(name), addrs, 4, &n, err, sizeof(err)),
			 0);
	assert_string_equal(name, "gk");
	assert_int_equal(n, 3);
	addr_is(&addrs[0], "10.0.0.5");
	addr_is(&addrs[1], "fd00::5");
	addr_is(&addrs[2], "::1");
}

static void
test_expect_dns_bad(void **state)
{
	static const char *const bad[] = {
	    "",						  /* nothing */
	    "db.gk.test",				  /* no '=' */
	    "=10.0.0.5",				  /* no name */
	    "db.gk.test=",				  /* no address */
	    "db=10.0.0.5,",				  /* empty last address */
	    "db=,10.0.0.5",				  /* empty first address */
	    "db=10.0.0.5,,::1",				  /* empty address between */
	    "db=somewhere",				  /* a name, not an address */
	    "db=10.0.0.5:80",				  /* a port */
	    "db=[10.0.0.5",				  /* half a bracket */
	    "10.0.0.5=10.0.0.5",			  /* an IP literal as the name */
	    "bad name=10.0.0.5",			  /* not a host name */
	    "db=1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5", /* more than max */
	};
	char name[NET_HOSTMAX + 1], err[128];
	struct sockaddr_storage addrs[4];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (audit_parse_expect_dns(bad[i], name, sizeof(name), addrs, 4, &n, err,
					   sizeof(err)) != -1)
			fail_msg("accepted '%s'", bad[i]);
		assert_true(err[0] != '\0');
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipv4_default_via_gateway),
	    cmocka_unit_test(test_ipv4_no_default_route),
	    cmocka_unit_test(test_ipv4_default_flags),
	    cmocka_unit_test(test_ipv6_no_default_route),
	    cmocka_unit_test(test_ipv6_default_route),
	    cmocka_unit_test(test_expect_dns_ok),
	    cmocka_unit_test(test_expect_dns_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
