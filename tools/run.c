// SPDX-License-Identifier: MIT
/*
 * p2pbuf run: the main job, the whole story on embedded default devices.
 *
 * Act 1, the foundation: a GPU-like function exports a 3-range dma-buf of
 * its BAR; it is mapped, written and verified; memory decoding off revokes
 * it (the access faults, a new attach is refused), on restores it with the
 * data intact; an FLR.  Act 2, device DMA: a copy engine moves data between
 * system memory and VRAM through the dma-buf in its IO address space, a
 * reset in the middle of a stream revokes it (no byte lands afterwards),
 * unmap and remap carry on.  Act 3, storage: a storage device reads a
 * generated file into a 4-range VRAM dma-buf peer to peer, verified through
 * the CPU mapping and through io_uring; the engine copies part of it to a
 * heap buffer; a reset in the middle of a second transfer revokes every
 * importer, then the recovery.  The device closes for good.  Act 4, the
 * vfio-user door: the GPU served by `p2pbuf serve` in a second process, this
 * process and a second client process (this binary, --vfio-user-peer) export
 * its BAR over the wire, map and import it; the second client turning memory decoding off
 * revokes it in every process (SIGBUS, IOAS faults, acks), the restore, the
 * server stopped with SIGTERM.  A summary table of the figures measured ends
 * the story.
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
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>

#include "ce_driver.h"
#include "sd_driver.h"
#include "cli.h"
#include "preflight.h"

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

/* What the acts share: one IO address space, the copy engine, the figures. */
static struct world {
	struct p2p_iommufd *ctx;
	struct p2p_ioas *ioas;
	uint32_t ioas_id;
	struct p2p_pci_dev *cepci;
	struct p2p_vfio_device *cev;
	struct ce_multi ce; /* every channel; ch[0] for single descriptors and the stream */
	struct p2p_pci_dev *gpus[8];
	struct p2p_vfio_device *gvdevs[8];
	unsigned int ngpus;
	uint64_t vram;
	bool no_uring;	     /* io_uring cannot be set up: the storage act is skipped */
	bool no_uring_fixed; /* registered buffers would exceed RLIMIT_MEMLOCK: io_uring checks skipped */
} W;

/* The summary table: one row per figure the story measured. */
static struct figure {
	const char *what;
	double value;
	const char *unit;
} figures[16];
static unsigned int nfigures;

static void figure(const char *what, double value, const char *unit)
{
	if (nfigures < sizeof(figures) / sizeof(figures[0]))
		figures[nfigures++] = (struct figure){ what, value, unit };
}

