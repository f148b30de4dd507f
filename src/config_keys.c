/*
 * config_keys.c: the key table, the one description of every setting.
 *
 * Each YAML mapping has a table here, each setting one entry: its key, its
 * type and range, where its value lands, its default, its quick-mode
 * option and GATEKEEPER_* variable, and its help text. The YAML reader,
 * the defaults, the -T dump, quick mode, the command line's options and
 * the usage text all read these entries, so a setting added here is
 * parsed, defaulted, printed, reachable from the command line and
 * documented in --help without another list to keep in step. The order of
 * the entries is the order of the dump and of the usage text.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config_impl.h"

const char *const config_mode_names[] = {"tcp", "tls", "http", "connect", "dns", NULL};
/* In the order of enum config_refuse. */
static const char *const refuse_names[] = {"nxdomain", "refused", NULL};
const char *const config_send_names[] = {"none", "v1", "v2", NULL};
/* In the order of config_listener.report: 0 enforce, 1 report. */
static const char *const action_names[] = {"enforce", "report", NULL};
/* In the order of enum relay_splice. */
const char *const config_splice_names[] = {"auto", "on", "off", NULL};
/* In the order of enum log_level and enum log_format. */
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_names[] = {"logfmt", "json", NULL};

#define CFG(f) offsetof(struct config, f)
#define LST(f) offsetof(struct config_listener, f)
#define RTE(f) offsetof(struct config_route, f)
#define OPT(f, e, a)                                                                               \
	{                                                                                          \
		.flag = (f), .env = (e), .arg = (a)                                                \
	}
#define END                                                                                        \
	{                                                                                          \
		.name = NULL                                                                       \
	}

static const struct key log_keys[] = {
    {.name = "level",
     .type = K_ENUM,
     .off = CFG(log.level),
     .choices = level_names,
     .def = "info",
     .opt = OPT("log-level", "GATEKEEPER_LOG_LEVEL", "LEVEL"),
     .help = "debug, info, warn or error"},
    {.name = "format",
     .type = K_ENUM,
     .off = CFG(log.format),
     .choices = format_names,
     .def = "logfmt",
     .opt = OPT("log-format", "GATEKEEPER_LOG_FORMAT", NULL),
     .help = "logfmt, or json lines"},
    END,
};

static const struct key admin_keys[] = {
    {.name = "listen",
     .type = K_LISTEN,
     .off = CFG(admin_listen),
     .flags = KF_OMIT_UNSET,
     .opt = OPT("admin", "GATEKEEPER_ADMIN", "ADDR:PORT"),
     .help = "the admin endpoint (default: off)"},
    {.name = "observed_max",
     .type = K_COUNT,
     .off = CFG(observed_max),
     .min = 0,
     .max = 10000000,
     .def = "4096",
     .opt = OPT("observed-max", "GATEKEEPER_OBSERVED_MAX", "N"),
     .help = "entries of the table of what report mode let through (/observed)"},
    END,
};

static const struct key resolver_keys[] = {
    {.name = "nameservers",
     .type = K_ADDRLIST,
     .off = CFG(resolver.nameservers),
     .opt = OPT("nameservers", "GATEKEEPER_NAMESERVERS", "IP[:PORT],.."),
     .help = "DNS servers (default: /etc/resolv.conf)"},
    {.name = "refresh",
     .type = K_DURATION,
     .off = CFG(resolver.refresh),
     .min = 1000,
     .max = DURATION_MAX,
     .def = "30s",
     .opt = OPT("refresh", "GATEKEEPER_REFRESH", "DURATION"),
     .help = "the longest a DNS answer is used"},
    {.name = "min_ttl",
     .type = K_DURATION,
     .off = CFG(resolver.min_ttl),
     .min = 0,
     .max = DURATION_MAX,
     .def = "1s",
     .opt = OPT("min-ttl", "GATEKEEPER_MIN_TTL", "DURATION"),
     .help = "the shortest a DNS answer is used"},
    {.name = "timeout",
     .type = K_DURATION,
     .off = CFG(resolver.timeout),
     .min = 10,
     .max = 60000,
     .def = "2s",
     .help = "one DNS query attempt"},
    END,
};

