// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench preload: the kernel-uAPI door (libp2pbuf-preload.so) as a
 * program sees it.  The same measuring program (this binary's hidden
 * `bench-preload-worker` mode) runs as child processes, plainly and under
 * the door (LD_PRELOAD and P2PBUF_DOOR_CONFIG as `p2pbuf exec --config`
 * sets them), alternating which goes first, one child per case and round:
 *
 *   pass     calls on fds and paths the door does not own: open+close of a
 *            regular file and of /dev/null, pread of 4 KiB, FIONREAD on a
 *            pipe and on a socket, mmap+munmap of a memfd; plain vs door,
 *            target door <= 1.05x plain
 *   emulated VFIO_DEVICE_GET_REGION_INFO on a device cdev and
 *            IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of 4 KiB through the door
 *            (ioctl(2)) vs the native p2p_vfio_device_ioctl() /
 *            p2p_iommufd_ioctl() on the library in a child without the
 *            door, target <= 1.2x; BAR2 mmap + touch of 256 MiB (mmap(2)
 *            of the device fd vs p2p_vfio_device_mmap()), target <= 1.05x;
 *            both sides' GPU made from the same config line by
 *            door_dev_create() (gpu_config_line())
 *
 * Per-call costs are hundreds of nanoseconds: each child times batches of
 * calls with CLOCK_MONOTONIC (a warm-up batch, then REPS batches)
 * and reports its fastest batch, the one the scheduler disturbed least on
 * a shared machine; the parent reports the median over rounds with the
 * spread (min-max), the first round being a warm-up.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/dma-heap.h>

#include "cli.h"
#include "config.h"
#include "device.h"

#define die bench_die
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define BDF "0000:01:00.0"
/*
 * Calls per timed batch: ~0.25-0.5 ms each, so that on a loaded machine
 * most batches run between two preemptions and the fastest is clean.
 */
#define N_OPEN 200u	/* open+close */
#define N_PREAD 500u	/* pread 4 KiB */
#define N_IOCTL 1000u	/* FIONREAD */
#define N_MMAP 100u	/* mmap+munmap */
#define N_REGION 200u	/* GET_REGION_INFO */
#define N_IOAS 50u	/* IOAS map + unmap pairs */
#define REPS 51u	/* timed batches per child: the fastest is the child's figure */
#define BAR_REPS 5u	  /* timed BAR map + touch per child (fastest) */
#define IOVA (1ull << 32) /* where the 4 KiB page is mapped */

/*
 * The GPU both sides use, as a door configuration line: the door makes it
 * from P2PBUF_DOOR_CONFIG, the native worker from the same line through
 * the same door_dev_create(), so that both get the same device flags and
 * the same page population policy (the door does not pre-fault BARs: its
 * pages are allocated by the first mapping, the warm-up, on both sides).
 */
static int gpu_config_line(char *buf, size_t len, uint64_t bar)
{
	return snprintf(buf, len, "gpu %s group=1 bar0=16K bar2=%llu,64,pf\n", BDF,
			(unsigned long long)bar);
}

extern char **environ;

/* ---------------------------------------------------------------------- */
/* The worker: one process, one mode, "key nanoseconds" lines on stdout    */

