/*
 * test_sniff_tls.c: unit tests for the TLS ClientHello parser. Vectors are
 * bytes with a comment per field: two hellos captured from real clients on
 * 127.0.0.1, hand-built ones (one split across two records), and hellos
 * assembled from an extensions block so that each rule of the parser has a
 * good and a bad case. Every proper prefix of every good vector must give
 * PARSE_NEED_MORE.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sniff_tls.h"

#define V(a) (a), sizeof(a)

/*
 * Sent by `openssl s_client -connect 127.0.0.1:PORT -servername example.com`
 * (OpenSSL 3.0) to a listener on 127.0.0.1 that recorded the first bytes.
 * One record; SNI example.com; no ALPN.
 */
static const uint8_t hello_openssl[] = {
    0x16,	      /* content type: handshake */
    0x03, 0x01,	      /* record version */
    0x01, 0x38,	      /* record length 312 */
    0x01,	      /* handshake type: client_hello */
    0x00, 0x01, 0x34, /* handshake length 308 */
    0x03, 0x03,	      /* legacy_version */
    0x16, 0x14, 0x9e, 0xfa, 0xd6, 0x6f, 0x2a, 0x3e, 0xad, 0x5d, 0x7e, 0x52, /* random */
    0xc8, 0x70, 0x5f, 0xf1, 0x64, 0xde, 0xea, 0x99, 0x2c, 0x52, 0x3d, 0x4e, 0x80,
    0xec, 0xe5, 0xdb, 0xde, 0x87, 0x56, 0xcc, 0x20, /* session_id length 32 */
    0xe8, 0xea, 0x8b, 0x39, 0x15, 0x78, 0x9a, 0xb4, 0x5e, 0x0c, 0xbd, 0x55, /* session_id */
    0xc5, 0x38, 0x42, 0xdb, 0xfe, 0x65, 0xfa, 0xa0, 0x7f, 0xa5, 0x61, 0xf5, 0x27,
    0xe0, 0xaf, 0xff, 0x64, 0x4b, 0x46, 0x21, 0x00, 0x3e, /* cipher_suites length 62 */
    0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, /* cipher suites */
    0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0,
    0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a,
    0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00,
    0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, /* compression_methods
									       length */
    0x00,								    /* compression: null */
    0x00, 0xad,							      /* extensions length 173 */
    0x00, 0x00,							      /* extension: server_name */
    0x00, 0x10,							      /* length 16 */
    0x00, 0x0e,							      /* server_name_list length */
    0x00,							      /* name_type: host_name */
    0x00, 0x0b,							      /* host_name length */
    0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d, /* "example.com" */
    0x00, 0x0b,		    /* extension: ec_point_formats */
    0x00, 0x04,		    /* length 4 */
    0x03, 0x00, 0x01, 0x02, /* ec_point_formats data */
    0x00, 0x0a,		    /* extension: supported_groups */
    0x00, 0x16,		    /* length 22 */
    0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, /* supported_groups data
									     */
    0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, /* extension:
									       session_ticket */
    0x00, 0x00,								    /* length 0 */
    0x00, 0x16, /* extension: encrypt_then_mac */
    0x00, 0x00, /* length 0 */
    0x00, 0x17, /* extension: extended_master_secret */
    0x00, 0x00, /* length 0 */
    0x00, 0x0d, /* extension: signature_algorithms */
    0x00, 0x2a, /* length 42 */
    0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, /* signature_algorithms
									       data */
    0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04,
    0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02,
    0x05, 0x02, 0x06, 0x02, 0x00, 0x2b,			  /* extension: supported_versions */
    0x00, 0x09,						  /* length 9 */
    0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, /* supported_versions data */
    0x00, 0x2d,						  /* extension: psk_key_exchange_modes */
    0x00, 0x02,						  /* length 2 */
    0x01, 0x01,						  /* psk_key_exchange_modes data */
    0x00, 0x33,						  /* extension: key_share */
    0x00, 0x26,						  /* length 38 */
    0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x15, 0x9f, 0x9a, 0xe3, 0x6a, 0x95, /* key_share data */
    0x67, 0xbf, 0xf8, 0xfc, 0xc2, 0x8f, 0x09, 0x4d, 0x6f, 0x08, 0x29, 0x84, 0x07,
    0xca, 0x92, 0x87, 0x11, 0x76, 0xc3, 0x62, 0x33, 0x6f, 0x48, 0x27, 0x2c, 0x64,
};

/*
 * Sent by `curl https://x.test:PORT --resolve x.test:PORT:127.0.0.1`
 * (curl 7.88.1, OpenSSL 3.0) to the same recording listener. One record;
 * SNI x.test; ALPN h2, http/1.1; padded to 512 bytes.
 */
