/* SPDX-License-Identifier: MIT */
/*
 * A small userspace driver for the p2pbuf copy engine, the way a VFIO
 * driver drives hardware: ring and completions in memory mapped into the
 * engine's IOAS, registers through the BAR0 region, MSI through an eventfd.
 * Used by the CLI, the tests and the benchmarks.
 */
#ifndef P2PBUF_CE_DRIVER_H
#define P2PBUF_CE_DRIVER_H

#include <p2pbuf/p2pbuf.h>

struct ce_drv {
	struct p2p_vfio_device *vdev;
	struct p2p_ioas *ioas;
	struct p2p_ce_desc *ring;
	struct p2p_ce_compl *compl;
	uint64_t ring_iova, compl_iova;
	bool ring_mapped, compl_mapped;
	uint32_t entries, tail;
	int efd;
};

/* Map a ring of @entries into @ioas (already attached to the engine), program and enable. */
int ce_drv_init(struct ce_drv *drv, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		uint32_t entries);
/* Queue one copy; waits for room.  Returns its ring index (free-running). */
uint32_t ce_drv_queue(struct ce_drv *drv, uint64_t src, uint64_t dst, uint64_t len,
		      uint32_t flags, uint32_t id);
/* Ring the doorbell for everything queued. */
int ce_drv_kick(struct ce_drv *drv);
/* Wait until descriptor @idx completed (interrupt, then HEAD). */
int ce_drv_wait(struct ce_drv *drv, uint32_t idx);
/* Completed count (HEAD register). */
uint32_t ce_drv_head(struct ce_drv *drv);
/* The completion record of @idx. */
struct p2p_ce_compl *ce_drv_compl(struct ce_drv *drv, uint32_t idx);
/* One copy, synchronously: returns the completion status. */
uint32_t ce_drv_copy(struct ce_drv *drv, uint64_t src, uint64_t dst, uint64_t len);
void ce_drv_fini(struct ce_drv *drv);

#endif
