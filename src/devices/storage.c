// SPDX-License-Identifier: MIT
/*
 * The storage device: an emulated PCI function that moves blocks between
 * a backing file and IOVA space with io_uring.
 *
 * One worker thread per device owns a real io_uring.  When the doorbell
 * moves it fetches commands from the submission queue (in IOVA space),
 * translates each data buffer in runs (p2p_pci_dev_dma_begin(), the longest
 * contiguous piece of a mapping at a time) and hands the host addresses to
 * the kernel as one readv/writev (read/write for a single run) at
 * lba * 4096.  Up to SD_MAX_INFLIGHT commands are in flight at once.  The
 * segments of a command are held from translation until the CQE of its
 * I/O arrives: a revoke of a dma-buf in the IOAS waits (through the IOAS
 * fence) for exactly that long, so once it returns nothing lands in the
 * revoked memory.  Then the device ends the segments, writes a struct
 * p2p_sd_cqe at CQ[CQ_TAIL % size], advances CQ_TAIL and raises MSI vector
 * 0 if the command asked for it (once for the completions of one reap of
 * the ring: interrupt coalescing).  Completions are written in completion
 * order, not submission order.
 *
 * Queue contract: the device writes completions without a CQ head
 * register, so a driver keeps at most QUEUE_SIZE commands submitted and
 * not yet reaped (SQ_TAIL - reaped <= QUEUE_SIZE).  A command the device
 * cannot fetch completes with id 0xffffffff and P2P_SD_FAULT and sets
 * P2P_SD_STATUS_QUEUE_FAULT; an unreachable completion slot sets it too
 * (that completion is lost, CQ_TAIL still moves).
 *
 * Reset (FLR, VFIO_DEVICE_RESET, hot reset) stops fetching, waits for every
 * command in flight to complete normally (their CQEs are written), then
 * clears every register.  Commands submitted but not fetched are dropped,
 * as a controller reset drops its queues.
 *
 * Locking: the registers are atomics; sd->lock serializes register writes,
 * reset and the worker going to sleep (kick) or reporting the in-flight
 * count reaching zero (idle).  It is taken inside the function's
 * memory_lock (register access and reset come through the VFIO layer
 * holding it) and never held across I/O, DMA translation or interrupts.
 * The worker's hot path takes no lock: it cannot starve the driver's
 * register accesses or a reset.  A reset raises `quiesce` and then waits
 * for `inflight` to reach zero; the worker raises `inflight` and then
 * checks `quiesce` (both seq_cst), so no fetch slips past a reset.  The
 * worker never takes a memory lock or a dma-buf reservation, so a peer's
 * revoke, which waits for the worker's segments under its own memory lock
 * and resv, always makes progress; and reset, which waits for the worker
 * under this function's memory lock, does too.  Only the worker touches
 * the ring and the command slots.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <p2pbuf/devices.h>

#include "../util/private.h"

#define SD_MAX_INFLIGHT 64	  /* commands in flight (one SQE each at a time) */
#define SD_RING_ENTRIES 64	  /* io_uring submission queue */
#define SD_MAX_IOV 64		  /* runs per readv/writev */
#define SD_MAX_PART (1ull << 30) /* bytes per readv/writev (below MAX_RW_COUNT) */
#define SD_MAX_QUEUE 4096
#define SD_SUBMIT_BATCH 8	  /* commands fetched before submitting */
#define SD_BOUNCE (256u << 10)	  /* bytes per part through a bounce buffer */

/* A command between fetch and completion; owned by the worker. */
struct sd_slot {
	struct p2p_sd_cmd cmd;
	uint32_t status;
	uint64_t len;  /* bytes of the command */
	uint64_t done; /* bytes transferred */
	uint64_t part; /* bytes of the I/O in flight */
	unsigned int nseg;
	struct p2p_dma_seg seg[SD_MAX_IOV];
	struct iovec iov[SD_MAX_IOV];
	bool bounced;	 /* the I/O in flight is on `bounce` (a callback area) */
	uint8_t *bounce; /* SD_BOUNCE bytes, allocated at first use */
};

