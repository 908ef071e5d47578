// SPDX-License-Identifier: MIT
/*
 * p2p_mem: memfd-backed "physical" memory for device BARs and system RAM.
 *
 * The library keeps one shared mapping of each memfd (the device view, used
 * by emulated DMA engines); it is never revoked.  Objects are refcounted and
 * immutable after creation, so no lock is needed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

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

P2P_API int p2p_mem_create(const char *name, uint64_t size, unsigned int flags,
			   struct p2p_mem **out)
{
	return mem_create(name, size, flags, 0, out);
}

int mem_create(const char *name, uint64_t size, unsigned int flags, uint64_t fd_off,
	       struct p2p_mem **out)
{
	struct p2p_mem *mem;
	void *p;
	int ret;

	if (!size || !IS_ALIGNED(size, P2P_PAGE_SIZE) || size > (1ull << 46) ||
	    (flags & ~P2P_MEM_HUGE) || !IS_ALIGNED(fd_off, P2P_HUGE_SIZE) || fd_off > (1ull << 50))
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
	p = p2p_reserve_va(NULL, size, mem->huge ? P2P_HUGE_SIZE : P2P_PAGE_SIZE, false);
	if (p == MAP_FAILED) {
		ret = -ENOMEM;
		goto err_close;
	}
	mem->base = mmap(p, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mem->fd,
			 (off_t)fd_off);
	if (mem->base == MAP_FAILED) {
		ret = -errno;
		munmap(p, size);
		goto err_close;
	}
	if (mem->huge)
		madvise(mem->base, size, MADV_HUGEPAGE);
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
	void *p;
	int ret;

	if (fd < 0)
		return -EBADF;
	if (!size || !IS_ALIGNED(size, P2P_PAGE_SIZE) || size > (1ull << 46) ||
	    (flags & ~P2P_MEM_HUGE) || !IS_ALIGNED(offset, P2P_PAGE_SIZE) || offset > (1ull << 50))
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
	p = p2p_reserve_va(NULL, size, mem->huge ? P2P_HUGE_SIZE : P2P_PAGE_SIZE, false);
	if (p == MAP_FAILED) {
		ret = -ENOMEM;
		goto err_close;
	}
	mem->base = mmap(p, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mem->fd,
			 (off_t)offset);
	if (mem->base == MAP_FAILED) {
		/* Not a shared-memory file, or opened read-only. */
		ret = errno == EACCES || errno == ENODEV ? -EINVAL : -errno;
		munmap(p, size);
		goto err_close;
	}
	if (mem->huge)
		madvise(mem->base, size, MADV_HUGEPAGE);
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
