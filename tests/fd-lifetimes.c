// SPDX-License-Identifier: MIT
/*
 * Fd lifetimes of p2pbuf files, as the kernel's (include/p2pbuf/file.h):
 *
 *   - every fd holds a reference: p2p_fd_dup(), p2p_fd_dupfd() (F_DUPFD),
 *     p2p_fd_dup3() (also dropping what the target fd held), p2p_dup(),
 *     and an fd received with SCM_RIGHTS over a socketpair within the
 *     process once p2p_fd_adopt() gave it one; p2p_close() drops it;
 *   - a CPU mapping holds its own (a VMA holds the file): after the last
 *     close the buffer and its bytes live until p2p_munmap();
 *   - the last reference releases the buffer: the exporter's release runs
 *     once, and no fd, memory or mapping is left (fd census, /proc/self/maps
 *     lines of its memory, bufinfo);
 *   - the iommufd context and the dma-heap are files too (open_fd, ioctl
 *     dispatch, last close destroys);
 *   - exec: an fd without FD_CLOEXEC is, in the new program, the file's
 *     token memfd and nothing else: this binary re-executes itself in a
 *     helper mode ("exec-child <fd> <cloexec-fd>") that checks it is a plain,
 *     empty, sealed memfd named "memfd:dmabuf:..." which p2pbuf does not
 *     resolve, and that the FD_CLOEXEC one is gone.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "proc_util.h"

#define PAGE 4096ul
#define LEN (4 * PAGE)
#define MEM_NAME "fdl-buffer-mem"

struct exporter {
	int releases;
};

static struct p2p_sgt *fx_map(struct p2p_attachment *a)
{
	return t_sgt_of_ranges(p2p_attachment_dmabuf(a));
}

static int fx_map_op(struct p2p_attachment *a, struct p2p_sgt **out)
{
	*out = fx_map(a);
	return *out ? 0 : -ENOMEM;
}

static void fx_unmap(struct p2p_attachment *a, struct p2p_sgt *sgt)
{
	(void)a;
	free(sgt);
}

static int fx_mmap(struct p2p_dmabuf *buf, uint64_t off, uint64_t len, int prot, int flags)
{
	(void)buf, (void)off, (void)len, (void)prot, (void)flags;
	return 0;
}

static void fx_release(struct p2p_dmabuf *buf)
{
	((struct exporter *)p2p_dmabuf_priv(buf))->releases++;
}

static const struct p2p_dmabuf_ops fx_ops = {
	.map = fx_map_op,
	.unmap = fx_unmap,
	.mmap = fx_mmap,
	.release = fx_release,
};

static struct p2p_dmabuf *fx_export(struct exporter *e)
{
	struct p2p_mem *mem;
	struct p2p_dmabuf *buf = NULL;

	if (p2p_mem_create(MEM_NAME, LEN, 0, &mem))
		return NULL;
	memset(p2p_mem_ptr(mem, 0), 0xab, LEN);
	{
		struct p2p_phys_range r = { .mem = mem, .offset = 0, .length = LEN };
		struct p2p_dmabuf_export_info info = {
			.argsz = sizeof(info), .name = "fdl", .ops = &fx_ops, .priv = e,
			.nr_ranges = 1, .ranges = &r,
		};

		if (p2p_dmabuf_export(&info, &buf))
			buf = NULL;
	}
	p2p_mem_put(mem); /* the buffer holds its own */
	return buf;
}

/* /proc/self/maps lines whose path names the buffer's memory. */
static int maps_lines(void)
{
	static const char *const mem[] = { MEM_NAME, NULL };

	return proc_count_maps(mem);
}

static long refs(int fd)
{
	struct p2p_dmabuf *buf;
	long n;

	if (p2p_dmabuf_get(fd, &buf))
		return -1;
	n = p2p_file_count(p2p_dmabuf_file(buf)) - 1; /* less ours */
	p2p_dmabuf_put(buf);
	return n;
}

/* Send @fd over @sock with SCM_RIGHTS; receive it on @peer; the new fd or -1. */
static int pass_fd(int sock, int peer, int fd)
{
	char byte = 'x', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int got = -1;

	memset(cbuf, 0, sizeof(cbuf));
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &m, 0) != 1)
		return -1;
	memset(cbuf, 0, sizeof(cbuf));
	m.msg_controllen = sizeof(cbuf);
	if (recvmsg(peer, &m, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&m);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&got, CMSG_DATA(c), sizeof(int));
	return got;
}

