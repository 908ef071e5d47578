// SPDX-License-Identifier: MIT
/*
 * (b) The legacy container and group API with type1, as QEMU 7.2 drives it:
 * /dev/vfio/vfio, the group from sysfs, SET_CONTAINER, SET_IOMMU,
 * GET_DEVICE_FD, region info, config pread, BAR2 mmap, MAP_DMA of guest
 * RAM and of the BAR mapping (peer to peer), UNMAP_DMA.
 */
#include "kuapi.h"

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
	int container, group, dev, g;
	uint8_t *ram, *va;

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
		CHECK(munmap(va, bar.size) == 0, "munmap BAR2");
	}
	unmap.iova = 0x100000;
	unmap.size = 1 << 20;
	CHECK(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) == 0, "UNMAP_DMA of RAM");
	CHECK(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) == 0 && unmap.size == 0,
	      "second UNMAP_DMA unmaps nothing");
	CHECK(close(dev) == 0 && close(group) == 0 && close(container) == 0, "close");
	munmap(ram, 1 << 20);
	return finish("door-legacy");
}
