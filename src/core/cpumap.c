// SPDX-License-Identifier: MIT
/*
 * CPU mappings of dma-bufs, their revocation, and the VA registry.
 *
 * A mapping is a reserved VA range into which each backing range of the
 * buffer is mapped (MAP_SHARED | MAP_FIXED of its memfd), so multi-range
 * buffers are contiguous in VA.  Mappings are populated in whole runs with
 * MADV_POPULATE_READ (2 MiB pages where shmem THP allows), never page
 * by page.
 *
 * Revocation takes the first of three means that works for a mapping; each
 * keeps the memfd's data and the VA range, and a revoke never reports
 * success for a mapping that is still accessible:
 *
 *  1. userfaultfd (platform-notes "userfaultfd"): the range is registered
 *     with the process's userfaultfd, created with UFFD_FEATURE_SIGBUS, in
 *     MISSING and MINOR mode, then MADV_DONTNEED drops the PTEs.  Every CPU
 *     access raises SIGBUS at the exact address; the VMA and
 *     /proc/self/maps are unchanged.  Un-revoke unregisters the range.
 *  2. remap (no userfaultfd: an unprivileged process with
 *     vm.unprivileged_userfaultfd=0, or P2PBUF_CPU_REVOKE=remap): each piece
 *     is replaced, MAP_FIXED at the same file offset, by a mapping of an
 *     empty sealed memfd ("p2pbuf-revoked").  Every CPU access is past the
 *     end of that file: SIGBUS at the exact address, as with (1).  While
 *     revoked, /proc/self/maps names that file.  Un-revoke maps the backing
 *     memfds back over it (MAP_FIXED, same offsets).
 *  3. mprotect(PROT_NONE), should both fail (ENOMEM): SIGSEGV instead of
 *     SIGBUS.  Un-revoke restores the protection.
 *
 * Kernel accesses to a revoked range (read(2) into it, non-fixed io_uring)
 * fail with EFAULT under all three.  A mapping whose un-revoke fails stays
 * revoked (logged) rather than half mapped.
 *
 * Locking: buf->cpu_lock protects buf->cpu_maps, each map's blocked flag
 * and buf->cpu_blocked; reg_lock (rw) protects the VA registry and nests
 * inside cpu_lock.  A mapping being created holds cpu_lock from the status
 * check to its insertion, so a concurrent revoke either sees it or it sees
 * the revoke.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core.h"

enum cpu_block {
	CPU_BLOCK_NONE = 0,
	CPU_BLOCK_UFFD,
	CPU_BLOCK_REMAP,
	CPU_BLOCK_PROT,
};

struct cpu_map {
	struct list_head node; /* buf->cpu_maps */
	uint8_t *addr;
	size_t len;
	uint64_t offset;    /* dma-buf offset of addr */
	uint64_t pgoff_tag; /* mmap offset as passed by the caller */
	struct p2p_dmabuf *buf;
	int prot;
	int flags;	   /* MAP_SHARED or MAP_PRIVATE */
	enum cpu_block blocked;
};

static pthread_rwlock_t reg_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct cpu_map **reg;
static size_t reg_nr, reg_max;

static pthread_mutex_t uffd_lock = PTHREAD_MUTEX_INITIALIZER; /* leaf */
static int uffd_fd = -ENOSYS;
static pid_t uffd_pid; /* the process uffd_fd was made in */
static int revoked_fd = -1; /* the empty sealed memfd of means 2, under uffd_lock */
static int revoke_forced; /* P2PBUF_CPU_REVOKE=remap: 1, read once under uffd_lock */

static void uffd_setup(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_SIGBUS | UFFD_FEATURE_MISSING_SHMEM |
			    UFFD_FEATURE_MINOR_SHMEM,
	};
	int fd;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
	if (fd < 0) {
		uffd_fd = -errno;
		pr_info("userfaultfd unavailable (%s): CPU mappings are revoked by remapping",
			strerror(errno));
		return;
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		uffd_fd = -errno;
		pr_err("UFFDIO_API failed: %s", strerror(errno));
		close(fd);
		return;
	}
	uffd_fd = fd;
}

/*
 * A userfaultfd acts on the mm of the process that created it, even when
 * used from a fork child (platform-notes: a receiver registers ranges in
 * the sender).  A child inheriting ours would register its ranges in the
 * parent and never revoke its own mappings, so each process makes its own.
 * The inherited fd is left alone: the child may have closed or reused it.
 */
