// SPDX-License-Identifier: MIT
/*
 * vfio-user client: a vfio-user server's device as a struct p2p_pci_dev.
 *
 * Threads: the caller's threads send requests and wait (bounded) for their
 * replies; whoever holds the read role receives: a caller reads its own
 * reply when nobody else reads (leader/follower: two wake-ups per request,
 * as a raw request/reply), the reader thread once callers have been quiet
 * for a while.  Replies go to their waiters by msg_id; the server's
 * commands (DMA_READ, DMA_WRITE, our REVOKE notices) to one worker thread
 * at once, whoever read them, so a command that takes the function's locks
 * never holds up the replies another thread waits for under them (a
 * trapped BAR access holds the memory lock), and a notice never waits
 * behind a caller.  The worker never waits for the server (DMABUF_CLOSE is
 * posted without a reply).
 * When the connection breaks the worker marks the function removed
 * (p2p_pci_dev_backend_state(GONE)) and revokes the exports for good.
 *
 * Locks: c->lock protects the waiters, the command queue, the exports list
 * and the state; c->send_lock serializes writes to the socket; c->dom_lock
 * the IOAS mirror (the domain).  None is held while calling into the core,
 * except dom_lock around domain attach/detach (domain callbacks take none).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/vfio_user.h>

#include "../core/core.h"
#include "msg.h"

#define VU_CONFIG_REGION 7
#define VU_MAX_REGIONS 9
#define VU_DEFAULT_TIMEOUT_MS 5000u
#define VU_OUR_XFER (1u << 20)
#define VU_IDLE_NS 1000000L /* callers quiet this long: the reader thread reads again */

struct vu_waiter {
	struct list_head node;
	uint16_t id;
	bool done;
	bool expired; /* no reply by @dl: the reader thread ended the connection */
	struct timespec dl;
	struct vu_msg msg;
};

struct vu_cmd {
	struct list_head node;
	struct vu_msg msg;
	bool twin; /* came over the twin socket: the reply goes there */
};

struct vu_export {
	struct list_head node; /* c->exports, under c->lock */
	struct p2p_vfio_user_client *c;
	uint64_t id;
	struct p2p_dmabuf *buf; /* weak: the buffer's release unlinks us */
	struct p2p_mem *mem;
};

struct vu_region {
	uint32_t flags;
	uint64_t size;
	uint64_t offset;
	int fd;
	bool mmap_all; /* the fd covers the whole region */
};

struct p2p_vfio_user_client {
	atomic_int refs; /* the user's, the function's */
	int sock;
	/*
	 * twin_socket mode: the server's commands and our replies to them go
	 * over @twin, read by @twin_reader (set by negotiate(), before any
	 * command of the server can come there; -1 without).
	 */
	int twin;
	pthread_t twin_reader;
	bool twin_thread;
	/*
	 * The server's commands queued for the worker and served by it, and
	 * whether the twin reader holds a message not queued yet (under
	 * @lock): notices_settle() waits for what came before a reply.
	 */
	uint64_t cmds_queued, cmds_done;
	bool twin_busy;
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* callers, the reader thread: replies, the read role, the end */
	pthread_cond_t wcond; /* the worker: commands, the end */
	pthread_mutex_t send_lock;
	pthread_t reader, worker;
	bool threads;
	bool dead, stop;
	bool reading; /* a thread holds the read role (receives from the socket) */
	struct vu_rbuf rb; /* @sock's read-ahead: the read role's */
	struct timespec idle_at; /* the reader thread takes the role back after it */
	bool gone_done; /* the worker marked the function removed */
	uint16_t next_id;
	struct list_head waiters, cmds, exports;
	uint32_t timeout_ms;
	/*
	 * Set by negotiate() while the reader and worker threads already run
	 * (they bound messages by max_xfer, and a notice may come right after
	 * the VERSION reply): atomics (__atomic_*), read with vu_max_xfer()
	 * and vu_p2p().
	 */
	uint32_t max_fds, max_xfer;
	bool p2p;
	/*
	 * A connection attached through a token (vu_resolve()): no function,
	 * one export; its threads are detached and hold a reference each, and
	 * the export's release ends the connection.
	 */
	bool token_conn;
	/*
	 * A token connection's notices that came before its one export was
	 * listed (see vu_resolve()), under @lock: @tok_state is the state
	 * (enum p2p_dmabuf_status; -1: none) the latest of them says, for
	 * export @tok_id; while @tok_building, export_local() makes the buffer
	 * from that state and the worker waits (on @cond) instead of recording.
	 */
	int tok_state;
	uint64_t tok_id;
	bool tok_building;
	struct p2p_pci_dev *pdev;
	struct vu_region regions[VU_MAX_REGIONS];
	uint32_t nr_regions, dev_flags;
	int early_regions; /* P2P_PCI_BACKEND_*: a notice before the function existed */

	pthread_mutex_t dom_lock;
	struct p2p_ioas_domain *dom;
	struct p2p_ioas *dom_ioas;
};

static void client_put(struct p2p_vfio_user_client *c)
{
	struct vu_cmd *q, *n;

	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	/*
	 * Commands the server sent after the worker ended (the twin socket's
	 * reader stops after it): the connection is over, nobody answers them.
	 */
	list_for_each_entry_safe(q, n, &c->cmds, node) {
		list_del_init(&q->node);
		vu_msg_release(&q->msg);
		free(q);
	}
	for (int i = 0; i < VU_MAX_REGIONS; i++)
		if (c->regions[i].fd >= 0)
			close(c->regions[i].fd);
	if (c->sock >= 0)
		close(c->sock);
	if (c->twin >= 0)
		close(c->twin);
	vu_rbuf_release(&c->rb);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->wcond);
	pthread_mutex_destroy(&c->send_lock);
	pthread_mutex_destroy(&c->dom_lock);
	free(c);
}

/* The connection is over: wake everyone (c->lock held). */
static void mark_dead_locked(struct p2p_vfio_user_client *c)
{
	if (!c->dead) {
		shutdown(c->sock, SHUT_RDWR);
		if (c->twin >= 0)
			shutdown(c->twin, SHUT_RDWR);
	}
	c->dead = true;
	pthread_cond_broadcast(&c->cond);
	pthread_cond_broadcast(&c->wcond);
}

static int send_msg(struct p2p_vfio_user_client *c, struct vfio_user_header *hdr,
		    const struct iovec *iov, int iovcnt, const int *fds, unsigned int nr_fds)
{
	int ret;

	pthread_mutex_lock(&c->send_lock);
	ret = vu_msg_sendv(c->sock, hdr, iov, iovcnt, fds, nr_fds);
	pthread_mutex_unlock(&c->send_lock);
	return ret;
}

static void queue_cmd(struct p2p_vfio_user_client *c, struct vu_msg *m, bool twin);

/*
 * The read role.  Whoever holds it (c->reading) receives from the socket:
 * a caller waiting for its reply when nobody else reads (so the common
 * call is two wake-ups, as a raw request/reply), else the reader thread,
 * which takes the role only once callers have been quiet for VU_IDLE_NS
 * (it wakes every VU_IDLE_NS meanwhile).  Replies go to their waiters by
 * msg_id, the server's commands (DMA_READ/WRITE, REVOKE notices) to the
 * worker at once, whoever received them: a notice never waits behind a
 * caller.
 */
