/*
 * sniff_tls.c: pull the server name and ALPN protocols out of a TLS
 * ClientHello without terminating TLS. The work happens in two passes over
 * the caller's buffer. frame() walks the record layer: it checks every record
 * header, reads the 4-byte handshake header (which may itself straddle
 * records) and decides whether the whole hello has arrived. Only then does
 * parse_hello() read the message, through a cursor that steps over record
 * headers, so a hello split into many records is read in place without being
 * copied together. Every read is bounded twice: by the enclosing structure's
 * declared end and by the bytes the framing pass proved present.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sniff_tls.h"

#define TLS_RECORD_HEADER   5	  /* type, version, length */
#define TLS_RECORD_MAX	    16384 /* 2^14: the largest plaintext fragment */
#define TLS_CT_ALERT	    21
#define TLS_CT_HANDSHAKE    22
#define TLS_HS_HEADER	    4 /* msg_type, 24-bit length */
#define TLS_HS_CLIENT_HELLO 1
#define TLS_RANDOM_LEN	    32
#define TLS_SESSION_ID_MAX  32
#define TLS_EXT_SERVER_NAME 0
#define TLS_EXT_ALPN	    16
#define TLS_NAME_HOST_NAME  0
#define TLS_ALERT_FATAL	    2

/*
 * A reader over the handshake message as it lies in buf: a byte stream cut
 * into record fragments, each behind a 5-byte record header. Offsets named
 * "off" and "end" count message bytes; "pos" and "frag_end" are offsets in buf.
 */
struct hs_cursor {
	const uint8_t *buf;
	size_t len;	 /* bytes in buf */
	size_t pos;	 /* buf offset of the next message byte */
	size_t frag_end; /* buf offset where the current fragment ends */
	size_t off;	 /* message offset of the next byte */
	size_t msg_len;	 /* message length, handshake header included */
};

static uint16_t get16(const uint8_t *);
static enum parse_result frame(const uint8_t *, size_t, size_t *, size_t *, int *);
static void cur_init(struct hs_cursor *, const uint8_t *, size_t, size_t);
static int cur_ready(struct hs_cursor *);
static int cur_u8(struct hs_cursor *, size_t, uint8_t *);
static int cur_u16(struct hs_cursor *, size_t, uint16_t *);
static int cur_skip(struct hs_cursor *, size_t, size_t);
static enum parse_result parse_hello(struct hs_cursor *, struct sniff_tls_hello *);
static enum parse_result parse_sni(struct hs_cursor *, size_t, struct sniff_tls_hello *);
static enum parse_result parse_alpn(struct hs_cursor *, size_t, struct sniff_tls_hello *);

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

/*
 * frame walks the records at the start of buf[0..len) and finds where the
 * ClientHello ends. Returns PARSE_OK with *msg_len (handshake header plus
 * body) and *consumed (record bytes, headers included) once every record of
 * the hello is present; PARSE_NEED_MORE for a valid prefix; PARSE_MALFORMED
 * as soon as a record header, the handshake type or a length is wrong.
 * *too_large is set when the only fault is that the hello cannot end
 * within SNIFF_TLS_MAX_HELLO.
 */
