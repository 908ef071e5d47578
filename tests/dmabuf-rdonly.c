// SPDX-License-Identifier: MIT
/*
 * A dma-buf exported read-only (VFIO_DEVICE_FEATURE_DMA_BUF open_flags
 * O_RDONLY, a heap allocation with fd_flags O_RDONLY) is never written,
 * by any path, and what sits behind it (a BAR) keeps its bytes:
 *
 *   - mmap MAP_SHARED with PROT_WRITE: -EACCES, through the fd
 *     (p2p_fd_mmap(), do_mmap()'s rule) and through p2p_dmabuf_mmap();
 *     a read-only shared mapping works and cannot be mprotect()ed writable
 *     (EACCES, no VM_MAYWRITE); MAP_PRIVATE is the exporter's call (VFIO
 *     refuses it, -EINVAL); an O_WRONLY export cannot be mapped at all;
 *   - IOMMU_IOAS_MAP_FILE with IOMMU_IOAS_MAP_WRITEABLE: -EPERM (the 2026
 *     iommufd fix for files without FMODE_WRITE, applied to dma-bufs); a
 *     readable map works, a device write through it is -EPERM, and
 *     IOMMU_IOAS_COPY of it with WRITEABLE is -EPERM;
 *   - type1 MAP_DMA with WRITE of its mapping: -EFAULT;
 *   - io_uring READ_FIXED into a slot registered on it: cqe -EFAULT (a
 *     WRITE_FIXED from it works);
 *   - DMA_BUF_IOCTL_SYNC with DMA_BUF_SYNC_WRITE: -EPERM (READ works);
 *   - pwrite/write on the fd: -EBADF (not opened for writing).
 *
 * Every refusal is checked against the BAR's bytes afterwards.  The same
 * calls on an O_RDWR export succeed, so each check can fail.
 */
#define _GNU_SOURCE
#include <linux/dma-buf.h>
#include <liburing.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ul
#define BAR2_SIZE (256 * 1024ul)
#define LEN (64 * 1024ul)

static struct t_dev dev;

static bool bar_intact(void)
{
	const uint8_t *p = t_bar_ptr(dev.pci, 2, 0);

	for (uint64_t i = 0; i < LEN; i++)
		if (p[i] != t_pattern(i))
			return false;
	return true;
}

static int export(uint32_t open_flags)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = LEN };

	return p2p_vfio_device_get_dmabuf(dev.vdev, 2, &r, 1, open_flags);
}

static void test_mmap(void)
{
	int ro, rw, wo;
	struct p2p_dmabuf *buf;
	void *va;

	t_section("mmap");
	ro = export(O_RDONLY | O_CLOEXEC);
	rw = export(O_RDWR | O_CLOEXEC);
	wo = export(O_WRONLY | O_CLOEXEC);
	CHECK(ro >= 0 && rw >= 0 && wo >= 0);

	CHECK_ERR(p2p_fd_mmap(ro, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va), -EACCES);
	CHECK_ERR(p2p_fd_mmap(ro, NULL, LEN, PROT_WRITE, MAP_SHARED, 0, &va), -EACCES);
	CHECK_OK(p2p_dmabuf_get(ro, &buf));
	CHECK(!p2p_dmabuf_writable(buf));
	CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va),
		  -EACCES);
	/* MAP_PRIVATE is not a shared writable mapping: the exporter decides (VFIO: no). */
	CHECK_ERR(p2p_dmabuf_mmap(buf, NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0, &va),
		  -EINVAL);
	p2p_dmabuf_put(buf);

	/* Read-only shared: works, reads the BAR, cannot write, cannot become writable. */
	CHECK_OK(p2p_fd_mmap(ro, NULL, LEN, PROT_READ, MAP_SHARED, 0, &va));
	if (va) {
		CHECK(((uint8_t *)va)[100] == t_pattern(100));
		CHECK(t_write_faults((uint8_t *)va + 100, 0x5a));
		errno = 0;
		CHECK(mprotect(va, PAGE, PROT_READ | PROT_WRITE) == -1 && errno == EACCES);
		CHECK(t_write_faults((uint8_t *)va + 100, 0x5a));
		CHECK_OK(p2p_munmap(va, LEN));
	}

	/* O_WRONLY: no mapping at all (do_mmap() wants FMODE_READ). */
	CHECK_ERR(p2p_fd_mmap(wo, NULL, LEN, PROT_READ, MAP_SHARED, 0, &va), -EACCES);

	/* The control: O_RDWR maps writable and writes land. */
	CHECK_OK(p2p_fd_mmap(rw, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va));
	if (va) {
		CHECK(!t_write_faults((uint8_t *)va + 100, t_pattern(100)));
		CHECK_OK(p2p_munmap(va, LEN));
	}

	/* read/write on a dma-buf: EBADF without the access, EINVAL (no op) with it. */
	{
		uint8_t b = 0x5a;

		CHECK_ERR(p2p_fd_pwrite(ro, &b, 1, 0), -EBADF);
		CHECK_ERR(p2p_fd_write(ro, &b, 1), -EBADF);
		CHECK_ERR(p2p_fd_pwrite(rw, &b, 1, 0), -EINVAL);
		CHECK_ERR(p2p_fd_pread(wo, &b, 1, 0), -EBADF);
	}
	CHECK(bar_intact());
	CHECK_OK(p2p_close(ro));
	CHECK_OK(p2p_close(rw));
	CHECK_OK(p2p_close(wo));
}

