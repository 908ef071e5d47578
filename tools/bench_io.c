// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench io: the io_uring dma-buf path against its raw baselines,
 * every case interleaved with its baselines round by round (the order
 * rotates) by the series framework of bench_util.h: rounds go on until the
 * watched ratios settle, medians with their spread (min-max), per-round
 * ratios, and met / missed / unsettled verdicts from the per-round values.
 *
 * - steady state: a page-cached file read whole into a dma-buf slot in
 *   128 KiB and 1 MiB blocks at depth 1, 8 and 32, vs raw io_uring
 *   READ_FIXED into a registered memfd mapping, and vs the bounce path a
 *   careful user writes (pread into one reused buffer + memcpy).  Target:
 *   >= 0.97x raw (the bounce ratio is reported, no target).
 * - first transfer: registration (which maps and pins) and the first whole
 *   read after it, vs registering the raw buffer and its first read.
 * - per-op cost: 4 KiB reads at depth 1 from the page cache, ns per op over
 *   raw READ_FIXED.  Target: <= 50 ns.
 * - revoke: a dma-buf registered in 1024 slots, revoked (every slot drained
 *   and unpinned) vs the raw unregistering of 1024 buffers with 1024 single
 *   updates and with one update of 1024 entries.  Target: <= 3 ms.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli.h"

#define die bench_die
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

/* Read the whole file through @slot of @r at depth @qd in @bs blocks. */
static uint64_t read_p2p(struct p2p_uring *r, int fd, uint64_t size, uint32_t bs, unsigned int qd)
{
	uint64_t next = 0, done = 0, t0 = now_ns();
	unsigned int inflight = 0;

	while (done < size) {
		struct io_uring_cqe cqe;
		int ret;

		while (inflight < qd && next < size) {
			struct io_uring_sqe sqe = {
				.opcode = IORING_OP_READ_FIXED,
				.fd = fd,
				.addr = next, /* offset in the dma-buf */
				.len = bs,
				.off = next,
				.buf_index = 0,
				.user_data = next,
			};

			if ((ret = p2p_uring_submit_sqe(r, &sqe)))
				die("submit", ret);
			next += bs;
			inflight++;
		}
		p2p_uring_submit(r);
		/* Wait for one, then take every completion ready, as the raw loop does. */
		for (bool wait = true; !(ret = p2p_uring_wait_cqe(r, &cqe, wait)); wait = false) {
			if (cqe.res != (int)bs)
				die("read", cqe.res < 0 ? cqe.res : EIO);
			inflight--;
			done += bs;
		}
		if (ret != -EAGAIN)
			die("wait", ret);
	}
	return now_ns() - t0;
}

/* The bounce path: pread into one reused buffer of @bs bytes, memcpy to the destination. */
static uint64_t read_bounce(int fd, uint8_t *mem, uint8_t *bounce, uint64_t size, uint32_t bs)
{
	uint64_t t0 = now_ns();

	for (uint64_t off = 0; off < size; off += bs) {
		if (pread(fd, bounce, bs, (off_t)off) != (ssize_t)bs)
			die("pread", errno);
		memcpy(mem + off, bounce, bs);
	}
	return now_ns() - t0;
}

/* Set slot @slot of @ur EMPTY (unregistering its buffer). */
static void p2p_slot_empty(struct p2p_uring *ur, unsigned int slot, unsigned int nr)
{
	struct io_uring_regbuf_desc *d = calloc(nr, sizeof(*d));
	struct io_uring_rsrc_update2 up = {
		.offset = slot, .resv = IORING_RSRC_UPDATE_EXTENDED, .data = (uintptr_t)d, .nr = nr,
	};
	int ret;

	if (!d)
		die("calloc", ENOMEM);
	if ((ret = p2p_uring_register_buffers_update(ur, &up)) != (int)nr)
		die("unregister", ret < 0 ? ret : EIO);
	free(d);
}

/* Raw buffers [0, nr) of @ring: all pointing at @iov (nr copies), or, with @iov NULL, emptied. */
static uint64_t raw_update(struct io_uring *ring, const struct iovec *iov, unsigned int nr,
			   bool one_call)
{
	struct iovec *v = calloc(nr, sizeof(*v));
	__u64 *tags = calloc(nr, sizeof(*tags));
	uint64_t t0;
	int ret;

	if (!v || !tags)
		die("calloc", ENOMEM);
	for (unsigned int i = 0; iov && i < nr; i++)
		v[i] = *iov;
	t0 = now_ns();
	if (one_call) {
		ret = io_uring_register_buffers_update_tag(ring, 0, v, tags, nr);
		if (ret != (int)nr)
			die("register update", ret < 0 ? ret : EIO);
	} else {
		for (unsigned int i = 0; i < nr; i++)
			if ((ret = io_uring_register_buffers_update_tag(ring, i, v + i, tags + i, 1)) != 1)
				die("register update", ret < 0 ? ret : EIO);
	}
	t0 = now_ns() - t0;
	free(v);
	free(tags);
	return t0;
}

