// SPDX-License-Identifier: MIT
/*
 * An exported dma-buf fd passed on to another process is the memory there.
 *
 * `p2pbuf serve` runs in one process.  Process A connects, exports a BAR
 * range (feature 11), writes canaries through its mapping, passes the fd to
 * process B over a Unix socket (SCM_RIGHTS), closes its fd and disconnects.
 * B, which never connected to anything, mmaps the fd and reads the canaries,
 * imports it into its own IOAS and has its own copy engine DMA from it.
 * This process, a third client, turns memory decoding off: the revoke
 * returns only after B acked (B's writer thread faulted, B's IOAS import is
 * revoked, and the memory holds exactly B's last write); back on, B's same
 * mapping works again; a reset revokes and restores again.  B closes last:
 * the server lets the export go (its token's abstract name is free again).
 * A socket that is no token is left untouched by the resolver.
 *
 * A and B are this program again (posix_spawn, not fork: this process has
 * threads), with fd 3 the socket between them and fd 4 their control socket.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/vfio_user.h>

#include "ce_driver.h"
#include "harness.h"

/* The door's preload cannot come before the ASan runtime: its variant runs in the other builds. */
#if defined(__SANITIZE_ADDRESS__)
#define DOOR_VARIANT 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DOOR_VARIANT 0
#endif
#endif
#ifndef DOOR_VARIANT
#define DOOR_VARIANT 1
#endif

#define GPU "0000:01:00.0"
#define BAR2 (2u << 20)
#define PG 4096u
#define OFF (4 * PG) /* the export: [OFF, OFF + 4 pages) of BAR 2 */
#define LEN (4 * PG)
#define S_IOVA 0x100000ull
#define D_IOVA 0x200000ull

static char dir[64];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The path of this program's sibling build/tools/p2pbuf (or this program). */
static void exe_path(char *exe, size_t n, bool tool)
{
	ssize_t r;

	if (tool) {
		t_tool_path(exe, n);
		return;
	}
	r = readlink("/proc/self/exe", exe, n - 1);
	exe[r > 0 ? r : 0] = 0;
}

/* `p2pbuf serve` of a GPU in @dir; its pid, or -1. */
static pid_t serve(void)
{
	const char *bdfs[] = { GPU, NULL };
	char conf[96];

	snprintf(conf, sizeof(conf), "gpu %s group=1 bar0=16K bar2=2M,64,pf\n", GPU);
	return t_serve(dir, conf, bdfs, "2000");
}

/*
 * This program as process @role, with @pass as fd 3 and @ctl as fd 4; role
 * "door": tests/door/door-token under `p2pbuf exec`.
 */
static pid_t spawn_child(const char *role, int pass, int ctl)
{
	char exe[512], tool[512], *slash;
	char *argv[] = { exe, (char *)role, dir, NULL };
	char *dargv[] = { tool, "exec", "-q", "--", exe, NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;

	exe_path(exe, sizeof(exe), false);
	if (!strcmp(role, "door")) {
		exe_path(tool, sizeof(tool), true);
		slash = strrchr(exe, '/');
		if (slash)
			strcpy(slash, "/door/door-token");
	}
	if (posix_spawn_file_actions_init(&fa))
		return -1;
	posix_spawn_file_actions_adddup2(&fa, pass, 3);
	posix_spawn_file_actions_adddup2(&fa, ctl, 4);
	if (posix_spawn(&pid, !strcmp(role, "door") ? tool : exe, &fa, NULL,
			!strcmp(role, "door") ? dargv : argv, environ))
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

static void ctl_send(int s, const void *p, size_t n)
{
	CHECK(send(s, p, n, MSG_NOSIGNAL) == (ssize_t)n);
}

/* One message of the other side (up to @n bytes), waiting at most 20 s; its length or -1. */
static ssize_t ctl_recv(int s, void *p, size_t n)
{
	struct pollfd pf = { .fd = s, .events = POLLIN };

	if (poll(&pf, 1, 20000) != 1)
		return -1;
	return recv(s, p, n, 0);
}

static bool ctl_expect(int s, char want)
{
	char c = 0;

	return ctl_recv(s, &c, 1) == 1 && c == want;
}

static struct p2p_vfio_user_client *connect_gpu(const char *name)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .name = name };
	struct p2p_vfio_user_client *c = NULL;
	char p[96];

	snprintf(p, sizeof(p), "%s/%s", dir, GPU);
	CHECK_OK(p2p_vfio_user_connect(p, &ci, &c));
	return c;
}

