/* SPDX-License-Identifier: MIT */
/*
 * Kernel uAPI definitions p2pbuf reproduces, with the kernel's layouts.
 *
 * The base VFIO structures come from <linux/vfio.h>; what newer kernels (or
 * unmerged series) add is defined here under the kernel's own names, guarded
 * so that a newer system header wins.  Layouts are checked with
 * static_assert in the library.
 */
#ifndef P2PBUF_UAPI_H
#define P2PBUF_UAPI_H

#include <stdint.h>
#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/vfio.h>

#ifndef VFIO_DEVICE_FEATURE_DMA_BUF
#define VFIO_DEVICE_FEATURE_DMA_BUF 11

/** struct vfio_region_dma_range - one range of a BAR, 16 bytes */
struct vfio_region_dma_range {
	__u64 offset;
	__u64 length;
};

/** struct vfio_device_feature_dma_buf - payload of feature 11 (GET), 16 + 16 * n bytes */
struct vfio_device_feature_dma_buf {
	__u32 region_index;
	__u32 open_flags;
	__u32 flags;
	__u32 nr_ranges;
	struct vfio_region_dma_range dma_ranges[];
};
#endif

#ifndef VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE
/* Matt Evans' series, v3/v4 numbering (kernel-semantics 3.4). */
#define VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE 13
struct vfio_device_feature_dma_buf_revoke {
	__s32 dmabuf_fd;
};
#endif

#ifndef VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR
#define VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR 14
#define VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_NC 0
#define VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC 1
struct vfio_device_feature_dma_buf_memattr {
	__s32 dmabuf_fd;
	__u32 memattr;
};
#endif

/*
 * iommufd (include/uapi/linux/iommufd.h, v6.19): the commands p2pbuf's IO
 * address spaces implement.  Every struct starts with its size; a smaller
 * size than the command's minimum is EINVAL, a larger one with non-zero
 * trailing bytes E2BIG.
 */
#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE (';')
enum {
	IOMMUFD_CMD_BASE = 0x80,
	IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE,
	IOMMUFD_CMD_IOAS_ALLOC = 0x81,
	IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82,
	IOMMUFD_CMD_IOAS_COPY = 0x83,
	IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84,
	IOMMUFD_CMD_IOAS_MAP = 0x85,
	IOMMUFD_CMD_IOAS_UNMAP = 0x86,
	IOMMUFD_CMD_IOAS_MAP_FILE = 0x8f,
};

struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

struct iommu_iova_range {
	__aligned_u64 start;
	__aligned_u64 last;
};

struct iommu_ioas_iova_ranges {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas;
	__aligned_u64 out_iova_alignment;
};
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES)

struct iommu_ioas_allow_iovas {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas;
};
#define IOMMU_IOAS_ALLOW_IOVAS _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS)

enum iommufd_ioas_map_flags {
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
	IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
	IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

struct iommu_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

struct iommu_ioas_map_file {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__s32 fd;
	__aligned_u64 start;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_FILE)

struct iommu_ioas_copy {
	__u32 size;
	__u32 flags;
	__u32 dst_ioas_id;
	__u32 src_ioas_id;
	__aligned_u64 length;
	__aligned_u64 dst_iova;
	__aligned_u64 src_iova;
};
#define IOMMU_IOAS_COPY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY)

struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)
#endif

/*
 * VFIO device cdev (include/uapi/linux/vfio.h, v6.19): /dev/vfio/devices/vfioN
 * is bound to an iommufd, then attached to an IOAS or a HWPT.
 */
#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_BIND_FLAG_TOKEN (1 << 0)
	__s32 iommufd;
	__u32 out_devid;
	__aligned_u64 token_uuid_ptr;
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)

struct vfio_device_attach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_ATTACH_PASID (1 << 0)
	__u32 pt_id;
	__u32 pasid;
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)

struct vfio_device_detach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_DETACH_PASID (1 << 0)
	__u32 pasid;
};
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)
#endif

/*
 * iommufd commands a VMM makes at start-up (include/uapi/linux/iommufd.h,
 * v6.19): options, hardware info, paging HWPTs.
 */
#ifndef IOMMU_OPTION
#define IOMMUFD_CMD_OPTION 0x87
#define IOMMUFD_CMD_HWPT_ALLOC 0x89
#define IOMMUFD_CMD_GET_HW_INFO 0x8a

enum iommufd_option {
	IOMMU_OPTION_RLIMIT_MODE = 0,
	IOMMU_OPTION_HUGE_PAGES = 1,
};

enum iommufd_option_ops {
	IOMMU_OPTION_OP_SET = 0,
	IOMMU_OPTION_OP_GET = 1,
};

struct iommu_option {
	__u32 size;
	__u32 option_id;
	__u16 op;
	__u16 __reserved;
	__u32 object_id;
	__aligned_u64 val64;
};
#define IOMMU_OPTION _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION)

enum iommufd_hwpt_alloc_flags {
	IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0,
	IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1,
	IOMMU_HWPT_FAULT_ID_VALID = 1 << 2,
	IOMMU_HWPT_ALLOC_PASID = 1 << 3,
};

enum iommu_hwpt_data_type {
	IOMMU_HWPT_DATA_NONE = 0,
	IOMMU_HWPT_DATA_VTD_S1 = 1,
	IOMMU_HWPT_DATA_ARM_SMMUV3 = 2,
};

struct iommu_hwpt_alloc {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 pt_id;
	__u32 out_hwpt_id;
	__u32 __reserved;
	__u32 data_type;
	__u32 data_len;
	__aligned_u64 data_uptr;
	__u32 fault_id;
	__u32 __reserved2;
};
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)

enum iommu_hw_info_type {
	IOMMU_HW_INFO_TYPE_NONE = 0,
	IOMMU_HW_INFO_TYPE_DEFAULT = 0,
	IOMMU_HW_INFO_TYPE_INTEL_VTD = 1,
	IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2,
	IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3,
};

enum iommufd_hw_capabilities {
	IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0,
	IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1,
	IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2,
};

enum iommufd_hw_info_flags {
	IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0,
};

struct iommu_hw_info {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 data_len;
	__aligned_u64 data_uptr;
	union {
		__u32 in_data_type;
		__u32 out_data_type;
	};
	__u8 out_max_pasid_log2;
	__u8 __reserved[3];
	__aligned_u64 out_capabilities;
};
#define IOMMU_GET_HW_INFO _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO)
#endif

/* PCI config space offsets the emulated functions implement. */
#define P2P_PCI_CFG_SIZE 4096
#define P2P_PCI_CAP_PM 0x40	  /* power management capability */
#define P2P_PCI_CAP_EXP 0x50	  /* PCI Express capability */
#define P2P_PCI_CAP_MSI 0x90	  /* MSI capability (64-bit, 8 vectors, no masking) */
#define P2P_PCI_PM_CTRL (P2P_PCI_CAP_PM + 4)
#define P2P_PCI_EXP_DEVCAP (P2P_PCI_CAP_EXP + 4)
#define P2P_PCI_EXP_DEVCTL (P2P_PCI_CAP_EXP + 8)
#define P2P_PCI_EXP_DEVCTL_BCR_FLR 0x8000
#define P2P_PCI_EXP_DEVCAP_FLR 0x10000000

/** VFIO region offset of region @index (vfio-pci's index << 40). */
#define P2P_VFIO_REGION_OFFSET(index) ((uint64_t)(index) << 40)
#define P2P_VFIO_OFFSET_TO_INDEX(off) ((uint64_t)(off) >> 40)
#define P2P_VFIO_OFFSET_MASK ((1ull << 40) - 1)

#endif
