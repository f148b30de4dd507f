/*
 * test_log.c: unit tests for log.c, reading what it writes to fd 2.
 *
 * Each test points stderr at a temporary file, logs, puts stderr back and
 * only then checks the text, so a failing assertion is never captured.
 * Lines are checked with two small strict readers written here: one for
 * logfmt (key=value, values bare or double-quoted with backslash escapes)
 * and one for a flat JSON object (RFC 8259 strings, numbers and literals,
 * valid UTF-8). Both decode values so the test compares what a log reader
 * would see with what was logged.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

#define MAXF 32

/* ---- test-owned memory ---- */

/*
 * Buffers a test allocates are registered here and freed by the teardown,
 * which runs whether the test passed or not (so a failure is not also
 * reported as a leak), and which puts fd 2 back if a test stopped while
 * it was captured.
 */
static void **owned;
static size_t n_owned;
static int saved_fd2 = -1, cap_fd = -1;

static void *
own(void *p)
{
	void **o;

	assert_non_null(p);
	o = realloc(owned, (n_owned + 1) * sizeof(*o));
	assert_non_null(o);
	owned = o;
	owned[n_owned++] = p;
	return p;
}

static int
teardown(void **state)
{
	(void)state;
	if (saved_fd2 != -1) {
		dup2(saved_fd2, STDERR_FILENO);
		close(saved_fd2);
		close(cap_fd);
		saved_fd2 = cap_fd = -1;
	}
	for (size_t i = 0; i < n_owned; i++)
		free(owned[i]);
	free(owned);
	owned = NULL;
	n_owned = 0;
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);
	return 0;
}

/* ---- capturing fd 2 ---- */

static void
capture_begin(void)
{
	char path[] = "/tmp/gk-test-log-XXXXXX";

	fflush(stderr);
	cap_fd = mkstemp(path);
	assert_true(cap_fd >= 0);
	unlink(path);
	saved_fd2 = dup(STDERR_FILENO);
	assert_true(saved_fd2 >= 0);
	assert_int_equal(dup2(cap_fd, STDERR_FILENO), STDERR_FILENO);
}

/* capture_end restores fd 2 and returns everything written (test-owned). */
static char *
capture_end(size_t *lenp)
{
	off_t size;
	char *buf;
	ssize_t r;

	fflush(stderr);
	dup2(saved_fd2, STDERR_FILENO);
	close(saved_fd2);
	saved_fd2 = -1;
	size = lseek(cap_fd, 0, SEEK_END);
	assert_true(size >= 0);
	buf = own(malloc((size_t)size + 1));
	r = pread(cap_fd, buf, (size_t)size, 0);
	assert_int_equal(r, size);
	buf[size] = '\0';
	close(cap_fd);
	cap_fd = -1;
	if (lenp != NULL)
		*lenp = (size_t)size;
	return buf;
}

static size_t
count_lines(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		if (s[i] == '\n')
			n++;
	return n;
}

/* ---- a strict logfmt reader ---- */

struct field {
	char key[64];
	char *val; /* decoded, test-owned */
	int quoted;
	int is_str; /* JSON: a string, not a number or literal */
};

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * parse_logfmt reads one line (without its newline) into fields. Returns 0,
 * or -1 with a reason in why: an unterminated or badly escaped quoted value,
 * a field without '=', a stray byte.
 */
