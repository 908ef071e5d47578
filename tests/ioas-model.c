// SPDX-License-Identifier: MIT
/*
 * The IOVA structure of an IO address space against a reference model
 * (kernel-semantics 2.2 step 12, 2.3, 2.4): a seeded sequence of random
 * IOAS_MAP (fixed and automatic IOVA, any length and sub-page offset) of
 * slices of one buffer, IOAS_UNMAP of random ranges, device domain attach
 * and detach, and translations (p2p_ioas_dma_begin), each checked against
 * a plain sorted array of intervals: the result or errno, that a chosen
 * IOVA is free, inside the allowed windows and keeps start % PAGE, that
 * ENOSPC comes only when no hole fits, the host pointer and run length of
 * every translation, and p2p_ioas_nr_areas().  The allowed windows
 * (IOMMU_IOAS_ALLOW_IOVAS) sit at low IOVAs, at 2^40, across 2^48 and at
 * the very top of the IOVA space.
 *
 * Then 10 000 and 100 000 sequential automatic maps must all succeed, not
 * overlap, and translate (a linear-cost allocator would make this test
 * time out; nothing here measures time).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ull
#define RW (P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE)
#define FIXED P2P_IOAS_MAP_FIXED_IOVA
#define NOPS 20000
#define BIG (64ull << 20)
#define MAXA 40000
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

static struct p2p_iommufd *ictx;
static struct p2p_ioas *ioas;
static uint32_t ioas_id;
static uint8_t *big;
static bool dom; /* a device domain is attached */
static unsigned int op_no;

/* What happened, to show the run covered every outcome. */
enum {
	AUTO_OK, AUTO_NOSPC, AUTO_INVAL,
	FIX_OK, FIX_EXIST, FIX_INVAL,
	UNMAP_OK, UNMAP_NOENT,
	XL_OK, XL_NOENT, XL_PERM,
	ATTACH_OK, ATTACH_INVAL,
	NR_OUTCOMES
};
static unsigned int outcomes[NR_OUTCOMES];

/* Allowed IOVA windows; never page 0 nor the last page (the kernel never allocates there). */
static const struct iommu_iova_range windows[] = {
	{ 0x100000, 0x100000 + (32ull << 20) - 1 },
	{ 1ull << 40, (1ull << 40) + (16ull << 20) - 1 },
	{ (1ull << 48) - (4ull << 20), (1ull << 48) + (4ull << 20) - 1 },
	{ 0xffffffffff800000ull, 0xffffffffffffefffull },
};

/* ---------------------------------------------------------------------- */
/* The model: a sorted array of disjoint intervals                         */

struct marea {
	uint64_t iova, len;
	uint8_t *host;
	uint32_t prot;
};

static struct marea model[MAXA];
static size_t nmodel;

static uint64_t m_last(const struct marea *a)
{
	return a->iova + (a->len - 1);
}

