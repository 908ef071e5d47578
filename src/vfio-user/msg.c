// SPDX-License-Identifier: MIT
/*
 * vfio-user framing (msg.h): one whole message at a time, fds as SCM_RIGHTS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "msg.h"

#define VU_KNOWN_FLAGS (VFIO_USER_F_TYPE_MASK | VFIO_USER_F_NO_REPLY | VFIO_USER_F_ERROR)

int vu_hdr_check(const struct vfio_user_header *hdr, size_t max)
{
	uint32_t type = hdr->flags & VFIO_USER_F_TYPE_MASK;

	if (hdr->msg_size < sizeof(*hdr))
		return -EBADMSG;
	if (type != VFIO_USER_F_TYPE_COMMAND && type != VFIO_USER_F_TYPE_REPLY)
		return -EBADMSG;
	if (hdr->flags & ~VU_KNOWN_FLAGS)
		return -EBADMSG;
	if (type == VFIO_USER_F_TYPE_COMMAND && (hdr->flags & VFIO_USER_F_ERROR))
		return -EBADMSG;
	if (hdr->msg_size > max)
		return -EMSGSIZE;
	return 0;
}

int vu_msg_parse(const void *data, size_t len, size_t max, struct vu_msg *msg)
{
	int ret;

	memset(msg, 0, sizeof(*msg));
	if (len < sizeof(msg->hdr))
		return -EBADMSG;
	memcpy(&msg->hdr, data, sizeof(msg->hdr));
	ret = vu_hdr_check(&msg->hdr, max);
	if (ret)
		return ret;
	if (msg->hdr.msg_size != len)
		return -EBADMSG;
	msg->buf = malloc(len);
	if (!msg->buf)
		return -ENOMEM;
	memcpy(msg->buf, data, len);
	msg->size = len;
	return 0;
}

static void close_fds(int *fds, unsigned int *n)
{
	for (unsigned int i = 0; i < *n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	*n = 0;
}

/*
 * Take the fds of @mh's SCM_RIGHTS into @fds, which has room for
 * VU_MAX_FDS and holds *@n already; those past the room are closed.
 * Return: true if any fd was dropped (past the room, or by the kernel:
 * MSG_CTRUNC).
 */
static bool take_fds(const struct msghdr *mh, int *fds, unsigned int *n)
{
	bool dropped = mh->msg_flags & MSG_CTRUNC;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(f));
			if (*n < VU_MAX_FDS) {
				fds[(*n)++] = f;
			} else {
				close(f);
				dropped = true;
			}
		}
	}
	return dropped;
}

/*
 * Read exactly @len bytes, collecting the fds that come with them.
 * *@trunc is set if the kernel dropped fds (more than we had room for).
 */
