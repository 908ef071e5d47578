// SPDX-License-Identifier: MIT
/*
 * File descriptor hygiene (style rule 11; kernel-semantics 0.1, 1.6, 7.4).
 *
 * First the harness's leak check itself: forked children that leak a
 * dma-buf fd, drop one with plain close(2) (which leaks its reference, see
 * p2p_dmabuf_fd_install()) or forget a mapping must fail t_end() with exit
 * 1, and a child that cleans up after a full cycle must pass.  Then the
 * library: full cycles (device open, export, mmap, BAR mmap, importer,
 * revoke, close everything, in either order) leave exactly the fds that
 * were open at the start.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define PAGE 4096ul
#define BAR2_SIZE (256 * 1024ul)

struct fd_census {
	int all, memfds;
};

static struct fd_census census(void)
{
	struct fd_census c = { 0, 0 };
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char path[300], target[256];

	if (!d)
		return (struct fd_census){ -1, -1 };
	while ((e = readdir(d))) {
		ssize_t n;

		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		c.all++;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = 0;
			c.memfds += !strncmp(target, "/memfd:", 7);
		}
	}
	closedir(d);
	return c;
}

/* Revoked mappings raise SIGBUS (3.2), nothing else. */
static bool sigbus(void *p)
{
	return t_access(p, false, 0, NULL) == SIGBUS;
}

static const struct vfio_region_dma_range two[2] = {
	{ .offset = 8 * PAGE, .length = 4 * PAGE },
	{ .offset = 0, .length = 2 * PAGE },
};

/*
 * Everything the library hands out, used and released.  With
 * @device_first the device goes away while dma-buf fds, a dma-buf mapping
 * and a BAR mmap are still alive (1.6: they outlive it and stay closable).
 */
static void full_cycle(bool device_first)
{
	struct p2p_dmabuf *buf;
	struct t_importer imp;
	struct t_dev d = { 0 };
	void *va1, *va2, *bar;
	int fd1, fd2, fd1_dup, fd2_plain_dup;

	CHECK_OK(t_dev_create(&d, "0000:04:00.0", BAR2_SIZE, 0, NULL, 4));
	if (!d.vdev)
		return;
	fd1 = t_dmabuf(d.vdev, 2, &two[0], 1);
	fd2 = t_dmabuf(d.vdev, 2, two, 2);
	CHECK(fd1 >= 0 && fd2 >= 0);
	fd1_dup = p2p_dup(fd1);	  /* holds its own reference */
	fd2_plain_dup = dup(fd2); /* holds none: close(2) is right */
	CHECK(fd1_dup >= 0 && fd2_plain_dup >= 0);
	CHECK_OK(t_mmap_fd(fd1_dup, 4 * PAGE, MAP_SHARED, 0, &va1));
	CHECK_OK(t_mmap_fd(fd2_plain_dup, 5 * PAGE, MAP_SHARED, PAGE, &va2));
	CHECK_OK(p2p_vfio_device_mmap(d.vdev, NULL, BAR2_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), &bar));
	CHECK(!t_write_faults(va1, 1) && !t_read_faults(va2) && !t_read_faults(bar));

	CHECK_OK(p2p_dmabuf_get(fd2, &buf));
	CHECK_OK(t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true));
	CHECK_OK(t_importer_map(&imp));

	/* Every revoke path: MEM off/on, FLR, REVOKE (1.7, 3.4). */
	CHECK_OK(t_mem_enable(d.vdev, false));
	CHECK(sigbus(va1) && sigbus(va2) && sigbus(bar));
	CHECK_OK(t_mem_enable(d.vdev, true));
	CHECK_OK(t_flr(d.vdev));
	CHECK(!t_read_faults(va1) && !t_read_faults(bar));
	CHECK_ERR(t_feat_revoke(d.vdev, fd1), 0);
	CHECK(sigbus(va1) && !t_read_faults(va2));
	CHECK(imp.invalidations == 2); /* MEM off, FLR */

	if (device_first) {
		t_dev_destroy(&d);
		/* The BAR mmap still holds the device file (8.3 item 13). */
		CHECK(!t_read_faults(va2) && !t_read_faults(bar));
		CHECK_OK(p2p_munmap(bar, BAR2_SIZE));
		CHECK(sigbus(va2));
	}
	t_importer_detach(&imp);
	p2p_dmabuf_put(buf);
	if (!device_first)
		CHECK_OK(p2p_munmap(bar, BAR2_SIZE));
	CHECK_OK(p2p_munmap(va1, 4 * PAGE));
	CHECK_OK(p2p_munmap(va2, 5 * PAGE));
	CHECK_OK(p2p_close(fd1));
	CHECK_OK(p2p_close(fd1_dup));
	CHECK_OK(close(fd2_plain_dup));
	CHECK_OK(p2p_close(fd2));
	if (!device_first)
		t_dev_destroy(&d);
}

