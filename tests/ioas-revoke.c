// SPDX-License-Identifier: MIT
/*
 * dma-bufs in an IO address space across revocation (kernel-semantics 2.5,
 * 8.1; the fence contract of 0.2/0.3 and 7.2):
 *   - iommufd_ioas.dmabuf_simple: the MAP_FILE bounds checks on a VFIO
 *     dma-buf, with 0, 1 and 2 device domains attached;
 *   - iommufd_ioas.dmabuf_revoke: map, revoke, the old IOVA stops
 *     translating (-ENODEV), a new MAP_FILE is ENODEV, domain attach still
 *     works, un-revoke, MAP_FILE works again but the stale area is never
 *     remapped until it is unmapped and mapped again (FIXED_IOVA);
 *   - the same for kernel-exact, EXTENDED, IOAS_COPY'd and type1
 *     (p2p_ioas_map_dma) areas, permanent revoke (feature
 *     DMA_BUF_REVOKE, device close), a dma-buf born revoked, and a copy
 *     engine whose DMA to a revoked IOVA completes as "revoked";
 *   - fences: a revoke waits for DMA in flight (a p2p_ioas_dma_begin()
 *     segment held in another thread), while new translations fail at
 *     once; checked with flags and bounded waits, no timing assertions;
 *   - a revoke walk (device close) that skips a buffer whose last
 *     reference is going still returns after the DMA its importer drained:
 *     a failed p2p_file_tryget() is an acquire (a data race under TSan
 *     otherwise).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ce_driver.h"
#include "harness.h"

#define PAGE 4096ull
#define BAR 2
#define BAR_PAGES 64ull
#define BAR_SIZE (BAR_PAGES * PAGE)
#define RW (P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE)
#define FIXED P2P_IOAS_MAP_FIXED_IOVA
#define EXT P2P_IOAS_MAP_EXTENDED
#define DB_OFF (8 * PAGE)
#define DB_SIZE (4 * PAGE)

static struct t_dev dev;
static struct p2p_iommufd *ictx;

static void sleep_ms(unsigned int ms)
{
	usleep(ms * 1000);
}

/* Translate one byte: 0 (and the host address) or -errno. */
static int xlate(struct p2p_ioas *ioas, uint64_t iova, const uint8_t **host)
{
	struct p2p_dma_seg seg = { 0 };
	int ret = p2p_ioas_dma_begin(ioas, iova, 1, P2P_DMA_READ, &seg);

	if (!ret) {
		if (host)
			*host = seg.host;
		p2p_ioas_dma_end(&seg);
	}
	return ret;
}

/* [iova, iova + len) translates, in one run, to BAR bytes from @bar_off. */
static bool maps_bar(struct p2p_ioas *ioas, uint64_t iova, uint64_t len, uint64_t bar_off)
{
	struct p2p_dma_seg seg = { 0 };
	bool ok;

	if (p2p_ioas_dma_begin(ioas, iova, len, P2P_DMA_READ | P2P_DMA_WRITE, &seg))
		return false;
	ok = seg.host == t_bar_ptr(dev.pci, BAR, bar_off) && seg.len == len &&
	     ((uint8_t *)seg.host)[len - 1] == *t_bar_ptr(dev.pci, BAR, bar_off + len - 1);
	p2p_ioas_dma_end(&seg);
	return ok;
}

/* ---------------------------------------------------------------------- */
/* 8.1 iommufd_ioas.dmabuf_simple                                          */

static void test_dmabuf_simple(void)
{
	const uint64_t size = 8 * PAGE;
	int fd = t_dmabuf_range(dev.vdev, BAR, 0, size);

	CHECK(fd >= 0);
	/* the fixture variants: no domain, one and two (4 KiB) domains */
	for (unsigned int ndom = 0; ndom <= 2; ndom++) {
		struct p2p_ioas *ioas;
		uint64_t iova = 0;
		uint32_t id;

		t_section(ndom == 0 ? "8.1 dmabuf_simple, no domain" :
			  ndom == 1 ? "8.1 dmabuf_simple, one domain" :
				      "8.1 dmabuf_simple, two domains");
		id = t_ioas_new(ictx, &ioas);
		for (unsigned int i = 0; i < ndom; i++)
			CHECK_OK(p2p_ioas_attach_device(ioas));
		CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, 0, &iova, RW), -EINVAL);
		CHECK_ERR(t_map_file_ioctl(ictx, id, fd, size, size, &iova, RW), -EINVAL);
		CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, size + 1, &iova, RW), -EINVAL);
		CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, 0, &iova, RW), -EINVAL);
		CHECK_ERR(p2p_ioas_map_file(ioas, fd, size, size, &iova, RW), -EINVAL);
		CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, size + 1, &iova, RW), -EINVAL);
		CHECK(p2p_ioas_nr_areas(ioas) == 0);
		CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, size, &iova, RW));
		CHECK(maps_bar(ioas, iova, size, 0));
		iova = 0x4000000;
		CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, size, &iova, RW | FIXED));
		CHECK(maps_bar(ioas, 0x4000000, size, 0));
		iova = 0;
		CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, size, &iova, RW));
		CHECK(maps_bar(ioas, iova, size, 0));
		CHECK(p2p_ioas_nr_areas(ioas) == 3);
		for (unsigned int i = 0; i < ndom; i++)
			p2p_ioas_detach_device(ioas);
		t_ioas_del(ictx, id, ioas);
	}
	p2p_close(fd);
}

