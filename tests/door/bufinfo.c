// SPDX-License-Identifier: MIT
/*
 * (f) /sys/kernel/debug/dma_buf/bufinfo in the kernel's format: two heap
 * buffers are listed with their size and exporter, the total counts them,
 * and a closed one disappears.
 */
#include "kuapi.h"

static int total(unsigned long long *bytes, int *lines_1m)
{
	char buf[65536], *t;
	int fd = open("/sys/kernel/debug/dma_buf/bufinfo", O_RDONLY | O_CLOEXEC), objs = -1;
	ssize_t n;

	if (fd < 0 && (errno == ENOENT || errno == ENODEV)) {
		printf("SKIP: bufinfo: %s\n", strerror(errno));
		exit(77);
	}
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	CHECK(!strncmp(buf, "\nDma-buf Objects:\n", 18) || !strncmp(buf, "Dma-buf Objects:\n", 17),
	      "header: %.40s", buf);
	*lines_1m = 0;
	for (char *l = strtok_r(buf, "\n", &t); l; l = strtok_r(NULL, "\n", &t)) {
		if (!strncmp(l, "01048576\t", 9) && strstr(l, "system"))
			(*lines_1m)++;
		if (sscanf(l, "Total %d objects, %llu bytes", &objs, bytes) == 2)
			break;
	}
	return objs;
}

int main(void)
{
	struct dma_heap_allocation_data a = { .len = 1 << 20, .fd_flags = O_RDWR | O_CLOEXEC };
	struct dma_heap_allocation_data b = a;
	int heap = open_or_skip("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC), n0, n1, n2, l1, l2;
	unsigned long long by0 = 0, by1 = 0, by2 = 0;

	n0 = total(&by0, &l1);
	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a) == 0 && ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &b) == 0,
	      "ALLOC");
	n1 = total(&by1, &l1);
	CHECK(n1 == n0 + 2 && by1 == by0 + (2 << 20), "objects %d -> %d, bytes %llu -> %llu", n0, n1,
	      by0, by1);
	CHECK(l1 >= 2, "%d lines of 1 MiB system-heap buffers", l1);
	close((int)a.fd);
	n2 = total(&by2, &l2);
	CHECK(n2 == n1 - 1 && by2 == by1 - (1 << 20) && l2 == l1 - 1, "after close: %d objects", n2);
	CHECK(open("/sys/kernel/debug/dma_buf/bufinfo", O_WRONLY) < 0 && errno == EACCES,
	      "bufinfo opened for write");
	close((int)b.fd);
	close(heap);
	return finish("door-bufinfo");
}
