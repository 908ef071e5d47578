// SPDX-License-Identifier: MIT
/*
 * libp2pbuf-preload.so: the libc entry points of the kernel-uAPI door.
 *
 * Each entry is wrapped once; the next definition (libc's) is looked up
 * once with dlsym(RTLD_NEXT) and kept.  "Not mine" is answered first and
 * fast: for an fd, p2p_fd_is_file() (one table load); for a path, a
 * five-byte compare ("/dev/" or "/sys/") before anything else.
 *
 * Paths: door_map_path() (door.c) sends paths under the door's prefixes to
 * the generated tree, or to the constructors for the device nodes.
 * Fds of p2pbuf files go to the file layer's dispatch entries
 * (p2p_fd_ioctl(), p2p_fd_mmap(), ...): the door never dispatches itself.
 *
 * The static library linked into this module calls libc through
 * __wrap_<name> (-Wl,--wrap), defined at the end of this file, so
 * libp2pbuf's own calls never come back into these wrappers.
 *
 * Built without _FILE_OFFSET_BITS so that open and open64, mmap and
 * mmap64, ... are separate definitions, as glibc exports them.
 */
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <linux/close_range.h>

#include <p2pbuf/p2pbuf.h>

#include "door.h"
#include "../util/private.h"

#define EXPORT __attribute__((visibility("default")))

/* glibc's pre-2.33 stat entry points, still exported for old binaries. */
int __xstat(int ver, const char *path, struct stat *buf);
int __xstat64(int ver, const char *path, struct stat64 *buf);
int __lxstat(int ver, const char *path, struct stat *buf);
int __lxstat64(int ver, const char *path, struct stat64 *buf);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int flags);
int __fxstat(int ver, int fd, struct stat *buf);
int __fxstat64(int ver, int fd, struct stat64 *buf);
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t nbytes, off_t off, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t nbytes, off64_t off, size_t buflen);
int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);
int fcntl64(int fd, int cmd, ...);

/* ---------------------------------------------------------------------- */
/* The next definitions                                                    */

#define REAL_DECL(name) static __typeof__(name) *real_##name
REAL_DECL(open); REAL_DECL(open64); REAL_DECL(openat); REAL_DECL(openat64);
REAL_DECL(__open_2); REAL_DECL(__open64_2); REAL_DECL(__openat_2); REAL_DECL(__openat64_2);
REAL_DECL(creat); REAL_DECL(creat64); REAL_DECL(fopen); REAL_DECL(fopen64);
REAL_DECL(stat); REAL_DECL(stat64); REAL_DECL(lstat); REAL_DECL(lstat64);
REAL_DECL(fstatat); REAL_DECL(fstatat64); REAL_DECL(statx);
REAL_DECL(__xstat); REAL_DECL(__xstat64); REAL_DECL(__lxstat); REAL_DECL(__lxstat64);
REAL_DECL(__fxstatat); REAL_DECL(__fxstatat64);
REAL_DECL(fstat); REAL_DECL(fstat64); REAL_DECL(__fxstat); REAL_DECL(__fxstat64);
REAL_DECL(lseek); REAL_DECL(lseek64); REAL_DECL(ftruncate); REAL_DECL(ftruncate64);
REAL_DECL(access); REAL_DECL(faccessat); REAL_DECL(readlink); REAL_DECL(readlinkat);
REAL_DECL(realpath); REAL_DECL(opendir); REAL_DECL(scandir); REAL_DECL(scandir64);
REAL_DECL(ioctl); REAL_DECL(mmap); REAL_DECL(mmap64); REAL_DECL(munmap);
REAL_DECL(read); REAL_DECL(write); REAL_DECL(pread); REAL_DECL(pread64);
REAL_DECL(pwrite); REAL_DECL(pwrite64); REAL_DECL(__read_chk); REAL_DECL(__pread_chk);
REAL_DECL(__pread64_chk);
REAL_DECL(close); REAL_DECL(dup); REAL_DECL(dup2); REAL_DECL(dup3);
REAL_DECL(fcntl); REAL_DECL(fcntl64);
REAL_DECL(getxattr); REAL_DECL(lgetxattr); REAL_DECL(listxattr); REAL_DECL(llistxattr);
REAL_DECL(poll); REAL_DECL(ppoll); REAL_DECL(recvmsg); REAL_DECL(close_range);
REAL_DECL(epoll_ctl);
REAL_DECL(closefrom);

static void *next_sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	/* glibc keeps the old stat entries as compat symbols only: ask for the version. */
	if (!p)
		p = dlvsym(RTLD_NEXT, name, "GLIBC_2.2.5");
	if (!p) {
		door_say("libc has no %s", name);
		abort();
	}
	return p;
}

/* The next definition, looked up once (a benign race: every thread stores the same value). */
static inline void *next_cached(void **slot, const char *name)
{
	void *p = __atomic_load_n(slot, __ATOMIC_RELAXED);

	if (__builtin_expect(p != NULL, 1))
		return p;
	p = next_sym(name);
	__atomic_store_n(slot, p, __ATOMIC_RELAXED);
	return p;
}
#define REAL(name) ((__typeof__(real_##name))next_cached((void **)&real_##name, #name))

