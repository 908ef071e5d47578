// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench vfio-user: the door to other processes, each figure against
 * its raw baseline from the same run, interleaved round by round (the two
 * alternate which goes first; the first round warms up), medians of the
 * rounds with their spread (min-max).  A `p2pbuf serve` process (this very
 * binary) serves a GPU-like function (BAR2 of --size, default 64 MiB) and a
 * copy engine on Unix sockets in a temporary directory.
 *
 *   region  REGION_READ / REGION_WRITE of 4 bytes and of 4 KiB through the
 *           client library (p2p_vfio_device_pread/pwrite of a BAR the
 *           client traps: P2P_VFIO_USER_TRAP_BARS) vs a raw request/reply
 *           of the same sizes on the wire over a Unix socket to a tiny echo
 *           process; target <= 1.3x
 *   bar     memcpy into and out of the BAR mapped through its region fd vs
 *           the same on a local memfd mapping; target >= 0.95x
 *   dma     the served copy engine copies within client memory mapped with
 *           its fd (DMA_MAP with an fd) vs a local copy engine in this
 *           process over a local memfd of the same size; target >= 0.9x
 *   revoke  1 and 16 client processes, each with a 64 MiB dma-buf of the
 *           BAR exported over the wire, mapped and touched; another client
 *           resets the device: the time until the reset returns (every
 *           client zapped, drained and acked) vs the local revoke of the
 *           same mappings (N dma-bufs of a local function, mapped and
 *           touched, reset) + one socket round trip per client and one
 *           for the reset request itself; target <= 1.5x, with its parts
 *
 * The revoke clients are this binary's hidden `bench-vfio-user-worker`
 * mode, driven over a socketpair.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p2pbuf/vfio_user.h>

#include "ce_driver.h"
#include "cli.h"

#define die bench_die
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define GPU "0000:01:00.0"
#define CE "0000:02:00.0"
#define HDR 16u	   /* struct vfio_user_header */
#define ACCESS 16u /* struct vfio_user_region_access */
#define OPS 500u   /* region accesses per timed batch */
#define MAX_CLIENTS 16

struct vu_bench {
	char dir[64];
	pid_t server;
	uint64_t bar; /* BAR2 size */
};

static void sock_path(const struct vu_bench *b, const char *bdf, char *out, size_t n)
{
	snprintf(out, n, "%s/%s", b->dir, bdf);
}

/* `p2pbuf serve` (this binary) of a GPU and a copy engine; up when both sockets are. */
static void server_start(struct vu_bench *b)
{
	char cfg[128], exe[PATH_MAX], p[128];
	ssize_t n;
	FILE *f;

	snprintf(b->dir, sizeof(b->dir), "/tmp/p2p-bench-vu-XXXXXX");
	if (!mkdtemp(b->dir))
		die("temporary directory", errno);
	snprintf(cfg, sizeof(cfg), "%s/devices.conf", b->dir);
	f = fopen(cfg, "w");
	if (!f)
		die("config", errno);
	fprintf(f, "gpu %s group=1 bar0=16K bar2=%lluM,64,pf\ncopy-engine %s group=2\n", GPU,
		(unsigned long long)(b->bar >> 20), CE);
	fclose(f);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		die("/proc/self/exe", errno);
	exe[n] = 0;
	b->server = fork();
	if (b->server < 0)
		die("fork", errno);
	if (b->server == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		execl(exe, "p2pbuf", "serve", "--config", cfg, "--socket-dir", b->dir,
		      "--revoke-timeout-ms", "5000", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		struct stat st;
		bool up = true;

		for (int k = 0; k < 2; k++) {
			sock_path(b, k ? CE : GPU, p, sizeof(p));
			up = up && !stat(p, &st);
		}
		if (up)
			return;
		if (waitpid(b->server, NULL, WNOHANG) == b->server)
			break;
		usleep(10000);
	}
	die("p2pbuf serve did not start", -EIO);
}

static void server_stop(struct vu_bench *b)
{
	char p[128];

	if (b->server > 0) {
		kill(b->server, SIGTERM);
		waitpid(b->server, NULL, 0);
	}
	snprintf(p, sizeof(p), "%s/devices.conf", b->dir);
	unlink(p);
	rmdir(b->dir);
}

static struct p2p_vfio_user_client *vu_connect(const struct vu_bench *b, const char *bdf,
					       const char *name, uint32_t flags,
					       struct p2p_vfio_device **v)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .name = name,
						 .flags = flags, .timeout_ms = 10000 };
	struct p2p_vfio_user_client *c;
	char p[128];
	int ret;

	sock_path(b, bdf, p, sizeof(p));
	if ((ret = p2p_vfio_user_connect(p, &ci, &c)))
		die("vfio-user connect", ret);
	if (v && (ret = p2p_vfio_device_open(p2p_vfio_user_client_pci(c), v)))
		die("open the remote function", ret);
	return c;
}

