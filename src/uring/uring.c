// SPDX-License-Identifier: MIT
/*
 * io_uring dma-buf registered buffers (kernel-semantics 5).
 *
 * A user slot maps onto one or more real fixed buffers of the real ring:
 * a UADDR slot onto one, a mapped DMABUF slot onto one per range of the
 * dma-buf (cut at 1 GiB, the kernel's limit per registered buffer).  The
 * real buffers of a DMABUF slot point at the exporter's memory (the
 * library's view of the backing memfd), so the kernel pins exactly those
 * pages; they are registered lazily on the first I/O ("the token maps")
 * and unregistered when the exporter invalidates the attachment.
 *
 * Every real SQE carries a struct track as user_data, so completions of
 * split requests are gathered into one user completion (stash).
 *
 * Locking, outer to inner: dma-buf resv (held by the invalidate callback;
 * taken with trylock on submission), ring->cq_lock (reaping the real CQ,
 * the stash), ring->sq_lock (the real SQ), slot->lock (state, inflight),
 * ring->idx_lock (the real-buffer index allocator).
 * - A submission never waits for resv, so a revoke in progress gives
 *   -EAGAIN.
 * - A submission takes sq_lock, never cq_lock, so a thread blocked in a CQ
 *   wait with cq_lock held never stops it (even errors are completed
 *   through the real ring, see complete_now()).
 * - A DMABUF request is counted in flight and queued in one sq_lock
 *   section, and the invalidate callback marks the slot, then flushes the
 *   SQ before it reaps, so it cannot wait on requests nobody submitted.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <p2pbuf/uring.h>

#include "../core/core.h"

#define MAX_SLOTS 1024
#define REAL_PER_SLOT 16
#define MAX_REAL 16384
#define REAL_MAX_LEN (1ull << 30)

enum slot_state {
	SLOT_UNMAPPED,
	SLOT_MAPPED,
	SLOT_INVALIDATING,
};

struct uslot {
	pthread_mutex_t lock;
	struct p2p_uring *ring;
	unsigned int index;
	uint32_t type;
	/* UADDR */
	int real; /* real buffer index, -1 if none */
	/* DMABUF */
	struct p2p_dmabuf *buf;
	struct p2p_attachment *attach;
	int target_fd; /* our dup of the target file: the real SQEs use it */
	int user_fd;   /* the fd number the target was registered with */
	struct p2p_sgt *sgt;
	unsigned int real_base, real_n;
	uint64_t *real_off;  /* dma-buf offset where each real buffer starts */
	uint8_t **real_host; /* its host address */
	uint64_t *real_len;
	enum slot_state state;
	unsigned int inflight;
};

struct track {
	uint64_t user_data;
	struct uslot *slot; /* NULL for pass-through requests */
	unsigned int pending;
	int32_t res;
	uint32_t flags;
};

struct p2p_uring {
	struct io_uring ring;
	pthread_mutex_t sq_lock;
	pthread_mutex_t cq_lock;
	pthread_mutex_t idx_lock;
	struct uslot *slots;
	unsigned int nr_slots, nr_real;
	uint8_t *real_used; /* allocator bitmap (bytes) */
	struct io_uring_cqe *stash;
	size_t stash_head, stash_n, stash_max;
	atomic_uint tracks; /* requests handed to the real ring, not yet completed */
};

static struct track *track_new(struct p2p_uring *r)
{
	struct track *t = calloc(1, sizeof(*t));

	if (t)
		atomic_fetch_add(&r->tracks, 1);
	return t;
}

static void track_free(struct p2p_uring *r, struct track *t)
{
	atomic_fetch_sub(&r->tracks, 1);
	free(t);
}

/* ---------------------------------------------------------------------- */
/* Real buffer indices                                                     */

