// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench: each benchmark measures p2pbuf and its raw baseline in the
 * same run, interleaved, and reports medians and ratios.
 *
 *   mmap    map + touch a dma-buf (a) vs raw memfd MAP_POPULATE (b) vs raw
 *           memfd touched page by page (c); target a/b <= 1.15
 *   revoke  revoke + un-revoke of a dma-buf with 1 and 64 attachments and a
 *           live CPU mapping vs raw MADV_DONTNEED; target <= 1.3x raw + 100 us
 *   p2p     BAR-to-BAR copies through the copy engine, 4 KiB to 64 MiB,
 *           single- and 8-range dma-bufs, vs memcpy between the same two
 *           mappings; target >= 0.9x memcpy at 2 MiB and above
 *   iova    IOVA translations per second with 10, 10 000 and 100 000
 *           mappings vs a bare binary search; target >= 20 M/s at 10 000
 *   io      (bench_io.c) file -> dma-buf through io_uring vs raw READ_FIXED
 *           and a bounce buffer; targets >= 0.95x raw, >= 1.3x bounce
 *   heap    (bench_heap.c) heap alloc + mmap + touch vs raw memfd
 *           MAP_POPULATE; target <= 1.1x raw
 *   storage (bench_storage.c) storage-device reads into a peer BAR vs into
 *           system memory; target >= 0.9x
 *   preload (bench_preload.c) the kernel-uAPI door as a program sees it:
 *           pass-through calls vs the same without the door, <= 1.05x;
 *           emulated ioctls vs the native p2p_* calls, <= 1.2x; BAR mmap +
 *           touch vs p2p_vfio_device_mmap, <= 1.05x
 *   vfio-user (bench_vfio_user.c) the door to other processes: region
 *           access vs a raw request/reply, <= 1.3x; BAR through its region
 *           fd vs a local memfd, >= 0.95x; DMA into client memory vs local,
 *           >= 0.9x; revoke across 1 and 16 processes vs local + round
 *           trips, <= 1.5x
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ce_driver.h"
#include "cli.h"

#define PAGE BENCH_PAGE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define die bench_die

/* A raw memfd mapping, with the same huge page policy p2pbuf uses. */
static uint8_t *raw_map(uint64_t size, bool populate, int *fdp)
{
	*fdp = raw_memfd(size);
	return raw_mmap(*fdp, size, populate);
}

static void raw_unmap(uint8_t *p, uint64_t size, int fd)
{
	munmap(p, size);
	close(fd);
}

/* (a): export the whole BAR, map it through p2pbuf, touch it. */
static uint64_t mmap_p2pbuf_once(uint64_t size)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = size };
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dmabuf *buf;
	uint64_t t0, t1;
	void *va;
	int fd, ret;

	ret = cli_gpu_create("0000:b0:00.0", size, NULL, 1, &pci, &vdev);
	if (ret)
		die("device", ret);
	fd = p2p_vfio_device_get_dmabuf(vdev, 2, &r, 1, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("DMA_BUF", fd);
	ret = p2p_dmabuf_get(fd, &buf);
	if (ret)
		die("dmabuf_get", ret);
	t0 = now_ns();
	ret = p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va);
	if (ret)
		die("dmabuf mmap", ret);
	touch_pages(va, size);
	t1 = now_ns();
	p2p_munmap(va, size);
	p2p_dmabuf_put(buf);
	p2p_close(fd);
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
	return t1 - t0;
}

/* (b) MAP_POPULATE-style and (c) page by page, on a fresh memfd. */
static uint64_t mmap_raw_once(uint64_t size, bool populate)
{
	uint64_t t0, t1;
	uint8_t *p;
	int fd;

	t0 = now_ns();
	p = raw_map(size, populate, &fd);
	touch_pages(p, size);
	t1 = now_ns();
	raw_unmap(p, size, fd);
	return t1 - t0;
}

