// SPDX-License-Identifier: MIT
/*
 * (g) What fstat(2), fstatat(AT_EMPTY_PATH), statx(AT_EMPTY_PATH) and
 * fstat64 say about the fds a VFIO, iommufd and dma-heap user holds, and
 * lseek(2) and ftruncate(2) on them, as the kernel answers:
 * - an fd opened on /dev/vfio/vfio, /dev/vfio/N, /dev/vfio/devices/vfioN,
 *   /dev/iommu or /dev/dma_heap/system is that character device: the same
 *   mode, rdev, inode and device as stat(2) of the path;
 * - a dma-buf is an inode of the dmabuf pseudo filesystem: no file type
 *   (anon inodes show st_mode 0600), st_size and st_blocks of its size;
 * - a device fd from VFIO_GROUP_GET_DEVICE_FD is the anon inode every
 *   anon_inode file shares (the one an eventfd shows);
 * - lseek: a dma-buf answers SEEK_END/SEEK_SET of 0 (size, 0), EINVAL for
 *   anything else (dma_buf_llseek()); the others have no llseek: ESPIPE;
 * - ftruncate: EINVAL (not regular files).
 * Built without _FILE_OFFSET_BITS so that fstat and fstat64 are both called.
 */
#undef _FILE_OFFSET_BITS
#include "kuapi.h"

#include <sys/eventfd.h>
#include <sys/sysmacros.h>

/* Every fstat flavour of @fd agrees, and @want (a stat or a made-up expectation) matches. */
static void all_stats(int fd, const char *what, struct stat *out)
{
	struct stat a, b;
	struct stat64 c;
	struct statx x;

	memset(&a, 0, sizeof(a));
	CHECK(fstat(fd, &a) == 0, "fstat %s", what);
	CHECK(fstatat(fd, "", &b, AT_EMPTY_PATH) == 0 && b.st_mode == a.st_mode &&
	      b.st_rdev == a.st_rdev && b.st_ino == a.st_ino && b.st_dev == a.st_dev &&
	      b.st_size == a.st_size, "fstatat(AT_EMPTY_PATH) %s: mode %o vs %o", what, b.st_mode,
	      a.st_mode);
	CHECK(fstat64(fd, &c) == 0 && c.st_mode == a.st_mode && c.st_rdev == a.st_rdev &&
	      c.st_ino == a.st_ino && c.st_size == a.st_size, "fstat64 %s: mode %o vs %o", what,
	      c.st_mode, a.st_mode);
	CHECK(statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &x) == 0 && x.stx_mode == a.st_mode &&
	      makedev(x.stx_rdev_major, x.stx_rdev_minor) == a.st_rdev && x.stx_ino == a.st_ino &&
	      (long long)x.stx_size == (long long)a.st_size &&
	      makedev(x.stx_dev_major, x.stx_dev_minor) == a.st_dev,
	      "statx(AT_EMPTY_PATH) %s: mode %o vs %o", what, x.stx_mode, a.st_mode);
	*out = a;
}

/* @fd was opened on @path: it is that character device. */
static void node_fd(int fd, const char *path)
{
	struct stat p, a;

	CHECK(fd >= 0, "open %s", path);
	if (fd < 0)
		return;
	CHECK(stat(path, &p) == 0 && S_ISCHR(p.st_mode), "stat %s", path);
	all_stats(fd, path, &a);
	CHECK(S_ISCHR(a.st_mode) && a.st_mode == p.st_mode && a.st_rdev == p.st_rdev &&
	      a.st_ino == p.st_ino && a.st_dev == p.st_dev && a.st_size == 0,
	      "fstat of %s: mode %o rdev %u:%u ino %lu; stat: mode %o rdev %u:%u ino %lu", path,
	      a.st_mode, major(a.st_rdev), minor(a.st_rdev), (unsigned long)a.st_ino, p.st_mode,
	      major(p.st_rdev), minor(p.st_rdev), (unsigned long)p.st_ino);
	CHECK(lseek(fd, 0, SEEK_SET) < 0 && errno == ESPIPE, "lseek SEEK_SET on %s", path);
	CHECK(lseek64(fd, 0, SEEK_END) < 0 && errno == ESPIPE, "lseek64 SEEK_END on %s", path);
	CHECK(lseek(fd, 0, 99) < 0 && errno == EINVAL, "lseek whence 99 on %s", path);
	CHECK(ftruncate(fd, 0) < 0 && errno == EINVAL, "ftruncate %s", path);
}

/* The anon inode an eventfd shows: the kernel's shared anon_inode inode. */
static void anon_fd(int fd, const char *what)
{
	struct stat e, a;
	int efd = eventfd(0, EFD_CLOEXEC);

	CHECK(efd >= 0 && fstat(efd, &e) == 0, "eventfd");
	close(efd);
	all_stats(fd, what, &a);
	CHECK(a.st_mode == e.st_mode && !(a.st_mode & S_IFMT) && a.st_ino == e.st_ino &&
	      a.st_dev == e.st_dev && a.st_size == 0,
	      "fstat of %s: mode %o ino %lu, want the anon inode's mode %o ino %lu", what, a.st_mode,
	      (unsigned long)a.st_ino, e.st_mode, (unsigned long)e.st_ino);
	CHECK(lseek(fd, 0, SEEK_SET) < 0 && errno == ESPIPE, "lseek on %s", what);
	CHECK(ftruncate(fd, 4096) < 0 && errno == EINVAL, "ftruncate %s", what);
}

