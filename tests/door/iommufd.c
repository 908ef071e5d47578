// SPDX-License-Identifier: MIT
/*
 * (c) The device cdev with iommufd: /dev/vfio/devices/vfioN (N from sysfs
 * vfio-dev/), /dev/iommu, BIND_IOMMUFD, IOAS_ALLOC, ATTACH_IOMMUFD_PT, a
 * two-range dma-buf of BAR2 (VFIO_DEVICE_FEATURE_DMA_BUF), its mmap,
 * IOMMU_IOAS_MAP_FILE of it, IOAS_UNMAP.
 */
#include "kuapi.h"

#define BDF "0000:01:00.0"

static int cdev_index(void)
{
	DIR *d = opendir("/sys/bus/pci/devices/" BDF "/vfio-dev");
	struct dirent *e;
	int n = -1;

	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "vfio", 4))
			n = atoi(e->d_name + 4);
	if (d)
		closedir(d);
	return n;
}

int main(void)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt att = { .argsz = sizeof(att) };
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR2_REGION_INDEX };
	/* struct vfio_device_feature, then the dma-buf payload with its two ranges */
	uint64_t raw[(sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_dma_buf) +
		      2 * sizeof(struct vfio_region_dma_range)) / 8] = { 0 };
	struct vfio_device_feature *hdr = (void *)raw;
	struct vfio_device_feature_dma_buf *db = (void *)hdr->data;
	char path[64];
	int dev, iommufd, buf, idx = cdev_index();
	uint8_t *va;

	if (idx < 0) {
		printf("SKIP: no vfio-dev under /sys/bus/pci/devices/" BDF " (no cdev)\n");
		return 77;
	}
	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", idx);
	dev = open_or_skip(path, O_RDWR | O_CLOEXEC);
	iommufd = open_or_skip("/dev/iommu", O_RDWR | O_CLOEXEC);
	CHECK(dev >= 0 && iommufd >= 0, "open");
	bind.iommufd = iommufd;
	CHECK(ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind) == 0, "BIND_IOMMUFD");
	CHECK(ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc) == 0, "IOAS_ALLOC");
	att.pt_id = alloc.out_ioas_id;
	CHECK(ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &att) == 0, "ATTACH_IOMMUFD_PT");
	CHECK(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &bar) == 0, "BAR2 info");

	hdr->argsz = sizeof(raw);
	hdr->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	db->region_index = VFIO_PCI_BAR2_REGION_INDEX;
	db->open_flags = O_RDWR | O_CLOEXEC;
	db->nr_ranges = 2;
	db->dma_ranges[0] = (struct vfio_region_dma_range){ 1 << 20, 1 << 20 };
	db->dma_ranges[1] = (struct vfio_region_dma_range){ 0, 64 << 10 };
	buf = ioctl(dev, VFIO_DEVICE_FEATURE, hdr);
	CHECK(buf >= 0, "DMA_BUF export");
	va = mmap(NULL, (1 << 20) + (64 << 10), PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	CHECK(va != MAP_FAILED, "dma-buf mmap");
	if (va != MAP_FAILED) {
		uint32_t a = 0, b = 0;

		memset(va, 0x11, 1 << 20);
		memset(va + (1 << 20), 0x22, 64 << 10);
		CHECK(pread(dev, &a, 4, (off_t)(bar.offset + (1 << 20))) == 4 && a == 0x11111111,
		      "range 0 in BAR2: %#x", a);
		CHECK(pread(dev, &b, 4, (off_t)bar.offset) == 4 && b == 0x22222222,
		      "range 1 in BAR2: %#x", b);
	}
	struct iommu_ioas_map_file mf = {
		.size = sizeof(mf),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = alloc.out_ioas_id,
		.fd = buf,
		.start = 0,
		.length = (1 << 20) + (64 << 10),
		.iova = 0x40000000,
	};
	CHECK(ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &mf) == 0, "IOAS_MAP_FILE of the dma-buf");
	struct iommu_ioas_unmap um = { .size = sizeof(um), .ioas_id = alloc.out_ioas_id,
				       .iova = 0x40000000, .length = mf.length };
	CHECK(ioctl(iommufd, IOMMU_IOAS_UNMAP, &um) == 0 && um.length == mf.length, "IOAS_UNMAP");
	if (va != MAP_FAILED)
		CHECK(munmap(va, (1 << 20) + (64 << 10)) == 0, "munmap");
	CHECK(close(buf) == 0 && close(dev) == 0 && close(iommufd) == 0, "close");
	return finish("door-iommufd");
}
