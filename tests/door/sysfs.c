// SPDX-License-Identifier: MIT
/*
 * (a) Enumerate PCI functions through sysfs as QEMU and lspci do: readdir
 * /sys/bus/pci/devices, read vendor, device, class and resource, follow
 * iommu_group and driver, read config; then the /dev nodes a VFIO user
 * stats.  Expects the default `p2pbuf exec` set; the host's own functions,
 * listed beside the emulated ones, read as the host's sysfs.
 */
#include <libgen.h>
#include <limits.h>
#include <sys/sysmacros.h>

#include "kuapi.h"

int main(void)
{
	struct dirent **list;
	char path[512], buf[4096], link[256];
	unsigned long long start, end, flags, bar2_size = 0, bar2_flags = 0;
	int n, found = 0, fd;
	struct stat st;
	FILE *f;

	n = scandir("/sys/bus/pci/devices", &list, NULL, alphasort);
	CHECK(n >= 3, "scandir /sys/bus/pci/devices: %d", n);
	for (int i = 0; i < n; i++) {
		const char *bdf = list[i]->d_name;

		if (bdf[0] == '.') {
			free(list[i]);
			continue;
		}
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
		CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "%s is not a directory", path);
		if (strcmp(bdf, "0000:01:00.0") && strcmp(bdf, "0000:02:00.0") &&
		    strcmp(bdf, "0000:03:00.0")) {
			/* The host's functions are listed too, and read as the host's sysfs. */
			char *rp = realpath(path, NULL);

			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", bdf);
			CHECK(read_text(path, buf, sizeof(buf)) == 0 && !strncmp(buf, "0x", 2),
			      "host function %s: vendor %s", bdf, buf);
			CHECK(rp && !strncmp(rp, "/sys/devices/", 13) && !strstr(rp, "p2pbuf"),
			      "host function %s: realpath %s", bdf, rp ? rp : "-");
			free(rp);
			free(list[i]);
			continue;
		}
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", bdf);
		CHECK(read_text(path, buf, sizeof(buf)) == 0 && !strcmp(buf, "0x1b36"), "%s: %s", path, buf);
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
		ssize_t l = readlink(path, link, sizeof(link) - 1);
		CHECK(l > 0, "readlink %s", path);
		if (l > 0) {
			link[l] = 0;
			CHECK(!strcmp(basename(link), "vfio-pci"), "%s -> %s", path, link);
		}
		if (!strcmp(bdf, "0000:01:00.0")) {
			found++;
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", bdf);
			CHECK(read_text(path, buf, sizeof(buf)) == 0 && !strcmp(buf, "0x0110"), "device %s", buf);
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/class", bdf);
			CHECK(read_text(path, buf, sizeof(buf)) == 0 && !strcmp(buf, "0x030200"), "class %s", buf);
			/* resource: three hex columns, line 3 is BAR2 */
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", bdf);
			f = fopen(path, "re");
			CHECK(f != NULL, "fopen %s", path);
			for (int line = 0; f && line < 13; line++) {
				int r = fscanf(f, "%llx %llx %llx", &start, &end, &flags);

				CHECK(r == 3, "resource line %d", line);
				if (line == 2 && r == 3) {
					bar2_size = end - start + 1;
					bar2_flags = flags;
					CHECK(start && !(start & (bar2_size - 1)), "BAR2 at %#llx", start);
				}
			}
			if (f) {
				CHECK(fscanf(f, "%llx", &start) == EOF, "more than 13 resource lines");
				fclose(f);
			}
			CHECK(bar2_size == 256ull << 20, "BAR2 size %#llx", bar2_size);
			CHECK((bar2_flags & 0x200) && (bar2_flags & 0x2000) && (bar2_flags & 0x100000),
			      "BAR2 flags %#llx: memory, prefetchable, 64-bit", bar2_flags);
			CHECK(sysfs_group(bdf) == 1, "group %d", sysfs_group(bdf));
			/* config: the first bytes are the IDs, as the device's */
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", bdf);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			CHECK(fd >= 0, "open %s", path);
			CHECK(pread(fd, buf, 64, 0) == 64, "pread config");
			CHECK(buf[0] == 0x36 && buf[1] == 0x1b && buf[2] == 0x10 && buf[3] == 0x01,
			      "config IDs %02x%02x:%02x%02x", buf[1] & 0xff, buf[0] & 0xff, buf[3] & 0xff,
			      buf[2] & 0xff);
			CHECK(write(fd, buf, 4) < 0 && errno == EBADF, "config is written");
			close(fd);
			CHECK(open(path, O_RDWR) < 0 && errno == EACCES, "config opened for write");
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/subsystem", bdf);
			char *rp = realpath(path, NULL);
			CHECK(rp && !strcmp(rp, "/sys/bus/pci"), "realpath subsystem: %s", rp ? rp : "-");
			free(rp);
			snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/1/devices/%s", bdf);
			CHECK(access(path, F_OK) == 0, "%s", path);
		}
		if (!strcmp(bdf, "0000:02:00.0") || !strcmp(bdf, "0000:03:00.0")) {
			found++;
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", bdf);
			CHECK(read_text(path, buf, sizeof(buf)) == 0 &&
			      !strcmp(buf, bdf[6] == '2' ? "0x0111" : "0x0112"), "%s: %s", bdf, buf);
			CHECK(sysfs_group(bdf) == bdf[6] - '0', "%s group %d", bdf, sysfs_group(bdf));
		}
		free(list[i]);
	}
	free(list);
	CHECK(found == 3, "found %d of the 3 default functions", found);

	/* The nodes: character devices, a group per function, the heap listed. */
	CHECK(stat("/dev/vfio/vfio", &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 10 &&
	      minor(st.st_rdev) == 196, "/dev/vfio/vfio");
	CHECK(stat("/dev/vfio/1", &st) == 0 && S_ISCHR(st.st_mode), "/dev/vfio/1");
	CHECK(stat("/dev/vfio/7", &st) < 0 && errno == ENOENT, "/dev/vfio/7 exists");
	CHECK(stat("/dev/iommu", &st) == 0 && S_ISCHR(st.st_mode), "/dev/iommu");
	CHECK(stat("/dev/vfio", &st) == 0 && S_ISDIR(st.st_mode), "/dev/vfio");
	DIR *d = opendir("/dev/dma_heap");
	struct dirent *e;
	int heaps = 0;

	CHECK(d != NULL, "opendir /dev/dma_heap");
	while (d && (e = readdir(d)))
		heaps += !strcmp(e->d_name, "system");
	if (d)
		closedir(d);
	CHECK(heaps == 1, "/dev/dma_heap lists system %d times", heaps);
	CHECK(access("/sys/kernel/debug/dma_buf/bufinfo", R_OK) == 0, "bufinfo");
	return finish("door-sysfs");
}