static const uint8_t hello_curl[] = {
    0x16,	      /* content type: handshake */
    0x03, 0x01,	      /* record version */
    0x02, 0x00,	      /* record length 512 */
    0x01,	      /* handshake type: client_hello */
    0x00, 0x01, 0xfc, /* handshake length 508 */
    0x03, 0x03,	      /* legacy_version */
    0x12, 0x75, 0xed, 0x17, 0xae, 0x41, 0x2b, 0x16, 0x1f, 0xaa, 0x1e, 0x7c, /* random */
    0xd3, 0x9b, 0x33, 0xdb, 0x16, 0x9a, 0x51, 0xed, 0x35, 0x6b, 0x0d, 0x99, 0x24, 0x8b, 0x6b,
    0x79, 0xea, 0x7a, 0xd0, 0x38, 0x20, /* session_id length 32 */
    0xba, 0xe8, 0x2c, 0xdb, 0x90, 0x97, 0x29, 0x0d, 0x92, 0xed, 0x9c, 0xe2, /* session_id */
    0x50, 0x01, 0xed, 0xda, 0x18, 0x30, 0x64, 0x25, 0x2f, 0x95, 0x6d, 0xe6, 0x35, 0x62, 0xe7,
    0x8d, 0xe6, 0x54, 0x27, 0xd1, 0x00, 0x3e, /* cipher_suites length 62 */
    0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, /* cipher suites */
    0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0,
    0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39,
    0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00,
    0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, /* compression_methods length */
    0x00,				/* compression: null */
    0x01, 0x75,				/* extensions length 373 */
    0x00, 0x00,				/* extension: server_name */
    0x00, 0x0b,				/* length 11 */
    0x00, 0x09,				/* server_name_list length */
    0x00,				/* name_type: host_name */
    0x00, 0x06,				/* host_name length */
    0x78, 0x2e, 0x74, 0x65, 0x73, 0x74, /* "x.test" */
    0x00, 0x0b,				/* extension: ec_point_formats */
    0x00, 0x04,				/* length 4 */
    0x03, 0x00, 0x01, 0x02,		/* ec_point_formats data */
    0x00, 0x0a,				/* extension: supported_groups */
    0x00, 0x16,				/* length 22 */
    0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, /* supported_groups data
									     */
    0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x10, /* extension: ALPN */
    0x00, 0x0e,								    /* length 14 */
    0x00, 0x0c,						  /* protocol_name_list length */
    0x02, 0x68, 0x32,					  /* "h2" */
    0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, /* "http/1.1" */
    0x00, 0x16,						  /* extension: encrypt_then_mac */
    0x00, 0x00,						  /* length 0 */
    0x00, 0x17,						  /* extension: extended_master_secret */
    0x00, 0x00,						  /* length 0 */
    0x00, 0x31,						  /* extension: post_handshake_auth */
    0x00, 0x00,						  /* length 0 */
    0x00, 0x0d,						  /* extension: signature_algorithms */
    0x00, 0x2a,						  /* length 42 */
    0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, /* signature_algorithms
									       data */
    0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05,
    0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
    0x00, 0x2b,						  /* extension: supported_versions */
    0x00, 0x09,						  /* length 9 */
    0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, /* supported_versions data */
    0x00, 0x2d,						  /* extension: psk_key_exchange_modes */
    0x00, 0x02,						  /* length 2 */
    0x01, 0x01,						  /* psk_key_exchange_modes data */
    0x00, 0x33,						  /* extension: key_share */
    0x00, 0x26,						  /* length 38 */
    0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x88, 0xa9, 0xbc, 0x14, 0xc8, 0x75, /* key_share data */
    0xeb, 0xd2, 0x78, 0xe9, 0xc8, 0x8c, 0xfe, 0x7c, 0x51, 0xf8, 0xbf, 0x58, 0x06, 0x1c, 0x8d,
    0x25, 0xdc, 0xce, 0x0b, 0x9c, 0x7a, 0x18, 0x88, 0xb4, 0x47, 0x46, 0x00, 0x15, /* extension:
										     padding */
    0x00, 0xb7,									  /* length 183 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	  /* padding data */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

/* 32 bytes of client random; the parser only skips them. */
#define RANDOM32                                                                                   \
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,  \
	    0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c,    \
	    0x1d, 0x1e, 0x1f

/*
 * Hand-built: one ClientHello of 85 bytes cut into two records in the middle
 * of the host name ("spl" | "it.example"), as a client with a small record
 * size or a middlebox might send it.
 */
static const uint8_t hello_split[] = {
    /* record 1 */
    0x16,	      /* content type: handshake */
    0x03, 0x01,	      /* record version: TLS 1.0 */
    0x00, 0x3b,	      /* record length: 59 */
    0x01,	      /* handshake type: client_hello */
    0x00, 0x00, 0x51, /* handshake length: 81 */
    0x03, 0x03,	      /* legacy_version: TLS 1.2 */
    RANDOM32,	      /* random */
    0x00,	      /* session_id length: 0 */
    0x00, 0x02,	      /* cipher_suites length: 2 */
    0x13, 0x01,	      /* TLS_AES_128_GCM_SHA256 */
    0x01,	      /* compression_methods length: 1 */
    0x00,	      /* null compression */
    0x00, 0x26,	      /* extensions length: 38 */
    0x00, 0x00,	      /* extension: server_name */
    0x00, 0x12,	      /* extension length: 18 */
    0x00, 0x10,	      /* server_name_list length: 16 */
    0x00,	      /* name_type: host_name */
    0x00, 0x0d,	      /* host_name length: 13 */
    's', 'p', 'l',    /* host_name, first part */
    /* record 2 */
    0x16,					      /* content type: handshake */
    0x03, 0x01,					      /* record version: TLS 1.0 */
    0x00, 0x1a,					      /* record length: 26 */
    'i', 't', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', /* host_name, rest */
    0x00, 0x10,					      /* extension: ALPN */
    0x00, 0x05,					      /* extension length: 5 */
    0x00, 0x03,					      /* protocol_name_list length: 3 */
    0x02, 'h', '2',				      /* "h2" */
    0x00, 0x2b,					      /* extension: supported_versions */
    0x00, 0x03,					      /* extension length: 3 */
    0x02, 0x03, 0x04,				      /* versions length 2: TLS 1.3 */
};

/*
 * Hand-built: a TLS 1.0 era hello with no extensions field at all. Complete
 * and valid, but it names no server.
 */
static const uint8_t hello_noext[] = {
    0x16,		  /* content type: handshake */
    0x03,     0x01,	  /* record version: TLS 1.0 */
    0x00,     0x2d,	  /* record length: 45 */
    0x01,		  /* handshake type: client_hello */
    0x00,     0x00, 0x29, /* handshake length: 41 */
    0x03,     0x01,	  /* legacy_version: TLS 1.0 */
    RANDOM32,		  /* random */
    0x00,		  /* session_id length: 0 */
    0x00,     0x02,	  /* cipher_suites length: 2 */
    0x00,     0x2f,	  /* TLS_RSA_WITH_AES_128_CBC_SHA */
    0x01,		  /* compression_methods length: 1 */
    0x00,		  /* null compression */
};

/*
 * build_msg wraps an extensions block into a ClientHello handshake message
 * (header included): TLS 1.2 legacy_version, RANDOM32, empty session_id, one
 * cipher suite, null compression. exts == NULL leaves out the extensions
 * field. Returns the message length.
 */
static size_t
build_msg(uint8_t *msg, size_t cap, const uint8_t *exts, size_t exts_len)
{
	static const uint8_t fixed[] = {
	    0x03,     0x03,		/* legacy_version: TLS 1.2 */
	    RANDOM32,			/* random */
	    0x00,			/* session_id length: 0 */
	    0x00,     0x02, 0x13, 0x01, /* cipher_suites: TLS_AES_128_GCM_SHA256 */
	    0x01,     0x00,		/* compression_methods: null */
	};
	size_t m = 4, body;

	assert_true(4 + sizeof(fixed) + 2 + exts_len <= cap);
	memcpy(msg + m, fixed, sizeof(fixed));
	m += sizeof(fixed);
	if (exts != NULL) {
		msg[m++] = (uint8_t)(exts_len >> 8);
		msg[m++] = (uint8_t)exts_len;
		memcpy(msg + m, exts, exts_len);
		m += exts_len;
	}
	body = m - 4;
	msg[0] = 0x01; /* handshake type: client_hello */
	msg[1] = (uint8_t)(body >> 16);
	msg[2] = (uint8_t)(body >> 8);
	msg[3] = (uint8_t)body;
	return m;
}

/*
 * frame_msg cuts a handshake message into handshake records carrying at most
 * frag bytes each. Returns the bytes written to out.
 */
static size_t
frame_msg(uint8_t *out, size_t cap, const uint8_t *msg, size_t msg_len, size_t frag)
{
	size_t i, o = 0;

	for (i = 0; i < msg_len; i += frag) {
		size_t k = msg_len - i < frag ? msg_len - i : frag;

		assert_true(o + 5 + k <= cap);
		out[o++] = 0x16; /* content type: handshake */
		out[o++] = 0x03; /* record version: TLS 1.0 */
		out[o++] = 0x01;
		out[o++] = (uint8_t)(k >> 8); /* record length */
		out[o++] = (uint8_t)k;
		memcpy(out + o, msg + i, k);
		o += k;
	}
	return o;
}

/* build_hello is build_msg then frame_msg. */
static size_t
build_hello(uint8_t *out, size_t cap, const uint8_t *exts, size_t exts_len, size_t frag)
{
	static uint8_t msg[SNIFF_TLS_MAX_HELLO + 64];
	size_t m = build_msg(msg, sizeof(msg), exts, exts_len);

	return frame_msg(out, cap, msg, m, frag);
}

/* assert_prefixes: every proper prefix of buf is a valid prefix. */
static void
assert_prefixes(const uint8_t *buf, size_t len)
{
	struct sniff_tls_hello h;
	size_t i;

	for (i = 0; i < len; i++) {
		enum parse_result r = sniff_tls_client_hello(buf, i, &h);

		if (r != PARSE_NEED_MORE)
			fail_msg("prefix %zu of %zu: %s", i, len, parse_result_name(r));
	}
}

/* assert_prefixes_not_ok: a bad vector is never accepted, whole or cut. */
static void
assert_prefixes_not_ok(const uint8_t *buf, size_t len)
{
	struct sniff_tls_hello h;
	size_t i;

	for (i = 0; i < len; i++) {
		enum parse_result r = sniff_tls_client_hello(buf, i, &h);

		assert_true(r == PARSE_NEED_MORE || r == PARSE_MALFORMED);
	}
}

static void
test_openssl(void **state)
{
	struct sniff_tls_hello h;

	(void)state;
	assert_int_equal(sniff_tls_client_hello(V(hello_openssl), &h), PARSE_OK);
	assert_string_equal(h.sni, "example.com");
	assert_int_equal(h.sni_len, 11);
	assert_int_equal(h.alpn_count, 0);
	assert_int_equal(h.consumed, sizeof(hello_openssl));
	assert_prefixes(V(hello_openssl));
}

static void
test_curl(void **state)
{
	struct sniff_tls_hello h;

	(void)state;
	assert_int_equal(sniff_tls_client_hello(V(hello_curl), &h), PARSE_OK);
	assert_string_equal(h.sni, "x.test");
	assert_int_equal(h.sni_len, 6);
	assert_int_equal(h.alpn_count, 2);
	assert_string_equal(h.alpn[0], "h2");
	assert_string_equal(h.alpn[1], "http/1.1");
	assert_int_equal(h.consumed, sizeof(hello_curl));
	assert_prefixes(V(hello_curl));
}

static void
test_split(void **state)
{
	struct sniff_tls_hello h;

	(void)state;
	assert_int_equal(sniff_tls_client_hello(V(hello_split), &h), PARSE_OK);
	assert_string_equal(h.sni, "split.example");
	assert_int_equal(h.alpn_count, 1);
	assert_string_equal(h.alpn[0], "h2");
	assert_int_equal(h.consumed, sizeof(hello_split));
	assert_prefixes(V(hello_split));
}

/* Re-cut the captured hellos into records of many sizes, down to 1 byte. */
static void
test_reframed(void **state)
{
	static const struct {
		const uint8_t *buf;
		size_t len;
		const char *sni;
	} in[] = {
	    {V(hello_openssl), "example.com"},
	    {V(hello_curl), "x.test"},
	};
	static const size_t frags[] = {1, 2, 3, 4, 5, 7, 64, 100, 255, 511};
	static uint8_t out[SNIFF_TLS_MAX_HELLO];
	struct sniff_tls_hello h;
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		const uint8_t *msg = in[i].buf + 5; /* past the one record header */
		size_t msg_len = in[i].len - 5;

		for (j = 0; j < sizeof(frags) / sizeof(frags[0]); j++) {
			size_t n = frame_msg(out, sizeof(out), msg, msg_len, frags[j]);

			assert_int_equal(sniff_tls_client_hello(out, n, &h), PARSE_OK);
			assert_string_equal(h.sni, in[i].sni);
			assert_int_equal(h.consumed, n);
			assert_prefixes(out, n);
		}
	}
}

