/* SPDX-License-Identifier: MIT */
/*
 * The functions of the DOOR.md contract that the door calls and that the
 * "vfio" and "filelayer" branches define (constructors, the VFIO registry,
 * config space and BAR info for sysfs, bufinfo).
 *
 * They are declared weak here: until those branches are merged the door
 * builds and links without them, finds them NULL at run time and says so
 * (an open of /dev/vfio/... fails with ENODEV and one line on stderr).
 * Once merged, the real (strong) definitions from the static library bind
 * to these references; libp2pbuf.a is linked whole into the preload
 * library, because an archive member is never pulled in for a weak
 * reference alone.  On merge this header may be replaced by the real
 * headers plus `#define DOOR_HAVE(fn) 1`.
 */
#ifndef P2PBUF_DOOR_CONTRACT_H
#define P2PBUF_DOOR_CONTRACT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct p2p_pci_dev;

#define DOOR_WEAK __attribute__((weak))

/* /dev/vfio/vfio, /dev/vfio/N, /dev/vfio/devices/vfioN, /dev/iommu, /dev/dma_heap/NAME */
DOOR_WEAK int p2p_vfio_container_open_fd(int flags);
DOOR_WEAK int p2p_vfio_group_open_fd(unsigned int group, int flags);
DOOR_WEAK int p2p_vfio_cdev_open_fd(unsigned int index, int flags);
DOOR_WEAK int p2p_iommufd_open_fd(int flags);
DOOR_WEAK int p2p_dma_heap_open_fd(const char *name, int flags);

/* The registry of functions visible to VFIO users. */
DOOR_WEAK int p2p_vfio_register(struct p2p_pci_dev *pdev, unsigned int *cdev_index);
DOOR_WEAK void p2p_vfio_unregister(struct p2p_pci_dev *pdev);

/* sysfs */
DOOR_WEAK int p2p_pci_dev_config_read(struct p2p_pci_dev *pdev, unsigned int off, void *buf,
				      size_t len);
DOOR_WEAK int p2p_pci_dev_bar_info(struct p2p_pci_dev *pdev, int bar, uint64_t *bus_addr,
				   uint64_t *size, uint32_t *flags);

/* /sys/kernel/debug/dma_buf/bufinfo */
DOOR_WEAK ssize_t p2p_dmabuf_bufinfo(char *buf, size_t len);

/* Is @fn linked in?  (The casts keep compilers from calling the test always true.) */
#define DOOR_HAVE(fn) ((uintptr_t)(void *)&(fn) != 0)

#endif
