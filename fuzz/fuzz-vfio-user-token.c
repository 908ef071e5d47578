// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: what a holder of an export's token can send on it
 * (vu_token_recv(), src/vfio-user/msg.c, the server's token thread's only
 * reader of it).
 *
 * An input is a list of datagrams: one byte of fds (bits 0-1: how many,
 * 0-3; bit 2: a stream socket, else a datagram socket or a pipe end), one
 * byte of length, then that many bytes.  Each goes on a fresh
 * SOCK_SEQPACKET socketpair (the token), and vu_token_recv() takes
 * datagrams off the server's end until -EAGAIN.  Checks: it never blocks,
 * returns 0 only for a well-formed attach (the fd it hands out is an
 * AF_UNIX SOCK_STREAM socket), drops everything else, and the process has
 * the fds it had before the input (nothing leaked, nothing closed twice).
 * Corpus: fuzz/corpus/vfio-user-token/.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vfio-user/msg.h"

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void send_one(int s, const uint8_t *p, size_t len, unsigned int nfd, bool stream)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 3)];
		struct cmsghdr a;
	} u;
	struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[3], sv[2];

	for (unsigned int i = 0; i < nfd; i++) {
		if (stream && !socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			close(sv[1]);
			fds[i] = sv[0];
		} else if (!pipe2(sv, O_CLOEXEC)) {
			close(sv[1]);
			fds[i] = sv[0];
		} else {
			nfd = i;
			break;
		}
	}
	if (nfd) {
		memset(u.b, 0, sizeof(u.b));
		mh.msg_control = u.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfd);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfd);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfd);
	}
	(void)sendmsg(s, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	for (unsigned int i = 0; i < nfd; i++)
		close(fds[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int before = count_fds(), sv[2];
	size_t off = 0;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return 0;
	while (size - off >= 2) {
		unsigned int f = data[off], len = data[off + 1];

		off += 2;
		if (len > size - off)
			len = (unsigned int)(size - off);
		send_one(sv[1], data + off, len, f & 3, f & 4);
		off += len;
	}
	for (int n = 0; n < 1000; n++) {
		int fd = -1, type = 0, ret = vu_token_recv(sv[0], &fd);
		socklen_t sl = sizeof(type);

		if (ret == -EAGAIN)
			break;
		assert(ret == 0 || ret == -EINVAL);
		if (!ret) {
			assert(!getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) && type == SOCK_STREAM);
			close(fd);
		}
	}
	close(sv[0]);
	close(sv[1]);
	assert(count_fds() == before);
	return 0;
}