/* -errno or a value: the libc convention. */
static long ret_errno(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* Not mine, fast: no door path mapped yet means no p2pbuf file (door_active). */
static inline bool mine_fd(int fd)
{
	return atomic_load_explicit(&door_active, memory_order_acquire) && fd >= 0 &&
	       unlikely(p2p_fd_is_file(fd));
}

/* ---------------------------------------------------------------------- */
/* The open family                                                         */

/*
 * Device fds opened through /dev/vfio/devices/vfioN: the VFIO layer's
 * device files look the same whether they came from the cdev or from
 * VFIO_GROUP_GET_DEVICE_FD, but fstat(2) tells them apart in the kernel (a
 * character device, or the anon inode "[vfio-device]").  The door remembers
 * the last CDEV_MEMORY cdev opens by inode (the file's token memfd: unique
 * while the file lives, and memfd inode numbers are not reused soon).
 */
#define CDEV_MEMORY 256
static pthread_mutex_t cdev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cdev_open {
	dev_t dev;
	ino_t ino;
	unsigned int index;
} cdev_opens[CDEV_MEMORY];
static unsigned int cdev_next;

static void cdev_opened(int fd, unsigned int index)
{
	struct stat st;

	if (REAL(fstat)(fd, &st))
		return;
	pthread_mutex_lock(&cdev_lock);
	cdev_opens[cdev_next % CDEV_MEMORY] = (struct cdev_open){ st.st_dev, st.st_ino, index + 1 };
	cdev_next++;
	pthread_mutex_unlock(&cdev_lock);
}

/* The cdev index of the device file with inode @dev/@ino, or -1 (not opened as a cdev). */
static int cdev_lookup(dev_t dev, ino_t ino)
{
	int ret = -1;

	pthread_mutex_lock(&cdev_lock);
	for (unsigned int i = 0; i < CDEV_MEMORY; i++) {
		if (cdev_opens[i].index && cdev_opens[i].ino == ino && cdev_opens[i].dev == dev) {
			ret = (int)cdev_opens[i].index - 1;
			break;
		}
	}
	pthread_mutex_unlock(&cdev_lock);
	return ret;
}

static int open_mine(const struct door_target *t, int flags, mode_t mode,
		     int (*real)(const char *, int, ...))
{
	int fd;

	if (t->node == DOOR_TREE)
		return real(t->path, flags, mode);
	if ((flags & O_CREAT) && (flags & O_EXCL)) {
		errno = EEXIST;
		return -1;
	}
	if (flags & O_DIRECTORY) {
		errno = ENOTDIR;
		return -1;
	}
	fd = door_open_node(t, flags);
	if (fd >= 0 && t->node == DOOR_VFIO_CDEV)
		cdev_opened(fd, t->num);
	return (int)ret_errno(fd);
}

#define OPEN_MODE(flags, mode)                                                           \
	do {                                                                             \
		if ((flags) & (O_CREAT | __O_TMPFILE)) {                                 \
			va_list ap;                                                      \
			va_start(ap, flags);                                             \
			mode = (mode_t)va_arg(ap, int);                                  \
			va_end(ap);                                                      \
		}                                                                        \
	} while (0)

EXPORT int open(const char *path, int flags, ...)
{
	struct door_target t;
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return open_mine(&t, flags, mode, REAL(open));
	return REAL(open)(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	struct door_target t;
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return open_mine(&t, flags, mode, REAL(open64));
	return REAL(open64)(path, flags, mode);
}

/* An absolute path ignores dirfd, as openat(2) does; a relative one is never the door's. */
EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	struct door_target t;
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return open_mine(&t, flags, mode, REAL(open));
	return REAL(openat)(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	struct door_target t;
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return open_mine(&t, flags, mode, REAL(open64));
	return REAL(openat64)(dirfd, path, flags, mode);
}

/* _FORTIFY_SOURCE's entries (no mode: O_CREAT without one aborts in glibc). */
EXPORT int __open_2(const char *path, int flags)
{
	struct door_target t;

	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return open_mine(&t, flags, 0, REAL(open));
	return REAL(__open_2)(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	struct door_target t;

	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return open_mine(&t, flags, 0, REAL(open64));
	return REAL(__open64_2)(path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	struct door_target t;

	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return open_mine(&t, flags, 0, REAL(open));
	return REAL(__openat_2)(dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	struct door_target t;

	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return open_mine(&t, flags, 0, REAL(open64));
	return REAL(__openat64_2)(dirfd, path, flags);
}

EXPORT int creat(const char *path, mode_t mode)
{
	return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

EXPORT int creat64(const char *path, mode_t mode)
{
	return open64(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

/* fopen's mode string as open flags (glibc's rules, minus the ",ccs=" part). */
static int fopen_flags(const char *mode)
{
	int flags;

	switch (mode[0]) {
	case 'r': flags = O_RDONLY; break;
	case 'w': flags = O_WRONLY | O_CREAT | O_TRUNC; break;
	case 'a': flags = O_WRONLY | O_CREAT | O_APPEND; break;
	default: return -1;
	}
	for (const char *m = mode + 1; *m && *m != ','; m++) {
		if (*m == '+')
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		else if (*m == 'e')
			flags |= O_CLOEXEC;
		else if (*m == 'x')
			flags |= O_EXCL;
	}
	return flags;
}

static FILE *fopen_mine(const struct door_target *t, const char *mode,
			FILE *(*real)(const char *, const char *))
{
	int flags, fd;
	FILE *f;

	if (t->node == DOOR_TREE)
		return real(t->path, mode);
	flags = fopen_flags(mode);
	if (flags < 0) {
		errno = EINVAL;
		return NULL;
	}
	fd = open_mine(t, flags, 0666, REAL(open));
	if (fd < 0)
		return NULL;
	f = fdopen(fd, mode);
	if (!f) {
		int e = errno;

		close(fd);
		errno = e;
	}
	return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	struct door_target t;

	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return fopen_mine(&t, mode, REAL(fopen));
	return REAL(fopen)(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	struct door_target t;

	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE)
		return fopen_mine(&t, mode, REAL(fopen64));
	return REAL(fopen64)(path, mode);
}

/* ---------------------------------------------------------------------- */
/* The stat family, access, readlink, realpath, directories                 */

/* The tree holds regular files for device nodes: show them as the kernel's char devices. */
#define FIX_STAT(t, st)                                                                  \
	do {                                                                             \
		unsigned int maj_, min_;                                                 \
		if (S_ISREG((st)->st_mode) && door_node_rdev(t, &maj_, &min_)) {        \
			(st)->st_mode = S_IFCHR | ((st)->st_mode & 07777);               \
			(st)->st_rdev = makedev(maj_, min_);                             \
			(st)->st_size = 0;                                               \
		}                                                                        \
	} while (0)

#define PATH_CALL(path, t, call_mine, call_real)                                         \
	do {                                                                             \
		if (unlikely(door_might_be_mine(path)) &&                                \
		    door_map_path(path, &(t)) != DOOR_NOT_MINE) {                        \
			call_mine;                                                       \
		}                                                                        \
		call_real;                                                               \
	} while (0)

/*
 * fstat(2) and friends on the door's fds describe what the kernel's do
 * (docs/door.md, "What fstat, lseek and ftruncate show"):
 * - an fd opened on a device node (container, group, cdev, iommufd, heap):
 *   the node, exactly as stat(2) of its path in the door shows it;
 * - a dma-buf: an inode of the dmabuf pseudo filesystem, which shows no file
 *   type (st_mode 0600), st_size and st_blocks of the buffer's size, one
 *   link; its number is the one bufinfo lists (the token memfd's);
 * - a device fd from VFIO_GROUP_GET_DEVICE_FD: the kernel's anon inode
 *   ("[vfio-device]"), the very inode every anon_inode file shares, read
 *   from an eventfd.
 */
enum fd_kind { FD_NODE, FD_DMABUF, FD_ANON, FD_OTHER };

/* The name the file gave its token memfd, after "<kind>:": "/memfd:vfio-group:1 (deleted)". */
static bool token_name(int fd, const char *kind, char *out, size_t len)
{
	char proc[48], link[PATH_MAX], *s, *e;
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = REAL(readlink)(proc, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = 0;
	s = strstr(link, kind);
	if (!s || s[strlen(kind)] != ':')
		return false;
	s += strlen(kind) + 1;
	e = strstr(s, " (deleted)");
	if (e)
		*e = 0;
	if (!*s || strlen(s) >= len)
		return false;
	strcpy(out, s);
	return true;
}

/*
 * What p2pbuf file @fd is for fstat: FD_NODE with @t, FD_DMABUF with
 * *@size, FD_ANON, or FD_OTHER (the memfd underneath describes it).
 * Return: the kind, or -errno (-EBADF: @fd closed meanwhile).
 */
static int fd_kind(int fd, struct door_target *t, uint64_t *size)
{
	struct p2p_file *f;
	enum door_node node = DOOR_NOT_MINE;
	const char *kind;
	char name[NAME_MAX + 1] = "";
	unsigned long num = 0;
	int r = p2p_file_from_fd(fd, NULL, &f), ret = FD_OTHER;

	if (r)
		return r == -EINVAL ? FD_OTHER : r;
	kind = p2p_file_ops(f)->name;
	if (!strcmp(kind, "dmabuf")) {
		struct p2p_dmabuf *buf;

		p2p_file_put(f);
		if (p2p_dmabuf_get(fd, &buf))
			return FD_OTHER;
		*size = p2p_dmabuf_size(buf);
		p2p_dmabuf_put(buf);
		return FD_DMABUF;
	}
	if (!strcmp(kind, "vfio-container")) {
		node = DOOR_VFIO_CONTAINER;
	} else if (!strcmp(kind, "iommufd")) {
		node = DOOR_IOMMUFD;
	} else if (!strcmp(kind, "vfio-group")) {
		if (token_name(fd, kind, name, sizeof(name)))
			node = DOOR_VFIO_GROUP, num = strtoul(name, NULL, 10);
	} else if (!strcmp(kind, "dma-heap")) {
		if (token_name(fd, kind, name, sizeof(name)))
			node = DOOR_DMA_HEAP;
	} else if (!strcmp(kind, "vfio-device")) {
		struct stat st;
		int idx = REAL(fstat)(fd, &st) ? -1 : cdev_lookup(st.st_dev, st.st_ino);

		if (idx >= 0)
			node = DOOR_VFIO_CDEV, num = (unsigned long)idx;
		else
			ret = FD_ANON;
	}
	p2p_file_put(f);
	if (node != DOOR_NOT_MINE && door_node_target(node, (unsigned int)num, name, t))
		ret = FD_NODE;
	return ret;
}

/* An anon_inode file's fd, to read the shared anon inode from: an eventfd. */
static int anon_fd(void)
{
	return eventfd(0, EFD_CLOEXEC);
}

#define FSTAT_MINE(fname, stype, real_stat, real_fstat)                                  \
	static int fname(int fd, stype *st)                                              \
	{                                                                                \
		struct door_target t;                                                    \
		uint64_t size = 0;                                                       \
		int kind = fd_kind(fd, &t, &size), r, e;                                 \
		switch (kind) {                                                          \
		case FD_NODE:                                                            \
			r = real_stat(t.path, st);                                       \
			if (!r)                                                          \
				FIX_STAT(&t, st);                                        \
			return r;                                                        \
		case FD_DMABUF:                                                          \
			r = real_fstat(fd, st);                                          \
			if (!r) {                                                        \
				st->st_mode = S_IRUSR | S_IWUSR;                         \
				st->st_nlink = 1;                                        \
				st->st_rdev = 0;                                         \
				st->st_size = (off_t)size;                               \
				st->st_blocks = (blkcnt_t)(size >> 9);                   \
				st->st_blksize = 4096;                                   \
			}                                                                \
			return r;                                                        \
		case FD_ANON:                                                            \
			e = anon_fd();                                                   \
			if (e < 0)                                                       \
				return -1;                                               \
			r = real_fstat(e, st);                                           \
			REAL(close)(e);                                                  \
			return r;                                                        \
		case FD_OTHER:                                                           \
			return real_fstat(fd, st);                                       \
		default:                                                                 \
			return (int)ret_errno(kind);                                     \
		}                                                                        \
	}
FSTAT_MINE(fstat_mine, struct stat, REAL(stat), REAL(fstat))
FSTAT_MINE(fstat64_mine, struct stat64, REAL(stat64), REAL(fstat64))

static int statx_mine(int fd, int flags, unsigned int mask, struct statx *stx)
{
	struct door_target t;
	uint64_t size = 0;
	unsigned int maj, min;
	int kind = fd_kind(fd, &t, &size), r, e;

	flags &= ~AT_EMPTY_PATH;
	switch (kind) {
	case FD_NODE:
		r = REAL(statx)(AT_FDCWD, t.path, flags, mask, stx);
		if (!r && door_node_rdev(&t, &maj, &min)) {
			stx->stx_mode = (uint16_t)(S_IFCHR | (stx->stx_mode & 07777));
			stx->stx_rdev_major = maj;
			stx->stx_rdev_minor = min;
			stx->stx_size = 0;
		}
		return r;
	case FD_DMABUF:
		r = REAL(statx)(fd, "", flags | AT_EMPTY_PATH, mask, stx);
		if (!r) {
			stx->stx_mode = S_IRUSR | S_IWUSR;
			stx->stx_nlink = 1;
			stx->stx_rdev_major = stx->stx_rdev_minor = 0;
			stx->stx_size = size;
			stx->stx_blocks = size >> 9;
			stx->stx_blksize = 4096;
		}
		return r;
	case FD_ANON:
		e = anon_fd();
		if (e < 0)
			return -1;
		r = REAL(statx)(e, "", flags | AT_EMPTY_PATH, mask, stx);
		REAL(close)(e);
		return r;
	case FD_OTHER:
		return REAL(statx)(fd, "", flags | AT_EMPTY_PATH, mask, stx);
	default:
		return (int)ret_errno(kind);
	}
}

EXPORT int fstat(int fd, struct stat *st)
{
	if (mine_fd(fd))
		return fstat_mine(fd, st);
	return REAL(fstat)(fd, st);
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
	if (mine_fd(fd))
		return fstat64_mine(fd, st);
	return REAL(fstat64)(fd, st);
}

EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	if (mine_fd(fd))
		return fstat_mine(fd, st);
	return REAL(__fxstat)(ver, fd, st);
}

EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
	if (mine_fd(fd))
		return fstat64_mine(fd, st);
	return REAL(__fxstat64)(ver, fd, st);
}

/* fstatat(fd, "", st, AT_EMPTY_PATH) and statx() alike are fstat(fd). */
static bool empty_path(const char *path) __attribute__((noinline));
static bool empty_path(const char *path)
{
	return !path || !*path; /* statx(2) takes NULL since Linux 6.11 */
}
#define EMPTY_PATH_MINE(dirfd, path, flags)                                              \
	(unlikely((flags) & AT_EMPTY_PATH) && empty_path(path) && mine_fd(dirfd))

/*
 * lseek: a dma-buf has the kernel's dma_buf_llseek() (SEEK_END or SEEK_SET
 * of 0 give the size or 0, without moving anything; all else EINVAL); the
 * other files have no llseek in their file_operations: ESPIPE.  A whence
 * past SEEK_MAX is EINVAL first, as in ksys_lseek().
 */
static off64_t lseek_mine(int fd, off64_t off, int whence)
{
	struct p2p_dmabuf *buf;
	uint64_t size;
	int r;

	if ((unsigned int)whence > SEEK_HOLE)
		return ret_errno(-EINVAL);
	r = p2p_dmabuf_get(fd, &buf);
	if (r)
		return ret_errno(r == -EINVAL ? -ESPIPE : r);
	size = p2p_dmabuf_size(buf);
	p2p_dmabuf_put(buf);
	if (off != 0 || (whence != SEEK_SET && whence != SEEK_END))
		return ret_errno(-EINVAL);
	return whence == SEEK_END ? (off64_t)size : 0;
}

EXPORT off_t lseek(int fd, off_t off, int whence)
{
	if (mine_fd(fd))
		return (off_t)lseek_mine(fd, off, whence);
	return REAL(lseek)(fd, off, whence);
}

EXPORT off64_t lseek64(int fd, off64_t off, int whence)
{
	if (mine_fd(fd))
		return lseek_mine(fd, off, whence);
	return REAL(lseek64)(fd, off, whence);
}

/* ftruncate: none of them is a regular file (do_ftruncate()): EINVAL. */
EXPORT int ftruncate(int fd, off_t len)
{
	if (mine_fd(fd))
		return (int)ret_errno(-EINVAL);
	return REAL(ftruncate)(fd, len);
}

EXPORT int ftruncate64(int fd, off64_t len)
{
	if (mine_fd(fd))
		return (int)ret_errno(-EINVAL);
	return REAL(ftruncate64)(fd, len);
}

#define STAT_WRAPPER(name, stype)                                                        \
	EXPORT int name(const char *path, stype *st)                                     \
	{                                                                                \
		struct door_target t;                                                    \
		int r;                                                                   \
		PATH_CALL(path, t,                                                       \
			  r = REAL(name)(t.path, st); if (!r) FIX_STAT(&t, st); return r, \
			  return REAL(name)(path, st));                                  \
	}
STAT_WRAPPER(stat, struct stat)
STAT_WRAPPER(stat64, struct stat64)
STAT_WRAPPER(lstat, struct stat)
STAT_WRAPPER(lstat64, struct stat64)

#define XSTAT_WRAPPER(name, stype)                                                       \
	EXPORT int name(int ver, const char *path, stype *st)                            \
	{                                                                                \
		struct door_target t;                                                    \
		int r;                                                                   \
		PATH_CALL(path, t,                                                       \
			  r = REAL(name)(ver, t.path, st); if (!r) FIX_STAT(&t, st); return r, \
			  return REAL(name)(ver, path, st));                             \
	}
XSTAT_WRAPPER(__xstat, struct stat)
XSTAT_WRAPPER(__xstat64, struct stat64)
XSTAT_WRAPPER(__lxstat, struct stat)
XSTAT_WRAPPER(__lxstat64, struct stat64)

#define FSTATAT_WRAPPER(name, stype, mine)                                               \
	EXPORT int name(int dirfd, const char *path, stype *st, int flags)               \
	{                                                                                \
		struct door_target t;                                                    \
		int r;                                                                   \
		if (EMPTY_PATH_MINE(dirfd, path, flags))                                 \
			return mine(dirfd, st);                                          \
		PATH_CALL(path, t,                                                       \
			  r = REAL(name)(dirfd, t.path, st, flags); if (!r) FIX_STAT(&t, st); return r, \
			  return REAL(name)(dirfd, path, st, flags));                    \
	}
FSTATAT_WRAPPER(fstatat, struct stat, fstat_mine)
FSTATAT_WRAPPER(fstatat64, struct stat64, fstat64_mine)

#define FXSTATAT_WRAPPER(name, stype, mine)                                              \
	EXPORT int name(int ver, int dirfd, const char *path, stype *st, int flags)      \
	{                                                                                \
		struct door_target t;                                                    \
		int r;                                                                   \
		if (EMPTY_PATH_MINE(dirfd, path, flags))                                 \
			return mine(dirfd, st);                                          \
		PATH_CALL(path, t,                                                       \
			  r = REAL(name)(ver, dirfd, t.path, st, flags); if (!r) FIX_STAT(&t, st); return r, \
			  return REAL(name)(ver, dirfd, path, st, flags));               \
	}
FXSTATAT_WRAPPER(__fxstatat, struct stat, fstat_mine)
FXSTATAT_WRAPPER(__fxstatat64, struct stat64, fstat64_mine)

EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	struct door_target t;
	unsigned int maj, min;
	int r;

	if (EMPTY_PATH_MINE(dirfd, path, flags))
		return statx_mine(dirfd, flags, mask, stx);
	if (unlikely(door_might_be_mine(path)) && door_map_path(path, &t) != DOOR_NOT_MINE) {
		r = REAL(statx)(dirfd, t.path, flags, mask, stx);
		if (!r && S_ISREG(stx->stx_mode) && door_node_rdev(&t, &maj, &min)) {
			stx->stx_mode = (uint16_t)(S_IFCHR | (stx->stx_mode & 07777));
			stx->stx_rdev_major = maj;
			stx->stx_rdev_minor = min;
			stx->stx_size = 0;
		}
		return r;
	}
	return REAL(statx)(dirfd, path, flags, mask, stx);
}

EXPORT int access(const char *path, int mode)
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(access)(t.path, mode), return REAL(access)(path, mode));
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(faccessat)(dirfd, t.path, mode, flags),
		  return REAL(faccessat)(dirfd, path, mode, flags));
}

EXPORT ssize_t readlink(const char *path, char *buf, size_t size)
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(readlink)(t.path, buf, size),
		  return REAL(readlink)(path, buf, size));
}

EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(readlinkat)(dirfd, t.path, buf, size),
		  return REAL(readlinkat)(dirfd, path, buf, size));
}

