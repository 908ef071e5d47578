// SPDX-License-Identifier: MIT
/*
 * The vfio-user server from outside: a server process (forked first) and raw
 * clients that build every message by hand from the specification
 * (docs/interop/vfio-user.rst) and the p2pbuf extension (docs/vfio-user.md).
 *
 * Covered: VERSION (capabilities, errors), DEVICE_GET_INFO, GET_REGION_INFO
 * (sparse mmap capability, argsz retry, the region fd mapped and compared
 * with REGION_READ), GET_IRQ_INFO, SET_IRQS with an eventfd the copy engine
 * signals, REGION_READ/WRITE (config and BARs, max_data_xfer_size), DMA_MAP
 * with a memfd and copy-engine DMA into it, overlap, DMA_UNMAP (exact match,
 * ALL), DEVICE_RESET, DEVICE_FEATURE (probe, feature 11 export + the BAR fd,
 * DMABUF_CLOSE), malformed messages (truncated, oversize, garbage, fds where
 * none are taken), kill -9 of a client in the middle of DMA (its maps gone
 * within 1 s, a second client carries on), 16 clients, and cross-process
 * revocation with canaries (16 clients that ack, one that does not and is
 * disconnected after the timeout).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "harness.h"
#include "vfio-user/proto.h"

#define GPU_BDF "0000:0a:00.0"
#define CE_BDF "0000:0b:00.0"
#define GPU_BAR2 (1u << 20)
#define REVOKE_MS 300

/*
 * The raw calls return 0, a positive errno of the reply, or a negative
 * local failure: only 0 passes (CHECK_ERR would let a positive errno by).
 */
#define CHECK_VU(expr, want)                                                                 \
	do {                                                                                 \
		long _r = (long)(expr);                                                      \
		if (_r != (want)) {                                                          \
			fprintf(stderr, "%s:%d: [%s] %s = %ld, want %d\n", __FILE__, __LINE__,     \
				t_current ? t_current : "-", #expr, _r, (want));                  \
			t_failures++;                                                        \
		}                                                                            \
	} while (0)

static char dir[64], gpu_path[128], ce_path[128];

/* ---- the server process -------------------------------------------------- */

static int server_main(int ready_fd)
{
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
		.name = GPU_BDF,
		.vendor_id = 0x1b36,
		.device_id = 0x0110,
		.class_code = 0x030200,
		.group = 10,
		.bars = { [0] = { .size = 16384 },
			  [2] = { .size = GPU_BAR2, .flags = P2P_BAR_MEM64 | P2P_BAR_PREFETCH } },
	};
	struct p2p_vfio_user_server_info si = { .argsz = sizeof(si), .revoke_timeout_ms = REVOKE_MS };
	struct p2p_vfio_user_server *srv;
	struct p2p_pci_dev *gpu, *ce;
	sigset_t set;
	int fds0, sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (p2p_library_init() || p2p_pci_dev_create(&info, &gpu) ||
	    p2p_copy_engine_create(CE_BDF, NULL, 11, &ce))
		return 2;
	fds0 = t_count_fds();
	if (p2p_vfio_user_server_create(&si, &srv) || p2p_vfio_user_server_add(srv, gpu, gpu_path) ||
	    p2p_vfio_user_server_add(srv, ce, ce_path))
		return 3;
	if (write(ready_fd, "r", 1) != 1)
		return 4;
	close(ready_fd);
	sig = sigwaitinfo(&set, NULL);
	(void)sig;
	p2p_vfio_user_server_destroy(srv);
	if (t_count_fds() != fds0 - 1) { /* ready_fd was closed */
		fprintf(stderr, "server: fds %d before, %d after\n", fds0, t_count_fds());
		return 5;
	}
	p2p_pci_dev_put(ce);
	p2p_pci_dev_put(gpu);
	return 0;
}

/* ---- raw client ---------------------------------------------------------- */

static int vu_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static int raw_send(int s, const void *buf, size_t len, const int *fds, int nfds)
{
	return t_sendmsg_fds(s, buf, len, fds, (unsigned int)nfds) == (ssize_t)len ? 0 : -1;
}

struct rep {
	struct vfio_user_header h;
	uint8_t p[1 << 17];
	size_t len;
	int fd;
};

