// SPDX-License-Identifier: MIT
/*
 * Chaos: every path of the stack at once, in one process, for T seconds
 * (kernel-semantics 0.2, 0.3, 1.5-1.7, 2.2-2.5, 3, 5, 7).  See
 * docs/chaos.md for the design; in short:
 *
 * Two GPUs (BAR2 of 2 MiB, eight 256 KiB lanes each).  One controller
 * thread per GPU does random revokes: COMMAND.MEM off/on, PM D3hot/D0,
 * low-power features 3/5, FLR through config DEVCTL, VFIO_DEVICE_RESET,
 * and close + reopen of the device file (a permanent revoke of every
 * dma-buf).  Worker threads each own one lane of each GPU and write into
 * it by one path:
 *   ce     copy engine DMA (tools/ce_driver.c): system memory -> lane,
 *          lane -> other GPU's lane (peer to peer), lane -> system memory;
 *   sd     storage device DMA (tools/sd_driver.c): media -> lane;
 *   uring  io_uring READ_FIXED / WRITE_FIXED on dma-buf slots, with linked
 *          (IOSQE_IO_LINK) and drained (IOSQE_IO_DRAIN) SQEs and malformed
 *          ones among them;
 *   cpu    stores and loads through dma-buf mmaps and short-lived BAR
 *          mmaps, probed for SIGBUS (t_access());
 *   churn  exports (feature 11 ioctl, one to four ranges), IOMMU_IOAS_MAP_FILE
 *          imports, attach/map, mmap, feature 13 revokes, closes.
 * ce and sd import their lanes with IOMMU_IOAS_MAP_FILE (single range) or
 * p2p_ioas_map_file(EXTENDED) (multi range), and unmap and re-export them
 * at random; they also unmap IOAS areas while their DMA is in flight.
 * Every written byte carries a stamp (0xc5a, worker, sequence number), so
 * a late byte names who wrote it.
 *
 * Oracles:
 * - Revoked memory: after a revoke that leaves the GPU revoked (MEM off,
 *   D3hot, low power, close) returns, the controller snapshots the whole
 *   BAR (the device's view) and, after a random window in which the
 *   workers keep trying, compares: not one byte may have changed before
 *   the un-revoke starts.  After FLR and reset (revoke and un-revoke in one
 *   call) the IOAS-imported lanes must stay frozen (areas never remap,
 *   2.5), unless their owner mapped again since the revoke began.
 * - Unmapped memory: after IOAS_UNMAP of an area with DMA in flight
 *   returns, the worker snapshots the target (system memory or the lane)
 *   and checks, once every command completed, that nothing changed.
 * - Bounded revokes: every controller operation is timed; any one over
 *   CHAOS_MAX_REVOKE_MS (2000) fails.  A watchdog ends the test with a
 *   report if it runs past T + CHAOS_MARGIN seconds (30) or a controller
 *   operation takes five times the bound, so a hang fails fast.
 * - Completions are of the allowed kinds (OK with the full length, or
 *   revoked/fault/-EAGAIN/-ENODEV/-ECANCELED with nothing transferred, the
 *   malformed SQEs' errors), OK data is where it must be, CPU loads return
 *   the last successful store, faults are SIGBUS.
 * - Nothing leaked: fds (t_end()), memfd / anon-inode mappings in
 *   /proc/self/maps, memory (ASan's leak check); the process exits.
 *
 * Usage: test-chaos [seconds]   (or CHAOS_SECONDS; default 5).  CHAOS_SEED
 * fixes the seed.  Switches for parts that hit known defects:
 * CHAOS_NO_LINKED_SQES, CHAOS_NO_DRAIN_SQES, CHAOS_NO_MALFORMED_SQES,
 * CHAOS_NO_UNMAP_INFLIGHT (=1 to turn off).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/uring.h>

#include "ce_driver.h"
#include "harness.h"
#include "proc_util.h"
#include "sd_driver.h"

#define KiB 1024ull
#define MiB (1024 * KiB)
#define PAGE 4096ull
#define NGPU 2
#define BAR 2
#define BAR_SZ (2 * MiB)
#define LANE_SZ (256 * KiB)
#define CHUNK (64 * KiB) /* a lane is four chunks; multi-range dma-bufs permute them */
#define NCHUNK (LANE_SZ / CHUNK)
#define SYS_SZ (512 * KiB)
#define TGT_SZ (256 * KiB)
#define IOVA_SYS 0x10000000ull
#define IOVA_TGT 0x20000000ull
#define IOVA_GPU(g) (0x100000000ull * ((g) + 1))
#define STAMP_TAG 0xc5aull
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum worker { W_CE, W_SD, W_URING, W_CPU, W_CHURN, NR_WORKERS };
static const char *const worker_name[] = { "ce", "sd", "uring", "cpu", "churn" };

static const uint32_t RW = P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE;

/* ---------------------------------------------------------------------- */
/* Configuration, statistics, failures                                     */

static struct {
	double seconds;
	uint64_t seed;
	long max_revoke_ms;
	double margin;
	bool linked, drain, malformed, unmap_inflight;
} cfg;

enum op {
	OP_MEM_OFF, OP_MEM_ON, OP_D3, OP_D0, OP_LP_ENTRY, OP_LP_EXIT, OP_FLR, OP_RESET, OP_CLOSE,
	OP_REOPEN, OP_WINDOW_CHECK, OP_LANE_CHECK,
	OP_EXPORT_SINGLE, OP_EXPORT_MULTI, OP_EXPORT_FAIL, OP_IMPORT, OP_IMPORT_FAIL, OP_IOAS_UNMAP,
	OP_UNMAP_INFLIGHT, OP_CE_OK, OP_CE_DEAD, OP_SD_OK, OP_SD_DEAD,
	OP_URING_OK, OP_URING_EAGAIN, OP_URING_ENODEV, OP_URING_CANCELED, OP_URING_MALFORMED,
	OP_URING_LINKED, OP_URING_DRAINED, OP_URING_REGISTER, OP_URING_REGISTER_FAIL,
	OP_CPU_OK, OP_CPU_SIGBUS, OP_CPU_MMAP, OP_CPU_MMAP_FAIL, OP_BAR_MMAP,
	OP_ATTACH, OP_FEAT_REVOKE, OP_CLOSE_FD,
	NR_OPS
};
static const char *const op_name[NR_OPS] = {
	"revoke: COMMAND.MEM off", "un-revoke: COMMAND.MEM on", "revoke: D3hot", "un-revoke: D0",
	"revoke: low power entry", "un-revoke: low power exit", "revoke: FLR (DEVCTL)",
	"revoke: VFIO_DEVICE_RESET", "revoke: device close", "device reopen",
	"canary: whole BAR checks", "canary: IOAS lane checks",
	"export (single range)", "export (multi range)", "export refused", "import MAP_FILE",
	"import refused", "IOAS unmap", "IOAS unmap with DMA in flight", "ce copy ok",
	"ce copy revoked/fault", "sd command ok", "sd command revoked/fault", "uring ok",
	"uring -EAGAIN", "uring -ENODEV", "uring -ECANCELED", "uring malformed (error)",
	"uring linked SQEs", "uring drained SQEs", "uring slot register", "uring register refused",
	"cpu access ok", "cpu access SIGBUS", "cpu dma-buf mmap", "cpu mmap refused", "cpu BAR mmap",
	"attach+map", "feature 13 revoke", "dma-buf fd close",
};
static atomic_ulong nops[NR_OPS];
static atomic_llong max_ns[NR_OPS]; /* controller operations: the longest */

static void count(enum op op)
{
	atomic_fetch_add_explicit(&nops[op], 1, memory_order_relaxed);
}

static atomic_int failures;
static char first_failure[512]; /* repeated after the summary */