/* Child scenarios: each runs between its own t_begin() and t_end(). */

/* A child's device and a dma-buf of its first range (CHECKed) in *@fd; false: no device. */
static bool child_dev(struct t_dev *d, int *fd)
{
	if (t_dev_create(d, "0000:05:00.0", BAR2_SIZE, 0, NULL, 5))
		return false;
	*fd = t_dmabuf(d->vdev, 2, &two[0], 1);
	CHECK(*fd >= 0);
	return true;
}

static void leak_dmabuf_fd(void)
{
	struct t_dev d;
	int fd;

	if (!child_dev(&d, &fd))
		return;
	t_dev_destroy(&d); /* the fd stays open, dead but valid (1.6) */
}

static void leak_by_plain_close(void)
{
	struct t_dev d;
	int fd;

	if (!child_dev(&d, &fd))
		return;
	close(fd); /* should have been p2p_close(): the buffer's reference leaks */
	t_dev_destroy(&d);
}

static void leak_mapping(void)
{
	struct t_dev d;
	void *va;
	int fd;

	if (!child_dev(&d, &fd))
		return;
	CHECK_OK(t_mmap_fd(fd, PAGE, MAP_SHARED, 0, &va)); /* never unmapped: it holds the buffer */
	CHECK_OK(p2p_close(fd));
	t_dev_destroy(&d);
}

static void clean_child(void)
{
	full_cycle(false);
	full_cycle(true);
}

/*
 * Fork, run @fn between t_begin() and t_end() in the child, and check its
 * exit status and, if @msg, that it said @msg on stderr.
 */
static void run_child(const char *name, void (*fn)(void), int want, const char *msg)
{
	char out[4096];
	size_t len = 0;
	int p[2], st = 0;
	ssize_t n;
	pid_t pid;

	t_section(name);
	CHECK_OK(pipe2(p, O_CLOEXEC) ? -errno : 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	CHECK(pid >= 0);
	if (pid < 0)
		return;
	if (!pid) {
		dup2(p[1], STDERR_FILENO);
		close(p[0]);
		close(p[1]);
		t_failures = 0;
		t_begin();
		fn();
		_exit(t_end());
	}
	close(p[1]);
	while (len < sizeof(out) - 1 && (n = read(p[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = 0;
	close(p[0]);
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == want);
	if (msg)
		CHECK(strstr(out, msg) != NULL);
	printf("child \"%s\": exit %d%s%s", name, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
	       len ? ", stderr: " : "\n", out);
}

int main(void)
{
	struct fd_census start, now;

	t_begin();
	t_require_uffd();
	start = census();
	CHECK(start.all > 0);

	/* The leak check catches what it must, and only that. */
	run_child("child leaks a dma-buf fd", leak_dmabuf_fd, T_EXIT_FAIL, "fd leak");
	run_child("child drops a dma-buf fd with close(2)", leak_by_plain_close, T_EXIT_FAIL,
		  "fd leak");
	run_child("child leaks a mapping", leak_mapping, T_EXIT_FAIL, "fd leak");
	/* A fork child gets its own userfaultfd: its revokes work (cpumap.c). */
	run_child("clean child", clean_child, T_EXIT_PASS, NULL);
	now = census();
	CHECK(now.all == start.all && now.memfds == start.memfds);

	/* The library leaks nothing over full cycles, in both teardown orders. */
	for (int i = 0; i < 3; i++) {
		t_section(i % 2 ? "full cycle, device closed first" : "full cycle");
		full_cycle(i % 2);
		now = census();
		CHECK(now.all == start.all);
		CHECK(now.memfds == start.memfds);
	}
	return t_end();
}