const struct key config_defaults_keys[] = {
    {.name = "splice",
     .type = K_ENUM,
     .off = CFG(defaults.splice),
     .choices = config_splice_names,
     .def = "auto",
     .help = "zero-copy relaying: auto (after 256 KiB), on, off"},
    {.name = "sniff_timeout",
     .type = K_DURATION,
     .off = CFG(defaults.sniff_timeout),
     .min = 1,
     .max = DURATION_MAX,
     .def = "5s",
     .help = "tls/http/connect and PROXY headers: the client's first bytes must come "
	     "within it"},
    {.name = "connect_timeout",
     .type = K_DURATION,
     .off = CFG(defaults.connect_timeout),
     .min = 1,
     .max = DURATION_MAX,
     .def = "5s",
     .help = "the whole connect phase, shared by the upstream's addresses"},
    {.name = "idle_timeout",
     .type = K_DURATION,
     .off = CFG(defaults.idle_timeout),
     .min = 0,
     .max = DURATION_MAX,
     .def = "5m",
     .help = "close when no byte moved either way; 0 = never"},
    {.name = "max_connections",
     .type = K_COUNT,
     .off = CFG(defaults.max_connections),
     .min = 0,
     .max = 10000000,
     .def = "4096",
     .help = "sessions per listener; 0 = no limit"},
    {.name = "drain_timeout",
     .type = K_DURATION,
     .off = CFG(defaults.drain_timeout),
     .min = 0,
     .max = DURATION_MAX,
     .def = "8s",
     .opt = OPT("drain-timeout", "GATEKEEPER_DRAIN_TIMEOUT", "DURATION"),
     .help = "SIGTERM: time for sessions to finish"},
    END,
};

static const struct key proxy_keys[] = {
    {.name = "accept",
     .type = K_BOOL,
     .off = LST(proxy.accept),
     .def = "false",
     .help = "read a PROXY v1/v2 header from clients"},
    {.name = "trusted",
     .type = K_CIDRLIST,
     .off = LST(proxy.trusted),
     .n_off = LST(proxy.n_trusted),
     .help = "address blocks that must send a PROXY header; empty: every source"},
    {.name = "send",
     .type = K_ENUM,
     .off = LST(proxy.send),
     .choices = config_send_names,
     .def = "none",
     .help = "write a PROXY header to the upstream: none, v1 or v2"},
    END,
};

static const struct key http_keys[] = {
    {.name = "trusted",
     .type = K_CIDRLIST,
     .off = LST(http.trusted),
     .n_off = LST(http.n_trusted),
     .help = "peers whose forwarding headers are kept and appended to"},
    {.name = "x_forwarded_for",
     .type = K_BOOL,
     .off = LST(http.x_forwarded_for),
     .def = "true",
     .help = "send X-Forwarded-For"},
    {.name = "x_forwarded_proto",
     .type = K_BOOL,
     .off = LST(http.x_forwarded_proto),
     .def = "true",
     .help = "send X-Forwarded-Proto"},
    {.name = "x_forwarded_host",
     .type = K_BOOL,
     .off = LST(http.x_forwarded_host),
     .def = "true",
     .help = "send X-Forwarded-Host"},
    {.name = "x_real_ip",
     .type = K_BOOL,
     .off = LST(http.x_real_ip),
     .def = "true",
     .help = "send X-Real-IP"},
    {.name = "forwarded",
     .type = K_BOOL,
     .off = LST(http.forwarded),
     .def = "false",
     .help = "send RFC 7239 Forwarded"},
    {.name = "max_header_size",
     .type = K_SIZE,
     .off = LST(http.max_header_size),
     .min = 1024,
     .max = 65536,
     .def = "16k",
     .help = "a longer request head gets 431"},
    {.name = "header_timeout",
     .type = K_DURATION,
     .off = LST(http.header_timeout),
     .min = 1,
     .max = DURATION_MAX,
     .def = "10s",
     .help = "a request head must be complete within it, else 408"},
    {.name = "keepalive_timeout",
     .type = K_DURATION,
     .off = LST(http.keepalive_timeout),
     .min = 1,
     .max = DURATION_MAX,
     .def = "75s",
     .help = "an idle keep-alive connection closes after it"},
    {.name = "max_requests_per_connection",
     .type = K_COUNT,
     .off = LST(http.max_requests),
     .min = 0,
     .max = 1000000000,
     .def = "1000",
     .help = "requests per connection; 0 = no limit"},
    END,
};

