// SPDX-License-Identifier: MIT
/*
 * The IO page table of an IOAS (drivers/iommu/iommufd/io_pagetable.c,
 * kernel-semantics section 2): areas over pages objects (pages.c), IOVA
 * allocation, map / map_file / unmap / copy, and translation for device
 * DMA (p2p_ioas_dma_begin() / p2p_ioas_dma_end()).
 *
 *   struct ioas_area - [iova, iova + length) of one IOAS onto a pages
 *	object at byte offset pages_off.
 *
 * Locking: ioas->lock (rw) protects the areas, the allowed ranges and the
 * IO page table for writers; translation walks the page table without it
 * (see "Translation without a lock" below and docs/locking.md).  resv is
 * never taken under it: a pages object's last reference, which detaches,
 * is dropped outside it.
 *
 * Unmap meets translation on the area: every DMA counts on its area's
 * `inflight` word, and an unmap, once it has taken its areas out under
 * ioas->lock write, flags them dying and waits for their counts to drain
 * with no lock held (area_drain()), so once it returns no DMA through them
 * is running and none can start.  Revocation meets translation on the
 * same word (pages.c).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <p2pbuf/file.h>
#include <p2pbuf/iommu.h>

#include "iommufd.h"
#include "ioas_debug.h"

/* ---------------------------------------------------------------------- */
/* IOVA space                                                             */

uint64_t iopt_alignment(const struct p2p_ioas *ioas)
{
	return ioas->ndev || ioas->no_large_pages ? P2P_PAGE_SIZE : 1;
}

