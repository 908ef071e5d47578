// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench: each benchmark measures p2pbuf and its raw baseline in the
 * same run, interleaved, and reports medians and ratios.
 *
 *   mmap    map + touch a dma-buf (a) vs raw memfd MAP_POPULATE (b) vs raw
 *           memfd touched page by page (c); target a/b <= 1.15; (d) a
 *           device created pre-faulted on all cores + map + touch, target
 *           d/b <= 0.75
 *   revoke  revoke + un-revoke of a dma-buf with 1 and 64 attachments and a
 *           live CPU mapping vs raw MADV_DONTNEED of the same pages (and, shown
 *           only, of a separate memfd); target <= 1.3x raw + 100 us
 *   p2p     BAR-to-BAR copies through the copy engine, 4 KiB to 64 MiB,
 *           single- and 8-range dma-bufs, on one channel and split over N
 *           (one per core), vs 1- and N-thread memcpy between the same two
 *           mappings; targets 1 channel >= 0.9x 1-thread memcpy at >= 2 MiB,
 *           N channels >= 0.9x the best memcpy at >= 8 MiB (per round);
 *           first touch: the first copy into a new device's (pre-faulted)
 *           VRAM <= 1.2x a repeat, beside raw memcpy into a new populated
 *           memfd
 *   iova    (bench_iova.c) IOVA translations per second with 10, 10 000
 *           and 100 000 areas, random and sequential order, process memory
 *           and dma-buf, vs a bare sorted-array lookup; targets >= 50 M/s at
 *           10 000 and >= 20 M/s at 100 000 areas, random order
 *   io      (bench_io.c) file -> dma-buf through io_uring vs raw READ_FIXED
 *           and a bounce buffer (same pages), first transfer, 4 KiB per-op cost,
 *           revoke of 1024 slots; targets >= 0.97x raw, <= 50 ns/op, <= 3 ms
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

/*
 * (a): export the whole BAR of a device with fresh VRAM, map it through
 * p2pbuf, touch it (the device's creation untimed).  (d) with @prefault:
 * the device created with P2P_PCI_PREFAULT (its VRAM populated on all
 * cores), export, map, touch, all timed.
 */
static uint64_t mmap_p2pbuf_once(uint64_t size, bool prefault)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = size };
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dmabuf *buf;
	uint64_t t0, t1;
	void *va;
	int fd, ret;

	t0 = now_ns();
	ret = cli_gpu_create_flags("0000:b0:00.0", size, NULL, 1,
				   P2P_PCI_HUGE | (prefault ? P2P_PCI_PREFAULT : 0), &pci, &vdev);
	if (ret)
		die("device", ret);
	fd = p2p_vfio_device_get_dmabuf(vdev, 2, &r, 1, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("DMA_BUF", fd);
	ret = p2p_dmabuf_get(fd, &buf);
	if (ret)
		die("dmabuf_get", ret);
	if (!prefault)
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

/* The mmap series: figure 0 raw MAP_POPULATE (b), 1 p2pbuf (a), 2 raw page by page (c). */
struct mmap_ctx {
	uint64_t size;
	/* the importer case: device memory and a raw memfd, both populated */
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dmabuf *buf;
	int fd, rawfd;
};

static void mmap_fresh_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct mmap_ctx *m = c;

	if (arm == 1)
		row[1] = mmap_p2pbuf_once(m->size, false);
	else if (arm == 3)
		row[3] = mmap_p2pbuf_once(m->size, true);
	else
		row[arm] = mmap_raw_once(m->size, arm == 0);
}

static void mmap_populated_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct mmap_ctx *m = c;
	uint64_t t0;
	void *va;
	int ret;

	if (arm != 1) {
		row[arm] = raw_map_touch_ns(m->rawfd, m->size, arm == 0);
		return;
	}
	t0 = now_ns();
	ret = p2p_dmabuf_mmap(m->buf, NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va);
	if (ret)
		die("dmabuf mmap", ret);
	touch_pages(va, m->size);
	row[1] = now_ns() - t0;
	p2p_munmap(va, m->size);
}

/* Importer case: map + touch memory that is already populated. */
static void mmap_populated_init(struct mmap_ctx *m)
{
	struct vfio_region_dma_range rg = { .offset = 0, .length = m->size };
	uint8_t *raw;
	int ret;

	ret = cli_gpu_create("0000:b2:00.0", m->size, NULL, 1, &m->pci, &m->vdev);
	if (ret)
		die("device", ret);
	m->fd = p2p_vfio_device_get_dmabuf(m->vdev, 2, &rg, 1, O_RDWR | O_CLOEXEC);
	if (m->fd < 0 || (ret = p2p_dmabuf_get(m->fd, &m->buf)))
		die("DMA_BUF", m->fd < 0 ? m->fd : ret);
	memset(p2p_mem_ptr(p2p_pci_dev_bar_mem(m->pci, 2), 0), 1, m->size);
	raw = raw_map(m->size, true, &m->rawfd);
	munmap(raw, m->size);
}

static void mmap_populated_fini(struct mmap_ctx *m)
{
	close(m->rawfd);
	p2p_dmabuf_put(m->buf);
	p2p_close(m->fd);
	p2p_vfio_device_close(m->vdev);
	p2p_pci_dev_put(m->pci);
}

