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

/* PCI config space offsets the emulated functions implement. */
#define P2P_PCI_CFG_SIZE 4096
#define P2P_PCI_CAP_PM 0x40	  /* power management capability */
#define P2P_PCI_CAP_EXP 0x50	  /* PCI Express capability */
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
