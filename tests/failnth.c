// SPDX-License-Identifier: MIT
/*
 * fail-nth wrappers (see failnth.h).  Each __wrap_X counts the call when the
 * calling thread is armed and fails the n-th one; otherwise it is a plain
 * call of __real_X.  The list of wrapped symbols is FAILNTH_WRAP in
 * tests/meson.build: every wrapper defined here must be on it (its
 * __real_X would not resolve otherwise).
 *
 * The *64 names are what the library's objects reference (meson builds with
 * _FILE_OFFSET_BITS=64); the plain names are wrapped too, for any object
 * built without it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <pthread.h>

#include "failnth.h"

static __thread unsigned long fn_nth;   /* 0: not armed */
static __thread unsigned long fn_count; /* failable calls since arming */
static __thread bool fn_hit;
static __thread const char *fn_victim = "";
static atomic_long fn_live;
/* Injection into the other threads (failnth_arm_others): one count for all. */
static atomic_ulong fn_g_nth, fn_g_count;
static atomic_bool fn_g_hit;
static const char *_Atomic fn_g_victim = "";
static __thread bool fn_g_driver; /* the arming thread: its calls are not counted */

void failnth_arm(unsigned long n)
{
	fn_count = 0;
	fn_hit = false;
	fn_victim = "";
	fn_nth = n;
}

bool failnth_disarm(void)
{
	fn_nth = 0;
	return fn_hit;
}

const char *failnth_victim(void)
{
	return fn_victim;
}

unsigned long failnth_calls(void)
{
	return fn_count;
}

void failnth_exclude_self(bool exclude)
{
	fn_g_driver = exclude;
}

void failnth_arm_others(unsigned long n)
{
	atomic_store(&fn_g_count, 0);
	atomic_store(&fn_g_hit, false);
	atomic_store(&fn_g_victim, "");
	atomic_store(&fn_g_nth, n);
}

bool failnth_disarm_others(void)
{
	atomic_store(&fn_g_nth, 0);
	return atomic_load(&fn_g_hit);
}

const char *failnth_victim_others(void)
{
	return atomic_load(&fn_g_victim);
}

unsigned long failnth_calls_others(void)
{
	return atomic_load(&fn_g_count);
}

long failnth_live_allocs(void)
{
	return atomic_load(&fn_live);
}

/* Should this call fail?  Sets errno to @err if so. */
static bool should_fail(const char *name, int err)
{
	if (!fn_nth) {
		unsigned long nth = atomic_load(&fn_g_nth);

		if (!nth || fn_g_driver)
			return false;
		if (atomic_fetch_add(&fn_g_count, 1) + 1 != nth ||
		    !atomic_compare_exchange_strong(&fn_g_nth, &nth, 0))
			return false;
		atomic_store(&fn_g_victim, name);
		atomic_store(&fn_g_hit, true);
		errno = err;
		return true;
	}
	if (++fn_count != fn_nth)
		return false;
	fn_nth = 0; /* once */
	fn_hit = true;
	fn_victim = name;
	errno = err;
	return true;
}

/* ---- allocations: ENOMEM ---- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_posix_memalign(void **out, size_t align, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_posix_memalign(void **out, size_t align, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);

void *__wrap_malloc(size_t size)
{
	void *p;

	if (should_fail("malloc", ENOMEM))
		return NULL;
	p = __real_malloc(size);
	if (p)
		atomic_fetch_add(&fn_live, 1);
	return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
	void *p;

	if (should_fail("calloc", ENOMEM))
		return NULL;
	p = __real_calloc(n, size);
	if (p)
		atomic_fetch_add(&fn_live, 1);
	return p;
}

void *__wrap_realloc(void *old, size_t size)
{
	void *p;

	if (should_fail("realloc", ENOMEM))
		return NULL;
	p = __real_realloc(old, size);
	if (!old && p)
		atomic_fetch_add(&fn_live, 1);
	else if (old && !size && !p)
		atomic_fetch_sub(&fn_live, 1); /* glibc: realloc(p, 0) frees */
	return p;
}

void __wrap_free(void *p)
{
	if (p)
		atomic_fetch_sub(&fn_live, 1);
	__real_free(p);
}