static void deliver(struct p2p_vfio_user_client *c, struct vu_msg *m, const struct vu_waiter *self)
{
	if ((m->hdr.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_REPLY) {
		struct vu_waiter *w;
		bool found = false;

		pthread_mutex_lock(&c->lock);
		list_for_each_entry(w, &c->waiters, node) {
			if (w->id != m->hdr.msg_id || w->done)
				continue;
			w->msg = *m;
			w->done = true;
			found = true;
			break;
		}
		if (found && w != self)
			pthread_cond_broadcast(&c->cond); /* (the reader's own reply: it knows) */
		pthread_mutex_unlock(&c->lock);
		if (!found)
			vu_msg_release(m); /* a late reply to a timed-out request */
		return;
	}
	queue_cmd(c, m, false);
}

static void reply_error(struct p2p_vfio_user_client *c, int sock,
			const struct vfio_user_header *req, int err);

/*
 * A message read whole but with more fds than it may carry (closed): a
 * reply ends its waiter with EPROTO at once (rather than at its timeout), a
 * command is refused with EINVAL on @sock, where it came from.
 */
static void refuse_msg(struct p2p_vfio_user_client *c, const struct vfio_user_header *hdr,
		       int sock)
{
	if ((hdr->flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_REPLY) {
		struct vu_msg m = { .hdr = *hdr };

		m.hdr.flags |= VFIO_USER_F_ERROR;
		m.hdr.error_no = EPROTO;
		m.hdr.msg_size = sizeof(m.hdr);
		for (int i = 0; i < VU_MAX_FDS; i++)
			m.fds[i] = -1;
		deliver(c, &m, NULL);
		return;
	}
	reply_error(c, sock, hdr, EINVAL);
}

/* A command of the server (from @sock, or @twin): to the worker. */
static void queue_cmd(struct p2p_vfio_user_client *c, struct vu_msg *m, bool twin)
{
	struct vu_cmd *q = malloc(sizeof(*q));

	if (!q) {
		reply_error(c, twin ? c->twin : c->sock, &m->hdr, ENOMEM);
		vu_msg_release(m);
		return;
	}
	q->msg = *m;
	q->twin = twin;
	pthread_mutex_lock(&c->lock);
	c->cmds_queued++;
	list_add_tail(&q->node, &c->cmds);
	pthread_cond_signal(&c->wcond);
	pthread_mutex_unlock(&c->lock);
}

/*
 * Receive one message and deliver it, the read role held.  A caller blocks
 * in it with no timeout of its own (no poll() on the fast path): the reader
 * thread ends the connection when a waiter's deadline passes (see
 * reader_main()), which wakes it.  Return: 0, or the connection's error
 * (it is over).
 */
static int read_one(struct p2p_vfio_user_client *c, const struct vu_waiter *self)
{
	struct vu_msg m;
	/* What we told the server we take (c->max_xfer, negotiated, is never more). */
	int ret = vu_msg_recv_buffered(c->sock, &c->rb,
				       sizeof(struct vfio_user_header) + 64 + VU_OUR_XFER, &m);

	if (ret == -ETOOMANYREFS) {
		refuse_msg(c, &m.hdr, c->sock);
		return 0;
	}
	if (ret)
		return ret;
	deliver(c, &m, self);
	return 0;
}

static void serve_cmd(struct p2p_vfio_user_client *c, struct vu_msg *m, int sock);

/*
 * The twin socket's reader (twin_socket mode): the server's commands.  It
 * serves them itself, in order, one thread hop fewer on a revoke's path
 * (notice -> zap -> ack) than handing them to the worker; should the
 * worker still have commands (ones that came on the main socket before the
 * twin was set up), it queues behind them instead, so that the order
 * holds.  The server sends nothing else there; anything else, or EOF, ends
 * the connection.
 */
static void *twin_main(void *arg)
{
	struct p2p_vfio_user_client *c = arg;

	for (;;) {
		struct vu_msg m;
		bool inline_serve;
		char b;
		int ret;

		/* Busy from the first byte until the message is served or queued (notices_settle()). */
		if (recv(c->twin, &b, 1, MSG_PEEK) <= 0)
			break;
		pthread_mutex_lock(&c->lock);
		if (c->dead) {
			/* The worker may be marking the function removed: serve nothing more. */
			pthread_mutex_unlock(&c->lock);
			break;
		}
		c->twin_busy = true;
		pthread_mutex_unlock(&c->lock);
		ret = vu_msg_recv(c->twin, sizeof(struct vfio_user_header) + 64 + VU_OUR_XFER, &m);
		if (ret == -ETOOMANYREFS &&
		    (m.hdr.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_COMMAND)
			refuse_msg(c, &m.hdr, c->twin);
		if (!ret && (m.hdr.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_TYPE_COMMAND) {
			vu_msg_release(&m);
			ret = -EPROTO;
		}
		if (!ret) {
			pthread_mutex_lock(&c->lock);
			inline_serve = c->cmds_done == c->cmds_queued;
			pthread_mutex_unlock(&c->lock);
			if (inline_serve) {
				serve_cmd(c, &m, c->twin);
				vu_msg_release(&m);
			} else {
				queue_cmd(c, &m, true);
			}
		}
		pthread_mutex_lock(&c->lock);
		c->twin_busy = false;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		if (ret && ret != -ETOOMANYREFS)
			break;
	}
	pthread_mutex_lock(&c->lock);
	mark_dead_locked(c);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* The reader thread: the read role while no caller has it (or was recently reading). */
static void *reader_main(void *arg)
{
	struct p2p_vfio_user_client *c = arg;

	pthread_mutex_lock(&c->lock);
	while (!c->dead) {
		struct timespec now;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (c->reading || !list_empty(&c->waiters) || vu_ts_before(&now, &c->idle_at)) {
			struct timespec dl;

			vu_deadline_in(&dl, VU_IDLE_NS);
			if (!c->reading && list_empty(&c->waiters))
				dl = c->idle_at;
			pthread_cond_timedwait(&c->cond, &c->lock, &dl);
			/* The deadline of a caller blocked reading: the connection ends. */
			struct vu_waiter *w;

			clock_gettime(CLOCK_MONOTONIC, &now);
			list_for_each_entry(w, &c->waiters, node) {
				if (!w->done && !w->expired && vu_ts_before(&w->dl, &now)) {
					w->expired = true;
					mark_dead_locked(c);
				}
			}
			continue;
		}
		c->reading = true;
		pthread_mutex_unlock(&c->lock);
		int ret = read_one(c, NULL);

		pthread_mutex_lock(&c->lock);
		c->reading = false;
		if (ret)
			mark_dead_locked(c);
		else if (!list_empty(&c->waiters))
			pthread_cond_broadcast(&c->cond); /* a caller came meanwhile: its role */
	}
	pthread_mutex_unlock(&c->lock);
	if (c->token_conn)
		client_put(c);
	return NULL;
}

/*
 * One request and its reply.  @reply (may be NULL) gets the whole message;
 * release it with vu_msg_release().  Return: 0, the server's -errno,
 * -ENODEV (connection gone), -ETIMEDOUT (no reply in time: the connection
 * is then dropped, as a dead server).
 */
static int vu_call(struct p2p_vfio_user_client *c, uint16_t cmd, const struct iovec *iov,
		   int iovcnt, const int *fds, unsigned int nr_fds, struct vu_msg *reply)
{
	struct vu_waiter w = { .done = false };
	struct vfio_user_header hdr = { .cmd = cmd, .flags = VFIO_USER_F_TYPE_COMMAND };
	struct timespec dl;
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		return -ENODEV;
	}
	w.id = hdr.msg_id = c->next_id++;
	vu_deadline_in(&dl, (uint64_t)c->timeout_ms * 1000000ull);
	w.dl = dl;
	list_add_tail(&w.node, &c->waiters);
	pthread_mutex_unlock(&c->lock);

	ret = send_msg(c, &hdr, iov, iovcnt, fds, nr_fds);
	pthread_mutex_lock(&c->lock);
	if (ret) {
		mark_dead_locked(c);
	} else {
		while (!w.done && !c->dead && ret != ETIMEDOUT) {
			if (!c->reading) {
				/* Nobody reads: we do (our reply, or anyone's message, handed on). */
				c->reading = true;
				pthread_mutex_unlock(&c->lock);
				int r = read_one(c, &w);

				pthread_mutex_lock(&c->lock);
				c->reading = false;
				if (w.expired)
					ret = ETIMEDOUT;
				else if (r)
					mark_dead_locked(c);
				continue;
			}
			ret = pthread_cond_timedwait(&c->cond, &c->lock, &dl);
		}
		if (!w.done) {
			if (!c->dead || w.expired)
				pr_warn("vfio-user: no reply to command %u in %u ms: dropping the server",
					cmd, c->timeout_ms);
			mark_dead_locked(c);
		}
	}
	list_del_init(&w.node);
	/* Another caller waits for a reply nobody reads now: it takes the role. */
	if (!c->reading && !list_empty(&c->waiters))
		pthread_cond_broadcast(&c->cond);
	vu_deadline_in(&c->idle_at, VU_IDLE_NS);
	pthread_mutex_unlock(&c->lock);
	if (!w.done)
		return ret == ETIMEDOUT || w.expired ? -ETIMEDOUT : -ENODEV;
	if (w.msg.hdr.flags & VFIO_USER_F_ERROR) {
		ret = w.msg.hdr.error_no ? -(int)w.msg.hdr.error_no : -EIO;
		vu_msg_release(&w.msg);
		return ret;
	}
	if (reply)
		*reply = w.msg;
	else
		vu_msg_release(&w.msg);
	return 0;
}

static int vu_call1(struct p2p_vfio_user_client *c, uint16_t cmd, const void *req, size_t len,
		    const int *fds, unsigned int nr_fds, struct vu_msg *reply)
{
	struct iovec iov = { .iov_base = (void *)req, .iov_len = len };

	return vu_call(c, cmd, &iov, len ? 1 : 0, fds, nr_fds, reply);
}

static inline uint32_t vu_max_xfer(struct p2p_vfio_user_client *c)
{
	return __atomic_load_n(&c->max_xfer, __ATOMIC_RELAXED);
}

static inline bool vu_p2p(struct p2p_vfio_user_client *c)
{
	return __atomic_load_n(&c->p2p, __ATOMIC_ACQUIRE);
}

/* ---------------------------------------------------------------------- */
/* Reader and worker                                                       */

static void reply_to(struct p2p_vfio_user_client *c, int sock, const struct vfio_user_header *req,
		     const struct iovec *iov, int iovcnt)
{
	struct vfio_user_header hdr = {
		.msg_id = req->msg_id, .cmd = req->cmd, .flags = VFIO_USER_F_TYPE_REPLY,
	};

	if (req->flags & VFIO_USER_F_NO_REPLY)
		return;
	pthread_mutex_lock(&c->send_lock);
	vu_msg_sendv(sock, &hdr, iov, iovcnt, NULL, 0);
	pthread_mutex_unlock(&c->send_lock);
}

static void reply_error(struct p2p_vfio_user_client *c, int sock,
			const struct vfio_user_header *req, int err)
{
	if (req->flags & VFIO_USER_F_NO_REPLY)
		return;
	pthread_mutex_lock(&c->send_lock);
	vu_send_error(sock, req, err);
	pthread_mutex_unlock(&c->send_lock);
}

/* DMA_READ / DMA_WRITE: the device's DMA to memory mapped without an fd. */
static void serve_dma(struct p2p_vfio_user_client *c, struct vu_msg *m, int sock)
{
	struct vfio_user_dma_region_access a;
	size_t plen = m->size - sizeof(m->hdr);
	bool write = m->hdr.cmd == VFIO_USER_DMA_WRITE;
	void *data = NULL;
	int ret;

	if (plen < sizeof(a) || !c->pdev) {
		reply_error(c, sock, &m->hdr, EINVAL);
		return;
	}
	memcpy(&a, m->buf + sizeof(m->hdr), sizeof(a));
	if (!a.count || a.count > vu_max_xfer(c) || (write && plen - sizeof(a) != a.count) ||
	    (!write && plen != sizeof(a))) {
		reply_error(c, sock, &m->hdr, EINVAL);
		return;
	}
	if (write) {
		ret = p2p_pci_dev_dma_rw(c->pdev, a.addr, m->buf + sizeof(m->hdr) + sizeof(a),
					 a.count, true);
	} else {
		data = malloc(a.count);
		ret = data ? p2p_pci_dev_dma_rw(c->pdev, a.addr, data, a.count, false) : -ENOMEM;
	}
	if (ret) {
		free(data);
		reply_error(c, sock, &m->hdr, ret == -ENOENT ? EFAULT : -ret);
		return;
	}
	struct iovec iov[2] = { { &a, sizeof(a) }, { data, write ? 0 : a.count } };

	reply_to(c, sock, &m->hdr, iov, write ? 1 : 2);
	free(data);
}

/* A REVOKE notice: revoke locally (CPU zap, DMA drained), then ack. */
static void serve_revoke(struct p2p_vfio_user_client *c, struct vu_msg *m, int sock)
{
	struct vfio_user_p2p_revoke r;
	struct vu_export *e;
	struct p2p_dmabuf *buf = NULL;
	bool revoke, for_good;
	int ret = 0;

	if (!vu_p2p(c) || m->size - sizeof(m->hdr) < sizeof(r)) {
		reply_error(c, sock, &m->hdr, vu_p2p(c) ? EINVAL : ENOSYS);
		return;
	}
	/*
	 * A notice while p2p_vfio_user_connect() still builds the function
	 * (a reset by another client): nothing of ours maps the memory yet,
	 * so the ack is true; an error reply would get us disconnected.  The
	 * state of the regions is applied once the function exists.
	 */
	memcpy(&r, m->buf + sizeof(m->hdr), sizeof(r));
	revoke = r.flags & VFIO_USER_P2P_REVOKE_F_REVOKED;
	for_good = r.flags & VFIO_USER_P2P_REVOKE_F_FOR_GOOD;
	pthread_mutex_lock(&c->lock);
	if (!c->pdev && r.export_id == VFIO_USER_P2P_EXPORT_REGIONS) {
		c->early_regions = !revoke  ? P2P_PCI_BACKEND_OK :
				   for_good ? P2P_PCI_BACKEND_GONE :
					      P2P_PCI_BACKEND_REVOKED;
		pthread_mutex_unlock(&c->lock);
		if (revoke)
			reply_to(c, sock, &m->hdr, NULL, 0);
		return;
	}
	pthread_mutex_unlock(&c->lock);
	if (r.export_id == VFIO_USER_P2P_EXPORT_REGIONS) {
		ret = p2p_pci_dev_backend_state(c->pdev, !revoke  ? P2P_PCI_BACKEND_OK :
							 for_good ? P2P_PCI_BACKEND_GONE :
								    P2P_PCI_BACKEND_REVOKED);
	} else {
		pthread_mutex_lock(&c->lock);
		/* A token connection's export being built: it is listed right after. */
		while (c->tok_building && !c->dead)
			pthread_cond_wait(&c->cond, &c->lock);
		list_for_each_entry(e, &c->exports, node) {
			if (e->id == r.export_id && dmabuf_tryget(e->buf)) {
				buf = e->buf;
				break;
			}
		}
		/*
		 * Not listed yet (the DMABUF_GET reply is on its way or being
		 * read): recorded for export_local(), the latest wins but for
		 * good is final.  A revoke is acked below, truly: no buffer of
		 * ours exists yet, so nothing maps the memory.
		 */
		if (!buf && c->token_conn &&
		    (c->tok_state != P2P_DMABUF_PERM_REVOKED || c->tok_id != r.export_id)) {
			c->tok_id = r.export_id;
			c->tok_state = !revoke	 ? P2P_DMABUF_OK :
				       for_good ? P2P_DMABUF_PERM_REVOKED :
						  P2P_DMABUF_TEMP_REVOKED;
		}
		pthread_mutex_unlock(&c->lock);
		if (buf) {
			ret = !revoke ? p2p_dmabuf_unrevoke(buf) :
			      p2p_dmabuf_revoke(buf, for_good ? P2P_DMABUF_PERM_REVOKED :
								P2P_DMABUF_TEMP_REVOKED);
		}
	}
	if (ret == -EBADFD)
		ret = 0; /* revoked for good already: nothing maps it */
	if (ret)
		pr_err("vfio-user: a revoke notice could not be applied (%d)", ret);
	/* The ack; a restore needs none, but a reply hurts no one who did not wait. */
	if (revoke) {
		if (ret)
			reply_error(c, sock, &m->hdr, -ret);
		else
			reply_to(c, sock, &m->hdr, NULL, 0);
	}
	/*
	 * After the ack: if the user closed the dma-buf meanwhile, this is the
	 * last reference and its release sends DMABUF_CLOSE, which the server
	 * carries out only once the revoke that waits for this ack is over.
	 */
	if (buf)
		p2p_dmabuf_put(buf);
}

/* The server is gone: the function is removed, its exports revoked for good. */
static void client_gone(struct p2p_vfio_user_client *c)
{
	struct vu_export *e;

	if (c->pdev) {
		p2p_pci_dev_backend_state(c->pdev, P2P_PCI_BACKEND_GONE);
		/* Removed: no longer listed for VFIO users (nothing if it was not). */
		p2p_vfio_unregister(c->pdev);
	}
	for (;;) {
		struct p2p_dmabuf *buf = NULL;

		pthread_mutex_lock(&c->lock);
		list_for_each_entry(e, &c->exports, node) {
			if (e->id != UINT64_MAX && dmabuf_tryget(e->buf)) {
				buf = e->buf;
				e->id = UINT64_MAX; /* done with this one */
				break;
			}
		}
		pthread_mutex_unlock(&c->lock);
		if (!buf)
			break;
		p2p_dmabuf_revoke(buf, P2P_DMABUF_PERM_REVOKED);
		p2p_dmabuf_put(buf);
	}
}

/* One command of the server, answered on @sock (where it came from). */
static void serve_cmd(struct p2p_vfio_user_client *c, struct vu_msg *m, int sock)
{
	switch (m->hdr.cmd) {
	case VFIO_USER_DMA_READ:
	case VFIO_USER_DMA_WRITE:
		serve_dma(c, m, sock);
		break;
	case VFIO_USER_P2P_REVOKE:
		serve_revoke(c, m, sock);
		break;
	default:
		reply_error(c, sock, &m->hdr, ENOSYS);
		break;
	}
}

static void *worker_main(void *arg)
{
	struct p2p_vfio_user_client *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct vu_cmd *q;

		while (list_empty(&c->cmds) && !c->dead)
			pthread_cond_wait(&c->wcond, &c->lock);
		if (list_empty(&c->cmds))
			break;
		q = list_entry(c->cmds.next, struct vu_cmd, node);
		list_del_init(&q->node);
		pthread_mutex_unlock(&c->lock);
		serve_cmd(c, &q->msg, q->twin ? c->twin : c->sock);
		vu_msg_release(&q->msg);
		free(q);
		pthread_mutex_lock(&c->lock);
		c->cmds_done++;
		pthread_cond_broadcast(&c->cond);
	}
	/* A command the twin reader is serving ends first (it serves no more: dead). */
	while (c->twin_busy)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	client_gone(c);
	pthread_mutex_lock(&c->lock);
	c->gone_done = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (c->token_conn)
		client_put(c);
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* The function's hooks                                                    */

static int region_rw(struct p2p_vfio_user_client *c, uint32_t region, uint64_t off, void *data,
		     size_t len, bool write)
{
	uint8_t *d = data;

	while (len) {
		struct vfio_user_region_access a = {
			.offset = off, .region = region,
			.count = (uint32_t)MIN(len, (size_t)vu_max_xfer(c)),
		};
		struct iovec iov[2] = { { &a, sizeof(a) }, { d, a.count } };
		struct vu_msg r;
		int ret = vu_call(c, write ? VFIO_USER_REGION_WRITE : VFIO_USER_REGION_READ, iov,
				  write ? 2 : 1, NULL, 0, &r);

		if (ret)
			return ret;
		if (!write) {
			struct vfio_user_region_access ra;

			if (r.size < sizeof(r.hdr) + sizeof(ra)) {
				vu_msg_release(&r);
				return -EPROTO;
			}
			memcpy(&ra, r.buf + sizeof(r.hdr), sizeof(ra));
			if (ra.count > a.count || r.size - sizeof(r.hdr) - sizeof(ra) < ra.count ||
			    !ra.count) {
				vu_msg_release(&r);
				return -EPROTO;
			}
			memcpy(d, r.buf + sizeof(r.hdr) + sizeof(ra), ra.count);
			a.count = ra.count;
		}
		vu_msg_release(&r);
		d += a.count;
		off += a.count;
		len -= a.count;
	}
	return 0;
}

static int hook_bar_rw(struct p2p_pci_dev *dev, int bar, uint64_t offset, void *data, size_t len,
		       bool write)
{
	return region_rw(p2p_pci_dev_priv(dev), (uint32_t)bar, offset, data, len, write);
}

/*
 * After a command of ours that the server answered (a config write, a
 * reset): let the worker apply the notices the server sent before its
 * reply (the restore of memory decoding back on, say), so that, as on a
 * local function, the mappings work again when the call returns.  On one
 * socket they were queued before the reply was read; on the twin they
 * were written before it, so they are unread there (FIONREAD), being read
 * (twin_busy) or queued.  Bounded by the call timeout; no lock held.
 */
static void notices_settle(struct p2p_vfio_user_client *c)
{
	struct timespec dl;

	vu_deadline_in(&dl, (uint64_t)c->timeout_ms * 1000000ull);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		int unread = 0;

		if (c->twin >= 0 && ioctl(c->twin, FIONREAD, &unread))
			unread = 0;
		if (c->dead || (!unread && !c->twin_busy && c->cmds_done >= c->cmds_queued))
			break;
		struct timespec now, step;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!vu_ts_before(&now, &dl))
			break;
		/* Unread twin bytes wake nobody here: look again after a moment. */
		vu_deadline_in(&step, 200000);
		pthread_cond_timedwait(&c->cond, &c->lock, &step);
	}
	pthread_mutex_unlock(&c->lock);
}

static int hook_config_write(struct p2p_pci_dev *dev, unsigned int off, const void *data,
			     size_t len)
{
	struct p2p_vfio_user_client *c = p2p_pci_dev_priv(dev);
	int ret = region_rw(c, VU_CONFIG_REGION, off, (void *)data, len, true);

	if (!ret)
		notices_settle(c);
	return ret;
}

static int hook_reset_done(struct p2p_pci_dev *dev)
{
	struct p2p_vfio_user_client *c = p2p_pci_dev_priv(dev);
	int ret = vu_call1(c, VFIO_USER_DEVICE_RESET, NULL, 0, NULL, 0, NULL);

	if (!ret)
		notices_settle(c);
	return ret;
}

static int hook_set_irqs(struct p2p_pci_dev *dev, uint32_t index, uint32_t start, uint32_t count,
			 const int32_t *fds)
{
	struct p2p_vfio_user_client *c = p2p_pci_dev_priv(dev);
	struct vfio_user_irq_set s = {
		.argsz = sizeof(s), .index = index,
		.flags = VFIO_USER_IRQ_SET_ACTION_TRIGGER,
	};
	int ret = 0;

	if (!count) {
		s.flags |= VFIO_USER_IRQ_SET_DATA_NONE;
		return vu_call1(c, VFIO_USER_DEVICE_SET_IRQS, &s, sizeof(s), NULL, 0, NULL);
	}
	/*
	 * One vector per message: EVENTFD with count 1 and its fd to assign,
	 * or with no fd (-1) to de-assign that vector alone.  (DATA_NONE with
	 * count 0 would release every vector of the index.)
	 */
	s.flags |= VFIO_USER_IRQ_SET_DATA_EVENTFD;
	s.count = 1;
	for (uint32_t i = 0; i < count && !ret; i++) {
		s.start = start + i;
		ret = vu_call1(c, VFIO_USER_DEVICE_SET_IRQS, &s, sizeof(s), &fds[i],
			       fds[i] >= 0 ? 1 : 0, NULL);
	}
	return ret;
}

/*
 * The file behind process memory [va, va + len) when one shared mapping
 * (MAP_SHARED of a memfd, a file, or shared anonymous memory) covers it
 * all: a new fd of it (the caller closes it) with *@off where @va is in
 * it; -1 for private or anonymous memory, or when the file cannot be had.
 * Looked up at every map (/proc/self/maps, then the mapping's file through
 * /proc/self/map_files, or, without the privilege that takes, an fd of
 * ours open on the same inode): nothing is cached, so a mapping replaced
 * since is never mistaken for the old one.  The file is checked to be
 * the mapping's (device and inode) before it is used.
 */
static int va_file(const void *va, uint64_t len, uint64_t *off)
{
	uintptr_t s = (uintptr_t)va, e = s + len;
	unsigned long lo, hi, ino, maj, min;
	unsigned long long pgoff;
	char line[512], perms[8], path[64];
	struct stat st;
	bool found = false;
	FILE *f;
	int fd = -1;

	if (e < s)
		return -1;
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %7s %llx %lx:%lx %lu", &lo, &hi, perms, &pgoff, &maj, &min,
			   &ino) != 7)
			continue;
		if (s < lo || s >= hi)
			continue;
		found = e <= hi && perms[3] == 's' && ino;
		break;
	}
	fclose(f);
	if (!found)
		return -1;
	*off = pgoff + (s - lo);
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", lo, hi);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		/* No CAP_CHECKPOINT_RESTORE: an fd of ours on the same inode, reopened. */
		struct dirent *de;
		DIR *d = opendir("/proc/self/fd");

		while (d && fd < 0 && (de = readdir(d))) {
			int n = atoi(de->d_name);

			if (de->d_name[0] == '.' || fstat(n, &st) || st.st_ino != ino ||
			    major(st.st_dev) != maj || minor(st.st_dev) != min || !S_ISREG(st.st_mode))
				continue;
			snprintf(path, sizeof(path), "/proc/self/fd/%d", n);
			fd = open(path, O_RDWR | O_CLOEXEC);
		}
		if (d)
			closedir(d);
		if (fd < 0)
			return -1;
	}
	if (fstat(fd, &st) || st.st_ino != ino || major(st.st_dev) != maj ||
	    minor(st.st_dev) != min || (uint64_t)st.st_size < *off + len) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * The IOAS mirror: each area one DMA_MAP, with the file behind it when it
 * has one (a memfd area, a dma-buf's memory, shared process memory), so
 * the server maps it; without one the server's DMA comes as DMA_READ/WRITE.
 */
static int dom_map(void *priv, const struct p2p_ioas_domain_area *a)
{
	struct p2p_vfio_user_client *c = priv;
	struct vfio_user_dma_map m = {
		.argsz = sizeof(m),
		.flags = ((a->prot & IOMMU_IOAS_MAP_READABLE) ? VFIO_USER_F_DMA_REGION_READ : 0) |
			 ((a->prot & IOMMU_IOAS_MAP_WRITEABLE) ? VFIO_USER_F_DMA_REGION_WRITE : 0),
		.addr = a->iova, .size = a->length,
	};
	int fd = a->fd, own = -1, ret;

	if (fd >= 0) {
		m.offset = a->fd_offset;
	} else if (a->kind == P2P_IOAS_DOMAIN_VA) {
		uint64_t off = 0;

		own = fd = va_file(a->va, a->length, &off);
		m.offset = off;
	}
	ret = vu_call1(c, VFIO_USER_DMA_MAP, &m, sizeof(m), fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0,
		       NULL);
	if (own >= 0)
		close(own);
	/* A removed device does no DMA: nothing to mirror. */
	return ret == -ENODEV ? 0 : ret;
}

static void dom_unmap(void *priv, uint64_t iova, uint64_t length)
{
	struct vfio_user_dma_unmap u = { .argsz = sizeof(u), .addr = iova, .size = length };

	if (!iova && !length)
		u.flags = VFIO_USER_F_DMA_UNMAP_ALL;
	vu_call1(priv, VFIO_USER_DMA_UNMAP, &u, sizeof(u), NULL, 0, NULL);
}

static const struct p2p_ioas_domain_ops dom_ops = { .map = dom_map, .unmap = dom_unmap };

static void dom_drop_locked(struct p2p_vfio_user_client *c)
{
	if (!c->dom)
		return;
	p2p_ioas_domain_detach(c->dom);
	c->dom = NULL;
	c->dom_ioas = NULL;
}

static int hook_ioas_attach(struct p2p_pci_dev *dev, struct p2p_ioas *ioas)
{
	struct p2p_vfio_user_client *c = p2p_pci_dev_priv(dev);
	int ret;

	pthread_mutex_lock(&c->dom_lock);
	dom_drop_locked(c);
	ret = p2p_ioas_domain_attach(ioas, &dom_ops, c, &c->dom);
	if (!ret)
		c->dom_ioas = ioas;
	else
		c->dom = NULL;
	pthread_mutex_unlock(&c->dom_lock);
	return ret;
}

static void hook_ioas_detach(struct p2p_pci_dev *dev, struct p2p_ioas *ioas)
{
	struct p2p_vfio_user_client *c = p2p_pci_dev_priv(dev);

	pthread_mutex_lock(&c->dom_lock);
	if (c->dom_ioas == ioas)
		dom_drop_locked(c);
	pthread_mutex_unlock(&c->dom_lock);
}

static void hook_release(struct p2p_pci_dev *dev)
{
	struct p2p_vfio_user_client *c = p2p_pci_dev_priv(dev);

	pthread_mutex_lock(&c->dom_lock);
	dom_drop_locked(c);
	pthread_mutex_unlock(&c->dom_lock);
	client_put(c);
}

static const struct p2p_pci_dev_ops client_pci_ops = {
	.bar_rw = hook_bar_rw,
	.release = hook_release,
	.config_write = hook_config_write,
	.reset_done = hook_reset_done,
	.ioas_attach = hook_ioas_attach,
	.ioas_detach = hook_ioas_detach,
	.set_irqs = hook_set_irqs,
};

/* ---------------------------------------------------------------------- */
/* Exports (the p2pbuf extension)                                          */

static int exp_map(struct p2p_attachment *attach, struct p2p_sgt **out)
{
	struct p2p_dmabuf *buf = p2p_attachment_dmabuf(attach);
	unsigned int n;
	const struct p2p_phys_range *r = p2p_dmabuf_ranges(buf, &n);
	struct p2p_sgt *sgt;

	if (p2p_dmabuf_status(buf) != P2P_DMABUF_OK)
		return -ENODEV;
	sgt = malloc(sizeof(*sgt) + n * sizeof(sgt->ents[0]));
	if (!sgt)
		return -ENOMEM;
	sgt->nents = n;
	memcpy(sgt->ents, r, n * sizeof(*r));
	*out = sgt;
	return 0;
}

static void exp_unmap(struct p2p_attachment *attach, struct p2p_sgt *sgt)
{
	(void)attach;
	free(sgt);
}

static int exp_iommufd_map(struct p2p_attachment *attach, struct p2p_phys_range *out)
{
	struct p2p_dmabuf *buf = p2p_attachment_dmabuf(attach);
	unsigned int n;
	const struct p2p_phys_range *r = p2p_dmabuf_ranges(buf, &n);

	if (n != 1)
		return -EOPNOTSUPP;
	if (p2p_dmabuf_status(buf) != P2P_DMABUF_OK)
		return -ENODEV;
	*out = r[0];
	return 0;
}

static int exp_mmap(struct p2p_dmabuf *buf, uint64_t offset, uint64_t length, int prot, int flags)
{
	(void)buf;
	(void)offset;
	(void)length;
	if ((flags & MAP_TYPE) == MAP_PRIVATE || (prot & ~(PROT_READ | PROT_WRITE)))
		return -EINVAL;
	return 0;
}

/*
 * DMABUF_CLOSE without waiting for its reply (VFIO_USER_F_NO_REPLY): the
 * last reference of an export can go on any thread, the worker included
 * (serve_revoke() drops one), and the server carries a close out only
 * after a revoke of the device in progress (it takes the device's dma-buf
 * lock); a worker waiting for that reply holds up the next notice of the
 * same revoke, whose ack the revoke waits for.  The server runs the
 * client's commands in order, so a later command sees the export closed.
 */
static void vu_post_close(struct p2p_vfio_user_client *c, const struct vfio_user_p2p_dmabuf_close *cl)
{
	struct vfio_user_header hdr = {
		.cmd = VFIO_USER_P2P_DMABUF_CLOSE,
		.flags = VFIO_USER_F_TYPE_COMMAND | VFIO_USER_F_NO_REPLY,
	};
	struct iovec iov = { .iov_base = (void *)cl, .iov_len = sizeof(*cl) };

	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	hdr.msg_id = c->next_id++;
	pthread_mutex_unlock(&c->lock);
	if (send_msg(c, &hdr, &iov, 1, NULL, 0)) {
		pthread_mutex_lock(&c->lock);
		mark_dead_locked(c);
		pthread_mutex_unlock(&c->lock);
	}
}

static void exp_release(struct p2p_dmabuf *buf)
{
	struct vu_export *e = p2p_dmabuf_priv(buf);
	struct p2p_vfio_user_client *c = e->c;
	struct vfio_user_p2p_dmabuf_close cl = { .argsz = sizeof(cl), .export_id = e->id };
	bool tell;

	pthread_mutex_lock(&c->lock);
	list_del_init(&e->node);
	tell = !c->dead && e->id != UINT64_MAX;
	pthread_mutex_unlock(&c->lock);
	if (tell)
		vu_post_close(c, &cl);
	if (c->token_conn) {
		/* Its one export is gone: so is the connection (its threads drop theirs). */
		pthread_mutex_lock(&c->lock);
		mark_dead_locked(c);
		pthread_mutex_unlock(&c->lock);
	}
	p2p_mem_put(e->mem);
	free(e);
	client_put(c);
}

static const struct p2p_dmabuf_ops exp_ops = {
	.map = exp_map,
	.unmap = exp_unmap,
	.mmap = exp_mmap,
	.release = exp_release,
	.iommufd_map = exp_iommufd_map,
};

/*
 * The local dma-buf of an export reply @r (struct vfio_user_p2p_dmabuf with
 * @nr ranges, 0: as many as it says; the memory is fds[0]), with @token_fd
 * (taken over on success; -1: a new token) as its file's token.  Return:
 * 0 with *@out holding one reference, or -errno (the export closed).
 */
static int export_local(struct p2p_vfio_user_client *c, const struct vu_msg *r, uint32_t nr,
			const char *name, uint32_t open_flags, int token_fd,
			struct p2p_dmabuf **out)
{
	struct vfio_user_p2p_dmabuf rep;
	struct p2p_phys_range *pr = NULL;
	struct vu_export *e = NULL;
	struct p2p_dmabuf *buf;
	uint64_t lo = UINT64_MAX, hi = 0;
	uint32_t dead = VFIO_USER_P2P_DMABUF_F_REVOKED | VFIO_USER_P2P_DMABUF_F_FOR_GOOD;
	int ret = -EPROTO, memfd;

	if (r->size < sizeof(r->hdr) + sizeof(rep))
		return -EPROTO;
	memcpy(&rep, r->buf + sizeof(r->hdr), sizeof(rep));
	/* No memory only for an export revoked for good before we came (DMABUF_GET). */
	if (r->nr_fds < 1 && (!c->token_conn || (rep.flags & dead) != dead))
		return -EPROTO;
	if (!nr)
		nr = rep.nr_ranges;
	if (!rep.nr_ranges || rep.nr_ranges != nr || nr > 1024 ||
	    r->size - sizeof(r->hdr) - sizeof(rep) < rep.nr_ranges * sizeof(rep.ranges[0]))
		return -EPROTO;
	pr = calloc(nr, sizeof(*pr));
	e = calloc(1, sizeof(*e));
	if (!pr || !e) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < nr; i++) {
		struct vfio_user_p2p_dmabuf_range rg;

		memcpy(&rg, r->buf + sizeof(r->hdr) + sizeof(rep) + i * sizeof(rg), sizeof(rg));
		if (!rg.length || rg.fd_offset + rg.length < rg.fd_offset)
			goto out;
		lo = MIN(lo, rg.fd_offset);
		hi = MAX(hi, rg.fd_offset + rg.length);
		pr[i].offset = rg.fd_offset;
		pr[i].length = rg.length;
	}
	lo &= ~(uint64_t)P2P_PAGE_MASK;
	hi = ALIGN_UP(hi, P2P_PAGE_SIZE);
	if (r->nr_fds >= 1) {
		ret = p2p_mem_create_from_fd(r->fds[0], lo, hi - lo, 0, &e->mem);
	} else {
		/* Dead from the start, never mapped: empty memory of its size stands in. */
		memfd = memfd_create("p2pbuf-dead-export", MFD_CLOEXEC);
		ret = memfd < 0 ? -errno : ftruncate(memfd, (off_t)hi) ? -errno : 0;
		if (!ret)
			ret = p2p_mem_create_from_fd(memfd, lo, hi - lo, 0, &e->mem);
		if (memfd >= 0)
			close(memfd);
	}
	if (ret)
		goto out;
	for (uint32_t i = 0; i < nr; i++) {
		pr[i].mem = e->mem;
		pr[i].offset -= lo;
	}
	e->c = c;
	e->id = rep.export_id;
	atomic_fetch_add(&c->refs, 1);
	struct p2p_dmabuf_export_info info = {
		.argsz = sizeof(info), .flags = P2P_EXPORT_OPEN_FLAGS, .name = name,
		.ops = &exp_ops, .priv = e, .nr_ranges = nr, .ranges = pr,
		.open_flags = open_flags,
	};

	int state = !(rep.flags & VFIO_USER_P2P_DMABUF_F_REVOKED)  ? P2P_DMABUF_OK :
		    !(rep.flags & VFIO_USER_P2P_DMABUF_F_FOR_GOOD) ? P2P_DMABUF_TEMP_REVOKED :
								     P2P_DMABUF_PERM_REVOKED;

	if (c->token_conn) {
		/*
		 * A token connection (DMABUF_GET): the state to start in is the
		 * latest notice's if one came before the export is listed, else
		 * the reply's; for good is final either way.  vu_resolve() says
		 * why that is the server's state.  From here until it is listed
		 * the worker holds the notices that come (tok_building).
		 */
		pthread_mutex_lock(&c->lock);
		c->tok_building = true;
		if (c->tok_state >= 0 && c->tok_id == rep.export_id &&
		    state != P2P_DMABUF_PERM_REVOKED)
			state = c->tok_state;
		c->tok_state = -1;
		pthread_mutex_unlock(&c->lock);
	}
	if (state == P2P_DMABUF_TEMP_REVOKED)
		info.flags |= P2P_EXPORT_REVOKED;
	else if (state == P2P_DMABUF_PERM_REVOKED)
		info.flags |= DMABUF_EXPORT_PERM_REVOKED;
	list_init(&e->node);
	ret = dmabuf_export_token(&info, token_fd, &buf);
	if (ret) {
		/* The caller lets the server's export go (DMABUF_CLOSE, or the connection's end). */
		pthread_mutex_lock(&c->lock);
		c->tok_building = false;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		p2p_mem_put(e->mem);
		client_put(c);
		goto out;
	}
	e->buf = buf;
	/*
	 * Listed: the worker applies the next notice to it.  It starts in its
	 * state rather than being revoked here: the resolver runs under the
	 * file layer's resolve_lock, below resv.
	 */
	pthread_mutex_lock(&c->lock);
	list_add_tail(&e->node, &c->exports);
	c->tok_building = false;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	e = NULL;
	*out = buf;
out:
	free(e);
	free(pr);
	return ret;
}

