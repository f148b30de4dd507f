/*
 * dns.c: reading DNS queries and writing the door's replies (RFC 1035,
 * RFC 6891 for EDNS(0)).
 *
 * Every read checks its bounds first. A query is read header, question,
 * then the records after it, only to find the OPT record; answer and
 * authority records in a query are read over (they must be well formed)
 * and otherwise ignored. The reply names the question by a pointer to
 * itself, so its name is written once.
 */
#include <string.h>

#include "dns.h"

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static void
put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
}

/*
 * read_name reads the name at msg[*off] (a question's, so pointers may
 * only go back to earlier bytes of the message past the header), copying
 * its labels to wire/text when they are not NULL. *off moves past the
 * name as it sits in the message. Returns 0, or -1 when it is broken.
 */
static int
read_name(const uint8_t *msg, size_t len, size_t *off, struct dns_query *q)
{
	size_t pos = *off, end = 0, wire = 0, text = 0;
	unsigned hops = 0;
	int jumped = 0;

	for (;;) {
		uint8_t l;
		if (pos >= len)
			return -1;
		l = msg[pos];
		if ((l & 0xc0) == 0xc0) {
			size_t to;
			if (pos + 1 >= len || ++hops > DNS_POINTER_HOPS)
				return -1;
			to = (size_t)(((l & 0x3f) << 8) | msg[pos + 1]);
			/* Backwards only, never into the header: no loops. */
			if (to < DNS_HEADER_LEN || to >= pos)
				return -1;
			if (!jumped)
				end = pos + 2;
			jumped = 1;
			pos = to;
			continue;
		}
		if ((l & 0xc0) != 0)
			return -1; /* the 0x40 and 0x80 label types are obsolete */
		if (wire + 1 + l > DNS_NAME_WIRE_MAX || pos + 1 + l > len)
			return -1;
		if (q != NULL) {
			memcpy(q->wire + wire, msg + pos, 1 + (size_t)l);
			if (l > 0 && text > 0)
				q->name[text++] = '.';
			for (size_t i = 0; i < l; i++) {
				uint8_t c = msg[pos + 1 + i];
				if (c <= 0x20 || c >= 0x7f || c == '.')
					q->text_ok = 0;
				q->name[text++] = (char)c;
			}
		}
		wire += 1 + (size_t)l;
		pos += 1 + (size_t)l;
		if (l == 0)
			break;
	}
	if (q != NULL) {
		q->wire_len = wire;
		q->name[text] = '\0';
	}
	*off = jumped ? end : pos;
	return 0;
}

/* skip_record reads over one resource record at *off; the OPT record is read into q. */
static int
skip_record(const uint8_t *msg, size_t len, size_t *off, struct dns_query *q, int additional)
{
	size_t name_at = *off, rdlen;
	uint16_t type;

	if (read_name(msg, len, off, NULL) == -1 || *off + 10 > len)
		return -1;
	type = get16(msg + *off);
	rdlen = get16(msg + *off + 8);
	if (*off + 10 + rdlen > len)
		return -1;
	if (type == DNS_TYPE_OPT) {
		/* Only one, only in the additional section, owned by the root (RFC 6891 6.1.1). */
		if (!additional || q->edns || msg[name_at] != 0)
			return -1;
		q->edns = 1;
		q->edns_size = get16(msg + *off + 2);
		if (q->edns_size < 512)
			q->edns_size = 512;
		q->edns_version = msg[*off + 5];
		q->edns_do = (msg[*off + 6] & 0x80) != 0;
	}
	*off += 10 + rdlen;
	return 0;
}

static enum parse_result
refuse(struct dns_query *q, uint8_t rcode)
{
	q->rcode = rcode;
	q->reply = 1;
	return PARSE_MALFORMED;
}

enum parse_result
dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *q)
{
	size_t off = DNS_HEADER_LEN;
	unsigned qd, an, ns, ar;

	memset(q, 0, sizeof(*q));
	q->text_ok = 1;
	if (len < DNS_HEADER_LEN || (msg[2] & 0x80))
		return PARSE_MALFORMED; /* too short to answer, or a response: dropped */
	q->id = get16(msg);
	q->opcode = (uint8_t)((msg[2] >> 3) & 0x0f);
	q->rd = msg[2] & 0x01;
	q->cd = (msg[3] >> 4) & 0x01;
	qd = get16(msg + 4);
	an = get16(msg + 6);
	ns = get16(msg + 8);
	ar = get16(msg + 10);
	if (q->opcode != 0)
		return refuse(q, DNS_RCODE_NOTIMP);
	if (qd != 1)
		return refuse(q, DNS_RCODE_FORMERR);
	if (read_name(msg, len, &off, q) == -1 || off + 4 > len) {
		q->wire_len = 0;
		q->name[0] = '\0';
		return refuse(q, DNS_RCODE_FORMERR);
	}
	q->qtype = get16(msg + off);
	q->qclass = get16(msg + off + 2);
	q->question = 1;
	off += 4;
	for (unsigned i = 0; i < an + ns + ar; i++)
		if (skip_record(msg, len, &off, q, i >= an + ns) == -1)
			return refuse(q, DNS_RCODE_FORMERR);
	if (q->edns && q->edns_version > 0)
		return refuse(q, DNS_RCODE_BADVERS);
	if (q->qclass != DNS_CLASS_IN && q->qclass != 255)
		return refuse(q, DNS_RCODE_REFUSED);
	return PARSE_OK;
}