static int idx_alloc(struct p2p_uring *r, unsigned int n, unsigned int *base)
{
	int ret = -ENOMEM;

	pthread_mutex_lock(&r->idx_lock);
	for (unsigned int b = 0, run = 0; b < r->nr_real; b++) {
		run = r->real_used[b] ? 0 : run + 1;
		if (run == n) {
			*base = b + 1 - n;
			memset(&r->real_used[*base], 1, n);
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&r->idx_lock);
	return ret;
}

static void idx_free(struct p2p_uring *r, unsigned int base, unsigned int n)
{
	pthread_mutex_lock(&r->idx_lock);
	memset(&r->real_used[base], 0, n);
	pthread_mutex_unlock(&r->idx_lock);
}

/* Point real buffers [base, base + n) at @iov (NULL: empty them, unpinning). */
static int real_update(struct p2p_uring *r, unsigned int base, const struct iovec *iov,
		       unsigned int n)
{
	struct iovec *empty = NULL;
	__u64 *tags = calloc(n, sizeof(*tags));
	int ret;

	if (!iov)
		iov = empty = calloc(n, sizeof(*empty));
	if (!tags || !iov) {
		free(tags);
		free(empty);
		return -ENOMEM;
	}
	ret = io_uring_register_buffers_update_tag(&r->ring, base, iov, tags, n);
	free(tags);
	free(empty);
	return ret < 0 ? ret : 0;
}

/* ---------------------------------------------------------------------- */
/* Completions                                                             */

static int stash_push(struct p2p_uring *r, uint64_t user_data, int32_t res, uint32_t flags)
{
	if (r->stash_n == r->stash_max) {
		size_t n = r->stash_max ? r->stash_max * 2 : 64;
		struct io_uring_cqe *s = malloc(n * sizeof(*s));

		if (!s)
			return -ENOMEM;
		for (size_t i = 0; i < r->stash_n; i++)
			s[i] = r->stash[(r->stash_head + i) % r->stash_max];
		free(r->stash);
		r->stash = s;
		r->stash_head = 0;
		r->stash_max = n;
	}
	r->stash[(r->stash_head + r->stash_n) % r->stash_max] =
		(struct io_uring_cqe){ .user_data = user_data, .res = res, .flags = flags };
	r->stash_n++;
	return 0;
}

/* A real completion: gather pieces of split requests.  cq_lock held. */
static void process_cqe(struct p2p_uring *r, const struct io_uring_cqe *cqe)
{
	struct track *t = io_uring_cqe_get_data(cqe);

	if (!t)
		return;
	if (cqe->flags & IORING_CQE_F_MORE) {
		/* A multishot pass-through request: more completions follow. */
		stash_push(r, t->user_data, cqe->res, cqe->flags);
		return;
	}
	if (cqe->res < 0) {
		if (t->res >= 0)
			t->res = cqe->res;
	} else if (t->res >= 0) {
		t->res += cqe->res;
	}
	t->flags |= cqe->flags;
	if (--t->pending)
		return;
	if (stash_push(r, t->user_data, t->res, t->flags & ~IORING_CQE_F_MORE))
		pr_err("io_uring: completion of %llu lost (out of memory)",
		       (unsigned long long)t->user_data);
	if (t->slot) {
		pthread_mutex_lock(&t->slot->lock);
		t->slot->inflight--;
		pthread_mutex_unlock(&t->slot->lock);
	}
	track_free(r, t);
}

/* Reap what is ready; with @wait, block for at least one.  cq_lock held. */
static int reap(struct p2p_uring *r, bool wait)
{
	struct io_uring_cqe *cqe;
	unsigned int head, ready, n = 0;
	int ret;

	if (wait) {
		ret = io_uring_wait_cqe(&r->ring, &cqe);
		if (ret)
			return ret;
	}
	ready = io_uring_cq_ready(&r->ring);
	if (!ready)
		return 0;
	/*
	 * Each request reaped here was queued and submitted in sq_lock
	 * sections, maybe by another thread.  The kernel orders those before
	 * its completions (SQ tail release, CQ tail acquire), but
	 * ThreadSanitizer cannot see that: taking the lock once makes the
	 * submitter's writes to the track visibly happen before ours.
	 */
	pthread_mutex_lock(&r->sq_lock);
	pthread_mutex_unlock(&r->sq_lock);
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		process_cqe(r, cqe);
		if (++n == ready)
			break;
	}
	io_uring_cq_advance(&r->ring, n);
	return (int)n;
}