static void test_dmabuf_lifetime(void)
{
	struct exporter e = { 0 };
	struct p2p_dmabuf *buf;
	int fds0 = t_count_fds(), maps0 = maps_lines();
	int fd, d1, d2, d3, d4, r, sv[2], pfd[2];
	void *va = NULL;

	t_section("dma-buf fds");
	buf = fx_export(&e);
	if (!buf) {
		CHECK(buf);
		return;
	}
	fd = p2p_dmabuf_fd_install(buf, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	p2p_dmabuf_put(buf); /* the creator's: the fd holds the only reference */
	CHECK(refs(fd) == 1);
	CHECK(p2p_fd_is_file(fd));

	CHECK_OK(p2p_fd_mmap(fd, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va));
	CHECK(refs(fd) == 2); /* the mapping's */

	d1 = p2p_fd_dup(fd);
	CHECK(d1 >= 0 && p2p_fd_is_file(d1) && refs(fd) == 3);
	CHECK(!(fcntl(d1, F_GETFD) & FD_CLOEXEC)); /* dup(2) clears it */
	d2 = p2p_fd_dupfd(fd, 200, O_CLOEXEC);
	CHECK(d2 >= 200 && refs(fd) == 4);
	CHECK(fcntl(d2, F_GETFD) & FD_CLOEXEC);
	d3 = p2p_dup(fd);
	CHECK(d3 >= 0 && refs(fd) == 5);

	/* dup3 onto an open pipe fd: the pipe end is closed, the new fd holds a reference. */
	CHECK(pipe2(pfd, O_CLOEXEC) == 0);
	CHECK(p2p_fd_dup3(fd, pfd[0], O_CLOEXEC) == pfd[0]);
	CHECK(refs(fd) == 6 && p2p_fd_is_file(pfd[0]));
	CHECK_ERR(p2p_fd_dup3(fd, fd, 0), -EINVAL);
	CHECK_ERR(p2p_fd_dup3(fd, pfd[1], O_APPEND), -EINVAL);
	/* dup3 of a plain fd onto one of ours drops what ours held. */
	CHECK(p2p_fd_dup3(pfd[1], pfd[0], O_CLOEXEC) == pfd[0]);
	CHECK(refs(fd) == 5 && !p2p_fd_is_file(pfd[0]));
	close(pfd[0]);
	close(pfd[1]);

	/* SCM_RIGHTS within the process: the kernel's new fd, then adopted. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	r = pass_fd(sv[0], sv[1], d1);
	CHECK(r >= 0);
	CHECK(refs(r) == 5); /* resolves by inode, holds nothing yet */
	CHECK(!p2p_fd_is_file(r));
	CHECK_OK(p2p_fd_adopt(r));
	CHECK(refs(r) == 6 && p2p_fd_is_file(r));
	close(sv[0]);
	close(sv[1]);

	/* A plain dup(2) resolves but holds nothing; p2p_close() of it drops nothing. */
	d4 = dup(fd);
	CHECK(d4 >= 0 && refs(d4) == 6);
	CHECK_OK(p2p_close(d4));
	CHECK(refs(fd) == 6);

	/* Close in any order: the buffer stays while anything holds it. */
	CHECK_OK(p2p_close(fd));
	CHECK_OK(p2p_close(d2));
	CHECK_OK(p2p_close(r));
	CHECK_OK(p2p_close(d3));
	CHECK(refs(d1) == 2 && e.releases == 0);
	CHECK_ERR(p2p_close(fd), -EBADF);
	CHECK_ERR(p2p_fd_ioctl(fd, 0, NULL), -EBADF);
	CHECK_OK(p2p_close(d1)); /* the last fd */
	CHECK(e.releases == 0);	 /* the mapping still holds it (as a VMA holds the file) */
	CHECK(t_count_fds() == fds0 + 2); /* the file's token and the memory's memfd */
	if (va) {
		CHECK(((uint8_t *)va)[PAGE + 1] == 0xab);
		CHECK(!t_write_faults((uint8_t *)va + PAGE, 0xcd));
		CHECK_OK(p2p_munmap(va, LEN)); /* the last reference */
	}
	CHECK(e.releases == 1);
	CHECK(t_count_fds() == fds0);
	CHECK(maps_lines() == maps0);
	{
		char text[4096];

		CHECK(p2p_dmabuf_bufinfo(text, sizeof(text)) > 0 && !strstr(text, "\tfdl\t"));
	}
}

/* Close the last fd first when nothing else holds the buffer: release at once. */
static void test_last_close(void)
{
	struct exporter e = { 0 };
	int fds0 = t_count_fds(), maps0 = maps_lines();
	struct p2p_dmabuf *buf = fx_export(&e);
	int fd;

	t_section("last close");
	if (!buf) {
		CHECK(buf);
		return;
	}
	fd = p2p_dmabuf_fd_install(buf, O_CLOEXEC);
	p2p_dmabuf_put(buf);
	CHECK(maps_lines() > maps0); /* the library's own view of the memory */
	CHECK(t_count_fds() > fds0);
	CHECK_OK(p2p_close(fd));
	CHECK(e.releases == 1);
	CHECK(t_count_fds() == fds0);
	CHECK(maps_lines() == maps0);
}

static void test_iommufd_file(void)
{
	int fds0 = t_count_fds(), fd, d;
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_destroy destroy = { .size = sizeof(destroy) };
	struct p2p_iommufd *ctx;
	void *va;

	t_section("iommufd file");
	fd = p2p_iommufd_open_fd(O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0 && p2p_fd_is_file(fd));
	CHECK_OK(p2p_fd_ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));
	CHECK(alloc.out_ioas_id != 0);
	CHECK_ERR(p2p_fd_ioctl(fd, 0x1234, NULL), -ENOTTY);
	CHECK_ERR(p2p_fd_mmap(fd, NULL, PAGE, PROT_READ, MAP_SHARED, 0, &va), -ENODEV);
	d = p2p_fd_dup(fd);
	CHECK(d >= 0);
	CHECK_OK(p2p_close(fd));
	/* The context lives in the other fd: the IOAS is still there. */
	CHECK_OK(p2p_iommufd_get(d, &ctx));
	p2p_iommufd_put(ctx);
	destroy.id = alloc.out_ioas_id;
	CHECK_OK(p2p_fd_ioctl(d, IOMMU_DESTROY, &destroy));
	CHECK_ERR(p2p_fd_ioctl(d, IOMMU_DESTROY, &destroy), -ENOENT);
	CHECK_OK(p2p_close(d));
	CHECK_ERR(p2p_iommufd_get(d, &ctx), -EBADF);
	CHECK(t_count_fds() == fds0);

	/* p2p_iommufd_open() still works, and its fd is the library's own. */
	CHECK_OK(p2p_iommufd_open(&ctx));
	CHECK_ERR(p2p_close(p2p_iommufd_fd(ctx)), -EBADF);
	CHECK_OK(p2p_fd_ioctl(p2p_iommufd_fd(ctx), IOMMU_IOAS_ALLOC, &alloc));
	p2p_iommufd_close(ctx);
	CHECK(t_count_fds() == fds0);
}

