// SPDX-License-Identifier: MIT
/*
 * The chaos test across processes: `p2pbuf serve` (a GPU-like function and
 * a copy engine) and NR_CLIENTS client processes (this program re-executed
 * as `child SLOT`) for CHAOS_SECONDS (default 4) of random operations:
 * dma-buf exports of the GPU's BAR (mapped, CPU access with canaries),
 * closes, resets and memory-decode toggles (revoking every client's
 * exports in every process), imports of an export into the engine's IO
 * address space, DMA maps and unmaps of client memory, DMA through the
 * served engine, while the parent kills a random client with SIGKILL every
 * few hundred milliseconds and starts a new one in its slot.
 *
 * Invariants (docs/chaos.md):
 * - nothing lands in revoked memory: triggers (reset, memory off and on)
 *   are serialized by an exclusive flock; a shared generation counter is
 *   bumped after each, and a shared window counter is odd from the return
 *   of a memory-off (every client acked its revoke) to the memory-on.  A
 *   CPU write through an export wholly inside one such window must fault
 *   (the trigger's own client checks its exports there too); after the
 *   memory-on the exports come back (the server's restore notices, as
 *   vfio-pci un-revokes its dma-bufs), but an import mapped into the
 *   engine's IOAS before a trigger is never remapped: DMA into it after
 *   the trigger must fault;
 * - nothing lands in unmapped memory: after DMA_UNMAP (p2p_ioas_unmap)
 *   returns, the engine's DMA to that IOVA faults and the canary there is
 *   intact;
 * - the data of every DMA that completed is right;
 * - nothing leaks: once every client is gone, the server's fd count is back
 *   to its baseline (taken after a first client came and went) within 2 s;
 *   SIGTERM stops it with status 0 and no socket is left in its directory;
 * - the survivors carry on: every client alive at the end made progress and
 *   exits 0.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/vfio_user.h>

#include "drv_util.h"
#include "harness.h"

#define GPU "0000:01:00.0"
#define CE "0000:02:00.0"
#define BAR2 (4u << 20)
#define PG 4096u
#define NR_CLIENTS 3
#define SLOT_BAR (BAR2 / 4) /* each slot's part of the BAR */
#define NR_EXP 4
#define EXP_LEN (4 * PG)

/* Shared by the parent and every client: a memfd passed down as fd 3. */
struct shared {
	atomic_ulong gen;	      /* bumped after each completed revoke trigger */
	atomic_ulong window;	      /* odd while memory decoding is off (revoked) */
	atomic_ulong ops[NR_CLIENTS]; /* per slot */
	atomic_ulong resets, revoked_writes, dma_ok, dma_fault, unmapped_faults, imports;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---------------------------------------------------------------------- */
/* A client process                                                        */

struct export {
	int fd;
	uint8_t *m;
	uint64_t off;
};

struct child {
	unsigned int slot;
	struct shared *sh;
	uint64_t seed;
	char dir[128];
	int reset_lock, engine_lock;
	struct p2p_vfio_user_client *gpu, *ce;
	struct p2p_vfio_device *vgpu, *vce;
	struct p2p_iommufd *ictx;
	struct p2p_ioas *ioas;
	int mfd;
	uint8_t *mem; /* ring, completions, source, destination, spare */
	uint64_t base;
	uint32_t tail;
	struct export exp[NR_EXP];
};

#define MEM_LEN (8 * PG)
#define OFF_RING 0
#define OFF_COMPL PG
#define OFF_SRC (2 * PG)
#define OFF_DST (4 * PG)
#define EXTRA_OFF 0x100000ull  /* a DMA-mapped then unmapped area */
#define IMPORT_OFF 0x200000ull /* an export imported into the IOAS */

/* Take the engine (one ring for every client): program it with ours, drain what was left. */
static bool engine_take(struct child *c)
{
	uint32_t head = 0;

	flock(c->engine_lock, LOCK_EX);
	if (drv_reg_write(c->vce, P2P_CE_REG_CTRL, 0, 4) ||
	    drv_reg_write(c->vce, P2P_CE_REG_RING, c->base + OFF_RING, 8) ||
	    drv_reg_write(c->vce, P2P_CE_REG_RING_SIZE, 4, 4) ||
	    drv_reg_write(c->vce, P2P_CE_REG_COMPL, c->base + OFF_COMPL, 8) ||
	    drv_reg_write(c->vce, P2P_CE_REG_CTRL, P2P_CE_CTRL_ENABLE, 4))
		goto fail;
	/* A killed client may have left descriptors: they run (and fault) first. */
	for (int i = 0; i < 2000; i++) {
		head = (uint32_t)drv_reg_read(c->vce, P2P_CE_REG_HEAD, 4);
		if (head == (uint32_t)drv_reg_read(c->vce, P2P_CE_REG_DOORBELL, 4))
			break;
		usleep(500);
	}
	c->tail = head;
	return true;
fail:
	flock(c->engine_lock, LOCK_UN);
	return false;
}

static void engine_put(struct child *c)
{
	flock(c->engine_lock, LOCK_UN);
}

/* One copy, waited for: its status (0: timed out). */
static uint32_t engine_copy(struct child *c, uint64_t src, uint64_t dst, uint32_t len)
{
	struct p2p_ce_desc *ring = (struct p2p_ce_desc *)(c->mem + OFF_RING);
	struct p2p_ce_compl *compl = (struct p2p_ce_compl *)(c->mem + OFF_COMPL);
	uint32_t idx = c->tail & 3;

	ring[idx] = (struct p2p_ce_desc){ .src = src, .dst = dst, .len = len, .id = c->tail };
	memset(&compl[idx], 0, sizeof(compl[idx]));
	c->tail++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (drv_reg_write(c->vce, P2P_CE_REG_DOORBELL, c->tail, 4))
		return 0;
	for (int i = 0; i < 10000 && (uint32_t)drv_reg_read(c->vce, P2P_CE_REG_HEAD, 4) != c->tail; i++)
		usleep(100);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return compl[idx].status;
}

static void exp_drop(struct export *e)
{
	if (e->m)
		p2p_munmap(e->m, EXP_LEN);
	if (e->fd >= 0)
		p2p_close(e->fd);
	e->m = NULL;
	e->fd = -1;
}

/* A new export in our part of the BAR, valid at the generation it read. */
static struct export *op_export(struct child *c)
{
	struct export *e = &c->exp[rnd(&c->seed) % NR_EXP];
	struct vfio_region_dma_range r;