static uint64_t min_u64(const uint64_t *v, unsigned int n)
{
	uint64_t m = v[0];

	for (unsigned int i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static void wdie(const char *what, int err)
{
	fprintf(stderr, "p2pbuf bench-preload-worker: %s: %s\n", what,
		strerror(err < 0 ? -err : err));
	exit(1);
}

/*
 * Time @body @calls times per batch: a warm-up batch, then REPS batches;
 * print the fastest batch in ns (the one least disturbed by the scheduler
 * on a shared machine; the parent takes the median over children).  A
 * macro, so that the loop is the same inlined code with and without the
 * door.
 */
#define TIME_BATCHES(key, calls, body)                                                   \
	do {                                                                             \
		uint64_t t_[REPS];                                                       \
		for (unsigned int r_ = 0; r_ <= REPS; r_++) {                            \
			uint64_t t0_ = now_ns();                                         \
			for (unsigned int i_ = 0; i_ < (calls); i_++) {                  \
				body;                                                    \
			}                                                                \
			if (r_)                                                          \
				t_[r_ - 1] = now_ns() - t0_;                             \
		}                                                                        \
		printf("%s %llu\n", key, (unsigned long long)min_u64(t_, REPS));         \
	} while (0)

/*
 * The door in use, as in a VMM: a heap dma-buf allocated and mapped, so
 * that the fd wrappers ask the file layer and munmap() looks for door
 * mappings first.  Plainly the same calls reach the host (no dma-heap here:
 * ENOENT, nothing to keep).  Returns whether the door answered.
 */
static bool door_in_use(void)
{
	struct dma_heap_allocation_data a = { .len = BENCH_PAGE, .fd_flags = O_RDWR | O_CLOEXEC };
	int heap = open("/dev/dma_heap/system", O_RDWR | O_CLOEXEC);
	void *va;

	if (heap < 0)
		return false;
	if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a))
		wdie("DMA_HEAP_IOCTL_ALLOC", errno);
	va = mmap(NULL, BENCH_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, (int)a.fd, 0);
	if (va == MAP_FAILED)
		wdie("mmap of a heap dma-buf", errno);
	*(volatile uint8_t *)va = 1;
	return true; /* kept until exit */
}

/* Calls on fds and paths the door does not own. */
static int worker_pass(void)
{
	const char *dir = getenv("TMPDIR");
	char path[PATH_MAX], buf[4096];
	int p[2], sv[2], avail, fd, mfd;

	printf("door_in_use %d\n", door_in_use());

	snprintf(path, sizeof(path), "%s/p2pbuf-bench-preload-XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		wdie("temporary file", errno);
	memset(buf, 0x5a, sizeof(buf));
	for (int i = 0; i < 16; i++)
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			wdie("temporary file", errno);
	mfd = memfd_create("bench-preload", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, 1 << 20))
		wdie("memfd", errno);
	if (pipe2(p, O_CLOEXEC) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		wdie("pipe", errno);
	if (write(p[1], buf, 16) != 16 || write(sv[1], buf, 16) != 16)
		wdie("pipe write", errno);

	TIME_BATCHES("open_close", N_OPEN, {
		int f = open(path, O_RDONLY | O_CLOEXEC);
		if (f < 0)
			wdie("open", errno);
		close(f);
	});
	TIME_BATCHES("open_close_devnull", N_OPEN, {
		int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (f < 0)
			wdie("open /dev/null", errno);
		close(f);
	});
	TIME_BATCHES("pread_4k", N_PREAD, {
		if (pread(fd, buf, sizeof(buf), 4096) != (ssize_t)sizeof(buf))
			wdie("pread", errno);
	});
	TIME_BATCHES("ioctl_pipe", N_IOCTL, {
		if (ioctl(p[0], FIONREAD, &avail) || avail != 16)
			wdie("FIONREAD pipe", errno);
	});
	TIME_BATCHES("ioctl_socket", N_IOCTL, {
		if (ioctl(sv[0], FIONREAD, &avail) || avail != 16)
			wdie("FIONREAD socket", errno);
	});
	TIME_BATCHES("mmap_memfd", N_MMAP, {
		void *m = mmap(NULL, 1 << 20, PROT_READ, MAP_SHARED, mfd, 0);
		if (m == MAP_FAILED)
			wdie("mmap", errno);
		munmap(m, 1 << 20);
	});
	unlink(path);
	close(fd);
	close(mfd);
	return 0;
}

/*
 * The emulated objects, the same work both ways: @door true makes the
 * kernel-uAPI calls (open, ioctl, mmap) that the door answers; false calls
 * the library directly (p2p_* API), in a process without the door.
 */
struct emu {
	bool door;
	int dev, iommufd;		/* door: the fds */
	struct p2p_pci_dev *pci;	/* native: the objects */
	struct p2p_vfio_device *vdev;
	struct p2p_iommufd *ctx;
};

static long emu_dev_ioctl(struct emu *e, unsigned long req, void *arg)
{
	if (e->door)
		return ioctl(e->dev, req, arg) ? -errno : 0;
	return p2p_vfio_device_ioctl(e->vdev, req, arg);
}

static long emu_iommufd_ioctl(struct emu *e, unsigned long req, void *arg)
{
	if (e->door)
		return ioctl(e->iommufd, req, arg) ? -errno : 0;
	return p2p_iommufd_ioctl(e->ctx, req, arg);
}

/* The cdev index of BDF, as a VFIO user finds it: sysfs vfio-dev/vfioN. */
static int cdev_index(void)
{
	DIR *d = opendir("/sys/bus/pci/devices/" BDF "/vfio-dev");
	struct dirent *de;
	int n = -1;

	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, "vfio", 4))
			n = atoi(de->d_name + 4);
	if (d)
		closedir(d);
	return n;
}

