/*
 * relay.c: the two sockets of a session and the byte pump between them.
 *
 * Each socket is registered once with one edge-triggered event for read,
 * write and peer-close, and never changed until it closes: per connection
 * that is one epoll_ctl to add and one to remove, and none while bytes
 * flow. The edges set the end's readable/writable flags; a read or write
 * that comes back short or with EAGAIN clears them (nginx's rule: a short
 * read means the socket is drained unless the peer's FIN is already known,
 * which EV_CLOSED reports).
 *
 * pump() moves one direction as far as it can: write what is queued, then
 * read, write straight on, and queue only what the destination did not
 * take. With bytes queued it does not read from the source (back-pressure:
 * at most one chunk per direction lives in user space). After a bounded
 * number of reads in one go it yields to other connections by activating
 * the event again. The splice path is the same loop with a pipe for the
 * queue, entered only when the direction's queue is empty, so bytes cannot
 * be reordered.
 */
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "pool.h"
#include "relay.h"

/* Reads per direction in one callback before other connections get a turn. */
#define RELAY_ROUNDS 16

/*
 * Every read lands here first. One per thread (each worker runs its own
 * loop), so a connection whose peers keep up owns no buffer at all.
 */
static _Thread_local char scratch[RELAY_CHUNK];

static void on_io(evutil_socket_t fd, short what, void *arg);

static void
touch(struct relay *r)
{
	clock_now_tv(&r->last_active);
}

static enum reason
side_error(int side)
{
	return side == RELAY_CLIENT ? REASON_CLIENT_ERROR : REASON_UPSTREAM_ERROR;
}

/* finish ends the relay; the done callback frees it. Always returns 1. */
static int
finish(struct relay *r, enum reason reason)
{
	r->done(r->arg, reason);
	return 1;
}

