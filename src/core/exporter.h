/* SPDX-License-Identifier: MIT */
/*
 * The exporter-side interface of the dma-buf core: what an exporter (the
 * VFIO exporter, src/vfio) and a memory provider (the PCI function model's
 * BARs, src/pci) may use beyond the public API (include/p2pbuf/), as
 * the kernel's include/linux/dma-buf.h is for exporters.  Nothing else of
 * the core's internals (core.h) is theirs: the structures stay opaque.
 * Locks: each function says what it takes; their order is docs/locking.md's.
 */
#ifndef P2PBUF_CORE_EXPORTER_H
#define P2PBUF_CORE_EXPORTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <p2pbuf/dmabuf.h>

/*
 * p2p_mem_create() with the memory at @fd_off in its memfd (src/core/mem.c):
 * a BAR's memory sits at its VFIO region offset (kernel-semantics 3.1).
 */
int mem_create(const char *name, uint64_t size, unsigned int flags, uint64_t fd_off,
	       struct p2p_mem **out);

/*
 * A CPU mapping of @buf (src/core/cpumap.c), as p2p_dmabuf_mmap() makes
 * one, with @pgoff_tag the vm_pgoff /proc/self/maps shows (a BAR mmap keeps
 * the region index bits of the offset the program passed).
 */
int cpumap_create(struct p2p_dmabuf *buf, void *addr, size_t length, int prot, int flags,
		  uint64_t offset, uint64_t pgoff_tag, void **out);

/* A reference unless the buffer's release has started (the kernel's get_file_rcu()). */
bool dmabuf_tryget(struct p2p_dmabuf *buf);
/* True once the last reference is gone (the release runs or is about to). */
bool dmabuf_dying(const struct p2p_dmabuf *buf);

/* Revoke in this process only (src/core/dmabuf.c): fork children keep theirs. */
int dmabuf_revoke_local(struct p2p_dmabuf *buf, enum p2p_dmabuf_status status);

/*
 * A revoke batch: between _begin() and _end() on one thread, each revoke
 * still invalidates its importers under its resv, but the fences they
 * publish are waited for together in _end() (no lock held), so importers
 * that wait for someone else (a vfio-user client's ack) overlap their waits
 * across buffers: a device-wide revoke costs the slowest, not the sum.
 * The exporter's walk (vfio_dmabufs_move()) runs inside one.  Nested
 * batches join the outer one.
 */
struct dmabuf_revoke_batch {
	struct p2p_fence **fences;
	unsigned int nr, max;
	bool nested;
};
void dmabuf_revoke_batch_begin(struct dmabuf_revoke_batch *b);
void dmabuf_revoke_batch_end(struct dmabuf_revoke_batch *b);

#endif
