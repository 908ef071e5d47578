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
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/vfio_user.h>

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

static bool start_server(void)
{
	char cfg[96], p[96];
	FILE *f;

	snprintf(cfg, sizeof(cfg), "%s/devices.conf", dir);
	f = fopen(cfg, "w");
	if (!f)
		return false;
	fprintf(f, "gpu %s group=1 bar0=16K bar2=2M,64,pf\ncopy-engine %s group=2\n", GPU, CE);
	fclose(f);
	server = fork();
	if (server == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		char exe[512], *slash;
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 32);

		/* build/tests/test-x -> build/tools/p2pbuf */
		exe[n > 0 ? n : 0] = 0;
		for (int i = 0; i < 2 && (slash = strrchr(exe, '/')); i++)
			*slash = 0;
		strcat(exe, "/tools/p2pbuf");
		execl(exe, "p2pbuf", "serve", "--config", cfg, "--socket-dir", dir,
		      "--revoke-timeout-ms", "2000", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		struct stat st;

		sock_path(p, sizeof(p), CE);
		if (!stat(p, &st))
			return true;
		if (waitpid(server, NULL, WNOHANG) == server) {
			server = -1;
			return false;
		}
		usleep(10000);
	}
	return false;
}

static struct p2p_vfio_user_client *connect_to(const char *bdf, const char *name)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .name = name };
	struct p2p_vfio_user_client *c = NULL;
	char p[96];

	sock_path(p, sizeof(p), bdf);
	CHECK_OK(p2p_vfio_user_connect(p, &ci, &c));
	return c;
}

static int reg_write(struct p2p_vfio_device *v, uint64_t off, uint64_t val, size_t len)
{
	ssize_t n = p2p_vfio_device_pwrite(v, &val, len, P2P_VFIO_REGION_OFFSET(0) + off);

	return n == (ssize_t)len ? 0 : (n < 0 ? (int)n : -EIO);
}

static uint64_t reg_read(struct p2p_vfio_device *v, uint64_t off, size_t len)
{
	uint64_t val = 0;

	if (p2p_vfio_device_pread(v, &val, len, P2P_VFIO_REGION_OFFSET(0) + off) != (ssize_t)len)
		return ~0ull;
	return val;
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

	t_section("copy-engine");
	if (!c)
		return;
	CHECK_OK(p2p_vfio_device_open(p2p_vfio_user_client_pci(c), &v));
	CHECK(reg_read(v, P2P_CE_REG_ID, 4) == P2P_CE_ID);
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
	uint8_t buf[sizeof(struct vfio_irq_set) + 4];
	struct vfio_irq_set *irq = (struct vfio_irq_set *)buf;
	int32_t e32 = efd;

	*irq = (struct vfio_irq_set){ .argsz = sizeof(buf), .index = VFIO_PCI_MSI_IRQ_INDEX,
				      .flags = VFIO_IRQ_SET_DATA_EVENTFD |
					       VFIO_IRQ_SET_ACTION_TRIGGER,
				      .count = 1 };
	memcpy(irq->data, &e32, 4);
	CHECK_OK(p2p_vfio_device_ioctl(v, VFIO_DEVICE_SET_IRQS, irq));
	CHECK_OK(reg_write(v, P2P_CE_REG_RING, 0x10000, 8));
	CHECK_OK(reg_write(v, P2P_CE_REG_RING_SIZE, 4, 4));
	CHECK_OK(reg_write(v, P2P_CE_REG_COMPL, 0x11000, 8));
	CHECK_OK(reg_write(v, P2P_CE_REG_CTRL, P2P_CE_CTRL_ENABLE, 4));
	CHECK_OK(reg_write(v, P2P_CE_REG_DOORBELL, 3, 4));
	struct pollfd pfd = { .fd = efd, .events = POLLIN };

	CHECK(poll(&pfd, 1, 5000) == 1);
	for (int i = 0; i < 500 && reg_read(v, P2P_CE_REG_HEAD, 4) != 3; i++)
		usleep(2000);
	CHECK(reg_read(v, P2P_CE_REG_HEAD, 4) == 3);
	CHECK(compl[0].status == P2P_CE_OK && compl[1].status == P2P_CE_OK &&
	      compl[2].status == P2P_CE_OK);
	CHECK(mem[3 * PG] == 0xab && mem[3 * PG + PG - 1] == 0xab);
	CHECK(compl[0].bytes == PG && compl[2].id == 3);

	/* Unmapped locally: unmapped in the server, its DMA faults there. */
	ring[3] = (struct p2p_ce_desc){ .src = 0x20000, .dst = 0x20000 + 8 * PG, .len = 64, .id = 4 };
	CHECK_OK(reg_write(v, P2P_CE_REG_DOORBELL, 4, 4));
	for (int i = 0; i < 500 && reg_read(v, P2P_CE_REG_HEAD, 4) != 4; i++)
		usleep(2000);
	CHECK(compl[3].status == P2P_CE_FAULT);

	/* An area unmapped here is gone from the server before the unmap returns. */
	CHECK_OK(p2p_ioas_unmap(ioas, 0x20000, 2 * PG, NULL));
	ring[0] = (struct p2p_ce_desc){ .src = 0x20000, .dst = 0x10800, .len = 64, .id = 5 };
	CHECK_OK(reg_write(v, P2P_CE_REG_DOORBELL, 5, 4));
	for (int i = 0; i < 500 && reg_read(v, P2P_CE_REG_HEAD, 4) != 5; i++)
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
/* A raw fake server for error paths                                       */

struct fake {
	int lfd;
	int mode; /* 0: close at once; 1: error reply to VERSION; 2: never answer; 3: garbage */
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
	const int want[] = { -ENODEV, -EPROTONOSUPPORT, -ETIMEDOUT, -ENODEV };

	t_section("fake-server");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fake", dir);
	CHECK_ERR(p2p_vfio_user_connect(sa.sun_path, &ci, &c), -ENOENT);
	CHECK_ERR(p2p_vfio_user_connect(NULL, &ci, &c), -EINVAL);
	ci.flags = 0x80;
	CHECK_ERR(p2p_vfio_user_connect(sa.sun_path, &ci, &c), -EINVAL);
	ci.flags = 0;
	for (int mode = 0; mode < 4; mode++) {
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
	test_export_revoke(a, vb, ma);
	test_server_death(a, va, ma);
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
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, i == 0 ? "devices.conf" : i == 1 ? GPU : CE);
		unlink(p);
	}
	rmdir(dir);
	return t_end();
}
