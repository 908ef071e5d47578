// SPDX-License-Identifier: MIT
/*
 * CPU mmap of VFIO dma-bufs and of BARs through the device fd: the fourteen
 * checks of Matt Evans' vfio_dmabuf_mmap_test.c (kernel-semantics 8.3), in
 * order, on the harness's emulated device instead of QEMU's "edu".
 *
 * Adaptations: the device "registers" are the BAR memory, read back with
 * p2p_mem_ptr() and p2p_vfio_device_pread(); the 2-range dma-buf of check
 * 10 lives on BAR2 (the emulated device has no BAR1); "closing the device
 * fd and the container" is p2p_vfio_device_close(), there being no
 * container; "closing a dma-buf fd" is p2p_close().  A revoked mapping
 * must raise SIGBUS specifically (3.2), not merely fault.  Beyond 8.3: a
 * BAR mmap window covers exactly its span (in 2), and mmap while memory
 * decoding is off (after 14).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ul
#define BAR0_SIZE (16 * 1024ul) /* t_dev_create()'s BAR0 */
#define BAR2_SIZE (1024 * 1024ul)

static struct t_dev dev;

/* mmap(2) of a BAR on the device fd: offset = index << 40 | bar offset. */
static int mmap_bar(struct p2p_vfio_device *vdev, int bar, uint64_t off, size_t len, void **va)
{
	return p2p_vfio_device_mmap(vdev, NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED,
				    P2P_VFIO_REGION_OFFSET(bar) + off, va);
}

/* Pages of [va, va + len) whose read works. */
static unsigned int pages_readable(void *va, size_t len)
{
	unsigned int n = 0;

	for (size_t o = 0; o < len; o += PAGE)
		n += !t_access((uint8_t *)va + o, false, 0, NULL);
	return n;
}

/* Pages of [va, va + len) whose read (or write of @v) raises SIGBUS (3.2). */
static unsigned int pages_sigbus(void *va, size_t len, bool write, uint8_t v)
{
	unsigned int n = 0;

	for (size_t o = 0; o < len; o += PAGE)
		n += t_access((uint8_t *)va + o, write, v, NULL) == SIGBUS;
	return n;
}

/* One byte: SIGBUS on read? */
static bool sigbus(void *p)
{
	return t_access(p, false, 0, NULL) == SIGBUS;
}

static volatile uint32_t *reg32(void *va, uint64_t off)
{
	return (volatile uint32_t *)((uint8_t *)va + off);
}

