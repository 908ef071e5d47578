// SPDX-License-Identifier: MIT
/*
 * io_uring dma-buf registered buffers (kernel-semantics 5).
 *
 * A user slot maps onto one or more real fixed buffers of the real ring:
 * a UADDR slot onto one, a mapped DMABUF slot onto one per range of the
 * dma-buf (cut at 1 GiB, the kernel's limit per registered buffer).  The
 * real buffers of a DMABUF slot point at the exporter's memory (the
 * library's view of the backing memfd), so the kernel pins exactly those
 * pages; they are registered when the slot is (or, after an invalidate,
 * at its next I/O or p2p_uring_prefetch(): "the token maps") and
 * unregistered when the exporter invalidates the attachment.
 *
 * Every request has a struct track in the ring's track table; its real
 * SQEs carry the track's index and generation as user_data, so completions
 * of split requests are gathered into one user completion without a
 * lookup structure or a lock of the submission side.  A track records its
 * queue sequence number and the link and drain flags of its SQE: what a
 * DMABUF request waits behind, if anything, is found from a snapshot of
 * the live tracks (see cancel_blockers()).
 *
 * Locking (the order is docs/locking.md's): ring->cq_lock protects reaping
 * the real CQ, the stash and the tracks' completion fields, ring->sq_lock
 * the real SQ and the allocation of tracks (both futex mutexes: see struct
 * rlock); a slot's state is written under sq_lock and slot->lock, so a
 * submission reads it under sq_lock alone (its in-flight count is two
 * counters, one written under each lock);
 * ring->idx_lock guards the real-buffer index allocator and the pin list;
 * dma-buf resv guards a pin's real buffers, is held by the invalidate
 * callback and taken with trylock on submission.
 * - A submission never waits for resv, so a revoke in progress gives
 *   -EAGAIN.
 * - A submission takes sq_lock, never cq_lock, so a thread blocked in a CQ
 *   wait with cq_lock held never stops it (even errors are completed
 *   through the real ring, see complete_now()).  Freed tracks come back to
 *   it through an atomic stack.
 * - A DMABUF request is counted in flight and queued in one sq_lock
 *   section, and the invalidate callback marks the slot, then flushes the
 *   SQ (until it is empty) before it reaps, so it cannot wait on requests
 *   nobody submitted.
 * - A drain never blocks on cq_lock (another thread may hold it in a CQ
 *   wait that only the drain's cancellations end) and cancels without it:
 *   it names requests by index and generation, so one completed meanwhile
 *   is not found and its entry's next user is never hit.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/uring.h>

#include "../util/private.h"

#define MAX_SLOTS 1024
#define REAL_PER_SLOT 16
#define MAX_REAL 16384
#define REAL_MAX_LEN (1ull << 30)
/* How long a drain waits for completions before it looks again. */
#define DRAIN_TICK_NS 10000000L
/* How long a drain trusts a ring that used IOSQE_IO_DRAIN (see cancel_blockers()). */
#define DRAIN_GRACE_NS 50000000L
/* How long one synchronous cancel may wait for requests already running. */
#define CANCEL_TIMEOUT_NS 100000000L

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
	bool writable; /* the dma-buf is open read-write (READ_FIXED may write it) */
	uint64_t size; /* the dma-buf's size */
	struct p2p_sgt *sgt;
	struct upin *pin; /* the real buffers, shared by the ring's slots of this dma-buf */
	enum slot_state state;
	/*
	 * Requests in flight: @nsub - @ndone.  @nsub is written under sq_lock
	 * only, @ndone under cq_lock only, so each is a plain load and store
	 * (no read-modify-write: two locked instructions less per request).
	 * A drain counts itself in @idle_waiters and waits on @idle with a
	 * timeout (DRAIN_TICK_NS); a completion that ends the last request
	 * looks at @idle_waiters after its store, with no fence between: if it
	 * misses a drain that just came, that drain sees the count at its next
	 * tick.
	 */
	atomic_uint_fast64_t nsub, ndone;
	atomic_uint idle_waiters;
	pthread_cond_t idle; /* the last request in flight completed (slot->lock) */
};

/*
 * The real buffers pinning one dma-buf's pages in one ring, shared by every
 * slot of the ring registered with that dma-buf (as a kernel dma token is
 * per dma-buf and device, kernel-semantics 5.2).  They are registered when
 * the first of those slots maps and unregistered, in one update, when the
 * last mapped one unmaps: a revoke, which invalidates every slot of the
 * dma-buf under one hold of resv, unpins them all with one syscall.
 * @users is under the ring's idx_lock, the rest under the dma-buf's resv.
 */
struct upin {
	struct upin *next;
	struct p2p_dmabuf *buf; /* the key; the slots hold the references */
	unsigned int users;	/* slots registered with @buf */
	unsigned int mapped;	/* of those, slots mapped: the real buffers are in use */
	unsigned int real_base, real_n;
	uint64_t *real_off;  /* dma-buf offset where each real buffer starts */
	uint8_t **real_host; /* its host address */
	uint64_t *real_len;
};

/*
 * A ring lock: a futex mutex (uncontended: one atomic instruction to take,
 * one to release, no call).  cq_lock is held across a blocking CQ wait, so
 * waiters sleep in the kernel rather than spin.  0 free, 1 held, 2 held
 * with waiters.
 */
struct rlock {
	atomic_uint v;
};