/* ls -l asks for security labels and ACLs: the tree's files have none. */
EXPORT ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(getxattr)(t.path, name, value, size),
		  return REAL(getxattr)(path, name, value, size));
}

EXPORT ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size)
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(lgetxattr)(t.path, name, value, size),
		  return REAL(lgetxattr)(path, name, value, size));
}

EXPORT ssize_t listxattr(const char *path, char *list, size_t size)
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(listxattr)(t.path, list, size),
		  return REAL(listxattr)(path, list, size));
}

EXPORT ssize_t llistxattr(const char *path, char *list, size_t size)
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(llistxattr)(t.path, list, size),
		  return REAL(llistxattr)(path, list, size));
}

/* Resolved in the tree, then shown without the tree's root. */
EXPORT char *realpath(const char *path, char *resolved)
{
	struct door_target t;
	char buf[PATH_MAX], *r;
	size_t rootlen;
	const char *root;

	if (!unlikely(door_might_be_mine(path)) || door_map_path(path, &t) == DOOR_NOT_MINE)
		return REAL(realpath)(path, resolved);
	r = REAL(realpath)(t.path, buf);
	if (!r)
		return NULL;
	root = door_root(&rootlen);
	if (!strncmp(buf, root, rootlen) && buf[rootlen] == '/')
		memmove(buf, buf + rootlen, strlen(buf + rootlen) + 1);
	if (resolved)
		return strcpy(resolved, buf);
	return strdup(buf);
}

