// SPDX-License-Identifier: MIT
/*
 * p2pbuf bench iova: IOVA translations per second (issue 10), the device's
 * IOMMU walk: p2p_ioas_dma_begin() + p2p_ioas_dma_end() of one IOVA, with
 * 10, 10 000 and 100 000 one-page areas of process memory or of a dma-buf
 * (every other page of IOVA mapped, so areas never merge), in random and
 * in sequential (IOVA) order.
 *
 * Baseline, interleaved with each case round by round over the same IOVAs
 * in the same order (bench_interleave(): the four passes of a case rotate
 * which goes first; one warm-up round): what a careful program would
 * write to translate with no IOMMU semantics at all, a branchless binary
 * search of a sorted array of area starts plus a range check and the
 * area's host address (no lock, no in-flight count, no revocation).
 * Passes are timed on the thread's CPU clock, so other jobs on a shared
 * machine cost only their cache pollution; the load average before and
 * after is printed.
 *
 * Targets: >= 50 M/s at 10 000 areas and >= 20 M/s at 100 000 areas, in
 * random order, for process memory and dma-buf areas alike, judged on the
 * per-round rates (met, missed, or unsettled when the limit lies inside
 * the noise band of their median).  Rounds go on until the translate /
 * lookup ratios settle and the limits are decided (up to --max-rounds /
 * --max-time); each series says whether it settled.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define PAGE BENCH_PAGE
#define die bench_die
#define LOOKUPS (1u << 20)

enum { RANDOM, SEQUENTIAL, NR_ORDERS };
static const char *const order_name[NR_ORDERS] = { "random", "sequential" };

struct iova_case {
	unsigned int cnt;
	bool dmabuf;
	struct p2p_ioas *ioas;
	struct p2p_pci_dev *pci;
	struct p2p_vfio_device *vdev;
	int fd;
	uint8_t *mem;
	size_t len;
	/* The baseline's table: area starts (sorted), last bytes and hosts. */
	uint64_t *starts, *lasts;
	uint8_t **hosts;
	uint64_t *iovas[NR_ORDERS];
};

/* The figures (and arms) of a case's series: per order, the baseline then the translation. */
#define FIG_LOOKUP(o) (2 * (o))
#define FIG_TRANSLATE(o) (2 * (o) + 1)
#define NR_FIGS (2 * NR_ORDERS)

/*
 * The thread's CPU clock: on a machine shared with other jobs, the time
 * the scheduler gives them is not counted (their cache pollution is).
 */
static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void case_setup(struct iova_case *c, struct p2p_iommufd *ctx)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ c->cnt ^ ((uint64_t)c->dmabuf << 40);
	uint64_t bar = 16384;
	uint32_t id;
	int ret;

	c->len = (size_t)c->cnt * PAGE;
	if ((ret = p2p_ioas_alloc(ctx, &id, &c->ioas)))
		die("IOAS", ret);
	c->fd = -1;
	if (c->dmabuf) {
		struct vfio_region_dma_range rg = { 0, c->len };

		while (bar < c->len)
			bar <<= 1;
		if ((ret = cli_gpu_create("0000:e0:00.0", bar, NULL, 1, &c->pci, &c->vdev)))
			die("device", ret);
		c->fd = p2p_vfio_device_get_dmabuf(c->vdev, 2, &rg, 1, O_RDWR | O_CLOEXEC);
		if (c->fd < 0)
			die("DMA_BUF", c->fd);
	} else {
		c->mem = mmap(NULL, c->len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (c->mem == MAP_FAILED)
			die("mmap", errno);
	}
	c->starts = calloc(c->cnt, sizeof(*c->starts));
	c->lasts = calloc(c->cnt, sizeof(*c->lasts));
	c->hosts = calloc(c->cnt, sizeof(*c->hosts));
	for (int o = 0; o < NR_ORDERS; o++) {
		c->iovas[o] = calloc(LOOKUPS, sizeof(uint64_t));
		if (!c->iovas[o])
			die("memory", ENOMEM);
	}
	if (!c->starts || !c->lasts || !c->hosts)
		die("memory", ENOMEM);
	for (unsigned int i = 0; i < c->cnt; i++) {
		/* Every other page: distinct areas with holes between them. */
		uint64_t iova = (1ull << 32) + (uint64_t)i * 2 * PAGE;
		uint32_t fl = P2P_IOAS_MAP_FIXED_IOVA | P2P_IOAS_MAP_READABLE;
		struct p2p_dma_seg seg;

		ret = c->dmabuf ? p2p_ioas_map_file(c->ioas, c->fd, (uint64_t)i * PAGE, PAGE, &iova, fl)
				: p2p_ioas_map(c->ioas, c->mem + (size_t)i * PAGE, PAGE, &iova, fl);
		if (ret)
			die("IOAS map", ret);
		if ((ret = p2p_ioas_dma_begin(c->ioas, iova, PAGE, P2P_DMA_READ, &seg)))
			die("translate", ret);
		c->starts[i] = iova;
		c->lasts[i] = iova + PAGE - 1;
		c->hosts[i] = seg.host;
		p2p_ioas_dma_end(&seg);
	}
	for (unsigned int k = 0; k < LOOKUPS; k++) {
		c->iovas[RANDOM][k] = c->starts[xorshift(&seed) % c->cnt] + xorshift(&seed) % PAGE;
		c->iovas[SEQUENTIAL][k] = c->starts[k % c->cnt] + (k * 64) % PAGE;
	}
}