static void
test_no_extensions(void **state)
{
	struct sniff_tls_hello h;

	(void)state;
	assert_int_equal(sniff_tls_client_hello(V(hello_noext), &h), PARSE_NOT_FOUND);
	assert_string_equal(h.sni, "");
	assert_int_equal(h.sni_len, 0);
	assert_int_equal(h.consumed, sizeof(hello_noext));
	assert_prefixes(V(hello_noext));
}

/* The second record of hello_split, one byte longer than the hello. */
static void
test_split_tail(void **state)
{
	uint8_t buf[sizeof(hello_split) + 1];
	struct sniff_tls_hello h;
	size_t rec2 = 5 + 59; /* offset of the second record header */

	(void)state;
	memcpy(buf, hello_split, sizeof(hello_split));
	buf[rec2 + 4] = 0x1b;		 /* record length: 27, not 26 */
	buf[sizeof(hello_split)] = 0x00; /* the stray byte */
	assert_int_equal(sniff_tls_client_hello(V(buf), &h), PARSE_MALFORMED);
	/* known as soon as the record header is in */
	assert_int_equal(sniff_tls_client_hello(buf, rec2 + 5, &h), PARSE_MALFORMED);
	assert_prefixes_not_ok(V(buf));
}

/* Bytes after a complete hello (early data, the next record) are not ours. */
static void
test_trailing_records(void **state)
{
	uint8_t buf[sizeof(hello_split) + 6];
	static const uint8_t ccs[] = {
	    0x14,	/* content type: change_cipher_spec */
	    0x03, 0x03, /* record version */
	    0x00, 0x01, /* record length: 1 */
	    0x01,	/* change_cipher_spec */
	};
	struct sniff_tls_hello h;

	(void)state;
	memcpy(buf, hello_split, sizeof(hello_split));
	memcpy(buf + sizeof(hello_split), ccs, sizeof(ccs));
	assert_int_equal(sniff_tls_client_hello(V(buf), &h), PARSE_OK);
	assert_string_equal(h.sni, "split.example");
	assert_int_equal(h.consumed, sizeof(hello_split));
}

