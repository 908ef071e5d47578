/* SPDX-License-Identifier: MIT */
/*
 * A small userspace driver for the p2pbuf storage device, the way a VFIO
 * driver drives an NVMe-like controller: submission and completion queues
 * in memory mapped into the device's IOAS, registers through the BAR0
 * region, MSI vector 0 through an eventfd.  Used by the CLI, the tests and
 * the benchmarks.  Not thread-safe: one thread drives one struct sd_drv.
 *
 * The device has no CQ head register: the driver keeps at most @entries
 * commands submitted and not yet reaped (sd_drv_room()), so a completion
 * never overwrites one the caller has not read.
 */
#ifndef P2PBUF_SD_DRIVER_H
#define P2PBUF_SD_DRIVER_H

#include <p2pbuf/p2pbuf.h>

struct sd_drv {
	struct p2p_vfio_device *vdev;
	struct p2p_ioas *ioas;
	struct p2p_sd_cmd *sq;
	struct p2p_sd_cqe *cq;
	uint64_t sq_iova, cq_iova;
	uint32_t entries;
	uint32_t sq_tail; /* commands queued (free-running) */
	uint32_t cq_head; /* completions reaped (free-running) */
	uint64_t capacity; /* blocks */
	int efd;	   /* MSI vector 0 */
	bool sq_mapped, cq_mapped;
};

/*
 * Map queues of @entries (a power of two <= 4096) into @ioas (already
 * attached to the device), install the eventfd, program the registers and
 * enable.  Call sd_drv_fini() even on failure.  Returns 0 or -errno.
 */
int sd_drv_init(struct sd_drv *drv, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		uint32_t entries);
/* Commands that can be queued before reaping. */
uint32_t sd_drv_room(const struct sd_drv *drv);
/*
 * Queue one command (not yet visible to the device: sd_drv_kick()).
 * Returns its submission queue slot (0 <= slot < entries) or -EBUSY if
 * there is no room.  sd_drv_read/write/flush() fill in the command.
 */
int sd_drv_submit(struct sd_drv *drv, const struct p2p_sd_cmd *cmd);
int sd_drv_read(struct sd_drv *drv, uint64_t lba, uint32_t nblocks, uint64_t data,
		uint8_t flags, uint32_t id);
int sd_drv_write(struct sd_drv *drv, uint64_t lba, uint32_t nblocks, uint64_t data,
		 uint8_t flags, uint32_t id);
int sd_drv_flush(struct sd_drv *drv, uint8_t flags, uint32_t id);
/* Ring the doorbell for everything queued.  Returns 0 or -errno. */
int sd_drv_kick(struct sd_drv *drv);
/* Completions written by the device and not reaped yet (reads CQ_TAIL). */
uint32_t sd_drv_ready(struct sd_drv *drv);
/*
 * Wait until at least @n completions are ready (interrupts, CQ_TAIL), at
 * most @timeout_ms (< 0: forever).  Returns how many are ready, or
 * -ETIMEDOUT.
 */
int sd_drv_wait(struct sd_drv *drv, uint32_t n, int timeout_ms);
/* Copy up to @max ready completions to @out and consume them; returns how many. */
uint32_t sd_drv_reap(struct sd_drv *drv, struct p2p_sd_cqe *out, uint32_t max);
/*
 * One command, synchronously (with an interrupt), with nothing else
 * outstanding: returns its completion status (P2P_SD_PENDING if it could
 * not be run) and, if @bytes, the bytes transferred.
 */
uint32_t sd_drv_run(struct sd_drv *drv, const struct p2p_sd_cmd *cmd, uint64_t *bytes);
/* Register access, for tests and tools: 4 or 8 bytes. */
int sd_drv_reg_write(struct sd_drv *drv, uint64_t off, uint64_t v, size_t len);
uint64_t sd_drv_reg_read(struct sd_drv *drv, uint64_t off, size_t len);
/*
 * Disable, silence the interrupt, unmap and free the queues.  Commands the
 * device fetched still complete (their completions then fault): reap
 * everything or reset the device first.
 */
void sd_drv_fini(struct sd_drv *drv);

#endif