static enum parse_result
frame(const uint8_t *buf, size_t len, size_t *msg_len, size_t *consumed, int *too_large)
{
	uint8_t hs[TLS_HS_HEADER];
	size_t pos = 0;	 /* buf offset of the current record header */
	size_t have = 0; /* message bytes in the records before pos */
	size_t need = 0; /* message length; 0 while the header is incomplete */

	for (;;) {
		size_t flen, avail, i;

		if (need != 0 && have == need) {
			*msg_len = need;
			*consumed = pos;
			return PARSE_OK;
		}
		/* Check what we can of the header as soon as it arrives. */
		if (pos >= len)
			return PARSE_NEED_MORE;
		if (buf[pos] != TLS_CT_HANDSHAKE)
			return PARSE_MALFORMED;
		if (len - pos < 2)
			return PARSE_NEED_MORE;
		if (buf[pos + 1] != 3) /* record version major: SSL 3.0 .. TLS 1.3 */
			return PARSE_MALFORMED;
		if (len - pos < TLS_RECORD_HEADER)
			return PARSE_NEED_MORE;
		flen = get16(buf + pos + 3);
		/* RFC 8446 5.1: no empty handshake fragments. */
		if (flen == 0 || flen > TLS_RECORD_MAX)
			return PARSE_MALFORMED;
		if (pos + TLS_RECORD_HEADER + flen > SNIFF_TLS_MAX_HELLO) {
			*too_large = 1;
			return PARSE_MALFORMED;
		}
		/*
		 * A client sends nothing else until the server answers, so
		 * the hello's last record must end with it.
		 */
		if (need != 0 && flen > need - have)
			return PARSE_MALFORMED;

		avail = len - pos - TLS_RECORD_HEADER;
		if (avail > flen)
			avail = flen;

		/* The handshake header may be split over records, too. */
		if (need == 0) {
			for (i = 0; i < avail && have + i < TLS_HS_HEADER; i++)
				hs[have + i] = buf[pos + TLS_RECORD_HEADER + i];
			if (have + i >= 1 && hs[0] != TLS_HS_CLIENT_HELLO)
				return PARSE_MALFORMED;
			if (have + i == TLS_HS_HEADER) {
				need = TLS_HS_HEADER +
				       ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
				if (need + TLS_RECORD_HEADER > SNIFF_TLS_MAX_HELLO) {
					*too_large = 1;
					return PARSE_MALFORMED;
				}
				if (flen > need - have)
					return PARSE_MALFORMED;
			}
		}
		if (avail < flen)
			return PARSE_NEED_MORE;
		have += flen;
		pos += TLS_RECORD_HEADER + flen;
	}
}

/* cur_init places c on the first message byte; frame() vetted the records. */
static void
cur_init(struct hs_cursor *c, const uint8_t *buf, size_t len, size_t msg_len)
{
	c->buf = buf;
	c->len = len;
	c->pos = TLS_RECORD_HEADER;
	c->frag_end = TLS_RECORD_HEADER + get16(buf + 3);
	c->off = 0;
	c->msg_len = msg_len;
}

/*
 * cur_ready makes c->pos point at a readable byte: at the end of a fragment
 * it hops over the next record header. frame() already proved the records
 * sound; the checks here keep the cursor safe on its own. Returns -1 when
 * no byte can be read.
 */
static int
cur_ready(struct hs_cursor *c)
{
	size_t hdr = c->frag_end;

	if (c->pos < c->frag_end)
		return 0;
	if (hdr > c->len || c->len - hdr < TLS_RECORD_HEADER)
		return -1;
	c->pos = hdr + TLS_RECORD_HEADER;
	c->frag_end = c->pos + get16(c->buf + hdr + 3);
	if (c->frag_end > c->len || c->frag_end == c->pos)
		return -1;
	return 0;
}

/* cur_u8 reads one byte lying before end; -1 when none is left. */
static int
cur_u8(struct hs_cursor *c, size_t end, uint8_t *v)
{
	if (c->off >= end || c->off >= c->msg_len || cur_ready(c) == -1)
		return -1;
	*v = c->buf[c->pos];
	c->pos++;
	c->off++;
	return 0;
}

/* cur_u16 reads a big-endian 16-bit value lying before end; -1 when short. */
static int
cur_u16(struct hs_cursor *c, size_t end, uint16_t *v)
{
	uint8_t hi, lo;

	if (cur_u8(c, end, &hi) == -1 || cur_u8(c, end, &lo) == -1)
		return -1;
	*v = (uint16_t)((unsigned)hi << 8 | lo);
	return 0;
}

/* cur_skip steps over n bytes that must lie before end; -1 otherwise. */
static int
cur_skip(struct hs_cursor *c, size_t end, size_t n)
{
	if (end > c->msg_len || c->off > end || n > end - c->off)
		return -1;
	while (n > 0) {
		size_t k;

		if (cur_ready(c) == -1)
			return -1;
		k = c->frag_end - c->pos;
		if (k > n)
			k = n;
		c->pos += k;
		c->off += k;
		n -= k;
	}
	return 0;
}

