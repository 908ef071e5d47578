#!/bin/bash
# Run the libFuzzer targets of fuzz/ (docs/fuzzing.md).
#   scripts/fuzz.sh [--check] [target...]
# --check (make check): replay each target's corpus, then fuzz for
#   FUZZ_CHECK_TIME seconds (default 4); one PASS/FAIL line per target.
# otherwise (make fuzz): fuzz FUZZ_TIME seconds per target (default 300),
#   keeping what it finds in build-fuzz/work/<target>/, and print exec/s
#   and coverage (cov: edges, ft: features) per target.
# Crashes land in build-fuzz/artifacts/.  Builds build-fuzz (clang,
# -Dfuzz=true, ASan+UBSan) when needed.  Exit status: 0 if all passed.
set -u
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = --check ]; then
	check=1
	shift
fi
targets=${*:-vfio-ioctl vfio-ops iommufd heap devices uring door-config vfio-user vfio-user-token}
dir=build-fuzz

if [ -z "$(find /usr/lib/llvm-* -name 'libclang_rt.fuzzer-x86_64.a' 2>/dev/null | head -1)" ] ||
	! command -v clang >/dev/null; then
	echo "SKIP fuzz: no clang libFuzzer runtime (scripts/deps.sh installs libclang-rt-dev)"
	exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ ! -f $dir/build.ninja ]; then
	CC=clang meson setup $dir -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debugoptimized >"$log" 2>&1 || { cat "$log"; exit 2; }
fi
ninja -C $dir -j "$(nproc)" >"$log" 2>&1 || { cat "$log"; echo "build in $dir failed"; exit 2; }

# Library crashes must reach libFuzzer; leaks are checked per input.
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p $dir/artifacts
rc=0
for t in $targets; do
	bin=$dir/fuzz/fuzz-$t
	corpus=fuzz/corpus/$t
	if [ $check = 1 ]; then
		secs=${FUZZ_CHECK_TIME:-4}
		# A fixed seed: make check replays the same inputs every run (on a
		# fast machine a few more); make fuzz explores with fresh seeds.
		seed=-seed=${FUZZ_CHECK_SEED:-1}
		work=$(mktemp -d)
	else
		seed=
		secs=${FUZZ_TIME:-300}
		work=$dir/work/$t
		mkdir -p "$work"
	fi
	start=$EPOCHREALTIME
	out=$dir/fuzz-$t.log
	# 1. every corpus input once; 2. fuzz from the corpus.
	"$bin" -runs=0 -artifact_prefix=$dir/artifacts/$t- "$corpus" >"$out" 2>&1 &&
		"$bin" -max_total_time="$secs" $seed -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 \
			-artifact_prefix=$dir/artifacts/$t- "$work" "$corpus" >>"$out" 2>&1
	status=$?
	[ $check = 1 ] && rm -rf "$work"
	took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$out" | tail -1)
	cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$done_line")
	ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$done_line")
	eps=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$out" | tail -1)
	runs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$out" | tail -1)
	if [ $status = 0 ]; then
		echo "PASS fuzz $t (cov: $cov ft: $ft, $eps exec/s, $runs runs, ${took}s)"
	else
		rc=1
		echo "FAIL fuzz $t (exit $status, ${took}s; log $out, inputs in $dir/artifacts/)"
		grep -E 'invariant broken|ERROR|SUMMARY|Test unit written' "$out" | head -8 | sed 's/^/    /'
	fi
done
exit $rc
