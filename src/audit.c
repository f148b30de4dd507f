/*
 * audit.c: `gatekeeper audit --expect-open|--expect-closed HOST:PORT
 * --expect-no-dns NAME ...`, the isolation check a user runs inside a
 * jailed container (and in CI) instead of trying `ping` by hand.
 *
 * Each check is independent and bounded by --timeout: a name is resolved
 * with c-ares (the proxy's own resolver library, so a scratch image needs
 * no NSS), then each address is tried with a non-blocking connect until one
 * answers. The table says what was found; the exit status says whether it
 * matched: 0 all as expected, 1 something differs, 2 bad arguments.
 */
#include <ares.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "clock.h"
#include "config.h"
#include "net.h"

#define AUDIT_MAX_ADDRS 16

enum check_kind { CHECK_OPEN, CHECK_CLOSED, CHECK_NO_DNS };

struct check {
	enum check_kind kind;
	const char *target; /* as given */
	char host[NET_HOSTMAX + 1];
	uint16_t port;
};

struct lookup {
	int done, status;
	struct sockaddr_storage addr[AUDIT_MAX_ADDRS];
	size_t n;
};

static void
on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct lookup *l = arg;
	struct ares_addrinfo_node *node;

	(void)timeouts;
	l->done = 1;
	l->status = status;
	for (node = res ? res->nodes : NULL; node != NULL && l->n < AUDIT_MAX_ADDRS;
	     node = node->ai_next) {
		if (node->ai_family != AF_INET && node->ai_family != AF_INET6)
			continue;
		memcpy(&l->addr[l->n++], node->ai_addr, (size_t)node->ai_addrlen);
	}
	if (res != NULL)
		ares_freeaddrinfo(res);
}

