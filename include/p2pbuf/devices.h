/* SPDX-License-Identifier: MIT */
/*
 * Emulated devices that DMA: the copy engine and the storage device.
 *
 * The copy engine is a PCI function whose BAR0 holds registers (accesses
 * go through the VFIO region, as a userspace driver's would).  It has
 * several channels, as DMA engines do: each channel is a queue with its
 * own descriptor ring, completion array, doorbell and worker thread.  The
 * driver puts a channel's ring and completion array in IOVA space, rings
 * its doorbell, and gets an MSI (eventfd) per descriptor that asks for
 * one.  Channels run in parallel, each in order; a driver splits a large
 * copy into one descriptor per channel to use several cores' memory
 * bandwidth.  Every IOVA is translated through the IOAS the function is
 * attached to, so copies reach system memory, its own BAR or another
 * device's BAR exported as a dma-buf (peer to peer).
 */
#ifndef P2PBUF_DEVICES_H
#define P2PBUF_DEVICES_H

#include <stdint.h>

#include <p2pbuf/vfio.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * BAR0 registers, little endian, 4 KiB.  Channel 0's registers are at the
 * offsets below; channel c's at P2P_CE_CHAN_REG(c, reg), the same layout
 * P2P_CE_CHAN_STRIDE bytes further per channel (offsets 0x00-0x07 of
 * channels >= 1 and the blocks of channels the engine lacks are reserved).
 */
#define P2P_CE_REG_ID 0x00	  /* RO u32: P2P_CE_ID */
#define P2P_CE_REG_CHANNELS 0x04  /* RO u32: number of channels (0 on engines before channels: 1) */
#define P2P_CE_REG_RING 0x08	  /* u64: descriptor ring IOVA */
#define P2P_CE_REG_RING_SIZE 0x10 /* u32: entries, a power of two <= 65536 */
#define P2P_CE_REG_COMPL 0x18	  /* u64: completion array IOVA */
#define P2P_CE_REG_DOORBELL 0x20  /* u32: write the new tail (free-running) */
#define P2P_CE_REG_HEAD 0x24	  /* RO u32: descriptors completed (free-running) */
#define P2P_CE_REG_CTRL 0x28	  /* u32: P2P_CE_CTRL_* */
#define P2P_CE_REG_STATUS 0x2c	  /* RO u32: P2P_CE_STATUS_* */
#define P2P_CE_BAR0_SIZE 4096
#define P2P_CE_ID 0x45433250u /* "P2CE" */
#define P2P_CE_CHAN_STRIDE 0x40
#define P2P_CE_MAX_CHANNELS (P2P_CE_BAR0_SIZE / P2P_CE_CHAN_STRIDE) /* 64 */
/* Offset of channel @c's register @reg (one of the P2P_CE_REG_* from RING to STATUS). */
#define P2P_CE_CHAN_REG(c, reg) ((uint64_t)(c) * P2P_CE_CHAN_STRIDE + (reg))
/* MSI vector channel @c signals (the function has 8). */
#define P2P_CE_CHAN_VECTOR(c) ((unsigned int)(c) % 8u)

#define P2P_CE_CTRL_ENABLE 0x1
#define P2P_CE_STATUS_BUSY 0x1
#define P2P_CE_STATUS_RING_FAULT 0x2 /* a descriptor or completion was unreachable */

/** struct p2p_ce_desc - one copy, 32 bytes in the ring */
struct p2p_ce_desc {
	uint64_t src; /* source IOVA */
	uint64_t dst; /* destination IOVA */
	uint64_t len; /* bytes */
	uint32_t flags; /* P2P_CE_DESC_* */
	uint32_t id;	/* echoed in the completion */
};
#define P2P_CE_DESC_IRQ 0x1 /* raise the channel's MSI vector when done */

/** struct p2p_ce_compl - one completion record, 16 bytes */
struct p2p_ce_compl {
	uint32_t id;
	uint32_t status; /* enum p2p_ce_status */
	uint64_t bytes;	 /* bytes copied before the status happened */
};

enum p2p_ce_status {
	P2P_CE_PENDING = 0,
	P2P_CE_OK = 1,
	P2P_CE_FAULT = 2,   /* translation fault: nothing mapped */
	P2P_CE_REVOKED = 3, /* the mapping's dma-buf was revoked */
	P2P_CE_PERM = 4,    /* the mapping does not allow the access */
};

