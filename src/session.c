/*
 * session.c: the life of one connection.
 *
 *   accept -> addresses from the resolver snapshot (never wait for DNS)
 *          -> connect, trying the next address on failure
 *          -> relay both ways -> session_close(reason)
 *
 * The connect phase shares connect_timeout between the addresses still to
 * try, so one blackholed address cannot eat the whole budget while a
 * healthy one waits. A failed connect asks the resolver for a fresh lookup,
 * because the usual cause in Docker is a restarted container with a new
 * address. Every path out goes through session_close, which frees the
 * session, cancels its timers and writes its one access-log line.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "gk.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "relay.h"
#include "resolver.h"
#include "session.h"

enum session_state {
	SESSION_CONNECTING,
	SESSION_RELAYING,
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct gk *gk;
	struct listener *listener;
	const struct config_listener *conf;
	enum session_state state;
	struct sockaddr_storage client;
	struct bufferevent *client_bev;
	struct bufferevent *upstream_bev;
	struct resolver_addrs *addrs;
	size_t first, tried;   /* round-robin start, addresses tried so far */
	int timed_out;         /* some attempt ran out of time */
	int upstream_set;      /* upstream holds the address tried or connected */
	struct sockaddr_storage upstream;
	char error[96];        /* last connect error, for the access line */
	struct timeval started, deadline;
	struct event *timer;   /* connect attempt deadline */
	struct relay relay;
};

static void connect_next(struct session *s);

static int64_t
ms_between(const struct timeval *a, const struct timeval *b)
{
	return (int64_t)(b->tv_sec - a->tv_sec) * 1000 + (b->tv_usec - a->tv_usec) / 1000;
}

static void
log_access(struct session *s, const char *reason)
{
	char client[NET_ADDRSTRLEN], upstream[NET_ADDRSTRLEN];
	struct log_field f[10];
	struct timeval now;
	size_t n = 0;

	event_base_gettimeofday_cached(s->gk->base, &now);
	f[n++] = LOG_STR("listener", s->conf->name);
	f[n++] = LOG_STR("client",
	    net_format((struct sockaddr *)&s->client, client, sizeof(client)));
	f[n++] = LOG_STR("name", s->conf->upstream.host);
	f[n++] = LOG_STR("upstream", s->upstream_set ? net_format((struct sockaddr *)&s->upstream,
							   upstream, sizeof(upstream)) :
						       "-");
	f[n++] = LOG_NUM("bytes_in", s->relay.bytes[RELAY_CLIENT]);
	f[n++] = LOG_NUM("bytes_out", s->relay.bytes[RELAY_UPSTREAM]);
	f[n++] = LOG_NUM("duration_ms", ms_between(&s->started, &now));
	f[n++] = LOG_STR("reason", reason);
	if (s->error[0] != '\0')
		f[n++] = LOG_STR("error", s->error);
	log_fields(LOG_LEVEL_INFO, "access", f, n);
}

void
session_close(struct session *s, const char *reason)
{
	struct gk *gk = s->gk;

	log_access(s, reason);
	relay_stop(&s->relay);
	if (s->timer)
		event_free(s->timer);
	if (s->upstream_bev)
		bufferevent_free(s->upstream_bev);
	if (s->client_bev)
		bufferevent_free(s->client_bev);
	resolver_addrs_release(s->addrs);
	TAILQ_REMOVE(&gk->sessions, s, entry);
	gk->n_sessions--;
	listener_session_end(s->listener);
	free(s);
	gk_session_ended(gk);
}

void
session_close_all(struct gk *gk, const char *reason)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&gk->sessions)) != NULL)
		session_close(s, reason);
}

static void
on_relay_done(void *arg, const char *reason)
{
	session_close(arg, reason);
}

static void
set_error(struct session *s, int err)
{
	snprintf(s->error, sizeof(s->error), "%s", strerror(err));
}

/* upstream_failed drops the current attempt and moves on to the next address. */
static void
upstream_failed(struct session *s)
{
	bufferevent_free(s->upstream_bev);
	s->upstream_bev = NULL;
	resolver_refresh(listener_upstream(s->listener, -1));
	connect_next(s);
}

