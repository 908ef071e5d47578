/* SPDX-License-Identifier: MIT */
/*
 * What only the PCI function model itself (src/pci) uses, as the kernel's
 * drivers/pci/pci.h: the register layout of the emulated config space.
 * The VFIO layer goes through pci.h: pci_config_reset(), pci_config_get(),
 * pci_config_set(), pci_config_memory_decode() on its vconfig.
 */
#ifndef P2PBUF_PCI_PRIV_H
#define P2PBUF_PCI_PRIV_H

#include "../core/exporter.h" /* mem_create(): BAR memory */
#include "pci.h"

/* PCI_COMMAND bits */
#define CMD_IO 0x1
#define CMD_MEM 0x2
#define CMD_MASTER 0x4

/* Little-endian stores into a config space image. */
static inline void put16(uint8_t *p, unsigned int off, uint16_t v)
{
	p[off] = v & 0xff;
	p[off + 1] = v >> 8;
}

static inline void put32(uint8_t *p, unsigned int off, uint32_t v)
{
	put16(p, off, v & 0xffff);
	put16(p, off + 2, v >> 16);
}

#endif
