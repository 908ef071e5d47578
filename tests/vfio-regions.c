// SPDX-License-Identifier: MIT
/*
 * The VFIO device's regions: VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO,
 * config space and BAR access through pread/pwrite at index << 40 offsets,
 * BAR mmap through the device (kernel-semantics 3.1), mmap of a VFIO
 * dma-buf fd (0.4, 3.3) and the VA -> (dma-buf, offset) lookup (4.2).
 *
 * Where kernel-semantics is silent the expected values are vfio-pci's
 * (drivers/vfio/pci/vfio_pci_core.c, vfio_pci_rdwr.c, vfio_pci_config.c).
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ull
#define BAR0_SIZE 16384ull	 /* harness device: BAR0, 32-bit memory */
#define BAR2_SIZE (1ull << 20) /* what this test asks for: BAR2, 64-bit prefetchable */
#define BAR4_SIZE 256ull	 /* harness device: BAR4, I/O ports */

#define REGION(i, off) (P2P_VFIO_REGION_OFFSET(i) + (uint64_t)(off))
#define CFG(off) REGION(VFIO_PCI_CONFIG_REGION_INDEX, off)
#define RW (PROT_READ | PROT_WRITE)

#define offsetofend(t, m) (offsetof(t, m) + sizeof(((t *)0)->m))

/* A BAR mmap that must fail with @want (unmapped again if it did not). */
#define BAR_MMAP_ERR(vdev, len, flags, offset, want)                                         \
	do {                                                                                 \
		void *_mp = NULL;                                                            \
		int _mr = p2p_vfio_device_mmap(vdev, NULL, len, RW, flags, offset, &_mp);    \
		CHECK_ERR(_mr, want);                                                        \
		if (!_mr)                                                                    \
			p2p_munmap(_mp, len);                                                \
	} while (0)

/* A dma-buf mmap that must fail with @want (unmapped again if it did not). */
#define DMABUF_MMAP_ERR(buf, len, flags, offset, want)                                       \
	do {                                                                                 \
		void *_mp = NULL;                                                            \
		int _mr = p2p_dmabuf_mmap(buf, NULL, len, RW, flags, offset, &_mp);          \
		CHECK_ERR(_mr, want);                                                        \
		if (!_mr)                                                                    \
			p2p_munmap(_mp, len);                                                \
	} while (0)

/* A MAP_SHARED dma-buf mmap that must work; *@pp is NULL if it did not. */
#define DMABUF_MAP(buf, len, prot, offset, pp)                                               \
	do {                                                                                 \
		*(pp) = NULL;                                                                \
		CHECK_OK(p2p_dmabuf_mmap(buf, NULL, len, prot, MAP_SHARED, offset, pp));     \
	} while (0)

static struct t_dev dev;

static long ioctl_(struct p2p_vfio_device *vdev, unsigned long req, void *arg)
{
	return p2p_vfio_device_ioctl(vdev, req, arg);
}

static uint32_t cfg_read(struct p2p_vfio_device *vdev, unsigned int off, unsigned int size)
{
	uint32_t v = 0;
	ssize_t n = p2p_vfio_device_pread(vdev, &v, size, CFG(off));

	if (n != (ssize_t)size) {
		fprintf(stderr, "config read of %u bytes at 0x%x: %zd\n", size, off, n);
		t_failures++;
	}
	return v;
}

static void cfg_write(struct p2p_vfio_device *vdev, unsigned int off, unsigned int size,
		      uint32_t v)
{
	ssize_t n = p2p_vfio_device_pwrite(vdev, &v, size, CFG(off));

	if (n != (ssize_t)size) {
		fprintf(stderr, "config write of %u bytes at 0x%x: %zd\n", size, off, n);
		t_failures++;
	}
}

/* A byte pattern in which every page of BAR2 differs from every other. */
static uint8_t pat(uint64_t o, uint8_t seed)
{
	return (uint8_t)((o >> 12) * 37 + (o & 0xfff) * 13 + seed);
}

static void fill_bar(int bar, uint64_t size, uint8_t seed)
{
	uint8_t *p = t_bar_ptr(dev.pci, bar, 0);

	for (uint64_t o = 0; o < size; o++)
		p[o] = pat(o, seed);
}

/* ---------------------------------------------------------------------- */

/* VFIO_DEVICE_GET_INFO (vfio_pci_ioctl_get_info). */
static void test_device_info(void)
{
	struct vfio_device_info info;
	struct t_dev nf;
	int ret;

	t_section("VFIO_DEVICE_GET_INFO");

	memset(&info, 0, sizeof(info));
	info.argsz = sizeof(info);
	info.cap_offset = 0xdead;
	CHECK_OK(ioctl_(dev.vdev, VFIO_DEVICE_GET_INFO, &info));
	/* A PCI function with FLR: PCI | RESET, nothing else (no capability chain). */
	CHECK(info.flags == (VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET));
	CHECK(info.num_regions == VFIO_PCI_NUM_REGIONS);
	CHECK(info.num_regions == 9);
	CHECK(info.num_irqs == VFIO_PCI_NUM_IRQS);
	CHECK(info.argsz == sizeof(info));
	/* argsz covers cap_offset: the kernel clears it (no capabilities). */
	CHECK(info.cap_offset == 0);

	/* argsz exactly up to num_irqs is enough; only that much is written back. */
	memset(&info, 0, sizeof(info));
	info.argsz = offsetofend(struct vfio_device_info, num_irqs);
	info.cap_offset = 0xdead;
	CHECK_OK(ioctl_(dev.vdev, VFIO_DEVICE_GET_INFO, &info));
	CHECK(info.num_regions == 9);
	CHECK(info.cap_offset == 0xdead);

	/* argsz below offsetofend(num_irqs) -> EINVAL. */
	for (uint32_t sz = 0; sz < offsetofend(struct vfio_device_info, num_irqs); sz += 5) {
		memset(&info, 0, sizeof(info));
		info.argsz = sz;
		CHECK_ERR(ioctl_(dev.vdev, VFIO_DEVICE_GET_INFO, &info), -EINVAL);
	}
	info.argsz = offsetofend(struct vfio_device_info, num_irqs) - 1;
	CHECK_ERR(ioctl_(dev.vdev, VFIO_DEVICE_GET_INFO, &info), -EINVAL);

	/* Without FLR the reset flag is absent (reset_works false). */
	ret = t_dev_create(&nf, "0000:04:00.0", BAR2_SIZE, P2P_PCI_NO_FLR, NULL, 4);
	CHECK_OK(ret);
	if (!ret) {
		memset(&info, 0, sizeof(info));
		info.argsz = sizeof(info);
		CHECK_OK(ioctl_(nf.vdev, VFIO_DEVICE_GET_INFO, &info));
		CHECK(info.flags == VFIO_DEVICE_FLAGS_PCI);
		CHECK(info.num_regions == 9);
		/* ... and its PCIe DEVCAP does not advertise FLR. */
		CHECK(!(cfg_read(nf.vdev, P2P_PCI_EXP_DEVCAP, 4) & P2P_PCI_EXP_DEVCAP_FLR));
		/* VFIO_DEVICE_RESET: reset_works false -> EINVAL (1.7 item 5). */
		CHECK_ERR(ioctl_(nf.vdev, VFIO_DEVICE_RESET, NULL), -EINVAL);
		t_dev_destroy(&nf);
	}

	/* An unknown ioctl on the device fd -> ENOTTY. */
	CHECK_ERR(ioctl_(dev.vdev, VFIO_DEVICE_GET_IRQ_INFO + 100, &info), -ENOTTY);
}

