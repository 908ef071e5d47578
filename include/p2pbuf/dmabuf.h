/* SPDX-License-Identifier: MIT */
/*
 * p2pbuf dma-buf core: buffer objects, exporters, dynamic attachments,
 * fences, revocation and CPU mappings.
 *
 * The model is the kernel's drivers/dma-buf/dma-buf.c: an exporter publishes
 * a buffer with an ops table (struct p2p_dmabuf_ops), importers attach with
 * an importer ops table (struct p2p_dmabuf_importer_ops) and map the
 * attachment to get the buffer's physical ranges.  A buffer is a file
 * (struct p2p_file, include/p2pbuf/file.h), as in the kernel: its references
 * are the file's, each fd (p2p_dmabuf_fd_install()) and each CPU mapping
 * holds one, and the last one released runs the exporter's release.
 *
 * Every function here is thread-safe unless its comment says otherwise.
 */
#ifndef P2PBUF_DMABUF_H
#define P2PBUF_DMABUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <p2pbuf/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct p2p_dmabuf;
struct p2p_attachment;
struct p2p_fence;

/**
 * struct p2p_mem - a piece of "physical" memory: device memory or system RAM
 *
 * Backed by a memfd.  Emulated devices reach it through p2p_mem_ptr(), which
 * is a mapping private to the library that is never revoked: revocation is
 * enforced at the importer (CPU mapping, IO address space, io_uring slot).
 */
struct p2p_mem;

/** p2p_mem_create() flags */
enum {
	P2P_MEM_HUGE = 1u << 0, /* ask for transparent huge pages where the system allows */
	P2P_MEM_POPULATE = 1u << 1, /* pre-fault every page at creation (p2p_mem_populate()) */
};

/**
 * p2p_mem_create() - allocate memfd-backed memory
 * @name: name shown in /proc/self/fd and /proc/self/maps
 * @size: bytes, page multiple, non-zero
 * @flags: P2P_MEM_* flags
 * @out: the new object, one reference owned by the caller
 *
 * Pages are allocated lazily on first touch, or all at creation with
 * P2P_MEM_POPULATE (as p2p_mem_populate(mem, 0)).
 *
 * Return: 0 or -EINVAL, -ENOMEM (also: the memory cannot be populated),
 * -EMFILE.
 */
P2P_API int p2p_mem_create(const char *name, uint64_t size, unsigned int flags,
			   struct p2p_mem **out);
/**
 * p2p_mem_populate() - pre-fault all of @mem, in parallel
 * @mem: the memory
 * @nthreads: threads to use, the caller included; 0: one per online core
 *
 * Allocates every page of @mem and builds the page tables of the device
 * view (p2p_mem_ptr()), so that the first DMA into fresh memory costs what
 * a repeat does.  Slices of at least 8 MiB (2 MiB aligned) are populated
 * with MADV_POPULATE_WRITE, one thread each; the caller populates one and
 * waits for the others.  Existing contents are kept.  Blocks until done;
 * thread-safe; takes no lock.  Importers' own CPU mappings still build
 * their page tables when they map (cheaply: the pages exist).
 *
 * Return: 0, or -EINVAL (NULL @mem), -ENOMEM (out of memory: the pages
 * populated so far stay), -EFAULT.
 */
P2P_API int p2p_mem_populate(struct p2p_mem *mem, unsigned int nthreads);
/**
 * p2p_mem_create_from_fd() - memory that lives in another process's file
 * @fd: a shared-memory file (a memfd received over a socket, a file); it is
 *	duplicated (O_CLOEXEC): the caller keeps its own fd
 * @offset: where byte 0 of the memory is in @fd, page aligned
 * @size: bytes, page multiple, non-zero
 * @flags: P2P_MEM_* flags
 * @out: the new object, one reference owned by the caller
 *
 * Everything the core does with a p2p_mem (BAR mmaps, dma-bufs and their
 * userfaultfd revoke, IOAS imports, the device view of p2p_mem_ptr()) works
 * on it: a vfio-user client backs a remote function's BARs with the region
 * fds its server sent.  The file is not resized: a range past its end
 * faults (SIGBUS on the CPU, -EFAULT for device DMA), as a truncated memfd.
 *
 * Return: 0 or -EINVAL (bad size, offset or flags, @fd not mappable
 * shared), -EBADF, -ENOMEM, -EMFILE.
 */
