// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench vfio-user: the door to other processes, each figure against
 * its raw baseline from the same run, interleaved round by round
 * (bench_interleave(): the two alternate which goes first, one warm-up
 * round, rounds added until the ratios settle and the watched targets are
 * decided), medians of the rounds with their spread (min-max).  A `p2pbuf
 * serve` process (this very binary) serves a GPU-like function (BAR2 of
 * --size, default 64 MiB) and a copy engine on Unix sockets in a temporary
 * directory.
 *
 *   region  REGION_READ / REGION_WRITE of 4 bytes and of 4 KiB through the
 *           client library (p2p_vfio_device_pread/pwrite of a BAR the
 *           client traps: P2P_VFIO_USER_TRAP_BARS) vs a raw request/reply
 *           of the same sizes on the wire over a Unix socket to a tiny echo
 *           process; target <= 1.3x.  Both are two wake-ups per access, so
 *           where the scheduler puts the peers decides the figure: a
 *           wake-up across CPUs costs tens of microseconds in a VM whose
 *           idle CPUs halt, one on the same CPU a few.  Each pair is
 *           therefore measured in the same placement for both: all on one
 *           CPU, and client on one CPU with the server (all its threads)
 *           or the echo on another; the target is judged in both (the
 *           stricter decides).  Left to the scheduler ("sched") is printed
 *           too, with where the peers ran, but not judged: the two sides
 *           are not placed alike there.
 *   bar     memcpy into and out of the BAR mapped through its region fd vs
 *           the same on a local memfd mapping; target >= 0.95x
 *   dma     the served copy engine copies within client memory mapped with
 *           its fd (DMA_MAP with an fd) vs a local copy engine in this
 *           process over a local memfd of the same size; target >= 0.9x
 *   revoke  1 and 16 client processes, each with a 64 MiB dma-buf of the
 *           BAR exported over the wire, mapped and touched; another client
 *           resets the device: the time until the reset returns (every
 *           client zapped, drained and acked) vs the local revoke of the
 *           same mappings (each client revokes and restores its own
 *           dma-buf itself, p2p_dmabuf_revoke/unrevoke: the same pages
 *           through the same page tables; summed over the clients) + one
 *           socket round trip per client and one for the reset request
 *           itself; target <= 1.5x.  A zap's cost depends on where the
 *           pages and page tables landed (a client's own local revoke
 *           measured 1.25 ms where a local function's took 0.88 ms, in
 *           the same run), so the baseline is the same mappings, not
 *           others like them.  For information, beside it: N dma-bufs of
 *           a local function, mapped, touched and reset, VRAM pre-faulted
 *           (as `p2pbuf run` and the other benchmarks make theirs, and as
 *           the served GPU is, by the `prefault` key of its config line),
 *           and the same without pre-faulting (each zap drops the last
 *           mapping of every page: per-page accounting;
 *           local_unprefaulted).  The parts: when the
 *           clients start applying the notice, and when the un-revoke
 *           notice that follows the acks reaches them (stamped by an
 *           importer of each client's own), and the CPU time the
 *           clients' library threads and the server's threads took (the
 *           local revokes' CPU time beside them).
 *
 * The revoke clients are this binary's hidden `bench-vfio-user-worker`
 * mode, driven over a socketpair.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

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
	fprintf(f, "gpu %s group=1 bar0=16K bar2=%lluM,64,pf prefault\ncopy-engine %s group=2\n", GPU,
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
/* Placement: which CPUs the peers of a request/reply may run on           */

/* Every thread of process @pid limited to @set. */
static void pin_process(pid_t pid, const cpu_set_t *set)
{
	char path[64];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		die("pin: /proc/PID/task", errno);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' &&
		    sched_setaffinity((pid_t)atoi(e->d_name), sizeof(*set), set) && errno != ESRCH)
			die("sched_setaffinity", errno);
	closedir(d);
}

static void pin_process_cpu(pid_t pid, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pin_process(pid, &set);
}

/* The CPU task @tid of @pid last ran on (field 39 of its stat), or -1. */
static int task_cpu(pid_t pid, pid_t tid, unsigned long long *slices)
{
	char path[96], buf[1024], *p;
	int cpu = -1, i;
	FILE *f;

	if (slices) {
		unsigned long long run, wait;

		*slices = 0;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)tid);
		if ((f = fopen(path, "re"))) {
			if (fscanf(f, "%llu %llu %llu", &run, &wait, slices) != 3)
				*slices = 0;
			fclose(f);
		}
	}
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	if (!(f = fopen(path, "re")))
		return -1;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	/* After the command name's closing parenthesis: fields 3 onwards. */
	if (!p || !(p = strrchr(buf, ')')))
		return -1;
	for (i = 2; i < 39 && p; i++)
		p = strchr(p + 1, ' ');
	if (p)
		cpu = atoi(p + 1);
	return cpu;
}

