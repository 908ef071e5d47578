// SPDX-License-Identifier: MIT
/*
 * p2pbuf run: the main job.  A short, readable walkthrough of the
 * foundation on embedded default devices: export a multi-range dma-buf of
 * a GPU-like BAR, map it, write and verify, revoke it by turning memory
 * decoding off (faults caught and reported, a new attach refused),
 * restore it with the data intact, FLR; then peer to peer: a copy engine
 * DMAs between system memory and the BAR through the dma-buf mapped in its
 * IO address space, a reset in the middle of a stream of copies revokes
 * it (no byte lands afterwards), and unmap + remap carries on; finally
 * close the device for good.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <setjmp.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pthread.h>

#include "ce_driver.h"
#include "cli.h"

static uint64_t t_step;
static int step_no;
static bool failed;

static void step(const char *fmt, ...)
{
	va_list ap;

	t_step = now_ns();
	printf("\n[%d] ", ++step_no);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static void say(const char *fmt, ...)
{
	va_list ap;

	printf("    ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static void done(void)
{
	printf("    (%.3f ms)\n", (double)(now_ns() - t_step) / 1e6);
}

static void expect(bool ok, const char *what)
{
	say("%s %s", ok ? "ok:" : "UNEXPECTED:", what);
	if (!ok)
		failed = true;
}

static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_armed;
static void *volatile fault_addr;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (!fault_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
	fault_addr = si->si_addr;
	siglongjmp(fault_jmp, sig);
}

/* Read one byte; returns the signal number it raised, or 0. */
static int probe_read(const volatile uint8_t *p, uint8_t *out)
{
	int sig = sigsetjmp(fault_jmp, 1);

	if (!sig) {
		fault_armed = 1;
		*out = *p;
	}
	fault_armed = 0;
	return sig;
}

static uint64_t checksum(const uint8_t *p, uint64_t len)
{
	uint64_t h = 1469598103934665603ull;

	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v;

		memcpy(&v, p + i, 8);
		h = (h ^ v) * 1099511628211ull;
	}
	return h;
}

static void invalidate(struct p2p_attachment *a)
{
	struct p2p_sgt **sgt = p2p_attachment_importer_priv(a);

	say("importer: invalidate_mappings() called, unmapping");
	if (*sgt)
		p2p_attachment_unmap(a, *sgt);
	*sgt = NULL;
}

static const struct p2p_dmabuf_importer_ops importer_ops = { .invalidate_mappings = invalidate };

/* ---------------------------------------------------------------------- */
/* Peer to peer through the copy engine                                    */

#define CHUNK (1ull << 20)
#define MIN(a, b) ((a) < (b) ? (a) : (b))

static uint64_t p2p_win; /* bytes of the peer-to-peer window */

struct stream {
	struct ce_drv *drv;
	uint64_t src, dst;
	atomic_bool stop;
	atomic_uint ok, revoked, other;
};

static void *stream_thread(void *arg)
{
	struct stream *st = arg;
	uint32_t i = 0;

	while (!atomic_load(&st->stop)) {
		uint64_t off = (i++ * CHUNK) % p2p_win;
		uint32_t status = ce_drv_copy(st->drv, st->src + off, st->dst + off, CHUNK);

		if (status == P2P_CE_OK)
			atomic_fetch_add(&st->ok, 1);
		else if (status == P2P_CE_REVOKED)
			atomic_fetch_add(&st->revoked, 1);
		else
			atomic_fetch_add(&st->other, 1);
	}
	return NULL;
}

