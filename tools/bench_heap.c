// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench heap: the system heap mmap speedup (kernel-semantics 6.2,
 * Barry Song's benchmark in 8.4), measured against raw memfd baselines in
 * the same run, interleaved, fresh memory every iteration.
 *
 *   a  DMA_HEAP_IOCTL_ALLOC + mmap of the dma-buf (populated in one run by
 *      the core) + touch one byte per page
 *   b  raw memfd, MAP_POPULATE (or MADV_POPULATE_READ after MADV_HUGEPAGE
 *      when shmem THP is on, as p2pbuf does) + touch
 *   c  raw memfd touched page by page (one fault per page, the "old" mmap)
 *
 *   d  DMA_HEAP_IOCTL_ALLOC + p2p_dmabuf_populate() on all cores + mmap +
 *      touch: the parallel first touch
 *
 * Targets a/b <= 1.1, d/b <= 0.75.  A second, informational section maps a heap buffer
 * whose pages already exist (an importer's view, and the seed's own
 * measurement: only page tables to build).
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

#define PAGE BENCH_PAGE

#define die bench_die

/* (b) and (c) on fresh memory: memfd + mmap + touch; teardown untimed. */
static uint64_t raw_once(uint64_t size, bool populate)
{
	uint64_t t0, t1;
	uint8_t *p;
	int fd;

	t0 = now_ns();
	fd = raw_memfd(size);
	p = raw_mmap(fd, size, populate);
	touch_pages(p, size);
	t1 = now_ns();
	munmap(p, size);
	close(fd);
	return t1 - t0;
}

/* Map all of the heap buffer behind @fd and touch it; returns the mapping. */
static uint8_t *heap_map_touch(int fd, uint64_t size)
{
	struct p2p_dmabuf *buf;
	void *va;
	int ret;

	ret = p2p_dmabuf_get(fd, &buf);
	if (ret)
		die("dmabuf_get", ret);
	ret = p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va);
	p2p_dmabuf_put(buf); /* the mapping holds its own reference */
	if (ret)
		die("dma-buf mmap", ret);
	touch_pages(va, size);
	return va;
}

/* (a) on fresh memory: DMA_HEAP_IOCTL_ALLOC + mmap + touch; teardown untimed. */
static uint64_t heap_once(struct p2p_dma_heap *heap, uint64_t size)
{
	struct dma_heap_allocation_data d = { .len = size, .fd_flags = O_RDWR | O_CLOEXEC };
	uint64_t t0, t1;
	uint8_t *va;
	long ret;

	t0 = now_ns();
	ret = p2p_dma_heap_ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d);
	if (ret)
		die("DMA_HEAP_IOCTL_ALLOC", (int)ret);
	va = heap_map_touch((int)d.fd, size);
	t1 = now_ns();
	p2p_munmap(va, size);
	p2p_close((int)d.fd);
	return t1 - t0;
}

/*
 * (d) on fresh memory: DMA_HEAP_IOCTL_ALLOC, p2p_dmabuf_populate() on all
 * cores, mmap + touch; teardown untimed.
 */
static uint64_t heap_prefault_once(struct p2p_dma_heap *heap, uint64_t size)
{
	struct dma_heap_allocation_data d = { .len = size, .fd_flags = O_RDWR | O_CLOEXEC };
	struct p2p_dmabuf *buf;
	uint64_t t0, t1;
	uint8_t *va;
	long ret;

	t0 = now_ns();
	ret = p2p_dma_heap_ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d);
	if (ret)
		die("DMA_HEAP_IOCTL_ALLOC", (int)ret);
	ret = p2p_dmabuf_get((int)d.fd, &buf);
	if (ret)
		die("dmabuf_get", (int)ret);
	ret = p2p_dmabuf_populate(buf, 0);
	p2p_dmabuf_put(buf);
	if (ret)
		die("dmabuf populate", (int)ret);
	va = heap_map_touch((int)d.fd, size);
	t1 = now_ns();
	p2p_munmap(va, size);
	p2p_close((int)d.fd);
	return t1 - t0;
}

/*
 * Memory that already exists: map + touch a heap buffer populated once
 * (a), vs a raw populated memfd mapped with MAP_POPULATE (b) or
 * write-faulted page by page (c).
 */