struct storage {
	pthread_mutex_t lock;
	pthread_cond_t kick; /* doorbell, enable, stop: signalled under lock */
	pthread_cond_t idle; /* inflight reached 0: broadcast under lock */
	pthread_t thread;
	bool started; /* the worker runs: release stops it and frees the device */
	atomic_bool stop;    /* release */
	atomic_bool quiesce; /* reset in progress: fetch nothing */
	/* Registers: written under lock by the driver side, read anywhere. */
	_Atomic uint64_t sq, cq;
	atomic_uint queue_size, ctrl, status;
	atomic_uint sq_tail;
	/* Written by the worker only. */
	atomic_uint sq_head, cq_tail;
	atomic_uint inflight; /* claimed for fetch, CQE not yet written */

	/* Fixed at creation. */
	int fd;
	uint64_t capacity; /* blocks */
	struct p2p_pci_dev *dev;

	/* The worker's. */
	struct io_uring ring;
	struct sd_slot *slots;
	struct sd_slot *free[SD_MAX_INFLIGHT];
	unsigned int nfree;
	unsigned int nio; /* slots with an SQE queued or I/O in flight */
	unsigned int ndone; /* completions written, not yet taken off inflight */
	bool irq;	     /* one of them asked for an interrupt */
};

P2P_API const char *p2p_sd_status_name(uint32_t status)
{
	switch (status) {
	case P2P_SD_PENDING: return "pending";
	case P2P_SD_OK: return "ok";
	case P2P_SD_FAULT: return "translation fault";
	case P2P_SD_REVOKED: return "revoked";
	case P2P_SD_PERM: return "permission fault";
	case P2P_SD_BAD_LBA: return "bad block address";
	case P2P_SD_IO_ERROR: return "I/O error";
	case P2P_SD_BAD_OPCODE: return "bad opcode";
	default: return "unknown";
	}
}

static uint32_t err_status(int err)
{
	switch (err) {
	case -ENODEV: return P2P_SD_REVOKED;
	case -EPERM: return P2P_SD_PERM;
	default: return P2P_SD_FAULT;
	}
}

/* ---------------------------------------------------------------------- */
/* Worker                                                                  */

static void sd_end_segs(struct sd_slot *s)
{
	for (unsigned int i = 0; i < s->nseg; i++)
		p2p_ioas_dma_end(&s->seg[i]);
	s->nseg = 0;
}

/* @n commands claimed by sd_fetch() are over; wake a reset waiting for the last one. */
static void sd_inflight_done(struct storage *sd, unsigned int n)
{
	if (atomic_fetch_sub(&sd->inflight, n) == n) {
		pthread_mutex_lock(&sd->lock);
		pthread_cond_broadcast(&sd->idle);
		pthread_mutex_unlock(&sd->lock);
	}
}

/*
 * Raise the MSI for the completions written since the last call (one for
 * the batch: interrupt coalescing), then let a reset see them done, so
 * no interrupt of an old command follows a reset.
 */
static void sd_flush_done(struct storage *sd)
{
	if (sd->irq)
		p2p_pci_dev_raise_irq(sd->dev, 0);
	sd->irq = false;
	if (sd->ndone)
		sd_inflight_done(sd, sd->ndone);
	sd->ndone = 0;
}