/* Importer case: map + touch memory that is already populated. */
static void mmap_populated(uint64_t size, unsigned int n, uint64_t *a, uint64_t *b, uint64_t *c)
{
	struct vfio_region_dma_range rg = { .offset = 0, .length = size };
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dmabuf *buf = NULL;
	uint8_t *raw;
	int fd, rawfd, ret;

	ret = cli_gpu_create("0000:b2:00.0", size, NULL, 1, &pci, &vdev);
	if (ret)
		die("device", ret);
	fd = p2p_vfio_device_get_dmabuf(vdev, 2, &rg, 1, O_RDWR | O_CLOEXEC);
	if (fd < 0 || (ret = p2p_dmabuf_get(fd, &buf)))
		die("DMA_BUF", fd < 0 ? fd : ret);
	memset(p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0), 1, size);
	raw = raw_map(size, true, &rawfd);
	munmap(raw, size);
	for (unsigned int i = 0; i < n + 1; i++) {
		uint64_t t0 = now_ns(), t1;
		void *va;

		ret = p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va);
		if (ret)
			die("dmabuf mmap", ret);
		touch_pages(va, size);
		t1 = now_ns();
		p2p_munmap(va, size);
		if (i)
			a[i - 1] = t1 - t0;

		for (int populate = 1; populate >= 0; populate--) {
			uint64_t t = raw_map_touch_ns(rawfd, size, populate);

			if (i)
				(populate ? b : c)[i - 1] = t;
		}
	}
	close(rawfd);
	p2p_dmabuf_put(buf);
	p2p_close(fd);
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
}

static int bench_mmap(const struct bench_opts *o)
{
	uint64_t size = o->size ? o->size : 512ull << 20;
	unsigned int n = o->iterations ? o->iterations : 7;
	uint64_t *a = calloc(n, 8), *b = calloc(n, 8), *c = calloc(n, 8);
	struct bench_report *r = report_new("mmap", o);
	char txt[64];
	double ma, mb, mc;

	snprintf(txt, sizeof(txt), "%llu MiB", (unsigned long long)(size >> 20));
	report_fact(r, "size", txt);
	report_fact(r, "pages", hugepage_mode_name());
	/* Warm up: the first allocation after memory went back to the host is slow. */
	mmap_raw_once(size, true);
	mmap_p2pbuf_once(size);
	for (unsigned int i = 0; i < n; i++) {
		a[i] = mmap_p2pbuf_once(size);
		b[i] = mmap_raw_once(size, true);
		c[i] = mmap_raw_once(size, false);
	}
	if (!o->json)
		printf("   -- fresh memory (page allocation dominates every path)\n");
	ma = report_median(r, "a_p2pbuf", "dma-buf mmap (populated in runs) + touch", a, n);
	mb = report_median(r, "b_raw_populate", "raw memfd MAP_POPULATE + touch", b, n);
	mc = report_median(r, "c_raw_page_by_page", "raw memfd, touched page by page", c, n);
	report_ratio(r, "a/b", ma / mb);
	report_ratio(r, "c/a", mc / ma);
	report_target(r, "a/b", ma / mb, 1.15, false, "a/b <= 1.15");

	/* The importer case: device memory already populated, only page tables to build. */
	mmap_populated(size, n, a, b, c);
	if (!o->json)
		printf("   -- memory already populated (an importer mapping device memory)\n");
	ma = report_median(r, "a_p2pbuf_populated", "dma-buf mmap + touch", a, n);
	mb = report_median(r, "b_raw_populate_populated", "raw MAP_POPULATE + touch", b, n);
	mc = report_median(r, "c_raw_page_by_page_populated", "raw, write-faulted page by page",
			   c, n);
	report_ratio(r, "a/b_populated", ma / mb);
	report_ratio(r, "c/a_populated", mc / ma);
	report_target(r, "a/b_populated", ma / mb, 1.15, false, "a/b <= 1.15");
	free(a);
	free(b);
	free(c);
	return report_finish(r);
}

/* A dynamic P2P importer that unmaps in its invalidate callback. */
struct importer {
	struct p2p_attachment *attach;
	struct p2p_sgt *sgt;
};

static void imp_invalidate(struct p2p_attachment *a)
{
	struct importer *imp = p2p_attachment_importer_priv(a);

	if (imp->sgt)
		p2p_attachment_unmap(a, imp->sgt);
	imp->sgt = NULL;
}

static const struct p2p_dmabuf_importer_ops imp_ops = { .invalidate_mappings = imp_invalidate };