char *__wrap_strdup(const char *s)
{
	char *p;

	if (should_fail("strdup", ENOMEM))
		return NULL;
	p = __real_strdup(s);
	if (p)
		atomic_fetch_add(&fn_live, 1);
	return p;
}

char *__wrap_strndup(const char *s, size_t n)
{
	char *p;

	if (should_fail("strndup", ENOMEM))
		return NULL;
	p = __real_strndup(s, n);
	if (p)
		atomic_fetch_add(&fn_live, 1);
	return p;
}

int __wrap_posix_memalign(void **out, size_t align, size_t size)
{
	int ret;

	if (should_fail("posix_memalign", ENOMEM))
		return ENOMEM;
	ret = __real_posix_memalign(out, align, size);
	if (!ret)
		atomic_fetch_add(&fn_live, 1);
	return ret;
}

void *__wrap_aligned_alloc(size_t align, size_t size)
{
	void *p;

	if (should_fail("aligned_alloc", ENOMEM))
		return NULL;
	p = __real_aligned_alloc(align, size);
	if (p)
		atomic_fetch_add(&fn_live, 1);
	return p;
}

/* ---- memory mappings: ENOMEM; munmap is never failed ---- */

void *__real_mmap(void *a, size_t l, int prot, int flags, int fd, off_t off);
void *__real_mmap64(void *a, size_t l, int prot, int flags, int fd, off_t off);
int __real_madvise(void *a, size_t l, int advice);
void *__wrap_mmap(void *a, size_t l, int prot, int flags, int fd, off_t off);
void *__wrap_mmap64(void *a, size_t l, int prot, int flags, int fd, off_t off);
int __wrap_madvise(void *a, size_t l, int advice);

void *__wrap_mmap(void *a, size_t l, int prot, int flags, int fd, off_t off)
{
	if (should_fail("mmap", ENOMEM))
		return (void *)-1;
	return __real_mmap(a, l, prot, flags, fd, off);
}

void *__wrap_mmap64(void *a, size_t l, int prot, int flags, int fd, off_t off)
{
	if (should_fail("mmap", ENOMEM))
		return (void *)-1;
	return __real_mmap64(a, l, prot, flags, fd, off);
}

int __wrap_madvise(void *a, size_t l, int advice)
{
	if (should_fail("madvise", ENOMEM))
		return -1;
	return __real_madvise(a, l, advice);
}

/* ---- fd creation: EMFILE ---- */

int __real_memfd_create(const char *name, unsigned int flags);
int __real_open(const char *path, int flags, ...);
int __real_open64(const char *path, int flags, ...);
int __real_openat(int dirfd, const char *path, int flags, ...);
int __real_openat64(int dirfd, const char *path, int flags, ...);
int __real_mkostemp(char *tmpl, int flags);
int __real_mkostemp64(char *tmpl, int flags);
int __real_dup(int fd);
int __real_eventfd(unsigned int count, int flags);
int __real_fcntl(int fd, int cmd, ...);
int __real_fcntl64(int fd, int cmd, ...);
int __wrap_memfd_create(const char *name, unsigned int flags);
int __wrap_open(const char *path, int flags, ...);
int __wrap_open64(const char *path, int flags, ...);
int __wrap_openat(int dirfd, const char *path, int flags, ...);
int __wrap_openat64(int dirfd, const char *path, int flags, ...);
int __wrap_mkostemp(char *tmpl, int flags);
int __wrap_mkostemp64(char *tmpl, int flags);
int __wrap_dup(int fd);
int __wrap_dup3(int fd, int newfd, int flags);
int __wrap_eventfd(unsigned int count, int flags);
int __wrap_fcntl(int fd, int cmd, ...);
int __wrap_fcntl64(int fd, int cmd, ...);

int __wrap_memfd_create(const char *name, unsigned int flags)
{
	if (should_fail("memfd_create", EMFILE))
		return -1;
	return __real_memfd_create(name, flags);
}

/* O_CREAT and O_TMPFILE take a mode. */
#define MODE_ARG(flags)                                                                      \
	unsigned int mode = 0;                                                               \
	if ((flags) & (O_CREAT | __O_TMPFILE)) {                                             \
		va_list ap;                                                                  \
		va_start(ap, flags);                                                         \
		mode = va_arg(ap, unsigned int);                                             \
		va_end(ap);                                                                  \
	}



