// SPDX-License-Identifier: MIT
/*
 * p2p_mem: memfd-backed "physical" memory for device BARs and system RAM.
 *
 * The library keeps one shared mapping of each memfd (the device view, used
 * by emulated DMA engines); it is never revoked.  Objects are refcounted and
 * immutable after creation, so no lock is needed.
 *
 * Pre-faulting (p2p_mem_populate(), P2P_MEM_POPULATE): the device view is
 * populated with MADV_POPULATE_WRITE over slices, one thread per online
 * core, so fresh memory costs its page allocation once, spread over every
 * core, instead of ~2.5 us per 4 KiB page inside the first DMA into it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#include "core.h"

static pthread_once_t thp_once = PTHREAD_ONCE_INIT;
static enum p2p_hugepage_mode thp_mode;

static void thp_probe(void)
{
	char buf[128] = "";
	int fd = open("/sys/kernel/mm/transparent_hugepage/shmem_enabled", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);

		buf[n > 0 ? n : 0] = 0;
		close(fd);
	}
	if (strstr(buf, "[always]") || strstr(buf, "[force]") || strstr(buf, "[within_size]"))
		thp_mode = P2P_HUGEPAGE_ALWAYS;
	else if (strstr(buf, "[advise]"))
		thp_mode = P2P_HUGEPAGE_ADVISE;
	else
		thp_mode = P2P_HUGEPAGE_NONE;
}

P2P_API enum p2p_hugepage_mode p2p_hugepage_mode(void)
{
	pthread_once(&thp_once, thp_probe);
	return thp_mode;
}

/*
 * Reserve @len bytes of VA (PROT_NONE) aligned to @align; with @fixed the
 * range at @hint is replaced.  Returns MAP_FAILED with errno set.
 */
