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

#endif