/* Read @nops blocks of 4 KiB at depth 1, offsets cycling over @span bytes: ns per op. */
static double ops_p2p(struct p2p_uring *ur, int fd, uint64_t span, unsigned int nops)
{
	uint64_t t0 = now_ns();
	struct io_uring_cqe cqe;
	int ret;

	for (unsigned int i = 0; i < nops; i++) {
		uint64_t off = (uint64_t)i * 4096 % span;
		struct io_uring_sqe sqe = {
			.opcode = IORING_OP_READ_FIXED, .fd = fd, .addr = off, .len = 4096,
			.off = off, .buf_index = 0, .user_data = i,
		};

		if ((ret = p2p_uring_submit_sqe(ur, &sqe)) || (ret = p2p_uring_submit(ur)) != 1 ||
		    (ret = p2p_uring_wait_cqe(ur, &cqe, true)))
			die("p2p op", ret < 0 ? ret : EIO);
		if (cqe.res != 4096)
			die("p2p op", cqe.res < 0 ? cqe.res : EIO);
	}
	return (double)(now_ns() - t0) / nops;
}

static double ops_raw(struct io_uring *ring, int fd, uint8_t *mem, uint64_t span,
		      unsigned int nops)
{
	uint64_t t0 = now_ns();
	struct io_uring_cqe *cqe;
	int ret;

	for (unsigned int i = 0; i < nops; i++) {
		uint64_t off = (uint64_t)i * 4096 % span;
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

		io_uring_prep_read_fixed(sqe, fd, mem + off, 4096, off, 0);
		sqe->user_data = i;
		if ((ret = io_uring_submit_and_wait(ring, 1)) != 1 ||
		    (ret = io_uring_peek_cqe(ring, &cqe)))
			die("raw op", ret < 0 ? ret : EIO);
		if (cqe->res != 4096)
			die("raw op", cqe->res < 0 ? cqe->res : EIO);
		io_uring_cqe_seen(ring, cqe);
	}
	return (double)(now_ns() - t0) / nops;
}

#define REVOKE_SLOTS 1024
#define REVOKE_SIZE (1ull << 20)

/* Everything the sampling steps of the series share. */
struct io_ctx {
	struct p2p_uring *ur, *ur2;
	struct io_uring ring, ring2;
	struct p2p_dmabuf *buf2;
	struct iovec iov, iov2;
	uint8_t *mem, *bounce;
	uint64_t size, span;
	uint32_t bs;
	unsigned int qd, nops;
	int fd, dfd;
};

/* Steady state: figure 0 raw READ_FIXED, 1 p2pbuf, 2 bounce (pread + memcpy). */
static void steady_sample(void *ctx, unsigned int arm, uint64_t *row)
{
	struct io_ctx *c = ctx;

	switch (arm) {
	case 0: row[0] = raw_uring_read(&c->ring, c->fd, c->mem, c->size, c->bs, c->qd, true); break;
	case 1: row[1] = read_p2p(c->ur, c->fd, c->size, c->bs, c->qd); break;
	default: row[2] = read_bounce(c->fd, c->mem, c->bounce, c->size, c->bs); break;
	}
}

/*
 * The first transfer after registration, 1 MiB blocks at depth 8: figures
 * 0/1 raw register/read, 2/3 p2pbuf register (map + pin)/read, 4/5 the sums.
 * Each arm unregisters its buffer first (untimed).
 */
static void first_sample(void *ctx, unsigned int arm, uint64_t *row)
{
	struct io_ctx *c = ctx;
	uint64_t t0;
	int ret;

	if (arm == 0) {
		raw_update(&c->ring, NULL, 1, true);
		row[0] = raw_update(&c->ring, &c->iov, 1, true);
		row[1] = raw_uring_read(&c->ring, c->fd, c->mem, c->size, 1 << 20, 8, true);
		row[4] = row[0] + row[1];
		return;
	}
	p2p_slot_empty(c->ur, 0, 1);
	t0 = now_ns();
	if ((ret = p2p_uring_register_dmabuf(c->ur, 0, c->dfd, c->fd)))
		die("register", ret);
	row[2] = now_ns() - t0;
	row[3] = read_p2p(c->ur, c->fd, c->size, 1 << 20, 8);
	row[5] = row[2] + row[3];
}

