// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench storage: the emulated storage device reads a page-cached
 * image (default 256 MiB) in 128 KiB and 1 MiB commands at queue depth 32
 *   (a) into a peer's BAR: a GPU-like function's BAR2 exported as a dma-buf
 *       and mapped in the storage device's IOAS (storage -> device memory);
 *   (b) into system memory mapped with p2p_ioas_map (same size, same page
 *       policy as the BAR: a memfd mapping);
 *   (c) raw: io_uring reads of the same blocks at the same depth straight
 *       into (b)'s memory, no device in between.
 * Interleaved round by round (a, b and c in a rotating order), rounds until
 * the spread settles (bench_interleave()), medians of whole-image passes
 * after a checked warm-up pass.  Target: a/b throughput >= 0.9.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli.h"
#include "sd_driver.h"

#define QD 32
#define ENTRIES 64

#define die bench_die

/* System memory like the BAR's: a populated memfd mapping, THP if p2pbuf uses it. */
static uint8_t *sys_map(uint64_t size, int *fdp)
{
	*fdp = raw_memfd(size);
	return raw_mmap(*fdp, size, true);
}

/* One pass over the image through the device into [iova, +size), QD commands in flight. */
static uint64_t pass_device(struct sd_drv *drv, uint64_t iova, uint64_t size, uint64_t bs)
{
	uint32_t nb = (uint32_t)(bs / P2P_SD_BLOCK), total = (uint32_t)(size / bs);
	uint32_t sub = 0, done = 0;
	struct p2p_sd_cqe cqe[ENTRIES];
	uint64_t t0 = now_ns();
	int ret;

	while (done < total) {
		uint32_t n, start = sub;

		while (sub < total && sub - done < QD) {
			ret = sd_drv_read(drv, (uint64_t)sub * nb, nb, iova + (uint64_t)sub * bs,
					  P2P_SD_CMD_IRQ, sub);
			if (ret < 0)
				die("submit", ret);
			sub++;
		}
		if (sub != start && (ret = sd_drv_kick(drv)))
			die("doorbell", ret);
		if ((ret = sd_drv_wait(drv, 1, 60000)) < 0)
			die("wait", ret);
		n = sd_drv_reap(drv, cqe, ENTRIES);
		for (uint32_t i = 0; i < n; i++)
			if (cqe[i].status != P2P_SD_OK || cqe[i].bytes != bs) {
				fprintf(stderr, "p2pbuf bench storage: command %u: %s\n", cqe[i].id,
					p2p_sd_status_name(cqe[i].status));
				exit(1);
			}
		done += n;
	}
	return now_ns() - t0;
}

static bool same_as_file(int fd, const uint8_t *mem, uint64_t size)
{
	size_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk);
	bool ok = buf != NULL;

	for (uint64_t off = 0; ok && off < size; off += chunk)
		ok = pread(fd, buf, chunk, (off_t)off) == (ssize_t)chunk &&
		     !memcmp(buf, mem + off, chunk);
	free(buf);
	return ok;
}

/* Figure 0: into system memory (b), 1: into the peer BAR (a), 2: raw io_uring (c). */
struct storage_ctx {
	struct sd_drv *drv;
	struct io_uring *ring;
	uint64_t bar_iova, sys_iova, size, bs;
	uint8_t *sys;
	int img;
};

static void storage_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct storage_ctx *x = c;

	if (arm == 2)
		row[2] = raw_uring_read(x->ring, x->img, x->sys, x->size, (uint32_t)x->bs, QD,
					false);
	else
		row[arm] = pass_device(x->drv, arm ? x->bar_iova : x->sys_iova, x->size, x->bs);
}