P2P_API int p2p_mem_create_from_fd(int fd, uint64_t offset, uint64_t size, unsigned int flags,
				   struct p2p_mem **out);
/** p2p_mem_get() - take a reference. Paired with p2p_mem_put(). */
P2P_API struct p2p_mem *p2p_mem_get(struct p2p_mem *mem);
/** p2p_mem_put() - drop a reference; the last one unmaps and closes the memfd. */
P2P_API void p2p_mem_put(struct p2p_mem *mem);
/** p2p_mem_ptr() - the library's own mapping of @mem at @offset (device view). */
P2P_API void *p2p_mem_ptr(const struct p2p_mem *mem, uint64_t offset);
/** p2p_mem_size() - size in bytes. */
P2P_API uint64_t p2p_mem_size(const struct p2p_mem *mem);
/**
 * p2p_mem_fd() - the backing memfd, owned by @mem (do not close)
 *
 * Byte 0 of @mem is at p2p_mem_fd_offset() in this file: a BAR's memory sits
 * at its VFIO region offset (index << 40), so that a BAR mmap shows the
 * offset the program passed in /proc/self/maps (kernel-semantics 3.1).
 */
P2P_API int p2p_mem_fd(const struct p2p_mem *mem);
/** p2p_mem_fd_offset() - where byte 0 of @mem is in p2p_mem_fd() (0 for p2p_mem_create()). */
P2P_API uint64_t p2p_mem_fd_offset(const struct p2p_mem *mem);

/**
 * struct p2p_phys_range - one physically contiguous run of a buffer
 * @mem: backing object (device BAR memory or system RAM)
 * @offset: byte offset in @mem
 * @length: bytes
 */
struct p2p_phys_range {
	struct p2p_mem *mem;
	uint64_t offset;
	uint64_t length;
};

/**
 * struct p2p_sgt - what mapping an attachment returns (the "SG table")
 * @nents: number of entries
 * @ents: the ranges, in dma-buf byte order
 */
struct p2p_sgt {
	unsigned int nents;
	struct p2p_phys_range ents[];
};

/** Direction for CPU access bracketing. */
enum p2p_dma_dir {
	P2P_DMA_BIDIRECTIONAL = 0,
	P2P_DMA_TO_DEVICE = 1,
	P2P_DMA_FROM_DEVICE = 2,
};

/**
 * struct p2p_dmabuf_ops - exporter operations
 *
 * Required ops are checked at p2p_dmabuf_export() (-EINVAL if missing).
 *
 * @attach: optional.  Called by p2p_dmabuf_attach() with resv held; may
 *	refuse the importer (e.g. -EOPNOTSUPP for a non-P2P importer, -ENODEV
 *	while revoked).
 * @detach: optional.  Called by p2p_dmabuf_detach() with resv held.
 * @map: required.  Called with resv held for dynamic importers.  Returns a
 *	table allocated by the exporter, or -errno (-ENODEV while revoked).
 * @unmap: required.  Frees what @map returned.  Called with resv held for
 *	dynamic importers.
 * @pin / @unpin: optional, called with resv held.  Pinning does not
 *	prevent revocation.
 * @mmap: optional.  Validates a CPU mapping request (resv not held): may
 *	refuse MAP_PRIVATE or a revoked buffer; the core then maps the
 *	buffer's ranges.  Without it mmap fails -EINVAL.
 * @begin_cpu_access / @end_cpu_access: optional cache bracketing.
 * @release: required.  Called once, when the last reference is dropped.
 * @iommufd_map: optional.  The exporter's private interconnect with the
 *	IOMMU layer (kernel-semantics 1.5, the kernel's
 *	vfio_pci_dma_buf_iommufd_map(); the "DMA-buf mapping types"
 *	proposal makes it a mapping type): the single physical range behind
 *	@attach, without an SG table.  Called through
 *	p2p_attachment_iommufd_map() with resv held.  Returns -EOPNOTSUPP
 *	when the buffer cannot be mapped that way (more than one range),
 *	-ENODEV while revoked.  Without it the core answers -EOPNOTSUPP.
 */
