// SPDX-License-Identifier: MIT
/*
 * The process tree: dma-buf state shared with fork children.
 *
 * After fork() a child holds copies of the parent's dma-buf objects and
 * the same CPU mappings of the same memfds.  In the kernel there is one
 * dma-buf for both, and a revoke zaps the mappings of every process.  Here
 * each process holds its own copy and one process cannot zap another's
 * pages (platform-notes "userfaultfd"), so:
 *
 *  - A MAP_SHARED anonymous region, made when a process holding dma-bufs
 *    first forks and inherited by every fork child (gone at exec), holds
 *    for each dma-buf a slot with
 *    its tree-wide state (OK, TEMP_REVOKED, PERM_REVOKED) and a generation,
 *    and a registry of the processes that hold copies.
 *  - p2p_dmabuf_revoke() and p2p_dmabuf_unrevoke() write the slot, apply
 *    its state in this process (the local revoke of kernel-semantics 7.2),
 *    then ring every other registered process and wait, bounded by
 *    P2PBUF_REVOKE_TIMEOUT_MS (default 1000), until each one acknowledges
 *    that it applied the state too (or is gone).
 *  - Each registered process runs a helper thread that sleeps on its
 *    doorbell (a futex in the shared region), applies the slot state of
 *    every buffer whose generation moved, and acknowledges.  A thread, not
 *    a signal handler: it takes the ordinary locks, steals no signal from
 *    the program, and is never interrupted half-way through the library.
 *  - The helper holds a robust process-shared mutex in its registry entry
 *    for the life of the process: when the process exits, is killed, or
 *    execs (its threads die, its mappings go), the kernel marks the mutex
 *    owner-dead and a revoker drops the entry (and its slot references)
 *    instead of waiting: no pid, no pid reuse.
 *  - pthread_atfork handlers: before fork, the root process registers
 *    (starting its helper) and the CPU mapping locks are taken so the child
 *    gets consistent copies; in the child, every mapping that the parent
 *    had revoked with its userfaultfd (whose registrations a child does not
 *    inherit) is revoked again with the child's own means, the child takes
 *    a reference on every slot it inherits, registers, then re-reads each
 *    slot and revokes what a concurrent revoke may have missed (the revoker
 *    writes the slot before it reads the registry, the child registers
 *    before it reads the slot: one of them sees the other), and starts its
 *    helper before fork() returns.
 *
 * A process that cannot be reached (registry full, no helper thread) fails
 * closed: its copies of the inherited buffers are revoked for good.  A
 * stopped process (SIGSTOP, a debugger) cannot acknowledge: the revoke
 * returns -ETIMEDOUT after the bound, with everything else done; its
 * helper applies the state when it runs again, and a later revoke retries.
 *
 * Closing a VFIO device revokes its buffers for good in this process only
 * (dmabuf_revoke_local()): the other processes hold their own device
 * copies open, as kernel processes sharing the device fd would.
 *
 * A process that never forked while holding dma-bufs has no region and no
 * slots: its revokes take one uncontended read lock more than before.
 * Without any other registered process a revoke costs two atomic
 * operations on the slot and uncontended locks: no system call.
 *
 * Locking: tree_lock (local) protects the list of live buffers, the
 * registration (self) and the held bits of this process; a buffer's
 * tree.apply mutex serializes applying its state in this process (the
 * order is docs/locking.md's).
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define TREE_PROCS 128u
#define TREE_SLOTS 16384u

enum { PROC_FREE = 0, PROC_CLAIMED, PROC_LIVE, PROC_BROKEN };

struct tree_slot {
	_Atomic uint64_t idref; /* incarnation << 32 | processes holding it */
	_Atomic uint64_t sg;    /* generation << 8 | enum p2p_dmabuf_status */
};

struct tree_proc {
	pthread_mutex_t alive;  /* robust, process-shared: held by the helper */
	_Atomic int32_t pid;
	_Atomic uint32_t state; /* PROC_*; futex for the registering thread */
	_Atomic uint32_t bell;  /* futex: rung by revokers */
	_Atomic uint32_t ack;   /* futex: the last bell value the helper served */
};

