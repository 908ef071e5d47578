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

#include <stdbool.h>
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
 * one IO address space that every client's DMA_MAPs go to, listens on @path
 * (an existing file there is an error) and accepts clients on its own
 * thread; each client gets its own p2p_vfio_device_open().  @path appears
 * only once it takes connections (the socket listens under a temporary name
 * beside it first), so a client may connect as soon as it sees the file.
 *
 * Return: 0, -EINVAL (NULL, path too long), -EEXIST (@dev already served),
 * -EADDRINUSE, errors of socket(2)/bind(2)/link(2), p2p_vfio_device_open(),
 * -ENOMEM.
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

/* ---------------------------------------------------------------------- */
/* Client                                                                  */

struct p2p_vfio_user_client;

/** p2p_vfio_user_connect_info flags */
enum {
	P2P_VFIO_USER_NO_P2PBUF = 1u << 0, /* speak the specification only: no extension */
	P2P_VFIO_USER_TRAP_BARS = 1u << 1, /* map no region fd: every BAR access is a
					      REGION_READ/WRITE (no mmap, no dma-buf) */
	P2P_VFIO_USER_NO_TWIN = 1u << 2,   /* do not offer twin_socket: the server's
					      commands share the one socket */
};

/**
 * struct p2p_vfio_user_connect_info - arguments of p2p_vfio_user_connect()
 * @argsz: sizeof(struct p2p_vfio_user_connect_info)
 * @flags: P2P_VFIO_USER_* flags
 * @name: BDF of the local function; NULL: the socket's file name if it is a
 *	BDF (p2pbuf serve names its sockets so), else 0000:7f:NN.0
 * @group: IOMMU group of the local function; 0: one from 900 up
 * @timeout_ms: longest wait for any reply (0: 5000); a server that does
 *	not answer in time is treated as dead
 */
struct p2p_vfio_user_connect_info {
	uint32_t argsz;
	uint32_t flags;
	const char *name;
	uint32_t group;
	uint32_t timeout_ms;
};

/**
 * p2p_vfio_user_connect() - a PCI function backed by a vfio-user server
 * @socket_path: the server's Unix socket
 * @info: may be NULL (defaults)
 * @out: the client; p2p_vfio_user_disconnect() ends it
 *
 * Negotiates VERSION (asking for the "p2pbuf" capability unless
 * P2P_VFIO_USER_NO_P2PBUF), reads the device, its regions and its config
 * space identity, and builds a struct p2p_pci_dev (p2p_vfio_user_client_pci())
 * usable as a local one: BARs the server gave an fd for are backed by that
 * memory (mmaps, dma-bufs, IOAS imports and revokes are the core's); the
 * others are trapped, each access a REGION_READ/WRITE.  Config writes,
 * VFIO_DEVICE_RESET and SET_IRQS (eventfds) are forwarded; the IOAS the
 * function is attached to is mirrored with DMA_MAP/UNMAP (memfds with
 * their fd, other memory without: the server's DMA_READ/WRITE are served
 * from the IOAS).  When the server dies or the socket breaks, the function
 * behaves as removed: its dma-bufs are revoked for good, forwarded
 * operations fail with -ENODEV.  Every wait is bounded by @timeout_ms.
 *
 * Return: 0, -EINVAL (bad @info, path too long, not a PCI device),
 * -ECONNREFUSED / -ENOENT (errors of connect(2)), -EPROTO (bad replies),
 * -ETIMEDOUT, -ENOMEM, or what p2p_pci_dev_create() returns.
 */
P2P_API int p2p_vfio_user_connect(const char *socket_path,
				  const struct p2p_vfio_user_connect_info *info,
				  struct p2p_vfio_user_client **out);
/** p2p_vfio_user_client_pci() - the function (borrowed; p2p_pci_dev_get()-free: take none) */
P2P_API struct p2p_pci_dev *p2p_vfio_user_client_pci(struct p2p_vfio_user_client *c);
/** p2p_vfio_user_client_p2pbuf() - the server granted the p2pbuf extension */
P2P_API bool p2p_vfio_user_client_p2pbuf(struct p2p_vfio_user_client *c);
/** p2p_vfio_user_client_alive() - the connection still works */
P2P_API bool p2p_vfio_user_client_alive(struct p2p_vfio_user_client *c);

/**
 * p2p_vfio_user_dmabuf_export() - a dma-buf of BAR ranges of the remote device
 * @bar: region index; @ranges, @nr: (offset, length) in the BAR
 * @open_flags: O_CLOEXEC and the access mode
 *
 * VFIO_DEVICE_FEATURE_DMA_BUF over the wire (the p2pbuf extension): the
 * server validates it as the kernel does and sends the memory's fd; the
 * result is a local p2pbuf dma-buf over that memory (mmap, IOAS import,
 * io_uring, passing it on), revoked locally (CPU zap, importers drained)
 * when the server says its export is revoked, before the client acks.
 *
 * The fd is the export's token (a socket the server watches, see
 * docs/vfio-user.md): passed to another process (SCM_RIGHTS), the
 * library there resolves it to the same memory with its own connection
 * and revocation; the server keeps the export until the last copy of the
 * fd is closed in every process.
 *
 * Return: a new dma-buf fd (close with p2p_close()), -EOPNOTSUPP (the
 * extension was not negotiated), -ENODEV (the server is gone), or the
 * server's errno (the kernel's for the ioctl).
 */
P2P_API int p2p_vfio_user_dmabuf_export(struct p2p_vfio_user_client *c, uint32_t bar,
					const struct vfio_region_dma_range *ranges, uint32_t nr,
					uint32_t open_flags);

/**
 * p2p_vfio_user_disconnect() - close the connection and drop the caller's
 * reference to the function
 *
 * The function then behaves as removed (as after a server death); open
 * files, mappings and dma-bufs of it keep it alive until they go.
 */
P2P_API void p2p_vfio_user_disconnect(struct p2p_vfio_user_client *c);

#ifdef __cplusplus
}
#endif
#endif