static void rlock_wait(struct rlock *l)
{
	unsigned int c = atomic_exchange_explicit(&l->v, 2, memory_order_acquire);

	while (c) {
		syscall(SYS_futex, &l->v, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
		c = atomic_exchange_explicit(&l->v, 2, memory_order_acquire);
	}
}

static inline void rlock_lock(struct rlock *l)
{
	unsigned int c = 0;

	if (!atomic_compare_exchange_strong_explicit(&l->v, &c, 1, memory_order_acquire,
						     memory_order_relaxed))
		rlock_wait(l);
}

/* 0 if taken (as pthread_mutex_trylock()). */
static inline int rlock_trylock(struct rlock *l)
{
	unsigned int c = 0;

	return atomic_compare_exchange_strong_explicit(&l->v, &c, 1, memory_order_acquire,
						       memory_order_relaxed) ? 0 : EBUSY;
}

static inline void rlock_unlock(struct rlock *l)
{
	if (atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2)
		syscall(SYS_futex, &l->v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

enum track_state {
	TRACK_FREE,
	TRACK_LIVE,	  /* queued or in the kernel, not completed */
	TRACK_NOTIF_WAIT, /* completed zero-copy send kept for its notification */
};

/*
 * A request's state, in a preallocated table: the real SQEs carry its index
 * and a generation as user_data (track_ud()), so a completion finds it with
 * no list, and a cancellation naming an old generation can never match the
 * request that reuses the entry.
 */
struct track {
	uint64_t user_data;
	struct uslot *slot; /* NULL for pass-through requests */
	unsigned int pending;
	int32_t res;
	uint32_t flags;
	/*
	 * Bumped (release) when the track is freed, after its state: a reader
	 * that loads gen, then state (acquire) and sees TRACK_LIVE names a
	 * live request or one that completed, never the next user's.
	 */
	atomic_uint gen;
	/*
	 * Written by the submitter (release, after the fields above and
	 * below), read by the reaper and the drain (acquire): the kernel
	 * orders the SQ and the CQ, this shows ThreadSanitizer that order.
	 */
	atomic_uint state;
	uint32_t next_free; /* index + 1 of the next free track, 0 for none */
	/* Below: written under sq_lock when queued, read under sq_lock. */
	uint64_t seq;	/* queue order: consecutive tracks differ by 1 */
	bool linked_in; /* its (first) SQE follows one with IOSQE_IO_(HARD)LINK */
	bool drain;	/* IOSQE_IO_DRAIN, or the kernel's drain_next */
	bool zc;	/* SEND_ZC / SENDMSG_ZC: a notification CQE may follow */
};

/* The track table: up to TRACK_CHUNKS chunks of TRACK_CHUNK, made as needed. */
#define TRACK_SHIFT 8
#define TRACK_CHUNK (1u << TRACK_SHIFT)
#define TRACK_CHUNKS 4096 /* 1 M requests in flight */
#define FREE_BATCH 16

struct p2p_uring {
	struct io_uring ring;
	struct rlock sq_lock;
	struct rlock cq_lock;
	pthread_mutex_t idx_lock;
	struct uslot *slots;
	unsigned int nr_slots, nr_real;
	uint8_t *real_used; /* allocator bitmap (bytes) */
	struct upin *pins;  /* idx_lock */
	/* cq_lock: */
	struct io_uring_cqe *stash; /* completions reaped for others (a drain, destroy) */
	size_t stash_head, stash_n, stash_max;
	uint64_t nr_done; /* requests completed (with sq_lock's nr_queued: in flight) */
	uint32_t done_head, done_tail; /* tracks freed, not yet handed back (index + 1) */
	unsigned int done_n;
	/*
	 * Tracks freed by the reaper, handed back to the submitter (index + 1)
	 * in batches of FREE_BATCH: one atomic exchange each way per batch.
	 */
	atomic_uint freed;
	/* Written under sq_lock, read by the reaper (acquire). */
	struct track *_Atomic chunks[TRACK_CHUNKS];
	/* sq_lock: */
	uint64_t nr_queued; /* requests queued, ever */
	unsigned int nr_tracks; /* entries made in the table */
	uint32_t free_tracks;	/* index + 1 of the first free one */
	uint64_t seq;
	bool prev_links_out;  /* the last SQE queued carries IOSQE_IO_(HARD)LINK */
	bool drain_next;      /* a drain inside a link: the next chain is drained too */
	bool drain_used;      /* an IOSQE_IO_DRAIN was ever queued */
};

static inline struct track *track_at(struct p2p_uring *r, uint32_t idx)
{
	struct track *c = atomic_load_explicit(&r->chunks[idx >> TRACK_SHIFT],
					       memory_order_acquire);

	return &c[idx & (TRACK_CHUNK - 1)];
}

/* The real SQEs' user_data for track @idx: never 0. */
static inline uint64_t track_ud(const struct track *t, uint32_t idx)
{
	return (uint64_t)atomic_load_explicit(&t->gen, memory_order_relaxed) << 32 | (idx + 1);
}

/*
 * A track for a new request, its index in *@idx.  The free ones come back
 * from the reaper in batches; while none is back, the table grows (by at
 * most a batch or two beyond the requests in flight).  sq_lock held.
 */
static inline struct track *track_new(struct p2p_uring *r, uint32_t *idx)
{
	uint32_t i = r->free_tracks;
	struct track *t;

	if (!i && atomic_load_explicit(&r->freed, memory_order_relaxed))
		i = atomic_exchange_explicit(&r->freed, 0, memory_order_acquire);
	if (likely(i)) {
		t = track_at(r, i - 1);
		r->free_tracks = t->next_free;
		*idx = i - 1;
		return t;
	}
	if (r->nr_tracks == TRACK_CHUNKS * TRACK_CHUNK)
		return NULL;
	if (!(r->nr_tracks & (TRACK_CHUNK - 1))) {
		struct track *c = calloc(TRACK_CHUNK, sizeof(*c));

		if (!c)
			return NULL;
		atomic_store_explicit(&r->chunks[r->nr_tracks >> TRACK_SHIFT], c,
				      memory_order_release);
	}
	*idx = r->nr_tracks++;
	return track_at(r, *idx);
}

/* A track that was never queued back on the free list.  sq_lock held. */
static void track_free(struct p2p_uring *r, struct track *t, uint32_t idx)
{
	t->next_free = r->free_tracks;
	r->free_tracks = idx + 1;
}

/*
 * @t's SQEs are queued: record its queue position.  @sqe_flags are those
 * of its (first) real SQE, @links_out whether its last real SQE links to
 * the next one.  The kernel links an SQE to the one before it in the same
 * submission if that one carries a link flag; a drain inside a link drains
 * the next chain too (io_init_req_drain()).  sq_lock held.
 */
static inline void track_enlist(struct p2p_uring *r, struct track *t, uint8_t sqe_flags,
				bool links_out)
{
	t->seq = ++r->seq;
	t->linked_in = r->prev_links_out;
	t->drain = sqe_flags & IOSQE_IO_DRAIN;
	if (unlikely(sqe_flags & IOSQE_IO_DRAIN) || unlikely(r->drain_next)) {
		if (!t->linked_in && r->drain_next) {
			t->drain = true;
			r->drain_next = false;
		}
		if ((sqe_flags & IOSQE_IO_DRAIN) && t->linked_in)
			r->drain_next = true;
		r->drain_used |= t->drain;
	}
	r->prev_links_out = links_out;
	r->nr_queued++;
	atomic_store_explicit(&t->state, TRACK_LIVE, memory_order_release);
}

/* Hand the tracks freed so far back to the submitter.  cq_lock held. */
static void track_publish(struct p2p_uring *r)
{
	struct track *tail = track_at(r, r->done_tail - 1);
	uint32_t head = atomic_load_explicit(&r->freed, memory_order_relaxed);

	do
		tail->next_free = head;
	while (!atomic_compare_exchange_weak_explicit(&r->freed, &head, r->done_head,
						      memory_order_release, memory_order_relaxed));
	r->done_head = r->done_tail = 0;
	r->done_n = 0;
}

/*
 * @t (index @idx) is done: free for reuse, its generation bumped so that
 * nothing naming the old one matches.  cq_lock held.
 */
static void track_release(struct p2p_uring *r, struct track *t, uint32_t idx)
{
	atomic_store_explicit(&t->state, TRACK_FREE, memory_order_relaxed);
	/* Only the reaper (cq_lock) writes gen: no read-modify-write needed. */
	atomic_store_explicit(&t->gen, atomic_load_explicit(&t->gen, memory_order_relaxed) + 1,
			      memory_order_release);
	t->next_free = r->done_head;
	if (!r->done_head)
		r->done_tail = idx + 1;
	r->done_head = idx + 1;
	if (++r->done_n == FREE_BATCH)
		track_publish(r);
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

/* The ring's pin record of @buf, made if needed, with one more user. */
static struct upin *pin_get(struct p2p_uring *r, struct p2p_dmabuf *buf)
{
	struct upin *p;

	pthread_mutex_lock(&r->idx_lock);
	for (p = r->pins; p && p->buf != buf; p = p->next)
		;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (p) {
			p->buf = buf;
			p->next = r->pins;
			r->pins = p;
		}
	}
	if (p)
		p->users++;
	pthread_mutex_unlock(&r->idx_lock);
	return p;
}

/* Drop a user of @p (which no longer maps it). */
static void pin_put(struct p2p_uring *r, struct upin *p)
{
	pthread_mutex_lock(&r->idx_lock);
	if (!--p->users) {
		struct upin **pp;

		for (pp = &r->pins; *pp != p; pp = &(*pp)->next)
			;
		*pp = p->next;
		free(p);
	}
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

/* A request of @s completed (cq_lock: the only writer); true if none is left in flight. */
static inline bool slot_done_one(struct uslot *s)
{
	uint64_t done = atomic_load_explicit(&s->ndone, memory_order_relaxed) + 1;

	atomic_store_explicit(&s->ndone, done, memory_order_release);
	return atomic_load_explicit(&s->nsub, memory_order_acquire) == done;
}

/*
 * A real completion: gather the pieces of split requests.  Returns true
 * with the user's completion in *@out when one is due.  cq_lock held.
 */
static inline bool process_cqe(struct p2p_uring *r, const struct io_uring_cqe *cqe,
			       struct io_uring_cqe *out)
{
	uint64_t ud = cqe->user_data;
	uint32_t idx = (uint32_t)ud - 1;
	unsigned int state;
	struct track *t;

	/* 0: not ours (no request has index 0 + 1 = 0); beyond the table: neither. */
	if (unlikely(!(uint32_t)ud || idx >= TRACK_CHUNKS * TRACK_CHUNK ||
		     !atomic_load_explicit(&r->chunks[idx >> TRACK_SHIFT], memory_order_acquire)))
		return false;
	t = track_at(r, idx);
	state = atomic_load_explicit(&t->state, memory_order_acquire);
	if (unlikely(state == TRACK_FREE ||
		     atomic_load_explicit(&t->gen, memory_order_relaxed) != (uint32_t)(ud >> 32))) {
		pr_err("io_uring: a completion for no request (%#llx)", (unsigned long long)ud);
		return false;
	}
	if (unlikely(state == TRACK_NOTIF_WAIT)) {
		/* The notification of a zero-copy send that already completed. */
		*out = (struct io_uring_cqe){ .user_data = t->user_data, .res = cqe->res,
					      .flags = cqe->flags };
		track_release(r, t, idx);
		return true;
	}
	if (unlikely(cqe->flags & IORING_CQE_F_MORE)) {
		/* A multishot pass-through request: more completions follow. */
		*out = (struct io_uring_cqe){ .user_data = t->user_data, .res = cqe->res,
					      .flags = cqe->flags };
		return true;
	}
	if (cqe->res < 0) {
		if (t->res >= 0)
			t->res = cqe->res;
	} else if (t->res >= 0) {
		t->res += cqe->res;
	}
	t->flags |= cqe->flags;
	if (--t->pending)
		return false;
	*out = (struct io_uring_cqe){ .user_data = t->user_data, .res = t->res,
				      .flags = t->flags & ~IORING_CQE_F_MORE };
	r->nr_done++;
	if (t->slot && slot_done_one(t->slot) && atomic_load(&t->slot->idle_waiters)) {
		/* A drain waits (see slot_drain()): wake it. */
		pthread_mutex_lock(&t->slot->lock);
		pthread_cond_broadcast(&t->slot->idle);
		pthread_mutex_unlock(&t->slot->lock);
	}
	if (unlikely(t->zc) && cqe->res == -ECANCELED && !(cqe->flags & IORING_CQE_F_NOTIF)) {
		/*
		 * A zero-copy send cancelled by its link completes without
		 * F_MORE, yet Linux still posts its notification afterwards
		 * (found by fuzz-uring): keep the track for it.
		 */
		atomic_store_explicit(&t->state, TRACK_NOTIF_WAIT, memory_order_relaxed);
		return true;
	}
	track_release(r, t, idx);
	return true;
}

/* Stash the user completion of @cqe, if any, for p2p_uring_wait_cqe().  cq_lock held. */
static void process_cqe_stash(struct p2p_uring *r, const struct io_uring_cqe *cqe)
{
	struct io_uring_cqe out;

	if (process_cqe(r, cqe, &out) && stash_push(r, out.user_data, out.res, out.flags))
		pr_err("io_uring: completion of %llu lost (out of memory)",
		       (unsigned long long)out.user_data);
}

/* Reap what is ready into the stash; with @wait, block for at least one.  cq_lock held. */
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
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		process_cqe_stash(r, cqe);
		if (++n == ready)
			break;
	}
	io_uring_cq_advance(&r->ring, n);
	return (int)n;
}

/* Reap what is ready, waiting up to @ns for one.  cq_lock held. */
static int reap_timeout(struct p2p_uring *r, long ns)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = ns };
	struct io_uring_cqe *cqe;
	int ret = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);

	if (ret && ret != -ETIME && ret != -EINTR)
		return ret;
	return reap(r, false);
}

