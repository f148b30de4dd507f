/*
 * log.c: the one place that formats and writes log lines.
 *
 * A line is assembled in a fixed stack buffer and written with one write(2),
 * which keeps lines whole even when several processes share stderr. Values
 * are escaped for the chosen format: logfmt quotes values that contain
 * spaces, quotes, '=' or non-printable bytes, and JSON escapes everything
 * outside printable ASCII, so hostile bytes from the wire (a SNI, a Host
 * header) can neither break a line nor inject a field.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 4096

static enum log_level log_threshold = LOG_LEVEL_INFO;
static enum log_format log_fmt = LOG_FORMAT_LOGFMT;

struct line {
	char buf[LOG_LINE_MAX];
	size_t len;
	int truncated;
};

void
log_setup(enum log_level level, enum log_format format)
{
	/* A reload changes them on the main thread while workers log. */
	__atomic_store_n(&log_threshold, level, __ATOMIC_RELAXED);
	__atomic_store_n(&log_fmt, format, __ATOMIC_RELAXED);
}

int
log_enabled(enum log_level level)
{
	return level >= __atomic_load_n(&log_threshold, __ATOMIC_RELAXED);
}

const char *
log_level_name(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_DEBUG:
		return "debug";
	case LOG_LEVEL_INFO:
		return "info";
	case LOG_LEVEL_WARN:
		return "warn";
	case LOG_LEVEL_ERROR:
		return "error";
	}
	return "info";
}

const char *
log_format_name(enum log_format format)
{
	return format == LOG_FORMAT_JSON ? "json" : "logfmt";
}

/*
 * Room kept at the end of the buffer so a cut line can still be closed:
 * a closing quote, the truncation marker, a closing brace and a newline.
 */
#define LOG_RESERVE 32

/*
 * put appends n bytes as one unit: all of them, or (when they do not fit
 * before the reserve) none, and the line is marked truncated. Writing
 * escapes as units means a cut never leaves half an escape behind.
 */
static int
put(struct line *l, const char *s, size_t n)
{
	if (l->truncated || l->len + n > sizeof(l->buf) - LOG_RESERVE) {
		l->truncated = 1;
		return -1;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	return 0;
}

static int
puts_(struct line *l, const char *s)
{
	return put(l, s, strlen(s));
}

/* put_raw appends bytes that are known to fit, inside the reserve. */
static void
put_raw(struct line *l, const char *s)
{
	size_t n = strlen(s);

	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static int
logfmt_needs_quotes(const char *s)
{
	if (*s == '\0')
		return 1;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
			return 1;
	}
	return 0;
}

/* utf8_len returns the length of a well-formed UTF-8 sequence at s, or 0. */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n;
	unsigned min;
	unsigned cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f, min = 0x80;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f, min = 0x800;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * put_escaped writes s as a logfmt value or a JSON string body. JSON keeps
 * well-formed UTF-8 and escapes every other byte outside printable ASCII;
 * logfmt escapes all of them as \xNN, so a line is always plain ASCII.
 */
static void
put_escaped(struct line *l, const char *s)
{
	char esc[8];

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		size_t u;
		int rc;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			rc = put(l, esc, 2);
		} else if (c == '\n') {
			rc = put(l, "\\n", 2);
		} else if (c == '\t') {
			rc = put(l, "\\t", 2);
		} else if (c >= 0x80 &&
			   __atomic_load_n(&log_fmt, __ATOMIC_RELAXED) == LOG_FORMAT_JSON &&
			   (u = utf8_len((const unsigned char *)s)) > 0) {
			rc = put(l, s, u);
			s += u - 1;
		} else if (c < 0x20 || c >= 0x7f) {
			if (__atomic_load_n(&log_fmt, __ATOMIC_RELAXED) == LOG_FORMAT_JSON)
				snprintf(esc, sizeof(esc), "\\u%04x", c);
			else
				snprintf(esc, sizeof(esc), "\\x%02x", c);
			rc = puts_(l, esc);
		} else {
			rc = put(l, (const char *)&c, 1);
		}
		if (rc == -1)
			return;
	}
}

