// SPDX-License-Identifier: MIT
/*
 * Benchmark reports: every figure is printed next to its raw baseline from
 * the same run, as medians and ratios; --json prints one object instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "bench_util.h"

#define MIN_CHUNK(a, b) ((a) < (b) ? (a) : (b))

struct bench_report {
	const struct bench_opts *o;
	json_object *root, *facts, *medians, *ratios, *targets;
	bool all_met;
};

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

double median_ns(uint64_t *v, unsigned int n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

const char *hugepage_mode_name(void)
{
	switch (p2p_hugepage_mode()) {
	case P2P_HUGEPAGE_ADVISE:
		return "2 MiB shmem THP (advise)";
	case P2P_HUGEPAGE_ALWAYS:
		return "2 MiB shmem THP (always)";
	default:
		return "4 KiB pages (shmem THP off)";
	}
}

struct bench_report *report_new(const char *bench, const struct bench_opts *o)
{
	struct bench_report *r = calloc(1, sizeof(*r));

	if (!r)
		abort();
	r->o = o;
	r->all_met = true;
	r->root = json_object_new_object();
	r->facts = json_object_new_object();
	r->medians = json_object_new_object();
	r->ratios = json_object_new_object();
	r->targets = json_object_new_array();
	json_object_object_add(r->root, "bench", json_object_new_string(bench));
	json_object_object_add(r->root, "facts", r->facts);
	json_object_object_add(r->root, "medians_ms", r->medians);
	json_object_object_add(r->root, "ratios", r->ratios);
	json_object_object_add(r->root, "targets", r->targets);
	if (!o->json)
		printf("== p2pbuf bench %s\n", bench);
	return r;
}

void report_fact(struct bench_report *r, const char *key, const char *value)
{
	json_object_object_add(r->facts, key, json_object_new_string(value));
	if (!r->o->json)
		printf("   %-28s %s\n", key, value);
}

double report_median(struct bench_report *r, const char *name, const char *what, uint64_t *ns,
		     unsigned int n)
{
	double ms = median_ns(ns, n) / 1e6;

	json_object_object_add(r->medians, name, json_object_new_double(ms));
	if (!r->o->json)
		printf("   %-28s median %10.3f ms  (min %.3f, max %.3f, n=%u)  %s\n", name, ms,
		       (double)ns[0] / 1e6, (double)ns[n - 1] / 1e6, n, what);
	return ms;
}

void report_ratio(struct bench_report *r, const char *name, double value)
{
	json_object_object_add(r->ratios, name, json_object_new_double(value));
	if (!r->o->json)
		printf("   ratio %-22s %8.3f\n", name, value);
}

bool report_target(struct bench_report *r, const char *name, double value, double limit,
		   bool at_least, const char *text)
{
	bool met = at_least ? value >= limit : value <= limit;
	json_object *t = json_object_new_object();

	json_object_object_add(t, "name", json_object_new_string(name));
	json_object_object_add(t, "target", json_object_new_string(text));
	json_object_object_add(t, "value", json_object_new_double(value));
	json_object_object_add(t, "limit", json_object_new_double(limit));
	json_object_object_add(t, "met", json_object_new_boolean(met));
	json_object_array_add(r->targets, t);
	if (!met)
		r->all_met = false;
	if (!r->o->json)
		printf("   target %-21s %s: %.3f -> %s\n", name, text, value, met ? "met" : "MISSED");
	return met;
}

bool r_json(const struct bench_report *r)
{
	return r->o->json;
}

int report_finish(struct bench_report *r)
{
	int ret = (r->o->strict && !r->all_met) ? 1 : 0;

	json_object_object_add(r->root, "all_targets_met", json_object_new_boolean(r->all_met));
	if (r->o->json)
		printf("%s\n", json_object_to_json_string_ext(r->root, JSON_C_TO_STRING_PLAIN));
	json_object_put(r->root);
	free(r);
	return ret;
}

void bench_die(const char *what, int err)
{
	fprintf(stderr, "p2pbuf bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

void touch_pages(uint8_t *p, uint64_t size)
{
	for (uint64_t off = 0; off < size; off += BENCH_PAGE)
		((volatile uint8_t *)p)[off] = (uint8_t)(off >> 12);
}

bool bench_thp_on(void)
{
	return p2p_hugepage_mode() != P2P_HUGEPAGE_NONE;
}

int raw_memfd(uint64_t size)
{
	int fd = memfd_create("bench-raw", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		bench_die("memfd", errno);
	return fd;
}

uint8_t *raw_mmap(int fd, uint64_t size, bool populate)
{
	bool thp = bench_thp_on();
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			  MAP_SHARED | (populate && !thp ? MAP_POPULATE : 0), fd, 0);

	if (p == MAP_FAILED)
		bench_die("mmap", errno);
	if (thp) {
		madvise(p, size, MADV_HUGEPAGE);
		if (populate && madvise(p, size, MADV_POPULATE_READ))
			bench_die("MADV_POPULATE_READ", errno);
	}
	return p;
}

uint64_t raw_map_touch_ns(int fd, uint64_t size, bool populate)
{
	uint64_t t0 = now_ns(), t;
	uint8_t *p = raw_mmap(fd, size, populate);

	touch_pages(p, size);
	t = now_ns() - t0;
	munmap(p, size);
	return t;
}

int bench_data_file(uint64_t size, char *path, size_t pathlen)
{
	const char *dir = getenv("TMPDIR");
	const size_t chunk = 1u << 20;
	uint64_t *buf = malloc(chunk);
	char local[256];
	int fd;

	if (!path) {
		path = local;
		pathlen = sizeof(local);
	}
	snprintf(path, pathlen, "%s/p2pbuf-bench-XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0 || !buf)
		bench_die("data file", fd < 0 ? errno : ENOMEM);
	if (path == local)
		unlink(path);
	for (uint64_t off = 0; off < size; off += chunk) {
		for (size_t i = 0; i < chunk / 8; i++)
			buf[i] = (off + i * 8) * 0x9e3779b97f4a7c15ull;
		if (pwrite(fd, buf, MIN_CHUNK(chunk, size - off), (off_t)off) < 0)
			bench_die("data file write", errno);
	}
	/* Written back once, so writeback does not run during the timed passes. */
	if (fdatasync(fd))
		bench_die("fdatasync", errno);
	free(buf);
	return fd;
}

uint64_t raw_uring_read(struct io_uring *ring, int fd, uint8_t *mem, uint64_t size, uint32_t bs,
			unsigned int qd, bool fixed)
{
	uint64_t next = 0, done = 0, t0 = now_ns();
	unsigned int inflight = 0;

	while (done < size) {
		struct io_uring_cqe *cqe;

		while (inflight < qd && next < size) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (fixed)
				io_uring_prep_read_fixed(sqe, fd, mem + next, bs, next, 0);
			else
				io_uring_prep_read(sqe, fd, mem + next, bs, next);
			next += bs;
			inflight++;
		}
		io_uring_submit_and_wait(ring, 1);
		while (io_uring_peek_cqe(ring, &cqe) == 0) {
			if (cqe->res != (int)bs)
				bench_die("raw read", cqe->res < 0 ? cqe->res : EIO);
			io_uring_cqe_seen(ring, cqe);
			inflight--;
			done += bs;
		}
	}
	return now_ns() - t0;
}

unsigned int bench_online_cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : (unsigned int)n;
}