static int flush_sq(struct p2p_uring *r)
{
	int ret;

	pthread_mutex_lock(&r->sq_lock);
	ret = io_uring_submit(&r->ring);
	pthread_mutex_unlock(&r->sq_lock);
	return ret;
}

/* Wait until every request on @slot completed.  Callers may hold resv. */
static void slot_drain(struct uslot *s)
{
	struct p2p_uring *r = s->ring;

	flush_sq(r);
	for (;;) {
		unsigned int inflight;

		pthread_mutex_lock(&s->lock);
		inflight = s->inflight;
		pthread_mutex_unlock(&s->lock);
		if (!inflight)
			return;
		pthread_mutex_lock(&r->cq_lock);
		/* Someone else may have reaped ours meanwhile: only block if still needed. */
		pthread_mutex_lock(&s->lock);
		inflight = s->inflight;
		pthread_mutex_unlock(&s->lock);
		if (inflight)
			reap(r, true);
		pthread_mutex_unlock(&r->cq_lock);
	}
}

/* ---------------------------------------------------------------------- */
/* The DMABUF token                                                        */

/* Unregister the real buffers and unmap.  resv held, no I/O in flight. */
static void slot_unmap_locked(struct uslot *s)
{
	if (s->real_n) {
		real_update(s->ring, s->real_base, NULL, s->real_n);
		idx_free(s->ring, s->real_base, s->real_n);
	}
	s->real_n = 0;
	free(s->real_off);
	free(s->real_host);
	free(s->real_len);
	s->real_off = NULL;
	s->real_host = NULL;
	s->real_len = NULL;
	if (s->sgt)
		p2p_attachment_unmap(s->attach, s->sgt);
	s->sgt = NULL;
}

/* Map and register the real buffers.  resv held, slot UNMAPPED. */
static int slot_map_locked(struct uslot *s)
{
	struct iovec *iov = NULL;
	unsigned int n = 0;
	uint64_t pos = 0;
	int ret;

	ret = p2p_attachment_map(s->attach, &s->sgt);
	if (ret)
		return ret;
	for (unsigned int i = 0; i < s->sgt->nents; i++)
		n += (unsigned int)((s->sgt->ents[i].length + REAL_MAX_LEN - 1) / REAL_MAX_LEN);
	s->real_off = calloc(n, sizeof(*s->real_off));
	s->real_host = calloc(n, sizeof(*s->real_host));
	s->real_len = calloc(n, sizeof(*s->real_len));
	iov = calloc(n, sizeof(*iov));
	if (!s->real_off || !s->real_host || !s->real_len || !iov) {
		ret = -ENOMEM;
		goto err;
	}
	n = 0;
	for (unsigned int i = 0; i < s->sgt->nents; i++) {
		const struct p2p_phys_range *e = &s->sgt->ents[i];

		for (uint64_t o = 0; o < e->length; o += REAL_MAX_LEN, n++) {
			s->real_off[n] = pos + o;
			s->real_host[n] = p2p_mem_ptr(e->mem, e->offset + o);
			s->real_len[n] = MIN(REAL_MAX_LEN, e->length - o);
			iov[n] = (struct iovec){ s->real_host[n], s->real_len[n] };
		}
		pos += e->length;
	}
	ret = idx_alloc(s->ring, n, &s->real_base);
	if (ret)
		goto err;
	s->real_n = n;
	/* The kernel pins the exporter's pages here. */
	ret = real_update(s->ring, s->real_base, iov, n);
	if (ret) {
		idx_free(s->ring, s->real_base, n);
		s->real_n = 0;
		goto err;
	}
	free(iov);
	return 0;
err:
	free(iov);
	slot_unmap_locked(s);
	return ret;
}

/*
 * invalidate_mappings, resv held: stop new submissions, drain the I/O in
 * flight, unpin (unregister) and unmap before the revoke goes on.
 */
