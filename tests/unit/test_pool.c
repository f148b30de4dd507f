/*
 * test_pool.c: unit tests for pool.c: slab geometry, zeroed and aligned
 * objects that do not overlap, reuse of freed objects before any new
 * mapping, slabs really unmapped (the kernel says so) when they empty
 * with one spare kept, and pool_heap_trim giving a freed heap back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "pool.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* mapped: the kernel still has a mapping at addr (msync fails with ENOMEM otherwise). */
static int
mapped(void *addr)
{
	void *page = (void *)((uintptr_t)addr & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1));

	if (msync(page, 1, MS_ASYNC) == 0)
		return 1;
	assert_int_equal(errno, ENOMEM);
	return 0;
}

static void
test_geometry(void **state)
{
	static const size_t sizes[] = {1, 16, 17, 100, 2600, 4096, 20000, 100000};
	(void)state;

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct pool p;
		pool_init(&p, sizes[k]);
		assert_true(p.obj_size >= sizes[k]);
		assert_int_equal(p.obj_size % POOL_ALIGN, 0);
		assert_true(p.obj_size < sizes[k] + POOL_ALIGN);
		assert_true(p.slab_size >= 64 * 1024);
		assert_int_equal(p.slab_size & (p.slab_size - 1), 0);
		assert_true(p.per_slab >= 16);
		/* The objects and their links fit, and little is left over. */
		assert_true(p.per_slab * (p.obj_size + 4) <= p.slab_size);
		assert_true((p.per_slab + 1) * (p.obj_size + 4) + 64 >
			    p.slab_size - 2 * POOL_ALIGN);
		assert_int_equal(p.slabs, 0);
		pool_destroy(&p);
	}
}

static void
test_objects_zeroed_aligned_disjoint(void **state)
{
	struct pool p;
	unsigned char *objs[200];
	(void)state;

	pool_init(&p, 300);
	for (size_t i = 0; i < 200; i++) {
		objs[i] = pool_alloc(&p);
		assert_non_null(objs[i]);
		assert_int_equal((uintptr_t)objs[i] % POOL_ALIGN, 0);
		for (size_t b = 0; b < 300; b++)
			assert_int_equal(objs[i][b], 0);
		memset(objs[i], (int)(i & 0xff) + 1, p.obj_size);
	}
	assert_int_equal(p.in_use, 200);
	/* Each object still holds its own pattern: none overlaps another. */
	for (size_t i = 0; i < 200; i++)
		for (size_t b = 0; b < p.obj_size; b++)
			assert_int_equal(objs[i][b], (i & 0xff) + 1);
	/* A reused object is zeroed again. */
	pool_free(&p, objs[7]);
	objs[7] = pool_alloc(&p);
	for (size_t b = 0; b < p.obj_size; b++)
		assert_int_equal(objs[7][b], 0);
	for (size_t i = 0; i < 200; i++)
		pool_free(&p, objs[i]);
	pool_free(&p, NULL);
	assert_int_equal(p.in_use, 0);
	pool_destroy(&p);
	assert_int_equal(p.slabs, 0);
}

static void
test_freed_objects_reused_before_mapping(void **state)
{
	struct pool p;
	void **objs;
	size_t n, slabs;
	(void)state;

	pool_init(&p, 2600);
	n = 3 * p.per_slab;
	objs = calloc(n, sizeof(*objs));
	assert_non_null(objs);
	for (size_t i = 0; i < n; i++)
		assert_non_null(objs[i] = pool_alloc(&p));
	slabs = p.slabs;
	assert_int_equal(slabs, 3);
	/* Every other object back: every slab has room, none is empty. */
	for (size_t i = 0; i < n; i += 2)
		pool_free(&p, objs[i]);
	assert_int_equal(p.slabs, 3);
	assert_int_equal(p.in_use, n - (n + 1) / 2);
	for (size_t i = 0; i < n; i += 2)
		assert_non_null(objs[i] = pool_alloc(&p));
	assert_int_equal(p.slabs, 3); /* no new mapping while holes were left */
	for (size_t i = 0; i < n; i++)
		pool_free(&p, objs[i]);
	free(objs);
	pool_destroy(&p);
}

