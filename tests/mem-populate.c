// SPDX-License-Identifier: MIT
/*
 * Pre-faulting memory (issue 10, first touch): p2p_mem_populate(),
 * P2P_MEM_POPULATE, P2P_PCI_PREFAULT and p2p_dmabuf_populate().
 *
 * What it proves:
 * - Fresh memory has no page in its device view; after a populate every
 *   page is present there (/proc/self/pagemap) and resident (mincore),
 *   with 1 thread, the default (one per core), and more threads than
 *   slices; the bytes already there are kept.
 * - P2P_MEM_POPULATE and P2P_PCI_PREFAULT populate at creation; without
 *   them nothing is populated; unknown flags still fail.
 * - p2p_dmabuf_populate() populates exactly the ranges of the buffer
 *   (a multi-range BAR dma-buf leaves the rest of the BAR alone), and a
 *   heap buffer whole; it works on a revoked buffer too.
 * - NULL arguments: -EINVAL.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"

#define MiB (1ull << 20)
#define PAGE 4096ull

static int pagemap = -1;

/* Pages of [p, p + len) present in this process's page tables (pagemap) or, without it, resident. */
static uint64_t present(const void *p, uint64_t len)
{
	uint64_t n = 0;

	if (pagemap >= 0) {
		uint64_t first = (uintptr_t)p / PAGE, count = len / PAGE;
		uint64_t *e = calloc(count, 8);

		CHECK(e != NULL);
		CHECK(pread(pagemap, e, count * 8, (off_t)(first * 8)) == (ssize_t)(count * 8));
		for (uint64_t i = 0; i < count; i++)
			n += (e[i] >> 63) & 1;
		free(e);
	} else {
		unsigned char *v = calloc(len / PAGE, 1);

		CHECK(v && !mincore((void *)p, len, v));
		for (uint64_t i = 0; i < len / PAGE; i++)
			n += v[i] & 1;
		free(v);
	}
	return n;
}

static void test_mem(void)
{
	static const unsigned int threads[] = { 1, 0, 64 };
	const uint64_t sz = 40 * MiB; /* five 8 MiB slices: several threads */
	struct p2p_mem *mem;

	t_section("p2p_mem_populate");
	CHECK_ERR(p2p_mem_populate(NULL, 0), -EINVAL);
	for (unsigned int i = 0; i < sizeof(threads) / sizeof(threads[0]); i++) {
		uint8_t *p;

		CHECK_OK(p2p_mem_create("populate", sz, 0, &mem));
		p = p2p_mem_ptr(mem, 0);
		CHECK(present(p, sz) == 0);
		/* Some bytes first: populate keeps them. */
		memset(p + 3 * MiB + 5, 0xa5, 100);
		p[sz - 1] = 0x5a;
		CHECK_OK(p2p_mem_populate(mem, threads[i]));
		CHECK(present(p, sz) == sz / PAGE);
		CHECK(p[3 * MiB + 5] == 0xa5 && p[3 * MiB + 104] == 0xa5 && p[sz - 1] == 0x5a);
		CHECK(p[0] == 0 && p[3 * MiB + 105] == 0 && p[20 * MiB] == 0);
		/* Again: nothing changes. */
		CHECK_OK(p2p_mem_populate(mem, threads[i]));
		CHECK(p[3 * MiB + 5] == 0xa5 && p[sz - 1] == 0x5a);
		p2p_mem_put(mem);
	}
	/* Small memory: no slice to share, populated by the caller alone. */
	CHECK_OK(p2p_mem_create("populate-small", 3 * PAGE, 0, &mem));
	CHECK_OK(p2p_mem_populate(mem, 0));
	CHECK(present(p2p_mem_ptr(mem, 0), 3 * PAGE) == 3);
	p2p_mem_put(mem);

	t_section("P2P_MEM_POPULATE");
	CHECK_OK(p2p_mem_create("populate-flag", sz, P2P_MEM_POPULATE | P2P_MEM_HUGE, &mem));
	CHECK(present(p2p_mem_ptr(mem, 0), sz) == sz / PAGE);
	p2p_mem_put(mem);
	mem = NULL;
	CHECK_ERR(p2p_mem_create("bad-flag", sz, 1u << 2, &mem), -EINVAL);
	CHECK(mem == NULL);
}

