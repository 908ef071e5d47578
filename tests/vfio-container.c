// SPDX-License-Identifier: MIT
/*
 * The legacy VFIO container and group API with type1 (Linux 6.19
 * drivers/vfio/container.c, group.c, vfio_iommu_type1.c), through fds from
 * the constructors and the p2p_fd_* dispatch, with the kernel's structures:
 *
 * - the registry: register, cdev index, enumeration, missing groups;
 * - container ioctls before and after VFIO_SET_IOMMU: API version,
 *   extensions as a type1v2 host answers them, SET_IOMMU rules,
 *   VFIO_IOMMU_GET_INFO with its migration, DMA-available and IOVA-range
 *   capabilities (chain, offsets, short argsz);
 * - group ioctls: status flags, SET/UNSET_CONTAINER (EBADF, EBADFD, EINVAL,
 *   EBUSY while a device is open), GET_DEVICE_FD by name (ENODEV, EINVAL
 *   before SET_IOMMU), one open at a time;
 * - MAP_DMA validation (EINVAL, EOVERFLOW, EEXIST, EFAULT, the reserved MSI
 *   window, EBUSY for VADDR) and UNMAP_DMA (v2: no bisecting, size
 *   returned, FLAG_ALL; v1: a range starting inside a mapping unmaps
 *   nothing, one covering its start unmaps all of it);
 * - copy-engine DMA through the container: process memory <-> the GPU's
 *   BAR2 mapped by MAP_DMA of its BAR mmap address (through the dma-buf);
 *   VFIO_DEVICE_RESET revokes that mapping for good (DMA fails until
 *   unmap + map) while the CPU mapping comes back; COMMAND.MEM off makes
 *   the CPU mapping SIGBUS and DMA fail;
 * - dirty page tracking; releases: every fd closed, the group reopens.
 */
#define _GNU_SOURCE
#include <sys/ioctl.h>
#include <unistd.h>

#include "ce_fd.h"
#include "harness.h"

#define MiB (1024ull * 1024)
#define BAR2_SZ (2 * MiB)
#define GPU "0000:01:00.0"
#define CE "0000:02:00.0"
#define G_GPU 10u
#define G_CE 11u
#define IOVA_RING 0x100000ull
#define IOVA_COMPL 0x101000ull
#define IOVA_SYS 0x200000ull
#define IOVA_BAR 0x40000000ull
#define SYS_SZ (64 * 1024ull)
#define RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

#define IOCTL(fd, cmd, arg) p2p_fd_ioctl(fd, cmd, (void *)(arg))
#define EXT(fd, e) p2p_fd_ioctl(fd, VFIO_CHECK_EXTENSION, (void *)(uintptr_t)(e))

static long map_dma(int cfd, void *va, uint64_t iova, uint64_t size, uint32_t flags)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = flags, .vaddr = (uintptr_t)va, .iova = iova, .size = size,
	};

	return p2p_fd_ioctl(cfd, VFIO_IOMMU_MAP_DMA, &m);
}

/* UNMAP_DMA; *@done gets the size the kernel reports (when it succeeds). */
static long unmap_dma(int cfd, uint64_t iova, uint64_t size, uint32_t flags, uint64_t *done)
{
	struct vfio_iommu_type1_dma_unmap u = {
		.argsz = sizeof(u), .flags = flags, .iova = iova, .size = size,
	};
	long ret = p2p_fd_ioctl(cfd, VFIO_IOMMU_UNMAP_DMA, &u);

	if (done)
		*done = ret ? ~0ull : u.size;
	return ret;
}

static uint32_t dma_avail(int cfd)
{
	uint8_t buf[512] = { 0 };
	struct vfio_iommu_type1_info *info = (void *)buf;
	uint32_t off;

	info->argsz = sizeof(buf);
	if (p2p_fd_ioctl(cfd, VFIO_IOMMU_GET_INFO, info))
		return ~0u;
	for (off = info->cap_offset; off; off = ((struct vfio_info_cap_header *)(buf + off))->next)
		if (((struct vfio_info_cap_header *)(buf + off))->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL)
			return ((struct vfio_iommu_type1_info_dma_avail *)(buf + off))->avail;
	return ~0u;
}

