/*
 * config.h: the configuration, as parsed and validated.
 *
 * A config is built in one go, from a YAML file (config_load) or from
 * quick-mode settings (config_quick_new + config_quick_set +
 * config_quick_finish), and is read-only afterwards. Both ways build the
 * same model and pass the same validation. Every setting, its default, its
 * quick-mode option and variable and its help are described once, by the
 * key table in config_keys.c; config_option and config_key_info read it.
 * Durations are stored in milliseconds. Errors are written to a caller
 * stream as FILE:LINE:COL: message, all of them, never only the first.
 */
#ifndef GK_CONFIG_H
#define GK_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

enum config_mode {
	CONFIG_MODE_TCP,     /* relay bytes, no sniffing */
	CONFIG_MODE_TLS,     /* route on the TLS ClientHello's SNI */
	CONFIG_MODE_HTTP,    /* route on the first request's Host */
	CONFIG_MODE_CONNECT, /* HTTP proxy: CONNECT and absolute-form requests */
	CONFIG_MODE_DNS,     /* the DNS door: allowed names answered with gatekeeper itself */
};

/* mode dns: what a name not allowed gets. */
enum config_refuse {
	CONFIG_REFUSE_NXDOMAIN,
	CONFIG_REFUSE_REFUSED,
};

/* Which PROXY protocol header, if any, is written to the upstream. */
enum config_proxy_send {
	CONFIG_PROXY_NONE,
	CONFIG_PROXY_V1,
	CONFIG_PROXY_V2,
	CONFIG_PROXY_INHERIT = -1, /* a route: use the listener's */
};

/* An address to listen on: an IP literal and a port (0 = ephemeral). */
struct policy;

struct config_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* An upstream: a DNS name or an IP literal, and a port. */
struct config_hostport {
	char *host; /* "$host" when sniffed_host is set */
	uint16_t port;
	int sniffed_host; /* "$host:PORT": the name the client asked for */
};

/* An address block, "10.0.0.0/8" or "::1/128"; a bare address is /32 or /128. */
struct config_cidr {
	struct sockaddr_storage addr;
	unsigned prefix;
};

struct config_strlist {
	char **v;
	size_t n;
};

/*
 * Who a listener or a rule admits: address blocks, and names resolved at
 * run time (a name matches the addresses it resolves to now). Both empty:
 * anyone.
 */
struct config_sources {
	struct config_cidr *blocks;
	size_t n_blocks;
	struct config_strlist names; /* lower case */
};

struct config_proxy_protocol {
	int accept;		     /* read a PROXY v1/v2 header from clients */
	struct config_cidr *trusted; /* from these sources only; none = all */
	size_t n_trusted;
	int send; /* enum config_proxy_send */
};

struct config_route {
	struct config_strlist match; /* patterns: "name", "*.suffix" or "*" */
	struct config_hostport upstream;
	int send;		       /* enum config_proxy_send, or INHERIT */
	struct config_sources sources; /* the route applies to these clients only */
	int line, col;
	unsigned seen; /* keys present in the file, one bit per key */
};

/*
 * One allowlist entry: a name pattern (as in routes), or an address block
 * (an IP literal is a /32 or /128 block), with an optional port.
 */
struct config_allow {
	char *pattern;		       /* NULL for an address block */
	struct config_cidr cidr;       /* when pattern is NULL */
	uint16_t port;		       /* 0: the mode's default */
	struct config_sources sources; /* the entry applies to these clients only */
	int line, col;		       /* where it was defined (the mapping form) */
};

/* mode: http, the reverse-proxy settings of one listener. */
struct config_http {
	struct config_cidr *trusted; /* peers whose forwarding headers are kept */
	size_t n_trusted;
	int x_forwarded_for, x_forwarded_proto, x_forwarded_host, x_real_ip, forwarded;
	int64_t max_header_size;   /* bytes: a bigger request head gets 431 */
	int64_t header_timeout;	   /* ms: a request head must be complete within it */
	int64_t keepalive_timeout; /* ms: idle between a response and the next request */
	int64_t max_requests;	   /* per connection; 0 = no limit */
};

struct config_listener {
	char *name;
	struct config_addr listen;
	enum config_mode mode;
	struct config_hostport upstream; /* host NULL when only routes are set */
	struct config_route *routes;
	size_t n_routes;
	struct config_proxy_protocol proxy;
	/* egress */
	struct config_allow *allow; /* allowlist: tls/http shorthand, or CONNECT targets */
	size_t n_allow;
	int64_t port;			  /* upstream port for allow in tls/http; 0 = listen port */
	int egress;			  /* guard every route's addresses */
	struct config_cidr *allow_ranges; /* re-allowed despite the default guard */
	size_t n_allow_ranges;
	struct config_cidr *deny_ranges; /* always refused */
	size_t n_deny_ranges;
	struct config_strlist proxy_auth;     /* "user:password", CONNECT mode */
	struct config_strlist proxy_auth_b64; /* the same, base64, as sent by clients */
	int64_t sniff_timeout;		      /* ms: the client's first bytes must come in time */
	int splice;			      /* enum relay_splice: auto, on, off */
	int64_t connect_timeout;	      /* ms */
	int64_t idle_timeout;		      /* ms; 0 = none */
	int64_t max_connections;	      /* 0 = unlimited */
	struct config_sources sources;	      /* TCP peers that may connect; none = anyone */
	struct config_sources client_sources; /* clients (PROXY's address, else the peer) */
	int64_t max_connections_per_source;   /* per client address, all workers; 0 = no limit */
	int report;			      /* action: report (a policy refusal passes, noted) */
	/* mode dns */
	struct config_cidr *answer; /* addresses answered for allowed names; none = the query's */
	size_t n_answer;
	int64_t dns_ttl;		/* ms, of the answers */
	int refuse;			/* enum config_refuse */
	int64_t max_queries_per_source; /* per second; 0 = no limit */
	struct config_http http;
	int line, col;	       /* where it was defined, for messages */
	unsigned seen;	       /* keys present in the file (or set in quick mode) */
	struct policy *policy; /* its decisions, compiled once the configuration is valid */
};

