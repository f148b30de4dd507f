/*
 * test_config.c: unit tests for the config loader (config.c).
 *
 * YAML text goes through config_load_string with the error stream captured
 * by open_memstream, and the test checks each reported line: its exact
 * "name:LINE:COL: " prefix, the start of the message, and that no other line
 * was written. Valid configs are checked field by field, then dumped and
 * loaded again to an equal config. Durations, quick mode (the command-line
 * settings) and config_load on a real file are covered at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "config.h"
#include "policy.h"
#include "net.h"

#define NAME "t.yaml"

/* A minimal valid listener block, for tests about the other sections. */
#define ONE_LISTENER                                                                               \
	"listeners:\n"                                                                             \
	"  - name: a\n"                                                                            \
	"    listen: 127.0.0.1:0\n"                                                                \
	"    upstream: whoami:80\n"

/* ---- helpers ---- */

/*
 * Everything a test allocates is registered here and freed by the teardown,
 * which runs whether the test passed or not, so a failing assertion does
 * not show up as a leak under LeakSanitizer.
 */
static struct owned {
	void *p;
	int is_cfg;
} * owned;
static size_t n_owned;

static void *
own(void *p, int is_cfg)
{
	struct owned *o;

	if (p == NULL)
		return NULL;
	o = realloc(owned, (n_owned + 1) * sizeof(*o));
	assert_non_null(o);
	owned = o;
	owned[n_owned].p = p;
	owned[n_owned++].is_cfg = is_cfg;
	return p;
}

static struct config *
own_cfg(struct config *cfg)
{
	return own(cfg, 1);
}

static char *
own_str(char *s)
{
	return own(s, 0);
}

static int
free_owned(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_owned; i++) {
		if (owned[i].is_cfg)
			config_free(owned[i].p);
		else
			free(owned[i].p);
	}
	free(owned);
	owned = NULL;
	n_owned = 0;
	return 0;
}

/* load runs config_load_string on text; *errs receives what was written to the error stream. */
static struct config *
load(const char *text, char **errs)
{
	size_t size = 0;
	FILE *f = open_memstream(errs, &size);
	struct config *cfg;

	assert_non_null(f);
	cfg = config_load_string(NAME, text, strlen(text), f);
	fclose(f);
	own_str(*errs);
	return own_cfg(cfg);
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (*s == '\n')
			n++;
	return n;
}

/* nth_line copies line i (0-based, without newline) of s into buf; returns 0 or -1. */
static int
nth_line(const char *s, size_t i, char *buf, size_t len)
{
	const char *e;

	for (; i > 0; i--) {
		if ((s = strchr(s, '\n')) == NULL)
			return -1;
		s++;
	}
	if (*s == '\0')
		return -1;
	e = strchr(s, '\n');
	if (e == NULL)
		e = s + strlen(s);
	snprintf(buf, len, "%.*s", (int)(e - s), s);
	return 0;
}

/*
 * expect_errors loads text, which must fail, and checks that exactly the
 * expected lines were written, in order. Each expected string must be a
 * prefix of its line (position plus the start of the message); one ending
 * in '$' must match the whole line.
 */
static void
expect_errors_(const char *text, const char *const *want, size_t n)
{
	char *errs = NULL, line[1024];
	struct config *cfg = load(text, &errs);

	if (cfg != NULL)
		fail_msg("config accepted, expected %zu error(s); input:\n%s", n, text);
	if (count_lines(errs) != n)
		fail_msg("expected %zu error line(s), got %zu:\n%s", n, count_lines(errs), errs);
	for (size_t i = 0; i < n; i++) {
		size_t wl = strlen(want[i]);
		int exact = wl > 0 && want[i][wl - 1] == '$';

		assert_int_equal(nth_line(errs, i, line, sizeof(line)), 0);
		if (exact ? (strlen(line) != wl - 1 || strncmp(line, want[i], wl - 1) != 0)
			  : strncmp(line, want[i], wl) != 0)
			fail_msg("error line %zu:\n  got:  %s\n  want: %s%s\nall errors:\n%s",
				 i + 1, line, want[i], exact ? "" : "...", errs);
	}
}

#define expect_errors(text, ...)                                                                   \
	do {                                                                                       \
		static const char *const want_[] = {__VA_ARGS__};                                  \
		expect_errors_((text), want_, sizeof(want_) / sizeof(want_[0]));                   \
	} while (0)

/* load_ok loads text that must be valid and writes nothing. */
static struct config *
load_ok(const char *text)
{
	char *errs = NULL;
	struct config *cfg = load(text, &errs);

	if (cfg == NULL || errs[0] != '\0')
		fail_msg("config rejected or noisy:\n%s\ninput:\n%s", errs, text);
	return cfg;
}

static const char *
fmt_addr(const struct config_addr *a, char *buf, size_t len)
{
	return net_format((const struct sockaddr *)&a->ss, buf, len);
}

static void
assert_hostport_equal(const struct config_hostport *a, const struct config_hostport *b)
{
	if (a->host == NULL || b->host == NULL)
		assert_ptr_equal(a->host, b->host);
	else
		assert_string_equal(a->host, b->host);
	assert_int_equal(a->port, b->port);
	assert_int_equal(a->sniffed_host, b->sniffed_host);
}

/* assert_config_equal compares every field of two configs (path excepted). */
static void
assert_config_equal(const struct config *a, const struct config *b)
{
	assert_int_equal(a->log.level, b->log.level);
	assert_int_equal(a->log.format, b->log.format);
	assert_int_equal(a->resolver.nameservers.n, b->resolver.nameservers.n);
	for (size_t i = 0; i < a->resolver.nameservers.n; i++)
		assert_string_equal(a->resolver.nameservers.v[i], b->resolver.nameservers.v[i]);
	assert_int_equal(a->resolver.refresh, b->resolver.refresh);
	assert_int_equal(a->resolver.min_ttl, b->resolver.min_ttl);
	assert_int_equal(a->resolver.timeout, b->resolver.timeout);
	assert_int_equal(a->defaults.sniff_timeout, b->defaults.sniff_timeout);
	assert_int_equal(a->defaults.connect_timeout, b->defaults.connect_timeout);
	assert_int_equal(a->defaults.idle_timeout, b->defaults.idle_timeout);
	assert_int_equal(a->defaults.max_connections, b->defaults.max_connections);
	assert_int_equal(a->defaults.drain_timeout, b->defaults.drain_timeout);
	assert_int_equal(a->n_listeners, b->n_listeners);
	for (size_t i = 0; i < a->n_listeners; i++) {
		const struct config_listener *x = &a->listeners[i], *y = &b->listeners[i];
		assert_string_equal(x->name, y->name);
		assert_int_equal(x->listen.len, y->listen.len);
		assert_true(net_sockaddr_equal((const struct sockaddr *)&x->listen.ss,
					       (const struct sockaddr *)&y->listen.ss));
		assert_int_equal(x->mode, y->mode);
		assert_hostport_equal(&x->upstream, &y->upstream);
		assert_int_equal(x->n_routes, y->n_routes);
		for (size_t j = 0; j < x->n_routes; j++) {
			const struct config_route *p = &x->routes[j], *q = &y->routes[j];
			assert_int_equal(p->match.n, q->match.n);
			for (size_t k = 0; k < p->match.n; k++)
				assert_string_equal(p->match.v[k], q->match.v[k]);
			assert_hostport_equal(&p->upstream, &q->upstream);
			assert_int_equal(p->send, q->send);
		}
		assert_int_equal(x->proxy.accept, y->proxy.accept);
		assert_int_equal(x->proxy.send, y->proxy.send);
		assert_int_equal(x->proxy.n_trusted, y->proxy.n_trusted);
		for (size_t k = 0; k < x->proxy.n_trusted; k++) {
			assert_int_equal(x->proxy.trusted[k].prefix, y->proxy.trusted[k].prefix);
			assert_true(
			    net_sockaddr_equal((const struct sockaddr *)&x->proxy.trusted[k].addr,
					       (const struct sockaddr *)&y->proxy.trusted[k].addr));
		}
		assert_int_equal(x->sniff_timeout, y->sniff_timeout);
		assert_int_equal(x->connect_timeout, y->connect_timeout);
		assert_int_equal(x->idle_timeout, y->idle_timeout);
		assert_int_equal(x->max_connections, y->max_connections);
	}
}

/* dump_string returns config_dump's output (caller frees). */
static char *
dump_string(const struct config *cfg)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	assert_non_null(f);
	config_dump(cfg, f);
	fclose(f);
	return own_str(buf);
}

/* round_trip dumps cfg, loads the dump, and checks both configs and both dumps are equal. */
static void
round_trip(const struct config *cfg)
{
	char *text = dump_string(cfg), *errs = NULL, *again;
	struct config *back = load(text, &errs);

	if (back == NULL)
		fail_msg("the dump does not load:\n%s\ndump:\n%s", errs, text);
	assert_string_equal(errs, "");
	assert_config_equal(cfg, back);
	again = dump_string(back);
	assert_string_equal(text, again);
}

/* ---- sources ---- */

static void
test_sources(void **state)
{
	struct config *cfg;
	const struct config_listener *l;

	(void)state;
	cfg = load_ok("listeners:\n"
		      "  - name: web\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n"
		      "    sources: [Traefik., 10.0.0.0/8, \"::ffff:10.1.0.0/112\", \"::1\"]\n"
		      "    client_sources: 172.30.0.0/16\n"
		      "    max_connections_per_source: 256\n"
		      "  - name: egress\n"
		      "    listen: 127.0.0.1:0\n"
		      "    mode: tls\n"
		      "    allow:\n"
		      "      - api.github.com\n"
		      "      - match: \"*.pythonhosted.org\"\n"
		      "        sources: [builder, 172.30.5.0/24]\n"
		      "      - {sources: [10.0.0.7], match: 10.50.0.0/16}\n"
		      "    routes:\n"
		      "      - match: admin.example\n"
		      "        upstream: admin:443\n"
		      "        sources: builder\n");
	l = &cfg->listeners[0];
	assert_int_equal(l->sources.n_blocks, 3);
	assert_int_equal(l->sources.names.n, 1);
	assert_string_equal(l->sources.names.v[0], "traefik"); /* lower case, no trailing dot */
	assert_int_equal(l->sources.blocks[1].prefix, 112);
	assert_int_equal(l->client_sources.n_blocks, 1);
	assert_int_equal(l->max_connections_per_source, 256);
	l = &cfg->listeners[1];
	assert_int_equal(l->n_allow, 3);
	assert_int_equal(l->allow[0].sources.n_blocks + l->allow[0].sources.names.n, 0);
	assert_string_equal(l->allow[1].pattern, "*.pythonhosted.org");
	assert_string_equal(l->allow[1].sources.names.v[0], "builder");
	assert_int_equal(l->allow[1].sources.n_blocks, 1);
	assert_null(l->allow[2].pattern); /* 'match' after 'sources': both kept */
	assert_int_equal(l->allow[2].cidr.prefix, 16);
	assert_int_equal(l->allow[2].sources.n_blocks, 1);
	assert_string_equal(l->routes[0].sources.names.v[0], "builder");
	round_trip(cfg);

	expect_errors("listeners:\n"
		      "  - name: web\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n"
		      "    sources: [10.0.0.0/33, 300.1.1.1, \"*.x\", \"bad name!\", \"\", a/b]\n"
		      "    client_sources: [10.0.0.256]\n"
		      "    max_connections_per_source: -1\n"
		      "  - name: egress\n"
		      "    listen: 127.0.0.1:0\n"
		      "    mode: tls\n"
		      "    allow:\n"
		      "      - sources: [a]\n"
		      "      - match: x.example\n"
		      "        sourcez: [a]\n"
		      "      - [a]\n"
		      "      - match: \"bad pattern!\"\n",
		      NAME
		      ":5:15: invalid source '10.0.0.0/33' in 'sources' (use a name, an address "
		      "or ADDRESS/PREFIX, like traefik, 172.30.5.0/24 or ::1)$",
		      NAME ":5:28: invalid source '300.1.1.1'", NAME ":5:39: invalid source '*.x'",
		      NAME ":5:46: invalid source 'bad name!'", NAME ":5:59: invalid source ''",
		      NAME ":5:63: invalid source 'a/b'",
		      NAME ":6:22: invalid source '10.0.0.256' in 'client_sources'",
		      NAME ":7:33: invalid", NAME ":12:9: allow[0] needs 'match'",
		      NAME ":14:9: unknown key 'sourcez' in allow[1] (did you mean 'sources'?)$",
		      NAME ":15:9: 'allow' items must be entries or {match, sources} mappings",
		      NAME ":16:16: invalid");
}

