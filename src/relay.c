/*
 * relay.c: the byte pump between client and upstream.
 *
 * It follows libevent's le-proxy: each read callback moves the whole input
 * buffer to the other side's output (no copy, evbuffer chains move), and
 * when that output passes RELAY_HIGH_WATER, reading pauses until the peer
 * has drained it to half. Memory per connection is therefore bounded
 * whatever the peers do. EOF is forwarded as a half-close, so protocols that
 * shut one direction early (a client that sends a request then
 * shutdown(SHUT_WR)s) work; the relay ends only when both directions are
 * done, on an error, or when nothing moved for idle_ms.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <string.h>
#include <sys/socket.h>

#include "relay.h"

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static int
side_of(const struct relay *r, const struct bufferevent *bev)
{
	return bev == r->bev[RELAY_CLIENT] ? RELAY_CLIENT : RELAY_UPSTREAM;
}

static void
touch(struct relay *r)
{
	event_base_gettimeofday_cached(r->base, &r->last_active);
}

/* finish ends the relay; nothing may touch r after it returns. */
static void
finish(struct relay *r, const char *reason)
{
	relay_done_fn *done = r->done;
	void *arg = r->arg;

	relay_stop(r);
	done(arg, reason);
}

/*
 * shut_if_flushed half-closes the peer of a side that sent EOF, once every
 * byte from that side has been written. Returns 1 if the relay finished.
 */
static int
shut_if_flushed(struct relay *r, int from)
{
	int to = !from;
	struct bufferevent *dst = r->bev[to];

	if (!r->eof[from] || r->shut[to])
		return 0;
	if (evbuffer_get_length(bufferevent_get_output(dst)) > 0) {
		/* Have on_write fire when the queue is empty. */
		bufferevent_setwatermark(dst, EV_WRITE, 0, 0);
		return 0;
	}
	r->shut[to] = 1;
	if (shutdown(bufferevent_getfd(dst), SHUT_WR) == -1 && errno != ENOTCONN) {
		finish(r, to == RELAY_CLIENT ? "client_error" : "upstream_error");
		return 1;
	}
	if (r->shut[RELAY_CLIENT] && r->shut[RELAY_UPSTREAM]) {
		finish(r, "closed");
		return 1;
	}
	return 0;
}

/* forward moves side from's input to the other side's output. */
static void
forward(struct relay *r, int from)
{
	struct evbuffer *in = bufferevent_get_input(r->bev[from]);
	struct evbuffer *out = bufferevent_get_output(r->bev[!from]);
	size_t n = evbuffer_get_length(in);

	if (n == 0)
		return;
	r->bytes[from] += n;
	touch(r);
	evbuffer_add_buffer(out, in);
	if (evbuffer_get_length(out) >= RELAY_HIGH_WATER && !r->eof[from]) {
		/* Stop reading until the peer drains half of what is queued. */
		r->paused[from] = 1;
		bufferevent_disable(r->bev[from], EV_READ);
		bufferevent_setwatermark(r->bev[!from], EV_WRITE, RELAY_HIGH_WATER / 2, 0);
	}
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct relay *r = arg;

	forward(r, side_of(r, bev));
}

/* on_write: the output to this side fell to its low watermark. */
static void
on_write(struct bufferevent *bev, void *arg)
{
	struct relay *r = arg;
	int to = side_of(r, bev), from = !to;

	touch(r);
	if (r->paused[from]) {
		r->paused[from] = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		bufferevent_enable(r->bev[from], EV_READ);
	}
	shut_if_flushed(r, from);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay *r = arg;
	int side = side_of(r, bev);

	if (what & BEV_EVENT_ERROR) {
		finish(r, side == RELAY_CLIENT ? "client_error" : "upstream_error");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* Forward whatever arrived with the FIN before half-closing. */
		forward(r, side);
		r->eof[side] = 1;
		r->paused[side] = 0;
		bufferevent_disable(bev, EV_READ);
		shut_if_flushed(r, side);
	}
}

static void
on_idle_timer(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct timeval now, left;
	int64_t idle;

	(void)fd;
	(void)what;
	event_base_gettimeofday_cached(r->base, &now);
	idle = (int64_t)(now.tv_sec - r->last_active.tv_sec) * 1000 +
	       (now.tv_usec - r->last_active.tv_usec) / 1000;
	if (idle >= r->idle_ms) {
		finish(r, "idle_timeout");
		return;
	}
	/* Something moved since the timer was armed: wait for the remainder. */
	left.tv_sec = (time_t)((r->idle_ms - idle) / 1000);
	left.tv_usec = (suseconds_t)(((r->idle_ms - idle) % 1000) * 1000);
	evtimer_add(r->idle_timer, &left);
}

int
relay_start(struct relay *r, struct event_base *base, struct bufferevent *client,
    struct bufferevent *upstream, int64_t idle_ms, relay_done_fn *done, void *arg)
{
	memset(r, 0, sizeof(*r));
	r->base = base;
	r->bev[RELAY_CLIENT] = client;
	r->bev[RELAY_UPSTREAM] = upstream;
	r->idle_ms = idle_ms;
	r->done = done;
	r->arg = arg;
	touch(r);
	if (idle_ms > 0) {
		struct timeval tv = {(time_t)(idle_ms / 1000), (suseconds_t)((idle_ms % 1000) * 1000)};
		if ((r->idle_timer = evtimer_new(base, on_idle_timer, r)) == NULL)
			return -1;
		evtimer_add(r->idle_timer, &tv);
	}
	for (int i = 0; i < 2; i++) {
		bufferevent_setcb(r->bev[i], on_read, on_write, on_event, r);
		bufferevent_setwatermark(r->bev[i], EV_READ | EV_WRITE, 0, 0);
		bufferevent_set_max_single_read(r->bev[i], 64 * 1024);
		bufferevent_set_max_single_write(r->bev[i], 64 * 1024);
	}
	/* Bytes that arrived before the relay started (e.g. while connecting). */
	forward(r, RELAY_CLIENT);
	forward(r, RELAY_UPSTREAM);
	for (int i = 0; i < 2; i++)
		if (!r->paused[i])
			bufferevent_enable(r->bev[i], EV_READ | EV_WRITE);
	return 0;
}

void
relay_stop(struct relay *r)
{
	for (int i = 0; i < 2; i++)
		if (r->bev[i] != NULL)
			bufferevent_setcb(r->bev[i], NULL, NULL, NULL, NULL);
	if (r->idle_timer != NULL) {
		event_free(r->idle_timer);
		r->idle_timer = NULL;
	}
}
