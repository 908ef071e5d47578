/* SPDX-License-Identifier: MIT */
/*
 * io_uring reads and writes straight into dma-bufs (kernel-semantics 5).
 *
 * A struct p2p_uring wraps a real io_uring (liburing).  Its buffer slots
 * are registered with the descriptors of Pavel Begunkov's series
 * (struct io_uring_regbuf_desc): EMPTY, UADDR (a plain user buffer) or
 * DMABUF (a dma-buf together with the target file its I/O goes to).
 * IORING_OP_READ_FIXED / WRITE_FIXED on a DMABUF slot take an offset into
 * the dma-buf as their address; the I/O is split at the buffer's range
 * boundaries, so multi-range dma-bufs work.
 *
 * Each DMABUF slot is a dynamic, peer-to-peer, revocable importer: its
 * mapping (the kernel's pin of the pages, as registered fixed buffers) is
 * made when the slot is registered, so the first I/O pays nothing for it.
 * The slots of one ring registered with the same dma-buf share one pin (as
 * a kernel dma token is per dma-buf and device).  On a revoke each slot
 * stops new submissions (-EAGAIN while it is being invalidated, -ENODEV
 * once the exporter says revoked) and drains the I/O in flight, and the
 * fixed buffers are unregistered before the revoke returns, in one update
 * for all of the dma-buf's slots.  After an un-revoke a slot maps again on
 * its next I/O, or at once with p2p_uring_prefetch().
 * So that a revoke ends in bounded time, the drain cancels what a DMABUF
 * request waits behind (the requests ahead of it in its link chain; for a
 * drained one, every request queued before it): those complete with
 * -ECANCELED, and so does the DMABUF request behind an IOSQE_IO_LINK
 * (see p2p_uring_create(3), "Revocation").
 *
 * Errors of a request come back in its completion (cqe->res = -errno), as
 * with the kernel.  Every function is thread-safe.
 *
 * Locking: the lock order of the whole library is docs/locking.md.
 */
#ifndef P2PBUF_URING_H
#define P2PBUF_URING_H

#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>

#include <p2pbuf/common.h>
#include <p2pbuf/dmabuf.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef IORING_RSRC_UPDATE_EXTENDED
/*
 * io_uring_rsrc_update2.flags: data points to struct io_uring_regbuf_desc[].
 * The series names the struct's first reserved word `flags`; with headers
 * that predate it (liburing 2.3) that word is `resv`.
 */
#define IORING_RSRC_UPDATE_EXTENDED (1U << 1)

enum io_uring_regbuf_type {
	IORING_REGBUF_EMPTY = 0,  /* a sparse slot */
	IORING_REGBUF_UADDR = 1,  /* a normal user buffer */
	IORING_REGBUF_DMABUF = 2, /* a dma-buf with its target file */
	IORING_REGBUF_TYPE_MAX,
};

/*
 * struct io_uring_regbuf_desc - one slot's descriptor (series v3+).  The
 * fields are those of kernel-semantics 5.1; they add up to 80 bytes (the
 * document's "128 bytes" does not match its own field list).
 */
struct io_uring_regbuf_desc {
	__u32 type;
	__u32 flags;
	__u64 size;
	__u64 uaddr;
	__s32 dmabuf_fd;
	__s32 target_fd;
	__u64 __resv[6];
};
#endif

#ifndef IORING_OP_READV_FIXED
/* Vectored fixed-buffer opcodes of newer kernels (6.15): EOPNOTSUPP on dma-bufs. */
#define IORING_OP_READV_FIXED 60
#define IORING_OP_WRITEV_FIXED 61
#endif

struct p2p_uring;

/**
 * p2p_uring_create() - a real io_uring with @nr_slots buffer slots
 * @entries: submission queue size (as io_uring_queue_init)
 * @nr_slots: registered buffer slots, all EMPTY at first (<= 1024)
 * Return: 0 or -errno from io_uring_setup / buffer registration.
 */
P2P_API int p2p_uring_create(unsigned int entries, unsigned int nr_slots,
			     struct p2p_uring **out);
/**
 * p2p_uring_destroy() - end all I/O, unregister every slot, close the ring
 *
 * Submits what is queued, cancels every request in flight
 * (IORING_ASYNC_CANCEL_ANY), waits for the last completion (discarded),
 * then unregisters the slots.  Bounded: a pending POLL_ADD does not hold it.
 */
P2P_API void p2p_uring_destroy(struct p2p_uring *ring);

