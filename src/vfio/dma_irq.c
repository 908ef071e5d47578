// SPDX-License-Identifier: MIT
/*
 * Device DMA and interrupts: the IOAS a function's DMA goes through
 * (VFIO_DEVICE_ATTACH_IOMMUFD_PT) and its MSI eventfds
 * (VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS).  The functions have an
 * MSI capability and no INTx pin, so there is no INTx vector; the error
 * and request triggers (VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX)
 * are one eventfd each.
 *
 * Locking: vc->dma_lock (rw) protects vc->ioas, vc->irq_fds, err_fd and
 * req_fd (struct vfio_pci_core, vfio_priv.h).  DMA and interrupts take it for read; attach/detach and SET_IRQS
 * for write.  It is independent of memory_lock, and comes before the IOAS
 * locks.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vfio_priv.h"

/*
 * The function's bus-master and interrupt state: the IO address space its
 * DMA goes through and the eventfds its MSI vectors, error and request
 * interrupts signal.
 */
void vfio_dma_irq_init(struct vfio_pci_core *vc)
{
	pthread_rwlock_init(&vc->dma_lock, NULL);
	for (int i = 0; i < P2P_PCI_MAX_VECTORS; i++)
		vc->irq_fds[i] = -1;
	vc->err_fd = vc->req_fd = -1;
}

/*
 * Drop the IO address space and close every trigger (close_device, release).
 * @hooks: tell a backend (ops->ioas_detach); not at release, after ops->release.
 */
static void dma_irq_close(struct vfio_pci_core *vc, bool hooks)
{
	struct p2p_pci_dev *dev = vc->pdev;
	struct p2p_ioas *ioas;

	pthread_rwlock_wrlock(&vc->dma_lock);
	ioas = vc->ioas;
	vc->ioas = NULL;
	for (int i = 0; i < P2P_PCI_MAX_VECTORS; i++) {
		if (vc->irq_fds[i] >= 0)
			close(vc->irq_fds[i]);
		vc->irq_fds[i] = -1;
	}
	if (vc->err_fd >= 0)
		close(vc->err_fd);
	if (vc->req_fd >= 0)
		close(vc->req_fd);
	vc->err_fd = vc->req_fd = -1;
	pthread_rwlock_unlock(&vc->dma_lock);
	if (ioas) {
		if (hooks && dev->ops && dev->ops->ioas_detach)
			dev->ops->ioas_detach(dev, ioas);
		p2p_ioas_detach_device(ioas);
		p2p_ioas_put(ioas);
	}
}

void vfio_dma_irq_close(struct vfio_pci_core *vc)
{
	dma_irq_close(vc, true);
}

void vfio_dma_irq_release(struct vfio_pci_core *vc)
{
	dma_irq_close(vc, false);
	pthread_rwlock_destroy(&vc->dma_lock);
}

/* Disable every MSI vector. */
static void irqs_clear(struct vfio_pci_core *vc)
{
	pthread_rwlock_wrlock(&vc->dma_lock);
	for (int i = 0; i < P2P_PCI_MAX_VECTORS; i++) {
		if (vc->irq_fds[i] >= 0)
			close(vc->irq_fds[i]);
		vc->irq_fds[i] = -1;
	}
	pthread_rwlock_unlock(&vc->dma_lock);
}

/* Point the function's DMA at @ioas (a reference), or nowhere. */
static void set_ioas(struct vfio_pci_core *vc, struct p2p_ioas *ioas)
{
	struct p2p_pci_dev *dev = vc->pdev;
	struct p2p_ioas *old;

	pthread_rwlock_wrlock(&vc->dma_lock);
	old = vc->ioas;
	vc->ioas = ioas;
	pthread_rwlock_unlock(&vc->dma_lock);
	if (old) {
		/* Attached to the same IOAS again: the backend's new mirror stays. */
		if (old != ioas && dev->ops && dev->ops->ioas_detach)
			dev->ops->ioas_detach(dev, old);
		p2p_ioas_detach_device(old);
		p2p_ioas_put(old);
	}
}