static double gbps(uint64_t bytes, uint64_t ns)
{
	return ns ? (double)bytes / (double)ns : 0;
}

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
	struct p2p_ioas *ioas;
	struct ce_drv *drv = &W.ce.ch[0];
	struct stream st = { 0 };
	uint64_t src_iova = 0, back_iova = 0, vram_iova = 0, t0;
	uint8_t *src, *back, *bar = p2p_mem_ptr(p2p_pci_dev_bar_mem(gpu, 2), win.offset), *canary;
	uint32_t id, status;
	pthread_t th;
	int fd, ret;

	p2p_win = win.length;
	step("Plug in a copy engine 0000:02:00.0 and give it an IO address space");
	if ((ret = p2p_copy_engine_create("0000:02:00.0", NULL, 2, &W.cepci)) ||
	    (ret = p2p_vfio_device_open(W.cepci, &W.cev)) || (ret = p2p_iommufd_open(&W.ctx)) ||
	    (ret = p2p_ioas_alloc(W.ctx, &W.ioas_id, &W.ioas)) ||
	    (ret = p2p_vfio_device_attach_ioas(W.cev, W.ioas)) ||
	    (ret = ce_multi_init(&W.ce, W.cev, W.ioas, 256, 0))) {
		fprintf(stderr, "p2pbuf run: copy engine: %s\n", strerror(-ret));
		return 1;
	}
	ioas = W.ioas;
	id = W.ioas_id;
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
	status = ce_multi_copy(&W.ce, src_iova, vram_iova, p2p_win, NULL);
	t0 = now_ns() - t0;
	say("engine: %llu MiB into VRAM (pre-faulted), split over %u channels: %s (%.2f GB/s)",
	    (unsigned long long)(p2p_win >> 20), W.ce.nchan, p2p_ce_status_name(status),
	    gbps(p2p_win, t0));
	figure("copy engine: system memory -> VRAM (dma-buf)", gbps(p2p_win, t0), "GB/s");
	status = ce_drv_copy(drv, vram_iova, back_iova, p2p_win);
	say("engine: VRAM back to system memory: %s", p2p_ce_status_name(status));
	expect(!memcmp(bar, src, p2p_win), "VRAM holds the data, byte for byte");
	expect(!memcmp(back, src, p2p_win), "the readback matches, byte for byte");
	done();

	step("Reset the GPU (FLR) in the middle of a stream of copies into its VRAM");
	memset(src, 0x5a, p2p_win); /* the stream writes a new pattern */
	st.drv = drv;
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
	expect(ce_drv_copy(drv, src_iova, vram_iova, 4096) == P2P_CE_REVOKED,
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
	status = ce_drv_copy(drv, src_iova, vram_iova, p2p_win);
	say("engine: %s", p2p_ce_status_name(status));
	expect(status == P2P_CE_OK && !memcmp(bar, src, p2p_win),
	       "the stream carries on, data verified");
	done();

	/* Peer to peer between GPUs: BAR to BAR through two dma-bufs. */
	for (unsigned int g = 1; g < W.ngpus; g++) {
		uint64_t other = 0;
		int ofd;

		step("GPU 0 -> GPU %u: BAR to BAR through both dma-bufs", g);
		ofd = p2p_vfio_device_get_dmabuf(W.gvdevs[g], 2, &win, 1, O_RDWR | O_CLOEXEC);
		ret = ofd < 0 ? ofd : p2p_ioas_map_file(ioas, ofd, 0, p2p_win, &other, rw);
		t0 = now_ns();
		status = ret ? P2P_CE_FAULT : ce_multi_copy(&W.ce, vram_iova, other, p2p_win, NULL);
		t0 = now_ns() - t0;
		say("engine: %s, %.2f GB/s", p2p_ce_status_name(status), gbps(p2p_win, t0));
		expect(status == P2P_CE_OK &&
			       !memcmp(p2p_mem_ptr(p2p_pci_dev_bar_mem(W.gpus[g], 2), win.offset),
				       bar, p2p_win),
		       "the other GPU's VRAM holds the data, byte for byte");
		if (g == 1)
			figure("copy engine: VRAM -> VRAM of another GPU", gbps(p2p_win, t0), "GB/s");
		if (!ret)
			p2p_ioas_unmap(ioas, other, p2p_win, NULL);
		if (ofd >= 0)
			p2p_close(ofd);
		done();
	}

	/* Small copies: the engine's latency for one 4 KiB descriptor. */
	{
		uint64_t lat[16];

		for (int i = 0; i < 16; i++) {
			uint64_t t = now_ns();

			ce_drv_copy(drv, src_iova, vram_iova, 4096);
			lat[i] = now_ns() - t;
		}
		figure("copy engine: one 4 KiB descriptor, doorbell to MSI", median_ns(lat, 16) / 1e3,
		       "us");
	}
	p2p_ioas_unmap(ioas, src_iova, p2p_win, NULL);
	p2p_ioas_unmap(ioas, back_iova, p2p_win, NULL);
	p2p_ioas_unmap(ioas, vram_iova, p2p_win, NULL);
	p2p_close(fd);
	free(src);
	free(back);
	free(canary);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Storage to device memory, io_uring, the heap, and a reset mid-transfer  */

#define SD_CMD (1u << 20) /* bytes per storage command */

struct run_opts {
	const char *file;
	uint64_t file_size;
};

/* Generate the data file: a xorshift pattern, 1 MiB at a time. */
static void make_file(int fd, uint64_t size)
{
	uint64_t s = 0x2545f4914f6cdd1dull;
	uint64_t *chunk = malloc(SD_CMD);

	for (uint64_t off = 0; off < size; off += SD_CMD) {
		for (size_t i = 0; i < SD_CMD / 8; i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			chunk[i] = s;
		}
		if (pwrite(fd, chunk, SD_CMD, (off_t)off) != (ssize_t)SD_CMD)
			break;
	}
	free(chunk);
}

static uint64_t file_checksum(int fd, uint64_t size)
{
	uint8_t *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	uint64_t h;

	if (m == MAP_FAILED)
		return 0;
	h = checksum(m, size);
	munmap(m, size);
	return h;
}

/* Read [0, len) of the image into IOVA @dst with up to @qd commands in flight. */
static int sd_stream(struct sd_drv *sd, uint64_t dst, uint64_t len, uint32_t qd,
		     unsigned int *ok, unsigned int *revoked, unsigned int *other)
{
	uint64_t next = 0, done_bytes = 0;
	uint32_t inflight = 0;

	while (done_bytes < len) {
		struct p2p_sd_cqe cqe[64];
		uint32_t n;
		int ret;

		while (inflight < qd && next < len && sd_drv_room(sd)) {
			ret = sd_drv_read(sd, next / P2P_SD_BLOCK, SD_CMD / P2P_SD_BLOCK, dst + next,
					  P2P_SD_CMD_IRQ, (uint32_t)(next / SD_CMD));
			if (ret < 0)
				return ret;
			next += SD_CMD;
			inflight++;
		}
		sd_drv_kick(sd);
		ret = sd_drv_wait(sd, 1, 10000);
		if (ret < 0)
			return ret;
		n = sd_drv_reap(sd, cqe, 64);
		for (uint32_t i = 0; i < n; i++) {
			if (cqe[i].status == P2P_SD_OK)
				(*ok)++;
			else if (cqe[i].status == P2P_SD_REVOKED)
				(*revoked)++;
			else
				(*other)++;
		}
		inflight -= n;
		done_bytes += (uint64_t)n * SD_CMD;
	}
	return 0;
}

struct sd_stream_arg {
	struct sd_drv *sd;
	uint64_t dst, len;
	atomic_bool stop;
	atomic_uint ok, revoked, other, passes;
};

static void *sd_stream_thread(void *arg)
{
	struct sd_stream_arg *a = arg;

	while (!atomic_load(&a->stop)) {
		unsigned int ok = 0, rv = 0, ot = 0;

		if (sd_stream(a->sd, a->dst, MIN(a->len, 32ull << 20), 8, &ok, &rv, &ot))
			break;
		atomic_fetch_add(&a->ok, ok);
		atomic_fetch_add(&a->revoked, rv);
		atomic_fetch_add(&a->other, ot);
		atomic_fetch_add(&a->passes, 1);
	}
	return NULL;
}

/*
 * Say at the start what this process cannot do, why, and what to change,
 * rather than failing midway: typically an unprivileged user.  @pinned is
 * the bytes the io_uring act registers.  Sets W.no_uring / W.no_uring_fixed;
 * returns the number of limitations found.
 */
static int preflight(uint64_t pinned)
{
	struct cli_limits l;
	int n = 0;

	cli_limits_probe(pinned, &l);
	if (l.no_uffd) {
		printf("note: no userfaultfd for this process%s:\n"
		       "      revoked CPU mappings are remapped to an empty memfd instead (SIGBUS, as\n"
		       "      with the kernel; /proc/self/maps shows \"p2pbuf-revoked\" while revoked).\n"
		       "      For userfaultfd: run as root, or sysctl vm.unprivileged_userfaultfd=1.\n",
		       l.unpriv_uffd == 0 ? " (not root, vm.unprivileged_userfaultfd=0)" : "");
		n++;
	}
	if (l.uring_err < 0) {
		printf("note: io_uring is unavailable (%s%s): the storage device and io_uring acts\n"
		       "      are skipped. To run them: sysctl kernel.io_uring_disabled=0, or allow\n"
		       "      io_uring_setup(2) in this sandbox.\n",
		       strerror(-l.uring_err),
		       l.uring_disabled > 0 ? ", kernel.io_uring_disabled is set" : "");
		W.no_uring = true;
		return n + 1;
	}
	if (l.memlock_low) {
		printf("note: RLIMIT_MEMLOCK is %llu KiB and io_uring pins registered buffers against it:\n"
		       "      registering the %llu MiB dma-buf would fail (ENOMEM), so the io_uring\n"
		       "      checks are skipped. To run them: ulimit -l %llu (or unlimited; memlock\n"
		       "      in /etc/security/limits.conf), or run as root (CAP_IPC_LOCK).\n",
		       (unsigned long long)(l.memlock_cur >> 10), (unsigned long long)(pinned >> 20),
		       (unsigned long long)((pinned >> 10) + 1024));
		W.no_uring_fixed = true;
		n++;
	}
	return n;
}

/* One io_uring request, synchronously: the completion's result. */
static int uring_rw(struct p2p_uring *ur, int op, int fd, uint64_t off, uint32_t len)
{
	struct io_uring_sqe sqe = {
		.opcode = (uint8_t)op, .fd = fd, .addr = off, .len = len, .off = off,
		.buf_index = 0, .user_data = off,
	};
	struct io_uring_cqe cqe;
	int ret = p2p_uring_submit_sqe(ur, &sqe);

	if (ret)
		return ret;
	p2p_uring_submit(ur);
	ret = p2p_uring_wait_cqe(ur, &cqe, true);
	return ret ? ret : cqe.res;
}

static int run_storage(const struct run_opts *o)
{
	const uint32_t rw = P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE;
	struct p2p_pci_dev *gpu = W.gpus[0], *sdpci;
	struct p2p_vfio_device *gvdev = W.gvdevs[0], *sdv;
	uint64_t size = o->file_size, q = size / 4, t0, sum_file, sum, vram_iova = 0, heap_iova = 0;
	uint64_t heap_len = MIN(size, 64ull << 20);
	struct vfio_region_dma_range ranges[4] = {
		{ 2 * q, q }, { 0, q }, { 3 * q, q }, { q, q }, /* VRAM quarters, shuffled */
	};
	char path[] = "/tmp/p2pbuf-run-XXXXXX";
	struct sd_stream_arg sa = { 0 };
	struct p2p_dma_heap *heap;
	struct p2p_dmabuf *buf, *hbuf;
	struct p2p_uring *ur;
	struct sd_drv sd;
	uint8_t *va, *hva, *vram = p2p_mem_ptr(p2p_pci_dev_bar_mem(gpu, 2), 0), *canary, byte;
	unsigned int ok = 0, rv = 0, other = 0;
	pthread_t th;
	int fd, dfd, hfd, sfd, ret, res;

	/* ---- the data file and the storage device ---- */
	if (o->file) {
		fd = open(o->file, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "p2pbuf run: %s: %s\n", o->file, strerror(errno));
			return 1;
		}
		step("Plug in a storage device 0000:03:00.0 backed by %s (%llu MiB used)", o->file,
		     (unsigned long long)(size >> 20));
	} else {
		fd = mkstemp(path);
		if (fd < 0 || ftruncate(fd, (off_t)size)) {
			fprintf(stderr, "p2pbuf run: data file: %s\n", strerror(errno));
			return 1;
		}
		step("Generate a %llu MiB data file and plug in a storage device 0000:03:00.0 backed by it",
		     (unsigned long long)(size >> 20));
		make_file(fd, size);
	}
	sum_file = file_checksum(fd, size);
	ret = p2p_storage_create("0000:03:00.0", NULL, 3, o->file ? o->file : path, 0, &sdpci);
	if (!o->file)
		unlink(path);
	if (ret || (ret = p2p_vfio_device_open(sdpci, &sdv)) ||
	    (ret = p2p_vfio_device_attach_ioas(sdv, W.ioas)) ||
	    (ret = sd_drv_init(&sd, sdv, W.ioas, 256))) {
		fprintf(stderr, "p2pbuf run: storage device: %s\n", strerror(-ret));
		return 1;
	}
	say("file checksum %016llx; the storage device shares IOAS %u with the copy engine",
	    (unsigned long long)sum_file, W.ioas_id);
	done();

	/* ---- export, map into the IOAS and the CPU ---- */
	step("Export 4 scattered quarters of VRAM as one dma-buf, map it into the IOAS and the CPU");
	dfd = p2p_vfio_device_get_dmabuf(gvdev, 2, ranges, 4, O_RDWR | O_CLOEXEC);
	if (dfd < 0 || (ret = p2p_dmabuf_get(dfd, &buf))) {
		fprintf(stderr, "p2pbuf run: DMA_BUF: %s\n", strerror(dfd < 0 ? -dfd : -ret));
		return 1;
	}
	/* Multi-range: beyond the kernel's iommufd, contiguous in IOVA. */
	ret = p2p_ioas_map_file(W.ioas, dfd, 0, size, &vram_iova, rw | P2P_IOAS_MAP_EXTENDED);
	expect(!ret, "IOMMU_IOAS_MAP_FILE of a 4-range dma-buf (P2P_IOAS_MAP_EXTENDED)");
	t0 = now_ns();
	ret = p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, (void **)&va);
	t0 = now_ns() - t0;
	expect(!ret, "p2p_dmabuf_mmap: one contiguous VA range");
	if (ret)
		return 1;
	say("IOVA 0x%llx, CPU %p, %llu MiB", (unsigned long long)vram_iova, (void *)va,
	    (unsigned long long)(size >> 20));
	figure("mmap of the 4-range dma-buf, populated in runs", (double)t0 / 1e6, "ms");
	done();

	/* ---- storage -> VRAM ---- */
	step("Read the file into VRAM, peer to peer: storage device -> dma-buf, 1 MiB commands, depth 32");
	t0 = now_ns();
	ret = sd_stream(&sd, vram_iova, size, 32, &ok, &rv, &other);
	t0 = now_ns() - t0;
	say("%u commands ok, %u failed; %.2f GB/s", ok, rv + other, gbps(size, t0));
	figure("storage device: file -> VRAM (peer to peer), first pass",
	       gbps(size, t0), "GB/s");
	expect(!ret && ok == size / SD_CMD, "every command completed ok");
	done();

	step("Verify the data through the CPU mapping and through io_uring");
	sum = checksum(va, size);
	say("CPU mapping checksum %016llx", (unsigned long long)sum);
	expect(sum == sum_file, "the CPU mapping matches the file");
	/* The scratch file is a memfd: measure the dma-buf path, not ext4's block allocation. */
	sfd = memfd_create("p2pbuf-run-verify", MFD_CLOEXEC);
	/* Allocated up front: the figure is the I/O path, not page allocation. */
	if (sfd >= 0 && (ftruncate(sfd, (off_t)size) || fallocate(sfd, 0, 0, (off_t)size)))
		sfd = -1;
	ur = NULL;
	if (W.no_uring_fixed) {
		say("io_uring: skipped (RLIMIT_MEMLOCK, see the note at the start)");
		done();
	} else {
		ret = sfd < 0 ? -errno : p2p_uring_create(64, 1, &ur);
		ret = ret ? ret : p2p_uring_register_dmabuf(ur, 0, dfd, sfd);
		if (ret) {
			fprintf(stderr, "p2pbuf run: io_uring: %s\n", strerror(-ret));
			return 1;
		}
		t0 = now_ns();
		for (uint64_t off = 0; off < size && !ret; off += SD_CMD) {
			res = uring_rw(ur, IORING_OP_WRITE_FIXED, sfd, off, SD_CMD);
			ret = res == (int)SD_CMD ? 0 : (res < 0 ? res : -EIO);
		}
		t0 = now_ns() - t0;
		if (ret)
			say("io_uring WRITE_FIXED from the dma-buf slot: %s", strerror(-ret));
		sum = ret ? 0 : file_checksum(sfd, size);
		say("io_uring WRITE_FIXED from the dma-buf slot to a scratch memfd: %.2f GB/s, checksum %016llx",
		    gbps(size, t0), (unsigned long long)sum);
		figure("io_uring: VRAM dma-buf -> memfd (WRITE_FIXED, depth 1)", gbps(size, t0),
		       "GB/s");
		expect(!ret && sum == sum_file, "what io_uring read out of VRAM matches the file");
		done();
	}

	/* ---- VRAM -> heap with the engine ---- */
	step("Copy %llu MiB of VRAM to a system-heap buffer with the copy engine",
	     (unsigned long long)(heap_len >> 20));
	ret = p2p_dma_heap_open("system", &heap);
	hfd = ret ? ret : p2p_dma_heap_alloc(heap, heap_len, O_RDWR | O_CLOEXEC, 0);
	if (hfd < 0 || (ret = p2p_dmabuf_get(hfd, &hbuf)) ||
	    (ret = p2p_ioas_map_file(W.ioas, hfd, 0, heap_len, &heap_iova,
				     rw | P2P_IOAS_MAP_EXTENDED)) ||
	    (ret = p2p_dmabuf_mmap(hbuf, NULL, heap_len, PROT_READ, MAP_SHARED, 0, (void **)&hva))) {
		fprintf(stderr, "p2pbuf run: heap: %s\n", strerror(hfd < 0 ? -hfd : -ret));
		return 1;
	}
	/* Pre-faulted on all cores, as device memory is: the copy measures the engine. */
	p2p_dmabuf_populate(hbuf, 0);
	t0 = now_ns();
	res = (int)ce_multi_copy(&W.ce, vram_iova, heap_iova, heap_len, NULL);
	t0 = now_ns() - t0;
	say("engine: %s, %.2f GB/s", p2p_ce_status_name((uint32_t)res), gbps(heap_len, t0));
	figure("copy engine: VRAM -> system heap buffer", gbps(heap_len, t0), "GB/s");
	p2p_dmabuf_sync(hbuf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
	expect(res == P2P_CE_OK && !memcmp(hva, va, heap_len),
	       "the heap buffer holds the first bytes of the dma-buf");
	p2p_dmabuf_sync(hbuf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
	done();

	/* ---- a reset in the middle of a second transfer ---- */
	step("Reset the GPU in the middle of a second transfer: memory decoding off, then FLR");
	sa.sd = &sd;
	sa.dst = vram_iova;
	sa.len = size;
	pthread_create(&th, NULL, sd_stream_thread, &sa);
	while (atomic_load(&sa.ok) < 8u)
		sched_yield();
	if (ur)
		uring_rw(ur, IORING_OP_WRITE_FIXED, sfd, 0, SD_CMD);
	t0 = now_ns();
	cli_mem_enable(gvdev, false); /* the reset sequence starts: every importer revoked */
	t0 = now_ns() - t0;
	canary = malloc(W.vram);
	memcpy(canary, vram, W.vram);
	say("revoke returned after %.3f ms (storage reads in flight were waited for)",
	    (double)t0 / 1e6);
	figure("revoke with CPU map, IOAS and io_uring importers, I/O in flight", (double)t0 / 1e6,
	       "ms");
	{
		unsigned int seen = atomic_load(&sa.revoked);

		while (atomic_load(&sa.revoked) < seen + 16)
			sched_yield();
	}
	expect(probe_read(va + size / 3, &byte) == SIGBUS, "CPU mapping: access raises SIGBUS");
	say("IOAS: %u storage commands since the revoke reported \"revoked\"",
	    atomic_load(&sa.revoked));
	expect(atomic_load(&sa.revoked) >= 16, "IOAS: the storage device's DMA fails with \"revoked\"");
	if (ur) {
		res = uring_rw(ur, IORING_OP_WRITE_FIXED, sfd, 0, SD_CMD);
		say("io_uring WRITE_FIXED on the dma-buf slot: %s", res < 0 ? strerror(-res) : "ok");
		expect(res == -ENODEV && !p2p_uring_slot_mapped(ur, 0),
		       "io_uring: the slot was drained and unpinned, new I/O gets ENODEV");
	}
	expect(!memcmp(canary, vram, W.vram), "nothing was written to VRAM after the revoke returned");
	{
		uint32_t ctl;

		p2p_vfio_config_read(gvdev, P2P_PCI_EXP_DEVCTL, 2, &ctl);
		p2p_vfio_config_write(gvdev, P2P_PCI_EXP_DEVCTL, 2, ctl | P2P_PCI_EXP_DEVCTL_BCR_FLR);
	}
	say("FLR done; memory decoding still off");
	done();

	step("Recover: memory decoding on, remap the IOAS, and finish the transfer");
	cli_mem_enable(gvdev, true);
	atomic_store(&sa.stop, true);
	pthread_join(th, NULL);
	expect(!probe_read(va + size / 3, &byte), "CPU mapping: the same mapping works again");
	if (ur) {
		res = uring_rw(ur, IORING_OP_WRITE_FIXED, sfd, 0, SD_CMD);
		expect(res == (int)SD_CMD && p2p_uring_slot_mapped(ur, 0),
		       "io_uring: the slot maps again on its next I/O");
	}
	ok = rv = other = 0;
	sd_stream(&sd, vram_iova, SD_CMD, 1, &ok, &rv, &other);
	expect(rv == 1, "IOAS: the stale area stays revoked (never remapped on its own)");
	{
		uint64_t again = vram_iova;

		ret = p2p_ioas_unmap(W.ioas, vram_iova, size, NULL);
		ret = ret ? ret : p2p_ioas_map_file(W.ioas, dfd, 0, size, &again,
						     rw | P2P_IOAS_MAP_EXTENDED |
							     P2P_IOAS_MAP_FIXED_IOVA);
		expect(!ret && again == vram_iova, "IOAS: unmap + MAP_FILE at the same IOVA");
	}
	ok = rv = other = 0;
	t0 = now_ns();
	ret = sd_stream(&sd, vram_iova, size, 32, &ok, &rv, &other);
	t0 = now_ns() - t0;
	sum = checksum(va, size);
	say("transfer finished: %u commands ok, %.2f GB/s, checksum %016llx", ok, gbps(size, t0),
	    (unsigned long long)sum);
	figure("storage device: file -> VRAM (peer to peer), after recovery", gbps(size, t0),
	       "GB/s");
	expect(!ret && ok == size / SD_CMD && sum == sum_file, "VRAM holds the file again");
	done();

	/* Small reads: the storage device's latency for one 4 KiB command. */
	{
		uint64_t lat[16];

		for (int i = 0; i < 16; i++) {
			struct p2p_sd_cmd cmd = { .opcode = P2P_SD_OP_READ, .flags = P2P_SD_CMD_IRQ,
						  .lba = (uint64_t)i, .nblocks = 1, .data = vram_iova };
			uint64_t t = now_ns();

			sd_drv_run(&sd, &cmd, NULL);
			lat[i] = now_ns() - t;
		}
		figure("storage device: one 4 KiB read into VRAM, doorbell to MSI",
		       median_ns(lat, 16) / 1e3, "us");
	}

	free(canary);
	if (ur)
		p2p_uring_destroy(ur);
	close(sfd);
	p2p_munmap(hva, heap_len);
	p2p_ioas_unmap(W.ioas, heap_iova, heap_len, NULL);
	p2p_dmabuf_put(hbuf);
	p2p_close(hfd);
	p2p_dma_heap_close(heap);
	p2p_munmap(va, size);
	p2p_ioas_unmap(W.ioas, vram_iova, size, NULL);
	p2p_dmabuf_put(buf);
	p2p_close(dfd);
	sd_drv_fini(&sd);
	p2p_vfio_device_close(sdv);
	p2p_pci_dev_put(sdpci);
	close(fd);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* The vfio-user door: the GPU served by another process                   */

#define VU_BDF "0000:01:00.0"
#define VU_LOCAL "0000:41:00.0" /* the name the served GPU gets in this process */
#define VU_LEN (4ull << 20)	/* BAR2 [0, 4 MiB) exported over the wire */
#define VU_IOVA 0x10000000ull

/* One line from @fd (newline dropped) within @ms; its length or -1. */
static int read_line(int fd, char *buf, size_t n, int ms)
{
	size_t got = 0;

	while (got + 1 < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char ch;

		if (poll(&p, 1, ms) != 1 || read(fd, &ch, 1) != 1)
			return -1;
		if (ch == '\n')
			break;
		buf[got++] = ch;
	}
	buf[got] = 0;
	return (int)got;
}

/*
 * Ask client 2 to turn memory decoding off or on (@cmd "memoff"/"memon") and
 * read its answer "mem RET USEC SIGBUS": the config write's result, how long
 * it took, whether its own mapping raised SIGBUS.  No answer: *@rr = -1.
 */
static void client2_mem(int fd, const char *cmd, int *rr, unsigned long long *us, int *bus)
{
	char line[256];

	*rr = -1;
	*us = 0;
	*bus = -1;
	dprintf(fd, "%s\n", cmd);
	if (read_line(fd, line, sizeof(line), 15000) < 0 ||
	    sscanf(line, "mem %d %llu %d", rr, us, bus) != 3)
		*rr = -1;
}

static uint64_t vu_pattern(uint64_t i)
{
	return (i + 1) * 0xd6e8feb86659fd93ull;
}

/* Why the vfio-user act cannot run here, or NULL: said at the start. */
static const char *vu_preflight(void)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return "Unix sockets are not available";
	close(s);
	if (access("/proc/self/exe", X_OK))
		return "this binary cannot be run again through /proc/self/exe";
	return NULL;
}

/*
 * The second client: `p2pbuf run --vfio-user-peer SOCKET` with its stdin and
 * stdout a socketpair to run.  It exports the same BAR range, maps it, and
 * does what run asks: "check" (checksum of its mapping), "memoff" / "memon"
 * (COMMAND.MEM over the wire, then probes its mapping; after "memon" it
 * waits up to 1 s for the server's restore notice, which comes after the
 * write's reply), "bye".
 */
static int vu_peer(const char *path)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .name = "0000:42:00.0" };
	struct vfio_region_dma_range r = { 0, VU_LEN };
	struct p2p_vfio_user_client *c;
	struct p2p_vfio_device *v = NULL;
	uint8_t *m = NULL, byte;
	char line[64];
	int fd, ret;

	ret = p2p_vfio_user_connect(path, &ci, &c);
	if (ret) {
		dprintf(1, "error connect %d\n", ret);
		return 1;
	}
	fd = p2p_vfio_user_dmabuf_export(c, 2, &r, 1, O_RDWR | O_CLOEXEC);
	ret = fd < 0 ? fd : p2p_fd_mmap(fd, NULL, VU_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
					(void **)&m);
	ret = ret ? ret : p2p_vfio_device_open(p2p_vfio_user_client_pci(c), &v);
	if (ret) {
		dprintf(1, "error export %d\n", ret);
		return 1;
	}
	dprintf(1, "ready %d\n", (int)getpid());
	while (read_line(0, line, sizeof(line), 30000) >= 0) {
		if (!strcmp(line, "check")) {
			dprintf(1, "sum %016llx\n", (unsigned long long)checksum(m, VU_LEN));
		} else if (!strcmp(line, "memoff") || !strcmp(line, "memon")) {
			bool on = !strcmp(line, "memon");
			uint64_t t0 = now_ns();
			uint32_t cmd = 0;

			/* COMMAND.MEM through the config region, forwarded over the wire. */
			ret = p2p_vfio_config_read(v, 0x04, 2, &cmd);
			if (!ret)
				ret = p2p_vfio_config_write(v, 0x04, 2, on ? cmd | 0x2 : cmd & ~0x2u);
			t0 = now_ns() - t0;
			for (int i = 0; on && !ret && i < 100 && probe_read(m, &byte) == SIGBUS; i++)
				usleep(10000);
			dprintf(1, "mem %d %llu %d\n", ret, (unsigned long long)(t0 / 1000),
				probe_read(m + VU_LEN / 2, &byte) == SIGBUS);
		} else {
			break;
		}
	}
	p2p_munmap(m, VU_LEN);
	p2p_close(fd);
	p2p_vfio_device_close(v);
	p2p_vfio_user_disconnect(c);
	return 0;
}

