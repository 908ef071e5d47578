// SPDX-License-Identifier: MIT
/*
 * A received token's buffer starts, and ends, in the server's state whatever
 * order its DMABUF_GET reply and its revoke/restore notices come in.
 *
 * A scripted server (a thread of this process, raw messages) plays the
 * export's side: a token is a SOCK_SEQPACKET pair whose server end is bound
 * to a VFIO_USER_P2P_TOKEN_PREFIX name, so this process's own lookups of
 * the other end go to the vfio-user client's resolver.  The thread takes
 * the attach datagram, answers VERSION, and around the DMABUF_GET reply
 * sends notices in the order each case wants:
 *  - a restore before a "revoked" reply (the export was revoked when the
 *    reply was made, restored right after): the buffer must end usable;
 *  - a revoke before an "OK" reply, its ack awaited first (so the worker
 *    saw it before the buffer existed): the buffer must be revoked when the
 *    lookup returns, since the server holds our word that nothing maps it;
 *  - a restore right after a "revoked" reply (it may reach the worker
 *    before the buffer is listed): the buffer must end usable;
 *  - a "revoked for good" reply, and a for-good revoke before an "OK"
 *    reply: the buffer is revoked for good (P2P_DMABUF_PERM_REVOKED, an
 *    un-revoke is EBADFD), as a local buffer revoked for good.
 * The real server's side of the same (feature 13 before the attach) is in
 * tests/vfio-user-token.c.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>
#include <p2pbuf/vfio_user.h>

#include "harness.h"
#include "vfio-user/proto.h"

#define PG 4096u
#define LEN (4 * PG)
#define EXPORT_ID 1ull

enum order {
	RESTORE_BEFORE,	 /* restore notice, then a REVOKED reply */
	REVOKE_BEFORE,	 /* revoke notice (acked), then an OK reply */
	RESTORE_AFTER,	 /* REVOKED reply, then a restore notice */
	FOR_GOOD_REPLY,	 /* REVOKED | FOR_GOOD reply */
	FOR_GOOD_BEFORE, /* for-good revoke notice (acked), then an OK reply */
};

struct fake {
	enum order order;
	int tok; /* the server's end of the token */
	int mem; /* the export's memory */
	int sock; /* the connection attached through the token */
	bool acked; /* the revoke notice before the reply was acked */
	pthread_t thr;
};

/* One message from @s: its header, payload into @p (up to @n); -1 at EOF or error. */
static int rd(int s, struct vfio_user_header *h, void *p, size_t n)
{
	struct pollfd pf = { .fd = s, .events = POLLIN };
	size_t got = 0, want;
	ssize_t r;

	if (poll(&pf, 1, 10000) != 1)
		return -1;
	if (recv(s, h, sizeof(*h), MSG_WAITALL) != (ssize_t)sizeof(*h) || h->msg_size < sizeof(*h))
		return -1;
	want = h->msg_size - sizeof(*h);
	while (got < want) {
		char junk[256];
		size_t room = got < n ? n - got : sizeof(junk), take = want - got;

		if (take > room)
			take = room;

		r = recv(s, got < n ? (char *)p + got : junk, take, MSG_WAITALL);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static int wr(int s, uint16_t id, uint16_t cmd, uint32_t flags, const void *p, size_t n, int fd)
{
	struct vfio_user_header h = { .msg_id = id, .cmd = cmd,
				      .msg_size = (uint32_t)(sizeof(h) + n), .flags = flags };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, n } };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} u;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n ? 2 : 1 };

	if (fd >= 0) {
		memset(u.b, 0, sizeof(u.b));
		mh.msg_control = u.b;
		mh.msg_controllen = sizeof(u.b);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(s, &mh, MSG_NOSIGNAL) == (ssize_t)(sizeof(h) + n) ? 0 : -1;
}

