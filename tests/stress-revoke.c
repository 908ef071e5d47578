// SPDX-License-Identifier: MIT
/*
 * Threaded revoke stress (kernel-semantics 1.6, 1.7, 1.8, 3.2, 7.1-7.5).
 *
 * Toucher threads read and write bytes through a multi-range dma-buf
 * mapping and through a BAR mmap while the main thread revokes and
 * restores the device's dma-bufs with every trigger of 1.7: COMMAND.MEM
 * off/on, D3hot/D0, FLR, VFIO_DEVICE_RESET and low-power entry/exit.  An
 * importer thread attaches, maps, unmaps and detaches in a loop, and a
 * churn thread creates and removes CPU mappings (dma-buf and BAR), so
 * creation races with revocation.
 *
 * What it proves:
 * - No access succeeds while revoked.  The revoker bumps the atomic
 *   `phase` after a revoke has returned and again before an un-revoke
 *   starts, so an odd phase means "revoked".  An access that read the same
 *   odd phase before (p1) and after (p2) it must have faulted; the same for
 *   an attach, a map or a new mapping, which must have failed.  Violations
 *   are counted and must be 0.
 * - An importer's map does not survive a revoke: once the buffer is marked
 *   revoked (checked under resv) or a revoke has returned, the invalidate
 *   callback must have unmapped it (0.3).
 * - No data is lost.  Each toucher owns one byte of every BAR page, keeps
 *   the last value it wrote successfully, and every successful read
 *   (through either mapping, any alias) must return it; at the end every
 *   byte is checked again through the mappings and through p2p_mem_ptr().
 *   A write probe stores exactly once, so "faulted" means "not written".
 *
 * Round counts are fixed; nothing is asserted on timing.  A revoked phase
 * lasts until every toucher has observed it, so every round is checked.
 *
 * ThreadSanitizer: faults are caught by the harness's SIGBUS handler, which
 * siglongjmp()s back into the probe.  TSan delivers SIGBUS synchronously
 * and intercepts sigsetjmp/siglongjmp (it unwinds its shadow stack and
 * signal state to the jump buffer), so the same probes are used under TSan
 * and the check stays exactly as strict; the mappings' bytes are touched
 * only by their owner thread, and by the main thread after the joins.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ul
#define BAR 2
#define BAR_PAGES 64ul
#define BAR_SIZE (BAR_PAGES * PAGE)
#define NR_TOUCHERS 3
#define ROUNDS 900
#define CHURN_BYTE 100 /* a byte of each page nobody writes */

static struct t_dev dev;

/* Unsorted, overlapping and aliasing ranges (1.3). */
static const struct vfio_region_dma_range ranges[] = {
	{ .offset = 32 * PAGE, .length = 8 * PAGE },
	{ .offset = 0, .length = 8 * PAGE },
	{ .offset = 4 * PAGE, .length = 8 * PAGE }, /* overlaps the previous one */
	{ .offset = 48 * PAGE, .length = 16 * PAGE },
	{ .offset = 0, .length = 4 * PAGE }, /* aliases the start of range 1 */
};
#define NR_RANGES (sizeof(ranges) / sizeof(ranges[0]))
#define DMABUF_PAGES 44ul

static struct p2p_dmabuf *dbuf;
static volatile uint8_t *dma_va; /* the multi-range dma-buf, whole */
static volatile uint8_t *bar_va; /* BAR mmap through the device fd, whole BAR */

static atomic_uint phase; /* odd: every dma-buf of the device is revoked */
static atomic_bool done;

struct toucher {
	pthread_t thr;
	unsigned int id;
	uint64_t rng;
	atomic_uint seen;	 /* last odd phase this thread observed */
	atomic_uint seen_ok;	 /* last even phase it accessed successfully in */
	uint8_t last[BAR_PAGES]; /* last value written to its byte of each BAR page */
	unsigned long ok, faults, checked, violations, lost, final_bad, not_sigbus;
};

static struct toucher touchers[NR_TOUCHERS];

struct counters {
	unsigned long ok, refused, checked, violations, errors;
};

static struct counters importer, churn;
static atomic_uint churn_seen_ok; /* last even phase churn mapped the dma-buf in */

