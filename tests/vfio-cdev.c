// SPDX-License-Identifier: MIT
/*
 * The VFIO device cdev with iommufd (Linux 6.19 drivers/vfio/device_cdev.c,
 * drivers/iommu/iommufd/device.c, hw_pagetable.c, main.c), with the
 * kernel's structures:
 *
 * - before VFIO_DEVICE_BIND_IOMMUFD every ioctl, read and mmap is EINVAL;
 *   bind's errors (argsz, flags, negative fd, EBADF, EBADFD, a VF token on
 *   a function without one); bound twice EINVAL; the group is blocked
 *   (EBUSY) while bound, and the cdev bind while the group is open;
 * - IOMMU_GET_HW_INFO (type NONE, data zeroed), IOMMU_OPTION (HUGE_PAGES
 *   get/set, RLIMIT_MODE), IOMMU_HWPT_ALLOC (paging over an IOAS; nesting,
 *   dirty tracking, PASID, fault IDs refused), IOMMU_DESTROY (EBUSY for
 *   bound devices, attached HWPTs and their IOAS);
 * - ATTACH_IOMMUFD_PT to an IOAS (an automatic HWPT, reported back and
 *   freed with its last device) and to a HWPT, DETACH;
 * - a two-range dma-buf exported from the GPU cdev and mmapped; IOMMU
 *   IOAS_MAP_FILE refuses it (single range only, as 6.19) and maps a
 *   single-range export; the copy engine DMAs into it and the bytes show
 *   through the two-range mapping; a reset revokes the IOAS area.
 */
#define _GNU_SOURCE
#include <unistd.h>

#include "ce_fd.h"
#include "harness.h"

#define MiB (1024ull * 1024)
#define BAR2_SZ (2 * MiB)
#define IOVA_RING 0x100000ull
#define IOVA_COMPL 0x101000ull
#define IOVA_SYS 0x200000ull
#define IOVA_BUF 0x40000000ull
#define SYS_SZ (64 * 1024ull)

static struct p2p_iommufd *ictx;

/* The iommufd ioctls (p2p_fd_ioctl() on the iommufd fd once it is a file). */
static long io(unsigned long cmd, void *arg)
{
	return p2p_iommufd_ioctl(ictx, cmd, arg);
}

static long destroy(uint32_t id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };

	return io(IOMMU_DESTROY, &d);
}

static long dev_bind(int fd, int iommufd, uint32_t *devid)
{
	struct vfio_device_bind_iommufd b = { .argsz = 16, .iommufd = iommufd };
	long ret = p2p_fd_ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &b);

	if (!ret && devid)
		*devid = b.out_devid;
	return ret;
}

static long attach(int fd, uint32_t *pt_id)
{
	struct vfio_device_attach_iommufd_pt a = { .argsz = 12, .pt_id = *pt_id };
	long ret = p2p_fd_ioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a);

	*pt_id = a.pt_id;
	return ret;
}

static long hwpt_alloc(uint32_t flags, uint32_t dev, uint32_t pt, uint32_t *out)
{
	struct iommu_hwpt_alloc h = { .size = sizeof(h), .flags = flags, .dev_id = dev, .pt_id = pt };
	long ret = io(IOMMU_HWPT_ALLOC, &h);

	if (out)
		*out = h.out_hwpt_id;
	return ret;
}

static long option(uint32_t id, uint16_t op, uint32_t obj, uint64_t *val)
{
	struct iommu_option o = { .size = sizeof(o), .option_id = id, .op = op, .object_id = obj,
				  .val64 = *val };
	long ret = io(IOMMU_OPTION, &o);

	*val = o.val64;
	return ret;
}

static bool cap_sys_resource(void)
{
	char line[256];
	unsigned long long eff = 0;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	if (f)
		fclose(f);
	return eff & (1ull << 24);
}

