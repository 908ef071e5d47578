// SPDX-License-Identifier: MIT
/*
 * The door's state: the devices of the configuration, created in this
 * process on the first use of a door path, and the /sys and /dev tree
 * generated for them in a private temporary directory (removed at exit by
 * the process that made it).  Paths under the door's prefixes are
 * answered by that real tree, so stat, readdir and readlink need no
 * emulation; opens of the device nodes call the constructors of the
 * DOOR.md contract; the two files whose contents are live (a function's
 * config and bufinfo) are snapshots taken at open.
 *
 * Every libc call made here goes to libc, not to the wrappers: the
 * preload library is linked with -Wl,--wrap for each wrapped symbol
 * (src/door/meson.build, real.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>
#include <p2pbuf/vfio_user.h>

#include "contract.h"
#include "device.h"
#include "door.h"

static struct door_config cfg;
static struct p2p_pci_dev *pdevs[DOOR_MAX_DEVICES];
static int cdevs[DOOR_MAX_DEVICES]; /* cdev index, -1 without the registry */
static char root[PATH_MAX];
static size_t rootlen;
static pid_t owner;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_ret = -EAGAIN;
static bool cfg_loaded;
/*
 * Remote functions (p2pbuf exec --connect SOCKET): slots after the
 * configured devices, each a vfio-user client of this process.  When its
 * server dies the function is removed: unregistered, its entries taken
 * out of the tree (door_remote_check(), on the next door path).
 */
static struct p2p_vfio_user_client *remotes[DOOR_MAX_DEVICES];
static atomic_bool remote_gone[DOOR_MAX_DEVICES];
static unsigned int nr_remotes;
static pthread_mutex_t remote_lock = PTHREAD_MUTEX_INITIALIZER;

void door_say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "p2pbuf door: ");

	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(buf);
	buf[n++] = '\n';
	if (write(2, buf, (size_t)n) < 0)
		return;
}

static void log_to_stderr(enum p2p_log_level level, const char *fmt, va_list ap)
{
	char buf[400];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	door_say("%s: %s", level <= P2P_LOG_ERR ? "error" : level <= P2P_LOG_WARN ? "warning" : "info",
		 buf);
}

void door_load_config(void)
{
	char err[256];

	if (cfg_loaded)
		return;
	cfg_loaded = true;
	if (door_config_load(&cfg, err, sizeof(err))) {
		door_say("bad configuration: %s", err);
		_exit(2);
	}
	if (getenv("P2PBUF_DOOR_DEBUG"))
		p2p_set_log(log_to_stderr, P2P_LOG_DEBUG);
	else
		p2p_set_log(log_to_stderr, P2P_LOG_WARN);
}

const char *door_root(size_t *len)
{
	*len = rootlen;
	return root;
}

/* ---------------------------------------------------------------------- */
/* Devices                                                                 */

/*
 * The function's config space: the contract's side-effect-free read, or
 * (before the vfio branch is merged) the VFIO config region of a file
 * opened for the purpose.
 */
static int read_config(unsigned int slot, void *buf, size_t len)
{
	struct p2p_vfio_device *vdev;
	ssize_t r;
	int ret;

	if (DOOR_HAVE(p2p_pci_dev_config_read))
		return p2p_pci_dev_config_read(pdevs[slot], 0, buf, len) < 0 ? -EIO : 0;
	ret = p2p_vfio_device_open(pdevs[slot], &vdev);
	if (ret)
		return ret;
	r = p2p_vfio_device_pread(vdev, buf, len, P2P_VFIO_REGION_OFFSET(7));
	p2p_vfio_device_close(vdev);
	return r < 0 ? (int)r : (size_t)r == len ? 0 : -EIO;
}

/* ---------------------------------------------------------------------- */
/* The generated tree                                                      */

