// SPDX-License-Identifier: MIT
/*
 * Multi-range VFIO dma-bufs (kernel-semantics 1.3 "Range semantics", 1.4,
 * 3.2, 3.3): ranges are concatenated in array order, may be unsorted,
 * overlap or alias; the size is the sum of the lengths; the attachment map
 * lists them in array order; a CPU mapping is contiguous in VA at any page
 * offset; p2p_va_lookup() turns any address back into (dma-buf, offset).
 *
 * The BAR holds a pattern derived from the BAR offset, so every dma-buf
 * page can be checked against the BAR byte it must show.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ul
#define BAR 2
#define BAR_PAGES 256ul
#define BAR_SIZE (BAR_PAGES * PAGE)
#define MAX_RANGES 512
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static struct t_dev dev;

static uint64_t pattern(uint64_t bar_off)
{
	return 0x5a5a000000000000ull | (bar_off * 0x10001ull);
}

/* Every 8-byte word of the BAR encodes its own BAR offset. */
static void fill_bar(void)
{
	for (uint64_t o = 0; o < BAR_SIZE; o += 8)
		*(uint64_t *)t_bar_ptr(dev.pci, BAR, o) = pattern(o);
}

struct layout {
	unsigned int nr;
	struct vfio_region_dma_range r[MAX_RANGES];
	uint64_t start[MAX_RANGES + 1]; /* dma-buf offset of each range; start[nr] = size */
};

static void layout_init(struct layout *l)
{
	l->start[0] = 0;
	for (unsigned int i = 0; i < l->nr; i++)
		l->start[i + 1] = l->start[i] + l->r[i].length;
}

/* The model: BAR offset of dma-buf byte @off (1.3: concatenated in order). */
static uint64_t model_bar_off(const struct layout *l, uint64_t off)
{
	for (unsigned int i = 0; i < l->nr; i++)
		if (off < l->start[i + 1])
			return l->r[i].offset + (off - l->start[i]);
	return UINT64_MAX;
}

/*
 * Check [va, va + len), which maps dma-buf bytes from @off on: every page
 * must be the BAR page the model says.  With @pat, the BAR must also still
 * hold the pattern there (so an all-zero BAR cannot pass).  Returns the
 * number of bad pages.
 */
static unsigned int verify(const struct layout *l, const uint8_t *va, uint64_t off, size_t len,
			   bool pat)
{
	unsigned int bad = 0;

	for (size_t p = 0; p < len; p += PAGE) {
		uint64_t b = model_bar_off(l, off + p);
		const uint8_t *q = va + p;

		if (b == UINT64_MAX || t_read_faults(q)) {
			bad++;
			continue;
		}
		if (memcmp(q, t_bar_ptr(dev.pci, BAR, b), PAGE) ||
		    (pat && (*(const uint64_t *)q != pattern(b) ||
			     *(const uint64_t *)(q + PAGE - 8) != pattern(b + PAGE - 8))))
			bad++;
	}
	return bad;
}

static int export(const struct layout *l)
{
	return t_dmabuf(dev.vdev, BAR, l->r, l->nr);
}

static int map(struct p2p_dmabuf *buf, uint64_t off, size_t len, void **va)
{
	return p2p_dmabuf_mmap(buf, NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, off, va);
}

/* The attachment map returns the ranges in array order (1.4, 1.5). */
static void check_sgt(struct p2p_dmabuf *buf, const struct layout *l)
{
	struct t_importer imp;
	unsigned int bad = 0;
	int ret = t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true);

	CHECK_OK(ret);
	if (ret)
		return;
	CHECK_OK(t_importer_map(&imp));
	if (imp.sgt) {
		CHECK(imp.sgt->nents == l->nr);
		for (unsigned int i = 0; i < imp.sgt->nents && i < l->nr; i++) {
			const struct p2p_phys_range *e = &imp.sgt->ents[i];

			bad += e->mem != p2p_pci_dev_bar_mem(dev.pci, BAR) ||
			       e->offset != l->r[i].offset || e->length != l->r[i].length;
		}
		CHECK(bad == 0);
	}
	t_importer_detach(&imp);
}