static void test_iommufd_calls(uint32_t dev, uint32_t ioas, uint32_t *hwpt)
{
	struct iommu_hw_info hi;
	uint8_t data[32];
	uint64_t v;
	uint32_t h2;

	t_section("IOMMU_GET_HW_INFO");
	memset(data, 0xff, sizeof(data));
	hi = (struct iommu_hw_info){ .size = sizeof(hi), .dev_id = dev, .data_len = sizeof(data),
				     .data_uptr = (uintptr_t)data };
	hi.out_capabilities = ~0ull;
	CHECK_OK(io(IOMMU_GET_HW_INFO, &hi));
	CHECK(hi.out_data_type == IOMMU_HW_INFO_TYPE_NONE && hi.data_len == 0);
	CHECK(hi.out_capabilities == 0 && hi.out_max_pasid_log2 == 0);
	CHECK(data[0] == 0 && data[31] == 0);
	hi.dev_id = ioas;
	CHECK_ERR(io(IOMMU_GET_HW_INFO, &hi), -ENOENT);
	hi.dev_id = dev;
	hi.flags = 2;
	CHECK_ERR(io(IOMMU_GET_HW_INFO, &hi), -EOPNOTSUPP);
	hi.flags = 0;
	hi.__reserved[1] = 1;
	CHECK_ERR(io(IOMMU_GET_HW_INFO, &hi), -EOPNOTSUPP);
	hi.size = 16;
	CHECK_ERR(io(IOMMU_GET_HW_INFO, &hi), -EINVAL);

	t_section("IOMMU_OPTION");
	v = 7;
	CHECK_OK(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, &v));
	CHECK(v == 1);
	v = 0;
	CHECK_OK(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v));
	v = 7;
	CHECK_OK(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, &v));
	CHECK(v == 0);
	v = 2;
	CHECK_ERR(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v), -EINVAL);
	v = 1;
	CHECK_OK(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, &v));
	CHECK_ERR(option(IOMMU_OPTION_HUGE_PAGES, 5, ioas, &v), -EOPNOTSUPP);
	CHECK_ERR(option(IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, dev, &v), -ENOENT);
	CHECK_ERR(option(9, IOMMU_OPTION_OP_GET, 0, &v), -EOPNOTSUPP);
	v = 7;
	CHECK_OK(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, &v));
	CHECK(v == 0);
	CHECK_ERR(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, ioas, &v), -EOPNOTSUPP);
	v = 1;
	CHECK_ERR(option(IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, &v),
		  cap_sys_resource() ? -EBUSY : -EPERM); /* objects exist */

	t_section("IOMMU_HWPT_ALLOC");
	{
		struct iommu_hwpt_alloc h = { .size = sizeof(h), .dev_id = dev, .pt_id = ioas,
					      .__reserved = 1 };

		CHECK_ERR(io(IOMMU_HWPT_ALLOC, &h), -EOPNOTSUPP);
		h.__reserved = 0;
		h.data_len = 8;
		CHECK_ERR(io(IOMMU_HWPT_ALLOC, &h), -EINVAL);
		h.data_type = IOMMU_HWPT_DATA_VTD_S1;
		h.data_uptr = (uintptr_t)data;
		CHECK_ERR(io(IOMMU_HWPT_ALLOC, &h), -EOPNOTSUPP);
	}
	CHECK_ERR(hwpt_alloc(0, ioas, ioas, NULL), -ENOENT);
	CHECK_ERR(hwpt_alloc(0, dev, 999, NULL), -EINVAL);
	CHECK_ERR(hwpt_alloc(0, dev, dev, NULL), -EINVAL);
	CHECK_ERR(hwpt_alloc(IOMMU_HWPT_ALLOC_NEST_PARENT, dev, ioas, NULL), -EOPNOTSUPP);
	CHECK_ERR(hwpt_alloc(IOMMU_HWPT_ALLOC_DIRTY_TRACKING, dev, ioas, NULL), -EOPNOTSUPP);
	CHECK_ERR(hwpt_alloc(IOMMU_HWPT_ALLOC_PASID, dev, ioas, NULL), -EOPNOTSUPP);
	CHECK_ERR(hwpt_alloc(IOMMU_HWPT_FAULT_ID_VALID, dev, ioas, NULL), -ENOENT);
	CHECK_ERR(hwpt_alloc(1u << 9, dev, ioas, NULL), -EOPNOTSUPP);
	CHECK_OK(hwpt_alloc(0, dev, ioas, hwpt));
	CHECK(*hwpt != ioas && *hwpt != dev);
	CHECK_ERR(hwpt_alloc(0, dev, *hwpt, NULL), -EOPNOTSUPP); /* nesting */
	CHECK_OK(hwpt_alloc(0, dev, ioas, &h2));
	CHECK_ERR(destroy(ioas), -EBUSY); /* HWPTs hold it */
	CHECK_OK(destroy(h2));
	CHECK_ERR(destroy(h2), -ENOENT);
	CHECK_ERR(destroy(dev), -EBUSY); /* bound */
}

