// SPDX-License-Identifier: MIT
/*
 * dma-buf core: export, references, the file and its fds, attachments,
 * maps, fences, revoke and un-revoke (kernel-semantics 0.1-0.4, 1.6,
 * 7.2-7.5), and the list of live buffers behind bufinfo.
 *
 * A dma-buf is a file (include/p2pbuf/file.h), as in the kernel: its
 * references are the file's (p2p_dmabuf_ref/put are get_file/fput), every
 * fd and every CPU mapping holds one, and the file's release is the
 * buffer's.  The file's open mode is fixed at export (exp_info.flags) and
 * shared by all its fds.
 *
 * Locking (the order is docs/locking.md's): the locks of a buffer are
 * core.h's.  The status is written under resv (and by exporters under
 * their own outer lock too); it is read without locks where a stale value
 * is harmless and re-checked under resv or cpu_lock where it is not.
 * db_lock protects the list of live buffers; it is a leaf: export and
 * release take it alone, bufinfo takes references under it and describes
 * the buffers without it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <p2pbuf/file.h>
#include <p2pbuf/heap.h>

#include "core.h"

static pthread_mutex_t db_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head db_list = { &db_list, &db_list };

static const struct p2p_file_ops dmabuf_fops;

bool dmabuf_tryget(struct p2p_dmabuf *buf)
{
	return p2p_file_tryget(buf->file);
}

bool dmabuf_dying(const struct p2p_dmabuf *buf)
{
	return p2p_file_count(buf->file) == 0;
}

/* Undo p2p_dmabuf_export()'s setup: the tree, fences, range references, locks. */
static void dmabuf_free(struct p2p_dmabuf *buf)
{
	tree_buf_release(buf);
	for (unsigned int i = 0; i < buf->nr_fences; i++)
		p2p_fence_put(buf->fences[i]);
	free(buf->fences);
	for (unsigned int i = 0; i < buf->nr_ranges; i++)
		p2p_mem_put(buf->ranges[i].mem);
	pthread_mutex_destroy(&buf->resv);
	pthread_mutex_destroy(&buf->map_lock);
	pthread_cond_destroy(&buf->map_cond);
	pthread_mutex_destroy(&buf->cpu_lock);
	free(buf);
}

/* The file's release: dma_buf_release() and dma_buf_file_release(). */
static void dmabuf_release(struct p2p_file *file)
{
	struct p2p_dmabuf *buf = p2p_file_priv(file);

	pthread_mutex_lock(&db_lock);
	list_del_init(&buf->db_node);
	pthread_mutex_unlock(&db_lock);
	/* Exporters may revoke until their release unlinks the buffer. */
	buf->ops->release(buf);
	dmabuf_free(buf);
}

/* dma_buf_set_name(): strndup_user(DMA_BUF_NAME_LEN), -EBUSY while attached. */
static long dmabuf_set_name(struct p2p_dmabuf *buf, const char *uname)
{
	char name[DMA_BUF_NAME_LEN];
	size_t n;
	long ret = 0;

	for (n = 0; n < sizeof(name); n++) {
		if (copy_from_user(&name[n], uname + n, 1))
			return -EFAULT;
		if (!name[n])
			break;
	}
	if (n == sizeof(name))
		return -EINVAL; /* longer than DMA_BUF_NAME_LEN with its NUL */
	pthread_mutex_lock(&buf->resv);
	if (!list_empty(&buf->attachments))
		ret = -EBUSY;
	else
		memcpy(buf->uname, name, n + 1);
	pthread_mutex_unlock(&buf->resv);
	return ret;
}

/* dma_buf_ioctl(): DMA_BUF_IOCTL_SYNC and DMA_BUF_SET_NAME, anything else -ENOTTY. */
static long dmabuf_ioctl(struct p2p_file *file, unsigned long cmd, void *arg)
{
	struct p2p_dmabuf *buf = p2p_file_priv(file);
	struct dma_buf_sync sync;

	switch (cmd) {
	case DMA_BUF_IOCTL_SYNC:
		if (copy_from_user(&sync, arg, sizeof(sync)))
			return -EFAULT;
		return p2p_dmabuf_sync(buf, sync.flags);
	case DMA_BUF_SET_NAME_A:
	case DMA_BUF_SET_NAME_B:
		return dmabuf_set_name(buf, arg);
	default:
		return -ENOTTY;
	}
}