static int
parse_logfmt(const char *s, struct field *f, size_t *nf, const char **why)
{
	size_t n = 0;

	*nf = 0;
	while (*s) {
		const char *k = s;
		size_t kl, vl = 0;
		char *v;

		if (n == MAXF) {
			*why = "too many fields";
			goto fail;
		}
		while (*s && *s != '=' && *s != ' ' && *s != '"')
			s++;
		kl = (size_t)(s - k);
		if (kl == 0 || kl >= sizeof(f[n].key) || *s != '=') {
			*why = "a field that is not key=value";
			goto fail;
		}
		memcpy(f[n].key, k, kl);
		f[n].key[kl] = '\0';
		s++;
		v = f[n].val = own(malloc(strlen(s) + 1));
		f[n].quoted = *s == '"';
		f[n].is_str = 1;
		n++;
		if (*s == '"') {
			for (s++;; s++) {
				if (*s == '\0') {
					*why = "unterminated quoted value";
					goto fail;
				}
				if (*s == '"')
					break;
				if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f) {
					*why = "a raw control or non-ASCII byte in a value";
					goto fail;
				}
				if (*s != '\\') {
					v[vl++] = *s;
					continue;
				}
				s++;
				switch (*s) {
				case '"':
				case '\\':
					v[vl++] = *s;
					break;
				case 'n':
					v[vl++] = '\n';
					break;
				case 't':
					v[vl++] = '\t';
					break;
				case 'x':
					if (hexval(s[1]) < 0 || hexval(s[2]) < 0) {
						*why = "a bad \\x escape";
						goto fail;
					}
					v[vl++] = (char)(hexval(s[1]) * 16 + hexval(s[2]));
					s += 2;
					break;
				default:
					*why = "an unknown escape";
					goto fail;
				}
			}
			s++;
		} else {
			while (*s && *s != ' ') {
				if (*s == '"' || *s == '=' || (unsigned char)*s < 0x21 ||
				    (unsigned char)*s >= 0x7f) {
					*why = "a bare value with a byte that needs quotes";
					goto fail;
				}
				v[vl++] = *s++;
			}
			if (vl == 0) {
				*why = "an empty bare value";
				goto fail;
			}
		}
		v[vl] = '\0';
		if (*s == ' ') {
			s++;
			if (*s == '\0' || *s == ' ') {
				*why = "stray space";
				goto fail;
			}
		} else if (*s != '\0') {
			*why = "no space after a value";
			goto fail;
		}
	}
	*nf = n;
	return 0;
fail:
	return -1;
}

/* ---- a strict flat JSON object reader ---- */