/** p2p_ce_status_name() - "ok", "translation fault", "revoked", ... */
P2P_API const char *p2p_ce_status_name(uint32_t status);

/**
 * p2p_copy_engine_create() - plug in a copy engine with the default channels
 * @name: BDF; @set, @group: as struct p2p_pci_dev_info
 * @out: the function (one reference; p2p_pci_dev_put() unplugs it and
 *	stops its threads)
 *
 * As p2p_copy_engine_create_opts() with no options: one channel per online
 * core (at most P2P_CE_MAX_CHANNELS).
 *
 * Return: 0 or -errno.
 */
P2P_API int p2p_copy_engine_create(const char *name, struct p2p_pci_devset *set, uint32_t group,
				   struct p2p_pci_dev **out);

/**
 * struct p2p_copy_engine_opts - options of p2p_copy_engine_create_opts()
 * @argsz: sizeof(struct p2p_copy_engine_opts) as the caller knows it
 * @channels: number of channels, 1 to P2P_CE_MAX_CHANNELS; 0: one per
 *	online core (at most P2P_CE_MAX_CHANNELS)
 *
 * Bytes past the members this library knows must be zero.
 */
struct p2p_copy_engine_opts {
	uint32_t argsz;
	uint32_t channels;
};

/**
 * p2p_copy_engine_create_opts() - plug in a copy engine
 * @name: BDF; @set, @group: as struct p2p_pci_dev_info
 * @opts: options, or NULL for the defaults
 * @out: the function (one reference; p2p_pci_dev_put() unplugs it and
 *	stops its threads)
 *
 * Starts one worker thread per channel.  Thread-safe.
 *
 * Return: 0 or -EINVAL (@opts too small, too many channels, a non-zero
 * unknown tail), -ENOMEM, -EAGAIN (a thread could not be created), the
 * errors of p2p_pci_dev_create().
 */
P2P_API int p2p_copy_engine_create_opts(const char *name, struct p2p_pci_devset *set,
					uint32_t group, const struct p2p_copy_engine_opts *opts,
					struct p2p_pci_dev **out);

/* ---------------------------------------------------------------------- */
/* The storage device                                                      */

/*
 * A PCI function backed by a file (an image the user names, or a temporary
 * one created for them).  BAR0 holds registers; the submission queue and
 * the completion queue live in IOVA space; the doorbell is a register; an
 * MSI (eventfd, vector 0) signals completions that ask for it.  The device
 * performs the media I/O with io_uring directly into the memory the data
 * IOVA translates to: system memory or another device's BAR exported as a
 * dma-buf (storage to device memory, peer to peer).
 *
 * Protocol.  Registers take 4- and 8-byte naturally aligned accesses (the
 * high word of a u64 register is its own 4-byte register).  The driver
 * programs SQ, CQ and QUEUE_SIZE, sets CTRL.ENABLE, writes commands at
 * SQ[i % size] and writes the new tail to SQ_TAIL (a tail more than a
 * queue ahead of SQ_HEAD is ignored).  The device fetches in order (a slot
 * is free again once SQ_HEAD passed it), keeps up to 64 commands in
 * flight, and writes each completion at CQ[CQ_TAIL % size] in completion
 * order before advancing CQ_TAIL, then raises the MSI if asked (one MSI
 * may cover several completions: read CQ_TAIL and reap them all).  There is
 * no CQ head register: a driver keeps at most QUEUE_SIZE commands
 * submitted and not yet reaped.  A command the device cannot fetch
 * completes with id 0xffffffff and P2P_SD_FAULT; a completion slot it
 * cannot write is lost (CQ_TAIL still moves); both set
 * P2P_SD_STATUS_QUEUE_FAULT.  Clearing CTRL.ENABLE stops fetching;
 * commands in flight complete.  Reset (FLR, VFIO_DEVICE_RESET, hot reset)
 * waits for the commands in flight to complete (their completions are
 * written), drops the ones not fetched and clears every register.
 * Data buffers are held (a revoke of a dma-buf behind them waits) exactly
 * while their I/O is in flight.
 */