static void fail(const char *who, const char *fmt, ...)
{
	va_list ap;
	int n = atomic_fetch_add(&failures, 1);
	char msg[480];

	if (n >= 40)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	flockfile(stderr);
	fprintf(stderr, "FAIL [%s] %s\n", who, msg);
	if (!n)
		snprintf(first_failure, sizeof(first_failure), "[%s] %s", who, msg);
	funlockfile(stderr);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t rnd_n(uint64_t *s, uint64_t n)
{
	return rnd(s) % n;
}

/* What every thread is doing, for the watchdog's report. */
struct tstate {
	char name[24];
	_Atomic(const char *) op;
	atomic_llong since;
	pthread_t thr;
};

static void set_op(struct tstate *ts, const char *op)
{
	atomic_store(&ts->since, now_ns());
	atomic_store(&ts->op, op);
}

static atomic_bool stop;
static int64_t t_start, t_deadline;

/* ---------------------------------------------------------------------- */
/* Stamps: every byte a worker writes says who wrote it and when           */

static uint64_t stamp(enum worker w, uint64_t seq)
{
	return STAMP_TAG << 52 | (uint64_t)w << 48 | (seq & 0xffffffffffffull);
}

static void fill_stamp(uint8_t *p, uint64_t len, enum worker w, uint64_t seq)
{
	uint64_t v = stamp(w, seq);

	for (uint64_t i = 0; i < len; i += 8)
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
}

static bool is_stamp(const uint8_t *p, uint64_t len, enum worker w, uint64_t seq)
{
	uint64_t v = stamp(w, seq);

	for (uint64_t i = 0; i < len; i += 8)
		if (memcmp(p + i, &v, len - i < 8 ? len - i : 8))
			return false;
	return true;
}

#define NOT_BAR UINT64_MAX

/*
 * Report the first difference of @len bytes at @now from @was: @base is
 * the BAR offset of @now[0] (NOT_BAR: system memory).  Returns true if any.
 */
static bool report_diff(const char *who, const char *what, const uint8_t *now, const uint8_t *was,
			uint64_t len, uint64_t base)
{
	uint64_t i, n = 0, first = 0, w8 = 0;
	char where[64], by[96];

	if (!memcmp(now, was, len))
		return false;
	for (i = 0; i < len; i++) {
		if (now[i] != was[i]) {
			if (!n++)
				first = i;
		}
	}
	if (base == NOT_BAR)
		snprintf(where, sizeof(where), "offset %#llx", (unsigned long long)first);
	else
		snprintf(where, sizeof(where), "BAR offset %#llx (lane %llu)",
			 (unsigned long long)(base + first),
			 (unsigned long long)((base + first) / LANE_SZ));
	i = first & ~7ull;
	if (i + 8 <= len)
		memcpy(&w8, now + i, 8);
	if ((w8 >> 52) == STAMP_TAG && ((w8 >> 48) & 0xf) < NR_WORKERS)
		snprintf(by, sizeof(by), "late write by %s, sequence %llu",
			 worker_name[(w8 >> 48) & 0xf], (unsigned long long)(w8 & 0xffffffffffffull));
	else
		snprintf(by, sizeof(by), "%#x -> %#x", was[first], now[first]);
	fail(who, "%s: %llu bytes changed, first at %s: %s", what, (unsigned long long)n, where,
	     by);
	return true;
}

/* ---------------------------------------------------------------------- */
/* GPUs and lanes                                                          */

struct gpu {
	unsigned int idx;
	struct t_dev dev;
	/* Read: use dev.vdev (export, BAR mmap, feature 13).  Write: close .. reopen. */
	pthread_rwlock_t lock;
	atomic_uint gen;     /* bumped at each reopen: older dma-bufs are dead for good */
	atomic_uint started; /* bumped before each revoke begins */
	atomic_uint done;    /* bumped after each controller operation returns */
	uint8_t *bar;	     /* the device's view of BAR2 */
	uint8_t *snap;
	struct tstate ts;
	uint64_t rng;
};

static struct gpu gpus[NGPU];

/*
 * A lane imported into an IOAS by its owner (ce, sd).  map_epoch: the
 * GPU's `started` read after the last successful map, under lock; a
 * revoke with a higher number began after that map, so it killed it.
 */
struct lane {
	pthread_mutex_t lock;
	unsigned int map_epoch;
	bool mapped, multi;
	bool stale; /* the owner saw it revoked: map again */
	int fd;
	unsigned int gen;
};

static struct lane lanes[NGPU][NR_WORKERS];

static const unsigned int perm[NCHUNK] = { 2, 0, 3, 1 };

/* BAR offset of byte @d of worker @w's dma-buf over its lane. */
static uint64_t lane_bar(enum worker w, bool multi, uint64_t d)
{
	uint64_t c = d / CHUNK;

	return (uint64_t)w * LANE_SZ + (multi ? perm[c] : c) * CHUNK + d % CHUNK;
}

/* Feature 11 through the device ioctl (the uAPI path); returns the fd or -errno. */
static int export_ioctl(struct p2p_vfio_device *vdev, const struct vfio_region_dma_range *r,
			uint32_t nr)
{
	uint64_t buf[(sizeof(struct vfio_device_feature) +
		      sizeof(struct vfio_device_feature_dma_buf) + 4 * sizeof(*r)) / 8 + 1];
	struct vfio_device_feature *f = (void *)buf;
	struct vfio_device_feature_dma_buf *d = (void *)f->data;

	memset(buf, 0, sizeof(buf));
	f->argsz = sizeof(*f) + sizeof(*d) + nr * sizeof(*r);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	d->region_index = BAR;
	d->open_flags = O_RDWR | O_CLOEXEC;
	d->nr_ranges = nr;
	memcpy(d->dma_ranges, r, nr * sizeof(*r));
	return (int)p2p_vfio_device_ioctl(vdev, VFIO_DEVICE_FEATURE, f);
}

/* Export worker @w's lane of @gp, single range or four permuted chunks. */
static int export_lane(struct gpu *gp, enum worker w, bool multi, unsigned int *gen)
{
	struct vfio_region_dma_range r[NCHUNK];
	int fd;

	for (unsigned int c = 0; c < NCHUNK; c++)
		r[c] = (struct vfio_region_dma_range){ w * LANE_SZ + perm[c] * CHUNK, CHUNK };
	if (!multi)
		r[0] = (struct vfio_region_dma_range){ w * LANE_SZ, LANE_SZ };
	pthread_rwlock_rdlock(&gp->lock);
	*gen = atomic_load(&gp->gen);
	fd = multi ? export_ioctl(gp->dev.vdev, r, NCHUNK) : t_dmabuf(gp->dev.vdev, BAR, r, 1);
	pthread_rwlock_unlock(&gp->lock);
	count(fd < 0 ? OP_EXPORT_FAIL : multi ? OP_EXPORT_MULTI : OP_EXPORT_SINGLE);
	return fd;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		if (p2p_close(*fd))
			fail("fd", "p2p_close(%d) failed", *fd);
		count(OP_CLOSE_FD);
	}
	*fd = -1;
}

/* ---------------------------------------------------------------------- */
/* Controllers                                                             */

static long low_power(struct p2p_vfio_device *vdev, bool entry)
{
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_SET | (entry ? VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
							  : VFIO_DEVICE_FEATURE_LOW_POWER_EXIT),
	};

	return p2p_vfio_device_ioctl(vdev, VFIO_DEVICE_FEATURE, &f);
}

static long do_op(struct gpu *gp, enum op op)
{
	struct p2p_vfio_device *v = gp->dev.vdev;

	switch (op) {
	case OP_MEM_OFF: return t_mem_enable(v, false);
	case OP_MEM_ON: return t_mem_enable(v, true);
	case OP_D3: return t_set_power(v, 3);
	case OP_D0: return t_set_power(v, 0);
	case OP_LP_ENTRY: return low_power(v, true);
	case OP_LP_EXIT: return low_power(v, false);
	case OP_FLR: return t_flr(v);
	case OP_RESET: return p2p_vfio_device_ioctl(v, VFIO_DEVICE_RESET, NULL);
	case OP_CLOSE:
		p2p_vfio_device_close(v);
		gp->dev.vdev = NULL;
		return 0;
	case OP_REOPEN: return p2p_vfio_device_open(gp->dev.pci, &gp->dev.vdev);
	default: return -EINVAL;
	}
}

/* One timed controller operation: failures and the bound are checked here. */
static void timed_op(struct gpu *gp, enum op op)
{
	long long t0, dt, old;
	long ret;

	set_op(&gp->ts, op_name[op]);
	t0 = now_ns();
	ret = do_op(gp, op);
	dt = now_ns() - t0;
	atomic_fetch_add(&gp->done, 1);
	set_op(&gp->ts, "between operations");
	count(op);
	if (ret)
		fail(gp->ts.name, "%s: %s", op_name[op], strerror((int)-ret));
	old = atomic_load(&max_ns[op]);
	while (dt > old && !atomic_compare_exchange_weak(&max_ns[op], &old, dt))
		;
	if (dt > cfg.max_revoke_ms * 1000000)
		fail(gp->ts.name, "%s took %.1f ms (bound %ld ms)", op_name[op], dt / 1e6,
		     cfg.max_revoke_ms);
}

/* Let the workers run for a random while (0.2-3 ms). */
static void window(struct gpu *gp)
{
	usleep(200 + (useconds_t)rnd_n(&gp->rng, 2800));
}

/* Revoke with @off, keep it revoked, check the whole BAR stayed frozen, restore with @on. */
static void revoked_window(struct gpu *gp, enum op off, enum op on)
{
	bool closing = off == OP_CLOSE;

	if (closing)
		pthread_rwlock_wrlock(&gp->lock);
	atomic_fetch_add(&gp->started, 1);
	timed_op(gp, off);
	memcpy(gp->snap, gp->bar, BAR_SZ);
	window(gp);
	set_op(&gp->ts, "canary check");
	report_diff(gp->ts.name, op_name[off], gp->bar, gp->snap, BAR_SZ, 0);
	count(OP_WINDOW_CHECK);
	timed_op(gp, on);
	if (closing) {
		atomic_fetch_add(&gp->gen, 1);
		pthread_rwlock_unlock(&gp->lock);
	}
}

/*
 * FLR or reset: revoked and restored in one call.  The lanes imported into
 * an IOAS (ce, sd) stay dead (2.5) unless their owner maps them again,
 * which it may do at once: each lane is snapshotted and compared under its
 * lock, only while its last map is older than this revoke.
 */
