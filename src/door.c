/*
 * door.c: the DNS door. Datagrams are read in batches from the UDP
 * socket and answered at once; TCP connections are buffered streams of
 * length-framed queries. Both go through door_reply, which parses the
 * query (dns.c), asks the listener's policy (the same allowlist, sources
 * and action as the other modes), and writes the reply, never larger than
 * three times the query over UDP. A per-source token bucket drops what a
 * tunnelling workload sends beyond max_queries_per_source; refusals are
 * logged, at most a few lines a second per source, the rest counted into
 * the next line as suppressed=N.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "dns.h"
#include "door.h"
#include "hash.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "observed.h"
#include "policy.h"
#include "route.h"
#include "worker.h"

#define RATE_SLOTS	4096 /* sources tracked per door, plus one overflow bucket */
#define RATE_WAYS	8    /* slots a source may sit in */
#define RATE_IDLE_MS	5000 /* a bucket this long idle is full again (and its log allowance) */
#define LOG_BURST	5    /* refusal lines a source may cause at once */
#define UDP_BATCH	64   /* datagrams read per wakeup */
#define DNS_MSG_MAX	65535
#define ANSWERS_MAX	8			/* addresses in one answer */
#define TCP_PENDING_MAX (4 * (DNS_MSG_MAX + 2)) /* unread replies a TCP client may leave */

struct rate_slot {
	uint8_t family, addr[16];
	double tokens, log_tokens;
	int64_t last_ms;
	uint64_t suppressed; /* refusal lines not written */
};

struct door_tcp;
TAILQ_HEAD(door_tcp_list, door_tcp);

struct door {
	struct gk *gk;
	struct listener *l;
	evutil_socket_t fd;
	struct event *ev;
	struct rate_slot *slots;
	struct door_tcp_list conns;   /* its TCP connections, closed with it */
	uint8_t in[DNS_MSG_MAX];      /* one datagram; the loop's own (workers run apart) */
	uint8_t out[DNS_MSG_MAX + 2]; /* one reply, after a TCP length */
};

static const char *const result_names[DOOR_RESULT_COUNT] = {
    "answered", "nodata", "nxdomain", "refused", "error", "dropped", "rate_limited",
};

const char *
door_result_name(enum door_result r)
{
	return (unsigned)r < DOOR_RESULT_COUNT ? result_names[r] : "?";
}

/* ---- per-source state ---- */

/*
 * slot_of finds the source's bucket among the RATE_WAYS slots its address
 * hashes to. A source not there takes a free one, or one idle long enough
 * to have refilled (starting it full loses nothing then). When every slot
 * there is busy, newcomers share the overflow bucket: a source with many
 * addresses makes its neighbours share its limit, never resets one.
 */
static struct rate_slot *
slot_of(struct door *d, const struct sockaddr *from, int64_t now)
{
	struct sockaddr_in v4;
	const struct sockaddr *sa = net_unmap_v4(from, &v4);
	uint8_t addr[16] = {0};
	uint32_t h;
	struct rate_slot *s, *reuse = NULL;
	const uint8_t *bytes;
	size_t alen;

	if (sa == NULL)
		sa = from;
	if ((bytes = net_addr_bytes(sa, &alen)) != NULL)
		memcpy(addr, bytes, alen);
	h = hash_bytes(HASH_SEED, addr, alen);
	for (size_t i = 0; i < RATE_WAYS; i++) {
		s = &d->slots[(h + i) % RATE_SLOTS];
		if (s->family == sa->sa_family && memcmp(s->addr, addr, 16) == 0)
			return s;
		if (reuse == NULL && (s->family == 0 || now - s->last_ms > RATE_IDLE_MS))
			reuse = s;
	}
	if (reuse == NULL)
		return &d->slots[RATE_SLOTS]; /* the overflow bucket */
	memset(reuse, 0, sizeof(*reuse));
	reuse->family = (uint8_t)sa->sa_family;
	memcpy(reuse->addr, addr, 16);
	reuse->tokens = -1; /* full, at the first refill */
	reuse->log_tokens = LOG_BURST;
	return reuse;
}

/*
 * rate_ok takes one query from the source's bucket: max_queries_per_source
 * a second shared out between the workers, with a second's worth of
 * burst. Also refills its log allowance (one line a second).
 */
