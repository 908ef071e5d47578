// SPDX-License-Identifier: MIT
/*
 * VFIO containers and type1 (drivers/vfio/container.c,
 * vfio_iommu_type1.c): /dev/vfio/vfio answers VFIO_GET_API_VERSION,
 * VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU, then the type1 ioctls, dispatched
 * from one table (the argsz framing done once, vfio_ucmd_in()).
 *
 * Type1 is built on an internal IO address space: each VFIO_IOMMU_MAP_DMA
 * is one area made with p2p_ioas_map_dma(), so process memory is mapped as
 * process memory and the address of a BAR or dma-buf mmap is mapped
 * through its dma-buf and revoked with it (kernel-semantics 4.1).  Devices
 * opened with VFIO_GROUP_GET_DEVICE_FD DMA through that IOAS.  The
 * container keeps type1's list of mappings (struct vfio_dma) for the
 * unmap rules of v1 and v2.
 *
 * What a type1v2 host with an emulated IOMMU answers: 4 KiB, 2 MiB and
 * 1 GiB IOMMU pages; IOVA ranges [0, 0xfedfffff] and [0xfef00000,
 * 2^48 - 1] (the x86 MSI window reserved); 65535 mappings; coherent DMA.
 * VFIO_UPDATE_VADDR is 0, as type1 says when emulated devices are in the
 * container (p2pbuf's devices DMA through the CPU): the VADDR flags are
 * -EBUSY.  Dirty tracking reports every mapped page dirty, as type1 does
 * without a pinned-page scope.
 *
 * Locking: container->lock protects the type1 state (the IOMMU type, the
 * IOAS, the mappings, dirty tracking) and the number of groups; groups
 * change that number under vfio_lock too (group.c).  The order is
 * docs/locking.md's.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include "vfio_priv.h"

#define T1_PGSIZES ((1ull << 12) | (1ull << 21) | (1ull << 30))
#define T1_PGSIZE 4096ull
#define T1_DMA_ENTRY_LIMIT 65535u /* dma_entry_limit = U16_MAX */
#define DIRTY_BITMAP_PAGES_MAX ((uint64_t)INT32_MAX)
#define DIRTY_BITMAP_BYTES(n) (ALIGN_UP((uint64_t)(n), 64) / 8)
#define DIRTY_BITMAP_SIZE_MAX DIRTY_BITMAP_BYTES(DIRTY_BITMAP_PAGES_MAX)

static const struct iommu_iova_range t1_iova_ranges[] = {
	{ 0, 0xfedfffffull },
	{ 0xfef00000ull, (1ull << 48) - 1 },
};

struct vfio_dma {
	uint64_t iova, size;
	uintptr_t vaddr;
};

struct vfio_container {
	struct p2p_file *file; /* groups hold references */
	unsigned int ngroups;  /* under vfio_lock and lock */
	pthread_mutex_t lock;
	unsigned long type; /* 0 (unset), VFIO_TYPE1_IOMMU or VFIO_TYPE1v2_IOMMU */
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	struct vfio_dma *dma; /* sorted by iova */
	size_t ndma, maxdma;
	uint32_t dma_avail;
	bool dirty_tracking;
};

static const struct p2p_file_ops vfio_container_fops;

/* ---------------------------------------------------------------------- */
/* type1                                                                   */

/* vfio_find_dma(): a mapping overlapping [start, start + size), or with size 0 one
 * that holds @start past its first byte. */
static struct vfio_dma *t1_find(struct vfio_container *c, uint64_t start, uint64_t size)
{
	for (size_t i = 0; i < c->ndma; i++) {
		struct vfio_dma *d = &c->dma[i];
		uint64_t last = d->iova + d->size - 1;

		if (size ? (start <= last && d->iova <= start + (size - 1))
			 : (start > d->iova && start <= last))
			return d;
	}
	return NULL;
}

static bool t1_iova_valid(uint64_t start, uint64_t last)
{
	for (size_t i = 0; i < ARRAY_SIZE(t1_iova_ranges); i++)
		if (start >= t1_iova_ranges[i].start && last <= t1_iova_ranges[i].last)
			return true;
	return false;
}

static void t1_remove(struct vfio_container *c, size_t i)
{
	p2p_ioas_unmap(c->ioas, c->dma[i].iova, c->dma[i].size, NULL);
	memmove(&c->dma[i], &c->dma[i + 1], (c->ndma - i - 1) * sizeof(c->dma[0]));
	c->ndma--;
	c->dma_avail++;
}

