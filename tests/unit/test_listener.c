/*
 * test_listener.c: unit tests for listener.c and session.c together,
 * without worker.c: this file is their worker. It builds a small struct
 * gk around a real event loop, opens a tcp listener on 127.0.0.1:0 in
 * front of an echo server of its own, connects a client, and checks that
 * each session reports its end through worker_session_ended (the one call
 * sessions make up to their worker) and that the listener's counters
 * follow: a relayed session ended by both sides, and one closed by
 * session_close_all as a drain timeout does.
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
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "resolver.h"
#include "session.h"
#include "worker.h"

#define TEST_TIMEOUT_S 5

/* What the fake worker saw. */
static struct {
	int ended;	 /* worker_session_ended calls */
	size_t sessions; /* gk->n_sessions at the last call */
	int stop_after;	 /* end the loop at this many calls */
} fake;

/*
 * The fake worker's half of worker.h's narrow call: count, and stop the
 * loop once the expected sessions are over.
 */
void
worker_session_ended(struct gk *gk)
{
	fake.ended++;
	fake.sessions = gk->n_sessions;
	if (fake.ended >= fake.stop_after)
		event_base_loopexit(gk->base, NULL);
}

/* An echo server on 127.0.0.1:0, served by the test's loop. */
struct echo {
	int lfd;
	struct event *accept_ev;
	struct event *conn_ev;
	int conn;
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

static void
on_echo_read(evutil_socket_t fd, short what, void *arg)
{
	struct echo *e = arg;
	char buf[4096];
	ssize_t n;

	(void)what;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		assert_int_equal(write(fd, buf, (size_t)n), n);
	if (n == 0) {
		/* The client's end came through the relay: answer it with ours. */
		event_free(e->conn_ev);
		e->conn_ev = NULL;
		close(fd);
		e->conn = -1;
	}
}

static void
on_echo_accept(evutil_socket_t fd, short what, void *arg)
{
	struct echo *e = arg;
	int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	(void)what;
	assert_true(c >= 0);
	assert_int_equal(e->conn, -1);
	e->conn = c;
	e->conn_ev =
	    event_new(event_get_base(e->accept_ev), c, EV_READ | EV_PERSIST, on_echo_read, e);
	assert_non_null(e->conn_ev);
	assert_int_equal(event_add(e->conn_ev, NULL), 0);
}

static void
echo_open(struct echo *e, struct event_base *base)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];

	memset(e, 0, sizeof(*e));
	e->conn = -1;
	assert_int_equal(net_parse_ip("127.0.0.1", 0, &ss, &len), 0);
	e->lfd = net_listen((struct sockaddr *)&ss, len, 16, 0, err, sizeof(err));
	assert_true(e->lfd >= 0);
	e->addrlen = sizeof(e->addr);
	assert_int_equal(getsockname(e->lfd, (struct sockaddr *)&e->addr, &e->addrlen), 0);
	e->accept_ev = event_new(base, e->lfd, EV_READ | EV_PERSIST, on_echo_accept, e);
	assert_non_null(e->accept_ev);
	assert_int_equal(event_add(e->accept_ev, NULL), 0);
}

static void
echo_close(struct echo *e)
{
	if (e->conn_ev != NULL)
		event_free(e->conn_ev);
	if (e->conn >= 0)
		close(e->conn);
	event_free(e->accept_ev);
	close(e->lfd);
}

/* The fake worker's context, one listener in front of the echo server. */
struct fixture {
	struct gk gk;
	struct config *cfg;
	struct listener *l;
	struct echo echo;
	struct event *timeout;
};

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	fail_msg("no session ended within %d s", TEST_TIMEOUT_S);
}

