// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ce_guest.h"

static uint64_t mmio_read(void *ctx, uint32_t off, unsigned int len)
{
	volatile uint8_t *p = (volatile uint8_t *)ctx + off;

	return len == 8 ? *(volatile uint64_t *)p : *(volatile uint32_t *)p;
}

static void mmio_write(void *ctx, uint32_t off, uint64_t v, unsigned int len)
{
	volatile uint8_t *p = (volatile uint8_t *)ctx + off;

	/* One 8-byte store: the engine ignores a 4-byte write to a u64's upper half. */
	if (len == 8)
		*(volatile uint64_t *)p = v;
	else
		*(volatile uint32_t *)p = (uint32_t)v;
}

const struct ce_io ce_io_mmio = { .read = mmio_read, .write = mmio_write };

static uint32_t rd32(struct ce_guest *ce, uint32_t off)
{
	return (uint32_t)ce->io->read(ce->io->ctx, off, 4);
}

static void wr(struct ce_guest *ce, uint32_t off, uint64_t v, unsigned int len)
{
	ce->io->write(ce->io->ctx, off, v, len);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int ce_guest_init(struct ce_guest *ce, const struct ce_io *io, void *ring, uint64_t ring_iova,
		  void *compl, uint64_t compl_iova, uint32_t entries, uint32_t *id)
{
	memset(ce, 0, sizeof(*ce));
	ce->io = io;
	*id = rd32(ce, CE_REG_ID);
	if (*id != CE_ID)
		return -ENODEV;
	if (!entries || entries > 65536 || (entries & (entries - 1)))
		return -EINVAL;
	ce->ring = ring;
	ce->compl = compl;
	ce->ring_iova = ring_iova;
	ce->compl_iova = compl_iova;
	ce->entries = entries;
	memset(ring, 0, (size_t)entries * sizeof(struct ce_desc));
	memset(compl, 0, (size_t)entries * sizeof(struct ce_compl));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(ce, CE_REG_CTRL, 0, 4);
	wr(ce, CE_REG_RING, ring_iova, 8);
	wr(ce, CE_REG_RING_SIZE, entries, 4);
	wr(ce, CE_REG_COMPL, compl_iova, 8);
	if (rd32(ce, CE_REG_RING_SIZE) != entries)
		return -EINVAL;
	wr(ce, CE_REG_CTRL, CE_CTRL_ENABLE, 4);
	ce->tail = rd32(ce, CE_REG_HEAD);
	return 0;
}

int ce_guest_copy(struct ce_guest *ce, uint64_t src, uint64_t dst, uint64_t len,
		  unsigned int timeout_ms, struct ce_compl *out)
{
	uint32_t idx = ce->tail, slot = idx & (ce->entries - 1);
	uint64_t deadline = now_ms() + timeout_ms;
	struct timespec pause = { 0, 100000 };

	/* Polled one at a time: the ring never holds more than one descriptor. */
	ce->ring[slot].src = src;
	ce->ring[slot].dst = dst;
	ce->ring[slot].len = len;
	ce->ring[slot].flags = 0; /* no MSI: the guest has no driver to take it */
	ce->ring[slot].id = idx;
	ce->compl[slot].id = 0;
	ce->compl[slot].status = CE_ST_PENDING;
	ce->compl[slot].bytes = 0;
	ce->tail = idx + 1;
	/* Descriptor and completion slot visible before the doorbell. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(ce, CE_REG_DOORBELL, ce->tail, 4);
	while ((int32_t)(rd32(ce, CE_REG_HEAD) - idx) <= 0) {
		if (now_ms() > deadline) {
			memset(out, 0, sizeof(*out));
			return -ETIMEDOUT;
		}
		nanosleep(&pause, NULL);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	out->id = ce->compl[slot].id;
	out->status = ce->compl[slot].status;
	out->bytes = ce->compl[slot].bytes;
	return 0;
}

void ce_guest_fini(struct ce_guest *ce)
{
	if (ce->io)
		wr(ce, CE_REG_CTRL, 0, 4);
}

const char *ce_status_name(uint32_t status)
{
	switch (status) {
	case CE_ST_PENDING: return "pending";
	case CE_ST_OK: return "ok";
	case CE_ST_FAULT: return "fault";
	case CE_ST_REVOKED: return "revoked";
	case CE_ST_PERM: return "perm";
	default: return "unknown";
	}
}
