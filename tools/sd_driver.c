// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "drv_util.h"
#include "sd_driver.h"

int sd_drv_reg_write(struct sd_drv *drv, uint64_t off, uint64_t v, size_t len)
{
	return drv_reg_write(drv->vdev, off, v, len);
}

uint64_t sd_drv_reg_read(struct sd_drv *drv, uint64_t off, size_t len)
{
	return drv_reg_read(drv->vdev, off, len);
}

int sd_drv_init(struct sd_drv *drv, struct p2p_vfio_device *vdev, struct p2p_ioas *ioas,
		uint32_t entries)
{
	size_t sq_sz = drv_queue_bytes(entries, sizeof(struct p2p_sd_cmd));
	size_t cq_sz = drv_queue_bytes(entries, sizeof(struct p2p_sd_cqe));
	int ret;

	memset(drv, 0, sizeof(*drv));
	drv->efd = -1;
	if (!entries || entries > 4096 || (entries & (entries - 1)))
		return -EINVAL;
	drv->vdev = vdev;
	drv->ioas = ioas;
	drv->entries = entries;
	drv->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (drv->efd < 0)
		return -errno;
	/* The device reads commands and writes completions. */
	ret = drv_queue_map(ioas, sq_sz, P2P_IOAS_MAP_READABLE, (void **)&drv->sq, &drv->sq_iova,
			    &drv->sq_mapped);
	if (ret)
		return ret;
	ret = drv_queue_map(ioas, cq_sz, P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE,
			    (void **)&drv->cq, &drv->cq_iova, &drv->cq_mapped);
	if (ret)
		return ret;
	ret = drv_set_msi(drv->vdev, drv->efd);
	if (ret)
		return ret;
	if (sd_drv_reg_read(drv, P2P_SD_REG_ID, 4) != P2P_SD_ID)
		return -ENODEV;
	drv->capacity = sd_drv_reg_read(drv, P2P_SD_REG_CAPACITY, 8);
	if ((ret = sd_drv_reg_write(drv, P2P_SD_REG_CTRL, 0, 4)) ||
	    (ret = sd_drv_reg_write(drv, P2P_SD_REG_SQ, drv->sq_iova, 8)) ||
	    (ret = sd_drv_reg_write(drv, P2P_SD_REG_CQ, drv->cq_iova, 8)) ||
	    (ret = sd_drv_reg_write(drv, P2P_SD_REG_QUEUE_SIZE, entries, 4)))
		return ret;
	if (sd_drv_reg_read(drv, P2P_SD_REG_QUEUE_SIZE, 4) != entries)
		return -EINVAL;
	/* Continue where the device is (0 after a reset). */
	drv->sq_tail = (uint32_t)sd_drv_reg_read(drv, P2P_SD_REG_SQ_TAIL, 4);
	drv->cq_head = (uint32_t)sd_drv_reg_read(drv, P2P_SD_REG_CQ_TAIL, 4);
	if (drv->sq_tail != (uint32_t)sd_drv_reg_read(drv, P2P_SD_REG_SQ_HEAD, 4) ||
	    drv->sq_tail != drv->cq_head)
		return -EBUSY; /* commands of someone else in flight: reset first */
	return sd_drv_reg_write(drv, P2P_SD_REG_CTRL, P2P_SD_CTRL_ENABLE, 4);
}

uint32_t sd_drv_room(const struct sd_drv *drv)
{
	return drv->entries - (drv->sq_tail - drv->cq_head);
}

int sd_drv_submit(struct sd_drv *drv, const struct p2p_sd_cmd *cmd)
{
	uint32_t slot = drv->sq_tail & (drv->entries - 1);

	if (!sd_drv_room(drv))
		return -EBUSY;
	drv->sq[slot] = *cmd;
	drv->sq_tail++;
	return (int)slot;
}

static int rw(struct sd_drv *drv, uint8_t op, uint64_t lba, uint32_t nblocks, uint64_t data,
	      uint8_t flags, uint32_t id)
{
	struct p2p_sd_cmd c = {
		.opcode = op, .flags = flags, .id = id, .lba = lba, .nblocks = nblocks, .data = data,
	};

	return sd_drv_submit(drv, &c);
}