/* One io_uring_enter() for what the SQ holds.  sq_lock held. */
static int submit_locked(struct p2p_uring *r)
{
	int ret = io_uring_submit(&r->ring);

	/* A link chain ends with its submission. */
	if (!io_uring_sq_ready(&r->ring))
		r->prev_links_out = false;
	return ret;
}

static int flush_sq(struct p2p_uring *r)
{
	int ret;

	rlock_lock(&r->sq_lock);
	ret = submit_locked(r);
	rlock_unlock(&r->sq_lock);
	return ret;
}

/*
 * Submit until the SQ is empty.  The kernel stops a submission at the
 * first SQE it cannot even set up (io_submit_sqes() without
 * IORING_SETUP_SUBMIT_ALL): that one completes with its error, the SQEs
 * after it stay in the SQ for the next submission.
 */
static void flush_sq_all(struct p2p_uring *r)
{
	unsigned int fails = 0;

	rlock_lock(&r->sq_lock);
	while (io_uring_sq_ready(&r->ring)) {
		int ret = submit_locked(r);

		if (ret > 0) {
			fails = 0;
			continue;
		}
		/* Nothing taken: transient (EAGAIN, EINTR, EBUSY) or lasting. */
		if (++fails == 1000) {
			pr_err("io_uring: %u SQEs cannot be submitted (%d)",
			       io_uring_sq_ready(&r->ring), ret);
			break;
		}
		sched_yield();
	}
	rlock_unlock(&r->sq_lock);
}

