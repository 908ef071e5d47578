/* SPDX-License-Identifier: MIT */
/*
 * Internal helpers shared by every subsystem: lists, refcounts, logging,
 * checked copies from caller memory, fd helpers.  Not installed.
 */
#ifndef P2PBUF_PRIVATE_H
#define P2PBUF_PRIVATE_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p2pbuf/common.h>

#define P2P_PAGE_SIZE 4096ull
#define P2P_PAGE_MASK (P2P_PAGE_SIZE - 1)
#define P2P_HUGE_SIZE (2ull << 20)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define IS_ALIGNED(x, a) (((x) & ((__typeof__(x))(a) - 1)) == 0)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Intrusive doubly linked list, as the kernel's. */
struct list_head {
	struct list_head *next, *prev;
};

static inline void list_init(struct list_head *h)
{
	h->next = h->prev = h;
}

static inline bool list_empty(const struct list_head *h)
{
	return h->next == h;
}

static inline void list_add_tail(struct list_head *n, struct list_head *h)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void list_del_init(struct list_head *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

#define list_entry(p, type, member) container_of(p, type, member)
#define list_for_each_entry(pos, head, member)                                                   \
	for (pos = list_entry((head)->next, __typeof__(*pos), member); &pos->member != (head);  \
	     pos = list_entry(pos->member.next, __typeof__(*pos), member))
#define list_for_each_entry_safe(pos, n, head, member)                                           \
	for (pos = list_entry((head)->next, __typeof__(*pos), member),                           \
	    n = list_entry(pos->member.next, __typeof__(*pos), member);                          \
	     &pos->member != (head); pos = n, n = list_entry(n->member.next, __typeof__(*n), member))

/* Reference counts. */
struct kref {
	atomic_uint count;
};

static inline void kref_init(struct kref *k)
{
	atomic_init(&k->count, 1);
}

static inline void kref_get(struct kref *k)
{
	atomic_fetch_add_explicit(&k->count, 1, memory_order_relaxed);
}

/* Returns true when the count dropped to zero. */
static inline bool kref_put(struct kref *k)
{
	return atomic_fetch_sub_explicit(&k->count, 1, memory_order_acq_rel) == 1;
}

/*
 * Take a reference unless the object is already on its way out.  Failing
 * is an acquire: whoever finds the count at zero (and so skips the object,
 * as a device close skips a dma-buf whose release is pending) sees all that
 * its holders did before their kref_put(), the last one's included.  A
 * dma-buf's importers drain their DMA before they drop their references,
 * so that DMA happens-before the skipping revoke returns.
 */
static inline bool kref_get_unless_zero(struct kref *k)
{
	unsigned int c = atomic_load_explicit(&k->count, memory_order_acquire);

	while (c) {
		if (atomic_compare_exchange_weak(&k->count, &c, c + 1))
			return true;
	}
	return false;
}

/* Logging through the user's callback (src/util/log.c). */
void p2p_log(enum p2p_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define pr_err(...) p2p_log(P2P_LOG_ERR, __VA_ARGS__)
#define pr_warn(...) p2p_log(P2P_LOG_WARN, __VA_ARGS__)
#define pr_info(...) p2p_log(P2P_LOG_INFO, __VA_ARGS__)
#define pr_debug(...) p2p_log(P2P_LOG_DEBUG, __VA_ARGS__)

/*
 * copy_from_user() - copy from caller-supplied memory that may be bad
 *
 * Uses process_vm_readv() on this process so that an unmapped pointer gives
 * -EFAULT instead of a crash, as the kernel's copy_from_user() does.
 */
int copy_from_user(void *dst, const void *src, size_t len);
int copy_to_user(void *dst, const void *src, size_t len);

/* A name-only memfd standing for an object (dma-buf, device file). */
int token_fd_create(const char *name);

/*
 * ftruncate(@fd, @size), but -EFBIG instead of SIGXFSZ when @size is past
 * RLIMIT_FSIZE.  0 or -errno.
 */
int fd_set_size(int fd, uint64_t size);

/* Monotonic clock in nanoseconds. */
uint64_t p2p_now_ns(void);

/*
 * Device copies that survive vanished memory (src/util/fault.c).
 * dma_guard_init() installs the SIGBUS recovery handler, once; dma_copy()
 * is memmove() that, with @guard, returns -EFAULT instead of dying when
 * [dst, +n) or [src, +n) raises SIGBUS (a truncated memfd).
 */
int dma_guard_init(void);
void dma_guard_thread(void); /* a device worker: SIGBUS unblocked */
int dma_copy(void *dst, const void *src, size_t n, bool guard);

/*
 * src/iommu/ioas.c: does memory behind @seg belong to the program, which
 * can make it vanish (process memory, a memfd)?  Then copy with a guard.
 */
struct p2p_dma_seg;
bool ioas_seg_fragile(const struct p2p_dma_seg *seg);

/* Hugepage helpers (src/core/mem.c). */
void *p2p_reserve_va(void *hint, size_t len, size_t align, bool fixed);

#endif
