// SPDX-License-Identifier: MIT
/*
 * fail-nth fault injection (as iommufd's selftests): for each operation,
 * for n = 1, 2, ... the n-th failable libc/liburing call it makes fails
 * (tests/failnth.c), until the operation makes fewer than n such calls.
 * Each injected run must:
 *  - return -errno, or succeed completely when the failed call is one the
 *    operation may tolerate (a huge-page hint, a populate);
 *  - leave nothing behind: the same open fds (/proc/self/fd), the same
 *    number of mappings (/proc/self/maps lines), the same number of live
 *    heap blocks (counted by the wrappers; LeakSanitizer at exit in the
 *    ASan build), the same object state (attachments, areas, slots...);
 *  - not break the next attempt: the same operation without injection
 *    works.
 * Revocation has its own contract: if a revoke (p2p_dmabuf_revoke, memory
 * decode off, reset) returned 0, the CPU mapping faults; if an un-revoke
 * returned 0, it works again.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "door.h" /* the door's internals: path mapping, nodes, tree, config (src/door) */
#include "failnth.h"
#include "vfio-user/proto.h"
#include "harness.h"

#define PAGE 4096ul
#define BAR2_SIZE (1024 * 1024ul)
#define LEN (64 * 1024ul)
#define MAX_N 400
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static struct t_dev dev;
static int dfd = -1;		/* a dma-buf of BAR2 [0, LEN) */
static struct p2p_dmabuf *buf; /* its object */
static struct p2p_iommufd *ictx;
static struct p2p_ioas *ioas, *ioas2;
static struct p2p_uring *ring;
static struct p2p_dma_heap *heap;
static int file_fd = -1;
static void *anon; /* LEN bytes of anonymous memory */

static int count_named_maps(void);