/* Write the CQE of @s, advance CQ_TAIL, free the slot; sd_flush_done() follows. */
static void sd_complete(struct storage *sd, struct sd_slot *s)
{
	struct p2p_sd_cqe c = { .id = s->cmd.id, .status = s->status, .bytes = s->done };
	uint32_t size = atomic_load(&sd->queue_size), tail = atomic_load(&sd->cq_tail);
	bool irq = s->cmd.flags & P2P_SD_CMD_IRQ;
	uint64_t cq = atomic_load(&sd->cq);
	int ret = -ENOENT;

	sd_end_segs(s);
	/* Only this thread writes completions and CQ_TAIL. */
	if (size)
		ret = p2p_pci_dev_dma_rw(sd->dev, cq + (uint64_t)(tail & (size - 1)) * sizeof(c), &c,
					 sizeof(c), true);
	if (ret)
		atomic_fetch_or(&sd->status, P2P_SD_STATUS_QUEUE_FAULT);
	/* Release: the completion is visible once CQ_TAIL covers it. */
	atomic_store(&sd->cq_tail, tail + 1);
	sd->free[sd->nfree++] = s;
	/* MSI only once CQ_TAIL covers the completion, or a woken driver misses it. */
	sd->irq |= irq;
	sd->ndone++;
}

/*
 * An SQE.  Each slot has at most one SQE queued or in flight and the SQ
 * ring has a place for every slot, so this only fails if the kernel keeps
 * refusing submissions.
 */
static struct io_uring_sqe *sd_get_sqe(struct storage *sd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sd->ring);

	if (!sqe) {
		io_uring_submit(&sd->ring);
		sqe = io_uring_get_sqe(&sd->ring);
	}
	return sqe;
}

/*
 * The next part of @s starts in a callback area (-EREMOTE: memory that is
 * not in this process, e.g. a vfio-user client's mapped without an fd):
 * its I/O goes through the slot's bounce buffer, and p2p_pci_dev_dma_rw()
 * (which calls the area's owner, blocking this thread for that long) moves
 * the data: before a WRITE's I/O, after a READ's (sd_io_done()).
 */
static bool sd_queue_bounce(struct storage *sd, struct sd_slot *s, uint64_t iova, uint64_t want,
			    off_t off)
{
	bool read = s->cmd.opcode == P2P_SD_OP_READ;
	uint64_t n = MIN(want, (uint64_t)SD_BOUNCE);
	struct io_uring_sqe *sqe;
	int ret;

	if (!s->bounce)
		s->bounce = malloc(SD_BOUNCE);
	if (!s->bounce) {
		s->status = P2P_SD_IO_ERROR;
		return false;
	}
	if (!read) {
		ret = p2p_pci_dev_dma_rw(sd->dev, iova, s->bounce, n, false);
		if (ret) {
			s->status = err_status(ret);
			return false;
		}
	}
	sqe = sd_get_sqe(sd);
	if (!sqe) {
		s->status = P2P_SD_IO_ERROR;
		return false;
	}
	if (read)
		io_uring_prep_read(sqe, sd->fd, s->bounce, (unsigned int)n, (uint64_t)off);
	else
		io_uring_prep_write(sqe, sd->fd, s->bounce, (unsigned int)n, (uint64_t)off);
	io_uring_sqe_set_data(sqe, s);
	s->part = n;
	s->bounced = true;
	return true;
}

/*
 * Translate the next part of @s (up to SD_MAX_IOV runs, SD_MAX_PART bytes)
 * and queue its readv/writev.  Returns false if the command is finished
 * (translation failed): the caller completes it.
 */
