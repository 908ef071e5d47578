// SPDX-License-Identifier: MIT
/*
 * VFIO's ways in, as Linux 6.19 (drivers/vfio/group.c, container.c,
 * vfio_iommu_type1.c, device_cdev.c):
 *
 *   registry   - the functions VFIO users can see (p2p_vfio_register()):
 *		  each has its IOMMU group and a cdev index.
 *   container  - /dev/vfio/vfio: VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION,
 *		  VFIO_SET_IOMMU, then the type1 ioctls.
 *   group      - /dev/vfio/N: status, SET/UNSET_CONTAINER, GET_DEVICE_FD.
 *   cdev       - /dev/vfio/devices/vfioN: a device file that does nothing
 *		  but VFIO_DEVICE_BIND_IOMMUFD until bound (src/vfio/vfio.c).
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
 * Locking: vfio_lock (registry, groups, container membership), then
 * container->lock (type1 state), then the device and IOAS locks.  File
 * releases run with no lock held.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include "../pci/pci.h"

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

struct vfio_reg {
	struct list_head node;
	struct p2p_pci_dev *pdev; /* a reference */
	unsigned int index;	  /* /dev/vfio/devices/vfio<index> */
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

struct vfio_group {
	struct list_head node;
	uint32_t id;
	struct p2p_file *file; /* while open */
	struct vfio_container *container;
	unsigned int container_users; /* 1 + devices opened through the group */
	unsigned int cdev_bound;      /* functions of the group bound through their cdev */
};

static pthread_mutex_t vfio_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head regs = { &regs, &regs };
static struct list_head groups = { &groups, &groups };

static const struct p2p_file_ops vfio_container_fops;
static const struct p2p_file_ops vfio_group_fops;

/* ---------------------------------------------------------------------- */
/* Registry                                                                */

static struct vfio_reg *reg_find_locked(const struct p2p_pci_dev *pdev)
{
	struct vfio_reg *r;

	list_for_each_entry(r, &regs, node)
		if (r->pdev == pdev)
			return r;
	return NULL;
}

P2P_API int p2p_vfio_register(struct p2p_pci_dev *pdev, unsigned int *cdev_index)
{
	struct vfio_reg *r, *it;
	unsigned int index = 0;
	int ret = 0;

	if (!pdev)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_lock(&vfio_lock);
	if (reg_find_locked(pdev)) {
		ret = -EEXIST;
		goto out;
	}
	if (!kref_get_unless_zero(&pdev->ref)) {
		ret = -ENODEV;
		goto out;
	}
	/* The lowest free index (an ida); the list stays in registration order. */
	for (bool busy = true; busy; index += busy) {
		busy = false;
		list_for_each_entry(it, &regs, node)
			busy |= it->index == index;
	}
	r->pdev = pdev;
	r->index = index;
	list_add_tail(&r->node, &regs);
	if (cdev_index)
		*cdev_index = index;
	r = NULL;
out:
	pthread_mutex_unlock(&vfio_lock);
	free(r);
	return ret;
}

P2P_API void p2p_vfio_unregister(struct p2p_pci_dev *pdev)
{
	struct vfio_reg *r;

	pthread_mutex_lock(&vfio_lock);
	r = reg_find_locked(pdev);
	if (r)
		list_del_init(&r->node);
	pthread_mutex_unlock(&vfio_lock);
	if (r) {
		/* Ask a user holding the function to release it (REQ trigger). */
		pci_irq_request(r->pdev);
		p2p_pci_dev_put(r->pdev);
		free(r);
	}
}

P2P_API unsigned int p2p_vfio_registered(struct p2p_pci_dev **out, unsigned int max)
{
	struct vfio_reg *r;
	unsigned int n = 0;

	pthread_mutex_lock(&vfio_lock);
	list_for_each_entry(r, &regs, node) {
		if (out && n < max) {
			pci_dev_get(r->pdev);
			out[n] = r->pdev;
		}
		n++;
	}
	pthread_mutex_unlock(&vfio_lock);
	return n;
}

P2P_API int p2p_vfio_cdev_index(struct p2p_pci_dev *pdev)
{
	struct vfio_reg *r;
	int ret;

	pthread_mutex_lock(&vfio_lock);
	r = reg_find_locked(pdev);
	ret = r ? (int)r->index : -ENODEV;
	pthread_mutex_unlock(&vfio_lock);
	return ret;
}

P2P_API unsigned int p2p_pci_dev_group(struct p2p_pci_dev *pdev)
{
	return pdev->group;
}