static void slot_invalidate(struct p2p_attachment *attach)
{
	struct uslot *s = p2p_attachment_importer_priv(attach);

	pthread_mutex_lock(&s->lock);
	if (s->attach != attach) {
		/* Not installed yet (a registration in progress): nothing is mapped. */
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->state = SLOT_INVALIDATING;
	pthread_mutex_unlock(&s->lock);
	slot_drain(s);
	slot_unmap_locked(s);
	pthread_mutex_lock(&s->lock);
	s->state = SLOT_UNMAPPED;
	pthread_mutex_unlock(&s->lock);
}

static const struct p2p_dmabuf_importer_ops slot_importer_ops = {
	.invalidate_mappings = slot_invalidate,
};

/* Empty a slot, whatever it held. */
static void slot_clear(struct uslot *s)
{
	slot_drain(s);
	if (s->type == IORING_REGBUF_UADDR && s->real >= 0) {
		real_update(s->ring, (unsigned int)s->real, NULL, 1);
		idx_free(s->ring, (unsigned int)s->real, 1);
	}
	if (s->type == IORING_REGBUF_DMABUF) {
		p2p_dmabuf_resv_lock(s->buf);
		slot_unmap_locked(s);
		p2p_dmabuf_resv_unlock(s->buf);
		p2p_dmabuf_detach(s->attach);
		p2p_dmabuf_put(s->buf);
		close(s->target_fd);
	}
	pthread_mutex_lock(&s->lock);
	s->type = IORING_REGBUF_EMPTY;
	s->real = -1;
	s->buf = NULL;
	s->attach = NULL;
	s->target_fd = -1;
	s->state = SLOT_UNMAPPED;
	pthread_mutex_unlock(&s->lock);
}

/* ---------------------------------------------------------------------- */
/* Registration                                                            */

static int check_desc(const struct io_uring_regbuf_desc *d)
{
	for (unsigned int i = 0; i < ARRAY_SIZE(d->__resv); i++)
		if (d->__resv[i])
			return -EINVAL;
	if (d->type >= IORING_REGBUF_TYPE_MAX || d->flags)
		return -EINVAL;
	if (d->type == IORING_REGBUF_EMPTY && (d->uaddr || d->size))
		return -EFAULT;
	if (d->type != IORING_REGBUF_DMABUF && (d->dmabuf_fd || d->target_fd))
		return -EINVAL;
	return 0;
}

/*
 * What a slot is going to hold.  It is set up completely before the slot's
 * old contents go, so a failed update leaves the slot as it was (as the
 * kernel's buffer update replaces a node only once the new one exists).
 */
struct slot_new {
	uint32_t type;
	int real;
	struct p2p_dmabuf *buf;
	struct p2p_attachment *attach;
	int target_fd;
	int user_fd;
};

static int prep_uaddr(struct p2p_uring *r, uint64_t uaddr, uint64_t size, struct slot_new *n)
{
	struct iovec iov = { (void *)(uintptr_t)uaddr, size };
	unsigned int idx;
	int ret;

	if (!uaddr || !size || size > REAL_MAX_LEN)
		return -EFAULT;
	ret = idx_alloc(r, 1, &idx);
	if (ret)
		return ret;
	ret = real_update(r, idx, &iov, 1);
	if (ret) {
		idx_free(r, idx, 1);
		return ret;
	}
	n->type = IORING_REGBUF_UADDR;
	n->real = (int)idx;
	return 0;
}

/*
 * The attachment's importer_priv is @s already; slot_invalidate() ignores
 * it until slot_install() makes it the slot's attachment.
 */
static int prep_dmabuf(struct uslot *s, const struct io_uring_regbuf_desc *d, struct slot_new *n)
{
	struct p2p_attach_info info = {
		.argsz = sizeof(info),
		.flags = P2P_ATTACH_PEER2PEER,
		.importer_ops = &slot_importer_ops,
		.importer_priv = s,
		.name = "io_uring",
	};
	struct p2p_dmabuf *buf;
	struct stat st;
	int ret, tfd;

	if (d->uaddr || d->size)
		return -EINVAL;
	if (d->target_fd < 0 || fstat(d->target_fd, &st) < 0)
		return -EBADF;
	ret = p2p_dmabuf_get(d->dmabuf_fd, &buf);
	if (ret)
		return ret;
	/* Only files that can make a dma token: regular files and block devices. */
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		ret = -EOPNOTSUPP;
		goto err_put;
	}
	tfd = fcntl(d->target_fd, F_DUPFD_CLOEXEC, 0);
	if (tfd < 0) {
		ret = -errno;
		goto err_put;
	}
	ret = p2p_dmabuf_attach(buf, &info, &n->attach);
	if (ret) {
		close(tfd);
		goto err_put;
	}
	n->type = IORING_REGBUF_DMABUF;
	n->buf = buf;
	n->target_fd = tfd;
	n->user_fd = d->target_fd;
	return 0;
err_put:
	p2p_dmabuf_put(buf);
	return ret;
}

