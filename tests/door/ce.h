/* SPDX-License-Identifier: MIT */
/*
 * The copy engine 0000:02:00.0 as its userspace driver knows it: the BAR0
 * register layout and the descriptor and completion formats (the device's
 * datasheet; the same values as p2pbuf's include/p2pbuf/devices.h, copied
 * here because a driver owns its device's header), and a minimal driver
 * that works through a VFIO device fd only: registers by pread/pwrite at
 * the BAR0 region's offset (VFIO_DEVICE_GET_REGION_INFO), ring and
 * completions in the process's memory, which the caller maps for DMA
 * (type1 MAP_DMA or IOMMU_IOAS_MAP), completion by polling HEAD.
 */
#ifndef DOOR_TEST_CE_H
#define DOOR_TEST_CE_H

#include <sched.h>
#include <time.h>

#include "kuapi.h"

#define CE_BDF "0000:02:00.0"
#define CE_REG_ID 0x00	      /* RO u32: CE_ID */
#define CE_REG_RING 0x08      /* u64: descriptor ring IOVA */
#define CE_REG_RING_SIZE 0x10 /* u32: entries, a power of two */
#define CE_REG_COMPL 0x18     /* u64: completion array IOVA */
#define CE_REG_DOORBELL 0x20  /* u32: the new tail (free-running) */
#define CE_REG_HEAD 0x24      /* RO u32: descriptors completed (free-running) */
#define CE_REG_CTRL 0x28      /* u32: CE_CTRL_ENABLE */
#define CE_REG_STATUS 0x2c    /* RO u32 */
#define CE_ID 0x45433250u     /* "P2CE" */
#define CE_CTRL_ENABLE 0x1

struct ce_desc { /* 32 bytes */
	uint64_t src, dst, len;
	uint32_t flags, id;
};

struct ce_compl { /* 16 bytes */
	uint32_t id, status;
	uint64_t bytes;
};

enum { CE_PENDING, CE_OK, CE_FAULT, CE_REVOKED, CE_PERM };

#define CE_ENTRIES 16

struct ce {
	int fd;
	uint64_t bar0;		 /* the BAR0 region's offset in the device fd */
	struct ce_desc *ring;	 /* 4 KiB of process memory, DMA-readable at ring_iova */
	struct ce_compl *compl; /* 4 KiB, DMA-writable at compl_iova */
	uint32_t tail;
};

static inline int ce_w(struct ce *ce, uint64_t reg, uint64_t v, size_t len)
{
	return pwrite(ce->fd, &v, len, (off_t)(ce->bar0 + reg)) == (ssize_t)len ? 0 : -1;
}

static inline uint64_t ce_r(struct ce *ce, uint64_t reg, size_t len)
{
	uint64_t v = 0;

	return pread(ce->fd, &v, len, (off_t)(ce->bar0 + reg)) == (ssize_t)len ? v : ~0ull;
}

/* Find BAR0, check the ID, program the queues and enable: 0 or -1. */
static inline int ce_init(struct ce *ce, int fd, void *ring, uint64_t ring_iova, void *compl,
			  uint64_t compl_iova)
{
	struct vfio_region_info r = { .argsz = sizeof(r), .index = VFIO_PCI_BAR0_REGION_INDEX };

	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &r) || r.size < 4096)
		return -1;
	*ce = (struct ce){ .fd = fd, .bar0 = r.offset, .ring = ring, .compl = compl };
	if (ce_r(ce, CE_REG_ID, 4) != CE_ID)
		return -1;
	if (ce_w(ce, CE_REG_RING, ring_iova, 8) || ce_w(ce, CE_REG_RING_SIZE, CE_ENTRIES, 4) ||
	    ce_w(ce, CE_REG_COMPL, compl_iova, 8) || ce_w(ce, CE_REG_CTRL, CE_CTRL_ENABLE, 4))
		return -1;
	ce->tail = (uint32_t)ce_r(ce, CE_REG_HEAD, 4);
	return 0;
}

/* One copy of @len bytes from IOVA @src to @dst: the completion status, 0 on a timeout. */
static inline uint32_t ce_copy(struct ce *ce, uint64_t src, uint64_t dst, uint64_t len)
{
	uint32_t idx = ce->tail & (CE_ENTRIES - 1);
	struct timespec t0, t;

	ce->ring[idx] = (struct ce_desc){ .src = src, .dst = dst, .len = len, .id = ce->tail };
	memset(&ce->compl[idx], 0, sizeof(ce->compl[idx]));
	ce->tail++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (ce_w(ce, CE_REG_DOORBELL, ce->tail, 4))
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((uint32_t)ce_r(ce, CE_REG_HEAD, 4) != ce->tail) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 10)
			return 0;
		sched_yield();
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return ce->compl[idx].status;
}

static inline void ce_stop(struct ce *ce)
{
	ce_w(ce, CE_REG_CTRL, 0, 4);
}

#endif