/* Receive one whole message (blocking, up to 5 s); returns 0, or -1 on EOF/timeout. */
static int raw_recv(int s, struct rep *r)
{
	union {
		struct cmsghdr a;
		char b[CMSG_SPACE(sizeof(int) * 8)];
	} cb;
	struct pollfd p = { .fd = s, .events = POLLIN };
	struct iovec iov = { .iov_base = &r->h, .iov_len = sizeof(r->h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.b,
			     .msg_controllen = sizeof(cb.b) };
	size_t got = 0;

	r->fd = -1;
	r->len = 0;
	if (poll(&p, 1, 5000) != 1)
		return -1;
	ssize_t n = recvmsg(s, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC);
	if (n != sizeof(r->h))
		return -1;
	/* The first fd is kept; more (an export's token) are closed: we never pass them on. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (r->fd < 0)
				r->fd = f;
			else
				close(f);
		}
	}
	r->len = r->h.msg_size - sizeof(r->h);
	if (r->len > sizeof(r->p))
		return -1;
	while (got < r->len) {
		n = recv(s, r->p + got, r->len - got, 0);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static uint16_t next_id = 100;
static double now(void);

/*
 * The client memory the server reaches with DMA_READ / DMA_WRITE (a range
 * mapped without an fd): [dmem_iova, + dmem_len) is dmem.  Accesses in
 * [dfail_lo, dfail_hi) get an error reply (EFAULT).  Counted and checked
 * against dmem_max (the max_data_xfer_size the client announced).
 */
static uint8_t *dmem;
static uint64_t dmem_iova, dmem_len, dfail_lo, dfail_hi, dmem_max = 1 << 20;
static unsigned int n_dma_read, n_dma_write, n_dma_bad;

/* P2P_REVOKE notices the raw calls met (and acked) on the way. */
static struct vfio_user_p2p_revoke notices[16];
static unsigned int n_notices;

/* Serve one DMA_READ/DMA_WRITE command @r; false if it is another command. */
static bool serve_dma(int s, const struct rep *r)
{
	static uint8_t buf[sizeof(struct vfio_user_header) + 16 + (1 << 17)];
	struct vfio_user_header *h = (void *)buf;
	struct vfio_user_dma_region_access a;
	size_t len = sizeof(*h) + sizeof(a);
	bool ok;

	if (r->h.cmd != VFIO_USER_DMA_READ && r->h.cmd != VFIO_USER_DMA_WRITE)
		return false;
	memset(h, 0, sizeof(*h));
	h->msg_id = r->h.msg_id;
	h->cmd = r->h.cmd;
	h->flags = VFIO_USER_F_TYPE_REPLY;
	memcpy(&a, r->p, sizeof(a));
	ok = r->len >= sizeof(a) && dmem && a.count && a.count <= dmem_max &&
	     a.addr >= dmem_iova && a.addr - dmem_iova + a.count <= dmem_len &&
	     (r->h.cmd == VFIO_USER_DMA_READ ? r->len == sizeof(a)
					      : r->len == sizeof(a) + a.count);
	if (!ok)
		n_dma_bad++;
	if (ok && a.addr < dfail_hi && a.addr + a.count > dfail_lo)
		ok = false;
	if (!ok) {
		h->flags |= VFIO_USER_F_ERROR;
		h->error_no = EFAULT;
		len = sizeof(*h);
	} else if (r->h.cmd == VFIO_USER_DMA_READ) {
		n_dma_read++;
		memcpy(buf + len, dmem + (a.addr - dmem_iova), a.count);
		len += a.count;
	} else {
		n_dma_write++;
		memcpy(dmem + (a.addr - dmem_iova), r->p + sizeof(a), a.count);
	}
	if (ok)
		memcpy(buf + sizeof(*h), &a, sizeof(a));
	h->msg_size = (uint32_t)len;
	raw_send(s, buf, len, NULL, 0);
	return true;
}

/*
 * Send a command, return the error_no of its reply (0 = success), -1 on
 * EOF.  Server commands (REVOKE) met on the way are acked.
 */
static int vu_call_fds(int s, uint16_t cmd, const void *p, size_t len, const int *fds, int nfds,
		       struct rep *r)
{
	static struct rep tmp;
	uint8_t buf[8192];
	struct vfio_user_header *h = (void *)buf;
	uint16_t id = next_id++;

	if (!r)
		r = &tmp;
	memset(h, 0, sizeof(*h));
	h->msg_id = id;
	h->cmd = cmd;
	h->msg_size = (uint32_t)(sizeof(*h) + len);
	if (len)
		memcpy(buf + sizeof(*h), p, len);
	if (raw_send(s, buf, sizeof(*h) + len, fds, nfds))
		return -1;
	for (;;) {
		if (raw_recv(s, r))
			return -1;
		if ((r->h.flags & 0xf) == VFIO_USER_F_TYPE_COMMAND) {
			struct vfio_user_header a = { .msg_id = r->h.msg_id, .cmd = r->h.cmd,
						      .msg_size = 16, .flags = 1 };
			if (r->fd >= 0)
				close(r->fd);
			if (r->h.cmd == VFIO_USER_P2P_REVOKE && r->len >= sizeof(notices[0]) &&
			    n_notices < 16)
				memcpy(&notices[n_notices++], r->p, sizeof(notices[0]));
			if (!serve_dma(s, r))
				raw_send(s, &a, sizeof(a), NULL, 0);
			continue;
		}
		if (r->h.msg_id != id || r->h.cmd != cmd)
			return -2;
		return (r->h.flags & VFIO_USER_F_ERROR) ? (int)r->h.error_no : 0;
	}
}

static int vu_call(int s, uint16_t cmd, const void *p, size_t len, struct rep *r)
{
	return vu_call_fds(s, cmd, p, len, NULL, 0, r);
}

static int vu_version(int s, const char *json)
{
	uint8_t buf[512];
	struct vfio_user_version *v = (void *)buf;
	size_t jl = json ? strlen(json) + 1 : 0;

	v->major = 0;
	v->minor = 2;
	if (json)
		memcpy(v->data, json, jl);
	return vu_call(s, VFIO_USER_VERSION, buf, sizeof(*v) + jl, NULL);
}

static int reg_write(int s, uint32_t region, uint64_t off, const void *data, uint32_t count)
{
	uint8_t buf[4096];
	struct vfio_user_region_access a = { .offset = off, .region = region, .count = count };

	memcpy(buf, &a, sizeof(a));
	memcpy(buf + sizeof(a), data, count);
	return vu_call(s, VFIO_USER_REGION_WRITE, buf, sizeof(a) + count, NULL);
}

static int reg_read(int s, uint32_t region, uint64_t off, void *data, uint32_t count)
{
	static struct rep r;
	struct vfio_user_region_access a = { .offset = off, .region = region, .count = count };
	int ret = vu_call(s, VFIO_USER_REGION_READ, &a, sizeof(a), &r);

	if (!ret) {
		if (r.len != sizeof(a) + count)
			return -3;
		memcpy(data, r.p + sizeof(a), count);
	}
	return ret;
}

static int ce_w(int s, uint32_t reg, uint64_t v, uint32_t size)
{
	return reg_write(s, 0, reg, &v, size);
}

static int dma_map(int s, int fd, uint64_t off, uint64_t addr, uint64_t size)
{
	struct vfio_user_dma_map m = { .argsz = sizeof(m), .flags = 3, .offset = off,
				       .addr = addr, .size = size };

	return vu_call_fds(s, VFIO_USER_DMA_MAP, &m, sizeof(m), &fd, fd >= 0 ? 1 : 0, NULL);
}

static int dma_unmap(int s, uint32_t flags, uint64_t addr, uint64_t size)
{
	struct vfio_user_dma_unmap u = { .argsz = sizeof(u), .flags = flags, .addr = addr,
					 .size = size };

	return vu_call(s, VFIO_USER_DMA_UNMAP, &u, sizeof(u), NULL);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* memfd of @size with ring (0), completions (0x1000), src (0x10000..) */
#define IOVA 0x40000000ull
static int ce_memfd(size_t size, uint8_t **va)
{
	int fd = memfd_create("vu-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size))
		return -1;
	*va = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return *va == MAP_FAILED ? -1 : fd;
}

/*
 * Wait until the engine has caught up with its tail (HEAD == DOORBELL), up
 * to 10 s, serving its DMA commands meanwhile.  The engine writes a
 * descriptor's completion before HEAD covers it: a driver that saw the
 * completion and read HEAD at once could read the old one, build its ring
 * there and ring the doorbell with the tail it already has (no new work).
 */
static int ce_wait_caught_up(int s)
{
	double t = now();
	uint32_t head, tail;

	for (;;) {
		if (reg_read(s, 0, P2P_CE_REG_HEAD, &head, 4) ||
		    reg_read(s, 0, P2P_CE_REG_DOORBELL, &tail, 4))
			return -1;
		if (head == tail)
			return 0;
		if (now() - t > 10)
			return -1;
		usleep(1000);
	}
}

/*
 * Program the engine: @n descriptors copying @len bytes src -> dst, IRQ on
 * the last; the ring at @base (va), completions at @base + 0x1000.
 */
static int ce_run_at(int s, uint8_t *va, uint64_t base, uint32_t n, uint64_t src, uint64_t dst,
		     uint64_t len)
{
	struct p2p_ce_desc *ring = (void *)va;
	uint32_t head;

	if (ce_wait_caught_up(s))
		return -1;
	memset(va, 0, 0x2000);
	for (uint32_t i = 0; i < n; i++)
		ring[i] = (struct p2p_ce_desc){ .src = base + src, .dst = base + dst, .len = len,
						.flags = i == n - 1 ? P2P_CE_DESC_IRQ : 0, .id = i + 1 };
	if (ce_w(s, P2P_CE_REG_CTRL, 0, 4) || ce_w(s, P2P_CE_REG_RING, base, 8) ||
	    ce_w(s, P2P_CE_REG_RING_SIZE, 64, 4) || ce_w(s, P2P_CE_REG_COMPL, base + 0x1000, 8) ||
	    ce_w(s, P2P_CE_REG_CTRL, P2P_CE_CTRL_ENABLE, 4) ||
	    reg_read(s, 0, P2P_CE_REG_HEAD, &head, 4))
		return -1;
	/* The ring is read at head % size: keep the descriptors where it starts. */
	if (head % 64) {
		memmove(ring + head % 64, ring, n * sizeof(*ring));
		memset(ring, 0, (head % 64) * sizeof(*ring));
	}
	return ce_w(s, P2P_CE_REG_DOORBELL, head + n, 4) ? -1 : (int)(head % 64);
}

static int ce_run(int s, uint8_t *va, uint32_t n, uint64_t src, uint64_t dst, uint64_t len)
{
	return ce_run_at(s, va, IOVA, n, src, dst, len);
}

/* Serve the server's DMA commands until *@st leaves PENDING or @secs pass. */
static void serve_until(int s, volatile uint32_t *st, double secs)
{
	double t = now();
	static struct rep r;

	while (*st == P2P_CE_PENDING && now() - t < secs) {
		struct pollfd p = { .fd = s, .events = POLLIN };

		if (poll(&p, 1, 10) == 1) {
			if (raw_recv(s, &r))
				break;
			if ((r.h.flags & 0xf) == VFIO_USER_F_TYPE_COMMAND)
				serve_dma(s, &r);
		}
	}
}

/* ---- tests --------------------------------------------------------------- */

static int basics_twin = -1;

static void test_basics(void)
{
	struct rep r;
	int s = vu_connect(gpu_path);

	t_section("VERSION");
	{
		struct vfio_user_device_info di = { .argsz = sizeof(di) };

		CHECK(vu_call(s, VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), NULL) == EINVAL);
	}
	CHECK(vu_version(s, "{\"capabilities\": 5}") == EINVAL);
	CHECK(vu_version(s, "not json") == EINVAL);
	{
		uint8_t nonul[8] = { 0, 0, 2, 0, '{', '}', ' ', ' ' };

		CHECK(vu_call(s, VFIO_USER_VERSION, nonul, sizeof(nonul), NULL) == EINVAL);
	}
	{
		uint8_t buf[64];
		struct vfio_user_version *v = (void *)buf;
		const char *js = "{\"capabilities\":{\"max_msg_fds\":8,\"twin_socket\":{\"supported\":true}}}";

		v->major = 0;
		v->minor = 7;
		memcpy(v->data, js, 0);
		char big[256];
		memcpy(big, buf, 4);
		strcpy(big + 4, js);
		CHECK_VU(vu_call(s, VFIO_USER_VERSION, big, 4 + strlen(js) + 1, &r), 0);
		CHECK(r.len > 4 && r.p[r.len - 1] == 0);
		CHECK(((uint16_t *)r.p)[0] == 0 && ((uint16_t *)r.p)[1] == 2);
		CHECK(strstr((char *)r.p + 4, "\"max_msg_fds\":8") != NULL);
		CHECK(strstr((char *)r.p + 4, "\"max_data_xfer_size\":1048576") != NULL);
		CHECK(strstr((char *)r.p + 4, "\"pgsizes\":4096") != NULL);
		CHECK(strstr((char *)r.p + 4, "\"max_dma_maps\"") != NULL);
		/* twin_socket offered: the server's end of a new socketpair, at fd_index 0 */
		CHECK(strstr((char *)r.p + 4,
			     "\"twin_socket\":{\"supported\":true,\"fd_index\":0}") != NULL);
		CHECK(r.fd >= 0);
		basics_twin = r.fd; /* kept open: closing it ends the connection */
		CHECK(strstr((char *)r.p + 4, "p2pbuf") == NULL); /* not asked for */
	}
	CHECK(vu_version(s, NULL) == EINVAL); /* twice */

	t_section("DEVICE_GET_INFO");
	{
		struct vfio_user_device_info di = { .argsz = sizeof(di) };

		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), &r), 0);
		memcpy(&di, r.p, sizeof(di));
		CHECK(r.len == 16 && di.argsz == 16);
		CHECK(di.flags == (VFIO_USER_DEVICE_FLAGS_RESET | VFIO_USER_DEVICE_FLAGS_PCI));
		CHECK(di.num_regions == 9 && di.num_irqs >= 3);
		di.argsz = 8;
		CHECK(vu_call(s, VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), NULL) == EINVAL);
		CHECK(vu_call(s, VFIO_USER_DEVICE_GET_INFO, &di, 8, NULL) == EINVAL);
	}

	t_section("GET_REGION_INFO: sparse mmap, argsz retry, the region fd");
	{
		struct vfio_user_region_info ri = { .argsz = sizeof(ri), .index = 2 };
		struct vfio_user_region_cap_sparse_mmap cap;
		struct vfio_user_sparse_mmap_area area;
		uint8_t *bar;
		uint8_t want[256], got[256];

		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), &r), 0);
		memcpy(&ri, r.p, sizeof(ri));
		CHECK(r.len == 32 && r.fd < 0);
		CHECK(ri.argsz == 64 && (ri.flags & VFIO_USER_REGION_INFO_FLAG_MMAP) &&
		      (ri.flags & VFIO_USER_REGION_INFO_FLAG_CAPS) && ri.cap_offset == 0);
		CHECK(ri.size == GPU_BAR2);
		ri.argsz = 64;
		ri.flags = ri.cap_offset = 0;
		ri.size = ri.offset = 0;
		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), &r), 0);
		memcpy(&ri, r.p, sizeof(ri));
		memcpy(&cap, r.p + 32, sizeof(cap));
		memcpy(&area, r.p + 48, sizeof(area));
		CHECK(r.len == 64 && r.fd >= 0 && ri.cap_offset == 32);
		CHECK(cap.header.id == VFIO_USER_REGION_INFO_CAP_SPARSE_MMAP &&
		      cap.header.version == 1 && cap.header.next == 0 && cap.nr_areas == 1);
		CHECK(area.offset == 0 && area.size == GPU_BAR2);
		/* The client maps the BAR from the fd and sees what REGION_READ sees. */
		bar = mmap(NULL, GPU_BAR2, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd,
			   (off_t)(ri.offset + area.offset));
		CHECK(bar != MAP_FAILED);
		for (int i = 0; i < 256; i++)
			want[i] = (uint8_t)(i * 7 + 1);
		memcpy(bar + 8192, want, sizeof(want));
		CHECK_VU(reg_read(s, 2, 8192, got, sizeof(got)), 0);
		CHECK(!memcmp(want, got, sizeof(got)));
		CHECK_VU(reg_write(s, 2, 12288, want, 128), 0);
		CHECK(!memcmp(bar + 12288, want, 128));
		munmap(bar, GPU_BAR2);
		close(r.fd);

		/* config region: no fd, no caps */
		ri = (struct vfio_user_region_info){ .argsz = 32, .index = 7 };
		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), &r), 0);
		memcpy(&ri, r.p, sizeof(ri));
		CHECK(r.fd < 0 && ri.argsz == 32 && !(ri.flags & VFIO_USER_REGION_INFO_FLAG_MMAP));
		ri = (struct vfio_user_region_info){ .argsz = 16, .index = 2 };
		CHECK(vu_call(s, VFIO_USER_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL) == EINVAL);
		ri = (struct vfio_user_region_info){ .argsz = 32, .index = 9 };
		CHECK(vu_call(s, VFIO_USER_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL) == EINVAL);
	}

	t_section("REGION_READ/WRITE");
	{
		uint32_t id = 0, v;
		struct vfio_user_region_access a = { .offset = 0, .region = 7, .count = 4 };

		CHECK_VU(reg_read(s, 7, 0, &id, 4), 0);
		CHECK(id == 0x01101b36);
		CHECK(reg_read(s, 9, 0, &v, 4) == EINVAL);
		a.count = (1u << 20) + 1; /* over max_data_xfer_size */
		CHECK(vu_call(s, VFIO_USER_REGION_READ, &a, sizeof(a), NULL) == EINVAL);
		a.count = 0;
		CHECK(vu_call(s, VFIO_USER_REGION_READ, &a, sizeof(a), NULL) == EINVAL);
		a.count = 8; /* write claiming 8 bytes, carrying 4 */
		{
			uint8_t buf[20];

			memcpy(buf, &a, 16);
			memset(buf + 16, 0, 4);
			CHECK(vu_call(s, VFIO_USER_REGION_WRITE, buf, 20, NULL) == EINVAL);
		}
		CHECK(reg_read(s, 2, GPU_BAR2, &v, 4) == EINVAL); /* at the end of the BAR */
	}

	t_section("GET_IRQ_INFO / SET_IRQS / RESET / FEATURE / unknown");
	{
		struct vfio_user_irq_info ii = { .argsz = sizeof(ii), .index = 1 };
		struct vfio_user_irq_set is = { .argsz = sizeof(is),
						.flags = VFIO_USER_IRQ_SET_DATA_EVENTFD |
							 VFIO_USER_IRQ_SET_ACTION_TRIGGER,
						.index = 1, .start = 0, .count = 1 };
		struct vfio_user_device_feature f = {
			.argsz = 8,
			.flags = VFIO_USER_DEVICE_FEATURE_PROBE | VFIO_USER_DEVICE_FEATURE_GET | 11 };
		int efd = eventfd(0, EFD_CLOEXEC), two[2] = { efd, efd };

		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), &r), 0);
		memcpy(&ii, r.p, sizeof(ii));
		CHECK(ii.count >= 1 && (ii.flags & VFIO_USER_IRQ_INFO_EVENTFD));
		ii.index = 99;
		CHECK(vu_call(s, VFIO_USER_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL) == EINVAL);
		CHECK_VU(vu_call_fds(s, VFIO_USER_DEVICE_SET_IRQS, &is, sizeof(is), &efd, 1, NULL), 0);
		CHECK(vu_call_fds(s, VFIO_USER_DEVICE_SET_IRQS, &is, sizeof(is), two, 2, NULL) == EINVAL);
		is.flags = VFIO_USER_IRQ_SET_DATA_EVENTFD | VFIO_USER_IRQ_SET_ACTION_TRIGGER;
		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_SET_IRQS, &is, sizeof(is), NULL), 0); /* de-assign */
		is.flags = VFIO_USER_IRQ_SET_DATA_NONE | VFIO_USER_IRQ_SET_DATA_BOOL;
		CHECK(vu_call(s, VFIO_USER_DEVICE_SET_IRQS, &is, sizeof(is), NULL) == EINVAL);
		close(efd);

		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_RESET, NULL, 0, NULL), 0);
		CHECK(vu_call(s, VFIO_USER_DEVICE_RESET, "x", 1, NULL) == EINVAL);
		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_FEATURE, &f, sizeof(f), &r), 0);
		CHECK(r.len == 8);
		f.flags = VFIO_USER_DEVICE_FEATURE_PROBE | VFIO_USER_DEVICE_FEATURE_GET | 1;
		CHECK(vu_call(s, VFIO_USER_DEVICE_FEATURE, &f, sizeof(f), NULL) == ENOTTY);
		/* feature 11 GET without the p2pbuf capability */
		f.flags = VFIO_USER_DEVICE_FEATURE_GET | 11;
		CHECK(vu_call(s, VFIO_USER_DEVICE_FEATURE, &f, sizeof(f), NULL) == ENOTTY);
		CHECK(vu_call(s, VFIO_USER_DEVICE_GET_REGION_IO_FDS, &ii, sizeof(ii), NULL) ==
		      EOPNOTSUPP);
		CHECK(vu_call(s, 14, NULL, 0, NULL) == ENOSYS);
		CHECK(vu_call(s, 999, NULL, 0, NULL) == ENOSYS);
		CHECK(vu_call(s, VFIO_USER_DMA_READ, &ii, 16, NULL) == EINVAL);
		CHECK(vu_call(s, VFIO_USER_P2P_DMABUF_CLOSE, &ii, 16, NULL) == EINVAL);
	}

	t_section("fds where none are taken, too many fds, NO_REPLY");
	{
		struct vfio_user_device_info di = { .argsz = sizeof(di) };
		int fds[12];

		for (int i = 0; i < 12; i++)
			fds[i] = eventfd(0, EFD_CLOEXEC);
		CHECK(vu_call_fds(s, VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), fds, 1, NULL) == EINVAL);
		CHECK(vu_call_fds(s, VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), fds, 12, NULL) == EINVAL);
		for (int i = 0; i < 12; i++)
			close(fds[i]);
		struct {
			struct vfio_user_header h;
			struct vfio_user_device_info di;
		} nr = { .h = { .msg_id = 1, .cmd = 4, .msg_size = 32, .flags = VFIO_USER_F_NO_REPLY },
			 .di = { .argsz = 16 } };
		CHECK_OK(raw_send(s, &nr, sizeof(nr), NULL, 0));
		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), &r), 0);
		CHECK(r.h.msg_id == next_id - 1); /* the NO_REPLY command got nothing */
	}
	close(s);
	close(basics_twin);
}

