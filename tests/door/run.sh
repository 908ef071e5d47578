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

for t in sysfs legacy iommufd heap fds bufinfo fstat paths; do
	out=$(timeout 60 "$p2pbuf" exec -q -- "$build/tests/door/door-$t" 2>&1)
	result "$t" $? "$out"
done

# The prefault key: BAR memory resident at creation with it, not without.
cfg=$(mktemp)
for pf in 1 0; do
	echo "gpu 0000:0b:00.0 vram=64M$([ $pf = 1 ] && echo ' prefault')" >"$cfg"
	out=$(timeout 60 "$p2pbuf" exec -q --config "$cfg" -- "$build/tests/door/door-prefault" 0000:0b:00.0 $pf $((64 << 20)) 2>&1)
	result "prefault-$pf" $? "$out"
done
rm -f "$cfg"

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
# No temporary tree left behind by a program that used the door (a private
# $TMPDIR, so that other jobs' trees do not count).
tmp=$(mktemp -d)
TMPDIR=$tmp "$p2pbuf" exec -q -- ls /sys/bus/pci/devices >/dev/null 2>&1
left=$(ls -A "$tmp")
[ -z "$left" ]; result tree-removed $? "left in \$TMPDIR: $left"

# Nor by one killed with SIGKILL while its tree exists: `p2pbuf exec` is
# its parent and removes it; it then dies of the same signal (137).
out=$(TMPDIR=$tmp "$p2pbuf" exec -q -- bash -c \
	'exec 3</sys/bus/pci/devices/0000:01:00.0/vendor; ls -d "$P2PBUF_DOOR_TMPDIR"/p2pbuf-door-$$-*; kill -9 $$' 2>&1)
rc=$?
left=$(ls -A "$tmp")
if [ $rc = 137 ] && [[ $out == "$tmp/p2pbuf-exec-"*"/p2pbuf-door-"* ]] && [ -z "$left" ]; then
	result tree-removed-kill9 0 ""
else
	result tree-removed-kill9 1 "exit $rc (want 137), tree while running: $out, left: $left"
fi
rm -rf "$tmp"

# Exit status and death by signal reproduced exactly; the signals a user
# sends to `p2pbuf exec` reach PROGRAM.
out=$(python3 - "$p2pbuf" <<'PY' 2>&1
import signal, subprocess, sys
p2pbuf = sys.argv[1]
bad = []
def run(*cmd):
    return subprocess.run([p2pbuf, "exec", "-q", "--", *cmd], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=30).returncode
for code in (0, 1, 42, 255):
    r = run("sh", "-c", "exit %d" % code)
    if r != code: bad.append("exit %d: got %d" % (code, r))
for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV, signal.SIGUSR1, signal.SIGABRT):
    r = run("sh", "-c", "kill -%d $$" % sig)
    if r != -sig: bad.append("killed by %s: got %d" % (sig.name, r))
def forwarded(sig, script, want):
    p = subprocess.Popen([p2pbuf, "exec", "-q", "--", "sh", "-c", script], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    ready = p.stdout.readline().strip()
    p.send_signal(sig)
    out, _ = p.communicate(timeout=30)
    if ready != "ready" or p.returncode != want[0] or want[1] not in out:
        bad.append("%s sent to p2pbuf exec: exit %d output %r (want %d, %r)" %
                   (sig.name, p.returncode, ready + out, want[0], want[1]))
loop = "echo ready; while :; do sleep 0.02; done"
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
            signal.SIGUSR2, signal.SIGWINCH):
    forwarded(sig, 'trap "echo got; exit 7" %s; %s' % (sig.name[3:], loop), (7, "got"))
forwarded(signal.SIGTERM, loop, (-signal.SIGTERM, ""))
# Started with SIGHUP ignored (nohup): PROGRAM inherits that, and it is not forwarded.
p = subprocess.Popen([p2pbuf, "exec", "-q", "--", "sh", "-c", "grep SigIgn /proc/self/status; " + loop],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                     preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
ign = int(p.stdout.readline().split()[1], 16)
ready = p.stdout.readline().strip()
p.send_signal(signal.SIGHUP)
try:
    p.wait(timeout=0.5)
    bad.append("SIGHUP ignored by the caller still ended PROGRAM: %d" % p.returncode)
except subprocess.TimeoutExpired:
    p.terminate()
    p.wait(timeout=30)
if not ign & (1 << (signal.SIGHUP - 1)):
    bad.append("PROGRAM does not ignore SIGHUP under nohup: SigIgn %x" % ign)
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
)
result exit-and-signals $? "$out"

# The host's PCI functions are listed with the emulated ones (an emulated
# BDF wins a clash) and read through to the real sysfs.
host=$(ls /sys/bus/pci/devices 2>/dev/null)
if [ -z "$host" ]; then
	result host-pci 77 "SKIP: the host has no PCI functions"
else
	first=$(head -1 <<<"$host")
	want=$(printf '%s\n' $host 0000:01:00.0 0000:02:00.0 0000:03:00.0 | sort -u)
	got=$("$p2pbuf" exec -q -- ls /sys/bus/pci/devices 2>&1)
	why=""
	[ "$got" == "$want" ] || why+="listing: $(diff <(echo "$want") <(echo "$got") | head -5)"$'\n'
	a=$(cat /sys/bus/pci/devices/$first/vendor /sys/bus/pci/devices/$first/class; readlink /sys/bus/pci/devices/$first; realpath /sys/bus/pci/devices/$first/driver 2>&1)
	b=$("$p2pbuf" exec -q -- sh -c "cat /sys/bus/pci/devices/$first/vendor /sys/bus/pci/devices/$first/class; readlink /sys/bus/pci/devices/$first; realpath /sys/bus/pci/devices/$first/driver" 2>&1)
	[ "$a" == "$b" ] || why+="$first reads differently: $a vs $b"$'\n'
	b=$("$p2pbuf" exec -q --device "gpu $first" -- cat /sys/bus/pci/devices/$first/vendor 2>&1)
	[ "$b" == 0x1b36 ] || why+="an emulated $first does not win: vendor $b"$'\n'
	if [ -z "$why" ]; then result host-pci 0 ""; else result host-pci 1 "$why"; fi
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
