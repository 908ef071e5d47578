// SPDX-License-Identifier: MIT
/*
 * VFIO_DEVICE_FEATURE: the core validation every feature goes through
 * (kernel-semantics 1.2), feature 11 DMA_BUF with each of its checks in the
 * kernel's order (1.3), features 13 DMA_BUF_REVOKE and 14 DMA_BUF_MEMATTR
 * (3.4) and the runtime low-power features 3 and 5 (1.7 item 3).
 *
 * Where two rules collide, the test sets up both violations at once and
 * expects the errno of the rule the kernel checks first.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <limits.h>
#include <stddef.h>
#include <sys/uio.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ull
#define BAR0_SIZE 16384ull	 /* harness device: BAR0 */
#define BAR2_SIZE (1ull << 20) /* the BAR2 size this test asks for */
#define BIT63 (1ull << 63)

#define F_GET VFIO_DEVICE_FEATURE_GET
#define F_SET VFIO_DEVICE_FEATURE_SET
#define F_PROBE VFIO_DEVICE_FEATURE_PROBE

/*
 * struct db_req - VFIO_DEVICE_FEATURE with a DMA_BUF payload, flattened
 *
 * The kernel's structures end in flexible arrays, so they cannot be nested;
 * this is the same layout spelled out (checked below).
 */
struct db_req {
	uint32_t argsz; /* struct vfio_device_feature */
	uint32_t flags;
	uint32_t region_index; /* struct vfio_device_feature_dma_buf */
	uint32_t open_flags;
	uint32_t dflags;
	uint32_t nr_ranges;
	struct vfio_region_dma_range ranges[4];
};
static_assert(offsetof(struct db_req, region_index) == sizeof(struct vfio_device_feature),
	      "payload follows the 8-byte header");
static_assert(offsetof(struct db_req, ranges) == sizeof(struct vfio_device_feature) +
							sizeof(struct vfio_device_feature_dma_buf),
	      "ranges follow the 16-byte fixed part");
static_assert(sizeof(struct vfio_region_dma_range) == 16, "a range is 16 bytes");

/* A generic request: the 8-byte header and up to 16 bytes of payload. */
struct feat_req {
	uint32_t argsz;
	uint32_t flags;
	uint32_t data[4];
};

#define HDR_SZ ((uint32_t)sizeof(struct vfio_device_feature))
#define DB_MINSZ ((uint32_t)sizeof(struct vfio_device_feature_dma_buf))

static struct t_dev dev;
static uint64_t bar2_bus; /* BAR2's bus address, read from config space */

static long feature(struct p2p_vfio_device *vdev, void *arg)
{
	return p2p_vfio_device_ioctl(vdev, VFIO_DEVICE_FEATURE, arg);
}

/* A DMA_BUF GET request for @nr ranges of @region, argsz covering them. */
static void db_init(struct db_req *q, uint32_t region, uint32_t nr)
{
	memset(q, 0, sizeof(*q));
	q->argsz = HDR_SZ + DB_MINSZ + nr * (uint32_t)sizeof(q->ranges[0]);
	q->flags = F_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	q->region_index = region;
	q->open_flags = O_RDWR | O_CLOEXEC;
	q->nr_ranges = nr;
}

static void db_range(struct db_req *q, unsigned int i, uint64_t offset, uint64_t length)
{
	q->ranges[i].offset = offset;
	q->ranges[i].length = length;
}

/* VFIO_DEVICE_FEATURE with @q on the test device: a new fd or -errno. */
static long db_get(struct db_req *q)
{
	return feature(dev.vdev, q);
}

/* db_get() of a request for the one range [@offset, @offset + @length) of @region. */
static long db_get1(struct db_req *q, uint32_t region, uint64_t offset, uint64_t length)
{
	db_init(q, region, 1);
	db_range(q, 0, offset, length);
	return db_get(q);
}

/*
 * Check that @fd is a dma-buf of @size bytes whose FD_CLOEXEC is @cloexec,
 * then close it.  Any failure is reported by the caller's line too.
 */
static bool check_dmabuf_fd(long fd, uint64_t size, bool cloexec)
{
	struct p2p_dmabuf *buf;
	bool ok = true;
	int fl;

	if (fd < 0) {
		fprintf(stderr, "  expected a dma-buf fd, got %ld (%s)\n", fd, strerror((int)-fd));
		return false;
	}
	fl = fcntl((int)fd, F_GETFD);
	if (fl < 0 || !!(fl & FD_CLOEXEC) != cloexec) {
		fprintf(stderr, "  fd %ld: FD_CLOEXEC %s, want %s\n", fd,
			fl < 0 ? "?" : (fl & FD_CLOEXEC) ? "set" : "clear",
			cloexec ? "set" : "clear");
		ok = false;
	}
	if (p2p_dmabuf_get((int)fd, &buf)) {
		fprintf(stderr, "  fd %ld is not a dma-buf\n", fd);
		ok = false;
	} else {
		if (p2p_dmabuf_size(buf) != size) {
			fprintf(stderr, "  fd %ld: size %llu, want %llu\n", fd,
				(unsigned long long)p2p_dmabuf_size(buf), (unsigned long long)size);
			ok = false;
		}
		p2p_dmabuf_put(buf);
	}
	p2p_close((int)fd);
	return ok;
}

/*
 * guard_page() - two pages, the second PROT_NONE
 *
 * Returns the address of the PROT_NONE page: a structure placed just below
 * it is readable up to that address and faults right after (the kernel's
 * copy_from_user() -> EFAULT).
 */
static uint8_t *guard_page(void)
{
	uint8_t *p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			  0);

	if (p == MAP_FAILED)
		return NULL;
	if (mprotect(p + PAGE, PAGE, PROT_NONE)) {
		munmap(p, 2 * PAGE);
		return NULL;
	}
	return p + PAGE;
}

static void guard_page_free(uint8_t *g)
{
	if (g)
		munmap(g - PAGE, 2 * PAGE);
}

/*
 * copy_faults_work() - can the library tell a bad pointer from a good one?
 *
 * Its copy_from_user() reads through process_vm_readv(); where that
 * syscall is refused (seccomp: EPERM/ENOSYS) it falls back to memcpy and a
 * bad pointer crashes instead of giving EFAULT.  The EFAULT checks need it.
 */
static bool copy_faults_work(void)
{
	static int works = -1;
	uint64_t src = 1, dst = 0;
	struct iovec l = { &dst, sizeof(dst) }, r = { &src, sizeof(src) };

	if (works < 0) {
		works = process_vm_readv(getpid(), &l, 1, &r, 1, 0) == sizeof(dst);
		if (!works)
			printf("note: process_vm_readv unavailable (%s): EFAULT checks skipped\n",
			       strerror(errno));
	}
	return works;
}

/* ---------------------------------------------------------------------- */