/* VFIO_DEVICE_GET_REGION_INFO for every index (vfio_pci_ioctl_get_region_info). */
static void test_region_info(void)
{
	static const struct {
		uint64_t size;
		uint32_t flags;
	} want[VFIO_PCI_NUM_REGIONS] = {
		[VFIO_PCI_BAR0_REGION_INDEX] = { BAR0_SIZE, VFIO_REGION_INFO_FLAG_READ |
								VFIO_REGION_INFO_FLAG_WRITE |
								VFIO_REGION_INFO_FLAG_MMAP },
		[VFIO_PCI_BAR1_REGION_INDEX] = { 0, 0 },
		[VFIO_PCI_BAR2_REGION_INDEX] = { BAR2_SIZE, VFIO_REGION_INFO_FLAG_READ |
								VFIO_REGION_INFO_FLAG_WRITE |
								VFIO_REGION_INFO_FLAG_MMAP },
		[VFIO_PCI_BAR3_REGION_INDEX] = { 0, 0 }, /* upper half of BAR2 */
		/* I/O BAR: read/write, never mmap. */
		[VFIO_PCI_BAR4_REGION_INDEX] = { BAR4_SIZE, VFIO_REGION_INFO_FLAG_READ |
								VFIO_REGION_INFO_FLAG_WRITE },
		[VFIO_PCI_BAR5_REGION_INDEX] = { 0, 0 },
		[VFIO_PCI_ROM_REGION_INDEX] = { 0, 0 }, /* no ROM */
		[VFIO_PCI_CONFIG_REGION_INDEX] = { P2P_PCI_CFG_SIZE,
						   VFIO_REGION_INFO_FLAG_READ |
							   VFIO_REGION_INFO_FLAG_WRITE },
		/* VGA: no legacy VGA ranges emulated: -EINVAL, below. */
	};
	struct vfio_region_info ri;

	t_section("VFIO_DEVICE_GET_REGION_INFO");

	for (uint32_t i = 0; i < VFIO_PCI_NUM_REGIONS; i++) {
		memset(&ri, 0xa5, sizeof(ri));
		ri.argsz = sizeof(ri);
		ri.index = i;
		if (i == VFIO_PCI_VGA_REGION_INDEX) {
			/* vfio_pci_ioctl_get_region_info(): !vdev->has_vga -> EINVAL. */
			CHECK_ERR(ioctl_(dev.vdev, VFIO_DEVICE_GET_REGION_INFO, &ri), -EINVAL);
			continue;
		}
		CHECK_OK(ioctl_(dev.vdev, VFIO_DEVICE_GET_REGION_INFO, &ri));
		CHECK(ri.index == i);
		/* 3.1: region offset = index << 40, for every index, sized or not. */
		CHECK(ri.offset == (uint64_t)i << 40);
		CHECK(ri.offset == P2P_VFIO_REGION_OFFSET(i));
		CHECK(ri.size == want[i].size);
		CHECK(ri.flags == want[i].flags);
		CHECK(ri.cap_offset == 0);
		if (ri.size != want[i].size || ri.flags != want[i].flags)
			fprintf(stderr, "  region %u: size %llu flags 0x%x, want %llu 0x%x\n", i,
				(unsigned long long)ri.size, ri.flags,
				(unsigned long long)want[i].size, want[i].flags);
	}
	/* The minimum argsz is offsetofend(offset) = 32: enough. */
	memset(&ri, 0, sizeof(ri));
	ri.argsz = offsetofend(struct vfio_region_info, offset);
	ri.index = VFIO_PCI_BAR2_REGION_INDEX;
	CHECK_OK(ioctl_(dev.vdev, VFIO_DEVICE_GET_REGION_INFO, &ri));
	CHECK(ri.size == BAR2_SIZE);
	/* argsz below that -> EINVAL. */
	for (uint32_t sz = 0; sz < offsetofend(struct vfio_region_info, offset); sz += 7) {
		memset(&ri, 0, sizeof(ri));
		ri.argsz = sz;
		ri.index = VFIO_PCI_BAR0_REGION_INDEX;
		CHECK_ERR(ioctl_(dev.vdev, VFIO_DEVICE_GET_REGION_INFO, &ri), -EINVAL);
	}
	ri.argsz = offsetofend(struct vfio_region_info, offset) - 1;
	CHECK_ERR(ioctl_(dev.vdev, VFIO_DEVICE_GET_REGION_INFO, &ri), -EINVAL);
	/* index 9 and beyond (no device-specific regions) -> EINVAL. */
	{
		static const uint32_t bad[] = { VFIO_PCI_NUM_REGIONS, 10, 64, 0xffffffffu };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			memset(&ri, 0, sizeof(ri));
			ri.argsz = sizeof(ri);
			ri.index = bad[i];
			CHECK_ERR(ioctl_(dev.vdev, VFIO_DEVICE_GET_REGION_INFO, &ri), -EINVAL);
		}
	}
}

/* Write all ones to a BAR register, read the size mask back, restore it. */
static void check_bar_sizing(struct p2p_vfio_device *vdev, unsigned int reg, uint32_t want)
{
	uint32_t orig = cfg_read(vdev, reg, 4), got;

	cfg_write(vdev, reg, 4, 0xffffffffu);
	got = cfg_read(vdev, reg, 4);
	CHECK(got == want);
	if (got != want)
		fprintf(stderr, "  BAR register 0x%x sized 0x%08x, want 0x%08x\n", reg, got, want);
	cfg_write(vdev, reg, 4, orig);
	CHECK(cfg_read(vdev, reg, 4) == orig);
}

