// SPDX-License-Identifier: MIT
/*
 * io_uring dma-buf registered buffers (kernel-semantics 5.1, 5.2, 8.4).
 *
 * Registration through IORING_REGISTER_BUFFERS_UPDATE with
 * IORING_RSRC_UPDATE_EXTENDED descriptors: every validation rule of 5.1
 * with its errno, and that a failed update leaves the table as it was
 * (the normal buffer update path replaces a slot only once its new buffer
 * is set up).  Plain iovec updates still register UADDR slots.
 *
 * I/O as in Pavel's liburing branches (8.4): READ_FIXED / WRITE_FIXED on
 * a DMABUF slot take an offset into the dma-buf; offsets and lengths at the
 * edges, len 0 and out-of-bounds -> EFAULT, vectored fixed ops ->
 * EOPNOTSUPP, another file than the registered target -> EBADF (a dup(2)
 * is the same file), SEND_ZC with a fixed DMABUF buffer -> EFAULT.  Data
 * is checked against the file (pread) and against the BAR bytes
 * (p2p_mem_ptr), for single- and multi-range (unsorted) dma-bufs with I/O
 * crossing range boundaries, and for a system heap dma-buf (6.1).
 *
 * Token lifecycle (5.2, issue 10): registration maps and pins the slot; a
 * revoke (COMMAND.MEM off, D3hot, FLR, VFIO_DEVICE_RESET) unmaps the slot
 * and I/O gets ENODEV while revoked (p2p_uring_prefetch() too); after an
 * un-revoke the next I/O, or p2p_uring_prefetch(), maps again; a dead
 * device's dma-buf stays ENODEV.  The slots of one dma-buf share one pin:
 * more slots than the ring's real buffers could pin one by one all map,
 * unregistering one keeps the others working, and a revoke unmaps them all.  Re-registering a slot replaces its buffer, and
 * p2p_uring_destroy() with registered (and busy) slots leaks no fd.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <p2pbuf/heap.h>
#include <p2pbuf/uring.h>

#include "harness.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define PAGE 4096ull
#define BAR 2
#define BAR_SIZE (16 * MiB)
#define FILE_SIZE (4 * MiB)
#define NR_SLOTS 16
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* A submission that could not even be queued: never a valid cqe->res. */
#define NOT_QUEUED INT_MIN

static struct p2p_uring *ring;
static int file_fd;		/* FILE_SIZE bytes of pattern(1, .) */
static uint64_t next_ud = 1000;

static uint8_t pattern(uint32_t seed, uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull + seed * 0xbf58476d1ce4e5b9ull;

	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	return (uint8_t)(x >> 56);
}

static void fill(uint8_t *p, uint64_t len, uint32_t seed)
{
	for (uint64_t i = 0; i < len; i++)
		p[i] = pattern(seed, i);
}

/* An unlinked temporary file of @size bytes of pattern(@seed, offset). */
static int make_file(uint64_t size, uint32_t seed)
{
	uint8_t *data = malloc(size);
	int fd;

	if (!data) {
		perror("make_file");
		exit(T_EXIT_FAIL);
	}
	fill(data, size, seed);
	fd = t_tmpfile(data, size);
	free(data);
	return fd;
}

static uint8_t *file_bytes(int fd, uint64_t off, uint64_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	if (!p || pread(fd, p, len, (off_t)off) != (ssize_t)len) {
		perror("pread");
		exit(T_EXIT_FAIL);
	}
	return p;
}

/* Queue, submit and wait for one request on @r; returns cqe->res. */
static int do_sqe(struct p2p_uring *r, struct io_uring_sqe *sqe)
{
	struct io_uring_cqe cqe;
	int ret;

	sqe->user_data = ++next_ud;
	ret = p2p_uring_submit_sqe(r, sqe);
	if (ret) {
		fprintf(stderr, "[%s] p2p_uring_submit_sqe: %s\n", t_current, strerror(-ret));
		return NOT_QUEUED;
	}
	ret = p2p_uring_submit(r);
	if (ret < 0) {
		fprintf(stderr, "[%s] p2p_uring_submit: %s\n", t_current, strerror(-ret));
		return NOT_QUEUED;
	}
	ret = p2p_uring_wait_cqe(r, &cqe, true);
	if (ret) {
		fprintf(stderr, "[%s] p2p_uring_wait_cqe: %s\n", t_current, strerror(-ret));
		return NOT_QUEUED;
	}
	CHECK(cqe.user_data == sqe->user_data);
	return cqe.res;
}

static int rw_on(struct p2p_uring *r, int op, int fd, unsigned int slot, uint64_t addr,
		 uint32_t len, uint64_t foff)
{
	struct io_uring_sqe sqe = {
		.opcode = (uint8_t)op,
		.fd = fd,
		.addr = addr,
		.len = len,
		.off = foff,
		.buf_index = (uint16_t)slot,
	};

	return do_sqe(r, &sqe);
}

static int rw(int op, int fd, unsigned int slot, uint64_t addr, uint32_t len, uint64_t foff)
{
	return rw_on(ring, op, fd, slot, addr, len, foff);
}

static void no_pending_cqes(struct p2p_uring *r)
{
	struct io_uring_cqe cqe;

	CHECK_ERR(p2p_uring_wait_cqe(r, &cqe, false), -EAGAIN);
}

static int update_ext(unsigned int offset, const struct io_uring_regbuf_desc *d, unsigned int nr)
{
	struct io_uring_rsrc_update2 up = {
		.offset = offset,
		.resv = IORING_RSRC_UPDATE_EXTENDED, /* the series' `flags` */
		.data = (uintptr_t)d,
		.nr = nr,
	};

	return p2p_uring_register_buffers_update(ring, &up);
}

static int update_iov(unsigned int offset, const struct iovec *iov, unsigned int nr)
{
	struct io_uring_rsrc_update2 up = {
		.offset = offset,
		.data = (uintptr_t)iov,
		.nr = nr,
	};

	return p2p_uring_register_buffers_update(ring, &up);
}

static int set_empty(unsigned int slot)
{
	struct io_uring_regbuf_desc d = { .type = IORING_REGBUF_EMPTY };

	return update_ext(slot, &d, 1);
}

/* ---------------------------------------------------------------------- */

static struct t_dev gpu;
static uint8_t *gpu_bar;

/* 5.1: I/O through @slot (a dma-buf starting at BAR offset 0) lands at @off. */
static void check_slot_reads(unsigned int slot, uint64_t off, uint64_t foff, uint32_t len)
{
	uint8_t *want;

	memset(gpu_bar + off, 0, len);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, slot, off, len, foff), (int)len);
	want = file_bytes(file_fd, foff, len);
	CHECK(!memcmp(gpu_bar + off, want, len));
	free(want);
}

/*
 * 5.1 validation, each rule with its errno.  Slot 0 holds a working DMABUF
 * registration the whole time: no failed update may change it.  Slot 1 is
 * EMPTY and stays so.
 */