P2P_API int p2p_vfio_device_attach_ioas(struct p2p_vfio_device *vdev, struct p2p_ioas *ioas)
{
	const struct p2p_pci_dev_ops *ops = vdev->pdev->ops;
	int ret = p2p_ioas_attach_device(ioas);

	if (ret)
		return ret;
	/* A backend mirrors the IOAS (p2p_pci_dev_ops.ioas_attach) before DMA may use it. */
	if (ops && ops->ioas_attach) {
		ret = ops->ioas_attach(vdev->pdev, ioas);
		if (ret) {
			p2p_ioas_detach_device(ioas);
			return ret;
		}
	}
	set_ioas(vfio_pci_core(vdev->pdev), p2p_ioas_ref(ioas));
	return 0;
}

P2P_API void p2p_vfio_device_detach_ioas(struct p2p_vfio_device *vdev)
{
	set_ioas(vfio_pci_core(vdev->pdev), NULL);
}

P2P_API int p2p_pci_dev_dma_begin(struct p2p_pci_dev *dev, uint64_t iova, uint64_t len,
				  unsigned int access, struct p2p_dma_seg *seg)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	int ret = -ENOENT;

	pthread_rwlock_rdlock(&vc->dma_lock);
	if (vc->ioas)
		ret = p2p_ioas_dma_begin(vc->ioas, iova, len, access, seg);
	pthread_rwlock_unlock(&vc->dma_lock);
	return ret;
}

/*
 * A callback area of the function's IOAS (-EREMOTE from the translation):
 * the call may block, so it runs on a reference of the IOAS, not under
 * dma_lock (a detach does not wait for it; the area's unmap does).
 */
static int dma_rw_callback(struct vfio_pci_core *vc, uint64_t iova, void *data, uint64_t len,
			   bool write, uint64_t *done)
{
	struct p2p_ioas *ioas = NULL;
	int ret;

	pthread_rwlock_rdlock(&vc->dma_lock);
	if (vc->ioas)
		ioas = p2p_ioas_ref(vc->ioas);
	pthread_rwlock_unlock(&vc->dma_lock);
	if (!ioas)
		return -ENOENT;
	ret = p2p_ioas_callback_rw(ioas, iova, data, len, write, done);
	p2p_ioas_put(ioas);
	return ret;
}

P2P_API int p2p_pci_dev_dma_rw(struct p2p_pci_dev *dev, uint64_t iova, void *data, uint64_t len,
			       bool write)
{
	uint8_t *d = data;

	while (len) {
		struct p2p_dma_seg seg;
		int ret = p2p_pci_dev_dma_begin(dev, iova, len, write ? P2P_DMA_WRITE : P2P_DMA_READ,
						&seg);

		if (ret == -EREMOTE) {
			uint64_t n;

			ret = dma_rw_callback(vfio_pci_core(dev), iova, d, len, write, &n);
			if (ret)
				return ret;
			d += n;
			iova += n;
			len -= n;
			continue;
		}
		if (ret)
			return ret;
		/* Memory the program truncated: a translation fault, not SIGBUS. */
		ret = write ? dma_copy(seg.host, d, seg.len, ioas_seg_fragile(&seg)) :
			      dma_copy(d, seg.host, seg.len, ioas_seg_fragile(&seg));
		p2p_ioas_dma_end(&seg);
		if (ret)
			return ret;
		d += seg.len;
		iova += seg.len;
		len -= seg.len;
	}
	return 0;
}

P2P_API bool p2p_pci_dev_raise_irq(struct p2p_pci_dev *dev, unsigned int vector)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	bool sent = false;

	if (vector >= P2P_PCI_MAX_VECTORS)
		return false;
	pthread_rwlock_rdlock(&vc->dma_lock);
	if (vc->irq_fds[vector] >= 0)
		sent = eventfd_write(vc->irq_fds[vector], 1) == 0;
	pthread_rwlock_unlock(&vc->dma_lock);
	return sent;
}

/*
 * vfio_pci_get_irq_count(): INTx has one vector iff config space has an
 * interrupt pin (the emulated functions have none: pci_config_reset());
 * MSI has the vectors of the MSI capability's Multiple Message Capable
 * field (P2P_PCI_MAX_VECTORS); no MSI-X; ERR has one (a PCI Express
 * function) and REQ one.
 */
