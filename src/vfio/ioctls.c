// SPDX-License-Identifier: MIT
/*
 * The VFIO device layer: open/close, the device fd, region access at
 * index << 40 offsets, config space emulation with the revoke triggers of
 * kernel-semantics 1.7, VFIO_DEVICE_FEATURE (1.2), VFIO_DEVICE_RESET and
 * VFIO_DEVICE_PCI_HOT_RESET, and BAR mmap through dma-bufs (3.1).
 *
 * Lock order: set->lock, then dev->open_lock, then dev->memory_lock (rw),
 * then dma-buf resv and the core's locks.  Every revoke trigger holds
 * memory_lock for write; BAR reads and writes hold it for read.  The
 * exporter's walks over a function's dma-bufs need no references
 * (src/vfio/dmabuf.c).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../pci/pci.h"

static const struct p2p_file_ops vfio_device_fops;

/* Re-evaluate memory_enabled and move the dma-bufs.  memory_lock held (write). */
static int vfio_sync_dmabufs(struct p2p_pci_dev *dev)
{
	return vfio_dmabufs_move(dev, !pci_memory_enabled_locked(dev));
}

/*
 * A device file: the file holds one reference on @vdev (dropped at its
 * release), BAR mmaps hold theirs.  The function is not opened yet
 * (vfio_device_open_device()).  On success vdev->file carries the
 * creator's file reference.
 */
int vfio_device_create(struct p2p_pci_dev *dev, bool cdev, int oflags,
		       struct p2p_vfio_device **out)
{
	struct p2p_vfio_device *vdev;
	int ret;

	if (!kref_get_unless_zero(&dev->ref))
		return -ENODEV;
	vdev = calloc(1, sizeof(*vdev));
	if (!vdev) {
		ret = -ENOMEM;
		goto err_put;
	}
	kref_init(&vdev->ref);
	vdev->pdev = dev;
	vdev->cdev = cdev;
	pthread_mutex_init(&vdev->lock, NULL);
	ret = p2p_file_create(&vfio_device_fops, vdev, dev->name, oflags, &vdev->file);
	if (ret)
		goto err_free;
	*out = vdev;
	return 0;

err_free:
	pthread_mutex_destroy(&vdev->lock);
	free(vdev);
err_put:
	p2p_pci_dev_put(dev);
	return ret;
}

/* open_device: the first open creates the virtual config space. */
void vfio_device_open_device(struct p2p_vfio_device *vdev)
{
	struct p2p_pci_dev *dev = vdev->pdev;

	pthread_mutex_lock(&dev->open_lock);
	pthread_rwlock_wrlock(&dev->memory_lock);
	if (!dev->open_count++)
		pci_config_reset(dev);
	pthread_rwlock_unlock(&dev->memory_lock);
	pthread_mutex_unlock(&dev->open_lock);
	vdev->opened = true;
}

/* close_device: the last close revokes every dma-buf for good (1.6). */
static void vfio_device_close_device(struct p2p_vfio_device *vdev)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	bool closing;

	pthread_mutex_lock(&dev->open_lock);
	pthread_rwlock_wrlock(&dev->memory_lock);
	closing = !--dev->open_count;
	if (closing) {
		vfio_dmabufs_cleanup(dev);
		dev->low_power = false;
	}
	pthread_rwlock_unlock(&dev->memory_lock);
	if (closing)
		pci_dma_irq_close(dev);
	pthread_mutex_unlock(&dev->open_lock);
}

P2P_API int p2p_vfio_device_open(struct p2p_pci_dev *dev, struct p2p_vfio_device **out)
{
	struct p2p_vfio_device *vdev;
	int ret = vfio_device_create(dev, false, O_RDWR, &vdev);

	if (ret)
		return ret;
	vfio_device_open_device(vdev);
	*out = vdev;
	return 0;
}

