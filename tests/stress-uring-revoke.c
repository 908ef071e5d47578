// SPDX-License-Identifier: MIT
/*
 * Revoke during io_uring dma-buf I/O (kernel-semantics 5.2, 0.2, 0.3, 1.7,
 * 7.2, 7.3; platform-notes "io_uring": registered buffers pin pages and
 * bypass CPU revocation, so the revoke itself must stop and drain them).
 *
 * A submitter thread keeps QD READ_FIXED requests in flight from a file
 * into a DMABUF slot over a multi-range GPU BAR dma-buf, resubmitting
 * whatever completes (so -EAGAIN is retried), while the main thread
 * revokes and restores the device's dma-bufs:
 *
 * - COMMAND.MEM off / on rounds.  The main thread bumps the atomic `phase`
 *   after t_mem_enable(false) has returned and again before
 *   t_mem_enable(true) starts, so an odd phase means "revoked".  Right
 *   after the revoke returns it checks the slot is unmapped and fills the
 *   whole BAR with a canary (its snapshot).  The submitter reads the phase
 *   before (p1) and after (p2) p2p_uring_submit_sqe(); a request with
 *   p1 == p2 odd was submitted entirely while revoked and must complete
 *   with -EAGAIN or -ENODEV, never a positive result (a violation).  The
 *   revoked phase lasts until the submitter has completed PER_PHASE such
 *   requests; then not one BAR byte may differ from the snapshot (any
 *   kernel write of file data into the pinned pages would change one: the
 *   file never contains the canary byte).  After the un-revoke, reads must
 *   complete again (the slot maps again on its next I/O, 5.2).
 * - FLR and VFIO_DEVICE_RESET rounds (revoke, reset and un-revoke in one
 *   call): every request completes with its full length or -EAGAIN /
 *   -ENODEV, and reads complete again afterwards.
 *
 * No request is lost: at the end submissions == completions, and a final
 * synchronous read of the whole dma-buf matches the file.  Round counts are
 * fixed; nothing is asserted on timing.
 *
 * ThreadSanitizer: the BAR bytes are written by the main thread only while
 * revoked (and by the kernel, which TSan does not see); everything shared
 * with the submitter is atomic.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include <p2pbuf/uring.h>

#include "harness.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define BAR 2
#define BAR_SIZE (4 * MiB)
#define SLOT 3
#define QD 16
#define MEM_ROUNDS 200
#define FLR_ROUNDS 100
#define RESET_ROUNDS 100
#define PER_PHASE (2 * QD) /* revoked-phase completions the submitter must see */
#define MAX_LEN (96 * KiB)
#define CANARY 0xa5
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Unsorted ranges (1.3), so requests are split at range boundaries. */
static const struct vfio_region_dma_range ranges[] = {
	{ .offset = 2 * MiB, .length = 256 * KiB },
	{ .offset = 512 * KiB, .length = 128 * KiB },
	{ .offset = 0, .length = 64 * KiB },
	{ .offset = 3 * MiB, .length = 64 * KiB },
};
#define DMABUF_SIZE (512 * KiB)
#define FILE_SIZE (2 * MiB)

static struct t_dev gpu;
static uint8_t *bar;
static struct p2p_uring *ring;
static int file_fd;

static atomic_uint phase; /* odd: revoked (MEM rounds only) */
static atomic_bool stop;
static atomic_ulong submitted, completed, positive, eagain, enodev;
static atomic_ulong odd_done;	/* completions of requests submitted while revoked */
static atomic_ulong violations; /* positive completions of those */
static atomic_ulong unexpected; /* any other result */

/* File bytes never equal the canary. */
static uint8_t file_byte(uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;

	x ^= x >> 29;
	return (uint8_t)((x * 0xbf58476d1ce4e5b9ull) >> 57); /* 0..127 */
}

static int make_file(void)
{
	static uint8_t data[FILE_SIZE];

	for (uint64_t i = 0; i < FILE_SIZE; i++)
		data[i] = file_byte(i);
	return t_tmpfile(data, FILE_SIZE);
}

struct req {
	bool busy;
	unsigned int p1, p2; /* phase before and after submission */
	uint32_t len;
};

