// SPDX-License-Identifier: MIT
/*
 * A revoke, and p2p_uring_destroy(), finish in bounded time whatever the
 * program queued (kernel-semantics 5.2, 1.7; platform-notes "io_uring":
 * registered buffers are pinned, so a revoke must drain and unregister a
 * DMABUF slot before it returns, and so must not wait forever either).
 *
 * - short-submit: the kernel stops a submission at an SQE it cannot set
 *   up (an unknown opcode); the READ_FIXED queued behind it is still in
 *   the SQ.  A revoke and p2p_uring_destroy() submit until the SQ is empty.
 * - poll-destroy: POLL_ADDs (single and multishot, IOSQE_ASYNC) and reads
 *   on a pipe that never becomes readable, alone or with a DMABUF
 *   READ_FIXED linked or drained behind them: p2p_uring_destroy() cancels.
 * - link-*, drain-*: a READ_FIXED into the slot linked (IOSQE_IO_LINK /
 *   IOSQE_IO_HARDLINK, chains of two) or drained (IOSQE_IO_DRAIN, or
 *   queued behind a drained request) behind requests that never complete,
 *   submitted or still in the SQ, with IOSQE_ASYNC variants.  The revoke
 *   cancels what the read waits behind and nothing else: the completions
 *   it documents (p2p_uring_submit_sqe(3)) arrive, unrelated polls queued
 *   before and after stay pending (and complete when their pipe becomes
 *   readable), the slot is unmapped when the revoke returns, and I/O works
 *   again after the un-revoke.
 * - unsubmitted: a READ_FIXED still in the SQ when the revoke comes runs
 *   before the revoke returns (its data is in the BAR).
 * - device-users: while a revoke on another thread deals with a linked
 *   read, other threads' config reads and writes and dma-buf exports of
 *   the same device finish (the revoke holds the device's memory lock).
 *
 * Every section runs under a watchdog (alarm()): a revoke or destroy
 * that hangs fails the test instead of hanging it.  Arguments: the
 * groups to run (short-submit poll-destroy link drain unsubmitted
 * device-users; default all); P2P_TEST_WATCHDOG sets the seconds.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/uring.h>

#include "harness.h"

#define KiB 1024ull
#define BAR 2
#define BAR_SIZE (1024 * KiB)
#define BUF_SIZE (256 * KiB)
#define FILE_SIZE (512 * KiB)
#define LEN (64 * KiB)
#define SLOT 1
#define WATCHDOG_SECS 20 /* per section; each takes milliseconds */
#define MAX_UD 32
#define PENDING 1 /* poll result mask: POLLIN */

static struct t_dev gpu;
static uint8_t *bar;
static int file_fd, dfd;

/* ---------------------------------------------------------------------- */
/* Watchdog                                                                */

static void on_alarm(int sig)
{
	static const char msg[] = "watchdog: section timed out (hang): ";
	const char *name = t_current ? t_current : "-";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0 || write(2, name, strlen(name)) < 0 ||
	    write(2, "\n", 1) < 0)
		_exit(T_EXIT_FAIL);
	_exit(T_EXIT_FAIL);
}

static unsigned int watchdog_secs = WATCHDOG_SECS;

static void section(const char *name)
{
	t_section(name);
	alarm(watchdog_secs);
}

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

static uint8_t file_byte(uint64_t i)
{
	uint64_t x = (i + 7) * 0x9e3779b97f4a7c15ull;

	x ^= x >> 29;
	return (uint8_t)(x >> 40);
}

static int make_file(void)
{
	static uint8_t data[FILE_SIZE];

	for (uint64_t i = 0; i < FILE_SIZE; i++)
		data[i] = file_byte(i);
	return t_tmpfile(data, FILE_SIZE);
}

static struct p2p_uring *ring_new(void)
{
	struct p2p_uring *r = NULL;

	CHECK_OK(p2p_uring_create(64, 4, &r));
	if (!r)
		exit(T_EXIT_FAIL);
	CHECK_OK(p2p_uring_register_dmabuf(r, SLOT, dfd, file_fd));
	return r;
}

