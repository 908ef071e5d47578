// SPDX-License-Identifier: MIT
/*
 * CPU revocation without userfaultfd (issue: a revoke that silently did
 * nothing).  As an unprivileged user with vm.unprivileged_userfaultfd=0,
 * the process gets no userfaultfd.  Every revoke trigger must still make
 * the BAR mmap and the dma-buf mmap inaccessible (SIGBUS at the address),
 * keep the data, and restore the same mappings afterwards; a revoke never
 * reports success for a mapping that can still be touched.
 *
 * Run as root, the test forks a child that drops to nobody (and, should
 * this system allow unprivileged userfaultfd, also denies the userfaultfd
 * syscall with a seccomp filter, so the condition is the same).  Run as a
 * non-root user, it tests the process itself.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "proc_util.h"

#define BAR2 (4ull << 20)
#define PAGE 4096ull

/* userfaultfd(2) -> EPERM, everything else allowed. */
static int deny_userfaultfd(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) ? -errno : 0;
}

/* Does /proc/self/maps have a line for @va naming @what at file offset @off? */
static bool maps_line(const void *va, const char *what, uint64_t off)
{
	uint64_t o;
	bool named;

	return t_maps_find(va, &o, what, &named) && named && o == off;
}

/* Every page of @p (len bytes) raises SIGBUS on load and on store. */
static bool all_sigbus(uint8_t *p, size_t len)
{
	for (size_t o = 0; o < len; o += PAGE) {
		if (t_access(p + o, false, 0, NULL) != SIGBUS ||
		    t_access(p + o, true, 0x5a, NULL) != SIGBUS)
			return false;
	}
	return true;
}

/* Every page of @p reads what the device holds and takes a write. */
static bool all_live(uint8_t *p, const uint8_t *dev, size_t len)
{
	for (size_t o = 0; o < len; o += PAGE) {
		uint8_t v = 0;

		if (t_access(p + o, false, 0, &v) || v != dev[o])
			return false;
		if (t_access(p + o + 1, true, dev[o + 1], NULL))
			return false;
	}
	return true;
}