static uint32_t rnd(uint64_t *s, uint32_t n)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s % n);
}

/* The model: BAR page behind dma-buf page @dp (ranges concatenated in order). */
static unsigned int bar_page_of(unsigned int dp)
{
	uint64_t off = (uint64_t)dp * PAGE;

	for (unsigned int i = 0; i < NR_RANGES; i++) {
		if (off < ranges[i].length)
			return (unsigned int)((ranges[i].offset + off) / PAGE);
		off -= ranges[i].length;
	}
	return UINT32_MAX;
}

static unsigned int phase_load(void)
{
	return atomic_load(&phase);
}

/* After the access, before reading the phase again. */
static void access_fence(void)
{
	atomic_thread_fence(memory_order_seq_cst);
}

/* True when [p1, p2] is one revoked phase: the operation had to fail. */
static bool revoked_throughout(unsigned int p1, unsigned int p2)
{
	return p1 == p2 && (p1 & 1);
}

/*
 * Count in @c one attempt at something refused (-ENODEV) while revoked,
 * made between phases @p1 and @p2, that returned @ret; returns @ret.
 */
static int count_attempt(struct counters *c, unsigned int p1, unsigned int p2, int ret)
{
	if (revoked_throughout(p1, p2)) {
		c->checked++;
		c->violations += !ret;
	}
	if (ret) {
		c->refused++;
		c->errors += ret != -ENODEV;
	}
	return ret;
}

static void *toucher_fn(void *arg)
{
	struct toucher *t = arg;
	unsigned long n = 0;

	while (!atomic_load(&done)) {
		bool use_bar = rnd(&t->rng, 2), write = rnd(&t->rng, 2);
		unsigned int page, bp;
		volatile uint8_t *p;
		unsigned int p1, p2;
		uint8_t v = (uint8_t)(++n * 7 + t->id), got = 0;
		bool faulted;
		int sig;

		if (use_bar) {
			bp = page = rnd(&t->rng, BAR_PAGES);
			p = bar_va + (uint64_t)page * PAGE + t->id;
		} else {
			page = rnd(&t->rng, DMABUF_PAGES);
			bp = bar_page_of(page);
			p = dma_va + (uint64_t)page * PAGE + t->id;
		}
		if (!(n % 16))
			sched_yield(); /* 6 threads, 2 vCPUs: let the others in */
		p1 = phase_load();
		sig = t_access(p, write, v, &got);
		access_fence();
		p2 = phase_load();
		faulted = sig != 0;
		t->not_sigbus += faulted && sig != SIGBUS; /* revocation is SIGBUS (3.2) */

		if (revoked_throughout(p1, p2)) {
			t->checked++;
			if (!faulted)
				t->violations++;
			atomic_store(&t->seen, p1);
		}
		if (faulted) {
			t->faults++;
			continue;
		}
		t->ok++;
		if (p1 == p2 && !(p1 & 1))
			atomic_store(&t->seen_ok, p1);
		if (write)
			t->last[bp] = v;
		else if (got != t->last[bp])
			t->lost++;
	}

	/* The revoker is done and left memory enabled: everything must work. */
	for (unsigned int dp = 0; dp < DMABUF_PAGES; dp++) {
		uint8_t got = 0;

		if (t_load_faults(dma_va + (uint64_t)dp * PAGE + t->id, &got) ||
		    got != t->last[bar_page_of(dp)])
			t->final_bad++;
	}
	for (unsigned int bp = 0; bp < BAR_PAGES; bp++) {
		uint8_t got = 0;

		if (t_load_faults(bar_va + (uint64_t)bp * PAGE + t->id, &got) ||
		    got != t->last[bp])
			t->final_bad++;
	}
	return NULL;
}