static int notice(struct fake *f, uint16_t id, uint32_t flags)
{
	struct vfio_user_p2p_revoke r = { .argsz = sizeof(r), .flags = flags,
					  .export_id = EXPORT_ID };

	return wr(f->sock, id, VFIO_USER_P2P_REVOKE, VFIO_USER_F_TYPE_COMMAND, &r, sizeof(r), -1);
}

/* Wait for the reply (the ack) to notice @id; other messages are skipped. */
static bool wait_ack(struct fake *f, uint16_t id)
{
	struct vfio_user_header h;
	uint8_t p[64];

	while (!rd(f->sock, &h, p, sizeof(p)))
		if ((h.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_REPLY && h.msg_id == id)
			return !(h.flags & VFIO_USER_F_ERROR);
	return false;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct vfio_user_p2p_token_attach a;
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr al;
	} u;
	struct iovec iov = { .iov_base = &a, .iov_len = sizeof(a) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			     .msg_controllen = sizeof(u.b) };
	struct pollfd pf = { .fd = f->tok, .events = POLLIN };
	struct vfio_user_header h;
	uint8_t p[512];
	struct cmsghdr *cm;
	struct {
		struct vfio_user_p2p_dmabuf d;
		struct vfio_user_p2p_dmabuf_range r;
	} rep = { .d = { .argsz = sizeof(rep), .export_id = EXPORT_ID, .size = LEN,
			 .region_index = 2, .nr_ranges = 1 },
		  .r = { .fd_offset = 0, .length = LEN } };
	static const char caps[] = "{\"capabilities\":{\"p2pbuf\":{\"dmabuf\":1,\"revoke\":1}}}";
	uint8_t vbuf[sizeof(struct vfio_user_version) + sizeof(caps)];
	struct vfio_user_version v = { .major = 0, .minor = 1 };

	f->sock = -1;
	if (poll(&pf, 1, 10000) != 1 || recvmsg(f->tok, &mh, MSG_CMSG_CLOEXEC) != sizeof(a))
		return NULL;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return NULL;
	memcpy(&f->sock, CMSG_DATA(cm), sizeof(int));
	/* VERSION */
	if (rd(f->sock, &h, p, sizeof(p)) || h.cmd != VFIO_USER_VERSION)
		return NULL;
	memcpy(vbuf, &v, sizeof(v));
	memcpy(vbuf + sizeof(v), caps, sizeof(caps));
	if (wr(f->sock, h.msg_id, h.cmd, VFIO_USER_F_TYPE_REPLY, vbuf, sizeof(vbuf), -1))
		return NULL;
	/* DMABUF_GET, and the notices around its reply */
	if (rd(f->sock, &h, p, sizeof(p)) || h.cmd != VFIO_USER_P2P_DMABUF_GET)
		return NULL;
	rep.d.flags = VFIO_USER_P2P_DMABUF_F_WRITE;
	switch (f->order) {
	case RESTORE_BEFORE:
		notice(f, 1000, 0);
		usleep(50000); /* the worker has handled it: nothing is listed yet */
		rep.d.flags |= VFIO_USER_P2P_DMABUF_F_REVOKED;
		break;
	case REVOKE_BEFORE:
	case FOR_GOOD_BEFORE:
		notice(f, 1000, VFIO_USER_P2P_REVOKE_F_REVOKED |
					(f->order == FOR_GOOD_BEFORE ? VFIO_USER_P2P_REVOKE_F_FOR_GOOD :
								       0));
		f->acked = wait_ack(f, 1000);
		break;
	case RESTORE_AFTER:
		rep.d.flags |= VFIO_USER_P2P_DMABUF_F_REVOKED;
		break;
	case FOR_GOOD_REPLY:
		rep.d.flags |= VFIO_USER_P2P_DMABUF_F_REVOKED | VFIO_USER_P2P_DMABUF_F_FOR_GOOD;
		break;
	}
	if (wr(f->sock, h.msg_id, h.cmd, VFIO_USER_F_TYPE_REPLY, &rep, sizeof(rep), f->mem))
		return NULL;
	if (f->order == RESTORE_AFTER)
		notice(f, 1001, 0);
	/* Until the buffer's close ends the connection (DMABUF_CLOSE, then EOF). */
	while (!rd(f->sock, &h, p, sizeof(p)))
		;
	return NULL;
}

