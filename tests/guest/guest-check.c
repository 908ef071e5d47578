// SPDX-License-Identifier: MIT
/*
 * guest-check: the p2pbuf test guest's checks, run by /init.
 *
 * Reads its parameters from /proc/cmdline (README.md has the list):
 *   p2p.expect=ID[,ID...]   these vendor:device IDs must be present
 *   p2p.gpu=VVVV:DDDD|BDF   BAR p2p.gpu.bar (2) is mmapped through sysfs
 *                           resourceN, written with a pattern, read back
 *   p2p.ce=VVVV:DDDD|BDF    the copy engine: its ID register is read;
 *   p2p.cetest=1            ...and it is driven: RAM->RAM, RAM->gpu BAR,
 *                           gpu BAR->RAM copies through a ring in DMA memory
 *   p2p.edu=VVVV:DDDD|BDF   QEMU's edu device DMAs DMA memory to itself and
 *                           back (proves the guest DMA memory path)
 *   p2p.dma=ADDR,SIZE       DMA memory: a reserved physical range mapped
 *                           through /dev/mem (default: the memmap=SIZE$ADDR
 *                           on the command line), or p2p.dma=hugepage
 * and prints one "P2P-GUEST: ..." line per result, then
 * "P2P-GUEST: done".  Exit 0: no failure; 1: some FAIL line printed.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ce_guest.h"

#define SYSPCI "/sys/bus/pci/devices"
#define IORESOURCE_IO 0x100
#define IORESOURCE_MEM 0x200
#define IORESOURCE_PREFETCH 0x2000
#define IORESOURCE_MEM_64 0x100000
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4

static char cmdline[4096];
static unsigned int nfail, npass;

/* ------------------------------------------------------------------ */
/* Output: one write per line, so nothing else on the console cuts it. */

static void line(const char *fmt, ...)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "P2P-GUEST: ");
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	fflush(stdout);
	if (write(STDOUT_FILENO, buf, (size_t)n) < 0)
		exit(3);
}

#define PASS(...) (npass++, line(__VA_ARGS__))
#define FAIL(...) (nfail++, line("FAIL " __VA_ARGS__))

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* A fault in a mapping ends the current check, not the program. */
static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_armed, fault_sig;

