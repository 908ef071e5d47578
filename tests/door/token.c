// SPDX-License-Identifier: MIT
/*
 * Process B of tests/vfio-user-token.c written as a kernel-uAPI program:
 * run as `p2pbuf exec -q -- door-token` with fd 3 a Unix socket on which
 * another process sends a dma-buf fd (SCM_RIGHTS) it exported from a
 * device served by `p2pbuf serve`, and fd 4 its control socket (one byte
 * per step).  It knows nothing of p2pbuf: recvmsg(2), mmap(2),
 * DMA_BUF_IOCTL_SYNC, IOMMU_IOAS_MAP_FILE, and the copy engine of the
 * door's own set (/dev/vfio/devices) DMAing from the buffer.
 *   'g' -> the buffer's canaries, a DMA from it;         replies '1'
 *   'r' -> (the revoke returned) the mapping faults,
 *          the engine's DMA from it is revoked;           replies 'R'
 *   'o' -> (restored) the same mapping works again;      replies 'O'
 *   'c' -> everything closed;                             replies 'C'
 */
#include "ce.h"

#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>

#define LEN (4 * 4096)
#define RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)
#define IOVA_RING 0x100000ull
#define IOVA_COMPL 0x101000ull
#define IOVA_BUF 0x200000ull
#define IOVA_DST 0x300000ull

static char step(char reply)
{
	struct pollfd p = { .fd = 4, .events = POLLIN };
	char c = 0;

	if (reply && send(4, &reply, 1, MSG_NOSIGNAL) != 1)
		return 0;
	if (poll(&p, 1, 20000) != 1 || recv(4, &c, 1, 0) != 1)
		return 0;
	return c;
}

static int ioas_map(int iommufd, uint32_t ioas, void *va, uint64_t len, uint64_t iova)
{
	struct iommu_ioas_map m = { .size = sizeof(m), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | RW,
				    .ioas_id = ioas, .user_va = (uintptr_t)va, .length = len,
				    .iova = iova };

	return ioctl(iommufd, IOMMU_IOAS_MAP, &m);
}

static bool restored(volatile uint8_t *p)
{
	uint8_t v;

	for (int i = 0; i < 500; i++) {
		if (!probe(p, &v, 0))
			return true;
		usleep(10000);
	}
	return false;
}

int main(void)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} u;
	char x;
	struct iovec iov = { .iov_base = &x, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			     .msg_controllen = sizeof(u.b) };
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct dma_buf_sync sync = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	int fd = -1, iommufd = -1, cefd = -1, idx;
	uint8_t *m, *dst, v;
	void *ring, *compl;
	struct ce ce;
	char path[64];
	uint32_t s;

	probe_init();
	CHECK(recvmsg(3, &mh, MSG_CMSG_CLOEXEC) == 1, "recvmsg: %s", strerror(errno));
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	CHECK(fd >= 0, "an fd came");
	if (step(0) != 'g')
		return finish("door-token");

	m = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED, "mmap of the dma-buf: %s", strerror(errno));
	if (m == MAP_FAILED)
		return finish("door-token");
	CHECK(m[0] == 0xa5 && m[LEN - 1] == 0x5a, "the other process's canaries: %#x %#x", m[0],
	      m[LEN - 1]);
	CHECK(ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync) == 0, "DMA_BUF_IOCTL_SYNC: %s", strerror(errno));
	sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	CHECK(ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync) == 0, "DMA_BUF_IOCTL_SYNC end");

	idx = sysfs_cdev_index(CE_BDF);
	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", idx);
	cefd = idx >= 0 ? open(path, O_RDWR | O_CLOEXEC) : -1;
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	CHECK(cefd >= 0 && iommufd >= 0, "the copy engine and /dev/iommu");
	if (failures)
		return finish("door-token");
	{
		struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };

		CHECK(ioctl(cefd, VFIO_DEVICE_BIND_IOMMUFD, &bind) == 0, "bind");
	}
	CHECK(ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc) == 0, "IOAS_ALLOC");
	{
		struct vfio_device_attach_iommufd_pt att = { .argsz = sizeof(att),
							     .pt_id = alloc.out_ioas_id };

		CHECK(ioctl(cefd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &att) == 0, "attach the engine");
	}
	ring = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	compl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(ring != MAP_FAILED && compl != MAP_FAILED && dst != MAP_FAILED, "memory");
	if (failures)
		return finish("door-token");
	CHECK(ioas_map(iommufd, alloc.out_ioas_id, ring, 4096, IOVA_RING) == 0 &&
	      ioas_map(iommufd, alloc.out_ioas_id, compl, 4096, IOVA_COMPL) == 0 &&
	      ioas_map(iommufd, alloc.out_ioas_id, dst, LEN, IOVA_DST) == 0, "IOAS_MAP");
	{
		struct iommu_ioas_map_file mf = {
			.size = sizeof(mf), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | RW,
			.ioas_id = alloc.out_ioas_id, .fd = fd, .length = LEN, .iova = IOVA_BUF,
		};

		CHECK(ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &mf) == 0, "MAP_FILE of the dma-buf: %s",
		      strerror(errno));
	}
	CHECK(ce_init(&ce, cefd, ring, IOVA_RING, compl, IOVA_COMPL) == 0, "engine init");
	if (failures)
		return finish("door-token");
	CHECK((s = ce_copy(&ce, IOVA_BUF, IOVA_DST, LEN)) == CE_OK, "DMA from the dma-buf: %u", s);
	CHECK(dst[0] == 0xa5 && dst[LEN - 1] == 0x5a, "the DMA'd canaries");

	if (step('1') != 'r')
		return finish("door-token");
	CHECK(probe(m, &v, 0) == SIGBUS, "the mapping faults once the revoke returned");
	CHECK(probe(m + 1, NULL, 1) == SIGBUS, "a store faults too");
	memset(dst, 0, LEN);
	s = ce_copy(&ce, IOVA_BUF, IOVA_DST, 4096);
	CHECK(s == CE_REVOKED || s == CE_FAULT, "the engine's DMA from it: status %u", s);
	CHECK(dst[0] == 0, "nothing copied");

	if (step('R') != 'o')
		return finish("door-token");
	CHECK(restored(m), "the same mapping works again after the restore");
	CHECK(m[0] == 0xa5, "the canary is still there");

	if (step('O') != 'c')
		return finish("door-token");
	ce_stop(&ce);
	munmap(m, LEN);
	close(fd);
	close(cefd);
	close(iommufd);
	x = 'C';
	send(4, &x, 1, MSG_NOSIGNAL);
	return finish("door-token");
}