static void test_no_uffd(void)
{
	struct t_dev dev;
	struct vfio_region_dma_range r[2] = {
		{ .offset = 0, .length = 64 * 1024 },
		{ .offset = 1 << 20, .length = 128 * 1024 },
	};
	const uint64_t bar_off = P2P_VFIO_REGION_OFFSET(2) + (2 << 20);
	const size_t blen = 256 * 1024, dlen = 192 * 1024;
	uint8_t *bva = NULL, *dva = NULL, *d0 = NULL;
	uint8_t *bdev, *ddev;
	int fd, fd2;

	t_section("no userfaultfd: init and method");
	CHECK_OK(p2p_library_init());
	CHECK(p2p_cpu_revoke_method() == P2P_CPU_REVOKE_REMAP);

	t_dev_create_or_fail(&dev, "0000:0a:00.0", BAR2, 1);
	t_bar_fill(dev.pci, 2, BAR2);
	bdev = t_bar_ptr(dev.pci, 2, 2 << 20);
	ddev = t_bar_ptr(dev.pci, 2, 0);

	t_section("no userfaultfd: mappings are handed out revocable");
	CHECK_OK(p2p_vfio_device_mmap(dev.vdev, NULL, blen, PROT_READ | PROT_WRITE, MAP_SHARED,
				      bar_off, (void **)&bva));
	fd = t_dmabuf(dev.vdev, 2, r, 2);
	CHECK(fd >= 0);
	CHECK_OK(t_mmap_fd(fd, dlen, MAP_SHARED, 0, (void **)&dva));
	if (!bva || !dva || fd < 0)
		goto out;
	CHECK(all_live(bva, bdev, blen));
	CHECK(all_live(dva, ddev, 64 * 1024));
	CHECK(all_live(dva + 64 * 1024, ddev + (1 << 20), 128 * 1024));

	t_section("no userfaultfd: memory decode off revokes (SIGBUS), data kept");
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK(all_sigbus(bva, blen));
	CHECK(all_sigbus(dva, dlen));
	CHECK(maps_line(bva, "p2pbuf-revoked", bar_off));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(all_live(bva, bdev, blen));
	CHECK(all_live(dva, ddev, 64 * 1024));
	CHECK(all_live(dva + 64 * 1024, ddev + (1 << 20), 128 * 1024));
	CHECK(maps_line(bva, "bar2", bar_off));

	t_section("no userfaultfd: FLR, VFIO_DEVICE_RESET, D3hot");
	bva[7] = 0x77;
	CHECK_OK(p2p_vfio_device_reset(dev.vdev));
	CHECK(bva[7] == 0x77 && bdev[7] == 0x77);
	CHECK_OK(t_set_power(dev.vdev, 3));
	CHECK(all_sigbus(bva, blen));
	CHECK(all_sigbus(dva, dlen));
	CHECK_OK(t_set_power(dev.vdev, 0));
	CHECK(all_live(bva, bdev, blen));

	t_section("no userfaultfd: a mapping made while revoked is revoked");
	CHECK_OK(t_mem_enable(dev.vdev, false));
	fd2 = t_dmabuf_range(dev.vdev, 2, 0, 64 * 1024);
	CHECK(fd2 == -ENODEV || fd2 >= 0); /* export while decode is off: kernel refuses */
	if (fd2 >= 0)
		p2p_close(fd2);
	CHECK_OK(p2p_vfio_device_mmap(dev.vdev, NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), (void **)&d0));
	if (d0)
		CHECK(all_sigbus(d0, PAGE));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	if (d0) {
		CHECK(all_live(d0, ddev, PAGE));
		CHECK_OK(p2p_munmap(d0, PAGE));
	}

	t_section("no userfaultfd: DMA_BUF_REVOKE is permanent");
	CHECK_OK(t_feat_revoke(dev.vdev, fd));
	CHECK(all_sigbus(dva, dlen));
	CHECK_OK(t_mem_enable(dev.vdev, false));
	CHECK_OK(t_mem_enable(dev.vdev, true));
	CHECK(all_sigbus(dva, dlen));
	CHECK(all_live(bva, bdev, blen));

	CHECK_OK(p2p_munmap(dva, dlen));
	dva = NULL;
	CHECK_OK(p2p_close(fd));
	fd = -1;

	t_section("no userfaultfd: close of the last device file");
	{
		/* The BAR mmap holds the device file: a second mmap shows close. */
		struct p2p_vfio_device *v2;
		uint8_t *e = NULL;
		int efd;

		CHECK_OK(p2p_vfio_device_open(dev.pci, &v2));
		efd = t_dmabuf_range(v2, 2, 0, PAGE);
		CHECK(efd >= 0);
		if (efd >= 0) {
			CHECK_OK(t_mmap_fd(efd, PAGE, MAP_SHARED, 0, (void **)&e));
			CHECK_OK(p2p_munmap(bva, blen));
			bva = NULL;
			p2p_vfio_device_close(dev.vdev);
			dev.vdev = NULL;
			if (e)
				CHECK(all_live(e, ddev, PAGE));
			p2p_vfio_device_close(v2); /* last close: revoked for good */
			if (e) {
				CHECK(all_sigbus(e, PAGE));
				CHECK_OK(p2p_munmap(e, PAGE));
			}
			p2p_close(efd);
		} else {
			p2p_vfio_device_close(v2);
		}
	}
out:
	if (bva)
		p2p_munmap(bva, blen);
	if (dva)
		p2p_munmap(dva, dlen);
	if (fd >= 0)
		p2p_close(fd);
	t_dev_destroy(&dev);
}

int main(void)
{
	int status, unpriv = proc_read_int("/proc/sys/vm/unprivileged_userfaultfd");
	pid_t pid;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		t_begin();
		if (p2p_cpu_revoke_method() == P2P_CPU_REVOKE_UFFD)
			t_skip("this unprivileged process has a userfaultfd (vm.unprivileged_userfaultfd=1)");
		test_no_uffd();
		return t_end();
	}
	pid = fork();
	if (pid < 0)
		return T_EXIT_FAIL;
	if (pid == 0) {
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534)) {
			perror("drop to nobody");
			_exit(T_EXIT_FAIL);
		}
		if (unpriv != 0) {
			printf("note: vm.unprivileged_userfaultfd=%d: denying userfaultfd(2) with seccomp\n",
			       unpriv);
			if (deny_userfaultfd()) {
				perror("seccomp");
				_exit(T_EXIT_FAIL);
			}
		}
		t_begin();
		test_no_uffd();
		_exit(t_end());
	}
	if (waitpid(pid, &status, 0) != pid)
		return T_EXIT_FAIL;
	if (!WIFEXITED(status)) {
		fprintf(stderr, "child killed by signal %d\n", WTERMSIG(status));
		return T_EXIT_FAIL;
	}
	return WEXITSTATUS(status);
}
