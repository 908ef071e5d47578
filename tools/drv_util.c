// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "drv_util.h"

int drv_reg_write(struct p2p_vfio_device *vdev, uint64_t off, uint64_t v, size_t len)
{
	ssize_t n = p2p_vfio_device_pwrite(vdev, &v, len, P2P_VFIO_REGION_OFFSET(0) + off);

	return n == (ssize_t)len ? 0 : (n < 0 ? (int)n : -EIO);
}

uint64_t drv_reg_read(struct p2p_vfio_device *vdev, uint64_t off, size_t len)
{
	uint64_t v = 0;

	if (p2p_vfio_device_pread(vdev, &v, len, P2P_VFIO_REGION_OFFSET(0) + off) != (ssize_t)len)
		return ~0ull;
	return v;
}

int drv_set_msi(struct p2p_vfio_device *vdev, int fd)
{
	uint8_t buf[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
	struct vfio_irq_set *irq = (struct vfio_irq_set *)buf;
	int32_t efd = fd;

	*irq = (struct vfio_irq_set){
		.argsz = sizeof(buf),
		.flags = (fd >= 0 ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE) |
			 VFIO_IRQ_SET_ACTION_TRIGGER,
		.index = VFIO_PCI_MSI_IRQ_INDEX,
		.start = 0,
		.count = fd >= 0 ? 1 : 0,
	};
	memcpy(irq->data, &efd, sizeof(efd));
	return (int)p2p_vfio_device_ioctl(vdev, VFIO_DEVICE_SET_IRQS, irq);
}

size_t drv_queue_bytes(uint32_t entries, size_t each)
{
	return ((size_t)entries * each + 4095) & ~(size_t)4095;
}

int drv_queue_map(struct p2p_ioas *ioas, size_t bytes, uint32_t prot, void **host, uint64_t *iova,
		  bool *mapped)
{
	int ret;

	*mapped = false;
	/*
	 * Shared: a device served by another process (vfio-user) gets it with
	 * its file (DMA_MAP with an fd) instead of a DMA_READ/WRITE per access.
	 */
	*host = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (*host == MAP_FAILED) {
		*host = NULL;
		return -ENOMEM;
	}
	ret = p2p_ioas_map(ioas, *host, bytes, iova, prot);
	*mapped = !ret;
	return ret;
}

void drv_queue_unmap(struct p2p_ioas *ioas, size_t bytes, void *host, uint64_t iova, bool mapped)
{
	if (mapped)
		p2p_ioas_unmap(ioas, iova, bytes, NULL);
	if (host)
		munmap(host, bytes);
}
