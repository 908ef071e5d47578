// SPDX-License-Identifier: MIT
/*
 * The copy engine (include/p2pbuf/devices.h), driven as a VFIO userspace
 * driver drives it (tools/ce_driver.c), through an IOAS that maps system
 * memory and two GPU-like devices' BAR2 exported as dma-bufs
 * (kernel-semantics 1.3, 2.3-2.5, 7).
 *
 * What it proves:
 * - Every BAR0 register reads and writes as documented; accesses that are
 *   not 4 or 8 bytes, or not naturally aligned, fail the region access;
 *   registers are unreachable while COMMAND.MEM is off.
 * - Copies go in every direction (system memory -> BAR, BAR -> system
 *   memory, BAR -> BAR between two devices, within one BAR) through
 *   single-range and multi-range dma-bufs, at any byte offset and length,
 *   across range and area boundaries.  Every byte is checked against a
 *   host reference model: for each backing (system buffers, each BAR
 *   through p2p_mem_ptr(), the truth for BAR bytes) a shadow copy is
 *   updated by replaying every descriptor in order, and the real bytes
 *   must equal it, everywhere (nothing written outside the destination).
 * - Every completion status: OK; translation fault with `bytes` = what
 *   was copied before the hole; PERM for a read-only destination or a
 *   write-only source (again with partial bytes across areas); REVOKED
 *   for every trigger of 1.7, with the stale area staying dead after
 *   un-revoke (2.5: never remapped) until unmap + FIXED_IOVA remap.
 * - MSI: exactly one eventfd signal per descriptor with P2P_CE_DESC_IRQ,
 *   none for the others, and the signal comes once HEAD covers it.
 * - Descriptors complete in order: a dependent chain replays exactly, and
 *   HEAD only ever covers completion records already written.
 * - Reset (VFIO_DEVICE_RESET, FLR) clears every register, the descriptor
 *   in flight finishes whole or never starts, and the engine can be
 *   reprogrammed; ring and completion faults set STATUS.RING_FAULT.
 * - Unmapping an area while the engine copies into it, then revoking the
 *   dma-buf behind it, neither deadlocks nor tears the copy.
 * - Channels: one per online core by default, a chosen count through the
 *   options; each channel's registers are its own, channels run
 *   independently, each signals its own MSI vector; a copy split over all
 *   channels lands whole; reset with every channel busy finishes each
 *   descriptor whole or drops it; a revoke fails every piece.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "ce_driver.h"
#include "harness.h"

#define KiB 1024ull
#define MiB (1024 * KiB)
#define PAGE 4096ull
#define BAR 2
#define BAR_SZ (32 * MiB)
#define SYS_SZ (34 * MiB)   /* [0, 32M): large copies; [32M, 34M): small work */
#define SMALL_OFF (32 * MiB)
#define SMALL_SZ (2 * MiB)
#define AUX_SZ (64 * KiB)   /* the read-only, write-only and adjacent buffers */
#define RING 64
#define GUARD 4096 /* bytes checked around every destination */
#ifndef ALARM
#define ALARM 300 /* seconds: a deadlock fails the test instead of hanging it */
#endif

/* Fixed IOVAs, each followed by a hole (a translation fault). */
#define IOVA_SYS 0x010000000ull
#define IOVA_G0 0x100000000ull	  /* gpu0 BAR2, single range, whole */
#define IOVA_G1 0x200000000ull	  /* gpu1 BAR2, single range, whole */
#define IOVA_M0 0x300000000ull	  /* gpu0 BAR2, multi-range */
#define IOVA_M1 0x310000000ull	  /* gpu1 BAR2, multi-range */
#define IOVA_RO 0x400000000ull	  /* system memory, READABLE only */
#define IOVA_WO 0x410000000ull	  /* system memory, WRITEABLE only */
#define IOVA_G1RO 0x420000000ull  /* gpu1 BAR2 [0, 1M), READABLE only */
#define IOVA_ADJ 0x500000000ull	  /* [sys 16K RW][gpu1 16K RW][sys 16K RO] */
#define IOVA_HOLE 0x600000000ull  /* never mapped */
#define IOVA_NEW 0x700000000ull	  /* gpu1 mapped again after un-revoke */
#define IOVA_A 0x800000000ull	  /* gpu0 BAR2 [0, 16M), a copy's source */
#define IOVA_B 0x810000000ull	  /* gpu0 BAR2 [16M, 32M), its destination */
#define G1RO_LEN (1 * MiB)
#define ADJ_PART (16 * KiB)
#define ADJ_G1_OFF (16 * MiB)	  /* where the ADJ gpu1 part is in the BAR */

#define MIN(a, b) ((a) < (b) ? (a) : (b))

static const uint32_t RW = P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE;

/* Unsorted, aliasing ranges (1.3): range 3 is the second page of range 0. */
static const struct vfio_region_dma_range m0_ranges[] = {
	{ .offset = 4 * MiB, .length = 16 * KiB },
	{ .offset = 1 * MiB, .length = 4 * KiB },
	{ .offset = 12 * MiB, .length = 8 * KiB },
	{ .offset = 4 * MiB + 4 * KiB, .length = 4 * KiB },
	{ .offset = 31 * MiB, .length = 12 * KiB },
};
static const struct vfio_region_dma_range m1_ranges[] = {
	{ .offset = 0, .length = 4 * KiB },
	{ .offset = 8 * MiB, .length = 12 * KiB },
	{ .offset = 30 * MiB, .length = 8 * KiB },
};
#define NR(a) (sizeof(a) / sizeof((a)[0]))
#define M0_LEN (44 * KiB)
#define M1_LEN (24 * KiB)

/* ---------------------------------------------------------------------- */
/* The reference model                                                     */

enum { B_SYS, B_G0, B_G1, B_RO, B_WO, B_ADJ, NR_B };

struct backing {
	const char *name;
	uint8_t *real;	 /* what the engine reaches; p2p_mem_ptr() for a BAR */
	uint8_t *shadow; /* what it must hold */
	uint64_t size;
};

/* One translation: [iova, iova + len) is backing b at off. */
struct seg {
	uint64_t iova, len;
	int b;
	uint64_t off;
};

static struct backing bk[NR_B];
static struct seg segs[64];
static unsigned int nsegs;

static void seg_add(uint64_t iova, uint64_t len, int b, uint64_t off)
{
	CHECK(nsegs < NR(segs));
	if (nsegs < NR(segs))
		segs[nsegs++] = (struct seg){ iova, len, b, off };
}

static void seg_del(uint64_t iova, uint64_t len)
{
	for (unsigned int i = 0; i < nsegs;) {
		if (segs[i].iova >= iova && segs[i].iova < iova + len)
			segs[i] = segs[--nsegs];
		else
			i++;
	}
}

static const struct seg *seg_find(uint64_t iova)
{
	for (unsigned int i = 0; i < nsegs; i++)
		if (iova - segs[i].iova < segs[i].len)
			return &segs[i];
	return NULL;
}

/* Replay @bytes of a copy on the shadows, in the engine's runs. */
static void ref_copy(uint64_t src, uint64_t dst, uint64_t bytes)
{
	for (uint64_t done = 0; done < bytes;) {
		const struct seg *s = seg_find(src + done), *d = seg_find(dst + done);
		uint64_t so, dof, n;

		if (!s || !d) {
			CHECK(!"reference copy through an unmapped IOVA");
			return;
		}
		so = src + done - s->iova;
		dof = dst + done - d->iova;
		n = MIN(bytes - done, MIN(s->len - so, d->len - dof));
		memmove(bk[d->b].shadow + d->off + dof, bk[s->b].shadow + s->off + so, n);
		done += n;
	}
}

static bool verify_range(int b, uint64_t off, uint64_t len, const char *what)
{
	const uint8_t *r = bk[b].real + off, *s = bk[b].shadow + off;

	if (!memcmp(r, s, len))
		return true;
	for (uint64_t i = 0; i < len; i++) {
		if (r[i] != s[i]) {
			fprintf(stderr, "[%s] %s: %s byte %#llx is %#x, want %#x\n", t_current, what,
				bk[b].name, (unsigned long long)(off + i), r[i], s[i]);
			break;
		}
	}
	t_failures++;
	return false;
}

/* Every byte of every backing equals the reference: nothing stray anywhere. */
static void verify_all(const char *what)
{
	for (int b = 0; b < NR_B; b++)
		verify_range(b, 0, bk[b].size, what);
}

/* The destination of a copy and GUARD bytes either side of each of its runs. */
static void verify_dst(uint64_t dst, uint64_t len, const char *what)
{
	for (uint64_t done = 0; done < len;) {
		const struct seg *d = seg_find(dst + done);
		uint64_t o, n, lo, hi;

		if (!d) { /* a hole: nothing there to check */
			done += PAGE - ((dst + done) & (PAGE - 1));
			continue;
		}
		o = d->off + (dst + done - d->iova);
		n = MIN(len - done, d->len - (dst + done - d->iova));
		lo = o > GUARD ? o - GUARD : 0;
		hi = MIN(o + n + GUARD, bk[d->b].size);
		verify_range(d->b, lo, hi - lo, what);
		done += n;
	}
}

/* Where the engine's bytes at @iova are (p2p_mem_ptr() for a BAR). */
static uint8_t *real_ptr(uint64_t iova)
{
	const struct seg *s = seg_find(iova);

	return bk[s->b].real + s->off + (iova - s->iova);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill_random(uint8_t *p, uint64_t len)
{
	uint64_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t v = rnd();

		memcpy(p + i, &v, 8);
	}
	for (; i < len; i++)
		p[i] = (uint8_t)rnd();
}