/* --- extension blocks, each wrapped by build_hello --- */

static const uint8_t ext_sni_other_first[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x10, /* extension length: 16 */
    0x00, 0x0e, /* server_name_list length: 14 */
    0x07,	/* name_type: 7 (not host_name) */
    0x00, 0x02, /* name length: 2 */
    0xab, 0xcd, /* opaque name */
    0x00,	/* name_type: host_name */
    0x00, 0x06, /* host_name length: 6 */
    'a',  '.',	't', 'e', 's', 't',
};

static const uint8_t ext_sni_other_only[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x07, /* extension length: 7 */
    0x00, 0x05, /* server_name_list length: 5 */
    0x01,	/* name_type: 1 (not host_name) */
    0x00, 0x02, /* name length: 2 */
    0xab, 0xcd, /* opaque name */
};

static const uint8_t ext_alpn_only[] = {
    0x00, 0x10,					   /* extension: ALPN */
    0x00, 0x0e,					   /* extension length: 14 */
    0x00, 0x0c,					   /* protocol_name_list length: 12 */
    0x02, 'h',	'2',				   /* "h2" */
    0x08, 'h',	't', 't', 'p', '/', '1', '.', '1', /* "http/1.1" */
};

static const uint8_t ext_empty_unknown[] = {
    0x00, 0x17, /* extension: extended_master_secret */
    0x00, 0x00, /* extension length: 0 */
    0xff, 0x01, /* extension: renegotiation_info */
    0x00, 0x01, /* extension length: 1 */
    0x00,	/* renegotiated_connection length: 0 */
    0x00, 0x00, /* extension: server_name */
    0x00, 0x06, /* extension length: 6 */
    0x00, 0x04, /* server_name_list length: 4 */
    0x00,	/* name_type: host_name */
    0x00, 0x01, /* host_name length: 1 */
    'x',
};

static const uint8_t ext_sni_nul[] = {
    0x00, 0x00,	     /* extension: server_name */
    0x00, 0x08,	     /* extension length: 8 */
    0x00, 0x06,	     /* server_name_list length: 6 */
    0x00,	     /* name_type: host_name */
    0x00, 0x03,	     /* host_name length: 3 */
    'a',  0x00, 'b', /* embedded NUL */
};

static const uint8_t ext_sni_dup_ext[] = {
    0x00, 0x00,	      /* extension: server_name */
    0x00, 0x06,	      /* extension length: 6 */
    0x00, 0x04,	      /* server_name_list length: 4 */
    0x00,	      /* name_type: host_name */
    0x00, 0x01,	      /* host_name length: 1 */
    'a',  0x00, 0x00, /* extension: server_name, again */
    0x00, 0x06,	      /* extension length: 6 */
    0x00, 0x04,	      /* server_name_list length: 4 */
    0x00,	      /* name_type: host_name */
    0x00, 0x01,	      /* host_name length: 1 */
    'b',
};

static const uint8_t ext_sni_dup_after_other[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x07, /* extension length: 7 */
    0x00, 0x05, /* server_name_list length: 5 */
    0x01,	/* name_type: 1 (not host_name) */
    0x00, 0x02, /* name length: 2 */
    0xab, 0xcd, /* opaque name */
    0x00, 0x00, /* extension: server_name, again */
    0x00, 0x06, /* extension length: 6 */
    0x00, 0x04, /* server_name_list length: 4 */
    0x00,	/* name_type: host_name */
    0x00, 0x01, /* host_name length: 1 */
    'b',
};

static const uint8_t ext_sni_two_names[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x0a, /* extension length: 10 */
    0x00, 0x08, /* server_name_list length: 8 */
    0x00,	/* name_type: host_name */
    0x00, 0x01, /* host_name length: 1 */
    'a',  0x00, /* name_type: host_name, again */
    0x00, 0x01, /* host_name length: 1 */
    'b',
};

static const uint8_t ext_sni_empty_list[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x02, /* extension length: 2 */
    0x00, 0x00, /* server_name_list length: 0 */
};