static void
put_utf8(char *v, size_t *vl, unsigned cp)
{
	if (cp < 0x80) {
		v[(*vl)++] = (char)cp;
	} else if (cp < 0x800) {
		v[(*vl)++] = (char)(0xc0 | (cp >> 6));
		v[(*vl)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		v[(*vl)++] = (char)(0xe0 | (cp >> 12));
		v[(*vl)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		v[(*vl)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		v[(*vl)++] = (char)(0xf0 | (cp >> 18));
		v[(*vl)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		v[(*vl)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		v[(*vl)++] = (char)(0x80 | (cp & 0x3f));
	}
}

/* utf8_len returns the length of the valid UTF-8 sequence at s, or 0. */
static size_t
utf8_len(const unsigned char *s)
{
	unsigned cp;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

static unsigned
hex4(const char *s)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		int h = hexval(s[i]);
		if (h < 0)
			return 0xffffffffu;
		v = v * 16 + (unsigned)h;
	}
	return v;
}

/* json_string reads a string at *sp (at the opening quote) into a test-owned buffer. */
static char *
json_string(const char **sp, const char **why)
{
	const char *s = *sp;
	char *v = own(malloc(strlen(s) * 4 + 1));
	size_t vl = 0;

	if (*s != '"') {
		*why = "expected a string";
		goto fail;
	}
	for (s++;;) {
		unsigned char c = (unsigned char)*s;
		size_t ul;

		if (c == '\0') {
			*why = "unterminated string";
			goto fail;
		}
		if (c == '"')
			break;
		if (c < 0x20) {
			*why = "a raw control byte in a string";
			goto fail;
		}
		if (c != '\\') {
			if ((ul = utf8_len((const unsigned char *)s)) == 0) {
				*why = "invalid UTF-8";
				goto fail;
			}
			memcpy(v + vl, s, ul);
			vl += ul;
			s += ul;
			continue;
		}
		s++;
		switch (*s) {
		case '"':
		case '\\':
		case '/':
			v[vl++] = *s;
			break;
		case 'b':
			v[vl++] = '\b';
			break;
		case 'f':
			v[vl++] = '\f';
			break;
		case 'n':
			v[vl++] = '\n';
			break;
		case 'r':
			v[vl++] = '\r';
			break;
		case 't':
			v[vl++] = '\t';
			break;
		case 'u': {
			unsigned cp = hex4(s + 1);
			if (cp == 0xffffffffu) {
				*why = "a bad \\u escape";
				goto fail;
			}
			s += 4;
			if (cp >= 0xd800 && cp <= 0xdbff && s[1] == '\\' && s[2] == 'u') {
				unsigned lo = hex4(s + 3);
				if (lo >= 0xdc00 && lo <= 0xdfff) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					s += 6;
				}
			}
			put_utf8(v, &vl, cp);
			break;
		}
		default:
			*why = "an invalid escape";
			goto fail;
		}
		s++;
	}
	v[vl] = '\0';
	*sp = s + 1;
	return v;
fail:
	return NULL;
}

static int
parse_json(const char *s, struct field *f, size_t *nf, const char **why)
{
	size_t n = 0;

	*nf = 0;
	if (*s++ != '{') {
		*why = "does not start with '{'";
		return -1;
	}
	if (*s == '}') {
		s++;
		goto end;
	}
	for (;;) {
		char *k;

		if (n == MAXF) {
			*why = "too many fields";
			goto fail;
		}
		if ((k = json_string(&s, why)) == NULL)
			goto fail;
		snprintf(f[n].key, sizeof(f[n].key), "%s", k);
		if (*s++ != ':') {
			*why = "expected ':'";
			goto fail;
		}
		f[n].quoted = 0;
		if (*s == '"') {
			if ((f[n].val = json_string(&s, why)) == NULL)
				goto fail;
			f[n].is_str = 1;
		} else {
			const char *b = s;
			if (strncmp(s, "true", 4) == 0 || strncmp(s, "null", 4) == 0)
				s += 4;
			else if (strncmp(s, "false", 5) == 0)
				s += 5;
			else {
				if (*s == '-')
					s++;
				if (*s < '0' || *s > '9') {
					*why = "a bad value";
					goto fail;
				}
				if (*s == '0')
					s++;
				else
					while (*s >= '0' && *s <= '9')
						s++;
			}
			f[n].val = own(strndup(b, (size_t)(s - b)));
			f[n].is_str = 0;
		}
		n++;
		if (*s == ',') {
			s++;
			continue;
		}
		if (*s == '}') {
			s++;
			break;
		}
		*why = "expected ',' or '}'";
		goto fail;
	}
end:
	if (*s != '\0') {
		*why = "bytes after the object";
		goto fail;
	}
	*nf = n;
	return 0;
fail:
	return -1;
}

/* ---- checks on captured output ---- */

/* check_ts: "YYYY-MM-DDTHH:MM:SS.mmmZ". */
static void
check_ts(const char *ts)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";

	if (strlen(ts) != strlen(pat))
		fail_msg("timestamp '%s'", ts);
	for (size_t i = 0; pat[i]; i++)
		if (pat[i] == 'd' ? (ts[i] < '0' || ts[i] > '9') : ts[i] != pat[i])
			fail_msg("timestamp '%s'", ts);
}

/*
 * one_line checks that out is exactly one line and parses it in the given
 * format; the first fields must be ts, level and msg.
 */
static size_t
one_line(char *out, size_t len, enum log_format fmt, struct field *f)
{
	const char *why = "";
	size_t n;

	if (len == 0 || out[len - 1] != '\n' || count_lines(out, len) != 1 || strlen(out) != len)
		fail_msg("not exactly one line (%zu bytes, %zu newlines):\n%s", len,
			 count_lines(out, len), out);
	out[len - 1] = '\0';
	if ((fmt == LOG_FORMAT_JSON ? parse_json(out, f, &n, &why)
				    : parse_logfmt(out, f, &n, &why)) != 0)
		fail_msg("%s line does not parse (%s):\n%s",
			 fmt == LOG_FORMAT_JSON ? "JSON" : "logfmt", why, out);
	assert_true(n >= 3);
	assert_string_equal(f[0].key, "ts");
	check_ts(f[0].val);
	assert_string_equal(f[1].key, "level");
	assert_string_equal(f[2].key, "msg");
	return n;
}

static int
setup_default(void **state)
{
	(void)state;
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);
	return 0;
}

/* ---- logfmt ---- */

static const char nasty_ctl[] = "bell\a esc\x1b del\x7f cr\r nul-free";

static void
test_logfmt_escaping(void **state)
{
	struct field f[MAXF];
	size_t len, n;
	char *out, *rest;

	(void)state;
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);
	capture_begin();
	log_kv(LOG_LEVEL_INFO, "hello world", LOG_STR("plain", "whoami"), LOG_STR("space", "a b"),
	       LOG_STR("quote", "say \"hi\""), LOG_STR("eq", "a=b"), LOG_STR("bs", "back\\slash"),
	       LOG_STR("empty", ""), LOG_STR("null", NULL), LOG_STR("nl", "two\nlines"),
	       LOG_STR("tab", "a\tb"), LOG_STR("ctl", nasty_ctl), LOG_STR("utf8", "caf\xc3\xa9"),
	       LOG_STR("bad", "\xff\xfe"), LOG_NUM("num", -42), LOG_NUM("big", 9007199254740993LL),
	       LOG_STR("inject", "x level=error msg=pwned"));
	out = capture_end(&len);

	/* The exact text after the timestamp. */
	rest = strchr(out, ' ');
	assert_non_null(rest);
	assert_string_equal(
	    rest,
	    " level=info msg=\"hello world\" plain=whoami space=\"a b\" quote=\"say \\\"hi\\\"\""
	    " eq=\"a=b\" bs=\"back\\\\slash\" empty=\"\" null=- nl=\"two\\nlines\" tab=\"a\\tb\""
	    " ctl=\"bell\\x07 esc\\x1b del\\x7f cr\\x0d nul-free\" utf8=\"caf\\xc3\\xa9\""
	    " bad=\"\\xff\\xfe\" num=-42 big=9007199254740993"
	    " inject=\"x level=error msg=pwned\"\n");

	/* And a reader gets back every value as logged, in order. */
	n = one_line(out, len, LOG_FORMAT_LOGFMT, f);
	assert_int_equal(n, 18);
	assert_string_equal(f[1].val, "info");
	assert_string_equal(f[2].val, "hello world");
	assert_string_equal(f[3].val, "whoami");
	assert_false(f[3].quoted);
	assert_string_equal(f[4].val, "a b");
	assert_string_equal(f[5].val, "say \"hi\"");
	assert_string_equal(f[6].val, "a=b");
	assert_string_equal(f[7].val, "back\\slash");
	assert_string_equal(f[8].val, "");
	assert_string_equal(f[9].val, "-");
	assert_string_equal(f[10].val, "two\nlines");
	assert_string_equal(f[11].val, "a\tb");
	assert_string_equal(f[12].val, nasty_ctl);
	assert_string_equal(f[13].val, "caf\xc3\xa9");
	assert_string_equal(f[14].val, "\xff\xfe");
	assert_string_equal(f[15].key, "num");
	assert_string_equal(f[15].val, "-42");
	assert_string_equal(f[17].key, "inject");
	assert_string_equal(f[17].val, "x level=error msg=pwned");
}

