// SPDX-License-Identifier: MIT
/*
 * dma-buf core: export, references, the fd, attachments, maps, fences,
 * revoke and un-revoke (kernel-semantics 0.1-0.4, 1.6, 7.2-7.5).
 *
 * Lock order: see core.h.  In short: exporter outer locks, then resv, then
 * importer locks, then map_lock / cpu_lock.  The status is written under
 * resv (and by exporters under their own outer lock too); it is read
 * without locks where a stale value is harmless and re-checked under resv
 * or cpu_lock where it is not.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core.h"

static bool dmabuf_tryget(void *obj)
{
	return kref_get_unless_zero(&((struct p2p_dmabuf *)obj)->ref);
}

static void dmabuf_put_obj(void *obj)
{
	p2p_dmabuf_put(obj);
}

const struct fdtab_type dmabuf_fdtab_type = {
	.name = "dmabuf",
	.tryget = dmabuf_tryget,
	.put = dmabuf_put_obj,
};

P2P_API int p2p_dmabuf_export(const struct p2p_dmabuf_export_info *info, struct p2p_dmabuf **out)
{
	const size_t known = sizeof(*info);
	struct p2p_dmabuf *buf;
	uint64_t size = 0;
	char name[80];
	int ret;

	if (!info || info->argsz < known)
		return -EINVAL;
	if (info->argsz > known) {
		const uint8_t *tail = (const uint8_t *)info + known;

		for (size_t i = 0; i < info->argsz - known; i++)
			if (tail[i])
				return -E2BIG;
	}
	if (!info->ops || !info->ops->map || !info->ops->unmap || !info->ops->release)
		return -EINVAL;
	if (info->flags & ~P2P_EXPORT_REVOKED)
		return -EINVAL;
	if (!info->nr_ranges || !info->ranges)
		return -EINVAL;
	for (uint32_t i = 0; i < info->nr_ranges; i++) {
		const struct p2p_phys_range *r = &info->ranges[i];

		if (!r->mem || !r->length || !IS_ALIGNED(r->length, P2P_PAGE_SIZE) ||
		    !IS_ALIGNED(r->offset, P2P_PAGE_SIZE) || r->offset > r->mem->size ||
		    r->length > r->mem->size - r->offset)
			return -EINVAL;
		if (__builtin_add_overflow(size, r->length, &size) || (size >> 63))
			return -EINVAL;
	}

	buf = calloc(1, sizeof(*buf) + info->nr_ranges * sizeof(buf->ranges[0]));
	if (!buf)
		return -ENOMEM;
	kref_init(&buf->ref);
	buf->size = size;
	buf->ops = info->ops;
	buf->priv = info->priv;
	snprintf(buf->name, sizeof(buf->name), "%s", info->name ? info->name : "anon");
	pthread_mutex_init(&buf->resv, NULL);
	list_init(&buf->attachments);
	atomic_init(&buf->status,
		    (info->flags & P2P_EXPORT_REVOKED) ? P2P_DMABUF_TEMP_REVOKED : P2P_DMABUF_OK);
	pthread_mutex_init(&buf->map_lock, NULL);
	pthread_cond_init(&buf->map_cond, NULL);
	pthread_mutex_init(&buf->cpu_lock, NULL);
	list_init(&buf->cpu_maps);
	tree_buf_init(buf);
	buf->nr_ranges = info->nr_ranges;
	for (uint32_t i = 0; i < info->nr_ranges; i++) {
		buf->ranges[i] = info->ranges[i];
		p2p_mem_get(buf->ranges[i].mem);
	}

	snprintf(name, sizeof(name), "dmabuf:%s", buf->name);
	buf->token_fd = token_fd_create(name);
	if (buf->token_fd < 0) {
		ret = buf->token_fd;
		goto err_ranges;
	}
	ret = fdtab_register(buf->token_fd, &dmabuf_fdtab_type, buf);
	if (ret)
		goto err_token;
	*out = buf;
	return 0;

err_token:
	close(buf->token_fd);
err_ranges:
	tree_buf_release(buf);
	for (uint32_t i = 0; i < buf->nr_ranges; i++)
		p2p_mem_put(buf->ranges[i].mem);
	free(buf);
	return ret;
}

P2P_API int p2p_dmabuf_get(int fd, struct p2p_dmabuf **out)
{
	void *obj;
	int ret = fdtab_lookup(fd, &dmabuf_fdtab_type, &obj);

	if (!ret)
		*out = obj;
	return ret;
}

P2P_API struct p2p_dmabuf *p2p_dmabuf_ref(struct p2p_dmabuf *buf)
{
	kref_get(&buf->ref);
	return buf;
}

P2P_API void p2p_dmabuf_put(struct p2p_dmabuf *buf)
{
	if (!buf || !kref_put(&buf->ref))
		return;
	fdtab_unregister(buf->token_fd, buf);
	/* Exporters may revoke until their release unlinks the buffer. */
	buf->ops->release(buf);
	tree_buf_release(buf);
	for (unsigned int i = 0; i < buf->nr_fences; i++)
		p2p_fence_put(buf->fences[i]);
	free(buf->fences);
	for (unsigned int i = 0; i < buf->nr_ranges; i++)
		p2p_mem_put(buf->ranges[i].mem);
	close(buf->token_fd);
	pthread_mutex_destroy(&buf->resv);
	pthread_mutex_destroy(&buf->map_lock);
	pthread_cond_destroy(&buf->map_cond);
	pthread_mutex_destroy(&buf->cpu_lock);
	free(buf);
}