static void
fixture_open(struct fixture *f)
{
	struct timeval tv = {TEST_TIMEOUT_S, 0};
	char err[256], upstream[NET_ADDRSTRLEN];

	memset(f, 0, sizeof(*f));
	memset(&fake, 0, sizeof(fake));
	fake.stop_after = 1;
	log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_LOGFMT);

	memset(&f->gk, 0, sizeof(f->gk));
	TAILQ_INIT(&f->gk.sessions);
	pool_init(&f->gk.session_pool, session_size());
	pool_init(&f->gk.http_pool, http_stream_size());
	f->gk.n_workers = 1;
	f->gk.base = event_base_new();
	assert_non_null(f->gk.base);
	echo_open(&f->echo, f->gk.base);

	f->cfg = config_quick_new();
	assert_non_null(f->cfg);
	net_format((struct sockaddr *)&f->echo.addr, upstream, sizeof(upstream));
	assert_int_equal(config_quick_set(f->cfg, "listen", "127.0.0.1:0", err, sizeof(err)), 0);
	assert_int_equal(config_quick_set(f->cfg, "upstream", upstream, err, sizeof(err)), 0);
	assert_int_equal(config_quick_set(f->cfg, "mode", "tcp", err, sizeof(err)), 0);
	/* No lookup is made (the upstream is an address), and none could leave loopback. */
	assert_int_equal(config_quick_set(f->cfg, "nameservers", "127.0.0.1", err, sizeof(err)), 0);
	assert_int_equal(config_quick_finish(f->cfg, stderr), 0);
	f->gk.cfg = config_ref(f->cfg);
	f->gk.resolver = resolver_new(f->gk.base, &f->cfg->resolver);
	assert_non_null(f->gk.resolver);

	f->l = listener_new(&f->gk, f->cfg, &f->cfg->listeners[0], NULL);
	assert_non_null(f->l);
	f->timeout = evtimer_new(f->gk.base, on_timeout, NULL);
	assert_non_null(f->timeout);
	assert_int_equal(evtimer_add(f->timeout, &tv), 0);
}

static void
fixture_close(struct fixture *f)
{
	listener_close(f->l);
	session_close_all(&f->gk, REASON_SHUTDOWN);
	event_free(f->timeout);
	echo_close(&f->echo);
	resolver_free(f->gk.resolver);
	pool_destroy(&f->gk.session_pool);
	pool_destroy(&f->gk.http_pool);
	config_unref(f->gk.cfg);
	config_unref(f->cfg);
	event_base_free(f->gk.base);
}

/* client_connect: a blocking connection to the listener (the kernel completes it). */
static int
client_connect(const struct fixture *f)
{
	const struct sockaddr *to = listener_bound(f->l);
	int fd = socket(to->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, to, net_sockaddr_len(to)), 0);
	return fd;
}

/* A client that reads everything until its peer ends, then closes. */
struct client {
	int fd;
	char got[64];
	size_t n;
	int eof;
	struct fixture *f;
	int close_all_at; /* bytes after which it closes every session, as a drain timeout */
	struct event *ev;
};

static void
on_client_read(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	ssize_t n;

	(void)what;
	while ((n = read(fd, c->got + c->n, sizeof(c->got) - 1 - c->n)) > 0)
		c->n += (size_t)n;
	if (n == 0)
		c->eof = 1;
	if (c->eof)
		event_del(c->ev);
	if (c->close_all_at > 0 && c->n >= (size_t)c->close_all_at) {
		c->close_all_at = 0;
		session_close_all(&c->f->gk, REASON_SHUTDOWN);
	}
}

static void
client_watch(struct client *c, struct fixture *f, int fd)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->f = f;
	assert_int_equal(evutil_make_socket_nonblocking(fd), 0);
	c->ev = event_new(f->gk.base, fd, EV_READ | EV_PERSIST, on_client_read, c);
	assert_non_null(c->ev);
	assert_int_equal(event_add(c->ev, NULL), 0);
}

/*
 * client_finish reads what is left once the loop has stopped, blocking
 * (with a deadline), until the connection ends: 0 for an orderly end, or
 * the error (ECONNRESET) that ended it.
 */