P2P_API int p2p_vfio_user_dmabuf_export(struct p2p_vfio_user_client *c, uint32_t bar,
					const struct vfio_region_dma_range *ranges, uint32_t nr,
					uint32_t open_flags)
{
	struct vfio_user_device_feature f = { .flags = VFIO_USER_DEVICE_FEATURE_GET |
						       VFIO_DEVICE_FEATURE_DMA_BUF };
	struct vfio_device_feature_dma_buf d = { .region_index = bar, .open_flags = open_flags,
						 .nr_ranges = nr };
	struct p2p_dmabuf *buf;
	struct vu_msg r;
	char name[64];
	int ret, tok;

	if (!c || (!ranges && nr) || nr > 1024)
		return -EINVAL;
	if (!vu_p2p(c))
		return -EOPNOTSUPP;
	f.argsz = (uint32_t)(sizeof(struct vfio_user_p2p_dmabuf) +
			     nr * sizeof(struct vfio_user_p2p_dmabuf_range));
	struct iovec iov[3] = { { &f, sizeof(f) }, { &d, sizeof(d) },
				{ (void *)ranges, nr * sizeof(*ranges) } };

	ret = vu_call(c, VFIO_USER_DEVICE_FEATURE, iov, nr ? 3 : 2, NULL, 0, &r);
	if (ret)
		return ret;
	/* fds[1]: the export's token, our file's token (what a program passes on is the export). */
	ret = -EPROTO;
	if (r.nr_fds != 2)
		goto out;
	tok = r.fds[1];
	snprintf(name, sizeof(name), "%s/bar%u@vfio-user", p2p_pci_dev_name(c->pdev), bar);
	ret = export_local(c, &r, nr, name, open_flags, tok, &buf);
	if (ret)
		goto out;
	r.fds[1] = -1; /* the file's now */
	ret = p2p_dmabuf_fd_install(buf, (int)(open_flags & O_CLOEXEC));
	p2p_dmabuf_put(buf); /* the fd holds the buffer (or it goes now, on an error) */
	vu_msg_release(&r);
	return ret;
out:
	/* The server made an export that we could not take: let it go. */
	if (r.size - sizeof(r.hdr) >= sizeof(struct vfio_user_p2p_dmabuf)) {
		struct vfio_user_p2p_dmabuf_close cl = { .argsz = sizeof(cl) };
		struct vfio_user_p2p_dmabuf rep;

		memcpy(&rep, r.buf + sizeof(r.hdr), sizeof(rep));
		cl.export_id = rep.export_id;
		if (rep.export_id)
			vu_post_close(c, &cl);
	}
	vu_msg_release(&r);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Connect                                                                 */

static int negotiate(struct p2p_vfio_user_client *c, bool want_p2p, bool want_twin)
{
	char json[320];
	struct vfio_user_version v = { .major = VFIO_USER_MAJOR, .minor = VFIO_USER_MINOR };
	struct json_object *root, *caps, *o, *p2p, *twin;
	uint32_t max_fds, max_xfer;
	bool use_p2p = false;
	int twin_idx = -1;
	struct vu_msg r;
	int ret, n;

	n = snprintf(json, sizeof(json),
		     "{\"capabilities\":{\"max_msg_fds\":%u,\"max_data_xfer_size\":%u%s%s}}",
		     VU_MAX_FDS, VU_OUR_XFER,
		     want_twin ? ",\"twin_socket\":{\"supported\":true}" : "",
		     want_p2p ? ",\"p2pbuf\":{\"dmabuf\":1,\"revoke\":1}" : "");
	struct iovec iov[2] = { { &v, sizeof(v) }, { json, (size_t)n + 1 } };

	ret = vu_call(c, VFIO_USER_VERSION, iov, 2, NULL, 0, &r);
	if (ret)
		return ret;
	ret = -EPROTO;
	if (r.size < sizeof(r.hdr) + sizeof(v))
		goto out;
	memcpy(&v, r.buf + sizeof(r.hdr), sizeof(v));
	if (v.major != VFIO_USER_MAJOR)
		goto out;
	max_fds = VFIO_USER_DEFAULT_MAX_FDS;
	max_xfer = VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE;
	ret = 0;
	if (r.size > sizeof(r.hdr) + sizeof(v)) {
		size_t jl = r.size - sizeof(r.hdr) - sizeof(v);
		char *js = strndup((char *)r.buf + sizeof(r.hdr) + sizeof(v), jl);

		root = js ? json_tokener_parse(js) : NULL;
		free(js);
		if (root && json_object_object_get_ex(root, VFIO_USER_CAP, &caps)) {
			if (json_object_object_get_ex(caps, VFIO_USER_CAP_MAX_FDS, &o))
				max_fds = (uint32_t)json_object_get_int64(o);
			if (json_object_object_get_ex(caps, VFIO_USER_CAP_MAX_DATA_XFER_SIZE, &o))
				max_xfer = (uint32_t)json_object_get_int64(o);
			if (want_p2p && json_object_object_get_ex(caps, VFIO_USER_CAP_P2PBUF, &p2p) &&
			    json_object_object_get_ex(p2p, VFIO_USER_CAP_P2PBUF_DMABUF, &o) &&
			    json_object_get_int(o) == 1 &&
			    json_object_object_get_ex(p2p, VFIO_USER_CAP_P2PBUF_REVOKE, &o) &&
			    json_object_get_int(o) == 1)
				use_p2p = true;
			/*
			 * twin_socket: supported with a valid fd_index, or the
			 * reply is inconsistent and the connection is dropped
			 * (the specification); not supported: one socket.
			 */
			if (want_twin && json_object_object_get_ex(caps, VFIO_USER_CAP_TWIN_SOCKET, &twin) &&
			    json_object_object_get_ex(twin, VFIO_USER_CAP_TWIN_SUPPORTED, &o) &&
			    json_object_get_boolean(o)) {
				int64_t idx = -1;

				if (json_object_object_get_ex(twin, VFIO_USER_CAP_TWIN_FD_INDEX, &o) &&
				    json_object_is_type(o, json_type_int))
					idx = json_object_get_int64(o);
				twin_idx = idx >= 0 && idx < (int64_t)r.nr_fds ? (int)idx : -2;
			}
		}
		json_object_put(root);
	}
	if (twin_idx == -2) {
		ret = -EPROTO;
		goto out;
	}
	if (twin_idx >= 0) {
		/* Ours now; the reader starts before anything can need it. */
		pthread_mutex_lock(&c->lock); /* mark_dead_locked() reads it */
		c->twin = r.fds[twin_idx];
		pthread_mutex_unlock(&c->lock);
		r.fds[twin_idx] = r.fds[--r.nr_fds];
		if (pthread_create(&c->twin_reader, NULL, twin_main, c)) {
			ret = -EAGAIN;
			goto out;
		}
		c->twin_thread = true;
	}
	/* Never more than we said we accept, never less than a page. */
	__atomic_store_n(&c->max_fds, max_fds, __ATOMIC_RELAXED);
	__atomic_store_n(&c->max_xfer, MAX(MIN(max_xfer, VU_OUR_XFER), 4096u), __ATOMIC_RELAXED);
	__atomic_store_n(&c->p2p, use_p2p, __ATOMIC_RELEASE);
out:
	vu_msg_release(&r);
	return ret;
}

/* GET_REGION_INFO with the argsz retry; the fd is kept. */
static int region_info(struct p2p_vfio_user_client *c, uint32_t index)
{
	struct vu_region *reg = &c->regions[index];
	uint32_t argsz = sizeof(struct vfio_user_region_info);
	struct vfio_user_region_info ri;
	struct vu_msg r;
	int ret;

	for (int attempt = 0; attempt < 2; attempt++) {
		struct vfio_user_region_info q = { .argsz = argsz, .index = index };

		ret = vu_call1(c, VFIO_USER_DEVICE_GET_REGION_INFO, &q, sizeof(q), NULL, 0, &r);
		if (ret)
			return ret;
		if (r.size < sizeof(r.hdr) + sizeof(ri)) {
			vu_msg_release(&r);
			return -EPROTO;
		}
		memcpy(&ri, r.buf + sizeof(r.hdr), sizeof(ri));
		if (ri.argsz <= argsz || attempt)
			break;
		argsz = ri.argsz; /* the capabilities did not fit: ask again */
		vu_msg_release(&r);
		if (argsz > 65536)
			return -EPROTO;
	}
	reg->flags = ri.flags;
	reg->size = ri.size;
	reg->offset = ri.offset;
	reg->mmap_all = false;
	if ((ri.flags & VFIO_USER_REGION_INFO_FLAG_MMAP) && r.nr_fds >= 1) {
		reg->fd = r.fds[0];
		r.fds[0] = -1;
		reg->mmap_all = true;
		/* A sparse mmap capability: mappable only if one area covers it all. */
		size_t plen = r.size - sizeof(r.hdr);
		uint32_t off = (ri.flags & VFIO_USER_REGION_INFO_FLAG_CAPS) ? ri.cap_offset : 0;

		for (int hops = 0; off && hops < 16; hops++) {
			struct vfio_user_cap_header h;

			if (off < sizeof(ri) || off > plen || plen - off < sizeof(h))
				break;
			memcpy(&h, r.buf + sizeof(r.hdr) + off, sizeof(h));
			if (h.id == VFIO_USER_REGION_INFO_CAP_SPARSE_MMAP) {
				struct vfio_user_region_cap_sparse_mmap sp;
				struct vfio_user_sparse_mmap_area a = { 0, 0 };

				reg->mmap_all = false;
				if (plen - off < sizeof(sp))
					break;
				memcpy(&sp, r.buf + sizeof(r.hdr) + off, sizeof(sp));
				if (sp.nr_areas >= 1 && plen - off - sizeof(sp) >= sizeof(a))
					memcpy(&a, r.buf + sizeof(r.hdr) + off + sizeof(sp), sizeof(a));
				reg->mmap_all = sp.nr_areas == 1 && a.offset == 0 && a.size >= ri.size;
			}
			off = h.next;
		}
	}
	vu_msg_release(&r);
	return 0;
}

static int build_function(struct p2p_vfio_user_client *c, const char *path,
			  const struct p2p_vfio_user_connect_info *ci)
{
	static atomic_uint next_local = 0;
	struct vfio_user_device_info di = { .argsz = sizeof(di) };
	struct p2p_pci_dev_info info = { .argsz = sizeof(info) };
	struct p2p_pci_dev *pdev = NULL;
	uint8_t cfg[64];
	char name[32];
	struct vu_msg r;
	int ret;

	ret = vu_call1(c, VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &r);
	if (ret)
		return ret;
	if (r.size < sizeof(r.hdr) + sizeof(di)) {
		vu_msg_release(&r);
		return -EPROTO;
	}
	memcpy(&di, r.buf + sizeof(r.hdr), sizeof(di));
	vu_msg_release(&r);
	if (!(di.flags & VFIO_USER_DEVICE_FLAGS_PCI) || di.num_regions <= VU_CONFIG_REGION)
		return -EINVAL;
	c->dev_flags = di.flags;
	c->nr_regions = MIN(di.num_regions, (uint32_t)VU_MAX_REGIONS);
	for (uint32_t i = 0; i <= VU_CONFIG_REGION; i++) {
		if (i == 6)
			continue; /* the ROM: not modelled */
		ret = region_info(c, i);
		if (ret)
			return ret;
	}
	ret = region_rw(c, VU_CONFIG_REGION, 0, cfg, sizeof(cfg), false);
	if (ret)
		return ret;

	unsigned int n = atomic_fetch_add(&next_local, 1);
	const char *base = strrchr(path, '/');
	unsigned int d0, b, s, f;
	char ch;

	base = base ? base + 1 : path;
	if (ci->name)
		snprintf(name, sizeof(name), "%s", ci->name);
	else if (sscanf(base, "%4x:%2x:%2x.%1x%c", &d0, &b, &s, &f, &ch) == 4)
		snprintf(name, sizeof(name), "%s", base);
	else
		snprintf(name, sizeof(name), "0000:7f:%02x.0", n % 32);
	info.name = name;
	info.vendor_id = (uint16_t)(cfg[0] | cfg[1] << 8);
	info.device_id = (uint16_t)(cfg[2] | cfg[3] << 8);
	info.class_code = (uint32_t)(cfg[9] | cfg[10] << 8 | cfg[11] << 16);
	info.group = ci->group ? ci->group : 900 + n;
	info.flags = (di.flags & VFIO_USER_DEVICE_FLAGS_RESET) ? 0 : P2P_PCI_NO_FLR;
	info.ops = &client_pci_ops;
	info.priv = c;
	for (int i = 0; i < 6; i++) {
		struct vu_region *reg = &c->regions[i];
		uint32_t bar = (uint32_t)(cfg[0x10 + 4 * i] | cfg[0x11 + 4 * i] << 8 |
					  cfg[0x12 + 4 * i] << 16 | (uint32_t)cfg[0x13 + 4 * i] << 24);

		if (!reg->size)
			continue;
		if (reg->size & (reg->size - 1)) {
			ret = -EPROTO;
			goto out;
		}
		info.bars[i].size = reg->size;
		if (bar & 1) {
			info.bars[i].flags = P2P_BAR_IO | P2P_BAR_TRAP;
			continue;
		}
		if (((bar >> 1) & 3) == 2)
			info.bars[i].flags |= P2P_BAR_MEM64;
		if (bar & 8)
			info.bars[i].flags |= P2P_BAR_PREFETCH;
		if (!(ci->flags & P2P_VFIO_USER_TRAP_BARS) && reg->fd >= 0 && reg->mmap_all &&
		    reg->size >= P2P_PAGE_SIZE &&
		    !(reg->offset & P2P_PAGE_MASK)) {
			ret = p2p_mem_create_from_fd(reg->fd, reg->offset, reg->size, 0,
						     &info.bar_mems[i]);
			if (ret)
				goto out;
		} else {
			info.bars[i].flags |= P2P_BAR_TRAP;
		}
		if (info.bars[i].flags & P2P_BAR_MEM64)
			i++; /* the upper half */
	}
	atomic_fetch_add(&c->refs, 1); /* the function's */
	ret = p2p_pci_dev_create(&info, &pdev);
	if (ret) {
		atomic_fetch_sub(&c->refs, 1);
	} else {
		int early;

		pthread_mutex_lock(&c->lock);
		c->pdev = pdev;
		early = c->early_regions;
		pthread_mutex_unlock(&c->lock);
		/* A revoke notice came while the function was being built. */
		if (early != P2P_PCI_BACKEND_OK)
			p2p_pci_dev_backend_state(pdev, (enum p2p_pci_backend_state)early);
	}
out:
	for (int i = 0; i < 6; i++)
		p2p_mem_put(info.bar_mems[i]);
	return ret;
}

static void stop_threads(struct p2p_vfio_user_client *c)
{
	pthread_mutex_lock(&c->lock);
	mark_dead_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (c->threads) {
		pthread_join(c->reader, NULL);
		pthread_join(c->worker, NULL);
		c->threads = false;
	}
	if (c->twin_thread) {
		pthread_join(c->twin_reader, NULL);
		c->twin_thread = false;
	}
}

/*
 * A client on connected socket @sock (taken over, closed on failure) with
 * its reader and worker running.  A token connection's threads are
 * detached, each holding a reference.
 */
static int client_new(int sock, uint32_t timeout_ms, bool token_conn,
		      struct p2p_vfio_user_client **out)
{
	struct p2p_vfio_user_client *c;
	pthread_condattr_t ca;

	c = calloc(1, sizeof(*c));
	if (!c) {
		close(sock);
		return -ENOMEM;
	}
	atomic_init(&c->refs, 1);
	for (int i = 0; i < VU_MAX_REGIONS; i++)
		c->regions[i].fd = -1;
	c->twin = -1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->send_lock, NULL);
	pthread_mutex_init(&c->dom_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_cond_init(&c->wcond, &ca);
	pthread_condattr_destroy(&ca);
	list_init(&c->waiters);
	list_init(&c->cmds);
	list_init(&c->exports);
	vu_rbuf_init(&c->rb);
	c->timeout_ms = timeout_ms ? timeout_ms : VU_DEFAULT_TIMEOUT_MS;
	c->max_xfer = VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE;
	c->sock = sock;
	c->token_conn = token_conn;
	c->tok_state = -1;
	if (token_conn)
		atomic_fetch_add(&c->refs, 1); /* the reader's */
	if (pthread_create(&c->reader, NULL, reader_main, c)) {
		if (token_conn)
			atomic_fetch_sub(&c->refs, 1);
		client_put(c);
		return -EAGAIN;
	}
	if (token_conn) {
		pthread_detach(c->reader);
		atomic_fetch_add(&c->refs, 1); /* the worker's */
	}
	if (pthread_create(&c->worker, NULL, worker_main, c)) {
		if (token_conn)
			atomic_fetch_sub(&c->refs, 1);
		pthread_mutex_lock(&c->lock);
		mark_dead_locked(c);
		pthread_mutex_unlock(&c->lock);
		if (!token_conn)
			pthread_join(c->reader, NULL);
		client_put(c);
		return -EAGAIN;
	}
	if (token_conn)
		pthread_detach(c->worker);
	else
		c->threads = true;
	*out = c;
	return 0;
}

P2P_API int p2p_vfio_user_connect(const char *socket_path,
				  const struct p2p_vfio_user_connect_info *info,
				  struct p2p_vfio_user_client **out)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci) };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct p2p_vfio_user_client *c;
	int ret, sock;

	if (!socket_path || !out || strlen(socket_path) >= sizeof(sa.sun_path))
		return -EINVAL;
	if (info) {
		if (info->argsz < sizeof(ci) ||
		    (info->flags & ~(P2P_VFIO_USER_NO_P2PBUF | P2P_VFIO_USER_TRAP_BARS |
				     P2P_VFIO_USER_NO_TWIN)))
			return -EINVAL;
		ci = *info;
	}
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	strcpy(sa.sun_path, socket_path);
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		close(sock);
		return ret;
	}
	ret = client_new(sock, ci.timeout_ms, false, &c);
	if (ret)
		return ret;
	ret = negotiate(c, !(ci.flags & P2P_VFIO_USER_NO_P2PBUF), !(ci.flags & P2P_VFIO_USER_NO_TWIN));
	if (!ret)
		ret = build_function(c, socket_path, &ci);
	if (ret) {
		stop_threads(c);
		client_put(c);
		return ret;
	}
	*out = c;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Tokens: an exported dma-buf's fd in another process                     */