P2P_API int p2p_pci_dev_config_read(struct p2p_pci_dev *pdev, unsigned int off, void *buf,
				    size_t len)
{
	uint8_t *b = buf;

	if (off > P2P_PCI_CFG_SIZE || len > P2P_PCI_CFG_SIZE - off)
		return -EINVAL;
	pthread_mutex_lock(&pdev->open_lock);
	/* Closed: what the function shows after reset (open_device resets it too). */
	pthread_rwlock_wrlock(&pdev->memory_lock);
	if (!pdev->open_count)
		pci_config_reset(pdev);
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)pci_config_get(pdev, off + (unsigned int)i, 1);
	pthread_rwlock_unlock(&pdev->memory_lock);
	pthread_mutex_unlock(&pdev->open_lock);
	return 0;
}

P2P_API int p2p_pci_dev_bar_info(struct p2p_pci_dev *pdev, int bar, uint64_t *bus_addr,
				 uint64_t *size, uint32_t *flags)
{
	if (bar < 0 || bar > 5)
		return -EINVAL;
	if (bus_addr)
		*bus_addr = pdev->bars[bar].size ? pdev->bar_bus[bar] : 0;
	if (size)
		*size = pdev->bars[bar].size;
	if (flags)
		*flags = pdev->bars[bar].flags;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Groups: state kept while open or while a member is bound via its cdev    */

static bool group_exists_locked(uint32_t id)
{
	struct vfio_reg *r;

	list_for_each_entry(r, &regs, node)
		if (r->pdev->group == id)
			return true;
	return false;
}

static struct vfio_group *group_find_locked(uint32_t id, bool create)
{
	struct vfio_group *g;

	list_for_each_entry(g, &groups, node)
		if (g->id == id)
			return g;
	if (!create)
		return NULL;
	g = calloc(1, sizeof(*g));
	if (g) {
		g->id = id;
		list_add_tail(&g->node, &groups);
	}
	return g;
}

static void group_maybe_free_locked(struct vfio_group *g)
{
	if (!g->file && !g->cdev_bound) {
		list_del_init(&g->node);
		free(g);
	}
}

/* vfio_device_block_group(): a cdev bind keeps the group from opening, and back. */
int vfio_group_block(uint32_t group)
{
	struct vfio_group *g;
	int ret = 0;

	pthread_mutex_lock(&vfio_lock);
	g = group_find_locked(group, true);
	if (!g)
		ret = -ENOMEM;
	else if (g->file)
		ret = -EBUSY;
	else
		g->cdev_bound++;
	pthread_mutex_unlock(&vfio_lock);
	return ret;
}

void vfio_group_unblock(uint32_t group)
{
	struct vfio_group *g;

	pthread_mutex_lock(&vfio_lock);
	g = group_find_locked(group, false);
	if (g && g->cdev_bound) {
		g->cdev_bound--;
		group_maybe_free_locked(g);
	}
	pthread_mutex_unlock(&vfio_lock);
}

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

static long t1_get_info(struct vfio_container *c, void *arg)
{
	const size_t minsz = offsetof(struct vfio_iommu_type1_info, iova_pgsizes) + sizeof(uint64_t);
	uint8_t caps[256];
	size_t capsz = 0;
	struct vfio_iommu_type1_info info;
	struct vfio_iommu_type1_info_cap_migration *mig;
	struct vfio_iommu_type1_info_dma_avail *avail;
	struct vfio_iommu_type1_info_cap_iova_range *iova;
	size_t outsz;

	memset(&info, 0, sizeof(info));
	if (copy_from_user(&info, arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;
	outsz = MIN((size_t)info.argsz, sizeof(info));
	info.flags = VFIO_IOMMU_INFO_PGSIZES;
	info.iova_pgsizes = T1_PGSIZES;
	info.cap_offset = 0;

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

	info.flags |= VFIO_IOMMU_INFO_CAPS;
	if (info.argsz < sizeof(info) + capsz) {
		info.argsz = (uint32_t)(sizeof(info) + capsz);
	} else {
		/* vfio_info_cap_shift() */
		for (struct vfio_info_cap_header *t = (void *)caps; t->next;
		     t = (void *)(caps + t->next - sizeof(info)))
			t->next += sizeof(info);
		if (copy_to_user((uint8_t *)arg + sizeof(info), caps, capsz))
			return -EFAULT;
		info.cap_offset = sizeof(info);
	}
	return copy_to_user(arg, &info, outsz);
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

static long t1_map_dma(struct vfio_container *c, void *arg)
{
	const size_t minsz = offsetof(struct vfio_iommu_type1_dma_map, size) + sizeof(uint64_t);
	const uint32_t mask = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE |
			      VFIO_DMA_MAP_FLAG_VADDR;
	struct vfio_iommu_type1_dma_map map;
	uint64_t iova_end, vaddr_end;
	uint32_t prot = 0;
	bool set_vaddr;
	long ret;

	if (copy_from_user(&map, arg, minsz))
		return -EFAULT;
	if (map.argsz < minsz || (map.flags & ~mask))
		return -EINVAL;
	/* vfio_dma_do_map() */
	if (!map.size)
		return -EINVAL;
	if (__builtin_add_overflow(map.iova, map.size - 1, &iova_end) ||
	    __builtin_add_overflow(map.vaddr, map.size - 1, &vaddr_end))
		return -EOVERFLOW;
	if (map.flags & VFIO_DMA_MAP_FLAG_WRITE)
		prot |= P2P_IOAS_MAP_WRITEABLE;
	if (map.flags & VFIO_DMA_MAP_FLAG_READ)
		prot |= P2P_IOAS_MAP_READABLE;
	set_vaddr = map.flags & VFIO_DMA_MAP_FLAG_VADDR;
	if ((prot && set_vaddr) || (!prot && !set_vaddr))
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	if ((map.size | map.iova | map.vaddr) & (T1_PGSIZE - 1))
		ret = -EINVAL;
	else if (set_vaddr)
		ret = -EBUSY; /* no VFIO_UPDATE_VADDR with emulated devices */
	else if (t1_find(c, map.iova, map.size))
		ret = -EEXIST;
	else if (!t1_iova_valid(map.iova, iova_end))
		ret = -EINVAL;
	else if (!c->dma_avail)
		ret = -ENOSPC;
	else
		ret = p2p_ioas_map_dma(c->ioas, (void *)(uintptr_t)map.vaddr, map.size, map.iova,
				       prot);
	if (ret == -ENODEV)
		ret = -EFAULT; /* a revoked BAR mapping: the pin faults */
	if (!ret) {
		ret = t1_dma_insert(c, map.iova, map.size, (uintptr_t)map.vaddr);
		if (ret)
			p2p_ioas_unmap(c->ioas, map.iova, map.size, NULL);
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
			   uint64_t *ubitmap, uint64_t bitmap_size)
{
	uint64_t npages = size / T1_PGSIZE;
	size_t bytes = DIRTY_BITMAP_BYTES(npages);
	uint64_t *bm;
	int ret;

	(void)bitmap_size;
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

static long t1_unmap_dma(struct vfio_container *c, void *arg)
{
	const size_t minsz = offsetof(struct vfio_iommu_type1_dma_unmap, size) + sizeof(uint64_t);
	const uint32_t mask = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR |
			      VFIO_DMA_UNMAP_FLAG_ALL;
	struct vfio_iommu_type1_dma_unmap unmap;
	struct vfio_bitmap bitmap = { 0 };
	bool all, dirty;
	uint64_t size, end, unmapped = 0;
	long ret = -EINVAL;

	if (copy_from_user(&unmap, arg, minsz))
		return -EFAULT;
	if (unmap.argsz < minsz || (unmap.flags & ~mask))
		return -EINVAL;
	dirty = unmap.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
	all = unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL;
	if (dirty && (unmap.flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)))
		return -EINVAL;
	if (dirty) {
		if (unmap.argsz < minsz + sizeof(bitmap))
			return -EINVAL;
		if (copy_from_user(&bitmap, (uint8_t *)arg + minsz, sizeof(bitmap)))
			return -EFAULT;
		if (!bitmap.pgsize || !bitmap.data)
			return -EINVAL;
		ret = verify_bitmap_size(unmap.size >> __builtin_ctzll(bitmap.pgsize), bitmap.size);
		if (ret)
			return ret;
		ret = -EINVAL;
	}

	pthread_mutex_lock(&c->lock);
	size = unmap.size;
	if (unmap.flags & VFIO_DMA_UNMAP_FLAG_VADDR) {
		ret = -EBUSY; /* cannot update vaddr with emulated devices */
		goto unlock;
	}
	if (unmap.iova & (T1_PGSIZE - 1))
		goto unlock;
	if (all) {
		if (unmap.iova || size)
			goto unlock;
		size = UINT64_MAX;
		end = UINT64_MAX;
	} else {
		if (!size || (size & (T1_PGSIZE - 1)))
			goto unlock;
		if (__builtin_add_overflow(unmap.iova, size - 1, &end)) {
			ret = -EOVERFLOW;
			goto unlock;
		}
	}
	if (dirty && (!c->dirty_tracking || bitmap.pgsize != T1_PGSIZE))
		goto unlock;
	if (c->type == VFIO_TYPE1v2_IOMMU && !all) {
		struct vfio_dma *d = t1_find(c, unmap.iova, 1);

		if (d && d->iova != unmap.iova)
			goto unlock; /* the range starts inside a mapping */
		d = t1_find(c, end, 0);
		if (d && d->iova + d->size - 1 != end)
			goto unlock; /* ... or ends inside one */
	}
	ret = 0;
	if (dirty)
		ret = t1_report_dirty(c, unmap.iova, size, (uint64_t *)(uintptr_t)bitmap.data,
				      bitmap.size);
	for (size_t i = 0; !ret && i < c->ndma;) {
		struct vfio_dma *d = &c->dma[i];

		if (d->iova + d->size - 1 < unmap.iova) {
			i++;
			continue;
		}
		if (d->iova > end)
			break;
		/* v1: a mapping starting below the range stops the unmap; one
		 * starting inside goes whole, even past the end. */
		if (c->type != VFIO_TYPE1v2_IOMMU && unmap.iova > d->iova)
			break;
		unmapped += d->size;
		t1_remove(c, i);
	}
unlock:
	pthread_mutex_unlock(&c->lock);
	unmap.size = unmapped;
	if (ret)
		return ret;
	return copy_to_user(arg, &unmap, minsz);
}

static long t1_dirty_pages(struct vfio_container *c, void *arg)
{
	const size_t minsz = offsetof(struct vfio_iommu_type1_dirty_bitmap, flags) +
			     sizeof(uint32_t);
	const uint32_t mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
			      VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	struct vfio_iommu_type1_dirty_bitmap dirty;
	struct vfio_iommu_type1_dirty_bitmap_get range;
	uint64_t end;
	long ret;

	if (c->type != VFIO_TYPE1v2_IOMMU)
		return -EACCES;
	if (copy_from_user(&dirty, arg, minsz))
		return -EFAULT;
	if (dirty.argsz < minsz || (dirty.flags & ~mask))
		return -EINVAL;
	/* exactly one flag */
	if (!dirty.flags || (dirty.flags & (dirty.flags - 1)))
		return -EINVAL;
	if (dirty.flags != VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) {
		pthread_mutex_lock(&c->lock);
		c->dirty_tracking = dirty.flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_START;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	if (dirty.argsz - minsz < sizeof(range))
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
					      (uint64_t *)(uintptr_t)range.bitmap.data,
					      range.bitmap.size);
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* The container file                                                      */

static long container_ioctl(struct p2p_file *file, unsigned long cmd, void *arg)
{
	struct vfio_container *c = p2p_file_priv(file);
	unsigned long type;

	switch (cmd) {
	case VFIO_GET_API_VERSION:
		return VFIO_API_VERSION;
	case VFIO_CHECK_EXTENSION:
		pthread_mutex_lock(&c->lock);
		type = c->type;
		pthread_mutex_unlock(&c->lock);
		return t1_check_extension(type ? c : NULL, (unsigned long)(uintptr_t)arg);
	case VFIO_SET_IOMMU:
		return container_set_iommu(c, (unsigned long)(uintptr_t)arg);
	default:
		break;
	}
	pthread_mutex_lock(&c->lock);
	type = c->type;
	pthread_mutex_unlock(&c->lock);
	if (!type)
		return -EINVAL; /* no IOMMU driver set */
	switch (cmd) {
	case VFIO_IOMMU_GET_INFO:
		return t1_get_info(c, arg);
	case VFIO_IOMMU_MAP_DMA:
		return t1_map_dma(c, arg);
	case VFIO_IOMMU_UNMAP_DMA:
		return t1_unmap_dma(c, arg);
	case VFIO_IOMMU_DIRTY_PAGES:
		return t1_dirty_pages(c, arg);
	default:
		return -ENOTTY;
	}
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

/* Return the fd, or -errno; the fd holds the file's only reference. */
static int install_new(struct p2p_file *f, int flags)
{
	int fd = p2p_file_install(f, flags & O_CLOEXEC);

	p2p_file_put(f); /* the creator's reference: the fd keeps its own */
	return fd;
}

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
	return install_new(f, flags);
}

/* ---------------------------------------------------------------------- */
/* The group file                                                          */

/* vfio_group_detach_container(); vfio_lock held.  Returns the container file to put. */
static struct p2p_file *group_detach_locked(struct vfio_group *g)
{
	struct vfio_container *c = g->container;

	pthread_mutex_lock(&c->lock);
	if (!--c->ngroups && c->type)
		t1_release_locked(c); /* deprivileged: back to the unset state */
	pthread_mutex_unlock(&c->lock);
	g->container = NULL;
	g->container_users = 0;
	return c->file;
}

static long group_set_container(struct vfio_group *g, void *arg)
{
	struct p2p_file *cf = NULL;
	struct vfio_container *c;
	struct p2p_iommufd *ictx;
	int fd, ret;

	if (copy_from_user(&fd, arg, sizeof(fd)))
		return -EFAULT;
	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	pthread_mutex_lock(&vfio_lock);
	if (g->container) {
		ret = -EINVAL;
		goto out;
	}
	if (!p2p_file_from_fd(fd, &vfio_container_fops, &cf)) {
		c = p2p_file_priv(cf);
		if (g->cdev_bound) {
			ret = -EBUSY; /* iommu_group_claim_dma_owner(): a cdev owns it */
			goto out;
		}
		pthread_mutex_lock(&c->lock);
		c->ngroups++;
		pthread_mutex_unlock(&c->lock);
		g->container = c;
		g->container_users = 1;
		cf = NULL; /* the group keeps the reference (vfio_container_get()) */
		ret = 0;
	} else if (!p2p_iommufd_from_fd(fd, &ictx)) {
		/* The iommufd compat IOAS for groups is not emulated: use the cdev. */
		p2p_iommufd_put(ictx);
		ret = -EBADFD;
	} else {
		ret = -EBADFD; /* the fd passed is not recognized */
	}
out:
	pthread_mutex_unlock(&vfio_lock);
	if (cf)
		p2p_file_put(cf);
	return ret;
}

static long group_unset_container(struct vfio_group *g)
{
	struct p2p_file *cf = NULL;
	int ret = 0;

	pthread_mutex_lock(&vfio_lock);
	if (!g->container)
		ret = -EINVAL;
	else if (g->container_users != 1)
		ret = -EBUSY;
	else
		cf = group_detach_locked(g);
	pthread_mutex_unlock(&vfio_lock);
	if (cf)
		p2p_file_put(cf);
	return ret;
}

static long group_get_status(struct vfio_group *g, void *arg)
{
	const size_t minsz = offsetof(struct vfio_group_status, flags) + sizeof(uint32_t);
	struct vfio_group_status status;

	if (copy_from_user(&status, arg, minsz))
		return -EFAULT;
	if (status.argsz < minsz)
		return -EINVAL;
	status.flags = 0;
	pthread_mutex_lock(&vfio_lock);
	if (g->container)
		status.flags |= VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
	else if (!g->cdev_bound)
		status.flags |= VFIO_GROUP_FLAGS_VIABLE;
	pthread_mutex_unlock(&vfio_lock);
	return copy_to_user(arg, &status, minsz);
}

/* strndup_user(arg, PAGE_SIZE) */
static int copy_name(const char *arg, char *buf, size_t max)
{
	for (size_t i = 0; i < max; i++) {
		if (copy_from_user(&buf[i], arg + i, 1))
			return -EFAULT;
		if (!buf[i])
			return 0;
	}
	return -EINVAL;
}

static long group_get_device_fd(struct vfio_group *g, void *arg)
{
	char name[4096];
	struct p2p_pci_dev *pdev = NULL;
	struct p2p_vfio_device *vdev;
	struct vfio_container *c;
	struct vfio_reg *r;
	struct p2p_ioas *ioas = NULL;
	int ret, fd;

	ret = copy_name(arg, name, sizeof(name));
	if (ret)
		return ret;
	pthread_mutex_lock(&vfio_lock);
	list_for_each_entry(r, &regs, node) {
		if (r->pdev->group == g->id && !strcmp(r->pdev->name, name)) {
			pdev = r->pdev;
			break;
		}
	}
	if (!pdev) {
		ret = -ENODEV;
		goto out_unlock;
	}
	c = g->container;
	if (c) {
		pthread_mutex_lock(&c->lock);
		if (c->ioas)
			ioas = p2p_ioas_ref(c->ioas);
		pthread_mutex_unlock(&c->lock);
	}
	/* No container, or VFIO_SET_IOMMU not done yet. */
	if (!ioas) {
		ret = -EINVAL;
		goto out_unlock;
	}
	ret = vfio_device_create(pdev, false, O_RDWR, &vdev);
	if (ret)
		goto out_unlock;
	vfio_device_open_device(vdev);
	/* The group is in the container's domain: its devices DMA through it. */
	ret = p2p_vfio_device_attach_ioas(vdev, ioas);
	if (ret) {
		pthread_mutex_unlock(&vfio_lock);
		p2p_file_put(vdev->file);
		p2p_ioas_put(ioas);
		return ret;
	}
	g->container_users++;
	vdev->group = g;
	p2p_file_get(g->file); /* Paired with the put in vfio_group_device_closed() */
	pthread_mutex_unlock(&vfio_lock);
	p2p_ioas_put(ioas);
	fd = install_new(vdev->file, O_CLOEXEC);
	return fd;

out_unlock:
	pthread_mutex_unlock(&vfio_lock);
	if (ioas)
		p2p_ioas_put(ioas);
	return ret;
}

/* A device opened through the group is closed (its last reference went). */
void vfio_group_device_closed(struct vfio_group *g)
{
	struct p2p_file *gf;

	pthread_mutex_lock(&vfio_lock);
	if (g->container_users > 1)
		g->container_users--;
	gf = g->file;
	pthread_mutex_unlock(&vfio_lock);
	p2p_file_put(gf);
}

static long group_ioctl(struct p2p_file *file, unsigned long cmd, void *arg)
{
	struct vfio_group *g = p2p_file_priv(file);

	switch (cmd) {
	case VFIO_GROUP_GET_DEVICE_FD:
		return group_get_device_fd(g, arg);
	case VFIO_GROUP_GET_STATUS:
		return group_get_status(g, arg);
	case VFIO_GROUP_SET_CONTAINER:
		return group_set_container(g, arg);
	case VFIO_GROUP_UNSET_CONTAINER:
		return group_unset_container(g);
	default:
		return -ENOTTY;
	}
}

/* Device fds hold a group file reference: no device of the group is open. */
static void group_release(struct p2p_file *file)
{
	struct vfio_group *g = p2p_file_priv(file);
	struct p2p_file *cf = NULL;

	pthread_mutex_lock(&vfio_lock);
	if (g->container)
		cf = group_detach_locked(g);
	g->file = NULL;
	group_maybe_free_locked(g);
	pthread_mutex_unlock(&vfio_lock);
	if (cf)
		p2p_file_put(cf);
}

static const struct p2p_file_ops vfio_group_fops = {
	.name = "vfio-group",
	.ioctl = group_ioctl,
	.release = group_release,
};

P2P_API int p2p_vfio_group_open_fd(unsigned int group, int flags)
{
	struct vfio_group *g;
	struct p2p_file *f;
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "%u", group);
	pthread_mutex_lock(&vfio_lock);
	if (!group_exists_locked(group)) {
		ret = -ENOENT;
		goto out;
	}
	g = group_find_locked(group, true);
	if (!g) {
		ret = -ENOMEM;
		goto out;
	}
	if (g->file || g->cdev_bound) {
		/* one open at a time; a bound cdev blocks the group */
		ret = -EBUSY;
		goto out;
	}
	ret = p2p_file_create(&vfio_group_fops, g, name, flags & ~O_CLOEXEC, &f);
	if (ret) {
		group_maybe_free_locked(g);
		goto out;
	}
	g->file = f;
	pthread_mutex_unlock(&vfio_lock);
	return install_new(f, flags);
out:
	pthread_mutex_unlock(&vfio_lock);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* The device cdev                                                         */

P2P_API int p2p_vfio_cdev_open_fd(unsigned int index, int flags)
{
	struct p2p_pci_dev *pdev = NULL;
	struct p2p_vfio_device *vdev;
	struct vfio_reg *r;
	int ret;

	pthread_mutex_lock(&vfio_lock);
	list_for_each_entry(r, &regs, node) {
		if (r->index == index) {
			pdev = r->pdev;
			pci_dev_get(pdev);
			break;
		}
	}
	pthread_mutex_unlock(&vfio_lock);
	if (!pdev)
		return -ENOENT;
	ret = vfio_device_create(pdev, true, flags & ~O_CLOEXEC, &vdev);
	p2p_pci_dev_put(pdev);
	if (ret)
		return ret;
	return install_new(vdev->file, flags);
}