static void case_teardown(struct iova_case *c)
{
	p2p_ioas_put(c->ioas);
	if (c->dmabuf) {
		p2p_close(c->fd);
		p2p_vfio_device_close(c->vdev);
		p2p_pci_dev_put(c->pci);
	} else {
		munmap(c->mem, c->len);
	}
	free(c->starts);
	free(c->lasts);
	free(c->hosts);
	for (int o = 0; o < NR_ORDERS; o++)
		free(c->iovas[o]);
}

static uint64_t translate_pass(struct iova_case *c, const uint64_t *iovas)
{
	uint64_t t0 = cpu_ns(), sink = 0;

	for (unsigned int k = 0; k < LOOKUPS; k++) {
		struct p2p_dma_seg seg;

		if (p2p_ioas_dma_begin(c->ioas, iovas[k], 64, P2P_DMA_READ, &seg))
			die("translate", EFAULT);
		sink += (uintptr_t)seg.host;
		p2p_ioas_dma_end(&seg);
	}
	__asm__ volatile("" : : "r"(sink));
	return cpu_ns() - t0;
}

/* The baseline: branchless lower bound, range check, host address. */
static uint64_t baseline_pass(struct iova_case *c, const uint64_t *iovas)
{
	uint64_t t0 = cpu_ns(), sink = 0;

	for (unsigned int k = 0; k < LOOKUPS; k++) {
		const uint64_t *base = c->starts, iova = iovas[k];
		size_t n = c->cnt, i;

		while (n > 1) {
			size_t half = n / 2;

			base = base[half] <= iova ? base + half : base;
			n -= half;
		}
		i = (size_t)(base - c->starts);
		if (iova > c->lasts[i])
			die("baseline", EFAULT);
		sink += (uintptr_t)(c->hosts[i] + (iova - c->starts[i]));
	}
	__asm__ volatile("" : : "r"(sink));
	return cpu_ns() - t0;
}

/* One pass of arm @arm (= its figure): a bare lookup or a translation, in one order. */
static void case_sample(void *ctx, unsigned int arm, uint64_t *row)
{
	struct iova_case *c = ctx;
	const uint64_t *iovas = c->iovas[arm / 2];

	row[arm] = arm & 1 ? translate_pass(c, iovas) : baseline_pass(c, iovas);
}

/* The target limit (M/s) of @c in random order, or 0 when it has none. */
static double case_limit(const struct iova_case *c)
{
	return c->cnt == 10000 ? 50 : c->cnt == 100000 ? 20 : 0;
}

