/*
 * relay.h: move bytes both ways between two connected bufferevents.
 *
 * The relay copies client -> upstream and upstream -> client with
 * watermark back-pressure (at most RELAY_HIGH_WATER bytes queued per
 * direction), keeps TCP half-close (EOF from one side becomes
 * shutdown(SHUT_WR) on the other once its queue is flushed), and enforces
 * the idle timeout. It owns no memory beyond its timer: the session owns the
 * bufferevents and the struct, and tears everything down from the done
 * callback.
 */
#ifndef GK_RELAY_H
#define GK_RELAY_H

#include <stdint.h>
#include <sys/time.h>

struct bufferevent;
struct event;
struct event_base;

/* Bytes queued towards one peer before reading from the other pauses. */
#define RELAY_HIGH_WATER (256 * 1024)

enum relay_side {
	RELAY_CLIENT = 0,
	RELAY_UPSTREAM = 1,
};

/*
 * Zero-copy: once both sides' buffers are empty, bytes can move socket ->
 * pipe -> socket with splice(2) and never enter user space. OFF never does;
 * ON switches as soon as the buffers are empty; AUTO switches after
 * RELAY_SPLICE_AUTO_AFTER bytes, so short exchanges do not pay for pipes.
 */
enum relay_splice {
	RELAY_SPLICE_AUTO,
	RELAY_SPLICE_ON,
	RELAY_SPLICE_OFF,
};

#define RELAY_SPLICE_AUTO_AFTER (256 * 1024)
/* Bytes one direction's pipe may hold on the splice path. */
#define RELAY_PIPE_SIZE (256 * 1024)

struct relay;

/* One direction of a spliced relay: from side's socket, through a pipe, to the other. */
struct relay_pipe {
	struct relay *relay;
	int from;
	int fd[2];       /* pipe: [0] read end, [1] write end */
	size_t queued;   /* bytes in the pipe */
	struct event *readable, *writable;
};

/*
 * Called once when the relay ends: reason is "closed" (both directions
 * finished), "client_error", "upstream_error" or "idle_timeout". The callee
 * frees the bufferevents; the relay touches nothing after calling it.
 */
typedef void relay_done_fn(void *arg, const char *reason);

struct relay {
	struct bufferevent *bev[2];
	uint64_t bytes[2];  /* bytes read from side i and queued to the other */
	int eof[2];         /* side i sent EOF */
	int shut[2];        /* we shut down writing to side i */
	int paused[2];      /* reading from side i paused by back-pressure */
	int64_t idle_ms;    /* 0 = no idle timeout */
	enum relay_splice splice;
	int spliced;        /* bytes now move through pipe[] */
	struct relay_pipe pipe[2];
	struct timeval last_active;
	struct event *idle_timer;
	struct event_base *base;
	relay_done_fn *done;
	void *arg;
};

/*
 * relay_start takes two connected bufferevents and starts relaying. Bytes
 * already in either input buffer are forwarded first. Returns 0, or -1 if
 * the idle timer could not be created (nothing started).
 */
int relay_start(struct relay *r, struct event_base *base, struct bufferevent *client,
    struct bufferevent *upstream, int64_t idle_ms, enum relay_splice splice, relay_done_fn *done,
    void *arg);

/* relay_stop detaches callbacks, frees the timer and pipes; bufferevents are left alone. */
void relay_stop(struct relay *r);

#endif
