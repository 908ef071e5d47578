/* SPDX-License-Identifier: MIT */
/*
 * The system dma-buf heap (kernel-semantics section 6).
 *
 * A heap hands out dma-bufs of system memory.  Each buffer is one memfd
 * whose pages are handed out in chunks of 1 MiB, 64 KiB and 4 KiB (page
 * orders 8, 4 and 0, largest first), as the kernel's system heap does: an
 * importer's map returns one entry per chunk, while a CPU mmap is
 * populated in whole runs (and 2 MiB pages where shmem THP allows), never
 * page by page.  Any importer may attach (heap memory is not revocable and
 * needs no peer-to-peer support).
 */
#ifndef P2PBUF_HEAP_H
#define P2PBUF_HEAP_H

#include <fcntl.h>
#include <stdint.h>
#include <linux/ioctl.h>

#include <p2pbuf/common.h>
#include <p2pbuf/dmabuf.h>

#ifdef __cplusplus
extern "C" {
#endif

/* include/uapi/linux/dma-heap.h */
#ifndef DMA_HEAP_IOCTL_ALLOC
struct dma_heap_allocation_data {
	uint64_t len;
	uint32_t fd;
	uint32_t fd_flags;
	uint64_t heap_flags;
};
#define DMA_HEAP_IOC_MAGIC 'H'
#define DMA_HEAP_IOCTL_ALLOC _IOWR(DMA_HEAP_IOC_MAGIC, 0x0, struct dma_heap_allocation_data)
#define DMA_HEAP_VALID_FD_FLAGS (O_CLOEXEC | O_ACCMODE)
#define DMA_HEAP_VALID_HEAP_FLAGS (0ULL)
#endif

/* include/uapi/linux/dma-buf.h: CPU access bracketing */
#ifndef DMA_BUF_IOCTL_SYNC
struct dma_buf_sync {
	uint64_t flags;
};
#define DMA_BUF_SYNC_READ (1 << 0)
#define DMA_BUF_SYNC_WRITE (2 << 0)
#define DMA_BUF_SYNC_RW (DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE)
#define DMA_BUF_SYNC_START (0 << 2)
#define DMA_BUF_SYNC_END (1 << 2)
#define DMA_BUF_SYNC_VALID_FLAGS_MASK (DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END)
#define DMA_BUF_BASE 'b'
#define DMA_BUF_IOCTL_SYNC _IOW(DMA_BUF_BASE, 0, struct dma_buf_sync)
#endif

struct p2p_dma_heap;

/**
 * p2p_dma_heap_open() - open a heap by name (/dev/dma_heap/<name>)
 * @name: "system" is the only heap
 * Return: 0 or -ENOENT (no such heap), -ENOMEM.
 */
P2P_API int p2p_dma_heap_open(const char *name, struct p2p_dma_heap **out);
/**
 * p2p_dma_heap_open_fd() - open(2) of /dev/dma_heap/<name>: a heap file
 * @name: "system"
 * @flags: open(2) flags (access mode, O_CLOEXEC, ...)
 *
 * The fd's file answers DMA_HEAP_IOCTL_ALLOC through p2p_fd_ioctl(); its
 * last close (p2p_close()) frees the heap, buffers live on.
 *
 * Return: the fd, or -ENOENT (no such heap), -ENOMEM, -EMFILE.
 */
P2P_API int p2p_dma_heap_open_fd(const char *name, int flags);
/** p2p_dma_heap_close() - close the heap; buffers live on */
P2P_API void p2p_dma_heap_close(struct p2p_dma_heap *heap);

/**
 * p2p_dma_heap_ioctl() - the heap's ioctls: DMA_HEAP_IOCTL_ALLOC
 * @cmd: the request; the struct size encoded in it may be smaller or larger
 *	than the kernel's (zero-extended / trailing bytes ignored), as the
 *	kernel's dma_heap_ioctl() framing allows
 *
 * Validation (6.1): fd != 0 on input, fd_flags outside O_CLOEXEC|O_ACCMODE,
 * unknown heap_flags, len 0 after PAGE_ALIGN -> -EINVAL; allocation
 * failure -> -ENOMEM; unknown command -> -ENOTTY.  On success data->fd is
 * a new dma-buf fd (close it with p2p_close()).
 */
P2P_API long p2p_dma_heap_ioctl(struct p2p_dma_heap *heap, unsigned long cmd, void *arg);

/**
 * p2p_dma_heap_alloc() - allocate a buffer (typed DMA_HEAP_IOCTL_ALLOC)
 * Return: a new dma-buf fd or -errno as the ioctl.
 */
P2P_API int p2p_dma_heap_alloc(struct p2p_dma_heap *heap, uint64_t len, uint32_t fd_flags,
			       uint64_t heap_flags);

/**
 * p2p_dmabuf_sync() - DMA_BUF_IOCTL_SYNC: bracket CPU access
 * @flags: DMA_BUF_SYNC_START or _END, with READ, WRITE or both
 * Return: 0 or -EINVAL (unknown bits, or no direction).
 */
P2P_API int p2p_dmabuf_sync(struct p2p_dmabuf *buf, uint64_t flags);

#ifdef __cplusplus
}
#endif
#endif