/* ---------------------------------------------------------------------- */
/* The raw baseline: request/reply over a Unix socket to an echo process   */

static int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * The echo process: each request starts with a 16-byte header (its size,
 * the size of the reply wanted) as a vfio-user header carries its size; it
 * reads the request whole, as a server must, and writes the reply whole.
 */
static pid_t echo_start(int *sock)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		die("socketpair", errno);
	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		static uint8_t buf[HDR + ACCESS + 8192];
		uint32_t h[4];

		close(sv[0]);
		while (!read_full(sv[1], h, sizeof(h))) {
			if (h[0] < HDR || h[0] > sizeof(buf) || h[1] < HDR || h[1] > sizeof(buf) ||
			    read_full(sv[1], buf, h[0] - HDR))
				_exit(1);
			memcpy(buf, h, HDR);
			if (write_full(sv[1], buf, h[1]))
				_exit(1);
		}
		_exit(0);
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

/* @ops raw round trips of @req bytes out and @rep bytes back; nanoseconds. */
static uint64_t echo_batch(int s, uint32_t req, uint32_t rep, unsigned int ops)
{
	static uint8_t out[HDR + ACCESS + 8192], in[HDR + ACCESS + 8192];
	uint32_t h[4] = { req, rep, 0, 0 };
	uint64_t t0 = now_ns();

	for (unsigned int i = 0; i < ops; i++) {
		h[2] = i;
		memcpy(out, h, sizeof(h));
		if (write_full(s, out, req) || read_full(s, in, rep))
			die("echo", -EIO);
	}
	return now_ns() - t0;
}

/* ---------------------------------------------------------------------- */
/* region: REGION_READ / REGION_WRITE vs raw request/reply                 */

static uint64_t region_batch(struct p2p_vfio_device *v, uint8_t *buf, size_t len, bool write,
			     unsigned int ops)
{
	uint64_t off = P2P_VFIO_REGION_OFFSET(2) + 4 * BENCH_PAGE, t0 = now_ns();

	for (unsigned int i = 0; i < ops; i++) {
		ssize_t n = write ? p2p_vfio_device_pwrite(v, buf, len, off)
				  : p2p_vfio_device_pread(v, buf, len, off);

		if (n != (ssize_t)len)
			die(write ? "REGION_WRITE" : "REGION_READ", n < 0 ? (int)n : -EIO);
	}
	return now_ns() - t0;
}