/*
 * Is @fd an export's token?  Its peer's abstract name says so
 * (VFIO_USER_P2P_TOKEN_PREFIX); getpeername(2) writes nothing to it.
 */
static bool is_token(int fd, const struct stat *st)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	const size_t pre = sizeof(VFIO_USER_P2P_TOKEN_PREFIX) - 1;

	if (!S_ISSOCK(st->st_mode))
		return false;
	memset(&sa, 0, sizeof(sa));
	if (getpeername(fd, (struct sockaddr *)&sa, &len) || sa.sun_family != AF_UNIX)
		return false;
	return len >= offsetof(struct sockaddr_un, sun_path) + 1 + pre && !sa.sun_path[0] &&
	       !memcmp(sa.sun_path + 1, VFIO_USER_P2P_TOKEN_PREFIX, pre);
}

/* The attach datagram on token @fd: a new stream socket pair, one end to the server. */
static int token_attach(int fd, int *sock)
{
	struct vfio_user_p2p_token_attach a = { .magic = VFIO_USER_P2P_TOKEN_MAGIC,
						.version = VFIO_USER_P2P_TOKEN_VERSION };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = &a, .iov_len = sizeof(a) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	int sv[2];
	ssize_t n;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -errno;
	memset(u.buf, 0, sizeof(u.buf));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &sv[1], sizeof(int));
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	close(sv[1]);
	if (n != (ssize_t)sizeof(a)) {
		close(sv[0]);
		/* The server let the export go (EPIPE, ECONNREFUSED) or is gone: no device. */
		return -ENODEV;
	}
	*sock = sv[0];
	return 0;
}