static void test_validation(void)
{
	const struct vfio_region_dma_range r = { .offset = 0, .length = 256 * KiB };
	int dfd, pfd[2], sv[2], mfd, closed_fd;
	struct io_uring_regbuf_desc d, two[3];
	uint8_t ubuf[64];

	t_section("validation");
	dfd = t_dmabuf(gpu.vdev, BAR, &r, 1);
	CHECK(dfd >= 0);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 0, dfd, file_fd), 0);
	check_slot_reads(0, 0, 0, 64 * KiB);
	CHECK(pipe2(pfd, O_CLOEXEC) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	mfd = memfd_create("not-a-dmabuf", MFD_CLOEXEC);
	CHECK(mfd >= 0 && ftruncate(mfd, 256 * KiB) == 0);
	closed_fd = dup(mfd);
	CHECK(closed_fd >= 0);
	close(closed_fd);

#define DESC(...) ((struct io_uring_regbuf_desc){ __VA_ARGS__ })
#define EXPECT(slot, desc, err)                                                             \
	do {                                                                                \
		d = desc;                                                                   \
		CHECK_ERR(update_ext(slot, &d, 1), err);                                    \
	} while (0)

	/* type >= max, non-zero __resv, unknown flags -> EINVAL. */
	EXPECT(1, DESC(.type = IORING_REGBUF_TYPE_MAX), -EINVAL);
	EXPECT(1, DESC(.type = 0x80000000u), -EINVAL);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF + 1, .dmabuf_fd = dfd, .target_fd = file_fd),
	       -EINVAL);
	for (unsigned int i = 0; i < ARRAY_SIZE(d.__resv); i++) {
		d = DESC(.type = IORING_REGBUF_EMPTY);
		d.__resv[i] = 1ull << (i * 9);
		CHECK_ERR(update_ext(1, &d, 1), -EINVAL);
		d = DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = dfd, .target_fd = file_fd);
		d.__resv[i] = 1;
		CHECK_ERR(update_ext(0, &d, 1), -EINVAL);
	}
	EXPECT(1, DESC(.type = IORING_REGBUF_EMPTY, .flags = 1), -EINVAL);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .flags = 1u << 31, .dmabuf_fd = dfd,
		       .target_fd = file_fd),
	       -EINVAL);

	/* EMPTY with uaddr or size -> EFAULT. */
	EXPECT(1, DESC(.type = IORING_REGBUF_EMPTY, .uaddr = (uintptr_t)ubuf), -EFAULT);
	EXPECT(1, DESC(.type = IORING_REGBUF_EMPTY, .size = sizeof(ubuf)), -EFAULT);
	EXPECT(0, DESC(.type = IORING_REGBUF_EMPTY, .uaddr = (uintptr_t)ubuf, .size = 64),
	       -EFAULT);

	/* A non-dma-buf type with non-zero fds -> EINVAL. */
	EXPECT(1, DESC(.type = IORING_REGBUF_EMPTY, .dmabuf_fd = dfd), -EINVAL);
	EXPECT(1, DESC(.type = IORING_REGBUF_EMPTY, .target_fd = file_fd), -EINVAL);
	EXPECT(1, DESC(.type = IORING_REGBUF_EMPTY, .dmabuf_fd = -1, .target_fd = -1), -EINVAL);
	EXPECT(0, DESC(.type = IORING_REGBUF_UADDR, .uaddr = (uintptr_t)ubuf, .size = 64,
		       .dmabuf_fd = dfd),
	       -EINVAL);
	EXPECT(0, DESC(.type = IORING_REGBUF_UADDR, .uaddr = (uintptr_t)ubuf, .size = 64,
		       .target_fd = file_fd),
	       -EINVAL);

	/* DMABUF: uaddr and size must be 0 -> EINVAL. */
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .uaddr = (uintptr_t)ubuf, .dmabuf_fd = dfd,
		       .target_fd = file_fd),
	       -EINVAL);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .size = 256 * KiB, .dmabuf_fd = dfd,
		       .target_fd = file_fd),
	       -EINVAL);

	/* DMABUF: target_fd invalid -> EBADF. */
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = dfd, .target_fd = -1), -EBADF);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = dfd, .target_fd = closed_fd),
	       -EBADF);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = dfd, .target_fd = INT_MAX),
	       -EBADF);

	/* DMABUF: dmabuf_fd invalid -> EBADF, not a dma-buf -> EINVAL. */
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = -1, .target_fd = file_fd),
	       -EBADF);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = closed_fd, .target_fd = file_fd),
	       -EBADF);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = pfd[0], .target_fd = file_fd),
	       -EINVAL);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = mfd, .target_fd = file_fd),
	       -EINVAL);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = file_fd, .target_fd = file_fd),
	       -EINVAL);

	/* DMABUF: a target that cannot make a dma token -> EOPNOTSUPP. */
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = dfd, .target_fd = pfd[1]),
	       -EOPNOTSUPP);
	EXPECT(0, DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = dfd, .target_fd = sv[0]),
	       -EOPNOTSUPP);

	/* Slots beyond the table -> EINVAL (rsrc update bounds). */
	d = DESC(.type = IORING_REGBUF_EMPTY);
	CHECK_ERR(update_ext(NR_SLOTS, &d, 1), -EINVAL);
	CHECK_ERR(update_ext(UINT_MAX, &d, 1), -EINVAL);
	two[0] = two[1] = d;
	CHECK_ERR(update_ext(NR_SLOTS - 1, two, 2), -EINVAL);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, NR_SLOTS, dfd, file_fd), -EINVAL);

	/* The update itself: unknown update flags, resv2, nr 0 -> EINVAL. */
	{
		struct io_uring_rsrc_update2 up = {
			.offset = 1, .data = (uintptr_t)&d, .nr = 1,
			.resv = IORING_RSRC_UPDATE_EXTENDED | (1u << 0),
		};

		CHECK_ERR(p2p_uring_register_buffers_update(ring, &up), -EINVAL);
		up.resv = IORING_RSRC_UPDATE_EXTENDED | (1u << 7);
		CHECK_ERR(p2p_uring_register_buffers_update(ring, &up), -EINVAL);
		up.resv = IORING_RSRC_UPDATE_EXTENDED;
		up.resv2 = 1;
		CHECK_ERR(p2p_uring_register_buffers_update(ring, &up), -EINVAL);
		up.resv2 = 0;
		up.nr = 0;
		CHECK_ERR(p2p_uring_register_buffers_update(ring, &up), -EINVAL);
		/* A descriptor array that cannot be read -> EFAULT. */
		up.nr = 1;
		up.data = 8;
		CHECK_ERR(p2p_uring_register_buffers_update(ring, &up), -EFAULT);
	}

	/*
	 * Nothing after the first failing descriptor is applied: slot 2 stays
	 * EMPTY, slot 0 keeps its dma-buf.  (Whether the partial count or the
	 * errno is returned is not asserted: the kernel returns the count.)
	 */
	two[0] = DESC(.type = IORING_REGBUF_EMPTY);
	two[1] = DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = pfd[0], .target_fd = file_fd);
	two[2] = DESC(.type = IORING_REGBUF_DMABUF, .dmabuf_fd = dfd, .target_fd = file_fd);
	CHECK(update_ext(1, two, 3) != 3);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 2, 0, 4096, 0), -EFAULT);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 1, 0, 4096, 0), -EFAULT);