static void test_registry(struct p2p_pci_dev *gpu, struct p2p_pci_dev *ce)
{
	struct p2p_pci_dev *all[4] = { 0 };
	unsigned int idx;

	t_section("registry");
	CHECK_ERR(p2p_vfio_register(gpu, &idx), -EEXIST);
	CHECK(p2p_vfio_cdev_index(gpu) == 0 && p2p_vfio_cdev_index(ce) == 1);
	CHECK(p2p_pci_dev_group(gpu) == G_GPU && p2p_pci_dev_group(ce) == G_CE);
	CHECK(p2p_vfio_registered(NULL, 0) == 2);
	CHECK(p2p_vfio_registered(all, 1) == 2 && all[0] == gpu && !all[1]);
	p2p_pci_dev_put(all[0]);
	CHECK_ERR(p2p_vfio_group_open_fd(99, O_RDWR), -ENOENT);
	CHECK_ERR(p2p_vfio_cdev_open_fd(7, O_RDWR), -ENOENT);
}

static void test_info(int cfd)
{
	uint8_t buf[512];
	struct vfio_iommu_type1_info *info = (void *)buf;
	struct vfio_info_cap_header *h;
	uint32_t need, ids[3], n = 0;

	t_section("VFIO_IOMMU_GET_INFO");
	memset(buf, 0, sizeof(buf));
	info->argsz = 8;
	CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_GET_INFO, info), -EINVAL);
	/* No room for the capabilities: argsz says how much is needed. */
	info->argsz = sizeof(*info);
	CHECK_OK(IOCTL(cfd, VFIO_IOMMU_GET_INFO, info));
	need = info->argsz;
	CHECK(need == sizeof(*info) + 32 + 16 + 16 + 2 * 16);
	CHECK(info->flags == (VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS));
	CHECK(info->cap_offset == 0 && info->iova_pgsizes == 0x40201000ull);
	/* An old caller without cap_offset: 16 bytes written back, no more. */
	memset(buf, 0xa5, sizeof(buf));
	info->argsz = 16;
	CHECK_OK(IOCTL(cfd, VFIO_IOMMU_GET_INFO, info));
	CHECK(info->argsz == need && buf[16] == 0xa5);
	memset(buf, 0, sizeof(buf));
	info->argsz = sizeof(buf);
	CHECK_OK(IOCTL(cfd, VFIO_IOMMU_GET_INFO, info));
	CHECK(info->argsz == sizeof(buf) && info->cap_offset == sizeof(*info));
	for (uint32_t off = info->cap_offset; off && n < 3; off = h->next) {
		h = (void *)(buf + off);
		CHECK(h->version == 1 && off % 8 == 0 && off < need);
		ids[n++] = h->id;
		if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) {
			struct vfio_iommu_type1_info_cap_migration *m = (void *)h;

			CHECK(m->flags == 0 && m->pgsize_bitmap == 4096 &&
			      m->max_dirty_bitmap_size == 0x10000000ull);
		} else if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
			CHECK(((struct vfio_iommu_type1_info_dma_avail *)h)->avail == 65535);
		} else if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
			struct vfio_iommu_type1_info_cap_iova_range *r = (void *)h;

			CHECK(r->nr_iovas == 2);
			CHECK(r->iova_ranges[0].start == 0 && r->iova_ranges[0].end == 0xfedfffffull);
			CHECK(r->iova_ranges[1].start == 0xfef00000ull &&
			      r->iova_ranges[1].end == (1ull << 48) - 1);
		}
	}
	CHECK(n == 3 && ids[0] == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION &&
	      ids[1] == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL &&
	      ids[2] == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
}