/* Per-op cost: figure 0 raw, 1 p2pbuf, each the time of nops 4 KiB reads. */
static void op_sample(void *ctx, unsigned int arm, uint64_t *row)
{
	struct io_ctx *c = ctx;

	if (arm == 0)
		row[0] = (uint64_t)(ops_raw(&c->ring, c->fd, c->mem, c->span, c->nops) * c->nops);
	else
		row[1] = (uint64_t)(ops_p2p(c->ur, c->fd, c->span, c->nops) * c->nops);
}

/* Revoke: figure 0 raw (1024 single updates), 1 p2pbuf revoke, 2 raw (one batched update). */
static void revoke_sample(void *ctx, unsigned int arm, uint64_t *row)
{
	struct io_ctx *c = ctx;
	uint64_t t0;
	int ret;

	if (arm == 1) {
		for (unsigned int i = 0; i < REVOKE_SLOTS; i++)
			if ((ret = p2p_uring_prefetch(c->ur2, i)))
				die("prefetch", ret);
		t0 = now_ns();
		if ((ret = p2p_dmabuf_revoke(c->buf2, P2P_DMABUF_TEMP_REVOKED)))
			die("revoke", ret);
		row[1] = now_ns() - t0;
		if (p2p_uring_slot_mapped(c->ur2, 0) || p2p_uring_slot_mapped(c->ur2, REVOKE_SLOTS - 1))
			die("revoke left a slot mapped", EIO);
		if ((ret = p2p_dmabuf_unrevoke(c->buf2)))
			die("unrevoke", ret);
		return;
	}
	raw_update(&c->ring2, &c->iov2, REVOKE_SLOTS, true);
	row[arm] = raw_update(&c->ring2, NULL, REVOKE_SLOTS, arm == 2);
}

