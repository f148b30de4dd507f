/*
 * policy.h: every decision gatekeeper makes about a connection, pure.
 *
 * A listener's routes, allowlist, address ranges, PROXY and forwarding
 * trust and proxy credentials are compiled once per configuration (and per
 * reload) into an immutable struct policy. Sessions then ask it questions:
 * where a name goes (policy_route), whether an address may be dialed
 * (policy_guard), whether a peer is trusted, whether credentials are
 * good. No query allocates, logs or touches the event loop, and none
 * walks a list: exact names are found in a hash table, wildcards by
 * looking up the name's suffixes label by label from the longest, and
 * address blocks by one hash lookup per prefix length in use. So a query
 * costs the same with 10 entries as with 100,000.
 *
 * Precedence is the one README documents: an IP-literal allow block
 * (longest prefix first) above an exact name, an exact name above a
 * longer wildcard suffix above a shorter one, a wildcard above "*"; among
 * equals the one listed first, routes before allow entries. On an egress
 * listener, and for a route whose upstream is "$host", an IP literal
 * matches only a rule naming that very literal (or an allow block
 * holding it): wildcards and "*" never let an address through.
 */
#ifndef GK_POLICY_H
#define GK_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "reason.h"
#include "sniff_http.h"

struct policy;

/*
 * policy_new compiles the decisions of listener l, which must stay alive
 * (unchanged) as long as the policy: the policy points into it. Returns
 * the policy, or NULL when out of memory (a message in err).
 */
struct policy *policy_new(const struct config_listener *l, char *err, size_t errlen);

/* policy_free releases p (NULL is fine). */
void policy_free(struct policy *p);

/*
 * Sources. A listener's 'sources' (checked on the TCP peer), its
 * 'client_sources' (on the client: the address a PROXY header carried,
 * else the peer) and the 'sources' of routes and allow entries (on the
 * client) are compiled into source sets: address blocks in block tables,
 * names in a hash table. A name stands for the addresses it resolves to
 * now, which the caller learns from its resolver and hands over as a
 * struct policy_names, rebuilt when an answer changes. So a query is one
 * block lookup per prefix length in use plus one per name the address
 * has, whatever the number of sources. An IPv4 address and its
 * IPv4-mapped IPv6 form (::ffff:a.b.c.d) are the same source everywhere,
 * in blocks of either form.
 */
struct policy_names;

/* Who is asking. */
struct policy_source {
	const struct sockaddr *addr;	  /* NULL: unknown, in no set */
	const struct policy_names *names; /* what source names resolve to now; NULL: none */
};

/*
 * policy_source_names gives the source names p uses (each once, lower
 * case), for the caller to keep resolved; *names points into p.
 */
size_t policy_source_names(const struct policy *p, const char *const **names);

/* One address a source name has now; both point at the caller's storage. */
struct policy_name_addr {
	const struct sockaddr *addr;
	const char *name;
};

/*
 * policy_names_new indexes n (address, name) pairs by address. The names
 * must outlive the index (the addresses are copied). Returns NULL when
 * out of memory. policy_names_free frees it (NULL is fine).
 */
struct policy_names *policy_names_new(const struct policy_name_addr *pairs, size_t n);
void policy_names_free(struct policy_names *pn);

/* policy_peer_admitted: 1 when the listener has no 'sources' or peer is in them. */
int policy_peer_admitted(const struct policy *p, const struct policy_source *peer);

/* policy_client_admitted: the same for 'client_sources' and the client. */
int policy_client_admitted(const struct policy *p, const struct policy_source *client);

