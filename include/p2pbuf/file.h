/* SPDX-License-Identifier: MIT */
/*
 * The file layer: every object a kernel program reaches through an fd (VFIO
 * container, group and device, iommufd, dma-heap, dma-buf) is a struct
 * p2p_file with file operations, as a struct file with its
 * file_operations is in the kernel, and every such file has real fds.
 *
 * One dispatch entry per operation takes an fd (p2p_fd_ioctl(),
 * p2p_fd_mmap(), ...).  The native API, the kernel-uAPI door (LD_PRELOAD)
 * and the vfio-user door all go through these entries; none re-implements
 * dispatch.
 *
 * Fds: each fd p2pbuf hands out (p2p_file_install(), the *_open_fd()
 * constructors, the dma-buf export ioctl) holds one reference on its file,
 * dropped by p2p_close().  p2p_fd_dup(), p2p_fd_dup3() and p2p_fd_adopt()
 * give new fds their own references, as dup(2), dup3(2) and an fd received
 * with SCM_RIGHTS have in the kernel.  A file is released when its last
 * reference goes.  An fd the library did not hand out or adopt (a plain
 * dup(2) under the native API) still resolves to its file by inode but
 * holds no reference.  The door wraps close(2), dup(2) and friends so a
 * program's plain calls keep the counts exact.
 *
 * Thread-safe.  Locking: the fd table lock is a leaf (see docs/locking.md).
 */
#ifndef P2PBUF_FILE_H
#define P2PBUF_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <p2pbuf/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct p2p_file;

/**
 * struct p2p_file_ops - what a kind of file does (the kernel's file_operations)
 * @name: the kind, e.g. "dmabuf", "vfio-device", "vfio-group", "vfio-container",
 *        "iommufd", "dma-heap"; also the prefix of the token memfd's name
 * @ioctl: optional (absent: -ENOTTY); @arg is the caller's pointer, copied
 *         with the library's checked copies (bad pointer: -EFAULT)
 * @mmap: optional (absent: -ENODEV); @offset exactly as passed to mmap(2);
 *        returns 0 and the address in *@out, or -errno
 * @read: optional (absent: -EINVAL); at byte @off; returns bytes or -errno
 * @write: optional (absent: -EINVAL); at byte @off; returns bytes or -errno
 * @poll: optional (absent: POLLIN | POLLOUT ready); returns the ready events
 *        among @events, without blocking
 * @release: required; called once, when the last reference is dropped,
 *           without library locks held
 *
 * The dispatcher checks the open mode first (kernel-semantics 0.4 and
 * do_mmap()): a shared writable mapping of a file opened without write
 * access is -EACCES, as is any mapping of a file opened write-only; read
 * and write on a file opened without that access are -EBADF.
 */
struct p2p_file_ops {
	const char *name;
	long (*ioctl)(struct p2p_file *file, unsigned long cmd, void *arg);
	int (*mmap)(struct p2p_file *file, void *addr, size_t length, int prot, int flags,
		    uint64_t offset, void **out);
	ssize_t (*read)(struct p2p_file *file, void *buf, size_t count, uint64_t off);
	ssize_t (*write)(struct p2p_file *file, const void *buf, size_t count, uint64_t off);
	unsigned int (*poll)(struct p2p_file *file, unsigned int events);
	void (*release)(struct p2p_file *file);
};

/**
 * p2p_file_create() - a new file for an object
 * @ops: its operations (kept; must outlive the file)
 * @priv: the object, returned by p2p_file_priv()
 * @name: shown in /proc/self/fd as "/memfd:<ops->name>:<name>"
 * @flags: the open flags: access mode (O_RDONLY, O_WRONLY, O_RDWR) and
 *         status flags (O_NONBLOCK, ...); O_CLOEXEC is for the fds
 * @out: the file, one reference owned by the caller
 *
 * Return: 0, or -ENOMEM, -EMFILE, -ENFILE.
 */
P2P_API int p2p_file_create(const struct p2p_file_ops *ops, void *priv, const char *name,
			    int flags, struct p2p_file **out);