int __wrap_open(const char *path, int flags, ...)
{
	MODE_ARG(flags);
	if (should_fail("open", EMFILE))
		return -1;
	return __real_open(path, flags, mode);
}

int __wrap_open64(const char *path, int flags, ...)
{
	MODE_ARG(flags);
	if (should_fail("open", EMFILE))
		return -1;
	return __real_open64(path, flags, mode);
}

int __wrap_openat(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags);
	if (should_fail("openat", EMFILE))
		return -1;
	return __real_openat(dirfd, path, flags, mode);
}

int __wrap_openat64(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags);
	if (should_fail("openat", EMFILE))
		return -1;
	return __real_openat64(dirfd, path, flags, mode);
}

int __wrap_mkostemp(char *tmpl, int flags)
{
	if (should_fail("mkostemp", EMFILE))
		return -1;
	return __real_mkostemp(tmpl, flags);
}

int __wrap_mkostemp64(char *tmpl, int flags)
{
	if (should_fail("mkostemp", EMFILE))
		return -1;
	return __real_mkostemp64(tmpl, flags);
}

int __wrap_dup(int fd)
{
	if (should_fail("dup", EMFILE))
		return -1;
	return __real_dup(fd);
}

int __real_dup3(int fd, int newfd, int flags);

int __wrap_dup3(int fd, int newfd, int flags)
{
	if (should_fail("dup3", EMFILE))
		return -1;
	return __real_dup3(fd, newfd, flags);
}

int __wrap_eventfd(unsigned int count, int flags)
{
	if (should_fail("eventfd", EMFILE))
		return -1;
	return __real_eventfd(count, flags);
}

/* Only the F_DUPFD commands are failable (EMFILE); the rest pass through. */
#define FCNTL_BODY(real)                                                                     \
	va_list ap;                                                                          \
	void *arg;                                                                           \
	va_start(ap, cmd);                                                                   \
	arg = va_arg(ap, void *);                                                            \
	va_end(ap);                                                                          \
	if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && should_fail("fcntl(F_DUPFD)", EMFILE)) \
		return -1;                                                                   \
	return real(fd, cmd, arg)

int __wrap_fcntl(int fd, int cmd, ...)
{
	FCNTL_BODY(__real_fcntl);
}

int __wrap_fcntl64(int fd, int cmd, ...)
{
	FCNTL_BODY(__real_fcntl64);
}

/* ---- file size: EFBIG (what RLIMIT_FSIZE gives, without the signal) ---- */

int __real_ftruncate(int fd, off_t len);
int __real_ftruncate64(int fd, off_t len);
int __wrap_ftruncate(int fd, off_t len);
int __wrap_ftruncate64(int fd, off_t len);

int __wrap_ftruncate(int fd, off_t len)
{
	if (should_fail("ftruncate", EFBIG))
		return -1;
	return __real_ftruncate(fd, len);
}

int __wrap_ftruncate64(int fd, off_t len)
{
	if (should_fail("ftruncate", EFBIG))
		return -1;
	return __real_ftruncate64(fd, len);
}

/* ---- sockets: sendmsg ENOBUFS, recvmsg ENOMEM (the vfio-user framing) ---- */

ssize_t __real_sendmsg(int fd, const struct msghdr *m, int flags);
ssize_t __real_recvmsg(int fd, struct msghdr *m, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags);
ssize_t __wrap_recvmsg(int fd, struct msghdr *m, int flags);

ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags)
{
	if (should_fail("sendmsg", ENOBUFS))
		return -1;
	return __real_sendmsg(fd, m, flags);
}

ssize_t __wrap_recvmsg(int fd, struct msghdr *m, int flags)
{
	if (should_fail("recvmsg", ENOMEM))
		return -1;
	return __real_recvmsg(fd, m, flags);
}

/* ---- ioctl (userfaultfd's): ENOMEM; syscall: userfaultfd EMFILE, kcmp EPERM ---- */

int __real_ioctl(int fd, unsigned long req, ...);
long __real_syscall(long nr, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);
long __wrap_syscall(long nr, ...);

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (should_fail("ioctl", ENOMEM))
		return -1;
	return __real_ioctl(fd, req, arg);
}