static void
on_connect_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		evtimer_del(s->timer);
		s->error[0] = '\0';
		s->state = SESSION_RELAYING;
		net_set_nodelay(bufferevent_getfd(s->upstream_bev));
		if (relay_start(&s->relay, s->gk->base, s->client_bev, s->upstream_bev,
			s->conf->idle_timeout, on_relay_done, s) == -1)
			session_close(s, "out_of_memory");
		return;
	}
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		set_error(s, err ? err : ECONNRESET);
		log_kv(LOG_LEVEL_DEBUG, "connect failed", LOG_STR("listener", s->conf->name),
		    LOG_STR("error", s->error));
		upstream_failed(s);
	}
}

static void
on_connect_timer(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	s->timed_out = 1;
	snprintf(s->error, sizeof(s->error), "connect timed out");
	upstream_failed(s);
}

/*
 * connect_next starts a connection to the next untried address, giving it
 * an equal share of the time left. When none is left, the session closes
 * with connect_timeout if any attempt timed out, else connect_failed.
 */
static void
connect_next(struct session *s)
{
	struct timeval now, tv;
	int64_t left, share;

	event_base_gettimeofday_cached(s->gk->base, &now);
	left = ms_between(&now, &s->deadline);
	while (s->tried < s->addrs->n) {
		size_t i = (s->first + s->tried) % s->addrs->n;
		size_t remaining = s->addrs->n - s->tried;
		struct sockaddr *sa = (struct sockaddr *)&s->addrs->addr[i];

		if (left <= 0)
			break;
		s->tried++;
		memcpy(&s->upstream, sa, sizeof(s->upstream));
		s->upstream_set = 1;
		s->upstream_bev = bufferevent_socket_new(s->gk->base, -1,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (s->upstream_bev == NULL) {
			session_close(s, "out_of_memory");
			return;
		}
		bufferevent_setcb(s->upstream_bev, NULL, NULL, on_connect_event, s);
		if (bufferevent_socket_connect(s->upstream_bev, sa, (int)net_sockaddr_len(sa)) ==
		    -1) {
			set_error(s, errno);
			bufferevent_free(s->upstream_bev);
			s->upstream_bev = NULL;
			continue;
		}
		share = left / (int64_t)remaining;
		if (share < 1)
			share = 1;
		tv.tv_sec = (time_t)(share / 1000);
		tv.tv_usec = (suseconds_t)((share % 1000) * 1000);
		evtimer_add(s->timer, &tv);
		return;
	}
	if (left <= 0)
		s->timed_out = 1;
	session_close(s, s->timed_out ? "connect_timeout" : "connect_failed");
}

void
session_start(struct gk *gk, struct listener *l, evutil_socket_t fd, const struct sockaddr *peer,
    socklen_t peerlen)
{
	struct session *s;
	struct timeval budget;

	if (gk->draining) {
		evutil_closesocket(fd);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_error("session: out of memory, connection closed");
		evutil_closesocket(fd);
		return;
	}
	s->gk = gk;
	s->listener = l;
	s->conf = listener_conf(l);
	s->state = SESSION_CONNECTING;
	if (peerlen <= sizeof(s->client))
		memcpy(&s->client, peer, peerlen);
	event_base_gettimeofday_cached(gk->base, &s->started);
	TAILQ_INSERT_TAIL(&gk->sessions, s, entry);
	gk->n_sessions++;
	listener_session_begin(l);

	s->client_bev = bufferevent_socket_new(gk->base, fd,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	s->timer = evtimer_new(gk->base, on_connect_timer, s);
	if (s->client_bev == NULL || s->timer == NULL) {
		if (s->client_bev == NULL)
			evutil_closesocket(fd);
		session_close(s, "out_of_memory");
		return;
	}
	net_set_nodelay(fd);
	/* Bytes the client sends while we connect wait in the kernel. */
	bufferevent_disable(s->client_bev, EV_READ);

	s->addrs = resolver_addrs(listener_upstream(l, -1), &s->first);
	if (s->addrs == NULL) {
		listener_warn_unresolved(l, s->conf->upstream.host);
		session_close(s, "no_address");
		return;
	}
	budget.tv_sec = (time_t)(s->conf->connect_timeout / 1000);
	budget.tv_usec = (suseconds_t)((s->conf->connect_timeout % 1000) * 1000);
	timeradd(&s->started, &budget, &s->deadline);
	connect_next(s);
}
