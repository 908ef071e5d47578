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
#include <sys/types.h>

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
/* The fds the process has open now (what t_begin() and t_end() compare), or -1. */
int t_count_fds(void);
/*
 * A vfio-user DEVICE_FEATURE GET | 11 request (dma-buf export) with one
 * range, flat: the uAPI structures end in flexible arrays.
 */
struct t_vu_feat11 {
	struct {
		uint32_t argsz, flags;
	} f;
	struct {
		uint32_t region_index, open_flags, flags, nr_ranges;
	} db;
	struct vfio_region_dma_range r;
} __attribute__((packed));

/*
 * One sendmsg(2) (MSG_NOSIGNAL) of the @len bytes at @buf with @nfds fds
 * (SCM_RIGHTS, at most 16) on socket @s: what it returned.
 */
ssize_t t_sendmsg_fds(int s, const void *buf, size_t len, const int *fds, unsigned int nfds);
/*
 * An unlinked temporary file (O_CLOEXEC) holding the @len bytes at @data;
 * prints and exits T_EXIT_FAIL if it cannot be made.
 */
int t_tmpfile(const void *data, uint64_t len);
/*
 * `p2pbuf serve` of @conf (a door config text, written to @dir/devices.conf)
 * on sockets in @dir, spawned (posix_spawn: safe in a threaded test) from
 * the build's tools/p2pbuf, its output in @dir/serve.log, the revoke
 * timeout @revoke_ms; it returns once the socket of each BDF in the
 * NULL-terminated @bdfs exists.  Return: its pid, or -1.
 */
pid_t t_serve(const char *dir, const char *conf, const char *const *bdfs, const char *revoke_ms);
/* The build's tools/p2pbuf, from this test's own path (build/tests/x). */
void t_tool_path(char *out, size_t n);

/* Print a reason and exit 77. */
void t_skip(const char *reason) __attribute__((noreturn));
/* Skip (77) unless CPU mappings can be revoked (p2p_library_init() succeeded). */
void t_require_uffd(void);

/*
 * Access one byte at @p; returns true if it raised SIGBUS (or SIGSEGV when
 * @segv_ok).  Thread-safe: uses a per-thread jump buffer.
 */
bool t_read_faults(const volatile void *p);
bool t_write_faults(volatile void *p, uint8_t v);
/* Fault-catching memcmp/memset for larger regions. */
bool t_fill_faults(volatile void *p, uint8_t v, size_t len);
/* t_read_faults() of every 4 KiB page of [@p, @p + @len): all of them fault / any one does. */
bool t_faults_everywhere(const volatile void *p, size_t len);
bool t_faults_anywhere(const volatile void *p, size_t len);

/* A device: BAR0 16 KiB registers-like memory, BAR2 (64-bit) of @bar2 bytes. */
struct t_dev {
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
};
int t_dev_create(struct t_dev *d, const char *name, uint64_t bar2, uint32_t flags,
		 struct p2p_pci_devset *set, uint32_t group);
void t_dev_destroy(struct t_dev *d);
/*
 * t_dev_create() with no flags and no device set, for the test's main
 * device: if it fails, skip the test (77) / fail it (1), with the reason.
 */
void t_dev_create_or_skip(struct t_dev *d, const char *name, uint64_t bar2, uint32_t group);
void t_dev_create_or_fail(struct t_dev *d, const char *name, uint64_t bar2, uint32_t group);
/* The description t_dev_create() uses, for a test to add to (.ops, .priv) before creating. */
void t_dev_info(struct p2p_pci_dev_info *info, const char *name, uint64_t bar2, uint32_t flags,
		struct p2p_pci_devset *set, uint32_t group);
/*
 * Create the function @info describes and, if @vdev, open it.  On failure
 * nothing is left (*@pci is NULL if the open failed); returns 0 or -errno.
 */
int t_dev_open_info(const struct p2p_pci_dev_info *info, struct p2p_pci_dev **pci,
		    struct p2p_vfio_device **vdev);

/* The device's own view of BAR @bar of @pci (its memory, not a mapping), from byte @off. */
uint8_t *t_bar_ptr(const struct p2p_pci_dev *pci, int bar, uint64_t off);
/* A byte pattern by offset: what t_bar_fill() puts at BAR offset @off. */
uint8_t t_pattern(uint64_t off);
/* Fill bytes [0, @size) of BAR @bar of @pci with t_pattern(). */
void t_bar_fill(const struct p2p_pci_dev *pci, int bar, uint64_t size);

/*
 * The /proc/self/maps line holding @va: true if found, with its file offset
 * in *@off and whether its path contains @name (if not NULL) in *@named.
 */
bool t_maps_find(const void *va, uint64_t *off, const char *name, bool *named);

/* Shorthands over the config region. */
int t_mem_enable(struct p2p_vfio_device *vdev, bool on);
int t_set_power(struct p2p_vfio_device *vdev, unsigned int state);
int t_flr(struct p2p_vfio_device *vdev);

/* Export @nr ranges of @bar; returns the fd or -errno. */
int t_dmabuf(struct p2p_vfio_device *vdev, uint32_t bar, const struct vfio_region_dma_range *r,
	     uint32_t nr);
/* Export the one range [@off, @off + @len) of @bar; returns the fd or -errno. */
int t_dmabuf_range(struct p2p_vfio_device *vdev, uint32_t bar, uint64_t off, uint64_t len);
/* mmap(2) of dma-buf @fd, read-write: 0 (*@va set) or -errno. */
int t_mmap_fd(int fd, size_t len, int flags, uint64_t off, void **va);
/* VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE (3.4) of dma-buf @fd through the device ioctl. */
long t_feat_revoke(struct p2p_vfio_device *vdev, int fd);

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
/* A new P2P importer attaches to @buf, maps and detaches: 0 or the first -errno. */
int t_try_attach(struct p2p_dmabuf *buf);

/* For test exporters' map op: a copy of @buf's ranges in a malloc()ed sgt, or NULL. */
struct p2p_sgt *t_sgt_of_ranges(struct p2p_dmabuf *buf);

/*
 * iommufd through p2p_iommufd_ioctl() with the kernel's structures.
 * t_ioas_new(): IOMMU_IOAS_ALLOC and the native handle (both CHECKed), returns the id;
 * t_ioas_del(): drop the handle, then IOMMU_DESTROY (CHECKed).
 */
uint32_t t_ioas_new(struct p2p_iommufd *ictx, struct p2p_ioas **out);
void t_ioas_del(struct p2p_iommufd *ictx, uint32_t id, struct p2p_ioas *ioas);
/* IOMMU_DESTROY of object @id: 0 or -errno. */
long t_destroy_ioctl(struct p2p_iommufd *ictx, uint32_t id);
/*
 * IOMMU_IOAS_MAP_FILE (test_ioctl_ioas_map_file() of iommufd_utils.h) and
 * IOMMU_IOAS_MAP: 0 (*@iova set to the IOVA used) or -errno.
 */
long t_map_file_ioctl(struct p2p_iommufd *ictx, uint32_t id, int fd, uint64_t start,
		      uint64_t len, uint64_t *iova, uint32_t flags);
long t_map_ioctl(struct p2p_iommufd *ictx, uint32_t id, void *va, uint64_t len, uint64_t *iova,
		 uint32_t flags);
/* IOMMU_IOAS_UNMAP: 0 or -errno; *@done (if not NULL) the bytes unmapped, 0 on failure. */
long t_unmap_ioctl(struct p2p_iommufd *ictx, uint32_t id, uint64_t iova, uint64_t len,
		   uint64_t *done);

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
