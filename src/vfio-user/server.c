// SPDX-License-Identifier: MIT
/*
 * The vfio-user server: p2pbuf PCI functions served on Unix sockets.
 *
 * Model.  Each served function ("device") has the server's own open file
 * (so its state survives client reconnects), one iommufd context with one
 * IOAS attached to the function, a listening socket and an accept thread.
 * Every client gets its own p2p_vfio_device_open() of the function and two
 * threads: a reader that receives messages (commands go to a queue, replies
 * to the server's own commands wake their waiter) and a worker that runs the
 * commands in order.  Short commands (region access, the GET_*INFO) run on
 * the reader itself when nothing of the client is queued or running (two
 * wake-ups per request); meanwhile the worker reads if a reply is awaited
 * from the client (take_msg()).  Everything device-side goes through the public VFIO
 * and IOAS entries: p2p_vfio_device_ioctl()/pread()/pwrite(),
 * p2p_ioas_map_file()/unmap().
 *
 * Revocation (the p2pbuf extension).  Every dma-buf the server exports for a
 * client (feature 11), and a whole-BAR dma-buf per region fd it handed out,
 * gets a revocable importer of the server's; its invalidate callback (the
 * core's move-notify, called by every revoke trigger) sends the owning client
 * VFIO_USER_P2P_REVOKE and leaves a fence on the buffer that the ack signals
 * (the exporter's revoke batch waits for all of them together); the watchdog
 * disconnects a client that does not ack within the revoke timeout.  Its
 * restore callback sends the flags-0 notice when the buffer is usable again.
 *
 * DMA_MAP without an fd maps a callback area into the IOAS: the device's
 * accesses there call map_dma_rw(), which sends DMA_READ/DMA_WRITE.
 *
 * Locking: client->lock protects the queue, the pending waits, the dead
 * flag and the read role (reading, inflight); client->send_lock serializes
 * writes on the socket; dev->lock the device's client list and map list;
 * srv->lock the device list.  None is held across a call into the core,
 * except send_lock (socket writes only) and srv->add_lock, the outermost,
 * which serializes finding or making a device in server_add()/add_fd()
 * (opening it is a call into the core, which never calls back into
 * anything that takes add_lock).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <p2pbuf/dmabuf.h>
#include <p2pbuf/iommu.h>
#include <p2pbuf/vfio.h>
#include <p2pbuf/vfio_user.h>

#include "msg.h"
#include "proto.h"

#define VU_SERVER_MAX_XFER VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE
#define VU_SERVER_MAX_MSG (VU_SERVER_MAX_XFER + 4096)
#define VU_SERVER_MAX_DMA_MAPS 1024u
#define VU_QUEUE_MAX 64
#define VU_NUM_IRQ_INDEX 8

struct vu_dev;
struct vu_client;

struct vu_map {
	struct vu_map *next;
	struct vu_client *owner;
	uint64_t addr, size;
	bool in_ioas; /* an IOAS area: the fd's memory, or (no fd) a callback area */
};

struct vu_export {
	struct vu_export *next;
	struct vu_client *client;
	uint64_t id;		/* VFIO_USER_P2P_EXPORT_REGIONS for a region watcher */
	uint32_t bar;
	int fd;			/* the server's dma-buf fd */
	struct p2p_dmabuf *buf;
	struct p2p_attachment *attach;
};

/*
 * An export's token (proto.h): the server's end of the socketpair whose
 * other end the client made its dma-buf fd.  It holds the export (a dup of
 * the server's dma-buf fd) until every copy of the client's end, in every
 * process, is closed: the token thread then sees POLLHUP and lets go.  An
 * attach datagram on it starts a connection born from it (c->born).
 */
struct vu_token {
	struct vu_token *next; /* srv->tokens, under tok_lock */
	atomic_uint refs;      /* srv->tokens' (until HUP), each connection born from it */
	struct vu_dev *dev;
	int sock;	/* the server's end */
	int buf_fd;	/* the hold: the server's dma-buf */
	uint64_t id;
	uint32_t region, open_flags, nr_ranges;
};

struct vu_pending {
	struct vu_pending *next;
	uint16_t msg_id;
	uint16_t cmd;
	bool done;
	int err;
	struct vu_msg reply;
	/*
	 * A notice nobody waits for on a thread (notify_revoke_async()): the
	 * reader signals @fence at the reply or the disconnect and frees the
	 * entry; the watchdog disconnects the client after @deadline.
	 */
	struct p2p_fence *fence;
	struct timespec deadline;
	bool expired;
};

struct vu_qent {
	struct vu_qent *next;
	struct vu_msg msg;
};

struct vu_client {
	struct vu_client *next; /* dev->clients */
	struct p2p_vfio_user_server *srv;
	struct vu_dev *dev;
	int sock;
	/*
	 * twin_socket mode: the server's commands (DMA_READ/WRITE, notices) and
	 * the client's replies to them go over @twin, read by @twin_reader.
	 * Set once by the worker (VERSION) under @lock, read with atomics.
	 */
	int twin;
	struct p2p_vfio_device *vdev;
	struct vu_token *born; /* started from this token (a reference), or NULL */
	pthread_t reader, twin_reader;
	bool has_twin_reader; /* worker-only */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vu_rbuf rb; /* c->sock's read-ahead: the read role's (reading) */
	struct vu_qent *qhead, **qtail;
	unsigned int qlen;
	struct vu_pending *pending;
	bool dead;		/* the reader stopped: no more commands, no more replies */
	bool reading;		/* a thread holds the read role (see take_msg()) */
	bool inflight;		/* a command runs (inline on the reader, or the worker's) */
	bool versioned;
	bool p2p_dmabuf, p2p_revoke;
	uint32_t peer_max_xfer;
	uint16_t next_id;

	pthread_mutex_t send_lock;

	/* worker-only state */
	struct vu_export *exports; /* also walked by invalidate: under lock */
	uint64_t next_export;
	bool watched[6];
	bool irq_set[VU_NUM_IRQ_INDEX];
	uint32_t num_regions;
};

struct vu_dev {
	struct vu_dev *next;
	struct p2p_vfio_user_server *srv;
	struct p2p_pci_dev *pdev;
	struct p2p_vfio_device *vdev; /* the server's own file */
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	int lfd;
	char *path;
	pthread_t acceptor;
	bool has_acceptor;
	int stop_pipe[2];

	pthread_mutex_t lock;
	struct vu_client *clients;
	unsigned int nr_clients;
	struct vu_map *maps;
	unsigned int nr_maps;
};

struct p2p_vfio_user_server {
	pthread_mutex_t lock;
	/* Serializes finding or making a device (server_add(), add_fd()); taken before lock. */
	pthread_mutex_t add_lock;
	pthread_cond_t cond; /* a client went away */
	/* The watchdog (revoke deadlines); wd_lock is a leaf lock. */
	pthread_mutex_t wd_lock;
	pthread_cond_t wd_cond; /* nr_async became non-zero, or wd_stop */
	atomic_uint nr_async;	/* notices waiting for their ack, every client */
	bool wd_stop;
	pthread_t watchdog;
	bool has_watchdog;
	struct vu_dev *devs;
	unsigned int nr_clients;
	/* Export tokens and the thread that watches them; tok_lock is a leaf lock. */
	pthread_mutex_t tok_lock;
	struct vu_token *tokens;
	unsigned int nr_tokens;
	uint64_t next_token;
	int tok_pipe[2];
	bool tok_stop;
	pthread_t tok_thread;
	bool has_tok_thread;
	uint32_t revoke_timeout_ms;
	uint32_t max_clients;
	bool stopping;
};

static int client_start(struct vu_dev *d, int fd, struct vu_token *born);

/* ---------------------------------------------------------------------- */
/* Sending                                                                 */

static inline int client_twin(struct vu_client *c)
{
	return __atomic_load_n(&c->twin, __ATOMIC_ACQUIRE);
}

static void client_kill(struct vu_client *c)
{
	int twin = client_twin(c);

	/* The readers see EOF and the worker tears everything down. */
	shutdown(c->sock, SHUT_RDWR);
	if (twin >= 0)
		shutdown(twin, SHUT_RDWR);
}

/* The socket the server's own commands go over: the twin socket, if negotiated. */
static inline int client_cmd_sock(struct vu_client *c)
{
	int twin = client_twin(c);

	return twin >= 0 ? twin : c->sock;
}

/* Send on @sock (c->sock, or the twin socket for the server's commands). */
static int client_sendv_on(struct vu_client *c, int sock, struct vfio_user_header *h,
			   const struct iovec *iov, int iovcnt, const int *fds,
			   unsigned int nr_fds)
{
	int ret;

	pthread_mutex_lock(&c->send_lock);
	ret = vu_msg_sendv(sock, h, iov, iovcnt, fds, nr_fds);
	pthread_mutex_unlock(&c->send_lock);
	if (ret)
		client_kill(c); /* a partial write leaves the stream unusable */
	return ret;
}

static int client_sendv(struct vu_client *c, struct vfio_user_header *h, const struct iovec *iov,
			int iovcnt, const int *fds, unsigned int nr_fds)
{
	return client_sendv_on(c, c->sock, h, iov, iovcnt, fds, nr_fds);
}

static int reply(struct vu_client *c, const struct vu_msg *req, const void *p, size_t len,
		 const int *fds, unsigned int nr_fds)
{
	struct vfio_user_header h = {
		.msg_id = req->hdr.msg_id,
		.cmd = req->hdr.cmd,
		.flags = VFIO_USER_F_TYPE_REPLY,
	};
	struct iovec iov = { .iov_base = (void *)p, .iov_len = len };

	if (req->hdr.flags & VFIO_USER_F_NO_REPLY)
		return 0;
	return client_sendv(c, &h, &iov, p ? 1 : 0, fds, nr_fds);
}

static int reply_err(struct vu_client *c, const struct vu_msg *req, int err)
{
	if (req->hdr.flags & VFIO_USER_F_NO_REPLY)
		return 0;
	pthread_mutex_lock(&c->send_lock);
	int ret = vu_send_error(c->sock, &req->hdr, err);
	pthread_mutex_unlock(&c->send_lock);
	if (ret)
		client_kill(c);
	return ret;
}

/*
 * Is a reply still awaited from the client?  A call's entry stays on the
 * list, done, from its reply until its thread runs again and takes it off:
 * that one is not awaited.  c->lock held.
 */
static bool reply_awaited_locked(const struct vu_client *c)
{
	for (const struct vu_pending *p = c->pending; p; p = p->next)
		if (!p->done)
			return true;
	return false;
}

/*
 * A reply is now awaited from the client: if nobody reads (the reader runs
 * a command inline, which may be what waits for it), the worker reads.
 */
static void pending_added_locked(struct vu_client *c)
{
	if (!c->reading && c->twin < 0)
		pthread_cond_broadcast(&c->cond);
}

/*
 * Send a command to the client and wait for its reply, at most @timeout_ms.
 * Return: 0 (reply in @out if non-NULL, else released), -ETIMEDOUT,
 * -ECONNRESET (client gone), the client's error, -errno of sending.
 */
