// SPDX-License-Identifier: MIT
/*
 * Lock-free IOVA translation under fire (issue 10; kernel-semantics 2.4,
 * 2.5): translator threads hammer p2p_ioas_dma_begin() / dma_end() on
 * random IOVAs while the main thread unmaps and remaps areas of process
 * memory and of a dma-buf, and revokes and restores the dma-buf.  Each
 * slot publishes its state (generation and phase) once the call that
 * changed it returned, and the translators check, while they hold the
 * segment of every successful translation (twice, across a reschedule now
 * and then):
 *   - its slot is not "unmapped" (the unmap returned, the next map has not
 *     begun): no translation succeeds into an area after its unmap
 *     returned, and no unmap returns while a segment of it is held;
 *   - the dma-buf is not "revoked" (the revoke returned, new areas not yet
 *     mapped): the same for revocation;
 *   - the segment is where the slot's memory is.
 * The memory canary: a translator writes its tag into every segment it
 * holds; after each unmap or revoke the main thread fills the memory with
 * poison, yields, and checks the poison is intact (and under TSan the two
 * plain writes race unless the unmap truly waited).  Slots include an
 * IOVA above 2^48 and a half-page area, so the locked fallback of the
 * walk is exercised too.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ull
#define BAR 2
#define MSLOTS 48 /* process memory, including the two special ones */
#define DSLOTS 16 /* one page of the dma-buf each */
#define NSLOTS (MSLOTS + DSLOTS)
#define NTHREADS 2
#define RW (P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE)
#define FIXED P2P_IOAS_MAP_FIXED_IOVA
#define BASE 0x40000000ull
#define HIGH (1ull << 50)
#define TAG 0xa5
#define POISON 0x5a

/* Slot and dma-buf states: generation << 2 | phase. */
enum { PH_MAPPED, PH_UNMAPPED, PH_MAPPING };
#define ST(gen, ph) ((gen) << 2 | (ph))
#define ST_PH(s) ((s) & 3)
#define ST_GEN(s) ((s) >> 2)
/* The dma-buf: generation << 1 | revoked. */
#define RV(gen, rev) ((gen) << 1 | (rev))

struct slot {
	uint64_t iova, len;
	uint8_t *host; /* what iova translates to */
	bool dmabuf;
	atomic_uint state;
};

static struct t_dev dev;
static struct p2p_iommufd *ictx;
static struct p2p_ioas *ioas;
static struct slot slots[NSLOTS];
static uint8_t *mem;
static int dbfd = -1;
static atomic_uint rev;
static atomic_bool stop;
static atomic_ulong violations, ok_count, enoent_count, enodev_count, errors;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void violation(const char *what, unsigned int i)
{
	if (atomic_fetch_add(&violations, 1) < 5)
		fprintf(stderr, "VIOLATION slot %u (%s): %s\n", i,
			slots[i].dmabuf ? "dma-buf" : "memory", what);
}

/*
 * The device writes its tag: byte atomics, as two devices may write the
 * same memory at once; the main thread's poison is plain, so under TSan
 * the two race unless the unmap or revoke truly waited for this DMA.
 */
static void canary(uint8_t *p)
{
	for (int b = 0; b < 8; b++)
		__atomic_store_n(&p[b], TAG, __ATOMIC_RELAXED);
}

static int map_slot(struct slot *s)
{
	uint64_t iova = s->iova;

	if (s->dmabuf)
		return p2p_ioas_map_file(ioas, dbfd, (uint64_t)(s - slots - MSLOTS) * PAGE, PAGE,
					 &iova, RW | FIXED);
	return p2p_ioas_map(ioas, s->host, s->len, &iova, RW | FIXED);
}