/* The threads of the server and how often each has run: who served a batch. */
struct threads {
	unsigned int n;
	pid_t tid[64];
	unsigned long long slices[64];
};

static void threads_snap(pid_t pid, struct threads *t)
{
	char path[64];
	struct dirent *e;
	DIR *d;

	t->n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(d = opendir(path)))
		return;
	while ((e = readdir(d)) && t->n < 64) {
		if (e->d_name[0] == '.')
			continue;
		t->tid[t->n] = (pid_t)atoi(e->d_name);
		task_cpu(pid, t->tid[t->n], &t->slices[t->n]);
		t->n++;
	}
	closedir(d);
}

/* The CPU of the server thread that ran most since @before (the one that served), or -1. */
static int busiest_cpu(pid_t pid, const struct threads *before)
{
	unsigned long long most = 0;
	int cpu = -1;

	for (unsigned int i = 0; i < before->n; i++) {
		unsigned long long sl;
		int c = task_cpu(pid, before->tid[i], &sl);

		if (sl - before->slices[i] > most) {
			most = sl - before->slices[i];
			cpu = c;
		}
	}
	return cpu;
}

/* ---------------------------------------------------------------------- */
/* region: REGION_READ / REGION_WRITE vs raw request/reply                 */

enum { PL_ONE_CPU, PL_TWO_CPUS, PL_SCHED, NR_PL };
static const char *const pl_name[NR_PL] = { "1cpu", "2cpu", "sched" };
static const char *const pl_text[NR_PL] = {
	"client, server and echo pinned to one CPU",
	"client on one CPU, server / echo pinned to another",
	"left to the scheduler",
};

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

struct region_ctx {
	struct p2p_vfio_device *v;
	uint8_t *buf;
	int sock;
	pid_t echo, server;
	size_t len;
	bool write, where; /* where: note the peers' CPUs after each batch */
	uint32_t req, rep;
	/* [0] raw echo, [1] p2pbuf serve: batches, and those with the peer on our CPU */
	unsigned int batches[2], same_cpu[2];
};

/* Arm 0: the raw request/reply to the echo; arm 1: the same through the client library. */
static void region_sample(void *ctx, unsigned int arm, uint64_t *row)
{
	struct region_ctx *x = ctx;
	struct threads before;
	int peer;

	if (x->where && arm)
		threads_snap(x->server, &before);
	row[arm] = arm ? region_batch(x->v, x->buf, x->len, x->write, OPS)
		       : echo_batch(x->sock, x->req, x->rep, OPS);
	if (!x->where)
		return;
	peer = arm ? busiest_cpu(x->server, &before) : task_cpu(x->echo, x->echo, NULL);
	x->batches[arm]++;
	x->same_cpu[arm] += peer >= 0 && peer == sched_getcpu();
}

