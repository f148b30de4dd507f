/*
 * test_observed.c: observed.c, the table of what report mode let through:
 * one entry per (listener, name, port, source), counted; an IPv4-mapped
 * source is its IPv4 address; the least recently seen entry goes first
 * when the bound is reached, and each eviction is counted; lowering the
 * bound drops the oldest at once; the snapshot is ordered by count.
 *
 * Links observed.o and net.o only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "net.h"
#include "observed.h"

static void
record(const char *listener, const char *name, uint16_t port, const char *source)
{
	struct sockaddr_storage ss;
	socklen_t len;

	assert_int_equal(net_parse_ip(source, 40000, &ss, &len), 0);
	observed_record(listener, "tls", name, port, (struct sockaddr *)&ss, REASON_NOT_ALLOWED);
}

/* find returns the count of the entry (listener, name, port, source) in a snapshot, or 0. */
static uint64_t
find(const char *listener, const char *name, uint16_t port, const char *source)
{
	size_t n;
	struct observed_entry *e = observed_snapshot(&n);
	uint64_t count = 0;
	char addr[NET_ADDRSTRLEN];

	for (size_t i = 0; i < n; i++) {
		net_addr_format((struct sockaddr *)&e[i].source, addr, sizeof(addr));
		if (strcmp(e[i].listener, listener) == 0 && strcmp(e[i].name, name) == 0 &&
		    e[i].port == port && strcmp(addr, source) == 0)
			count = e[i].count;
	}
	free(e);
	return count;
}

static int
reset(void **state)
{
	(void)state;
	observed_reset();
	observed_set_max(4096);
	return 0;
}

static void
test_counts_and_keys(void **state)
{
	size_t entries;
	uint64_t evicted;

	(void)state;
	record("egress", "pypi.org", 443, "172.30.0.5");
	record("egress", "pypi.org", 443, "172.30.0.5");
	/* the client's port never splits an entry; the mapped form is the IPv4 address */
	record("egress", "pypi.org", 443, "::ffff:172.30.0.5");
	record("egress", "pypi.org", 443, "172.30.0.6");
	record("egress", "pypi.org", 8443, "172.30.0.5");
	record("other", "pypi.org", 443, "172.30.0.5");
	record("egress", NULL, 443, "172.30.0.5");
	assert_int_equal(find("egress", "pypi.org", 443, "172.30.0.5"), 3);
	assert_int_equal(find("egress", "pypi.org", 443, "172.30.0.6"), 1);
	assert_int_equal(find("egress", "pypi.org", 8443, "172.30.0.5"), 1);
	assert_int_equal(find("other", "pypi.org", 443, "172.30.0.5"), 1);
	assert_int_equal(find("egress", "", 443, "172.30.0.5"), 1);
	observed_stats(&entries, &evicted);
	assert_int_equal(entries, 5);
	assert_int_equal(evicted, 0);
}

static void
test_least_recently_seen_goes_first(void **state)
{
	size_t entries, n;
	uint64_t evicted;
	struct observed_entry *e;

	(void)state;
	observed_set_max(3);
	record("l", "a.test", 443, "10.0.0.1");
	record("l", "b.test", 443, "10.0.0.1");
	record("l", "c.test", 443, "10.0.0.1");
	record("l", "a.test", 443, "10.0.0.1"); /* a is now the most recent */
	record("l", "d.test", 443, "10.0.0.1"); /* pushes out b */
	assert_int_equal(find("l", "b.test", 443, "10.0.0.1"), 0);
	assert_int_equal(find("l", "a.test", 443, "10.0.0.1"), 2);
	assert_int_equal(find("l", "c.test", 443, "10.0.0.1"), 1);
	record("l", "e.test", 443, "10.0.0.1"); /* pushes out c */
	assert_int_equal(find("l", "c.test", 443, "10.0.0.1"), 0);
	observed_stats(&entries, &evicted);
	assert_int_equal(entries, 3);
	assert_int_equal(evicted, 2);
	/* highest count first */
	e = observed_snapshot(&n);
	assert_int_equal(n, 3);
	assert_string_equal(e[0].name, "a.test");
	assert_true(e[0].first_seen <= e[0].last_seen);
	free(e);
	/* a lower bound drops the oldest at once; 0 records nothing */
	observed_set_max(1);
	observed_stats(&entries, &evicted);
	assert_int_equal(entries, 1);
	assert_int_equal(evicted, 4);
	assert_int_equal(find("l", "e.test", 443, "10.0.0.1"), 1);
	observed_set_max(0);
	record("l", "f.test", 443, "10.0.0.1");
	assert_int_equal(find("l", "f.test", 443, "10.0.0.1"), 0);
}

static void
test_many(void **state)
{
	char name[64];
	size_t entries;
	uint64_t evicted;

	(void)state;
	observed_set_max(1000);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "n%d.test", i);
		record("l", name, 443, "10.0.0.1");
	}
	observed_stats(&entries, &evicted);
	assert_int_equal(entries, 1000);
	assert_int_equal(evicted, 4000);
	assert_int_equal(find("l", "n4999.test", 443, "10.0.0.1"), 1);
	assert_int_equal(find("l", "n3999.test", 443, "10.0.0.1"), 0);
	assert_int_equal(find("l", "n4000.test", 443, "10.0.0.1"), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_counts_and_keys, reset),
	    cmocka_unit_test_setup(test_least_recently_seen_goes_first, reset),
	    cmocka_unit_test_setup(test_many, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