int sd_drv_read(struct sd_drv *drv, uint64_t lba, uint32_t nblocks, uint64_t data,
		uint8_t flags, uint32_t id)
{
	return rw(drv, P2P_SD_OP_READ, lba, nblocks, data, flags, id);
}

int sd_drv_write(struct sd_drv *drv, uint64_t lba, uint32_t nblocks, uint64_t data,
		 uint8_t flags, uint32_t id)
{
	return rw(drv, P2P_SD_OP_WRITE, lba, nblocks, data, flags, id);
}

int sd_drv_flush(struct sd_drv *drv, uint8_t flags, uint32_t id)
{
	return rw(drv, P2P_SD_OP_FLUSH, 0, 0, 0, flags, id);
}

int sd_drv_kick(struct sd_drv *drv)
{
	/*
	 * The register write goes through the device's locks: it orders the
	 * commands written above before the device's fetch, no fence needed.
	 */
	return sd_drv_reg_write(drv, P2P_SD_REG_SQ_TAIL, drv->sq_tail, 4);
}

uint32_t sd_drv_ready(struct sd_drv *drv)
{
	/* As in sd_drv_kick(): the completions are visible once CQ_TAIL covers them. */
	return (uint32_t)sd_drv_reg_read(drv, P2P_SD_REG_CQ_TAIL, 4) - drv->cq_head;
}

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sd_drv_wait(struct sd_drv *drv, uint32_t n, int timeout_ms)
{
	struct pollfd pfd = { .fd = drv->efd, .events = POLLIN };
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : ms_now() + timeout_ms;
	uint32_t ready;

	while ((ready = sd_drv_ready(drv)) < n) {
		eventfd_t v;

		if (ms_now() >= deadline)
			return -ETIMEDOUT;
		/* Commands without P2P_SD_CMD_IRQ are seen by polling CQ_TAIL. */
		if (poll(&pfd, 1, 10) < 0 && errno != EINTR)
			return -errno;
		(void)eventfd_read(drv->efd, &v);
	}
	return (int)ready;
}

uint32_t sd_drv_reap(struct sd_drv *drv, struct p2p_sd_cqe *out, uint32_t max)
{
	uint32_t n = sd_drv_ready(drv);

	n = n < max ? n : max;
	for (uint32_t i = 0; i < n; i++)
		out[i] = drv->cq[(drv->cq_head + i) & (drv->entries - 1)];
	drv->cq_head += n;
	return n;
}

uint32_t sd_drv_run(struct sd_drv *drv, const struct p2p_sd_cmd *cmd, uint64_t *bytes)
{
	struct p2p_sd_cmd c = *cmd;
	struct p2p_sd_cqe cqe = { 0 };

	c.flags |= P2P_SD_CMD_IRQ;
	if (sd_drv_ready(drv) || sd_drv_submit(drv, &c) < 0 || sd_drv_kick(drv) ||
	    sd_drv_wait(drv, 1, -1) < 0 || sd_drv_reap(drv, &cqe, 1) != 1)
		return P2P_SD_PENDING;
	if (bytes)
		*bytes = cqe.bytes;
	return cqe.status;
}

void sd_drv_fini(struct sd_drv *drv)
{
	size_t sq_sz = drv_queue_bytes(drv->entries, sizeof(struct p2p_sd_cmd));
	size_t cq_sz = drv_queue_bytes(drv->entries, sizeof(struct p2p_sd_cqe));

	if (drv->vdev) {
		sd_drv_reg_write(drv, P2P_SD_REG_CTRL, 0, 4);
		drv_set_msi(drv->vdev, -1);
	}
	drv_queue_unmap(drv->ioas, sq_sz, drv->sq, drv->sq_iova, drv->sq_mapped);
	drv_queue_unmap(drv->ioas, cq_sz, drv->cq, drv->cq_iova, drv->cq_mapped);
	if (drv->efd >= 0)
		close(drv->efd);
	memset(drv, 0, sizeof(*drv));
	drv->efd = -1;
}