/* Put @n into the emptied slot @s. */
static void slot_install(struct uslot *s, const struct slot_new *n)
{
	pthread_mutex_lock(&s->lock);
	s->type = n->type;
	s->real = n->real;
	s->buf = n->buf;
	s->attach = n->attach;
	s->target_fd = n->target_fd;
	s->user_fd = n->user_fd;
	s->state = SLOT_UNMAPPED;
	pthread_mutex_unlock(&s->lock);
}

P2P_API int p2p_uring_register_buffers_update(struct p2p_uring *r,
					      const struct io_uring_rsrc_update2 *up)
{
	/* The series' `flags` is the first reserved word of older headers. */
	uint32_t flags = up->resv;
	bool ext = flags & IORING_RSRC_UPDATE_EXTENDED;
	unsigned int done;
	int ret = 0;

	/* io_register_rsrc_update(): nr 0, unknown flags or resv2 -> EINVAL. */
	if (!up->nr || (flags & ~IORING_RSRC_UPDATE_EXTENDED) || up->resv2)
		return -EINVAL;
	if (up->offset >= r->nr_slots || up->nr > r->nr_slots - up->offset)
		return -EINVAL;
	for (done = 0; done < up->nr; done++) {
		struct uslot *s = &r->slots[up->offset + done];
		struct io_uring_regbuf_desc d = { 0 };
		struct slot_new n;

		if (ext) {
			if (copy_from_user(&d, (const uint8_t *)(uintptr_t)up->data + done * sizeof(d),
					   sizeof(d))) {
				ret = -EFAULT;
				break;
			}
			ret = check_desc(&d);
		} else {
			struct iovec iov;

			if (copy_from_user(&iov,
					   (const uint8_t *)(uintptr_t)up->data + done * sizeof(iov),
					   sizeof(iov))) {
				ret = -EFAULT;
				break;
			}
			d.type = iov.iov_base ? IORING_REGBUF_UADDR : IORING_REGBUF_EMPTY;
			d.uaddr = (uintptr_t)iov.iov_base;
			d.size = iov.iov_len;
			if (!iov.iov_base && iov.iov_len)
				ret = -EFAULT;
		}
		if (ret)
			break;
		n = (struct slot_new){ .type = IORING_REGBUF_EMPTY, .real = -1, .target_fd = -1 };
		if (d.type == IORING_REGBUF_UADDR)
			ret = prep_uaddr(r, d.uaddr, d.size, &n);
		else if (d.type == IORING_REGBUF_DMABUF)
			ret = prep_dmabuf(s, &d, &n);
		if (ret)
			break;
		slot_clear(s);
		slot_install(s, &n);
	}
	/* __io_sqe_buffers_update(): the count done so far wins over a later error. */
	return done ? (int)done : ret;
}