static const uint8_t ext_sni_no_data[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x00, /* extension length: 0 (the server's form, not a client's) */
};

static const uint8_t ext_sni_empty_name[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x05, /* extension length: 5 */
    0x00, 0x03, /* server_name_list length: 3 */
    0x00,	/* name_type: host_name */
    0x00, 0x00, /* host_name length: 0 */
};

static const uint8_t ext_sni_list_short[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x06, /* extension length: 6 */
    0x00, 0x03, /* server_name_list length: 3, but 4 bytes follow */
    0x00,	/* name_type: host_name */
    0x00, 0x01, /* host_name length: 1 */
    'a',
};

static const uint8_t ext_sni_name_overrun[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x06, /* extension length: 6 */
    0x00, 0x04, /* server_name_list length: 4 */
    0x00,	/* name_type: host_name */
    0x00, 0x02, /* host_name length: 2, but 1 byte left */
    'a',
};

static const uint8_t ext_sni_entry_cut[] = {
    0x00, 0x00, /* extension: server_name */
    0x00, 0x04, /* extension length: 4 */
    0x00, 0x02, /* server_name_list length: 2 */
    0x00,	/* name_type: host_name */
    0x00,	/* half a host_name length */
};

static const uint8_t ext_overrun[] = {
    0x00, 0x2b, /* extension: supported_versions */
    0x00, 0x09, /* extension length: 9, but 3 bytes follow */
    0x02, 0x03, 0x04,
};

static const uint8_t ext_header_cut[] = {
    0x00, 0x2b, /* extension: supported_versions */
    0x00,	/* half an extension length */
};

static const uint8_t ext_alpn_empty_list[] = {
    0x00, 0x10, /* extension: ALPN */
    0x00, 0x02, /* extension length: 2 */
    0x00, 0x00, /* protocol_name_list length: 0 */
};

static const uint8_t ext_alpn_empty_name[] = {
    0x00, 0x10, /* extension: ALPN */
    0x00, 0x05, /* extension length: 5 */
    0x00, 0x03, /* protocol_name_list length: 3 */
    0x00,	/* name length: 0 */
    0x01, 'x',	/* "x" */
};

static const uint8_t ext_alpn_overrun[] = {
    0x00, 0x10,	     /* extension: ALPN */
    0x00, 0x05,	     /* extension length: 5 */
    0x00, 0x03,	     /* protocol_name_list length: 3 */
    0x05, 'h',	'2', /* name length 5, 2 bytes left */
};

static const uint8_t ext_alpn_dup[] = {
    0x00, 0x10,	     /* extension: ALPN */
    0x00, 0x05,	     /* extension length: 5 */
    0x00, 0x03,	     /* protocol_name_list length: 3 */
    0x02, 'h',	'2', /* "h2" */
    0x00, 0x10,	     /* extension: ALPN, again */
    0x00, 0x05,	     /* extension length: 5 */
    0x00, 0x03,	     /* protocol_name_list length: 3 */
    0x02, 'h',	'2', /* "h2" */
};

static void
test_extension_blocks(void **state)
{
	static const struct {
		const char *what;
		const uint8_t *exts;
		size_t len;
		enum parse_result want;
		const char *sni;
		unsigned alpn;
	} cases[] = {
	    {"non-host_name entry first", V(ext_sni_other_first), PARSE_OK, "a.test", 0},
	    {"only a non-host_name entry", V(ext_sni_other_only), PARSE_NOT_FOUND, "", 0},
	    {"ALPN, no SNI", V(ext_alpn_only), PARSE_NOT_FOUND, "", 2},
	    {"empty extensions skipped", V(ext_empty_unknown), PARSE_OK, "x", 0},
	    {"SNI with NUL", V(ext_sni_nul), PARSE_MALFORMED, "", 0},
	    {"two server_name extensions", V(ext_sni_dup_ext), PARSE_MALFORMED, "", 0},
	    {"second server_name after a nameless one", V(ext_sni_dup_after_other), PARSE_MALFORMED,
	     "", 0},
	    {"two host_names in the list", V(ext_sni_two_names), PARSE_MALFORMED, "", 0},
	    {"empty server_name_list", V(ext_sni_empty_list), PARSE_MALFORMED, "", 0},
	    {"server_name without data", V(ext_sni_no_data), PARSE_MALFORMED, "", 0},
	    {"empty host_name", V(ext_sni_empty_name), PARSE_MALFORMED, "", 0},
	    {"list length short", V(ext_sni_list_short), PARSE_MALFORMED, "", 0},
	    {"host_name overruns", V(ext_sni_name_overrun), PARSE_MALFORMED, "", 0},
	    {"name entry cut", V(ext_sni_entry_cut), PARSE_MALFORMED, "", 0},
	    {"extension overruns", V(ext_overrun), PARSE_MALFORMED, "", 0},
	    {"extension header cut", V(ext_header_cut), PARSE_MALFORMED, "", 0},
	    {"empty ALPN list", V(ext_alpn_empty_list), PARSE_MALFORMED, "", 0},
	    {"empty ALPN name", V(ext_alpn_empty_name), PARSE_MALFORMED, "", 0},
	    {"ALPN name overruns", V(ext_alpn_overrun), PARSE_MALFORMED, "", 0},
	    {"two ALPN extensions", V(ext_alpn_dup), PARSE_MALFORMED, "", 0},
	    {"empty extensions block", (const uint8_t *)"", 0, PARSE_NOT_FOUND, "", 0},
	};
	static uint8_t buf[1024];
	struct sniff_tls_hello h;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum parse_result r;

		n = build_hello(buf, sizeof(buf), cases[i].exts, cases[i].len, 16384);
		r = sniff_tls_client_hello(buf, n, &h);
		if (r != cases[i].want)
			fail_msg("%s: got %s, want %s", cases[i].what, parse_result_name(r),
				 parse_result_name(cases[i].want));
		assert_string_equal(h.sni, cases[i].sni);
		assert_int_equal(h.sni_len, strlen(cases[i].sni));
		assert_int_equal(h.alpn_count, cases[i].alpn);
		if (cases[i].want == PARSE_MALFORMED) {
			assert_prefixes_not_ok(buf, n);
		} else {
			assert_int_equal(h.consumed, n);
			assert_prefixes(buf, n);
		}
	}
}

