/*
 * audit.c: `gatekeeper audit --expect-open|--expect-closed HOST:PORT
 * --expect-no-dns NAME --expect-dns NAME=ADDR[,ADDR] --docker ...`, the
 * isolation check a user runs inside a jailed container (and in CI) instead
 * of trying `ping` by hand.
 *
 * Each check is independent and bounded by --timeout: a name is resolved
 * with c-ares (the proxy's own resolver library, so a scratch image needs
 * no NSS), then each address is tried with a non-blocking connect until one
 * answers. --docker adds the checks for what a Docker network is known to
 * leak, from the container's own view: its routing tables (/proc/net/route
 * and /proc/net/ipv6_route, which show the reader's network namespace) give
 * the default gateway, whose well-known ports must be closed, and an IPv6
 * default route must not exist; an external canary name must not resolve.
 * The table says what was found; the exit status says whether it matched:
 * 0 all as expected, 1 something differs, 2 bad arguments.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <net/route.h>
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
/* --docker: the gateway ports (ssh, http, https, the Docker API plain and TLS) */
static const uint16_t docker_ports[] = {22, 80, 443, 2375, 2376};
#define DOCKER_PORTS	(sizeof(docker_ports) / sizeof(docker_ports[0]))
#define DOCKER_GATEWAYS 4 /* default routes looked at, each a gateway */
#define DOCKER_ROWS	(DOCKER_GATEWAYS * DOCKER_PORTS + 2)
#define DOCKER_CANARY	"example.com"
#define ROUTE_FILE_MAX	(256 * 1024)

/* CHECK_FIXED: a row decided before the table is printed (the route checks). */
enum check_kind { CHECK_OPEN, CHECK_CLOSED, CHECK_NO_DNS, CHECK_DNS, CHECK_FIXED };

struct check {
	enum check_kind kind;
	const char *target; /* as given, or label */
	char label[NET_ADDRSTRLEN + 8];
	char host[NET_HOSTMAX + 1];
	uint16_t port;
	const char *note; /* said before the detail ("gateway") */
	/* CHECK_DNS: the set of addresses the name must resolve to */
	struct sockaddr_storage want[AUDIT_MAX_ADDRS];
	size_t nwant;
	/* CHECK_FIXED */
	const char *expect, *found;
	char why[128];
	int ok;
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

static const char *const kind_names[] = {"open", "closed", "no-dns", "dns", "fixed"};

static int
in_set(const struct sockaddr_storage *set, size_t n, const struct sockaddr *sa)
{
	for (size_t i = 0; i < n; i++)
		if (net_sockaddr_equal((const struct sockaddr *)&set[i], sa))
			return 1;
	return 0;
}

/* same_set: the resolved addresses (duplicates aside) are exactly the wanted ones. */
static int
same_set(const struct check *c, const struct lookup *l)
{
	size_t distinct = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&l->addr[i];
		if (!in_set(c->want, c->nwant, sa))
			return 0;
		distinct += !in_set(l->addr, i, sa);
	}
	return distinct == c->nwant;
}

/* format_set writes "a, b, c" (the resolved addresses, duplicates once). */
static void
format_set(const struct lookup *l, char *buf, size_t len)
{
	size_t w = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < l->n && w < len; i++) {
		char a[NET_ADDRSTRLEN];
		if (in_set(l->addr, i, (const struct sockaddr *)&l->addr[i]))
			continue;
		net_addr_format((const struct sockaddr *)&l->addr[i], a, sizeof(a));
		w += (size_t)snprintf(buf + w, len - w, "%s%s", w ? ", " : "", a);
	}
	if (l->n == AUDIT_MAX_ADDRS && w < len)
		snprintf(buf + w, len - w, ", ...");
}

/* probe makes one check once, within timeout_ms; returns what it found
 * ("open", "closed", "no-dns", "resolved", "dns" or "other") and the
 * detail in why. */