static int recv_exact(int sock, void *buf, size_t len, struct vu_msg *msg, bool *trunc)
{
	uint8_t *p = buf;

	while (len) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
		} cbuf;
		struct iovec iov = { .iov_base = p, .iov_len = len };
		struct msghdr mh = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = cbuf.buf,
			.msg_controllen = sizeof(cbuf.buf),
		};
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == ECONNRESET ? -ECONNRESET : -errno;
		}
		if (take_fds(&mh, msg->fds, &msg->nr_fds))
			*trunc = true;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int vu_msg_recv(int sock, size_t max, struct vu_msg *msg)
{
	bool trunc = false;
	int ret;

	memset(msg, 0, sizeof(*msg));
	for (int i = 0; i < VU_MAX_FDS; i++)
		msg->fds[i] = -1;
	ret = recv_exact(sock, &msg->hdr, sizeof(msg->hdr), msg, &trunc);
	if (ret)
		goto fail;
	ret = vu_hdr_check(&msg->hdr, max);
	if (ret)
		goto fail;
	msg->size = msg->hdr.msg_size;
	msg->buf = malloc(msg->size);
	if (!msg->buf) {
		ret = -ENOMEM;
		goto fail;
	}
	memcpy(msg->buf, &msg->hdr, sizeof(msg->hdr));
	ret = recv_exact(sock, msg->buf + sizeof(msg->hdr), msg->size - sizeof(msg->hdr), msg,
			 &trunc);
	if (ret)
		goto fail;
	if (trunc) {
		ret = -ETOOMANYREFS;
		goto fail;
	}
	return 0;
fail:
	free(msg->buf);
	msg->buf = NULL;
	close_fds(msg->fds, &msg->nr_fds);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Buffered receive                                                        */

#define VU_RBUF_MIN (16u << 10)

void vu_rbuf_init(struct vu_rbuf *rb)
{
	memset(rb, 0, sizeof(*rb));
}

void vu_rbuf_release(struct vu_rbuf *rb)
{
	for (unsigned int i = 0; i < rb->nr_fdq; i++)
		close_fds(rb->fdq[i].fds, &rb->fdq[i].nr);
	free(rb->buf);
	vu_rbuf_init(rb);
}

/*
 * The stream offset of the last message that starts before @end (the end
 * of the bytes just read): walk the headers from the first message not
 * returned.  A header not whole yet, or not valid, ends the walk there.
 */
static uint64_t last_start(const struct vu_rbuf *rb, uint64_t end, size_t max)
{
	uint64_t at = rb->base + rb->head;

	for (;;) {
		struct vfio_user_header h;
		size_t i = (size_t)(at - rb->base);

		if (rb->tail - i < sizeof(h))
			return at;
		memcpy(&h, rb->buf + i, sizeof(h));
		if (vu_hdr_check(&h, max) || at + h.msg_size >= end)
			return at;
		at += h.msg_size;
	}
}

/* Queue the fds of one read for the message at stream offset @at. */
static int fdq_add(struct vu_rbuf *rb, uint64_t at, const int *fds, unsigned int n, bool trunc)
{
	unsigned int q;

	for (q = 0; q < rb->nr_fdq && rb->fdq[q].at != at; q++)
		;
	if (q == rb->nr_fdq) {
		if (q == sizeof(rb->fdq) / sizeof(rb->fdq[0])) {
			for (unsigned int i = 0; i < n; i++)
				close(fds[i]);
			return -EPROTO;
		}
		rb->fdq[q].at = at;
		rb->fdq[q].nr = 0;
		rb->fdq[q].trunc = false;
		rb->nr_fdq++;
	}
	for (unsigned int i = 0; i < n; i++) {
		if (rb->fdq[q].nr < VU_MAX_FDS) {
			rb->fdq[q].fds[rb->fdq[q].nr++] = fds[i];
		} else {
			close(fds[i]);
			rb->fdq[q].trunc = true;
		}
	}
	rb->fdq[q].trunc |= trunc;
	return 0;
}

/* Take the fds queued for the message at @at into @msg; *@trunc if some were dropped. */
static void fdq_take(struct vu_rbuf *rb, uint64_t at, struct vu_msg *msg, bool *trunc)
{
	for (unsigned int q = 0; q < rb->nr_fdq;) {
		if (rb->fdq[q].at > at) {
			q++;
			continue;
		}
		/* Its own, or (never for a sane sender) of a message already gone: closed. */
		if (rb->fdq[q].at == at) {
			memcpy(msg->fds, rb->fdq[q].fds, rb->fdq[q].nr * sizeof(int));
			msg->nr_fds = rb->fdq[q].nr;
			*trunc = rb->fdq[q].trunc;
		} else {
			close_fds(rb->fdq[q].fds, &rb->fdq[q].nr);
		}
		rb->fdq[q] = rb->fdq[--rb->nr_fdq];
	}
}

/* Room for @need bytes from head on: move what is unread to the front, grow. */
static int rbuf_room(struct vu_rbuf *rb, size_t need)
{
	size_t want = need > VU_RBUF_MIN ? need : VU_RBUF_MIN;

	/* Moved to the front when what is left after head would not take @need, or is small. */
	if (rb->head && rb->cap - rb->head < (need > VU_RBUF_MIN / 2 ? need : VU_RBUF_MIN / 2)) {
		memmove(rb->buf, rb->buf + rb->head, rb->tail - rb->head);
		rb->base += rb->head;
		rb->tail -= rb->head;
		rb->head = 0;
	}
	if (rb->cap < want) {
		uint8_t *b = realloc(rb->buf, want);

		if (!b)
			return -ENOMEM;
		rb->buf = b;
		rb->cap = want;
	}
	return 0;
}

int vu_msg_recv_buffered(int sock, struct vu_rbuf *rb, size_t max, struct vu_msg *msg)
{
	int ret;

	memset(msg, 0, sizeof(*msg));
	for (int i = 0; i < VU_MAX_FDS; i++)
		msg->fds[i] = -1;
	for (;;) {
		size_t avail = rb->tail - rb->head, need = sizeof(msg->hdr);

		if (avail >= sizeof(msg->hdr)) {
			memcpy(&msg->hdr, rb->buf + rb->head, sizeof(msg->hdr));
			ret = vu_hdr_check(&msg->hdr, max);
			if (ret)
				return ret;
			need = msg->hdr.msg_size;
			if (avail >= need) {
				uint64_t at = rb->base + rb->head;
				bool trunc = false;

				msg->buf = malloc(need);
				if (!msg->buf)
					return -ENOMEM;
				memcpy(msg->buf, rb->buf + rb->head, need);
				msg->size = need;
				rb->head += need;
				if (rb->head == rb->tail) {
					rb->base += rb->head;
					rb->head = rb->tail = 0;
				}
				fdq_take(rb, at, msg, &trunc);
				if (trunc) {
					vu_msg_release(msg);
					return -ETOOMANYREFS;
				}
				return 0;
			}
		}
		ret = rbuf_room(rb, need);
		if (ret)
			return ret;

		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
		} cbuf;
		struct iovec iov = { .iov_base = rb->buf + rb->tail, .iov_len = rb->cap - rb->tail };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
				     .msg_controllen = sizeof(cbuf.buf) };
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		int fds[VU_MAX_FDS];
		unsigned int nfd = 0;
		bool over;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		over = take_fds(&mh, fds, &nfd);
		if (n == 0) {
			for (unsigned int i = 0; i < nfd; i++)
				close(fds[i]);
			return -ECONNRESET;
		}
		rb->tail += (size_t)n;
		if (nfd || over) {
			ret = fdq_add(rb, last_start(rb, rb->base + rb->tail, max), fds, nfd, over);
			if (ret)
				return ret;
		}
	}
}