static void bench_region(struct bench_report *r, const struct vu_bench *b, unsigned int n)
{
	static const size_t sizes[] = { 4, 4096 };
	uint64_t *tv = calloc(n, 8), *tr = calloc(n, 8);
	struct p2p_vfio_user_client *c;
	struct p2p_vfio_device *v;
	uint8_t *buf = calloc(1, 8192);
	pid_t echo;
	int s;

	c = vu_connect(b, GPU, "0000:71:00.0", P2P_VFIO_USER_TRAP_BARS, &v);
	echo = echo_start(&s);
	report_fact(r, "region", "p2p_vfio_device_pread/pwrite of BAR2 trapped by the client "
				 "(REGION_READ/WRITE to p2pbuf serve)");
	report_fact(r, "region baseline", "the same bytes on the wire: request + reply over a "
					  "Unix socket to an echo process");
	for (size_t si = 0; si < ARRAY_SIZE(sizes); si++) {
		for (int w = 0; w < 2; w++) {
			size_t len = sizes[si];
			/* The wire: header + access (+ data on the request of a write, the reply of a read). */
			uint32_t req = HDR + ACCESS + (w ? (uint32_t)len : 0);
			uint32_t rep = HDR + ACCESS + (w ? 0 : (uint32_t)len);
			char name[64], what[96];
			double mv, mr;

			for (unsigned int it = 0; it < n + 1; it++) {
				uint64_t a, raw;

				if (it & 1) {
					raw = echo_batch(s, req, rep, OPS);
					a = region_batch(v, buf, len, w, OPS);
				} else {
					a = region_batch(v, buf, len, w, OPS);
					raw = echo_batch(s, req, rep, OPS);
				}
				if (it) {
					tv[it - 1] = a;
					tr[it - 1] = raw;
				}
			}
			snprintf(what, sizeof(what), "%u x %zu B, per batch", OPS, len);
			snprintf(name, sizeof(name), "region_%s_%zu", w ? "write" : "read", len);
			mv = report_median(r, name, what, tv, n);
			snprintf(name, sizeof(name), "raw_rr_%u_%u", req, rep);
			mr = report_median(r, name, what, tr, n);
			snprintf(name, sizeof(name), "region_%s_%zu/raw", w ? "write" : "read", len);
			report_ratio(r, name, mv / mr);
			if (!r_json(r))
				printf("   %-28s %.2f us per access, raw round trip %.2f us\n", "",
				       mv * 1e3 / OPS, mr * 1e3 / OPS);
			report_target(r, name, mv / mr, 1.3, false, "<= 1.3 x raw request/reply");
		}
	}
	close(s);
	waitpid(echo, NULL, 0);
	p2p_vfio_device_close(v);
	p2p_vfio_user_disconnect(c);
	free(buf);
	free(tv);
	free(tr);
}

/* ---------------------------------------------------------------------- */
/* bar: CPU access through the region fd vs a local memfd                  */

static uint64_t copy_pass(uint8_t *dev, uint8_t *src, uint8_t *dst, uint64_t size)
{
	uint64_t t0 = now_ns();

	memcpy(dev, src, size);
	memcpy(dst, dev, size);
	return now_ns() - t0;
}

static void bench_bar(struct bench_report *r, const struct vu_bench *b, unsigned int n)
{
	uint64_t size = b->bar, *tv = calloc(n, 8), *tl = calloc(n, 8);
	struct p2p_vfio_user_client *c;
	struct p2p_vfio_device *v;
	uint8_t *bar, *local, *src, *dst;
	char what[96];
	double mv, ml;
	int lfd, ret;

	c = vu_connect(b, GPU, "0000:72:00.0", 0, &v);
	if ((ret = p2p_vfio_device_mmap(v, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
					P2P_VFIO_REGION_OFFSET(2), (void **)&bar)))
		die("BAR2 mmap", ret);
	local = raw_mmap(lfd = raw_memfd(size), size, true);
	src = malloc(size);
	dst = malloc(size);
	if (!src || !dst)
		die("malloc", -ENOMEM);
	memset(src, 0x5a, size);
	memset(dst, 0, size);
	report_fact(r, "bar", "memcpy into and out of BAR2 mapped through the server's region fd");
	report_fact(r, "bar baseline", "the same on a local memfd mapping (same page policy)");
	for (unsigned int it = 0; it < n + 1; it++) {
		uint64_t a, l;

		if (it & 1) {
			l = copy_pass(local, src, dst, size);
			a = copy_pass(bar, src, dst, size);
		} else {
			a = copy_pass(bar, src, dst, size);
			l = copy_pass(local, src, dst, size);
		}
		if (it) {
			tv[it - 1] = a;
			tl[it - 1] = l;
		}
	}
	if (memcmp(dst, src, size))
		die("BAR data", -EIO);
	snprintf(what, sizeof(what), "%llu MiB in + out", (unsigned long long)(size >> 20));
	mv = report_median(r, "bar_region_fd", what, tv, n);
	ml = report_median(r, "bar_local_memfd", what, tl, n);
	report_ratio(r, "bar/local", ml / mv);
	if (!r_json(r))
		printf("   %-28s region fd %.2f GB/s, local memfd %.2f GB/s\n", "",
		       2.0 * (double)size / (mv * 1e6), 2.0 * (double)size / (ml * 1e6));
	report_target(r, "bar/local", ml / mv, 0.95, true, ">= 0.95 x local memfd (throughput)");
	p2p_munmap(bar, size);
	munmap(local, size);
	close(lfd);
	free(src);
	free(dst);
	p2p_vfio_device_close(v);
	p2p_vfio_user_disconnect(c);
	free(tv);
	free(tl);
}

