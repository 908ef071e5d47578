// SPDX-License-Identifier: MIT
/*
 * fuzz-heap: the system heap's ioctl (p2p_dma_heap_ioctl()) with any
 * request number and payload, then CPU access bracketing, a CPU mapping
 * and an importer map of what it allocated.
 *
 * Input: a sequence of calls, each: u8 direction/type/nr selector, u16
 * encoded size, payload bytes, u8 sync flags.
 *
 * Oracles: nothing past the size the request encodes is written (canary);
 * with the write direction, the bytes past the kernel's struct come back
 * unchanged; a success hands back (when it can) a dma-buf fd of
 * PAGE_ALIGN(len) bytes with FD_CLOEXEC exactly as asked, whose importer
 * map is one entry per 1 MiB / 64 KiB / 4 KiB chunk covering the buffer,
 * and whose mapping reads back what was written through it; DMA_BUF sync
 * takes exactly the valid flag sets.  Teardown per input, fd count checked.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "fuzz.h"

#define ARG_LEN 16384
#define CANARY 256
#define MAX_CALLS 16

static struct fz_win arg;

int fz_setup(void)
{
	return fz_win_create(&arg, ARG_LEN, CANARY);
}

static void importer_check(struct p2p_dmabuf *buf, uint64_t size)
{
	struct p2p_attach_info info = { .argsz = sizeof(info), .name = "fuzz" };
	struct p2p_attachment *a;
	struct p2p_sgt *sgt;
	uint64_t total = 0;

	FZ_ASSERT(p2p_dmabuf_attach(buf, &info, &a) == 0, "a static importer was refused");
	FZ_ASSERT(p2p_attachment_map(a, &sgt) == 0, "heap map failed");
	for (unsigned int i = 0; i < sgt->nents; i++) {
		uint64_t l = sgt->ents[i].length;

		FZ_ASSERT(l == (1u << 20) || l == (64u << 10) || l == 4096,
			  "a heap chunk of %llu bytes", (unsigned long long)l);
		total += l;
	}
	FZ_ASSERT(total == size, "heap map covers %llu of %llu bytes", (unsigned long long)total,
		  (unsigned long long)size);
	p2p_attachment_unmap(a, sgt);
	p2p_dmabuf_detach(a);
}

static void use_buffer(int fd, uint64_t len, uint32_t fd_flags, uint8_t sync)
{
	uint64_t size = (len + 4095) & ~4095ull;
	struct p2p_dmabuf *buf;
	uint64_t flags = sync & 0x1f;
	bool valid;
	int ret, fl;

	FZ_ASSERT(p2p_dmabuf_get(fd, &buf) == 0, "the heap returned fd %d, not a dma-buf", fd);
	FZ_ASSERT(p2p_dmabuf_size(buf) == size, "a buffer of %llu bytes for len %llu",
		  (unsigned long long)p2p_dmabuf_size(buf), (unsigned long long)len);
	fl = fcntl(fd, F_GETFD);
	FZ_ASSERT(!!(fl & FD_CLOEXEC) == !!(fd_flags & O_CLOEXEC), "FD_CLOEXEC %d for flags %#x",
		  fl, fd_flags);
	valid = !(flags & ~(uint64_t)DMA_BUF_SYNC_VALID_FLAGS_MASK) && (flags & DMA_BUF_SYNC_RW);
	ret = p2p_dmabuf_sync(buf, flags);
	/* A read-only buffer refuses a CPU write section (nothing may write it). */
	FZ_ASSERT(!valid ? ret == -EINVAL
			 : (flags & DMA_BUF_SYNC_WRITE) && (fd_flags & O_ACCMODE) != O_RDWR
				   ? ret == -EPERM : ret == 0,
		  "DMA_BUF sync %#llx on an fd opened %#x: %d", (unsigned long long)flags,
		  fd_flags, ret);
	if (size <= (4u << 20)) {
		void *va;

		importer_check(buf, size);
		ret = p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va);
		FZ_ASSERT((fd_flags & O_ACCMODE) == O_RDWR ? ret == 0 || ret == -ENOMEM
							   : ret == -EACCES,
			  "shared writable mmap of an fd opened %#x: %d", fd_flags, ret);
		if (!ret) {
			uint8_t *p = va;

			p[0] = sync;
			p[size - 1] = (uint8_t)~sync;
			FZ_ASSERT(p[0] == sync && p[size - 1] == (uint8_t)~sync, "mapping lost a store");
			FZ_ASSERT(p2p_munmap(va, size) == 0, "p2p_munmap");
		}
	}
	p2p_dmabuf_put(buf);
}