/* kernel-semantics 1.2: the core checks, in order, for any feature number. */
static void test_core_checks(void)
{
	struct feat_req q;
	uint8_t *g;

	t_section("1.2 core VFIO_DEVICE_FEATURE checks");

	/* 1.2.1: argsz < 8 (the header) -> EINVAL, checked before anything else. */
	for (uint32_t sz = 0; sz < HDR_SZ; sz++) {
		q = (struct feat_req){ .argsz = sz, .flags = F_GET | VFIO_DEVICE_FEATURE_DMA_BUF };
		CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
	}
	/* 1.2.1 before 1.2.4: a short argsz on an unknown feature is EINVAL, not ENOTTY. */
	q = (struct feat_req){ .argsz = 7, .flags = F_GET | 99 };
	CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
	/* 1.2.1 before 1.2.5: PROBE does not bypass the header-size check. */
	q = (struct feat_req){ .argsz = 4, .flags = F_PROBE | F_GET | VFIO_DEVICE_FEATURE_DMA_BUF };
	CHECK_ERR(feature(dev.vdev, &q), -EINVAL);

	/* 1.2.2: any flag bit outside MASK|GET|SET|PROBE -> EINVAL. */
	for (unsigned int bit = 19; bit < 32; bit++) {
		q = (struct feat_req){ .argsz = sizeof(q),
				       .flags = F_GET | VFIO_DEVICE_FEATURE_DMA_BUF | (1u << bit) };
		CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
	}
	/* 1.2.2 before 1.2.4: unknown bit on an unknown feature is EINVAL. */
	q = (struct feat_req){ .argsz = sizeof(q), .flags = F_PROBE | (1u << 19) | 99 };
	CHECK_ERR(feature(dev.vdev, &q), -EINVAL);

	/* 1.2.3: GET and SET together without PROBE -> EINVAL. */
	q = (struct feat_req){ .argsz = sizeof(q), .flags = F_GET | F_SET |
							    VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY };
	CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
	/* 1.2.3 before 1.2.4: GET|SET on an unknown feature is EINVAL, not ENOTTY. */
	q = (struct feat_req){ .argsz = sizeof(q), .flags = F_GET | F_SET | 99 };
	CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
	/* 1.2.3 only applies without PROBE: GET|SET|PROBE on an unknown feature -> ENOTTY. */
	q = (struct feat_req){ .argsz = sizeof(q), .flags = F_GET | F_SET | F_PROBE | 99 };
	CHECK_ERR(feature(dev.vdev, &q), -ENOTTY);

	/*
	 * 1.2.4: feature numbers this driver does not handle -> ENOTTY, for
	 * GET, SET, PROBE alike: VF token (no SR-IOV), migration, DMA logging,
	 * MIG_DATA_SIZE, PRECOPY_INFOv2 (no migration ops), unassigned numbers.
	 */
	{
		static const uint32_t unknown[] = { 0, 1, 2, 6, 7, 8, 9, 12, 15, 16, 100, 0xffff };
		static const uint32_t dirs[] = { F_GET, F_SET, F_PROBE, F_PROBE | F_GET, 0 };

		for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
			for (size_t j = 0; j < sizeof(dirs) / sizeof(dirs[0]); j++) {
				q = (struct feat_req){ .argsz = sizeof(q),
						       .flags = dirs[j] | unknown[i] };
				CHECK_ERR(feature(dev.vdev, &q), -ENOTTY);
			}
		}
	}

	/* The 8-byte header itself is copied from user memory: a bad pointer -> EFAULT. */
	if (!copy_faults_work())
		return;
	g = guard_page();
	CHECK(g != NULL);
	if (g) {
		CHECK_ERR(feature(dev.vdev, g), -EFAULT);
		/* Half the header readable, half not. */
		memset(g - 4, 0, 4);
		CHECK_ERR(feature(dev.vdev, g - 4), -EFAULT);
		guard_page_free(g);
	}
}

/* kernel-semantics 1.2.5: vfio_check_feature() for each implemented feature. */
static void test_check_feature(void)
{
	struct feat_req q;
	struct db_req d;
	int fd;

	t_section("1.2.5 per-feature checks");

	/* DMA_BUF (GET only, minsz 16). */
	/* Requested SET not supported -> EINVAL, with or without PROBE or GET. */
	q = (struct feat_req){ .argsz = sizeof(q), .flags = F_SET | VFIO_DEVICE_FEATURE_DMA_BUF };
	CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
	q.flags = F_SET | F_PROBE | VFIO_DEVICE_FEATURE_DMA_BUF;
	CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
	q.flags = F_GET | F_SET | F_PROBE | VFIO_DEVICE_FEATURE_DMA_BUF;
	CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
	/* PROBE returns 0 before the argsz check: argsz 8 is enough to probe. */
	q = (struct feat_req){ .argsz = HDR_SZ,
			       .flags = F_PROBE | F_GET | VFIO_DEVICE_FEATURE_DMA_BUF };
	CHECK_ERR(feature(dev.vdev, &q), 0);
	CHECK(feature(dev.vdev, &q) == 0); /* 0, not a new fd */
	/* PROBE with neither GET nor SET -> 0 too. */
	q.flags = F_PROBE | VFIO_DEVICE_FEATURE_DMA_BUF;
	CHECK(feature(dev.vdev, &q) == 0);
	/* A full, valid request with PROBE does nothing and returns 0 (no fd). */
	db_init(&d, 2, 1);
	db_range(&d, 0, 0, PAGE);
	d.flags |= F_PROBE;
	CHECK(db_get(&d) == 0);
	/* Neither GET nor SET without PROBE -> EINVAL. */
	q = (struct feat_req){ .argsz = sizeof(q), .flags = VFIO_DEVICE_FEATURE_DMA_BUF };
	CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
	/* argsz < header + minsz (16) -> EINVAL; exactly 8 + 16 passes this check. */
	for (uint32_t sz = HDR_SZ; sz < HDR_SZ + DB_MINSZ; sz++) {
		db_init(&d, 2, 1);
		db_range(&d, 0, 0, PAGE);
		d.argsz = sz;
		CHECK_ERR(db_get(&d), -EINVAL);
	}

	/* LOW_POWER_ENTRY / EXIT (SET only, minsz 0). */
	for (uint32_t f = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
	     f <= VFIO_DEVICE_FEATURE_LOW_POWER_EXIT; f += 2) {
		q = (struct feat_req){ .argsz = HDR_SZ, .flags = F_GET | f };
		CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
		q.flags = F_GET | F_PROBE | f;
		CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
		q.flags = f;
		CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
		q.flags = F_SET | F_PROBE | f;
		CHECK_ERR(feature(dev.vdev, &q), 0);
		q.flags = F_PROBE | f;
		CHECK_ERR(feature(dev.vdev, &q), 0);
	}
	/* A PROBE of LOW_POWER_ENTRY must not enter low power. */
	CHECK(p2p_pci_dev_memory_enabled(dev.pci));

	/* DMA_BUF_REVOKE (SET only, minsz 4) and MEMATTR (SET only, minsz 8). */
	fd = t_dmabuf_range(dev.vdev, 2, 0, PAGE);
	CHECK(fd >= 0);
	{
		static const uint32_t feats[] = { VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE,
						  VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR };
		static const uint32_t minsz[] = {
			sizeof(struct vfio_device_feature_dma_buf_revoke),
			sizeof(struct vfio_device_feature_dma_buf_memattr),
		};
		struct p2p_dmabuf *buf = NULL;

		CHECK_OK(p2p_dmabuf_get(fd, &buf));
		for (int i = 0; i < 2; i++) {
			q = (struct feat_req){ .argsz = sizeof(q), .flags = F_GET | feats[i] };
			q.data[0] = (uint32_t)fd;
			q.data[1] = VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC;
			/* 3.4: GET is not supported -> EINVAL. */
			CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
			q.flags = F_GET | F_PROBE | feats[i];
			CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
			/* 1.2.5: SET|PROBE -> 0 and nothing happens. */
			q.flags = F_SET | F_PROBE | feats[i];
			CHECK_ERR(feature(dev.vdev, &q), 0);
			/* 1.2.5: argsz < 8 + minsz -> EINVAL. */
			q.flags = F_SET | feats[i];
			q.argsz = HDR_SZ + minsz[i] - 1;
			CHECK_ERR(feature(dev.vdev, &q), -EINVAL);
		}
		if (buf) {
			/* None of the above revoked the buffer or changed its memattr. */
			CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);
			CHECK(p2p_vfio_dmabuf_memattr(buf) == VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_NC);
			p2p_dmabuf_put(buf);
		}
	}
	if (fd >= 0)
		p2p_close(fd);
}

