/* SPDX-License-Identifier: MIT */
/*
 * Small /proc readers shared by the tools, the tests and the fuzz targets
 * (header only, so any of them can include it without linking anything).
 */
#ifndef P2PBUF_PROC_UTIL_H
#define P2PBUF_PROC_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>

/* The integer in a sysctl file such as /proc/sys/vm/unprivileged_userfaultfd, or -1. */
static inline int proc_read_int(const char *path)
{
	FILE *f = fopen(path, "re");
	int v = -1;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Open fds of the process (/proc/self/fd), or -1. */
static inline int proc_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/*
 * Lines of /proc/self/maps that contain any of the NULL-terminated strings
 * @any, or -1.
 */
static inline int proc_count_maps(const char *const *any)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		for (const char *const *s = any; *s; s++)
			if (strstr(line, *s)) {
				n++;
				break;
			}
	fclose(f);
	return n;
}

#endif