static bool sd_queue_part(struct storage *sd, struct sd_slot *s)
{
	bool read = s->cmd.opcode == P2P_SD_OP_READ;
	uint64_t want = MIN(s->len - s->done, SD_MAX_PART), got = 0;
	uint64_t iova = s->cmd.data + s->done;
	struct io_uring_sqe *sqe;
	off_t off;

	s->nseg = 0;
	while (got < want && s->nseg < SD_MAX_IOV) {
		struct p2p_dma_seg *seg = &s->seg[s->nseg];
		/* The device writes memory for READ and reads it for WRITE. */
		int ret = p2p_pci_dev_dma_begin(sd->dev, iova + got, want - got,
						read ? P2P_DMA_WRITE : P2P_DMA_READ, seg);

		if (ret == -EREMOTE && !s->nseg)
			return sd_queue_bounce(sd, s, iova, want,
					       (off_t)(s->cmd.lba * P2P_SD_BLOCK + s->done));
		if (ret == -EREMOTE)
			break; /* the runs so far; the next part bounces */
		if (ret) {
			/* Nothing of this part was transferred. */
			sd_end_segs(s);
			s->status = err_status(ret);
			return false;
		}
		s->iov[s->nseg].iov_base = seg->host;
		s->iov[s->nseg].iov_len = seg->len;
		s->nseg++;
		got += seg->len;
	}
	s->part = got;
	off = (off_t)(s->cmd.lba * P2P_SD_BLOCK + s->done);
	sqe = sd_get_sqe(sd);
	if (!sqe) {
		sd_end_segs(s);
		s->status = P2P_SD_IO_ERROR;
		return false;
	}
	if (s->nseg == 1 && read)
		io_uring_prep_read(sqe, sd->fd, s->iov[0].iov_base, (unsigned int)got, (uint64_t)off);
	else if (s->nseg == 1)
		io_uring_prep_write(sqe, sd->fd, s->iov[0].iov_base, (unsigned int)got, (uint64_t)off);
	else if (read)
		io_uring_prep_readv(sqe, sd->fd, s->iov, s->nseg, (uint64_t)off);
	else
		io_uring_prep_writev(sqe, sd->fd, s->iov, s->nseg, (uint64_t)off);
	io_uring_sqe_set_data(sqe, s);
	return true;
}

/* Start the command fetched into @s.  Returns true if it has I/O queued. */
static bool sd_start(struct storage *sd, struct sd_slot *s)
{
	const struct p2p_sd_cmd *c = &s->cmd;
	struct io_uring_sqe *sqe;

	s->status = P2P_SD_OK;
	s->done = s->len = s->part = 0;
	s->nseg = 0;
	s->bounced = false;
	switch (c->opcode) {
	case P2P_SD_OP_READ:
	case P2P_SD_OP_WRITE:
		/* Checked before any translation. */
		if (c->lba > sd->capacity || c->nblocks > sd->capacity - c->lba) {
			s->status = P2P_SD_BAD_LBA;
			return false;
		}
		s->len = (uint64_t)c->nblocks * P2P_SD_BLOCK;
		return s->len && sd_queue_part(sd, s);
	case P2P_SD_OP_FLUSH:
		sqe = sd_get_sqe(sd);
		if (!sqe) {
			s->status = P2P_SD_IO_ERROR;
			return false;
		}
		io_uring_prep_fsync(sqe, sd->fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data(sqe, s);
		return true;
	default:
		s->status = P2P_SD_BAD_OPCODE;
		return false;
	}
}

/* The CQE of @s's I/O: @res is its result.  Returns true if more I/O was queued. */
static bool sd_io_done(struct storage *sd, struct sd_slot *s, int res)
{
	bool bounced = s->bounced;

	sd_end_segs(s);
	s->bounced = false;
	if (s->cmd.opcode == P2P_SD_OP_FLUSH) {
		if (res < 0)
			s->status = P2P_SD_IO_ERROR;
		return false;
	}
	if (res < 0) {
		/*
		 * The kernel could not reach the memory (a memfd truncated
		 * under its mapping): a translation fault, not a media error.
		 */
		s->status = res == -EFAULT ? P2P_SD_FAULT : P2P_SD_IO_ERROR;
		return false;
	}
	if (!res && s->part) {
		s->status = P2P_SD_IO_ERROR; /* nothing: the image shrank under us */
		return false;
	}
	if (bounced && s->cmd.opcode == P2P_SD_OP_READ && res > 0) {
		int ret = p2p_pci_dev_dma_rw(sd->dev, s->cmd.data + s->done, s->bounce,
					     (uint64_t)res, true);

		if (ret) {
			s->status = err_status(ret);
			return false;
		}
	}
	/*
	 * A short transfer goes on from where it stopped: the next one says
	 * why (0 bytes: the image shrank; -EFAULT: the memory vanished).
	 */
	s->done += (uint64_t)res;
	return s->done < s->len && sd_queue_part(sd, s);
}

/* Submit what is queued; wait for a CQE if asked; finish every ready one. */
static void sd_submit_and_reap(struct storage *sd, bool wait)
{
	struct io_uring_cqe *cqe;
	int ret;

	do
		ret = wait ? io_uring_submit_and_wait(&sd->ring, 1) : io_uring_submit(&sd->ring);
	while (ret == -EINTR);
	while (io_uring_peek_cqe(&sd->ring, &cqe) == 0) {
		struct sd_slot *s = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&sd->ring, cqe);
		if (!sd_io_done(sd, s, res)) {
			sd->nio--;
			sd_complete(sd, s);
		}
	}
	sd_flush_done(sd);
}