#define P2P_SD_REG_ID 0x00	   /* RO u32: P2P_SD_ID */
#define P2P_SD_REG_BLOCK_SIZE 0x04 /* RO u32: bytes per block (4096) */
#define P2P_SD_REG_CAPACITY 0x08   /* RO u64: blocks */
#define P2P_SD_REG_SQ 0x10	   /* u64: submission queue IOVA */
#define P2P_SD_REG_CQ 0x18	   /* u64: completion queue IOVA */
#define P2P_SD_REG_QUEUE_SIZE 0x20 /* u32: entries of each queue, power of two <= 4096 */
#define P2P_SD_REG_SQ_TAIL 0x24	   /* u32 doorbell: commands submitted (free-running) */
#define P2P_SD_REG_SQ_HEAD 0x28	   /* RO u32: commands fetched by the device */
#define P2P_SD_REG_CQ_TAIL 0x2c	   /* RO u32: completions written (free-running) */
#define P2P_SD_REG_CTRL 0x30	   /* u32: P2P_SD_CTRL_* */
#define P2P_SD_REG_STATUS 0x34	   /* RO u32: P2P_SD_STATUS_* */
#define P2P_SD_BAR0_SIZE 4096
#define P2P_SD_ID 0x44533250u /* "P2SD" */
#define P2P_SD_BLOCK 4096

#define P2P_SD_CTRL_ENABLE 0x1
#define P2P_SD_STATUS_BUSY 0x1
#define P2P_SD_STATUS_QUEUE_FAULT 0x2 /* a command or completion slot was unreachable */

enum p2p_sd_opcode {
	P2P_SD_OP_READ = 1,  /* media -> memory at data IOVA */
	P2P_SD_OP_WRITE = 2, /* memory at data IOVA -> media */
	P2P_SD_OP_FLUSH = 3, /* fdatasync the image: covers writes completed before it */
};

/** struct p2p_sd_cmd - one command, 32 bytes in the submission queue */
struct p2p_sd_cmd {
	uint8_t opcode;
	uint8_t flags; /* P2P_SD_CMD_IRQ */
	uint16_t rsvd;
	uint32_t id;	  /* echoed in the completion */
	uint64_t lba;	  /* first block */
	uint32_t nblocks; /* blocks to transfer */
	uint32_t rsvd2;
	uint64_t data; /* IOVA of the data buffer (contiguous in IOVA space) */
};
#define P2P_SD_CMD_IRQ 0x1

/** struct p2p_sd_cqe - one completion, 16 bytes, written in completion order */
struct p2p_sd_cqe {
	uint32_t id;
	uint32_t status; /* enum p2p_sd_status */
	uint64_t bytes;	 /* bytes transferred (before the status happened, if not OK) */
};

enum p2p_sd_status {
	P2P_SD_PENDING = 0,
	P2P_SD_OK = 1,
	P2P_SD_FAULT = 2,   /* translation fault in the data buffer */
	P2P_SD_REVOKED = 3, /* the data buffer's dma-buf was revoked */
	P2P_SD_PERM = 4,    /* the mapping does not allow the access */
	P2P_SD_BAD_LBA = 5, /* beyond the capacity (checked before any translation) */
	P2P_SD_IO_ERROR = 6, /* the media I/O failed or moved nothing */
	P2P_SD_BAD_OPCODE = 7,
};

/** p2p_sd_status_name() - "ok", "bad block address", "revoked", ... */
P2P_API const char *p2p_sd_status_name(uint32_t status);

/**
 * p2p_storage_create() - plug in a storage device
 * @name: BDF; @set, @group: as struct p2p_pci_dev_info
 * @path: the image file (opened read-write, must exist), or NULL for a new
 *	temporary image of @size bytes (a multiple of the block size)
 * @size: capacity for a new image; ignored when @path is given
 * @out: the function (p2p_pci_dev_put() unplugs it, finishing its I/O)
 *
 * The device owns a worker thread and an io_uring; the image fd (O_CLOEXEC)
 * is the device's, closed when it is released.  A temporary image is an
 * unnamed file (O_TMPFILE) in $TMPDIR or /tmp.  The capacity is the image
 * size in whole blocks.  Thread-safe; does not block beyond the file
 * operations.
 *
 * Return: 0 or -errno (-EINVAL for a bad size or an image smaller than a
 * block, errors of open(2) and io_uring_setup(2), -ENOMEM).
 */
P2P_API int p2p_storage_create(const char *name, struct p2p_pci_devset *set, uint32_t group,
			       const char *path, uint64_t size, struct p2p_pci_dev **out);

#ifdef __cplusplus
}
#endif
#endif
