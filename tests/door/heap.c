// SPDX-License-Identifier: MIT
/*
 * (d) The system heap: /dev/dma_heap/system, DMA_HEAP_IOCTL_ALLOC, mmap,
 * DMA_BUF_IOCTL_SYNC around CPU access, and the kernel's errnos for bad
 * requests.
 */
#include "kuapi.h"

int main(void)
{
	struct dma_heap_allocation_data a = {
		.len = 1 << 20, .fd_flags = O_RDWR | O_CLOEXEC,
	};
	struct dma_buf_sync sync = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	int heap = open_or_skip("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	uint8_t *p;

	CHECK(heap >= 0, "open heap");
	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a) == 0 && (int)a.fd >= 0, "ALLOC");
	p = mmap(NULL, a.len, PROT_READ | PROT_WRITE, MAP_SHARED, (int)a.fd, 0);
	CHECK(p != MAP_FAILED, "mmap");
	CHECK(ioctl((int)a.fd, DMA_BUF_IOCTL_SYNC, &sync) == 0, "SYNC_START");
	if (p != MAP_FAILED) {
		memset(p, 0xa5, a.len);
		CHECK(p[a.len - 1] == 0xa5, "write/read back");
	}
	sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	CHECK(ioctl((int)a.fd, DMA_BUF_IOCTL_SYNC, &sync) == 0, "SYNC_END");
	sync.flags = 0x100;
	CHECK(ioctl((int)a.fd, DMA_BUF_IOCTL_SYNC, &sync) < 0 && errno == EINVAL, "bad SYNC flags");
	CHECK(ioctl(heap, _IO('H', 0x7f)) < 0 && errno == ENOTTY, "unknown heap ioctl");
	struct dma_heap_allocation_data bad = { .len = 4096, .fd_flags = O_RDWR, .heap_flags = 1 };
	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &bad) < 0 && errno == EINVAL, "heap_flags");
	struct dma_heap_allocation_data zero = { .len = 0, .fd_flags = O_RDWR };
	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &zero) < 0 && errno == EINVAL, "zero length");
	if (p != MAP_FAILED)
		CHECK(munmap(p, a.len) == 0, "munmap");
	CHECK(close((int)a.fd) == 0 && close(heap) == 0, "close");
	return finish("door-heap");
}
