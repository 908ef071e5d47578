// SPDX-License-Identifier: MIT
/*
 * Mapping into an IO address space, through p2p_iommufd_ioctl() with the
 * kernel's structures and through the native p2p_ioas_* calls:
 *   - iommufd ioctl framing (kernel-semantics 2.1);
 *   - IOMMU_IOAS_MAP_FILE validation in the kernel's order (2.2), dma-buf
 *     bounds, multi-range and foreign dma-bufs (2.2 step 11, 1.4), with
 *     and without the P2P_IOAS_MAP_EXTENDED extension, FIXED_IOVA;
 *   - sub-page starts and the IOAS alignment (2.3);
 *   - memfd MAP_FILE and IOAS_MAP of process memory;
 *   - UNMAP, COPY, emulated access and DESTROY rules (2.4);
 *   - vfio_dma_mapping_mmio_test (8.2, 4.2): a BAR mmap VA fails IOAS_MAP
 *     but maps with type1 semantics, and p2p_va_lookup() round-trips.
 *
 * Every translation is checked against the backing memory itself: each
 * run p2p_ioas_dma_begin() returns must start at p2p_mem_ptr() of the
 * right BAR byte (or the right process address) and be exactly as long
 * as the model says.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ull
#define BAR 2
#define BAR_PAGES 64ull
#define BAR_SIZE (BAR_PAGES * PAGE)
#define RW (P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE)
#define RD P2P_IOAS_MAP_READABLE
#define BAD_ID 0xdead
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The single-range dma-buf most checks use: BAR bytes [DB_OFF, DB_OFF + DB_SIZE). */
#define DB_OFF (8 * PAGE)
#define DB_SIZE (4 * PAGE)

static struct t_dev dev;
static struct p2p_iommufd *ictx;

/* A check with a name: @got must be @want (an -errno, or >= 0 for success). */
static void expect(long got, long want, const char *what)
{
	if ((want >= 0 && got < 0) || (want < 0 && got != want)) {
		fprintf(stderr, "[%s] %s: got %ld (%s), want %ld (%s)\n", t_current, what, got,
			got < 0 ? strerror((int)-got) : "ok", want,
			want < 0 ? strerror((int)-want) : "ok");
		t_failures++;
	}
}

/* ---------------------------------------------------------------------- */
/* ioctl wrappers                                                          */

static long ioas_alloc_ioctl(uint32_t *id)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };
	long ret = p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOC, &cmd);

	*id = cmd.out_ioas_id;
	return ret;
}

static long ranges_ioctl(uint32_t id, uint64_t *align)
{
	struct iommu_iova_range r[2];
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd), .ioas_id = id, .num_iovas = 2, .allowed_iovas = (uintptr_t)r
	};
	long ret = p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd);

	*align = ret ? 0 : cmd.out_iova_alignment;
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Translation against a model                                             */

/* One contiguous run the model expects: bytes at @host, @len long. */
struct run {
	const uint8_t *host;
	uint64_t len;
};

/*
 * Walk [iova, iova + sum of runs) with p2p_ioas_dma_begin(): each segment
 * must be exactly the next run (same start, same length).  Returns the
 * number of mismatches (0: the IOVA range maps the model's bytes).
 */
static unsigned int xlate_runs(struct p2p_ioas *ioas, uint64_t iova, const struct run *runs,
			       unsigned int n)
{
	unsigned int bad = 0;

	for (unsigned int i = 0; i < n; i++) {
		struct p2p_dma_seg seg = { 0 };
		uint64_t want = runs[i].len;
		int ret = p2p_ioas_dma_begin(ioas, iova, want, P2P_DMA_READ, &seg);

		if (ret) {
			fprintf(stderr, "[%s] iova 0x%llx: %s\n", t_current,
				(unsigned long long)iova, strerror(-ret));
			return bad + n - i;
		}
		if (seg.host != runs[i].host || seg.len != want) {
			fprintf(stderr, "[%s] iova 0x%llx: run %u is %p+%llu, want %p+%llu\n",
				t_current, (unsigned long long)iova, i, seg.host,
				(unsigned long long)seg.len, (const void *)runs[i].host,
				(unsigned long long)want);
			bad++;
		} else if (((uint8_t *)seg.host)[0] != runs[i].host[0] ||
			   ((uint8_t *)seg.host)[want - 1] != runs[i].host[want - 1]) {
			bad++;
		}
		p2p_ioas_dma_end(&seg);
		iova += want;
	}
	return bad;
}

/* [iova, iova + len) maps BAR bytes from @bar_off on, in one run. */
static bool maps_bar(struct p2p_ioas *ioas, uint64_t iova, uint64_t len, uint64_t bar_off)
{
	struct run r = { t_bar_ptr(dev.pci, BAR, bar_off), len };

	return xlate_runs(ioas, iova, &r, 1) == 0;
}

/* Nothing translates at @iova (translation fault). */
static int xlate_err(struct p2p_ioas *ioas, uint64_t iova)
{
	struct p2p_dma_seg seg = { 0 };
	int ret = p2p_ioas_dma_begin(ioas, iova, 1, P2P_DMA_READ, &seg);

	if (!ret)
		p2p_ioas_dma_end(&seg);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* 2.1: framing                                                            */

static void test_framing(void)
{
	uint64_t big[16] = { 0 };
	struct iommu_ioas_alloc *alloc = (void *)big;
	struct iommu_ioas_map_file *mf = (void *)big;
	struct p2p_ioas *ioas;
	uint32_t id, id2;
	int fd;

	t_section("2.1 framing");
	/* size below the command's minimum -> EINVAL */
	alloc->size = 4;
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOC, alloc), -EINVAL);
	alloc->size = offsetof(struct iommu_ioas_alloc, out_ioas_id);
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOC, alloc), -EINVAL);
	/* larger with zero tail: accepted */
	alloc->size = sizeof(*alloc) + 20;
	CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOC, alloc));
	id = alloc->out_ioas_id;
	CHECK(id != 0);
	CHECK_OK(t_destroy_ioctl(ictx, id));
	/* larger with a non-zero trailing byte: E2BIG */
	memset(big, 0, sizeof(big));
	alloc->size = sizeof(*alloc) + 20;
	((uint8_t *)big)[sizeof(*alloc) + 19] = 1;
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOC, alloc), -E2BIG);
	memset(big, 0, sizeof(big));
	alloc->size = sizeof(*alloc);
	alloc->flags = 1;
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOC, alloc), -EOPNOTSUPP);

	/* unknown commands: ENOTTY */
	memset(big, 0, sizeof(big));
	big[0] = sizeof(big);
	CHECK_ERR(p2p_iommufd_ioctl(ictx, _IO(IOMMUFD_TYPE, 0xff), big), -ENOTTY);
	CHECK_ERR(p2p_iommufd_ioctl(ictx, _IO(IOMMUFD_TYPE, 0x7f), big), -ENOTTY);
	CHECK_ERR(p2p_iommufd_ioctl(ictx, VFIO_DEVICE_FEATURE, big), -ENOTTY);
	/* unreadable argument */
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOC, NULL), -EFAULT);

	/* MAP_FILE framing: 40 bytes, iova is the last field */
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	memset(big, 0, sizeof(big));
	*mf = (struct iommu_ioas_map_file){ .size = sizeof(*mf) - 1, .flags = RW, .ioas_id = id,
					    .fd = fd, .start = 0, .length = DB_SIZE };
	CHECK(sizeof(*mf) == 40);
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP_FILE, mf), -EINVAL);
	mf->size = sizeof(*mf) + 8;
	((uint8_t *)big)[sizeof(*mf) + 2] = 0x80;
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP_FILE, mf), -E2BIG);
	CHECK(p2p_ioas_nr_areas(ioas) == 0);
	((uint8_t *)big)[sizeof(*mf) + 2] = 0;
	mf->iova = 0;
	CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP_FILE, mf));
	CHECK(p2p_ioas_nr_areas(ioas) == 1);
	CHECK(maps_bar(ioas, mf->iova, DB_SIZE, DB_OFF));

	/* bad object IDs: ENOENT from every command that takes one */
	{
		struct iommu_ioas_iova_ranges rg = { .size = sizeof(rg), .ioas_id = BAD_ID };
		struct iommu_ioas_allow_iovas al = { .size = sizeof(al), .ioas_id = BAD_ID };
		struct iommu_ioas_copy cp = { .size = sizeof(cp), .flags = RD,
					      .dst_ioas_id = id, .src_ioas_id = BAD_ID,
					      .length = PAGE, .src_iova = mf->iova };
		uint64_t iova = 0;

		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &rg), -ENOENT);
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_ALLOW_IOVAS, &al), -ENOENT);
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_COPY, &cp), -ENOENT);
		cp.src_ioas_id = id;
		cp.dst_ioas_id = BAD_ID;
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_COPY, &cp), -ENOENT);
		CHECK_ERR(t_map_ioctl(ictx, BAD_ID, big, PAGE, &iova, RW), -ENOENT);
		CHECK_ERR(t_map_file_ioctl(ictx, BAD_ID, fd, 0, PAGE, &iova, RW), -ENOENT);
		CHECK_ERR(t_map_file_ioctl(ictx, 0, fd, 0, PAGE, &iova, RW), -ENOENT);
		CHECK_ERR(t_unmap_ioctl(ictx, BAD_ID, 0, UINT64_MAX, NULL), -ENOENT);
		CHECK_ERR(t_destroy_ioctl(ictx, BAD_ID), -ENOENT);
		CHECK_ERR(t_destroy_ioctl(ictx, 0), -ENOENT);
	}
	/* A destroyed IOAS's ID is gone. */
	CHECK_OK(ioas_alloc_ioctl(&id2));
	CHECK_OK(t_destroy_ioctl(ictx, id2));
	CHECK_ERR(t_destroy_ioctl(ictx, id2), -ENOENT);
	{
		uint64_t iova = 0;

		CHECK_ERR(t_map_file_ioctl(ictx, id2, fd, 0, PAGE, &iova, RW), -ENOENT);
	}
	CHECK(p2p_ioas_nr_areas(ioas) == 1);
	t_ioas_del(ictx, id, ioas);
	p2p_close(fd);
}

