// SPDX-License-Identifier: MIT
/*
 * The fd table: which fd stands for which p2pbuf object.
 *
 * Every object that has an fd (dma-buf, device file) owns a "token": a
 * sealed, empty memfd whose inode identifies the object.  Any fd on that
 * inode (the token, an fd installed for a caller, a plain dup of one)
 * resolves to the object.  Installed fds additionally hold a reference,
 * dropped by p2p_close().
 *
 * Locking: tab_lock (rw) protects both tables; it is a leaf lock, and
 * object get callbacks called under it must not take other locks.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p2pbuf/file.h>

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
int fdtab_install(int token_fd, const struct fdtab_type *type, void *obj, int flags)
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

P2P_API int p2p_close(int fd)
{
	struct fd_ent ent = { 0 };
	struct stat st;

	int ret = file_close_fd(fd); /* objects that are p2pbuf files (file.c) */

	if (ret <= 0)
		return ret;
	if (fstat(fd, &st) < 0)
		return -EBADF;
	pthread_rwlock_wrlock(&tab_lock);
	{
		struct tab_ent *e = find_locked(st.st_dev, st.st_ino);

		if (e && e->token_fd == fd) {
			/* The library's own fd for the object: not the caller's to close. */
			pthread_rwlock_unlock(&tab_lock);
			return -EBADF;
		}
	}
	if ((size_t)fd < nr_fds && fds[fd].obj && fds[fd].dev == st.st_dev &&
	    fds[fd].ino == st.st_ino) {
		ent = fds[fd];
		memset(&fds[fd], 0, sizeof(fds[fd]));
	}
	pthread_rwlock_unlock(&tab_lock);
	close(fd);
	if (ent.obj)
		ent.type->put(ent.obj);
	return 0;
}

P2P_API int p2p_dup(int fd)
{
	const struct fdtab_type *type;
	void *obj;
	int ret;

	type = fdtab_peek(fd, &obj);
	if (!type)
		return p2p_fd_dupfd(fd, 0, O_CLOEXEC); /* a p2pbuf file's, or a plain fd */
	ret = fdtab_lookup(fd, type, &obj);
	if (ret)
		return ret;
	ret = fdtab_install(fd, type, obj, O_CLOEXEC);
	if (ret < 0)
		type->put(obj);
	return ret;
}