static int tree_mkdirs(const char *top, const char *rel)
{
	char p[PATH_MAX];
	int n = snprintf(p, sizeof(p), "%s%s", top, rel);

	if (n < 0 || (size_t)n >= sizeof(p))
		return -ENAMETOOLONG;
	for (char *s = p + strlen(top) + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

static int tree_file(const char *top, const char *rel, const void *data, size_t len, mode_t mode)
{
	char p[PATH_MAX];
	int fd, ret = 0;

	snprintf(p, sizeof(p), "%s%s", top, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (len && write(fd, data, len) != (ssize_t)len)
		ret = -EIO;
	close(fd);
	return ret;
}

__attribute__((format(printf, 3, 4)))
static int tree_printf(const char *top, const char *rel, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	return tree_file(top, rel, buf, (size_t)n, 0444);
}

static int tree_link(const char *top, const char *rel, const char *target)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s%s", top, rel);
	return symlink(target, p) ? -errno : 0;
}

/* The kernel's struct resource flags (include/linux/ioport.h) of a BAR. */
#define IORESOURCE_IO 0x100ull
#define IORESOURCE_MEM 0x200ull
#define IORESOURCE_PREFETCH 0x2000ull
#define IORESOURCE_SIZEALIGN 0x40000ull
#define IORESOURCE_MEM_64 0x100000ull

static uint64_t le_bar(const uint8_t *c, int i)
{
	unsigned int o = 0x10 + 4 * (unsigned int)i;

	return (uint64_t)c[o] | (uint64_t)c[o + 1] << 8 | (uint64_t)c[o + 2] << 16 |
	       (uint64_t)c[o + 3] << 24;
}

/* The 13 lines of /sys/bus/pci/devices/BDF/resource: "start end flags" per resource. */
static int write_resource(const char *top, unsigned int slot, const uint8_t *config,
			  const char *dir)
{
	const struct door_dev *d = &cfg.devs[slot];
	char buf[13 * 60 + 1], rel[PATH_MAX];
	size_t n = 0;

	for (int i = 0; i < 13; i++) {
		uint64_t start = 0, size = 0, fl = 0;
		uint32_t pflags = 0;

		if (i < 6) {
			if (DOOR_HAVE(p2p_pci_dev_bar_info)) {
				if (p2p_pci_dev_bar_info(pdevs[slot], i, &start, &size, &pflags))
					size = 0;
			} else {
				/* The BAR registers as the device reset them. */
				uint64_t reg = le_bar(config, i);

				if (d->kind == DOOR_GPU) {
					size = d->bar_size[i];
					pflags = door_pci_bar_flags(d->bar_flags[i]);
				} else if (i == 0) {
					size = d->kind == DOOR_COPY_ENGINE ? P2P_CE_BAR0_SIZE
									   : P2P_SD_BAR0_SIZE;
				}
				start = (reg & 1) ? reg & ~0x3ull : reg & ~0xfull;
				if (size && (reg & 0x6) == 0x4 && i < 5)
					start |= le_bar(config, i + 1) << 32;
			}
		}
		if (size) {
			if (pflags & P2P_BAR_IO) {
				fl = IORESOURCE_IO | IORESOURCE_SIZEALIGN | 0x1;
			} else {
				fl = IORESOURCE_MEM | IORESOURCE_SIZEALIGN;
				if (pflags & P2P_BAR_MEM64)
					fl |= IORESOURCE_MEM_64 | 0x4;
				if (pflags & P2P_BAR_PREFETCH)
					fl |= IORESOURCE_PREFETCH | 0x8;
			}
		}
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "0x%016llx 0x%016llx 0x%016llx\n",
				      (unsigned long long)(size ? start : 0),
				      (unsigned long long)(size ? start + size - 1 : 0),
				      (unsigned long long)fl);
	}
	snprintf(rel, sizeof(rel), "%s/resource", dir);
	return tree_file(top, rel, buf, n, 0444);
}

static int build_device(const char *top, unsigned int slot)
{
	const struct door_dev *d = &cfg.devs[slot];
	uint8_t config[4096];
	char dir[128], rel[PATH_MAX];
	int ret;

	memset(config, 0, sizeof(config));
	ret = read_config(slot, config, sizeof(config));
	if (ret)
		return ret;
	snprintf(dir, sizeof(dir), "/sys/devices/p2pbuf/%s", d->bdf);
	if ((ret = tree_mkdirs(top, dir)))
		return ret;
#define F(name, ...)                                                             \
	do {                                                                     \
		snprintf(rel, sizeof(rel), "%s/" name, dir);                     \
		if ((ret = tree_printf(top, rel, __VA_ARGS__)))                       \
			return ret;                                              \
	} while (0)
	F("vendor", "0x%04x\n", config[0] | config[1] << 8);
	F("device", "0x%04x\n", config[2] | config[3] << 8);
	F("revision", "0x%02x\n", config[8]);
	F("class", "0x%06x\n", config[9] | config[10] << 8 | config[11] << 16);
	F("subsystem_vendor", "0x%04x\n", config[0x2c] | config[0x2d] << 8);
	F("subsystem_device", "0x%04x\n", config[0x2e] | config[0x2f] << 8);
	F("irq", "0\n");
	F("numa_node", "-1\n");
	F("enable", "1\n");
	F("uevent", "DRIVER=vfio-pci\nPCI_CLASS=%X\nPCI_ID=%04X:%04X\nPCI_SUBSYS_ID=%04X:%04X\n"
		    "PCI_SLOT_NAME=%s\n",
	  config[9] | config[10] << 8 | config[11] << 16, config[0] | config[1] << 8,
	  config[2] | config[3] << 8, config[0x2c] | config[0x2d] << 8,
	  config[0x2e] | config[0x2f] << 8, d->bdf);
#undef F
	/* A snapshot at generation for relative opens; absolute ones get a live one. */
	snprintf(rel, sizeof(rel), "%s/config", dir);
	if ((ret = tree_file(top, rel, config, sizeof(config), 0644)))
		return ret;
	if ((ret = write_resource(top, slot, config, dir)))
		return ret;
	snprintf(rel, sizeof(rel), "%s/iommu_group", dir);
	char target[128];
	snprintf(target, sizeof(target), "../../../kernel/iommu_groups/%u", d->group);
	if ((ret = tree_link(top, rel, target)))
		return ret;
	snprintf(rel, sizeof(rel), "%s/driver", dir);
	if ((ret = tree_link(top, rel, "../../../bus/pci/drivers/vfio-pci")))
		return ret;
	snprintf(rel, sizeof(rel), "%s/subsystem", dir);
	if ((ret = tree_link(top, rel, "../../../bus/pci")))
		return ret;
	if (cdevs[slot] >= 0) {
		snprintf(rel, sizeof(rel), "%s/vfio-dev/vfio%d", dir, cdevs[slot]);
		if ((ret = tree_mkdirs(top, rel)))
			return ret;
		snprintf(rel, sizeof(rel), "%s/vfio-dev/vfio%d/dev", dir, cdevs[slot]);
		if ((ret = tree_printf(top, rel, "%u:%d\n", 511u, cdevs[slot])))
			return ret;
		snprintf(rel, sizeof(rel), "/dev/vfio/devices/vfio%d", cdevs[slot]);
		if ((ret = tree_file(top, rel, NULL, 0, 0666)))
			return ret;
	}
	snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s", d->bdf);
	snprintf(target, sizeof(target), "../../../devices/p2pbuf/%s", d->bdf);
	if ((ret = tree_link(top, rel, target)))
		return ret;
	snprintf(rel, sizeof(rel), "/sys/bus/pci/drivers/vfio-pci/%s", d->bdf);
	snprintf(target, sizeof(target), "../../../../devices/p2pbuf/%s", d->bdf);
	if ((ret = tree_link(top, rel, target)))
		return ret;
	snprintf(rel, sizeof(rel), "/sys/kernel/iommu_groups/%u/devices", d->group);
	if ((ret = tree_mkdirs(top, rel)))
		return ret;
	snprintf(rel, sizeof(rel), "/sys/kernel/iommu_groups/%u/devices/%s", d->group, d->bdf);
	if ((ret = tree_link(top, rel, target)))
		return ret;
	snprintf(rel, sizeof(rel), "/dev/vfio/%u", d->group);
	return tree_file(top, rel, NULL, 0, 0600);
}

static void remove_tree(void)
{
	if (!rootlen || getpid() != owner)
		return;
	door_tree_remove(root);
	rootlen = 0;
}

/*
 * The host's PCI functions in the tree: /sys/bus/pci/devices/BDF for each
 * host function whose BDF no emulated one has (the emulated win a clash),
 * a copy of the host's link (../../../devices/pci0000:00/BDF), which
 * resolves through /sys/devices/pci0000:00 in the tree, a link to the
 * host's /sys/devices/pci0000:00: reads pass through to the real sysfs, and
 * readlink and realpath answer as on the host.  The host's IOMMU groups
 * likewise, as links to the real /sys/kernel/iommu_groups/N (an emulated
 * group number wins).  No host sysfs: nothing to add.
 */
static int host_links(const char *top, const char *dir, bool devices)
{
	char rel[PATH_MAX], host[PATH_MAX], link[PATH_MAX], topdir[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);
	int ret = 0;

	if (!d)
		return 0;
	while (!ret && (e = readdir(d))) {
		const char *tail;
		ssize_t n;

		if (e->d_name[0] == '.' || strlen(e->d_name) > NAME_MAX)
			continue;
		snprintf(rel, sizeof(rel), "%s/%s", dir, e->d_name);
		snprintf(host, sizeof(host), "%s", rel);
		if (devices) {
			n = readlink(host, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			tail = !strncmp(link, "../../../devices/", 17) ? link + 17 : NULL;
			if (tail && *tail && strchr(tail, '/') && strncmp(tail, "p2pbuf/", 7)) {
				/* /sys/devices/<top> of the tree -> the host's. */
				snprintf(topdir, sizeof(topdir), "/sys/devices/%.*s",
					 (int)(strchr(tail, '/') - tail), tail);
				ret = tree_link(top, topdir, topdir);
				if (ret == -EEXIST)
					ret = 0;
			} else {
				snprintf(link, sizeof(link), "%s", host);
			}
		} else {
			snprintf(link, sizeof(link), "%s", host);
		}
		if (!ret) {
			ret = tree_link(top, rel, link);
			if (ret == -EEXIST) /* an emulated function or group has it */
				ret = 0;
		}
	}
	closedir(d);
	return ret;
}

/* Where trees are made: $P2PBUF_DOOR_TMPDIR (p2pbuf exec's), else $TMPDIR, else /tmp. */
static int make_top(char *top)
{
	const char *exec_dir = getenv("P2PBUF_DOOR_TMPDIR"), *tmp = getenv("TMPDIR");

	if (exec_dir && *exec_dir) {
		snprintf(top, PATH_MAX, "%s/p2pbuf-door-%d-XXXXXX", exec_dir, (int)getpid());
		if (mkdtemp(top))
			return 0;
		if (errno != ENOENT)
			return -errno;
		/* PROGRAM has ended and p2pbuf exec removed its directory: on our own. */
	}
	snprintf(top, PATH_MAX, "%s/p2pbuf-door-%d-XXXXXX", tmp && *tmp ? tmp : "/tmp",
		 (int)getpid());
	return mkdtemp(top) ? 0 : -errno;
}

/*
 * Generate the whole tree for the devices made so far in a new directory
 * (make_top()), written to @top (PATH_MAX bytes).  On failure nothing is
 * left behind.
 */
static int generate_tree(char *top, bool say)
{
	static const char *const dirs[] = {
		"/sys/devices/p2pbuf", "/sys/bus/pci/devices", "/sys/bus/pci/drivers/vfio-pci",
		"/sys/kernel/iommu_groups", "/sys/kernel/debug/dma_buf", "/dev/vfio/devices",
		"/dev/dma_heap",
	};
	int ret = 0;

	ret = make_top(top);
	if (ret)
		return ret;
	for (size_t i = 0; !ret && i < sizeof(dirs) / sizeof(dirs[0]); i++)
		ret = tree_mkdirs(top, dirs[i]);
	if (!ret && !(ret = tree_file(top, "/sys/kernel/debug/dma_buf/bufinfo", NULL, 0, 0444)) &&
	    !(ret = tree_file(top, "/dev/vfio/vfio", NULL, 0, 0666)) &&
	    !(ret = tree_file(top, "/dev/iommu", NULL, 0, 0666)))
		ret = tree_file(top, "/dev/dma_heap/system", NULL, 0, 0444);
	for (unsigned int i = 0; !ret && i < cfg.n; i++) {
		if (!pdevs[i] || atomic_load(&remote_gone[i]))
			continue;
		ret = build_device(top, i);
		if (ret && say)
			door_say("%s %s (%s): sysfs: %s", door_kind_name(cfg.devs[i].kind),
				 cfg.devs[i].bdf, cfg.devs[i].source, strerror(-ret));
	}
	if (!ret)
		ret = host_links(top, "/sys/bus/pci/devices", true);
	if (!ret)
		ret = host_links(top, "/sys/kernel/iommu_groups", false);
	if (ret)
		door_tree_remove(top);
	return ret;
}

static int build_tree(void)
{
	int ret = generate_tree(root, true);

	if (ret)
		return ret;
	rootlen = strlen(root);
	owner = getpid();
	atexit(remove_tree);
	return 0;
}

int door_tree_generate(char *top)
{
	if (door_init())
		return init_ret;
	return generate_tree(top, false);
}

void door_tree_delete(const char *top)
{
	door_tree_remove(top);
}

void door_release(void)
{
	remove_tree();
	for (unsigned int i = 0; i < cfg.n; i++) {
		if (!pdevs[i])
			continue;
		if (cdevs[i] >= 0 && DOOR_HAVE(p2p_vfio_unregister))
			p2p_vfio_unregister(pdevs[i]);
		if (remotes[i])
			p2p_vfio_user_disconnect(remotes[i]); /* puts the function */
		else
			p2p_pci_dev_put(pdevs[i]);
		remotes[i] = NULL;
		pdevs[i] = NULL;
	}
	init_ret = -ENODEV;
}

static void door_destructor(void) __attribute__((destructor));
static void door_destructor(void)
{
	remove_tree();
}

/* An IOMMU group no configured device has, from 900 up. */
static unsigned int free_group(void)
{
	for (unsigned int g = 900;; g++) {
		bool used = false;

		for (unsigned int i = 0; i < cfg.n && !used; i++)
			used = cfg.devs[i].group == g;
		if (!used)
			return g;
	}
}

/*
 * $P2PBUF_DOOR_CONNECT (p2pbuf exec --connect): vfio-user sockets, one a
 * line.  Each becomes a function of this process backed by its server
 * (p2p_vfio_user_connect()), registered as the configured ones are; its
 * BDF is the socket's name when that is one (p2pbuf serve's), its group
 * one of its own.  A socket that does not answer is said and left out.
 */
static void connect_remotes(void)
{
	const char *env = getenv("P2PBUF_DOOR_CONNECT");
	char *list, *save = NULL;

	if (!env || !*env)
		return;
	list = strdup(env);
	for (char *path = list ? strtok_r(list, "\n", &save) : NULL; path;
	     path = strtok_r(NULL, "\n", &save)) {
		struct p2p_vfio_user_connect_info ci = {
			.argsz = sizeof(ci), .group = free_group(),
		};
		struct p2p_vfio_user_client *c;
		struct p2p_pci_dev *pdev;
		struct door_dev *d;
		unsigned int slot = cfg.n, idx;
		bool clash = false;
		int ret;

		if (slot >= DOOR_MAX_DEVICES) {
			door_say("--connect %s left out: more than %d devices", path, DOOR_MAX_DEVICES);
			break;
		}
		ret = p2p_vfio_user_connect(path, &ci, &c);
		if (ret) {
			door_say("--connect %s left out: %s", path, strerror(-ret));
			continue;
		}
		pdev = p2p_vfio_user_client_pci(c);
		for (unsigned int i = 0; i < cfg.n && !clash; i++)
			clash = !strcmp(cfg.devs[i].bdf, p2p_pci_dev_name(pdev));
		if (clash) {
			door_say("--connect %s left out: %s is configured already", path,
				 p2p_pci_dev_name(pdev));
			p2p_vfio_user_disconnect(c);
			continue;
		}
		d = &cfg.devs[slot];
		memset(d, 0, sizeof(*d));
		d->kind = DOOR_GPU; /* BARs from p2p_pci_dev_bar_info(), not from the line */
		snprintf(d->bdf, sizeof(d->bdf), "%s", p2p_pci_dev_name(pdev));
		d->group = p2p_pci_dev_group(pdev);
		snprintf(d->source, sizeof(d->source), "--connect %s", path);
		cfg.n++;
		nr_remotes++;
		remotes[slot] = c;
		pdevs[slot] = pdev;
		cdevs[slot] = -1;
		if (DOOR_HAVE(p2p_vfio_register)) {
			ret = p2p_vfio_register(pdev, &idx);
			if (ret)
				door_say("remote %s (%s): not visible to VFIO users: %s", d->bdf,
					 d->source, strerror(-ret));
			else
				cdevs[slot] = (int)idx;
		}
	}
	free(list);
}

/*
 * A remote function whose server is gone is removed, as a hot-unplugged
 * one: unregistered (new opens of its nodes fail), its /sys and /dev
 * entries taken out of the tree.  Open files of it answer ENODEV.
 */
static void remote_remove(unsigned int slot)
{
	const struct door_dev *d = &cfg.devs[slot];
	char p[PATH_MAX + 64];

	if (DOOR_HAVE(p2p_vfio_unregister))
		p2p_vfio_unregister(pdevs[slot]);
	if (!rootlen)
		return;
	snprintf(p, sizeof(p), "%s/sys/bus/pci/devices/%s", root, d->bdf);
	unlink(p);
	snprintf(p, sizeof(p), "%s/sys/bus/pci/drivers/vfio-pci/%s", root, d->bdf);
	unlink(p);
	snprintf(p, sizeof(p), "%s/sys/kernel/iommu_groups/%u", root, d->group);
	door_tree_remove(p);
	snprintf(p, sizeof(p), "%s/sys/devices/p2pbuf/%s", root, d->bdf);
	door_tree_remove(p);
	snprintf(p, sizeof(p), "%s/dev/vfio/%u", root, d->group);
	unlink(p);
	if (cdevs[slot] >= 0) {
		snprintf(p, sizeof(p), "%s/dev/vfio/devices/vfio%d", root, cdevs[slot]);
		unlink(p);
	}
}

static void door_remote_check(void)
{
	if (!nr_remotes)
		return;
	for (unsigned int i = 0; i < cfg.n; i++) {
		if (!remotes[i] || atomic_load(&remote_gone[i]) ||
		    p2p_vfio_user_client_alive(remotes[i]))
			continue;
		pthread_mutex_lock(&remote_lock);
		if (!atomic_load(&remote_gone[i])) {
			remote_remove(i);
			atomic_store(&remote_gone[i], true);
		}
		pthread_mutex_unlock(&remote_lock);
	}
}

static void init_fn(void)
{
	int ret;

	/* A door path used from another library's constructor, before ours ran. */
	door_load_config();
	ret = p2p_library_init();

	if (ret) {
		door_say("cannot start: %s", strerror(-ret));
		init_ret = ret;
		return;
	}
	for (unsigned int i = 0; i < cfg.n; i++) {
		const struct door_dev *d = &cfg.devs[i];
		unsigned int idx;

		cdevs[i] = -1;
		ret = door_dev_create(d, &pdevs[i]);
		if (ret) {
			/* Say why, and go on with the others (the host's ENOENT for it). */
			door_say("%s %s (%s) left out: %s", door_kind_name(d->kind), d->bdf,
				 d->source, strerror(-ret));
			pdevs[i] = NULL;
			continue;
		}
		if (DOOR_HAVE(p2p_vfio_register)) {
			ret = p2p_vfio_register(pdevs[i], &idx);
			if (ret)
				door_say("%s %s (%s): not visible to VFIO users: %s",
					 door_kind_name(d->kind), d->bdf, d->source, strerror(-ret));
			else
				cdevs[i] = (int)idx;
		}
	}
	connect_remotes();
	init_ret = build_tree();
	if (init_ret)
		door_say("cannot generate the /sys and /dev tree: %s", strerror(-init_ret));
}

int door_init(void)
{
	pthread_once(&init_once, init_fn);
	return init_ret;
}

/* ---------------------------------------------------------------------- */
/* Paths                                                                   */

atomic_bool door_active;

struct prefix {
	const char *s;
	size_t len;
};
#define P(x) { x, sizeof(x) - 1 }
static const struct prefix prefixes[] = {
	P("/dev/vfio"), P("/dev/iommu"), P("/dev/dma_heap"),
	P("/sys/bus/pci/devices"), P("/sys/bus/pci/drivers/vfio-pci"), P("/sys/devices/p2pbuf"),
	P("/sys/kernel/iommu_groups"), P("/sys/kernel/debug/dma_buf/bufinfo"),
};
#undef P

/* A decimal number without leading zeros, the whole string. */
static bool parse_index(const char *s, unsigned int *out)
{
	unsigned long v = 0;

	if (!*s || (s[0] == '0' && s[1]))
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > 100000000)
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	*out = (unsigned int)v;
	return true;
}

/* BDF/config under one of the two device directories: the device's slot. */
static bool config_slot(const char *rest, unsigned int *slot)
{
	for (unsigned int i = 0; i < cfg.n; i++) {
		size_t l = strlen(cfg.devs[i].bdf);

		if (pdevs[i] && !atomic_load(&remote_gone[i]) && !strncmp(rest, cfg.devs[i].bdf, l) &&
		    !strcmp(rest + l, "/config")) {
			*slot = i;
			return true;
		}
	}
	return false;
}

/* Is @path under one of the door's prefixes?  @path starts "/dev/" or "/sys/" or not at all. */
static bool has_door_prefix(const char *path)
{
	if (strncmp(path, "/dev/", 5) && strncmp(path, "/sys/", 5))
		return false;
	/* path[5] first: /dev/null, /dev/shm/..., /sys/fs/... cost no strncmp. */
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		if (path[5] == prefixes[i].s[5] && !strncmp(path, prefixes[i].s, prefixes[i].len) &&
		    (path[prefixes[i].len] == 0 || path[prefixes[i].len] == '/'))
			return true;
	}
	return false;
}

