// SPDX-License-Identifier: MIT
/*
 * The benchmark framework's rules (tools/bench_util.c), on synthetic
 * samples: no timing, so the outcome is exact.
 *  - verdicts: the noise band is the ~95% order-statistics interval of the
 *    median (min-max below 9 values); met / missed when the band is all on
 *    one side of the limit, unsettled when the limit lies inside;
 *  - --strict exit status: 1 if a target was missed, else 3 if one was
 *    unsettled, else 0;
 *  - interleaving: one warm-up round, then every arm once per round, the
 *    first arm alternating (2 arms) or rotating (3 arms);
 *  - settling: a steady ratio stops at the minimum rounds; a ratio whose
 *    median keeps moving runs to the cap and reports it did not settle; a
 *    watched limit inside the band keeps rounds going until it is decided,
 *    also a limit on a figure itself (a constant denominator, den_ns).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "harness.h"

/* A synthetic series: the arms' order is logged, the figures come from a formula. */
struct synth {
	unsigned int calls, order[512];
	unsigned int round;	  /* rounds seen, warm-up included */
	double drift_per_round;	  /* the case's ratio grows by this much each round */
	const double *case_ratio; /* per round (from 1, after the warm-up), or NULL: 1.0 */
	unsigned int nratio;
};

static void synth_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct synth *s = c;
	unsigned int i = s->round;
	double ratio = 1.0 + s->drift_per_round * i;

	if (s->case_ratio && i >= 1 && i - 1 < s->nratio)
		ratio = s->case_ratio[i - 1];
	if (s->calls < 512)
		s->order[s->calls] = arm;
	s->calls++;
	row[arm] = arm ? (uint64_t)(1e6 * ratio * (arm == 2 ? 2 : 1)) : 1000000;
}

/* The arms' sample function advances the round after the last arm of one. */
struct synth_round {
	struct synth s;
	unsigned int narms;
};

static void synth_round_sample(void *c, unsigned int arm, uint64_t *row)
{
	struct synth_round *sr = c;

	synth_sample(&sr->s, arm, row);
	if (sr->s.calls % sr->narms == 0)
		sr->s.round++;
}

static struct bench_report *new_report(struct bench_opts *o, const char *name)
{
	return report_new(name, o);
}