static void test_malformed(void)
{
	struct rep r;

	t_section("malformed messages: error reply or clean disconnect");
	{
		int s = vu_connect(gpu_path);
		struct vfio_user_header h = { .msg_id = 1, .cmd = 1, .msg_size = 8 };

		CHECK_OK(raw_send(s, &h, sizeof(h), NULL, 0)); /* msg_size < 16 */
		CHECK(raw_recv(s, &r) == -1);			/* disconnected */
		close(s);
	}
	{
		int s = vu_connect(gpu_path);
		struct vfio_user_header h = { .msg_id = 1, .cmd = 1, .msg_size = 0x7fffffff };

		CHECK_OK(raw_send(s, &h, sizeof(h), NULL, 0)); /* oversize */
		CHECK(raw_recv(s, &r) == -1);
		close(s);
	}
	{
		int s = vu_connect(gpu_path);
		struct vfio_user_header h = { .msg_id = 1, .cmd = 1, .msg_size = 100 };

		CHECK_OK(raw_send(s, &h, sizeof(h), NULL, 0)); /* truncated, then EOF */
		shutdown(s, SHUT_WR);
		CHECK(raw_recv(s, &r) == -1);
		close(s);
	}
	{
		int s = vu_connect(gpu_path);
		uint8_t junk[4096];

		srand(7);
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)rand();
		CHECK_OK(raw_send(s, junk, sizeof(junk), NULL, 0)); /* garbage */
		while (raw_recv(s, &r) == 0)
			;
		close(s);
	}
	{
		/* error flag on a command, reply type with no waiter: dropped / refused */
		int s = vu_connect(gpu_path);
		struct vfio_user_header h = { .msg_id = 9, .cmd = 4, .msg_size = 16, .flags = 1 };

		CHECK_OK(raw_send(s, &h, sizeof(h), NULL, 0)); /* a stray reply: ignored */
		CHECK_VU(vu_version(s, "{}"), 0);
		close(s);
	}
	/* The server is still fine. */
	{
		int s = vu_connect(gpu_path);

		CHECK_VU(vu_version(s, "{}"), 0);
		close(s);
	}
}