static int client_call(struct vu_client *c, uint16_t cmd, const struct iovec *iov, int iovcnt,
		       uint32_t timeout_ms, struct vu_msg *out)
{
	struct vu_pending p = { .cmd = cmd };
	struct vfio_user_header h = { .cmd = cmd, .flags = VFIO_USER_F_TYPE_COMMAND };
	struct timespec dl;
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		return -ECONNRESET;
	}
	p.msg_id = h.msg_id = c->next_id++;
	p.next = c->pending;
	c->pending = &p;
	pending_added_locked(c);
	pthread_mutex_unlock(&c->lock);

	ret = client_sendv_on(c, client_cmd_sock(c), &h, iov, iovcnt, NULL, 0);

	vu_deadline_in(&dl, (uint64_t)timeout_ms * 1000000ull);
	pthread_mutex_lock(&c->lock);
	while (!ret && !p.done && !c->dead) {
		if (pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT && !p.done)
			ret = -ETIMEDOUT;
	}
	for (struct vu_pending **pp = &c->pending; *pp; pp = &(*pp)->next) {
		if (*pp == &p) {
			*pp = p.next;
			break;
		}
	}
	if (!ret && !p.done)
		ret = -ECONNRESET;
	pthread_mutex_unlock(&c->lock);
	if (!ret && p.err)
		ret = -p.err;
	if (!ret && out)
		*out = p.reply;
	else
		vu_msg_release(&p.reply);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Revocation notices                                                      */

static void notify_revoke(struct vu_client *c, uint64_t id, uint32_t flags)
{
	struct vfio_user_p2p_revoke r = { .argsz = sizeof(r), .flags = flags, .export_id = id };
	struct iovec iov = { .iov_base = &r, .iov_len = sizeof(r) };
	int ret;

	pthread_mutex_lock(&c->lock);
	bool want = c->p2p_revoke;
	pthread_mutex_unlock(&c->lock);
	if (!want)
		return;
	ret = client_call(c, VFIO_USER_P2P_REVOKE, &iov, 1, c->srv->revoke_timeout_ms, NULL);
	if (ret == -ETIMEDOUT || (ret && ret != -ECONNRESET))
		client_kill(c); /* what the server can enforce: it loses everything */
}

/* An async notice is over (acked, or the client is gone). */
static void async_done(struct p2p_vfio_user_server *srv, struct vu_pending *p)
{
	p2p_fence_signal(p->fence);
	p2p_fence_put(p->fence);
	vu_msg_release(&p->reply);
	free(p);
	atomic_fetch_sub(&srv->nr_async, 1);
}

/*
 * Send the notice and return: @fence (a reference, taken over) is signalled
 * when the client acks or goes away; the watchdog disconnects it at the
 * deadline.  Return: 0, or -errno with @fence untouched (not sent).
 */
static int notify_revoke_async(struct vu_client *c, uint64_t id, uint32_t flags,
			       struct p2p_fence *fence)
{
	struct p2p_vfio_user_server *srv = c->srv;
	struct vfio_user_p2p_revoke r = { .argsz = sizeof(r), .flags = flags, .export_id = id };
	struct iovec iov = { .iov_base = &r, .iov_len = sizeof(r) };
	struct vfio_user_header h = { .cmd = VFIO_USER_P2P_REVOKE,
				      .flags = VFIO_USER_F_TYPE_COMMAND };
	struct vu_pending *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->cmd = VFIO_USER_P2P_REVOKE;
	p->fence = fence;
	vu_deadline_in(&p->deadline, (uint64_t)srv->revoke_timeout_ms * 1000000ull);
	/* Only the leaf wd_lock: we run under the buffer's resv and the exporter's locks. */
	pthread_mutex_lock(&srv->wd_lock);
	atomic_fetch_add(&srv->nr_async, 1);
	pthread_cond_broadcast(&srv->wd_cond);
	pthread_mutex_unlock(&srv->wd_lock);
	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		/* Gone already: nothing of it can be waited for. */
		pthread_mutex_unlock(&c->lock);
		async_done(srv, p);
		return 0;
	}
	p->msg_id = h.msg_id = c->next_id++;
	p->next = c->pending;
	c->pending = p;
	pending_added_locked(c);
	pthread_mutex_unlock(&c->lock);
	/* A failed send kills the client: its reader's exit completes the entry. */
	client_sendv_on(c, client_cmd_sock(c), &h, &iov, 1, NULL, 0);
	return 0;
}

/*
 * The core's move-notify: called with the buffer's resv held by every
 * revoke.  The notice goes out at once and a fence on the buffer waits for
 * the ack, so a device-wide revoke (its exporter batches the fences) sends
 * every client its notices first and then waits for all of them with one
 * deadline.  Without memory for the fence: send and wait here.
 */
static void export_invalidate(struct p2p_attachment *attach)
{
	struct vu_export *e = p2p_attachment_importer_priv(attach);
	struct vu_client *c = e->client;
	uint32_t flags = VFIO_USER_P2P_REVOKE_F_REVOKED;
	struct p2p_fence *f = NULL;
	bool want;

	if (p2p_dmabuf_status(e->buf) == P2P_DMABUF_PERM_REVOKED)
		flags |= VFIO_USER_P2P_REVOKE_F_FOR_GOOD;
	pthread_mutex_lock(&c->lock);
	want = c->p2p_revoke;
	pthread_mutex_unlock(&c->lock);
	if (!want)
		return;
	if (!p2p_fence_create(&f)) {
		if (!p2p_dmabuf_resv_add_fence(e->buf, f) &&
		    !notify_revoke_async(c, e->id, flags, p2p_fence_ref(f))) {
			p2p_fence_put(f);
			return;
		}
		/* Not sent: the fence (maybe on the buffer already) must not stall the revoke. */
		p2p_fence_signal(f);
		p2p_fence_put(f);
	}
	notify_revoke(c, e->id, flags);
}

/* The buffer is usable again (un-revoke): flags 0, nothing to wait for. */
static void export_restore(struct p2p_attachment *attach)
{
	struct vu_export *e = p2p_attachment_importer_priv(attach);
	struct vu_client *c = e->client;
	struct vfio_user_p2p_revoke r = { .argsz = sizeof(r), .flags = 0, .export_id = e->id };
	struct iovec iov = { .iov_base = &r, .iov_len = sizeof(r) };
	struct vfio_user_header h = { .cmd = VFIO_USER_P2P_REVOKE,
				      .flags = VFIO_USER_F_TYPE_COMMAND };
	bool want;

	pthread_mutex_lock(&c->lock);
	want = c->p2p_revoke && !c->dead;
	h.msg_id = c->next_id++; /* its reply matches nothing: dropped */
	pthread_mutex_unlock(&c->lock);
	if (want)
		client_sendv_on(c, client_cmd_sock(c), &h, &iov, 1, NULL, 0);
}

static const struct p2p_dmabuf_importer_ops export_importer = {
	.invalidate_mappings = export_invalidate,
	.restore = export_restore,
};

/* Wrap dma-buf @fd of the client into an export with the server's importer. */
static int export_add(struct vu_client *c, int fd, uint64_t id, uint32_t bar,
		      struct vu_export **out)
{
	struct p2p_attach_info ai = {
		.argsz = sizeof(ai),
		.flags = P2P_ATTACH_PEER2PEER,
		.importer_ops = &export_importer,
		.name = "vfio-user-server",
	};
	struct vu_export *e = calloc(1, sizeof(*e));
	int ret;

	if (!e) {
		p2p_close(fd);
		return -ENOMEM;
	}
	e->client = c;
	e->id = id;
	e->bar = bar;
	e->fd = fd;
	ret = p2p_dmabuf_get(fd, &e->buf);
	if (ret)
		goto fail;
	ai.importer_priv = e;
	ret = p2p_dmabuf_attach(e->buf, &ai, &e->attach);
	if (ret)
		goto fail;
	pthread_mutex_lock(&c->lock);
	e->next = c->exports;
	c->exports = e;
	pthread_mutex_unlock(&c->lock);
	*out = e;
	return 0;
fail:
	if (e->buf)
		p2p_dmabuf_put(e->buf);
	p2p_close(fd);
	free(e);
	return ret;
}

static void export_free(struct vu_export *e)
{
	p2p_dmabuf_detach(e->attach);
	p2p_dmabuf_put(e->buf);
	p2p_close(e->fd);
	free(e);
}

/* A whole-BAR dma-buf whose revokes tell the client to zap its region mappings. */
static void watch_region(struct vu_client *c, uint32_t bar, uint64_t size)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = size };
	struct vu_export *e;
	int fd;

	if (!c->p2p_revoke || bar >= 6 || c->watched[bar])
		return;
	fd = p2p_vfio_device_get_dmabuf(c->vdev, bar, &r, 1, O_CLOEXEC | O_RDWR);
	if (fd < 0)
		return; /* e.g. a function without dma-buf support: no notices */
	if (export_add(c, fd, VFIO_USER_P2P_EXPORT_REGIONS, bar, &e) == 0)
		c->watched[bar] = true;
}

/* ---------------------------------------------------------------------- */
/* Commands                                                                */

static size_t payload_len(const struct vu_msg *m)
{
	return m->size - sizeof(struct vfio_user_header);
}

static const void *payload(const struct vu_msg *m)
{
	return m->buf + sizeof(struct vfio_user_header);
}

static int json_u64(struct json_object *o, const char *key, uint64_t *v, bool *present)
{
	struct json_object *x;

	*present = false;
	if (!json_object_object_get_ex(o, key, &x))
		return 0;
	if (!json_object_is_type(x, json_type_int))
		return -EINVAL;
	int64_t i = json_object_get_int64(x);
	if (i < 0)
		return -EINVAL;
	*v = (uint64_t)i;
	*present = true;
	return 0;
}

static int parse_caps(const char *json, uint32_t *max_xfer, bool *want_dmabuf, bool *want_revoke,
		      bool *want_twin)
{
	struct json_object *root, *caps, *x;
	uint64_t v;
	bool present;
	int ret = -EINVAL;

	root = json_tokener_parse(json);
	if (!root || !json_object_is_type(root, json_type_object))
		goto out;
	if (!json_object_object_get_ex(root, VFIO_USER_CAP, &caps)) {
		ret = 0;
		goto out;
	}
	if (!json_object_is_type(caps, json_type_object))
		goto out;
	if (json_u64(caps, VFIO_USER_CAP_MAX_FDS, &v, &present))
		goto out;
	if (json_u64(caps, VFIO_USER_CAP_MAX_DATA_XFER_SIZE, &v, &present))
		goto out;
	if (present)
		*max_xfer = v > VU_SERVER_MAX_XFER ? VU_SERVER_MAX_XFER : v ? (uint32_t)v : 1;
	if (json_u64(caps, VFIO_USER_CAP_MAX_DMA_MAPS, &v, &present) ||
	    json_u64(caps, VFIO_USER_CAP_PGSIZES, &v, &present))
		goto out;
	if (json_object_object_get_ex(caps, VFIO_USER_CAP_TWIN_SOCKET, &x)) {
		struct json_object *sup;

		if (!json_object_is_type(x, json_type_object))
			goto out;
		if (json_object_object_get_ex(x, VFIO_USER_CAP_TWIN_SUPPORTED, &sup)) {
			if (!json_object_is_type(sup, json_type_boolean))
				goto out;
			*want_twin = json_object_get_boolean(sup);
		}
	}
	if (json_object_object_get_ex(caps, VFIO_USER_CAP_P2PBUF, &x)) {
		if (!json_object_is_type(x, json_type_object))
			goto out;
		if (json_u64(x, VFIO_USER_CAP_P2PBUF_DMABUF, &v, &present))
			goto out;
		*want_dmabuf = present && v;
		if (json_u64(x, VFIO_USER_CAP_P2PBUF_REVOKE, &v, &present))
			goto out;
		*want_revoke = present && v;
	}
	ret = 0;
out:
	if (root)
		json_object_put(root);
	return ret;
}