/* kernel-semantics 1.3.1: no get_dmabuf_phys op -> EOPNOTSUPP, before the feature check. */
static void test_no_dmabuf_device(void)
{
	struct t_dev nd;
	struct feat_req q;
	struct db_req d;
	int ret;

	t_section("1.3.1 device without DMA_BUF support");
	ret = t_dev_create(&nd, "0000:02:00.0", BAR2_SIZE, P2P_PCI_NO_DMABUF, NULL, 2);
	CHECK_OK(ret);
	if (ret)
		return;

	db_init(&d, 2, 1);
	db_range(&d, 0, 0, PAGE);
	CHECK_ERR(feature(nd.vdev, &d), -EOPNOTSUPP);
	/* Even PROBE reports EOPNOTSUPP: the op check comes before vfio_check_feature. */
	d.flags = F_PROBE | F_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	CHECK_ERR(feature(nd.vdev, &d), -EOPNOTSUPP);
	d.flags = F_PROBE | VFIO_DEVICE_FEATURE_DMA_BUF;
	CHECK_ERR(feature(nd.vdev, &d), -EOPNOTSUPP);
	/* 1.3.1 before 1.3.3: SET (unsupported direction) is EOPNOTSUPP too. */
	d.flags = F_SET | VFIO_DEVICE_FEATURE_DMA_BUF;
	CHECK_ERR(feature(nd.vdev, &d), -EOPNOTSUPP);
	/* 1.3.1 before 1.3.3: argsz below 8 + 16 is EOPNOTSUPP. */
	q = (struct feat_req){ .argsz = HDR_SZ, .flags = F_GET | VFIO_DEVICE_FEATURE_DMA_BUF };
	CHECK_ERR(feature(nd.vdev, &q), -EOPNOTSUPP);
	/* 1.3.1 before 1.3.5: nr_ranges 0 is EOPNOTSUPP. */
	db_init(&d, 2, 0);
	CHECK_ERR(feature(nd.vdev, &d), -EOPNOTSUPP);
	/* The core checks (1.2.1-1.2.3) still come first. */
	q = (struct feat_req){ .argsz = 7, .flags = F_GET | VFIO_DEVICE_FEATURE_DMA_BUF };
	CHECK_ERR(feature(nd.vdev, &q), -EINVAL);
	q = (struct feat_req){ .argsz = sizeof(q),
			       .flags = F_GET | F_SET | VFIO_DEVICE_FEATURE_DMA_BUF };
	CHECK_ERR(feature(nd.vdev, &q), -EINVAL);
	q.flags = F_GET | (1u << 20) | VFIO_DEVICE_FEATURE_DMA_BUF;
	CHECK_ERR(feature(nd.vdev, &q), -EINVAL);
	/* The typed helper goes the same way. */
	CHECK_ERR(p2p_vfio_device_get_dmabuf(nd.vdev, 2, &(struct vfio_region_dma_range){ 0, PAGE },
					      1, O_CLOEXEC),
		  -EOPNOTSUPP);
	t_dev_destroy(&nd);
}

/*
 * VFIO_DEVICE_FEATURE with the first @len bytes of @d placed just below the
 * guard page @g: any read beyond them faults.
 */
static long feature_below(uint8_t *g, const struct db_req *d, uint32_t len)
{
	memcpy(g - len, d, len);
	return feature(dev.vdev, g - len);
}