static void test_dma(void)
{
	uint8_t *va;
	int s, efd, fd, slot;
	uint64_t cnt;
	size_t size = 4 << 20;

	t_section("DMA_MAP with a memfd, copy-engine DMA into it, SET_IRQS eventfd");
	s = vu_connect(ce_path);
	CHECK_VU(vu_version(s, "{}"), 0);
	fd = ce_memfd(size, &va);
	CHECK(fd >= 0);
	CHECK_VU(dma_map(s, fd, 0, IOVA, size), 0);
	CHECK(dma_map(s, fd, 0, IOVA + 4096, 4096) == EEXIST); /* overlap */
	CHECK(dma_map(s, fd, 0, IOVA + size, 0) == EINVAL);
	CHECK_VU(dma_map(s, -1, 0, IOVA + size, 1 << 20), 0); /* fd-less: recorded */
	{
		struct vfio_user_dma_map m = { .argsz = 32, .flags = 3, .addr = 1 << 30, .size = 4096 };
		int two[2] = { fd, fd };

		CHECK(vu_call_fds(s, VFIO_USER_DMA_MAP, &m, sizeof(m), two, 2, NULL) == EINVAL);
		m.argsz = 16;
		CHECK(vu_call_fds(s, VFIO_USER_DMA_MAP, &m, sizeof(m), &fd, 1, NULL) == EINVAL);
	}
	efd = eventfd(0, EFD_CLOEXEC);
	{
		struct vfio_user_irq_set is = { .argsz = sizeof(is),
						.flags = VFIO_USER_IRQ_SET_DATA_EVENTFD |
							 VFIO_USER_IRQ_SET_ACTION_TRIGGER,
						.index = 1, .count = 1 };

		CHECK_VU(vu_call_fds(s, VFIO_USER_DEVICE_SET_IRQS, &is, sizeof(is), &efd, 1, NULL), 0);
	}
	for (int i = 0; i < 65536; i++)
		va[0x10000 + i] = (uint8_t)(i * 13 + 5);
	slot = ce_run(s, va, 1, 0x10000, 0x30000, 65536);
	CHECK(slot >= 0);
	{
		struct pollfd p = { .fd = efd, .events = POLLIN };
		struct p2p_ce_compl *c = (void *)(va + 0x1000 + 16 * (slot < 0 ? 0 : slot));

		CHECK(poll(&p, 1, 5000) == 1 && read(efd, &cnt, 8) == 8);
		CHECK(c->status == P2P_CE_OK && c->bytes == 65536);
		CHECK(!memcmp(va + 0x10000, va + 0x30000, 65536));
	}

	t_section("DMA_UNMAP: exact match, ALL");
	CHECK(dma_unmap(s, 0, IOVA, 4096) == ENOENT);
	CHECK(dma_unmap(s, 4, IOVA, size) == EINVAL);
	CHECK(dma_unmap(s, VFIO_USER_F_DMA_UNMAP_ALL, IOVA, size) == EINVAL);
	CHECK_VU(dma_unmap(s, 0, IOVA, size), 0);
	/* Unmapped: the engine now faults on its ring. */
	memset(va + 0x30000, 0, 65536);
	CHECK_VU(dma_map(s, fd, 0, IOVA, size), 0);
	CHECK_VU(dma_unmap(s, VFIO_USER_F_DMA_UNMAP_ALL, 0, 0), 0);
	CHECK(dma_unmap(s, 0, IOVA + size, 1 << 20) == ENOENT); /* ALL took the fd-less one too */
	CHECK_VU(dma_map(s, fd, 0, IOVA, size), 0);	       /* free again */
	CHECK_VU(dma_unmap(s, 0, IOVA, size), 0);
	close(efd);
	close(s);
	munmap(va, size);
	close(fd);
}

/*
 * DMA_MAP without an fd: the engine's ring, completions and data live in
 * anonymous memory of the client, reached only through DMA_READ/DMA_WRITE.
 */
#define FDLESS_IOVA 0x80000000ull
static void test_dma_fdless(void)
{
	const char *js = "{\"capabilities\":{\"max_data_xfer_size\":16384}}";
	size_t size = 1 << 20, len = 256 << 10;
	volatile struct p2p_ce_compl *cp;
	uint8_t *va;
	int s, slot;

	t_section("DMA_MAP without an fd: engine DMA as DMA_READ/DMA_WRITE, max_data_xfer_size chunks");
	s = vu_connect(ce_path);
	CHECK_VU(vu_version(s, js), 0);
	va = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(va != MAP_FAILED);
	dmem = va;
	dmem_iova = FDLESS_IOVA;
	dmem_len = size;
	dmem_max = 16384;
	CHECK_VU(dma_map(s, -1, 0, FDLESS_IOVA, size), 0);
	CHECK(dma_map(s, -1, 0, FDLESS_IOVA + 4096, 4096) == EEXIST);
	for (size_t i = 0; i < len; i++)
		va[0x10000 + i] = (uint8_t)(i * 7 + 1);
	n_dma_read = n_dma_write = n_dma_bad = 0;
	slot = ce_run_at(s, va, FDLESS_IOVA, 1, 0x10000, 0x80000, len);
	CHECK(slot >= 0);
	cp = (void *)(va + 0x1000 + 16 * (slot < 0 ? 0 : slot));
	serve_until(s, &cp->status, 5);
	printf("# %u DMA_READ, %u DMA_WRITE messages for a %zu KiB copy\n", n_dma_read, n_dma_write,
	       len >> 10);
	CHECK(cp->status == P2P_CE_OK && cp->bytes == len);
	CHECK(!memcmp(va + 0x10000, va + 0x80000, len));
	CHECK(n_dma_bad == 0);
	/* the data in chunks of at most 16 KiB, plus the ring read */
	CHECK(n_dma_read >= len / 16384 + 1 && n_dma_write >= len / 16384 + 1);

	t_section("DMA_READ answered with an error: the engine sees a translation fault");
	memset(va + 0x80000, 0, len);
	dfail_lo = FDLESS_IOVA + 0x10000 + 4096;
	dfail_hi = dfail_lo + 1;
	slot = ce_run_at(s, va, FDLESS_IOVA, 1, 0x10000, 0x80000, 65536);
	CHECK(slot >= 0);
	cp = (void *)(va + 0x1000 + 16 * (slot < 0 ? 0 : slot));
	serve_until(s, &cp->status, 5);
	CHECK(cp->status == P2P_CE_FAULT);
	CHECK(cp->bytes < 65536);
	dfail_lo = dfail_hi = 0;

	t_section("DMA_UNMAP of an fd-less map: the engine faults there afterwards");
	CHECK_VU(dma_unmap(s, 0, FDLESS_IOVA, size), 0);
	CHECK_VU(dma_map(s, -1, 0, FDLESS_IOVA, size), 0); /* the range is free again */
	CHECK_VU(dma_unmap(s, VFIO_USER_F_DMA_UNMAP_ALL, 0, 0), 0);
	close(s);
	dmem = NULL;
	dmem_max = 1 << 20;
	munmap(va, size);
}

/*
 * twin_socket mode: the server's commands (DMA_READ/DMA_WRITE of memory
 * mapped without an fd) come over the twin socket and are answered there;
 * the main socket carries only our commands and their replies.  Closing
 * the twin ends the connection.  A client that does not offer it (or says
 * false) gets supported:false and no fd.
 */
