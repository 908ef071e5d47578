// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench io: a page-cached file read into a dma-buf through the
 * io_uring dma-buf path, against raw io_uring READ_FIXED into a plain memfd
 * and against pread into a malloc bounce buffer plus memcpy (one bounce
 * block per request in flight), with 128 KiB and 1 MiB blocks at queue
 * depth 1, 8 and 32.
 * Targets: >= 0.95x raw, >= 1.3x the bounce path.
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

/*
 * The bounce path at depth @qd: a bounce pool of @qd blocks, as a pipelined
 * reader needs one buffer per request in flight; each block is pread into
 * the next buffer of the pool and copied to its destination.
 */
static uint64_t read_bounce(int fd, uint8_t *mem, uint8_t *bounce, uint64_t size, uint32_t bs,
			    unsigned int qd)
{
	uint64_t t0 = now_ns();
	unsigned int i = 0;

	for (uint64_t off = 0; off < size; off += bs, i = (i + 1) % qd) {
		uint8_t *b = bounce + (size_t)i * bs;

		if (pread(fd, b, bs, (off_t)off) != (ssize_t)bs)
			die("pread", errno);
		memcpy(mem + off, b, bs);
	}
	return now_ns() - t0;
}

int bench_io(const struct bench_opts *o)
{
	static const uint32_t blocks[] = { 128 << 10, 1 << 20 };
	static const unsigned int depths[] = { 1, 8, 32 };
	uint64_t size = o->size ? o->size : 256ull << 20;
	unsigned int n = o->iterations ? o->iterations : 5;
	uint64_t *tp = calloc(n, 8), *tr = calloc(n, 8), *tb = calloc(n, 8);
	struct vfio_region_dma_range rg = { 0, size };
	struct bench_report *r = report_new("io", o);
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_uring *ur;
	struct io_uring ring;
	struct iovec iov;
	uint8_t *mem, *bounce;
	int fd, dfd, mfd, ret;

	report_fact(r, "file", "page-cached temporary file, read whole per sample");
	report_fact(r, "p2pbuf", "READ_FIXED into a GPU BAR dma-buf slot (offset in the dma-buf)");
	report_fact(r, "raw", "io_uring READ_FIXED into a registered plain memfd mapping");
	report_fact(r, "bounce", "pread into a malloc bounce pool (depth x block) + memcpy into the memfd");

	/* The file, written back and in the page cache. */
	fd = bench_data_file(size, NULL, 0);

	if ((ret = cli_gpu_create("0000:d0:00.0", size, NULL, 1, &pci, &vdev)))
		die("device", ret);
	memset(p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0), 0, size); /* populate, as raw */
	dfd = p2p_vfio_device_get_dmabuf(vdev, 2, &rg, 1, O_RDWR | O_CLOEXEC);
	if (dfd < 0)
		die("DMA_BUF", dfd);
	if ((ret = p2p_uring_create(64, 1, &ur)) || (ret = p2p_uring_register_dmabuf(ur, 0, dfd, fd)))
		die("p2p_uring", ret);

	mfd = memfd_create("bench-io-raw", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, (off_t)size))
		die("memfd", errno);
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, mfd, 0);
	if (mem == MAP_FAILED)
		die("mmap", errno);
	memset(mem, 0, size);
	if ((ret = io_uring_queue_init(64, &ring, 0)))
		die("io_uring", ret);
	iov = (struct iovec){ mem, size };
	if ((ret = io_uring_register_buffers(&ring, &iov, 1)))
		die("register", ret);
	bounce = malloc(32u << 20); /* depth 32 x 1 MiB */
	if (!bounce)
		die("malloc", ENOMEM);

	for (size_t bi = 0; bi < sizeof(blocks) / sizeof(blocks[0]); bi++) {
		for (size_t di = 0; di < sizeof(depths) / sizeof(depths[0]); di++) {
			uint32_t bs = blocks[bi];
			unsigned int qd = depths[di];
			double gp, gr, gb;
			char name[64], what[64];

			for (unsigned int it = 0; it < n + 1; it++) {
				uint64_t a = 0, b = 0, c = 0;

				/* Rotate which path goes first: drift favours none. */
				for (unsigned int j = 0; j < 3; j++) {
					switch ((it + j) % 3) {
					case 0: a = read_p2p(ur, fd, size, bs, qd); break;
					case 1: b = raw_uring_read(&ring, fd, mem, size, bs, qd, true); break;
					default: c = read_bounce(fd, mem, bounce, size, bs, qd); break;
					}
				}

				if (it) { /* the first round warms up */
					tp[it - 1] = a;
					tr[it - 1] = b;
					tb[it - 1] = c;
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
			report_ratio(r, name, gp / gr);
			report_target(r, name, gp / gr, 0.95, true, ">= 0.95 x raw");
			snprintf(name, sizeof(name), "%uK_qd%u_p2pbuf/bounce", bs >> 10, qd);
			report_ratio(r, name, gp / gb);
			report_target(r, name, gp / gb, 1.3, true, ">= 1.3 x bounce");
		}
	}
	io_uring_queue_exit(&ring);
	munmap(mem, size);
	close(mfd);
	free(bounce);
	p2p_uring_destroy(ur);
	p2p_close(dfd);
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
	close(fd);
	free(tp);
	free(tr);
	free(tb);
	return report_finish(r);
}
