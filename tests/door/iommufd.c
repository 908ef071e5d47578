// SPDX-License-Identifier: MIT
/*
 * (c) The device cdev with iommufd, as a userspace driver uses Linux 6.19
 * (kernel-semantics 1, 2, 3.3):
 *   - /dev/vfio/devices/vfioN of the GPU 0000:01:00.0 and of the copy
 *     engine 0000:02:00.0 (N from sysfs vfio-dev/), /dev/iommu, BIND_IOMMUFD,
 *     IOAS_ALLOC, both ATTACH_IOMMUFD_PT to the same IOAS;
 *   - a two-range dma-buf of BAR2 (VFIO_DEVICE_FEATURE_DMA_BUF): its mmap
 *     shows the ranges concatenated, each byte at its BAR place (checked
 *     both ways against pread/pwrite of the BAR region, with a canary in
 *     the gap); IOMMU_IOAS_MAP_FILE of it is EOPNOTSUPP (iommufd imports
 *     one range only);
 *   - a single-range dma-buf MAP_FILE'd, and the copy engine driven through
 *     its cdev (BAR0 registers by pread/pwrite, ring and completions in
 *     process memory mapped with IOMMU_IOAS_MAP) copying process memory
 *     into it and back; the data checked through the mmap and the BAR;
 *   - VFIO_DEVICE_RESET: the IOAS area is revoked for good (DMA reports
 *     "revoked"), the CPU mapping comes back (memory is on after reset);
 *   - PCI_COMMAND.MEMORY off by a config pwrite: every mapping raises
 *     SIGBUS, a new export is born revoked (its mmap and MAP_FILE: ENODEV),
 *     MAP_FILE of the old one ENODEV, BAR pread EIO, DMA "revoked";
 *   - memory on again: the same mappings work with their bytes, the born-
 *     revoked buffer maps, the stale area still does not translate until
 *     IOAS_UNMAP + MAP_FILE at the same IOVA, and then DMA works;
 *   - every fd closed, nothing left (fd count).
 */
#include "ce.h"

#define BDF "0000:01:00.0"
#define KiB 1024ull
#define MiB (1024ull * 1024)
#define ONE_OFF (4 * MiB) /* the single-range buffer: BAR2 [4 MiB, 4 MiB + 64 KiB) */
#define ONE_LEN (64 * KiB)
#define TWO_LEN (MiB + 64 * KiB)
#define IOVA_RING 0x100000ull
#define IOVA_COMPL 0x101000ull
#define IOVA_SYS 0x200000ull
#define SYS_SZ (64 * KiB)
#define IOVA_BUF 0x40000000ull
#define RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)

static int iommufd;
static uint32_t ioas;

static int open_cdev(const char *bdf)
{
	char path[64];
	int idx = sysfs_cdev_index(bdf);

	if (idx < 0) {
		printf("SKIP: no vfio-dev under /sys/bus/pci/devices/%s (no cdev)\n", bdf);
		exit(77);
	}
	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", idx);
	return open_or_skip(path, O_RDWR | O_CLOEXEC);
}

/* BIND_IOMMUFD and ATTACH_IOMMUFD_PT to the IOAS. */
static void bind_attach(int dev, const char *what)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	struct vfio_device_attach_iommufd_pt att = { .argsz = sizeof(att), .pt_id = ioas };

	CHECK(ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind) == 0, "BIND_IOMMUFD %s", what);
	/* pt_id comes back as the automatic HWPT's ID. */
	CHECK(ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &att) == 0 && att.pt_id != ioas,
	      "ATTACH_IOMMUFD_PT %s: pt_id %u", what, att.pt_id);
}

/* VFIO_DEVICE_FEATURE_DMA_BUF of BAR2 with @n ranges: the fd, or -1 with errno. */
static int export(int dev, const struct vfio_region_dma_range *r, unsigned int n)
{
	uint64_t raw[(sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_dma_buf) +
		      2 * sizeof(struct vfio_region_dma_range)) / 8] = { 0 };
	struct vfio_device_feature *hdr = (void *)raw;
	struct vfio_device_feature_dma_buf *db = (void *)hdr->data;

	hdr->argsz = sizeof(raw);
	hdr->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	db->region_index = VFIO_PCI_BAR2_REGION_INDEX;
	db->open_flags = O_RDWR | O_CLOEXEC;
	db->nr_ranges = n;
	memcpy(db->dma_ranges, r, n * sizeof(*r));
	return ioctl(dev, VFIO_DEVICE_FEATURE, hdr);
}