/* Index of the first area ending at or after @iova. */
static size_t m_lower(uint64_t iova)
{
	size_t lo = 0, hi = nmodel;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (m_last(&model[mid]) < iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static long m_find(uint64_t iova)
{
	size_t i = m_lower(iova);

	return i < nmodel && model[i].iova <= iova ? (long)i : -1;
}

static bool m_busy(uint64_t lo, uint64_t hi)
{
	size_t i = m_lower(lo);

	return i < nmodel && model[i].iova <= hi;
}

static void m_insert(const struct marea *a)
{
	size_t i = m_lower(a->iova);

	memmove(&model[i + 1], &model[i], (nmodel - i) * sizeof(*model));
	model[i] = *a;
	nmodel++;
}

static void m_remove(size_t i, size_t n)
{
	memmove(&model[i], &model[i + n], (nmodel - i - n) * sizeof(*model));
	nmodel -= n;
}

static const struct iommu_iova_range *m_window(uint64_t lo, uint64_t hi)
{
	for (unsigned int k = 0; k < ARRAY_SIZE(windows); k++)
		if (lo >= windows[k].start && hi <= windows[k].last)
			return &windows[k];
	return NULL;
}

/* Does [gs, ge] hold len bytes at an IOVA with iova % PAGE == phase? */
static bool gap_fits(uint64_t gs, uint64_t ge, uint64_t len, uint64_t phase)
{
	uint64_t c = (gs & ~(PAGE - 1)) | phase;

	if (c < gs && __builtin_add_overflow(c, PAGE, &c))
		return false;
	return c <= ge && ge - c >= len - 1;
}

/* Is there any free, allowed place for an automatic map of @len at @phase? */
static bool m_fit_exists(uint64_t len, uint64_t phase)
{
	for (unsigned int k = 0; k < ARRAY_SIZE(windows); k++) {
		uint64_t cur = windows[k].start, wl = windows[k].last;
		bool full = false;

		for (size_t i = m_lower(cur); i < nmodel && model[i].iova <= wl; i++) {
			if (model[i].iova > cur && gap_fits(cur, model[i].iova - 1, len, phase))
				return true;
			if (m_last(&model[i]) >= wl) {
				full = true;
				break;
			}
			cur = MAX(cur, m_last(&model[i]) + 1);
		}
		if (!full && gap_fits(cur, wl, len, phase))
			return true;
	}
	return false;
}

/* Can a 4 KiB domain map this area: IOVA, length and page offset aligned? */
static bool m_aligned(const struct marea *a)
{
	return !((a->iova | a->len | (uintptr_t)a->host) & (PAGE - 1));
}

static bool m_all_aligned(void)
{
	for (size_t i = 0; i < nmodel; i++)
		if (!m_aligned(&model[i]))
			return false;
	return true;
}

/* ---------------------------------------------------------------------- */
/* Randomness                                                              */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* A slice of the big buffer: sub-page offsets and lengths of every size. */
static void pick_slice(uint64_t *off, uint64_t *len)
{
	unsigned int c = (unsigned int)rnd_below(100);
	bool aligned = rnd_below(2);

	if (c < 35)
		*len = 1 + rnd_below(PAGE);
	else if (c < 75)
		*len = PAGE * (1 + rnd_below(16));
	else if (c < 95)
		*len = PAGE * (1 + rnd_below(256));
	else
		*len = PAGE * (512 + rnd_below(2560)); /* 2-12 MiB: windows fill up */
	if (!aligned && c >= 35 && rnd_below(2))
		*len += 1 + rnd_below(PAGE - 1);
	*off = rnd_below(BIG - *len + 1);
	if (aligned)
		*off &= ~(PAGE - 1);
}

static uint32_t pick_prot(void)
{
	unsigned int c = (unsigned int)rnd_below(20);

	return c < 16 ? RW : c < 19 ? P2P_IOAS_MAP_READABLE : P2P_IOAS_MAP_WRITEABLE;
}

/* ---------------------------------------------------------------------- */
/* Operations                                                              */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "op %u: ", op_no);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	t_failures++;
}

static long do_map(void *va, uint64_t len, uint64_t *iova, uint32_t flags)
{
	if (rnd_below(2))
		return p2p_ioas_map(ioas, va, len, iova, flags);
	return t_map_ioctl(ictx, ioas_id, va, len, iova, flags);
}

static long do_unmap(uint64_t iova, uint64_t len, uint64_t *done)
{
	if (rnd_below(2))
		return p2p_ioas_unmap(ioas, iova, len, done);
	return t_unmap_ioctl(ictx, ioas_id, iova, len, done);
}

/* A random hole [*gs, *ge] right after an area, inside its window. */
static bool m_random_gap(uint64_t *gs, uint64_t *ge)
{
	const struct iommu_iova_range *w;
	size_t i;

	if (!nmodel)
		return false;
	i = rnd_below(nmodel);
	*gs = m_last(&model[i]) + 1;
	w = m_window(*gs, *gs);
	if (!w)
		return false;
	*ge = i + 1 < nmodel ? model[i + 1].iova - 1 : UINT64_MAX;
	*ge = MIN(*ge, w->last);
	return *ge >= *gs && *ge - *gs < (16ull << 20);
}

