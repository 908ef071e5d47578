/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of the libFuzzer targets: an input reader, oracles that
 * abort (so libFuzzer records the input) and guarded memory windows with
 * canaries.
 *
 * Every target tears down all it created at the end of each input and then
 * checks that the process has exactly the fds it had before the
 * input (leaks of other objects show up in ASan's per-input leak check).
 * The count is taken per input, so libFuzzer's own files do not matter.
 */
#ifndef P2PBUF_FUZZ_H
#define P2PBUF_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An input, consumed front to back; reads past the end give zeros. */
struct fin {
	const uint8_t *p;
	size_t n;
};

uint8_t fin_u8(struct fin *in);
uint16_t fin_u16(struct fin *in);
uint32_t fin_u32(struct fin *in);
uint64_t fin_u64(struct fin *in);
/* Copy up to @len bytes (the rest zero); returns how many came from the input. */
size_t fin_bytes(struct fin *in, void *dst, size_t len);
static inline bool fin_empty(const struct fin *in)
{
	return in->n == 0;
}

/* An oracle failed: print and abort, so libFuzzer saves the input. */
#define FZ_ASSERT(cond, ...)                                                                 \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__,     \
				#cond);                                                              \
			fprintf(stderr, __VA_ARGS__);                                        \
			fputc('\n', stderr);                                                 \
			abort();                                                             \
		}                                                                            \
	} while (0)

/* The libFuzzer entry points: fuzz.c has LLVMFuzzerInitialize(), each target the other. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Each target's setup, once per process after fz_init() (from
 * LLVMFuzzerInitialize()): 0, or nonzero to abort.
 */
int fz_setup(void);

/* Library setup once per process; silences the library's log unless P2P_FUZZ_LOG is set. */
void fz_init(void);
/*
 * fz_fds_begin() at the start of an input, fz_fds_end() with its result
 * after the teardown: aborts (listing the fds) if the count differs.
 */
int fz_fds_begin(void);
void fz_fds_end(int before);

/*
 * A window of @len bytes of RW memory with @canary bytes of canary before
 * and after it, and a PROT_NONE guard page beyond each canary.  With
 * @canary 0 the window touches its guards (any overrun faults).
 */
struct fz_win {
	uint8_t *map;
	size_t maplen;
	uint8_t *base; /* the window */
	size_t len;
	size_t canary;
};
int fz_win_create(struct fz_win *w, size_t len, size_t canary);
void fz_win_destroy(struct fz_win *w);
/* Refill both canaries. */
void fz_win_arm(struct fz_win *w);
/* Make both canaries read-only (after arming them): 0 or -1. */
int fz_win_ro_canaries(struct fz_win *w);
/* Abort if a canary byte changed; @what names the window. */
void fz_win_check(const struct fz_win *w, const char *what);
/* The canary byte expected at window-relative offset @off (negative: before). */
uint8_t fz_canary_byte(long off);

/* A deterministic byte pattern by offset and seed. */
static inline uint8_t fz_pattern(uint64_t off, uint8_t seed)
{
	return (uint8_t)((off * 131u) ^ (off >> 9) ^ seed);
}

#endif

/* ---------------------------------------------------------------------- */
/* Emulated devices                                                        */

struct p2p_pci_dev;
struct p2p_pci_devset;
struct p2p_vfio_device;

/* BAR layout of fz_dev_create(): BAR0 16 KiB, BAR2 64-bit prefetchable, BAR4 I/O 256 B. */
#define FZ_BAR0_SIZE (16u << 10)
#define FZ_BAR2_SIZE (64u << 10)
#define FZ_BAR4_SIZE 256u

/* Create and open a function with the layout above; 0 or -errno (nothing left). */
int fz_dev_create(const char *name, struct p2p_pci_devset *set, uint32_t group,
		  struct p2p_pci_dev **pci, struct p2p_vfio_device **vdev);

/*
 * The revocation invariant of docs/design.md for a VFIO dma-buf fd of @pci:
 * unless it is permanently revoked, it is temporarily revoked exactly when its
 * function's memory is not enabled.  Aborts otherwise; ignores fds that are
 * not dma-bufs.
 */
void fz_check_vfio_dmabuf(int fd, struct p2p_pci_dev *pci);

/* A small fixed table of fds the target owns, that fuzz values index. */
struct fz_fds {
	int fd[16];
	unsigned int n;
};
/* Add @fd (if >= 0). */
void fz_fds_add(struct fz_fds *t, int fd);
/* Map a fuzz value onto the table: -1 stays -1, others pick an entry (or a closed number). */
int fz_fds_pick(const struct fz_fds *t, uint32_t v);
