// SPDX-License-Identifier: MIT
/* Shared pieces of the libFuzzer targets (see fuzz.h). */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "fuzz.h"
#include "proc_util.h"

uint8_t fin_u8(struct fin *in)
{
	uint8_t v = 0;

	fin_bytes(in, &v, 1);
	return v;
}

uint16_t fin_u16(struct fin *in)
{
	uint16_t v = 0;

	fin_bytes(in, &v, 2);
	return v;
}

uint32_t fin_u32(struct fin *in)
{
	uint32_t v = 0;

	fin_bytes(in, &v, 4);
	return v;
}

uint64_t fin_u64(struct fin *in)
{
	uint64_t v = 0;

	fin_bytes(in, &v, 8);
	return v;
}

size_t fin_bytes(struct fin *in, void *dst, size_t len)
{
	size_t n = len < in->n ? len : in->n;

	memset((uint8_t *)dst + n, 0, len - n);
	if (n) { /* an empty input may have a NULL pointer */
		memcpy(dst, in->p, n);
		in->p += n;
		in->n -= n;
	}
	return n;
}

static void fz_log(enum p2p_log_level level, const char *fmt, va_list ap)
{
	fprintf(stderr, "p2pbuf[%d]: ", level);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void fz_init(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	if (getenv("P2P_FUZZ_LOG"))
		p2p_set_log(fz_log, P2P_LOG_DEBUG);
	/* The userfaultfd first, so the fd set is stable from the first input. */
	(void)p2p_library_init();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init();
	if (fz_setup())
		abort();
	return 0;
}

static void fz_list_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char path[300], target[256];
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		target[n < 0 ? 0 : n] = 0;
		fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
	}
	if (d)
		closedir(d);
}

int fz_fds_begin(void)
{
	return proc_count_fds();
}

void fz_fds_end(int before)
{
	int now = proc_count_fds();

	if (now != before)
		fz_list_fds();
	FZ_ASSERT(now == before, "fd leak: %d open fds after the input, %d before", now, before);
}

uint8_t fz_canary_byte(long off)
{
	return (uint8_t)(0xa5 ^ (off * 7));
}

int fz_win_create(struct fz_win *w, size_t len, size_t canary)
{
	size_t pg = 4096, inner = (len + 2 * canary + pg - 1) & ~(pg - 1);

	memset(w, 0, sizeof(*w));
	w->maplen = inner + 2 * pg;
	w->map = mmap(NULL, w->maplen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->map == MAP_FAILED)
		return -1;
	if (mprotect(w->map + pg, inner, PROT_READ | PROT_WRITE)) {
		munmap(w->map, w->maplen);
		return -1;
	}
	/* The window ends exactly where its trailing canary meets the guard. */
	w->base = w->map + pg + inner - canary - len;
	w->len = len;
	w->canary = canary;
	fz_win_arm(w);
	return 0;
}

void fz_win_destroy(struct fz_win *w)
{
	if (w->map)
		munmap(w->map, w->maplen);
	w->map = NULL;
}

void fz_win_arm(struct fz_win *w)
{
	for (size_t i = 1; i <= w->canary; i++)
		w->base[-(long)i] = fz_canary_byte(-(long)i);
	for (size_t i = 0; i < w->canary; i++)
		w->base[w->len + i] = fz_canary_byte((long)(w->len + i));
}

int fz_win_ro_canaries(struct fz_win *w)
{
	if (!w->canary)
		return 0;
	if (mprotect(w->base - w->canary, w->canary, PROT_READ) ||
	    mprotect(w->base + w->len, w->canary, PROT_READ))
		return -1;
	return 0;
}

void fz_win_check(const struct fz_win *w, const char *what)
{
	for (size_t i = 1; i <= w->canary; i++)
		FZ_ASSERT(w->base[-(long)i] == fz_canary_byte(-(long)i),
			  "%s: byte %zu before the window was written", what, i);
	for (size_t i = 0; i < w->canary; i++)
		FZ_ASSERT(w->base[w->len + i] == fz_canary_byte((long)(w->len + i)),
			  "%s: byte %zu after the window was written", what, i);
}

int fz_dev_create(const char *name, struct p2p_pci_devset *set, uint32_t group,
		  struct p2p_pci_dev **pci, struct p2p_vfio_device **vdev)
{
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
		.name = name,
		.vendor_id = 0x1af4,
		.device_id = 0x10f0,
		.class_code = 0x030000,
		.group = group,
		.devset = set,
		.bars = {
			[0] = { FZ_BAR0_SIZE, 0 },
			[2] = { FZ_BAR2_SIZE, P2P_BAR_MEM64 | P2P_BAR_PREFETCH },
			[4] = { FZ_BAR4_SIZE, P2P_BAR_IO },
		},
	};
	int ret = p2p_pci_dev_create(&info, pci);

	if (ret)
		return ret;
	ret = p2p_vfio_device_open(*pci, vdev);
	if (ret) {
		p2p_pci_dev_put(*pci);
		*pci = NULL;
	}
	return ret;
}

void fz_check_vfio_dmabuf(int fd, struct p2p_pci_dev *pci)
{
	struct p2p_dmabuf *buf;
	const struct p2p_phys_range *r;
	enum p2p_dmabuf_status st;
	unsigned int nr;
	bool enabled;

	if (p2p_dmabuf_get(fd, &buf))
		return;
	if (p2p_vfio_dmabuf_memattr(buf) >= 0) {
		r = p2p_dmabuf_ranges(buf, &nr);
		FZ_ASSERT(nr >= 1 && r, "a VFIO dma-buf without ranges");
		st = p2p_dmabuf_status(buf);
		enabled = p2p_pci_dev_memory_enabled(pci);
		if (st != P2P_DMABUF_PERM_REVOKED)
			FZ_ASSERT((st == P2P_DMABUF_TEMP_REVOKED) == !enabled,
				  "dma-buf fd %d: status %d while memory %s", fd, st,
				  enabled ? "enabled" : "disabled");
	}
	p2p_dmabuf_put(buf);
}

void fz_fds_add(struct fz_fds *t, int fd)
{
	if (fd >= 0 && t->n < sizeof(t->fd) / sizeof(t->fd[0]))
		t->fd[t->n++] = fd;
}

int fz_fds_pick(const struct fz_fds *t, uint32_t v)
{
	if ((int32_t)v == -1)
		return -1;
	/* One number past the table: an fd number nothing has open (EBADF). */
	if (!t->n || v % (t->n + 1) == t->n)
		return 1000000 + (int)(v % 7);
	return t->fd[v % (t->n + 1)];
}
