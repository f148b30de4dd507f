/*
 * proxyproto.h: the HAProxy PROXY protocol, versions 1 (text) and 2
 * (binary), in both directions. proxyproto_parse reads the header a trusted
 * load balancer puts in front of a connection, so gatekeeper can log and
 * check the real client; the writers build the header gatekeeper puts in
 * front of its own upstream connections. All of it is pure: no allocation,
 * no I/O, no logging.
 */
#ifndef GK_PROXYPROTO_H
#define GK_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "parse.h"

#define PROXYPROTO_V1_MAX 107			    /* longest v1 line, CRLF included (spec 2.1) */
#define PROXYPROTO_V2_HDR 16			    /* v2 signature, ver_cmd, fam, len */
#define PROXYPROTO_V2_MAX (PROXYPROTO_V2_HDR + 216) /* largest v2 address block */

/*
 * Largest header proxyproto_parse accepts: a v2 header whose length field
 * (addresses plus TLVs) goes past this is MALFORMED, so a caller holding
 * PROXYPROTO_PARSE_MAX bytes never sees NEED_MORE.
 */
#define PROXYPROTO_PARSE_MAX 4096

struct proxyproto_header {
	int version; /* 1 or 2 */
	/*
	 * 1 when the addresses must not be used and the connection's own
	 * endpoints stand: v1 UNKNOWN, v2 LOCAL, and v2 PROXY with a family
	 * gatekeeper does not relay (UNSPEC, UDP, AF_UNIX), which the spec
	 * says to treat as UNSPEC. family is then AF_UNSPEC.
	 */
	int local;
	int family;			  /* AF_INET, AF_INET6 or AF_UNSPEC */
	struct sockaddr_storage src, dst; /* zeroed unless family is INET/INET6 */
	size_t len;			  /* header bytes to consume before the payload */
};

/*
 * proxyproto_parse reads a PROXY protocol header at the start of buf[0..len).
 *
 * Returns:
 *   PARSE_OK         a complete, valid header: every field of out is set.
 *   PARSE_NEED_MORE  buf is a valid prefix of a header, including a prefix
 *                    of either signature (len 0 included).
 *   PARSE_NOT_FOUND  the bytes so far cannot start either signature
 *                    ("PROXY " or the 12-byte v2 one). A caller for which
 *                    the header is optional may treat the stream as plain;
 *                    the spec itself says a receiver must not guess, so do
 *                    that only for explicitly trusted sources.
 *   PARSE_MALFORMED  a signature, then something the spec forbids.
 *
 * v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" with single spaces, IPv4 as
 * four decimal octets without leading zeros, IPv6 as inet_pton reads it,
 * ports 0..65535 without leading zeros, the address family matching the
 * keyword, CRLF within PROXYPROTO_V1_MAX bytes. "PROXY UNKNOWN" may be
 * followed by a space and anything up to CRLF, which is ignored.
 *
 * v2: version 2; command LOCAL (0x20) or PROXY (0x21). LOCAL ignores the
 * family byte and skips the whole block unread. PROXY with TCP over IPv4
 * (0x11) or IPv6 (0x21) yields the addresses. PROXY with UDP (0x12, 0x22)
 * or AF_UNIX (0x31, 0x32) falls back to UNSPEC, as the spec asks of
 * receivers that do not implement a family: local = 1, AF_UNSPEC. For all
 * of these the block must hold the family's addresses, and the TLVs after
 * them are walked: a TLV running past the block is MALFORMED; TLV contents
 * (CRC32C included) are not checked. PROXY with UNSPEC (0x00) is local = 1
 * and its block is skipped unread. Any other version, command or family
 * byte is MALFORMED.
 *
 * out is always written (zeroed first); its fields mean something only for
 * PARSE_OK.
 */
enum parse_result proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_header *out);

/*
 * proxyproto_write_v1 writes a v1 line for a connection from src to dst into
 * out[0..cap). When src or dst is NULL, their families differ, or the family
 * is neither AF_INET nor AF_INET6, it writes "PROXY UNKNOWN\r\n". Addresses
 * are written as given (an IPv4-mapped IPv6 address stays TCP6). Returns the
 * bytes written (at most PROXYPROTO_V1_MAX), or 0 if cap is too small, in
 * which case out is left untouched.
 */
size_t proxyproto_write_v1(uint8_t *out, size_t cap, const struct sockaddr *src,
			   const struct sockaddr *dst);

/*
 * proxyproto_write_v2 writes a v2 header, with no TLVs, into out[0..cap):
 * PROXY TCP4 (28 bytes) or TCP6 (52 bytes), or, in the cases where v1 says
 * UNKNOWN, a LOCAL header with family UNSPEC (16 bytes). Returns the bytes
 * written (at most PROXYPROTO_V2_MAX), or 0 if cap is too small, in which
 * case out is left untouched.
 */
size_t proxyproto_write_v2(uint8_t *out, size_t cap, const struct sockaddr *src,
			   const struct sockaddr *dst);

#endif