int main(void)
{
	struct dma_heap_allocation_data a = { .len = (1 << 20) + 3 * 4096,
					      .fd_flags = O_RDWR | O_CLOEXEC };
	int heap = open_or_skip("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	int container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	int iommu = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	int g = sysfs_group("0000:02:00.0"), n = sysfs_cdev_index("0000:01:00.0");
	int group = -1, cdev = -1, dev = -1;
	char path[64];
	struct stat st, reg;
	uint8_t *p;

	node_fd(heap, "/dev/dma_heap/system");
	node_fd(container, "/dev/vfio/vfio");
	node_fd(iommu, "/dev/iommu");
	CHECK(g > 0 && n >= 0, "group %d, cdev %d", g, n);
	snprintf(path, sizeof(path), "/dev/vfio/%d", g);
	group = open(path, O_RDWR | O_CLOEXEC);
	node_fd(group, path);
	snprintf(path, sizeof(path), "/dev/vfio/devices/vfio%d", n);
	cdev = open(path, O_RDWR | O_CLOEXEC);
	node_fd(cdev, path);
	{
		/* A dup is the same file. */
		int d = dup(cdev);
		struct stat x, y;

		CHECK(d >= 0 && fstat(d, &x) == 0 && fstat(cdev, &y) == 0 && S_ISCHR(x.st_mode) &&
		      x.st_rdev == y.st_rdev && x.st_ino == y.st_ino, "fstat of a dup of the cdev");
		close(d);
	}

	/* The legacy device fd: an anon inode. */
	CHECK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) == 0, "SET_CONTAINER");
	CHECK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0, "SET_IOMMU");
	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:02:00.0");
	CHECK(dev >= 0, "GET_DEVICE_FD");
	if (dev >= 0)
		anon_fd(dev, "the GET_DEVICE_FD fd");

	/* A dma-buf: the dmabuf pseudo filesystem's inode, no file type, the buffer's size. */
	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a) == 0, "ALLOC");
	all_stats((int)a.fd, "dma-buf", &st);
	CHECK(!(st.st_mode & S_IFMT) && (st.st_mode & 07777) == 0600 && st.st_size == (off_t)a.len &&
	      st.st_blocks == (blkcnt_t)(a.len / 512) && st.st_nlink == 1 && st.st_rdev == 0,
	      "fstat of a dma-buf: mode %o size %lld blocks %lld nlink %lu", st.st_mode,
	      (long long)st.st_size, (long long)st.st_blocks, (unsigned long)st.st_nlink);
	CHECK(lseek((int)a.fd, 0, SEEK_END) == (off_t)a.len, "lseek SEEK_END: the size");
	CHECK(lseek64((int)a.fd, 0, SEEK_SET) == 0, "lseek64 SEEK_SET 0");
	CHECK(lseek((int)a.fd, 0, SEEK_CUR) < 0 && errno == EINVAL, "lseek SEEK_CUR");
	CHECK(lseek((int)a.fd, 4096, SEEK_SET) < 0 && errno == EINVAL, "lseek SEEK_SET 4096");
	CHECK(lseek((int)a.fd, -1, SEEK_END) < 0 && errno == EINVAL, "lseek SEEK_END -1");
	CHECK(lseek((int)a.fd, 0, SEEK_DATA) < 0 && errno == EINVAL, "lseek SEEK_DATA");
	CHECK(ftruncate((int)a.fd, 0) < 0 && errno == EINVAL, "ftruncate of a dma-buf");
	CHECK(ftruncate((int)a.fd, -1) < 0 && errno == EINVAL, "ftruncate -1 of a dma-buf");
	p = mmap(NULL, a.len, PROT_READ | PROT_WRITE, MAP_SHARED, (int)a.fd, 0);
	CHECK(p != MAP_FAILED, "mmap after lseek and ftruncate");
	if (p != MAP_FAILED) {
		p[a.len - 1] = 0x5a;
		CHECK(p[a.len - 1] == 0x5a, "the buffer is whole");
		munmap(p, a.len);
	}

	/* Other fds are untouched: a regular file stats as one. */
	{
		int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);

		CHECK(fd >= 0 && fstat(fd, &reg) == 0 && S_ISREG(reg.st_mode) && reg.st_size > 0 &&
		      lseek(fd, 0, SEEK_END) == reg.st_size, "a regular file");
		close(fd);
	}
	CHECK(fstat(1000, &reg) < 0 && errno == EBADF, "fstat of a closed fd");

	close((int)a.fd);
	if (dev >= 0)
		close(dev);
	close(cdev);
	close(group);
	close(iommu);
	close(container);
	close(heap);
	return finish("door-fstat");
}