static void bench_region(struct bench_report *r, const struct vu_bench *b)
{
	static const size_t sizes[] = { 4, 4096 };
	struct region_ctx x = { .server = b->server };
	struct p2p_vfio_user_client *c;
	unsigned int where[2] = { 0 }, same[2] = { 0 };
	cpu_set_t all;
	int cpus[2] = { -1, -1 }, ncpus = 0;
	char txt[160];

	/* The CPUs we may use (maybe fewer than online: taskset). */
	if (sched_getaffinity(0, sizeof(all), &all))
		die("sched_getaffinity", errno);
	for (int i = 0; i < CPU_SETSIZE && ncpus < 2; i++)
		if (CPU_ISSET(i, &all))
			cpus[ncpus++] = i;
	c = vu_connect(b, GPU, "0000:71:00.0", P2P_VFIO_USER_TRAP_BARS, &x.v);
	x.echo = echo_start(&x.sock);
	x.buf = calloc(1, 8192);
	if (!x.buf)
		die("calloc", -ENOMEM);
	report_fact(r, "region", "p2p_vfio_device_pread/pwrite of BAR2 trapped by the client "
				 "(REGION_READ/WRITE to p2pbuf serve)");
	report_fact(r, "region baseline", "the same bytes on the wire: request + reply over a "
					  "Unix socket to an echo process, in the same placement");
	for (int pl = 0; pl < NR_PL; pl++) {
		if (pl == PL_TWO_CPUS && ncpus < 2) {
			report_fact(r, "region 2cpu", "skipped: one CPU available");
			continue;
		}
		if (pl == PL_SCHED) {
			pin_process(getpid(), &all);
			pin_process(x.echo, &all);
			pin_process(b->server, &all);
		} else {
			pin_process_cpu(getpid(), cpus[0]);
			pin_process_cpu(x.echo, cpus[pl == PL_TWO_CPUS]);
			pin_process_cpu(b->server, cpus[pl == PL_TWO_CPUS]);
		}
		if (!r_json(r))
			printf("   -- region, %s: %s\n", pl_name[pl], pl_text[pl]);
		for (size_t si = 0; si < ARRAY_SIZE(sizes); si++) {
			for (int w = 0; w < 2; w++) {
				struct bench_series s;
				char name[64], what[96], sname[48], xl[48];
				double mv, mr;

				x.len = sizes[si];
				x.write = w;
				/* The wire: header + access (+ data on the request of a write, the reply of a read). */
				x.req = HDR + ACCESS + (w ? (uint32_t)x.len : 0);
				x.rep = HDR + ACCESS + (w ? 0 : (uint32_t)x.len);
				x.where = pl == PL_SCHED;
				memset(x.batches, 0, sizeof(x.batches));
				memset(x.same_cpu, 0, sizeof(x.same_cpu));
				snprintf(sname, sizeof(sname), "region %s %zu B, %s", w ? "write" : "read",
					 x.len, pl_name[pl]);
				bench_series_init(&s, sname, 2, 2);
				if (pl != PL_SCHED)
					s.pair[0].max_ratio = 1.3;
				bench_interleave(r, &s, 7, region_sample, &x);
				snprintf(what, sizeof(what), "%u x %zu B, per batch, %s", OPS, x.len,
					 pl_name[pl]);
				snprintf(name, sizeof(name), "region_%s_%zu_%s", w ? "write" : "read",
					 x.len, pl_name[pl]);
				mv = report_series_median(r, &s, 1, name, what);
				snprintf(name, sizeof(name), "raw_rr_%u_%u_%s", x.req, x.rep, pl_name[pl]);
				mr = report_series_median(r, &s, 0, name, what);
				snprintf(name, sizeof(name), "region_%s_%zu/raw_%s", w ? "write" : "read",
					 x.len, pl_name[pl]);
				report_series_ratio(r, &s, 1, 0, name);
				if (!r_json(r))
					printf("   %-28s %.2f us per access, raw round trip %.2f us\n", "",
					       mv * 1e3 / OPS, mr * 1e3 / OPS);
				if (pl != PL_SCHED)
					report_series_target(r, &s, 1, 0, name, 1.3, false,
							     "<= 1.3 x raw request/reply, same placement");
				snprintf(xl, sizeof(xl), "%s %zu B %s", w ? "write" : "read", x.len,
					 pl_name[pl]);
				report_series_plot(r, &s, 1, xl, "p2pbuf", 0);
				report_series_plot(r, &s, 0, xl, "raw baseline", 0);
				for (int k = 0; k < 2; k++) {
					where[k] += x.batches[k];
					same[k] += x.same_cpu[k];
				}
			}
		}
	}
	/* Back to what we were given, every process. */
	pin_process(getpid(), &all);
	pin_process(x.echo, &all);
	pin_process(b->server, &all);
	snprintf(txt, sizeof(txt),
		 "the echo last ran on the client's CPU after %u of %u batches; p2pbuf serve's "
		 "serving thread after %u of %u",
		 same[0], where[0], same[1], where[1]);
	report_fact(r, "region sched placement", txt);
	close(x.sock);
	waitpid(x.echo, NULL, 0);
	p2p_vfio_device_close(x.v);
	p2p_vfio_user_disconnect(c);
	free(x.buf);
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

struct bar_ctx {
	uint8_t *bar, *local, *src, *dst;
	uint64_t size;
};

/* Arm 0: the local memfd; arm 1: the BAR through the region fd. */
static void bar_sample(void *ctx, unsigned int arm, uint64_t *row)
{
	struct bar_ctx *x = ctx;

	row[arm] = copy_pass(arm ? x->bar : x->local, x->src, x->dst, x->size);
}

static void bench_bar(struct bench_report *r, const struct vu_bench *b)
{
	struct bar_ctx x = { .size = b->bar };
	struct p2p_vfio_user_client *c;
	struct p2p_vfio_device *v;
	struct bench_series s;
	char what[96], xl[32];
	double mv, ml;
	int lfd, ret;

	c = vu_connect(b, GPU, "0000:72:00.0", 0, &v);
	if ((ret = p2p_vfio_device_mmap(v, NULL, x.size, PROT_READ | PROT_WRITE, MAP_SHARED,
					P2P_VFIO_REGION_OFFSET(2), (void **)&x.bar)))
		die("BAR2 mmap", ret);
	x.local = raw_mmap(lfd = raw_memfd(x.size), x.size, true);
	x.src = malloc(x.size);
	x.dst = malloc(x.size);
	if (!x.src || !x.dst)
		die("malloc", -ENOMEM);
	memset(x.src, 0x5a, x.size);
	memset(x.dst, 0, x.size);
	report_fact(r, "bar", "memcpy into and out of BAR2 mapped through the server's region fd");
	report_fact(r, "bar baseline", "the same on a local memfd mapping (same page policy)");
	bench_series_init(&s, "bar", 2, 2);
	s.pair[0].max_ratio = 1 / 0.95; /* bar time <= local time / 0.95 */
	bench_interleave(r, &s, 9, bar_sample, &x);
	if (memcmp(x.dst, x.src, x.size))
		die("BAR data", -EIO);
	snprintf(what, sizeof(what), "%llu MiB in + out", (unsigned long long)(x.size >> 20));
	mv = report_series_median(r, &s, 1, "bar_region_fd", what);
	ml = report_series_median(r, &s, 0, "bar_local_memfd", what);
	/* Throughput ratio per round: local time / BAR time. */
	report_series_ratio(r, &s, 0, 1, "bar/local");
	if (!r_json(r))
		printf("   %-28s region fd %.2f GB/s, local memfd %.2f GB/s\n", "",
		       2.0 * (double)x.size / (mv * 1e6), 2.0 * (double)x.size / (ml * 1e6));
	report_series_target(r, &s, 0, 1, "bar/local", 0.95, true,
			     ">= 0.95 x local memfd (throughput)");
	snprintf(xl, sizeof(xl), "bar %llu MiB", (unsigned long long)(x.size >> 20));
	report_series_plot(r, &s, 1, xl, "p2pbuf", 0);
	report_series_plot(r, &s, 0, xl, "raw baseline", 0);
	p2p_munmap(x.bar, x.size);
	munmap(x.local, x.size);
	close(lfd);
	free(x.src);
	free(x.dst);
	p2p_vfio_device_close(v);
	p2p_vfio_user_disconnect(c);
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

struct dma_ctx {
	struct dma_side rem, loc;
	uint64_t size;
};

/* Arm 0: the local engine; arm 1: the served one. */
static void dma_sample(void *ctx, unsigned int arm, uint64_t *row)
{
	struct dma_ctx *x = ctx;

	row[arm] = dma_pass(arm ? &x->rem : &x->loc, x->size);
}

static void bench_dma(struct bench_report *r, const struct vu_bench *b)
{
	struct dma_ctx x = { .size = b->bar };
	struct bench_series s;
	char what[96], xl[32];
	double mv, ml;

	dma_side_init(&x.rem, b, true, x.size);
	dma_side_init(&x.loc, b, false, x.size);
	report_fact(r, "dma", "the served copy engine copies within client memory (a memfd "
			      "DMA_MAPped with its fd)");
	report_fact(r, "dma baseline", "a local copy engine, same copies, local memfd of the same size");
	bench_series_init(&s, "dma", 2, 2);
	s.pair[0].max_ratio = 1 / 0.9;
	bench_interleave(r, &s, 9, dma_sample, &x);
	if (x.rem.mem[x.size] != 0x3c || x.rem.mem[2 * x.size - 1] != 0x3c)
		die("DMA data", -EIO);
	snprintf(what, sizeof(what), "%llu MiB in %llu MiB copies",
		 (unsigned long long)(x.size >> 20), (unsigned long long)(DMA_CHUNK >> 20));
	mv = report_series_median(r, &s, 1, "dma_client_memfd", what);
	ml = report_series_median(r, &s, 0, "dma_local", what);
	report_series_ratio(r, &s, 0, 1, "dma/local");
	if (!r_json(r))
		printf("   %-28s client memory %.2f GB/s, local %.2f GB/s\n", "",
		       (double)x.size / (mv * 1e6), (double)x.size / (ml * 1e6));
	report_series_target(r, &s, 0, 1, "dma/local", 0.9, true, ">= 0.9 x local DMA (throughput)");
	snprintf(xl, sizeof(xl), "dma %llu MiB", (unsigned long long)(x.size >> 20));
	report_series_plot(r, &s, 1, xl, "p2pbuf", 0);
	report_series_plot(r, &s, 0, xl, "raw baseline", 0);
	dma_side_fini(&x.rem, x.size);
	dma_side_fini(&x.loc, x.size);
}

/* ---------------------------------------------------------------------- */
/* revoke: across processes vs local + round trips                         */

#define REVOKE_SIZE (64ull << 20)

/* The worker's stamps: its own importer sees the notice and the un-revoke applied. */
static _Atomic uint64_t w_inv, w_restore;

/* CPU time (ns) of every thread of @pid but @skip (0: none) so far (schedstat). */
static uint64_t proc_cpu_ns(pid_t pid, pid_t skip)
{
	char path[320];
	struct dirent *e;
	uint64_t sum = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(d = opendir(path)))
		return 0;
	while ((e = readdir(d))) {
		unsigned long long run;
		FILE *f;

		if (e->d_name[0] == '.' || (skip && atoi(e->d_name) == skip))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		if (!(f = fopen(path, "re")))
			continue;
		if (fscanf(f, "%llu", &run) == 1)
			sum += run;
		fclose(f);
	}
	closedir(d);
	return sum;
}

static void w_invalidate(struct p2p_attachment *a)
{
	(void)a;
	atomic_store(&w_inv, now_ns());
}

static void w_restored(struct p2p_attachment *a)
{
	(void)a;
	atomic_store(&w_restore, now_ns());
}

static const struct p2p_dmabuf_importer_ops w_importer = {
	.invalidate_mappings = w_invalidate,
	.restore = w_restored,
};

/*
 * The hidden worker: `p2pbuf bench-vfio-user-worker SOCKET FD SIZE`.  On
 * 'm' it drops its old dma-buf, exports [0, SIZE) of BAR2, attaches an
 * importer of its own (the stamps), maps and touches it and answers 'r';
 * on 's' it answers the stamps of the last revoke (when its notice was
 * applied, when the un-revoke was: CLOCK_MONOTONIC ns, once both came or
 * after 2 s) and the CPU time its library's threads (all but this one)
 * took since the 'm'; on 'l' it revokes and restores that buffer itself
 * (p2p_dmabuf_revoke/unrevoke: the local revoke of the same mapping) and
 * answers the time it took (ns); on EOF it leaves.
 */
int cmd_bench_vfio_user_worker(int argc, char **argv)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .timeout_ms = 10000 };
	struct p2p_attach_info ai = { .argsz = sizeof(ai), .flags = P2P_ATTACH_PEER2PEER,
				      .importer_ops = &w_importer, .name = "bench-worker" };
	struct p2p_vfio_user_client *c;
	struct p2p_attachment *at = NULL;
	struct p2p_dmabuf *buf = NULL;
	uint64_t size, cpu0 = 0;
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

		if (cmd == 'l') {
			/*
			 * The local revoke of the same mapping: this process's own
			 * revoke and restore of the buffer it mapped (no server, no
			 * notice): the zap of the same pages through the same page
			 * tables as the remote revoke's.
			 */
			uint64_t t = now_ns();

			if (!buf || (ret = p2p_dmabuf_revoke(buf, P2P_DMABUF_TEMP_REVOKED)) ||
			    (ret = p2p_dmabuf_unrevoke(buf)))
				die("worker local revoke", buf ? ret : -EINVAL);
			t = now_ns() - t;
			atomic_store(&w_inv, 0);
			atomic_store(&w_restore, 0);
			if (write(ctl, &t, sizeof(t)) != sizeof(t))
				break;
			continue;
		}
		if (cmd == 's') {
			uint64_t st[3];

			for (int i = 0; i < 40000 && !atomic_load(&w_restore); i++)
				usleep(50);
			st[0] = atomic_load(&w_inv);
			st[1] = atomic_load(&w_restore);
			st[2] = proc_cpu_ns(getpid(), gettid()) - cpu0;
			if (write(ctl, st, sizeof(st)) != sizeof(st))
				break;
			continue;
		}
		if (at)
			p2p_dmabuf_detach(at);
		if (buf)
			p2p_dmabuf_put(buf);
		if (m)
			p2p_munmap(m, size);
		if (fd >= 0)
			p2p_close(fd);
		m = NULL;
		at = NULL;
		buf = NULL;
		fd = p2p_vfio_user_dmabuf_export(c, 2, &rg, 1, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			die("worker export", fd);
		if ((ret = p2p_dmabuf_get(fd, &buf)) || (ret = p2p_dmabuf_attach(buf, &ai, &at)))
			die("worker attach", ret);
		if ((ret = p2p_fd_mmap(fd, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
				       (void **)&m)))
			die("worker mmap", ret);
		touch_pages(m, size);
		atomic_store(&w_inv, 0);
		atomic_store(&w_restore, 0);
		cpu0 = proc_cpu_ns(getpid(), gettid());
		cmd = 'r';
		if (write(ctl, &cmd, 1) != 1)
			break;
	}
	if (at)
		p2p_dmabuf_detach(at);
	if (buf)
		p2p_dmabuf_put(buf);
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