/* ---- unknown keys and did-you-mean ---- */

static void
test_unknown_keys_did_you_mean(void **state)
{
	(void)state;
	expect_errors(
	    "listeners:\n"
	    "  - name: a\n"
	    "    listen: 127.0.0.1:0\n"
	    "    upstream: whoami:80\n"
	    "    upstrem: whoami:81\n"
	    "    conect_timeout: 5s\n"
	    "    idle-timeout: 1s\n"
	    "    Max_Connections: 5\n"
	    "    mod: tcp\n"
	    "    zzzzzzzzzz: 1\n"
	    "    timeout: 5s\n",
	    NAME ":5:5: unknown key 'upstrem' in listeners[0] (did you mean 'upstream'?)$",
	    NAME ":6:5: unknown key 'conect_timeout' in listeners[0] (did you mean "
		 "'connect_timeout'?)$",
	    NAME ":7:5: unknown key 'idle-timeout' in listeners[0] (did you mean 'idle_timeout'?)$",
	    NAME ":8:5: unknown key 'Max_Connections' in listeners[0] (did you mean "
		 "'max_connections'?)$",
	    NAME ":9:5: unknown key 'mod' in listeners[0] (did you mean 'mode'?)$",
	    NAME ":10:5: unknown key 'zzzzzzzzzz' in listeners[0]$",
	    NAME ":11:5: unknown key 'timeout' in listeners[0]$");
}

static void
test_unknown_keys_in_sections(void **state)
{
	(void)state;
	expect_errors(
	    "listener: []\n"
	    "logs:\n"
	    "  level: info\n"
	    "log:\n"
	    "  levle: info\n"
	    "  colour: yes\n"
	    "resolver:\n"
	    "  nameserver: [127.0.0.1]\n"
	    "  min-ttl: 1s\n"
	    "defaults:\n"
	    "  drain: 5s\n"
	    "  drain_timout: 5s\n"
	    "completely_unrelated: 1\n" ONE_LISTENER,
	    NAME ":1:1: unknown key 'listener' in the top level (did you mean 'listeners'?)$",
	    NAME ":2:1: unknown key 'logs' in the top level (did you mean 'log'?)$",
	    NAME ":5:3: unknown key 'levle' in log (did you mean 'level'?)$",
	    NAME ":6:3: unknown key 'colour' in log$",
	    NAME ":8:3: unknown key 'nameserver' in resolver (did you mean 'nameservers'?)$",
	    NAME ":9:3: unknown key 'min-ttl' in resolver (did you mean 'min_ttl'?)$",
	    NAME ":11:3: unknown key 'drain' in defaults$",
	    NAME ":12:3: unknown key 'drain_timout' in defaults (did you mean 'drain_timeout'?)$",
	    NAME ":13:1: unknown key 'completely_unrelated' in the top level$");
}

static void
test_unknown_key_in_second_listener(void **state)
{
	(void)state;
	expect_errors(ONE_LISTENER "  - name: b\n"
				   "    listen: 127.0.0.1:0\n"
				   "    upstream: whoami:80\n"
				   "    upstreams: x:1\n",
		      NAME
		      ":8:5: unknown key 'upstreams' in listeners[1] (did you mean 'upstream'?)$");
}

static void
test_dump_round_trip_deny_all_and_privileges(void **state)
{
	/* A connect listener's empty allow list denies everything: the dump
	 * keeps saying so (dropping it would not load). user/group/allow_root
	 * go through the dump as well. */
	struct config *cfg = load_ok("user: \"nobody\"\n"
				     "group: \"65534\"\n"
				     "allow_root: true\n"
				     "listeners:\n"
				     "  - name: a\n"
				     "    listen: 127.0.0.1:0\n"
				     "    mode: connect\n"
				     "    allow: []\n");

	(void)state;
	assert_int_equal(cfg->listeners[0].n_allow, 0);
	assert_string_equal(cfg->user, "nobody");
	assert_string_equal(cfg->group, "65534");
	assert_int_equal(cfg->allow_root, 1);
	round_trip(cfg);
}

/* ---- durations ---- */

static void
test_bad_durations(void **state)
{
	(void)state;
	expect_errors("defaults:\n"
		      "  connect_timeout: 5x\n"
		      "  idle_timeout: 5\n"
		      "  drain_timeout: -1s\n"
		      "resolver:\n"
		      "  refresh: 1.5s\n"
		      "  min_ttl: 99999999999999999999999999s\n"
		      "  timeout: 5 s\n" ONE_LISTENER "    connect_timeout: 1h30m\n"
		      "    idle_timeout: \"\"\n",
		      NAME ":2:20: invalid duration '5x' for 'connect_timeout'",
		      NAME ":3:17: invalid duration '5' for 'idle_timeout'",
		      NAME ":4:18: invalid duration '-1s' for 'drain_timeout'",
		      NAME ":6:12: invalid duration '1.5s' for 'refresh'",
		      NAME ":7:12: invalid duration '99999999999999999999999999s' for 'min_ttl'",
		      NAME ":8:12: invalid duration '5 s' for 'timeout'",
		      NAME ":13:22: invalid duration '1h30m' for 'connect_timeout'",
		      NAME ":14:19: invalid duration '' for 'idle_timeout'");
}

static void
test_durations_out_of_range(void **state)
{
	(void)state;
	expect_errors("resolver:\n"
		      "  refresh: 500ms\n"
		      "  timeout: 0\n" ONE_LISTENER "    connect_timeout: 0\n",
		      NAME ":2:12: 'refresh' must be between 1s and 8760h, not '500ms'$",
		      NAME ":3:12: 'timeout' must be between 10ms and 1m, not '0'$",
		      NAME ":8:22: 'connect_timeout' must be between 1ms and 8760h, not '0'$");
}

/* ---- ports and addresses ---- */

static void
test_bad_ports(void **state)
{
	(void)state;
	expect_errors("listeners:\n"
		      "  - name: a\n"
		      "    listen: 127.0.0.1:99999\n"
		      "    upstream: whoami:0\n"
		      "  - name: b\n"
		      "    listen: 127.0.0.1:abc\n"
		      "    upstream: whoami:abc\n"
		      "  - name: c\n"
		      "    listen: 127.0.0.1:1\n"
		      "    upstream: whoami:65536\n",
		      NAME ":3:13: invalid port '99999' in listen '127.0.0.1:99999'",
		      NAME ":4:15: invalid port '0' in upstream 'whoami:0'",
		      NAME ":6:13: invalid port 'abc' in listen '127.0.0.1:abc'",
		      NAME ":7:15: invalid port 'abc' in upstream 'whoami:abc'",
		      NAME ":10:15: invalid port '65536' in upstream 'whoami:65536'");
}

static void
test_bad_listen_addresses(void **state)
{
	(void)state;
	expect_errors(
	    "listeners:\n"
	    "  - name: a\n"
	    "    listen: localhost:80\n"
	    "    upstream: whoami:80\n"
	    "  - name: b\n"
	    "    listen: 127.0.0.1\n"
	    "    upstream: whoami:80\n"
	    "  - name: c\n"
	    "    listen: ::1:80\n"
	    "    upstream: whoami:80\n"
	    "  - name: d\n"
	    "    listen: \"[::1:80\"\n"
	    "    upstream: whoami:80\n"
	    "  - name: e\n"
	    "    listen: 127.0.0.1:80\n"
	    "    upstream: \"::1:80\"\n"
	    "  - name: f\n"
	    "    listen: 127.0.0.1:81\n"
	    "    upstream: \"bad host:80\"\n",
	    NAME ":3:13: invalid listen address 'localhost:80': 'localhost' is not an IP address",
	    NAME ":6:13: missing ':PORT' in listen '127.0.0.1'",
	    NAME ":9:13: an IPv6 address needs brackets, like [::1]:80 in listen '::1:80'",
	    NAME ":12:13: missing ']' after IPv6 address in listen '[::1:80'",
	    NAME ":16:15: an IPv6 address needs brackets, like [::1]:80 in upstream '::1:80'",
	    NAME ":19:15: invalid host 'bad host' in upstream 'bad host:80'");
}

static void
test_bad_nameservers(void **state)
{
	(void)state;
	expect_errors("resolver:\n"
		      "  nameservers:\n"
		      "    - 127.0.0.11\n"
		      "    - dns.google\n"
		      "    - 127.0.0.1:0\n"
		      "    - [1.1.1.1]\n" ONE_LISTENER,
		      NAME ":4:7: invalid nameserver 'dns.google'",
		      NAME ":5:7: invalid nameserver '127.0.0.1:0'",
		      NAME ":6:7: 'nameservers' items must be ");
}

/* ---- enums ---- */

static void
test_bad_enums(void **state)
{
	(void)state;
	expect_errors("log:\n"
		      "  level: verbose\n"
		      "  format: xml\n" ONE_LISTENER "    mode: http2\n",
		      NAME ":2:10: invalid level 'verbose' (use debug, info, warn or error)$",
		      NAME ":3:11: invalid format 'xml' (use logfmt or json)$",
		      NAME ":8:11: invalid mode 'http2' (use tcp");
}

/* ---- mode http ---- */