/*
 * put_field appends one key/value pair. A value cut by the line limit still
 * gets its closing quote (from the reserve), so the line stays parseable.
 */
static void
put_field(struct line *l, const char *key, const char *str, long long num, int is_num)
{
	char nbuf[32];
	int quote;

	if (l->truncated)
		return;
	if (is_num) {
		snprintf(nbuf, sizeof(nbuf), "%lld", num);
		str = nbuf;
	} else if (str == NULL) {
		str = "-";
	}
	if (__atomic_load_n(&log_fmt, __ATOMIC_RELAXED) == LOG_FORMAT_JSON) {
		/* The key, its quotes and the value's opening quote go in together. */
		size_t mark = l->len;
		if (put(l, ",\"", 2) == -1 || puts_(l, key) == -1 ||
		    put(l, is_num ? "\":" : "\":\"", is_num ? 2 : 3) == -1) {
			l->len = mark;
			return;
		}
		if (is_num) {
			if (puts_(l, str) == -1)
				put_raw(l, "0");
			return;
		}
		put_escaped(l, str);
		put_raw(l, "\"");
		return;
	}
	quote = !is_num && logfmt_needs_quotes(str);
	{
		size_t mark = l->len;
		if (put(l, " ", 1) == -1 || puts_(l, key) == -1 || put(l, "=", 1) == -1 ||
		    (quote && put(l, "\"", 1) == -1)) {
			l->len = mark;
			return;
		}
	}
	put_escaped(l, str);
	if (quote)
		put_raw(l, "\"");
}

static void
put_timestamp(struct line *l)
{
	struct timespec ts;
	struct tm tm;
	char buf[96];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(ts.tv_nsec / 1000000));
	if (__atomic_load_n(&log_fmt, __ATOMIC_RELAXED) == LOG_FORMAT_JSON) {
		put(l, "{\"ts\":\"", 7);
		puts_(l, buf);
		put(l, "\"", 1);
	} else {
		put(l, "ts=", 3);
		puts_(l, buf);
	}
}

void
log_fields(enum log_level level, const char *msg, const struct log_field *fields, size_t n)
{
	struct line l;
	ssize_t w;
	size_t off;
	int saved_errno = errno;

	if (!log_enabled(level))
		return;
	l.len = 0;
	l.truncated = 0;
	put_timestamp(&l);
	put_field(&l, "level", log_level_name(level), 0, 0);
	put_field(&l, "msg", msg, 0, 0);
	for (size_t i = 0; i < n; i++)
		put_field(&l, fields[i].key, fields[i].str, fields[i].num, fields[i].is_num);
	if (l.truncated)
		put_raw(&l, __atomic_load_n(&log_fmt, __ATOMIC_RELAXED) == LOG_FORMAT_JSON
				? ",\"truncated\":true"
				: " truncated=true");
	if (__atomic_load_n(&log_fmt, __ATOMIC_RELAXED) == LOG_FORMAT_JSON)
		put_raw(&l, "}");
	put_raw(&l, "\n");
	for (off = 0; off < l.len; off += (size_t)w) {
		w = write(STDERR_FILENO, l.buf + off, l.len - off);
		if (w < 0 && errno == EINTR) {
			w = 0;
			continue;
		}
		if (w <= 0)
			break;
	}
	errno = saved_errno;
}

static void
vlog(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	char msg[1024];
	int saved_errno = errno;
	int n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno && n >= 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(saved_errno));
	log_fields(level, msg, NULL, 0);
	errno = saved_errno;
}

#define LOG_WRAPPER(fn, level, with_errno)                                                         \
	void fn(const char *fmt, ...)                                                              \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		vlog(level, with_errno, fmt, ap);                                                  \
		va_end(ap);                                                                        \
	}

LOG_WRAPPER(log_debug, LOG_LEVEL_DEBUG, 0)
LOG_WRAPPER(log_info, LOG_LEVEL_INFO, 0)
LOG_WRAPPER(log_warn, LOG_LEVEL_WARN, 1)
LOG_WRAPPER(log_warnx, LOG_LEVEL_WARN, 0)
LOG_WRAPPER(log_error, LOG_LEVEL_ERROR, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
