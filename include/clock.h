/*
 * clock.h: milliseconds <-> struct timeval, the two conversions every
 * timer in gatekeeper needs, and a monotonic "now" (as a timeval in the
 * event loops, in milliseconds for the blocking checks: health, audit). Durations are kept in
 * milliseconds (as the config stores them); libevent wants timevals.
 */
#ifndef GK_CLOCK_H
#define GK_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

/* clock_tv returns ms (>= 0) as a struct timeval. */
static inline struct timeval
clock_tv(int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

	return tv;
}

/* clock_ms_between returns b - a in whole milliseconds. */
static inline int64_t
clock_ms_between(const struct timeval *a, const struct timeval *b)
{
	return (int64_t)(b->tv_sec - a->tv_sec) * 1000 + (b->tv_usec - a->tv_usec) / 1000;
}

/*
 * clock_now_tv: the monotonic clock as a timeval. Every span and deadline
 * in the event loops (idle and connect timeouts, HTTP deadlines, logged
 * durations, resolver rate limits) is measured with it, so a step of the
 * wall clock (NTP, `date -s`) moves no timeout and no duration.
 */
static inline void
clock_now_tv(struct timeval *tv)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	tv->tv_sec = ts.tv_sec;
	tv->tv_usec = (suseconds_t)(ts.tv_nsec / 1000);
}

/* clock_now_ms: a monotonic clock in milliseconds, for deadlines outside the event loop. */
static inline int64_t
clock_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
