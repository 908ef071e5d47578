// SPDX-License-Identifier: MIT
/*
 * The vfio-user client against `p2pbuf serve` in another process: a remote
 * function's BARs through their region fds, trapped registers, the copy
 * engine DMA into client memory mapped with an fd (and without one:
 * DMA_READ/WRITE), a dma-buf export imported into a local IOAS, a revoke
 * from another client reaching this one before that client's write
 * returns (canaries), kill -9 of the server (ENODEV, no hang), and a raw
 * fake server for the error paths.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/vfio_user.h>

#include "drv_util.h"
#include "harness.h"

#define GPU "0000:01:00.0"
#define CE "0000:02:00.0"
#define BAR2 (2u << 20)
#define PG 4096u

static char dir[64];
static pid_t server = -1;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sock_path(char *out, size_t n, const char *bdf)
{
	snprintf(out, n, "%s/%s", dir, bdf);
}

/*
 * `p2pbuf serve` of @conf in directory @d, up once @bdf's socket is there; its pid or -1.
 * Spawned, not forked: this process has threads by then (clients' readers, the fork-tree
 * helper), and a fork would run the library's fork handlers in the child (and TSan refuses
 * threads after a multi-threaded fork).  Its output goes to @d/serve.log, so a server this
 * test leaves behind when it dies holds none of our pipes.
 */
static pid_t serve(const char *d, const char *conf, const char *bdf)
{
	const char *bdfs[] = { bdf, NULL };

	return t_serve(d, conf, bdfs, "2000");
}

static bool start_server(void)
{
	char conf[160];

	snprintf(conf, sizeof(conf), "gpu %s group=1 bar0=16K bar2=2M,64,pf\ncopy-engine %s group=2\n",
		 GPU, CE);
	server = serve(dir, conf, CE);
	return server > 0;
}

/* P2P_VFIO_USER_NO_TWIN for a second run of a test over one socket (default: twin_socket). */
static uint32_t connect_flags;

static struct p2p_vfio_user_client *connect_to(const char *bdf, const char *name)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .name = name,
						 .flags = connect_flags };
	struct p2p_vfio_user_client *c = NULL;
	char p[96];

	sock_path(p, sizeof(p), bdf);
	CHECK_OK(p2p_vfio_user_connect(p, &ci, &c));
	return c;
}

/* Identity, BAR memory through the region fd (shared between two clients). */
static void test_bars(struct p2p_vfio_user_client *a, struct p2p_vfio_user_client *b,
		      struct p2p_vfio_device *va, struct p2p_vfio_device *vb, uint8_t **ma,
		      uint8_t **mb)
{
	struct p2p_pci_dev *pa = p2p_vfio_user_client_pci(a);
	uint8_t cfg[12];
	uint64_t size;
	uint32_t flags;

	t_section("bars");
	CHECK(p2p_vfio_user_client_p2pbuf(a) && p2p_vfio_user_client_alive(a));
	CHECK(!strcmp(p2p_pci_dev_name(pa), "0000:21:00.0"));
	CHECK_OK(p2p_pci_dev_config_read(pa, 0, cfg, sizeof(cfg)));
	CHECK(cfg[0] | cfg[1]);		       /* a vendor */
	CHECK(cfg[11] == 0x03);		       /* display class, as the served gpu */
	CHECK_OK(p2p_pci_dev_bar_info(pa, 2, NULL, &size, &flags));
	CHECK(size == BAR2 && (flags & P2P_BAR_MEM64) && !(flags & P2P_BAR_TRAP));
	CHECK_OK(p2p_vfio_device_mmap(va, NULL, BAR2, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), (void **)ma));
	CHECK_OK(p2p_vfio_device_mmap(vb, NULL, BAR2, PROT_READ | PROT_WRITE, MAP_SHARED,
				      P2P_VFIO_REGION_OFFSET(2), (void **)mb));
	(*ma)[5] = 0x77;
	(*ma)[BAR2 - 1] = 0x78;
	CHECK((*mb)[5] == 0x77 && (*mb)[BAR2 - 1] == 0x78);
	uint8_t v = 0;

	CHECK(p2p_vfio_device_pread(vb, &v, 1, P2P_VFIO_REGION_OFFSET(2) + 5) == 1 && v == 0x77);
	(void)b;
}