static int
retryable(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

int
relay_arm(struct relay *r, int side)
{
	struct relay_end *e = &r->end[side];

	if (e->armed)
		return 0;
	if (event_assign(e->ev, r->base, e->fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST,
			 on_io, r) == -1 ||
	    event_add(e->ev, NULL) == -1)
		return -1;
	e->armed = 1;
	return 0;
}

/* One event's share of relay_events_size, keeping the second one aligned. */
static size_t
event_slot(void)
{
	return pool_align(event_get_struct_event_size());
}

size_t
relay_events_size(void)
{
	return 2 * event_slot();
}

/* end_reset empties an end; its event storage stays. */
static void
end_reset(struct relay_end *e)
{
	struct event *ev = e->ev;

	memset(e, 0, sizeof(*e));
	e->ev = ev;
	e->fd = -1;
}

void
relay_init(struct relay *r, struct event_base *base, void *events, relay_io_fn *io,
	   relay_done_fn *done, void *arg)
{
	memset(r, 0, sizeof(*r));
	r->base = base;
	r->io = io;
	r->done = done;
	r->arg = arg;
	r->ending = r->write_error = REASON_NONE;
	for (int i = 0; i < 2; i++) {
		r->end[i].ev = (struct event *)((char *)events + (size_t)i * event_slot());
		end_reset(&r->end[i]);
		r->q[i].pipe[0] = r->q[i].pipe[1] = -1;
	}
	touch(r);
}

int
relay_attach(struct relay *r, int side, int fd, int arm)
{
	struct relay_end *e = &r->end[side];

	end_reset(e);
	e->fd = fd;
	if (arm && relay_arm(r, side) == -1) {
		relay_close_side(r, side);
		return -1;
	}
	return 0;
}

void
relay_close_side(struct relay *r, int side)
{
	struct relay_end *e = &r->end[side];

	if (e->armed)
		event_del(e->ev);
	if (e->fd >= 0)
		close(e->fd);
	end_reset(e);
}

ssize_t
relay_read(struct relay *r, int side, void *buf, size_t len)
{
	struct relay_end *e = &r->end[side];
	ssize_t n;

	do
		n = read(e->fd, buf, len);
	while (n == -1 && errno == EINTR);
	if (n == 0 || (n > 0 && (size_t)n < len && !e->peer_closed) ||
	    (n == -1 && retryable(errno)))
		e->readable = 0;
	return n;
}

ssize_t
relay_write(struct relay *r, int side, const void *buf, size_t len)
{
	struct relay_end *e = &r->end[side];
	ssize_t n;

	do
		n = write(e->fd, buf, len);
	while (n == -1 && errno == EINTR);
	if ((n >= 0 && (size_t)n < len) || (n == -1 && retryable(errno)))
		e->writable = 0;
	return n;
}

int
relay_queue(struct relay *r, int to, const void *data, size_t len, int counted)
{
	struct relay_queue *q = &r->q[!to];
	struct relay_end *dst = &r->end[to];
	char *buf;
	ssize_t n;

	if (counted)
		r->bytes[!to] += len;
	if (q->len == 0 && q->piped == 0 && dst->writable && r->write_error == REASON_NONE &&
	    len > 0) {
		/* Nothing waits: straight out, as copy() does. */
		do
			n = write(dst->fd, data, len);
		while (n == -1 && errno == EINTR);
		if (n == -1 && !retryable(errno)) {
			r->write_error = side_error(to);
			return 0;
		}
		if (n < 0)
			n = 0;
		if ((size_t)n < len)
			dst->writable = 0;
		if (n > 0)
			touch(r);
		data = (const char *)data + n;
		len -= (size_t)n;
	}
	if (len == 0)
		return 0;
	if ((buf = realloc(q->buf, q->off + q->len + len)) == NULL)
		return -1;
	memcpy(buf + q->off + q->len, data, len);
	q->buf = buf;
	q->len += len;
	return 0;
}

void
relay_set_filter(struct relay *r, const struct relay_filter *f)
{
	r->filter = f;
}

void
relay_end(struct relay *r, enum reason reason)
{
	if (r->ending == REASON_NONE)
		r->ending = reason;
	/* Outside a callback (a timer) nothing would pump: come back through on_io. */
	if (r->running && r->end[RELAY_CLIENT].armed)
		event_active(r->end[RELAY_CLIENT].ev, 0, 0);
}

/* ---- one direction ---- */

/*
 * flush writes queued bytes to the destination. Returns 1 when the queue
 * is empty, 0 when the destination is full (wait for its edge), -1 on a
 * write error.
 */
static int
flush(struct relay *r, struct relay_queue *q, struct relay_end *dst)
{
	ssize_t n;

	while (q->piped > 0 || q->len > 0) {
		int piped = q->piped > 0; /* a pipe's bytes are older than any in buf */
		if (piped)
			n = splice(q->pipe[0], NULL, dst->fd, NULL, q->piped,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		else
			n = write(dst->fd, q->buf + q->off, q->len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			dst->writable = 0;
			return 0;
		}
		if (n <= 0)
			return -1;
		touch(r);
		if (piped) {
			q->piped -= (size_t)n;
			continue;
		}
		q->off += (size_t)n;
		q->len -= (size_t)n;
		if (q->len > 0) {
			dst->writable = 0; /* a short write: the socket buffer is full */
			return 0;
		}
	}
	/* Drained: an idle connection keeps no buffer. */
	free(q->buf);
	q->buf = NULL;
	q->off = 0;
	return 1;
}

/*
 * copy reads one chunk from side from and writes it straight to the other
 * side, queueing what the other side did not take. Returns 0, or 1 when
 * the relay finished.
 */
static int
copy(struct relay *r, int from)
{
	struct relay_end *src = &r->end[from];
	ssize_t n;

	n = read(src->fd, scratch, sizeof(scratch));
	if (n == 0) {
		r->eof[from] = 1;
		src->readable = 0;
		return 0;
	}
	if (n < 0) {
		if (retryable(errno)) {
			if (errno != EINTR)
				src->readable = 0;
			return 0;
		}
		return finish(r, side_error(from));
	}
	r->bytes[from] += (uint64_t)n;
	r->full_read[from] = n == (ssize_t)sizeof(scratch);
	touch(r);
	if (!r->full_read[from] && !src->peer_closed)
		src->readable = 0;
	if (r->filter != NULL) {
		/* The filter passes on what it wants through relay_queue. */
		r->filter->bytes(r->filter->arg, from, (const uint8_t *)scratch, (size_t)n);
		return 0;
	}
	/*
	 * Straight out when the destination takes it, the rest queued; a
	 * failed write ends the relay at pump's next turn.
	 */
	if (relay_queue(r, !from, scratch, (size_t)n, 0) == -1)
		return finish(r, REASON_OUT_OF_MEMORY);
	return 0;
}

/* fill_pipe moves what the source has into the direction's empty pipe. Returns 0 or 1 (finished).
 */
static int
fill_pipe(struct relay *r, int from)
{
	struct relay_end *src = &r->end[from];
	struct relay_queue *q = &r->q[from];
	ssize_t n;

	n = splice(src->fd, NULL, q->pipe[1], NULL, RELAY_PIPE_SIZE,
		   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0) {
		q->piped = (size_t)n;
		r->bytes[from] += (uint64_t)n;
		touch(r);
		return 0;
	}
	if (n == 0) {
		r->eof[from] = 1;
		src->readable = 0;
		return 0;
	}
	if (retryable(errno)) {
		/* The pipe is empty here, so EAGAIN means the socket is. */
		if (errno != EINTR)
			src->readable = 0;
		return 0;
	}
	return finish(r, side_error(from));
}

/*
 * maybe_splice gives direction from a pipe when its mode asks for one.
 * Called only with the direction's queue empty. Without pipes (fd or
 * pipe-buffer limits) the relay goes on copying.
 */
static void
maybe_splice(struct relay *r, int from)
{
	struct relay_queue *q = &r->q[from];

	if (q->pipe[0] >= 0 || r->splice == RELAY_SPLICE_OFF || r->filter != NULL)
		return;
	if (r->splice == RELAY_SPLICE_AUTO &&
	    (r->bytes[from] < RELAY_SPLICE_AUTO_AFTER || !r->full_read[from]))
		return;
	if (pipe2(q->pipe, O_NONBLOCK | O_CLOEXEC) == -1) {
		q->pipe[0] = q->pipe[1] = -1;
		log_warn("relay: cannot set up splice, copying instead");
		r->splice = RELAY_SPLICE_OFF;
		return;
	}
	/* A bigger pipe means fewer, larger splices (best effort: capped by
	 * /proc/sys/fs/pipe-max-size and the per-user pipe budget). */
	(void)fcntl(q->pipe[1], F_SETPIPE_SZ, RELAY_PIPE_SIZE);
}

/* half_close forwards an EOF to side to. Returns 1 if the relay finished. */
static int
half_close(struct relay *r, int to)
{
	if (!r->shut[to]) {
		r->shut[to] = 1;
		if (shutdown(r->end[to].fd, SHUT_WR) == -1 && errno != ENOTCONN)
			return finish(r, side_error(to));
	}
	if (r->shut[RELAY_CLIENT] && r->shut[RELAY_UPSTREAM])
		return finish(r, REASON_CLOSED);
	return 0;
}

/*
 * pump moves bytes from side from to the other side until one of them
 * must be waited for. Returns 1 if the relay finished (it is freed then).
 */
static int
pump(struct relay *r, int from)
{
	struct relay_end *src = &r->end[from], *dst = &r->end[!from];
	struct relay_queue *q = &r->q[from];
	int rounds = 0, rc;

	for (;;) {
		if (r->write_error != REASON_NONE)
			return finish(r, r->write_error);
		if (r->shut[!from] && r->ending == REASON_NONE)
			return 0;
		if (q->len > 0 || q->piped > 0) {
			if (!dst->writable)
				return 0;
			if ((rc = flush(r, q, dst)) == -1)
				return finish(r, side_error(!from));
			if (rc == 0)
				return 0;
		}
		if (r->ending != REASON_NONE) {
			/* Done once the client has every byte meant for it. */
			const struct relay_queue *toc = &r->q[RELAY_UPSTREAM];
			return toc->len == 0 && toc->piped == 0 ? finish(r, r->ending) : 0;
		}
		if (r->eof[from])
			return half_close(r, !from);
		if (!src->readable)
			return 0;
		if (r->filter != NULL && !r->filter->may_read(r->filter->arg, from))
			return 0;
		if (++rounds > RELAY_ROUNDS) {
			/* Come back after the other connections had their turn. */
			event_active(src->ev, EV_READ, 0);
			return 0;
		}
		maybe_splice(r, from);
		if ((q->pipe[0] >= 0 ? fill_pipe(r, from) : copy(r, from)) == 1)
			return 1;
	}
}

static void
on_io(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	int side = fd == r->end[RELAY_CLIENT].fd ? RELAY_CLIENT : RELAY_UPSTREAM;
	struct relay_end *e = &r->end[side];

	if (what & EV_READ)
		e->readable = 1;
	if (what & EV_WRITE)
		e->writable = 1;
	if (what & EV_CLOSED)
		e->readable = e->peer_closed = 1;
	if (!r->running) {
		r->io(r->arg, side, what);
		return;
	}
	/* Bytes from this side, then bytes waiting for this side. */
	if (pump(r, side) == 0)
		pump(r, !side);
}

int
relay_start(struct relay *r, enum relay_splice splice)
{
	for (int i = 0; i < 2; i++)
		if (relay_arm(r, i) == -1)
			return -1;
	r->running = 1;
	r->splice = splice;
	touch(r);
	if (pump(r, RELAY_CLIENT) == 0)
		pump(r, RELAY_UPSTREAM);
	return 0;
}

int64_t
relay_idle_ms(const struct relay *r)
{
	struct timeval now;

	clock_now_tv(&now);
	return clock_ms_between(&r->last_active, &now);
}

void
relay_free(struct relay *r)
{
	for (int i = 0; i < 2; i++) {
		struct relay_queue *q = &r->q[i];
		relay_close_side(r, i);
		free(q->buf);
		q->buf = NULL;
		q->len = q->off = q->piped = 0;
		for (int j = 0; j < 2; j++)
			if (q->pipe[j] >= 0)
				close(q->pipe[j]);
		q->pipe[0] = q->pipe[1] = -1;
	}
}