static void test_map_errors(int cfd, void *sys)
{
	struct vfio_iommu_type1_dma_map m = { .argsz = 16 };
	void *hole;

	t_section("MAP_DMA validation");
	CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_MAP_DMA, &m), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, IOVA_SYS, 4096, RW | 8), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, IOVA_SYS, 0, RW), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, UINT64_MAX - 4095, 8192, RW), -EOVERFLOW);
	CHECK_ERR(map_dma(cfd, (void *)(UINTPTR_MAX - 4095), IOVA_SYS, 8192, RW), -EOVERFLOW);
	CHECK_ERR(map_dma(cfd, sys, IOVA_SYS, 4096, 0), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, IOVA_SYS, 4096, VFIO_DMA_MAP_FLAG_READ |
						     VFIO_DMA_MAP_FLAG_VADDR), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, IOVA_SYS, 4096, VFIO_DMA_MAP_FLAG_VADDR), -EBUSY);
	CHECK_ERR(map_dma(cfd, (uint8_t *)sys + 1, IOVA_SYS, 4096, RW), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, IOVA_SYS + 512, 4096, RW), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, IOVA_SYS, 4000, RW), -EINVAL);
	/* The reserved MSI window and beyond the 48-bit aperture. */
	CHECK_ERR(map_dma(cfd, sys, 0xfee00000ull, 4096, RW), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, 0xfedff000ull, 8192, RW), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, 1ull << 48, 4096, RW), -EINVAL);
	/* Memory that is not there cannot be pinned. */
	hole = mmap(NULL, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(hole != MAP_FAILED);
	munmap(hole, 8192);
	CHECK_ERR(map_dma(cfd, hole, IOVA_SYS, 8192, RW), -EFAULT);
	CHECK(dma_avail(cfd) == 65535);
}

static void test_unmap_v2(int cfd, void *sys)
{
	uint64_t done, base = 0x10000000ull;
	uint8_t *p = sys;

	t_section("UNMAP_DMA (v2)");
	CHECK_OK(map_dma(cfd, p, base, 8192, RW));
	CHECK_OK(map_dma(cfd, p + 8192, base + 8192, 8192, RW));
	CHECK_ERR(map_dma(cfd, p, base + 4096, 8192, RW), -EEXIST);
	CHECK(dma_avail(cfd) == 65533);
	CHECK_ERR(unmap_dma(cfd, base + 4096, 8192, 0, NULL), -EINVAL);	 /* starts inside */
	CHECK_ERR(unmap_dma(cfd, base, 12288, 0, NULL), -EINVAL);	 /* ends inside */
	CHECK_ERR(unmap_dma(cfd, base + 1, 8192, 0, NULL), -EINVAL);	 /* misaligned */
	CHECK_ERR(unmap_dma(cfd, base, 0, 0, NULL), -EINVAL);
	CHECK_ERR(unmap_dma(cfd, UINT64_MAX - 4095, 8192, 0, NULL), -EOVERFLOW);
	CHECK_ERR(unmap_dma(cfd, base, 8192, 1u << 5, NULL), -EINVAL);	 /* unknown flag */
	CHECK_ERR(unmap_dma(cfd, base, 8192, VFIO_DMA_UNMAP_FLAG_VADDR, NULL), -EBUSY);
	CHECK_ERR(unmap_dma(cfd, base, 8192, VFIO_DMA_UNMAP_FLAG_ALL, NULL), -EINVAL);
	CHECK_ERR(unmap_dma(cfd, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
			    NULL), -EINVAL);
	CHECK_OK(unmap_dma(cfd, base + 0x100000, 4096, 0, &done)); /* nothing there */
	CHECK(done == 0);
	CHECK_OK(unmap_dma(cfd, base - 4096, 20480, 0, &done)); /* both, whole */
	CHECK(done == 16384);
	CHECK(dma_avail(cfd) == 65535);
	CHECK_OK(map_dma(cfd, p, base, 8192, RW));
	CHECK_OK(map_dma(cfd, p, base + 0x100000, 4096, VFIO_DMA_MAP_FLAG_READ));
	CHECK_OK(unmap_dma(cfd, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &done));
	CHECK(done == 8192 + 4096);
}

