// SPDX-License-Identifier: MIT
/*
 * Resets (drivers/vfio/pci/vfio_pci_core.c): VFIO_DEVICE_RESET (a
 * function level reset) and VFIO_DEVICE_PCI_HOT_RESET over a device set,
 * each revoking the function's dma-bufs first and un-revoking them once
 * memory is enabled again (kernel-semantics 1.7).
 *
 * Locking: a reset holds vc->memory_lock for write; a hot reset holds
 * set->lock and takes every member's memory_lock with trylock (-EBUSY,
 * unwound) (vfio_priv.h, pci.h; the order is docs/locking.md's).
 */
#define _GNU_SOURCE
#include "vfio_priv.h"

P2P_API int p2p_vfio_device_reset(struct p2p_vfio_device *vdev)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	int ret, err;

	if (dev->flags & P2P_PCI_NO_FLR)
		return -EINVAL;
	pthread_rwlock_wrlock(&vc->memory_lock);
	/* Series ordering: to D0 first, then revoke (and zap), reset. */
	vc->vconfig.config[P2P_PCI_PM_CTRL] &= ~0x3;
	vc->low_power = false;
	ret = vfio_dmabufs_move(dev, true);
	if (dev->ops && dev->ops->reset)
		dev->ops->reset(dev);
	if (vfio_memory_enabled_locked(dev)) {
		err = vfio_dmabufs_move(dev, false);
		ret = ret ? ret : err;
	}
	pthread_rwlock_unlock(&vc->memory_lock);
	if (dev->ops && dev->ops->reset_done) {
		err = dev->ops->reset_done(dev);
		ret = ret ? ret : err;
	}
	return ret;
}

static bool group_listed(uint32_t group, const int32_t *groups, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++)
		if ((uint32_t)groups[i] == group)
			return true;
	return false;
}

P2P_API int p2p_vfio_device_hot_reset(struct p2p_vfio_device *vdev, const int32_t *groups,
				      uint32_t count)
{
	struct p2p_pci_devset *set = vdev->pdev->set;
	struct p2p_pci_dev *d, *locked_last = NULL;
	int ret = 0, zap_err = 0, err;

	pthread_mutex_lock(&set->lock);
	/* vfio_pci_ioctl_pci_hot_reset(): more groups than the reset affects is EINVAL. */
	if (count) {
		uint32_t ngroups = 0;

		list_for_each_entry(d, &set->devs, set_node) {
			struct p2p_pci_dev *e;
			bool seen = false;

			list_for_each_entry(e, &set->devs, set_node) {
				if (e == d)
					break;
				seen |= e->group == d->group;
			}
			ngroups += !seen;
		}
		if (count > ngroups) {
			ret = -EINVAL;
			goto out;
		}
	}
	/* Ownership: every member of the set must be in the caller's groups. */
	if (count) {
		list_for_each_entry(d, &set->devs, set_node) {
			if (!group_listed(d->group, groups, count)) {
				ret = -EINVAL;
				goto out;
			}
		}
	}
	list_for_each_entry(d, &set->devs, set_node) {
		if (pthread_rwlock_trywrlock(&vfio_pci_core(d)->memory_lock)) {
			ret = -EBUSY;
			break;
		}
		err = vfio_dmabufs_move(d, true);
		zap_err = zap_err ? zap_err : err;
		locked_last = d;
	}
	if (!ret) {
		list_for_each_entry(d, &set->devs, set_node) {
			/* vfio_pci_set_power_state(D0) on every member before pci_reset_bus(). */
			vfio_pci_core(d)->vconfig.config[P2P_PCI_PM_CTRL] &= ~0x3;
			if (d->ops && d->ops->reset)
				d->ops->reset(d);
		}
	}
	/* Reverse walk: un-revoke (success or unwind) and unlock. */
	if (locked_last) {
		for (struct list_head *n = &locked_last->set_node; n != &set->devs; n = n->prev) {
			d = list_entry(n, struct p2p_pci_dev, set_node);
			/* vfio_memory_enabled_locked() checks open_count first. */
			if (vfio_memory_enabled_locked(d)) {
				err = vfio_dmabufs_move(d, false);
				zap_err = zap_err ? zap_err : err;
			}
			pthread_rwlock_unlock(&vfio_pci_core(d)->memory_lock);
		}
	}
out:
	pthread_mutex_unlock(&set->lock);
	/* The caller's function's backend (a remote function is a set of one). */
	if (!ret && vdev->pdev->ops && vdev->pdev->ops->reset_done) {
		err = vdev->pdev->ops->reset_done(vdev->pdev);
		zap_err = zap_err ? zap_err : err;
	}
	return ret ? ret : zap_err;
}

/* VFIO_DEVICE_PCI_HOT_RESET: @cmd holds the framed header (ioctls.c). */
long vfio_ioctl_hot_reset(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	const size_t minsz = offsetof(struct vfio_pci_hot_reset, count) + sizeof(uint32_t);
	struct vfio_pci_hot_reset *hdr = cmd;
	int32_t *groups = NULL;
	long ret;

	if (hdr->flags)
		return -EINVAL;
	if (hdr->count) {
		if (hdr->count > 256 || hdr->argsz < minsz + hdr->count * sizeof(int32_t))
			return -EINVAL;
		groups = malloc(hdr->count * sizeof(*groups));
		if (!groups)
			return -ENOMEM;
		if (copy_from_user(groups, (uint8_t *)arg + minsz, hdr->count * sizeof(*groups))) {
			free(groups);
			return -EFAULT;
		}
	}
	ret = p2p_vfio_device_hot_reset(vdev, groups, hdr->count);
	free(groups);
	return ret;
}