/* Config space through the config region (index 7). */
static void test_config_space(void)
{
	uint32_t v, bar;
	uint8_t buf[64];
	unsigned int pos, ids[8], n = 0;

	t_section("config space");

	/* Identity: vendor and device ids, in one and in two reads. */
	CHECK(cfg_read(dev.vdev, 0x00, 2) == 0x1b36);
	CHECK(cfg_read(dev.vdev, 0x02, 2) == 0x0011);
	CHECK(cfg_read(dev.vdev, 0x00, 4) == 0x00111b36);
	/* Class code 0x030000 in bytes 0x09-0x0b; header type 0. */
	CHECK((cfg_read(dev.vdev, 0x08, 4) >> 8) == 0x030000);
	CHECK((cfg_read(dev.vdev, 0x0e, 1) & 0x7f) == 0);
	/* A long, unaligned read of the header matches the 1-byte reads. */
	CHECK(p2p_vfio_device_pread(dev.vdev, buf, 61, CFG(1)) == 61);
	for (unsigned int i = 0; i < 61; i++)
		CHECK(buf[i] == (uint8_t)cfg_read(dev.vdev, 1 + i, 1));
	/* The typed accessor agrees with the region. */
	CHECK_OK(p2p_vfio_config_read(dev.vdev, 0x00, 4, &v));
	CHECK(v == 0x00111b36);

	/* Vendor/device ids are read-only. */
	cfg_write(dev.vdev, 0x00, 4, 0x12345678);
	CHECK(cfg_read(dev.vdev, 0x00, 4) == 0x00111b36);

	/* Memory BAR0, 32-bit, non-prefetchable: size mask, flag bits 0. */
	bar = cfg_read(dev.vdev, 0x10, 4);
	CHECK((bar & 0xf) == 0);
	check_bar_sizing(dev.vdev, 0x10, (uint32_t)~(BAR0_SIZE - 1));
	/* BAR1: not implemented, reads 0 and ignores writes. */
	check_bar_sizing(dev.vdev, 0x14, 0);
	/* BAR2, 64-bit prefetchable: type bits 10b (0x4) and prefetch (0x8) survive sizing. */
	bar = cfg_read(dev.vdev, 0x18, 4);
	CHECK((bar & 0xf) == 0xc);
	CHECK((bar & ~0xfu) % BAR2_SIZE == 0);
	check_bar_sizing(dev.vdev, 0x18, (uint32_t)~(BAR2_SIZE - 1) | 0xc);
	/* BAR3 is BAR2's upper half: a 1 MiB BAR has all 32 upper address bits writable. */
	check_bar_sizing(dev.vdev, 0x1c, 0xffffffffu);
	/* BAR4, I/O: bit 0 set, bit 1 reserved, size mask above. */
	bar = cfg_read(dev.vdev, 0x20, 4);
	CHECK((bar & 0x3) == 0x1);
	check_bar_sizing(dev.vdev, 0x20, (uint32_t)~(BAR4_SIZE - 1) | 0x1);
	/* BAR5 and the expansion ROM BAR: absent, read 0 after sizing. */
	check_bar_sizing(dev.vdev, 0x24, 0);
	check_bar_sizing(dev.vdev, 0x30, 0);
	/* Sizing a BAR byte by byte ends the same way. */
	bar = cfg_read(dev.vdev, 0x10, 4);
	for (unsigned int i = 0; i < 4; i++)
		cfg_write(dev.vdev, 0x10 + i, 1, 0xff);
	CHECK(cfg_read(dev.vdev, 0x10, 4) == (uint32_t)~(BAR0_SIZE - 1));
	cfg_write(dev.vdev, 0x10, 4, bar);
	CHECK(cfg_read(dev.vdev, 0x10, 4) == bar);

	/* Capability list: status bit 4, pointer at 0x34, PM at 0x40, PCIe at 0x50, MSI at 0x90, end. */
	CHECK(cfg_read(dev.vdev, 0x06, 2) & 0x10);
	CHECK(cfg_read(dev.vdev, 0x34, 1) == P2P_PCI_CAP_PM);
	CHECK(cfg_read(dev.vdev, P2P_PCI_CAP_PM, 1) == 0x01);	 /* PCI_CAP_ID_PM */
	CHECK(cfg_read(dev.vdev, P2P_PCI_CAP_PM + 1, 1) == P2P_PCI_CAP_EXP);
	CHECK(cfg_read(dev.vdev, P2P_PCI_CAP_EXP, 1) == 0x10); /* PCI_CAP_ID_EXP */
	CHECK(cfg_read(dev.vdev, P2P_PCI_CAP_EXP + 1, 1) == P2P_PCI_CAP_MSI);
	CHECK(cfg_read(dev.vdev, P2P_PCI_CAP_MSI, 1) == 0x05); /* PCI_CAP_ID_MSI */
	CHECK(cfg_read(dev.vdev, P2P_PCI_CAP_MSI + 1, 1) == 0x00);
	/* PMCSR: D0 after open. */
	CHECK((cfg_read(dev.vdev, P2P_PCI_PM_CTRL, 2) & 0x3) == 0);
	/* PCIe: endpoint (type 0 in bits 7:4 of the flags), DEVCAP advertises FLR. */
	CHECK(((cfg_read(dev.vdev, P2P_PCI_CAP_EXP + 2, 2) >> 4) & 0xf) == 0);
	CHECK(cfg_read(dev.vdev, P2P_PCI_EXP_DEVCAP, 4) & P2P_PCI_EXP_DEVCAP_FLR);
	/* Walking the list terminates and finds exactly PM, PCIe, MSI. */
	for (pos = cfg_read(dev.vdev, 0x34, 1) & ~3u; pos && n < 8;
	     pos = cfg_read(dev.vdev, pos + 1, 1) & ~3u)
		ids[n++] = cfg_read(dev.vdev, pos, 1);
	CHECK(n == 3 && ids[0] == 0x01 && ids[1] == 0x10 && ids[2] == 0x05);

	/* Beyond the 4 KiB config space the region ends. */
	/* vfio_config_do_rw(): beyond the config space -> EFAULT. */
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, CFG(P2P_PCI_CFG_SIZE)), -EFAULT);
}