static uint32_t irq_count(struct p2p_pci_dev *dev, uint32_t index)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	uint32_t n = 0;

	if (index == VFIO_PCI_ERR_IRQ_INDEX || index == VFIO_PCI_REQ_IRQ_INDEX)
		return 1;
	pthread_rwlock_rdlock(&vc->memory_lock);
	if (index == VFIO_PCI_INTX_IRQ_INDEX)
		n = pci_config_get(&vc->vconfig, 0x3d, 1) ? 1 : 0;
	else if (index == VFIO_PCI_MSI_IRQ_INDEX)
		n = 1u << ((pci_config_get(&vc->vconfig, P2P_PCI_CAP_MSI + 2, 2) >> 1) & 0x7);
	pthread_rwlock_unlock(&vc->memory_lock);
	return n < P2P_PCI_MAX_VECTORS ? n : P2P_PCI_MAX_VECTORS;
}

/* VFIO_DEVICE_GET_IRQ_INFO (vfio_pci_ioctl_get_irq_info): @cmd holds the framed part (ioctls.c). */
long vfio_ioctl_get_irq_info(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	struct vfio_irq_info *info = cmd;

	if (info->index >= VFIO_PCI_NUM_IRQS)
		return -EINVAL;
	info->flags = VFIO_IRQ_INFO_EVENTFD;
	info->count = irq_count(vdev->pdev, info->index);
	if (info->index == VFIO_PCI_INTX_IRQ_INDEX)
		info->flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
	else
		info->flags |= VFIO_IRQ_INFO_NORESIZE;
	return copy_to_user(arg, info, VFIO_MINSZ(struct vfio_irq_info, count));
}

/*
 * eventfd_ctx_fdget(): a private duplicate of eventfd @fd; -EBADF if @fd is
 * not open, -EINVAL if it is not an eventfd (when /proc tells).
 */
static int eventfd_dup(int fd)
{
	char path[64], link[64];
	ssize_t n;
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (nfd < 0)
		return errno == EBADF ? -EBADF : -errno;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", nfd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n > 0) {
		link[n] = 0;
		if (strcmp(link, "anon_inode:[eventfd]")) {
			close(nfd);
			return -EINVAL;
		}
	}
	return nfd;
}

/* The MSI vectors (vfio_pci_set_msi_trigger), eventfds in @fds (read by the caller). */
static long set_msi_trigger(struct vfio_pci_core *vc, const struct vfio_irq_set *hdr,
			    const int32_t *fds)
{
	uint32_t type = hdr->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
	int newfds[P2P_PCI_MAX_VECTORS];

	if (type == VFIO_IRQ_SET_DATA_NONE && !hdr->count) {
		irqs_clear(vc);
		return 0;
	}
	if (type != VFIO_IRQ_SET_DATA_EVENTFD)
		return -EINVAL;
	for (uint32_t i = 0; i < hdr->count; i++) {
		newfds[i] = -1;
		if (fds[i] >= 0 && (newfds[i] = eventfd_dup(fds[i])) < 0) {
			int err = newfds[i];

			while (i--)
				if (newfds[i] >= 0)
					close(newfds[i]);
			return err;
		}
	}
	pthread_rwlock_wrlock(&vc->dma_lock);
	for (uint32_t i = 0; i < hdr->count; i++) {
		int *slot = &vc->irq_fds[hdr->start + i];

		if (*slot >= 0)
			close(*slot);
		*slot = newfds[i];
	}
	pthread_rwlock_unlock(&vc->dma_lock);
	return 0;
}

/*
 * The error and request triggers (vfio_pci_set_ctx_trigger_single):
 * an eventfd sets it, -1 releases it; DATA_NONE with count 1 or DATA_BOOL
 * true signals it (loopback testing), DATA_NONE with count 0 releases it.
 */
static long set_ctx_trigger(struct vfio_pci_core *vc, const struct vfio_irq_set *hdr,
			    const void *data)
{
	uint32_t type = hdr->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
	int *slot = hdr->index == VFIO_PCI_ERR_IRQ_INDEX ? &vc->err_fd : &vc->req_fd;
	int32_t fd = -1;
	int old = -1;
	long ret = 0;

	if (type != VFIO_IRQ_SET_DATA_NONE && !hdr->count)
		return -EINVAL;
	if (type == VFIO_IRQ_SET_DATA_EVENTFD) {
		memcpy(&fd, data, sizeof(fd));
		if (fd < -1)
			return 0;
		if (fd >= 0 && (fd = eventfd_dup(fd)) < 0)
			return fd;
	}
	pthread_rwlock_wrlock(&vc->dma_lock);
	switch (type) {
	case VFIO_IRQ_SET_DATA_NONE:
		if (*slot < 0)
			ret = -EINVAL;
		else if (hdr->count)
			eventfd_write(*slot, 1);
		else
			old = *slot, *slot = -1;
		break;
	case VFIO_IRQ_SET_DATA_BOOL:
		if (*(const uint8_t *)data && *slot >= 0)
			eventfd_write(*slot, 1);
		break;
	default:
		old = *slot;
		*slot = fd;
		break;
	}
	pthread_rwlock_unlock(&vc->dma_lock);
	if (old >= 0)
		close(old);
	return ret;
}