/* IOMMU_IOAS_IOVA_RANGES: EMSGSIZE with the count when the array is short. */
static void test_iova_ranges(void)
{
	struct iommu_iova_range r = { 0 };
	struct iommu_ioas_iova_ranges cmd = { .size = sizeof(cmd) };
	struct p2p_ioas *ioas;
	uint32_t id;

	t_section("2.3 IOVA_RANGES");
	id = t_ioas_new(ictx, &ioas);
	cmd.ioas_id = id;
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd), -EMSGSIZE);
	CHECK(cmd.num_iovas == 1);
	cmd.allowed_iovas = (uintptr_t)&r;
	CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd));
	CHECK(cmd.num_iovas == 1 && r.start == 0 && r.last >= (1ull << 48));
	/* no domain: alignment 1; one 4 KiB domain: 4 KiB; back to 1 */
	CHECK(cmd.out_iova_alignment == 1);
	CHECK_OK(p2p_ioas_attach_device(ioas));
	CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd));
	CHECK(cmd.out_iova_alignment == PAGE);
	p2p_ioas_detach_device(ioas);
	CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd));
	CHECK(cmd.out_iova_alignment == 1);
	/* A non-zero __reserved is EOPNOTSUPP, checked before the ID (ENOENT). */
	cmd.__reserved = 1;
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd), -EOPNOTSUPP);
	cmd.ioas_id = BAD_ID;
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd), -EOPNOTSUPP);
	cmd.__reserved = 0;
	CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd), -ENOENT);
	t_ioas_del(ictx, id, ioas);
}

/* ---------------------------------------------------------------------- */
/* 2.2: MAP_FILE validation order                                          */

/*
 * MAP_FILE through the ioctl on @id and natively on @ioas: the ioctl must
 * give @want, the native call @native_want (they differ only where the
 * ioctl fails on the object ID).  Successful maps are checked against the
 * dma-buf at BAR offset @bar_off (when @bar_off != ~0) and unmapped.
 */
static void map_file_both(const char *what, uint32_t id, struct p2p_ioas *ioas, int fd,
			  uint64_t start, uint64_t len, uint32_t flags, int want, int native_want,
			  uint64_t bar_off)
{
	uint64_t iova = 0, done = 0;
	long ret;

	ret = t_map_file_ioctl(ictx, id, fd, start, len, &iova, flags);
	expect(ret, want, what);
	if (!ret) {
		if (bar_off != ~0ull && !maps_bar(ioas, iova, len, bar_off + start))
			expect(-EIO, 0, what);
		expect(p2p_ioas_unmap(ioas, iova, len, &done), 0, what);
		CHECK(done == len);
	}
	iova = 0;
	ret = p2p_ioas_map_file(ioas, fd, start, len, &iova, flags);
	expect(ret, native_want, what);
	if (!ret) {
		if (bar_off != ~0ull && !maps_bar(ioas, iova, len, bar_off + start))
			expect(-EIO, 0, what);
		expect(p2p_ioas_unmap(ioas, iova, len, &done), 0, what);
		CHECK(done == len);
	}
	CHECK(p2p_ioas_nr_areas(ioas) == 0);
}

static void test_map_file_order(void)
{
	const uint64_t M = UINT64_MAX, S = DB_SIZE, N = ~0ull;
	struct p2p_ioas *ioas;
	int fd, closed, pfd[2], null;
	uint32_t id;

	t_section("2.2 MAP_FILE order");
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	for (closed = 1000; fcntl(closed, F_GETFD) >= 0; closed++)
		;
	CHECK(pipe2(pfd, O_CLOEXEC) == 0);
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(null >= 0);

	/* Cases break later rules too where they can: only the first broken one may show. */
	/* 1. unknown flags */
	map_file_both("1 unknown flag", BAD_ID, ioas, -1, 0, 0, RW | 0x80, -EOPNOTSUPP,
		      -EOPNOTSUPP, N);
	map_file_both("1 unknown flag + overflow", BAD_ID, ioas, -1, 0, M, 1u << 31,
		      -EOPNOTSUPP, -EOPNOTSUPP, N);
	/* The p2pbuf extension is not a kernel flag: the ioctl refuses it. */
	map_file_both("1 EXTENDED", id, ioas, fd, 0, S, RW | P2P_IOAS_MAP_EXTENDED, -EOPNOTSUPP, 0,
		      DB_OFF);
	/* 2. iova or length >= ULONG_MAX */
	{
		struct iommu_ioas_map_file cmd = { .size = sizeof(cmd), .flags = 0,
						   .ioas_id = BAD_ID, .fd = -1,
						   .iova = M, .length = 0 };

		expect(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP_FILE, &cmd), -EOVERFLOW,
		       "2 iova ULONG_MAX");
		cmd.iova = 0;
		cmd.length = M;
		expect(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP_FILE, &cmd), -EOVERFLOW,
		       "2 length ULONG_MAX");
	}
	{
		uint64_t iova = M;

		expect(p2p_ioas_map_file(ioas, -1, 0, 0, &iova, 0), -EOVERFLOW,
		       "2 native iova ULONG_MAX");
		iova = 0;
		expect(p2p_ioas_map_file(ioas, -1, 0, M, &iova, 0), -EOVERFLOW,
		       "2 native length ULONG_MAX");
	}
	/* 3. neither READABLE nor WRITEABLE */
	map_file_both("3 no access", BAD_ID, ioas, -1, 0, 0, P2P_IOAS_MAP_FIXED_IOVA, -EINVAL,
		      -EINVAL, N);
	/* 4. bad IOAS (ioctl only; natively the next rule shows) */
	map_file_both("4 bad ioas", BAD_ID, ioas, -1, M, 0, RD, -ENOENT, -EINVAL, N);
	/* 5. length 0 */
	map_file_both("5 length 0", id, ioas, -1, M, 0, RD, -EINVAL, -EINVAL, N);
	/* 6. start + length - 1 overflows */
	map_file_both("6 overflow", id, ioas, -1, M - PAGE + 1, 2 * PAGE, RD, -EOVERFLOW,
		      -EOVERFLOW, N);
	map_file_both("6 overflow by one", id, ioas, -1, 3, M - 1, RD, -EOVERFLOW, -EOVERFLOW,
		      N);
	map_file_both("6 last byte is ULONG_MAX", id, ioas, -1, 2, M - 1, RD, -EBADF, -EBADF, N);
	/* 7. not a dma-buf: EBADF for a bad fd, EINVAL for a non-memfd file */
	map_file_both("7 fd -1", id, ioas, -1, 0, PAGE, RD, -EBADF, -EBADF, N);
	map_file_both("7 closed fd", id, ioas, closed, 0, PAGE, RD, -EBADF, -EBADF, N);
	map_file_both("7 pipe", id, ioas, pfd[0], 0, PAGE, RD, -EINVAL, -EINVAL, N);
	map_file_both("7 /dev/null", id, ioas, null, 0, PAGE, RD, -EINVAL, -EINVAL, N);
	/* 8. the dma-buf path: the map must end inside the buffer */
	map_file_both("8 start=size len=size", id, ioas, fd, S, S, RD, -EINVAL, -EINVAL, N);
	map_file_both("8 len=size+1", id, ioas, fd, 0, S + 1, RD, -EINVAL, -EINVAL, N);
	map_file_both("8 start=1 len=size", id, ioas, fd, 1, S, RD, -EINVAL, -EINVAL, N);
	map_file_both("8 start=size len=1", id, ioas, fd, S, 1, RD, -EINVAL, -EINVAL, N);
	map_file_both("8 huge start", id, ioas, fd, M - PAGE, PAGE, RD, -EINVAL, -EINVAL, N);
	map_file_both("8 last byte", id, ioas, fd, S - 1, 1, RD, 0, 0, DB_OFF);
	map_file_both("8 full map", id, ioas, fd, 0, S, RW, 0, 0, DB_OFF);
	map_file_both("8 read-only full map", id, ioas, fd, 0, S, RD, 0, 0, DB_OFF);
	map_file_both("8 middle", id, ioas, fd, PAGE, 2 * PAGE, RW, 0, 0, DB_OFF);

	close(null);
	close(pfd[0]);
	close(pfd[1]);
	p2p_close(fd);
	t_ioas_del(ictx, id, ioas);
}