/**
 * p2p_uring_register_buffers_update() - IORING_REGISTER_BUFFERS_UPDATE
 * @up: offset (first slot), nr, data: struct iovec[] or, with
 *	IORING_RSRC_UPDATE_EXTENDED in its flags word (@up->resv with older
 *	headers), struct io_uring_regbuf_desc[]
 *
 * Validation per descriptor (5.1): type >= max, non-zero __resv or unknown
 * flags -> -EINVAL; EMPTY with uaddr or size -> -EFAULT; a non-dma-buf
 * type with non-zero fds -> -EINVAL; DMABUF with uaddr or size -> -EINVAL,
 * bad target_fd -> -EBADF, bad dmabuf_fd -> -EBADF, not a dma-buf -> -EINVAL,
 * a target that is not a regular file or block device (no dma token)
 * -> -EOPNOTSUPP, and the exporter's attach errors (-EOPNOTSUPP, -ENODEV).
 * Slots beyond the table -> -EINVAL.  A slot being replaced is drained and
 * unregistered first.  A DMABUF slot is mapped and pinned before this
 * returns; if that fails (revoked, RLIMIT_MEMLOCK) it stays registered and
 * unmapped, and its next I/O (or p2p_uring_prefetch()) reports the error.
 *
 * Return: the number of slots updated; -errno only if the first descriptor
 * failed.  Nothing after the first failing descriptor is applied, and a
 * failing descriptor leaves its slot as it was.  Re-registering a slot while
 * another thread submits to that same slot is not supported.
 */
P2P_API int p2p_uring_register_buffers_update(struct p2p_uring *ring,
					      const struct io_uring_rsrc_update2 *up);

/** p2p_uring_register_dmabuf() - one DMABUF descriptor at @slot (typed shortcut) */
P2P_API int p2p_uring_register_dmabuf(struct p2p_uring *ring, unsigned int slot, int dmabuf_fd,
				      int target_fd);

/**
 * p2p_uring_submit_sqe() - queue one request
 * @sqe: the request as for a real ring.  For READ_FIXED / WRITE_FIXED on a
 *	DMABUF slot, @sqe->addr is the offset in the dma-buf and @sqe->fd must
 *	be the slot's target file (the same open file: -EBADF otherwise).
 *
 * Per-request errors are delivered as completions once submitted (like the
 * kernel's, they need p2p_uring_submit()): len 0 or beyond the dma-buf
 * -> -EFAULT; vectored fixed ops -> -EOPNOTSUPP; other opcodes using a
 * DMABUF slot -> -EFAULT; -EAGAIN while the slot is being invalidated
 * (resubmit); -ENODEV once its dma-buf is revoked.
 *
 * Return: 0, or -EBUSY if the submission queue is full (submit first),
 * -ENOMEM.
 */
P2P_API int p2p_uring_submit_sqe(struct p2p_uring *ring, const struct io_uring_sqe *sqe);

/** p2p_uring_submit() - hand the queued requests to the kernel; Return: count or -errno */
P2P_API int p2p_uring_submit(struct p2p_uring *ring);

/**
 * p2p_uring_wait_cqe() - wait for one completion and copy it to @cqe
 * @wait: false returns -EAGAIN at once if none is ready
 * Return: 0 or -EAGAIN, -errno of io_uring_wait_cqe.
 */
P2P_API int p2p_uring_wait_cqe(struct p2p_uring *ring, struct io_uring_cqe *cqe, bool wait);

/** p2p_uring_slot_mapped() - is a DMABUF slot currently mapped (pinned)? */
P2P_API bool p2p_uring_slot_mapped(struct p2p_uring *ring, unsigned int slot);

/**
 * p2p_uring_prefetch() - map and pin a DMABUF slot now
 *
 * Registration maps a DMABUF slot already; this maps one that is not
 * mapped (registered while revoked or short of locked memory, or
 * invalidated since, e.g. after an un-revoke), so that its next I/O does
 * not pay for it.  Waits for a revoke in progress (takes the dma-buf's
 * resv).
 *
 * Return: 0 (mapped, or a UADDR slot, pinned since its registration),
 * -EINVAL for a slot beyond the table or EMPTY, -ENODEV while the dma-buf
 * is revoked, -ENOMEM (pinning refused: RLIMIT_MEMLOCK) or another error of
 * the exporter's map.
 */
P2P_API int p2p_uring_prefetch(struct p2p_uring *ring, unsigned int slot);

#ifdef __cplusplus
}
#endif
#endif
