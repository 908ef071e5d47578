// SPDX-License-Identifier: MIT
/*
 * TEMPORARY: the old fd table, kept only for VFIO device fds until src/vfio
 * is converted to the file layer (src/core/file.c, include/p2pbuf/file.h).
 * Every other object with an fd is a struct p2p_file.  When nothing calls
 * fdtab_register() any more, delete this file and the fdtab_* calls in
 * p2p_close() and p2p_dup() (file.c).
 *
 * A VFIO device owns a "token": a sealed, empty memfd whose inode
 * identifies it.  Any fd on that inode resolves to the device.  An fd made
 * by p2p_dup() additionally holds a reference, dropped by p2p_close().
 *
 * Locking: tab_lock (rw) protects both tables; it is a leaf lock, and
 * object get callbacks called under it must not take other locks.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

#define NBUCKETS 1024

struct tab_ent {
	struct tab_ent *next;
	dev_t dev;
	ino_t ino;
	int token_fd; /* the object's own fd: never closed by p2p_close() */
	const struct fdtab_type *type;
	void *obj;
};

struct fd_ent {
	const struct fdtab_type *type;
	void *obj;
	dev_t dev;
	ino_t ino;
};

static pthread_rwlock_t tab_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct tab_ent *buckets[NBUCKETS];
static struct fd_ent *fds;
static size_t nr_fds;

static unsigned int hash(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;

	return (unsigned int)(h >> 54) % NBUCKETS;
}

int fdtab_register(int token_fd, const struct fdtab_type *type, void *obj)
{
	struct tab_ent *e = calloc(1, sizeof(*e));
	struct stat st;
	unsigned int h;

	if (!e)
		return -ENOMEM;
	if (fstat(token_fd, &st) < 0) {
		free(e);
		return -errno;
	}
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	e->token_fd = token_fd;
	e->type = type;
	e->obj = obj;
	h = hash(e->dev, e->ino);
	pthread_rwlock_wrlock(&tab_lock);
	e->next = buckets[h];
	buckets[h] = e;
	pthread_rwlock_unlock(&tab_lock);
	return 0;
}

/* Forget @obj, registered with @token_fd (still open). */
void fdtab_unregister(int token_fd, void *obj)
{
	struct stat st;

	if (fstat(token_fd, &st) < 0)
		return;
	pthread_rwlock_wrlock(&tab_lock);
	for (struct tab_ent **pp = &buckets[hash(st.st_dev, st.st_ino)]; *pp; pp = &(*pp)->next) {
		if ((*pp)->obj == obj) {
			struct tab_ent *e = *pp;

			*pp = e->next;
			free(e);
			break;
		}
	}
	pthread_rwlock_unlock(&tab_lock);
}

static struct tab_ent *find_locked(dev_t dev, ino_t ino)
{
	for (struct tab_ent *e = buckets[hash(dev, ino)]; e; e = e->next)
		if (e->dev == dev && e->ino == ino)
			return e;
	return NULL;
}

int fdtab_lookup(int fd, const struct fdtab_type *type, void **obj)
{
	struct tab_ent *e;
	struct stat st;
	int ret = -EINVAL;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADF;
	pthread_rwlock_rdlock(&tab_lock);
	e = find_locked(st.st_dev, st.st_ino);
	if (e && (!type || e->type == type) && e->type->tryget(e->obj)) {
		*obj = e->obj;
		ret = 0;
	}
	pthread_rwlock_unlock(&tab_lock);
	return ret;
}

const struct fdtab_type *fdtab_peek(int fd, void **obj)
{
	const struct fdtab_type *t = NULL;
	struct tab_ent *e;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	pthread_rwlock_rdlock(&tab_lock);
	e = find_locked(st.st_dev, st.st_ino);
	if (e) {
		t = e->type;
		*obj = e->obj;
	}
	pthread_rwlock_unlock(&tab_lock);
	return t;
}

/* The caller's reference on @obj moves to @fd. */
static int fdtab_install(int token_fd, const struct fdtab_type *type, void *obj, int flags)
{
	struct stat st;
	int fd;

	fd = fcntl(token_fd, (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -errno;
	}
	pthread_rwlock_wrlock(&tab_lock);
	if ((size_t)fd >= nr_fds) {
		size_t n = MAX((size_t)fd + 1, nr_fds * 2);
		struct fd_ent *nf = realloc(fds, n * sizeof(*nf));

		if (!nf) {
			pthread_rwlock_unlock(&tab_lock);
			close(fd);
			return -ENOMEM;
		}
		memset(nf + nr_fds, 0, (n - nr_fds) * sizeof(*nf));
		fds = nf;
		nr_fds = n;
	}
	fds[fd] = (struct fd_ent){ .type = type, .obj = obj, .dev = st.st_dev, .ino = st.st_ino };
	pthread_rwlock_unlock(&tab_lock);
	return fd;
}

bool fdtab_is_token(int fd, const struct stat *st)
{
	struct tab_ent *e;
	bool ret;

	pthread_rwlock_rdlock(&tab_lock);
	e = find_locked(st->st_dev, st->st_ino);
	ret = e && e->token_fd == fd;
	pthread_rwlock_unlock(&tab_lock);
	return ret;
}

void *fdtab_take(int fd, const struct stat *st, const struct fdtab_type **type)
{
	struct fd_ent ent = { 0 };

	pthread_rwlock_wrlock(&tab_lock);
	if ((size_t)fd < nr_fds && fds[fd].obj && fds[fd].dev == st->st_dev &&
	    fds[fd].ino == st->st_ino) {
		ent = fds[fd];
		memset(&fds[fd], 0, sizeof(fds[fd]));
	}
	pthread_rwlock_unlock(&tab_lock);
	*type = ent.type;
	return ent.obj;
}

int fdtab_dup(int fd)
{
	const struct fdtab_type *type;
	void *obj;
	int ret;

	type = fdtab_peek(fd, &obj);
	if (!type)
		return -ENOENT;
	ret = fdtab_lookup(fd, type, &obj);
	if (ret)
		return ret;
	ret = fdtab_install(fd, type, obj, O_CLOEXEC);
	if (ret < 0)
		type->put(obj);
	return ret;
}