static int
rate_ok(struct rate_slot *s, const struct config_listener *conf, int workers, int64_t now)
{
	double rate = (double)conf->max_queries_per_source / (workers > 0 ? workers : 1);
	double elapsed = s->last_ms ? (double)(now - s->last_ms) / 1000.0 : 0;

	s->last_ms = now;
	s->log_tokens += elapsed;
	if (s->log_tokens > LOG_BURST)
		s->log_tokens = LOG_BURST;
	if (conf->max_queries_per_source <= 0)
		return 1;
	if (rate < 1)
		rate = 1;
	if (s->tokens < 0)
		s->tokens = rate;
	s->tokens += elapsed * rate;
	if (s->tokens > rate)
		s->tokens = rate;
	if (s->tokens < 1)
		return 0;
	s->tokens -= 1;
	return 1;
}

/* ---- one query ---- */

/* What door_reply was asked: where the query came from and to, how it came. */
struct ask {
	const struct sockaddr *from, *to;
	int tcp;
};

static void
log_refusal(struct door *d, struct rate_slot *s, const struct ask *a, const struct dns_query *q,
	    const char *why)
{
	char client[NET_ADDRSTRLEN], type[16];
	const char *tn = dns_type_name(q->qtype);

	if (s->log_tokens < 1) {
		s->suppressed++;
		return;
	}
	s->log_tokens -= 1;
	if (tn == NULL)
		snprintf(type, sizeof(type), "TYPE%u", q->qtype);
	log_kv(LOG_LEVEL_INFO, "dns refused", LOG_STR("listener", listener_conf(d->l)->name),
	       LOG_STR("client", net_format(a->from, client, sizeof(client))),
	       LOG_STR("name", q->question && q->text_ok ? q->name : NULL),
	       LOG_STR("type", tn ? tn : type), LOG_STR("transport", a->tcp ? "tcp" : "udp"),
	       LOG_STR("reason", why), LOG_NUM("suppressed", s->suppressed));
	s->suppressed = 0;
}

/* add_answer adds sa to out[*n] when it is of a family q asks for. */
static void
add_answer(const struct dns_query *q, const struct sockaddr *sa, struct dns_answer *out, size_t *n)
{
	int any = q->qtype == 255;
	size_t len;
	const uint8_t *a = net_addr_bytes(sa, &len);

	if (a == NULL || !((len == 4 && (any || q->qtype == DNS_TYPE_A)) ||
			   (len == 16 && (any || q->qtype == DNS_TYPE_AAAA))))
		return;
	out[*n].family = sa->sa_family;
	memcpy(out[*n].addr, a, len);
	(*n)++;
}

/*
 * answers_for fills the addresses an allowed name gets for q's type: the
 * listener's 'answer', or the address the query came to (one door serves
 * several networks). Returns how many.
 */
static size_t
answers_for(const struct config_listener *conf, const struct dns_query *q,
	    const struct sockaddr *to, struct dns_answer *out)
{
	size_t n = 0;

	if (conf->n_answer == 0)
		add_answer(q, to, out, &n);
	for (size_t i = 0; i < conf->n_answer && n < ANSWERS_MAX; i++)
		add_answer(q, (const struct sockaddr *)&conf->answer[i].addr, out, &n);
	return n;
}

/* note_would_deny records what report mode answered although enforce mode would not. */
static void
note_would_deny(struct door *d, const struct config_listener *conf, const struct ask *a,
		const char *name, enum reason why)
{
	observed_record(conf->name, "dns", name, 0, a->from, why);
	listener_count_would_deny(d->l);
}

/*
 * door_reply answers the query msg[0..len) into out (cap bytes). Returns
 * the reply's length, or 0 when nothing is to be sent back.
 */
