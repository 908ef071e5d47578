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
 * pages->count: references (areas, builders) in the high 32 bits, DMA in
 * flight in the low 16 bits, DMA ending (done with the memory, still
 * touching the pages object) in bits 16-31.  The last reference waits for
 * the low 32 bits to drain (pages_put()), so a DMA that outlives its area
 * still has its memory and its pages object.
 */
#define PAGES_REF (1ull << 32)
#define PAGES_EXIT (1ull << 16)
#define PAGES_DMA_MASK (PAGES_EXIT - 1)
#define PAGES_BUSY_MASK (PAGES_REF - 1)

struct ioas_pages {
	atomic_uint_fast64_t count;
	atomic_bool revoked; /* next to count: one cache line per translation */
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
	struct p2p_fence *drain; /* under mutex */
	/* DMABUF: the domains filled with these pages (struct pages_dom). */
	pthread_mutex_t dom_mutex;
	struct list_head doms;
};

struct ioas_area {
	uint64_t iova;
	uint64_t length;
	uint64_t pages_off;
	uint32_t prot; /* IOMMU_IOAS_MAP_READABLE | WRITEABLE */
	struct ioas_pages *pages;
	/*
	 * Where iova lands when the backing is contiguous (process memory, a
	 * memfd, a single-range dma-buf), so a translation reads no more
	 * than the area (and the pages' count line).  NULL: walk the segments.
	 */
	uint8_t *direct;
	/* A dma-buf area: DMA also counts on the pages (revoke fence). */
	bool revocable;
	/* The program's memory (process memory, a memfd): may vanish, copy guarded. */
	bool fragile;
	/*
	 * DMA in flight through this area (p2p_ioas_dma_begin() to
	 * p2p_ioas_dma_end()), plus AREA_DYING once an unmap has taken the
	 * area out of the IOAS: the unmap waits for the count to drain
	 * before it returns (area_drain()).
	 */
	atomic_uint inflight;
	struct p2p_ioas *ioas;
};

#define AREA_DYING (1u << 31)

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
	uintptr_t *pt_root; /* the IO page table (io_pagetable.c) */
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
void pages_dma_done(struct ioas_pages *p);
uint8_t *pages_host(const struct ioas_pages *p, uint64_t off, uint64_t *avail);
int pages_user(void *va, uint64_t length, uint32_t flags, struct ioas_pages **out,
	       uint64_t *off);
int pages_memfd(int fd, uint64_t start, uint64_t length, uint32_t flags,
		struct ioas_pages **out, uint64_t *off);
int pages_dmabuf(struct p2p_dmabuf *buf, uint64_t start, uint64_t len, bool extended,
		 struct ioas_pages **out);

/* device.c */
int iommufd_option(struct iommufd_ucmd *ucmd);
int iommufd_get_hw_info(struct iommufd_ucmd *ucmd);
int iommufd_hwpt_alloc(struct iommufd_ucmd *ucmd);
int iommufd_xobj_destroy(struct p2p_iommufd *ctx, uint32_t id);
void iommufd_ctx_release_xobjs(struct p2p_iommufd *ctx);

#endif
