// SPDX-License-Identifier: MIT
/*
 * The file layer (include/p2pbuf/file.h): struct p2p_file, its fds, and one
 * dispatch entry per file operation.
 *
 * A file owns a token: a sealed, empty memfd named "<kind>:<name>", whose
 * inode identifies the file.  Fds handed out are dups of the token, so any
 * fd on that inode resolves to the file (the inode table), and the fds the
 * library hands out, duplicates or adopts are also known by number (the fd
 * table), each holding one reference.
 *
 * The fd table is two-level (FD_CHUNK entries per chunk, allocated on first
 * use and never freed), so p2p_fd_is_file() is lock-free: two loads.  An
 * entry records the inode too, so an fd the program closed behind the
 * library's back and that now names another file is not taken for ours.
 *
 * Dispatch resolves an fd in one cheap system call: every token's file
 * position is set once to a tag unique to its file (FILE_TAG_BASE + a
 * serial; the token is empty, sealed and never read or written through the
 * kernel, and the library keeps the file position of read(2)/write(2)
 * itself), which every fd on the same open file shares.  An fd found in the
 * fd table whose lseek(SEEK_CUR) gives its file's tag is that file; any
 * other answer (closed behind our back and reused, or moved by a raw
 * lseek) falls back to fstat(2) and the inode table.
 *
 * Locking: tab_lock (rw) protects the inode table and writes to the fd
 * table; it is a leaf lock (docs/locking.md).  file->pos_lock serialises
 * read(2)/write(2) at the file position.  ops->release is called with no
 * library lock held.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p2pbuf/file.h>

#include "core.h"

#define NBUCKETS 1024
#define FD_CHUNK 1024u
#define FD_CHUNKS 1024u /* fds up to FD_CHUNK * FD_CHUNKS */

struct p2p_file {
	struct kref ref;
	const struct p2p_file_ops *ops;
	void *priv;
	int flags;
	int token_fd;
	dev_t dev;
	ino_t ino;
	struct p2p_file *hnext; /* inode table, under tab_lock */
	pthread_mutex_t pos_lock;
	uint64_t pos;
	off_t tag; /* the token's file position, see above */
};

#define FILE_TAG_BASE ((off_t)1 << 61)
static atomic_ullong file_serial;

struct fd_slot {
	_Atomic(struct p2p_file *) file;
	ino_t ino;
};

static pthread_rwlock_t tab_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct p2p_file *buckets[NBUCKETS];
static _Atomic(struct fd_slot *) fd_chunks[FD_CHUNKS];

static unsigned int hash(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;

	return (unsigned int)(h >> 54) % NBUCKETS;
}

/* The slot for @fd, allocating its chunk if @create; NULL if out of range or memory. */
static struct fd_slot *fd_slot(int fd, bool create)
{
	unsigned int c = (unsigned int)fd / FD_CHUNK;
	struct fd_slot *chunk, *fresh = NULL;

	if (fd < 0 || c >= FD_CHUNKS)
		return NULL;
	chunk = atomic_load_explicit(&fd_chunks[c], memory_order_acquire);
	if (chunk || !create)
		return chunk ? &chunk[(unsigned int)fd % FD_CHUNK] : NULL;
	fresh = calloc(FD_CHUNK, sizeof(*fresh));
	if (!fresh)
		return NULL;
	if (!atomic_compare_exchange_strong(&fd_chunks[c], &chunk, fresh))
		free(fresh); /* another thread won; chunk holds its pointer */
	else
		chunk = fresh;
	return &chunk[(unsigned int)fd % FD_CHUNK];
}

static struct p2p_file *find_locked(dev_t dev, ino_t ino);