/* ---------------------------------------------------------------------- */
/* dma: the copy engine into client memory mapped with an fd vs local       */

#define DMA_IOVA 0x40000000ull
#define DMA_CHUNK (4ull << 20)

struct dma_side {
	struct p2p_vfio_user_client *c; /* NULL: a local engine */
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *v;
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	struct ce_drv drv;
	uint8_t *mem;
	int fd;
};

static void dma_side_init(struct dma_side *d, const struct vu_bench *b, bool remote,
			  uint64_t size)
{
	uint64_t iova = DMA_IOVA;
	uint32_t id;
	int ret;

	memset(d, 0, sizeof(*d));
	if (remote)
		d->c = vu_connect(b, CE, "0000:73:00.0", 0, &d->v);
	else if ((ret = p2p_copy_engine_create("0000:74:00.0", NULL, 74, &d->pci)) ||
		 (ret = p2p_vfio_device_open(d->pci, &d->v)))
		die("local copy engine", ret);
	d->mem = raw_mmap(d->fd = raw_memfd(2 * size), 2 * size, true);
	memset(d->mem, 0x3c, size);
	if ((ret = p2p_iommufd_open(&d->ictx)) || (ret = p2p_ioas_alloc(d->ictx, &id, &d->ioas)) ||
	    (ret = p2p_vfio_device_attach_ioas(d->v, d->ioas)) ||
	    (ret = p2p_ioas_map_file(d->ioas, d->fd, 0, 2 * size, &iova,
				     P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					     P2P_IOAS_MAP_WRITEABLE)) ||
	    (ret = ce_drv_init(&d->drv, d->v, d->ioas, 64)))
		die(remote ? "remote copy engine" : "local copy engine", ret);
}

static void dma_side_fini(struct dma_side *d, uint64_t size)
{
	ce_drv_fini(&d->drv);
	p2p_ioas_unmap(d->ioas, DMA_IOVA, 2 * size, NULL);
	p2p_vfio_device_close(d->v);
	p2p_ioas_put(d->ioas);
	p2p_iommufd_close(d->ictx);
	if (d->c)
		p2p_vfio_user_disconnect(d->c);
	else
		p2p_pci_dev_put(d->pci);
	munmap(d->mem, 2 * size);
	close(d->fd);
}

/*
 * One pass: the first half copied to the second in DMA_CHUNK descriptors,
 * written straight into the ring (no HEAD read per descriptor: a remote
 * register read is a round trip), one doorbell, the last one interrupts.
 */
static uint64_t dma_pass(struct dma_side *d, uint64_t size)
{
	uint32_t cnt = (uint32_t)(size / DMA_CHUNK), first = d->drv.tail, last = first + cnt - 1;
	uint64_t t0 = now_ns();
	int ret;

	for (uint32_t i = 0; i < cnt; i++) {
		uint32_t idx = first + i;

		d->drv.ring[idx & (d->drv.entries - 1)] = (struct p2p_ce_desc){
			.src = DMA_IOVA + i * DMA_CHUNK, .dst = DMA_IOVA + size + i * DMA_CHUNK,
			.len = DMA_CHUNK, .flags = idx == last ? P2P_CE_DESC_IRQ : 0, .id = idx,
		};
		memset(ce_drv_compl(&d->drv, idx), 0, sizeof(struct p2p_ce_compl));
	}
	d->drv.tail = first + cnt;
	if ((ret = ce_drv_kick(&d->drv)) || (ret = ce_drv_wait(&d->drv, last)))
		die("copy engine", ret);
	t0 = now_ns() - t0;
	for (uint32_t i = 0; i < cnt; i++)
		if (ce_drv_compl(&d->drv, first + i)->status != P2P_CE_OK)
			die("copy engine status", -EIO);
	return t0;
}

