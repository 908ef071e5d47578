// SPDX-License-Identifier: MIT
/*
 * The system dma-buf heap (kernel-semantics 6): DMA_HEAP_IOCTL_ALLOC, the
 * system heap's exporter ops, and DMA_BUF_IOCTL_SYNC.
 *
 * A buffer is one p2p_mem (a memfd, with 2 MiB THP where shmem allows)
 * exported as a single range, so the core maps and populates a CPU mmap of
 * it in one run.  An importer's map returns what the kernel's allocator
 * would have produced: one entry per chunk of page order 8, 4 or 0 (1 MiB,
 * 64 KiB, 4 KiB), largest first, at consecutive memfd offsets.
 *
 * Unlike the kernel, pages are not allocated by DMA_HEAP_IOCTL_ALLOC but on
 * first touch (normally the populate of the first mmap); a request larger
 * than the machine's RAM fails with -ENOMEM up front.
 *
 * Locking: none of its own.  A heap is immutable after open, a buffer's
 * memory and chunk layout are immutable after allocation, and the CPU
 * access count is atomic.  The core calls the ops with resv held (attach;
 * map/unmap for dynamic importers) or with no lock at all (map/unmap for
 * static importers, mmap, begin/end_cpu_access, release); they take no
 * lock, so they fit anywhere in the lock order (docs/locking.md).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <p2pbuf/dmabuf.h>
#include <p2pbuf/file.h>
#include <p2pbuf/heap.h>

#include "../util/private.h"

#define HEAP_NAME "system"

/* The system heap's page orders, largest first (4 KiB pages). */
static const unsigned int heap_orders[] = { 8, 4, 0 };

struct p2p_dma_heap {
	char name[16];
};

struct heap_buffer {
	struct p2p_mem *mem;
	atomic_int cpu_access; /* begin_cpu_access nesting depth */
};

static uint64_t order_bytes(unsigned int order)
{
	return P2P_PAGE_SIZE << order;
}

/* Chunks a buffer of @size bytes is made of (alloc_largest_available()). */
static unsigned int heap_nr_chunks(uint64_t size)
{
	uint64_t n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(heap_orders); i++) {
		n += size / order_bytes(heap_orders[i]);
		size %= order_bytes(heap_orders[i]);
	}
	return (unsigned int)n;
}

static int heap_attach(struct p2p_dmabuf *buf, struct p2p_attachment *attach)
{
	/* System memory: any importer, static or dynamic, P2P or not. */
	(void)buf;
	(void)attach;
	return 0;
}

static int heap_map(struct p2p_attachment *attach, struct p2p_sgt **out)
{
	struct p2p_dmabuf *buf = p2p_attachment_dmabuf(attach);
	struct heap_buffer *hb = p2p_dmabuf_priv(buf);
	uint64_t size = p2p_dmabuf_size(buf), off = 0;
	unsigned int n = heap_nr_chunks(size), e = 0;
	struct p2p_sgt *sgt;

	sgt = malloc(sizeof(*sgt) + (size_t)n * sizeof(sgt->ents[0]));
	if (!sgt)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(heap_orders); i++) {
		uint64_t chunk = order_bytes(heap_orders[i]);

		for (; size - off >= chunk; off += chunk)
			sgt->ents[e++] = (struct p2p_phys_range){
				.mem = hb->mem, .offset = off, .length = chunk
			};
	}
	sgt->nents = e;
	*out = sgt;
	return 0;
}

static void heap_unmap(struct p2p_attachment *attach, struct p2p_sgt *sgt)
{
	(void)attach;
	free(sgt);
}

static int heap_mmap(struct p2p_dmabuf *buf, uint64_t offset, uint64_t length, int prot,
		     int flags)
{
	int type = flags & MAP_TYPE;

	/* The core checked offset + length against the size (0.4). */
	(void)buf;
	(void)offset;
	(void)length;
	if (type != MAP_SHARED && type != MAP_PRIVATE && type != MAP_SHARED_VALIDATE)
		return -EINVAL;
	if (prot & ~(PROT_READ | PROT_WRITE))
		return -EINVAL;
	return 0;
}

/*
 * memfd memory is coherent: there is nothing to flush or invalidate.  The
 * depth is kept so that the bracket is visible when debugging.
 */
static int heap_begin_cpu_access(struct p2p_dmabuf *buf, enum p2p_dma_dir dir)
{
	struct heap_buffer *hb = p2p_dmabuf_priv(buf);

	(void)dir;
	atomic_fetch_add(&hb->cpu_access, 1);
	return 0;
}