EXPORT DIR *opendir(const char *path)
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(opendir)(t.path), return REAL(opendir)(path));
}

EXPORT int scandir(const char *path, struct dirent ***list, int (*filter)(const struct dirent *),
		   int (*compar)(const struct dirent **, const struct dirent **))
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(scandir)(t.path, list, filter, compar),
		  return REAL(scandir)(path, list, filter, compar));
}

EXPORT int scandir64(const char *path, struct dirent64 ***list,
		     int (*filter)(const struct dirent64 *),
		     int (*compar)(const struct dirent64 **, const struct dirent64 **))
{
	struct door_target t;

	PATH_CALL(path, t, return REAL(scandir64)(t.path, list, filter, compar),
		  return REAL(scandir64)(path, list, filter, compar));
}

/* ---------------------------------------------------------------------- */
/* Fds                                                                     */

/* glibc declares ioctl(int, unsigned long, ...). */
EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (mine_fd(fd))
		return (int)ret_errno(p2p_fd_ioctl(fd, req, arg));
	return REAL(ioctl)(fd, req, arg);
}

/*
 * Mappings made through the door: munmap() looks only when there are some,
 * and only at ranges that meet [door_lo, door_hi), the span of every
 * mapping the door has made (it only grows): a munmap() elsewhere is
 * libc's without a lock taken.
 */