/*
 * Dispatch trusts an fd it handed out only while the fd still names that
 * file: one closed with a plain close(2) and reused by the kernel for
 * another file (ours or not), or whose position a raw lseek moved, must
 * resolve to what it names now.
 */
static void test_fd_reused(void)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	int fds0 = t_count_fds(), a, b, pipefd[2], n = 0;

	t_section("fd reused behind the library's back");
	/* dup3(2) made as a raw system call: the library does not see it. */
	a = p2p_iommufd_open_fd(O_RDWR | O_CLOEXEC);
	CHECK(a >= 0);
	CHECK_OK(p2p_fd_ioctl(a, IOMMU_IOAS_ALLOC, &alloc));
	CHECK(pipe(pipefd) == 0);
	CHECK(syscall(SYS_dup3, pipefd[0], a, O_CLOEXEC) == a);
	CHECK(write(pipefd[1], "x", 1) == 1);
	CHECK_ERR(p2p_fd_ioctl(a, IOMMU_IOAS_ALLOC, &alloc), -EINVAL);
	CHECK(ioctl(a, FIONREAD, &n) == 0 && n == 1);
	CHECK_OK(p2p_close(a)); /* the pipe's fd; the iommufd's orphaned reference goes */
	close(pipefd[0]);
	close(pipefd[1]);

	/* Now naming another of our files: the ioctl reaches that one. */
	a = p2p_iommufd_open_fd(O_RDWR | O_CLOEXEC);
	b = p2p_dma_heap_open_fd("system", O_RDONLY | O_CLOEXEC);
	CHECK(a >= 0 && b >= 0);
	CHECK_OK(p2p_fd_ioctl(a, IOMMU_IOAS_ALLOC, &alloc));
	CHECK(syscall(SYS_dup3, b, a, O_CLOEXEC) == a);
	CHECK_ERR(p2p_fd_ioctl(a, IOMMU_IOAS_ALLOC, &alloc), -ENOTTY);
	CHECK_OK(p2p_close(a));
	/* A raw lseek moves the shared position: still resolved, by inode. */
	CHECK(lseek(b, 0, SEEK_SET) == 0);
	CHECK(p2p_fd_is_file(b));
	CHECK_ERR(p2p_fd_ioctl(b, IOMMU_IOAS_ALLOC, &alloc), -ENOTTY);
	CHECK_OK(p2p_close(b));
	CHECK(t_count_fds() == fds0);
}

