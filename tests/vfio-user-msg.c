// SPDX-License-Identifier: MIT
/*
 * The vfio-user framing's buffered receive (src/vfio-user/msg.c,
 * vu_msg_recv_buffered()): messages read ahead stay whole and in order,
 * each message gets exactly the fds it was sent with (however the reads
 * group the messages), too many fds drop that message only, and the
 * stream's end and a broken header are reported as vu_msg_recv() does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "vfio-user/msg.h"

#define MAX (1u << 20)

/* Send one message (one sendmsg) of @len bytes: header, then bytes @id, @id+1, ... */
static void send_msg(int s, uint16_t id, size_t len, const int *fds, unsigned int nfds)
{
	uint8_t *buf = malloc(len);
	struct vfio_user_header h = { .msg_id = id, .cmd = 1, .msg_size = (uint32_t)len,
				      .flags = VFIO_USER_F_TYPE_COMMAND };
	size_t done = 0;

	memcpy(buf, &h, sizeof(h));
	for (size_t i = sizeof(h); i < len; i++)
		buf[i] = (uint8_t)(id + i);
	/* The fds go with the first part; a large message may take several sends. */
	while (done < len) {
		ssize_t n = t_sendmsg_fds(s, buf + done, len - done, done ? NULL : fds,
					  done ? 0 : nfds);

		if (n <= 0)
			break;
		done += (size_t)n;
	}
	CHECK(done == len);
	free(buf);
}

/* A memfd whose size (@tag pages) names it. */
static int tagged_fd(unsigned int tag)
{
	int fd = memfd_create("p2pbuf-msg-test", MFD_CLOEXEC);

	CHECK(fd >= 0 && !ftruncate(fd, (off_t)tag * 4096));
	return fd;
}

static unsigned int fd_tag(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? ~0u : (unsigned int)(st.st_size / 4096);
}

/* Receive one message and check it: @id, @len, its payload, fds tagged @tag0, @tag0+1, ... */
static void expect(int s, struct vu_rbuf *rb, uint16_t id, size_t len, unsigned int nfds,
		   unsigned int tag0)
{
	struct vu_msg m;
	int ret = vu_msg_recv_buffered(s, rb, MAX, &m);
	size_t bad = 0;

	CHECK_OK(ret);
	if (ret)
		return;
	CHECK(m.hdr.msg_id == id && m.size == len && m.hdr.msg_size == len);
	for (size_t i = sizeof(m.hdr); i < len && i < m.size; i++)
		bad += m.buf[i] != (uint8_t)(id + i);
	CHECK(!bad);
	CHECK(m.nr_fds == nfds);
	for (unsigned int i = 0; i < m.nr_fds && i < nfds; i++)
		CHECK(fd_tag(m.fds[i]) == tag0 + i);
	if (m.hdr.msg_id != id || m.nr_fds != nfds)
		fprintf(stderr, "got message %u with %u fds, want %u with %u\n", m.hdr.msg_id,
			m.nr_fds, id, nfds);
	vu_msg_release(&m);
}

static void pair(int sv[2])
{
	CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) ? -errno : 0);
}

/* Messages queued before the first read, fds on some: each gets its own. */
static void test_queued(void)
{
	struct vu_rbuf rb;
	int sv[2], f[4];

	t_section("queued messages, fds on some, read ahead");
	pair(sv);
	vu_rbuf_init(&rb);
	for (int i = 0; i < 4; i++)
		f[i] = tagged_fd(10 + (unsigned int)i);
	send_msg(sv[0], 1, 40, NULL, 0);
	send_msg(sv[0], 2, 24, f, 2);	    /* tags 10, 11 */
	send_msg(sv[0], 3, 16, NULL, 0);
	send_msg(sv[0], 4, 300, f + 2, 1); /* tag 12 */
	send_msg(sv[0], 5, 17, f + 3, 1);  /* tag 13 */
	send_msg(sv[0], 6, 5000, NULL, 0);
	expect(sv[1], &rb, 1, 40, 0, 0);
	expect(sv[1], &rb, 2, 24, 2, 10);
	expect(sv[1], &rb, 3, 16, 0, 0);
	expect(sv[1], &rb, 4, 300, 1, 12);
	expect(sv[1], &rb, 5, 17, 1, 13);
	expect(sv[1], &rb, 6, 5000, 0, 0);
	for (int i = 0; i < 4; i++)
		close(f[i]);
	vu_rbuf_release(&rb);
	close(sv[0]);
	close(sv[1]);
}

struct large_args {
	int s, f, g;
};

static void *large_sender(void *p)
{
	struct large_args *x = p;

	send_msg(x->s, 1, 20, NULL, 0);
	send_msg(x->s, 2, 300000, &x->f, 1);
	send_msg(x->s, 3, 100, NULL, 0);
	send_msg(x->s, 4, 700000, &x->g, 1);
	send_msg(x->s, 5, 16, NULL, 0);
	return NULL;
}