/*
 * VFIO_DEVICE_SET_IRQS (vfio_pci_ioctl_set_irqs): validation as
 * vfio_set_irqs_validate_and_prepare(), so an index without vectors (INTx:
 * no pin) refuses everything with EINVAL and a VMM learns from
 * GET_IRQ_INFO and config space that there is no INTx; then the handler
 * of vfio_pci_set_irqs_ioctl(), -ENOTTY for an action it has none for.
 * @cmd holds the framed header (ioctls.c); the data after it is read here.
 */
long vfio_ioctl_set_irqs(struct p2p_vfio_device *vdev, void *arg, void *cmd)
{
	const size_t minsz = VFIO_MINSZ(struct vfio_irq_set, count);
	struct p2p_pci_dev *dev = vdev->pdev;
	const struct vfio_irq_set *hdr = cmd;
	int32_t data[P2P_PCI_MAX_VECTORS];
	uint32_t action, max;
	size_t size;

	action = hdr->flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
	if (hdr->index >= VFIO_PCI_NUM_IRQS ||
	    hdr->count >= UINT32_MAX - hdr->start ||
	    (hdr->flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)))
		return -EINVAL;
	max = irq_count(dev, hdr->index);
	if (hdr->start >= max || hdr->count > max - hdr->start)
		return -EINVAL;
	switch (hdr->flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
	case VFIO_IRQ_SET_DATA_NONE: size = 0; break;
	case VFIO_IRQ_SET_DATA_BOOL: size = sizeof(uint8_t); break;
	case VFIO_IRQ_SET_DATA_EVENTFD: size = sizeof(int32_t); break;
	default: return -EINVAL;
	}
	/* count <= max <= P2P_PCI_MAX_VECTORS: the data fits. */
	if (size && hdr->argsz - minsz < hdr->count * size)
		return -EINVAL;
	if (size && copy_from_user(data, (uint8_t *)arg + minsz, hdr->count * size))
		return -EFAULT;
	if (action != VFIO_IRQ_SET_ACTION_TRIGGER)
		return -ENOTTY; /* no masking: INTx has no vector, MSI has no mask bits */
	long ret;

	switch (hdr->index) {
	case VFIO_PCI_MSI_IRQ_INDEX:
		ret = set_msi_trigger(vfio_pci_core(dev), hdr, data);
		break;
	case VFIO_PCI_ERR_IRQ_INDEX:
	case VFIO_PCI_REQ_IRQ_INDEX:
		ret = set_ctx_trigger(vfio_pci_core(dev), hdr, data);
		break;
	default:
		return -ENOTTY;
	}
	/* A backend raises the interrupts itself: give it the eventfds (no lock held). */
	if (!ret && dev->ops && dev->ops->set_irqs) {
		uint32_t type = hdr->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;

		if (type == VFIO_IRQ_SET_DATA_EVENTFD)
			ret = dev->ops->set_irqs(dev, hdr->index, hdr->start, hdr->count, data);
		else if (type == VFIO_IRQ_SET_DATA_NONE && !hdr->count)
			ret = dev->ops->set_irqs(dev, hdr->index, 0, 0, NULL);
	}
	return ret;
}

/*
 * vfio_pci_core_request(): the function is being taken away (unregistered):
 * ask the user to release it through the REQ trigger, if it set one.
 */
void vfio_pci_request(struct p2p_pci_dev *dev)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);

	pthread_rwlock_rdlock(&vc->dma_lock);
	if (vc->req_fd >= 0)
		eventfd_write(vc->req_fd, 1);
	pthread_rwlock_unlock(&vc->dma_lock);
}
