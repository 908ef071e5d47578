/* SPDX-License-Identifier: MIT */
/*
 * The VFIO layer's private header: what the files of src/vfio share, as
 * drivers/vfio/vfio.h and vfio_pci_priv.h.
 *
 *   vfio_main.c - the device file: create, open/close (open_device /
 *		   close_device), region read/write, BAR mmap, file ops
 *   config.c    - config space emulation and its revoke triggers
 *		   (kernel-semantics 1.7)
 *   reset.c     - VFIO_DEVICE_RESET and VFIO_DEVICE_PCI_HOT_RESET
 *   ioctls.c    - the device ioctl table and its dispatcher, features,
 *		   the cdev ioctls (BIND_IOMMUFD, ATTACH/DETACH_IOMMUFD_PT)
 *   dmabuf.c    - the VFIO dma-buf exporter
 *   dma_irq.c   - device DMA through an IOAS, MSI eventfds
 *   group.c     - the registry, groups (/dev/vfio/N), the device cdev
 *   container.c - containers (/dev/vfio/vfio) and type1
 *
 * The PCI function model is reached through src/pci/pci.h only (VFIO is
 * the driver bound to every function: vfio_pci_driver, vfio_main.c); the
 * dma-buf core through the public API and src/core/exporter.h; the IOMMU
 * layer through the public API (include/p2pbuf/iommu.h).  Locks: each file
 * says what its own protect; their order is docs/locking.md's.
 */
#ifndef P2PBUF_VFIO_PRIV_H
#define P2PBUF_VFIO_PRIV_H

#include <fcntl.h>

#include <p2pbuf/file.h>
#include <p2pbuf/iommu.h>
#include <p2pbuf/vfio.h>

#include "../core/exporter.h"
#include "../pci/pci.h"

struct vfio_group;
struct vfio_container;
struct p2p_iommufd_device;

/*
 * The VFIO state of a function (the kernel's struct vfio_pci_core_device):
 * created with the function (vfio_pci_driver.probe), freed with it
 * (.remove); the function's driver_data.
 *
 * Locks: open_lock the open count and the vconfig reset at first open;
 * memory_lock (rw, vfio-pci's memory_lock) the vconfig, the low-power
 * state and the list of the function's dma-bufs (dmabuf.c); dma_lock (rw)
 * its IOAS and interrupt eventfds (dma_irq.c).  Order: docs/locking.md.
 * The backend state (revoked or gone) is not here: it is the function's
 * (hardware state, pci.h's backend_state, an atomic); memory_lock only
 * orders this driver's reaction to it (vfio_backend_changed()): memory
 * decoding reads it under memory_lock, every change is followed by a
 * backend_changed that takes memory_lock and applies the state then.
 */
struct vfio_pci_core {
	struct p2p_pci_dev *pdev;

	pthread_mutex_t open_lock;
	unsigned int open_count;

	/* The rest is under memory_lock (write to change). */
	pthread_rwlock_t memory_lock;
	struct pci_config vconfig; /* valid while open */
	bool low_power;
	struct list_head dmabufs; /* struct vfio_dmabuf */

	/* Device DMA and interrupts (dma_irq.c), under dma_lock. */
	pthread_rwlock_t dma_lock;
	struct p2p_ioas *ioas;
	int irq_fds[P2P_PCI_MAX_VECTORS];
	int err_fd, req_fd; /* VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX triggers */
};

/* The VFIO state of @dev (pci_get_drvdata()). */
static inline struct vfio_pci_core *vfio_pci_core(const struct p2p_pci_dev *dev)
{
	return dev->driver_data;
}

/*
 * One open device file (the kernel's struct vfio_device_file): the file
 * holds one reference, each BAR mmap one more; the last one closes the
 * device (close_device semantics).
 */
struct p2p_vfio_device {
	struct kref ref;
	struct p2p_pci_dev *pdev;
	struct p2p_file *file; /* NULL once the file is released (mmaps may remain) */
	bool opened;	       /* counted in the function's open_count */
	bool cdev;	       /* /dev/vfio/devices/vfioN: nothing but BIND until bound */
	struct vfio_group *group; /* from VFIO_GROUP_GET_DEVICE_FD: holds the group file */
	pthread_mutex_t lock;	  /* bind, attach, detach */
	struct p2p_iommufd_device *idev; /* bound (cdev), under lock */
	atomic_bool access_granted;
};

/* Device access is blocked on a cdev until BIND_IOMMUFD opened the device. */
static inline bool vfio_access_granted(struct p2p_vfio_device *vdev)
{
	return !vdev->cdev || atomic_load_explicit(&vdev->access_granted, memory_order_acquire);
}