static atomic_long door_maps;
static atomic_uintptr_t door_lo = UINTPTR_MAX, door_hi;

static void door_span_add(uintptr_t start, uintptr_t end)
{
	uintptr_t v = atomic_load_explicit(&door_lo, memory_order_relaxed);

	while (start < v && !atomic_compare_exchange_weak(&door_lo, &v, start))
		;
	v = atomic_load_explicit(&door_hi, memory_order_relaxed);
	while (end > v && !atomic_compare_exchange_weak(&door_hi, &v, end))
		;
}

static void *mmap_mine(void *addr, size_t len, int prot, int flags, int fd, uint64_t off)
{
	void *out;
	int r = p2p_fd_mmap(fd, addr, len, prot, flags, off, &out);

	if (r) {
		errno = -r;
		return MAP_FAILED;
	}
	/* The mapping ends at a page boundary: 64 KiB covers every page size. */
	door_span_add((uintptr_t)out, ((uintptr_t)out + len + 0xffff) & ~(uintptr_t)0xffff);
	atomic_fetch_add_explicit(&door_maps, 1, memory_order_seq_cst);
	return out;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!(flags & MAP_ANONYMOUS) && mine_fd(fd))
		return mmap_mine(addr, len, prot, flags, fd, (uint64_t)off);
	return REAL(mmap)(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	if (!(flags & MAP_ANONYMOUS) && mine_fd(fd))
		return mmap_mine(addr, len, prot, flags, fd, (uint64_t)off);
	return REAL(mmap64)(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
	struct p2p_dmabuf *buf;
	uint64_t off;
	int r;

	if (atomic_load_explicit(&door_maps, memory_order_seq_cst) == 0 ||
	    (uintptr_t)addr >= atomic_load_explicit(&door_hi, memory_order_relaxed) ||
	    (uintptr_t)addr + len <= atomic_load_explicit(&door_lo, memory_order_relaxed))
		return REAL(munmap)(addr, len);
	r = p2p_munmap(addr, len);
	if (!r) {
		atomic_fetch_sub_explicit(&door_maps, 1, memory_order_relaxed);
		return 0;
	}
	/* Not a whole p2pbuf mapping: part of one is refused, anything else is libc's. */
	if (!p2p_va_lookup(addr, &buf, &off, NULL)) {
		p2p_dmabuf_put(buf);
		errno = EINVAL;
		return -1;
	}
	return REAL(munmap)(addr, len);
}

EXPORT ssize_t read(int fd, void *buf, size_t count)
{
	if (mine_fd(fd))
		return ret_errno(p2p_fd_read(fd, buf, count));
	return REAL(read)(fd, buf, count);
}

EXPORT ssize_t write(int fd, const void *buf, size_t count)
{
	if (mine_fd(fd))
		return ret_errno(p2p_fd_write(fd, buf, count));
	return REAL(write)(fd, buf, count);
}

static ssize_t pread_mine(int fd, void *buf, size_t count, int64_t off)
{
	if (off < 0)
		return ret_errno(-EINVAL);
	return ret_errno(p2p_fd_pread(fd, buf, count, (uint64_t)off));
}

static ssize_t pwrite_mine(int fd, const void *buf, size_t count, int64_t off)
{
	if (off < 0)
		return ret_errno(-EINVAL);
	return ret_errno(p2p_fd_pwrite(fd, buf, count, (uint64_t)off));
}

EXPORT ssize_t pread(int fd, void *buf, size_t count, off_t off)
{
	if (mine_fd(fd))
		return pread_mine(fd, buf, count, off);
	return REAL(pread)(fd, buf, count, off);
}

EXPORT ssize_t pread64(int fd, void *buf, size_t count, off64_t off)
{
	if (mine_fd(fd))
		return pread_mine(fd, buf, count, off);
	return REAL(pread64)(fd, buf, count, off);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
	if (mine_fd(fd))
		return pwrite_mine(fd, buf, count, off);
	return REAL(pwrite)(fd, buf, count, off);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t off)
{
	if (mine_fd(fd))
		return pwrite_mine(fd, buf, count, off);
	return REAL(pwrite64)(fd, buf, count, off);
}

/* _FORTIFY_SOURCE's read entries call libc's read internally: wrap them too. */
EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	if (mine_fd(fd)) {
		if (count > buflen)
			__builtin_trap();
		return ret_errno(p2p_fd_read(fd, buf, count));
	}
	return REAL(__read_chk)(fd, buf, count, buflen);
}