static size_t
door_reply(struct door *d, const struct ask *a, const uint8_t *msg, size_t len, uint8_t *out,
	   size_t cap)
{
	const struct config_listener *conf = listener_conf(d->l);
	int64_t now = clock_now_ms();
	struct rate_slot *s = slot_of(d, a->from, now);
	struct policy_source src = {a->from, listener_source_names(d->l)};
	struct dns_answer answers[ANSWERS_MAX];
	struct policy_verdict v;
	struct dns_query q;
	char name[ROUTE_NAME_MAX + 1];
	enum parse_result r = dns_parse_query(msg, len, &q);
	/* Never more than three times the query over UDP: no amplification. */
	size_t limit = a->tcp ? DNS_MSG_MAX : 3 * len;
	enum reason why = REASON_NONE;
	int is_root;
	unsigned rcode;
	size_t n = 0, out_len;
	enum door_result result;

	if (!a->tcp && q.edns && limit > q.edns_size)
		limit = q.edns_size;
	if (!a->tcp && !q.edns && limit > 512)
		limit = 512;
	if (!rate_ok(s, conf, d->gk->n_workers, now)) {
		listener_count_dns(d->l, DOOR_RATE_LIMITED);
		return 0;
	}
	if (r != PARSE_OK) {
		if (!q.reply) {
			listener_count_dns(d->l, DOOR_DROPPED);
			return 0;
		}
		/* An error answer is no larger than what came. */
		out_len =
		    dns_write_reply(out, cap, a->tcp ? limit : len, &q, q.rcode, 0, NULL, 0, 0);
		listener_count_dns(d->l, out_len ? DOOR_ERROR : DOOR_DROPPED);
		if (out_len)
			log_refusal(d, s, a, &q,
				    q.rcode == DNS_RCODE_NOTIMP	   ? "notimp"
				    : q.rcode == DNS_RCODE_REFUSED ? "class"
				    : q.rcode == DNS_RCODE_BADVERS ? "badvers"
								   : "formerr");
		return out_len;
	}
	/* Who asks first: a source not allowed to is refused whatever the name. */
	if (!policy_peer_admitted(conf->policy, &src) ||
	    !policy_client_admitted(conf->policy, &src)) {
		if (!conf->report)
			why = REASON_SOURCE_DENIED;
		else
			note_would_deny(d, conf, a, q.text_ok ? q.name : NULL,
					REASON_SOURCE_DENIED);
	}
	name[0] = '\0';
	is_root = q.text_ok && q.name[0] == '\0';
	if (why == REASON_NONE && q.name[0] != '\0') {
		/* An IP literal, or bytes no name has, is never "allowed" by a name. */
		if (!q.text_ok ||
		    route_normalize_name(q.name, strlen(q.name), name, sizeof(name)) == -1 ||
		    route_name_is_ip(name))
			why = REASON_NOT_ALLOWED;
		else if (policy_route(conf->policy, name, 0, net_port(a->to), &src, &v) == -1)
			why = v.refusal;
		else if (v.would_deny != REASON_NONE)
			note_would_deny(d, conf, a, name, v.would_deny);
	} else if (why == REASON_NONE) {
		why = REASON_NOT_ALLOWED; /* the root: NODATA below when anything is allowed */
	}
	if (why == REASON_SOURCE_DENIED) {
		rcode = DNS_RCODE_REFUSED;
		result = DOOR_REFUSED;
		log_refusal(d, s, a, &q, "source_denied");
	} else if (why != REASON_NONE) {
		if (why != REASON_SOURCE_DENIED && (name[0] != '\0' || is_root) &&
		    policy_name_ancestor(conf->policy, name)) {
			/* A parent of an allowed name exists: NODATA, or resolvers stop below it.
			 */
			rcode = DNS_RCODE_NOERROR;
			result = DOOR_NODATA;
		} else {
			rcode = conf->refuse == CONFIG_REFUSE_REFUSED ? DNS_RCODE_REFUSED
								      : DNS_RCODE_NXDOMAIN;
			result = rcode == DNS_RCODE_REFUSED ? DOOR_REFUSED : DOOR_NXDOMAIN;
			log_refusal(d, s, a, &q, reason_name(why));
		}
	} else {
		rcode = DNS_RCODE_NOERROR;
		n = name[0] != '\0' ? answers_for(conf, &q, a->to, answers) : 0;
		result = n > 0 ? DOOR_ANSWERED : DOOR_NODATA;
	}
	out_len = dns_write_reply(out, cap, limit, &q, rcode, 1, answers, n,
				  (uint32_t)(conf->dns_ttl / 1000));
	listener_count_dns(d->l, out_len ? result : DOOR_DROPPED);
	if (result == DOOR_ANSWERED || result == DOOR_NODATA) {
		char client[NET_ADDRSTRLEN];
		log_kv(LOG_LEVEL_DEBUG, "dns answered", LOG_STR("listener", conf->name),
		       LOG_STR("client", net_format(a->from, client, sizeof(client))),
		       LOG_STR("name", q.text_ok ? q.name : NULL), LOG_NUM("type", q.qtype),
		       LOG_NUM("answers", n));
	}
	return out_len;
}

/* ---- UDP ---- */

