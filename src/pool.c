/*
 * pool.c: fixed-size objects in slabs that go back to the kernel when empty.
 *
 * A slab is one anonymous mapping of slab_size bytes, aligned to slab_size:
 * a header, one free-list link per object, then the objects. Links live in
 * the header rather than in the free objects, so a free object is never
 * touched (the sanitizers can keep it poisoned). Objects never handed out
 * are taken in order (fresh), so a new slab's pages are touched only as it
 * fills. Slabs with room are on a doubly linked list; a full slab is on no
 * list until one of its objects comes back; an empty slab is unmapped,
 * except one spare.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "pool.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif

#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#include <stdio.h>
#include <stdlib.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define POOL_VALGRIND 1
#endif
#endif

/* The smallest slab; a slab holds at least MIN_PER_SLAB objects. */
#define MIN_SLAB     (64 * 1024)
#define MIN_PER_SLAB 16
#define NO_OBJECT    UINT32_MAX

struct pool_slab {
	struct pool_slab *prev, *next; /* on the pool's partial list */
	char *objs;		       /* object i is objs + i * obj_size */
	size_t used;		       /* objects handed out */
	size_t fresh;		       /* objects [fresh, per_slab) were never handed out */
	uint32_t free_head;	       /* the last object freed, or NO_OBJECT */
	uint32_t next_free[];	       /* per object: the one freed before it */
};

static size_t
round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

static size_t
objs_offset(size_t per_slab)
{
	return pool_align(sizeof(struct pool_slab) + per_slab * sizeof(uint32_t));
}

static size_t
fits(size_t slab_size, size_t obj_size)
{
	size_t n = (slab_size - sizeof(struct pool_slab)) / (obj_size + sizeof(uint32_t));

	while (n > 0 && objs_offset(n) + n * obj_size > slab_size)
		n--;
	return n;
}

void
pool_init(struct pool *p, size_t obj_size)
{
	memset(p, 0, sizeof(*p));
	p->obj_size = pool_align(obj_size ? obj_size : 1);
	p->slab_size = MIN_SLAB;
	while (fits(p->slab_size, p->obj_size) < MIN_PER_SLAB)
		p->slab_size *= 2;
	p->per_slab = fits(p->slab_size, p->obj_size);
}

static void
list_push(struct pool_slab **head, struct pool_slab *s)
{
	s->prev = NULL;
	s->next = *head;
	if (*head != NULL)
		(*head)->prev = s;
	*head = s;
}

static void
list_remove(struct pool_slab **head, struct pool_slab *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

static void
slab_reset(struct pool *p, struct pool_slab *s)
{
	s->prev = s->next = NULL;
	s->objs = (char *)s + objs_offset(p->per_slab);
	s->used = 0;
	s->fresh = 0;
	s->free_head = NO_OBJECT;
}

/* slab_map maps a slab aligned to its size: twice the size, then the ends cut off. */
static struct pool_slab *
slab_map(struct pool *p)
{
	size_t size = p->slab_size, lead, tail;
	char *raw, *start;
	struct pool_slab *s;

	raw = mmap(NULL, size * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	start = (char *)round_up((uintptr_t)raw, size);
	lead = (size_t)(start - raw);
	tail = size - lead;
	if (lead > 0)
		munmap(raw, lead);
	if (tail > 0)
		munmap(start + size, tail);
	s = (struct pool_slab *)start;
	slab_reset(p, s);
	POISON(s->objs, p->per_slab * p->obj_size);
	p->slabs++;
	return s;
}

static void
slab_unmap(struct pool *p, struct pool_slab *s)
{
	/* The shadow must not outlive the mapping: the range may be mapped again. */
	UNPOISON(s->objs, p->per_slab * p->obj_size);
	munmap(s, p->slab_size);
	p->slabs--;
}

void *
pool_alloc(struct pool *p)
{
	struct pool_slab *s = p->partial;
	uint32_t i;
	char *obj;

	if (s == NULL) {
		if (p->spare != NULL) {
			s = p->spare;
			p->spare = NULL;
		} else if ((s = slab_map(p)) == NULL) {
			return NULL;
		}
		list_push(&p->partial, s);
	}
	if (s->free_head != NO_OBJECT) {
		i = s->free_head;
		s->free_head = s->next_free[i];
	} else {
		i = (uint32_t)s->fresh++;
	}
	if (++s->used == p->per_slab)
		list_remove(&p->partial, s);
	p->in_use++;
	obj = s->objs + (size_t)i * p->obj_size;
	UNPOISON(obj, p->obj_size);
#ifdef POOL_VALGRIND
	VALGRIND_MALLOCLIKE_BLOCK(obj, p->obj_size, 0, 0);
#endif
	memset(obj, 0, p->obj_size);
	return obj;
}

void
pool_free(struct pool *p, void *obj)
{
	struct pool_slab *s;
	uint32_t i;

	if (obj == NULL)
		return;
	s = (struct pool_slab *)((uintptr_t)obj & ~(uintptr_t)(p->slab_size - 1));
	i = (uint32_t)(((char *)obj - s->objs) / p->obj_size);
#ifdef POOL_ASAN
	if (__asan_address_is_poisoned(obj)) {
		fprintf(stderr, "pool: object %p freed twice\n", obj);
		abort();
	}
#endif
#ifdef POOL_VALGRIND
	VALGRIND_FREELIKE_BLOCK(obj, 0);
#endif
	POISON(obj, p->obj_size);
	s->next_free[i] = s->free_head;
	s->free_head = i;
	if (s->used-- == p->per_slab)
		list_push(&p->partial, s);
	p->in_use--;
	if (s->used > 0)
		return;
	list_remove(&p->partial, s);
	if (p->spare == NULL) {
		slab_reset(p, s);
		p->spare = s;
	} else {
		slab_unmap(p, s);
	}
}

void
pool_destroy(struct pool *p)
{
	struct pool_slab *s;

	while ((s = p->partial) != NULL) {
		list_remove(&p->partial, s);
		slab_unmap(p, s);
	}
	if (p->spare != NULL)
		slab_unmap(p, p->spare);
	/* Full slabs are on no list: their objects were not freed, as the contract asks. */
	p->spare = NULL;
	p->in_use = 0;
}

size_t
pool_heap_trim(size_t threshold)
{
#ifdef __GLIBC__
	struct mallinfo2 mi = mallinfo2();

	if (mi.fordblks >= threshold)
		malloc_trim(0);
	return mi.fordblks;
#else
	(void)threshold;
	return 0;
#endif
}
