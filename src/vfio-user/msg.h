/* SPDX-License-Identifier: MIT */
/*
 * vfio-user framing, shared by the server and the client: whole messages
 * with their SCM_RIGHTS fds over a Unix stream socket, and the pure header
 * check the fuzz target calls without a socket.
 */
#ifndef P2PBUF_VFIO_USER_MSG_H
#define P2PBUF_VFIO_USER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "proto.h"

/* Most fds one message may carry (what we offer as max_msg_fds). */
#define VU_MAX_FDS 8

/**
 * struct vu_msg - one received message
 * @buf:    the whole message (header included), malloc'd, @size bytes
 * @size:   msg_size
 * @fds:    the fds received with it (@nr_fds of them, owned by the message)
 */
struct vu_msg {
	struct vfio_user_header hdr;
	uint8_t *buf;
	size_t size;
	int fds[VU_MAX_FDS];
	unsigned int nr_fds;
};

/**
 * vu_hdr_check() - validate a header (pure)
 * @hdr: the 16 bytes
 * @max: largest msg_size accepted
 *
 * Return: 0, -EBADMSG (msg_size below 16, a type other than command or
 * reply, unknown flag bits, error flag on a command), -EMSGSIZE (msg_size
 * above @max).
 */
int vu_hdr_check(const struct vfio_user_header *hdr, size_t max);

/**
 * vu_msg_parse() - a message from a buffer (pure; the fuzz target's entry)
 * @data, @len: bytes; the message must be exactly @len bytes
 * @max: largest msg_size accepted
 * @msg: filled with a malloc'd copy (no fds)
 *
 * Return: 0, vu_hdr_check()'s errors, -EBADMSG (@len differs from
 * msg_size), -ENOMEM.
 */
int vu_msg_parse(const void *data, size_t len, size_t max, struct vu_msg *msg);

/**
 * vu_msg_recv() - receive one whole message and its fds
 * @sock: a connected Unix stream socket (blocking)
 * @max: largest msg_size accepted
 * @msg: the message; release with vu_msg_release()
 *
 * Reads exactly msg_size bytes, never more.  On every error the fds that
 * arrived are closed and nothing is allocated.
 *
 * Return: 0, -ECONNRESET (EOF or reset, also in the middle of a message),
 * -EBADMSG / -EMSGSIZE (bad header: the stream cannot be trusted any more),
 * -ETOOMANYREFS (more fds than VU_MAX_FDS were sent: the message was read
 * and dropped, the stream is still in sync), -ENOMEM, other -errno of recvmsg.
 */
int vu_msg_recv(int sock, size_t max, struct vu_msg *msg);

/**
 * struct vu_rbuf - a connection's read buffer (vu_msg_recv_buffered())
 *
 * Bytes read ahead of the message being returned, so that a message costs
 * one recvmsg(2), not two (header, then payload), and messages queued
 * together come in one.  The fds of a read belong to the last message that
 * starts in it: the kernel ends a read of a Unix stream socket after the
 * first segment that carries fds, and a sender's sendmsg() of one message
 * is one such segment (its first).  Used by one reader at a time (the
 * connection's read role); nothing else may read the socket, and poll(2)
 * on it says nothing of what is buffered.
 */
struct vu_rbuf {
	uint8_t *buf;
	size_t cap, head, tail; /* [head, tail) read, not returned yet */
	uint64_t base;		/* stream offset of buf[0] */
	struct {
		uint64_t at; /* stream offset of the message they came with */
		int fds[VU_MAX_FDS];
		unsigned int nr;
		bool trunc;
	} fdq[4];
	unsigned int nr_fdq;
};

/** vu_rbuf_init() - an empty read buffer (no allocation until the first read) */
void vu_rbuf_init(struct vu_rbuf *rb);

/** vu_rbuf_release() - free it and close the fds of messages not returned */
void vu_rbuf_release(struct vu_rbuf *rb);

/**
 * vu_msg_recv_buffered() - vu_msg_recv() through @rb
 *
 * As vu_msg_recv(), with the same errors, but it may read past the message
 * (what follows stays in @rb for the next call); a message already whole
 * in @rb is returned without a system call.  -EPROTO if the fds of a read
 * cannot be matched to a message (more than 4 fd-carrying messages
 * pending).
 */
int vu_msg_recv_buffered(int sock, struct vu_rbuf *rb, size_t max, struct vu_msg *msg);

/** vu_msg_release() - free the buffer and close the fds not taken (set to -1) */
void vu_msg_release(struct vu_msg *msg);

/**
 * vu_msg_sendv() - send one message: @hdr (msg_size set here) + @iov
 * @fds: @nr_fds fds to pass (SCM_RIGHTS), at most VU_MAX_FDS
 *
 * MSG_NOSIGNAL, retries EINTR and short writes.
 * Return: 0 or -errno (-EPIPE, -ECONNRESET when the peer is gone).
 */
int vu_msg_sendv(int sock, struct vfio_user_header *hdr, const struct iovec *iov, int iovcnt,
		 const int *fds, unsigned int nr_fds);

/** vu_msg_send() - vu_msg_sendv() with one payload buffer (may be NULL with @len 0) */
int vu_msg_send(int sock, struct vfio_user_header *hdr, const void *payload, size_t len,
		const int *fds, unsigned int nr_fds);

/** vu_send_error() - an error reply (header only) to @req */
int vu_send_error(int sock, const struct vfio_user_header *req, int err);

/**
 * vu_token_recv() - take one datagram off an export's token (the server's end)
 * @sock: the server's end of the token socketpair (SOCK_SEQPACKET)
 * @fd:   on success, the stream socket the holder attached with
 *
 * Never blocks (MSG_DONTWAIT), never writes to @sock.  Anything but a
 * struct vfio_user_p2p_token_attach with the right magic and version and
 * exactly one fd, an AF_UNIX SOCK_STREAM socket, is junk: its fds are
 * closed.
 * Return: 0, -EAGAIN (nothing queued), -EINVAL (junk, dropped), -errno.
 */
int vu_token_recv(int sock, int *fd);

/** vu_deadline_in() - *@ts = CLOCK_MONOTONIC now + @ns (for pthread_cond_timedwait on that clock) */
void vu_deadline_in(struct timespec *ts, uint64_t ns);

/** vu_ts_before() - is @a before @b? */
bool vu_ts_before(const struct timespec *a, const struct timespec *b);

#endif
