/* SPDX-License-Identifier: MIT */
/*
 * The copy engine driven through a VFIO device fd only, as a program using
 * the kernel uAPI drives it: registers by pread/pwrite of the BAR0 region,
 * ring and completions in process memory the caller maps for DMA (type1
 * MAP_DMA or IOMMU_IOAS_MAP), completion by polling HEAD.
 */
#ifndef P2PBUF_TEST_CE_FD_H
#define P2PBUF_TEST_CE_FD_H

#include <sched.h>
#include <time.h>

#include "harness.h"

#define CE_FD_ENTRIES 16

struct ce_fd {
	int fd;
	struct p2p_ce_desc *ring; /* 4 KiB, mapped READABLE at ring_iova */
	struct p2p_ce_compl *compl; /* 4 KiB, mapped READ|WRITE at compl_iova */
	uint32_t tail;
};

static inline int ce_fd_w(int fd, uint64_t reg, uint64_t v, size_t len)
{
	return p2p_fd_pwrite(fd, &v, len, P2P_VFIO_REGION_OFFSET(0) + reg) == (ssize_t)len ? 0 : -1;
}

static inline uint64_t ce_fd_r(int fd, uint64_t reg, size_t len)
{
	uint64_t v = 0;

	if (p2p_fd_pread(fd, &v, len, P2P_VFIO_REGION_OFFSET(0) + reg) != (ssize_t)len)
		return ~0ull;
	return v;
}

/* Program and enable the engine: 0, or -1. */
static inline int ce_fd_init(struct ce_fd *ce, int fd, void *ring, uint64_t ring_iova,
			     void *compl, uint64_t compl_iova)
{
	ce->fd = fd;
	ce->ring = ring;
	ce->compl = compl;
	if (ce_fd_r(fd, P2P_CE_REG_ID, 4) != P2P_CE_ID)
		return -1;
	if (ce_fd_w(fd, P2P_CE_REG_RING, ring_iova, 8) ||
	    ce_fd_w(fd, P2P_CE_REG_RING_SIZE, CE_FD_ENTRIES, 4) ||
	    ce_fd_w(fd, P2P_CE_REG_COMPL, compl_iova, 8) ||
	    ce_fd_w(fd, P2P_CE_REG_CTRL, P2P_CE_CTRL_ENABLE, 4))
		return -1;
	ce->tail = (uint32_t)ce_fd_r(fd, P2P_CE_REG_HEAD, 4);
	return 0;
}

/* One copy; returns the completion status (enum p2p_ce_status), 0 on a timeout. */
static inline uint32_t ce_fd_copy(struct ce_fd *ce, uint64_t src, uint64_t dst, uint64_t len)
{
	uint32_t idx = ce->tail & (CE_FD_ENTRIES - 1);
	struct timespec t0, t;

	ce->ring[idx] = (struct p2p_ce_desc){ .src = src, .dst = dst, .len = len, .id = ce->tail };
	memset(&ce->compl[idx], 0, sizeof(ce->compl[idx]));
	ce->tail++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (ce_fd_w(ce->fd, P2P_CE_REG_DOORBELL, ce->tail, 4))
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((uint32_t)ce_fd_r(ce->fd, P2P_CE_REG_HEAD, 4) != ce->tail) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 10)
			return 0;
		sched_yield();
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return ce->compl[idx].status;
}

#endif
