/* SPDX-License-Identifier: MIT */
/*
 * vfio-user wire format (protocol 0.1 as QEMU's docs/interop/vfio-user.rst
 * specifies it and libvfio-user speaks it), plus p2pbuf's extension
 * (dma-buf export of BAR ranges and cross-process revocation).
 *
 * Everything is host-endian and packed; every structure's size is checked
 * with _Static_assert.  Names follow the specification (vfio_user_* /
 * VFIO_USER_*).  The VFIO structures the specification borrows from
 * <linux/vfio.h> are given their own vfio_user_ names here so that this
 * header can be included next to <linux/vfio.h> without clashes.
 *
 * Shared by the server (src/vfio-user/server.c) and the client
 * (src/vfio-user/client.c); keep it stable.
 */
#ifndef P2PBUF_VFIO_USER_PROTO_H
#define P2PBUF_VFIO_USER_PROTO_H

#include <stdint.h>

#define VFIO_USER_PACKED __attribute__((packed))

/* ---- Protocol version -------------------------------------------------- */

#define VFIO_USER_MAJOR 0
#define VFIO_USER_MINOR 2 /* highest minor we speak (libvfio-user answers min(client, 2)) */

/* ---- Commands (spec "Commands") ----------------------------------------- */

enum vfio_user_command {
	VFIO_USER_VERSION = 1,
	VFIO_USER_DMA_MAP = 2,
	VFIO_USER_DMA_UNMAP = 3,
	VFIO_USER_DEVICE_GET_INFO = 4,
	VFIO_USER_DEVICE_GET_REGION_INFO = 5,
	VFIO_USER_DEVICE_GET_REGION_IO_FDS = 6,
	VFIO_USER_DEVICE_GET_IRQ_INFO = 7,
	VFIO_USER_DEVICE_SET_IRQS = 8,
	VFIO_USER_REGION_READ = 9,
	VFIO_USER_REGION_WRITE = 10,
	VFIO_USER_DMA_READ = 11,  /* server -> client */
	VFIO_USER_DMA_WRITE = 12, /* server -> client */
	VFIO_USER_DEVICE_RESET = 13,
	/* 14: unused in the specification */
	VFIO_USER_REGION_WRITE_MULTI = 15,
	VFIO_USER_DEVICE_FEATURE = 16,
	VFIO_USER_MIG_DATA_READ = 17,
	VFIO_USER_MIG_DATA_WRITE = 18,
	/* 19..26: proposed upstream (iommufd-style commands): left alone */

	/* p2pbuf extension, only after "p2pbuf" was negotiated in VERSION */
	VFIO_USER_P2P_DMABUF_CLOSE = 64, /* client -> server */
	VFIO_USER_P2P_REVOKE = 65,       /* server -> client, the reply is the ack */
	VFIO_USER_P2P_DMABUF_GET = 66,   /* client -> server, on a token's connection */
};

/* ---- Header (spec "Header") --------------------------------------------- */

/**
 * struct vfio_user_header - the 16 bytes in front of every message
 * @msg_id:   chosen by the sender, echoed in the reply
 * @cmd:      enum vfio_user_command, also set in the reply
 * @msg_size: the whole message, header included
 * @flags:    VFIO_USER_F_*
 * @error_no: errno of an error reply (VFIO_USER_F_ERROR); reserved in commands
 */
struct vfio_user_header {
	uint16_t msg_id;
	uint16_t cmd;
	uint32_t msg_size;
	uint32_t flags;
	uint32_t error_no;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_header) == 16, "vfio_user_header");

#define VFIO_USER_F_TYPE_MASK 0xfu
#define VFIO_USER_F_TYPE_COMMAND 0x0u
#define VFIO_USER_F_TYPE_REPLY 0x1u
#define VFIO_USER_F_NO_REPLY (1u << 4)
#define VFIO_USER_F_ERROR (1u << 5)

/* ---- VERSION ------------------------------------------------------------ */

/**
 * struct vfio_user_version - VERSION payload (request and reply)
 * @major: protocol major (0)
 * @minor: protocol minor
 * @data:  optional NUL-terminated UTF-8 JSON: {"capabilities": {...}}
 */
struct vfio_user_version {
	uint16_t major;
	uint16_t minor;
	char data[];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_version) == 4, "vfio_user_version");