/* BAR regions through pread/pwrite (vfio_pci_bar_rw). */
static void test_bar_rw(void)
{
	uint8_t buf[256], chk[256], sev[4] = { 0x77, 0x77, 0x77, 0x77 };
	static uint8_t big[BAR0_SIZE];

	t_section("BAR read/write");
	CHECK_OK(t_mem_enable(dev.vdev, true));
	fill_bar(0, BAR0_SIZE, 1);
	fill_bar(2, BAR2_SIZE, 2);

	/* Reads return device memory. */
	CHECK(p2p_vfio_device_pread(dev.vdev, buf, 256, REGION(2, 5 * PAGE + 3)) == 256);
	CHECK(memcmp(buf, t_bar_ptr(dev.pci, 2, 5 * PAGE + 3), 256) == 0);
	CHECK(p2p_vfio_device_pread(dev.vdev, buf, 1, REGION(0, BAR0_SIZE - 1)) == 1);
	CHECK(buf[0] == pat(BAR0_SIZE - 1, 1));
	CHECK(p2p_vfio_device_pread(dev.vdev, big, BAR0_SIZE, REGION(0, 0)) == (ssize_t)BAR0_SIZE);
	CHECK(memcmp(big, t_bar_ptr(dev.pci, 0, 0), BAR0_SIZE) == 0);
	/* Writes reach device memory, and only the bytes written. */
	for (int i = 0; i < 256; i++)
		buf[i] = (uint8_t)(0xff - i);
	CHECK(p2p_vfio_device_pwrite(dev.vdev, buf, 100, REGION(2, 7 * PAGE + 1)) == 100);
	CHECK(memcmp(t_bar_ptr(dev.pci, 2, 7 * PAGE + 1), buf, 100) == 0);
	CHECK(*t_bar_ptr(dev.pci, 2, 7 * PAGE) == pat(7 * PAGE, 2));
	CHECK(*t_bar_ptr(dev.pci, 2, 7 * PAGE + 101) == pat(7 * PAGE + 101, 2));
	CHECK(p2p_vfio_device_pwrite(dev.vdev, buf, 3, REGION(0, 4097)) == 3);
	CHECK(memcmp(t_bar_ptr(dev.pci, 0, 4097), buf, 3) == 0);
	/* The I/O BAR is read and written the same way. */
	CHECK(p2p_vfio_device_pwrite(dev.vdev, buf, 4, REGION(4, 0x10)) == 4);
	memset(chk, 0, sizeof(chk));
	CHECK(p2p_vfio_device_pread(dev.vdev, chk, 4, REGION(4, 0x10)) == 4);
	CHECK(memcmp(chk, buf, 4) == 0);

	/*
	 * vfio_pci_bar_rw(): an access starting inside the BAR but running past
	 * its end is cut at the end (count = min(count, end - pos)).
	 */
	memset(chk, 0, sizeof(chk));
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, chk, 8, REGION(0, BAR0_SIZE - 4)), 4);
	CHECK(p2p_vfio_device_pread(dev.vdev, chk, 8, REGION(0, BAR0_SIZE - 4)) == 4);
	CHECK(memcmp(chk, t_bar_ptr(dev.pci, 0, BAR0_SIZE - 4), 4) == 0);
	CHECK(p2p_vfio_device_pwrite(dev.vdev, buf, 16, REGION(2, BAR2_SIZE - 2)) == 2);
	CHECK(memcmp(t_bar_ptr(dev.pci, 2, BAR2_SIZE - 2), buf, 2) == 0);
	CHECK(p2p_vfio_device_pread(dev.vdev, chk, 8, REGION(4, BAR4_SIZE - 1)) == 1);

	/* Starting at or beyond the end of a BAR -> EINVAL. */
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 1, REGION(0, BAR0_SIZE)), -EINVAL);
	CHECK_ERR(p2p_vfio_device_pwrite(dev.vdev, buf, 1, REGION(0, BAR0_SIZE)), -EINVAL);
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(2, BAR2_SIZE)), -EINVAL);
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(2, 2 * BAR2_SIZE)), -EINVAL);
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(2, P2P_VFIO_OFFSET_MASK)),
		  -EINVAL);
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 1, REGION(4, BAR4_SIZE)), -EINVAL);
	/* Unimplemented BARs, the absent ROM, and indexes past the last region -> EINVAL. */
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(1, 0)), -EINVAL);
	CHECK_ERR(p2p_vfio_device_pwrite(dev.vdev, buf, 4, REGION(3, 0)), -EINVAL);
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(5, 0)), -EINVAL);
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(VFIO_PCI_ROM_REGION_INDEX, 0)),
		  -EINVAL);
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(VFIO_PCI_NUM_REGIONS, 0)),
		  -EINVAL);
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(1000, 0)), -EINVAL);

	/* 1.6/1.7: COMMAND.MEM off -> memory BAR access -EIO, device memory untouched. */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK(!p2p_pci_dev_memory_enabled(dev.pci));
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(0, 0)), -EIO);
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(2, PAGE)), -EIO);
	CHECK_ERR(p2p_vfio_device_pwrite(dev.vdev, sev, 4, REGION(2, 9 * PAGE)), -EIO);
	CHECK(*t_bar_ptr(dev.pci, 2, 9 * PAGE) == pat(9 * PAGE, 2));
	/* The range check comes first: beyond the BAR is still EINVAL. */
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(2, BAR2_SIZE)), -EINVAL);
	/* The I/O BAR does not depend on memory decoding (test_mem only for MEM BARs). */
	CHECK(p2p_vfio_device_pread(dev.vdev, chk, 4, REGION(4, 0x10)) == 4);
	CHECK(memcmp(chk, buf, 4) == 0);
	/* Config space stays accessible. */
	CHECK(cfg_read(dev.vdev, 0x00, 2) == 0x1b36);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(2, PAGE)) == 4);
	CHECK(memcmp(buf, t_bar_ptr(dev.pci, 2, PAGE), 4) == 0);

	/* 1.7 item 2: D3hot -> -EIO; back to D0 -> accessible again. */
	CHECK_OK(t_set_power(dev.vdev, 3));
	CHECK((cfg_read(dev.vdev, P2P_PCI_PM_CTRL, 2) & 0x3) == 3);
	CHECK(!p2p_pci_dev_memory_enabled(dev.pci));
	CHECK_ERR(p2p_vfio_device_pread(dev.vdev, buf, 4, REGION(0, 0)), -EIO);
	CHECK_ERR(p2p_vfio_device_pwrite(dev.vdev, sev, 4, REGION(2, 9 * PAGE)), -EIO);
	CHECK(*t_bar_ptr(dev.pci, 2, 9 * PAGE) == pat(9 * PAGE, 2));
	CHECK_OK(t_set_power(dev.vdev, 0));
	CHECK(p2p_pci_dev_memory_enabled(dev.pci));
	CHECK(p2p_vfio_device_pwrite(dev.vdev, sev, 4, REGION(2, 9 * PAGE)) == 4);
	CHECK(*t_bar_ptr(dev.pci, 2, 9 * PAGE) == 0x77);
	*t_bar_ptr(dev.pci, 2, 9 * PAGE) = pat(9 * PAGE, 2);
}

/* Map a BAR region of @vdev; -errno or 0. */
static int bar_mmap(struct p2p_vfio_device *vdev, size_t len, int flags, uint64_t offset,
		    void **out)
{
	*out = NULL;
	return p2p_vfio_device_mmap(vdev, NULL, len, RW, flags, offset, out);
}

