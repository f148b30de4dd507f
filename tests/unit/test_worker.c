/*
 * test_worker.c: unit tests for worker.c over real listeners and sessions
 * on 127.0.0.1: a reload keeps the listener (and its socket) of every
 * address in both configs, opens and closes the others, and changes
 * nothing when a new address cannot be bound; a drain closes the
 * listeners at once and ends the loop when the last session goes, well
 * before drain_timeout; the accessors admin.c and metrics.c use.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "worker.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* load builds a config from YAML text, with the nameserver on loopback (no lookup is made). */
static struct config *
load(const char *listeners)
{
	char text[2048];
	struct config *cfg;

	snprintf(text, sizeof(text),
		 "defaults:\n  drain_timeout: 5s\n"
		 "resolver:\n  nameservers: [\"127.0.0.1\"]\n"
		 "listeners:\n%s",
		 listeners);
	cfg = config_load_string("test.yaml", text, strlen(text), stderr);
	assert_non_null(cfg);
	return cfg;
}

static uint16_t
port_of(const struct listener *l)
{
	return ntohs(((const struct sockaddr_in *)listener_bound(l))->sin_port);
}

#define LISTENER(name, addr)                                                                       \
	"  - name: " name "\n    listen: \"" addr "\"\n    upstream: \"127.0.0.1:9\"\n"

/*
 * Reloads: the same config keeps both listeners; one listener fewer
 * closes the other; a new address opens a new one. Each time the
 * counts are right and the worker holds the new config.
 */
static void
test_reload_reconciles_listeners(void **state)
{
	struct config *one = load(LISTENER("a", "127.0.0.1:0") LISTENER("b", "127.0.0.1:0"));
	struct config *same = load(LISTENER("a", "127.0.0.1:0") LISTENER("b", "127.0.0.1:0"));
	struct config *just_b = load(LISTENER("b", "127.0.0.1:0"));
	struct config *moved = load(LISTENER("b", "127.0.0.1:0") LISTENER("c", "127.0.0.2:0"));
	struct listener *a, *b;
	struct gk gk;
	size_t added, kept, removed;
	uint16_t port_b;
	uint64_t ok, failed;

	(void)state;
	assert_int_equal(worker_open(&gk, one, 0, 1, NULL, &lock), 0);
	assert_int_equal(worker_n_listeners(&gk), 2);
	a = worker_listener(&gk, 0);
	b = worker_listener(&gk, 1);
	assert_non_null(a);
	assert_non_null(b);
	assert_null(worker_listener(&gk, 2));
	assert_ptr_equal(worker_base(&gk), gk.base);
	assert_non_null(worker_resolver(&gk));
	port_b = port_of(b);
	assert_int_not_equal(port_of(a), port_b);

	assert_int_equal(worker_apply(&gk, same, NULL, &added, &kept, &removed), 0);
	assert_int_equal(added, 0);
	assert_int_equal(kept, 2);
	assert_int_equal(removed, 0);
	/* Matched by name: "IP:0" listeners stay who they were, sockets and all. */
	assert_ptr_equal(worker_listener(&gk, 0), a);
	assert_ptr_equal(worker_listener(&gk, 1), b);
	assert_ptr_equal(listener_config(a), same);
	assert_ptr_equal(gk.cfg, same);

	assert_int_equal(worker_apply(&gk, just_b, NULL, &added, &kept, &removed), 0);
	assert_int_equal(added, 0);
	assert_int_equal(kept, 1);
	assert_int_equal(removed, 1);
	assert_int_equal(worker_n_listeners(&gk), 1);
	assert_ptr_equal(worker_listener(&gk, 0), b);
	assert_int_equal(port_of(b), port_b);

	assert_int_equal(worker_apply(&gk, moved, NULL, &added, &kept, &removed), 0);
	assert_int_equal(added, 1);
	assert_int_equal(kept, 1);
	assert_int_equal(removed, 0);
	assert_ptr_equal(worker_listener(&gk, 0), b);
	assert_string_equal(listener_conf(worker_listener(&gk, 1))->name, "c");
	assert_int_equal(
	    ((const struct sockaddr_in *)listener_bound(worker_listener(&gk, 1)))->sin_addr.s_addr,
	    htonl(0x7f000002));

	worker_count_reload(&gk, 1);
	worker_count_reload(&gk, 1);
	worker_count_reload(&gk, 0);
	worker_reloads(&gk, &ok, &failed);
	assert_int_equal(ok, 2);
	assert_int_equal(failed, 1);

	worker_close(&gk);
	config_unref(one);
	config_unref(same);
	config_unref(just_b);
	config_unref(moved);
}