long __wrap_syscall(long nr, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (should_fail(nr == SYS_userfaultfd ? "syscall(userfaultfd)" : "syscall",
			nr == SYS_userfaultfd ? EMFILE : nr == SYS_kcmp ? EPERM : ENOMEM))
		return -1;
	return __real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* ---- threads: EAGAIN (returned) ---- */

int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
			  void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
			  void *arg);

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
			  void *arg)
{
	if (should_fail("pthread_create", EAGAIN))
		return EAGAIN;
	return __real_pthread_create(t, attr, fn, arg);
}

/* ---- liburing (its syscalls are inline, so wrap its functions): -ENOMEM ---- */

struct io_uring;
struct io_uring_params;
struct iovec;
int __real_io_uring_queue_init(unsigned int entries, struct io_uring *ring, unsigned int flags);
int __real_io_uring_queue_init_params(unsigned int entries, struct io_uring *ring,
				      struct io_uring_params *p);
int __real_io_uring_register_buffers(struct io_uring *ring, const struct iovec *iov,
				     unsigned int nr);
int __real_io_uring_register_buffers_sparse(struct io_uring *ring, unsigned int nr);
int __real_io_uring_register_buffers_update_tag(struct io_uring *ring, unsigned int off,
						const struct iovec *iov, const uint64_t *tags,
						unsigned int nr);
int __wrap_io_uring_queue_init(unsigned int entries, struct io_uring *ring, unsigned int flags);
int __wrap_io_uring_queue_init_params(unsigned int entries, struct io_uring *ring,
				      struct io_uring_params *p);
int __wrap_io_uring_register_buffers(struct io_uring *ring, const struct iovec *iov,
				     unsigned int nr);
int __wrap_io_uring_register_buffers_sparse(struct io_uring *ring, unsigned int nr);
int __wrap_io_uring_register_buffers_update_tag(struct io_uring *ring, unsigned int off,
						const struct iovec *iov, const uint64_t *tags,
						unsigned int nr);

int __wrap_io_uring_queue_init(unsigned int entries, struct io_uring *ring, unsigned int flags)
{
	if (should_fail("io_uring_queue_init", ENOMEM))
		return -ENOMEM;
	return __real_io_uring_queue_init(entries, ring, flags);
}

int __wrap_io_uring_queue_init_params(unsigned int entries, struct io_uring *ring,
				      struct io_uring_params *p)
{
	if (should_fail("io_uring_queue_init_params", ENOMEM))
		return -ENOMEM;
	return __real_io_uring_queue_init_params(entries, ring, p);
}

int __wrap_io_uring_register_buffers(struct io_uring *ring, const struct iovec *iov,
				     unsigned int nr)
{
	if (should_fail("io_uring_register_buffers", ENOMEM))
		return -ENOMEM;
	return __real_io_uring_register_buffers(ring, iov, nr);
}

int __wrap_io_uring_register_buffers_sparse(struct io_uring *ring, unsigned int nr)
{
	if (should_fail("io_uring_register_buffers_sparse", ENOMEM))
		return -ENOMEM;
	return __real_io_uring_register_buffers_sparse(ring, nr);
}

int __wrap_io_uring_register_buffers_update_tag(struct io_uring *ring, unsigned int off,
						const struct iovec *iov, const uint64_t *tags,
						unsigned int nr)
{
	if (should_fail("io_uring_register_buffers_update_tag", ENOMEM))
		return -ENOMEM;
	return __real_io_uring_register_buffers_update_tag(ring, off, iov, tags, nr);
}

/* ---- the door's tree: ENOSPC ---- */

char *__real_mkdtemp(char *tmpl);
int __real_mkdir(const char *path, mode_t mode);
int __real_symlink(const char *target, const char *path);
char *__wrap_mkdtemp(char *tmpl);
int __wrap_mkdir(const char *path, mode_t mode);
int __wrap_symlink(const char *target, const char *path);

char *__wrap_mkdtemp(char *tmpl)
{
	if (should_fail("mkdtemp", ENOSPC))
		return NULL;
	return __real_mkdtemp(tmpl);
}

int __wrap_mkdir(const char *path, mode_t mode)
{
	if (should_fail("mkdir", ENOSPC))
		return -1;
	return __real_mkdir(path, mode);
}

int __wrap_symlink(const char *target, const char *path)
{
	if (should_fail("symlink", ENOSPC))
		return -1;
	return __real_symlink(target, path);
}
