// SPDX-License-Identifier: MIT
/*
 * (e) Fd lifetimes through plain libc calls: dup, dup2, fcntl(F_DUPFD,
 * F_DUPFD_CLOEXEC), close, close_range, epoll, fork.  A dma-buf stays usable while any fd of
 * it is open; after the last close the fd count is back where it started.
 */
#include "kuapi.h"

#include <sys/epoll.h>
#include <sys/wait.h>

int main(void)
{
	struct dma_heap_allocation_data a = { .len = 64 << 10, .fd_flags = O_RDWR | O_CLOEXEC };
	int heap = open_or_skip("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	int base, d1, d2, d3, st;
	uint8_t *p;
	pid_t pid;

	CHECK(heap >= 0, "open heap");
	/* A first buffer and close, so that the library's own fds exist before counting. */
	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a) == 0 && close((int)a.fd) == 0, "warm-up");
	close(heap);
	base = count_fds();
	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	a.fd = 0; /* an input of 0, or EINVAL */
	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a) == 0, "ALLOC");
	close(heap);
	d1 = dup((int)a.fd);
	d2 = fcntl((int)a.fd, F_DUPFD_CLOEXEC, 100);
	d3 = dup2((int)a.fd, 90);
	CHECK(d1 >= 0 && d2 >= 100 && d3 == 90, "dup %d, F_DUPFD_CLOEXEC %d, dup2 %d", d1, d2, d3);
	CHECK(fcntl(d2, F_GETFD) == FD_CLOEXEC && fcntl(d1, F_GETFD) == 0, "CLOEXEC bits");
	{
		/* epoll: a dma-buf polls (ready, no fence pending); a dma-heap fd does not (EPERM). */
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u64 = 0x5eed };
		struct epoll_event got[2] = { 0 };
		int ep = epoll_create1(EPOLL_CLOEXEC), h = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);

		CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, d1, &ev) == 0, "epoll_ctl ADD of a dma-buf");
		CHECK(epoll_wait(ep, got, 2, 1000) == 1 && got[0].data.u64 == 0x5eed &&
			      (got[0].events & (EPOLLIN | EPOLLOUT)) == (EPOLLIN | EPOLLOUT),
		      "epoll_wait: the dma-buf is ready (events %#x)", got[0].events);
		CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, d1, NULL) == 0, "epoll_ctl DEL");
		CHECK(epoll_wait(ep, got, 2, 0) == 0, "nothing after DEL");
		CHECK(h >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, h, &ev) < 0 && errno == EPERM,
		      "epoll_ctl ADD of a dma-heap fd: EPERM");
		CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, d2, &ev) == 0, "epoll_ctl ADD of a dup");
		close(h);
		close(ep);
	}
	CHECK(close((int)a.fd) == 0 && close(d1) == 0 && close(d2) == 0, "close three");
	p = mmap(NULL, a.len, PROT_READ | PROT_WRITE, MAP_SHARED, d3, 0);
	CHECK(p != MAP_FAILED, "mmap through the last fd");
	if (p != MAP_FAILED)
		memset(p, 0x3c, a.len);
	pid = fork();
	if (pid == 0) {
		/* The child shares the mapping and has its own fd. */
		uint8_t *q = mmap(NULL, a.len, PROT_READ, MAP_SHARED, d3, 0);

		_exit(p != MAP_FAILED && p[10] == 0x3c && q != MAP_FAILED && q[a.len - 1] == 0x3c ? 0 : 1);
	}
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "child read the buffer");
	CHECK(close(d3) == 0, "last close");
	CHECK(close(d3) < 0 && errno == EBADF, "close twice");
	if (p != MAP_FAILED) {
		CHECK(p[5] == 0x3c, "the mapping outlives the fds");
		munmap(p, a.len);
	}
	CHECK(count_fds() == base, "fds: %d before the buffer, %d after its last close and munmap",
	      base, count_fds());
	{
		/* close_range(2) of a door fd: its number then works for whatever comes next. */
		int io = open("/dev/iommu", O_RDWR | O_CLOEXEC), pfd[2] = { -1, -1 }, n = -1;

		CHECK(io >= 0 && close_range((unsigned int)io, (unsigned int)io, 0) == 0,
		      "close_range of /dev/iommu");
		CHECK(pipe(pfd) == 0, "pipe");
		CHECK(ioctl(pfd[0], FIONREAD, &n) == 0 && n == 0,
		      "FIONREAD on a pipe that may reuse the number (%d, %d): %d", io, pfd[0], n);
		close(pfd[0]);
		close(pfd[1]);
	}
	return finish("door-fds");
}
