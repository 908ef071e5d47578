/* SPDX-License-Identifier: MIT */
/*
 * iommufd-style IO address spaces.
 *
 * A struct p2p_iommufd is an iommufd context: it hands out object IDs.  A
 * struct p2p_ioas is an IO address space: an IOVA allocator and an
 * interval structure of areas, each backed by process memory (IOAS_MAP), a
 * memfd or a dma-buf (IOAS_MAP_FILE).  Emulated devices attached to an
 * IOAS translate every IOVA they touch through it (p2p_ioas_dma_begin()),
 * so DMA reaches system memory or another device's BAR (peer to peer).
 *
 * dma-buf areas are dynamic, peer-to-peer, revocable importers: a revoke
 * unmaps them at once, waits (through a fence) for DMA in flight, and they
 * are never remapped automatically (kernel-semantics 2.5).
 *
 * Locking: translations take only the IOAS lock (read) and atomics; the
 * lock order of the whole library is docs/locking.md.
 */
#ifndef P2PBUF_IOMMU_H
#define P2PBUF_IOMMU_H

#include <stdbool.h>
#include <stdint.h>

#include <p2pbuf/common.h>
#include <p2pbuf/dmabuf.h>
#include <p2pbuf/uapi.h>

#ifdef __cplusplus
extern "C" {
#endif

struct p2p_iommufd;
struct p2p_ioas;

/**
 * p2p_iommufd_open() - a new iommufd context (what an open of /dev/iommu makes)
 * @out: the context, with one reference owned by the caller
 *
 * The context is a file (include/p2pbuf/file.h, kind "iommufd", O_RDWR)
 * whose ioctl is p2p_iommufd_ioctl(); it lives as long as its file.
 *
 * Return: 0 or -ENOMEM, -EMFILE.
 */
P2P_API int p2p_iommufd_open(struct p2p_iommufd **out);
/**
 * p2p_iommufd_open_fd() - open(2) of /dev/iommu
 * @flags: open(2) flags (access mode, O_CLOEXEC, ...)
 *
 * A new context whose only reference is the returned fd: p2p_fd_ioctl() on
 * it is p2p_iommufd_ioctl(); its last close (p2p_close()) destroys the
 * context and every object in it, as iommufd_fops_release().
 *
 * Return: the fd, or -ENOMEM, -EMFILE, -ENFILE.
 */
P2P_API int p2p_iommufd_open_fd(int flags);
/**
 * p2p_iommufd_get() - the context behind an iommufd fd, with a reference
 *
 * Paired with p2p_iommufd_put().  Return: 0, -EBADF (not open), -EINVAL
 * (not an iommufd).
 */
P2P_API int p2p_iommufd_get(int fd, struct p2p_iommufd **out);
/** p2p_iommufd_put() - drop a reference; the last one destroys the context */
P2P_API void p2p_iommufd_put(struct p2p_iommufd *ctx);
/**
 * p2p_iommufd_close() - drop the reference p2p_iommufd_open() gave
 *
 * The context and every object in it go when the last reference does:
 * fds hold one each, and so do devices bound with
 * p2p_iommufd_device_bind().
 */
P2P_API void p2p_iommufd_close(struct p2p_iommufd *ctx);
/** p2p_iommufd_fd() - the context's own fd (p2p_file_fd(): owned by @ctx, holds no reference) */
P2P_API int p2p_iommufd_fd(const struct p2p_iommufd *ctx);

/**
 * p2p_iommufd_ioctl() - the iommufd ioctls, with the kernel's structures
 * @cmd: IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_IOVA_RANGES,
 *	IOMMU_IOAS_ALLOW_IOVAS, IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_FILE,
 *	IOMMU_IOAS_UNMAP, IOMMU_IOAS_COPY, IOMMU_OPTION (RLIMIT_MODE, HUGE_PAGES),
 *	IOMMU_GET_HW_INFO (type NONE: no vendor data, no capabilities, no
 *	PASID), IOMMU_HWPT_ALLOC (paging HWPTs over an IOAS; nesting, dirty
 *	tracking, PASID and fault queues are -EOPNOTSUPP / -ENOENT)
 *
 * Framing as the kernel's: size below the command's minimum -EINVAL, a
 * larger struct with non-zero trailing bytes -E2BIG, unknown command
 * -ENOTTY, unreadable argument -EFAULT.
 *
 * Return: 0 or -errno (kernel-semantics 2.2-2.5).
 */
P2P_API long p2p_iommufd_ioctl(struct p2p_iommufd *ctx, unsigned long cmd, void *arg);

/**
 * p2p_iommufd_from_fd() - the context behind an iommufd fd (iommufd_ctx_from_fd())
 * @out: the context with a reference, dropped with p2p_iommufd_put()
 *
 * Return: 0, -EBADF (@fd is not open), -EBADFD (not an iommufd).
 */
P2P_API int p2p_iommufd_from_fd(int fd, struct p2p_iommufd **out);

struct p2p_iommufd_device;

/**
 * struct p2p_iommufd_device_ops - how a bound device's DMA follows its HWPT
 * @attach: point the device's DMA at @ioas (replacing what it had);
 *	called with the context lock held; 0 or -errno
 * @detach: DMA faults from now on; called with the context lock held
 *
 * The device's driver (the VFIO layer) gives these at bind, so the IOMMU
 * layer never calls into it by name.
 */
struct p2p_iommufd_device_ops {
	int (*attach)(void *priv, struct p2p_ioas *ioas);
	void (*detach)(void *priv);
};

/**
 * p2p_iommufd_device_bind() - iommufd_device_bind(): a device object in @ctx
 * @ops, @priv: the device's side (kept until unbind)
 * @out: the binding; @dev_id: its object ID (IOMMU_GET_HW_INFO, HWPT_ALLOC)
 *
 * The binding holds a reference on @ctx until p2p_iommufd_device_unbind().
 * IOMMU_DESTROY of the device ID is -EBUSY while bound, as the kernel's.
 * Return: 0 or -ENOMEM.
 */
P2P_API int p2p_iommufd_device_bind(struct p2p_iommufd *ctx,
				    const struct p2p_iommufd_device_ops *ops, void *priv,
				    struct p2p_iommufd_device **out, uint32_t *dev_id);
/** p2p_iommufd_device_unbind() - detach, remove the device object, drop the context */
P2P_API void p2p_iommufd_device_unbind(struct p2p_iommufd_device *idev);
/**
 * p2p_iommufd_device_attach() - iommufd_device_attach()/replace()
 * @pt_id: in: an IOAS ID (an automatic paging HWPT is made or reused) or a
 *	paging HWPT ID; out: the HWPT ID the device is attached to
 *
 * Attaching again replaces the HWPT, as VFIO_DEVICE_ATTACH_IOMMUFD_PT does.
 * Return: 0, -ENOENT (no such object), -EINVAL (not an IOAS or HWPT, or
 * areas not aligned for a 4 KiB domain), or what ops->attach returns.
 */
P2P_API int p2p_iommufd_device_attach(struct p2p_iommufd_device *idev, uint32_t *pt_id);
/** p2p_iommufd_device_detach() - iommufd_device_detach(); nothing if not attached */
P2P_API void p2p_iommufd_device_detach(struct p2p_iommufd_device *idev);

/**
 * p2p_ioas_get() - look up an IOAS by ID, with a reference
 * Return: 0 or -ENOENT.
 */
P2P_API int p2p_ioas_get(struct p2p_iommufd *ctx, uint32_t id, struct p2p_ioas **out);
/** p2p_ioas_ref() - take another reference. Paired with p2p_ioas_put(). */
P2P_API struct p2p_ioas *p2p_ioas_ref(struct p2p_ioas *ioas);
/** p2p_ioas_put() - drop a reference from p2p_ioas_get() or p2p_ioas_alloc() */
P2P_API void p2p_ioas_put(struct p2p_ioas *ioas);
/** p2p_ioas_alloc() - IOMMU_IOAS_ALLOC; @out gets a reference, @id the object ID */
P2P_API int p2p_ioas_alloc(struct p2p_iommufd *ctx, uint32_t *id, struct p2p_ioas **out);
/** p2p_ioas_id() - the IOAS's object ID */
P2P_API uint32_t p2p_ioas_id(const struct p2p_ioas *ioas);

/** Map flags: the kernel's IOMMU_IOAS_MAP_* plus p2pbuf extensions. */
enum {
	P2P_IOAS_MAP_FIXED_IOVA = IOMMU_IOAS_MAP_FIXED_IOVA,
	P2P_IOAS_MAP_WRITEABLE = IOMMU_IOAS_MAP_WRITEABLE,
	P2P_IOAS_MAP_READABLE = IOMMU_IOAS_MAP_READABLE,
	/*
	 * Beyond the kernel: import multi-range dma-bufs (contiguous in IOVA,
	 * what QEMU virtio-gpu blobs need) and dma-bufs of any exporter that
	 * accepts a peer-to-peer revocable importer.  Native API only.
	 */
	P2P_IOAS_MAP_EXTENDED = 1u << 16,
};

/**
 * p2p_ioas_map() - IOMMU_IOAS_MAP: map process memory
 * @va: user address; @length: bytes; @iova: in with FIXED_IOVA, out otherwise
 *
 * In the kernel-exact default, an address inside a p2pbuf mapping of a VFIO
 * dma-buf (a BAR mmap) fails with -EFAULT, as iommufd cannot pin PFNMAP
 * memory (kernel-semantics 4.2); use p2p_ioas_map_file() with the dma-buf,
 * or p2p_ioas_map_dma() for type1 semantics.
 *
 * Return: 0 or -EOPNOTSUPP (unknown flags), -EOVERFLOW, -EINVAL, -EFAULT
 * (unmapped memory), -EEXIST, -ENOSPC.
 */
P2P_API int p2p_ioas_map(struct p2p_ioas *ioas, void *va, uint64_t length, uint64_t *iova,
			 uint32_t flags);

/**
 * p2p_ioas_map_file() - IOMMU_IOAS_MAP_FILE: map a memfd or a dma-buf
 * @fd: a memfd, or a dma-buf fd (dma-buf path: dynamic P2P revocable attach)
 * @start: byte offset in the file; need not be page aligned
 *
 * Kernel-exact: only single-range VFIO dma-bufs (-EOPNOTSUPP otherwise);
 * with P2P_IOAS_MAP_EXTENDED multi-range dma-bufs map contiguously.
 *
 * Return: 0 or -errno in the order of kernel-semantics 2.2: -EOPNOTSUPP,
 * -EOVERFLOW, -EINVAL, -ENOENT is for bad IDs (ioctl only), -EBADF,
 * -ENODEV (revoked), -EEXIST, -ENOSPC.
 */
P2P_API int p2p_ioas_map_file(struct p2p_ioas *ioas, int fd, uint64_t start, uint64_t length,
			      uint64_t *iova, uint32_t flags);

/**
 * p2p_ioas_map_dma() - type1 VFIO_IOMMU_MAP_DMA semantics for a user address
 *
 * Like p2p_ioas_map(), but an address inside a p2pbuf dma-buf mapping is
 * turned back into (dma-buf, offset) (p2p_va_lookup()) and mapped through
 * the dma-buf path, so it is revoked with the dma-buf.
 */
P2P_API int p2p_ioas_map_dma(struct p2p_ioas *ioas, void *va, uint64_t length, uint64_t iova,
			     uint32_t flags);

/**
 * struct p2p_ioas_callback_ops - the owner of a callback area
 * @rw: a device or emulated access of @len bytes at @iova (all inside the
 *	area): @write copies @data to the owner's memory, else fills @data
 *	from it.  Return 0 or -errno (what the access then returns; device
 *	models report any error but -ENODEV and -EPERM as a translation
 *	fault).  Called with no p2pbuf lock held, from the device's thread;
 *	it may block (bounded by the owner), and must not unmap its own area.
 */
struct p2p_ioas_callback_ops {
	int (*rw)(void *priv, uint64_t iova, void *data, uint64_t len, bool write);
};

/**
 * p2p_ioas_map_callback() - map [@iova, +@length) to an owner's callbacks
 * @flags: P2P_IOAS_MAP_READABLE and/or P2P_IOAS_MAP_WRITEABLE (the IOVA is
 *	always fixed)
 * @ops, @priv: called for every access to the range (kept until unmapped)
 *
 * Memory that is not in this process (a vfio-user client's, reached with
 * DMA_READ/DMA_WRITE messages).  p2p_ioas_dma_begin() on it is -EREMOTE:
 * device models bounce through p2p_pci_dev_dma_rw() / p2p_ioas_access_rw()
 * (which call @ops->rw via p2p_ioas_callback_rw()).  Calls in flight count
 * as DMA in flight: p2p_ioas_unmap() of the area waits for them, and after
 * it returns @ops is never called for the area again.  p2p_ioas_copy() of
 * the range is -EINVAL.
 *
 * Return: 0 or -EINVAL (no @ops->rw, @length 0, bad @flags, alignment),
 * -EOVERFLOW, -EEXIST, -ENOMEM.
 */
P2P_API int p2p_ioas_map_callback(struct p2p_ioas *ioas, uint64_t iova, uint64_t length,
				  uint32_t flags, const struct p2p_ioas_callback_ops *ops,
				  void *priv);

/**
 * p2p_ioas_unmap() - IOMMU_IOAS_UNMAP
 * @iova, @length: the range; 0, 0 unmaps everything (0 even when empty,
 *	as the ioctl's iova 0, length U64_MAX)
 * @unmapped: optional, bytes unmapped
 *
 * Areas must be covered entirely: a range cutting a dma-buf area is
 * -EOPNOTSUPP, one cutting another area -ENOENT; nothing mapped -ENOENT.
 * The areas stop translating at once; the call then blocks, holding no
 * lock, until the DMA in flight through them (p2p_ioas_dma_begin() not yet
 * ended) is over.  Never call it on an area the calling thread holds a
 * segment of.
 */
P2P_API int p2p_ioas_unmap(struct p2p_ioas *ioas, uint64_t iova, uint64_t length,
			   uint64_t *unmapped);

/**
 * p2p_ioas_copy() - IOMMU_IOAS_COPY: map what @src maps at @src_iova into @dst
 * Return: 0 or -ENOENT (range not fully mapped), and map errors.
 */
P2P_API int p2p_ioas_copy(struct p2p_ioas *dst, struct p2p_ioas *src, uint64_t src_iova,
			  uint64_t length, uint64_t *dst_iova, uint32_t flags);

/**
 * p2p_ioas_access_rw() - emulated (CPU) access through the IOAS
 *
 * What an mdev-style emulated device does with iommufd_access_rw().
 * Callback areas are reached through their callbacks.
 * Return: 0, -ENOENT (not mapped), -EPERM (protection), -EINVAL for a
 * dma-buf backed area (kernel-semantics 2.4) or @len 0, -EOVERFLOW if
 * @iova + @len - 1 wraps, -EFAULT for memory the program truncated.
 */
P2P_API int p2p_ioas_access_rw(struct p2p_ioas *ioas, uint64_t iova, void *data, uint64_t len,
			       bool write);

/** Access kinds for p2p_ioas_dma_begin() */
enum p2p_dma_access {
	P2P_DMA_READ = 1,  /* the device reads memory */
	P2P_DMA_WRITE = 2, /* the device writes memory */
};

/**
 * struct p2p_dma_seg - one translated, contiguous run
 * @host: where the bytes are, in this process
 * @len: bytes of the run (may be less than asked: call again for the rest)
 * @priv: p2pbuf's; pass the segment to p2p_ioas_dma_end()
 */
struct p2p_dma_seg {
	void *host;
	uint64_t len;
	void *priv;
};

/**
 * p2p_ioas_dma_begin() - translate an IOVA for device DMA (the IOMMU walk)
 * @iova: first byte; @len: bytes wanted; @access: P2P_DMA_READ/WRITE
 * @seg: the longest contiguous run from @iova, at most @len
 *
 * Takes an in-flight reference on the area: an unmap of the area, and a
 * revoke of its dma-buf (through a fence), wait until p2p_ioas_dma_end().
 * Thread-safe; lock-free (one atomic add on the area, see docs/locking.md)
 * except on a page only partly covered by areas or from IOVA 2^48, which
 * take the IOAS lock for read.
 *
 * Return: 0; -ENOENT if nothing is mapped at @iova (translation fault),
 * -EPERM for an access the mapping does not allow, -ENODEV if the area's
 * dma-buf was revoked, -EREMOTE for a callback area
 * (p2p_ioas_map_callback(): no memory here, use p2p_ioas_callback_rw()).
 */
P2P_API int p2p_ioas_dma_begin(struct p2p_ioas *ioas, uint64_t iova, uint64_t len,
			       unsigned int access, struct p2p_dma_seg *seg);
/**
 * p2p_ioas_callback_rw() - access the callback area at @iova (one run)
 * @done: bytes handled, up to the end of the area (call again for the rest)
 *
 * Calls the area's @ops->rw with no lock held; an unmap of the area waits
 * for the call.  Return: 0, -ENOENT (nothing mapped), -EINVAL (@len 0, or
 * not a callback area: use p2p_ioas_dma_begin()), -EPERM, or the error of
 * @ops->rw.
 */
P2P_API int p2p_ioas_callback_rw(struct p2p_ioas *ioas, uint64_t iova, void *data, uint64_t len,
				 bool write, uint64_t *done);

/** p2p_ioas_dma_end() - the DMA through @seg is over */
P2P_API void p2p_ioas_dma_end(struct p2p_dma_seg *seg);

/**
 * p2p_ioas_attach_device() - attach a device's domain to the IOAS
 *
 * A device domain has 4 KiB pages: IOAS alignment becomes 4 KiB (it is 1
 * while nothing is attached).  Return: 0 or -EINVAL if existing areas
 * are not aligned for it.
 */
P2P_API int p2p_ioas_attach_device(struct p2p_ioas *ioas);
/** p2p_ioas_detach_device() - undo one p2p_ioas_attach_device() */
P2P_API void p2p_ioas_detach_device(struct p2p_ioas *ioas);

/* ---------------------------------------------------------------------- */
/* Domains: a backend that mirrors the IOAS (a remote device's IOMMU)      */

struct p2p_ioas_domain;

/** What backs a domain area */
enum p2p_ioas_domain_kind {
	P2P_IOAS_DOMAIN_VA = 0,	    /* process memory: @va (no file to share) */
	P2P_IOAS_DOMAIN_FD = 1,	    /* a memfd: @fd at @fd_offset (and @va, this process's view) */
	P2P_IOAS_DOMAIN_DMABUF = 2, /* a dma-buf import (revocable): its memory's file in @fd
				     * when one range covers the area, else -1 (translate
				     * each access through the IOAS) */
	P2P_IOAS_DOMAIN_CALLBACK = 3, /* a callback area (p2p_ioas_map_callback()): no
				       * memory, @fd -1 and @va NULL: each access goes
				       * through the IOAS to its owner */
};

/**
 * struct p2p_ioas_domain_area - one area as a domain sees it
 * @iova, @length: the range; @prot: IOMMU_IOAS_MAP_READABLE | WRITEABLE
 * @kind: enum p2p_ioas_domain_kind
 * @fd: FD, DMABUF: the file behind the area (-1: none), valid during the
 *	call only (dup it)
 * @fd_offset: where @iova is in @fd
 * @va: where @iova is in this process (VA, FD; DMABUF with an @fd)
 */
struct p2p_ioas_domain_area {
	uint64_t iova;
	uint64_t length;
	uint32_t prot;
	uint32_t kind;
	int fd;
	uint64_t fd_offset;
	void *va;
};

/**
 * struct p2p_ioas_domain_ops - a domain's side
 * @map: @area was mapped (or exists when the domain attaches); 0 or -errno
 *	(a failure fails the map, or the attach)
 * @unmap: [@iova, +@length) is unmapped: an area given to @map earlier, or
 *	(0, 0) for everything.  Called before the unmap waits for the local
 *	DMA and returns; the domain must be done with the memory on return.
 *
 * Both are called with no IOAS lock held but serialized with each other
 * and with every map and unmap of the IOAS: they must not map or unmap
 * the same IOAS, but may translate through it (p2p_ioas_dma_begin(),
 * p2p_ioas_access_rw()) from other threads.  One exception: when the
 * dma-buf behind a DMABUF area is revoked, @unmap is called for it from
 * the revoke (the dma-buf's reservation lock held, not serialized with
 * the IOAS's other maps and unmaps, only with those of that area), and the
 * area is never given to @map again (kernel-semantics 2.5: no remap, even
 * after an un-revoke; a domain attached after the revoke does not get it;
 * its later unmap is not passed on).  @unmap must then not take that
 * dma-buf's reservation lock.
 */
struct p2p_ioas_domain_ops {
	int (*map)(void *priv, const struct p2p_ioas_domain_area *area);
	void (*unmap)(void *priv, uint64_t iova, uint64_t length);
};

/**
 * p2p_ioas_domain_attach() - attach a domain (iommufd fills an attached
 * domain on every map and empties it on every unmap)
 * @ops, @priv: the domain's side; @ops must outlive the domain
 * @out: the domain (it holds a reference on @ioas)
 *
 * Every area already mapped is given to ops->map first.  A memfd area
 * (p2p_ioas_map_file()) is given as its file (P2P_IOAS_DOMAIN_FD: the IOAS
 * keeps a duplicate of the fd while the area lives).
 *
 * Return: 0, -EINVAL (NULL arguments), -ENOMEM, or ops->map's error
 * (the areas given before are unmapped again).
 */
P2P_API int p2p_ioas_domain_attach(struct p2p_ioas *ioas, const struct p2p_ioas_domain_ops *ops,
				   void *priv, struct p2p_ioas_domain **out);
/** p2p_ioas_domain_detach() - ops->unmap of every area, then the domain is gone */
P2P_API void p2p_ioas_domain_detach(struct p2p_ioas_domain *dom);

/** p2p_ioas_nr_areas() - how many areas are mapped (for tests and tools) */
P2P_API unsigned int p2p_ioas_nr_areas(struct p2p_ioas *ioas);

#ifdef __cplusplus
}
#endif
#endif