/* Index of the first area whose start is above @iova. */
static size_t find_upper(const struct p2p_ioas *ioas, uint64_t iova)
{
	size_t lo = 0, hi = ioas->nr;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ioas->starts[mid] <= iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct ioas_area *find_area_bsearch(const struct p2p_ioas *ioas, uint64_t iova)
{
	size_t i = find_upper(ioas, iova);
	struct ioas_area *a;

	if (!i)
		return NULL;
	a = ioas->areas[i - 1];
	return iova - a->iova < a->length ? a : NULL;
}

/* Does [iova, last] hit any area? */
static bool range_busy(const struct p2p_ioas *ioas, uint64_t iova, uint64_t last)
{
	size_t i = find_upper(ioas, last);

	if (!i)
		return false;
	return ioas->areas[i - 1]->iova + (ioas->areas[i - 1]->length - 1) >= iova;
}

/*
 * The IO page table: what the emulated IOMMU walks on every translation.
 * Four levels of 512 entries cover IOVAs below 2^48 (4 KiB, 2 MiB, 1 GiB
 * and 512 GiB per entry).  An entry is 0 (nothing mapped), a table, an
 * area (tagged with bit 0; the area covers the whole entry: a block entry
 * above level 0), or PT_AMBIG: a page only partly covered by areas
 * (sub-page starts), resolved by the binary search.  IOVAs from 2^48 up
 * use the search too.  Updated under ioas->lock (write), entry by entry
 * with release stores, and walked without the lock by translations
 * (acquire loads): a table, once linked, stays until the IOAS is freed.
 */
#define PT_LEVELS 4
#define PT_ENTRIES 512
#define PT_LIMIT (1ull << 48)
#define PT_AMBIG ((uintptr_t)2)

typedef _Atomic(uintptr_t) pte_t;

/* Writer side (ioas->lock held for write): nobody else stores. */
static uintptr_t pte_get(const pte_t *e)
{
	return atomic_load_explicit(e, memory_order_relaxed);
}

static void pte_set(pte_t *e, uintptr_t v)
{
	atomic_store_explicit(e, v, memory_order_release);
}

static unsigned int pt_shift(int level)
{
	return 12 + 9 * (unsigned int)level;
}

static bool pt_is_table(uintptr_t e)
{
	return e && !(e & 1) && e != PT_AMBIG;
}

/*
 * A chunk of memory that lives as long as the IOAS (ioas->lock held for
 * write).  From 2 MiB up it sits on transparent huge pages.
 */
#define HUGE_CHUNK (2u << 20)

static void *ioas_chunk(struct p2p_ioas *ioas, size_t size)
{
	void *p = NULL, **nc;

	if (size >= HUGE_CHUNK) {
		if (posix_memalign(&p, HUGE_CHUNK, size))
			p = NULL;
		else
			madvise(p, size, MADV_HUGEPAGE); /* best effort */
	} else {
		p = aligned_alloc(64, size);
	}
	if (!p)
		return NULL;
	nc = realloc(ioas->chunks, (ioas->nr_chunks + 1) * sizeof(*nc));
	if (!nc) {
		free(p);
		return NULL;
	}
	ioas->chunks = nc;
	ioas->chunks[ioas->nr_chunks++] = p;
	return p;
}

/* A page-table table (not initialized), from chunks growing to 2 MiB. */
static pte_t *pt_alloc(struct p2p_ioas *ioas)
{
	if (!ioas->pt_pool_left) {
		size_t n = MIN((size_t)8 << ioas->nr_pt_chunks, HUGE_CHUNK / (PT_ENTRIES * sizeof(pte_t)));

		ioas->pt_pool = ioas_chunk(ioas, n * PT_ENTRIES * sizeof(pte_t));
		if (!ioas->pt_pool)
			return NULL;
		ioas->nr_pt_chunks++;
		ioas->pt_pool_left = n;
	}
	ioas->pt_pool_left--;
	return ioas->pt_pool + ioas->pt_pool_left * PT_ENTRIES;
}

/*
 * Set the page-aligned range [lo, hi] of the table at @level (covering
 * from @base) to @val, or with !@force clear the entries equal to @match.
 */
static int pt_update(struct p2p_ioas *ioas, pte_t *tbl, int level, uint64_t base, uint64_t lo, uint64_t hi,
		     uintptr_t val, uintptr_t match, bool force)
{
	unsigned int sh = pt_shift(level);
	uint64_t span = 1ull << sh;

	for (uint64_t i = (lo - base) >> sh; i <= (hi - base) >> sh; i++) {
		uint64_t eb = base + i * span, ee = eb + span - 1;
		pte_t *e = &tbl[i];
		uintptr_t cur = pte_get(e);
		int ret;

		if (!pt_is_table(cur) && lo <= eb && ee <= hi) {
			if (force)
				pte_set(e, val);
			else if (cur == match)
				pte_set(e, 0);
			continue;
		}
		if (!pt_is_table(cur)) {
			pte_t *child;

			if (!force)
				continue; /* a block of another area */
			child = pt_alloc(ioas);
			if (!child)
				return -ENOMEM;
			for (int j = 0; j < PT_ENTRIES; j++)
				atomic_init(&child[j], cur); /* split the block */
			pte_set(e, (uintptr_t)child); /* published filled in */
			cur = (uintptr_t)child;
		}
		ret = pt_update(ioas, (pte_t *)cur, level - 1, eb, MAX(lo, eb), MIN(hi, ee), val, match,
				force);
		if (ret)
			return ret;
	}
	return 0;
}

static int pt_set(struct p2p_ioas *ioas, uint64_t lo, uint64_t hi, uintptr_t val)
{
	if (lo >= PT_LIMIT || lo > hi)
		return 0;
	return pt_update(ioas, ioas->pt_root, PT_LEVELS - 1, 0, lo, MIN(hi, PT_LIMIT - 1), val, 0, true);
}

static void pt_clear(struct p2p_ioas *ioas, uint64_t lo, uint64_t hi, uintptr_t match)
{
	if (lo >= PT_LIMIT || lo > hi)
		return;
	pt_update(ioas, ioas->pt_root, PT_LEVELS - 1, 0, lo, MIN(hi, PT_LIMIT - 1), 0, match, false);
}

/* Does any area touch the page at @page (after the sorted array changed)? */
static uintptr_t pt_page_state(const struct p2p_ioas *ioas, uint64_t page)
{
	return range_busy(ioas, page, page + P2P_PAGE_MASK) ? PT_AMBIG : 0;
}

/* The partial first and last pages of @a, or 0 (the page at 0 is never partial twice). */
static void area_partial_pages(const struct ioas_area *a, uint64_t *head, uint64_t *tail,
			       bool *has_head, bool *has_tail)
{
	uint64_t last = a->iova + (a->length - 1);

	*head = a->iova & ~P2P_PAGE_MASK;
	*tail = last & ~P2P_PAGE_MASK;
	*has_head = (a->iova & P2P_PAGE_MASK) || (*head == *tail && (last & P2P_PAGE_MASK) !=
								       P2P_PAGE_MASK);
	*has_tail = *tail != *head && (last & P2P_PAGE_MASK) != P2P_PAGE_MASK;
}

/* Full pages of @a, as [*lo, *hi]; false if none. */
static bool area_full_pages(const struct ioas_area *a, uint64_t *lo, uint64_t *hi)
{
	uint64_t last = a->iova + (a->length - 1);

	if (__builtin_add_overflow(a->iova, P2P_PAGE_MASK, lo))
		return false;
	*lo &= ~P2P_PAGE_MASK;
	if ((last & P2P_PAGE_MASK) == P2P_PAGE_MASK)
		*hi = last;
	else if (last < P2P_PAGE_SIZE)
		return false;
	else
		*hi = (last & ~P2P_PAGE_MASK) - 1;
	return *lo <= *hi;
}

static void pt_remove_area(struct p2p_ioas *ioas, const struct ioas_area *a)
{
	uint64_t lo, hi, head, tail;
	bool has_head, has_tail;

	if (area_full_pages(a, &lo, &hi))
		pt_clear(ioas, lo, hi, (uintptr_t)a | 1);
	area_partial_pages(a, &head, &tail, &has_head, &has_tail);
	/* Leaf entries exist for partial pages: no allocation can fail here. */
	if (has_head)
		pt_set(ioas, head, head + P2P_PAGE_MASK, pt_page_state(ioas, head));
	if (has_tail)
		pt_set(ioas, tail, tail + P2P_PAGE_MASK, pt_page_state(ioas, tail));
}

static int pt_insert_area(struct p2p_ioas *ioas, const struct ioas_area *a)
{
	uint64_t lo, hi, head, tail;
	bool has_head, has_tail;
	int ret = 0;

	if (area_full_pages(a, &lo, &hi))
		ret = pt_set(ioas, lo, hi, (uintptr_t)a | 1);
	area_partial_pages(a, &head, &tail, &has_head, &has_tail);
	if (!ret && has_head)
		ret = pt_set(ioas, head, head + P2P_PAGE_MASK, PT_AMBIG);
	if (!ret && has_tail)
		ret = pt_set(ioas, tail, tail + P2P_PAGE_MASK, PT_AMBIG);
	return ret;
}

/*
 * The area mapping @iova, or NULL: a page-table walk (4 dependent loads);
 * ioas->lock held.
 */
static struct ioas_area *find_area(const struct p2p_ioas *ioas, uint64_t iova)
{
	const pte_t *t = ioas->pt_root;

	if (iova >= PT_LIMIT)
		return find_area_bsearch(ioas, iova);
	for (int l = PT_LEVELS - 1;; l--) {
		uintptr_t e = pte_get(&t[(iova >> pt_shift(l)) & (PT_ENTRIES - 1)]);

		if (e & 1)
			return (struct ioas_area *)(e & ~(uintptr_t)1);
		if (!e)
			return NULL;
		if (e == PT_AMBIG)
			return find_area_bsearch(ioas, iova);
		t = (const pte_t *)e;
	}
}

bool iopt_range_allowed(const struct p2p_ioas *ioas, uint64_t iova, uint64_t last)
{
	if (!ioas->allowed)
		return true;
	for (uint32_t i = 0; i < ioas->nr_allowed; i++)
		if (iova >= ioas->allowed[i].start && last <= ioas->allowed[i].last)
			return true;
	return false;
}

/* The lowest IOVA >= @c with iova % align == phase, or false on overflow. */
static bool align_phase(uint64_t c, uint64_t align, uint64_t phase, uint64_t *out)
{
	uint64_t base = (c & ~(align - 1)) | phase;

	if (base < c && __builtin_add_overflow(base, align, &base))
		return false;
	*out = base;
	return true;
}

/* First fit in [lo, hi]; ioas->lock held for write. */
static int alloc_in(const struct p2p_ioas *ioas, uint64_t lo, uint64_t hi, uint64_t length,
		    uint64_t align, uint64_t phase, uint64_t *out)
{
	uint64_t cand = lo, at, last;
	size_t i = find_upper(ioas, cand);

	if (i) {
		const struct ioas_area *a = ioas->areas[i - 1];

		if (a->iova + (a->length - 1) >= cand) {
			if (a->iova + (a->length - 1) == IOVA_MAX)
				return -ENOSPC;
			cand = a->iova + a->length;
		}
	}
	for (;;) {
		if (!align_phase(cand, align, phase, &at) || at > hi ||
		    __builtin_add_overflow(at, length - 1, &last) || last > hi)
			return -ENOSPC;
		if (i == ioas->nr || last < ioas->areas[i]->iova) {
			*out = at;
			return 0;
		}
		if (ioas->areas[i]->iova + (ioas->areas[i]->length - 1) == IOVA_MAX)
			return -ENOSPC;
		cand = ioas->areas[i]->iova + ioas->areas[i]->length;
		i++;
	}
}

/*
 * Allocate @length bytes of IOVA with iova % align == phase, next-fit from
 * the end of the last mapping (cheap when mapping many), then first-fit.
 */
static int alloc_iova(struct p2p_ioas *ioas, uint64_t length, uint64_t align, uint64_t phase,
		      uint64_t *out)
{
	struct iommu_iova_range full = { 0, IOVA_MAX - 1 };
	const struct iommu_iova_range *r = ioas->allowed ? ioas->allowed : &full;
	uint32_t n = ioas->allowed ? ioas->nr_allowed : 1;

	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t k = 0; k < n; k++) {
			uint64_t lo = pass ? r[k].start : MAX(r[k].start, ioas->alloc_hint);

			if (lo > r[k].last)
				continue;
			if (!alloc_in(ioas, lo, MIN(r[k].last, IOVA_MAX - 1), length, align, phase,
				      out))
				return 0;
		}
	}
	return -ENOSPC;
}

/*
 * Area records are type-stable: made in chunks, recycled through the
 * IOAS's free list (drain_lock), freed only with the IOAS, so a lock-free
 * translation may touch the `inflight` word of a record it read from the
 * page table even after an unmap freed it.  A free record has AREA_DYING
 * set, and `ioas` never changes.
 */
#define AREA_CHUNK_MAX (HUGE_CHUNK / sizeof(struct ioas_area))

static struct ioas_area *area_alloc(struct p2p_ioas *ioas)
{
	size_t n = MIN((size_t)64 << MIN(ioas->nr_area_chunks, 16), AREA_CHUNK_MAX);
	struct ioas_area *a, *chunk;

	pthread_mutex_lock(&ioas->drain_lock);
	a = ioas->area_free;
	if (a)
		ioas->area_free = a->next;
	pthread_mutex_unlock(&ioas->drain_lock);
	if (a)
		return a;
	chunk = ioas_chunk(ioas, n * sizeof(*chunk));
	if (!chunk)
		return NULL;
	ioas->nr_area_chunks++;
	memset(chunk, 0, n * sizeof(*chunk));
	for (size_t i = 0; i < n; i++) {
		atomic_init(&chunk[i].inflight, AREA_DYING);
		chunk[i].ioas = ioas;
		chunk[i].next = i + 1 < n ? &chunk[i + 1] : NULL;
	}
	if (n > 1) {
		pthread_mutex_lock(&ioas->drain_lock);
		chunk[n - 1].next = ioas->area_free;
		ioas->area_free = &chunk[1];
		pthread_mutex_unlock(&ioas->drain_lock);
	}
	return &chunk[0];
}