/* ---------------------------------------------------------------------- */
/* Process A: exports, writes canaries, passes the fd on, goes away         */

/* One datagram on token @tok with up to two fds (-1: none). */
static ssize_t send_junk(int tok, const void *p, size_t n, int fd0, int fd1)
{
	int fds[2] = { fd0, fd1 };

	return t_sendmsg_fds(tok, p, n, fds, fd1 >= 0 ? 2 : fd0 >= 0 ? 1 : 0);
}

static int child_a(void)
{
	struct vfio_region_dma_range r = { .offset = OFF, .length = LEN };
	struct p2p_vfio_user_client *c;
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} u;
	char x = 'f';
	struct iovec iov = { .iov_base = &x, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			     .msg_controllen = sizeof(u.b) };
	struct cmsghdr *cm;
	uint8_t *m = NULL;
	int fd;

	t_begin();
	c = connect_gpu("0000:21:00.0");
	if (!c)
		return t_end();
	fd = p2p_vfio_user_dmabuf_export(c, 2, &r, 1, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_OK(p2p_fd_mmap(fd, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, (void **)&m));
	if (m) {
		memset(m, 0xa5, LEN);
		m[LEN - 1] = 0x5a;
	}
	memset(u.b, 0, sizeof(u.b));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	/* Junk on the token: the server drops it (and closes its fds), the export carries on. */
	{
		struct vfio_user_p2p_token_attach_raw {
			uint32_t magic, version;
		} ok = { 0x70327062u, 1 }, bad = { 0x70327062u, 2 };
		int sp[2], pp[2];

		CHECK(!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) && !pipe2(pp, O_CLOEXEC));
		CHECK(send_junk(fd, "abc", 3, -1, -1) == 3);
		CHECK(send_junk(fd, &ok, sizeof(ok), -1, -1) == sizeof(ok));	/* no fd */
		CHECK(send_junk(fd, &ok, sizeof(ok), pp[0], -1) == sizeof(ok));	/* not a socket */
		CHECK(send_junk(fd, &bad, sizeof(bad), sp[1], -1) == sizeof(bad)); /* version */
		CHECK(send_junk(fd, &ok, sizeof(ok), sp[1], pp[1]) == sizeof(ok)); /* two fds */
		/* None of them started a connection: nothing ever comes on the stream socket. */
		close(sp[1]);
		close(pp[0]);
		close(pp[1]);
		/* The server closes its copy once it has refused them all: wait for that (5 s at most). */
		struct pollfd pf = { .fd = sp[0], .events = POLLIN };
		char b;

		CHECK(poll(&pf, 1, 5000) == 1);
		CHECK(recv(sp[0], &b, 1, MSG_DONTWAIT) == 0); /* EOF: the server closed its copy */
		close(sp[0]);
	}
	/* The test watches the token by its abstract name (getpeername: nothing written). */
	{
		char name[sizeof(((struct sockaddr_un *)0)->sun_path) + 1] = "";
		struct sockaddr_un sa;
		socklen_t sl = sizeof(sa);

		memset(&sa, 0, sizeof(sa));
		CHECK(!getpeername(fd, (struct sockaddr *)&sa, &sl) && !sa.sun_path[0]);
		memcpy(name, sa.sun_path, sizeof(sa.sun_path));
		ctl_send(4, name, sizeof(name));
	}
	CHECK(sendmsg(3, &mh, MSG_NOSIGNAL) == 1);
	/* Everything of A goes: its mapping, its fd, its connection. */
	if (m)
		p2p_munmap(m, LEN);
	CHECK_OK(p2p_close(fd));
	p2p_vfio_user_disconnect(c);
	x = 'a';
	ctl_send(4, &x, 1);
	return t_end();
}