/* kernel-semantics 1.3.4 and 1.3.7: copies from user memory that fault -> EFAULT. */
static void test_copy_faults(void)
{
	struct db_req d;
	uint8_t *g;

	t_section("1.3.4/1.3.7 EFAULT");
	if (!copy_faults_work())
		return;
	g = guard_page();
	CHECK(g != NULL);
	if (!g)
		return;

	/* 1.3.4: the 16-byte DMA_BUF header lies entirely in the PROT_NONE page. */
	db_init(&d, 2, 1);
	CHECK_ERR(feature_below(g, &d, HDR_SZ), -EFAULT);
	/* 1.3.4: the header straddles the boundary (region_index/open_flags readable). */
	CHECK_ERR(feature_below(g, &d, HDR_SZ + 8), -EFAULT);
	/* 1.3.3 before 1.3.4: argsz 8 + 15 is EINVAL before anything is copied. */
	d.argsz = HDR_SZ + DB_MINSZ - 1;
	CHECK_ERR(feature_below(g, &d, HDR_SZ), -EINVAL);
	/* 1.3.3 before 1.3.4: SET is EINVAL before anything is copied. */
	db_init(&d, 2, 1);
	d.flags = F_SET | VFIO_DEVICE_FEATURE_DMA_BUF;
	CHECK_ERR(feature_below(g, &d, HDR_SZ), -EINVAL);
	/* 1.2.5 before 1.3.4: PROBE returns 0 without reading the payload. */
	d.flags = F_PROBE | F_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	CHECK_ERR(feature_below(g, &d, HDR_SZ), 0);

	/* 1.3.7: header readable, the ranges array in the PROT_NONE page -> EFAULT. */
	db_init(&d, 2, 1);
	CHECK_ERR(feature_below(g, &d, HDR_SZ + DB_MINSZ), -EFAULT);
	/* 1.3.7 on the I/O BAR: the copy comes before the P2P-provider check (1.3.10). */
	db_init(&d, 4, 1);
	CHECK_ERR(feature_below(g, &d, HDR_SZ + DB_MINSZ), -EFAULT);
	/* 1.3.5 before 1.3.7: nr_ranges 0 -> EINVAL, nothing copied. */
	db_init(&d, 2, 0);
	d.argsz = HDR_SZ + DB_MINSZ;
	CHECK_ERR(feature_below(g, &d, HDR_SZ + DB_MINSZ), -EINVAL);
	/* 1.3.5 before 1.3.7: flags != 0 -> EINVAL. */
	db_init(&d, 2, 1);
	d.dflags = 1u << 28;
	CHECK_ERR(feature_below(g, &d, HDR_SZ + DB_MINSZ), -EINVAL);
	/* 1.3.6 before 1.3.7: region_index 7 -> ENODEV, nothing copied. */
	db_init(&d, 7, 1);
	CHECK_ERR(feature_below(g, &d, HDR_SZ + DB_MINSZ), -ENODEV);
	/* 1.3.6 before 1.3.7: an unimplemented BAR (BAR1) -> ENODEV. */
	db_init(&d, 1, 1);
	CHECK_ERR(feature_below(g, &d, HDR_SZ + DB_MINSZ), -ENODEV);

	/*
	 * 1.3.7 before 1.3.8: the first range is readable (and invalid: zero
	 * length), the second faults.  The whole array is copied first: EFAULT.
	 */
	db_init(&d, 2, 2);
	db_range(&d, 0, 0, 0);
	CHECK_ERR(feature_below(g, &d, HDR_SZ + DB_MINSZ + 16), -EFAULT);

	guard_page_free(g);
}