int bench_io(const struct bench_opts *o)
{
	static const uint32_t blocks[] = { 128 << 10, 1 << 20 };
	static const unsigned int depths[] = { 1, 8, 32 };
	struct io_ctx c = { .size = o->size ? o->size : 256ull << 20 };
	struct vfio_region_dma_range rg = { 0, c.size }, rg2 = { c.size, REVOKE_SIZE };
	struct bench_report *r = report_new("io", o);
	double v[BENCH_MAX_ROUNDS];
	struct bench_series s;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	uint64_t bar = 1ull << 20;
	int dfd2, ret;
	char name[64], what[96], x[32], sname[48];

	report_fact(r, "file", "page-cached temporary file, read whole per sample");
	report_fact(r, "p2pbuf", "READ_FIXED into a GPU BAR dma-buf slot (offset in the dma-buf)");
	report_fact(r, "raw", "io_uring READ_FIXED into the same pages, registered as a plain buffer");
	report_fact(r, "bounce", "pread into one reused malloc buffer (one block) + memcpy, same pages");
	report_fact(r, "order", "each round runs the case and its baselines, order rotating");
	report_fact(r, "pages", hugepage_mode_name());
	report_plot_axis(r, "GB/s, whole file per sample (median, min-max)", false);

	/* The file, written back and in the page cache. */
	c.fd = bench_data_file(c.size, NULL, 0);

	/* A BAR is a power of two: the file's size and the revoke case's dma-buf after it. */
	while (bar < c.size + REVOKE_SIZE)
		bar <<= 1;
	if ((ret = cli_gpu_create("0000:d0:00.0", bar, NULL, 1, &pci, &vdev)))
		die("device", ret);
	/* Populate in one call, as raw's MAP_POPULATE (faulting page by page scatters the pages). */
	if (madvise(p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0), c.size + REVOKE_SIZE,
		    MADV_POPULATE_WRITE))
		die("populate", errno);
	memset(p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0), 0, c.size + REVOKE_SIZE);
	c.dfd = p2p_vfio_device_get_dmabuf(vdev, 2, &rg, 1, O_RDWR | O_CLOEXEC);
	if (c.dfd < 0)
		die("DMA_BUF", c.dfd);
	if ((ret = p2p_uring_create(64, 1, &c.ur)) ||
	    (ret = p2p_uring_register_dmabuf(c.ur, 0, c.dfd, c.fd)))
		die("p2p_uring", ret);

	/*
	 * Raw and bounce write the very pages the dma-buf covers (the BAR's
	 * memfd, through the library's mapping of it): where pages sit decides
	 * as much as 30% of a copy's speed on this VM (a memfd allocated before
	 * or after the BAR flips the ratio), which must not count for or against
	 * p2pbuf.
	 */
	c.mem = p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0);
	if ((ret = io_uring_queue_init(64, &c.ring, 0)))
		die("io_uring", ret);
	c.iov = (struct iovec){ c.mem, c.size };
	if ((ret = io_uring_register_buffers(&c.ring, &c.iov, 1)))
		die("register", ret);
	c.bounce = malloc(1u << 20);
	if (!c.bounce)
		die("malloc", ENOMEM);

	/* Steady state. */
	for (size_t bi = 0; bi < sizeof(blocks) / sizeof(blocks[0]); bi++) {
		for (size_t di = 0; di < sizeof(depths) / sizeof(depths[0]); di++) {
			c.bs = blocks[bi];
			c.qd = depths[di];
			snprintf(sname, sizeof(sname), "%u KiB blocks, depth %u", c.bs >> 10, c.qd);
			bench_series_init(&s, sname, 3, 3);
			/* Watch p2pbuf/raw (time): >= 0.97 x raw speed is <= 1/0.97 x raw time. */
			s.npairs = 1;
			s.pair[0].max_ratio = 1 / 0.97;
			bench_interleave(r, &s, 5, steady_sample, &c);
			snprintf(what, sizeof(what), "%llu MiB in %u KiB blocks, depth %u",
				 (unsigned long long)(c.size >> 20), c.bs >> 10, c.qd);
			snprintf(name, sizeof(name), "p2pbuf_%uK_qd%u", c.bs >> 10, c.qd);
			double gp = (double)c.size / (report_series_median(r, &s, 1, name, what) * 1e6);
			snprintf(name, sizeof(name), "raw_%uK_qd%u", c.bs >> 10, c.qd);
			double gr = (double)c.size / (report_series_median(r, &s, 0, name, what) * 1e6);
			snprintf(name, sizeof(name), "bounce_%uK_qd%u", c.bs >> 10, c.qd);
			double gb = (double)c.size / (report_series_median(r, &s, 2, name, what) * 1e6);

			if (!o->json)
				printf("   %-28s p2pbuf %.2f GB/s, raw %.2f GB/s, bounce %.2f GB/s\n", "",
				       gp, gr, gb);
			/* Speed ratios: the baseline's time over p2pbuf's, per round. */
			snprintf(name, sizeof(name), "%uK_qd%u_p2pbuf/raw", c.bs >> 10, c.qd);
			report_series_ratio(r, &s, 0, 1, name);
			report_series_target(r, &s, 0, 1, name, 0.97, true, ">= 0.97 x raw");
			snprintf(name, sizeof(name), "%uK_qd%u_p2pbuf/bounce", c.bs >> 10, c.qd);
			report_series_ratio(r, &s, 2, 1, name);
			snprintf(x, sizeof(x), "%uK qd%u", c.bs >> 10, c.qd);
			report_series_plot(r, &s, 1, x, "p2pbuf dma-buf slot", (double)c.size);
			report_series_plot(r, &s, 0, x, "raw READ_FIXED", (double)c.size);
			report_series_plot(r, &s, 2, x, "bounce pread + memcpy", (double)c.size);
		}
	}

	/*
	 * The first transfer after registration: register (p2pbuf maps and pins
	 * the slot; raw pins its buffer), then read the whole file once, 1 MiB
	 * blocks at depth 8.  Both are unregistered before each round.
	 */
	bench_series_init(&s, "first transfer after registration", 2, 6);
	s.npairs = 2;
	s.pair[0] = (struct bench_pair){ .num = 3, .den = 1 };
	s.pair[1] = (struct bench_pair){ .num = 5, .den = 4 };
	bench_interleave(r, &s, 5, first_sample, &c);
	snprintf(what, sizeof(what), "register %llu MiB (map + pin)",
		 (unsigned long long)(c.size >> 20));
	report_series_median(r, &s, 2, "first_p2pbuf_register", what);
	report_series_median(r, &s, 0, "first_raw_register", what);
	snprintf(what, sizeof(what), "first read after it, 1 MiB blocks, depth 8");
	report_series_median(r, &s, 3, "first_p2pbuf_read", what);
	report_series_median(r, &s, 1, "first_raw_read", what);
	report_series_ratio(r, &s, 1, 3, "first_read_p2pbuf/raw");
	report_series_ratio(r, &s, 4, 5, "first_reg+read_p2pbuf/raw");

	/* Per-op cost: 4 KiB at depth 1, cycling over 16 MiB of the page cache. */
	c.span = MIN(c.size, 16ull << 20);
	c.nops = 16384;
	bench_series_init(&s, "4 KiB ops, depth 1", 2, 2);
	s.pair[0].max_ratio = 1; /* p2pbuf <= raw + 50 ns per op */
	s.pair[0].slack_ns = 50.0 * c.nops;
	bench_interleave(r, &s, 9, op_sample, &c);
	snprintf(what, sizeof(what), "%u reads of 4 KiB, depth 1", c.nops);
	if (!o->json)
		printf("   %-28s p2pbuf %.0f ns/op, raw %.0f ns/op\n", "",
		       median_ns(s.ns[1], s.rounds) / c.nops, median_ns(s.ns[0], s.rounds) / c.nops);
	report_series_median(r, &s, 1, "op4k_p2pbuf", what);
	report_series_median(r, &s, 0, "op4k_raw", what);
	for (unsigned int i = 0; i < s.rounds; i++)
		v[i] = ((double)s.ns[1][i] - (double)s.ns[0][i]) / c.nops;
	report_target_values(r, "op4k_p2pbuf-raw_ns", v, s.rounds, 50, false,
			     "<= 50 ns over raw");

	/*
	 * Revoke: one 1 MiB dma-buf registered in 1024 slots (all mapped by
	 * their registration), revoked; vs the raw ring's 1024 buffers over the
	 * same bytes, unregistered with 1024 single updates, and with one.
	 */
	dfd2 = p2p_vfio_device_get_dmabuf(vdev, 2, &rg2, 1, O_RDWR | O_CLOEXEC);
	if (dfd2 < 0 || (ret = p2p_dmabuf_get(dfd2, &c.buf2)))
		die("DMA_BUF", dfd2 < 0 ? dfd2 : ret);
	if ((ret = p2p_uring_create(64, REVOKE_SLOTS, &c.ur2)))
		die("p2p_uring", ret);
	for (unsigned int i = 0; i < REVOKE_SLOTS; i++)
		if ((ret = p2p_uring_register_dmabuf(c.ur2, i, dfd2, c.fd)))
			die("register", ret);
	if ((ret = io_uring_queue_init(8, &c.ring2, 0)) ||
	    (ret = io_uring_register_buffers_sparse(&c.ring2, REVOKE_SLOTS)))
		die("io_uring", ret);
	c.iov2 = (struct iovec){ c.mem + c.size, REVOKE_SIZE };
	snprintf(sname, sizeof(sname), "revoke of %u slots", REVOKE_SLOTS);
	bench_series_init(&s, sname, 3, 3);
	bench_interleave(r, &s, 9, revoke_sample, &c);
	snprintf(what, sizeof(what), "%u slots of one %llu MiB dma-buf", REVOKE_SLOTS,
		 (unsigned long long)(REVOKE_SIZE >> 20));
	report_series_median(r, &s, 1, "revoke1024_p2pbuf", what);
	for (unsigned int i = 0; i < s.rounds; i++)
		v[i] = (double)s.ns[1][i] / 1e6;
	report_target_values(r, "revoke1024_p2pbuf_ms", v, s.rounds, 3.0, false, "<= 3 ms");
	snprintf(what, sizeof(what), "raw: %u buffers, one update each", REVOKE_SLOTS);
	report_series_median(r, &s, 0, "unreg1024_raw_single", what);
	snprintf(what, sizeof(what), "raw: %u buffers, one update of all", REVOKE_SLOTS);
	report_series_median(r, &s, 2, "unreg1024_raw_batched", what);
	report_series_ratio(r, &s, 1, 0, "revoke1024_p2pbuf/raw_single");
	report_series_ratio(r, &s, 1, 2, "revoke1024_p2pbuf/raw_batched");

	io_uring_queue_exit(&c.ring2);
	p2p_uring_destroy(c.ur2);
	p2p_dmabuf_put(c.buf2);
	p2p_close(dfd2);
	io_uring_queue_exit(&c.ring);
	free(c.bounce);
	p2p_uring_destroy(c.ur);
	p2p_close(c.dfd);
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
	close(c.fd);
	return report_finish(r);
}