/* One map of the attachment, checked; resv is taken here. */
static int importer_map(struct t_importer *imp)
{
	unsigned int p1, p2;
	int ret;

	p1 = phase_load();
	p2p_dmabuf_resv_lock(dbuf);
	ret = p2p_attachment_map(imp->attach, &imp->sgt);
	if (!ret) {
		/* imp->sgt belongs to the invalidate callback too: read it under resv. */
		importer.errors += imp->sgt->nents != NR_RANGES;
		for (unsigned int i = 0; i < imp->sgt->nents && i < NR_RANGES; i++)
			importer.errors += imp->sgt->ents[i].offset != ranges[i].offset ||
					   imp->sgt->ents[i].length != ranges[i].length;
	}
	p2p_dmabuf_resv_unlock(dbuf);
	p2 = phase_load();
	if (count_attempt(&importer, p1, p2, ret))
		return ret;
	importer.ok++;

	/*
	 * Hold the map a little.  A revoke that marked the buffer since (its
	 * resv section: status, then invalidate) or that returned since (an
	 * odd phase after p2) must have invalidated it: the callback unmapped
	 * it (0.3).
	 */
	sched_yield();
	p2p_dmabuf_resv_lock(dbuf);
	p1 = phase_load();
	if (p1 >= p2 + 1 + (p2 & 1) || p2p_dmabuf_status(dbuf) != P2P_DMABUF_OK) {
		importer.checked++;
		importer.violations += imp->sgt != NULL;
	}
	if (imp->sgt)
		p2p_attachment_unmap(imp->attach, imp->sgt);
	imp->sgt = NULL;
	p2p_dmabuf_resv_unlock(dbuf);
	return 0;
}

/*
 * An importer: attach (refused while revoked), then map and unmap a few
 * times on the same attachment, across revokes, then detach (1.5, 0.3).
 */
static void *importer_fn(void *arg)
{
	(void)arg;
	while (!atomic_load(&done)) {
		struct t_importer imp;
		unsigned int p1, p2;
		int ret;

		p1 = phase_load();
		ret = t_importer_attach(&imp, dbuf, P2P_ATTACH_PEER2PEER, true);
		p2 = phase_load();
		if (count_attempt(&importer, p1, p2, ret)) {
			sched_yield();
			continue;
		}
		for (int k = 0; k < 8 && !atomic_load(&done); k++)
			if (importer_map(&imp))
				sched_yield();
		t_importer_detach(&imp);
	}
	return NULL;
}

/* One access with the phase protocol; nobody writes CHURN_BYTE, so it reads 0. */
static void churn_touch(volatile uint8_t *p)
{
	unsigned int p1, p2;
	uint8_t got = 0xff;
	bool faulted;
	int sig;

	p1 = phase_load();
	sig = t_access(p + CHURN_BYTE, false, 0, &got);
	access_fence();
	p2 = phase_load();
	faulted = sig != 0;
	churn.errors += faulted && sig != SIGBUS;
	if (revoked_throughout(p1, p2)) {
		churn.checked++;
		churn.violations += !faulted;
	}
	if (!faulted)
		churn.errors += got != 0;
}

/* Create and remove CPU mappings while revokes happen (3.1, 3.3). */
static void *churn_fn(void *arg)
{
	uint64_t rng = 0x1234567;

	(void)arg;
	while (!atomic_load(&done)) {
		unsigned int p1, p2, pg = rnd(&rng, 4);
		void *va;
		int ret;

		/* mmap of the dma-buf fd: ENODEV while revoked (3.3). */
		p1 = phase_load();
		ret = p2p_dmabuf_mmap(dbuf, NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
				      pg * 8 * PAGE, &va);
		p2 = phase_load();
		if (count_attempt(&churn, p1, p2, ret)) {
			sched_yield();
		} else {
			churn.ok++;
			if (p1 == p2 && !(p1 & 1))
				atomic_store(&churn_seen_ok, p1);
			churn_touch(va);
			churn_touch((uint8_t *)va + 7 * PAGE);
			churn.errors += p2p_munmap(va, 8 * PAGE) != 0;
		}

		/* A BAR mmap is made even while revoked, and then faults (3.1). */
		ret = p2p_vfio_device_mmap(dev.vdev, NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
					   MAP_SHARED, P2P_VFIO_REGION_OFFSET(BAR) + pg * 4 * PAGE,
					   &va);
		if (ret) {
			churn.errors++;
			continue;
		}
		churn_touch(va);
		churn_touch((uint8_t *)va + 3 * PAGE);
		churn.errors += p2p_munmap(va, 4 * PAGE) != 0;
	}
	return NULL;
}