/* Figures, ratios, the a/b target and plot points of one mmap series. */
static void mmap_report(struct bench_report *r, const struct bench_series *s, const char *sfx,
			const char *x, const char *wa, const char *wb, const char *wc)
{
	char name[64];

	snprintf(name, sizeof(name), "a_p2pbuf%s", sfx);
	report_series_median(r, s, 1, name, wa);
	snprintf(name, sizeof(name), "b_raw_populate%s", sfx);
	report_series_median(r, s, 0, name, wb);
	snprintf(name, sizeof(name), "c_raw_page_by_page%s", sfx);
	report_series_median(r, s, 2, name, wc);
	snprintf(name, sizeof(name), "a/b%s", sfx);
	report_series_ratio(r, s, 1, 0, name);
	report_series_target(r, s, 1, 0, name, 1.15, false, "a/b <= 1.15");
	snprintf(name, sizeof(name), "c/a%s", sfx);
	report_series_ratio(r, s, 2, 1, name);
	report_series_plot(r, s, 1, x, "p2pbuf dma-buf mmap", 0);
	report_series_plot(r, s, 0, x, "raw MAP_POPULATE", 0);
	report_series_plot(r, s, 2, x, "raw page by page", 0);
}

static int bench_mmap(const struct bench_opts *o)
{
	struct mmap_ctx m = { .size = o->size ? o->size : 512ull << 20 };
	struct bench_report *r = report_new("mmap", o);
	struct bench_series s;
	char txt[32], x[64], name[64];

	snprintf(txt, sizeof(txt), "%llu MiB", (unsigned long long)(m.size >> 20));
	report_fact(r, "size", txt);
	report_fact(r, "pages", hugepage_mode_name());
	report_plot_axis(r, "ms per map + touch (median, min-max)", false);
	/* Fresh memory: the warm-up round also takes the first, slow allocation after
	 * memory went back to the host. */
	if (!o->json)
		printf("   -- fresh memory (page allocation dominates every path)\n");
	bench_series_init(&s, "fresh", 4, 4);
	s.npairs = 2;
	s.pair[0].max_ratio = 1.15; /* a/b */
	s.pair[1] = (struct bench_pair){ .num = 3, .den = 0, .max_ratio = 0.75 }; /* d/b */
	bench_interleave(r, &s, 7, mmap_fresh_sample, &m);
	snprintf(x, sizeof(x), "fresh, %s", txt);
	mmap_report(r, &s, "", x, "dma-buf mmap (populated in runs) + touch",
		    "raw memfd MAP_POPULATE + touch", "raw memfd, touched page by page");
	snprintf(name, sizeof(name), "d_p2pbuf_prefault_%ut", bench_online_cores());
	report_series_median(r, &s, 3, name,
			     "device with P2P_PCI_PREFAULT (all cores) + export + mmap + touch");
	report_series_ratio(r, &s, 3, 0, "d/b");
	report_series_target(r, &s, 3, 0, "d/b", 0.75, false,
			     "populated on all cores: d/b <= 0.75 (single-thread MAP_POPULATE)");
	report_series_plot(r, &s, 3, x, "p2pbuf prefault on all cores", 0);

	/* The importer case: device memory already populated, only page tables to build. */
	if (!o->json)
		printf("   -- memory already populated (an importer mapping device memory)\n");
	mmap_populated_init(&m);
	bench_series_init(&s, "populated", 3, 3);
	s.npairs = 1;
	s.pair[0].max_ratio = 1.15;
	bench_interleave(r, &s, 7, mmap_populated_sample, &m);
	mmap_populated_fini(&m);
	snprintf(x, sizeof(x), "populated, %s", txt);
	mmap_report(r, &s, "_populated", x, "dma-buf mmap + touch", "raw MAP_POPULATE + touch",
		    "raw, write-faulted page by page");
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

/*
 * One revoke series.  The zap's cost is set by the pages it drops: how
 * scattered they are in physical memory (each PTE's struct page is read:
 * two memfds of the same size populated the same way differ by up to 2x
 * on this machine, depending on the free lists they were allocated from)
 * and whether the zapped view is their last mapping (then the kernel also
 * moves NR_FILE_MAPPED and the memcg counters).  So the judged baseline
 * drops the same pages: one MADV_DONTNEED of the dma-buf's own CPU
 * mapping, populated as in the p2pbuf round, with no p2pbuf call.  A
 * separate memfd of the same size (the earlier baseline) is timed too and
 * printed for comparison.
 *
 * Arms: 0 raw MADV_DONTNEED of the dma-buf's CPU mapping (figure 0),
 * 1 p2pbuf COMMAND.MEM off + on (figure 1; figure 3 the revoke, off,
 * figure 4 the un-revoke, on), 2 raw MADV_DONTNEED of a separate memfd
 * (figure 2).
 */
enum { RV_RAW_SAME, RV_P2PBUF, RV_RAW_OTHER, RV_OFF, RV_ON, RV_NFIG };

struct revoke_ctx {
	uint64_t size;
	unsigned int nimp;
	struct importer *imps;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dmabuf *buf;
	void *va;
	uint8_t *raw;
	int fd, rawfd;
};

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void revoke_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct revoke_ctx *x = c;
	uint64_t t0, t1;
	int ret;

	if (arm == RV_RAW_SAME) {
		madvise(x->va, x->size, MADV_POPULATE_WRITE);
		t0 = now_ns();
		madvise(x->va, x->size, MADV_DONTNEED);
		row[RV_RAW_SAME] = now_ns() - t0;
		return;
	}
	if (arm == RV_RAW_OTHER) {
		madvise(x->raw, x->size, MADV_POPULATE_WRITE);
		t0 = now_ns();
		madvise(x->raw, x->size, MADV_DONTNEED);
		row[RV_RAW_OTHER] = now_ns() - t0;
		return;
	}
	/* Untimed: importers map again, the CPU mapping is fully populated. */
	p2p_dmabuf_resv_lock(x->buf);
	for (unsigned int i = 0; i < x->nimp; i++)
		if ((ret = p2p_attachment_map(x->imps[i].attach, &x->imps[i].sgt)))
			die("map", ret);
	p2p_dmabuf_resv_unlock(x->buf);
	madvise(x->va, x->size, MADV_POPULATE_WRITE);

	t0 = now_ns();
	if ((ret = cli_mem_enable(x->vdev, false)))
		die("COMMAND.MEM", ret);
	t1 = now_ns();
	if ((ret = cli_mem_enable(x->vdev, true)))
		die("COMMAND.MEM", ret);
	row[RV_P2PBUF] = now_ns() - t0;
	row[RV_OFF] = t1 - t0;
	row[RV_ON] = row[RV_P2PBUF] - row[RV_OFF];
}