static void
test_http_section(void **state)
{
	struct config *cfg;
	const struct config_http *h;
	int64_t v;

	(void)state;
	/* defaults */
	cfg = load_ok(ONE_LISTENER "    mode: http\n");
	h = &cfg->listeners[0].http;
	assert_true(h->x_forwarded_for && h->x_forwarded_proto && h->x_forwarded_host &&
		    h->x_real_ip);
	assert_false(h->forwarded);
	assert_int_equal(h->n_trusted, 0);
	assert_int_equal(h->max_header_size, 16384);
	assert_int_equal(h->header_timeout, 10000);
	assert_int_equal(h->keepalive_timeout, 75000);
	assert_int_equal(h->max_requests, 1000);
	/* every key */
	cfg = load_ok(ONE_LISTENER "    mode: http\n"
				   "    http:\n"
				   "      trusted: [10.0.0.0/8, \"::1\"]\n"
				   "      x_forwarded_for: false\n"
				   "      x_forwarded_proto: false\n"
				   "      x_forwarded_host: false\n"
				   "      x_real_ip: false\n"
				   "      forwarded: true\n"
				   "      max_header_size: 32k\n"
				   "      header_timeout: 2s\n"
				   "      keepalive_timeout: 500ms\n"
				   "      max_requests_per_connection: 0\n");
	h = &cfg->listeners[0].http;
	assert_int_equal(h->n_trusted, 2);
	assert_false(h->x_forwarded_for || h->x_forwarded_proto || h->x_forwarded_host ||
		     h->x_real_ip);
	assert_true(h->forwarded);
	assert_int_equal(h->max_header_size, 32768);
	assert_int_equal(h->header_timeout, 2000);
	assert_int_equal(h->keepalive_timeout, 500);
	assert_int_equal(h->max_requests, 0);
	/* errors, each with its position and a way out */
	expect_errors(
	    ONE_LISTENER "    http:\n"
			 "      max_header_size: 100\n"
			 "      max_requets_per_connection: 5\n"
			 "      header_timeout: soon\n",
	    NAME ":6:24: invalid size '100' for 'max_header_size' (use bytes, or k or m, from 1024 "
		 "to 65536 bytes, like 16k)$",
	    NAME
	    ":7:7: unknown key 'max_requets_per_connection' in listeners[0].http (did you mean "
	    "'max_requests_per_connection'?)$",
	    NAME ":8:23: invalid duration 'soon' for 'header_timeout'",
	    NAME ":2:5: listeners[0]: 'http' settings need mode http (mode is tcp)$");
	/* sizes */
	assert_int_equal(config_parse_size("512", &v), 0);
	assert_int_equal(v, 512);
	assert_int_equal(config_parse_size("16K", &v), 0);
	assert_int_equal(v, 16384);
	assert_int_equal(config_parse_size("1m", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(config_parse_size("k", &v), -1);
	assert_int_equal(config_parse_size("16kb", &v), -1);
	assert_int_equal(config_parse_size("-1", &v), -1);
	assert_int_equal(config_parse_size("", &v), -1);
}

/* ---- wrong node kinds ---- */

static void
test_listeners_as_mapping(void **state)
{
	(void)state;
	/* One mistake, one error: no second "no listeners defined" for the same line. */
	expect_errors("listeners:\n"
		      "  name: a\n"
		      "  listen: 127.0.0.1:0\n",
		      NAME ":2:3: 'listeners' must be a list");
}

static void
test_listener_item_not_mapping(void **state)
{
	(void)state;
	/* An item that is not a mapping is one error, not also three "missing key" ones. */
	expect_errors(ONE_LISTENER "  - whoami:80\n",
		      NAME ":5:5: listeners[1] must be a mapping, not a single value$");
}

static void
test_sections_wrong_kind(void **state)
{
	(void)state;
	expect_errors("log: debug\n"
		      "resolver: [127.0.0.1]\n"
		      "defaults: 5s\n" ONE_LISTENER "    upstream_x: 1\n",
		      NAME ":1:6: 'log' must be a mapping, not a single value$",
		      NAME ":2:11: 'resolver' must be a mapping, not a list$",
		      NAME ":3:11: 'defaults' must be a mapping, not a single value$",
		      NAME
		      ":8:5: unknown key 'upstream_x' in listeners[0] (did you mean 'upstream'?)$");
}

static void
test_values_wrong_kind(void **state)
{
	(void)state;
	expect_errors("log:\n"
		      "  level: [debug]\n"
		      "listeners:\n"
		      "  - name: {a: 1}\n"
		      "    listen: [127.0.0.1:0]\n"
		      "    upstream: whoami:80\n",
		      NAME ":2:10: 'level' in log must be a single value, not a list$",
		      NAME ":4:11: 'name' in listeners[0] must be a single value, not a mapping$",
		      NAME ":5:13: 'listen' in listeners[0] must be a single value, not a list$");
}

static void
test_top_level_not_mapping(void **state)
{
	(void)state;
	expect_errors("- a\n- b\n", NAME
		      ":1:1: the top level must be a mapping of sections (log, resolver, defaults, "
		      "listeners), not a list$");
	expect_errors("hello\n", NAME ":1:1: the top level must be a mapping");
}

/* ---- duplicates ---- */

static void
test_duplicate_keys(void **state)
{
	(void)state;
	expect_errors("log:\n"
		      "  level: info\n"
		      "  level: debug\n"
		      "listeners:\n"
		      "  - name: a\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n"
		      "    upstream: whoami:81\n"
		      "log:\n"
		      "  format: json\n",
		      NAME ":3:3: duplicate key 'level' in log$",
		      NAME ":8:5: duplicate key 'upstream' in listeners[0]$",
		      NAME ":9:1: duplicate key 'log' in the top level$");
}

static void
test_duplicate_listener_names_and_addresses(void **state)
{
	(void)state;
	expect_errors(
	    "listeners:\n"
	    "  - name: a\n"
	    "    listen: 127.0.0.1:8080\n"
	    "    upstream: whoami:80\n"
	    "  - name: a\n"
	    "    listen: 127.0.0.2:8080\n"
	    "    upstream: whoami:80\n"
	    "  - name: c\n"
	    "    listen: 127.0.0.1:8080\n"
	    "    upstream: whoami:80\n"
	    "  - name: d\n"
	    "    listen: \"[::1]:9\"\n"
	    "    upstream: whoami:80\n"
	    "  - name: e\n"
	    "    listen: \"[0:0::1]:9\"\n"
	    "    upstream: whoami:80\n"
	    "  - name: f\n"
	    "    listen: \":7\"\n"
	    "    upstream: whoami:80\n"
	    "  - name: g\n"
	    "    listen: 0.0.0.0:7\n"
	    "    upstream: whoami:80\n",
	    NAME ":5:5: listeners[1]: duplicate name 'a' (listeners[0] has it already)$",
	    NAME ":8:5: listeners[2]: duplicate listen address (listeners[0] has it already)$",
	    NAME ":14:5: listeners[4]: duplicate listen address (listeners[3] has it already)$",
	    NAME ":20:5: listeners[6]: duplicate listen address (listeners[5] has it already)$");
}

static void
test_ephemeral_ports_and_families_do_not_clash(void **state)
{
	struct config *cfg;

	(void)state;
	/* Port 0 twice is two different ports; 0.0.0.0:P and [::]:P are both allowed. */
	cfg = load_ok("listeners:\n"
		      "  - name: a\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n"
		      "  - name: b\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n"
		      "  - name: c\n"
		      "    listen: 0.0.0.0:80\n"
		      "    upstream: whoami:80\n"
		      "  - name: d\n"
		      "    listen: \"[::]:80\"\n"
		      "    upstream: whoami:80\n");
	assert_int_equal(cfg->n_listeners, 4);
}

/* ---- required keys ---- */

static void
test_missing_required_keys(void **state)
{
	(void)state;
	expect_errors("listeners:\n"
		      "  - listen: 127.0.0.1:0\n"
		      "  - name: b\n"
		      "    upstream: whoami:80\n"
		      "  -   upstream: whoami:80\n"
		      "      name: c\n"
		      "      listen: 127.0.0.1:0\n"
		      "  - {name: d}\n",
		      NAME ":2:5: listeners[0]: missing required key 'name'$",
		      NAME ":2:5: listeners[0]: missing required key 'upstream'$",
		      NAME ":3:5: listeners[1]: missing required key 'listen'$",
		      NAME ":8:5: listeners[3]: missing required key 'listen'$",
		      NAME ":8:5: listeners[3]: missing required key 'upstream'$");
}

static void
test_invalid_value_not_reported_as_missing(void **state)
{
	(void)state;
	/* A key that is present but bad is reported once, as bad. */
	expect_errors("listeners:\n"
		      "  - name: \"\"\n"
		      "    listen: nowhere\n"
		      "    upstream: \"whoami\"\n",
		      NAME ":2:11: 'name' must not be empty$",
		      NAME ":3:13: missing ':PORT' in listen 'nowhere'",
		      NAME ":4:15: missing ':PORT' in upstream 'whoami'");
}

static void
test_no_listeners(void **state)
{
	(void)state;
	expect_errors("log:\n  level: info\n", NAME ": no listeners defined");
	expect_errors("listeners: []\n", NAME ": no listeners defined");
}

/* ---- YAML syntax and empty input ---- */

static void
test_yaml_syntax_errors(void **state)
{
	(void)state;
	/* The ':' after "b" on line 1, column 5. */
	expect_errors("a: b: c\n", NAME ":1:5: YAML syntax error: mapping values are not allowed");
	/* A tab used for indentation at the start of line 3. */
	expect_errors("listeners:\n  - name: a\n\tlisten: x\n", NAME
		      ":3:1: YAML syntax error: found a tab character that violates indentation");
	/* A flow list never closed: found at the end of input (line 5). */
	expect_errors(
	    "listeners:\n"
	    "  - name: a\n"
	    "    listen: 127.0.0.1:0\n"
	    "    upstream: [whoami:80\n",
	    NAME ":5:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
		 "sequence, line 4)$");
	/* A key indented one column less than its siblings. */
	expect_errors("log:\n  level: info\n format: json\n", NAME
		      ":3:2: YAML syntax error: did not find expected key (while parsing a block "
		      "mapping, line 1)$");
	/* An unterminated quoted string. */
	expect_errors(
	    "listeners:\n  - name: \"abc\n    listen: x\n",
	    NAME ":4:1: YAML syntax error: found unexpected end of stream (while scanning a quoted "
		 "scalar, line 2)$");
}

static void
test_empty_input(void **state)
{
	(void)state;
	expect_errors("", NAME ": the file is empty");
	expect_errors("# only a comment\n\n", NAME ": the file is empty");
	expect_errors("   \n\n\n", NAME ": the file is empty");
}

static void
test_empty_document_marker(void **state)
{
	(void)state;
	/* A document marker and nothing else is as empty as no text at all. */
	expect_errors("---\n", NAME ": the file is empty");
	expect_errors("---\n# everything commented out\n...\n", NAME ": the file is empty");
}

/* ---- many errors at once ---- */

static void
test_all_errors_reported(void **state)
{
	char *errs = NULL;
	struct config *cfg;

	(void)state;
	cfg = load("log:\n"
		   "  level: loud\n"
		   "resolver:\n"
		   "  refresh: 5\n"
		   "defaults:\n"
		   "  idle_timeout: forever\n"
		   "listeners:\n"
		   "  - name: a\n"
		   "    listen: 127.0.0.1:99999\n"
		   "    upstream: whoami:0\n"
		   "    upstrem: x\n"
		   "  - name: a\n"
		   "    listen: 127.0.0.1:1\n"
		   "    upstream: whoami:80\n",
		   &errs);
	assert_null(cfg);
	/* loud, 5, forever, 99999, 0, upstrem, and the duplicate name. */
	if (count_lines(errs) != 7)
		fail_msg("expected 7 errors, got %zu:\n%s", count_lines(errs), errs);
	assert_non_null(strstr(errs, NAME ":2:10: invalid level 'loud'"));
	assert_non_null(strstr(errs, NAME ":4:12: invalid duration '5' for 'refresh'"));
	assert_non_null(strstr(errs, NAME ":6:17: invalid duration 'forever' for 'idle_timeout'"));
	assert_non_null(strstr(errs, NAME ":9:13: invalid port '99999'"));
	assert_non_null(strstr(errs, NAME ":10:15: invalid port '0' in upstream"));
	assert_non_null(strstr(errs, NAME ":11:5: unknown key 'upstrem' in listeners[0] (did you "
					  "mean 'upstream'?)\n"));
	assert_non_null(strstr(errs, NAME ":12:5: listeners[1]: duplicate name 'a'"));
}

static void
test_min_ttl_above_refresh(void **state)
{
	char *errs = NULL, line[512];
	struct config *cfg;

	(void)state;
	cfg = load("resolver:\n"
		   "  refresh: 2s\n"
		   "  min_ttl: 3s\n" ONE_LISTENER,
		   &errs);
	assert_null(cfg);
	assert_int_equal(count_lines(errs), 1);
	assert_non_null(strstr(errs, "min_ttl must not exceed refresh"));
	/* Like every other error, it points at the line to fix (min_ttl, line 3). */
	assert_int_equal(nth_line(errs, 0, line, sizeof(line)), 0);
	if (strncmp(line, NAME ":3:", strlen(NAME ":3:")) != 0)
		fail_msg("no position on line 3: '%s'", line);
}

/* ---- valid configs ---- */

static const char full_config[] = "log:\n"
				  "  level: debug\n"
				  "  format: json\n"
				  "resolver:\n"
				  "  nameservers: [127.0.0.11, \"127.0.0.1:5353\", \"[::1]:53\", "
				  "\"::1\"]\n"
				  "  refresh: 10m\n"
				  "  min_ttl: 250ms\n"
				  "  timeout: 1500ms\n"
				  "defaults:\n"
				  "  connect_timeout: 3s\n"
				  "  idle_timeout: 0\n"
				  "  max_connections: 10\n"
				  "  drain_timeout: 1h\n"
				  "listeners:\n"
				  "  - name: v6\n"
				  "    listen: \"[::1]:0\"\n"
				  "    upstream: \"[2001:db8::1]:443\"\n"
				  "    connect_timeout: 90s\n"
				  "  - name: any\n"
				  "    listen: \":8080\"\n"
				  "    mode: tcp\n"
				  "    upstream: whoami:80\n"
				  "    max_connections: 0\n"
				  "    idle_timeout: 1500ms\n"
				  "  - name: star\n"
				  "    listen: \"*:8081\"\n"
				  "    upstream: api.example.com.:443\n";

static void
test_valid_full_config(void **state)
{
	struct config *cfg = load_ok(full_config);
	const struct config_listener *l;
	char buf[NET_ADDRSTRLEN];

	(void)state;
	assert_string_equal(cfg->path, NAME);
	assert_int_equal(cfg->log.level, LOG_LEVEL_DEBUG);
	assert_int_equal(cfg->log.format, LOG_FORMAT_JSON);
	assert_int_equal(cfg->resolver.nameservers.n, 4);
	assert_string_equal(cfg->resolver.nameservers.v[0], "127.0.0.11");
	assert_string_equal(cfg->resolver.nameservers.v[1], "127.0.0.1:5353");
	assert_string_equal(cfg->resolver.nameservers.v[2], "[::1]:53");
	assert_string_equal(cfg->resolver.nameservers.v[3], "::1");
	assert_int_equal(cfg->resolver.refresh, 600000);
	assert_int_equal(cfg->resolver.min_ttl, 250);
	assert_int_equal(cfg->resolver.timeout, 1500);
	assert_int_equal(cfg->defaults.connect_timeout, 3000);
	assert_int_equal(cfg->defaults.idle_timeout, 0);
	assert_int_equal(cfg->defaults.max_connections, 10);
	assert_int_equal(cfg->defaults.drain_timeout, 3600000);
	assert_int_equal(cfg->n_listeners, 3);

	l = &cfg->listeners[0];
	assert_string_equal(l->name, "v6");
	assert_int_equal(l->listen.ss.ss_family, AF_INET6);
	assert_int_equal(l->listen.len, sizeof(struct sockaddr_in6));
	assert_string_equal(fmt_addr(&l->listen, buf, sizeof(buf)), "[::1]:0");
	assert_int_equal(l->mode, CONFIG_MODE_TCP);
	assert_string_equal(l->upstream.host, "2001:db8::1");
	assert_int_equal(l->upstream.port, 443);
	assert_int_equal(l->connect_timeout, 90000); /* its own */
	assert_int_equal(l->idle_timeout, 0);	     /* inherited */
	assert_int_equal(l->max_connections, 10);    /* inherited */
	assert_int_equal(l->line, 15);
	assert_int_equal(l->col, 5);

	l = &cfg->listeners[1];
	assert_string_equal(l->name, "any");
	assert_int_equal(l->listen.ss.ss_family, AF_INET);
	assert_int_equal(l->listen.len, sizeof(struct sockaddr_in));
	assert_string_equal(fmt_addr(&l->listen, buf, sizeof(buf)), "0.0.0.0:8080");
	assert_string_equal(l->upstream.host, "whoami");
	assert_int_equal(l->upstream.port, 80);
	assert_int_equal(l->connect_timeout, 3000); /* inherited */
	assert_int_equal(l->idle_timeout, 1500);    /* its own */
	assert_int_equal(l->max_connections, 0);    /* its own: 0 is not "unset" */

	l = &cfg->listeners[2];
	assert_string_equal(fmt_addr(&l->listen, buf, sizeof(buf)), "0.0.0.0:8081");
	assert_string_equal(l->upstream.host, "api.example.com.");
	assert_int_equal(l->upstream.port, 443);
}

static void
test_valid_minimal_defaults(void **state)
{
	struct config *cfg = load_ok("log:\n"
				     "resolver:\n"
				     "listeners:\n"
				     "  - name: web\n"
				     "    listen: 0.0.0.0:80\n"
				     "    upstream: 10.0.0.2:8080\n");
	const struct config_listener *l = &cfg->listeners[0];

	(void)state;
	assert_int_equal(cfg->log.level, LOG_LEVEL_INFO);
	assert_int_equal(cfg->log.format, LOG_FORMAT_LOGFMT);
	assert_int_equal(cfg->resolver.nameservers.n, 0);
	assert_int_equal(cfg->resolver.refresh, 30000);
	assert_int_equal(cfg->resolver.min_ttl, 1000);
	assert_int_equal(cfg->resolver.timeout, 2000);
	assert_int_equal(l->connect_timeout, cfg->defaults.connect_timeout);
	assert_int_equal(l->idle_timeout, cfg->defaults.idle_timeout);
	assert_int_equal(l->max_connections, cfg->defaults.max_connections);
	assert_int_equal(cfg->defaults.connect_timeout, 5000);
	assert_int_equal(cfg->defaults.idle_timeout, 300000);
	assert_int_equal(cfg->defaults.drain_timeout, 8000);
	assert_string_equal(l->upstream.host, "10.0.0.2");
	assert_int_equal(l->upstream.port, 8080);
}

static void
test_valid_nameservers_scalar_and_limits(void **state)
{
	struct config *cfg =
	    load_ok("resolver:\n"
		    "  nameservers: 127.0.0.1:53\n"
		    "  refresh: 8760h\n"
		    "  min_ttl: 0\n"
		    "  timeout: 1m\n"
		    "defaults:\n"
		    "  max_connections: 10000000\n" ONE_LISTENER "    connect_timeout: 1ms\n");

	(void)state;
	assert_int_equal(cfg->resolver.nameservers.n, 1);
	assert_string_equal(cfg->resolver.nameservers.v[0], "127.0.0.1:53");
	assert_int_equal(cfg->resolver.refresh, (int64_t)8760 * 3600 * 1000);
	assert_int_equal(cfg->resolver.min_ttl, 0);
	assert_int_equal(cfg->resolver.timeout, 60000);
	assert_int_equal(cfg->listeners[0].max_connections, 10000000);
	assert_int_equal(cfg->listeners[0].connect_timeout, 1);
}

/* ---- dump round trips ---- */

static void
test_dump_round_trip(void **state)
{
	struct config *cfg;
	char *text;

	(void)state;
	cfg = load_ok(full_config);
	round_trip(cfg);
	text = dump_string(cfg);
	/* Listener values are written out in full, inherited or not. */
	assert_non_null(strstr(text, "  - name: \"v6\"\n    listen: \"[::1]:0\"\n"));
	assert_non_null(strstr(text, "    upstream: \"[2001:db8::1]:443\"\n"));
	assert_non_null(strstr(text, "    connect_timeout: 90s\n    idle_timeout: 0\n"));

	cfg = load_ok(ONE_LISTENER);
	round_trip(cfg);
}

static void
test_dump_round_trip_odd_names(void **state)
{
	/* Quotes, backslashes, ':' and '#' survive the dump as they are. */
	struct config *cfg = load_ok("listeners:\n"
				     "  - name: \"say \\\"hi\\\" \\\\ # not a comment: ok\"\n"
				     "    listen: 127.0.0.1:0\n"
				     "    upstream: whoami:80\n"
				     "  - name: \"caf\\u00e9 \\t tab\"\n"
				     "    listen: 127.0.0.1:0\n"
				     "    upstream: whoami:80\n");

	(void)state;
	assert_string_equal(cfg->listeners[0].name, "say \"hi\" \\ # not a comment: ok");
	assert_string_equal(cfg->listeners[1].name, "caf\xc3\xa9 \t tab");
	round_trip(cfg);
}

static void
test_dump_round_trip_control_bytes(void **state)
{
	/* YAML escapes put any byte in a name; the dump must escape them back. */
	struct config *cfg = load_ok("listeners:\n"
				     "  - name: \"two\\nlines\"\n"
				     "    listen: 127.0.0.1:0\n"
				     "    upstream: whoami:80\n"
				     "  - name: \"bell\\x07\"\n"
				     "    listen: 127.0.0.1:0\n"
				     "    upstream: whoami:80\n");

	(void)state;
	assert_string_equal(cfg->listeners[0].name, "two\nlines");
	assert_string_equal(cfg->listeners[1].name, "bell\a");
	round_trip(cfg);
}

/* ---- durations ---- */

static void
test_parse_duration_table(void **state)
{
	static const struct {
		const char *text;
		int64_t ms;
	} ok[] = {
	    {"0", 0},
	    {"0ms", 0},
	    {"0s", 0},
	    {"1ms", 1},
	    {"250ms", 250},
	    {"1500ms", 1500},
	    {"5s", 5000},
	    {"90s", 90000},
	    {"10m", 600000},
	    {"1h", 3600000},
	    {"24h", 86400000},
	    {"007s", 7000},
	    {"8760h", (int64_t)8760 * 3600000},
	    {"525600m", (int64_t)8760 * 3600000},
	    {"31536000s", (int64_t)8760 * 3600000},
	    {"31536000000ms", (int64_t)8760 * 3600000},
	};
	static const char *const bad[] = {
	    "",
	    "5",
	    "5x",
	    "-1s",
	    "+1s",
	    "1.5s",
	    " 5s",
	    "5s ",
	    "5 s",
	    "5S",
	    "5MS",
	    "s",
	    "ms",
	    "5sec",
	    "5d",
	    "1h30m",
	    "0x10s",
	    "5ss",
	    "8761h",
	    "31536000001ms",
	    "525601m",
	    "99999999999999999999s",
	    "9223372036854775807ms",
	    "9223372036854775808ms",
	    "18446744073709551616h",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int64_t ms = -7;
		if (config_parse_duration(ok[i].text, &ms) != 0)
			fail_msg("'%s' rejected", ok[i].text);
		if (ms != ok[i].ms)
			fail_msg("'%s' gave %lld, want %lld", ok[i].text, (long long)ms,
				 (long long)ok[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t ms = -7;
		if (config_parse_duration(bad[i], &ms) != -1)
			fail_msg("'%s' accepted as %lld ms", bad[i], (long long)ms);
		assert_int_equal(ms, -7);
	}
}

static void
test_format_duration_table(void **state)
{
	static const struct {
		int64_t ms;
		const char *text;
	} cases[] = {
	    {0, "0"},
	    {1, "1ms"},
	    {999, "999ms"},
	    {1000, "1s"},
	    {1500, "1500ms"},
	    {59000, "59s"},
	    {60000, "1m"},
	    {90000, "90s"},
	    {3600000, "1h"},
	    {5400000, "90m"},
	    {3601000, "3601s"},
	    {86400000, "24h"},
	    {(int64_t)8760 * 3600000, "8760h"},
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_ptr_equal(config_format_duration(cases[i].ms, buf, sizeof(buf)), buf);
		assert_string_equal(buf, cases[i].text);
	}
	/* Whatever is formatted parses back to the same value. */
	for (int64_t ms = 0; ms < 200000; ms += 250) {
		int64_t back = -1;
		config_format_duration(ms, buf, sizeof(buf));
		assert_int_equal(config_parse_duration(buf, &back), 0);
		assert_int_equal(back, ms);
	}
	/* A short buffer is cut, still terminated. */
	{
		char small[3];
		config_format_duration(1500, small, sizeof(small));
		assert_string_equal(small, "15");
	}
}

/* ---- quick mode ---- */

static int
qset(struct config *cfg, const char *setting, const char *value, char *err, size_t errlen)
{
	err[0] = '\0';
	return config_quick_set(cfg, setting, value, err, errlen);
}

static void
test_quick_ok(void **state)
{
	struct config *cfg = own_cfg(config_quick_new());
	const struct config_listener *l;
	char err[512], buf[NET_ADDRSTRLEN], *errs = NULL;
	size_t size = 0;
	FILE *f;

	(void)state;
	assert_non_null(cfg);
	assert_int_equal(qset(cfg, "listen", ":8080", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "upstream", "whoami:80", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "mode", "tcp", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "connect-timeout", "2s", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "idle-timeout", "0", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "log-level", "warn", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "log-format", "json", err, sizeof(err)), 0);
	assert_int_equal(
	    qset(cfg, "nameservers", "127.0.0.1:5353, 127.0.0.11,[::1]:53", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "refresh", "1m", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "min-ttl", "5s", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "drain-timeout", "3s", err, sizeof(err)), 0);
	/* A later value replaces an earlier one, lists included. */
	assert_int_equal(qset(cfg, "upstream", "[::1]:81", err, sizeof(err)), 0);

	f = open_memstream(&errs, &size);
	assert_int_equal(config_quick_finish(cfg, f), 0);
	fclose(f);
	own_str(errs);
	assert_string_equal(errs, "");

	assert_int_equal(cfg->n_listeners, 1);
	l = &cfg->listeners[0];
	assert_string_equal(l->name, "default");
	assert_string_equal(fmt_addr(&l->listen, buf, sizeof(buf)), "0.0.0.0:8080");
	assert_string_equal(l->upstream.host, "::1");
	assert_int_equal(l->upstream.port, 81);
	assert_int_equal(l->connect_timeout, 2000);
	assert_int_equal(l->idle_timeout, 0);
	assert_int_equal(l->max_connections, cfg->defaults.max_connections);
	assert_int_equal(cfg->log.level, LOG_LEVEL_WARN);
	assert_int_equal(cfg->log.format, LOG_FORMAT_JSON);
	assert_int_equal(cfg->resolver.nameservers.n, 3);
	assert_string_equal(cfg->resolver.nameservers.v[0], "127.0.0.1:5353");
	assert_string_equal(cfg->resolver.nameservers.v[1], "127.0.0.11");
	assert_string_equal(cfg->resolver.nameservers.v[2], "[::1]:53");
	assert_int_equal(cfg->resolver.refresh, 60000);
	assert_int_equal(cfg->resolver.min_ttl, 5000);
	assert_int_equal(cfg->defaults.drain_timeout, 3000);

	/* A quick config dumps to a file config that loads to the same thing. */
	round_trip(cfg);
}

static void
test_quick_name_and_replaced_list(void **state)
{
	struct config *cfg = own_cfg(config_quick_new());
	char err[512];

	(void)state;
	assert_int_equal(qset(cfg, "name", "edge", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "listen", "127.0.0.1:0", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "upstream", "10.1.1.1:443", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "max-connections", "7", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "nameservers", "127.0.0.1,127.0.0.2", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "nameservers", "127.0.0.3", err, sizeof(err)), 0);
	assert_int_equal(config_quick_finish(cfg, stderr), 0);
	assert_string_equal(cfg->listeners[0].name, "edge");
	assert_int_equal(cfg->listeners[0].max_connections, 7);
	assert_int_equal(cfg->resolver.nameservers.n, 1);
	assert_string_equal(cfg->resolver.nameservers.v[0], "127.0.0.3");
}

static void
test_quick_bad_values(void **state)
{
	static const struct {
		const char *setting, *value, *msg;
	} cases[] = {
	    {"listen", "nowhere", "missing ':PORT' in listen 'nowhere'"},
	    {"listen", "localhost:80", "invalid listen address 'localhost:80'"},
	    {"listen", "127.0.0.1:70000", "invalid port '70000' in listen"},
	    {"upstream", "whoami:0", "invalid port '0' in upstream 'whoami:0'"},
	    {"upstream", "whoami", "missing ':PORT' in upstream 'whoami'"},
	    {"upstream", "bad host:80", "invalid host 'bad host'"},
	    {"mode", "udp", "invalid mode 'udp' (use tcp"},
	    {"name", "", "'name' must not be empty"},
	    {"connect-timeout", "5", "invalid duration '5'"},
	    {"connect-timeout", "0", "'connect_timeout' must be between"},
	    {"idle-timeout", "1.5s", "invalid duration '1.5s'"},
	    {"max-connections", "-1", "invalid number '-1'"},
	    {"max-connections", "many", "invalid number 'many'"},
	    {"log-level", "trace", "invalid level 'trace' (use debug, info, warn or error)"},
	    {"log-format", "text", "invalid format 'text' (use logfmt or json)"},
	    {"nameservers", "127.0.0.1,dns.google", "invalid nameserver 'dns.google'"},
	    {"refresh", "500ms", "'refresh' must be between 1s and 8760h"},
	    {"min-ttl", "-1s", "invalid duration '-1s'"},
	    {"drain-timeout", "soon", "invalid duration 'soon'"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cfg = own_cfg(config_quick_new());
		char err[512];
		int rc = qset(cfg, cases[i].setting, cases[i].value, err, sizeof(err));

		if (rc != -1)
			fail_msg("--%s %s: got %d, want -1", cases[i].setting, cases[i].value, rc);
		if (strncmp(err, cases[i].msg, strlen(cases[i].msg)) != 0)
			fail_msg("--%s %s: message '%s', want it to start with '%s'",
				 cases[i].setting, cases[i].value, err, cases[i].msg);
	}
}

static void
test_quick_unknown_setting(void **state)
{
	struct config *cfg = own_cfg(config_quick_new());
	char err[128];

	(void)state;
	assert_int_equal(qset(cfg, "upstrem", "x:1", err, sizeof(err)), -2);
	assert_string_equal(err, "unknown setting 'upstrem'");
	/* Settings use dashes, as the options do; the YAML spelling is not a setting. */
	assert_int_equal(qset(cfg, "connect_timeout", "5s", err, sizeof(err)), -2);
	assert_int_equal(qset(cfg, "timeout", "5s", err, sizeof(err)), -2);
	assert_int_equal(qset(cfg, "", "5s", err, sizeof(err)), -2);
}

static void
test_quick_settings_list(void **state)
{
	/* A value each of these settings accepts. */
	static const char *const values[][2] = {
	    {"listen", "127.0.0.1:0"}, {"upstream", "a:1"},
	    {"mode", "tcp"},	       {"name", "n"},
	    {"connect-timeout", "1s"}, {"idle-timeout", "1s"},
	    {"max-connections", "1"},  {"log-level", "info"},
	    {"log-format", "logfmt"},  {"nameservers", "127.0.0.1"},
	    {"refresh", "2s"},	       {"min-ttl", "1s"},
	    {"drain-timeout", "1s"},
	};
	size_t n;

	(void)state;
	/* Every listed setting is known: a bad value gives -1, never -2. */
	for (n = 0; config_option(n) != NULL; n++) {
		struct config *cfg = own_cfg(config_quick_new());
		char err[256];
		int rc = qset(cfg, config_option(n)->flag, "\x01", err, sizeof(err));

		if (rc == -2)
			fail_msg("listed setting '%s' is unknown to config_quick_set",
				 config_option(n)->flag);
	}
	/* And each documented one is listed and takes a good value. */
	for (size_t j = 0; j < sizeof(values) / sizeof(values[0]); j++) {
		struct config *cfg = own_cfg(config_quick_new());
		char err[256];
		size_t k;

		for (k = 0; config_option(k) != NULL; k++)
			if (strcmp(config_option(k)->flag, values[j][0]) == 0)
				break;
		if (config_option(k) == NULL)
			fail_msg("setting '%s' is not a quick-mode option", values[j][0]);
		if (qset(cfg, values[j][0], values[j][1], err, sizeof(err)) != 0)
			fail_msg("--%s %s: %s", values[j][0], values[j][1], err);
	}
}

static void
test_quick_finish_missing(void **state)
{
	struct config *cfg;
	char *errs = NULL, err[128];
	size_t size = 0;
	FILE *f;

	(void)state;
	cfg = own_cfg(config_quick_new());
	f = open_memstream(&errs, &size);
	assert_int_equal(config_quick_finish(cfg, f), -1);
	fclose(f);
	own_str(errs);
	assert_string_equal(
	    errs, "gatekeeper: listeners[0]: missing required key 'listen'; give --listen or "
		  "GATEKEEPER_LISTEN\n"
		  "gatekeeper: listeners[0]: missing required key 'upstream'; give --upstream or "
		  "GATEKEEPER_UPSTREAM\n");

	/* Only the upstream missing. */
	cfg = own_cfg(config_quick_new());
	assert_int_equal(qset(cfg, "listen", ":1", err, sizeof(err)), 0);
	errs = NULL;
	f = open_memstream(&errs, &size);
	assert_int_equal(config_quick_finish(cfg, f), -1);
	fclose(f);
	own_str(errs);
	assert_string_equal(errs, "gatekeeper: listeners[0]: missing required key 'upstream'; give "
				  "--upstream or GATEKEEPER_UPSTREAM\n");

	/* Cross-checks run in quick mode too. */
	cfg = own_cfg(config_quick_new());
	assert_int_equal(qset(cfg, "listen", ":1", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "upstream", "a:1", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "refresh", "2s", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "min-ttl", "3s", err, sizeof(err)), 0);
	errs = NULL;
	f = open_memstream(&errs, &size);
	assert_int_equal(config_quick_finish(cfg, f), -1);
	fclose(f);
	own_str(errs);
	assert_int_equal(count_lines(errs), 1);
	assert_non_null(strstr(errs, "min_ttl must not exceed refresh"));
}

/* finish_errors runs config_quick_finish and returns what it wrote (owned). */
static char *
finish_errors(struct config *cfg, int want_rc)
{
	char *errs = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&errs, &size);

	assert_non_null(f);
	assert_int_equal(config_quick_finish(cfg, f), want_rc);
	fclose(f);
	return own_str(errs);
}

/* strip_positions drops each line's "NAME: " or "NAME:LINE:COL: " prefix, in place. */
static char *
strip_positions(char *s)
{
	char *out = s, *line = s;

	while (*line != '\0') {
		char *nl = strchr(line, '\n'), *body = strstr(line, ": ");
		size_t n;
		if (nl == NULL)
			nl = line + strlen(line);
		body = body != NULL && body < nl ? body + 2 : line;
		n = (size_t)(nl - body) + (*nl == '\n');
		memmove(out, body, n);
		out += n;
		line = *nl == '\n' ? nl + 1 : nl;
	}
	*out = '\0';
	return s;
}

static void
test_quick_same_validation_as_a_file(void **state)
{
	static const struct {
		const char *settings[10]; /* setting, value, ..., NULL */
		const char *yaml;	  /* the same listener, as a file */
	} cases[] = {
	    {{"mode", "connect", "upstream", "x:1", "listen", ":1"},
	     "  - name: default\n    listen: \":1\"\n    mode: connect\n    upstream: x:1\n"},
	    {{"mode", "tcp", "allow", "a.example.com", "upstream", "x:1", "listen", ":1"},
	     "  - name: default\n    listen: \":1\"\n    upstream: x:1\n"
	     "    allow: [a.example.com]\n"},
	    {{"mode", "tls", "allow", "a.example.com:443", "proxy-auth", "u:p", "listen", ":1"},
	     "  - name: default\n    listen: \":1\"\n    mode: tls\n"
	     "    allow: [\"a.example.com:443\"]\n    proxy_auth: [\"u:p\"]\n"},
	    {{"mode", "tcp", "upstream", "$host:443", "port", "443", "listen", ":1"},
	     "  - name: default\n    listen: \":1\"\n    upstream: \"$host:443\"\n"
	     "    port: 443\n"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cfg = own_cfg(config_quick_new());
		char err[512], text[512], *quick, *file = NULL;

		for (size_t j = 0; cases[i].settings[j] != NULL; j += 2)
			if (qset(cfg, cases[i].settings[j], cases[i].settings[j + 1], err,
				 sizeof(err)) != 0)
				fail_msg("--%s: %s", cases[i].settings[j], err);
		quick = finish_errors(cfg, -1);
		snprintf(text, sizeof(text), "listeners:\n%s", cases[i].yaml);
		assert_null(load(text, &file));
		/* The same messages, quick mode's without a file position. */
		assert_int_equal(strncmp(quick, "gatekeeper: listeners[0]: ", 26), 0);
		assert_int_equal(strncmp(file, NAME ":2:5: listeners[0]: ", 21), 0);
		assert_string_equal(strip_positions(quick), strip_positions(file));
	}
}

static void
test_quick_egress_gateway(void **state)
{
	struct config *cfg = own_cfg(config_quick_new()), *file;
	const struct config_listener *l;
	char err[512];

	(void)state;
	/* The README's example: an allowlisted TLS gateway from settings alone. */
	assert_int_equal(qset(cfg, "mode", "tls", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "allow", "api.github.com, *.pypi.org,", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "listen", "0.0.0.0:443", err, sizeof(err)), 0);
	assert_string_equal(finish_errors(cfg, 0), "");
	l = &cfg->listeners[0];
	assert_int_equal(l->mode, CONFIG_MODE_TLS);
	assert_null(l->upstream.host);
	assert_int_equal(l->n_allow, 2);
	assert_string_equal(l->allow[0].pattern, "api.github.com");
	assert_string_equal(l->allow[1].pattern, "*.pypi.org");
	{
		/* compiled with the configuration: an egress policy, guarded */
		struct policy_verdict v;
		assert_non_null(l->policy);
		assert_int_equal(policy_route(l->policy, "x.pypi.org", 0, 443, NULL, &v), 0);
		assert_true(v.guarded);
		assert_int_equal(policy_route(l->policy, "pypi.org", 0, 443, NULL, &v), -1);
	}
	file = load_ok("listeners:\n  - name: default\n    listen: 0.0.0.0:443\n    mode: tls\n"
		       "    allow: [api.github.com, \"*.pypi.org\"]\n");
	assert_string_equal(dump_string(cfg), dump_string(file));
	round_trip(cfg);

	/* An empty allowlist with no upstream denies everything, and the dump says so. */
	round_trip(load_ok("listeners:\n  - name: a\n    listen: \":1\"\n    mode: tls\n"
			   "    allow: []\n"));
	cfg = own_cfg(config_quick_new());
	assert_int_equal(qset(cfg, "name", "caf\xc3\xa9", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "listen", ":1", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "upstream", "a:1", err, sizeof(err)), 0);
	assert_string_equal(finish_errors(cfg, 0), "");
	round_trip(cfg);

	/* Every egress key, lists replaced by a later value. */
	cfg = own_cfg(config_quick_new());
	assert_int_equal(qset(cfg, "mode", "connect", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "listen", "127.0.0.1:3128", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "allow", "old.example.com", err, sizeof(err)), 0);
	assert_int_equal(
	    qset(cfg, "allow", "api.example.com:443,10.0.0.0/8:22,[::1]:8443", err, sizeof(err)),
	    0);
	assert_int_equal(qset(cfg, "allow-ranges", "127.0.0.0/8,::1", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "deny-ranges", "127.0.0.9", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "proxy-auth", "ann:secret,bob:pw", err, sizeof(err)), 0);
	assert_string_equal(finish_errors(cfg, 0), "");
	l = &cfg->listeners[0];
	assert_int_equal(l->n_allow, 3);
	assert_string_equal(l->allow[0].pattern, "api.example.com");
	assert_int_equal(l->allow[0].port, 443);
	assert_null(l->allow[1].pattern);
	assert_int_equal(l->allow[1].cidr.prefix, 8);
	assert_int_equal(l->allow[1].port, 22);
	assert_int_equal(l->allow[2].cidr.prefix, 128);
	assert_int_equal(l->n_allow_ranges, 2);
	assert_int_equal(l->n_deny_ranges, 1);
	assert_int_equal(l->deny_ranges[0].prefix, 32);
	assert_int_equal(l->proxy_auth.n, 2);
	/* Validation computes what clients send, as for a file. */
	assert_int_equal(l->proxy_auth_b64.n, 2);
	assert_string_equal(l->proxy_auth_b64.v[0], "YW5uOnNlY3JldA==");

	/* A pinned tunnel: tcp with egress and a port-less upstream check. */
	cfg = own_cfg(config_quick_new());
	assert_int_equal(qset(cfg, "listen", ":1", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "upstream", "api.example.com:443", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "egress", "true", err, sizeof(err)), 0);
	assert_string_equal(finish_errors(cfg, 0), "");
	assert_true(cfg->listeners[0].egress);

	/* tls with allow and an upstream port. */
	cfg = own_cfg(config_quick_new());
	assert_int_equal(qset(cfg, "mode", "tls", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "listen", ":1", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "allow", "*.example.com", err, sizeof(err)), 0);
	assert_int_equal(qset(cfg, "port", "8443", err, sizeof(err)), 0);
	assert_string_equal(finish_errors(cfg, 0), "");
	assert_int_equal(cfg->listeners[0].port, 8443);
}

static void
test_quick_egress_bad_values(void **state)
{
	static const struct {
		const char *setting, *value, *msg;
	} cases[] = {
	    {"allow", "api.example.com,bad name", "invalid"},
	    {"allow", "a.example.com:99999", "invalid port in allow entry 'a.example.com:99999'"},
	    {"allow", "10.0.0.0/33", "invalid allow entry '10.0.0.0/33'"},
	    {"allow-ranges", "10.0.0.0/8,nowhere",
	     "invalid address block 'nowhere' in "
	     "'allow_ranges'"},
	    {"deny-ranges", "::1/129", "invalid address block '::1/129' in 'deny_ranges'"},
	    {"proxy-auth", "nocolon", "invalid credentials in 'proxy_auth' (use"},
	    {"port", "0", "invalid number '0' for 'port' (use a whole number from 1 to 65535)"},
	    {"egress", "maybe", "invalid value 'maybe' for 'egress' (use true or false)"},
	    /* A file is UTF-8 by the time it is read; settings must be too. */
	    {"name", "caf\xe9", "'name' must be UTF-8 text"},
	    {"user", "\xc0\xaf", "'user' must be UTF-8 text"},
	    {"proxy-auth", "ann:\xed\xa0\x80", "'proxy_auth' must be UTF-8 text"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cfg = own_cfg(config_quick_new());
		char err[512];
		int rc = qset(cfg, cases[i].setting, cases[i].value, err, sizeof(err));

		if (rc != -1)
			fail_msg("--%s %s: got %d, want -1", cases[i].setting, cases[i].value, rc);
		if (strncmp(err, cases[i].msg, strlen(cases[i].msg)) != 0)
			fail_msg("--%s %s: message '%s', want it to start with '%s'",
				 cases[i].setting, cases[i].value, err, cases[i].msg);
	}
}

/* ---- the key table and the documents made from it ---- */

/* read_doc returns the text of a file of the tree (owned); root is where the tree is. */
static char *
read_doc(const char *rel)
{
	char path[512], *text = NULL;
	size_t size = 0, n;
	const char *here = __FILE__, *cut = strstr(here, "tests/unit/");
	FILE *f, *m;
	char buf[4096];

	snprintf(path, sizeof(path), "%.*s%s", cut ? (int)(cut - here) : 0, here, rel);
	if ((f = fopen(path, "r")) == NULL)
		fail_msg("cannot open %s", path);
	m = open_memstream(&text, &size);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, m);
	fclose(f);
	fclose(m);
	return own_str(text);
}

/* section returns the part of a Markdown text from the heading to the next of its level. */
static char *
section(const char *md, const char *heading)
{
	const char *start = strstr(md, heading), *end;
	size_t level = strspn(heading, "#");
	char next[16];

	if (start == NULL)
		fail_msg("README.md has no '%s'", heading);
	snprintf(next, sizeof(next), "\n%.*s ", (int)level, "#######");
	end = strstr(start + 1, next);
	/* A heading of a higher level ends it too. */
	if (level > 2) {
		const char *up = strstr(start + 1, "\n## ");
		if (up != NULL && (end == NULL || up < end))
			end = up;
	}
	return own_str(strndup(start, end ? (size_t)(end - start) : strlen(start)));
}

/* yaml_mentions: does conf text name key (a word followed by ':') after *from? */
static int
yaml_mentions(const char *text, const char *key, const char **from)
{
	size_t n = strlen(key);

	for (const char *p = strstr(*from, key); p != NULL; p = strstr(p + 1, key)) {
		char before = p == text ? '\n' : p[-1];
		if (p[n] == ':' && strchr("\n #-{", before) != NULL) {
			*from = p + n;
			return 1;
		}
	}
	return 0;
}

static void
test_key_table_is_documented(void **state)
{
	char *readme = read_doc("README.md"), *conf = read_doc("conf/gatekeeper.yaml");
	char *ref = section(readme, "## Configuration reference");
	char *quick = section(readme, "### Quick mode");
	char *usage = NULL, needle[160];
	size_t size = 0, n_keys = 0;
	struct config_keyinfo info;
	const struct config_option *o;
	FILE *f;

	(void)state;
	for (size_t i = 0; config_key_info(i, &info) == 0; i++, n_keys++) {
		const char *from = conf, *p;
		char part[96];

		/* README: `path` in the reference (`listeners[]...` for lists of mappings). */
		snprintf(needle, sizeof(needle), "`%s", info.path);
		for (p = strstr(ref, needle); p != NULL; p = strstr(p + 1, needle))
			if (p[strlen(needle)] == '`' || p[strlen(needle)] == '[')
				break;
		if (p == NULL)
			fail_msg("README.md's configuration reference does not name `%s`",
				 info.path);
		/* conf/gatekeeper.yaml: each part of the path, in order. */
		for (const char *s = info.path; *s != '\0';) {
			size_t len = strcspn(s, ".[");
			snprintf(part, sizeof(part), "%.*s", (int)len, s);
			if (!yaml_mentions(conf, part, &from))
				fail_msg("conf/gatekeeper.yaml does not name '%s' (of %s)", part,
					 info.path);
			s += len;
			s += strspn(s, ".[]");
		}
		assert_non_null(info.help);
	}
	assert_true(n_keys >= 50); /* a walk that stopped early would pass the rest */

	f = open_memstream(&usage, &size);
	fputc('\n', f); /* each option line starts after a newline */
	config_usage(f);
	fclose(f);
	own_str(usage);
	for (size_t i = 0; (o = config_option(i)) != NULL; i++) {
		char env[64];
		size_t k = (size_t)snprintf(env, sizeof(env), "GATEKEEPER_");

		/* The variable is the option's name, upper case, '_' for '-'. */
		for (const char *c = o->flag; *c && k + 1 < sizeof(env); c++)
			env[k++] = *c == '-' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
		env[k] = '\0';
		assert_string_equal(o->env, env);
		snprintf(needle, sizeof(needle), "\n  --%s ", o->flag);
		if (strstr(usage, needle) == NULL)
			fail_msg("--help does not show --%s:\n%s", o->flag, usage);
		snprintf(needle, sizeof(needle), "`--%s", o->flag);
		if (strstr(quick, needle) == NULL)
			fail_msg("README.md's quick mode section does not show --%s", o->flag);
		snprintf(needle, sizeof(needle), "`%s`", o->env);
		if (strstr(quick, needle) == NULL)
			fail_msg("README.md's quick mode section does not show %s", o->env);
		/* And config_quick_set knows it. */
		assert_int_not_equal(config_quick_set(own_cfg(config_quick_new()), o->flag, "\x01",
						      needle, sizeof(needle)),
				     -2);
	}
}

static void
test_option_suggest(void **state)
{
	(void)state;
	assert_string_equal(config_option_suggest("upstrem"), "upstream");
	assert_string_equal(config_option_suggest("connect_timeout"), "connect-timeout");
	assert_string_equal(config_option_suggest("Allow-Ranges"), "allow-ranges");
	assert_null(config_option_suggest("zzzzzzzzzzzz"));
}

/* ---- environment variables in values ---- */

/* Every variable the tests below set; the teardown unsets them all. */
static const char *const test_env[] = {"GK_T_NAME",    "GK_T_PORT", "GK_T_HOST", "GK_T_UNSET",
				       "GK_T_EMPTY",   "GK_T_DNS",  "GK_T_DNS1", "GK_T_DNS2",
				       "GK_T_TIMEOUT", "GK_T_LOOP", "GK_T_A",	 "GK_T_B",
				       "GK_T_KEY",     "GK_T_SITE", NULL};

static int
free_owned_env(void **state)
{
	for (size_t i = 0; test_env[i] != NULL; i++)
		unsetenv(test_env[i]);
	return free_owned(state);
}

static void
test_env_plain(void **state)
{
	struct config *cfg;
	char buf[NET_ADDRSTRLEN], *text;

	(void)state;
	setenv("GK_T_NAME", "web", 1);
	setenv("GK_T_PORT", "8443", 1);
	setenv("GK_T_TIMEOUT", "90s", 1);
	cfg = load_ok("listeners:\n"
		      "  - name: ${GK_T_NAME}\n"
		      "    listen: \"127.0.0.1:${GK_T_PORT}\"\n"
		      "    upstream: whoami:80\n"
		      "    idle_timeout: ${GK_T_TIMEOUT}\n");
	assert_string_equal(cfg->listeners[0].name, "web");
	assert_string_equal(fmt_addr(&cfg->listeners[0].listen, buf, sizeof(buf)),
			    "127.0.0.1:8443");
	assert_int_equal(cfg->listeners[0].idle_timeout, 90000);
	/* -T prints the values the variables gave. */
	text = dump_string(cfg);
	assert_non_null(strstr(text, "  - name: \"web\"\n    listen: \"127.0.0.1:8443\"\n"));
	assert_non_null(strstr(text, "    idle_timeout: 90s\n"));
	assert_null(strstr(text, "${"));
	round_trip(cfg);
}

static void
test_env_default_unset_or_empty(void **state)
{
	struct config *cfg;

	(void)state;
	unsetenv("GK_T_UNSET");
	setenv("GK_T_EMPTY", "", 1);
	cfg = load_ok("log:\n"
		      "  level: ${GK_T_UNSET:-debug}\n"
		      "  format: ${GK_T_EMPTY:-json}\n"
		      "defaults: ${GK_T_UNSET:-}\n"
		      "listeners:\n"
		      "  - name: \"[${GK_T_UNSET:-a:-b{c$d $${x}]\"\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n"
		      "  - name: \"x${GK_T_EMPTY}y${GK_T_EMPTY:-}z\"\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n");
	assert_int_equal(cfg->log.level, LOG_LEVEL_DEBUG);
	assert_int_equal(cfg->log.format, LOG_FORMAT_JSON);
	/* A default runs to the first '}', and is not expanded itself. */
	assert_string_equal(cfg->listeners[0].name, "[a:-b{c$d $${x]");
	/* Set but empty without a default is empty, not an error. */
	assert_string_equal(cfg->listeners[1].name, "xyz");
	round_trip(cfg);
}

static void
test_env_value_wins_over_default(void **state)
{
	struct config *cfg;

	(void)state;
	setenv("GK_T_NAME", "from-env", 1);
	setenv("GK_T_TIMEOUT", "250ms", 1);
	cfg = load_ok("listeners:\n"
		      "  - name: ${GK_T_NAME:-from-default}\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n"
		      "    connect_timeout: ${GK_T_TIMEOUT:-5s}\n");
	assert_string_equal(cfg->listeners[0].name, "from-env");
	assert_int_equal(cfg->listeners[0].connect_timeout, 250);
}

static void
test_env_several_in_one_scalar(void **state)
{
	struct config *cfg;

	(void)state;
	setenv("GK_T_HOST", "api.internal", 1);
	setenv("GK_T_PORT", "8080", 1);
	setenv("GK_T_NAME", "edge", 1);
	unsetenv("GK_T_UNSET");
	cfg = load_ok("listeners:\n"
		      "  - name: ${GK_T_NAME}-${GK_T_UNSET:-eu}-${GK_T_PORT}${GK_T_NAME}\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: ${GK_T_HOST}:${GK_T_PORT}\n");
	assert_string_equal(cfg->listeners[0].name, "edge-eu-8080edge");
	assert_string_equal(cfg->listeners[0].upstream.host, "api.internal");
	assert_int_equal(cfg->listeners[0].upstream.port, 8080);
}

static void
test_env_in_lists(void **state)
{
	struct config *cfg;

	(void)state;
	unsetenv("GK_T_DNS");
	setenv("GK_T_DNS1", "10.0.0.1", 1);
	unsetenv("GK_T_DNS2");
	unsetenv("GK_T_SITE");
	/* One value may carry a whole comma-separated list. */
	cfg = load_ok("resolver:\n"
		      "  nameservers: \"${GK_T_DNS:-127.0.0.1, 127.0.0.2}\"\n" ONE_LISTENER);
	assert_int_equal(cfg->resolver.nameservers.n, 2);
	assert_string_equal(cfg->resolver.nameservers.v[0], "127.0.0.1");
	assert_string_equal(cfg->resolver.nameservers.v[1], "127.0.0.2");

	/* Items of a [...] list (quoted: '{' and '}' end a plain value there)... */
	cfg = load_ok("resolver:\n"
		      "  nameservers: [\"${GK_T_DNS1}\", \"${GK_T_DNS2:-10.0.0.2:5353}\", "
		      "\"${GK_T_DNS:-10.0.0.3, 10.0.0.4}\"]\n" ONE_LISTENER);
	assert_int_equal(cfg->resolver.nameservers.n, 4);
	assert_string_equal(cfg->resolver.nameservers.v[0], "10.0.0.1");
	assert_string_equal(cfg->resolver.nameservers.v[1], "10.0.0.2:5353");
	assert_string_equal(cfg->resolver.nameservers.v[2], "10.0.0.3");
	assert_string_equal(cfg->resolver.nameservers.v[3], "10.0.0.4");

	/* ...and of a block list, and a route's match list. */
	cfg = load_ok("resolver:\n"
		      "  nameservers:\n"
		      "    - ${GK_T_DNS1}\n"
		      "    - ${GK_T_DNS2:-10.0.0.9}\n"
		      "listeners:\n"
		      "  - name: a\n"
		      "    listen: 127.0.0.1:0\n"
		      "    mode: tls\n"
		      "    routes:\n"
		      "      - match: [\"${GK_T_SITE:-*.example.com}\", api.example.com]\n"
		      "        upstream: backend:443\n");
	assert_int_equal(cfg->resolver.nameservers.n, 2);
	assert_string_equal(cfg->resolver.nameservers.v[0], "10.0.0.1");
	assert_string_equal(cfg->resolver.nameservers.v[1], "10.0.0.9");
	assert_int_equal(cfg->listeners[0].routes[0].match.n, 2);
	assert_string_equal(cfg->listeners[0].routes[0].match.v[0], "*.example.com");
	assert_string_equal(cfg->listeners[0].routes[0].match.v[1], "api.example.com");
}

static void
test_env_escape(void **state)
{
	struct config *cfg;
	char *text;

	(void)state;
	setenv("GK_T_NAME", "expanded", 1);
	cfg = load_ok("listeners:\n"
		      "  - name: \"$${GK_T_NAME} costs $5, $$HOME $ $$$${GK_T_NAME}$\"\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n");
	/* $${ is a literal ${; any other '$' stays as it is. */
	assert_string_equal(cfg->listeners[0].name,
			    "${GK_T_NAME} costs $5, $$HOME $ $$${GK_T_NAME}$");
	/* The dump escapes it again, so it loads back to the same name. */
	text = dump_string(cfg);
	assert_non_null(
	    strstr(text, "name: \"$${GK_T_NAME} costs $5, $$HOME $ $$$${GK_T_NAME}$\""));
	round_trip(cfg);
}

static void
test_env_dollar_host_untouched(void **state)
{
	struct config *cfg;
	const struct config_listener *l;

	(void)state;
	unsetenv("GK_T_PORT");
	cfg = load_ok("listeners:\n"
		      "  - name: a\n"
		      "    listen: 127.0.0.1:0\n"
		      "    mode: tls\n"
		      "    upstream: $host:443\n"
		      "    routes:\n"
		      "      - match: [a.example.com]\n"
		      "        upstream: $host:443\n"
		      "      - match: [b.example.com]\n"
		      "        upstream: \"$host:${GK_T_PORT:-8443}\"\n");
	l = &cfg->listeners[0];
	assert_string_equal(l->upstream.host, "$host");
	assert_true(l->upstream.sniffed_host);
	assert_int_equal(l->upstream.port, 443);
	assert_string_equal(l->routes[0].upstream.host, "$host");
	assert_true(l->routes[0].upstream.sniffed_host);
	assert_int_equal(l->routes[0].upstream.port, 443);
	assert_string_equal(l->routes[1].upstream.host, "$host");
	assert_true(l->routes[1].upstream.sniffed_host);
	assert_int_equal(l->routes[1].upstream.port, 8443);
	round_trip(cfg);
}

static void
test_env_not_re_expanded(void **state)
{
	struct config *cfg;

	(void)state;
	/* A value is used as it is: no second pass, so no loop and no injection. */
	setenv("GK_T_LOOP", "${GK_T_LOOP}", 1);
	setenv("GK_T_A", "${GK_T_B}", 1);
	setenv("GK_T_B", "b", 1);
	unsetenv("GK_T_UNSET");
	cfg = load_ok("listeners:\n"
		      "  - name: ${GK_T_LOOP}\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n"
		      "  - name: ${GK_T_A}\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n"
		      "  - name: ${GK_T_UNSET:-${GK_T_B}\n"
		      "    listen: 127.0.0.1:0\n"
		      "    upstream: whoami:80\n");
	assert_string_equal(cfg->listeners[0].name, "${GK_T_LOOP}");
	assert_string_equal(cfg->listeners[1].name, "${GK_T_B}");
	assert_string_equal(cfg->listeners[2].name, "${GK_T_B");
	round_trip(cfg);
}

static void
test_env_keys_not_expanded(void **state)
{
	(void)state;
	setenv("GK_T_KEY", "log", 1);
	expect_errors("${GK_T_KEY}:\n"
		      "  level: info\n" ONE_LISTENER,
		      NAME ":1:1: unknown key '${GK_T_KEY}' in the top level$");
}

static void
test_env_errors(void **state)
{
	(void)state;
	unsetenv("GK_T_UNSET");
	unsetenv("EGRESS_DNS");
	expect_errors(
	    "resolver:\n"
	    "  nameservers: ${EGRESS_DNS}\n"
	    "  refresh: \"${GK_T_UNSET\"\n"
	    "  timeout: ${1X:-2s}\n"
	    "log:\n"
	    "  level: ${GK-T:-info}\n"
	    "  format: ${}\n"
	    "listeners:\n"
	    "  - name: ${GK_T_UNSET:-a} ${GK_T_UNSET}\n"
	    "    listen: 127.0.0.1:0\n"
	    "    upstream: whoami:80\n"
	    "    idle_timeout: ${GK_T_UNSET:x}\n"
	    "    connect_timeout: [\"${GK_T_UNSET:-1s} }\", \"$${\"]\n"
	    "    max_connections: ${GK_T_UNSET}}\n"
	    "    mode: tls\n"
	    "    routes:\n"
	    "      - match: [\"a.example.com\", \"${GK_T_UNSET}\"]\n"
	    "        upstream: whoami:80\n"
	    "    upstrem: x\n",
	    NAME ":2:16: environment variable 'EGRESS_DNS' is not set (set it, or give a default: "
		 "${EGRESS_DNS:-value})$",
	    NAME
	    ":3:12: unterminated '${' in '${GK_T_UNSET' (end it with '}', or write '$${' for a "
	    "literal '${')$",
	    NAME ":4:12: invalid environment variable name '1X' in '${1X:-2s}' (use letters, "
		 "digits and '_', not starting with a digit, as in ${NAME} or ${NAME:-default})$",
	    NAME ":6:10: invalid environment variable name 'GK-T' in '${GK-T:-info}' (use ",
	    NAME ":7:11: invalid environment variable name '' in '${}' (use ",
	    NAME ":9:11: environment variable 'GK_T_UNSET' is not set (set it, or give a "
		 "default: ${GK_T_UNSET:-value})$",
	    NAME ":12:19: invalid environment variable name 'GK_T_UNSET:x' in '${GK_T_UNSET:x}' ",
	    NAME ":14:22: environment variable 'GK_T_UNSET' is not set ",
	    NAME ":17:34: environment variable 'GK_T_UNSET' is not set ",
	    /* The walk goes on: a value that did not expand is not reported twice. */
	    NAME ":13:22: 'connect_timeout' in listeners[0] must be a single value, not a list$",
	    NAME ":19:5: unknown key 'upstrem' in listeners[0] (did you mean 'upstream'?)$");
}

static void
test_env_error_in_listeners(void **state)
{
	(void)state;
	unsetenv("GK_T_UNSET");
	/* Reported once: no "no listeners defined" on top. */
	expect_errors(
	    "listeners: ${GK_T_UNSET}\n",
	    NAME ":1:12: environment variable 'GK_T_UNSET' is not set (set it, or give a default: "
		 "${GK_T_UNSET:-value})$");
}

static void
test_env_bad_expanded_value(void **state)
{
	(void)state;
	setenv("GK_T_TIMEOUT", "5x", 1);
	setenv("GK_T_PORT", "99999", 1);
	setenv("GK_T_DNS", "127.0.0.1, dns.google", 1);
	expect_errors("resolver:\n"
		      "  nameservers: ${GK_T_DNS}\n" ONE_LISTENER
		      "    connect_timeout: ${GK_T_TIMEOUT}\n"
		      "    idle_timeout: ${GK_T_UNSET:-forever}\n"
		      "  - name: b\n"
		      "    listen: 127.0.0.1:${GK_T_PORT}\n"
		      "    upstream: whoami:80\n",
		      NAME ":2:16: invalid nameserver 'dns.google'",
		      NAME ":7:22: invalid duration '5x' for 'connect_timeout'",
		      NAME ":8:19: invalid duration 'forever' for 'idle_timeout'",
		      NAME ":10:13: invalid port '99999' in listen '127.0.0.1:99999'");
}

static void
test_env_quick_mode_not_expanded(void **state)
{
	struct config *cfg = own_cfg(config_quick_new());
	char err[512];

	(void)state;
	setenv("GK_T_NAME", "expanded", 1);
	assert_non_null(cfg);
	assert_int_equal(config_quick_set(cfg, "name", "${GK_T_NAME}", err, sizeof(err)), 0);
	assert_int_equal(config_quick_set(cfg, "listen", "127.0.0.1:0", err, sizeof(err)), 0);
	assert_int_equal(config_quick_set(cfg, "upstream", "whoami:80", err, sizeof(err)), 0);
	assert_int_equal(config_quick_finish(cfg, stderr), 0);
	assert_string_equal(cfg->listeners[0].name, "${GK_T_NAME}");
	round_trip(cfg);
}

/* ---- config_load on a file ---- */

static void
test_load_file(void **state)
{
	char path[] = "/tmp/gk-test-config-XXXXXX", want[128];
	char *errs = NULL;
	size_t size = 0;
	struct config *cfg;
	FILE *f;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(ONE_LISTENER "    upstrem: x\n", f);
	fclose(f);

	f = open_memstream(&errs, &size);
	cfg = own_cfg(config_load(path, f));
	fclose(f);
	own_str(errs);
	assert_null(cfg);
	snprintf(want, sizeof(want),
		 "%s:5:5: unknown key 'upstrem' in listeners[0] (did you mean 'upstream'?)\n",
		 path);
	assert_string_equal(errs, want);

	f = fopen(path, "w");
	fputs(ONE_LISTENER, f);
	fclose(f);
	cfg = own_cfg(config_load(path, stderr));
	assert_non_null(cfg);
	assert_string_equal(cfg->path, path);
	unlink(path);

	errs = NULL;
	f = open_memstream(&errs, &size);
	assert_null(own_cfg(config_load(path, f)));
	fclose(f);
	own_str(errs);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory\n", path);
	assert_string_equal(errs, want);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_sources, free_owned),
	    cmocka_unit_test_teardown(test_unknown_keys_did_you_mean, free_owned),
	    cmocka_unit_test_teardown(test_unknown_keys_in_sections, free_owned),
	    cmocka_unit_test_teardown(test_unknown_key_in_second_listener, free_owned),
	    cmocka_unit_test_teardown(test_bad_durations, free_owned),
	    cmocka_unit_test_teardown(test_durations_out_of_range, free_owned),
	    cmocka_unit_test_teardown(test_bad_ports, free_owned),
	    cmocka_unit_test_teardown(test_bad_listen_addresses, free_owned),
	    cmocka_unit_test_teardown(test_bad_nameservers, free_owned),
	    cmocka_unit_test_teardown(test_bad_enums, free_owned),
	    cmocka_unit_test_teardown(test_listeners_as_mapping, free_owned),
	    cmocka_unit_test_teardown(test_listener_item_not_mapping, free_owned),
	    cmocka_unit_test_teardown(test_http_section, free_owned),
	    cmocka_unit_test_teardown(test_sections_wrong_kind, free_owned),
	    cmocka_unit_test_teardown(test_values_wrong_kind, free_owned),
	    cmocka_unit_test_teardown(test_top_level_not_mapping, free_owned),
	    cmocka_unit_test_teardown(test_duplicate_keys, free_owned),
	    cmocka_unit_test_teardown(test_duplicate_listener_names_and_addresses, free_owned),
	    cmocka_unit_test_teardown(test_ephemeral_ports_and_families_do_not_clash, free_owned),
	    cmocka_unit_test_teardown(test_missing_required_keys, free_owned),
	    cmocka_unit_test_teardown(test_invalid_value_not_reported_as_missing, free_owned),
	    cmocka_unit_test_teardown(test_no_listeners, free_owned),
	    cmocka_unit_test_teardown(test_yaml_syntax_errors, free_owned),
	    cmocka_unit_test_teardown(test_empty_input, free_owned),
	    cmocka_unit_test_teardown(test_empty_document_marker, free_owned),
	    cmocka_unit_test_teardown(test_all_errors_reported, free_owned),
	    cmocka_unit_test_teardown(test_min_ttl_above_refresh, free_owned),
	    cmocka_unit_test_teardown(test_valid_full_config, free_owned),
	    cmocka_unit_test_teardown(test_valid_minimal_defaults, free_owned),
	    cmocka_unit_test_teardown(test_valid_nameservers_scalar_and_limits, free_owned),
	    cmocka_unit_test_teardown(test_dump_round_trip, free_owned),
	    cmocka_unit_test_teardown(test_dump_round_trip_odd_names, free_owned),
	    cmocka_unit_test_teardown(test_dump_round_trip_deny_all_and_privileges, free_owned),
	    cmocka_unit_test_teardown(test_dump_round_trip_control_bytes, free_owned),
	    cmocka_unit_test_teardown(test_parse_duration_table, free_owned),
	    cmocka_unit_test_teardown(test_format_duration_table, free_owned),
	    cmocka_unit_test_teardown(test_quick_ok, free_owned),
	    cmocka_unit_test_teardown(test_quick_name_and_replaced_list, free_owned),
	    cmocka_unit_test_teardown(test_quick_bad_values, free_owned),
	    cmocka_unit_test_teardown(test_quick_unknown_setting, free_owned),
	    cmocka_unit_test_teardown(test_quick_settings_list, free_owned),
	    cmocka_unit_test_teardown(test_quick_finish_missing, free_owned),
	    cmocka_unit_test_teardown(test_quick_same_validation_as_a_file, free_owned),
	    cmocka_unit_test_teardown(test_quick_egress_gateway, free_owned),
	    cmocka_unit_test_teardown(test_quick_egress_bad_values, free_owned),
	    cmocka_unit_test_teardown(test_key_table_is_documented, free_owned),
	    cmocka_unit_test_teardown(test_option_suggest, free_owned),
	    cmocka_unit_test_teardown(test_env_plain, free_owned_env),
	    cmocka_unit_test_teardown(test_env_default_unset_or_empty, free_owned_env),
	    cmocka_unit_test_teardown(test_env_value_wins_over_default, free_owned_env),
	    cmocka_unit_test_teardown(test_env_several_in_one_scalar, free_owned_env),
	    cmocka_unit_test_teardown(test_env_in_lists, free_owned_env),
	    cmocka_unit_test_teardown(test_env_escape, free_owned_env),
	    cmocka_unit_test_teardown(test_env_dollar_host_untouched, free_owned_env),
	    cmocka_unit_test_teardown(test_env_not_re_expanded, free_owned_env),
	    cmocka_unit_test_teardown(test_env_keys_not_expanded, free_owned_env),
	    cmocka_unit_test_teardown(test_env_errors, free_owned_env),
	    cmocka_unit_test_teardown(test_env_error_in_listeners, free_owned_env),
	    cmocka_unit_test_teardown(test_env_bad_expanded_value, free_owned_env),
	    cmocka_unit_test_teardown(test_env_quick_mode_not_expanded, free_owned_env),
	    cmocka_unit_test_teardown(test_load_file, free_owned),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