static void phase_bump(void)
{
	atomic_fetch_add(&phase, 1);
}

/*
 * Keep the revoked phase until every toucher has seen it, so that every
 * round is checked.  Touchers never block, and record any access made
 * within the phase (a violation too), so this always ends.
 */
static void hold_revoked(void)
{
	unsigned int p = phase_load();

	for (unsigned int i = 0; i < NR_TOUCHERS; i++)
		while (atomic_load(&touchers[i].seen) != p)
			sched_yield();
}

/*
 * After a restore, give the touchers and the churn thread a chance to
 * succeed before the next revoke, so creation races with revocation in
 * both directions.  Bounded: this is coverage, nothing is asserted on it.
 */
static void hold_restored(void)
{
	static bool give_up; /* after one miss: a broken un-revoke must not take ages */
	unsigned int p = phase_load(), i = 0, spins = 0;

	while (!give_up && i <= NR_TOUCHERS) {
		if (i < NR_TOUCHERS ? atomic_load(&touchers[i].seen_ok) == p
				    : atomic_load(&churn_seen_ok) == p)
			i++;
		else if (++spins < 5000)
			sched_yield();
		else
			give_up = true;
	}
}

static long low_power(bool entry)
{
	struct vfio_device_feature f = {
		.argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_SET | (entry ? VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
							  : VFIO_DEVICE_FEATURE_LOW_POWER_EXIT),
	};

	return p2p_vfio_device_ioctl(dev.vdev, VFIO_DEVICE_FEATURE, &f);
}

static long device_reset(void)
{
	return p2p_vfio_device_ioctl(dev.vdev, VFIO_DEVICE_RESET, NULL);
}

/*
 * One revoke/restore cycle.  @revoke leaves every dma-buf revoked, @restore
 * un-revokes them; the phase is odd only between the two.
 */
static void cycle(int (*revoke)(void), int (*restore)(void))
{
	CHECK_OK(revoke());
	phase_bump();
	hold_revoked();
	phase_bump();
	CHECK_OK(restore());
	hold_restored();
}

static int mem_off(void)
{
	return t_mem_enable(dev.vdev, false);
}

static int mem_on(void)
{
	return t_mem_enable(dev.vdev, true);
}

static int d3hot(void)
{
	return t_set_power(dev.vdev, 3);
}

static int d0(void)
{
	return t_set_power(dev.vdev, 0);
}

static int lp_entry(void)
{
	return (int)low_power(true);
}

static int lp_exit(void)
{
	return (int)low_power(false);
}

/* FLR / reset with memory disabled: the dma-bufs stay revoked after it (1.7 items 4, 5). */
static int mem_off_flr(void)
{
	int ret = mem_off();

	return ret ? ret : t_flr(dev.vdev);
}

static int mem_off_reset(void)
{
	int ret = mem_off();

	return ret ? ret : (int)device_reset();
}

/* Two stacked triggers: revoke is idempotent (1.6, 7.5). */
static int d3hot_mem_off(void)
{
	int ret = d3hot();

	return ret ? ret : mem_off();
}

static int d0_mem_on(void)
{
	int ret = d0();

	return ret ? ret : mem_on();
}

static void revoker(void)
{
	for (unsigned int r = 0; r < ROUNDS; r++) {
		switch (r % 6) {
		case 0: /* 1.7 item 1 */
			cycle(mem_off, mem_on);
			break;
		case 1: /* 1.7 item 2 */
			cycle(d3hot, d0);
			break;
		case 2: /* 1.7 item 4: FLR revokes and restores inside one write */
			CHECK_OK(t_flr(dev.vdev));
			cycle(mem_off_flr, mem_on);
			break;
		case 3: /* 1.7 item 5 */
			CHECK_OK(device_reset());
			cycle(mem_off_reset, mem_on);
			break;
		case 4: /* 1.7 item 3 */
			cycle(lp_entry, lp_exit);
			break;
		case 5:
			cycle(d3hot_mem_off, d0_mem_on);
			break;
		}
	}
}

