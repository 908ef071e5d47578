// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench io: the io_uring dma-buf path against its raw baselines,
 * every case interleaved with its baselines round by round (the order
 * rotates), medians with their spread (min-max), per-round ratios.
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

/* Sort @v (n values) and return min, median, max through the pointers. */
static double spread(double *v, unsigned int n, double *lo, double *hi)
{
	for (unsigned int i = 1; i < n; i++)
		for (unsigned int j = i; j && v[j - 1] > v[j]; j--) {
			double x = v[j];

			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	*lo = v[0];
	*hi = v[n - 1];
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A ratio or difference from per-round values: its median, printed with its spread. */
static double report_rounds(struct bench_report *r, const char *name, double *v, unsigned int n,
			    const char *unit)
{
	double lo, hi, med = spread(v, n, &lo, &hi);

	report_ratio(r, name, med);
	if (!r_json(r))
		printf("   %-28s rounds: median %.3f%s, min %.3f, max %.3f (n=%u)\n", "", med, unit,
		       lo, hi, n);
	return med;
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

int bench_io(const struct bench_opts *o)
{
	static const uint32_t blocks[] = { 128 << 10, 1 << 20 };
	static const unsigned int depths[] = { 1, 8, 32 };
	uint64_t size = o->size ? o->size : 256ull << 20;
	unsigned int n = o->iterations ? o->iterations : 5;
	/* The short cases are noisier: more rounds. */
	unsigned int nn = n < 9 ? 9 : n;
	uint64_t *tp = calloc(nn, 8), *tr = calloc(nn, 8), *tb = calloc(nn, 8);
	uint64_t *tq = calloc(nn, 8), *ts = calloc(nn, 8);
	double *v = calloc(nn, sizeof(double)), *w = calloc(nn, sizeof(double));
	struct vfio_region_dma_range rg = { 0, size }, rg2 = { size, REVOKE_SIZE };
	struct bench_report *r = report_new("io", o);
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_uring *ur, *ur2;
	struct p2p_dmabuf *buf2;
	struct io_uring ring, ring2;
	struct iovec iov, iov2;
	uint8_t *mem, *bounce;
	unsigned int nops;
	uint64_t span, bar = 1ull << 20;
	int fd, dfd, dfd2, ret;
	char name[64], what[96];

	if (!tp || !tr || !tb || !tq || !ts || !v || !w)
		die("calloc", ENOMEM);
	report_fact(r, "file", "page-cached temporary file, read whole per sample");
	report_fact(r, "p2pbuf", "READ_FIXED into a GPU BAR dma-buf slot (offset in the dma-buf)");
	report_fact(r, "raw", "io_uring READ_FIXED into the same pages, registered as a plain buffer");
	report_fact(r, "bounce", "pread into one reused malloc buffer (one block) + memcpy, same pages");
	report_fact(r, "order", "each round runs the case and its baselines, order rotating");
	report_fact(r, "pages", hugepage_mode_name());

	/* The file, written back and in the page cache. */
	fd = bench_data_file(size, NULL, 0);

	/* A BAR is a power of two: the file's size and the revoke case's dma-buf after it. */
	while (bar < size + REVOKE_SIZE)
		bar <<= 1;
	if ((ret = cli_gpu_create("0000:d0:00.0", bar, NULL, 1, &pci, &vdev)))
		die("device", ret);
	/* Populate in one call, as raw's MAP_POPULATE (faulting page by page scatters the pages). */
	if (madvise(p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0), size + REVOKE_SIZE,
		    MADV_POPULATE_WRITE))
		die("populate", errno);
	memset(p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0), 0, size + REVOKE_SIZE);
	dfd = p2p_vfio_device_get_dmabuf(vdev, 2, &rg, 1, O_RDWR | O_CLOEXEC);
	if (dfd < 0)
		die("DMA_BUF", dfd);
	if ((ret = p2p_uring_create(64, 1, &ur)) || (ret = p2p_uring_register_dmabuf(ur, 0, dfd, fd)))
		die("p2p_uring", ret);

	/*
	 * Raw and bounce write the very pages the dma-buf covers (the BAR's
	 * memfd, through the library's mapping of it): where pages sit decides
	 * as much as 30% of a copy's speed on this VM (a memfd allocated before
	 * or after the BAR flips the ratio), which must not count for or against
	 * p2pbuf.
	 */
	mem = p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0);
	if ((ret = io_uring_queue_init(64, &ring, 0)))
		die("io_uring", ret);
	iov = (struct iovec){ mem, size };
	if ((ret = io_uring_register_buffers(&ring, &iov, 1)))
		die("register", ret);
	bounce = malloc(1u << 20);
	if (!bounce)
		die("malloc", ENOMEM);

	/* Steady state. */
	for (size_t bi = 0; bi < sizeof(blocks) / sizeof(blocks[0]); bi++) {
		for (size_t di = 0; di < sizeof(depths) / sizeof(depths[0]); di++) {
			uint32_t bs = blocks[bi];
			unsigned int qd = depths[di];
			double gp, gr, gb;

			for (unsigned int it = 0; it < n + 1; it++) {
				uint64_t a = 0, b = 0, c = 0;

				/* Rotate which path goes first: drift favours none. */
				for (unsigned int j = 0; j < 3; j++) {
					switch ((it + j) % 3) {
					case 0: a = read_p2p(ur, fd, size, bs, qd); break;
					case 1: b = raw_uring_read(&ring, fd, mem, size, bs, qd, true); break;
					default: c = read_bounce(fd, mem, bounce, size, bs); break;
					}
				}
				if (it) { /* the first round warms up */
					tp[it - 1] = a;
					tr[it - 1] = b;
					tb[it - 1] = c;
					v[it - 1] = (double)b / (double)a;
					w[it - 1] = (double)c / (double)a;
				}
			}
			snprintf(what, sizeof(what), "%llu MiB in %u KiB blocks, depth %u",
				 (unsigned long long)(size >> 20), bs >> 10, qd);
			snprintf(name, sizeof(name), "p2pbuf_%uK_qd%u", bs >> 10, qd);
			gp = (double)size / (report_median(r, name, what, tp, n) * 1e6);
			snprintf(name, sizeof(name), "raw_%uK_qd%u", bs >> 10, qd);
			gr = (double)size / (report_median(r, name, what, tr, n) * 1e6);
			snprintf(name, sizeof(name), "bounce_%uK_qd%u", bs >> 10, qd);
			gb = (double)size / (report_median(r, name, what, tb, n) * 1e6);
			if (!o->json)
				printf("   %-28s p2pbuf %.2f GB/s, raw %.2f GB/s, bounce %.2f GB/s\n", "",
				       gp, gr, gb);
			snprintf(name, sizeof(name), "%uK_qd%u_p2pbuf/raw", bs >> 10, qd);
			report_target(r, name, report_rounds(r, name, v, n, "x"), 0.97, true,
				      ">= 0.97 x raw");
			snprintf(name, sizeof(name), "%uK_qd%u_p2pbuf/bounce", bs >> 10, qd);
			report_rounds(r, name, w, n, "x");
		}
	}

	/*
	 * The first transfer after registration: register (p2pbuf maps and pins
	 * the slot; raw pins its buffer), then read the whole file once, 1 MiB
	 * blocks at depth 8.  Both are unregistered before each round.
	 */
	for (unsigned int it = 0; it < n + 1; it++) {
		uint64_t pr = 0, pf = 0, rr = 0, rf = 0, t0;

		for (unsigned int j = 0; j < 2; j++) {
			if ((it + j) % 2 == 0) {
				p2p_slot_empty(ur, 0, 1);
				t0 = now_ns();
				if ((ret = p2p_uring_register_dmabuf(ur, 0, dfd, fd)))
					die("register", ret);
				pr = now_ns() - t0;
				pf = read_p2p(ur, fd, size, 1 << 20, 8);
			} else {
				raw_update(&ring, NULL, 1, true);
				rr = raw_update(&ring, &iov, 1, true);
				rf = raw_uring_read(&ring, fd, mem, size, 1 << 20, 8, true);
			}
		}
		if (it) {
			tp[it - 1] = pr;
			tq[it - 1] = pf;
			tr[it - 1] = rr;
			ts[it - 1] = rf;
			v[it - 1] = (double)rf / (double)pf;
			w[it - 1] = (double)(rr + rf) / (double)(pr + pf);
		}
	}
	snprintf(what, sizeof(what), "register %llu MiB (map + pin)", (unsigned long long)(size >> 20));
	report_median(r, "first_p2pbuf_register", what, tp, n);
	report_median(r, "first_raw_register", what, tr, n);
	snprintf(what, sizeof(what), "first read after it, 1 MiB blocks, depth 8");
	report_median(r, "first_p2pbuf_read", what, tq, n);
	report_median(r, "first_raw_read", what, ts, n);
	report_rounds(r, "first_read_p2pbuf/raw", v, n, "x");
	report_rounds(r, "first_reg+read_p2pbuf/raw", w, n, "x");

	/* Per-op cost: 4 KiB at depth 1, cycling over 16 MiB of the page cache. */
	span = MIN(size, 16ull << 20);
	nops = 16384;
	for (unsigned int it = 0; it < nn + 1; it++) {
		double a = 0, b = 0;

		for (unsigned int j = 0; j < 2; j++) {
			if ((it + j) % 2 == 0)
				a = ops_p2p(ur, fd, span, nops);
			else
				b = ops_raw(&ring, fd, mem, span, nops);
		}
		if (it) {
			tp[it - 1] = (uint64_t)(a * nops);
			tr[it - 1] = (uint64_t)(b * nops);
			v[it - 1] = a - b;
		}
	}
	snprintf(what, sizeof(what), "%u reads of 4 KiB, depth 1", nops);
	if (!o->json)
		printf("   %-28s p2pbuf %.0f ns/op, raw %.0f ns/op\n", "",
		       median_ns(tp, nn) / nops, median_ns(tr, nn) / nops);
	report_median(r, "op4k_p2pbuf", what, tp, nn);
	report_median(r, "op4k_raw", what, tr, nn);
	report_target(r, "op4k_p2pbuf-raw_ns", report_rounds(r, "op4k_p2pbuf-raw_ns", v, nn, " ns"),
		      50, false, "<= 50 ns over raw");

	/*
	 * Revoke: one 1 MiB dma-buf registered in 1024 slots (all mapped by
	 * their registration), revoked; vs the raw ring's 1024 buffers over the
	 * same bytes, unregistered with 1024 single updates, and with one.
	 */
	dfd2 = p2p_vfio_device_get_dmabuf(vdev, 2, &rg2, 1, O_RDWR | O_CLOEXEC);
	if (dfd2 < 0 || (ret = p2p_dmabuf_get(dfd2, &buf2)))
		die("DMA_BUF", dfd2 < 0 ? dfd2 : ret);
	if ((ret = p2p_uring_create(64, REVOKE_SLOTS, &ur2)))
		die("p2p_uring", ret);
	for (unsigned int i = 0; i < REVOKE_SLOTS; i++)
		if ((ret = p2p_uring_register_dmabuf(ur2, i, dfd2, fd)))
			die("register", ret);
	if ((ret = io_uring_queue_init(8, &ring2, 0)) ||
	    (ret = io_uring_register_buffers_sparse(&ring2, REVOKE_SLOTS)))
		die("io_uring", ret);
	iov2 = (struct iovec){ mem + size, REVOKE_SIZE };
	for (unsigned int it = 0; it < nn + 1; it++) {
		uint64_t a = 0, b = 0, c = 0, t0;

		for (unsigned int j = 0; j < 3; j++) {
			switch ((it + j) % 3) {
			case 0:
				for (unsigned int i = 0; i < REVOKE_SLOTS; i++)
					if ((ret = p2p_uring_prefetch(ur2, i)))
						die("prefetch", ret);
				t0 = now_ns();
				if ((ret = p2p_dmabuf_revoke(buf2, P2P_DMABUF_TEMP_REVOKED)))
					die("revoke", ret);
				a = now_ns() - t0;
				if (p2p_uring_slot_mapped(ur2, 0) ||
				    p2p_uring_slot_mapped(ur2, REVOKE_SLOTS - 1))
					die("revoke left a slot mapped", EIO);
				if ((ret = p2p_dmabuf_unrevoke(buf2)))
					die("unrevoke", ret);
				break;
			case 1:
				raw_update(&ring2, &iov2, REVOKE_SLOTS, true);
				b = raw_update(&ring2, NULL, REVOKE_SLOTS, false);
				break;
			default:
				raw_update(&ring2, &iov2, REVOKE_SLOTS, true);
				c = raw_update(&ring2, NULL, REVOKE_SLOTS, true);
				break;
			}
		}
		if (it) {
			tp[it - 1] = a;
			tr[it - 1] = b;
			tb[it - 1] = c;
			v[it - 1] = (double)a / (double)b;
			w[it - 1] = (double)a / (double)c;
		}
	}
	snprintf(what, sizeof(what), "%u slots of one %llu MiB dma-buf", REVOKE_SLOTS,
		 (unsigned long long)(REVOKE_SIZE >> 20));
	report_target(r, "revoke1024_p2pbuf_ms",
		      report_median(r, "revoke1024_p2pbuf", what, tp, nn), 3.0, false,
		      "<= 3 ms");
	snprintf(what, sizeof(what), "raw: %u buffers, one update each", REVOKE_SLOTS);
	report_median(r, "unreg1024_raw_single", what, tr, nn);
	snprintf(what, sizeof(what), "raw: %u buffers, one update of all", REVOKE_SLOTS);
	report_median(r, "unreg1024_raw_batched", what, tb, nn);
	report_rounds(r, "revoke1024_p2pbuf/raw_single", v, nn, "x");
	report_rounds(r, "revoke1024_p2pbuf/raw_batched", w, nn, "x");

	io_uring_queue_exit(&ring2);
	p2p_uring_destroy(ur2);
	p2p_dmabuf_put(buf2);
	p2p_close(dfd2);
	io_uring_queue_exit(&ring);
	free(bounce);
	p2p_uring_destroy(ur);
	p2p_close(dfd);
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
	close(fd);
	free(tp);
	free(tr);
	free(tb);
	free(tq);
	free(ts);
	free(v);
	free(w);
	return report_finish(r);
}
