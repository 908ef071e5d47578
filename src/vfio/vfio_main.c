// SPDX-License-Identifier: MIT
/*
 * The VFIO device file (drivers/vfio/vfio_main.c, vfio_pci_rdwr.c): its
 * creation and lifetime, open_device / close_device, region reads and
 * writes at index << 40 offsets, BAR mmap through dma-bufs
 * (kernel-semantics 3.1), and its file operations.  Also the driver every
 * function is bound to (vfio_pci_driver), which creates and frees the
 * function's VFIO state (struct vfio_pci_core).
 *
 * Locking: vdev->lock serializes bind, attach and detach of a cdev;
 * vc->open_lock the open count; BAR reads and writes hold
 * vc->memory_lock for read (vfio_priv.h; the order is docs/locking.md's).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfio_priv.h"

static const struct p2p_file_ops vfio_device_fops;

/* ---------------------------------------------------------------------- */
/* The driver: a function's VFIO state (vfio_pci_core_init_dev())          */

static int vfio_pci_probe(struct p2p_pci_dev *dev)
{
	struct vfio_pci_core *vc = calloc(1, sizeof(*vc));

	if (!vc)
		return -ENOMEM;
	vc->pdev = dev;
	pthread_mutex_init(&vc->open_lock, NULL);
	pthread_rwlock_init(&vc->memory_lock, NULL);
	list_init(&vc->dmabufs);
	vfio_dma_irq_init(vc);
	dev->driver_data = vc;
	return 0;
}

static void vfio_pci_remove(struct p2p_pci_dev *dev)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);

	vfio_dma_irq_release(vc);
	pthread_rwlock_destroy(&vc->memory_lock);
	pthread_mutex_destroy(&vc->open_lock);
	dev->driver_data = NULL;
	free(vc);
}

const struct pci_driver vfio_pci_driver = {
	.probe = vfio_pci_probe,
	.remove = vfio_pci_remove,
	.config_read = vfio_config_read_raw,
	.backend_changed = vfio_backend_changed,
};

P2P_API unsigned int p2p_pci_dev_open_count(struct p2p_pci_dev *dev)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	unsigned int n;

	pthread_mutex_lock(&vc->open_lock);
	n = vc->open_count;
	pthread_mutex_unlock(&vc->open_lock);
	return n;
}

/* ---------------------------------------------------------------------- */
/* Device files                                                            */

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
	/* A function whose backend is gone for good is removed: no new opens. */
	if (pci_backend_state(dev) == P2P_PCI_BACKEND_GONE) {
		ret = -ENODEV;
		goto err_put;
	}
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
	struct vfio_pci_core *vc = vfio_pci_core(vdev->pdev);

	pthread_mutex_lock(&vc->open_lock);
	pthread_rwlock_wrlock(&vc->memory_lock);
	if (!vc->open_count++)
		vfio_vconfig_reset(vdev->pdev);
	pthread_rwlock_unlock(&vc->memory_lock);
	pthread_mutex_unlock(&vc->open_lock);
	vdev->opened = true;
}

/* close_device: the last close revokes every dma-buf for good (1.6). */
void vfio_device_close_device(struct p2p_vfio_device *vdev)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	bool closing;

	pthread_mutex_lock(&vc->open_lock);
	pthread_rwlock_wrlock(&vc->memory_lock);
	closing = !--vc->open_count;
	if (closing) {
		vfio_dmabufs_cleanup(dev);
		vc->low_power = false;
	}
	pthread_rwlock_unlock(&vc->memory_lock);
	if (closing)
		vfio_dma_irq_close(vc);
	pthread_mutex_unlock(&vc->open_lock);
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
/* Regions                                                                 */

static ssize_t region_rw(struct p2p_vfio_device *vdev, void *buf, size_t len, uint64_t offset,
			 bool write)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	uint64_t index = P2P_VFIO_OFFSET_TO_INDEX(offset), off = offset & P2P_VFIO_OFFSET_MASK;
	const struct p2p_pci_bar_desc *b;
	ssize_t ret;

	if (index == VFIO_PCI_CONFIG_REGION_INDEX)
		return vfio_config_access(vdev, buf, len, off, write);
	if (index >= VFIO_PCI_ROM_REGION_INDEX)
		return -EINVAL;
	b = &dev->bars[index];
	if (!b->size || off >= b->size)
		return -EINVAL;
	/* vfio_pci_bar_rw(): an access running past the end is cut short there. */
	len = MIN(len, b->size - off);
	pthread_rwlock_rdlock(&vc->memory_lock);
	if (!(b->flags & P2P_BAR_IO) && !vfio_memory_enabled_locked(dev)) {
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
	pthread_rwlock_unlock(&vc->memory_lock);
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
/* File operations (vfio_device_fops)                                      */

static long fop_ioctl(struct p2p_file *file, unsigned long cmd, void *arg)
{
	return p2p_vfio_device_ioctl(p2p_file_priv(file), cmd, arg);
}

static ssize_t fop_read(struct p2p_file *file, void *buf, size_t count, uint64_t off)
{
	struct p2p_vfio_device *vdev = p2p_file_priv(file);

	return vfio_access_granted(vdev) ? region_rw(vdev, buf, count, off, false) : -EINVAL;
}

static ssize_t fop_write(struct p2p_file *file, const void *buf, size_t count, uint64_t off)
{
	struct p2p_vfio_device *vdev = p2p_file_priv(file);

	return vfio_access_granted(vdev) ? region_rw(vdev, (void *)buf, count, off, true) : -EINVAL;
}

static int fop_mmap(struct p2p_file *file, void *addr, size_t length, int prot, int flags,
		    uint64_t offset, void **out)
{
	struct p2p_vfio_device *vdev = p2p_file_priv(file);

	if (!vfio_access_granted(vdev))
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