static void on_fault(int sig)
{
	if (fault_armed) {
		fault_armed = 0;
		fault_sig = sig;
		siglongjmp(fault_jmp, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* GUARDED("what") { body }: a fault in body prints a FAIL line and skips the rest of it. */
#define GUARDED(what)                                                                    \
	for (int _once = (fault_armed = 1); _once; _once = 0, fault_armed = 0)           \
		if (sigsetjmp(fault_jmp, 1)) {                                           \
			FAIL("%s fault signal=%d", what, (int)fault_sig);                \
		} else

/* ------------------------------------------------------------------ */
/* Command line */

/* Value of "key=" on the command line, or NULL. */
static const char *param(const char *key, char *val, size_t len)
{
	size_t klen = strlen(key);

	for (const char *p = cmdline; *p;) {
		const char *e;

		while (*p == ' ')
			p++;
		e = p + strcspn(p, " ");
		if ((size_t)(e - p) > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			size_t n = (size_t)(e - p) - klen - 1;

			if (n >= len)
				n = len - 1;
			memcpy(val, p + klen + 1, n);
			val[n] = 0;
			return val;
		}
		p = e;
	}
	return NULL;
}

/* The kernel's memparse: a number with an optional K/M/G suffix. */
static uint64_t memparse(const char *s, char **end)
{
	uint64_t v = strtoull(s, end, 0);

	switch (**end) {
	case 'G': case 'g': v <<= 10; /* fall through */
	case 'M': case 'm': v <<= 10; /* fall through */
	case 'K': case 'k': v <<= 10; (*end)++; break;
	}
	return v;
}

static uint64_t param_num(const char *key, uint64_t def)
{
	char v[64], *end;

	return param(key, v, sizeof(v)) ? memparse(v, &end) : def;
}

/* ------------------------------------------------------------------ */
/* PCI through sysfs */

struct pcidev {
	char bdf[32];
	unsigned int vendor, device, class;
	uint64_t start[6], size[6], flags[6];
};

static int read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -errno;
}

static unsigned int read_hex(const char *bdf, const char *attr)
{
	char path[256], buf[64];

	snprintf(path, sizeof(path), SYSPCI "/%s/%s", bdf, attr);
	return read_file(path, buf, sizeof(buf)) ? 0 : (unsigned int)strtoul(buf, NULL, 16);
}

static int load_dev(const char *bdf, struct pcidev *d)
{
	char path[256], buf[2048], *p;

	memset(d, 0, sizeof(*d));
	snprintf(d->bdf, sizeof(d->bdf), "%s", bdf);
	d->vendor = read_hex(bdf, "vendor");
	d->device = read_hex(bdf, "device");
	d->class = read_hex(bdf, "class");
	snprintf(path, sizeof(path), SYSPCI "/%s/resource", bdf);
	if (read_file(path, buf, sizeof(buf)))
		return -1;
	p = buf;
	for (int i = 0; i < 6 && *p; i++) {
		uint64_t s = strtoull(p, &p, 16), e = strtoull(p, &p, 16), f = strtoull(p, &p, 16);

		d->start[i] = s;
		d->flags[i] = f;
		d->size[i] = (e > s || (s && e == s)) ? e - s + 1 : 0;
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static struct pcidev *devs;
static int ndevs;

static void scan_pci(void)
{
	DIR *dir = opendir(SYSPCI);
	char *names[256];
	struct dirent *de;
	int n = 0;

	if (!dir) {
		FAIL("pci no " SYSPCI " errno=%d", errno);
		return;
	}
	while ((de = readdir(dir)) && n < 256)
		if (de->d_name[0] != '.')
			names[n++] = strdup(de->d_name);
	closedir(dir);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
	devs = calloc((size_t)n + 1, sizeof(*devs));
	for (int i = 0; i < n; i++) {
		struct pcidev *d = &devs[ndevs];
		char bars[512] = "";
		size_t bl = 0;

		if (load_dev(names[i], d) == 0)
			ndevs++;
		free(names[i]);
		for (int b = 0; b < 6; b++) {
			uint64_t f = d->flags[b];

			if (!d->size[b])
				continue;
			bl += (size_t)snprintf(bars + bl, sizeof(bars) - bl,
					       " bar%d=0x%" PRIx64 ",0x%" PRIx64 ",%s%s", b,
					       d->start[b], d->size[b],
					       f & IORESOURCE_IO ? "io" :
					       f & IORESOURCE_MEM_64 ? "mem64" : "mem32",
					       f & IORESOURCE_PREFETCH ? "pf" : "");
			if (bl >= sizeof(bars))
				break;
		}
		line("pci %s id=%04x:%04x class=0x%06x%s", d->bdf, d->vendor, d->device, d->class,
		     bars);
	}
	line("pci count=%d", ndevs);
}

/* p2p.KEY=VVVV:DDDD (the first such function) or =BDF; NULL if absent. */
static struct pcidev *find_dev(const char *key, char *spec, size_t len)
{
	unsigned int v, d;
	char extra;

	if (!param(key, spec, len))
		return NULL;
	for (int i = 0; i < ndevs; i++) {
		struct pcidev *p = &devs[i];

		if (!strcmp(p->bdf, spec))
			return p;
		if (sscanf(spec, "%x:%x%c", &v, &d, &extra) == 2 && p->vendor == v &&
		    p->device == d)
			return p;
	}
	return NULL;
}

/* p2p.expect=ID[,ID...]: each must be present. */
static void check_expect(void)
{
	char list[256], *save = NULL;

	if (!param("p2p.expect", list, sizeof(list)))
		return;
	for (char *id = strtok_r(list, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
		unsigned int v, d;
		int i;

		if (sscanf(id, "%x:%x", &v, &d) != 2) {
			FAIL("expect %s not VVVV:DDDD", id);
			continue;
		}
		for (i = 0; i < ndevs && (devs[i].vendor != v || devs[i].device != d); i++)
			;
		if (i < ndevs)
			PASS("expect %04x:%04x at %s", v, d, devs[i].bdf);
		else
			FAIL("expect %04x:%04x absent", v, d);
	}
}

/* enable (MEM and IO decoding), then bus mastering, through config space. */
static unsigned int enable_dev(struct pcidev *d)
{
	char path[256];
	uint16_t cmd = 0;
	int fd;

	snprintf(path, sizeof(path), SYSPCI "/%s/enable", d->bdf);
	(void)write_file(path, "1");
	snprintf(path, sizeof(path), SYSPCI "/%s/config", d->bdf);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (pread(fd, &cmd, 2, PCI_COMMAND) == 2) {
		cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
		if (pwrite(fd, &cmd, 2, PCI_COMMAND) != 2 || pread(fd, &cmd, 2, PCI_COMMAND) != 2)
			cmd = 0;
	}
	close(fd);
	return cmd;
}

static void *map_bar(struct pcidev *d, int bar)
{
	char path[256];
	void *p;
	int fd;

	snprintf(path, sizeof(path), SYSPCI "/%s/resource%d", d->bdf, bar);
	fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	p = mmap(NULL, d->size[bar], PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

/* ------------------------------------------------------------------ */
/* Patterns: the 64-bit word at byte offset o of a region tagged t.
 * The host may check what the guest left in the gpu BAR: tag 1 from
 * BAR offset 0, see README.md. */

static uint64_t pattern(uint64_t tag, uint64_t o)
{
	return 0x5032502d47554553ull ^ (tag << 56) ^ ((o / 8 + 1) * 0x9e3779b97f4a7c15ull);
}

static void fill(volatile void *p, uint64_t len, uint64_t tag, uint64_t base)
{
	volatile uint64_t *w = p;

	for (uint64_t i = 0; i < len / 8; i++)
		w[i] = pattern(tag, base + i * 8);
}

/* Offset of the first bad word, or -1 if all match. */
static int64_t verify(volatile const void *p, uint64_t len, uint64_t tag, uint64_t base,
		      uint64_t *got)
{
	volatile const uint64_t *w = p;

	for (uint64_t i = 0; i < len / 8; i++)
		if ((*got = w[i]) != pattern(tag, base + i * 8))
			return (int64_t)(i * 8);
	return -1;
}

/* ------------------------------------------------------------------ */
/* The gpu: BAR mmap read/write */

static struct pcidev *gpu;
static int gpu_bar;
static volatile uint8_t *gpu_map;

static void check_gpu(void)
{
	char spec[64];
	uint64_t size, rw, t0, got;
	volatile int ok;
	unsigned int cmd;
	int64_t bad;
	int b;

	gpu = find_dev("p2p.gpu", spec, sizeof(spec));
	if (!gpu) {
		if (param("p2p.gpu", spec, sizeof(spec)))
			FAIL("gpu %s absent", spec);
		return;
	}
	b = gpu_bar = (int)param_num("p2p.gpu.bar", 2);
	if (b < 0 || b > 5 || !gpu->size[b] || !(gpu->flags[b] & IORESOURCE_MEM)) {
		FAIL("gpu %s bar%d absent or not memory", gpu->bdf, b);
		gpu = NULL;
		return;
	}
	size = gpu->size[b];
	cmd = enable_dev(gpu);
	gpu_map = map_bar(gpu, b);
	if (!gpu_map) {
		FAIL("gpu %s bar%d mmap errno=%d", gpu->bdf, b, errno);
		gpu = NULL;
		return;
	}
	rw = param_num("p2p.rw", 1 << 20);
	if (rw > size)
		rw = size;
	rw &= ~7ull;
	t0 = now_us();
	ok = 0;
	GUARDED("gpu bar rw") {
		uint64_t tail = size >= 8192 ? 4096 : 0, toff = size - tail, off = 0;

		/* The head, tag 1 (left there), and the last 4 KiB, tag 2. */
		fill(gpu_map, rw, 1, 0);
		fill(gpu_map + toff, tail, 2, toff);
		if ((bad = verify(gpu_map, rw, 1, 0, &got)) < 0) {
			off = toff;
			bad = verify(gpu_map + toff, tail, 2, toff, &got);
		}
		if (bad >= 0) {
			FAIL("gpu %s bar%d rw mismatch off=0x%" PRIx64 " got=0x%016" PRIx64,
			     gpu->bdf, b, off + (uint64_t)bad, got);
		} else {
			ok = 1;
			PASS("gpu %s id=%04x:%04x bar%d addr=0x%" PRIx64 " size=%" PRIu64
			     " rw=ok bytes=%" PRIu64 " cmd=0x%04x us=%" PRIu64,
			     gpu->bdf, gpu->vendor, gpu->device, b, gpu->start[b], size,
			     rw + tail, cmd, now_us() - t0);
		}
	}
	if (!ok)
		gpu = NULL; /* no copy engine peer test on a BAR that failed */
}

/* ------------------------------------------------------------------ */
/* DMA memory: physically contiguous, IOVA = guest physical address */

static uint8_t *dma;
static uint64_t dma_pa, dma_size;

static int dma_hugepage(void)
{
	const size_t sz = 2 << 20;
	uint64_t ent;
	int fd;

	(void)write_file("/proc/sys/vm/nr_hugepages", "2");
	dma = mmap(NULL, sz, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE | MAP_LOCKED, -1, 0);
	if (dma == MAP_FAILED) {
		dma = NULL;
		return -errno;
	}
	memset(dma, 0, sz);
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (pread(fd, &ent, 8, (off_t)((uintptr_t)dma / 4096 * 8)) != 8) {
		close(fd);
		return -EIO;
	}
	close(fd);
	if (!(ent >> 63) || !(ent & ((1ull << 55) - 1)))
		return -EPERM; /* not present, or the PFN hidden (not root) */
	dma_pa = (ent & ((1ull << 55) - 1)) * 4096;
	dma_size = sz;
	return 0;
}

static void setup_dma(void)
{
	char v[128], *end, *p;
	volatile bool hugepage = false;
	volatile int ok;
	uint64_t t0, got;
	int64_t bad;
	int fd;

	if (param("p2p.dma", v, sizeof(v)) && !strcmp(v, "hugepage")) {
		hugepage = true;
		if (dma_hugepage()) {
			FAIL("dma via=hugepage unavailable errno=%d", errno);
			dma = NULL;
			return;
		}
	} else {
		if (param("p2p.dma", v, sizeof(v))) {
			dma_pa = memparse(v, &end);
			dma_size = *end == ',' ? memparse(end + 1, &end) : 0;
		} else if (param("memmap", v, sizeof(v)) && (p = strchr(v, '$'))) {
			dma_size = memparse(v, &end);
			dma_pa = memparse(p + 1, &end);
		}
		if (!dma_size) {
			line("dma none (no memmap=SIZE$ADDR nor p2p.dma=)");
			return;
		}
		/* No O_SYNC: write-back, as a kernel driver's coherent memory. */
		fd = open("/dev/mem", O_RDWR | O_CLOEXEC);
		dma = fd < 0 ? MAP_FAILED : mmap(NULL, dma_size, PROT_READ | PROT_WRITE,
						  MAP_SHARED, fd, (off_t)dma_pa);
		if (dma == MAP_FAILED) {
			FAIL("dma addr=0x%" PRIx64 " size=%" PRIu64 " via=devmem mmap errno=%d",
			     dma_pa, dma_size, errno);
			dma = NULL;
			if (fd >= 0)
				close(fd);
			return;
		}
		close(fd);
	}
	t0 = now_us();
	ok = 0;
	GUARDED("dma rw") {
		fill(dma, dma_size, 3, 0);
		bad = verify(dma, dma_size, 3, 0, &got);
		if (bad >= 0) {
			FAIL("dma rw mismatch off=0x%" PRIx64 " got=0x%016" PRIx64, (uint64_t)bad,
			     got);
		} else {
			ok = 1;
			PASS("dma addr=0x%" PRIx64 " size=%" PRIu64 " via=%s rw=ok us=%" PRIu64,
			     dma_pa, dma_size, hugepage ? "hugepage" : "devmem", now_us() - t0);
		}
	}
	if (!ok)
		dma = NULL;
}

/* Carve DMA memory: offset -> (CPU address, IOVA). */
#define DMA_RING 0x0
#define DMA_COMPL 0x1000
#define DMA_BUF(i) (0x10000 + (uint64_t)(i) * dma_buf_size)
static uint64_t dma_buf_size;

/* ------------------------------------------------------------------ */
/* QEMU's edu device (docs/specs/edu.txt): DMA to its buffer and back */

#define EDU_ID 0x00
#define EDU_LIVE 0x04
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_CNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_CMD_RUN 0x1
#define EDU_CMD_TO_RAM 0x2
#define EDU_BUF 0x40000
/* QEMU 7.2's range check rejects a DMA that ends at the buffer's end (and
 * aborts QEMU): stay below it. */
#define EDU_DMA_LEN 2048

static int edu_dma(volatile uint8_t *bar, uint64_t src, uint64_t dst, uint32_t cmd)
{
	uint64_t deadline = now_us() + 5000000;

	*(volatile uint64_t *)(bar + EDU_DMA_SRC) = src;
	*(volatile uint64_t *)(bar + EDU_DMA_DST) = dst;
	*(volatile uint64_t *)(bar + EDU_DMA_CNT) = EDU_DMA_LEN;
	*(volatile uint64_t *)(bar + EDU_DMA_CMD) = cmd | EDU_CMD_RUN;
	while (*(volatile uint64_t *)(bar + EDU_DMA_CMD) & EDU_CMD_RUN) {
		if (now_us() > deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
	return 0;
}

static void check_edu(void)
{
	char spec[64];
	struct pcidev *d = find_dev("p2p.edu", spec, sizeof(spec));
	uint64_t mask = param_num("p2p.edu.mask", (1u << 28) - 1), t0 = now_us(), got;
	volatile uint8_t *bar;
	uint32_t id, live;
	int64_t bad;

	if (!d) {
		if (param("p2p.edu", spec, sizeof(spec)))
			FAIL("edu %s absent", spec);
		return;
	}
	if (!dma) {
		FAIL("edu %s no DMA memory", d->bdf);
		return;
	}
	/* edu masks DMA addresses (dma_mask property, 28 bits by default). */
	if (dma_pa + DMA_BUF(2) - 1 > mask) {
		FAIL("edu %s dma memory 0x%" PRIx64 " above dma_mask 0x%" PRIx64, d->bdf, dma_pa,
		     mask);
		return;
	}
	enable_dev(d);
	bar = map_bar(d, 0);
	if (!bar) {
		FAIL("edu %s bar0 mmap errno=%d", d->bdf, errno);
		return;
	}
	GUARDED("edu") do {
		id = *(volatile uint32_t *)(bar + EDU_ID);
		*(volatile uint32_t *)(bar + EDU_LIVE) = 0x12345678;
		live = *(volatile uint32_t *)(bar + EDU_LIVE);
		if ((id & 0xff) != 0xed || live != ~0x12345678u) {
			FAIL("edu %s id=0x%08x live=0x%08x", d->bdf, id, live);
			break;
		}
		fill(dma + DMA_BUF(0), EDU_DMA_LEN, 4, 0);
		memset(dma + DMA_BUF(1), 0, EDU_DMA_LEN);
		if (edu_dma(bar, dma_pa + DMA_BUF(0), EDU_BUF, 0) ||
		    edu_dma(bar, EDU_BUF, dma_pa + DMA_BUF(1), EDU_CMD_TO_RAM)) {
			FAIL("edu %s dma timeout", d->bdf);
			break;
		}
		bad = verify(dma + DMA_BUF(1), EDU_DMA_LEN, 4, 0, &got);
		if (bad >= 0)
			FAIL("edu %s dma mismatch off=0x%" PRIx64 " got=0x%016" PRIx64, d->bdf,
			     (uint64_t)bad, got);
		else
			PASS("edu %s id=0x%08x dma=ok src=0x%" PRIx64 " dst=0x%" PRIx64
			     " bytes=%d us=%" PRIu64, d->bdf, id, dma_pa + DMA_BUF(0),
			     dma_pa + DMA_BUF(1), EDU_DMA_LEN, now_us() - t0);
	} while (0);
	munmap((void *)bar, d->size[0]);
}

/* ------------------------------------------------------------------ */
/* The p2pbuf copy engine */

static void ce_one(struct ce_guest *ce, const char *bdf, const char *what, uint64_t src,
		   uint64_t dst, volatile uint8_t *src_va, volatile uint8_t *dst_va, uint64_t len,
		   uint64_t tag)
{
	struct ce_compl c;
	uint64_t t0 = now_us(), got;
	int64_t bad;
	int ret;

	fill(src_va, len, tag, 0);
	memset((void *)dst_va, 0, len);
	ret = ce_guest_copy(ce, src, dst, len, 5000, &c);
	if (ret) {
		FAIL("ce %s copy=%s timeout head=0x%x", bdf, what,
		     (unsigned int)ce->io->read(ce->io->ctx, CE_REG_HEAD, 4));
		return;
	}
	if (c.status != CE_ST_OK || c.bytes != len) {
		FAIL("ce %s copy=%s status=%s bytes=%" PRIu64, bdf, what,
		     ce_status_name(c.status), c.bytes);
		return;
	}
	bad = verify(dst_va, len, tag, 0, &got);
	if (bad >= 0)
		FAIL("ce %s copy=%s mismatch off=0x%" PRIx64 " got=0x%016" PRIx64, bdf, what,
		     (uint64_t)bad, got);
	else
		PASS("ce %s copy=%s src=0x%" PRIx64 " dst=0x%" PRIx64 " bytes=%" PRIu64
		     " status=ok us=%" PRIu64, bdf, what, src, dst, len, now_us() - t0);
}

static void check_ce(void)
{
	char spec[64], v[8];
	struct pcidev *d = find_dev("p2p.ce", spec, sizeof(spec));
	bool run = param("p2p.cetest", v, sizeof(v)) && strcmp(v, "0");
	uint64_t len = dma_buf_size;
	struct ce_io io = ce_io_mmio;
	struct ce_guest ce;
	volatile uint8_t *bar;
	uint32_t id;
	int ret;

	if (!d) {
		if (param("p2p.ce", spec, sizeof(spec)))
			FAIL("ce %s absent", spec);
		return;
	}
	if (!d->size[0] || !(d->flags[0] & IORESOURCE_MEM)) {
		FAIL("ce %s bar0 absent or not memory", d->bdf);
		return;
	}
	enable_dev(d);
	bar = map_bar(d, 0);
	if (!bar) {
		FAIL("ce %s bar0 mmap errno=%d", d->bdf, errno);
		return;
	}
	io.ctx = (void *)bar;
	GUARDED("ce") do {
		if (!run) {
			id = *(volatile uint32_t *)bar;
			if (id == CE_ID)
				PASS("ce %s id=%04x:%04x reg.id=0x%08x (p2p.cetest=1 drives it)",
				     d->bdf, d->vendor, d->device, id);
			else
				FAIL("ce %s reg.id=0x%08x want=0x%08x", d->bdf, id, CE_ID);
			break;
		}
		if (!dma) {
			FAIL("ce %s no DMA memory", d->bdf);
			break;
		}
		ret = ce_guest_init(&ce, &io, dma + DMA_RING, dma_pa + DMA_RING, dma + DMA_COMPL,
				    dma_pa + DMA_COMPL, 16, &id);
		if (ret) {
			FAIL("ce %s init=%d reg.id=0x%08x", d->bdf, ret, id);
			break;
		}
		PASS("ce %s id=%04x:%04x reg.id=0x%08x ring=0x%" PRIx64 " compl=0x%" PRIx64
		     " entries=16", d->bdf, d->vendor, d->device, id, dma_pa + DMA_RING,
		     dma_pa + DMA_COMPL);
		ce_one(&ce, d->bdf, "ram-ram", dma_pa + DMA_BUF(0), dma_pa + DMA_BUF(1),
		       dma + DMA_BUF(0), dma + DMA_BUF(1), len, 5);
		if (gpu && gpu->size[gpu_bar] >= 2 * len) {
			/* Peer to peer: the gpu BAR's guest physical address is its IOVA. */
			uint64_t off = gpu->size[gpu_bar] / 2;
			uint64_t gpa = gpu->start[gpu_bar] + off;

			ce_one(&ce, d->bdf, "ram-gpu", dma_pa + DMA_BUF(0), gpa, dma + DMA_BUF(0),
			       gpu_map + off, len, 6);
			ce_one(&ce, d->bdf, "gpu-ram", gpa, dma_pa + DMA_BUF(1), gpu_map + off,
			       dma + DMA_BUF(1), len, 7);
		} else {
			line("ce %s p2p skipped (no gpu BAR of 2x%" PRIu64 " bytes)", d->bdf, len);
		}
		ce_guest_fini(&ce);
	} while (0);
	munmap((void *)bar, d->size[0]);
}

/* ------------------------------------------------------------------ */

int main(void)
{
	struct sigaction sa = { .sa_handler = on_fault };
	char v[256];
	int fd;

	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, cmdline, sizeof(cmdline) - 1);

		cmdline[n > 0 ? n : 0] = 0;
		cmdline[strcspn(cmdline, "\n")] = 0;
		close(fd);
	}
	if (read_file("/proc/sys/kernel/osrelease", v, sizeof(v)) == 0)
		v[strcspn(v, "\n")] = 0;
	else
		strcpy(v, "?");
	{
		char up[64] = "?";

		if (read_file("/proc/uptime", up, sizeof(up)) == 0)
			up[strcspn(up, " ")] = 0;
		line("start kernel=%s uptime=%s", v, up);
	}
	line("cmdline %s", cmdline);
	scan_pci();
	check_expect();
	dma_buf_size = param_num("p2p.celen", 64 << 10);
	dma_buf_size = (dma_buf_size + 4095) & ~4095ull;
	check_gpu();
	setup_dma();
	if (dma && DMA_BUF(2) > dma_size) {
		FAIL("dma size=%" PRIu64 " too small for 2 buffers of p2p.celen=%" PRIu64,
		     dma_size, dma_buf_size);
		dma = NULL;
	}
	check_edu();
	check_ce();
	line("summary pass=%u fail=%u", npass, nfail);
	line("done");
	return nfail ? 1 : 0;
}