#undef EXPECT
#undef DESC

	/* Slot 0 survived every failed update (the old buffer is kept). */
	check_slot_reads(0, 64 * KiB, 8192, 128 * KiB);
	/* A valid EMPTY descriptor updates one slot. */
	CHECK_ERR(set_empty(1), 1);
	CHECK_ERR(set_empty(0), 1);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 0, 0, 4096, 0), -EFAULT);
	no_pending_cqes(ring);

	close(pfd[0]);
	close(pfd[1]);
	close(sv[0]);
	close(sv[1]);
	close(mfd);
	CHECK_OK(p2p_close(dfd));
}

/*
 * 5.1: plain iovec updates (no IORING_RSRC_UPDATE_EXTENDED) still register
 * normal UADDR buffers, validated as the kernel's io_buffer_validate().
 */
static void test_uaddr(void)
{
	size_t len = 64 * KiB;
	uint8_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct io_uring_regbuf_desc d;
	struct iovec iov[2];
	uint8_t *want;

	t_section("uaddr");
	CHECK(buf != MAP_FAILED);
	memset(buf, 0, len);
	iov[0] = (struct iovec){ buf, len };
	iov[1] = (struct iovec){ NULL, 0 }; /* EMPTY */
	CHECK_ERR(update_iov(3, iov, 2), 2);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 3, (uintptr_t)buf + 100, 4000, 8192 + 5), 4000);
	want = file_bytes(file_fd, 8192 + 5, 4000);
	CHECK(!memcmp(buf + 100, want, 4000));
	free(want);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, (uintptr_t)buf, 4000, 0), -EFAULT);
	/* The kernel's own fixed-buffer bounds check. */
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 3, (uintptr_t)buf + len - 10, 20, 0), -EFAULT);
	/* WRITE_FIXED from the user buffer. */
	fill(buf, len, 77);
	{
		int tfd = make_file(len, 5);

		CHECK_ERR(rw(IORING_OP_WRITE_FIXED, tfd, 3, (uintptr_t)buf, (uint32_t)len, 0),
			  (int)len);
		want = file_bytes(tfd, 0, len);
		CHECK(!memcmp(buf, want, len));
		free(want);
		close(tfd);
	}
	/* A NULL iovec with a length is EFAULT, as io_buffer_validate(). */
	iov[0] = (struct iovec){ NULL, 4096 };
	CHECK_ERR(update_iov(4, iov, 1), -EFAULT);
	/* The extended UADDR descriptor is the same thing. */
	d = (struct io_uring_regbuf_desc){ .type = IORING_REGBUF_UADDR, .uaddr = (uintptr_t)buf,
					   .size = len };
	CHECK_ERR(update_ext(4, &d, 1), 1);
	memset(buf, 0, len);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, (uintptr_t)buf, 4096, 0), 4096);
	want = file_bytes(file_fd, 0, 4096);
	CHECK(!memcmp(buf, want, 4096));
	free(want);
	CHECK_ERR(set_empty(3), 1);
	CHECK_ERR(set_empty(4), 1);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 3, (uintptr_t)buf, 4096, 0), -EFAULT);
	/* buf_index beyond the table: no buffer -> EFAULT. */
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, NR_SLOTS + 3, 0, 4096, 0), -EFAULT);
	no_pending_cqes(ring);
	munmap(buf, len);
}

/* 5.1 usage: offsets and lengths at the edges, on a single-range dma-buf. */
static void test_io_edges(void)
{
	const uint64_t bar_off = 2 * MiB, size = 1 * MiB;
	const struct vfio_region_dma_range r = { .offset = bar_off, .length = size };
	uint8_t *bar = gpu_bar + bar_off, *want;
	int dfd, ofd;

	t_section("io-edges");
	dfd = t_dmabuf(gpu.vdev, BAR, &r, 1);
	CHECK(dfd >= 0);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 5, dfd, file_fd), 0);
	/* Issue 10: registration maps and pins (not the first I/O). */
	CHECK(p2p_uring_slot_mapped(ring, 5));
	CHECK_OK(p2p_uring_prefetch(ring, 5));

	/* Offset 0. */
	memset(bar, 0, size);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 4096, 0), 4096);
	CHECK(p2p_uring_slot_mapped(ring, 5));
	want = file_bytes(file_fd, 0, 4096);
	CHECK(!memcmp(bar, want, 4096));
	CHECK(bar[4096] == 0);
	free(want);

	/* The last byte only. */
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, size - 1, 1, 12345), 1);
	want = file_bytes(file_fd, 12345, 1);
	CHECK(bar[size - 1] == want[0]);
	CHECK(bar[size - 2] == 0);
	free(want);

	/* Exactly the size, from an unaligned file offset. */
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, (uint32_t)size, 777), (int)size);
	want = file_bytes(file_fd, 777, size);
	CHECK(!memcmp(bar, want, size));
	free(want);

	/* Unaligned offset and length inside. */
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 4096 * 3 + 11, 70001, 3 * MiB), 70001);
	want = file_bytes(file_fd, 3 * MiB, 70001);
	CHECK(!memcmp(bar + 4096 * 3 + 11, want, 70001));
	free(want);

	/* len 0, and offset + len beyond the dma-buf -> EFAULT; nothing written. */
	memset(bar, 0xee, size);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 0, 0), -EFAULT);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, size - 1, 2, 0), -EFAULT);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, size, 1, 0), -EFAULT);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, (uint32_t)size + 1, 0), -EFAULT);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, UINT64_MAX - 100, 4096, 0), -EFAULT);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, file_fd, 5, 0, 0, 0), -EFAULT);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, file_fd, 5, size - 4096, 8192, 0), -EFAULT);
	for (uint64_t i = 0; i < size; i++)
		if (bar[i] != 0xee) {
			CHECK(bar[i] == 0xee);
			break;
		}

	/* WRITE_FIXED: BAR bytes to the file, at the edges. */
	ofd = make_file(2 * MiB, 9);
	fill(bar, size, 33);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, ofd, 5, 0, 1, 0), -EBADF); /* not the target */
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 6, dfd, ofd), 0);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, ofd, 6, 0, 4096, 0), 4096);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, ofd, 6, size - 1, 1, 5000), 1);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, ofd, 6, 4096 + 17, 10000, 123457), 10000);
	want = file_bytes(ofd, 0, 4096);
	CHECK(!memcmp(want, bar, 4096));
	free(want);
	want = file_bytes(ofd, 5000, 1);
	CHECK(want[0] == bar[size - 1]);
	free(want);
	want = file_bytes(ofd, 123457, 10000);
	CHECK(!memcmp(want, bar + 4096 + 17, 10000));
	free(want);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, ofd, 6, 0, (uint32_t)size, MiB), (int)size);
	want = file_bytes(ofd, MiB, size);
	CHECK(!memcmp(want, bar, size));
	free(want);
	/* Slot 5's target is file_fd: writing to ofd through it is EBADF. */
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, ofd, 5, 0, 4096, 0), -EBADF);

	CHECK_ERR(set_empty(6), 1);
	close(ofd);
	no_pending_cqes(ring);
	CHECK_OK(p2p_close(dfd)); /* slot 5 keeps the buffer */
}

