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
 * Then against `p2pbuf serve`, with raw clients: an export revoked for good
 * (feature 13) before the attach makes a buffer revoked for good here (the
 * server answers REVOKED | FOR_GOOD without the memory); and 60 tokens are
 * resolved while another client flips memory decoding off and on: each
 * attach that succeeds (one while decoding is off is ENODEV) ends usable
 * once decoding is back on.  (That race passes without the client's fix
 * too on this machine: the server's window between attaching its importer
 * and reading the state for the reply is small; the scripted cases above
 * are the deterministic ones.)
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>
#include <p2pbuf/vfio_user.h>

#include "harness.h"
#include "vfio-user/proto.h"

#define PG 4096u
#define MIN2(a, b) ((a) < (b) ? (a) : (b))
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
		size_t take = MIN2(got < n ? n - got : sizeof(junk), want - got);

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
	struct vfio_user_p2p_dmabuf d = { .argsz = 32 + 16, /* one range */
					  .export_id = EXPORT_ID, .size = LEN, .region_index = 2,
					  .nr_ranges = 1 };
	struct vfio_user_p2p_dmabuf_range rg = { .fd_offset = 0, .length = LEN };
	uint8_t rep[sizeof(d) + sizeof(rg)];
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
	d.flags = VFIO_USER_P2P_DMABUF_F_WRITE;
	switch (f->order) {
	case RESTORE_BEFORE:
		notice(f, 1000, 0);
		usleep(50000); /* the worker has handled it: nothing is listed yet */
		d.flags |= VFIO_USER_P2P_DMABUF_F_REVOKED;
		break;
	case REVOKE_BEFORE:
	case FOR_GOOD_BEFORE:
		notice(f, 1000,
		       VFIO_USER_P2P_REVOKE_F_REVOKED |
			       (f->order == FOR_GOOD_BEFORE ? VFIO_USER_P2P_REVOKE_F_FOR_GOOD : 0));
		f->acked = wait_ack(f, 1000);
		break;
	case RESTORE_AFTER:
		d.flags |= VFIO_USER_P2P_DMABUF_F_REVOKED;
		break;
	case FOR_GOOD_REPLY:
		d.flags |= VFIO_USER_P2P_DMABUF_F_REVOKED | VFIO_USER_P2P_DMABUF_F_FOR_GOOD;
		break;
	}
	memcpy(rep, &d, sizeof(d));
	memcpy(rep + sizeof(d), &rg, sizeof(rg));
	if (wr(f->sock, h.msg_id, h.cmd, VFIO_USER_F_TYPE_REPLY, rep, sizeof(rep), f->mem))
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


/* ---------------------------------------------------------------------- */
/* The real server (`p2pbuf serve`), raw clients                           */

#define GPU "0000:01:00.0"
static char dir[64];
static uint16_t raw_id = 1;

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, GPU);
	if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa))) {
		close(s);
		s = -1;
	}
	return s;
}

/*
 * Command @cmd and its reply: 0, the server's errno, or -1.  Up to 2 fds of
 * the reply in @fds (-1 for none), its payload in @p (up to @n).  A notice
 * that comes meanwhile is acked.
 */