struct p2p_dmabuf_ops {
	int (*attach)(struct p2p_dmabuf *buf, struct p2p_attachment *attach);
	void (*detach)(struct p2p_dmabuf *buf, struct p2p_attachment *attach);
	int (*map)(struct p2p_attachment *attach, struct p2p_sgt **out);
	void (*unmap)(struct p2p_attachment *attach, struct p2p_sgt *sgt);
	int (*pin)(struct p2p_attachment *attach);
	void (*unpin)(struct p2p_attachment *attach);
	int (*mmap)(struct p2p_dmabuf *buf, uint64_t offset, uint64_t length, int prot,
		    int flags);
	int (*begin_cpu_access)(struct p2p_dmabuf *buf, enum p2p_dma_dir dir);
	int (*end_cpu_access)(struct p2p_dmabuf *buf, enum p2p_dma_dir dir);
	void (*release)(struct p2p_dmabuf *buf);
	int (*iommufd_map)(struct p2p_attachment *attach, struct p2p_phys_range *out);
};

/**
 * struct p2p_dmabuf_export_info - arguments of p2p_dmabuf_export()
 * @argsz: sizeof(struct p2p_dmabuf_export_info)
 * @flags: P2P_EXPORT_* flags
 * @name: shown as the fd's name ("dmabuf:<name>"), may be NULL
 * @ops: exporter ops, must outlive the buffer
 * @priv: exporter private data, see p2p_dmabuf_priv()
 * @nr_ranges: number of entries in @ranges (>= 1)
 * @ranges: the buffer's backing, concatenated in order; the buffer size is
 *	the sum of the lengths (each a page multiple).  Copied; each range's
 *	@mem gets a reference.
 * @open_flags: with P2P_EXPORT_OPEN_FLAGS in @flags: the file's open flags,
 *	as the kernel's exp_info.flags: the access mode (O_RDONLY, O_WRONLY,
 *	O_RDWR) and O_NONBLOCK are kept, other bits ignored.  Without the
 *	flag the file is O_RDWR (and @argsz may end before this field).
 *
 * The access mode is enforced as the kernel does for the file: a shared
 * writable mapping of a buffer not opened O_RDWR is -EACCES.  p2pbuf goes
 * further so that nothing writes a read-only buffer: IOMMU_IOAS_MAP_FILE
 * with IOMMU_IOAS_MAP_WRITEABLE is -EPERM, a type1 MAP_DMA with WRITE of
 * its mapping -EFAULT, an io_uring READ_FIXED into it -EFAULT, and
 * DMA_BUF_IOCTL_SYNC with DMA_BUF_SYNC_WRITE -EPERM (see p2p_dmabuf_writable()).
 */
struct p2p_dmabuf_export_info {
	uint32_t argsz;
	uint32_t flags;
	const char *name;
	const struct p2p_dmabuf_ops *ops;
	void *priv;
	uint32_t nr_ranges;
	const struct p2p_phys_range *ranges;
	uint32_t open_flags;
};

enum {
	P2P_EXPORT_REVOKED = 1u << 0,	 /* start in the temporarily revoked state */
	P2P_EXPORT_OPEN_FLAGS = 1u << 1, /* @open_flags is set (else the file is O_RDWR) */
};

/**
 * p2p_dmabuf_export() - create a buffer
 * @info: see struct p2p_dmabuf_export_info
 * @out: the buffer, with one reference owned by the caller
 *
 * The buffer is put on the list of live dma-bufs (p2p_dmabuf_bufinfo())
 * until its release.
 *
 * Return: 0 or -EINVAL (missing required op, bad range, bad argsz), -E2BIG
 * (non-zero unknown tail), -ENOMEM, -EMFILE.
 */
