#!/bin/bash
# make check: build and run every test three ways and print one line per
# test and a final "N passed, N failed, N skipped" line.
#   1. gcc, normal build (also builds the examples)
#   2. gcc, ASan + UBSan
#   3. clang, TSan: the threaded tests (stress tests, the devices' worker
#      threads, revoke across threads, the chaos test)
#   4. clang libFuzzer targets (build-fuzz): each replays its corpus, then
#      fuzzes a few seconds (scripts/fuzz.sh --check, FUZZ_CHECK_TIME)
# It also compiles everything with clang -Werror, so both compilers stay clean.
# test-chaos runs for CHAOS_SECONDS (5 s by default) in each build.
set -u
cd "$(dirname "$0")/.."
jobs=$(nproc)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

setup() { # dir, extra meson args...
	local dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >"$log" 2>&1 || { cat "$log"; exit 2; }
	fi
	ninja -C "$dir" -j "$jobs" >"$log" 2>&1 || { cat "$log"; echo "build in $dir failed"; exit 2; }
}

echo "== building (gcc), (gcc ASan+UBSan), (clang TSan), (clang -Werror)"
setup build
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
CC=clang setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debugoptimized
CC=clang setup build-clang

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allow_user_segv_handler=1:handle_sigbus=0:handle_segv=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0

pass=0 fail=0 skip=0
# run_one LABEL NAME COMMAND...: run it with a timeout, print one result line, count it.
run_one() {
	local label=$1 name=$2 start out rc secs
	shift 2
	start=$EPOCHREALTIME
	out=$(timeout 600 "$@" 2>&1)
	rc=$?
	secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	case $rc in
	0) pass=$((pass + 1)); echo "PASS $label $name (${secs}s)" ;;
	77) skip=$((skip + 1)); echo "SKIP $label $name: $(echo "$out" | grep -m1 SKIP | sed 's/^SKIP: //')" ;;
	*)
		fail=$((fail + 1))
		echo "FAIL $label $name (exit $rc, ${secs}s)"
		echo "$out" | tail -30 | sed 's/^/    /'
		# The whole output (a TSan report is longer than 30 lines): kept.
		mkdir -p build/check-logs
		printf '%s\n' "$out" >"build/check-logs/$label-$name.log"
		echo "    full output: build/check-logs/$label-$name.log"
		;;
	esac
}

run_dir() { # build dir, label, filter regex
	local dir=$1 label=$2 filter=$3 t name
	for t in "$dir"/tests/test-* "$dir"/examples/example-*; do
		[ -f "$t" ] && [ -x "$t" ] || continue
		name=$(basename "$t")
		[[ $name =~ $filter ]] || continue
		run_one "$label" "$name" "$t"
	done
}

run_dir build gcc '.'
# CPU revocation without userfaultfd (remapping to an empty memfd), forced.
P2PBUF_CPU_REVOKE=remap run_dir build gcc,remap '^test-(dmabuf-mmap|revoke-triggers|multi-range|vfio-regions|hot-reset|stress-revoke|revoke-zap)$'
# The chaos test across processes, short (make chaos runs it long).
CHAOS_SECONDS=2 run_one gcc chaos-vu build/tests/chaos-vu
# Whole-program tests of the CLI, as a user runs it.
for t in tests/*.sh; do
	run_one cli "$(basename "$t" .sh)" bash "$t" build/tools/p2pbuf
done
# Kernel-uAPI programs under p2pbuf exec, and pass-through (tests/door/run.sh).
run_one door door-tests bash tests/door/run.sh build
run_dir build-asan asan+ubsan '.'
run_dir build-tsan tsan '^test-(stress|copy-engine|storage|ioas-revoke|uring|chaos|fork|mem-populate|vfio-user|ioas-callback|pci-backend)'

fuzz_out=$(./scripts/fuzz.sh --check 2>&1)
fuzz_rc=$?
while read -r line; do
	echo "$line"
	case $line in
	PASS*) pass=$((pass + 1)) ;;
	FAIL*) fail=$((fail + 1)) ;;
	SKIP*) skip=$((skip + 1)) ;;
	esac
done <<<"$fuzz_out"
if [ "$fuzz_rc" = 2 ]; then
	fail=$((fail + 1))
	echo "FAIL fuzz: build-fuzz did not build"
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
