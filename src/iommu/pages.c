// SPDX-License-Identifier: MIT
/*
 * What backs IOAS areas (drivers/iommu/iommufd/pages.c): "pages" objects
 * over pinned process memory, a memfd mapping, or a dma-buf attachment,
 * and the dma-buf importer's invalidation (kernel-semantics 2.5).
 *
 *   struct ioas_pages - what backs areas (iopt_pages).  Refcounted: areas
 *	in several IOASes (IOAS_COPY) and DMA in flight hold references.
 *
 * Revocation and translation meet on one word per area, the area's
 * `inflight` (iommufd.h): a DMA raises its count and sees AREA_REVOKED in
 * the value the same atomic add returns; invalidate sets AREA_REVOKED on
 * every area of the pages (pages->areas) with a compare-and-swap that also
 * sets AREA_PENDING where the count is not zero, and publishes a fence on
 * the dma-buf that the DMA taking the last such area's count to zero
 * signals (pages_area_idle()).  One location, one modification order: a
 * DMA either counted before the revoke (the revoke waits for it) or sees
 * the flag (-ENODEV).  So once a revoke returns, no DMA into the revoked
 * memory is running or can start.  An area joins pages->areas, taking the
 * flag if the pages are revoked already, before it is published in an IO
 * page table, and leaves it only once its own DMA has drained.
 *
 * Locking: pages->mutex is the innermost IOAS lock; the invalidate
 * callback runs under resv and takes only it (docs/locking.md).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p2pbuf/file.h>
#include <p2pbuf/iommu.h>

#include "iommufd.h"

static struct ioas_pages *pages_new(enum pages_kind kind)
{
	struct ioas_pages *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	atomic_init(&p->count, PAGES_REF);
	p->kind = kind;
	p->fd = -1;
	pthread_mutex_init(&p->mutex, NULL);
	pthread_mutex_init(&p->dom_mutex, NULL);
	list_init(&p->doms);
	atomic_init(&p->revoked, false);
	atomic_init(&p->busy, 0);
	return p;
}

void pages_get(struct ioas_pages *p)
{
	atomic_fetch_add(&p->count, PAGES_REF);
}

static void pages_free(struct ioas_pages *p)
{
	struct p2p_fence *drain;

	/*
	 * No area is left, so no revoke waits for DMA here (the last DMA of
	 * each area signalled it); signal anyway before taking resv, never
	 * leaving a fence unsignalled.
	 */
	pthread_mutex_lock(&p->mutex);
	drain = p->drain;
	p->drain = NULL;
	pthread_mutex_unlock(&p->mutex);
	if (drain) {
		p2p_fence_signal(drain);
		p2p_fence_put(drain);
	}
	if (p->attach) {
		struct p2p_dmabuf *buf = p2p_attachment_dmabuf(p->attach);

		p2p_dmabuf_resv_lock(buf);
		if (p->sgt)
			p2p_attachment_unmap(p->attach, p->sgt);
		p->sgt = NULL;
		p2p_dmabuf_resv_unlock(buf);
		p2p_dmabuf_detach(p->attach);
	}
	if (p->map_base)
		munmap(p->map_base, p->map_len);
	if (p->fd >= 0)
		close(p->fd);
	free(p->segs);
	while (!list_empty(&p->doms)) { /* not reached: every area unfilled its domains */
		struct pages_dom *t = list_entry(p->doms.next, struct pages_dom, node);

		list_del_init(&t->node);
		free(t);
	}
	pthread_mutex_destroy(&p->dom_mutex);
	pthread_mutex_destroy(&p->mutex);
	free(p);
}

/*
 * The last reference: no DMA is in flight (an unmap drops its areas'
 * references only after they drained), so pages_free(), which takes resv,
 * never runs on a DMA completion.
 */
void pages_put(struct ioas_pages *p)
{
	if (p && atomic_fetch_sub(&p->count, PAGES_REF) == PAGES_REF)
		pages_free(p);
}

/* An area joins @p (before it is published): it is born revoked if @p is. */
void pages_link_area(struct ioas_pages *p, struct ioas_area *a)
{
	pthread_mutex_lock(&p->mutex);
	a->next = p->areas;
	p->areas = a;
	if (atomic_load(&p->revoked))
		atomic_fetch_or(&a->inflight, AREA_REVOKED);
	pthread_mutex_unlock(&p->mutex);
}