/* JSON capability names and the specification's defaults */
#define VFIO_USER_CAP "capabilities"
#define VFIO_USER_CAP_MAX_FDS "max_msg_fds"
#define VFIO_USER_CAP_MAX_DATA_XFER_SIZE "max_data_xfer_size"
#define VFIO_USER_CAP_MAX_DMA_MAPS "max_dma_maps"
#define VFIO_USER_CAP_PGSIZES "pgsizes"
#define VFIO_USER_CAP_MIGRATION "migration"
#define VFIO_USER_CAP_TWIN_SOCKET "twin_socket"
#define VFIO_USER_CAP_TWIN_SUPPORTED "supported"
#define VFIO_USER_CAP_TWIN_FD_INDEX "fd_index"
#define VFIO_USER_CAP_WRITE_MULTIPLE "write_multiple"

#define VFIO_USER_DEFAULT_MAX_FDS 1u
#define VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE (1024u * 1024u)
#define VFIO_USER_DEFAULT_MAX_DMA_MAPS 65535u
#define VFIO_USER_DEFAULT_PGSIZES 4096ull

/*
 * p2pbuf extension capability: the client sends
 *   "p2pbuf": {"dmabuf": 1, "revoke": 1}
 * inside "capabilities"; a server that supports it answers with the same
 * object (values it supports; 0 or absent = not supported).  A client that
 * did not ask never gets VFIO_USER_P2P_REVOKE commands and cannot use
 * feature 11 or VFIO_USER_P2P_DMABUF_CLOSE.
 */
#define VFIO_USER_CAP_P2PBUF "p2pbuf"
#define VFIO_USER_CAP_P2PBUF_DMABUF "dmabuf"
#define VFIO_USER_CAP_P2PBUF_REVOKE "revoke"

/* ---- DMA_MAP / DMA_UNMAP ------------------------------------------------ */

/**
 * struct vfio_user_dma_map - DMA_MAP request, 32 bytes; 0 or 1 fd
 * @argsz:  sizeof(struct vfio_user_dma_map)
 * @flags:  VFIO_USER_F_DMA_REGION_*
 * @offset: file offset in the fd (0 when no fd)
 * @addr:   DMA (IO virtual) address
 * @size:   bytes
 * The reply has no payload.
 */
struct vfio_user_dma_map {
	uint32_t argsz;
	uint32_t flags;
	uint64_t offset;
	uint64_t addr;
	uint64_t size;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_dma_map) == 32, "vfio_user_dma_map");

#define VFIO_USER_F_DMA_REGION_READ (1u << 0)
#define VFIO_USER_F_DMA_REGION_WRITE (1u << 1)

/**
 * struct vfio_user_dma_unmap - DMA_UNMAP request and reply, 24 bytes
 * @argsz: maximum reply payload (>= 24)
 * @flags: VFIO_USER_F_DMA_UNMAP_ALL (then addr and size must be 0)
 * @addr:  must match a whole earlier map exactly
 * @size:
 * The reply echoes the request's entry.
 */
struct vfio_user_dma_unmap {
	uint32_t argsz;
	uint32_t flags;
	uint64_t addr;
	uint64_t size;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_dma_unmap) == 24, "vfio_user_dma_unmap");

#define VFIO_USER_F_DMA_UNMAP_GET_DIRTY_BITMAP (1u << 0) /* not supported: EINVAL */
#define VFIO_USER_F_DMA_UNMAP_ALL (1u << 1)

/* ---- DEVICE_GET_INFO ---------------------------------------------------- */

struct vfio_user_device_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t num_regions;
	uint32_t num_irqs;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_device_info) == 16, "vfio_user_device_info");

#define VFIO_USER_DEVICE_FLAGS_RESET (1u << 0)
#define VFIO_USER_DEVICE_FLAGS_PCI (1u << 1)

/* ---- DEVICE_GET_REGION_INFO --------------------------------------------- */

/**
 * struct vfio_user_region_info - GET_REGION_INFO request and reply, 32 bytes
 * The reply is followed by the capability chain (cap_offset, relative to the
 * start of this structure) and carries the region's fd when FLAG_MMAP is set;
 * @offset is then the offset to give mmap() on that fd (also the base of the
 * sparse mmap areas).
 */
struct vfio_user_region_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t cap_offset;
	uint64_t size;
	uint64_t offset;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_region_info) == 32, "vfio_user_region_info");

#define VFIO_USER_REGION_INFO_FLAG_READ (1u << 0)
#define VFIO_USER_REGION_INFO_FLAG_WRITE (1u << 1)
#define VFIO_USER_REGION_INFO_FLAG_MMAP (1u << 2)
#define VFIO_USER_REGION_INFO_FLAG_CAPS (1u << 3)