static int dmabuf_file_mmap(struct p2p_file *file, void *addr, size_t length, int prot,
			    int flags, uint64_t offset, void **out)
{
	return p2p_dmabuf_mmap(p2p_file_priv(file), addr, length, prot, flags, offset, out);
}

/* dma_buf_fops; no read/write (-EINVAL), poll: see p2p_dmabuf_bufinfo() on fences. */
static const struct p2p_file_ops dmabuf_fops = {
	.name = "dmabuf",
	.ioctl = dmabuf_ioctl,
	.mmap = dmabuf_file_mmap,
	.release = dmabuf_release,
};

P2P_API int p2p_dmabuf_export(const struct p2p_dmabuf_export_info *info, struct p2p_dmabuf **out)
{
	if (info && (info->flags & DMABUF_EXPORT_PERM_REVOKED))
		return -EINVAL; /* internal (dmabuf_export_token()) */
	return dmabuf_export_token(info, -1, out);
}

int dmabuf_export_token(const struct p2p_dmabuf_export_info *info, int token_fd,
			struct p2p_dmabuf **out)
{
	const size_t known = sizeof(*info);
	struct p2p_dmabuf *buf;
	uint64_t size = 0;
	int open_flags = O_RDWR;
	int ret;

	/* The size before open_flags was added is still accepted. */
	if (!info || info->argsz < offsetof(struct p2p_dmabuf_export_info, open_flags))
		return -EINVAL;
	if (info->argsz > known) {
		const uint8_t *tail = (const uint8_t *)info + known;

		for (size_t i = 0; i < info->argsz - known; i++)
			if (tail[i])
				return -E2BIG;
	}
	if (!info->ops || !info->ops->map || !info->ops->unmap || !info->ops->release)
		return -EINVAL;
	if (info->flags &
	    ~(P2P_EXPORT_REVOKED | P2P_EXPORT_OPEN_FLAGS | DMABUF_EXPORT_PERM_REVOKED))
		return -EINVAL;
	if (info->flags & P2P_EXPORT_OPEN_FLAGS) {
		if (info->argsz < known)
			return -EINVAL;
		open_flags = (int)info->open_flags;
	}
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
	buf->size = size;
	buf->ops = info->ops;
	buf->priv = info->priv;
	snprintf(buf->name, sizeof(buf->name), "%s", info->name ? info->name : "anon");
	pthread_mutex_init(&buf->resv, NULL);
	list_init(&buf->attachments);
	atomic_init(&buf->status, P2P_DMABUF_OK);
	if (info->flags & DMABUF_EXPORT_PERM_REVOKED)
		atomic_init(&buf->status, P2P_DMABUF_PERM_REVOKED);
	else if (info->flags & P2P_EXPORT_REVOKED)
		atomic_init(&buf->status, P2P_DMABUF_TEMP_REVOKED);
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

	list_init(&buf->db_node);

	/* dma_buf_getfile(): the file's flags are the access mode and O_NONBLOCK. */
	ret = file_create(&dmabuf_fops, buf, buf->name, open_flags & (O_ACCMODE | O_NONBLOCK),
			  token_fd, &buf->file);
	if (ret)
		goto err_ranges;
	pthread_mutex_lock(&db_lock);
	list_add_tail(&buf->db_node, db_list.next); /* newest first, as the kernel's list_add() */
	pthread_mutex_unlock(&db_lock);
	*out = buf;
	return 0;

err_ranges:
	dmabuf_free(buf); /* no fences yet */
	return ret;
}