struct tree_shm {
	_Atomic uint32_t nprocs;
	_Atomic uint32_t hiwater; /* slots ever handed out */
	_Atomic uint32_t next_id;
	_Atomic uint64_t free_head; /* tag << 32 | slot index + 1 */
	struct tree_proc procs[TREE_PROCS];
	_Atomic uint64_t held[TREE_PROCS][TREE_SLOTS / 64];
	_Atomic uint32_t next[TREE_SLOTS];
	struct tree_slot slots[TREE_SLOTS];
};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static struct tree_shm *shm;

/* Held (read) while applying a state here, (write) across fork(). */
static pthread_rwlock_t fork_gate = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t tree_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list_head bufs = { &bufs, &bufs }; /* every live dma-buf here */
static _Atomic int self = -1;			 /* our registry entry; set under tree_lock */
/* Processes that let a revoke of ours time out: not waited for again until they answer. */
static _Atomic int32_t lag_pid[TREE_PROCS];
static _Atomic uint32_t lag_want[TREE_PROCS];

static long futex(_Atomic uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}

static void tree_atfork_prepare(void);
static void tree_atfork_parent(void);
static void tree_atfork_child(void);

/* P2PBUF_REVOKE_TIMEOUT_MS, read at each revoke that waits for other processes. */
static unsigned int read_timeout(void)
{
	const char *e = getenv("P2PBUF_REVOKE_TIMEOUT_MS");
	unsigned long v;
	char *end;

	if (!e || !*e)
		return 1000;
	v = strtoul(e, &end, 10);
	if (*end || v > 3600000) {
		pr_warn("P2PBUF_REVOKE_TIMEOUT_MS=%s ignored: not a number of ms up to 3600000", e);
		return 1000;
	}
	return (unsigned int)v;
}

static void shm_create(void)
{
	pthread_mutexattr_t a;
	struct tree_shm *s;

	s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s == MAP_FAILED) {
		pr_err("no process-tree region (%s): fork children revoke their inherited buffers",
		       strerror(errno));
		return;
	}
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	for (unsigned int i = 0; i < TREE_PROCS; i++)
		pthread_mutex_init(&s->procs[i].alive, &a);
	pthread_mutexattr_destroy(&a);
	shm = s;
}

static void atfork_register(void)
{
	pthread_atfork(tree_atfork_prepare, tree_atfork_parent, tree_atfork_child);
}

/* Slots: a lock-free tagged stack of free ones, then the never used ones. */
static uint32_t slot_alloc(void)
{
	uint64_t head = atomic_load(&shm->free_head), n;
	uint32_t idx;

	while ((idx = (uint32_t)head)) {
		n = ((head >> 32) + 1) << 32 | atomic_load(&shm->next[idx - 1]);
		if (atomic_compare_exchange_weak(&shm->free_head, &head, n))
			return idx;
	}
	idx = atomic_fetch_add(&shm->hiwater, 1);
	if (idx < TREE_SLOTS)
		return idx + 1;
	atomic_store(&shm->hiwater, TREE_SLOTS);
	return 0;
}

static void slot_free(uint32_t idx)
{
	uint64_t head = atomic_load(&shm->free_head), n;

	do {
		atomic_store(&shm->next[idx - 1], (uint32_t)head);
		n = ((head >> 32) + 1) << 32 | idx;
	} while (!atomic_compare_exchange_weak(&shm->free_head, &head, n));
}

static struct tree_slot *slot_of(const struct p2p_dmabuf *buf)
{
	return &shm->slots[buf->tree.slot - 1];
}

/* A reference on slot @idx if it is still incarnation @id. */
static bool slot_get(uint32_t idx, uint32_t id)
{
	struct tree_slot *s = &shm->slots[idx - 1];
	uint64_t w = atomic_load(&s->idref);

	do {
		if ((uint32_t)(w >> 32) != id || !(uint32_t)w)
			return false;
	} while (!atomic_compare_exchange_weak(&s->idref, &w, w + 1));
	return true;
}

static void slot_put(uint32_t idx)
{
	if ((uint32_t)atomic_fetch_sub(&shm->slots[idx - 1].idref, 1) == 1)
		slot_free(idx);
}

static void held_set(int proc, uint32_t idx, bool on)
{
	_Atomic uint64_t *w = &shm->held[proc][(idx - 1) / 64];
	uint64_t bit = 1ull << ((idx - 1) % 64);

	if (on)
		atomic_fetch_or(w, bit);
	else
		atomic_fetch_and(w, ~bit);
}

