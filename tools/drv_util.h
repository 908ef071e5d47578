/* SPDX-License-Identifier: MIT */
/*
 * What every small userspace driver of a p2pbuf device needs: BAR0 register
 * access through the VFIO region and an MSI eventfd (VFIO_DEVICE_SET_IRQS).
 */
#ifndef P2PBUF_DRV_UTIL_H
#define P2PBUF_DRV_UTIL_H

#include <p2pbuf/p2pbuf.h>

/* Write a 4- or 8-byte BAR0 register.  Returns 0 or -errno. */
int drv_reg_write(struct p2p_vfio_device *vdev, uint64_t off, uint64_t v, size_t len);
/* Read a 4- or 8-byte BAR0 register; all ones if the access failed. */
uint64_t drv_reg_read(struct p2p_vfio_device *vdev, uint64_t off, size_t len);
/* Install @fd as MSI vector 0's trigger, or with @fd < 0 disable the vectors. */
int drv_set_msi(struct p2p_vfio_device *vdev, int fd);
/* Bytes of @entries records of @each bytes, rounded up to pages. */
size_t drv_queue_bytes(uint32_t entries, size_t each);
/*
 * A queue the device reaches by DMA: @bytes of fresh memory at *@host,
 * mapped into @ioas at *@iova with @prot (P2P_IOAS_MAP_READABLE/WRITEABLE).
 * *@mapped says whether the IOAS map succeeded (IOVA 0 is a valid IOVA).
 * Returns 0 or -errno; undo with drv_queue_unmap() either way.
 */
int drv_queue_map(struct p2p_ioas *ioas, size_t bytes, uint32_t prot, void **host, uint64_t *iova,
		  bool *mapped);
void drv_queue_unmap(struct p2p_ioas *ioas, size_t bytes, void *host, uint64_t iova, bool mapped);

#endif
