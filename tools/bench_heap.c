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
 * Rounds go on until the spread settles (bench_interleave()).
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

static uint64_t heap_prefault_once(struct p2p_dma_heap *heap, uint64_t size);

/* The heap series: figure 3 heap populated on all cores (d), 0 raw MAP_POPULATE (b), 1 the heap (a), 2 raw page by page (c). */
struct heap_ctx {
	struct p2p_dma_heap *heap;
	uint64_t size;
	int fd, rawfd; /* the populated section: a heap buffer and a raw memfd */
};

static void fresh_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct heap_ctx *h = c;

	if (arm == 3)
		row[3] = heap_prefault_once(h->heap, h->size);
	else
		row[arm] = arm == 1 ? heap_once(h->heap, h->size) : raw_once(h->size, arm == 0);
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
static void populated_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct heap_ctx *h = c;
	uint64_t t0;
	uint8_t *p;

	if (arm != 1) {
		row[arm] = raw_map_touch_ns(h->rawfd, h->size, arm == 0);
		return;
	}
	t0 = now_ns();
	p = heap_map_touch(h->fd, h->size);
	row[1] = now_ns() - t0;
	p2p_munmap(p, h->size);
}

static void populated_init(struct heap_ctx *h)
{
	uint8_t *p;

	h->fd = p2p_dma_heap_alloc(h->heap, h->size, O_RDWR | O_CLOEXEC, 0);
	h->rawfd = raw_memfd(h->size);
	if (h->fd < 0)
		die("heap alloc", h->fd);
	p = heap_map_touch(h->fd, h->size);
	p2p_munmap(p, h->size);
	p = raw_mmap(h->rawfd, h->size, true);
	touch_pages(p, h->size);
	munmap(p, h->size);
}

/**
 * bench_heap() - p2pbuf bench heap: system heap alloc + mmap vs raw memfd
 * @o: options; size 512 MiB and at least 7 interleaved rounds by default
 *
 * Return: the exit status (report_finish()).
 */
int bench_heap(const struct bench_opts *o)
{
	struct heap_ctx h = { .size = o->size ? o->size : 512ull << 20 };
	struct bench_series s;
	struct bench_report *r;
	char txt[96], x[64];
	int ret;

	ret = p2p_dma_heap_open("system", &h.heap);
	if (ret)
		die("heap open", ret);
	r = report_new("heap", o);
	snprintf(txt, sizeof(txt), "%llu MiB", (unsigned long long)(h.size >> 20));
	report_fact(r, "size", txt);
	report_fact(r, "pages", hugepage_mode_name());
	snprintf(x, sizeof(x), "fresh, %llu MiB", (unsigned long long)(h.size >> 20));
	snprintf(txt, sizeof(txt),
		 "%llu x 1 MiB, %llu x 64 KiB, %llu x 4 KiB (importer SG entries)",
		 (unsigned long long)(h.size >> 20), (unsigned long long)((h.size >> 16) & 15),
		 (unsigned long long)((h.size >> 12) & 15));
	report_fact(r, "chunks", txt);
	report_plot_axis(r, "ms per alloc/map + touch (median, min-max)", false);

	/*
	 * Interleaved, in a rotating order so that no path always follows the
	 * same one; the warm-up round takes the first allocation after memory
	 * went back to the host, which is slow.
	 */
	if (!o->json)
		printf("   -- fresh memory (page allocation dominates every path)\n");
	bench_series_init(&s, "fresh", 4, 4);
	s.npairs = 2;
	s.pair[0].max_ratio = 1.1; /* heap/raw */
	s.pair[1] = (struct bench_pair){ .num = 3, .den = 0, .max_ratio = 0.75 };
	bench_interleave(r, &s, 7, fresh_sample, &h);
	report_series_median(r, &s, 1, "a_heap", "DMA_HEAP_IOCTL_ALLOC + mmap (one run) + touch");
	report_series_median(r, &s, 0, "b_raw_populate", "raw memfd MAP_POPULATE + touch");
	report_series_median(r, &s, 2, "c_raw_page_by_page", "raw memfd, touched page by page");
	report_series_ratio(r, &s, 1, 0, "heap/raw");
	report_series_ratio(r, &s, 2, 1, "page_by_page/heap");
	report_series_target(r, &s, 1, 0, "heap/raw", 1.1, false, "heap/raw <= 1.1");
	report_series_plot(r, &s, 1, x, "p2pbuf heap alloc + mmap", 0);
	report_series_plot(r, &s, 0, x, "raw MAP_POPULATE", 0);
	report_series_plot(r, &s, 2, x, "raw page by page", 0);
	snprintf(txt, sizeof(txt), "d_heap_populate_%ut", bench_online_cores());
	report_series_median(r, &s, 3, txt, "ALLOC + p2p_dmabuf_populate (all cores) + mmap + touch");
	report_series_ratio(r, &s, 3, 0, "heap_populated_all_cores/raw");
	report_series_target(r, &s, 3, 0, "heap_populated_all_cores/raw", 0.75, false,
			     "populated on all cores: <= 0.75 x single-thread MAP_POPULATE");
	report_series_plot(r, &s, 3, x, "p2pbuf heap populated on all cores", 0);

	if (!o->json)
		printf("   -- pages already allocated (an importer's mmap; informational)\n");
	populated_init(&h);
	bench_series_init(&s, "populated", 3, 3);
	s.npairs = 1;
	bench_interleave(r, &s, 7, populated_sample, &h);
	close(h.rawfd);
	p2p_close(h.fd);
	report_series_median(r, &s, 1, "a_heap_populated", "heap dma-buf mmap + touch");
	report_series_median(r, &s, 0, "b_raw_populate_populated", "raw MAP_POPULATE + touch");
	report_series_median(r, &s, 2, "c_raw_page_by_page_populated",
			     "raw, write-faulted page by page");
	report_series_ratio(r, &s, 1, 0, "heap/raw_populated");
	report_series_ratio(r, &s, 2, 1, "page_by_page/heap_populated");
	snprintf(x, sizeof(x), "populated, %llu MiB", (unsigned long long)(h.size >> 20));
	report_series_plot(r, &s, 1, x, "p2pbuf heap alloc + mmap", 0);
	report_series_plot(r, &s, 0, x, "raw MAP_POPULATE", 0);
	report_series_plot(r, &s, 2, x, "raw page by page", 0);

	p2p_dma_heap_close(h.heap);
	return report_finish(r);
}