/* ---------------------------------------------------------------------- */
/* Process B: receives the fd, uses it as memory, is revoked and restored   */

static uint8_t *b_map;
static atomic_bool writer_stop;
static atomic_uint writer_last; /* the last value B's writer stored (0: none) */
static atomic_uint writer_try;  /* the value it is storing (set before the store) */
static atomic_bool writer_faulted;

/* Stores 1..255, 1.. at b_map[8] until the store faults (the revoke zapped it). */
static void *writer_main(void *arg)
{
	uint8_t v = 0;

	(void)arg;
	while (!atomic_load(&writer_stop)) {
		v = (uint8_t)(v == 255 ? 1 : v + 1);
		atomic_store(&writer_try, v);
		if (t_write_faults(&b_map[8], v)) {
			atomic_store(&writer_faulted, true);
			break;
		}
		atomic_store(&writer_last, v);
	}
	return NULL;
}

/* Wait (up to 5 s) until b_map is usable again (the restore notice arrives async). */
static bool b_wait_restored(void)
{
	for (int i = 0; i < 500; i++) {
		if (!t_read_faults(b_map))
			return true;
		usleep(10000);
	}
	return false;
}

static int child_b(void)
{
	char x;
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} u;
	struct iovec iov = { .iov_base = &x, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			     .msg_controllen = sizeof(u.b) };
	struct p2p_vfio_device *cev = NULL;
	struct p2p_pci_dev *ce = NULL;
	struct p2p_iommufd *ictx = NULL;
	struct p2p_ioas *ioas = NULL;
	struct p2p_dmabuf *buf = NULL;
	struct ce_drv drv;
	uint64_t iova;
	uint8_t *dst;
	unsigned int at_return, try_at_return;
	int nfds;
	pthread_t wt;
	uint32_t id;
	int fd = -1;

	t_begin();
	nfds = t_count_fds();
	t_section("B receives");
	CHECK(recvmsg(3, &mh, MSG_CMSG_CLOEXEC) == 1);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	CHECK(fd >= 0);
	if (!ctl_expect(4, 'g'))
		return t_end();

	t_section("B maps");
	/* The native API: the fd is a dma-buf of this process now. */
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	CHECK(buf && p2p_dmabuf_size(buf) == LEN);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_fd_mmap(fd, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
			     (void **)&b_map));
	if (!b_map) {
		p2p_close(fd);
		return t_end();
	}
	CHECK(b_map[0] == 0xa5 && b_map[LEN - 2] == 0xa5 && b_map[LEN - 1] == 0x5a);

	t_section("B's device DMA");
	CHECK_OK(p2p_copy_engine_create("0000:05:00.0", NULL, 5, &ce));
	CHECK_OK(p2p_vfio_device_open(ce, &cev));
	CHECK_OK(t_mem_enable(cev, true));
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK_OK(p2p_vfio_device_attach_ioas(cev, ioas));
	CHECK_OK(ce_drv_init(&drv, cev, ioas, 16));
	dst = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(dst != MAP_FAILED);
	iova = D_IOVA;
	CHECK_OK(p2p_ioas_map(ioas, dst, LEN, &iova,
			      P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
				      P2P_IOAS_MAP_WRITEABLE));
	iova = S_IOVA;
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, LEN, &iova,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
	CHECK(ce_drv_copy(&drv, S_IOVA, D_IOVA, LEN) == P2P_CE_OK);
	CHECK(dst[0] == 0xa5 && dst[LEN - 1] == 0x5a);

	t_section("B revoked");
	CHECK(!pthread_create(&wt, NULL, writer_main, NULL));
	while (!atomic_load(&writer_last))
		usleep(100);
	x = '1';
	ctl_send(4, &x, 1);
	CHECK(ctl_expect(4, 'r')); /* the test's revoke returned */
	/*
	 * It returned after our ack, which came after our mappings were
	 * zapped: no store of the writer succeeds from now on.  (Its store in
	 * flight may still be on its way to the SIGBUS.)
	 */
	at_return = atomic_load(&writer_last);
	try_at_return = atomic_load(&writer_try);
	for (int i = 0; i < 500 && !atomic_load(&writer_faulted); i++)
		usleep(10000);
	CHECK(atomic_load(&writer_faulted));
	atomic_store(&writer_stop, true);
	pthread_join(wt, NULL);
	/*
	 * Its last successful store is the one published at the return, or
	 * the one it had started by then (stored before the zap, published
	 * after): never a store started after the revoke returned.
	 */
	CHECK(atomic_load(&writer_last) == at_return || atomic_load(&writer_last) == try_at_return);
	CHECK(t_read_faults(b_map));
	CHECK(t_write_faults(b_map + 1, 1));
	memset(dst, 0, LEN);
	CHECK(ce_drv_copy(&drv, S_IOVA, D_IOVA, PG) == P2P_CE_REVOKED);
	CHECK(dst[0] == 0);
	x = (char)atomic_load(&writer_last);
	ctl_send(4, &x, 1);

	t_section("B restored");
	CHECK(ctl_expect(4, 'o'));
	CHECK(b_wait_restored());
	CHECK(b_map[8] == (uint8_t)atomic_load(&writer_last) && b_map[0] == 0xa5);
	b_map[16] = 0x16;
	/* An IOAS import stays revoked (kernel-semantics 2.5): the device cannot reach it. */
	CHECK(ce_drv_copy(&drv, S_IOVA, D_IOVA, PG) == P2P_CE_REVOKED);
	x = 'O';
	ctl_send(4, &x, 1);

	t_section("B across a reset");
	CHECK(ctl_expect(4, 's'));
	CHECK(b_wait_restored());
	CHECK(b_map[16] == 0x16);
	x = 'S';
	ctl_send(4, &x, 1);

	t_section("B closes last");
	CHECK(ctl_expect(4, 'c'));
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, NULL));
	ce_drv_fini(&drv);
	p2p_vfio_device_detach_ioas(cev);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ictx);
	p2p_vfio_device_close(cev);
	p2p_pci_dev_put(ce);
	munmap(dst, LEN);
	p2p_munmap(b_map, LEN);
	CHECK_OK(p2p_close(fd));
	x = 'C';
	ctl_send(4, &x, 1);
	CHECK(ctl_expect(4, 'e'));
	/* The attach connection's threads end (and close its socket) right after the close. */
	for (int i = 0; i < 200 && t_count_fds() > nfds; i++)
		usleep(10000);
	return t_end();
}

