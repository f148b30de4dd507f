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
 *
 * The splice path takes over once both sides' buffers are empty (relayd's
 * rule: never splice with bytes still buffered, or they would be
 * reordered): each direction gets a pipe, and bytes go socket -> pipe ->
 * socket inside the kernel. The pipe (64 KiB) is then the whole buffer of
 * that direction, so back-pressure is the same: a full pipe stops reading.
 */
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "relay.h"

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void maybe_splice(struct relay *r);

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
	maybe_splice(r);
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
	if (shut_if_flushed(r, from))
		return;
	maybe_splice(r);
}

/* ---- the splice path ---- */

static const char *
side_error(int side)
{
	return side == RELAY_CLIENT ? "client_error" : "upstream_error";
}

/*
 * pump moves what it can in one direction: empty the pipe into the
 * destination first, then refill it from the source. It waits (an event)
 * when the destination is full or the source is empty, half-closes the
 * destination after the source's EOF, and finishes the relay on errors or
 * when both directions are done. Returns 1 if the relay finished.
 */
static int
pump(struct relay_pipe *p)
{
	struct relay *r = p->relay;
	int from = p->from, to = !from;
	int src = bufferevent_getfd(r->bev[from]), dst = bufferevent_getfd(r->bev[to]);
	ssize_t n;

	for (;;) {
		if (p->queued > 0) {
			n = splice(p->fd[0], NULL, dst, NULL, p->queued,
			    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				p->queued -= (size_t)n;
				touch(r);
				continue;
			}
			if (n < 0 && errno == EAGAIN) {
				/* Back-pressure: stop reading until the peer drains. */
				event_del(p->readable);
				event_add(p->writable, NULL);
				return 0;
			}
			finish(r, side_error(to));
			return 1;
		}
		if (r->eof[from]) {
			r->shut[to] = 1;
			event_del(p->readable);
			if (shutdown(dst, SHUT_WR) == -1 && errno != ENOTCONN) {
				finish(r, side_error(to));
				return 1;
			}
			if (r->shut[RELAY_CLIENT] && r->shut[RELAY_UPSTREAM]) {
				finish(r, "closed");
				return 1;
			}
			return 0;
		}
		n = splice(src, NULL, p->fd[1], NULL, RELAY_PIPE_SIZE,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			p->queued = (size_t)n;
			r->bytes[from] += (uint64_t)n;
			touch(r);
			continue;
		}
		if (n == 0) {
			r->eof[from] = 1;
			continue;
		}
		if (errno == EAGAIN) {
			event_add(p->readable, NULL);
			return 0;
		}
		finish(r, side_error(from));
		return 1;
	}
}

static void
on_splice_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

static void
pipe_close(struct relay_pipe *p)
{
	if (p->relay == NULL)
		return; /* never set up */
	if (p->readable)
		event_free(p->readable);
	if (p->writable)
		event_free(p->writable);
	p->readable = p->writable = NULL;
	for (int i = 0; i < 2; i++)
		if (p->fd[i] >= 0)
			close(p->fd[i]);
	p->fd[0] = p->fd[1] = -1;
	p->relay = NULL;
}

static int
buffers_empty(const struct relay *r)
{
	for (int i = 0; i < 2; i++)
		if (evbuffer_get_length(bufferevent_get_input(r->bev[i])) > 0 ||
		    evbuffer_get_length(bufferevent_get_output(r->bev[i])) > 0)
			return 0;
	return 1;
}

/*
 * maybe_splice switches to the splice path when it is allowed and every
 * buffer is empty. If pipes cannot be had (fd limit), copying goes on.
 */
static void
maybe_splice(struct relay *r)
{
	if (r->spliced || r->splice == RELAY_SPLICE_OFF)
		return;
	if (r->splice == RELAY_SPLICE_AUTO &&
	    r->bytes[RELAY_CLIENT] + r->bytes[RELAY_UPSTREAM] < RELAY_SPLICE_AUTO_AFTER)
		return;
	if (!buffers_empty(r)) {
		/*
		 * Let the queues drain first: read no more into a queue that
		 * is not empty (back-pressure with a high-water mark of 0,
		 * for a moment). on_write comes back here as they empty.
		 */
		for (int i = 0; i < 2; i++) {
			struct bufferevent *dst = r->bev[!i];
			if (r->eof[i] || evbuffer_get_length(bufferevent_get_output(dst)) == 0)
				continue;
			r->paused[i] = 1;
			bufferevent_disable(r->bev[i], EV_READ);
			bufferevent_setwatermark(dst, EV_WRITE, 0, 0);
		}
		return;
	}
	for (int d = 0; d < 2; d++) {
		struct relay_pipe *p = &r->pipe[d];
		int src = bufferevent_getfd(r->bev[d]), dst = bufferevent_getfd(r->bev[!d]);
		p->relay = r;
		p->from = d;
		if (pipe2(p->fd, O_NONBLOCK | O_CLOEXEC) == -1) {
			p->fd[0] = p->fd[1] = -1;
			goto fail;
		}
		/* A bigger pipe means fewer, larger splices (best effort: capped by
		 * /proc/sys/fs/pipe-max-size and the per-user pipe budget). */
		(void)fcntl(p->fd[1], F_SETPIPE_SZ, RELAY_PIPE_SIZE);
		p->readable = event_new(r->base, src, EV_READ | EV_PERSIST, on_splice_event, p);
		p->writable = event_new(r->base, dst, EV_WRITE, on_splice_event, p);
		if (p->readable == NULL || p->writable == NULL)
			goto fail;
	}
	for (int i = 0; i < 2; i++) {
		r->paused[i] = 0;
		bufferevent_disable(r->bev[i], EV_READ | EV_WRITE);
	}
	r->spliced = 1;
	/* A direction whose EOF is already forwarded has nothing left to move. */
	for (int d = 0; d < 2; d++)
		if (!r->shut[!d] && pump(&r->pipe[d]))
			return;
	return;
fail:
	log_warn("relay: cannot set up splice, copying instead");
	for (int d = 0; d < 2; d++)
		pipe_close(&r->pipe[d]);
	r->splice = RELAY_SPLICE_OFF;
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
	idle = clock_ms_between(&r->last_active, &now);
	if (idle >= r->idle_ms) {
		finish(r, "idle_timeout");
		return;
	}
	/* Something moved since the timer was armed: wait for the remainder. */
	left = clock_tv(r->idle_ms - idle);
	evtimer_add(r->idle_timer, &left);
}

int
relay_start(struct relay *r, struct event_base *base, struct bufferevent *client,
    struct bufferevent *upstream, int64_t idle_ms, enum relay_splice splice, relay_done_fn *done,
    void *arg)
{
	memset(r, 0, sizeof(*r));
	r->base = base;
	r->bev[RELAY_CLIENT] = client;
	r->bev[RELAY_UPSTREAM] = upstream;
	r->idle_ms = idle_ms;
	r->splice = splice;
	r->done = done;
	r->arg = arg;
	touch(r);
	if (idle_ms > 0) {
		struct timeval tv = clock_tv(idle_ms);
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
	/*
	 * Writing is enabled from creation and armed by libevent only while
	 * output is queued; enabling it here would arm it for nothing.
	 */
	for (int i = 0; i < 2; i++)
		if (!r->paused[i])
			bufferevent_enable(r->bev[i], EV_READ);
	maybe_splice(r);
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
	for (int d = 0; d < 2; d++)
		pipe_close(&r->pipe[d]);
}
