/* SPDX-License-Identifier: MIT */
/*
 * Test harness: checks, skips, SIGBUS probes, fd-leak detection and a
 * default emulated device.  Each test program is one feature; it exits
 * 0 (pass), 1 (fail) or 77 (skip, with the reason printed).
 */
#ifndef P2PBUF_TEST_HARNESS_H
#define P2PBUF_TEST_HARNESS_H

#ifdef NDEBUG
#error "tests must not be built with NDEBUG"
#endif

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>

#include <p2pbuf/p2pbuf.h>

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

extern int t_failures;
extern const char *t_current;

#define CHECK(cond)                                                                          \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "%s:%d: [%s] check failed: %s\n", __FILE__, __LINE__,     \
				t_current ? t_current : "-", #cond);                               \
			t_failures++;                                                        \
		}                                                                            \
	} while (0)

/* Expect a -errno (or >= 0 when want >= 0) result. */
#define CHECK_ERR(expr, want)                                                                \
	do {                                                                                 \
		long _r = (long)(expr);                                                      \
		long _w = (long)(want);                                                      \
		if ((_w >= 0 && _r < 0) || (_w < 0 && _r != _w)) {                            \
			fprintf(stderr, "%s:%d: [%s] %s = %ld (%s), want %ld (%s)\n", __FILE__,    \
				__LINE__, t_current ? t_current : "-", #expr, _r,                 \
				_r < 0 ? strerror((int)-_r) : "ok", _w,                           \
				_w < 0 ? strerror((int)-_w) : "ok");                              \
			t_failures++;                                                        \
		}                                                                            \
	} while (0)

#define CHECK_OK(expr) CHECK_ERR(expr, 0)

/* Start a named section (shown in failure messages). */
void t_section(const char *name);

/* Call first: sets up the library and records the open fds. */
void t_begin(void);
/* Call last: fails the test on leaked fds; returns the exit code. */
int t_end(void);
/* Print a reason and exit 77. */
void t_skip(const char *reason) __attribute__((noreturn));

/*
 * Access one byte at @p; returns true if it raised SIGBUS (or SIGSEGV when
 * @segv_ok).  Thread-safe: uses a per-thread jump buffer.
 */
bool t_read_faults(const volatile void *p);
bool t_write_faults(volatile void *p, uint8_t v);
/* Fault-catching memcmp/memset for larger regions. */
bool t_fill_faults(volatile void *p, uint8_t v, size_t len);

/* A device: BAR0 16 KiB registers-like memory, BAR2 (64-bit) of @bar2 bytes. */
struct t_dev {
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
};
int t_dev_create(struct t_dev *d, const char *name, uint64_t bar2, uint32_t flags,
		 struct p2p_pci_devset *set, uint32_t group);
void t_dev_destroy(struct t_dev *d);

/* Shorthands over the config region. */
int t_mem_enable(struct p2p_vfio_device *vdev, bool on);
int t_set_power(struct p2p_vfio_device *vdev, unsigned int state);
int t_flr(struct p2p_vfio_device *vdev);

/* Export @nr ranges of @bar; returns the fd or -errno. */
int t_dmabuf(struct p2p_vfio_device *vdev, uint32_t bar, const struct vfio_region_dma_range *r,
	     uint32_t nr);

/* A dynamic, P2P, revocable importer that unmaps in its invalidate callback. */
struct t_importer {
	struct p2p_attachment *attach;
	struct p2p_sgt *sgt;
	int invalidations;
};
int t_importer_attach(struct t_importer *imp, struct p2p_dmabuf *buf, uint32_t flags,
		      bool revocable);
int t_importer_map(struct t_importer *imp);
void t_importer_detach(struct t_importer *imp);

/*
 * Load one byte at @p into *@val; returns true (and leaves *@val alone) if
 * the load raised SIGBUS.  Thread-safe, as t_read_faults().
 */
bool t_load_faults(const volatile void *p, uint8_t *val);

/*
 * One access of one byte at @p: a store of @wval if @write, else a load
 * (into *@rval if not NULL).  Returns 0, or the signal it raised (SIGBUS,
 * SIGSEGV): revocation must give SIGBUS, not just any fault.  Thread-safe.
 */
int t_access(volatile void *p, bool write, uint8_t wval, uint8_t *rval);

#endif