/* ---------------------------------------------------------------------- */
/* The test: the server, A, B, and this process as the revoking client      */

/* Can a socket bind @name (abstract, NUL-terminated after its leading NUL)?  -errno or 0. */
static int try_bind(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(name + 1);
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), ret;

	memcpy(sa.sun_path, name, 1 + n);
	ret = bind(s, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n));
	ret = ret ? -errno : 0;
	close(s);
	return ret;
}

/* Sockets that are no token: the resolver leaves them alone, the call fails as for any fd. */
static void test_not_a_token(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct p2p_dmabuf *buf;
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	int sv[2], pp[2], want;
	uint64_t iova = 0x100000;
	uint32_t id;
	char c;

	t_section("not a token");
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK(!pipe2(pp, O_CLOEXEC));
	/* What the IOAS says of an fd that is nothing of ours (the kernel's errno). */
	want = p2p_ioas_map_file(ioas, pp[0], 0, PG, &iova, P2P_IOAS_MAP_READABLE);
	CHECK(want < 0);
	for (int kind = 0; kind < 2; kind++) {
		CHECK(!socketpair(AF_UNIX, (kind ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC, 0,
				  sv));
		if (kind) {
			/*
			 * Bound to a name that is not a token's (this process's
			 * own: abstract names are per network namespace, and
			 * another run of the test may hold a fixed one).
			 */
			int len = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1,
					   "p2pbuf-other/%d", (int)getpid());

			CHECK(!bind(sv[1], (struct sockaddr *)&sa,
				    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)));
		}
		CHECK_ERR(p2p_dmabuf_get(sv[0], &buf), -EINVAL);
		CHECK_ERR(p2p_fd_mmap(sv[0], NULL, PG, PROT_READ, MAP_SHARED, 0, (void **)&buf),
			  -EINVAL);
		CHECK_ERR(p2p_ioas_map_file(ioas, sv[0], 0, PG, &iova, P2P_IOAS_MAP_READABLE), want);
		CHECK_ERR(p2p_fd_adopt(sv[0]), -EINVAL);
		/* Nothing was written to it. */
		CHECK(recv(sv[1], &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN);
		close(sv[0]);
		close(sv[1]);
	}
	close(pp[0]);
	close(pp[1]);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ictx);
}