/* kernel-semantics 3.1: BAR mmap through the device. */
static void test_device_mmap(void)
{
	struct p2p_dmabuf *buf;
	uint64_t off;
	size_t avail;
	uint8_t *m, *w;
	void *p;

	t_section("3.1 device BAR mmap");
	CHECK_OK(t_mem_enable(dev.vdev, true));
	fill_bar(2, BAR2_SIZE, 3);

	/* vfio_pci_core_mmap(): MAP_PRIVATE (no VM_SHARED) -> EINVAL. */
	BAR_MMAP_ERR(dev.vdev, PAGE, MAP_PRIVATE, REGION(2, 0), -EINVAL);
	/* req_start + req_len > BAR length -> EINVAL. */
	BAR_MMAP_ERR(dev.vdev, 2 * PAGE, MAP_SHARED, REGION(2, BAR2_SIZE - PAGE), -EINVAL);
	BAR_MMAP_ERR(dev.vdev, BAR2_SIZE + PAGE, MAP_SHARED, REGION(2, 0), -EINVAL);
	BAR_MMAP_ERR(dev.vdev, PAGE, MAP_SHARED, REGION(2, BAR2_SIZE), -EINVAL);
	BAR_MMAP_ERR(dev.vdev, PAGE, MAP_SHARED, REGION(0, BAR0_SIZE), -EINVAL);
	/* A length that rounds up past the end is beyond too. */
	BAR_MMAP_ERR(dev.vdev, PAGE + 1, MAP_SHARED, REGION(2, BAR2_SIZE - PAGE), -EINVAL);
	/* mmap(2): the offset must be page aligned -> EINVAL. */
	BAR_MMAP_ERR(dev.vdev, PAGE, MAP_SHARED, REGION(2, 512), -EINVAL);
	BAR_MMAP_ERR(dev.vdev, PAGE, MAP_SHARED, REGION(2, PAGE + 8), -EINVAL);
	/* mmap(2): zero length -> EINVAL. */
	BAR_MMAP_ERR(dev.vdev, 0, MAP_SHARED, REGION(2, 0), -EINVAL);
	/* bar_mmap_supported false: I/O BAR, unimplemented BARs -> EINVAL. */
	BAR_MMAP_ERR(dev.vdev, PAGE, MAP_SHARED, REGION(4, 0), -EINVAL);
	BAR_MMAP_ERR(dev.vdev, BAR4_SIZE, MAP_SHARED, REGION(4, 0), -EINVAL);
	BAR_MMAP_ERR(dev.vdev, PAGE, MAP_SHARED, REGION(1, 0), -EINVAL);
	BAR_MMAP_ERR(dev.vdev, PAGE, MAP_SHARED, REGION(3, 0), -EINVAL);
	/* index >= ROM: ROM, config space, VGA, past the last region -> EINVAL. */
	for (uint32_t i = VFIO_PCI_ROM_REGION_INDEX; i <= VFIO_PCI_NUM_REGIONS + 1; i++)
		BAR_MMAP_ERR(dev.vdev, PAGE, MAP_SHARED, REGION(i, 0), -EINVAL);

	/* A whole-BAR mapping shows the BAR's bytes, and writes reach the device. */
	CHECK_OK(bar_mmap(dev.vdev, BAR2_SIZE, MAP_SHARED, REGION(2, 0), &p));
	m = p;
	if (m) {
		CHECK(memcmp(m, t_bar_ptr(dev.pci, 2, 0), BAR2_SIZE) == 0);
		m[3 * PAGE + 17] = 0xab;
		CHECK(*t_bar_ptr(dev.pci, 2, 3 * PAGE + 17) == 0xab);
		*t_bar_ptr(dev.pci, 2, 100) = 0xcd;
		CHECK(m[100] == 0xcd);
		/* The same bytes through pread. */
		{
			uint8_t b = 0;

			CHECK(p2p_vfio_device_pread(dev.vdev, &b, 1, REGION(2, 3 * PAGE + 17)) ==
			      1);
			CHECK(b == 0xab);
		}
		/* 3.1/4.2: the VA belongs to the BAR mmap's dma-buf, at offset VA - start. */
		if (!p2p_va_lookup(m + 5 * PAGE + 9, &buf, &off, &avail)) {
			CHECK(off == 5 * PAGE + 9);
			CHECK(avail == BAR2_SIZE - 5 * PAGE - 9);
			CHECK(p2p_dmabuf_size(buf) == BAR2_SIZE);
			CHECK(p2p_vfio_dmabuf_memattr(buf) >= 0); /* a VFIO dma-buf */
			p2p_dmabuf_put(buf);
		} else {
			CHECK(!"p2p_va_lookup of a whole-BAR mapping");
		}
		CHECK_OK(p2p_munmap(m, BAR2_SIZE));
	}

	/*
	 * 3.1 (v2 on): a window at a non-zero BAR offset; the dma-buf covers
	 * exactly the mapped span, so the VA lookup offset starts at 0.
	 */
	CHECK_OK(bar_mmap(dev.vdev, 2 * PAGE, MAP_SHARED, REGION(2, 6 * PAGE), &p));
	w = p;
	if (w) {
		uint64_t moff = 0;

		CHECK(memcmp(w, t_bar_ptr(dev.pci, 2, 6 * PAGE), 2 * PAGE) == 0);
		/* 3.1: vm_pgoff stays as passed: /proc/self/maps shows the region offset. */
		CHECK(t_maps_find(w + PAGE, &moff, NULL, NULL) && moff == REGION(2, 6 * PAGE));
		CHECK_OK(t_mem_enable(dev.vdev, false));
		CHECK(t_maps_find(w + PAGE, &moff, NULL, NULL) && moff == REGION(2, 6 * PAGE));
		CHECK_OK(t_mem_enable(dev.vdev, true));
		w[PAGE] = 0x3c;
		CHECK(*t_bar_ptr(dev.pci, 2, 7 * PAGE) == 0x3c);
		if (!p2p_va_lookup(w + PAGE + 1, &buf, &off, &avail)) {
			CHECK(off == PAGE + 1);
			CHECK(avail == PAGE - 1);
			CHECK(p2p_dmabuf_size(buf) == 2 * PAGE);
			p2p_dmabuf_put(buf);
		} else {
			CHECK(!"p2p_va_lookup of a BAR window");
		}
		CHECK_OK(p2p_munmap(w, 2 * PAGE));
		/* Gone after munmap. */
		CHECK_ERR(p2p_va_lookup(w, &buf, &off, NULL), -EFAULT);
	}

	/* A length that is not a page multiple is rounded up. */
	CHECK_OK(bar_mmap(dev.vdev, 100, MAP_SHARED, REGION(0, PAGE), &p));
	if (p) {
		CHECK(memcmp(p, t_bar_ptr(dev.pci, 0, PAGE), PAGE) == 0);
		CHECK_OK(p2p_munmap(p, 100));
	}

	/*
	 * 3.1/1.6: a mapping made while memory decoding is off exists but
	 * faults (SIGBUS) until memory is enabled; the contents are kept.
	 */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_OK(bar_mmap(dev.vdev, PAGE, MAP_SHARED, REGION(0, 0), &p));
	if (p) {
		CHECK(t_read_faults(p));
		CHECK_OK(t_mem_enable(dev.vdev, true));
		CHECK(!t_read_faults(p));
		CHECK(memcmp(p, t_bar_ptr(dev.pci, 0, 0), PAGE) == 0);
		/* ... and MEM off again zaps it (1.7 item 1). */
		CHECK_OK(t_mem_enable(dev.vdev, false));
		CHECK(t_read_faults(p));
		CHECK(t_write_faults(p, 1));
		CHECK_OK(t_mem_enable(dev.vdev, true));
		CHECK(memcmp(p, t_bar_ptr(dev.pci, 0, 0), PAGE) == 0);
		CHECK_OK(p2p_munmap(p, PAGE));
	}
	CHECK_OK(t_mem_enable(dev.vdev, true));
}