void vfio_device_file_put(struct p2p_vfio_device *vdev)
{
	struct p2p_pci_dev *dev = vdev->pdev;

	if (!kref_put(&vdev->ref))
		return;
	/* vfio_device_fops_release(): unbind (cdev), close, leave the group. */
	if (vdev->idev) {
		p2p_iommufd_device_unbind(vdev->idev);
		vfio_group_unblock(dev->group);
	}
	if (vdev->opened)
		vfio_device_close_device(vdev);
	if (vdev->group)
		vfio_group_device_closed(vdev->group);
	pthread_mutex_destroy(&vdev->lock);
	free(vdev);
	p2p_pci_dev_put(dev);
}

P2P_API void p2p_vfio_device_close(struct p2p_vfio_device *vdev)
{
	if (vdev)
		p2p_file_put(vdev->file); /* the native handle's file reference */
}

P2P_API int p2p_vfio_device_fd(const struct p2p_vfio_device *vdev)
{
	return p2p_file_fd(vdev->file);
}

P2P_API struct p2p_pci_dev *p2p_vfio_device_pci(const struct p2p_vfio_device *vdev)
{
	return vdev->pdev;
}

P2P_API struct p2p_vfio_device *p2p_vfio_device_from_fd(int fd)
{
	struct p2p_vfio_device *vdev;
	struct p2p_file *f;

	if (p2p_file_from_fd(fd, &vfio_device_fops, &f))
		return NULL;
	vdev = p2p_file_priv(f); /* borrowed: the caller's fd keeps the file */
	p2p_file_put(f);
	return vdev;
}

/* ---------------------------------------------------------------------- */
/* Config space                                                            */

static bool range_hits(unsigned int off, unsigned int size, unsigned int reg,
		       unsigned int reg_size)
{
	return off < reg + reg_size && reg < off + size;
}

/* One naturally aligned 1/2/4-byte config write, with its side effects. */
static int config_write_locked(struct p2p_pci_dev *dev, unsigned int off, unsigned int size,
			       uint32_t val)
{
	bool flr = false;
	int ret = 0, err;

	if (range_hits(off, size, P2P_PCI_EXP_DEVCTL + 1, 1)) {
		uint8_t hi = (uint8_t)(val >> (8 * (P2P_PCI_EXP_DEVCTL + 1 - off)));

		flr = (hi & (P2P_PCI_EXP_DEVCTL_BCR_FLR >> 8)) && !(dev->flags & P2P_PCI_NO_FLR);
	}

	/*
	 * COMMAND.MEM clear, D3hot: revoke *before* the new value reaches the
	 * device.  Work out what the write would do on a copy first.
	 */
	if (range_hits(off, size, 0x04, 2) || range_hits(off, size, P2P_PCI_PM_CTRL, 2)) {
		uint8_t cmd = dev->config[0x04], pm = dev->config[P2P_PCI_PM_CTRL];

		pci_config_set(dev, off, size, val);
		bool enabled_after = pci_memory_enabled_locked(dev);

		dev->config[0x04] = cmd;
		dev->config[P2P_PCI_PM_CTRL] = pm;
		if (!enabled_after)
			ret = vfio_dmabufs_move(dev, true);
	}
	pci_config_set(dev, off, size, val);

	if (flr) {
		/* FLR from DEVCTL: revoke, reset, un-revoke if memory is enabled. */
		err = vfio_dmabufs_move(dev, true);
		ret = ret ? ret : err;
		if (dev->ops && dev->ops->reset)
			dev->ops->reset(dev);
	}
	/* MEM set / D0 / reset done: un-revoke only if memory is now enabled. */
	if (pci_memory_enabled_locked(dev)) {
		err = vfio_dmabufs_move(dev, false);
		ret = ret ? ret : err;
	}
	/*
	 * The write reached the device either way; an error says a CPU
	 * mapping could not be revoked (or restored) and is retried later.
	 */
	return ret;
}