static void *translator(void *arg)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
	unsigned int n = 0;

	while (!atomic_load(&stop)) {
		unsigned int i = (unsigned int)(rnd(&seed) % NSLOTS);
		struct slot *s = &slots[i];
		uint64_t off = rnd(&seed) % (s->len - 8);
		unsigned int s1 = atomic_load(&s->state), r1 = atomic_load(&rev), s2, r2, s3, r3;

		struct p2p_dma_seg seg;
		int ret = p2p_ioas_dma_begin(ioas, s->iova + off, 8, P2P_DMA_WRITE, &seg);

		if (ret == -ENOENT) {
			atomic_fetch_add(&enoent_count, 1);
			continue;
		}
		if (ret == -ENODEV && s->dmabuf) {
			atomic_fetch_add(&enodev_count, 1);
			continue;
		}
		if (ret) {
			atomic_fetch_add(&errors, 1);
			continue;
		}
		/*
		 * While we hold the segment its area lives: the slot is mapped
		 * (or being mapped anew), never "unmapped" (its unmap returned),
		 * and the dma-buf is not "revoked" (its revoke returned).
		 */
		s2 = atomic_load(&s->state);
		r2 = atomic_load(&rev);
		if (ST_PH(s2) == PH_UNMAPPED)
			violation(ST_PH(s1) == PH_UNMAPPED ? "translated after its unmap returned" :
				  "unmap returned while DMA was in flight", i);
		if (s->dmabuf && (r2 & 1))
			violation((r1 & 1) ? "translated after the revoke returned" :
				  "revoke returned while DMA was in flight", i);
		if (seg.host != s->host + off || seg.len != 8)
			violation("segment is not the slot's memory", i);
		else
			canary(seg.host);
		if (!(++n % 16))
			sched_yield(); /* hold it across a reschedule now and then */
		s3 = atomic_load(&s->state);
		r3 = atomic_load(&rev);
		if (ST_PH(s3) == PH_UNMAPPED)
			violation("unmap returned while DMA was in flight", i);
		if (s->dmabuf && (r3 & 1))
			violation("revoke returned while DMA was in flight", i);
		p2p_ioas_dma_end(&seg);
		atomic_fetch_add(&ok_count, 1);
	}
	return NULL;
}

/* After an unmap or revoke returned: nothing may write the memory any more. */
static void poison_check(struct slot *s, uint64_t len, unsigned int i)
{
	memset(s->host, POISON, len);
	for (int k = 0; k < 3; k++)
		sched_yield();
	for (uint64_t b = 0; b < len; b++) {
		if (s->host[b] != POISON) {
			violation("memory written after unmap/revoke returned", i);
			break;
		}
	}
}

static void remap(unsigned int i)
{
	struct slot *s = &slots[i];
	unsigned int st = atomic_load(&s->state);
	int ret;

	ret = p2p_ioas_unmap(ioas, s->iova, s->len, NULL);
	/* Revoked dma-buf slots were unmapped with the revoke below. */
	if (ret == -ENOENT && s->dmabuf && ST_PH(st) == PH_UNMAPPED)
		return;
	CHECK_OK(ret);
	atomic_store(&s->state, ST(ST_GEN(st), PH_UNMAPPED));
	poison_check(s, s->len, i);
	atomic_store(&s->state, ST(ST_GEN(st) + 1, PH_MAPPING));
	CHECK_OK(map_slot(s));
	atomic_store(&s->state, ST(ST_GEN(st) + 1, PH_MAPPED));
}