static void test_dma(int gpu, int ce_fd, uint32_t ioas, uint8_t *sys, void *ring, void *compl)
{
	uint8_t buf[sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_dma_buf) +
		    2 * sizeof(struct vfio_region_dma_range)] = { 0 };
	struct vfio_device_feature *f = (void *)buf;
	struct vfio_device_feature_dma_buf *db = (void *)f->data;
	struct iommu_ioas_map m;
	struct iommu_ioas_map_file mf;
	struct ce_fd ce;
	uint8_t *two = NULL;
	int two_fd, one_fd;

	t_section("two-range dma-buf, IOMMU_IOAS_MAP_FILE, copy-engine DMA");
	f->argsz = sizeof(buf);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	db->region_index = 2;
	db->open_flags = O_RDWR | O_CLOEXEC;
	db->nr_ranges = 2;
	db->dma_ranges[0] = (struct vfio_region_dma_range){ .offset = 1 * MiB, .length = 64 * 1024 };
	db->dma_ranges[1] = (struct vfio_region_dma_range){ .offset = 0, .length = 64 * 1024 };
	two_fd = (int)p2p_fd_ioctl(gpu, VFIO_DEVICE_FEATURE, f);
	CHECK(two_fd >= 0);
	CHECK_OK(t_mmap_fd(two_fd, 128 * 1024, MAP_SHARED, 0, (void **)&two));
	db->nr_ranges = 1;
	db->dma_ranges[0] = (struct vfio_region_dma_range){ .offset = 0, .length = 64 * 1024 };
	one_fd = (int)p2p_fd_ioctl(gpu, VFIO_DEVICE_FEATURE, f);
	CHECK(one_fd >= 0);

	m = (struct iommu_ioas_map){ .size = sizeof(m), .ioas_id = ioas,
				     .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
				     .user_va = (uintptr_t)ring, .length = 4096, .iova = IOVA_RING };
	CHECK_OK(io(IOMMU_IOAS_MAP, &m));
	m.flags |= IOMMU_IOAS_MAP_WRITEABLE;
	m.user_va = (uintptr_t)compl;
	m.iova = IOVA_COMPL;
	CHECK_OK(io(IOMMU_IOAS_MAP, &m));
	m.user_va = (uintptr_t)sys;
	m.iova = IOVA_SYS;
	m.length = SYS_SZ;
	CHECK_OK(io(IOMMU_IOAS_MAP, &m));
	mf = (struct iommu_ioas_map_file){
		.size = sizeof(mf), .ioas_id = ioas, .fd = two_fd, .length = 128 * 1024,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.iova = IOVA_BUF,
	};
	CHECK_ERR(io(IOMMU_IOAS_MAP_FILE, &mf), -EOPNOTSUPP); /* 6.19: one range only */
	mf.fd = one_fd;
	mf.length = 64 * 1024;
	CHECK_OK(io(IOMMU_IOAS_MAP_FILE, &mf));

	CHECK(ce_fd_init(&ce, ce_fd, ring, IOVA_RING, compl, IOVA_COMPL) == 0);
	for (size_t i = 0; i < SYS_SZ; i++)
		sys[i] = (uint8_t)(i * 13 + 5);
	if (two) {
		memset(two, 0, 128 * 1024);
		CHECK(ce_fd_copy(&ce, IOVA_SYS, IOVA_BUF + 100, 30000) == P2P_CE_OK);
		/* BAR offset 0 is the second range of the two-range buffer. */
		CHECK(memcmp(two + 64 * 1024 + 100, sys, 30000) == 0);
		CHECK(two[64 * 1024 + 99] == 0 && two[64 * 1024 + 30100] == 0);
	}

	t_section("reset revokes the IOAS area");
	CHECK_OK(p2p_fd_ioctl(gpu, VFIO_DEVICE_RESET, NULL));
	CHECK(ce_fd_copy(&ce, IOVA_SYS, IOVA_BUF, 64) == P2P_CE_REVOKED);
	CHECK(ce_fd_copy(&ce, IOVA_SYS, IOVA_SYS + 32768, 64) == P2P_CE_OK);
	ce_fd_w(ce_fd, P2P_CE_REG_CTRL, 0, 4);
	if (two)
		CHECK_OK(p2p_munmap(two, 128 * 1024));
	CHECK_OK(p2p_close(two_fd));
	CHECK_OK(p2p_close(one_fd));
}