static void populated(struct p2p_dma_heap *heap, uint64_t size, unsigned int n, uint64_t *a,
		      uint64_t *b, uint64_t *c)
{
	int fd = p2p_dma_heap_alloc(heap, size, O_RDWR | O_CLOEXEC, 0);
	int rawfd = raw_memfd(size);
	uint8_t *p;

	if (fd < 0)
		die("heap alloc", fd);
	p = heap_map_touch(fd, size);
	p2p_munmap(p, size);
	p = raw_mmap(rawfd, size, true);
	touch_pages(p, size);
	munmap(p, size);
	for (unsigned int i = 0; i < n + 1; i++) { /* the first round warms up */
		uint64_t t0 = now_ns(), t1;

		p = heap_map_touch(fd, size);
		t1 = now_ns();
		p2p_munmap(p, size);
		if (i)
			a[i - 1] = t1 - t0;
		for (int populate = 1; populate >= 0; populate--) {
			uint64_t t = raw_map_touch_ns(rawfd, size, populate);

			if (i)
				(populate ? b : c)[i - 1] = t;
		}
	}
	close(rawfd);
	p2p_close(fd);
}

/**
 * bench_heap() - p2pbuf bench heap: system heap alloc + mmap vs raw memfd
 * @o: options; size 512 MiB and 7 iterations by default
 *
 * Return: the exit status (1 with --strict when a target is missed).
 */
int bench_heap(const struct bench_opts *o)
{
	uint64_t size = o->size ? o->size : 512ull << 20;
	unsigned int n = o->iterations ? o->iterations : 7;
	uint64_t *a = calloc(n, 8), *b = calloc(n, 8), *c = calloc(n, 8), *d = calloc(n, 8);
	struct p2p_dma_heap *heap;
	struct bench_report *r;
	char txt[96];
	double ma, mb, mc, md;
	int ret;

	if (!a || !b || !c || !d)
		die("calloc", ENOMEM);
	ret = p2p_dma_heap_open("system", &heap);
	if (ret)
		die("heap open", ret);
	r = report_new("heap", o);
	snprintf(txt, sizeof(txt), "%llu MiB", (unsigned long long)(size >> 20));
	report_fact(r, "size", txt);
	report_fact(r, "pages", hugepage_mode_name());
	snprintf(txt, sizeof(txt),
		 "%llu x 1 MiB, %llu x 64 KiB, %llu x 4 KiB (importer SG entries)",
		 (unsigned long long)(size >> 20), (unsigned long long)((size >> 16) & 15),
		 (unsigned long long)((size >> 12) & 15));
	report_fact(r, "chunks", txt);

	/* Warm up: the first allocation after memory went back to the host is slow. */
	heap_once(heap, size);
	raw_once(size, true);
	raw_once(size, false);
	heap_prefault_once(heap, size);
	/* Interleaved, in a rotating order so that no path always follows the same one. */
	for (unsigned int i = 0; i < n; i++) {
		for (unsigned int k = 0; k < 4; k++) {
			switch ((i + k) % 4) {
			case 0: a[i] = heap_once(heap, size); break;
			case 1: b[i] = raw_once(size, true); break;
			case 2: c[i] = raw_once(size, false); break;
			default: d[i] = heap_prefault_once(heap, size); break;
			}
		}
	}
	if (!o->json)
		printf("   -- fresh memory (page allocation dominates every path)\n");
	ma = report_median(r, "a_heap", "DMA_HEAP_IOCTL_ALLOC + mmap (one run) + touch", a, n);
	mb = report_median(r, "b_raw_populate", "raw memfd MAP_POPULATE + touch", b, n);
	mc = report_median(r, "c_raw_page_by_page", "raw memfd, touched page by page", c, n);
	report_ratio(r, "heap/raw", ma / mb);
	report_ratio(r, "page_by_page/heap", mc / ma);
	report_target(r, "heap/raw", ma / mb, 1.1, false, "heap/raw <= 1.1");
	snprintf(txt, sizeof(txt), "d_heap_populate_%ut", bench_online_cores());
	md = report_median(r, txt, "ALLOC + p2p_dmabuf_populate (all cores) + mmap + touch", d, n);
	report_ratio(r, "heap_populated_all_cores/raw", md / mb);
	report_target(r, "heap_populated_all_cores/raw", md / mb, 0.75, false,
		      "populated on all cores: <= 0.75 x single-thread MAP_POPULATE");

	populated(heap, size, n, a, b, c);
	if (!o->json)
		printf("   -- pages already allocated (an importer's mmap; informational)\n");
	ma = report_median(r, "a_heap_populated", "heap dma-buf mmap + touch", a, n);
	mb = report_median(r, "b_raw_populate_populated", "raw MAP_POPULATE + touch", b, n);
	mc = report_median(r, "c_raw_page_by_page_populated", "raw, write-faulted page by page",
			   c, n);
	report_ratio(r, "heap/raw_populated", ma / mb);
	report_ratio(r, "page_by_page/heap_populated", mc / ma);

	p2p_dma_heap_close(heap);
	free(a);
	free(b);
	free(c);
	free(d);
	return report_finish(r);
}