static void bench_dma(struct bench_report *r, const struct vu_bench *b, unsigned int n)
{
	uint64_t size = b->bar, *tv = calloc(n, 8), *tl = calloc(n, 8);
	struct dma_side rem, loc;
	char what[96];
	double mv, ml;

	dma_side_init(&rem, b, true, size);
	dma_side_init(&loc, b, false, size);
	report_fact(r, "dma", "the served copy engine copies within client memory (a memfd "
			      "DMA_MAPped with its fd)");
	report_fact(r, "dma baseline", "a local copy engine, same copies, local memfd of the same size");
	for (unsigned int it = 0; it < n + 1; it++) {
		uint64_t a, l;

		if (it & 1) {
			l = dma_pass(&loc, size);
			a = dma_pass(&rem, size);
		} else {
			a = dma_pass(&rem, size);
			l = dma_pass(&loc, size);
		}
		if (it) {
			tv[it - 1] = a;
			tl[it - 1] = l;
		}
	}
	if (rem.mem[size] != 0x3c || rem.mem[2 * size - 1] != 0x3c)
		die("DMA data", -EIO);
	snprintf(what, sizeof(what), "%llu MiB in %llu MiB copies", (unsigned long long)(size >> 20),
		 (unsigned long long)(DMA_CHUNK >> 20));
	mv = report_median(r, "dma_client_memfd", what, tv, n);
	ml = report_median(r, "dma_local", what, tl, n);
	report_ratio(r, "dma/local", ml / mv);
	if (!r_json(r))
		printf("   %-28s client memory %.2f GB/s, local %.2f GB/s\n", "",
		       (double)size / (mv * 1e6), (double)size / (ml * 1e6));
	report_target(r, "dma/local", ml / mv, 0.9, true, ">= 0.9 x local DMA (throughput)");
	dma_side_fini(&rem, size);
	dma_side_fini(&loc, size);
	free(tv);
	free(tl);
}

/* ---------------------------------------------------------------------- */
/* revoke: across processes vs local + round trips                         */

#define REVOKE_SIZE (64ull << 20)

/*
 * The hidden worker: `p2pbuf bench-vfio-user-worker SOCKET FD SIZE`.  On
 * 'm' it drops its old dma-buf, exports [0, SIZE) of BAR2, maps and
 * touches it and answers 'r'; on EOF it leaves.
 */
int cmd_bench_vfio_user_worker(int argc, char **argv)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .timeout_ms = 10000 };
	struct p2p_vfio_user_client *c;
	uint64_t size;
	uint8_t *m = NULL;
	int ctl, fd = -1, ret;
	char cmd;

	if (argc != 4)
		return 2;
	ctl = atoi(argv[2]);
	size = strtoull(argv[3], NULL, 0);
	p2p_library_init();
	if ((ret = p2p_vfio_user_connect(argv[1], &ci, &c)))
		die("worker connect", ret);
	while (read(ctl, &cmd, 1) == 1) {
		struct vfio_region_dma_range rg = { .offset = 0, .length = size };

		if (m)
			p2p_munmap(m, size);
		if (fd >= 0)
			p2p_close(fd);
		m = NULL;
		fd = p2p_vfio_user_dmabuf_export(c, 2, &rg, 1, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			die("worker export", fd);
		if ((ret = p2p_fd_mmap(fd, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
				       (void **)&m)))
			die("worker mmap", ret);
		touch_pages(m, size);
		cmd = 'r';
		if (write(ctl, &cmd, 1) != 1)
			break;
	}
	if (m)
		p2p_munmap(m, size);
	if (fd >= 0)
		p2p_close(fd);
	p2p_vfio_user_disconnect(c);
	return 0;
}