/*
 * Sometimes size a map to a hole exactly, or one byte too big, with the
 * hole's phase: the allocator's and the busy check's edges.
 */
static bool gap_slice(uint64_t *off, uint64_t *len, uint64_t *at)
{
	uint64_t gs, ge;

	if (rnd_below(4) || !m_random_gap(&gs, &ge))
		return false;
	*len = ge - gs + 1 + rnd_below(2);
	*off = (rnd_below((BIG - *len) / PAGE - 1) * PAGE) | (gs % PAGE);
	*at = gs;
	return true;
}

static void op_map_auto(void)
{
	uint64_t off, len, phase, iova = rnd() >> 1, at;
	uint32_t prot = pick_prot();
	long ret, want;

	if (!gap_slice(&off, &len, &at))
		pick_slice(&off, &len);
	phase = off % PAGE;
	if (dom && ((len % PAGE) || phase))
		want = -EINVAL; /* 2.3: a 4 KiB domain needs aligned values */
	else
		want = m_fit_exists(len, phase) ? 0 : -ENOSPC;
	ret = do_map(big + off, len, &iova, prot);
	outcomes[!ret ? AUTO_OK : ret == -ENOSPC ? AUTO_NOSPC : AUTO_INVAL]++;
	if (ret != want) {
		fail("auto map off 0x%llx len 0x%llx: %ld, want %ld", (unsigned long long)off,
		     (unsigned long long)len, ret, want);
		if (ret)
			return;
	}
	if (ret)
		return;
	if (iova % PAGE != phase)
		fail("auto iova 0x%llx does not keep the phase 0x%llx", (unsigned long long)iova,
		     (unsigned long long)phase);
	if (!m_window(iova, iova + (len - 1)))
		fail("auto iova 0x%llx len 0x%llx outside the allowed windows",
		     (unsigned long long)iova, (unsigned long long)len);
	if (m_busy(iova, iova + (len - 1))) {
		fail("auto iova 0x%llx len 0x%llx overlaps a mapping", (unsigned long long)iova,
		     (unsigned long long)len);
		return; /* the model can't hold it */
	}
	m_insert(&(struct marea){ iova, len, big + off, prot });
}

static void op_map_fixed(void)
{
	const struct iommu_iova_range *w;
	uint64_t off, len, iova, got;
	uint32_t prot = pick_prot();
	unsigned int how = (unsigned int)rnd_below(6);
	bool einval, busy;
	long ret;

	if (gap_slice(&off, &len, &iova)) {
		how = ~0u; /* the hole, exactly or one byte too big */
	} else {
		pick_slice(&off, &len);
		if (!nmodel)
			how = 0;
	}
	if (how == ~0u) {
		/* placed by gap_slice() */
	} else if (how == 0) {
		w = &windows[rnd_below(ARRAY_SIZE(windows))];
		iova = w->start + rnd_below(w->last - w->start + 1);
		if (rnd_below(2))
			iova &= ~(PAGE - 1);
	} else {
		const struct marea *a = &model[rnd_below(nmodel)];

		if (how == 1)
			iova = a->iova + a->len; /* right after an area */
		else if (how == 2)
			iova = a->iova - MIN(a->iova, len); /* right before */
		else if (how == 3)
			iova = a->iova + rnd_below(a->len); /* inside */
		else if (how == 4)
			iova = m_last(a); /* on its last byte */
		else
			iova = a->iova - MIN(a->iova, len - 1); /* ending on its first byte */
	}
	/* Stay inside a window (the kernel doesn't restrict FIXED to them). */
	w = m_window(iova, iova);
	if (!w)
		return;
	if (iova + (len - 1) > w->last || iova + (len - 1) < iova)
		len = w->last - iova + 1;
	einval = dom && ((iova | len | off) % PAGE);
	busy = m_busy(iova, iova + (len - 1));
	got = iova;
	ret = do_map(big + off, len, &got, prot | FIXED);
	outcomes[!ret ? FIX_OK : ret == -EEXIST ? FIX_EXIST : FIX_INVAL]++;
	if (einval && busy ? ret != -EINVAL && ret != -EEXIST
			   : ret != (einval ? -EINVAL : busy ? -EEXIST : 0)) {
		fail("fixed map iova 0x%llx len 0x%llx off 0x%llx (dom %d busy %d): %ld",
		     (unsigned long long)iova, (unsigned long long)len, (unsigned long long)off,
		     dom, busy, ret);
		if (!ret && busy)
			return;
	}
	if (ret)
		return;
	if (got != iova)
		fail("fixed map moved 0x%llx to 0x%llx", (unsigned long long)iova,
		     (unsigned long long)got);
	m_insert(&(struct marea){ iova, len, big + off, prot });
}