enum parse_result
dns_tcp_frame(const uint8_t *buf, size_t len, size_t *msg_len)
{
	size_t n;

	if (len < 2)
		return PARSE_NEED_MORE;
	n = get16(buf);
	if (n < DNS_HEADER_LEN)
		return PARSE_MALFORMED;
	if (len - 2 < n)
		return PARSE_NEED_MORE;
	*msg_len = n;
	return PARSE_OK;
}

/* reply_len: the length of a reply with n answers. */
static size_t
reply_len(const struct dns_query *q, const struct dns_answer *answers, size_t n)
{
	size_t len = DNS_HEADER_LEN + (q->question ? q->wire_len + 4 : 0) + (q->edns ? 11 : 0);

	for (size_t i = 0; i < n; i++)
		len += 12 + (answers[i].family == AF_INET ? 4 : 16);
	return len;
}

size_t
dns_write_reply(uint8_t *out, size_t cap, size_t limit, const struct dns_query *q, unsigned rcode,
		int aa, const struct dns_answer *answers, size_t n, uint32_t ttl)
{
	size_t off = DNS_HEADER_LEN;
	int tc = 0;

	struct dns_query bare = *q;

	if (!q->question)
		n = 0;
	/*
	 * Over the limit: without the answers (TC: ask again over TCP), then
	 * without the question and the OPT record. A header alone is never
	 * more than the query, however its name was compressed.
	 */
	if (reply_len(q, answers, n) > limit) {
		n = 0;
		tc = 1;
		if (reply_len(q, answers, 0) > limit) {
			bare.question = 0;
			if (reply_len(&bare, answers, 0) > limit)
				bare.edns = 0;
			q = &bare;
		}
	}
	if (reply_len(q, answers, n) > cap)
		return 0;
	put16(out, q->id);
	out[2] = (uint8_t)(0x80 | (q->opcode << 3) | (aa ? 0x04 : 0) | (tc ? 0x02 : 0) | q->rd);
	out[3] = (uint8_t)((q->cd ? 0x10 : 0) | (rcode & 0x0f));
	put16(out + 4, q->question ? 1 : 0);
	put16(out + 6, (unsigned)n);
	put16(out + 8, 0);
	put16(out + 10, q->edns ? 1 : 0);
	if (q->question) {
		memcpy(out + off, q->wire, q->wire_len);
		off += q->wire_len;
		put16(out + off, q->qtype);
		put16(out + off + 2, q->qclass);
		off += 4;
	}
	for (size_t i = 0; i < n; i++) {
		size_t alen = answers[i].family == AF_INET ? 4 : 16;
		put16(out + off, 0xc000 | DNS_HEADER_LEN); /* the question's name */
		put16(out + off + 2, alen == 4 ? DNS_TYPE_A : DNS_TYPE_AAAA);
		put16(out + off + 4, DNS_CLASS_IN);
		put32(out + off + 6, ttl);
		put16(out + off + 10, (unsigned)alen);
		memcpy(out + off + 12, answers[i].addr, alen);
		off += 12 + alen;
	}
	if (q->edns) {
		out[off] = 0; /* the root */
		put16(out + off + 1, DNS_TYPE_OPT);
		put16(out + off + 3, DNS_UDP_SIZE);
		/* version 0; DO echoed (RFC 3225 3), the other flags clear */
		put32(out + off + 5, ((uint32_t)(rcode >> 4) << 24) | (q->edns_do ? 0x8000u : 0));
		put16(out + off + 9, 0);
		off += 11;
	}
	return off;
}

const char *
dns_type_name(uint16_t type)
{
	switch (type) {
	case 1:
		return "A";
	case 2:
		return "NS";
	case 5:
		return "CNAME";
	case 6:
		return "SOA";
	case 12:
		return "PTR";
	case 15:
		return "MX";
	case 16:
		return "TXT";
	case 28:
		return "AAAA";
	case 33:
		return "SRV";
	case 64:
		return "SVCB";
	case 65:
		return "HTTPS";
	case 255:
		return "ANY";
	default:
		return NULL;
	}
}
