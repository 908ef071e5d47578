/* SPDX-License-Identifier: MIT */
/*
 * The IOMMU layer's private header: what the files of src/iommu share, as
 * drivers/iommu/iommufd/iommufd_private.h.
 *
 *   main.c         - the iommufd context and its file, object IDs, the
 *		      ioctl table and its dispatcher
 *   ioas.c         - IOAS objects and the IOAS ioctls
 *   io_pagetable.c - IOVA areas of an IOAS, the IO page table, map /
 *		      unmap / copy, translation for device DMA
 *   pages.c        - what backs areas: pinned process memory, memfd
 *		      mappings, dma-buf imports and their invalidation
 *   device.c       - device and HWPT objects, IOMMU_GET_HW_INFO,
 *		      IOMMU_HWPT_ALLOC, IOMMU_OPTION
 *
 * Object IDs: one ID space per context, as the kernel's xarray: slot i is
 * ID i + 1 and holds either an IOAS (objs[i]) or another object (xobjs[i]).
 *
 * Locks (their order: docs/locking.md): ctx->lock protects the object
 * table, each HWPT's users and each device's HWPT; ioas->lock (rw) an
 * IOAS's areas, allowed ranges and IO page table; ioas->drain_lock the
 * wakeup of an unmap waiting for DMA; pages->mutex one pages object's
 * revoke fence and SGT; pages->dom_mutex (after ioas->domain_lock and
 * resv, before nothing of the IOMMU layer) its list of filled domains.
 */
#ifndef P2PBUF_IOMMUFD_H
#define P2PBUF_IOMMUFD_H

#include <sys/types.h>

#include <p2pbuf/iommu.h>

#include <p2pbuf/dmabuf.h>

#include "../util/private.h"

enum iommufd_obj_type {
	IOMMUFD_OBJ_DEVICE = 1,
	IOMMUFD_OBJ_HWPT_PAGING,
};

/* A non-IOAS object: struct p2p_iommufd_device or struct iommufd_hwpt start with it. */
struct iommufd_xobj {
	enum iommufd_obj_type type;
	uint32_t id;
};

struct p2p_iommufd {
	struct p2p_file *file; /* the context lives as long as its file (bound devices hold it) */
	pthread_mutex_t lock;
	struct p2p_ioas **objs;	      /* index = id - 1 */
	struct iommufd_xobj **xobjs; /* same index space */
	uint32_t nr_objs;
	bool account_mm; /* IOMMU_OPTION_RLIMIT_MODE */
};

#define IOVA_MAX UINT64_MAX

enum pages_kind {
	PAGES_USER,
	PAGES_MEMFD,
	PAGES_DMABUF,
	PAGES_CALLBACK, /* no memory: accesses call cb_ops->rw (p2p_ioas_map_callback()) */
};

struct pages_seg {
	uint64_t off; /* offset within the pages object */
	uint64_t len;
	uint8_t *host;
	int fd;		/* the memory's file (p2p_mem_fd(), borrowed), or -1 */
	uint64_t fd_off; /* where host[0] is in fd */
};

/*
 * A domain filled with an area over dma-buf pages (iommufd's per-pages
 * tracking list, kernel-semantics 2.5): the revoke unmaps it from the
 * domain without walking IOAS -> area (the lock order forbids it).
 */
struct pages_dom {
	struct list_head node; /* pages->doms, under pages->dom_mutex */
	struct p2p_ioas_domain *dom;
	uint64_t iova, length;
	bool revoked; /* unmapped from the domain by a revoke: never again */
};

/*
 * pages->count: references (areas, builders).  DMA in flight is counted on
 * the areas (struct ioas_area.inflight), not here: an unmap waits for its
 * areas to drain before it drops their references.
 */
#define PAGES_REF 1ull

struct ioas_pages {
	atomic_uint_fast64_t count;
	atomic_bool revoked;
	enum pages_kind kind;
	bool writable; /* mapped with IOMMU_IOAS_MAP_WRITEABLE (iopt_pages.writable) */
	uint64_t len; /* bytes covered, page multiple */
	uint8_t *host; /* USER, MEMFD: contiguous */
	void *map_base; /* MEMFD: our mapping, unmapped at free */
	size_t map_len;
	int fd;		   /* MEMFD mapped while a domain was attached: its file, or -1 */
	uint64_t fd_start; /* where host[0] is in fd */