/*
 * Expected result of unmapping [lo, hi]: 0 (areas [*first, *first + *n)
 * covered entirely, *bytes), -ENOENT (nothing there, or the first area met
 * is cut), or 1: a covered area before a cut one (the kernel unmaps up to
 * the cut, p2pbuf nothing; left out).
 */
static int m_unmap_expect(uint64_t lo, uint64_t hi, size_t *first, size_t *n, uint64_t *bytes)
{
	size_t i = m_lower(lo);

	*first = i;
	*n = 0;
	*bytes = 0;
	for (; i < nmodel && model[i].iova <= hi; i++) {
		if (model[i].iova < lo || m_last(&model[i]) > hi)
			return *n ? 1 : -ENOENT;
		(*n)++;
		*bytes += model[i].len;
	}
	return *n ? 0 : -ENOENT;
}

static void op_unmap(void)
{
	uint64_t lo, hi, bytes, done = 0;
	unsigned int how = (unsigned int)rnd_below(5);
	size_t first, n, i;
	long ret;
	int want;

	if (!nmodel)
		how = 4;
	i = nmodel ? rnd_below(nmodel) : 0;
	switch (how) {
	case 0: /* one area exactly */
		lo = model[i].iova;
		hi = m_last(&model[i]);
		break;
	case 1: { /* several areas, maybe with the gaps around them */
		size_t j = i + rnd_below(5);
		uint64_t before, after;

		j = MIN(j, nmodel - 1);
		before = i ? model[i].iova - m_last(&model[i - 1]) - 1 : model[i].iova;
		after = j + 1 < nmodel ? model[j + 1].iova - m_last(&model[j]) - 1
				       : UINT64_MAX - 1 - m_last(&model[j]);

		lo = model[i].iova - rnd_below(MIN(before, 1ull << 24) + 1);
		hi = m_last(&model[j]) + rnd_below(MIN(after, 1ull << 24) + 1);
		break;
	}
	case 2: /* starts inside an area */
		lo = model[i].iova + 1 + rnd_below(model[i].len);
		hi = lo + rnd_below(1ull << 22);
		if (hi < lo)
			hi = UINT64_MAX - 1;
		break;
	case 3: /* ends inside an area */
		lo = model[i].iova - rnd_below(MIN(model[i].iova, PAGE) + 1);
		hi = model[i].iova + rnd_below(model[i].len);
		break;
	default: { /* anywhere in a window */
		const struct iommu_iova_range *w = &windows[rnd_below(ARRAY_SIZE(windows))];

		lo = w->start + rnd_below(w->last - w->start);
		hi = lo + rnd_below(MIN(w->last - lo, 1ull << 20) + 1);
		break;
	}
	}
	want = m_unmap_expect(lo, hi, &first, &n, &bytes);
	if (want == 1)
		return; /* kernel and p2pbuf differ on partial progress: not modelled */
	ret = do_unmap(lo, hi - lo + 1, &done);
	outcomes[!ret ? UNMAP_OK : UNMAP_NOENT]++;
	if (ret != want || (!ret && done != bytes)) {
		fail("unmap [0x%llx, 0x%llx]: %ld (%llu bytes), want %d (%llu bytes)",
		     (unsigned long long)lo, (unsigned long long)hi, ret,
		     (unsigned long long)done, want, (unsigned long long)bytes);
		return;
	}
	if (!ret)
		m_remove(first, n);
}