static void emu_open(struct emu *e, uint64_t bar)
{
	int ret;

	if (e->door) {
		struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
		int idx = cdev_index();
		char path[64];

		if (idx < 0)
			wdie("no " BDF " under /sys/bus/pci/devices (is the door loaded?)", ENODEV);
		snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", idx);
		e->dev = open(path, O_RDWR | O_CLOEXEC);
		if (e->dev < 0)
			wdie(path, errno);
		e->iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
		if (e->iommufd < 0)
			wdie("/dev/iommu", errno);
		bind.iommufd = e->iommufd;
		if (ioctl(e->dev, VFIO_DEVICE_BIND_IOMMUFD, &bind))
			wdie("VFIO_DEVICE_BIND_IOMMUFD", errno);
		return;
	}
	if ((ret = p2p_library_init()))
		wdie("p2p_library_init", ret);
	{
		static struct door_config cfg;
		char line[128], err[256];
		int n = gpu_config_line(line, sizeof(line), bar);

		if ((ret = door_config_parse(&cfg, line, (size_t)n, "bench", 1, err, sizeof(err))))
			wdie(err, -ret);
		if ((ret = door_dev_create(&cfg.devs[0], &e->pci)))
			wdie("device", ret);
		door_config_free(&cfg);
		if ((ret = p2p_vfio_device_open(e->pci, &e->vdev)))
			wdie("device open", ret);
	}
	if ((ret = p2p_iommufd_open(&e->ctx)))
		wdie("iommufd", ret);
}

static void emu_close(struct emu *e)
{
	if (e->door) {
		close(e->dev);
		close(e->iommufd);
		return;
	}
	p2p_iommufd_close(e->ctx);
	p2p_vfio_device_close(e->vdev);
	p2p_pci_dev_put(e->pci);
}

/* mmap BAR2 from the device, touch every page; returns the mapping, *ns the time. */
static uint8_t *emu_bar_map_touch(struct emu *e, uint64_t size, uint64_t *ns)
{
	uint64_t off = P2P_VFIO_REGION_OFFSET(VFIO_PCI_BAR2_REGION_INDEX);
	uint64_t t0 = now_ns();
	void *va;
	int ret;

	if (e->door) {
		va = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, e->dev, (off_t)off);
		if (va == MAP_FAILED)
			wdie("mmap of BAR2", errno);
	} else if ((ret = p2p_vfio_device_mmap(e->vdev, NULL, size, PROT_READ | PROT_WRITE,
					       MAP_SHARED, off, &va))) {
		wdie("p2p_vfio_device_mmap of BAR2", ret);
	}
	touch_pages(va, size);
	*ns = now_ns() - t0;
	return va;
}

static void emu_bar_unmap(struct emu *e, uint8_t *va, uint64_t size)
{
	int ret = e->door ? (munmap(va, size) ? -errno : 0) : p2p_munmap(va, size);

	if (ret)
		wdie("munmap of BAR2", ret);
}