struct workers {
	unsigned int nr;
	pid_t pid[MAX_CLIENTS];
	int ctl[MAX_CLIENTS];
};

static void workers_start(struct workers *w, const struct vu_bench *b, unsigned int nr)
{
	char exe[PATH_MAX], p[128], fdarg[16], sz[32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		die("/proc/self/exe", errno);
	exe[n] = 0;
	sock_path(b, GPU, p, sizeof(p));
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)REVOKE_SIZE);
	w->nr = nr;
	for (unsigned int i = 0; i < nr; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			die("socketpair", errno);
		w->pid[i] = fork();
		if (w->pid[i] < 0)
			die("fork", errno);
		if (w->pid[i] == 0) {
			close(sv[0]);
			snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
			execl(exe, "p2pbuf", "bench-vfio-user-worker", p, fdarg, sz, (char *)NULL);
			_exit(127);
		}
		close(sv[1]);
		fcntl(sv[0], F_SETFD, FD_CLOEXEC);
		w->ctl[i] = sv[0];
	}
}

/* Every worker exports, maps and touches a fresh 64 MiB dma-buf. */
static void workers_arm(struct workers *w)
{
	char cmd = 'm';

	for (unsigned int i = 0; i < w->nr; i++)
		if (write(w->ctl[i], &cmd, 1) != 1)
			die("worker", -EPIPE);
	for (unsigned int i = 0; i < w->nr; i++)
		if (read(w->ctl[i], &cmd, 1) != 1 || cmd != 'r')
			die("worker died", -EPIPE);
}