static const struct key route_proxy_keys[] = {
    {.name = "send",
     .type = K_ENUM,
     .off = RTE(send),
     .choices = config_send_names,
     .flags = KF_INHERIT | KF_OMIT_UNSET,
     .help = "this route's PROXY header (none, v1, v2); default: the listener's"},
    END,
};

const struct key config_route_keys[] = {
    {.name = "match",
     .type = K_PATTERNS,
     .off = RTE(match),
     .help = "name patterns: name, *.suffix or *; a list or one string"},
    {.name = "upstream",
     .type = K_UPSTREAM,
     .off = RTE(upstream),
     .help = "HOST:PORT or $host:PORT for matching names"},
    {.name = "sources",
     .type = K_SOURCES,
     .off = RTE(sources),
     .flags = KF_OMIT_UNSET,
     .help = "the route applies to these clients only: names, addresses, blocks"},
    {.name = "proxy_protocol",
     .type = K_SECTION,
     .sub = route_proxy_keys,
     .help = "PROXY protocol settings of this route"},
    END,
};

#define ALW(f) offsetof(struct config_allow, f)

/* The mapping form of an allow entry: {match: ENTRY, sources: [...]}. */
const struct key config_allow_keys[] = {
    {.name = "match",
     .type = K_ALLOW_MATCH,
     .off = 0,
     .help = "a name, *.suffix, an address or a block, optionally with :PORT"},
    {.name = "sources",
     .type = K_SOURCES,
     .off = ALW(sources),
     .flags = KF_OMIT_UNSET,
     .help = "the entry applies to these clients only"},
    END,
};