static void test_dirty(int cfd, void *sys)
{
	uint8_t buf[sizeof(struct vfio_iommu_type1_dirty_bitmap) +
		    sizeof(struct vfio_iommu_type1_dirty_bitmap_get)] = { 0 };
	struct vfio_iommu_type1_dirty_bitmap *d = (void *)buf;
	struct vfio_iommu_type1_dirty_bitmap_get *r = (void *)d->data;
	uint64_t bits[2] = { 0 }, base = 0x20000000ull;

	t_section("VFIO_IOMMU_DIRTY_PAGES");
	CHECK_OK(map_dma(cfd, sys, base + 8192, 12288, RW));
	d->argsz = sizeof(buf);
	d->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP;
	CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_DIRTY_PAGES, d), -EINVAL);
	d->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	r->iova = base;
	r->size = 32768;
	r->bitmap.pgsize = 4096;
	r->bitmap.size = sizeof(bits);
	r->bitmap.data = (__u64 *)bits;
	CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_DIRTY_PAGES, d), -EINVAL); /* not started */
	d->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START;
	CHECK_OK(IOCTL(cfd, VFIO_IOMMU_DIRTY_PAGES, d));
	d->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	CHECK_OK(IOCTL(cfd, VFIO_IOMMU_DIRTY_PAGES, d));
	CHECK(bits[0] == 0x1c && bits[1] == 0); /* pages 2, 3, 4 */
	r->size = 16384; /* ends inside the mapping */
	CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_DIRTY_PAGES, d), -EINVAL);
	d->flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP;
	CHECK_OK(IOCTL(cfd, VFIO_IOMMU_DIRTY_PAGES, d));
	CHECK_OK(unmap_dma(cfd, base + 8192, 12288, 0, NULL));
}