static void workers_stop(struct workers *w)
{
	for (unsigned int i = 0; i < w->nr; i++) {
		int st = 0;

		close(w->ctl[i]);
		waitpid(w->pid[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			die("worker exit", -EIO);
	}
}

/* The local case: @nr dma-bufs of a local function's BAR2, mapped and touched, then reset. */
struct local_rev {
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *v;
	int fd[MAX_CLIENTS];
	uint8_t *m[MAX_CLIENTS];
};

static uint64_t local_revoke_once(struct local_rev *l, unsigned int nr)
{
	struct vfio_region_dma_range rg = { .offset = 0, .length = REVOKE_SIZE };
	uint64_t t;
	int ret;

	if ((ret = cli_mem_enable(l->v, true)))
		die("memory enable", ret);
	for (unsigned int i = 0; i < nr; i++) {
		l->fd[i] = p2p_vfio_device_get_dmabuf(l->v, 2, &rg, 1, O_RDWR | O_CLOEXEC);
		if (l->fd[i] < 0)
			die("local export", l->fd[i]);
		if ((ret = p2p_fd_mmap(l->fd[i], NULL, REVOKE_SIZE, PROT_READ | PROT_WRITE,
				       MAP_SHARED, 0, (void **)&l->m[i])))
			die("local mmap", ret);
		touch_pages(l->m[i], REVOKE_SIZE);
	}
	t = now_ns();
	if ((ret = p2p_vfio_device_ioctl(l->v, VFIO_DEVICE_RESET, NULL)))
		die("local reset", ret);
	t = now_ns() - t;
	for (unsigned int i = 0; i < nr; i++) {
		p2p_munmap(l->m[i], REVOKE_SIZE);
		p2p_close(l->fd[i]);
	}
	return t;
}

static uint64_t remote_revoke_once(struct workers *w, struct p2p_vfio_device *ctl)
{
	uint64_t t;
	int ret;

	if ((ret = cli_mem_enable(ctl, true)))
		die("remote memory enable", ret);
	workers_arm(w);
	t = now_ns();
	if ((ret = p2p_vfio_device_ioctl(ctl, VFIO_DEVICE_RESET, NULL)))
		die("remote reset", ret);
	return now_ns() - t;
}

static void bench_revoke_vu(struct bench_report *r, const struct vu_bench *b, unsigned int n)
{
	static const unsigned int clients[] = { 1, MAX_CLIENTS };
	uint64_t *tv = calloc(n, 8), *tl = calloc(n, 8), *tr = calloc(n, 8);
	struct p2p_vfio_user_client *c;
	struct p2p_vfio_device *ctl;
	struct local_rev l = { 0 };
	pid_t echo;
	int s, ret;

	if (b->bar < REVOKE_SIZE)
		die("revoke needs a BAR of 64 MiB or more (--size)", -EINVAL);
	c = vu_connect(b, GPU, "0000:75:00.0", 0, &ctl);
	if ((ret = cli_gpu_create("0000:76:00.0", b->bar, NULL, 76, &l.pci, &l.v)))
		die("local function", ret);
	echo = echo_start(&s);
	report_fact(r, "revoke", "N client processes hold a 64 MiB dma-buf each (exported over "
				 "the wire, mapped, touched); a reset from another client");
	report_fact(r, "revoke baseline", "local reset of N such dma-bufs of a local function + "
					  "(N + 1) socket round trips (each client's ack, the "
					  "reset request)");
	for (size_t ci = 0; ci < ARRAY_SIZE(clients); ci++) {
		unsigned int nr = clients[ci];
		struct workers w;
		char name[64], what[96];
		double mv, ml, mr, base;

		workers_start(&w, b, nr);
		for (unsigned int it = 0; it < n + 1; it++) {
			uint64_t a, lo, rt;

			if (it & 1) {
				lo = local_revoke_once(&l, nr);
				a = remote_revoke_once(&w, ctl);
			} else {
				a = remote_revoke_once(&w, ctl);
				lo = local_revoke_once(&l, nr);
			}
			rt = echo_batch(s, HDR + 16, HDR, 50) / 50;
			if (it) {
				tv[it - 1] = a;
				tl[it - 1] = lo;
				tr[it - 1] = rt;
			}
		}
		workers_stop(&w);
		snprintf(what, sizeof(what), "%u client%s x 64 MiB", nr, nr > 1 ? "s" : "");
		snprintf(name, sizeof(name), "revoke_%u_clients", nr);
		mv = report_median(r, name, what, tv, n);
		snprintf(name, sizeof(name), "local_revoke_%u", nr);
		ml = report_median(r, name, what, tl, n);
		snprintf(name, sizeof(name), "round_trip_%u", nr);
		mr = report_median(r, name, "one 32 B request, 16 B reply", tr, n);
		base = ml + (nr + 1) * mr;
		if (!r_json(r))
			printf("   %-28s budget: local %.3f ms + %u x round trip %.3f ms = %.3f ms\n",
			       "", ml, nr + 1, mr, base);
		snprintf(name, sizeof(name), "revoke_%u/(local+rtts)", nr);
		report_ratio(r, name, mv / base);
		report_target(r, name, mv / base, 1.5, false,
			      "<= 1.5 x (local revoke + a round trip per client)");
	}
	close(s);
	waitpid(echo, NULL, 0);
	p2p_vfio_device_close(l.v);
	p2p_pci_dev_put(l.pci);
	p2p_vfio_device_close(ctl);
	p2p_vfio_user_disconnect(c);
	free(tv);
	free(tl);
	free(tr);
}

int bench_vfio_user(const struct bench_opts *o)
{
	unsigned int n = o->iterations ? o->iterations : 9;
	struct vu_bench b = { .server = -1, .bar = o->size ? o->size : REVOKE_SIZE };
	struct bench_report *r = report_new("vfio-user", o);
	char load[64] = "?";
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fgets(load, sizeof(load), f))
			load[strcspn(load, "\n")] = 0;
		fclose(f);
	}
	report_fact(r, "loadavg", load);
	report_fact(r, "pages", hugepage_mode_name());
	signal(SIGPIPE, SIG_IGN);
	server_start(&b);
	bench_region(r, &b, n);
	bench_bar(r, &b, n);
	bench_dma(r, &b, n);
	bench_revoke_vu(r, &b, n);
	server_stop(&b);
	return report_finish(r);
}