/* A new address already taken: the first worker's reload fails and nothing changes. */
static void
test_reload_failure_changes_nothing(void **state)
{
	struct config *one = load(LISTENER("a", "127.0.0.1:0"));
	struct config *two;
	struct sockaddr_storage ss;
	struct sockaddr_in taken;
	socklen_t len = sizeof(taken);
	struct listener *a;
	struct gk gk;
	char err[256], text[256];
	size_t added = 9, kept = 9, removed = 9;
	int busy;

	(void)state;
	assert_int_equal(net_parse_ip("127.0.0.1", 0, &ss, &len), 0);
	busy = net_listen((struct sockaddr *)&ss, len, 1, 0, err, sizeof(err));
	assert_true(busy >= 0);
	len = sizeof(taken);
	assert_int_equal(getsockname(busy, (struct sockaddr *)&taken, &len), 0);
	snprintf(text, sizeof(text),
		 LISTENER("a", "127.0.0.1:0") "  - name: b\n    listen: "
					      "\"127.0.0.1:%u\"\n    upstream: \"127.0.0.1:9\"\n",
		 ntohs(taken.sin_port));
	two = load(text);

	assert_int_equal(worker_open(&gk, one, 0, 1, NULL, &lock), 0);
	a = worker_listener(&gk, 0);
	assert_int_equal(worker_apply(&gk, two, NULL, &added, &kept, &removed), -1);
	assert_int_equal(worker_n_listeners(&gk), 1);
	assert_ptr_equal(worker_listener(&gk, 0), a);
	assert_ptr_equal(listener_config(a), one);
	assert_ptr_equal(gk.cfg, one);

	worker_close(&gk);
	close(busy);
	config_unref(one);
	config_unref(two);
}

/* A drain with no session ends the loop at once and closes the listeners. */
static void
test_drain_idle(void **state)
{
	struct config *cfg = load(LISTENER("a", "127.0.0.1:0"));
	struct gk gk;

	(void)state;
	assert_int_equal(worker_open(&gk, cfg, 0, 1, NULL, &lock), 0);
	assert_false(worker_draining(&gk));
	worker_drain(&gk);
	assert_true(worker_draining(&gk));
	assert_int_equal(worker_n_listeners(&gk), 0);
	assert_int_equal(worker_run(&gk), 0);
	worker_drain(&gk); /* a second one does nothing */
	worker_close(&gk);
	config_unref(cfg);
}

/* A session through the worker's listener to an upstream socket the test holds. */
struct drain_case {
	struct gk *gk;
	int client, upstream_l, upstream;
	struct event *poll;
	int drained;
};

/*
 * Every few ms until the session has reached the upstream: then drain,
 * and end the session from both sides, as its client and upstream would.
 */
static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct drain_case *d = arg;

	(void)fd;
	(void)what;
	if (d->drained || d->gk->n_sessions != 1)
		return;
	if ((d->upstream = accept4(d->upstream_l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) == -1)
		return;
	d->drained = 1;
	event_del(d->poll);
	worker_drain(d->gk);
	assert_int_equal(worker_n_listeners(d->gk), 0);
	assert_int_equal(d->gk->n_sessions, 1);
	close(d->upstream);
	assert_int_equal(shutdown(d->client, SHUT_WR), 0);
}

/*
 * A drain waits for a live session: the loop goes on after worker_drain
 * and ends when the session does (through worker_session_ended), long
 * before the 5 s drain_timeout.
 */
static void
test_drain_waits_for_the_last_session(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in up;
	socklen_t len = sizeof(ss);
	struct timeval every = {0, 5000};
	struct drain_case d;
	struct config *cfg;
	struct gk gk;
	char err[256], text[256];
	int64_t started;

	(void)state;
	memset(&d, 0, sizeof(d));
	d.gk = &gk;
	assert_int_equal(net_parse_ip("127.0.0.1", 0, &ss, &len), 0);
	d.upstream_l = net_listen((struct sockaddr *)&ss, len, 4, 0, err, sizeof(err));
	assert_true(d.upstream_l >= 0);
	len = sizeof(up);
	assert_int_equal(getsockname(d.upstream_l, (struct sockaddr *)&up, &len), 0);
	snprintf(text, sizeof(text),
		 "  - name: a\n    listen: \"127.0.0.1:0\"\n    upstream: "
		 "\"127.0.0.1:%u\"\n",
		 ntohs(up.sin_port));
	cfg = load(text);
	assert_int_equal(worker_open(&gk, cfg, 0, 1, NULL, &lock), 0);

	d.client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(d.client >= 0);
	assert_int_equal(
	    connect(d.client, listener_bound(worker_listener(&gk, 0)), sizeof(struct sockaddr_in)),
	    0);
	d.poll = event_new(gk.base, -1, EV_PERSIST, on_poll, &d);
	assert_non_null(d.poll);
	assert_int_equal(event_add(d.poll, &every), 0);

	started = clock_now_ms();
	assert_int_equal(worker_run(&gk), 0);
	assert_true(d.drained);
	assert_int_equal(gk.n_sessions, 0);
	assert_true(clock_now_ms() - started < 2500);

	event_free(d.poll);
	worker_close(&gk);
	close(d.client);
	close(d.upstream_l);
	config_unref(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reload_reconciles_listeners),
	    cmocka_unit_test(test_reload_failure_changes_nothing),
	    cmocka_unit_test(test_drain_idle),
	    cmocka_unit_test(test_drain_waits_for_the_last_session),
	};

	log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_LOGFMT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