/* 5.1: req->file must be the registered target file; vectored / other ops. */
static void test_file_and_ops(void)
{
	char path[64];
	int dupfd, reopen, other, sv[2];
	uint8_t *want;

	t_section("file-and-ops");
	CHECK(p2p_uring_slot_mapped(ring, 5));
	/* Another file -> EBADF. */
	other = make_file(64 * KiB, 4);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, other, 5, 0, 4096, 0), -EBADF);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, -1, 5, 0, 4096, 0), -EBADF);
	/* Another open of the same inode is another file -> EBADF. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", file_fd);
	reopen = open(path, O_RDWR | O_CLOEXEC);
	CHECK(reopen >= 0);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, reopen, 5, 0, 4096, 0), -EBADF);
	/* A fixed-file index is not the target (no file table) -> EBADF. */
	{
		struct io_uring_sqe sqe = {
			.opcode = IORING_OP_READ_FIXED, .flags = IOSQE_FIXED_FILE, .fd = 0,
			.addr = 0, .len = 4096, .buf_index = 5,
		};

		CHECK_ERR(do_sqe(ring, &sqe), -EBADF);
	}
	/* A dup(2) of the target is the same file. */
	dupfd = dup(file_fd);
	CHECK(dupfd >= 0);
	memset(gpu_bar + 2 * MiB, 0, 8192);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, dupfd, 5, 0, 8192, 65536), 8192);
	want = file_bytes(file_fd, 65536, 8192);
	CHECK(!memcmp(gpu_bar + 2 * MiB, want, 8192));
	free(want);

	/* Vectored fixed ops -> EOPNOTSUPP. */
	CHECK_ERR(rw(IORING_OP_READV_FIXED, file_fd, 5, 0, 4096, 0), -EOPNOTSUPP);
	CHECK_ERR(rw(IORING_OP_WRITEV_FIXED, file_fd, 5, 0, 4096, 0), -EOPNOTSUPP);
	/* Other users of fixed buffers -> EFAULT: SEND_ZC with a fixed buffer. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	{
		struct io_uring_sqe sqe = {
			.opcode = IORING_OP_SEND_ZC, .fd = sv[0], .addr = 0, .len = 4096,
			.ioprio = IORING_RECVSEND_FIXED_BUF, .buf_index = 5,
		};

		CHECK_ERR(do_sqe(ring, &sqe), -EFAULT);
	}
	no_pending_cqes(ring);

	/* The target may be closed once registered: the slot keeps its file. */
	{
		const struct vfio_region_dma_range r = { .offset = 5 * MiB, .length = 64 * KiB };
		int dfd = t_dmabuf(gpu.vdev, BAR, &r, 1);
		int tfd = dup(file_fd);

		CHECK(dfd >= 0 && tfd >= 0);
		CHECK_ERR(p2p_uring_register_dmabuf(ring, 7, dfd, tfd), 0);
		close(tfd);
		CHECK_OK(p2p_close(dfd));
		memset(gpu_bar + 5 * MiB, 0, 64 * KiB);
		CHECK_ERR(rw(IORING_OP_READ_FIXED, dupfd, 7, 0, 64 * KiB, 0), 64 * KiB);
		want = file_bytes(file_fd, 0, 64 * KiB);
		CHECK(!memcmp(gpu_bar + 5 * MiB, want, 64 * KiB));
		free(want);
		CHECK_ERR(set_empty(7), 1);
	}
	close(sv[0]);
	close(sv[1]);
	close(dupfd);
	close(reopen);
	close(other);
}

/*
 * 5.1 on multi-range dma-bufs (1.3: unsorted ranges, concatenated in array
 * order): the registered length is the dma-buf size and I/O crossing range
 * boundaries lands in (or comes from) the right BAR bytes, and nowhere else.
 */
static const struct vfio_region_dma_range mr_ranges[] = {
	{ .offset = 9 * MiB, .length = 64 * KiB },
	{ .offset = 1 * MiB, .length = 128 * KiB },
	{ .offset = 12 * MiB, .length = 4 * KiB },
	{ .offset = 4 * MiB, .length = 256 * KiB },
	{ .offset = 7 * MiB, .length = 64 * KiB },
};
#define MR_SIZE (516 * KiB)
#define GUARD 0x5a

/* 1.3: ranges are concatenated in array order. */
static uint64_t mr_bar_off(uint64_t off)
{
	for (unsigned int i = 0; i < ARRAY_SIZE(mr_ranges); i++) {
		if (off < mr_ranges[i].length)
			return mr_ranges[i].offset + off;
		off -= mr_ranges[i].length;
	}
	abort();
}

static bool mr_matches(const uint8_t *bar, uint64_t off, const uint8_t *want, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (bar[mr_bar_off(off + i)] != want[i]) {
			fprintf(stderr, "[%s] dma-buf byte %llu: %#x, want %#x\n", t_current,
				(unsigned long long)(off + i), bar[mr_bar_off(off + i)], want[i]);
			return false;
		}
	return true;
}

