/*
 * dns.h: the DNS messages the door reads and writes, pure and bounded.
 *
 * dns_parse_query reads one query (a UDP datagram, or one message of a
 * TCP stream) into a struct dns_query: its ID, opcode, the one question
 * and the EDNS(0) OPT record. dns_tcp_frame splits a TCP stream into
 * messages. dns_write_reply builds the answer to a parsed query. None of
 * them allocates, logs or reads outside the caller's buffer.
 */
#ifndef GK_DNS_H
#define GK_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "parse.h"

#define DNS_HEADER_LEN	  12
#define DNS_NAME_WIRE_MAX 255  /* RFC 1035 3.1: a name, length octets included */
#define DNS_UDP_SIZE	  1232 /* the EDNS(0) payload size the door announces */
#define DNS_POINTER_HOPS  16   /* compression pointers followed in one name, at most */

#define DNS_TYPE_A    1
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_OPT  41
#define DNS_CLASS_IN  1

#define DNS_RCODE_NOERROR  0
#define DNS_RCODE_FORMERR  1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_NOTIMP   4
#define DNS_RCODE_REFUSED  5
#define DNS_RCODE_BADVERS  16 /* extended: in the OPT record's upper bits */

struct dns_query {
	uint16_t id;
	uint8_t opcode;
	int rd, cd;			 /* recursion desired, checking disabled: echoed */
	int question;			 /* the question was read (it is echoed in the reply) */
	uint8_t wire[DNS_NAME_WIRE_MAX]; /* the name, uncompressed labels and the root */
	size_t wire_len;
	/*
	 * The name as text: labels joined by '.', no trailing dot ("" for the
	 * root). text_ok is 0 when a label holds a byte outside printable ASCII
	 * or a '.', which no allowed name has: such a name is never matched.
	 */
	char name[DNS_NAME_WIRE_MAX + 1];
	int text_ok;
	uint16_t qtype, qclass;
	int edns;	    /* an OPT record came: one goes back */
	uint16_t edns_size; /* the client's UDP payload size (at least 512) */
	uint8_t edns_version;
	int edns_do;   /* DNSSEC OK: echoed */
	uint8_t rcode; /* PARSE_MALFORMED with reply set: what to answer */
	int reply;     /* PARSE_MALFORMED: 1 = answer rcode, 0 = drop in silence */
};

/*
 * dns_parse_query reads the query msg[0..len). Returns PARSE_OK for a
 * standard query of one question in class IN (or ANY), or PARSE_MALFORMED
 * with q->reply saying whether to answer q->rcode (FORMERR: not one
 * question, a broken name or record; NOTIMP: another opcode; REFUSED:
 * another class; BADVERS: EDNS version above 0) or to drop it: shorter than
 * a header, or a response (QR=1: two servers must never answer each
 * other). Compression pointers are followed backwards only, within the
 * question, DNS_POINTER_HOPS at most. Never NEED_MORE: a message is
 * complete by its framing.
 */
enum parse_result dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *q);

/*
 * dns_tcp_frame finds the first message of a TCP stream buf[0..len): its
 * two-byte length, then the message. Returns PARSE_OK with *msg_len set
 * (the message is at buf + 2), PARSE_NEED_MORE, or PARSE_MALFORMED for a
 * length of 0 or below a header.
 */
enum parse_result dns_tcp_frame(const uint8_t *buf, size_t len, size_t *msg_len);

/* One address to answer with: AF_INET for A records, AF_INET6 for AAAA. */
struct dns_answer {
	int family;
	uint8_t addr[16];
};

/*
 * dns_write_reply writes the reply to q into out (cap bytes): rcode, the
 * question again when it was read, the n answers as records of q's name
 * (ttl seconds), and an OPT record when the query had one. aa sets the
 * authoritative bit. When the whole reply would be longer than limit, the
 * answers are left out and TC is set (the client asks again over TCP);
 * when that is still longer (a question inflated by compression), the
 * question and then the OPT record go too: a header alone is never longer
 * than a query. Returns the length written, or 0 when it does not fit cap.
 */
size_t dns_write_reply(uint8_t *out, size_t cap, size_t limit, const struct dns_query *q,
		       unsigned rcode, int aa, const struct dns_answer *answers, size_t n,
		       uint32_t ttl);

/* dns_type_name: "A", "AAAA", "HTTPS", ... for logs; NULL for a type without a name here. */
const char *dns_type_name(uint16_t type);

#endif