/* kernel-semantics 1.3.5-1.3.11: argument checks in the merged order. */
static void test_dma_buf_args(void)
{
	struct db_req d;

	t_section("1.3.5-1.3.11 DMA_BUF argument checks");

	/* 1.3.5: nr_ranges == 0 -> EINVAL. */
	db_init(&d, 2, 0);
	CHECK_ERR(db_get(&d), -EINVAL);
	/* 1.3.5: flags != 0 -> EINVAL, for each bit (28-31 were proposed, none merged). */
	for (unsigned int bit = 0; bit < 32; bit++) {
		db_init(&d, 2, 1);
		db_range(&d, 0, 0, PAGE);
		d.dflags = 1u << bit;
		CHECK_ERR(db_get(&d), -EINVAL);
	}
	/* 1.3.5 before 1.3.6: nr_ranges 0 with region_index 7 -> EINVAL, not ENODEV. */
	db_init(&d, 7, 0);
	CHECK_ERR(db_get(&d), -EINVAL);
	/* 1.3.5 before 1.3.6: flags != 0 with region_index 100 -> EINVAL. */
	db_init(&d, 100, 1);
	db_range(&d, 0, 0, PAGE);
	d.dflags = 1;
	CHECK_ERR(db_get(&d), -EINVAL);

	/* 1.3.6: region_index >= 6 (ROM, config, VGA, beyond) -> ENODEV. */
	{
		static const uint32_t bad[] = { 6, 7, 8, 9, 100, 0xffffffffu };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			CHECK_ERR(db_get1(&d, bad[i], 0, PAGE), -ENODEV);
	}
	/*
	 * 1.3.6 (part 3): an unimplemented BAR -> ENODEV: BAR1, BAR3 (the upper
	 * half of 64-bit BAR2), BAR5.
	 */
	for (uint32_t bar = 1; bar <= 5; bar += 2)
		CHECK_ERR(db_get1(&d, bar, 0, PAGE), -ENODEV);
	/* 1.3.6 before 1.3.8: region_index 7 with a zero-length range -> ENODEV, not EINVAL. */
	CHECK_ERR(db_get1(&d, 7, 0, 0), -ENODEV);
	/* 1.3.6 before 1.3.8: an unimplemented BAR with an unaligned range -> ENODEV. */
	CHECK_ERR(db_get1(&d, 1, 1, PAGE), -ENODEV);

	/* 1.3.8: zero length -> EINVAL. */
	CHECK_ERR(db_get1(&d, 2, 0, 0), -EINVAL);
	/* 1.3.8: offset not page aligned -> EINVAL. */
	CHECK_ERR(db_get1(&d, 2, 512, PAGE), -EINVAL);
	/* 1.3.8: length not page aligned -> EINVAL. */
	CHECK_ERR(db_get1(&d, 2, 0, PAGE + 1), -EINVAL);
	CHECK_ERR(db_get1(&d, 2, 0, PAGE - 1), -EINVAL);
	/* 1.3.8 applies to every range, not only the first: a bad third range -> EINVAL. */
	db_init(&d, 2, 3);
	db_range(&d, 0, 0, PAGE);
	db_range(&d, 1, PAGE, PAGE);
	db_range(&d, 2, 2 * PAGE, 0);
	CHECK_ERR(db_get(&d), -EINVAL);

	/* 1.3.8: running sum of lengths overflows u64 -> EINVAL. */
	db_init(&d, 2, 2);
	db_range(&d, 0, 0, BIT63);
	db_range(&d, 1, 0, BIT63);
	CHECK_ERR(db_get(&d), -EINVAL);
	db_init(&d, 2, 3);
	db_range(&d, 0, 0, PAGE);
	db_range(&d, 1, 0, ~(PAGE - 1)); /* 2^64 - 4096: the sum wraps to exactly 0 */
	db_range(&d, 2, 0, PAGE);
	CHECK_ERR(db_get(&d), -EINVAL);
	/*
	 * 1.3.8 before 1.3.11: range 0 would overflow the bus address
	 * (EOVERFLOW) but the lengths' sum overflows first -> EINVAL.
	 */
	db_init(&d, 2, 2);
	db_range(&d, 0, ~(PAGE - 1), BIT63);
	db_range(&d, 1, 0, BIT63);
	CHECK_ERR(db_get(&d), -EINVAL);

	/* 1.3.9: total with bit 63 set (no u64 overflow) -> EINVAL. */
	CHECK_ERR(db_get1(&d, 2, 0, BIT63), -EINVAL);
	db_init(&d, 2, 2);
	db_range(&d, 0, 0, BIT63 - PAGE);
	db_range(&d, 1, 0, PAGE);
	CHECK_ERR(db_get(&d), -EINVAL);
	/* 1.3.9 before 1.3.11: bit 63 with an offset that would overflow -> EINVAL. */
	CHECK_ERR(db_get1(&d, 2, ~(PAGE - 1), BIT63), -EINVAL);
	/* 1.3.9 is exactly bit 63: a total of 2^63 - 4096 passes it (and overflows in 1.3.11). */
	CHECK_ERR(db_get1(&d, 2, ~(PAGE - 1), BIT63 - PAGE), -EOVERFLOW);

	/* 1.3.10: the I/O-port BAR (BAR4) has no P2P provider -> EINVAL. */
	CHECK_ERR(db_get1(&d, 4, 0, PAGE), -EINVAL);
	/* 1.3.10 before 1.3.11: an overflowing offset on the I/O BAR -> EINVAL, not EOVERFLOW. */
	CHECK_ERR(db_get1(&d, 4, ~(PAGE - 1), PAGE), -EINVAL);
	/* 1.3.8 on the I/O BAR: an unaligned range is EINVAL from the range check. */
	CHECK_ERR(db_get1(&d, 4, 16, 16), -EINVAL);
	/* 1.3.6 before 1.3.10: the I/O BAR is a BAR (index < 6), so not ENODEV. */
	CHECK_ERR(db_get1(&d, 4, 0, 0), -EINVAL);

	/* 1.3.11: bar_start + offset overflows -> EOVERFLOW. */
	CHECK_ERR(db_get1(&d, 2, ~(PAGE - 1), PAGE), -EOVERFLOW);
	CHECK_ERR(db_get1(&d, 0, ~(PAGE - 1), PAGE), -EOVERFLOW);
	if (bar2_bus) {
		/* bar_start + offset == 2^64 exactly: overflows. */
		CHECK_ERR(db_get1(&d, 2, 0 - bar2_bus, PAGE), -EOVERFLOW);
		/* bar_start + offset fits (2^64 - 4096), + length overflows -> EOVERFLOW. */
		CHECK_ERR(db_get1(&d, 2, 0 - bar2_bus - PAGE, 2 * PAGE), -EOVERFLOW);
		/* bar_start + offset == 2^64 - 4096, the end exactly 2^64: overflows. */
		CHECK_ERR(db_get1(&d, 2, 0 - bar2_bus - PAGE, PAGE), -EOVERFLOW);
		/* No overflow, far beyond the BAR -> EINVAL. */
		CHECK_ERR(db_get1(&d, 2, 0 - bar2_bus - 2 * PAGE, PAGE), -EINVAL);
	}
	/* 1.3.11: offset + length > bar_len -> EINVAL. */
	CHECK_ERR(db_get1(&d, 2, BAR2_SIZE - PAGE, 2 * PAGE), -EINVAL);
	CHECK_ERR(db_get1(&d, 2, BAR2_SIZE, PAGE), -EINVAL);
	CHECK_ERR(db_get1(&d, 2, 0, 2 * BAR2_SIZE), -EINVAL);
	CHECK_ERR(db_get1(&d, 0, PAGE, BAR0_SIZE), -EINVAL);
	CHECK_ERR(db_get1(&d, 2, BIT63, PAGE), -EINVAL);
	/* 1.3.11 is per range, in order: range 0 beyond (EINVAL), range 1 overflowing. */
	db_init(&d, 2, 2);
	db_range(&d, 0, BAR2_SIZE, PAGE);
	db_range(&d, 1, ~(PAGE - 1), PAGE);
	CHECK_ERR(db_get(&d), -EINVAL);
	/* ... and range 0 overflowing, range 1 beyond -> EOVERFLOW. */
	db_init(&d, 2, 2);
	db_range(&d, 0, ~(PAGE - 1), PAGE);
	db_range(&d, 1, BAR2_SIZE, PAGE);
	CHECK_ERR(db_get(&d), -EOVERFLOW);
	/* ... and the last range beyond after good ones -> EINVAL. */
	db_init(&d, 2, 3);
	db_range(&d, 0, 0, PAGE);
	db_range(&d, 1, PAGE, PAGE);
	db_range(&d, 2, BAR2_SIZE - PAGE, 2 * PAGE);
	CHECK_ERR(db_get(&d), -EINVAL);
	/*
	 * 1.3.7: argsz is not cross-checked against nr_ranges.  argsz covers
	 * only the fixed part, nr_ranges says 1 and the range is readable
	 * right after: the kernel copies it and succeeds.
	 */
	db_init(&d, 2, 1);
	db_range(&d, 0, PAGE, 2 * PAGE);
	d.argsz = HDR_SZ + DB_MINSZ;
	CHECK(check_dmabuf_fd(db_get(&d), 2 * PAGE, true));
	/* ... and nr_ranges larger than argsz allows, still readable: the same. */
	db_init(&d, 2, 3);
	db_range(&d, 0, 0, PAGE);
	db_range(&d, 1, PAGE, PAGE);
	db_range(&d, 2, 2 * PAGE, PAGE);
	d.argsz = HDR_SZ + DB_MINSZ + 16;
	CHECK(check_dmabuf_fd(db_get(&d), 3 * PAGE, true));

	/* Exactly up to the end of the BAR is fine. */
	db_init(&d, 2, 1);
	db_range(&d, 0, BAR2_SIZE - PAGE, PAGE);
	CHECK(check_dmabuf_fd(db_get(&d), PAGE, true));
	db_init(&d, 0, 1);
	db_range(&d, 0, 0, BAR0_SIZE);
	CHECK(check_dmabuf_fd(db_get(&d), BAR0_SIZE, true));
}

/*
 * 1.3.7: nr_ranges sizes the kernel's copy of the ranges (memdup_array_user,
 * a kmalloc of at most KMALLOC_MAX_SIZE, 4 MiB): a larger array is ENOMEM
 * before anything is copied, never a 64 GiB allocation; 4 MiB is copied.
 */
static void test_nr_ranges_bound(void)
{
	const uint32_t max_nr = (4u << 20) / 16;
	size_t len = HDR_SZ + DB_MINSZ + (size_t)max_nr * 16;
	struct db_req d;
	uint8_t *big;

	t_section("1.3.7 nr_ranges bound");
	db_init(&d, 2, 1);
	db_range(&d, 0, 0, PAGE);
	d.nr_ranges = UINT32_MAX;
	CHECK_ERR(db_get(&d), -ENOMEM);
	/* 1.3.6 before 1.3.7: a bad region is still ENODEV. */
	d.region_index = 7;
	CHECK_ERR(db_get(&d), -ENODEV);
	/* 1.3.5 before 1.3.7: flags still EINVAL. */
	d.region_index = 2;
	d.dflags = 1;
	CHECK_ERR(db_get(&d), -EINVAL);

	/* Exactly 4 MiB of ranges: copied (all zero: EINVAL at 1.3.8); one more: ENOMEM. */
	big = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(big != MAP_FAILED);
	if (big == MAP_FAILED)
		return;
	db_init(&d, 2, 0);
	d.nr_ranges = max_nr;
	d.argsz = (uint32_t)len;
	memcpy(big, &d, HDR_SZ + DB_MINSZ);
	CHECK_ERR(feature(dev.vdev, big), -EINVAL);
	/* The array would end past the mapping: ENOMEM comes first, not EFAULT. */
	d.nr_ranges = max_nr + 1;
	memcpy(big, &d, HDR_SZ + DB_MINSZ);
	CHECK_ERR(feature(dev.vdev, big), -ENOMEM);
	munmap(big, len);
}