static int count_maps(void)
{
	FILE *f;
	int n = 0, c;

#if defined(__SANITIZE_ADDRESS__)
	/*
	 * ASan's pthread_create() and allocator map anonymous regions of their
	 * own (a failed thread creation can leave one behind): under ASan only
	 * file-backed mappings (memfds, dma-bufs, BARs) are counted.
	 */
	return count_named_maps();
#endif
	f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* ---------------------------------------------------------------------- */
/* The operations: run() returns >= 0 on success; check() verifies a      */
/* success; undo() takes it back; state() digests the object's state.     */

struct op {
	const char *name;
	long (*run)(void);
	bool (*check)(long r);
	void (*undo)(long r);
	long (*state)(void);
};

static bool check_dmabuf_fd(long r)
{
	struct p2p_dmabuf *b;

	if (p2p_dmabuf_get((int)r, &b))
		return false;
	p2p_dmabuf_put(b);
	return true;
}

static void undo_close(long r)
{
	CHECK_OK(p2p_close((int)r));
}

static long run_export1(void)
{
	return t_dmabuf_range(dev.vdev, 2, 0, LEN);
}

static const struct vfio_region_dma_range three[3] = {
	{ .offset = 8 * PAGE, .length = 2 * PAGE },
	{ .offset = 0, .length = PAGE },
	{ .offset = 64 * PAGE, .length = 16 * PAGE },
};

static long run_export3(void)
{
	return t_dmabuf(dev.vdev, 2, three, 3);
}

static long run_fd_install(void)
{
	return p2p_dmabuf_fd_install(buf, O_CLOEXEC);
}

static long run_dup(void)
{
	return p2p_dup(dfd);
}

static struct t_importer imp;

static long run_attach(void)
{
	return t_importer_attach(&imp, buf, P2P_ATTACH_PEER2PEER, true);
}

static bool check_attach(long r)
{
	(void)r;
	return imp.attach && p2p_attachment_dmabuf(imp.attach) == buf;
}

static void undo_attach(long r)
{
	(void)r;
	t_importer_detach(&imp);
	memset(&imp, 0, sizeof(imp));
}

static long run_map(void)
{
	return t_importer_map(&imp);
}

static bool check_map(long r)
{
	(void)r;
	return imp.sgt && imp.sgt->nents == 1 && imp.sgt->ents[0].length == LEN;
}

static void undo_map(long r)
{
	(void)r;
	p2p_attachment_unmap(imp.attach, imp.sgt);
	imp.sgt = NULL;
}

static void *va;

static long run_dmabuf_mmap(void)
{
	return p2p_dmabuf_mmap(buf, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &va);
}

static long run_bar_mmap(void)
{
	return p2p_vfio_device_mmap(dev.vdev, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED,
				    P2P_VFIO_REGION_OFFSET(2) + 4 * PAGE, &va);
}

/* The mapping shows the BAR's bytes at its offset, every page. */
static bool check_mapping_at(uint64_t off)
{
	for (uint64_t o = 0; o < LEN; o += PAGE) {
		uint8_t v;

		if (t_load_faults((uint8_t *)va + o, &v) || v != t_pattern(off + o))
			return false;
	}
	return true;
}

static bool check_dmabuf_mmap(long r)
{
	(void)r;
	return check_mapping_at(0);
}

static bool check_bar_mmap(long r)
{
	(void)r;
	return check_mapping_at(4 * PAGE);
}

static void undo_mmap(long r)
{
	(void)r;
	CHECK_OK(p2p_munmap(va, LEN));
	va = NULL;
}

static uint64_t iova;

static long nr_areas(void)
{
	return (long)p2p_ioas_nr_areas(ioas) * 1000 + p2p_ioas_nr_areas(ioas2);
}

static long run_ioas_map(void)
{
	return p2p_ioas_map(ioas, anon, LEN, &iova, P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE);
}

static long run_ioas_map_file(void)
{
	return p2p_ioas_map_file(ioas, dfd, 0, LEN, &iova,
				 P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE);
}

static bool check_ioas(long r)
{
	uint8_t b;

	(void)r;
	return p2p_ioas_nr_areas(ioas) == 1 && !p2p_ioas_access_rw(ioas, iova, &b, 1, 0) &&
	       b == 1;
}

/* A dma-buf area is not CPU-accessible through the IOAS (2.4): -EINVAL says it is there. */
static bool check_ioas_dmabuf(long r)
{
	uint8_t b;

	(void)r;
	return p2p_ioas_nr_areas(ioas) == 1 && p2p_ioas_access_rw(ioas, iova, &b, 1, 0) == -EINVAL;
}

static void undo_ioas_map(long r)
{
	(void)r;
	CHECK_OK(p2p_ioas_unmap(ioas, iova, LEN, NULL));
}

#define UNMAP_IOVA (1ull << 30)

/* The unmap operation starts mapped (set up in main) and undoes by mapping again. */
static long run_ioas_unmap(void)
{
	return p2p_ioas_unmap(ioas, UNMAP_IOVA, LEN, NULL);
}

static bool check_unmapped(long r)
{
	(void)r;
	return p2p_ioas_nr_areas(ioas) == 0;
}

static void remap(long r)
{
	uint64_t i = UNMAP_IOVA;

	(void)r;
	CHECK_OK(p2p_ioas_map_file(ioas, dfd, 0, LEN, &i,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
}

static long run_ioas_copy(void)
{
	return p2p_ioas_copy(ioas2, ioas, UNMAP_IOVA, LEN, &iova,
			     P2P_IOAS_MAP_READABLE | P2P_IOAS_MAP_WRITEABLE);
}

static bool check_copy(long r)
{
	uint8_t b;

	(void)r;
	return p2p_ioas_nr_areas(ioas2) == 1 && p2p_ioas_access_rw(ioas2, iova, &b, 1, 0) == -EINVAL;
}

static void undo_copy(long r)
{
	(void)r;
	CHECK_OK(p2p_ioas_unmap(ioas2, iova, LEN, NULL));
}

static int uring_update(unsigned int slot, const struct io_uring_regbuf_desc *d)
{
	struct io_uring_rsrc_update2 up = {
		.offset = slot,
		.resv = IORING_RSRC_UPDATE_EXTENDED,
		.data = (uintptr_t)d,
		.nr = 1,
	};

	return p2p_uring_register_buffers_update(ring, &up);
}

static long run_uring_slot(void)
{
	return p2p_uring_register_dmabuf(ring, 1, dfd, file_fd);
}

static long slots(void)
{
	return p2p_uring_slot_mapped(ring, 0) * 2 + p2p_uring_slot_mapped(ring, 1);
}

/* IORING_OP_WRITE_FIXED of the first page of slot 1 to the file: the bytes or -errno. */
static long slot_write(void)
{
	struct io_uring_sqe sqe = {
		.opcode = IORING_OP_WRITE_FIXED,
		.fd = file_fd,
		.addr = 0,
		.len = PAGE,
		.off = 0,
		.buf_index = 1,
	};
	struct io_uring_cqe cqe;
	long ret = p2p_uring_submit_sqe(ring, &sqe);

	if (ret < 0)
		return ret;
	ret = p2p_uring_submit(ring);
	if (ret < 0)
		return ret;
	ret = p2p_uring_wait_cqe(ring, &cqe, true);
	return ret < 0 ? ret : cqe.res;
}

static bool check_slot(long r)
{
	uint8_t page[PAGE];

	if (r != 0 || pwrite(file_fd, (uint8_t[PAGE]){ 0 }, PAGE, 0) != (ssize_t)PAGE ||
	    slot_write() != (long)PAGE || !p2p_uring_slot_mapped(ring, 1) ||
	    pread(file_fd, page, PAGE, 0) != (ssize_t)PAGE)
		return false;
	for (unsigned int i = 0; i < PAGE; i++)
		if (page[i] != t_pattern(i))
			return false;
	return true;
}

/* Registration and the first I/O, which maps the slot. */
static long run_uring_slot_io(void)
{
	struct io_uring_regbuf_desc d = { .type = IORING_REGBUF_EMPTY };
	long r = p2p_uring_register_dmabuf(ring, 1, dfd, file_fd);

	if (r < 0)
		return r;
	r = slot_write();
	if (r == (long)PAGE)
		return 0;
	CHECK_ERR(uring_update(1, &d), 1);
	return r < 0 ? r : -EIO;
}

static bool check_slot_io(long r)
{
	return r == 0 && p2p_uring_slot_mapped(ring, 1);
}

static void undo_slot(long r)
{
	struct io_uring_regbuf_desc d = { .type = IORING_REGBUF_EMPTY };

	(void)r;
	CHECK_ERR(uring_update(1, &d), 1);
}

static long run_heap_alloc(void)
{
	return p2p_dma_heap_alloc(heap, LEN, O_RDWR | O_CLOEXEC, 0);
}

static struct p2p_vfio_device *vdev2;

static long run_dev_open(void)
{
	return p2p_vfio_device_open(dev.pci, &vdev2);
}

static long open_count(void)
{
	return p2p_pci_dev_open_count(dev.pci);
}

static bool check_dev_open(long r)
{
	(void)r;
	return vdev2 && p2p_pci_dev_open_count(dev.pci) == 2;
}

static void undo_dev_open(long r)
{
	(void)r;
	p2p_vfio_device_close(vdev2);
	vdev2 = NULL;
}

static struct p2p_pci_dev *pci2;

static long run_dev_create(void)
{
	struct p2p_pci_dev_info info;

	t_dev_info(&info, "0000:05:00.0", BAR2_SIZE, 0, NULL, 5);
	return p2p_pci_dev_create(&info, &pci2);
}

static long run_ce_create(void)
{
	return p2p_copy_engine_create("0000:06:00.0", NULL, 6, &pci2);
}

static long run_sd_create(void)
{
	return p2p_storage_create("0000:07:00.0", NULL, 7, NULL, 1 << 20, &pci2);
}

static bool check_pci2(long r)
{
	(void)r;
	return pci2 != NULL;
}

static void undo_pci2(long r)
{
	(void)r;
	p2p_pci_dev_put(pci2);
	pci2 = NULL;
}

static struct p2p_uring *ring2;

static long run_uring_create(void)
{
	return p2p_uring_create(8, 4, &ring2);
}

static bool check_ring2(long r)
{
	(void)r;
	return ring2 && !p2p_uring_slot_mapped(ring2, 0);
}

static void undo_ring2(long r)
{
	(void)r;
	p2p_uring_destroy(ring2);
	ring2 = NULL;
}

static struct p2p_iommufd *ictx2;

static long run_iommufd_open(void)
{
	struct p2p_ioas *a;
	uint32_t id;
	int ret = p2p_iommufd_open(&ictx2);

	if (ret)
		return ret;
	ret = p2p_ioas_alloc(ictx2, &id, &a);
	if (ret) {
		p2p_iommufd_close(ictx2);
		ictx2 = NULL;
		return ret;
	}
	p2p_ioas_put(a);
	return 0;
}

static bool check_ictx2(long r)
{
	(void)r;
	return ictx2 != NULL;
}

static void undo_ictx2(long r)
{
	(void)r;
	p2p_iommufd_close(ictx2);
	ictx2 = NULL;
}

static long no_state(void)
{
	return 0;
}

static const struct op ops[] = {
	{ "export (feature 11, one range)", run_export1, check_dmabuf_fd, undo_close, open_count },
	{ "export (feature 11, three ranges)", run_export3, check_dmabuf_fd, undo_close,
	  open_count },
	{ "p2p_dmabuf_fd_install", run_fd_install, check_dmabuf_fd, undo_close, no_state },
	{ "p2p_dup", run_dup, check_dmabuf_fd, undo_close, no_state },
	{ "attach", run_attach, check_attach, undo_attach, no_state },
	{ "p2p_dmabuf_mmap", run_dmabuf_mmap, check_dmabuf_mmap, undo_mmap, no_state },
	{ "BAR mmap (p2p_vfio_device_mmap)", run_bar_mmap, check_bar_mmap, undo_mmap, open_count },
	{ "IOAS map", run_ioas_map, check_ioas, undo_ioas_map, nr_areas },
	{ "IOAS map_file (dma-buf)", run_ioas_map_file, check_ioas_dmabuf, undo_ioas_map, nr_areas },
	{ "IOAS unmap", run_ioas_unmap, check_unmapped, remap, nr_areas },
	{ "IOAS copy", run_ioas_copy, check_copy, undo_copy, nr_areas },
	{ "io_uring dma-buf slot", run_uring_slot, check_slot, undo_slot, slots },
	{ "io_uring slot + first I/O", run_uring_slot_io, check_slot_io, undo_slot, slots },
	{ "heap alloc", run_heap_alloc, check_dmabuf_fd, undo_close, no_state },
	{ "device open", run_dev_open, check_dev_open, undo_dev_open, open_count },
	{ "PCI function create", run_dev_create, check_pci2, undo_pci2, no_state },
	{ "copy engine create", run_ce_create, check_pci2, undo_pci2, no_state },
	{ "storage create", run_sd_create, check_pci2, undo_pci2, no_state },
	{ "io_uring create", run_uring_create, check_ring2, undo_ring2, no_state },
	{ "iommufd open + IOAS alloc", run_iommufd_open, check_ictx2, undo_ictx2, no_state },
};

struct snap {
	int fds, maps;
	long live, state;
};

static struct snap snap(const struct op *op)
{
	return (struct snap){ t_count_fds(), count_maps(), failnth_live_allocs(), op->state() };
}

/* Once without injection: must work. */
static void run_clean(const struct op *op, const char *when)
{
	long r = op->run();

	if (r < 0) {
		fprintf(stderr, "%s: run %s failed: %s\n", op->name, when, strerror((int)-r));
		t_failures++;
		return;
	}
	CHECK(op->check(r));
	op->undo(r);
}

static void fail_nth(const struct op *op)
{
	unsigned long n, failed = 0, tolerated = 0;

	t_section(op->name);
	run_clean(op, "first"); /* warm up: lazy setups, caches */
	for (n = 1; n <= MAX_N; n++) {
		struct snap before = snap(op), after;
		const char *victim;
		bool hit;
		long r;

		failnth_arm(n);
		r = op->run();
		hit = failnth_disarm();
		victim = failnth_victim();
		if (!hit) {
			CHECK(r >= 0);
			if (r >= 0) {
				CHECK(op->check(r));
				op->undo(r);
			}
			break;
		}
		if (r >= 0) {
			/* Tolerated: then the effect must be complete. */
			tolerated++;
			if (!op->check(r)) {
				fprintf(stderr, "%s: n=%lu (%s failed): succeeded half-done\n",
					op->name, n, victim);
				t_failures++;
			}
			op->undo(r);
		} else {
			failed++;
			after = snap(op);
			if (r < -4095 || after.fds != before.fds || after.maps != before.maps ||
			    after.live != before.live || after.state != before.state) {
				fprintf(stderr,
					"%s: n=%lu (%s failed) -> %ld: fds %d->%d, maps %d->%d, "
					"heap blocks %ld->%ld, state %ld->%ld\n",
					op->name, n, victim, r, before.fds, after.fds, before.maps,
					after.maps, before.live, after.live, before.state,
					after.state);
				t_failures++;
			}
		}
		run_clean(op, "after an injected failure");
	}
	CHECK(n <= MAX_N);
	printf("%-36s %3lu failable calls: %lu -errno, %lu tolerated\n", op->name, n - 1, failed,
	       tolerated);
}


/* ---------------------------------------------------------------------- */
/* The door's calls (src/door), as the preload makes them: path opens     */
/* through door_map_path() + door_open_node() (the constructors), the     */
/* p2p_fd_* entries the wrappers forward to, the config parser and loader, */
/* and the sysfs tree generation.                                          */

#define DOOR_BDF "0000:05:00.0"
#define DOOR_GROUP "25"
static const char door_conf[] = "gpu " DOOR_BDF " group=" DOOR_GROUP " bar2=1M,64,pf\n";
static char door_tmp[64], door_conf_path[96], door_cdev[320];
static int door_container = -1, door_group = -1, door_dev = -1, door_ictx = -1, door_heap = -1,
	   door_buf = -1;

/* open(2) of a door path as the preload's open wrapper does it: an fd or -errno. */
static long door_path_open(const char *path, int flags)
{
	struct door_target t;
	enum door_node node = door_map_path(path, &t);

	if (node == DOOR_NOT_MINE || node == DOOR_TREE)
		return -ENOENT;
	return door_open_node(&t, flags);
}

static bool check_file(long r)
{
	return p2p_fd_is_file((int)r);
}

static void undo_plain_close(long r)
{
	CHECK(close((int)r) == 0);
}

static long run_open_container(void)
{
	return door_path_open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
}

static long run_open_group(void)
{
	return door_path_open("/dev/vfio/" DOOR_GROUP, O_RDWR | O_CLOEXEC);
}

static long run_open_cdev(void)
{
	return door_path_open(door_cdev, O_RDWR | O_CLOEXEC);
}

static long run_open_iommu(void)
{
	return door_path_open("/dev/iommu", O_RDWR | O_CLOEXEC);
}

static long run_open_heap(void)
{
	return door_path_open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
}

static long run_open_config(void)
{
	return door_path_open("/sys/bus/pci/devices/" DOOR_BDF "/config", O_RDONLY | O_CLOEXEC);
}

static bool check_config(long r)
{
	uint16_t id[2] = { 0 };

	return pread((int)r, id, 4, 0) == 4 && id[0] == 0x1b36 && id[1] == 0x0110;
}

static long run_open_bufinfo(void)
{
	return door_path_open("/sys/kernel/debug/dma_buf/bufinfo", O_RDONLY | O_CLOEXEC);
}

static bool check_bufinfo(long r)
{
	char b[64];

	return pread((int)r, b, sizeof(b), 0) > 0;
}

static long run_get_device_fd(void)
{
	return p2p_fd_ioctl(door_group, VFIO_GROUP_GET_DEVICE_FD, (void *)DOOR_BDF);
}

static long run_fd_export(void)
{
	uint8_t raw[sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_dma_buf) +
		    sizeof(struct vfio_region_dma_range)] = { 0 };
	struct vfio_device_feature *f = (void *)raw;
	struct vfio_device_feature_dma_buf *db = (void *)f->data;

	f->argsz = sizeof(raw);
	f->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	db->region_index = 2;
	db->open_flags = O_RDWR | O_CLOEXEC;
	db->nr_ranges = 1;
	db->dma_ranges[0] = (struct vfio_region_dma_range){ .offset = 0, .length = LEN };
	return p2p_fd_ioctl(door_dev, VFIO_DEVICE_FEATURE, raw);
}

static long run_fd_ioas_alloc(void)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	long r = p2p_fd_ioctl(door_ictx, IOMMU_IOAS_ALLOC, &a);

	return r < 0 ? r : (long)a.out_ioas_id;
}

static bool check_ioas_id(long r)
{
	struct iommu_ioas_iova_ranges q = { .size = sizeof(q), .ioas_id = (uint32_t)r };
	long ret = p2p_fd_ioctl(door_ictx, IOMMU_IOAS_IOVA_RANGES, &q);

	/* An IOAS: EMSGSIZE with the count of its ranges (none asked for). */
	return r > 0 && ret == -EMSGSIZE && q.num_iovas > 0;
}

static void undo_ioas_id(long r)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = (uint32_t)r };

	CHECK_OK(p2p_fd_ioctl(door_ictx, IOMMU_DESTROY, &d));
}