static int run_p2p(struct p2p_pci_dev *gpu, struct p2p_vfio_device *gvdev, uint64_t vram)
{
	const uint32_t rw = P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE;
	/* The last quarter of VRAM (at most 32 MiB): clear of the 3-range dma-buf. */
	struct vfio_region_dma_range win = { vram - MIN(vram / 4, 32ull << 20),
					     MIN(vram / 4, 32ull << 20) };
	struct p2p_pci_dev *cepci;
	struct p2p_vfio_device *cev;
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas;
	struct ce_drv drv;
	struct stream st = { 0 };
	uint64_t src_iova = 0, back_iova = 0, vram_iova = 0, t0;
	uint8_t *src, *back, *bar = p2p_mem_ptr(p2p_pci_dev_bar_mem(gpu, 2), win.offset), *canary;
	uint32_t id, status;
	pthread_t th;
	int fd, ret;

	p2p_win = win.length;
	step("Plug in a copy engine 0000:02:00.0 and give it an IO address space");
	if ((ret = p2p_copy_engine_create("0000:02:00.0", NULL, 2, &cepci)) ||
	    (ret = p2p_vfio_device_open(cepci, &cev)) || (ret = p2p_iommufd_open(&ctx)) ||
	    (ret = p2p_ioas_alloc(ctx, &id, &ioas)) ||
	    (ret = p2p_vfio_device_attach_ioas(cev, ioas)) ||
	    (ret = ce_drv_init(&drv, cev, ioas, 256))) {
		fprintf(stderr, "p2pbuf run: copy engine: %s\n", strerror(-ret));
		return 1;
	}
	src = aligned_alloc(4096, p2p_win);
	back = aligned_alloc(4096, p2p_win);
	canary = malloc(p2p_win);
	for (uint64_t i = 0; i < p2p_win; i++)
		src[i] = (uint8_t)(i * 7 + (i >> 12));
	ret = p2p_ioas_map(ioas, src, p2p_win, &src_iova, rw);
	ret = ret ? ret : p2p_ioas_map(ioas, back, p2p_win, &back_iova, rw);
	fd = p2p_vfio_device_get_dmabuf(gvdev, 2, &win, 1, O_RDWR | O_CLOEXEC);
	ret = ret ? ret : (fd < 0 ? fd : p2p_ioas_map_file(ioas, fd, 0, p2p_win, &vram_iova, rw));
	if (ret) {
		fprintf(stderr, "p2pbuf run: IOAS setup: %s\n", strerror(-ret));
		return 1;
	}
	say("IOAS %u: system memory at IOVA 0x%llx, readback at 0x%llx", id,
	    (unsigned long long)src_iova, (unsigned long long)back_iova);
	say("GPU VRAM window (BAR2 +0x%llx, %llu MiB) as a dma-buf at IOVA 0x%llx (IOMMU_IOAS_MAP_FILE)",
	    (unsigned long long)win.offset, (unsigned long long)(p2p_win >> 20),
	    (unsigned long long)vram_iova);
	done();

	step("DMA system memory -> GPU VRAM and back, peer to peer through the dma-buf");
	t0 = now_ns();
	status = ce_drv_copy(&drv, src_iova, vram_iova, p2p_win);
	say("engine: %llu MiB into VRAM: %s (%.2f GB/s)", (unsigned long long)(p2p_win >> 20),
	    p2p_ce_status_name(status), (double)p2p_win / (double)(now_ns() - t0));
	status = ce_drv_copy(&drv, vram_iova, back_iova, p2p_win);
	say("engine: VRAM back to system memory: %s", p2p_ce_status_name(status));
	expect(!memcmp(bar, src, p2p_win), "VRAM holds the data, byte for byte");
	expect(!memcmp(back, src, p2p_win), "the readback matches, byte for byte");
	done();

	step("Reset the GPU (FLR) in the middle of a stream of copies into its VRAM");
	memset(src, 0x5a, p2p_win); /* the stream writes a new pattern */
	st.drv = &drv;
	st.src = src_iova;
	st.dst = vram_iova;
	pthread_create(&th, NULL, stream_thread, &st);
	while (atomic_load(&st.ok) < 16u)
		sched_yield();
	{
		uint32_t ctl;

		p2p_vfio_config_read(gvdev, P2P_PCI_EXP_DEVCTL, 2, &ctl);
		p2p_vfio_config_write(gvdev, P2P_PCI_EXP_DEVCTL, 2, ctl | P2P_PCI_EXP_DEVCTL_BCR_FLR);
	}
	/* The revoke has returned: from here on not one byte may land. */
	memcpy(canary, bar, p2p_win);
	{
		unsigned int seen = atomic_load(&st.revoked);

		while (atomic_load(&st.revoked) < seen + 32)
			sched_yield();
	}
	atomic_store(&st.stop, true);
	pthread_join(th, NULL);
	say("stream: %u copies ok before the reset, %u failed with \"revoked\" after it, %u other",
	    atomic_load(&st.ok), atomic_load(&st.revoked), atomic_load(&st.other));
	expect(atomic_load(&st.revoked) >= 32 && !atomic_load(&st.other),
	       "every descriptor after the revoke reports \"revoked\"");
	expect(!memcmp(canary, bar, p2p_win), "no byte landed in VRAM after the revoke returned");
	expect(ce_drv_copy(&drv, src_iova, vram_iova, 4096) == P2P_CE_REVOKED,
	       "the IOAS never remaps on its own, even though the GPU is back");
	done();

	step("Unmap the stale IOVA range, map the dma-buf again at the same IOVA, carry on");
	{
		uint64_t again = vram_iova;

		ret = p2p_ioas_unmap(ioas, vram_iova, p2p_win, NULL);
		ret = ret ? ret : p2p_ioas_map_file(ioas, fd, 0, p2p_win, &again,
						     rw | P2P_IOAS_MAP_FIXED_IOVA);
		expect(!ret && again == vram_iova, "IOMMU_IOAS_UNMAP + MAP_FILE with FIXED_IOVA");
	}
	status = ce_drv_copy(&drv, src_iova, vram_iova, p2p_win);
	say("engine: %s", p2p_ce_status_name(status));
	expect(status == P2P_CE_OK && !memcmp(bar, src, p2p_win),
	       "the stream carries on, data verified");
	done();

	ce_drv_fini(&drv);
	p2p_ioas_unmap(ioas, 0, 0, NULL);
	p2p_vfio_device_close(cev);
	p2p_pci_dev_put(cepci);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ctx);
	p2p_close(fd);
	free(src);
	free(back);
	free(canary);
	return 0;
}