/* ---------------------------------------------------------------------- */
/* 2.2 step 11 / 1.4: multi-range and foreign dma-bufs                     */

static void test_multi_range(void)
{
	/* Unsorted, with a hole: dma-buf bytes are the ranges in array order (1.3). */
	static const struct vfio_region_dma_range r[] = {
		{ .offset = 8 * PAGE, .length = 2 * PAGE },
		{ .offset = 0, .length = PAGE },
		{ .offset = 20 * PAGE, .length = 3 * PAGE },
	};
	const uint64_t size = 6 * PAGE;
	struct run runs[ARRAY_SIZE(r)];
	struct p2p_ioas *ioas;
	uint64_t iova = 0, done;
	uint32_t id;
	int fd;

	t_section("2.2 multi-range");
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf(dev.vdev, BAR, r, ARRAY_SIZE(r));
	CHECK(fd >= 0);
	/* Kernel-exact: the private interconnect takes one range only. */
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, size, &iova, RW), -EOPNOTSUPP);
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, PAGE, &iova, RW), -EOPNOTSUPP);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, size, &iova, RW), -EOPNOTSUPP);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 9 * PAGE, PAGE, &iova, RW), -EINVAL);
	CHECK(p2p_ioas_nr_areas(ioas) == 0);

	/* EXTENDED: contiguous in IOVA, each range a run of the right BAR bytes. */
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, size, &iova, RW | P2P_IOAS_MAP_EXTENDED));
	CHECK(p2p_ioas_nr_areas(ioas) == 1);
	for (unsigned int i = 0; i < ARRAY_SIZE(r); i++)
		runs[i] = (struct run){ t_bar_ptr(dev.pci, BAR, r[i].offset), r[i].length };
	CHECK(xlate_runs(ioas, iova, runs, ARRAY_SIZE(r)) == 0);
	/* A translation in the middle of a range runs to that range's end. */
	runs[0] = (struct run){ t_bar_ptr(dev.pci, BAR, 20 * PAGE + 5), 3 * PAGE - 5 };
	CHECK(xlate_runs(ioas, iova + 3 * PAGE + 5, runs, 1) == 0);
	/* Partial unmap of a dma-buf area (2.4). */
	CHECK_ERR(p2p_ioas_unmap(ioas, iova, PAGE, NULL), -EOPNOTSUPP);
	CHECK_OK(p2p_ioas_unmap(ioas, iova, size, &done));
	CHECK(done == size);

	/* A sub-page start across range boundaries: 100 bytes, a page, 50 bytes. */
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 2 * PAGE - 100, 100 + PAGE + 50, &iova,
				   RD | P2P_IOAS_MAP_EXTENDED));
	CHECK(iova % PAGE == PAGE - 100);
	runs[0] = (struct run){ t_bar_ptr(dev.pci, BAR, 10 * PAGE - 100), 100 };
	runs[1] = (struct run){ t_bar_ptr(dev.pci, BAR, 0), PAGE };
	runs[2] = (struct run){ t_bar_ptr(dev.pci, BAR, 20 * PAGE), 50 };
	CHECK(xlate_runs(ioas, iova, runs, 3) == 0);
	CHECK_ERR(xlate_err(ioas, iova + 100 + PAGE + 50), -ENOENT);
	CHECK_ERR(xlate_err(ioas, iova - 1), -ENOENT);
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, NULL));

	p2p_close(fd);
	t_ioas_del(ictx, id, ioas);
}

/* A tiny exporter that is not VFIO: P2P importers welcome, SGT maps. */
static int f_attached, f_mapped;

static int f_attach(struct p2p_dmabuf *buf, struct p2p_attachment *a)
{
	(void)buf;
	if (!p2p_attachment_is_peer2peer(a))
		return -EOPNOTSUPP;
	f_attached++;
	return 0;
}

static void f_detach(struct p2p_dmabuf *buf, struct p2p_attachment *a)
{
	(void)buf;
	(void)a;
	f_attached--;
}

static int f_map(struct p2p_attachment *a, struct p2p_sgt **out)
{
	struct p2p_sgt *sgt = t_sgt_of_ranges(p2p_attachment_dmabuf(a));

	if (!sgt)
		return -ENOMEM;
	f_mapped++;
	*out = sgt;
	return 0;
}

static void f_unmap(struct p2p_attachment *a, struct p2p_sgt *sgt)
{
	(void)a;
	free(sgt);
	f_mapped--;
}

static void f_release(struct p2p_dmabuf *buf)
{
	(void)buf;
}

static const struct p2p_dmabuf_ops foreign_ops = {
	.attach = f_attach,
	.detach = f_detach,
	.map = f_map,
	.unmap = f_unmap,
	.release = f_release,
};

static void test_foreign(void)
{
	struct p2p_mem *mem;
	struct p2p_dmabuf *buf;
	struct p2p_ioas *ioas;
	struct p2p_phys_range pr[2];
	struct p2p_dmabuf_export_info info = { .argsz = sizeof(info) };
	struct run runs[2];
	uint64_t iova = 0;
	uint32_t id;
	int fd;

	t_section("2.2 non-VFIO dma-buf");
	CHECK_OK(p2p_mem_create("ioas-foreign", 4 * PAGE, 0, &mem));
	for (uint64_t o = 0; o < 4 * PAGE; o++)
		*(uint8_t *)p2p_mem_ptr(mem, o) = t_pattern(o + 7);
	pr[0] = (struct p2p_phys_range){ .mem = mem, .offset = 2 * PAGE, .length = 2 * PAGE };
	pr[1] = (struct p2p_phys_range){ .mem = mem, .offset = 0, .length = PAGE };
	info.name = "foreign";
	info.ops = &foreign_ops;
	info.nr_ranges = 1;
	info.ranges = pr;
	CHECK_OK(p2p_dmabuf_export(&info, &buf));
	fd = p2p_dmabuf_fd_install(buf, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	p2p_dmabuf_put(buf);

	id = t_ioas_new(ictx, &ioas);
	/* Only VFIO dma-bufs are importable (2.2 step 11): the attach is undone. */
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, 2 * PAGE, &iova, RW), -EOPNOTSUPP);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, 2 * PAGE, &iova, RW), -EOPNOTSUPP);
	CHECK(f_attached == 0 && f_mapped == 0);
	CHECK(p2p_ioas_nr_areas(ioas) == 0);
	/* The extension maps any exporter that takes a P2P revocable importer. */
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 100, 2 * PAGE - 100, &iova,
				   RW | P2P_IOAS_MAP_EXTENDED));
	CHECK(f_attached == 1 && f_mapped == 1);
	runs[0] = (struct run){ p2p_mem_ptr(mem, 2 * PAGE + 100), 2 * PAGE - 100 };
	CHECK(xlate_runs(ioas, iova, runs, 1) == 0);
	CHECK(iova % PAGE == 100);
	CHECK_OK(p2p_ioas_unmap(ioas, iova, 2 * PAGE - 100, NULL));
	CHECK(f_attached == 0 && f_mapped == 0);
	p2p_close(fd);

	/* Two ranges of a foreign buffer: contiguous with EXTENDED. */
	info.nr_ranges = 2;
	CHECK_OK(p2p_dmabuf_export(&info, &buf));
	fd = p2p_dmabuf_fd_install(buf, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	p2p_dmabuf_put(buf);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, 3 * PAGE, &iova, RW), -EOPNOTSUPP);
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, 3 * PAGE, &iova, RW | P2P_IOAS_MAP_EXTENDED));
	runs[0] = (struct run){ p2p_mem_ptr(mem, 2 * PAGE), 2 * PAGE };
	runs[1] = (struct run){ p2p_mem_ptr(mem, 0), PAGE };
	CHECK(xlate_runs(ioas, iova, runs, 2) == 0);
	t_ioas_del(ictx, id, ioas); /* the destroy unmaps: the attachment goes */
	CHECK(f_attached == 0 && f_mapped == 0);
	p2p_close(fd);
	p2p_mem_put(mem);
}