/* ---------------------------------------------------------------------- */
/* 8.1 iommufd_ioas.dmabuf_revoke, 2.5                                     */

static void test_dmabuf_revoke(void)
{
	const uint64_t T1 = 0x7000000, T1B = 0x8000000, U = 0x9000000;
	uint64_t iova1 = 0, iova2 = 0, iovab = 0, iova3, iova4, done;
	struct p2p_ioas *ioas, *other;
	struct p2p_dmabuf *buf;
	uint8_t *va, *barva, *mem;
	const uint8_t *host;
	uint32_t id, oid;
	unsigned int nr;
	int fd;

	t_section("8.1 dmabuf_revoke: map");
	id = t_ioas_new(ictx, &ioas);
	oid = t_ioas_new(ictx, &other);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	CHECK_OK(p2p_dmabuf_get(fd, &buf));
	/* kernel-exact, EXTENDED, an IOAS_COPY of the first, and type1 maps */
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova1, RW));
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova2, RW | EXT));
	CHECK_OK(p2p_ioas_copy(other, ioas, iova1 + PAGE, 2 * PAGE, &iovab, RW));
	CHECK_OK(p2p_dmabuf_mmap(buf, NULL, DB_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
				 (void **)&va));
	CHECK_OK(p2p_ioas_map_dma(ioas, va + PAGE, 2 * PAGE, T1, RW));
	CHECK_OK(p2p_vfio_device_mmap(dev.vdev, NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(BAR) + 16 * PAGE, (void **)&barva));
	CHECK_OK(p2p_ioas_map_dma(ioas, barva, 2 * PAGE, T1B, RW));
	mem = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED);
	iova3 = U;
	CHECK_OK(p2p_ioas_map(ioas, mem, PAGE, &iova3, RW | FIXED));
	CHECK(maps_bar(ioas, iova1, DB_SIZE, DB_OFF));
	CHECK(maps_bar(ioas, iova2, DB_SIZE, DB_OFF));
	CHECK(maps_bar(other, iovab, 2 * PAGE, DB_OFF + PAGE));
	CHECK(maps_bar(ioas, T1, 2 * PAGE, DB_OFF + PAGE));
	CHECK(maps_bar(ioas, T1B, 2 * PAGE, 16 * PAGE));
	nr = p2p_ioas_nr_areas(ioas);
	CHECK(nr == 5);

	t_section("8.1 dmabuf_revoke: revoked");
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_TEMP_REVOKED);
	/* Every dma-buf area stops translating at once; memory areas don't. */
	CHECK_ERR(xlate(ioas, iova1, NULL), -ENODEV);
	CHECK_ERR(xlate(ioas, iova1 + DB_SIZE - 1, NULL), -ENODEV);
	CHECK_ERR(xlate(ioas, iova2, NULL), -ENODEV);
	CHECK_ERR(xlate(other, iovab, NULL), -ENODEV);
	CHECK_ERR(xlate(ioas, T1, NULL), -ENODEV);	/* type1 of a dma-buf mmap */
	CHECK_ERR(xlate(ioas, T1B, NULL), -ENODEV);	/* type1 of a BAR mmap */
	CHECK_OK(xlate(ioas, U, &host));
	CHECK(host == mem);
	/* The areas stay (userspace must unmap them). */
	CHECK(p2p_ioas_nr_areas(ioas) == nr);
	CHECK(p2p_ioas_nr_areas(other) == 1);
	/* A new MAP_FILE of the revoked dma-buf: ENODEV, every way. */
	iova3 = 0;
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova3, RW), -ENODEV);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova3, RW), -ENODEV);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova3, RW | EXT), -ENODEV);
	CHECK_ERR(p2p_ioas_map_dma(ioas, va, PAGE, 0xa000000, RW), -ENODEV);
	CHECK_ERR(p2p_ioas_map(ioas, va, PAGE, &iova3, RW), -EFAULT);
	/* Validation still comes first (2.2 order). */
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE + 1, &iova3, RW), -EINVAL);
	CHECK(p2p_ioas_nr_areas(ioas) == nr);
	/* HWPT alloc/attach after a revoke works: filling a revoked area is skipped. */
	CHECK_OK(p2p_ioas_attach_device(ioas));
	CHECK_OK(p2p_ioas_attach_device(other));
	CHECK_ERR(xlate(ioas, iova1, NULL), -ENODEV);
	/* A revoked area can still be unmapped, but only as a whole (2.4). */
	CHECK_ERR(p2p_ioas_unmap(other, iovab, PAGE, NULL), -EOPNOTSUPP);

	t_section("8.1 dmabuf_revoke: un-revoked");
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(p2p_dmabuf_status(buf) == P2P_DMABUF_OK);
	/* MAP_FILE works again ... */
	iova4 = 0;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova4, RW));
	CHECK(maps_bar(ioas, iova4, DB_SIZE, DB_OFF));
	/* ... but nothing was remapped behind userspace's back (2.5). */
	for (int i = 0; i < 3; i++) {
		CHECK_ERR(xlate(ioas, iova1, NULL), -ENODEV);
		CHECK_ERR(xlate(ioas, iova2, NULL), -ENODEV);
		CHECK_ERR(xlate(other, iovab, NULL), -ENODEV);
		CHECK_ERR(xlate(ioas, T1, NULL), -ENODEV);
		CHECK_ERR(xlate(ioas, T1B, NULL), -ENODEV);
	}
	/* A new domain doesn't bring them back either. */
	p2p_ioas_detach_device(ioas);
	CHECK_OK(p2p_ioas_attach_device(ioas));
	CHECK_ERR(xlate(ioas, iova1, NULL), -ENODEV);
	/* The protocol: unmap the old IOVA, map it again (FIXED_IOVA). */
	iova3 = iova1;
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova3, RW | FIXED), -EEXIST);
	CHECK_OK(p2p_ioas_unmap(ioas, iova1, DB_SIZE, &done));
	CHECK(done == DB_SIZE);
	CHECK_ERR(xlate(ioas, iova1, NULL), -ENOENT);
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova3, RW | FIXED));
	CHECK(iova3 == iova1);
	CHECK(maps_bar(ioas, iova1, DB_SIZE, DB_OFF));
	CHECK_OK(p2p_ioas_unmap(ioas, iova2, DB_SIZE, NULL));
	iova3 = iova2;
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova3, RW | EXT | FIXED));
	CHECK(maps_bar(ioas, iova2, DB_SIZE, DB_OFF));
	CHECK_OK(p2p_ioas_unmap(other, iovab, 2 * PAGE, NULL));
	CHECK_OK(p2p_ioas_copy(other, ioas, iova1 + PAGE, 2 * PAGE, &iovab, RW | FIXED));
	CHECK(maps_bar(other, iovab, 2 * PAGE, DB_OFF + PAGE));
	CHECK_OK(p2p_ioas_unmap(ioas, T1, 2 * PAGE, NULL));
	CHECK_OK(p2p_ioas_map_dma(ioas, va + PAGE, 2 * PAGE, T1, RW));
	CHECK(maps_bar(ioas, T1, 2 * PAGE, DB_OFF + PAGE));
	CHECK_OK(p2p_ioas_unmap(ioas, T1B, 2 * PAGE, NULL));
	CHECK_OK(p2p_ioas_map_dma(ioas, barva, 2 * PAGE, T1B, RW));
	CHECK(maps_bar(ioas, T1B, 2 * PAGE, 16 * PAGE));

	/* A second revoke takes all of them again, once. */
	t_section("8.1 dmabuf_revoke: revoked again");
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_ERR(xlate(ioas, iova1, NULL), -ENODEV);
	CHECK_ERR(xlate(ioas, iova2, NULL), -ENODEV);
	CHECK_ERR(xlate(ioas, iova4, NULL), -ENODEV);
	CHECK_ERR(xlate(other, iovab, NULL), -ENODEV);
	CHECK_ERR(xlate(ioas, T1, NULL), -ENODEV);
	CHECK_ERR(xlate(ioas, T1B, NULL), -ENODEV);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK_ERR(xlate(ioas, iova1, NULL), -ENODEV);

	p2p_ioas_detach_device(ioas);
	p2p_ioas_detach_device(other);
	CHECK_OK(p2p_munmap(barva, 2 * PAGE));
	CHECK_OK(p2p_munmap(va, DB_SIZE));
	p2p_dmabuf_put(buf);
	t_ioas_del(ictx, oid, other);
	t_ioas_del(ictx, id, ioas);
	p2p_close(fd);
	munmap(mem, PAGE);
}