const struct key config_listener_keys[] = {
    {.name = "name",
     .type = K_STRING,
     .off = LST(name),
     .quick_def = "default",
     .opt = OPT("name", "GATEKEEPER_NAME", "NAME"),
     .help = "the listener's name in log lines"},
    {.name = "listen",
     .type = K_LISTEN,
     .off = LST(listen),
     .opt = OPT("listen", "GATEKEEPER_LISTEN", "ADDR:PORT"),
     .help = "IP:PORT, [IPv6]:PORT or :PORT (required)"},
    {.name = "mode",
     .type = K_ENUM,
     .off = LST(mode),
     .choices = config_mode_names,
     .def = "tcp",
     .opt = OPT("mode", "GATEKEEPER_MODE", "MODE"),
     .help = "tcp, tls, http, connect or dns"},
    {.name = "upstream",
     .type = K_UPSTREAM,
     .off = LST(upstream),
     .flags = KF_OMIT_UNSET,
     .opt = OPT("upstream", "GATEKEEPER_UPSTREAM", "HOST:PORT"),
     .help = "HOST:PORT to relay to; $host:PORT: the name asked"},
    {.name = "routes",
     .type = K_ROUTES,
     .sub = config_route_keys,
     .flags = KF_OMIT_UNSET,
     .help = "tls/http: upstreams by name"},
    {.name = "proxy_protocol",
     .type = K_SECTION,
     .sub = proxy_keys,
     .help = "PROXY protocol from clients and to upstreams"},
    {.name = "sources",
     .type = K_SOURCES,
     .off = LST(sources),
     .flags = KF_OMIT_UNSET,
     .opt = OPT("sources", "GATEKEEPER_SOURCES", "NAME|CIDR,.."),
     .help = "TCP peers that may connect: names, addresses, blocks (default: anyone)"},
    {.name = "client_sources",
     .type = K_SOURCES,
     .off = LST(client_sources),
     .flags = KF_OMIT_UNSET,
     .opt = OPT("client-sources", "GATEKEEPER_CLIENT_SOURCES", "NAME|CIDR,.."),
     .help = "clients that may connect: a PROXY header's address, else the peer"},
    {.name = "action",
     .type = K_ENUM,
     .off = LST(report),
     .choices = action_names,
     .def = "enforce",
     .opt = OPT("action", "GATEKEEPER_ACTION", "enforce|report"),
     .help = "report: allowlist and sources refusals pass, and are noted (/observed)"},
    {.name = "allow",
     .type = K_ALLOWLIST,
     .off = LST(allow),
     .n_off = LST(n_allow),
     .flags = KF_OMIT_UNSET | KF_CONNECT_ALL,
     .opt = OPT("allow", "GATEKEEPER_ALLOW", "NAME,.."),
     .help = "egress allowlist: names, *.suffix, addresses"},
    {.name = "port",
     .type = K_COUNT,
     .off = LST(port),
     .min = 1,
     .max = 65535,
     .flags = KF_OMIT_UNSET,
     /* Passive: Kubernetes and Docker links set NAME_PORT for a service. */
     .opt = {.flag = "port", .env = "GATEKEEPER_PORT", .arg = "PORT", .passive = 1},
     .help = "tls/http: port of allowed names (default: listen)"},
    {.name = "egress",
     .type = K_BOOL,
     .off = LST(egress),
     .def = "false",
     .opt = OPT("egress", "GATEKEEPER_EGRESS", "true|false"),
     .help = "guard the upstream's addresses"},
    {.name = "allow_ranges",
     .type = K_CIDRLIST,
     .off = LST(allow_ranges),
     .n_off = LST(n_allow_ranges),
     .opt = OPT("allow-ranges", "GATEKEEPER_ALLOW_RANGES", "CIDR,.."),
     .help = "blocks the egress guard lets through"},
    {.name = "deny_ranges",
     .type = K_CIDRLIST,
     .off = LST(deny_ranges),
     .n_off = LST(n_deny_ranges),
     .opt = OPT("deny-ranges", "GATEKEEPER_DENY_RANGES", "CIDR,.."),
     .help = "blocks the egress guard always refuses"},
    {.name = "proxy_auth",
     .type = K_CREDENTIALS,
     .off = LST(proxy_auth),
     .flags = KF_OMIT_UNSET,
     .opt = OPT("proxy-auth", "GATEKEEPER_PROXY_AUTH", "USER:PASS,.."),
     .help = "connect: Basic proxy credentials"},
    {.name = "splice",
     .type = K_ENUM,
     .off = LST(splice),
     .choices = config_splice_names,
     .flags = KF_INHERIT,
     .opt = OPT("splice", "GATEKEEPER_SPLICE", NULL),
     .help = "zero-copy relaying"},
    {.name = "sniff_timeout",
     .type = K_DURATION,
     .off = LST(sniff_timeout),
     .min = 1,
     .max = DURATION_MAX,
     .flags = KF_INHERIT,
     .opt = OPT("sniff-timeout", "GATEKEEPER_SNIFF_TIMEOUT", "DURATION"),
     .help = "first client bytes due within it"},
    {.name = "connect_timeout",
     .type = K_DURATION,
     .off = LST(connect_timeout),
     .min = 1,
     .max = DURATION_MAX,
     .flags = KF_INHERIT,
     .opt = OPT("connect-timeout", "GATEKEEPER_CONNECT_TIMEOUT", "DURATION"),
     .help = "the whole connect phase"},
    {.name = "idle_timeout",
     .type = K_DURATION,
     .off = LST(idle_timeout),
     .min = 0,
     .max = DURATION_MAX,
     .flags = KF_INHERIT,
     .opt = OPT("idle-timeout", "GATEKEEPER_IDLE_TIMEOUT", "DURATION"),
     .help = "close when idle; 0 = never"},
    {.name = "max_connections",
     .type = K_COUNT,
     .off = LST(max_connections),
     .min = 0,
     .max = 10000000,
     .flags = KF_INHERIT,
     .opt = OPT("max-connections", "GATEKEEPER_MAX_CONNECTIONS", "N"),
     .help = "sessions at once; 0 = no limit"},
    {.name = "max_connections_per_source",
     .type = K_COUNT,
     .off = LST(max_connections_per_source),
     .min = 0,
     .max = 10000000,
     .def = "0",
     .flags = KF_OMIT_UNSET,
     .opt = OPT("max-connections-per-source", "GATEKEEPER_MAX_CONNECTIONS_PER_SOURCE", "N"),
     .help = "sessions at once from one client address, all workers; 0 = no limit"},
    {.name = "answer",
     .type = K_CIDRLIST,
     .off = LST(answer),
     .n_off = LST(n_answer),
     .flags = KF_MODE_DNS,
     .opt = OPT("answer", "GATEKEEPER_ANSWER", "IP,.."),
     .help = "dns: addresses given for allowed names; empty: the one the query came to"},
    {.name = "ttl",
     .type = K_DURATION,
     .off = LST(dns_ttl),
     .min = 0,
     .max = (int64_t)24 * 3600 * 1000,
     .def = "30s",
     .flags = KF_MODE_DNS,
     .opt = OPT("ttl", "GATEKEEPER_TTL", "DURATION"),
     .help = "dns: the TTL of the answers"},
    {.name = "refuse",
     .type = K_ENUM,
     .off = LST(refuse),
     .choices = refuse_names,
     .def = "nxdomain",
     .flags = KF_MODE_DNS,
     .opt = OPT("refuse", "GATEKEEPER_REFUSE", "nxdomain|refused"),
     .help = "dns: the answer for a name not allowed"},
    {.name = "max_queries_per_source",
     .type = K_COUNT,
     .off = LST(max_queries_per_source),
     .min = 0,
     .max = 10000000,
     .def = "200",
     .flags = KF_MODE_DNS,
     .opt = OPT("max-queries-per-source", "GATEKEEPER_MAX_QUERIES_PER_SOURCE", "N"),
     .help = "dns: queries a second from one address; more are dropped; 0 = no limit"},
    {.name = "http",
     .type = K_SECTION,
     .sub = http_keys,
     .flags = KF_MODE_HTTP,
     .help = "mode http: the reverse proxy's settings"},
    END,
};

