// SPDX-License-Identifier: MIT
/*
 * The VFIO device ioctls (drivers/vfio/pci/vfio_pci_core.c ioctl side,
 * drivers/vfio/device_cdev.c): one table row per command with its handler
 * and the size of its mandatory part.  The dispatcher does the argsz
 * framing once (vfio_ucmd_in(): copy the mandatory part in, -EINVAL if
 * argsz does not cover it) and handlers see the copied structure; rows
 * with no size frame their own argument (none, or a variable one).
 *
 * Also here: VFIO_DEVICE_FEATURE and its low-power features (1.2), and the
 * cdev ioctls VFIO_DEVICE_BIND_IOMMUFD, ATTACH/DETACH_IOMMUFD_PT.
 *
 * Locking: vdev->lock serializes bind, attach and detach; the features
 * take vc->memory_lock for write (vfio_priv.h; the order is docs/locking.md's).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include "vfio_priv.h"

/* Re-evaluate memory_enabled and move the dma-bufs.  memory_lock held (write). */
static int vfio_sync_dmabufs(struct p2p_pci_dev *dev)
{
	return vfio_dmabufs_move(dev, !vfio_memory_enabled_locked(dev));
}

/* ---------------------------------------------------------------------- */
/* Features, device and region info                                        */

static int feature_low_power(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
			     bool entry)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	int ret = vfio_check_feature(flags, argsz, VFIO_DEVICE_FEATURE_SET, 0), err;

	if (ret != 1)
		return ret;
	pthread_rwlock_wrlock(&vc->memory_lock);
	/* vfio_pci_runtime_pm_entry(): already engaged -> EINVAL (after the revoke). */
	if (entry && vc->low_power)
		ret = -EINVAL;
	else
		ret = 0;
	vc->low_power = entry;
	err = vfio_sync_dmabufs(dev);
	ret = ret ? ret : err;
	pthread_rwlock_unlock(&vc->memory_lock);
	return ret;
}

static long ioctl_feature(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	const uint32_t known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET |
			       VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
	struct vfio_device_feature *f = cmd;
	void *data = (uint8_t *)arg + sizeof(*f);

	if (f->flags & ~known)
		return -EINVAL;
	if (!(f->flags & VFIO_DEVICE_FEATURE_PROBE) && (f->flags & VFIO_DEVICE_FEATURE_SET) &&
	    (f->flags & VFIO_DEVICE_FEATURE_GET))
		return -EINVAL;

	switch (f->flags & VFIO_DEVICE_FEATURE_MASK) {
	case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY:
		return feature_low_power(vdev, f->flags, f->argsz, true);
	case VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:
		return feature_low_power(vdev, f->flags, f->argsz, false);
	case VFIO_DEVICE_FEATURE_DMA_BUF:
		return vfio_feature_dma_buf(vdev, f->flags, f->argsz, data);
	case VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE:
		return vfio_feature_dma_buf_revoke(vdev, f->flags, f->argsz, data);
	case VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR:
		return vfio_feature_dma_buf_memattr(vdev, f->flags, f->argsz, data);
	default:
		/* No migration, logging, VF token or wakeup support: ENOTTY. */
		return -ENOTTY;
	}
}

static long ioctl_get_info(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	const size_t capsz = offsetof(struct vfio_device_info, cap_offset) + sizeof(uint32_t);
	size_t minsz = offsetof(struct vfio_device_info, num_irqs) + sizeof(uint32_t);
	struct vfio_device_info *info = cmd;

	/* As vfio_pci_ioctl_get_info(): cap_offset is written (0, no caps) if argsz has it. */
	if (info->argsz >= capsz) {
		minsz = capsz;
		info->cap_offset = 0;
	}
	info->flags = VFIO_DEVICE_FLAGS_PCI;
	if (!(vdev->pdev->flags & P2P_PCI_NO_FLR))
		info->flags |= VFIO_DEVICE_FLAGS_RESET;
	info->num_regions = VFIO_PCI_NUM_REGIONS;
	info->num_irqs = VFIO_PCI_NUM_IRQS;
	return copy_to_user(arg, info, minsz);
}