/* Permanent revokes: feature DMA_BUF_REVOKE, device close; born revoked. */
static void test_perm_revoke(void)
{
	struct p2p_ioas *ioas;
	struct t_dev dev2;
	uint64_t iova = 0, iova2 = 0;
	uint32_t id;
	int fd, fd2;

	t_section("2.5 permanent revoke (feature)");
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW));
	CHECK_OK(p2p_ioas_map_file(ioas, fd, PAGE, PAGE, &iova2, RW | EXT));
	CHECK_OK(t_feat_revoke(dev.vdev, fd));
	CHECK_ERR(xlate(ioas, iova, NULL), -ENODEV);
	CHECK_ERR(xlate(ioas, iova2, NULL), -ENODEV);
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW), -ENODEV);
	/* memory toggles don't bring a permanently revoked buffer back */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW), -ENODEV);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova, RW | EXT), -ENODEV);
	CHECK_ERR(xlate(ioas, iova, NULL), -ENODEV);
	CHECK_ERR(t_feat_revoke(dev.vdev, fd), -EBADFD);
	CHECK_OK(p2p_ioas_attach_device(ioas));
	p2p_ioas_detach_device(ioas);
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, NULL));
	p2p_close(fd);

	t_section("2.5 dma-buf created while memory is off");
	CHECK_OK(t_mem_enable(dev.vdev, false));
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	iova = 0;
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW), -ENODEV);
	CHECK_ERR(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova, RW | EXT), -ENODEV);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW));
	CHECK(maps_bar(ioas, iova, DB_SIZE, DB_OFF));
	CHECK_OK(p2p_ioas_unmap(ioas, 0, 0, NULL));
	p2p_close(fd);

	t_section("2.5 device close (7.4)");
	CHECK_OK(t_dev_create(&dev2, "0000:04:00.0", BAR_SIZE, 0, NULL, 2));
	CHECK_OK(t_mem_enable(dev2.vdev, true));
	fd2 = t_dmabuf_range(dev2.vdev, BAR, 0, 2 * PAGE);
	CHECK(fd2 >= 0);
	iova = 0;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd2, 0, 2 * PAGE, &iova, RW));
	CHECK_OK(xlate(ioas, iova, NULL));
	t_dev_destroy(&dev2);
	CHECK_ERR(xlate(ioas, iova, NULL), -ENODEV);
	CHECK_ERR(t_map_file_ioctl(ictx, id, fd2, 0, 2 * PAGE, &iova2, RW), -ENODEV);
	CHECK_OK(p2p_ioas_unmap(ioas, iova, 2 * PAGE, NULL));
	p2p_close(fd2);
	t_ioas_del(ictx, id, ioas);
}