static long run_fd_heap_alloc(void)
{
	struct dma_heap_allocation_data a = { .len = LEN, .fd_flags = O_RDWR | O_CLOEXEC };
	long r = p2p_fd_ioctl(door_heap, DMA_HEAP_IOCTL_ALLOC, &a);

	return r < 0 ? r : (long)a.fd;
}

static void *door_va;

static long run_fd_mmap(void)
{
	return p2p_fd_mmap(door_buf, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &door_va);
}

static bool check_fd_mmap(long r)
{
	(void)r;
	return door_va && !t_faults_anywhere(door_va, LEN);
}

static void undo_fd_mmap(long r)
{
	(void)r;
	CHECK_OK(p2p_munmap(door_va, LEN));
	door_va = NULL;
}

#define DOOR_DUP_TARGET 700

static long run_fd_dup3(void)
{
	return p2p_fd_dup3(door_buf, DOOR_DUP_TARGET, O_CLOEXEC);
}

static bool check_dup3(long r)
{
	return r == DOOR_DUP_TARGET && check_dmabuf_fd(r) &&
	       (fcntl((int)r, F_GETFD) & FD_CLOEXEC);
}

/* An fd the kernel made (as SCM_RIGHTS does), given its own reference. */
static long run_fd_adopt(void)
{
	int raw = dup(door_buf), ret;

	if (raw < 0)
		return -errno;
	ret = p2p_fd_adopt(raw);
	if (ret < 0) {
		close(raw);
		return ret;
	}
	return raw;
}