	exp_drop(e);
	e->off = c->slot * SLOT_BAR + (rnd(&c->seed) % (SLOT_BAR / EXP_LEN)) * EXP_LEN;
	r = (struct vfio_region_dma_range){ .offset = e->off, .length = EXP_LEN };
	flock(c->reset_lock, LOCK_SH);
	e->fd = p2p_vfio_user_dmabuf_export(c->gpu, 2, &r, 1, O_RDWR | O_CLOEXEC);
	if (e->fd < 0)
		fprintf(stderr, "chaos-vu[%u]: export: %s\n", c->slot, strerror(-e->fd));
	CHECK(e->fd >= 0);
	if (e->fd >= 0 &&
	    !p2p_fd_mmap(e->fd, NULL, EXP_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
			 (void **)&e->m)) {
		/* Nothing can revoke it while we hold the lock. */
		CHECK(!t_write_faults(e->m + 8, (uint8_t)c->slot) && e->m[8] == (uint8_t)c->slot);
	}
	flock(c->reset_lock, LOCK_UN);
	return e->m ? e : NULL;
}

/* CPU access through an export: faults if it ran wholly while memory decoding was off. */
static void op_cpu(struct child *c)
{
	struct export *e = &c->exp[rnd(&c->seed) % NR_EXP];
	unsigned long w;
	bool faulted;

	if (!e->m)
		return;
	w = atomic_load(&c->sh->window);
	faulted = t_write_faults(e->m + (rnd(&c->seed) % EXP_LEN), 0xa5);
	if ((w & 1) && atomic_load(&c->sh->window) == w && !faulted) {
		fprintf(stderr, "chaos-vu[%u]: a write through an export landed while memory "
				"decoding was off\n", c->slot);
		atomic_fetch_add(&c->sh->revoked_writes, 1);
		CHECK(faulted);
	}
}

/*
 * Reset, or memory decode off then on: every export of every client is
 * revoked before the trigger returns; with memory off, ours must fault.
 */
static void op_trigger(struct child *c, bool reset)
{
	flock(c->reset_lock, LOCK_EX);
	if (reset)
		CHECK_OK(p2p_vfio_device_ioctl(c->vgpu, VFIO_DEVICE_RESET, NULL));
	else
		CHECK_OK(p2p_vfio_config_write(c->vgpu, 0x04, 2, 0x0004));
	atomic_fetch_add(&c->sh->gen, 1);
	atomic_fetch_add(&c->sh->resets, 1);
	if (!reset) {
		atomic_fetch_add(&c->sh->window, 1);
		for (int i = 0; i < NR_EXP; i++)
			if (c->exp[i].m)
				CHECK(t_read_faults(c->exp[i].m));
		atomic_fetch_add(&c->sh->window, 1);
	}
	CHECK_OK(p2p_vfio_config_write(c->vgpu, 0x04, 2, 0x0006));
	flock(c->reset_lock, LOCK_UN);
}

/* DMA within our memory, checked. */
static void op_dma(struct child *c)
{
	uint8_t v = (uint8_t)rnd(&c->seed), nv = (uint8_t)(v ^ 0xff);
	uint32_t len = 1 + (uint32_t)(rnd(&c->seed) % (2 * PG - 1)); /* the byte after is ours */
	uint32_t st;

	memset(c->mem + OFF_SRC, v, 2 * PG);
	memset(c->mem + OFF_DST, nv, 2 * PG);
	if (!engine_take(c))
		return;
	st = engine_copy(c, c->base + OFF_SRC, c->base + OFF_DST, len);
	engine_put(c);
	CHECK(st == P2P_CE_OK);
	if (c->mem[OFF_DST] != v || c->mem[OFF_DST + len - 1] != v || c->mem[OFF_DST + len] != nv)
		fprintf(stderr, "chaos-vu[%u]: DMA of %u bytes (status %u): %#x %#x %#x, want %#x %#x %#x\n",
			c->slot, len, st, c->mem[OFF_DST], c->mem[OFF_DST + len - 1],
			c->mem[OFF_DST + len], v, v, nv);
	CHECK(c->mem[OFF_DST] == v && c->mem[OFF_DST + len - 1] == v &&
	      c->mem[OFF_DST + len] == nv);
	atomic_fetch_add(&c->sh->dma_ok, 1);
}

/* DMA_MAP a memfd area, DMA into it, DMA_UNMAP: then DMA there faults, the canary stays. */
static void op_map_unmap(struct child *c)
{
	int fd = memfd_create("chaos-vu-extra", MFD_CLOEXEC);
	uint64_t iova = c->base + EXTRA_OFF;
	uint8_t *m;
	uint32_t st;

	CHECK(fd >= 0 && !ftruncate(fd, 2 * PG));
	m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	if (m == MAP_FAILED)
		goto out;
	CHECK_OK(p2p_ioas_map_file(c->ioas, fd, 0, 2 * PG, &iova,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
	memset(c->mem + OFF_SRC, 0x11, PG);
	if (engine_take(c)) {
		st = engine_copy(c, c->base + OFF_SRC, iova, PG);
		engine_put(c);
		CHECK(st == P2P_CE_OK && m[0] == 0x11 && m[PG - 1] == 0x11);
	}
	CHECK_OK(p2p_ioas_unmap(c->ioas, iova, 2 * PG, NULL));
	memset(m, 0xcc, 2 * PG);
	if (engine_take(c)) {
		st = engine_copy(c, c->base + OFF_SRC, iova, PG);
		engine_put(c);
		CHECK(st == P2P_CE_FAULT);
		if (st == P2P_CE_FAULT)
			atomic_fetch_add(&c->sh->unmapped_faults, 1);
	}
	for (uint32_t i = 0; i < 2 * PG; i++)
		if (m[i] != 0xcc) {
			fprintf(stderr, "chaos-vu[%u]: DMA landed in unmapped memory\n", c->slot);
			CHECK(m[i] == 0xcc);
			break;
		}
	munmap(m, 2 * PG);
out:
	close(fd);
}

/* An export imported into the engine's IOAS: DMA into the BAR, or a fault once revoked. */
static void op_import(struct child *c)
{
	struct export *e = op_export(c);
	uint64_t iova = c->base + IMPORT_OFF;
	unsigned long g, gm;
	uint32_t st;
	int ret;

	if (!e)
		return;
	/* Mapped at generation gm: a later trigger revokes it for this IOAS for good. */
	flock(c->reset_lock, LOCK_SH);
	gm = atomic_load(&c->sh->gen);
	ret = p2p_ioas_map_file(c->ioas, e->fd, 0, EXP_LEN, &iova,
				P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					P2P_IOAS_MAP_WRITEABLE);
	flock(c->reset_lock, LOCK_UN);
	if (ret)
		return; /* revoked meanwhile: the map is refused, fine */
	memset(c->mem + OFF_SRC, 0x5c, PG);
	if (engine_take(c)) {
		g = atomic_load(&c->sh->gen);
		st = engine_copy(c, c->base + OFF_SRC, iova + PG, PG);
		engine_put(c);
		if (g > gm)
			CHECK(st == P2P_CE_FAULT || st == P2P_CE_REVOKED);
		else
			CHECK(st == P2P_CE_OK || st == P2P_CE_FAULT || st == P2P_CE_REVOKED);
		if (st == P2P_CE_OK && !t_read_faults(e->m + PG))
			CHECK(e->m[PG] == 0x5c || atomic_load(&c->sh->gen) > gm);
		atomic_fetch_add(&c->sh->imports, 1);
		if (st != P2P_CE_OK)
			atomic_fetch_add(&c->sh->dma_fault, 1);
	}
	CHECK_OK(p2p_ioas_unmap(c->ioas, iova, EXP_LEN, NULL));
}

static struct p2p_vfio_user_client *child_connect(struct child *c, const char *bdf,
						  const char *name, struct p2p_vfio_device **v)
{
	struct p2p_vfio_user_connect_info ci = { .argsz = sizeof(ci), .name = name,
						 .timeout_ms = 10000 };
	struct p2p_vfio_user_client *cl = NULL;
	char p[192];

	snprintf(p, sizeof(p), "%s/%s", c->dir, bdf);
	CHECK_OK(p2p_vfio_user_connect(p, &ci, &cl));
	if (cl)
		CHECK_OK(p2p_vfio_device_open(p2p_vfio_user_client_pci(cl), v));
	return cl;
}

static void child_log(enum p2p_log_level level, const char *fmt, va_list ap)
{
	(void)level;
	fprintf(stderr, "chaos-vu client[%d]: ", getpid());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static int child_main(const char *dir, unsigned int slot, unsigned int spawn, double seconds)
{
	struct child c = { .slot = slot, .mfd = -1 };
	char p[192];
	double end;
	uint32_t id;
	int shfd = 3;

	t_begin();
	p2p_set_log(child_log, P2P_LOG_WARN);
	snprintf(c.dir, sizeof(c.dir), "%s", dir);
	c.sh = mmap(NULL, sizeof(*c.sh), PROT_READ | PROT_WRITE, MAP_SHARED, shfd, 0);
	if (c.sh == MAP_FAILED)
		return T_EXIT_FAIL;
	c.seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull + spawn;
	c.base = (uint64_t)(spawn + 1) << 32; /* never overlaps a dead client's maps */
	for (int i = 0; i < NR_EXP; i++)
		c.exp[i].fd = -1;
	snprintf(p, sizeof(p), "%s/reset.lock", dir);
	c.reset_lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	snprintf(p, sizeof(p), "%s/engine.lock", dir);
	c.engine_lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	c.gpu = child_connect(&c, GPU, "0000:61:00.0", &c.vgpu);
	c.ce = child_connect(&c, CE, "0000:62:00.0", &c.vce);
	c.mfd = memfd_create("chaos-vu", MFD_CLOEXEC);
	CHECK(c.mfd >= 0 && !ftruncate(c.mfd, MEM_LEN));
	c.mem = mmap(NULL, MEM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, c.mfd, 0);
	if (!c.gpu || !c.ce || !c.vgpu || !c.vce || c.mem == MAP_FAILED)
		return T_EXIT_FAIL;
	CHECK_OK(p2p_iommufd_open(&c.ictx));
	CHECK_OK(p2p_ioas_alloc(c.ictx, &id, &c.ioas));
	CHECK_OK(p2p_vfio_device_attach_ioas(c.vce, c.ioas));
	uint64_t iova = c.base;

	CHECK_OK(p2p_ioas_map_file(c.ioas, c.mfd, 0, MEM_LEN, &iova,
				   P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE |
					   P2P_IOAS_MAP_WRITEABLE));
	end = now_s() + seconds;
	while (now_s() < end && !t_failures) {
		unsigned int op = (unsigned int)(rnd(&c.seed) % 16);

		if (op < 3)
			op_export(&c);
		else if (op < 4)
			exp_drop(&c.exp[rnd(&c.seed) % NR_EXP]);
		else if (op < 8)
			op_cpu(&c);
		else if (op < 9)
			op_trigger(&c, rnd(&c.seed) & 1);
		else if (op < 12)
			op_dma(&c);
		else if (op < 14)
			op_map_unmap(&c);
		else
			op_import(&c);
		atomic_fetch_add(&c.sh->ops[slot], 1);
	}
	CHECK(p2p_vfio_user_client_alive(c.gpu) && p2p_vfio_user_client_alive(c.ce));
	for (int i = 0; i < NR_EXP; i++)
		exp_drop(&c.exp[i]);
	CHECK_OK(p2p_ioas_unmap(c.ioas, c.base, MEM_LEN, NULL));
	p2p_vfio_device_close(c.vce);
	p2p_vfio_device_close(c.vgpu);
	p2p_ioas_put(c.ioas);
	p2p_iommufd_close(c.ictx);
	p2p_vfio_user_disconnect(c.ce);
	p2p_vfio_user_disconnect(c.gpu);
	munmap(c.mem, MEM_LEN);
	close(c.mfd);
	close(c.reset_lock);
	close(c.engine_lock);
	munmap(c.sh, sizeof(*c.sh));
	return t_failures ? T_EXIT_FAIL : T_EXIT_PASS;
}

/* ---------------------------------------------------------------------- */
/* The parent                                                              */

static char dir[64], self[PATH_MAX];
static int shfd;

static pid_t spawn_child(unsigned int slot, unsigned int spawn, double seconds)
{
	pid_t pid = fork();

	if (pid == 0) {
		char a[16], b[16], s[32];

		dup2(shfd, 3);
		snprintf(a, sizeof(a), "%u", slot);
		snprintf(b, sizeof(b), "%u", spawn);
		snprintf(s, sizeof(s), "%.3f", seconds);
		execl(self, self, "child", dir, a, b, s, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int count_fds(pid_t pid)
{
	char p[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(p, sizeof(p), "/proc/%d/fd", pid);
	d = opendir(p);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static int server_threads(pid_t pid)
{
	char p[64], line[128];
	int n = -1;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/%d/status", pid);
	f = fopen(p, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

static pid_t serve(void)
{
	const char *rt = getenv("CHAOS_VU_REVOKE_MS"); /* debugging: a stuck ack stays stuck */
	const char *bdfs[] = { CE, GPU, NULL };
	char conf[128];

	snprintf(conf, sizeof(conf), "gpu %s group=1 bar0=16K bar2=4M,64,pf\ncopy-engine %s group=2\n",
		 GPU, CE);
	return t_serve(dir, conf, bdfs, rt ? rt : "3000");
}

int main(int argc, char **argv)
{
	const char *env = getenv("CHAOS_SECONDS");
	double seconds = env ? atof(env) : 4, t0;
	pid_t server, kids[NR_CLIENTS];
	unsigned int spawns = 0, kills = 0;
	unsigned long ops_at_last_kill[NR_CLIENTS] = { 0 };
	struct shared *sh;
	int base, st, failures = 0, reset_lock, engine_lock;
	char p[128];
	uint64_t seed = (uint64_t)time(NULL) | 1;
	ssize_t n;

	if (argc == 6 && !strcmp(argv[1], "child"))
		return child_main(argv[2], (unsigned int)atoi(argv[3]), (unsigned int)atoi(argv[4]),
				  atof(argv[5]));
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (seconds <= 0)
		seconds = 4;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return T_EXIT_FAIL;
	self[n] = 0;
	snprintf(dir, sizeof(dir), "/tmp/p2p-chaos-vu-XXXXXX");
	if (!mkdtemp(dir))
		t_skip("no temporary directory");
	shfd = memfd_create("chaos-vu-shared", 0);
	if (shfd < 0 || ftruncate(shfd, sizeof(*sh)))
		return T_EXIT_FAIL;
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED, shfd, 0);
	server = serve();
	if (server <= 0) {
		fprintf(stderr, "p2pbuf serve did not start\n");
		return T_EXIT_FAIL;
	}
	/* A first client, briefly: lazily made server state is in the baseline. */
	kids[0] = spawn_child(0, spawns++, 0.2);
	waitpid(kids[0], &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
		t_skip("the client needs userfaultfd");
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "chaos-vu: the first client failed\n");
		failures++;
	}
	usleep(300000);
	base = count_fds(server);

	snprintf(p, sizeof(p), "%s/reset.lock", dir);
	reset_lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	snprintf(p, sizeof(p), "%s/engine.lock", dir);
	engine_lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (reset_lock < 0 || engine_lock < 0)
		return T_EXIT_FAIL;
	printf("chaos-vu: %u clients, %.1f s, kill -9 of a random one every ~%.0f ms\n",
	       NR_CLIENTS, seconds, seconds * 1000 / 8);
	t0 = now_s();
	for (unsigned int i = 0; i < NR_CLIENTS; i++)
		kids[i] = spawn_child(i, spawns++, seconds);
	while (now_s() - t0 < seconds * 0.8) {
		unsigned int victim = (unsigned int)(rnd(&seed) % NR_CLIENTS);
		double left = seconds - (now_s() - t0);

		usleep((useconds_t)(seconds * 1e6 / 16 + rnd(&seed) % (uint64_t)(seconds * 1e6 / 8)));
		if (now_s() - t0 >= seconds * 0.8)
			break;
		/*
		 * Between two operations that need the locks (so that a request
		 * the server is still carrying out for the dead client cannot
		 * race with the others' serialized triggers and engine use);
		 * then its two connections (two threads each in the server)
		 * must be gone within 1 s.
		 */
		flock(reset_lock, LOCK_EX);
		flock(engine_lock, LOCK_EX);
		int threads = server_threads(server);
		double tk = now_s();

		kill(kids[victim], SIGKILL);
		waitpid(kids[victim], &st, 0);
		kills++;
		while (server_threads(server) > threads - 4 && now_s() - tk < 3)
			usleep(1000);
		if (now_s() - tk > 1.0) {
			fprintf(stderr, "chaos-vu: the server took %.2f s to drop a killed client\n",
				now_s() - tk);
			failures++;
		}
		flock(engine_lock, LOCK_UN);
		flock(reset_lock, LOCK_UN);
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
			fprintf(stderr, "chaos-vu: client %u ended before its kill (status %#x)\n",
				victim, st);
			failures++;
		}
		for (unsigned int k = 0; k < NR_CLIENTS; k++)
			ops_at_last_kill[k] = atomic_load(&sh->ops[k]);
		kids[victim] = spawn_child(victim, spawns++, left > 0.5 ? left : 0.5);
		if (kill(server, 0)) {
			fprintf(stderr, "chaos-vu: the server died\n");
			failures++;
			break;
		}
	}
	for (unsigned int i = 0; i < NR_CLIENTS; i++) {
		waitpid(kids[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "chaos-vu: client %u failed (status %#x)\n", i, st);
			failures++;
		}
		/* The survivors carried on after the last kill. */
		if (atomic_load(&sh->ops[i]) <= ops_at_last_kill[i]) {
			fprintf(stderr, "chaos-vu: client %u made no progress after the last kill\n",
				i);
			failures++;
		}
	}
	/* Everything the clients held is gone: the server's fds back to the baseline. */
	int now = -1;

	for (int i = 0; i < 200 && (now = count_fds(server)) != base; i++)
		usleep(10000);
	if (now != base) {
		fprintf(stderr, "chaos-vu: server fds %d, baseline %d\n", now, base);
		failures++;
	}
	printf("chaos-vu: %lu ops, %u kills, %lu revoke triggers, %lu DMAs checked, %lu imports "
	       "(%lu DMAs faulted on revoked imports), %lu DMAs after an unmap faulted, %lu writes "
	       "into revoked memory; server fds %d (baseline %d)\n",
	       atomic_load(&sh->ops[0]) + atomic_load(&sh->ops[1]) + atomic_load(&sh->ops[2]), kills,
	       atomic_load(&sh->resets), atomic_load(&sh->dma_ok), atomic_load(&sh->imports),
	       atomic_load(&sh->dma_fault), atomic_load(&sh->unmapped_faults),
	       atomic_load(&sh->revoked_writes), now, base);
	if (atomic_load(&sh->resets) == 0 || atomic_load(&sh->dma_ok) == 0) {
		fprintf(stderr, "chaos-vu: too little happened\n");
		failures++;
	}
	/* A clean stop: status 0, no socket left behind. */
	kill(server, SIGTERM);
	waitpid(server, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "chaos-vu: the server ended with status %#x\n", st);
		failures++;
	}
	const char *const files[] = { "devices.conf", "serve.log", "reset.lock", "engine.lock" };

	close(reset_lock);
	close(engine_lock);

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	if (rmdir(dir)) {
		fprintf(stderr, "chaos-vu: %s not empty after the server stopped (a socket left)\n",
			dir);
		failures++;
	}
	munmap(sh, sizeof(*sh));
	close(shfd);
	return failures ? T_EXIT_FAIL : T_EXIT_PASS;
}