static void op_unmap_all(void)
{
	uint64_t bytes = 0, done = ~0ull;
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = ioas_id, .iova = 0, .length = UINT64_MAX
	};
	long ret;

	for (size_t i = 0; i < nmodel; i++)
		bytes += model[i].len;
	/* "All": 0, 0 natively, 0, U64_MAX through the ioctl; fine when empty. */
	if (rnd_below(2)) {
		ret = p2p_ioas_unmap(ioas, 0, 0, &done);
	} else {
		ret = p2p_iommufd_ioctl(ictx, IOMMU_IOAS_UNMAP, &cmd);
		done = cmd.length;
	}
	if (ret || done != bytes)
		fail("unmap all: %ld, %llu bytes, want %llu", ret, (unsigned long long)done,
		     (unsigned long long)bytes);
	nmodel = 0;
}

static void check_xlate(uint64_t iova, uint64_t req, unsigned int access)
{
	struct p2p_dma_seg seg = { 0 };
	long i = m_find(iova);
	long want = 0;
	int ret;

	if (i < 0)
		want = -ENOENT;
	else if (((access & P2P_DMA_WRITE) && !(model[i].prot & P2P_IOAS_MAP_WRITEABLE)) ||
		 ((access & P2P_DMA_READ) && !(model[i].prot & P2P_IOAS_MAP_READABLE)))
		want = -EPERM;
	ret = p2p_ioas_dma_begin(ioas, iova, req, access, &seg);
	outcomes[!ret ? XL_OK : ret == -ENOENT ? XL_NOENT : XL_PERM]++;
	if (ret != want) {
		fail("translate 0x%llx: %d, want %ld", (unsigned long long)iova, ret, want);
		if (!ret)
			p2p_ioas_dma_end(&seg);
		return;
	}
	if (ret)
		return;
	{
		const struct marea *a = &model[i];
		uint64_t len = MIN(req, a->iova + a->len - iova);

		if (seg.host != a->host + (iova - a->iova) || seg.len != len)
			fail("translate 0x%llx: %p+%llu, want %p+%llu", (unsigned long long)iova,
			     seg.host, (unsigned long long)seg.len,
			     (void *)(a->host + (iova - a->iova)), (unsigned long long)len);
	}
	p2p_ioas_dma_end(&seg);
}

static void op_xlate(void)
{
	static const unsigned int acc[] = { P2P_DMA_READ, P2P_DMA_WRITE,
					    P2P_DMA_READ | P2P_DMA_WRITE };
	uint64_t iova, req = 1 + rnd_below(rnd_below(4) ? 2 * PAGE : 8ull << 20);

	if (nmodel && rnd_below(10) < 7) {
		const struct marea *a = &model[rnd_below(nmodel)];

		iova = a->iova + (rnd_below(3) ? rnd_below(a->len) : rnd_below(2) ? 0 : a->len - 1);
		if (!rnd_below(10))
			iova = rnd_below(2) ? a->iova - 1 : a->iova + a->len; /* just outside */
	} else {
		const struct iommu_iova_range *w = &windows[rnd_below(ARRAY_SIZE(windows))];

		iova = w->start + rnd_below(w->last - w->start + 1);
	}
	check_xlate(iova, req, acc[rnd_below(3)]);
}

