// SPDX-License-Identifier: MIT
/*
 * The VFIO dma-buf exporter: VFIO_DEVICE_FEATURE_DMA_BUF (kernel-semantics
 * 1.3-1.6), features DMA_BUF_REVOKE and DMA_BUF_MEMATTR (3.4), the
 * internal dma-bufs behind BAR mmaps (3.1) and the revoke/un-revoke walk
 * over a function's dma-bufs (1.6, 1.7).
 *
 * Locking: vc->memory_lock (write) protects vc->dmabufs and each
 * priv->pdev back-pointer; status changes happen under memory_lock write
 * and resv (p2p_dmabuf_revoke takes resv).  The release of a listed buffer
 * takes memory_lock to unlink it, so a walk under memory_lock needs no
 * references to keep the buffers alive.  The order is docs/locking.md's.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>

#include "vfio_priv.h"

struct vfio_dmabuf {
	struct list_head node;	     /* vc->dmabufs, under memory_lock */
	struct p2p_pci_dev *pdev;    /* NULL once cleaned up by device close */
	struct p2p_vfio_device *file; /* BAR mmap dma-bufs hold the device file */
	struct p2p_dmabuf *buf;
	int bar;
	atomic_uint memattr;
};

static const struct p2p_dmabuf_ops vfio_dmabuf_ops;

/*
 * vfio_pci_dma_buf_move(): revoke (TEMP) or un-revoke every live dma-buf of
 * @dev.  memory_lock held for write.  No reference is needed: a buffer on
 * the list can't be freed meanwhile, because its release must take
 * memory_lock to unlink itself.  Buffers whose last reference is gone
 * (their release is waiting for us) are skipped, as the kernel does.
 */
int vfio_dmabufs_move(struct p2p_pci_dev *dev, bool revoke)
{
	struct dmabuf_revoke_batch batch;
	struct vfio_dmabuf *p;
	int ret = 0, err;

	/* Importers' fences are waited for once, together (exporter.h). */
	dmabuf_revoke_batch_begin(&batch);
	list_for_each_entry(p, &vfio_pci_core(dev)->dmabufs, node) {
		if (dmabuf_dying(p->buf))
			continue;
		if (revoke)
			err = p2p_dmabuf_revoke(p->buf, P2P_DMABUF_TEMP_REVOKED);
		else
			err = p2p_dmabuf_unrevoke(p->buf);
		if (err && err != -EBADFD && !ret) /* EBADFD: revoked for good, stays so */
			ret = err;
	}
	dmabuf_revoke_batch_end(&batch);
	return ret;
}

/*
 * pci_driver.backend_changed (vfio_main.c): apply the function's backend
 * state as it is now (pci.h), under memory_lock for write: REVOKED
 * revokes every dma-buf for now (vfio_memory_enabled_locked() keeps them
 * so until OK), GONE for good, OK un-revokes them if memory decoding is on.
 */
int vfio_backend_changed(struct p2p_pci_dev *dev)
{
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	struct dmabuf_revoke_batch batch;
	struct vfio_dmabuf *p;
	int ret = 0, err;

	pthread_rwlock_wrlock(&vc->memory_lock);
	switch (pci_backend_state(dev)) {
	case P2P_PCI_BACKEND_GONE:
		dmabuf_revoke_batch_begin(&batch);
		list_for_each_entry(p, &vc->dmabufs, node) {
			if (dmabuf_dying(p->buf))
				continue;
			err = p2p_dmabuf_revoke(p->buf, P2P_DMABUF_PERM_REVOKED);
			if (err && err != -EBADFD && !ret)
				ret = err;
		}
		dmabuf_revoke_batch_end(&batch);
		break;
	case P2P_PCI_BACKEND_REVOKED:
		ret = vfio_dmabufs_move(dev, true);
		break;
	default:
		if (vfio_memory_enabled_locked(dev))
			ret = vfio_dmabufs_move(dev, false);
		break;
	}
	pthread_rwlock_unlock(&vc->memory_lock);
	return ret;
}