void *p2p_reserve_va(void *hint, size_t len, size_t align, bool fixed)
{
	uint8_t *p, *aligned;
	size_t extra;

	if (fixed)
		return mmap(hint, len, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	if (align <= P2P_PAGE_SIZE || len < align)
		return mmap(hint, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
			    0);
	extra = len + align;
	p = mmap(hint, extra, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return p;
	aligned = (uint8_t *)ALIGN_UP((uintptr_t)p, align);
	if (aligned > p)
		munmap(p, (size_t)(aligned - p));
	if (aligned + len < p + extra)
		munmap(aligned + len, (size_t)(p + extra - (aligned + len)));
	return aligned;
}

/* One slice of a parallel populate. */
struct pop_slice {
	uint8_t *p;
	size_t len;
	int err;
	pthread_t thread;
	bool started;
};

/*
 * Populate [p, p + len) for writing.  Without MADV_POPULATE_WRITE (Linux
 * < 5.14: EINVAL) every page is written by an atomic add of 0, which
 * faults it in without changing a byte a device may be writing meanwhile.
 */
static int populate_slice(uint8_t *p, size_t len)
{
	while (madvise(p, len, MADV_POPULATE_WRITE)) {
		if (errno == EINTR)
			continue;
		if (errno != EINVAL)
			return -errno;
		for (size_t off = 0; off < len; off += P2P_PAGE_SIZE)
			__atomic_fetch_add(p + off, 0, __ATOMIC_RELAXED);
		break;
	}
	return 0;
}

static void *populate_thread(void *arg)
{
	struct pop_slice *s = arg;

	s->err = populate_slice(s->p, s->len);
	return NULL;
}

/* The number of online cores, at least 1. */
static unsigned int online_cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 1024 ? 1024 : (unsigned int)n;
}

/*
 * Populate [base, base + len) with @nthreads threads (0: one per online
 * core), the caller being one of them: 2 MiB-aligned slices of at least
 * 8 MiB, so small ranges take no thread.  A thread that cannot be created
 * leaves its slice to the caller.  Returns 0 or the first -errno.
 */
int mem_populate_range(void *base, size_t len, unsigned int nthreads)
{
	const size_t min_slice = 8u << 20;
	struct pop_slice *sl;
	size_t slice;
	unsigned int n;
	int ret = 0;

	if (!len)
		return 0;
	n = nthreads ? nthreads : online_cores();
	if (n > len / min_slice)
		n = (unsigned int)(len / min_slice);
	if (n <= 1)
		return populate_slice(base, len);
	slice = ALIGN_UP((len + n - 1) / n, P2P_HUGE_SIZE);
	sl = calloc(n, sizeof(*sl));
	if (!sl)
		return populate_slice(base, len);
	for (unsigned int i = 0; i < n; i++) {
		size_t off = MIN((size_t)i * slice, len);

		sl[i].p = (uint8_t *)base + off;
		sl[i].len = MIN(slice, len - off);
		if (i && sl[i].len)
			sl[i].started = !pthread_create(&sl[i].thread, NULL, populate_thread, &sl[i]);
	}
	for (unsigned int i = 0; i < n; i++)
		if (!sl[i].started && sl[i].len)
			sl[i].err = populate_slice(sl[i].p, sl[i].len);
	for (unsigned int i = 0; i < n; i++) {
		if (sl[i].started)
			pthread_join(sl[i].thread, NULL);
		if (sl[i].err && !ret)
			ret = sl[i].err;
	}
	free(sl);
	return ret;
}

P2P_API int p2p_mem_populate(struct p2p_mem *mem, unsigned int nthreads)
{
	if (!mem)
		return -EINVAL;
	return mem_populate_range(mem->base, mem->size, nthreads);
}

P2P_API int p2p_dmabuf_populate(struct p2p_dmabuf *buf, unsigned int nthreads)
{
	if (!buf)
		return -EINVAL;
	/* Ranges are immutable after export; the memory outlives the buffer's ref. */
	for (unsigned int i = 0; i < buf->nr_ranges; i++) {
		const struct p2p_phys_range *r = &buf->ranges[i];
		int ret = mem_populate_range((uint8_t *)r->mem->base + r->offset, r->length,
					     nthreads);

		if (ret)
			return ret;
	}
	return 0;
}

P2P_API int p2p_mem_create(const char *name, uint64_t size, unsigned int flags,
			   struct p2p_mem **out)
{
	return mem_create(name, size, flags, 0, out);
}

/*
 * Map @mem->fd at @mem->fd_off (size, huge already set) into a reserved
 * range of our own: the device view.  @flags: P2P_MEM_POPULATE pre-faults
 * it.  On failure nothing stays mapped; mmap's error is returned.
 */
static int mem_map(struct p2p_mem *mem, unsigned int flags)
{
	void *p = p2p_reserve_va(NULL, mem->size, mem->huge ? P2P_HUGE_SIZE : P2P_PAGE_SIZE,
				 false);
	int ret;

	if (p == MAP_FAILED)
		return -ENOMEM;
	mem->base = mmap(p, mem->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mem->fd,
			 (off_t)mem->fd_off);
	if (mem->base == MAP_FAILED) {
		ret = -errno;
		munmap(p, mem->size);
		return ret;
	}
	if (mem->huge)
		madvise(mem->base, mem->size, MADV_HUGEPAGE);
	if (flags & P2P_MEM_POPULATE) {
		ret = mem_populate_range(mem->base, mem->size, 0);
		if (ret) {
			munmap(mem->base, mem->size);
			return ret;
		}
	}
	return 0;
}

int mem_create(const char *name, uint64_t size, unsigned int flags, uint64_t fd_off,
	       struct p2p_mem **out)
{
	struct p2p_mem *mem;
	int ret;

	if (!size || !IS_ALIGNED(size, P2P_PAGE_SIZE) || size > (1ull << 46) ||
	    (flags & ~(P2P_MEM_HUGE | P2P_MEM_POPULATE)) || !IS_ALIGNED(fd_off, P2P_HUGE_SIZE) || fd_off > (1ull << 50))
		return -EINVAL;
	mem = calloc(1, sizeof(*mem));
	if (!mem)
		return -ENOMEM;
	kref_init(&mem->ref);
	mem->size = size;
	mem->fd_off = fd_off;
	mem->huge = (flags & P2P_MEM_HUGE) && p2p_hugepage_mode() != P2P_HUGEPAGE_NONE;
	mem->fd = memfd_create(name ? name : "p2pbuf-mem", MFD_CLOEXEC);
	if (mem->fd < 0) {
		ret = -errno;
		goto err_free;
	}
	ret = fd_set_size(mem->fd, fd_off + size);
	if (ret)
		goto err_close;
	ret = mem_map(mem, flags);
	if (ret)
		goto err_close;
	*out = mem;
	return 0;

err_close:
	close(mem->fd);
err_free:
	free(mem);
	return ret;
}

P2P_API int p2p_mem_create_from_fd(int fd, uint64_t offset, uint64_t size, unsigned int flags,
				   struct p2p_mem **out)
{
	struct p2p_mem *mem;
	int ret;

	if (fd < 0)
		return -EBADF;
	if (!size || !IS_ALIGNED(size, P2P_PAGE_SIZE) || size > (1ull << 46) ||
	    (flags & ~(P2P_MEM_HUGE | P2P_MEM_POPULATE)) || !IS_ALIGNED(offset, P2P_PAGE_SIZE) ||
	    offset > (1ull << 50))
		return -EINVAL;
	mem = calloc(1, sizeof(*mem));
	if (!mem)
		return -ENOMEM;
	kref_init(&mem->ref);
	mem->size = size;
	mem->fd_off = offset;
	mem->huge = (flags & P2P_MEM_HUGE) && p2p_hugepage_mode() != P2P_HUGEPAGE_NONE &&
		    IS_ALIGNED(offset, P2P_HUGE_SIZE);
	mem->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (mem->fd < 0) {
		ret = -errno;
		goto err_free;
	}
	ret = mem_map(mem, flags);
	if (ret) {
		/* Not a shared-memory file, or opened read-only. */
		if (ret == -EACCES || ret == -ENODEV)
			ret = -EINVAL;
		goto err_close;
	}
	*out = mem;
	return 0;

err_close:
	close(mem->fd);
err_free:
	free(mem);
	return ret;
}

P2P_API struct p2p_mem *p2p_mem_get(struct p2p_mem *mem)
{
	kref_get(&mem->ref);
	return mem;
}

P2P_API void p2p_mem_put(struct p2p_mem *mem)
{
	if (!mem || !kref_put(&mem->ref))
		return;
	munmap(mem->base, mem->size);
	close(mem->fd);
	free(mem);
}

P2P_API void *p2p_mem_ptr(const struct p2p_mem *mem, uint64_t offset)
{
	return (uint8_t *)mem->base + offset;
}

P2P_API uint64_t p2p_mem_size(const struct p2p_mem *mem)
{
	return mem->size;
}

P2P_API int p2p_mem_fd(const struct p2p_mem *mem)
{
	return mem->fd;
}

P2P_API uint64_t p2p_mem_fd_offset(const struct p2p_mem *mem)
{
	return mem->fd_off;
}
