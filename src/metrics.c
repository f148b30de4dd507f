/*
 * metrics.c: Prometheus text format for the admin endpoint's /metrics.
 *
 * Each family is written with its HELP and TYPE lines, then one sample per
 * label set. Listener counters are summed over the workers (every worker
 * has the same listeners, in config order); closed connections are counted
 * per (decision, reason) and written in the enums' order, nonzero ones
 * only. Label values are escaped as the format requires.
 */
#include <dirent.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "door.h"
#include "listener.h"
#include "metrics.h"
#include "observed.h"
#include "reason.h"
#include "resolver.h"
#include "worker.h"

/* label writes a label value with \, " and newline escaped. */
static void
label(struct evbuffer *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			evbuffer_add_printf(out, "\\%c", *v);
		else if (*v == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, v, 1);
	}
}

static void
family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* listener_sample starts "name{listener="L"" for a sample; the caller closes it. */
static void
listener_sample(struct evbuffer *out, const char *name, const char *listener)
{
	evbuffer_add_printf(out, "%s{listener=\"", name);
	label(out, listener);
	evbuffer_add(out, "\"", 1);
}

/* name_of: listener i's name (every worker has the same listeners; the first is always bound). */
static const char *
name_of(const struct gk *workers, size_t i)
{
	return listener_conf(worker_listener(&workers[0], i))->name;
}

/* The sum over the workers of one listener's counters. */
static void
sum_listener(struct gk *workers, int n, size_t i, struct listener_stats *sum)
{
	struct listener_stats one;

	memset(sum, 0, sizeof(*sum));
	for (int w = 0; w < n; w++) {
		const struct listener *l = worker_listener(&workers[w], i);
		if (l == NULL)
			continue;
		listener_stats_read(l, &one);
		sum->accepted += one.accepted;
		sum->sessions += one.sessions;
		sum->bytes_in += one.bytes_in;
		sum->bytes_out += one.bytes_out;
		sum->connect_failures += one.connect_failures;
		sum->would_deny += one.would_deny;
		for (int r = 0; r < DOOR_RESULT_COUNT; r++)
			sum->dns[r] += one.dns[r];
		sum->active += one.active;
		for (int d = 0; d < DECISION_COUNT; d++)
			for (int r = 0; r < REASON_COUNT; r++)
				sum->closed[d][r] += one.closed[d][r];
	}
}

/* open_fds counts the process's open descriptors (-1 when /proc is not there). */
static long
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