static int heap_end_cpu_access(struct p2p_dmabuf *buf, enum p2p_dma_dir dir)
{
	struct heap_buffer *hb = p2p_dmabuf_priv(buf);
	int cur = atomic_load(&hb->cpu_access);

	/* As the kernel: an END without a START is not an error. */
	(void)dir;
	while (cur > 0 && !atomic_compare_exchange_weak(&hb->cpu_access, &cur, cur - 1))
		;
	return 0;
}

static void heap_release(struct p2p_dmabuf *buf)
{
	struct heap_buffer *hb = p2p_dmabuf_priv(buf);

	p2p_mem_put(hb->mem);
	free(hb);
}

static const struct p2p_dmabuf_ops heap_ops = {
	.attach = heap_attach,
	.map = heap_map,
	.unmap = heap_unmap,
	.mmap = heap_mmap,
	.begin_cpu_access = heap_begin_cpu_access,
	.end_cpu_access = heap_end_cpu_access,
	.release = heap_release,
};

/* system_heap_allocate(): @len is page aligned and non-zero. */
static int heap_buffer_create(uint64_t len, uint32_t fd_flags, struct p2p_dmabuf **out)
{
	/* exp_info.flags = fd_flags: the file's access mode is the caller's. */
	struct p2p_dmabuf_export_info info = {
		.argsz = sizeof(info),
		.flags = P2P_EXPORT_OPEN_FLAGS,
		.open_flags = fd_flags,
	};
	struct p2p_phys_range range = { .offset = 0, .length = len };
	long ram_pages = sysconf(_SC_PHYS_PAGES);
	struct heap_buffer *hb;
	int ret;

	/* The kernel allocates every page now; more than RAM cannot succeed. */
	if (ram_pages > 0 && len / P2P_PAGE_SIZE > (uint64_t)ram_pages)
		return -ENOMEM;
	hb = calloc(1, sizeof(*hb));
	if (!hb)
		return -ENOMEM;
	atomic_init(&hb->cpu_access, 0);
	ret = p2p_mem_create("p2pbuf-heap-" HEAP_NAME, len, P2P_MEM_HUGE, &hb->mem);
	if (ret)
		goto err_free;
	range.mem = hb->mem;
	info.name = HEAP_NAME;
	info.ops = &heap_ops;
	info.priv = hb;
	info.nr_ranges = 1;
	info.ranges = &range;
	ret = p2p_dmabuf_export(&info, out);
	if (ret)
		goto err_mem;
	return 0;

err_mem:
	p2p_mem_put(hb->mem);
err_free:
	free(hb);
	return ret == -EINVAL ? -ENOMEM : ret; /* too large for a memfd */
}

/* dma_heap_ioctl_allocate() + dma_heap_buffer_alloc(). */
static int heap_ioctl_allocate(struct p2p_dma_heap *heap, struct dma_heap_allocation_data *data)
{
	struct p2p_dmabuf *buf;
	uint64_t len;
	int fd, ret;

	(void)heap;
	if (data->fd)
		return -EINVAL;
	if (data->fd_flags & ~(uint32_t)DMA_HEAP_VALID_FD_FLAGS)
		return -EINVAL;
	if (data->heap_flags & ~(uint64_t)DMA_HEAP_VALID_HEAP_FLAGS)
		return -EINVAL;
	/* PAGE_ALIGN() wraps to 0 for the last page of the range, as in the kernel. */
	len = ALIGN_UP(data->len, P2P_PAGE_SIZE);
	if (!len)
		return -EINVAL;
	ret = heap_buffer_create(len, data->fd_flags, &buf);
	if (ret)
		return ret;
	fd = p2p_dmabuf_fd_install(buf, (int)data->fd_flags);
	p2p_dmabuf_put(buf); /* the fd holds its own reference, or release */
	if (fd < 0)
		return fd;
	data->fd = (uint32_t)fd;
	return 0;
}

/**
 * p2p_dma_heap_open() - open a heap by name (/dev/dma_heap/<name>)
 * @name: the heap; "system" is the only one
 * @out: the heap, owned by the caller (p2p_dma_heap_close())
 *
 * Thread-safe; does not block.
 *
 * Return: 0, or -ENOENT (no such heap), -ENOMEM.
 */
P2P_API int p2p_dma_heap_open(const char *name, struct p2p_dma_heap **out)
{
	struct p2p_dma_heap *heap;

	if (!name || strcmp(name, HEAP_NAME))
		return -ENOENT;
	heap = calloc(1, sizeof(*heap));
	if (!heap)
		return -ENOMEM;
	snprintf(heap->name, sizeof(heap->name), "%s", name);
	*out = heap;
	return 0;
}

/**
 * p2p_dma_heap_close() - close a heap
 * @heap: the heap, or NULL
 *
 * Buffers allocated from it live on: each is owned by its fds, mappings
 * and attachments.  No other thread may use @heap concurrently.
 */
