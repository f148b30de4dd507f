/*
 * relay.h: the two sockets of a session, and the byte pump between them.
 *
 * A relay owns the client's and the upstream's socket for the whole life
 * of a session. Each socket has one edge-triggered event, registered once
 * (read, write and peer-close together), and the relay keeps what the
 * kernel last said about it: readable, writable. Before relay_start the
 * session drives the sockets itself (sniffing, connecting, refusing) through
 * an io callback; from relay_start on the relay copies client -> upstream
 * and upstream -> client.
 *
 * Copying reads into one per-thread scratch buffer and writes straight out
 * again, so a connection whose peers keep up costs no allocation and no
 * event changes: per message one read and one write. Only when a write
 * falls short are the unwritten bytes kept (at most RELAY_CHUNK per
 * direction, allocated then and freed once written), and reading from that
 * side waits until they are out: that is the back-pressure, and it bounds
 * memory per connection whatever the peers do. EOF is forwarded as a
 * half-close (shutdown(SHUT_WR) once the direction's bytes are written), so
 * the relay ends when both directions are done, on an error, or when the
 * session's idle timer says nothing moved.
 *
 * Zero-copy: a direction that carries bulk data switches to splice(2)
 * through a pipe of its own once its queue is empty (bytes never reorder).
 */
#ifndef GK_RELAY_H
#define GK_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "reason.h"

struct event;
struct event_base;

/* The most bytes one read takes, and so the most queued per direction. */
#define RELAY_CHUNK (256 * 1024)

enum relay_side {
	RELAY_CLIENT = 0,
	RELAY_UPSTREAM = 1,
};

/*
 * Zero-copy: OFF never splices; ON splices every direction from the
 * start; AUTO splices a direction once it has carried
 * RELAY_SPLICE_AUTO_AFTER bytes and a read filled a whole chunk (a bulk
 * flow), so short exchanges keep the cheaper read/write path.
 */
enum relay_splice {
	RELAY_SPLICE_AUTO,
	RELAY_SPLICE_ON,
	RELAY_SPLICE_OFF,
};

#define RELAY_SPLICE_AUTO_AFTER (256 * 1024)
/* Bytes one direction's pipe may hold on the splice path. */
#define RELAY_PIPE_SIZE (256 * 1024)

/* One socket and what its last events said. */
struct relay_end {
	int fd;		  /* -1 when closed */
	struct event *ev; /* EV_READ|EV_WRITE|EV_CLOSED, edge-triggered, in the owner's storage */
	int armed;	  /* ev is registered */
	int readable;	  /* a read may return bytes (or EOF) */
	int writable;	  /* a write may take bytes */
	int peer_closed;  /* the peer's FIN arrived: read until it shows */
};

/* Bytes read from one side and not yet written to the other. */
struct relay_queue {
	char *buf;	 /* copy path: heap, only while bytes wait */
	size_t off, len; /* the bytes waiting are buf[off .. off+len) */
	int pipe[2];	 /* splice path: [0] read end, [1] write end; -1 when copying */
	size_t piped;	 /* bytes in the pipe */
};

/*
 * The session's handler before relay_start: side's socket had events
 * (EV_READ, EV_WRITE; the end's flags are already updated).
 */
typedef void relay_io_fn(void *arg, int side, short what);

/*
 * Called once when the relay ends: reason is REASON_CLOSED (both
 * directions finished), REASON_CLIENT_ERROR, REASON_UPSTREAM_ERROR,
 * REASON_OUT_OF_MEMORY, or what relay_end was given. The callee frees the
 * relay (relay_free); nothing touches it after the call.
 */
typedef void relay_done_fn(void *arg, enum reason reason);

/*
 * A filter sees every byte the relay reads and decides what goes on
 * (mode http). bytes() gets what was read from side "from" and passes on
 * what it wants with relay_queue; it must not end the relay itself
 * (relay_end does that once the client has its bytes). may_read() holds
 * a side's bytes in the kernel while it returns 0.
 */
struct relay_filter {
	void (*bytes)(void *arg, int from, const uint8_t *data, size_t len);
	int (*may_read)(void *arg, int from);
	void *arg;
};