/*
 * close_device: revoke for good and unlink.  memory_lock held for write.
 * The reference taken here may be the last when it is dropped: that is
 * safe under memory_lock, because the buffer is unlinked (its release
 * then takes no lock) and it holds no device file (a BAR mmap buffer's
 * file reference would have kept the device open, so none is listed).
 */
void vfio_dmabufs_cleanup(struct p2p_pci_dev *dev)
{
	struct dmabuf_revoke_batch batch;
	struct vfio_dmabuf *p, *n;
	int err;

	dmabuf_revoke_batch_begin(&batch);
	list_for_each_entry_safe(p, n, &vfio_pci_core(dev)->dmabufs, node) {
		/*
		 * Its release unlinks it.  Its importers drained their DMA
		 * before dropping their references, and a failed tryget is an
		 * acquire (kref_get_unless_zero()), so that DMA still happens
		 * before this close returns.
		 */
		if (!dmabuf_tryget(p->buf))
			continue;
		/*
		 * In this process only: fork children keep their own copies
		 * of the device open, as processes sharing a kernel device fd
		 * do (src/core/tree.c).
		 */
		err = dmabuf_revoke_local(p->buf, P2P_DMABUF_PERM_REVOKED);
		if (err && err != -EBADFD)
			pr_err("close of %s: a CPU mapping of %s could not be revoked", dev->name,
			       p2p_dmabuf_name(p->buf));
		list_del_init(&p->node);
		p->pdev = NULL;
		p2p_pci_dev_put(dev); /* the registration reference */
		p2p_dmabuf_put(p->buf);
	}
	dmabuf_revoke_batch_end(&batch);
}

static int vfio_attach(struct p2p_dmabuf *buf, struct p2p_attachment *a)
{
	if (!p2p_attachment_is_peer2peer(a))
		return -EOPNOTSUPP;
	if (p2p_dmabuf_status(buf) != P2P_DMABUF_OK)
		return -ENODEV;
	if (!p2p_attachment_is_revocable(a))
		return -EOPNOTSUPP;
	return 0;
}

static int vfio_map(struct p2p_attachment *a, struct p2p_sgt **out)
{
	struct p2p_dmabuf *buf = p2p_attachment_dmabuf(a);
	const struct p2p_phys_range *r;
	struct p2p_sgt *sgt;
	unsigned int nr;

	if (p2p_dmabuf_status(buf) != P2P_DMABUF_OK)
		return -ENODEV;
	r = p2p_dmabuf_ranges(buf, &nr);
	sgt = malloc(sizeof(*sgt) + nr * sizeof(sgt->ents[0]));
	if (!sgt)
		return -ENOMEM;
	sgt->nents = nr;
	memcpy(sgt->ents, r, nr * sizeof(*r));
	*out = sgt;
	return 0;
}

static void vfio_unmap(struct p2p_attachment *a, struct p2p_sgt *sgt)
{
	(void)a;
	free(sgt);
}

static int vfio_pin(struct p2p_attachment *a)
{
	/* "Permit VFIO to work with pinned importers": fine while revocable. */
	return p2p_attachment_is_revocable(a) ? 0 : -EOPNOTSUPP;
}

static int vfio_mmap(struct p2p_dmabuf *buf, uint64_t offset, uint64_t length, int prot,
		     int flags)
{
	(void)offset;
	(void)length;
	(void)prot;
	if (p2p_dmabuf_status(buf) != P2P_DMABUF_OK)
		return -ENODEV;
	if (!(flags & MAP_SHARED))
		return -EINVAL;
	return 0;
}