P2P_API int p2p_uring_register_dmabuf(struct p2p_uring *r, unsigned int slot, int dmabuf_fd,
				      int target_fd)
{
	struct io_uring_regbuf_desc d = {
		.type = IORING_REGBUF_DMABUF,
		.dmabuf_fd = dmabuf_fd,
		.target_fd = target_fd,
	};
	struct io_uring_rsrc_update2 up = {
		.offset = slot,
		.resv = IORING_RSRC_UPDATE_EXTENDED, /* flags */
		.data = (uintptr_t)&d,
		.nr = 1,
	};
	int ret = p2p_uring_register_buffers_update(r, &up);

	return ret < 0 ? ret : 0;
}

/* ---------------------------------------------------------------------- */
/* Submission                                                              */

/*
 * Queue one tracked SQE: a copy of @in (with the real buffer index
 * @real_idx when >= 0), or, with @in NULL, a NOP that carries the error
 * @res.  Errors found at submission complete that way, through the real
 * ring like any other completion (once the SQ is submitted, as the
 * kernel's), so a thread blocked in p2p_uring_wait_cqe() with cq_lock held
 * wakes up for them; taking cq_lock here instead would wait for it forever.
 */
static int queue_one(struct p2p_uring *r, uint64_t user_data, int32_t res,
		     const struct io_uring_sqe *in, int real_idx)
{
	struct track *t = track_new(r);
	struct io_uring_sqe *sqe;

	if (!t)
		return -ENOMEM;
	t->user_data = user_data;
	t->pending = 1;
	t->res = res; /* a NOP's own result (0) adds nothing to it */
	pthread_mutex_lock(&r->sq_lock);
	sqe = io_uring_get_sqe(&r->ring);
	if (!sqe) {
		pthread_mutex_unlock(&r->sq_lock);
		track_free(r, t);
		return -EBUSY;
	}
	if (in) {
		*sqe = *in;
		if (real_idx >= 0)
			sqe->buf_index = (uint16_t)real_idx;
	} else {
		io_uring_prep_nop(sqe);
	}
	io_uring_sqe_set_data(sqe, t);
	pthread_mutex_unlock(&r->sq_lock);
	return 0;
}

static int complete_now(struct p2p_uring *r, uint64_t user_data, int32_t res)
{
	return queue_one(r, user_data, res, NULL, -1);
}

static bool same_file(int a, int b)
{
	long ret;

	if (a == b)
		return true;
	pid_t pid = getpid();

	ret = syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b);
	return ret == 0;
}

static int submit_passthrough(struct p2p_uring *r, const struct io_uring_sqe *in, int real_idx)
{
	return queue_one(r, in->user_data, 0, in, real_idx);
}

/*
 * Make sure @s is mapped: 0, -EAGAIN (being invalidated, or resv busy) or
 * the exporter's map error (-ENODEV while revoked).
 */
static int slot_ensure_mapped(struct uslot *s)
{
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	if (s->state != SLOT_UNMAPPED) {
		ret = s->state == SLOT_MAPPED ? 0 : -EAGAIN;
		pthread_mutex_unlock(&s->lock);
		return ret;
	}
	pthread_mutex_unlock(&s->lock);

	/* Lazy map: take resv without waiting (it is held while invalidating). */
	if (!p2p_dmabuf_resv_trylock(s->buf))
		return -EAGAIN;
	pthread_mutex_lock(&s->lock);
	if (s->state == SLOT_UNMAPPED) {
		pthread_mutex_unlock(&s->lock);
		ret = slot_map_locked(s);
		pthread_mutex_lock(&s->lock);
		if (!ret)
			s->state = SLOT_MAPPED;
	}
	pthread_mutex_unlock(&s->lock);
	p2p_dmabuf_resv_unlock(s->buf);
	return ret;
}