/* Back to the free list: @a is dying (or never lived) and has no DMA. */
static void area_free(struct ioas_area *a)
{
	struct p2p_ioas *ioas = a->ioas;

	pthread_mutex_lock(&ioas->drain_lock);
	a->next = ioas->area_free;
	ioas->area_free = a;
	pthread_mutex_unlock(&ioas->drain_lock);
}

/*
 * A record's new life begins: clear AREA_DYING once no stale translation
 * holds a count on it (each backs out at once), before the area is
 * published.  The release of this store orders the fields written before
 * it for the translations that count on the new life.
 */
static void area_revive(struct ioas_area *a)
{
	unsigned int c = atomic_load(&a->inflight);

	/* The flags of the last life go too (AREA_REVOKED). */
	for (;;) {
		if (c & AREA_COUNT) {
			sched_yield();
			c = atomic_load(&a->inflight);
		} else if (atomic_compare_exchange_weak(&a->inflight, &c, 0)) {
			return;
		}
	}
}

/*
 * A count on @a is dropped: the end of a DMA, or a translation backing
 * out.  While no flag needs work, one compare-and-swap.  The holder that
 * would take the count of an area a revoke waits for (AREA_PENDING) to
 * zero first clears the flag, still holding its count (so the area and its
 * pages stay), and tells the pages (pages_area_idle()).  Once the area is
 * dying, the decrement happens under the IOAS's drain lock, which the
 * unmapper holds while it checks the count, so its wakeup is never lost
 * and it cannot free the area (or the IOAS) before we are done.
 */
static void area_dma_done(struct ioas_area *a)
{
	unsigned int c = atomic_load(&a->inflight);
	struct p2p_ioas *ioas;

	for (;;) {
		if ((c & AREA_PENDING) && (c & AREA_COUNT) == 1) {
			if (atomic_compare_exchange_weak(&a->inflight, &c, c & ~AREA_PENDING)) {
				pages_area_idle(a->pages);
				c = atomic_load(&a->inflight);
			}
			continue;
		}
		if (c & AREA_DYING)
			break;
		if (atomic_compare_exchange_weak(&a->inflight, &c, c - 1))
			return;
	}
	ioas = a->ioas; /* never changes; our count keeps the IOAS (and any unmapper) alive */
	pthread_mutex_lock(&ioas->drain_lock);
	c = atomic_load(&a->inflight);
	while (!((c & AREA_PENDING) && (c & AREA_COUNT) == 1)) {
		if (atomic_compare_exchange_weak(&a->inflight, &c, c - 1)) {
			if ((c & AREA_COUNT) == 1)
				pthread_cond_broadcast(&ioas->drain_cond);
			pthread_mutex_unlock(&ioas->drain_lock);
			return;
		}
	}
	/* A revoke waits for this very area: tell it first, outside the drain lock. */
	pthread_mutex_unlock(&ioas->drain_lock);
	area_dma_done(a);
}

/*
 * Wait until no DMA runs through the @n areas an unmap took out of @ioas.
 * None can start (they are no longer in the IO page table, so a new
 * translation faults with -ENOENT, and one that read the table before sees
 * AREA_DYING in its count and backs out); those already translated end on
 * their own: a device never waits for a lock while holding a segment, and
 * no lock is held here.  So once IOAS_UNMAP returns, nothing the device was
 * doing lands in the memory the program took back.
 */
static void area_drain(struct p2p_ioas *ioas, struct ioas_area **gone, size_t n)
{
	pthread_mutex_lock(&ioas->drain_lock);
	for (size_t i = 0; i < n; i++)
		atomic_fetch_or(&gone[i]->inflight, AREA_DYING);
	for (size_t i = 0; i < n; i++)
		while (atomic_load(&gone[i]->inflight) & AREA_COUNT)
			pthread_cond_wait(&ioas->drain_cond, &ioas->drain_lock);
	pthread_mutex_unlock(&ioas->drain_lock);
}

/*
 * The areas have drained: leave their pages (no revoke can flag them any
 * more), wait out the stale translations that counted meanwhile (one may
 * be telling a revoke about this area), then drop the pages and recycle.
 */
static void area_retire(struct p2p_ioas *ioas, struct ioas_area **gone, size_t n)
{
	bool linked = false;

	for (size_t i = 0; i < n; i++) {
		if (gone[i]->revocable) {
			pages_unlink_area(gone[i]->pages, gone[i]);
			linked = true;
		}
	}
	if (linked)
		area_drain(ioas, gone, n);
	for (size_t i = 0; i < n; i++) {
		pages_put(gone[i]->pages);
		gone[i]->pages = NULL;
		area_free(gone[i]);
	}
}