/* A token of a scripted server, and that server's thread. */
static int fake_start(struct fake *f, enum order order, int n)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int sv[2], len;

	memset(f, 0, sizeof(*f));
	f->order = order;
	f->mem = memfd_create("fake-bar", MFD_CLOEXEC);
	if (f->mem < 0 || ftruncate(f->mem, LEN) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -1;
	len = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "%s%d/%d/test",
		       VFIO_USER_P2P_TOKEN_PREFIX, (int)getpid(), n);
	if (bind(sv[1], (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len)))
		return -1;
	f->tok = sv[1];
	if (pthread_create(&f->thr, NULL, fake_main, f))
		return -1;
	return sv[0];
}

static void fake_end(struct fake *f)
{
	pthread_join(f->thr, NULL);
	if (f->sock >= 0)
		close(f->sock);
	close(f->tok);
	close(f->mem);
}

/* The buffer's status once it settled (the restore notice is applied asynchronously). */
static enum p2p_dmabuf_status settle(struct p2p_dmabuf *buf, enum p2p_dmabuf_status want)
{
	for (int i = 0; i < 200 && p2p_dmabuf_status(buf) != want; i++)
		usleep(5000);
	return p2p_dmabuf_status(buf);
}

static void one(enum order order, int n)
{
	struct p2p_dmabuf *buf = NULL;
	struct fake f;
	uint8_t *m = NULL;
	int fd = fake_start(&f, order, n);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	if (!buf) {
		close(fd);
		fake_end(&f);
		return;
	}
	switch (order) {
	case RESTORE_BEFORE:
	case RESTORE_AFTER:
		CHECK(settle(buf, P2P_DMABUF_OK) == P2P_DMABUF_OK);
		CHECK_OK(p2p_fd_mmap(fd, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
				     (void **)&m));
		CHECK(m && !t_write_faults(m, 7) && !t_read_faults(m + LEN - 1));
		break;
	case REVOKE_BEFORE:
		/* At once: the revoke was acked before the buffer existed. */
		CHECK(f.acked);
		CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);
		CHECK_OK(p2p_fd_mmap(fd, NULL, LEN, PROT_READ, MAP_SHARED, 0, (void **)&m));
		CHECK(m && t_read_faults(m));
		break;
	case FOR_GOOD_REPLY:
	case FOR_GOOD_BEFORE:
		CHECK(order == FOR_GOOD_REPLY || f.acked);
		CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
		/* As a local buffer revoked for good: no way back. */
		CHECK_ERR(p2p_dmabuf_unrevoke(buf), -EBADFD);
		CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
		break;
	}
	if (m)
		p2p_munmap(m, LEN);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
	fake_end(&f);
}

int main(void)
{
	static const char *const names[] = {
		"restore before a revoked reply",
		"revoke (acked) before an OK reply",
		"restore right after a revoked reply",
		"revoked-for-good reply",
		"for-good revoke (acked) before an OK reply",
	};
	int n = 0, nfds;

	t_begin();
	t_require_uffd();
	/* A static link pulls the vfio-user client (and its fd resolver) in only if used. */
	CHECK_ERR(p2p_vfio_user_connect(NULL, NULL, NULL), -EINVAL);
	nfds = t_count_fds();
	for (int o = RESTORE_BEFORE; o <= FOR_GOOD_BEFORE; o++) {
		int rounds = o == RESTORE_AFTER ? 50 : 3;

		t_section(names[o]);
		for (int i = 0; i < rounds; i++)
			one((enum order)o, n++);
	}
	/* Each attach connection's threads end (and close its socket) right after the close. */
	for (int i = 0; i < 200 && t_count_fds() > nfds; i++)
		usleep(10000);
	return t_end();
}
