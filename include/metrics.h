/*
 * metrics.h: the Prometheus text exposition of gatekeeper's counters.
 *
 * Counters live where they happen (each worker's listeners and resolver,
 * written with relaxed atomics); metrics_render sums them over the workers
 * at scrape time, so the data path never takes a lock for metrics.
 */
#ifndef GK_METRICS_H
#define GK_METRICS_H

struct evbuffer;
struct gk;

/*
 * metrics_render appends the exposition (text format 0.0.4) for the n
 * workers to out. It reads other workers' counters atomically and the
 * resolver of workers[0] directly, so it runs on workers[0]'s thread,
 * holding worker_listeners_lock (a reload swaps listener lists under it).
 * Returns 0, or -1 when out of memory.
 */
int metrics_render(struct evbuffer *out, struct gk *workers, int n);

#endif