/* kernel-semantics 0.4 and 3.3: mmap of a VFIO dma-buf fd. */
static void test_dmabuf_mmap(void)
{
	struct p2p_dmabuf *buf = NULL;
	void *p = NULL;
	int fd;

	t_section("0.4/3.3 dma-buf fd mmap");
	CHECK_OK(t_mem_enable(dev.vdev, true));
	fill_bar(2, BAR2_SIZE, 4);

	fd = t_dmabuf(dev.vdev, 2, &(struct vfio_region_dma_range){ 16 * PAGE, 4 * PAGE }, 1);
	CHECK(fd >= 0);
	if (fd < 0 || p2p_dmabuf_get(fd, &buf))
		return;

	/* 3.3: without VM_SHARED (MAP_PRIVATE) -> EINVAL. */
	DMABUF_MMAP_ERR(buf, PAGE, MAP_PRIVATE, 0, -EINVAL);
	/* 0.4: vm_pgoff + vma_pages > size in pages -> EINVAL. */
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, 4 * PAGE, -EINVAL);
	DMABUF_MMAP_ERR(buf, 3 * PAGE, MAP_SHARED, 2 * PAGE, -EINVAL);
	DMABUF_MMAP_ERR(buf, 5 * PAGE, MAP_SHARED, 0, -EINVAL);
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, 1ull << 62, -EINVAL);
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, ~(PAGE - 1), -EINVAL);
	/* 0.4: vma_pages rounds the length up: 1 page + 1 byte at the last page -> EINVAL. */
	DMABUF_MMAP_ERR(buf, PAGE + 1, MAP_SHARED, 3 * PAGE, -EINVAL);
	/* mmap(2): unaligned offset or zero length -> EINVAL. */
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, 100, -EINVAL);
	DMABUF_MMAP_ERR(buf, 0, MAP_SHARED, 0, -EINVAL);

	/* Exactly up to the end works and shows the BAR bytes behind the range. */
	DMABUF_MAP(buf, PAGE, RW, 3 * PAGE, &p);
	if (p) {
		CHECK(memcmp(p, t_bar_ptr(dev.pci, 2, 19 * PAGE), PAGE) == 0);
		CHECK_OK(p2p_munmap(p, PAGE));
	}
	DMABUF_MAP(buf, PAGE + 1, RW, 2 * PAGE, &p);
	if (p) {
		CHECK(memcmp(p, t_bar_ptr(dev.pci, 2, 18 * PAGE), 2 * PAGE) == 0);
		CHECK_OK(p2p_munmap(p, PAGE + 1));
	}

	/* 3.3: TEMP revoked (COMMAND.MEM off) -> ENODEV. */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, 0, -ENODEV);
	/* 0.4 before the exporter's op: out of bounds is EINVAL even while revoked. */
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, 4 * PAGE, -EINVAL);
	/* D3hot is a revoke too (1.7 item 2). */
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK_OK(t_set_power(dev.vdev, 3));
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, 0, -ENODEV);
	CHECK_OK(t_set_power(dev.vdev, 0));
	/* Un-revoked: mmap works again. */
	DMABUF_MAP(buf, 4 * PAGE, RW, 0, &p);
	if (p) {
		CHECK(memcmp(p, t_bar_ptr(dev.pci, 2, 16 * PAGE), 4 * PAGE) == 0);
		CHECK_OK(p2p_munmap(p, 4 * PAGE));
	}

	/* 3.3: PERM revoked (feature 13) -> ENODEV, for good. */
	CHECK_ERR(t_feat_revoke(dev.vdev, fd), 0);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, 0, -ENODEV);
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, 0, -ENODEV);

	p2p_dmabuf_put(buf);
	p2p_close(fd);
}

/* 4.2: VA -> (dma-buf, offset) on a multi-range dma-buf mapped at a non-zero offset. */
static void test_va_lookup(void)
{
	/* dma-buf bytes: [0, 2P) = BAR 3P..5P, [2P, 3P) = BAR 0..P, [3P, 6P) = BAR 8P..11P. */
	static const struct vfio_region_dma_range r[] = {
		{ 3 * PAGE, 2 * PAGE },
		{ 0, PAGE },
		{ 8 * PAGE, 3 * PAGE },
	};
	/* Mapped from dma-buf offset P, 4 pages: the BAR page behind each VA page. */
	static const uint64_t bar_page[4] = { 4 * PAGE, 0, 8 * PAGE, 9 * PAGE };
	static const uint64_t in_page[] = { 0, 1, 123, PAGE - 1 };
	struct p2p_dmabuf *buf = NULL, *lb;
	uint64_t off;
	size_t avail;
	uint8_t *m;
	void *p = NULL;
	int fd, stack_var = 0;

	t_section("4.2 p2p_va_lookup");
	CHECK_OK(t_mem_enable(dev.vdev, true));
	fill_bar(2, BAR2_SIZE, 5);

	fd = t_dmabuf(dev.vdev, 2, r, 3);
	CHECK(fd >= 0);
	if (fd < 0 || p2p_dmabuf_get(fd, &buf))
		return;
	CHECK(p2p_dmabuf_size(buf) == 6 * PAGE);

	DMABUF_MAP(buf, 4 * PAGE, RW, PAGE, &p);
	m = p;
	if (!m)
		goto out;
	for (unsigned int k = 0; k < 4; k++) {
		/* 3.3: ranges are concatenated in order and contiguous in VA. */
		CHECK(memcmp(m + k * PAGE, t_bar_ptr(dev.pci, 2, bar_page[k]), PAGE) == 0);
		for (size_t j = 0; j < sizeof(in_page) / sizeof(in_page[0]); j++) {
			uint64_t va_off = k * PAGE + in_page[j];
			int ret = p2p_va_lookup(m + va_off, &lb, &off, &avail);

			CHECK_OK(ret);
			if (ret)
				continue;
			CHECK(lb == buf);
			/* offset = mmap offset + distance from the start of the mapping */
			CHECK(off == PAGE + va_off);
			CHECK(avail == 4 * PAGE - va_off);
			p2p_dmabuf_put(lb);
		}
	}
	/* avail is optional. */
	if (!p2p_va_lookup(m + 2 * PAGE, &lb, &off, NULL)) {
		CHECK(lb == buf && off == 3 * PAGE);
		p2p_dmabuf_put(lb);
	} else {
		CHECK(!"p2p_va_lookup without avail");
	}
	/* Writes through the mapping land in the right BAR page. */
	m[2 * PAGE + 5] = 0x5a;
	CHECK(*t_bar_ptr(dev.pci, 2, 8 * PAGE + 5) == 0x5a);
	m[PAGE + 6] = 0xa5;
	CHECK(*t_bar_ptr(dev.pci, 2, 6) == 0xa5);

	/* -EFAULT outside any p2pbuf mapping (this is the only one alive). */
	CHECK_ERR(p2p_va_lookup(m + 4 * PAGE, &lb, &off, &avail), -EFAULT);
	CHECK_ERR(p2p_va_lookup(m - 1, &lb, &off, &avail), -EFAULT);
	CHECK_ERR(p2p_va_lookup(&stack_var, &lb, &off, &avail), -EFAULT);
	CHECK_ERR(p2p_va_lookup(t_bar_ptr(dev.pci, 2, 0), &lb, &off, &avail), -EFAULT);
	CHECK_ERR(p2p_va_lookup(NULL, &lb, &off, &avail), -EFAULT);

	/* A mapping of the same buffer at offset 0 resolves independently. */
	{
		void *q = NULL;

		DMABUF_MAP(buf, 6 * PAGE, PROT_READ, 0, &q);
		if (q) {
			CHECK(memcmp((uint8_t *)q + 3 * PAGE, t_bar_ptr(dev.pci, 2, 8 * PAGE),
				     PAGE) == 0);
			CHECK(((uint8_t *)q)[3 * PAGE + 5] == 0x5a);
			if (!p2p_va_lookup((uint8_t *)q + 5 * PAGE + 7, &lb, &off, &avail)) {
				CHECK(lb == buf && off == 5 * PAGE + 7 && avail == PAGE - 7);
				p2p_dmabuf_put(lb);
			} else {
				CHECK(!"p2p_va_lookup of the second mapping");
			}
			CHECK_OK(p2p_munmap(q, 6 * PAGE));
		}
	}
	/* After munmap the address is no longer a p2pbuf mapping. */
	CHECK_OK(p2p_munmap(m, 4 * PAGE));
	CHECK_ERR(p2p_va_lookup(m, &lb, &off, &avail), -EFAULT);
	CHECK_ERR(p2p_va_lookup(m + PAGE, &lb, &off, &avail), -EFAULT);
out:
	p2p_dmabuf_put(buf);
	p2p_close(fd);
}