/* Drop a dead process's entry and its slot references.  Holds e->alive. */
static void proc_reclaim(struct tree_proc *e)
{
	int i = (int)(e - shm->procs);

	for (unsigned int k = 0; k < TREE_SLOTS / 64; k++) {
		uint64_t w = atomic_exchange(&shm->held[i][k], 0);

		while (w) {
			slot_put(k * 64 + (uint32_t)__builtin_ctzll(w) + 1);
			w &= w - 1;
		}
	}
	atomic_store(&e->pid, 0);
	atomic_store(&e->state, PROC_FREE);
	atomic_fetch_sub(&shm->nprocs, 1);
}

/* Is the process @pid that held entry @e gone (exited, killed, exec'd)? */
static bool proc_gone(struct tree_proc *e, int32_t pid)
{
	int r;

	if (atomic_load(&e->pid) != pid)
		return true;
	if (atomic_load(&e->state) != PROC_LIVE)
		return kill(pid, 0) < 0 && errno == ESRCH;
	r = pthread_mutex_trylock(&e->alive);
	if (r == EBUSY)
		return false;
	if (r == EOWNERDEAD || r == 0) {
		if (r == EOWNERDEAD)
			pthread_mutex_consistent(&e->alive);
		if (atomic_load(&e->pid) == pid && atomic_load(&e->state) == PROC_LIVE)
			proc_reclaim(e);
		pthread_mutex_unlock(&e->alive);
		return true;
	}
	return false;
}

/* Claim a free registry entry for this process; -1 if full. */
static int proc_claim(void)
{
	for (unsigned int i = 0; i < TREE_PROCS; i++) {
		struct tree_proc *e = &shm->procs[i];

		if (atomic_load(&e->state) == PROC_LIVE)
			proc_gone(e, atomic_load(&e->pid)); /* reclaims the dead */
	}
	for (unsigned int i = 0; i < TREE_PROCS; i++) {
		struct tree_proc *e = &shm->procs[i];
		uint32_t free = PROC_FREE;

		if (atomic_compare_exchange_strong(&e->state, &free, PROC_CLAIMED)) {
			atomic_store(&e->pid, (int32_t)getpid());
			/* Behind every ring to come, and to any already rung: only the helper answers. */
			atomic_store(&e->ack, atomic_load(&e->bell) - 0x40000000u);
			atomic_fetch_add(&shm->nprocs, 1);
			return (int)i;
		}
	}
	return -1;
}

/* Give back entry @i, claimed by this process but never live: its held bits too. */
static void proc_unclaim(int i)
{
	for (unsigned int k = 0; k < TREE_SLOTS / 64; k++)
		atomic_store(&shm->held[i][k], 0);
	atomic_store(&shm->procs[i].pid, 0);
	atomic_store(&shm->procs[i].state, PROC_FREE);
	atomic_fetch_sub(&shm->nprocs, 1);
}

struct put_list {
	struct p2p_dmabuf **bufs;
	size_t nr, max;
};

static void tree_sync(struct put_list *puts);
static void put_all(struct put_list *puts);

static void *helper_main(void *arg)
{
	struct tree_proc *e = arg;
	struct put_list puts = { 0 };
	uint32_t seen;
	int r = pthread_mutex_lock(&e->alive);

	if (r == EOWNERDEAD)
		r = pthread_mutex_consistent(&e->alive);
	if (r) {
		/* Without the mutex nobody could tell we are alive. */
		atomic_store(&e->state, PROC_BROKEN);
		futex(&e->state, FUTEX_WAKE, INT_MAX, NULL);
		return NULL;
	}
	atomic_store(&e->state, PROC_LIVE);
	futex(&e->state, FUTEX_WAKE, INT_MAX, NULL);
	for (;;) {
		seen = atomic_load(&e->bell);
		tree_sync(&puts);
		atomic_store(&e->ack, seen);
		futex(&e->ack, FUTEX_WAKE, INT_MAX, NULL);
		put_all(&puts);
		while (atomic_load(&e->bell) == seen)
			futex(&e->bell, FUTEX_WAIT, seen, NULL);
	}
	return NULL;
}