P2P_API int p2p_dmabuf_export(const struct p2p_dmabuf_export_info *info,
			      struct p2p_dmabuf **out);

/**
 * p2p_dmabuf_get() - the buffer behind a file descriptor (dma_buf_get())
 * @fd: any fd on the buffer's file: installed by p2p_dmabuf_fd_install(),
 *	p2p_dup(), p2p_fd_dup*(), a plain dup(2) or an fd received with
 *	SCM_RIGHTS
 * @out: the buffer with a new reference (on its file)
 *
 * Return: 0, -EBADF if @fd is not open, -EINVAL if it is not a dma-buf.
 */
P2P_API int p2p_dmabuf_get(int fd, struct p2p_dmabuf **out);
/** p2p_dmabuf_ref() - take another reference (get_file()). Paired with p2p_dmabuf_put(). */
P2P_API struct p2p_dmabuf *p2p_dmabuf_ref(struct p2p_dmabuf *buf);
/**
 * p2p_dmabuf_put() - drop a reference (dma_buf_put(), i.e. fput())
 *
 * The references are the buffer's file's: fds, CPU mappings and in-library
 * users share one count.  The last one releases the buffer (the exporter's
 * release op), without library locks held.
 */
P2P_API void p2p_dmabuf_put(struct p2p_dmabuf *buf);
/** p2p_dmabuf_file() - the buffer's file (dmabuf->file), borrowed */
P2P_API struct p2p_file *p2p_dmabuf_file(const struct p2p_dmabuf *buf);
/** p2p_dmabuf_writable() - was the buffer exported O_RDWR (may anything write it)? */
P2P_API bool p2p_dmabuf_writable(const struct p2p_dmabuf *buf);

/**
 * p2p_dmabuf_fd_install() - give out a new fd that holds a reference (dma_buf_fd())
 * @buf: the buffer
 * @flags: O_CLOEXEC; other bits are accepted and ignored (open_flags are not
 *	validated, kernel-semantics 1.1): the access mode is the buffer's
 *	file's, set at export (struct p2p_dmabuf_export_info @open_flags)
 *
 * The fd is owned by the caller.  Close it with p2p_close(), which drops the
 * reference it holds; the last reference releases the buffer.  p2p_dup(),
 * p2p_fd_dup(), p2p_fd_dup3(), p2p_fd_dupfd() and p2p_fd_adopt() give new
 * fds references of their own.  A plain close(2) leaks the fd's reference
 * (the LD_PRELOAD door wraps it); a plain dup(2) refers to the same buffer
 * (p2p_dmabuf_get() works on it) but holds no reference.
 *
 * Return: the new fd, or -EMFILE, -ENFILE, -ENOMEM.
 */
P2P_API int p2p_dmabuf_fd_install(struct p2p_dmabuf *buf, int flags);

/** p2p_dmabuf_size() - size in bytes */
P2P_API uint64_t p2p_dmabuf_size(const struct p2p_dmabuf *buf);
/** p2p_dmabuf_name() - the name given at export */
P2P_API const char *p2p_dmabuf_name(const struct p2p_dmabuf *buf);
/** p2p_dmabuf_priv() - exporter private data */
P2P_API void *p2p_dmabuf_priv(const struct p2p_dmabuf *buf);
/** p2p_dmabuf_ops() - the exporter's ops table (to recognise its own buffers) */
P2P_API const struct p2p_dmabuf_ops *p2p_dmabuf_ops(const struct p2p_dmabuf *buf);
/** p2p_dmabuf_ranges() - the backing ranges (immutable, owned by @buf) */
P2P_API const struct p2p_phys_range *p2p_dmabuf_ranges(const struct p2p_dmabuf *buf,
						       unsigned int *nr);

/**
 * p2p_dmabuf_resv_lock() - take the reservation lock
 *
 * Exporters' locks come before it, importers' after it (docs/locking.md).
 * Dynamic importers call p2p_attachment_map()/unmap() and
 * p2p_dmabuf_resv_add_fence() with it held.
 */