static void vfio_release(struct p2p_dmabuf *buf)
{
	struct vfio_dmabuf *p = p2p_dmabuf_priv(buf);
	struct p2p_pci_dev *dev;

	/*
	 * pdev only goes from set to NULL under memory_lock; a cleanup that
	 * races with us skips this buffer (its refcount is zero), so pdev,
	 * read once here, stays valid: we hold its registration reference.
	 */
	dev = p->pdev;
	if (dev) {
		struct vfio_pci_core *vc = vfio_pci_core(dev);

		pthread_rwlock_wrlock(&vc->memory_lock);
		list_del_init(&p->node);
		p->pdev = NULL;
		pthread_rwlock_unlock(&vc->memory_lock);
		p2p_pci_dev_put(dev);
	}
	if (p->file)
		vfio_device_file_put(p->file);
	free(p);
}

static int vfio_iommufd_map(struct p2p_attachment *attach, struct p2p_phys_range *out);

static const struct p2p_dmabuf_ops vfio_dmabuf_ops = {
	.attach = vfio_attach,
	.map = vfio_map,
	.unmap = vfio_unmap,
	.pin = vfio_pin,
	.mmap = vfio_mmap,
	.release = vfio_release,
	.iommufd_map = vfio_iommufd_map,
};

/* Export ranges of @bar of @vdev's function and link the buffer to it. */
static int vfio_export(struct p2p_vfio_device *vdev, int bar,
		       const struct vfio_region_dma_range *ranges, uint32_t nr, bool hold_file,
		       int open_flags, struct p2p_dmabuf **out)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	struct p2p_phys_range *pr;
	struct vfio_dmabuf *p;
	struct p2p_dmabuf_export_info info = { .argsz = sizeof(info) };
	char name[64];
	int ret;

	pr = calloc(nr, sizeof(*pr));
	p = calloc(1, sizeof(*p));
	if (!pr || !p) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < nr; i++)
		pr[i] = (struct p2p_phys_range){ .mem = dev->bar_mem[bar],
						 .offset = ranges[i].offset,
						 .length = ranges[i].length };
	snprintf(name, sizeof(name), "%s/bar%d", dev->name, bar);
	list_init(&p->node);
	p->bar = bar;
	info.name = name;
	info.ops = &vfio_dmabuf_ops;
	info.priv = p;
	info.nr_ranges = nr;
	info.ranges = pr;
	info.flags = P2P_EXPORT_OPEN_FLAGS; /* exp_info.flags = open_flags */
	info.open_flags = (uint32_t)open_flags;

	pthread_rwlock_wrlock(&vc->memory_lock);
	if (!vfio_memory_enabled_locked(dev))
		info.flags |= P2P_EXPORT_REVOKED;
	ret = p2p_dmabuf_export(&info, out);
	if (!ret) {
		p->buf = *out;
		p->pdev = dev;
		pci_dev_get(dev);
		if (hold_file) {
			kref_get(&vdev->ref);
			p->file = vdev;
		}
		list_add_tail(&p->node, &vc->dmabufs);
		p = NULL;
	}
	pthread_rwlock_unlock(&vc->memory_lock);
out:
	free(p);
	free(pr);
	return ret;
}

int vfio_bar_dmabuf_create(struct p2p_vfio_device *vdev, int bar, uint64_t off, uint64_t len,
			   struct p2p_dmabuf **out)
{
	struct vfio_region_dma_range r = { .offset = off, .length = len };

	return vfio_export(vdev, bar, &r, 1, true, O_RDWR, out);
}

/* The kernel's KMALLOC_MAX_SIZE with 4 KiB pages (order-10 allocations, 4 MiB). */
#define VFIO_KMALLOC_MAX_SIZE (4ull << 20)

int vfio_check_feature(uint32_t flags, uint32_t argsz, uint32_t supported, uint32_t minsz)
{
	uint32_t dir = flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);

	if (dir & ~supported)
		return -EINVAL;
	if (flags & VFIO_DEVICE_FEATURE_PROBE)
		return 0;
	if (!dir)
		return -EINVAL;
	if (argsz < sizeof(struct vfio_device_feature) + minsz)
		return -EINVAL;
	return 1;
}