static void
test_empty_slabs_unmapped_one_spare(void **state)
{
	struct pool p;
	void **objs;
	size_t n;
	int still_mapped = 0;
	(void)state;

	pool_init(&p, 2600);
	n = 10 * p.per_slab;
	objs = calloc(n, sizeof(*objs));
	assert_non_null(objs);
	for (size_t i = 0; i < n; i++)
		assert_non_null(objs[i] = pool_alloc(&p));
	assert_int_equal(p.slabs, 10);
	for (size_t i = 0; i < n; i++)
		pool_free(&p, objs[i]);
	assert_int_equal(p.in_use, 0);
	assert_int_equal(p.slabs, 1); /* the spare */
	/* One slab in ten is still mapped: the spare. The others are gone. */
	for (size_t i = 0; i < n; i += p.per_slab)
		still_mapped += mapped(objs[i]);
	assert_int_equal(still_mapped, 1);
	/* The spare serves the next allocation without a new mapping. */
	objs[0] = pool_alloc(&p);
	assert_non_null(objs[0]);
	assert_int_equal(p.slabs, 1);
	assert_true(mapped(objs[0]));
	pool_free(&p, objs[0]);
	pool_destroy(&p);
	assert_int_equal(p.slabs, 0);
	assert_false(mapped(objs[0]));
	free(objs);
}

static void
test_churn_keeps_mappings_bounded(void **state)
{
	struct pool p;
	void *live[64] = {0};
	unsigned seed = 12345;
	(void)state;

	/*
	 * Random alloc/free with at most 64 live: no slab is ever mapped without
	 * a live object in it, except the one spare.
	 */
	pool_init(&p, 5000);
	for (int round = 0; round < 100000; round++) {
		size_t i = (seed = seed * 1103515245u + 12345u) >> 16 & 63;
		if (live[i] != NULL) {
			pool_free(&p, live[i]);
			live[i] = NULL;
		} else {
			assert_non_null(live[i] = pool_alloc(&p));
			memset(live[i], 0xa5, 5000);
		}
		assert_true(p.slabs <= p.in_use + 1);
		assert_true(p.in_use <= 64);
	}
	for (size_t i = 0; i < 64; i++)
		pool_free(&p, live[i]);
	assert_int_equal(p.in_use, 0);
	assert_int_equal(p.slabs, 1);
	pool_destroy(&p);
}

static long
rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void
test_heap_trim_returns_freed_middle(void **state)
{
	enum { BLOCKS = 4096, BLOCK = 4000 };
	void **blocks = calloc(BLOCKS, sizeof(*blocks));
	long before, after;
	(void)state;

	assert_non_null(blocks);
	/* 16 MB of small blocks, touched, then all freed but the last, which pins the top. */
	for (size_t i = 0; i < BLOCKS; i++) {
		assert_non_null(blocks[i] = malloc(BLOCK));
		memset(blocks[i], 1, BLOCK);
	}
	for (size_t i = 0; i + 1 < BLOCKS; i++)
		free(blocks[i]);
	before = rss_kib();
#if defined(__GLIBC__) && !defined(UNDER_ASAN)
	/* Below the threshold nothing happens; above it the free middle goes. */
	assert_true(pool_heap_trim(SIZE_MAX) >= (size_t)(BLOCKS - 1) * BLOCK);
	assert_true(rss_kib() > before - 1024);
	assert_true(pool_heap_trim(1024 * 1024) >= (size_t)(BLOCKS - 1) * BLOCK);
	after = rss_kib();
	assert_true(after < before - 8 * 1024);
#else
	/* Another allocator owns the heap: the call must still be safe. */
	(void)pool_heap_trim(1024 * 1024);
	after = rss_kib();
	assert_true(before > 0 && after > 0);
#endif
	free(blocks[BLOCKS - 1]);
	free(blocks);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_geometry),
	    cmocka_unit_test(test_objects_zeroed_aligned_disjoint),
	    cmocka_unit_test(test_freed_objects_reused_before_mapping),
	    cmocka_unit_test(test_empty_slabs_unmapped_one_spare),
	    cmocka_unit_test(test_churn_keeps_mappings_bounded),
	    cmocka_unit_test(test_heap_trim_returns_freed_middle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