static void revoke_case(struct bench_report *r, uint64_t size, unsigned int nimp)
{
	struct vfio_region_dma_range rg = { .offset = 0, .length = size };
	struct revoke_ctx x = { .size = size, .nimp = nimp };
	double v[BENCH_MAX_ROUNDS];
	struct bench_series s;
	char name[48], what[96], sname[32], xl[32];
	int ret;

	x.imps = calloc(nimp, sizeof(*x.imps));
	if (!x.imps)
		die("calloc", ENOMEM);
	ret = cli_gpu_create("0000:b1:00.0", size, NULL, 1, &x.pci, &x.vdev);
	if (ret)
		die("device", ret);
	x.fd = p2p_vfio_device_get_dmabuf(x.vdev, 2, &rg, 1, O_RDWR | O_CLOEXEC);
	if (x.fd < 0 || (ret = p2p_dmabuf_get(x.fd, &x.buf)))
		die("DMA_BUF", x.fd < 0 ? x.fd : ret);
	ret = p2p_dmabuf_mmap(x.buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &x.va);
	if (ret)
		die("dmabuf mmap", ret);
	for (unsigned int i = 0; i < nimp; i++) {
		struct p2p_attach_info info = {
			.argsz = sizeof(info),
			.flags = P2P_ATTACH_PEER2PEER,
			.importer_ops = &imp_ops,
			.importer_priv = &x.imps[i],
			.name = "bench",
		};

		ret = p2p_dmabuf_attach(x.buf, &info, &x.imps[i].attach);
		if (ret)
			die("attach", ret);
	}
	x.raw = raw_map(size, true, &x.rawfd);

	snprintf(sname, sizeof(sname), "%u attachment%s", nimp, nimp > 1 ? "s" : "");
	bench_series_init(&s, sname, 3, RV_NFIG);
	/* Settle on the judged pair only: revoke <= 1.3 x raw (same pages) + 0.1 ms. */
	s.npairs = 1;
	s.pair[0] = (struct bench_pair){ .num = RV_P2PBUF, .den = RV_RAW_SAME, .max_ratio = 1.3,
					 .slack_ns = 0.1e6 };
	bench_interleave(r, &s, 9, revoke_sample, &x);

	snprintf(name, sizeof(name), "raw_dontneed_%u_attach", nimp);
	report_series_median(r, &s, RV_RAW_SAME, name,
			     "raw MADV_DONTNEED of the dma-buf's CPU mapping (same pages; the baseline)");
	snprintf(name, sizeof(name), "raw_dontneed_other_memfd_%u_attach", nimp);
	report_series_median(r, &s, RV_RAW_OTHER, name,
			     "raw MADV_DONTNEED of a separate memfd of the same size");
	snprintf(name, sizeof(name), "p2pbuf_%u_attach", nimp);
	snprintf(what, sizeof(what),
		 "COMMAND.MEM off+on: revoke (%u importers, CPU map zapped) + un-revoke", nimp);
	report_series_median(r, &s, RV_P2PBUF, name, what);
	snprintf(name, sizeof(name), "p2pbuf_revoke_%u_attach", nimp);
	report_series_median(r, &s, RV_OFF, name, "of which COMMAND.MEM off (revoke)");
	snprintf(name, sizeof(name), "p2pbuf_unrevoke_%u_attach", nimp);
	report_series_median(r, &s, RV_ON, name, "of which COMMAND.MEM on (un-revoke)");
	snprintf(name, sizeof(name), "%u_attach/raw", nimp);
	report_series_ratio(r, &s, RV_P2PBUF, RV_RAW_SAME, name);
	snprintf(name, sizeof(name), "%u_attach/raw_other_memfd", nimp);
	report_series_ratio(r, &s, RV_P2PBUF, RV_RAW_OTHER, name);
	/* What p2pbuf adds to the zap, per round: (off + on) - raw (same pages). */
	for (unsigned int i = 0; i < s.rounds; i++)
		v[i] = ((double)s.ns[RV_P2PBUF][i] - (double)s.ns[RV_RAW_SAME][i]) / 1e3;
	snprintf(name, sizeof(name), "p2pbuf_%u_attach_over_raw_us", nimp);
	qsort(v, s.rounds, sizeof(v[0]), cmp_dbl);
	report_ratio_spread(r, name, v[s.rounds / 2], v[0], v[s.rounds - 1]);
	/* The target, per round: revoke - 1.3 x raw <= 0.1 ms. */
	for (unsigned int i = 0; i < s.rounds; i++)
		v[i] = ((double)s.ns[RV_P2PBUF][i] - 1.3 * (double)s.ns[RV_RAW_SAME][i]) / 1e6;
	snprintf(name, sizeof(name), "revoke_%u_attach_excess_ms", nimp);
	report_target_values(r, name, v, s.rounds, 0.1, false,
			     "revoke - 1.3 x raw <= 0.1 ms (<= 1.3x raw + 100 us)");
	snprintf(xl, sizeof(xl), "%u attach", nimp);
	report_series_plot(r, &s, RV_P2PBUF, xl, "p2pbuf revoke + un-revoke", 0);
	report_series_plot(r, &s, RV_RAW_SAME, xl, "raw MADV_DONTNEED, same pages", 0);
	report_series_plot(r, &s, RV_RAW_OTHER, xl, "raw MADV_DONTNEED, other memfd", 0);

	raw_unmap(x.raw, size, x.rawfd);
	for (unsigned int i = 0; i < nimp; i++) {
		p2p_dmabuf_resv_lock(x.buf);
		if (x.imps[i].sgt)
			p2p_attachment_unmap(x.imps[i].attach, x.imps[i].sgt);
		p2p_dmabuf_resv_unlock(x.buf);
		p2p_dmabuf_detach(x.imps[i].attach);
	}
	p2p_munmap(x.va, size);
	p2p_dmabuf_put(x.buf);
	p2p_close(x.fd);
	p2p_vfio_device_close(x.vdev);
	p2p_pci_dev_put(x.pci);
	free(x.imps);
}