/* Revoke the dma-buf, check it, unmap its stale areas, restore, remap. */
static void revoke_cycle(void)
{
	unsigned int r = atomic_load(&rev);

	CHECK_OK(t_mem_enable(dev.vdev, false));
	atomic_store(&rev, RV(r >> 1, 1u));
	for (unsigned int i = MSLOTS; i < NSLOTS; i++)
		poison_check(&slots[i], PAGE, i);
	for (unsigned int i = MSLOTS; i < NSLOTS; i++) {
		unsigned int st = atomic_load(&slots[i].state);

		CHECK_OK(p2p_ioas_unmap(ioas, slots[i].iova, PAGE, NULL));
		atomic_store(&slots[i].state, ST(ST_GEN(st), PH_UNMAPPED));
	}
	atomic_store(&rev, RV((r >> 1) + 1, 0u));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	for (unsigned int i = MSLOTS; i < NSLOTS; i++) {
		unsigned int st = atomic_load(&slots[i].state);

		atomic_store(&slots[i].state, ST(ST_GEN(st) + 1, PH_MAPPING));
		CHECK_OK(map_slot(&slots[i]));
		atomic_store(&slots[i].state, ST(ST_GEN(st) + 1, PH_MAPPED));
	}
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	pthread_t th[NTHREADS];
	uint64_t seed = 42;
	unsigned int remaps = 0, revokes = 0;
	double t0;
	uint32_t id;

	t_begin();
	t_dev_create_or_skip(&dev, "0000:3a:00.0", DSLOTS * PAGE, 0);
	CHECK_OK(p2p_iommufd_open(&ictx));
	id = t_ioas_new(ictx, &ioas);
	mem = mmap(NULL, MSLOTS * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED);
	dbfd = t_dmabuf_range(dev.vdev, BAR, 0, DSLOTS * PAGE);
	CHECK(dbfd >= 0);

	t_section("slots: memory (one above 2^48, one half page), dma-buf pages");
	for (unsigned int i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[i];

		s->dmabuf = i >= MSLOTS;
		s->iova = BASE + (uint64_t)i * 2 * PAGE;
		s->len = PAGE;
		s->host = s->dmabuf ? t_bar_ptr(dev.pci, BAR, (i - MSLOTS) * PAGE) : mem + i * PAGE;
		if (i == 0) {
			s->iova = HIGH; /* past the page table: the locked search */
		} else if (i == 1) {
			s->iova += PAGE / 2; /* a page shared with nothing, partly covered */
			s->host += PAGE / 2;
			s->len = PAGE / 2;
		}
		atomic_init(&s->state, ST(0u, PH_MAPPED));
		CHECK_OK(map_slot(s));
	}
	atomic_init(&rev, RV(0u, 0u));
	CHECK(p2p_ioas_nr_areas(ioas) == NSLOTS);

	t_section("translate from threads while unmapping, remapping and revoking");
	for (uintptr_t k = 0; k < NTHREADS; k++)
		CHECK_OK(pthread_create(&th[k], NULL, translator, (void *)k));
	t0 = now_s();
	while (now_s() - t0 < 1.5 && remaps < 20000) {
		if (remaps % 64 == 63) {
			revoke_cycle();
			revokes++;
		}
		remap((unsigned int)(rnd(&seed) % NSLOTS));
		remaps++;
	}
	atomic_store(&stop, true);
	for (int k = 0; k < NTHREADS; k++)
		pthread_join(th[k], NULL);
	printf("%u remaps, %u revokes; translations: %lu ok, %lu ENOENT, %lu ENODEV, %lu other errors, %lu violations\n",
	       remaps, revokes, atomic_load(&ok_count), atomic_load(&enoent_count),
	       atomic_load(&enodev_count), atomic_load(&errors), atomic_load(&violations));
	CHECK(atomic_load(&violations) == 0);
	CHECK(atomic_load(&errors) == 0);
	CHECK(atomic_load(&ok_count) > 0 && atomic_load(&enoent_count) > 0);
	CHECK(revokes > 0 && atomic_load(&enodev_count) + atomic_load(&enoent_count) > 0);

	t_section("quiet: every slot translates to its memory, then everything unmaps");
	for (unsigned int i = 0; i < NSLOTS; i++) {
		struct p2p_dma_seg seg;

		CHECK_OK(p2p_ioas_dma_begin(ioas, slots[i].iova, slots[i].len, P2P_DMA_READ, &seg));
		CHECK(seg.host == slots[i].host && seg.len == slots[i].len);
		p2p_ioas_dma_end(&seg);
	}
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, NULL));
	CHECK(p2p_ioas_nr_areas(ioas) == 0);
	CHECK_ERR(p2p_ioas_dma_begin(ioas, BASE + 2 * 2 * PAGE, 1, P2P_DMA_READ,
				     &(struct p2p_dma_seg){ 0 }), -ENOENT);

	p2p_close(dbfd);
	t_ioas_del(ictx, id, ioas);
	p2p_iommufd_close(ictx);
	t_dev_destroy(&dev);
	munmap(mem, MSLOTS * PAGE);
	return t_end();
}