static int submit_dmabuf(struct p2p_uring *r, struct uslot *s, const struct io_uring_sqe *in)
{
	uint64_t off = in->addr, len = in->len, end, done = 0;
	unsigned int first, last;
	struct track *t;
	int ret;

	/*
	 * The target check (5.1: another file is EBADF) costs a kcmp() only
	 * for an fd number other than the one registered; the real SQEs use
	 * our own dup of the target, so the I/O reaches the registered file
	 * even if the caller has since reused that fd number.
	 */
	if ((in->flags & IOSQE_FIXED_FILE) ||
	    (in->fd != s->user_fd && !same_file(in->fd, s->target_fd)))
		return -EBADF;
	if (!len || __builtin_add_overflow(off, len, &end) || end > p2p_dmabuf_size(s->buf))
		return -EFAULT;
	ret = slot_ensure_mapped(s);
	if (ret)
		return ret;
	t = track_new(r);
	if (!t)
		return -ENOMEM;
	/*
	 * Count the request in flight and queue its SQEs in one SQ-lock
	 * section.  slot_invalidate() marks the slot before slot_drain()
	 * flushes the SQ under that lock, so every request it then waits for
	 * is in the kernel: none can sit counted but unqueued while its
	 * submitter blocks on the CQ lock the drain holds.
	 */
	pthread_mutex_lock(&r->sq_lock);
	pthread_mutex_lock(&s->lock);
	if (s->state != SLOT_MAPPED) {
		ret = -EAGAIN; /* invalidated since it was mapped: a spurious EAGAIN (5.2) */
	} else {
		/* Which real buffers the range touches. */
		for (first = 0; first + 1 < s->real_n && s->real_off[first + 1] <= off; first++)
			;
		for (last = first; last + 1 < s->real_n && s->real_off[last + 1] < end; last++)
			;
		if (io_uring_sq_space_left(&r->ring) < last - first + 1)
			ret = -EBUSY;
		else
			s->inflight++; /* the slot stays mapped until it completes */
	}
	pthread_mutex_unlock(&s->lock);
	if (ret) {
		pthread_mutex_unlock(&r->sq_lock);
		track_free(r, t);
		return ret;
	}
	t->user_data = in->user_data;
	t->slot = s;
	t->pending = last - first + 1;
	for (unsigned int i = first; i <= last; i++) {
		uint64_t from = MAX(off, s->real_off[i]);
		uint64_t to = MIN(end, s->real_off[i] + s->real_len[i]);
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

		*sqe = *in;
		sqe->fd = s->target_fd;
		sqe->addr = (uintptr_t)(s->real_host[i] + (from - s->real_off[i]));
		sqe->len = (uint32_t)(to - from);
		sqe->off = in->off + done;
		sqe->buf_index = (uint16_t)(s->real_base + i);
		sqe->flags &= ~(IOSQE_IO_LINK | IOSQE_IO_HARDLINK);
		io_uring_sqe_set_data(sqe, t);
		done += to - from;
	}
	pthread_mutex_unlock(&r->sq_lock);
	return 0;
}

P2P_API int p2p_uring_submit_sqe(struct p2p_uring *r, const struct io_uring_sqe *sqe)
{
	bool fixed_rw = sqe->opcode == IORING_OP_READ_FIXED || sqe->opcode == IORING_OP_WRITE_FIXED;
	bool vec_fixed = sqe->opcode == IORING_OP_READV_FIXED ||
			 sqe->opcode == IORING_OP_WRITEV_FIXED;
	bool uses_buf = fixed_rw || vec_fixed ||
			((sqe->opcode == IORING_OP_SEND_ZC || sqe->opcode == IORING_OP_SENDMSG_ZC) &&
			 (sqe->ioprio & IORING_RECVSEND_FIXED_BUF)) ||
			(sqe->opcode == IORING_OP_URING_CMD &&
			 (sqe->uring_cmd_flags & IORING_URING_CMD_FIXED));
	struct uslot *s;
	int ret;

	if (!uses_buf)
		return submit_passthrough(r, sqe, -1);
	if (sqe->buf_index >= r->nr_slots)
		return complete_now(r, sqe->user_data, -EFAULT);
	s = &r->slots[sqe->buf_index];
	if (s->type == IORING_REGBUF_UADDR)
		return submit_passthrough(r, sqe, s->real);
	if (s->type != IORING_REGBUF_DMABUF)
		return complete_now(r, sqe->user_data, -EFAULT);
	if (vec_fixed)
		return complete_now(r, sqe->user_data, -EOPNOTSUPP);
	if (!fixed_rw)
		return complete_now(r, sqe->user_data, -EFAULT);
	ret = submit_dmabuf(r, s, sqe);
	if (ret == -EBUSY)
		return ret;
	return ret ? complete_now(r, sqe->user_data, ret) : 0;
}

