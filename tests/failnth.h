/* SPDX-License-Identifier: MIT */
/*
 * fail-nth fault injection (as iommufd's selftests do with
 * /proc/self/task/<tid>/fail-nth): the test program is linked with
 * -Wl,--wrap=SYM for every libc and liburing function the library calls
 * that can fail (FAILNTH_WRAP_ARGS in tests/meson.build), and the n-th
 * such call made by the arming thread fails with a plausible errno.
 *
 * --wrap rewrites the references of the objects being linked: the static
 * libp2pbuf.a, the test and the harness.  Calls made inside libc or
 * liburing themselves are not seen (liburing's inline syscalls included:
 * the liburing functions the library calls are wrapped instead).  Under
 * ASan __real_malloc resolves to ASan's interceptor, so allocations stay
 * checked.
 */
#ifndef P2PBUF_FAILNTH_H
#define P2PBUF_FAILNTH_H

#include <stdbool.h>

/* The @n-th (from 1) failable wrapped call of this thread fails, once. */
void failnth_arm(unsigned long n);
/*
 * Stop injecting; returns true if the n-th call was reached (a call was
 * made to fail), false if the operation made fewer failable calls.
 */
bool failnth_disarm(void);
/* Name of the call that was made to fail by the last injection, or "". */
const char *failnth_victim(void);
/* Failable calls counted since failnth_arm(). */
unsigned long failnth_calls(void);
/*
 * Blocks live from the wrapped allocators (malloc, calloc, realloc,
 * strdup, posix_memalign minus free), all threads: compare around an
 * operation to see a leak.
 */
long failnth_live_allocs(void);

#endif