static double revoke_case(struct bench_report *r, uint64_t size, unsigned int nimp,
			  unsigned int n, double raw_ms)
{
	struct vfio_region_dma_range rg = { .offset = 0, .length = size };
	struct importer *imps = calloc(nimp, sizeof(*imps));
	uint64_t *t = calloc(n, 8);
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dmabuf *buf;
	char name[32], what[96], text[64];
	double ms;
	void *va;
	int fd, ret;

	ret = cli_gpu_create("0000:b1:00.0", size, NULL, 1, &pci, &vdev);
	if (ret)
		die("device", ret);
	fd = p2p_vfio_device_get_dmabuf(vdev, 2, &rg, 1, O_RDWR | O_CLOEXEC);
	if (fd < 0 || (ret = p2p_dmabuf_get(fd, &buf)))
		die("DMA_BUF", fd < 0 ? fd : ret);
	ret = p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va);
	if (ret)
		die("dmabuf mmap", ret);
	for (unsigned int i = 0; i < nimp; i++) {
		struct p2p_attach_info info = {
			.argsz = sizeof(info),
			.flags = P2P_ATTACH_PEER2PEER,
			.importer_ops = &imp_ops,
			.importer_priv = &imps[i],
			.name = "bench",
		};

		ret = p2p_dmabuf_attach(buf, &info, &imps[i].attach);
		if (ret)
			die("attach", ret);
	}
	for (unsigned int it = 0; it < n + 1; it++) {
		uint64_t t0;

		/* Untimed: importers map again, the CPU mapping is fully populated. */
		p2p_dmabuf_resv_lock(buf);
		for (unsigned int i = 0; i < nimp; i++)
			if ((ret = p2p_attachment_map(imps[i].attach, &imps[i].sgt)))
				die("map", ret);
		p2p_dmabuf_resv_unlock(buf);
		madvise(va, size, MADV_POPULATE_WRITE);

		t0 = now_ns();
		if ((ret = cli_mem_enable(vdev, false)) || (ret = cli_mem_enable(vdev, true)))
			die("COMMAND.MEM", ret);
		if (it)
			t[it - 1] = now_ns() - t0; /* the first round is a warm-up */
	}
	snprintf(name, sizeof(name), "p2pbuf_%u_attach", nimp);
	snprintf(what, sizeof(what),
		 "COMMAND.MEM off+on: revoke (%u importers, CPU map zapped) + un-revoke", nimp);
	ms = report_median(r, name, what, t, n);
	snprintf(name, sizeof(name), "%u_attach/raw", nimp);
	report_ratio(r, name, ms / raw_ms);
	snprintf(text, sizeof(text), "<= 1.3 x raw + 0.1 ms (%.3f ms)", 1.3 * raw_ms + 0.1);
	snprintf(name, sizeof(name), "revoke_%u_attach_ms", nimp);
	report_target(r, name, ms, 1.3 * raw_ms + 0.1, false, text);

	for (unsigned int i = 0; i < nimp; i++) {
		p2p_dmabuf_resv_lock(buf);
		if (imps[i].sgt)
			p2p_attachment_unmap(imps[i].attach, imps[i].sgt);
		p2p_dmabuf_resv_unlock(buf);
		p2p_dmabuf_detach(imps[i].attach);
	}
	p2p_munmap(va, size);
	p2p_dmabuf_put(buf);
	p2p_close(fd);
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
	free(imps);
	free(t);
	return ms;
}

static int bench_revoke(const struct bench_opts *o)
{
	uint64_t size = o->size ? o->size : 512ull << 20;
	unsigned int n = o->iterations ? o->iterations : 9;
	uint64_t *raw = calloc(n, 8);
	struct bench_report *r = report_new("revoke", o);
	char txt[64];
	double raw_ms;
	uint8_t *p;
	int fd;

	snprintf(txt, sizeof(txt), "%llu MiB", (unsigned long long)(size >> 20));
	report_fact(r, "size", txt);
	report_fact(r, "pages", hugepage_mode_name());
	p = raw_map(size, true, &fd);
	for (unsigned int it = 0; it < n + 1; it++) {
		uint64_t t0;

		madvise(p, size, MADV_POPULATE_WRITE);
		t0 = now_ns();
		madvise(p, size, MADV_DONTNEED);
		if (it)
			raw[it - 1] = now_ns() - t0;
	}
	raw_unmap(p, size, fd);
	raw_ms = report_median(r, "raw_dontneed", "raw MADV_DONTNEED of the populated range", raw,
			       n);
	revoke_case(r, size, 1, n, raw_ms);
	revoke_case(r, size, 64, n, raw_ms);
	free(raw);
	return report_finish(r);
}

