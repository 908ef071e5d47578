// SPDX-License-Identifier: MIT
/*
 * Resource limits: each case runs in a forked child (the limits and
 * seccomp filters stay there) and must get a clear -errno from the API,
 * never a signal (SIGXFSZ, SIGSEGV, SIGBUS where none is due), never a
 * silently lost revocation, and the child carries on once the limit is
 * lifted.
 *  - RLIMIT_FSIZE below a BAR, a heap buffer, a storage image: -EFBIG;
 *  - RLIMIT_NOFILE exhausted: exports -EMFILE, BAR and dma-buf mmaps
 *    -ENOMEM (mmap(2) has no EMFILE), revoke not silently lost;
 *  - RLIMIT_AS tight: -ENOMEM (not under ASan, whose shadow is address space);
 *  - memfd_create refused by seccomp (EPERM, EMFILE);
 *  - io_uring_setup refused by seccomp (ENOSYS, EPERM);
 *  - RLIMIT_MEMLOCK 0 without CAP_IPC_LOCK: io_uring fixed buffers fail
 *    with an error in the completion.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liburing.h>

#include "harness.h"

#define PAGE 4096ul
#define BAR2 (1024 * 1024ul)

static void set_limit(int res, rlim_t cur)
{
	struct rlimit rl;

	CHECK(!getrlimit(res, &rl));
	rl.rlim_cur = cur;
	CHECK(!setrlimit(res, &rl));
}

static rlim_t limit_max(int res)
{
	struct rlimit rl;

	getrlimit(res, &rl);
	return rl.rlim_max;
}

/* Refuse syscall @nr with @err (no arch check: one native ABI per process). */
static int deny_syscall(long nr, int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((uint32_t)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) ? -errno : 0;
}

/* Run @fn in a child: it must exit 0 (77: skipped), never die of a signal. */
static void in_child(const char *name, void (*fn)(void))
{
	int status;
	pid_t pid;

	t_section(name);
	fflush(NULL);
	pid = fork();
	CHECK(pid >= 0);
	if (pid < 0)
		return;
	if (!pid) {
		t_failures = 0;
		fn();
		fflush(NULL);
		_exit(t_failures ? 1 : 0);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "[%s] child killed by signal %d (%s)\n", name, WTERMSIG(status),
			strsignal(WTERMSIG(status)));
		t_failures++;
	} else if (WEXITSTATUS(status) == 77) {
		printf("%s: skipped\n", name);
	} else if (WEXITSTATUS(status)) {
		fprintf(stderr, "[%s] child failed\n", name);
		t_failures++;
	} else {
		printf("%s: ok\n", name);
	}
}

static int dev_create(struct t_dev *d, uint64_t bar2)
{
	return t_dev_create(d, "0000:01:00.0", bar2, 0, NULL, 1);
}

/* The child carries on: a device, an export, a mapping, a revoke that zaps. */
static void carries_on(void)
{
	struct t_dev d;
	struct p2p_dmabuf *buf;
	void *va;
	int fd;

	CHECK_OK(dev_create(&d, BAR2));
	if (t_failures)
		return;
	fd = t_dmabuf_range(d.vdev, 2, 0, 16 * PAGE);
	CHECK(fd >= 0);
	CHECK_OK(p2p_vfio_device_mmap(d.vdev, NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), &va));
	if (fd >= 0 && !p2p_dmabuf_get(fd, &buf)) {
		CHECK_OK(t_mem_enable(d.vdev, false));
		CHECK(t_read_faults(va));
		CHECK(p2p_dmabuf_status(buf) != P2P_DMABUF_OK);
		CHECK_OK(t_mem_enable(d.vdev, true));
		CHECK(!t_read_faults(va));
		p2p_dmabuf_put(buf);
	}
	CHECK_OK(p2p_munmap(va, 16 * PAGE));
	if (fd >= 0)
		CHECK_OK(p2p_close(fd));
	t_dev_destroy(&d);
}

/* ---------------------------------------------------------------------- */