static int map_file(int fd, uint64_t len, uint64_t iova)
{
	struct iommu_ioas_map_file mf = {
		.size = sizeof(mf), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | RW, .ioas_id = ioas,
		.fd = fd, .start = 0, .length = len, .iova = iova,
	};

	return ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &mf);
}

static int map_user(void *va, uint64_t len, uint64_t iova, uint32_t flags)
{
	struct iommu_ioas_map m = { .size = sizeof(m), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | flags,
				    .ioas_id = ioas, .user_va = (uintptr_t)va, .length = len,
				    .iova = iova };

	return ioctl(iommufd, IOMMU_IOAS_MAP, &m);
}

/* IOAS_UNMAP: the length unmapped, or -1. */
static long long unmap(uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap um = { .size = sizeof(um), .ioas_id = ioas, .iova = iova,
				       .length = len };

	return ioctl(iommufd, IOMMU_IOAS_UNMAP, &um) ? -1 : (long long)um.length;
}

static uint32_t bar_u32(int dev, uint64_t bar2, uint64_t off)
{
	uint32_t v = 0;

	if (pread(dev, &v, 4, (off_t)(bar2 + off)) != 4)
		return 0xdeadbeef;
	return v;
}

/* Every page of [p, p + len) faults (@want) or reads without one (!@want). */
static int faults(uint8_t *p, uint64_t len, int want)
{
	for (uint64_t o = 0; o < len; o += 4096) {
		uint8_t v;

		if (!!probe(p + o, &v, 0) != want)
			return 0;
	}
	return 1;
}

