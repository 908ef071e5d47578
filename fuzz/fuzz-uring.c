// SPDX-License-Identifier: MIT
/*
 * fuzz-uring: io_uring dma-buf slot registration and SQEs.
 *
 * Per input: a p2p_uring (8 entries, 4 slots) over a real io_uring, a
 * private temporary directory holding the only files the target creates
 * (a read-write data file and a read-only view of it), a memfd, a VFIO
 * function exporting BAR2 as a single-range and a two-range dma-buf, and
 * a heap dma-buf.  The input is a sequence of operations: buffer-update
 * registrations (extended descriptors of any type, flags, size and
 * reserved words, or plain iovecs), SQEs from arbitrary bytes, reaping,
 * and revoking or re-enabling the function's memory (COMMAND.MEM).
 *
 * Safety restriction (the fuzzer must not harm the host): every fd an input
 * names (sqe->fd, dmabuf_fd, target_fd) is remapped onto the small table
 * of fds the target created above; user addresses (UADDR descriptors,
 * iovecs, non-fixed READ/WRITE/SEND_ZC buffers) are remapped into a guarded
 * window of target memory; only opcodes that act on the given fd without
 * naming a path or another object are passed (NOP, READ, WRITE, FSYNC,
 * READ_FIXED, WRITE_FIXED, READV_FIXED, WRITEV_FIXED, SEND_ZC), everything
 * else becomes NOP; file offsets stay below 1 MiB; fixed-file, buffer-select
 * skip-success and drain flags are dropped (after a drained request the
 * host kernel never completes a SEND_ZC on a non-socket).  No opcode opens, creates, renames or
 * unlinks anything, so nothing outside the temporary directory is touched.
 *
 * Oracles: while the function's memory is revoked its BAR never changes (no
 * I/O lands in revoked memory); the window's canaries (read-only) are
 * intact; every submitted SQE completes
 * exactly once; teardown per input, fd count checked.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "fuzz.h"

#define WIN (64u << 10)
#define CANARY 4096u
#define NR_SLOTS 4
#define MAX_OPS 48
#define FILE_SIZE (256u << 10)

struct state {
	struct p2p_uring *ring;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	struct p2p_dma_heap *heap;
	struct fz_fds fds;
	int file, rofile, memfd, buf1, buf2, heapfd;
	unsigned int pending; /* SQEs queued whose completion we have not seen */
	bool linked;	      /* the last SQE queued asked for a link */
	bool revoked;
	uint8_t *bar, *snap;
};

static struct fz_win win;
static char dir[64];
static bool trace; /* P2P_FUZZ_TRACE: print each operation */

static void remove_dir(void)
{
	rmdir(dir);
}