static void queue(struct p2p_uring *r, struct io_uring_sqe *sqe, uint64_t ud, uint8_t flags)
{
	sqe->user_data = ud;
	sqe->flags |= flags;
	CHECK_OK(p2p_uring_submit_sqe(r, sqe));
}

static void q_read_fixed(struct p2p_uring *r, uint64_t ud, uint8_t flags, uint64_t foff)
{
	struct io_uring_sqe sqe = {
		.opcode = IORING_OP_READ_FIXED,
		.fd = file_fd,
		.addr = 0,
		.len = LEN,
		.off = foff,
		.buf_index = SLOT,
	};

	queue(r, &sqe, ud, flags);
}

static void q_poll(struct p2p_uring *r, uint64_t ud, int fd, uint8_t flags)
{
	struct io_uring_sqe sqe = { 0 };

	io_uring_prep_poll_add(&sqe, fd, POLLIN);
	queue(r, &sqe, ud, flags);
}

static void q_poll_multi(struct p2p_uring *r, uint64_t ud, int fd)
{
	struct io_uring_sqe sqe = { 0 };

	io_uring_prep_poll_multishot(&sqe, fd, POLLIN);
	queue(r, &sqe, ud, 0);
}

static char sink[64];

static void q_pipe_read(struct p2p_uring *r, uint64_t ud, int fd, uint8_t flags)
{
	struct io_uring_sqe sqe = { 0 };

	io_uring_prep_read(&sqe, fd, sink, sizeof(sink), 0);
	queue(r, &sqe, ud, flags);
}

/* An SQE the kernel cannot set up: io_submit_sqes() stops there. */
static void q_bad(struct p2p_uring *r, uint64_t ud)
{
	struct io_uring_sqe sqe = { .opcode = 0xfe, .fd = -1 };

	queue(r, &sqe, ud, 0);
}

/* Wait for completions until those of every @ud[] arrived; results in @res. */
static void collect(struct p2p_uring *r, const uint64_t *ud, unsigned int n, int32_t *res)
{
	bool seen[MAX_UD] = { 0 };
	unsigned int got = 0;

	while (got < n) {
		struct io_uring_cqe cqe;
		bool want = false;

		if (p2p_uring_wait_cqe(r, &cqe, true)) {
			CHECK(!"p2p_uring_wait_cqe");
			return;
		}
		if (cqe.user_data >= MAX_UD || seen[cqe.user_data]) {
			fprintf(stderr, "[%s] unexpected completion %llu (res %d)\n", t_current,
				(unsigned long long)cqe.user_data, cqe.res);
			t_failures++;
			continue;
		}
		for (unsigned int i = 0; i < n; i++)
			want |= ud[i] == cqe.user_data;
		if (!want) {
			fprintf(stderr, "[%s] completion of %llu (res %d): it should be pending\n",
				t_current, (unsigned long long)cqe.user_data, cqe.res);
			t_failures++;
			continue;
		}
		seen[cqe.user_data] = true;
		res[cqe.user_data] = cqe.res;
		got++;
	}
}

static void no_more(struct p2p_uring *r)
{
	struct io_uring_cqe cqe;
	int ret = p2p_uring_wait_cqe(r, &cqe, false);

	if (ret != -EAGAIN)
		fprintf(stderr, "[%s] unexpected completion %llu (res %d)\n", t_current,
			(unsigned long long)cqe.user_data, cqe.res);
	CHECK_ERR(ret, -EAGAIN);
}

/* One READ_FIXED into the slot, waited for: its result. */
static int read_sync(struct p2p_uring *r, uint64_t foff)
{
	int32_t res[MAX_UD];
	const uint64_t ud = MAX_UD - 1;

	q_read_fixed(r, ud, 0, foff);
	CHECK(p2p_uring_submit(r) >= 0);
	collect(r, &ud, 1, res);
	return res[ud];
}

static bool bar_has_file(uint64_t foff)
{
	for (uint64_t i = 0; i < LEN; i++)
		if (bar[i] != file_byte(foff + i))
			return false;
	return true;
}