static void complete(struct req *reqs, const struct io_uring_cqe *cqe)
{
	struct req *q;

	if (cqe->user_data >= QD || !reqs[cqe->user_data].busy) {
		fprintf(stderr, "completion for unknown request %llu (res %d)\n",
			(unsigned long long)cqe->user_data, cqe->res);
		atomic_fetch_add(&unexpected, 1);
		return;
	}
	q = &reqs[cqe->user_data];
	q->busy = false;
	if (q->p1 == q->p2 && (q->p1 & 1)) {
		/* Submitted after the revoke returned, before the un-revoke began. */
		if (cqe->res >= 0) {
			fprintf(stderr, "violation: request submitted while revoked (phase %u) "
				"completed with %d\n", q->p1, cqe->res);
			atomic_fetch_add(&violations, 1);
		}
		atomic_fetch_add(&odd_done, 1);
	}
	if (cqe->res == (int32_t)q->len) {
		atomic_fetch_add(&positive, 1);
	} else if (cqe->res == -EAGAIN) {
		atomic_fetch_add(&eagain, 1); /* spurious EAGAIN: resubmitted (5.2) */
	} else if (cqe->res == -ENODEV) {
		atomic_fetch_add(&enodev, 1);
	} else {
		fprintf(stderr, "unexpected completion %d (len %u)\n", cqe->res, q->len);
		atomic_fetch_add(&unexpected, 1);
	}
	atomic_fetch_add(&completed, 1);
}

static void *submitter(void *arg)
{
	struct req reqs[QD] = { 0 };
	unsigned int inflight = 0;
	uint64_t rng = 0x2545f4914f6cdd1dull;
	struct io_uring_cqe cqe;
	int ret;

	(void)arg;
	while (!atomic_load(&stop) || inflight) {
		unsigned int queued = 0;

		/* Refill to QD, then one submit, as a liburing user would. */
		for (unsigned int i = 0; i < QD && !atomic_load(&stop); i++) {
			struct io_uring_sqe sqe = { 0 };
			uint64_t off, len;

			if (reqs[i].busy)
				continue;
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			off = (rng >> 11) % DMABUF_SIZE;
			len = 1 + (rng >> 37) % MAX_LEN;
			if (len > DMABUF_SIZE - off)
				len = DMABUF_SIZE - off;
			sqe.opcode = IORING_OP_READ_FIXED;
			sqe.fd = file_fd;
			sqe.addr = off;
			sqe.len = (uint32_t)len;
			sqe.off = (rng >> 3) % (FILE_SIZE - len);
			sqe.buf_index = SLOT;
			sqe.user_data = i;
			/* Half of them through io-wq: really in flight when a revoke comes. */
			if (rng & (1ull << 60))
				sqe.flags = IOSQE_ASYNC;
			reqs[i].len = (uint32_t)len;
			reqs[i].p1 = atomic_load(&phase);
			ret = p2p_uring_submit_sqe(ring, &sqe);
			reqs[i].p2 = atomic_load(&phase);
			if (ret == -EBUSY)
				break;
			if (ret) {
				fprintf(stderr, "p2p_uring_submit_sqe: %s\n", strerror(-ret));
				atomic_fetch_add(&unexpected, 1);
				break;
			}
			reqs[i].busy = true;
			inflight++;
			queued++;
			atomic_fetch_add(&submitted, 1);
		}
		/*
		 * Sometimes reap one completion of an earlier batch before
		 * submitting this one (fine: those are in the kernel).  A
		 * revoke meanwhile must not wait for the new requests, which
		 * nobody has submitted yet, while this thread waits for it.
		 */
		if (queued && inflight > queued && (rng & (1ull << 59))) {
			ret = p2p_uring_wait_cqe(ring, &cqe, true);
			if (ret) {
				fprintf(stderr, "p2p_uring_wait_cqe: %s\n", strerror(-ret));
				atomic_fetch_add(&unexpected, 1);
				break;
			}
			complete(reqs, &cqe);
			inflight--;
		}
		if (queued) {
			ret = p2p_uring_submit(ring);
			if (ret < 0) {
				fprintf(stderr, "p2p_uring_submit: %s\n", strerror(-ret));
				atomic_fetch_add(&unexpected, 1);
			}
		}
		if (!inflight)
			continue;
		ret = p2p_uring_wait_cqe(ring, &cqe, true);
		if (ret) {
			fprintf(stderr, "p2p_uring_wait_cqe: %s\n", strerror(-ret));
			atomic_fetch_add(&unexpected, 1);
			break;
		}
		do {
			complete(reqs, &cqe);
			inflight--;
		} while (inflight && !p2p_uring_wait_cqe(ring, &cqe, false));
	}
	return NULL;
}

/* Let the submitter run until @counter has grown by @n. */
static void wait_for(atomic_ulong *counter, unsigned long n)
{
	unsigned long start = atomic_load(counter);

	while (atomic_load(counter) - start < n && !atomic_load(&unexpected))
		sched_yield();
}

static uint8_t snapshot[BAR_SIZE];

static unsigned long bar_changed(void)
{
	unsigned long n = 0;

	if (!memcmp(bar, snapshot, BAR_SIZE))
		return 0;
	for (uint64_t i = 0; i < BAR_SIZE; i++)
		n += bar[i] != snapshot[i];
	return n;
}