static int raw_call(int s, uint16_t cmd, const void *req, size_t len, void *p, size_t n, int *fds)
{
	uint16_t id = raw_id++;

	if (fds)
		fds[0] = fds[1] = -1;
	if (wr(s, id, cmd, VFIO_USER_F_TYPE_COMMAND, req, len, -1))
		return -1;
	for (;;) {
		struct vfio_user_header h;
		union {
			char b[CMSG_SPACE(sizeof(int) * 2)];
			struct cmsghdr a;
		} u;
		struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				     .msg_controllen = sizeof(u.b) };
		struct pollfd pf = { .fd = s, .events = POLLIN };
		struct cmsghdr *cm;
		uint8_t pl[256];
		size_t got = 0, want;

		if (poll(&pf, 1, 10000) != 1 ||
		    recvmsg(s, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC) != (ssize_t)sizeof(h) ||
		    h.msg_size < sizeof(h))
			return -1;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			int got_fds[2] = { -1, -1 };
			size_t nf = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			if (cm->cmsg_type != SCM_RIGHTS)
				continue;
			memcpy(got_fds, CMSG_DATA(cm), MIN2(nf, 2) * sizeof(int));
			for (size_t i = 0; i < MIN2(nf, 2); i++) {
				if (fds && h.msg_id == id)
					fds[i] = got_fds[i];
				else
					close(got_fds[i]);
			}
		}
		want = h.msg_size - sizeof(h);
		while (got < want) {
			ssize_t r = recv(s, pl + MIN2(got, sizeof(pl) - 1),
					 got < sizeof(pl) ? MIN2(want - got, sizeof(pl) - got) : 1,
					 MSG_WAITALL);

			if (r <= 0)
				return -1;
			got += (size_t)r;
		}
		if ((h.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_COMMAND) {
			wr(s, h.msg_id, h.cmd, VFIO_USER_F_TYPE_REPLY, NULL, 0, -1); /* the ack */
			continue;
		}
		if (h.msg_id != id)
			continue;
		if (p)
			memcpy(p, pl, MIN2(MIN2(want, n), sizeof(pl)));
		return (h.flags & VFIO_USER_F_ERROR) ? (int)h.error_no : 0;
	}
}

static int raw_version(int s, bool p2p)
{
	static const char caps[] = "{\"capabilities\":{\"p2pbuf\":{\"dmabuf\":1,\"revoke\":1}}}";
	uint8_t v[sizeof(struct vfio_user_version) + sizeof(caps)] = { 0, 0, 2, 0 };

	memcpy(v + sizeof(struct vfio_user_version), caps, sizeof(caps));
	return raw_call(s, VFIO_USER_VERSION, v, p2p ? sizeof(v) : sizeof(struct vfio_user_version),
			NULL, 0, NULL);
}

/* Feature 11 on a raw connection: the export's id, its token in *@tok; -1 on failure. */
static int64_t raw_export(int s, int *tok)
{
	struct t_vu_feat11 req = {
		.f = { .argsz = 48, .flags = VFIO_USER_DEVICE_FEATURE_GET | 11 },
		.db = { .region_index = 2, .open_flags = O_RDWR, .nr_ranges = 1 },
		.r = { .offset = 0, .length = LEN },
	};
	struct vfio_user_p2p_dmabuf d;
	int fds[2];

	*tok = -1;
	if (raw_call(s, VFIO_USER_DEVICE_FEATURE, &req, sizeof(req), &d, sizeof(d), fds))
		return -1;
	if (fds[0] >= 0)
		close(fds[0]); /* the memory: not needed here */
	*tok = fds[1];
	return fds[1] >= 0 ? (int64_t)d.export_id : -1;
}

static int raw_config_cmd(int s, uint16_t v)
{
	uint8_t b[sizeof(struct vfio_user_region_access) + 2];
	struct vfio_user_region_access a = { .offset = 4, .region = 7, .count = 2 };

	memcpy(b, &a, sizeof(a));
	memcpy(b + sizeof(a), &v, 2);
	return raw_call(s, VFIO_USER_REGION_WRITE, b, sizeof(b), NULL, 0, NULL);
}

/*
 * Revoked for good (feature 13) before anyone attached through the token:
 * the buffer this process makes of the token is revoked for good.
 */
static void real_for_good(void)
{
	struct {
		struct {
			uint32_t argsz, flags;
		} f;
		struct vfio_device_feature_dma_buf_revoke r;
	} __attribute__((packed)) rv = {
		.f = { .argsz = sizeof(rv),
		       .flags = VFIO_USER_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE },
	};
	struct p2p_dmabuf *buf = NULL;
	int s = raw_connect(), tok = -1;
	int64_t id;

	t_section("real server: feature 13 before the attach");
	CHECK(s >= 0 && !raw_version(s, true));
	id = raw_export(s, &tok);
	CHECK(id > 0 && tok >= 0);
	rv.r.dmabuf_fd = (int32_t)id;
	CHECK(!raw_call(s, VFIO_USER_DEVICE_FEATURE, &rv, sizeof(rv), NULL, 0, NULL));
	CHECK_OK(p2p_dmabuf_get(tok, &buf));
	if (buf) {
		CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
		CHECK_ERR(p2p_dmabuf_unrevoke(buf), -EBADFD);
		p2p_dmabuf_put(buf);
	}
	if (tok >= 0)
		CHECK_OK(p2p_close(tok));
	close(s);
}