static int config_access(struct p2p_vfio_device *vdev, uint8_t *buf, size_t len, uint64_t off,
			 bool write)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	size_t done = 0;
	int err = 0;

	/* vfio_config_do_rw(): outside the config space is -EFAULT. */
	if (off >= P2P_PCI_CFG_SIZE || len > P2P_PCI_CFG_SIZE - off)
		return -EFAULT;
	if (write)
		pthread_rwlock_wrlock(&dev->memory_lock);
	else
		pthread_rwlock_rdlock(&dev->memory_lock);
	while (done < len) {
		unsigned int o = (unsigned int)(off + done);
		unsigned int sz = (o % 4 == 0 && len - done >= 4) ? 4
				  : (o % 2 == 0 && len - done >= 2) ? 2 : 1;
		uint32_t v = 0;

		if (write) {
			memcpy(&v, buf + done, sz);
			int e = config_write_locked(dev, o, sz, v);

			err = err ? err : e;
		} else {
			v = pci_config_get(dev, o, sz);
			memcpy(buf + done, &v, sz);
		}
		done += sz;
	}
	pthread_rwlock_unlock(&dev->memory_lock);
	/* Written, but a CPU mapping could not be revoked: say so. */
	return err ? err : (int)len;
}

P2P_API int p2p_vfio_config_read(struct p2p_vfio_device *vdev, unsigned int off,
				 unsigned int size, uint32_t *val)
{
	int ret;

	if ((size != 1 && size != 2 && size != 4) || off % size)
		return -EINVAL;
	*val = 0;
	ret = config_access(vdev, (uint8_t *)val, size, off, false);
	return ret < 0 ? ret : 0;
}

P2P_API int p2p_vfio_config_write(struct p2p_vfio_device *vdev, unsigned int off,
				  unsigned int size, uint32_t val)
{
	int ret;

	if ((size != 1 && size != 2 && size != 4) || off % size)
		return -EINVAL;
	ret = config_access(vdev, (uint8_t *)&val, size, off, true);
	return ret < 0 ? ret : 0;
}

/* ---------------------------------------------------------------------- */
/* Regions                                                                 */

static ssize_t region_rw(struct p2p_vfio_device *vdev, void *buf, size_t len, uint64_t offset,
			 bool write)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	uint64_t index = P2P_VFIO_OFFSET_TO_INDEX(offset), off = offset & P2P_VFIO_OFFSET_MASK;
	const struct p2p_pci_bar_desc *b;
	ssize_t ret;

	if (index == VFIO_PCI_CONFIG_REGION_INDEX)
		return config_access(vdev, buf, len, off, write);
	if (index >= VFIO_PCI_ROM_REGION_INDEX)
		return -EINVAL;
	b = &dev->bars[index];
	if (!b->size || off >= b->size)
		return -EINVAL;
	/* vfio_pci_bar_rw(): an access running past the end is cut short there. */
	len = MIN(len, b->size - off);
	pthread_rwlock_rdlock(&dev->memory_lock);
	if (!(b->flags & P2P_BAR_IO) && !pci_memory_enabled_locked(dev)) {
		ret = -EIO;
	} else if (b->flags & P2P_BAR_TRAP) {
		ret = dev->ops && dev->ops->bar_rw
			      ? dev->ops->bar_rw(dev, (int)index, off, buf, len, write)
			      : -EINVAL;
		if (!ret)
			ret = (ssize_t)len;
	} else {
		uint8_t *p = p2p_mem_ptr(dev->bar_mem[index], off);

		if (write)
			memcpy(p, buf, len);
		else
			memcpy(buf, p, len);
		ret = (ssize_t)len;
	}
	pthread_rwlock_unlock(&dev->memory_lock);
	return ret;
}

P2P_API ssize_t p2p_vfio_device_pread(struct p2p_vfio_device *vdev, void *buf, size_t len,
				      uint64_t offset)
{
	return region_rw(vdev, buf, len, offset, false);
}

P2P_API ssize_t p2p_vfio_device_pwrite(struct p2p_vfio_device *vdev, const void *buf,
				       size_t len, uint64_t offset)
{
	return region_rw(vdev, (void *)buf, len, offset, true);
}