P2P_API void p2p_dmabuf_resv_lock(struct p2p_dmabuf *buf);
/** p2p_dmabuf_resv_trylock() - take the reservation lock if it is free; Return: true if taken */
P2P_API bool p2p_dmabuf_resv_trylock(struct p2p_dmabuf *buf);
/** p2p_dmabuf_resv_unlock() - drop the reservation lock */
P2P_API void p2p_dmabuf_resv_unlock(struct p2p_dmabuf *buf);

/**
 * p2p_dmabuf_resv_add_fence() - publish in-flight work on the buffer
 * @buf: the buffer, resv held
 * @fence: signalled when the work is done; the buffer takes a reference
 *
 * A revoke waits for every fence added before it invalidated importers.
 *
 * Return: 0 or -ENOMEM.
 */
P2P_API int p2p_dmabuf_resv_add_fence(struct p2p_dmabuf *buf, struct p2p_fence *fence);

/** Revocation state of a buffer (kernel-semantics 1.6). */
enum p2p_dmabuf_status {
	P2P_DMABUF_OK = 0,
	P2P_DMABUF_TEMP_REVOKED = 1,
	P2P_DMABUF_PERM_REVOKED = 2,
};

/** p2p_dmabuf_status() - current state; may change right after it returns */
P2P_API enum p2p_dmabuf_status p2p_dmabuf_status(const struct p2p_dmabuf *buf);

/**
 * p2p_dmabuf_revoke() - revoke every importer's and CPU access (exporter side)
 * @buf: the buffer, resv not held
 * @status: P2P_DMABUF_TEMP_REVOKED or P2P_DMABUF_PERM_REVOKED
 *
 * Under resv: set the state, call every importer's invalidate_mappings and
 * wait for all fences.  Then, without resv: wait until every map of an
 * attachment has been unmapped, and make every CPU mapping of the buffer
 * raise SIGBUS (contents kept).  A buffer already revoked is not revoked
 * again; TEMP to PERM only changes the state.  PERM is sticky.  Fences
 * added by the invalidate callbacks themselves are waited for too.
 *
 * Blocks until importers unmapped.  Called by exporters with their own
 * (outer) locks held, never with resv held.
 *
 * Return: 0, -EINVAL for a bad @status, -EBADFD if already PERM_REVOKED, or
 * the error of zapping CPU mappings (no userfaultfd, UFFDIO_REGISTER): the
 * state has changed and importers were invalidated even then.  Revoking
 * again retries that zap, so 0 always means the CPU mappings fault.
 */
P2P_API int p2p_dmabuf_revoke(struct p2p_dmabuf *buf, enum p2p_dmabuf_status status);

/**
 * p2p_dmabuf_unrevoke() - allow access again after a temporary revoke
 *
 * Only flips the state (under resv) and re-enables the existing CPU mappings
 * (they fault back in on use, with the old contents).  Importers are not
 * remapped: they map again on their own; those with a @restore callback
 * are told (after a real TEMP_REVOKED -> OK change).  If UFFDIO_UNREGISTER fails, the
 * pieces are mapped again over the range instead.  Calling it when not
 * revoked only retries CPU mappings left blocked by an earlier failure.
 *
 * Return: 0, -EBADFD if the buffer is permanently revoked, or the error of
 * re-enabling a CPU mapping (the state is OK even then; call again).
 */
P2P_API int p2p_dmabuf_unrevoke(struct p2p_dmabuf *buf);

/* ---------------------------------------------------------------------- */
/* Importers                                                              */

/**
 * struct p2p_dmabuf_importer_ops - importer callbacks
 * @invalidate_mappings: optional; makes the attachment revocable.  Called
 *	with resv held when the exporter revokes: stop starting new work,
 *	publish fences for work in flight (or wait for it), and unmap within a
 *	bounded time (from this callback or later, with resv held).  Must not
 *	take the exporter's outer locks.
 * @restore: optional; called with resv held once a temporary revoke is
 *	lifted (p2p_dmabuf_unrevoke(): the state is OK again and CPU mappings
 *	are re-enabled), so the importer may map again.  Must not block for
 *	long nor take the exporter's outer locks (they may be held).
 */