/* kernel-semantics 1.1 and 1.3 "range semantics": what a successful export returns. */
static void test_dma_buf_success(void)
{
	struct db_req d;
	long fd;
	int fl;

	t_section("1.1/1.3 DMA_BUF success");

	/* 1.1: success returns a new fd (>= 0), not 0; O_CLOEXEC is honoured. */
	db_init(&d, 2, 1);
	db_range(&d, 0, 0, PAGE);
	fd = db_get(&d);
	CHECK(check_dmabuf_fd(fd, PAGE, true));
	/* 1.1: without O_CLOEXEC the new fd does not have FD_CLOEXEC. */
	db_init(&d, 2, 1);
	db_range(&d, 0, 0, PAGE);
	d.open_flags = O_RDWR;
	CHECK(check_dmabuf_fd(db_get(&d), PAGE, false));
	/* 1.1: open_flags are not validated: garbage bits are accepted. */
	db_init(&d, 2, 1);
	db_range(&d, 0, 0, PAGE);
	d.open_flags = O_RDWR | O_NONBLOCK | 0x40000000u;
	CHECK(check_dmabuf_fd(db_get(&d), PAGE, false));
	db_init(&d, 2, 1);
	db_range(&d, 0, 0, PAGE);
	d.open_flags = 0xffffffffu; /* includes O_CLOEXEC */
	CHECK(check_dmabuf_fd(db_get(&d), PAGE, true));
	db_init(&d, 2, 1);
	db_range(&d, 0, 0, PAGE);
	d.open_flags = O_RDONLY | O_CLOEXEC;
	CHECK(check_dmabuf_fd(db_get(&d), PAGE, true));

	/* 1.3: size = sum of the lengths, ranges in any order, overlapping allowed. */
	db_init(&d, 2, 4);
	db_range(&d, 0, 8 * PAGE, 3 * PAGE);
	db_range(&d, 1, 0, PAGE);
	db_range(&d, 2, 0, PAGE);	      /* aliases range 1 */
	db_range(&d, 3, 9 * PAGE, 4 * PAGE); /* overlaps range 0 */
	CHECK(check_dmabuf_fd(db_get(&d), 9 * PAGE, true));
	/* A whole-BAR dma-buf, and several dma-bufs over the same BAR at once. */
	{
		long a, b;

		db_init(&d, 2, 1);
		db_range(&d, 0, 0, BAR2_SIZE);
		a = db_get(&d);
		b = db_get(&d);
		CHECK(a >= 0 && b >= 0 && a != b);
		CHECK(check_dmabuf_fd(a, BAR2_SIZE, true));
		CHECK(check_dmabuf_fd(b, BAR2_SIZE, true));
	}
	/* The typed helper is the same ioctl. */
	{
		static const struct vfio_region_dma_range two[] = { { 0, PAGE }, { 2 * PAGE, PAGE } };

		fd = p2p_vfio_device_get_dmabuf(dev.vdev, 0, two, 2, O_RDWR);
	}
	CHECK(check_dmabuf_fd(fd, 2 * PAGE, false));

	/* 1.6: created while COMMAND.MEM is off -> exists, but starts revoked. */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	db_init(&d, 2, 1);
	db_range(&d, 0, 0, PAGE);
	fd = db_get(&d);
	CHECK(fd >= 0);
	if (fd >= 0) {
		struct p2p_dmabuf *buf;

		if (!p2p_dmabuf_get((int)fd, &buf)) {
			CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);
			p2p_dmabuf_put(buf);
		}
		fl = fcntl((int)fd, F_GETFD);
		CHECK(fl >= 0 && (fl & FD_CLOEXEC));
		p2p_close((int)fd);
	}
	CHECK_OK(t_mem_enable(dev.vdev, true));
}

/* Callbacks of a foreign (non-VFIO) exporter. */
static int foreign_map(struct p2p_attachment *a, struct p2p_sgt **out)
{
	(void)a;
	(void)out;
	return -ENODEV;
}

static void foreign_unmap(struct p2p_attachment *a, struct p2p_sgt *sgt)
{
	(void)a;
	(void)sgt;
}

static void foreign_release(struct p2p_dmabuf *buf)
{
	(void)buf;
}

static const struct p2p_dmabuf_ops foreign_ops = {
	.map = foreign_map,
	.unmap = foreign_unmap,
	.release = foreign_release,
};

/* Issue feature 14 (MEMATTR) on @vdev for @fd. */
static long memattr_fd(struct p2p_vfio_device *vdev, int fd, uint32_t attr)
{
	struct feat_req q = { .argsz = HDR_SZ + sizeof(struct vfio_device_feature_dma_buf_memattr),
			      .flags = F_SET | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR };

	q.data[0] = (uint32_t)fd;
	q.data[1] = attr;
	return feature(vdev, &q);
}