int fz_setup(void)
{
	trace = getenv("P2P_FUZZ_TRACE");
	/*
	 * Read-only canaries around the window: I/O running past it fails
	 * (EFAULT) instead of landing there; the check below is the backstop.
	 */
	if (fz_win_create(&win, WIN, CANARY) || fz_win_ro_canaries(&win))
		return -1;
	snprintf(dir, sizeof(dir), "/tmp/p2pbuf-fuzz-uring.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	atexit(remove_dir); /* each input unlinks its file */
	return 0;
}

static void check_all(struct state *s)
{
	if (s->revoked)
		FZ_ASSERT(!memcmp(s->bar, s->snap, FZ_BAR2_SIZE), "BAR2 changed while revoked");
	fz_win_check(&win, "user window");
}

static void reap(struct state *s, bool all)
{
	struct io_uring_cqe cqe;

	while (s->pending) {
		int ret = p2p_uring_wait_cqe(s->ring, &cqe, all);

		if (trace && !ret)
			fprintf(stderr, "cqe: user_data %llu res %d flags %#x\n",
				(unsigned long long)cqe.user_data, cqe.res, cqe.flags);

		if (ret == -EAGAIN && !all)
			return;
		FZ_ASSERT(ret == 0, "wait_cqe: %d with %u pending", ret, s->pending);
		/* SEND_ZC: a result with F_MORE, then its notification. */
		if (!(cqe.flags & IORING_CQE_F_MORE))
			s->pending--;
	}
	/*
	 * Nothing more may arrive: every SQE completes exactly once, except the
	 * notification Linux still posts for a SEND_ZC cancelled by its link
	 * (its completion had no F_MORE; fuzz/corpus/uring/regress-sendzc-*).
	 */
	while (p2p_uring_wait_cqe(s->ring, &cqe, false) == 0)
		FZ_ASSERT(cqe.flags & IORING_CQE_F_NOTIF,
			  "a completion nobody submitted (user_data %llu, res %d, flags %#x)",
			  (unsigned long long)cqe.user_data, cqe.res, cqe.flags);
}

/*
 * Hand everything queued to the kernel.  io_uring_enter() stops at an SQE
 * whose prep fails (it completes that one with the error) and leaves the
 * rest in the SQ ring, as with any io_uring program: submit until nothing
 * is left, or a wait for those completions would never return.
 */
static void submit_all(struct state *s)
{
	for (int i = 0; i < 64; i++) {
		int n = p2p_uring_submit(s->ring);

		FZ_ASSERT(n >= 0, "submit: %d", n);
		if (!n)
			return;
	}
}

static uint64_t win_addr(uint64_t v)
{
	return (uint64_t)(uintptr_t)(win.base + v % WIN);
}

static void op_register(struct state *s, struct fin *in)
{
	struct io_uring_regbuf_desc d[2];
	struct iovec iov[2];
	struct io_uring_rsrc_update2 up = { 0 };
	uint8_t k = fin_u8(in);
	unsigned int nr = 1 + (k & 1);
	int ret;

	up.offset = (k >> 1) % (NR_SLOTS + 1);
	up.nr = (k & 0x40) ? fin_u8(in) % 4 : nr;
	up.resv = (k & 0x20) ? fin_u32(in) : IORING_RSRC_UPDATE_EXTENDED;
	up.resv2 = (k & 0x10) ? fin_u8(in) : 0;
	if (up.resv & IORING_RSRC_UPDATE_EXTENDED) {
		for (unsigned int i = 0; i < 2; i++) {
			uint8_t t = fin_u8(in);

			memset(&d[i], 0, sizeof(d[i]));
			d[i].type = (t & 0x80) ? fin_u32(in) : t % 4;
			d[i].flags = (t & 0x40) ? fin_u32(in) : 0;
			d[i].size = (t & 0x20) ? fin_u64(in) : (uint64_t)(fin_u8(in) % 17) << 12;
			if (t & 0x08)
				d[i].size = 0;
			d[i].uaddr = (t & 0x10) ? win_addr(fin_u32(in)) : 0;
			if (d[i].type != IORING_REGBUF_UADDR && (t & 0x10) && (t & 4))
				d[i].uaddr = fin_u64(in); /* never dereferenced for these types */
			d[i].dmabuf_fd = fz_fds_pick(&s->fds, fin_u8(in));
			d[i].target_fd = fz_fds_pick(&s->fds, fin_u8(in));
			if ((t & 0x0c) == 0x0c) {
				d[i].dmabuf_fd = (t & 1) ? -1 : 0;
				d[i].target_fd = 0;
			}
			if ((t & 7) == 7)
				d[i].__resv[fin_u8(in) % 6] = fin_u8(in);
		}
		up.data = (uintptr_t)d;
	} else {
		for (unsigned int i = 0; i < 2; i++) {
			uint8_t t = fin_u8(in);

			iov[i].iov_base = (t & 1) ? (void *)(uintptr_t)win_addr(fin_u32(in)) : NULL;
			iov[i].iov_len = (t & 2) ? fin_u32(in) % (WIN + 8192) : (t >> 4) * 4096u;
		}
		up.data = (uintptr_t)iov;
	}
	ret = p2p_uring_register_buffers_update(s->ring, &up);
	if (trace)
		fprintf(stderr, "register: offset %u nr %u flags %#x resv2 %u type %u/%u -> %d\n",
			up.offset, up.nr, up.resv, up.resv2, d[0].type, d[1].type, ret);
}

static void op_sqe(struct state *s, struct fin *in)
{
	static const uint8_t allowed[] = {
		IORING_OP_NOP,	      IORING_OP_READ_FIXED,  IORING_OP_WRITE_FIXED,
		IORING_OP_READ_FIXED, IORING_OP_WRITE_FIXED, IORING_OP_READ,
		IORING_OP_WRITE,      IORING_OP_FSYNC,	     IORING_OP_READV_FIXED,
		IORING_OP_WRITEV_FIXED, IORING_OP_SEND_ZC,
	};
	struct io_uring_sqe sqe;
	uint8_t op;
	int ret;

	fin_bytes(in, &sqe, sizeof(sqe));
	op = allowed[sqe.opcode % sizeof(allowed)];
	/* Keep what the series looks at, sanitise what the kernel would act on. */
	sqe.opcode = op;
	/*
	 * No IO_DRAIN: once a drained request was submitted, the host kernel
	 * never completes a later SEND_ZC on a non-socket (a plain liburing
	 * program hangs the same way, see docs/fuzzing.md): not ours.
	 */
	sqe.flags &= IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_ASYNC;
	sqe.fd = fz_fds_pick(&s->fds, (uint32_t)sqe.fd);
	sqe.off = (sqe.off & 1) ? (uint64_t)-1 : sqe.off % (1u << 20);
	sqe.buf_index %= NR_SLOTS + 2;
	sqe.personality = 0;
	sqe.splice_fd_in = 0;
	sqe.addr3 = 0;
	sqe.__pad2[0] = 0;
	if (op == IORING_OP_FSYNC) {
		sqe.fsync_flags &= IORING_FSYNC_DATASYNC;
		sqe.addr = 0;
		sqe.len = 0;
	} else {
		sqe.rw_flags &= RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT;
	}
	if (op == IORING_OP_READ || op == IORING_OP_WRITE || op == IORING_OP_SEND_ZC)
		sqe.addr = win_addr(sqe.addr);
	if (op == IORING_OP_READ_FIXED || op == IORING_OP_WRITE_FIXED)
		sqe.addr = (sqe.addr & 0x100) ? win_addr(sqe.addr) : sqe.addr % (80u << 10);
	sqe.len %= (sqe.len & 0x80000000u) ? UINT32_MAX : (80u << 10);
	sqe.ioprio = op == IORING_OP_SEND_ZC ? (sqe.ioprio & IORING_RECVSEND_FIXED_BUF) : 0;
	ret = p2p_uring_submit_sqe(s->ring, &sqe);
	if (trace)
		fprintf(stderr,
			"sqe: op %u flags %#x fd %d off %#llx addr %#llx len %u buf %u rw %#x -> %d\n",
			op, sqe.flags, sqe.fd, (unsigned long long)sqe.off,
			(unsigned long long)sqe.addr, sqe.len, sqe.buf_index, sqe.rw_flags, ret);
	if (ret == -EBUSY) {
		submit_all(s);
		reap(s, true);
		ret = p2p_uring_submit_sqe(s->ring, &sqe);
	}
	FZ_ASSERT(ret == 0, "submit_sqe: %d", ret);
	s->pending++;
	s->linked = sqe.flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK);
}