P2P_API int p2p_dmabuf_get(int fd, struct p2p_dmabuf **out)
{
	struct p2p_file *f;
	int ret = p2p_file_from_fd(fd, &dmabuf_fops, &f);

	if (!ret)
		*out = p2p_file_priv(f); /* the reference is the file's */
	return ret;
}

P2P_API struct p2p_dmabuf *p2p_dmabuf_ref(struct p2p_dmabuf *buf)
{
	p2p_file_get(buf->file);
	return buf;
}

P2P_API void p2p_dmabuf_put(struct p2p_dmabuf *buf)
{
	if (buf)
		p2p_file_put(buf->file); /* dma_buf_put() is fput() */
}

P2P_API int p2p_dmabuf_fd_install(struct p2p_dmabuf *buf, int flags)
{
	/* dma_buf_fd(): only O_CLOEXEC matters; the access mode is the file's (export). */
	return p2p_file_install(buf->file, flags & O_CLOEXEC);
}

P2P_API struct p2p_file *p2p_dmabuf_file(const struct p2p_dmabuf *buf)
{
	return buf->file;
}

P2P_API bool p2p_dmabuf_writable(const struct p2p_dmabuf *buf)
{
	return (p2p_file_flags(buf->file) & O_ACCMODE) == O_RDWR;
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

static __thread struct dmabuf_revoke_batch *revoke_batch;

void dmabuf_revoke_batch_begin(struct dmabuf_revoke_batch *b)
{
	memset(b, 0, sizeof(*b));
	b->nested = revoke_batch != NULL;
	if (!b->nested)
		revoke_batch = b;
}

void dmabuf_revoke_batch_end(struct dmabuf_revoke_batch *b)
{
	if (b->nested)
		return;
	revoke_batch = NULL;
	for (unsigned int i = 0; i < b->nr; i++) {
		p2p_fence_wait(b->fences[i], -1);
		p2p_fence_put(b->fences[i]);
	}
	free(b->fences);
	b->fences = NULL;
	b->nr = b->max = 0;
}

/* Hand @f (a reference) to this thread's batch; false if there is none or no room. */
static bool revoke_batch_take(struct p2p_fence *f)
{
	struct dmabuf_revoke_batch *b = revoke_batch;

	if (!b)
		return false;
	if (b->nr == b->max) {
		unsigned int n = b->max ? b->max * 2 : 16;
		struct p2p_fence **nf = realloc(b->fences, n * sizeof(*nf));

		if (!nf)
			return false; /* waited for here instead */
		b->fences = nf;
		b->max = n;
	}
	b->fences[b->nr++] = f;
	return true;
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
		if (revoke_batch_take(buf->fences[i]))
			continue; /* waited for by dmabuf_revoke_batch_end() */
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
	int cur, ret;

	pthread_mutex_lock(&buf->resv);
	cur = atomic_load(&buf->status);
	if (cur == P2P_DMABUF_PERM_REVOKED) {
		pthread_mutex_unlock(&buf->resv);
		return -EBADFD;
	}
	atomic_store(&buf->status, P2P_DMABUF_OK);
	pthread_mutex_unlock(&buf->resv);
	/* Also when already OK: finishes an un-zap that failed before. */
	ret = cpumap_unblock_all(buf);
	if (cur != P2P_DMABUF_OK) {
		/* Usable again: tell the importers that want to know (restore). */
		struct p2p_attachment *a;

		pthread_mutex_lock(&buf->resv);
		if (atomic_load(&buf->status) == P2P_DMABUF_OK)
			list_for_each_entry(a, &buf->attachments, node)
				if (a->importer_ops && a->importer_ops->restore)
					a->importer_ops->restore(a);
		pthread_mutex_unlock(&buf->resv);
	}
	return ret;
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

P2P_API int p2p_attachment_iommufd_map(struct p2p_attachment *a, struct p2p_phys_range *out)
{
	const struct p2p_dmabuf_ops *ops = a->buf->ops;

	return ops->iommufd_map ? ops->iommufd_map(a, out) : -EOPNOTSUPP;
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

	/* do_mmap() on the buffer's file (also for callers that skip p2p_fd_mmap()). */
	ret = file_mmap_access(p2p_file_flags(buf->file), prot, flags);
	if (ret)
		return ret;
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

/* ---------------------------------------------------------------------- */
/* bufinfo                                                                */

struct sbuf {
	char *buf;
	size_t len, pos;
};

static void __attribute__((format(printf, 2, 3))) sb_printf(struct sbuf *sb, const char *fmt, ...)
{
	size_t room = sb->pos < sb->len ? sb->len - sb->pos : 0;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room ? sb->buf + sb->pos : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		sb->pos += (size_t)n;
}

/* The file's f_mode as the kernel shows it: FMODE_READ/WRITE, LSEEK (dma-bufs seek), OPENED. */
static unsigned int dmabuf_fmode(const struct p2p_dmabuf *buf)
{
	int acc = p2p_file_flags(buf->file) & O_ACCMODE;
	unsigned int mode = 0x4 | 0x80000;

	if (acc == O_RDONLY || acc == O_RDWR)
		mode |= 0x1;
	if (acc == O_WRONLY || acc == O_RDWR)
		mode |= 0x2;
	return mode;
}

P2P_API ssize_t p2p_dmabuf_bufinfo(char *out, size_t len)
{
	struct sbuf sb = { out, out ? len : 0, 0 };
	struct p2p_dmabuf *buf, **bufs;
	size_t n = 0, k = 0;
	uint64_t total = 0;

	/*
	 * Take a reference on every live buffer under db_lock, then describe
	 * them without it: a buffer's release (which takes db_lock) may then
	 * run from our own put, or from a thread that holds another buffer's
	 * resv, without a lock-order problem.
	 */
	pthread_mutex_lock(&db_lock);
	list_for_each_entry(buf, &db_list, db_node)
		n++;
	bufs = malloc((n ? n : 1) * sizeof(*bufs));
	if (!bufs) {
		pthread_mutex_unlock(&db_lock);
		return -ENOMEM;
	}
	list_for_each_entry(buf, &db_list, db_node)
		if (dmabuf_tryget(buf))
			bufs[k++] = buf;
	pthread_mutex_unlock(&db_lock);

	sb_printf(&sb, "\nDma-buf Objects:\n");
	sb_printf(&sb, "%-8s\t%-8s\t%-8s\t%-8s\texp_name\t%-8s\tname\n", "size", "flags", "mode",
		  "count", "ino");
	for (size_t i = 0; i < k; i++) {
		struct p2p_attachment *a;
		int attached = 0;

		buf = bufs[i];
		pthread_mutex_lock(&buf->resv);
		/* count: file_count(), less the reference taken above. */
		sb_printf(&sb, "%08llu\t%08x\t%08x\t%08ld\t%s\t%08lu\t%s\n",
			  (unsigned long long)buf->size, (unsigned int)p2p_file_flags(buf->file),
			  dmabuf_fmode(buf), p2p_file_count(buf->file) - 1, buf->name,
			  (unsigned long)file_ino(buf->file), buf->uname[0] ? buf->uname : "<none>");
		/*
		 * dma_resv_describe() lists fences up to DMA_RESV_USAGE_READ;
		 * p2pbuf's fences are in-flight importer DMA (BOOKKEEP, the
		 * usage a revoke waits for, 0.3), so none is listed.
		 */
		sb_printf(&sb, "\tAttached Devices:\n");
		list_for_each_entry(a, &buf->attachments, node) {
			sb_printf(&sb, "\t%s\n", a->name);
			attached++;
		}
		pthread_mutex_unlock(&buf->resv);
		sb_printf(&sb, "Total %d devices attached\n\n", attached);
		total += buf->size;
	}
	sb_printf(&sb, "\nTotal %zu objects, %llu bytes\n", k, (unsigned long long)total);
	for (size_t i = 0; i < k; i++)
		p2p_dmabuf_put(bufs[i]);
	free(bufs);
	if (sb.len)
		out[MIN(sb.pos, sb.len - 1)] = 0;
	return (ssize_t)sb.pos;
}