static void test_sync(void)
{
	struct dma_buf_sync s;
	int ro = export(O_RDONLY | O_CLOEXEC), rw = export(O_RDWR | O_CLOEXEC);

	t_section("DMA_BUF_IOCTL_SYNC");
	CHECK(ro >= 0 && rw >= 0);
	s.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE;
	CHECK_ERR(p2p_fd_ioctl(ro, DMA_BUF_IOCTL_SYNC, &s), -EPERM);
	s.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW;
	CHECK_ERR(p2p_fd_ioctl(ro, DMA_BUF_IOCTL_SYNC, &s), -EPERM);
	s.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ;
	CHECK_OK(p2p_fd_ioctl(ro, DMA_BUF_IOCTL_SYNC, &s));
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ;
	CHECK_OK(p2p_fd_ioctl(ro, DMA_BUF_IOCTL_SYNC, &s));
	/* Validation comes first, as the kernel's. */
	s.flags = DMA_BUF_SYNC_START;
	CHECK_ERR(p2p_fd_ioctl(ro, DMA_BUF_IOCTL_SYNC, &s), -EINVAL);
	s.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW;
	CHECK_OK(p2p_fd_ioctl(rw, DMA_BUF_IOCTL_SYNC, &s));
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	CHECK_OK(p2p_fd_ioctl(rw, DMA_BUF_IOCTL_SYNC, &s));
	CHECK_OK(p2p_close(ro));
	CHECK_OK(p2p_close(rw));
}

static void test_ioas(void)
{
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas, *ioas2;
	struct p2p_dma_seg seg;
	uint32_t id, id2;
	uint64_t iova, iova2;
	int ro, rw;
	void *va;

	t_section("IOAS");
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK_OK(p2p_ioas_alloc(ictx, &id2, &ioas2));
	ro = export(O_RDONLY | O_CLOEXEC);
	rw = export(O_RDWR | O_CLOEXEC);
	CHECK(ro >= 0 && rw >= 0);

	/* IOMMU_IOAS_MAP_FILE through the ioctl, as a program does. */
	{
		struct iommu_ioas_map_file mf = {
			.size = sizeof(mf),
			.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
			.ioas_id = id,
			.fd = ro,
			.start = 0,
			.length = LEN,
		};

		CHECK_ERR(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP_FILE, &mf), -EPERM);
		CHECK(p2p_ioas_nr_areas(ioas) == 0);
		mf.fd = rw;
		CHECK_OK(p2p_iommufd_ioctl(ictx, IOMMU_IOAS_MAP_FILE, &mf)); /* control */
		CHECK_OK(p2p_ioas_unmap(ioas, mf.iova, LEN, NULL));
	}

	/* Readable only: mapped; a device write through it is refused. */
	iova = 0;
	CHECK_OK(p2p_ioas_map_file(ioas, ro, 0, LEN, &iova, IOMMU_IOAS_MAP_READABLE));
	CHECK_ERR(p2p_ioas_dma_begin(ioas, iova, PAGE, P2P_DMA_WRITE, &seg), -EPERM);
	CHECK_OK(p2p_ioas_dma_begin(ioas, iova, PAGE, P2P_DMA_READ, &seg));
	p2p_ioas_dma_end(&seg);
	/* IOAS_COPY cannot make it writeable (iopt_map_pages: -EPERM)... */
	iova2 = 0;
	CHECK_ERR(p2p_ioas_copy(ioas2, ioas, iova, LEN, &iova2,
				IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE),
		  -EPERM);
	CHECK(p2p_ioas_nr_areas(ioas2) == 0);
	/* ...a readable copy works. */
	CHECK_OK(p2p_ioas_copy(ioas2, ioas, iova, LEN, &iova2, IOMMU_IOAS_MAP_READABLE));
	CHECK_OK(p2p_ioas_unmap(ioas2, iova2, LEN, NULL));
	CHECK_OK(p2p_ioas_unmap(ioas, iova, LEN, NULL));

	/* type1 MAP_DMA of a read-only mapping with WRITE: pinning for write fails. */
	CHECK_OK(p2p_fd_mmap(ro, NULL, LEN, PROT_READ, MAP_SHARED, 0, &va));
	if (va) {
		CHECK_ERR(p2p_ioas_map_dma(ioas, va, LEN, 1ull << 30,
					   IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE),
			  -EFAULT);
		CHECK_OK(p2p_ioas_map_dma(ioas, va, LEN, 1ull << 30, IOMMU_IOAS_MAP_READABLE));
		CHECK_OK(p2p_ioas_unmap(ioas, 1ull << 30, LEN, NULL));
		CHECK_OK(p2p_munmap(va, LEN));
	}
	CHECK(bar_intact());
	CHECK_OK(p2p_close(ro));
	CHECK_OK(p2p_close(rw));
	p2p_ioas_put(ioas);
	p2p_ioas_put(ioas2);
	p2p_iommufd_close(ictx);
}