/* ---------------------------------------------------------------------- */
/* 2.2 step 12: FIXED_IOVA and the written-back IOVA                       */

static void test_fixed(void)
{
	const uint64_t base = 0x100000;
	struct p2p_ioas *ioas;
	uint64_t iova, align;
	uint32_t id;
	int fd;

	t_section("2.2 FIXED_IOVA");
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	iova = base;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK(iova == base);
	CHECK(maps_bar(ioas, base, DB_SIZE, DB_OFF));
	/* busy: EEXIST, whichever way the overlap goes */
	iova = base + PAGE;
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EEXIST);
	iova = base - PAGE;
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, 2 * PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EEXIST);
	iova = base + DB_SIZE - 1;
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EEXIST);
	iova = base - DB_SIZE;
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, 3 * DB_SIZE / 2, &iova,
				   RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EINVAL); /* beyond the buffer: step 8 comes first */
	iova = base - PAGE;
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EEXIST);
	CHECK(p2p_ioas_nr_areas(ioas) == 1);
	/* adjacent on both sides: fine */
	iova = base + DB_SIZE;
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	iova = base - PAGE;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 3 * PAGE, PAGE, &iova,
				  RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK(maps_bar(ioas, base - PAGE, PAGE, DB_OFF + 3 * PAGE));
	CHECK(maps_bar(ioas, base + DB_SIZE, PAGE, DB_OFF));
	CHECK(p2p_ioas_nr_areas(ioas) == 3);

	/* Without FIXED_IOVA the input is ignored and the chosen IOVA written back. */
	iova = base; /* busy: must not be taken */
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW));
	CHECK(iova + DB_SIZE <= base - PAGE || iova >= base + DB_SIZE + PAGE);
	CHECK(maps_bar(ioas, iova, DB_SIZE, DB_OFF));
	CHECK(maps_bar(ioas, base, DB_SIZE, DB_OFF)); /* the old one untouched */
	CHECK_OK(p2p_ioas_unmap(ioas, iova, DB_SIZE, NULL));

	/* A 4 KiB device domain: FIXED must be aligned (2.3). */
	CHECK_OK(p2p_ioas_attach_device(ioas));
	CHECK_OK(ranges_ioctl(id, &align));
	CHECK(align == PAGE);
	iova = 0x300000 + 512;
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EINVAL);
	iova = 0x300000 + 512;
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EINVAL);
	iova = 0x300000;
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, PAGE + 1, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EINVAL);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, PAGE + 1, &iova, RW), -EINVAL);
	iova = base; /* aligned but busy: EEXIST as before */
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EEXIST);
	iova = 0x300000;
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK(maps_bar(ioas, 0x300000, PAGE, DB_OFF));
	/* An object in use is not destroyed: EBUSY (the kernel's iommufd_object_remove()). */
	CHECK_ERR(t_destroy_ioctl(ictx, id), -EBUSY);
	CHECK(maps_bar(ioas, 0x300000, PAGE, DB_OFF));
	p2p_ioas_detach_device(ioas);
	CHECK_OK(ranges_ioctl(id, &align));
	CHECK(align == 1);
	CHECK(p2p_ioas_nr_areas(ioas) == 4);
	t_ioas_del(ictx, id, ioas);
	p2p_close(fd);
}

/* ---------------------------------------------------------------------- */
/* 2.3: sub-page starts                                                    */

static void test_subpage(void)
{
	static const uint64_t starts[] = { 1, 100, PAGE - 1, PAGE + 7, 3 * PAGE + 4000 };
	struct p2p_ioas *ioas;
	uint64_t iova, align;
	struct run r[2];
	uint32_t id;
	int fd;

	t_section("2.3 sub-page start");
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	CHECK_OK(ranges_ioctl(id, &align));
	CHECK(align == 1);

	/* start = 100: the IOVA shows dma-buf byte 100 */
	iova = 0;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 100, PAGE, &iova, RW));
	CHECK(iova % PAGE == 100); /* auto IOVA keeps start % PAGE */
	CHECK(maps_bar(ioas, iova, PAGE, DB_OFF + 100));
	CHECK(*t_bar_ptr(dev.pci, BAR, DB_OFF + 100) == t_pattern(DB_OFF + 100));
	/* crosses into the next page */
	r[0] = (struct run){ t_bar_ptr(dev.pci, BAR, DB_OFF + PAGE), 100 };
	CHECK(xlate_runs(ioas, iova + PAGE - 100, r, 1) == 0);
	CHECK_ERR(xlate_err(ioas, iova + PAGE), -ENOENT);
	CHECK_ERR(xlate_err(ioas, iova - 1), -ENOENT);

	for (unsigned int i = 0; i < ARRAY_SIZE(starts); i++) {
		uint64_t len = DB_SIZE - starts[i];

		iova = 0;
		CHECK_OK(p2p_ioas_map_file(ioas, fd, starts[i], len, &iova, RD));
		CHECK(iova % PAGE == starts[i] % PAGE);
		CHECK(maps_bar(ioas, iova, len, DB_OFF + starts[i]));
		iova = 0;
		CHECK_OK(t_map_file_ioctl(ictx, id, fd, starts[i], 1, &iova, RD));
		CHECK(iova % PAGE == starts[i] % PAGE);
		CHECK(maps_bar(ioas, iova, 1, DB_OFF + starts[i]));
	}
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, NULL));

	/* Domainless: any FIXED IOVA works, even one unrelated to start. */
	iova = 0x500005;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 100, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK(maps_bar(ioas, 0x500005, PAGE, DB_OFF + 100));
	/* A 4 KiB domain can't take it: the attach fails, nothing changes. */
	CHECK_ERR(p2p_ioas_attach_device(ioas), -EINVAL);
	CHECK_OK(ranges_ioctl(id, &align));
	CHECK(align == 1);
	CHECK_OK(p2p_ioas_unmap(ioas, 0x500005, PAGE, NULL));
	/* Aligned IOVA and length, but page_offset 100: no domain can map that either. */
	iova = 0x600000;
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 100, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK(maps_bar(ioas, 0x600000, PAGE, DB_OFF + 100));
	CHECK_ERR(p2p_ioas_attach_device(ioas), -EINVAL);
	CHECK_OK(ranges_ioctl(id, &align));
	CHECK(align == 1);
	iova = 0x700000;
	CHECK_OK(p2p_ioas_map_file(ioas, fd, PAGE, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK_OK(p2p_ioas_unmap(ioas, 0x600000, PAGE, NULL));
	CHECK_OK(p2p_ioas_attach_device(ioas)); /* only aligned areas left */

	/* With the domain: sub-page starts are EINVAL, auto or fixed. */
	CHECK_OK(ranges_ioctl(id, &align));
	CHECK(align == PAGE);
	iova = 0;
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 100, PAGE, &iova, RW), -EINVAL);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 100, PAGE, &iova, RW), -EINVAL);
	iova = 0x800000;
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 100, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EINVAL);
	iova = 0x800000 + 100;
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 100, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EINVAL);
	iova = 0;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, PAGE, 2 * PAGE, &iova, RW));
	CHECK(iova % PAGE == 0);
	CHECK(maps_bar(ioas, iova, 2 * PAGE, DB_OFF + PAGE));
	CHECK(p2p_ioas_nr_areas(ioas) == 2);
	p2p_ioas_detach_device(ioas);
	t_ioas_del(ictx, id, ioas);
	p2p_close(fd);
}