/* What policy_route decided for one request. */
struct policy_verdict {
	int matched; /* a route pattern or an allow entry matched the name */
	int route;   /* the route that matched, or -1 */
	int pattern; /* which of its match patterns, or -1 */
	int allow;   /* the allow entry that matched, or -1 */
	/* where to go: a route's or the listener's upstream, or allow_target; NULL when refused */
	const struct config_hostport *target;
	struct config_hostport allow_target; /* an allow entry: "$host" at the port it admits */
	int literal;	       /* the name is an IP literal (policy_guard's 'literal') */
	int guarded;	       /* the addresses dialed must pass policy_guard */
	enum reason refusal;   /* when refused: no_name, no_route, not_allowed or source_denied */
	uint16_t port_refused; /* an allow entry matched the name, but not this port (connect) */
	int source_refused;    /* refused: rules matched the name, none for this client */
	/*
	 * action: report: the refusal let through (not_allowed or
	 * source_denied), else REASON_NONE. The target is then the rule's as
	 * if it applied to this client, or "$host" at the port asked for,
	 * always guarded.
	 */
	enum reason would_deny;
};

/*
 * policy_route decides where name goes: name is normalized (route.h) or
 * NULL when the client sent none; want_port is the port a forward-proxy
 * client asked for (0 for none); listen_port the port the client
 * connected to (an allow entry's upstream port when neither want_port nor
 * the listener's 'port' gives one); client who asks (a rule with 'sources'
 * applies only to the clients in them; NULL: an unknown client). Fills v, which must stay where it
 * is while v->target is used (it may point at v->allow_target). Returns 0 when allowed (or
 * let through by action: report, v->would_deny naming the refusal), or -1 with v->refusal set.
 */
int policy_route(const struct policy *p, const char *name, uint16_t want_port, uint16_t listen_port,
		 const struct policy_source *client, struct policy_verdict *v);

/*
 * policy_name_ancestor: 1 when name (normalized; "" for the root) is a
 * parent domain of an allow entry's name or pattern, which exists even if
 * it is not itself allowed (the DNS door answers it NODATA, RFC 8020).
 */
int policy_name_ancestor(const struct policy *p, const char *name);

/*
 * policy_rule writes the text of the rule that decided v (the route
 * pattern, or the allow entry as written) to buf; "" when none did.
 */
void policy_rule(const struct policy *p, const struct policy_verdict *v, char *buf, size_t len);

/*
 * policy_guard says why an egress session must not dial sa, or NULL when
 * it may. deny_ranges always refuse ("in deny_ranges"; an IPv4 block also
 * catches the address written inside IPv6 in every translation form);
 * allow_ranges, and (literal: the client asked for an IP literal) an allow
 * block holding sa, re-allow what the default address classes refuse.
 * Otherwise the class route_addr_class gives refuses.
 */
const char *policy_guard(const struct policy *p, const struct sockaddr *sa, int literal);

/* policy_proxy_trusted: may peer send a PROXY header (no proxy_protocol.trusted = anyone)? */
int policy_proxy_trusted(const struct policy *p, const struct sockaddr *peer);

/* policy_forwarding_trusted: are peer's forwarding headers kept (http.trusted)? */
int policy_forwarding_trusted(const struct policy *p, const struct sockaddr *peer);

/*
 * policy_proxy_credentials checks the value of a Proxy-Authorization
 * header (value[0..len), len 0 when there was none) against proxy_auth,
 * comparing in time independent of where a guess goes wrong. Returns 0
 * when admitted (always, with no proxy_auth), or -1 with *why set to
 * REASON_AUTH_REQUIRED or REASON_AUTH_FAILED.
 */
int policy_proxy_credentials(const struct policy *p, const char *value, size_t len,
			     enum reason *why);

/*
 * policy_proxy_request checks a request on a forward proxy (mode connect)
 * before its destination: the form (CONNECT host:port, or an absolute URL
 * as HTTP_PROXY clients send: else REASON_BAD_METHOD or
 * REASON_NOT_PROXY_REQUEST) and the credentials (policy_proxy_credentials),
 * the Proxy-Authorization value being at req->proxy_auth_off in head.
 * Returns 0, or -1 with *why set.
 */
int policy_proxy_request(const struct policy *p, const struct sniff_http_request *req,
			 const uint8_t *head, enum reason *why);

#endif