static int uring_rw(struct p2p_uring *r, int op, int fd, uint64_t addr, uint32_t len)
{
	struct io_uring_sqe sqe = {
		.opcode = (uint8_t)op, .fd = fd, .addr = addr, .len = len, .off = 0,
		.buf_index = 0, .user_data = 7,
	};
	struct io_uring_cqe cqe;
	int ret = p2p_uring_submit_sqe(r, &sqe);

	if (ret)
		return ret;
	ret = p2p_uring_submit(r);
	if (ret < 0)
		return ret;
	ret = p2p_uring_wait_cqe(r, &cqe, true);
	return ret ? ret : cqe.res;
}

static void test_uring(void)
{
	char path[] = "/tmp/p2pbuf-rdonly-XXXXXX";
	struct p2p_uring *r;
	uint8_t junk[PAGE];
	int ro, rw, file;

	t_section("io_uring");
	file = mkostemp(path, O_CLOEXEC);
	if (file < 0) {
		CHECK(file >= 0);
		return;
	}
	unlink(path);
	memset(junk, 0xee, sizeof(junk));
	CHECK(pwrite(file, junk, sizeof(junk), 0) == (ssize_t)sizeof(junk));
	if (p2p_uring_create(8, 2, &r)) {
		close(file);
		printf("io_uring unavailable: the io_uring part is not run\n");
		return;
	}
	ro = export(O_RDONLY | O_CLOEXEC);
	rw = export(O_RDWR | O_CLOEXEC);
	CHECK(ro >= 0 && rw >= 0);
	CHECK_OK(p2p_uring_register_dmabuf(r, 0, ro, file));
	/* READ_FIXED writes the buffer: refused; WRITE_FIXED reads it: works. */
	CHECK_ERR(uring_rw(r, IORING_OP_READ_FIXED, file, 0, PAGE), -EFAULT);
	CHECK(bar_intact());
	CHECK_ERR(uring_rw(r, IORING_OP_WRITE_FIXED, file, 0, PAGE), PAGE);
	CHECK(pread(file, junk, PAGE, 0) == PAGE && junk[10] == t_pattern(10));
	/* The control: the same READ_FIXED into an O_RDWR export lands. */
	memset(junk, 0xee, sizeof(junk));
	CHECK(pwrite(file, junk, sizeof(junk), 0) == (ssize_t)sizeof(junk));
	CHECK_OK(p2p_uring_register_dmabuf(r, 0, rw, file));
	CHECK_ERR(uring_rw(r, IORING_OP_READ_FIXED, file, 0, PAGE), PAGE);
	CHECK(t_bar_ptr(dev.pci, 2, 0)[10] == 0xee);
	t_bar_fill(dev.pci, 2, BAR2_SIZE);
	p2p_uring_destroy(r);
	CHECK_OK(p2p_close(ro));
	CHECK_OK(p2p_close(rw));
	close(file);
}

/* The heap: fd_flags O_RDONLY makes a read-only buffer too. */
static void test_heap(void)
{
	struct dma_heap_allocation_data d = { .len = PAGE, .fd_flags = O_RDONLY | O_CLOEXEC };
	struct dma_buf_sync s = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE };
	int hfd = p2p_dma_heap_open_fd("system", O_RDWR | O_CLOEXEC);
	void *va;

	t_section("heap");
	CHECK(hfd >= 0);
	CHECK_OK(p2p_fd_ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, &d));
	CHECK_ERR(p2p_fd_mmap((int)d.fd, NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va),
		  -EACCES);
	CHECK_ERR(p2p_fd_ioctl((int)d.fd, DMA_BUF_IOCTL_SYNC, &s), -EPERM);
	CHECK_OK(p2p_fd_mmap((int)d.fd, NULL, PAGE, PROT_READ, MAP_SHARED, 0, &va));
	if (va) {
		CHECK(t_write_faults(va, 1));
		CHECK_OK(p2p_munmap(va, PAGE));
	}
	CHECK_OK(p2p_close((int)d.fd));
	CHECK_OK(p2p_close(hfd));
}

int main(void)
{
	t_begin();
	t_dev_create_or_skip(&dev, "rdonly", BAR2_SIZE, 31);
	t_bar_fill(dev.pci, 2, BAR2_SIZE);
	test_mmap();
	test_sync();
	test_ioas();
	test_uring();
	test_heap();
	CHECK(bar_intact());
	t_dev_destroy(&dev);
	return t_end();
}