static void do_revoke(struct p2p_uring *r)
{
	CHECK_OK(t_mem_enable(gpu.vdev, false));
	/* The revoke returned: the slot is drained and unpinned. */
	CHECK(!p2p_uring_slot_mapped(r, SLOT));
}

/* Un-revoke; the slot maps again on its next I/O, which lands in the BAR. */
static void restore(struct p2p_uring *r)
{
	CHECK_OK(t_mem_enable(gpu.vdev, true));
	memset(bar, 0, LEN);
	CHECK_ERR(read_sync(r, 4096), (int)LEN);
	CHECK(bar_has_file(4096));
	CHECK(p2p_uring_slot_mapped(r, SLOT));
}

static void make_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC)) {
		perror("pipe2");
		exit(T_EXIT_FAIL);
	}
}

static void close_pipe(int p[2])
{
	close(p[0]);
	close(p[1]);
}

/* ---------------------------------------------------------------------- */
/* The kernel stopped a submission short                                   */

static void test_short_submit(void)
{
	const uint64_t ud[] = { 1, 2, 3 };
	int32_t res[MAX_UD];
	struct p2p_uring *r;

	section("short-submit-revoke");
	r = ring_new();
	CHECK_ERR(read_sync(r, 0), (int)LEN); /* mapped */
	memset(bar, 0, LEN);
	q_bad(r, 1);
	q_read_fixed(r, 2, 0, 8192);
	do_revoke(r);
	collect(r, ud, 2, res);
	CHECK_ERR(res[1], -EINVAL);
	CHECK_ERR(res[2], (int)LEN);
	CHECK(bar_has_file(8192)); /* it ran before the revoke returned */
	no_more(r);
	restore(r);

	/* Two of them: the program's own submit stops at the first. */
	section("short-submit-twice");
	memset(bar, 0, LEN);
	q_bad(r, 1);
	q_bad(r, 2);
	q_read_fixed(r, 3, 0, 12288);
	CHECK(p2p_uring_submit(r) >= 1);
	do_revoke(r);
	collect(r, ud, 3, res);
	CHECK_ERR(res[1], -EINVAL);
	CHECK_ERR(res[2], -EINVAL);
	CHECK_ERR(res[3], (int)LEN);
	CHECK(bar_has_file(12288));
	no_more(r);
	restore(r);
	p2p_uring_destroy(r);

	section("short-submit-destroy");
	r = ring_new();
	CHECK_ERR(read_sync(r, 0), (int)LEN);
	q_bad(r, 1);
	q_read_fixed(r, 2, 0, 0);
	q_bad(r, 3);
	q_read_fixed(r, 4, IOSQE_ASYNC, 0);
	p2p_uring_destroy(r);
}

/* ---------------------------------------------------------------------- */
/* p2p_uring_destroy() with requests that never complete                   */

static void test_poll_destroy(void)
{
	struct p2p_uring *r;
	int p[2];

	section("poll-destroy");
	make_pipe(p);
	r = ring_new();
	q_poll(r, 1, p[0], 0);
	CHECK(p2p_uring_submit(r) == 1);
	p2p_uring_destroy(r);

	section("poll-destroy-many");
	r = ring_new();
	CHECK_ERR(read_sync(r, 0), (int)LEN);
	q_poll(r, 1, p[0], IOSQE_ASYNC);
	q_poll_multi(r, 2, p[0]);
	q_pipe_read(r, 3, p[0], 0);
	q_pipe_read(r, 4, p[0], IOSQE_ASYNC);
	q_poll(r, 5, p[0], IOSQE_IO_LINK);
	q_read_fixed(r, 6, 0, 0);
	q_poll(r, 7, p[0], IOSQE_IO_HARDLINK);
	q_poll(r, 8, p[0], IOSQE_IO_LINK);
	q_read_fixed(r, 9, IOSQE_ASYNC, 0);
	q_read_fixed(r, 10, IOSQE_IO_DRAIN, 0);
	q_poll(r, 11, p[0], 0);
	CHECK(p2p_uring_submit(r) > 0);
	q_poll(r, 12, p[0], IOSQE_IO_LINK); /* and some never submitted */
	q_read_fixed(r, 13, 0, 0);
	p2p_uring_destroy(r);
	close_pipe(p);
}