/* ---------------------------------------------------------------------- */
/* 2.5: a device's DMA to a revoked IOVA faults                            */

static void test_copy_engine(void)
{
	const uint64_t S = 0x100000, D = 0x200000;
	struct p2p_vfio_device *cev;
	struct p2p_pci_dev *ce;
	struct p2p_ioas *ioas;
	struct ce_drv drv;
	uint64_t iova;
	uint8_t *src;
	uint32_t id;
	int fd;

	t_section("2.5 copy engine P2P");
	if (p2p_copy_engine_create("0000:05:00.0", NULL, 5, &ce)) {
		fprintf(stderr, "note: no copy engine\n");
		t_failures++;
		return;
	}
	CHECK_OK(p2p_vfio_device_open(ce, &cev));
	CHECK_OK(t_mem_enable(cev, true));
	id = t_ioas_new(ictx, &ioas);
	CHECK_OK(p2p_vfio_device_attach_ioas(cev, ioas));
	CHECK_OK(ce_drv_init(&drv, cev, ioas, 16));
	src = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(src != MAP_FAILED);
	memset(src, 0xc3, 2 * PAGE);
	iova = S;
	CHECK_OK(p2p_ioas_map(ioas, src, 2 * PAGE, &iova, RW | FIXED));
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	iova = D;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW | FIXED));

	/* system memory -> the other device's BAR, peer to peer */
	CHECK(ce_drv_copy(&drv, S, D + PAGE, 2 * PAGE) == P2P_CE_OK);
	CHECK(*t_bar_ptr(dev.pci, BAR, DB_OFF + PAGE) == 0xc3 &&
	      *t_bar_ptr(dev.pci, BAR, DB_OFF + 3 * PAGE - 1) == 0xc3);
	CHECK(*t_bar_ptr(dev.pci, BAR, DB_OFF + PAGE - 1) == t_pattern(DB_OFF + PAGE - 1));

	memset(src, 0x5e, 2 * PAGE);
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK(ce_drv_copy(&drv, S, D + PAGE, 2 * PAGE) == P2P_CE_REVOKED);
	CHECK(ce_drv_copy(&drv, D, S, PAGE) == P2P_CE_REVOKED);
	CHECK(*t_bar_ptr(dev.pci, BAR, DB_OFF + PAGE) == 0xc3);
	CHECK(src[0] == 0x5e);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	/* still revoked: the stale IOVA is never remapped */
	CHECK(ce_drv_copy(&drv, S, D + PAGE, 2 * PAGE) == P2P_CE_REVOKED);
	CHECK(*t_bar_ptr(dev.pci, BAR, DB_OFF + PAGE) == 0xc3);
	CHECK_OK(p2p_ioas_unmap(ioas, D, DB_SIZE, NULL));
	CHECK(ce_drv_copy(&drv, S, D + PAGE, 2 * PAGE) == P2P_CE_FAULT);
	iova = D;
	CHECK_OK(t_map_file_ioctl(ictx, id, fd, 0, DB_SIZE, &iova, RW | FIXED));
	CHECK(ce_drv_copy(&drv, S, D + PAGE, 2 * PAGE) == P2P_CE_OK);
	CHECK(*t_bar_ptr(dev.pci, BAR, DB_OFF + PAGE) == 0x5e &&
	      *t_bar_ptr(dev.pci, BAR, DB_OFF + 3 * PAGE - 1) == 0x5e);

	ce_drv_fini(&drv);
	p2p_vfio_device_detach_ioas(cev);
	p2p_vfio_device_close(cev);
	p2p_pci_dev_put(ce);
	t_ioas_del(ictx, id, ioas);
	p2p_close(fd);
	munmap(src, 2 * PAGE);
	t_bar_fill(dev.pci, BAR, BAR_SIZE);
}

/* ---------------------------------------------------------------------- */
/* Fences: a revoke waits for DMA in flight                                */

#define MAX_HELD 2

/* Thread A: a device holding translated segments (DMA in flight). */
struct holder {
	struct p2p_ioas *ioas;
	unsigned int n;
	uint64_t iova[MAX_HELD];
	uint8_t want[MAX_HELD];
	atomic_int held;     /* segments begun (or -errno) */
	atomic_int release;  /* how many the main thread lets go */
	atomic_int reads_ok; /* bytes still readable through a held segment */
};

static bool wait_flag(atomic_int *v, int want, unsigned int max_ms)
{
	for (unsigned int i = 0; i < max_ms && atomic_load(v) < want; i++)
		sleep_ms(1);
	return atomic_load(v) >= want;
}