/*
 * 3.1 / 1.6 / 8.3 items 13-14: a BAR mmap keeps the device open after its
 * fd is closed; once the last mapping goes the device closes for real and
 * its dma-bufs are dead: mmap of their fd -> ENODEV.
 */
static void test_mmap_outlives_fd(void)
{
	struct t_dev d2;
	struct p2p_dmabuf *buf = NULL;
	void *bar = NULL, *p = NULL;
	int fd, ret;

	t_section("3.1/3.3 mmap after device close");
	ret = t_dev_create(&d2, "0000:05:00.0", BAR2_SIZE, 0, NULL, 5);
	CHECK_OK(ret);
	if (ret)
		return;
	CHECK_OK(t_mem_enable(d2.vdev, true));
	fd = t_dmabuf(d2.vdev, 2, &(struct vfio_region_dma_range){ 0, PAGE }, 1);
	CHECK(fd >= 0);
	CHECK_OK(bar_mmap(d2.vdev, PAGE, MAP_SHARED, REGION(2, 0), &bar));
	if (fd < 0 || !bar || p2p_dmabuf_get(fd, &buf)) {
		if (bar)
			p2p_munmap(bar, PAGE);
		if (fd >= 0)
			p2p_close(fd);
		t_dev_destroy(&d2);
		return;
	}

	p2p_vfio_device_close(d2.vdev);
	d2.vdev = NULL;
	/* The BAR mapping holds the device file: still open, everything still works. */
	CHECK(p2p_pci_dev_open_count(d2.pci) == 1);
	CHECK(!t_write_faults(bar, 0x42));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);
	DMABUF_MAP(buf, PAGE, RW, 0, &p);
	if (p) {
		CHECK(((uint8_t *)p)[0] == 0x42);
		CHECK_OK(p2p_munmap(p, PAGE));
	}
	/* Last mapping gone: close_device, every dma-buf permanently dead. */
	CHECK_OK(p2p_munmap(bar, PAGE));
	CHECK(p2p_pci_dev_open_count(d2.pci) == 0);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
	DMABUF_MMAP_ERR(buf, PAGE, MAP_SHARED, 0, -ENODEV);
	/* Bounds still come first (0.4). */
	DMABUF_MMAP_ERR(buf, 2 * PAGE, MAP_SHARED, 0, -EINVAL);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
	t_dev_destroy(&d2);
}

/* BAR sizing of a 64-bit BAR above 4 GiB: the upper half carries size bits too. */
static void test_large_bar(void)
{
	struct t_dev big;
	int ret;

	t_section("64-bit BAR above 4 GiB");
	ret = t_dev_create(&big, "0000:06:00.0", 8ull << 30, 0, NULL, 6);
	CHECK_OK(ret);
	if (ret)
		return;
	/* 8 GiB: no size bits in the low half, upper half 0xfffffffe. */
	check_bar_sizing(big.vdev, 0x18, 0xc);
	check_bar_sizing(big.vdev, 0x1c, 0xfffffffeu);
	{
		struct vfio_region_info ri = { .argsz = sizeof(ri), .index = 2 };

		CHECK_OK(ioctl_(big.vdev, VFIO_DEVICE_GET_REGION_INFO, &ri));
		CHECK(ri.size == 8ull << 30);
	}
	t_dev_destroy(&big);
}

static int irq_info(uint32_t index, struct vfio_irq_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	info->index = index;
	return (int)ioctl_(dev.vdev, VFIO_DEVICE_GET_IRQ_INFO, info);
}

static long set_irqs(uint32_t flags, uint32_t index, uint32_t start, uint32_t count,
		     const int32_t *fds)
{
	uint8_t buf[sizeof(struct vfio_irq_set) + 16 * sizeof(int32_t)];
	struct vfio_irq_set hdr = {
		.argsz = (uint32_t)(sizeof(hdr) + (fds ? count * sizeof(int32_t) : 0)),
		.flags = flags,
		.index = index,
		.start = start,
		.count = count,
	};

	memset(buf, 0, sizeof(buf));
	memcpy(buf, &hdr, sizeof(hdr));
	if (fds)
		memcpy(buf + sizeof(hdr), fds, count * sizeof(int32_t));
	return ioctl_(dev.vdev, VFIO_DEVICE_SET_IRQS, buf);
}

static long set_bool(uint32_t index, const uint8_t *b)
{
	uint8_t buf[sizeof(struct vfio_irq_set) + 4];
	struct vfio_irq_set hdr = {
		.argsz = sizeof(hdr) + 1,
		.flags = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
		.index = index,
		.count = 1,
	};

	memset(buf, 0, sizeof(buf));
	memcpy(buf, &hdr, sizeof(hdr));
	buf[sizeof(hdr)] = *b;
	return ioctl_(dev.vdev, VFIO_DEVICE_SET_IRQS, buf);
}

/*
 * Interrupts as a VMM sees them (QEMU's vfio_realize: the INTx pin in
 * config space decides vfio_intx_enable(), the MSI capability decides
 * vfio_msi_setup()): config space and VFIO_DEVICE_GET_IRQ_INFO agree, as
 * vfio-pci's vfio_pci_get_irq_count() makes them agree.  A pin with no INTx
 * vector made QEMU 7.2 fail at start ("Failed to set up TRIGGER eventfd
 * signaling for interrupt INTX-0").
 */