/* ---------------------------------------------------------------------- */
/* memfd MAP_FILE, IOAS_MAP of process memory                              */

static void test_memfd(void)
{
	const uint64_t size = 4 * PAGE;
	static uint8_t data[4 * PAGE];
	uint8_t probe[16];
	struct p2p_ioas *ioas;
	uint64_t iova;
	uint32_t id;
	int mfd;

	t_section("2.1/2.3 memfd MAP_FILE");
	id = t_ioas_new(ictx, &ioas);
	mfd = memfd_create("ioas-map", MFD_CLOEXEC);
	CHECK(mfd >= 0);
	CHECK(ftruncate(mfd, (off_t)size) == 0);
	for (uint64_t o = 0; o < size; o++)
		data[o] = t_pattern(o + 3);
	CHECK(pwrite(mfd, data, size, 0) == (ssize_t)size);

	iova = 0;
	CHECK_OK(t_map_file_ioctl(ictx, id, mfd, PAGE + 7, 2 * PAGE, &iova, RW));
	CHECK(iova % PAGE == 7);
	CHECK(p2p_ioas_nr_areas(ioas) == 1);
	{
		struct p2p_dma_seg seg = { 0 };

		CHECK_OK(p2p_ioas_dma_begin(ioas, iova, 2 * PAGE, P2P_DMA_READ, &seg));
		CHECK(seg.len == 2 * PAGE);
		CHECK(seg.host && !memcmp(seg.host, data + PAGE + 7, 2 * PAGE));
		p2p_ioas_dma_end(&seg);
	}
	/* Memory areas allow emulated access, and it reaches the file. */
	memset(probe, 0xa5, sizeof(probe));
	CHECK_OK(p2p_ioas_access_rw(ioas, iova + 10, probe, sizeof(probe), true));
	memset(data, 0, sizeof(probe));
	CHECK(pread(mfd, data, sizeof(probe), PAGE + 17) == (ssize_t)sizeof(probe));
	CHECK(!memcmp(data, probe, sizeof(probe)));
	/* beyond the file */
	CHECK_ERR(t_map_file_ioctl(ictx, id, mfd, 3 * PAGE, 2 * PAGE, &iova, RW), -EINVAL);
	CHECK_ERR(p2p_ioas_map_file(ioas, mfd, size, 1, &iova, RW), -EINVAL);
	/* natively, at a fixed IOVA */
	iova = 0x40000000;
	CHECK_OK(p2p_ioas_map_file(ioas, mfd, 0, size, &iova, RD | P2P_IOAS_MAP_FIXED_IOVA));
	{
		struct p2p_dma_seg seg = { 0 };

		CHECK_OK(p2p_ioas_dma_begin(ioas, 0x40000000 + PAGE + 17, 16, P2P_DMA_READ, &seg));
		CHECK(seg.len == 16 && !memcmp(seg.host, probe, 16));
		p2p_ioas_dma_end(&seg);
		/* read-only mapping: a device write is refused */
		CHECK_ERR(p2p_ioas_dma_begin(ioas, 0x40000000, 16, P2P_DMA_WRITE, &seg), -EPERM);
	}
	CHECK(p2p_ioas_nr_areas(ioas) == 2);
	t_ioas_del(ictx, id, ioas);
	close(mfd);
}

static void test_user_map(void)
{
	struct p2p_ioas *ioas;
	struct run r;
	uint64_t iova, done;
	uint8_t *buf, *hole;
	uint32_t id;

	t_section("4.2 IOAS_MAP of process memory");
	id = t_ioas_new(ictx, &ioas);
	buf = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	for (uint64_t o = 0; o < 4 * PAGE; o++)
		buf[o] = t_pattern(o + 11);

	iova = 0;
	CHECK_OK(t_map_ioctl(ictx, id, buf + 10, 2 * PAGE, &iova, RW));
	CHECK(iova % PAGE == 10);
	r = (struct run){ buf + 10, 2 * PAGE };
	CHECK(xlate_runs(ioas, iova, &r, 1) == 0);
	iova = 0x10000;
	CHECK_OK(p2p_ioas_map(ioas, buf, 4 * PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	r = (struct run){ buf + PAGE + 1, 3 * PAGE - 1 };
	CHECK(xlate_runs(ioas, 0x10000 + PAGE + 1, &r, 1) == 0);
	CHECK(p2p_ioas_nr_areas(ioas) == 2);

	/* IOAS_MAP checks, in the kernel's order */
	{
		struct iommu_ioas_map cmd = { .size = sizeof(cmd), .flags = RW, .ioas_id = id,
					      .user_va = (uintptr_t)buf, .length = PAGE };

		cmd.__reserved = 1;
		cmd.length = 0;
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP, &cmd), -EOPNOTSUPP);
		cmd.__reserved = 0;
		cmd.flags = RW | 0x100;
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP, &cmd), -EOPNOTSUPP);
		cmd.flags = RW | P2P_IOAS_MAP_EXTENDED;
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP, &cmd), -EOPNOTSUPP);
		cmd.flags = 0;
		cmd.iova = UINT64_MAX;
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP, &cmd), -EOVERFLOW);
		cmd.iova = 0;
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP, &cmd), -EINVAL);
		cmd.flags = RW;
		cmd.ioas_id = BAD_ID;
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP, &cmd), -ENOENT);
		cmd.ioas_id = id;
		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP, &cmd), -EINVAL);
	}
	iova = 0;
	CHECK_ERR(p2p_ioas_map(ioas, buf, 0, &iova, RW), -EINVAL);
	CHECK_ERR(p2p_ioas_map(ioas, buf, PAGE, &iova, 0), -EINVAL);
	CHECK_ERR(p2p_ioas_map(ioas, buf, PAGE, &iova, RW | P2P_IOAS_MAP_EXTENDED), -EOPNOTSUPP);

	/* Unmapped memory: EFAULT, and nothing is left behind. */
	hole = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(hole != MAP_FAILED);
	CHECK(munmap(hole + PAGE, PAGE) == 0);
	iova = 0;
	CHECK_ERR(t_map_ioctl(ictx, id, hole, 2 * PAGE, &iova, RW), -EFAULT);
	CHECK_ERR(p2p_ioas_map(ioas, hole + PAGE - 1, 2, &iova, RW), -EFAULT);
	CHECK_ERR(p2p_ioas_map(ioas, hole + PAGE, 1, &iova, RW), -EFAULT);
	CHECK_ERR(p2p_ioas_map(ioas, NULL, PAGE, &iova, RW), -EFAULT);
	CHECK(p2p_ioas_nr_areas(ioas) == 2);
	CHECK_OK(p2p_ioas_map(ioas, hole, PAGE, &iova, RW));
	r = (struct run){ hole, PAGE };
	CHECK(xlate_runs(ioas, iova, &r, 1) == 0);
	CHECK_OK(p2p_ioas_unmap(ioas, iova, PAGE, &done));
	CHECK(done == PAGE);
	munmap(hole, PAGE);

	t_ioas_del(ictx, id, ioas);
	munmap(buf, 4 * PAGE);
}

/* ---------------------------------------------------------------------- */
/* 2.4: UNMAP, COPY, emulated access                                       */