/* The copy engine: trapped registers, DMA into fd-backed and anonymous memory. */
static void test_copy_engine(void)
{
	struct p2p_vfio_user_client *c = connect_to(CE, "0000:22:00.0");
	struct p2p_vfio_device *v = NULL;
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	uint32_t id;
	int mfd = memfd_create("ce-client", MFD_CLOEXEC), efd = eventfd(0, EFD_CLOEXEC);
	uint8_t *mem, *anon;
	uint64_t iova;

	t_section(connect_flags & P2P_VFIO_USER_NO_TWIN ? "copy-engine (one socket, no twin_socket)"
						       : "copy-engine (twin_socket)");
	if (!c)
		return;
	CHECK_OK(p2p_vfio_device_open(p2p_vfio_user_client_pci(c), &v));
	/* A fresh engine (the second run finds the first one's ring head). */
	CHECK_OK(p2p_vfio_device_ioctl(v, VFIO_DEVICE_RESET, NULL));
	CHECK(drv_reg_read(v, P2P_CE_REG_ID, 4) == P2P_CE_ID);
	CHECK(mfd >= 0 && ftruncate(mfd, 4 * PG) == 0);
	mem = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	anon = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED && anon != MAP_FAILED);
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	/* One memfd area before the attach (replayed), one after (with its fd), one anonymous. */
	iova = 0x10000;
	CHECK_OK(p2p_ioas_map_file(ioas, mfd, 0, 2 * PG, &iova,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
	CHECK_OK(p2p_vfio_device_attach_ioas(v, ioas));
	/* Attached again to the same IOAS: the server's mirror must survive it. */
	CHECK_OK(p2p_vfio_device_attach_ioas(v, ioas));
	iova = 0x20000;
	CHECK_OK(p2p_ioas_map_file(ioas, mfd, 2 * PG, 2 * PG, &iova,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
	iova = 0x30000;
	CHECK_OK(p2p_ioas_map(ioas, anon, PG, &iova,
			      P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
				      P2P_IOAS_MAP_WRITEABLE));
	/* Ring at 0x10000, completions at 0x11000, source at 0x20000, destinations. */
	struct p2p_ce_desc *ring = (struct p2p_ce_desc *)mem;
	struct p2p_ce_compl *compl = (struct p2p_ce_compl *)(mem + PG);

	memset(mem + 2 * PG, 0xab, PG);
	memset(anon, 0xcd, PG);
	ring[0] = (struct p2p_ce_desc){ .src = 0x20000, .dst = 0x21000, .len = PG, .id = 1 };
	ring[1] = (struct p2p_ce_desc){ .src = 0x21000, .dst = 0x21800, .len = 512, .id = 2 };
	ring[2] = (struct p2p_ce_desc){ .src = 0x20000, .dst = 0x21c00, .len = 256, .id = 3,
					.flags = P2P_CE_DESC_IRQ };
	/* SET_IRQS with a local eventfd: the server signals it itself. */
	/* Vector 0 our eventfd, vector 1 none: de-assigning 1 must leave 0 set. */
	uint8_t buf[sizeof(struct vfio_irq_set) + 8];
	struct vfio_irq_set *irq = (struct vfio_irq_set *)buf;
	int32_t e32[2] = { efd, -1 };

	*irq = (struct vfio_irq_set){ .argsz = sizeof(buf), .index = VFIO_PCI_MSI_IRQ_INDEX,
				      .flags = VFIO_IRQ_SET_DATA_EVENTFD |
					       VFIO_IRQ_SET_ACTION_TRIGGER,
				      .count = 2 };
	memcpy(irq->data, e32, 8);
	CHECK_OK(p2p_vfio_device_ioctl(v, VFIO_DEVICE_SET_IRQS, irq));
	CHECK_OK(drv_reg_write(v, P2P_CE_REG_RING, 0x10000, 8));
	CHECK_OK(drv_reg_write(v, P2P_CE_REG_RING_SIZE, 4, 4));
	CHECK_OK(drv_reg_write(v, P2P_CE_REG_COMPL, 0x11000, 8));
	CHECK_OK(drv_reg_write(v, P2P_CE_REG_CTRL, P2P_CE_CTRL_ENABLE, 4));
	CHECK_OK(drv_reg_write(v, P2P_CE_REG_DOORBELL, 3, 4));
	struct pollfd pfd = { .fd = efd, .events = POLLIN };

	CHECK(poll(&pfd, 1, 5000) == 1);
	for (int i = 0; i < 500 && drv_reg_read(v, P2P_CE_REG_HEAD, 4) != 3; i++)
		usleep(2000);
	CHECK(drv_reg_read(v, P2P_CE_REG_HEAD, 4) == 3);
	CHECK(compl[0].status == P2P_CE_OK && compl[1].status == P2P_CE_OK &&
	      compl[2].status == P2P_CE_OK);
	CHECK(mem[3 * PG] == 0xab && mem[3 * PG + PG - 1] == 0xab);
	CHECK(compl[0].bytes == PG && compl[2].id == 3);

	/* Unmapped locally: unmapped in the server, its DMA faults there. */
	ring[3] = (struct p2p_ce_desc){ .src = 0x20000, .dst = 0x20000 + 8 * PG, .len = 64, .id = 4 };
	CHECK_OK(drv_reg_write(v, P2P_CE_REG_DOORBELL, 4, 4));
	for (int i = 0; i < 500 && drv_reg_read(v, P2P_CE_REG_HEAD, 4) != 4; i++)
		usleep(2000);
	CHECK(compl[3].status == P2P_CE_FAULT);

	/* An area unmapped here is gone from the server before the unmap returns. */
	CHECK_OK(p2p_ioas_unmap(ioas, 0x20000, 2 * PG, NULL));
	ring[0] = (struct p2p_ce_desc){ .src = 0x20000, .dst = 0x10800, .len = 64, .id = 5 };
	CHECK_OK(drv_reg_write(v, P2P_CE_REG_DOORBELL, 5, 4));
	for (int i = 0; i < 500 && drv_reg_read(v, P2P_CE_REG_HEAD, 4) != 5; i++)
		usleep(2000);
	CHECK(compl[0].id == 5 && compl[0].status == P2P_CE_FAULT);

	p2p_vfio_device_close(v);
	p2p_vfio_user_disconnect(c);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ictx);
	munmap(mem, 4 * PG);
	munmap(anon, PG);
	close(mfd);
	close(efd);
}

/* An export, imported into a local IOAS; another client's MEM-off revokes it here. */
static void test_export_revoke(struct p2p_vfio_user_client *a, struct p2p_vfio_device *vb,
			       uint8_t *ma)
{
	struct vfio_region_dma_range r = { .offset = 4 * PG, .length = 4 * PG };
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	struct p2p_dma_seg seg;
	uint64_t iova = 0x100000;
	uint32_t id;
	uint8_t *m = NULL;
	int fd;

	t_section("export");
	fd = p2p_vfio_user_dmabuf_export(a, 2, &r, 1, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK_ERR(p2p_vfio_user_dmabuf_export(a, 2, &r, 0, O_RDWR), -EINVAL);
	r.offset = BAR2;
	CHECK_ERR(p2p_vfio_user_dmabuf_export(a, 2, &r, 1, O_RDWR), -EINVAL);
	CHECK_OK(p2p_fd_mmap(fd, NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, 0, (void **)&m));
	ma[4 * PG + 9] = 0x99;
	CHECK(m && m[9] == 0x99);
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK_OK(p2p_ioas_map_file(ioas, fd, 0, 4 * PG, &iova,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
	CHECK_OK(p2p_ioas_dma_begin(ioas, 0x100000 + 9, 1, P2P_DMA_READ, &seg));
	CHECK(*(uint8_t *)seg.host == 0x99);
	p2p_ioas_dma_end(&seg);

	t_section("revoke-from-another-client");
	/* Client B turns memory decoding off: the server revokes, A acks first. */
	CHECK_OK(p2p_vfio_config_write(vb, 0x04, 2, 0x0004));
	/* The canaries: right when B's write returns, nothing of A reaches the memory. */
	CHECK(t_read_faults(m));
	CHECK(t_read_faults(ma));
	CHECK_ERR(p2p_ioas_dma_begin(ioas, 0x100000, 1, P2P_DMA_WRITE, &seg), -ENODEV);
	CHECK(t_write_faults(m + 1, 1));
	/*
	 * Back on.  The server does not send restore notices yet (the core's
	 * un-revoke tells no importer), so A's mappings stay revoked; the
	 * IOAS import would stay revoked anyway (kernel-semantics 2.5).
	 */
	CHECK_OK(p2p_vfio_config_write(vb, 0x04, 2, 0x0006));
	CHECK_ERR(p2p_ioas_dma_begin(ioas, 0x100000, 1, P2P_DMA_WRITE, &seg), -ENODEV);
	p2p_ioas_put(ioas);
	p2p_iommufd_close(ictx);
	p2p_munmap(m, 4 * PG);
	p2p_close(fd);
}

static void test_server_death(struct p2p_vfio_user_client *a, struct p2p_vfio_device *va,
			      uint8_t *ma)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = PG };
	uint8_t *m = NULL;
	uint8_t v;
	double t0;
	int fd = p2p_vfio_user_dmabuf_export(a, 2, &r, 1, O_RDWR | O_CLOEXEC);

	t_section("server-death");
	CHECK(fd >= 0);
	CHECK_OK(p2p_fd_mmap(fd, NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, 0, (void **)&m));
	CHECK(m && !t_read_faults(m));
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	server = -1;
	t0 = now_s();
	while (p2p_vfio_user_client_alive(a) && now_s() - t0 < 3)
		usleep(1000);
	CHECK(!p2p_vfio_user_client_alive(a));
	/* Removed: forwarded operations fail fast, the memory is revoked for good. */
	t0 = now_s();
	CHECK_ERR(p2p_vfio_config_write(va, 0x3c, 1, 1), -ENODEV);
	CHECK_ERR(p2p_vfio_user_dmabuf_export(a, 2, &r, 1, O_RDWR), -ENODEV);
	for (int i = 0; i < 900 && !(t_read_faults(ma) && t_read_faults(m)); i++)
		usleep(1000);
	CHECK(t_read_faults(ma) && t_read_faults(m));
	CHECK(p2p_vfio_device_pread(va, &v, 1, P2P_VFIO_REGION_OFFSET(2)) == -EIO);
	CHECK(now_s() - t0 < 1.0);
	p2p_munmap(m, PG);
	p2p_close(fd);
}

/* ---------------------------------------------------------------------- */
/* Peer to peer across processes                                           */

static struct p2p_vfio_user_client *connect_at(const char *d, const char *bdf, const char *name)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .name = name };
	struct p2p_vfio_user_client *c = NULL;
	char p[128];

	snprintf(p, sizeof(p), "%s/%s", d, bdf);
	CHECK_OK(p2p_vfio_user_connect(p, &ci, &c));
	return c;
}

#define P2P_IOVA 0x400000ull
#define P2P_LEN (8 * PG)
#define P2P_BAR_OFF (16 * PG)

struct engine {
	struct p2p_vfio_device *v;
	struct p2p_ce_desc *ring;
	struct p2p_ce_compl *compl;
	uint32_t tail;
	atomic_bool stop, reset_done;
	unsigned int ok_before, ok_after, fault_after, other;
};

/* One copy src -> BAR (the dma-buf's IOVA), waited for: its status, 0 on a timeout. */
static uint32_t engine_copy(struct engine *e, uint64_t dst, uint32_t len)
{
	uint32_t idx = e->tail & 3;

	e->ring[idx] = (struct p2p_ce_desc){ .src = 0x12000, .dst = dst, .len = len, .id = e->tail };
	memset(&e->compl[idx], 0, sizeof(e->compl[idx]));
	e->tail++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (drv_reg_write(e->v, P2P_CE_REG_DOORBELL, e->tail, 4))
		return 0;
	for (int i = 0; i < 5000 && drv_reg_read(e->v, P2P_CE_REG_HEAD, 4) != e->tail; i++)
		usleep(200);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return e->compl[idx].status;
}

/* DMA into the other server's BAR, over and over, while the main thread resets it. */
static void *engine_main(void *arg)
{
	struct engine *e = arg;

	while (!atomic_load(&e->stop)) {
		bool after = atomic_load(&e->reset_done);
		uint32_t st = engine_copy(e, P2P_IOVA + 64, 2 * PG);

		if (st == P2P_CE_OK && !after)
			e->ok_before++;
		else if (st == P2P_CE_OK)
			e->ok_after++;
		else if (after && (st == P2P_CE_FAULT || st == P2P_CE_REVOKED))
			e->fault_after++;
		else if (!after && (st == P2P_CE_FAULT || st == P2P_CE_REVOKED))
			; /* the revoke is under way */
		else
			e->other++;
	}
	return NULL;
}

/*
 * Two p2pbuf serve processes: the copy engine in one (A), the GPU in the
 * other (B).  A dma-buf of B's BAR2, imported into the IOAS of A's engine,
 * goes to A with the BAR's memory fd: A's engine DMAs straight into B's
 * BAR.  A reset of B revokes it: the client unmaps it from A (drained)
 * before it acks, so once the reset returns nothing lands in the BAR
 * (canaries written through a new connection), and the engine's DMAs
 * fault.  On the way: shared anonymous memory mapped by VA is DMA'd into
 * by A (the client found its file).
 */
static void test_p2p(void)
{
	char da[96], db[96], conf[128];
	pid_t sa, sb;
	struct p2p_vfio_user_client *ce = NULL, *gpu = NULL, *late = NULL;
	struct p2p_vfio_device *vce = NULL, *vgpu = NULL, *vlate = NULL;
	struct vfio_region_dma_range r = { .offset = P2P_BAR_OFF, .length = P2P_LEN };
	struct p2p_iommufd *ictx = NULL;
	struct p2p_ioas *ioas = NULL;
	struct engine e = { .tail = 0 };
	uint8_t *mem = NULL, *m = NULL, *bar = NULL, *shared;
	uint32_t id, st;
	uint64_t iova;
	pthread_t th;
	int mfd = memfd_create("p2p-ce", MFD_CLOEXEC), buf = -1;
	size_t bad = 0;

	t_section("peer to peer across processes");
	snprintf(da, sizeof(da), "%s/a", dir);
	snprintf(db, sizeof(db), "%s/b", dir);
	CHECK(!mkdir(da, 0700) && !mkdir(db, 0700));
	snprintf(conf, sizeof(conf), "copy-engine %s group=2\n", CE);
	sa = serve(da, conf, CE);
	snprintf(conf, sizeof(conf), "gpu %s group=1 bar0=16K bar2=2M,64,pf\n", GPU);
	sb = serve(db, conf, GPU);
	CHECK(sa > 0 && sb > 0);
	if (sa <= 0 || sb <= 0)
		goto out;
	ce = connect_at(da, CE, "0000:42:00.0");
	gpu = connect_at(db, GPU, "0000:41:00.0");
	if (!ce || !gpu)
		goto out;
	CHECK_OK(p2p_vfio_device_open(p2p_vfio_user_client_pci(ce), &vce));
	CHECK_OK(p2p_vfio_device_open(p2p_vfio_user_client_pci(gpu), &vgpu));
	CHECK(mfd >= 0 && ftruncate(mfd, 4 * PG) == 0);
	mem = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	CHECK(mem != MAP_FAILED);
	if (!vce || !vgpu || mem == MAP_FAILED)
		goto out;
	CHECK_OK(p2p_iommufd_open(&ictx));
	CHECK_OK(p2p_ioas_alloc(ictx, &id, &ioas));
	CHECK_OK(p2p_vfio_device_attach_ioas(vce, ioas));
	/* Ring 0x10000, completions 0x11000, source 0x12000 (memfd, with its fd). */
	iova = 0x10000;
	CHECK_OK(p2p_ioas_map_file(ioas, mfd, 0, 4 * PG, &iova,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
	buf = p2p_vfio_user_dmabuf_export(gpu, 2, &r, 1, O_RDWR | O_CLOEXEC);
	CHECK(buf >= 0);
	if (buf < 0)
		goto out;
	CHECK_OK(p2p_fd_mmap(buf, NULL, P2P_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
			     (void **)&m));
	iova = P2P_IOVA;
	CHECK_OK(p2p_ioas_map_file(ioas, buf, 0, P2P_LEN, &iova,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
	e.v = vce;
	e.ring = (struct p2p_ce_desc *)mem;
	e.compl = (struct p2p_ce_compl *)(mem + PG);
	for (uint32_t i = 0; i < 2 * PG; i++)
		mem[2 * PG + i] = (uint8_t)(i * 7 + 3);
	CHECK_OK(drv_reg_write(vce, P2P_CE_REG_RING, 0x10000, 8));
	CHECK_OK(drv_reg_write(vce, P2P_CE_REG_RING_SIZE, 4, 4));
	CHECK_OK(drv_reg_write(vce, P2P_CE_REG_COMPL, 0x11000, 8));
	CHECK_OK(drv_reg_write(vce, P2P_CE_REG_CTRL, P2P_CE_CTRL_ENABLE, 4));
	if (!m)
		goto out;

	/* Data: A's engine writes B's BAR, seen through the dma-buf's mapping here. */
	memset(m, 0, P2P_LEN);
	CHECK((st = engine_copy(&e, P2P_IOVA + 100, 2 * PG)) == P2P_CE_OK);
	CHECK(!memcmp(m + 100, mem + 2 * PG, 2 * PG) && m[99] == 0 && m[100 + 2 * PG] == 0);

	/* Shared process memory mapped by VA goes with its file (found through /proc). */
	shared = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(shared != MAP_FAILED);
	iova = 0x20000;
	if (shared != MAP_FAILED) {
		CHECK_OK(p2p_ioas_map(ioas, shared, 2 * PG, &iova,
				      P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					      P2P_IOAS_MAP_WRITEABLE));
		CHECK((st = engine_copy(&e, 0x20000, 2 * PG)) == P2P_CE_OK);
		CHECK(!memcmp(shared, mem + 2 * PG, 2 * PG));
		CHECK_OK(p2p_ioas_unmap(ioas, 0x20000, 2 * PG, NULL));
		munmap(shared, 2 * PG);
	}

	/* B resets while A's engine keeps writing its BAR. */
	pthread_create(&th, NULL, engine_main, &e);
	for (int i = 0; i < 2000 && e.ok_before < 3; i++)
		usleep(1000);
	CHECK_OK(p2p_vfio_device_ioctl(vgpu, VFIO_DEVICE_RESET, NULL));
	atomic_store(&e.reset_done, true);
	/* A new connection's view of the BAR (ours stay revoked: no restore notice). */
	late = connect_at(db, GPU, "0000:43:00.0");
	if (late && !p2p_vfio_device_open(p2p_vfio_user_client_pci(late), &vlate))
		p2p_vfio_device_mmap(vlate, NULL, BAR2, PROT_READ | PROT_WRITE, MAP_SHARED,
				     P2P_VFIO_REGION_OFFSET(2), (void **)&bar);
	CHECK(bar != NULL);
	if (bar)
		memset(bar + P2P_BAR_OFF, 0xee, P2P_LEN);
	for (int i = 0; i < 2000 && e.fault_after < 5; i++)
		usleep(1000);
	atomic_store(&e.stop, true);
	pthread_join(th, NULL);
	for (size_t i = 0; bar && i < P2P_LEN; i++)
		bad += bar[P2P_BAR_OFF + i] != 0xee;
	CHECK(bar && !bad);
	CHECK(e.ok_before >= 3 && e.ok_after == 0 && e.fault_after >= 5 && e.other == 0);
	if (bad || e.ok_after || e.fault_after < 5 || e.ok_before < 3 || e.other)
		fprintf(stderr, "p2p: %zu canary bytes changed; DMA ok %u before, %u after the "
				"revoke, %u faults after, %u other\n",
			bad, e.ok_before, e.ok_after, e.fault_after, e.other);
	/* Never remapped (kernel-semantics 2.5); DMA into process memory goes on. */
	CHECK((st = engine_copy(&e, P2P_IOVA, 64)) == P2P_CE_FAULT || st == P2P_CE_REVOKED);
	CHECK(engine_copy(&e, 0x13000, 64) == P2P_CE_OK);
	/* The stale area unmapped: that goes to A without a second unmap there. */
	CHECK_OK(p2p_ioas_unmap(ioas, P2P_IOVA, P2P_LEN, NULL));
	CHECK(p2p_vfio_user_client_alive(ce) && p2p_vfio_user_client_alive(gpu));
out:
	if (bar)
		p2p_munmap(bar, BAR2);
	if (m)
		p2p_munmap(m, P2P_LEN);
	if (buf >= 0)
		p2p_close(buf);
	if (vlate)
		p2p_vfio_device_close(vlate);
	if (vce)
		p2p_vfio_device_close(vce);
	if (vgpu)
		p2p_vfio_device_close(vgpu);
	if (ioas)
		p2p_ioas_put(ioas);
	if (ictx)
		p2p_iommufd_close(ictx);
	p2p_vfio_user_disconnect(late);
	p2p_vfio_user_disconnect(ce);
	p2p_vfio_user_disconnect(gpu);
	if (mem && mem != MAP_FAILED)
		munmap(mem, 4 * PG);
	if (mfd >= 0)
		close(mfd);
	for (int i = 0; i < 2; i++) {
		pid_t pid = i ? sb : sa;
		char p[128];

		if (pid > 0) {
			kill(pid, SIGTERM);
			waitpid(pid, NULL, 0);
		}
		snprintf(p, sizeof(p), "%s/devices.conf", i ? db : da);
		unlink(p);
		snprintf(p, sizeof(p), "%s/%s", i ? db : da, i ? GPU : CE);
		unlink(p);
		rmdir(i ? db : da);
	}
}

/* ---------------------------------------------------------------------- */
/* A raw fake server for error paths                                       */

struct fake {
	int lfd;
	int mode; /* 0: close at once; 1: error reply to VERSION; 2: never answer; 3: garbage;
		   * 4: a reply with too many fds */
	pthread_t th;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int s = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	uint8_t buf[4096];

	if (s < 0)
		return NULL;
	if (f->mode == 0) {
		close(s);
		return NULL;
	}
	ssize_t n = read(s, buf, sizeof(buf)); /* the VERSION request */
	struct { uint16_t id, cmd; uint32_t size, flags, err; } h;

	if (n >= 16) {
		memcpy(&h, buf, sizeof(h));
		if (f->mode == 1) {
			h.size = 16;
			h.flags = 1 | 0x20;
			h.err = EPROTONOSUPPORT;
			CHECK(write(s, &h, 16) == 16);
		} else if (f->mode == 3) {
			h.size = 8; /* below a header: the stream cannot be trusted */
			h.flags = 1;
			CHECK(write(s, &h, 16) == 16);
		} else if (f->mode == 4) {
			/* A reply with more fds than a message may carry (16 > VU_MAX_FDS). */
			union {
				struct cmsghdr a;
				char b[CMSG_SPACE(sizeof(int) * 16)];
			} cb;
			struct iovec iov = { .iov_base = &h, .iov_len = 16 };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.b,
					     .msg_controllen = sizeof(cb.b) };
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			int fds[16];

			h.size = 16;
			h.flags = 1;
			h.err = 0;
			memset(&cb, 0, sizeof(cb));
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(fds));
			for (int i = 0; i < 16; i++)
				fds[i] = s;
			memcpy(CMSG_DATA(cm), fds, sizeof(fds));
			CHECK(sendmsg(s, &mh, 0) == 16);
		}
	}
	/* Wait for the client to give up. */
	while (read(s, buf, sizeof(buf)) > 0)
		;
	close(s);
	return NULL;
}

static void test_fake_server(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .timeout_ms = 300 };
	struct p2p_vfio_user_client *c = NULL;
	/* Too many fds: refused at once (EPROTO), not left to the timeout. */
	const int want[] = { -ENODEV, -EPROTONOSUPPORT, -ETIMEDOUT, -ENODEV, -EPROTO };

	t_section("fake-server");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fake", dir);
	CHECK_ERR(p2p_vfio_user_connect(sa.sun_path, &ci, &c), -ENOENT);
	CHECK_ERR(p2p_vfio_user_connect(NULL, &ci, &c), -EINVAL);
	ci.flags = 0x80;
	CHECK_ERR(p2p_vfio_user_connect(sa.sun_path, &ci, &c), -EINVAL);
	ci.flags = 0;
	for (int mode = 0; mode < 5; mode++) {
		struct fake f = { .mode = mode };
		double t0 = now_s();

		unlink(sa.sun_path);
		f.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK(f.lfd >= 0 && !bind(f.lfd, (struct sockaddr *)&sa, sizeof(sa)) &&
		      !listen(f.lfd, 1));
		pthread_create(&f.th, NULL, fake_main, &f);
		CHECK_ERR(p2p_vfio_user_connect(sa.sun_path, &ci, &c), want[mode]);
		CHECK(now_s() - t0 < 2.0);
		pthread_join(f.th, NULL);
		close(f.lfd);
	}
	unlink(sa.sun_path);
}

int main(void)
{
	struct p2p_vfio_user_client *a, *b;
	struct p2p_vfio_device *va = NULL, *vb = NULL;
	uint8_t *ma = NULL, *mb = NULL;
	char p[96];

	signal(SIGPIPE, SIG_IGN);
	t_begin();
	t_require_uffd();
	snprintf(dir, sizeof(dir), "/tmp/p2p-vuc-XXXXXX");
	if (!mkdtemp(dir))
		t_skip("no temporary directory");
	test_fake_server();
	if (!start_server()) {
		fprintf(stderr, "p2pbuf serve did not start\n");
		return T_EXIT_FAIL;
	}
	a = connect_to(GPU, "0000:21:00.0");
	b = connect_to(GPU, "0000:31:00.0");
	if (!a || !b)
		goto out;
	CHECK_OK(p2p_vfio_device_open(p2p_vfio_user_client_pci(a), &va));
	CHECK_OK(p2p_vfio_device_open(p2p_vfio_user_client_pci(b), &vb));
	test_bars(a, b, va, vb, &ma, &mb);
	test_copy_engine();
	connect_flags = P2P_VFIO_USER_NO_TWIN;
	test_copy_engine();
	connect_flags = 0;
	test_export_revoke(a, vb, ma);
	test_server_death(a, va, ma);
	test_p2p();
	p2p_munmap(ma, BAR2);
	p2p_munmap(mb, BAR2);
	p2p_vfio_device_close(va);
	p2p_vfio_device_close(vb);
	p2p_vfio_user_disconnect(a);
	p2p_vfio_user_disconnect(b);
out:
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
	/* A server killed with -9 leaves its sockets. */
	for (int i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir,
			 i == 0 ? "devices.conf" : i == 1 ? GPU : i == 2 ? CE : "serve.log");
		unlink(p);
	}
	rmdir(dir);
	return t_end();
}