static void
test_logfmt_printf_wrappers(void **state)
{
	struct field f[MAXF];
	size_t len, n;
	char *out;
	int e;

	(void)state;
	log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_LOGFMT);

	capture_begin();
	errno = ENOENT;
	log_warn("open %s", "/etc/x y");
	e = errno;
	out = capture_end(&len);
	assert_int_equal(e, ENOENT); /* logging keeps errno */
	n = one_line(out, len, LOG_FORMAT_LOGFMT, f);
	assert_int_equal(n, 3);
	assert_string_equal(f[1].val, "warn");
	assert_string_equal(f[2].val, "open /etc/x y: No such file or directory");

	capture_begin();
	errno = EPERM;
	log_warnx("no errno %d", 5);
	out = capture_end(&len);
	n = one_line(out, len, LOG_FORMAT_LOGFMT, f);
	assert_string_equal(f[1].val, "warn");
	assert_string_equal(f[2].val, "no errno 5");

	capture_begin();
	log_debug("d");
	log_info("i");
	log_error("e \"%s\"", "q");
	out = capture_end(&len);
	assert_int_equal(count_lines(out, len), 3);
	assert_non_null(strstr(out, " level=debug msg=d\n"));
	assert_non_null(strstr(out, " level=info msg=i\n"));
	assert_non_null(strstr(out, " level=error msg=\"e \\\"q\\\"\"\n"));
}