static void test_multi_range(void)
{
	static const struct { uint64_t off, len; } cross[] = {
		{ 64 * KiB - 1, 2 },			/* r0 | r1 */
		{ 60 * KiB, 140 * KiB },		/* r0 tail, r1, r2, r3 head */
		{ 192 * KiB, 4 * KiB },			/* exactly r2 */
		{ 191 * KiB + 3, 6 * KiB },		/* r1 | r2 | r3 */
		{ 452 * KiB - 5, 10 },			/* r3 | r4 */
		{ MR_SIZE - 1, 1 },			/* the last byte */
		{ 0, MR_SIZE },				/* everything */
	};
	struct t_dev mr;
	uint8_t *bar, *want;
	uint64_t rng = 0x1234567;
	int dfd, ofd;

	t_section("multi-range");
	CHECK_OK(t_dev_create(&mr, "0000:03:00.0", BAR_SIZE, 0, NULL, 3));
	bar = t_bar_ptr(mr.pci, BAR, 0);
	memset(bar, GUARD, BAR_SIZE);
	dfd = t_dmabuf(mr.vdev, BAR, mr_ranges, ARRAY_SIZE(mr_ranges));
	CHECK(dfd >= 0);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 8, dfd, file_fd), 0);
	CHECK(p2p_uring_slot_mapped(ring, 8));

	for (unsigned int i = 0; i < ARRAY_SIZE(cross); i++) {
		uint64_t foff = 4096 * i + i;

		CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 8, cross[i].off,
			     (uint32_t)cross[i].len, foff),
			  (int)cross[i].len);
		want = file_bytes(file_fd, foff, cross[i].len);
		CHECK(mr_matches(bar, cross[i].off, want, cross[i].len));
		free(want);
	}
	CHECK(p2p_uring_slot_mapped(ring, 8));
	for (unsigned int i = 0; i < 64; i++) {
		uint64_t off, len, foff;

		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		off = (rng >> 33) % MR_SIZE;
		len = 1 + (rng >> 13) % MIN(200 * KiB, MR_SIZE - off);
		foff = (rng >> 7) % (FILE_SIZE - len);
		CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 8, off, (uint32_t)len, foff), (int)len);
		want = file_bytes(file_fd, foff, len);
		CHECK(mr_matches(bar, off, want, len));
		free(want);
	}
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 8, MR_SIZE - 4096, 8192, 0), -EFAULT);

	/* WRITE_FIXED gathers the ranges in order. */
	ofd = make_file(MR_SIZE + MiB, 11);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 9, dfd, ofd), 0);
	for (unsigned int i = 0; i < ARRAY_SIZE(mr_ranges); i++)
		fill(bar + mr_ranges[i].offset, mr_ranges[i].length, 100 + i);
	for (unsigned int i = 0; i < ARRAY_SIZE(cross); i++) {
		uint64_t foff = 8192 * i + 3;

		CHECK_ERR(rw(IORING_OP_WRITE_FIXED, ofd, 9, cross[i].off, (uint32_t)cross[i].len,
			     foff),
			  (int)cross[i].len);
		want = file_bytes(ofd, foff, cross[i].len);
		CHECK(mr_matches(bar, cross[i].off, want, cross[i].len));
		free(want);
	}

	/* Not one byte of the BAR outside the ranges was touched. */
	for (unsigned int i = 0; i < ARRAY_SIZE(mr_ranges); i++)
		memset(bar + mr_ranges[i].offset, GUARD, mr_ranges[i].length);
	for (uint64_t i = 0; i < BAR_SIZE; i++)
		if (bar[i] != GUARD) {
			fprintf(stderr, "BAR byte %llu outside the ranges changed\n",
				(unsigned long long)i);
			CHECK(bar[i] == GUARD);
			break;
		}

	CHECK_ERR(set_empty(8), 1);
	CHECK_ERR(set_empty(9), 1);
	close(ofd);
	CHECK_OK(p2p_close(dfd));
	t_dev_destroy(&mr);
	no_pending_cqes(ring);
}

/* 5.1, 8.4: a system heap dma-buf (6.1: chunks of 1 MiB, 64 KiB, 4 KiB) as a DMABUF slot. */
static void test_heap(void)
{
	const uint64_t size = MiB + 64 * KiB + 2 * PAGE;
	struct p2p_dma_heap *heap;
	struct p2p_dmabuf *buf;
	uint8_t *va, *want;
	void *p;
	int hfd, ofd;

	t_section("heap");
	if (p2p_dma_heap_open("system", &heap)) {
		printf("note: no system heap (p2p_dma_heap_open failed): heap part skipped\n");
		return;
	}
	hfd = p2p_dma_heap_alloc(heap, size, O_RDWR | O_CLOEXEC, 0);
	CHECK(hfd >= 0);
	CHECK_OK(p2p_dmabuf_get(hfd, &buf));
	CHECK_OK(p2p_dmabuf_mmap(buf, NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &p));
	va = p;
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 10, hfd, file_fd), 0);
	CHECK(p2p_uring_slot_mapped(ring, 10));
	memset(va, 0, size);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 10, 0, (uint32_t)size, 4096), (int)size);
	CHECK(p2p_uring_slot_mapped(ring, 10));
	want = file_bytes(file_fd, 4096, size);
	CHECK(!memcmp(va, want, size));
	free(want);
	/* Across the 1 MiB | 64 KiB | 4 KiB chunk boundaries. */
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 10, MiB - 100, 64 * KiB + 200, 99),
		  64 * KiB + 200);
	want = file_bytes(file_fd, 99, 64 * KiB + 200);
	CHECK(!memcmp(va + MiB - 100, want, 64 * KiB + 200));
	free(want);
	ofd = make_file(size, 12);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 11, hfd, ofd), 0);
	fill(va, size, 55);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, ofd, 11, 100, (uint32_t)size - 200, 0),
		  (int)size - 200);
	want = file_bytes(ofd, 0, size - 200);
	CHECK(!memcmp(va + 100, want, size - 200));
	free(want);
	CHECK_ERR(set_empty(10), 1);
	CHECK_ERR(set_empty(11), 1);
	CHECK_OK(p2p_munmap(p, size));
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(hfd));
	close(ofd);
	p2p_dma_heap_close(heap);
	no_pending_cqes(ring);
}

/*
 * 5.2: a revoke (1.7 trigger) invalidates the token, which unmaps; I/O is
 * ENODEV while revoked and writes nothing; un-revoke is passive (7.3) and
 * the next I/O maps again.
 */
static void revoke_cycle(const char *how, int (*revoke)(void), int (*restore)(void))
{
	uint8_t *bar = gpu_bar + 2 * MiB, *snap, *want;

	t_section(how);
	/* Slot 5: 1 MiB at BAR offset 2 MiB, target file_fd; mapped by now. */
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 4096, 0), 4096);
	CHECK(p2p_uring_slot_mapped(ring, 5));
	CHECK_OK(revoke());
	CHECK(!p2p_uring_slot_mapped(ring, 5));
	snap = malloc(MiB);
	CHECK(snap);
	memcpy(snap, bar, MiB);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 4096, 1 * MiB), -ENODEV);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 4096, MiB - 4096, 0), -ENODEV);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, file_fd, 5, 0, 4096, 0), -ENODEV);
	/* Validation still comes first. */
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 0, 0), -EFAULT);
	CHECK(!p2p_uring_slot_mapped(ring, 5));
	CHECK_ERR(p2p_uring_prefetch(ring, 5), -ENODEV);
	CHECK(!p2p_uring_slot_mapped(ring, 5));
	CHECK(!memcmp(snap, bar, MiB));
	free(snap);
	if (restore)
		CHECK_OK(restore());
	/* Un-revoke is passive: the slot maps again on its next I/O. */
	CHECK(!p2p_uring_slot_mapped(ring, 5));
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 100, 50000, 2 * MiB + 1), 50000);
	CHECK(p2p_uring_slot_mapped(ring, 5));
	want = file_bytes(file_fd, 2 * MiB + 1, 50000);
	CHECK(!memcmp(bar + 100, want, 50000));
	free(want);
	no_pending_cqes(ring);
}

static int mem_off(void) { return t_mem_enable(gpu.vdev, false); }
static int mem_on(void) { return t_mem_enable(gpu.vdev, true); }
static int d3hot(void) { return t_set_power(gpu.vdev, 3); }
static int d0(void) { return t_set_power(gpu.vdev, 0); }

