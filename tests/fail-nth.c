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
#include <signal.h>
#include <unistd.h>

#include <liburing.h>

#include "failnth.h"
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

static int count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;

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