static void run_usage(FILE *f)
{
	fprintf(f, "usage: p2pbuf run [--vram SIZE]\n"
		   "  The main job: a walkthrough on an emulated GPU-like PCI function.\n"
		   "  --vram SIZE   size of the memory BAR (power of two, >= 16M; default 256M)\n");
}

int cmd_run(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "vram", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t vram = 256ull << 20, mib, len, sum_before, sum_after;
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	struct p2p_attach_info ai = {
		.argsz = sizeof(ai),
		.flags = P2P_ATTACH_PEER2PEER,
		.importer_ops = &importer_ops,
		.name = "walkthrough",
	};
	struct vfio_region_dma_range ranges[3];
	struct p2p_attachment *attach, *attach2;
	struct p2p_sgt *sgt = NULL;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dmabuf *buf;
	uint8_t *va, *bar, byte;
	int c, fd, ret, sig;

	while ((c = getopt_long(argc, argv, "v:h", lo, NULL)) != -1) {
		switch (c) {
		case 'v':
			vram = cli_parse_size(optarg);
			if (vram < (16ull << 20) || (vram & (vram - 1))) {
				fprintf(stderr, "p2pbuf run: --vram must be a power of two >= 16M\n");
				return 2;
			}
			break;
		case 'h': run_usage(stdout); return 0;
		default: run_usage(stderr); return 2;
		}
	}
	sigaction(SIGBUS, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	ret = p2p_library_init();
	if (ret) {
		fprintf(stderr, "p2pbuf run: userfaultfd unavailable (%s): cannot revoke CPU mappings\n",
			strerror(-ret));
		return 1;
	}
	mib = vram >> 20;
	printf("p2pbuf run: dma-buf export, mmap, revocation and peer-to-peer DMA on emulated devices\n");
	printf("pages: %s\n", hugepage_mode_name());

	step("Plug in a GPU-like PCI function 0000:01:00.0 with a %llu MiB memory BAR and open it",
	     (unsigned long long)mib);
	ret = cli_gpu_create("0000:01:00.0", vram, NULL, 1, &pci, &vdev);
	if (ret) {
		fprintf(stderr, "p2pbuf run: device: %s\n", strerror(-ret));
		return 1;
	}
	bar = p2p_mem_ptr(p2p_pci_dev_bar_mem(pci, 2), 0);
	say("device fd %d, BAR2 at region offset 0x%llx, memory decoding %s",
	    p2p_vfio_device_fd(vdev), (unsigned long long)P2P_VFIO_REGION_OFFSET(2),
	    p2p_pci_dev_memory_enabled(pci) ? "on" : "off");
	done();

	/* Three scattered runs, out of order: the dma-buf is their concatenation. */
	ranges[0] = (struct vfio_region_dma_range){ vram / 2, vram / 4 };
	ranges[1] = (struct vfio_region_dma_range){ 0, vram / 8 };
	ranges[2] = (struct vfio_region_dma_range){ vram / 4 + 4096, vram / 16 };
	len = ranges[0].length + ranges[1].length + ranges[2].length;
	step("Export 3 ranges of BAR2 as one dma-buf (VFIO_DEVICE_FEATURE_DMA_BUF)");
	fd = p2p_vfio_device_get_dmabuf(vdev, 2, ranges, 3, O_RDWR | O_CLOEXEC);
	if (fd < 0 || (ret = p2p_dmabuf_get(fd, &buf))) {
		fprintf(stderr, "p2pbuf run: DMA_BUF: %s\n", strerror(fd < 0 ? -fd : -ret));
		return 1;
	}
	for (int i = 0; i < 3; i++)
		say("range %d: BAR offset 0x%08llx, %llu MiB", i,
		    (unsigned long long)ranges[i].offset,
		    (unsigned long long)(ranges[i].length >> 20));
	say("dma-buf fd %d, \"%s\", %llu MiB", fd, p2p_dmabuf_name(buf),
	    (unsigned long long)(p2p_dmabuf_size(buf) >> 20));
	done();

	step("mmap the dma-buf: one contiguous VA range, populated in runs");
	ret = p2p_dmabuf_mmap(buf, NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, 0, (void **)&va);
	if (ret) {
		fprintf(stderr, "p2pbuf run: mmap: %s\n", strerror(-ret));
		return 1;
	}
	say("mapped at %p, %llu MiB", (void *)va, (unsigned long long)(len >> 20));
	done();

	step("Write a pattern through the mapping and verify it in device memory");
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = i * 0x9e3779b97f4a7c15ull;

		memcpy(va + i, &v, 8);
	}
	sum_before = checksum(va, len);
	{
		uint64_t off = 0;
		bool ok = true;

		for (int i = 0; i < 3; i++) {
			ok &= !memcmp(va + off, bar + ranges[i].offset, ranges[i].length);
			off += ranges[i].length;
		}
		expect(ok, "every range's bytes landed at its BAR offset");
	}
	say("checksum %016llx", (unsigned long long)sum_before);
	done();

	step("Attach a peer-to-peer importer and map it");
	ai.importer_priv = &sgt;
	ret = p2p_dmabuf_attach(buf, &ai, &attach);
	expect(!ret, "attach (peer2peer, revocable)");
	p2p_dmabuf_resv_lock(buf);
	ret = ret ? ret : p2p_attachment_map(attach, &sgt);
	p2p_dmabuf_resv_unlock(buf);
	expect(!ret && sgt && sgt->nents == 3, "map returns the 3 physical ranges in order");
	done();

	step("Clear COMMAND.MEM (memory decoding off): every importer is revoked");
	cli_mem_enable(vdev, false);
	expect(sgt == NULL, "the importer unmapped before the revoke returned");
	sig = probe_read(va + len / 2, &byte);
	say("CPU read at %p: %s", (void *)(va + len / 2),
	    sig == SIGBUS ? "SIGBUS (caught)" : "no fault");
	expect(sig == SIGBUS && fault_addr == va + len / 2, "access faults, at the exact address");
	ret = p2p_dmabuf_attach(buf, &ai, &attach2);
	say("new attach: %s", ret ? strerror(-ret) : "succeeded");
	expect(ret == -ENODEV, "a new attach fails with ENODEV");
	if (!ret)
		p2p_dmabuf_detach(attach2);
	done();

	step("Set COMMAND.MEM again: access is restored, the data is intact");
	cli_mem_enable(vdev, true);
	sig = probe_read(va + len / 2, &byte);
	expect(!sig, "the same mapping works again");
	sum_after = checksum(va, len);
	say("checksum %016llx", (unsigned long long)sum_after);
	expect(sum_after == sum_before, "contents unchanged");
	p2p_dmabuf_resv_lock(buf);
	ret = p2p_attachment_map(attach, &sgt);
	p2p_dmabuf_resv_unlock(buf);
	expect(!ret, "the importer maps again on its own (un-revoke is passive)");
	done();

	step("Function-level reset through PCIe DEVCTL.BCR_FLR");
	{
		uint32_t ctl;

		p2p_vfio_config_read(vdev, P2P_PCI_EXP_DEVCTL, 2, &ctl);
		p2p_vfio_config_write(vdev, P2P_PCI_EXP_DEVCTL, 2, ctl | P2P_PCI_EXP_DEVCTL_BCR_FLR);
	}
	expect(sgt == NULL, "the importer was revoked during the FLR");
	expect(!probe_read(va, &byte) && checksum(va, len) == sum_before,
	       "after the FLR the mapping works and the data is intact");
	done();

	if (run_p2p(pci, vdev, vram))
		return 1;

	step("Close the device: its dma-bufs are revoked for good");
	p2p_vfio_device_close(vdev);
	say("device closed, dma-buf fd %d still open", fd);
	expect(probe_read(va, &byte) == SIGBUS, "the mapping now faults");
	ret = p2p_dmabuf_attach(buf, &ai, &attach2);
	expect(ret == -ENODEV, "attach fails with ENODEV");
	{
		void *va2;

		ret = p2p_dmabuf_mmap(buf, NULL, 4096, PROT_READ, MAP_SHARED, 0, &va2);
		expect(ret == -ENODEV, "a new mmap fails with ENODEV");
	}
	p2p_dmabuf_detach(attach);
	p2p_munmap(va, len);
	p2p_dmabuf_put(buf);
	expect(p2p_close(fd) == 0, "the dma-buf fd closes cleanly");
	p2p_pci_dev_put(pci);
	done();

	printf("\n%s\n", failed ? "p2pbuf run: FAILED" : "p2pbuf run: all steps behaved as the kernel does");
	return failed ? 1 : 0;
}