/* Large messages (past the buffer's first size), with fds, between small ones. */
static void test_large(void)
{
	struct vu_rbuf rb;
	int sv[2], f = tagged_fd(7), g = tagged_fd(8);
	pthread_t t;

	t_section("large messages with fds between small ones");
	pair(sv);
	vu_rbuf_init(&rb);
	/* More than the socket buffer holds: a thread sends while we read. */
	struct large_args a = { sv[0], f, g };

	pthread_create(&t, NULL, large_sender, &a);
	expect(sv[1], &rb, 1, 20, 0, 0);
	expect(sv[1], &rb, 2, 300000, 1, 7);
	expect(sv[1], &rb, 3, 100, 0, 0);
	expect(sv[1], &rb, 4, 700000, 1, 8);
	expect(sv[1], &rb, 5, 16, 0, 0);
	pthread_join(t, NULL);
	close(f);
	close(g);
	vu_rbuf_release(&rb);
	close(sv[0]);
	close(sv[1]);
}

struct pieces_args {
	int s;
	const void *h;
	const uint8_t *p;
};

/* The rest of the header, then the payload, each after a pause. */
static void *pieces_rest(void *p)
{
	struct pieces_args *x = p;

	usleep(20000);
	CHECK(write(x->s, (const uint8_t *)x->h + 10, 6) == 6);
	usleep(20000);
	CHECK(write(x->s, x->p, 48) == 48);
	return NULL;
}

/* A message in pieces (header, then its payload later). */
static void test_pieces(void)
{
	struct vfio_user_header h = { .msg_id = 9, .cmd = 1, .msg_size = 64,
				      .flags = VFIO_USER_F_TYPE_COMMAND };
	uint8_t pay[48];
	struct vu_rbuf rb;
	int sv[2];
	pthread_t t;

	t_section("a message written in pieces");
	pair(sv);
	vu_rbuf_init(&rb);
	for (size_t i = 0; i < sizeof(pay); i++)
		pay[i] = (uint8_t)(9 + sizeof(h) + i);
	CHECK(write(sv[0], &h, 10) == 10);
	struct pieces_args a = { sv[0], &h, pay };

	pthread_create(&t, NULL, pieces_rest, &a);
	expect(sv[1], &rb, 9, 64, 0, 0);
	pthread_join(t, NULL);
	vu_rbuf_release(&rb);
	close(sv[0]);
	close(sv[1]);
}

/* More fds than a message may carry: that message is dropped, the next one is whole. */
static void test_too_many(void)
{
	struct vu_rbuf rb;
	struct vu_msg m;
	int sv[2], f[9], ret, before;

	t_section("too many fds: that message only");
	pair(sv);
	vu_rbuf_init(&rb);
	for (int i = 0; i < 9; i++)
		f[i] = tagged_fd(20);
	before = t_count_fds();
	send_msg(sv[0], 1, 32, f, 9);
	send_msg(sv[0], 2, 24, f, 1);
	ret = vu_msg_recv_buffered(sv[1], &rb, MAX, &m);
	CHECK_ERR(ret, -ETOOMANYREFS);
	if (ret == -ETOOMANYREFS)
		CHECK(m.hdr.msg_id == 1 && !m.buf && !m.nr_fds);
	expect(sv[1], &rb, 2, 24, 1, 20);
	CHECK(t_count_fds() == before); /* the dropped ones are closed */
	for (int i = 0; i < 9; i++)
		close(f[i]);
	vu_rbuf_release(&rb);
	close(sv[0]);
	close(sv[1]);
}

/* The end: whole messages first, then ECONNRESET; a broken header; fds left closed. */
static void test_end(void)
{
	struct vfio_user_header bad = { .msg_id = 3, .msg_size = 8,
					.flags = VFIO_USER_F_TYPE_COMMAND };
	struct vu_rbuf rb;
	struct vu_msg m;
	int sv[2], f = tagged_fd(30), before;

	t_section("end of stream, broken header, release");
	pair(sv);
	vu_rbuf_init(&rb);
	send_msg(sv[0], 1, 40, NULL, 0);
	send_msg(sv[0], 2, 40, NULL, 0);
	CHECK(write(sv[0], "\x03\x00\x01\x00", 4) == 4); /* a header cut short */
	shutdown(sv[0], SHUT_WR);
	expect(sv[1], &rb, 1, 40, 0, 0);
	expect(sv[1], &rb, 2, 40, 0, 0);
	CHECK_ERR(vu_msg_recv_buffered(sv[1], &rb, MAX, &m), -ECONNRESET);
	vu_rbuf_release(&rb);
	close(sv[0]);
	close(sv[1]);

	pair(sv);
	vu_rbuf_init(&rb);
	CHECK(write(sv[0], &bad, sizeof(bad)) == sizeof(bad));
	CHECK_ERR(vu_msg_recv_buffered(sv[1], &rb, MAX, &m), -EBADMSG);
	vu_rbuf_release(&rb);
	close(sv[0]);
	close(sv[1]);

	/* Read ahead with its fds, never returned: released with the buffer. */
	pair(sv);
	vu_rbuf_init(&rb);
	before = t_count_fds();
	send_msg(sv[0], 1, 20, NULL, 0);
	send_msg(sv[0], 2, 20, &f, 1);
	expect(sv[1], &rb, 1, 20, 0, 0);
	CHECK(t_count_fds() == before + 1); /* message 2's fd, read ahead */
	vu_rbuf_release(&rb);
	CHECK(t_count_fds() == before);
	close(f);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	t_begin();
	test_queued();
	test_large();
	test_pieces();
	test_too_many();
	test_end();
	return t_end();
}
