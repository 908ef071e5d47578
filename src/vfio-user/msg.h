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
