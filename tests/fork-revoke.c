// SPDX-License-Identifier: MIT
/*
 * fork(): a child shares its parent's CPU mappings of device memory (a BAR
 * mmap, a single-range and a multi-range dma-buf mmap), and a revoke
 * reaches every process of the tree that holds them (issue 8 section 1).
 * Canaries: children and a grandchild write stamps into the mappings
 * without pause; once a revoke has returned in any process, no access
 * succeeds in any process and the device memory does not change.
 *
 *  (a) revoked before fork: the child and a grandchild fault (before the
 *      fix, userfaultfd revocations were not inherited: readable);
 *  (b) revoked after fork in the parent: every child and the grandchild
 *      fault, and no stamp lands in device memory after the revoke returned;
 *  (c) the un-revoke reaches them: their next access after it returned works;
 *      a mapping a child makes after fork, of its copy of the buffer, follows
 *      the parent's revoke and un-revoke too;
 *  (d) a revoke (and an un-revoke) in a child reaches the parent;
 *  (e) a child that exited (zombie), exec'd, or is stopped does not hang a
 *      revoke: the first two are dropped at once, the stopped one makes the
 *      revoke return -ETIMEDOUT after P2PBUF_REVOKE_TIMEOUT_MS, with this
 *      process's mappings revoked, and it follows when continued;
 *  (f) all of it with userfaultfd and with P2PBUF_CPU_REVOKE=remap (the
 *      test runs itself again with it).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* TSan: the children make a thread after fork of a threaded process (die_after_fork). */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "die_after_fork=0";
}

/*
 * Under TSan only the userfaultfd run: with remapping, TSan takes the mmap
 * by which this process's helper thread revokes (on another process's
 * request) for a write that races with our later probes; what orders them
 * is the other process, which TSan cannot see.  gcc and ASan run both.
 */
#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN 1
#endif
#endif
#ifndef TSAN
#define TSAN 0
#endif

#define STR_(x) #x
#define STR(x) STR_(x)
#define PAGE 4096ul
#define BAR 2
#define BAR_SIZE (1ul << 20)
#define NMAPS 3
#define MAP_LEN (16 * PAGE)
#define NKIDS 3		 /* children in (b), (c); the first one forks a grandchild */
#define NPROCS (NKIDS + 1)
#define TIMEOUT_MS 5000	 /* generous: 2 shared CPUs, sanitizers */
#define STOP_TIMEOUT_MS 300 /* for the stopped child */

static struct t_dev dev;
static int fd1, fd2;
static uint8_t *maps[NMAPS];
static const char *map_names[NMAPS] = { "BAR mmap", "dma-buf", "multi-range dma-buf" };

enum { PH_RUN, PH_REVOKED, PH_UNREVOKING, PH_UNREVOKED, PH_EXIT };

/* Shared with the children (MAP_SHARED anonymous, the test's own). */
struct ctl {
	_Atomic int phase;
	_Atomic int started[NPROCS];
	_Atomic int seen[NPROCS]; /* the last phase each one checked */
	_Atomic int bad[NPROCS];
	_Atomic unsigned long writes[NPROCS];
};
static struct ctl *ctl;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Every page of every mapping faults (SIGBUS) on load and on store. */
static bool all_revoked(void)
{
	for (int m = 0; m < NMAPS; m++)
		for (size_t o = 0; o < MAP_LEN; o += PAGE)
			if (t_access(maps[m] + o, false, 0, NULL) != SIGBUS ||
			    t_access(maps[m] + o, true, 0x5a, NULL) != SIGBUS)
				return false;
	return true;
}

/* Every page of every mapping can be read and written. */
static bool all_accessible(void)
{
	uint8_t v;

	for (int m = 0; m < NMAPS; m++)
		for (size_t o = 0; o < MAP_LEN; o += PAGE)
			if (t_access(maps[m] + o, false, 0, &v) || t_access(maps[m] + o, true, v, NULL))
				return false;
	return true;
}

static void wait_child(pid_t pid, const char *what)
{
	int st;

	CHECK(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "%s: child %d failed (status %#x)\n", what, (int)pid, st);
		t_failures++;
	}
}

/*
 * A stamping process: writes its stamp into page @idx of each mapping
 * without pause.  After it sees PH_REVOKED (stored once the revoke
 * returned) every access must fault; after PH_UNREVOKED every one must work.
 */
