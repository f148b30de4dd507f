/*
 * hash.h: FNV-1a, the one hash of gatekeeper's tables (the policy's, the
 * resolver's names, the per-source counts, the observed table, the DNS
 * door's buckets). Fast on the short keys they hold: names and addresses.
 */
#ifndef GK_HASH_H
#define GK_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_SEED 2166136261u

/* hash_bytes folds data[0..len) into h (start from HASH_SEED). */
static inline uint32_t
hash_bytes(uint32_t h, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

#endif
