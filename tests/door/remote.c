// SPDX-License-Identifier: MIT
/*
 * A kernel-uAPI program on devices served by another process: run by
 * tests/vfio-user-exec.sh as `p2pbuf exec --connect DIR/0000:01:00.0
 * [--connect DIR/0000:02:00.0] -- door-remote MODE` against `p2pbuf serve`.
 * It knows nothing of vfio-user: /dev/vfio/devices/vfioN found in sysfs,
 * VFIO and iommufd ioctls, mmap.
 *   write SEED  - BAR2 of the GPU mapped, a pattern written (another
 *                 process checks it);
 *   dma SEED    - the pattern another process wrote is there; the copy
 *                 engine (served over its own socket) attached to an IOAS
 *                 of ours copies between our memory (shared anonymous ring
 *                 and destination, a MAP_SHARED memfd source: mapped by the
 *                 server from their files, found through /proc) and into a
 *                 dma-buf of the GPU's BAR2 (peer to peer between two
 *                 servers' devices); a reset of the GPU revokes it: the
 *                 next DMA into it fails;
 *   check       - the canaries `dma` left in BAR2 are intact (nothing
 *                 landed after the revoke);
 *   dead        - the GPU open and its BAR2 mapped, "ready" said, then
 *                 after a line on stdin (the server was killed): the
 *                 function is removed (sysfs entry and node gone, no new
 *                 open), the mapping faults.
 */
#include "ce.h"

#include <sys/mman.h>
#include <linux/memfd.h>

int memfd_create(const char *name, unsigned int flags);

#define GPU_BDF "0000:01:00.0"
#define RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)
#define IOVA_RING 0x100000ull
#define IOVA_COMPL 0x101000ull
#define IOVA_SRC 0x200000ull
#define IOVA_DST 0x300000ull
#define IOVA_BAR 0x40000000ull
#define DATA (64 * 1024)
#define PAT_OFF 8192
#define PAT_LEN 4096
#define P2P_OFF (1024 * 1024)

static int iommufd = -1;

/* The cdev, bound to our iommufd (a cdev answers nothing else before). */
static int open_dev(const char *bdf)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	char path[64];
	int idx = sysfs_cdev_index(bdf), fd;

	if (idx < 0)
		return -1;
	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", idx);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (iommufd < 0)
		iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	bind.iommufd = iommufd;
	if (ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind)) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint8_t pat(unsigned int seed, size_t i)
{
	return (uint8_t)(i * 31 + seed * 7 + 1);
}

static uint8_t *map_bar2(int dev, struct vfio_region_info *r)
{
	void *p;

	*r = (struct vfio_region_info){ .argsz = sizeof(*r), .index = VFIO_PCI_BAR2_REGION_INDEX };
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, r) || !(r->flags & VFIO_REGION_INFO_FLAG_MMAP)) {
		fprintf(stderr, "BAR2 region info: %s, flags %#x\n", strerror(errno), r->flags);
		return NULL;
	}
	p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, dev, (off_t)r->offset);
	if (p == MAP_FAILED)
		fprintf(stderr, "mmap of BAR2 (size %llu at %#llx): %s\n",
			(unsigned long long)r->size, (unsigned long long)r->offset, strerror(errno));
	return p == MAP_FAILED ? NULL : p;
}

static int mode_write(unsigned int seed)
{
	struct vfio_region_info r;
	char buf[64];
	int dev = open_dev(GPU_BDF);
	uint8_t *bar;

	CHECK(dev >= 0, "open the remote GPU's cdev: %s", strerror(errno));
	if (dev < 0)
		return finish("door-remote write");
	CHECK(read_text("/sys/bus/pci/devices/" GPU_BDF "/class", buf, sizeof(buf)) == 0 &&
	      !strncmp(buf, "0x03", 4), "sysfs class of the remote GPU: %s", buf);
	CHECK(sysfs_group(GPU_BDF) > 0, "an IOMMU group in sysfs");
	bar = map_bar2(dev, &r);
	CHECK(bar != NULL, "mmap of BAR2");
	if (bar) {
		for (size_t i = 0; i < PAT_LEN; i++)
			bar[PAT_OFF + i] = pat(seed, i);
		munmap(bar, r.size);
	}
	close(dev);
	return finish("door-remote write");
}