static int bench_revoke(const struct bench_opts *o)
{
	uint64_t size = o->size ? o->size : 512ull << 20;
	struct bench_report *r = report_new("revoke", o);
	char txt[64];

	snprintf(txt, sizeof(txt), "%llu MiB", (unsigned long long)(size >> 20));
	report_fact(r, "size", txt);
	report_fact(r, "pages", hugepage_mode_name());
	report_fact(r, "cpu revoke", p2p_cpu_revoke_method() == P2P_CPU_REVOKE_UFFD
					     ? "userfaultfd (register + MADV_DONTNEED; un-revoke: unregister)"
					     : "remap (MAP_FIXED of an empty memfd; un-revoke: map back)");
	report_fact(r, "baseline", "raw MADV_DONTNEED of the same populated pages (the dma-buf's CPU mapping), interleaved with each case; a separate memfd is shown too");
	report_plot_axis(r, "ms (median, min-max)", false);
	revoke_case(r, size, 1);
	revoke_case(r, size, 64);
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

/* @count engine copies of @size bytes from A's to B's dma-buf (layout @k), on one channel. */
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

/* Pieces below this go whole to one channel, round robin; larger copies are split. */
#define P2P_MIN_PIECE (256ull << 10)

/*
 * The same copies over every channel of @m: each copy of at least two
 * pieces split over the channels (one descriptor each), smaller ones
 * round robin; interrupts on each channel's last descriptor only.
 */
static uint64_t p2p_engine_pass_multi(struct ce_multi *m, struct p2p_side *a, struct p2p_side *b,
				      int k, uint64_t size, unsigned int count)
{
	uint32_t last[P2P_CE_MAX_CHANNELS], used = 0, n = m->nchan;
	bool split = size >= 2 * P2P_MIN_PIECE;
	uint64_t t0 = now_ns();

	for (unsigned int c = 0; c < count; c++) {
		uint64_t off = (c * size) % P2P_SPAN;
		uint64_t src = a->iova[k] + off, dst = b->iova[k] + off;

		if (split) {
			used = ce_multi_queue(m, 0, src, dst, size, P2P_MIN_PIECE,
					      c == count - 1 ? P2P_CE_DESC_IRQ : 0, c, last);
		} else {
			uint32_t ch = c % n;

			last[ch] = ce_drv_queue(&m->ch[ch], src, dst, size,
						c + n >= count ? P2P_CE_DESC_IRQ : 0, c);
			used = used > ch + 1 ? used : ch + 1;
		}
		if ((c & 63) == 63)
			ce_multi_kick(m);
	}
	ce_multi_kick(m);
	for (uint32_t ch = 0; ch < used; ch++) {
		ce_drv_wait(&m->ch[ch], last[ch]);
		if (ce_drv_compl(&m->ch[ch], last[ch])->status != P2P_CE_OK)
			die("engine copy", EIO);
	}
	return now_ns() - t0;
}

/*
 * The N-thread memcpy baseline, as a careful user writes it: a pool of
 * threads started once; each pass hands every thread its slice of every
 * copy and waits for all of them.
 */
struct memcpy_pool {
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	pthread_t th[P2P_CE_MAX_CHANNELS];
	unsigned int n, pending;
	uint64_t gen;
	bool stop;
	/* the current pass */
	uint8_t *dst, *src;
	uint64_t size;
	unsigned int count;
};

static void pool_slice(struct memcpy_pool *p, unsigned int t)
{
	uint64_t piece = ((p->size + p->n - 1) / p->n + 63) & ~63ull;

	for (unsigned int c = 0; c < p->count; c++) {
		uint64_t off = (c * p->size) % P2P_SPAN, lo = (uint64_t)t * piece;

		if (lo < p->size)
			memcpy(p->dst + off + lo, p->src + off + lo, MIN(piece, p->size - lo));
	}
}

struct pool_arg {
	struct memcpy_pool *p;
	unsigned int t;
};

static void *pool_worker(void *arg)
{
	struct pool_arg *pa = arg;
	struct memcpy_pool *p = pa->p;
	unsigned int t = pa->t;
	uint64_t seen = 0;

	free(pa);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->gen == seen)
			pthread_cond_wait(&p->go, &p->lock);
		if (p->stop)
			break;
		seen = p->gen;
		pthread_mutex_unlock(&p->lock);
		pool_slice(p, t);
		pthread_mutex_lock(&p->lock);
		if (!--p->pending)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void pool_start(struct memcpy_pool *p, unsigned int n)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	p->n = n;
	for (unsigned int t = 1; t < n; t++) {
		struct pool_arg *pa = malloc(sizeof(*pa));

		if (!pa)
			die("calloc", ENOMEM);
		*pa = (struct pool_arg){ p, t };
		if (pthread_create(&p->th[t], NULL, pool_worker, pa))
			die("memcpy thread", EAGAIN);
	}
}