static void test_twin(void)
{
	const char *js = "{\"capabilities\":{\"max_data_xfer_size\":16384,"
			 "\"twin_socket\":{\"supported\":true}}}";
	uint8_t buf[512];
	struct vfio_user_version *v = (void *)buf;
	size_t size = 1 << 20, len = 64 << 10;
	volatile struct p2p_ce_compl *cp;
	static struct rep r;
	uint8_t *va;
	int s, t, slot;

	t_section("twin_socket: the server's DMA_READ/DMA_WRITE on the twin, replies there");
	s = vu_connect(ce_path);
	v->major = 0;
	v->minor = 2;
	memcpy(v->data, js, strlen(js) + 1);
	CHECK_VU(vu_call(s, VFIO_USER_VERSION, buf, sizeof(*v) + strlen(js) + 1, &r), 0);
	CHECK(strstr((char *)r.p + 4, "\"supported\":true,\"fd_index\":0") != NULL);
	t = r.fd;
	CHECK(t >= 0);
	va = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(va != MAP_FAILED);
	dmem = va;
	dmem_iova = FDLESS_IOVA;
	dmem_len = size;
	dmem_max = 16384;
	CHECK_VU(dma_map(s, -1, 0, FDLESS_IOVA, size), 0);
	for (size_t i = 0; i < len; i++)
		va[0x10000 + i] = (uint8_t)(i * 5 + 3);
	n_dma_read = n_dma_write = n_dma_bad = 0;
	slot = ce_run_at(s, va, FDLESS_IOVA, 1, 0x10000, 0x80000, len);
	CHECK(slot >= 0);
	CHECK(n_dma_read == 0 && n_dma_write == 0); /* nothing came on the main socket */
	cp = (void *)(va + 0x1000 + 16 * (slot < 0 ? 0 : slot));
	serve_until(t, &cp->status, 5);
	printf("# %u DMA_READ, %u DMA_WRITE on the twin socket\n", n_dma_read, n_dma_write);
	CHECK(cp->status == P2P_CE_OK && cp->bytes == len);
	CHECK(!memcmp(va + 0x10000, va + 0x80000, len));
	CHECK(n_dma_bad == 0 && n_dma_read >= len / 16384 && n_dma_write >= len / 16384);
	{
		struct pollfd p = { .fd = s, .events = POLLIN };

		CHECK(poll(&p, 1, 0) == 0); /* still nothing on the main socket */
	}
	CHECK_VU(dma_unmap(s, VFIO_USER_F_DMA_UNMAP_ALL, 0, 0), 0);

	t_section("twin_socket: a command from the client on the twin ends the connection");
	{
		struct vfio_user_header h = { .msg_id = 1, .cmd = VFIO_USER_DEVICE_GET_INFO,
					      .msg_size = sizeof(h) };
		struct pollfd p = { .fd = s, .events = POLLIN };
		char c;

		CHECK(write(t, &h, sizeof(h)) == (ssize_t)sizeof(h));
		CHECK(poll(&p, 1, 2000) == 1);
		CHECK(recv(s, &c, 1, 0) == 0); /* EOF: disconnected */
	}
	close(t);
	close(s);

	t_section("twin_socket: closing the twin ends the connection; not offered, not given");
	s = vu_connect(ce_path);
	CHECK_VU(vu_call(s, VFIO_USER_VERSION, buf, sizeof(*v) + strlen(js) + 1, &r), 0);
	CHECK(r.fd >= 0);
	close(r.fd);
	{
		struct pollfd p = { .fd = s, .events = POLLIN };
		char c;

		CHECK(poll(&p, 1, 2000) == 1);
		CHECK(recv(s, &c, 1, 0) == 0);
	}
	close(s);
	s = vu_connect(ce_path);
	CHECK(vu_version(s, "{\"capabilities\":{\"twin_socket\":{\"supported\":1}}}") == EINVAL);
	{
		const char *no = "{\"capabilities\":{\"twin_socket\":{\"supported\":false}}}";

		memcpy(v->data, no, strlen(no) + 1);
		CHECK_VU(vu_call(s, VFIO_USER_VERSION, buf, sizeof(*v) + strlen(no) + 1, &r), 0);
		CHECK(r.fd < 0);
		CHECK(strstr((char *)r.p + 4, "\"twin_socket\":{\"supported\":false}") != NULL);
	}
	close(s);
	dmem = NULL;
	dmem_max = 1 << 20;
	munmap(va, size);
}

/*
 * A client killed while the engine waits for its DMA_READ: the copy
 * faults (the completion, if the ring is still there, says FAULT), the
 * engine moves on at once, the client's maps go.
 */