int main(void)
{
	void *map_a, *bar_map, *map_b, *map_c, *map_d1, *map_d2, *map_e, *map_g;
	void *map_pg, *map_pg2, *bar2_map, *va;
	int fd_a, fd_a2, fd_b, fd_c, fd_d, fd_d_dup, fd_e, fd_f, fd_g, fd_other;
	struct p2p_vfio_device *vdev2;
	struct p2p_dmabuf *buf, *got;
	struct t_importer imp;
	uint64_t off;
	uint32_t v32;

	t_begin();
	t_dev_create_or_skip(&dev, "0000:01:00.0", BAR2_SIZE, 1);
	/* A process without userfaultfd cannot revoke CPU mappings at all. */
	t_require_uffd();

	/*
	 * 1. A dma-buf of BAR0 mmapped: reads and writes reach the device
	 * "registers" (8.3 item 1; 3.3).
	 */
	t_section("1 dma-buf mmap reaches the BAR");
	fd_a = t_dmabuf_range(dev.vdev, 0, 0, BAR0_SIZE);
	CHECK(fd_a >= 0);
	CHECK_OK(t_mmap_fd(fd_a, BAR0_SIZE, MAP_SHARED, 0, &map_a));
	for (off = 0; off < BAR0_SIZE; off += 1024)
		*reg32(map_a, off) = 0xa0000000u | (uint32_t)off;
	for (off = 0; off < BAR0_SIZE; off += 1024) {
		CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 0, off) == (0xa0000000u | off));
		CHECK(p2p_vfio_device_pread(dev.vdev, &v32, 4,
					    P2P_VFIO_REGION_OFFSET(0) + off) == 4);
		CHECK(v32 == (0xa0000000u | off));
	}
	v32 = 0x5eed1234;
	CHECK(p2p_vfio_device_pwrite(dev.vdev, &v32, 4, P2P_VFIO_REGION_OFFSET(0) + 0x80) == 4);
	CHECK(*reg32(map_a, 0x80) == 0x5eed1234);
	CHECK(pages_readable(map_a, BAR0_SIZE) == BAR0_SIZE / PAGE);

	/* 2. A device-fd BAR mmap works next to it (8.3 item 2; 3.1). */
	t_section("2 VFIO BAR mmap next to the dma-buf");
	CHECK_OK(mmap_bar(dev.vdev, 0, 0, BAR0_SIZE, &bar_map));
	CHECK(*reg32(bar_map, 0x80) == 0x5eed1234);
	*reg32(bar_map, 0x84) = 0xb0b0b0b0;
	CHECK(*reg32(map_a, 0x84) == 0xb0b0b0b0);
	CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 0, 0x84) == 0xb0b0b0b0);
	*reg32(map_a, 0x88) = 0xc0c0c0c0;
	CHECK(*reg32(bar_map, 0x88) == 0xc0c0c0c0);
	/* The BAR mmap's dma-buf covers exactly the mapped span (3.1). */
	CHECK_OK(p2p_va_lookup((uint8_t *)bar_map + 0x1004, &got, &off, NULL));
	CHECK(off == 0x1004 && p2p_dmabuf_size(got) == BAR0_SIZE);
	p2p_dmabuf_put(got);
	/* Beyond 8.3: a window at a BAR offset, vm_pgoff as passed (3.1, v2+). */
	CHECK_OK(mmap_bar(dev.vdev, 0, 2 * PAGE, PAGE, &va));
	CHECK(*reg32(va, 0) == *(uint32_t *)t_bar_ptr(dev.pci, 0, 2 * PAGE));
	*reg32(va, 0xc) = 0xcafef00d;
	CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 0, 2 * PAGE + 0xc) == 0xcafef00d);
	CHECK_OK(p2p_va_lookup((uint8_t *)va + 0xc, &got, &off, NULL));
	CHECK(off == 0xc && p2p_dmabuf_size(got) == PAGE);
	p2p_dmabuf_put(got);
	CHECK_OK(p2p_munmap(va, PAGE));

	/*
	 * 3. REVOKE the dma-buf: its mapping raises SIGBUS, the BAR mmap is
	 * unaffected (8.3 item 3; 3.4, 1.6 PERM_REVOKED).
	 */
	t_section("3 REVOKE faults the dma-buf mapping only");
	CHECK_ERR(t_feat_revoke(dev.vdev, fd_a), 0);
	CHECK(pages_sigbus(map_a, BAR0_SIZE, false, 0) == BAR0_SIZE / PAGE);
	CHECK(pages_sigbus(map_a, BAR0_SIZE, true, 0xee) == BAR0_SIZE / PAGE);
	CHECK(pages_readable(bar_map, BAR0_SIZE) == BAR0_SIZE / PAGE);
	CHECK(*reg32(bar_map, 0x80) == 0x5eed1234);
	*reg32(bar_map, 0x8c) = 0xd0d0d0d0;
	CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 0, 0x8c) == 0xd0d0d0d0);
	/* The faulting writes never reached the device. */
	for (off = 0; off < BAR0_SIZE; off += PAGE)
		CHECK(*t_bar_ptr(dev.pci, 0, off) != 0xee);
	CHECK_OK(p2p_dmabuf_get(fd_a, &buf));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
	/* Importers are refused too (1.5). */
	CHECK_ERR(t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true), -ENODEV);
	p2p_dmabuf_put(buf);

	/* 4. A second REVOKE: EBADFD (8.3 item 4; 3.4). */
	t_section("4 second REVOKE");
	CHECK_ERR(t_feat_revoke(dev.vdev, fd_a), -EBADFD);

	/* 5. mmap of the revoked dma-buf fd fails: ENODEV (8.3 item 5; 3.3). */
	t_section("5 mmap of a revoked dma-buf");
	CHECK_ERR(t_mmap_fd(fd_a, BAR0_SIZE, MAP_SHARED, 0, &va), -ENODEV);
	CHECK_ERR(t_mmap_fd(fd_a, PAGE, MAP_SHARED, PAGE, &va), -ENODEV);
	/* Still no access after an un-revoking trigger: PERM is sticky (1.6). */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(pages_sigbus(map_a, BAR0_SIZE, false, 0) == BAR0_SIZE / PAGE);
	CHECK_ERR(t_mmap_fd(fd_a, BAR0_SIZE, MAP_SHARED, 0, &va), -ENODEV);

	/* 6. A new dma-buf on the same BAR works (8.3 item 6; 1.3). */
	t_section("6 new dma-buf after a revoke");
	fd_a2 = t_dmabuf_range(dev.vdev, 0, 0, BAR0_SIZE);
	CHECK(fd_a2 >= 0);
	CHECK_OK(t_mmap_fd(fd_a2, BAR0_SIZE, MAP_SHARED, 0, &va));
	CHECK(*reg32(va, 0x80) == 0x5eed1234 && *reg32(va, 0x8c) == 0xd0d0d0d0);
	*reg32(va, 0x90) = 0x12121212;
	CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 0, 0x90) == 0x12121212);
	CHECK_OK(p2p_munmap(va, BAR0_SIZE));
	CHECK_OK(p2p_close(fd_a2));

	/*
	 * 7. Two aliasing dma-bufs over the same range are independent: same
	 * bytes, separate revocation (8.3 item 7; 1.3 range semantics).
	 */
	t_section("7 aliasing dma-bufs");
	fd_b = t_dmabuf_range(dev.vdev, 0, PAGE, 2 * PAGE);
	fd_c = t_dmabuf_range(dev.vdev, 0, PAGE, 2 * PAGE);
	CHECK(fd_b >= 0 && fd_c >= 0);
	CHECK_OK(t_mmap_fd(fd_b, 2 * PAGE, MAP_SHARED, 0, &map_b));
	CHECK_OK(t_mmap_fd(fd_c, 2 * PAGE, MAP_SHARED, 0, &map_c));
	*reg32(map_b, PAGE + 0x10) = 0x77777777;
	CHECK(*reg32(map_c, PAGE + 0x10) == 0x77777777);
	CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 0, 2 * PAGE + 0x10) == 0x77777777);
	CHECK_ERR(t_feat_revoke(dev.vdev, fd_b), 0);
	CHECK(pages_sigbus(map_b, 2 * PAGE, false, 0) == 2);
	CHECK(pages_readable(map_c, 2 * PAGE) == 2);
	CHECK(*reg32(map_c, PAGE + 0x10) == 0x77777777);
	*reg32(map_c, 0x20) = 0x88888888;
	CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 0, PAGE + 0x20) == 0x88888888);
	CHECK(pages_readable(bar_map, BAR0_SIZE) == BAR0_SIZE / PAGE);

	/* 8. The same dma-buf mmapped twice (8.3 item 8; 0.4). */
	t_section("8 one dma-buf, two mappings");
	fd_d = t_dmabuf_range(dev.vdev, 0, 2 * PAGE, 2 * PAGE);
	CHECK(fd_d >= 0);
	CHECK_OK(t_mmap_fd(fd_d, 2 * PAGE, MAP_SHARED, 0, &map_d1));
	CHECK_OK(t_mmap_fd(fd_d, 2 * PAGE, MAP_SHARED, 0, &map_d2));
	CHECK(map_d1 != map_d2);
	*reg32(map_d1, 0x40) = 0x99999999;
	CHECK(*reg32(map_d2, 0x40) == 0x99999999);
	*reg32(map_d2, PAGE + 0x40) = 0xaaaaaaaa;
	CHECK(*reg32(map_d1, PAGE + 0x40) == 0xaaaaaaaa);
	CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 0, 3 * PAGE + 0x40) == 0xaaaaaaaa);

	/*
	 * 9. REVOKE through a dup()ed fd kills both mappings of that dma-buf;
	 * the other dma-bufs and the BAR mmap stay intact (8.3 item 9; 3.3: one
	 * address space per dma-buf, 3.4).
	 */
	t_section("9 REVOKE through a dup");
	fd_d_dup = dup(fd_d);
	CHECK(fd_d_dup >= 0);
	CHECK_ERR(t_feat_revoke(dev.vdev, fd_d_dup), 0);
	CHECK(pages_sigbus(map_d1, 2 * PAGE, false, 0) == 2);
	CHECK(pages_sigbus(map_d2, 2 * PAGE, false, 0) == 2);
	CHECK(pages_readable(map_c, 2 * PAGE) == 2);
	CHECK(pages_readable(bar_map, BAR0_SIZE) == BAR0_SIZE / PAGE);
	CHECK(*reg32(bar_map, 3 * PAGE + 0x40) == 0xaaaaaaaa);
	CHECK_ERR(t_feat_revoke(dev.vdev, fd_d), -EBADFD);
	close(fd_d_dup);

	/*
	 * 10. A 2-range dma-buf (BAR2 here: the emulated device has no BAR1)
	 * that skips a page in the middle maps contiguously in VA (8.3 item 10;
	 * 1.3 range semantics, 3.2 PFN lookup walks the ranges).
	 */
	t_section("10 2-range dma-buf skipping a page");
	{
		struct vfio_region_dma_range r[2] = {
			{ .offset = 0, .length = PAGE },
			{ .offset = 2 * PAGE, .length = 2 * PAGE },
		};

		for (off = 0; off < 4 * PAGE; off += 4)
			*(uint32_t *)t_bar_ptr(dev.pci, 2, off) = 0x20000000u | (uint32_t)off;
		fd_e = t_dmabuf(dev.vdev, 2, r, 2);
		CHECK(fd_e >= 0);
		CHECK_OK(p2p_dmabuf_get(fd_e, &buf));
		CHECK(p2p_dmabuf_size(buf) == 3 * PAGE);
		p2p_dmabuf_put(buf);
		CHECK_OK(t_mmap_fd(fd_e, 3 * PAGE, MAP_SHARED, 0, &map_e));
		for (off = 0; off < PAGE; off += 4)
			CHECK(*reg32(map_e, off) == (0x20000000u | off));
		for (off = PAGE; off < 3 * PAGE; off += 4)
			CHECK(*reg32(map_e, off) == (0x20000000u | (off + PAGE)));
		/* A write across the seam lands on both sides of the skipped page. */
		memcpy((uint8_t *)map_e + PAGE - 4, &(uint64_t){ 0x1111111122222222ull }, 8);
		CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 2, PAGE - 4) == 0x22222222);
		CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 2, 2 * PAGE) == 0x11111111);
		CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 2, PAGE) == (0x20000000u | PAGE));
		CHECK_OK(p2p_va_lookup((uint8_t *)map_e + PAGE + 8, &got, &off, NULL));
		CHECK(off == PAGE + 8);
		p2p_dmabuf_put(got);
	}

	/*
	 * 11. mmap at a non-zero pgoff within the dma-buf (8.3 item 11; 0.4
	 * bound check in pages, 3.3).
	 */
	t_section("11 mmap at a pgoff");
	fd_f = t_dmabuf_range(dev.vdev, 2, 16 * PAGE, 8 * PAGE);
	CHECK(fd_f >= 0);
	for (off = 16 * PAGE; off < 24 * PAGE; off += PAGE)
		*(uint64_t *)t_bar_ptr(dev.pci, 2, off) = 0xf0000000ull | off;
	CHECK_OK(t_mmap_fd(fd_f, 2 * PAGE, MAP_SHARED, 3 * PAGE, &map_pg));
	CHECK(*(volatile uint64_t *)map_pg == (0xf0000000ull | (19 * PAGE)));
	CHECK(*(volatile uint64_t *)((uint8_t *)map_pg + PAGE) == (0xf0000000ull | (20 * PAGE)));
	*(volatile uint64_t *)((uint8_t *)map_pg + 8) = 0xfeedull;
	CHECK(*(uint64_t *)t_bar_ptr(dev.pci, 2, 19 * PAGE + 8) == 0xfeedull);
	CHECK_OK(p2p_va_lookup((uint8_t *)map_pg + PAGE, &got, &off, NULL));
	CHECK(off == 4 * PAGE);
	p2p_dmabuf_put(got);
	/* pgoff into the second range of the 2-range dma-buf. */
	CHECK_OK(t_mmap_fd(fd_e, PAGE, MAP_SHARED, 2 * PAGE, &map_pg2));
	CHECK(*reg32(map_pg2, 0) == (0x20000000u | (3 * PAGE)));
	/* Bounds (0.4) and MAP_SHARED only (3.3). */
	CHECK_ERR(t_mmap_fd(fd_f, 2 * PAGE, MAP_SHARED, 7 * PAGE, &va), -EINVAL);
	CHECK_ERR(t_mmap_fd(fd_f, PAGE, MAP_SHARED, 8 * PAGE, &va), -EINVAL);
	CHECK_ERR(t_mmap_fd(fd_f, 9 * PAGE, MAP_SHARED, 0, &va), -EINVAL);
	CHECK_ERR(t_mmap_fd(fd_f, PAGE, MAP_SHARED, 100, &va), -EINVAL);
	CHECK_ERR(t_mmap_fd(fd_f, PAGE, MAP_PRIVATE, 0, &va), -EINVAL);
	CHECK_OK(t_mmap_fd(fd_f, PAGE, MAP_SHARED, 7 * PAGE, &va));
	CHECK(*(volatile uint64_t *)va == (0xf0000000ull | (23 * PAGE)));
	CHECK_OK(p2p_munmap(va, PAGE));

	/*
	 * 12. Closing the dma-buf fd keeps an existing mapping working: the
	 * mapping holds the file (8.3 item 12; 0.1).
	 */
	t_section("12 mapping outlives the fd");
	fd_g = t_dmabuf_range(dev.vdev, 2, 32 * PAGE, 4 * PAGE);
	CHECK(fd_g >= 0);
	CHECK_OK(t_mmap_fd(fd_g, 4 * PAGE, MAP_SHARED, 0, &map_g));
	CHECK_OK(p2p_close(fd_g));
	CHECK_ERR(p2p_dmabuf_get(fd_g, &buf), -EBADF);
	CHECK(pages_readable(map_g, 4 * PAGE) == 4);
	*reg32(map_g, 3 * PAGE + 4) = 0x12345678;
	CHECK(*(uint32_t *)t_bar_ptr(dev.pci, 2, 35 * PAGE + 4) == 0x12345678);
	CHECK_OK(p2p_va_lookup(map_g, &got, &off, NULL));
	CHECK(p2p_dmabuf_status(got) == P2P_DMABUF_OK);
	p2p_dmabuf_put(got);

	/*
	 * 13. Close the device fd while a BAR mmap is alive: the mmap holds the
	 * device file, so dma-buf mappings keep working.  The final munmap of
	 * the BAR mmap really closes the device: every dma-buf is revoked for
	 * good and its mappings fault (8.3 item 13; 1.6 cleanup, 3.1).
	 */
	t_section("13 device close with a live BAR mmap");
	p2p_vfio_device_close(dev.vdev);
	dev.vdev = NULL;
	CHECK(p2p_pci_dev_open_count(dev.pci) == 1);
	CHECK(pages_readable(map_e, 3 * PAGE) == 3);
	CHECK(pages_readable(map_pg, 2 * PAGE) == 2);
	CHECK(pages_readable(map_g, 4 * PAGE) == 4);
	CHECK(pages_readable(map_c, 2 * PAGE) == 2);
	CHECK(pages_readable(bar_map, BAR0_SIZE) == BAR0_SIZE / PAGE);
	CHECK(!t_write_faults((uint8_t *)map_g + 8, 0x42));
	CHECK(*t_bar_ptr(dev.pci, 2, 32 * PAGE + 8) == 0x42);
	CHECK_OK(p2p_munmap(bar_map, BAR0_SIZE));
	CHECK(p2p_pci_dev_open_count(dev.pci) == 0);
	CHECK(pages_sigbus(map_e, 3 * PAGE, false, 0) == 3);
	CHECK(pages_sigbus(map_pg, 2 * PAGE, false, 0) == 2);
	CHECK(pages_sigbus(map_pg2, PAGE, false, 0) == 1);
	CHECK(pages_sigbus(map_g, 4 * PAGE, false, 0) == 4);
	CHECK(pages_sigbus(map_c, 2 * PAGE, false, 0) == 2);
	CHECK(pages_sigbus(map_g, 4 * PAGE, true, 0x43) == 4);
	CHECK(*t_bar_ptr(dev.pci, 2, 32 * PAGE + 8) == 0x42);
	CHECK_OK(p2p_va_lookup(map_g, &got, &off, NULL));
	CHECK(p2p_dmabuf_status(got) == P2P_DMABUF_PERM_REVOKED);
	p2p_dmabuf_put(got);

	/*
	 * 14. After shutdown: mmap of a dma-buf fails with ENODEV, and REVOKE
	 * on a newly opened device file gives ENODEV: the dma-buf belongs to
	 * no device any more (8.3 item 14; 1.6, 3.3, 3.4).
	 */
	t_section("14 after shutdown");
	CHECK_ERR(t_mmap_fd(fd_e, 3 * PAGE, MAP_SHARED, 0, &va), -ENODEV);
	CHECK_ERR(t_mmap_fd(fd_f, PAGE, MAP_SHARED, 0, &va), -ENODEV);
	CHECK_OK(p2p_dmabuf_get(fd_e, &buf));
	CHECK_ERR(t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true), -ENODEV);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_vfio_device_open(dev.pci, &vdev2));
	CHECK_ERR(t_feat_revoke(vdev2, fd_e), -ENODEV);
	CHECK_ERR(t_feat_revoke(vdev2, fd_c), -ENODEV);
	CHECK_ERR(t_feat_revoke(vdev2, fd_a), -ENODEV); /* PERM before shutdown, now unlinked */
	/* The new file's own dma-bufs work, and the old ones stay dead. */
	fd_other = t_dmabuf_range(vdev2, 2, 0, PAGE);
	CHECK(fd_other >= 0);
	CHECK_OK(t_mmap_fd(fd_other, PAGE, MAP_SHARED, 0, &va));
	CHECK(!t_read_faults(va));
	CHECK(pages_sigbus(map_e, 3 * PAGE, false, 0) == 3);
	CHECK_ERR(t_feat_revoke(vdev2, fd_other), 0);
	CHECK(sigbus(va));
	CHECK_OK(p2p_munmap(va, PAGE));
	CHECK_OK(p2p_close(fd_other));

	/*
	 * Beyond 8.3: memory decoding off.  A dma-buf created now starts
	 * revoked and cannot be mmapped (1.6 initial state, 3.3); a BAR mmap
	 * is made but faults until decoding is back on (3.1).
	 */
	t_section("mmap while memory decoding is off");
	CHECK_OK(t_mem_enable(vdev2, false));
	fd_other = t_dmabuf_range(vdev2, 2, PAGE, PAGE);
	CHECK(fd_other >= 0);
	CHECK_ERR(t_mmap_fd(fd_other, PAGE, MAP_SHARED, 0, &va), -ENODEV);
	CHECK_OK(mmap_bar(vdev2, 2, PAGE, PAGE, &bar2_map));
	CHECK(sigbus(bar2_map));
	CHECK(t_access(bar2_map, true, 0x99, NULL) == SIGBUS);
	CHECK_OK(t_mem_enable(vdev2, true));
	CHECK(!t_read_faults(bar2_map));
	CHECK(*t_bar_ptr(dev.pci, 2, PAGE) != 0x99);
	CHECK_OK(t_mmap_fd(fd_other, PAGE, MAP_SHARED, 0, &va));
	CHECK(*reg32(va, 0x10) == *reg32(bar2_map, 0x10));
	CHECK_OK(p2p_munmap(va, PAGE));
	CHECK_OK(p2p_munmap(bar2_map, PAGE));
	CHECK_OK(p2p_close(fd_other));

	/* Tear down: every fd and mapping stays closable after all that (1.6). */
	t_section("teardown");
	CHECK_ERR(p2p_munmap(map_a, PAGE), -EINVAL); /* whole mappings only */
	CHECK_ERR(p2p_munmap((uint8_t *)map_a + PAGE, BAR0_SIZE - PAGE), -EINVAL);
	CHECK_OK(p2p_munmap(map_a, BAR0_SIZE));
	CHECK_OK(p2p_munmap(map_b, 2 * PAGE));
	CHECK_OK(p2p_munmap(map_c, 2 * PAGE));
	CHECK_OK(p2p_munmap(map_d1, 2 * PAGE));
	CHECK_OK(p2p_munmap(map_d2, 2 * PAGE));
	CHECK_OK(p2p_munmap(map_e, 3 * PAGE));
	CHECK_OK(p2p_munmap(map_pg, 2 * PAGE));
	CHECK_OK(p2p_munmap(map_pg2, PAGE));
	CHECK_OK(p2p_munmap(map_g, 4 * PAGE));
	CHECK_ERR(p2p_va_lookup(map_g, &got, &off, NULL), -EFAULT);
	CHECK_OK(p2p_close(fd_a));
	CHECK_OK(p2p_close(fd_b));
	CHECK_OK(p2p_close(fd_c));
	CHECK_OK(p2p_close(fd_d));
	CHECK_OK(p2p_close(fd_e));
	CHECK_OK(p2p_close(fd_f));
	p2p_vfio_device_close(vdev2);
	p2p_pci_dev_put(dev.pci);
	return t_end();
}