/* Whole-buffer mapping plus size, SG order and lookups for each range. */
static void check_layout(const struct layout *l, const char *name)
{
	struct p2p_dmabuf *buf, *got;
	unsigned int bad = 0;
	uint64_t off;
	size_t avail;
	uint8_t *va;
	int fd;

	t_section(name);
	fill_bar();
	fd = export(l);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	CHECK(p2p_dmabuf_size(buf) == l->start[l->nr]);
	check_sgt(buf, l);
	CHECK_OK(map(buf, 0, l->start[l->nr], (void **)&va));
	CHECK(verify(l, va, 0, l->start[l->nr], true) == 0);

	/* p2p_va_lookup() on the first, a middle and the last byte of each range. */
	for (unsigned int i = 0; i < l->nr; i++) {
		uint64_t probes[3] = { l->start[i], l->start[i] + l->r[i].length / 2 + 3,
				       l->start[i + 1] - 1 };

		for (int k = 0; k < 3; k++) {
			uint64_t o = probes[k];

			if (p2p_va_lookup(va + o, &got, &off, &avail)) {
				bad++;
				continue;
			}
			bad += got != buf || off != o || avail != l->start[l->nr] - o ||
			       va[o] != *t_bar_ptr(dev.pci, BAR, model_bar_off(l, o));
			p2p_dmabuf_put(got);
		}
	}
	CHECK(bad == 0);

	CHECK_OK(p2p_munmap(va, l->start[l->nr]));
	CHECK_ERR(p2p_va_lookup(va, &got, &off, NULL), -EFAULT);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static void test_unsorted(void)
{
	struct layout l = {
		.nr = 4,
		.r = {
			{ .offset = 6 * PAGE, .length = 2 * PAGE },
			{ .offset = 0, .length = PAGE },
			{ .offset = 3 * PAGE, .length = 3 * PAGE },
			{ .offset = PAGE, .length = PAGE },
		},
	};

	layout_init(&l);
	check_layout(&l, "unsorted ranges keep array order");

	/* Every page of the BAR, in reverse order, one range each. */
	l.nr = BAR_PAGES;
	for (unsigned int i = 0; i < l.nr; i++)
		l.r[i] = (struct vfio_region_dma_range){ (BAR_PAGES - 1 - i) * PAGE, PAGE };
	layout_init(&l);
	check_layout(&l, "256 single-page ranges, reversed");
}

/* Overlapping and aliasing ranges: one BAR byte, several dma-buf offsets. */
static void test_alias(void)
{
	struct layout l = {
		.nr = 3,
		.r = {
			{ .offset = 16 * PAGE, .length = 4 * PAGE },
			{ .offset = 18 * PAGE, .length = 4 * PAGE }, /* overlaps r0's 2nd half */
			{ .offset = 16 * PAGE, .length = 4 * PAGE }, /* aliases r0 exactly */
		},
	};
	struct p2p_dmabuf *buf;
	volatile uint8_t *va, *va2; /* the compiler must not assume the aliases differ */
	int fd;

	layout_init(&l);
	check_layout(&l, "overlapping and aliasing ranges");

	t_section("writes through one alias show through the others");
	fill_bar();
	fd = export(&l);
	CHECK(fd >= 0);
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	CHECK(p2p_dmabuf_size(buf) == 12 * PAGE);
	CHECK_OK(map(buf, 0, 12 * PAGE, (void **)&va));
	/* BAR page 18 is dma-buf page 2 (r0), 4 (r1) and 10 (r2). */
	va[2 * PAGE + 8] = 0xa1;
	CHECK(va[4 * PAGE + 8] == 0xa1 && va[10 * PAGE + 8] == 0xa1);
	va[10 * PAGE + 9] = 0xa2;
	CHECK(va[2 * PAGE + 9] == 0xa2 && va[4 * PAGE + 9] == 0xa2);
	/* BAR page 21 is only in r1 (dma-buf page 7). */
	va[7 * PAGE] = 0xa3;
	CHECK(*t_bar_ptr(dev.pci, BAR, 21 * PAGE) == 0xa3);
	CHECK(*t_bar_ptr(dev.pci, BAR, 18 * PAGE + 8) == 0xa1 &&
	      *t_bar_ptr(dev.pci, BAR, 18 * PAGE + 9) == 0xa2);
	/* A second mapping at a pgoff inside r2 sees the same bytes. */
	CHECK_OK(map(buf, 10 * PAGE, 2 * PAGE, (void **)&va2));
	CHECK(va2[8] == 0xa1 && va2[9] == 0xa2);
	va2[PAGE + 1] = 0xa4; /* dma-buf page 11 = BAR page 19 */
	CHECK(va[3 * PAGE + 1] == 0xa4 && va[5 * PAGE + 1] == 0xa4);
	CHECK(verify(&l, (uint8_t *)va, 0, 12 * PAGE, false) == 0);

	/*
	 * A revoke faults every alias; the un-revoke brings all of them back
	 * with the data (1.6, 1.7 item 1).
	 */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	for (uint64_t p = 0; p < 12 * PAGE; p += PAGE)
		CHECK(t_access(va + p, false, 0, NULL) == SIGBUS);
	CHECK(t_access(va2, false, 0, NULL) == SIGBUS);
	CHECK(t_access(va2 + PAGE, false, 0, NULL) == SIGBUS);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(verify(&l, (uint8_t *)va, 0, 12 * PAGE, false) == 0);
	CHECK(va[4 * PAGE + 8] == 0xa1 && va2[PAGE + 1] == 0xa4);

	CHECK_OK(p2p_munmap((void *)va2, 2 * PAGE));
	CHECK_OK(p2p_munmap((void *)va, 12 * PAGE));
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
}

/* Partial mappings starting at every range boundary (0.4, 3.2, 3.3). */
static void test_boundaries(const struct layout *l)
{
	const uint64_t size = l->start[l->nr];
	struct p2p_dmabuf *buf, *got;
	unsigned int bad = 0, maps = 0;
	uint64_t off;
	uint8_t *va;
	int fd;

	t_section("mmap at every range boundary");
	fill_bar();
	fd = export(l);
	CHECK(fd >= 0);
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	for (unsigned int i = 0; i < l->nr; i++) {
		const uint64_t b = l->start[i], len = l->r[i].length;
		/*
		 * One page, the range, the range minus a bit (rounded up to it),
		 * the range and a page of the next one, everything to the end.
		 */
		const uint64_t lens[] = { PAGE, len, len - 100, len + PAGE, size - b };
		/* And from the middle of the range, across its end. */
		const uint64_t mid = b + (len > PAGE ? PAGE : 0);

		for (unsigned int k = 0; k < ARRAY_SIZE(lens); k++) {
			uint64_t n = lens[k];

			if (!n || b + n > size)
				continue;
			if (map(buf, b, n, (void **)&va)) {
				bad++;
				continue;
			}
			maps++;
			bad += verify(l, va, b, n, true);
			if (p2p_va_lookup(va + n - 1, &got, &off, NULL) || off != b + n - 1)
				bad++;
			else
				p2p_dmabuf_put(got);
			bad += p2p_munmap(va, n) != 0;
		}
		if (mid + 2 * PAGE <= size && !map(buf, mid, 2 * PAGE, (void **)&va)) {
			maps++;
			bad += verify(l, va, mid, 2 * PAGE, true);
			bad += p2p_munmap(va, 2 * PAGE) != 0;
		} else if (mid + 2 * PAGE <= size) {
			bad++;
		}
	}
	CHECK(bad == 0);
	CHECK(maps >= 3 * l->nr);

	/* Bounds of 0.4: the last page maps, one past it does not. */
	CHECK_OK(map(buf, size - PAGE, PAGE, (void **)&va));
	CHECK(verify(l, va, size - PAGE, PAGE, true) == 0);
	CHECK_OK(p2p_munmap(va, PAGE));
	CHECK_ERR(map(buf, size, PAGE, (void **)&va), -EINVAL);
	CHECK_ERR(map(buf, size - PAGE, 2 * PAGE, (void **)&va), -EINVAL);
	CHECK_ERR(map(buf, PAGE / 2, PAGE, (void **)&va), -EINVAL);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
}

/*
 * VA -> (dma-buf, offset) -> a new mapping at that offset shows the same
 * byte, and a write through it lands where the model says (4.2: a user VA
 * becomes the pair (dma-buf, offset)).
 */
static void test_lookup_roundtrip(const struct layout *l)
{
	struct p2p_dmabuf *buf, *got;
	unsigned int bad = 0;
	uint8_t *va, *va2;
	uint64_t off;
	int fd;

	t_section("p2p_va_lookup round trip");
	fill_bar();
	fd = export(l);
	CHECK(fd >= 0);
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	CHECK_OK(map(buf, 0, l->start[l->nr], (void **)&va));
	p2p_dmabuf_put(buf);
	for (unsigned int i = 0; i < l->nr; i++) {
		uint64_t o = l->start[i] + rnd((uint32_t)l->r[i].length);
		uint64_t pg = o & ~(PAGE - 1);

		if (p2p_va_lookup(va + o, &got, &off, NULL)) {
			bad++;
			continue;
		}
		if (off != o || map(got, pg, PAGE, (void **)&va2)) {
			bad++;
			p2p_dmabuf_put(got);
			continue;
		}
		p2p_dmabuf_put(got);
		*(volatile uint8_t *)&va2[o - pg] = (uint8_t)(i + 1);
		bad += *(volatile uint8_t *)&va[o] != (uint8_t)(i + 1) ||
		       *t_bar_ptr(dev.pci, BAR, model_bar_off(l, o)) != (uint8_t)(i + 1);
		bad += p2p_munmap(va2, PAGE) != 0;
	}
	CHECK(bad == 0);
	CHECK(verify(l, va, 0, l->start[l->nr], false) == 0);
	CHECK_OK(p2p_munmap(va, l->start[l->nr]));
	CHECK_OK(p2p_close(fd));
}

/* One bad range anywhere fails the whole export (1.3 items 8, 11). */
static void test_bad_range(void)
{
	struct vfio_region_dma_range r[3] = {
		{ .offset = 0, .length = PAGE },
		{ .offset = 2 * PAGE, .length = PAGE },
		{ .offset = 4 * PAGE, .length = PAGE },
	};

	t_section("a bad range anywhere");
	for (unsigned int i = 0; i < 3; i++) {
		struct vfio_region_dma_range save = r[i];

		r[i].offset = BAR_SIZE - PAGE;
		r[i].length = 2 * PAGE; /* past the end of the BAR */
		CHECK_ERR(t_dmabuf(dev.vdev, BAR, r, 3), -EINVAL);
		r[i].length = PAGE / 2; /* not page aligned */
		CHECK_ERR(t_dmabuf(dev.vdev, BAR, r, 3), -EINVAL);
		r[i].length = 0;
		CHECK_ERR(t_dmabuf(dev.vdev, BAR, r, 3), -EINVAL);
		r[i] = save;
	}
	/* The last page of the BAR, twice, is fine. */
	r[2] = (struct vfio_region_dma_range){ .offset = BAR_SIZE - PAGE, .length = PAGE };
	r[1] = r[2];
	{
		int fd = t_dmabuf(dev.vdev, BAR, r, 3);

		CHECK(fd >= 0);
		if (fd >= 0)
			CHECK_OK(p2p_close(fd));
	}
}

int main(void)
{
	struct layout l;

	t_begin();
	t_dev_create_or_skip(&dev, "0000:02:00.0", BAR_SIZE, 2);
	t_require_uffd();

	test_unsorted();
	test_alias();
	test_bad_range();

	/* 64 scattered ranges of 1-4 pages, overlaps allowed. */
	memset(&l, 0, sizeof(l));
	l.nr = 64;
	for (unsigned int i = 0; i < l.nr; i++) {
		uint64_t pages = 1 + rnd(4);

		l.r[i].offset = rnd((uint32_t)(BAR_PAGES - pages + 1)) * PAGE;
		l.r[i].length = pages * PAGE;
	}
	layout_init(&l);
	check_layout(&l, "64 scattered ranges");
	test_boundaries(&l);
	test_lookup_roundtrip(&l);

	t_dev_destroy(&dev);
	return t_end();
}
