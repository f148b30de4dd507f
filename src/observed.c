/*
 * observed.c: the table of what report mode let through.
 *
 * A hash table of entries chained per bucket, plus a list in the order
 * they were last seen, most recent at the head: a record moves its entry
 * to the head, and a new entry beyond the bound takes the place of the
 * tail. One lock guards both; a record is a hash, a short chain walk and a
 * few pointer moves, so workers that record at the same time wait very
 * little. The table is a process's: it outlives reloads and workers.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "net.h"
#include "observed.h"

struct node {
	struct node *chain;	    /* the next in the bucket */
	struct node *newer, *older; /* the recency list */
	uint32_t hash;
	struct observed_entry e;
};

static struct {
	pthread_mutex_t lock;
	struct node **buckets;
	size_t n_buckets, n, max;
	struct node *newest, *oldest;
	uint64_t evicted;
} T = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 4096, NULL, NULL, 0};

/* addr_key: the address bytes of ss (4 or 16), for hashing and comparing. */
static const void *
addr_key(const struct sockaddr_storage *ss, size_t *len)
{
	const void *a = net_addr_bytes((const struct sockaddr *)ss, len);

	return a != NULL ? a : (const void *)ss;
}

static uint32_t
entry_hash(const struct observed_entry *e)
{
	size_t alen;
	const void *a = addr_key(&e->source, &alen);
	uint32_t h = hash_bytes(HASH_SEED, e->listener, strlen(e->listener) + 1);

	h = hash_bytes(h, e->name, strlen(e->name) + 1);
	h = hash_bytes(h, &e->port, sizeof(e->port));
	h = hash_bytes(h, &e->source.ss_family, sizeof(e->source.ss_family));
	return hash_bytes(h, a, alen);
}

static int
same_key(const struct observed_entry *a, const struct observed_entry *b)
{
	size_t la, lb;
	const void *x = addr_key(&a->source, &la), *y = addr_key(&b->source, &lb);

	return a->port == b->port && a->source.ss_family == b->source.ss_family && la == lb &&
	       memcmp(x, y, la) == 0 && strcmp(a->name, b->name) == 0 &&
	       strcmp(a->listener, b->listener) == 0;
}

static void
list_unlink(struct node *n)
{
	if (n->newer)
		n->newer->older = n->older;
	else
		T.newest = n->older;
	if (n->older)
		n->older->newer = n->newer;
	else
		T.oldest = n->newer;
	n->newer = n->older = NULL;
}

static void
list_push(struct node *n)
{
	n->older = T.newest;
	n->newer = NULL;
	if (T.newest)
		T.newest->newer = n;
	T.newest = n;
	if (T.oldest == NULL)
		T.oldest = n;
}

/* drop_oldest removes the least recently seen entry and counts it evicted (lock held). */
static void
drop_oldest(void)
{
	struct node *n = T.oldest, **pp;

	if (n == NULL)
		return;
	list_unlink(n);
	for (pp = &T.buckets[n->hash & (T.n_buckets - 1)]; *pp != NULL; pp = &(*pp)->chain)
		if (*pp == n) {
			*pp = n->chain;
			break;
		}
	free(n);
	T.n--;
	T.evicted++;
}

/* grow doubles the buckets once the table holds twice as many entries (lock held). */
static void
grow(void)
{
	size_t n = T.n_buckets ? T.n_buckets * 2 : 64;
	struct node **b;

	if (T.buckets != NULL && T.n < 2 * T.n_buckets)
		return;
	if ((b = calloc(n, sizeof(*b))) == NULL)
		return; /* longer chains: slower, still right */
	for (size_t i = 0; i < T.n_buckets; i++)
		for (struct node *e = T.buckets[i], *next; e != NULL; e = next) {
			next = e->chain;
			e->chain = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	free(T.buckets);
	T.buckets = b;
	T.n_buckets = n;
}

void
observed_set_max(size_t max)
{
	pthread_mutex_lock(&T.lock);
	T.max = max;
	while (T.n > T.max)
		drop_oldest();
	pthread_mutex_unlock(&T.lock);
}

void
observed_record(const char *listener, const char *mode, const char *name, uint16_t port,
		const struct sockaddr *source, enum reason why)
{
	struct observed_entry key;
	struct sockaddr_in v4;
	const struct sockaddr *src = net_unmap_v4(source, &v4);
	struct node *n;
	time_t now = time(NULL);
	uint32_t h;

	memset(&key, 0, sizeof(key));
	snprintf(key.listener, sizeof(key.listener), "%s", listener ? listener : "");
	snprintf(key.mode, sizeof(key.mode), "%s", mode ? mode : "");
	snprintf(key.name, sizeof(key.name), "%s", name ? name : "");
	key.port = port;
	if (src == NULL)
		src = source;
	memcpy(&key.source, src, net_sockaddr_len(src));
	if (key.source.ss_family == AF_INET)
		((struct sockaddr_in *)&key.source)->sin_port = 0;
	else if (key.source.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&key.source)->sin6_port = 0;
	key.reason = why;
	pthread_mutex_lock(&T.lock);
	if (T.max == 0)
		goto out;
	grow();
	if (T.buckets == NULL)
		goto out;
	h = entry_hash(&key);
	for (n = T.buckets[h & (T.n_buckets - 1)]; n != NULL; n = n->chain)
		if (n->hash == h && same_key(&n->e, &key))
			break;
	if (n == NULL) {
		while (T.n >= T.max)
			drop_oldest();
		if ((n = calloc(1, sizeof(*n))) == NULL)
			goto out;
		n->hash = h;
		n->e = key;
		n->e.first_seen = now;
		n->chain = T.buckets[n->hash & (T.n_buckets - 1)];
		T.buckets[n->hash & (T.n_buckets - 1)] = n;
		T.n++;
	} else {
		list_unlink(n);
	}
	list_push(n);
	n->e.count++;
	n->e.last_seen = now;
	n->e.reason = why;
out:
	pthread_mutex_unlock(&T.lock);
}

static int
by_count(const void *a, const void *b)
{
	const struct observed_entry *x = a, *y = b;
	int c;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	if ((c = strcmp(x->listener, y->listener)) != 0 || (c = strcmp(x->name, y->name)) != 0)
		return c;
	return (int)x->port - (int)y->port;
}

struct observed_entry *
observed_snapshot(size_t *n)
{
	struct observed_entry *out = NULL;
	size_t i = 0;

	pthread_mutex_lock(&T.lock);
	if (T.n > 0 && (out = calloc(T.n, sizeof(*out))) != NULL)
		for (struct node *e = T.newest; e != NULL; e = e->older)
			out[i++] = e->e;
	pthread_mutex_unlock(&T.lock);
	*n = i;
	if (out != NULL)
		qsort(out, i, sizeof(*out), by_count);
	return out;
}

void
observed_stats(size_t *entries, uint64_t *evicted)
{
	pthread_mutex_lock(&T.lock);
	*entries = T.n;
	*evicted = T.evicted;
	pthread_mutex_unlock(&T.lock);
}

void
observed_reset(void)
{
	pthread_mutex_lock(&T.lock);
	while (T.oldest != NULL) {
		drop_oldest();
		T.evicted--;
	}
	free(T.buckets);
	T.buckets = NULL;
	T.n_buckets = 0;
	T.evicted = 0;
	pthread_mutex_unlock(&T.lock);
}