static atomic_bool toggle_stop;

/* Memory decoding off and on, as fast as the server goes; on when it stops. */
static void *toggle_main(void *arg)
{
	int s = *(int *)arg;

	while (!atomic_load(&toggle_stop)) {
		if (raw_config_cmd(s, 0x0004) || raw_config_cmd(s, 0x0006))
			break;
	}
	return NULL;
}

/*
 * Attaches while another client turns memory decoding off and on: each
 * attach that succeeds (one while decoding is off is ENODEV: the exporter
 * takes no importer while revoked) ends in the server's final state
 * (decoding on: usable).  Exports made before the flipping starts, each
 * held by its token only.
 */
static void real_toggle(void)
{
	enum { N = 60 };
	struct p2p_dmabuf *bufs[N] = { NULL };
	int toks[N], ts = raw_connect(), ok = 0, got = 0, enodev = 0;
	pthread_t thr;

	t_section("real server: attaches while memory decoding flips");
	CHECK(ts >= 0 && !raw_version(ts, false));
	for (int i = 0; i < N; i++) {
		int s = raw_connect();

		toks[i] = -1;
		/* The exporter goes at once: the token holds the export, nobody else acks. */
		CHECK(s >= 0 && !raw_version(s, true) && raw_export(s, &toks[i]) > 0);
		close(s);
	}
	atomic_store(&toggle_stop, false);
	CHECK(!pthread_create(&thr, NULL, toggle_main, &ts));
	for (int i = 0; i < N; i++) {
		int ret = toks[i] >= 0 ? p2p_dmabuf_get(toks[i], &bufs[i]) : -EBADF;

		if (ret == -ENODEV)
			enodev++;
		else
			CHECK_OK(ret);
	}
	atomic_store(&toggle_stop, true);
	pthread_join(thr, NULL);
	for (int i = 0; i < N; i++) {
		if (bufs[i]) {
			got++;
			for (int w = 0; w < 200 && p2p_dmabuf_status(bufs[i]) != P2P_DMABUF_OK; w++)
				usleep(5000);
			ok += p2p_dmabuf_status(bufs[i]) == P2P_DMABUF_OK;
			p2p_dmabuf_put(bufs[i]);
		}
		if (toks[i] >= 0)
			p2p_close(toks[i]);
	}
	printf("# %d attached (%d ENODEV while revoked), %d usable after the last restore\n", got,
	       enodev, ok);
	CHECK(ok == got);
	close(ts);
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
	snprintf(dir, sizeof(dir), "/tmp/p2p-vuto-XXXXXX");
	if (mkdtemp(dir)) {
		const char *bdfs[] = { GPU, NULL };
		char conf[96], p[128];
		pid_t server;

		snprintf(conf, sizeof(conf), "gpu %s group=1 bar0=16K bar2=2M,64,pf\n", GPU);
		server = t_serve(dir, conf, bdfs, "2000");
		CHECK(server > 0);
		if (server > 0) {
			real_for_good();
			real_toggle();
			kill(server, SIGTERM);
			waitpid(server, NULL, 0);
		}
		snprintf(p, sizeof(p), "%s/devices.conf", dir);
		unlink(p);
		snprintf(p, sizeof(p), "%s/serve.log", dir);
		unlink(p);
		rmdir(dir);
	}
	/* Each attach connection's threads end (and close its socket) right after the close. */
	for (int i = 0; i < 200 && t_count_fds() > nfds; i++)
		usleep(10000);
	return t_end();
}