/* 5.2, 1.7: FLR and VFIO_DEVICE_RESET revoke and restore in one call. */
static void reset_cycle(const char *how, bool flr)
{
	uint8_t *want;

	t_section(how);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 4096, 0), 4096);
	CHECK(p2p_uring_slot_mapped(ring, 5));
	CHECK_OK(flr ? t_flr(gpu.vdev) : p2p_vfio_device_reset(gpu.vdev));
	/* The reset invalidated the token; the next I/O maps again. */
	CHECK(!p2p_uring_slot_mapped(ring, 5));
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 8192, 8192, 40960), 8192);
	CHECK(p2p_uring_slot_mapped(ring, 5));
	want = file_bytes(file_fd, 40960, 8192);
	CHECK(!memcmp(gpu_bar + 2 * MiB + 8192, want, 8192));
	free(want);
	no_pending_cqes(ring);
}

static void test_revoke(void)
{
	const struct vfio_region_dma_range r = { .offset = 6 * MiB, .length = 64 * KiB };
	int dfd;

	revoke_cycle("revoke-mem", mem_off, mem_on);
	revoke_cycle("revoke-d3hot", d3hot, d0);
	reset_cycle("revoke-flr", true);
	reset_cycle("revoke-reset", false);

	/* A slot revoked before it ever mapped. */
	t_section("revoke-unmapped");
	dfd = t_dmabuf(gpu.vdev, BAR, &r, 1);
	CHECK(dfd >= 0);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 12, dfd, file_fd), 0);
	CHECK_OK(t_mem_enable(gpu.vdev, false));
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 12, 0, 4096, 0), -ENODEV);
	CHECK(!p2p_uring_slot_mapped(ring, 12));
	/* 1.5: a revoked buffer cannot be attached (registered). */
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 13, dfd, file_fd), -ENODEV);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 13, 0, 4096, 0), -EFAULT);
	CHECK_OK(t_mem_enable(gpu.vdev, true));
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 12, 0, 4096, 0), 4096);
	CHECK(p2p_uring_slot_mapped(ring, 12));
	CHECK_ERR(set_empty(12), 1);
	CHECK_OK(p2p_close(dfd));

	/* 1.6: a dma-buf created while memory is off starts revoked. */
	t_section("revoke-at-create");
	CHECK_OK(t_mem_enable(gpu.vdev, false));
	dfd = t_dmabuf(gpu.vdev, BAR, &r, 1);
	CHECK(dfd >= 0);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 12, dfd, file_fd), -ENODEV);
	CHECK_OK(t_mem_enable(gpu.vdev, true));
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 12, dfd, file_fd), 0);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 12, 0, 4096, 0), 4096);
	CHECK_ERR(set_empty(12), 1);
	CHECK_OK(p2p_close(dfd));
	no_pending_cqes(ring);
}

/* 1.6, 7.4: the device closes under a registered slot -> ENODEV for good. */
static void test_dead_device(void)
{
	const struct vfio_region_dma_range r = { .offset = 0, .length = 128 * KiB };
	struct t_dev dead;
	int dfd;

	t_section("dead-device");
	CHECK_OK(t_dev_create(&dead, "0000:04:00.0", MiB, 0, NULL, 4));
	dfd = t_dmabuf(dead.vdev, BAR, &r, 1);
	CHECK(dfd >= 0);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 14, dfd, file_fd), 0);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 14, 0, 4096, 0), 4096);
	CHECK(p2p_uring_slot_mapped(ring, 14));
	p2p_vfio_device_close(dead.vdev);
	CHECK(!p2p_uring_slot_mapped(ring, 14));
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 14, 0, 4096, 0), -ENODEV);
	CHECK_ERR(rw(IORING_OP_WRITE_FIXED, file_fd, 14, 0, 4096, 0), -ENODEV);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 15, dfd, file_fd), -ENODEV);
	CHECK_ERR(set_empty(14), 1);
	CHECK_OK(p2p_close(dfd));
	p2p_pci_dev_put(dead.pci);
	no_pending_cqes(ring);
}

/*
 * 5.1, 5.2: re-registering a slot through the update path replaces its
 * buffer (the old token is dropped after its requests); a failed update
 * keeps the old one.
 */
static void test_reregister(void)
{
	const struct vfio_region_dma_range ra = { .offset = 8 * MiB, .length = 64 * KiB };
	const struct vfio_region_dma_range rb = { .offset = 10 * MiB, .length = 128 * KiB };
	uint8_t *a = gpu_bar + ra.offset, *b = gpu_bar + rb.offset, *want, *ubuf;
	struct io_uring_regbuf_desc d;
	struct iovec iov;
	int fa, fb;

	t_section("reregister");
	fa = t_dmabuf(gpu.vdev, BAR, &ra, 1);
	fb = t_dmabuf(gpu.vdev, BAR, &rb, 1);
	CHECK(fa >= 0 && fb >= 0);
	memset(a, 0, ra.length);
	memset(b, 0, rb.length);
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 4, fa, file_fd), 0);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, 0, 64 * KiB, 0), 64 * KiB);
	CHECK(p2p_uring_slot_mapped(ring, 4));
	want = file_bytes(file_fd, 0, 64 * KiB);
	CHECK(!memcmp(a, want, 64 * KiB));
	free(want);

	/* A failed re-registration keeps the old buffer. */
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 4, fb, -1), -EBADF);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, 0, 4096, 0), 4096);

	/* Replace A by B: I/O now goes to B (128 KiB), A is left alone. */
	memset(a, 0xaa, ra.length);
	d = (struct io_uring_regbuf_desc){ .type = IORING_REGBUF_DMABUF, .dmabuf_fd = fb,
					   .target_fd = file_fd };
	CHECK_ERR(update_ext(4, &d, 1), 1);
	CHECK(p2p_uring_slot_mapped(ring, 4));
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, 0, 128 * KiB, MiB), 128 * KiB);
	want = file_bytes(file_fd, MiB, 128 * KiB);
	CHECK(!memcmp(b, want, 128 * KiB));
	free(want);
	for (uint64_t i = 0; i < ra.length; i++)
		if (a[i] != 0xaa) {
			CHECK(a[i] == 0xaa);
			break;
		}

	/* The same dma-buf in two slots: both revoked and restored. */
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 5, fb, file_fd), 0);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 4096, 0), 4096);
	CHECK_OK(t_mem_enable(gpu.vdev, false));
	CHECK(!p2p_uring_slot_mapped(ring, 4));
	CHECK(!p2p_uring_slot_mapped(ring, 5));
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, 0, 4096, 0), -ENODEV);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 4096, 0), -ENODEV);
	CHECK_OK(t_mem_enable(gpu.vdev, true));
	/* An explicit prefetch maps one of them again before its I/O. */
	CHECK_OK(p2p_uring_prefetch(ring, 4));
	CHECK(p2p_uring_slot_mapped(ring, 4));
	CHECK(!p2p_uring_slot_mapped(ring, 5));
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, 0, 4096, 0), 4096);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 4096, 0), 4096);

	/* DMABUF -> UADDR (plain iovec) -> EMPTY. */
	ubuf = calloc(1, 8192);
	CHECK(ubuf);
	iov = (struct iovec){ ubuf, 8192 };
	CHECK_ERR(update_iov(4, &iov, 1), 1);
	CHECK(!p2p_uring_slot_mapped(ring, 4));
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, (uintptr_t)ubuf, 8192, 4096), 8192);
	want = file_bytes(file_fd, 4096, 8192);
	CHECK(!memcmp(ubuf, want, 8192));
	free(want);
	/* ... and back to a dma-buf. */
	CHECK_ERR(p2p_uring_register_dmabuf(ring, 4, fa, file_fd), 0);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, 0, 4096, 0), 4096);
	CHECK_ERR(set_empty(4), 1);
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 4, 0, 4096, 0), -EFAULT);
	free(ubuf);
	CHECK_OK(p2p_close(fa));
	CHECK_OK(p2p_close(fb));
	no_pending_cqes(ring);
}