/** struct vfio_user_cap_header - struct vfio_info_cap_header on the wire */
struct vfio_user_cap_header {
	uint16_t id;
	uint16_t version;
	uint32_t next; /* offset of the next capability from the region info; 0 = last */
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_cap_header) == 8, "vfio_user_cap_header");

#define VFIO_USER_REGION_INFO_CAP_SPARSE_MMAP 1
#define VFIO_USER_REGION_INFO_CAP_TYPE 2

struct vfio_user_sparse_mmap_area {
	uint64_t offset; /* relative to vfio_user_region_info.offset */
	uint64_t size;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_sparse_mmap_area) == 16, "sparse area");

/** struct vfio_user_region_cap_sparse_mmap - capability id 1, version 1 */
struct vfio_user_region_cap_sparse_mmap {
	struct vfio_user_cap_header header;
	uint32_t nr_areas;
	uint32_t reserved;
	struct vfio_user_sparse_mmap_area areas[];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_region_cap_sparse_mmap) == 16, "sparse cap");

/* ---- DEVICE_GET_REGION_IO_FDS ------------------------------------------- */

struct vfio_user_region_io_fds_request {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t count;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_region_io_fds_request) == 16, "io fds req");

struct vfio_user_sub_region_ioeventfd {
	uint64_t offset;
	uint64_t size;
	uint32_t fd_index;
	uint32_t type;
	uint32_t flags;
	uint32_t padding;
	uint64_t datamatch;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_sub_region_ioeventfd) == 40, "ioeventfd");

#define VFIO_USER_IO_FD_TYPE_IOEVENTFD 0
#define VFIO_USER_IO_FD_TYPE_IOREGIONFD 1

/* ---- DEVICE_GET_IRQ_INFO / DEVICE_SET_IRQS ------------------------------ */

struct vfio_user_irq_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t count;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_irq_info) == 16, "vfio_user_irq_info");

#define VFIO_USER_IRQ_INFO_EVENTFD (1u << 0)
#define VFIO_USER_IRQ_INFO_MASKABLE (1u << 1)
#define VFIO_USER_IRQ_INFO_AUTOMASKED (1u << 2)
#define VFIO_USER_IRQ_INFO_NORESIZE (1u << 3)

/**
 * struct vfio_user_irq_set - SET_IRQS request, 20 bytes + data
 * DATA_EVENTFD: the eventfds travel as SCM_RIGHTS (count of them, or none to
 * de-assign); DATA_BOOL: @data holds count bytes.  No reply payload.
 */
struct vfio_user_irq_set {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t start;
	uint32_t count;
	uint8_t data[];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_irq_set) == 20, "vfio_user_irq_set");

#define VFIO_USER_IRQ_SET_DATA_NONE (1u << 0)
#define VFIO_USER_IRQ_SET_DATA_BOOL (1u << 1)
#define VFIO_USER_IRQ_SET_DATA_EVENTFD (1u << 2)
#define VFIO_USER_IRQ_SET_ACTION_MASK (1u << 3)
#define VFIO_USER_IRQ_SET_ACTION_UNMASK (1u << 4)
#define VFIO_USER_IRQ_SET_ACTION_TRIGGER (1u << 5)
#define VFIO_USER_IRQ_SET_DATA_TYPE_MASK 0x7u
#define VFIO_USER_IRQ_SET_ACTION_TYPE_MASK 0x38u

/* ---- REGION_READ / REGION_WRITE ----------------------------------------- */

/**
 * struct vfio_user_region_access - REGION_READ/WRITE, 16 bytes + data
 * READ request: no data; READ reply: count bytes of data.
 * WRITE request: count bytes of data; WRITE reply: no data.
 * count <= the peer's max_data_xfer_size.
 */
struct vfio_user_region_access {
	uint64_t offset;
	uint32_t region;
	uint32_t count;
	uint8_t data[];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_region_access) == 16, "region access");

/* ---- REGION_WRITE_MULTI ------------------------------------------------- */

struct vfio_user_write_multi_entry {
	uint64_t offset;
	uint32_t region;
	uint32_t count; /* <= 8 */
	uint8_t data[8];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_write_multi_entry) == 24, "write multi entry");

struct vfio_user_write_multi {
	uint64_t wr_cnt;
	struct vfio_user_write_multi_entry wrs[];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_write_multi) == 8, "write multi");

/* ---- DMA_READ / DMA_WRITE (server -> client) ---------------------------- */