static int insert_area(struct p2p_ioas *ioas, struct ioas_area *a)
{
	size_t pos;

	if (ioas->nr == ioas->max) {
		size_t n = ioas->max ? ioas->max * 2 : 16;
		struct ioas_area **na = realloc(ioas->areas, n * sizeof(*na));
		uint64_t *ns;

		if (!na)
			return -ENOMEM;
		ioas->areas = na;
		ns = realloc(ioas->starts, n * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		ioas->starts = ns;
		ioas->max = n;
	}
	pos = find_upper(ioas, a->iova);
	memmove(&ioas->areas[pos + 1], &ioas->areas[pos], (ioas->nr - pos) * sizeof(a));
	memmove(&ioas->starts[pos + 1], &ioas->starts[pos], (ioas->nr - pos) * sizeof(uint64_t));
	ioas->areas[pos] = a;
	ioas->starts[pos] = a->iova;
	ioas->nr++;
	if (pt_insert_area(ioas, a)) {
		memmove(&ioas->areas[pos], &ioas->areas[pos + 1],
			(ioas->nr - pos - 1) * sizeof(a));
		memmove(&ioas->starts[pos], &ioas->starts[pos + 1],
			(ioas->nr - pos - 1) * sizeof(uint64_t));
		ioas->nr--;
		pt_remove_area(ioas, a);
		return -ENOMEM;
	}
	ioas->alloc_hint = a->iova + a->length;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Domains: backends mirroring the IOAS (iopt_area_fill_domains())         */

struct p2p_ioas_domain {
	struct list_head node; /* ioas->domains, under domain_lock */
	struct p2p_ioas *ioas;
	const struct p2p_ioas_domain_ops *ops;
	void *priv;
};

static void area_domain_desc(const struct ioas_area *a, struct p2p_ioas_domain_area *d)
{
	const struct ioas_pages *p = a->pages;

	memset(d, 0, sizeof(*d));
	d->iova = a->iova;
	d->length = a->length;
	d->prot = a->prot;
	d->fd = -1;
	if (p->kind == PAGES_DMABUF) {
		d->kind = P2P_IOAS_DOMAIN_DMABUF;
		/* Within one segment: its memory's file, for a backend to map. */
		for (unsigned int i = 0; i < p->nsegs; i++) {
			const struct pages_seg *g = &p->segs[i];

			if (a->pages_off < g->off || a->pages_off - g->off >= g->len)
				continue;
			if (g->fd >= 0 && a->length <= g->len - (a->pages_off - g->off)) {
				d->fd = g->fd;
				d->fd_offset = g->fd_off + (a->pages_off - g->off);
				d->va = g->host + (a->pages_off - g->off);
			}
			break;
		}
	} else if (p->kind == PAGES_CALLBACK) {
		d->kind = P2P_IOAS_DOMAIN_CALLBACK; /* no memory here: no @fd, no @va */
	} else if (p->fd >= 0) {
		d->kind = P2P_IOAS_DOMAIN_FD;
		d->fd = p->fd;
		d->fd_offset = p->fd_start + a->pages_off;
		d->va = p->host + a->pages_off;
	} else {
		d->kind = P2P_IOAS_DOMAIN_VA;
		d->va = p->host + a->pages_off;
	}
}

/*
 * Fill @dom with @a (iopt_area_fill_domain()).  domain_lock held.  Over
 * dma-buf pages the domain is tracked on the pages, so that a revoke
 * unmaps it there (pages_domains_revoke()); pages revoked already are not
 * mapped, and that is success (kernel-semantics 2.5: never remapped).
 */
static int domain_fill(struct p2p_ioas_domain *dom, const struct ioas_area *a)
{
	struct ioas_pages *p = a->pages;
	struct p2p_ioas_domain_area d;
	struct pages_dom *t;
	int ret = 0;

	area_domain_desc(a, &d);
	if (p->kind != PAGES_DMABUF)
		return dom->ops->map(dom->priv, &d);
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->dom = dom;
	t->iova = a->iova;
	t->length = a->length;
	pthread_mutex_lock(&p->dom_mutex);
	if (atomic_load(&p->revoked))
		t->revoked = true;
	else
		ret = dom->ops->map(dom->priv, &d);
	if (!ret)
		list_add_tail(&t->node, &p->doms);
	pthread_mutex_unlock(&p->dom_mutex);
	if (ret)
		free(t);
	return ret;
}

/* Take @a out of @dom; a range a revoke took out already is skipped.  domain_lock held. */
static void domain_unfill(struct p2p_ioas_domain *dom, const struct ioas_area *a)
{
	struct ioas_pages *p = a->pages;
	struct pages_dom *t;

	if (p->kind != PAGES_DMABUF) {
		dom->ops->unmap(dom->priv, a->iova, a->length);
		return;
	}
	pthread_mutex_lock(&p->dom_mutex);
	list_for_each_entry(t, &p->doms, node) {
		if (t->dom != dom || t->iova != a->iova)
			continue;
		if (!t->revoked)
			dom->ops->unmap(dom->priv, a->iova, a->length);
		list_del_init(&t->node);
		free(t);
		break;
	}
	pthread_mutex_unlock(&p->dom_mutex);
}

/*
 * The dma-buf behind @p is revoked (resv held): every domain filled with
 * it is unmapped there, once; a later un-revoke maps nothing back.
 */
void pages_domains_revoke(struct ioas_pages *p)
{
	struct pages_dom *t;

	pthread_mutex_lock(&p->dom_mutex);
	list_for_each_entry(t, &p->doms, node) {
		if (t->revoked)
			continue;
		t->revoked = true;
		t->dom->ops->unmap(t->dom->priv, t->iova, t->length);
	}
	pthread_mutex_unlock(&p->dom_mutex);
}

/* Map @a into every domain; on failure unmap it from those done.  domain_lock held. */
static int domains_map(struct p2p_ioas *ioas, const struct ioas_area *a)
{
	struct p2p_ioas_domain *dom, *undo;
	int ret;

	list_for_each_entry(dom, &ioas->domains, node) {
		ret = domain_fill(dom, a);
		if (!ret)
			continue;
		list_for_each_entry(undo, &ioas->domains, node) {
			if (undo == dom)
				break;
			domain_unfill(undo, a);
		}
		return ret;
	}
	return 0;
}

/*
 * Take a just-inserted area out of the IOAS and its IO page table again;
 * the caller drains and retires it (area_drain(), area_retire()).
 */
static void area_take_out(struct p2p_ioas *ioas, struct ioas_area *a)
{
	pthread_rwlock_wrlock(&ioas->lock);
	for (size_t i = 0; i < ioas->nr; i++) {
		if (ioas->areas[i] != a)
			continue;
		memmove(&ioas->areas[i], &ioas->areas[i + 1], (ioas->nr - i - 1) * sizeof(void *));
		memmove(&ioas->starts[i], &ioas->starts[i + 1],
			(ioas->nr - i - 1) * sizeof(uint64_t));
		ioas->nr--;
		pt_remove_area(ioas, a);
		break;
	}
	pthread_rwlock_unlock(&ioas->lock);
}

P2P_API int p2p_ioas_domain_attach(struct p2p_ioas *ioas, const struct p2p_ioas_domain_ops *ops,
				   void *priv, struct p2p_ioas_domain **out)
{
	struct p2p_ioas_domain *dom;
	struct ioas_area **snap = NULL;
	size_t n = 0, i;
	int ret = 0;

	if (!ioas || !ops || !ops->map || !ops->unmap || !out)
		return -EINVAL;
	dom = calloc(1, sizeof(*dom));
	if (!dom)
		return -ENOMEM;
	dom->ioas = p2p_ioas_ref(ioas);
	dom->ops = ops;
	dom->priv = priv;
	pthread_mutex_lock(&ioas->domain_lock);
	/* Areas change only under domain_lock: the snapshot stays true. */
	pthread_rwlock_rdlock(&ioas->lock);
	if (ioas->nr) {
		snap = malloc(ioas->nr * sizeof(*snap));
		if (snap) {
			n = ioas->nr;
			memcpy(snap, ioas->areas, n * sizeof(*snap));
		} else {
			ret = -ENOMEM;
		}
	}
	pthread_rwlock_unlock(&ioas->lock);
	for (i = 0; !ret && i < n; i++)
		ret = domain_fill(dom, snap[i]);
	if (ret) {
		while (i-- > 1)
			domain_unfill(dom, snap[i - 1]);
	} else {
		list_add_tail(&dom->node, &ioas->domains);
		atomic_fetch_add(&ioas->ndomains, 1);
	}
	pthread_mutex_unlock(&ioas->domain_lock);
	free(snap);
	if (ret) {
		p2p_ioas_put(dom->ioas);
		free(dom);
		return ret;
	}
	*out = dom;
	return 0;
}

P2P_API void p2p_ioas_domain_detach(struct p2p_ioas_domain *dom)
{
	struct p2p_ioas *ioas;

	if (!dom)
		return;
	ioas = dom->ioas;
	pthread_mutex_lock(&ioas->domain_lock);
	list_del_init(&dom->node);
	atomic_fetch_sub(&ioas->ndomains, 1);
	/*
	 * iopt_table_remove_domain(): every area leaves the domain.  Areas
	 * change only under domain_lock, which we hold: one at a time, no
	 * snapshot to allocate.
	 */
	for (size_t i = 0;; i++) {
		struct ioas_area *a = NULL;

		pthread_rwlock_rdlock(&ioas->lock);
		if (i < ioas->nr)
			a = ioas->areas[i];
		pthread_rwlock_unlock(&ioas->lock);
		if (!a)
			break;
		domain_unfill(dom, a);
	}
	pthread_mutex_unlock(&ioas->domain_lock);
	p2p_ioas_put(ioas);
	free(dom);
}

bool ioas_has_domains(struct p2p_ioas *ioas)
{
	return atomic_load(&ioas->ndomains) != 0;
}

/*
 * Place [*iova, +length) onto @pages at @pages_off.  Takes over the
 * caller's pages reference on success.
 */
static int ioas_add(struct p2p_ioas *ioas, struct ioas_pages *pages, uint64_t pages_off,
		    uint64_t length, uint64_t *iova, uint32_t flags)
{
	uint64_t align, last, phase;
	struct ioas_area *a;
	int ret = 0;

	/* Areas change under domain_lock: a domain attaching sees each once. */
	pthread_mutex_lock(&ioas->domain_lock);
	pthread_rwlock_wrlock(&ioas->lock);
	a = area_alloc(ioas);
	if (!a) {
		pthread_rwlock_unlock(&ioas->lock);
		pthread_mutex_unlock(&ioas->domain_lock);
		return -ENOMEM;
	}
	align = iopt_alignment(ioas);
	/* Keep the low-order alignment of the backing where we can (2.3). */
	phase = pages_off & (P2P_PAGE_SIZE - 1);
	if ((length & (align - 1)) || (align > 1 && phase)) {
		ret = -EINVAL;
	} else if (flags & IOMMU_IOAS_MAP_FIXED_IOVA) {
		if ((*iova & (align - 1)) || (align > 1 && (*iova & P2P_PAGE_MASK) != phase))
			ret = -EINVAL;
		else if (__builtin_add_overflow(*iova, length - 1, &last))
			ret = -EOVERFLOW;
		else if (!iopt_range_allowed(ioas, *iova, last))
			ret = -EINVAL;
		else if (range_busy(ioas, *iova, last))
			ret = -EEXIST;
	} else {
		/* Large maps get huge-page aligned IOVAs, small ones page aligned. */
		uint64_t al = length >= P2P_HUGE_SIZE ? P2P_HUGE_SIZE : P2P_PAGE_SIZE;

		ret = alloc_iova(ioas, length, al, phase, iova);
		if (ret == -ENOSPC && al > P2P_PAGE_SIZE)
			ret = alloc_iova(ioas, length, P2P_PAGE_SIZE, phase, iova);
	}
	if (!ret) {
		a->iova = *iova;
		a->length = length;
		a->pages_off = pages_off;
		a->prot = flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
		a->pages = pages;
		a->revocable = pages->kind == PAGES_DMABUF;
		a->callback = pages->kind == PAGES_CALLBACK;
		a->fragile = !a->revocable && !a->callback;
		a->direct = NULL;
		if (a->callback)
			; /* no memory: p2p_ioas_dma_begin() says -EREMOTE */
		else if (pages->kind != PAGES_DMABUF)
			a->direct = pages->host + pages_off;
		else if (pages->nsegs == 1)
			a->direct = pages->segs[0].host + (pages_off - pages->segs[0].off);
		area_revive(a);
		/* On the pages (revoked with them) before any translation can find it. */
		if (a->revocable)
			pages_link_area(pages, a);
		ret = insert_area(ioas, a);
		if (ret) {
			/* Never published: no DMA, only stale counts that back out. */
			pthread_rwlock_unlock(&ioas->lock);
			pthread_mutex_unlock(&ioas->domain_lock);
			goto err_retire;
		}
	}
	pthread_rwlock_unlock(&ioas->lock);
	if (ret) {
		pthread_mutex_unlock(&ioas->domain_lock);
		area_free(a);
		return ret;
	}
	if (!list_empty(&ioas->domains)) {
		ret = domains_map(ioas, a);
		if (ret) {
			/* Published meanwhile: out of the IO page table, then drained. */
			area_take_out(ioas, a);
			pthread_mutex_unlock(&ioas->domain_lock);
			goto err_retire;
		}
	}
	pthread_mutex_unlock(&ioas->domain_lock);
	return 0;

err_retire:
	area_drain(ioas, &a, 1);
	pages_get(pages); /* the caller keeps its reference on failure */
	area_retire(ioas, &a, 1);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Public map / unmap                                                      */

int iopt_check_map_args(uint32_t flags, uint64_t iova, uint64_t length, bool native)
{
	uint32_t known = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE |
			 IOMMU_IOAS_MAP_READABLE | (native ? P2P_IOAS_MAP_EXTENDED : 0);

	if (flags & ~known)
		return -EOPNOTSUPP;
	if (iova >= IOVA_MAX || length >= IOVA_MAX)
		return -EOVERFLOW;
	if (!(flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)))
		return -EINVAL;
	return 0;
}

int iopt_map_user(struct p2p_ioas *ioas, void *va, uint64_t length, uint64_t *iova,
		  uint32_t flags)
{
	struct ioas_pages *p;
	uint64_t off;
	int ret;

	if (!length)
		return -EINVAL;
	ret = pages_user(va, length, flags, &p, &off);
	if (ret)
		return ret;
	ret = ioas_add(ioas, p, off, length, iova, flags);
	if (ret)
		pages_put(p);
	return ret;
}

P2P_API int p2p_ioas_map(struct p2p_ioas *ioas, void *va, uint64_t length, uint64_t *iova,
			 uint32_t flags)
{
	int ret = iopt_check_map_args(flags, *iova, length, false);

	return ret ? ret : iopt_map_user(ioas, va, length, iova, flags);
}

static int map_dmabuf(struct p2p_ioas *ioas, struct p2p_dmabuf *buf, uint64_t start,
		      uint64_t length, uint64_t *iova, uint32_t flags)
{
	uint64_t last = start + length - 1, pstart = start & ~P2P_PAGE_MASK;
	uint64_t plen = ALIGN_UP(last + 1, P2P_PAGE_SIZE) - pstart;
	struct ioas_pages *p;
	int ret;

	if (p2p_dmabuf_size(buf) <= last)
		return -EINVAL;
	if (length / P2P_PAGE_SIZE >= UINT32_MAX)
		return -EINVAL;
	/*
	 * A dma-buf exported read-only is never written.  v6.19 has no such
	 * check for dma-bufs; the 2026 fix "Require write access for writable
	 * MAP_FILE mappings" refuses a writeable map of a file without
	 * FMODE_WRITE with -EPERM, and p2pbuf does the same for dma-bufs.  A
	 * type1 MAP_DMA with WRITE of its (read-only) mapping fails as pinning
	 * a read-only VMA for write does: -EFAULT.
	 */
	if ((flags & IOMMU_IOAS_MAP_WRITEABLE) && !p2p_dmabuf_writable(buf))
		return (flags & P2P_IOAS_MAP_EXTENDED) ? -EFAULT : -EPERM;
	ret = pages_dmabuf(buf, pstart, plen, flags & P2P_IOAS_MAP_EXTENDED, &p);
	if (ret)
		return ret;
	p->writable = flags & IOMMU_IOAS_MAP_WRITEABLE;
	ret = ioas_add(ioas, p, start - pstart, length, iova, flags);
	if (ret)
		pages_put(p);
	return ret;
}

static int map_memfd(struct p2p_ioas *ioas, int fd, uint64_t start, uint64_t length,
		     uint64_t *iova, uint32_t flags)
{
	struct ioas_pages *p;
	uint64_t off;
	int ret = pages_memfd(fd, start, length, flags, &p, &off);

	if (ret)
		return ret;
	/* A domain gets the file behind the area (a backend maps it itself). */
	p->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	ret = ioas_add(ioas, p, off, length, iova, flags);
	if (ret)
		pages_put(p);
	return ret;
}

int iopt_map_file(struct p2p_ioas *ioas, int fd, uint64_t start, uint64_t length,
		  uint64_t *iova, uint32_t flags)
{
	struct p2p_dmabuf *buf;
	uint64_t last;
	int ret;

	if (!length)
		return -EINVAL;
	if (__builtin_add_overflow(start, length - 1, &last))
		return -EOVERFLOW;
	ret = p2p_dmabuf_get(fd, &buf);
	if (!ret) {
		ret = map_dmabuf(ioas, buf, start, length, iova, flags);
		p2p_dmabuf_put(buf);
		return ret;
	}
	if (ret == -EBADF)
		return ret;
	return map_memfd(ioas, fd, start, length, iova, flags);
}

P2P_API int p2p_ioas_map_file(struct p2p_ioas *ioas, int fd, uint64_t start, uint64_t length,
			      uint64_t *iova, uint32_t flags)
{
	int ret = iopt_check_map_args(flags, *iova, length, true);

	return ret ? ret : iopt_map_file(ioas, fd, start, length, iova, flags);
}

P2P_API int p2p_ioas_map_callback(struct p2p_ioas *ioas, uint64_t iova, uint64_t length,
				  uint32_t flags, const struct p2p_ioas_callback_ops *ops, void *priv)
{
	const uint32_t prot = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
	struct ioas_pages *p;
	int ret;

	if (!ops || !ops->rw || !length || (flags & ~prot) || !(flags & prot))
		return -EINVAL;
	ret = pages_callback(ops, priv, length, flags, &p);
	if (ret)
		return ret;
	ret = ioas_add(ioas, p, 0, length, &iova, flags | IOMMU_IOAS_MAP_FIXED_IOVA);
	if (ret)
		pages_put(p);
	return ret;
}

P2P_API int p2p_ioas_map_dma(struct p2p_ioas *ioas, void *va, uint64_t length, uint64_t iova,
			     uint32_t flags)
{
	struct p2p_dmabuf *buf;
	uint64_t off;
	size_t avail;
	int ret;

	flags |= IOMMU_IOAS_MAP_FIXED_IOVA;
	ret = iopt_check_map_args(flags, iova, length, true);
	if (ret)
		return ret;
	if (p2p_va_lookup(va, &buf, &off, &avail))
		return iopt_map_user(ioas, va, length, &iova, flags);
	/* Type1 on a dma-buf mapping: through the dma-buf, revoked with it. */
	if (!length)
		ret = -EINVAL;
	else if (length > avail)
		ret = -EFAULT;
	else
		ret = map_dmabuf(ioas, buf, off, length, &iova, flags | P2P_IOAS_MAP_EXTENDED);
	p2p_dmabuf_put(buf);
	return ret;
}

P2P_API int p2p_ioas_unmap(struct p2p_ioas *ioas, uint64_t iova, uint64_t length,
			   uint64_t *unmapped)
{
	struct ioas_area **gone = NULL;
	uint64_t last, total = 0;
	size_t first, n = 0;
	int ret = 0;

	if (!length && !iova) {
		last = IOVA_MAX;
	} else if (!length) {
		return -EINVAL;
	} else if (__builtin_add_overflow(iova, length - 1, &last)) {
		return -EOVERFLOW;
	}
	pthread_mutex_lock(&ioas->domain_lock);
	pthread_rwlock_wrlock(&ioas->lock);
	first = find_upper(ioas, iova);
	/* An area's last byte, never its end: an area may end at IOVA 2^64 - 1. */
	if (first && ioas->areas[first - 1]->iova + (ioas->areas[first - 1]->length - 1) >= iova)
		first--;
	for (size_t i = first; i < ioas->nr && ioas->areas[i]->iova <= last; i++) {
		struct ioas_area *a = ioas->areas[i];

		if (a->iova < iova || a->iova + (a->length - 1) > last) {
			/* Splitting an area: never for a dma-buf one (2.4). */
			ret = a->pages->kind == PAGES_DMABUF ? -EOPNOTSUPP : -ENOENT;
			break;
		}
		n++;
	}
	if (!ret && !n && (iova || length))
		ret = -ENOENT; /* unmapping all of an empty IOAS succeeds (iopt_unmap_all) */
	if (!ret && n) {
		gone = malloc(n * sizeof(*gone));
		if (!gone)
			ret = -ENOMEM;
	}
	if (!ret && n) {
		memcpy(gone, &ioas->areas[first], n * sizeof(*gone));
		memmove(&ioas->areas[first], &ioas->areas[first + n],
			(ioas->nr - first - n) * sizeof(void *));
		memmove(&ioas->starts[first], &ioas->starts[first + n],
			(ioas->nr - first - n) * sizeof(uint64_t));
		ioas->nr -= n;
		for (size_t i = 0; i < n; i++)
			pt_remove_area(ioas, gone[i]);
	}
	pthread_rwlock_unlock(&ioas->lock);
	/*
	 * The domains first (a backend drains its own DMA), no IOAS lock held;
	 * the records are not recycled before area_retire().
	 */
	if (gone) {
		struct p2p_ioas_domain *dom;

		list_for_each_entry(dom, &ioas->domains, node)
			for (size_t i = 0; i < n; i++)
				domain_unfill(dom, gone[i]);
	}
	pthread_mutex_unlock(&ioas->domain_lock);
	if (gone) {
		area_drain(ioas, gone, n);
		for (size_t i = 0; i < n; i++)
			total += gone[i]->length;
		area_retire(ioas, gone, n);
	}
	free(gone);
	if (unmapped)
		*unmapped = total;
	return ret;
}

P2P_API int p2p_ioas_copy(struct p2p_ioas *dst, struct p2p_ioas *src, uint64_t src_iova,
			  uint64_t length, uint64_t *dst_iova, uint32_t flags)
{
	struct { struct ioas_pages *p; uint64_t off, len; } *parts = NULL;
	uint64_t pos = src_iova, last, iova;
	size_t n = 0, max = 0;
	bool more = true;
	int ret = iopt_check_map_args(flags, *dst_iova, length, false);

	if (ret)
		return ret;
	if (!length)
		return -EINVAL;
	/* Last bytes, not ends: the source may end at IOVA 2^64 - 1 (iopt_get_pages). */
	if (__builtin_add_overflow(src_iova, length - 1, &last))
		return -EOVERFLOW;
	/* iopt_check_iova(): a fixed destination must not wrap either (found by fuzz-iommufd). */
	if ((flags & IOMMU_IOAS_MAP_FIXED_IOVA) && __builtin_add_overflow(*dst_iova, length - 1, &iova))
		return -EOVERFLOW;
	/* Collect the pages behind the source range; holes are -ENOENT. */
	pthread_rwlock_rdlock(&src->lock);
	while (!ret && more) {
		struct ioas_area *a = find_area(src, pos);
		uint64_t take, take_last;

		if (!a) {
			ret = -ENOENT;
			break;
		}
		take_last = MIN(last, a->iova + (a->length - 1));
		take = take_last - pos + 1;
		more = take_last != last;
		if (n == max) {
			void *np = realloc(parts, (max = max ? max * 2 : 8) * sizeof(*parts));

			if (!np) {
				ret = -ENOMEM;
				break;
			}
			parts = np;
		}
		/* A callback area belongs to its owner's IOAS: its unmap ends the calls. */
		if (a->callback) {
			ret = -EINVAL;
			break;
		}
		/* iopt_map_pages(): a writeable copy of pages mapped read-only. */
		if ((flags & IOMMU_IOAS_MAP_WRITEABLE) && !a->pages->writable) {
			ret = -EPERM;
			break;
		}
		pages_get(a->pages);
		parts[n].p = a->pages;
		parts[n].off = a->pages_off + (pos - a->iova);
		parts[n].len = take;
		n++;
		pos = take_last + 1; /* wraps to 0 only when !more */
	}
	pthread_rwlock_unlock(&src->lock);

	if (!ret && !(flags & IOMMU_IOAS_MAP_FIXED_IOVA)) {
		/* Reserve a hole for the whole copy, then place the parts in it. */
		pthread_rwlock_wrlock(&dst->lock);
		ret = alloc_iova(dst, length, P2P_PAGE_SIZE, parts ? parts[0].off & P2P_PAGE_MASK : 0,
				 dst_iova);
		pthread_rwlock_unlock(&dst->lock);
	}
	iova = *dst_iova;
	for (size_t i = 0; i < n; i++) {
		uint64_t at = iova;

		if (!ret) {
			ret = ioas_add(dst, parts[i].p, parts[i].off, parts[i].len, &at,
				       flags | IOMMU_IOAS_MAP_FIXED_IOVA);
			if (!ret) {
				iova += parts[i].len;
				continue;
			}
			if (i) /* undo the parts placed so far */
				p2p_ioas_unmap(dst, *dst_iova, iova - *dst_iova, NULL);
		}
		pages_put(parts[i].p);
	}
	free(parts);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Access and translation                                                  */

/*
 * Translation without a lock.
 *
 * A translation walks the IO page table with acquire loads (tables are
 * never freed while the IOAS lives, and every entry is one word stored
 * with release), reads an area pointer from a leaf or block entry E, and
 * raises the area's count with one seq_cst atomic add, which also returns
 * the area's flags.  It then loads E again: the area is the translation's
 * if the add saw no AREA_DYING and E still names the area.
 *
 * Why that is enough.  Call a "life" of an area record the time from
 * area_revive() (AREA_DYING cleared) to the unmap's fetch_or of
 * AREA_DYING (area_drain()).  Our add saw no AREA_DYING, so it is ordered
 * inside one life L of the record, and any unmap ending L must wait for
 * our count (area_drain() waits for the count to reach zero after setting
 * the flag, both on the same word, so it cannot miss our add): L cannot
 * end, and no later life can begin, before we drop the count.  The reload
 * of E happens after the add; it names the record, so the value it reads
 * was stored during L (an unmap clears every entry naming its area, under
 * ioas->lock, before it sets AREA_DYING, and that clear happens before the
 * next revive, whose release our add acquired: an older value cannot be
 * read any more).  So at the reload the record is live, maps @iova, and
 * the fields written before it was published are visible (the entry's
 * release store, our acquire load).  From then on an unmap of the area
 * waits for our p2p_ioas_dma_end().  A revoke meets us on the same word
 * (pages.c): either our add came first (the revoke sets AREA_PENDING and
 * waits) or we see AREA_REVOKED and fail with -ENODEV.
 *
 * A translation that loses (a record freed or recycled under it, or an
 * entry changed) drops its count (area_dma_done(), which wakes an unmapper
 * if needed) and walks again; a record it touched is still a record (areas
 * are type-stable, see area_alloc()), and area_revive() waits for such
 * stale counts to go.  Pages only partly covered by areas and IOVAs from
 * 2^48 fall back to the sorted array under ioas->lock (read).
 */
static int area_get_locked(struct p2p_ioas *ioas, uint64_t iova, struct ioas_area **out)
{
	struct ioas_area *a;
	unsigned int old;
	int ret = 0;

	pthread_rwlock_rdlock(&ioas->lock);
	a = find_area_bsearch(ioas, iova);
	if (!a) {
		ret = -ENOENT;
	} else {
		/* Listed, so not dying: unmap sets the flag after taking it out. */
		old = atomic_fetch_add(&a->inflight, 1);
		if (old & AREA_REVOKED) {
			area_dma_done(a);
			ret = -ENODEV;
		}
	}
	pthread_rwlock_unlock(&ioas->lock);
	*out = a;
	return ret;
}

/* The area mapping @iova with a count on it, or -ENOENT / -ENODEV. */
static int area_get(struct p2p_ioas *ioas, uint64_t iova, struct ioas_area **out)
{
	const pte_t *t, *slot;
	struct ioas_area *a;
	unsigned int old;
	uintptr_t e;

	if (iova >= PT_LIMIT)
		return area_get_locked(ioas, iova, out);
again:
	t = ioas->pt_root;
	for (int l = PT_LEVELS - 1;; l--) {
		slot = &t[(iova >> pt_shift(l)) & (PT_ENTRIES - 1)];
		e = atomic_load_explicit(slot, memory_order_acquire);
		if (e & 1)
			break;
		if (!e)
			return -ENOENT;
		if (e == PT_AMBIG)
			return area_get_locked(ioas, iova, out);
		t = (const pte_t *)e;
	}
	a = (struct ioas_area *)(e & ~(uintptr_t)1);
	old = atomic_fetch_add(&a->inflight, 1);
	if ((old & AREA_DYING) || atomic_load_explicit(slot, memory_order_acquire) != e) {
		area_dma_done(a); /* lost a race with an unmap or a remap: walk again */
		goto again;
	}
	if (old & AREA_REVOKED) {
		area_dma_done(a);
		return -ENODEV;
	}
	*out = a;
	return 0;
}

P2P_API int p2p_ioas_dma_begin(struct p2p_ioas *ioas, uint64_t iova, uint64_t len,
			       unsigned int access, struct p2p_dma_seg *seg)
{
	struct ioas_area *a;
	uint64_t in, avail;
	uint8_t *host;
	int ret = area_get(ioas, iova, &a);

	if (ret)
		return ret;
	if (((access & P2P_DMA_WRITE) && !(a->prot & IOMMU_IOAS_MAP_WRITEABLE)) ||
	    ((access & P2P_DMA_READ) && !(a->prot & IOMMU_IOAS_MAP_READABLE))) {
		area_dma_done(a);
		return -EPERM;
	}
	if (a->callback) {
		area_dma_done(a);
		return -EREMOTE; /* no memory to hand out: p2p_ioas_callback_rw() */
	}
	in = iova - a->iova;
	avail = a->length - in;
	if (a->direct) {
		host = a->direct + in;
	} else {
		uint64_t run;

		/* Not revoked (checked on the count): the segments are valid. */
		host = pages_host(a->pages, a->pages_off + in, &run);
		avail = MIN(avail, run);
	}
	seg->host = host;
	seg->len = MIN(avail, len);
	seg->priv = a;
	return 0;
}

bool ioas_seg_fragile(const struct p2p_dma_seg *seg)
{
	const struct ioas_area *a = seg->priv;

	return a && a->fragile;
}

P2P_API void p2p_ioas_dma_end(struct p2p_dma_seg *seg)
{
	struct ioas_area *a = seg->priv;

	if (!a)
		return;
	seg->priv = NULL;
	area_dma_done(a);
}

P2P_API int p2p_ioas_callback_rw(struct p2p_ioas *ioas, uint64_t iova, void *data, uint64_t len,
				 bool write, uint64_t *done)
{
	const struct p2p_ioas_callback_ops *ops = NULL;
	struct ioas_area *a;
	void *priv = NULL;
	uint64_t n = 0;
	int ret = 0;

	*done = 0;
	if (!len)
		return -EINVAL;
	pthread_rwlock_rdlock(&ioas->lock);
	a = find_area(ioas, iova);
	if (!a) {
		ret = -ENOENT;
	} else if (!a->callback) {
		ret = -EINVAL;
	} else if (!(a->prot & (write ? IOMMU_IOAS_MAP_WRITEABLE : IOMMU_IOAS_MAP_READABLE))) {
		ret = -EPERM;
	} else {
		/* Counted as DMA in flight: an unmap of the area waits for the call. */
		atomic_fetch_add(&a->inflight, 1);
		n = MIN(len, a->length - (iova - a->iova));
		ops = a->pages->cb_ops;
		priv = a->pages->cb_priv;
	}
	pthread_rwlock_unlock(&ioas->lock);
	if (ret)
		return ret;
	ret = ops->rw(priv, iova, data, n, write);
	area_dma_done(a);
	if (!ret)
		*done = n;
	return ret;
}

P2P_API int p2p_ioas_access_rw(struct p2p_ioas *ioas, uint64_t iova, void *data, uint64_t len,
			       bool write)
{
	uint8_t *d = data;
	uint64_t last;

	/* iommufd_access_rw(): an empty or wrapping range is refused. */
	if (!len)
		return -EINVAL;
	if (__builtin_add_overflow(iova, len - 1, &last))
		return -EOVERFLOW;
	while (len) {
		struct p2p_dma_seg seg;
		struct ioas_area *a;
		int ret;

		pthread_rwlock_rdlock(&ioas->lock);
		a = find_area(ioas, iova);
		ret = a && a->pages->kind == PAGES_DMABUF ? -EINVAL : 0;
		pthread_rwlock_unlock(&ioas->lock);
		if (ret)
			return ret;
		ret = p2p_ioas_dma_begin(ioas, iova, len, write ? P2P_DMA_WRITE : P2P_DMA_READ,
					 &seg);
		if (ret == -EREMOTE) {
			uint64_t n;

			ret = p2p_ioas_callback_rw(ioas, iova, d, len, write, &n);
			if (ret)
				return ret;
			d += n;
			iova += n;
			len -= n;
			continue;
		}
		if (ret)
			return ret;
		/* A truncated memfd: -EFAULT, as iommufd_access_rw() on an unpinnable page. */
		ret = write ? dma_copy(seg.host, d, seg.len, ioas_seg_fragile(&seg)) :
			      dma_copy(d, seg.host, seg.len, ioas_seg_fragile(&seg));
		d += seg.len;
		iova += seg.len;
		len -= seg.len;
		p2p_ioas_dma_end(&seg);
		if (ret)
			return ret;
	}
	return 0;
}

P2P_API int p2p_ioas_attach_device(struct p2p_ioas *ioas)
{
	int ret = 0;

	pthread_rwlock_wrlock(&ioas->lock);
	for (size_t i = 0; i < ioas->nr; i++) {
		struct ioas_area *a = ioas->areas[i];

		/* page_offset too, as iopt_check_iova_alignment() (2.3) */
		if ((a->iova | a->length | a->pages_off) & P2P_PAGE_MASK)
			ret = -EINVAL;
	}
	if (!ret)
		ioas->ndev++;
	pthread_rwlock_unlock(&ioas->lock);
	return ret;
}

P2P_API void p2p_ioas_detach_device(struct p2p_ioas *ioas)
{
	pthread_rwlock_wrlock(&ioas->lock);
	if (ioas->ndev)
		ioas->ndev--;
	pthread_rwlock_unlock(&ioas->lock);
}

P2P_API unsigned int p2p_ioas_nr_areas(struct p2p_ioas *ioas)
{
	unsigned int n;

	pthread_rwlock_rdlock(&ioas->lock);
	n = (unsigned int)ioas->nr;
	pthread_rwlock_unlock(&ioas->lock);
	return n;
}

/* The IO page table of a new IOAS: an empty root. */
int iopt_init(struct p2p_ioas *ioas)
{
	pthread_mutex_init(&ioas->domain_lock, NULL);
	list_init(&ioas->domains);
	atomic_init(&ioas->ndomains, 0);
	ioas->pt_root = calloc(PT_ENTRIES, sizeof(pte_t));
	return ioas->pt_root ? 0 : -ENOMEM;
}

/* Free what iopt_init() and the (now unmapped) areas left. */
void iopt_destroy(struct p2p_ioas *ioas)
{
	free(ioas->areas);
	free(ioas->starts);
	free(ioas->allowed);
	free(ioas->pt_root);
	/* Tables and area records.  No translation runs: the caller held the last reference. */
	for (size_t i = 0; i < ioas->nr_chunks; i++)
		free(ioas->chunks[i]);
	free(ioas->chunks);
	pthread_mutex_destroy(&ioas->domain_lock);
}

/* iopt_disable_large_pages() / iopt_enable_large_pages() */
int ioas_set_large_pages(struct p2p_ioas *ioas, bool enable)
{
	int ret = 0;

	pthread_rwlock_wrlock(&ioas->lock);
	if (enable) {
		ioas->no_large_pages = false;
	} else if (!ioas->no_large_pages) {
		/* Not once a domain has pages mapped in it. */
		if (ioas->ndev && ioas->nr)
			ret = -EINVAL;
		/* iopt_check_iova_alignment(): areas must fit the new alignment. */
		for (size_t i = 0; !ret && !ioas->ndev && i < ioas->nr; i++)
			if ((ioas->areas[i]->iova | ioas->areas[i]->length |
			     ioas->areas[i]->pages_off) & P2P_PAGE_MASK)
				ret = -EADDRINUSE;
		if (!ret)
			ioas->no_large_pages = true;
	}
	pthread_rwlock_unlock(&ioas->lock);
	return ret;
}

bool ioas_large_pages(struct p2p_ioas *ioas)
{
	bool ret;

	pthread_rwlock_rdlock(&ioas->lock);
	ret = !ioas->no_large_pages;
	pthread_rwlock_unlock(&ioas->lock);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Debug checks (tests and fuzz targets, see ioas_debug.h)                 */

static const char *pt_check(const struct p2p_ioas *ioas, const pte_t *tbl, int level,
			    uint64_t base)
{
	unsigned int sh = pt_shift(level);

	for (uint64_t i = 0; i < PT_ENTRIES; i++) {
		uint64_t eb = base + (i << sh), ee = eb + (1ull << sh) - 1;
		uintptr_t e = pte_get(&tbl[i]);
		const struct ioas_area *a;
		const char *why;

		if (pt_is_table(e)) {
			if (!level)
				return "page table: a table below the last level";
			why = pt_check(ioas, (const pte_t *)e, level - 1, eb);
			if (why)
				return why;
		} else if (!e) {
			if (range_busy(ioas, eb, ee))
				return "page table: an empty entry over a mapped area";
		} else if (e & 1) {
			a = (const struct ioas_area *)(e & ~(uintptr_t)1);
			if (find_area_bsearch(ioas, eb) != a)
				return "page table: an entry names an area that is not listed there";
			if (a->iova > eb || a->iova + (a->length - 1) < ee)
				return "page table: an entry reaches beyond its area";
		} else if (e == PT_AMBIG) {
			if (level)
				return "page table: a shared-page marker above the last level";
		} else {
			return "page table: a malformed entry";
		}
	}
	return NULL;
}

static const char *ioas_check_locked(const struct p2p_ioas *ioas)
{
	for (size_t i = 0; i < ioas->nr; i++) {
		const struct ioas_area *a = ioas->areas[i];
		uint64_t last;

		if (ioas->starts[i] != a->iova)
			return "areas: search key differs from the area's IOVA";
		if (!a->length)
			return "areas: an empty area";
		if (__builtin_add_overflow(a->iova, a->length - 1, &last))
			return "areas: an area wraps past the end of the IOVA space";
		if (i && ioas->areas[i - 1]->iova + (ioas->areas[i - 1]->length - 1) >= a->iova)
			return "areas: overlapping or unsorted areas";
		if (!a->pages || a->pages_off > a->pages->len ||
		    a->length > a->pages->len - a->pages_off)
			return "areas: an area reaches beyond its backing";
		if (!(a->prot & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)) ||
		    (a->prot & ~(uint32_t)(IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)))
			return "areas: bad protection";
		if (atomic_load(&a->pages->count) == 0)
			return "areas: backing without a reference";
		if (atomic_load(&a->inflight) & AREA_DYING)
			return "areas: a listed area is dying";
		if (ioas->ndev && ((a->iova | a->length | a->pages_off) & P2P_PAGE_MASK))
			return "areas: not page aligned while a device is attached";
	}
	return pt_check(ioas, ioas->pt_root, PT_LEVELS - 1, 0);
}

int ioas_check_invariants(struct p2p_ioas *ioas, const char **why)
{
	const char *w;

	pthread_rwlock_rdlock(&ioas->lock);
	w = ioas_check_locked(ioas);
	pthread_rwlock_unlock(&ioas->lock);
	if (why)
		*why = w;
	return w ? -EUCLEAN : 0;
}

void ioas_debug_walk(struct p2p_ioas *ioas,
		     void (*fn)(void *priv, uint64_t iova, uint64_t length, uint32_t prot,
				uint8_t *host, int is_dmabuf),
		     void *priv)
{
	pthread_rwlock_rdlock(&ioas->lock);
	for (size_t i = 0; i < ioas->nr; i++) {
		const struct ioas_area *a = ioas->areas[i];

		fn(priv, a->iova, a->length, a->prot, a->direct,
		   a->pages->kind == PAGES_DMABUF);
	}
	pthread_rwlock_unlock(&ioas->lock);
}