static void *holder_main(void *arg)
{
	struct holder *h = arg;
	struct p2p_dma_seg seg[MAX_HELD] = { 0 };

	for (unsigned int i = 0; i < h->n; i++) {
		int ret = p2p_ioas_dma_begin(h->ioas, h->iova[i], PAGE,
					     P2P_DMA_READ | P2P_DMA_WRITE, &seg[i]);

		if (ret) {
			atomic_store(&h->held, ret);
			for (unsigned int j = 0; j < i; j++)
				p2p_ioas_dma_end(&seg[j]);
			return NULL;
		}
	}
	atomic_store(&h->held, (int)h->n);
	for (unsigned int i = 0; i < h->n; i++) {
		/* bounded: a broken main thread must not hang the test */
		wait_flag(&h->release, (int)i + 1, 60000);
		/* 0.2 rule 1: the old mapping stays usable until the fence retires */
		if (((volatile uint8_t *)seg[i].host)[0] == h->want[i])
			atomic_fetch_add(&h->reads_ok, 1);
		p2p_ioas_dma_end(&seg[i]);
	}
	return NULL;
}

/* Thread B: the exporter revoking; may block. */
struct revoker {
	int fd; /* -1: MEM disable (temporary), else feature DMA_BUF_REVOKE */
	atomic_int done;
	int ret;
};

static void *revoker_main(void *arg)
{
	struct revoker *r = arg;

	r->ret = r->fd < 0 ? t_mem_enable(dev.vdev, false) : (int)t_feat_revoke(dev.vdev, r->fd);
	atomic_store(&r->done, 1);
	return NULL;
}

/* Revoke must not return while DMA is in flight: sample for a while. */
static unsigned int returned_early(struct revoker *r, unsigned int ms)
{
	unsigned int bad = 0;

	for (unsigned int i = 0; i < ms; i++) {
		bad += atomic_load(&r->done) != 0;
		sleep_ms(1);
	}
	return bad;
}

static void fence_round(const char *name, bool extended, bool perm)
{
	struct holder h = { .n = extended ? 2 : 1 };
	struct revoker r = { .fd = -1 };
	pthread_t ta, tb;
	struct p2p_ioas *ioas;
	uint64_t iova;
	unsigned int started = 0;
	uint32_t id;
	int fd;

	t_section(name);
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	if (perm)
		r.fd = fd;
	h.ioas = ioas;
	for (unsigned int i = 0; i < h.n; i++) {
		/* separate areas over separate attachments: one fence each */
		iova = 0;
		CHECK_OK(p2p_ioas_map_file(ioas, fd, i * PAGE, 2 * PAGE, &iova,
					   RW | (extended ? EXT : 0)));
		h.iova[i] = iova;
		h.want[i] = *t_bar_ptr(dev.pci, BAR, DB_OFF + i * PAGE);
	}
	atomic_init(&h.held, 0);
	atomic_init(&h.release, 0);
	atomic_init(&h.reads_ok, 0);
	atomic_init(&r.done, 0);

	CHECK(pthread_create(&ta, NULL, holder_main, &h) == 0);
	CHECK(wait_flag(&h.held, (int)h.n, 10000));
	CHECK(atomic_load(&h.held) == (int)h.n);
	CHECK(pthread_create(&tb, NULL, revoker_main, &r) == 0);

	/* New translations fail as soon as the invalidate ran ... */
	for (unsigned int i = 0; i < 10000; i++) {
		started = 0;
		for (unsigned int k = 0; k < h.n; k++)
			started += xlate(ioas, h.iova[k], NULL) == -ENODEV;
		if (started == h.n)
			break;
		sleep_ms(1);
	}
	CHECK(started == h.n);
	/* ... but the revoke waits for the DMA already running (fence). */
	CHECK(returned_early(&r, 200) == 0);
	for (unsigned int i = 0; i < h.n; i++) {
		atomic_store(&h.release, (int)i + 1);
		if (i + 1 < h.n) {
			/* one segment is still held: still waiting */
			CHECK(returned_early(&r, 100) == 0);
		}
	}
	if (!wait_flag(&r.done, 1, 60000)) {
		/* The revoke never returned: nothing left to clean up safely. */
		fprintf(stderr, "[%s] the revoke did not return after the DMA ended\n", name);
		_exit(T_EXIT_FAIL);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK_OK(r.ret);
	CHECK(atomic_load(&h.reads_ok) == (int)h.n);
	for (unsigned int k = 0; k < h.n; k++)
		CHECK_ERR(xlate(ioas, h.iova[k], NULL), -ENODEV);

	if (!perm)
		CHECK_OK(t_mem_enable(dev.vdev, true));
	t_ioas_del(ictx, id, ioas);
	p2p_close(fd);
}

/* No DMA in flight: the revoke does not wait for anything. */
static void fence_idle(void)
{
	struct revoker r = { .fd = -1 };
	struct p2p_ioas *ioas;
	struct p2p_dma_seg seg = { 0 };
	uint64_t iova = 0;
	pthread_t tb;
	uint32_t id;
	int fd;

	t_section("2.5 fence: ended DMA does not hold a revoke");
	id = t_ioas_new(ictx, &ioas);
	fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, DB_SIZE);
	CHECK(fd >= 0);
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, DB_SIZE, &iova, RW));
	CHECK_OK(p2p_ioas_dma_begin(ioas, iova, PAGE, P2P_DMA_READ, &seg));
	p2p_ioas_dma_end(&seg);
	atomic_init(&r.done, 0);
	CHECK(pthread_create(&tb, NULL, revoker_main, &r) == 0);
	if (!wait_flag(&r.done, 1, 60000)) {
		fprintf(stderr, "the revoke did not return with no DMA in flight\n");
		_exit(T_EXIT_FAIL);
	}
	pthread_join(tb, NULL);
	CHECK_OK(r.ret);
	CHECK_ERR(xlate(ioas, iova, NULL), -ENODEV);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	t_ioas_del(ictx, id, ioas);
	p2p_close(fd);
}