/* IORING_REGISTER_SYNC_CANCEL: @flags, matching @user_data unless ANY. */
static void cancel_sync(struct p2p_uring *r, uint64_t user_data, uint32_t flags)
{
	struct io_uring_sync_cancel_reg reg = {
		.addr = user_data,
		.fd = -1,
		.flags = flags,
		.timeout = { .tv_sec = 0, .tv_nsec = CANCEL_TIMEOUT_NS },
	};

	/* -ENOENT (gone already) and -ETIME (still running) are fine: we look again. */
	io_uring_register_sync_cancel(&r->ring, &reg);
}

/* A live request as cancel_blockers() sees it. */
struct live_req {
	uint64_t seq, ud;
	struct uslot *slot;
	bool linked_in, drain, mark;
};

static int live_req_cmp(const void *a, const void *b)
{
	const struct live_req *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * The requests in flight in queue order, from the track table: *@drain_used
 * gets the ring's flag.  NULL with *@n 0 if there are none (or no memory:
 * the drain looks again).
 */
static struct live_req *live_snapshot(struct p2p_uring *r, size_t *n, bool *drain_used)
{
	struct live_req *v;

	*n = 0;
	rlock_lock(&r->sq_lock);
	*drain_used = r->drain_used;
	v = r->nr_tracks ? malloc(r->nr_tracks * sizeof(*v)) : NULL;
	for (uint32_t i = 0; v && i < r->nr_tracks; i++) {
		struct track *t = track_at(r, i);
		/* gen before state: see struct track */
		uint32_t gen = atomic_load_explicit(&t->gen, memory_order_acquire);

		if (atomic_load_explicit(&t->state, memory_order_acquire) != TRACK_LIVE)
			continue;
		/* Under sq_lock nothing reuses the entry: these fields are its request's. */
		v[(*n)++] = (struct live_req){
			.seq = t->seq, .ud = (uint64_t)gen << 32 | (i + 1), .slot = t->slot,
			.linked_in = t->linked_in, .drain = t->drain,
		};
	}
	rlock_unlock(&r->sq_lock);
	if (v && *n > 1)
		qsort(v, *n, sizeof(*v), live_req_cmp);
	return v;
}