static void test_unmap(void)
{
	const uint64_t A = 0x1000000, D = 0x2000000, B = 0x3000000;
	struct p2p_ioas *ioas;
	uint64_t iova, done;
	uint8_t *buf;
	uint32_t id;
	int fd;

	t_section("2.4 UNMAP");
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	buf = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	iova = A;
	CHECK_OK(p2p_ioas_map(ioas, buf, 3 * PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	iova = D;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	iova = B;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));

	/* Cutting a dma-buf area: EOPNOTSUPP, a memory area: ENOENT (2.4). */
	CHECK_ERR(p2p_ioas_unmap(ioas, D, PAGE, &done), -EOPNOTSUPP);
	CHECK(done == 0);
	CHECK_ERR(t_unmap_ioctl(ictx, id, D, PAGE, &done), -EOPNOTSUPP);
	CHECK_ERR(t_unmap_ioctl(ictx, id, D + PAGE, DB_SIZE, NULL), -EOPNOTSUPP);
	CHECK_ERR(p2p_ioas_unmap(ioas, D + DB_SIZE - 1, PAGE, NULL), -EOPNOTSUPP);
	CHECK_ERR(p2p_ioas_unmap(ioas, A, PAGE, &done), -ENOENT);
	CHECK(done == 0);
	CHECK_ERR(t_unmap_ioctl(ictx, id, A + PAGE, PAGE, NULL), -ENOENT);
	CHECK_ERR(t_unmap_ioctl(ictx, id, A + PAGE, 0x10000000, NULL), -ENOENT);
	/* Nothing there: ENOENT */
	CHECK_ERR(p2p_ioas_unmap(ioas, 0x5000000, PAGE, NULL), -ENOENT);
	CHECK_ERR(t_unmap_ioctl(ictx, id, A + 3 * PAGE, D - A - 3 * PAGE, NULL), -ENOENT);
	/* Malformed */
	CHECK_ERR(p2p_ioas_unmap(ioas, A, 0, NULL), -EINVAL);
	CHECK_ERR(t_unmap_ioctl(ictx, id, A, 0, NULL), -EINVAL);
	CHECK_ERR(p2p_ioas_unmap(ioas, UINT64_MAX - PAGE + 2, PAGE, NULL), -EOVERFLOW);
	CHECK_ERR(t_unmap_ioctl(ictx, id, UINT64_MAX, 1, NULL), -EOVERFLOW);
	CHECK_ERR(t_unmap_ioctl(ictx, id, 1, UINT64_MAX, NULL), -EOVERFLOW);
	/* The kernel's "unmap all" is iova 0, length U64_MAX; 0, 0 is a length-0 unmap. */
	CHECK_ERR(t_unmap_ioctl(ictx, id, 0, 0, NULL), -EINVAL);
	/* Everything still there */
	CHECK(p2p_ioas_nr_areas(ioas) == 3);
	CHECK(maps_bar(ioas, D, DB_SIZE, DB_OFF));
	{
		struct run r = { buf, 3 * PAGE };

		CHECK(xlate_runs(ioas, A, &r, 1) == 0);
	}

	/* Ranges covering areas entirely: the bytes unmapped are reported. */
	CHECK_OK(t_unmap_ioctl(ictx, id, D - PAGE, DB_SIZE + 2 * PAGE, &done));
	CHECK(done == DB_SIZE);
	CHECK_ERR(xlate_err(ioas, D), -ENOENT);
	CHECK_OK(p2p_ioas_unmap(ioas, A, B - A + PAGE, &done));
	CHECK(done == 3 * PAGE + PAGE);
	CHECK(p2p_ioas_nr_areas(ioas) == 0);

	/* Unmap all: 0, 0 natively, 0, U64_MAX through the ioctl; fine when empty. */
	iova = A;
	CHECK_OK(p2p_ioas_map(ioas, buf, 3 * PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	iova = D;
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, &done));
	CHECK(done == 3 * PAGE + DB_SIZE);
	CHECK(p2p_ioas_nr_areas(ioas) == 0);
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, &done));
	CHECK(done == 0);
	iova = UINT64_MAX - 2 * PAGE; /* the very top of the IOVA space too */
	CHECK_OK(p2p_ioas_map(ioas, buf, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	iova = 0;
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK_OK(t_unmap_ioctl(ictx, id, 0, UINT64_MAX, &done));
	CHECK(done == PAGE + DB_SIZE);
	CHECK(p2p_ioas_nr_areas(ioas) == 0);
	CHECK_OK(t_unmap_ioctl(ictx, id, 0, UINT64_MAX, &done));
	CHECK(done == 0);

	t_ioas_del(ictx, id, ioas);
	p2p_close(fd);
	munmap(buf, 3 * PAGE);
}

static void test_copy(void)
{
	const uint64_t S = 0x1000000;
	struct p2p_ioas *src, *dst;
	struct run runs[2];
	uint64_t iova, done;
	uint32_t sid, did;
	uint8_t *buf, v;
	int fd;

	t_section("2.4 COPY");
	sid = t_ioas_new(ictx, &src);
	did = t_ioas_new(ictx, &dst);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	buf = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	memset(buf, 0x3c, 2 * PAGE);
	/* src: [S, S + 2 pages) memory, then the dma-buf right after it */
	iova = S;
	CHECK_OK(p2p_ioas_map(src, buf, 2 * PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	iova = S + 2 * PAGE;
	CHECK_OK(t_map_file_ioctl(ictx, sid, fd, 0, DB_SIZE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));

	/* Copy a span across both areas: same bytes in dst, one area per part. */
	{
		struct iommu_ioas_copy cmd = {
			.size = sizeof(cmd), .flags = RD, .dst_ioas_id = did,
			.src_ioas_id = sid, .length = PAGE + DB_SIZE, .src_iova = S + PAGE,
			.dst_iova = 0x7000,
		};

		CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_COPY, &cmd));
		iova = cmd.dst_iova;
	}
	CHECK(p2p_ioas_nr_areas(dst) == 2 && p2p_ioas_nr_areas(src) == 2);
	CHECK(iova % PAGE == 0);
	runs[0] = (struct run){ buf + PAGE, PAGE };
	runs[1] = (struct run){ t_bar_ptr(dev.pci, BAR, DB_OFF), DB_SIZE };
	CHECK(xlate_runs(dst, iova, runs, 2) == 0);
	/* The copy carries the flags asked for: read-only here. */
	{
		struct p2p_dma_seg seg = { 0 };

		CHECK_ERR(p2p_ioas_dma_begin(dst, iova, 1, P2P_DMA_WRITE, &seg), -EPERM);
	}
	/* The copied dma-buf area is still a dma-buf area (2.4). */
	CHECK_ERR(p2p_ioas_access_rw(dst, iova + PAGE, &v, 1, false), -EINVAL);
	CHECK_OK(p2p_ioas_access_rw(dst, iova, &v, 1, false));
	CHECK(v == 0x3c);
	CHECK_ERR(p2p_ioas_unmap(dst, iova + PAGE, PAGE, NULL), -EOPNOTSUPP);

	/* Natively, to a fixed IOVA; busy: EEXIST; a hole in the source: ENOENT. */
	iova = 0x900000;
	CHECK_OK(p2p_ioas_copy(dst, src, S + 2 * PAGE + PAGE, PAGE, &iova,
			       RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK(maps_bar(dst, 0x900000, PAGE, DB_OFF + PAGE));
	CHECK_ERR(p2p_ioas_copy(dst, src, S, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EEXIST);
	iova = 0;
	CHECK_ERR(p2p_ioas_copy(dst, src, S + 2 * PAGE + DB_SIZE, PAGE, &iova, RW), -ENOENT);
	CHECK_ERR(p2p_ioas_copy(dst, src, S - PAGE, 2 * PAGE, &iova, RW), -ENOENT);
	CHECK_ERR(p2p_ioas_copy(dst, src, S, 0, &iova, RW), -EINVAL);
	CHECK_ERR(p2p_ioas_copy(dst, src, S, PAGE, &iova, 0), -EINVAL);
	CHECK(p2p_ioas_nr_areas(dst) == 3);

	/* The source going away does not take the copy with it. */
	CHECK_OK(p2p_ioas_unmap(src, 0, 0, &done));
	CHECK(done == 2 * PAGE + DB_SIZE);
	CHECK(maps_bar(dst, 0x900000, PAGE, DB_OFF + PAGE));
	t_ioas_del(ictx, sid, src);
	t_ioas_del(ictx, did, dst);
	p2p_close(fd);
	munmap(buf, 2 * PAGE);
}

/*
 * The top of the IOVA space: an area may end at 2^64 - 1, so every "end"
 * (iova + length) computation wraps there.  COPY of a range inside such an
 * area or up to its last byte, UNMAP of part of it, translation and
 * emulated access of its last bytes all work on last bytes instead.
 */
static void test_top(void)
{
	const uint64_t T = UINT64_MAX - 4 * PAGE + 1; /* 4 pages: [T, 2^64 - 1] */
	struct p2p_ioas *src, *dst;
	struct p2p_dma_seg seg = { 0 };
	uint64_t iova, done;
	uint32_t sid, did;
	uint8_t *buf, v[2];
	int fd;

	t_section("IOVA arithmetic at 2^64 - 1");
	sid = t_ioas_new(ictx, &src);
	did = t_ioas_new(ictx, &dst);
	buf = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	for (unsigned int i = 0; i < 4; i++)
		memset(buf + i * PAGE, 0x50 + i, PAGE);
	iova = T;
	CHECK_OK(p2p_ioas_map(src, buf, 4 * PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));

	/* COPY of a range inside the top area (its "end" wraps to 0). */
	iova = 0x100000;
	CHECK_OK(p2p_ioas_copy(dst, src, T + PAGE, PAGE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	{
		struct run r = { buf + PAGE, PAGE };

		CHECK(xlate_runs(dst, 0x100000, &r, 1) == 0);
	}
	/* ... up to the last byte: iova + length - 1 does not overflow (iopt_get_pages). */
	iova = 0x200000;
	CHECK_OK(p2p_ioas_copy(dst, src, T + 2 * PAGE, 2 * PAGE, &iova,
			       RW | P2P_IOAS_MAP_FIXED_IOVA));
	{
		struct run r = { buf + 2 * PAGE, 2 * PAGE };

		CHECK(xlate_runs(dst, 0x200000, &r, 1) == 0);
	}
	/* ... the whole area, through the ioctl, to the top of dst too. */
	{
		struct iommu_ioas_copy cmd = {
			.size = sizeof(cmd), .flags = RW | P2P_IOAS_MAP_FIXED_IOVA,
			.dst_ioas_id = did, .src_ioas_id = sid, .length = 4 * PAGE,
			.src_iova = T, .dst_iova = T,
		};
		struct run r = { buf, 4 * PAGE };

		CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_COPY, &cmd));
		CHECK(xlate_runs(dst, T, &r, 1) == 0);
	}
	/* One byte past the top still overflows. */
	iova = 0x300000;
	CHECK_ERR(p2p_ioas_copy(dst, src, T + 3 * PAGE, PAGE + 1, &iova,
				RW | P2P_IOAS_MAP_FIXED_IOVA), -EOVERFLOW);
	CHECK(p2p_ioas_nr_areas(dst) == 3);

	/* Translation of the last byte: a run of 1, never a wrapped length. */
	CHECK_OK(p2p_ioas_dma_begin(src, UINT64_MAX, 2, P2P_DMA_READ, &seg));
	CHECK(seg.len == 1 && seg.host == buf + 4 * PAGE - 1);
	p2p_ioas_dma_end(&seg);
	/* Emulated access: the last bytes work; a range wrapping past 2^64 - 1 is EOVERFLOW. */
	CHECK_OK(p2p_ioas_access_rw(src, UINT64_MAX - 1, v, 2, false));
	CHECK(v[0] == 0x53 && v[1] == 0x53);
	CHECK_ERR(p2p_ioas_access_rw(src, UINT64_MAX, v, 2, false), -EOVERFLOW);
	CHECK_ERR(p2p_ioas_access_rw(src, T, v, 0, false), -EINVAL);

	/* UNMAP inside the top area cuts it: ENOENT; from its start to the end: whole. */
	CHECK_ERR(p2p_ioas_unmap(src, T + PAGE, 3 * PAGE, NULL), -ENOENT);
	CHECK_OK(p2p_ioas_unmap(src, T, 4 * PAGE, &done));
	CHECK(done == 4 * PAGE);
	CHECK_OK(p2p_ioas_unmap(dst, T, 4 * PAGE, &done));
	CHECK(done == 4 * PAGE);

	/* A dma-buf area at the top: cutting it is EOPNOTSUPP, not "nothing there". */
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	iova = UINT64_MAX - DB_SIZE + 1;
	CHECK_OK(p2p_ioas_map_file(src, fd, 0, DB_SIZE, &iova, RW | P2P_IOAS_MAP_FIXED_IOVA));
	CHECK_ERR(p2p_ioas_unmap(src, UINT64_MAX - PAGE + 1, PAGE, NULL), -EOPNOTSUPP);
	CHECK_ERR(t_unmap_ioctl(ictx, sid, UINT64_MAX - 2 * PAGE + 1, 2 * PAGE, NULL), -EOPNOTSUPP);
	CHECK(maps_bar(src, UINT64_MAX - DB_SIZE + 1, DB_SIZE, DB_OFF));
	CHECK_OK(t_unmap_ioctl(ictx, sid, UINT64_MAX - DB_SIZE + 1, DB_SIZE, &done));
	CHECK(done == DB_SIZE);
	CHECK(p2p_ioas_nr_areas(src) == 0);
	p2p_close(fd);

	/* MAP_FILE of a memfd where start + length is 2^64: past the file, EINVAL. */
	fd = memfd_create("top", MFD_CLOEXEC);
	CHECK(fd >= 0 && ftruncate(fd, PAGE) == 0);
	iova = 0;
	CHECK_ERR(p2p_ioas_map_file(src, fd, UINT64_MAX - PAGE + 1, PAGE, &iova, RW), -EINVAL);
	close(fd);

	t_ioas_del(ictx, sid, src);
	t_ioas_del(ictx, did, dst);
	munmap(buf, 4 * PAGE);
}

/*
 * A memfd mapped with IOAS_MAP_FILE (or process memory over one) and then
 * shrunk with ftruncate(): the kernel keeps the pages pinned; p2pbuf cannot,
 * but an emulated access to the vanished part is -EFAULT, never a SIGBUS
 * that kills the program.  The program's own SIGBUS handler (the
 * harness's) still gets the faults that are its own.
 */
static void test_truncated(void)
{
	struct p2p_ioas *ioas;
	uint64_t fiova = 0, uiova = 0;
	uint8_t d[64], *va;
	uint32_t id;
	int fd;

	t_section("MAP_FILE memfd, then ftruncate");
	id = t_ioas_new(ictx, &ioas);
	fd = memfd_create("shrink", MFD_CLOEXEC);
	CHECK(fd >= 0 && ftruncate(fd, 4 * PAGE) == 0);
	va = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(va != MAP_FAILED);
	memset(va, 0x6b, 4 * PAGE);
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, 4 * PAGE, &fiova, RW));
	CHECK_OK(p2p_ioas_map(ioas, va, 4 * PAGE, &uiova, RW));
	CHECK_OK(p2p_ioas_access_rw(ioas, fiova + 3 * PAGE, d, sizeof(d), false));
	CHECK(d[0] == 0x6b);

	CHECK(ftruncate(fd, PAGE) == 0);
	/* The program's own access faults, and its handler gets it. */
	CHECK(t_read_faults(va + 2 * PAGE));
	/* Through the IOAS: -EFAULT for the vanished part, both ways, both areas. */
	CHECK_ERR(p2p_ioas_access_rw(ioas, fiova + 2 * PAGE, d, sizeof(d), false), -EFAULT);
	CHECK_ERR(p2p_ioas_access_rw(ioas, fiova + 3 * PAGE + 8, d, sizeof(d), true), -EFAULT);
	CHECK_ERR(p2p_ioas_access_rw(ioas, uiova + 2 * PAGE, d, sizeof(d), false), -EFAULT);
	CHECK_ERR(p2p_ioas_access_rw(ioas, uiova + PAGE, d, sizeof(d), true), -EFAULT);
	/* Straddling: the first page is copied, then the fault. */
	CHECK_ERR(p2p_ioas_access_rw(ioas, fiova + PAGE - 8, d, 16, false), -EFAULT);
	/* What is left still works. */
	memset(d, 0x3e, sizeof(d));
	CHECK_OK(p2p_ioas_access_rw(ioas, fiova + 100, d, sizeof(d), true));
	CHECK(va[100] == 0x3e && va[163] == 0x3e);
	CHECK_OK(p2p_ioas_access_rw(ioas, uiova + 100, d, sizeof(d), false));
	CHECK(d[0] == 0x3e);
	/* Grown back: the pages are new (zero), and reachable again. */
	CHECK(ftruncate(fd, 4 * PAGE) == 0);
	CHECK_OK(p2p_ioas_access_rw(ioas, fiova + 3 * PAGE, d, sizeof(d), false));
	CHECK(d[0] == 0);

	t_ioas_del(ictx, id, ioas);
	munmap(va, 4 * PAGE);
	close(fd);
}

static void test_access(void)
{
	struct p2p_ioas *ioas;
	uint8_t *buf, d[8], before;
	uint64_t iova, ib;
	uint32_t id;
	int fd;

	t_section("2.4 emulated access");
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	buf = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	iova = 0;
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova, RW));
	ib = 0;
	CHECK_OK(p2p_ioas_map(ioas, buf, PAGE, &ib, RW));

	before = *t_bar_ptr(dev.pci, BAR, DB_OFF + 8);
	memset(d, 0x77, sizeof(d));
	CHECK_ERR(p2p_ioas_access_rw(ioas, iova + 8, d, sizeof(d), true), -EINVAL);
	CHECK_ERR(p2p_ioas_access_rw(ioas, iova, d, sizeof(d), false), -EINVAL);
	CHECK(*t_bar_ptr(dev.pci, BAR, DB_OFF + 8) == before);
	CHECK(d[0] == 0x77);
	/* ... while device DMA through the same IOVA is fine */
	CHECK(maps_bar(ioas, iova, DB_SIZE, DB_OFF));

	CHECK_OK(p2p_ioas_access_rw(ioas, ib + 100, d, sizeof(d), true));
	CHECK(buf[100] == 0x77 && buf[107] == 0x77);
	buf[101] = 0x12;
	CHECK_OK(p2p_ioas_access_rw(ioas, ib + 100, d, sizeof(d), false));
	CHECK(d[1] == 0x12);
	CHECK_ERR(p2p_ioas_access_rw(ioas, ib + PAGE - 4, d, sizeof(d), false), -ENOENT);
	t_ioas_del(ictx, id, ioas);
	p2p_close(fd);
	munmap(buf, PAGE);
}