static int worker_emulated(bool door, uint64_t bar)
{
	struct emu e = { .door = door, .dev = -1, .iommufd = -1 };
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = VFIO_PCI_BAR2_REGION_INDEX };
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	uint64_t t[BAR_REPS];
	uint8_t *page, *va;
	uint32_t check = 0;
	long ret;

	emu_open(&e, bar);

	/* One checked call of each before timing: the work is the real one. */
	if ((ret = emu_dev_ioctl(&e, VFIO_DEVICE_GET_REGION_INFO, &ri)))
		wdie("VFIO_DEVICE_GET_REGION_INFO", (int)ret);
	if (ri.size != bar || !(ri.flags & VFIO_REGION_INFO_FLAG_MMAP))
		wdie("VFIO_DEVICE_GET_REGION_INFO: not the configured BAR2", EINVAL);
	TIME_BATCHES("region_info", N_REGION, {
		if (emu_dev_ioctl(&e, VFIO_DEVICE_GET_REGION_INFO, &ri))
			wdie("VFIO_DEVICE_GET_REGION_INFO", EIO);
	});

	if ((ret = emu_iommufd_ioctl(&e, IOMMU_IOAS_ALLOC, &alloc)))
		wdie("IOMMU_IOAS_ALLOC", (int)ret);
	page = mmap(NULL, BENCH_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		wdie("mmap", errno);
	memset(page, 1, BENCH_PAGE);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)page,
		.length = BENCH_PAGE,
		.iova = IOVA,
	};
	struct iommu_ioas_unmap unmap = {
		.size = sizeof(unmap), .ioas_id = alloc.out_ioas_id, .iova = IOVA,
		.length = BENCH_PAGE,
	};
	TIME_BATCHES("ioas_map_unmap", N_IOAS, {
		map.iova = IOVA;
		unmap.length = BENCH_PAGE;
		if (emu_iommufd_ioctl(&e, IOMMU_IOAS_MAP, &map) ||
		    emu_iommufd_ioctl(&e, IOMMU_IOAS_UNMAP, &unmap) || unmap.length != BENCH_PAGE)
			wdie("IOMMU_IOAS_MAP + UNMAP", EIO);
	});
	munmap(page, BENCH_PAGE);

	/* BAR2: a warm-up mapping, checked through the region (the BAR got the bytes). */
	va = emu_bar_map_touch(&e, bar, &t[0]);
	emu_bar_unmap(&e, va, bar);
	{
		uint64_t off = P2P_VFIO_REGION_OFFSET(VFIO_PCI_BAR2_REGION_INDEX) + 5 * BENCH_PAGE;
		ssize_t n = door ? pread(e.dev, &check, 1, (off_t)off)
				 : p2p_vfio_device_pread(e.vdev, &check, 1, off);

		if (n != 1 || check != 5)
			wdie("BAR2 does not hold what the mapping wrote", EIO);
	}
	for (unsigned int i = 0; i < BAR_REPS; i++) {
		va = emu_bar_map_touch(&e, bar, &t[i]);
		emu_bar_unmap(&e, va, bar);
	}
	printf("bar_map_touch %llu\n", (unsigned long long)min_u64(t, BAR_REPS));
	emu_close(&e);
	return 0;
}