P2P_API int p2p_vfio_device_mmap(struct p2p_vfio_device *vdev, void *addr, size_t length,
				 int prot, int flags, uint64_t offset, void **out)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	uint64_t index = P2P_VFIO_OFFSET_TO_INDEX(offset), off = offset & P2P_VFIO_OFFSET_MASK;
	const struct p2p_pci_bar_desc *b;
	struct p2p_dmabuf *buf;
	uint64_t len;
	int ret;

	if (index >= VFIO_PCI_ROM_REGION_INDEX || !length)
		return -EINVAL;
	b = &dev->bars[index];
	if (!b->size || (b->flags & (P2P_BAR_IO | P2P_BAR_TRAP)))
		return -EINVAL;
	if (!(flags & MAP_SHARED) || !IS_ALIGNED(off, P2P_PAGE_SIZE) || length > b->size)
		return -EINVAL;
	len = ALIGN_UP((uint64_t)length, P2P_PAGE_SIZE);
	if (off >= b->size || len > b->size - off)
		return -EINVAL;
	ret = vfio_bar_dmabuf_create(vdev, (int)index, off, len, &buf);
	/*
	 * The internal dma-buf needs an fd (its token), mmap(2) needs none:
	 * at the fd limit say ENOMEM, as mmap does when it cannot allocate.
	 */
	if (ret == -EMFILE || ret == -ENFILE)
		ret = -ENOMEM;
	if (ret)
		return ret;
	/* vm_pgoff stays exactly as passed: the tag keeps the region index bits. */
	ret = cpumap_create(buf, addr, len, prot, flags, 0, offset, out);
	p2p_dmabuf_put(buf);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Reset                                                                   */

P2P_API int p2p_vfio_device_reset(struct p2p_vfio_device *vdev)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	int ret, err;

	if (dev->flags & P2P_PCI_NO_FLR)
		return -EINVAL;
	pthread_rwlock_wrlock(&dev->memory_lock);
	/* Series ordering: to D0 first, then revoke (and zap), reset. */
	dev->config[P2P_PCI_PM_CTRL] &= ~0x3;
	dev->low_power = false;
	ret = vfio_dmabufs_move(dev, true);
	if (dev->ops && dev->ops->reset)
		dev->ops->reset(dev);
	if (pci_memory_enabled_locked(dev)) {
		err = vfio_dmabufs_move(dev, false);
		ret = ret ? ret : err;
	}
	pthread_rwlock_unlock(&dev->memory_lock);
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
		if (pthread_rwlock_trywrlock(&d->memory_lock)) {
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
			d->config[P2P_PCI_PM_CTRL] &= ~0x3;
			if (d->ops && d->ops->reset)
				d->ops->reset(d);
		}
	}
	/* Reverse walk: un-revoke (success or unwind) and unlock. */
	if (locked_last) {
		for (struct list_head *n = &locked_last->set_node; n != &set->devs; n = n->prev) {
			d = list_entry(n, struct p2p_pci_dev, set_node);
			/* pci_memory_enabled_locked() checks open_count first. */
			if (pci_memory_enabled_locked(d)) {
				err = vfio_dmabufs_move(d, false);
				zap_err = zap_err ? zap_err : err;
			}
			pthread_rwlock_unlock(&d->memory_lock);
		}
	}
out:
	pthread_mutex_unlock(&set->lock);
	return ret ? ret : zap_err;
}

/* ---------------------------------------------------------------------- */
/* ioctl                                                                   */

static int feature_low_power(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
			     bool entry)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	int ret = vfio_check_feature(flags, argsz, VFIO_DEVICE_FEATURE_SET, 0), err;

	if (ret != 1)
		return ret;
	pthread_rwlock_wrlock(&dev->memory_lock);
	/* vfio_pci_runtime_pm_entry(): already engaged -> EINVAL (after the revoke). */
	if (entry && dev->low_power)
		ret = -EINVAL;
	else
		ret = 0;
	dev->low_power = entry;
	err = vfio_sync_dmabufs(dev);
	ret = ret ? ret : err;
	pthread_rwlock_unlock(&dev->memory_lock);
	return ret;
}