static long ioctl_get_region_info(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	const size_t minsz = offsetof(struct vfio_region_info, offset) + sizeof(uint64_t);
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_region_info *info = cmd;

	if (info->index >= VFIO_PCI_NUM_REGIONS)
		return -EINVAL;
	info->offset = P2P_VFIO_REGION_OFFSET(info->index);
	info->flags = 0;
	info->size = 0;
	info->cap_offset = 0;
	if (info->index <= VFIO_PCI_BAR5_REGION_INDEX) {
		const struct p2p_pci_bar_desc *b = &dev->bars[info->index];

		info->size = b->size;
		if (b->size)
			info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
		if (b->size && !(b->flags & (P2P_BAR_IO | P2P_BAR_TRAP)))
			info->flags |= VFIO_REGION_INFO_FLAG_MMAP;
	} else if (info->index == VFIO_PCI_CONFIG_REGION_INDEX) {
		info->size = P2P_PCI_CFG_SIZE;
		info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	} else if (info->index == VFIO_PCI_VGA_REGION_INDEX) {
		return -EINVAL; /* no legacy VGA ranges: !vdev->has_vga */
	}
	return copy_to_user(arg, info, minsz);
}

/* VFIO_DEVICE_RESET takes no argument. */
static long ioctl_reset(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	(void)arg;
	(void)cmd;
	return p2p_vfio_device_reset(vdev);
}


/* ---------------------------------------------------------------------- */
/* The device cdev: BIND_IOMMUFD, ATTACH/DETACH_IOMMUFD_PT (device_cdev.c)  */

static int idev_attach(void *priv, struct p2p_ioas *ioas)
{
	return p2p_vfio_device_attach_ioas(priv, ioas);
}

static void idev_detach(void *priv)
{
	p2p_vfio_device_detach_ioas(priv);
}

static const struct p2p_iommufd_device_ops vfio_idev_ops = {
	.attach = idev_attach,
	.detach = idev_detach,
};

static long ioctl_bind_iommufd(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	const size_t minsz = offsetof(struct vfio_device_bind_iommufd, out_devid) + sizeof(uint32_t);
	struct vfio_device_bind_iommufd *bind = cmd;
	struct p2p_iommufd_device *idev;
	struct p2p_iommufd *ctx;
	uint32_t devid;
	long ret;

	if ((bind->flags & ~(uint32_t)VFIO_DEVICE_BIND_FLAG_TOKEN) || bind->iommufd < 0)
		return -EINVAL;
	if (bind->flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
		uint8_t uuid[16];

		if (bind->argsz < sizeof(*bind))
			return -EINVAL;
		if (copy_from_user(&bind->token_uuid_ptr, (uint8_t *)arg + minsz, sizeof(uint64_t)) ||
		    copy_from_user(uuid, (void *)(uintptr_t)bind->token_uuid_ptr, sizeof(uuid)))
			return -EFAULT;
	}
	/* BIND_IOMMUFD only for cdev fds */
	if (!vdev->cdev)
		return -EINVAL;
	ret = vfio_group_block(vdev->pdev->group);
	if (ret)
		return ret;
	pthread_mutex_lock(&vdev->lock);
	if (vdev->idev) {
		ret = -EINVAL; /* one device cannot be bound twice */
		goto out_unlock;
	}
	ret = p2p_iommufd_from_fd(bind->iommufd, &ctx);
	if (ret)
		goto out_unlock;
	/* vfio_pci_validate_vf_token(): no PF with a VF token, no VF of one. */
	if (bind->flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
		p2p_iommufd_put(ctx);
		ret = -EINVAL;
		goto out_unlock;
	}
	vfio_device_open_device(vdev);
	ret = p2p_iommufd_device_bind(ctx, &vfio_idev_ops, vdev, &idev, &devid);
	p2p_iommufd_put(ctx); /* the binding holds its own */
	if (ret)
		goto out_close;
	ret = copy_to_user((uint8_t *)arg + offsetof(struct vfio_device_bind_iommufd, out_devid),
			   &devid, sizeof(devid));
	if (ret) {
		p2p_iommufd_device_unbind(idev);
		goto out_close;
	}
	vdev->idev = idev;
	atomic_store_explicit(&vdev->access_granted, true, memory_order_release);
	pthread_mutex_unlock(&vdev->lock);
	return 0;

out_close:
	vfio_device_close_device(vdev);
	vdev->opened = false;
out_unlock:
	pthread_mutex_unlock(&vdev->lock);
	vfio_group_unblock(vdev->pdev->group);
	return ret;
}

