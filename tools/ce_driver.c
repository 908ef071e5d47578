// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ce_driver.h"
#include "drv_util.h"

int ce_drv_init(struct ce_drv *drv, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		uint32_t entries)
{
	size_t ring_sz = drv_queue_bytes(entries, sizeof(struct p2p_ce_desc));
	size_t compl_sz = drv_queue_bytes(entries, sizeof(struct p2p_ce_compl));
	int ret;

	memset(drv, 0, sizeof(*drv));
	drv->vdev = vdev;
	drv->ioas = ioas;
	drv->entries = entries;
	drv->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (drv->efd < 0)
		return -errno;
	/* The engine reads descriptors and writes completions. */
	ret = drv_queue_map(ioas, ring_sz, P2P_IOAS_MAP_READABLE, (void **)&drv->ring,
			    &drv->ring_iova, &drv->ring_mapped);
	if (ret)
		return ret;
	ret = drv_queue_map(ioas, compl_sz, P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE,
			    (void **)&drv->compl, &drv->compl_iova, &drv->compl_mapped);
	if (ret)
		return ret;
	ret = drv_set_msi(vdev, drv->efd);
	if (ret)
		return ret;
	if (drv_reg_read(drv->vdev, P2P_CE_REG_ID, 4) != P2P_CE_ID)
		return -ENODEV;
	if ((ret = drv_reg_write(drv->vdev, P2P_CE_REG_RING, drv->ring_iova, 8)) ||
	    (ret = drv_reg_write(drv->vdev, P2P_CE_REG_RING_SIZE, entries, 4)) ||
	    (ret = drv_reg_write(drv->vdev, P2P_CE_REG_COMPL, drv->compl_iova, 8)) ||
	    (ret = drv_reg_write(drv->vdev, P2P_CE_REG_CTRL, P2P_CE_CTRL_ENABLE, 4)))
		return ret;
	drv->tail = (uint32_t)drv_reg_read(drv->vdev, P2P_CE_REG_HEAD, 4);
	return 0;
}

uint32_t ce_drv_head(struct ce_drv *drv)
{
	return (uint32_t)drv_reg_read(drv->vdev, P2P_CE_REG_HEAD, 4);
}

struct p2p_ce_compl *ce_drv_compl(struct ce_drv *drv, uint32_t idx)
{
	return &drv->compl[idx & (drv->entries - 1)];
}

uint32_t ce_drv_queue(struct ce_drv *drv, uint64_t src, uint64_t dst, uint64_t len,
		      uint32_t flags, uint32_t id)
{
	uint32_t idx = drv->tail;

	if (idx - ce_drv_head(drv) >= drv->entries) {
		ce_drv_kick(drv);
		ce_drv_wait(drv, idx - drv->entries);
	}
	drv->ring[idx & (drv->entries - 1)] = (struct p2p_ce_desc){
		.src = src, .dst = dst, .len = len, .flags = flags, .id = id,
	};
	memset(ce_drv_compl(drv, idx), 0, sizeof(struct p2p_ce_compl));
	drv->tail = idx + 1;
	return idx;
}

int ce_drv_kick(struct ce_drv *drv)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	return drv_reg_write(drv->vdev, P2P_CE_REG_DOORBELL, drv->tail, 4);
}

int ce_drv_wait(struct ce_drv *drv, uint32_t idx)
{
	struct pollfd pfd = { .fd = drv->efd, .events = POLLIN };

	while ((int32_t)(ce_drv_head(drv) - idx) <= 0) {
		eventfd_t v;

		if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
			return -errno;
		(void)eventfd_read(drv->efd, &v);
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return 0;
}

uint32_t ce_drv_copy(struct ce_drv *drv, uint64_t src, uint64_t dst, uint64_t len)
{
	uint32_t idx = ce_drv_queue(drv, src, dst, len, P2P_CE_DESC_IRQ, drv->tail);

	ce_drv_kick(drv);
	ce_drv_wait(drv, idx);
	return ce_drv_compl(drv, idx)->status;
}

void ce_drv_fini(struct ce_drv *drv)
{
	size_t ring_sz = drv_queue_bytes(drv->entries, sizeof(struct p2p_ce_desc));
	size_t compl_sz = drv_queue_bytes(drv->entries, sizeof(struct p2p_ce_compl));

	if (drv->vdev)
		drv_reg_write(drv->vdev, P2P_CE_REG_CTRL, 0, 4);
	drv_queue_unmap(drv->ioas, ring_sz, drv->ring, drv->ring_iova, drv->ring_mapped);
	drv_queue_unmap(drv->ioas, compl_sz, drv->compl, drv->compl_iova, drv->compl_mapped);
	if (drv->efd >= 0)
		close(drv->efd);
	memset(drv, 0, sizeof(*drv));
	drv->efd = -1;
}