EXPORT ssize_t __pread_chk(int fd, void *buf, size_t count, off_t off, size_t buflen)
{
	if (mine_fd(fd)) {
		if (count > buflen)
			__builtin_trap();
		return pread_mine(fd, buf, count, off);
	}
	return REAL(__pread_chk)(fd, buf, count, off, buflen);
}

EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t off, size_t buflen)
{
	if (mine_fd(fd)) {
		if (count > buflen)
			__builtin_trap();
		return pread_mine(fd, buf, count, off);
	}
	return REAL(__pread64_chk)(fd, buf, count, off, buflen);
}

/*
 * epoll.  Of the door's files only a dma-buf polls in the kernel
 * (dma_buf_poll(): ready for reading and writing while no fence is pending,
 * which is always the case for the fds a program holds here); VFIO device,
 * group and container fds, iommufd and dma-heap fds have no poll, and
 * epoll_ctl(2) refuses them with EPERM as the kernel does.  A dma-buf fd
 * is stood in for, in the program's epoll sets, by an eventfd that is
 * always readable and writable; epoll returns the program's own data, so
 * the program sees its dma-buf fd ready.  The stand-in is closed with the fd.
 */
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static int *ready_fds; /* by fd number: the stand-in eventfd + 1, 0 for none */
static size_t ready_nr;

static int ready_fd_get(int fd)
{
	int ret = -1;

	pthread_mutex_lock(&ready_lock);
	if ((size_t)fd >= ready_nr) {
		size_t n = (size_t)fd + 1 > ready_nr * 2 ? (size_t)fd + 1 : ready_nr * 2;
		int *r = realloc(ready_fds, n * sizeof(*r));

		if (!r)
			goto out;
		memset(r + ready_nr, 0, (n - ready_nr) * sizeof(*r));
		ready_fds = r;
		ready_nr = n;
	}
	if (!ready_fds[fd]) {
		int e = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);

		if (e < 0)
			goto out;
		ready_fds[fd] = e + 1;
	}
	ret = ready_fds[fd] - 1;
out:
	pthread_mutex_unlock(&ready_lock);
	return ret;
}

/* @fd is being closed: close its stand-in, if it has one. */
static void ready_fd_drop(int fd)
{
	int e = 0;

	if (!ready_nr)
		return;
	pthread_mutex_lock(&ready_lock);
	if ((size_t)fd < ready_nr) {
		e = ready_fds[fd];
		ready_fds[fd] = 0;
	}
	pthread_mutex_unlock(&ready_lock);
	if (e)
		REAL(close)(e - 1);
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct p2p_file *f;
	bool dmabuf;
	int e;

	if (!mine_fd(fd))
		return REAL(epoll_ctl)(epfd, op, fd, ev);
	if (p2p_file_from_fd(fd, NULL, &f)) {
		errno = EBADF;
		return -1;
	}
	dmabuf = !strcmp(p2p_file_ops(f)->name, "dmabuf");
	p2p_file_put(f);
	if (!dmabuf) {
		errno = EPERM; /* no poll in the kernel's file_operations */
		return -1;
	}
	e = ready_fd_get(fd);
	if (e < 0) {
		errno = ENOMEM;
		return -1;
	}
	return REAL(epoll_ctl)(epfd, op, e, ev);
}

EXPORT int close(int fd)
{
	if (mine_fd(fd)) {
		ready_fd_drop(fd);
		return (int)ret_errno(p2p_close(fd));
	}
	return REAL(close)(fd);
}

