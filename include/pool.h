/*
 * pool.h: fixed-size objects in slabs that go back to the kernel when empty.
 *
 * A burst of connections allocates thousands of sessions. From malloc's
 * heap they would be interleaved with the small allocations libevent keeps
 * for every descriptor number it has seen (never freed), so once the burst
 * ends the heap is mostly free but every page of it still holds something
 * live, and the process keeps its peak RSS for good. A pool keeps objects
 * of one size in their own mappings (slabs, aligned to their size, so an
 * object finds its slab by masking its address) and unmaps a slab as soon
 * as its last object is freed, keeping one empty slab to absorb churn.
 *
 * pool_heap_trim does the same for what is left in malloc's heap.
 *
 * A pool is not thread-safe: each worker has its own. Under AddressSanitizer
 * free objects are poisoned, and under valgrind objects are announced as
 * heap blocks, so both tools still see a use after free or a leak.
 */
#ifndef GK_POOL_H
#define GK_POOL_H

#include <stddef.h>

struct pool_slab;

struct pool {
	size_t obj_size;	   /* rounded up to POOL_ALIGN */
	size_t slab_size;	   /* bytes per slab mapping, a power of two */
	size_t per_slab;	   /* objects per slab */
	struct pool_slab *partial; /* slabs with both free and used objects */
	struct pool_slab *spare;   /* one empty slab kept mapped, or NULL */
	size_t slabs;		   /* slabs mapped, the spare included */
	size_t in_use;		   /* objects handed out and not yet freed */
};

/* Every object is aligned to this. */
#define POOL_ALIGN 16

/* pool_align rounds n up to POOL_ALIGN: where the next part of an object may start. */
static inline size_t
pool_align(size_t n)
{
	return (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
}

/* pool_init prepares an empty pool of obj_size objects; nothing is mapped yet. */
void pool_init(struct pool *p, size_t obj_size);

/* pool_alloc returns a zeroed object, or NULL when no memory can be mapped. */
void *pool_alloc(struct pool *p);

/* pool_free returns obj (from pool_alloc on p; NULL is ignored) to its slab. */
void pool_free(struct pool *p, void *obj);

/*
 * pool_destroy unmaps every slab. Objects still in use are lost: callers
 * free them first.
 */
void pool_destroy(struct pool *p);

/*
 * pool_heap_trim gives malloc's free pages back to the kernel when its heaps
 * hold at least threshold free bytes. Returns the free bytes it saw before
 * trimming (0 where the C library cannot tell).
 */
size_t pool_heap_trim(size_t threshold);

#endif