/*
 * Cancel the requests @s's requests wait behind, which may never complete
 * by themselves (a POLL_ADD, a read from an empty pipe):
 * - the members ahead of it in its link chain (IOSQE_IO_LINK /
 *   IOSQE_IO_HARDLINK): the kernel issues a linked request only when the
 *   one before it completed, and an ASYNC_CANCEL finds only the issued one;
 * - if it is drained (IOSQE_IO_DRAIN), or queued after a drained request
 *   still pending (the kernel defers everything behind a deferred drain),
 *   every pending request queued before it;
 * - with @late, the same for every request of the slot if the ring ever
 *   used IOSQE_IO_DRAIN: since Linux 6.16 a drain leaves the ring in a
 *   mode where a new request may wait for every request in flight (it
 *   ends only when a request finds nothing pending), which the library
 *   cannot see.  The drain gives such requests DRAIN_GRACE_NS first.
 * Only pass-through requests are cancelled: a DMABUF request (of any slot)
 * is a read or write of a regular file or block device, which completes
 * once issued.  A request that is not issued yet (itself linked or
 * deferred) is not found; the drain calls again, and finds it once what
 * was ahead of it completed.  The requests are named by index and
 * generation: one that completed meanwhile is not found (-ENOENT), and the
 * request that reuses its entry has another generation.
 */
static void cancel_blockers(struct p2p_uring *r, struct uslot *s, bool late)
{
	size_t n, upto = 0;
	bool drain_seen;
	struct live_req *v = live_snapshot(r, &n, &drain_seen);

	drain_seen = late && drain_seen;
	for (size_t i = 0; i < n; i++) {
		drain_seen |= v[i].drain;
		if (v[i].slot != s)
			continue;
		if (drain_seen)
			upto = i;
		for (size_t c = i; c && v[c].linked_in && v[c - 1].seq + 1 == v[c].seq;) {
			c--;
			if (!v[c].slot)
				v[c].mark = true;
		}
	}
	for (size_t i = 0; i < upto; i++)
		if (!v[i].slot)
			v[i].mark = true;
	for (size_t i = 0; i < n; i++)
		if (v[i].mark)
			cancel_sync(r, v[i].ud, IORING_ASYNC_CANCEL_ALL);
	free(v);
}

static uint64_t slot_inflight(struct uslot *s)
{
	/* Completed first: every request counted there was counted as submitted before. */
	uint64_t done = atomic_load_explicit(&s->ndone, memory_order_acquire);

	return atomic_load_explicit(&s->nsub, memory_order_acquire) - done;
}

/*
 * Wait until every request on @s completed.  Callers may hold resv.
 *
 * Submit what the SQ holds, then, until nothing is in flight on the slot:
 * cancel what its requests wait behind, and reap, or, if another thread
 * holds cq_lock (it reaps for us, maybe blocked in a CQ wait until our
 * cancellations complete something), wait for the slot to go idle.  Each
 * round is bounded, so a request issued only after the previous round's
 * cancellations (behind a hard link, or a drain) is cancelled in the next.
 */
static void slot_drain(struct uslot *s)
{
	struct p2p_uring *r = s->ring;
	uint64_t start, now;

	flush_sq_all(r);
	start = p2p_now_ns();
	while (slot_inflight(s)) {
		now = p2p_now_ns();
		cancel_blockers(r, s, now - start >= DRAIN_GRACE_NS);
		if (!rlock_trylock(&r->cq_lock)) {
			if (slot_inflight(s))
				reap_timeout(r, DRAIN_TICK_NS);
			rlock_unlock(&r->cq_lock);
		} else {
			/* s->idle runs on CLOCK_MONOTONIC, p2p_now_ns()'s clock. */
			uint64_t t = now + DRAIN_TICK_NS;
			struct timespec until = { .tv_sec = (time_t)(t / 1000000000u),
						  .tv_nsec = (long)(t % 1000000000u) };

			pthread_mutex_lock(&s->lock);
			atomic_fetch_add(&s->idle_waiters, 1);
			if (slot_inflight(s))
				pthread_cond_timedwait(&s->idle, &s->lock, &until);
			atomic_fetch_sub(&s->idle_waiters, 1);
			pthread_mutex_unlock(&s->lock);
		}
	}
}

/* ---------------------------------------------------------------------- */
/* The DMABUF token                                                        */

/* Unregister @p's real buffers: one update for all of them.  resv held. */
static void pin_release(struct p2p_uring *r, struct upin *p)
{
	if (p->real_n) {
		real_update(r, p->real_base, NULL, p->real_n);
		idx_free(r, p->real_base, p->real_n);
	}
	p->real_n = 0;
	free(p->real_off);
	free(p->real_host);
	free(p->real_len);
	p->real_off = NULL;
	p->real_host = NULL;
	p->real_len = NULL;
}

/*
 * Register real buffers over @sgt into @p (the kernel pins the exporter's
 * pages here): one per range, cut at REAL_MAX_LEN.  resv held.
 */
static int pin_acquire(struct p2p_uring *r, struct upin *p, const struct p2p_sgt *sgt)
{
	struct iovec *iov = NULL;
	unsigned int n = 0;
	uint64_t pos = 0;
	int ret;

	for (unsigned int i = 0; i < sgt->nents; i++)
		n += (unsigned int)((sgt->ents[i].length + REAL_MAX_LEN - 1) / REAL_MAX_LEN);
	p->real_off = calloc(n, sizeof(*p->real_off));
	p->real_host = calloc(n, sizeof(*p->real_host));
	p->real_len = calloc(n, sizeof(*p->real_len));
	iov = calloc(n, sizeof(*iov));
	if (!p->real_off || !p->real_host || !p->real_len || !iov) {
		ret = -ENOMEM;
		goto err;
	}
	n = 0;
	for (unsigned int i = 0; i < sgt->nents; i++) {
		const struct p2p_phys_range *e = &sgt->ents[i];

		for (uint64_t o = 0; o < e->length; o += REAL_MAX_LEN, n++) {
			p->real_off[n] = pos + o;
			p->real_host[n] = p2p_mem_ptr(e->mem, e->offset + o);
			p->real_len[n] = MIN(REAL_MAX_LEN, e->length - o);
			iov[n] = (struct iovec){ p->real_host[n], p->real_len[n] };
		}
		pos += e->length;
	}
	ret = idx_alloc(r, n, &p->real_base);
	if (ret)
		goto err;
	ret = real_update(r, p->real_base, iov, n);
	if (ret) {
		idx_free(r, p->real_base, n);
		goto err;
	}
	p->real_n = n;
	free(iov);
	return 0;
err:
	free(iov);
	pin_release(r, p);
	return ret;
}