static int export1(int dev, uint64_t off, uint64_t len)
{
	uint64_t raw[(sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_dma_buf) +
		      sizeof(struct vfio_region_dma_range)) / 8] = { 0 };
	struct vfio_device_feature *hdr = (void *)raw;
	struct vfio_device_feature_dma_buf *db = (void *)hdr->data;

	hdr->argsz = sizeof(raw);
	hdr->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	db->region_index = VFIO_PCI_BAR2_REGION_INDEX;
	db->open_flags = O_RDWR | O_CLOEXEC;
	db->nr_ranges = 1;
	db->dma_ranges[0].offset = off;
	db->dma_ranges[0].length = len;
	return ioctl(dev, VFIO_DEVICE_FEATURE, hdr);
}

static int ioas_map(int iommufd, uint32_t ioas, void *va, uint64_t len, uint64_t iova,
		    uint32_t flags)
{
	struct iommu_ioas_map m = { .size = sizeof(m), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | flags,
				    .ioas_id = ioas, .user_va = (uintptr_t)va, .length = len,
				    .iova = iova };

	return ioctl(iommufd, IOMMU_IOAS_MAP, &m);
}

static int mode_dma(unsigned int seed)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct vfio_region_info r;
	int gpu = open_dev(GPU_BDF), cefd = open_dev(CE_BDF), mfd, buf;
	uint8_t *bar, *src, *dst;
	void *ring, *compl;
	uint32_t x;
	struct ce ce;
	size_t bad = 0;

	CHECK(gpu >= 0 && cefd >= 0, "open both remote functions");
	if (gpu < 0 || cefd < 0)
		return finish("door-remote dma");
	bar = map_bar2(gpu, &r);
	CHECK(bar != NULL, "mmap of BAR2");
	if (!bar)
		return finish("door-remote dma");
	for (size_t i = 0; i < PAT_LEN; i++)
		bad += bar[PAT_OFF + i] != pat(seed, i);
	CHECK(!bad, "the pattern another process wrote into BAR2: %zu bytes differ", bad);

	CHECK(iommufd >= 0 && ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc) == 0, "IOAS_ALLOC");
	{
		struct vfio_device_attach_iommufd_pt att = { .argsz = sizeof(att),
							     .pt_id = alloc.out_ioas_id };

		CHECK(ioctl(cefd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &att) == 0, "attach the engine");
	}
	/* Shared memory the server can map (the engine reaches nothing else). */
	ring = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	compl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, DATA, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	mfd = memfd_create("door-remote-src", MFD_CLOEXEC);
	CHECK(mfd >= 0 && ftruncate(mfd, DATA) == 0, "memfd");
	src = mmap(NULL, DATA, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	CHECK(ring != MAP_FAILED && compl != MAP_FAILED && dst != MAP_FAILED && src != MAP_FAILED,
	      "process memory");
	if (failures)
		return finish("door-remote dma");
	for (size_t i = 0; i < DATA; i++)
		src[i] = pat(seed + 1, i);
	CHECK(ioas_map(iommufd, alloc.out_ioas_id, ring, 4096, IOVA_RING, IOMMU_IOAS_MAP_READABLE) == 0 &&
	      ioas_map(iommufd, alloc.out_ioas_id, compl, 4096, IOVA_COMPL, RW) == 0 &&
	      ioas_map(iommufd, alloc.out_ioas_id, src, DATA, IOVA_SRC, RW) == 0 &&
	      ioas_map(iommufd, alloc.out_ioas_id, dst, DATA, IOVA_DST, RW) == 0, "IOAS_MAP");
	CHECK(ce_init(&ce, cefd, ring, IOVA_RING, compl, IOVA_COMPL) == 0, "engine init");
	if (failures)
		return finish("door-remote dma");
	CHECK((x = ce_copy(&ce, IOVA_SRC, IOVA_DST + 5, 40000)) == CE_OK,
	      "DMA memfd -> shared anonymous memory: status %u", x);
	CHECK(!memcmp(dst + 5, src, 40000) && dst[4] == 0 && dst[40005] == 0, "the DMA'd bytes");

	/* Peer to peer: into a dma-buf of the other server's GPU BAR2. */
	buf = export1(gpu, P2P_OFF, DATA);
	CHECK(buf >= 0, "dma-buf of BAR2: %s", strerror(errno));
	{
		struct iommu_ioas_map_file mf = {
			.size = sizeof(mf), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | RW,
			.ioas_id = alloc.out_ioas_id, .fd = buf, .length = DATA, .iova = IOVA_BAR,
		};

		CHECK(ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &mf) == 0, "MAP_FILE of the dma-buf: %s",
		      strerror(errno));
	}
	memset(bar + P2P_OFF, 0, DATA);
	CHECK((x = ce_copy(&ce, IOVA_SRC, IOVA_BAR + 64, 30000)) == CE_OK,
	      "DMA memfd -> the other server's BAR2: status %u", x);
	CHECK(!memcmp(bar + P2P_OFF + 64, src, 30000) && bar[P2P_OFF + 63] == 0,
	      "the DMA'd bytes in BAR2");
	/*
	 * Canaries, then a reset revokes the dma-buf: the engine's next DMA
	 * into it faults.  The server announces no restore, so this process's
	 * BAR mapping stays revoked: `door-remote check` in another process
	 * reads the canaries.
	 */
	memset(bar + P2P_OFF, 0xcc, DATA);
	CHECK(ioctl(gpu, VFIO_DEVICE_RESET) == 0, "VFIO_DEVICE_RESET of the GPU");
	x = ce_copy(&ce, IOVA_SRC, IOVA_BAR, 4096);
	CHECK(x == CE_REVOKED || x == CE_FAULT, "DMA into the revoked dma-buf: status %u", x);
	x = ce_copy(&ce, IOVA_SRC, IOVA_DST, 4096);
	CHECK(x == CE_OK, "DMA into process memory still works: status %u", x);
	ce_stop(&ce);
	close(buf);
	munmap(bar, r.size);
	close(cefd);
	close(gpu);
	close(iommufd);
	return finish("door-remote dma");
}

