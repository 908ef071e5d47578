// SPDX-License-Identifier: MIT
/*
 * Revoke during peer-to-peer DMA (kernel-semantics 0.2, 0.3, 1.7, 2.5, 7.2,
 * 7.3).
 *
 * A stream thread drives the copy engine (tools/ce_driver.c) without a
 * pause: batches of copies from system memory into a GPU's BAR2, exported
 * as a dma-buf and mapped in the engine's IOAS, and copies back out of the
 * BAR.  The main thread revokes the GPU over and over, with every trigger
 * in turn: COMMAND.MEM off/on, FLR through config DEVCTL,
 * VFIO_DEVICE_RESET and D3hot/D0.  After each revoke it un-revokes and
 * does what a VMM does (2.5): unmap the stale IOAS area and map the
 * dma-buf again with FIXED_IOVA at the same IOVA.
 *
 * The main thread publishes an atomic `phase` (state and generation); the
 * stream reads it before queueing a batch, so each descriptor is tagged
 * with what had already happened when it was queued.  What it proves:
 * - No write lands after a revoke returns.  Right after the revoke call
 *   returns the main thread snapshots the whole BAR (p2p_mem_ptr(), the
 *   bytes the device holds) into a canary, lets the stream run on for a
 *   few batches, and compares: not one byte may have changed, until the
 *   area is mapped again.  FLR and reset un-revoke the dma-buf inside the
 *   same call, yet the canary holds for them too: iommufd never remaps a
 *   revoked area on its own (2.5).
 * - Every descriptor queued after the revoke returned, and before the
 *   remap began, completes REVOKED having copied nothing, reads and
 *   writes alike, also after the un-revoke (the stale area stays dead).
 * - A batch that ran while nothing was revoked completes OK, every byte
 *   verified; so does the stream after each remap (the engine recovers).
 *   Any OK copy's bytes are verified, any non-OK copy must have left the
 *   BAR (or the system memory it would have written) untouched: the
 *   stream keeps a model of the BAR and checks every chunk it targets.
 *
 * Round counts are fixed and nothing depends on timing: each phase lasts
 * until the stream has completed a given number of batches in it.  Clean
 * under ThreadSanitizer: every byte the engine writes is read by another
 * thread only after a synchronising completion, revoke or fence.  That
 * makes the canary exact under TSan: a revoke that returned while a copy
 * into the BAR was still running (no fence wait) is a reported race on
 * the snapshot, even when the late bytes land before it is taken.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "ce_driver.h"
#include "harness.h"

#define KiB 1024ull
#define PAGE 4096ull
#define BAR 2
#define BAR_SZ (2048 * KiB)
#define DB_OFF (512 * KiB) /* the dma-buf: BAR2 [512K, 1.5M) */
#define DB_LEN (1024 * KiB)
#define CHUNK (64 * KiB)   /* the stream writes into one chunk of the dma-buf per copy */
#define NCHUNK (DB_LEN / CHUNK)
#define NW 6		   /* copies into the BAR per batch */
#define NR 2		   /* copies back out of the BAR per batch */
#define NB (NW + NR)
#define SLOT (64 * KiB)
#define SYS_SZ ((NW + NR) * SLOT)
#define RING 64
#define ROUNDS 200
#define IOVA_SYS 0x10000000ull
#define IOVA_GPU 0x40000000ull
#define IOVA_SPARE 0x80000000ull

#define MIN(a, b) ((a) < (b) ? (a) : (b))

static const uint32_t RW = P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE;

/* The phase word: generation << 3 | state. */
enum state {
	LIVE,	    /* mapped, nothing revoked */
	REVOKING,   /* a revoke may be running */
	REVOKED,    /* the revoke call returned: the area must stay dead */
	UNREVOKED,  /* the dma-buf is un-revoked, the area is stale: still dead */
	REMAPPING,  /* unmap + map in progress: faults and OKs are fine */
	NR_STATES,
};
static const char *const state_name[] = { "live", "revoking", "revoked", "unrevoked",
					  "remapping" };

static atomic_uint phase;
static atomic_bool stop;

static struct t_dev gpu;
static struct p2p_pci_dev *cepci;
static struct p2p_vfio_device *cev;
static struct p2p_iommufd *ictx;
static struct p2p_ioas *ioas;
static struct ce_drv drv;
static int dbuf_fd;
static uint8_t *sys;	      /* NW source slots, then NR read-back slots */
static uint8_t *bar;	      /* the GPU's BAR2 bytes (p2p_mem_ptr) */
static uint8_t canary[BAR_SZ];