static void
on_datagram(evutil_socket_t fd, short what, void *arg)
{
	struct door *d = arg;
	uint8_t *in = d->in, *out = d->out;

	(void)what;
	for (int i = 0; i < UDP_BATCH; i++) {
		struct sockaddr_storage from, to;
		union {
			char v4[CMSG_SPACE(sizeof(struct in_pktinfo))];
			char v6[CMSG_SPACE(sizeof(struct in6_pktinfo))];
		} cbuf;
		struct iovec iov = {in, sizeof(d->in)};
		struct msghdr mh = {&from, sizeof(from), &iov, 1, &cbuf, sizeof(cbuf), 0};
		struct ask a = {(struct sockaddr *)&from, (struct sockaddr *)&to, 0};
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
		size_t out_len;

		if (n < 0)
			return; /* EAGAIN: all read; anything else concerns one datagram */
		memcpy(&to, listener_bound(d->l), sizeof(to));
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
				struct in_pktinfo pi;
				memcpy(&pi, CMSG_DATA(c), sizeof(pi));
				((struct sockaddr_in *)&to)->sin_addr = pi.ipi_addr;
			} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
				struct in6_pktinfo pi;
				memcpy(&pi, CMSG_DATA(c), sizeof(pi));
				((struct sockaddr_in6 *)&to)->sin6_addr = pi.ipi6_addr;
			}
		}
		if ((out_len = door_reply(d, &a, in, (size_t)n, out, DNS_MSG_MAX)) == 0)
			continue;
		{
			/* From the address it came to, whatever the socket is bound to. */
			union {
				char v4[CMSG_SPACE(sizeof(struct in_pktinfo))];
				char v6[CMSG_SPACE(sizeof(struct in6_pktinfo))];
			} sbuf;
			struct iovec oiov = {out, out_len};
			struct msghdr om = {&from, mh.msg_namelen, &oiov, 1, &sbuf, 0, 0};
			struct cmsghdr *c;
			memset(&sbuf, 0, sizeof(sbuf));
			om.msg_control = &sbuf;
			if (to.ss_family == AF_INET) {
				struct in_pktinfo pi;
				memset(&pi, 0, sizeof(pi));
				pi.ipi_spec_dst = ((struct sockaddr_in *)&to)->sin_addr;
				om.msg_controllen = CMSG_SPACE(sizeof(pi));
				c = CMSG_FIRSTHDR(&om);
				c->cmsg_level = IPPROTO_IP;
				c->cmsg_type = IP_PKTINFO;
				c->cmsg_len = CMSG_LEN(sizeof(pi));
				memcpy(CMSG_DATA(c), &pi, sizeof(pi));
			} else {
				struct in6_pktinfo pi;
				memset(&pi, 0, sizeof(pi));
				pi.ipi6_addr = ((struct sockaddr_in6 *)&to)->sin6_addr;
				om.msg_controllen = CMSG_SPACE(sizeof(pi));
				c = CMSG_FIRSTHDR(&om);
				c->cmsg_level = IPPROTO_IPV6;
				c->cmsg_type = IPV6_PKTINFO;
				c->cmsg_len = CMSG_LEN(sizeof(pi));
				memcpy(CMSG_DATA(c), &pi, sizeof(pi));
			}
			(void)sendmsg(fd, &om, MSG_DONTWAIT | MSG_NOSIGNAL);
		}
	}
}

