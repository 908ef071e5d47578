/* SPDX-License-Identifier: MIT */
/*
 * dma-buf core internals.
 *
 * Locks of a buffer: buf->resv protects its attachment list, fences,
 * status writes and dynamic map/unmap; buf->map_lock the count of live
 * attachment maps; buf->cpu_lock its CPU mappings; buf->tree.apply
 * applying its tree-wide state here (tree.c).  Their order, and the rest
 * of the library's, is docs/locking.md's.
 */
#ifndef P2PBUF_CORE_H
#define P2PBUF_CORE_H

#include <sys/stat.h>
#include <sys/types.h>

#include <p2pbuf/dmabuf.h>

#include "../util/private.h"
#include "exporter.h"

struct p2p_mem {
	struct kref ref;
	int fd;
	uint64_t fd_off; /* where byte 0 of the memory is in fd */
	void *base;
	uint64_t size;
	bool huge;
};

/* mem_create(): exporter.h */
/* Populate [base, base + len) on @nthreads threads, 0: every core (src/core/mem.c). */
int mem_populate_range(void *base, size_t len, unsigned int nthreads);

struct p2p_fence {
	struct kref ref;
	atomic_bool signaled;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

struct p2p_attachment {
	struct list_head node; /* buf->attachments, under resv */
	struct p2p_dmabuf *buf;
	uint32_t flags;
	const struct p2p_dmabuf_importer_ops *importer_ops;
	void *importer_priv;
	char name[32];
	void *exporter_priv;
	unsigned int pins;
};

struct cpu_map;

struct p2p_file;
struct p2p_file;
struct p2p_file_ops;
/*
 * p2p_file_create() with @token_fd >= 0: the file adopts @token_fd (owned by
 * the file on success, the caller's on failure) as its token instead of a
 * new memfd, so every fd on that inode (dups, fork and SCM_RIGHTS copies)
 * is the file.  -EEXIST if a file of that token exists.
 */
int file_create(const struct p2p_file_ops *ops, void *priv, const char *name, int flags,
		int token_fd, struct p2p_file **out);

/**
 * struct fd_resolver_ops - who may claim an fd that no file of this process is
 * @kind:    the p2p_file_ops name of the files it creates ("dmabuf"): only
 *           lookups that want that kind (or any) ask it
 * @claims:  on the miss path of p2p_file_from_fd() and p2p_fd_adopt(), no
 *           lock held, @st the fd's fstat(2): is @fd its own?  Cheap, and
 *           writes nothing to @fd.
 * @resolve: then, with resolve_lock held (docs/locking.md; it may block):
 *           0 with *@out a new file (one reference, which moves to @fd)
 *           whose token is a dup of @fd (file_create()), or -errno.
 *
 * Registered by a subsystem (the vfio-user client) with
 * fd_resolver_register(); the core knows nothing of how fds are claimed.
 */
struct fd_resolver_ops {
	const char *kind;
	bool (*claims)(int fd, const struct stat *st);
	int (*resolve)(int fd, const struct stat *st, struct p2p_file **out);
};
int fd_resolver_register(const struct fd_resolver_ops *ops);
/*
 * p2p_dmabuf_export() whose file adopts @token_fd (see file_create()); -1: a new token.
 * @info->flags may also hold DMABUF_EXPORT_PERM_REVOKED (this function only, not
 * p2p_dmabuf_export()): the buffer starts revoked for good, as after
 * p2p_dmabuf_revoke(PERM) of a buffer nobody used yet (a received export that its
 * server revoked for good before we attached).
 */
#define DMABUF_EXPORT_PERM_REVOKED (1u << 31)
int dmabuf_export_token(const struct p2p_dmabuf_export_info *info, int token_fd,
			struct p2p_dmabuf **out);

/* The inode of the file's token, recorded at p2p_file_create() (src/core/file.c). */
ino_t file_ino(const struct p2p_file *file);
/*
 * do_mmap()'s access check on a file opened with @fflags: every mapping
 * needs read access, a shared writable one write access.  0 or -EACCES.
 */
int file_mmap_access(int fflags, int prot, int flags);
/* A dma-buf's place in the process tree (src/core/tree.c). */
struct tree_link {
	struct list_head node;	 /* every live buffer of this process, under tree_lock */
	_Atomic uint32_t slot;	 /* shared slot index + 1; 0: not shared (yet) */
	uint32_t id;		 /* the slot's incarnation; 0: never had a slot */
	_Atomic uint32_t applied; /* slot generation last applied here */
	pthread_mutex_t apply;	 /* serializes applying the slot's state here */
};

struct p2p_dmabuf {
	struct p2p_file *file; /* its lifetime is the file's: ref/put are the file's */
	uint64_t size;
	const struct p2p_dmabuf_ops *ops;
	void *priv;
	char name[64];
	struct list_head db_node; /* the list of live dma-bufs (bufinfo), under db_lock */
	char uname[32];		  /* DMA_BUF_SET_NAME (DMA_BUF_NAME_LEN), under resv */

	pthread_mutex_t resv;
	struct list_head attachments;
	struct p2p_fence **fences;
	unsigned int nr_fences, max_fences;
	atomic_int status;

	pthread_mutex_t map_lock;
	pthread_cond_t map_cond;
	unsigned int nr_maps;

	pthread_mutex_t cpu_lock;
	struct list_head cpu_maps;
	bool cpu_blocked; /* CPU mappings currently zapped, under cpu_lock */

	struct tree_link tree;

	unsigned int nr_ranges;
	struct p2p_phys_range ranges[];
};

/* src/core/cpumap.c */
int cpumap_block_all(struct p2p_dmabuf *buf);
int cpumap_unblock_all(struct p2p_dmabuf *buf);
bool cpumap_range_mapped(uintptr_t addr, size_t len);
int uffd_get(void);
void cpumap_fork_prepare(void);
void cpumap_fork_parent(void);
void cpumap_fork_child(void);
void cpumap_fork_reblock(struct p2p_dmabuf *buf);

/* src/core/dmabuf.c: un-revoke in this process only (dmabuf_revoke_local(): exporter.h). */
int dmabuf_unrevoke_local(struct p2p_dmabuf *buf);

/* src/core/tree.c: the state shared with fork children. */
void tree_buf_init(struct p2p_dmabuf *buf);
void tree_buf_release(struct p2p_dmabuf *buf);
int tree_set_state(struct p2p_dmabuf *buf, enum p2p_dmabuf_status status);
bool tree_state_ok(const struct p2p_dmabuf *buf);


/* Find the range holding byte @off of @buf; *roff is the offset within it. */
unsigned int dmabuf_find_range(const struct p2p_dmabuf *buf, uint64_t off, uint64_t *roff);

#endif
