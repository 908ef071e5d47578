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
	unsigned int iterations; /* 0: the benchmark's default; the minimum rounds */
	uint64_t size;		 /* 0: the benchmark's default */
	unsigned int max_rounds; /* 0: 3 x the minimum (at most BENCH_MAX_ROUNDS) */
	double max_seconds;	 /* 0: BENCH_MAX_SECONDS per series */
	const char *plot;	 /* an SVG file to draw the figures into, or NULL */
};

/* A benchmark's results: named medians, ratios and targets. */
struct bench_report;

struct bench_report *report_new(const char *bench, const struct bench_opts *o);
void report_fact(struct bench_report *r, const char *key, const char *value);
/*
 * Samples in nanoseconds (sorted in place); stores and returns the median in
 * ms, printed with its spread (min-max) and the number of samples.
 */
double report_median(struct bench_report *r, const char *name, const char *what, uint64_t *ns,
		     unsigned int n);
/* A derived value (a throughput, a rate) without a spread of its own. */
void report_ratio(struct bench_report *r, const char *name, double value);
/* A value with its spread (min-max), e.g. the median of per-round ratios. */
void report_ratio_spread(struct bench_report *r, const char *name, double value, double lo,
			 double hi);
/*
 * Records and returns whether value <= limit (or >= when at_least): a
 * single value, no noise band (met or missed).
 */
bool report_target(struct bench_report *r, const char *name, double value, double limit,
		   bool at_least, const char *text);

/* A target's verdict. */
enum bench_verdict { BENCH_MET, BENCH_MISSED, BENCH_UNSETTLED };

/*
 * A target judged on @n per-round values @v (sorted in place), e.g. the
 * ratio case/baseline of each round: the value is their median, the noise
 * band the distribution-free ~95% confidence interval of that median (order
 * statistics; min-max below 9 rounds).  Met when the whole band is on the
 * good side of @limit, missed when it is all on the bad side, unsettled
 * when the limit lies inside it (the verdict would depend on the noise).
 */
enum bench_verdict report_target_values(struct bench_report *r, const char *name, double *v,
					unsigned int n, double limit, bool at_least,
					const char *text);
/*
 * Prints (text or JSON), draws the plot (--plot) and frees; returns the
 * exit status: 0; with --strict 1 if a target was missed, else 3 if one was
 * unsettled; 1 if the plot could not be drawn.
 */
int report_finish(struct bench_report *r);
/* Is this report printing JSON? */
bool r_json(const struct bench_report *r);

/*
 * Plot points for --plot: in group @x (a size, a case), the bar of @series
 * with its spread.  Benchmarks that add none get their medians plotted, the
 * name split at its first '_' into series and group ("engine_1range_4K":
 * series "engine", group "1range_4K"), in ms.  @unit labels the y axis of
 * explicit points (the last one set wins); @log asks for a log scale.
 */
void report_plot(struct bench_report *r, const char *x, const char *series, double value,
		 double lo, double hi);
void report_plot_axis(struct bench_report *r, const char *unit, bool log);

/*
 * Interleaved rounds: a case and its baseline sampled side by side.
 *
 * A series has @narms sampling steps ("arms") and @nfig figures (columns of
 * nanoseconds, one value per round).  One round takes one sample of every
 * arm: round i starts with arm i % narms and goes on in order (two arms: the
 * baseline first, then the case first, alternating), so that drift and
 * cache state favour none.  @fn(ctx, arm, row) runs arm @arm once and writes
 * the figures it measured into row[fig] (the usual case: arm k writes
 * row[k], figure 0 being the baseline).  One untimed warm-up round comes
 * first.
 *
 * Settling: @pair lists the ratios to watch (figure num over figure den,
 * per round; by default every figure k >= 1 over figure 0).  After each
 * round from the minimum on, the median of each watched per-round ratio
 * over all rounds so far is taken; the series has settled when, for every
 * pair (a ratio to figure den, or to the constant den_ns), those medians
 * over the last BENCH_SETTLE_WINDOW rounds lie within
 * BENCH_SETTLE_TOL of each other (max/min - 1), and no pair with a
 * max_ratio has that limit inside its noise band (report_target_values()).
 * Rounds go on until it settles, up to the maximum rounds or seconds; the
 * series then reports that it did not settle.
 */
#define BENCH_MAX_FIGS 24
#define BENCH_MAX_ROUNDS 64
#define BENCH_MAX_SECONDS 20.0
#define BENCH_SETTLE_TOL 0.015
#define BENCH_SETTLE_WINDOW 3

struct bench_pair {
	unsigned int num, den;
	/*
	 * 0, or a target to decide while rounds go on: num <= max_ratio x den
	 * (+ slack_ns when that is not 0: judged on the per-round excess
	 * num - max_ratio x den against slack_ns)
	 */
	double max_ratio, slack_ns;
	/*
	 * Not 0: the denominator is this constant (nanoseconds) instead of
	 * figure den, e.g. an absolute limit: num <= max_ratio x den_ns (a
	 * rate target, judged while rounds go on)
	 */
	double den_ns;
};

struct bench_series {
	/* in: bench_series_init(), then optionally pair[] */
	const char *name;
	unsigned int narms, nfig, npairs;
	struct bench_pair pair[BENCH_MAX_FIGS];
	/* out */
	unsigned int rounds;
	bool settled;
	unsigned int undecided; /* watched targets with their limit inside the band */
	double drift;	/* the watched medians' largest move over the last rounds */
	double seconds; /* the series' wall time, warm-up included */
	uint64_t ns[BENCH_MAX_FIGS][BENCH_MAX_ROUNDS];
};

typedef void (*bench_sample_fn)(void *ctx, unsigned int arm, uint64_t *row);

/* @nfig figures, one per arm, pairs k/0 for every k >= 1. */
void bench_series_init(struct bench_series *s, const char *name, unsigned int narms,
		       unsigned int nfig);
/*
 * Run rounds until settled (see above): at least @min_rounds (the
 * benchmark's default; -n overrides it), and records the outcome in @r.
 */
void bench_interleave(struct bench_report *r, struct bench_series *s, unsigned int min_rounds,
		      bench_sample_fn fn, void *ctx);
/* Median (ms) of figure @fig, with its spread, as report_median(). */
double report_series_median(struct bench_report *r, const struct bench_series *s,
			    unsigned int fig, const char *name, const char *what);
/* Per-round ratio fig num / fig den: median with spread; returns the median. */
double report_series_ratio(struct bench_report *r, const struct bench_series *s,
			   unsigned int num, unsigned int den, const char *name);
/* A target on the per-round ratio num/den (report_target_values()). */
enum bench_verdict report_series_target(struct bench_report *r, const struct bench_series *s,
					unsigned int num, unsigned int den, const char *name,
					double limit, bool at_least, const char *text);
/*
 * A plot point (report_plot()) from figure @fig: its median and spread in ms
 * when @per is 0, else as the rate @per / nanoseconds (bytes/ns = GB/s).
 */
void report_series_plot(struct bench_report *r, const struct bench_series *s, unsigned int fig,
			const char *x, const char *series, double per);
/* v[i] = ns[num][i] / ns[den][i] for every round; returns the rounds. */
unsigned int bench_series_ratios(const struct bench_series *s, unsigned int num,
				 unsigned int den, double *v);

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