static void stamper(int idx)
{
	unsigned long n = 0;

	atomic_store(&ctl->started[idx], 1);
	for (;;) {
		int ph = atomic_load(&ctl->phase);

		if (ph == PH_EXIT)
			break;
		for (int m = 0; m < NMAPS; m++) {
			uint8_t *p = maps[m] + idx * PAGE + (n % PAGE);
			int sig = t_access(p, true, (uint8_t)(n * 7 + idx + 1), NULL);

			/* A verdict only if the phase held from before to after the access. */
			if (((ph == PH_REVOKED && sig != SIGBUS) || (ph == PH_UNREVOKED && sig)) &&
			    atomic_load(&ctl->phase) == ph &&
			    atomic_fetch_add(&ctl->bad[idx], 1) < 3) {
				fprintf(stderr, "process %d (%s): phase %d, %s +%#lx: %s\n", idx,
					map_names[m], ph, sig ? "fault" : "access went through",
					(unsigned long)(p - maps[m]), sig == SIGSEGV ? "SIGSEGV" : "");
			}
		}
		n++;
		atomic_store(&ctl->writes[idx], n);
		atomic_store(&ctl->seen[idx], ph);
		if (!(n % 64))
			usleep(50); /* leave the 2 CPUs to the others now and then */
	}
}

static void wait_seen(int phase)
{
	double end = now_ms() + 10000;

	for (int i = 0; i < NPROCS; i++) {
		while (atomic_load(&ctl->seen[i]) != phase && now_ms() < end)
			usleep(1000);
		if (atomic_load(&ctl->seen[i]) != phase) {
			fprintf(stderr, "process %d never reached phase %d\n", i, phase);
			t_failures++;
		}
	}
}

/* (a): revoked before fork: a child and its child fault everywhere. */
static void test_revoked_before_fork(void)
{
	pid_t pid;

	t_section("a: revoked before fork");
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK(all_revoked());
	pid = fork();
	if (!pid) {
		pid_t g = fork();
		bool ok = all_revoked();
		int st = 0;

		if (g > 0)
			ok &= waitpid(g, &st, 0) == g && WIFEXITED(st) && !WEXITSTATUS(st);
		_exit(ok && g >= 0 ? 0 : 1);
	}
	CHECK(pid > 0);
	if (pid > 0)
		wait_child(pid, "revoked before fork");
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(all_accessible());
}

/* (b) and (c): revoke and un-revoke in the parent while children stamp. */
static void test_revoke_after_fork(void)
{
	pid_t kids[NKIDS];
	uint8_t *snap = malloc(BAR_SIZE);
	double t0;
	int ret;

	t_section("b, c: revoke and un-revoke after fork");
	memset(ctl, 0, sizeof(*ctl));
	for (int i = 0; i < NKIDS; i++) {
		kids[i] = fork();
		if (!kids[i]) {
			pid_t g = -1;
			int st = 0, bad;

			if (i == 0) { /* a grandchild, forked by a child */
				g = fork();
				if (!g) {
					stamper(NKIDS);
					_exit(atomic_load(&ctl->bad[NKIDS]) ? 1 : 0);
				}
			}
			stamper(i);
			bad = atomic_load(&ctl->bad[i]) || (i == 0 && g < 0);
			if (g > 0)
				bad |= waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st);
			_exit(bad ? 1 : 0);
		}
		CHECK(kids[i] > 0);
	}
	for (int i = 0; i < NPROCS; i++)
		while (atomic_load(&ctl->writes[i]) < 100)
			usleep(1000);

	t0 = now_ms();
	ret = t_mem_enable(dev.vdev, false);
	CHECK_OK(ret);
	memcpy(snap, t_bar_ptr(dev.pci, BAR, 0), BAR_SIZE);
	atomic_store(&ctl->phase, PH_REVOKED);
	printf("revoke reaching %d processes: %.2f ms\n", NPROCS, now_ms() - t0);
	CHECK(all_revoked());
	wait_seen(PH_REVOKED);
	usleep(20000);
	/* The canary: nothing they kept writing landed after the revoke returned. */
	CHECK(!memcmp(snap, t_bar_ptr(dev.pci, BAR, 0), BAR_SIZE));

	atomic_store(&ctl->phase, PH_UNREVOKING);
	t0 = now_ms();
	CHECK_OK(t_mem_enable(dev.vdev, true));
	atomic_store(&ctl->phase, PH_UNREVOKED);
	printf("un-revoke reaching %d processes: %.2f ms\n", NPROCS, now_ms() - t0);
	CHECK(all_accessible());
	wait_seen(PH_UNREVOKED);
	{
		unsigned long w[NPROCS];

		for (int i = 0; i < NPROCS; i++)
			w[i] = atomic_load(&ctl->writes[i]);
		/* Their stamps land again. */
		for (int i = 0; i < NPROCS; i++)
			while (atomic_load(&ctl->writes[i]) < w[i] + 200)
				usleep(1000);
		CHECK(memcmp(snap, t_bar_ptr(dev.pci, BAR, 0), BAR_SIZE));
	}
	atomic_store(&ctl->phase, PH_EXIT);
	for (int i = 0; i < NKIDS; i++)
		if (kids[i] > 0)
			wait_child(kids[i], "stamper");
	free(snap);
}