int main(void)
{
	unsigned long checked = 0, faults = 0;
	pthread_t imp_thr, churn_thr;
	void *va;
	int fd;

	t_begin();
	t_dev_create_or_skip(&dev, "0000:03:00.0", BAR_SIZE, 3);
	t_require_uffd();

	fd = t_dmabuf(dev.vdev, BAR, ranges, NR_RANGES);
	CHECK(fd >= 0);
	CHECK_OK(p2p_dmabuf_get(fd, &dbuf));
	CHECK(p2p_dmabuf_size(dbuf) == DMABUF_PAGES * PAGE);
	CHECK_OK(p2p_dmabuf_mmap(dbuf, NULL, DMABUF_PAGES * PAGE, PROT_READ | PROT_WRITE,
				 MAP_SHARED, 0, &va));
	dma_va = va;
	CHECK_OK(p2p_vfio_device_mmap(dev.vdev, NULL, BAR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(BAR), &va));
	bar_va = va;
	if (t_failures)
		return t_end();

	for (unsigned int i = 0; i < NR_TOUCHERS; i++) {
		touchers[i].id = i;
		touchers[i].rng = 0x9e3779b97f4a7c15ull * (i + 1);
		CHECK_OK(-pthread_create(&touchers[i].thr, NULL, toucher_fn, &touchers[i]));
	}
	CHECK_OK(-pthread_create(&imp_thr, NULL, importer_fn, NULL));
	CHECK_OK(-pthread_create(&churn_thr, NULL, churn_fn, NULL));

	revoker();

	atomic_store(&done, true);
	for (unsigned int i = 0; i < NR_TOUCHERS; i++)
		pthread_join(touchers[i].thr, NULL);
	pthread_join(imp_thr, NULL);
	pthread_join(churn_thr, NULL);

	t_section("results");
	CHECK(phase_load() == 2 * ROUNDS);
	for (unsigned int i = 0; i < NR_TOUCHERS; i++) {
		struct toucher *t = &touchers[i];

		printf("toucher %u: %lu ok, %lu faulted (%lu not SIGBUS), %lu checked while "
		       "revoked, %lu violations, %lu lost, %lu bad at the end\n",
		       i, t->ok, t->faults, t->not_sigbus, t->checked, t->violations, t->lost,
		       t->final_bad);
		CHECK(t->violations == 0);
		CHECK(t->not_sigbus == 0);
		CHECK(t->lost == 0);
		CHECK(t->final_bad == 0);
		checked += t->checked;
		faults += t->faults;
		/* The device's own view: the last value each toucher wrote. */
		for (unsigned int bp = 0; bp < BAR_PAGES; bp++)
			t->final_bad +=
				*t_bar_ptr(dev.pci, BAR, (uint64_t)bp * PAGE + i) != t->last[bp];
		CHECK(t->final_bad == 0);
	}
	printf("importer: %lu mapped, %lu refused, %lu checked, %lu violations, %lu errors\n",
	       importer.ok, importer.refused, importer.checked, importer.violations,
	       importer.errors);
	printf("churn: %lu mapped, %lu refused, %lu checked, %lu violations, %lu errors\n",
	       churn.ok, churn.refused, churn.checked, churn.violations, churn.errors);
	CHECK(importer.violations == 0 && importer.errors == 0);
	CHECK(churn.violations == 0 && churn.errors == 0);
	/* Every revoked phase was observed by every toucher. */
	CHECK(checked >= NR_TOUCHERS * ROUNDS && faults >= checked);

	/* Not revoked any more: the importer maps again (1.6 un-revoke is passive). */
	{
		struct t_importer imp;

		CHECK(p2p_dmabuf_status(dbuf) == P2P_DMABUF_OK);
		CHECK_OK(t_importer_attach(&imp, dbuf, P2P_ATTACH_PEER2PEER, true));
		CHECK_OK(t_importer_map(&imp));
		t_importer_detach(&imp);
		sched_yield();
	}

	CHECK_OK(p2p_munmap((void *)bar_va, BAR_SIZE));
	CHECK_OK(p2p_munmap((void *)dma_va, DMABUF_PAGES * PAGE));
	p2p_dmabuf_put(dbuf);
	CHECK_OK(p2p_close(fd));
	t_dev_destroy(&dev);
	return t_end();
}