/* Are @p's real buffers exactly @sgt's memory?  resv held, @p in use. */
static bool pin_matches(const struct upin *p, const struct p2p_sgt *sgt)
{
	unsigned int n = 0;
	uint64_t pos = 0;

	for (unsigned int i = 0; i < sgt->nents; i++) {
		const struct p2p_phys_range *e = &sgt->ents[i];

		for (uint64_t o = 0; o < e->length; o += REAL_MAX_LEN, n++)
			if (n >= p->real_n || p->real_off[n] != pos + o ||
			    p->real_host[n] != p2p_mem_ptr(e->mem, e->offset + o) ||
			    p->real_len[n] != MIN(REAL_MAX_LEN, e->length - o))
				return false;
		pos += e->length;
	}
	return n == p->real_n;
}

/* Unmap @s; the last mapped slot of its pin unregisters the real buffers.  resv held, no I/O in flight. */
static void slot_unmap_locked(struct uslot *s)
{
	if (!s->sgt)
		return;
	if (!--s->pin->mapped)
		pin_release(s->ring, s->pin);
	p2p_attachment_unmap(s->attach, s->sgt);
	s->sgt = NULL;
}

/* Map @s and pin its pages (or share the pin of a mapped slot of its dma-buf).  resv held, slot UNMAPPED. */
static int slot_map_locked(struct uslot *s)
{
	struct upin *p = s->pin;
	int ret;

	ret = p2p_attachment_map(s->attach, &s->sgt);
	if (ret) {
		s->sgt = NULL;
		return ret;
	}
	if (!p->mapped) {
		ret = pin_acquire(s->ring, p, s->sgt);
	} else if (!pin_matches(p, s->sgt)) {
		/* One exporter, two answers for the same buffer: refuse rather than pin stale pages. */
		pr_err("io_uring: slot %u: the dma-buf maps to other memory than its other slots",
		       s->index);
		ret = -EIO;
	}
	if (ret) {
		p2p_attachment_unmap(s->attach, s->sgt);
		s->sgt = NULL;
		return ret;
	}
	p->mapped++;
	return 0;
}

/*
 * A slot's state is written under sq_lock and its lock, so a submission
 * reads it under sq_lock alone.
 */
static void slot_set_state(struct uslot *s, enum slot_state state)
{
	rlock_lock(&s->ring->sq_lock);
	pthread_mutex_lock(&s->lock);
	s->state = state;
	pthread_mutex_unlock(&s->lock);
	rlock_unlock(&s->ring->sq_lock);
}

/*
 * invalidate_mappings, resv held: stop new submissions, drain the I/O in
 * flight, unpin (unregister) and unmap before the revoke goes on.
 */
static void slot_invalidate(struct p2p_attachment *attach)
{
	struct uslot *s = p2p_attachment_importer_priv(attach);

	rlock_lock(&s->ring->sq_lock);
	pthread_mutex_lock(&s->lock);
	if (s->attach != attach) {
		/* Not installed yet (a registration in progress): nothing is mapped. */
		pthread_mutex_unlock(&s->lock);
		rlock_unlock(&s->ring->sq_lock);
		return;
	}
	s->state = SLOT_INVALIDATING;
	pthread_mutex_unlock(&s->lock);
	rlock_unlock(&s->ring->sq_lock);
	slot_drain(s);
	slot_unmap_locked(s);
	slot_set_state(s, SLOT_UNMAPPED);
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
		pin_put(s->ring, s->pin);
		p2p_dmabuf_put(s->buf);
		close(s->target_fd);
	}
	pthread_mutex_lock(&s->lock);
	s->type = IORING_REGBUF_EMPTY;
	s->real = -1;
	s->buf = NULL;
	s->attach = NULL;
	s->pin = NULL;
	s->target_fd = -1;
	pthread_mutex_unlock(&s->lock);
	slot_set_state(s, SLOT_UNMAPPED);
}

/*
 * Make sure the DMABUF slot @s is mapped: 0, -EAGAIN (being invalidated,
 * or resv busy and @wait false) or the exporter's map error (-ENODEV while
 * revoked).  A submission does not wait for resv (it is held while
 * invalidating); registration and p2p_uring_prefetch() do.
 */
static int slot_ensure_mapped(struct uslot *s, bool wait)
{
	bool unmapped;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	if (s->state != SLOT_UNMAPPED) {
		ret = s->state == SLOT_MAPPED ? 0 : -EAGAIN;
		pthread_mutex_unlock(&s->lock);
		return ret;
	}
	pthread_mutex_unlock(&s->lock);

	if (wait)
		p2p_dmabuf_resv_lock(s->buf);
	else if (!p2p_dmabuf_resv_trylock(s->buf))
		return -EAGAIN;
	/* Under resv only this function and the invalidate callback change an UNMAPPED slot. */
	pthread_mutex_lock(&s->lock);
	unmapped = s->state == SLOT_UNMAPPED;
	pthread_mutex_unlock(&s->lock);
	if (unmapped) {
		ret = slot_map_locked(s);
		if (!ret)
			slot_set_state(s, SLOT_MAPPED);
	}
	p2p_dmabuf_resv_unlock(s->buf);
	return ret;
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
	struct upin *pin;
	int target_fd;
	int user_fd;
	bool writable;
	uint64_t size;
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
	n->pin = pin_get(s->ring, buf);
	if (!n->pin) {
		ret = -ENOMEM;
		goto err_put;
	}
	tfd = fcntl(d->target_fd, F_DUPFD_CLOEXEC, 0);
	if (tfd < 0) {
		ret = -errno;
		goto err_pin;
	}
	ret = p2p_dmabuf_attach(buf, &info, &n->attach);
	if (ret) {
		close(tfd);
		goto err_pin;
	}
	n->type = IORING_REGBUF_DMABUF;
	n->buf = buf;
	n->target_fd = tfd;
	n->user_fd = d->target_fd;
	n->writable = p2p_dmabuf_writable(buf);
	n->size = p2p_dmabuf_size(buf);
	return 0;
err_pin:
	pin_put(s->ring, n->pin);
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
	s->pin = n->pin;
	s->target_fd = n->target_fd;
	s->user_fd = n->user_fd;
	s->writable = n->writable;
	s->size = n->size;
	pthread_mutex_unlock(&s->lock);
	slot_set_state(s, SLOT_UNMAPPED);
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
		/*
		 * Map and pin now, not inside the first I/O.  A failure (revoked:
		 * -ENODEV; out of locked memory) leaves the slot registered and
		 * unmapped: its next I/O or p2p_uring_prefetch() reports it.
		 */
		if (n.type == IORING_REGBUF_DMABUF)
			(void)slot_ensure_mapped(s, true);
	}
	/* __io_sqe_buffers_update(): the count done so far wins over a later error. */
	return done ? (int)done : ret;
}