int main(void)
{
	struct p2p_pci_dev_info info;
	struct p2p_pci_dev *gpu, *cepci;
	unsigned int gi, ci;
	uint32_t gdev, cdev, ioas, hwpt, pt, auto_id;
	int gfd, cfd, ifd, pfd[2], grp;
	uint8_t *sys;
	uint16_t v;

	t_begin();
	t_require_uffd();
	t_dev_info(&info, "0000:01:00.0", BAR2_SZ, 0, NULL, 20);
	if (p2p_pci_dev_create(&info, &gpu))
		t_skip("cannot create the GPU function");
	CHECK_OK(p2p_copy_engine_create("0000:02:00.0", NULL, 21, &cepci));
	CHECK_OK(p2p_vfio_register(gpu, &gi));
	CHECK_OK(p2p_vfio_register(cepci, &ci));
	CHECK_OK(p2p_iommufd_open(&ictx));
	ifd = p2p_iommufd_fd(ictx);
	sys = mmap(NULL, SYS_SZ + 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(sys != MAP_FAILED);

	t_section("before VFIO_DEVICE_BIND_IOMMUFD");
	gfd = p2p_vfio_cdev_open_fd(gi, O_RDWR | O_CLOEXEC);
	cfd = p2p_vfio_cdev_open_fd(ci, O_RDWR | O_CLOEXEC);
	CHECK(gfd >= 0 && cfd >= 0 && p2p_fd_is_file(gfd));
	{
		struct vfio_device_info di = { .argsz = sizeof(di) };
		void *va;

		CHECK_ERR(p2p_fd_ioctl(gfd, VFIO_DEVICE_GET_INFO, &di), -EINVAL);
		CHECK_ERR(p2p_fd_pread(gfd, &v, 2, P2P_VFIO_REGION_OFFSET(7)), -EINVAL);
		CHECK_ERR(p2p_fd_mmap(gfd, NULL, 4096, PROT_READ, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), &va), -EINVAL);
		pt = 1;
		CHECK_ERR(attach(gfd, &pt), -EINVAL);
	}
	CHECK(p2p_pci_dev_open_count(gpu) == 0);
	{
		struct vfio_device_bind_iommufd b = { .argsz = 8, .iommufd = ifd };

		CHECK_ERR(p2p_fd_ioctl(gfd, VFIO_DEVICE_BIND_IOMMUFD, &b), -EINVAL);
		b.argsz = 16;
		b.flags = 2;
		CHECK_ERR(p2p_fd_ioctl(gfd, VFIO_DEVICE_BIND_IOMMUFD, &b), -EINVAL);
		b.flags = VFIO_DEVICE_BIND_FLAG_TOKEN;
		CHECK_ERR(p2p_fd_ioctl(gfd, VFIO_DEVICE_BIND_IOMMUFD, &b), -EINVAL); /* argsz */
		{
			uint8_t uuid[16] = { 1 };

			b.argsz = sizeof(b);
			b.token_uuid_ptr = (uintptr_t)uuid;
			CHECK_ERR(p2p_fd_ioctl(gfd, VFIO_DEVICE_BIND_IOMMUFD, &b), -EINVAL);
		}
	}
	CHECK_ERR(dev_bind(gfd, -1, NULL), -EINVAL);
	CHECK_ERR(dev_bind(gfd, 999, NULL), -EBADF);
	CHECK(pipe(pfd) == 0);
	CHECK_ERR(dev_bind(gfd, pfd[0], NULL), -EBADFD);
	close(pfd[0]);
	close(pfd[1]);
	grp = p2p_vfio_group_open_fd(20, O_RDWR | O_CLOEXEC);
	CHECK(grp >= 0);
	CHECK_ERR(dev_bind(gfd, ifd, NULL), -EBUSY); /* the group is open */
	CHECK_OK(p2p_close(grp));
	CHECK(p2p_pci_dev_open_count(gpu) == 0);

	t_section("VFIO_DEVICE_BIND_IOMMUFD");
	CHECK_OK(dev_bind(gfd, ifd, &gdev));
	CHECK_ERR(dev_bind(gfd, ifd, NULL), -EINVAL);
	CHECK_OK(dev_bind(cfd, ifd, &cdev));
	CHECK(gdev != cdev && p2p_pci_dev_open_count(gpu) == 1);
	CHECK_ERR(p2p_vfio_group_open_fd(20, O_RDWR), -EBUSY);
	CHECK(p2p_fd_pread(gfd, &v, 2, P2P_VFIO_REGION_OFFSET(7)) == 2 && v == 0x1b36);
	{
		struct iommu_ioas_alloc a = { .size = sizeof(a) };

		CHECK_OK(io(IOMMU_IOAS_ALLOC, &a));
		ioas = a.out_ioas_id;
	}
	test_iommufd_calls(gdev, ioas, &hwpt);

	t_section("ATTACH / DETACH_IOMMUFD_PT");
	{
		struct vfio_device_attach_iommufd_pt a = { .argsz = 8 };
		struct vfio_device_detach_iommufd_pt d = { .argsz = 4 };

		CHECK_ERR(p2p_fd_ioctl(gfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a), -EINVAL);
		a.argsz = 16;
		a.flags = 2;
		CHECK_ERR(p2p_fd_ioctl(gfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a), -EINVAL);
		a.flags = VFIO_DEVICE_ATTACH_PASID;
		CHECK_ERR(p2p_fd_ioctl(gfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a), -EOPNOTSUPP);
		CHECK_ERR(p2p_fd_ioctl(gfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d), -EINVAL);
	}
	pt = 999;
	CHECK_ERR(attach(gfd, &pt), -ENOENT);
	pt = cdev;
	CHECK_ERR(attach(gfd, &pt), -EINVAL);
	pt = ioas;
	CHECK_OK(attach(gfd, &pt));
	auto_id = pt;
	CHECK(auto_id != ioas && auto_id != hwpt);
	pt = ioas;
	CHECK_OK(attach(cfd, &pt)); /* the same automatic domain */
	CHECK(pt == auto_id);
	CHECK_ERR(destroy(auto_id), -EBUSY);
	pt = hwpt;
	CHECK_OK(attach(gfd, &pt)); /* replace */
	CHECK(pt == hwpt);
	CHECK_ERR(destroy(hwpt), -EBUSY);
	{
		struct vfio_device_detach_iommufd_pt d = { .argsz = sizeof(d) };

		CHECK_OK(p2p_fd_ioctl(gfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d));
		CHECK_OK(p2p_fd_ioctl(gfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d));
	}
	CHECK_OK(destroy(hwpt));
	pt = ioas;
	CHECK_OK(attach(gfd, &pt));
	CHECK(pt == auto_id);

	test_dma(gfd, cfd, ioas, sys, sys + SYS_SZ, sys + SYS_SZ + 4096);

	t_section("release");
	CHECK_OK(p2p_close(cfd));
	CHECK_ERR(destroy(ioas), -EBUSY); /* the GPU is still attached */
	CHECK_OK(p2p_close(gfd));
	CHECK(p2p_pci_dev_open_count(gpu) == 0 && p2p_pci_dev_open_count(cepci) == 0);
	CHECK_ERR(destroy(gdev), -ENOENT);
	CHECK_ERR(destroy(auto_id), -ENOENT); /* went with its last device */
	CHECK_OK(destroy(ioas));
	grp = p2p_vfio_group_open_fd(20, O_RDWR | O_CLOEXEC); /* unblocked */
	CHECK(grp >= 0);
	CHECK_OK(p2p_close(grp));
	/* A context closed while a device is bound lives until the unbind. */
	gfd = p2p_vfio_cdev_open_fd(gi, O_RDWR | O_CLOEXEC);
	CHECK_OK(dev_bind(gfd, ifd, &gdev));
	p2p_iommufd_close(ictx);
	CHECK(p2p_fd_pread(gfd, &v, 2, P2P_VFIO_REGION_OFFSET(7)) == 2);
	CHECK_OK(p2p_close(gfd));

	munmap(sys, SYS_SZ + 8192);
	p2p_vfio_unregister(gpu);
	p2p_vfio_unregister(cepci);
	p2p_pci_dev_put(gpu);
	p2p_pci_dev_put(cepci);
	return t_end();
}