	/* DMABUF */
	struct p2p_attachment *attach;
	struct p2p_sgt *sgt; /* EXTENDED (SGT path) only */
	unsigned int nsegs;
	struct pages_seg *segs;
	pthread_mutex_t mutex;
	struct ioas_area *areas; /* under mutex: the areas on these pages (DMABUF) */
	atomic_uint busy; /* areas a revoke waits for (AREA_PENDING set), under mutex */
	struct p2p_fence *drain; /* under mutex */
	/* DMABUF: the domains filled with these pages (struct pages_dom). */
	pthread_mutex_t dom_mutex;
	struct list_head doms;

	/* CALLBACK: fixed at creation */
	const struct p2p_ioas_callback_ops *cb_ops;
	void *cb_priv;
};

/*
 * An area: [iova, iova + length) of one IOAS onto a pages object.  Area
 * records are type-stable (allocated from their IOAS's slab, recycled, and
 * freed only with the IOAS), so a translation may touch the `inflight`
 * word of a record it found in the IO page table without any lock, even if
 * the area was unmapped meanwhile: see "Translation without a lock" in
 * io_pagetable.c.  A record is one cache line (64 bytes, aligned).
 */
struct ioas_area {
	/*
	 * DMA in flight through this area (p2p_ioas_dma_begin() to
	 * p2p_ioas_dma_end()) in the low bits, and flags: AREA_DYING once an
	 * unmap has taken the area out of the IOAS (or while the record is
	 * free), AREA_REVOKED once its dma-buf is revoked, AREA_PENDING while a
	 * revoke waits for the DMA in flight here.  A translation raises the
	 * count with one atomic add and checks the flags it returns.
	 */
	atomic_uint inflight;
	uint8_t prot; /* IOMMU_IOAS_MAP_READABLE | WRITEABLE */
	/*
	 * A callback area (pages of kind PAGES_CALLBACK): no host memory;
	 * p2p_ioas_dma_begin() says -EREMOTE and p2p_ioas_callback_rw() calls
	 * the owner, counted in `inflight` like DMA.
	 */
	bool callback;
	/* A dma-buf area: on pages->areas, revoked with it. */
	bool revocable;
	/* The program's memory (process memory, a memfd): may vanish, copy guarded. */
	bool fragile;
	uint64_t iova;
	uint64_t length;
	/*
	 * Where iova lands when the backing is contiguous (process memory, a
	 * memfd, a single-range dma-buf), so a translation reads no more
	 * than the area's first cache line.  NULL: walk the segments.
	 */
	uint8_t *direct;
	struct ioas_pages *pages;
	uint64_t pages_off;
	struct p2p_ioas *ioas; /* set once when the record is made, never changes */
	/* On pages->areas (under pages->mutex) while live; on the IOAS's free list when free. */
	struct ioas_area *next;
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct ioas_area) == 64, "an area record is one cache line");

#define AREA_DYING (1u << 31)
#define AREA_REVOKED (1u << 30)
#define AREA_PENDING (1u << 29)
#define AREA_FLAGS (AREA_DYING | AREA_REVOKED | AREA_PENDING)
#define AREA_COUNT (~AREA_FLAGS)

struct p2p_ioas {
	struct kref ref;
	struct p2p_iommufd *ctx;
	uint32_t id;
	pthread_rwlock_t lock;
	/* An unmap waiting for DMA through the areas it removed (area_drain()). */
	pthread_mutex_t drain_lock;
	pthread_cond_t drain_cond;
	struct ioas_area **areas; /* sorted by iova */
	uint64_t *starts;	  /* areas[i]->iova, dense for the search */
	size_t nr, max;
	unsigned int ndev;
	uint64_t alloc_hint;
	struct iommu_iova_range *allowed; /* NULL: everything */
	uint32_t nr_allowed;
	_Atomic(uintptr_t) *pt_root; /* the IO page table (io_pagetable.c) */
	/*
	 * Area records (type-stable) and page-table tables come from chunks
	 * freed with the IOAS (large ones on huge pages: a random walk over
	 * 100 000 areas would miss the TLB); the area free list is under
	 * drain_lock, the rest under lock (write).
	 */
	void **chunks;
	size_t nr_chunks, nr_area_chunks, nr_pt_chunks;
	struct ioas_area *area_free;
	_Atomic(uintptr_t) *pt_pool; /* tables left in the current chunk */
	size_t pt_pool_left;
	bool no_large_pages; /* IOMMU_OPTION_HUGE_PAGES 0: 4 KiB alignment */
	/*
	 * Attached domains (p2p_ioas_domain_attach()), told of every map and
	 * unmap.  domain_lock serializes them with the area changes that
	 * concern them; it comes before ioas->lock.
	 */
	pthread_mutex_t domain_lock;
	struct list_head domains; /* under domain_lock */
	atomic_uint ndomains;
};