/* ---- JSON ---- */

static void
test_json_escaping(void **state)
{
	struct field f[MAXF];
	size_t len, n;
	char *out, *rest;

	(void)state;
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture_begin();
	log_kv(LOG_LEVEL_WARN, "hello \"world\"", LOG_STR("space", "a b"),
	       LOG_STR("bs", "back\\slash"), LOG_STR("nl", "two\nlines"), LOG_STR("ctl", nasty_ctl),
	       LOG_STR("null", NULL), LOG_STR("empty", ""), LOG_NUM("num", -42), LOG_NUM("zero", 0),
	       LOG_STR("inject", "\",\"level\":\"error"), LOG_STR("slash", "</script>"));
	out = capture_end(&len);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);

	rest = strchr(out, ',');
	assert_non_null(rest);
	assert_string_equal(
	    rest,
	    ",\"level\":\"warn\",\"msg\":\"hello \\\"world\\\"\",\"space\":\"a b\","
	    "\"bs\":\"back\\\\slash\",\"nl\":\"two\\nlines\","
	    "\"ctl\":\"bell\\u0007 esc\\u001b del\\u007f cr\\u000d nul-free\",\"null\":\"-\","
	    "\"empty\":\"\",\"num\":-42,\"zero\":0,\"inject\":\"\\\",\\\"level\\\":\\\"error\","
	    "\"slash\":\"</script>\"}\n");

	n = one_line(out, len, LOG_FORMAT_JSON, f);
	assert_int_equal(n, 13);
	/* Fields in order, values decoded back to what was logged. */
	static const char *const keys[] = {"ts",   "level", "msg", "space", "bs",     "nl",   "ctl",
					   "null", "empty", "num", "zero",  "inject", "slash"};
	for (size_t i = 0; i < n; i++)
		assert_string_equal(f[i].key, keys[i]);
	assert_string_equal(f[1].val, "warn");
	assert_string_equal(f[2].val, "hello \"world\"");
	assert_string_equal(f[3].val, "a b");
	assert_string_equal(f[4].val, "back\\slash");
	assert_string_equal(f[5].val, "two\nlines");
	assert_string_equal(f[6].val, nasty_ctl);
	assert_string_equal(f[7].val, "-");
	assert_string_equal(f[8].val, "");
	assert_false(f[9].is_str);
	assert_string_equal(f[9].val, "-42");
	assert_false(f[10].is_str);
	assert_string_equal(f[11].val, "\",\"level\":\"error");
}

static void
test_json_utf8_round_trip(void **state)
{
	struct field f[MAXF];
	size_t len, n;
	char *out;

	(void)state;
	/* Valid UTF-8 must decode to the same text, not to one code point per byte. */
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture_begin();
	log_kv(LOG_LEVEL_INFO, "caf\xc3\xa9", LOG_STR("name", "\xe2\x82\xac \xf0\x9f\x90\xb3"));
	out = capture_end(&len);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);
	n = one_line(out, len, LOG_FORMAT_JSON, f);
	assert_int_equal(n, 4);
	assert_string_equal(f[2].val, "caf\xc3\xa9");
	assert_string_equal(f[3].val, "\xe2\x82\xac \xf0\x9f\x90\xb3");
}

