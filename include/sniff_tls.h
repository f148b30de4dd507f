/*
 * sniff_tls.h: read the server name (SNI) and ALPN list from the first bytes
 * a TLS client sends, so the egress gateway can route or refuse a connection
 * before a single byte goes upstream. The parser is pure and bounded: it
 * reads the caller's buffer, allocates nothing, logs nothing, and reports a
 * parse_result. It also builds the one alert gatekeeper sends on refusal.
 */
#ifndef GK_SNIFF_TLS_H
#define GK_SNIFF_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "parse.h"

/*
 * Cap on the bytes of records that carry one ClientHello, record headers
 * included. A hello that cannot end within this many bytes is MALFORMED, so
 * a caller holding SNIFF_TLS_MAX_HELLO bytes never sees NEED_MORE.
 */
#define SNIFF_TLS_MAX_HELLO 16384

#define SNIFF_TLS_ALPN_MAX     8  /* protocols kept from the ALPN list */
#define SNIFF_TLS_ALPN_NAMELEN 32 /* longest protocol name kept */
#define SNIFF_TLS_ALERT_LEN    7  /* bytes of the alert record written below */

struct sniff_tls_hello {
	char sni[256];	     /* host_name, raw bytes as sent, NUL-terminated */
	size_t sni_len;	     /* 0 when the hello carries no host_name */
	unsigned alpn_count; /* protocols stored in alpn[] */
	/*
	 * The first SNIFF_TLS_ALPN_MAX protocols of the ALPN list, in the
	 * client's order, NUL-terminated. A name longer than
	 * SNIFF_TLS_ALPN_NAMELEN bytes or containing a NUL byte is skipped
	 * (not stored, not counted), never truncated: a cut name could match
	 * a different protocol.
	 */
	char alpn[SNIFF_TLS_ALPN_MAX][SNIFF_TLS_ALPN_NAMELEN + 1];
	size_t consumed; /* bytes of the records making up the hello */
	/*
	 * Set with PARSE_MALFORMED when the only fault is size: the records
	 * so far are well-formed but the hello cannot end within
	 * SNIFF_TLS_MAX_HELLO. A caller reports that as "too large".
	 */
	int too_large;
};

/*
 * sniff_tls_client_hello parses the TLS ClientHello at the start of buf[0..len).
 *
 * The hello may be cut into several handshake records (content type 22) and
 * arrive over several reads; the fragments are walked in place, never copied
 * together. The last record must end where the hello ends.
 *
 * Returns:
 *   PARSE_OK         the hello is complete and has a host_name: out->sni,
 *                    out->sni_len, out->alpn*, out->consumed are set.
 *   PARSE_NOT_FOUND  the hello is complete and valid but has no host_name
 *                    (no server_name extension, or one naming only other
 *                    name types): out->sni is "" and the other fields are
 *                    set as for PARSE_OK.
 *   PARSE_NEED_MORE  buf is a valid prefix of a hello: read more and call
 *                    again with the whole buffer. Only when
 *                    len < SNIFF_TLS_MAX_HELLO.
 *   PARSE_MALFORMED  not a TLS ClientHello, or one that breaks the rules:
 *                    another content type, a record or hello of bad length,
 *                    a hello longer than SNIFF_TLS_MAX_HELLO, trailing bytes
 *                    in its last record, an empty, duplicated, longer than
 *                    255 or NUL-bearing host_name, a duplicate server_name
 *                    or ALPN extension, malformed ALPN list.
 *
 * out is always written (zeroed first); its fields mean something only for
 * PARSE_OK and PARSE_NOT_FOUND. The SNI is not normalized (case, trailing
 * dot): that is the caller's job.
 */
enum parse_result sniff_tls_client_hello(const uint8_t *buf, size_t len,
					 struct sniff_tls_hello *out);

/*
 * sniff_tls_alert_unrecognized_name writes a TLS alert record, level fatal,
 * description unrecognized_name (112), into out[0..cap). Returns the bytes
 * written (SNIFF_TLS_ALERT_LEN), or 0 when cap is too small.
 */
size_t sniff_tls_alert_unrecognized_name(uint8_t *out, size_t cap);

/* Alert descriptions gatekeeper sends (RFC 8446 6.2). */
#define SNIFF_TLS_ALERT_ACCESS_DENIED	  49
#define SNIFF_TLS_ALERT_INTERNAL_ERROR	  80
#define SNIFF_TLS_ALERT_UNRECOGNIZED_NAME 112

/* sniff_tls_alert is the same for any fatal alert description. */
size_t sniff_tls_alert(uint8_t *out, size_t cap, uint8_t description);

#endif