/* resolve fills l with host's addresses (an IP literal stands for itself). Returns 0 or -1. */
static int
resolve(const char *host, uint16_t port, const char *servers, int64_t deadline, struct lookup *l,
	char *why, size_t whylen)
{
	struct ares_addrinfo_hints hints;
	ares_channel channel;
	socklen_t len;
	int rc;

	memset(l, 0, sizeof(*l));
	if (net_parse_ip(host, port, &l->addr[0], &len) == 0) {
		l->n = 1;
		return 0;
	}
	if ((rc = ares_init(&channel)) != ARES_SUCCESS ||
	    (servers != NULL &&
	     (rc = ares_set_servers_ports_csv(channel, servers)) != ARES_SUCCESS)) {
		snprintf(why, whylen, "resolver: %s", ares_strerror(rc));
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	ares_getaddrinfo(channel, host, NULL, &hints, on_addrinfo, l);
	while (!l->done && clock_now_ms() < deadline) {
		fd_set r, w;
		struct timeval tv, max = {0, 100000}, *t;
		int nfds;
		FD_ZERO(&r);
		FD_ZERO(&w);
		nfds = ares_fds(channel, &r, &w);
		if (nfds == 0)
			break;
		t = ares_timeout(channel, &max, &tv);
		if (select(nfds, &r, &w, NULL, t) == -1 && errno != EINTR)
			break;
		ares_process(channel, &r, &w);
	}
	ares_destroy(channel); /* a lookup still running ends here (ARES_EDESTRUCTION) */
	if (l->n > 0) {
		for (size_t i = 0; i < l->n; i++)
			((struct sockaddr_in *)&l->addr[i])->sin_port =
			    htons(port); /* same offset in v6 */
		return 0;
	}
	snprintf(why, whylen, "%s",
		 !l->done || l->status == ARES_EDESTRUCTION ? "no DNS answer"
		 : l->status == ARES_SUCCESS		    ? "no address"
							    : ares_strerror(l->status));
	return -1;
}

/* reach tries the addresses in turn. Returns 1 when one accepted, 0 otherwise (why says how). */
static int
reach(const struct lookup *l, int64_t deadline, char *why, size_t whylen, char *addr,
      size_t addrlen)
{
	snprintf(why, whylen, "timed out");
	for (size_t i = 0; i < l->n; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&l->addr[i];
		struct pollfd p;
		int fd, err, left;

		net_format(sa, addr, addrlen);
		if ((fd = net_connect(sa, net_sockaddr_len(sa))) == -1) {
			snprintf(why, whylen, "%s", strerror(errno));
			continue;
		}
		p.fd = fd;
		p.events = POLLOUT;
		left = (int)(deadline - clock_now_ms());
		/* Leave later addresses a share of the time. */
		left = left / (int)(l->n - i);
		if (left > 0 && poll(&p, 1, left) == 1) {
			err = net_connect_result(fd);
			close(fd);
			if (err == 0)
				return 1;
			snprintf(why, whylen, "%s", strerror(err));
			continue;
		}
		close(fd);
		snprintf(why, whylen, "timed out");
	}
	return 0;
}

static const char *const kind_names[] = {"open", "closed", "no-dns"};

/* probe makes one check once, within timeout_ms; returns what it found
 * ("open", "closed", "no-dns" or "resolved") and the detail in why. */
static const char *
probe(const struct check *c, const char *servers, int64_t timeout_ms, char *why, size_t whylen)
{
	int64_t deadline = clock_now_ms() + timeout_ms;
	char addr[NET_ADDRSTRLEN] = "";
	struct lookup l;

	why[0] = '\0';
	if (resolve(c->host, c->port, servers, deadline, &l, why, whylen) == -1)
		return c->kind == CHECK_NO_DNS ? "no-dns" : "closed";
	if (c->kind == CHECK_NO_DNS) {
		net_addr_format((struct sockaddr *)&l.addr[0], why, whylen);
		return "resolved";
	}
	if (reach(&l, deadline, why, whylen, addr, sizeof(addr))) {
		snprintf(why, whylen, "connected to %s", addr);
		return "open";
	}
	if (addr[0] != '\0') {
		size_t w = strlen(why);
		snprintf(why + w, whylen - w, " (%s)", addr);
	}
	return "closed";
}

static int
usage(FILE *err)
{
	fprintf(
	    err,
	    "usage: gatekeeper audit [--timeout 3s] [--wait 30s] [--nameservers IP[:PORT],...]\n"
	    "                        [--expect-open HOST:PORT]...\n"
	    "                        [--expect-closed HOST:PORT]... [--expect-no-dns NAME]...\n"
	    "Checks, from where it runs, what can be reached; exits 1 when anything\n"
	    "differs from what was expected. It probes only what it is given.\n"
	    "--wait retries each --expect-open target for up to that long (services\n"
	    "still starting); closed and no-dns checks are made once.\n");
	return 2;
}

int
audit_main(int argc, char **argv, FILE *out)
{
	struct check *checks = calloc((size_t)argc, sizeof(*checks));
	int64_t timeout_ms = 3000, wait_ms = 0, wait_until;
	const char *servers = NULL; /* NULL: /etc/resolv.conf */
	size_t n = 0, bad = 0;
	char err[256];

	if (checks == NULL)
		return 2;
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		struct check *c = &checks[n];
		if (val == NULL) {
			fprintf(stderr, "gatekeeper audit: %s needs a value\n", opt);
			free(checks);
			return usage(stderr);
		}
		i++;
		if (strcmp(opt, "--timeout") == 0) {
			if (config_parse_duration(val, &timeout_ms) == -1 || timeout_ms <= 0) {
				fprintf(stderr,
					"gatekeeper audit: invalid --timeout '%s' (like 3s)\n",
					val);
				free(checks);
				return 2;
			}
			continue;
		}
		if (strcmp(opt, "--wait") == 0) {
			if (config_parse_duration(val, &wait_ms) == -1) {
				fprintf(stderr,
					"gatekeeper audit: invalid --wait '%s' (like 30s)\n", val);
				free(checks);
				return 2;
			}
			continue;
		}
		if (strcmp(opt, "--nameservers") == 0) {
			servers = val;
			continue;
		}
		if (strcmp(opt, "--expect-open") == 0 || strcmp(opt, "--expect-closed") == 0) {
			c->kind = opt[9] == 'o' ? CHECK_OPEN : CHECK_CLOSED;
			if (net_split_hostport(val, c->host, sizeof(c->host), &c->port, err,
					       sizeof(err)) == -1 ||
			    c->host[0] == '\0' || c->port == 0) {
				fprintf(stderr, "gatekeeper audit: %s '%s': use HOST:PORT\n", opt,
					val);
				free(checks);
				return 2;
			}
		} else if (strcmp(opt, "--expect-no-dns") == 0) {
			c->kind = CHECK_NO_DNS;
			snprintf(c->host, sizeof(c->host), "%s", val);
		} else {
			fprintf(stderr, "gatekeeper audit: unknown option '%s'\n", opt);
			free(checks);
			return usage(stderr);
		}
		c->target = val;
		n++;
	}
	if (n == 0) {
		free(checks);
		return usage(stderr);
	}
	fprintf(out, "%-8s %-40s %-8s %-44s %s\n", "EXPECT", "TARGET", "FOUND", "DETAIL", "OK");
	wait_until = clock_now_ms() + wait_ms;
	for (size_t i = 0; i < n; i++) {
		struct check *c = &checks[i];
		char why[128];
		const char *found = probe(c, servers, timeout_ms, why, sizeof(why));
		int ok = strcmp(found, kind_names[c->kind]) == 0;

		/* --wait: a service still starting is not a finding. */
		while (!ok && c->kind == CHECK_OPEN && clock_now_ms() < wait_until) {
			struct timespec pause = {0, 500 * 1000 * 1000};
			nanosleep(&pause, NULL);
			found = probe(c, servers, timeout_ms, why, sizeof(why));
			ok = strcmp(found, kind_names[c->kind]) == 0;
		}
		bad += !ok;
		fprintf(out, "%-8s %-40s %-8s %-44s %s\n", kind_names[c->kind], c->target, found,
			why, ok ? "yes" : "NO");
	}
	fprintf(out, "%zu check%s, %zu as expected, %zu not\n", n, n == 1 ? "" : "s", n - bad, bad);
	free(checks);
	return bad ? 1 : 0;
}