/* Host names of 255 bytes pass; 256 is MALFORMED. */
static void
test_sni_length(void **state)
{
	uint8_t ext[4 + 2 + 3 + 256], buf[512];
	struct sniff_tls_hello h;
	size_t nlen, n;

	(void)state;
	for (nlen = 254; nlen <= 256; nlen++) {
		ext[0] = 0x00; /* extension: server_name */
		ext[1] = 0x00;
		ext[2] = (uint8_t)((nlen + 5) >> 8); /* extension length */
		ext[3] = (uint8_t)(nlen + 5);
		ext[4] = (uint8_t)((nlen + 3) >> 8); /* server_name_list length */
		ext[5] = (uint8_t)(nlen + 3);
		ext[6] = 0x00;		       /* name_type: host_name */
		ext[7] = (uint8_t)(nlen >> 8); /* host_name length */
		ext[8] = (uint8_t)nlen;
		memset(ext + 9, 'a', nlen);
		n = build_hello(buf, sizeof(buf), ext, 9 + nlen, 16384);
		if (nlen <= 255) {
			assert_int_equal(sniff_tls_client_hello(buf, n, &h), PARSE_OK);
			assert_int_equal(h.sni_len, nlen);
			assert_int_equal(strlen(h.sni), nlen);
		} else {
			assert_int_equal(sniff_tls_client_hello(buf, n, &h), PARSE_MALFORMED);
		}
	}
}

/* The first 8 usable protocols are kept; long or NUL-bearing ones skipped. */
static void
test_alpn_limits(void **state)
{
	uint8_t ext[512], buf[1024];
	struct sniff_tls_hello h;
	size_t e = 6, n, i;
	char name[40];

	(void)state;
	/* 33 bytes: too long, skipped */
	ext[e++] = 33;
	memset(ext + e, 'L', 33);
	e += 33;
	/* "a\0b": has a NUL, skipped */
	ext[e++] = 3;
	ext[e++] = 'a';
	ext[e++] = 0;
	ext[e++] = 'b';
	/* 32 bytes: the longest kept */
	ext[e++] = 32;
	memset(ext + e, 'M', 32);
	e += 32;
	/* p1 .. p9: only p1 .. p7 fit after the one above */
	for (i = 1; i <= 9; i++) {
		ext[e++] = 2;
		ext[e++] = 'p';
		ext[e++] = (uint8_t)('0' + i);
	}
	ext[0] = 0x00; /* extension: ALPN */
	ext[1] = 0x10;
	ext[2] = (uint8_t)((e - 4) >> 8); /* extension length */
	ext[3] = (uint8_t)(e - 4);
	ext[4] = (uint8_t)((e - 6) >> 8); /* protocol_name_list length */
	ext[5] = (uint8_t)(e - 6);
	n = build_hello(buf, sizeof(buf), ext, e, 16384);
	assert_int_equal(sniff_tls_client_hello(buf, n, &h), PARSE_NOT_FOUND);
	assert_int_equal(h.alpn_count, 8);
	memset(name, 'M', 32);
	name[32] = '\0';
	assert_string_equal(h.alpn[0], name);
	for (i = 1; i < 8; i++) {
		snprintf(name, sizeof(name), "p%zu", i);
		assert_string_equal(h.alpn[i], name);
	}
}

/* A hello filling exactly SNIFF_TLS_MAX_HELLO passes; one byte more fails. */
static void
test_max_hello(void **state)
{
	static uint8_t ext[SNIFF_TLS_MAX_HELLO], buf[SNIFF_TLS_MAX_HELLO + 64];
	struct sniff_tls_hello h;
	size_t pad, n;

	(void)state;
	/*
	 * Record header 5 + handshake header 4 + fixed fields 41 + extensions
	 * length 2 + padding extension header 4 + padding = 16384.
	 */
	for (pad = 16328; pad <= 16329; pad++) {
		ext[0] = 0x00; /* extension: padding */
		ext[1] = 0x15;
		ext[2] = (uint8_t)(pad >> 8); /* extension length */
		ext[3] = (uint8_t)pad;
		memset(ext + 4, 0, pad);
		n = build_hello(buf, sizeof(buf), ext, 4 + pad, 16384);
		if (pad == 16328) {
			assert_int_equal(n, SNIFF_TLS_MAX_HELLO);
			assert_int_equal(sniff_tls_client_hello(buf, n, &h), PARSE_NOT_FOUND);
			assert_int_equal(h.consumed, SNIFF_TLS_MAX_HELLO);
			assert_prefixes(buf, n);
		} else {
			assert_int_equal(sniff_tls_client_hello(buf, n, &h), PARSE_MALFORMED);
		}
	}
	/* The same 16384-byte message in two records needs 5 more bytes. */
	ext[2] = (uint8_t)(16328 >> 8);
	ext[3] = (uint8_t)16328;
	n = build_hello(buf, sizeof(buf), ext, 4 + 16328, 8192);
	assert_int_equal(sniff_tls_client_hello(buf, n, &h), PARSE_MALFORMED);
}

/* --- whole-message and record-layer bad vectors --- */

static const uint8_t bad_http[] = {
    'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n',
};

static const uint8_t bad_appdata[] = {
    0x17,	/* content type: application_data */
    0x03, 0x03, /* record version */
    0x00, 0x01, /* record length: 1 */
    0x00,
};

static const uint8_t bad_sslv2[] = {
    0x80, 0x2e, /* SSLv2 record header: length 46 */
    0x01,	/* msg_type: client_hello */
    0x00, 0x02, /* version: SSL 2.0 */
};

static const uint8_t bad_record_major[] = {
    0x16,	/* content type: handshake */
    0x02, 0x00, /* record version: 2.0 */
    0x00, 0x04, /* record length */
};