static long ioctl_attach_pt(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	struct vfio_device_attach_iommufd_pt *attach = cmd;
	long ret;

	if (attach->flags & ~(uint32_t)VFIO_DEVICE_ATTACH_PASID)
		return -EINVAL;
	if (attach->flags & VFIO_DEVICE_ATTACH_PASID)
		return -EOPNOTSUPP; /* the emulated functions have no PASID */
	pthread_mutex_lock(&vdev->lock);
	ret = p2p_iommufd_device_attach(vdev->idev, &attach->pt_id);
	if (!ret && copy_to_user((uint8_t *)arg + offsetof(struct vfio_device_attach_iommufd_pt,
							    pt_id),
				 &attach->pt_id, sizeof(attach->pt_id))) {
		p2p_iommufd_device_detach(vdev->idev);
		ret = -EFAULT;
	}
	pthread_mutex_unlock(&vdev->lock);
	return ret;
}

static long ioctl_detach_pt(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	struct vfio_device_detach_iommufd_pt *detach = cmd;

	(void)arg;
	if (detach->flags & ~(uint32_t)VFIO_DEVICE_DETACH_PASID)
		return -EINVAL;
	if (detach->flags & VFIO_DEVICE_DETACH_PASID)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&vdev->lock);
	p2p_iommufd_device_detach(vdev->idev);
	pthread_mutex_unlock(&vdev->lock);
	return 0;
}


/* ---------------------------------------------------------------------- */
/* The ioctl table                                                         */

/* Big enough for the mandatory part of any command (the kernel's union ucmd_buffer). */
union vfio_device_ucmd {
	uint32_t argsz;
	struct vfio_device_info info;
	struct vfio_region_info region;
	struct vfio_irq_info irq_info;
	struct vfio_irq_set irq_set;
	struct vfio_device_bind_iommufd bind;
	struct vfio_device_attach_iommufd_pt attach;
	struct vfio_device_detach_iommufd_pt detach;
	uint64_t raw[8]; /* struct vfio_device_feature, struct vfio_pci_hot_reset (headers) */
};

enum {
	VFIO_IOCTL_UNBOUND = 1u << 0, /* allowed on a cdev before BIND_IOMMUFD */
	VFIO_IOCTL_CDEV = 1u << 1,    /* cdev only (ENOTTY on a group's device fd) */
};

struct vfio_device_ioctl_op {
	unsigned long cmd;
	long (*fn)(struct p2p_vfio_device *vdev, void *arg, void *cmd);
	uint32_t minsz; /* the mandatory part, framed by the dispatcher; 0: none */
	uint32_t flags;
};

#define DEVICE_OP(_cmd, _fn, _minsz, _flags)                                                    \
	[VFIO_IOCTL_NR(_cmd)] = { .cmd = _cmd, .fn = _fn, .minsz = _minsz, .flags = _flags }