static void pool_stop(struct memcpy_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->lock);
	for (unsigned int t = 1; t < p->n; t++)
		pthread_join(p->th[t], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
}

/* One pass of @count copies of @size bytes from @src to @dst, sliced over the pool. */
static uint64_t pool_pass(struct memcpy_pool *p, uint8_t *dst, uint8_t *src, uint64_t size,
			  unsigned int count)
{
	uint64_t t0 = now_ns();

	pthread_mutex_lock(&p->lock);
	p->dst = dst;
	p->src = src;
	p->size = size;
	p->count = count;
	p->pending = p->n - 1;
	p->gen++;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->lock);
	pool_slice(p, 0);
	pthread_mutex_lock(&p->lock);
	while (p->pending)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
	__asm__ volatile("" ::: "memory");
	return now_ns() - t0;
}

static uint64_t p2p_memcpy_pass_multi(struct memcpy_pool *p, struct p2p_side *a,
				      struct p2p_side *b, int k, uint64_t size, unsigned int count)
{
	return pool_pass(p, b->va[k], a->va[k], size, count);
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

/* What the p2p series share. */
struct p2p_ctx {
	struct ce_multi *m;
	struct p2p_ioas *ioas;
	struct memcpy_pool *pool;
	struct p2p_side *a, *b;
	/* the copy series: layout, size, copies per sample */
	int k;
	uint64_t size;
	unsigned int count;
	unsigned int calls; /* arms run so far: the last arm of a round derives figures */
};

/* Copy series: arms 0-3 write figures 0-3; figure 4 is the faster memcpy of the round. */
enum { P2P_ENGINE1, P2P_ENGINEN, P2P_MEMCPY1, P2P_MEMCPYN, P2P_BEST, P2P_NFIG };

static void p2p_copy_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct p2p_ctx *x = c;

	switch (arm) {
	case P2P_ENGINE1:
		row[arm] = p2p_engine_pass(&x->m->ch[0], x->a, x->b, x->k, x->size, x->count);
		break;
	case P2P_ENGINEN:
		row[arm] = p2p_engine_pass_multi(x->m, x->a, x->b, x->k, x->size, x->count);
		break;
	case P2P_MEMCPY1:
		row[arm] = p2p_memcpy_pass(x->a, x->b, x->k, x->size, x->count);
		break;
	default:
		row[arm] = p2p_memcpy_pass_multi(x->pool, x->a, x->b, x->k, x->size, x->count);
		break;
	}
	/* bench_interleave() runs the 4 arms once per round, in a row: the last derives. */
	if (++x->calls % 4 == 0)
		row[P2P_BEST] = MIN(row[P2P_MEMCPY1], row[P2P_MEMCPYN]);
}

/*
 * First touch: a 32 MiB copy into fresh memory, then the same copy again.
 * Arms: 0 the raw reference, a careful user's: a new memfd populated with
 * MADV_POPULATE_WRITE, then the N-thread memcpy pool from A's CPU mapping;
 * 1 the engine, all channels, into the VRAM of a device created just
 * before with P2P_PCI_PREFAULT; 2 the same without P2P_PCI_PREFAULT.
 * Creation and population are untimed.
 *
 * Each arm times the first copy, then the repeat, then the repeat once
 * more back to back ("warm").  The first copy finds the engine's workers
 * asleep (the device's creation took milliseconds; a worker sleeps after
 * spinning briefly past its last descriptor) and pays their wake-up, which
 * is no first-touch cost: any copy after idle pays it (on a VM with guest
 * halt polling off, a halted vCPU's).  So the repeat the target compares
 * with starts from the same state: FT_IDLE of CPU work in this thread
 * first, as the creation was.  The warm copy finds the workers still
 * spinning: repeat/warm is what the wake-up costs.  The memcpy pool's
 * threads sleep between passes, idle or not.
 */