int bench_storage(const struct bench_opts *o)
{
	static const uint64_t sizes[] = { 128 << 10, 1 << 20 };
	uint64_t size = o->size ? o->size : 256ull << 20;
	struct bench_report *r = report_new("storage", o);
	struct bench_series s;
	struct vfio_region_dma_range whole = { 0, size };
	struct p2p_pci_dev *sdpci, *gpupci;
	struct p2p_vfio_device *sdv, *gpuv;
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas;
	uint64_t bar_iova = 0, sys_iova = 0;
	struct io_uring ring;
	struct sd_drv drv;
	uint8_t *sys, *bar;
	char path[4096], txt[96];
	int img, sysfd, dbuf, ret;
	uint32_t id;

	snprintf(txt, sizeof(txt), "%llu MiB, page-cached, QD %d, one interrupt per command",
		 (unsigned long long)(size >> 20), QD);
	report_fact(r, "image", txt);
	report_fact(r, "a", "storage device -> GPU BAR2 (dma-buf in the device's IOAS)");
	report_fact(r, "b", "storage device -> system memory (memfd, p2p_ioas_map)");
	report_fact(r, "c", "raw io_uring reads, same depth, into b's memory (no device)");
	report_fact(r, "pages", hugepage_mode_name());
	report_plot_axis(r, "GB/s (median, min-max)", false);

	img = bench_data_file(size, path, sizeof(path));
	if ((ret = p2p_iommufd_open(&ctx)) || (ret = p2p_ioas_alloc(ctx, &id, &ioas)))
		die("iommufd", ret);
	if ((ret = p2p_storage_create("0000:d0:00.0", NULL, 4, path, 0, &sdpci)))
		die("storage device", ret);
	unlink(path);
	if ((ret = p2p_vfio_device_open(sdpci, &sdv)) ||
	    (ret = p2p_vfio_device_attach_ioas(sdv, ioas)) ||
	    (ret = sd_drv_init(&drv, sdv, ioas, ENTRIES)))
		die("storage driver", ret);

	if ((ret = cli_gpu_create("0000:d1:00.0", size, NULL, 5, &gpupci, &gpuv)) ||
	    (ret = cli_mem_enable(gpuv, true)))
		die("GPU", ret);
	dbuf = p2p_vfio_device_get_dmabuf(gpuv, 2, &whole, 1, O_RDWR | O_CLOEXEC);
	if (dbuf < 0)
		die("DMA_BUF", dbuf);
	if ((ret = p2p_ioas_map_file(ioas, dbuf, 0, size, &bar_iova,
				     P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE)))
		die("IOAS map_file", ret);
	bar = p2p_mem_ptr(p2p_pci_dev_bar_mem(gpupci, 2), 0);
	memset(bar, 0, size); /* VRAM populated, as system memory is */

	sys = sys_map(size, &sysfd);
	if ((ret = p2p_ioas_map(ioas, sys, size, &sys_iova,
				P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE)))
		die("IOAS map", ret);
	if ((ret = io_uring_queue_init(ENTRIES, &ring, 0)))
		die("io_uring", ret);

	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		uint64_t bs = sizes[si];
		double ma, mb, mc, gb = (double)size / 1e9;
		char name[64], what[96];

		/* Warm-up, and the data is checked once. */
		pass_device(&drv, bar_iova, size, bs);
		pass_device(&drv, sys_iova, size, bs);
		raw_uring_read(&ring, img, sys, size, (uint32_t)bs, QD, false);
		if (!same_as_file(img, bar, size) || !same_as_file(img, sys, size))
			die("data check", EIO);
		memset(bar, 0, size);
		memset(sys, 0, size);
		{
			struct storage_ctx x = { &drv, &ring, bar_iova, sys_iova, size, bs, sys, img };

			snprintf(name, sizeof(name), "%llu KiB blocks", (unsigned long long)(bs >> 10));
			bench_series_init(&s, name, 3, 3);
			s.npairs = 1;
			s.pair[0].max_ratio = 1 / 0.9; /* peer time <= system time / 0.9 */
			bench_interleave(r, &s, 7, storage_sample, &x);
		}
		if (!same_as_file(img, bar, size) || !same_as_file(img, sys, size))
			die("data check", EIO);
		snprintf(what, sizeof(what), "%llu commands of %llu KiB",
			 (unsigned long long)(size / bs), (unsigned long long)(bs >> 10));
		snprintf(name, sizeof(name), "a_peer_bar_%lluK", (unsigned long long)(bs >> 10));
		ma = report_series_median(r, &s, 1, name, what);
		snprintf(name, sizeof(name), "b_system_%lluK", (unsigned long long)(bs >> 10));
		mb = report_series_median(r, &s, 0, name, what);
		snprintf(name, sizeof(name), "c_raw_uring_%lluK", (unsigned long long)(bs >> 10));
		mc = report_series_median(r, &s, 2, name, "io_uring reads, no device");
		if (!o->json)
			printf("   %-28s peer %.2f GB/s, system %.2f GB/s, raw %.2f GB/s\n", "",
			       gb / (ma / 1e3), gb / (mb / 1e3), gb / (mc / 1e3));
		snprintf(name, sizeof(name), "%lluK_peer_GBps", (unsigned long long)(bs >> 10));
		report_ratio(r, name, gb / (ma / 1e3));
		snprintf(name, sizeof(name), "%lluK_system_GBps", (unsigned long long)(bs >> 10));
		report_ratio(r, name, gb / (mb / 1e3));
		snprintf(name, sizeof(name), "%lluK_raw_GBps", (unsigned long long)(bs >> 10));
		report_ratio(r, name, gb / (mc / 1e3));
		/* Throughput ratios, per round: time of the other over time of this one. */
		snprintf(name, sizeof(name), "%lluK_system/raw", (unsigned long long)(bs >> 10));
		report_series_ratio(r, &s, 2, 0, name);
		snprintf(name, sizeof(name), "%lluK_peer/system", (unsigned long long)(bs >> 10));
		report_series_ratio(r, &s, 0, 1, name);
		report_series_target(r, &s, 0, 1, name, 0.9, true, "peer >= 0.9 x system memory");
		snprintf(name, sizeof(name), "%llu KiB", (unsigned long long)(bs >> 10));
		report_series_plot(r, &s, 1, name, "p2pbuf storage -> peer BAR", (double)size);
		report_series_plot(r, &s, 0, name, "storage -> system memory", (double)size);
		report_series_plot(r, &s, 2, name, "raw io_uring", (double)size);
	}

	io_uring_queue_exit(&ring);
	sd_drv_fini(&drv);
	p2p_ioas_unmap(ioas, sys_iova, size, NULL);
	p2p_ioas_unmap(ioas, bar_iova, size, NULL);
	munmap(sys, size);
	close(sysfd);
	p2p_close(dbuf);
	p2p_vfio_device_close(gpuv);
	p2p_pci_dev_put(gpupci);
	p2p_vfio_device_close(sdv);
	p2p_pci_dev_put(sdpci);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ctx);
	close(img);
	return report_finish(r);
}