/*
 * One thread reaps (blocked in p2p_uring_wait_cqe()) while another submits:
 * errors found at submission (5.1 EFAULT / EBADF, 5.2 ENODEV) are
 * completions like any other and must reach the blocked reaper, as the
 * kernel posts them to the CQ.  The API says every function is thread-safe.
 */
#define REAP_N 5

struct reaper_arg {
	struct io_uring_cqe cqe[REAP_N];
	int ret;
};

static void *reaper(void *p)
{
	struct reaper_arg *a = p;

	for (unsigned int i = 0; i < REAP_N && !a->ret; i++)
		a->ret = p2p_uring_wait_cqe(ring, &a->cqe[i], true);
	return NULL;
}

static void test_reaper_thread(void)
{
	static const int32_t want[REAP_N] = { -EFAULT, -EBADF, -EOPNOTSUPP, -ENODEV, 4096 };
	struct reaper_arg a = { .ret = 0 };
	pthread_t thr;

	t_section("reaper-thread");
	/* Slot 5 holds a 128 KiB dma-buf of the GPU, target file_fd (reregister). */
	CHECK_ERR(rw(IORING_OP_READ_FIXED, file_fd, 5, 0, 4096, 0), 4096);
	CHECK(pthread_create(&thr, NULL, reaper, &a) == 0);
	/* Not a timing assumption: only makes "the reaper is blocked" likely. */
	usleep(20000);
	for (unsigned int i = 0; i < REAP_N; i++) {
		struct io_uring_sqe sqe = {
			.opcode = IORING_OP_READ_FIXED, .fd = file_fd, .addr = 0, .len = 4096,
			.buf_index = 5, .user_data = 500 + i,
		};

		if (i == 0)
			sqe.len = 0;
		if (i == 1)
			sqe.fd = -1;
		if (i == 2)
			sqe.opcode = IORING_OP_READV_FIXED;
		if (i == 3)
			CHECK_OK(t_mem_enable(gpu.vdev, false));
		if (i == 4)
			CHECK_OK(t_mem_enable(gpu.vdev, true));
		CHECK_OK(p2p_uring_submit_sqe(ring, &sqe));
		CHECK(p2p_uring_submit(ring) >= 0);
	}
	pthread_join(thr, NULL);
	CHECK_OK(a.ret);
	for (unsigned int i = 0; i < REAP_N; i++) {
		uint64_t k = a.cqe[i].user_data - 500;

		CHECK(k < REAP_N);
		if (k < REAP_N)
			CHECK_ERR(a.cqe[i].res, want[k]);
	}
	no_pending_cqes(ring);
}

/*
 * 5.2: "the ring exiting drops the token and waits for all requests":
 * p2p_uring_destroy() with registered, mapped and busy slots leaks nothing.
 */
static void test_destroy(void)
{
	const struct vfio_region_dma_range r1[] = {
		{ .offset = 11 * MiB, .length = 64 * KiB },
		{ .offset = 13 * MiB, .length = 64 * KiB },
	};
	const struct vfio_region_dma_range r2 = { .offset = 14 * MiB, .length = 256 * KiB };
	struct p2p_uring *r;
	uint8_t ubuf[4096];
	struct iovec iov = { ubuf, sizeof(ubuf) };
	struct io_uring_rsrc_update2 up = { .offset = 3, .data = (uintptr_t)&iov, .nr = 1 };
	int before, f1, f2;

	t_section("destroy");
	before = t_count_fds();
	CHECK_OK(p2p_uring_create(32, 8, &r));
	f1 = t_dmabuf(gpu.vdev, BAR, r1, 2);
	f2 = t_dmabuf(gpu.vdev, BAR, &r2, 1);
	CHECK(f1 >= 0 && f2 >= 0);
	{
		struct io_uring_regbuf_desc d = { .type = IORING_REGBUF_DMABUF, .dmabuf_fd = f1,
						  .target_fd = file_fd };
		struct io_uring_rsrc_update2 u = {
			.offset = 0, .resv = IORING_RSRC_UPDATE_EXTENDED,
			.data = (uintptr_t)&d, .nr = 1,
		};

		CHECK_ERR(p2p_uring_register_buffers_update(r, &u), 1);
	}
	CHECK_ERR(p2p_uring_register_dmabuf(r, 1, f2, file_fd), 0);
	CHECK_ERR(p2p_uring_register_dmabuf(r, 2, f2, file_fd), 0);
	CHECK_ERR(p2p_uring_register_buffers_update(r, &up), 1);
	/* The slots hold the buffers: the fds may go. */
	CHECK_OK(p2p_close(f1));
	CHECK_OK(p2p_close(f2));
	CHECK_ERR(rw_on(r, IORING_OP_READ_FIXED, file_fd, 0, 60 * KiB, 8 * KiB, 0), 8 * KiB);
	CHECK_ERR(rw_on(r, IORING_OP_READ_FIXED, file_fd, 1, 0, 4096, 0), 4096);
	CHECK_ERR(rw_on(r, IORING_OP_READ_FIXED, file_fd, 3, (uintptr_t)ubuf, 4096, 0), 4096);
	CHECK(p2p_uring_slot_mapped(r, 0) && p2p_uring_slot_mapped(r, 1));
	CHECK(p2p_uring_slot_mapped(r, 2)); /* mapped at registration, no I/O yet */
	/* Requests still in flight (and completions never reaped). */
	for (unsigned int i = 0; i < 8; i++) {
		struct io_uring_sqe sqe = {
			.opcode = IORING_OP_READ_FIXED, .fd = file_fd, .addr = i * 8 * KiB,
			.len = 8 * KiB, .off = i * 8 * KiB, .buf_index = (uint16_t)(i & 1),
			.user_data = i,
		};

		CHECK_OK(p2p_uring_submit_sqe(r, &sqe));
	}
	CHECK(p2p_uring_submit(r) >= 0);
	p2p_uring_destroy(r);
	CHECK(t_count_fds() == before);

	/* And a ring that is destroyed with queued, never submitted requests. */
	CHECK_OK(p2p_uring_create(8, 2, &r));
	f1 = t_dmabuf(gpu.vdev, BAR, &r2, 1);
	CHECK(f1 >= 0);
	CHECK_ERR(p2p_uring_register_dmabuf(r, 1, f1, file_fd), 0);
	CHECK_OK(p2p_close(f1));
	{
		struct io_uring_sqe sqe = {
			.opcode = IORING_OP_READ_FIXED, .fd = file_fd, .addr = 0, .len = 4096,
			.buf_index = 1,
		};

		CHECK_OK(p2p_uring_submit_sqe(r, &sqe));
		sqe.len = 0; /* one that fails (EFAULT) */
		CHECK_OK(p2p_uring_submit_sqe(r, &sqe));
		sqe.buf_index = 0; /* and one on an EMPTY slot */
		CHECK_OK(p2p_uring_submit_sqe(r, &sqe));
	}
	p2p_uring_destroy(r);
	CHECK(t_count_fds() == before);
}

