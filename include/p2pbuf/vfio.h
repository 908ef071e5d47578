/* SPDX-License-Identifier: MIT */
/*
 * Emulated PCI functions and the VFIO device layer over them.
 *
 * A struct p2p_pci_dev is the "hardware": a virtual config space, up to six
 * BARs whose memory lives in memfds, a reset method and a device set for
 * hot reset.  A struct p2p_vfio_device is one open file of such a function,
 * driven as vfio-pci drives a device: region reads and writes at
 * index << 40 offsets, ioctls with the kernel's structures, BAR mmap through
 * dma-bufs, and VFIO_DEVICE_FEATURE DMA_BUF export.
 *
 * Locking: a function's memory lock (rw) serializes its revoke triggers;
 * the lock order of the whole library is docs/locking.md.
 */
#ifndef P2PBUF_VFIO_H
#define P2PBUF_VFIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <p2pbuf/common.h>
#include <p2pbuf/dmabuf.h>
#include <p2pbuf/uapi.h>
#include <p2pbuf/iommu.h>

#ifdef __cplusplus
extern "C" {
#endif

struct p2p_pci_dev;
struct p2p_pci_devset;
struct p2p_vfio_device;

/** BAR description flags */
enum {
	P2P_BAR_MEM64 = 1u << 0,    /* 64-bit memory BAR (takes two BAR slots) */
	P2P_BAR_PREFETCH = 1u << 1, /* prefetchable */
	P2P_BAR_IO = 1u << 2,	    /* I/O-port BAR: no P2P provider, no mmap */
	P2P_BAR_TRAP = 1u << 3,	    /* registers: accesses go to ops->bar_rw, no mmap/export */
};

/** struct p2p_pci_bar_desc - @size: power of two (0: no BAR); @flags: P2P_BAR_* */
struct p2p_pci_bar_desc {
	uint64_t size;
	uint32_t flags;
};

/** Function flags */
enum {
	P2P_PCI_VF = 1u << 0,	      /* ignores COMMAND.MEM, as SR-IOV VFs do */
	P2P_PCI_NO_FLR = 1u << 1,     /* no FLR capability: VFIO_DEVICE_RESET gives EINVAL */
	P2P_PCI_NO_DMABUF = 1u << 2,  /* a variant driver without get_dmabuf_phys: EOPNOTSUPP */
	P2P_PCI_HUGE = 1u << 3,	      /* back BAR memory with transparent huge pages */
	P2P_PCI_PREFAULT = 1u << 4,   /* pre-fault BAR memory at creation, on all cores */
};

/**
 * struct p2p_pci_dev_ops - device model callbacks (all optional)
 * @reset: device-specific state reset on FLR, VFIO_DEVICE_RESET and hot
 *	reset; called with the function's memory lock held for write.
 * @bar_rw: accesses to a P2P_BAR_TRAP BAR; return 0 or -errno.
 * @release: the function is being destroyed.
 *
 * Backend hooks, for a function whose device lives elsewhere (a vfio-user
 * server); each is called with none of the function's locks held, after
 * the local emulation took its effect:
 * @config_write: a config space write (@len bytes at @off) that reached
 *	the virtual config space; its return is the write's error, if any.
 * @reset_done: VFIO_DEVICE_RESET or a hot reset of the function happened
 *	(an FLR through DEVCTL is a config write).
 * @ioas_attach: the function's DMA now goes through @ioas (attach or
 *	replace); a failure fails the attach.  Typically attaches a domain
 *	(p2p_ioas_domain_attach()) that mirrors the IOAS to the backend.
 * @ioas_detach: the function's DMA no longer goes through @ioas.
 * @set_irqs: VFIO_DEVICE_SET_IRQS with DATA_EVENTFD (ACTION_TRIGGER) took
 *	effect: vectors [@start, +@count) of @index signal @fds (the
 *	caller's fds, -1 for none), or with @count 0 and @fds NULL: every
 *	vector of @index was disabled.  Its error is the ioctl's.
 */
struct p2p_pci_dev_ops {
	void (*reset)(struct p2p_pci_dev *dev);
	int (*bar_rw)(struct p2p_pci_dev *dev, int bar, uint64_t offset, void *data, size_t len,
		      bool write);
	void (*release)(struct p2p_pci_dev *dev);
	int (*config_write)(struct p2p_pci_dev *dev, unsigned int off, const void *data,
			    size_t len);
	int (*reset_done)(struct p2p_pci_dev *dev);
	int (*ioas_attach)(struct p2p_pci_dev *dev, struct p2p_ioas *ioas);
	void (*ioas_detach)(struct p2p_pci_dev *dev, struct p2p_ioas *ioas);
	int (*set_irqs)(struct p2p_pci_dev *dev, uint32_t index, uint32_t start, uint32_t count,
			const int32_t *fds);
};

/**
 * struct p2p_pci_dev_info - arguments of p2p_pci_dev_create()
 * @argsz: sizeof(struct p2p_pci_dev_info)
 * @flags: P2P_PCI_* flags
 * @name: the BDF, e.g. "0000:01:00.0"
 * @vendor_id, @device_id, @class_code: config space identity
 * @group: IOMMU group number (hot reset ownership is checked per group)
 * @devset: the device set (bus/slot reset domain), or NULL for a set of one
 * @bars: BAR0..BAR5; a 64-bit BAR leaves the next slot empty
 * @ops: device callbacks, may be NULL
 * @priv: see p2p_pci_dev_priv()
 * @bar_mems: optional (argsz covering it): the memory behind each memory
 *	BAR instead of a new memfd (the function takes a reference), e.g.
 *	p2p_mem_create_from_fd() over a region fd a vfio-user server sent;
 *	at least the BAR's size.  NULL entries get a new memfd.
 */
struct p2p_pci_dev_info {
	uint32_t argsz;
	uint32_t flags;
	const char *name;
	uint16_t vendor_id;
	uint16_t device_id;
	uint32_t class_code;
	uint32_t group;
	struct p2p_pci_devset *devset;
	struct p2p_pci_bar_desc bars[6];
	const struct p2p_pci_dev_ops *ops;
	void *priv;
	struct p2p_mem *bar_mems[6];
};
/* The size of struct p2p_pci_dev_info before @bar_mems (still accepted). */
#define P2P_PCI_DEV_INFO_SIZE_V1 offsetof(struct p2p_pci_dev_info, bar_mems)

/**
 * p2p_pci_devset_create() - a reset domain shared by several functions
 * Return: 0 or -ENOMEM.  Free with p2p_pci_devset_put() once.
 */
P2P_API int p2p_pci_devset_create(struct p2p_pci_devset **out);
/** p2p_pci_devset_put() - drop the creator's reference (members keep theirs) */
P2P_API void p2p_pci_devset_put(struct p2p_pci_devset *set);

/**
 * p2p_pci_dev_create() - plug in an emulated PCI function
 * @info: its description; BAR memory is allocated (lazily) in memfds
 * @out: the function, one reference owned by the caller
 *
 * The function's virtual config space is reset on its first open with
 * COMMAND.MEM and bus mastering on and in D0, as pci_enable_device()
 * leaves a device vfio-pci opens.
 *
 * Return: 0 or -EINVAL (NULL @info, small argsz, unknown flags, a BAR size
 * not a power of two, a memory BAR below 4 KiB or a 32-bit one above
 * 2 GiB, an I/O BAR outside 4..256 bytes or marked 64-bit/prefetchable,
 * a 64-bit BAR in slot 5 or with its next slot used), -ENOMEM, -EMFILE.
 */
P2P_API int p2p_pci_dev_create(const struct p2p_pci_dev_info *info, struct p2p_pci_dev **out);
/**
 * p2p_pci_dev_put() - unplug: drop the creator's reference
 *
 * Open device files, dma-bufs and mappings keep the function alive until
 * they are gone.
 */
P2P_API void p2p_pci_dev_put(struct p2p_pci_dev *dev);
/** p2p_pci_dev_name() - the BDF */
P2P_API const char *p2p_pci_dev_name(const struct p2p_pci_dev *dev);
/** p2p_pci_dev_priv() - what the creator passed */
P2P_API void *p2p_pci_dev_priv(const struct p2p_pci_dev *dev);
/** p2p_pci_dev_bar_mem() - the memory behind a BAR (borrowed), or NULL if none */
P2P_API struct p2p_mem *p2p_pci_dev_bar_mem(const struct p2p_pci_dev *dev, int bar);
/** p2p_pci_dev_memory_enabled() - D0 (or lower), not in low power, and MEM decode on */
P2P_API bool p2p_pci_dev_memory_enabled(struct p2p_pci_dev *dev);
/** Backend states of a function (p2p_pci_dev_backend_state()) */
enum p2p_pci_backend_state {
	P2P_PCI_BACKEND_OK = 0,	     /* the memory behind the BARs is there */
	P2P_PCI_BACKEND_REVOKED = 1, /* taken away for now: no access until restored */
	P2P_PCI_BACKEND_GONE = 2,    /* for good (the backend died): the function is removed */
};
/**
 * p2p_pci_dev_backend_state() - the backend of the function changed its BARs
 * @state: enum p2p_pci_backend_state; GONE is final
 *
 * REVOKED revokes every dma-buf of the function (BAR mmaps, exports: CPU
 * zap, importers invalidated, their DMA drained) and keeps its memory
 * disabled whatever the config space says, until OK un-revokes them (if
 * memory decoding is on); GONE revokes them for good.  Takes the
 * function's memory lock: never call it from a hook called under it.
 *
 * Return: 0, -EINVAL (bad state), -EBADFD (already GONE), or the error of
 * a CPU mapping that could not be revoked.
 */
P2P_API int p2p_pci_dev_backend_state(struct p2p_pci_dev *dev, int state);
/** p2p_pci_dev_open_count() - how many times the function is open */
P2P_API unsigned int p2p_pci_dev_open_count(struct p2p_pci_dev *dev);

/**
 * p2p_vfio_device_open() - open the function (the device fd of vfio-pci)
 * @dev: the function
 * @out: the open file; one reference, dropped by p2p_vfio_device_close()
 *
 * The first open creates the virtual config space state and the device fd.
 *
 * Return: 0 or -ENODEV (unplugged), -ENOMEM, -EMFILE.
 */
P2P_API int p2p_vfio_device_open(struct p2p_pci_dev *dev, struct p2p_vfio_device **out);
/**
 * p2p_vfio_device_close() - close the file
 *
 * When the last file of the function goes (BAR mmaps hold theirs), every
 * dma-buf of the function is revoked for good: their fds stay valid and
 * closable, but attach, map and mmap fail with -ENODEV.
 */
P2P_API void p2p_vfio_device_close(struct p2p_vfio_device *vdev);
/**
 * p2p_vfio_device_fd() - the device file's own fd (owned by the file)
 *
 * Every dispatch entry (p2p_fd_ioctl(), p2p_fd_pread(), p2p_fd_mmap(), ...)
 * takes it; p2p_close() refuses it.  Valid until p2p_vfio_device_close().
 */
P2P_API int p2p_vfio_device_fd(const struct p2p_vfio_device *vdev);
/** p2p_vfio_device_pci() - the function behind the file (borrowed) */
P2P_API struct p2p_pci_dev *p2p_vfio_device_pci(const struct p2p_vfio_device *vdev);
/**
 * p2p_vfio_device_from_fd() - the open file behind a device fd (borrowed), or NULL
 *
 * Any device fd: native, from VFIO_GROUP_GET_DEVICE_FD, or a cdev.
 */
P2P_API struct p2p_vfio_device *p2p_vfio_device_from_fd(int fd);

/**
 * p2p_vfio_device_ioctl() - the device fd's ioctls
 * @req: VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_FEATURE,
 *	VFIO_DEVICE_RESET, VFIO_DEVICE_PCI_HOT_RESET, VFIO_DEVICE_GET_IRQ_INFO,
 *	VFIO_DEVICE_SET_IRQS (MSI, ERR and REQ eventfds; no INTx)
 * @arg: the kernel's structure for @req (group_fds of a hot reset carry
 *	group numbers)
 *
 * Return: 0, a new fd (feature DMA_BUF), or -errno exactly as the kernel
 * (kernel-semantics 1.2, 1.3, 1.7, 3.4); unknown requests -ENOTTY.
 * Features implemented: 3 and 5 (low power), 11, 13, 14; every other
 * feature number (migration, logging, VF token, wakeup entry 4) is
 * -ENOTTY.
 */
P2P_API long p2p_vfio_device_ioctl(struct p2p_vfio_device *vdev, unsigned long req, void *arg);

/**
 * p2p_vfio_device_pread() - read a region at @offset (index << 40 | offset)
 *
 * The config region reads the virtual config space; a memory BAR reads
 * device memory (-EIO while memory decoding is off or in low power).
 *
 * Return: bytes read or -errno (-EINVAL for a bad region, or a BAR access
 * starting at or past its end; one running past the end is cut short there).
 */
P2P_API ssize_t p2p_vfio_device_pread(struct p2p_vfio_device *vdev, void *buf, size_t len,
				      uint64_t offset);
/**
 * p2p_vfio_device_pwrite() - write a region
 *
 * Config writes are emulated: COMMAND.MEM, PM power state and PCIe
 * DEVCTL.BCR_FLR trigger the revoke and un-revoke rules of
 * kernel-semantics 1.7.
 *
 * Return: bytes written or -errno.
 */
P2P_API ssize_t p2p_vfio_device_pwrite(struct p2p_vfio_device *vdev, const void *buf,
				       size_t len, uint64_t offset);

/** p2p_vfio_config_read() - read 1, 2 or 4 bytes of config space; Return: 0 or -errno */
P2P_API int p2p_vfio_config_read(struct p2p_vfio_device *vdev, unsigned int off,
				 unsigned int size, uint32_t *val);
/** p2p_vfio_config_write() - write 1, 2 or 4 bytes of config space; Return: 0 or -errno */
P2P_API int p2p_vfio_config_write(struct p2p_vfio_device *vdev, unsigned int off,
				  unsigned int size, uint32_t val);

/**
 * p2p_vfio_device_mmap() - mmap a BAR region through a dma-buf
 * @offset: region offset exactly as passed to mmap(2) (index << 40 | bar offset)
 *
 * Creates a single-range dma-buf covering exactly the mapped window; it
 * holds a reference on this device file, so the mapping keeps the device
 * open.  If memory decoding is off the mapping is made but raises SIGBUS
 * until it is turned on.  Release with p2p_munmap().
 *
 * Return: 0 or -EINVAL (not a mmappable BAR, misaligned, beyond the BAR,
 * MAP_PRIVATE), -ENOMEM.
 */
P2P_API int p2p_vfio_device_mmap(struct p2p_vfio_device *vdev, void *addr, size_t length,
				 int prot, int flags, uint64_t offset, void **out);

/**
 * p2p_vfio_device_get_dmabuf() - VFIO_DEVICE_FEATURE_DMA_BUF, typed
 * @bar: region index
 * @ranges: @nr ranges (offset, length) in the BAR
 * @open_flags: O_CLOEXEC and the access mode
 *
 * Return: a new dma-buf fd (close with p2p_close()) or -errno as the ioctl.
 */
P2P_API int p2p_vfio_device_get_dmabuf(struct p2p_vfio_device *vdev, uint32_t bar,
				       const struct vfio_region_dma_range *ranges, uint32_t nr,
				       uint32_t open_flags);

/** p2p_vfio_device_reset() - VFIO_DEVICE_RESET; Return: 0 or -EINVAL (no reset) */
P2P_API int p2p_vfio_device_reset(struct p2p_vfio_device *vdev);

/**
 * p2p_vfio_device_hot_reset() - VFIO_DEVICE_PCI_HOT_RESET over the device set
 * @groups: group numbers the caller owns; with @count 0 no ownership check
 *	is made (the cdev/iommufd form, where one process owns everything)
 *
 * Every member goes to D0, is revoked, reset, and un-revoked if it is open
 * and its memory is enabled; never-opened members are reset only.
 *
 * Return: 0, -EINVAL (a member's group is not in @groups, or more groups
 * than the set has), -EBUSY (a member's memory lock is contended: nothing
 * stays revoked).
 */
P2P_API int p2p_vfio_device_hot_reset(struct p2p_vfio_device *vdev, const int32_t *groups,
				      uint32_t count);

/**
 * p2p_vfio_dmabuf_iommufd_map() - the private interconnect iommufd uses
 * @attach: an attachment of a dma-buf, resv held
 * @out: the single physical range
 *
 * vfio_pci_dma_buf_iommufd_map() of kernel-semantics 1.5.
 * Return: 0, -EOPNOTSUPP (not a VFIO dma-buf, or more than one range),
 * -ENODEV (revoked).
 */
P2P_API int p2p_vfio_dmabuf_iommufd_map(struct p2p_attachment *attach,
					struct p2p_phys_range *out);

/**
 * p2p_vfio_device_attach_ioas() - attach the device's DMA to an IO address space
 *
 * What VFIO_DEVICE_ATTACH_IOMMUFD_PT does for a device cdev: from now on
 * every DMA the device model does is translated through @ioas (which gets
 * a reference and a device domain, see p2p_ioas_attach_device()).  A
 * device has at most one IOAS: attaching again replaces it.
 *
 * Return: 0 or -EINVAL (existing areas not aligned for a 4 KiB domain).
 */
P2P_API int p2p_vfio_device_attach_ioas(struct p2p_vfio_device *vdev, struct p2p_ioas *ioas);
/** p2p_vfio_device_detach_ioas() - DMA faults from now on */
P2P_API void p2p_vfio_device_detach_ioas(struct p2p_vfio_device *vdev);

/**
 * p2p_pci_dev_dma_begin() - device model side: translate a DMA address
 *
 * p2p_ioas_dma_begin() through the function's IOAS.  Return: 0, -ENOENT
 * (nothing mapped, or no IOAS attached), -EPERM, -ENODEV (revoked),
 * -EREMOTE (a callback area, p2p_ioas_map_callback(): no memory to hand
 * out; bounce through p2p_pci_dev_dma_rw()).
 */
P2P_API int p2p_pci_dev_dma_begin(struct p2p_pci_dev *dev, uint64_t iova, uint64_t len,
				  unsigned int access, struct p2p_dma_seg *seg);

/**
 * p2p_pci_dev_dma_rw() - device model side: copy to or from DMA space
 *
 * Translates in runs; callback areas are reached through their callbacks
 * (p2p_ioas_callback_rw(), which may block).  Return: 0, the first error of
 * p2p_pci_dev_dma_begin() or of a callback, or -EFAULT if memory the
 * program truncated (a memfd) was reached.
 */
P2P_API int p2p_pci_dev_dma_rw(struct p2p_pci_dev *dev, uint64_t iova, void *data, uint64_t len,
			       bool write);

/**
 * p2p_pci_dev_raise_irq() - device model side: signal MSI vector @vector
 *
 * Writes the eventfd installed with VFIO_DEVICE_SET_IRQS, if any.
 * Return: true if an eventfd was signalled.
 */
P2P_API bool p2p_pci_dev_raise_irq(struct p2p_pci_dev *dev, unsigned int vector);

/** p2p_vfio_dmabuf_memattr() - the memattr future mmaps of a VFIO dma-buf get, or -EINVAL */
P2P_API int p2p_vfio_dmabuf_memattr(struct p2p_dmabuf *buf);

/* ---------------------------------------------------------------------- */
/* Functions visible to VFIO users, and their files                        */

/**
 * p2p_vfio_register() - make a function visible to VFIO users
 * @pdev: the function (the registry takes a reference)
 * @cdev_index: optional, out: N of /dev/vfio/devices/vfioN (the lowest free)
 *
 * Its IOMMU group /dev/vfio/G is @pdev's group (p2p_pci_dev_group()); a
 * group exists while one of its functions is registered.
 *
 * Return: 0, -EEXIST (already registered), -ENODEV (unplugged), -ENOMEM,
 * -EINVAL (NULL).  Thread-safe.
 */
P2P_API int p2p_vfio_register(struct p2p_pci_dev *pdev, unsigned int *cdev_index);
/**
 * p2p_vfio_unregister() - hide the function again (nothing if not registered)
 *
 * Open files of the function keep working; new opens fail (-ENOENT).
 */
P2P_API void p2p_vfio_unregister(struct p2p_pci_dev *pdev);
/**
 * p2p_vfio_registered() - the registered functions, in registration order
 * @out: up to @max functions, each with a reference (p2p_pci_dev_put() them);
 *	may be NULL with @max 0
 *
 * Return: how many are registered (may exceed @max).
 */
P2P_API unsigned int p2p_vfio_registered(struct p2p_pci_dev **out, unsigned int max);
/** p2p_vfio_cdev_index() - N of /dev/vfio/devices/vfioN, or -ENODEV (not registered) */
P2P_API int p2p_vfio_cdev_index(struct p2p_pci_dev *pdev);
/** p2p_pci_dev_group() - the function's IOMMU group number */
P2P_API unsigned int p2p_pci_dev_group(struct p2p_pci_dev *pdev);

/**
 * p2p_pci_dev_config_read() - raw emulated config space, for sysfs "config"
 * @off, @len: bytes [@off, @off + @len) of the 4 KiB config space
 *
 * No side effects on the device; a function that is not open shows its
 * config space as reset.  Return: 0 or -EINVAL (out of range).
 */
P2P_API int p2p_pci_dev_config_read(struct p2p_pci_dev *pdev, unsigned int off, void *buf,
				    size_t len);
/**
 * p2p_pci_dev_bar_info() - a BAR as sysfs "resource" shows it
 * @bus_addr: the emulated bus address (0 for no BAR); @size: bytes (0: no
 *	BAR); @flags: P2P_BAR_* (each pointer may be NULL)
 *
 * Return: 0 or -EINVAL (@bar not 0..5).
 */
P2P_API int p2p_pci_dev_bar_info(struct p2p_pci_dev *pdev, int bar, uint64_t *bus_addr,
				 uint64_t *size, uint32_t *flags);

/**
 * p2p_vfio_container_open_fd() - open /dev/vfio/vfio
 * @flags: open(2) flags (O_RDWR, O_CLOEXEC, ...)
 *
 * A new legacy container: VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION,
 * VFIO_SET_IOMMU (TYPE1 or TYPE1v2, once a group is attached), then
 * VFIO_IOMMU_GET_INFO (migration, DMA-available and IOVA-range
 * capabilities), VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA and
 * VFIO_IOMMU_DIRTY_PAGES, with type1's checks and errnos.  A MAP_DMA of the
 * address of a BAR or dma-buf mmap maps through that dma-buf and is
 * revoked with it (kernel-semantics 4.1).
 *
 * Return: a new fd holding the file's reference (close with p2p_close()),
 * or -ENOMEM, -EMFILE, -ENFILE.
 */
P2P_API int p2p_vfio_container_open_fd(int flags);
/**
 * p2p_vfio_group_open_fd() - open /dev/vfio/@group
 *
 * Ioctls: VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER (a container fd;
 * an iommufd is -EBADFD: no group compat IOAS), VFIO_GROUP_UNSET_CONTAINER,
 * VFIO_GROUP_GET_DEVICE_FD (by BDF; the device's DMA goes through the
 * container; each device fd holds the group file).
 *
 * Return: a new fd, -ENOENT (no registered function in @group), -EBUSY
 * (already open, or a function of it bound through its cdev), -ENOMEM,
 * -EMFILE.
 */
P2P_API int p2p_vfio_group_open_fd(unsigned int group, int flags);
/**
 * p2p_vfio_cdev_open_fd() - open /dev/vfio/devices/vfio@index
 *
 * Until VFIO_DEVICE_BIND_IOMMUFD every other ioctl, read, write and mmap is
 * -EINVAL; binding opens the device (-EBUSY while its group is open),
 * then VFIO_DEVICE_ATTACH_IOMMUFD_PT / DETACH_IOMMUFD_PT point its DMA at
 * an IOAS or a HWPT.  Closing the last fd unbinds and closes the device.
 *
 * Return: a new fd, -ENOENT (no such index), -ENODEV, -ENOMEM, -EMFILE.
 */
P2P_API int p2p_vfio_cdev_open_fd(unsigned int index, int flags);

#ifdef __cplusplus
}
#endif
#endif
