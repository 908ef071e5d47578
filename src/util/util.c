// SPDX-License-Identifier: MIT
/*
 * Logging, checked user copies and fd helpers.  All fds are O_CLOEXEC.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "private.h"

static _Atomic(p2p_log_fn) log_fn;
static atomic_int log_max = P2P_LOG_WARN;

P2P_API void p2p_set_log(p2p_log_fn fn, enum p2p_log_level max_level)
{
	atomic_store(&log_max, (int)max_level);
	atomic_store(&log_fn, fn);
}

void p2p_log(enum p2p_log_level level, const char *fmt, ...)
{
	p2p_log_fn fn = atomic_load(&log_fn);
	va_list ap;

	if (!fn || (int)level > atomic_load(&log_max))
		return;
	va_start(ap, fmt);
	fn(level, fmt, ap);
	va_end(ap);
}

P2P_API const char *p2p_strerror(int err)
{
	return strerror(err < 0 ? -err : err);
}

/*
 * This process's pid for process_vm_*(), without a getpid(2) per copy (two
 * per ioctl were a fifth of a cheap one's cost).  A fork child forgets it.
 */
static _Atomic pid_t self_pid;
static pthread_once_t self_pid_once = PTHREAD_ONCE_INIT;

static void self_pid_forget(void)
{
	atomic_store_explicit(&self_pid, 0, memory_order_relaxed);
}

static void self_pid_setup(void)
{
	pthread_atfork(NULL, NULL, self_pid_forget);
}

static pid_t self(void)
{
	pid_t pid = atomic_load_explicit(&self_pid, memory_order_relaxed);

	if (!pid) {
		pthread_once(&self_pid_once, self_pid_setup);
		pid = getpid();
		atomic_store_explicit(&self_pid, pid, memory_order_relaxed);
	}
	return pid;
}

static int copy_user(void *dst, const void *src, size_t len, bool to_user)
{
	struct iovec local = { .iov_base = dst, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)src, .iov_len = len };
	ssize_t n;

	if (!len)
		return 0;
	if (to_user) {
		local.iov_base = (void *)src;
		remote.iov_base = dst;
		n = process_vm_writev(self(), &local, 1, &remote, 1, 0);
	} else {
		n = process_vm_readv(self(), &local, 1, &remote, 1, 0);
	}
	if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
		/* No process_vm_*: trust the caller, as a plain library would. */
		memcpy(dst, src, len);
		return 0;
	}
	if (n < 0 || (size_t)n != len)
		return -EFAULT;
	return 0;
}

int copy_from_user(void *dst, const void *src, size_t len)
{
	return copy_user(dst, src, len, false);
}

int copy_to_user(void *dst, const void *src, size_t len)
{
	return copy_user(dst, src, len, true);
}

int token_fd_create(const char *name)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	/* The token carries no data: seal it at size 0. */
	(void)fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE | F_SEAL_SEAL);
	return fd;
}

int fd_set_size(int fd, uint64_t size)
{
	struct rlimit rl;

	/*
	 * Growing a file past RLIMIT_FSIZE raises SIGXFSZ, which kills the
	 * process by default, and a library must not change signal
	 * dispositions: check the limit first and fail as the call would.
	 * Residual race: another thread lowering the limit between the check
	 * and ftruncate() still gets the signal.
	 */
	if (!getrlimit(RLIMIT_FSIZE, &rl) && rl.rlim_cur != RLIM_INFINITY && size > rl.rlim_cur)
		return -EFBIG;
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
}

uint64_t p2p_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
