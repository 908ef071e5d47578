// SPDX-License-Identifier: MIT
/*
 * The `prefault` key of a door config line (docs/door-config.md): a GPU
 * made with it has its BAR memory populated when the door creates it, one
 * made without it has none until touched.  Run under
 *   p2pbuf exec --config FILE -- door-prefault BDF 1|0 BAR2_BYTES
 * it opens /dev/vfio/vfio (the door makes its devices), then finds the BAR 2
 * memory of function BDF among its own fds (the memfd "BDF/bar2", which
 * holds the BAR at offset 2 << 40) and compares its resident size
 * (st_blocks) with the BAR's size.
 */
#include "kuapi.h"

int main(int argc, char **argv)
{
	char want_name[64], link[256], path[300];
	long long size = -1, resident = -1, bar;
	struct dirent *e;
	int fd, want;
	DIR *dir;

	if (argc != 4)
		return 2;
	want = atoi(argv[2]);
	bar = atoll(argv[3]);
	snprintf(want_name, sizeof(want_name), "%s/bar2", argv[1]);
	fd = open_or_skip("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0, "open /dev/vfio/vfio");
	dir = opendir("/proc/self/fd");
	CHECK(dir != NULL, "/proc/self/fd");
	while (dir && (e = readdir(dir))) {
		struct stat st;
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (!strstr(link, "memfd:") || !strstr(link, want_name))
			continue;
		if (stat(path, &st) == 0) {
			size = st.st_size;
			resident = (long long)st.st_blocks * 512;
		}
	}
	if (dir)
		closedir(dir);
	CHECK(size > 0, "no memfd %s among the fds", want_name);
	printf("%s: %lld bytes resident, the BAR is %lld\n", want_name, resident, bar);
	if (want)
		CHECK(resident >= bar, "prefault: %lld of %lld bytes resident", resident, bar);
	else
		CHECK(resident < bar / 2, "no prefault: %lld of %lld bytes resident", resident, bar);
	close(fd);
	return finish("prefault");
}