int file_create(const struct p2p_file_ops *ops, void *priv, const char *name, int flags,
		int token_fd, struct p2p_file **out)
{
	struct p2p_file *f;
	char tname[96];
	struct stat st;
	unsigned int h;
	int ret;

	if (!ops || !ops->release || !ops->name)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	kref_init(&f->ref);
	f->ops = ops;
	f->priv = priv;
	f->flags = flags & ~O_CLOEXEC;
	pthread_mutex_init(&f->pos_lock, NULL);
	if (token_fd >= 0) {
		f->token_fd = token_fd;
	} else {
		snprintf(tname, sizeof(tname), "%s:%s", ops->name, name ? name : "");
		f->token_fd = token_fd_create(tname);
		if (f->token_fd < 0) {
			ret = f->token_fd;
			goto err_free;
		}
	}
	if (fstat(f->token_fd, &st) < 0) {
		ret = -errno;
		goto err_close;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	/*
	 * An adopted token that cannot seek (a socket: ESPIPE) or whose
	 * position is not ours to set has no tag: its fds resolve by fstat(2)
	 * and the inode table, as do dups, fork and SCM_RIGHTS copies.
	 */
	f->tag = -1;
	if (token_fd < 0) {
		f->tag = FILE_TAG_BASE +
			 (off_t)(atomic_fetch_add(&file_serial, 1) & ((1ull << 60) - 1));
		if (lseek(f->token_fd, f->tag, SEEK_SET) != f->tag)
			f->tag = -1; /* no fast path for this file: lookups take fstat(2) */
	}
	h = hash(f->dev, f->ino);
	pthread_rwlock_wrlock(&tab_lock);
	if (token_fd >= 0 && find_locked(f->dev, f->ino)) {
		/* One file per token: the inode table must name one file. */
		pthread_rwlock_unlock(&tab_lock);
		ret = -EEXIST;
		goto err_free;
	}
	f->hnext = buckets[h];
	buckets[h] = f;
	pthread_rwlock_unlock(&tab_lock);
	*out = f;
	return 0;

err_close:
	if (token_fd < 0)
		close(f->token_fd);
err_free:
	pthread_mutex_destroy(&f->pos_lock);
	free(f);
	return ret;
}

P2P_API int p2p_file_create(const struct p2p_file_ops *ops, void *priv, const char *name,
			    int flags, struct p2p_file **out)
{
	return file_create(ops, priv, name, flags, -1, out);
}

P2P_API struct p2p_file *p2p_file_get(struct p2p_file *file)
{
	kref_get(&file->ref);
	return file;
}

/* Take a reference unless the file is on its way out (its release runs). */
P2P_API bool p2p_file_tryget(struct p2p_file *file)
{
	return kref_get_unless_zero(&file->ref);
}

P2P_API long p2p_file_count(const struct p2p_file *file)
{
	return (long)atomic_load(&file->ref.count);
}

P2P_API void p2p_file_put(struct p2p_file *file)
{
	if (!file || !kref_put(&file->ref))
		return;
	pthread_rwlock_wrlock(&tab_lock);
	for (struct p2p_file **pp = &buckets[hash(file->dev, file->ino)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == file) {
			*pp = file->hnext;
			break;
		}
	}
	pthread_rwlock_unlock(&tab_lock);
	file->ops->release(file);
	close(file->token_fd);
	pthread_mutex_destroy(&file->pos_lock);
	free(file);
}

P2P_API void *p2p_file_priv(const struct p2p_file *file)
{
	return file->priv;
}

P2P_API const struct p2p_file_ops *p2p_file_ops(const struct p2p_file *file)
{
	return file->ops;
}

P2P_API int p2p_file_flags(const struct p2p_file *file)
{
	return file->flags;
}

/*
 * Record @fd as holding the caller's reference on @f; false if the table
 * can't hold it.  The kernel just handed out @fd, so whatever the slot held
 * stood for an fd closed behind the library's back (a plain close(2)): that
 * reference is orphaned, and dropped here (the caller's *@stale, to put
 * without the lock).
 */
static bool fd_table_set(int fd, struct p2p_file *f, struct p2p_file **stale)
{
	struct fd_slot *s = fd_slot(fd, true);

	*stale = NULL;
	if (!s)
		return false;
	pthread_rwlock_wrlock(&tab_lock);
	s->ino = f->ino;
	*stale = atomic_exchange_explicit(&s->file, f, memory_order_acq_rel);
	pthread_rwlock_unlock(&tab_lock);
	return true;
}

/* Forget @fd; returns the file whose reference it held, or NULL. */
static struct p2p_file *fd_table_take(int fd)
{
	struct fd_slot *s = fd_slot(fd, false);
	struct p2p_file *f;

	if (!s)
		return NULL;
	pthread_rwlock_wrlock(&tab_lock);
	f = atomic_exchange(&s->file, NULL);
	pthread_rwlock_unlock(&tab_lock);
	return f;
}

/* dup @f's token (or @src) to a new fd >= @minfd holding a new reference. */
static int install_from(struct p2p_file *f, int src, int minfd, int flags)
{
	int fd = fcntl(src, (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, minfd);
	struct p2p_file *stale;

	if (fd < 0)
		return -errno;

	p2p_file_get(f);
	if (!fd_table_set(fd, f, &stale)) {
		close(fd);
		p2p_file_put(f);
		return -ENOMEM;
	}
	p2p_file_put(stale);
	return fd;
}

P2P_API int p2p_file_install(struct p2p_file *file, int flags)
{
	return install_from(file, file->token_fd, 0, flags);
}

static struct p2p_file *find_locked(dev_t dev, ino_t ino)
{
	for (struct p2p_file *f = buckets[hash(dev, ino)]; f; f = f->hnext)
		if (f->dev == dev && f->ino == ino)
			return f;
	return NULL;
}

/* file_by_inode() that leaves the fd's fstat(2) in *@st (for the miss path). */
static struct p2p_file *file_by_inode_st(int fd, int *err, struct stat *st)
{
	struct p2p_file *f;

	if (fd < 0 || fstat(fd, st) < 0) {
		*err = -EBADF;
		return NULL;
	}
	pthread_rwlock_rdlock(&tab_lock);
	f = find_locked(st->st_dev, st->st_ino);
	if (f && !p2p_file_tryget(f))
		f = NULL;
	pthread_rwlock_unlock(&tab_lock);
	*err = f ? 0 : -EINVAL;
	return f;
}

/* The file of an open fd by inode, with a reference; NULL if it is none of ours. */
static struct p2p_file *file_by_inode(int fd, int *err)
{
	struct stat st;

	return file_by_inode_st(fd, err, &st);
}

/*
 * The file of an fd the library handed out, with a reference, by the fd
 * table and the token's tag; NULL if that cannot tell (not in the table, or
 * the fd now names something else): the caller asks the inode table.
 */
static struct p2p_file *file_by_tag(int fd)
{
	struct fd_slot *s = fd_slot(fd, false);
	struct p2p_file *f;

	if (!s || !atomic_load_explicit(&s->file, memory_order_relaxed))
		return NULL;
	/* Under tab_lock: a slot's reference is dropped only after its entry is cleared. */
	pthread_rwlock_rdlock(&tab_lock);
	f = atomic_load_explicit(&s->file, memory_order_acquire);
	if (f && !p2p_file_tryget(f))
		f = NULL;
	pthread_rwlock_unlock(&tab_lock);
	if (f && (f->tag < 0 || lseek(fd, 0, SEEK_CUR) != f->tag)) {
		p2p_file_put(f);
		f = NULL;
	}
	return f;
}

/* ---------------------------------------------------------------------- */
/* Foreign fds                                                             */

#define MAX_RESOLVERS 4
static _Atomic(const struct fd_resolver_ops *) resolvers[MAX_RESOLVERS];
static atomic_uint nr_resolvers;
/* Serializes resolving (one file per token); taken before any other library lock. */
static pthread_mutex_t resolve_lock = PTHREAD_MUTEX_INITIALIZER;

int fd_resolver_register(const struct fd_resolver_ops *ops)
{
	unsigned int n;
	int ret = 0;

	if (!ops || !ops->claims || !ops->resolve || !ops->kind)
		return -EINVAL;
	pthread_mutex_lock(&resolve_lock);
	n = atomic_load(&nr_resolvers);
	for (unsigned int i = 0; i < n; i++)
		if (atomic_load(&resolvers[i]) == ops)
			goto out;
	if (n == MAX_RESOLVERS) {
		ret = -ENOSPC;
		goto out;
	}
	atomic_store(&resolvers[n], ops);
	atomic_store_explicit(&nr_resolvers, n + 1, memory_order_release);
out:
	pthread_mutex_unlock(&resolve_lock);
	return ret;
}

/*
 * The miss path of a lookup: @fd is open and names no file of ours.  Each
 * registered resolver whose kind is @ops's (any, for NULL) may claim it by
 * creating a file whose token is a dup of @fd (file_create()); @fd then
 * holds that file's first reference in the fd table, as after
 * p2p_fd_adopt().  Return: the file with a reference for the caller, or
 * NULL with *@err -EINVAL (nobody's) or the resolver's error.
 */
static struct p2p_file *file_resolve(int fd, const struct stat *st0,
				     const struct p2p_file_ops *ops, int *err)
{
	unsigned int n = atomic_load_explicit(&nr_resolvers, memory_order_acquire);
	struct p2p_file *f = NULL, *stale;
	const struct fd_resolver_ops *r;
	unsigned int i;
	struct stat st;

	/* Who claims it: a cheap look that writes nothing, no lock. */
	for (i = 0; i < n; i++) {
		r = atomic_load(&resolvers[i]);
		if ((!ops || !strcmp(ops->name, r->kind)) && r->claims(fd, st0))
			break;
	}
	if (i == n)
		return NULL; /* *err stays -EINVAL: nobody's */
	pthread_mutex_lock(&resolve_lock);
	/* Another thread may have resolved the same token meanwhile. */
	f = file_by_inode_st(fd, err, &st);
	if (f || *err != -EINVAL)
		goto out;
	{
		int ret = r->resolve(fd, &st, &f);
		if (ret) {
			*err = ret;
			f = NULL;
			goto out;
		}
	}
	/* The resolver's reference moves to @fd; the caller gets its own. */
	p2p_file_get(f);
	if (!fd_table_set(fd, f, &stale))
		p2p_file_put(f); /* no slot: the caller's reference is the last */
	p2p_file_put(stale);
	*err = 0;
out:
	pthread_mutex_unlock(&resolve_lock);
	return f;
}

P2P_API int p2p_file_from_fd(int fd, const struct p2p_file_ops *ops, struct p2p_file **out)
{
	int err = 0;
	struct p2p_file *f = file_by_tag(fd);

	struct stat st;

	if (!f)
		f = file_by_inode_st(fd, &err, &st);
	if (!f && err == -EINVAL)
		f = file_resolve(fd, &st, ops, &err); /* only on a miss: no cost for our own fds */
	if (!f)
		return err;
	if (ops && f->ops != ops) {
		p2p_file_put(f);
		return -EINVAL;
	}
	*out = f;
	return 0;
}

P2P_API bool p2p_fd_is_file(int fd)
{
	struct fd_slot *s = fd_slot(fd, false);

	return s && atomic_load_explicit(&s->file, memory_order_acquire);
}

/* ---------------------------------------------------------------------- */
/* Dispatch                                                                */

P2P_API long p2p_fd_ioctl(int fd, unsigned long cmd, void *arg)
{
	struct p2p_file *f;
	long ret = p2p_file_from_fd(fd, NULL, &f);

	if (ret)
		return ret;
	ret = f->ops->ioctl ? f->ops->ioctl(f, cmd, arg) : -ENOTTY;
	p2p_file_put(f);
	return ret;
}

P2P_API int p2p_fd_mmap(int fd, void *addr, size_t length, int prot, int flags, uint64_t offset,
			void **out)
{
	struct p2p_file *f;
	int ret = p2p_file_from_fd(fd, NULL, &f);

	if (ret)
		return ret;
	ret = file_mmap_access(f->flags, prot, flags);
	if (!ret)
		ret = f->ops->mmap ? f->ops->mmap(f, addr, length, prot, flags, offset, out)
				   : -ENODEV;
	p2p_file_put(f);
	return ret;
}

int file_mmap_access(int fflags, int prot, int flags)
{
	int acc = fflags & O_ACCMODE;

	if (acc == O_WRONLY ||
	    ((flags & MAP_TYPE) == MAP_SHARED && (prot & PROT_WRITE) && acc != O_RDWR))
		return -EACCES;
	return 0;
}

static ssize_t do_rw(int fd, void *buf, size_t count, uint64_t off, bool write, bool at_pos)
{
	struct p2p_file *f;
	ssize_t ret = p2p_file_from_fd(fd, NULL, &f);
	int acc;

	if (ret)
		return ret;
	acc = f->flags & O_ACCMODE;
	if (write ? acc == O_RDONLY : acc == O_WRONLY) {
		ret = -EBADF;
		goto out;
	}
	if (write ? !f->ops->write : !f->ops->read) {
		ret = -EINVAL;
		goto out;
	}
	if (at_pos) {
		pthread_mutex_lock(&f->pos_lock);
		off = f->pos;
	}
	ret = write ? f->ops->write(f, buf, count, off) : f->ops->read(f, buf, count, off);
	if (at_pos) {
		if (ret > 0)
			f->pos += (uint64_t)ret;
		pthread_mutex_unlock(&f->pos_lock);
	}
out:
	p2p_file_put(f);
	return ret;
}

P2P_API ssize_t p2p_fd_pread(int fd, void *buf, size_t count, uint64_t off)
{
	return do_rw(fd, buf, count, off, false, false);
}

P2P_API ssize_t p2p_fd_pwrite(int fd, const void *buf, size_t count, uint64_t off)
{
	return do_rw(fd, (void *)buf, count, off, true, false);
}

P2P_API ssize_t p2p_fd_read(int fd, void *buf, size_t count)
{
	return do_rw(fd, buf, count, 0, false, true);
}

P2P_API ssize_t p2p_fd_write(int fd, const void *buf, size_t count)
{
	return do_rw(fd, (void *)buf, count, 0, true, true);
}

P2P_API unsigned int p2p_fd_poll(int fd, unsigned int events)
{
	struct p2p_file *f;
	unsigned int ret;

	if (p2p_file_from_fd(fd, NULL, &f))
		return POLLNVAL;
	ret = f->ops->poll ? f->ops->poll(f, events) : (events & (POLLIN | POLLOUT));
	p2p_file_put(f);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Fd lifetimes                                                            */

/* p2p_close() and p2p_dup(): close(2) and dup(2) (with FD_CLOEXEC) for the fds the library hands out. */
P2P_API int p2p_close(int fd)
{
	struct p2p_file *f, *tok;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADF;
	pthread_rwlock_rdlock(&tab_lock);
	tok = find_locked(st.st_dev, st.st_ino);
	tok = tok && tok->token_fd == fd ? tok : NULL;
	pthread_rwlock_unlock(&tab_lock);
	if (tok)
		return -EBADF; /* the library's own fd for the file: not the caller's to close */
	/*
	 * Take the slot even if its inode is another one: the fd it stood for
	 * was closed with close(2), and its reference is dropped now.
	 */
	f = fd_table_take(fd);
	close(fd);
	p2p_file_put(f);
	return 0;
}

/* The file @fd stands for, with a reference, or NULL for a plain fd (or -EBADF in *@err). */
static struct p2p_file *file_of(int fd, int *err)
{
	struct p2p_file *f = file_by_inode(fd, err);

	if (*err == -EINVAL)
		*err = 0; /* open, not ours */
	return f;
}

P2P_API int p2p_fd_dupfd(int fd, int minfd, int flags)
{
	int err, ret;
	struct p2p_file *f = file_of(fd, &err);

	if (err)
		return err;
	if (!f) {
		ret = fcntl(fd, (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, minfd);
		return ret < 0 ? -errno : ret;
	}
	ret = install_from(f, fd, minfd, flags);
	p2p_file_put(f);
	return ret;
}

P2P_API int p2p_fd_dup(int fd)
{
	return p2p_fd_dupfd(fd, 0, 0);
}

P2P_API int p2p_dup(int fd)
{
	return p2p_fd_dupfd(fd, 0, O_CLOEXEC);
}

P2P_API int p2p_fd_dup3(int oldfd, int newfd, int flags)
{
	int err, ret;
	struct p2p_file *f, *old;

	if (flags & ~O_CLOEXEC)
		return -EINVAL;
	f = file_of(oldfd, &err);
	if (err)
		return err;
	if (oldfd == newfd) {
		p2p_file_put(f);
		return -EINVAL; /* dup3(2); dup2(2) callers check equality themselves */
	}
	ret = dup3(oldfd, newfd, flags);
	if (ret < 0) {
		ret = -errno;
		p2p_file_put(f);
		return ret;
	}
	old = fd_table_take(newfd); /* what newfd was before dup3 closed it */
	if (f) {
		struct p2p_file *stale;

		/* file_of()'s reference moves to the new fd. */
		if (!fd_table_set(newfd, f, &stale)) {
			close(newfd);
			p2p_file_put(f);
			ret = -ENOMEM;
		}
		p2p_file_put(stale);
	}
	p2p_file_put(old);
	return ret;
}

P2P_API int p2p_fd_adopt(int fd)
{
	int err;
	struct stat st;
	struct p2p_file *f = file_by_inode_st(fd, &err, &st);
	struct p2p_file *old;

	if (!f && err == -EINVAL) {
		/* A foreign fd a resolver claims is adopted by resolving it. */
		f = file_resolve(fd, &st, NULL, &err);
		if (f)
			p2p_file_put(f);
		return f ? 0 : err;
	}
	if (!f)
		return err;
	if (!fd_table_set(fd, f, &old)) { /* f's reference moves to the fd */
		p2p_file_put(f);
		err = -ENOMEM;
	}
	p2p_file_put(old); /* adopted twice, or a stale entry for a number the kernel reused */
	return err;
}

P2P_API int p2p_file_fd(const struct p2p_file *file)
{
	return file->token_fd;
}

ino_t file_ino(const struct p2p_file *file)
{
	return file->ino;
}