static long ioctl_feature(struct p2p_vfio_device *vdev, void *arg)
{
	const uint32_t known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET |
			       VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
	struct vfio_device_feature f;
	void *data = (uint8_t *)arg + sizeof(f);

	if (copy_from_user(&f, arg, sizeof(f)))
		return -EFAULT;
	if (f.argsz < sizeof(f))
		return -EINVAL;
	if (f.flags & ~known)
		return -EINVAL;
	if (!(f.flags & VFIO_DEVICE_FEATURE_PROBE) && (f.flags & VFIO_DEVICE_FEATURE_SET) &&
	    (f.flags & VFIO_DEVICE_FEATURE_GET))
		return -EINVAL;

	switch (f.flags & VFIO_DEVICE_FEATURE_MASK) {
	case VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY:
		return feature_low_power(vdev, f.flags, f.argsz, true);
	case VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:
		return feature_low_power(vdev, f.flags, f.argsz, false);
	case VFIO_DEVICE_FEATURE_DMA_BUF:
		return vfio_feature_dma_buf(vdev, f.flags, f.argsz, data);
	case VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE:
		return vfio_feature_dma_buf_revoke(vdev, f.flags, f.argsz, data);
	case VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR:
		return vfio_feature_dma_buf_memattr(vdev, f.flags, f.argsz, data);
	default:
		/* No migration, logging, VF token or wakeup support: ENOTTY. */
		return -ENOTTY;
	}
}