static void
test_json_invalid_bytes_stay_valid_json(void **state)
{
	struct field f[MAXF];
	size_t len, n;
	char *out;

	(void)state;
	/* Bytes that are not UTF-8 (a hostile SNI) still give a valid JSON line. */
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture_begin();
	log_kv(LOG_LEVEL_INFO, "sni", LOG_STR("name", "\xff\xfe\xc3\x28\x80 \xed\xa0\x80"),
	       LOG_STR("after", "ok"));
	out = capture_end(&len);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);
	n = one_line(out, len, LOG_FORMAT_JSON, f);
	assert_int_equal(n, 5);
	assert_string_equal(f[3].key, "name");
	assert_string_equal(f[4].key, "after");
	assert_string_equal(f[4].val, "ok");
}

/* ---- levels ---- */

static void
test_levels_filter(void **state)
{
	size_t len;
	char *out;

	(void)state;
	log_setup(LOG_LEVEL_WARN, LOG_FORMAT_LOGFMT);
	assert_false(log_enabled(LOG_LEVEL_DEBUG));
	assert_false(log_enabled(LOG_LEVEL_INFO));
	assert_true(log_enabled(LOG_LEVEL_WARN));
	assert_true(log_enabled(LOG_LEVEL_ERROR));
	capture_begin();
	log_debug("d1");
	log_info("i1");
	log_kv(LOG_LEVEL_INFO, "i2", LOG_NUM("n", 1));
	log_warnx("w1");
	log_kv(LOG_LEVEL_ERROR, "e1", LOG_NUM("n", 2));
	log_error("e2");
	out = capture_end(&len);
	assert_int_equal(count_lines(out, len), 3);
	assert_null(strstr(out, "msg=d1"));
	assert_null(strstr(out, "msg=i1"));
	assert_null(strstr(out, "msg=i2"));
	assert_non_null(strstr(out, " level=warn msg=w1\n"));
	assert_non_null(strstr(out, " level=error msg=e1 n=2\n"));
	assert_non_null(strstr(out, " level=error msg=e2\n"));

	log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_JSON);
	capture_begin();
	log_warnx("w");
	log_error("e");
	out = capture_end(&len);
	assert_int_equal(count_lines(out, len), 1);
	assert_non_null(strstr(out, "\"level\":\"error\",\"msg\":\"e\"}\n"));

	log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_LOGFMT);
	assert_true(log_enabled(LOG_LEVEL_DEBUG));
	capture_begin();
	log_debug("d");
	out = capture_end(&len);
	assert_int_equal(count_lines(out, len), 1);

	assert_string_equal(log_level_name(LOG_LEVEL_DEBUG), "debug");
	assert_string_equal(log_level_name(LOG_LEVEL_INFO), "info");
	assert_string_equal(log_level_name(LOG_LEVEL_WARN), "warn");
	assert_string_equal(log_level_name(LOG_LEVEL_ERROR), "error");
	assert_string_equal(log_format_name(LOG_FORMAT_LOGFMT), "logfmt");
	assert_string_equal(log_format_name(LOG_FORMAT_JSON), "json");
}

/* ---- long lines ---- */

static char *
repeat(char c, size_t n)
{
	char *s = own(malloc(n + 1));

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/*
 * long_line logs msg with the given fields and checks the result: one line,
 * at most 4096 bytes, parsing in its format, its last field
 * truncated=true, and ts/level/msg as given.
 */
static void
long_line(enum log_format fmt, const char *msg, const struct log_field *lf, size_t nlf)
{
	struct field f[MAXF];
	size_t len, n;
	char *out;

	log_setup(LOG_LEVEL_INFO, fmt);
	capture_begin();
	log_fields(LOG_LEVEL_INFO, msg, lf, nlf);
	out = capture_end(&len);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);
	if (len > 4096)
		fail_msg("line of %zu bytes", len);
	n = one_line(out, len, fmt, f);
	assert_string_equal(f[1].val, "info");
	assert_string_equal(f[n - 1].key, "truncated");
	assert_string_equal(f[n - 1].val, "true");
}

static void
test_long_value_logfmt_bare(void **state)
{
	char *big = repeat('a', 10000);
	struct log_field lf[] = {LOG_STR("k", "v"), LOG_STR("big", big)};

	(void)state;
	long_line(LOG_FORMAT_LOGFMT, "m", lf, 2);
}