/*
 * The fd resolver (struct fd_resolver_ops): a token received from another
 * process becomes a local dma-buf here, exactly as our own exports: attach
 * to the server through the token, DMABUF_GET the export on that
 * connection (which then carries its revoke notices and our acks), and a
 * file whose token is a dup of @fd.
 *
 * The buffer ends in the server's state whatever the interleaving.  The
 * server attaches this connection's importer to the export (T0), then reads
 * the export's state for the reply's flags (T1), then sends the reply.
 * Every state change from T0 on sends this connection a notice (revoke:
 * REVOKED, plus FOR_GOOD; restore: 0), from under the buffer's resv, so in
 * the order of the changes; all go over the one socket (no twin here), the
 * reader hands them to the one worker in that order, and the last one says
 * the state after the last change.  A change before T0 sent us nothing but
 * is in the reply's state; one between T0 and T1 is in both.  So: the
 * latest notice's state if any came, else the reply's.  Notices may come
 * before the reply or after it, and the worker may see one before
 * export_local() listed the buffer: serve_revoke() then records it on the
 * connection (tok_state: it has exactly one export, the latest wins) and
 * acks a revoke at once, truly, since no buffer of ours maps the memory
 * yet.  export_local() marks the connection building (tok_building), starts
 * the buffer in the recorded state if any, else the reply's, and lists it;
 * meanwhile the worker waits with the next notice, which it applies to the
 * listed buffer after.  So every notice is either in the start state or
 * applied after it, in order, and a revoke notice acked before the buffer
 * existed makes it start revoked.  Revoked for good (the reply's FOR_GOOD,
 * or a FOR_GOOD notice) is final, as in the core: P2P_DMABUF_PERM_REVOKED.
 * (A temporary revoke that the server's core turns into one for good sends
 * no second notice: such a buffer stays temporarily revoked here.)
 */
