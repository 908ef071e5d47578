// SPDX-License-Identifier: MIT
/*
 * (h) Paths as a program may spell them: "//", "." and ".." and a trailing
 * "/" in /dev/vfio, /dev/iommu, /dev/dma_heap and the VFIO sysfs name the
 * same nodes and files as the plain spelling (the kernel's path walk), a
 * trailing "/" on a device node is ENOTDIR, and a path that leaves a door
 * directory through ".." reaches the host's file.  Expects the default
 * `p2pbuf exec` set.
 */
#include "kuapi.h"

#include <sys/sysmacros.h>

/* @path is the character device @plain is. */
static void same_node(const char *path, const char *plain)
{
	struct stat a, b;

	CHECK(stat(plain, &b) == 0 && S_ISCHR(b.st_mode), "stat %s", plain);
	CHECK(stat(path, &a) == 0 && S_ISCHR(a.st_mode) && a.st_rdev == b.st_rdev &&
	      a.st_ino == b.st_ino, "stat %s: mode %o rdev %u:%u", path, a.st_mode,
	      major(a.st_rdev), minor(a.st_rdev));
	CHECK(access(path, F_OK) == 0, "access %s", path);
}

static void text_is(const char *path, const char *want)
{
	char buf[256];
	int r = read_text(path, buf, sizeof(buf));

	CHECK(r == 0 && !strcmp(buf, want), "%s: %s (%s)", path, r ? strerror(-r) : buf, want);
}

int main(void)
{
	char buf[PATH_MAX];
	struct stat st;
	ssize_t n;
	int fd, api;
	char *rp;
	DIR *d;

	/* The container through spellings a program may build by joining strings. */
	fd = open_or_skip("/dev/vfio/../vfio/vfio", O_RDWR | O_CLOEXEC);
	api = fd >= 0 ? ioctl(fd, VFIO_GET_API_VERSION) : -1;
	CHECK(api == VFIO_API_VERSION, "/dev/vfio/../vfio/vfio is the container: API %d", api);
	if (fd >= 0)
		close(fd);
	fd = open("/dev//vfio/./vfio", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0 && ioctl(fd, VFIO_GET_API_VERSION) == VFIO_API_VERSION, "/dev//vfio/./vfio");
	if (fd >= 0)
		close(fd);
	same_node("/dev//iommu", "/dev/iommu");
	same_node("//dev/iommu", "/dev/iommu");
	same_node("/./dev/iommu", "/dev/iommu");
	same_node("/dev/shm/../iommu", "/dev/iommu");
	same_node("/dev/dma_heap/../dma_heap//system", "/dev/dma_heap/system");
	same_node("/dev/vfio/devices/../1", "/dev/vfio/1");
	fd = open("/dev/dma_heap/./system", O_RDONLY | O_CLOEXEC);
	{
		struct dma_heap_allocation_data a = { .len = 4096, .fd_flags = O_RDWR | O_CLOEXEC };

		CHECK(fd >= 0 && ioctl(fd, DMA_HEAP_IOCTL_ALLOC, &a) == 0,
		      "/dev/dma_heap/./system allocates");
		if (fd >= 0 && a.fd)
			close((int)a.fd);
	}
	if (fd >= 0)
		close(fd);

	/* A trailing slash: a directory is itself, a device node is not a directory. */
	CHECK(stat("/dev/vfio/", &st) == 0 && S_ISDIR(st.st_mode), "stat /dev/vfio/");
	d = opendir("/dev/dma_heap/");
	CHECK(d != NULL, "opendir /dev/dma_heap/");
	if (d)
		closedir(d);
	CHECK(open("/dev/vfio/vfio/", O_RDWR) < 0 && errno == ENOTDIR, "open /dev/vfio/vfio/");
	CHECK(stat("/dev/iommu/", &st) < 0 && errno == ENOTDIR, "stat /dev/iommu/");
	CHECK(stat("/dev/iommu/.", &st) < 0 && errno == ENOTDIR, "stat /dev/iommu/.");

	/* sysfs: the BDF directories, their files and links. */
	text_is("/sys/bus/pci/devices/0000:01:00.0/../0000:02:00.0/device", "0x0111");
	text_is("/sys//bus/pci/devices/0000:01:00.0//vendor", "0x1b36");
	text_is("/sys/bus/pci/devices/./0000:03:00.0/./device", "0x0112");
	text_is("/sys/kernel/iommu_groups/1/devices/../devices/0000:01:00.0/device", "0x0110");
	n = readlink("/sys/bus/pci/devices/0000:01:00.0/./iommu_group", buf, sizeof(buf) - 1);
	CHECK(n > 0 && (buf[n] = 0, !strcmp(strrchr(buf, '/'), "/1")), "readlink iommu_group: %s",
	      n > 0 ? buf : "-");
	n = readlink("/sys/bus/pci/devices//0000:01:00.0/driver", buf, sizeof(buf) - 1);
	CHECK(n > 0 && (buf[n] = 0, !strcmp(strrchr(buf, '/'), "/vfio-pci")), "readlink driver");
	/* The links resolve as always: iommu_group/devices lists the function. */
	CHECK(access("/sys/bus/pci/devices/0000:01:00.0/iommu_group/devices/0000:01:00.0", F_OK) == 0,
	      "through the iommu_group link");
	rp = realpath("/sys/bus/pci/devices/0000:01:00.0/../0000:02:00.0/", NULL);
	CHECK(rp && !strcmp(rp, "/sys/devices/p2pbuf/0000:02:00.0"), "realpath: %s", rp ? rp : "-");
	free(rp);
	fd = open("/sys/bus/pci/devices/0000:02:00.0/../0000:01:00.0/config", O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && pread(fd, buf, 4, 0) == 4 && (uint8_t)buf[0] == 0x36 &&
	      (uint8_t)buf[2] == 0x10, "config through ..");
	if (fd >= 0)
		close(fd);
	d = opendir("/sys/bus/pci/devices/0000:01:00.0/..");
	{
		struct dirent *e;
		int found = 0;

		while (d && (e = readdir(d)))
			found += !strcmp(e->d_name, "0000:02:00.0");
		CHECK(found == 1, "opendir BDF/..: lists the functions");
	}
	if (d)
		closedir(d);

	/* Out of a door directory: the host's file. */
	fd = open("/dev/vfio/../null", O_WRONLY | O_CLOEXEC);
	CHECK(fd >= 0 && write(fd, "x", 1) == 1, "/dev/vfio/../null is /dev/null");
	if (fd >= 0)
		close(fd);
	CHECK(stat("/sys/kernel/iommu_groups/../../devices", &st) == 0 && S_ISDIR(st.st_mode),
	      "/sys/kernel/iommu_groups/../../devices");
	return finish("door-paths");
}