/*
 * The argsz framing of VFIO ioctls, done once by each ioctl table's
 * dispatcher: copy the caller's first @minsz bytes (argsz first) into
 * @buf, zeroed to @size first; -EFAULT if they cannot be read, -EINVAL if
 * argsz does not cover them.
 */
static inline int vfio_ucmd_in(void *arg, void *buf, size_t size, uint32_t minsz)
{
	uint32_t argsz;

	memset(buf, 0, size);
	if (copy_from_user(buf, arg, minsz))
		return -EFAULT;
	memcpy(&argsz, buf, sizeof(argsz));
	return argsz < minsz ? -EINVAL : 0;
}

#define VFIO_MINSZ(type, last) ((uint32_t)(offsetof(type, last) + sizeof(((type *)0)->last)))
/* Index of a VFIO ioctl in a table: _IO(VFIO_TYPE, VFIO_BASE + n) is row n. */
#define VFIO_IOCTL_NR(cmd) (_IOC_NR(cmd) - VFIO_BASE)

/* Return the fd, or -errno; the fd holds the file's only reference. */
static inline int vfio_file_install_new(struct p2p_file *f, int flags)
{
	int fd = p2p_file_install(f, flags & O_CLOEXEC);

	p2p_file_put(f); /* the creator's reference: the fd keeps its own */
	return fd;
}

/* vfio_main.c */
int vfio_device_create(struct p2p_pci_dev *dev, bool cdev, int oflags,
		       struct p2p_vfio_device **out);
void vfio_device_open_device(struct p2p_vfio_device *vdev);
void vfio_device_close_device(struct p2p_vfio_device *vdev);
void vfio_device_file_put(struct p2p_vfio_device *vdev);

/* config.c */
/* Memory decoding on: open, not in low power, and the vconfig decodes (1.7). memory_lock held. */
bool vfio_memory_enabled_locked(const struct p2p_pci_dev *dev);
/* The vconfig as after reset, low power off.  memory_lock held for write. */
void vfio_vconfig_reset(struct p2p_pci_dev *dev);
int vfio_config_read_raw(struct p2p_pci_dev *dev, unsigned int off, void *buf, size_t len);
int vfio_config_access(struct p2p_vfio_device *vdev, uint8_t *buf, size_t len, uint64_t off,
		       bool write);

/* reset.c */
long vfio_ioctl_hot_reset(struct p2p_vfio_device *vdev, void *arg, void *cmd);

/* dma_irq.c */
void vfio_dma_irq_init(struct vfio_pci_core *vc);
/* Drop the function's IO address space and close its interrupt triggers (close_device). */
void vfio_dma_irq_close(struct vfio_pci_core *vc);
void vfio_dma_irq_release(struct vfio_pci_core *vc);
/* vfio_pci_core_request(): signal the REQ trigger, if set (unregister). */
void vfio_pci_request(struct p2p_pci_dev *dev);
long vfio_ioctl_get_irq_info(struct p2p_vfio_device *vdev, void *arg, void *cmd);
long vfio_ioctl_set_irqs(struct p2p_vfio_device *vdev, void *arg, void *cmd);

/* dmabuf.c: the VFIO exporter */
int vfio_dmabufs_move(struct p2p_pci_dev *dev, bool revoke);
void vfio_dmabufs_cleanup(struct p2p_pci_dev *dev);
/* pci_driver.backend_changed: apply pci_backend_state(); takes memory_lock. */
int vfio_backend_changed(struct p2p_pci_dev *dev);
int vfio_feature_dma_buf(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
			 void *data);
int vfio_feature_dma_buf_revoke(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
				void *data);
int vfio_feature_dma_buf_memattr(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
				 void *data);
int vfio_check_feature(uint32_t flags, uint32_t argsz, uint32_t supported, uint32_t minsz);
int vfio_bar_dmabuf_create(struct p2p_vfio_device *vdev, int bar, uint64_t off, uint64_t len,
			   struct p2p_dmabuf **out);

/* group.c: the registry, groups */
int vfio_group_block(uint32_t group);
void vfio_group_unblock(uint32_t group);
void vfio_group_device_closed(struct vfio_group *group);

/* container.c: containers and type1, for groups (vfio_lock held) */
struct vfio_container *vfio_container_from_fd(int fd, struct p2p_file **file);
void vfio_container_attach_group(struct vfio_container *c);
struct p2p_file *vfio_container_detach_group(struct vfio_container *c);
struct p2p_ioas *vfio_container_ioas_get(struct vfio_container *c);

#endif