static void mem_round(unsigned int round)
{
	unsigned long changed;

	/* Reads complete (the slot maps again after the last un-revoke). */
	wait_for(&positive, QD);
	CHECK_OK(t_mem_enable(gpu.vdev, false));
	/* 5.2, 7.2: the revoke returned, so the slot is drained and unpinned. */
	CHECK(!p2p_uring_slot_mapped(ring, SLOT));
	memset(bar, CANARY, BAR_SIZE);
	memcpy(snapshot, bar, BAR_SIZE);
	atomic_fetch_add(&phase, 1);   /* odd: revoked */
	wait_for(&odd_done, PER_PHASE);
	changed = bar_changed();
	if (changed) {
		fprintf(stderr, "round %u: %lu BAR bytes written while revoked\n", round, changed);
		CHECK(changed == 0);
	}
	CHECK(!p2p_uring_slot_mapped(ring, SLOT));
	atomic_fetch_add(&phase, 1); /* even: about to un-revoke */
	CHECK_OK(t_mem_enable(gpu.vdev, true));
}

static void reset_round(bool flr)
{
	wait_for(&positive, QD);
	CHECK_OK(flr ? t_flr(gpu.vdev) : p2p_vfio_device_reset(gpu.vdev));
	/* The slot works afterwards: it maps again on the next I/O. */
	wait_for(&positive, QD);
}

/* One synchronous read of the whole dma-buf, checked through the BAR. */
static void final_read(void)
{
	struct io_uring_sqe sqe = {
		.opcode = IORING_OP_READ_FIXED,
		.fd = file_fd,
		.addr = 0,
		.len = DMABUF_SIZE,
		.off = 12345,
		.buf_index = SLOT,
		.user_data = 7777,
	};
	struct io_uring_cqe cqe = { 0 };
	uint64_t off = 0;

	CHECK_OK(p2p_uring_submit_sqe(ring, &sqe));
	CHECK(p2p_uring_submit(ring) >= 0);
	CHECK_OK(p2p_uring_wait_cqe(ring, &cqe, true));
	CHECK(cqe.user_data == 7777);
	CHECK_ERR(cqe.res, DMABUF_SIZE);
	for (unsigned int r = 0; r < ARRAY_SIZE(ranges); r++) {
		for (uint64_t i = 0; i < ranges[r].length; i++) {
			if (bar[ranges[r].offset + i] != file_byte(12345 + off + i)) {
				fprintf(stderr, "final read: dma-buf byte %llu wrong\n",
					(unsigned long long)(off + i));
				CHECK(!"final read data");
				return;
			}
		}
		off += ranges[r].length;
	}
}

int main(void)
{
	pthread_t thr;
	int dfd;

	t_begin();
	file_fd = make_file();
	CHECK_OK(t_dev_create(&gpu, "0000:01:00.0", BAR_SIZE, 0, NULL, 1));
	bar = t_bar_ptr(gpu.pci, BAR, 0);
	CHECK_OK(p2p_uring_create(4 * QD, 8, &ring));
	dfd = t_dmabuf(gpu.vdev, BAR, ranges, ARRAY_SIZE(ranges));
	CHECK(dfd >= 0);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, SLOT, dfd, file_fd), 0);
	if (t_failures)
		return t_end();
	CHECK(pthread_create(&thr, NULL, submitter, NULL) == 0);

	t_section("mem");
	for (unsigned int i = 0; i < MEM_ROUNDS && !atomic_load(&unexpected); i++)
		mem_round(i);
	t_section("flr");
	for (unsigned int i = 0; i < FLR_ROUNDS && !atomic_load(&unexpected); i++)
		reset_round(true);
	t_section("reset");
	for (unsigned int i = 0; i < RESET_ROUNDS && !atomic_load(&unexpected); i++)
		reset_round(false);
	wait_for(&positive, QD);

	atomic_store(&stop, true);
	pthread_join(thr, NULL);

	t_section("totals");
	printf("submitted %lu completed %lu: ok %lu, EAGAIN %lu, ENODEV %lu; "
	       "revoked-phase %lu, violations %lu, unexpected %lu\n",
	       atomic_load(&submitted), atomic_load(&completed), atomic_load(&positive),
	       atomic_load(&eagain), atomic_load(&enodev), atomic_load(&odd_done),
	       atomic_load(&violations), atomic_load(&unexpected));
	CHECK(atomic_load(&violations) == 0);
	CHECK(atomic_load(&unexpected) == 0);
	CHECK(atomic_load(&submitted) == atomic_load(&completed));
	CHECK(atomic_load(&odd_done) >= (unsigned long)MEM_ROUNDS * PER_PHASE);
	CHECK(atomic_load(&enodev) > 0);
	{
		struct io_uring_cqe cqe;

		CHECK_ERR(p2p_uring_wait_cqe(ring, &cqe, false), -EAGAIN);
	}
	final_read();

	p2p_uring_destroy(ring);
	CHECK_OK(p2p_close(dfd));
	t_dev_destroy(&gpu);
	close(file_fd);
	return t_end();
}
