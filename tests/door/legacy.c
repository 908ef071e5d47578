// SPDX-License-Identifier: MIT
/*
 * (b) The legacy container and group API with type1, as QEMU 7.2 drives it:
 * /dev/vfio/vfio, the group from sysfs, SET_CONTAINER, SET_IOMMU,
 * GET_DEVICE_FD, region info, config pread, BAR2 mmap, MAP_DMA of guest
 * RAM and of the BAR mapping (peer to peer), UNMAP_DMA; then, as a VMM
 * assigning both functions, the copy engine's group in the same container
 * and copy-engine DMA (BAR0 by pread/pwrite, ring and completions in RAM
 * mapped with MAP_DMA) between RAM and the BAR2 mapping MAP_DMA'd by its
 * address (through the BAR's dma-buf); VFIO_DEVICE_RESET of the GPU
 * revokes that mapping (DMA "revoked" until UNMAP_DMA + MAP_DMA) while
 * the CPU mapping comes back; PCI_COMMAND.MEMORY off makes the CPU mapping
 * SIGBUS; memory on, unmap + map again: DMA works.
 */
#include "ce.h"

#define MiB (1024ull * 1024)
#define IOVA_RING 0x100000ull /* in the RAM mapping: RAM [0, 4 KiB) */
#define IOVA_COMPL 0x101000ull /* RAM [4 KiB, 8 KiB) */
#define IOVA_SYS 0x110000ull   /* RAM [64 KiB, 1 MiB) */
#define IOVA_BAR 0x800000000ull

static int map_dma(int container, void *va, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)va, .iova = iova, .size = size,
	};

	return ioctl(container, VFIO_IOMMU_MAP_DMA, &map);
}

/* UNMAP_DMA: the size unmapped, or -1. */
static long long unmap_dma(int container, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap), .iova = iova,
						    .size = size };

	return ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) ? -1 : (long long)unmap.size;
}

/* The copy engine assigned too: its group into @container, DMA to and from @bar. */
static void copy_engine(int container, int gpu, uint8_t *ram, uint8_t *bar, uint64_t bar_size)
{
	char path[64];
	int g = sysfs_group(CE_BDF), group, dev;
	uint8_t *sys = ram + 0x10000, v;
	struct ce ce;
	uint32_t st;

	CHECK(g >= 0, "iommu_group of " CE_BDF);
	snprintf(path, sizeof(path), "/dev/vfio/%d", g);
	group = open(path, O_RDWR | O_CLOEXEC);
	CHECK(group >= 0, "open %s", path);
	if (group < 0)
		return;
	CHECK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) == 0,
	      "SET_CONTAINER of the second group");
	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, CE_BDF);
	CHECK(dev >= 0, "GET_DEVICE_FD " CE_BDF);
	CHECK(map_dma(container, bar, IOVA_BAR, bar_size) == 0, "MAP_DMA of the BAR2 mmap");
	CHECK(ce_init(&ce, dev, ram, IOVA_RING, ram + 4096, IOVA_COMPL) == 0, "copy engine init");
	if (failures) {
		close(dev);
		close(group);
		return;
	}
	for (size_t i = 0; i < 64 * 1024; i++)
		sys[i] = (uint8_t)(i * 7 + 1);
	memset(bar, 0, 128 * 1024);
	CHECK((st = ce_copy(&ce, IOVA_SYS, IOVA_BAR + 4096, 64 * 1024)) == CE_OK &&
	      !memcmp(bar + 4096, sys, 64 * 1024) && bar[4095] == 0 && bar[4096 + 65536] == 0,
	      "DMA RAM -> BAR2 through the container: status %u", st);
	CHECK((st = ce_copy(&ce, IOVA_BAR + 4096, IOVA_SYS + 0x20000, 1000)) == CE_OK &&
	      !memcmp(sys + 0x20000, sys, 1000), "DMA BAR2 -> RAM: status %u", st);
	CHECK((st = ce_copy(&ce, IOVA_SYS, 0x30000000ull, 64)) == CE_FAULT,
	      "DMA to a hole in the container: status %u (want fault)", st);

	/* Reset: the MAP_DMA of the BAR is revoked; the CPU mapping comes back. */
	CHECK(ioctl(gpu, VFIO_DEVICE_RESET) == 0, "VFIO_DEVICE_RESET");
	CHECK((st = ce_copy(&ce, IOVA_SYS, IOVA_BAR, 64)) == CE_REVOKED,
	      "DMA into the BAR after reset: status %u (want revoked)", st);
	CHECK((st = ce_copy(&ce, IOVA_BAR, IOVA_SYS, 64)) == CE_REVOKED,
	      "DMA from the BAR after reset: status %u", st);
	CHECK(probe(bar, NULL, 0x5a) == 0, "the BAR mmap works after reset (memory on)");
	CHECK((st = ce_copy(&ce, IOVA_BAR, IOVA_SYS, 1)) == CE_REVOKED, "still revoked: %u", st);
	/* Memory decode off: the CPU mapping SIGBUSes; on: it works again. */
	CHECK(pci_command(gpu, 0) >= 0, "PCI_COMMAND.MEMORY off");
	CHECK(probe(bar, &v, 0) == SIGBUS && probe(bar + bar_size - 1, NULL, 1) == SIGBUS,
	      "the BAR mmap raises SIGBUS");
	CHECK((st = ce_copy(&ce, IOVA_SYS, IOVA_BAR, 64)) == CE_REVOKED, "DMA: status %u", st);
	CHECK(pci_command(gpu, 1) >= 0, "PCI_COMMAND.MEMORY on");
	CHECK(probe(bar, &v, 0) == 0 && v == 0x5a, "the BAR mmap again: %#x", v);
	/* Unmap the dead mapping and map it again: DMA works. */
	CHECK(unmap_dma(container, IOVA_BAR, bar_size) == (long long)bar_size, "UNMAP_DMA of the BAR");
	CHECK(map_dma(container, bar, IOVA_BAR, bar_size) == 0, "MAP_DMA of the BAR again");
	sys[0] = 0;
	CHECK((st = ce_copy(&ce, IOVA_BAR, IOVA_SYS, 1)) == CE_OK && sys[0] == 0x5a,
	      "DMA after recovery: status %u, %#x", st, sys[0]);
	ce_stop(&ce);
	CHECK(unmap_dma(container, IOVA_BAR, bar_size) == (long long)bar_size, "UNMAP_DMA");
	CHECK(close(dev) == 0 && close(group) == 0, "close the copy engine");
}