/* ---------------------------------------------------------------------- */
/* IOAS_UNMAP waits for DMA in flight                                      */

enum unmap_kind { UM_USER, UM_MEMFD, UM_DMABUF, UM_COPY };

/*
 * Thread A: a device with a write translated at @iova (DMA in flight).
 * Once let go it does what a copy engine does: translates its source in
 * the same IOAS (while the unmap of @iova waits), copies, and ends both.
 */
struct writer {
	struct p2p_ioas *ioas;
	uint64_t iova, src_iova;
	atomic_int held;    /* 1: segment begun, < 0: -errno */
	atomic_int release; /* the main thread lets it go */
	int src_ret;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct p2p_dma_seg d = { 0 }, s = { 0 };
	int ret = p2p_ioas_dma_begin(w->ioas, w->iova, PAGE, P2P_DMA_WRITE, &d);

	if (ret) {
		atomic_store(&w->held, ret);
		return NULL;
	}
	atomic_store(&w->held, 1);
	wait_flag(&w->release, 1, 60000);
	w->src_ret = p2p_ioas_dma_begin(w->ioas, w->src_iova, PAGE, P2P_DMA_READ, &s);
	if (!w->src_ret) {
		memcpy(d.host, s.host, s.len < d.len ? s.len : d.len);
		p2p_ioas_dma_end(&s);
	} else {
		memset(d.host, 0xa5, d.len); /* the source was unmapped too: write a pattern */
	}
	p2p_ioas_dma_end(&d);
	return NULL;
}

/* Thread B: the program unmapping, then looking at the memory it took back. */
struct unmapper {
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	uint32_t id;
	uint64_t iova, len;
	bool ioctl_all;
	const volatile uint8_t *mem; /* the backing memory, through the program's view */
	uint8_t seen;
	atomic_int done;
	long ret;
};

static void *unmapper_main(void *arg)
{
	struct unmapper *u = arg;

	u->ret = u->ioctl_all ? t_unmap_ioctl(u->ictx, u->id, 0, UINT64_MAX, NULL) :
				p2p_ioas_unmap(u->ioas, u->iova, u->len, NULL);
	/* The program owns the memory again: what is in it now must stay. */
	u->seen = u->mem[0];
	atomic_store(&u->done, 1);
	return NULL;
}