int main(void)
{
	struct bench_opts o = { .json = true, .strict = true };
	struct bench_report *r;
	struct bench_series s;

	t_begin();

	t_section("verdicts and their band");
	{
		double met[7] = { 1.00, 1.02, 0.98, 1.01, 1.03, 0.99, 1.00 };
		double miss[7] = { 1.20, 1.22, 1.18, 1.21, 1.25, 1.19, 1.20 };
		double mid[7] = { 1.00, 1.20, 1.02, 1.18, 1.05, 1.16, 1.10 };
		double nine[9] = { 9, 1, 8, 2, 7, 3, 6, 4, 5 };

		r = new_report(&o, "verdict-met");
		CHECK(report_target_values(r, "met", met, 7, 1.1, false, "<= 1.1") == BENCH_MET);
		CHECK(report_target_values(r, "at_least", met, 7, 0.9, true, ">= 0.9") == BENCH_MET);
		CHECK(report_finish(r) == 0);

		r = new_report(&o, "verdict-missed");
		CHECK(report_target_values(r, "mid", mid, 7, 1.1, false, "<= 1.1") ==
		      BENCH_UNSETTLED);
		CHECK(report_target_values(r, "missed", miss, 7, 1.1, false, "<= 1.1") ==
		      BENCH_MISSED);
		CHECK(report_finish(r) == 1); /* a miss wins over unsettled */

		r = new_report(&o, "verdict-unsettled");
		CHECK(report_target_values(r, "met", met, 7, 1.1, false, "<= 1.1") == BENCH_MET);
		/* min-max below 9 values: 1.0-1.2 holds 1.1 although the median is 1.1 */
		CHECK(report_target_values(r, "mid", mid, 7, 1.15, false, "<= 1.15") ==
		      BENCH_UNSETTLED);
		CHECK(report_finish(r) == 3);

		/* 9 values: the band drops the smallest and the largest (2-8 of 1-9). */
		r = new_report(&o, "verdict-band");
		CHECK(report_target_values(r, "nine_hi", nine, 9, 8, false, "<= 8") == BENCH_MET);
		CHECK(report_target_values(r, "nine_lo", nine, 9, 1.5, false, "<= 1.5") ==
		      BENCH_MISSED);
		CHECK(report_target_values(r, "nine_in", nine, 9, 7.9, false, "<= 7.9") ==
		      BENCH_UNSETTLED);
		CHECK(report_finish(r) == 1);

		/* Without --strict the status stays 0. */
		o.strict = false;
		r = new_report(&o, "verdict-lenient");
		report_target_values(r, "missed", miss, 7, 1.1, false, "<= 1.1");
		CHECK(report_finish(r) == 0);
		o.strict = true;
	}

	t_section("interleaving order");
	{
		struct synth_round sr = { .narms = 2 };

		r = new_report(&o, "order2");
		bench_series_init(&s, "two", 2, 2);
		bench_interleave(r, &s, 5, synth_round_sample, &sr);
		CHECK(s.rounds == 5); /* steady: settled at the minimum */
		CHECK(s.settled && s.drift == 0);
		CHECK(sr.s.calls == 2 * (s.rounds + 1)); /* and one warm-up round */
		for (unsigned int i = 0; i < sr.s.calls; i++)
			CHECK(sr.s.order[i] == ((i / 2) + (i % 2)) % 2); /* 0 1, 1 0, 0 1, ... */
		CHECK(s.ns[0][0] == 1000000 && s.ns[1][0] == 1000000);
		report_finish(r);

		memset(&sr, 0, sizeof(sr));
		sr.narms = 3;
		r = new_report(&o, "order3");
		bench_series_init(&s, "three", 3, 3);
		bench_interleave(r, &s, 4, synth_round_sample, &sr);
		CHECK(s.rounds == 4);
		for (unsigned int i = 0; i < sr.s.calls; i++)
			CHECK(sr.s.order[i] == ((i / 3) + (i % 3)) % 3); /* 012, 120, 201, ... */
		report_finish(r);
	}

	t_section("settling");
	{
		struct synth_round sr = { .narms = 2, .s.drift_per_round = 0.05 };
		struct bench_opts capped = o;

		/* The ratio grows 5% a round: its running median never settles. */
		capped.max_rounds = 12;
		r = new_report(&capped, "drift");
		bench_series_init(&s, "drift", 2, 2);
		bench_interleave(r, &s, 4, synth_round_sample, &sr);
		CHECK(s.rounds == 12 && !s.settled && s.drift > BENCH_SETTLE_TOL);
		report_finish(r);

		/* -n overrides the default minimum; --max-rounds below it is raised to it. */
		memset(&sr, 0, sizeof(sr));
		sr.narms = 2;
		capped.iterations = 6;
		capped.max_rounds = 2;
		r = new_report(&capped, "minimum");
		bench_series_init(&s, "minimum", 2, 2);
		bench_interleave(r, &s, 4, synth_round_sample, &sr);
		CHECK(s.rounds == 6 && s.settled);
		report_finish(r);

		/*
		 * Steady median (1.05) but the watched limit 1.1 sits inside the
		 * band while the outliers 1.3 and 0.8 are in it: rounds go on
		 * until the band drops the extremes (8 rounds: v(1)..v(6)); min-max before.
		 */
		static const double ratios[] = { 1.05, 1.3, 1.05, 0.8, 1.05, 1.05, 1.05,
						 1.05, 1.05, 1.05, 1.05, 1.05 };
		memset(&sr, 0, sizeof(sr));
		sr.narms = 2;
		sr.s.case_ratio = ratios;
		sr.s.nratio = 12;
		r = new_report(&o, "undecided");
		bench_series_init(&s, "undecided", 2, 2);
		s.pair[0].max_ratio = 1.1;
		bench_interleave(r, &s, 5, synth_round_sample, &sr);
		CHECK(s.rounds == 8 && s.settled && s.undecided == 0);
		CHECK(report_series_target(r, &s, 1, 0, "watched", 1.1, false, "<= 1.1") ==
		      BENCH_MET);
		CHECK(report_finish(r) == 0);

		/*
		 * The same watch against a constant (den_ns, an absolute limit):
		 * figure 1 <= 2.2 x 0.5 ms is the same decision, so 8 rounds too;
		 * read against figure 0 (1 ms) it would be met at once (5).
		 */
		memset(&sr, 0, sizeof(sr));
		sr.narms = 2;
		sr.s.case_ratio = ratios;
		sr.s.nratio = 12;
		r = new_report(&o, "absolute");
		bench_series_init(&s, "absolute", 2, 2);
		s.pair[0] = (struct bench_pair){ .num = 1, .max_ratio = 2.2, .den_ns = 0.5e6 };
		bench_interleave(r, &s, 5, synth_round_sample, &sr);
		CHECK(s.rounds == 8 && s.settled && s.undecided == 0);
		report_finish(r);

		/* The same without the watch: it stops at the minimum, and says unsettled. */
		memset(&sr, 0, sizeof(sr));
		sr.narms = 2;
		sr.s.case_ratio = ratios;
		sr.s.nratio = 12;
		r = new_report(&o, "unwatched");
		bench_series_init(&s, "unwatched", 2, 2);
		bench_interleave(r, &s, 5, synth_round_sample, &sr);
		CHECK(s.rounds == 5);
		CHECK(report_series_target(r, &s, 1, 0, "unwatched", 1.1, false, "<= 1.1") ==
		      BENCH_UNSETTLED);
		CHECK(report_finish(r) == 3);
	}
	return t_end();
}