static void op_domain(void)
{
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd), .ioas_id = ioas_id, .num_iovas = 0,
	};
	int ret, want;

	if (dom) {
		p2p_ioas_detach_device(ioas);
		dom = false;
	} else {
		/* Half the time, make room for a domain: unmap the misaligned areas. */
		bool clean = rnd_below(2);

		for (size_t i = 0; clean && i < nmodel;) {
			uint64_t done = 0;

			if (m_aligned(&model[i])) {
				i++;
				continue;
			}
			if (do_unmap(model[i].iova, model[i].len, &done) ||
			    done != model[i].len) {
				fail("unmap of area 0x%llx failed",
				     (unsigned long long)model[i].iova);
				return;
			}
			m_remove(i, 1);
		}
		want = m_all_aligned() ? 0 : -EINVAL;
		ret = p2p_ioas_attach_device(ioas);
		outcomes[ret ? ATTACH_INVAL : ATTACH_OK]++;
		if (ret != want)
			fail("attach: %d, want %d", ret, want);
		if (!ret)
			dom = true;
	}
	p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd); /* EMSGSIZE, fills the rest */
	if (cmd.out_iova_alignment != (dom ? PAGE : 1))
		fail("alignment %llu with%s a domain", (unsigned long long)cmd.out_iova_alignment,
		     dom ? "" : "out");
}

/* Every area: first and last byte translate to the model's bytes. */
static void check_all(void)
{
	for (size_t i = 0; i < nmodel; i++) {
		check_xlate(model[i].iova, model[i].len, 0);
		check_xlate(m_last(&model[i]), PAGE, 0);
		if (!model[i].iova || m_busy(model[i].iova - 1, model[i].iova - 1))
			continue;
		check_xlate(model[i].iova - 1, 1, 0); /* the byte before: not mapped */
	}
}

static void test_random(void)
{
	struct iommu_ioas_allow_iovas allow = {
		.size = sizeof(allow), .num_iovas = ARRAY_SIZE(windows),
		.allowed_iovas = (uintptr_t)windows,
	};
	unsigned int counts[7] = { 0 };

	t_section("2.2-2.4 random ops against the model");
	ioas_id = t_ioas_new(ictx, &ioas);
	allow.ioas_id = ioas_id;
	CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOW_IOVAS, &allow));

	for (op_no = 0; op_no < NOPS && t_failures < 20; op_no++) {
		unsigned int c = (unsigned int)rnd_below(1000), k;

		k = c < 350 ? 0 : c < 550 ? 1 : c < 700 ? 2 : c < 970 ? 3 : c < 999 ? 4 : 5;
		switch (k) {
		case 0:
			op_map_auto();
			break;
		case 1:
			op_map_fixed();
			break;
		case 2:
			op_unmap();
			break;
		case 3:
			op_xlate();
			break;
		case 4:
			op_domain();
			break;
		default:
			op_unmap_all();
			break;
		}
		counts[k]++;
		if (p2p_ioas_nr_areas(ioas) != nmodel) {
			fail("%u areas, the model has %zu", p2p_ioas_nr_areas(ioas), nmodel);
			break;
		}
		if (nmodel > MAXA - 10)
			op_unmap_all();
		if (op_no % 2000 == 1999)
			check_all();
	}
	check_all();
	printf("random: %u auto maps, %u fixed, %u unmaps, %u translations, %u domain "
	       "changes, %u unmap-alls; %zu areas at the end\n",
	       counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], nmodel);
	printf("outcomes: auto %u ok %u ENOSPC %u EINVAL; fixed %u ok %u EEXIST %u EINVAL; "
	       "unmap %u ok %u ENOENT; translate %u ok %u ENOENT %u EPERM; "
	       "attach %u ok %u EINVAL\n",
	       outcomes[AUTO_OK], outcomes[AUTO_NOSPC], outcomes[AUTO_INVAL], outcomes[FIX_OK],
	       outcomes[FIX_EXIST], outcomes[FIX_INVAL], outcomes[UNMAP_OK], outcomes[UNMAP_NOENT],
	       outcomes[XL_OK], outcomes[XL_NOENT], outcomes[XL_PERM], outcomes[ATTACH_OK],
	       outcomes[ATTACH_INVAL]);
	/* a run that never saw an outcome proves nothing about it */
	for (unsigned int k = 0; k < NR_OUTCOMES; k++)
		CHECK(outcomes[k] > 0);
	if (dom)
		p2p_ioas_detach_device(ioas);
	dom = false;
	t_ioas_del(ictx, ioas_id, ioas);
}