/* ---------------------------------------------------------------------- */
/* Revoke with a slot read linked or drained behind requests that pend     */

enum head { POLL, PIPE_READ };

struct case_desc {
	const char *name;
	enum head head;
	uint8_t head_flags;	/* IOSQE_IO_LINK / HARDLINK, maybe | IOSQE_ASYNC */
	bool chain2;		/* a second poll: head -> poll(LINK) -> read */
	uint8_t read_flags;
	bool submit;		/* else the revoke finds it all in the SQ */
	int32_t want_read;	/* LEN or -ECANCELED */
};

static const struct case_desc link_cases[] = {
	{ "link-poll", POLL, IOSQE_IO_LINK, false, 0, true, -ECANCELED },
	{ "link-poll-read-async", POLL, IOSQE_IO_LINK, false, IOSQE_ASYNC, true, -ECANCELED },
	{ "link-poll-async", POLL, IOSQE_IO_LINK | IOSQE_ASYNC, false, 0, true, -ECANCELED },
	{ "link-pipe-read", PIPE_READ, IOSQE_IO_LINK, false, 0, true, -ECANCELED },
	{ "link-pipe-read-async", PIPE_READ, IOSQE_IO_LINK | IOSQE_ASYNC, false, IOSQE_ASYNC, true,
	  -ECANCELED },
	{ "hardlink-poll", POLL, IOSQE_IO_HARDLINK, false, 0, true, LEN },
	{ "hardlink-pipe-read-async", PIPE_READ, IOSQE_IO_HARDLINK | IOSQE_ASYNC, false, 0, true,
	  LEN },
	{ "link-chain", POLL, IOSQE_IO_HARDLINK, true, 0, true, -ECANCELED },
	{ "link-unsubmitted", POLL, IOSQE_IO_LINK, false, 0, false, -ECANCELED },
	{ "link-chain-unsubmitted", PIPE_READ, IOSQE_IO_HARDLINK, true, IOSQE_ASYNC, false,
	  -ECANCELED },
};

/*
 * ud 1: an unrelated poll on @other queued before; 2: the head; 3: the
 * second chain member; 4: the read; 5: an unrelated poll queued after.
 */
static void run_link_case(const struct case_desc *c)
{
	int32_t res[MAX_UD];
	uint64_t ud[3] = { 2, 4, 3 };
	struct p2p_uring *r;
	int p[2], other[2];

	section(c->name);
	make_pipe(p);
	make_pipe(other);
	r = ring_new();
	CHECK_ERR(read_sync(r, 0), (int)LEN);
	q_poll(r, 1, other[0], 0);
	if (c->head == POLL)
		q_poll(r, 2, p[0], c->head_flags);
	else
		q_pipe_read(r, 2, p[0], c->head_flags);
	if (c->chain2)
		q_poll(r, 3, p[0], IOSQE_IO_LINK);
	q_read_fixed(r, 4, c->read_flags, 0);
	q_poll(r, 5, other[0], 0);
	if (c->submit)
		CHECK(p2p_uring_submit(r) > 0);
	do_revoke(r);
	collect(r, ud, c->chain2 ? 3 : 2, res);
	/* A read already running in io-wq when cancelled is interrupted. */
	if (c->head == PIPE_READ && (c->head_flags & IOSQE_ASYNC) && res[2] == -EINTR)
		res[2] = -ECANCELED;
	CHECK_ERR(res[2], -ECANCELED);
	if (c->chain2)
		CHECK_ERR(res[3], -ECANCELED);
	if (c->want_read >= 0)
		CHECK_ERR(res[4], c->want_read);
	else
		CHECK_ERR(res[4], -ECANCELED);
	/* Nothing else was cancelled. */
	no_more(r);
	restore(r);
	no_more(r);
	/* The unrelated polls still work. */
	CHECK(write(other[1], "x", 1) == 1);
	{
		const uint64_t more[] = { 1, 5 };

		collect(r, more, 2, res);
		CHECK(res[1] & POLLIN);
		CHECK(res[5] & POLLIN);
	}
	p2p_uring_destroy(r);
	close_pipe(p);
	close_pipe(other);
}