/* The container loses its last group: the IOMMU goes, with every mapping. */
static void t1_release_locked(struct vfio_container *c)
{
	while (c->ndma)
		t1_remove(c, c->ndma - 1);
	p2p_ioas_put(c->ioas);
	p2p_iommufd_close(c->ictx);
	free(c->dma);
	c->dma = NULL;
	c->maxdma = 0;
	c->ioas = NULL;
	c->ictx = NULL;
	c->type = 0;
	c->dirty_tracking = false;
}

static long t1_check_extension(struct vfio_container *c, unsigned long ext)
{
	switch (ext) {
	case VFIO_TYPE1_IOMMU:
	case VFIO_TYPE1v2_IOMMU:
	case VFIO_UNMAP_ALL:
		return 1;
	case VFIO_DMA_CC_IOMMU:
		return c && c->type ? 1 : 0; /* the emulated IOMMU enforces coherency */
	case VFIO_UPDATE_VADDR:
		return 0; /* emulated devices in the container */
	default:
		return 0; /* no nesting (removed), SPAPR or no-IOMMU drivers */
	}
}

static long container_set_iommu(struct vfio_container *c, unsigned long type)
{
	uint32_t id;
	long ret;

	pthread_mutex_lock(&c->lock);
	if (!c->ngroups || c->type) {
		ret = -EINVAL;
		goto out;
	}
	if (t1_check_extension(NULL, type) <= 0) {
		ret = -ENODEV; /* no driver for it */
		goto out;
	}
	if (type != VFIO_TYPE1_IOMMU && type != VFIO_TYPE1v2_IOMMU) {
		ret = -EINVAL; /* vfio_iommu_type1_open() */
		goto out;
	}
	ret = p2p_iommufd_open(&c->ictx);
	if (ret)
		goto out;
	ret = p2p_ioas_alloc(c->ictx, &id, &c->ioas);
	if (ret) {
		p2p_iommufd_close(c->ictx);
		c->ictx = NULL;
		goto out;
	}
	c->type = type;
	c->dma_avail = T1_DMA_ENTRY_LIMIT;
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* vfio_info_cap_add(): append a capability, 8-byte aligned, chained by next. */
static void *cap_add(uint8_t *buf, size_t *size, size_t len, uint16_t id, uint16_t version)
{
	struct vfio_info_cap_header *h = (void *)(buf + *size), *t;

	len = ALIGN_UP(len, 8);
	memset(h, 0, len);
	h->id = id;
	h->version = version;
	if (*size) {
		for (t = (void *)buf; t->next; t = (void *)(buf + t->next))
			;
		t->next = (uint32_t)*size;
	}
	*size += len;
	return h;
}

static long t1_get_info(struct vfio_container *c, void *arg, void *cmd)
{
	uint8_t caps[256];
	size_t capsz = 0;
	struct vfio_iommu_type1_info *info = cmd;
	struct vfio_iommu_type1_info_cap_migration *mig;
	struct vfio_iommu_type1_info_dma_avail *avail;
	struct vfio_iommu_type1_info_cap_iova_range *iova;
	size_t outsz;

	outsz = MIN((size_t)info->argsz, sizeof(*info));
	info->flags = VFIO_IOMMU_INFO_PGSIZES;
	info->iova_pgsizes = T1_PGSIZES;
	info->cap_offset = 0;

	mig = cap_add(caps, &capsz, sizeof(*mig), VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 1);
	mig->flags = 0;
	mig->pgsize_bitmap = T1_PGSIZE;
	mig->max_dirty_bitmap_size = DIRTY_BITMAP_SIZE_MAX;
	avail = cap_add(caps, &capsz, sizeof(*avail), VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1);
	pthread_mutex_lock(&c->lock);
	avail->avail = c->dma_avail;
	pthread_mutex_unlock(&c->lock);
	iova = cap_add(caps, &capsz, sizeof(*iova) + sizeof(t1_iova_ranges),
		       VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1);
	iova->nr_iovas = ARRAY_SIZE(t1_iova_ranges);
	for (size_t i = 0; i < ARRAY_SIZE(t1_iova_ranges); i++) {
		iova->iova_ranges[i].start = t1_iova_ranges[i].start;
		iova->iova_ranges[i].end = t1_iova_ranges[i].last;
	}

	info->flags |= VFIO_IOMMU_INFO_CAPS;
	if (info->argsz < sizeof(*info) + capsz) {
		info->argsz = (uint32_t)(sizeof(*info) + capsz);
	} else {
		/* vfio_info_cap_shift() */
		for (struct vfio_info_cap_header *t = (void *)caps; t->next;
		     t = (void *)(caps + t->next - sizeof(*info)))
			t->next += sizeof(*info);
		if (copy_to_user((uint8_t *)arg + sizeof(*info), caps, capsz))
			return -EFAULT;
		info->cap_offset = sizeof(*info);
	}
	return copy_to_user(arg, info, outsz);
}

static int t1_dma_insert(struct vfio_container *c, uint64_t iova, uint64_t size, uintptr_t va)
{
	size_t i;

	if (c->ndma == c->maxdma) {
		size_t n = c->maxdma ? c->maxdma * 2 : 16;
		struct vfio_dma *d = realloc(c->dma, n * sizeof(*d));

		if (!d)
			return -ENOMEM;
		c->dma = d;
		c->maxdma = n;
	}
	for (i = c->ndma; i && c->dma[i - 1].iova > iova; i--)
		;
	memmove(&c->dma[i + 1], &c->dma[i], (c->ndma - i) * sizeof(c->dma[0]));
	c->dma[i] = (struct vfio_dma){ .iova = iova, .size = size, .vaddr = va };
	c->ndma++;
	return 0;
}

static long t1_map_dma(struct vfio_container *c, void *arg, void *cmd)
{
	const uint32_t mask = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE |
			      VFIO_DMA_MAP_FLAG_VADDR;
	struct vfio_iommu_type1_dma_map *map = cmd;
	uint64_t iova_end, vaddr_end;
	uint32_t prot = 0;
	bool set_vaddr;
	long ret;

	(void)arg;
	if (map->flags & ~mask)
		return -EINVAL;
	/* vfio_dma_do_map() */
	if (!map->size)
		return -EINVAL;
	if (__builtin_add_overflow(map->iova, map->size - 1, &iova_end) ||
	    __builtin_add_overflow(map->vaddr, map->size - 1, &vaddr_end))
		return -EOVERFLOW;
	if (map->flags & VFIO_DMA_MAP_FLAG_WRITE)
		prot |= P2P_IOAS_MAP_WRITEABLE;
	if (map->flags & VFIO_DMA_MAP_FLAG_READ)
		prot |= P2P_IOAS_MAP_READABLE;
	set_vaddr = map->flags & VFIO_DMA_MAP_FLAG_VADDR;
	if ((prot && set_vaddr) || (!prot && !set_vaddr))
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	if ((map->size | map->iova | map->vaddr) & (T1_PGSIZE - 1))
		ret = -EINVAL;
	else if (set_vaddr)
		ret = -EBUSY; /* no VFIO_UPDATE_VADDR with emulated devices */
	else if (t1_find(c, map->iova, map->size))
		ret = -EEXIST;
	else if (!t1_iova_valid(map->iova, iova_end))
		ret = -EINVAL;
	else if (!c->dma_avail)
		ret = -ENOSPC;
	else
		ret = p2p_ioas_map_dma(c->ioas, (void *)(uintptr_t)map->vaddr, map->size, map->iova,
				       prot);
	if (ret == -ENODEV)
		ret = -EFAULT; /* a revoked BAR mapping: the pin faults */
	if (!ret) {
		ret = t1_dma_insert(c, map->iova, map->size, (uintptr_t)map->vaddr);
		if (ret)
			p2p_ioas_unmap(c->ioas, map->iova, map->size, NULL);
		else
			c->dma_avail--;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int verify_bitmap_size(uint64_t npages, uint64_t bitmap_size)
{
	if (!npages || !bitmap_size || bitmap_size > DIRTY_BITMAP_SIZE_MAX ||
	    bitmap_size < DIRTY_BITMAP_BYTES(npages))
		return -EINVAL;
	return 0;
}

/*
 * Every page of every mapping in [iova, iova + size) is dirty (type1 with
 * no pinned-page scope); bit n is page iova + n * 4 KiB.  c->lock held.
 */
static int t1_report_dirty(struct vfio_container *c, uint64_t iova, uint64_t size,
			   uint64_t *ubitmap)
{
	uint64_t npages = size / T1_PGSIZE;
	size_t bytes = DIRTY_BITMAP_BYTES(npages);
	uint64_t *bm;
	int ret;

	bm = calloc(1, bytes);
	if (!bm)
		return -ENOMEM;
	for (size_t i = 0; i < c->ndma; i++) {
		struct vfio_dma *d = &c->dma[i];

		if (d->iova < iova || d->iova + d->size - 1 > iova + size - 1)
			continue;
		for (uint64_t p = (d->iova - iova) / T1_PGSIZE;
		     p < (d->iova - iova + d->size) / T1_PGSIZE; p++)
			bm[p / 64] |= 1ull << (p % 64);
	}
	ret = copy_to_user(ubitmap, bm, bytes);
	free(bm);
	return ret;
}

static long t1_unmap_dma(struct vfio_container *c, void *arg, void *cmd)
{
	const size_t minsz = offsetof(struct vfio_iommu_type1_dma_unmap, size) + sizeof(uint64_t);
	const uint32_t mask = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR |
			      VFIO_DMA_UNMAP_FLAG_ALL;
	struct vfio_iommu_type1_dma_unmap *unmap = cmd;
	struct vfio_bitmap bitmap = { 0 };
	bool all, dirty;
	uint64_t size, end, unmapped = 0;
	long ret = -EINVAL;

	if (unmap->flags & ~mask)
		return -EINVAL;
	dirty = unmap->flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
	all = unmap->flags & VFIO_DMA_UNMAP_FLAG_ALL;
	if (dirty && (unmap->flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)))
		return -EINVAL;
	if (dirty) {
		if (unmap->argsz < minsz + sizeof(bitmap))
			return -EINVAL;
		if (copy_from_user(&bitmap, (uint8_t *)arg + minsz, sizeof(bitmap)))
			return -EFAULT;
		if (!bitmap.pgsize || !bitmap.data)
			return -EINVAL;
		ret = verify_bitmap_size(unmap->size >> __builtin_ctzll(bitmap.pgsize), bitmap.size);
		if (ret)
			return ret;
		ret = -EINVAL;
	}

	pthread_mutex_lock(&c->lock);
	size = unmap->size;
	if (unmap->flags & VFIO_DMA_UNMAP_FLAG_VADDR) {
		ret = -EBUSY; /* cannot update vaddr with emulated devices */
		goto unlock;
	}
	if (unmap->iova & (T1_PGSIZE - 1))
		goto unlock;
	if (all) {
		if (unmap->iova || size)
			goto unlock;
		size = UINT64_MAX;
		end = UINT64_MAX;
	} else {
		if (!size || (size & (T1_PGSIZE - 1)))
			goto unlock;
		if (__builtin_add_overflow(unmap->iova, size - 1, &end)) {
			ret = -EOVERFLOW;
			goto unlock;
		}
	}
	if (dirty && (!c->dirty_tracking || bitmap.pgsize != T1_PGSIZE))
		goto unlock;
	if (c->type == VFIO_TYPE1v2_IOMMU && !all) {
		struct vfio_dma *d = t1_find(c, unmap->iova, 1);

		if (d && d->iova != unmap->iova)
			goto unlock; /* the range starts inside a mapping */
		d = t1_find(c, end, 0);
		if (d && d->iova + d->size - 1 != end)
			goto unlock; /* ... or ends inside one */
	}
	ret = 0;
	if (dirty)
		ret = t1_report_dirty(c, unmap->iova, size, (uint64_t *)(uintptr_t)bitmap.data);
	for (size_t i = 0; !ret && i < c->ndma;) {
		struct vfio_dma *d = &c->dma[i];

		if (d->iova + d->size - 1 < unmap->iova) {
			i++;
			continue;
		}
		if (d->iova > end)
			break;
		/* v1: a mapping starting below the range stops the unmap; one
		 * starting inside goes whole, even past the end. */
		if (c->type != VFIO_TYPE1v2_IOMMU && unmap->iova > d->iova)
			break;
		unmapped += d->size;
		t1_remove(c, i);
	}
unlock:
	pthread_mutex_unlock(&c->lock);
	unmap->size = unmapped;
	if (ret)
		return ret;
	return copy_to_user(arg, unmap, minsz);
}

static long t1_dirty_pages(struct vfio_container *c, void *arg, void *cmd)
{
	const size_t minsz = offsetof(struct vfio_iommu_type1_dirty_bitmap, flags) +
			     sizeof(uint32_t);
	const uint32_t mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
			      VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	struct vfio_iommu_type1_dirty_bitmap *dirty = cmd;
	struct vfio_iommu_type1_dirty_bitmap_get range;
	uint64_t end;
	long ret;

	if (dirty->flags & ~mask)
		return -EINVAL;
	/* exactly one flag */
	if (!dirty->flags || (dirty->flags & (dirty->flags - 1)))
		return -EINVAL;
	if (dirty->flags != VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) {
		pthread_mutex_lock(&c->lock);
		c->dirty_tracking = dirty->flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_START;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	if (dirty->argsz - minsz < sizeof(range))
		return -EINVAL;
	if (copy_from_user(&range, (uint8_t *)arg + minsz, sizeof(range)))
		return -EFAULT;
	if (!range.size)
		return -EINVAL;
	if (__builtin_add_overflow(range.iova, range.size - 1, &end))
		return -EOVERFLOW;
	if (!range.bitmap.pgsize || !range.bitmap.data)
		return -EINVAL;
	ret = verify_bitmap_size(range.size >> __builtin_ctzll(range.bitmap.pgsize),
				 range.bitmap.size);
	if (ret)
		return ret;
	pthread_mutex_lock(&c->lock);
	if (!c->dirty_tracking || range.bitmap.pgsize != T1_PGSIZE ||
	    (range.iova & (T1_PGSIZE - 1)) || (range.size & (T1_PGSIZE - 1))) {
		ret = -EINVAL;
	} else {
		/* vfio_iova_dirty_bitmap(): the range must not bisect a mapping */
		struct vfio_dma *d = t1_find(c, range.iova, 1);

		if (d && d->iova != range.iova)
			ret = -EINVAL;
		d = t1_find(c, end, 0);
		if (d && d->iova + d->size - 1 != end)
			ret = -EINVAL;
		if (!ret)
			ret = t1_report_dirty(c, range.iova, range.size,
					      (uint64_t *)(uintptr_t)range.bitmap.data);
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* The container file                                                      */

static long container_api_version(struct vfio_container *c, void *arg, void *cmd)
{
	(void)c;
	(void)arg;
	(void)cmd;
	return VFIO_API_VERSION;
}

static long container_check_extension(struct vfio_container *c, void *arg, void *cmd)
{
	unsigned long type;

	(void)cmd;
	pthread_mutex_lock(&c->lock);
	type = c->type;
	pthread_mutex_unlock(&c->lock);
	return t1_check_extension(type ? c : NULL, (unsigned long)(uintptr_t)arg);
}

static long container_set_iommu_ioctl(struct vfio_container *c, void *arg, void *cmd)
{
	(void)cmd;
	return container_set_iommu(c, (unsigned long)(uintptr_t)arg);
}

/* Big enough for the mandatory part of any type1 command. */
union vfio_container_ucmd {
	uint32_t argsz;
	struct vfio_iommu_type1_info info;
	struct vfio_iommu_type1_dma_map map;
	uint64_t raw[4]; /* struct vfio_iommu_type1_dma_unmap, _dirty_bitmap (headers) */
};

enum {
	T1_NEEDS_IOMMU = 1u << 0, /* -EINVAL until VFIO_SET_IOMMU */
	T1_V2_ONLY = 1u << 1,	  /* -EACCES on a type1 (v1) container */
};

struct vfio_container_ioctl_op {
	unsigned long cmd;
	long (*fn)(struct vfio_container *c, void *arg, void *cmd);
	uint32_t minsz; /* the mandatory part, framed by the dispatcher; 0: none (a value) */
	uint32_t flags;
};

#define CONTAINER_OP(_cmd, _fn, _minsz, _flags)                                                 \
	[VFIO_IOCTL_NR(_cmd)] = { .cmd = _cmd, .fn = _fn, .minsz = _minsz, .flags = _flags }

static const struct vfio_container_ioctl_op vfio_container_ioctls[] = {
	CONTAINER_OP(VFIO_GET_API_VERSION, container_api_version, 0, 0),
	CONTAINER_OP(VFIO_CHECK_EXTENSION, container_check_extension, 0, 0),
	CONTAINER_OP(VFIO_SET_IOMMU, container_set_iommu_ioctl, 0, 0),
	CONTAINER_OP(VFIO_IOMMU_GET_INFO, t1_get_info,
		     VFIO_MINSZ(struct vfio_iommu_type1_info, iova_pgsizes), T1_NEEDS_IOMMU),
	CONTAINER_OP(VFIO_IOMMU_MAP_DMA, t1_map_dma, VFIO_MINSZ(struct vfio_iommu_type1_dma_map, size),
		     T1_NEEDS_IOMMU),
	CONTAINER_OP(VFIO_IOMMU_UNMAP_DMA, t1_unmap_dma,
		     VFIO_MINSZ(struct vfio_iommu_type1_dma_unmap, size), T1_NEEDS_IOMMU),
	CONTAINER_OP(VFIO_IOMMU_DIRTY_PAGES, t1_dirty_pages,
		     VFIO_MINSZ(struct vfio_iommu_type1_dirty_bitmap, flags),
		     T1_NEEDS_IOMMU | T1_V2_ONLY),
};

static long container_ioctl(struct p2p_file *file, unsigned long cmd, void *arg)
{
	struct vfio_container *c = p2p_file_priv(file);
	const struct vfio_container_ioctl_op *op = NULL;
	unsigned int nr = VFIO_IOCTL_NR(cmd);
	union vfio_container_ucmd buf;
	unsigned long type;
	int ret;

	if (_IOC_NR(cmd) >= VFIO_BASE && nr < ARRAY_SIZE(vfio_container_ioctls) &&
	    vfio_container_ioctls[nr].cmd == cmd)
		op = &vfio_container_ioctls[nr];
	if (op && !(op->flags & T1_NEEDS_IOMMU))
		return op->fn(c, arg, NULL);
	pthread_mutex_lock(&c->lock);
	type = c->type;
	pthread_mutex_unlock(&c->lock);
	if (!type)
		return -EINVAL; /* no IOMMU driver set: nothing else answers */
	if (!op)
		return -ENOTTY;
	if ((op->flags & T1_V2_ONLY) && type != VFIO_TYPE1v2_IOMMU)
		return -EACCES;
	_Static_assert(sizeof(struct vfio_iommu_type1_dma_unmap) <= sizeof(buf) &&
			       sizeof(struct vfio_iommu_type1_dirty_bitmap) <= sizeof(buf),
		       "union vfio_container_ucmd too small");
	ret = vfio_ucmd_in(arg, &buf, sizeof(buf), op->minsz);
	if (ret)
		return ret;
	return op->fn(c, arg, &buf);
}

static void container_release(struct p2p_file *file)
{
	struct vfio_container *c = p2p_file_priv(file);

	if (c->type)
		t1_release_locked(c); /* no group left: nothing else holds it */
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static const struct p2p_file_ops vfio_container_fops = {
	.name = "vfio-container",
	.ioctl = container_ioctl,
	.release = container_release,
};

P2P_API int p2p_vfio_container_open_fd(int flags)
{
	struct vfio_container *c = calloc(1, sizeof(*c));
	struct p2p_file *f;
	int ret;

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	ret = p2p_file_create(&vfio_container_fops, c, "vfio", flags & ~O_CLOEXEC, &f);
	if (ret) {
		pthread_mutex_destroy(&c->lock);
		free(c);
		return ret;
	}
	c->file = f;
	return vfio_file_install_new(f, flags);
}

/* ---------------------------------------------------------------------- */
/* For groups (group.c), vfio_lock held                                    */

/* The container behind @fd, with a reference on its *@file; NULL if not one. */
struct vfio_container *vfio_container_from_fd(int fd, struct p2p_file **file)
{
	if (p2p_file_from_fd(fd, &vfio_container_fops, file))
		return NULL;
	return p2p_file_priv(*file);
}

/* VFIO_GROUP_SET_CONTAINER: one group more. */
void vfio_container_attach_group(struct vfio_container *c)
{
	pthread_mutex_lock(&c->lock);
	c->ngroups++;
	pthread_mutex_unlock(&c->lock);
}

/* vfio_group_detach_container(), the container's side.  Returns the container file to put. */
struct p2p_file *vfio_container_detach_group(struct vfio_container *c)
{
	pthread_mutex_lock(&c->lock);
	if (!--c->ngroups && c->type)
		t1_release_locked(c); /* deprivileged: back to the unset state */
	pthread_mutex_unlock(&c->lock);
	return c->file;
}

/* The container's IOAS with a reference, or NULL before VFIO_SET_IOMMU. */
struct p2p_ioas *vfio_container_ioas_get(struct vfio_container *c)
{
	struct p2p_ioas *ioas = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->ioas)
		ioas = p2p_ioas_ref(c->ioas);
	pthread_mutex_unlock(&c->lock);
	return ioas;
}