/* Could lexical normalisation change @path?  "//", "/.", "/.." as components, a trailing "/". */
static bool path_needs_norm(const char *p)
{
	for (; *p; p++) {
		if (p[0] != '/')
			continue;
		if (p[1] == '/' || p[1] == 0)
			return true;
		if (p[1] == '.' &&
		    (p[2] == '/' || p[2] == 0 || (p[2] == '.' && (p[3] == '/' || p[3] == 0))))
			return true;
	}
	return false;
}

/*
 * Lexical normalisation of absolute @in into @out (@len bytes): empty and
 * "." components dropped, ".." takes the previous one away ("/.." is "/").
 * *@dir: the path must name a directory (a trailing "/", or it ends in "."
 * or "..").  Return: 0 or -ENAMETOOLONG.
 */
static int path_normalise(const char *in, char *out, size_t len, bool *dir)
{
	size_t n = 0;
	const char *s = in;

	*dir = false;
	while (*s) {
		const char *c;
		size_t l;

		while (*s == '/')
			s++;
		if (!*s) {
			*dir = true;
			break;
		}
		c = s;
		while (*s && *s != '/')
			s++;
		l = (size_t)(s - c);
		*dir = (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.');
		if (l == 1 && c[0] == '.')
			continue;
		if (l == 2 && c[0] == '.' && c[1] == '.') {
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--; /* the slash before it */
			continue;
		}
		if (n + 1 + l >= len)
			return -ENAMETOOLONG;
		out[n++] = '/';
		memcpy(out + n, c, l);
		n += l;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = 0;
	return 0;
}

enum door_node door_map_path(const char *path, struct door_target *t)
{
	char norm[PATH_MAX];
	bool raw_mine, dir = false;
	enum door_node node;
	unsigned int n;

	if (!door_might_be_mine(path))
		return DOOR_NOT_MINE;
	raw_mine = has_door_prefix(path);
	if (path_needs_norm(path)) {
		if (path_normalise(path, norm, sizeof(norm), &dir))
			return DOOR_NOT_MINE; /* the host's ENAMETOOLONG */
		if (!has_door_prefix(norm)) {
			if (!raw_mine)
				return DOOR_NOT_MINE;
			/* Through a door directory out of the door: the host's, normalised. */
			if (strlen(norm) + 2 > sizeof(t->path))
				return DOOR_NOT_MINE;
			snprintf(t->path, sizeof(t->path), "%s%s", norm, dir && norm[1] ? "/" : "");
			t->num = 0;
			t->name[0] = 0;
			return t->node = DOOR_TREE;
		}
		path = norm;
	} else if (!raw_mine) {
		return DOOR_NOT_MINE;
	}
	/* From here on p2pbuf files may exist: the fd wrappers start looking. */
	if (!atomic_load_explicit(&door_active, memory_order_relaxed))
		atomic_store_explicit(&door_active, true, memory_order_release);
	if (door_init())
		return DOOR_NOT_MINE;
	door_remote_check();
	if (rootlen + strlen(path) + 1 >= sizeof(t->path))
		return DOOR_NOT_MINE;
	memcpy(t->path, root, rootlen);
	strcpy(t->path + rootlen, path);
	t->num = 0;
	t->name[0] = 0;
	node = DOOR_TREE;
	if (!strcmp(path, "/dev/vfio/vfio")) {
		node = DOOR_VFIO_CONTAINER;
	} else if (!strncmp(path, "/dev/vfio/devices/vfio", 22) && parse_index(path + 22, &n)) {
		t->num = n;
		node = DOOR_VFIO_CDEV;
	} else if (!strncmp(path, "/dev/vfio/", 10) && parse_index(path + 10, &n)) {
		t->num = n;
		node = DOOR_VFIO_GROUP;
	} else if (!strcmp(path, "/dev/iommu")) {
		node = DOOR_IOMMUFD;
	} else if (!strncmp(path, "/dev/dma_heap/", 14) && path[14] && !strchr(path + 14, '/') &&
		   strlen(path + 14) < sizeof(t->name)) {
		strcpy(t->name, path + 14);
		node = DOOR_DMA_HEAP;
	} else if (!strcmp(path, "/sys/kernel/debug/dma_buf/bufinfo")) {
		node = DOOR_BUFINFO;
	} else if ((!strncmp(path, "/sys/bus/pci/devices/", 21) && config_slot(path + 21, &n)) ||
		   (!strncmp(path, "/sys/devices/p2pbuf/", 20) && config_slot(path + 20, &n))) {
		t->num = n;
		node = DOOR_PCI_CONFIG;
	}
	if (dir) {
		/* "/dev/iommu/": the tree's file answers ENOTDIR, a directory is itself. */
		strcat(t->path, "/");
		t->num = 0;
		t->name[0] = 0;
		node = DOOR_TREE;
	}
	return t->node = node;
}

bool door_node_target(enum door_node node, unsigned int num, const char *name,
		      struct door_target *t)
{
	char path[64 + NAME_MAX];

	switch (node) {
	case DOOR_VFIO_CONTAINER: snprintf(path, sizeof(path), "/dev/vfio/vfio"); break;
	case DOOR_VFIO_GROUP: snprintf(path, sizeof(path), "/dev/vfio/%u", num); break;
	case DOOR_VFIO_CDEV: snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%u", num); break;
	case DOOR_IOMMUFD: snprintf(path, sizeof(path), "/dev/iommu"); break;
	case DOOR_DMA_HEAP: snprintf(path, sizeof(path), "/dev/dma_heap/%s", name); break;
	default: return false;
	}
	return door_map_path(path, t) == node;
}

bool door_node_rdev(const struct door_target *t, unsigned int *major, unsigned int *minor)
{
	/* vfio's misc minor; the dynamic majors are the ones a typical system shows. */
	switch (t->node) {
	case DOOR_VFIO_CONTAINER: *major = 10; *minor = 196; return true;
	case DOOR_VFIO_GROUP: *major = 243; *minor = t->num; return true;
	case DOOR_VFIO_CDEV: *major = 511; *minor = t->num; return true;
	case DOOR_IOMMUFD: *major = 10; *minor = 123; return true;
	case DOOR_DMA_HEAP: *major = 251; *minor = 0; return true;
	default: return false;
	}
}

/* A read-only fd whose contents are @buf: a memfd reopened O_RDONLY. */
static int snapshot_fd(const char *name, const void *buf, size_t len, int flags)
{
	char proc[64];
	int mfd = memfd_create(name, MFD_CLOEXEC), fd;
	size_t done = 0;

	if (mfd < 0)
		return -errno;
	while (done < len) {
		ssize_t w = write(mfd, (const char *)buf + done, len - done);

		if (w < 0) {
			int e = errno;

			close(mfd);
			return -e;
		}
		done += (size_t)w;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", mfd);
	fd = open(proc, O_RDONLY | (flags & (O_CLOEXEC | O_NONBLOCK)));
	if (fd < 0)
		fd = -errno;
	close(mfd);
	return fd;
}

static int missing(const char *what)
{
	static bool said;

	if (!said)
		door_say("this build has no %s (the VFIO and file-layer constructors are not linked "
			 "in): ENODEV", what);
	said = true;
	return -ENODEV;
}

int door_open_node(const struct door_target *t, int flags)
{
	switch (t->node) {
	case DOOR_VFIO_CONTAINER:
		if (!DOOR_HAVE(p2p_vfio_container_open_fd))
			return missing("/dev/vfio/vfio");
		return p2p_vfio_container_open_fd(flags);
	case DOOR_VFIO_GROUP:
		if (!DOOR_HAVE(p2p_vfio_group_open_fd))
			return missing("/dev/vfio/N");
		return p2p_vfio_group_open_fd(t->num, flags);
	case DOOR_VFIO_CDEV:
		if (!DOOR_HAVE(p2p_vfio_cdev_open_fd))
			return missing("/dev/vfio/devices/vfioN");
		return p2p_vfio_cdev_open_fd(t->num, flags);
	case DOOR_IOMMUFD:
		if (!DOOR_HAVE(p2p_iommufd_open_fd))
			return missing("/dev/iommu");
		return p2p_iommufd_open_fd(flags);
	case DOOR_DMA_HEAP:
		if (!DOOR_HAVE(p2p_dma_heap_open_fd))
			return missing("/dev/dma_heap");
		return p2p_dma_heap_open_fd(t->name, flags);
	case DOOR_PCI_CONFIG: {
		uint8_t config[4096];
		int ret;

		/* Writable only by root through the kernel; the door's snapshot is read-only. */
		if ((flags & O_ACCMODE) != O_RDONLY)
			return -EACCES;
		ret = read_config(t->num, config, sizeof(config));
		if (ret)
			return ret;
		return snapshot_fd("p2pbuf-door-config", config, sizeof(config), flags);
	}
	case DOOR_BUFINFO: {
		ssize_t len, need;
		char *buf;
		int fd;

		if ((flags & O_ACCMODE) != O_RDONLY)
			return -EACCES;
		if (!DOOR_HAVE(p2p_dmabuf_bufinfo))
			return missing("dma-buf bufinfo");
		need = p2p_dmabuf_bufinfo(NULL, 0);
		for (;;) {
			if (need < 0)
				return (int)need;
			buf = malloc((size_t)need + 1);
			if (!buf)
				return -ENOMEM;
			len = p2p_dmabuf_bufinfo(buf, (size_t)need + 1);
			if (len <= need)
				break;
			free(buf);
			need = len; /* a buffer appeared in between */
		}
		fd = len < 0 ? (int)len : snapshot_fd("p2pbuf-door-bufinfo", buf, (size_t)len, flags);
		free(buf);
		return fd;
	}
	default:
		return -EINVAL;
	}
}