/* ---------------------------------------------------------------------- */
/* 8.2: vfio_dma_mapping_mmio_test                                         */

static struct p2p_ioas *mmio_ioas;
static uint32_t mmio_id;

/*
 * do_mmio_map_test(): native iommufd refuses the BAR VA (and so its unmap
 * finds nothing); type1 maps it and the IOVA reaches the BAR bytes.
 */
static void do_mmio_map_test(void *va, uint64_t size, uint64_t bar_off)
{
	const uint64_t iova = 0x40000000;
	uint64_t out = iova, done = 0;

	CHECK_ERR(p2p_ioas_map(mmio_ioas, va, size, &out, RW | P2P_IOAS_MAP_FIXED_IOVA),
		  -EFAULT);
	out = 0;
	CHECK_ERR(t_map_ioctl(ictx, mmio_id, va, size, &out, RW), -EFAULT);
	CHECK_ERR(p2p_ioas_unmap(mmio_ioas, iova, size, NULL), -ENOENT);
	CHECK(p2p_ioas_nr_areas(mmio_ioas) == 0);

	CHECK_OK(p2p_ioas_map_dma(mmio_ioas, va, size, iova, RW));
	CHECK(maps_bar(mmio_ioas, iova, size, bar_off));
	CHECK_OK(p2p_ioas_unmap(mmio_ioas, iova, size, &done));
	CHECK(done == size);
	CHECK(p2p_ioas_nr_areas(mmio_ioas) == 0);
}

