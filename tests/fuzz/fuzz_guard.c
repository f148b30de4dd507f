/*
 * fuzz_guard.c: the egress address guard's building blocks on hostile
 * input: route_addr_class (the address classes an egress route refuses),
 * config_cidr_contains (allow_ranges, deny_ranges, allow entries) and
 * route_name_is_ip (IP-literal names), each against an independent
 * reference written from the spec's list of refused ranges.
 *
 * The first byte picks the check; the rest is its input.
 *   0: an address (family bit + 16 bytes). The class must be the
 *      reference class for every range the spec lists (never less strict),
 *      anything else refused must be one of the known extra special-purpose
 *      blocks; an IPv6 form that hands IPv4 to IPv4 when dialed (mapped,
 *      NAT64, 6to4) must get the embedded address's class, every other
 *      translation form (SIIT, Teredo, local NAT64) is refused, and
 *      route_addr_embedded_v4 finds the IPv4 address inside every form.
 *   1: a block and an address (family bits, 16 + 16 bytes, prefix byte).
 *      Containment must equal a bitwise prefix compare; a block never
 *      contains an address of the other family; an address is inside every
 *      block built from itself, and inside every shorter prefix of a block
 *      that contains it.
 *   2: a name. If it normalizes, route_name_is_ip must agree with
 *      inet_pton on the normalized text, a literal's address gets a
 *      class without crashing, the same as the binary address's, a name
 *      whose last label is a number (digits, or 0x and hex) is only ever
 *      the dotted quad, and an IPv6 literal comes out as inet_ntop writes
 *      it.
 * A violation traps.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "config.h"
#include "route.h"
#include "fuzz.h"

/* --------------------------------------------------------------------------
 * Reference: the refused ranges as the spec lists them. */

struct ref_block {
	uint8_t net[16];
	unsigned prefix;
	const char *class;
};

/* IPv4 blocks, address in the first 4 bytes. */
static const struct ref_block ref_v4[] = {
    {{127}, 8, "loopback"},
    {{10}, 8, "private"},
    {{172, 16}, 12, "private"},
    {{192, 168}, 16, "private"},
    {{169, 254}, 16, "link-local"},
    {{100, 64}, 10, "cgnat"},
    {{224}, 4, "multicast"},
    {{0}, 8, "unspecified"},
    {{192, 0, 0}, 24, "reserved"},
    {{192, 0, 2}, 24, "reserved"},
    {{198, 18}, 15, "reserved"},
    {{198, 51, 100}, 24, "reserved"},
    {{203, 0, 113}, 24, "reserved"},
    {{240}, 4, "reserved"},
    {{255, 255, 255, 255}, 32, "reserved"},
};

/*
 * IPv6, from the special-purpose registry: globally reachable entries
 * inside refused blocks (checked first), then the refused blocks. An
 * address in none of them is global inside 2000::/3 and "reserved"
 * anywhere else. The translation forms are handled apart.
 */