struct p2p_dmabuf_importer_ops {
	void (*invalidate_mappings)(struct p2p_attachment *attach);
	void (*restore)(struct p2p_attachment *attach);
};

enum {
	P2P_ATTACH_PEER2PEER = 1u << 0, /* importer can take device (MMIO) memory */
};

/**
 * struct p2p_attach_info - arguments of p2p_dmabuf_attach()
 * @argsz: sizeof(struct p2p_attach_info)
 * @flags: P2P_ATTACH_* flags
 * @importer_ops: NULL for a static (non-dynamic) importer
 * @importer_priv: see p2p_attachment_importer_priv()
 * @name: importer name, for logs
 */
struct p2p_attach_info {
	uint32_t argsz;
	uint32_t flags;
	const struct p2p_dmabuf_importer_ops *importer_ops;
	void *importer_priv;
	const char *name;
};

/**
 * p2p_dmabuf_attach() - attach an importer
 * @buf: the buffer (the attachment takes a reference)
 * @info: importer description
 * @out: the attachment
 *
 * Return: 0, -EINVAL (bad @info), or the exporter's refusal: -EOPNOTSUPP
 * (importer not P2P or not revocable, for exporters that require it),
 * -ENODEV (revoked), -ENOMEM.
 */
P2P_API int p2p_dmabuf_attach(struct p2p_dmabuf *buf, const struct p2p_attach_info *info,
			      struct p2p_attachment **out);
/** p2p_dmabuf_detach() - detach; every map must have been unmapped. */
P2P_API void p2p_dmabuf_detach(struct p2p_attachment *attach);
/** p2p_attachment_dmabuf() - the attached buffer (borrowed) */
P2P_API struct p2p_dmabuf *p2p_attachment_dmabuf(const struct p2p_attachment *attach);
/** p2p_attachment_importer_priv() - what the importer passed at attach */
P2P_API void *p2p_attachment_importer_priv(const struct p2p_attachment *attach);
/** p2p_attachment_is_revocable() - importer ops with an invalidate callback? */
P2P_API bool p2p_attachment_is_revocable(const struct p2p_attachment *attach);
/** p2p_attachment_is_peer2peer() - importer declared P2P support? */
P2P_API bool p2p_attachment_is_peer2peer(const struct p2p_attachment *attach);

/**
 * p2p_attachment_map() - get the buffer's physical ranges
 * @attach: the attachment; resv held if it is dynamic
 * @out: the table, freed by p2p_attachment_unmap()
 *
 * Return: 0 or the exporter's error (-ENODEV while revoked for exporters
 * that revoke, such as VFIO), -ENOMEM.
 */
P2P_API int p2p_attachment_map(struct p2p_attachment *attach, struct p2p_sgt **out);
/** p2p_attachment_unmap() - release a map; resv held if dynamic. */
P2P_API void p2p_attachment_unmap(struct p2p_attachment *attach, struct p2p_sgt *sgt);
/**
 * p2p_attachment_iommufd_map() - the exporter's private interconnect
 * @attach: the attachment; resv held
 * @out: the single physical range behind the buffer
 *
 * How the IOMMU layer maps a dma-buf for IOMMU_IOAS_MAP_FILE without an SG
 * table: the exporter's @iommufd_map op (struct p2p_dmabuf_ops), so the
 * importer never calls an exporter by name.  Nothing to unmap.
 *
 * Return: 0, -EOPNOTSUPP (the exporter has no such interconnect, or the
 * buffer has more than one range), -ENODEV (revoked).
 */
P2P_API int p2p_attachment_iommufd_map(struct p2p_attachment *attach,
				       struct p2p_phys_range *out);
/**
 * p2p_attachment_pin() - pin (does not block revoke)
 *
 * Takes resv itself: unlike the kernel's dma_buf_pin(), call it without
 * resv held.  Return: 0 or the exporter's -errno.
 */