static void test_pci(void)
{
	const uint64_t bar = 32 * MiB;
	struct p2p_pci_dev_info info;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct t_dev plain;

	t_section("P2P_PCI_PREFAULT");
	t_dev_info(&info, "0000:05:00.0", bar, P2P_PCI_PREFAULT, NULL, 5);
	CHECK_OK(t_dev_open_info(&info, &pci, &vdev));
	if (!pci)
		return;
	CHECK(present(t_bar_ptr(pci, 2, 0), bar) == bar / PAGE);
	p2p_vfio_device_close(vdev);
	p2p_pci_dev_put(pci);
	/* Without the flag, BAR memory waits for its first touch. */
	CHECK_OK(t_dev_create(&plain, "0000:06:00.0", bar, 0, NULL, 6));
	CHECK(present(t_bar_ptr(plain.pci, 2, 0), bar) == 0);
	t_dev_destroy(&plain);
	/* An unknown function flag still fails. */
	t_dev_info(&info, "0000:07:00.0", bar, 1u << 20, NULL, 7);
	CHECK_ERR(t_dev_open_info(&info, &pci, &vdev), -EINVAL);
}

static void test_dmabuf(void)
{
	const uint64_t bar = 32 * MiB;
	static const struct vfio_region_dma_range r[] = {
		{ .offset = 20 * MiB, .length = 2 * MiB },
		{ .offset = 4 * MiB, .length = 12 * MiB },
	};
	struct p2p_dma_heap *heap;
	struct p2p_dmabuf *buf;
	struct t_dev d;
	uint8_t *bp;
	int fd;

	t_section("p2p_dmabuf_populate: BAR ranges");
	CHECK_ERR(p2p_dmabuf_populate(NULL, 0), -EINVAL);
	CHECK_OK(t_dev_create(&d, "0000:08:00.0", bar, 0, NULL, 8));
	bp = t_bar_ptr(d.pci, 2, 0);
	fd = t_dmabuf(d.vdev, 2, r, 2);
	CHECK(fd >= 0);
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	/* Revoked (COMMAND.MEM off): the exporter's memory is still there to populate. */
	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK_OK(p2p_dmabuf_populate(buf, 0));
	CHECK_OK(t_mem_enable(d.vdev, true));
	CHECK(present(bp + 20 * MiB, 2 * MiB) == 2 * MiB / PAGE);
	CHECK(present(bp + 4 * MiB, 12 * MiB) == 12 * MiB / PAGE);
	CHECK(present(bp, 4 * MiB) == 0);
	CHECK(present(bp + 16 * MiB, 4 * MiB) == 0);
	CHECK(present(bp + 22 * MiB, bar - 22 * MiB) == 0);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
	t_dev_destroy(&d);

	t_section("p2p_dmabuf_populate: heap buffer");
	CHECK_OK(p2p_dma_heap_open("system", &heap));
	fd = p2p_dma_heap_alloc(heap, 24 * MiB, O_RDWR | O_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	{
		const struct p2p_phys_range *rg;
		unsigned int nr = 0;

		rg = p2p_dmabuf_ranges(buf, &nr);
		CHECK(nr == 1 && rg);
		if (nr == 1 && rg) {
			uint8_t *hp = p2p_mem_ptr(rg[0].mem, rg[0].offset);

			CHECK(present(hp, 24 * MiB) == 0);
			CHECK_OK(p2p_dmabuf_populate(buf, 2));
			CHECK(present(hp, 24 * MiB) == 24 * MiB / PAGE);
		}
	}
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
	p2p_dma_heap_close(heap);
}

int main(void)
{
	t_begin();
	pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	test_mem();
	test_pci();
	test_dmabuf();
	if (pagemap >= 0)
		close(pagemap);
	return t_end();
}