/* ---------------------------------------------------------------------- */
/* p2p: the copy engine between two BARs                                    */

struct p2p_side {
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	int fd[2];	      /* single-range, 8-range dma-bufs */
	struct p2p_dmabuf *buf[2];
	uint64_t iova[2];
	uint8_t *va[2];
};

#define P2P_SPAN (64ull << 20)

static void p2p_side_init(struct p2p_side *s, const char *bdf, struct p2p_ioas *ioas)
{
	struct vfio_region_dma_range one = { 0, P2P_SPAN }, eight[8];
	int ret;

	ret = cli_gpu_create(bdf, 4 * P2P_SPAN, NULL, 1, &s->pci, &s->vdev);
	if (ret)
		die("device", ret);
	/* Eight 8 MiB runs, scattered over the second half of the BAR, in reverse. */
	for (int i = 0; i < 8; i++)
		eight[i] = (struct vfio_region_dma_range){
			2 * P2P_SPAN + (uint64_t)(7 - i) * (P2P_SPAN / 4), P2P_SPAN / 8 };
	s->fd[0] = p2p_vfio_device_get_dmabuf(s->vdev, 2, &one, 1, O_RDWR | O_CLOEXEC);
	s->fd[1] = p2p_vfio_device_get_dmabuf(s->vdev, 2, eight, 8, O_RDWR | O_CLOEXEC);
	for (int k = 0; k < 2; k++) {
		if (s->fd[k] < 0 || (ret = p2p_dmabuf_get(s->fd[k], &s->buf[k])))
			die("DMA_BUF", s->fd[k] < 0 ? s->fd[k] : ret);
		ret = p2p_ioas_map_file(ioas, s->fd[k], 0, P2P_SPAN, &s->iova[k],
					P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE |
						P2P_IOAS_MAP_EXTENDED);
		if (ret)
			die("IOAS map_file", ret);
		ret = p2p_dmabuf_mmap(s->buf[k], NULL, P2P_SPAN, PROT_READ | PROT_WRITE, MAP_SHARED,
				      0, (void **)&s->va[k]);
		if (ret)
			die("dma-buf mmap", ret);
		memset(s->va[k], 0x11 * (k + 1), P2P_SPAN);
	}
}

static void p2p_side_fini(struct p2p_side *s, struct p2p_ioas *ioas)
{
	for (int k = 0; k < 2; k++) {
		p2p_ioas_unmap(ioas, s->iova[k], P2P_SPAN, NULL);
		p2p_munmap(s->va[k], P2P_SPAN);
		p2p_dmabuf_put(s->buf[k]);
		p2p_close(s->fd[k]);
	}
	p2p_vfio_device_close(s->vdev);
	p2p_pci_dev_put(s->pci);
}

/* @count engine copies of @size bytes from A's to B's dma-buf (layout @k). */
static uint64_t p2p_engine_pass(struct ce_drv *drv, struct p2p_side *a, struct p2p_side *b, int k,
				uint64_t size, unsigned int count)
{
	uint64_t t0 = now_ns();
	uint32_t last = 0;

	for (unsigned int c = 0; c < count; c++) {
		uint64_t off = (c * size) % P2P_SPAN;

		last = ce_drv_queue(drv, a->iova[k] + off, b->iova[k] + off, size,
				    c == count - 1 ? P2P_CE_DESC_IRQ : 0, c);
		if ((c & 63) == 63)
			ce_drv_kick(drv);
	}
	ce_drv_kick(drv);
	ce_drv_wait(drv, last);
	if (ce_drv_compl(drv, last)->status != P2P_CE_OK)
		die("engine copy", EIO);
	return now_ns() - t0;
}