static void one_call(struct p2p_dma_heap *heap, struct fin *in)
{
	uint8_t sel = fin_u8(in);
	unsigned int size = fin_u16(in) % (ARG_LEN + 1);
	unsigned int dir = sel & 3, type = (sel & 0x40) ? fin_u8(in) : 'H';
	unsigned int nr = (sel & 0x80) ? fin_u8(in) : 0;
	struct dma_heap_allocation_data d;
	unsigned long cmd;
	uint8_t *p = arg.base;
	uint8_t sync, orig[32];
	size_t got;
	long ret;

	if (size >= (1u << _IOC_SIZEBITS))
		size = (1u << _IOC_SIZEBITS) - 1;
	cmd = _IOC(dir, type, nr, size);
	got = fin_bytes(in, p, size < 32 ? size : 32);
	for (size_t i = got; i < ARG_LEN + CANARY; i++)
		p[i] = fz_canary_byte((long)i);
	if ((sel & 0x20) && size >= 8) {
		/* Keep the length sane now and then, so allocations succeed. */
		uint64_t len;

		memcpy(&len, p, 8);
		len %= 8u << 20;
		memcpy(p, &len, 8);
	}
	if (sel & 0x10) {
		/* ...and the fd and flag fields valid. */
		memset(p + 8, 0, size >= 24 ? 16 : (size > 8 ? size - 8 : 0));
		if (size >= 16) {
			uint32_t ff = (fin_u8(in) & 1 ? O_CLOEXEC : 0) | (fin_u8(in) & O_ACCMODE);

			memcpy(p + 12, &ff, 4);
		}
	}
	sync = fin_u8(in);
	memcpy(orig, p, sizeof(orig));
	memset(&d, 0, sizeof(d));
	memcpy(&d, p, size < sizeof(d) ? size : sizeof(d));

	ret = p2p_dma_heap_ioctl(heap, cmd, p);

	for (size_t i = size; i < ARG_LEN + CANARY; i++)
		FZ_ASSERT(p[i] == fz_canary_byte((long)i),
			  "ioctl %#lx wrote byte %zu, past its encoded size %u", cmd, i, size);
	fz_win_check(&arg, "heap ioctl argument");
	if ((dir & _IOC_WRITE) && size > sizeof(d))
		for (size_t i = sizeof(d); i < size; i++)
			FZ_ASSERT(p[i] == (i < sizeof(orig) ? orig[i] : fz_canary_byte((long)i)),
				  "ioctl changed byte %zu past the kernel's struct", i);
	FZ_ASSERT(ret <= 0, "ioctl returned %ld", ret);
	if (!ret && (dir & _IOC_READ) && size >= 12) {
		uint32_t fd;

		memcpy(&fd, p + 8, 4);
		use_buffer((int)fd, d.len, d.fd_flags, sync);
		FZ_ASSERT(p2p_close((int)fd) == 0, "p2p_close of the heap's fd");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin in = { data, size };
	struct p2p_dma_heap *heap;
	int fds = fz_fds_begin();

	FZ_ASSERT(p2p_dma_heap_open("vram", &heap) == -ENOENT, "a heap that does not exist");
	if (p2p_dma_heap_open("system", &heap))
		abort();
	for (int i = 0; i < MAX_CALLS && !fin_empty(&in); i++)
		one_call(heap, &in);
	p2p_dma_heap_close(heap);
	fz_fds_end(fds);
	return 0;
}