/* fd_samples: the descriptor limit and the descriptors in use, as Prometheus clients name them. */
static void
fd_samples(struct evbuffer *out)
{
	struct rlimit rl;
	long n = open_fds();

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		family(out, "process_max_fds", "gauge",
		       "The soft limit on open file descriptors (RLIMIT_NOFILE).");
		evbuffer_add_printf(out, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
	if (n >= 0) {
		family(out, "process_open_fds", "gauge", "Open file descriptors.");
		evbuffer_add_printf(out, "process_open_fds %ld\n", n);
	}
}

struct addr_ctx {
	struct evbuffer *out;
};

static void
upstream_addresses(void *arg, const char *host, uint16_t port, size_t n_addrs)
{
	struct addr_ctx *ctx = arg;

	evbuffer_add(ctx->out, "gatekeeper_upstream_addresses{upstream=\"", 40);
	label(ctx->out, host);
	evbuffer_add_printf(ctx->out, ":%u\"} %zu\n", port, n_addrs);
}

int
metrics_render(struct evbuffer *out, struct gk *workers, int n)
{
	size_t n_listeners = worker_n_listeners(&workers[0]);
	struct listener_stats *sums;
	struct resolver_stats rs, one;
	struct addr_ctx ctx = {out};
	uint64_t reloads_ok, reloads_failed, evicted;
	size_t observed;

	if ((sums = calloc(n_listeners ? n_listeners : 1, sizeof(*sums))) == NULL)
		return -1;
	for (size_t i = 0; i < n_listeners; i++)
		sum_listener(workers, n, i, &sums[i]);

	family(out, "gatekeeper_build_info", "gauge", "The running version.");
	evbuffer_add_printf(out, "gatekeeper_build_info{version=\"%s\"} 1\n", GK_VERSION);

#define LISTENER_FAMILY(fam, type, help, field)                                                    \
	do {                                                                                       \
		family(out, fam, type, help);                                                      \
		for (size_t i = 0; i < n_listeners; i++) {                                         \
			listener_sample(out, fam, name_of(workers, i));                            \
			evbuffer_add_printf(out, "} %" PRId64 "\n", (int64_t)sums[i].field);       \
		}                                                                                  \
	} while (0)

	LISTENER_FAMILY("gatekeeper_connections_accepted_total", "counter",
			"Connections accepted by a listener.", accepted);
	LISTENER_FAMILY("gatekeeper_connections_active", "gauge",
			"Connections a listener holds now.", active);
	LISTENER_FAMILY("gatekeeper_upstream_connect_failures_total", "counter",
			"Connection attempts to an upstream address that failed or timed out.",
			connect_failures);
	LISTENER_FAMILY("gatekeeper_would_deny_total", "counter",
			"Refusals that action: report let through (per connection, and per "
			"later request on one).",
			would_deny);

	family(out, "gatekeeper_connections_closed_total", "counter",
	       "Connections ended, by routing decision (allow, deny, none) and the access line's "
	       "reason.");
	for (size_t i = 0; i < n_listeners; i++) {
		const char *name = name_of(workers, i);
		for (int d = 0; d < DECISION_COUNT; d++) {
			const char *decision = decision_name((enum decision)d);
			for (int r = 0; r < REASON_COUNT; r++) {
				uint64_t c = sums[i].closed[d][r];
				if (c == 0)
					continue;
				listener_sample(out, "gatekeeper_connections_closed_total", name);
				evbuffer_add_printf(out, ",decision=\"%s\",reason=\"",
						    decision ? decision : "none");
				label(out, reason_name((enum reason)r));
				evbuffer_add_printf(out, "\"} %" PRIu64 "\n", c);
			}
		}
	}

	family(out, "gatekeeper_dns_queries_total", "counter",
	       "DNS door queries, by result (answered, nodata, nxdomain, refused, error, dropped, "
	       "rate_limited).");
	for (size_t i = 0; i < n_listeners; i++) {
		const char *name = name_of(workers, i);
		for (int r = 0; r < DOOR_RESULT_COUNT; r++) {
			if (sums[i].dns[r] == 0)
				continue;
			listener_sample(out, "gatekeeper_dns_queries_total", name);
			evbuffer_add_printf(out, ",result=\"%s\"} %" PRIu64 "\n",
					    door_result_name((enum door_result)r), sums[i].dns[r]);
		}
	}

	family(out, "gatekeeper_bytes_total", "counter",
	       "Bytes relayed: in = read from clients, out = read from upstreams.");
	for (size_t i = 0; i < n_listeners; i++) {
		const char *name = name_of(workers, i);
		listener_sample(out, "gatekeeper_bytes_total", name);
		evbuffer_add_printf(out, ",direction=\"in\"} %" PRIu64 "\n", sums[i].bytes_in);
		listener_sample(out, "gatekeeper_bytes_total", name);
		evbuffer_add_printf(out, ",direction=\"out\"} %" PRIu64 "\n", sums[i].bytes_out);
	}

	memset(&rs, 0, sizeof(rs));
	for (int w = 0; w < n; w++) {
		if (worker_resolver(&workers[w]) == NULL)
			continue;
		resolver_stats(worker_resolver(&workers[w]), &one);
		rs.lookups_ok += one.lookups_ok;
		rs.lookups_failed += one.lookups_failed;
		rs.lookups_timeout += one.lookups_timeout;
	}
	family(out, "gatekeeper_dns_lookups_total", "counter",
	       "DNS lookups finished, by result (ok, failed, timeout).");
	evbuffer_add_printf(out,
			    "gatekeeper_dns_lookups_total{result=\"ok\"} %" PRIu64 "\n"
			    "gatekeeper_dns_lookups_total{result=\"failed\"} %" PRIu64 "\n"
			    "gatekeeper_dns_lookups_total{result=\"timeout\"} %" PRIu64 "\n",
			    rs.lookups_ok, rs.lookups_failed, rs.lookups_timeout);
	worker_reloads(&workers[0], &reloads_ok, &reloads_failed);
	family(out, "gatekeeper_reloads_total", "counter",
	       "SIGHUP reloads, by result (ok, failed: the running config stayed).");
	evbuffer_add_printf(out,
			    "gatekeeper_reloads_total{result=\"ok\"} %" PRIu64 "\n"
			    "gatekeeper_reloads_total{result=\"failed\"} %" PRIu64 "\n",
			    reloads_ok, reloads_failed);
	family(out, "gatekeeper_upstream_addresses", "gauge",
	       "Addresses held now for each upstream name in use.");
	if (worker_resolver(&workers[0]) != NULL)
		resolver_foreach(worker_resolver(&workers[0]), upstream_addresses, &ctx);
	observed_stats(&observed, &evicted);
	family(out, "gatekeeper_observed_entries", "gauge",
	       "Entries of the observed table (GET /observed).");
	evbuffer_add_printf(out, "gatekeeper_observed_entries %zu\n", observed);
	family(out, "gatekeeper_observed_evicted_total", "counter",
	       "Observed entries pushed out by admin.observed_max, least recently seen first.");
	evbuffer_add_printf(out, "gatekeeper_observed_evicted_total %" PRIu64 "\n", evicted);
	fd_samples(out);
	free(sums);
	return 0;
}