/*
 * A exports and passes on, B uses it, this process revokes and restores,
 * B closes last.  @door: B is the kernel-uAPI program under `p2pbuf exec`.
 */
static void run(bool door)
{
	struct p2p_vfio_user_client *c = NULL;
	struct p2p_vfio_device *vc = NULL;
	int ab[2] = { -1, -1 }, ca[2] = { -1, -1 }, cb[2] = { -1, -1 };
	char name[sizeof(((struct sockaddr_un *)0)->sun_path) + 1] = "", last = 0, x;
	pid_t pa = -1, pb = -1;
	uint8_t *mc = NULL;
	int st = 0;
	double t0;

	t_section(door ? "door: A passes the fd on and goes" : "A passes the fd on and goes");
	CHECK(!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ab));
	CHECK(!socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ca));
	CHECK(!socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cb));
	pa = spawn_child("A", ab[0], ca[1]);
	pb = spawn_child(door ? "door" : "B", ab[1], cb[1]);
	close(ab[0]);
	close(ab[1]);
	close(ca[1]);
	close(cb[1]);
	CHECK(pa > 0 && pb > 0);
	CHECK(ctl_recv(ca[0], name, sizeof(name)) == (ssize_t)sizeof(name));
	name[sizeof(name) - 1] = 0;
	CHECK(!name[0] && !strncmp(name + 1, "p2pbuf-dmabuf/", 14));
	CHECK(ctl_expect(ca[0], 'a'));
	CHECK(waitpid(pa, &st, 0) == pa && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	pa = -1;
	/* A is gone, B has not used the fd yet: the export is still held by the token. */
	CHECK_ERR(try_bind(name), -EADDRINUSE);
	x = 'g';
	ctl_send(cb[0], &x, 1);

	t_section(door ? "door: a third client revokes" : "a third client revokes");
	c = connect_gpu("0000:41:00.0");
	if (!c)
		goto out;
	CHECK_OK(p2p_vfio_device_open(p2p_vfio_user_client_pci(c), &vc));
	CHECK_OK(p2p_vfio_device_mmap(vc, NULL, BAR2, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), (void **)&mc));
	CHECK(ctl_expect(cb[0], '1')); /* B maps, DMAs (and its writer runs) */
	t0 = now_s();
	CHECK_OK(p2p_vfio_config_write(vc, 0x04, 2, 0x0004)); /* memory decoding off */
	printf("# %srevoke returned after %.1f ms (B acked)\n", door ? "door: " : "",
	       (now_s() - t0) * 1e3);
	x = 'r';
	ctl_send(cb[0], &x, 1);
	if (door)
		CHECK(ctl_expect(cb[0], 'R'));
	else
		CHECK(ctl_recv(cb[0], &last, 1) == 1);

	t_section(door ? "door: restore" : "restore");
	CHECK_OK(p2p_vfio_config_write(vc, 0x04, 2, 0x0006));
	for (int i = 0; i < 500 && t_read_faults(mc); i++)
		usleep(10000);
	if (!door) {
		/* Nothing of B landed after the revoke returned: the memory holds B's last store. */
		CHECK(mc && !t_read_faults(mc + OFF) && mc[OFF + 8] == (uint8_t)last);
		printf("# B's last store before the revoke: %u, in memory after it: %u\n",
		       (uint8_t)last, mc ? mc[OFF + 8] : 0);
	}
	x = 'o';
	ctl_send(cb[0], &x, 1);
	CHECK(ctl_expect(cb[0], 'O'));

	if (!door) {
		t_section("reset");
		t0 = now_s();
		CHECK_OK(p2p_vfio_device_reset(vc));
		printf("# reset (revoke, B's ack, restore) returned after %.1f ms\n",
		       (now_s() - t0) * 1e3);
		x = 's';
		ctl_send(cb[0], &x, 1);
		CHECK(ctl_expect(cb[0], 'S'));
	}

	t_section(door ? "door: B closes last" : "B closes last: the export goes");
	CHECK_ERR(try_bind(name), -EADDRINUSE);
	x = 'c';
	ctl_send(cb[0], &x, 1);
	CHECK(ctl_expect(cb[0], 'C'));
	/* B is still there (or exiting, for the door), its fd closed: the server lets go. */
	t0 = now_s();
	while (try_bind(name) == -EADDRINUSE && now_s() - t0 < 2)
		usleep(1000);
	CHECK_OK(try_bind(name));
	printf("# %sthe server let the export go %.1f ms after B closed its fd\n",
	       door ? "door: " : "", (now_s() - t0) * 1e3);
	if (!door) {
		x = 'e';
		ctl_send(cb[0], &x, 1);
	}
	CHECK(waitpid(pb, &st, 0) == pb && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	pb = -1;
out:
	if (mc)
		p2p_munmap(mc, BAR2);
	if (vc)
		p2p_vfio_device_close(vc);
	if (c)
		p2p_vfio_user_disconnect(c);
	for (int i = 0; i < 2; i++) {
		pid_t pid = i ? pb : pa;

		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
	}
	if (ca[0] >= 0)
		close(ca[0]);
	if (cb[0] >= 0)
		close(cb[0]);
}