static int
client_finish(struct client *c)
{
	struct timeval tv = {TEST_TIMEOUT_S, 0};
	ssize_t n;

	assert_int_equal(fcntl(c->fd, F_SETFL, 0), 0);
	assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	while (!c->eof) {
		n = read(c->fd, c->got + c->n, sizeof(c->got) - 1 - c->n);
		if (n == -1) {
			assert_int_not_equal(errno, EAGAIN);
			return errno;
		}
		if (n == 0)
			c->eof = 1;
		c->n += (size_t)n;
	}
	return 0;
}

/*
 * A relayed session: the client sends and half-closes, the echo server
 * answers and closes; the session ends once, "closed", and the counters
 * say one session allowed with five bytes each way.
 */
static void
test_session_relayed_and_ended(void **state)
{
	struct fixture f;
	struct listener_stats st;
	struct client c;
	int fd;

	(void)state;
	fixture_open(&f);
	fd = client_connect(&f);
	assert_int_equal(write(fd, "hello", 5), 5);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	client_watch(&c, &f, fd);

	assert_int_equal(event_base_dispatch(f.gk.base), 0);

	assert_int_equal(fake.ended, 1);
	assert_int_equal(fake.sessions, 0);
	assert_int_equal(f.gk.n_sessions, 0);
	assert_true(TAILQ_EMPTY(&f.gk.sessions));
	/* The last bytes may trail the session's end in the client's socket. */
	assert_int_equal(client_finish(&c), 0);
	c.got[c.n] = '\0';
	assert_string_equal(c.got, "hello");

	listener_stats_read(f.l, &st);
	assert_int_equal(st.accepted, 1);
	assert_int_equal(st.sessions, 1);
	assert_int_equal(st.allowed, 1);
	assert_int_equal(st.denied, 0);
	assert_int_equal(st.bytes_in, 5);
	assert_int_equal(st.bytes_out, 5);
	assert_int_equal(st.connect_failures, 0);
	assert_int_equal(st.active, 0);
	/* counted once, under its decision and how it ended */
	assert_int_equal(st.closed[DECISION_ALLOW][REASON_CLOSED], 1);
	assert_int_equal(st.closed[DECISION_ALLOW][REASON_SHUTDOWN], 0);

	event_free(c.ev);
	close(fd);
	fixture_close(&f);
}

/*
 * session_close_all, as a drain timeout calls it, ends a live session:
 * the worker hears of it, and the listener's active count goes back to 0.
 */
static void
test_session_closed_by_close_all(void **state)
{
	struct fixture f;
	struct listener_stats st;
	struct client c;
	int fd, end;

	(void)state;
	fixture_open(&f);
	fd = client_connect(&f);
	assert_int_equal(write(fd, "ping", 4), 4);
	client_watch(&c, &f, fd);
	c.close_all_at = 4; /* once the echo is back, the session is surely relaying */

	assert_int_equal(event_base_dispatch(f.gk.base), 0);

	assert_int_equal(fake.ended, 1);
	assert_int_equal(fake.sessions, 0);
	assert_int_equal(f.gk.n_sessions, 0);
	listener_stats_read(f.l, &st);
	assert_int_equal(st.accepted, 1);
	assert_int_equal(st.sessions, 1);
	assert_int_equal(st.allowed, 1);
	assert_int_equal(st.active, 0);
	assert_int_equal(st.bytes_in, 4);
	assert_int_equal(st.bytes_out, 4);
	assert_int_equal(st.closed[DECISION_ALLOW][REASON_SHUTDOWN], 1);
	assert_int_equal(st.closed[DECISION_ALLOW][REASON_CLOSED], 0);
	/* The session is gone: its client sees the end, orderly or reset. */
	end = client_finish(&c);
	assert_true(end == 0 || end == ECONNRESET);

	event_free(c.ev);
	close(fd);
	fixture_close(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_relayed_and_ended),
	    cmocka_unit_test(test_session_closed_by_close_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