/* Start the helper of entry @i and wait until it holds the entry. */
static int helper_start(int i)
{
	struct tree_proc *e = &shm->procs[i];
	sigset_t all, old;
	pthread_attr_t a;
	pthread_t t;
	int ret;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	ret = -pthread_create(&t, &a, helper_main, e);
	pthread_attr_destroy(&a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		return ret;
	while (atomic_load(&e->state) == PROC_CLAIMED)
		futex(&e->state, FUTEX_WAIT, PROC_CLAIMED, NULL);
	return atomic_load(&e->state) == PROC_LIVE ? 0 : -ENOTRECOVERABLE;
}

/* Register this process (tree_lock held); 0 or -errno. */
static int tree_register(void)
{
	struct p2p_dmabuf *buf;
	int i, ret;

	if (self >= 0)
		return 0;
	i = proc_claim();
	if (i < 0)
		return -EUSERS;
	list_for_each_entry(buf, &bufs, tree.node)
		if (buf->tree.slot)
			held_set(i, buf->tree.slot, true);
	ret = helper_start(i);
	if (ret) {
		proc_unclaim(i); /* nobody holds it yet: the entry and our references back */
		return ret;
	}
	self = i;
	return 0;
}

/* Give @buf a slot holding its state (tree_lock held, shm made), if one is left. */
static void buf_slot_assign(struct p2p_dmabuf *buf)
{
	uint32_t idx = slot_alloc(), id;
	struct tree_slot *s;
	uint64_t sg;

	if (!idx) {
		pr_warn("dma-buf %s: no process-tree slot left: fork children revoke their copy",
			buf->name);
		return;
	}
	s = &shm->slots[idx - 1];
	id = atomic_fetch_add(&shm->next_id, 1) + 1;
	sg = ((atomic_load(&s->sg) >> 8) + 1) << 8 | (uint64_t)atomic_load(&buf->status);
	atomic_store(&s->sg, sg);
	atomic_store(&s->idref, (uint64_t)id << 32 | 1);
	buf->tree.id = id;
	atomic_store(&buf->tree.applied, (uint32_t)(sg >> 8));
	if (self >= 0)
		held_set(self, idx, true);
	atomic_store(&buf->tree.slot, idx);
}

/*
 * A new dma-buf joins this process's list.  It gets a shared slot only if
 * the process-tree region exists, that is once the process has forked
 * while holding buffers (the region is made then): until then a revoke
 * costs nothing more than before.
 */
void tree_buf_init(struct p2p_dmabuf *buf)
{
	pthread_mutex_init(&buf->tree.apply, NULL);
	pthread_once(&atfork_once, atfork_register);
	pthread_mutex_lock(&tree_lock);
	list_add_tail(&buf->tree.node, &bufs);
	if (shm)
		buf_slot_assign(buf);
	pthread_mutex_unlock(&tree_lock);
}

void tree_buf_release(struct p2p_dmabuf *buf)
{
	pthread_mutex_lock(&tree_lock);
	list_del_init(&buf->tree.node);
	if (buf->tree.slot) {
		if (self >= 0)
			held_set(self, buf->tree.slot, false);
		slot_put(buf->tree.slot);
		atomic_store(&buf->tree.slot, 0);
	}
	pthread_mutex_unlock(&tree_lock);
	pthread_mutex_destroy(&buf->tree.apply);
}

bool tree_state_ok(const struct p2p_dmabuf *buf)
{
	return !buf->tree.slot || (atomic_load(&slot_of(buf)->sg) & 0xff) == P2P_DMABUF_OK;
}

/* Apply the slot's state in this process: the local revoke or un-revoke. */
static int tree_apply(struct p2p_dmabuf *buf)
{
	uint64_t sg;
	int ret;

	pthread_rwlock_rdlock(&fork_gate);
	pthread_mutex_lock(&buf->tree.apply);
	sg = atomic_load(&slot_of(buf)->sg);
	if ((sg & 0xff) == P2P_DMABUF_OK)
		ret = dmabuf_unrevoke_local(buf);
	else
		ret = dmabuf_revoke_local(buf, (enum p2p_dmabuf_status)(sg & 0xff));
	atomic_store(&buf->tree.applied, (uint32_t)(sg >> 8));
	pthread_mutex_unlock(&buf->tree.apply);
	pthread_rwlock_unlock(&fork_gate);
	return ret;
}

/*
 * The helper's work: apply every slot whose generation moved.  The
 * references taken are dropped by put_all() after the acknowledgement: a
 * last reference's release may take the exporter's lock, which a revoker
 * of this process may hold while it waits for other processes.
 */
static void tree_sync(struct put_list *puts)
{
	struct p2p_dmabuf *buf, *found;

	for (;;) {
		found = NULL;
		pthread_mutex_lock(&tree_lock);
		list_for_each_entry(buf, &bufs, tree.node) {
			if (buf->tree.slot &&
			    (uint32_t)(atomic_load(&slot_of(buf)->sg) >> 8) !=
				    atomic_load(&buf->tree.applied) &&
			    dmabuf_tryget(buf)) {
				found = buf;
				break;
			}
		}
		pthread_mutex_unlock(&tree_lock);
		if (!found)
			return;
		tree_apply(found);
		if (puts->nr == puts->max) {
			size_t n = puts->max ? puts->max * 2 : 16;
			struct p2p_dmabuf **b = realloc(puts->bufs, n * sizeof(*b));

			if (!b) {
				p2p_dmabuf_put(found);
				continue;
			}
			puts->bufs = b;
			puts->max = n;
		}
		puts->bufs[puts->nr++] = found;
	}
}

static void put_all(struct put_list *puts)
{
	for (size_t i = 0; i < puts->nr; i++)
		p2p_dmabuf_put(puts->bufs[i]);
	puts->nr = 0;
}

/* Ring every other registered process and wait for their acknowledgements. */
static int tree_broadcast(struct p2p_dmabuf *buf)
{
	unsigned int timeout_ms = read_timeout();
	uint32_t want[TREE_PROCS];
	int32_t pid[TREE_PROCS];
	uint64_t deadline;
	int ret = 0;

	for (unsigned int i = 0; i < TREE_PROCS; i++) {
		struct tree_proc *e = &shm->procs[i];

		pid[i] = 0;
		if ((int)i == self || atomic_load(&e->state) == PROC_FREE)
			continue;
		pid[i] = atomic_load(&e->pid);
		if (!pid[i])
			continue;
		want[i] = atomic_fetch_add(&e->bell, 1) + 1;
		futex(&e->bell, FUTEX_WAKE, INT_MAX, NULL);
	}
	deadline = p2p_now_ns() + (uint64_t)timeout_ms * 1000000;
	for (unsigned int i = 0; i < TREE_PROCS; i++) {
		struct tree_proc *e = &shm->procs[i];
		uint32_t a;

		if (!pid[i])
			continue;
		if (atomic_load(&lag_pid[i]) == pid[i]) {
			/* It let an earlier revoke time out: wait again only once it answered that. */
			if ((int32_t)(atomic_load(&e->ack) - atomic_load(&lag_want[i])) < 0 &&
			    !proc_gone(e, pid[i])) {
				pr_err("revoke of %s: process %d still has not answered an earlier revoke: not waiting",
				       buf->name, (int)pid[i]);
				ret = -ETIMEDOUT;
				continue;
			}
			atomic_store(&lag_pid[i], 0);
		}
		while ((int32_t)((a = atomic_load(&e->ack)) - want[i]) < 0) {
			uint64_t now = p2p_now_ns(), left;
			struct timespec ts;

			if (proc_gone(e, pid[i]))
				break;
			if (now >= deadline) {
				pr_err("revoke of %s: process %d did not answer within %u ms (stopped?): its mappings follow when it runs again",
				       buf->name, (int)pid[i], timeout_ms);
				atomic_store(&lag_want[i], want[i]);
				atomic_store(&lag_pid[i], pid[i]);
				ret = -ETIMEDOUT;
				break;
			}
			left = MIN(deadline - now, 20000000ull);
			ts.tv_sec = 0;
			ts.tv_nsec = (long)left;
			futex(&e->ack, FUTEX_WAIT, a, &ts);
		}
	}
	return ret;
}

int tree_set_state(struct p2p_dmabuf *buf, enum p2p_dmabuf_status status)
{
	struct tree_slot *s;
	uint64_t sg;
	int ret = 0, err;

	/* Under the gate, so that a fork cannot give it a slot meanwhile. */
	pthread_rwlock_rdlock(&fork_gate);
	if (!buf->tree.slot) {
		ret = status == P2P_DMABUF_OK ? dmabuf_unrevoke_local(buf)
					      : dmabuf_revoke_local(buf, status);
		pthread_rwlock_unlock(&fork_gate);
		return ret;
	}
	pthread_rwlock_unlock(&fork_gate);
	s = slot_of(buf);
	sg = atomic_load(&s->sg);
	do {
		if ((sg & 0xff) == P2P_DMABUF_PERM_REVOKED) {
			ret = -EBADFD;
			break;
		}
	} while (!atomic_compare_exchange_weak(&s->sg, &sg, ((sg >> 8) + 1) << 8 | status));
	err = tree_apply(buf);
	if (!ret && err != -EBADFD)
		ret = err;
	/* Seq-cst: the slot is written before the registry is read (see the top). */
	if (atomic_load(&shm->nprocs) > (self >= 0 ? 1u : 0u)) {
		err = tree_broadcast(buf);
		if (!ret)
			ret = err;
	}
	return ret;
}

static void tree_atfork_prepare(void)
{
	struct p2p_dmabuf *buf;
	bool any = false;
	int ret;

	pthread_rwlock_wrlock(&fork_gate);
	pthread_mutex_lock(&tree_lock);
	if (!list_empty(&bufs) && !shm)
		shm_create();
	if (shm) {
		list_for_each_entry(buf, &bufs, tree.node) {
			if (!buf->tree.slot)
				buf_slot_assign(buf);
			any |= buf->tree.slot != 0;
		}
	}
	if (any && self < 0) {
		ret = tree_register();
		if (ret)
			pr_err("fork: cannot register this process (%s): revokes in children will not reach it",
			       strerror(-ret));
	}
	list_for_each_entry(buf, &bufs, tree.node)
		pthread_mutex_lock(&buf->cpu_lock);
	cpumap_fork_prepare();
}

static void tree_atfork_parent(void)
{
	struct p2p_dmabuf *buf;

	cpumap_fork_parent();
	list_for_each_entry(buf, &bufs, tree.node)
		pthread_mutex_unlock(&buf->cpu_lock);
	pthread_mutex_unlock(&tree_lock);
	pthread_rwlock_unlock(&fork_gate);
}

/* A buffer this process cannot keep in step with the tree: revoked for good here. */
static void fail_closed(struct p2p_dmabuf *buf)
{
	atomic_store(&buf->status, P2P_DMABUF_PERM_REVOKED);
	if (buf->tree.slot) {
		slot_put(buf->tree.slot);
		atomic_store(&buf->tree.slot, 0);
	}
	cpumap_block_all(buf);
}

static void tree_atfork_child(void)
{
	struct p2p_dmabuf *buf;
	int i = -1, ret = 0;

	/* Single-threaded now: release everything, then work with the usual locks. */
	cpumap_fork_child();
	list_for_each_entry(buf, &bufs, tree.node) {
		pthread_mutex_unlock(&buf->cpu_lock);
		/* Fences of the parent's DMA: nothing in this process will signal them. */
		for (unsigned int k = 0; k < buf->nr_fences; k++)
			atomic_store(&buf->fences[k]->signaled, true);
	}
	pthread_mutex_unlock(&tree_lock);
	/* The rwlock knows its writer by thread id, which fork() changed. */
	pthread_rwlock_init(&fork_gate, NULL);

	pthread_mutex_lock(&tree_lock);
	list_for_each_entry(buf, &bufs, tree.node)
		cpumap_fork_reblock(buf);
	self = -1;
	if (list_empty(&bufs)) {
		pthread_mutex_unlock(&tree_lock);
		return;
	}
	if (shm) {
		i = proc_claim();
		if (i < 0)
			ret = -EUSERS;
	}
	list_for_each_entry(buf, &bufs, tree.node) {
		if (!buf->tree.slot)
			continue;
		if (i >= 0 && slot_get(buf->tree.slot, buf->tree.id))
			held_set(i, buf->tree.slot, true);
		else
			atomic_store(&buf->tree.slot, 0); /* nobody else holds it any more, or we can't */
	}
	if (i >= 0) {
		ret = helper_start(i);
		if (!ret)
			self = i;
	}
	/* Registered before reading the slots: a revoke that missed us is seen here. */
	list_for_each_entry(buf, &bufs, tree.node) {
		if (self < 0 || !buf->tree.id) /* unreachable, or never had a slot */
			fail_closed(buf);
		else if (buf->tree.slot && !tree_state_ok(buf))
			cpumap_block_all(buf); /* the helper does the rest */
	}
	if (self < 0 && i >= 0)
		proc_unclaim(i);
	pthread_mutex_unlock(&tree_lock);
	if (self < 0 && ret)
		pr_err("fork child: cannot join the process tree (%s): inherited dma-bufs are revoked here for good",
		       strerror(-ret));
}

