/* SPDX-License-Identifier: MIT */
/*
 * The emulated PCI function model as the VFIO layer sees it (the part of
 * the kernel's include/linux/pci.h and vfio_pci_core_device that vfio-pci
 * uses): the function, its device set, the virtual config space accessors.
 * What only the model itself uses is in pci_priv.h.
 *
 * Locks (their order: docs/locking.md): set->lock serializes a hot reset
 * over the set and protects its list; dev->open_lock the open count and
 * the config space set-up at first open; dev->memory_lock (rw, the
 * vfio-pci memory_lock) the config space, low-power state and the list of
 * the function's dma-bufs; dev->dma_lock (rw) its IOAS and interrupt
 * eventfds.
 */
#ifndef P2PBUF_PCI_H
#define P2PBUF_PCI_H

#include <p2pbuf/file.h>
#include <p2pbuf/vfio.h>

#include "../core/core.h"

#define P2P_PCI_MAX_VECTORS 8

struct p2p_pci_devset {
	struct kref ref;
	pthread_mutex_t lock;
	struct list_head devs; /* under lock */
};

struct p2p_pci_dev {
	struct kref ref;
	char name[32];
	uint32_t flags;
	uint16_t vendor_id, device_id;
	uint32_t class_code;
	uint32_t group;
	struct p2p_pci_devset *set;
	struct list_head set_node;
	struct p2p_pci_bar_desc bars[6];
	struct p2p_mem *bar_mem[6];
	uint64_t bar_bus[6]; /* emulated bus address of each BAR */
	const struct p2p_pci_dev_ops *ops;
	void *priv;

	pthread_mutex_t open_lock;
	unsigned int open_count;

	/* The rest is under memory_lock (write to change). */
	pthread_rwlock_t memory_lock;
	uint8_t config[P2P_PCI_CFG_SIZE]; /* vconfig, valid while open */
	uint8_t wmask[P2P_PCI_CFG_SIZE];
	uint32_t bar_regs[6];
	bool low_power;
	uint8_t backend_state; /* enum p2p_pci_backend_state: not OK keeps memory disabled */
	struct list_head dmabufs; /* struct vfio_dmabuf */

	/* Device DMA and interrupts (set by src/vfio/dma_irq.c), under dma_lock. */
	pthread_rwlock_t dma_lock;
	struct p2p_ioas *ioas;
	int irq_fds[P2P_PCI_MAX_VECTORS];
	int err_fd, req_fd; /* VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX triggers */
};

/* src/pci/pci.c */
void pci_config_reset(struct p2p_pci_dev *dev);
bool pci_memory_enabled_locked(const struct p2p_pci_dev *dev);
uint32_t pci_config_get(const struct p2p_pci_dev *dev, unsigned int off, unsigned int size);
void pci_config_set(struct p2p_pci_dev *dev, unsigned int off, unsigned int size, uint32_t v);
void pci_dev_get(struct p2p_pci_dev *dev);

/* Drop the function's IO address space and close its interrupt triggers (close_device). */
void pci_dma_irq_close(struct p2p_pci_dev *dev);
void pci_irq_request(struct p2p_pci_dev *dev);


#endif