struct door *
door_open(struct gk *gk, struct listener *l, const struct sockaddr *addr)
{
	struct door *d = calloc(1, sizeof(*d));
	char err[256];

	if (d != NULL)
		d->fd = -1;
	if (d == NULL || (d->slots = calloc(RATE_SLOTS + 1, sizeof(*d->slots))) == NULL) {
		log_kv(LOG_LEVEL_ERROR, "cannot start dns listener",
		       LOG_STR("listener", listener_conf(l)->name),
		       LOG_STR("error", "out of memory"));
		door_free(d);
		return NULL;
	}
	d->gk = gk;
	d->l = l;
	d->slots[RATE_SLOTS].tokens = -1; /* the overflow bucket, full to begin */
	TAILQ_INIT(&d->conns);
	d->fd = net_bind_udp(addr, net_sockaddr_len(addr), gk->n_workers > 1, err, sizeof(err));
	if (d->fd == -1) {
		log_kv(LOG_LEVEL_ERROR, "cannot listen",
		       LOG_STR("listener", listener_conf(l)->name), LOG_STR("error", err));
		door_free(d);
		return NULL;
	}
	{
		/* Room for a burst: the kernel drops what does not fit before any bucket sees it.
		 */
		int size = 1 << 20;
		(void)setsockopt(d->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	}
	if ((d->ev = event_new(gk->base, d->fd, EV_READ | EV_PERSIST, on_datagram, d)) == NULL ||
	    event_add(d->ev, NULL) == -1) {
		door_free(d);
		return NULL;
	}
	return d;
}

void
door_free(struct door *d)
{
	if (d == NULL)
		return;
	if (d->ev)
		event_free(d->ev);
	if (d->fd >= 0)
		close(d->fd);
	free(d->slots);
	free(d);
}

/* ---- TCP ---- */

static void tcp_close(struct door_tcp *t, enum reason why);

struct door_tcp {
	TAILQ_ENTRY(door_tcp) entry;
	struct door *door; /* the listener's, for its source buckets */
	struct listener *l;
	struct bufferevent *bev;
	struct sockaddr_storage peer, local;
	uint64_t bytes_in, bytes_out;
};

static void
tcp_close(struct door_tcp *t, enum reason why)
{
	struct listener_outcome o = {DECISION_NONE, why, t->bytes_in, t->bytes_out};

	TAILQ_REMOVE(&t->door->conns, t, entry);
	bufferevent_free(t->bev);
	listener_session_end(t->l, &o);
	free(t);
}

static void
on_tcp_read(struct bufferevent *bev, void *arg)
{
	struct door_tcp *t = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t *out = t->door->out;
	struct ask a = {(struct sockaddr *)&t->peer, (struct sockaddr *)&t->local, 1};

	for (;;) {
		size_t have = evbuffer_get_length(in), msg_len = 0, n;
		uint8_t *buf;
		enum parse_result r;

		if (have < 2)
			return;
		buf = evbuffer_pullup(in, have < DNS_MSG_MAX + 2 ? (ssize_t)have : DNS_MSG_MAX + 2);
		if ((r = dns_tcp_frame(buf, have, &msg_len)) == PARSE_NEED_MORE)
			return;
		if (r == PARSE_MALFORMED) {
			listener_count_dns(t->l, DOOR_DROPPED);
			tcp_close(t, REASON_MALFORMED);
			return;
		}
		/* A client that does not read its answers is not fed more. */
		if (evbuffer_get_length(bufferevent_get_output(bev)) > TCP_PENDING_MAX) {
			tcp_close(t, REASON_TOO_LARGE);
			return;
		}
		n = door_reply(t->door, &a, buf + 2, msg_len, out + 2, DNS_MSG_MAX);
		t->bytes_in += 2 + msg_len;
		evbuffer_drain(in, 2 + msg_len);
		if (n == 0)
			continue;
		out[0] = (uint8_t)(n >> 8);
		out[1] = (uint8_t)n;
		bufferevent_write(bev, out, n + 2);
		t->bytes_out += n + 2;
	}
}

static void
on_tcp_event(struct bufferevent *bev, short what, void *arg)
{
	struct door_tcp *t = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT)
		tcp_close(t, REASON_IDLE_TIMEOUT);
	else if (what & BEV_EVENT_EOF)
		tcp_close(t, REASON_CLIENT_CLOSED);
	else if (what & BEV_EVENT_ERROR)
		tcp_close(t, REASON_CLIENT_ERROR);
}

void
door_tcp_start(struct gk *gk, struct listener *l, evutil_socket_t fd, const struct sockaddr *peer,
	       socklen_t peerlen)
{
	const struct config_listener *conf = listener_conf(l);
	struct door_tcp *t;
	socklen_t llen = sizeof(t->local);
	struct timeval idle;

	if (gk->draining || listener_door(l) == NULL || (t = calloc(1, sizeof(*t))) == NULL) {
		evutil_closesocket(fd);
		return;
	}
	t->door = listener_door(l);
	t->l = l;
	memcpy(&t->peer, peer, peerlen <= sizeof(t->peer) ? peerlen : sizeof(t->peer));
	if (getsockname(fd, (struct sockaddr *)&t->local, &llen) == -1)
		memcpy(&t->local, listener_bound(l), sizeof(t->local));
	if ((t->bev = bufferevent_socket_new(gk->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		evutil_closesocket(fd);
		free(t);
		return;
	}
	listener_session_begin(l);
	TAILQ_INSERT_TAIL(&t->door->conns, t, entry);
	bufferevent_setcb(t->bev, on_tcp_read, NULL, on_tcp_event, t);
	idle = clock_tv(conf->idle_timeout > 0 ? conf->idle_timeout : 10000);
	bufferevent_set_timeouts(t->bev, &idle, &idle);
	bufferevent_enable(t->bev, EV_READ | EV_WRITE);
}

void
door_shutdown(struct door *d)
{
	if (d == NULL)
		return;
	if (d->ev)
		event_del(d->ev);
	while (!TAILQ_EMPTY(&d->conns))
		tcp_close(TAILQ_FIRST(&d->conns), REASON_SHUTDOWN);
}
_Static_assert(DOOR_RESULT_COUNT <= sizeof(((struct listener_stats *)0)->dns) / sizeof(uint64_t),
	       "listener_stats.dns holds every result");