enum { FT_RAW, FT_PF = 3, FT_FRESH = 6, FT_NFIG = 9 }; /* + 0 first, 1 repeat, 2 warm */

#define FT_LEN (32ull << 20)
#define FT_IDLE_NS 1000000ull

/* Busy for FT_IDLE_NS: the engine's workers go back to sleep meanwhile. */
static void p2p_idle(void)
{
	uint64_t end = now_ns() + FT_IDLE_NS;

	while (now_ns() < end)
		__builtin_ia32_pause();
}

static void p2p_first_raw(struct p2p_ctx *x, uint64_t *row)
{
	uint8_t *dst;
	int fd = raw_memfd(FT_LEN);

	dst = raw_mmap(fd, FT_LEN, false);
	if (madvise(dst, FT_LEN, MADV_POPULATE_WRITE))
		die("MADV_POPULATE_WRITE", errno);
	for (unsigned int i = 0; i < 3; i++) {
		if (i == 1)
			p2p_idle();
		row[FT_RAW + i] = pool_pass(x->pool, dst, x->a->va[0], FT_LEN, 1);
	}
	raw_unmap(dst, FT_LEN, fd);
}

static void p2p_first_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct p2p_ctx *x = c;
	struct vfio_region_dma_range r = { 0, FT_LEN };
	bool prefault = arm == 1;
	unsigned int fig = prefault ? FT_PF : FT_FRESH;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	uint64_t iova, t0;
	int fd, ret;

	if (!arm) {
		p2p_first_raw(x, row);
		return;
	}
	ret = cli_gpu_create_flags("0000:c3:00.0", FT_LEN, NULL, 1,
				   P2P_PCI_HUGE | (prefault ? P2P_PCI_PREFAULT : 0), &pci, &vdev);
	if (ret)
		die("device", ret);
	fd = p2p_vfio_device_get_dmabuf(vdev, 2, &r, 1, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("DMA_BUF", fd);
	ret = p2p_ioas_map_file(x->ioas, fd, 0, FT_LEN, &iova,
				P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE);
	if (ret)
		die("IOAS map_file", ret);
	for (unsigned int i = 0; i < 3; i++) {
		if (i == 1)
			p2p_idle();
		t0 = now_ns();
		if (ce_multi_copy(x->m, x->a->iova[0], iova, FT_LEN, NULL) != P2P_CE_OK)
			die("engine copy", EIO);
		row[fig + i] = now_ns() - t0;
	}
	p2p_ioas_unmap(x->ioas, iova, FT_LEN, NULL);
	p2p_close(fd);
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
}

static void p2p_first_touch(struct bench_report *r, struct p2p_ctx *x)
{
	static const struct {
		unsigned int fig;
		const char *sfx, *what;
	} arm[] = {
		{ FT_PF, "prefaulted", "engine, VRAM pre-faulted (default)" },
		{ FT_RAW, "raw_memfd", "raw: N-thread memcpy, memfd after MADV_POPULATE_WRITE" },
		{ FT_FRESH, "fresh", "engine, VRAM not pre-faulted" },
	};
	static struct bench_series s;
	char name[64], what[128];

	if (!r_json(r))
		printf("   -- first touch: 32 MiB copy into new memory, then again after 1 ms, then back to back\n");
	bench_series_init(&s, "first touch", 3, FT_NFIG);
	/* Settle on the target and on the raw reference (the rest is shown only). */
	s.npairs = 2;
	s.pair[0] = (struct bench_pair){ .num = FT_PF, .den = FT_PF + 1, .max_ratio = 1.2 };
	s.pair[1] = (struct bench_pair){ .num = FT_RAW, .den = FT_RAW + 1 };
	bench_interleave(r, &s, 7, p2p_first_sample, x);
	for (unsigned int i = 0; i < ARRAY_SIZE(arm); i++) {
		unsigned int f = arm[i].fig;
		const char *sfx = arm[i].sfx;

		snprintf(name, sizeof(name), "first_copy_%s", sfx);
		snprintf(what, sizeof(what), "%s: first copy", arm[i].what);
		report_series_median(r, &s, f, name, what);
		snprintf(name, sizeof(name), "repeat_copy_%s", sfx);
		report_series_median(r, &s, f + 1, name, "the same copy again, after 1 ms busy");
		snprintf(name, sizeof(name), "warm_copy_%s", sfx);
		report_series_median(r, &s, f + 2, name, "and again, back to back");
		snprintf(name, sizeof(name), "first/repeat%s%s", f == FT_PF ? "" : "_", f == FT_PF ? "" : sfx);
		report_series_ratio(r, &s, f, f + 1, name);
		if (f == FT_PF)
			report_series_target(r, &s, f, f + 1, name, 1.2, false,
					     "first copy <= 1.2 x repeat (both after idle)");
		snprintf(name, sizeof(name), "first/warm_%s", sfx);
		report_series_ratio(r, &s, f, f + 2, name);
		snprintf(name, sizeof(name), "repeat/warm_%s", sfx);
		report_series_ratio(r, &s, f + 1, f + 2, name);
	}
}