static void test_irqs(void)
{
	const uint32_t trig_efd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	const uint32_t trig_none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
	struct vfio_irq_info info;
	uint32_t msi = P2P_PCI_CAP_MSI, ctrl, nvec;
	int32_t fds[16], pfd[2], badfd = 1000000;
	struct t_dev other;
	uint64_t v;
	int ret;

	t_section("interrupts: config space and VFIO_DEVICE_GET_IRQ_INFO / SET_IRQS");

	/* No INTx pin, and no INTx vector. */
	CHECK(cfg_read(dev.vdev, 0x3d, 1) == 0);
	CHECK_OK(irq_info(VFIO_PCI_INTX_IRQ_INDEX, &info));
	CHECK(info.count == 0);
	CHECK(info.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE |
			     VFIO_IRQ_INFO_AUTOMASKED));
	/* ... so every INTx SET_IRQS is EINVAL (vfio_set_irqs_validate_and_prepare). */
	for (int i = 0; i < 16; i++)
		fds[i] = -1;
	fds[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(fds[0] >= 0);
	CHECK_ERR(set_irqs(trig_efd, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, fds), -EINVAL);
	CHECK_ERR(set_irqs(trig_none, VFIO_PCI_INTX_IRQ_INDEX, 0, 0, NULL), -EINVAL);
	CHECK_ERR(set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
			   VFIO_PCI_INTX_IRQ_INDEX, 0, 1, NULL), -EINVAL);

	/* MSI: 64-bit, Multiple Message Capable matches the VFIO vector count. */
	ctrl = cfg_read(dev.vdev, msi + 2, 2);
	nvec = 1u << ((ctrl >> 1) & 7);
	CHECK(ctrl & 0x80);
	CHECK(!(ctrl & 0x100)); /* no per-vector masking */
	CHECK(!(ctrl & 0x1));	/* disabled at open */
	CHECK_OK(irq_info(VFIO_PCI_MSI_IRQ_INDEX, &info));
	CHECK(info.count == nvec && nvec == 8);
	CHECK(info.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE));
	CHECK_OK(irq_info(VFIO_PCI_MSIX_IRQ_INDEX, &info));
	CHECK(info.count == 0);
	/* A PCIe function has the error and request vectors (QEMU: AER, unplug request). */
	CHECK_OK(irq_info(VFIO_PCI_ERR_IRQ_INDEX, &info));
	CHECK(info.count == 1 && info.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE));
	CHECK_OK(irq_info(VFIO_PCI_REQ_IRQ_INDEX, &info));
	CHECK(info.count == 1 && info.flags == (VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE));
	CHECK_ERR(irq_info(VFIO_PCI_NUM_IRQS, &info), -EINVAL);

	/* The guest-visible MSI registers are writable (QEMU writes them through). */
	cfg_write(dev.vdev, msi + 4, 4, 0xfee00000);
	cfg_write(dev.vdev, msi + 8, 4, 0x1);
	cfg_write(dev.vdev, msi + 12, 2, 0x4041);
	cfg_write(dev.vdev, msi + 2, 2, 0xffff);
	CHECK(cfg_read(dev.vdev, msi + 4, 4) == 0xfee00000);
	CHECK(cfg_read(dev.vdev, msi + 8, 4) == 0x1);
	CHECK(cfg_read(dev.vdev, msi + 12, 2) == 0x4041);
	/* Enable and Multiple Message Enable change; capable bits and 64-bit do not. */
	CHECK(cfg_read(dev.vdev, msi + 2, 2) == (ctrl | 0x71));
	cfg_write(dev.vdev, msi + 2, 2, 0);
	CHECK(cfg_read(dev.vdev, msi + 2, 2) == ctrl);

	/* MSI vectors beyond the capability's count are EINVAL. */
	CHECK_ERR(set_irqs(trig_efd, VFIO_PCI_MSI_IRQ_INDEX, 0, nvec + 1, fds), -EINVAL);
	CHECK_ERR(set_irqs(trig_efd, VFIO_PCI_MSI_IRQ_INDEX, nvec, 1, fds), -EINVAL);
	/* Vector 0 with an eventfd: the device raises it; disabling stops it. */
	CHECK_OK(set_irqs(trig_efd, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, fds));
	CHECK(p2p_pci_dev_raise_irq(dev.pci, 0));
	CHECK(read(fds[0], &v, sizeof(v)) == sizeof(v) && v == 1);
	CHECK(!p2p_pci_dev_raise_irq(dev.pci, 1));
	CHECK_OK(set_irqs(trig_none, VFIO_PCI_MSI_IRQ_INDEX, 0, 0, NULL));
	CHECK(!p2p_pci_dev_raise_irq(dev.pci, 0));
	/* MSI has no mask bits: MASK/UNMASK have no handler (ENOTTY). */
	CHECK_ERR(set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
			   VFIO_PCI_MSI_IRQ_INDEX, 0, 1, NULL), -ENOTTY);
	/* eventfd_ctx_fdget(): not an eventfd -> EINVAL, not an fd -> EBADF. */
	CHECK(pipe(pfd) == 0);
	CHECK_ERR(set_irqs(trig_efd, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &pfd[0]), -EINVAL);
	CHECK_ERR(set_irqs(trig_efd, VFIO_PCI_ERR_IRQ_INDEX, 0, 1, &pfd[0]), -EINVAL);
	CHECK_ERR(set_irqs(trig_efd, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &badfd), -EBADF);
	CHECK_ERR(set_irqs(trig_efd, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, &badfd), -EBADF);
	close(pfd[0]);
	close(pfd[1]);

	/* ERR and REQ: one vector each; loopback signalling (DATA_NONE, DATA_BOOL). */
	for (uint32_t index = VFIO_PCI_ERR_IRQ_INDEX; index <= VFIO_PCI_REQ_IRQ_INDEX; index++) {
		const uint8_t yes = 1, no = 0;

		CHECK_ERR(set_irqs(trig_efd, index, 0, 2, fds), -EINVAL);
		CHECK_ERR(set_irqs(trig_efd, index, 1, 1, fds), -EINVAL);
		/* Nothing set yet: a DATA_NONE trigger has nothing to signal (EINVAL). */
		CHECK_ERR(set_irqs(trig_none, index, 0, 1, NULL), -EINVAL);
		CHECK_ERR(set_irqs(trig_efd, index, 0, 0, fds), -EINVAL);
		CHECK_OK(set_irqs(trig_efd, index, 0, 1, fds));
		CHECK_OK(set_irqs(trig_none, index, 0, 1, NULL));
		CHECK(read(fds[0], &v, sizeof(v)) == sizeof(v) && v == 1);
		CHECK_OK(set_bool(index, &yes));
		CHECK_OK(set_bool(index, &no));
		CHECK(read(fds[0], &v, sizeof(v)) == sizeof(v) && v == 1); /* the yes only */
		CHECK_ERR(set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, index, 0,
				   1, NULL), -ENOTTY);
		/* -1 releases it. */
		fds[1] = fds[0];
		fds[0] = -1;
		CHECK_OK(set_irqs(trig_efd, index, 0, 1, fds));
		fds[0] = fds[1];
		CHECK_ERR(set_irqs(trig_none, index, 0, 1, NULL), -EINVAL);
	}

	/* REQ is how the function asks its user to let go: p2p_vfio_unregister(). */
	ret = t_dev_create(&other, "0000:05:00.0", BAR2_SIZE, 0, NULL, 5);
	CHECK_OK(ret);
	if (!ret) {
		struct t_dev keep = dev;
		unsigned int index;

		CHECK_OK(p2p_vfio_register(other.pci, &index));
		dev = other; /* set_irqs() works on dev */
		CHECK_OK(set_irqs(trig_efd, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, fds));
		dev = keep;
		p2p_vfio_unregister(other.pci);
		CHECK(read(fds[0], &v, sizeof(v)) == sizeof(v) && v == 1);
		t_dev_destroy(&other);
	}
	close(fds[0]);
}

int main(void)
{
	t_begin();
	t_dev_create_or_fail(&dev, "0000:01:00.0", BAR2_SIZE, 1);

	test_device_info();
	test_region_info();
	test_config_space();
	test_bar_rw();
	test_device_mmap();
	test_dmabuf_mmap();
	test_va_lookup();
	test_mmap_outlives_fd();
	test_large_bar();
	test_irqs();

	t_section(NULL);
	t_dev_destroy(&dev);
	return t_end();
}