/* Per-round rates (M/s) of figure @fig; returns the rounds. */
static unsigned int series_rates(const struct bench_series *s, unsigned int fig, double *v)
{
	for (unsigned int i = 0; i < s->rounds; i++)
		v[i] = s->ns[fig][i] ? LOOKUPS * 1e3 / (double)s->ns[fig][i] : 0;
	return s->rounds;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median (and min-max) of per-round rates of figure @fig. */
static double rate_median(const struct bench_series *s, unsigned int fig, double *lo, double *hi)
{
	double v[BENCH_MAX_ROUNDS];
	unsigned int n = series_rates(s, fig, v);

	qsort(v, n, sizeof(v[0]), cmp_dbl);
	*lo = n ? v[0] : 0;
	*hi = n ? v[n - 1] : 0;
	return !n ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void case_report(struct bench_report *r, struct iova_case *c, const struct bench_series *s)
{
	const char *kind = c->dmabuf ? "dmabuf" : "memory";

	for (int o = 0; o < NR_ORDERS; o++) {
		char name[64], what[128], text[32], x[48];
		double v[BENCH_MAX_ROUNDS], mt, tlo, thi, mb, blo, bhi, limit = case_limit(c);

		snprintf(what, sizeof(what), "%u lookups, %u %s areas, %s order", LOOKUPS, c->cnt,
			 kind, order_name[o]);
		snprintf(name, sizeof(name), "translate_%s_%u_%s", kind, c->cnt, order_name[o]);
		report_series_median(r, s, FIG_TRANSLATE(o), name, what);
		snprintf(name, sizeof(name), "lookup_%s_%u_%s", kind, c->cnt, order_name[o]);
		report_series_median(r, s, FIG_LOOKUP(o), name, what);
		mt = rate_median(s, FIG_TRANSLATE(o), &tlo, &thi);
		mb = rate_median(s, FIG_LOOKUP(o), &blo, &bhi);
		if (!r_json(r))
			printf("   %-28s translate %.1f M/s (%.1f-%.1f), bare lookup %.1f M/s (%.1f-%.1f)\n",
			       "", mt, tlo, thi, mb, blo, bhi);
		snprintf(name, sizeof(name), "translate_%s_%u_%s_Mps", kind, c->cnt, order_name[o]);
		report_ratio_spread(r, name, mt, tlo, thi);
		/* Time ratio per round: how many times a bare lookup a translation costs. */
		snprintf(name, sizeof(name), "%s_%u_%s_translate/lookup_time", kind, c->cnt,
			 order_name[o]);
		report_series_ratio(r, s, FIG_TRANSLATE(o), FIG_LOOKUP(o), name);
		snprintf(x, sizeof(x), "%s %u %s", kind, c->cnt, order_name[o]);
		report_series_plot(r, s, FIG_TRANSLATE(o), x, "p2pbuf translate", LOOKUPS * 1e3);
		report_series_plot(r, s, FIG_LOOKUP(o), x, "bare binary search", LOOKUPS * 1e3);
		if (o == RANDOM && limit > 0) {
			unsigned int n = series_rates(s, FIG_TRANSLATE(o), v);

			snprintf(name, sizeof(name), "translate_%s_%u_random_Mps", kind, c->cnt);
			snprintf(text, sizeof(text), ">= %.0f M/s", limit);
			report_target_values(r, name, v, n, limit, true, text);
		}
	}
}

static void loadavg(char *buf, size_t len)
{
	FILE *f = fopen("/proc/loadavg", "re");

	if (!f || !fgets(buf, (int)len, f))
		snprintf(buf, len, "unknown");
	buf[strcspn(buf, "\n")] = 0;
	if (f)
		fclose(f);
}

/**
 * bench_iova() - p2pbuf bench iova: translations per second vs a bare lookup
 * @o: options; at least 5 interleaved rounds per case by default
 *
 * Return: the exit status (report_finish()).
 */
int bench_iova(const struct bench_opts *o)
{
	static const unsigned int counts[] = { 10, 10000, 100000 };
	struct bench_report *r = report_new("iova", o);
	struct bench_series s;
	struct p2p_iommufd *ctx;
	char load[128], fact[160];
	int ret;

	report_fact(r, "translation", "p2p_ioas_dma_begin + p2p_ioas_dma_end of one IOVA");
	report_fact(r, "clock", "the thread's CPU time (CLOCK_THREAD_CPUTIME_ID): other jobs' time slices are not counted");
	report_fact(r, "baseline",
		    "branchless binary search of a sorted array + range check + host address, same IOVAs, interleaved round by round");
	loadavg(load, sizeof(load));
	snprintf(fact, sizeof(fact), "%s (%ld CPUs)", load, sysconf(_SC_NPROCESSORS_ONLN));
	report_fact(r, "loadavg_before", fact);
	report_plot_axis(r, "M translations/s (median, min-max; higher is faster)", false);
	if ((ret = p2p_iommufd_open(&ctx)))
		die("iommufd", ret);
	/* One case at a time (the 100 000-area ones are large), its passes interleaved. */
	for (int k = 0; k < 2; k++) {
		for (size_t ci = 0; ci < 3; ci++) {
			struct iova_case c = { .cnt = counts[ci], .dmabuf = k };
			char sname[48];
			double limit = case_limit(&c);

			snprintf(sname, sizeof(sname), "%u %s areas", c.cnt,
				 c.dmabuf ? "dma-buf" : "memory");
			case_setup(&c, ctx);
			bench_series_init(&s, sname, NR_FIGS, NR_FIGS);
			/* Watch translate/lookup per order, and the rate target itself. */
			s.npairs = 0;
			for (int ord = 0; ord < NR_ORDERS; ord++)
				s.pair[s.npairs++] = (struct bench_pair){ .num = FIG_TRANSLATE(ord),
									  .den = FIG_LOOKUP(ord) };
			if (limit > 0)
				/* >= limit M/s: the pass takes <= LOOKUPS / limit us. */
				s.pair[s.npairs++] = (struct bench_pair){
					.num = FIG_TRANSLATE(RANDOM), .max_ratio = 1,
					.den_ns = LOOKUPS * 1e3 / limit };
			bench_interleave(r, &s, 5, case_sample, &c);
			case_report(r, &c, &s);
			case_teardown(&c);
		}
	}
	p2p_iommufd_close(ctx);
	loadavg(load, sizeof(load));
	report_fact(r, "loadavg_after", load);
	return report_finish(r);
}