/* (d): a revoke in a child reaches the parent, and so does its un-revoke. */
static void test_revoke_in_child(void)
{
	pid_t pid;

	t_section("d: revoke in a child");
	pid = fork();
	if (!pid)
		_exit(t_mem_enable(dev.vdev, false) ? 1 : 0);
	CHECK(pid > 0);
	if (pid > 0)
		wait_child(pid, "revoking child");
	CHECK(all_revoked());

	pid = fork();
	if (!pid) {
		/* Its device copy still has memory decoding on: write it on again. */
		_exit(!all_revoked() || t_mem_enable(dev.vdev, true) || !all_accessible());
	}
	CHECK(pid > 0);
	if (pid > 0)
		wait_child(pid, "un-revoking child");
	CHECK(all_accessible());
}

/* A child's own mapping, made after fork from its copy of the buffer, follows the parent. */
static void test_child_own_mapping(void)
{
	pid_t pid;

	t_section("b2: a mapping made by the child after fork");
	memset(ctl, 0, sizeof(*ctl));
	pid = fork();
	if (!pid) {
		void *va;
		bool ok = !t_mmap_fd(fd1, MAP_LEN, MAP_SHARED, 0, &va);

		ok = ok && !t_faults_anywhere(va, MAP_LEN);
		atomic_store(&ctl->started[0], 1);
		while (atomic_load(&ctl->phase) != PH_REVOKED)
			usleep(1000);
		ok = ok && t_faults_everywhere(va, MAP_LEN);
		atomic_store(&ctl->seen[0], PH_REVOKED);
		while (atomic_load(&ctl->phase) != PH_UNREVOKED)
			usleep(1000);
		ok = ok && !t_faults_anywhere(va, MAP_LEN) && !p2p_munmap(va, MAP_LEN);
		_exit(ok ? 0 : 1);
	}
	CHECK(pid > 0);
	if (pid <= 0)
		return;
	while (!atomic_load(&ctl->started[0]))
		usleep(1000);
	CHECK_OK(t_mem_enable(dev.vdev, false));
	atomic_store(&ctl->phase, PH_REVOKED);
	while (atomic_load(&ctl->seen[0]) != PH_REVOKED)
		usleep(1000);
	CHECK_OK(t_mem_enable(dev.vdev, true));
	atomic_store(&ctl->phase, PH_UNREVOKED);
	wait_child(pid, "child's own mapping");
}