static const uint8_t bad_record_empty[] = {
    0x16,	/* content type: handshake */
    0x03, 0x01, /* record version */
    0x00, 0x00, /* record length: 0 */
};

static const uint8_t bad_record_long[] = {
    0x16,	/* content type: handshake */
    0x03, 0x01, /* record version */
    0x40, 0x01, /* record length: 16385, over 2^14 */
};

static const uint8_t bad_hs_type[] = {
    0x16,	      /* content type: handshake */
    0x03, 0x03,	      /* record version */
    0x00, 0x04,	      /* record length: 4 */
    0x02,	      /* handshake type: server_hello */
    0x00, 0x00, 0x00, /* handshake length */
};

static const uint8_t bad_hs_huge[] = {
    0x16,	      /* content type: handshake */
    0x03, 0x01,	      /* record version */
    0x00, 0x04,	      /* record length: 4 */
    0x01,	      /* handshake type: client_hello */
    0x00, 0x40, 0x00, /* handshake length: 16384, more than fits */
};

static const uint8_t bad_hs_short[] = {
    0x16,	      /* content type: handshake */
    0x03, 0x01,	      /* record version */
    0x00, 0x08,	      /* record length: 8 */
    0x01,	      /* handshake type: client_hello */
    0x00, 0x00, 0x04, /* handshake length: 4 */
    0x03, 0x03,	      /* legacy_version */
    0x00, 0x01,	      /* not even a random */
};

static const uint8_t bad_record_tail[] = {
    0x16,		  /* content type: handshake */
    0x03,     0x01,	  /* record version */
    0x00,     0x2e,	  /* record length: 46, one byte past the hello */
    0x01,		  /* handshake type: client_hello */
    0x00,     0x00, 0x29, /* handshake length: 41 */
    0x03,     0x01,	  /* legacy_version */
    RANDOM32,		  /* random */
    0x00,		  /* session_id length */
    0x00,     0x02,	  /* cipher_suites length */
    0x00,     0x2f,	  /* TLS_RSA_WITH_AES_128_CBC_SHA */
    0x01,     0x00,	  /* compression_methods: null */
    0x00,		  /* stray byte */
};

static const uint8_t bad_interleaved[] = {
    0x16,	      /* content type: handshake */
    0x03, 0x01,	      /* record version */
    0x00, 0x04,	      /* record length: 4 */
    0x01,	      /* handshake type: client_hello */
    0x00, 0x00, 0x29, /* handshake length: 41 */
    0x14,	      /* content type: change_cipher_spec, mid-hello */
    0x03, 0x03,	      /* record version */
    0x00, 0x01,	      /* record length */
    0x01,
};

static const uint8_t bad_legacy_version[] = {
    0x16,		  /* content type: handshake */
    0x03,     0x01,	  /* record version */
    0x00,     0x2d,	  /* record length: 45 */
    0x01,		  /* handshake type: client_hello */
    0x00,     0x00, 0x29, /* handshake length: 41 */
    0x02,     0x00,	  /* legacy_version: SSL 2.0 */
    RANDOM32,		  /* random */
    0x00,		  /* session_id length */
    0x00,     0x02,	  /* cipher_suites length */
    0x00,     0x2f,	  /* TLS_RSA_WITH_AES_128_CBC_SHA */
    0x01,     0x00,	  /* compression_methods: null */
};

static const uint8_t bad_session_id[] = {
    0x16,		  /* content type: handshake */
    0x03,     0x01,	  /* record version */
    0x00,     0x4e,	  /* record length: 78 */
    0x01,		  /* handshake type: client_hello */
    0x00,     0x00, 0x4a, /* handshake length: 74 */
    0x03,     0x03,	  /* legacy_version */
    RANDOM32,		  /* random */
    0x21,		  /* session_id length: 33, over 32 */
    RANDOM32, 0x20,	  /* session_id */
    0x00,     0x02,	  /* cipher_suites length */
    0x00,     0x2f,	  /* TLS_RSA_WITH_AES_128_CBC_SHA */
    0x01,     0x00,	  /* compression_methods: null */
};

static const uint8_t bad_cipher_odd[] = {
    0x16,			      /* content type: handshake */
    0x03,     0x01,		      /* record version */
    0x00,     0x2e,		      /* record length: 46 */
    0x01,			      /* handshake type: client_hello */
    0x00,     0x00, 0x2a,	      /* handshake length: 42 */
    0x03,     0x03,		      /* legacy_version */
    RANDOM32,			      /* random */
    0x00,			      /* session_id length */
    0x00,     0x03,		      /* cipher_suites length: 3, odd */
    0x00,     0x2f, 0x00, 0x01, 0x00, /* compression_methods: null */
};

static const uint8_t bad_no_compression[] = {
    0x16,		  /* content type: handshake */
    0x03,     0x01,	  /* record version */
    0x00,     0x2c,	  /* record length: 44 */
    0x01,		  /* handshake type: client_hello */
    0x00,     0x00, 0x28, /* handshake length: 40 */
    0x03,     0x03,	  /* legacy_version */
    RANDOM32,		  /* random */
    0x00,		  /* session_id length */
    0x00,     0x02,	  /* cipher_suites length */
    0x00,     0x2f,	  /* TLS_RSA_WITH_AES_128_CBC_SHA */
    0x00,		  /* compression_methods length: 0 */
};

static const uint8_t bad_ext_len[] = {
    0x16,		  /* content type: handshake */
    0x03,     0x01,	  /* record version */
    0x00,     0x30,	  /* record length: 48 */
    0x01,		  /* handshake type: client_hello */
    0x00,     0x00, 0x2c, /* handshake length: 44 */
    0x03,     0x03,	  /* legacy_version */
    RANDOM32,		  /* random */
    0x00,		  /* session_id length */
    0x00,     0x02,	  /* cipher_suites length */
    0x00,     0x2f,	  /* TLS_RSA_WITH_AES_128_CBC_SHA */
    0x01,     0x00,	  /* compression_methods: null */
    0x00,     0x00,	  /* extensions length: 0 ... */
    0x00,		  /* ... but one byte follows */
};