P2P_API void p2p_dma_heap_close(struct p2p_dma_heap *heap)
{
	free(heap);
}

/**
 * p2p_dma_heap_ioctl() - the heap's ioctls: DMA_HEAP_IOCTL_ALLOC
 * @heap: the heap
 * @cmd: the request.  As in the kernel's dma_heap_ioctl(), the struct size
 *	encoded in it may be smaller than struct dma_heap_allocation_data (the
 *	missing tail reads as zero and is not written back) or larger (the
 *	extra bytes are neither interpreted nor changed); only the copy
 *	directions present in both @cmd and the kernel's command are done.
 * @arg: the caller's struct dma_heap_allocation_data (or its variant)
 *
 * Validation (6.1), in order: fd != 0 on input, fd_flags outside
 * O_CLOEXEC | O_ACCMODE, heap_flags outside DMA_HEAP_VALID_HEAP_FLAGS,
 * PAGE_ALIGN(len) == 0 -> -EINVAL; allocation failure -> -ENOMEM.  On
 * success the new dma-buf fd (size PAGE_ALIGN(len)) is stored in @arg's fd
 * and owned by the caller: close it with p2p_close().
 *
 * Differences from the kernel: an unknown _IOC_NR is -ENOTTY (the kernel
 * says -EINVAL), and when the new fd cannot be handed back (the copy-out
 * faults, or @cmd's size or direction does not cover the fd field) it is
 * closed again rather than leaked into the process.
 *
 * Thread-safe; blocks only in memory allocation.
 *
 * Return: 0, -EINVAL, -ENOMEM, -EMFILE, -EFAULT (@arg not readable or
 * writable), -ENOTTY (not a dma-heap command).
 */
P2P_API long p2p_dma_heap_ioctl(struct p2p_dma_heap *heap, unsigned long cmd, void *arg)
{
	const unsigned int kcmd = DMA_HEAP_IOCTL_ALLOC;
	const size_t fd_end = offsetof(struct dma_heap_allocation_data, fd) + sizeof(uint32_t);
	unsigned int ucmd = (unsigned int)cmd; /* the syscall's cmd is an unsigned int */
	size_t in_size, out_size, ksize;
	uint64_t stack_kdata[16];
	void *kdata = stack_kdata;
	long ret;

	if (_IOC_TYPE(ucmd) != DMA_HEAP_IOC_MAGIC || _IOC_NR(ucmd) != _IOC_NR(kcmd))
		return -ENOTTY;

	/* The delta between the caller's struct size and ours. */
	out_size = _IOC_SIZE(ucmd);
	in_size = out_size;
	if (!(_IOC_DIR(ucmd) & _IOC_DIR(kcmd) & _IOC_WRITE))
		in_size = 0;
	if (!(_IOC_DIR(ucmd) & _IOC_DIR(kcmd) & _IOC_READ))
		out_size = 0;
	ksize = MAX(MAX(in_size, out_size), (size_t)_IOC_SIZE(kcmd));
	if (ksize > sizeof(stack_kdata)) {
		kdata = malloc(ksize);
		if (!kdata)
			return -ENOMEM;
	}
	if (copy_from_user(kdata, arg, in_size)) {
		ret = -EFAULT;
		goto out;
	}
	/* Zero out any difference between the caller's and our struct size. */
	if (ksize > in_size)
		memset((char *)kdata + in_size, 0, ksize - in_size);

	ret = heap_ioctl_allocate(heap, kdata);
	if (copy_to_user(arg, kdata, out_size)) {
		if (!ret)
			p2p_close((int)((struct dma_heap_allocation_data *)kdata)->fd);
		ret = -EFAULT;
	} else if (!ret && out_size < fd_end) {
		/* The caller cannot learn the fd: do not leak it. */
		p2p_close((int)((struct dma_heap_allocation_data *)kdata)->fd);
	}
out:
	if (kdata != stack_kdata)
		free(kdata);
	return ret;
}

static long heap_file_ioctl(struct p2p_file *file, unsigned long cmd, void *arg)
{
	return p2p_dma_heap_ioctl(p2p_file_priv(file), cmd, arg);
}

static void heap_file_release(struct p2p_file *file)
{
	p2p_dma_heap_close(p2p_file_priv(file));
}

/* The heap's char device file: dma_heap_fops (open, unlocked_ioctl). */
static const struct p2p_file_ops heap_fops = {
	.name = "dma-heap",
	.ioctl = heap_file_ioctl,
	.release = heap_file_release,
};

