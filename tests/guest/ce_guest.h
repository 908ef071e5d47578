/* SPDX-License-Identifier: MIT */
/*
 * A polling driver for the p2pbuf copy engine (ce_regs.h), shared by the
 * guest program (registers through an mmap of BAR0) and the host test
 * (registers through the VFIO region of an emulated engine).
 */
#ifndef P2P_GUEST_CE_GUEST_H
#define P2P_GUEST_CE_GUEST_H

#include <stdint.h>

#include "ce_regs.h"

/* Register access: 4- or 8-byte, naturally aligned. */
struct ce_io {
	void *ctx;
	uint64_t (*read)(void *ctx, uint32_t off, unsigned int len);
	void (*write)(void *ctx, uint32_t off, uint64_t v, unsigned int len);
};

struct ce_guest {
	const struct ce_io *io;
	volatile struct ce_desc *ring;	  /* CPU view of the ring ... */
	volatile struct ce_compl *compl;  /* ... and of the completions */
	uint64_t ring_iova, compl_iova;
	uint32_t entries, tail;
};

/* MMIO accessors for a mapped BAR0 (ctx = the mapping). */
extern const struct ce_io ce_io_mmio;

/*
 * ce_guest_init() - check the ID, program ring and completions, enable
 * @ring/@compl: CPU addresses of @entries descriptors / completion records,
 *	zeroed here; @ring_iova/@compl_iova: the same memory as the engine
 *	addresses it (the guest physical address in the guest)
 * @id: out, the ID register as read
 * Return: 0, -ENODEV (ID is not CE_ID), -EINVAL (@entries not a power of
 * two <= 65536, or the engine did not take the ring size).
 */
int ce_guest_init(struct ce_guest *ce, const struct ce_io *io, void *ring, uint64_t ring_iova,
		  void *compl, uint64_t compl_iova, uint32_t entries, uint32_t *id);

/*
 * ce_guest_copy() - queue one copy, ring the doorbell, poll HEAD
 * @out: the completion record (status CE_ST_*, bytes)
 * Return: 0 once the engine completed the descriptor (whatever its
 * status), -ETIMEDOUT after @timeout_ms (out->status then CE_ST_PENDING).
 */
int ce_guest_copy(struct ce_guest *ce, uint64_t src, uint64_t dst, uint64_t len,
		  unsigned int timeout_ms, struct ce_compl *out);

/* ce_guest_fini() - CTRL = 0. */
void ce_guest_fini(struct ce_guest *ce);

const char *ce_status_name(uint32_t status);

#endif