P2P_API int p2p_dmabuf_fd_install(struct p2p_dmabuf *buf, int flags)
{
	int fd;

	flags &= O_CLOEXEC | O_ACCMODE; /* open_flags are not validated (1.1) */
	p2p_dmabuf_ref(buf);
	fd = fdtab_install(buf->token_fd, &dmabuf_fdtab_type, buf, flags);
	if (fd < 0)
		p2p_dmabuf_put(buf);
	return fd;
}

P2P_API uint64_t p2p_dmabuf_size(const struct p2p_dmabuf *buf)
{
	return buf->size;
}

P2P_API const char *p2p_dmabuf_name(const struct p2p_dmabuf *buf)
{
	return buf->name;
}

P2P_API void *p2p_dmabuf_priv(const struct p2p_dmabuf *buf)
{
	return buf->priv;
}

P2P_API const struct p2p_dmabuf_ops *p2p_dmabuf_ops(const struct p2p_dmabuf *buf)
{
	return buf->ops;
}

P2P_API const struct p2p_phys_range *p2p_dmabuf_ranges(const struct p2p_dmabuf *buf,
						       unsigned int *nr)
{
	*nr = buf->nr_ranges;
	return buf->ranges;
}

unsigned int dmabuf_find_range(const struct p2p_dmabuf *buf, uint64_t off, uint64_t *roff)
{
	unsigned int i;

	for (i = 0; i < buf->nr_ranges; i++) {
		if (off < buf->ranges[i].length)
			break;
		off -= buf->ranges[i].length;
	}
	*roff = off;
	return i;
}

P2P_API void p2p_dmabuf_resv_lock(struct p2p_dmabuf *buf)
{
	pthread_mutex_lock(&buf->resv);
}

P2P_API bool p2p_dmabuf_resv_trylock(struct p2p_dmabuf *buf)
{
	return pthread_mutex_trylock(&buf->resv) == 0;
}

P2P_API void p2p_dmabuf_resv_unlock(struct p2p_dmabuf *buf)
{
	pthread_mutex_unlock(&buf->resv);
}

P2P_API int p2p_dmabuf_resv_add_fence(struct p2p_dmabuf *buf, struct p2p_fence *fence)
{
	unsigned int i, j;

	/* Prune what has retired before growing. */
	for (i = j = 0; i < buf->nr_fences; i++) {
		if (p2p_fence_is_signaled(buf->fences[i]))
			p2p_fence_put(buf->fences[i]);
		else
			buf->fences[j++] = buf->fences[i];
	}
	buf->nr_fences = j;
	if (buf->nr_fences == buf->max_fences) {
		unsigned int n = buf->max_fences ? buf->max_fences * 2 : 8;
		struct p2p_fence **f = realloc(buf->fences, n * sizeof(*f));

		if (!f)
			return -ENOMEM;
		buf->fences = f;
		buf->max_fences = n;
	}
	buf->fences[buf->nr_fences++] = p2p_fence_ref(fence);
	return 0;
}

P2P_API enum p2p_dmabuf_status p2p_dmabuf_status(const struct p2p_dmabuf *buf)
{
	return (enum p2p_dmabuf_status)atomic_load(&buf->status);
}

