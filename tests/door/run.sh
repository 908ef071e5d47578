#!/bin/bash
# Run the tests/door programs under `p2pbuf exec`, and check that a program
# that touches no emulated device behaves exactly as without the door.
#   tests/door/run.sh [BUILD_DIR]        (default build)
# One line per test, then "N passed, N failed, N skipped"; exit 1 on a failure.
set -u
cd "$(dirname "$0")/../.."
build=${1:-build}
p2pbuf=$build/tools/p2pbuf
pass=0 fail=0 skip=0

result() { # name rc output
	case $2 in
	0) pass=$((pass + 1)); echo "PASS door $1" ;;
	77) skip=$((skip + 1)); echo "SKIP door $1: $(echo "$3" | grep -m1 SKIP | sed 's/^SKIP: //')" ;;
	*) fail=$((fail + 1)); echo "FAIL door $1 (exit $2)"; echo "$3" | tail -20 | sed 's/^/    /' ;;
	esac
}

for t in sysfs legacy iommufd heap fds bufinfo; do
	out=$(timeout 60 "$p2pbuf" exec -q -- "$build/tests/door/door-$t" 2>&1)
	result "$t" $? "$out"
done

# As a user without privilege: `p2pbuf exec` says first what it cannot do
# and why, then the programs work (revocation by remapping when the user has
# no userfaultfd).  As root: the binaries and the library are copied where
# nobody can read them and run as nobody (as tests/run-unprivileged.sh).
unprivileged() {
	local tmp="" out rc uffd iou t why=""
	local run=("$p2pbuf") dir=$build
	if [ "$(id -u)" = 0 ]; then
		command -v setpriv >/dev/null || { result unprivileged 77 "SKIP: setpriv (util-linux) not found"; return; }
		tmp=$(mktemp -d)
		mkdir -p "$tmp/tools" "$tmp/src/door" "$tmp/tests/door"
		cp "$p2pbuf" "$tmp/tools/" && cp "$build/src/door/libp2pbuf-preload.so" "$tmp/src/door/" &&
			cp "$build"/tests/door/door-{heap,sysfs,iommufd} "$tmp/tests/door/"
		chmod -R a+rX "$tmp"
		run=(setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/tools/p2pbuf")
		dir=$tmp
	fi
	uffd=$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null || echo 1)
	iou=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)
	for t in heap sysfs iommufd; do
		out=$(cd / && timeout 60 "${run[@]}" exec -- "$dir/tests/door/door-$t" 2>&1)
		rc=$?
		[ $rc = 0 ] || why+="door-$t exit $rc: $(tail -5 <<<"$out")"$'\n'
		# What it cannot do comes first, before the program says anything.
		[[ $out == "p2pbuf exec: note:"* ]] || why+="door-$t: the notes do not come first"$'\n'
		grep -q "^p2pbuf exec: note: not root: the door needs no privilege" <<<"$out" ||
			why+="door-$t: no not-root note"$'\n'
		if [ "$uffd" = 0 ]; then
			grep -q "no userfaultfd for this user (vm.unprivileged_userfaultfd=0)" <<<"$out" &&
				grep -q "remapped to an empty memfd" <<<"$out" &&
				grep -q "sysctl vm.unprivileged_userfaultfd=1" <<<"$out" ||
				why+="door-$t: no userfaultfd note with its reason and fix"$'\n'
		fi
		if [ "$iou" != 0 ]; then
			grep -q "io_uring is unavailable" <<<"$out" && grep -q "kernel.io_uring_disabled" <<<"$out" ||
				why+="door-$t: no io_uring note with its reason and fix"$'\n'
		fi
		grep -q "door-$t: ok" <<<"$out" || why+="door-$t did not finish"$'\n'
	done
	# -q: nothing but the program's own output.
	out=$(cd / && timeout 60 "${run[@]}" exec -q -- "$dir/tests/door/door-heap" 2>&1)
	[ "$out" = "door-heap: ok" ] || why+="-q still prints: $out"$'\n'
	[ -n "$tmp" ] && rm -rf "$tmp"
	if [ -z "$why" ]; then result unprivileged 0 ""; else result unprivileged 1 "$why"; fi
}
unprivileged

# Pass-through: same stdout and exit status with and without the door.
same() { # name command...
	local name=$1 a b ra rb
	shift
	a=$("$@" 2>&1); ra=$?
	b=$("$p2pbuf" exec -q -- "$@" 2>&1); rb=$?
	if [ "$a" == "$b" ] && [ $ra == $rb ]; then
		result "passthrough-$name" 0 ""
	else
		result "passthrough-$name" 1 "exit $ra vs $rb; diff:
$(diff <(echo "$a") <(echo "$b") | head -10)"
	fi
}
same ls-dev ls -l /dev
same ls-sys ls -l /sys/bus /sys/class /sys/devices
same status sh -c 'grep -E "^(Name|Umask|State|Uid|Gid|Groups|Seccomp|Cpus_allowed_list|NoNewPrivs):" /proc/self/status'
same python python3 -c 'import os, sys; print(sorted(os.listdir("/etc"))[:20], os.stat("/etc/passwd").st_size); sys.exit(3)'
same exit-status sh -c 'exit 42'
same missing cat /nonexistent/file
same stdin sh -c 'echo hello | tr a-z A-Z | wc -c'

# A bad configuration stops the program before it starts: one line, exit 2.
conf=$(mktemp)
printf 'gpu 0000:01:00.0\ngpu 0000:04:00.0 bar2=3M\n' >"$conf"
out=$("$p2pbuf" exec --config "$conf" -- sh -c 'echo started' 2>&1); rc=$?
rm -f "$conf"
if [ $rc == 2 ] && [ "$(echo "$out" | wc -l)" == 1 ] && [[ $out == *":2: bar2: size 3145728 is not a power of two" ]]; then
	result bad-config 0 ""
else
	result bad-config 1 "exit $rc: $out"
fi
# The same through the environment the library reads (no p2pbuf exec).
out=$(P2PBUF_DOOR_DEVICES='gpu 0000:01:00.0' LD_PRELOAD=$build/src/door/libp2pbuf-preload.so sh -c 'echo started' 2>&1); rc=$?
if [ $rc == 2 ] && [[ $out == *"--device:1: 0000:01:00.0 is already used"* ]] && [[ $out != *started* ]]; then
	result bad-config-env 0 ""
else
	result bad-config-env 1 "exit $rc: $out"
fi
# No temporary tree left behind by a program that used the door.
before=$(ls -d "${TMPDIR:-/tmp}"/p2pbuf-door-* 2>/dev/null | wc -l)
"$p2pbuf" exec -q -- ls /sys/bus/pci/devices >/dev/null 2>&1
after=$(ls -d "${TMPDIR:-/tmp}"/p2pbuf-door-* 2>/dev/null | wc -l)
[ "$before" == "$after" ]; result tree-removed $? "p2pbuf-door-* dirs: $before before, $after after"

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