const struct key config_top_keys[] = {
    {.name = "workers",
     .type = K_WORKERS,
     .off = CFG(workers),
     .min = 1,
     .max = 256,
     .def = "1",
     .opt = OPT("workers", "GATEKEEPER_WORKERS", "auto|N"),
     .help = "event loops; auto: one per CPU"},
    {.name = "user",
     .type = K_STRING,
     .off = CFG(user),
     .flags = KF_OMIT_UNSET,
     .opt = OPT("user", "GATEKEEPER_USER", "NAME|UID"),
     .help = "started as root: switch to it once bound"},
    {.name = "group",
     .type = K_STRING,
     .off = CFG(group),
     .flags = KF_OMIT_UNSET,
     .opt = OPT("group", "GATEKEEPER_GROUP", "NAME|GID"),
     .help = "and to this group (default: the user's)"},
    {.name = "allow_root",
     .type = K_BOOL,
     .off = CFG(allow_root),
     .def = "false",
     .flags = KF_OMIT_UNSET,
     .opt = OPT("allow-root", "GATEKEEPER_ALLOW_ROOT", "true|false"),
     .help = "may run as root without --user"},
    {.name = "log", .type = K_SECTION, .sub = log_keys, .help = "log lines on stderr"},
    {.name = "resolver", .type = K_SECTION, .sub = resolver_keys, .help = "DNS"},
    {.name = "defaults",
     .type = K_SECTION,
     .sub = config_defaults_keys,
     .help = "what listeners inherit"},
    {.name = "admin", .type = K_SECTION, .sub = admin_keys, .help = "the admin endpoint"},
    {.name = "listeners",
     .type = K_LISTENERS,
     .sub = config_listener_keys,
     .help = "what gatekeeper listens on"},
    END,
};