void vu_msg_release(struct vu_msg *msg)
{
	free(msg->buf);
	msg->buf = NULL;
	close_fds(msg->fds, &msg->nr_fds);
}

int vu_msg_sendv(int sock, struct vfio_user_header *hdr, const struct iovec *iov, int iovcnt,
		 const int *fds, unsigned int nr_fds)
{
	struct iovec v[8];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
	} cbuf;
	struct msghdr mh = { .msg_iov = v };
	size_t total = sizeof(*hdr);
	int n = 1;

	if (iovcnt < 0 || iovcnt > 7 || nr_fds > VU_MAX_FDS)
		return -EINVAL;
	v[0].iov_base = hdr;
	v[0].iov_len = sizeof(*hdr);
	for (int i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_len)
			continue;
		v[n++] = iov[i];
		total += iov[i].iov_len;
	}
	if (total > UINT32_MAX)
		return -EMSGSIZE;
	hdr->msg_size = (uint32_t)total;
	mh.msg_iovlen = (size_t)n;
	if (nr_fds) {
		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nr_fds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nr_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nr_fds);
	}
	while (total) {
		ssize_t w = sendmsg(sock, &mh, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* The fds went with the first byte. */
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
		total -= (size_t)w;
		while (w > 0 && mh.msg_iovlen) {
			if ((size_t)w >= mh.msg_iov[0].iov_len) {
				w -= (ssize_t)mh.msg_iov[0].iov_len;
				mh.msg_iov++;
				mh.msg_iovlen--;
			} else {
				mh.msg_iov[0].iov_base = (uint8_t *)mh.msg_iov[0].iov_base + w;
				mh.msg_iov[0].iov_len -= (size_t)w;
				w = 0;
			}
		}
	}
	return 0;
}

int vu_msg_send(int sock, struct vfio_user_header *hdr, const void *payload, size_t len,
		const int *fds, unsigned int nr_fds)
{
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };

	return vu_msg_sendv(sock, hdr, &iov, payload ? 1 : 0, fds, nr_fds);
}

int vu_send_error(int sock, const struct vfio_user_header *req, int err)
{
	struct vfio_user_header h = {
		.msg_id = req->msg_id,
		.cmd = req->cmd,
		.flags = VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR,
		.error_no = (uint32_t)(err < 0 ? -err : err),
	};

	return vu_msg_send(sock, &h, NULL, 0, NULL, 0);
}

int vu_token_recv(int sock, int *fd)
{
	struct vfio_user_p2p_token_attach a = { 0 };
	uint8_t data[sizeof(a) + 1];
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	int fds[VU_MAX_FDS];
	unsigned int nr = 0;
	int type = 0, dom = 0;
	socklen_t sl = sizeof(type);
	ssize_t n;

	do
		n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	take_fds(&mh, fds, &nr); /* more than one is junk anyway */
	if ((size_t)n >= sizeof(a))
		memcpy(&a, data, sizeof(a));
	if ((size_t)n != sizeof(a) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || nr != 1 ||
	    a.magic != VFIO_USER_P2P_TOKEN_MAGIC || a.version != VFIO_USER_P2P_TOKEN_VERSION ||
	    getsockopt(fds[0], SOL_SOCKET, SO_DOMAIN, &dom, &sl) || dom != AF_UNIX ||
	    getsockopt(fds[0], SOL_SOCKET, SO_TYPE, &type, &sl) || type != SOCK_STREAM) {
		close_fds(fds, &nr);
		return -EINVAL;
	}
	*fd = fds[0];
	return 0;
}

void vu_deadline_in(struct timespec *ts, uint64_t ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ns / 1000000000ull);
	ts->tv_nsec += (long)(ns % 1000000000ull);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

bool vu_ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}