static void reset_window(struct gpu *gp, enum op op)
{
	static const enum worker ioas_lanes[] = { W_CE, W_SD };
	unsigned int s = atomic_fetch_add(&gp->started, 1) + 1;
	bool snapped[ARRAY_SIZE(ioas_lanes)];

	timed_op(gp, op);
	for (unsigned int i = 0; i < ARRAY_SIZE(ioas_lanes); i++) {
		struct lane *l = &lanes[gp->idx][ioas_lanes[i]];
		uint64_t off = ioas_lanes[i] * LANE_SZ;

		pthread_mutex_lock(&l->lock);
		snapped[i] = l->map_epoch < s;
		if (snapped[i])
			memcpy(gp->snap + off, gp->bar + off, LANE_SZ);
		pthread_mutex_unlock(&l->lock);
	}
	window(gp);
	set_op(&gp->ts, "lane canary check");
	for (unsigned int i = 0; i < ARRAY_SIZE(ioas_lanes); i++) {
		struct lane *l = &lanes[gp->idx][ioas_lanes[i]];
		uint64_t off = ioas_lanes[i] * LANE_SZ;

		pthread_mutex_lock(&l->lock);
		if (snapped[i] && l->map_epoch < s) {
			report_diff(gp->ts.name, op_name[op], gp->bar + off, gp->snap + off,
				    LANE_SZ, off);
			count(OP_LANE_CHECK);
		}
		pthread_mutex_unlock(&l->lock);
	}
}

