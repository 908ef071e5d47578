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
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p2pbuf/p2pbuf.h>

#include "bench_util.h"

#define MIN_CHUNK(a, b) ((a) < (b) ? (a) : (b))

struct plot_point {
	char x[64], series[48];
	double v, lo, hi;
};

struct bench_report {
	const struct bench_opts *o;
	char bench[32];
	json_object *root, *facts, *medians, *spreads, *ratios, *ratio_spreads, *targets, *series;
	bool all_met;
	unsigned int missed, unsettled;
	/* --plot: explicit points, else the medians (auto) */
	struct plot_point *pts, *auto_pts;
	unsigned int npts, nauto;
	char unit[48];
	bool log;
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
	snprintf(r->bench, sizeof(r->bench), "%s", bench);
	r->all_met = true;
	r->root = json_object_new_object();
	r->facts = json_object_new_object();
	r->medians = json_object_new_object();
	r->spreads = json_object_new_object();
	r->ratios = json_object_new_object();
	r->ratio_spreads = json_object_new_object();
	r->targets = json_object_new_array();
	r->series = json_object_new_array();
	json_object_object_add(r->root, "bench", json_object_new_string(bench));
	json_object_object_add(r->root, "facts", r->facts);
	json_object_object_add(r->root, "medians_ms", r->medians);
	json_object_object_add(r->root, "spreads_ms", r->spreads);
	json_object_object_add(r->root, "ratios", r->ratios);
	json_object_object_add(r->root, "ratio_spreads", r->ratio_spreads);
	json_object_object_add(r->root, "targets", r->targets);
	json_object_object_add(r->root, "series", r->series);
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

static json_object *json_pair(double lo, double hi)
{
	json_object *a = json_object_new_array();

	json_object_array_add(a, json_object_new_double(lo));
	json_object_array_add(a, json_object_new_double(hi));
	return a;
}

static void plot_add(struct plot_point **pts, unsigned int *n, const char *x, const char *series,
		     double v, double lo, double hi)
{
	struct plot_point *p = realloc(*pts, (*n + 1) * sizeof(**pts));

	if (!p)
		abort();
	*pts = p;
	p += (*n)++;
	snprintf(p->x, sizeof(p->x), "%s", x);
	snprintf(p->series, sizeof(p->series), "%s", series);
	p->v = v;
	p->lo = lo;
	p->hi = hi;
}

void report_plot(struct bench_report *r, const char *x, const char *series, double value,
		 double lo, double hi)
{
	plot_add(&r->pts, &r->npts, x, series, value, lo, hi);
}

void report_plot_axis(struct bench_report *r, const char *unit, bool log)
{
	snprintf(r->unit, sizeof(r->unit), "%s", unit);
	r->log = log;
}

double report_median(struct bench_report *r, const char *name, const char *what, uint64_t *ns,
		     unsigned int n)
{
	double ms = median_ns(ns, n) / 1e6, lo = n ? (double)ns[0] / 1e6 : 0,
	       hi = n ? (double)ns[n - 1] / 1e6 : 0;
	const char *us = strchr(name, '_');
	char series[48];

	json_object_object_add(r->medians, name, json_object_new_double(ms));
	json_object_object_add(r->spreads, name, json_pair(lo, hi));
	if (!r->o->json)
		printf("   %-28s median %10.3f ms  [%.3f-%.3f, n=%u]  %s\n", name, ms, lo, hi, n,
		       what);
	snprintf(series, sizeof(series), "%.*s", us ? (int)(us - name) : (int)strlen(name), name);
	plot_add(&r->auto_pts, &r->nauto, us ? us + 1 : name, series, ms, lo, hi);
	return ms;
}

void report_ratio(struct bench_report *r, const char *name, double value)
{
	json_object_object_add(r->ratios, name, json_object_new_double(value));
	if (!r->o->json)
		printf("   ratio %-22s %8.3f\n", name, value);
}

void report_ratio_spread(struct bench_report *r, const char *name, double value, double lo,
			 double hi)
{
	json_object_object_add(r->ratios, name, json_object_new_double(value));
	json_object_object_add(r->ratio_spreads, name, json_pair(lo, hi));
	if (!r->o->json)
		printf("   ratio %-22s %8.3f  [%.3f-%.3f]\n", name, value, lo, hi);
}

static void target_add(struct bench_report *r, const char *name, double value, double limit,
		       const char *text, enum bench_verdict v, const double *band)
{
	static const char *const names[] = { "met", "missed", "unsettled" };
	json_object *t = json_object_new_object();

	json_object_object_add(t, "name", json_object_new_string(name));
	json_object_object_add(t, "target", json_object_new_string(text));
	json_object_object_add(t, "value", json_object_new_double(value));
	json_object_object_add(t, "limit", json_object_new_double(limit));
	json_object_object_add(t, "met", json_object_new_boolean(v == BENCH_MET));
	json_object_object_add(t, "verdict", json_object_new_string(names[v]));
	if (band)
		json_object_object_add(t, "band", json_pair(band[0], band[1]));
	json_object_array_add(r->targets, t);
	if (v != BENCH_MET)
		r->all_met = false;
	r->missed += v == BENCH_MISSED;
	r->unsettled += v == BENCH_UNSETTLED;
	if (r->o->json)
		return;
	if (band)
		printf("   target %-21s %s: %.3f [band %.3f-%.3f] -> %s\n", name, text, value,
		       band[0], band[1],
		       v == BENCH_MET ? "met" : v == BENCH_MISSED ? "MISSED" : "UNSETTLED");
	else
		printf("   target %-21s %s: %.3f -> %s\n", name, text, value,
		       v == BENCH_MET ? "met" : "MISSED");
}

bool report_target(struct bench_report *r, const char *name, double value, double limit,
		   bool at_least, const char *text)
{
	bool met = at_least ? value >= limit : value <= limit;

	target_add(r, name, value, limit, text, met ? BENCH_MET : BENCH_MISSED, NULL);
	return met;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts @v; its median, and the ~95% confidence band of the median. */
static double median_band(double *v, unsigned int n, double *lo, double *hi)
{
	unsigned int l = 0;

	if (!n) {
		*lo = *hi = 0;
		return 0;
	}
	qsort(v, n, sizeof(*v), cmp_double);
	/*
	 * Order statistics: the band [v(l), v(n-1-l)] with l = floor((n - 1.96
	 * sqrt(n)) / 2), the largest l with (n - 2l)^2 >= 1.96^2 n.
	 */
	while (2 * (l + 1) <= n &&
	       (double)(n - 2 * (l + 1)) * (n - 2 * (l + 1)) >= 3.8416 * n)
		l++;
	*lo = v[l];
	*hi = v[n - 1 - l];
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static enum bench_verdict verdict_of(double lo, double hi, double limit, bool at_least)
{
	if (at_least)
		return lo >= limit ? BENCH_MET : hi < limit ? BENCH_MISSED : BENCH_UNSETTLED;
	return hi <= limit ? BENCH_MET : lo > limit ? BENCH_MISSED : BENCH_UNSETTLED;
}

enum bench_verdict report_target_values(struct bench_report *r, const char *name, double *v,
					unsigned int n, double limit, bool at_least,
					const char *text)
{
	double band[2], m = median_band(v, n, &band[0], &band[1]);
	enum bench_verdict verdict = verdict_of(band[0], band[1], limit, at_least);

	target_add(r, name, m, limit, text, verdict, band);
	return verdict;
}

bool r_json(const struct bench_report *r)
{
	return r->o->json;
}

/* Quote @s for a gnuplot double-quoted string. */
static void gp_quote(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/*
 * Draw @pts into @svg with gnuplot: one cluster of bars per group (x), one
 * bar per series, error bars from each figure's min to max.
 */
static int plot_write(const struct bench_report *r, const struct plot_point *pts,
		      unsigned int n, const char *unit, bool log, const char *svg)
{
	const char *xs[256], *ss[8];
	unsigned int nx = 0, ns = 0;
	char dir[] = "/tmp/p2pbuf-plot-XXXXXX", data[64], script[64];
	char *argv[] = { (char *)"gnuplot", script, NULL };
	double vmin = 0, vmax = 0;
	extern char **environ;
	FILE *f;
	pid_t pid;
	int st, ret = -EIO;

	for (unsigned int i = 0; i < n; i++) {
		unsigned int j;

		for (j = 0; j < nx && strcmp(xs[j], pts[i].x); j++)
			;
		if (j == nx && nx < 256)
			xs[nx++] = pts[i].x;
		for (j = 0; j < ns && strcmp(ss[j], pts[i].series); j++)
			;
		if (j == ns && ns < 8)
			ss[ns++] = pts[i].series;
		if (pts[i].v > 0 && (!vmin || pts[i].v < vmin))
			vmin = pts[i].v;
		vmax = pts[i].v > vmax ? pts[i].v : vmax;
	}
	if (!nx || !mkdtemp(dir))
		return nx ? -errno : -ENODATA;
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(script, sizeof(script), "%s/plot.gp", dir);
	/* The data: one line per group, value low high per series ("?" if absent). */
	f = fopen(data, "w");
	if (!f) {
		ret = -errno;
		goto out;
	}
	for (unsigned int x = 0; x < nx; x++) {
		fprintf(f, "%s", xs[x]);
		for (unsigned int k = 0; k < ns; k++) {
			const struct plot_point *p = NULL;

			for (unsigned int i = 0; i < n && !p; i++)
				if (!strcmp(pts[i].x, xs[x]) && !strcmp(pts[i].series, ss[k]))
					p = &pts[i];
			if (p)
				fprintf(f, "\t%.6g\t%.6g\t%.6g", p->v, p->lo, p->hi);
			else
				fprintf(f, "\t?\t?\t?");
		}
		fputc('\n', f);
	}
	fclose(f);
	f = fopen(script, "w");
	if (!f) {
		ret = -errno;
		goto out;
	}
	/* Log scale when asked, or when the figures span more than 100x. */
	log = log || (vmin > 0 && vmax / vmin > 100);
	fprintf(f, "set terminal svg size %u,480 dynamic noenhanced font 'sans,12' background rgb 'white'\n",
		nx * (ns + 1) * 28 + 260 > 720 ? nx * (ns + 1) * 28 + 260 : 720);
	fprintf(f, "set output ");
	gp_quote(f, svg);
	fprintf(f, "\nset title ");
	gp_quote(f, r->bench);
	fprintf(f, " . ': median per figure, error bar min-max'\n");
	fprintf(f, "set datafile separator '\\t'\nset datafile missing '?'\n"
		   "set style data histograms\nset style histogram errorbars gap 1 lw 1\n"
		   "set style fill solid 0.75 border -1\nset boxwidth 0.9\n"
		   "set key below horizontal noenhanced\nset grid ytics\n");
	fprintf(f, "set xtics nomirror scale 0%s\nset xrange [-0.6:%u.6]\n",
		nx > 4 ? " rotate by 30 right" : "", nx - 1);
	fprintf(f, "set ylabel ");
	gp_quote(f, unit);
	fprintf(f, "\n%s\n", log ? "set logscale y" : "set yrange [0:*]");
	fprintf(f, "plot ");
	for (unsigned int k = 0; k < ns; k++) {
		fprintf(f, "%s'%s' using %u:%u:%u%s title ", k ? ", " : "", data, 2 + 3 * k,
			3 + 3 * k, 4 + 3 * k, k ? "" : ":xtic(1)");
		gp_quote(f, ss[k]);
	}
	fputc('\n', f);
	fclose(f);
	fflush(NULL);
	if ((ret = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ))) {
		ret = -ret;
		goto out;
	}
	if (waitpid(pid, &st, 0) < 0)
		ret = -errno;
	else
		ret = WIFEXITED(st) && !WEXITSTATUS(st) ? 0 : -EIO;
out:
	unlink(data);
	unlink(script);
	rmdir(dir);
	return ret;
}

/* The SVG of this report: --plot FILE, DIR/<bench>.svg when it names a directory. */
static int report_plot_finish(struct bench_report *r)
{
	bool expl = r->npts > 0;
	char path[4096];
	struct stat st;
	int ret;

	if (!stat(r->o->plot, &st) && S_ISDIR(st.st_mode))
		snprintf(path, sizeof(path), "%s/%s.svg", r->o->plot, r->bench);
	else
		snprintf(path, sizeof(path), "%s", r->o->plot);
	ret = plot_write(r, expl ? r->pts : r->auto_pts, expl ? r->npts : r->nauto,
			 expl && r->unit[0] ? r->unit : "ms per sample (median, min-max; lower is faster)",
			 expl && r->log, path);
	if (ret) {
		fprintf(stderr, "p2pbuf bench %s: --plot %s: %s\n", r->bench, path,
			ret == -EIO ? "gnuplot failed" : strerror(-ret));
		return 1;
	}
	if (!r->o->json)
		printf("   plot: %s\n", path);
	return 0;
}

int report_finish(struct bench_report *r)
{
	int ret = 0;

	if (r->o->strict)
		ret = r->missed ? 1 : r->unsettled ? 3 : 0;
	json_object_object_add(r->root, "all_targets_met", json_object_new_boolean(r->all_met));
	json_object_object_add(r->root, "targets_unsettled", json_object_new_int((int)r->unsettled));
	if (r->o->plot && report_plot_finish(r))
		ret = 1;
	if (r->o->json)
		printf("%s\n", json_object_to_json_string_ext(r->root, JSON_C_TO_STRING_PLAIN));
	else if (r->unsettled)
		printf("   %u target(s) unsettled: the verdict depends on the noise here (rerun on a quieter machine, or with more rounds)\n",
		       r->unsettled);
	json_object_put(r->root);
	free(r->pts);
	free(r->auto_pts);
	free(r);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Interleaved rounds                                                       */

void bench_series_init(struct bench_series *s, const char *name, unsigned int narms,
		       unsigned int nfig)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->narms = narms;
	s->nfig = nfig;
	for (unsigned int k = 1; k < nfig; k++)
		s->pair[s->npairs++] = (struct bench_pair){ .num = k, .den = 0 };
}

unsigned int bench_series_ratios(const struct bench_series *s, unsigned int num,
				 unsigned int den, double *v)
{
	for (unsigned int i = 0; i < s->rounds; i++)
		v[i] = s->ns[den][i] ? (double)s->ns[num][i] / (double)s->ns[den][i] : 0;
	return s->rounds;
}

/* The per-round values of a watched pair: num over figure den, or over the constant den_ns. */
static unsigned int pair_ratios(const struct bench_series *s, const struct bench_pair *pr,
				double *v)
{
	if (!(pr->den_ns > 0))
		return bench_series_ratios(s, pr->num, pr->den, v);
	for (unsigned int i = 0; i < s->rounds; i++)
		v[i] = (double)s->ns[pr->num][i] / pr->den_ns;
	return s->rounds;
}

void bench_interleave(struct bench_report *r, struct bench_series *s, unsigned int min_rounds,
		      bench_sample_fn fn, void *ctx)
{
	const struct bench_opts *o = r->o;
	unsigned int min = o->iterations ? o->iterations : min_rounds, max;
	double hist[BENCH_MAX_FIGS][BENCH_MAX_ROUNDS], v[BENCH_MAX_ROUNDS], limit;
	uint64_t row[BENCH_MAX_FIGS], t0 = now_ns();
	json_object *j;
	unsigned int undecided = 0;

	min = min > BENCH_MAX_ROUNDS ? BENCH_MAX_ROUNDS : min ? min : 1;
	max = o->max_rounds ? o->max_rounds : 3 * min;
	max = max > BENCH_MAX_ROUNDS ? BENCH_MAX_ROUNDS : max < min ? min : max;
	limit = o->max_seconds > 0 ? o->max_seconds : BENCH_MAX_SECONDS;
	s->rounds = 0;
	s->settled = false;
	s->drift = 0;
	for (unsigned int i = 0; i <= max; i++) {
		/* Round 0 warms up; its figures are dropped. */
		for (unsigned int a = 0; a < s->narms; a++)
			fn(ctx, (i + a) % s->narms, row);
		if (!i)
			continue;
		for (unsigned int k = 0; k < s->nfig; k++)
			s->ns[k][s->rounds] = row[k];
		s->rounds++;
		/* The running median of every watched ratio, and how far it moved lately. */
		s->drift = 0;
		undecided = 0;
		for (unsigned int p = 0; p < s->npairs; p++) {
			const struct bench_pair *pr = &s->pair[p];
			double lo, hi, mlo, mhi;
			unsigned int n = pair_ratios(s, pr, v);

			hist[p][s->rounds - 1] = median_band(v, n, &lo, &hi);
			if (pr->max_ratio > 0 && pr->slack_ns) {
				double e[BENCH_MAX_ROUNDS];

				for (unsigned int i = 0; i < n; i++)
					e[i] = (double)s->ns[pr->num][i] -
					       pr->max_ratio * (pr->den_ns > 0 ? pr->den_ns :
							       (double)s->ns[pr->den][i]);
				median_band(e, n, &lo, &hi);
				if (verdict_of(lo, hi, pr->slack_ns, false) == BENCH_UNSETTLED)
					undecided++;
			} else if (pr->max_ratio > 0 &&
				   verdict_of(lo, hi, pr->max_ratio, false) == BENCH_UNSETTLED) {
				undecided++;
			}
			if (s->rounds < BENCH_SETTLE_WINDOW) {
				s->drift = 1;
				continue;
			}
			mlo = mhi = hist[p][s->rounds - 1];
			for (unsigned int w = 2; w <= BENCH_SETTLE_WINDOW; w++) {
				double m = hist[p][s->rounds - w];

				mlo = m < mlo ? m : mlo;
				mhi = m > mhi ? m : mhi;
			}
			if (mlo > 0 && mhi / mlo - 1 > s->drift)
				s->drift = mhi / mlo - 1;
		}
		if (!s->npairs && s->rounds >= BENCH_SETTLE_WINDOW)
			s->drift = 0;
		s->settled = s->drift <= BENCH_SETTLE_TOL;
		if (s->rounds < min)
			continue;
		if (s->settled && !undecided)
			break;
		if ((double)(now_ns() - t0) / 1e9 >= limit)
			break;
	}
	s->seconds = (double)(now_ns() - t0) / 1e9;
	s->undecided = undecided;
	j = json_object_new_object();
	json_object_object_add(j, "name", json_object_new_string(s->name));
	json_object_object_add(j, "rounds", json_object_new_int((int)s->rounds));
	json_object_object_add(j, "settled", json_object_new_boolean(s->settled));
	json_object_object_add(j, "drift", json_object_new_double(s->drift));
	json_object_object_add(j, "undecided", json_object_new_int((int)undecided));
	json_object_object_add(j, "seconds", json_object_new_double(s->seconds));
	json_object_array_add(r->series, j);
	if (o->json)
		return;
	printf("   -- %s: %u rounds interleaved, %s (ratio medians moved %.1f%% over the last %u)",
	       s->name, s->rounds, s->settled ? "settled" : "NOT settled", s->drift * 100,
	       BENCH_SETTLE_WINDOW);
	if (undecided)
		printf(", %u target%s still undecided at the cap", undecided, undecided > 1 ? "s" : "");
	printf(", %.1f s\n", s->seconds);
}

double report_series_median(struct bench_report *r, const struct bench_series *s,
			    unsigned int fig, const char *name, const char *what)
{
	uint64_t v[BENCH_MAX_ROUNDS];

	memcpy(v, s->ns[fig], s->rounds * sizeof(v[0]));
	return report_median(r, name, what, v, s->rounds);
}

double report_series_ratio(struct bench_report *r, const struct bench_series *s,
			   unsigned int num, unsigned int den, const char *name)
{
	double v[BENCH_MAX_ROUNDS], lo, hi, m;
	unsigned int n = bench_series_ratios(s, num, den, v);

	qsort(v, n, sizeof(v[0]), cmp_double);
	m = median_band(v, n, &lo, &hi);
	report_ratio_spread(r, name, m, n ? v[0] : 0, n ? v[n - 1] : 0);
	return m;
}

void report_series_plot(struct bench_report *r, const struct bench_series *s, unsigned int fig,
			const char *x, const char *series, double per)
{
	uint64_t v[BENCH_MAX_ROUNDS];
	unsigned int n = s->rounds;
	double m, lo, hi;

	if (!n)
		return;
	memcpy(v, s->ns[fig], n * sizeof(v[0]));
	m = median_ns(v, n);
	lo = (double)v[0];
	hi = (double)v[n - 1];
	if (per > 0)
		report_plot(r, x, series, per / m, per / hi, per / lo);
	else
		report_plot(r, x, series, m / 1e6, lo / 1e6, hi / 1e6);
}

enum bench_verdict report_series_target(struct bench_report *r, const struct bench_series *s,
					unsigned int num, unsigned int den, const char *name,
					double limit, bool at_least, const char *text)
{
	double v[BENCH_MAX_ROUNDS];
	unsigned int n = bench_series_ratios(s, num, den, v);

	return report_target_values(r, name, v, n, limit, at_least, text);
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