struct relay {
	struct event_base *base;
	struct relay_end end[2];
	struct relay_queue q[2]; /* q[i]: read from side i, to be written to the other */
	uint64_t bytes[2];	 /* bytes read from side i for the other (not gatekeeper's own) */
	int eof[2];		 /* side i sent EOF */
	int shut[2];		 /* we shut down writing to side i */
	int running;		 /* relay_start was called */
	enum relay_splice splice;
	int full_read[2]; /* side i's last read filled a chunk */
	struct timeval last_active;
	const struct relay_filter *filter; /* NULL: bytes go on unchanged */
	enum reason ending;	 /* relay_end: finish with this once the client has its bytes */
	enum reason write_error; /* a write from relay_queue failed: finish with this */
	/* (ending and write_error are REASON_NONE until then) */
	relay_io_fn *io;
	relay_done_fn *done;
	void *arg;
};

/*
 * relay_events_size is the storage relay_init needs for the two sockets'
 * events (libevent's struct event is opaque; its size is asked at run time).
 */
size_t relay_events_size(void);

/*
 * relay_init prepares an empty relay (no sockets). events is
 * relay_events_size() bytes aligned like malloc's, owned by the caller and
 * kept until relay_free: the sockets' events live there, so a relay
 * allocates nothing for them. io gets the sockets' events until relay_start.
 */
void relay_init(struct relay *r, struct event_base *base, void *events, relay_io_fn *io,
		relay_done_fn *done, void *arg);

/*
 * relay_attach gives side's socket to the relay, which closes it from now
 * on (relay_close_side, relay_free), even when arming fails. arm registers
 * its event now; otherwise relay_start does. Returns 0, or -1 when the
 * event could not be registered (the socket is then already closed).
 */
int relay_attach(struct relay *r, int side, int fd, int arm);

/* relay_arm registers side's event if relay_attach did not. Returns 0 or -1. */
int relay_arm(struct relay *r, int side);

/* relay_close_side closes side's socket and drops its event (a failed connect attempt). */
void relay_close_side(struct relay *r, int side);

/*
 * relay_read reads up to len bytes from side before relay_start (sniffing)
 * and keeps the end's flags. Returns the count, 0 at EOF, or -1 with errno
 * (EAGAIN: nothing more until the next event).
 */
ssize_t relay_read(struct relay *r, int side, void *buf, size_t len);

/*
 * relay_write writes from buf to side before relay_start (a refusal).
 * Returns the count (possibly short: wait for EV_WRITE), or -1 with errno.
 */
ssize_t relay_write(struct relay *r, int side, const void *buf, size_t len);

/*
 * relay_queue sends bytes towards side "to" after everything queued
 * there: written at once when nothing waits and the socket takes them,
 * kept otherwise. Before relay_start they are the client's sniffed bytes
 * (counted in bytes[]) or gatekeeper's own (a PROXY header, "200
 * Connection established": not counted); a filter calls it with what it
 * passes on. Returns 0, or -1 when out of memory. A failed write is
 * noted, and the relay finishes with it at its next step.
 */
int relay_queue(struct relay *r, int to, const void *data, size_t len, int counted);

/* relay_set_filter puts a filter between the sides (NULL: back to plain relaying). */
void relay_set_filter(struct relay *r, const struct relay_filter *f);

/*
 * relay_end stops reading both sides and finishes the relay with reason
 * once everything queued for the client is written.
 */
void relay_end(struct relay *r, enum reason reason);

/*
 * relay_start begins relaying both ways with the given splice mode; queued
 * bytes go first. Both sides must be attached. It may finish at once
 * (done called). Returns 0, or -1 when an event could not be registered
 * (done not called).
 */
int relay_start(struct relay *r, enum relay_splice splice);

/* relay_idle_ms: milliseconds since bytes last moved (or since relay_init). */
int64_t relay_idle_ms(const struct relay *r);

/* relay_free closes both sockets, and frees events, queues and pipes. */
void relay_free(struct relay *r);

#endif
