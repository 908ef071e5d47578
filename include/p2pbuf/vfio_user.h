/* SPDX-License-Identifier: MIT */
/*
 * vfio-user: p2pbuf PCI functions served to other processes (server), and
 * vfio-user servers used as p2pbuf PCI functions (client).  The wire format
 * is QEMU's docs/interop/vfio-user.rst (protocol 0.1, as libvfio-user
 * speaks it) plus p2pbuf's extension (docs/vfio-user.md): dma-buf export of
 * BAR ranges and revocation across processes.
 */
#ifndef P2PBUF_VFIO_USER_H
#define P2PBUF_VFIO_USER_H

#include <stdint.h>

#include <p2pbuf/common.h>
#include <p2pbuf/vfio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------- */
/* Server                                                                  */

struct p2p_vfio_user_server;

/**
 * struct p2p_vfio_user_server_info - arguments of p2p_vfio_user_server_create()
 * @argsz: sizeof(struct p2p_vfio_user_server_info)
 * @flags: 0
 * @revoke_timeout_ms: how long a revoke waits for each client's ack before
 *	it disconnects the client (0: 1000)
 * @max_clients: connections per device (0: 64); more are accepted and closed
 */
struct p2p_vfio_user_server_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t revoke_timeout_ms;
	uint32_t max_clients;
};

/**
 * p2p_vfio_user_server_create() - a server with no device yet
 * Return: 0, -EINVAL (bad @info), -ENOMEM.
 */
P2P_API int p2p_vfio_user_server_create(const struct p2p_vfio_user_server_info *info,
					struct p2p_vfio_user_server **out);

/**
 * p2p_vfio_user_server_add() - serve @dev on a new Unix socket at @path
 *
 * The server opens @dev (its own file, which keeps the function alive and
 * its state across client reconnects, as the specification asks), gives it
 * one IO address space that every client's DMA_MAPs go to, binds and listens
 * on @path (an existing socket file there is an error) and accepts clients
 * on its own thread; each client gets its own p2p_vfio_device_open().
 *
 * Return: 0, -EINVAL (NULL, path too long), -EEXIST (@dev already served),
 * -EADDRINUSE, errors of socket(2)/bind(2), p2p_vfio_device_open(), -ENOMEM.
 */
P2P_API int p2p_vfio_user_server_add(struct p2p_vfio_user_server *srv, struct p2p_pci_dev *dev,
				     const char *path);

/**
 * p2p_vfio_user_server_add_fd() - serve one already connected socket
 * @dev: a function served with p2p_vfio_user_server_add() (or added here
 *	first, with no listening socket)
 * @fd: a connected Unix stream socket, owned by the server from now on
 *	(also on failure)
 *
 * What --fd=FDNUM of the specification's backend conventions needs, and how
 * tests and the fuzz target talk to the dispatcher without a path.
 * Return: 0 or -errno.
 */
P2P_API int p2p_vfio_user_server_add_fd(struct p2p_vfio_user_server *srv, struct p2p_pci_dev *dev,
					int fd);

/** p2p_vfio_user_server_nr_clients() - connected clients, every device */
P2P_API unsigned int p2p_vfio_user_server_nr_clients(struct p2p_vfio_user_server *srv);

/**
 * p2p_vfio_user_server_destroy() - stop: close the listening sockets and
 * unlink their paths, disconnect every client (dropping all it held), wait
 * for their threads, close the devices and drop the references.
 */
P2P_API void p2p_vfio_user_server_destroy(struct p2p_vfio_user_server *srv);

#ifdef __cplusplus
}
#endif
#endif