static void test_dma_fdless_kill(void)
{
	size_t size = 1 << 20;
	int fd, s2, p[2];
	uint32_t head = 0, status = 0;
	double t0, t1;
	uint8_t *va;
	pid_t pid;
	char c;

	t_section("a client killed while the engine waits on its DMA_READ: the copy faults, no hang");
	fd = ce_memfd(size, &va); /* ring and completions, shared with the child */
	CHECK(fd >= 0);
	s2 = vu_connect(ce_path);
	CHECK_VU(vu_version(s2, "{}"), 0);
	CHECK_VU(vu_call(s2, VFIO_USER_DEVICE_RESET, NULL, 0, NULL), 0);
	CHECK_OK(pipe(p));
	pid = fork();
	if (pid == 0) {
		static struct rep r;
		int s = vu_connect(ce_path);
		uint8_t *anon = mmap(NULL, size, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		/* ring in the memfd at IOVA; data in anonymous memory at FDLESS_IOVA */
		if (anon == MAP_FAILED || vu_version(s, "{}") || dma_map(s, fd, 0, IOVA, size) ||
		    dma_map(s, -1, 0, FDLESS_IOVA, size))
			_exit(1);
		if (ce_run_at(s, va, IOVA, 1, FDLESS_IOVA - IOVA, FDLESS_IOVA - IOVA + 65536,
			      65536) != 0)
			_exit(2);
		/* The engine's first DMA_READ of the source: never answered. */
		while (raw_recv(s, &r) == 0)
			if (r.h.cmd == VFIO_USER_DMA_READ)
				break;
		if (write(p[1], "r", 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	CHECK(read(p[0], &c, 1) == 1 && c == 'r');
	kill(pid, SIGKILL);
	t0 = now();
	waitpid(pid, NULL, 0);
	/* The engine gets past the descriptor (HEAD moves) well before the DMA timeout. */
	for (;;) {
		CHECK_VU(reg_read(s2, 0, P2P_CE_REG_HEAD, &head, 4), 0);
		t1 = now();
		if (head == 1 || t1 - t0 > 3)
			break;
		usleep(1000);
	}
	printf("# engine done with the descriptor %.1f ms after the kill\n", (t1 - t0) * 1e3);
	CHECK(head == 1);
	CHECK(t1 - t0 < REVOKE_MS / 1000.0 * 0.8);
	CHECK_VU(reg_read(s2, 0, P2P_CE_REG_STATUS, &status, 4), 0);
	{
		struct p2p_ce_compl *cp = (void *)(va + 0x1000);

		/* Either the completion landed (FAULT) or its ring was gone (RING_FAULT). */
		printf("# completion status %u, engine status %#x\n", cp->status, status);
		CHECK(cp->status == P2P_CE_FAULT ||
		      (cp->status == P2P_CE_PENDING && (status & P2P_CE_STATUS_RING_FAULT)));
	}
	/* Its maps are gone: the ranges can be mapped again. */
	for (;;) {
		int ret = dma_map(s2, -1, 0, FDLESS_IOVA, size);

		t1 = now();
		if (ret == 0 || t1 - t0 > 2)
			break;
		CHECK(ret == EEXIST);
		usleep(1000);
	}
	CHECK(t1 - t0 < 1.0);
	CHECK_VU(dma_unmap(s2, VFIO_USER_F_DMA_UNMAP_ALL, 0, 0), 0);
	CHECK_VU(vu_call(s2, VFIO_USER_DEVICE_RESET, NULL, 0, NULL), 0);
	close(s2);
	close(p[0]);
	close(p[1]);
	munmap(va, size);
	close(fd);
}

static void test_kill9(void)
{
	uint8_t *va;
	size_t size = 32 << 20;
	int fd, s2, p[2];
	pid_t pid;
	double t0, t1 = 0;
	char c;

	t_section("kill -9 of a client in the middle of DMA: its maps gone within 1 s");
	s2 = vu_connect(ce_path);
	CHECK_VU(vu_version(s2, "{}"), 0);
	CHECK_OK(pipe(p));
	pid = fork();
	if (pid == 0) {
		int s = vu_connect(ce_path);

		if (vu_version(s, "{}") || (fd = ce_memfd(size, &va)) < 0 ||
		    dma_map(s, fd, 0, IOVA, size) || ce_run(s, va, 60, 0x100000, 0x1000000, 8 << 20) < 0)
			_exit(1);
		if (write(p[1], "g", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	CHECK(read(p[0], &c, 1) == 1);
	usleep(2000);
	kill(pid, SIGKILL);
	t0 = now();
	waitpid(pid, NULL, 0);
	fd = ce_memfd(4 << 20, &va);
	for (;;) {
		int ret = dma_map(s2, fd, 0, IOVA, 4 << 20);

		t1 = now();
		if (ret == 0 || t1 - t0 > 2)
			break;
		CHECK(ret == EEXIST);
		usleep(1000);
	}
	printf("# maps of the killed client gone after %.1f ms\n", (t1 - t0) * 1e3);
	CHECK(t1 - t0 < 1.0);
	/* The survivor carries on: reset the engine, copy through its own memory. */
	CHECK_VU(vu_call(s2, VFIO_USER_DEVICE_RESET, NULL, 0, NULL), 0);
	for (int i = 0; i < 4096; i++)
		va[0x10000 + i] = (uint8_t)(i + 3);
	{
		int slot = ce_run(s2, va, 1, 0x10000, 0x20000, 4096);
		struct p2p_ce_compl *cp = (void *)(va + 0x1000 + 16 * (slot < 0 ? 0 : slot));
		double t = now();

		CHECK(slot >= 0);
		while (cp->status == P2P_CE_PENDING && now() - t < 5)
			usleep(1000);
		CHECK(cp->status == P2P_CE_OK);
		CHECK(!memcmp(va + 0x10000, va + 0x20000, 4096));
	}
	CHECK_VU(dma_unmap(s2, 0, IOVA, 4 << 20), 0);
	munmap(va, 4 << 20);
	close(fd);
	close(s2);
	close(p[0]);
	close(p[1]);
}

static void test_many_clients(void)
{
	int s[16];
	uint32_t id = 0;

	t_section("16 clients at once");
	for (int i = 0; i < 16; i++) {
		s[i] = vu_connect(gpu_path);
		CHECK_VU(vu_version(s[i], "{}"), 0);
	}
	for (int round = 0; round < 4; round++)
		for (int i = 0; i < 16; i++) {
			uint32_t v = (uint32_t)(i * 100 + round);

			CHECK_VU(reg_write(s[i], 2, (uint64_t)i * 4096, &v, 4), 0);
			CHECK_VU(reg_read(s[(i + 1) % 16], 2, (uint64_t)i * 4096, &id, 4), 0);
			CHECK(id == v);
		}
	for (int i = 0; i < 16; i++)
		close(s[i]);
}

/*
 * An export client (child process): exports BAR2 [off, off + 64 KiB), maps
 * the fd it gets, writes canaries until the revoke notice; then (if @ack)
 * munmaps and acks.  Reports "n" (noticed) on @rep and "e" on EOF.
 */
static void export_child(int rep, uint64_t off, bool ack)
{
	const char *js = "{\"capabilities\":{\"p2pbuf\":{\"dmabuf\":1,\"revoke\":1}}}";
	struct t_vu_feat11 req = {
		.f = { .argsz = 64, .flags = VFIO_USER_DEVICE_FEATURE_GET | 11 },
		.db = { .region_index = 2, .open_flags = O_RDWR, .nr_ranges = 1 },
		.r = { .offset = off, .length = 65536 },
	};
	static struct rep r;
	struct vfio_user_p2p_dmabuf d;
	struct vfio_user_p2p_dmabuf_range rg;
	volatile uint32_t *map;
	int s = vu_connect(gpu_path);

	if (vu_version(s, js) || vu_call(s, VFIO_USER_DEVICE_FEATURE, &req, sizeof(req), &r) ||
	    r.fd < 0)
		_exit(1);
	memcpy(&d, r.p, sizeof(d));
	memcpy(&rg, r.p + sizeof(d), sizeof(rg));
	if (d.nr_ranges != 1 || rg.length != 65536 || d.size != 65536)
		_exit(2);
	map = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, (off_t)rg.fd_offset);
	if (map == MAP_FAILED)
		_exit(3);
	close(r.fd);
	if (write(rep, "m", 1) != 1)
		_exit(4);
	for (uint32_t i = 0;; i++) {
		struct pollfd p = { .fd = s, .events = POLLIN };

		map[i % 16384] = 0xc0de0000u | (i & 0xffff);
		if (!(i % 64))
			usleep(200); /* 17 processes share 2 cores */
		if (poll(&p, 1, 0) == 1) {
			if (raw_recv(s, &r)) {
				if (write(rep, "e", 1) != 1)
					_exit(5);
				_exit(0);
			}
			if (r.h.cmd != VFIO_USER_P2P_REVOKE)
				_exit(6);
			struct vfio_user_p2p_revoke rv;
			memcpy(&rv, r.p, sizeof(rv));
			if (!(rv.flags & VFIO_USER_P2P_REVOKE_F_REVOKED) || rv.export_id != d.export_id)
				_exit(7);
			if (ack) {
				struct vfio_user_header a = { .msg_id = r.h.msg_id, .cmd = r.h.cmd,
							      .msg_size = 16, .flags = 1 };

				/* A slow client: it keeps writing for 30 ms after the notice; the
				 * revoke must not return before its ack. */
				double t = now();

				for (uint32_t j = 0; now() - t < 0.03; j++) {
					map[j % 16384] = 0xdead0000u | (j & 0xffff);
					usleep(100);
				}
				munmap((void *)map, 65536); /* zap, then ack */
				if (write(rep, "n", 1) != 1 || raw_send(s, &a, sizeof(a), NULL, 0))
					_exit(8);
				/* wait for EOF (the test closes us) */
				while (raw_recv(s, &r) == 0)
					;
				_exit(0);
			}
			if (write(rep, "n", 1) != 1)
				_exit(9);
			/* no ack, no more writes: wait for the disconnect */
			while (raw_recv(s, &r) == 0)
				;
			if (write(rep, "e", 1) != 1)
				_exit(10);
			_exit(0);
		}
	}
}

static void test_revoke(int nack, int nnoack)
{
	int n = nack + nnoack, p[2], s, st;
	pid_t pid[32];
	uint8_t before[65536], after[65536];
	double t0, dt;
	char c;

	t_section(nnoack ? "revoke: a client that does not ack is disconnected after the timeout"
			 : "revoke across processes with canaries");
	printf("# %d acking, %d silent\n", nack, nnoack);
	CHECK_OK(pipe(p));
	for (int i = 0; i < n; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			close(p[0]);
			export_child(p[1], (uint64_t)(i % 16) * 65536, i < nack);
		}
	}
	close(p[1]);
	for (int i = 0; i < n; i++)
		CHECK(read(p[0], &c, 1) == 1 && c == 'm');
	usleep(20000); /* canaries are landing */
	s = vu_connect(gpu_path);
	CHECK_VU(vu_version(s, "{}"), 0);
	t0 = now();
	CHECK_VU(vu_call(s, VFIO_USER_DEVICE_RESET, NULL, 0, NULL), 0); /* a revoke trigger */
	dt = now() - t0;
	printf("# reset (revoke) returned after %.1f ms\n", dt * 1e3);
	/*
	 * Notices go to every client first, then the acks are awaited with one
	 * deadline: several silent clients cost one timeout, not one each.
	 */
	if (nnoack)
		CHECK(dt >= REVOKE_MS / 1000.0 * 0.9 && dt < REVOKE_MS / 1000.0 * 1.6);
	else
		CHECK(dt >= 0.03 && dt < 0.03 * 4 + 0.3); /* waited for the (slow) acks, together */
	/* Every acking client has zapped before the revoke returned: nothing lands after. */
	{
		for (int i = 0; i < (n < 16 ? n : 16); i++) {
			CHECK_VU(reg_read(s, 2, (uint64_t)i * 65536, before, 65536), 0);
			usleep(20000);
			CHECK_VU(reg_read(s, 2, (uint64_t)i * 65536, after, 65536), 0);
			CHECK(!memcmp(before, after, 65536));
			/* canaries did land before the revoke (0xc0de before, 0xdead after the notice) */
			CHECK(((uint32_t *)(void *)before)[0] >> 16 == 0xc0de ||
			      ((uint32_t *)(void *)before)[0] >> 16 == 0xdead);
		}
	}
	{
		int nn = 0, ne = 0;

		/* every client got its notice; the silent ones were disconnected */
		for (int i = 0; i < n + nnoack; i++) {
			CHECK(read(p[0], &c, 1) == 1);
			nn += c == 'n';
			ne += c == 'e';
		}
		CHECK(nn == n && ne == nnoack);
	}
	close(s);
	for (int i = 0; i < nack; i++)
		kill(pid[i], SIGTERM);
	for (int i = 0; i < n; i++) {
		CHECK(waitpid(pid[i], &st, 0) == pid[i]);
		if (i >= nack)
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	close(p[0]);
}

/*
 * A client killed (SIGKILL) while a revoke notice to it is pending, not
 * acked: the revoke returns at its death, before the timeout, and the
 * others carry on (the acking client acked, the device keeps serving, a
 * new export works).
 */
static void test_revoke_kill(void)
{
	int p[2], k[2], s, st;
	pid_t ack, silent, killer;
	double t0, dt;
	uint32_t v = 0, w = 0;
	char c;

	t_section("revoke: a client killed with a notice pending: the revoke returns at once");
	CHECK_OK(pipe(p));
	CHECK_OK(pipe(k));
	ack = fork();
	if (ack == 0) {
		close(p[0]);
		close(k[0]);
		close(k[1]);
		export_child(p[1], 0, true);
	}
	silent = fork();
	if (silent == 0) {
		close(p[0]);
		close(p[1]);
		close(k[0]);
		export_child(k[1], 65536, false);
	}
	killer = fork();
	if (killer == 0) {
		/* Forward "mapped"; on "noticed" (not acked) kill it and say so. */
		close(p[0]);
		close(k[1]);
		if (read(k[0], &c, 1) != 1 || c != 'm' || write(p[1], "m", 1) != 1)
			_exit(1);
		if (read(k[0], &c, 1) != 1 || c != 'n')
			_exit(2);
		kill(silent, SIGKILL);
		_exit(write(p[1], "k", 1) == 1 ? 0 : 3);
	}
	close(p[1]);
	close(k[0]);
	close(k[1]);
	for (int i = 0; i < 2; i++)
		CHECK(read(p[0], &c, 1) == 1 && c == 'm');
	s = vu_connect(gpu_path);
	CHECK_ERR(vu_version(s, "{}"), 0);
	t0 = now();
	CHECK_ERR(vu_call(s, VFIO_USER_DEVICE_RESET, NULL, 0, NULL), 0);
	dt = now() - t0;
	printf("# reset (revoke) returned after %.1f ms (timeout %d ms)\n", dt * 1e3, REVOKE_MS);
	CHECK(dt < REVOKE_MS / 1000.0);
	{
		int nn = 0, nk = 0;

		for (int i = 0; i < 2; i++) {
			CHECK(read(p[0], &c, 1) == 1);
			nn += c == 'n';
			nk += c == 'k';
		}
		CHECK(nn == 1 && nk == 1);
	}
	CHECK(waitpid(silent, &st, 0) == silent && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	CHECK(waitpid(killer, &st, 0) == killer && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* The others carry on: this connection, a new one, the acking client. */
	CHECK_ERR(reg_read(s, 7, 0, &v, 4), 0);
	CHECK(v != 0xffffffffu && v != 0);
	close(s);
	s = vu_connect(gpu_path);
	CHECK_ERR(vu_version(s, "{}"), 0);
	CHECK_ERR(reg_read(s, 7, 0, &w, 4), 0);
	CHECK(w == v);
	CHECK(waitpid(ack, &st, WNOHANG) == 0);
	close(s);
	kill(ack, SIGTERM);
	CHECK(waitpid(ack, &st, 0) == ack);
	close(p[0]);
}

/*
 * A client that turns memory decoding off (a REGION_WRITE: run inline on
 * the server's reader thread, whose revoke then waits for this client's
 * own ack) and never acks: the watchdog disconnects it after the revoke
 * timeout, the revoke returns and the device keeps serving.  The thread
 * that read the disconnect ends the notices (not the reader thread, which
 * is the one waiting).
 */
static void test_revoke_inline_silent(void)
{
	const char *js = "{\"capabilities\":{\"p2pbuf\":{\"dmabuf\":1,\"revoke\":1}}}";
	struct t_vu_feat11 req = {
		.f = { .argsz = 64, .flags = VFIO_USER_DEVICE_FEATURE_GET | 11 },
		.db = { .region_index = 2, .open_flags = O_RDWR, .nr_ranges = 1 },
		.r = { .offset = 0, .length = 65536 },
	};
	struct vfio_user_header h = { .cmd = VFIO_USER_REGION_WRITE };
	struct vfio_user_region_access a = { .offset = 4, .region = 7, .count = 2 };
	uint8_t wr[sizeof(h) + sizeof(a) + 2];
	static struct rep r;
	uint16_t cmd = 0;
	bool noticed = false;
	double t0, dt;
	int s = vu_connect(gpu_path);

	t_section("revoke: a silent client's own memory-off (run inline) ends at the timeout");
	CHECK_VU(vu_version(s, js), 0);
	CHECK_VU(vu_call(s, VFIO_USER_DEVICE_FEATURE, &req, sizeof(req), &r), 0);
	CHECK(r.fd >= 0);
	if (r.fd >= 0)
		close(r.fd);
	CHECK_VU(reg_read(s, 7, 4, &cmd, 2), 0);
	CHECK(cmd & 0x2);
	h.msg_id = next_id++;
	h.msg_size = sizeof(wr);
	memcpy(wr, &h, sizeof(h));
	memcpy(wr + sizeof(h), &a, sizeof(a));
	cmd &= (uint16_t)~0x2;
	memcpy(wr + sizeof(h) + sizeof(a), &cmd, 2);
	t0 = now();
	CHECK_OK(raw_send(s, wr, sizeof(wr), NULL, 0));
	/* The notice, never acked; then the disconnect (no reply can come first). */
	while (raw_recv(s, &r) == 0) {
		if ((r.h.flags & 0xf) == VFIO_USER_F_TYPE_COMMAND && r.h.cmd == VFIO_USER_P2P_REVOKE)
			noticed = true;
		if (r.fd >= 0)
			close(r.fd);
	}
	dt = now() - t0;
	printf("# disconnected %.1f ms after the write (timeout %d ms)\n", dt * 1e3, REVOKE_MS);
	CHECK(noticed);
	CHECK(dt < 3.0);
	close(s);
	/* The revoke returned: the device serves; memory back on (bounded: a hang fails). */
	alarm(10);
	s = vu_connect(gpu_path);
	CHECK_VU(vu_version(s, "{}"), 0);
	cmd |= 0x2;
	CHECK_VU(reg_write(s, 7, 4, &cmd, 2), 0);
	cmd = 0;
	CHECK_VU(reg_read(s, 7, 4, &cmd, 2), 0);
	CHECK(cmd & 0x2);
	alarm(0);
	close(s);
}

static void test_export_errors(void)
{
	const char *js = "{\"capabilities\":{\"p2pbuf\":{\"dmabuf\":1,\"revoke\":0}}}";
	struct t_vu_feat11 req = {
		.f = { .argsz = 16, .flags = VFIO_USER_DEVICE_FEATURE_GET | 11 },
		.db = { .region_index = 2, .open_flags = O_RDWR, .nr_ranges = 1 },
		.r = { .offset = 0, .length = 4096 },
	};
	struct vfio_user_p2p_dmabuf d;
	struct vfio_user_p2p_dmabuf_close cl = { .argsz = sizeof(cl) };
	struct rep r;
	int s = vu_connect(gpu_path);

	t_section("feature 11 export: argsz retry, kernel errnos, DMABUF_CLOSE");
	CHECK_VU(vu_version(s, js), 0);
	CHECK_VU(vu_call(s, VFIO_USER_DEVICE_FEATURE, &req, sizeof(req), &r), 0);
	memcpy(&d, r.p, sizeof(d));
	CHECK(r.fd < 0 && r.len == sizeof(d) && d.argsz == 48 && d.nr_ranges == 0);
	req.f.argsz = 48;
	req.r.length = 4095; /* not page aligned: the kernel's EINVAL */
	CHECK(vu_call(s, VFIO_USER_DEVICE_FEATURE, &req, sizeof(req), NULL) == EINVAL);
	req.r.length = 4096;
	req.db.region_index = 7;
	/* not a memory BAR: the kernel's ENODEV */
	CHECK(vu_call(s, VFIO_USER_DEVICE_FEATURE, &req, sizeof(req), NULL) == ENODEV);
	req.db.region_index = 2;
	req.db.nr_ranges = 5; /* more than carried */
	CHECK(vu_call(s, VFIO_USER_DEVICE_FEATURE, &req, sizeof(req), NULL) == EINVAL);
	req.db.nr_ranges = 1;
	CHECK_VU(vu_call(s, VFIO_USER_DEVICE_FEATURE, &req, sizeof(req), &r), 0);
	memcpy(&d, r.p, sizeof(d));
	CHECK(r.fd >= 0 && d.argsz == 48 && d.nr_ranges == 1 && d.export_id);
	close(r.fd);
	{
		/* feature 14 (memattr) SET names the client's export id, as feature 13 does */
		struct vfio_user_device_feature f = {
			.argsz = sizeof(f) + sizeof(struct vfio_device_feature_dma_buf_memattr),
			.flags = VFIO_USER_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR,
		};
		struct vfio_device_feature_dma_buf_memattr ma = {
			.dmabuf_fd = (int32_t)d.export_id,
			.memattr = VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC,
		};
		uint8_t buf[sizeof(f) + sizeof(ma)];

		memcpy(buf, &f, sizeof(f));
		memcpy(buf + sizeof(f), &ma, sizeof(ma));
		CHECK_VU(vu_call(s, VFIO_USER_DEVICE_FEATURE, buf, sizeof(buf), NULL), 0);
		ma.dmabuf_fd = (int32_t)d.export_id + 100; /* not ours (nor a server fd number) */
		memcpy(buf + sizeof(f), &ma, sizeof(ma));
		CHECK(vu_call(s, VFIO_USER_DEVICE_FEATURE, buf, sizeof(buf), NULL) == EBADF);
	}
	cl.export_id = d.export_id + 100;
	CHECK(vu_call(s, VFIO_USER_P2P_DMABUF_CLOSE, &cl, sizeof(cl), NULL) == ENOENT);
	cl.export_id = d.export_id;
	CHECK_VU(vu_call(s, VFIO_USER_P2P_DMABUF_CLOSE, &cl, sizeof(cl), NULL), 0);
	CHECK(vu_call(s, VFIO_USER_P2P_DMABUF_CLOSE, &cl, sizeof(cl), NULL) == ENOENT);
	close(s);
}

/* Memory decode off then on: a revoke notice, then the restore notice (flags 0). */
static void test_restore(void)
{
	const char *js = "{\"capabilities\":{\"p2pbuf\":{\"dmabuf\":1,\"revoke\":1}}}";
	struct t_vu_feat11 req = {
		.f = { .argsz = 64, .flags = VFIO_USER_DEVICE_FEATURE_GET | 11 },
		.db = { .region_index = 2, .open_flags = O_RDWR, .nr_ranges = 1 },
		.r = { .offset = 0, .length = 65536 },
	};
	struct vfio_user_p2p_dmabuf d;
	static struct rep r;
	uint16_t cmd = 0;
	int s = vu_connect(gpu_path);

	t_section("restore: memory decode back on sends flags 0 to clients that asked for revoke");
	CHECK_VU(vu_version(s, js), 0);
	CHECK_VU(vu_call(s, VFIO_USER_DEVICE_FEATURE, &req, sizeof(req), &r), 0);
	CHECK(r.fd >= 0);
	if (r.fd >= 0)
		close(r.fd);
	memcpy(&d, r.p, sizeof(d));
	CHECK_VU(reg_read(s, 7, 4, &cmd, 2), 0);
	CHECK(cmd & 0x2);
	n_notices = 0;
	cmd &= (uint16_t)~0x2;
	CHECK_VU(reg_write(s, 7, 4, &cmd, 2), 0); /* COMMAND.MEM off: revoked */
	CHECK(n_notices == 1);
	CHECK(notices[0].export_id == d.export_id &&
	      notices[0].flags == VFIO_USER_P2P_REVOKE_F_REVOKED);
	cmd |= 0x2;
	CHECK_VU(reg_write(s, 7, 4, &cmd, 2), 0); /* on again: restored */
	/* The notice is sent during the write, before its reply: already met. */
	CHECK(n_notices == 2);
	CHECK(notices[1].export_id == d.export_id && notices[1].flags == 0);
	close(s);
}

/* ---- a server just starting ------------------------------------------- */

static atomic_int spin_state; /* 0 spinning, 1 connected, -errno refused */
static const char *spin_path;

/* connect(2) as fast as it goes until the socket file is there and answers. */
static void *spin_connect(void *arg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	(void)arg;
	strcpy(sa.sun_path, spin_path);
	while (!atomic_load(&spin_state)) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			continue;
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			/* The connection is served: a VERSION gets its reply. */
			atomic_store(&spin_state, vu_version(fd, NULL) ? -EPROTO : 1);
		} else if (errno != ENOENT) {
			atomic_store(&spin_state, -errno);
		}
		close(fd);
	}
	return NULL;
}

static struct p2p_vfio_user_server *race_srv;
static struct p2p_pci_dev *race_dev;
static atomic_int race_go, race_ok, race_busy;
static pthread_barrier_t race_start; /* the 16 racers and the test: released together */

/* One of 16 threads adding a connection at the same moment. */
static void *add_racer(void *arg)
{
	int sv[2], ret;

	(void)arg;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		sv[0] = sv[1] = -1;
	/* Blocked, not spinning, until all are there (spinners would starve the server's threads). */
	pthread_barrier_wait(&race_start);
	if (sv[1] < 0)
		return NULL;
	ret = p2p_vfio_user_server_add_fd(race_srv, race_dev, sv[1]);
	if (!ret)
		atomic_fetch_add(&race_ok, 1);
	else if (ret == -EBUSY)
		atomic_fetch_add(&race_busy, 1);
	/* Our end stays open until the count is checked: the connection lives. */
	while (atomic_load(&race_go) == 1)
		usleep(1000);
	close(sv[0]);
	return NULL;
}

/*
 * max_clients 4, 16 connections added at once from 16 threads: 4 taken,
 * 12 refused with EBUSY (the check and the count are one step).
 */
static int max_clients_race(void)
{
	struct p2p_vfio_user_server_info si = { .argsz = sizeof(si), .revoke_timeout_ms = REVOKE_MS,
						.max_clients = 4 };
	pthread_t thr[16];
	int bad = 0;

	for (int round = 0; round < 5 && !bad; round++) {
		if (p2p_vfio_user_server_create(&si, &race_srv))
			return 1;
		atomic_store(&race_ok, 0);
		atomic_store(&race_busy, 0);
		pthread_barrier_init(&race_start, NULL, 17);
		atomic_store(&race_go, 1);
		for (int i = 0; i < 16; i++)
			pthread_create(&thr[i], NULL, add_racer, NULL);
		pthread_barrier_wait(&race_start);
		for (int w = 0; w < 500 && atomic_load(&race_ok) + atomic_load(&race_busy) < 16; w++)
			usleep(10000);
		if (atomic_load(&race_ok) != 4 || atomic_load(&race_busy) != 12 ||
		    p2p_vfio_user_server_nr_clients(race_srv) != 4) {
			fprintf(stderr, "max_clients 4: %d taken, %d EBUSY, %u clients\n",
				atomic_load(&race_ok), atomic_load(&race_busy),
				p2p_vfio_user_server_nr_clients(race_srv));
			bad = 1;
		}
		atomic_store(&race_go, 2);
		for (int i = 0; i < 16; i++)
			pthread_join(thr[i], NULL);
		pthread_barrier_destroy(&race_start);
		p2p_vfio_user_server_destroy(race_srv);
	}
	return bad;
}

/*
 * A client that connects the moment the socket file appears (as one that
 * waits for the file does) is served: the path appears only once the
 * socket listens, and a connection accepted before the device is listed
 * finds it whole (one used to crash the server).  In a child process, 40
 * servers started afresh with a client spinning on each path.
 */
static int startup_child(void)
{
	struct p2p_vfio_user_server_info si = { .argsz = sizeof(si), .revoke_timeout_ms = REVOKE_MS };
	struct p2p_pci_dev *ce;
	char path[128];
	int bad = 0;

	signal(SIGPIPE, SIG_IGN);
	if (p2p_library_init() || p2p_copy_engine_create(CE_BDF, NULL, 11, &ce))
		return 2;
	for (int i = 0; i < 40 && !bad; i++) {
		struct p2p_vfio_user_server *srv;
		pthread_t thr;
		int ret;

		snprintf(path, sizeof(path), "%s/start-%d", dir, i);
		spin_path = path;
		atomic_store(&spin_state, 0);
		if (p2p_vfio_user_server_create(&si, &srv))
			return 3;
		if (pthread_create(&thr, NULL, spin_connect, NULL))
			return 4;
		ret = p2p_vfio_user_server_add(srv, ce, path);
		if (ret)
			atomic_store(&spin_state, ret);
		pthread_join(thr, NULL);
		if (atomic_load(&spin_state) != 1) {
			fprintf(stderr, "round %d: %s\n", i, strerror(-atomic_load(&spin_state)));
			bad = 1;
		}
		p2p_vfio_user_server_destroy(srv);
		if (!access(path, F_OK)) {
			fprintf(stderr, "round %d: %s left behind\n", i, path);
			bad = 1;
		}
	}
	/* bind(2)'s errno for a path that is taken, and nothing of ours left beside it. */
	{
		struct p2p_vfio_user_server *srv;
		int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

		if (fd < 0 || p2p_vfio_user_server_create(&si, &srv))
			return 5;
		close(fd);
		if (p2p_vfio_user_server_add(srv, ce, path) != -EADDRINUSE) {
			fprintf(stderr, "taken path: not EADDRINUSE\n");
			bad = 1;
		}
		p2p_vfio_user_server_destroy(srv);
		unlink(path);
	}
	race_dev = ce;
	bad |= max_clients_race();
	p2p_pci_dev_put(ce);
	return bad;
}

static void test_startup(void)
{
	pid_t pid;
	int st = 0;

	t_section("a client connecting as the socket appears is served (40 fresh servers); "
		  "max_clients holds against connections added at once");
	pid = fork();
	if (pid == 0)
		_exit(startup_child());
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	{
		/* Nothing but the two device sockets in the directory. */
		DIR *dp = opendir(dir);
		int n = 0;

		for (struct dirent *de; dp && (de = readdir(dp));)
			n += de->d_name[0] != '.';
		if (dp)
			closedir(dp);
		CHECK(n == 2);
	}
}

int main(void)
{
	int ready[2], st;
	pid_t srv;
	char c;

	t_begin();
	snprintf(dir, sizeof(dir), "/tmp/p2pbuf-vu-XXXXXX");
	if (!mkdtemp(dir))
		t_skip("mkdtemp");
	snprintf(gpu_path, sizeof(gpu_path), "%s/%s", dir, GPU_BDF);
	snprintf(ce_path, sizeof(ce_path), "%s/%s", dir, CE_BDF);
	signal(SIGPIPE, SIG_IGN);
	if (pipe(ready))
		return 1;
	srv = fork();
	if (srv == 0) {
		close(ready[0]);
		_exit(server_main(ready[1]));
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1) {
		waitpid(srv, &st, 0);
		fprintf(stderr, "server failed to start (%d)\n", WEXITSTATUS(st));
		return 1;
	}
	close(ready[0]);

	test_startup();
	test_basics();
	test_malformed();
	test_dma();
	test_dma_fdless();
	test_twin();
	test_dma_fdless_kill();
	test_kill9();
	test_many_clients();
	test_export_errors();
	test_revoke(1, 0);
	test_revoke(16, 0);
	test_revoke(1, 1);
	test_revoke(14, 2);
	test_restore();
	test_revoke_kill();
	test_revoke_inline_silent();

	t_section("SIGTERM: the server stops cleanly, sockets unlinked");
	kill(srv, SIGTERM);
	CHECK(waitpid(srv, &st, 0) == srv);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(access(gpu_path, F_OK) && access(ce_path, F_OK));
	rmdir(dir);
	return t_end();
}