/* A mapping's 'seen' set has one bit per entry of its table. */
#define NKEYS(t) (sizeof(t) / sizeof((t)[0]) - 1)
_Static_assert(NKEYS(config_top_keys) <= 32, "too many top-level keys for 'seen'");
_Static_assert(NKEYS(config_listener_keys) <= 32, "too many listener keys for 'seen'");
_Static_assert(NKEYS(config_route_keys) <= 32, "too many route keys for 'seen'");

const struct key *
key_find(const struct key *table, const char *name)
{
	for (const struct key *k = table; k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

unsigned
key_bit(const struct key *table, const char *name)
{
	const struct key *k = key_find(table, name);

	return k != NULL ? 1u << (k - table) : 0;
}

int
key_is_list(const struct key *k)
{
	return k->type == K_ADDRLIST || k->type == K_CIDRLIST || k->type == K_PATTERNS ||
	       k->type == K_ALLOWLIST || k->type == K_CREDENTIALS || k->type == K_SOURCES;
}

/* ---- did you mean ---- */

static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof(size_t));
	}
	return prev[lb];
}

/*
 * closest returns the candidate nearest to name, or NULL if none is close.
 * sep is the word separator of the candidates ('_' for keys, '-' for
 * options): the other one, and case slips, count as no difference.
 */
static const char *
closest(const char *const *cands, size_t n, const char *name, char sep)
{
	const char *best = NULL;
	size_t best_d = 99, limit = strlen(name) <= 4 ? 1 : strlen(name) <= 8 ? 2 : 3;
	char norm[64];
	size_t i;

	for (i = 0; name[i] && i < sizeof(norm) - 1; i++)
		norm[i] =
		    name[i] == '-' || name[i] == '_' ? sep : (char)tolower((unsigned char)name[i]);
	norm[i] = '\0';
	for (size_t c = 0; c < n; c++) {
		size_t d = strcmp(norm, cands[c]) == 0 ? 0 : edit_distance(name, cands[c]);
		if (d < best_d) {
			best_d = d;
			best = cands[c];
		}
	}
	return best_d <= limit ? best : NULL;
}

const char *
key_closest(const struct key *table, const char *name)
{
	const char *cands[64];
	size_t n = 0;

	for (const struct key *k = table; k->name != NULL && n < 64; k++)
		cands[n++] = k->name;
	return closest(cands, n, name, '_');
}

/* ---- walking the tables ---- */

/*
 * A visitor sees each entry with its YAML path; returning nonzero stops the
 * walk, and walk_keys returns that value.
 */
typedef int (*key_visit)(const struct key *k, const char *path, void *arg);

static int
walk_keys(const struct key *table, const char *prefix, int into_listeners, key_visit fn, void *arg)
{
	char path[96];
	int rc;

	for (const struct key *k = table; k->name != NULL; k++) {
		if (k->type == K_LISTENERS && !into_listeners)
			continue;
		snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", k->name);
		if (k->type != K_SECTION && (rc = fn(k, path, arg)) != 0)
			return rc;
		if (k->sub != NULL) {
			if (k->type != K_SECTION)
				snprintf(path, sizeof(path), "%s%s%s[]", prefix,
					 prefix[0] ? "." : "", k->name);
			if ((rc = walk_keys(k->sub, path, into_listeners, fn, arg)) != 0)
				return rc;
		}
	}
	return 0;
}