/* The baseline: the same copies with memcpy between the two CPU mappings. */
static uint64_t p2p_memcpy_pass(struct p2p_side *a, struct p2p_side *b, int k, uint64_t size,
				unsigned int count)
{
	uint64_t t0 = now_ns();

	for (unsigned int c = 0; c < count; c++) {
		uint64_t off = (c * size) % P2P_SPAN;

		memcpy(b->va[k] + off, a->va[k] + off, size);
	}
	__asm__ volatile("" ::: "memory");
	return now_ns() - t0;
}

static int bench_p2p(const struct bench_opts *o)
{
	static const uint64_t sizes[] = { 4096, 65536, 2ull << 20, 16ull << 20, 64ull << 20 };
	static const char *const layout[] = { "1range", "8range" };
	unsigned int n = o->iterations ? o->iterations : 7;
	struct bench_report *r = report_new("p2p", o);
	uint64_t *te = calloc(n, 8), *tm = calloc(n, 8);
	struct p2p_pci_dev *cepci;
	struct p2p_vfio_device *cev;
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas;
	struct p2p_side a, b;
	struct ce_drv drv;
	uint32_t id;
	int ret;

	report_fact(r, "copy", "BAR of device A -> BAR of device B, through dma-bufs in the engine's IOAS");
	report_fact(r, "baseline", "memcpy between the CPU mappings of the same two dma-bufs");
	if ((ret = p2p_copy_engine_create("0000:c0:00.0", NULL, 3, &cepci)) ||
	    (ret = p2p_vfio_device_open(cepci, &cev)) || (ret = p2p_iommufd_open(&ctx)) ||
	    (ret = p2p_ioas_alloc(ctx, &id, &ioas)) ||
	    (ret = p2p_vfio_device_attach_ioas(cev, ioas)) ||
	    (ret = ce_drv_init(&drv, cev, ioas, 1024)))
		die("copy engine", ret);
	p2p_side_init(&a, "0000:c1:00.0", ioas);
	p2p_side_init(&b, "0000:c2:00.0", ioas);

	for (int k = 0; k < 2; k++) {
		for (size_t si = 0; si < ARRAY_SIZE(sizes); si++) {
			uint64_t size = sizes[si];
			/* Enough descriptors per sample to move >= 128 MiB (and <= 1024). */
			unsigned int count = (unsigned int)MIN(1024, MAX(4, (128ull << 20) / size));
			double ge, gm, bytes = (double)size * count;
			char name[64], what[96];

			/* Alternate which goes first, so drift and cache state favour neither. */
			for (unsigned int it = 0; it < n + 1; it++) {
				uint64_t e, m;

				if (it & 1) {
					m = p2p_memcpy_pass(&a, &b, k, size, count);
					e = p2p_engine_pass(&drv, &a, &b, k, size, count);
				} else {
					e = p2p_engine_pass(&drv, &a, &b, k, size, count);
					m = p2p_memcpy_pass(&a, &b, k, size, count);
				}
				if (it) { /* the first round warms up */
					te[it - 1] = e;
					tm[it - 1] = m;
				}
			}
			snprintf(name, sizeof(name), "engine_%s_%lluK", layout[k],
				 (unsigned long long)(size >> 10));
			snprintf(what, sizeof(what), "%u copies of %llu KiB", count,
				 (unsigned long long)(size >> 10));
			ge = bytes / (report_median(r, name, what, te, n) * 1e6);
			snprintf(name, sizeof(name), "memcpy_%s_%lluK", layout[k],
				 (unsigned long long)(size >> 10));
			gm = bytes / (report_median(r, name, what, tm, n) * 1e6);
			snprintf(name, sizeof(name), "%s_%lluK_engine/memcpy", layout[k],
				 (unsigned long long)(size >> 10));
			report_ratio(r, name, ge / gm);
			if (!o->json)
				printf("   %-28s engine %.2f GB/s, memcpy %.2f GB/s\n", "", ge, gm);
			if (size >= (2ull << 20))
				report_target(r, name, ge / gm, 0.9, true, ">= 0.9 x memcpy");
		}
	}
	ce_drv_fini(&drv);
	p2p_side_fini(&a, ioas);
	p2p_side_fini(&b, ioas);
	p2p_vfio_device_close(cev);
	p2p_pci_dev_put(cepci);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ctx);
	free(te);
	free(tm);
	return report_finish(r);
}

