/* SPDX-License-Identifier: MIT */
/*
 * iommufd context internals shared by src/iommu/ioas.c (IOAS objects, the
 * ioctl framing) and src/iommu/device.c (device and HWPT objects,
 * IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC, IOMMU_OPTION).
 *
 * Object IDs: one ID space per context, as the kernel's xarray: slot i is
 * ID i + 1 and holds either an IOAS (objs[i]) or another object (xobjs[i]).
 *
 * Lock order: ctx->lock, then a device's DMA lock (src/vfio/dma_irq.c),
 * then ioas->lock (see docs/design.md).
 */
#ifndef P2PBUF_IOMMUFD_H
#define P2PBUF_IOMMUFD_H

#include <sys/types.h>

#include <p2pbuf/iommu.h>

#include "../core/core.h"

enum iommufd_obj_type {
	IOMMUFD_OBJ_DEVICE = 1,
	IOMMUFD_OBJ_HWPT_PAGING,
};

/* A non-IOAS object: struct p2p_iommufd_device or struct iommufd_hwpt start with it. */
struct iommufd_xobj {
	enum iommufd_obj_type type;
	uint32_t id;
};

struct p2p_iommufd {
	struct p2p_file *file; /* the context lives as long as its file (bound devices hold it) */
	pthread_mutex_t lock;
	struct p2p_ioas **objs;	      /* index = id - 1 */
	struct iommufd_xobj **xobjs; /* same index space */
	uint32_t nr_objs;
	bool account_mm; /* IOMMU_OPTION_RLIMIT_MODE */
};
/* src/iommu/ioas.c */
int iommufd_slot_alloc_locked(struct p2p_iommufd *ctx, uint32_t *slot);
int iommufd_cmd_copy_in(void *arg, void *cmd, size_t kernel_size, size_t min_size);
int ioas_set_large_pages(struct p2p_ioas *ioas, bool enable);
bool ioas_large_pages(struct p2p_ioas *ioas);

/* src/iommu/device.c */
long iommufd_ext_ioctl(struct p2p_iommufd *ctx, unsigned long req, void *arg);
int iommufd_xobj_destroy(struct p2p_iommufd *ctx, uint32_t id);
void iommufd_ctx_release_xobjs(struct p2p_iommufd *ctx);

#endif
