/* SPDX-License-Identifier: MIT */
/*
 * Emulated PCI functions: internals shared by src/pci and src/vfio.
 *
 * Lock order: set->lock (hot reset), then dev->memory_lock (rw, the
 * vfio-pci memory_lock), then dma-buf resv and below (src/core/core.h).
 * dev->open_lock protects open_count and vconfig setup; it is taken before
 * memory_lock, never inside it.
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
	struct list_head dmabufs; /* struct vfio_dmabuf */

	/* Device DMA and interrupts (src/vfio/dma_irq.c), under dma_lock. */
	pthread_rwlock_t dma_lock;
	struct p2p_ioas *ioas;
	int irq_fds[P2P_PCI_MAX_VECTORS];
	int err_fd, req_fd; /* VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX triggers */
};

struct vfio_group;
struct p2p_iommufd_device;

/*
 * One open device file (the kernel's struct vfio_device_file): the file
 * holds one reference, each BAR mmap one more; the last one closes the
 * device (close_device semantics).
 */
struct p2p_vfio_device {
	struct kref ref;
	struct p2p_pci_dev *pdev;
	struct p2p_file *file; /* NULL once the file is released (mmaps may remain) */
	bool opened;	       /* counted in pdev->open_count */
	bool cdev;	       /* /dev/vfio/devices/vfioN: nothing but BIND until bound */
	struct vfio_group *group; /* from VFIO_GROUP_GET_DEVICE_FD: holds the group file */
	pthread_mutex_t lock;	  /* bind, attach, detach */
	struct p2p_iommufd_device *idev; /* bound (cdev), under lock */
	atomic_bool access_granted;
};

/* src/pci/pci.c */
void pci_config_reset(struct p2p_pci_dev *dev);
bool pci_memory_enabled_locked(const struct p2p_pci_dev *dev);
uint32_t pci_config_get(const struct p2p_pci_dev *dev, unsigned int off, unsigned int size);
void pci_config_set(struct p2p_pci_dev *dev, unsigned int off, unsigned int size, uint32_t v);
void pci_dev_get(struct p2p_pci_dev *dev);

/* src/vfio/dma_irq.c */
void pci_dma_irq_init(struct p2p_pci_dev *dev);
void pci_dma_irq_release(struct p2p_pci_dev *dev);
void pci_dma_irq_close(struct p2p_pci_dev *dev);
long vfio_ioctl_get_irq_info(struct p2p_vfio_device *vdev, void *arg);
long vfio_ioctl_set_irqs(struct p2p_vfio_device *vdev, void *arg);
void pci_irq_request(struct p2p_pci_dev *dev);

/* src/vfio/dmabuf.c: the VFIO exporter */
int vfio_dmabufs_move(struct p2p_pci_dev *dev, bool revoke);
void vfio_dmabufs_cleanup(struct p2p_pci_dev *dev);
int vfio_feature_dma_buf(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
			 void *data);
int vfio_feature_dma_buf_revoke(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
				void *data);
int vfio_feature_dma_buf_memattr(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
				 void *data);
int vfio_check_feature(uint32_t flags, uint32_t argsz, uint32_t supported, uint32_t minsz);
int vfio_bar_dmabuf_create(struct p2p_vfio_device *vdev, int bar, uint64_t off, uint64_t len,
			   struct p2p_dmabuf **out);
void vfio_device_file_put(struct p2p_vfio_device *vdev);
int vfio_device_create(struct p2p_pci_dev *dev, bool cdev, int oflags,
		       struct p2p_vfio_device **out);
void vfio_device_open_device(struct p2p_vfio_device *vdev);

/* src/vfio/group.c: groups, containers (type1), the registry */
int vfio_group_block(uint32_t group);
void vfio_group_unblock(uint32_t group);
void vfio_group_device_closed(struct vfio_group *group);

#endif
