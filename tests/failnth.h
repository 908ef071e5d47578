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
 * The same for every thread, counted together: the @n-th failable call
 * made by any thread (a server's threads driven over a socket by the
 * caller; the caller too unless it excludes itself) fails, once.  failnth_disarm_others() stops it and
 * says whether a call was made to fail.
 */
void failnth_arm_others(unsigned long n);
bool failnth_disarm_others(void);
/* While armed so: are this thread's own calls left out of the count? */
void failnth_exclude_self(bool exclude);
const char *failnth_victim_others(void);
unsigned long failnth_calls_others(void);
/*
 * Blocks live from the wrapped allocators (malloc, calloc, realloc,
 * strdup, posix_memalign minus free), all threads: compare around an
 * operation to see a leak.
 */
long failnth_live_allocs(void);

#endif