static const struct ref_block ref_v6_global[] = {
    {{0x20, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, NULL},
    {{0x20, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, 128, NULL},
    {{0x20, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}, 128, NULL},
    {{0x20, 0x01, 0, 3}, 32, NULL},
    {{0x20, 0x01, 0, 4, 1, 0x12}, 48, NULL},
    {{0x20, 0x01, 0, 0x20}, 28, NULL},
    {{0x20, 0x01, 0, 0x30}, 28, NULL},
};
static const struct ref_block ref_v6[] = {
    {{0}, 128, "unspecified"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
    {{0xfe, 0x80}, 10, "link-local"},
    {{0xfe, 0xc0}, 10, "private"},
    {{0xff}, 8, "multicast"},
    {{0xfc}, 7, "ula"},
    {{0x20, 0x01, 0, 0}, 32, "teredo"},
    {{0x20, 0x01}, 23, "reserved"},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "reserved"},
    {{0x3f, 0xff}, 20, "reserved"},
};
static const uint8_t global_unicast[16] = {0x20}; /* 2000::/3 */

/* Blocks the implementation may refuse beyond the spec's list. */
static const struct ref_block extra_v4[] = {
    {{192, 88, 99}, 24, NULL}, /* 6to4 relay anycast */
};

static int
prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;

	for (unsigned i = 0; i < full; i++)
		if (a[i] != net[i])
			return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ net[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static const struct ref_block *
find(const struct ref_block *t, size_t n, const uint8_t *a)
{
	for (size_t i = 0; i < n; i++)
		if (prefix_match(a, t[i].net, t[i].prefix))
			return &t[i];
	return NULL;
}

#define N(t) (sizeof(t) / sizeof((t)[0]))

static const char *
ref_v4_class(const uint8_t *a4)
{
	const struct ref_block *b = find(ref_v4, N(ref_v4), a4);
	return b ? b->class : NULL;
}

/*
 * The IPv4 address an IPv6 form hands to IPv4 when dialed, or NULL:
 * mapped ::ffff:0:0/96, NAT64 64:ff9b::/96 and 6to4 2002::/16.
 */
static const uint8_t *
embedded_v4(const uint8_t *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};

	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return a + 12;
	if (a[0] == 0x20 && a[1] == 0x02)
		return a + 2;
	return NULL;
}

static const char *
ref_v6_class(const uint8_t *a)
{
	const struct ref_block *b;
	const uint8_t *e;

	if ((e = embedded_v4(a)) != NULL)
		return ref_v4_class(e);
	if (find(ref_v6_global, N(ref_v6_global), a) != NULL)
		return NULL;
	if ((b = find(ref_v6, N(ref_v6), a)) != NULL)
		return b->class;
	return prefix_match(a, global_unicast, 3) ? NULL : "reserved";
}

static int
extra_ok(int v6, const uint8_t *a)
{
	const uint8_t *e;

	if (!v6)
		return find(extra_v4, N(extra_v4), a) != NULL;
	return (e = embedded_v4(a)) != NULL && find(extra_v4, N(extra_v4), e) != NULL;
}

static int
same_class(const char *x, const char *y)
{
	if (x == NULL || y == NULL)
		return x == y;
	return strcmp(x, y) == 0;
}

static void
to_sockaddr(int v6, const uint8_t *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, a, 16);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a, 4);
	}
}

static const char *
class_of(int v6, const uint8_t *a)
{
	struct sockaddr_storage ss;

	to_sockaddr(v6, a, &ss);
	return route_addr_class((const struct sockaddr *)&ss);
}

/* --------------------------------------------------------------------------
 * Checks */

static void
check_class(int v6, const uint8_t *a)
{
	const char *got = class_of(v6, a);
	const char *want = v6 ? ref_v6_class(a) : ref_v4_class(a);
	const uint8_t *e;

	if (want != NULL)
		CHECK(same_class(got, want));
	else if (got != NULL)
		CHECK(extra_ok(v6, a));
	if (v6) {
		/* a form handing IPv4 to IPv4 is judged by that address */
		if ((e = embedded_v4(a)) != NULL)
			CHECK(same_class(got, class_of(0, e)));
	} else {
		/*
		 * Every translation form of this IPv4 address: the dialed ones
		 * get its class, and deny_ranges must find it inside each one.
		 */
		static const struct {
			uint8_t pre[16];
			unsigned at;  /* where the address goes */
			uint8_t flip; /* Teredo's client is stored inverted */
			int judged;
		} forms[] = {
		    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 12, 0, 1}, /* mapped */
		    {{0x00, 0x64, 0xff, 0x9b}, 12, 0, 1},		    /* NAT64 */
		    {{0x20, 0x02}, 2, 0, 1},				    /* 6to4 */
		    {{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 12, 0, 0},	    /* SIIT */
		    {{0x20, 0x01, 0, 0}, 4, 0, 0},			    /* Teredo server */
		    {{0x20, 0x01, 0, 0, 9, 9, 9, 9}, 12, 0xff, 0},	    /* Teredo client */
		    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 12, 0, 0},	    /* local NAT64 /96 */
		    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 9, 0, 0},	    /* local NAT64 /64 */
		};
		struct sockaddr_storage ss, v4[ROUTE_EMBEDDED_MAX];
		uint8_t m[16];
		for (size_t i = 0; i < N(forms); i++) {
			size_t n, found = 0;
			memcpy(m, forms[i].pre, 16);
			for (int k = 0; k < 4; k++)
				m[forms[i].at + (unsigned)k] = (uint8_t)(a[k] ^ forms[i].flip);
			if (forms[i].judged)
				CHECK(same_class(class_of(1, m), got));
			else
				CHECK(class_of(1, m) != NULL); /* refused whatever it carries */
			to_sockaddr(1, m, &ss);
			n = route_addr_embedded_v4((const struct sockaddr *)&ss, v4);
			CHECK(n <= ROUTE_EMBEDDED_MAX);
			for (size_t j = 0; j < n; j++)
				found |=
				    memcmp(&((struct sockaddr_in *)&v4[j])->sin_addr, a, 4) == 0;
			CHECK(found);
		}
	}
}