/*
 * close_range(2) and closefrom(3): drop the references of the door's fds in
 * the range first (as close() would), then let libc close them all.  With
 * CLOSE_RANGE_CLOEXEC nothing is closed now.
 */
static void close_mine_in(unsigned int first, unsigned int last)
{
	struct rlimit rl;

	if (!atomic_load_explicit(&door_active, memory_order_acquire))
		return;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur - 1 < last)
		last = (unsigned int)(rl.rlim_cur - 1);
	for (unsigned int fd = first; fd <= last && fd <= INT_MAX; fd++) {
		if (mine_fd((int)fd)) {
			ready_fd_drop((int)fd);
			p2p_close((int)fd);
		}
		if (fd == UINT_MAX)
			break;
	}
}

EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	if (!(flags & CLOSE_RANGE_CLOEXEC) && first <= last)
		close_mine_in(first, last);
	return REAL(close_range)(first, last, flags);
}

EXPORT void closefrom(int lowfd)
{
	if (lowfd >= 0)
		close_mine_in((unsigned int)lowfd, UINT_MAX);
	REAL(closefrom)(lowfd);
}

EXPORT int dup(int fd)
{
	if (mine_fd(fd))
		return (int)ret_errno(p2p_fd_dup(fd));
	return REAL(dup)(fd);
}

EXPORT int dup2(int oldfd, int newfd)
{
	if (oldfd != newfd && (mine_fd(oldfd) || mine_fd(newfd))) {
		ready_fd_drop(newfd);
		return (int)ret_errno(p2p_fd_dup3(oldfd, newfd, 0));
	}
	return REAL(dup2)(oldfd, newfd);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	if (oldfd != newfd && (mine_fd(oldfd) || mine_fd(newfd))) {
		ready_fd_drop(newfd);
		return (int)ret_errno(p2p_fd_dup3(oldfd, newfd, flags));
	}
	return REAL(dup3)(oldfd, newfd, flags);
}

static int fcntl_common(int fd, int cmd, void *arg, int (*real)(int, int, ...))
{
	if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && mine_fd(fd))
		return (int)ret_errno(p2p_fd_dupfd(fd, (int)(long)arg,
						   cmd == F_DUPFD_CLOEXEC ? O_CLOEXEC : 0));
	return real(fd, cmd, arg);
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_common(fd, cmd, arg, REAL(fcntl));
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_common(fd, cmd, arg, REAL(fcntl64));
}

/*
 * poll with p2pbuf files in the set: their readiness comes from
 * p2p_fd_poll() (a file's ops->poll, e.g. a dma-buf's fences), the rest from
 * the kernel.  While none is ready the kernel is polled in slices of 10 ms
 * so that a p2pbuf file becoming ready is seen (docs/door.md).
 */
#define POLL_SLICE_MS 10

static int poll_mixed(struct pollfd *fds, nfds_t n, int timeout_ms, const sigset_t *mask,
		      bool use_mask)
{
	struct pollfd *copy = malloc(n * sizeof(*copy));
	struct timespec start, now;
	int ready;

	if (!copy) {
		errno = ENOMEM;
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int kready, slice, elapsed;

		ready = 0;
		for (nfds_t i = 0; i < n; i++) {
			copy[i] = fds[i];
			fds[i].revents = 0;
			if (mine_fd(fds[i].fd)) {
				copy[i].fd = -1; /* the kernel ignores it */
				fds[i].revents = (short)p2p_fd_poll(fds[i].fd,
					(unsigned int)(unsigned short)fds[i].events |
					POLLERR | POLLHUP);
				ready += fds[i].revents != 0;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		elapsed = (int)((now.tv_sec - start.tv_sec) * 1000 +
				(now.tv_nsec - start.tv_nsec) / 1000000);
		slice = (ready || timeout_ms == 0) ? 0 :
			timeout_ms < 0 ? POLL_SLICE_MS :
			timeout_ms - elapsed < POLL_SLICE_MS ? timeout_ms - elapsed : POLL_SLICE_MS;
		if (slice < 0)
			slice = 0;
		if (use_mask) {
			struct timespec ts = { slice / 1000, (slice % 1000) * 1000000L };

			kready = REAL(ppoll)(copy, n, &ts, mask);
		} else {
			kready = REAL(poll)(copy, n, slice);
		}
		if (kready < 0) {
			int e = errno;

			free(copy);
			errno = e;
			return -1;
		}
		for (nfds_t i = 0; i < n; i++)
			if (copy[i].fd >= 0)
				fds[i].revents = copy[i].revents;
		ready += kready;
		if (ready || timeout_ms == 0 || (timeout_ms > 0 && elapsed + slice >= timeout_ms))
			break;
	}
	free(copy);
	return ready;
}

/*
 * glibc declares poll's array write-only (access attribute), but its fds and
 * events are inputs: keep gcc from calling the reads uninitialized.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
static bool any_mine(const struct pollfd *fds, nfds_t n)
{
	for (nfds_t i = 0; i < n; i++)
		if (mine_fd(fds[i].fd))
			return true;
	return false;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (unlikely(any_mine(fds, n)))
		return poll_mixed(fds, n, timeout, NULL, false);
	return REAL(poll)(fds, n, timeout);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__builtin_trap();
	return poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
	if (unlikely(any_mine(fds, n))) {
		long ms = ts ? ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000 : -1;

		return poll_mixed(fds, n, ms > INT_MAX ? INT_MAX : (int)ms, mask, true);
	}
	return REAL(ppoll)(fds, n, ts, mask);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* A p2pbuf file's fd received with SCM_RIGHTS gets its own reference, as in the kernel. */
EXPORT ssize_t recvmsg(int sock, struct msghdr *msg, int flags)
{
	ssize_t r = REAL(recvmsg)(sock, msg, flags);

	if (r < 0 || !msg->msg_controllen)
		return r;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int *fds = (int *)CMSG_DATA(c);

		for (size_t i = 0; i < nfd; i++) {
			int fd;

			memcpy(&fd, &fds[i], sizeof(fd));
			/*
			 * -EINVAL: not a p2pbuf file, nothing to do.  A foreign fd
			 * the file layer's resolvers claim (another process's
			 * exported dma-buf) is a p2pbuf file from now on.
			 */
			if (!p2p_fd_adopt(fd) &&
			    !atomic_load_explicit(&door_active, memory_order_relaxed))
				atomic_store_explicit(&door_active, true, memory_order_release);
		}
	}
	return r;
}

/* ---------------------------------------------------------------------- */
/* Start-up                                                                */

__attribute__((constructor)) static void door_start(void)
{
	/* A bad configuration stops the program here, before main(). */
	door_load_config();
}

/* ---------------------------------------------------------------------- */
/* libc for the library linked in (-Wl,--wrap=NAME sends its calls here)   */

#define WRAP_OPEN(name)                                                                  \
	int __wrap_##name(const char *path, int flags, ...);                             \
	int __wrap_##name(const char *path, int flags, ...)                              \
	{                                                                                \
		mode_t mode = 0;                                                         \
		OPEN_MODE(flags, mode);                                                  \
		return REAL(name)(path, flags, mode);                                    \
	}
WRAP_OPEN(open)
WRAP_OPEN(open64)

#define WRAP_OPENAT(name)                                                                \
	int __wrap_##name(int dirfd, const char *path, int flags, ...);                  \
	int __wrap_##name(int dirfd, const char *path, int flags, ...)                   \
	{                                                                                \
		mode_t mode = 0;                                                         \
		OPEN_MODE(flags, mode);                                                  \
		return REAL(name)(dirfd, path, flags, mode);                             \
	}
WRAP_OPENAT(openat)
WRAP_OPENAT(openat64)

int __wrap_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	return REAL(ioctl)(fd, req, arg);
}