static bool check_adopt(long r)
{
	return p2p_fd_is_file((int)r) && check_dmabuf_fd(r);
}

static struct door_config door_cfg2;

static long run_config_parse(void)
{
	static const char text[] = "# three devices\n"
				   "gpu 0000:0a:00.0 group=7 bar0=16K bar2=2M,64,pf vendor=0x10de\n"
				   "copy-engine 0000:0b:00.0\n"
				   "storage 0000:0c:00.0 file=/nonexistent/image.img # not checked here\n";
	char err[256];

	memset(&door_cfg2, 0, sizeof(door_cfg2));
	int ret = door_config_parse(&door_cfg2, text, sizeof(text) - 1, "t.conf", 1, err,
				    sizeof(err));
	return ret ? ret : (long)door_cfg2.n;
}

static bool check_config_parse(long r)
{
	return r == 3 && door_cfg2.devs[0].vendor == 0x10de && door_cfg2.devs[2].file &&
	       !strcmp(door_cfg2.devs[2].file, "/nonexistent/image.img");
}

static long run_config_load(void)
{
	char err[256];
	int ret;

	memset(&door_cfg2, 0, sizeof(door_cfg2));
	ret = door_config_load(&door_cfg2, err, sizeof(err));
	return ret ? ret : (long)door_cfg2.n;
}