static int mmap_bar(void *addr, uint64_t off, size_t len, int flags, void **va)
{
	return p2p_vfio_device_mmap(dev.vdev, addr, len, PROT_READ | PROT_WRITE,
				    MAP_SHARED | flags, P2P_VFIO_REGION_OFFSET(BAR) + off, va);
}

/* p2p_va_lookup() of BAR mmap addresses gives back (dma-buf, offset). */
static void check_lookup(uint8_t *va, uint64_t size, uint64_t bar_off)
{
	const uint64_t probes[] = { 0, 1, PAGE + 123, size / 2, size - 1 };

	for (unsigned int i = 0; i < ARRAY_SIZE(probes); i++) {
		struct p2p_dmabuf *buf = NULL;
		const struct p2p_phys_range *r;
		uint64_t off = ~0ull, got;
		size_t avail = 0;
		unsigned int nr;

		if (probes[i] >= size)
			continue;
		CHECK_OK(p2p_va_lookup(va + probes[i], &buf, &off, &avail));
		if (!buf)
			continue;
		r = p2p_dmabuf_ranges(buf, &nr);
		CHECK(nr == 1 && r[0].mem == p2p_pci_dev_bar_mem(dev.pci, BAR));
		/* the buffer's byte @off is BAR byte bar_off + probe */
		got = r[0].offset + off;
		CHECK(got == bar_off + probes[i]);
		CHECK(avail == size - probes[i]);
		p2p_dmabuf_put(buf);
	}
	{
		struct p2p_dmabuf *buf;
		uint64_t off;
		int local;

		CHECK_ERR(p2p_va_lookup(&local, &buf, &off, NULL), -EFAULT);
	}
}

static void test_mmio(void)
{
	uint8_t *va, *res, *at;
	uint64_t iova;

	mmio_id = t_ioas_new(ictx, &mmio_ioas);

	t_section("8.2 map_full_bar");
	CHECK_OK(mmap_bar(NULL, 0, BAR_SIZE, 0, (void **)&va));
	CHECK(va[5] == t_pattern(5));
	do_mmio_map_test(va, BAR_SIZE, 0);
	check_lookup(va, BAR_SIZE, 0);

	t_section("8.2 map_partial_bar");
	do_mmio_map_test(va, PAGE, 0);
	do_mmio_map_test(va + 5 * PAGE, 3 * PAGE, 5 * PAGE);
	CHECK_OK(p2p_munmap(va, BAR_SIZE));
	/* a window at a BAR offset */
	CHECK_OK(mmap_bar(NULL, 4 * PAGE, 2 * PAGE, 0, (void **)&va));
	do_mmio_map_test(va, 2 * PAGE, 4 * PAGE);
	check_lookup(va, 2 * PAGE, 4 * PAGE);
	CHECK_OK(p2p_munmap(va, 2 * PAGE));

	t_section("8.2 map_bar_misaligned");
	/* The BAR mapped one page past a 2 MiB boundary. */
	res = mmap(NULL, BAR_SIZE + 4 * (2ull << 20), PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	CHECK(res != MAP_FAILED);
	at = (uint8_t *)(((uintptr_t)res + (2ull << 20)) & ~((uintptr_t)(2ull << 20) - 1)) + PAGE;
	CHECK_OK(mmap_bar(at, 0, BAR_SIZE, MAP_FIXED, (void **)&va));
	CHECK(va == at);
	do_mmio_map_test(va, BAR_SIZE, 0);
	do_mmio_map_test(va + PAGE, BAR_SIZE - 2 * PAGE, PAGE);
	check_lookup(va, BAR_SIZE, 0);
	CHECK_OK(p2p_munmap(va, BAR_SIZE));

	/*
	 * A range that starts in ordinary memory and runs into the BAR mmap
	 * is PFNMAP memory too: native iommufd refuses it as a whole.
	 */
	t_section("4.2 range into a BAR mmap");
	CHECK(mmap(at - PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		   -1, 0) == at - PAGE);
	CHECK_OK(mmap_bar(at, 0, 2 * PAGE, MAP_FIXED, (void **)&va));
	iova = 0;
	CHECK_ERR(p2p_ioas_map(mmio_ioas, at - PAGE, 3 * PAGE, &iova, RW), -EFAULT);
	CHECK_ERR(p2p_ioas_map(mmio_ioas, at - 1, 2, &iova, RW), -EFAULT);
	CHECK_ERR(t_map_ioctl(ictx, mmio_id, at - PAGE, 2 * PAGE, &iova, RW), -EFAULT);
	CHECK(p2p_ioas_nr_areas(mmio_ioas) == 0);
	CHECK_OK(p2p_ioas_map(mmio_ioas, at - PAGE, PAGE, &iova, RW));
	CHECK_OK(p2p_ioas_unmap(mmio_ioas, 0, 0, NULL));
	CHECK_OK(p2p_munmap(va, 2 * PAGE));
	munmap(res, BAR_SIZE + 4 * (2ull << 20));

	t_ioas_del(ictx, mmio_id, mmio_ioas);
}

int main(void)
{
	t_begin();
	t_dev_create_or_skip(&dev, "0000:03:00.0", BAR_SIZE, 1);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	t_bar_fill(dev.pci, BAR, BAR_SIZE);
	CHECK_OK(p2p_iommufd_open(&ictx));

	test_framing();
	test_iova_ranges();
	test_map_file_order();
	test_multi_range();
	test_foreign();
	test_fixed();
	test_subpage();
	test_memfd();
	test_user_map();
	test_unmap();
	test_copy();
	test_top();
	test_access();
	test_truncated();
	test_mmio();

	p2p_iommufd_close(ictx);
	t_dev_destroy(&dev);
	return t_end();
}