/*
 * Issue 10: the slots of one dma-buf share one pin.  A ring of 4 slots has
 * 64 real buffers; a 20-range dma-buf needs 20, so pinned slot by slot only
 * 3 of 4 slots could map.  Unregistering one slot keeps the pin for the
 * others; a revoke unmaps them all (and writes nothing); prefetch errors.
 */
static void test_shared_pin(void)
{
	enum { NR = 20, RLEN = 64 * KiB };
	struct vfio_region_dma_range rg[NR];
	struct p2p_uring *r;
	struct io_uring_regbuf_desc d = { .type = IORING_REGBUF_EMPTY };
	struct io_uring_rsrc_update2 up = {
		.resv = IORING_RSRC_UPDATE_EXTENDED, .data = (uintptr_t)&d, .nr = 1,
	};
	uint8_t *bar = gpu_bar + 8 * MiB, *want, *snap;
	char ubuf[4096];
	struct iovec iov = { ubuf, sizeof(ubuf) };
	int dfd;

	t_section("shared-pin");
	/* Every other 64 KiB block from BAR offset 8 MiB, in reverse order. */
	for (unsigned int i = 0; i < NR; i++)
		rg[i] = (struct vfio_region_dma_range){ 8 * MiB + 2 * (NR - 1 - i) * RLEN, RLEN };
	dfd = t_dmabuf(gpu.vdev, BAR, rg, NR);
	CHECK(dfd >= 0);
	CHECK_OK(p2p_uring_create(16, 4, &r));
	for (unsigned int i = 0; i < 4; i++) {
		CHECK_ERR(p2p_uring_register_dmabuf(r, i, dfd, file_fd), 0);
		CHECK(p2p_uring_slot_mapped(r, i));
	}
	memset(bar, 0, 2 * NR * RLEN);
	for (unsigned int i = 0; i < 4; i++) {
		/* Across a range boundary, a different part of the dma-buf per slot. */
		uint64_t off = (uint64_t)(4 * i + 1) * RLEN - 100;

		CHECK_ERR(rw_on(r, IORING_OP_READ_FIXED, file_fd, i, off, 200, 4096 * i), 200);
		want = file_bytes(file_fd, 4096 * i, 200);
		CHECK(!memcmp(bar + 2 * (NR - 1 - (4 * i)) * RLEN + RLEN - 100, want, 100));
		CHECK(!memcmp(bar + 2 * (NR - 2 - (4 * i)) * RLEN, want + 100, 100));
		free(want);
	}
	/* Slot 0 goes: the others keep the pin. */
	up.offset = 0;
	CHECK_ERR(p2p_uring_register_buffers_update(r, &up), 1);
	CHECK(!p2p_uring_slot_mapped(r, 0));
	CHECK_ERR(rw_on(r, IORING_OP_READ_FIXED, file_fd, 1, 0, 4096, 0), 4096);
	CHECK(p2p_uring_slot_mapped(r, 1) && p2p_uring_slot_mapped(r, 2));

	/* A revoke unmaps every slot of the dma-buf; nothing lands while revoked. */
	CHECK_OK(t_mem_enable(gpu.vdev, false));
	for (unsigned int i = 1; i < 4; i++) {
		CHECK(!p2p_uring_slot_mapped(r, i));
		CHECK_ERR(p2p_uring_prefetch(r, i), -ENODEV);
	}
	snap = malloc(2 * NR * RLEN);
	CHECK(snap);
	memcpy(snap, bar, 2 * NR * RLEN);
	CHECK_ERR(rw_on(r, IORING_OP_READ_FIXED, file_fd, 2, 0, 4096, 8192), -ENODEV);
	CHECK(!memcmp(snap, bar, 2 * NR * RLEN));
	free(snap);
	CHECK_OK(t_mem_enable(gpu.vdev, true));
	for (unsigned int i = 1; i < 4; i++) {
		CHECK(!p2p_uring_slot_mapped(r, i));
		CHECK_OK(p2p_uring_prefetch(r, i));
		CHECK(p2p_uring_slot_mapped(r, i));
	}
	CHECK_ERR(rw_on(r, IORING_OP_READ_FIXED, file_fd, 3, NR * RLEN - 4096, 4096, 0), 4096);
	want = file_bytes(file_fd, 0, 4096);
	CHECK(!memcmp(bar + RLEN - 4096, want, 4096));
	free(want);

	/* prefetch: beyond the table, EMPTY -> EINVAL; UADDR -> 0. */
	CHECK_ERR(p2p_uring_prefetch(r, 4), -EINVAL);
	CHECK_ERR(p2p_uring_prefetch(r, 0), -EINVAL);
	up.resv = 0;
	up.data = (uintptr_t)&iov;
	CHECK_ERR(p2p_uring_register_buffers_update(r, &up), 1);
	CHECK_OK(p2p_uring_prefetch(r, 0));
	p2p_uring_destroy(r);
	CHECK_OK(p2p_close(dfd));
}

int main(void)
{
	t_begin();
	file_fd = make_file(FILE_SIZE, 1);
	CHECK_OK(t_dev_create(&gpu, "0000:01:00.0", BAR_SIZE, 0, NULL, 1));
	gpu_bar = t_bar_ptr(gpu.pci, BAR, 0);
	CHECK_OK(p2p_uring_create(64, NR_SLOTS, &ring));
	if (t_failures)
		return t_end();

	test_validation();
	test_uaddr();
	test_io_edges();
	test_file_and_ops();
	test_multi_range();
	test_heap();
	test_revoke();
	test_dead_device();
	test_reregister();
	test_shared_pin();
	test_reaper_thread();

	t_section("teardown");
	p2p_uring_destroy(ring);
	test_destroy();
	t_dev_destroy(&gpu);
	close(file_fd);
	return t_end();
}