struct config_resolver {
	struct config_strlist nameservers; /* "ip" or "ip:port"; empty = resolv.conf */
	int64_t refresh;		   /* ms: the longest an answer is used */
	int64_t min_ttl;		   /* ms: the shortest */
	int64_t timeout;		   /* ms: one query attempt */
};

struct config_defaults {
	int splice;
	int64_t sniff_timeout;
	int64_t connect_timeout;
	int64_t idle_timeout;
	int64_t max_connections;
	int64_t drain_timeout;
};

struct config {
	unsigned refs; /* config_ref/config_unref; config_load returns one */
	char *path;
	int64_t workers; /* event loops, one thread each; 0 = one per CPU ("auto") */
	struct {
		enum log_level level;
		enum log_format format;
	} log;
	struct config_resolver resolver;
	struct config_defaults defaults;
	struct config_addr admin_listen; /* the admin endpoint; len 0 = off */
	int64_t observed_max;		 /* entries of the observed table (report mode) */
	struct config_listener *listeners;
	size_t n_listeners;
	char *user;	/* started as root: switch to it once bound (name or uid) */
	char *group;	/* and to this group (default: the user's) */
	int allow_root; /* keep running as root when no 'user' is given */
};

/*
 * config_load parses and validates a YAML file. In values, ${NAME} and
 * ${NAME:-default} are taken from the environment ($${ is a literal ${).
 * Returns a new config the caller frees with config_free, or NULL after
 * writing every error to errs.
 */
struct config *config_load(const char *path, FILE *errs);

/* config_load_string is config_load on text in memory; name is used in messages. */
struct config *config_load_string(const char *name, const char *text, size_t len, FILE *errs);

/*
 * A quick-mode setting: a long option and the environment variable that
 * gives the same value. Every one is an entry of the key table (see
 * config_keys.c), which is also where config_quick_set looks it up.
 */
struct config_option {
	const char *flag; /* the long option without dashes: "connect-timeout" */
	const char *env;  /* its variable: "GATEKEEPER_CONNECT_TIMEOUT" */
	const char *arg;  /* what the value looks like, for the usage text: "DURATION" */
	int passive;	  /* set alone, the variable does not select quick mode */
};

/*
 * config_option returns the i-th quick-mode setting (from 0, in the order
 * of the usage text), or NULL past the last one.
 */
const struct config_option *config_option(size_t i);

/*
 * config_option_suggest returns the quick-mode option nearest to flag
 * (without dashes), for a did-you-mean, or NULL when none is close.
 */
const char *config_option_suggest(const char *flag);

/* config_usage writes the quick-mode options, one a line with help and default. */
void config_usage(FILE *out);

/*
 * One setting of the key table, for documentation and its tests: the YAML
 * path ("resolver.min_ttl", "listeners[].http.trusted"), its default as
 * text (NULL: none; "defaults.X": inherited), its help, and its quick-mode
 * option (NULL when it has none).
 */
struct config_keyinfo {
	char path[96];
	const char *name; /* the last part of path */
	const char *def;
	const char *help;
	const struct config_option *opt;
	char def_buf[64]; /* where def is, when it is built */
};

/* config_key_info fills info for the i-th setting (from 0); 0, or -1 past the last. */
int config_key_info(size_t i, struct config_keyinfo *info);

/*
 * Quick mode: one listener, settings by option name ("listen",
 * "connect-timeout", ...; see config_option). config_quick_set returns 0,
 * -1 with a message in err for a bad value, or -2 for an unknown setting;
 * a list setting takes its items comma-separated and replaces what an
 * earlier call set. config_quick_finish validates exactly as config_load
 * does; it returns 0, or -1 after writing every error to errs.
 */
struct config *config_quick_new(void);
int config_quick_set(struct config *cfg, const char *setting, const char *value, char *err,
		     size_t errlen);
int config_quick_finish(struct config *cfg, FILE *errs);

/* config_dump prints the normalized config as YAML. */
void config_dump(const struct config *cfg, FILE *out);

void config_free(struct config *cfg);

/*
 * A config is shared by the workers and by every session that started
 * under it (a reload must not pull it from under them): config_ref takes
 * a reference, config_unref drops one and frees the config with the last.
 * Both are atomic, so any thread may call them.
 */
struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/*
 * config_parse_duration parses "250ms", "5s", "10m", "1h" or "0" into
 * milliseconds. Returns 0, or -1 for anything else.
 */
int config_parse_duration(const char *text, int64_t *ms);

/* config_parse_size parses "512", "16k" or "1m" (1024-based) into bytes. Returns 0 or -1. */
int config_parse_size(const char *text, int64_t *bytes);

/* config_format_duration writes ms in the largest exact unit ("90s", "5m"). */
const char *config_format_duration(int64_t ms, char *buf, size_t len);

const char *config_mode_name(enum config_mode mode);

/* config_cidr_contains: 1 if sa (AF_INET or AF_INET6) is inside c. */
int config_cidr_contains(const struct config_cidr *c, const struct sockaddr *sa);

#endif