static void unmap_round(const char *name, enum unmap_kind kind, bool ioctl_all)
{
	const uint64_t X = 0x10000000, Y = 0x20000000, Z = 0x30000000;
	struct writer w = { 0 };
	struct unmapper u = { 0 };
	struct p2p_ioas *ioas, *src = NULL;
	struct p2p_dma_seg seg = { 0 };
	uint8_t *mem, *other, *extra;
	uint32_t id, sid = 0;
	pthread_t ta, tb;
	uint64_t iova;
	int fd = -1;

	t_section(name);
	id = t_ioas_new(ictx, &ioas);
	other = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(other != MAP_FAILED);
	memset(other, 0xa5, 2 * PAGE);
	extra = other + PAGE;
	/* Y: the writer's source, another area of the same IOAS */
	iova = Y;
	CHECK_OK(p2p_ioas_map(ioas, other, PAGE, &iova, RW | FIXED));

	/* X: the area being unmapped, one page, 0x11 */
	iova = X;
	switch (kind) {
	case UM_USER:
		mem = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		CHECK(mem != MAP_FAILED);
		memset(mem, 0x11, PAGE);
		CHECK_OK(p2p_ioas_map(ioas, mem, PAGE, &iova, RW | FIXED));
		break;
	case UM_MEMFD:
	case UM_COPY:
		fd = memfd_create("unmap-wait", MFD_CLOEXEC);
		CHECK(fd >= 0 && ftruncate(fd, PAGE) == 0);
		mem = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		CHECK(mem != MAP_FAILED);
		memset(mem, 0x11, PAGE);
		if (kind == UM_MEMFD) {
			CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, PAGE, &iova, RW | FIXED));
			break;
		}
		/* mapped in src, copied into ioas: the unmap waits for ioas's DMA only */
		sid = t_ioas_new(ictx, &src);
		iova = 0;
		CHECK_OK(p2p_ioas_map_file(src, fd, 0, PAGE, &iova, RW));
		CHECK_OK(p2p_ioas_copy(ioas, src, iova, PAGE, &(uint64_t){ X }, RW | FIXED));
		break;
	default:
		fd = t_dmabuf_range(dev.vdev, BAR, DB_OFF, PAGE);
		CHECK(fd >= 0);
		mem = t_bar_ptr(dev.pci, BAR, DB_OFF);
		memset(mem, 0x11, PAGE);
		CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, PAGE, &iova, RW | FIXED));
		break;
	}

	w.ioas = ioas;
	w.iova = X;
	w.src_iova = Y;
	atomic_init(&w.held, 0);
	atomic_init(&w.release, 0);
	u = (struct unmapper){ .ictx = ictx, .ioas = ioas, .id = id, .iova = X, .len = PAGE,
			       .ioctl_all = ioctl_all, .mem = mem };
	atomic_init(&u.done, 0);
	CHECK(pthread_create(&ta, NULL, writer_main, &w) == 0);
	CHECK(wait_flag(&w.held, 1, 10000));
	CHECK(atomic_load(&w.held) == 1);
	CHECK(pthread_create(&tb, NULL, unmapper_main, &u) == 0);

	/* The unmap takes the area out at once: a new DMA faults (translation fault) ... */
	for (unsigned int i = 0; i < 10000 && xlate(ioas, X, NULL) != -ENOENT; i++)
		sleep_ms(1);
	CHECK_ERR(xlate(ioas, X, NULL), -ENOENT);
	/* ... but the unmap does not return while the DMA already translated runs. */
	{
		unsigned int early = 0;

		for (unsigned int i = 0; i < 200; i++) {
			early += atomic_load(&u.done) != 0;
			sleep_ms(1);
		}
		CHECK(early == 0);
	}
	/* It holds no lock meanwhile: the IOAS maps, translates and unmaps. */
	if (!ioctl_all) {
		iova = Z;
		CHECK_OK(p2p_ioas_map(ioas, extra, PAGE, &iova, RW | FIXED));
		CHECK_OK(p2p_ioas_dma_begin(ioas, Z, PAGE, P2P_DMA_READ, &seg));
		p2p_ioas_dma_end(&seg);
		CHECK_OK(p2p_ioas_unmap(ioas, Z, PAGE, NULL));
		CHECK(atomic_load(&u.done) == 0);
	}

	/* The device's write lands, then the DMA ends, then the unmap returns. */
	atomic_store(&w.release, 1);
	if (!wait_flag(&u.done, 1, 60000)) {
		fprintf(stderr, "[%s] the unmap did not return after the DMA ended\n", name);
		_exit(T_EXIT_FAIL);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK_OK(u.ret);
	/*
	 * The source translated while the unmap waited (no deadlock); when the
	 * unmap took it out too, that new DMA faulted instead.
	 */
	CHECK_ERR(w.src_ret, ioctl_all ? -ENOENT : 0);
	/* ... and the write was in memory before the unmap returned, none after. */
	CHECK(u.seen == 0xa5);
	CHECK(mem[0] == 0xa5);
	CHECK_ERR(xlate(ioas, X, NULL), -ENOENT);
	CHECK(p2p_ioas_nr_areas(ioas) == (ioctl_all ? 0 : 1));

	if (src) {
		/* The copy's source still maps the memory. */
		CHECK(p2p_ioas_nr_areas(src) == 1);
		t_ioas_del(ictx, sid, src);
	}
	t_ioas_del(ictx, id, ioas);
	if (kind == UM_USER || kind == UM_MEMFD || kind == UM_COPY)
		munmap(mem, PAGE);
	if (kind == UM_DMABUF)
		p2p_close(fd);
	else if (fd >= 0)
		close(fd);
	munmap(other, 2 * PAGE);
}

/* ---------------------------------------------------------------------- */
/* 1.6: a revoke walk that skips a buffer whose last reference is going    */

/*
 * A device close revokes every dma-buf of the function, but skips one
 * whose last reference is already gone (p2p_file_tryget() fails: its
 * release is about to unlink it, src/vfio/dmabuf.c).  That buffer's
 * importer drained its DMA (IOAS_UNMAP) before dropping its reference, so
 * the close must still return after that DMA in the memory model, or the
 * program reads the BAR with no happens-before edge to the device's
 * writes: a failed p2p_file_tryget() must be an acquire.  The chaos test
 * hit this under TSan (a close racing the copy engine re-exporting its
 * lane).  Here it is made deterministic with an exporter whose release
 * waits: the "device" thread writes through an IOAS area of the buffer,
 * unmaps it, closes the last fd and stops in the release; the main thread
 * learns that through a relaxed flag (no happens-before of its own), finds
 * p2p_file_tryget() failing, as the close does, and reads the memory.
 * Without the acquire, TSan reports a data race on those bytes; other
 * builds check the values and that tryget refuses a dying file.
 */
struct skipper {
	struct p2p_ioas *ioas;
	uint64_t iova;
	int fd;
	uint8_t *host; /* where the device wrote */
	int dma_ret, unmap_ret;
	/*
	 * in_release is relaxed: it orders the main thread after the release
	 * began but gives it no happens-before edge from the device thread.
	 * go is release/acquire: the main thread's reads of the dying buffer
	 * happen before the device thread frees it.
	 */
	atomic_int in_release, go;
};

static int skip_map(struct p2p_attachment *a, struct p2p_sgt **out)
{
	*out = t_sgt_of_ranges(p2p_attachment_dmabuf(a));
	return *out ? 0 : -ENOMEM;
}