int vfio_feature_dma_buf(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
			 void *data)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_device_feature_dma_buf hdr;
	struct vfio_region_dma_range *ranges = NULL;
	struct p2p_dmabuf *buf;
	const struct p2p_pci_bar_desc *b;
	uint64_t total = 0;
	size_t bytes;
	int ret;

	if (dev->flags & P2P_PCI_NO_DMABUF)
		return -EOPNOTSUPP;
	ret = vfio_check_feature(flags, argsz, VFIO_DEVICE_FEATURE_GET, sizeof(hdr));
	if (ret != 1)
		return ret;
	if (copy_from_user(&hdr, data, sizeof(hdr)))
		return -EFAULT;
	if (!hdr.nr_ranges || hdr.flags)
		return -EINVAL;
	if (hdr.region_index >= VFIO_PCI_ROM_REGION_INDEX || !dev->bars[hdr.region_index].size)
		return -ENODEV;
	/*
	 * memdup_array_user(): EOVERFLOW if the size wraps, then a kmalloc()
	 * that cannot exceed KMALLOC_MAX_SIZE (ENOMEM), so the caller's
	 * nr_ranges never sizes more than that (0xffffffff would be 64 GiB).
	 */
	if (__builtin_mul_overflow((size_t)hdr.nr_ranges, sizeof(*ranges), &bytes))
		return -EOVERFLOW;
	if (bytes > VFIO_KMALLOC_MAX_SIZE)
		return -ENOMEM;
	ranges = malloc(bytes);
	if (!ranges)
		return -ENOMEM;
	if (copy_from_user(ranges, (uint8_t *)data + sizeof(hdr), bytes)) {
		ret = -EFAULT;
		goto out;
	}
	ret = -EINVAL;
	for (uint32_t i = 0; i < hdr.nr_ranges; i++) {
		if (!ranges[i].length || !IS_ALIGNED(ranges[i].offset, P2P_PAGE_SIZE) ||
		    !IS_ALIGNED(ranges[i].length, P2P_PAGE_SIZE))
			goto out;
		if (__builtin_add_overflow(total, ranges[i].length, &total))
			goto out;
	}
	if (total >> 63)
		goto out;
	b = &dev->bars[hdr.region_index];
	if (b->flags & (P2P_BAR_IO | P2P_BAR_TRAP))
		goto out; /* no P2P provider */
	for (uint32_t i = 0; i < hdr.nr_ranges; i++) {
		uint64_t end;

		if (__builtin_add_overflow(dev->bar_bus[hdr.region_index], ranges[i].offset,
					   &end) ||
		    __builtin_add_overflow(end, ranges[i].length, &end)) {
			ret = -EOVERFLOW;
			goto out;
		}
		if (ranges[i].offset + ranges[i].length > b->size)
			goto out;
	}
	if (!kref_get_unless_zero(&dev->ref)) {
		ret = -ENODEV;
		goto out;
	}
	ret = vfio_export(vdev, (int)hdr.region_index, ranges, hdr.nr_ranges, false,
			  (int)hdr.open_flags, &buf);
	p2p_pci_dev_put(dev);
	if (ret)
		goto out;
	ret = p2p_dmabuf_fd_install(buf, (int)hdr.open_flags);
	p2p_dmabuf_put(buf);
out:
	free(ranges);
	return ret;
}

/* Common fd checks of features 13 and 14; memory_lock held on success. */
static int vfio_feature_lookup(struct p2p_vfio_device *vdev, int fd, struct p2p_dmabuf **out)
{
	struct p2p_pci_dev *dev = vdev->pdev;
	struct vfio_pci_core *vc = vfio_pci_core(dev);
	struct vfio_dmabuf *p;
	struct p2p_dmabuf *buf;
	int ret = p2p_dmabuf_get(fd, &buf);

	if (ret)
		return ret;
	if (p2p_dmabuf_ops(buf) != &vfio_dmabuf_ops) {
		p2p_dmabuf_put(buf);
		return -ENODEV;
	}
	p = p2p_dmabuf_priv(buf);
	pthread_rwlock_wrlock(&vc->memory_lock);
	if (p->pdev != dev) {
		pthread_rwlock_unlock(&vc->memory_lock);
		p2p_dmabuf_put(buf);
		return -ENODEV;
	}
	*out = buf;
	return 0;
}