/*
 * p2p_dmabuf_revoke() and p2p_dmabuf_unrevoke() set the state of the
 * buffer in every process of the fork tree that holds it (src/core/tree.c),
 * which applies it here and in each of them with the _local() functions.
 */
P2P_API int p2p_dmabuf_revoke(struct p2p_dmabuf *buf, enum p2p_dmabuf_status status)
{
	if (status != P2P_DMABUF_TEMP_REVOKED && status != P2P_DMABUF_PERM_REVOKED)
		return -EINVAL;
	return tree_set_state(buf, status);
}

P2P_API int p2p_dmabuf_unrevoke(struct p2p_dmabuf *buf)
{
	return tree_set_state(buf, P2P_DMABUF_OK);
}

/* Revoke in this process only (kernel-semantics 7.2). */
int dmabuf_revoke_local(struct p2p_dmabuf *buf, enum p2p_dmabuf_status status)
{
	struct p2p_attachment *a;
	int cur;

	pthread_mutex_lock(&buf->resv);
	cur = atomic_load(&buf->status);
	if (cur == P2P_DMABUF_PERM_REVOKED) {
		pthread_mutex_unlock(&buf->resv);
		return -EBADFD;
	}
	atomic_store(&buf->status, (int)status);
	if (cur != P2P_DMABUF_OK) {
		/*
		 * Already revoked: idempotent (TEMP -> PERM does not wait again),
		 * but a CPU mapping that an earlier revoke failed to zap is tried
		 * again, so success always means every mapping is revoked.
		 */
		pthread_mutex_unlock(&buf->resv);
		return cpumap_block_all(buf);
	}
	list_for_each_entry(a, &buf->attachments, node)
		if (a->importer_ops && a->importer_ops->invalidate_mappings)
			a->importer_ops->invalidate_mappings(a);
	for (unsigned int i = 0; i < buf->nr_fences; i++) {
		p2p_fence_wait(buf->fences[i], -1);
		p2p_fence_put(buf->fences[i]);
	}
	buf->nr_fences = 0;
	pthread_mutex_unlock(&buf->resv);

	/* Importers unmap with resv held: wait for them without it. */
	pthread_mutex_lock(&buf->map_lock);
	while (buf->nr_maps)
		pthread_cond_wait(&buf->map_cond, &buf->map_lock);
	pthread_mutex_unlock(&buf->map_lock);

	return cpumap_block_all(buf);
}

int dmabuf_unrevoke_local(struct p2p_dmabuf *buf)
{
	int cur;

	pthread_mutex_lock(&buf->resv);
	cur = atomic_load(&buf->status);
	if (cur == P2P_DMABUF_PERM_REVOKED) {
		pthread_mutex_unlock(&buf->resv);
		return -EBADFD;
	}
	atomic_store(&buf->status, P2P_DMABUF_OK);
	pthread_mutex_unlock(&buf->resv);
	/* Also when already OK: finishes an un-zap that failed before. */
	return cpumap_unblock_all(buf);
}

P2P_API int p2p_dmabuf_attach(struct p2p_dmabuf *buf, const struct p2p_attach_info *info,
			      struct p2p_attachment **out)
{
	struct p2p_attachment *a;
	int ret = 0;

	if (!info || info->argsz < sizeof(*info) || (info->flags & ~P2P_ATTACH_PEER2PEER))
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	list_init(&a->node);
	a->buf = buf;
	a->flags = info->flags;
	a->importer_ops = info->importer_ops;
	a->importer_priv = info->importer_priv;
	snprintf(a->name, sizeof(a->name), "%s", info->name ? info->name : "importer");

	pthread_mutex_lock(&buf->resv);
	if (buf->ops->attach)
		ret = buf->ops->attach(buf, a);
	if (!ret)
		list_add_tail(&a->node, &buf->attachments);
	pthread_mutex_unlock(&buf->resv);
	if (ret) {
		free(a);
		return ret;
	}
	p2p_dmabuf_ref(buf);
	*out = a;
	return 0;
}

P2P_API void p2p_dmabuf_detach(struct p2p_attachment *a)
{
	struct p2p_dmabuf *buf;

	if (!a)
		return;
	buf = a->buf;
	pthread_mutex_lock(&buf->resv);
	list_del_init(&a->node);
	while (a->pins) {
		a->pins--;
		if (buf->ops->unpin)
			buf->ops->unpin(a);
	}
	if (buf->ops->detach)
		buf->ops->detach(buf, a);
	pthread_mutex_unlock(&buf->resv);
	free(a);
	p2p_dmabuf_put(buf);
}