static bool check_config_load(long r)
{
	return r == 1 && !strcmp(door_cfg2.devs[0].bdf, DOOR_BDF) && door_cfg2.devs[0].group == 25;
}

static void undo_config(long r)
{
	(void)r;
	door_config_free(&door_cfg2);
	CHECK(door_cfg2.n == 0);
}

static char door_top[PATH_MAX];

static long run_tree(void)
{
	return door_tree_generate(door_top);
}

static bool check_tree(long r)
{
	char p[PATH_MAX + 128], link[64];
	struct stat st;
	ssize_t n;

	snprintf(p, sizeof(p), "%s/sys/bus/pci/devices/%s/iommu_group", door_top, DOOR_BDF);
	n = readlink(p, link, sizeof(link) - 1);
	if (r || n <= 0)
		return false;
	link[n] = 0;
	snprintf(p, sizeof(p), "%s/sys/bus/pci/devices/%s/config", door_top, DOOR_BDF);
	return !strcmp(link, "../../../kernel/iommu_groups/" DOOR_GROUP) && !stat(p, &st) &&
	       st.st_size == 4096;
}

static void undo_tree(long r)
{
	(void)r;
	door_tree_delete(door_top);
}

/* Entries under the door's $TMPDIR: a failed generation leaves none. */
static long tmp_entries(void)
{
	DIR *d = opendir(door_tmp);
	struct dirent *e;
	long n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static const struct op door_ops[] = {
	{ "door: open /dev/vfio/vfio", run_open_container, check_file, undo_close, no_state },
	{ "door: open /dev/vfio/N", run_open_group, check_file, undo_close, no_state },
	{ "door: open /dev/vfio/devices/vfioN", run_open_cdev, check_file, undo_close, no_state },
	{ "door: open /dev/iommu", run_open_iommu, check_file, undo_close, no_state },
	{ "door: open /dev/dma_heap/system", run_open_heap, check_file, undo_close, no_state },
	{ "door: open sysfs config", run_open_config, check_config, undo_plain_close, no_state },
	{ "door: open bufinfo", run_open_bufinfo, check_bufinfo, undo_plain_close, no_state },
	{ "door: GROUP_GET_DEVICE_FD", run_get_device_fd, check_file, undo_close, no_state },
	{ "door: p2p_fd_ioctl export", run_fd_export, check_dmabuf_fd, undo_close, no_state },
	{ "door: p2p_fd_ioctl IOAS_ALLOC", run_fd_ioas_alloc, check_ioas_id, undo_ioas_id,
	  no_state },
	{ "door: p2p_fd_ioctl heap alloc", run_fd_heap_alloc, check_dmabuf_fd, undo_close,
	  no_state },
	{ "door: p2p_fd_mmap", run_fd_mmap, check_fd_mmap, undo_fd_mmap, no_state },
	{ "door: p2p_fd_dup3", run_fd_dup3, check_dup3, undo_close, no_state },
	{ "door: p2p_fd_adopt", run_fd_adopt, check_adopt, undo_close, no_state },
	{ "door: config parse", run_config_parse, check_config_parse, undo_config, no_state },
	{ "door: config load", run_config_load, check_config_load, undo_config, no_state },
	{ "door: sysfs tree generation", run_tree, check_tree, undo_tree, tmp_entries },
};

#define DOOR_PATH_OPS 7 /* the opens come first in door_ops[] */

static void door_section(void)
{
	struct door_target t;
	struct dirent *e;
	DIR *d;
	int fd;

	/* A private $TMPDIR and a configuration of our own (the test's 01:00.0 is taken). */
	snprintf(door_tmp, sizeof(door_tmp), "/tmp/p2pbuf-failnth-XXXXXX");
	if (!mkdtemp(door_tmp)) {
		CHECK(0);
		return;
	}
	setenv("TMPDIR", door_tmp, 1);
	snprintf(door_conf_path, sizeof(door_conf_path), "%s.conf", door_tmp);
	fd = open(door_conf_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && write(fd, door_conf, sizeof(door_conf) - 1) == sizeof(door_conf) - 1);
	close(fd);
	setenv("P2PBUF_DOOR_CONFIG", door_conf_path, 1);
	unsetenv("P2PBUF_DOOR_DEVICES");
	door_load_config();
	CHECK_OK(door_init());
	p2p_set_log(NULL, P2P_LOG_ERR); /* door_load_config() logs to stderr */
	CHECK(door_map_path("/sys/bus/pci/devices/" DOOR_BDF "/vfio-dev", &t) == DOOR_TREE);
	d = opendir(t.path);
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "vfio", 4))
			snprintf(door_cdev, sizeof(door_cdev), "/dev/vfio/devices/%s", e->d_name);
	if (d)
		closedir(d);
	CHECK(door_cdev[0]);

	/* Path opens first: a group opens once at a time. */
	for (size_t i = 0; i < DOOR_PATH_OPS; i++)
		fail_nth(&door_ops[i]);
	/* What the other ops work on: a container with the group, its device, iommufd, the heap. */
	door_container = (int)run_open_container();
	door_group = (int)run_open_group();
	CHECK(door_container >= 0 && door_group >= 0);
	CHECK_OK(p2p_fd_ioctl(door_group, VFIO_GROUP_SET_CONTAINER, &door_container));
	CHECK_OK(p2p_fd_ioctl(door_container, VFIO_SET_IOMMU, (void *)VFIO_TYPE1v2_IOMMU));
	door_dev = (int)run_get_device_fd();
	door_ictx = (int)run_open_iommu();
	door_heap = (int)run_open_heap();
	CHECK(door_dev >= 0 && door_ictx >= 0 && door_heap >= 0);
	door_buf = (int)run_fd_export();
	CHECK(door_buf >= 0);
	if (t_failures)
		return;
	for (size_t i = DOOR_PATH_OPS; i < ARRAY_SIZE(door_ops); i++)
		fail_nth(&door_ops[i]);
	CHECK_OK(p2p_close(door_buf));
	CHECK_OK(p2p_close(door_heap));
	CHECK_OK(p2p_close(door_ictx));
	CHECK_OK(p2p_close(door_dev));
	CHECK_OK(p2p_close(door_group));
	CHECK_OK(p2p_close(door_container));
	unlink(door_conf_path);
	CHECK(tmp_entries() == 1); /* the door's live tree only */
	door_release();
	CHECK(tmp_entries() == 0);
	rmdir(door_tmp);
}