/* The canaries `dma` left in BAR2 after its revoke are all there. */
static int mode_check(void)
{
	struct vfio_region_info r;
	int dev = open_dev(GPU_BDF);
	uint8_t *bar = dev >= 0 ? map_bar2(dev, &r) : NULL;
	size_t bad = 0;

	CHECK(bar != NULL, "mmap of BAR2");
	if (!bar)
		return finish("door-remote check");
	for (size_t i = 0; i < DATA; i++)
		bad += bar[P2P_OFF + i] != 0xcc;
	CHECK(!bad, "nothing landed in BAR2 after the revoke: %zu bytes differ", bad);
	munmap(bar, r.size);
	close(dev);
	return finish("door-remote check");
}

static int mode_dead(void)
{
	struct vfio_region_info r;
	struct stat st;
	char line[16];
	int dev = open_dev(GPU_BDF), again, idx = sysfs_cdev_index(GPU_BDF);
	uint8_t *bar, v;

	probe_init();
	CHECK(dev >= 0, "open the remote GPU");
	bar = dev >= 0 ? map_bar2(dev, &r) : NULL;
	CHECK(bar && probe(bar, &v, 0) == 0, "BAR2 mapped and readable");
	if (failures)
		return finish("door-remote dead");
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	/* The server is gone: its function is removed. */
	usleep(100000);
	CHECK(probe(bar, &v, 0) == SIGBUS, "the BAR2 mapping faults (revoked for good)");
	errno = 0;
	CHECK(stat("/sys/bus/pci/devices/" GPU_BDF, &st) < 0 && errno == ENOENT,
	      "no /sys/bus/pci/devices/" GPU_BDF " any more: %s", strerror(errno));
	{
		char path[64];

		snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", idx);
		errno = 0;
		again = open(path, O_RDWR | O_CLOEXEC);
		CHECK(again < 0 && (errno == ENOENT || errno == ENODEV),
		      "a new open of %s fails: %s", path, strerror(errno));
	}
	errno = 0;
	CHECK(pread(dev, &v, 1, (off_t)r.offset) < 0, "BAR2 pread on the open fd fails: %s",
	      strerror(errno));
	munmap(bar, r.size);
	CHECK(close(dev) == 0, "close");
	return finish("door-remote dead");
}

int main(int argc, char **argv)
{
	unsigned int seed = argc > 2 ? (unsigned int)atoi(argv[2]) : 1;

	if (argc > 1 && !strcmp(argv[1], "write"))
		return mode_write(seed);
	if (argc > 1 && !strcmp(argv[1], "dma"))
		return mode_dma(seed);
	if (argc > 1 && !strcmp(argv[1], "check"))
		return mode_check();
	if (argc > 1 && !strcmp(argv[1], "dead"))
		return mode_dead();
	fprintf(stderr, "usage: door-remote write|dma|check|dead [SEED]\n");
	return 2;
}