/* One copy series (layout @k, @size): interleaved rounds, medians, ratios and targets. */
static void p2p_copy_series(struct bench_report *r, struct p2p_ctx *x, int k, uint64_t size)
{
	static const char *const layout[] = { "1range", "8range" };
	static const char *const cname[] = { "engine1", "engineN", "memcpy1", "memcpyN" };
	static struct bench_series s;
	unsigned int nch = x->m->nchan;
	double ms[4], gb[4], bytes;
	char name[64], what[96];

	x->k = k;
	x->size = size;
	/* Enough descriptors per sample to move >= 128 MiB (and <= 1024). */
	x->count = (unsigned int)MIN(1024, MAX(4, (128ull << 20) / size));
	x->calls = 0;
	bytes = (double)size * x->count;
	snprintf(name, sizeof(name), "%s %llu KiB", layout[k], (unsigned long long)(size >> 10));
	bench_series_init(&s, name, 4, P2P_NFIG);
	/*
	 * Watched per round, as time ratios (engine / memcpy <= 1 / 0.9 is
	 * the throughput target >= 0.9): 1 channel vs 1-thread memcpy, N
	 * channels vs the faster memcpy; limits from the sizes they apply to.
	 */
	s.npairs = 2;
	s.pair[0] = (struct bench_pair){ .num = P2P_ENGINE1, .den = P2P_MEMCPY1,
					 .max_ratio = size >= (2ull << 20) ? 1 / 0.9 : 0 };
	s.pair[1] = (struct bench_pair){ .num = P2P_ENGINEN, .den = P2P_BEST,
					 .max_ratio = size >= (8ull << 20) ? 1 / 0.9 : 0 };
	bench_interleave(r, &s, 7, p2p_copy_sample, x);

	snprintf(what, sizeof(what), "%u copies of %llu KiB", x->count,
		 (unsigned long long)(size >> 10));
	for (int c = 0; c < 4; c++) {
		snprintf(name, sizeof(name), "%s_%s_%lluK", cname[c], layout[k],
			 (unsigned long long)(size >> 10));
		ms[c] = report_series_median(r, &s, (unsigned int)c, name, what);
		gb[c] = bytes / (ms[c] * 1e6);
	}
	if (!r_json(r))
		printf("   %-28s engine 1ch %.2f, %uch %.2f GB/s; memcpy 1t %.2f, %ut %.2f GB/s (medians)\n",
		       "", gb[0], nch, gb[1], gb[2], nch, gb[3]);
	/* Throughput ratios per round: memcpy time / engine time. */
	snprintf(name, sizeof(name), "%s_%lluK_engine1/memcpy1", layout[k],
		 (unsigned long long)(size >> 10));
	report_series_ratio(r, &s, P2P_MEMCPY1, P2P_ENGINE1, name);
	if (size >= (2ull << 20))
		report_series_target(r, &s, P2P_MEMCPY1, P2P_ENGINE1, name, 0.9, true,
				     ">= 0.9 x 1-thread memcpy (1 channel)");
	snprintf(name, sizeof(name), "%s_%lluK_engineN/best_memcpy", layout[k],
		 (unsigned long long)(size >> 10));
	report_series_ratio(r, &s, P2P_BEST, P2P_ENGINEN, name);
	if (size >= (8ull << 20))
		report_series_target(r, &s, P2P_BEST, P2P_ENGINEN, name, 0.9, true,
				     ">= 0.9 x best of 1- and N-thread memcpy (per round)");
}