static const uint8_t bad_ext_len_cut[] = {
    0x16,		  /* content type: handshake */
    0x03,     0x01,	  /* record version */
    0x00,     0x2e,	  /* record length: 46 */
    0x01,		  /* handshake type: client_hello */
    0x00,     0x00, 0x2a, /* handshake length: 42 */
    0x03,     0x03,	  /* legacy_version */
    RANDOM32,		  /* random */
    0x00,		  /* session_id length */
    0x00,     0x02,	  /* cipher_suites length */
    0x00,     0x2f,	  /* TLS_RSA_WITH_AES_128_CBC_SHA */
    0x01,     0x00,	  /* compression_methods: null */
    0x00,		  /* half an extensions length */
};

static void
test_bad_vectors(void **state)
{
	static const struct {
		const char *what;
		const uint8_t *buf;
		size_t len;
	} cases[] = {
	    {"HTTP request", V(bad_http)},
	    {"application_data record", V(bad_appdata)},
	    {"SSLv2 hello", V(bad_sslv2)},
	    {"record version 2.0", V(bad_record_major)},
	    {"empty record", V(bad_record_empty)},
	    {"record over 2^14", V(bad_record_long)},
	    {"server_hello", V(bad_hs_type)},
	    {"hello over the cap", V(bad_hs_huge)},
	    {"hello too short", V(bad_hs_short)},
	    {"stray byte after the hello", V(bad_record_tail)},
	    {"record interleaved", V(bad_interleaved)},
	    {"legacy_version 2.0", V(bad_legacy_version)},
	    {"session_id of 33", V(bad_session_id)},
	    {"odd cipher_suites", V(bad_cipher_odd)},
	    {"no compression method", V(bad_no_compression)},
	    {"extensions length short", V(bad_ext_len)},
	    {"extensions length cut", V(bad_ext_len_cut)},
	};
	struct sniff_tls_hello h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum parse_result r = sniff_tls_client_hello(cases[i].buf, cases[i].len, &h);

		if (r != PARSE_MALFORMED)
			fail_msg("%s: got %s", cases[i].what, parse_result_name(r));
		assert_prefixes_not_ok(cases[i].buf, cases[i].len);
	}
	/* Non-TLS bytes are refused from the first byte on. */
	assert_int_equal(sniff_tls_client_hello(bad_http, 1, &h), PARSE_MALFORMED);
	assert_int_equal(sniff_tls_client_hello(bad_record_major, 2, &h), PARSE_MALFORMED);
	/* The wrong handshake type shows in the sixth byte. */
	assert_int_equal(sniff_tls_client_hello(bad_hs_type, 6, &h), PARSE_MALFORMED);
}

static void
test_empty_input(void **state)
{
	struct sniff_tls_hello h;

	(void)state;
	assert_int_equal(sniff_tls_client_hello(NULL, 0, &h), PARSE_NEED_MORE);
	assert_int_equal(sniff_tls_client_hello(hello_curl, 0, &h), PARSE_NEED_MORE);
}

static void
test_alert(void **state)
{
	static const uint8_t want[] = {
	    0x15,	/* content type: alert */
	    0x03, 0x03, /* record version: TLS 1.2 */
	    0x00, 0x02, /* record length: 2 */
	    0x02,	/* level: fatal */
	    0x70,	/* description: unrecognized_name (112) */
	};
	uint8_t out[16];

	(void)state;
	memset(out, 0xee, sizeof(out));
	assert_int_equal(sniff_tls_alert_unrecognized_name(out, sizeof(out)), sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(out[sizeof(want)], 0xee);
	assert_int_equal(sniff_tls_alert_unrecognized_name(out, sizeof(want)), sizeof(want));
	assert_int_equal(sniff_tls_alert_unrecognized_name(out, sizeof(want) - 1), 0);
	assert_int_equal(sniff_tls_alert_unrecognized_name(NULL, 100), 0);
}

/* too_large tells a hello that is only too big from one that is broken. */
static void
test_too_large_flag(void **state)
{
	struct sniff_tls_hello out;
	/* A record of 16384 bytes carrying the start of a 20000-byte hello. */
	static const uint8_t big[] = {
	    0x16, 0x03, 0x01, /* handshake record, TLS 1.0 record version */
	    0x40, 0x00,	      /* record length 16384 */
	    0x01,	      /* handshake type: ClientHello */
	    0x00, 0x4e, 0x20, /* hello length 20000: over SNIFF_TLS_MAX_HELLO */
	    0x03, 0x03,	      /* client version TLS 1.2 */
	};
	static const uint8_t broken[] = {
	    0x16, 0x03, 0x01, 0x00, 0x08, 0x02, /* handshake type: ServerHello, not a hello */
	    0x00, 0x00, 0x04, 0x03, 0x03, 0x00, 0x00,
	};

	(void)state;
	assert_int_equal(sniff_tls_client_hello(big, sizeof(big), &out), PARSE_MALFORMED);
	assert_int_equal(out.too_large, 1);
	assert_int_equal(sniff_tls_client_hello(broken, sizeof(broken), &out), PARSE_MALFORMED);
	assert_int_equal(out.too_large, 0);
	assert_int_equal(sniff_tls_client_hello(big, 3, &out), PARSE_NEED_MORE);
	assert_int_equal(out.too_large, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_too_large_flag),
	    cmocka_unit_test(test_openssl),
	    cmocka_unit_test(test_curl),
	    cmocka_unit_test(test_split),
	    cmocka_unit_test(test_split_tail),
	    cmocka_unit_test(test_reframed),
	    cmocka_unit_test(test_no_extensions),
	    cmocka_unit_test(test_trailing_records),
	    cmocka_unit_test(test_extension_blocks),
	    cmocka_unit_test(test_sni_length),
	    cmocka_unit_test(test_alpn_limits),
	    cmocka_unit_test(test_max_hello),
	    cmocka_unit_test(test_bad_vectors),
	    cmocka_unit_test(test_empty_input),
	    cmocka_unit_test(test_alert),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