#define WRAP_FCNTL(name)                                                                 \
	int __wrap_##name(int fd, int cmd, ...);                                         \
	int __wrap_##name(int fd, int cmd, ...)                                          \
	{                                                                                \
		va_list ap;                                                              \
		void *arg;                                                               \
		va_start(ap, cmd);                                                       \
		arg = va_arg(ap, void *);                                                \
		va_end(ap);                                                              \
		return REAL(name)(fd, cmd, arg);                                         \
	}
WRAP_FCNTL(fcntl)
WRAP_FCNTL(fcntl64)

/* The fixed-argument ones: __wrap_NAME(args) = libc's NAME(args). */
#define WRAP(ret, name, params, args)                                                    \
	ret __wrap_##name params;                                                        \
	ret __wrap_##name params                                                         \
	{                                                                                \
		return REAL(name) args;                                                  \
	}
WRAP(int, __open_2, (const char *p, int f), (p, f))
WRAP(int, __open64_2, (const char *p, int f), (p, f))
WRAP(int, __openat_2, (int d, const char *p, int f), (d, p, f))
WRAP(int, __openat64_2, (int d, const char *p, int f), (d, p, f))
WRAP(int, creat, (const char *p, mode_t m), (p, m))
WRAP(int, creat64, (const char *p, mode_t m), (p, m))
WRAP(FILE *, fopen, (const char *p, const char *m), (p, m))
WRAP(FILE *, fopen64, (const char *p, const char *m), (p, m))
WRAP(int, fstat, (int fd, struct stat *s), (fd, s))
WRAP(int, fstat64, (int fd, struct stat64 *s), (fd, s))
WRAP(off_t, lseek, (int fd, off_t o, int w), (fd, o, w))
WRAP(off64_t, lseek64, (int fd, off64_t o, int w), (fd, o, w))
WRAP(int, ftruncate, (int fd, off_t l), (fd, l))
WRAP(int, ftruncate64, (int fd, off64_t l), (fd, l))
WRAP(int, stat, (const char *p, struct stat *s), (p, s))
WRAP(int, stat64, (const char *p, struct stat64 *s), (p, s))
WRAP(int, lstat, (const char *p, struct stat *s), (p, s))
WRAP(int, lstat64, (const char *p, struct stat64 *s), (p, s))
WRAP(int, fstatat, (int d, const char *p, struct stat *s, int f), (d, p, s, f))
WRAP(int, fstatat64, (int d, const char *p, struct stat64 *s, int f), (d, p, s, f))
WRAP(int, statx, (int d, const char *p, int f, unsigned int m, struct statx *s), (d, p, f, m, s))
WRAP(int, access, (const char *p, int m), (p, m))
WRAP(int, faccessat, (int d, const char *p, int m, int f), (d, p, m, f))
WRAP(ssize_t, readlink, (const char *p, char *b, size_t n), (p, b, n))
WRAP(ssize_t, readlinkat, (int d, const char *p, char *b, size_t n), (d, p, b, n))
WRAP(char *, realpath, (const char *p, char *r), (p, r))
WRAP(DIR *, opendir, (const char *p), (p))
WRAP(void *, mmap, (void *a, size_t l, int p, int f, int fd, off_t o), (a, l, p, f, fd, o))
WRAP(void *, mmap64, (void *a, size_t l, int p, int f, int fd, off64_t o), (a, l, p, f, fd, o))
WRAP(int, munmap, (void *a, size_t l), (a, l))
WRAP(ssize_t, read, (int fd, void *b, size_t n), (fd, b, n))
WRAP(ssize_t, write, (int fd, const void *b, size_t n), (fd, b, n))
WRAP(ssize_t, pread, (int fd, void *b, size_t n, off_t o), (fd, b, n, o))
WRAP(ssize_t, pread64, (int fd, void *b, size_t n, off64_t o), (fd, b, n, o))
WRAP(ssize_t, pwrite, (int fd, const void *b, size_t n, off_t o), (fd, b, n, o))
WRAP(ssize_t, pwrite64, (int fd, const void *b, size_t n, off64_t o), (fd, b, n, o))
WRAP(int, close, (int fd), (fd))
WRAP(int, dup, (int fd), (fd))
WRAP(int, dup2, (int a, int b), (a, b))
WRAP(int, dup3, (int a, int b, int f), (a, b, f))
WRAP(int, poll, (struct pollfd *p, nfds_t n, int t), (p, n, t))
WRAP(int, ppoll, (struct pollfd *p, nfds_t n, const struct timespec *t, const sigset_t *s),
     (p, n, t, s))
WRAP(ssize_t, recvmsg, (int s, struct msghdr *m, int f), (s, m, f))