int uffd_get(void)
{
	pid_t pid = getpid();
	int fd;

	pthread_mutex_lock(&uffd_lock);
	if (!revoke_forced) {
		const char *e = getenv("P2PBUF_CPU_REVOKE");

		revoke_forced = e && !strcmp(e, "remap") ? 1 : -1;
	}
	/* Out of fds or memory is transient: try again next time. */
	if (uffd_pid != pid || uffd_fd == -EMFILE || uffd_fd == -ENFILE || uffd_fd == -ENOMEM) {
		if (revoke_forced > 0)
			uffd_fd = -EPERM;
		else
			uffd_setup();
		uffd_pid = pid;
	}
	fd = uffd_fd;
	pthread_mutex_unlock(&uffd_lock);
	return fd;
}

/* The empty, sealed memfd that revoked pieces are remapped to (means 2). */
static int revoked_fd_get(void)
{
	int fd;

	pthread_mutex_lock(&uffd_lock);
	if (revoked_fd < 0) {
		fd = memfd_create("p2pbuf-revoked", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd >= 0 &&
		    fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
			close(fd);
			fd = -1;
		}
		revoked_fd = fd < 0 ? -errno : fd;
	}
	fd = revoked_fd;
	pthread_mutex_unlock(&uffd_lock);
	return fd;
}

P2P_API int p2p_library_init(void)
{
	int fd = uffd_get(), ret;

	p2p_hugepage_mode();
	/* The fallback is made up front too, so that the set of fds stays stable. */
	ret = revoked_fd_get();
	return fd >= 0 || ret >= 0 ? 0 : ret;
}

P2P_API enum p2p_cpu_revoke p2p_cpu_revoke_method(void)
{
	return uffd_get() >= 0 ? P2P_CPU_REVOKE_UFFD : P2P_CPU_REVOKE_REMAP;
}

static int map_pieces(struct p2p_dmabuf *buf, uint8_t *va, size_t len, int prot, int flags,
		      uint64_t offset, bool populate, int fd);

/* Means 1: userfaultfd SIGBUS in MISSING + MINOR mode, then drop the PTEs. */
static int block_uffd(struct cpu_map *m)
{
	struct uffdio_register r = {
		.range = { .start = (uintptr_t)m->addr, .len = m->len },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR,
	};
	struct uffdio_range u = r.range;
	int fd = uffd_get(), ret;

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_REGISTER, &r) < 0)
		return -errno;
	if (madvise(m->addr, m->len, MADV_DONTNEED) < 0) {
		ret = -errno;
		ioctl(fd, UFFDIO_UNREGISTER, &u);
		return ret;
	}
	return 0;
}

static int map_block(struct cpu_map *m)
{
	int ret, fd;

	if (m->blocked)
		return 0;
	ret = block_uffd(m);
	if (!ret) {
		m->blocked = CPU_BLOCK_UFFD;
		return 0;
	}
	/* Means 2: every piece onto the empty memfd, same offsets. */
	fd = revoked_fd_get();
	if (fd >= 0) {
		ret = map_pieces(m->buf, m->addr, m->len, m->prot, m->flags, m->offset, false, fd);
		if (!ret) {
			m->blocked = CPU_BLOCK_REMAP;
			return 0;
		}
	} else {
		ret = fd;
	}
	/* Means 3: no access at all (SIGSEGV). */
	if (!mprotect(m->addr, m->len, PROT_NONE)) {
		pr_warn("revoke of %s: %p+%zu revoked with PROT_NONE (%s): SIGSEGV, not SIGBUS",
			m->buf->name, m->addr, m->len, strerror(-ret));
		m->blocked = CPU_BLOCK_PROT;
		return 0;
	}
	return -errno;
}