/**
 * p2p_dma_heap_open_fd() - open(2) of /dev/dma_heap/@name
 * @name: the heap; "system" is the only one
 * @flags: open(2) flags: the access mode, O_CLOEXEC, O_NONBLOCK...
 *
 * A file whose ioctl is DMA_HEAP_IOCTL_ALLOC (p2p_dma_heap_ioctl(), through
 * p2p_fd_ioctl()); no mmap (-ENODEV), read or write (-EINVAL), as the
 * kernel's heap device.  The fd holds the heap's only reference: its last
 * close (p2p_close()) frees the heap; buffers allocated from it live on.
 * Thread-safe.
 *
 * Return: the fd, or -ENOENT (no such heap), -ENOMEM, -EMFILE, -ENFILE.
 */
P2P_API int p2p_dma_heap_open_fd(const char *name, int flags)
{
	struct p2p_dma_heap *heap;
	struct p2p_file *file;
	int ret;

	ret = p2p_dma_heap_open(name, &heap);
	if (ret)
		return ret;
	ret = p2p_file_create(&heap_fops, heap, heap->name, flags & ~O_CLOEXEC, &file);
	if (ret) {
		p2p_dma_heap_close(heap);
		return ret;
	}
	ret = p2p_file_install(file, flags & O_CLOEXEC);
	p2p_file_put(file); /* the fd's reference is the only one left, or release */
	return ret;
}

/**
 * p2p_dma_heap_alloc() - allocate a buffer (a typed DMA_HEAP_IOCTL_ALLOC)
 * @heap: the heap
 * @len: bytes, rounded up to a page multiple
 * @fd_flags: O_CLOEXEC and an access mode (O_RDWR, ...)
 * @heap_flags: must be 0 (DMA_HEAP_VALID_HEAP_FLAGS)
 *
 * Thread-safe; blocks only in memory allocation.
 *
 * Return: the new dma-buf fd, owned by the caller (close it with
 * p2p_close()), or -errno as p2p_dma_heap_ioctl().
 */
P2P_API int p2p_dma_heap_alloc(struct p2p_dma_heap *heap, uint64_t len, uint32_t fd_flags,
			       uint64_t heap_flags)
{
	struct dma_heap_allocation_data data = {
		.len = len,
		.fd_flags = fd_flags,
		.heap_flags = heap_flags,
	};
	int ret;

	ret = heap_ioctl_allocate(heap, &data);
	return ret ? ret : (int)data.fd;
}

/**
 * p2p_dmabuf_sync() - DMA_BUF_IOCTL_SYNC: bracket CPU access to a buffer
 * @buf: any dma-buf
 * @flags: DMA_BUF_SYNC_START or DMA_BUF_SYNC_END, with DMA_BUF_SYNC_READ,
 *	DMA_BUF_SYNC_WRITE or both
 *
 * As the kernel's dma_buf_ioctl(): READ is P2P_DMA_FROM_DEVICE, WRITE
 * P2P_DMA_TO_DEVICE, both P2P_DMA_BIDIRECTIONAL; START calls
 * p2p_dmabuf_begin_cpu_access(), END p2p_dmabuf_end_cpu_access().
 * Thread-safe; blocks only if the exporter's bracket does.
 *
 * Return: 0, -EINVAL (unknown bits, or neither READ nor WRITE), -EPERM
 * (WRITE on a buffer exported without write access: not in the kernel,
 * where the bracket is allowed, but p2pbuf lets nothing write such a
 * buffer), or the exporter's error.
 */
P2P_API int p2p_dmabuf_sync(struct p2p_dmabuf *buf, uint64_t flags)
{
	enum p2p_dma_dir dir;

	if (flags & ~(uint64_t)DMA_BUF_SYNC_VALID_FLAGS_MASK)
		return -EINVAL;
	switch (flags & DMA_BUF_SYNC_RW) {
	case DMA_BUF_SYNC_READ:
		dir = P2P_DMA_FROM_DEVICE;
		break;
	case DMA_BUF_SYNC_WRITE:
		dir = P2P_DMA_TO_DEVICE;
		break;
	case DMA_BUF_SYNC_RW:
		dir = P2P_DMA_BIDIRECTIONAL;
		break;
	default:
		return -EINVAL;
	}
	/*
	 * Not in the kernel: a buffer exported read-only is never written,
	 * so a CPU write bracket on it is refused (p2p_dmabuf_writable()).
	 */
	if ((flags & DMA_BUF_SYNC_WRITE) && !p2p_dmabuf_writable(buf))
		return -EPERM;
	if (flags & DMA_BUF_SYNC_END)
		return p2p_dmabuf_end_cpu_access(buf, dir);
	return p2p_dmabuf_begin_cpu_access(buf, dir);
}