/* ---------------------------------------------------------------------- */
/* Revocation                                                              */

/*
 * An un-revoked mapping works in full: also where it has no page tables
 * yet (dropped here), so a range left registered with the userfaultfd
 * shows.
 */
static void unrevoked_works(void *map)
{
	CHECK(!madvise(map, LEN, MADV_DONTNEED));
	CHECK(!t_faults_anywhere(map, LEN));
}

/* p2p_dmabuf_revoke / p2p_dmabuf_unrevoke of @buf with mapping @map. */
static void revoke_core(void *map)
{
	unsigned long n;
	long r;
	bool hit = true;

	t_section("revoke (p2p_dmabuf_revoke)");
	for (n = 1; hit && n <= MAX_N; n++) {
		failnth_arm(n);
		r = p2p_dmabuf_revoke(buf, P2P_DMABUF_TEMP_REVOKED);
		hit = failnth_disarm();
		if (!r && !t_read_faults(map)) {
			fprintf(stderr, "revoke n=%lu (%s failed): returned 0, mapping not zapped\n",
				n, failnth_victim());
			t_failures++;
		}
		if (r) {
			/* A retry without injection finishes the job. */
			CHECK_OK(p2p_dmabuf_revoke(buf, P2P_DMABUF_TEMP_REVOKED));
			CHECK(t_read_faults(map));
		}
		CHECK_OK(p2p_dmabuf_unrevoke(buf));
		unrevoked_works(map);
	}
	t_section("un-revoke (p2p_dmabuf_unrevoke)");
	hit = true;
	for (n = 1; hit && n <= MAX_N; n++) {
		CHECK_OK(p2p_dmabuf_revoke(buf, P2P_DMABUF_TEMP_REVOKED));
		failnth_arm(n);
		r = p2p_dmabuf_unrevoke(buf);
		hit = failnth_disarm();
		if (!r && t_read_faults(map)) {
			fprintf(stderr, "unrevoke n=%lu (%s failed): returned 0, mapping faults\n",
				n, failnth_victim());
			t_failures++;
		}
		if (r)
			CHECK_OK(p2p_dmabuf_unrevoke(buf));
		unrevoked_works(map);
	}
}

/* Memory decode off/on and reset through the device, with BAR mapping @map. */
static void revoke_device(void *map)
{
	unsigned long n;
	long r;
	bool hit = true;

	t_section("revoke (memory decode off)");
	for (n = 1; hit && n <= MAX_N; n++) {
		failnth_arm(n);
		r = t_mem_enable(dev.vdev, false);
		hit = failnth_disarm();
		if (!r && !t_read_faults(map)) {
			fprintf(stderr,
				"memory off n=%lu (%s failed): returned 0, mapping not zapped\n", n,
				failnth_victim());
			t_failures++;
		}
		if (r)
			CHECK_OK(t_mem_enable(dev.vdev, false));
		failnth_arm(n);
		r = t_mem_enable(dev.vdev, true);
		failnth_disarm();
		if (!r && t_read_faults(map)) {
			fprintf(stderr, "memory on n=%lu (%s failed): returned 0, mapping faults\n",
				n, failnth_victim());
			t_failures++;
		}
		if (r)
			CHECK_OK(t_mem_enable(dev.vdev, true));
		unrevoked_works(map);
	}
	t_section("reset");
	hit = true;
	for (n = 1; hit && n <= MAX_N; n++) {
		failnth_arm(n);
		r = p2p_vfio_device_reset(dev.vdev);
		hit = failnth_disarm();
		if (!r && t_read_faults(map)) {
			fprintf(stderr, "reset n=%lu (%s failed): returned 0, mapping faults\n", n,
				failnth_victim());
			t_failures++;
		}
		if (r)
			CHECK_OK(p2p_vfio_device_reset(dev.vdev));
		unrevoked_works(map);
	}
}

/* ---------------------------------------------------------------------- */
/* The vfio-user server's calls: an in-process server driven by a raw     */
/* client over a socketpair, the n-th failable call of its threads fails. */

#define VU_GPU_BAR2 (1024 * 1024ul)
#define VU_IOVA 0x100000ull
#define VU_MAP_LEN (64 * 1024ul)

struct vu_rep {
	struct vfio_user_header h;
	uint8_t p[4096];
	int fd;
};

static uint16_t vu_id;

static int vu_send(int s, uint16_t cmd, const void *p, size_t len, int fd)
{
	union {
		struct cmsghdr a;
		char b[CMSG_SPACE(sizeof(int))];
	} cb;
	uint8_t buf[512];
	struct vfio_user_header *h = (void *)buf;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(*h) + len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	memset(h, 0, sizeof(*h));
	h->msg_id = ++vu_id;
	h->cmd = cmd;
	h->msg_size = (uint32_t)(sizeof(*h) + len);
	memcpy(buf + sizeof(*h), p, len);
	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&cb, 0, sizeof(cb));
		mh.msg_control = cb.b;
		mh.msg_controllen = sizeof(cb.b);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(s, &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len ? 0 : -1;
}

enum { VU_EOF = -1, VU_HANG = -2, VU_BAD = -3 };

