/*
 * fuzz.h: what every libFuzzer target here shares: the entry point's
 * prototype, and CHECK, which turns a broken contract into a crash that
 * libFuzzer reports (and saves the input for).
 */
#ifndef GK_FUZZ_H
#define GK_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

#endif
