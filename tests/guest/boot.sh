#!/bin/sh
# SPDX-License-Identifier: MIT
# Boot the test guest built by build.sh and report its P2P-GUEST lines.
#
#   tests/guest/boot.sh OUTDIR [extra qemu args...]
#
# e.g. tests/guest/boot.sh out -device vfio-pci,host=0000:01:00.0
# Environment:
#   P2P_APPEND        more kernel command line, e.g. "p2p.gpu=1b36:0110 p2p.ce=1b36:0111"
#   P2P_BOOT_TIMEOUT  seconds before qemu is killed (default 120)
#   P2P_BOOT_LOG      full console log (default OUTDIR/console.log)
#   P2P_QEMU          the qemu binary (default qemu-system-x86_64)
#   P2P_BOOT_INTERACTIVE=1  keep stdin on the console (with P2P_APPEND=p2p.shell=1)
# Exit 0 iff the guest printed "P2P-GUEST: done" and no "P2P-GUEST: FAIL" line.
set -u

die() { echo "boot.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: $0 OUTDIR [extra qemu args...]"
out=$1
shift
[ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.cpio.gz" ] ||
	die "$out/vmlinuz or initramfs.cpio.gz missing: run tests/guest/build.sh $out"
qemu=${P2P_QEMU:-qemu-system-x86_64}
tmo=${P2P_BOOT_TIMEOUT:-120}
log=${P2P_BOOT_LOG:-$out/console.log}

if ! command -v "$qemu" >/dev/null; then
	[ "$(id -u)" = 0 ] || die "$qemu missing: apt-get install qemu-system-x86 (as root)"
	echo "boot.sh: installing qemu-system-x86" >&2
	apt-get install -y -q --no-install-recommends qemu-system-x86 >/dev/null 2>&1 ||
		{ apt-get update -qq && apt-get install -y -q --no-install-recommends \
			qemu-system-x86 >/dev/null; } || die "apt-get install qemu-system-x86 failed"
fi

# memmap=16M$0x8000000 keeps 128-144 MiB of guest RAM from the guest kernel:
# guest-check maps it through /dev/mem as DMA memory (IOVA = guest physical
# address), below the 256 MiB DMA mask of QEMU's edu device.
# no_timer_check: on a loaded host TCG is too slow for the kernel's check of
# the timer interrupt through the IO-APIC, which then panics ("IO-APIC +
# timer doesn't work!").
append="console=ttyS0 panic=-1 nokaslr quiet no_timer_check memmap=16M\$0x8000000 ${P2P_APPEND:-}"

stdin=/dev/null
[ "${P2P_BOOT_INTERACTIVE:-}" = 1 ] && stdin=/dev/stdin
t0=$(date +%s%N)
timeout -k 5 "$tmo" "$qemu" -accel tcg -m 512M -nographic -no-reboot -net none \
	-kernel "$out/vmlinuz" -initrd "$out/initramfs.cpio.gz" -append "$append" \
	"$@" <"$stdin" >"$log" 2>&1
rc=$?
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))

lines=$(tr -d '\r' <"$log" | sed -n 's/.*\(P2P-GUEST: \)/\1/p')
[ -n "$lines" ] && printf '%s\n' "$lines"
ok=1
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
	echo "boot.sh: timeout: qemu killed after ${tmo}s" >&2
	ok=0
elif [ $rc -ne 0 ]; then
	echo "boot.sh: qemu exited with $rc" >&2
	ok=0
fi
printf '%s\n' "$lines" | grep -q '^P2P-GUEST: done$' || { echo "boot.sh: no 'P2P-GUEST: done'" >&2; ok=0; }
printf '%s\n' "$lines" | grep -q '^P2P-GUEST: FAIL' && ok=0
echo "boot.sh: $( [ $ok = 1 ] && echo PASS || echo FAIL ) in ${ms} ms (qemu rc=$rc, log $log)"
if [ $ok = 0 ] && [ -z "$lines" ]; then
	echo "boot.sh: last console lines:" >&2
	tr -d '\r' <"$log" | tail -n 20 >&2
fi
[ $ok = 1 ]
