// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the vfio-user server's framing and dispatcher
 * (src/vfio-user/msg.c, server.c).
 *
 * Each input is a byte stream a client sends on a fresh connection (a
 * socketpair handed to p2p_vfio_user_server_add_fd()) to a GPU-like
 * function and a copy engine; the target reads every reply until the server
 * closes the connection after EOF, then waits for the client's teardown.
 * The input is also run through vu_msg_parse() message by message (the pure
 * parser).  Checks beyond "no crash, no leak": every reply the server sends
 * is well framed (msg_size >= 16, reply type, error replies header-only),
 * and the server's client count returns to 0 (nothing held).
 * Corpus: fuzz/corpus/vfio-user/.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "vfio-user/msg.h"

static struct p2p_vfio_user_server *srv;
static struct p2p_pci_dev *gpu, *ce;

static void setup(void)
{
	struct p2p_pci_dev_info info = {
		.argsz = sizeof(info),
		.name = "0000:0f:00.0",
		.vendor_id = 0x1b36,
		.device_id = 0x0110,
		.class_code = 0x030200,
		.group = 15,
		.bars = { [0] = { .size = 16384 },
			  [2] = { .size = 1 << 20, .flags = P2P_BAR_MEM64 | P2P_BAR_PREFETCH } },
	};
	struct p2p_vfio_user_server_info si = { .argsz = sizeof(si), .revoke_timeout_ms = 50 };

	if (p2p_pci_dev_create(&info, &gpu) || p2p_copy_engine_create("0000:0e:00.0", NULL, 14, &ce) ||
	    p2p_vfio_user_server_create(&si, &srv))
		abort();
}

/* Check the framing of what the server sent: whole messages, replies only. */
static size_t check_replies(const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (len - off >= sizeof(struct vfio_user_header)) {
		struct vfio_user_header h;

		memcpy(&h, buf + off, sizeof(h));
		assert(h.msg_size >= sizeof(h));
		if (h.msg_size > len - off)
			break;
		assert((h.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_TYPE_REPLY ||
		       h.cmd == VFIO_USER_P2P_REVOKE);
		if (h.flags & VFIO_USER_F_ERROR)
			assert(h.msg_size == sizeof(h) && h.error_no);
		off += h.msg_size;
	}
	return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t in[1 << 16];
	size_t sent = 0, got = 0, checked = 0;
	int sv[2];

	if (!srv)
		setup();
	if (size > 65536 || size < 1)
		return -1;

	/* The pure parser over the stream, message by message. */
	for (size_t off = 0; size - off >= sizeof(struct vfio_user_header);) {
		struct vfio_user_header h;
		struct vu_msg m;

		memcpy(&h, data + off, sizeof(h));
		if (h.msg_size < sizeof(h) || h.msg_size > size - off)
			break;
		if (vu_msg_parse(data + off, h.msg_size, 1 << 20, &m) == 0)
			vu_msg_release(&m);
		off += h.msg_size;
	}

	/* The first byte picks the device. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	{
		int ret = p2p_vfio_user_server_add_fd(srv, (data[0] & 1) ? ce : gpu, sv[1]);

		if (ret) {
			fprintf(stderr, "add_fd: %s\n", p2p_strerror(ret));
			abort();
		}
	}
	data++;
	size--;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	if (!size)
		shutdown(sv[0], SHUT_WR);
	for (;;) {
		struct pollfd p = { .fd = sv[0], .events = POLLIN | (sent < size ? POLLOUT : 0) };

		if (poll(&p, 1, 5000) != 1)
			abort(); /* the server hung */
		if ((p.revents & POLLOUT) && sent < size) {
			ssize_t w = send(sv[0], data + sent, size - sent, MSG_NOSIGNAL);

			if (w > 0)
				sent += (size_t)w;
			else if (w < 0 && errno != EAGAIN)
				sent = size; /* the server closed: stop sending */
			if (sent == size)
				shutdown(sv[0], SHUT_WR);
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = recv(sv[0], in + got, sizeof(in) - got, 0);

			if (r == 0 || (r < 0 && errno != EAGAIN))
				break;
			if (r > 0) {
				got += (size_t)r;
				checked = check_replies(in, got);
				memmove(in, in + checked, got - checked);
				got -= checked;
			}
		}
	}
	close(sv[0]);
	/* The client's teardown drops everything it held. */
	while (p2p_vfio_user_server_nr_clients(srv))
		usleep(100);
	return 0;
}