static void test_heap_file(void)
{
	int fds0 = t_count_fds(), hfd;
	struct dma_heap_allocation_data d = { .len = PAGE, .fd_flags = O_RDWR | O_CLOEXEC };
	struct p2p_dmabuf *buf;
	char b;

	t_section("dma-heap file");
	CHECK_ERR(p2p_dma_heap_open_fd("nope", O_RDWR), -ENOENT);
	hfd = p2p_dma_heap_open_fd("system", O_RDONLY | O_CLOEXEC);
	CHECK(hfd >= 0 && p2p_fd_is_file(hfd));
	CHECK(fcntl(hfd, F_GETFD) & FD_CLOEXEC);
	CHECK_OK(p2p_fd_ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, &d));
	CHECK_ERR(p2p_fd_ioctl(hfd, 0x1234, NULL), -ENOTTY);
	CHECK_ERR(p2p_fd_pread(hfd, &b, 1, 0), -EINVAL);
	CHECK_OK(p2p_close(hfd));
	/* The buffer lives on without its heap. */
	CHECK_OK(p2p_dmabuf_get((int)d.fd, &buf));
	CHECK(p2p_dmabuf_size(buf) == PAGE);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close((int)d.fd));
	CHECK(t_count_fds() == fds0);
}

/* The helper mode, in the exec'd program: what is left of the two fds. */
static int exec_child(int fd, int cloexec_fd)
{
	char path[64], target[256];
	struct p2p_dmabuf *buf;
	struct stat st;
	ssize_t n;
	int seals, bad = 0;

	if (fcntl(cloexec_fd, F_GETFD) != -1 || errno != EBADF) {
		fprintf(stderr, "exec-child: the FD_CLOEXEC fd %d survived exec\n", cloexec_fd);
		bad++;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	if (strncmp(target, "/memfd:dmabuf:fdl", 17)) {
		fprintf(stderr, "exec-child: fd %d is \"%s\", not the dma-buf's memfd\n", fd, target);
		bad++;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size != 0) {
		fprintf(stderr, "exec-child: fd %d is not an empty regular file\n", fd);
		bad++;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_WRITE) || !(seals & F_SEAL_GROW)) {
		fprintf(stderr, "exec-child: fd %d is not a sealed memfd (%d)\n", fd, seals);
		bad++;
	}
	if (p2p_dmabuf_get(fd, &buf) != -EINVAL || p2p_fd_ioctl(fd, 0, NULL) != -EINVAL ||
	    p2p_fd_is_file(fd)) {
		fprintf(stderr, "exec-child: p2pbuf resolves fd %d after exec\n", fd);
		bad++;
	}
	return bad ? T_EXIT_FAIL : T_EXIT_PASS;
}

static void test_exec(void)
{
	struct exporter e = { 0 };
	struct p2p_dmabuf *buf = fx_export(&e);
	char a1[16], a2[16];
	int fd, cfd, status = 0;
	pid_t pid;

	t_section("exec");
	if (!buf) {
		CHECK(buf);
		return;
	}
	fd = p2p_dmabuf_fd_install(buf, 0); /* survives exec */
	cfd = p2p_dmabuf_fd_install(buf, O_CLOEXEC);
	CHECK(fd >= 0 && cfd >= 0);
	snprintf(a1, sizeof(a1), "%d", fd);
	snprintf(a2, sizeof(a2), "%d", cfd);
	pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", "test-fd-lifetimes", "exec-child", a1, a2, (char *)NULL);
		_exit(99);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Nothing the child did touched the buffer here. */
	CHECK(refs(fd) == 3 && e.releases == 0); /* two fds and ours */
	CHECK_OK(p2p_close(fd));
	CHECK_OK(p2p_close(cfd));
	p2p_dmabuf_put(buf);
	CHECK(e.releases == 1);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "exec-child"))
		return exec_child(atoi(argv[2]), atoi(argv[3]));
	t_begin();
	test_dmabuf_lifetime();
	test_last_close();
	test_iommufd_file();
	test_fd_reused();
	test_heap_file();
	test_exec();
	return t_end();
}
