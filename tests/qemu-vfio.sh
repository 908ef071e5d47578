#!/bin/bash
# SPDX-License-Identifier: MIT
# A real VMM on p2pbuf's devices: Debian's QEMU (qemu-system-x86, 7.2, the
# legacy VFIO container API) runs under `p2pbuf exec` with the GPU-like
# function and the copy engine of the default configuration assigned
# (-device vfio-pci,host=...), boots the test guest (tests/guest: Debian's
# kernel and a busybox initramfs, TCG) and the guest checks:
#   - both functions are there with their IDs, classes and BARs;
#   - it writes and reads the GPU's 256 MiB BAR2 through its mmap;
#   - it drives the copy engine through BAR0: RAM -> RAM, RAM -> GPU BAR2
#     (peer to peer: QEMU maps the BAR mmap into the container with
#     VFIO_IOMMU_MAP_DMA at its guest physical address) and GPU BAR2 -> RAM,
#     and compares the data.
# Then the host checks what the guest left behind, through QEMU's monitor
# (`xp`, reading guest physical memory, i.e. QEMU's mapping of the BAR
# region and of guest RAM): the guest's pattern at the head and tail of
# BAR2, and the copy engine's BAR2 -> RAM copy in guest RAM.
#
#   tests/qemu-vfio.sh build/tools/p2pbuf
#
# The guest is built from Debian packages (apt-get download, cached in
# BUILD/qemu-guest); qemu-system-x86 is installed with apt-get when missing
# and root (scripts/deps.sh lists it too).  Exit 77 only when the packages
# cannot be had.  P2P_QEMU_TIMEOUT (default 150 s) bounds the boot.
set -u
cd "$(dirname "$0")/.."
p2pbuf=${1:-build/tools/p2pbuf}
builddir=$(cd "$(dirname "$p2pbuf")/.." && pwd)
p2pbuf=$(cd "$(dirname "$p2pbuf")" && pwd)/$(basename "$p2pbuf")
guest=${P2P_GUEST_DIR:-$builddir/qemu-guest}
tmo=${P2P_QEMU_TIMEOUT:-150}
qemu=qemu-system-x86_64

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [ -n "${log:-}" ] && [ -f "$log" ] && tr -d '\r' <"$log" | tail -n 25; exit 1; }

[ -x "$p2pbuf" ] || fail "$p2pbuf missing (run make)"

# 1. QEMU.
if ! command -v "$qemu" >/dev/null; then
	[ "$(id -u)" = 0 ] || skip "qemu-system-x86 is not installed and we are not root to install it"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 &&
		  apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null 2>&1; } ||
		skip "apt-get install qemu-system-x86 failed"
	command -v "$qemu" >/dev/null || skip "qemu-system-x86 installed but no $qemu"
fi

# 2. The guest (rebuilt when its sources changed).
stale=1
if [ -f "$guest/initramfs.cpio.gz" ] && [ -f "$guest/vmlinuz" ] &&
	[ -z "$(find tests/guest/build.sh tests/guest/init tests/guest/guest-check.c \
		tests/guest/ce_guest.c tests/guest/ce_guest.h tests/guest/ce_regs.h \
		-newer "$guest/initramfs.cpio.gz" 2>/dev/null)" ]; then
	stale=0
fi
if [ $stale = 1 ]; then
	if ! out=$(tests/guest/build.sh "$guest" 2>&1); then
		echo "$out" | tail -n 5
		if echo "$out" | grep -qE 'apt-get (download .* failed|update failed)'; then
			skip "cannot download the guest's Debian packages"
		fi
		fail "tests/guest/build.sh failed"
	fi
fi