static void
check_cidr(int v6net, const uint8_t *net, unsigned prefix, int v6addr, const uint8_t *a)
{
	struct config_cidr c;
	struct sockaddr_storage ss;
	unsigned maxp = v6net ? 128 : 32;
	int in;

	memset(&c, 0, sizeof(c));
	to_sockaddr(v6net, net, &c.addr);
	c.prefix = prefix % (maxp + 1);
	to_sockaddr(v6addr, a, &ss);
	in = config_cidr_contains(&c, (const struct sockaddr *)&ss);
	CHECK(in == 0 || in == 1);
	if (v6net != v6addr) {
		CHECK(in == 0);
		return;
	}
	CHECK(in == prefix_match(a, net, c.prefix));
	if (in)
		for (unsigned q = 0; q < c.prefix; q++) {
			struct config_cidr shorter = c;
			shorter.prefix = q;
			CHECK(config_cidr_contains(&shorter, (const struct sockaddr *)&ss) == 1);
		}
	/* an address lies inside every block made from itself */
	memcpy(&c.addr, &ss, sizeof(ss));
	CHECK(config_cidr_contains(&c, (const struct sockaddr *)&ss) == 1);
}

static void
check_name(const uint8_t *data, size_t size)
{
	char name[ROUTE_NAME_MAX + 1];
	uint8_t buf[16];
	int is4, is6;

	if (route_normalize_name((const char *)data, size, name, sizeof(name)) != 0)
		return;
	is4 = inet_pton(AF_INET, name, buf) == 1;
	is6 = !is4 && inet_pton(AF_INET6, name, buf) == 1;
	CHECK(route_name_is_ip(name) == (is4 || is6));
	{
		/* the last label, by hand: digits only, or 0x and hex digits */
		const char *last = strrchr(name, '.');
		size_t k = 0;
		int numeric;
		last = last ? last + 1 : name;
		if (last[0] == '0' && last[1] == 'x')
			k = 2;
		numeric = last[k] != '\0' || k == 2;
		for (; last[k] != '\0'; k++)
			if (!(last[k] >= '0' && last[k] <= '9') &&
			    !(k >= 2 && last[1] == 'x' && ((last[k] >= 'a' && last[k] <= 'f'))))
				numeric = 0;
		if (numeric && !is6)
			CHECK(is4);
	}
	if (is6) {
		char text[INET6_ADDRSTRLEN];
		CHECK(inet_ntop(AF_INET6, buf, text, sizeof(text)) != NULL);
		CHECK(strcmp(text, name) == 0);
	}
	if (is4 || is6) {
		const char *got = class_of(is6, buf);
		const char *want = is6 ? ref_v6_class(buf) : ref_v4_class(buf);
		if (want != NULL)
			CHECK(same_class(got, want));
		else if (got != NULL)
			CHECK(extra_ok(is6, buf));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t a[16], b[16];

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		if (size < 18)
			return 0;
		memcpy(a, data + 2, 16);
		check_class(data[1] & 1, a);
		break;
	case 1:
		if (size < 35)
			return 0;
		memcpy(a, data + 3, 16);
		memcpy(b, data + 19, 16);
		/* mostly the same family: a cross-family pair 1 time in 8 */
		check_cidr(data[1] & 1, a, data[2],
			   (data[1] & 0x0e) == 0 ? !(data[1] & 1) : data[1] & 1, b);
		/* and an address near the block: its first bytes */
		memcpy(b, a, (size_t)(data[2] % 17));
		check_cidr(data[1] & 1, a, data[2], data[1] & 1, b);
		break;
	default:
		check_name(data + 1, size - 1);
		break;
	}
	return 0;
}