static long ioctl_get_info(struct p2p_vfio_device *vdev, void *arg)
{
	const size_t capsz = offsetof(struct vfio_device_info, cap_offset) + sizeof(uint32_t);
	size_t minsz = offsetof(struct vfio_device_info, num_irqs) + sizeof(uint32_t);
	struct vfio_device_info info;

	if (copy_from_user(&info, arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;
	/* As vfio_pci_ioctl_get_info(): cap_offset is written (0, no caps) if argsz has it. */
	if (info.argsz >= capsz) {
		minsz = capsz;
		info.cap_offset = 0;
	}
	info.flags = VFIO_DEVICE_FLAGS_PCI;
	if (!(vdev->pdev->flags & P2P_PCI_NO_FLR))
		info.flags |= VFIO_DEVICE_FLAGS_RESET;
	info.num_regions = VFIO_PCI_NUM_REGIONS;
	info.num_irqs = VFIO_PCI_NUM_IRQS;
	return copy_to_user(arg, &info, minsz);
}

static long ioctl_get_region_info(struct p2p_vfio_device *vdev, void *arg)
{
	const size_t minsz = offsetof(struct vfio_region_info, offset) + sizeof(uint64_t);
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_region_info info;

	if (copy_from_user(&info, arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;
	if (info.index >= VFIO_PCI_NUM_REGIONS)
		return -EINVAL;
	info.offset = P2P_VFIO_REGION_OFFSET(info.index);
	info.flags = 0;
	info.size = 0;
	info.cap_offset = 0;
	if (info.index <= VFIO_PCI_BAR5_REGION_INDEX) {
		const struct p2p_pci_bar_desc *b = &dev->bars[info.index];

		info.size = b->size;
		if (b->size)
			info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
		if (b->size && !(b->flags & (P2P_BAR_IO | P2P_BAR_TRAP)))
			info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
	} else if (info.index == VFIO_PCI_CONFIG_REGION_INDEX) {
		info.size = P2P_PCI_CFG_SIZE;
		info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	} else if (info.index == VFIO_PCI_VGA_REGION_INDEX) {
		return -EINVAL; /* no legacy VGA ranges: !vdev->has_vga */
	}
	return copy_to_user(arg, &info, minsz);
}

static long ioctl_hot_reset(struct p2p_vfio_device *vdev, void *arg)
{
	const size_t minsz = offsetof(struct vfio_pci_hot_reset, count) + sizeof(uint32_t);
	struct vfio_pci_hot_reset hdr;
	int32_t *groups = NULL;
	long ret;

	if (copy_from_user(&hdr, arg, minsz))
		return -EFAULT;
	if (hdr.argsz < minsz || hdr.flags)
		return -EINVAL;
	if (hdr.count) {
		if (hdr.count > 256 || hdr.argsz < minsz + hdr.count * sizeof(int32_t))
			return -EINVAL;
		groups = malloc(hdr.count * sizeof(*groups));
		if (!groups)
			return -ENOMEM;
		if (copy_from_user(groups, (uint8_t *)arg + minsz, hdr.count * sizeof(*groups))) {
			free(groups);
			return -EFAULT;
		}
	}
	ret = p2p_vfio_device_hot_reset(vdev, groups, hdr.count);
	free(groups);
	return ret;
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

/* Device access is blocked on a cdev until BIND_IOMMUFD opened the device. */
static bool access_granted(struct p2p_vfio_device *vdev)
{
	return !vdev->cdev || atomic_load_explicit(&vdev->access_granted, memory_order_acquire);
}

static long ioctl_bind_iommufd(struct p2p_vfio_device *vdev, void *arg)
{
	const size_t minsz = offsetof(struct vfio_device_bind_iommufd, out_devid) + sizeof(uint32_t);
	struct p2p_iommufd_device *idev;
	struct vfio_device_bind_iommufd bind;
	struct p2p_iommufd *ctx;
	uint32_t devid;
	long ret;

	if (copy_from_user(&bind, arg, minsz))
		return -EFAULT;
	if (bind.argsz < minsz || (bind.flags & ~(uint32_t)VFIO_DEVICE_BIND_FLAG_TOKEN) ||
	    bind.iommufd < 0)
		return -EINVAL;
	if (bind.flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
		uint8_t uuid[16];

		if (bind.argsz < sizeof(bind))
			return -EINVAL;
		if (copy_from_user(&bind.token_uuid_ptr, (uint8_t *)arg + minsz, sizeof(uint64_t)) ||
		    copy_from_user(uuid, (void *)(uintptr_t)bind.token_uuid_ptr, sizeof(uuid)))
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
	ret = p2p_iommufd_from_fd(bind.iommufd, &ctx);
	if (ret)
		goto out_unlock;
	/* vfio_pci_validate_vf_token(): no PF with a VF token, no VF of one. */
	if (bind.flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
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

static long ioctl_attach_pt(struct p2p_vfio_device *vdev, void *arg)
{
	const size_t minsz = offsetof(struct vfio_device_attach_iommufd_pt, pt_id) +
			     sizeof(uint32_t);
	struct vfio_device_attach_iommufd_pt attach;
	long ret;

	if (copy_from_user(&attach, arg, minsz))
		return -EFAULT;
	if (attach.argsz < minsz || (attach.flags & ~(uint32_t)VFIO_DEVICE_ATTACH_PASID))
		return -EINVAL;
	if (attach.flags & VFIO_DEVICE_ATTACH_PASID)
		return -EOPNOTSUPP; /* the emulated functions have no PASID */
	pthread_mutex_lock(&vdev->lock);
	ret = p2p_iommufd_device_attach(vdev->idev, &attach.pt_id);
	if (!ret && copy_to_user((uint8_t *)arg + offsetof(struct vfio_device_attach_iommufd_pt,
							    pt_id),
				 &attach.pt_id, sizeof(attach.pt_id))) {
		p2p_iommufd_device_detach(vdev->idev);
		ret = -EFAULT;
	}
	pthread_mutex_unlock(&vdev->lock);
	return ret;
}

static long ioctl_detach_pt(struct p2p_vfio_device *vdev, void *arg)
{
	const size_t minsz = offsetof(struct vfio_device_detach_iommufd_pt, flags) +
			     sizeof(uint32_t);
	struct vfio_device_detach_iommufd_pt detach;

	if (copy_from_user(&detach, arg, minsz))
		return -EFAULT;
	if (detach.argsz < minsz || (detach.flags & ~(uint32_t)VFIO_DEVICE_DETACH_PASID))
		return -EINVAL;
	if (detach.flags & VFIO_DEVICE_DETACH_PASID)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&vdev->lock);
	p2p_iommufd_device_detach(vdev->idev);
	pthread_mutex_unlock(&vdev->lock);
	return 0;
}

P2P_API long p2p_vfio_device_ioctl(struct p2p_vfio_device *vdev, unsigned long req, void *arg)
{
	if (req == VFIO_DEVICE_BIND_IOMMUFD)
		return ioctl_bind_iommufd(vdev, arg);
	if (!access_granted(vdev))
		return -EINVAL;
	/* cdev only ioctls */
	if (vdev->cdev && req == VFIO_DEVICE_ATTACH_IOMMUFD_PT)
		return ioctl_attach_pt(vdev, arg);
	if (vdev->cdev && req == VFIO_DEVICE_DETACH_IOMMUFD_PT)
		return ioctl_detach_pt(vdev, arg);

	switch (req) {
	case VFIO_DEVICE_GET_INFO:
		return ioctl_get_info(vdev, arg);
	case VFIO_DEVICE_GET_REGION_INFO:
		return ioctl_get_region_info(vdev, arg);
	case VFIO_DEVICE_FEATURE:
		return ioctl_feature(vdev, arg);
	case VFIO_DEVICE_RESET:
		return p2p_vfio_device_reset(vdev);
	case VFIO_DEVICE_PCI_HOT_RESET:
		return ioctl_hot_reset(vdev, arg);
	case VFIO_DEVICE_GET_IRQ_INFO:
		return vfio_ioctl_get_irq_info(vdev, arg);
	case VFIO_DEVICE_SET_IRQS:
		return vfio_ioctl_set_irqs(vdev, arg);
	default:
		return -ENOTTY;
	}
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

/* ---------------------------------------------------------------------- */
/* File operations (vfio_device_fops)                                      */

static long fop_ioctl(struct p2p_file *file, unsigned long cmd, void *arg)
{
	return p2p_vfio_device_ioctl(p2p_file_priv(file), cmd, arg);
}

static ssize_t fop_read(struct p2p_file *file, void *buf, size_t count, uint64_t off)
{
	struct p2p_vfio_device *vdev = p2p_file_priv(file);

	return access_granted(vdev) ? region_rw(vdev, buf, count, off, false) : -EINVAL;
}

static ssize_t fop_write(struct p2p_file *file, const void *buf, size_t count, uint64_t off)
{
	struct p2p_vfio_device *vdev = p2p_file_priv(file);

	return access_granted(vdev) ? region_rw(vdev, (void *)buf, count, off, true) : -EINVAL;
}

static int fop_mmap(struct p2p_file *file, void *addr, size_t length, int prot, int flags,
		    uint64_t offset, void **out)
{
	struct p2p_vfio_device *vdev = p2p_file_priv(file);

	if (!access_granted(vdev))
		return -EINVAL;
	return p2p_vfio_device_mmap(vdev, addr, length, prot, flags, offset, out);
}

static void fop_release(struct p2p_file *file)
{
	struct p2p_vfio_device *vdev = p2p_file_priv(file);

	vdev->file = NULL;
	vfio_device_file_put(vdev); /* the file's reference; BAR mmaps keep theirs */
}

static const struct p2p_file_ops vfio_device_fops = {
	.name = "vfio-device",
	.ioctl = fop_ioctl,
	.mmap = fop_mmap,
	.read = fop_read,
	.write = fop_write,
	.release = fop_release,
};
