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

/* One channel of the engine. */
struct ce_drv {
	struct p2p_vfio_device *vdev;
	struct p2p_ioas *ioas;
	struct p2p_ce_desc *ring;
	struct p2p_ce_compl *compl;
	uint64_t ring_iova, compl_iova;
	bool ring_mapped, compl_mapped;
	bool own_efd; /* efd is this channel's (installed for its MSI vector) */
	uint32_t entries, tail, chan;
	int efd;
};

/* Map a ring of @entries into @ioas (already attached to the engine), program and enable channel 0. */
int ce_drv_init(struct ce_drv *drv, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		uint32_t entries);
/*
 * The same for channel @chan; with @efd >= 0 the channel waits on that
 * eventfd (the caller's, installed for the channel's vector), otherwise it
 * installs one of its own for P2P_CE_CHAN_VECTOR(@chan).
 */
int ce_drv_init_chan(struct ce_drv *drv, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		     uint32_t entries, uint32_t chan, int efd);
/* The engine's channel count (CHANNELS register; an engine that reads 0 there has 1). */
uint32_t ce_drv_channels(struct p2p_vfio_device *vdev);
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

/*
 * Every channel of an engine (or the first @nchan), one ring each, one
 * eventfd installed for all their MSI vectors: a waiter reads HEAD before
 * it sleeps, so an interrupt consumed while waiting for another channel is
 * never missed.
 */
struct ce_multi {
	uint32_t nchan;
	int efd;
	struct p2p_vfio_device *vdev;
	struct ce_drv ch[P2P_CE_MAX_CHANNELS];
};

/* Program and enable @nchan channels (0: all the engine has).  Undo with ce_multi_fini(). */
int ce_multi_init(struct ce_multi *m, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		  uint32_t entries, uint32_t nchan);
/*
 * Queue one copy split over the first @k channels (0: all) in page-aligned
 * pieces of at least @min_piece bytes, one descriptor per channel used,
 * each with @flags; last[c] gets channel c's ring index (channels not used
 * keep theirs).  Waits for room as ce_drv_queue().  Returns the channels used.
 */
uint32_t ce_multi_queue(struct ce_multi *m, uint32_t k, uint64_t src, uint64_t dst, uint64_t len,
			uint64_t min_piece, uint32_t flags, uint32_t id, uint32_t *last);
/* Ring every channel's doorbell that has something queued. */
int ce_multi_kick(struct ce_multi *m);
/*
 * One copy split over all channels (pieces of at least 1 MiB), synchronously:
 * the first status that is not P2P_CE_OK, or P2P_CE_OK.  *@bytes (may be
 * NULL) gets the bytes copied.
 */
uint32_t ce_multi_copy(struct ce_multi *m, uint64_t src, uint64_t dst, uint64_t len,
		       uint64_t *bytes);
void ce_multi_fini(struct ce_multi *m);

#endif