/**
 * struct vfio_user_dma_region_access - DMA_READ/WRITE, 16 bytes + data
 * READ request: no data; READ reply: count bytes.  WRITE request: count
 * bytes; WRITE reply: no data.  The specification's table gives the DMA_WRITE
 * reply's count as 4 bytes (12-byte payload) while libvfio-user replies with
 * this 16-byte structure: receivers accept both (>= 12 bytes).
 */
struct vfio_user_dma_region_access {
	uint64_t addr;
	uint64_t count;
	uint8_t data[];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_dma_region_access) == 16, "dma access");

/* ---- DEVICE_FEATURE ----------------------------------------------------- */

/**
 * struct vfio_user_device_feature - DEVICE_FEATURE request/reply, 8 + data
 * @argsz: request: maximum reply payload; reply: size of the full reply payload
 * @flags: feature index in bits 0-15, VFIO_USER_DEVICE_FEATURE_GET/SET/PROBE
 */
struct vfio_user_device_feature {
	uint32_t argsz;
	uint32_t flags;
	uint8_t data[];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_device_feature) == 8, "device feature");

#define VFIO_USER_DEVICE_FEATURE_MASK 0xffffu
#define VFIO_USER_DEVICE_FEATURE_GET (1u << 16)
#define VFIO_USER_DEVICE_FEATURE_SET (1u << 17)
#define VFIO_USER_DEVICE_FEATURE_PROBE (1u << 18)

/* ---- MIG_DATA_READ / MIG_DATA_WRITE ------------------------------------- */

struct vfio_user_mig_data {
	uint32_t argsz;
	uint32_t size;
	uint8_t data[];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_mig_data) == 8, "mig data");

/* ==== p2pbuf extension ==================================================== */

/*
 * Export (DEVICE_FEATURE, feature 11 = VFIO_DEVICE_FEATURE_DMA_BUF):
 * request: struct vfio_user_device_feature {argsz, flags = GET | 11} followed
 * by the kernel payload (struct vfio_device_feature_dma_buf: u32 region_index,
 * u32 open_flags, u32 flags, u32 nr_ranges, then nr_ranges x {u64 offset,
 * u64 length}), validated by the server's VFIO layer with the kernel's errnos.
 * argsz = the largest reply payload accepted (>= 32 + 16 * nr_ranges).
 *
 * Reply: the 16-byte vfio_user_header, then struct vfio_user_p2p_dmabuf (NOT
 * preceded by a vfio_user_device_feature), and ONE fd: the memory behind the
 * BAR; range i of the export is [ranges[i].fd_offset, + length) of that fd.
 * If argsz is too small: the reply is struct vfio_user_p2p_dmabuf alone with
 * argsz = the size needed, nr_ranges = 0, no fd, nothing exported.
 *
 * A full reply carries a SECOND fd: the export's token, one end of a
 * SOCK_SEQPACKET socketpair whose other end the server keeps, bound to the
 * abstract name VFIO_USER_P2P_TOKEN_PREFIX "<pid>/<export id>/<random>", so
 * that whoever holds a copy can tell it is a token with getpeername(2)
 * without writing to it.  The client makes it its dma-buf's fd: the fd the
 * program passes on (SCM_RIGHTS) IS the memory.  The server keeps the
 * export while any copy of the token is open anywhere (fds in flight
 * count), whatever becomes of the connection that made it; this
 * connection's hold on it ends with VFIO_USER_P2P_DMABUF_CLOSE or its
 * disconnect.  See struct vfio_user_p2p_token_attach for a holder.
 */
struct vfio_user_p2p_dmabuf_range {
	uint64_t fd_offset;
	uint64_t length;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_p2p_dmabuf_range) == 16, "p2p range");

/**
 * struct vfio_user_p2p_dmabuf - reply to DEVICE_FEATURE GET | DMA_BUF
 * @argsz:        size of this reply payload (32 + 16 * nr_ranges)
 * @flags:        0 for feature 11; VFIO_USER_P2P_DMABUF_F_* for DMABUF_GET
 * @export_id:    server-chosen id, named in CLOSE and REVOKE
 * @size:         total bytes of the export (sum of the lengths)
 * @region_index: BAR index
 * @nr_ranges:
 * @ranges:       fd offsets (into the passed fd) and lengths
 */
struct vfio_user_p2p_dmabuf {
	uint32_t argsz;
	uint32_t flags;
	uint64_t export_id;
	uint64_t size;
	uint32_t region_index;
	uint32_t nr_ranges;
	struct vfio_user_p2p_dmabuf_range ranges[];
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_p2p_dmabuf) == 32, "p2p dmabuf");