# 3. Boot under the door, with a monitor on a pipe for the host's checks.
tmp=$(mktemp -d)
cleanup() {
	[ -n "${bootpid:-}" ] && kill "$bootpid" 2>/dev/null
	exec 3>&- 4<&- 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
log=$tmp/console.log
mkfifo "$tmp/mon.in" "$tmp/mon.out" || fail "mkfifo"
# Only QEMU runs under the door (boot.sh runs "$P2P_QEMU" with the args).
# -m 256M (the last -m wins) halves boot.sh's guest RAM: VFIO_IOMMU_MAP_DMA
# faults all of it in at start, as the kernel's type1 pins it (about 1.5 s
# of CPU for 512 MiB here); the guest's DMA memory is at 128-144 MiB.
cat >"$tmp/qemu" <<EOF
#!/bin/sh
exec "$p2pbuf" exec -- $qemu "\$@"
EOF
chmod +x "$tmp/qemu"

t0=$(date +%s%N)
# boot.sh's status goes to a file: bash forgets a reaped child's status when
# it forks another child that gets the same pid (wait: "not a child of this
# shell", exit 127), and pid_max wraps fast on a busy machine.
{
	P2P_QEMU=$tmp/qemu P2P_BOOT_LOG=$log P2P_BOOT_TIMEOUT=$tmo \
	P2P_APPEND="p2p.expect=1b36:0110,1b36:0111 p2p.gpu=1b36:0110 p2p.ce=1b36:0111 p2p.cetest=1" \
		tests/guest/boot.sh "$guest" -m 256M \
		-device vfio-pci,host=0000:01:00.0 -device vfio-pci,host=0000:02:00.0 \
		-no-shutdown -chardev pipe,id=mon0,path="$tmp/mon" -mon chardev=mon0
	echo $? >"$tmp/boot.rc"
} >"$tmp/boot.out" 2>&1 &
bootpid=$!

# Wait for the guest to finish (it powers off; -no-shutdown keeps QEMU for
# the monitor), for a panic, or for QEMU to go away.
deadline=$(( $(date +%s) + tmo ))
while :; do
	if ! kill -0 "$bootpid" 2>/dev/null; then
		break
	fi
	if [ -f "$log" ] && grep -qE 'reboot: (Power down|Restarting)|Kernel panic|P2P-GUEST: FAIL guest-check' "$log"; then
		break
	fi
	[ "$(date +%s)" -ge "$deadline" ] && break
	sleep 0.2
done
t1=$(date +%s%N)

gl() { tr -d '\r' <"$log" | sed -n 's/.*\(P2P-GUEST: \)/\1/p'; }
lines=$(gl)

# 4. The host's look, while QEMU is still there.
hostcheck=""
if kill -0 "$bootpid" 2>/dev/null; then
	# Opened without blocking even if QEMU is gone meanwhile: read-write
	# first, then the read-only end that sees EOF once QEMU has quit.
	exec 5<>"$tmp/mon.out" 4<"$tmp/mon.out" 3<>"$tmp/mon.in" 5>&-
	gpu=$(printf '%s\n' "$lines" | grep -m1 '^P2P-GUEST: gpu .* bar2 addr=')
	back=$(printf '%s\n' "$lines" | grep -m1 '^P2P-GUEST: ce .* copy=gpu-ram .*status=ok')
	bar=$(echo "$gpu" | sed -n 's/.* addr=\(0x[0-9a-f]*\).*/\1/p')
	size=$(echo "$gpu" | sed -n 's/.* size=\([0-9]*\).*/\1/p')
	rwb=$(echo "$gpu" | sed -n 's/.* bytes=\([0-9]*\).*/\1/p')
	dst=$(echo "$back" | sed -n 's/.* dst=\(0x[0-9a-f]*\).*/\1/p')
	len=$(echo "$back" | sed -n 's/.* bytes=\([0-9]*\).*/\1/p')
	checks=()
	if [ -n "$bar" ] && [ -n "$size" ] && [ -n "$rwb" ]; then
		head=$(( rwb - 4096 )) # bytes= counts the head and the last 4 KiB
		# guest-check's tags: 1 at BAR offset 0.., 2 in the last 4 KiB.
		checks+=("$bar 1 0" "$(( bar + head - 8 )) 1 $(( head - 8 ))"
			 "$(( bar + size - 4096 )) 2 $(( size - 4096 ))" "$(( bar + size - 8 )) 2 $(( size - 8 ))")
	fi
	if [ -n "$dst" ] && [ -n "$len" ]; then
		# The gpu-ram copy: tag 7 from the copy's start, written to RAM by the engine.
		checks+=("$dst 7 0" "$(( dst + len / 2 )) 7 $(( len / 2 ))" "$(( dst + len - 8 )) 7 $(( len - 8 ))")
	fi
	for c in "${checks[@]}"; do
		set -- $c
		printf 'xp /1gx 0x%x\n' "$1" >&3
	done
	echo quit >&3
	exec 3>&-
	mon=$(timeout 20 cat <&4 | tr -d '\r')
	exec 4<&-
	nok=0 nbad=0
	for c in "${checks[@]}"; do
		set -- $c
		# README's pattern (bash arithmetic wraps at 64 bits as C's uint64_t).
		want=$(printf '0x%016x' $(( 0x5032502d47554553 ^ ($2 << 56) ^ (($3 / 8 + 1) * 0x9e3779b97f4a7c15) )))
		got=$(printf '%s\n' "$mon" | sed -n "s/^0*$(printf '%x' "$1"): \(0x[0-9a-f]*\).*/\1/p" | tail -n1)
		if [ "$got" = "$want" ]; then
			nok=$((nok + 1))
		else
			nbad=$((nbad + 1))
			hostcheck="$hostcheck addr=$(printf '0x%x' "$1") got=${got:-none} want=$want;"
		fi
	done
	[ ${#checks[@]} -gt 0 ] && [ $nbad = 0 ] && hostcheck=ok
	echo "host: monitor xp: $nok of ${#checks[@]} words as the guest left them"
fi
wait "$bootpid" 2>/dev/null
bootrc=$(cat "$tmp/boot.rc" 2>/dev/null || echo "none (killed)")
bootpid=
ms=$(( (t1 - t0) / 1000000 ))
cat "$tmp/boot.out"
echo "qemu-vfio: guest done in ${ms} ms (boot.sh rc=$bootrc)"

# 5. What must be there.
need() { printf '%s\n' "$lines" | grep -qE "$1" || fail "no guest line matching: $1"; }
[ "$bootrc" = 0 ] || fail "boot.sh failed (rc $bootrc)"
need '^P2P-GUEST: pci [0-9a-f:.]+ id=1b36:0110 class=0x030200 bar0=0x[0-9a-f]+,0x4000,mem32 bar2=0x[0-9a-f]+,0x10000000,mem64pf$'
need '^P2P-GUEST: pci [0-9a-f:.]+ id=1b36:0111 class=0x088000 bar0=0x[0-9a-f]+,0x1000,mem32$'
need '^P2P-GUEST: expect 1b36:0110 at '
need '^P2P-GUEST: expect 1b36:0111 at '
need '^P2P-GUEST: gpu [0-9a-f:.]+ id=1b36:0110 bar2 addr=0x[0-9a-f]+ size=268435456 rw=ok '
need '^P2P-GUEST: ce [0-9a-f:.]+ id=1b36:0111 reg.id=0x45433250 '
need '^P2P-GUEST: ce [0-9a-f:.]+ copy=ram-ram .* status=ok'
need '^P2P-GUEST: ce [0-9a-f:.]+ copy=ram-gpu .* status=ok'
need '^P2P-GUEST: ce [0-9a-f:.]+ copy=gpu-ram .* status=ok'
need '^P2P-GUEST: summary pass=[0-9]+ fail=0$'
need '^P2P-GUEST: done$'
printf '%s\n' "$lines" | grep -q '^P2P-GUEST: FAIL' && fail "a guest check failed"
[ "$hostcheck" = ok ] || fail "host check of BAR2 and guest RAM:${hostcheck:- not done}"
echo "PASS: QEMU 7.2 under p2pbuf exec: devices, BAR2 rw, copy engine RAM<->BAR2 (guest and host checked) in ${ms} ms"
