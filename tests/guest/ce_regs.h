/* SPDX-License-Identifier: MIT */
/*
 * The p2pbuf copy engine as a guest driver sees it: a mirror of the
 * register layout and ring formats in include/p2pbuf/devices.h (used by
 * src/devices/copy_engine.c and tools/ce_driver.c), kept free of the
 * library's headers so the guest program builds on its own.
 * tests/guest/ce-hosttest.c checks that both agree.
 *
 * PCI identity (src/devices/copy_engine.c): 1b36:0111, class 0x088000.
 * BAR0: 4 KiB of registers, little endian.  Accesses must be 4 or 8 bytes
 * and naturally aligned; the 64-bit registers (RING, COMPL) must be written
 * with one 8-byte access (a 4-byte write to their upper half is ignored).
 *
 * Addresses in registers and descriptors are IOVAs.  Under QEMU's vfio-pci
 * the container maps guest RAM at its guest physical address and BAR mmaps
 * at the BARs' guest physical addresses, so in the guest IOVA = GPA, and a
 * descriptor whose dst is another device's BAR address is a peer-to-peer
 * copy.
 *
 * Driving it (as tools/ce_driver.c does):
 *   read ID == CE_ID; write RING (8 bytes), RING_SIZE (power of two
 *   <= 65536), COMPL (8 bytes), CTRL = ENABLE; tail = HEAD.
 *   Per copy: ring[tail & (n-1)] = desc; compl[same] = 0; tail++;
 *   write DOORBELL = tail (free running); the engine processes
 *   descriptors in order and bumps HEAD after writing each completion.
 *   Done when (int32_t)(HEAD - idx) > 0; then compl[idx].status.
 *   A descriptor with DESC_IRQ raises MSI vector 0 (the guest polls HEAD).
 */
#ifndef P2P_GUEST_CE_REGS_H
#define P2P_GUEST_CE_REGS_H

#include <stdint.h>

#define CE_PCI_VENDOR 0x1b36
#define CE_PCI_DEVICE 0x0111

#define CE_REG_ID 0x00	      /* RO u32: CE_ID */
#define CE_REG_RING 0x08      /* u64: descriptor ring IOVA */
#define CE_REG_RING_SIZE 0x10 /* u32: entries, a power of two <= 65536 */
#define CE_REG_COMPL 0x18     /* u64: completion array IOVA */
#define CE_REG_DOORBELL 0x20  /* u32: write the new tail (free-running) */
#define CE_REG_HEAD 0x24      /* RO u32: descriptors completed (free-running) */
#define CE_REG_CTRL 0x28      /* u32: CE_CTRL_* */
#define CE_REG_STATUS 0x2c    /* RO u32: CE_STATUS_* */
#define CE_BAR0_SIZE 4096
#define CE_ID 0x45433250u /* "P2CE" */

#define CE_CTRL_ENABLE 0x1
#define CE_STATUS_BUSY 0x1
#define CE_STATUS_RING_FAULT 0x2 /* a descriptor or completion was unreachable */

/* One copy, 32 bytes in the ring. */
struct ce_desc {
	uint64_t src; /* source IOVA */
	uint64_t dst; /* destination IOVA */
	uint64_t len; /* bytes */
	uint32_t flags; /* CE_DESC_* */
	uint32_t id;	/* echoed in the completion */
};
#define CE_DESC_IRQ 0x1 /* raise MSI vector 0 when done */

/* One completion record, 16 bytes, at the same index as its descriptor. */
struct ce_compl {
	uint32_t id;
	uint32_t status; /* CE_ST_* */
	uint64_t bytes;	 /* bytes copied before the status happened */
};

#define CE_ST_PENDING 0
#define CE_ST_OK 1
#define CE_ST_FAULT 2	/* translation fault: nothing mapped */
#define CE_ST_REVOKED 3 /* the mapping's dma-buf was revoked */
#define CE_ST_PERM 4	/* the mapping does not allow the access */

_Static_assert(sizeof(struct ce_desc) == 32, "descriptor is 32 bytes");
_Static_assert(sizeof(struct ce_compl) == 16, "completion is 16 bytes");

#endif