P2P_API int p2p_uring_submit(struct p2p_uring *r)
{
	return flush_sq(r);
}

P2P_API int p2p_uring_wait_cqe(struct p2p_uring *r, struct io_uring_cqe *cqe, bool wait)
{
	int ret = 0;

	pthread_mutex_lock(&r->cq_lock);
	for (;;) {
		if (r->stash_n) {
			*cqe = r->stash[r->stash_head];
			r->stash_head = (r->stash_head + 1) % r->stash_max;
			r->stash_n--;
			break;
		}
		ret = reap(r, false);
		if (ret > 0)
			continue;
		if (!wait) {
			ret = -EAGAIN;
			break;
		}
		ret = reap(r, true);
		if (ret < 0 && ret != -EINTR)
			break;
	}
	pthread_mutex_unlock(&r->cq_lock);
	return ret < 0 ? ret : 0;
}

P2P_API bool p2p_uring_slot_mapped(struct p2p_uring *r, unsigned int slot)
{
	bool mapped;

	if (slot >= r->nr_slots)
		return false;
	pthread_mutex_lock(&r->slots[slot].lock);
	mapped = r->slots[slot].state == SLOT_MAPPED;
	pthread_mutex_unlock(&r->slots[slot].lock);
	return mapped;
}

/* ---------------------------------------------------------------------- */
/* Setup                                                                   */

P2P_API int p2p_uring_create(unsigned int entries, unsigned int nr_slots, struct p2p_uring **out)
{
	struct p2p_uring *r;
	int ret;

	if (!nr_slots || nr_slots > MAX_SLOTS)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->nr_slots = nr_slots;
	r->nr_real = MIN(MAX_REAL, nr_slots * REAL_PER_SLOT);
	r->slots = calloc(nr_slots, sizeof(*r->slots));
	r->real_used = calloc(r->nr_real, 1);
	if (!r->slots || !r->real_used) {
		ret = -ENOMEM;
		goto err_free;
	}
	ret = io_uring_queue_init(entries, &r->ring, 0);
	if (ret)
		goto err_free;
	ret = io_uring_register_buffers_sparse(&r->ring, r->nr_real);
	if (ret)
		goto err_exit;
	pthread_mutex_init(&r->sq_lock, NULL);
	pthread_mutex_init(&r->cq_lock, NULL);
	pthread_mutex_init(&r->idx_lock, NULL);
	for (unsigned int i = 0; i < nr_slots; i++) {
		struct uslot *s = &r->slots[i];

		pthread_mutex_init(&s->lock, NULL);
		s->ring = r;
		s->index = i;
		s->real = -1;
		s->target_fd = -1;
	}
	*out = r;
	return 0;

err_exit:
	io_uring_queue_exit(&r->ring);
err_free:
	free(r->slots);
	free(r->real_used);
	free(r);
	return ret;
}

P2P_API void p2p_uring_destroy(struct p2p_uring *r)
{
	if (!r)
		return;
	for (unsigned int i = 0; i < r->nr_slots; i++)
		slot_clear(&r->slots[i]);
	/* Every request still in flight (pass-through ones too): let it finish. */
	flush_sq(r);
	pthread_mutex_lock(&r->cq_lock);
	while (atomic_load(&r->tracks) && reap(r, true) >= 0)
		;
	pthread_mutex_unlock(&r->cq_lock);
	io_uring_queue_exit(&r->ring);
	for (unsigned int i = 0; i < r->nr_slots; i++)
		pthread_mutex_destroy(&r->slots[i].lock);
	pthread_mutex_destroy(&r->sq_lock);
	pthread_mutex_destroy(&r->cq_lock);
	pthread_mutex_destroy(&r->idx_lock);
	free(r->stash);
	free(r->slots);
	free(r->real_used);
	free(r);
}