static const struct vfio_device_ioctl_op vfio_device_ioctls[] = {
	DEVICE_OP(VFIO_DEVICE_GET_INFO, ioctl_get_info, VFIO_MINSZ(struct vfio_device_info, num_irqs),
		  0),
	DEVICE_OP(VFIO_DEVICE_GET_REGION_INFO, ioctl_get_region_info,
		  VFIO_MINSZ(struct vfio_region_info, offset), 0),
	DEVICE_OP(VFIO_DEVICE_GET_IRQ_INFO, vfio_ioctl_get_irq_info,
		  VFIO_MINSZ(struct vfio_irq_info, count), 0),
	DEVICE_OP(VFIO_DEVICE_SET_IRQS, vfio_ioctl_set_irqs, VFIO_MINSZ(struct vfio_irq_set, count),
		  0),
	DEVICE_OP(VFIO_DEVICE_RESET, ioctl_reset, 0, 0),
	DEVICE_OP(VFIO_DEVICE_PCI_HOT_RESET, vfio_ioctl_hot_reset,
		  VFIO_MINSZ(struct vfio_pci_hot_reset, count), 0),
	DEVICE_OP(VFIO_DEVICE_FEATURE, ioctl_feature, VFIO_MINSZ(struct vfio_device_feature, flags),
		  0),
	DEVICE_OP(VFIO_DEVICE_BIND_IOMMUFD, ioctl_bind_iommufd,
		  VFIO_MINSZ(struct vfio_device_bind_iommufd, out_devid), VFIO_IOCTL_UNBOUND),
	DEVICE_OP(VFIO_DEVICE_ATTACH_IOMMUFD_PT, ioctl_attach_pt,
		  VFIO_MINSZ(struct vfio_device_attach_iommufd_pt, pt_id), VFIO_IOCTL_CDEV),
	DEVICE_OP(VFIO_DEVICE_DETACH_IOMMUFD_PT, ioctl_detach_pt,
		  VFIO_MINSZ(struct vfio_device_detach_iommufd_pt, flags), VFIO_IOCTL_CDEV),
};

P2P_API long p2p_vfio_device_ioctl(struct p2p_vfio_device *vdev, unsigned long req, void *arg)
{
	const struct vfio_device_ioctl_op *op = NULL;
	union vfio_device_ucmd buf;
	unsigned int nr = VFIO_IOCTL_NR(req);
	int ret;

	if (_IOC_NR(req) >= VFIO_BASE && nr < ARRAY_SIZE(vfio_device_ioctls) &&
	    vfio_device_ioctls[nr].cmd == req)
		op = &vfio_device_ioctls[nr];
	if (!(op && (op->flags & VFIO_IOCTL_UNBOUND)) && !vfio_access_granted(vdev))
		return -EINVAL;
	if (!op || ((op->flags & VFIO_IOCTL_CDEV) && !vdev->cdev))
		return -ENOTTY;
	if (op->minsz) {
		_Static_assert(sizeof(struct vfio_device_feature) <= sizeof(buf) &&
				       sizeof(struct vfio_pci_hot_reset) <= sizeof(buf),
			       "union vfio_device_ucmd too small");
		ret = vfio_ucmd_in(arg, &buf, sizeof(buf), op->minsz);
		if (ret)
			return ret;
	}
	return op->fn(vdev, arg, &buf);
}

P2P_API int p2p_vfio_device_get_dmabuf(struct p2p_vfio_device *vdev, uint32_t bar,
				       const struct vfio_region_dma_range *ranges, uint32_t nr,
				       uint32_t open_flags)
{
	size_t sz = sizeof(struct vfio_device_feature) +
		    sizeof(struct vfio_device_feature_dma_buf) + (size_t)nr * sizeof(*ranges);
	struct vfio_device_feature *f;
	struct vfio_device_feature_dma_buf *db;
	long ret;

	if (nr > (1u << 20))
		return -EINVAL;
	f = calloc(1, sz);
	if (!f)
		return -ENOMEM;
	f->argsz = (uint32_t)sz;
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	db = (void *)f->data;
	db->region_index = bar;
	db->open_flags = open_flags;
	db->nr_ranges = nr;
	if (nr)
		memcpy(db->dma_ranges, ranges, nr * sizeof(*ranges));
	ret = p2p_vfio_device_ioctl(vdev, VFIO_DEVICE_FEATURE, f);
	free(f);
	return (int)ret;
}