/* A command to fetch and room for it. */
static bool sd_can_fetch(struct storage *sd)
{
	return !atomic_load(&sd->stop) && !atomic_load(&sd->quiesce) &&
	       (atomic_load(&sd->ctrl) & P2P_SD_CTRL_ENABLE) && atomic_load(&sd->queue_size) &&
	       atomic_load(&sd->sq_head) != atomic_load(&sd->sq_tail) && sd->nfree;
}

/* Claim the command at SQ_HEAD, fetch it and start it. */
static void sd_fetch(struct storage *sd)
{
	struct sd_slot *s;
	uint32_t head, size;
	uint64_t sq;
	int ret;

	/* Raise inflight, then look: sd_reset() raises quiesce, then looks at inflight. */
	atomic_fetch_add(&sd->inflight, 1);
	if (!sd_can_fetch(sd)) {
		sd_inflight_done(sd, 1);
		return;
	}
	head = atomic_load(&sd->sq_head);
	size = atomic_load(&sd->queue_size);
	sq = atomic_load(&sd->sq);
	s = sd->free[--sd->nfree];
	ret = p2p_pci_dev_dma_rw(sd->dev, sq + (uint64_t)(head & (size - 1)) * sizeof(s->cmd),
				 &s->cmd, sizeof(s->cmd), false);
	/* Fetched: the driver may reuse the slot. */
	atomic_store(&sd->sq_head, head + 1);
	if (ret) {
		atomic_fetch_or(&sd->status, P2P_SD_STATUS_QUEUE_FAULT);
		memset(&s->cmd, 0, sizeof(s->cmd));
		s->cmd.id = UINT32_MAX;
		s->status = P2P_SD_FAULT;
		s->done = 0;
		s->nseg = 0;
		sd_complete(sd, s);
	} else if (sd_start(sd, s)) {
		sd->nio++;
	} else {
		sd_complete(sd, s);
	}
	/* Commands that completed at once (errors): without delay. */
	sd_flush_done(sd);
}