static void fsize_case(void)
{
	struct p2p_dma_heap *heap;
	struct p2p_pci_dev *sd;
	struct p2p_mem *mem;
	struct t_dev d;

	set_limit(RLIMIT_FSIZE, 64 * 1024);
	CHECK_ERR(dev_create(&d, BAR2), -EFBIG);
	CHECK_ERR(p2p_mem_create("big", BAR2, 0, &mem), -EFBIG);
	CHECK_OK(p2p_mem_create("small", 16 * PAGE, 0, &mem));
	p2p_mem_put(mem);
	CHECK_OK(p2p_dma_heap_open("system", &heap));
	CHECK_ERR(p2p_dma_heap_alloc(heap, BAR2, O_RDWR | O_CLOEXEC, 0), -EFBIG);
	p2p_dma_heap_close(heap);
	CHECK_ERR(p2p_storage_create("0000:07:00.0", NULL, 7, NULL, BAR2, &sd), -EFBIG);
	set_limit(RLIMIT_FSIZE, RLIM_INFINITY);
	carries_on();
}

/* Use up every fd below the limit. */
static void fill_fds(void)
{
	while (dup(0) >= 0)
		;
	CHECK(errno == EMFILE);
}

static void nofile_case(void)
{
	struct t_dev d;
	struct p2p_dmabuf *buf;
	void *va, *map;
	int fd, highest = 0;
	DIR *dir;
	struct dirent *e;

	CHECK_OK(dev_create(&d, BAR2));
	if (t_failures)
		return;
	fd = t_dmabuf_range(d.vdev, 2, 0, 16 * PAGE);
	CHECK(fd >= 0 && !p2p_dmabuf_get(fd, &buf));
	if (t_failures)
		return;
	CHECK_OK(p2p_dmabuf_mmap(buf, NULL, 16 * PAGE, PROT_READ, MAP_SHARED, 0, &map));
	dir = opendir("/proc/self/fd");
	while (dir && (e = readdir(dir)))
		if (atoi(e->d_name) > highest)
			highest = atoi(e->d_name);
	if (dir)
		closedir(dir);
	set_limit(RLIMIT_NOFILE, (rlim_t)highest + 1);
	fill_fds();

	CHECK_ERR(t_dmabuf_range(d.vdev, 2, 0, 16 * PAGE), -EMFILE);
	CHECK_ERR(p2p_dup(fd), -EMFILE);
	CHECK_ERR(p2p_dmabuf_fd_install(buf, O_CLOEXEC), -EMFILE);
	/* mmap(2) never says EMFILE. */
	CHECK_ERR(p2p_vfio_device_mmap(d.vdev, NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
				       P2P_VFIO_REGION_OFFSET(2), &va),
		  -ENOMEM);
	/*
	 * A revoke in a fresh child needs its own userfaultfd: it may fail,
	 * but must not be lost silently.
	 */
	{
		long r = p2p_dmabuf_revoke(buf, P2P_DMABUF_TEMP_REVOKED);

		CHECK(r == 0 || r == -EMFILE);
		if (!r)
			CHECK(t_read_faults(map));
		/* A revoked buffer's mmap needs the userfaultfd too. */
		r = p2p_dmabuf_mmap(buf, NULL, 16 * PAGE, PROT_READ, MAP_SHARED, 0, &va);
		/* VFIO refuses mmaps of a revoked buffer (ENODEV); else no fd for the uffd. */
		CHECK_ERR(r, p2p_dmabuf_status(buf) != P2P_DMABUF_OK ? -ENODEV : -ENOMEM);
		if (!r) {
			CHECK(t_read_faults(va));
			CHECK_OK(p2p_munmap(va, 16 * PAGE));
		}
		set_limit(RLIMIT_NOFILE, limit_max(RLIMIT_NOFILE));
		/* Lifted: the revoke completes. */
		CHECK_OK(p2p_dmabuf_revoke(buf, P2P_DMABUF_TEMP_REVOKED));
		CHECK(t_read_faults(map));
		CHECK_OK(p2p_dmabuf_unrevoke(buf));
		CHECK(!t_read_faults(map));
	}
	CHECK_OK(p2p_munmap(map, 16 * PAGE));
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(fd));
	t_dev_destroy(&d);
	carries_on();
}

static void as_case(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	_exit(77); /* the sanitizer's shadow is address space */
#else
	struct t_dev d;
	struct p2p_mem *mem;
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long vm_kb = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %lu kB", &vm_kb) == 1)
			break;
	if (f)
		fclose(f);
	CHECK(vm_kb);
	set_limit(RLIMIT_AS, (vm_kb + 64 * 1024) * 1024);
	CHECK_ERR(dev_create(&d, 256ul << 20), -ENOMEM);
	CHECK_ERR(p2p_mem_create("big", 256ul << 20, 0, &mem), -ENOMEM);
	set_limit(RLIMIT_AS, RLIM_INFINITY);
	carries_on();
#endif
}