/*
 * parse_hello reads the ClientHello body (RFC 8446 4.1.2, RFC 5246 7.4.1.2):
 *
 *   legacy_version(2) random(32) session_id<0..32>
 *   cipher_suites<2..2^16-2> compression_methods<1..2^8-1>
 *   extensions<0..2^16-1>  (absent in old clients)
 *
 * Returns PARSE_OK or PARSE_NOT_FOUND (no host_name), or PARSE_MALFORMED.
 */
static enum parse_result
parse_hello(struct hs_cursor *c, struct sniff_tls_hello *out)
{
	size_t end = c->msg_len, ext_end;
	uint16_t version, n16, type, elen;
	uint8_t n8;
	int seen_sni = 0, seen_alpn = 0;
	enum parse_result r;

	if (cur_skip(c, end, TLS_HS_HEADER) == -1)
		return PARSE_MALFORMED;
	if (cur_u16(c, end, &version) == -1 || version >> 8 != 3)
		return PARSE_MALFORMED;
	if (cur_skip(c, end, TLS_RANDOM_LEN) == -1)
		return PARSE_MALFORMED;
	if (cur_u8(c, end, &n8) == -1 || n8 > TLS_SESSION_ID_MAX || cur_skip(c, end, n8) == -1)
		return PARSE_MALFORMED;
	if (cur_u16(c, end, &n16) == -1 || n16 < 2 || n16 % 2 != 0 || cur_skip(c, end, n16) == -1)
		return PARSE_MALFORMED;
	if (cur_u8(c, end, &n8) == -1 || n8 < 1 || cur_skip(c, end, n8) == -1)
		return PARSE_MALFORMED;

	/* Pre-TLS 1.0 style hello with no extensions at all. */
	if (c->off == end)
		return PARSE_NOT_FOUND;

	if (cur_u16(c, end, &n16) == -1 || n16 != end - c->off)
		return PARSE_MALFORMED;
	ext_end = end;

	while (c->off < ext_end) {
		size_t data_end;

		if (cur_u16(c, ext_end, &type) == -1 || cur_u16(c, ext_end, &elen) == -1 ||
		    elen > ext_end - c->off)
			return PARSE_MALFORMED;
		data_end = c->off + elen;
		switch (type) {
		case TLS_EXT_SERVER_NAME:
			/* RFC 8446 4.2: one extension of each type at most. */
			if (seen_sni++)
				return PARSE_MALFORMED;
			r = parse_sni(c, data_end, out);
			break;
		case TLS_EXT_ALPN:
			if (seen_alpn++)
				return PARSE_MALFORMED;
			r = parse_alpn(c, data_end, out);
			break;
		default:
			r = cur_skip(c, data_end, elen) == -1 ? PARSE_MALFORMED : PARSE_OK;
			break;
		}
		if (r != PARSE_OK || c->off != data_end)
			return PARSE_MALFORMED;
	}
	return out->sni_len > 0 ? PARSE_OK : PARSE_NOT_FOUND;
}

/*
 * parse_sni reads the server_name extension data (RFC 6066 3):
 *
 *   server_name_list<1..2^16-1>: { name_type(1) name<1..2^16-1> } ...
 *
 * Entries of name types other than host_name (0) are skipped; their body is
 * assumed to carry the same 16-bit length, the only layout ever deployed.
 * A second host_name is MALFORMED (RFC 6066: one name per type).
 */