P2P_API int p2p_attachment_pin(struct p2p_attachment *attach);
/** p2p_attachment_unpin() - paired with p2p_attachment_pin(); takes resv itself. */
P2P_API void p2p_attachment_unpin(struct p2p_attachment *attach);

/** p2p_dmabuf_begin_cpu_access() - bracket CPU access. Return: 0 or -errno. */
P2P_API int p2p_dmabuf_begin_cpu_access(struct p2p_dmabuf *buf, enum p2p_dma_dir dir);
/** p2p_dmabuf_end_cpu_access() - end of the bracket. Return: 0 or -errno. */
P2P_API int p2p_dmabuf_end_cpu_access(struct p2p_dmabuf *buf, enum p2p_dma_dir dir);

/* ---------------------------------------------------------------------- */
/* Fences                                                                 */

/** p2p_fence_create() - a new unsignalled fence with one reference. */
P2P_API int p2p_fence_create(struct p2p_fence **out);
/** p2p_fence_ref() - take a reference. Paired with p2p_fence_put(). */
P2P_API struct p2p_fence *p2p_fence_ref(struct p2p_fence *fence);
/** p2p_fence_put() - drop a reference. */
P2P_API void p2p_fence_put(struct p2p_fence *fence);
/** p2p_fence_signal() - mark done and wake waiters; idempotent. */
P2P_API void p2p_fence_signal(struct p2p_fence *fence);
/** p2p_fence_is_signaled() - non-blocking test. */
P2P_API bool p2p_fence_is_signaled(const struct p2p_fence *fence);
/**
 * p2p_fence_wait() - wait for the fence
 * @timeout_ns: negative waits forever
 * Return: 0 when signalled, -ETIME on timeout.
 */
P2P_API int p2p_fence_wait(struct p2p_fence *fence, int64_t timeout_ns);

/* ---------------------------------------------------------------------- */
/* CPU mappings                                                           */

/**
 * p2p_dmabuf_populate() - pre-fault the memory behind a dma-buf, in parallel
 * @buf: the buffer (exporter side: every range's p2p_mem)
 * @nthreads: as p2p_mem_populate(): 0 is one thread per online core
 *
 * p2p_mem_populate() of each range of @buf: a heap buffer or a BAR's
 * dma-buf gets its pages before its first mmap or DMA.  Revocation does
 * not matter (it stops importers, not the exporter's memory).
 *
 * Return: 0, or -EINVAL (NULL @buf), -ENOMEM, -EFAULT.
 */
P2P_API int p2p_dmabuf_populate(struct p2p_dmabuf *buf, unsigned int nthreads);

/**
 * p2p_dmabuf_mmap() - map a buffer into this process
 * @buf: the buffer; the mapping takes a reference
 * @addr: hint, or the address with MAP_FIXED
 * @length: bytes (rounded up to pages)
 * @prot: PROT_READ / PROT_WRITE
 * @flags: MAP_SHARED (or MAP_PRIVATE where the exporter allows it: a
 *	copy-on-write mapping), optionally MAP_FIXED
 * @offset: byte offset into the buffer, page aligned
 * @out: the address
 *
 * Multi-range buffers map contiguously in VA.  The mapping is populated in
 * whole runs (huge pages where the system allows) unless the buffer is
 * revoked, in which case access raises SIGBUS until it is un-revoked.
 * Release with p2p_munmap().
 *
 * Return: 0, -EACCES (MAP_SHARED with PROT_WRITE of a buffer not exported
 * O_RDWR, or any mapping of one exported O_WRONLY, as do_mmap() checks the
 * file's mode), -EINVAL (no exporter mmap op, misaligned offset or MAP_FIXED
 * address, zero length, PROT_EXEC, offset + length beyond the buffer), the
 * exporter's error (-EINVAL for MAP_PRIVATE and -ENODEV while revoked for
 * VFIO buffers), -ENOMEM, or a userfaultfd error for a revoked buffer.
 */
P2P_API int p2p_dmabuf_mmap(struct p2p_dmabuf *buf, void *addr, size_t length, int prot,
			    int flags, uint64_t offset, void **out);