/* kernel-semantics 3.4: the fd checks shared by features 13 and 14. */
static void test_fd_checks(void)
{
	struct t_dev other;
	struct p2p_mem *mem = NULL;
	struct p2p_dmabuf *fbuf = NULL;
	int pipefd[2], ofd = -1, ffd = -1, ret;

	t_section("3.4 REVOKE/MEMATTR fd checks");

	/* 3.4 / 0.1: not an open fd -> EBADF. */
	CHECK_ERR(t_feat_revoke(dev.vdev, -1), -EBADF);
	CHECK_ERR(memattr_fd(dev.vdev, -1, 0), -EBADF);
	CHECK_ERR(t_feat_revoke(dev.vdev, INT_MAX), -EBADF);
	CHECK_ERR(memattr_fd(dev.vdev, INT_MAX, 0), -EBADF);

	/* 3.4 / 0.1: an open fd that is not a dma-buf (a pipe) -> EINVAL. */
	CHECK_OK(pipe(pipefd));
	CHECK_ERR(t_feat_revoke(dev.vdev, pipefd[0]), -EINVAL);
	CHECK_ERR(memattr_fd(dev.vdev, pipefd[1], 0), -EINVAL);
	close(pipefd[0]);
	close(pipefd[1]);
	/* A p2pbuf object that is not a dma-buf (the device fd itself) -> EINVAL. */
	CHECK_ERR(t_feat_revoke(dev.vdev, p2p_vfio_device_fd(dev.vdev)), -EINVAL);
	CHECK_ERR(memattr_fd(dev.vdev, p2p_vfio_device_fd(dev.vdev), 0), -EINVAL);

	/* 3.4: a dma-buf exported by another VFIO device -> ENODEV. */
	ret = t_dev_create(&other, "0000:03:00.0", BAR2_SIZE, 0, NULL, 3);
	CHECK_OK(ret);
	if (!ret) {
		struct p2p_dmabuf *buf;

		ofd = t_dmabuf_range(other.vdev, 2, 0, PAGE);
		CHECK(ofd >= 0);
		CHECK_ERR(t_feat_revoke(dev.vdev, ofd), -ENODEV);
		CHECK_ERR(memattr_fd(dev.vdev, ofd, VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC), -ENODEV);
		if (ofd >= 0 && !p2p_dmabuf_get(ofd, &buf)) {
			/* ... and nothing happened to it. */
			CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);
			CHECK(p2p_vfio_dmabuf_memattr(buf) == VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_NC);
			p2p_dmabuf_put(buf);
		}
		/* Its own device does accept it. */
		CHECK_OK(memattr_fd(other.vdev, ofd, VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC));
		CHECK_OK(t_feat_revoke(other.vdev, ofd));
		if (ofd >= 0)
			p2p_close(ofd);
		t_dev_destroy(&other);
	}

	/* 3.4: a dma-buf not exported by VFIO at all -> ENODEV. */
	CHECK_OK(p2p_mem_create("t-foreign", PAGE, 0, &mem));
	if (mem) {
		struct p2p_phys_range r = { .mem = mem, .offset = 0, .length = PAGE };
		struct p2p_dmabuf_export_info info = {
			.argsz = sizeof(info),
			.name = "foreign",
			.ops = &foreign_ops,
			.nr_ranges = 1,
			.ranges = &r,
		};

		CHECK_OK(p2p_dmabuf_export(&info, &fbuf));
		if (fbuf) {
			ffd = p2p_dmabuf_fd_install(fbuf, O_RDWR | O_CLOEXEC);
			CHECK(ffd >= 0);
			CHECK_ERR(t_feat_revoke(dev.vdev, ffd), -ENODEV);
			CHECK_ERR(memattr_fd(dev.vdev, ffd, 0), -ENODEV);
			CHECK(p2p_dmabuf_status(fbuf) == P2P_DMABUF_OK);
			/* p2p_vfio_dmabuf_memattr() refuses a non-VFIO buffer. */
			CHECK_ERR(p2p_vfio_dmabuf_memattr(fbuf), -EINVAL);
			if (ffd >= 0)
				p2p_close(ffd);
			p2p_dmabuf_put(fbuf);
		}
		p2p_mem_put(mem);
	}
}

/* Attach a revocable P2P importer to @buf and map it; false (and reported) on failure. */
static bool attach_and_map(struct t_importer *imp, struct p2p_dmabuf *buf)
{
	int ret = t_importer_attach(imp, buf, P2P_ATTACH_PEER2PEER, true);

	CHECK_OK(ret);
	if (ret) {
		imp->attach = NULL;
		return false;
	}
	ret = t_importer_map(imp);
	CHECK_OK(ret);
	return !ret;
}

/* An attach that the exporter must refuse with @want (1.5). */
static void attach_refused(struct p2p_dmabuf *buf, int want)
{
	struct t_importer imp;
	int ret = t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true);

	CHECK_ERR(ret, want);
	if (!ret)
		t_importer_detach(&imp);
}

/*
 * Export BAR2 [0, @len) into *@fd (CHECKed) and take a reference to the
 * dma-buf in *@buf; false if either failed.
 */
static bool export_get(uint64_t len, int *fd, struct p2p_dmabuf **buf)
{
	*fd = t_dmabuf_range(dev.vdev, 2, 0, len);
	CHECK(*fd >= 0);
	return *fd >= 0 && !p2p_dmabuf_get(*fd, buf);
}

/* kernel-semantics 3.4: feature 13, DMA_BUF_REVOKE. */
static void test_revoke(void)
{
	struct t_importer imp;
	struct p2p_dmabuf *buf = NULL;
	int fd, dupfd, ret;

	t_section("3.4 DMA_BUF_REVOKE");

	if (!export_get(4 * PAGE, &fd, &buf))
		return;

	/* Live: an importer attaches and maps. */
	attach_and_map(&imp, buf);

	/* 3.4: REVOKE moves to PERM_REVOKED with the full revoke (importer invalidated). */
	CHECK_ERR(t_feat_revoke(dev.vdev, fd), 0);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
	CHECK(imp.invalidations == 1);
	CHECK(imp.sgt == NULL);
	t_importer_detach(&imp);
	/* 1.5: attach to a revoked buffer -> ENODEV. */
	attach_refused(buf, -ENODEV);
	/* 3.4: a second REVOKE -> EBADFD. */
	CHECK_ERR(t_feat_revoke(dev.vdev, fd), -EBADFD);
	/* 1.6: PERM is sticky: memory toggles do not un-revoke it. */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
	CHECK_ERR(t_feat_revoke(dev.vdev, fd), -EBADFD);
	p2p_dmabuf_put(buf);
	p2p_close(fd);

	/* 3.4: TEMP -> PERM: a buffer revoked by MEM off can be revoked for good. */
	if (export_get(PAGE, &fd, &buf)) {
		CHECK_OK(t_mem_enable(dev.vdev, false));
		CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);
		CHECK_ERR(t_feat_revoke(dev.vdev, fd), 0);
		CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
		CHECK_OK(t_mem_enable(dev.vdev, true));
		CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
		CHECK_ERR(t_feat_revoke(dev.vdev, fd), -EBADFD);
		p2p_dmabuf_put(buf);
		p2p_close(fd);
	}

	/* 8.3 item 9: REVOKE through a plain dup of the fd revokes the same buffer. */
	if (export_get(PAGE, &fd, &buf)) {
		dupfd = dup(fd);
		CHECK(dupfd >= 0);
		CHECK_ERR(t_feat_revoke(dev.vdev, dupfd), 0);
		CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
		CHECK_ERR(t_feat_revoke(dev.vdev, fd), -EBADFD);
		close(dupfd);
		p2p_dmabuf_put(buf);
		p2p_close(fd);
	}

	/*
	 * 3.4 / 1.6: after the device is closed the dma-buf is cleaned up
	 * (unlinked from the device): REVOKE (and MEMATTR) through the
	 * reopened device -> ENODEV.  The fd stays valid and closable.
	 */
	if (!export_get(PAGE, &fd, &buf))
		return;
	p2p_vfio_device_close(dev.vdev);
	dev.vdev = NULL;
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);
	ret = p2p_vfio_device_open(dev.pci, &dev.vdev);
	CHECK_OK(ret);
	if (!ret) {
		CHECK_ERR(t_feat_revoke(dev.vdev, fd), -ENODEV);
		CHECK_ERR(memattr_fd(dev.vdev, fd, VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC), -ENODEV);
		attach_refused(buf, -ENODEV);
		/* A new dma-buf on the reopened device works. */
		{
			struct vfio_region_dma_range one = { 0, PAGE };

			CHECK(check_dmabuf_fd(t_dmabuf(dev.vdev, 2, &one, 1), PAGE, true));
		}
	}
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
}