/* Make @m accessible again; on failure it stays revoked (never half mapped). */
static int map_unblock(struct cpu_map *m)
{
	struct uffdio_range r = { .start = (uintptr_t)m->addr, .len = m->len };
	int ret = 0;

	switch (m->blocked) {
	case CPU_BLOCK_NONE:
		return 0;
	case CPU_BLOCK_UFFD:
		/* If unregistering fails, mapping the pieces again replaces the registered VMAs. */
		if (ioctl(uffd_get(), UFFDIO_UNREGISTER, &r) < 0)
			ret = map_pieces(m->buf, m->addr, m->len, m->prot, m->flags, m->offset,
					 false, -1);
		break;
	case CPU_BLOCK_REMAP:
		ret = map_pieces(m->buf, m->addr, m->len, m->prot, m->flags, m->offset, false, -1);
		if (ret) {
			/* Some pieces may be back: revoke them all again. */
			int fd = revoked_fd_get();

			if (fd < 0 || map_pieces(m->buf, m->addr, m->len, m->prot, m->flags,
						 m->offset, false, fd))
				mprotect(m->addr, m->len, PROT_NONE);
		}
		break;
	case CPU_BLOCK_PROT:
		if (mprotect(m->addr, m->len, m->prot) < 0)
			ret = -errno;
		break;
	}
	if (ret) {
		pr_err("un-revoke of %s: %p+%zu stays revoked: %s", m->buf->name, m->addr, m->len,
		       strerror(-ret));
		return ret;
	}
	m->blocked = CPU_BLOCK_NONE;
	return 0;
}

int cpumap_block_all(struct p2p_dmabuf *buf)
{
	struct cpu_map *m;
	int ret = 0, err;

	pthread_mutex_lock(&buf->cpu_lock);
	if (atomic_load(&buf->status) != P2P_DMABUF_OK || !tree_state_ok(buf)) {
		buf->cpu_blocked = true;
		list_for_each_entry(m, &buf->cpu_maps, node) {
			err = map_block(m);
			if (err && !ret)
				ret = err;
		}
	}
	pthread_mutex_unlock(&buf->cpu_lock);
	if (ret)
		pr_err("revoke of %s: CPU mappings still accessible: %s", buf->name,
		       strerror(-ret));
	return ret;
}

int cpumap_unblock_all(struct p2p_dmabuf *buf)
{
	struct cpu_map *m;
	int ret = 0, err;

	pthread_mutex_lock(&buf->cpu_lock);
	if (atomic_load(&buf->status) == P2P_DMABUF_OK && tree_state_ok(buf)) {
		buf->cpu_blocked = false;
		list_for_each_entry(m, &buf->cpu_maps, node) {
			err = map_unblock(m);
			if (err && !ret)
				ret = err;
		}
	}
	pthread_mutex_unlock(&buf->cpu_lock);
	return ret;
}

/*
 * fork(): the process-tree handlers (src/core/tree.c) hold every buffer's
 * cpu_lock across fork; these take the rest, so the child's copies are
 * consistent.  In the child, locks are released or re-initialized (an
 * rwlock knows its writer by thread id, which fork() changed).
 */
void cpumap_fork_prepare(void)
{
	pthread_rwlock_wrlock(&reg_lock);
	pthread_mutex_lock(&uffd_lock);
}

void cpumap_fork_parent(void)
{
	pthread_mutex_unlock(&uffd_lock);
	pthread_rwlock_unlock(&reg_lock);
}

void cpumap_fork_child(void)
{
	pthread_mutex_unlock(&uffd_lock);
	pthread_rwlock_init(&reg_lock, NULL);
}

/*
 * In a fork child, revoke again each mapping of @buf that the parent had
 * revoked with its userfaultfd: the child does not inherit the
 * registrations, so those ranges are readable until this runs (from the
 * atfork child handler, before fork() returns).  uffd_get() makes the
 * child's own userfaultfd; remapped and PROT_NONE ranges are inherited
 * as they are.
 */