/**
 * struct vfio_user_p2p_dmabuf_close - VFIO_USER_P2P_DMABUF_CLOSE (64)
 * request payload; the reply has none.  Unknown export_id: ENOENT.
 */
struct vfio_user_p2p_dmabuf_close {
	uint32_t argsz;
	uint32_t flags; /* 0 */
	uint64_t export_id;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_p2p_dmabuf_close) == 16, "p2p close");

/**
 * struct vfio_user_p2p_revoke - VFIO_USER_P2P_REVOKE (65), server -> client
 * @flags: VFIO_USER_P2P_REVOKE_F_*; 0 = restored (no ack awaited)
 * @export_id: the export, or VFIO_USER_P2P_EXPORT_REGIONS for the client's
 *             mappings of the device's region fds
 * The client replies (header only, the same msg_id) once it has zapped its CPU
 * mappings of that memory and drained its own DMA through it: the ack.
 */
struct vfio_user_p2p_revoke {
	uint32_t argsz;
	uint32_t flags;
	uint64_t export_id;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_p2p_revoke) == 16, "p2p revoke");

/**
 * VFIO_USER_P2P_TOKEN_PREFIX - the abstract socket name of every token's
 * server end starts with this (after the leading NUL byte).
 */
#define VFIO_USER_P2P_TOKEN_PREFIX "p2pbuf-dmabuf/"

/**
 * struct vfio_user_p2p_token_attach - the one datagram a holder sends on a token
 * @magic:   VFIO_USER_P2P_TOKEN_MAGIC
 * @version: VFIO_USER_P2P_TOKEN_VERSION
 *
 * Sent on the token with exactly one fd (SCM_RIGHTS): one end of a new
 * SOCK_STREAM Unix socketpair.  The server starts a vfio-user connection on
 * it, bound to the token's export: the holder speaks the protocol on the
 * other end (VERSION with the "p2pbuf" capability, then
 * VFIO_USER_P2P_DMABUF_GET), gets that export's REVOKE notices and acks
 * them as any client.  Anything else on the token (other sizes, no fd, more
 * fds, not a stream socket) is dropped, its fds closed; nothing is ever
 * sent back on the token.
 */
struct vfio_user_p2p_token_attach {
	uint32_t magic;
	uint32_t version;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_p2p_token_attach) == 8, "p2p token attach");

#define VFIO_USER_P2P_TOKEN_MAGIC 0x70327062u /* "bp2p" little-endian */
#define VFIO_USER_P2P_TOKEN_VERSION 1u

/**
 * struct vfio_user_p2p_dmabuf_get - VFIO_USER_P2P_DMABUF_GET (66) request
 * @argsz: the largest reply payload accepted
 * @flags: 0
 *
 * Only on a connection started from a token (struct
 * vfio_user_p2p_token_attach), after VERSION negotiated "p2pbuf"; elsewhere
 * EPERM.  The reply is the feature-11 reply for the token's export (struct
 * vfio_user_p2p_dmabuf with this connection's own export id, and ONE fd:
 * the memory; the holder has the token), with argsz retry as there, and
 * @flags: VFIO_USER_P2P_DMABUF_F_* (revoked now, writable).  The
 * connection holds the export until DMABUF_CLOSE or its disconnect.  An
 * export the server already let go (every token copy closed): ENOENT.  An
 * export revoked for good before the attach: flags REVOKED | FOR_GOOD and
 * NO fd (nothing is held, no notice ever comes); temporarily revoked at the
 * attach: ENODEV (the exporter takes no importer while revoked).  Notices
 * for the export may come before the reply: the latest one, if any, says
 * the export's state, else the reply's flags (see vu_resolve()).
 */
struct vfio_user_p2p_dmabuf_get {
	uint32_t argsz;
	uint32_t flags;
} VFIO_USER_PACKED;
_Static_assert(sizeof(struct vfio_user_p2p_dmabuf_get) == 8, "p2p dmabuf get");

#define VFIO_USER_P2P_DMABUF_F_REVOKED (1u << 0)  /* revoked when the reply was made */
#define VFIO_USER_P2P_DMABUF_F_FOR_GOOD (1u << 1) /* ... and for good */
#define VFIO_USER_P2P_DMABUF_F_WRITE (1u << 2)    /* exported O_RDWR (else O_RDONLY) */

#define VFIO_USER_P2P_REVOKE_F_REVOKED (1u << 0)
#define VFIO_USER_P2P_REVOKE_F_FOR_GOOD (1u << 1)
#define VFIO_USER_P2P_EXPORT_REGIONS (~0ull)

#endif /* P2PBUF_VFIO_USER_PROTO_H */