/* p2pbuf bench-preload-worker {pass|door|native} BAR_SIZE */
int cmd_bench_preload_worker(int argc, char **argv)
{
	uint64_t bar = argc > 2 ? cli_parse_size(argv[2]) : 0;

	if (argc != 3 || !bar) {
		fprintf(stderr, "usage: p2pbuf bench-preload-worker {pass|door|native} BAR_SIZE\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "pass"))
		return worker_pass();
	if (!strcmp(argv[1], "door") || !strcmp(argv[1], "native"))
		return worker_emulated(!strcmp(argv[1], "door"), bar);
	fprintf(stderr, "p2pbuf bench-preload-worker: unknown mode '%s'\n", argv[1]);
	return 2;
}

/* ---------------------------------------------------------------------- */
/* The benchmark                                                           */

/* What the children report, and how the report names it. */
static const struct figure {
	const char *key;
	bool pass;		/* pass-through (plain vs door), else emulated (native vs door) */
	unsigned int calls;	/* per sample */
	double limit;
	const char *what;
} figures[] = {
	{ "open_close", true, N_OPEN, 1.05, "open+close of a regular file" },
	{ "open_close_devnull", true, N_OPEN, 1.05, "open+close of /dev/null (a /dev path not the door's)" },
	{ "pread_4k", true, N_PREAD, 1.05, "pread of 4 KiB from a page-cached file" },
	{ "ioctl_pipe", true, N_IOCTL, 1.05, "ioctl FIONREAD on a pipe" },
	{ "ioctl_socket", true, N_IOCTL, 1.05, "ioctl FIONREAD on a unix socket" },
	{ "mmap_memfd", true, N_MMAP, 1.05, "mmap+munmap of 1 MiB of a memfd" },
	{ "region_info", false, N_REGION, 1.2, "VFIO_DEVICE_GET_REGION_INFO (BAR2)" },
	{ "ioas_map_unmap", false, N_IOAS, 1.2, "IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of 4 KiB" },
	{ "bar_map_touch", false, 1, 1.05, "BAR2 mmap + touch every page" },
};

struct child_env {
	char *plain[512], *door[512];
	char exe[PATH_MAX], bar[32];
};

/* The environment as `p2pbuf exec --config FILE` leaves it, and the plain one. */
static void child_env_init(struct child_env *ce, const char *preload, const char *config)
{
	const char *old = getenv("LD_PRELOAD");
	size_t n = 0;
	char *v;

	for (char **e = environ; *e && n < ARRAY_SIZE(ce->plain) - 3; e++) {
		if (!strncmp(*e, "LD_PRELOAD=", 11) || !strncmp(*e, "P2PBUF_DOOR_", 12))
			continue;
		ce->plain[n] = ce->door[n] = *e;
		n++;
	}
	if (old && *old) {
		if (asprintf(&v, "LD_PRELOAD=%s", old) < 0)
			die("environment", ENOMEM);
		ce->plain[n] = v;
		if (asprintf(&v, "LD_PRELOAD=%s:%s", old, preload) < 0)
			die("environment", ENOMEM);
	} else if (asprintf(&v, "LD_PRELOAD=%s", preload) < 0) {
		die("environment", ENOMEM);
	}
	ce->door[n] = v;
	if (asprintf(&v, "P2PBUF_DOOR_CONFIG=%s", config) < 0)
		die("environment", ENOMEM);
	ce->door[n + 1] = v;
}

/* Run one worker; put its "key ns" lines in @row[2 x figure + door]. */
static void run_worker(const struct child_env *ce, const char *mode, bool door, uint64_t *row)
{
	char *argv[] = { (char *)"p2pbuf", (char *)"bench-preload-worker", (char *)mode,
			 (char *)ce->bar, NULL };
	posix_spawn_file_actions_t fa;
	char line[256];
	int p[2], st, ret;
	pid_t pid;
	FILE *f;

	if (pipe2(p, O_CLOEXEC))
		die("pipe", errno);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
	fflush(NULL);
	ret = posix_spawn(&pid, ce->exe, &fa, NULL, argv, door ? ce->door : (char **)ce->plain);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (ret)
		die("spawning the worker", ret);
	f = fdopen(p[0], "r");
	if (!f)
		die("fdopen", errno);
	while (fgets(line, sizeof(line), f)) {
		char key[64];
		unsigned long long ns;

		if (sscanf(line, "%63s %llu", key, &ns) != 2)
			continue;
		if (!strcmp(key, "door_in_use") && ns != door) {
			fprintf(stderr, "p2pbuf bench: the %s worker: /dev/dma_heap/system %s\n",
				door ? "door" : "plain",
				door ? "did not open under the door" : "opened without the door");
			exit(1);
		}
		for (size_t i = 0; i < ARRAY_SIZE(figures); i++)
			if (!strcmp(key, figures[i].key))
				row[2 * i + door] = ns;
	}
	fclose(f);
	if (waitpid(pid, &st, 0) < 0)
		die("waitpid", errno);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "p2pbuf bench: the %s worker (%s) failed (status %#x)\n", mode,
			door ? "under the door" : "plain", st);
		exit(1);
	}
}

/*
 * One arm of a round: arm 0 the workers without the door (pass-through
 * plain, emulated native), arm 1 the same under the door.
 */
static void preload_sample(void *c, unsigned int arm, uint64_t *row)
{
	const struct child_env *ce = c;

	run_worker(ce, "pass", arm, row);
	run_worker(ce, arm ? "door" : "native", arm, row);
}