int main(int argc, char **argv)
{
	pid_t server;
	char p[128];

	signal(SIGPIPE, SIG_IGN);
	if (argc == 3) {
		snprintf(dir, sizeof(dir), "%s", argv[2]);
		if (!strcmp(argv[1], "A"))
			return child_a();
		if (!strcmp(argv[1], "B"))
			return child_b();
	}
	t_begin();
	t_require_uffd();
	test_not_a_token();
	snprintf(dir, sizeof(dir), "/tmp/p2p-vut-XXXXXX");
	if (!mkdtemp(dir))
		t_skip("no temporary directory");
	server = serve();
	if (server < 0) {
		fprintf(stderr, "p2pbuf serve did not start\n");
		t_failures++;
	} else {
		run(false);
		if (DOOR_VARIANT)
			run(true);
		else
			printf("# door variant not run: an ASan build (the preload cannot come first)\n");
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
	snprintf(p, sizeof(p), "%s/devices.conf", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/serve.log", dir);
	/* A sanitizer's report in the server fails the test too. */
	{
		FILE *f = fopen(p, "r");
		char line[512];

		while (f && fgets(line, sizeof(line), f)) {
			if (strstr(line, "Sanitizer") || strstr(line, "runtime error")) {
				fprintf(stderr, "serve.log: %s", line);
				t_failures++;
			}
		}
		if (f)
			fclose(f);
	}
	unlink(p);
	rmdir(dir);
	return t_end();
}