/*
 * walk_options visits the quick-mode settings in the order of the usage
 * text: the listener's first, then the process-wide ones.
 */
static int
walk_options(key_visit fn, void *arg)
{
	int rc;

	if ((rc = walk_keys(config_listener_keys, "listeners[]", 1, fn, arg)) != 0)
		return rc;
	return walk_keys(config_top_keys, "", 0, fn, arg);
}

/* What nth_option and nth_key look for: the want-th entry they accept. */
struct nth {
	size_t want, seen;
	const struct key *k;
	struct config_keyinfo *info;
};

static int
nth_option(const struct key *k, const char *path, void *arg)
{
	struct nth *n = arg;

	(void)path;
	if (k->opt.flag == NULL || n->seen++ != n->want)
		return 0;
	n->k = k;
	return 1;
}

const struct config_option *
config_option(size_t i)
{
	struct nth n = {i, 0, NULL, NULL};

	return walk_options(nth_option, &n) ? &n.k->opt : NULL;
}

const char *
config_option_suggest(const char *flag)
{
	const char *cands[64];
	const struct config_option *o;
	size_t n = 0;

	for (size_t i = 0; n < 64 && (o = config_option(i)) != NULL; i++)
		cands[n++] = o->flag;
	return closest(cands, n, flag, '-');
}

/* inherit_def: "defaults.KEY" for an entry that inherits from the defaults section. */
static const char *
inherit_def(const struct key *k, char *buf, size_t len)
{
	if (!(k->flags & KF_INHERIT))
		return k->def;
	if (key_find(config_defaults_keys, k->name) == NULL)
		return NULL; /* a route's: the listener's */
	snprintf(buf, len, "defaults.%s", k->name);
	return buf;
}

static int
usage_line(const struct key *k, const char *path, void *arg)
{
	FILE *out = arg;
	char left[64], arg_buf[48];
	const char *a = k->opt.arg, *def = k->quick_def ? k->quick_def : k->def;
	const struct key *d;

	(void)path;
	if (k->opt.flag == NULL)
		return 0;
	if (a == NULL && k->choices != NULL) {
		size_t n = 0;
		for (size_t i = 0; k->choices[i] != NULL; i++)
			n += (size_t)snprintf(arg_buf + n,
					      n < sizeof(arg_buf) ? sizeof(arg_buf) - n : 0, "%s%s",
					      i ? "|" : "", k->choices[i]);
		a = arg_buf;
	}
	if ((k->flags & KF_INHERIT) && (d = key_find(config_defaults_keys, k->name)) != NULL)
		def = d->def;
	snprintf(left, sizeof(left), "--%s %s", k->opt.flag, a ? a : "VALUE");
	fprintf(out, "  %-26s %s", left, k->help);
	if (def != NULL)
		fprintf(out, " (default: %s)", def);
	fputc('\n', out);
	return 0;
}

void
config_usage(FILE *out)
{
	walk_options(usage_line, out);
}

static int
nth_key(const struct key *k, const char *path, void *arg)
{
	struct nth *n = arg;

	if (n->seen++ != n->want)
		return 0;
	snprintf(n->info->path, sizeof(n->info->path), "%s", path);
	n->info->name = k->name;
	n->info->def = inherit_def(k, n->info->def_buf, sizeof(n->info->def_buf));
	n->info->help = k->help;
	n->info->opt = k->opt.flag != NULL ? &k->opt : NULL;
	return 1;
}

int
config_key_info(size_t i, struct config_keyinfo *info)
{
	struct nth n = {i, 0, NULL, info};

	return walk_keys(config_top_keys, "", 1, nth_key, &n) ? 0 : -1;
}