static const char *
probe(const struct check *c, const char *servers, int64_t timeout_ms, char *why, size_t whylen)
{
	int64_t deadline = clock_now_ms() + timeout_ms;
	char addr[NET_ADDRSTRLEN] = "";
	struct lookup l;

	why[0] = '\0';
	if (resolve(c->host, c->port, servers, deadline, &l, why, whylen) == -1)
		return c->kind == CHECK_NO_DNS || c->kind == CHECK_DNS ? "no-dns" : "closed";
	if (c->kind == CHECK_NO_DNS) {
		net_addr_format((struct sockaddr *)&l.addr[0], why, whylen);
		return "resolved";
	}
	if (c->kind == CHECK_DNS) {
		format_set(&l, why, whylen);
		return same_set(c, &l) ? "dns" : "other";
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

/* hex_bytes reads 2 * n hex digits at p into out[0..n) (the order they are written in). */
static int
hex_bytes(const char *p, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;
		for (int j = 0; j < 2; j++) {
			char ch = *p++;
			v <<= 4;
			if (ch >= '0' && ch <= '9')
				v |= (unsigned)(ch - '0');
			else if (ch >= 'a' && ch <= 'f')
				v |= (unsigned)(ch - 'a' + 10);
			else if (ch >= 'A' && ch <= 'F')
				v |= (unsigned)(ch - 'A' + 10);
			else
				return -1;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

/*
 * route_line reads one line of /proc/net/route or /proc/net/ipv6_route;
 * returns 1 and fills r when it is a usable default route, 0 otherwise.
 *
 * /proc/net/route: "Iface Destination Gateway Flags RefCnt Use Metric Mask
 * MTU Window IRTT", the addresses as 8 hex digits of the __be32 printed as
 * a host integer (so its bytes, read as a number here, are that address).
 * /proc/net/ipv6_route: "dest dest_plen src src_plen next_hop metric
 * refcnt use flags iface", addresses as 32 hex digits in network order.
 */
static int
route_line(int family, const char *line, struct audit_route *r)
{
	char dev[32], dst[33], plen[3], src[33], splen[3], hop[33];
	unsigned dst4, gw4, flags, mask4, metric, refcnt, use;
	uint8_t raw[16];
	static const uint8_t zero[16];

	memset(r, 0, sizeof(*r));
	if (family == AF_INET) {
		if (sscanf(line, "%31s %x %x %x %u %u %u %x", dev, &dst4, &gw4, &flags, &refcnt,
			   &use, &metric, &mask4) != 8)
			return 0; /* the header, or not a route */
		if (dst4 != 0 || mask4 != 0 || !(flags & RTF_UP) || (flags & RTF_REJECT))
			return 0;
		r->has_via = (flags & RTF_GATEWAY) && gw4 != 0;
		memcpy(r->via, &gw4, 4); /* host integer holding the __be32: its bytes */
		snprintf(r->dev, sizeof(r->dev), "%s", dev);
		return 1;
	}
	if (sscanf(line, "%32s %2s %32s %2s %32s %x %x %x %x %31s", dst, plen, src, splen, hop,
		   &metric, &refcnt, &use, &flags, dev) != 10)
		return 0;
	if (strlen(dst) != 32 || strlen(hop) != 32 || hex_bytes(dst, raw, 16) == -1 ||
	    memcmp(raw, zero, 16) != 0 || strcmp(plen, "00") != 0)
		return 0;
	if (!(flags & RTF_UP) || (flags & RTF_REJECT) || hex_bytes(hop, r->via, 16) == -1)
		return 0;
	r->has_via = memcmp(r->via, zero, 16) != 0;
	snprintf(r->dev, sizeof(r->dev), "%s", dev);
	return 1;
}

size_t
audit_default_routes(int family, const char *text, struct audit_route *out, size_t max)
{
	size_t n = 0;

	while (text != NULL && *text != '\0' && n < max) {
		const char *end = strchr(text, '\n');
		size_t len = end ? (size_t)(end - text) : strlen(text);
		char line[512];

		if (len < sizeof(line)) {
			memcpy(line, text, len);
			line[len] = '\0';
			n += (size_t)route_line(family, line, &out[n]);
		}
		text = end ? end + 1 : text + len;
	}
	return n;
}

int
audit_parse_expect_dns(const char *spec, char *name, size_t namelen, struct sockaddr_storage *addrs,
		       size_t max, size_t *n, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '='), *p;
	struct sockaddr_storage ss;
	socklen_t sl;

	*n = 0;
	if (eq == NULL || eq == spec) {
		snprintf(err, errlen, "%s", eq ? "no name before '='" : "no '=' in it");
		return -1;
	}
	if ((size_t)(eq - spec) >= namelen || (size_t)(eq - spec) > NET_HOSTMAX) {
		snprintf(err, errlen, "name too long");
		return -1;
	}
	memcpy(name, spec, (size_t)(eq - spec));
	name[eq - spec] = '\0';
	if (net_parse_ip(name, 0, &ss, &sl) == 0 || !net_valid_hostname(name)) {
		snprintf(err, errlen, "'%s' is not a host name", name);
		return -1;
	}
	for (p = eq + 1;; p++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char a[NET_ADDRSTRLEN];

		if (len >= 2 && p[0] == '[' && p[len - 1] == ']') {
			p++;
			len -= 2;
		}
		if (len == 0 || len >= sizeof(a)) {
			snprintf(err, errlen, "%s", len ? "address too long" : "empty address");
			return -1;
		}
		memcpy(a, p, len);
		a[len] = '\0';
		if (net_parse_ip(a, 0, &ss, &sl) == -1) {
			snprintf(err, errlen, "'%s' is not an IP address", a);
			return -1;
		}
		if (!in_set(addrs, *n, (struct sockaddr *)&ss)) {
			if (*n == max) {
				snprintf(err, errlen, "more than %zu addresses", max);
				return -1;
			}
			addrs[(*n)++] = ss;
		}
		if (comma == NULL)
			return 0;
		p = comma; /* the loop steps over the comma */
	}
}

/* read_text reads a whole (small) file into a malloc'd string; NULL with errno set. */
static char *
read_text(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n = 0, got;

	if (f == NULL)
		return NULL;
	if ((buf = malloc(ROUTE_FILE_MAX + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	while (n < ROUTE_FILE_MAX && (got = fread(buf + n, 1, ROUTE_FILE_MAX - n, f)) > 0)
		n += got;
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static struct check *
fixed_row(struct check *c, const char *expect, const char *target, const char *found, int ok)
{
	c->kind = CHECK_FIXED;
	c->expect = expect;
	snprintf(c->label, sizeof(c->label), "%s", target);
	c->target = c->label;
	c->found = found;
	c->ok = ok;
	return c;
}

/*
 * docker_rows appends the --docker checks at checks[n] and returns how many
 * (at most DOCKER_ROWS): the default gateway's ports, the canary, the IPv6
 * default route.
 */
static size_t
docker_rows(struct check *checks, const char *canary)
{
	struct audit_route r[DOCKER_GATEWAYS];
	struct in_addr gw[DOCKER_GATEWAYS];
	size_t n = 0, nr, ngw = 0;
	char *text;

	/* (a) the IPv4 default gateway: the host, on a Docker bridge */
	if ((text = read_text("/proc/net/route")) == NULL) {
		struct check *c = fixed_row(&checks[n++], "closed", "gateway", "unknown", 0);
		snprintf(c->why, sizeof(c->why), "/proc/net/route: %s", strerror(errno));
	} else {
		nr = audit_default_routes(AF_INET, text, r, DOCKER_GATEWAYS);
		free(text);
		for (size_t i = 0; i < nr; i++) {
			struct in_addr a;
			int seen = 0;
			if (!r[i].has_via)
				continue;
			memcpy(&a, r[i].via, 4);
			for (size_t j = 0; j < ngw; j++)
				seen |= gw[j].s_addr == a.s_addr;
			if (!seen)
				gw[ngw++] = a;
		}
		if (nr == 0) {
			struct check *c =
			    fixed_row(&checks[n++], "closed", "gateway", "no-route", 1);
			snprintf(c->why, sizeof(c->why), "no IPv4 default route");
		} else if (ngw == 0) {
			struct check *c =
			    fixed_row(&checks[n++], "closed", "gateway", "no-gateway", 1);
			snprintf(c->why, sizeof(c->why), "default route on %s has no gateway",
				 r[0].dev);
		}
		for (size_t i = 0; i < ngw; i++) {
			for (size_t p = 0; p < DOCKER_PORTS; p++) {
				struct check *c = &checks[n++];
				c->kind = CHECK_CLOSED;
				inet_ntop(AF_INET, &gw[i], c->host, sizeof(c->host));
				c->port = docker_ports[p];
				snprintf(c->label, sizeof(c->label), "%s:%u", c->host,
					 (unsigned)c->port);
				c->target = c->label;
				c->note = "gateway";
			}
		}
	}
	/* (b) an external name must not resolve through the container's resolver */
	checks[n].kind = CHECK_NO_DNS;
	snprintf(checks[n].host, sizeof(checks[n].host), "%s", canary);
	checks[n].target = canary;
	checks[n++].note = "canary";
	/* (c) no IPv6 default route: a route out that the IPv4 rules do not cover */
	if ((text = read_text("/proc/net/ipv6_route")) == NULL) {
		int none = errno == ENOENT; /* a kernel without IPv6 */
		struct check *c = fixed_row(&checks[n++], "no-route", "ipv6-default-route",
					    none ? "no-route" : "unknown", none);
		snprintf(c->why, sizeof(c->why), "%s",
			 none ? "no IPv6 routing table" : strerror(errno));
	} else {
		nr = audit_default_routes(AF_INET6, text, r, 1);
		free(text);
		struct check *c = fixed_row(&checks[n++], "no-route", "ipv6-default-route",
					    nr ? "route" : "no-route", nr == 0);
		if (nr && r[0].has_via) {
			char a[INET6_ADDRSTRLEN];
			inet_ntop(AF_INET6, r[0].via, a, sizeof(a));
			snprintf(c->why, sizeof(c->why), "default via %s dev %s", a, r[0].dev);
		} else if (nr) {
			snprintf(c->why, sizeof(c->why), "default dev %s", r[0].dev);
		} else {
			snprintf(c->why, sizeof(c->why), "no IPv6 default route");
		}
	}
	return n;
}

static int
usage(FILE *err)
{
	fprintf(
	    err,
	    "usage: gatekeeper audit [--timeout 3s] [--wait 30s] [--nameservers IP[:PORT],...]\n"
	    "                        [--expect-open HOST:PORT]...\n"
	    "                        [--expect-closed HOST:PORT]... [--expect-no-dns NAME]...\n"
	    "                        [--expect-dns NAME=ADDRESS[,ADDRESS...]]...\n"
	    "                        [--docker [--canary NAME]]\n"
	    "Checks, from where it runs, what can be reached; exits 1 when anything\n"
	    "differs from what was expected. It probes only what it is given.\n"
	    "--expect-dns: the name resolves to exactly that set of addresses.\n"
	    "--docker adds: the default gateway closed on ports 22, 80, 443, 2375\n"
	    "and 2376; the canary name (example.com) not resolvable; no IPv6\n"
	    "default route.\n"
	    "--wait retries each --expect-open target for up to that long (services\n"
	    "still starting); closed and no-dns checks are made once.\n");
	return 2;
}

int
audit_main(int argc, char **argv, FILE *out)
{
	struct check *checks = calloc((size_t)argc + DOCKER_ROWS, sizeof(*checks));
	int64_t timeout_ms = 3000, wait_ms = 0, wait_until;
	const char *servers = NULL; /* NULL: /etc/resolv.conf */
	const char *canary = NULL;
	size_t n = 0, bad = 0;
	int docker = 0;
	char err[256];

	if (checks == NULL)
		return 2;
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		struct check *c = &checks[n];
		if (strcmp(opt, "--docker") == 0) {
			docker = 1;
			continue;
		}
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
		if (strcmp(opt, "--canary") == 0) {
			if (!net_valid_hostname(val)) {
				fprintf(stderr,
					"gatekeeper audit: --canary '%s': use a host name\n", val);
				free(checks);
				return 2;
			}
			canary = val;
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
		} else if (strcmp(opt, "--expect-dns") == 0) {
			c->kind = CHECK_DNS;
			if (audit_parse_expect_dns(val, c->host, sizeof(c->host), c->want,
						   AUDIT_MAX_ADDRS, &c->nwant, err,
						   sizeof(err)) == -1) {
				fprintf(stderr,
					"gatekeeper audit: --expect-dns '%s': %s (use "
					"NAME=ADDRESS[,ADDRESS...])\n",
					val, err);
				free(checks);
				return 2;
			}
		} else {
			fprintf(stderr, "gatekeeper audit: unknown option '%s'\n", opt);
			free(checks);
			return usage(stderr);
		}
		c->target = val;
		n++;
	}
	if (canary != NULL && !docker) {
		fprintf(stderr, "gatekeeper audit: --canary goes with --docker\n");
		free(checks);
		return usage(stderr);
	}
	if (docker)
		n += docker_rows(checks + n, canary ? canary : DOCKER_CANARY);
	if (n == 0) {
		free(checks);
		return usage(stderr);
	}
	fprintf(out, "%-8s %-40s %-8s %-44s %s\n", "EXPECT", "TARGET", "FOUND", "DETAIL", "OK");
	wait_until = clock_now_ms() + wait_ms;
	for (size_t i = 0; i < n; i++) {
		struct check *c = &checks[i];
		char why[512], detail[600];
		const char *found, *expect;
		int ok;

		if (c->kind == CHECK_FIXED) {
			expect = c->expect;
			found = c->found;
			ok = c->ok;
			snprintf(why, sizeof(why), "%s", c->why);
		} else {
			expect = kind_names[c->kind];
			found = probe(c, servers, timeout_ms, why, sizeof(why));
			ok = strcmp(found, expect) == 0;
		}
		/* --wait: a service still starting is not a finding. */
		while (!ok && c->kind == CHECK_OPEN && clock_now_ms() < wait_until) {
			struct timespec pause = {0, 500 * 1000 * 1000};
			nanosleep(&pause, NULL);
			found = probe(c, servers, timeout_ms, why, sizeof(why));
			ok = strcmp(found, expect) == 0;
		}
		bad += !ok;
		snprintf(detail, sizeof(detail), "%s%s%s", c->note ? c->note : "",
			 c->note ? ": " : "", why);
		fprintf(out, "%-8s %-40s %-8s %-44s %s\n", expect, c->target, found, detail,
			ok ? "yes" : "NO");
	}
	fprintf(out, "%zu check%s, %zu as expected, %zu not\n", n, n == 1 ? "" : "s", n - bad, bad);
	free(checks);
	return bad ? 1 : 0;
}