/* kernel-semantics 3.4: feature 14, DMA_BUF_MEMATTR. */
static void test_memattr(void)
{
	struct p2p_dmabuf *buf = NULL, *buf2 = NULL;
	int fd, fd2;

	t_section("3.4 DMA_BUF_MEMATTR");

	fd = t_dmabuf_range(dev.vdev, 2, 0, PAGE);
	fd2 = t_dmabuf_range(dev.vdev, 2, 0, PAGE);
	CHECK(fd >= 0 && fd2 >= 0);
	if (fd < 0 || fd2 < 0 || p2p_dmabuf_get(fd, &buf) || p2p_dmabuf_get(fd2, &buf2))
		goto out;

	/* 3.4: the default is NC (0). */
	CHECK(p2p_vfio_dmabuf_memattr(buf) == VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_NC);
	/* 3.4: WC (1) is accepted and visible. */
	CHECK_ERR(memattr_fd(dev.vdev, fd, VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC), 0);
	CHECK(p2p_vfio_dmabuf_memattr(buf) == VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC);
	/* It is per dma-buf: an aliasing buffer over the same range keeps NC. */
	CHECK(p2p_vfio_dmabuf_memattr(buf2) == VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_NC);
	/* 3.4: unknown memattr values -> ENOENT, and the attribute does not change. */
	CHECK_ERR(memattr_fd(dev.vdev, fd, 2), -ENOENT);
	CHECK_ERR(memattr_fd(dev.vdev, fd, 0x80000000u), -ENOENT);
	CHECK_ERR(memattr_fd(dev.vdev, fd, 0xffffffffu), -ENOENT);
	CHECK(p2p_vfio_dmabuf_memattr(buf) == VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_WC);
	/* 3.4: back to NC. */
	CHECK_ERR(memattr_fd(dev.vdev, fd, VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_NC), 0);
	CHECK(p2p_vfio_dmabuf_memattr(buf) == VFIO_DEVICE_FEATURE_DMA_BUF_ATTR_NC);
	/* MEMATTR never revokes. */
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);
	CHECK(p2p_dmabuf_status(buf2) == P2P_DMABUF_OK);
out:
	if (buf)
		p2p_dmabuf_put(buf);
	if (buf2)
		p2p_dmabuf_put(buf2);
	if (fd >= 0)
		p2p_close(fd);
	if (fd2 >= 0)
		p2p_close(fd2);
}

/* Issue feature 3 or 5 (SET). */
static long low_power(bool entry)
{
	struct feat_req q = { .argsz = HDR_SZ,
			      .flags = F_SET | (entry ? VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
						      : VFIO_DEVICE_FEATURE_LOW_POWER_EXIT) };

	return feature(dev.vdev, &q);
}

/* kernel-semantics 1.7 item 3: runtime PM low-power entry revokes, exit restores. */
static void test_low_power(void)
{
	struct t_importer imp;
	struct p2p_dmabuf *buf = NULL;
	int fd;

	t_section("1.7.3 LOW_POWER_ENTRY/EXIT");

	if (!export_get(2 * PAGE, &fd, &buf))
		return;

	attach_and_map(&imp, buf);

	/* 1.7.3: entry revokes: the importer is invalidated, the buffer is TEMP revoked. */
	CHECK_ERR(low_power(true), 0);
	CHECK(imp.invalidations == 1);
	CHECK(imp.sgt == NULL);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);
	CHECK(!p2p_pci_dev_memory_enabled(dev.pci));
	/* 1.5: map of the existing attachment and a new attach -> ENODEV. */
	if (imp.attach)
		CHECK_ERR(t_importer_map(&imp), -ENODEV);
	t_importer_detach(&imp);
	attach_refused(buf, -ENODEV);
	/* A dma-buf created in low power starts revoked (1.6). */
	{
		int fd2 = t_dmabuf_range(dev.vdev, 2, 0, PAGE);
		struct p2p_dmabuf *b2;

		CHECK(fd2 >= 0);
		if (fd2 >= 0 && !p2p_dmabuf_get(fd2, &b2)) {
			CHECK(p2p_dmabuf_status(b2) == P2P_DMABUF_TEMP_REVOKED);
			p2p_dmabuf_put(b2);
		}
		if (fd2 >= 0)
			p2p_close(fd2);
	}
	/* vfio_pci_runtime_pm_entry(): entering again while engaged -> EINVAL. */
	CHECK_ERR(low_power(true), -EINVAL);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);

	/* 1.7.3: exit un-revokes (memory is enabled): attach and map work again. */
	CHECK_ERR(low_power(false), 0);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);
	CHECK(p2p_pci_dev_memory_enabled(dev.pci));
	attach_and_map(&imp, buf);
	/* Exit while not in low power is a no-op returning 0, and revokes nothing. */
	CHECK_ERR(low_power(false), 0);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);
	CHECK(imp.invalidations == 0);
	t_importer_detach(&imp);

	/* 1.7.3: exit un-revokes only if memory is enabled: with MEM off it stays revoked. */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_ERR(low_power(true), 0);
	CHECK_ERR(low_power(false), 0);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);
	/* ... and MEM on while in low power does not un-revoke either. */
	CHECK_ERR(low_power(true), 0);
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);
	CHECK_ERR(low_power(false), 0);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);

	/* A permanently revoked buffer stays revoked across low-power exit. */
	CHECK_ERR(low_power(true), 0);
	CHECK_ERR(t_feat_revoke(dev.vdev, fd), 0);
	CHECK_ERR(low_power(false), 0);
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_PERM_REVOKED);

	p2p_dmabuf_put(buf);
	p2p_close(fd);
}

int main(void)
{
	uint32_t lo = 0, hi = 0;

	t_begin();
	t_dev_create_or_fail(&dev, "0000:01:00.0", BAR2_SIZE, 1);
	/* BAR2 is 64-bit: the bus address is BAR2 (low, flag bits masked) | BAR3 << 32. */
	if (!p2p_vfio_config_read(dev.vdev, 0x18, 4, &lo) &&
	    !p2p_vfio_config_read(dev.vdev, 0x1c, 4, &hi))
		bar2_bus = ((uint64_t)hi << 32) | (lo & ~0xfu);
	CHECK(bar2_bus != 0 && bar2_bus % BAR2_SIZE == 0);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(p2p_pci_dev_memory_enabled(dev.pci));

	test_core_checks();
	test_check_feature();
	test_no_dmabuf_device();
	test_copy_faults();
	test_dma_buf_args();
	test_nr_ranges_bound();
	test_dma_buf_success();
	test_fd_checks();
	test_revoke();
	test_memattr();
	test_low_power();

	t_section(NULL);
	t_dev_destroy(&dev);
	return t_end();
}