/* An area leaves @p: its DMA has drained. */
void pages_unlink_area(struct ioas_pages *p, struct ioas_area *a)
{
	pthread_mutex_lock(&p->mutex);
	for (struct ioas_area **pp = &p->areas; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	pthread_mutex_unlock(&p->mutex);
}

/*
 * invalidate_mappings: resv held.  Unmap at once (every area on these pages
 * stops translating), publish a fence for DMA in flight, never remap.
 */
static void pages_invalidate(struct p2p_attachment *attach)
{
	struct ioas_pages *p = p2p_attachment_importer_priv(attach);
	struct p2p_dmabuf *buf = p2p_attachment_dmabuf(attach);

	pthread_mutex_lock(&p->mutex);
	atomic_store(&p->revoked, true);
	for (struct ioas_area *a = p->areas; a; a = a->next) {
		unsigned int c = atomic_load(&a->inflight), n;

		do {
			n = c | AREA_REVOKED;
			if (c & AREA_COUNT)
				n |= AREA_PENDING;
		} while (!atomic_compare_exchange_weak(&a->inflight, &c, n));
		if ((n & AREA_PENDING) && !(c & AREA_PENDING))
			atomic_fetch_add(&p->busy, 1);
	}
	if (atomic_load(&p->busy) && !p->drain &&
	    (p2p_fence_create(&p->drain) || p2p_dmabuf_resv_add_fence(buf, p->drain))) {
		/* No fence (or no room for it): wait here instead, still under resv. */
		if (p->drain)
			p2p_fence_put(p->drain);
		p->drain = NULL;
		pthread_mutex_unlock(&p->mutex);
		while (atomic_load(&p->busy))
			sched_yield();
		pthread_mutex_lock(&p->mutex);
	}
	if (p->sgt) {
		p2p_attachment_unmap(attach, p->sgt);
		p->sgt = NULL;
	}
	pthread_mutex_unlock(&p->mutex);
	/* Every domain filled with these pages loses them (a backend drains its DMA). */
	pages_domains_revoke(p);
}

static const struct p2p_dmabuf_importer_ops pages_importer_ops = {
	.invalidate_mappings = pages_invalidate,
};

/*
 * The DMA in flight through one area a revoke waits for is over (its
 * AREA_PENDING was cleared by the last DMA, which still holds the area).
 */
void pages_area_idle(struct ioas_pages *p)
{
	pthread_mutex_lock(&p->mutex);
	if (atomic_fetch_sub(&p->busy, 1) == 1 && p->drain) {
		p2p_fence_signal(p->drain);
		p2p_fence_put(p->drain);
		p->drain = NULL;
	}
	pthread_mutex_unlock(&p->mutex);
}

/* Pages with no memory behind them: accesses call @ops (p2p_ioas_map_callback()). */
int pages_callback(const struct p2p_ioas_callback_ops *ops, void *priv, uint64_t length,
		   uint32_t flags, struct ioas_pages **out)
{
	struct ioas_pages *p = pages_new(PAGES_CALLBACK);

	if (!p)
		return -ENOMEM;
	p->len = length;
	p->writable = flags & IOMMU_IOAS_MAP_WRITEABLE;
	p->cb_ops = ops;
	p->cb_priv = priv;
	*out = p;
	return 0;
}

/* Host address and contiguous bytes at @off of @p. */
uint8_t *pages_host(const struct ioas_pages *p, uint64_t off, uint64_t *avail)
{
	unsigned int lo = 0, hi = p->nsegs;

	if (p->kind != PAGES_DMABUF) {
		*avail = p->len - off;
		return p->host + off;
	}
	/* Segments are sorted and contiguous: binary search, on the DMA path. */
	while (lo < hi) {
		const struct pages_seg *m = &p->segs[(lo + hi) / 2];

		if (off < m->off) {
			hi = (lo + hi) / 2;
		} else if (off >= m->off + m->len) {
			lo = (lo + hi) / 2 + 1;
		} else {
			*avail = m->off + m->len - off;
			return m->host + (off - m->off);
		}
	}
	*avail = 0;
	return NULL;
}

/* Build the dma-buf pages for [start, start + len) of @buf (page aligned). */
int pages_dmabuf(struct p2p_dmabuf *buf, uint64_t start, uint64_t len, bool extended,
		 struct ioas_pages **out)
{
	struct p2p_attach_info info = {
		.argsz = sizeof(info),
		.flags = P2P_ATTACH_PEER2PEER,
		.importer_ops = &pages_importer_ops,
		.name = "iommufd",
	};
	const struct p2p_phys_range *ranges;
	struct p2p_phys_range one;
	struct ioas_pages *p;
	unsigned int nr;
	uint64_t pos = 0;
	int ret;

	p = pages_new(PAGES_DMABUF);
	if (!p)
		return -ENOMEM;
	p->len = len;
	info.importer_priv = p;
	ret = p2p_dmabuf_attach(buf, &info, &p->attach);
	if (ret) {
		pages_put(p);
		return ret;
	}
	p2p_dmabuf_resv_lock(buf);
	if (extended) {
		ret = p2p_attachment_map(p->attach, &p->sgt);
		ranges = ret ? NULL : p->sgt->ents;
		nr = ret ? 0 : p->sgt->nents;
	} else {
		/*
		 * The exporter's private interconnect (the iommufd_map op):
		 * single-range VFIO dma-bufs only.
		 */
		ret = p2p_attachment_iommufd_map(p->attach, &one);
		ranges = &one;
		nr = 1;
	}
	if (!ret) {
		p->segs = calloc(nr, sizeof(*p->segs));
		if (!p->segs)
			ret = -ENOMEM;
	}
	for (unsigned int i = 0; !ret && i < nr; i++) {
		uint64_t rs = pos, re = pos + ranges[i].length;
		uint64_t s = MAX(rs, start), e = MIN(re, start + len);

		if (s < e)
			p->segs[p->nsegs++] = (struct pages_seg){
				.off = s - start,
				.len = e - s,
				.host = p2p_mem_ptr(ranges[i].mem, ranges[i].offset + (s - rs)),
				.fd = p2p_mem_fd(ranges[i].mem),
				.fd_off = p2p_mem_fd_offset(ranges[i].mem) + ranges[i].offset +
					  (s - rs),
			};
		pos = re;
	}
	p2p_dmabuf_resv_unlock(buf);
	if (ret) {
		pages_put(p);
		return ret;
	}
	*out = p;
	return 0;
}

/*
 * "Pin" [va, va + len): fault it in for the access the map allows, as
 * pin_user_pages() does.  Unmapped memory, or read-only memory mapped
 * WRITEABLE, fails (-EFAULT), so a device write can never hit it.
 */
static int user_range_pin(const void *va, uint64_t len, uint32_t flags)
{
	uintptr_t s = (uintptr_t)va & ~(uintptr_t)P2P_PAGE_MASK;
	uintptr_t e = ALIGN_UP((uintptr_t)va + len, P2P_PAGE_SIZE);
	int advice = (flags & IOMMU_IOAS_MAP_WRITEABLE) ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;

	if (madvise((void *)s, e - s, advice) == 0)
		return 0;
	return errno == ENOMEM && !msync((void *)s, e - s, MS_ASYNC) ? -ENOMEM : -EFAULT;
}

/*
 * Pages over process memory [va, va + length) (iopt_alloc_user_pages()),
 * pinned for the access @flags allow; *@off is where @va is in them.
 */
int pages_user(void *va, uint64_t length, uint32_t flags, struct ioas_pages **out,
	       uint64_t *off)
{
	uintptr_t base = (uintptr_t)va & ~(uintptr_t)P2P_PAGE_MASK, end;
	struct ioas_pages *p;
	int ret;

	if (__builtin_add_overflow((uintptr_t)va, length, &end))
		return -EOVERFLOW;
	if (p2p_va_range_mapped(va, length)) {
		/*
		 * A dma-buf mapping is VM_PFNMAP memory in the kernel: iommufd
		 * cannot pin it, not even part of a range (kernel-semantics 4.2,
		 * vfio_dma_mapping_mmio_test).
		 */
		return -EFAULT;
	}
	ret = user_range_pin(va, length, flags);
	if (ret)
		return ret;
	/* The program may truncate what backs this memory: devices copy guarded. */
	dma_guard_init();
	p = pages_new(PAGES_USER);
	if (!p)
		return -ENOMEM;
	p->host = (uint8_t *)base;
	p->len = ALIGN_UP(end, P2P_PAGE_SIZE) - base;
	p->writable = flags & IOMMU_IOAS_MAP_WRITEABLE;
	*off = (uintptr_t)va - base;
	*out = p;
	return 0;
}

/*
 * Pages over [start, start + length) of a memfd (iopt_alloc_file_pages()),
 * mapped here; *@off is where @start is in them.
 */
int pages_memfd(int fd, uint64_t start, uint64_t length, uint32_t flags,
		struct ioas_pages **out, uint64_t *off)
{
	uint64_t pstart = start & ~P2P_PAGE_MASK;
	uint64_t plen = ALIGN_UP(start + length, P2P_PAGE_SIZE) - pstart;
	struct ioas_pages *p;
	struct stat st;
	void *m;

	/* Only shmem files (memfds) can be mapped, as the kernel's checks. */
	if (fcntl(fd, F_GET_SEALS) < 0 || fstat(fd, &st) < 0)
		return -EINVAL;
	/* start + length - 1 does not wrap (checked); start + length may. */
	if (start + (length - 1) >= (uint64_t)st.st_size)
		return -EINVAL;
	m = mmap(NULL, plen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)pstart);
	if (m == MAP_FAILED) {
		m = mmap(NULL, plen, PROT_READ, MAP_SHARED, fd, (off_t)pstart);
		if (m == MAP_FAILED)
			return -errno;
		if (flags & IOMMU_IOAS_MAP_WRITEABLE) {
			munmap(m, plen);
			return -EPERM;
		}
	}
	p = pages_new(PAGES_MEMFD);
	if (!p) {
		munmap(m, plen);
		return -ENOMEM;
	}
	/* The program may ftruncate() the memfd: devices copy guarded (fault.c). */
	dma_guard_init();
	p->host = m;
	p->map_base = m;
	p->map_len = plen;
	p->len = plen;
	p->writable = flags & IOMMU_IOAS_MAP_WRITEABLE;
	p->fd_start = pstart;
	*off = start - pstart;
	*out = p;
	return 0;
}