static void no_memfd(int err)
{
	struct p2p_dma_heap *heap;
	struct p2p_mem *mem;
	struct t_dev d;

	CHECK_OK(deny_syscall(__NR_memfd_create, err));
	CHECK_ERR(dev_create(&d, BAR2), -err);
	CHECK_ERR(p2p_mem_create("m", BAR2, 0, &mem), -err);
	CHECK_OK(p2p_dma_heap_open("system", &heap));
	CHECK_ERR(p2p_dma_heap_alloc(heap, BAR2, O_RDWR | O_CLOEXEC, 0), -err);
	p2p_dma_heap_close(heap);
}

static void no_memfd_eperm(void)
{
	no_memfd(EPERM);
}

static void no_memfd_emfile(void)
{
	no_memfd(EMFILE);
}

static void no_uring(int err)
{
	struct p2p_uring *ring;
	struct p2p_pci_dev *sd;

	CHECK_OK(deny_syscall(__NR_io_uring_setup, err));
	CHECK_ERR(p2p_uring_create(8, 4, &ring), -err);
	CHECK_ERR(p2p_storage_create("0000:07:00.0", NULL, 7, NULL, BAR2, &sd), -err);
	carries_on();
}

static void no_uring_enosys(void)
{
	no_uring(ENOSYS);
}

static void no_uring_eperm(void)
{
	no_uring(EPERM);
}

/* Drop CAP_IPC_LOCK from the effective set, so RLIMIT_MEMLOCK applies. */
static void drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct c[2];

	CHECK(!syscall(SYS_capget, &h, c));
	c[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	CHECK(!syscall(SYS_capset, &h, c));
}

static void memlock_case(void)
{
	struct io_uring_sqe sqe = { .opcode = IORING_OP_READ_FIXED, .len = 4 * PAGE, .buf_index = 0 };
	struct io_uring_cqe cqe;
	struct p2p_uring *ring;
	struct t_dev d;
	int fd, file;
	long r;

	CHECK_OK(dev_create(&d, BAR2));
	if (t_failures)
		return;
	fd = t_dmabuf_range(d.vdev, 2, 0, 64 * PAGE);
	file = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && file >= 0);
	CHECK(pwrite(file, (uint8_t[4 * PAGE]){ 1 }, 4 * PAGE, 0) == 4 * PAGE);
	drop_ipc_lock();
	set_limit(RLIMIT_MEMLOCK, 0);
	r = p2p_uring_create(8, 4, &ring);
	if (r) {
		/* Older kernels account the rings themselves to RLIMIT_MEMLOCK. */
		CHECK_ERR(r, -ENOMEM);
	} else {
		CHECK_OK(p2p_uring_register_dmabuf(ring, 0, fd, file));
		sqe.fd = file;
		CHECK_OK(p2p_uring_submit_sqe(ring, &sqe));
		CHECK(p2p_uring_submit(ring) >= 0);
		CHECK_OK(p2p_uring_wait_cqe(ring, &cqe, true));
		/* Pinning the slot's pages is refused: a clear error, no data. */
		CHECK_ERR(cqe.res, -ENOMEM);
		CHECK(!p2p_uring_slot_mapped(ring, 0));
		/* The pin at registration failed the same way; a prefetch says why. */
		CHECK_ERR(p2p_uring_prefetch(ring, 0), -ENOMEM);
		CHECK(!p2p_uring_slot_mapped(ring, 0));
		p2p_uring_destroy(ring);
	}
	set_limit(RLIMIT_MEMLOCK, limit_max(RLIMIT_MEMLOCK));
	close(file);
	CHECK_OK(p2p_close(fd));
	t_dev_destroy(&d);
	carries_on();
}

int main(void)
{
	t_begin();
	t_require_uffd();
	in_child("RLIMIT_FSIZE 64 KiB", fsize_case);
	in_child("RLIMIT_NOFILE exhausted", nofile_case);
	in_child("RLIMIT_AS tight", as_case);
	in_child("memfd_create refused (EPERM)", no_memfd_eperm);
	in_child("memfd_create refused (EMFILE)", no_memfd_emfile);
	in_child("io_uring_setup refused (ENOSYS)", no_uring_enosys);
	in_child("io_uring_setup refused (EPERM)", no_uring_eperm);
	in_child("RLIMIT_MEMLOCK 0", memlock_case);
	return t_end();
}