P2P_API struct p2p_dmabuf *p2p_attachment_dmabuf(const struct p2p_attachment *a)
{
	return a->buf;
}

P2P_API void *p2p_attachment_importer_priv(const struct p2p_attachment *a)
{
	return a->importer_priv;
}

P2P_API bool p2p_attachment_is_revocable(const struct p2p_attachment *a)
{
	return a->importer_ops && a->importer_ops->invalidate_mappings;
}

P2P_API bool p2p_attachment_is_peer2peer(const struct p2p_attachment *a)
{
	return a->flags & P2P_ATTACH_PEER2PEER;
}

P2P_API int p2p_attachment_map(struct p2p_attachment *a, struct p2p_sgt **out)
{
	struct p2p_dmabuf *buf = a->buf;
	int ret;

	pthread_mutex_lock(&buf->map_lock);
	buf->nr_maps++;
	pthread_mutex_unlock(&buf->map_lock);
	ret = buf->ops->map(a, out);
	if (ret) {
		pthread_mutex_lock(&buf->map_lock);
		if (!--buf->nr_maps)
			pthread_cond_broadcast(&buf->map_cond);
		pthread_mutex_unlock(&buf->map_lock);
	}
	return ret;
}

P2P_API void p2p_attachment_unmap(struct p2p_attachment *a, struct p2p_sgt *sgt)
{
	struct p2p_dmabuf *buf = a->buf;

	if (!sgt)
		return;
	buf->ops->unmap(a, sgt);
	pthread_mutex_lock(&buf->map_lock);
	if (!--buf->nr_maps)
		pthread_cond_broadcast(&buf->map_cond);
	pthread_mutex_unlock(&buf->map_lock);
}

P2P_API int p2p_attachment_pin(struct p2p_attachment *a)
{
	struct p2p_dmabuf *buf = a->buf;
	int ret = 0;

	pthread_mutex_lock(&buf->resv);
	if (buf->ops->pin)
		ret = buf->ops->pin(a);
	if (!ret)
		a->pins++;
	pthread_mutex_unlock(&buf->resv);
	return ret;
}

P2P_API void p2p_attachment_unpin(struct p2p_attachment *a)
{
	struct p2p_dmabuf *buf = a->buf;

	pthread_mutex_lock(&buf->resv);
	if (a->pins) {
		a->pins--;
		if (buf->ops->unpin)
			buf->ops->unpin(a);
	}
	pthread_mutex_unlock(&buf->resv);
}

P2P_API int p2p_dmabuf_begin_cpu_access(struct p2p_dmabuf *buf, enum p2p_dma_dir dir)
{
	if ((unsigned int)dir > P2P_DMA_FROM_DEVICE)
		return -EINVAL;
	return buf->ops->begin_cpu_access ? buf->ops->begin_cpu_access(buf, dir) : 0;
}

P2P_API int p2p_dmabuf_end_cpu_access(struct p2p_dmabuf *buf, enum p2p_dma_dir dir)
{
	if ((unsigned int)dir > P2P_DMA_FROM_DEVICE)
		return -EINVAL;
	return buf->ops->end_cpu_access ? buf->ops->end_cpu_access(buf, dir) : 0;
}

P2P_API int p2p_dmabuf_mmap(struct p2p_dmabuf *buf, void *addr, size_t length, int prot,
			    int flags, uint64_t offset, void **out)
{
	uint64_t pages, pgoff;
	int ret;

	if (!length || !IS_ALIGNED(offset, P2P_PAGE_SIZE))
		return -EINVAL;
	if (!buf->ops->mmap)
		return -EINVAL;
	if (length > buf->size)
		return -EINVAL;
	/* dma_buf_mmap_internal: overflow-safe bound check in pages (0.4). */
	pages = (length + P2P_PAGE_MASK) >> 12;
	pgoff = offset >> 12;
	if (pgoff > buf->size >> 12 || pages > (buf->size >> 12) - pgoff)
		return -EINVAL;
	ret = buf->ops->mmap(buf, offset, pages << 12, prot, flags);
	if (!ret)
		ret = cpumap_create(buf, addr, pages << 12, prot, flags, offset, offset, out);
	/* An fd the library needed (the userfaultfd): mmap(2) has no EMFILE. */
	return ret == -EMFILE || ret == -ENFILE ? -ENOMEM : ret;
}