static void *controller(void *arg)
{
	struct gpu *gp = arg;

	while (!atomic_load(&stop)) {
		unsigned int r = (unsigned int)rnd_n(&gp->rng, 100);

		if (r < 22)
			revoked_window(gp, OP_MEM_OFF, OP_MEM_ON);
		else if (r < 36)
			revoked_window(gp, OP_D3, OP_D0);
		else if (r < 50)
			revoked_window(gp, OP_LP_ENTRY, OP_LP_EXIT);
		else if (r < 66)
			reset_window(gp, OP_FLR);
		else if (r < 82)
			reset_window(gp, OP_RESET);
		else if (r < 86)
			revoked_window(gp, OP_CLOSE, OP_REOPEN);
		/* Live for a while: the workers' DMA and maps succeed again. */
		usleep(1000 + (useconds_t)rnd_n(&gp->rng, 5000));
	}
	set_op(&gp->ts, "done");
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* IOAS workers: the copy engine and the storage device                    */

struct dma_worker {
	enum worker w;
	struct tstate ts;
	uint64_t rng, seq;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_ioas *ioas;
	uint32_t ioas_id;
	struct ce_drv ce;
	struct sd_drv sd;
	uint8_t *sys; /* SYS_SZ, mapped at IOVA_SYS */
	uint8_t *tgt; /* TGT_SZ, mapped at IOVA_TGT while tgt_mapped */
	bool tgt_mapped;
};

static struct p2p_iommufd *ictx;

/* Unmap the lane's area (lane lock held). */
static void lane_unmap(struct dma_worker *dw, unsigned int g)
{
	struct lane *l = &lanes[g][dw->w];
	int64_t t0 = now_ns();
	long ret;

	if (!l->mapped)
		return;
	set_op(&dw->ts, "IOAS unmap");
	ret = t_unmap_ioctl(ictx, dw->ioas_id, IOVA_GPU(g), LANE_SZ, NULL);
	if (ret)
		fail(dw->ts.name, "IOAS_UNMAP of lane on gpu%u: %s", g, strerror((int)-ret));
	if (now_ns() - t0 > cfg.max_revoke_ms * 1000000)
		fail(dw->ts.name, "IOAS_UNMAP took %.1f ms", (now_ns() - t0) / 1e6);
	l->mapped = false;
	count(OP_IOAS_UNMAP);
}

/* Make sure the lane of gpu @g is imported at IOVA_GPU(g): false if it cannot be now. */
static bool lane_ensure(struct dma_worker *dw, unsigned int g)
{
	struct lane *l = &lanes[g][dw->w];
	struct gpu *gp = &gpus[g];
	uint64_t iova = IOVA_GPU(g);
	bool remap = !rnd_n(&dw->rng, 24), reexport = !rnd_n(&dw->rng, 12);
	long ret;

	pthread_mutex_lock(&l->lock);
	if (l->mapped && !remap && !l->stale && l->gen == atomic_load(&gp->gen)) {
		pthread_mutex_unlock(&l->lock);
		return true;
	}
	lane_unmap(dw, g);
	if (l->fd < 0 || reexport || l->gen != atomic_load(&gp->gen)) {
		close_fd(&l->fd);
		l->multi = rnd_n(&dw->rng, 2);
		set_op(&dw->ts, "export");
		l->fd = export_lane(gp, dw->w, l->multi, &l->gen);
		if (l->fd < 0) {
			fail(dw->ts.name, "export: %s", strerror(-l->fd));
			pthread_mutex_unlock(&l->lock);
			return false;
		}
	}
	set_op(&dw->ts, "import MAP_FILE");
	if (l->multi)
		ret = p2p_ioas_map_file(dw->ioas, l->fd, 0, LANE_SZ, &iova,
					RW | P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_EXTENDED);
	else
		ret = t_map_file_ioctl(ictx, dw->ioas_id, l->fd, 0, LANE_SZ, &iova,
				       RW | IOMMU_IOAS_MAP_FIXED_IOVA);
	if (!ret) {
		l->mapped = true;
		l->stale = false;
		l->map_epoch = atomic_load(&gp->started);
		count(OP_IMPORT);
	} else {
		/* Revoked now (temporarily or for good): ENODEV, nothing else. */
		if (ret != -ENODEV)
			fail(dw->ts.name, "MAP_FILE: %s", strerror((int)-ret));
		count(OP_IMPORT_FAIL);
	}
	pthread_mutex_unlock(&l->lock);
	return !ret;
}

static bool tgt_ensure(struct dma_worker *dw)
{
	uint64_t iova = IOVA_TGT;
	long ret;

	if (dw->tgt_mapped)
		return true;
	ret = t_map_ioctl(ictx, dw->ioas_id, dw->tgt, TGT_SZ, &iova,
			  RW | IOMMU_IOAS_MAP_FIXED_IOVA);
	if (ret)
		fail(dw->ts.name, "IOAS_MAP of the target: %s", strerror((int)-ret));
	dw->tgt_mapped = !ret;
	return !ret;
}

/* ---- copy engine ---- */

static bool ce_status_ok(struct dma_worker *dw, const struct p2p_ce_compl *c, uint64_t len)
{
	if (c->status == P2P_CE_REVOKED) /* which lane: both may be; map both again */
		lanes[0][dw->w].stale = lanes[1][dw->w].stale = true;
	if (c->status == P2P_CE_OK) {
		count(OP_CE_OK);
		if (c->bytes != len)
			fail(dw->ts.name, "copy OK with %llu of %llu bytes",
			     (unsigned long long)c->bytes, (unsigned long long)len);
		return true;
	}
	count(OP_CE_DEAD);
	if (c->status != P2P_CE_REVOKED && c->status != P2P_CE_FAULT)
		fail(dw->ts.name, "copy status %s", p2p_ce_status_name(c->status));
	else if (c->bytes)
		fail(dw->ts.name, "copy %s after %llu bytes", p2p_ce_status_name(c->status),
		     (unsigned long long)c->bytes);
	return false;
}

/* One batch: sys -> lane (4 chunks), lane -> other GPU's lane, lane -> sys. */
static void ce_batch(struct dma_worker *dw)
{
	unsigned int g = (unsigned int)rnd_n(&dw->rng, NGPU), h = g ^ 1;
	uint32_t idx[NCHUNK + 2];
	uint64_t off[NCHUNK], len[NCHUNK], seq0 = dw->seq;
	bool multi, ok;

	lane_ensure(dw, g);
	lane_ensure(dw, h);
	set_op(&dw->ts, "copy batch");
	for (unsigned int c = 0; c < NCHUNK; c++) {
		len[c] = PAGE + rnd_n(&dw->rng, CHUNK - PAGE - 64);
		off[c] = c * CHUNK + rnd_n(&dw->rng, CHUNK - len[c]);
		fill_stamp(dw->sys + c * CHUNK, len[c], dw->w, ++dw->seq);
		idx[c] = ce_drv_queue(&dw->ce, IOVA_SYS + c * CHUNK, IOVA_GPU(g) + off[c], len[c],
				      0, (uint32_t)dw->seq);
	}
	idx[NCHUNK] = ce_drv_queue(&dw->ce, IOVA_GPU(g), IOVA_GPU(h) + CHUNK, CHUNK, 0, 0);
	idx[NCHUNK + 1] = ce_drv_queue(&dw->ce, IOVA_GPU(g) + 2 * CHUNK, IOVA_SYS + 256 * KiB,
				       CHUNK, P2P_CE_DESC_IRQ, 0);
	if (ce_drv_kick(&dw->ce) || ce_drv_wait(&dw->ce, idx[NCHUNK + 1])) {
		fail(dw->ts.name, "kick/wait failed");
		return;
	}
	/* The lane's layout cannot change under us: only this thread maps it. */
	multi = lanes[g][dw->w].multi;
	for (unsigned int c = 0; c < NCHUNK; c++) {
		ok = ce_status_ok(dw, ce_drv_compl(&dw->ce, idx[c]), len[c]);
		if (ok && !is_stamp(gpus[g].bar + lane_bar(dw->w, multi, off[c]), len[c], dw->w,
				    seq0 + c + 1))
			fail(dw->ts.name, "copy %llu OK but the lane does not hold its bytes",
			     (unsigned long long)(seq0 + c + 1));
	}
	ce_status_ok(dw, ce_drv_compl(&dw->ce, idx[NCHUNK]), CHUNK);
	ce_status_ok(dw, ce_drv_compl(&dw->ce, idx[NCHUNK + 1]), CHUNK);
}

/*
 * The unmap of ce_unmap_inflight() and sd_unmap_inflight(), with the DMA
 * just kicked: after a random short delay, unmap the destination (lane @g,
 * or the worker's target) and copy what it holds right then into @snap.
 * Returns the memory @snap is a copy of.
 */
static uint8_t *unmap_while_dma(struct dma_worker *dw, bool lane, unsigned int g, uint8_t *snap)
{
	uint8_t *view;

	for (unsigned int i = (unsigned int)rnd_n(&dw->rng, 2000); i; i--)
		atomic_signal_fence(memory_order_seq_cst);
	if (lane) {
		pthread_mutex_lock(&lanes[g][dw->w].lock);
		lane_unmap(dw, g);
		/* Single or multi range: the lane as a whole. */
		view = gpus[g].bar + (uint64_t)dw->w * LANE_SZ;
		memcpy(snap, view, LANE_SZ);
		pthread_mutex_unlock(&lanes[g][dw->w].lock);
	} else {
		long ret = t_unmap_ioctl(ictx, dw->ioas_id, IOVA_TGT, TGT_SZ, NULL);

		if (ret)
			fail(dw->ts.name, "IOAS_UNMAP of the target: %s", strerror((int)-ret));
		dw->tgt_mapped = false;
		view = dw->tgt;
		memcpy(snap, view, TGT_SZ);
	}
	count(OP_UNMAP_INFLIGHT);
	return view;
}

/*
 * Queue 32 copies of 64 KiB into the target (system memory or the lane of
 * gpu @g), kick, unmap the target's area at once, snapshot it, and check
 * once all completed that nothing landed after the unmap returned.
 */
static void ce_unmap_inflight(struct dma_worker *dw)
{
	enum { N = 32 };
	bool lane = rnd_n(&dw->rng, 2);
	unsigned int g = (unsigned int)rnd_n(&dw->rng, NGPU);
	uint8_t *snap = malloc(TGT_SZ), *view;
	uint64_t dst, base;
	uint32_t last = 0;

	if (!snap)
		return;
	if (lane) {
		if (!lane_ensure(dw, g)) {
			free(snap);
			return;
		}
		dst = IOVA_GPU(g);
		base = lane_bar(dw->w, false, 0);
	} else {
		if (!tgt_ensure(dw)) {
			free(snap);
			return;
		}
		dst = IOVA_TGT;
		base = 0;
	}
	set_op(&dw->ts, "copies, unmap in flight");
	for (unsigned int i = 0; i < N; i++) {
		uint64_t c = i % NCHUNK;

		fill_stamp(dw->sys + c * CHUNK, CHUNK, dw->w, ++dw->seq);
		last = ce_drv_queue(&dw->ce, IOVA_SYS + c * CHUNK, dst + ((i * 5) % NCHUNK) * CHUNK,
				    CHUNK, i == N - 1 ? P2P_CE_DESC_IRQ : 0, (uint32_t)dw->seq);
	}
	if (ce_drv_kick(&dw->ce)) {
		fail(dw->ts.name, "kick failed");
		free(snap);
		return;
	}
	view = unmap_while_dma(dw, lane, g, snap);
	if (ce_drv_wait(&dw->ce, last))
		fail(dw->ts.name, "wait failed");
	for (unsigned int i = 0; i < N; i++)
		ce_status_ok(dw, ce_drv_compl(&dw->ce, last - N + 1 + i), CHUNK);
	report_diff(dw->ts.name, lane ? "lane written after IOAS_UNMAP returned"
				      : "system memory written after IOAS_UNMAP returned",
		    view, snap, TGT_SZ, lane ? base : NOT_BAR);
	free(snap);
}

/* ---- storage device ---- */

#define SD_HANG_MS 10000
#define SD_BLOCKS_PER_CHUNK (CHUNK / P2P_SD_BLOCK)

/* Reap exactly @n completions into @out; false (and a failure) on a hang. */
static bool sd_reap_n(struct dma_worker *dw, struct p2p_sd_cqe *out, uint32_t n)
{
	uint32_t got = 0;

	while (got < n) {
		if (sd_drv_wait(&dw->sd, 1, SD_HANG_MS) < 0) {
			fail(dw->ts.name, "storage device: no completion in %d ms", SD_HANG_MS);
			return false;
		}
		got += sd_drv_reap(&dw->sd, out + got, n - got);
	}
	return true;
}

static bool sd_status_ok(struct dma_worker *dw, const struct p2p_sd_cqe *c, uint64_t len)
{
	if (c->status == P2P_SD_REVOKED)
		lanes[0][dw->w].stale = lanes[1][dw->w].stale = true;
	if (c->status == P2P_SD_OK) {
		count(OP_SD_OK);
		if (c->bytes != len)
			fail(dw->ts.name, "command %u OK with %llu of %llu bytes", c->id,
			     (unsigned long long)c->bytes, (unsigned long long)len);
		return true;
	}
	count(OP_SD_DEAD);
	if (c->status != P2P_SD_REVOKED && c->status != P2P_SD_FAULT)
		fail(dw->ts.name, "command %u: %s", c->id, p2p_sd_status_name(c->status));
	return false;
}

/* Stamped system memory -> media (blocks 16c..), then media -> the lane's chunks. */
static void sd_batch(struct dma_worker *dw)
{
	unsigned int g = (unsigned int)rnd_n(&dw->rng, NGPU);
	struct p2p_sd_cqe cqe[NCHUNK];
	uint32_t nb[NCHUNK];
	uint64_t off[NCHUNK], seq0 = dw->seq;
	bool multi;

	lane_ensure(dw, g);
	set_op(&dw->ts, "storage writes");
	for (unsigned int c = 0; c < NCHUNK; c++) {
		nb[c] = 1 + (uint32_t)rnd_n(&dw->rng, SD_BLOCKS_PER_CHUNK);
		off[c] = c * CHUNK + rnd_n(&dw->rng, SD_BLOCKS_PER_CHUNK - nb[c] + 1) * P2P_SD_BLOCK;
		fill_stamp(dw->sys + c * CHUNK, (uint64_t)nb[c] * P2P_SD_BLOCK, dw->w, ++dw->seq);
		sd_drv_write(&dw->sd, c * SD_BLOCKS_PER_CHUNK, nb[c], IOVA_SYS + c * CHUNK,
			     P2P_SD_CMD_IRQ, c);
	}
	if (sd_drv_kick(&dw->sd) || !sd_reap_n(dw, cqe, NCHUNK))
		return;
	for (unsigned int c = 0; c < NCHUNK; c++)
		if (cqe[c].status != P2P_SD_OK)
			fail(dw->ts.name, "write to media: %s", p2p_sd_status_name(cqe[c].status));
	set_op(&dw->ts, "storage reads into the lane");
	for (unsigned int c = 0; c < NCHUNK; c++)
		sd_drv_read(&dw->sd, c * SD_BLOCKS_PER_CHUNK, nb[c], IOVA_GPU(g) + off[c],
			    P2P_SD_CMD_IRQ, c);
	if (sd_drv_kick(&dw->sd) || !sd_reap_n(dw, cqe, NCHUNK))
		return;
	multi = lanes[g][dw->w].multi;
	for (unsigned int i = 0; i < NCHUNK; i++) {
		unsigned int c = cqe[i].id;

		if (c >= NCHUNK) {
			fail(dw->ts.name, "completion id %u", c);
			continue;
		}
		if (sd_status_ok(dw, &cqe[i], (uint64_t)nb[c] * P2P_SD_BLOCK) &&
		    !is_stamp(gpus[g].bar + lane_bar(dw->w, multi, off[c]),
			      (uint64_t)nb[c] * P2P_SD_BLOCK, dw->w, seq0 + c + 1))
			fail(dw->ts.name, "read %u OK but the lane does not hold its bytes", c);
	}
}

/* As ce_unmap_inflight(): 32 reads of 16 blocks into the target, unmap at once. */
static void sd_unmap_inflight(struct dma_worker *dw)
{
	enum { N = 32 };
	static struct p2p_sd_cqe cqe[N];
	bool lane = rnd_n(&dw->rng, 2);
	unsigned int g = (unsigned int)rnd_n(&dw->rng, NGPU);
	uint8_t *snap = malloc(TGT_SZ), *view;
	uint64_t dst;

	if (!snap)
		return;
	if (lane ? !lane_ensure(dw, g) : !tgt_ensure(dw)) {
		free(snap);
		return;
	}
	dst = lane ? IOVA_GPU(g) : IOVA_TGT;
	set_op(&dw->ts, "reads, unmap in flight");
	for (unsigned int i = 0; i < N; i++)
		sd_drv_read(&dw->sd, (i % NCHUNK) * SD_BLOCKS_PER_CHUNK, SD_BLOCKS_PER_CHUNK,
			    dst + ((i * 3) % NCHUNK) * CHUNK, P2P_SD_CMD_IRQ, i);
	if (sd_drv_kick(&dw->sd)) {
		fail(dw->ts.name, "kick failed");
		free(snap);
		return;
	}
	view = unmap_while_dma(dw, lane, g, snap);
	if (sd_reap_n(dw, cqe, N))
		for (unsigned int i = 0; i < N; i++)
			sd_status_ok(dw, &cqe[i], CHUNK);
	report_diff(dw->ts.name, lane ? "lane written after IOAS_UNMAP returned"
				      : "system memory written after IOAS_UNMAP returned",
		    view, snap, TGT_SZ, lane ? (uint64_t)dw->w * LANE_SZ : NOT_BAR);
	free(snap);
}

static int dma_worker_init(struct dma_worker *dw)
{
	uint64_t iova = IOVA_SYS;
	int ret;

	dw->ce.efd = dw->sd.efd = -1;
	if (dw->w == W_CE)
		ret = p2p_copy_engine_create("0000:10:00.0", NULL, 10, &dw->pci);
	else
		ret = p2p_storage_create("0000:11:00.0", NULL, 11, NULL, 4 * MiB, &dw->pci);
	if (ret)
		return ret;
	if ((ret = p2p_vfio_device_open(dw->pci, &dw->vdev)) ||
	    (ret = p2p_ioas_alloc(ictx, &dw->ioas_id, &dw->ioas)) ||
	    (ret = p2p_vfio_device_attach_ioas(dw->vdev, dw->ioas)))
		return ret;
	dw->sys = aligned_alloc(PAGE, SYS_SZ);
	dw->tgt = aligned_alloc(PAGE, TGT_SZ);
	if (!dw->sys || !dw->tgt)
		return -ENOMEM;
	memset(dw->sys, 0, SYS_SZ);
	memset(dw->tgt, 0, TGT_SZ);
	ret = p2p_ioas_map(dw->ioas, dw->sys, SYS_SZ, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA);
	if (ret)
		return ret;
	return dw->w == W_CE ? ce_drv_init(&dw->ce, dw->vdev, dw->ioas, 128)
			     : sd_drv_init(&dw->sd, dw->vdev, dw->ioas, 64);
}

static void dma_worker_fini(struct dma_worker *dw)
{
	long ret;

	if (dw->w == W_CE)
		ce_drv_fini(&dw->ce);
	else
		sd_drv_fini(&dw->sd);
	for (unsigned int g = 0; g < NGPU; g++) {
		pthread_mutex_lock(&lanes[g][dw->w].lock);
		lane_unmap(dw, g);
		close_fd(&lanes[g][dw->w].fd);
		pthread_mutex_unlock(&lanes[g][dw->w].lock);
	}
	if (dw->vdev) {
		p2p_vfio_device_detach_ioas(dw->vdev);
		p2p_vfio_device_close(dw->vdev);
	}
	if (dw->pci)
		p2p_pci_dev_put(dw->pci);
	if (dw->ioas) {
		p2p_ioas_unmap(dw->ioas, 0, 0, NULL);
		p2p_ioas_put(dw->ioas);
		ret = t_destroy_ioctl(ictx, dw->ioas_id);
		if (ret)
			fail(dw->ts.name, "IOMMU_DESTROY of the IOAS: %s", strerror((int)-ret));
	}
	free(dw->sys);
	free(dw->tgt);
}

static void *dma_worker_fn(void *arg)
{
	struct dma_worker *dw = arg;

	while (!atomic_load(&stop)) {
		if (cfg.unmap_inflight && !rnd_n(&dw->rng, 6))
			dw->w == W_CE ? ce_unmap_inflight(dw) : sd_unmap_inflight(dw);
		else
			dw->w == W_CE ? ce_batch(dw) : sd_batch(dw);
		if (!rnd_n(&dw->rng, 16)) {
			/* Plain unmap/remap of the lane and the target, nothing in flight. */
			unsigned int g = (unsigned int)rnd_n(&dw->rng, NGPU);

			pthread_mutex_lock(&lanes[g][dw->w].lock);
			lane_unmap(dw, g);
			pthread_mutex_unlock(&lanes[g][dw->w].lock);
			if (dw->tgt_mapped &&
			    !t_unmap_ioctl(ictx, dw->ioas_id, IOVA_TGT, TGT_SZ, NULL)) {
				dw->tgt_mapped = false;
				count(OP_IOAS_UNMAP);
			}
		}
	}
	set_op(&dw->ts, "done");
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* io_uring                                                                */

#define URING_FILE_SZ (1 * MiB)
#define URING_SLOT_EMPTY 3 /* never registered */
#define URING_REQ (LANE_SZ / 8)

struct uring_worker {
	struct tstate ts;
	uint64_t rng, seq;
	struct p2p_uring *ring;
	int file_fd;
	int fd[NGPU];
	unsigned int gen[NGPU];
	bool multi[NGPU], registered[NGPU];
	uint8_t *buf, *want;
	int pipe[2];
};

enum sqe_kind { SQE_READ, SQE_WRITE, SQE_MALFORMED };

struct req {
	enum sqe_kind kind;
	uint32_t len;
	uint64_t doff; /* offset in the dma-buf */
	uint64_t seq;
	int32_t res;
	bool done, linked;
};

static void uring_register(struct uring_worker *uw, unsigned int g)
{
	bool multi = rnd_n(&uw->rng, 2);
	unsigned int gen;
	int fd, ret;

	set_op(&uw->ts, "export + register slot");
	fd = export_lane(&gpus[g], W_URING, multi, &gen);
	if (fd < 0) {
		fail(uw->ts.name, "export: %s", strerror(-fd));
		return;
	}
	ret = p2p_uring_register_dmabuf(uw->ring, g, fd, uw->file_fd);
	if (ret < 0) {
		/* Revoked at the moment (ENODEV); the slot keeps its old registration. */
		if (ret != -ENODEV)
			fail(uw->ts.name, "register slot %u: %s", g, strerror(-ret));
		count(OP_URING_REGISTER_FAIL);
		close_fd(&fd);
		return;
	}
	count(OP_URING_REGISTER);
	close_fd(&uw->fd[g]);
	uw->fd[g] = fd;
	uw->gen[g] = gen;
	uw->multi[g] = multi;
	uw->registered[g] = true;
}

/* A malformed SQE on slot @g: each must complete with an error, never a transfer. */
static void malformed_sqe(struct uring_worker *uw, struct io_uring_sqe *sqe)
{
	switch (rnd_n(&uw->rng, 7)) {
	case 5: /* an opcode the kernel does not know: it fails the SQE at submission */
		sqe->opcode = 0xfe;
		break;
	case 6: /* an SQE flag the kernel does not know */
		sqe->flags |= 1u << 7;
		break;
	case 0: /* zero length */
		sqe->len = 0;
		break;
	case 1: /* beyond the dma-buf */
		sqe->addr = LANE_SZ - 100;
		sqe->len = 4096;
		break;
	case 2: /* vectored fixed ops are not for dma-bufs */
		sqe->opcode = IORING_OP_READV_FIXED;
		break;
	case 3: /* an empty slot */
		sqe->buf_index = URING_SLOT_EMPTY;
		break;
	default: /* not the slot's target file */
		sqe->fd = 0;
		break;
	}
}

/*
 * Submit until the kernel took everything: without IORING_SETUP_SUBMIT_ALL
 * it stops a batch at an SQE that fails at submission (a malformed one).
 */
static void uring_submit_all(struct uring_worker *uw)
{
	int ret;

	while ((ret = p2p_uring_submit(uw->ring)) > 0)
		;
	if (ret < 0)
		fail(uw->ts.name, "submit: %s", strerror(-ret));
}

/*
 * A dma-buf read that cannot start: behind a read of an empty pipe, linked
 * to it (IOSQE_IO_LINK) or drained (IOSQE_IO_DRAIN).  It has not touched
 * the dma-buf, so a revoke must not wait for it (it would wait for the
 * pipe): the pipe is written only once a revoke of its GPU has returned,
 * or after 1.25 times the revoke bound, so a revoke that waits fails the
 * bound instead of hanging.
 */
static void uring_blocked(struct uring_worker *uw, unsigned int g, bool link)
{
	struct io_uring_sqe sqe = { 0 };
	int64_t until = now_ns() + cfg.max_revoke_ms * 1250000ll;
	unsigned int done0 = atomic_load(&gpus[g].done), got = 0;
	uint32_t len = 1 + (uint32_t)rnd_n(&uw->rng, URING_REQ);
	static char c;
	int ret;

	set_op(&uw->ts, link ? "linked read behind a pipe" : "drained read behind a pipe");
	io_uring_prep_read(&sqe, uw->pipe[0], &c, 1, 0);
	sqe.flags = link ? IOSQE_IO_LINK : 0;
	sqe.user_data = 100;
	if ((ret = p2p_uring_submit_sqe(uw->ring, &sqe))) {
		fail(uw->ts.name, "submit_sqe: %s", strerror(-ret));
		return;
	}
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_READ_FIXED;
	sqe.fd = uw->file_fd;
	sqe.len = len;
	sqe.buf_index = (uint16_t)g;
	sqe.flags = link ? 0 : IOSQE_IO_DRAIN;
	sqe.user_data = 101;
	count(link ? OP_URING_LINKED : OP_URING_DRAINED);
	if ((ret = p2p_uring_submit_sqe(uw->ring, &sqe)))
		fail(uw->ts.name, "submit_sqe: %s", strerror(-ret));
	uring_submit_all(uw);
	while (atomic_load(&gpus[g].done) == done0 && now_ns() < until && !atomic_load(&stop))
		usleep(500);
	if (write(uw->pipe[1], "x", 1) != 1)
		fail(uw->ts.name, "pipe write: %s", strerror(errno));
	while (got < (ret ? 1u : 2u)) {
		struct io_uring_cqe cqe;

		if ((ret = p2p_uring_wait_cqe(uw->ring, &cqe, true))) {
			fail(uw->ts.name, "wait_cqe: %s", strerror(-ret));
			return;
		}
		got++;
		/*
		 * A revoke cancels what a slot read waits behind (p2p_uring_create(3)):
		 * then the byte stays in the pipe; take it out.
		 */
		if (cqe.user_data == 100 && cqe.res == -ECANCELED) {
			char b;

			count(OP_URING_CANCELED);
			if (read(uw->pipe[0], &b, 1) != 1)
				fail(uw->ts.name, "pipe drain: %s", strerror(errno));
		} else if (cqe.user_data == 100 && cqe.res != 1) {
			fail(uw->ts.name, "pipe read: %d", cqe.res);
		}
		if (cqe.user_data != 101)
			continue;
		/* Ran (whole), or stopped by the revoke: never partial. */
		if (cqe.res == (int32_t)len)
			count(OP_URING_OK);
		else if (cqe.res == -EAGAIN || cqe.res == -ENODEV || cqe.res == -ECANCELED ||
			 cqe.res == -EFAULT)
			count(OP_URING_ENODEV);
		else
			fail(uw->ts.name, "read behind a pipe: %d", cqe.res);
	}
}

static void uring_batch(struct uring_worker *uw)
{
	unsigned int g = (unsigned int)rnd_n(&uw->rng, NGPU);
	unsigned int n = 1 + (unsigned int)rnd_n(&uw->rng, 8), got = 0;
	struct req reqs[8];
	int ret;

	if (!uw->registered[g] || uw->gen[g] != atomic_load(&gpus[g].gen) ||
	    !rnd_n(&uw->rng, 20))
		uring_register(uw, g);
	if (!uw->registered[g])
		return;
	if ((cfg.linked || cfg.drain) && !rnd_n(&uw->rng, 16)) {
		uring_blocked(uw, g, cfg.linked && (!cfg.drain || rnd_n(&uw->rng, 2)));
		return;
	}
	set_op(&uw->ts, "queue SQEs");
	for (unsigned int i = 0; i < n; i++) {
		struct req *q = &reqs[i];
		struct io_uring_sqe sqe = { 0 };
		unsigned int r = (unsigned int)rnd_n(&uw->rng, 10);

		memset(q, 0, sizeof(*q));
		q->kind = cfg.malformed && r == 0 ? SQE_MALFORMED : r < 3 ? SQE_WRITE : SQE_READ;
		q->len = 1 + (uint32_t)rnd_n(&uw->rng, URING_REQ);
		q->doff = (uint64_t)i * URING_REQ + rnd_n(&uw->rng, URING_REQ - q->len + 1);
		q->seq = ++uw->seq;
		sqe.opcode = q->kind == SQE_WRITE ? IORING_OP_WRITE_FIXED : IORING_OP_READ_FIXED;
		sqe.fd = uw->file_fd;
		sqe.addr = q->doff;
		sqe.len = q->len;
		sqe.buf_index = (uint16_t)g;
		sqe.user_data = i;
		if (q->kind == SQE_READ) {
			/* The file bytes it reads say who and when. */
			fill_stamp(uw->buf, q->len, W_URING, q->seq);
			sqe.off = i * URING_REQ;
			if (pwrite(uw->file_fd, uw->buf, q->len, (off_t)sqe.off) != (ssize_t)q->len)
				fail(uw->ts.name, "pwrite: %s", strerror(errno));
		} else {
			sqe.off = 512 * KiB + i * URING_REQ;
		}
		if (q->kind == SQE_MALFORMED)
			malformed_sqe(uw, &sqe);
		if (!rnd_n(&uw->rng, 3))
			sqe.flags |= IOSQE_ASYNC;
		if (cfg.linked && i + 1 < n && !rnd_n(&uw->rng, 3)) {
			sqe.flags |= IOSQE_IO_LINK;
			q->linked = true;
			count(OP_URING_LINKED);
		}
		if (cfg.drain && !rnd_n(&uw->rng, 6)) {
			sqe.flags |= IOSQE_IO_DRAIN;
			count(OP_URING_DRAINED);
		}
		while ((ret = p2p_uring_submit_sqe(uw->ring, &sqe)) == -EBUSY)
			p2p_uring_submit(uw->ring);
		if (ret) {
			fail(uw->ts.name, "submit_sqe: %s", strerror(-ret));
			n = i;
			break;
		}
	}
	set_op(&uw->ts, "submit + wait for completions");
	uring_submit_all(uw);
	while (got < n) {
		struct io_uring_cqe cqe;

		ret = p2p_uring_wait_cqe(uw->ring, &cqe, true);
		if (ret) {
			fail(uw->ts.name, "wait_cqe: %s", strerror(-ret));
			return;
		}
		if (cqe.user_data >= n || reqs[cqe.user_data].done) {
			fail(uw->ts.name, "completion for unknown request %llu",
			     (unsigned long long)cqe.user_data);
			continue;
		}
		reqs[cqe.user_data].done = true;
		reqs[cqe.user_data].res = cqe.res;
		got++;
	}
	for (unsigned int i = 0; i < n; i++) {
		const struct req *q = &reqs[i];

		if (q->kind == SQE_MALFORMED) {
			count(OP_URING_MALFORMED);
			if (q->res >= 0)
				fail(uw->ts.name, "malformed SQE completed with %d", q->res);
			continue;
		}
		switch (q->res) {
		case -EAGAIN: count(OP_URING_EAGAIN); continue;
		case -ENODEV: count(OP_URING_ENODEV); continue;
		case -ECANCELED: /* a link broken by an earlier request's failure */
			count(OP_URING_CANCELED);
			if (!(i && reqs[i - 1].linked))
				fail(uw->ts.name, "-ECANCELED for request %u, not linked", i);
			continue;
		default:
			break;
		}
		if (q->res != (int32_t)q->len) {
			fail(uw->ts.name, "%s of %u bytes completed with %d",
			     q->kind == SQE_READ ? "read" : "write", q->len, q->res);
			continue;
		}
		count(OP_URING_OK);
		if (q->kind != SQE_READ)
			continue;
		/* The bytes are in the lane, where the layout puts them. */
		fill_stamp(uw->want, q->len, W_URING, q->seq);
		for (uint64_t o = 0; o < q->len;) {
			uint64_t d = q->doff + o, run = CHUNK - d % CHUNK;

			run = run < q->len - o ? run : q->len - o;
			if (memcmp(gpus[g].bar + lane_bar(W_URING, uw->multi[g], d), uw->want + o,
				   run)) {
				fail(uw->ts.name, "read %llu OK but the lane does not hold its bytes",
				     (unsigned long long)q->seq);
				break;
			}
			o += run;
		}
	}
}

static int make_tmpfile(size_t size)
{
	const char *dir = getenv("TMPDIR");
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/p2pbuf-chaos-XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (ftruncate(fd, (off_t)size)) {
		close(fd);
		return -errno;
	}
	return fd;
}

static void *uring_worker_fn(void *arg)
{
	struct uring_worker *uw = arg;

	while (!atomic_load(&stop))
		uring_batch(uw);
	set_op(&uw->ts, "done");
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* CPU access                                                              */

struct cpu_worker {
	struct tstate ts;
	uint64_t rng, seq;
	void *va[NGPU];
	int fd[NGPU];
	unsigned int gen[NGPU];
	bool multi[NGPU];
	uint8_t model[NGPU][LANE_SZ / PAGE]; /* byte 64 of each BAR page of the lane */
};

#define CPU_BYTE 64

static void cpu_unmap(struct cpu_worker *cw, unsigned int g)
{
	if (cw->va[g] && p2p_munmap(cw->va[g], LANE_SZ))
		fail(cw->ts.name, "p2p_munmap failed");
	cw->va[g] = NULL;
	close_fd(&cw->fd[g]);
}

/* One probed access to BAR page @bp of the lane through @p; checks loads against the model. */
static void cpu_access(struct cpu_worker *cw, unsigned int g, volatile uint8_t *p,
		       unsigned int bp)
{
	bool write = rnd_n(&cw->rng, 2);
	uint8_t v = (uint8_t)(++cw->seq | 1), got = 0;
	int sig = t_access(p, write, v, &got);

	if (sig) {
		count(OP_CPU_SIGBUS);
		if (sig != SIGBUS)
			fail(cw->ts.name, "access faulted with signal %d, not SIGBUS", sig);
		return;
	}
	count(OP_CPU_OK);
	if (write)
		cw->model[g][bp] = v;
	else if (got != cw->model[g][bp])
		fail(cw->ts.name, "gpu%u lane page %u: read %#x, last store was %#x", g, bp, got,
		     cw->model[g][bp]);
}

static void cpu_round(struct cpu_worker *cw)
{
	unsigned int g = (unsigned int)rnd_n(&cw->rng, NGPU);
	struct gpu *gp = &gpus[g];

	if (!cw->va[g] || cw->gen[g] != atomic_load(&gp->gen) || !rnd_n(&cw->rng, 30)) {
		int ret;

		cpu_unmap(cw, g);
		cw->multi[g] = rnd_n(&cw->rng, 2);
		set_op(&cw->ts, "export + mmap");
		cw->fd[g] = export_lane(gp, W_CPU, cw->multi[g], &cw->gen[g]);
		if (cw->fd[g] < 0) {
			fail(cw->ts.name, "export: %s", strerror(-cw->fd[g]));
			return;
		}
		ret = t_mmap_fd(cw->fd[g], LANE_SZ, MAP_SHARED, 0, &cw->va[g]);
		if (ret) {
			/* Revoked now: ENODEV (3.3). */
			if (ret != -ENODEV)
				fail(cw->ts.name, "mmap: %s", strerror(-ret));
			count(OP_CPU_MMAP_FAIL);
			cw->va[g] = NULL;
			close_fd(&cw->fd[g]);
			return;
		}
		count(OP_CPU_MMAP);
	}
	set_op(&cw->ts, "probed accesses");
	for (unsigned int i = 0; i < 64; i++) {
		uint64_t d = rnd_n(&cw->rng, LANE_SZ / PAGE) * PAGE + CPU_BYTE;
		uint64_t bp = (lane_bar(W_CPU, cw->multi[g], d) - W_CPU * LANE_SZ) / PAGE;

		cpu_access(cw, g, (volatile uint8_t *)cw->va[g] + d, (unsigned int)bp);
	}
	if (!rnd_n(&cw->rng, 8)) {
		/* A short-lived BAR mmap (3.1): made even while revoked, then it faults. */
		uint64_t c = rnd_n(&cw->rng, NCHUNK);
		void *va;
		int ret;

		set_op(&cw->ts, "BAR mmap");
		pthread_rwlock_rdlock(&gp->lock);
		ret = p2p_vfio_device_mmap(gp->dev.vdev, NULL, CHUNK, PROT_READ | PROT_WRITE,
					   MAP_SHARED,
					   P2P_VFIO_REGION_OFFSET(BAR) + W_CPU * LANE_SZ + c * CHUNK,
					   &va);
		if (ret) {
			fail(cw->ts.name, "BAR mmap: %s", strerror(-ret));
		} else {
			count(OP_BAR_MMAP);
			for (unsigned int i = 0; i < 8; i++) {
				uint64_t pg = rnd_n(&cw->rng, CHUNK / PAGE);

				cpu_access(cw, g, (volatile uint8_t *)va + pg * PAGE + CPU_BYTE,
					   (unsigned int)(c * (CHUNK / PAGE) + pg));
			}
			if (p2p_munmap(va, CHUNK))
				fail(cw->ts.name, "p2p_munmap of the BAR mmap failed");
		}
		pthread_rwlock_unlock(&gp->lock);
	}
	sched_yield();
}

static void *cpu_worker_fn(void *arg)
{
	struct cpu_worker *cw = arg;

	while (!atomic_load(&stop))
		cpu_round(cw);
	for (unsigned int g = 0; g < NGPU; g++)
		cpu_unmap(cw, g);
	set_op(&cw->ts, "done");
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Export / import churn                                                   */

#define CHURN_POOL 8

struct churn_worker {
	struct tstate ts;
	uint64_t rng;
	struct p2p_ioas *ioas;
	uint32_t ioas_id;
	int fd[CHURN_POOL];
	unsigned int nr[CHURN_POOL], gpu[CHURN_POOL];
};

static void churn_round(struct churn_worker *cw)
{
	unsigned int k = (unsigned int)rnd_n(&cw->rng, CHURN_POOL);
	unsigned int g = (unsigned int)rnd_n(&cw->rng, NGPU);
	struct gpu *gp = &gpus[g];
	struct p2p_dmabuf *buf;
	uint64_t iova = 0, size;
	long ret;

	if (cw->fd[k] < 0 || !rnd_n(&cw->rng, 3)) {
		/* Ranges anywhere in the lane, 1-4 of them, possibly overlapping. */
		struct vfio_region_dma_range r[4];
		unsigned int nr = 1 + (unsigned int)rnd_n(&cw->rng, 4);

		close_fd(&cw->fd[k]);
		for (unsigned int i = 0; i < nr; i++) {
			uint64_t pages = 1 + rnd_n(&cw->rng, 16);

			r[i].offset = W_CHURN * LANE_SZ +
				      rnd_n(&cw->rng, LANE_SZ / PAGE - pages + 1) * PAGE;
			r[i].length = pages * PAGE;
		}
		set_op(&cw->ts, "export");
		pthread_rwlock_rdlock(&gp->lock);
		cw->fd[k] = export_ioctl(gp->dev.vdev, r, nr);
		pthread_rwlock_unlock(&gp->lock);
		count(cw->fd[k] < 0 ? OP_EXPORT_FAIL : nr > 1 ? OP_EXPORT_MULTI : OP_EXPORT_SINGLE);
		if (cw->fd[k] < 0) {
			fail(cw->ts.name, "export: %s", strerror(-cw->fd[k]));
			return;
		}
		cw->nr[k] = nr;
		cw->gpu[k] = g;
	}
	if (p2p_dmabuf_get(cw->fd[k], &buf)) {
		fail(cw->ts.name, "p2p_dmabuf_get of a pool fd failed");
		return;
	}
	size = p2p_dmabuf_size(buf);
	switch (rnd_n(&cw->rng, 4)) {
	case 0: /* IOMMU_IOAS_MAP_FILE (kernel-exact: multi-range is EOPNOTSUPP) */
		set_op(&cw->ts, "MAP_FILE + unmap");
		ret = t_map_file_ioctl(ictx, cw->ioas_id, cw->fd[k], 0, size, &iova, RW);
		if (!ret) {
			count(OP_IMPORT);
			ret = t_unmap_ioctl(ictx, cw->ioas_id, iova, size, NULL);
			if (ret)
				fail(cw->ts.name, "unmap: %s", strerror((int)-ret));
			count(OP_IOAS_UNMAP);
		} else {
			count(OP_IMPORT_FAIL);
			if (ret != -ENODEV && !(ret == -EOPNOTSUPP && cw->nr[k] > 1))
				fail(cw->ts.name, "MAP_FILE: %s", strerror((int)-ret));
		}
		break;
	case 1: /* a dynamic importer */
		set_op(&cw->ts, "attach + map");
		ret = t_try_attach(buf);
		if (ret && ret != -ENODEV)
			fail(cw->ts.name, "attach/map: %s", strerror((int)-ret));
		count(OP_ATTACH);
		break;
	case 2: { /* a CPU mapping, read only here */
		void *va;

		set_op(&cw->ts, "mmap + read");
		ret = p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va);
		if (!ret) {
			count(OP_CPU_MMAP);
			if (t_read_faults(va))
				count(OP_CPU_SIGBUS);
			else
				count(OP_CPU_OK);
			if (p2p_munmap(va, size))
				fail(cw->ts.name, "p2p_munmap failed");
		} else if (ret != -ENODEV) {
			fail(cw->ts.name, "mmap: %s", strerror((int)-ret));
		}
		break;
	}
	default: /* feature 13: revoke this one for good, through its own device */
		set_op(&cw->ts, "feature 13 revoke");
		gp = &gpus[cw->gpu[k]];
		pthread_rwlock_rdlock(&gp->lock);
		ret = t_feat_revoke(gp->dev.vdev, cw->fd[k]);
		pthread_rwlock_unlock(&gp->lock);
		/* A dma-buf of an earlier open of the device is not this file's. */
		if (ret && ret != -EINVAL && ret != -ENODEV && ret != -EBADFD)
			fail(cw->ts.name, "feature 13: %s", strerror((int)-ret));
		count(OP_FEAT_REVOKE);
		break;
	}
	p2p_dmabuf_put(buf);
}

static void *churn_worker_fn(void *arg)
{
	struct churn_worker *cw = arg;

	while (!atomic_load(&stop)) {
		churn_round(cw);
		sched_yield();
	}
	for (unsigned int k = 0; k < CHURN_POOL; k++)
		close_fd(&cw->fd[k]);
	set_op(&cw->ts, "done");
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Watchdog, leaks, main                                                   */

static struct tstate *all_ts[NGPU + NR_WORKERS];
static unsigned int nr_ts;
static atomic_bool finished;

static void report_threads(void)
{
	int64_t now = now_ns();

	fprintf(stderr, "thread states at %.1f s:\n", (now - t_start) / 1e9);
	for (unsigned int i = 0; i < nr_ts; i++)
		fprintf(stderr, "  %-12s %-36s for %.1f ms\n", all_ts[i]->name,
			atomic_load(&all_ts[i]->op),
			(now - atomic_load(&all_ts[i]->since)) / 1e6);
}

static void *watchdog(void *arg)
{
	int64_t hard = t_deadline + (int64_t)(cfg.margin * 1e9);
	int64_t op_bound = 5 * cfg.max_revoke_ms * 1000000ll;

	(void)arg;
	while (!atomic_load(&finished)) {
		int64_t now = now_ns();

		usleep(50000);
		for (unsigned int g = 0; g < NGPU; g++) {
			const char *op = atomic_load(&gpus[g].ts.op);

			if (strcmp(op, "between operations") && strcmp(op, "done") &&
			    now - atomic_load(&gpus[g].ts.since) > op_bound) {
				fprintf(stderr, "WATCHDOG: %s: '%s' has not returned after %.1f s\n",
					gpus[g].ts.name, op,
					(now - atomic_load(&gpus[g].ts.since)) / 1e9);
				report_threads();
				_exit(T_EXIT_FAIL);
			}
		}
		if (now > hard) {
			fprintf(stderr, "WATCHDOG: still running %.1f s after the %.0f s deadline\n",
				(now - t_deadline) / 1e9, cfg.seconds);
			report_threads();
			_exit(T_EXIT_FAIL);
		}
	}
	return NULL;
}

/* Mappings that p2pbuf makes or could leak: memfds and anonymous inodes (io_uring). */
static int count_maps(void)
{
	static const char *const leakable[] = { "/memfd:", "anon_inode:", NULL };

	return proc_count_maps(leakable);
}

/* A switch is on when set to anything but "" or "0". */
static bool env_set(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0");
}

static void ts_init(struct tstate *ts, const char *name)
{
	snprintf(ts->name, sizeof(ts->name), "%s", name);
	atomic_store(&ts->op, "starting");
	atomic_store(&ts->since, now_ns());
	all_ts[nr_ts++] = ts;
}

int main(int argc, char **argv)
{
	static struct dma_worker ce = { .w = W_CE }, sd = { .w = W_SD };
	static struct uring_worker uw;
	static struct cpu_worker cw;
	static struct churn_worker chw;
	const char *s = argc > 1 ? argv[1] : getenv("CHAOS_SECONDS");
	pthread_t wd;
	int maps0, maps1, ret;
	int64_t elapsed;

	t_begin();
	cfg.seconds = s && *s ? atof(s) : 5;
	cfg.seed = getenv("CHAOS_SEED") ? strtoull(getenv("CHAOS_SEED"), NULL, 0)
					: (uint64_t)time(NULL);
	cfg.max_revoke_ms = getenv("CHAOS_MAX_REVOKE_MS") ? atol(getenv("CHAOS_MAX_REVOKE_MS"))
							  : 2000;
	cfg.margin = getenv("CHAOS_MARGIN") ? atof(getenv("CHAOS_MARGIN")) : 30;
	cfg.linked = !env_set("CHAOS_NO_LINKED_SQES");
	cfg.drain = !env_set("CHAOS_NO_DRAIN_SQES");
	cfg.malformed = !env_set("CHAOS_NO_MALFORMED_SQES");
	cfg.unmap_inflight = !env_set("CHAOS_NO_UNMAP_INFLIGHT");
	if (cfg.seconds <= 0 || cfg.max_revoke_ms <= 0) {
		fprintf(stderr, "usage: %s [seconds > 0]\n", argv[0]);
		return T_EXIT_FAIL;
	}
	t_require_uffd();
	printf("chaos: %.1f s, seed %#llx, revoke bound %ld ms; linked SQEs %s, drained SQEs %s, "
	       "malformed SQEs %s, unmap with DMA in flight %s\n",
	       cfg.seconds, (unsigned long long)cfg.seed, cfg.max_revoke_ms,
	       cfg.linked ? "on" : "off", cfg.drain ? "on" : "off", cfg.malformed ? "on" : "off",
	       cfg.unmap_inflight ? "on" : "off");
	maps0 = count_maps();

	t_section("setup");
	for (unsigned int g = 0; g < NGPU; g++) {
		struct gpu *gp = &gpus[g];
		pthread_rwlockattr_t a;
		char name[16];

		gp->idx = g;
		gp->rng = cfg.seed * 0x9e3779b97f4a7c15ull + g + 1;
		pthread_rwlockattr_init(&a);
		pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&gp->lock, &a);
		pthread_rwlockattr_destroy(&a);
		snprintf(name, sizeof(name), "0000:0%u:00.0", g + 1);
		t_dev_create_or_fail(&gp->dev, name, BAR_SZ, g + 1);
		gp->bar = t_bar_ptr(gp->dev.pci, BAR, 0);
		gp->snap = malloc(BAR_SZ);
		CHECK(gp->snap != NULL);
		memset(gp->bar, 0, BAR_SZ);
		snprintf(name, sizeof(name), "ctl-gpu%u", g);
		ts_init(&gp->ts, name);
		for (unsigned int w = 0; w < NR_WORKERS; w++) {
			pthread_mutex_init(&lanes[g][w].lock, NULL);
			lanes[g][w].fd = -1;
		}
	}
	CHECK_OK(p2p_iommufd_open(&ictx));
	if (t_failures)
		return t_end();
	ce.rng = cfg.seed ^ 0x1111;
	sd.rng = cfg.seed ^ 0x2222;
	uw.rng = cfg.seed ^ 0x3333;
	cw.rng = cfg.seed ^ 0x4444;
	chw.rng = cfg.seed ^ 0x5555;
	ts_init(&ce.ts, "ce");
	ts_init(&sd.ts, "sd");
	ts_init(&uw.ts, "uring");
	ts_init(&cw.ts, "cpu");
	ts_init(&chw.ts, "churn");
	CHECK_OK(dma_worker_init(&ce));
	CHECK_OK(dma_worker_init(&sd));
	CHECK_OK(p2p_uring_create(64, 4, &uw.ring));
	uw.file_fd = make_tmpfile(URING_FILE_SZ);
	CHECK(pipe2(uw.pipe, O_CLOEXEC) == 0);
	CHECK(uw.file_fd >= 0);
	uw.buf = malloc(URING_REQ);
	uw.want = malloc(URING_REQ);
	CHECK(uw.buf != NULL && uw.want != NULL);
	for (unsigned int g = 0; g < NGPU; g++)
		uw.fd[g] = cw.fd[g] = -1;
	for (unsigned int k = 0; k < CHURN_POOL; k++)
		chw.fd[k] = -1;
	CHECK_OK(p2p_ioas_alloc(ictx, &chw.ioas_id, &chw.ioas));
	if (t_failures)
		return t_end();

	t_start = now_ns();
	t_deadline = t_start + (int64_t)(cfg.seconds * 1e9);
	CHECK_OK(-pthread_create(&wd, NULL, watchdog, NULL));
	for (unsigned int g = 0; g < NGPU; g++)
		CHECK_OK(-pthread_create(&gpus[g].ts.thr, NULL, controller, &gpus[g]));
	CHECK_OK(-pthread_create(&ce.ts.thr, NULL, dma_worker_fn, &ce));
	CHECK_OK(-pthread_create(&sd.ts.thr, NULL, dma_worker_fn, &sd));
	CHECK_OK(-pthread_create(&uw.ts.thr, NULL, uring_worker_fn, &uw));
	CHECK_OK(-pthread_create(&cw.ts.thr, NULL, cpu_worker_fn, &cw));
	CHECK_OK(-pthread_create(&chw.ts.thr, NULL, churn_worker_fn, &chw));

	while (now_ns() < t_deadline && atomic_load(&failures) < 40)
		usleep(20000);
	atomic_store(&stop, true);
	for (unsigned int i = 0; i < nr_ts; i++)
		pthread_join(all_ts[i]->thr, NULL);
	elapsed = now_ns() - t_start;

	t_section("teardown");
	/* Every lane works again: the controllers left the GPUs enabled and open. */
	for (unsigned int g = 0; g < NGPU; g++)
		CHECK(p2p_pci_dev_memory_enabled(gpus[g].dev.pci));
	dma_worker_fini(&ce);
	dma_worker_fini(&sd);
	p2p_uring_destroy(uw.ring);
	for (unsigned int g = 0; g < NGPU; g++)
		close_fd(&uw.fd[g]);
	close(uw.file_fd);
	close(uw.pipe[0]);
	close(uw.pipe[1]);
	free(uw.buf);
	free(uw.want);
	ret = t_destroy_ioctl(ictx, chw.ioas_id);
	p2p_ioas_put(chw.ioas);
	CHECK_OK(ret);
	p2p_iommufd_close(ictx);
	for (unsigned int g = 0; g < NGPU; g++) {
		t_dev_destroy(&gpus[g].dev);
		free(gpus[g].snap);
		pthread_rwlock_destroy(&gpus[g].lock);
		for (unsigned int w = 0; w < NR_WORKERS; w++)
			pthread_mutex_destroy(&lanes[g][w].lock);
	}
	atomic_store(&finished, true);
	pthread_join(wd, NULL);

	t_section("summary");
	printf("%-36s %10s %12s\n", "operation", "count", "max ms");
	for (unsigned int i = 0; i < NR_OPS; i++) {
		long long m = atomic_load(&max_ns[i]);

		if (m)
			printf("%-36s %10lu %12.3f\n", op_name[i], atomic_load(&nops[i]), m / 1e6);
		else
			printf("%-36s %10lu\n", op_name[i], atomic_load(&nops[i]));
	}
	{
		long long worst = 0;
		int which = 0;

		for (unsigned int i = OP_MEM_OFF; i <= OP_REOPEN; i++)
			if (atomic_load(&max_ns[i]) > worst)
				worst = atomic_load(&max_ns[(which = (int)i)]);
		printf("max revoke latency: %.3f ms (%s); ran %.2f s\n", worst / 1e6, op_name[which],
		       elapsed / 1e9);
	}
	/* Everything was exercised. */
	CHECK(atomic_load(&nops[OP_WINDOW_CHECK]) > 0);
	CHECK(atomic_load(&nops[OP_CE_OK]) > 0 && atomic_load(&nops[OP_SD_OK]) > 0);
	CHECK(atomic_load(&nops[OP_URING_OK]) > 0 && atomic_load(&nops[OP_CPU_OK]) > 0);

	maps1 = count_maps();
	if (maps1 != maps0) {
		fprintf(stderr, "mapping leak: %d memfd/anon-inode mappings at start, %d at end\n",
			maps0, maps1);
		t_failures++;
	}
	if (atomic_load(&failures)) {
		flockfile(stderr);
		fprintf(stderr, "%d chaos failure(s); the first: %s\n", atomic_load(&failures),
			first_failure);
		funlockfile(stderr);
		t_failures += atomic_load(&failures);
	}
	return t_end();
}