/* (e): exited, exec'd and stopped children. */
static void test_dead_and_stopped(void)
{
	pid_t zombie, execd, stopped;
	int pfd[2], st, ret;
	double t0, dt;
	char c;

	t_section("e: exited, exec'd, stopped children");
	zombie = fork();
	if (!zombie)
		_exit(0);
	CHECK(pipe2(pfd, O_CLOEXEC) == 0);
	execd = fork();
	if (!execd) {
		execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	/* Wait until the exec happened: the pipe's write end closes with it. */
	close(pfd[1]);
	CHECK(read(pfd[0], &c, 1) == 0);
	close(pfd[0]);
	while (waitid(P_PID, (id_t)zombie, &(siginfo_t){ 0 }, WEXITED | WNOWAIT) < 0 && errno == EINTR)
		;

	t0 = now_ms();
	CHECK_OK(t_mem_enable(dev.vdev, false));
	dt = now_ms() - t0;
	printf("revoke with a zombie and an exec'd child: %.2f ms\n", dt);
	CHECK(dt < TIMEOUT_MS / 2);
	CHECK(all_revoked());
	CHECK_OK(t_mem_enable(dev.vdev, true));
	kill(execd, SIGKILL);
	CHECK(waitpid(execd, &st, 0) == execd);
	CHECK(waitpid(zombie, &st, 0) == zombie);

	memset(ctl, 0, sizeof(*ctl));
	stopped = fork();
	if (!stopped) {
		double end;

		atomic_store(&ctl->started[0], 1);
		while (atomic_load(&ctl->phase) != PH_REVOKED)
			usleep(1000);
		/* Continued after the revoke: its helper revokes here soon (buffer by buffer). */
		end = now_ms() + 5000;
		while (now_ms() < end && !all_revoked())
			usleep(1000);
		_exit(all_revoked() ? 0 : 1);
	}
	CHECK(stopped > 0);
	while (!atomic_load(&ctl->started[0]))
		usleep(1000);
	kill(stopped, SIGSTOP);
	CHECK(waitpid(stopped, &st, WUNTRACED) == stopped && WIFSTOPPED(st));
	setenv("P2PBUF_REVOKE_TIMEOUT_MS", STR(STOP_TIMEOUT_MS), 1);
	t0 = now_ms();
	ret = t_mem_enable(dev.vdev, false); /* 3 dma-bufs: waits for the first only */
	dt = now_ms() - t0;
	setenv("P2PBUF_REVOKE_TIMEOUT_MS", STR(TIMEOUT_MS), 1);
	printf("revoke with a stopped child: %s after %.0f ms (bound %d ms)\n",
	       ret ? strerror(-ret) : "ok", dt, STOP_TIMEOUT_MS);
	CHECK_ERR(ret, -ETIMEDOUT);
	CHECK(dt >= STOP_TIMEOUT_MS * 0.9 && dt < STOP_TIMEOUT_MS * 2 + 500);
	CHECK(all_revoked()); /* everything else is done */
	atomic_store(&ctl->phase, PH_REVOKED);
	kill(stopped, SIGCONT);
	wait_child(stopped, "stopped child");
	/* With it gone, a revoke again succeeds and un-revoke works. */
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(all_accessible());
}

int main(int argc, char **argv)
{
	struct vfio_region_dma_range multi[] = {
		{ .offset = 512 * 1024, .length = 4 * PAGE },
		{ .offset = 128 * 1024, .length = 8 * PAGE },
		{ .offset = 768 * 1024, .length = 4 * PAGE },
	};
	const char *forced = getenv("P2PBUF_CPU_REVOKE");
	int ret;
	void *va;

	(void)argc;
	setenv("P2PBUF_REVOKE_TIMEOUT_MS", STR(TIMEOUT_MS), 1);
	t_begin();
	printf("CPU revocation by %s\n",
	       p2p_cpu_revoke_method() == P2P_CPU_REVOKE_UFFD ? "userfaultfd" : "remap");
	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(ctl != MAP_FAILED);
	t_dev_create_or_skip(&dev, "forkdev", BAR_SIZE, 0);
	t_bar_fill(dev.pci, BAR, BAR_SIZE);

	ret = p2p_vfio_device_mmap(dev.vdev, NULL, MAP_LEN, PROT_READ | PROT_WRITE, MAP_SHARED,
				   (uint64_t)BAR << 40 | 256 * 1024, &va);
	CHECK_OK(ret);
	maps[0] = va;
	fd1 = t_dmabuf_range(dev.vdev, BAR, 0, MAP_LEN);
	CHECK(fd1 >= 0);
	CHECK_OK(t_mmap_fd(fd1, MAP_LEN, MAP_SHARED, 0, &va));
	maps[1] = va;
	fd2 = t_dmabuf(dev.vdev, BAR, multi, 3);
	CHECK(fd2 >= 0);
	CHECK_OK(t_mmap_fd(fd2, MAP_LEN, MAP_SHARED, 0, &va));
	maps[2] = va;
	if (t_failures)
		return T_EXIT_FAIL;
	CHECK(all_accessible());

	test_revoked_before_fork();
	test_revoke_after_fork();
	test_child_own_mapping();
	test_revoke_in_child();
	test_dead_and_stopped();

	for (int m = 0; m < NMAPS; m++)
		CHECK_OK(p2p_munmap(maps[m], MAP_LEN));
	CHECK_OK(p2p_close(fd1));
	CHECK_OK(p2p_close(fd2));
	t_dev_destroy(&dev);
	munmap(ctl, sizeof(*ctl));

	/* (f): the other means, in a fresh process. */
	if (!forced && !TSAN && p2p_cpu_revoke_method() == P2P_CPU_REVOKE_UFFD) {
		pid_t pid;

		fflush(NULL);
		pid = fork();
		if (!pid) {
			setenv("P2PBUF_CPU_REVOKE", "remap", 1);
			execv("/proc/self/exe", argv);
			_exit(127);
		}
		CHECK(pid > 0);
		if (pid > 0)
			wait_child(pid, "P2PBUF_CPU_REVOKE=remap run");
	}
	return t_end();
}