/* Stream -> main: batches completed with a given phase word; stats. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static unsigned int done_phase, done_batches; /* under lock */
static unsigned long stats[NR_STATES][P2P_CE_PERM + 1]; /* under lock */
static atomic_ulong stream_failures;

static void stream_fail(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&stream_failures, 1) >= 20)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "[stream] ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---------------------------------------------------------------------- */
/* The stream                                                              */

struct desc {
	uint64_t src, dst, len;
	uint32_t idx, id;
	uint64_t bar_off; /* the BAR bytes it writes or reads */
	int from;	  /* a read-back: the write descriptor whose chunk it reads */
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static void pattern(uint8_t *p, uint64_t len, uint64_t seed)
{
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed * 0x9e3779b97f4a7c15ull + i);

		memcpy(p + i, &v, MIN(8, len - i));
	}
}

static bool all_bytes(const uint8_t *p, uint8_t v, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/*
 * Is @status allowed for a descriptor of state @st (see stream())?
 * @changed: the phase moved on while its batch ran.
 */
static bool status_allowed(enum state st, bool changed, uint32_t status)
{
	switch (st) {
	case LIVE:
		/* Nothing revoked while it ran: OK.  A revoke began meanwhile: OK or REVOKED. */
		return status == P2P_CE_OK || (changed && status == P2P_CE_REVOKED);
	case REVOKING:
		return status == P2P_CE_OK || status == P2P_CE_REVOKED;
	case REVOKED:
	case UNREVOKED:
		/* Queued after the revoke returned, done before the remap: dead (2.5). */
		return status == P2P_CE_REVOKED;
	case REMAPPING:
		/* Stale (REVOKED), unmapped (FAULT), or already mapped again (OK). */
		return status == P2P_CE_OK || status == P2P_CE_REVOKED || status == P2P_CE_FAULT;
	default:
		return false;
	}
}

static void *stream(void *arg)
{
	uint8_t *model = malloc(DB_LEN); /* what the dma-buf part of the BAR must hold */
	uint32_t seq = 0;

	(void)arg;
	if (!model) {
		stream_fail("out of memory");
		return NULL;
	}
	memcpy(model, bar + DB_OFF, DB_LEN);
	while (!atomic_load(&stop)) {
		unsigned int ph = atomic_load(&phase), after;
		enum state st = ph & 7;
		unsigned long counts[P2P_CE_PERM + 1] = { 0 };
		struct desc d[NB];

		for (int i = 0; i < NB; i++) {
			struct desc *x = &d[i];

			x->id = ++seq;
			if (i < NW) {
				/* System memory -> BAR: fresh bytes, sub-page offset and length. */
				uint64_t chunk = (seq * 5 + (uint32_t)i) % NCHUNK;

				x->len = 20 * KiB + (seq % 11) * 3999;
				x->bar_off = DB_OFF + chunk * CHUNK + (seq * 61) % 97;
				x->src = IOVA_SYS + (uint64_t)i * SLOT;
				x->dst = IOVA_GPU + (x->bar_off - DB_OFF);
				x->from = -1;
				pattern(sys + (uint64_t)i * SLOT, x->len, seq);
			} else {
				/* BAR -> system memory: read back a chunk this batch wrote. */
				int k = i - NW;
				uint8_t *slot = sys + (uint64_t)i * SLOT;

				x->from = k;
				x->len = d[k].len;
				x->bar_off = d[k].bar_off;
				x->src = d[k].dst;
				x->dst = IOVA_SYS + (uint64_t)i * SLOT;
				memset(slot, (uint8_t)seq | 1, x->len);
			}
			x->idx = ce_drv_queue(&drv, x->src, x->dst, x->len,
					      i == NB - 1 ? P2P_CE_DESC_IRQ : 0, x->id);
		}
		if (ce_drv_kick(&drv) || ce_drv_wait(&drv, d[NB - 1].idx)) {
			stream_fail("kick/wait failed");
			break;
		}
		after = atomic_load(&phase);
		/*
		 * Phases only move forward and the main thread waits for two
		 * batches of each new one, so a batch spans at most the rest of
		 * a round.  One queued once the revoke had returned but still
		 * running when the remap began may see the new mapping: judge it
		 * as queued during the remap.
		 */
		if ((st == REVOKED || st == UNREVOKED) && (after & 7) != REVOKED &&
		    (after & 7) != UNREVOKED)
			st = REMAPPING;

		for (int i = 0; i < NB; i++) {
			const struct desc *x = &d[i];
			const struct p2p_ce_compl *c = ce_drv_compl(&drv, x->idx);
			uint8_t *slot = sys + (uint64_t)i * SLOT;

			if (c->id != x->id || c->status > P2P_CE_PERM) {
				stream_fail("descriptor %u: completion id %u status %u", x->id, c->id,
					    c->status);
				continue;
			}
			counts[c->status]++;
			if (!status_allowed(st, after != ph, c->status))
				stream_fail("descriptor %u (%s, %s): %s", x->id, state_name[st],
					    i < NW ? "write" : "read", p2p_ce_status_name(c->status));
			if (c->status == P2P_CE_OK) {
				if (c->bytes != x->len)
					stream_fail("descriptor %u: OK with %llu of %llu bytes", x->id,
						    (unsigned long long)c->bytes,
						    (unsigned long long)x->len);
				if (i < NW)
					memcpy(model + x->bar_off - DB_OFF, slot, x->len);
				else if (memcmp(slot, model + x->bar_off - DB_OFF, x->len))
					stream_fail("descriptor %u: read back wrong bytes", x->id);
			} else {
				/* Each copy is one translation run: it happened whole or not at all. */
				if (c->bytes)
					stream_fail("descriptor %u: %s after %llu bytes", x->id,
						    p2p_ce_status_name(c->status),
						    (unsigned long long)c->bytes);
				if (i >= NW && !all_bytes(slot, (uint8_t)x->id | 1, x->len))
					stream_fail("descriptor %u: failed read wrote memory", x->id);
			}
		}
		/* Every chunk it aimed at holds what the OK copies put there, no more. */
		for (int i = 0; i < NW; i++) {
			uint64_t o = d[i].bar_off - (d[i].bar_off % CHUNK);

			if (memcmp(bar + o, model + o - DB_OFF, CHUNK))
				stream_fail("descriptor %u (%s): BAR chunk %#llx differs from the model",
					    d[i].id, state_name[st], (unsigned long long)o);
		}

		pthread_mutex_lock(&lock);
		if (done_phase != ph) {
			done_phase = ph;
			done_batches = 0;
		}
		done_batches++;
		for (int s = 0; s <= P2P_CE_PERM; s++)
			stats[st][s] += counts[s];
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
	}
	free(model);
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* The revoker                                                             */

static unsigned int gen;

static unsigned int set_phase(enum state st)
{
	unsigned int ph = (++gen << 3) | st;

	atomic_store(&phase, ph);
	return ph;
}

/*
 * Wait until the stream has completed @n batches queued in phase @ph.  The
 * deadline only turns a hang into a failure; it asserts nothing about speed.
 */
static void wait_batches(unsigned int ph, unsigned int n)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 60;
	pthread_mutex_lock(&lock);
	while (done_phase != ph || done_batches < n) {
		if (pthread_cond_timedwait(&cond, &lock, &dl) == ETIMEDOUT) {
			fprintf(stderr, "[%s] stream stuck (phase %#x, %u batches)\n", t_current,
				done_phase, done_batches);
			exit(T_EXIT_FAIL);
		}
	}
	pthread_mutex_unlock(&lock);
}

static void check_canary(const char *when, int round)
{
	if (!memcmp(canary, bar, BAR_SZ))
		return;
	for (uint64_t i = 0; i < BAR_SZ; i++) {
		if (canary[i] != bar[i]) {
			fprintf(stderr, "round %d: %s: BAR byte %#llx changed after the revoke\n",
				round, when, (unsigned long long)i);
			break;
		}
	}
	t_failures++;
}

enum trigger { T_MEM, T_FLR, T_RESET, T_D3, NR_TRIGGERS };
static const char *const trigger_name[] = { "COMMAND.MEM", "FLR", "VFIO_DEVICE_RESET",
					    "D3hot" };

static void round_trip(int round)
{
	enum trigger how = (enum trigger)(round % NR_TRIGGERS);
	unsigned int ph;
	uint64_t iova;

	t_section(trigger_name[how]);
	/* The stream works: two whole batches ran with nothing revoked (all OK). */
	wait_batches(atomic_load(&phase), 2);

	set_phase(REVOKING);
	switch (how) {
	case T_MEM:
		CHECK_OK(t_mem_enable(gpu.vdev, false));
		break;
	case T_FLR:
		CHECK_OK(t_flr(gpu.vdev)); /* revokes and un-revokes in one call */
		break;
	case T_RESET:
		CHECK_OK(p2p_vfio_device_reset(gpu.vdev)); /* likewise */
		break;
	case T_D3:
		CHECK_OK(t_set_power(gpu.vdev, 3));
		break;
	default:
		break;
	}
	/* The revoke returned: from here on nothing may reach the BAR. */
	ph = set_phase(REVOKED);
	memcpy(canary, bar, BAR_SZ);
	wait_batches(ph, 2);
	check_canary("revoked", round);

	if (how == T_MEM || how == T_D3) {
		/* A revoked dma-buf cannot be mapped (2.5: ENODEV). */
		iova = IOVA_SPARE;
		CHECK_ERR(p2p_ioas_map_file(ioas, dbuf_fd, 0, DB_LEN, &iova,
					    RW | P2P_IOAS_MAP_FIXED_IOVA),
			  -ENODEV);
		/* Un-revoke is passive (7.3): the stale area stays dead. */
		if (how == T_MEM)
			CHECK_OK(t_mem_enable(gpu.vdev, true));
		else
			CHECK_OK(t_set_power(gpu.vdev, 0));
		ph = set_phase(UNREVOKED);
		wait_batches(ph, 1);
		check_canary("un-revoked, stale area", round);
	}

	/* The VMM protocol: unmap the stale area, map it again at the same IOVA. */
	set_phase(REMAPPING);
	CHECK_OK(p2p_ioas_unmap(ioas, IOVA_GPU, DB_LEN, NULL));
	iova = IOVA_GPU;
	CHECK_OK(p2p_ioas_map_file(ioas, dbuf_fd, 0, DB_LEN, &iova,
				   RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK(iova == IOVA_GPU);
	set_phase(LIVE);
}

int main(void)
{
	struct vfio_region_dma_range r = { DB_OFF, DB_LEN };
	unsigned int areas, ph;
	pthread_t thr;
	uint64_t iova;
	uint32_t id;

	t_begin();
	t_section("setup");
	CHECK_OK(t_dev_create(&gpu, "0000:01:00.0", BAR_SZ, 0, NULL, 1));
	CHECK_OK(p2p_copy_engine_create("0000:02:00.0", NULL, 2, &cepci));
	CHECK_OK(p2p_vfio_device_open(cepci, &cev));
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK_OK(p2p_vfio_device_attach_ioas(cev, ioas));
	CHECK_OK(ce_drv_init(&drv, cev, ioas, RING));
	sys = aligned_alloc(PAGE, SYS_SZ);
	CHECK(sys != NULL);
	if (t_failures)
		return t_end();
	bar = t_bar_ptr(gpu.pci, BAR, 0);
	pattern(bar, BAR_SZ, 0xba5eba11);
	memset(sys, 0, SYS_SZ);
	dbuf_fd = t_dmabuf(gpu.vdev, BAR, &r, 1);
	CHECK(dbuf_fd >= 0);
	iova = IOVA_SYS;
	CHECK_OK(p2p_ioas_map(ioas, sys, SYS_SZ, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	iova = IOVA_GPU;
	CHECK_OK(p2p_ioas_map_file(ioas, dbuf_fd, 0, DB_LEN, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	if (t_failures)
		return t_end();
	areas = p2p_ioas_nr_areas(ioas);

	set_phase(LIVE);
	CHECK(pthread_create(&thr, NULL, stream, NULL) == 0);
	for (int round = 0; round < ROUNDS; round++) {
		round_trip(round);
		/* Remapping replaced the area; nothing leaked. */
		CHECK(p2p_ioas_nr_areas(ioas) == areas);
	}
	t_section("end");
	/* The stream works after the last remap, then stops. */
	ph = atomic_load(&phase);
	wait_batches(ph, 2);
	atomic_store(&stop, true);
	pthread_join(thr, NULL);

	/* Every state was exercised, with the outcomes it must have. */
	printf("%-10s %8s %8s %8s\n", "queued in", "ok", "revoked", "fault");
	for (int s = 0; s < NR_STATES; s++)
		printf("%-10s %8lu %8lu %8lu\n", state_name[s], stats[s][P2P_CE_OK],
		       stats[s][P2P_CE_REVOKED], stats[s][P2P_CE_FAULT]);
	CHECK(stats[LIVE][P2P_CE_OK] >= (ROUNDS + 1) * 2 * NB);
	CHECK(stats[REVOKED][P2P_CE_REVOKED] >= ROUNDS * 2 * NB);
	CHECK(stats[REVOKED][P2P_CE_OK] == 0 && stats[UNREVOKED][P2P_CE_OK] == 0);
	CHECK(stats[UNREVOKED][P2P_CE_REVOKED] >= ROUNDS / 2 * NB);
	if (atomic_load(&stream_failures)) {
		fprintf(stderr, "%lu stream check(s) failed\n", atomic_load(&stream_failures));
		t_failures += (int)atomic_load(&stream_failures);
	}

	t_section("teardown");
	ce_drv_fini(&drv);
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, NULL));
	p2p_vfio_device_close(cev);
	p2p_pci_dev_put(cepci);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ictx);
	CHECK_OK(p2p_close(dbuf_fd));
	free(sys);
	t_dev_destroy(&gpu);
	return t_end();
}