/* One reply: 0, its errno (> 0), VU_EOF (clean disconnect), VU_HANG (5 s), VU_BAD. */
static int vu_reply(int s, uint16_t cmd, struct vu_rep *r, size_t *len)
{
	union {
		struct cmsghdr a;
		char b[CMSG_SPACE(sizeof(int) * 4)];
	} cb;
	struct pollfd pf = { .fd = s, .events = POLLIN };
	struct iovec iov = { .iov_base = &r->h, .iov_len = sizeof(r->h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.b,
			     .msg_controllen = sizeof(cb.b) };
	size_t got = 0, want;
	ssize_t n;

	r->fd = -1;
	*len = 0;
	if (poll(&pf, 1, 5000) != 1)
		return VU_HANG;
	n = recvmsg(s, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC);
	if (n < 0) /* the control buffer holds nothing of this call: no fds to take */
		return errno == ECONNRESET ? VU_EOF : VU_BAD;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (r->fd < 0)
					r->fd = fd;
				else
					close(fd);
			}
	if (n == 0)
		return VU_EOF;
	if (n != sizeof(r->h) || r->h.msg_size < sizeof(r->h) ||
	    r->h.msg_size - sizeof(r->h) > sizeof(r->p))
		return VU_BAD;
	want = r->h.msg_size - sizeof(r->h);
	while (got < want) {
		n = recv(s, r->p + got, want - got, 0);
		if (n <= 0)
			return VU_BAD;
		got += (size_t)n;
	}
	*len = want;
	if ((r->h.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_TYPE_REPLY ||
	    r->h.msg_id != vu_id || r->h.cmd != cmd)
		return VU_BAD;
	return (r->h.flags & VFIO_USER_F_ERROR) ? (r->h.error_no ? (int)r->h.error_no : VU_BAD) : 0;
}

static int vu_do(int s, uint16_t cmd, const void *p, size_t len, int fd, struct vu_rep *r,
		 size_t *rlen)
{
	if (vu_send(s, cmd, p, len, fd))
		return errno == EPIPE || errno == ECONNRESET ? VU_EOF : VU_BAD;
	return vu_reply(s, cmd, r, rlen);
}

/*
 * The script: VERSION (with the p2pbuf capability), DEVICE_GET_INFO,
 * GET_REGION_INFO of BAR2, REGION_WRITE + REGION_READ of BAR2, DMA_MAP of a
 * memfd, feature 11 export, DMA_UNMAP.  Returns the step reached (7: all
 * done) and in *@res how the last step ended (0 ok, errno, VU_*).  A success
 * is checked: a wrong successful reply is VU_BAD.
 */
static int vu_script(int s, int memfd, int *res)
{
	static const char js[] =
		"{\"capabilities\":{\"max_msg_fds\":1,\"p2pbuf\":{\"dmabuf\":1,\"revoke\":1}}}";
	/*
	 * struct vfio_user_device_feature {argsz, flags}, the kernel's struct
	 * vfio_device_feature_dma_buf {region_index, open_flags, flags,
	 * nr_ranges}, one range {offset, length}.
	 */
	const uint32_t feat[10] = { 64, VFIO_USER_DEVICE_FEATURE_GET | 11, 2, O_RDWR, 0, 1,
				    0, 0, PAGE, 0 };
	uint8_t buf[256];
	struct vfio_user_version *v = (void *)buf;
	struct vfio_user_region_access *a = (void *)buf;
	struct vfio_user_device_info di = { .argsz = sizeof(di) };
	struct vfio_user_region_info ri = { .argsz = 256, .index = 2 };
	struct vfio_user_dma_map dm = { .argsz = sizeof(dm), .flags = 3, .addr = VU_IOVA,
					.size = VU_MAP_LEN };
	struct vfio_user_dma_unmap du = { .argsz = sizeof(du), .addr = VU_IOVA,
					  .size = VU_MAP_LEN };
	static struct vu_rep r;
	uint64_t data = 0x0123456789abcdefull;
	size_t len;
	int step = 0;

#define VU_STEP(call, ok)                                      \
	do {                                                   \
		*res = (call);                                 \
		if (r.fd >= 0)                                 \
			close(r.fd);                           \
		if (!*res && !(ok))                            \
			*res = VU_BAD;                         \
		if (*res)                                      \
			return step;                           \
		step++;                                        \
	} while (0)

	v->major = 0;
	v->minor = 2;
	memcpy(v->data, js, sizeof(js));
	VU_STEP(vu_do(s, VFIO_USER_VERSION, buf, sizeof(*v) + sizeof(js), -1, &r, &len),
		len > sizeof(*v) && strstr((char *)r.p + 4, "\"dmabuf\""));
	VU_STEP(vu_do(s, VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), -1, &r, &len),
		len == sizeof(di) && ((struct vfio_user_device_info *)r.p)->num_regions >= 9);
	VU_STEP(vu_do(s, VFIO_USER_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), -1, &r, &len),
		len >= sizeof(ri) && ((struct vfio_user_region_info *)r.p)->size == VU_GPU_BAR2 &&
			r.fd >= 0);
	*a = (struct vfio_user_region_access){ .offset = 0x100, .region = 2, .count = 8 };
	memcpy(buf + sizeof(*a), &data, 8);
	VU_STEP(vu_do(s, VFIO_USER_REGION_WRITE, buf, sizeof(*a) + 8, -1, &r, &len), true);
	VU_STEP(vu_do(s, VFIO_USER_REGION_READ, a, sizeof(*a), -1, &r, &len),
		len == sizeof(*a) + 8 && !memcmp(r.p + sizeof(*a), &data, 8));
	VU_STEP(vu_do(s, VFIO_USER_DMA_MAP, &dm, sizeof(dm), memfd, &r, &len), true);
	VU_STEP(vu_do(s, VFIO_USER_DEVICE_FEATURE, &feat, sizeof(feat), -1, &r, &len),
		len == sizeof(struct vfio_user_p2p_dmabuf) + 16 && r.fd >= 0);
	VU_STEP(vu_do(s, VFIO_USER_DMA_UNMAP, &du, sizeof(du), -1, &r, &len), true);
#undef VU_STEP
	return step;
}

/*
 * Mappings of files (memfds, dma-bufs, BARs): anonymous ones are left out,
 * the allocators' (ASan's above all) and thread stacks' (glibc caches them)
 * come and go with the server's threads.
 */
static int count_named_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char name[256] = "";

		if (sscanf(line, "%*s %*s %*s %*s %*s %255s", name) == 1 && name[0] &&
		    name[0] != '[')
			n++;
	}
	fclose(f);
	return n;
}

static int vu_clients_gone(struct p2p_vfio_user_server *srv)
{
	for (int i = 0; i < 5000; i++) {
		if (!p2p_vfio_user_server_nr_clients(srv))
			return 0;
		usleep(1000);
	}
	return -1;
}