/**
 * p2p_munmap() - remove a mapping made by p2p_dmabuf_mmap() or a device mmap
 * @addr: start of the mapping
 * @length: its length (a whole mapping: partial unmaps are -EINVAL)
 *
 * Return: 0, -EINVAL if no p2pbuf mapping starts at @addr with @length.
 */
P2P_API int p2p_munmap(void *addr, size_t length);

/**
 * p2p_va_range_mapped() - does any p2pbuf CPU mapping overlap [@addr, @addr + @len)?
 * @len: bytes, > 0
 *
 * What an importer pinning user memory asks (a dma-buf mapping is
 * VM_PFNMAP memory in the kernel: it cannot be pinned).  Thread-safe.
 *
 * Return: true if one does.
 */
P2P_API bool p2p_va_range_mapped(const void *addr, size_t len);

/**
 * p2p_va_lookup() - turn a user address back into (dma-buf, offset)
 * @addr: any address inside a p2pbuf CPU mapping
 * @out: the buffer, with a new reference
 * @offset: byte offset of @addr in the buffer
 * @avail: optional: bytes of the mapping from @addr to its end
 *
 * Return: 0 or -EFAULT if @addr is not inside a p2pbuf mapping.
 */
P2P_API int p2p_va_lookup(const void *addr, struct p2p_dmabuf **out, uint64_t *offset,
			  size_t *avail);

/**
 * p2p_close() - close(2) for fds of p2pbuf files (include/p2pbuf/file.h)
 *
 * Closes @fd and drops the reference it holds, if it holds one (an fd given
 * out by the library, p2p_dup() or p2p_fd_dup*(), or adopted with
 * p2p_fd_adopt()); the last reference releases the file (a dma-buf: its
 * memory and the exporter's state; CPU mappings hold references of their
 * own, so a buffer lives until p2p_munmap() too).  Other fds are just
 * closed.  An fd the library keeps for itself (p2p_file_fd(),
 * p2p_vfio_device_fd(), p2p_iommufd_fd()) is refused with -EBADF and stays
 * open.  Thread-safe.
 *
 * Return: 0 or -EBADF.
 */
P2P_API int p2p_close(int fd);

/**
 * p2p_dup() - dup(2) of a p2pbuf fd, the copy with FD_CLOEXEC and its own reference
 *
 * p2p_fd_dup(@fd) with O_CLOEXEC; for any other fd a plain F_DUPFD_CLOEXEC.
 * Return: the new fd or -errno (-EBADF, -EMFILE, -ENOMEM).
 */
P2P_API int p2p_dup(int fd);

/**
 * p2p_dmabuf_bufinfo() - what /sys/kernel/debug/dma_buf/bufinfo shows
 * @buf: where to write the text (NUL-terminated, truncated to @len), or NULL
 * @len: bytes at @buf
 *
 * The kernel's format (dma_buf_debug_show(), v6.19): a header, then for each
 * live dma-buf, newest first, the line "size flags mode count exp_name ino
 * name" (size in bytes; flags: the file's open flags, access mode and
 * O_NONBLOCK; mode: its f_mode, FMODE_READ 0x1 / FMODE_WRITE 0x2 with
 * FMODE_LSEEK 0x4 and FMODE_OPENED 0x80000; count: the file's references;
 * exp_name: the name given at export; ino: the inode fstat(2) shows for its
 * fds; name: the DMA_BUF_SET_NAME name or "<none>"), its attached importers
 * by name and their count, and at the end "Total N objects, M bytes".
 * Fences are not listed: p2pbuf's are BOOKKEEP-usage (in-flight importer
 * DMA), which the kernel's dma_resv_describe() does not show.
 *
 * Takes the list lock, then each buffer's resv in turn: do not call with a
 * resv held.
 *
 * Return: the length of the whole text (without the NUL), as snprintf():
 * more than @len - 1 means it was truncated; or -ENOMEM.
 */
P2P_API ssize_t p2p_dmabuf_bufinfo(char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