static void *sd_worker(void *arg)
{
	struct storage *sd = arg;

	dma_guard_thread();
	for (;;) {
		uint32_t head;
		bool enabled;

		if (sd_can_fetch(sd) && io_uring_sq_ready(&sd->ring) < SD_SUBMIT_BATCH) {
			sd_fetch(sd);
			continue;
		}
		if (sd->nio) {
			/*
			 * Submit in small batches, so that the first commands
			 * complete (page-cached I/O runs inside the submit) while
			 * the driver queues more; wait only with nothing to fetch.
			 */
			sd_submit_and_reap(sd, !io_uring_sq_ready(&sd->ring) || !sd_can_fetch(sd));
			continue;
		}
		if (atomic_load(&sd->stop))
			break;
		/* Idle.  Streaming drivers ring again soon: look before sleeping. */
		head = atomic_load(&sd->sq_head);
		enabled = (atomic_load(&sd->ctrl) & P2P_SD_CTRL_ENABLE) && atomic_load(&sd->queue_size);
		for (int spin = 0; enabled && spin < 2000 && head == atomic_load(&sd->sq_tail); spin++)
			__builtin_ia32_pause();
		pthread_mutex_lock(&sd->lock);
		/* Register writes and stop happen under the lock: no wakeup is missed. */
		if (!atomic_load(&sd->stop) && !sd_can_fetch(sd))
			pthread_cond_wait(&sd->kick, &sd->lock);
		pthread_mutex_unlock(&sd->lock);
	}
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Registers                                                               */

static bool reg_is_u64(uint64_t off)
{
	return off == P2P_SD_REG_CAPACITY || off == P2P_SD_REG_SQ || off == P2P_SD_REG_CQ;
}

/* Read the naturally aligned register at @off (a u64 one at its low offset).  sd->lock held. */
static uint64_t reg_get_locked(struct storage *sd, uint64_t off)
{
	switch (off) {
	case P2P_SD_REG_ID: return P2P_SD_ID;
	case P2P_SD_REG_BLOCK_SIZE: return P2P_SD_BLOCK;
	case P2P_SD_REG_CAPACITY: return sd->capacity;
	case P2P_SD_REG_SQ: return atomic_load(&sd->sq);
	case P2P_SD_REG_CQ: return atomic_load(&sd->cq);
	case P2P_SD_REG_QUEUE_SIZE: return atomic_load(&sd->queue_size);
	case P2P_SD_REG_SQ_TAIL: return atomic_load(&sd->sq_tail);
	case P2P_SD_REG_SQ_HEAD: return atomic_load(&sd->sq_head);
	case P2P_SD_REG_CQ_TAIL: return atomic_load(&sd->cq_tail);
	case P2P_SD_REG_CTRL: return atomic_load(&sd->ctrl);
	case P2P_SD_REG_STATUS:
		return atomic_load(&sd->status) |
		       (atomic_load(&sd->inflight) ? P2P_SD_STATUS_BUSY : 0);
	default: return 0; /* reserved: reads 0 */
	}
}

/* Write a register (read-only and reserved ones ignore writes).  sd->lock held. */
static void reg_set_locked(struct storage *sd, uint64_t off, uint64_t v)
{
	switch (off) {
	case P2P_SD_REG_SQ:
		atomic_store(&sd->sq, v);
		break;
	case P2P_SD_REG_CQ:
		atomic_store(&sd->cq, v);
		break;
	case P2P_SD_REG_QUEUE_SIZE:
		/* A power of two up to 4096, or 0; other values are ignored. */
		if (v <= SD_MAX_QUEUE && !(v & (v - 1))) {
			atomic_store(&sd->queue_size, (uint32_t)v);
			pthread_cond_signal(&sd->kick);
		}
		break;
	case P2P_SD_REG_SQ_TAIL:
		/* A tail more than a queue ahead of the head is ignored. */
		if ((uint32_t)v - atomic_load(&sd->sq_head) <= atomic_load(&sd->queue_size)) {
			/* Release: the commands written before the doorbell. */
			atomic_store(&sd->sq_tail, (uint32_t)v);
			pthread_cond_signal(&sd->kick);
		}
		break;
	case P2P_SD_REG_CTRL:
		atomic_store(&sd->ctrl, (uint32_t)v & P2P_SD_CTRL_ENABLE);
		pthread_cond_signal(&sd->kick);
		break;
	default:
		break;
	}
}

/* One 4-byte access; the high half of a u64 register is its own word. */
static void reg_rw32_locked(struct storage *sd, uint64_t off, uint32_t *v, bool write)
{
	uint64_t base = off & ~7ull;

	if (off & 4 && reg_is_u64(base)) {
		uint64_t cur = reg_get_locked(sd, base);

		if (write)
			reg_set_locked(sd, base, (cur & 0xffffffffull) | (uint64_t)*v << 32);
		else
			*v = (uint32_t)(cur >> 32);
		return;
	}
	if (reg_is_u64(off)) {
		uint64_t cur = reg_get_locked(sd, off);

		if (write)
			reg_set_locked(sd, off, (cur & ~0xffffffffull) | *v);
		else
			*v = (uint32_t)cur;
		return;
	}
	if (write)
		reg_set_locked(sd, off, *v);
	else
		*v = (uint32_t)reg_get_locked(sd, off);
}

static int sd_bar_rw(struct p2p_pci_dev *dev, int bar, uint64_t off, void *data, size_t len,
		     bool write)
{
	struct storage *sd = p2p_pci_dev_priv(dev);
	uint64_t v = 0;

	if (bar != 0 || (len != 4 && len != 8) || off % len || off + len > P2P_SD_BAR0_SIZE)
		return -EINVAL;
	if (write)
		memcpy(&v, data, len);
	pthread_mutex_lock(&sd->lock);
	if (len == 8 && reg_is_u64(off)) {
		if (write)
			reg_set_locked(sd, off, v);
		v = reg_get_locked(sd, off);
	} else {
		/* 4 bytes, or 8 bytes over two u32 registers: low word first. */
		for (size_t i = 0; i < len; i += 4) {
			uint32_t w = (uint32_t)(v >> (8 * i));

			reg_rw32_locked(sd, off + i, &w, write);
			if (!write)
				v |= (uint64_t)w << (8 * i);
		}
	}
	pthread_mutex_unlock(&sd->lock);
	if (!write)
		memcpy(data, &v, len);
	return 0;
}

/*
 * FLR / reset, memory_lock held for write: stop fetching, let every command
 * in flight complete (CQEs written), then clear every register.
 */
static void sd_reset(struct p2p_pci_dev *dev)
{
	struct storage *sd = p2p_pci_dev_priv(dev);

	pthread_mutex_lock(&sd->lock);
	/* Raise quiesce, then look at inflight: see sd_fetch(). */
	atomic_store(&sd->quiesce, true);
	atomic_store(&sd->ctrl, 0);
	while (atomic_load(&sd->inflight))
		pthread_cond_wait(&sd->idle, &sd->lock);
	atomic_store(&sd->sq, 0);
	atomic_store(&sd->cq, 0);
	atomic_store(&sd->queue_size, 0);
	atomic_store(&sd->status, 0);
	atomic_store(&sd->sq_head, 0);
	atomic_store(&sd->cq_tail, 0);
	atomic_store(&sd->sq_tail, 0);
	atomic_store(&sd->quiesce, false);
	pthread_mutex_unlock(&sd->lock);
}

static void sd_free(struct storage *sd)
{
	io_uring_queue_exit(&sd->ring);
	close(sd->fd);
	pthread_mutex_destroy(&sd->lock);
	pthread_cond_destroy(&sd->kick);
	pthread_cond_destroy(&sd->idle);
	for (unsigned int i = 0; i < SD_MAX_INFLIGHT; i++)
		free(sd->slots[i].bounce);
	free(sd->slots);
	free(sd);
}

/* Unplug: finish the commands in flight, stop the thread, close the ring and the image. */
static void sd_release(struct p2p_pci_dev *dev)
{
	struct storage *sd = p2p_pci_dev_priv(dev);

	if (!sd->started)
		return; /* unplugged by a failed create, which frees the device */
	pthread_mutex_lock(&sd->lock);
	atomic_store(&sd->stop, true);
	pthread_cond_signal(&sd->kick);
	pthread_mutex_unlock(&sd->lock);
	pthread_join(sd->thread, NULL);
	sd_free(sd);
}

static const struct p2p_pci_dev_ops sd_ops = {
	.reset = sd_reset,
	.bar_rw = sd_bar_rw,
	.release = sd_release,
};

/* ---------------------------------------------------------------------- */
/* Creation                                                                */

/* A new unnamed image of @size bytes in $TMPDIR or /tmp. */
static int sd_tmp_image(uint64_t size)
{
	const char *dir = getenv("TMPDIR");
	char path[PATH_MAX];
	int fd, err;

	if (!dir || !*dir)
		dir = "/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
		/* No O_TMPFILE on this filesystem: create and unlink. */
		if (snprintf(path, sizeof(path), "%s/p2pbuf-sd-XXXXXX", dir) >= (int)sizeof(path))
			return -ENAMETOOLONG;
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0)
		return -errno;
	err = fd_set_size(fd, size);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* Open the image; *capacity in blocks. */
static int sd_open_image(const char *path, uint64_t size, uint64_t *capacity)
{
	off_t end;
	int fd;

	if (!path) {
		if (!size || size % P2P_SD_BLOCK || size > (uint64_t)INT64_MAX)
			return -EINVAL;
		*capacity = size / P2P_SD_BLOCK;
		return sd_tmp_image(size);
	}
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* SEEK_END: the size of a regular file and of a block device alike. */
	end = lseek(fd, 0, SEEK_END);
	if (end < (off_t)P2P_SD_BLOCK) {
		int err = end < 0 ? -errno : -EINVAL;

		close(fd);
		return err;
	}
	*capacity = (uint64_t)end / P2P_SD_BLOCK;
	return fd;
}

P2P_API int p2p_storage_create(const char *name, struct p2p_pci_devset *set, uint32_t group,
			       const char *path, uint64_t size, struct p2p_pci_dev **out)
{
	struct storage *sd = calloc(1, sizeof(*sd));
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
		.name = name,
		.vendor_id = 0x1b36,
		.device_id = 0x0112,
		.class_code = 0x018000, /* mass storage controller, other */
		.group = group,
		.devset = set,
		.bars = { [0] = { .size = P2P_SD_BAR0_SIZE, .flags = P2P_BAR_TRAP } },
		.ops = &sd_ops,
		.priv = sd,
	};
	int ret;

	if (!sd)
		return -ENOMEM;
	sd->slots = calloc(SD_MAX_INFLIGHT, sizeof(*sd->slots));
	if (!sd->slots) {
		ret = -ENOMEM;
		goto err_free;
	}
	for (unsigned int i = 0; i < SD_MAX_INFLIGHT; i++)
		sd->free[sd->nfree++] = &sd->slots[i];
	sd->fd = sd_open_image(path, size, &sd->capacity);
	if (sd->fd < 0) {
		ret = sd->fd;
		goto err_free;
	}
	ret = io_uring_queue_init(SD_RING_ENTRIES, &sd->ring, 0);
	if (ret)
		goto err_close;
	pthread_mutex_init(&sd->lock, NULL);
	pthread_cond_init(&sd->kick, NULL);
	pthread_cond_init(&sd->idle, NULL);
	/* calloc'ed: every atomic starts at zero, as after a reset. */
	ret = p2p_pci_dev_create(&info, &sd->dev);
	if (ret)
		goto err_ring;
	ret = -pthread_create(&sd->thread, NULL, sd_worker, sd);
	if (ret) {
		/* Unplug: no thread to stop (the release op sees !started). */
		p2p_pci_dev_put(sd->dev);
		goto err_ring;
	}
	sd->started = true;
	*out = sd->dev;
	return 0;

err_ring:
	pthread_mutex_destroy(&sd->lock);
	pthread_cond_destroy(&sd->kick);
	pthread_cond_destroy(&sd->idle);
	io_uring_queue_exit(&sd->ring);
err_close:
	close(sd->fd);
err_free:
	free(sd->slots);
	free(sd);
	return ret;
}