/*
 * Features 13 and 14 (SET, a payload starting with a dma-buf fd): the
 * feature check, the copy and the fd checks.  On success memory_lock is
 * held for write and *@out has a reference.
 */
static int vfio_feature_fd_payload(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
				   void *data, void *arg, size_t size, struct p2p_dmabuf **out)
{
	int ret = vfio_check_feature(flags, argsz, VFIO_DEVICE_FEATURE_SET, (uint32_t)size);

	if (ret != 1)
		return ret ? ret : 1; /* PROBE: nothing to do */
	if (copy_from_user(arg, data, size))
		return -EFAULT;
	return vfio_feature_lookup(vdev, *(int32_t *)arg, out);
}

int vfio_feature_dma_buf_revoke(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
				void *data)
{
	struct vfio_device_feature_dma_buf_revoke arg;
	struct p2p_dmabuf *buf;
	int ret;

	ret = vfio_feature_fd_payload(vdev, flags, argsz, data, &arg, sizeof(arg), &buf);
	if (ret)
		return ret > 0 ? 0 : ret;
	ret = p2p_dmabuf_revoke(buf, P2P_DMABUF_PERM_REVOKED);
	pthread_rwlock_unlock(&vfio_pci_core(vdev->pdev)->memory_lock);
	p2p_dmabuf_put(buf);
	return ret;
}

int vfio_feature_dma_buf_memattr(struct p2p_vfio_device *vdev, uint32_t flags, uint32_t argsz,
				 void *data)
{
	struct vfio_device_feature_dma_buf_memattr arg;
	struct p2p_dmabuf *buf;
	struct vfio_dmabuf *p;
	int ret;

	ret = vfio_feature_fd_payload(vdev, flags, argsz, data, &arg, sizeof(arg), &buf);
	if (ret)
		return ret > 0 ? 0 : ret;
	p = p2p_dmabuf_priv(buf);
	if (arg.memattr > VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC)
		ret = -ENOENT;
	else
		atomic_store(&p->memattr, arg.memattr);
	pthread_rwlock_unlock(&vfio_pci_core(vdev->pdev)->memory_lock);
	p2p_dmabuf_put(buf);
	return ret;
}

P2P_API int p2p_vfio_dmabuf_memattr(struct p2p_dmabuf *buf)
{
	if (p2p_dmabuf_ops(buf) != &vfio_dmabuf_ops)
		return -EINVAL;
	return (int)atomic_load(&((struct vfio_dmabuf *)p2p_dmabuf_priv(buf))->memattr);
}

/* The iommufd_map op: vfio_pci_dma_buf_iommufd_map() (kernel-semantics 1.5); resv held. */
static int vfio_iommufd_map(struct p2p_attachment *attach, struct p2p_phys_range *out)
{
	struct p2p_dmabuf *buf = p2p_attachment_dmabuf(attach);
	const struct p2p_phys_range *r;
	unsigned int nr;

	if (p2p_dmabuf_status(buf) != P2P_DMABUF_OK)
		return -ENODEV;
	r = p2p_dmabuf_ranges(buf, &nr);
	if (nr != 1)
		return -EOPNOTSUPP;
	*out = r[0];
	return 0;
}

P2P_API int p2p_vfio_dmabuf_iommufd_map(struct p2p_attachment *attach,
					struct p2p_phys_range *out)
{
	if (p2p_dmabuf_ops(p2p_attachment_dmabuf(attach)) != &vfio_dmabuf_ops)
		return -EOPNOTSUPP;
	return vfio_iommufd_map(attach, out);
}