/* `p2pbuf @args...` (this binary again) with @out as its stdout (and stdin if @in); its pid. */
static pid_t vu_spawn(char *const args[], int out, bool in)
{
	pid_t pid = fork();

	if (pid == 0) {
		/* run dies: so does its server or second client, not left behind. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (in)
			dup2(out, 0);
		dup2(out, 1);
		execv("/proc/self/exe", args);
		_exit(127);
	}
	return pid;
}

static int run_vfio_user(uint64_t vram, const char *skip)
{
	const uint32_t rw = P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE;
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .name = VU_LOCAL };
	struct vfio_region_dma_range r = { 0, VU_LEN };
	char dir[] = "/tmp/p2pbuf-run-vu-XXXXXX", conf[64], path[96], line[256];
	struct p2p_vfio_user_client *c = NULL;
	struct p2p_iommufd *ictx = NULL;
	struct p2p_ioas *ioas = NULL;
	struct p2p_dma_seg seg;
	pid_t server = -1, peer = -1;
	uint8_t *m = NULL, *m2 = NULL, byte;
	uint64_t iova = VU_IOVA, sum = 0;
	int out[2] = { -1, -1 }, sv[2] = { -1, -1 }, fd = -1, fd2 = -1, ret, st;
	bool restored = false;
	FILE *f;

	if (skip) {
		step("The vfio-user door: skipped (%s, see the note at the start)", skip);
		done();
		return 0;
	}
	step("Serve the GPU %s over vfio-user: `p2pbuf serve` in a second process", VU_BDF);
	snprintf(conf, sizeof(conf), "%s/devices.conf", mkdtemp(dir) ? dir : "/nonexistent");
	snprintf(path, sizeof(path), "%s/%s", dir, VU_BDF);
	f = fopen(conf, "w");
	if (!f || pipe2(out, O_CLOEXEC)) {
		fprintf(stderr, "p2pbuf run: vfio-user: %s: %s\n", conf, strerror(errno));
		return 1;
	}
	fprintf(f, "gpu %s group=1 bar0=16K bar2=%lluM,64,pf\n", VU_BDF,
		(unsigned long long)(vram >> 20));
	fclose(f);
	{
		char *args[] = { "p2pbuf", "serve", "--config", conf, "--socket-dir", dir,
				 "--revoke-timeout-ms", "1000", NULL };

		server = vu_spawn(args, out[1], false);
	}
	close(out[1]);
	ret = server > 0 ? read_line(out[0], line, sizeof(line), 10000) : -1;
	say("server pid %d: \"%s\"", (int)server, ret >= 0 ? line : "(no answer)");
	expect(ret >= 0 && strstr(line, path), "the server listens on DIR/<BDF>");
	if (ret < 0)
		goto out;
	done();

	step("This process (pid %d) connects, exports 4 MiB of BAR2 over the wire, maps it and imports it into its IO address space",
	     (int)getpid());
	ret = p2p_vfio_user_connect(path, &ci, &c);
	expect(!ret, "p2p_vfio_user_connect: VERSION, device and region info, config identity");
	if (ret)
		goto out;
	expect(p2p_vfio_user_client_p2pbuf(c), "the server granted the p2pbuf extension (dma-bufs, revoke)");
	say("the remote GPU is the local PCI function %s here", VU_LOCAL);
	fd = p2p_vfio_user_dmabuf_export(c, 2, &r, 1, O_RDWR | O_CLOEXEC);
	ret = fd < 0 ? fd : p2p_fd_mmap(fd, NULL, VU_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
					(void **)&m);
	expect(!ret, "feature 11 over the wire: a dma-buf fd of the served BAR, mmap'd here");
	ret = ret ? ret : p2p_iommufd_open(&ictx);
	ret = ret ? ret : p2p_ioas_alloc(ictx, &(uint32_t){ 0 }, &ioas);
	ret = ret ? ret : p2p_ioas_map_file(ioas, fd, 0, VU_LEN, &iova, rw | P2P_IOAS_MAP_FIXED_IOVA);
	expect(!ret, "imported into a local IOAS at IOVA 0x10000000 (IOMMU_IOAS_MAP_FILE)");
	if (ret)
		goto out;
	for (uint64_t i = 0; i < VU_LEN; i += 8) {
		uint64_t v = vu_pattern(i);

		memcpy(m + i, &v, 8);
	}
	sum = checksum(m, VU_LEN);
	ret = p2p_ioas_dma_begin(ioas, VU_IOVA + VU_LEN - 8, 8, P2P_DMA_READ, &seg);
	expect(!ret && !memcmp(seg.host, &(uint64_t){ vu_pattern(VU_LEN - 8) }, 8),
	       "a pattern written through the mapping reads back through the IOAS");
	if (!ret)
		p2p_ioas_dma_end(&seg);
	say("checksum %016llx", (unsigned long long)sum);
	done();

	step("A second client process reads the pattern through its own export of the same BAR");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		fprintf(stderr, "p2pbuf run: socketpair: %s\n", strerror(errno));
		goto out;
	}
	{
		char *args[] = { "p2pbuf", "run", "--vfio-user-peer", path, NULL };

		peer = vu_spawn(args, sv[1], true);
	}
	close(sv[1]);
	ret = peer > 0 ? read_line(sv[0], line, sizeof(line), 10000) : -1;
	say("client 2: pid %d, \"%s\"", (int)peer, ret >= 0 ? line : "(no answer)");
	expect(ret >= 0 && !strncmp(line, "ready", 5), "client 2 connected, exported and mapped");
	if (ret < 0 || strncmp(line, "ready", 5))
		goto out;
	dprintf(sv[0], "check\n");
	ret = read_line(sv[0], line, sizeof(line), 10000);
	say("client 2: \"%s\"", ret >= 0 ? line : "(no answer)");
	expect(ret >= 0 && strtoull(line + 4, NULL, 16) == sum,
	       "client 2 sees the same bytes (one memory, three processes)");
	done();

	step("Client 2 turns memory decoding off (COMMAND.MEM over the wire): the revoke reaches every process");
	{
		int rr, bus;
		unsigned long long us;

		client2_mem(sv[0], "memoff", &rr, &us, &bus);
		say("client 2: the config write returned %s after %.3f ms (the server waited for every client's ack)",
		    rr ? strerror(rr < 0 ? -rr : EIO) : "0", (double)us / 1e3);
		expect(rr == 0, "COMMAND.MEM off succeeded");
		expect(bus == 1, "client 2: its own mapping raises SIGBUS");
		figure("vfio-user: memory off revoking 2 client processes (acks included)",
		       (double)us / 1e3, "ms");
	}
	expect(probe_read(m + VU_LEN / 2, &byte) == SIGBUS,
	       "this process: the mapping raises SIGBUS (zapped before the ack)");
	ret = p2p_ioas_dma_begin(ioas, VU_IOVA, 8, P2P_DMA_WRITE, &seg);
	if (!ret)
		p2p_ioas_dma_end(&seg);
	expect(ret == -ENODEV, "this process: DMA through the IOAS area faults (ENODEV)");
	expect(p2p_vfio_user_client_alive(c),
	       "this process acked in time (a silent client would have been disconnected)");
	done();

	step("Restore: client 2 turns memory decoding on again, the BAR is usable again");
	{
		int rr, bus;
		unsigned long long us;

		client2_mem(sv[0], "memon", &rr, &us, &bus);
		expect(rr == 0 && bus == 0, "COMMAND.MEM on: client 2's own mapping works again");
	}
	for (int i = 0; i < 50 && !restored; i++) {
		restored = !probe_read(m, &byte);
		if (!restored)
			usleep(10000);
	}
	if (restored) {
		say("the server announced the restore (REVOKE notice with flags 0)");
		expect(checksum(m, VU_LEN) == sum, "the same mapping works again, data intact");
	} else {
		say("this server does not announce restores (docs/vfio-user.md): the revoked");
		say("mapping and IOAS area stay revoked, as kernel importers do; export again");
		fd2 = p2p_vfio_user_dmabuf_export(c, 2, &r, 1, O_RDWR | O_CLOEXEC);
		ret = fd2 < 0 ? fd2 : p2p_fd_mmap(fd2, NULL, VU_LEN, PROT_READ | PROT_WRITE,
						  MAP_SHARED, 0, (void **)&m2);
		expect(!ret && !probe_read(m2, &byte) && checksum(m2, VU_LEN) == sum,
		       "a new export maps and works, data intact");
	}
	ret = p2p_ioas_unmap(ioas, VU_IOVA, VU_LEN, NULL);
	ret = ret ? ret : p2p_ioas_map_file(ioas, fd2 >= 0 ? fd2 : fd, 0, VU_LEN, &iova,
					     rw | P2P_IOAS_MAP_FIXED_IOVA);
	ret = ret ? ret : p2p_ioas_dma_begin(ioas, VU_IOVA, 8, P2P_DMA_READ, &seg);
	expect(!ret && !memcmp(seg.host, &(uint64_t){ vu_pattern(0) }, 8),
	       "IOAS: unmap + MAP_FILE at the same IOVA, DMA works again");
	if (!ret)
		p2p_ioas_dma_end(&seg);
	dprintf(sv[0], "bye\n");
	ret = waitpid(peer, &st, 0) == peer && WIFEXITED(st) && !WEXITSTATUS(st);
	peer = -1;
	expect(ret, "client 2 unmapped, disconnected and exited 0");
	done();

	step("Stop the server with SIGTERM: the remote GPU is removed here");
	kill(server, SIGTERM);
	ret = waitpid(server, &st, 0) == server && WIFEXITED(st) && !WEXITSTATUS(st);
	server = -1;
	expect(ret, "p2pbuf serve exited 0 and removed its socket");
	{
		uint64_t t0 = now_ns();

		while (p2p_vfio_user_client_alive(c) && now_ns() - t0 < 2000000000ull)
			usleep(1000);
		expect(!p2p_vfio_user_client_alive(c) && access(path, F_OK),
		       "the connection is seen gone and the socket is unlinked");
		while ((probe_read(m2 ? m2 : m, &byte) != SIGBUS) && now_ns() - t0 < 2000000000ull)
			usleep(1000);
		expect(probe_read(m2 ? m2 : m, &byte) == SIGBUS,
		       "the dma-buf is revoked for good: its mapping faults");
	}
	done();
out:
	if (peer > 0) {
		kill(peer, SIGKILL);
		waitpid(peer, NULL, 0);
	}
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
	if (m2)
		p2p_munmap(m2, VU_LEN);
	if (fd2 >= 0)
		p2p_close(fd2);
	if (ioas)
		p2p_ioas_put(ioas);
	if (ictx)
		p2p_iommufd_close(ictx);
	if (m)
		p2p_munmap(m, VU_LEN);
	if (fd >= 0)
		p2p_close(fd);
	if (c)
		p2p_vfio_user_disconnect(c);
	if (sv[0] >= 0)
		close(sv[0]);
	if (out[0] >= 0)
		close(out[0]);
	unlink(path);
	unlink(conf);
	rmdir(dir);
	return 0;
}

static void summary(void)
{
	printf("\nSummary\n");
	printf("  %-70s %10s\n", "figure", "value");
	for (unsigned int i = 0; i < nfigures; i++)
		printf("  %-70s %10.3f %s\n", figures[i].what, figures[i].value, figures[i].unit);
}

static void run_usage(FILE *f)
{
	fprintf(f, "usage: p2pbuf run [--vram SIZE] [--file PATH] [--file-size SIZE] [--gpus N]\n"
		   "  The main job, on emulated devices: a GPU-like function exports its VRAM as\n"
		   "  dma-bufs; CPU mappings, a copy engine, a storage device and io_uring use them\n"
		   "  peer to peer; resets revoke every importer and the story shows the recovery.\n"
		   "  --vram SIZE       memory BAR of each GPU (power of two, >= 16M; default 256M)\n"
		   "  --file PATH       back the storage device with this file (read-write; its\n"
		   "                    first --file-size bytes are used) instead of a generated one\n"
		   "  --file-size SIZE  bytes read into VRAM (multiple of 4M, <= VRAM; default: VRAM)\n"
		   "  --gpus N          GPU-like devices (1-8, default 1); with 2 or more the copy\n"
		   "                    engine also copies VRAM to VRAM between GPUs\n"
		   "  At the end the GPU is served by `p2pbuf serve` in a second process and used\n"
		   "  over vfio-user by this process and a second client process.\n");
}

int cmd_run(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "vram", required_argument, NULL, 'v' },
		{ "file", required_argument, NULL, 'f' },
		{ "file-size", required_argument, NULL, 's' },
		{ "gpus", required_argument, NULL, 'g' },
		{ "vfio-user-peer", required_argument, NULL, 'P' }, /* internal: run's second client */
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct run_opts ro = { 0 };
	unsigned long ngpus = 1;
	struct stat st;
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
	const char *vu_skip;
	int c, fd, ret, sig;

	while ((c = getopt_long(argc, argv, "v:f:s:g:h", lo, NULL)) != -1) {
		switch (c) {
		case 'v':
			vram = cli_parse_size(optarg);
			if (vram < (16ull << 20) || (vram & (vram - 1))) {
				fprintf(stderr, "p2pbuf run: --vram must be a power of two >= 16M\n");
				return 2;
			}
			break;
		case 'f':
			ro.file = optarg;
			break;
		case 's':
			ro.file_size = cli_parse_size(optarg);
			if (!ro.file_size || ro.file_size % (4u << 20)) {
				fprintf(stderr, "p2pbuf run: --file-size must be a multiple of 4M\n");
				return 2;
			}
			break;
		case 'g':
			ngpus = strtoul(optarg, NULL, 10);
			if (ngpus < 1 || ngpus > 8) {
				fprintf(stderr, "p2pbuf run: --gpus must be 1 to 8\n");
				return 2;
			}
			break;
		case 'P':
			sigaction(SIGBUS, &sa, NULL);
			if (p2p_library_init())
				return 1;
			return vu_peer(optarg);
		case 'h': run_usage(stdout); return 0;
		default: run_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "p2pbuf run: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!ro.file_size)
		ro.file_size = vram;
	if (ro.file_size > vram) {
		fprintf(stderr, "p2pbuf run: --file-size must not exceed --vram\n");
		return 2;
	}
	if (ro.file) {
		if (stat(ro.file, &st) < 0) {
			fprintf(stderr, "p2pbuf run: %s: %s\n", ro.file, strerror(errno));
			return 2;
		}
		if ((uint64_t)st.st_size < ro.file_size) {
			fprintf(stderr, "p2pbuf run: %s holds %lld bytes, fewer than --file-size\n",
				ro.file, (long long)st.st_size);
			return 2;
		}
	}
	sigaction(SIGBUS, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	ret = p2p_library_init();
	if (ret) {
		fprintf(stderr, "p2pbuf run: cannot set up CPU revocation: %s\n", strerror(-ret));
		return 1;
	}
	mib = vram >> 20;
	printf("p2pbuf run: dma-buf export, mmap, revocation and peer-to-peer DMA on emulated devices\n");
	printf("pages: %s\n", hugepage_mode_name());
	printf("CPU revocation: %s\n", p2p_cpu_revoke_method() == P2P_CPU_REVOKE_UFFD
						? "userfaultfd" : "remapping to an empty memfd");
	preflight(ro.file_size);
	vu_skip = vu_preflight();
	if (vu_skip)
		printf("note: the vfio-user act is skipped: %s.\n", vu_skip);

	step("Plug in a GPU-like PCI function 0000:01:00.0 with a %llu MiB memory BAR and open it",
	     (unsigned long long)mib);
	ret = cli_gpu_create("0000:01:00.0", vram, NULL, 1, &pci, &vdev);
	if (ret) {
		fprintf(stderr, "p2pbuf run: device: %s\n", strerror(-ret));
		return 1;
	}
	W.vram = vram;
	W.gpus[0] = pci;
	W.gvdevs[0] = vdev;
	{
		/*
		 * Real VRAM exists before anyone maps it; emulated VRAM is a memfd
		 * that allocates on first touch.  Allocate it now, so the figures
		 * below are the paths, not the page allocator.
		 */
		uint64_t t = now_ns();

		ret = fallocate(p2p_mem_fd(p2p_pci_dev_bar_mem(pci, 2)), 0,
				(off_t)p2p_mem_fd_offset(p2p_pci_dev_bar_mem(pci, 2)), (off_t)vram);
		say("VRAM backing allocated in %.1f ms%s", (double)(now_ns() - t) / 1e6,
		    ret ? " (fallocate failed: allocated on first touch instead)" : "");
	}
	W.ngpus = 1;
	for (unsigned int g = 1; g < ngpus; g++, W.ngpus++) {
		char bdf[16];

		snprintf(bdf, sizeof(bdf), "0000:%02x:00.0", 0x10 + g);
		ret = cli_gpu_create(bdf, vram, NULL, 10 + g, &W.gpus[g], &W.gvdevs[g]);
		if (ret) {
			fprintf(stderr, "p2pbuf run: device %s: %s\n", bdf, strerror(-ret));
			return 1;
		}
		say("also GPU %u at %s", g, bdf);
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
	if (W.no_uring) {
		step("Storage device and io_uring: skipped (io_uring unavailable, see the note at the start)");
		done();
	} else if (run_storage(&ro)) {
		return 1;
	}

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

	ce_multi_fini(&W.ce);
	p2p_vfio_device_close(W.cev);
	p2p_pci_dev_put(W.cepci);
	p2p_ioas_put(W.ioas);
	p2p_iommufd_close(W.ctx);
	for (unsigned int g = 1; g < W.ngpus; g++) {
		p2p_vfio_device_close(W.gvdevs[g]);
		p2p_pci_dev_put(W.gpus[g]);
	}
	if (run_vfio_user(vram, vu_skip))
		return 1;
	summary();
	printf("\n%s\n", failed ? "p2pbuf run: FAILED" : "p2pbuf run: all steps behaved as the kernel does");
	return failed ? 1 : 0;
}