static int bench_p2p(const struct bench_opts *o)
{
	static const uint64_t sizes[] = { 4096, 65536, 2ull << 20, 8ull << 20, 16ull << 20,
					  64ull << 20 };
	struct bench_report *r = report_new("p2p", o);
	struct p2p_pci_dev *cepci;
	struct p2p_vfio_device *cev;
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas;
	struct p2p_side a, b;
	struct memcpy_pool pool;
	struct ce_multi *m = calloc(1, sizeof(*m));
	struct p2p_ctx x;
	unsigned int nch;
	char txt[128];
	uint32_t id;
	int ret;

	if (!m)
		die("calloc", ENOMEM);
	report_fact(r, "copy", "BAR of device A -> BAR of device B, through dma-bufs in the engine's IOAS");
	report_fact(r, "baseline", "memcpy between the CPU mappings of the same two dma-bufs, 1 and N threads (a pool started once), interleaved round by round");
	if ((ret = p2p_copy_engine_create("0000:c0:00.0", NULL, 3, &cepci)) ||
	    (ret = p2p_vfio_device_open(cepci, &cev)) || (ret = p2p_iommufd_open(&ctx)) ||
	    (ret = p2p_ioas_alloc(ctx, &id, &ioas)) ||
	    (ret = p2p_vfio_device_attach_ioas(cev, ioas)) ||
	    (ret = ce_multi_init(m, cev, ioas, 1024, 0)))
		die("copy engine", ret);
	nch = m->nchan;
	snprintf(txt, sizeof(txt), "%u (one per online core); N = %u", nch, nch);
	report_fact(r, "channels", txt);
	report_fact(r, "split", "copies >= 512 KiB: one piece per channel; smaller: round robin");
	report_fact(r, "ratios", "per round: memcpy time / engine time (throughput engine / memcpy); best = the faster memcpy of the round");
	pool_start(&pool, nch);
	p2p_side_init(&a, "0000:c1:00.0", ioas);
	p2p_side_init(&b, "0000:c2:00.0", ioas);
	x = (struct p2p_ctx){ .m = m, .ioas = ioas, .pool = &pool, .a = &a, .b = &b };

	for (int k = 0; k < 2; k++)
		for (size_t si = 0; si < ARRAY_SIZE(sizes); si++)
			p2p_copy_series(r, &x, k, sizes[si]);
	p2p_first_touch(r, &x);
	ce_multi_fini(m);
	p2p_side_fini(&a, ioas);
	p2p_side_fini(&b, ioas);
	pool_stop(&pool);
	p2p_vfio_device_close(cev);
	p2p_pci_dev_put(cepci);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ctx);
	free(m);
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
	fprintf(f, "usage: p2pbuf bench {mmap|revoke|p2p|iova|io|heap|storage|preload|vfio-user|all} [--json] [--strict] [-n ROUNDS] [-s SIZE]\n"
		   "                    [--max-rounds N] [--max-time SEC] [--plot FILE.svg|DIR]\n"
		   "  --json       print one JSON object per benchmark (medians and spreads, ratios, targets)\n"
		   "  --strict     exit 1 if a target is missed, else 3 if one is unsettled\n"
		   "  -n, --iterations N   the minimum rounds per series (each figure's median is over its rounds)\n"
		   "  --max-rounds N       rounds at most while the spread settles (default 3 x the minimum, <= 64)\n"
		   "  --max-time SEC       seconds at most per series while it settles (default 20)\n"
		   "  -s, --size SIZE      buffer size (default 512M; preload: the BAR, 256M;\n"
		   "                       vfio-user: the BAR, 64M)\n"
		   "  --plot FILE.svg      draw each benchmark's figures beside their baselines with gnuplot\n"
		   "                       (a directory: DIR/BENCH.svg; with all: FILE-BENCH.svg)\n");
}

/* Is @prog an executable in $PATH? */
static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[4096];

	while (path && *path) {
		const char *end = strchr(path, ':');
		size_t len = end ? (size_t)(end - path) : strlen(path);

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, prog);
		if (len && !access(buf, X_OK))
			return true;
		path = end ? end + 1 : NULL;
	}
	return false;
}

/* Exit statuses combined over `all`: 1 (missed, failed) wins over 3 (unsettled). */
static int worst(int a, int b)
{
	return a == 1 || b == 1 ? 1 : a ? a : b;
}

int cmd_bench(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },	 { "strict", no_argument, NULL, 'S' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' }, { "help", no_argument, NULL, 'h' },
		{ "plot", required_argument, NULL, 'P' },
		{ "max-rounds", required_argument, NULL, 'R' },
		{ "max-time", required_argument, NULL, 'T' },
		{ 0 },
	};
	struct bench_opts o = { 0 };
	const char *name;
	char *end;
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
		case 'R':
			errno = 0;
			{
				unsigned long v = strtoul(optarg, &end, 0);

				if (errno || *end || !v || v > BENCH_MAX_ROUNDS) {
					fprintf(stderr, "p2pbuf bench: bad %s '%s' (1-%u)\n",
						c == 'n' ? "--iterations" : "--max-rounds", optarg,
						BENCH_MAX_ROUNDS);
					return 2;
				}
				*(c == 'n' ? &o.iterations : &o.max_rounds) = (unsigned int)v;
			}
			break;
		case 'T':
			o.max_seconds = strtod(optarg, &end);
			if (*end || !(o.max_seconds > 0)) {
				fprintf(stderr, "p2pbuf bench: bad --max-time '%s'\n", optarg);
				return 2;
			}
			break;
		case 'P':
			if (!*optarg) {
				fprintf(stderr, "p2pbuf bench: --plot needs a file name\n");
				return 2;
			}
			o.plot = optarg;
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
	if (o.plot && !in_path("gnuplot")) {
		fprintf(stderr, "p2pbuf bench: --plot needs gnuplot in PATH (Debian: apt-get install gnuplot-nox)\n");
		return 1;
	}
	p2p_library_init();
	for (size_t i = 0; i < ARRAY_SIZE(benches); i++) {
		if (!strcmp(name, "all")) {
			struct bench_opts one = o;
			char path[4096];
			struct stat st;

			/* One SVG per benchmark: FILE-BENCH.svg (or DIR/BENCH.svg). */
			if (o.plot && (stat(o.plot, &st) || !S_ISDIR(st.st_mode))) {
				size_t len = strlen(o.plot);

				if (len > 4 && !strcmp(o.plot + len - 4, ".svg"))
					len -= 4;
				snprintf(path, sizeof(path), "%.*s-%s.svg", (int)len, o.plot,
					 benches[i].name);
				one.plot = path;
			}
			ret = worst(ret, benches[i].run(&one));
		} else if (!strcmp(name, benches[i].name)) {
			return benches[i].run(&o);
		}
	}
	if (!strcmp(name, "all"))
		return ret;
	fprintf(stderr, "p2pbuf bench: unknown benchmark '%s' (mmap, revoke, p2p, iova, io, heap, storage, preload, vfio-user, all)\n",
		name);
	return 2;
}
