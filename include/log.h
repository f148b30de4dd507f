/*
 * log.h: leveled, structured logging to stderr.
 *
 * Every line is one event: a timestamp, a level, a message and key/value
 * fields, written with a single write(2) so lines from one process never
 * interleave. The format is logfmt by default or JSON on request. Values are
 * escaped, so strings read from the wire can be logged safely.
 */
#ifndef GK_LOG_H
#define GK_LOG_H

#include <stddef.h>

enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

enum log_format {
	LOG_FORMAT_LOGFMT,
	LOG_FORMAT_JSON,
};

/* One key/value pair. Build them with LOG_STR and LOG_NUM. */
struct log_field {
	const char *key;
	const char *str; /* NULL logs as "-" */
	long long num;
	int is_num;
};

#define LOG_STR(k, v) ((struct log_field){.key = (k), .str = (v)})
#define LOG_NUM(k, v) ((struct log_field){.key = (k), .num = (long long)(v), .is_num = 1})

/* log_setup sets the threshold and the format; the default is info, logfmt. */
void log_setup(enum log_level level, enum log_format format);

/* log_enabled tells whether a line at this level would be written. */
int log_enabled(enum log_level level);

/* log_fields writes one line: msg plus the n fields in order. */
void log_fields(enum log_level level, const char *msg, const struct log_field *fields, size_t n);

/* log_kv(level, msg, LOG_STR(...), LOG_NUM(...), ...) */
#define log_kv(level, msg, ...)                                                                    \
	do {                                                                                       \
		const struct log_field log_f_[] = {__VA_ARGS__};                                   \
		log_fields((level), (msg), log_f_, sizeof(log_f_) / sizeof(log_f_[0]));            \
	} while (0)

/* printf-style lines: the formatted text becomes msg. log_warn appends errno. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* fatal logs at error level and exits 1: for start-up only, never the data path. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Names as used in the config file ("debug", "logfmt", ...). */
const char *log_level_name(enum log_level level);
const char *log_format_name(enum log_format format);

#endif