/*
 * One ioctl call (struct iommufd_ucmd): @cmd is the caller's structure,
 * copied in and checked by the dispatcher (main.c) before the handler runs.
 */
struct iommufd_ucmd {
	struct p2p_iommufd *ictx;
	void *ubuffer;	    /* the caller's structure */
	void *cmd;	    /* its checked copy, sized for this kernel */
	uint32_t user_size; /* the caller's size, as the dispatcher read it */
};

/* Copy the first @size bytes of ucmd->cmd back to the caller. */
static inline int iommufd_ucmd_copy_out(struct iommufd_ucmd *ucmd, size_t size)
{
	return copy_to_user(ucmd->ubuffer, ucmd->cmd, size);
}

/* iommufd_ucmd_respond(): copy back at most what the caller's struct holds. */
static inline int iommufd_ucmd_respond(struct iommufd_ucmd *ucmd, size_t size)
{
	return iommufd_ucmd_copy_out(ucmd, MIN((size_t)ucmd->user_size, size));
}

/* main.c */
int iommufd_slot_alloc_locked(struct p2p_iommufd *ctx, uint32_t *slot);

/* ioas.c: the IOAS ioctls, and IOMMU_DESTROY of any object */
int ioas_destroy(struct p2p_iommufd *ctx, uint32_t id);
int iommufd_ioas_alloc_ioctl(struct iommufd_ucmd *ucmd);
int iommufd_ioas_iova_ranges(struct iommufd_ucmd *ucmd);
int iommufd_ioas_allow_iovas(struct iommufd_ucmd *ucmd);
int iommufd_ioas_map(struct iommufd_ucmd *ucmd);
int iommufd_ioas_map_file(struct iommufd_ucmd *ucmd);
int iommufd_ioas_unmap(struct iommufd_ucmd *ucmd);
int iommufd_ioas_copy(struct iommufd_ucmd *ucmd);

/* io_pagetable.c */
int iopt_init(struct p2p_ioas *ioas);
void iopt_destroy(struct p2p_ioas *ioas);
uint64_t iopt_alignment(const struct p2p_ioas *ioas);
bool iopt_range_allowed(const struct p2p_ioas *ioas, uint64_t iova, uint64_t last);
int iopt_check_map_args(uint32_t flags, uint64_t iova, uint64_t length, bool native);
int iopt_map_user(struct p2p_ioas *ioas, void *va, uint64_t length, uint64_t *iova,
		  uint32_t flags);
int iopt_map_file(struct p2p_ioas *ioas, int fd, uint64_t start, uint64_t length,
		  uint64_t *iova, uint32_t flags);
int ioas_set_large_pages(struct p2p_ioas *ioas, bool enable);
bool ioas_has_domains(struct p2p_ioas *ioas);
void pages_domains_revoke(struct ioas_pages *p);
bool ioas_large_pages(struct p2p_ioas *ioas);

/* pages.c */
void pages_get(struct ioas_pages *p);
void pages_put(struct ioas_pages *p);
void pages_area_idle(struct ioas_pages *p);
void pages_link_area(struct ioas_pages *p, struct ioas_area *a);
void pages_unlink_area(struct ioas_pages *p, struct ioas_area *a);
uint8_t *pages_host(const struct ioas_pages *p, uint64_t off, uint64_t *avail);
int pages_user(void *va, uint64_t length, uint32_t flags, struct ioas_pages **out,
	       uint64_t *off);
int pages_memfd(int fd, uint64_t start, uint64_t length, uint32_t flags,
		struct ioas_pages **out, uint64_t *off);
int pages_dmabuf(struct p2p_dmabuf *buf, uint64_t start, uint64_t len, bool extended,
		 struct ioas_pages **out);
int pages_callback(const struct p2p_ioas_callback_ops *ops, void *priv, uint64_t length,
		   uint32_t flags, struct ioas_pages **out);

/* device.c */
int iommufd_option(struct iommufd_ucmd *ucmd);
int iommufd_get_hw_info(struct iommufd_ucmd *ucmd);
int iommufd_hwpt_alloc(struct iommufd_ucmd *ucmd);
int iommufd_xobj_destroy(struct p2p_iommufd *ctx, uint32_t id);
void iommufd_ctx_release_xobjs(struct p2p_iommufd *ctx);

#endif
