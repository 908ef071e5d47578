/* SPDX-License-Identifier: MIT */
/*
 * The emulated PCI function model as the VFIO layer sees it (the part of
 * the kernel's include/linux/pci.h that vfio-pci uses): the function
 * (identity, BARs and their memory, bus addresses, device set, model ops
 * and reset), the driver bound to it, and the register layout and write
 * semantics of its config space (struct pci_config).  What only the model
 * itself uses is in pci_priv.h.
 *
 * What vfio-pci keeps in the kernel's struct vfio_pci_core_device (the
 * open count, the live config space or vconfig, the low-power state, the
 * function's dma-bufs, its IOAS and interrupt eventfds) is the driver's:
 * src/vfio/vfio_priv.h, behind dev->driver_data.  The model reaches it
 * only through the driver's ops (struct pci_driver).
 *
 * Locks (their order: docs/locking.md): set->lock serializes a hot reset
 * over the set and protects its list.  A function's fields here are set
 * at creation and do not change, but for backend_state; the driver's
 * state has its own locks.
 *
 * backend_state is hardware state (the kernel's pci_dev->error_state, not
 * vfio-pci's): whether the memory behind the BARs is there (a remote
 * function's backend revoked it, or died).  It is an atomic, written by
 * p2p_pci_dev_backend_state() only (GONE is final), read by anyone; the
 * driver reacts to a change through pci_driver.backend_changed, under its
 * own locks, reading the state again there (so the last change wins).
 */
#ifndef P2PBUF_PCI_H
#define P2PBUF_PCI_H

#include <p2pbuf/file.h>
#include <p2pbuf/vfio.h>

#include "../util/private.h"

#define P2P_PCI_MAX_VECTORS 8

struct p2p_pci_devset {
	struct kref ref;
	pthread_mutex_t lock;
	struct list_head devs; /* under lock */
};

/*
 * The driver of a function (the kernel's struct pci_driver): every
 * function is bound to vfio_pci_driver at creation.
 * @probe: create the driver's state (dev->driver_data) before the function
 *	joins its device set; 0 or -errno (-ENOMEM)
 * @remove: free it, once the function's last reference is gone and the
 *	model's release has run
 * @config_read: bytes [@off, @off + @len) of the config space as the
 *	function shows it now (the range is checked); 0 or -errno
 * @backend_changed: dev->backend_state changed (the kernel's
 *	pci_error_handlers.error_detected / resume): apply the state read
 *	now (not OK: memory disabled, dma-bufs revoked; GONE: for good; OK:
 *	restored if memory decoding is on); called with no lock held; 0 or
 *	the error of a CPU mapping that could not be revoked
 */
struct pci_driver {
	int (*probe)(struct p2p_pci_dev *dev);
	void (*remove)(struct p2p_pci_dev *dev);
	int (*config_read)(struct p2p_pci_dev *dev, unsigned int off, void *buf, size_t len);
	int (*backend_changed)(struct p2p_pci_dev *dev);
};

/* src/vfio/vfio_main.c */
extern const struct pci_driver vfio_pci_driver;

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
	_Atomic uint8_t backend_state; /* enum p2p_pci_backend_state (see above) */

	const struct pci_driver *driver;
	void *driver_data; /* the driver's (struct vfio_pci_core), opaque here */
};

/*
 * A config space image: the registers, the bits a write may change, and
 * the BAR registers (apart: their address bits are masked by the BAR
 * size).  pci_config_reset() fills one as the function shows it after a
 * reset; the live copy is the driver's (its vconfig), under its locks.
 */
struct pci_config {
	uint8_t config[P2P_PCI_CFG_SIZE];
	uint8_t wmask[P2P_PCI_CFG_SIZE];
	uint32_t bar_regs[6];
};

/* enum p2p_pci_backend_state of @dev (GONE: the function is removed). */
static inline int pci_backend_state(const struct p2p_pci_dev *dev)
{
	return atomic_load_explicit(&((struct p2p_pci_dev *)dev)->backend_state,
				    memory_order_acquire);
}

/* src/pci/pci.c */
void pci_config_reset(const struct p2p_pci_dev *dev, struct pci_config *cfg);
/* Does the function decode memory with @cfg: D0 to D2, and COMMAND.MEM set (a VF ignores it)? */
bool pci_config_memory_decode(const struct p2p_pci_dev *dev, const struct pci_config *cfg);
uint32_t pci_config_get(const struct pci_config *cfg, unsigned int off, unsigned int size);
void pci_config_set(const struct p2p_pci_dev *dev, struct pci_config *cfg, unsigned int off,
		    unsigned int size, uint32_t v);
void pci_dev_get(struct p2p_pci_dev *dev);

#endif