int main(void)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR2_REGION_INDEX };
	const struct vfio_region_dma_range two_r[2] = { { MiB, MiB }, { 0, 64 * KiB } };
	const struct vfio_region_dma_range one_r = { ONE_OFF, ONE_LEN };
	int gpu, cefd, two, one, born, base;
	uint8_t *two_va, *one_va, *born_va, *sys, v;
	void *ring, *compl;
	uint32_t canary = 0xc0ffee11, x;
	struct ce ce;

	probe_init();
	sysfs_cdev_index(BDF); /* the door makes its devices at the first look: their fds stay */
	base = count_fds();
	gpu = open_cdev(BDF);
	cefd = open_cdev(CE_BDF);
	iommufd = open_or_skip("/dev/iommu", O_RDWR | O_CLOEXEC);
	CHECK(gpu >= 0 && cefd >= 0 && iommufd >= 0, "open");
	if (failures)
		return finish("door-iommufd");
	CHECK(ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc) == 0, "IOAS_ALLOC");
	ioas = alloc.out_ioas_id;
	bind_attach(gpu, BDF);
	bind_attach(cefd, CE_BDF);
	CHECK(ioctl(gpu, VFIO_DEVICE_GET_REGION_INFO, &bar) == 0 && bar.size == 256 * MiB,
	      "BAR2 info: size %llu", (unsigned long long)bar.size);

	/* A two-range dma-buf: BAR2 [1 MiB, 2 MiB) then [0, 64 KiB), its mmap. */
	CHECK(pwrite(gpu, &canary, 4, (off_t)(bar.offset + 64 * KiB)) == 4, "canary");
	two = export(gpu, two_r, 2);
	CHECK(two >= 0, "DMA_BUF export, 2 ranges");
	two_va = mmap(NULL, TWO_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, two, 0);
	CHECK(two_va != MAP_FAILED, "mmap of the two-range dma-buf");
	if (two_va == MAP_FAILED)
		return finish("door-iommufd");
	memset(two_va, 0x11, MiB);
	memset(two_va + MiB, 0x22, 64 * KiB);
	two_va[MiB - 1] = 0x33;
	two_va[MiB] = 0x44;
	CHECK(bar_u32(gpu, bar.offset, MiB) == 0x11111111, "range 0 at BAR2 1 MiB: %#x",
	      bar_u32(gpu, bar.offset, MiB));
	CHECK(bar_u32(gpu, bar.offset, 2 * MiB - 4) == 0x33111111,
	      "last byte of range 0 at BAR2 2 MiB - 1: %#x", bar_u32(gpu, bar.offset, 2 * MiB - 4));
	CHECK(bar_u32(gpu, bar.offset, 0) == 0x22222244, "range 1 at BAR2 0: %#x",
	      bar_u32(gpu, bar.offset, 0));
	CHECK(bar_u32(gpu, bar.offset, 64 * KiB - 4) == 0x22222222, "end of range 1: %#x",
	      bar_u32(gpu, bar.offset, 64 * KiB - 4));
	CHECK(bar_u32(gpu, bar.offset, 64 * KiB) == canary, "BAR2 64 KiB (in no range) untouched: %#x",
	      bar_u32(gpu, bar.offset, 64 * KiB));
	x = 0x5a5a1234;
	CHECK(pwrite(gpu, &x, 4, (off_t)(bar.offset + MiB + 8192)) == 4 &&
	      !memcmp(two_va + 8192, &x, 4), "a BAR2 pwrite shows in range 0 of the mmap");
	CHECK(pwrite(gpu, &x, 4, (off_t)(bar.offset + 4096)) == 4 &&
	      !memcmp(two_va + MiB + 4096, &x, 4), "a BAR2 pwrite shows in range 1 of the mmap");
	errno = 0;
	CHECK(map_file(two, TWO_LEN, IOVA_BUF) < 0 && errno == EOPNOTSUPP,
	      "MAP_FILE of a two-range dma-buf: EOPNOTSUPP (6.19 imports one range)");

	/* A single-range dma-buf in the IOAS, and the copy engine's queues. */
	one = export(gpu, &one_r, 1);
	CHECK(one >= 0, "DMA_BUF export, 1 range");
	one_va = mmap(NULL, ONE_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, one, 0);
	CHECK(one_va != MAP_FAILED, "mmap of the single-range dma-buf");
	CHECK(map_file(one, ONE_LEN, IOVA_BUF) == 0, "MAP_FILE of the single-range dma-buf");
	ring = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	compl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sys = mmap(NULL, SYS_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ring != MAP_FAILED && compl != MAP_FAILED && sys != MAP_FAILED, "process memory");
	if (failures)
		return finish("door-iommufd");
	CHECK(map_user(ring, 4096, IOVA_RING, IOMMU_IOAS_MAP_READABLE) == 0, "IOAS_MAP ring");
	CHECK(map_user(compl, 4096, IOVA_COMPL, RW) == 0, "IOAS_MAP completions");
	CHECK(map_user(sys, SYS_SZ, IOVA_SYS, RW) == 0, "IOAS_MAP data");
	CHECK(ce_init(&ce, cefd, ring, IOVA_RING, compl, IOVA_COMPL) == 0, "copy engine init");
	if (one_va == MAP_FAILED || failures)
		return finish("door-iommufd");
	for (size_t i = 0; i < SYS_SZ; i++)
		sys[i] = (uint8_t)(i * 13 + 5);
	memset(one_va, 0, ONE_LEN);
	CHECK((x = ce_copy(&ce, IOVA_SYS, IOVA_BUF + 100, 30000)) == CE_OK,
	      "DMA process memory -> dma-buf: status %u", x);
	CHECK(!memcmp(one_va + 100, sys, 30000) && one_va[99] == 0 && one_va[30100] == 0,
	      "the DMA'd bytes through the mmap");
	CHECK(bar_u32(gpu, bar.offset, ONE_OFF + 100) == *(uint32_t *)sys,
	      "the DMA'd bytes in BAR2 at the range's offset");
	CHECK((x = ce_copy(&ce, IOVA_BUF + 100, IOVA_SYS + 32768, 1000)) == CE_OK &&
	      !memcmp(sys + 32768, sys, 1000), "DMA dma-buf -> process memory: status %u", x);

	/* Reset: the IOAS area is revoked for good; the CPU mapping comes back. */
	CHECK(ioctl(gpu, VFIO_DEVICE_RESET) == 0, "VFIO_DEVICE_RESET");
	CHECK((x = ce_copy(&ce, IOVA_SYS, IOVA_BUF, 64)) == CE_REVOKED,
	      "DMA into the area after reset: status %u (want revoked)", x);
	CHECK((x = ce_copy(&ce, IOVA_SYS, IOVA_SYS + 16384, 64)) == CE_OK,
	      "DMA in process memory still works: %u", x);
	CHECK(pci_command(gpu, -1) >= 0 && (pci_command(gpu, -1) & 0x2), "memory on after reset");
	CHECK(faults(one_va, ONE_LEN, 0) && faults(two_va, TWO_LEN, 0),
	      "the mmaps work after the reset (memory is on)");
	CHECK(probe(one_va, NULL, 0x5a) == 0 && probe(two_va + MiB, NULL, 0xa5) == 0, "write");

	/* Memory decode off: SIGBUS, born-revoked exports, ENODEV, EIO, DMA revoked. */
	CHECK(pci_command(gpu, 0) >= 0 && !(pci_command(gpu, -1) & 0x2), "PCI_COMMAND.MEMORY off");
	CHECK(probe(one_va, &v, 0) == SIGBUS && probe(one_va + ONE_LEN - 1, NULL, 1) == SIGBUS,
	      "the single-range mmap raises SIGBUS");
	CHECK(faults(two_va, TWO_LEN, 1) && probe(two_va, &v, 0) == SIGBUS,
	      "the two-range mmap raises SIGBUS on every page");
	born = export(gpu, &one_r, 1);
	CHECK(born >= 0, "an export while memory is off is made (born revoked)");
	errno = 0;
	born_va = mmap(NULL, ONE_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, born, 0);
	CHECK(born_va == MAP_FAILED && errno == ENODEV, "mmap of a revoked dma-buf: ENODEV");
	errno = 0;
	CHECK(map_file(born, ONE_LEN, IOVA_BUF + MiB) < 0 && errno == ENODEV,
	      "MAP_FILE of the born-revoked dma-buf: ENODEV");
	errno = 0;
	CHECK(map_file(one, ONE_LEN, IOVA_BUF + MiB) < 0 && errno == ENODEV,
	      "MAP_FILE of a revoked dma-buf: ENODEV");
	errno = 0;
	CHECK(pread(gpu, &x, 4, (off_t)bar.offset) < 0 && errno == EIO, "BAR2 pread: EIO");
	CHECK((x = ce_copy(&ce, IOVA_SYS, IOVA_BUF, 64)) == CE_REVOKED,
	      "DMA into the revoked area: status %u", x);
	CHECK((x = ce_copy(&ce, IOVA_BUF, IOVA_SYS, 64)) == CE_REVOKED,
	      "DMA from the revoked area: status %u", x);

	/* Recovery: memory on; the same mappings work; unmap + MAP_FILE again; DMA works. */
	CHECK(pci_command(gpu, 1) >= 0 && (pci_command(gpu, -1) & 0x2), "PCI_COMMAND.MEMORY on");
	CHECK(probe(one_va, &v, 0) == 0 && v == 0x5a, "the single-range mmap again: %#x", v);
	CHECK(probe(two_va + MiB, &v, 0) == 0 && v == 0xa5 && faults(two_va, TWO_LEN, 0),
	      "the two-range mmap again: %#x", v);
	born_va = mmap(NULL, ONE_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, born, 0);
	CHECK(born_va != MAP_FAILED && born_va[0] == 0x5a, "the born-revoked dma-buf maps now");
	if (born_va != MAP_FAILED)
		CHECK(munmap(born_va, ONE_LEN) == 0, "munmap");
	CHECK((x = ce_copy(&ce, IOVA_SYS, IOVA_BUF, 64)) == CE_REVOKED,
	      "the stale area is never remapped by iommufd: status %u", x);
	CHECK(unmap(IOVA_BUF, ONE_LEN) == (long long)ONE_LEN, "IOAS_UNMAP of the stale area");
	CHECK(map_file(one, ONE_LEN, IOVA_BUF) == 0, "MAP_FILE again at the same IOVA");
	CHECK((x = ce_copy(&ce, IOVA_SYS + 4096, IOVA_BUF + 8, 4000)) == CE_OK,
	      "DMA after recovery: status %u", x);
	CHECK(!memcmp(one_va + 8, sys + 4096, 4000) && one_va[0] == 0x5a,
	      "the bytes through the mmap after recovery");
	CHECK(map_file(born, ONE_LEN, IOVA_BUF + MiB) == 0, "MAP_FILE of the other buffer");
	CHECK((x = ce_copy(&ce, IOVA_BUF + MiB + 8, IOVA_SYS + 40000, 4000)) == CE_OK &&
	      !memcmp(sys + 40000, sys + 4096, 4000), "DMA between two views: status %u", x);

	ce_stop(&ce);
	CHECK(unmap(0, UINT64_MAX) == (long long)(2 * ONE_LEN + SYS_SZ + 8192), "IOAS_UNMAP all");
	CHECK(munmap(two_va, TWO_LEN) == 0 && munmap(one_va, ONE_LEN) == 0, "munmap");
	CHECK(close(two) == 0 && close(one) == 0 && close(born) == 0, "close the dma-bufs");
	CHECK(close(cefd) == 0 && close(gpu) == 0 && close(iommufd) == 0, "close");
	munmap(ring, 4096);
	munmap(compl, 4096);
	munmap(sys, SYS_SZ);
	CHECK(count_fds() == base, "fds: %d at start, %d at the end", base, count_fds());
	return finish("door-iommufd");
}