static int vu_resolve(int fd, const struct stat *st, struct p2p_file **out)
{
	struct vfio_user_p2p_dmabuf_get g = { .argsz = sizeof(struct vfio_user_p2p_dmabuf) };
	struct vfio_user_p2p_dmabuf rep = { 0 };
	struct p2p_vfio_user_client *c;
	struct p2p_dmabuf *buf;
	struct vu_msg r;
	int ret, sock = -1, tok;
	char name[64];

	(void)st; /* is_token() said yes */
	ret = token_attach(fd, &sock);
	if (ret)
		return ret;
	ret = client_new(sock, 0, true, &c);
	if (ret)
		return ret;
	ret = negotiate(c, true, false); /* no twin: its threads are detached */
	if (!ret && !vu_p2p(c))
		ret = -EPROTO;
	if (ret)
		goto out;
	for (int tries = 0;; tries++) {
		ret = vu_call1(c, VFIO_USER_P2P_DMABUF_GET, &g, sizeof(g), NULL, 0, &r);
		if (ret)
			goto out;
		memcpy(&rep, r.buf + sizeof(r.hdr), MIN(sizeof(rep), r.size - sizeof(r.hdr)));
		if (tries || r.size - sizeof(r.hdr) < sizeof(rep) || r.nr_fds || rep.argsz <= g.argsz)
			break;
		g.argsz = rep.argsz; /* argsz retry: more ranges than one */
		vu_msg_release(&r);
	}
	tok = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (tok < 0) {
		ret = -errno;
		vu_msg_release(&r);
		goto out;
	}
	snprintf(name, sizeof(name), "bar%u@vfio-user-token", rep.region_index);
	ret = export_local(c, &r, 0, name,
			   (rep.flags & VFIO_USER_P2P_DMABUF_F_WRITE) ? O_RDWR : O_RDONLY, tok, &buf);
	vu_msg_release(&r);
	if (ret) {
		close(tok);
		goto out;
	}
	*out = buf->file;
out:
	if (ret) {
		pthread_mutex_lock(&c->lock);
		mark_dead_locked(c);
		pthread_mutex_unlock(&c->lock);
	}
	client_put(c); /* the export holds the connection now */
	return ret;
}

static const struct fd_resolver_ops vu_resolver = {
	.kind = "dmabuf",
	.claims = is_token,
	.resolve = vu_resolve,
};

/* Any program linked with the library resolves tokens it receives. */
__attribute__((constructor)) static void vu_resolver_init(void)
{
	fd_resolver_register(&vu_resolver);
}

P2P_API struct p2p_pci_dev *p2p_vfio_user_client_pci(struct p2p_vfio_user_client *c)
{
	return c->pdev;
}

P2P_API bool p2p_vfio_user_client_p2pbuf(struct p2p_vfio_user_client *c)
{
	return vu_p2p(c);
}

P2P_API bool p2p_vfio_user_client_alive(struct p2p_vfio_user_client *c)
{
	bool alive;

	pthread_mutex_lock(&c->lock);
	alive = !c->dead;
	pthread_mutex_unlock(&c->lock);
	return alive;
}

P2P_API void p2p_vfio_user_disconnect(struct p2p_vfio_user_client *c)
{
	struct p2p_pci_dev *pdev;

	if (!c)
		return;
	stop_threads(c);
	pdev = c->pdev;
	client_put(c);
	p2p_pci_dev_put(pdev); /* its release drops the function's reference */
}