/*
 * Drained: ud 1 unrelated poll before (pending, so it is ahead of a drain
 * and gets cancelled), 2 a poll, 3 a drained poll (drain-behind), 4 the
 * read, 5 an unrelated poll after (pending, never cancelled).
 */
static void run_drain_case(const char *name, bool behind, uint8_t read_flags, bool submit)
{
	int32_t res[MAX_UD];
	const uint64_t ud[] = { 1, 2, 4, 3 };
	struct p2p_uring *r;
	int p[2], other[2];

	section(name);
	make_pipe(p);
	make_pipe(other);
	r = ring_new();
	CHECK_ERR(read_sync(r, 0), (int)LEN);
	q_poll(r, 1, other[0], 0);
	q_poll(r, 2, p[0], 0);
	if (behind)
		q_poll(r, 3, p[0], IOSQE_IO_DRAIN);
	q_read_fixed(r, 4, read_flags, 0);
	q_poll(r, 5, other[0], 0);
	if (submit)
		CHECK(p2p_uring_submit(r) > 0);
	do_revoke(r);
	collect(r, ud, behind ? 4 : 3, res);
	CHECK_ERR(res[1], -ECANCELED);
	CHECK_ERR(res[2], -ECANCELED);
	if (behind)
		CHECK_ERR(res[3], -ECANCELED);
	CHECK_ERR(res[4], (int)LEN); /* it ran once what was ahead was gone */
	no_more(r);
	/*
	 * Since Linux 6.16 the drain leaves the ring deferring new requests
	 * until nothing is in flight (here: poll 5).  Another read then
	 * waits behind poll 5 without a drain flag anywhere; a revoke gets
	 * it through anyway (cancelling poll 5 if the kernel did defer it).
	 */
	CHECK_OK(t_mem_enable(gpu.vdev, true));
	q_read_fixed(r, 6, 0, 0);
	CHECK(p2p_uring_submit(r) > 0);
	do_revoke(r);
	CHECK(write(other[1], "x", 1) == 1);
	{
		const uint64_t more[] = { 5, 6 };

		collect(r, more, 2, res);
		CHECK_ERR(res[6], (int)LEN);
		CHECK(res[5] == -ECANCELED || (res[5] & POLLIN));
	}
	no_more(r);
	restore(r);
	no_more(r);
	p2p_uring_destroy(r);
	close_pipe(p);
	close_pipe(other);
}

static void test_link(void)
{
	for (unsigned int i = 0; i < sizeof(link_cases) / sizeof(link_cases[0]); i++)
		run_link_case(&link_cases[i]);
}

static void test_drain(void)
{
	run_drain_case("drain-read", false, IOSQE_IO_DRAIN, true);
	run_drain_case("drain-read-async", false, IOSQE_IO_DRAIN | IOSQE_ASYNC, true);
	run_drain_case("drain-behind", true, 0, true);
	run_drain_case("drain-unsubmitted", false, IOSQE_IO_DRAIN, false);
}

/* ---------------------------------------------------------------------- */
/* Unsubmitted I/O and other users of the device                           */

static void test_unsubmitted(void)
{
	const uint64_t ud[] = { 1, 2 };
	int32_t res[MAX_UD];
	struct p2p_uring *r;

	section("unsubmitted");
	r = ring_new();
	CHECK_ERR(read_sync(r, 0), (int)LEN);
	memset(bar, 0, LEN);
	q_read_fixed(r, 1, 0, 16384);
	q_read_fixed(r, 2, IOSQE_ASYNC, 16384);
	do_revoke(r);
	CHECK(bar_has_file(16384));
	collect(r, ud, 2, res);
	CHECK_ERR(res[1], (int)LEN);
	CHECK_ERR(res[2], (int)LEN);
	no_more(r);
	restore(r);
	p2p_uring_destroy(r);
}

static struct p2p_uring *users_ring;
static atomic_bool revoke_done;
static atomic_uint user_ops;