static void
test_long_value_logfmt_quoted(void **state)
{
	char *big = repeat(' ', 10000);
	struct log_field lf[] = {LOG_STR("k", "v"), LOG_STR("big", big)};

	(void)state;
	/* The cut lands inside a quoted value: the quote must still be closed. */
	long_line(LOG_FORMAT_LOGFMT, "m", lf, 2);
}

static void
test_long_value_logfmt_escapes(void **state)
{
	(void)state;
	/* The cut lands in a run of escapes: no half escape may be left behind. */
	for (size_t pad = 0; pad < 4; pad++) {
		char *big = repeat('\x01', 3000), *p = repeat('p', pad);
		struct log_field lf[] = {LOG_STR("pad", p), LOG_STR("big", big)};

		long_line(LOG_FORMAT_LOGFMT, "m", lf, 2);
	}
}

static void
test_long_value_json(void **state)
{
	char *big = repeat('a', 10000), *ctl = repeat('\x01', 3000);
	struct log_field lf[] = {LOG_STR("k", "v"), LOG_STR("big", big)};
	struct log_field lf2[] = {LOG_STR("ctl", ctl), LOG_NUM("n", 1)};

	(void)state;
	long_line(LOG_FORMAT_JSON, "m", lf, 2);
	long_line(LOG_FORMAT_JSON, "m", lf2, 2);
}

static void
test_long_message_json(void **state)
{
	(void)state;
	/* The message itself is too long for a line. */
	long_line(LOG_FORMAT_JSON, repeat('a', 6000), NULL, 0);
}

static void
test_long_printf_message_json(void **state)
{
	char *ctl = repeat('\x01', 1000);
	struct field f[MAXF];
	size_t len;
	char *out;

	(void)state;
	/* A printf message of 1000 control bytes escapes to more than a line holds. */
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture_begin();
	log_warnx("bad name %s", ctl);
	out = capture_end(&len);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);
	assert_true(len <= 4096);
	(void)one_line(out, len, LOG_FORMAT_JSON, f);
	assert_string_equal(f[1].val, "warn");
}

static void
test_long_message_logfmt(void **state)
{
	char *big = repeat('a', 6000), *sp = repeat(' ', 6000);

	(void)state;
	long_line(LOG_FORMAT_LOGFMT, big, NULL, 0);
	long_line(LOG_FORMAT_LOGFMT, sp, NULL, 0);
}

static void
test_long_but_fitting_is_whole(void **state)
{
	struct field f[MAXF];
	size_t len, n;
	char *out, *v = repeat('b', 3900);

	(void)state;
	/* A long line that fits is written whole, with no truncation mark. */
	for (int fmt = LOG_FORMAT_LOGFMT; fmt <= LOG_FORMAT_JSON; fmt++) {
		log_setup(LOG_LEVEL_INFO, (enum log_format)fmt);
		capture_begin();
		log_kv(LOG_LEVEL_INFO, "m", LOG_STR("v", v), LOG_NUM("n", 7));
		out = capture_end(&len);
		log_setup(LOG_LEVEL_INFO, LOG_FORMAT_LOGFMT);
		n = one_line(out, len, (enum log_format)fmt, f);
		assert_int_equal(n, 5);
		assert_string_equal(f[3].val, v);
		assert_string_equal(f[4].key, "n");
		assert_string_equal(f[4].val, "7");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_logfmt_escaping, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_logfmt_printf_wrappers, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_json_escaping, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_json_utf8_round_trip, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_json_invalid_bytes_stay_valid_json, setup_default,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_levels_filter, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_long_value_logfmt_bare, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_long_value_logfmt_quoted, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_long_value_logfmt_escapes, setup_default,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_long_value_json, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_long_message_json, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_long_printf_message_json, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_long_message_logfmt, setup_default, teardown),
	    cmocka_unit_test_setup_teardown(test_long_but_fitting_is_whole, setup_default,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