/* GPU BAR2 through MAP_DMA of its BAR mmap; the copy engine DMAs through the container. */
static void test_dma(int cfd, int gdev, int cdev, uint8_t *sys, void *ring, void *compl)
{
	uint8_t *bar = NULL;
	struct ce_fd ce;
	uint64_t done;
	uint16_t cmd;

	t_section("copy-engine DMA through the container");
	CHECK_OK(map_dma(cfd, ring, IOVA_RING, 4096, VFIO_DMA_MAP_FLAG_READ));
	CHECK_OK(map_dma(cfd, compl, IOVA_COMPL, 4096, RW));
	CHECK_OK(map_dma(cfd, sys, IOVA_SYS, SYS_SZ, RW));
	CHECK_OK(p2p_fd_mmap(gdev, NULL, BAR2_SZ, PROT_READ | PROT_WRITE, MAP_SHARED,
			     P2P_VFIO_REGION_OFFSET(2), (void **)&bar));
	if (!bar)
		return;
	CHECK_OK(map_dma(cfd, bar, IOVA_BAR, BAR2_SZ, RW));
	CHECK(ce_fd_init(&ce, cdev, ring, IOVA_RING, compl, IOVA_COMPL) == 0);
	for (size_t i = 0; i < SYS_SZ; i++)
		sys[i] = (uint8_t)(i * 7 + 1);
	memset(bar, 0, SYS_SZ);
	CHECK(ce_fd_copy(&ce, IOVA_SYS, IOVA_BAR + 4096, SYS_SZ / 2) == P2P_CE_OK);
	CHECK(memcmp(bar + 4096, sys, SYS_SZ / 2) == 0);
	CHECK(ce_fd_copy(&ce, IOVA_BAR + 4096, IOVA_SYS + SYS_SZ / 2, 1000) == P2P_CE_OK);
	CHECK(memcmp(sys + SYS_SZ / 2, sys, 1000) == 0);
	/* A hole in the container is a translation fault. */
	CHECK(ce_fd_copy(&ce, IOVA_SYS, 0x30000000ull, 64) == P2P_CE_FAULT);

	t_section("reset revokes the MAP_DMA of the BAR mmap");
	CHECK_OK(IOCTL(gdev, VFIO_DEVICE_RESET, NULL));
	CHECK(ce_fd_copy(&ce, IOVA_SYS, IOVA_BAR, 64) == P2P_CE_REVOKED);
	CHECK(ce_fd_copy(&ce, IOVA_BAR, IOVA_SYS, 64) == P2P_CE_REVOKED);
	/* Memory is on again after the reset: the CPU mapping works, DMA stays dead. */
	CHECK(!t_read_faults(bar));
	bar[0] = 0x5a;
	CHECK(ce_fd_copy(&ce, IOVA_BAR, IOVA_SYS, 1) == P2P_CE_REVOKED);
	/* COMMAND.MEM off: the CPU mapping SIGBUSes. */
	CHECK(p2p_fd_pread(gdev, &cmd, 2, P2P_VFIO_REGION_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) + 4)
	      == 2);
	cmd &= (uint16_t)~0x2;
	CHECK(p2p_fd_pwrite(gdev, &cmd, 2, P2P_VFIO_REGION_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) + 4)
	      == 2);
	CHECK(t_read_faults(bar) && t_write_faults(bar + 4096, 1));
	cmd |= 0x2;
	CHECK(p2p_fd_pwrite(gdev, &cmd, 2, P2P_VFIO_REGION_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) + 4)
	      == 2);
	CHECK(!t_read_faults(bar) && bar[0] == 0x5a);
	/* Unmap the dead mapping and map it again: DMA works. */
	CHECK_OK(unmap_dma(cfd, IOVA_BAR, BAR2_SZ, 0, &done));
	CHECK(done == BAR2_SZ);
	CHECK_OK(map_dma(cfd, bar, IOVA_BAR, BAR2_SZ, RW));
	CHECK(ce_fd_copy(&ce, IOVA_BAR, IOVA_SYS, 1) == P2P_CE_OK && sys[0] == 0x5a);
	ce_fd_w(cdev, P2P_CE_REG_CTRL, 0, 4);
	CHECK_OK(p2p_munmap(bar, BAR2_SZ));
	CHECK_OK(unmap_dma(cfd, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &done));
	CHECK(done == BAR2_SZ + SYS_SZ + 8192);
}

static void test_v1(int gce, void *sys)
{
	uint64_t done, base = 0x10000000ull;
	int cfd = p2p_vfio_container_open_fd(O_RDWR | O_CLOEXEC);

	t_section("type1 v1 unmap");
	CHECK(cfd >= 0);
	CHECK_OK(IOCTL(gce, VFIO_GROUP_SET_CONTAINER, &cfd));
	CHECK_OK(IOCTL(cfd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU));
	CHECK_OK(map_dma(cfd, sys, base, 16384, RW));
	/* A range starting inside a mapping: success, nothing unmapped. */
	CHECK_OK(unmap_dma(cfd, base + 4096, 4096, 0, &done));
	CHECK(done == 0);
	/* Covering its first page: all of it goes. */
	CHECK_OK(unmap_dma(cfd, base, 4096, 0, &done));
	CHECK(done == 16384);
	{
		struct vfio_iommu_type1_dirty_bitmap d = { .argsz = sizeof(d),
							   .flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START };

		CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_DIRTY_PAGES, &d), -EACCES);
	}
	CHECK_OK(IOCTL(gce, VFIO_GROUP_UNSET_CONTAINER, NULL));
	/* The last group left: deprivileged, back to unset. */
	CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_GET_INFO, sys), -EINVAL);
	CHECK_OK(p2p_close(cfd));
}