static void vfio_user_section(void)
{
	static const char *const names[] = { "VERSION", "DEVICE_GET_INFO", "GET_REGION_INFO",
					     "REGION_WRITE", "REGION_READ", "DMA_MAP",
					     "feature 11 export", "DMA_UNMAP", "the end" };
	struct p2p_vfio_user_server_info si = { .argsz = sizeof(si), .revoke_timeout_ms = 500 };
	struct t_dev gpu = { 0 };
	unsigned long n, failed = 0, disconnects = 0;
	int memfd, res = 0;

	t_section("vfio-user server: fail-nth over its calls");
	CHECK_OK(t_dev_create(&gpu, "0000:05:00.0", VU_GPU_BAR2, 0, NULL, 5));
	memfd = memfd_create("failnth-vu", MFD_CLOEXEC);
	CHECK(memfd >= 0 && !ftruncate(memfd, VU_MAP_LEN));
	if (!gpu.pci || memfd < 0)
		return;
	for (n = 0; n <= MAX_N; n++) {
		struct snap before = { t_count_fds(), count_named_maps(), failnth_live_allocs(), 0 },
			    after;
		struct p2p_vfio_user_server *srv = NULL;
		int sv[2] = { -1, -1 }, step = -1, ret;
		bool hit;

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			CHECK(0);
			break;
		}
		/* n = 0: once without injection (lazy setups), then n = 1, 2, ... */
		failnth_arm_others(n ? n : ~0ul);
		ret = p2p_vfio_user_server_create(&si, &srv);
		if (!ret) {
			ret = p2p_vfio_user_server_add_fd(srv, gpu.pci, sv[1]);
			sv[1] = -1; /* the server's, also on failure */
		}
		if (!ret) {
			failnth_exclude_self(true); /* the raw client's own calls are not counted */
			step = vu_script(sv[0], memfd, &res);
			failnth_exclude_self(false);
		}
		/* The end of the run: disconnect (or destroy the server right away). */
		close(sv[0]);
		if (sv[1] >= 0)
			close(sv[1]);
		if (srv)
			CHECK_OK(vu_clients_gone(srv));
		hit = failnth_disarm_others();
		p2p_vfio_user_server_destroy(srv);
		if (step >= 0 && (res == VU_HANG || res == VU_BAD)) {
			fprintf(stderr, "vfio-user n=%lu (%s failed): %s at %s\n", n,
				failnth_victim_others(), res == VU_HANG ? "no reply in 5 s" :
				"a bad or wrong reply", names[step]);
			t_failures++;
		}
		if (!n) {
			CHECK(step == 8 && !ret);
			continue;
		}
		after = (struct snap){ t_count_fds(), count_named_maps(), failnth_live_allocs(), 0 };
		if (after.fds != before.fds || after.maps != before.maps ||
		    after.live != before.live) {
			fprintf(stderr,
				"vfio-user n=%lu (%s failed, %s): left fds %+d, maps %+d, heap blocks %+ld\n",
				n, failnth_victim_others(), step < 0 ? "setup" : names[step],
				after.fds - before.fds, after.maps - before.maps,
				after.live - before.live);
			t_failures++;
		}
		if (getenv("FAILNTH_VERBOSE"))
			printf("  n=%lu %s -> %s: %d\n", n, failnth_victim_others(),
			       step < 0 ? "setup" : names[step], step < 0 ? ret : res);
		if (!hit) {
			/* Fewer failable calls than n: the whole script must have worked. */
			CHECK(!ret && step == 8);
			break;
		}
		if (ret || step < 8)
			failed++;
		if (step >= 0 && res == VU_EOF)
			disconnects++;
	}
	CHECK(n <= MAX_N);
	printf("vfio-user server: %lu failable calls, %lu runs ended in an error, %lu of them in a disconnect\n",
	       n - 1, failed, disconnects);
	close(memfd);
	t_dev_destroy(&gpu);
}

static void revocation(void)
{
	void *map, *bar;

	CHECK_OK(p2p_dmabuf_mmap(buf, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0, &map));
	CHECK_OK(p2p_vfio_device_mmap(dev.vdev, NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), &bar));
	revoke_core(map);
	revoke_device(bar);
	CHECK_OK(p2p_munmap(bar, LEN));
	CHECK_OK(p2p_munmap(map, LEN));
}

int main(void)
{
	uint32_t id;

	t_begin();
	t_require_uffd();
	t_dev_create_or_skip(&dev, "0000:01:00.0", BAR2_SIZE, 1);
	t_bar_fill(dev.pci, 2, BAR2_SIZE);
	dfd = t_dmabuf_range(dev.vdev, 2, 0, LEN);
	CHECK(dfd >= 0);
	CHECK_OK(p2p_dmabuf_get(dfd, &buf));
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas2));
	CHECK_OK(p2p_uring_create(8, 4, &ring));
	CHECK_OK(p2p_dma_heap_open("system", &heap));
	file_fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (file_fd < 0)
		file_fd = open(".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	CHECK(file_fd >= 0);
	anon = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(anon != MAP_FAILED);
	memset(anon, 1, LEN);
	if (t_failures)
		return t_end();

	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		const struct op *op = &ops[i];

		if (op->run == run_ioas_unmap) {
			remap(0);
			fail_nth(op);
			CHECK_OK(run_ioas_unmap());
			continue;
		}
		if (op->run == run_ioas_copy) {
			remap(0);
			fail_nth(op);
			CHECK_OK(run_ioas_unmap());
			continue;
		}
		fail_nth(op);
		if (op->run == run_attach) {
			static const struct op map_op = { "attachment map", run_map, check_map,
							  undo_map, no_state };

			CHECK_OK(run_attach());
			fail_nth(&map_op);
			undo_attach(0);
		}
	}
	revocation();
	door_section();
	vfio_user_section();

	munmap(anon, LEN);
	close(file_fd);
	p2p_dma_heap_close(heap);
	p2p_uring_destroy(ring);
	p2p_ioas_put(ioas2);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ictx);
	p2p_dmabuf_put(buf);
	CHECK_OK(p2p_close(dfd));
	t_dev_destroy(&dev);
	return t_end();
}