/* ---------------------------------------------------------------------- */
/* The engine                                                              */

static struct t_dev gpu0, gpu1;
static struct p2p_pci_dev *cepci;
static struct p2p_vfio_device *cev;
static struct p2p_iommufd *ictx;
static struct p2p_ioas *ioas;
static struct ce_drv drv;
static uint32_t next_id = 1000;

static ssize_t reg_rd(uint64_t off, size_t len, uint64_t *v)
{
	*v = 0;
	return p2p_vfio_device_pread(cev, v, len, P2P_VFIO_REGION_OFFSET(0) + off);
}

static ssize_t reg_wr(uint64_t off, size_t len, uint64_t v)
{
	return p2p_vfio_device_pwrite(cev, &v, len, P2P_VFIO_REGION_OFFSET(0) + off);
}

static uint64_t reg(uint64_t off, size_t len)
{
	uint64_t v;

	CHECK_ERR(reg_rd(off, len, &v), (long)len);
	return v;
}

/* Write @v to the register (the write CHECKed), then read it back (CHECKed, as reg()). */
static uint64_t reg_wr_rd(uint64_t off, size_t len, uint64_t v)
{
	CHECK_ERR(reg_wr(off, len, v), (long)len);
	return reg(off, len);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Wait until HEAD passes @idx without touching the eventfd (the interrupt
 * tests count it).  The deadline only turns a hung engine into a failure.
 */
static void wait_done_on(struct ce_drv *d, uint32_t idx)
{
	double deadline = now() + 60;

	for (unsigned int i = 0; (int32_t)(ce_drv_head(d) - idx) <= 0; i++) {
		if (now() > deadline) {
			fprintf(stderr, "[%s] engine stuck: channel %u head %u, waiting for %u\n",
				t_current, d->chan, ce_drv_head(d), idx);
			exit(T_EXIT_FAIL);
		}
		if (i < 1000)
			sched_yield();
		else
			usleep(100);
	}
}

static void wait_done(uint32_t idx)
{
	wait_done_on(&drv, idx);
}

static void wait_not_busy(void)
{
	double deadline = now() + 60;

	while (reg(P2P_CE_REG_STATUS, 4) & P2P_CE_STATUS_BUSY) {
		if (now() > deadline) {
			fprintf(stderr, "[%s] STATUS.BUSY stuck\n", t_current);
			exit(T_EXIT_FAIL);
		}
		sched_yield();
	}
}

static uint64_t irq_drain(void)
{
	eventfd_t v = 0;

	return eventfd_read(drv.efd, &v) ? 0 : v;
}

/* Run one descriptor; its completion must echo the id. */
static struct p2p_ce_compl run1(uint64_t src, uint64_t dst, uint64_t len, uint32_t flags)
{
	uint32_t id = next_id++;
	uint32_t idx = ce_drv_queue(&drv, src, dst, len, flags, id);
	struct p2p_ce_compl c;

	CHECK_OK(ce_drv_kick(&drv));
	wait_done(idx);
	c = *ce_drv_compl(&drv, idx);
	CHECK(c.id == id);
	return c;
}

/*
 * Run one copy and check its completion status and byte count; replay what
 * it copied on the reference and check the destination (and around it).
 */
static void expect(const char *what, uint64_t src, uint64_t dst, uint64_t len, uint32_t status,
		   uint64_t bytes)
{
	struct p2p_ce_compl c = run1(src, dst, len, 0);

	if (c.status != status || c.bytes != bytes) {
		fprintf(stderr, "[%s] %s: %#llx -> %#llx len %llu: %s, %llu bytes; want %s, %llu\n",
			t_current, what, (unsigned long long)src, (unsigned long long)dst,
			(unsigned long long)len, p2p_ce_status_name(c.status),
			(unsigned long long)c.bytes, p2p_ce_status_name(status),
			(unsigned long long)bytes);
		t_failures++;
	}
	ref_copy(src, dst, MIN(c.bytes, bytes));
	verify_dst(dst, len, what);
}

static void expect_ok(const char *what, uint64_t src, uint64_t dst, uint64_t len)
{
	expect(what, src, dst, len, P2P_CE_OK, len);
}

/* ---------------------------------------------------------------------- */
/* Setup                                                                   */

static int fd0, fd1, fdm0, fdm1;
static uint8_t *sys, *ro_buf, *wo_buf, *adj_buf;

static void map_gpu1(uint32_t extra)
{
	uint64_t iova;

	iova = IOVA_G1;
	CHECK_OK(p2p_ioas_map_file(ioas, fd1, 0, BAR_SZ, &iova, RW | extra));
	iova = IOVA_M1;
	CHECK_OK(p2p_ioas_map_file(ioas, fdm1, 0, M1_LEN, &iova,
				   RW | P2P_IOAS_MAP_EXTENDED | extra));
	iova = IOVA_G1RO;
	CHECK_OK(p2p_ioas_map_file(ioas, fd1, 0, G1RO_LEN, &iova,
				   P2P_IOAS_MAP_READABLE | extra));
	iova = IOVA_ADJ + ADJ_PART;
	CHECK_OK(p2p_ioas_map_file(ioas, fd1, ADJ_G1_OFF, ADJ_PART, &iova, RW | extra));
}

/* The VMM protocol after a revoke (2.5): unmap each stale area, map it again. */
static void remap_gpu1(void)
{
	uint64_t n = 0;

	CHECK_OK(p2p_ioas_unmap(ioas, IOVA_G1, BAR_SZ, &n));
	CHECK(n == BAR_SZ);
	CHECK_OK(p2p_ioas_unmap(ioas, IOVA_M1, M1_LEN, NULL));
	CHECK_OK(p2p_ioas_unmap(ioas, IOVA_G1RO, G1RO_LEN, NULL));
	CHECK_OK(p2p_ioas_unmap(ioas, IOVA_ADJ + ADJ_PART, ADJ_PART, NULL));
	map_gpu1(P2P_IOAS_MAP_FIXED_IOVA);
}

static void setup(void)
{
	struct vfio_region_dma_range whole = { 0, BAR_SZ };
	uint64_t iova, pos;
	uint32_t id;

	t_section("setup");
	CHECK_OK(t_dev_create(&gpu0, "0000:01:00.0", BAR_SZ, 0, NULL, 1));
	CHECK_OK(t_dev_create(&gpu1, "0000:03:00.0", BAR_SZ, 0, NULL, 3));
	CHECK_OK(p2p_copy_engine_create("0000:02:00.0", NULL, 2, &cepci));
	CHECK_OK(p2p_vfio_device_open(cepci, &cev));
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK_OK(p2p_vfio_device_attach_ioas(cev, ioas));
	if (t_failures)
		exit(T_EXIT_FAIL);

	sys = aligned_alloc(2 * MiB, SYS_SZ);
	ro_buf = aligned_alloc(PAGE, AUX_SZ);
	wo_buf = aligned_alloc(PAGE, AUX_SZ);
	adj_buf = aligned_alloc(PAGE, AUX_SZ);
	CHECK(sys && ro_buf && wo_buf && adj_buf);
	bk[B_SYS] = (struct backing){ "sys", sys, malloc(SYS_SZ), SYS_SZ };
	bk[B_G0] = (struct backing){ "gpu0.bar2", t_bar_ptr(gpu0.pci, BAR, 0),
				     malloc(BAR_SZ), BAR_SZ };
	bk[B_G1] = (struct backing){ "gpu1.bar2", t_bar_ptr(gpu1.pci, BAR, 0),
				     malloc(BAR_SZ), BAR_SZ };
	bk[B_RO] = (struct backing){ "ro", ro_buf, malloc(AUX_SZ), AUX_SZ };
	bk[B_WO] = (struct backing){ "wo", wo_buf, malloc(AUX_SZ), AUX_SZ };
	bk[B_ADJ] = (struct backing){ "adj", adj_buf, malloc(AUX_SZ), AUX_SZ };
	for (int b = 0; b < NR_B; b++) {
		CHECK(bk[b].shadow != NULL);
		if (!bk[b].real || !bk[b].shadow)
			exit(T_EXIT_FAIL);
		fill_random(bk[b].real, bk[b].size);
		memcpy(bk[b].shadow, bk[b].real, bk[b].size);
	}

	fd0 = t_dmabuf(gpu0.vdev, BAR, &whole, 1);
	fd1 = t_dmabuf(gpu1.vdev, BAR, &whole, 1);
	fdm0 = t_dmabuf(gpu0.vdev, BAR, m0_ranges, NR(m0_ranges));
	fdm1 = t_dmabuf(gpu1.vdev, BAR, m1_ranges, NR(m1_ranges));
	CHECK(fd0 >= 0 && fd1 >= 0 && fdm0 >= 0 && fdm1 >= 0);
	if (t_failures)
		exit(T_EXIT_FAIL);

	/* Kernel-exact MAP_FILE refuses multi-range dma-bufs (2.2 step 11). */
	iova = IOVA_M0;
	CHECK_ERR(p2p_ioas_map_file(ioas, fdm0, 0, M0_LEN, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EOPNOTSUPP);

	iova = IOVA_SYS;
	CHECK_OK(p2p_ioas_map(ioas, sys, SYS_SZ, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	seg_add(IOVA_SYS, SYS_SZ, B_SYS, 0);
	iova = IOVA_G0;
	CHECK_OK(p2p_ioas_map_file(ioas, fd0, 0, BAR_SZ, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	seg_add(IOVA_G0, BAR_SZ, B_G0, 0);
	/* EXTENDED: the ranges land contiguously in IOVA, in array order (1.3). */
	iova = IOVA_M0;
	CHECK_OK(p2p_ioas_map_file(ioas, fdm0, 0, M0_LEN, &iova,
				   RW | P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_EXTENDED));
	pos = IOVA_M0;
	for (unsigned int i = 0; i < NR(m0_ranges); pos += m0_ranges[i++].length)
		seg_add(pos, m0_ranges[i].length, B_G0, m0_ranges[i].offset);
	CHECK(pos == IOVA_M0 + M0_LEN);
	map_gpu1(P2P_IOAS_MAP_FIXED_IOVA);
	seg_add(IOVA_G1, BAR_SZ, B_G1, 0);
	pos = IOVA_M1;
	for (unsigned int i = 0; i < NR(m1_ranges); pos += m1_ranges[i++].length)
		seg_add(pos, m1_ranges[i].length, B_G1, m1_ranges[i].offset);
	CHECK(pos == IOVA_M1 + M1_LEN);
	seg_add(IOVA_G1RO, G1RO_LEN, B_G1, 0);
	seg_add(IOVA_ADJ + ADJ_PART, ADJ_PART, B_G1, ADJ_G1_OFF);
	iova = IOVA_RO;
	CHECK_OK(p2p_ioas_map(ioas, ro_buf, AUX_SZ, &iova,
			      P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_FIXED_IOVA));
	seg_add(IOVA_RO, AUX_SZ, B_RO, 0);
	iova = IOVA_WO;
	CHECK_OK(p2p_ioas_map(ioas, wo_buf, AUX_SZ, &iova,
			      P2P_IOAS_MAP_WRITEABLE | P2P_IOAS_MAP_FIXED_IOVA));
	seg_add(IOVA_WO, AUX_SZ, B_WO, 0);
	iova = IOVA_ADJ;
	CHECK_OK(p2p_ioas_map(ioas, adj_buf, ADJ_PART, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	seg_add(IOVA_ADJ, ADJ_PART, B_ADJ, 0);
	iova = IOVA_ADJ + 2 * ADJ_PART;
	CHECK_OK(p2p_ioas_map(ioas, adj_buf + ADJ_PART, ADJ_PART, &iova,
			      P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_FIXED_IOVA));
	seg_add(IOVA_ADJ + 2 * ADJ_PART, ADJ_PART, B_ADJ, ADJ_PART);
	if (t_failures)
		exit(T_EXIT_FAIL);
}

/* ---------------------------------------------------------------------- */
/* Registers                                                               */

static void test_registers(void)
{
	static const unsigned int bad_len[] = { 1, 2, 3, 5, 16 };
	uint64_t v;

	t_section("registers");
	/* ID is read-only. */
	CHECK(reg(P2P_CE_REG_ID, 4) == P2P_CE_ID);
	CHECK(reg_wr_rd(P2P_CE_REG_ID, 4, 0) == P2P_CE_ID);

	/* RING and COMPL: 64-bit IOVAs, read back as written; the low half reads alone. */
	CHECK(reg_wr_rd(P2P_CE_REG_RING, 8, 0x123456789000ull) == 0x123456789000ull);
	CHECK(reg(P2P_CE_REG_RING, 4) == 0x56789000ull);
	CHECK(reg_wr_rd(P2P_CE_REG_COMPL, 8, 0xfedcba987000ull) == 0xfedcba987000ull);
	CHECK(reg(P2P_CE_REG_RING, 8) == 0x123456789000ull); /* independent */

	/* RING_SIZE: a power of two up to 65536; other values are ignored. */
	CHECK(reg(P2P_CE_REG_RING_SIZE, 4) == 0);
	CHECK(reg_wr_rd(P2P_CE_REG_RING_SIZE, 4, 64) == 64);
	CHECK(reg_wr_rd(P2P_CE_REG_RING_SIZE, 4, 3) == 64);
	CHECK(reg_wr_rd(P2P_CE_REG_RING_SIZE, 4, 131072) == 64);
	CHECK(reg_wr_rd(P2P_CE_REG_RING_SIZE, 4, 65536) == 65536);
	CHECK(reg_wr_rd(P2P_CE_REG_RING_SIZE, 4, 1) == 1);

	/* DOORBELL reads back the tail; a disabled engine runs nothing (HEAD stays 0). */
	CHECK(reg_wr_rd(P2P_CE_REG_DOORBELL, 4, 5) == 5);
	CHECK(reg(P2P_CE_REG_HEAD, 4) == 0);

	/* HEAD and STATUS are read-only; CTRL keeps only ENABLE. */
	CHECK(reg_wr_rd(P2P_CE_REG_HEAD, 4, 7) == 0);
	CHECK(reg(P2P_CE_REG_STATUS, 4) == 0);
	CHECK(reg_wr_rd(P2P_CE_REG_STATUS, 4, 0xffffffff) == 0);
	CHECK(reg(P2P_CE_REG_CTRL, 4) == 0);
	CHECK(reg_wr_rd(P2P_CE_REG_CTRL, 4, 0xfffffffe) == 0);

	/* Reserved offsets read 0 and ignore writes. */
	CHECK(reg_wr_rd(0x30, 4, 0xdeadbeef) == 0);
	CHECK(reg_wr_rd(0x100, 8, ~0ull) == 0);
	CHECK(reg(P2P_CE_BAR0_SIZE - 8, 8) == 0);

	/* Bad access sizes and misaligned accesses fail the region access. */
	for (unsigned int i = 0; i < NR(bad_len); i++) {
		CHECK_ERR(reg_wr(P2P_CE_REG_DOORBELL, bad_len[i], 1), -EINVAL);
		CHECK_ERR(reg_rd(P2P_CE_REG_ID, bad_len[i], &v), -EINVAL);
	}
	CHECK_ERR(reg_wr(P2P_CE_REG_DOORBELL + 2, 4, 1), -EINVAL);
	CHECK_ERR(reg_rd(P2P_CE_REG_ID + 1, 4, &v), -EINVAL);
	CHECK_ERR(reg_wr(P2P_CE_REG_HEAD, 8, 1), -EINVAL); /* 0x24 is not 8-byte aligned */
	CHECK_ERR(reg_rd(P2P_CE_REG_RING + 4, 8, &v), -EINVAL);
	CHECK(reg(P2P_CE_REG_DOORBELL, 4) == 5); /* the failed writes changed nothing */
	/* At or past the BAR's end: -EINVAL; running past it: cut short there (vfio_pci_bar_rw). */
	CHECK_ERR(reg_rd(P2P_CE_BAR0_SIZE, 4, &v), -EINVAL);
	CHECK_ERR(reg_wr(P2P_CE_BAR0_SIZE - 4, 8, 0), 4);
	/* No other BARs; BAR0 is registers: no dma-buf export (no P2P provider, 1.3 step 10). */
	for (int bar = 1; bar < 6; bar++)
		CHECK_ERR(p2p_vfio_device_pread(cev, &v, 4, P2P_VFIO_REGION_OFFSET(bar)), -EINVAL);
	{
		struct vfio_region_dma_range r = { 0, P2P_CE_BAR0_SIZE };

		CHECK_ERR(t_dmabuf(cev, 0, &r, 1), -EINVAL);
	}

	/* COMMAND.MEM off: BAR0 is not decoded, every access -EIO. */
	CHECK_OK(t_mem_enable(cev, false));
	CHECK_ERR(reg_rd(P2P_CE_REG_ID, 4, &v), -EIO);
	CHECK_ERR(reg_wr(P2P_CE_REG_CTRL, 4, 1), -EIO);
	CHECK_OK(t_mem_enable(cev, true));
	CHECK(reg(P2P_CE_REG_ID, 4) == P2P_CE_ID);
	CHECK(reg(P2P_CE_REG_CTRL, 4) == 0);

	/* VFIO_DEVICE_RESET clears every register. */
	CHECK_ERR(reg_wr(P2P_CE_REG_RING_SIZE, 4, 64), 4);
	CHECK_OK(p2p_vfio_device_reset(cev));
	CHECK(reg(P2P_CE_REG_ID, 4) == P2P_CE_ID);
	CHECK(reg(P2P_CE_REG_RING, 8) == 0);
	CHECK(reg(P2P_CE_REG_RING_SIZE, 4) == 0);
	CHECK(reg(P2P_CE_REG_COMPL, 8) == 0);
	CHECK(reg(P2P_CE_REG_DOORBELL, 4) == 0);
	CHECK(reg(P2P_CE_REG_HEAD, 4) == 0);
	CHECK(reg(P2P_CE_REG_CTRL, 4) == 0);
	CHECK(reg(P2P_CE_REG_STATUS, 4) == 0);

	/* So does an FLR through config DEVCTL. */
	CHECK_ERR(reg_wr(P2P_CE_REG_RING, 8, 0x5000), 8);
	CHECK(reg_wr_rd(P2P_CE_REG_CTRL, 4, 1) == 1);
	CHECK_OK(t_flr(cev));
	CHECK(reg(P2P_CE_REG_RING, 8) == 0);
	CHECK(reg(P2P_CE_REG_CTRL, 4) == 0);
}

/* ---------------------------------------------------------------------- */
/* Copies                                                                  */

#define S(off) (IOVA_SYS + SMALL_OFF + (off))

static void test_directions(void)
{
	t_section("directions");
	/* System memory -> BAR (through the exported dma-buf) and back. */
	expect_ok("sys->gpu0", S(0), IOVA_G0, PAGE);
	expect_ok("sys->gpu0 sub-page", S(13), IOVA_G0 + 5 * MiB + 4093, 3 * PAGE + 11);
	expect_ok("gpu0->sys", IOVA_G0 + 7 * MiB + 1, S(64 * KiB + 2), 9999);
	expect_ok("gpu0->sys one byte", IOVA_G0 + BAR_SZ - 1, S(3), 1);
	/* BAR -> BAR between two devices: peer to peer. */
	expect_ok("gpu0->gpu1", IOVA_G0 + 3 * MiB + 17, IOVA_G1 + 2 * MiB + 4001, 70001);
	expect_ok("gpu1->gpu0", IOVA_G1 + 2 * MiB + 4001, IOVA_G0 + 9 * MiB + 4095, 70001);
	/* Within one BAR, and between two dma-bufs of the same BAR. */
	expect_ok("gpu0->gpu0", IOVA_G0 + 100, IOVA_G0 + 8 * MiB + 3, 65536 + 77);
	expect_ok("gpu1->gpu1", IOVA_G1 + BAR_SZ - 8192, IOVA_G1 + 1, 8192);
	expect_ok("gpu0 multi->gpu0", IOVA_M0 + 5, IOVA_G0 + 20 * MiB + 6, 4000);
	/* System memory to system memory still works. */
	expect_ok("sys->sys", S(PAGE * 40 + 9), S(PAGE * 60 + 1), 5 * PAGE + 3);
	/* A zero-length descriptor completes OK having copied nothing. */
	expect("zero length", S(0), IOVA_G0, 0, P2P_CE_OK, 0);
	/* Crossing from one area into the next, adjacent in IOVA. */
	expect_ok("across areas (dst)", S(PAGE * 90 + 7), IOVA_ADJ + ADJ_PART - 50, 100);
	expect_ok("across areas (src)", IOVA_ADJ + ADJ_PART - 3000, S(PAGE * 95), 6000);
	verify_all("directions");
}

static void test_multi_range(void)
{
	t_section("multi-range");
	/* Descriptors crossing range boundaries, sub-page on both sides. */
	expect_ok("multi->sys across r0/r1/r2", IOVA_M0 + 16 * KiB - 100, S(PAGE * 100 + 5),
		  100 + 4 * KiB + 50);
	expect_ok("sys->multi across every range", S(PAGE * 120 + 3), IOVA_M0 + 1, M0_LEN - 2);
	expect_ok("sys->multi r3 (alias of r0 page 1)", S(PAGE * 140 + 11),
		  IOVA_M0 + 28 * KiB + 9, 1000);
	/* The alias wrote gpu0 BAR bytes at 4M + 4K + 9: read them through the whole-BAR map. */
	expect_ok("gpu0 alias->sys", IOVA_G0 + 4 * MiB + 4 * KiB + 9, S(PAGE * 150), 1000);
	CHECK(!memcmp(sys + SMALL_OFF + PAGE * 150, sys + SMALL_OFF + PAGE * 140 + 11, 1000));
	/* Multi-range to multi-range, peer to peer, both crossing boundaries. */
	expect_ok("multi0->multi1", IOVA_M0 + 5, IOVA_M1 + 4090, 20000);
	expect_ok("multi1->multi0", IOVA_M1 + 1, IOVA_M0 + 16 * KiB + 1, M1_LEN - 1 - 4 * KiB);
	expect_ok("multi1->gpu0", IOVA_M1, IOVA_G0 + 30 * MiB, M1_LEN);
	expect_ok("gpu1->multi0 last range", IOVA_G1 + 123, IOVA_M0 + 32 * KiB + 17, 12 * KiB - 17);
	verify_all("multi-range");
}

/* A random window of a mapping that the engine may read and write. */
struct window {
	uint64_t iova, len;
};

static const struct window windows[] = {
	{ IOVA_SYS + SMALL_OFF, SMALL_SZ },
	{ IOVA_G0, BAR_SZ },
	{ IOVA_G1, BAR_SZ },
	{ IOVA_M0, M0_LEN },
	{ IOVA_M1, M1_LEN },
	{ IOVA_ADJ, 2 * ADJ_PART },
};

/* Do two IOVA ranges reach a common byte (through any alias)? */
static bool overlaps(uint64_t a, uint64_t b, uint64_t len)
{
	for (uint64_t x = 0; x < len;) {
		const struct seg *sa = seg_find(a + x);
		uint64_t ao = sa->off + (a + x - sa->iova);
		uint64_t an = MIN(len - x, sa->len - (a + x - sa->iova));

		for (uint64_t y = 0; y < len;) {
			const struct seg *sb = seg_find(b + y);
			uint64_t bo = sb->off + (b + y - sb->iova);
			uint64_t bn = MIN(len - y, sb->len - (b + y - sb->iova));

			if (sa->b == sb->b && ao < bo + bn && bo < ao + an)
				return true;
			y += bn;
		}
		x += an;
	}
	return false;
}

static void pick(uint64_t len, uint64_t *iova)
{
	const struct window *w;

	do {
		w = &windows[rnd() % NR(windows)];
	} while (w->len < len);
	*iova = w->iova + rnd() % (w->len - len + 1);
}

static void test_random_batches(void)
{
	t_section("random batches");
	for (int batch = 0; batch < 8; batch++) {
		struct { uint64_t src, dst, len; uint32_t idx, id; } d[RING - 4];

		for (unsigned int i = 0; i < NR(d); i++) {
			uint64_t r = rnd() % 100;

			d[i].len = r < 70 ? 1 + rnd() % 5000 : r < 95 ? 1 + rnd() % 70000
								 : PAGE * (1 + rnd() % 16);
			do {
				pick(d[i].len, &d[i].src);
				pick(d[i].len, &d[i].dst);
			} while (overlaps(d[i].src, d[i].dst, d[i].len));
			d[i].id = next_id++;
			d[i].idx = ce_drv_queue(&drv, d[i].src, d[i].dst, d[i].len, 0, d[i].id);
		}
		/* One doorbell for the whole batch: they run in ring order. */
		CHECK_OK(ce_drv_kick(&drv));
		wait_done(d[NR(d) - 1].idx);
		for (unsigned int i = 0; i < NR(d); i++) {
			const struct p2p_ce_compl *c = ce_drv_compl(&drv, d[i].idx);

			CHECK(c->id == d[i].id);
			CHECK(c->status == P2P_CE_OK);
			CHECK(c->bytes == d[i].len);
			ref_copy(d[i].src, d[i].dst, d[i].len);
		}
		verify_all("random batch");
	}
}

/*
 * In order: a chain of dependent copies (each reads what the previous one
 * wrote, hopping between system memory and both BARs) replays exactly, and
 * HEAD never covers a descriptor whose completion record is not written.
 */
static void test_order(void)
{
	const uint64_t chunk = 1000;
	uint64_t at[RING + 1];
	uint32_t first = drv.tail, seen;

	t_section("order");
	for (int i = 0; i <= RING; i++) {
		static const uint64_t base[] = { IOVA_SYS + SMALL_OFF + 512 * KiB, IOVA_G0 + 16 * MiB,
						 IOVA_G1 + 2 * MiB + 333 };

		at[i] = base[i % 3] + (uint64_t)i * 1237;
	}
	/* A full ring, one doorbell. */
	for (int i = 0; i < RING; i++)
		ce_drv_queue(&drv, at[i], at[i + 1], chunk, 0, 5000 + i);
	CHECK_OK(ce_drv_kick(&drv));
	seen = first;
	while (seen != first + RING) {
		uint32_t head = ce_drv_head(&drv);

		/* HEAD never goes back, nor past the tail. */
		if ((int32_t)(head - seen) < 0 || (int32_t)(head - (first + RING)) > 0) {
			CHECK(!"HEAD out of [completed, tail]");
			wait_done(first + RING - 1);
			break;
		}
		for (; seen != head; seen++) {
			const struct p2p_ce_compl *c = ce_drv_compl(&drv, seen);

			CHECK(c->id == 5000 + (seen - first));
			CHECK(c->status == P2P_CE_OK && c->bytes == chunk);
		}
		sched_yield();
	}
	for (int i = 0; i < RING; i++)
		ref_copy(at[i], at[i + 1], chunk);
	/* The chunks do not overlap: the end of the chain holds its start. */
	CHECK(!memcmp(real_ptr(at[RING]), real_ptr(at[0]), chunk));
	verify_all("order");
	/* BUSY clears once the engine has nothing left to do. */
	wait_not_busy();

	/* Many more than the ring holds: the driver waits for room, indexes wrap. */
	for (int i = 0; i < 10 * RING; i++) {
		uint64_t s = at[i % RING], d = at[(i + 7) % RING];

		ce_drv_queue(&drv, s, d, chunk, (i % RING) == RING - 1 ? P2P_CE_DESC_IRQ : 0, i);
		ref_copy(s, d, chunk);
	}
	CHECK_OK(ce_drv_kick(&drv));
	wait_done(drv.tail - 1);
	CHECK(ce_drv_head(&drv) == drv.tail);
	CHECK(ce_drv_compl(&drv, drv.tail - 1)->status == P2P_CE_OK);
	CHECK(ce_drv_compl(&drv, drv.tail - 1)->id == 10 * RING - 1);
	irq_drain();
	verify_all("order wrap");
}

static void test_large(void)
{
	t_section("large");
	/* 32 MiB each: system memory -> gpu0 -> gpu1 (peer to peer) -> system memory. */
	expect_ok("32M sys->gpu0", IOVA_SYS, IOVA_G0, 32 * MiB);
	expect_ok("32M gpu0->gpu1", IOVA_G0, IOVA_G1, 32 * MiB);
	memset(sys, 0, 32 * MiB);
	memset(bk[B_SYS].shadow, 0, 32 * MiB);
	expect_ok("32M gpu1->sys", IOVA_G1, IOVA_SYS, 32 * MiB);
	/* A large copy at odd offsets, within one BAR. */
	expect_ok("12M gpu1->gpu1", IOVA_G1 + 3, IOVA_G1 + 12 * MiB + 4097, 12 * MiB + 1001);
	verify_all("large");
}

/* ---------------------------------------------------------------------- */
/* Channels                                                                */

static struct p2p_vfio_device *cv4;

static uint64_t reg4(uint64_t off, size_t len)
{
	uint64_t v = 0;

	CHECK_ERR(p2p_vfio_device_pread(cv4, &v, len, P2P_VFIO_REGION_OFFSET(0) + off), (long)len);
	return v;
}

static void reg4_wr(uint64_t off, size_t len, uint64_t v)
{
	CHECK_ERR(p2p_vfio_device_pwrite(cv4, &v, len, P2P_VFIO_REGION_OFFSET(0) + off), (long)len);
}

/* Install @fd for MSI vector @vec of the 4-channel engine. */
static void set_vector(uint32_t vec, int fd)
{
	uint8_t buf[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
	struct vfio_irq_set *irq = (struct vfio_irq_set *)buf;
	int32_t efd = fd;

	*irq = (struct vfio_irq_set){
		.argsz = sizeof(buf),
		.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
		.index = VFIO_PCI_MSI_IRQ_INDEX,
		.start = vec,
		.count = 1,
	};
	memcpy(irq->data, &efd, sizeof(efd));
	CHECK_OK(p2p_vfio_device_ioctl(cv4, VFIO_DEVICE_SET_IRQS, irq));
}

/*
 * Several channels: the default count, options, per-channel registers,
 * channels that run independently (one disabled, another finishes), one
 * MSI vector per channel, a copy split over every channel, reset with all
 * of them busy, and a revoke seen by every piece.
 */
static void test_channels(void)
{
	struct p2p_copy_engine_opts o = { .argsz = sizeof(o), .channels = 4 };
	struct {
		struct p2p_copy_engine_opts o;
		uint32_t more;
	} big = { { sizeof(big), 2 }, 0 };
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t want = cores < 1 ? 1 : cores > P2P_CE_MAX_CHANNELS ? P2P_CE_MAX_CHANNELS : cores;
	uint32_t idx0, idx3, last[P2P_CE_MAX_CHANNELS], used;
	struct p2p_pci_dev *pci4, *other = NULL;
	struct ce_multi m;
	uint64_t bytes;
	int efds[4];

	t_section("channels: registers");
	/* The default engine: one channel per online core; CHANNELS is read-only. */
	CHECK(reg(P2P_CE_REG_CHANNELS, 4) == want);
	CHECK(reg_wr_rd(P2P_CE_REG_CHANNELS, 4, 99) == want);
	CHECK(reg(P2P_CE_REG_ID, 8) == (P2P_CE_ID | want << 32));
	CHECK(ce_drv_channels(cev) == want);

	/* Options: too many channels, a short struct, a non-zero unknown tail. */
	o.channels = P2P_CE_MAX_CHANNELS + 1;
	CHECK_ERR(p2p_copy_engine_create_opts("0000:02:00.5", NULL, 5, &o, &other), -EINVAL);
	o = (struct p2p_copy_engine_opts){ .argsz = 4, .channels = 4 };
	CHECK_ERR(p2p_copy_engine_create_opts("0000:02:00.5", NULL, 5, &o, &other), -EINVAL);
	big.more = 1;
	CHECK_ERR(p2p_copy_engine_create_opts("0000:02:00.5", NULL, 5, &big.o, &other), -EINVAL);
	CHECK(other == NULL);
	big.more = 0;
	CHECK_OK(p2p_copy_engine_create_opts("0000:02:00.5", NULL, 5, &big.o, &other));
	if (other)
		p2p_pci_dev_put(other);

	o = (struct p2p_copy_engine_opts){ .argsz = sizeof(o), .channels = 4 };
	CHECK_OK(p2p_copy_engine_create_opts("0000:02:00.4", NULL, 4, &o, &pci4));
	CHECK_OK(p2p_vfio_device_open(pci4, &cv4));
	CHECK_OK(p2p_vfio_device_attach_ioas(cv4, ioas));
	if (t_failures)
		exit(T_EXIT_FAIL);
	CHECK(reg4(P2P_CE_REG_CHANNELS, 4) == 4);
	/* Each channel's registers are its own; the blocks of channels it lacks are reserved. */
	reg4_wr(P2P_CE_CHAN_REG(2, P2P_CE_REG_RING), 8, 0x2000);
	reg4_wr(P2P_CE_CHAN_REG(3, P2P_CE_REG_RING_SIZE), 4, 16);
	CHECK(reg4(P2P_CE_CHAN_REG(2, P2P_CE_REG_RING), 8) == 0x2000);
	CHECK(reg4(P2P_CE_CHAN_REG(3, P2P_CE_REG_RING_SIZE), 4) == 16);
	CHECK(reg4(P2P_CE_REG_RING, 8) == 0 && reg4(P2P_CE_CHAN_REG(1, P2P_CE_REG_RING), 8) == 0);
	CHECK(reg4(P2P_CE_CHAN_REG(3, P2P_CE_REG_RING), 8) == 0);
	CHECK(reg4(P2P_CE_CHAN_REG(2, P2P_CE_REG_RING_SIZE), 4) == 0);
	reg4_wr(P2P_CE_CHAN_REG(1, 0), 4, 0x1234); /* channel 1's ID/CHANNELS slots: reserved */
	CHECK(reg4(P2P_CE_CHAN_REG(1, 0), 4) == 0 && reg4(P2P_CE_CHAN_REG(1, 4), 4) == 0);
	reg4_wr(P2P_CE_CHAN_REG(4, P2P_CE_REG_RING), 8, 0x5000);
	CHECK(reg4(P2P_CE_CHAN_REG(4, P2P_CE_REG_RING), 8) == 0);
	/* Reset clears every channel. */
	CHECK_OK(p2p_vfio_device_reset(cv4));
	CHECK(reg4(P2P_CE_CHAN_REG(2, P2P_CE_REG_RING), 8) == 0);
	CHECK(reg4(P2P_CE_CHAN_REG(3, P2P_CE_REG_RING_SIZE), 4) == 0);

	t_section("channels: independent queues");
	CHECK_OK(ce_multi_init(&m, cv4, ioas, RING, 0));
	CHECK(m.nchan == 4);
	if (t_failures)
		exit(T_EXIT_FAIL);
	/* Channel 0 disabled holds its descriptor; channel 3 runs its own meanwhile. */
	reg4_wr(P2P_CE_CHAN_REG(0, P2P_CE_REG_CTRL), 4, 0);
	idx0 = ce_drv_queue(&m.ch[0], S(PAGE * 350), IOVA_G0 + 20 * MiB, 5000, 0, 1);
	idx3 = ce_drv_queue(&m.ch[3], S(PAGE * 352), IOVA_G1 + 20 * MiB, 6000, 0, 2);
	CHECK_OK(ce_drv_kick(&m.ch[0]));
	CHECK_OK(ce_drv_kick(&m.ch[3]));
	wait_done_on(&m.ch[3], idx3);
	CHECK(ce_drv_compl(&m.ch[3], idx3)->status == P2P_CE_OK);
	CHECK(ce_drv_head(&m.ch[0]) == idx0);
	CHECK(ce_drv_compl(&m.ch[0], idx0)->status == P2P_CE_PENDING);
	reg4_wr(P2P_CE_CHAN_REG(0, P2P_CE_REG_CTRL), 4, P2P_CE_CTRL_ENABLE);
	wait_done_on(&m.ch[0], idx0);
	CHECK(ce_drv_compl(&m.ch[0], idx0)->status == P2P_CE_OK);
	ref_copy(S(PAGE * 350), IOVA_G0 + 20 * MiB, 5000);
	ref_copy(S(PAGE * 352), IOVA_G1 + 20 * MiB, 6000);
	verify_all("channels: independent");

	t_section("channels: MSI vectors");
	for (int c = 0; c < 4; c++) {
		efds[c] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		CHECK(efds[c] >= 0);
		set_vector(P2P_CE_CHAN_VECTOR(c), efds[c]);
	}
	for (uint32_t c = 0; c < 4; c++) {
		uint32_t i = ce_drv_queue(&m.ch[c], S(PAGE * 360 + c * 64), IOVA_G0 + 21 * MiB + c * PAGE,
					  64, P2P_CE_DESC_IRQ, 10 + c);
		struct pollfd pfd = { .fd = efds[c], .events = POLLIN };

		ref_copy(S(PAGE * 360 + c * 64), IOVA_G0 + 21 * MiB + c * PAGE, 64);
		CHECK_OK(ce_drv_kick(&m.ch[c]));
		CHECK(poll(&pfd, 1, 60000) == 1);
		CHECK((int32_t)(ce_drv_head(&m.ch[c]) - i) > 0);
		for (int k = 0; k < 4; k++) {
			eventfd_t v = 0;

			CHECK((eventfd_read(efds[k], &v) == 0 ? v : 0) == (k == (int)c));
		}
	}
	for (int c = 0; c < 4; c++) {
		set_vector(P2P_CE_CHAN_VECTOR(c), m.efd);
		close(efds[c]);
	}

	t_section("channels: split copy");
	CHECK(ce_multi_copy(&m, IOVA_G0, IOVA_G1, 32 * MiB, &bytes) == P2P_CE_OK);
	CHECK(bytes == 32 * MiB);
	ref_copy(IOVA_G0, IOVA_G1, 32 * MiB);
	/* Odd offsets and length, system memory -> BAR: four pieces, one per channel. */
	used = ce_multi_queue(&m, 0, IOVA_SYS + 5, IOVA_G0 + 7, 9 * MiB + 333, 1 * MiB,
			      P2P_CE_DESC_IRQ, 77, last);
	CHECK(used == 4);
	CHECK_OK(ce_multi_kick(&m));
	bytes = 0;
	for (uint32_t c = 0; c < used; c++) {
		CHECK_OK(ce_drv_wait(&m.ch[c], last[c]));
		CHECK(ce_drv_compl(&m.ch[c], last[c])->status == P2P_CE_OK);
		CHECK(ce_drv_compl(&m.ch[c], last[c])->id == 77);
		bytes += ce_drv_compl(&m.ch[c], last[c])->bytes;
	}
	CHECK(bytes == 9 * MiB + 333);
	ref_copy(IOVA_SYS + 5, IOVA_G0 + 7, 9 * MiB + 333);
	/* Smaller than two pieces: one channel. */
	CHECK(ce_multi_queue(&m, 0, S(0), IOVA_G1 + 22 * MiB, 1000, 1 * MiB, 0, 78, last) == 1);
	CHECK_OK(ce_multi_kick(&m));
	wait_done_on(&m.ch[0], last[0]);
	ref_copy(S(0), IOVA_G1 + 22 * MiB, 1000);
	verify_all("channels: split copy");

	t_section("channels: reset in flight");
	for (int round = 0; round < 3; round++) {
		uint32_t ix[4];

		for (uint32_t c = 0; c < 4; c++)
			ix[c] = ce_drv_queue(&m.ch[c], IOVA_G0 + c * 8 * MiB, IOVA_G1 + c * 8 * MiB,
					     8 * MiB, 0, 500 + c);
		CHECK_OK(ce_multi_kick(&m));
		if (round & 1)
			sched_yield();
		CHECK_OK(p2p_vfio_device_reset(cv4));
		for (uint32_t c = 0; c < 4; c++) {
			const struct p2p_ce_compl *r = ce_drv_compl(&m.ch[c], ix[c]);

			CHECK(r->status == P2P_CE_PENDING ||
			      (r->status == P2P_CE_OK && r->bytes == 8 * MiB));
			if (r->status == P2P_CE_OK)
				ref_copy(IOVA_G0 + c * 8 * MiB, IOVA_G1 + c * 8 * MiB, 8 * MiB);
			CHECK(reg4(P2P_CE_CHAN_REG(c, P2P_CE_REG_HEAD), 4) == 0);
			CHECK(reg4(P2P_CE_CHAN_REG(c, P2P_CE_REG_CTRL), 4) == 0);
		}
		verify_all("channels: reset in flight");
		ce_multi_fini(&m);
		CHECK_OK(ce_multi_init(&m, cv4, ioas, RING, 0));
	}

	t_section("channels: revoke");
	CHECK_OK(t_mem_enable(gpu1.vdev, false));
	CHECK(ce_multi_copy(&m, IOVA_G0, IOVA_G1, 16 * MiB, &bytes) == P2P_CE_REVOKED);
	CHECK(bytes == 0);
	verify_all("channels: revoked");
	CHECK_OK(t_mem_enable(gpu1.vdev, true));
	remap_gpu1();
	CHECK(ce_multi_copy(&m, IOVA_G1, IOVA_G0, 16 * MiB, &bytes) == P2P_CE_OK);
	ref_copy(IOVA_G1, IOVA_G0, 16 * MiB);
	verify_all("channels: after revoke");

	ce_multi_fini(&m);
	p2p_vfio_device_detach_ioas(cv4);
	p2p_vfio_device_close(cv4);
	p2p_pci_dev_put(pci4);
}

static void test_faults(void)
{
	t_section("faults");
	/* Translation faults: nothing mapped at the source or the destination. */
	expect("unmapped src", IOVA_HOLE, S(0), 100, P2P_CE_FAULT, 0);
	expect("unmapped dst", S(0), IOVA_HOLE + 12345, 100, P2P_CE_FAULT, 0);
	expect("dst far away", S(0), 0x8000000000ull, 1, P2P_CE_FAULT, 0);
	/* Running off the end of a mapping: `bytes` = what was copied before the hole. */
	expect("src off the end of sys", IOVA_SYS + SYS_SZ - 1000, IOVA_G0 + 123, 5000,
	       P2P_CE_FAULT, 1000);
	expect("dst off the end of gpu1", S(5), IOVA_G1 + BAR_SZ - 333, PAGE, P2P_CE_FAULT, 333);
	expect("src off the end of multi0", IOVA_M0 + M0_LEN - 77, S(PAGE), 200, P2P_CE_FAULT,
	       77);
	expect("dst off the end of multi1", IOVA_G0 + 99, IOVA_M1 + M1_LEN - 4097, 3 * PAGE,
	       P2P_CE_FAULT, 4097);

	/* PERM: the destination is mapped read-only, the source write-only. */
	expect("dst read-only sys", S(0), IOVA_RO + 10, 100, P2P_CE_PERM, 0);
	expect("dst read-only gpu1", S(0), IOVA_G1RO + PAGE, PAGE, P2P_CE_PERM, 0);
	expect("src write-only", IOVA_WO, S(0), 100, P2P_CE_PERM, 0);
	expect("partial: RW gpu1 then RO sys", S(PAGE * 3), IOVA_ADJ + 2 * ADJ_PART - 100, 300,
	       P2P_CE_PERM, 100);
	/* Reading those mappings the way they allow works. */
	expect_ok("src read-only", IOVA_RO + 1, S(PAGE * 200), 5000);
	expect_ok("src read-only gpu1", IOVA_G1RO + 77, IOVA_G0 + 22 * MiB, 7000);
	expect_ok("dst write-only", S(PAGE * 201), IOVA_WO + 9, 3000);
	/* The faulting descriptors did not stop the engine. */
	CHECK(!(reg(P2P_CE_REG_STATUS, 4) & P2P_CE_STATUS_RING_FAULT));
	verify_all("faults");
}

/*
 * The program shrinks a memfd the engine's IOAS maps (IOAS_MAP_FILE): a
 * copy touching the vanished part completes as a translation fault instead
 * of killing the program with SIGBUS, and the engine goes on.
 */
static void test_truncated_memfd(void)
{
	const uint64_t T = 0x900000000ull;
	struct p2p_ce_compl c;
	uint64_t iova = T;
	uint8_t *va;
	int fd;

	t_section("memfd truncated under the engine");
	fd = memfd_create("ce-shrink", MFD_CLOEXEC);
	CHECK(fd >= 0 && ftruncate(fd, 4 * PAGE) == 0);
	va = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(va != MAP_FAILED);
	memset(va, 0x5a, PAGE);
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, 4 * PAGE, &iova,
				   RW | P2P_IOAS_MAP_FIXED_IOVA));
	c = run1(T, T + PAGE, PAGE, 0);
	CHECK(c.status == P2P_CE_OK && c.bytes == PAGE && va[PAGE + 7] == 0x5a);

	CHECK(ftruncate(fd, PAGE) == 0);
	c = run1(T, T + 2 * PAGE, PAGE, 0);
	CHECK(c.status == P2P_CE_FAULT && c.bytes == 0);
	c = run1(T + 3 * PAGE, T, 100, 0);
	CHECK(c.status == P2P_CE_FAULT && c.bytes == 0);
	CHECK(va[0] == 0x5a);
	/* A run that crosses the new end faults as a whole (bytes counts whole runs). */
	c = run1(T + PAGE / 2, T, PAGE, 0);
	CHECK(c.status == P2P_CE_FAULT && c.bytes == 0);
	/* The engine is fine: no ring fault, and the rest of the memfd copies. */
	CHECK(!(reg(P2P_CE_REG_STATUS, 4) & P2P_CE_STATUS_RING_FAULT));
	va[10] = 0x21;
	c = run1(T + 10, T + 20, 1, 0);
	CHECK(c.status == P2P_CE_OK && va[20] == 0x21);
	CHECK_OK(p2p_ioas_unmap(ioas, T, 4 * PAGE, NULL));
	munmap(va, 4 * PAGE);
	close(fd);
}

/* gpu1's areas are all revoked: every access to them says so, gpu0's do not. */
static void expect_gpu1_revoked(const char *why)
{
	t_section(why);
	expect("sys->gpu1", S(0), IOVA_G1, PAGE, P2P_CE_REVOKED, 0);
	expect("gpu1->sys", IOVA_G1 + 5, S(PAGE * 210), 100, P2P_CE_REVOKED, 0);
	expect("gpu1->gpu0", IOVA_G1, IOVA_G0 + 24 * MiB, 8000, P2P_CE_REVOKED, 0);
	expect("gpu0->gpu1", IOVA_G0 + 24 * MiB, IOVA_G1 + 1, 8000, P2P_CE_REVOKED, 0);
	expect("sys->multi1", S(7), IOVA_M1 + 4090, 50, P2P_CE_REVOKED, 0);
	expect("gpu1 ro->sys", IOVA_G1RO, S(PAGE * 211), 10, P2P_CE_REVOKED, 0);
	/* Across areas: the system memory part is copied, then the revoked one stops it. */
	expect("sys then gpu1", S(PAGE * 4), IOVA_ADJ + ADJ_PART - 50, 100, P2P_CE_REVOKED, 50);
	/* gpu0 is another device: unaffected. */
	expect_ok("sys->gpu0 meanwhile", S(PAGE * 5), IOVA_G0 + 25 * MiB + 3, 3000);
	expect_ok("multi0->sys meanwhile", IOVA_M0, S(PAGE * 212), M0_LEN);
	verify_all(why);
}

static void expect_gpu1_live(const char *why)
{
	t_section(why);
	expect_ok("sys->gpu1", S(PAGE * 6 + 1), IOVA_G1 + 26 * MiB + 2, 4 * PAGE);
	expect_ok("gpu1->gpu0", IOVA_G1 + 26 * MiB, IOVA_G0 + 26 * MiB + 1, 5 * PAGE);
	expect_ok("sys->multi1", S(PAGE * 7), IOVA_M1 + 3, M1_LEN - 3);
	expect_ok("gpu1 ro->sys", IOVA_G1RO + 1, S(PAGE * 213), 4096);
	expect_ok("sys then gpu1", S(PAGE * 8), IOVA_ADJ + ADJ_PART - 50, 100);
	verify_all(why);
}

static void test_revoke(void)
{
	uint64_t iova;

	/* COMMAND.MEM off revokes gpu1's dma-bufs: its IOAS areas stop translating (2.5). */
	t_section("revoke: mem off");
	CHECK_OK(t_mem_enable(gpu1.vdev, false));
	expect_gpu1_revoked("revoke: mem off");
	/* A revoked dma-buf cannot be mapped again (2.5: ENODEV). */
	t_section("revoke: map while revoked");
	iova = IOVA_NEW;
	CHECK_ERR(p2p_ioas_map_file(ioas, fd1, 0, BAR_SZ, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -ENODEV);

	/* Un-revoke is passive (7.3): the stale areas stay dead. */
	CHECK_OK(t_mem_enable(gpu1.vdev, true));
	expect_gpu1_revoked("revoke: mem on, stale areas");
	/* A new mapping of the un-revoked dma-buf works next to the stale one. */
	t_section("revoke: new mapping");
	iova = IOVA_NEW;
	CHECK_OK(p2p_ioas_map_file(ioas, fd1, 0, BAR_SZ, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	seg_add(IOVA_NEW, BAR_SZ, B_G1, 0);
	expect_ok("sys->gpu1 (new mapping)", S(PAGE * 9 + 3), IOVA_NEW + 27 * MiB + 5, 7777);
	expect("sys->gpu1 (stale mapping)", S(0), IOVA_G1 + 27 * MiB, 10, P2P_CE_REVOKED, 0);
	CHECK_OK(p2p_ioas_unmap(ioas, IOVA_NEW, BAR_SZ, NULL));
	seg_del(IOVA_NEW, BAR_SZ);
	expect("unmapped again", S(0), IOVA_NEW, 10, P2P_CE_FAULT, 0);
	/* Unmap + FIXED_IOVA remap at the same IOVAs: everything works again. */
	remap_gpu1();
	expect_gpu1_live("revoke: remapped after mem off");

	/* The other triggers (1.7) do the same; FLR and reset un-revoke in the same call. */
	CHECK_OK(t_flr(gpu1.vdev));
	expect_gpu1_revoked("revoke: after FLR");
	remap_gpu1();
	expect_gpu1_live("revoke: remapped after FLR");
	CHECK_OK(p2p_vfio_device_reset(gpu1.vdev));
	expect_gpu1_revoked("revoke: after VFIO_DEVICE_RESET");
	remap_gpu1();
	expect_gpu1_live("revoke: remapped after VFIO_DEVICE_RESET");
	CHECK_OK(t_set_power(gpu1.vdev, 3));
	CHECK_OK(t_set_power(gpu1.vdev, 0));
	expect_gpu1_revoked("revoke: after D3hot");
	remap_gpu1();
	expect_gpu1_live("revoke: remapped after D3hot");
}

/* Exactly one MSI per descriptor that asks for one, once HEAD covers it. */
static void test_irq(void)
{
	struct pollfd pfd = { .fd = drv.efd, .events = POLLIN };
	uint32_t idx, last = 0;
	uint64_t n;

	t_section("interrupts");
	irq_drain();
	/* No IRQ flag: no interrupt. */
	idx = ce_drv_queue(&drv, S(0), IOVA_G0, 64, 0, 1);
	ref_copy(S(0), IOVA_G0, 64);
	CHECK_OK(ce_drv_kick(&drv));
	wait_done(idx);
	CHECK(irq_drain() == 0);
	/* IRQ flag: the eventfd fires once; HEAD already covers the descriptor. */
	idx = ce_drv_queue(&drv, S(0), IOVA_G1, 64, P2P_CE_DESC_IRQ, 2);
	ref_copy(S(0), IOVA_G1, 64);
	CHECK_OK(ce_drv_kick(&drv));
	CHECK(poll(&pfd, 1, 60000) == 1);
	CHECK((int32_t)(ce_drv_head(&drv) - idx) > 0);
	CHECK(ce_drv_compl(&drv, idx)->status == P2P_CE_OK);
	CHECK(irq_drain() == 1);
	/* A failing descriptor interrupts too. */
	idx = ce_drv_queue(&drv, IOVA_HOLE, S(0), 64, P2P_CE_DESC_IRQ, 3);
	CHECK_OK(ce_drv_kick(&drv));
	CHECK(poll(&pfd, 1, 60000) == 1);
	CHECK(irq_drain() == 1);
	/* The driver reads HEAD before the record (ce_drv_wait() does too). */
	CHECK((int32_t)(ce_drv_head(&drv) - idx) > 0);
	CHECK(ce_drv_compl(&drv, idx)->status == P2P_CE_FAULT);
	/* A batch of 20 with the flag on every other one, ending with one: 10 interrupts. */
	for (uint32_t i = 0; i < 20; i++) {
		last = ce_drv_queue(&drv, S(PAGE * 300 + i * 100), IOVA_G0 + 28 * MiB + i * 100,
				    100, (i & 1) ? P2P_CE_DESC_IRQ : 0, 100 + i);
		ref_copy(S(PAGE * 300 + i * 100), IOVA_G0 + 28 * MiB + i * 100, 100);
	}
	CHECK_OK(ce_drv_kick(&drv));
	wait_done(last);
	/* HEAD covers all 20: the MSIs of the first 19 are in, the last one may follow. */
	n = irq_drain();
	CHECK(n == 9 || n == 10);
	if (n == 9) {
		CHECK(poll(&pfd, 1, 60000) == 1);
		n += irq_drain();
	}
	CHECK(n == 10);
	CHECK(irq_drain() == 0);
	/* ce_drv_copy() relies on the interrupt to wake up. */
	CHECK(ce_drv_copy(&drv, S(PAGE * 310), IOVA_G1 + 28 * MiB, 4096) == P2P_CE_OK);
	ref_copy(S(PAGE * 310), IOVA_G1 + 28 * MiB, 4096);
	irq_drain();
	verify_all("interrupts");
}

/* Disabled, then enabled: queued work runs only once enabled (and a write wakes it). */
static void test_enable(void)
{
	uint32_t idx = 0;

	t_section("enable");
	CHECK_ERR(reg_wr(P2P_CE_REG_CTRL, 4, 0), 4);
	for (int i = 0; i < 3; i++) {
		idx = ce_drv_queue(&drv, S(PAGE * 320 + i), IOVA_G0 + 29 * MiB + i * PAGE, 1000, 0,
				   200 + i);
		ref_copy(S(PAGE * 320 + i), IOVA_G0 + 29 * MiB + i * PAGE, 1000);
	}
	CHECK_OK(ce_drv_kick(&drv));
	CHECK(ce_drv_head(&drv) == idx - 2);
	CHECK(ce_drv_compl(&drv, idx - 2)->status == P2P_CE_PENDING);
	CHECK_ERR(reg_wr(P2P_CE_REG_CTRL, 4, P2P_CE_CTRL_ENABLE), 4);
	wait_done(idx);
	CHECK(ce_drv_compl(&drv, idx)->status == P2P_CE_OK);
	/* RING_SIZE 0 stops it the same way; setting it again restarts the engine. */
	CHECK_ERR(reg_wr(P2P_CE_REG_RING_SIZE, 4, 0), 4);
	idx = ce_drv_queue(&drv, S(PAGE * 321), IOVA_G0 + 29 * MiB + 5 * PAGE, 1000, 0, 210);
	ref_copy(S(PAGE * 321), IOVA_G0 + 29 * MiB + 5 * PAGE, 1000);
	CHECK_OK(ce_drv_kick(&drv));
	CHECK(ce_drv_head(&drv) == idx);
	CHECK_ERR(reg_wr(P2P_CE_REG_RING_SIZE, 4, RING), 4);
	wait_done(idx);
	CHECK(ce_drv_compl(&drv, idx)->status == P2P_CE_OK);
	verify_all("enable");
}

/* Ring faults, reset with work in flight, and reprogramming. */
static void test_reset(void)
{
	uint32_t idx, st;

	t_section("ring faults");
	/* The completion array is unreachable: the copy happens, STATUS says RING_FAULT. */
	CHECK_ERR(reg_wr(P2P_CE_REG_COMPL, 8, IOVA_HOLE), 8);
	idx = ce_drv_queue(&drv, S(PAGE * 330), IOVA_G0 + 30 * MiB + PAGE, 500, 0, 300);
	ref_copy(S(PAGE * 330), IOVA_G0 + 30 * MiB + PAGE, 500);
	CHECK_OK(ce_drv_kick(&drv));
	wait_done(idx);
	CHECK(ce_drv_compl(&drv, idx)->status == P2P_CE_PENDING);
	CHECK(reg(P2P_CE_REG_STATUS, 4) & P2P_CE_STATUS_RING_FAULT);
	/* Read-only completions: a permission fault is a ring fault as well. */
	CHECK_ERR(reg_wr(P2P_CE_REG_COMPL, 8, IOVA_RO), 8);
	idx = ce_drv_queue(&drv, S(PAGE * 331), IOVA_G0 + 30 * MiB + 2 * PAGE, 500, 0, 301);
	ref_copy(S(PAGE * 331), IOVA_G0 + 30 * MiB + 2 * PAGE, 500);
	CHECK_OK(ce_drv_kick(&drv));
	wait_done(idx);
	CHECK(reg(P2P_CE_REG_STATUS, 4) & P2P_CE_STATUS_RING_FAULT);
	verify_all("ring faults");
	/* The ring itself unreachable: HEAD moves on, nothing is copied. */
	CHECK_ERR(reg_wr(P2P_CE_REG_COMPL, 8, drv.compl_iova), 8);
	CHECK_ERR(reg_wr(P2P_CE_REG_RING, 8, IOVA_HOLE), 8);
	idx = ce_drv_queue(&drv, S(PAGE * 332), IOVA_G0 + 30 * MiB + 3 * PAGE, 500, 0, 302);
	CHECK_OK(ce_drv_kick(&drv));
	wait_done(idx);
	CHECK(ce_drv_compl(&drv, idx)->status == P2P_CE_PENDING);
	CHECK(reg(P2P_CE_REG_STATUS, 4) & P2P_CE_STATUS_RING_FAULT);
	verify_all("ring fault: nothing copied");

	/* Reset clears the registers, and STATUS.RING_FAULT with them. */
	t_section("reset");
	CHECK_OK(p2p_vfio_device_reset(cev));
	CHECK(reg(P2P_CE_REG_RING, 8) == 0 && reg(P2P_CE_REG_COMPL, 8) == 0);
	CHECK(reg(P2P_CE_REG_RING_SIZE, 4) == 0 && reg(P2P_CE_REG_CTRL, 4) == 0);
	CHECK(reg(P2P_CE_REG_HEAD, 4) == 0 && reg(P2P_CE_REG_DOORBELL, 4) == 0);
	CHECK(reg(P2P_CE_REG_STATUS, 4) == 0);
	/* Reprogrammed, it works. */
	ce_drv_fini(&drv);
	CHECK_OK(ce_drv_init(&drv, cev, ioas, RING));
	CHECK(drv.tail == 0);
	expect_ok("after reset", S(PAGE * 333 + 1), IOVA_G1 + 30 * MiB + 1, 9000);

	/* Reset with a large copy in flight: it finishes whole or never starts. */
	for (int round = 0; round < 4; round++) {
		const struct p2p_ce_compl *c;

		idx = ce_drv_queue(&drv, IOVA_G0, IOVA_G1, 32 * MiB, 0, 400 + round);
		CHECK_OK(ce_drv_kick(&drv));
		if (round & 1)
			sched_yield();
		CHECK_OK(p2p_vfio_device_reset(cev));
		c = ce_drv_compl(&drv, idx);
		st = c->status;
		CHECK(st == P2P_CE_PENDING || (st == P2P_CE_OK && c->bytes == 32 * MiB));
		if (st == P2P_CE_OK)
			ref_copy(IOVA_G0, IOVA_G1, 32 * MiB);
		CHECK(reg(P2P_CE_REG_HEAD, 4) == 0 && reg(P2P_CE_REG_CTRL, 4) == 0);
		verify_all("reset in flight");
		ce_drv_fini(&drv);
		CHECK_OK(ce_drv_init(&drv, cev, ioas, RING));
		expect_ok("after reset in flight", S(PAGE * 334), IOVA_G0 + 31 * MiB + 5, 100);
	}
	verify_all("reset");
}

static void remap_gpu0(void)
{
	uint64_t iova;

	CHECK_OK(p2p_ioas_unmap(ioas, IOVA_G0, BAR_SZ, NULL));
	CHECK_OK(p2p_ioas_unmap(ioas, IOVA_M0, M0_LEN, NULL));
	iova = IOVA_G0;
	CHECK_OK(p2p_ioas_map_file(ioas, fd0, 0, BAR_SZ, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	iova = IOVA_M0;
	CHECK_OK(p2p_ioas_map_file(ioas, fdm0, 0, M0_LEN, &iova,
				   RW | P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_EXTENDED));
}

/*
 * Unmap the destination area while the engine copies into it, then revoke
 * its dma-buf (another area of it is the copy's source).  No deadlock: the
 * unmap waits for the DMA on the area it removes, so the DMA never drops
 * the last reference, whose release takes resv while the revoke holds resv
 * waiting for that DMA.  The copy is whole or did not happen.
 */
static void test_unmap_during_dma(void)
{
	const uint64_t half = BAR_SZ / 2;

	t_section("unmap during DMA, then revoke");
	for (int round = 0; round < 16; round++) {
		uint64_t a = IOVA_A, b = IOVA_B;
		const struct p2p_ce_compl *c;
		uint32_t idx;

		CHECK_OK(p2p_ioas_map_file(ioas, fd0, 0, half, &a, RW | P2P_IOAS_MAP_FIXED_IOVA));
		CHECK_OK(p2p_ioas_map_file(ioas, fd0, half, half, &b, RW | P2P_IOAS_MAP_FIXED_IOVA));
		seg_add(IOVA_A, half, B_G0, 0);
		seg_add(IOVA_B, half, B_G0, half);
		idx = ce_drv_queue(&drv, IOVA_A, IOVA_B, half, 0, 600 + round);
		CHECK_OK(ce_drv_kick(&drv));
		/* Most rounds: the engine has picked it up and is copying. */
		while (!(reg(P2P_CE_REG_STATUS, 4) & P2P_CE_STATUS_BUSY) &&
		       ce_drv_head(&drv) == idx)
			sched_yield();
		CHECK_OK(p2p_ioas_unmap(ioas, IOVA_B, half, NULL));
		CHECK_OK(t_mem_enable(gpu0.vdev, false));
		wait_done(idx);
		c = ce_drv_compl(&drv, idx);
		CHECK((c->status == P2P_CE_OK && c->bytes == half) ||
		      (c->status == P2P_CE_FAULT && c->bytes == 0) ||
		      (c->status == P2P_CE_REVOKED && c->bytes == 0));
		ref_copy(IOVA_A, IOVA_B, c->bytes);
		seg_del(IOVA_B, half);
		CHECK_OK(t_mem_enable(gpu0.vdev, true));
		CHECK_OK(p2p_ioas_unmap(ioas, IOVA_A, half, NULL));
		seg_del(IOVA_A, half);
		remap_gpu0();
		expect_ok("gpu0 after remap", S(PAGE * 340), IOVA_G0 + 31 * MiB + 4096, 3000);
		verify_dst(IOVA_G0 + half, half, "unmap during DMA");
	}
	verify_all("unmap during DMA");
}

static void teardown(void)
{
	t_section("teardown");
	ce_drv_fini(&drv);
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, NULL));
	CHECK(p2p_ioas_nr_areas(ioas) == 0);
	p2p_vfio_device_detach_ioas(cev);
	p2p_vfio_device_close(cev);
	p2p_pci_dev_put(cepci);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ictx);
	CHECK_OK(p2p_close(fd0));
	CHECK_OK(p2p_close(fd1));
	CHECK_OK(p2p_close(fdm0));
	CHECK_OK(p2p_close(fdm1));
	t_dev_destroy(&gpu0);
	t_dev_destroy(&gpu1);
	for (int b = 0; b < NR_B; b++)
		free(bk[b].shadow);
	free(sys);
	free(ro_buf);
	free(wo_buf);
	free(adj_buf);
}

int main(void)
{
	t_begin();
	alarm(ALARM);
	setup();
	test_registers();
	t_section("driver init");
	CHECK_OK(ce_drv_init(&drv, cev, ioas, RING));
	if (t_failures)
		return t_end();
	test_directions();
	test_multi_range();
	test_random_batches();
	test_order();
	test_large();
	test_channels();
	test_faults();
	test_truncated_memfd();
	test_revoke();
	test_irq();
	test_enable();
	test_reset();
	test_unmap_during_dma();
	teardown();
	return t_end();
}