static void *twin_main(void *arg);

/*
 * twin_socket mode (the client offered it): a socketpair whose client end
 * goes with the VERSION reply; the server's commands and their replies use
 * it from then on, read by a thread of their own.  Return: the client end
 * (its reader runs, c->twin is set), or -errno (the client gets no twin).
 */
static int twin_start(struct vu_client *c)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -errno;
	struct timeval tv = { .tv_sec = 2 };

	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	pthread_mutex_lock(&c->lock);
	__atomic_store_n(&c->twin, sv[0], __ATOMIC_RELEASE);
	pthread_mutex_unlock(&c->lock);
	if (pthread_create(&c->twin_reader, NULL, twin_main, c)) {
		pthread_mutex_lock(&c->lock);
		__atomic_store_n(&c->twin, -1, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&c->lock);
		close(sv[0]);
		close(sv[1]);
		return -EAGAIN;
	}
	c->has_twin_reader = true;
	return sv[1];
}

static int cmd_version(struct vu_client *c, const struct vu_msg *m)
{
	const struct vfio_user_version *v = payload(m);
	size_t len = payload_len(m);
	bool want_dmabuf = false, want_revoke = false, want_twin = false;
	int twin_fd = -1;
	uint32_t max_xfer = VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE;
	struct vfio_user_version rv;
	struct json_object *root, *caps, *twin, *p2p;
	const char *js;
	int ret;

	if (c->versioned || len < sizeof(*v) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	if (v->major != VFIO_USER_MAJOR) {
		reply_err(c, m, EINVAL);
		return -EPROTO; /* the spec: close the connection */
	}
	if (len > sizeof(*v)) {
		if (!memchr(v->data, 0, len - sizeof(*v)))
			return reply_err(c, m, EINVAL);
		if (v->data[0] &&
		    parse_caps(v->data, &max_xfer, &want_dmabuf, &want_revoke, &want_twin))
			return reply_err(c, m, EINVAL);
	}
	rv.major = VFIO_USER_MAJOR;
	rv.minor = v->minor < VFIO_USER_MINOR ? v->minor : VFIO_USER_MINOR;

	root = json_object_new_object();
	caps = json_object_new_object();
	twin = json_object_new_object();
	if (!root || !caps || !twin) {
		json_object_put(root);
		json_object_put(caps);
		json_object_put(twin);
		return reply_err(c, m, ENOMEM);
	}
	json_object_object_add(caps, VFIO_USER_CAP_MAX_FDS, json_object_new_int(VU_MAX_FDS));
	json_object_object_add(caps, VFIO_USER_CAP_MAX_DATA_XFER_SIZE,
			       json_object_new_int64(VU_SERVER_MAX_XFER));
	json_object_object_add(caps, VFIO_USER_CAP_MAX_DMA_MAPS,
			       json_object_new_int64(VU_SERVER_MAX_DMA_MAPS));
	json_object_object_add(caps, VFIO_USER_CAP_PGSIZES, json_object_new_int64(4096));
	if (want_twin && !(m->hdr.flags & VFIO_USER_F_NO_REPLY))
		twin_fd = twin_start(c);
	json_object_object_add(twin, VFIO_USER_CAP_TWIN_SUPPORTED,
			       json_object_new_boolean(twin_fd >= 0));
	if (twin_fd >= 0)
		json_object_object_add(twin, VFIO_USER_CAP_TWIN_FD_INDEX, json_object_new_int(0));
	json_object_object_add(caps, VFIO_USER_CAP_TWIN_SOCKET, twin);
	if (want_dmabuf || want_revoke) {
		p2p = json_object_new_object();
		if (!p2p)
			want_dmabuf = want_revoke = false; /* not granted: as not offered */
		if (p2p) {
			json_object_object_add(p2p, VFIO_USER_CAP_P2PBUF_DMABUF,
					       json_object_new_int(want_dmabuf));
			json_object_object_add(p2p, VFIO_USER_CAP_P2PBUF_REVOKE,
					       json_object_new_int(want_revoke));
			json_object_object_add(caps, VFIO_USER_CAP_P2PBUF, p2p);
		}
	}
	json_object_object_add(root, VFIO_USER_CAP, caps);
	js = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
	{
		struct vfio_user_header h = {
			.msg_id = m->hdr.msg_id,
			.cmd = m->hdr.cmd,
			.flags = VFIO_USER_F_TYPE_REPLY,
		};
		struct iovec iov[2] = {
			{ .iov_base = &rv, .iov_len = sizeof(rv) },
			{ .iov_base = (void *)js, .iov_len = strlen(js) + 1 },
		};

		pthread_mutex_lock(&c->lock);
		c->versioned = true;
		c->p2p_dmabuf = want_dmabuf;
		c->p2p_revoke = want_revoke;
		c->peer_max_xfer = max_xfer; /* read by device threads (map_dma_rw()) */
		pthread_mutex_unlock(&c->lock);
		ret = (m->hdr.flags & VFIO_USER_F_NO_REPLY) ? 0 :
		      client_sendv(c, &h, iov, 2, twin_fd >= 0 ? &twin_fd : NULL, twin_fd >= 0);
	}
	if (twin_fd >= 0)
		close(twin_fd);
	json_object_put(root);
	return ret;
}

static struct vu_map *map_find(struct vu_dev *d, uint64_t addr, uint64_t size)
{
	for (struct vu_map *m = d->maps; m; m = m->next)
		if (addr < m->addr + m->size && m->addr < addr + size)
			return m;
	return NULL;
}

/*
 * A device access to a range the client mapped without an fd (the IOAS's
 * callback area, p2p_ioas_map_callback()): DMA_READ / DMA_WRITE messages of
 * at most the client's max_data_xfer_size, each waiting for its reply.  Runs
 * on the device's thread with no lock held; the unmap of the area waits for
 * it.  Any failure (error reply, malformed reply, client gone, no reply in
 * the timeout) is -EFAULT: the device sees a translation fault.  A client
 * that does not answer in time is disconnected.
 */
static int map_dma_rw(void *priv, uint64_t iova, void *data, uint64_t len, bool write)
{
	struct vu_map *map = priv;
	struct vu_client *c = map->owner;
	uint8_t *d = data;
	uint32_t max;

	pthread_mutex_lock(&c->lock);
	max = c->peer_max_xfer;
	pthread_mutex_unlock(&c->lock);
	while (len) {
		uint64_t n = len < max ? len : max;
		struct vfio_user_dma_region_access a = { .addr = iova, .count = n };
		struct iovec iov[2] = {
			{ .iov_base = &a, .iov_len = sizeof(a) },
			{ .iov_base = d, .iov_len = n },
		};
		struct vu_msg r = { 0 };
		int ret = client_call(c, write ? VFIO_USER_DMA_WRITE : VFIO_USER_DMA_READ, iov,
				      write ? 2 : 1, c->srv->revoke_timeout_ms, &r);

		if (ret == -ETIMEDOUT)
			client_kill(c);
		if (ret)
			return -EFAULT;
		if (write) {
			/* The reply: addr and count (the spec's 12 bytes or libvfio-user's 16). */
			ret = payload_len(&r) >= 12 ? 0 : -EFAULT;
		} else {
			struct vfio_user_dma_region_access ra;

			ret = -EFAULT;
			if (payload_len(&r) == sizeof(ra) + n) {
				memcpy(&ra, payload(&r), sizeof(ra));
				if (ra.addr == iova && ra.count == n) {
					memcpy(d, (const uint8_t *)payload(&r) + sizeof(ra), n);
					ret = 0;
				}
			}
		}
		vu_msg_release(&r);
		if (ret)
			return ret;
		d += n;
		iova += n;
		len -= n;
	}
	return 0;
}

static const struct p2p_ioas_callback_ops map_callback_ops = {
	.rw = map_dma_rw,
};

static int cmd_dma_map(struct vu_client *c, struct vu_msg *m)
{
	struct vu_dev *d = c->dev;
	struct vfio_user_dma_map a;
	struct vu_map *map;
	int ret = 0;

	if (payload_len(m) != sizeof(a) || m->nr_fds > 1)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	if (a.argsz != sizeof(a) || !a.size || a.addr + a.size < a.addr ||
	    (a.flags & ~(VFIO_USER_F_DMA_REGION_READ | VFIO_USER_F_DMA_REGION_WRITE)))
		return reply_err(c, m, EINVAL);
	map = calloc(1, sizeof(*map));
	if (!map)
		return reply_err(c, m, ENOMEM);
	map->owner = c;
	map->addr = a.addr;
	map->size = a.size;
	pthread_mutex_lock(&d->lock);
	if (map_find(d, a.addr, a.size))
		ret = -EEXIST;
	else if (d->nr_maps >= VU_SERVER_MAX_DMA_MAPS)
		ret = -ENOSPC;
	if (!ret && m->nr_fds) {
		uint64_t iova = a.addr;
		uint32_t fl = P2P_IOAS_MAP_FIXED_IOVA |
			      ((a.flags & VFIO_USER_F_DMA_REGION_READ) ? P2P_IOAS_MAP_READABLE : 0) |
			      ((a.flags & VFIO_USER_F_DMA_REGION_WRITE) ? P2P_IOAS_MAP_WRITEABLE : 0);

		/* Held under dev->lock: maps of one device are serialized. */
		ret = p2p_ioas_map_file(d->ioas, m->fds[0], a.offset, a.size, &iova, fl);
		map->in_ioas = !ret;
	} else if (!ret && (a.flags & (VFIO_USER_F_DMA_REGION_READ | VFIO_USER_F_DMA_REGION_WRITE))) {
		/* No fd: the device's DMA there becomes DMA_READ/DMA_WRITE messages. */
		uint32_t fl = ((a.flags & VFIO_USER_F_DMA_REGION_READ) ? P2P_IOAS_MAP_READABLE : 0) |
			      ((a.flags & VFIO_USER_F_DMA_REGION_WRITE) ? P2P_IOAS_MAP_WRITEABLE : 0);

		ret = p2p_ioas_map_callback(d->ioas, a.addr, a.size, fl, &map_callback_ops, map);
		map->in_ioas = !ret;
	}
	if (!ret) {
		map->next = d->maps;
		d->maps = map;
		d->nr_maps++;
	}
	pthread_mutex_unlock(&d->lock);
	if (ret) {
		free(map);
		return reply_err(c, m, ret);
	}
	return reply(c, m, NULL, 0, NULL, 0);
}

/* Unmap one map (its owner's lock not needed: dev->lock protects the list). */
static void map_drop(struct vu_dev *d, struct vu_map *map)
{
	if (map->in_ioas)
		p2p_ioas_unmap(d->ioas, map->addr, map->size, NULL); /* waits for DMA in flight */
	free(map);
}

/* Remove @c's maps matching (@addr, @size), or all of them with @all. */
static int maps_remove(struct vu_client *c, bool all, uint64_t addr, uint64_t size)
{
	struct vu_dev *d = c->dev;
	struct vu_map *gone = NULL;
	int found = 0;

	pthread_mutex_lock(&d->lock);
	for (struct vu_map **pp = &d->maps; *pp;) {
		struct vu_map *m = *pp;

		if (m->owner == c && (all || (m->addr == addr && m->size == size))) {
			*pp = m->next;
			d->nr_maps--;
			m->next = gone;
			gone = m;
			found++;
		} else {
			pp = &m->next;
		}
	}
	/* Unmapped before dev->lock is dropped: no new map can take the range early. */
	while (gone) {
		struct vu_map *n = gone->next;

		map_drop(d, gone);
		gone = n;
	}
	pthread_mutex_unlock(&d->lock);
	return found;
}

static int cmd_dma_unmap(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_dma_unmap a;
	bool all;

	if (payload_len(m) != sizeof(a) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	if (a.argsz < sizeof(a) || (a.flags & ~VFIO_USER_F_DMA_UNMAP_ALL))
		return reply_err(c, m, EINVAL);
	all = a.flags & VFIO_USER_F_DMA_UNMAP_ALL;
	if (all && (a.addr || a.size))
		return reply_err(c, m, EINVAL);
	if (!maps_remove(c, all, a.addr, a.size) && !all)
		return reply_err(c, m, ENOENT);
	a.argsz = sizeof(a);
	return reply(c, m, &a, sizeof(a), NULL, 0);
}

static int cmd_device_get_info(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_device_info a;
	struct vfio_device_info k = { .argsz = sizeof(k) };
	long ret;

	if (payload_len(m) != sizeof(a) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	if (a.argsz < sizeof(a))
		return reply_err(c, m, EINVAL);
	ret = p2p_vfio_device_ioctl(c->vdev, VFIO_DEVICE_GET_INFO, &k);
	if (ret < 0)
		return reply_err(c, m, (int)ret);
	a.argsz = sizeof(a);
	a.flags = k.flags & (VFIO_USER_DEVICE_FLAGS_RESET | VFIO_USER_DEVICE_FLAGS_PCI);
	a.num_regions = k.num_regions;
	a.num_irqs = k.num_irqs;
	return reply(c, m, &a, sizeof(a), NULL, 0);
}

static int cmd_get_region_info(struct vu_client *c, struct vu_msg *m)
{
	/* info (32), sparse mmap capability (16), one area (16) */
	struct {
		struct vfio_user_region_info info;
		struct vfio_user_cap_header cap;
		uint32_t nr_areas, reserved;
		struct vfio_user_sparse_mmap_area area;
	} VFIO_USER_PACKED r;
	struct vfio_region_info k = { .argsz = sizeof(k) };
	struct vfio_user_region_info a;
	struct p2p_mem *mem = NULL;
	size_t len = sizeof(r.info);
	int fd = -1;

	_Static_assert(sizeof(r) == sizeof(struct vfio_user_region_info) +
				   sizeof(struct vfio_user_region_cap_sparse_mmap) +
				   sizeof(struct vfio_user_sparse_mmap_area), "region info reply");
	long ret;

	if (payload_len(m) != sizeof(a) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	if (a.argsz < sizeof(a) || a.index >= c->num_regions)
		return reply_err(c, m, EINVAL);
	k.index = a.index;
	ret = p2p_vfio_device_ioctl(c->vdev, VFIO_DEVICE_GET_REGION_INFO, &k);
	if (ret < 0)
		return reply_err(c, m, (int)ret);
	memset(&r, 0, sizeof(r));
	r.info.index = a.index;
	r.info.size = k.size;
	r.info.offset = k.offset;
	r.info.flags = k.flags & (VFIO_USER_REGION_INFO_FLAG_READ | VFIO_USER_REGION_INFO_FLAG_WRITE);
	if ((k.flags & VFIO_REGION_INFO_FLAG_MMAP) && a.index < 6 && k.size)
		mem = p2p_pci_dev_bar_mem(p2p_vfio_device_pci(c->vdev), (int)a.index);
	if (mem) {
		/* The BAR's own memfd: byte 0 of the BAR sits at p2p_mem_fd_offset(). */
		r.info.flags |= VFIO_USER_REGION_INFO_FLAG_MMAP | VFIO_USER_REGION_INFO_FLAG_CAPS;
		r.info.offset = p2p_mem_fd_offset(mem);
		r.cap.id = VFIO_USER_REGION_INFO_CAP_SPARSE_MMAP;
		r.cap.version = 1;
		r.nr_areas = 1;
		r.area.offset = 0;
		r.area.size = k.size;
		len = sizeof(r);
		if (a.argsz >= len) {
			r.info.cap_offset = sizeof(r.info);
			fd = p2p_mem_fd(mem);
		}
	}
	r.info.argsz = (uint32_t)len;
	if (a.argsz < len) /* argsz retry: the needed size, no capabilities, no fd */
		len = sizeof(r.info);
	ret = reply(c, m, &r, len, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
	if (!ret && fd >= 0)
		watch_region(c, a.index, k.size);
	return (int)ret;
}

static int cmd_get_irq_info(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_irq_info a;
	struct vfio_irq_info k = { .argsz = sizeof(k) };
	long ret;

	if (payload_len(m) != sizeof(a) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	if (a.argsz < sizeof(a))
		return reply_err(c, m, EINVAL);
	k.index = a.index;
	ret = p2p_vfio_device_ioctl(c->vdev, VFIO_DEVICE_GET_IRQ_INFO, &k);
	if (ret < 0)
		return reply_err(c, m, (int)ret);
	a.argsz = sizeof(a);
	a.flags = k.flags;
	a.count = k.count;
	return reply(c, m, &a, sizeof(a), NULL, 0);
}

static int cmd_set_irqs(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_irq_set a;
	size_t len = payload_len(m), extra;
	struct vfio_irq_set *k;
	uint32_t data = 0;
	long ret;

	if (len < sizeof(a))
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	extra = len - sizeof(a);
	if (a.argsz != len)
		return reply_err(c, m, EINVAL);
	switch (a.flags & VFIO_USER_IRQ_SET_DATA_TYPE_MASK) {
	case VFIO_USER_IRQ_SET_DATA_NONE:
		if (extra || m->nr_fds)
			return reply_err(c, m, EINVAL);
		break;
	case VFIO_USER_IRQ_SET_DATA_BOOL:
		if (extra != a.count || m->nr_fds)
			return reply_err(c, m, EINVAL);
		data = a.count;
		break;
	case VFIO_USER_IRQ_SET_DATA_EVENTFD:
		/* count fds, or none at all to de-assign */
		if (extra || (m->nr_fds && m->nr_fds != a.count) || a.count > VU_MAX_FDS)
			return reply_err(c, m, EINVAL);
		data = a.count * (uint32_t)sizeof(int32_t);
		break;
	default:
		return reply_err(c, m, EINVAL);
	}
	k = calloc(1, sizeof(*k) + data);
	if (!k)
		return reply_err(c, m, ENOMEM);
	k->argsz = (uint32_t)(sizeof(*k) + data);
	k->flags = a.flags;
	k->index = a.index;
	k->start = a.start;
	k->count = a.count;
	if ((a.flags & VFIO_USER_IRQ_SET_DATA_TYPE_MASK) == VFIO_USER_IRQ_SET_DATA_BOOL) {
		memcpy(k->data, (const uint8_t *)payload(m) + sizeof(a), a.count);
	} else if ((a.flags & VFIO_USER_IRQ_SET_DATA_TYPE_MASK) == VFIO_USER_IRQ_SET_DATA_EVENTFD) {
		int32_t *fds = (int32_t *)(void *)k->data;

		for (uint32_t i = 0; i < a.count; i++)
			fds[i] = m->nr_fds ? m->fds[i] : -1;
	}
	ret = p2p_vfio_device_ioctl(c->vdev, VFIO_DEVICE_SET_IRQS, k);
	free(k);
	if (ret < 0)
		return reply_err(c, m, (int)ret);
	/* The VFIO layer keeps its own duplicates; ours close with the message. */
	if ((a.flags & VFIO_USER_IRQ_SET_DATA_TYPE_MASK) == VFIO_USER_IRQ_SET_DATA_EVENTFD &&
	    a.index < VU_NUM_IRQ_INDEX)
		c->irq_set[a.index] = true;
	return reply(c, m, NULL, 0, NULL, 0);
}

static int region_check(struct vu_client *c, const struct vfio_user_region_access *a)
{
	if (a->region >= c->num_regions || a->offset >= (1ull << 40) || !a->count ||
	    a->count > VU_SERVER_MAX_XFER || a->offset + a->count > (1ull << 40))
		return -EINVAL;
	return 0;
}

static int cmd_region_read(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_region_access a;
	uint8_t *buf;
	ssize_t n;
	int ret;

	if (payload_len(m) != sizeof(a) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	if ((ret = region_check(c, &a)))
		return reply_err(c, m, ret);
	buf = malloc(sizeof(a) + a.count);
	if (!buf)
		return reply_err(c, m, ENOMEM);
	n = p2p_vfio_device_pread(c->vdev, buf + sizeof(a), a.count,
				  ((uint64_t)a.region << 40) | a.offset);
	if (n < 0) {
		free(buf);
		return reply_err(c, m, (int)n);
	}
	a.count = (uint32_t)n;
	memcpy(buf, &a, sizeof(a));
	ret = reply(c, m, buf, sizeof(a) + (size_t)n, NULL, 0);
	free(buf);
	return ret;
}

static int cmd_region_write(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_region_access a;
	ssize_t n;
	int ret;

	if (payload_len(m) < sizeof(a) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	if ((ret = region_check(c, &a)))
		return reply_err(c, m, ret);
	if (payload_len(m) != sizeof(a) + a.count)
		return reply_err(c, m, EINVAL);
	n = p2p_vfio_device_pwrite(c->vdev, (const uint8_t *)payload(m) + sizeof(a), a.count,
				   ((uint64_t)a.region << 40) | a.offset);
	if (n < 0)
		return reply_err(c, m, (int)n);
	a.count = (uint32_t)n;
	return reply(c, m, &a, sizeof(a), NULL, 0);
}

static int cmd_write_multi(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_write_multi w;
	size_t len = payload_len(m);

	if (len < sizeof(w) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&w, payload(m), sizeof(w));
	if (!w.wr_cnt || w.wr_cnt > (len - sizeof(w)) / sizeof(struct vfio_user_write_multi_entry) ||
	    len != sizeof(w) + w.wr_cnt * sizeof(struct vfio_user_write_multi_entry))
		return reply_err(c, m, EINVAL);
	for (uint64_t i = 0; i < w.wr_cnt; i++) {
		struct vfio_user_write_multi_entry e;
		struct vfio_user_region_access a;
		ssize_t n;

		memcpy(&e, (const uint8_t *)payload(m) + sizeof(w) + i * sizeof(e), sizeof(e));
		a.offset = e.offset;
		a.region = e.region;
		a.count = e.count;
		if (e.count > sizeof(e.data) || region_check(c, &a))
			return reply_err(c, m, EINVAL);
		n = p2p_vfio_device_pwrite(c->vdev, e.data, e.count,
					   ((uint64_t)e.region << 40) | e.offset);
		if (n < 0)
			return reply_err(c, m, (int)n);
	}
	return reply(c, m, &w, sizeof(w), NULL, 0);
}

static struct vu_export *export_find(struct vu_client *c, uint64_t id)
{
	struct vu_export *e;

	pthread_mutex_lock(&c->lock);
	for (e = c->exports; e; e = e->next)
		if (e->id == id && id != VFIO_USER_P2P_EXPORT_REGIONS)
			break;
	pthread_mutex_unlock(&c->lock);
	return e;
}

/* ---------------------------------------------------------------------- */
/* Tokens                                                                  */

static void token_put(struct vu_token *t)
{
	if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	p2p_close(t->buf_fd);
	free(t);
}

/* Wake the token thread: the set of tokens changed, or it is to stop. */
static void token_kick(struct p2p_vfio_user_server *srv)
{
	ssize_t r = write(srv->tok_pipe[1], "t", 1);

	(void)r; /* a full pipe is awake already */
}

/*
 * The token of export @e: a socketpair, the server's end bound to
 * VFIO_USER_P2P_TOKEN_PREFIX "<pid>/<id>/<random>" and watched; the other
 * end (*@tok_end, the caller's to send and close) is the client's.
 */
static int token_new(struct vu_client *c, struct vu_export *e, uint32_t open_flags,
		     int *tok_end)
{
	struct p2p_vfio_user_server *srv = c->srv;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vu_token *t = calloc(1, sizeof(*t));
	uint64_t rnd = 0;
	unsigned int nr;
	int sv[2], n, ret;

	if (!t)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		ret = -errno;
		free(t);
		return ret;
	}
	t->buf_fd = p2p_dup(e->fd);
	if (t->buf_fd < 0) {
		ret = t->buf_fd;
		goto fail;
	}
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd ^= (uint64_t)(uintptr_t)t ^ (uint64_t)time(NULL);
	pthread_mutex_lock(&srv->tok_lock);
	t->id = ++srv->next_token;
	pthread_mutex_unlock(&srv->tok_lock);
	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1,
		     VFIO_USER_P2P_TOKEN_PREFIX "%d/%llu/%016llx", (int)getpid(),
		     (unsigned long long)t->id, (unsigned long long)rnd);
	if (bind(sv[0], (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n))) {
		ret = -errno;
		p2p_close(t->buf_fd);
		goto fail;
	}
	atomic_init(&t->refs, 1);
	t->dev = c->dev;
	t->sock = sv[0];
	t->region = e->bar;
	t->open_flags = open_flags;
	p2p_dmabuf_ranges(e->buf, &nr);
	t->nr_ranges = nr;
	pthread_mutex_lock(&srv->tok_lock);
	t->next = srv->tokens;
	srv->tokens = t;
	srv->nr_tokens++;
	pthread_mutex_unlock(&srv->tok_lock);
	token_kick(srv);
	*tok_end = sv[1];
	return 0;
fail:
	close(sv[0]);
	close(sv[1]);
	free(t);
	return ret;
}

/* Every copy of the token is closed: the export is let go (what the connections hold stays). */
static void token_release(struct p2p_vfio_user_server *srv, struct vu_token *t)
{
	pthread_mutex_lock(&srv->tok_lock);
	for (struct vu_token **pp = &srv->tokens; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			srv->nr_tokens--;
			break;
		}
	}
	pthread_mutex_unlock(&srv->tok_lock);
	close(t->sock);
	token_put(t);
}

/*
 * The token thread: waits on every token's server end.  POLLIN: attach
 * datagrams (one connection each, through client_start(): the same reader
 * and worker as an accepted client); junk is dropped.  POLLHUP: released.
 * Tokens leave the list only here (or after the thread stopped).
 */
static void *token_main(void *arg)
{
	struct p2p_vfio_user_server *srv = arg;
	struct pollfd *pfd = NULL;
	struct vu_token **tv = NULL;
	unsigned int cap = 0;

	for (;;) {
		unsigned int n = 0;

		pthread_mutex_lock(&srv->tok_lock);
		if (srv->tok_stop) {
			pthread_mutex_unlock(&srv->tok_lock);
			break;
		}
		if (srv->nr_tokens + 1 > cap) {
			unsigned int ncap = srv->nr_tokens + 16;
			struct pollfd *np = realloc(pfd, ncap * sizeof(*np));
			struct vu_token **nt = np ? realloc(tv, ncap * sizeof(*nt)) : NULL;

			if (np)
				pfd = np;
			if (nt) {
				tv = nt;
				cap = ncap;
			}
		}
		if (!cap) {
			/* No memory for the first array: try again shortly. */
			pthread_mutex_unlock(&srv->tok_lock);
			usleep(10000);
			continue;
		}
		pfd[n++] = (struct pollfd){ .fd = srv->tok_pipe[0], .events = POLLIN };
		for (struct vu_token *t = srv->tokens; t && n < cap; t = t->next) {
			tv[n] = t;
			pfd[n++] = (struct pollfd){ .fd = t->sock, .events = POLLIN };
		}
		pthread_mutex_unlock(&srv->tok_lock);
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			usleep(10000); /* ENOMEM: try again */
			continue;
		}
		if (pfd[0].revents) {
			char b[64];

			while (read(srv->tok_pipe[0], b, sizeof(b)) > 0)
				;
		}
		for (unsigned int i = 1; i < n; i++) {
			struct vu_token *t = tv[i];

			if (pfd[i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
				/* Nobody holds it: attach requests still queued died with their senders. */
				token_release(srv, t);
				continue;
			}
			/* At most a few datagrams per token per round: one token cannot starve others. */
			for (int k = 0; k < 8 && (pfd[i].revents & POLLIN); k++) {
				int fd, ret = vu_token_recv(t->sock, &fd);

				if (ret == -EAGAIN || (ret && ret != -EINVAL))
					break;
				if (ret)
					continue; /* junk, dropped */
				atomic_fetch_add(&t->refs, 1);
				if (client_start(t->dev, fd, t))
					token_put(t); /* refused (stopping, too many clients): fd closed */
			}
		}
	}
	free(pfd);
	free(tv);
	return NULL;
}

/*
 * The reply to feature 11 GET and DMABUF_GET: @e's ranges, its memory fd
 * (unless !@mem), @extra_fd if >= 0.
 */
static int export_reply(struct vu_client *c, struct vu_msg *m, struct vu_export *e,
			uint32_t flags, bool mem, int extra_fd)
{
	struct vfio_user_p2p_dmabuf *r;
	const struct p2p_phys_range *pr;
	unsigned int nr;
	int fds[2], ret;

	pr = p2p_dmabuf_ranges(e->buf, &nr);
	r = calloc(1, sizeof(*r) + nr * sizeof(r->ranges[0]));
	if (!r || !nr) {
		free(r);
		return reply_err(c, m, ENOMEM);
	}
	r->argsz = (uint32_t)(sizeof(*r) + nr * sizeof(r->ranges[0]));
	r->flags = flags;
	r->export_id = e->id;
	r->region_index = e->bar;
	r->nr_ranges = nr;
	for (unsigned int i = 0; i < nr; i++) {
		r->ranges[i].fd_offset = p2p_mem_fd_offset(pr[i].mem) + pr[i].offset;
		r->ranges[i].length = pr[i].length;
		r->size += pr[i].length;
	}
	fds[0] = p2p_mem_fd(pr[0].mem);
	fds[1] = extra_fd;
	if (!mem)
		ret = reply(c, m, r, r->argsz, NULL, 0);
	else
		ret = reply(c, m, r, r->argsz, fds, extra_fd >= 0 ? 2 : 1);
	free(r);
	return ret;
}

/* Take @e off the client's list and free it (an export whose reply could not be made). */
static void export_unlink_free(struct vu_client *c, struct vu_export *e)
{
	pthread_mutex_lock(&c->lock);
	for (struct vu_export **pp = &c->exports; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	export_free(e);
}

/* Feature 11 GET: export BAR ranges as a dma-buf owned by this client, with its token. */
static int feature_dmabuf(struct vu_client *c, struct vu_msg *m, uint32_t argsz, uint32_t flags)
{
	const uint8_t *p = (const uint8_t *)payload(m) + sizeof(struct vfio_user_device_feature);
	size_t plen = payload_len(m) - sizeof(struct vfio_user_device_feature);
	struct vfio_device_feature_dma_buf db;
	struct vfio_user_p2p_dmabuf *r;
	struct vfio_device_feature *k;
	struct vu_export *e;
	size_t need;
	int fd, ret, tok = -1;

	if (plen < sizeof(db))
		return reply_err(c, m, EINVAL);
	memcpy(&db, p, sizeof(db));
	if (db.nr_ranges > (plen - sizeof(db)) / sizeof(struct vfio_region_dma_range) ||
	    plen != sizeof(db) + (size_t)db.nr_ranges * sizeof(struct vfio_region_dma_range))
		return reply_err(c, m, EINVAL);
	need = sizeof(*r) + (size_t)db.nr_ranges * sizeof(struct vfio_user_p2p_dmabuf_range);
	if (argsz < need) {
		struct vfio_user_p2p_dmabuf small = { .argsz = (uint32_t)need,
						      .region_index = db.region_index };

		return reply(c, m, &small, sizeof(small), NULL, 0);
	}
	k = malloc(sizeof(*k) + plen);
	if (!k)
		return reply_err(c, m, ENOMEM);
	k->argsz = (uint32_t)(sizeof(*k) + plen);
	k->flags = flags;
	memcpy(k->data, p, plen);
	fd = (int)p2p_vfio_device_ioctl(c->vdev, VFIO_DEVICE_FEATURE, k);
	free(k);
	if (fd < 0)
		return reply_err(c, m, fd);
	ret = export_add(c, fd, ++c->next_export, db.region_index, &e);
	if (ret)
		return reply_err(c, m, ret);
	ret = token_new(c, e, db.open_flags, &tok);
	if (ret) {
		export_unlink_free(c, e);
		return reply_err(c, m, ret);
	}
	ret = export_reply(c, m, e, 0, true, tok);
	close(tok); /* the client's copy (or the one in flight) holds it now */
	return ret;
}

/*
 * DMABUF_GET of an export revoked for good before this connection came (the
 * exporter lets no importer attach to a revoked buffer, as the kernel's:
 * ENODEV).  Nothing can change for it any more, so no importer is needed
 * for notices: the reply says REVOKED | FOR_GOOD, with no fd (the memory is
 * not handed out for a dead buffer), and the holder's buffer is dead from
 * the start, as the exporter's.  A temporarily revoked export stays ENODEV:
 * its restore could not be told without an importer.
 */
static int dmabuf_get_dead(struct vu_client *c, struct vu_msg *m, struct vu_token *t)
{
	struct vu_export e = { .client = c, .bar = t->region, .fd = -1 };
	uint32_t flags = VFIO_USER_P2P_DMABUF_F_REVOKED | VFIO_USER_P2P_DMABUF_F_FOR_GOOD;
	int ret;

	if (p2p_dmabuf_get(t->buf_fd, &e.buf))
		return reply_err(c, m, ENODEV);
	if (p2p_dmabuf_status(e.buf) != P2P_DMABUF_PERM_REVOKED) {
		p2p_dmabuf_put(e.buf);
		return reply_err(c, m, ENODEV);
	}
	e.id = ++c->next_export; /* listed nowhere: a DMABUF_CLOSE of it is ENOENT */
	if ((t->open_flags & O_ACCMODE) == O_RDWR)
		flags |= VFIO_USER_P2P_DMABUF_F_WRITE;
	ret = export_reply(c, m, &e, flags, false, -1);
	p2p_dmabuf_put(e.buf);
	return ret;
}

/* DMABUF_GET: the export of the token this connection was born from. */
static int cmd_dmabuf_get(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_p2p_dmabuf_get a;
	struct vu_token *t = c->born;
	struct vu_export *e;
	uint32_t flags = 0;
	size_t need;
	int fd, ret;

	if (!c->p2p_dmabuf || payload_len(m) != sizeof(a) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	if (a.flags)
		return reply_err(c, m, EINVAL);
	if (!t)
		return reply_err(c, m, EPERM);
	need = sizeof(struct vfio_user_p2p_dmabuf) +
	       (size_t)t->nr_ranges * sizeof(struct vfio_user_p2p_dmabuf_range);
	if (a.argsz < need) {
		struct vfio_user_p2p_dmabuf small = { .argsz = (uint32_t)need,
						      .region_index = t->region };

		return reply(c, m, &small, sizeof(small), NULL, 0);
	}
	fd = p2p_dup(t->buf_fd);
	if (fd < 0)
		return reply_err(c, m, fd);
	ret = export_add(c, fd, ++c->next_export, t->region, &e);
	if (ret == -ENODEV)
		return dmabuf_get_dead(c, m, t);
	if (ret)
		return reply_err(c, m, ret);
	/* After the attach: a revoke from here on reaches this connection with a notice. */
	switch (p2p_dmabuf_status(e->buf)) {
	case P2P_DMABUF_OK:
		break;
	case P2P_DMABUF_PERM_REVOKED:
		flags |= VFIO_USER_P2P_DMABUF_F_FOR_GOOD;
		/* fall through */
	default:
		flags |= VFIO_USER_P2P_DMABUF_F_REVOKED;
		break;
	}
	if ((t->open_flags & O_ACCMODE) == O_RDWR)
		flags |= VFIO_USER_P2P_DMABUF_F_WRITE;
	return export_reply(c, m, e, flags, true, -1);
}

static int cmd_device_feature(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_device_feature a;
	size_t len = payload_len(m);
	struct vfio_device_feature *k;
	uint32_t feature;
	long ret;

	if (len < sizeof(a) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	feature = a.flags & VFIO_USER_DEVICE_FEATURE_MASK;
	if (feature == VFIO_DEVICE_FEATURE_DMA_BUF && (a.flags & VFIO_USER_DEVICE_FEATURE_GET) &&
	    !(a.flags & VFIO_USER_DEVICE_FEATURE_PROBE)) {
		if (!c->p2p_dmabuf)
			return reply_err(c, m, ENOTTY); /* not negotiated: as an unknown feature */
		return feature_dmabuf(c, m, a.argsz, a.flags);
	}
	k = malloc(sizeof(*k) + (len - sizeof(a)) + sizeof(int32_t));
	if (!k)
		return reply_err(c, m, ENOMEM);
	k->argsz = (uint32_t)(sizeof(*k) + len - sizeof(a));
	k->flags = a.flags;
	memcpy(k->data, (const uint8_t *)payload(m) + sizeof(a), len - sizeof(a));
	if ((feature == VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE ||
	     feature == VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR) &&
	    (a.flags & VFIO_USER_DEVICE_FEATURE_SET) && !(a.flags & VFIO_USER_DEVICE_FEATURE_PROBE)) {
		/*
		 * Both start with the dma-buf's fd, which would be the client's:
		 * it names one of its own exports' ids instead (never a number
		 * of the server's fd table: another client's dma-buf).
		 */
		struct vu_export *e;
		int32_t id;

		if (len - sizeof(a) < sizeof(struct vfio_device_feature_dma_buf_revoke)) {
			free(k);
			return reply_err(c, m, EINVAL);
		}
		memcpy(&id, k->data, sizeof(id));
		e = id >= 0 ? export_find(c, (uint64_t)id) : NULL;
		if (!e) {
			free(k);
			return reply_err(c, m, EBADF);
		}
		memcpy(k->data, &e->fd, sizeof(int32_t));
	}
	ret = p2p_vfio_device_ioctl(c->vdev, VFIO_DEVICE_FEATURE, k);
	free(k);
	if (ret < 0)
		return reply_err(c, m, (int)ret);
	if (ret > 0)
		p2p_close((int)ret);
	/* SET and PROBE: the reply is the request; no GET feature has data here. */
	return reply(c, m, payload(m), len, NULL, 0);
}

static int cmd_dmabuf_close(struct vu_client *c, struct vu_msg *m)
{
	struct vfio_user_p2p_dmabuf_close a;
	struct vu_export *e = NULL;

	if (!c->p2p_dmabuf || payload_len(m) != sizeof(a) || m->nr_fds)
		return reply_err(c, m, EINVAL);
	memcpy(&a, payload(m), sizeof(a));
	if (a.argsz < sizeof(a) || a.flags)
		return reply_err(c, m, EINVAL);
	pthread_mutex_lock(&c->lock);
	for (struct vu_export **pp = &c->exports; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == a.export_id && a.export_id != VFIO_USER_P2P_EXPORT_REGIONS) {
			e = *pp;
			*pp = e->next;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (!e)
		return reply_err(c, m, ENOENT);
	export_free(e);
	return reply(c, m, NULL, 0, NULL, 0);
}

/* One command; a negative return disconnects the client. */
static int dispatch(struct vu_client *c, struct vu_msg *m)
{
	if (!c->versioned && m->hdr.cmd != VFIO_USER_VERSION)
		return reply_err(c, m, EINVAL);
	switch (m->hdr.cmd) {
	case VFIO_USER_VERSION:
		return cmd_version(c, m);
	case VFIO_USER_DMA_MAP:
		return cmd_dma_map(c, m);
	case VFIO_USER_DMA_UNMAP:
		return cmd_dma_unmap(c, m);
	case VFIO_USER_DEVICE_GET_INFO:
		return cmd_device_get_info(c, m);
	case VFIO_USER_DEVICE_GET_REGION_INFO:
		return cmd_get_region_info(c, m);
	case VFIO_USER_DEVICE_GET_IRQ_INFO:
		return cmd_get_irq_info(c, m);
	case VFIO_USER_DEVICE_SET_IRQS:
		return cmd_set_irqs(c, m);
	case VFIO_USER_REGION_READ:
		return cmd_region_read(c, m);
	case VFIO_USER_REGION_WRITE:
		return cmd_region_write(c, m);
	case VFIO_USER_REGION_WRITE_MULTI:
		return cmd_write_multi(c, m);
	case VFIO_USER_DEVICE_RESET:
		if (payload_len(m) || m->nr_fds)
			return reply_err(c, m, EINVAL);
		{
			int ret = p2p_vfio_device_reset(c->vdev);

			return ret ? reply_err(c, m, ret) : reply(c, m, NULL, 0, NULL, 0);
		}
	case VFIO_USER_DEVICE_FEATURE:
		return cmd_device_feature(c, m);
	case VFIO_USER_P2P_DMABUF_CLOSE:
		return cmd_dmabuf_close(c, m);
	case VFIO_USER_P2P_DMABUF_GET:
		return cmd_dmabuf_get(c, m);
	case VFIO_USER_DEVICE_GET_REGION_IO_FDS:
	case VFIO_USER_MIG_DATA_READ:
	case VFIO_USER_MIG_DATA_WRITE:
		return reply_err(c, m, EOPNOTSUPP);
	case VFIO_USER_DMA_READ:
	case VFIO_USER_DMA_WRITE:
	case VFIO_USER_P2P_REVOKE:
		return reply_err(c, m, EINVAL); /* server-to-client commands */
	default:
		return reply_err(c, m, ENOSYS);
	}
}

/* ---------------------------------------------------------------------- */
/* Client threads                                                          */

/* Take @c off its device's list: nobody (the watchdog, a stop) reaches it after. */
static void dev_unlist(struct vu_dev *d, struct vu_client *c)
{
	pthread_mutex_lock(&d->lock);
	for (struct vu_client **pp = &d->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	d->nr_clients--;
	pthread_mutex_unlock(&d->lock);
}

static void client_teardown(struct vu_client *c)
{
	struct p2p_vfio_user_server *srv = c->srv;
	struct vu_dev *d = c->dev;
	struct vu_export *e;

	/* Everything the client held: maps (waiting for DMA in flight), exports, IRQs. */
	maps_remove(c, true, 0, 0);
	for (;;) {
		pthread_mutex_lock(&c->lock);
		e = c->exports;
		if (e)
			c->exports = e->next;
		pthread_mutex_unlock(&c->lock);
		if (!e)
			break;
		export_free(e);
	}
	for (uint32_t i = 0; i < VU_NUM_IRQ_INDEX; i++) {
		struct vfio_irq_set k = {
			.argsz = sizeof(k),
			.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
			.index = i,
		};

		if (c->irq_set[i])
			p2p_vfio_device_ioctl(c->vdev, VFIO_DEVICE_SET_IRQS, &k);
	}
	p2p_vfio_device_close(c->vdev);
	token_put(c->born);

	dev_unlist(d, c);
	/*
	 * Closed only now that nobody can reach the client: the watchdog's
	 * client_kill() (under d->lock) must not shut down a reused fd number.
	 */
	close(c->sock);
	if (c->twin >= 0)
		close(c->twin);
	vu_rbuf_release(&c->rb);

	while (c->qhead) {
		struct vu_qent *q = c->qhead;

		c->qhead = q->next;
		vu_msg_release(&q->msg);
		free(q);
	}
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->send_lock);
	free(c);

	pthread_mutex_lock(&srv->lock);
	srv->nr_clients--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

/*
 * Commands short enough to run on the reader thread when nothing of the
 * client is queued or running (the client's order is kept): the common
 * request then costs two wake-ups, as a raw request/reply.  A reset, like
 * a config write turning memory decoding off, may wait for revoke acks,
 * this client's included: the worker reads them meanwhile (take_msg()).
 */
static bool cmd_inline_ok(uint16_t cmd)
{
	switch (cmd) {
	case VFIO_USER_DEVICE_RESET:
	case VFIO_USER_REGION_READ:
	case VFIO_USER_REGION_WRITE:
	case VFIO_USER_REGION_WRITE_MULTI:
	case VFIO_USER_DEVICE_GET_INFO:
	case VFIO_USER_DEVICE_GET_REGION_INFO:
	case VFIO_USER_DEVICE_GET_IRQ_INFO:
		return true;
	default:
		return false;
	}
}

/*
 * The connection is over: no more commands, no more replies.  The async
 * notices end with it (nothing will ack them now): their fences are
 * signalled here, by whichever thread's receive ended it, since the other
 * may be the one waiting for them (a command run inline on the reader
 * whose revoke waits for this client's ack).  Idempotent.
 */
static void client_end(struct vu_client *c)
{
	struct vu_pending *gone = NULL;

	pthread_mutex_lock(&c->lock);
	c->dead = true;
	pthread_cond_broadcast(&c->cond);
	for (struct vu_pending **pp = &c->pending; *pp;) {
		struct vu_pending *p = *pp;

		if (p->fence) {
			*pp = p->next;
			p->next = gone;
			gone = p;
		} else {
			pp = &p->next;
		}
	}
	pthread_mutex_unlock(&c->lock);
	while (gone) {
		struct vu_pending *n = gone->next;

		async_done(c->srv, gone);
		gone = n;
	}
}

/* A reply from the client (on its socket or its twin): its waiter, or dropped. */
static void reply_in(struct vu_client *c, struct vu_msg *m)
{
	struct vu_pending *p;

	pthread_mutex_lock(&c->lock);
	for (p = c->pending; p; p = p->next)
		if (p->msg_id == m->hdr.msg_id && p->cmd == m->hdr.cmd && !p->done)
			break;
	if (p && p->fence) {
		/* An async notice: acked (an error reply counts: the client answered). */
		for (struct vu_pending **pp = &c->pending; *pp; pp = &(*pp)->next) {
			if (*pp == p) {
				*pp = p->next;
				break;
			}
		}
		pthread_mutex_unlock(&c->lock);
		vu_msg_release(m);
		async_done(c->srv, p);
		return;
	}
	if (p) {
		p->done = true;
		p->err = (m->hdr.flags & VFIO_USER_F_ERROR) ? (int)m->hdr.error_no : 0;
		if (p->err == 0 && (m->hdr.flags & VFIO_USER_F_ERROR))
			p->err = EIO;
		p->reply = *m;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
	if (!p)
		vu_msg_release(m); /* a reply to nothing: dropped */
}

/*
 * Receive one message, the read role held (c->reading, set by the caller;
 * this clears it).  A reply wakes its waiter; a command is queued for the
 * worker, or, on the reader thread (@may_inline) with nothing of the
 * client queued or running, run here: the role is given up meanwhile and,
 * while a reply is awaited from the client (a revoke notice the command
 * itself may wait for, DMA_READ/WRITE of a device thread), the worker
 * reads (pending_added_locked()).  Return 0, or -1 when the connection is
 * over.
 */
static int take_msg(struct vu_client *c, bool may_inline)
{
	struct vu_qent *q;
	struct vu_msg m;
	int ret = vu_msg_recv_buffered(c->sock, &c->rb, VU_SERVER_MAX_MSG, &m);

	if (ret == -ETOOMANYREFS) {
		/* The message was read whole (in sync): refuse a command; a reply is dropped. */
		struct vu_msg hm = { .hdr = m.hdr };

		if ((m.hdr.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_COMMAND)
			reply_err(c, &hm, EINVAL);
		ret = 0;
		goto out;
	}
	if (ret)
		goto out;
	if ((m.hdr.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_REPLY) {
		reply_in(c, &m);
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	if (may_inline && !c->qhead && !c->inflight && cmd_inline_ok(m.hdr.cmd)) {
		c->inflight = true;
		c->reading = false;
		if (c->pending)
			pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		if (dispatch(c, &m) < 0)
			client_kill(c);
		vu_msg_release(&m);
		pthread_mutex_lock(&c->lock);
		c->inflight = false;
		if (c->qhead || c->pending)
			pthread_cond_broadcast(&c->cond); /* the worker: the queue, the role */
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	pthread_mutex_unlock(&c->lock);
	q = malloc(sizeof(*q));
	if (!q) {
		vu_msg_release(&m);
		ret = -ENOMEM;
		goto out;
	}
	q->msg = m;
	q->next = NULL;
	pthread_mutex_lock(&c->lock);
	/* The worker reading (a reply awaited) never waits for itself to make room. */
	while (may_inline && c->qlen >= VU_QUEUE_MAX && !c->dead)
		pthread_cond_wait(&c->cond, &c->lock);
	*c->qtail = q;
	c->qtail = &q->next;
	c->qlen++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
out:
	pthread_mutex_lock(&c->lock);
	c->reading = false;
	if (!ret && (!may_inline || c->pending))
		pthread_cond_broadcast(&c->cond); /* the role is free: the reader, or the worker */
	pthread_mutex_unlock(&c->lock);
	if (ret) {
		client_end(c);
		return -1;
	}
	return 0;
}

static void *reader_main(void *arg)
{
	struct vu_client *c = arg;

	for (;;) {
		pthread_mutex_lock(&c->lock);
		while (c->reading && !c->dead)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->dead) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		c->reading = true;
		pthread_mutex_unlock(&c->lock);
		if (take_msg(c, true))
			break;
	}
	client_end(c);
	return NULL;
}

/*
 * The twin socket's reader: replies to the server's commands.  The client
 * sends nothing else there; a command, a bad message or EOF ends the
 * connection (the client can no longer be told anything).
 */
static void *twin_main(void *arg)
{
	struct vu_client *c = arg;
	int twin = client_twin(c);

	for (;;) {
		struct vu_msg m;
		int ret = vu_msg_recv(twin, VU_SERVER_MAX_MSG, &m);

		if (ret == -ETOOMANYREFS)
			continue; /* read whole, its fds closed: a reply to drop */
		if (ret)
			break;
		if ((m.hdr.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_TYPE_REPLY) {
			vu_msg_release(&m);
			break;
		}
		reply_in(c, &m);
	}
	client_kill(c);
	client_end(c);
	return NULL;
}

/*
 * The revoke deadline of async notices: a client that has not acked in
 * time is disconnected (its reader's exit then signals the fences, and the
 * revoke returns).  Wakes every 5 ms while notices are out, sleeps otherwise.
 */
static void *watchdog_main(void *arg)
{
	struct p2p_vfio_user_server *srv = arg;

	for (;;) {
		struct timespec now;
		struct vu_dev *devs;

		pthread_mutex_lock(&srv->wd_lock);
		while (!srv->wd_stop && !atomic_load(&srv->nr_async))
			pthread_cond_wait(&srv->wd_cond, &srv->wd_lock);
		if (srv->wd_stop) {
			pthread_mutex_unlock(&srv->wd_lock);
			break;
		}
		pthread_mutex_unlock(&srv->wd_lock);
		clock_gettime(CLOCK_MONOTONIC, &now);
		/* Devices are only added (at the head) until the watchdog has stopped. */
		pthread_mutex_lock(&srv->lock);
		devs = srv->devs;
		pthread_mutex_unlock(&srv->lock);
		for (struct vu_dev *d = devs; d; d = d->next) {
			pthread_mutex_lock(&d->lock);
			for (struct vu_client *c = d->clients; c; c = c->next) {
				bool kill = false;

				pthread_mutex_lock(&c->lock);
				for (struct vu_pending *p = c->pending; p; p = p->next) {
					if (p->fence && !p->expired && vu_ts_before(&p->deadline, &now)) {
						p->expired = true;
						kill = true;
					}
				}
				pthread_mutex_unlock(&c->lock);
				if (kill)
					client_kill(c); /* what the server can enforce */
			}
			pthread_mutex_unlock(&d->lock);
		}
		usleep(5000);
	}
	return NULL;
}

static void *worker_main(void *arg)
{
	struct vu_client *c = arg;

	for (;;) {
		struct vu_qent *q;
		int ret;

		pthread_mutex_lock(&c->lock);
		/*
		 * Read only for a reply still awaited: that one comes (or the
		 * timeout disconnects).  Reading for a call already answered
		 * (its thread not yet back) would leave a command queued
		 * meanwhile, behind an inline one, unrun until the client sends
		 * something more, while it waits for that command's reply.
		 */
		while (!c->dead && !(c->qhead && !c->inflight) &&
		       !(reply_awaited_locked(c) && !c->reading && c->twin < 0))
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->dead) {
			pthread_mutex_unlock(&c->lock);
			break;
		}
		if (!c->qhead || c->inflight) {
			/* A reply is awaited and nobody reads: the read role, for one message. */
			c->reading = true;
			pthread_mutex_unlock(&c->lock);
			if (take_msg(c, false))
				break;
			continue;
		}
		q = c->qhead;
		c->qhead = q->next;
		if (!c->qhead)
			c->qtail = &c->qhead;
		c->qlen--;
		c->inflight = true;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);

		ret = dispatch(c, &q->msg);
		vu_msg_release(&q->msg);
		free(q);
		if (ret < 0)
			client_kill(c);
		pthread_mutex_lock(&c->lock);
		c->inflight = false;
		pthread_mutex_unlock(&c->lock);
	}
	client_kill(c);
	pthread_join(c->reader, NULL);
	if (c->has_twin_reader)
		pthread_join(c->twin_reader, NULL);
	client_teardown(c);
	return NULL;
}

/*
 * A connection on @fd (accepted, added, or attached through token @born:
 * its reference is the connection's on success, the caller's on failure).
 */
static int client_start(struct vu_dev *d, int fd, struct vu_token *born)
{
	struct p2p_vfio_user_server *srv = d->srv;
	struct timeval tv = { .tv_sec = 2 };
	struct vfio_device_info k = { .argsz = sizeof(k) };
	pthread_condattr_t ca;
	pthread_attr_t attr;
	pthread_t worker;
	struct vu_client *c;
	int ret;

	pthread_mutex_lock(&srv->lock);
	if (srv->stopping) {
		pthread_mutex_unlock(&srv->lock);
		close(fd);
		return -ESHUTDOWN;
	}
	srv->nr_clients++;
	pthread_mutex_unlock(&srv->lock);
	/* The slot is taken with the check (two connections at once cannot both pass it). */
	pthread_mutex_lock(&d->lock);
	ret = d->nr_clients >= srv->max_clients ? -EBUSY : 0;
	if (!ret)
		d->nr_clients++;
	pthread_mutex_unlock(&d->lock);
	if (ret) {
		c = NULL;
		goto fail_count;
	}

	c = calloc(1, sizeof(*c));
	if (!c) {
		ret = -ENOMEM;
		goto fail_slot;
	}
	c->srv = srv;
	c->dev = d;
	c->sock = fd;
	c->born = born;
	c->twin = -1;
	c->qtail = &c->qhead;
	vu_rbuf_init(&c->rb);
	c->peer_max_xfer = VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE;
	/* A client that stops reading cannot block a revoke or a reply for long. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->send_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	ret = p2p_vfio_device_open(d->pdev, &c->vdev);
	if (ret)
		goto fail_slot;
	if (p2p_vfio_device_ioctl(c->vdev, VFIO_DEVICE_GET_INFO, &k) == 0)
		c->num_regions = k.num_regions;

	pthread_mutex_lock(&d->lock);
	c->next = d->clients;
	d->clients = c;
	pthread_mutex_unlock(&d->lock);

	ret = -pthread_create(&c->reader, NULL, reader_main, c);
	if (ret)
		goto fail_list;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = -pthread_create(&worker, &attr, worker_main, c);
	pthread_attr_destroy(&attr);
	if (ret) {
		client_kill(c);
		pthread_join(c->reader, NULL);
		goto fail_list;
	}
	return 0;

fail_list:
	dev_unlist(d, c); /* and its slot */
	p2p_vfio_device_close(c->vdev);
	goto fail_free;
fail_slot:
	pthread_mutex_lock(&d->lock);
	d->nr_clients--;
	pthread_mutex_unlock(&d->lock);
fail_free:
	if (c) {
		vu_rbuf_release(&c->rb); /* what a reader that ran read ahead */
		pthread_mutex_destroy(&c->lock);
		pthread_mutex_destroy(&c->send_lock);
		pthread_cond_destroy(&c->cond);
		free(c);
	}
fail_count:
	close(fd);
	pthread_mutex_lock(&srv->lock);
	srv->nr_clients--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
	return ret;
}

static void *acceptor_main(void *arg)
{
	struct vu_dev *d = arg;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = d->lfd, .events = POLLIN },
			{ .fd = d->stop_pipe[0], .events = POLLIN },
		};

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN) {
			int fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0)
				client_start(d, fd, NULL);
		}
	}
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Server                                                                  */

P2P_API int p2p_vfio_user_server_create(const struct p2p_vfio_user_server_info *info,
					struct p2p_vfio_user_server **out)
{
	struct p2p_vfio_user_server *srv;

	if (!out || (info && (info->argsz < sizeof(*info) || info->flags)))
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	pthread_mutex_init(&srv->lock, NULL);
	pthread_mutex_init(&srv->add_lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	pthread_mutex_init(&srv->wd_lock, NULL);
	pthread_cond_init(&srv->wd_cond, NULL);
	atomic_init(&srv->nr_async, 0);
	srv->revoke_timeout_ms = info && info->revoke_timeout_ms ? info->revoke_timeout_ms : 1000;
	srv->max_clients = info && info->max_clients ? info->max_clients : 64;
	pthread_mutex_init(&srv->tok_lock, NULL);
	srv->tok_pipe[0] = srv->tok_pipe[1] = -1;
	if (pipe2(srv->tok_pipe, O_CLOEXEC | O_NONBLOCK) ||
	    pthread_create(&srv->tok_thread, NULL, token_main, srv))
		goto fail;
	srv->has_tok_thread = true;
	if (pthread_create(&srv->watchdog, NULL, watchdog_main, srv)) {
fail:
		if (srv->has_tok_thread) {
			srv->tok_stop = true;
			token_kick(srv);
			pthread_join(srv->tok_thread, NULL);
		}
		for (int i = 0; i < 2; i++)
			if (srv->tok_pipe[i] >= 0)
				close(srv->tok_pipe[i]);
		pthread_mutex_destroy(&srv->tok_lock);
		pthread_cond_destroy(&srv->wd_cond);
		pthread_mutex_destroy(&srv->wd_lock);
		pthread_cond_destroy(&srv->cond);
		pthread_mutex_destroy(&srv->add_lock);
		pthread_mutex_destroy(&srv->lock);
		free(srv);
		return -EAGAIN;
	}
	srv->has_watchdog = true;
	*out = srv;
	return 0;
}

static struct vu_dev *dev_find(struct p2p_vfio_user_server *srv, struct p2p_pci_dev *pdev)
{
	struct vu_dev *d;

	pthread_mutex_lock(&srv->lock);
	for (d = srv->devs; d; d = d->next)
		if (d->pdev == pdev)
			break;
	pthread_mutex_unlock(&srv->lock);
	return d;
}

static void dev_free(struct vu_dev *d)
{
	if (d->ioas) {
		p2p_vfio_device_detach_ioas(d->vdev);
		p2p_ioas_put(d->ioas);
	}
	if (d->ictx)
		p2p_iommufd_close(d->ictx);
	if (d->vdev)
		p2p_vfio_device_close(d->vdev);
	if (d->lfd >= 0)
		close(d->lfd);
	if (d->path) {
		unlink(d->path);
		free(d->path);
	}
	for (int i = 0; i < 2; i++)
		if (d->stop_pipe[i] >= 0)
			close(d->stop_pipe[i]);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* A device without a socket yet. */
static int dev_new(struct p2p_vfio_user_server *srv, struct p2p_pci_dev *pdev, struct vu_dev **out)
{
	struct vu_dev *d = calloc(1, sizeof(*d));
	uint32_t id;
	int ret;

	if (!d)
		return -ENOMEM;
	d->srv = srv;
	d->lfd = -1;
	d->stop_pipe[0] = d->stop_pipe[1] = -1;
	pthread_mutex_init(&d->lock, NULL);
	/* The creator's reference is borrowed: take our own through the open file. */
	ret = p2p_vfio_device_open(pdev, &d->vdev);
	if (ret)
		goto fail;
	/*
	 * Set before any connection can start (the acceptor runs before
	 * dev_link()): kept alive by d->vdev; the pointer identifies the device.
	 */
	d->pdev = pdev;
	ret = p2p_iommufd_open(&d->ictx);
	if (ret)
		goto fail;
	ret = p2p_ioas_alloc(d->ictx, &id, &d->ioas);
	if (ret)
		goto fail;
	ret = p2p_vfio_device_attach_ioas(d->vdev, d->ioas);
	if (ret) {
		p2p_ioas_put(d->ioas);
		d->ioas = NULL;
		goto fail;
	}
	*out = d;
	return 0;
fail:
	dev_free(d);
	return ret;
}

static void dev_link(struct p2p_vfio_user_server *srv, struct vu_dev *d)
{
	pthread_mutex_lock(&srv->lock);
	d->next = srv->devs;
	srv->devs = d;
	pthread_mutex_unlock(&srv->lock);
}

/*
 * Bind @fd to @path and listen, so that the path appears only once it
 * takes connections: a client that waits for the socket file (as QEMU's
 * and our tests do) never meets ECONNREFUSED between bind(2) and
 * listen(2).  The socket is bound to a temporary name beside @path, put
 * to listening, then hard-linked to @path (EADDRINUSE if it exists, as
 * bind(2) says) and the temporary name removed.  A path too long for a
 * temporary name beside it is bound directly.
 */
static int listen_at(int fd, const char *path)
{
	static atomic_uint seq;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%d.%u~", path, (int)getpid(),
			 atomic_fetch_add(&seq, 1));
	bool tmp = n >= 0 && (size_t)n < sizeof(sa.sun_path);
	int ret = 0;

	if (!tmp)
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		return -errno;
	if (listen(fd, 64) || (tmp && link(sa.sun_path, path)))
		ret = errno == EEXIST ? -EADDRINUSE : -errno;
	/* The temporary name always goes; @path itself only if it does not listen. */
	if (tmp || ret)
		unlink(sa.sun_path);
	return ret;
}

P2P_API int p2p_vfio_user_server_add(struct p2p_vfio_user_server *srv, struct p2p_pci_dev *pdev,
				     const char *path)
{
	struct sockaddr_un sa;
	struct vu_dev *d;
	int ret;

	if (!srv || !pdev || !path || strlen(path) >= sizeof(sa.sun_path))
		return -EINVAL;
	pthread_mutex_lock(&srv->add_lock);
	ret = dev_find(srv, pdev) ? -EEXIST : dev_new(srv, pdev, &d);
	if (ret) {
		pthread_mutex_unlock(&srv->add_lock);
		return ret;
	}
	d->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (d->lfd < 0 || pipe2(d->stop_pipe, O_CLOEXEC)) {
		ret = -errno;
		goto fail;
	}
	ret = listen_at(d->lfd, path);
	if (ret)
		goto fail;
	d->path = strdup(path);
	if (!d->path) {
		unlink(path);
		ret = -ENOMEM;
		goto fail;
	}
	ret = -pthread_create(&d->acceptor, NULL, acceptor_main, d);
	if (ret)
		goto fail;
	d->has_acceptor = true;
	dev_link(srv, d);
	pthread_mutex_unlock(&srv->add_lock);
	return 0;
fail:
	pthread_mutex_unlock(&srv->add_lock);
	dev_free(d);
	return ret;
}

P2P_API int p2p_vfio_user_server_add_fd(struct p2p_vfio_user_server *srv, struct p2p_pci_dev *pdev,
					int fd)
{
	struct vu_dev *d;
	int ret;

	if (!srv || !pdev || fd < 0) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	/* One device per function, however many connections are added at once. */
	pthread_mutex_lock(&srv->add_lock);
	d = dev_find(srv, pdev);
	if (!d) {
		ret = dev_new(srv, pdev, &d);
		if (ret) {
			pthread_mutex_unlock(&srv->add_lock);
			close(fd);
			return ret;
		}
		dev_link(srv, d);
	}
	pthread_mutex_unlock(&srv->add_lock);
	return client_start(d, fd, NULL);
}

P2P_API unsigned int p2p_vfio_user_server_nr_clients(struct p2p_vfio_user_server *srv)
{
	unsigned int n;

	pthread_mutex_lock(&srv->lock);
	n = srv->nr_clients;
	pthread_mutex_unlock(&srv->lock);
	return n;
}

P2P_API void p2p_vfio_user_server_destroy(struct p2p_vfio_user_server *srv)
{
	struct vu_dev *d;

	if (!srv)
		return;
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->lock);
	/* No new clients. */
	for (d = srv->devs; d; d = d->next) {
		if (d->has_acceptor) {
			if (write(d->stop_pipe[1], "x", 1) < 0)
				shutdown(d->lfd, SHUT_RDWR);
			pthread_join(d->acceptor, NULL);
		}
	}
	/* No new attaches through tokens either. */
	pthread_mutex_lock(&srv->tok_lock);
	srv->tok_stop = true;
	pthread_mutex_unlock(&srv->tok_lock);
	token_kick(srv);
	pthread_join(srv->tok_thread, NULL);
	/* Disconnect everyone; their workers drop what they held. */
	for (d = srv->devs; d; d = d->next) {
		pthread_mutex_lock(&d->lock);
		for (struct vu_client *c = d->clients; c; c = c->next)
			client_kill(c);
		pthread_mutex_unlock(&d->lock);
	}
	pthread_mutex_lock(&srv->lock);
	while (srv->nr_clients)
		pthread_cond_wait(&srv->cond, &srv->lock);
	pthread_mutex_unlock(&srv->lock);
	pthread_mutex_lock(&srv->wd_lock);
	srv->wd_stop = true;
	pthread_cond_broadcast(&srv->wd_cond);
	pthread_mutex_unlock(&srv->wd_lock);
	if (srv->has_watchdog)
		pthread_join(srv->watchdog, NULL);
	/* The exports the tokens held go (before their devices). */
	while (srv->tokens) {
		struct vu_token *t = srv->tokens;

		srv->tokens = t->next;
		close(t->sock);
		token_put(t);
	}
	close(srv->tok_pipe[0]);
	close(srv->tok_pipe[1]);
	pthread_mutex_destroy(&srv->tok_lock);
	while ((d = srv->devs)) {
		srv->devs = d->next;
		dev_free(d);
	}
	pthread_mutex_destroy(&srv->add_lock);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->cond);
	pthread_cond_destroy(&srv->wd_cond);
	pthread_mutex_destroy(&srv->wd_lock);
	free(srv);
}