P2P_API int p2p_uring_prefetch(struct p2p_uring *r, unsigned int slot)
{
	struct uslot *s;
	uint32_t type;

	if (slot >= r->nr_slots)
		return -EINVAL;
	s = &r->slots[slot];
	pthread_mutex_lock(&s->lock);
	type = s->type;
	pthread_mutex_unlock(&s->lock);
	if (type == IORING_REGBUF_UADDR)
		return 0; /* pinned since its registration */
	if (type != IORING_REGBUF_DMABUF)
		return -EINVAL;
	return slot_ensure_mapped(s, true);
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
	struct io_uring_sqe *sqe;
	struct track *t;
	uint32_t idx;

	rlock_lock(&r->sq_lock);
	t = track_new(r, &idx);
	if (!t) {
		rlock_unlock(&r->sq_lock);
		return -ENOMEM;
	}
	sqe = io_uring_get_sqe(&r->ring);
	if (!sqe) {
		track_free(r, t, idx);
		rlock_unlock(&r->sq_lock);
		return -EBUSY;
	}
	t->user_data = user_data;
	t->slot = NULL;
	t->pending = 1;
	t->res = res; /* a NOP's own result (0) adds nothing to it */
	t->flags = 0;
	t->zc = in && (in->opcode == IORING_OP_SEND_ZC || in->opcode == IORING_OP_SENDMSG_ZC);
	if (in) {
		*sqe = *in;
		if (real_idx >= 0)
			sqe->buf_index = (uint16_t)real_idx;
	} else {
		io_uring_prep_nop(sqe);
	}
	sqe->user_data = track_ud(t, idx);
	track_enlist(r, t, sqe->flags, sqe->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK));
	rlock_unlock(&r->sq_lock);
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

static int submit_dmabuf(struct p2p_uring *r, struct uslot *s, const struct io_uring_sqe *in)
{
	uint64_t off = in->addr, len = in->len, end, done = 0;
	unsigned int first, last;
	struct upin *p = NULL;
	bool tried_map = false;
	struct track *t;
	uint32_t idx;
	int ret = 0;

	/*
	 * The target check (5.1: another file is EBADF) costs a kcmp() only
	 * for an fd number other than the one registered; the real SQEs use
	 * our own dup of the target, so the I/O reaches the registered file
	 * even if the caller has since reused that fd number.
	 */
	if (unlikely(in->flags & IOSQE_FIXED_FILE) ||
	    (in->fd != s->user_fd && !same_file(in->fd, s->target_fd)))
		return -EBADF;
	/*
	 * A READ_FIXED writes the buffer: not into one exported read-only
	 * (io_import_fixed()'s direction check on a registered buffer).
	 */
	if (in->opcode == IORING_OP_READ_FIXED && !s->writable)
		return -EFAULT;
	if (!len || __builtin_add_overflow(off, len, &end) || end > s->size)
		return -EFAULT;
	/*
	 * Count the request in flight and queue its SQEs in one SQ-lock
	 * section (the slot's state is written under sq_lock too).
	 * slot_invalidate() marks the slot before slot_drain() flushes the SQ
	 * under that lock, so every request it then waits for is in the
	 * kernel: none can sit counted but unqueued while its submitter blocks
	 * on the CQ lock the drain holds.
	 */
again:
	rlock_lock(&r->sq_lock);
	if (unlikely(s->state != SLOT_MAPPED)) {
		if (s->state == SLOT_UNMAPPED && !tried_map) {
			/* Not mapped (registration could not, or an invalidate since): map now. */
			rlock_unlock(&r->sq_lock);
			tried_map = true;
			ret = slot_ensure_mapped(s, false);
			if (ret)
				return ret;
			goto again;
		}
		rlock_unlock(&r->sq_lock);
		return -EAGAIN; /* invalidated since it was mapped: a spurious EAGAIN (5.2) */
	}
	/* Which real buffers the range touches (stable while the slot is mapped). */
	p = s->pin;
	first = last = 0;
	if (unlikely(p->real_n > 1)) {
		for (; first + 1 < p->real_n && p->real_off[first + 1] <= off; first++)
			;
		for (last = first; last + 1 < p->real_n && p->real_off[last + 1] < end; last++)
			;
	}
	if (unlikely(io_uring_sq_space_left(&r->ring) < last - first + 1))
		ret = -EBUSY;
	else if (!(t = track_new(r, &idx)))
		ret = -ENOMEM;
	if (ret) {
		rlock_unlock(&r->sq_lock);
		return ret;
	}
	/* The slot stays mapped until it completes.  sq_lock: the only writer. */
	atomic_store_explicit(&s->nsub, atomic_load_explicit(&s->nsub, memory_order_relaxed) + 1,
			      memory_order_release);
	t->user_data = in->user_data;
	t->slot = s;
	t->pending = last - first + 1;
	t->res = 0;
	t->flags = 0;
	t->zc = false;
	if (likely(p->real_n == 1)) {
		/* One real buffer (the dma-buf is one range below 1 GiB). */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

		*sqe = *in;
		sqe->fd = s->target_fd;
		sqe->addr = (uintptr_t)(p->real_host[0] + off);
		sqe->buf_index = (uint16_t)p->real_base;
		sqe->flags &= ~(IOSQE_IO_LINK | IOSQE_IO_HARDLINK);
		sqe->user_data = track_ud(t, idx);
		track_enlist(r, t, in->flags, false);
		rlock_unlock(&r->sq_lock);
		return 0;
	}
	for (unsigned int i = first; i <= last; i++) {
		uint64_t from = MAX(off, p->real_off[i]);
		uint64_t to = MIN(end, p->real_off[i] + p->real_len[i]);
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

		*sqe = *in;
		sqe->fd = s->target_fd;
		sqe->addr = (uintptr_t)(p->real_host[i] + (from - p->real_off[i]));
		sqe->len = (uint32_t)(to - from);
		sqe->off = in->off + done;
		sqe->buf_index = (uint16_t)(p->real_base + i);
		sqe->flags &= ~(IOSQE_IO_LINK | IOSQE_IO_HARDLINK);
		sqe->user_data = track_ud(t, idx);
		done += to - from;
	}
	track_enlist(r, t, in->flags, false);
	rlock_unlock(&r->sq_lock);
	return 0;
}