static void workers_start(struct workers *w, const struct vu_bench *b, unsigned int nr,
			  uint64_t size)
{
	char exe[PATH_MAX], p[128], fdarg[16], sz[32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		die("/proc/self/exe", errno);
	exe[n] = 0;
	sock_path(b, GPU, p, sizeof(p));
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
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

/* Every worker exports, maps and touches a fresh dma-buf. */
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

/* Each worker's local revoke of its own mapping, one after another: their sum (ns). */
static uint64_t workers_local(struct workers *w)
{
	uint64_t sum = 0;
	char cmd = 'l';

	for (unsigned int i = 0; i < w->nr; i++) {
		uint64_t t;

		if (write(w->ctl[i], &cmd, 1) != 1 || read(w->ctl[i], &t, sizeof(t)) != sizeof(t))
			die("worker died", -EPIPE);
		sum += t;
	}
	return sum;
}

/*
 * The latest notice and un-revoke stamps over the workers (0 if one is
 * missing), and the most CPU time one worker's library threads took.
 */
static void workers_stamps(struct workers *w, uint64_t *inv, uint64_t *restore, uint64_t *cpu)
{
	char cmd = 's';

	*inv = *restore = *cpu = 0;
	for (unsigned int i = 0; i < w->nr; i++)
		if (write(w->ctl[i], &cmd, 1) != 1)
			die("worker", -EPIPE);
	for (unsigned int i = 0; i < w->nr; i++) {
		uint64_t st[3];

		if (read(w->ctl[i], st, sizeof(st)) != sizeof(st))
			die("worker died", -EPIPE);
		*cpu = st[2] > *cpu ? st[2] : *cpu;
		*inv = !st[0] || (i && !*inv) ? 0 : st[0] > *inv ? st[0] : *inv;
		*restore = !st[1] || (i && !*restore) ? 0 : st[1] > *restore ? st[1] : *restore;
	}
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

/* This thread's CPU time (ns). */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The reset's wall time; *@cpu its CPU time (the revoke runs in this thread). */
static uint64_t local_revoke_once(struct local_rev *l, unsigned int nr, uint64_t size,
				  uint64_t *cpu)
{
	struct vfio_region_dma_range rg = { .offset = 0, .length = size };
	uint64_t t, c;
	int ret;

	if ((ret = cli_mem_enable(l->v, true)))
		die("memory enable", ret);
	for (unsigned int i = 0; i < nr; i++) {
		l->fd[i] = p2p_vfio_device_get_dmabuf(l->v, 2, &rg, 1, O_RDWR | O_CLOEXEC);
		if (l->fd[i] < 0)
			die("local export", l->fd[i]);
		if ((ret = p2p_fd_mmap(l->fd[i], NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
				       (void **)&l->m[i])))
			die("local mmap", ret);
		touch_pages(l->m[i], size);
	}
	c = thread_cpu_ns();
	t = now_ns();
	if ((ret = p2p_vfio_device_ioctl(l->v, VFIO_DEVICE_RESET, NULL)))
		die("local reset", ret);
	t = now_ns() - t;
	*cpu = thread_cpu_ns() - c;
	for (unsigned int i = 0; i < nr; i++) {
		p2p_munmap(l->m[i], size);
		p2p_close(l->fd[i]);
	}
	return t;
}

/* The figures of a revoke series. */
enum {
	RV_BUDGET,	/* local (pre-faulted) + (N + 1) round trips: the baseline */
	RV_REMOTE,	/* the reset from a client until it returns */
	RV_LOCAL,	/* local revoke, VRAM pre-faulted (cli_gpu_create) */
	RV_RTT,		/* one socket round trip */
	RV_LOCAL_NP,	/* local revoke, VRAM not pre-faulted (as p2pbuf serve's) */
	RV_NOTICE,	/* reset sent -> the last client applies its notice */
	RV_CLIENT,	/* -> the last client sees the un-revoke that follows the acks */
	RV_CLIENT_CPU,	/* CPU time of a client's library threads (the most of any client) */
	RV_SERVER_CPU,	/* CPU time of the server's threads while the reset ran */
	RV_LOCAL_CPU,	/* CPU time of the local revoke (pre-faulted) */
	RV_LOCAL_NP_CPU, /* CPU time of the local revoke (not pre-faulted) */
	RV_SAME,	/* each client's local revoke of its own mapping, summed */
	RV_BUDGET_SAME, /* RV_SAME + (N + 1) round trips: the baseline judged */
	RV_NFIG,
};

struct revoke_ctx {
	struct workers w;
	struct p2p_vfio_device *ctl;
	struct local_rev l, lnp;
	unsigned int nr;
	uint64_t size;
	pid_t server;
	int sock;
};

/*
 * Arm 0: the baseline, local revoke + a round trip batch; arm 1: the
 * remote revoke and its parts; arm 2: the local revoke of a function made
 * as p2pbuf serve makes its own, VRAM not pre-faulted (information).
 */
static void revoke_sample(void *ctx, unsigned int arm, uint64_t *row)
{
	struct revoke_ctx *x = ctx;
	uint64_t t, inv, restore, cpu, srv;
	int ret;

	if (arm == 0) {
		row[RV_LOCAL] = local_revoke_once(&x->l, x->nr, x->size, &row[RV_LOCAL_CPU]);
		row[RV_RTT] = echo_batch(x->sock, HDR + 16, HDR, 50) / 50;
		row[RV_BUDGET] = row[RV_LOCAL] + (x->nr + 1) * row[RV_RTT];
		return;
	}
	if (arm == 2) {
		row[RV_LOCAL_NP] = local_revoke_once(&x->lnp, x->nr, x->size,
						     &row[RV_LOCAL_NP_CPU]);
		return;
	}
	if (arm == 3) {
		workers_arm(&x->w);
		row[RV_SAME] = workers_local(&x->w);
		row[RV_BUDGET_SAME] = row[RV_SAME] +
				      (x->nr + 1) * (echo_batch(x->sock, HDR + 16, HDR, 50) / 50);
		return;
	}
	if ((ret = cli_mem_enable(x->ctl, true)))
		die("remote memory enable", ret);
	workers_arm(&x->w);
	srv = proc_cpu_ns(x->server, 0);
	t = now_ns();
	if ((ret = p2p_vfio_device_ioctl(x->ctl, VFIO_DEVICE_RESET, NULL)))
		die("remote reset", ret);
	row[RV_REMOTE] = now_ns() - t;
	row[RV_SERVER_CPU] = proc_cpu_ns(x->server, 0) - srv;
	workers_stamps(&x->w, &inv, &restore, &cpu);
	row[RV_CLIENT_CPU] = cpu;
	row[RV_NOTICE] = inv > t ? inv - t : 0;
	row[RV_CLIENT] = restore > inv && inv ? restore - inv : 0;
}

static void bench_revoke_vu(struct bench_report *r, const struct vu_bench *b)
{
	static const unsigned int clients[] = { 1, MAX_CLIENTS };
	struct revoke_ctx x = { .size = b->bar < REVOKE_SIZE ? b->bar : REVOKE_SIZE,
				.server = b->server };
	struct p2p_vfio_user_client *c;
	pid_t echo;
	char txt[160];
	int ret;

	c = vu_connect(b, GPU, "0000:75:00.0", 0, &x.ctl);
	/* The baseline pre-faulted (cli_gpu_create), as the served GPU; and, for information, not. */
	if ((ret = cli_gpu_create("0000:76:00.0", b->bar, NULL, 76, &x.l.pci, &x.l.v)) ||
	    (ret = cli_gpu_create_flags("0000:77:00.0", b->bar, NULL, 77, P2P_PCI_HUGE,
					&x.lnp.pci, &x.lnp.v)))
		die("local function", ret);
	echo = echo_start(&x.sock);
	snprintf(txt, sizeof(txt),
		 "N client processes hold a %llu MiB dma-buf each (exported over the wire, "
		 "mapped, touched); a reset from another client",
		 (unsigned long long)(x.size >> 20));
	report_fact(r, "revoke", txt);
	report_fact(r, "revoke baseline",
		    "each client's own local revoke + restore of the same mapping, summed + "
		    "(N + 1) socket round trips (each client's ack, the reset request)");
	for (size_t ci = 0; ci < ARRAY_SIZE(clients); ci++) {
		struct bench_series s;
		char name[64], what[96], sname[32], xl[32];
		double ml, mr, mnp, ms, v[BENCH_MAX_ROUNDS];
		unsigned int n;

		x.nr = clients[ci];
		workers_start(&x.w, b, x.nr, x.size);
		snprintf(sname, sizeof(sname), "revoke, %u client%s", x.nr, x.nr > 1 ? "s" : "");
		bench_series_init(&s, sname, 4, RV_NFIG);
		s.npairs = 1;
		s.pair[0] = (struct bench_pair){ .num = RV_REMOTE, .den = RV_BUDGET_SAME,
						 .max_ratio = 1.5 };
		bench_interleave(r, &s, 9, revoke_sample, &x);
		workers_stop(&x.w);
		snprintf(what, sizeof(what), "%u client%s x %llu MiB", x.nr, x.nr > 1 ? "s" : "",
			 (unsigned long long)(x.size >> 20));
		snprintf(name, sizeof(name), "revoke_%u_clients", x.nr);
		report_series_median(r, &s, RV_REMOTE, name, what);
		snprintf(name, sizeof(name), "local_revoke_%u", x.nr);
		ml = report_series_median(r, &s, RV_LOCAL, name,
					  "a local function's, VRAM pre-faulted (other pages)");
		snprintf(name, sizeof(name), "local_unprefaulted_revoke_%u", x.nr);
		mnp = report_series_median(r, &s, RV_LOCAL_NP, name,
					   "local, VRAM not pre-faulted, as p2pbuf serve's");
		snprintf(name, sizeof(name), "local_same_revoke_%u", x.nr);
		ms = report_series_median(r, &s, RV_SAME, name,
					  "each client revokes its own mapping itself, summed: the "
					  "baseline");
		snprintf(name, sizeof(name), "round_trip_%u", x.nr);
		mr = report_series_median(r, &s, RV_RTT, name, "one 32 B request, 16 B reply");
		snprintf(name, sizeof(name), "revoke_%u_part_notice", x.nr);
		report_series_median(r, &s, RV_NOTICE, name,
				     "reset sent -> the last client applies its notice");
		snprintf(name, sizeof(name), "revoke_%u_part_client_to_unrevoke", x.nr);
		report_series_median(r, &s, RV_CLIENT, name,
				     "-> zap, ack, server wakes, un-revoke notice applied");
		snprintf(name, sizeof(name), "revoke_%u_part_client_cpu", x.nr);
		report_series_median(r, &s, RV_CLIENT_CPU, name,
				     "CPU time of a client's library threads (zap, ack, un-revoke)");
		snprintf(name, sizeof(name), "revoke_%u_part_server_cpu", x.nr);
		report_series_median(r, &s, RV_SERVER_CPU, name,
				     "CPU time of p2pbuf serve's threads during the reset");
		snprintf(name, sizeof(name), "local_revoke_%u_cpu", x.nr);
		report_series_median(r, &s, RV_LOCAL_CPU, name, "CPU time of the local revoke");
		snprintf(name, sizeof(name), "local_unprefaulted_revoke_%u_cpu", x.nr);
		report_series_median(r, &s, RV_LOCAL_NP_CPU, name,
				     "CPU time of the local revoke, not pre-faulted");
		if (!r_json(r))
			printf("   %-28s budget: the clients' own local revokes %.3f ms + %u x round "
			       "trip %.3f ms = %.3f ms (a local function's: %.3f ms, not "
			       "pre-faulted: %.3f ms)\n",
			       "", ms, x.nr + 1, mr, ms + (x.nr + 1) * mr, ml, mnp);
		snprintf(name, sizeof(name), "revoke_%u/(local+rtts)", x.nr);
		report_series_ratio(r, &s, RV_REMOTE, RV_BUDGET_SAME, name);
		report_series_target(r, &s, RV_REMOTE, RV_BUDGET_SAME, name, 1.5, false,
				     "<= 1.5 x (local revoke of the same mappings + a round trip "
				     "per client)");
		/* Information: against a local function's revoke (other pages). */
		snprintf(name, sizeof(name), "revoke_%u/(local_function+rtts)", x.nr);
		report_series_ratio(r, &s, RV_REMOTE, RV_BUDGET, name);
		/*
		 * Information: against the local revoke in the served function's
		 * page state (VRAM not pre-faulted; + the same round trips).
		 */
		n = s.rounds;
		for (unsigned int i = 0; i < n; i++)
			v[i] = (double)s.ns[RV_REMOTE][i] /
			       ((double)s.ns[RV_LOCAL_NP][i] + (x.nr + 1) * (double)s.ns[RV_RTT][i]);
		qsort(v, n, sizeof(v[0]), cmp_dbl);
		snprintf(name, sizeof(name), "revoke_%u/(local_unprefaulted+rtts)", x.nr);
		report_ratio_spread(r, name, n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2,
				    v[0], v[n - 1]);
		snprintf(xl, sizeof(xl), "revoke %u", x.nr);
		report_series_plot(r, &s, RV_REMOTE, xl, "p2pbuf", 0);
		report_series_plot(r, &s, RV_BUDGET_SAME, xl, "raw baseline", 0);
	}
	close(x.sock);
	waitpid(echo, NULL, 0);
	p2p_vfio_device_close(x.l.v);
	p2p_pci_dev_put(x.l.pci);
	p2p_vfio_device_close(x.lnp.v);
	p2p_pci_dev_put(x.lnp.pci);
	p2p_vfio_device_close(x.ctl);
	p2p_vfio_user_disconnect(c);
}

static void fact_file(struct bench_report *r, const char *key, const char *path)
{
	char buf[128];
	FILE *f = fopen(path, "re");

	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = 0;
		report_fact(r, key, buf);
	}
	fclose(f);
}

/**
 * bench_vfio_user() - p2pbuf bench vfio-user: the door to other processes
 * @o: options; --size is the served BAR (64 MiB default, 4 MiB or more)
 *
 * Return: the exit status (report_finish()).
 */
int bench_vfio_user(const struct bench_opts *o)
{
	struct vu_bench b = { .server = -1, .bar = o->size ? o->size : REVOKE_SIZE };
	struct bench_report *r;

	if (b.bar < DMA_CHUNK || b.bar % DMA_CHUNK) {
		fprintf(stderr, "p2pbuf bench vfio-user: --size must be a multiple of 4 MiB\n");
		return 2;
	}
	r = report_new("vfio-user", o);
	fact_file(r, "loadavg", "/proc/loadavg");
	report_fact(r, "pages", hugepage_mode_name());
	fact_file(r, "cpuidle governor", "/sys/devices/system/cpu/cpuidle/current_governor");
	fact_file(r, "guest_halt_poll_ns", "/sys/module/haltpoll/parameters/guest_halt_poll_ns");
	report_plot_axis(r, "ms per sample (median, min-max; lower is faster)", false);
	signal(SIGPIPE, SIG_IGN);
	server_start(&b);
	bench_region(r, &b);
	bench_bar(r, &b);
	bench_dma(r, &b);
	bench_revoke_vu(r, &b);
	server_stop(&b);
	return report_finish(r);
}
