/*
 * config.h: the configuration, as parsed and validated.
 *
 * A config is built in one go, from a YAML file (config_load) or from
 * quick-mode settings (config_quick_new + config_quick_set +
 * config_quick_finish), and is read-only afterwards. Durations are stored in
 * milliseconds. Errors are written to a caller stream as FILE:LINE:COL:
 * message, all of them, never only the first.
 */
#ifndef GK_CONFIG_H
#define GK_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

enum config_mode {
	CONFIG_MODE_TCP,
};

/* An address to listen on: an IP literal and a port (0 = ephemeral). */
struct config_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* An upstream: a DNS name or an IP literal, and a port. */
struct config_hostport {
	char *host;
	uint16_t port;
};

struct config_strlist {
	char **v;
	size_t n;
};

struct config_listener {
	char *name;
	struct config_addr listen;
	enum config_mode mode;
	struct config_hostport upstream;
	int64_t connect_timeout; /* ms */
	int64_t idle_timeout;    /* ms; 0 = none */
	int64_t max_connections; /* 0 = unlimited */
	int line, col;           /* where it was defined, for messages */
	unsigned seen;           /* keys present in the file, one bit per key */
};

struct config_resolver {
	struct config_strlist nameservers; /* "ip" or "ip:port"; empty = resolv.conf */
	int64_t refresh;                   /* ms: the longest an answer is used */
	int64_t min_ttl;                   /* ms: the shortest */
	int64_t timeout;                   /* ms: one query attempt */
};

struct config_defaults {
	int64_t connect_timeout;
	int64_t idle_timeout;
	int64_t max_connections;
	int64_t drain_timeout;
};

struct config {
	char *path;
	struct {
		enum log_level level;
		enum log_format format;
	} log;
	struct config_resolver resolver;
	struct config_defaults defaults;
	struct config_listener *listeners;
	size_t n_listeners;
};

/*
 * config_load parses and validates a YAML file. Returns a new config the
 * caller frees with config_free, or NULL after writing every error to errs.
 */
struct config *config_load(const char *path, FILE *errs);

/* config_load_string is config_load on text in memory; name is used in messages. */
struct config *config_load_string(const char *name, const char *text, size_t len, FILE *errs);

/*
 * Quick mode: one listener, settings by name (the long option without
 * dashes: "listen", "upstream", "mode", "name", "connect-timeout",
 * "idle-timeout", "max-connections", "log-level", "log-format",
 * "nameservers", "refresh", "min-ttl", "drain-timeout").
 * config_quick_set returns 0, -1 with a message in err for a bad value, or
 * -2 for an unknown setting. config_quick_finish validates; it returns 0, or
 * -1 after writing errors to errs.
 */
struct config *config_quick_new(void);
int config_quick_set(struct config *cfg, const char *setting, const char *value, char *err,
    size_t errlen);
int config_quick_finish(struct config *cfg, FILE *errs);
/* The quick-mode setting names, NULL-terminated, in documentation order. */
extern const char *const config_quick_settings[];

/* config_dump prints the normalized config as YAML. */
void config_dump(const struct config *cfg, FILE *out);

void config_free(struct config *cfg);

/*
 * config_parse_duration parses "250ms", "5s", "10m", "1h" or "0" into
 * milliseconds. Returns 0, or -1 for anything else.
 */
int config_parse_duration(const char *text, int64_t *ms);

/* config_format_duration writes ms in the largest exact unit ("90s", "5m"). */
const char *config_format_duration(int64_t ms, char *buf, size_t len);

const char *config_mode_name(enum config_mode mode);

#endif