/* ---------------------------------------------------------------------- */
/* Many sequential automatic maps                                          */

struct span {
	uint64_t iova, len;
};

static int cmp_span(const void *a, const void *b)
{
	uint64_t x = ((const struct span *)a)->iova, y = ((const struct span *)b)->iova;

	return x < y ? -1 : x > y;
}

static uint64_t seq_off(unsigned int i, bool subpage)
{
	return subpage ? (i * 97ull) % (BIG - 2 * PAGE) : (i % 4096) * PAGE;
}

static uint64_t seq_len(unsigned int i, bool subpage)
{
	return subpage ? PAGE + (i % 3) * 100 : PAGE;
}

static void test_sequential(unsigned int n, bool subpage)
{
	struct span *sp = calloc(n, sizeof(*sp)), *sorted = calloc(n, sizeof(*sp));
	uint64_t total = 0, done = 0;
	unsigned int bad = 0;
	struct p2p_ioas *s;
	uint32_t id;

	t_section(subpage ? "2.2 sequential auto maps, sub-page" : "2.2 sequential auto maps");
	CHECK(sp && sorted);
	if (!sp || !sorted)
		goto out;
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &s));
	for (unsigned int i = 0; i < n; i++) {
		uint64_t off = seq_off(i, subpage);
		int ret;

		sp[i].len = seq_len(i, subpage);
		ret = p2p_ioas_map(s, big + off, sp[i].len, &sp[i].iova, RW);
		if (ret || sp[i].iova % PAGE != off % PAGE) {
			if (bad++ < 5)
				fprintf(stderr, "map %u: %s, iova 0x%llx\n", i, strerror(-ret),
					(unsigned long long)sp[i].iova);
		}
		total += sp[i].len;
	}
	CHECK(bad == 0);
	CHECK(p2p_ioas_nr_areas(s) == n);
	/* no two maps overlap */
	memcpy(sorted, sp, n * sizeof(*sp));
	qsort(sorted, n, sizeof(*sorted), cmp_span);
	bad = 0;
	for (unsigned int i = 1; i < n; i++)
		bad += sorted[i].iova < sorted[i - 1].iova + sorted[i - 1].len;
	CHECK(bad == 0);
	/* every one translates to its slice, and only to its end */
	bad = 0;
	for (unsigned int i = 0; i < n; i++) {
		struct p2p_dma_seg seg = { 0 };

		if (p2p_ioas_dma_begin(s, sp[i].iova, 2 * PAGE, P2P_DMA_READ, &seg)) {
			bad++;
			continue;
		}
		bad += seg.host != big + seq_off(i, subpage) || seg.len != sp[i].len;
		p2p_ioas_dma_end(&seg);
	}
	CHECK(bad == 0);
	CHECK_OK(p2p_ioas_unmap(s, 0, 0, &done));
	CHECK(done == total);
	CHECK(p2p_ioas_nr_areas(s) == 0);
	t_ioas_del(ictx, id, s);
out:
	free(sp);
	free(sorted);
}

int main(int argc, char **argv)
{
	t_begin();
	if (argc > 1)
		rng = strtoull(argv[1], NULL, 0) | 1;
	printf("seed 0x%llx\n", (unsigned long long)rng);
	big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (big == MAP_FAILED)
		t_skip("cannot reserve the buffer");
	CHECK_OK(p2p_iommufd_open(&ictx));

	test_random();
	test_sequential(10000, false);
	test_sequential(10000, true);
	test_sequential(100000, false);

	p2p_iommufd_close(ictx);
	munmap(big, BIG);
	return t_end();
}