static enum parse_result
parse_sni(struct hs_cursor *c, size_t end, struct sniff_tls_hello *out)
{
	uint16_t list_len, nlen;
	uint8_t type, ch;
	size_t i;

	if (cur_u16(c, end, &list_len) == -1 || list_len == 0 || list_len != end - c->off)
		return PARSE_MALFORMED;
	while (c->off < end) {
		if (cur_u8(c, end, &type) == -1 || cur_u16(c, end, &nlen) == -1 ||
		    nlen > end - c->off)
			return PARSE_MALFORMED;
		if (type != TLS_NAME_HOST_NAME) {
			if (cur_skip(c, end, nlen) == -1)
				return PARSE_MALFORMED;
			continue;
		}
		if (out->sni_len > 0 || nlen == 0 || nlen > sizeof(out->sni) - 1)
			return PARSE_MALFORMED;
		for (i = 0; i < nlen; i++) {
			if (cur_u8(c, end, &ch) == -1 || ch == '\0')
				return PARSE_MALFORMED;
			out->sni[i] = (char)ch;
		}
		out->sni[nlen] = '\0';
		out->sni_len = nlen;
	}
	return PARSE_OK;
}

/*
 * parse_alpn reads the application_layer_protocol_negotiation data
 * (RFC 7301 3.1):
 *
 *   protocol_name_list<2..2^16-1>: { name<1..2^8-1> } ...
 *
 * Keeps the first SNIFF_TLS_ALPN_MAX names that fit; see sniff_tls.h.
 */
static enum parse_result
parse_alpn(struct hs_cursor *c, size_t end, struct sniff_tls_hello *out)
{
	uint16_t list_len;
	uint8_t nlen, ch;
	size_t i;

	if (cur_u16(c, end, &list_len) == -1 || list_len < 2 || list_len != end - c->off)
		return PARSE_MALFORMED;
	while (c->off < end) {
		char name[SNIFF_TLS_ALPN_NAMELEN + 1];
		int keep;

		if (cur_u8(c, end, &nlen) == -1 || nlen == 0 || nlen > end - c->off)
			return PARSE_MALFORMED;
		keep = out->alpn_count < SNIFF_TLS_ALPN_MAX && nlen <= SNIFF_TLS_ALPN_NAMELEN;
		if (!keep) {
			if (cur_skip(c, end, nlen) == -1)
				return PARSE_MALFORMED;
			continue;
		}
		for (i = 0; i < nlen; i++) {
			if (cur_u8(c, end, &ch) == -1)
				return PARSE_MALFORMED;
			if (ch == '\0')
				keep = 0;
			name[i] = (char)ch;
		}
		name[nlen] = '\0';
		if (keep)
			memcpy(out->alpn[out->alpn_count++], name, (size_t)nlen + 1);
	}
	return PARSE_OK;
}

enum parse_result
sniff_tls_client_hello(const uint8_t *buf, size_t len, struct sniff_tls_hello *out)
{
	struct hs_cursor c;
	size_t msg_len, consumed;
	enum parse_result r;

	memset(out, 0, sizeof(*out));
	if (buf == NULL)
		len = 0;
	r = frame(buf, len, &msg_len, &consumed, &out->too_large);
	if (r != PARSE_OK)
		return r;
	cur_init(&c, buf, len, msg_len);
	r = parse_hello(&c, out);
	if (r == PARSE_MALFORMED) {
		memset(out, 0, sizeof(*out));
		return r;
	}
	out->consumed = consumed;
	return r;
}

size_t
sniff_tls_alert(uint8_t *out, size_t cap, uint8_t description)
{
	/*
	 * The record version is 0x0303, as TLS 1.2 and 1.3 servers send;
	 * RFC 8446 5.1 tells clients to ignore it.
	 */
	const uint8_t alert[SNIFF_TLS_ALERT_LEN] = {
	    TLS_CT_ALERT, /* content type: alert */
	    0x03,
	    0x03, /* record version: TLS 1.2 */
	    0x00,
	    0x02,	     /* fragment length */
	    TLS_ALERT_FATAL, /* level */
	    description,     /* description */
	};

	if (out == NULL || cap < sizeof(alert))
		return 0;
	memcpy(out, alert, sizeof(alert));
	return sizeof(alert);
}

size_t
sniff_tls_alert_unrecognized_name(uint8_t *out, size_t cap)
{
	return sniff_tls_alert(out, cap, SNIFF_TLS_ALERT_UNRECOGNIZED_NAME);
}