#define BDF "0000:01:00.0"

int main(void)
{
	struct vfio_group_status gs = { .argsz = sizeof(gs) };
	struct vfio_device_info di = { .argsz = sizeof(di) };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR2_REGION_INDEX };
	struct vfio_iommu_type1_dma_map map = { .argsz = sizeof(map) };
	struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap) };
	char path[64];
	uint16_t ids[2];
	int container, group, dev, g, base;
	uint8_t *ram, *va;

	probe_init();
	sysfs_group(BDF); /* the door makes its devices at the first look: their fds stay */
	base = count_fds();
	container = open_or_skip("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	CHECK(container >= 0, "open container");
	CHECK(ioctl(container, VFIO_GET_API_VERSION) == VFIO_API_VERSION, "API version");
	CHECK(ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1, "TYPE1v2");
	g = sysfs_group(BDF);
	CHECK(g >= 0, "iommu_group of " BDF);
	snprintf(path, sizeof(path), "/dev/vfio/%d", g);
	group = open(path, O_RDWR | O_CLOEXEC);
	CHECK(group >= 0, "open %s", path);
	CHECK(open(path, O_RDWR | O_CLOEXEC) < 0 && errno == EBUSY, "second open of the group");
	CHECK(ioctl(group, VFIO_GROUP_GET_STATUS, &gs) == 0 && (gs.flags & VFIO_GROUP_FLAGS_VIABLE),
	      "group status %#x", gs.flags);
	CHECK(ioctl(group, VFIO_GROUP_GET_DEVICE_FD, BDF) < 0, "device fd before SET_IOMMU");
	CHECK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) == 0, "SET_CONTAINER");
	CHECK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0, "SET_IOMMU");
	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, BDF);
	CHECK(dev >= 0, "GET_DEVICE_FD");
	CHECK(ioctl(dev, VFIO_DEVICE_GET_INFO, &di) == 0 && (di.flags & VFIO_DEVICE_FLAGS_PCI) &&
	      di.num_regions >= 9, "device info flags %#x regions %u", di.flags, di.num_regions);
	CHECK(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &cfg) == 0, "config region info");
	CHECK(pread(dev, ids, 4, (off_t)cfg.offset) == 4 && ids[0] == 0x1b36 && ids[1] == 0x0110,
	      "config IDs %04x:%04x", ids[0], ids[1]);
	CHECK(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &bar) == 0 && bar.size == 256ull << 20 &&
	      (bar.flags & VFIO_REGION_INFO_FLAG_MMAP), "BAR2 size %llu flags %#x",
	      (unsigned long long)bar.size, bar.flags);
	va = mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev, (off_t)bar.offset);
	CHECK(va != MAP_FAILED, "BAR2 mmap");
	if (va != MAP_FAILED) {
		uint32_t back = 0;

		memset(va, 0x5a, 4096);
		CHECK(pread(dev, &back, 4, (off_t)bar.offset) == 4 && back == 0x5a5a5a5a,
		      "BAR2 through pread: %#x", back);
	}
	ram = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
	map.vaddr = (uintptr_t)ram;
	map.iova = 0x100000;
	map.size = 1 << 20;
	CHECK(ioctl(container, VFIO_IOMMU_MAP_DMA, &map) == 0, "MAP_DMA of RAM");
	if (va != MAP_FAILED) {
		map.vaddr = (uintptr_t)va;
		map.iova = 0x800000000ull;
		map.size = bar.size;
		CHECK(ioctl(container, VFIO_IOMMU_MAP_DMA, &map) == 0, "MAP_DMA of the BAR2 mmap");
		unmap.iova = 0x800000000ull;
		unmap.size = bar.size;
		CHECK(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) == 0 && unmap.size == bar.size,
		      "UNMAP_DMA of the BAR");
		if (ram != MAP_FAILED)
			copy_engine(container, dev, ram, va, bar.size);
		CHECK(munmap(va, bar.size) == 0, "munmap BAR2");
	}
	unmap.iova = 0x100000;
	unmap.size = 1 << 20;
	CHECK(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) == 0, "UNMAP_DMA of RAM");
	CHECK(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) == 0 && unmap.size == 0,
	      "second UNMAP_DMA unmaps nothing");
	CHECK(close(dev) == 0 && close(group) == 0 && close(container) == 0, "close");
	munmap(ram, 1 << 20);
	CHECK(count_fds() == base, "fds: %d at start, %d at the end", base, count_fds());
	return finish("door-legacy");
}