/** p2p_file_get() - take a reference. Paired with p2p_file_put(). */
P2P_API struct p2p_file *p2p_file_get(struct p2p_file *file);
/** p2p_file_put() - drop a reference; the last one calls ops->release. */
P2P_API void p2p_file_put(struct p2p_file *file);
/** p2p_file_priv() - the object given at creation */
P2P_API void *p2p_file_priv(const struct p2p_file *file);
/** p2p_file_ops() - the file's operations (what kind of file it is) */
P2P_API const struct p2p_file_ops *p2p_file_ops(const struct p2p_file *file);
/** p2p_file_flags() - the open flags (access mode and status flags) */
P2P_API int p2p_file_flags(const struct p2p_file *file);

/**
 * p2p_file_fd() - the file's own fd (its token), owned by the file
 *
 * Valid while the file lives; resolves to the file in every dispatch
 * entry; p2p_close() refuses it (-EBADF).  For natives handles that give
 * out "the object's fd" (p2p_vfio_device_fd()).
 */
P2P_API int p2p_file_fd(const struct p2p_file *file);

/**
 * p2p_file_install() - a new fd for @file
 * @flags: O_CLOEXEC or 0
 *
 * The fd holds a new reference on @file (the caller keeps its own).
 *
 * Return: the fd, or -EMFILE, -ENFILE, -ENOMEM.
 */
P2P_API int p2p_file_install(struct p2p_file *file, int flags);

/**
 * p2p_file_from_fd() - the file behind @fd, with a reference
 * @ops: the kind wanted, or NULL for any
 *
 * Return: 0 (*@out set, put it with p2p_file_put()), -EBADF (@fd is not
 * open), -EINVAL (@fd is open but not a p2pbuf file, or not of kind @ops).
 */
P2P_API int p2p_file_from_fd(int fd, const struct p2p_file_ops *ops, struct p2p_file **out);

/**
 * p2p_fd_is_file() - is @fd a p2pbuf file's fd that the library knows by number?
 *
 * No system call: one table load.  True for every fd handed out, duplicated
 * or adopted through this API (the door's fast path for "not mine").
 */
P2P_API bool p2p_fd_is_file(int fd);

/* Dispatch: each returns what the operation returns, or -EBADF / -EINVAL as p2p_file_from_fd(). */
P2P_API long p2p_fd_ioctl(int fd, unsigned long cmd, void *arg);
P2P_API int p2p_fd_mmap(int fd, void *addr, size_t length, int prot, int flags, uint64_t offset,
			void **out);
P2P_API ssize_t p2p_fd_pread(int fd, void *buf, size_t count, uint64_t off);
P2P_API ssize_t p2p_fd_pwrite(int fd, const void *buf, size_t count, uint64_t off);
/* read(2)/write(2) at the file position, which they advance (shared by dups, as f_pos). */
P2P_API ssize_t p2p_fd_read(int fd, void *buf, size_t count);
P2P_API ssize_t p2p_fd_write(int fd, const void *buf, size_t count);
P2P_API unsigned int p2p_fd_poll(int fd, unsigned int events);

/*
 * Fd lifetimes, as dup(2), dup3(2), fcntl(F_DUPFD) and SCM_RIGHTS.  Each
 * returns the new fd (with its own reference if @fd is a p2pbuf file;
 * otherwise the plain system call's result) or -errno.
 * p2p_fd_dup3(): an fd at @newfd that was a p2pbuf file's drops its
 * reference first, as close(2) would; @flags is O_CLOEXEC or 0.
 * p2p_fd_dupfd(): the lowest free fd >= @minfd.
 * p2p_fd_adopt(): @fd was made by the kernel (recvmsg SCM_RIGHTS, pidfd_getfd)
 * on a p2pbuf file's inode: give it a reference of its own; 0 or -errno
 * (-EINVAL if not a p2pbuf file).
 */
P2P_API int p2p_fd_dup(int fd);
P2P_API int p2p_fd_dup3(int oldfd, int newfd, int flags);
P2P_API int p2p_fd_dupfd(int fd, int minfd, int flags);
P2P_API int p2p_fd_adopt(int fd);

#ifdef __cplusplus
}
#endif

#endif