void cpumap_fork_reblock(struct p2p_dmabuf *buf)
{
	struct cpu_map *m;
	int ret;

	pthread_mutex_lock(&buf->cpu_lock);
	list_for_each_entry(m, &buf->cpu_maps, node) {
		if (m->blocked != CPU_BLOCK_UFFD)
			continue;
		m->blocked = CPU_BLOCK_NONE;
		ret = map_block(m);
		if (ret) {
			/* Last resort: nothing may read it, not even later. */
			pr_err("fork child: %p+%zu of %s cannot be revoked again (%s): unmapped",
			       m->addr, m->len, buf->name, strerror(-ret));
			mmap(m->addr, m->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			m->blocked = CPU_BLOCK_REMAP; /* un-revoke maps the pieces back */
		}
	}
	pthread_mutex_unlock(&buf->cpu_lock);
}

static size_t reg_find_locked(uintptr_t addr)
{
	size_t lo = 0, hi = reg_nr;

	/* First entry whose start is above addr. */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if ((uintptr_t)reg[mid]->addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int reg_insert(struct cpu_map *m)
{
	size_t pos;

	pthread_rwlock_wrlock(&reg_lock);
	if (reg_nr == reg_max) {
		size_t n = reg_max ? reg_max * 2 : 64;
		struct cpu_map **r = realloc(reg, n * sizeof(*r));

		if (!r) {
			pthread_rwlock_unlock(&reg_lock);
			return -ENOMEM;
		}
		reg = r;
		reg_max = n;
	}
	pos = reg_find_locked((uintptr_t)m->addr);
	memmove(&reg[pos + 1], &reg[pos], (reg_nr - pos) * sizeof(*reg));
	reg[pos] = m;
	reg_nr++;
	pthread_rwlock_unlock(&reg_lock);
	return 0;
}

/* Remove and return the mapping that is exactly [addr, addr + len). */
static struct cpu_map *reg_remove(uintptr_t addr, size_t len)
{
	struct cpu_map *m = NULL;
	size_t pos;

	pthread_rwlock_wrlock(&reg_lock);
	pos = reg_find_locked(addr);
	if (pos && (uintptr_t)reg[pos - 1]->addr == addr && reg[pos - 1]->len == len) {
		m = reg[pos - 1];
		memmove(&reg[pos - 1], &reg[pos], (reg_nr - pos) * sizeof(*reg));
		reg_nr--;
	}
	pthread_rwlock_unlock(&reg_lock);
	return m;
}

/*
 * Map the pieces of [offset, offset + len) of @buf at @va, each from its
 * backing memfd, or all from @fd (>= 0) at the same file offsets.
 */
static int map_pieces(struct p2p_dmabuf *buf, uint8_t *va, size_t len, int prot, int flags,
		      uint64_t offset, bool populate, int fd)
{
	uint64_t roff;
	unsigned int i = dmabuf_find_range(buf, offset, &roff);
	size_t done = 0;

	for (; done < len && i < buf->nr_ranges; i++, roff = 0) {
		const struct p2p_phys_range *r = &buf->ranges[i];
		size_t n = MIN(len - done, r->length - roff);
		int mfd = fd >= 0 ? fd : r->mem->fd, rofd = -1;
		void *p;

		/*
		 * A buffer exported read-only is mapped from a read-only fd of
		 * its memory, so that mprotect(PROT_WRITE) of a shared mapping
		 * fails with EACCES as it does for a file opened O_RDONLY (no
		 * VM_MAYWRITE).  If /proc is not there, the mapping is still
		 * read-only, but mprotect() could make it writable.
		 */
		if (fd < 0 && (flags & MAP_TYPE) == MAP_SHARED && !p2p_dmabuf_writable(buf)) {
			char path[40];

			snprintf(path, sizeof(path), "/proc/self/fd/%d", r->mem->fd);
			rofd = open(path, O_RDONLY | O_CLOEXEC);
			if (rofd >= 0)
				mfd = rofd;
		}
		p = mmap(va + done, n, prot, (flags & (MAP_SHARED | MAP_PRIVATE)) | MAP_FIXED, mfd,
			 (off_t)(r->mem->fd_off + r->offset + roff));
		if (rofd >= 0)
			close(rofd);
		if (p == MAP_FAILED)
			return -errno;
		/* Nothing to advise on the empty revoked memfd (callers never populate it). */
		if (fd < 0 && r->mem->huge)
			madvise(p, n, MADV_HUGEPAGE);
		/*
		 * A read fault on a shared writable shmem mapping installs a
		 * writable PTE: POPULATE_READ builds the page tables in one pass
		 * (about 4x cheaper than POPULATE_WRITE's write-fault path) and
		 * later writes take no fault.
		 */
		if (populate && (prot & (PROT_READ | PROT_WRITE)))
			madvise(p, n, MADV_POPULATE_READ);
		done += n;
	}
	return done == len ? 0 : -EINVAL;
}

int cpumap_create(struct p2p_dmabuf *buf, void *addr, size_t len, int prot, int flags,
		  uint64_t offset, uint64_t pgoff_tag, void **out)
{
	bool fixed = flags & MAP_FIXED, ok;
	struct cpu_map *m;
	uint64_t roff;
	size_t align = P2P_PAGE_SIZE;
	uint8_t *va;
	int ret;

	if (!(flags & (MAP_SHARED | MAP_PRIVATE)) || offset > buf->size || len > buf->size - offset)
		return -EINVAL;
	if (fixed && !IS_ALIGNED((uintptr_t)addr, P2P_PAGE_SIZE))
		return -EINVAL;
	if (prot & ~(PROT_READ | PROT_WRITE))
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;

	/* Huge pages need VA and file offset congruent modulo 2 MiB. */
	{
		unsigned int i = dmabuf_find_range(buf, offset, &roff);

		if (i < buf->nr_ranges && buf->ranges[i].mem->huge && len >= P2P_HUGE_SIZE)
			align = P2P_HUGE_SIZE;
		roff = (buf->ranges[i < buf->nr_ranges ? i : 0].offset + roff) & (align - 1);
	}
	va = p2p_reserve_va(fixed ? addr : NULL, len + (fixed ? 0 : roff), align, fixed);
	if (va == MAP_FAILED) {
		free(m);
		return -ENOMEM;
	}
	if (!fixed && roff) {
		munmap(va, roff);
		va += roff;
	}
	m->addr = va;
	m->len = len;
	m->offset = offset;
	m->pgoff_tag = pgoff_tag;
	m->prot = prot;
	m->flags = flags & (MAP_SHARED | MAP_PRIVATE);
	m->buf = p2p_dmabuf_ref(buf);
	list_init(&m->node);

	pthread_mutex_lock(&buf->cpu_lock);
	ok = atomic_load(&buf->status) == P2P_DMABUF_OK && tree_state_ok(buf);
	ret = map_pieces(buf, va, len, prot, flags, offset, ok, -1);
	if (!ret && !ok)
		ret = map_block(m);
	if (!ret)
		ret = reg_insert(m);
	if (ret) {
		pthread_mutex_unlock(&buf->cpu_lock);
		munmap(va, len);
		p2p_dmabuf_put(buf);
		free(m);
		return ret;
	}
	list_add_tail(&m->node, &buf->cpu_maps);
	pthread_mutex_unlock(&buf->cpu_lock);
	*out = va;
	return 0;
}

P2P_API int p2p_munmap(void *addr, size_t length)
{
	struct cpu_map *m;
	struct p2p_dmabuf *buf;

	m = reg_remove((uintptr_t)addr, ALIGN_UP(length, P2P_PAGE_SIZE));
	if (!m)
		return -EINVAL;
	buf = m->buf;
	pthread_mutex_lock(&buf->cpu_lock);
	list_del_init(&m->node);
	munmap(m->addr, m->len);
	pthread_mutex_unlock(&buf->cpu_lock);
	free(m);
	p2p_dmabuf_put(buf);
	return 0;
}

P2P_API int p2p_va_lookup(const void *addr, struct p2p_dmabuf **out, uint64_t *offset,
			  size_t *avail)
{
	uintptr_t a = (uintptr_t)addr;
	int ret = -EFAULT;
	size_t pos;

	pthread_rwlock_rdlock(&reg_lock);
	pos = reg_find_locked(a);
	if (pos) {
		struct cpu_map *m = reg[pos - 1];

		if (a < (uintptr_t)m->addr + m->len) {
			*out = p2p_dmabuf_ref(m->buf);
			*offset = m->offset + (a - (uintptr_t)m->addr);
			if (avail)
				*avail = m->len - (a - (uintptr_t)m->addr);
			ret = 0;
		}
	}
	pthread_rwlock_unlock(&reg_lock);
	return ret;
}

P2P_API bool p2p_va_range_mapped(const void *addr, size_t len)
{
	return len && cpumap_range_mapped((uintptr_t)addr, len);
}

/* Does any p2pbuf CPU mapping overlap [addr, addr + len)?  @len > 0. */
bool cpumap_range_mapped(uintptr_t addr, size_t len)
{
	bool ret = false;
	size_t pos;

	pthread_rwlock_rdlock(&reg_lock);
	/* Mappings don't overlap: only the last one starting in range can reach it. */
	pos = reg_find_locked(addr + (len - 1));
	if (pos)
		ret = (uintptr_t)reg[pos - 1]->addr + reg[pos - 1]->len > addr;
	pthread_rwlock_unlock(&reg_lock);
	return ret;
}