/* ---------------------------------------------------------------------- */
/* iova: translations per second                                            */

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* One case: @cnt one-page areas of process memory or of a dma-buf, random lookups. */
static void iova_case(struct bench_report *r, struct p2p_iommufd *ctx, unsigned int cnt,
		      bool dmabuf, unsigned int n, uint64_t *iovas, unsigned int lookups)
{
	uint64_t *tr = calloc(n, 8), *tb = calloc(n, 8), *starts = calloc(cnt, 8);
	uint64_t seed = 0x9e3779b97f4a7c15ull, sink = 0, bar = 16384;
	size_t len = (size_t)cnt * PAGE;
	struct vfio_region_dma_range rg = { 0, len };
	struct p2p_pci_dev *pci = NULL;
	struct p2p_vfio_device *vdev = NULL;
	struct p2p_ioas *ioas = NULL;
	const char *kind = dmabuf ? "dmabuf" : "memory";
	uint8_t *mem = NULL;
	uint32_t id;
	char name[64], what[96];
	double mt, mb;
	int ret, fd = -1;

	if ((ret = p2p_ioas_alloc(ctx, &id, &ioas)))
		die("IOAS", ret);
	if (dmabuf) {
		while (bar < len)
			bar <<= 1;
		if ((ret = cli_gpu_create("0000:e0:00.0", bar, NULL, 1, &pci, &vdev)))
			die("device", ret);
		fd = p2p_vfio_device_get_dmabuf(vdev, 2, &rg, 1, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			die("DMA_BUF", fd);
	} else {
		mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (mem == MAP_FAILED)
			die("mmap", errno);
	}
	for (unsigned int i = 0; i < cnt; i++) {
		/* Every other page: distinct areas with holes between them. */
		uint64_t iova = (1ull << 32) + (uint64_t)i * 2 * PAGE;
		uint32_t fl = P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE;

		ret = dmabuf ? p2p_ioas_map_file(ioas, fd, (uint64_t)i * PAGE, PAGE, &iova, fl)
			     : p2p_ioas_map(ioas, mem + (size_t)i * PAGE, PAGE, &iova, fl);
		if (ret)
			die("IOAS map", ret);
		starts[i] = iova;
	}
	for (unsigned int i = 0; i < lookups; i++)
		iovas[i] = starts[xorshift(&seed) % cnt] + xorshift(&seed) % PAGE;
	for (unsigned int it = 0; it < n + 1; it++) {
		uint64_t t0 = now_ns();

		for (unsigned int i = 0; i < lookups; i++) {
			struct p2p_dma_seg seg;

			if (p2p_ioas_dma_begin(ioas, iovas[i], 64, P2P_DMA_READ, &seg))
				die("translate", EFAULT);
			sink += (uintptr_t)seg.host;
			p2p_ioas_dma_end(&seg);
		}
		if (it)
			tr[it - 1] = now_ns() - t0;
		t0 = now_ns();
		for (unsigned int i = 0; i < lookups; i++) {
			size_t lo = 0, hi = cnt;

			while (lo < hi) {
				size_t mid = (lo + hi) / 2;

				if (starts[mid] <= iovas[i])
					lo = mid + 1;
				else
					hi = mid;
			}
			sink += lo;
		}
		if (it)
			tb[it - 1] = now_ns() - t0;
	}
	__asm__ volatile("" : : "r"(sink));
	snprintf(what, sizeof(what), "%u lookups, %u %s mappings", lookups, cnt, kind);
	snprintf(name, sizeof(name), "translate_%s_%u", kind, cnt);
	mt = lookups / (report_median(r, name, what, tr, n) * 1e3);
	snprintf(name, sizeof(name), "bsearch_%s_%u", kind, cnt);
	mb = lookups / (report_median(r, name, what, tb, n) * 1e3);
	if (!r_json(r))
		printf("   %-28s translate %.1f M/s, bare search %.1f M/s\n", "", mt, mb);
	snprintf(name, sizeof(name), "translate_%s_%u_Mps", kind, cnt);
	report_ratio(r, name, mt);
	snprintf(name, sizeof(name), "%s_%u_translate/bsearch", kind, cnt);
	report_ratio(r, name, mt / mb);
	if (cnt == 10000) {
		snprintf(name, sizeof(name), "translate_%s_10000_Mps", kind);
		report_target(r, name, mt, 20, true, ">= 20 M/s");
	}
	p2p_ioas_put(ioas);
	if (dmabuf) {
		p2p_close(fd);
		p2p_vfio_device_close(vdev);
		p2p_pci_dev_put(pci);
	} else {
		munmap(mem, len);
	}
	free(tr);
	free(tb);
	free(starts);
}

static int bench_iova(const struct bench_opts *o)
{
	static const unsigned int counts[] = { 10, 10000, 100000 };
	const unsigned int lookups = 1u << 22;
	unsigned int n = o->iterations ? o->iterations : 5;
	struct bench_report *r = report_new("iova", o);
	uint64_t *iovas = calloc(lookups, 8);
	struct p2p_iommufd *ctx;
	int ret;

	report_fact(r, "translation", "p2p_ioas_dma_begin + p2p_ioas_dma_end of a random mapped IOVA");
	report_fact(r, "baseline", "bare binary search of the same IOVAs in a sorted array");
	if ((ret = p2p_iommufd_open(&ctx)))
		die("iommufd", ret);
	for (size_t ci = 0; ci < ARRAY_SIZE(counts); ci++)
		iova_case(r, ctx, counts[ci], false, n, iovas, lookups);
	/* dma-buf areas: in-flight accounting for revocation on every translation. */
	for (size_t ci = 0; ci < 2; ci++)
		iova_case(r, ctx, counts[ci], true, n, iovas, lookups);
	p2p_iommufd_close(ctx);
	free(iovas);
	return report_finish(r);
}

/* Every benchmark, in the order `all` runs them. */
static const struct {
	const char *name;
	int (*run)(const struct bench_opts *o);
} benches[] = {
	{ "mmap", bench_mmap }, { "revoke", bench_revoke }, { "p2p", bench_p2p },
	{ "iova", bench_iova }, { "io", bench_io },	    { "heap", bench_heap },
	{ "storage", bench_storage }, { "preload", bench_preload },
	{ "vfio-user", bench_vfio_user },
};

static void bench_usage(FILE *f)
{
	fprintf(f, "usage: p2pbuf bench {mmap|revoke|p2p|iova|io|heap|storage|preload|vfio-user|all} [--json] [--strict] [-n ITER] [-s SIZE]\n"
		   "  --json       print one JSON object per benchmark (medians, ratios, targets)\n"
		   "  --strict     exit 1 if a target is missed\n"
		   "  -n, --iterations N   samples per figure (median reported)\n"
		   "  -s, --size SIZE      buffer size (default 512M; preload: the BAR, 256M;\n                       vfio-user: the BAR, 64M)\n");
}

int cmd_bench(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },	 { "strict", no_argument, NULL, 'S' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' }, { "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct bench_opts o = { 0 };
	const char *name;
	int c, ret = 0;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		bench_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	name = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "jSn:s:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': o.json = true; break;
		case 'S': o.strict = true; break;
		case 'n':
			o.iterations = (unsigned int)strtoul(optarg, NULL, 0);
			if (!o.iterations) {
				fprintf(stderr, "p2pbuf bench: bad --iterations '%s'\n", optarg);
				return 2;
			}
			break;
		case 's':
			o.size = cli_parse_size(optarg);
			if (o.size < (2ull << 20) || (o.size & (o.size - 1))) {
				fprintf(stderr,
					"p2pbuf bench: --size must be a power of two >= 2M, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'h': bench_usage(stdout); return 0;
		default: bench_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "p2pbuf bench: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	p2p_library_init();
	for (size_t i = 0; i < ARRAY_SIZE(benches); i++) {
		if (!strcmp(name, "all"))
			ret |= benches[i].run(&o);
		else if (!strcmp(name, benches[i].name))
			return benches[i].run(&o);
	}
	if (!strcmp(name, "all"))
		return ret;
	fprintf(stderr, "p2pbuf bench: unknown benchmark '%s' (mmap, revoke, p2p, iova, io, heap, storage, preload, vfio-user, all)\n",
		name);
	return 2;
}