int bench_preload(const struct bench_opts *o)
{
	uint64_t bar = o->size ? o->size : 256ull << 20;
	static struct child_env ce;
	static struct bench_series s;
	struct bench_report *r;
	char preload[PATH_MAX], config[PATH_MAX], txt[160];
	const char *dir = getenv("TMPDIR");
	ssize_t len;
	int fd, ret;

	ret = cli_find_preload(preload, sizeof(preload));
	if (ret) {
		fprintf(stderr, "p2pbuf bench preload: cannot find libp2pbuf-preload.so (%s; set P2PBUF_PRELOAD)\n",
			strerror(-ret));
		return 1;
	}
	{
		char abs[PATH_MAX];

		if (realpath(preload, abs))
			snprintf(preload, sizeof(preload), "%s", abs);
	}
	len = readlink("/proc/self/exe", ce.exe, sizeof(ce.exe) - 1);
	if (len <= 0)
		die("/proc/self/exe", errno);
	ce.exe[len] = 0;
	snprintf(ce.bar, sizeof(ce.bar), "%llu", (unsigned long long)bar);
	/* The door's devices: the p2pbuf run GPU alone (no storage file to generate). */
	snprintf(config, sizeof(config), "%s/p2pbuf-bench-preload-XXXXXX.conf",
		 dir && *dir ? dir : "/tmp");
	fd = mkostemps(config, 5, O_CLOEXEC);
	if (fd < 0)
		die("config file", errno);
	len = gpu_config_line(txt, sizeof(txt), bar);
	if (write(fd, txt, (size_t)len) != len)
		die("config file", errno);
	close(fd);
	child_env_init(&ce, preload, config);

	r = report_new("preload", o);
	report_fact(r, "door", preload);
	report_fact(r, "children", "this binary's bench-preload-worker mode, plain and under the door, alternating");
	snprintf(txt, sizeof(txt), "%u-%u calls (~0.3 ms) per batch, the fastest of %u per child",
		 N_IOAS, N_IOCTL, REPS);
	report_fact(r, "batches", txt);
	snprintf(txt, sizeof(txt), "%llu MiB BAR2, the fastest of %u per child",
		 (unsigned long long)(bar >> 20), BAR_REPS);
	report_fact(r, "bar", txt);
	report_fact(r, "pages", hugepage_mode_name());
	report_fact(r, "pass-through", "with the door in use: a heap dma-buf open and mapped through it");

	report_plot_axis(r, "us per call (median, min-max)", true);
	/* Plain (native) and door workers alternate which goes first, round by round. */
	bench_series_init(&s, "plain vs door", 2, 2 * ARRAY_SIZE(figures));
	s.npairs = ARRAY_SIZE(figures);
	for (size_t i = 0; i < ARRAY_SIZE(figures); i++)
		s.pair[i] = (struct bench_pair){ .num = 2 * i + 1, .den = 2 * i,
						 .max_ratio = figures[i].limit };
	bench_interleave(r, &s, 7, preload_sample, &ce);
	unlink(config);

	for (size_t i = 0; i < ARRAY_SIZE(figures); i++) {
		const struct figure *fg = &figures[i];
		const char *base = fg->pass ? "plain" : "native";
		char name[64], what[160], text[64];
		double mb, md;

		snprintf(name, sizeof(name), "%s_%s", base, fg->key);
		snprintf(what, sizeof(what), "%s%s: %u x %s", base,
			 fg->pass ? "" : " p2p_*", fg->calls, fg->what);
		mb = report_series_median(r, &s, 2 * i, name, what);
		snprintf(name, sizeof(name), "door_%s", fg->key);
		snprintf(what, sizeof(what), "door: %u x %s", fg->calls, fg->what);
		md = report_series_median(r, &s, 2 * i + 1, name, what);
		if (!r_json(r) && fg->calls > 1)
			printf("   %-28s per call: %s %.0f ns, door %.0f ns (%+.0f ns)\n", "", base,
			       mb * 1e6 / fg->calls, md * 1e6 / fg->calls,
			       (md - mb) * 1e6 / fg->calls);
		snprintf(name, sizeof(name), "%s_door/%s", fg->key, base);
		report_series_ratio(r, &s, 2 * i + 1, 2 * i, name);
		snprintf(text, sizeof(text), "<= %.2f x %s", fg->limit, base);
		report_series_target(r, &s, 2 * i + 1, 2 * i, name, fg->limit, false, text);
		for (unsigned int d = 0; d < 2; d++) {
			uint64_t v[BENCH_MAX_ROUNDS];
			double us = 1e3 * fg->calls, m;

			memcpy(v, s.ns[2 * i + d], s.rounds * sizeof(v[0]));
			m = median_ns(v, s.rounds); /* sorts v: before reading v[0] */
			report_plot(r, fg->key, d ? "door" : "without the door (plain / native p2p_*)",
				    m / us, (double)v[0] / us, (double)v[s.rounds - 1] / us);
		}
	}
	return report_finish(r);
}
