/* SPDX-License-Identifier: MIT */
/* Benchmark helpers for the p2pbuf CLI: timing, medians, reports. */
#ifndef P2PBUF_TOOLS_BENCH_UTIL_H
#define P2PBUF_TOOLS_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bench_opts {
	bool json;
	bool strict;
	unsigned int iterations; /* 0: the benchmark's default */
	uint64_t size;		 /* 0: the benchmark's default */
};

/* A benchmark's results: named medians, ratios and targets. */
struct bench_report;

struct bench_report *report_new(const char *bench, const struct bench_opts *o);
void report_fact(struct bench_report *r, const char *key, const char *value);
/* Samples in nanoseconds; stores and returns the median in ms. */
double report_median(struct bench_report *r, const char *name, const char *what, uint64_t *ns,
		     unsigned int n);
void report_ratio(struct bench_report *r, const char *name, double value);
/* Records and returns whether value <= limit (or >= when at_least). */
bool report_target(struct bench_report *r, const char *name, double value, double limit,
		   bool at_least, const char *text);
/* Prints (text or JSON) and frees; returns the exit status. */
int report_finish(struct bench_report *r);
/* Is this report printing JSON? */
bool r_json(const struct bench_report *r);

uint64_t now_ns(void);
double median_ns(uint64_t *v, unsigned int n);
const char *hugepage_mode_name(void);
/* Online cores (what p2pbuf's parallel populate and the engine's default channels use). */
unsigned int bench_online_cores(void);

/* Shared by the benchmarks (bench*.c). */
#define BENCH_PAGE 4096ull

/* Print "p2pbuf bench: <what>: <error>" and exit 1 (a setup step failed). */
void bench_die(const char *what, int err) __attribute__((noreturn));
/* Write one byte per 4 KiB page. */
void touch_pages(uint8_t *p, uint64_t size);
/* Does p2pbuf use shmem THP here (so baselines must too)? */
bool bench_thp_on(void);
/* A new memfd of @size bytes; *@fdp gets it. */
int raw_memfd(uint64_t size);
/*
 * Map @fd shared read-write as p2pbuf maps device memory: MAP_POPULATE, or
 * MADV_HUGEPAGE + MADV_POPULATE_READ when shmem THP is on; @populate false
 * leaves it to faults.
 */
uint8_t *raw_mmap(int fd, uint64_t size, bool populate);
/*
 * A temporary data file of @size bytes (a fixed pattern), written back and
 * in the page cache.  @path (may be NULL) receives its name, which the
 * caller unlinks; otherwise it is unlinked already.
 */
int bench_data_file(uint64_t size, char *path, size_t pathlen);
/*
 * The raw mapping baselines, timed: map @fd (raw_mmap()), touch every page,
 * unmap (untimed); returns the nanoseconds of map + touch.
 */
uint64_t raw_map_touch_ns(int fd, uint64_t size, bool populate);

struct io_uring;
/*
 * Read [0, @size) of @fd into @mem in @bs blocks, @qd in flight, with
 * READ_FIXED (buffer index 0 registered over @mem) or plain READ.
 * Returns the nanoseconds it took.
 */
uint64_t raw_uring_read(struct io_uring *ring, int fd, uint8_t *mem, uint64_t size, uint32_t bs,
			unsigned int qd, bool fixed);

#endif