static void set_revoked(struct state *s, bool revoke)
{
	/* Reap first: I/O submitted before the revoke may still land. */
	submit_all(s);
	reap(s, true);
	FZ_ASSERT(!p2p_vfio_config_write(s->vdev, 0x04, 2, revoke ? 0x4 : 0x6), "COMMAND");
	s->revoked = revoke;
	if (revoke)
		memcpy(s->snap, s->bar, FZ_BAR2_SIZE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin in = { data, size };
	struct state s = { 0 };
	char path[128];
	int fds = fz_fds_begin();
	static const struct vfio_region_dma_range r[2] = { { 0, 32u << 10 },
							    { 48u << 10, 16u << 10 } };

	if (p2p_uring_create(8, NR_SLOTS, &s.ring) ||
	    fz_dev_create("0000:08:00.0", NULL, 8, &s.pci, &s.vdev) ||
	    p2p_dma_heap_open("system", &s.heap))
		abort();
	snprintf(path, sizeof(path), "%s/data", dir);
	s.file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	s.rofile = open(path, O_RDONLY | O_CLOEXEC);
	s.memfd = memfd_create("fuzz-uring", MFD_CLOEXEC);
	s.buf1 = p2p_vfio_device_get_dmabuf(s.vdev, 2, r, 1, O_CLOEXEC | O_RDWR);
	s.buf2 = p2p_vfio_device_get_dmabuf(s.vdev, 2, r, 2, O_CLOEXEC | O_RDWR);
	s.heapfd = p2p_dma_heap_alloc(s.heap, 32u << 10, O_CLOEXEC | O_RDWR, 0);
	s.bar = p2p_mem_ptr(p2p_pci_dev_bar_mem(s.pci, 2), 0);
	s.snap = malloc(FZ_BAR2_SIZE);
	if (s.file < 0 || s.rofile < 0 || s.memfd < 0 || s.buf1 < 0 || s.buf2 < 0 ||
	    s.heapfd < 0 || !s.bar || !s.snap || ftruncate(s.file, FILE_SIZE) ||
	    ftruncate(s.memfd, FILE_SIZE))
		abort();
	for (const int *f = &s.file; f <= &s.heapfd; f++)
		fz_fds_add(&s.fds, *f);

	for (int i = 0; i < MAX_OPS && !fin_empty(&in); i++) {
		switch (fin_u8(&in) % 8) {
		case 0: case 1: op_register(&s, &in); break;
		case 2: case 3: case 4: op_sqe(&s, &in); break;
		case 5:
			submit_all(&s);
			reap(&s, false);
			break;
		case 6: set_revoked(&s, !s.revoked); break;
		default:
			submit_all(&s);
			reap(&s, true);
			break;
		}
		check_all(&s);
	}
	submit_all(&s);
	reap(&s, true);
	check_all(&s);

	p2p_uring_destroy(s.ring);
	p2p_close(s.buf1);
	p2p_close(s.buf2);
	p2p_close(s.heapfd);
	p2p_dma_heap_close(s.heap);
	p2p_vfio_device_close(s.vdev);
	p2p_pci_dev_put(s.pci);
	close(s.file);
	close(s.rofile);
	close(s.memfd);
	unlink(path);
	free(s.snap);
	fz_fds_end(fds);
	return 0;
}