static int submit_sqe_slow(struct p2p_uring *r, const struct io_uring_sqe *sqe);

P2P_API int p2p_uring_submit_sqe(struct p2p_uring *r, const struct io_uring_sqe *sqe)
{
	/* The common case first: a fixed read or write on a DMABUF slot. */
	if (likely(sqe->opcode == IORING_OP_READ_FIXED || sqe->opcode == IORING_OP_WRITE_FIXED) &&
	    likely(sqe->buf_index < r->nr_slots) &&
	    likely(r->slots[sqe->buf_index].type == IORING_REGBUF_DMABUF)) {
		int ret = submit_dmabuf(r, &r->slots[sqe->buf_index], sqe);

		if (likely(!ret) || ret == -EBUSY)
			return ret;
		return complete_now(r, sqe->user_data, ret);
	}
	return submit_sqe_slow(r, sqe);
}

/* Every other request (p2p_uring_submit_sqe()). */
static int submit_sqe_slow(struct p2p_uring *r, const struct io_uring_sqe *sqe)
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
	struct io_uring_cqe *c;
	int ret;

	rlock_lock(&r->cq_lock);
	for (;;) {
		if (unlikely(r->stash_n)) {
			/* Reaped by a drain or a wait that was cancelled. */
			*cqe = r->stash[r->stash_head];
			r->stash_head = (r->stash_head + 1) % r->stash_max;
			r->stash_n--;
			ret = 0;
			break;
		}
		/* One real completion at a time: most make one user completion, no stash. */
		if (!io_uring_peek_cqe(&r->ring, &c)) {
			bool got = process_cqe(r, c, cqe);

			io_uring_cqe_seen(&r->ring, c);
			if (got) {
				ret = 0;
				break;
			}
			continue;
		}
		if (!wait) {
			ret = -EAGAIN;
			break;
		}
		ret = io_uring_wait_cqe(&r->ring, &c);
		if (ret < 0 && ret != -EINTR)
			break;
	}
	rlock_unlock(&r->cq_lock);
	return ret;
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
	pthread_condattr_t ca;
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
	pthread_mutex_init(&r->idx_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	for (unsigned int i = 0; i < nr_slots; i++) {
		struct uslot *s = &r->slots[i];

		pthread_mutex_init(&s->lock, NULL);
		pthread_cond_init(&s->idle, &ca);
		s->ring = r;
		s->index = i;
		s->real = -1;
		s->target_fd = -1;
	}
	pthread_condattr_destroy(&ca);
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

/* Requests queued and not completed.  cq_lock held. */
static uint64_t in_flight(struct p2p_uring *r)
{
	uint64_t q;

	rlock_lock(&r->sq_lock);
	q = r->nr_queued;
	rlock_unlock(&r->sq_lock);
	return q - r->nr_done;
}

/* Completed zero-copy sends still waiting for their notification?  cq_lock held. */
static bool notif_waits(struct p2p_uring *r)
{
	bool any = false;

	rlock_lock(&r->sq_lock);
	for (uint32_t i = 0; !any && i < r->nr_tracks; i++)
		any = atomic_load_explicit(&track_at(r, i)->state, memory_order_acquire) ==
		      TRACK_NOTIF_WAIT;
	rlock_unlock(&r->sq_lock);
	return any;
}

P2P_API void p2p_uring_destroy(struct p2p_uring *r)
{
	if (!r)
		return;
	/*
	 * Every request still in flight (pass-through ones too): submit what
	 * is queued, cancel everything, and reap until the last completion.
	 * A request issued only once what was ahead of it completed (linked,
	 * drained) is cancelled at a later round.
	 */
	flush_sq_all(r);
	rlock_lock(&r->cq_lock);
	while (in_flight(r)) {
		cancel_sync(r, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
		if (reap_timeout(r, DRAIN_TICK_NS) < 0)
			break;
	}
	/* Notifications still owed to cancelled zero-copy sends: briefly, then drop them. */
	for (int i = 0; i < 10 && notif_waits(r); i++)
		if (reap_timeout(r, DRAIN_TICK_NS) < 0)
			break;
	rlock_unlock(&r->cq_lock);
	for (unsigned int i = 0; i < r->nr_slots; i++)
		slot_clear(&r->slots[i]);
	io_uring_queue_exit(&r->ring);
	for (unsigned int i = 0; i < TRACK_CHUNKS && r->chunks[i]; i++)
		free(r->chunks[i]);
	for (unsigned int i = 0; i < r->nr_slots; i++) {
		pthread_mutex_destroy(&r->slots[i].lock);
		pthread_cond_destroy(&r->slots[i].idle);
	}
	pthread_mutex_destroy(&r->idx_lock);
	free(r->stash);
	free(r->slots);
	free(r->real_used);
	free(r);
}