int main(void)
{
	struct p2p_pci_dev_info info;
	struct p2p_pci_dev *gpu, *cepci;
	struct vfio_group_status st = { .argsz = sizeof(st) };
	int cfd, ggpu, gce, gdev, cdev, pipefd[2];
	uint8_t *sys, *ring, *compl;
	unsigned int idx;

	t_begin();
	t_require_uffd();
	t_dev_info(&info, GPU, BAR2_SZ, 0, NULL, G_GPU);
	if (p2p_pci_dev_create(&info, &gpu))
		t_skip("cannot create the GPU function");
	CHECK_OK(p2p_copy_engine_create(CE, NULL, G_CE, &cepci));
	CHECK_OK(p2p_vfio_register(gpu, &idx));
	CHECK(idx == 0);
	CHECK_OK(p2p_vfio_register(cepci, &idx));
	CHECK(idx == 1);
	sys = mmap(NULL, SYS_SZ + 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(sys != MAP_FAILED);
	ring = sys + SYS_SZ;
	compl = ring + 4096;
	test_registry(gpu, cepci);

	t_section("container before VFIO_SET_IOMMU");
	cfd = p2p_vfio_container_open_fd(O_RDWR | O_CLOEXEC);
	CHECK(cfd >= 0 && p2p_fd_is_file(cfd));
	CHECK_ERR(IOCTL(cfd, VFIO_GET_API_VERSION, NULL), VFIO_API_VERSION);
	CHECK(EXT(cfd, VFIO_TYPE1_IOMMU) == 1 && EXT(cfd, VFIO_TYPE1v2_IOMMU) == 1);
	CHECK(EXT(cfd, VFIO_UNMAP_ALL) == 1 && EXT(cfd, VFIO_UPDATE_VADDR) == 0);
	CHECK(EXT(cfd, VFIO_DMA_CC_IOMMU) == 0 && EXT(cfd, 6) == 0 && EXT(cfd, VFIO_SPAPR_TCE_IOMMU) == 0);
	CHECK_ERR(IOCTL(cfd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), -EINVAL); /* no group yet */
	CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_GET_INFO, sys), -EINVAL);
	CHECK_ERR(map_dma(cfd, sys, IOVA_SYS, 4096, RW), -EINVAL);

	t_section("group");
	gce = p2p_vfio_group_open_fd(G_CE, O_RDWR | O_CLOEXEC);
	CHECK(gce >= 0);
	CHECK_ERR(p2p_vfio_group_open_fd(G_CE, O_RDWR), -EBUSY);
	CHECK_OK(IOCTL(gce, VFIO_GROUP_GET_STATUS, &st));
	CHECK(st.flags == VFIO_GROUP_FLAGS_VIABLE);
	st.argsz = 4;
	CHECK_ERR(IOCTL(gce, VFIO_GROUP_GET_STATUS, &st), -EINVAL);
	st.argsz = sizeof(st);
	CHECK_ERR(IOCTL(gce, VFIO_GROUP_GET_DEVICE_FD, "0000:09:00.0"), -ENODEV);
	CHECK_ERR(IOCTL(gce, VFIO_GROUP_GET_DEVICE_FD, GPU), -ENODEV); /* not in this group */
	CHECK_ERR(IOCTL(gce, VFIO_GROUP_GET_DEVICE_FD, CE), -EINVAL);	/* no container */
	CHECK_ERR(IOCTL(gce, VFIO_GROUP_UNSET_CONTAINER, NULL), -EINVAL);
	CHECK_ERR(IOCTL(gce, VFIO_GROUP_SET_CONTAINER, NULL), -EFAULT);
	{
		int bad = -1;

		CHECK_ERR(IOCTL(gce, VFIO_GROUP_SET_CONTAINER, &bad), -EBADF);
		CHECK(pipe(pipefd) == 0);
		CHECK_ERR(IOCTL(gce, VFIO_GROUP_SET_CONTAINER, &pipefd[0]), -EBADFD);
		close(pipefd[0]);
		close(pipefd[1]);
	}
	CHECK_OK(IOCTL(gce, VFIO_GROUP_SET_CONTAINER, &cfd));
	CHECK_ERR(IOCTL(gce, VFIO_GROUP_SET_CONTAINER, &cfd), -EINVAL);
	CHECK_OK(IOCTL(gce, VFIO_GROUP_GET_STATUS, &st));
	CHECK(st.flags == (VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET));
	CHECK_ERR(IOCTL(gce, VFIO_GROUP_GET_DEVICE_FD, CE), -EINVAL); /* no IOMMU set */

	t_section("VFIO_SET_IOMMU");
	CHECK_ERR(IOCTL(cfd, VFIO_SET_IOMMU, 123), -ENODEV);
	CHECK_ERR(IOCTL(cfd, VFIO_SET_IOMMU, VFIO_UNMAP_ALL), -EINVAL);
	CHECK_OK(IOCTL(cfd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	CHECK_ERR(IOCTL(cfd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), -EINVAL);
	CHECK(EXT(cfd, VFIO_DMA_CC_IOMMU) == 1 && EXT(cfd, VFIO_UPDATE_VADDR) == 0);
	CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_GET_INFO + 100, NULL), -ENOTTY);

	test_info(cfd);
	test_map_errors(cfd, sys);
	test_unmap_v2(cfd, sys);
	test_dirty(cfd, sys);

	t_section("devices through the groups");
	ggpu = p2p_vfio_group_open_fd(G_GPU, O_RDWR | O_CLOEXEC);
	CHECK(ggpu >= 0);
	CHECK_OK(IOCTL(ggpu, VFIO_GROUP_SET_CONTAINER, &cfd)); /* a second group joins */
	gdev = (int)IOCTL(ggpu, VFIO_GROUP_GET_DEVICE_FD, GPU);
	cdev = (int)IOCTL(gce, VFIO_GROUP_GET_DEVICE_FD, CE);
	CHECK(gdev >= 0 && cdev >= 0 && (fcntl(gdev, F_GETFD) & FD_CLOEXEC));
	CHECK(p2p_vfio_device_from_fd(gdev) && p2p_vfio_device_pci(p2p_vfio_device_from_fd(gdev)) == gpu);
	CHECK_ERR(IOCTL(gdev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, sys), -ENOTTY); /* group fds: no cdev ioctls */
	{
		struct vfio_device_bind_iommufd b = { .argsz = sizeof(b), .iommufd = cfd };

		CHECK_ERR(IOCTL(gdev, VFIO_DEVICE_BIND_IOMMUFD, &b), -EINVAL);
	}
	if (gdev >= 0 && cdev >= 0)
		test_dma(cfd, gdev, cdev, sys, ring, compl);

	t_section("release");
	CHECK_ERR(IOCTL(gce, VFIO_GROUP_UNSET_CONTAINER, NULL), -EBUSY); /* its device is open */
	CHECK_OK(p2p_close(cdev));
	CHECK_OK(p2p_close(gdev));
	CHECK(p2p_pci_dev_open_count(gpu) == 0 && p2p_pci_dev_open_count(cepci) == 0);
	CHECK_OK(IOCTL(gce, VFIO_GROUP_UNSET_CONTAINER, NULL));
	CHECK_OK(IOCTL(gce, VFIO_GROUP_GET_STATUS, &st));
	CHECK(st.flags == VFIO_GROUP_FLAGS_VIABLE);
	CHECK_OK(p2p_close(ggpu)); /* the last group: the container is unset again */
	CHECK_ERR(IOCTL(cfd, VFIO_IOMMU_GET_INFO, sys), -EINVAL);
	CHECK_OK(p2p_close(cfd));
	test_v1(gce, sys);
	CHECK_OK(p2p_close(gce));
	gce = p2p_vfio_group_open_fd(G_CE, O_RDWR | O_CLOEXEC);
	CHECK(gce >= 0);
	CHECK_OK(p2p_close(gce));

	munmap(sys, SYS_SZ + 8192);
	p2p_vfio_unregister(gpu);
	p2p_vfio_unregister(cepci);
	p2p_vfio_unregister(cepci);
	CHECK(p2p_vfio_registered(NULL, 0) == 0);
	p2p_pci_dev_put(gpu);
	p2p_pci_dev_put(cepci);
	return t_end();
}