static void skip_unmap(struct p2p_attachment *a, struct p2p_sgt *sgt)
{
	(void)a;
	free(sgt);
}

static void skip_release(struct p2p_dmabuf *buf)
{
	struct skipper *k = p2p_dmabuf_priv(buf);

	atomic_store_explicit(&k->in_release, 1, memory_order_relaxed);
	while (!atomic_load_explicit(&k->go, memory_order_acquire))
		sched_yield();
}

static const struct p2p_dmabuf_ops skip_ops = {
	.map = skip_map,
	.unmap = skip_unmap,
	.release = skip_release,
};

static void *skip_device_main(void *arg)
{
	struct skipper *k = arg;
	struct p2p_dma_seg seg = { 0 };

	k->dma_ret = p2p_ioas_dma_begin(k->ioas, k->iova, 2 * PAGE, P2P_DMA_WRITE, &seg);
	if (!k->dma_ret) {
		k->host = seg.host;
		memset(seg.host, 0x5c, seg.len);
		p2p_ioas_dma_end(&seg);
	}
	k->unmap_ret = p2p_ioas_unmap(k->ioas, k->iova, 2 * PAGE, NULL);
	p2p_close(k->fd); /* the last reference: stops in skip_release() */
	return NULL;
}

static void test_skip_dying(void)
{
	struct skipper k = { .iova = 0x40000000 };
	struct p2p_phys_range r = { .length = 2 * PAGE };
	struct p2p_dmabuf_export_info info = {
		.argsz = sizeof(info), .name = "skip", .ops = &skip_ops, .priv = &k,
		.nr_ranges = 1, .ranges = &r,
	};
	struct p2p_dmabuf *buf = NULL;
	struct p2p_mem *mem = NULL;
	const uint8_t *bytes;
	bool tryget = true, released;
	unsigned int bad = 0;
	pthread_t t;
	uint32_t id;

	t_section("1.6 a revoke walk skipping a dying buffer sees its DMA");
	atomic_init(&k.in_release, 0);
	atomic_init(&k.go, 0);
	id = t_ioas_new(ictx, &k.ioas);
	CHECK_OK(p2p_mem_create("skip", 2 * PAGE, 0, &mem));
	if (!mem)
		return;
	r.mem = mem;
	memset(p2p_mem_ptr(mem, 0), 0x11, 2 * PAGE);
	CHECK_OK(p2p_dmabuf_export(&info, &buf));
	k.fd = buf ? p2p_dmabuf_fd_install(buf, O_CLOEXEC) : -1;
	CHECK(k.fd >= 0);
	p2p_dmabuf_put(buf); /* the fd and the IOAS attachment hold it now */
	CHECK_OK(p2p_ioas_map_file(k.ioas, k.fd, 0, 2 * PAGE, &k.iova, RW | FIXED | EXT));
	if (t_failures) {
		t_ioas_del(ictx, id, k.ioas);
		p2p_close(k.fd);
		p2p_mem_put(mem);
		return;
	}
	CHECK(pthread_create(&t, NULL, skip_device_main, &k) == 0);
	/* Bounded: the device thread runs no revoke and waits for nothing. */
	for (unsigned int i = 0;
	     i < 10000 && !atomic_load_explicit(&k.in_release, memory_order_relaxed); i++)
		sleep_ms(1);
	released = atomic_load_explicit(&k.in_release, memory_order_relaxed);
	CHECK(released);
	if (released) {
		/* What vfio_dmabufs_cleanup() does with a listed buffer. */
		tryget = p2p_file_tryget(p2p_dmabuf_file(buf));
		bytes = p2p_mem_ptr(mem, 0);
		for (uint64_t i = 0; i < 2 * PAGE; i++)
			bad += bytes[i] != 0x5c;
	}
	atomic_store_explicit(&k.go, 1, memory_order_release);
	pthread_join(t, NULL);
	CHECK(!tryget);
	CHECK(bad == 0);
	CHECK_OK(k.dma_ret);
	CHECK_OK(k.unmap_ret);
	CHECK(k.host == p2p_mem_ptr(mem, 0));
	t_ioas_del(ictx, id, k.ioas);
	p2p_mem_put(mem);
}

int main(void)
{
	t_begin();
	t_dev_create_or_skip(&dev, "0000:03:00.0", BAR_SIZE, 1);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	t_bar_fill(dev.pci, BAR, BAR_SIZE);
	CHECK_OK(p2p_iommufd_open(&ictx));

	test_dmabuf_simple();
	test_dmabuf_revoke();
	test_perm_revoke();
	test_copy_engine();
	fence_idle();
	fence_round("2.5 fence: temporary revoke, one segment", false, false);
	fence_round("2.5 fence: permanent revoke, EXTENDED, two segments", true, true);
	unmap_round("UNMAP waits for DMA: process memory", UM_USER, false);
	unmap_round("UNMAP waits for DMA: memfd", UM_MEMFD, false);
	unmap_round("UNMAP waits for DMA: dma-buf", UM_DMABUF, false);
	unmap_round("UNMAP waits for DMA: IOAS_COPY'd memfd", UM_COPY, false);
	unmap_round("UNMAP waits for DMA: ioctl, unmap all", UM_MEMFD, true);
	test_skip_dying();

	p2p_iommufd_close(ictx);
	t_dev_destroy(&dev);
	return t_end();
}