static void *revoker(void *arg)
{
	(void)arg;
	CHECK_OK(t_mem_enable(gpu.vdev, false));
	atomic_store(&revoke_done, true);
	return NULL;
}

/* Config reads and writes, and exports, of the device under revoke. */
static void *device_user(void *arg)
{
	(void)arg;
	for (unsigned int i = 0; i < 50; i++) {
		uint32_t v = 0;
		int fd;

		CHECK_OK(p2p_vfio_config_read(gpu.vdev, 0, 4, &v));
		CHECK(v != 0 && v != 0xffffffff);
		CHECK_OK(p2p_vfio_config_write(gpu.vdev, 0x0c, 1, i & 0xff));
		fd = t_dmabuf_range(gpu.vdev, BAR, BUF_SIZE, 4096);
		CHECK(fd >= 0);
		if (fd >= 0)
			CHECK_OK(p2p_close(fd));
		atomic_fetch_add(&user_ops, 1);
	}
	return NULL;
}

static bool join_by(pthread_t t, const struct timespec *deadline)
{
	int ret = pthread_timedjoin_np(t, NULL, deadline);

	if (ret)
		fprintf(stderr, "[%s] thread not done by the deadline: %s\n", t_current,
			strerror(ret));
	return !ret;
}

static void test_device_users(void)
{
	const uint64_t ud[] = { 1, 2 };
	int32_t res[MAX_UD];
	struct timespec deadline;
	pthread_t rt, ut;
	int p[2];

	section("device-users");
	make_pipe(p);
	users_ring = ring_new();
	CHECK_ERR(read_sync(users_ring, 0), (int)LEN);
	q_poll(users_ring, 1, p[0], IOSQE_IO_LINK);
	q_read_fixed(users_ring, 2, 0, 0);
	CHECK(p2p_uring_submit(users_ring) > 0);
	CHECK(pthread_create(&rt, NULL, revoker, NULL) == 0);
	CHECK(pthread_create(&ut, NULL, device_user, NULL) == 0);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += watchdog_secs / 2 + 1;
	if (!join_by(rt, &deadline) || !join_by(ut, &deadline)) {
		fprintf(stderr, "[%s] revoke done %d, device operations %u of 50\n", t_current,
			atomic_load(&revoke_done), atomic_load(&user_ops));
		_exit(T_EXIT_FAIL); /* a thread is stuck holding or waiting for the memory lock */
	}
	CHECK(atomic_load(&user_ops) == 50);
	CHECK(!p2p_uring_slot_mapped(users_ring, SLOT));
	collect(users_ring, ud, 2, res);
	CHECK_ERR(res[1], -ECANCELED);
	CHECK_ERR(res[2], -ECANCELED);
	no_more(users_ring);
	restore(users_ring);
	p2p_uring_destroy(users_ring);
	close_pipe(p);
}

static const struct {
	const char *name;
	void (*fn)(void);
} groups[] = {
	{ "short-submit", test_short_submit },
	{ "poll-destroy", test_poll_destroy },
	{ "link", test_link },
	{ "drain", test_drain },
	{ "unsubmitted", test_unsubmitted },
	{ "device-users", test_device_users },
};

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	const char *env = getenv("P2P_TEST_WATCHDOG");

	if (env && atoi(env) > 0)
		watchdog_secs = (unsigned int)atoi(env);
	t_begin();
	sigaction(SIGALRM, &sa, NULL);
	file_fd = make_file();
	t_dev_create_or_fail(&gpu, "0000:01:00.0", BAR_SIZE, 1);
	bar = t_bar_ptr(gpu.pci, BAR, 0);
	dfd = t_dmabuf_range(gpu.vdev, BAR, 0, BUF_SIZE);
	CHECK(dfd >= 0);
	if (t_failures)
		return t_end();

	for (unsigned int g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
		bool run = argc < 2;

		for (int i = 1; i < argc; i++)
			run |= !strcmp(argv[i], groups[g].name);
		if (run)
			groups[g].fn();
	}

	alarm(0);
	t_section("teardown");
	CHECK_OK(p2p_close(dfd));
	t_dev_destroy(&gpu);
	close(file_fd);
	return t_end();
}
