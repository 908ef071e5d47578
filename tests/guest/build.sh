#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the test guest: OUTDIR/vmlinuz and OUTDIR/initramfs.cpio.gz.
#
#   tests/guest/build.sh OUTDIR
#
# Everything comes from Debian packages fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` (nothing is installed on the host):
#   linux-image-*-cloud-amd64  the kernel (P2P_GUEST_KERNEL_PKG=linux-image-amd64
#                              for the generic one)
#   busybox-static             the guest's userland (/init is a busybox script)
# plus tests/guest/guest-check.c built here with `gcc -static -O2`.
# The .debs are kept in OUTDIR/debs and reused (P2P_GUEST_REFRESH=1 refetches);
# the rest is rebuilt on every run, so running it twice gives the same result.
set -eu

die() { echo "build.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 OUTDIR"
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
debs=$out/debs
meta=${P2P_GUEST_KERNEL_PKG:-linux-image-cloud-amd64}
mkdir -p "$debs"
# apt-get download runs as _apt when it can; let it write here.
chmod 0777 "$debs" 2>/dev/null || true

command -v gcc >/dev/null || die "gcc missing (apt-get install gcc libc6-dev)"
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || die "static glibc missing (apt-get install libc6-dev)"

updated=
apt_update_once() {
	[ -n "$updated" ] && return 1
	updated=1
	echo "build.sh: apt-get update (a download failed)" >&2
	apt-get update -qq >&2 || die "apt-get update failed (run as root?)"
}

# fetch PKG: OUTDIR/debs/PKG_*.deb, downloaded unless already there.
fetch() {
	if [ -z "${P2P_GUEST_REFRESH:-}" ] && ls "$debs/$1"_*.deb >/dev/null 2>&1; then
		return 0
	fi
	rm -f "$debs/$1"_*.deb
	until (cd "$debs" && apt-get download -q "$1" >/dev/null 2>"$debs/apt.err"); do
		cat "$debs/apt.err" >&2
		apt_update_once || die "apt-get download $1 failed"
	done
}

# The versioned kernel package is the dependency of the meta package
# (read from the meta .deb itself, so no apt-cache state is needed).
fetch "$meta"
kpkg=$(dpkg-deb -f "$(ls "$debs/$meta"_*.deb | tail -n1)" Depends |
	tr ',|' '\n\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
[ -n "$kpkg" ] || die "no linux-image dependency in $meta"
fetch "$kpkg"
fetch busybox-static

work=$out/work
rm -rf "$work"
mkdir -p "$work/kernel" "$work/busybox"
dpkg-deb -x "$(ls "$debs/$kpkg"_*.deb | tail -n1)" "$work/kernel"
dpkg-deb -x "$(ls "$debs"/busybox-static_*.deb | tail -n1)" "$work/busybox"
cp "$work/kernel"/boot/vmlinuz-* "$out/vmlinuz"
cp "$work/kernel"/boot/config-* "$out/kernel.config"
bb=$work/busybox/bin/busybox

# The guest's needs from the kernel, all built in (no modules in the initramfs).
for opt in PCI SERIAL_8250_CONSOLE BLK_DEV_INITRD RD_GZIP DEVTMPFS DEVMEM PROC_PAGE_MONITOR \
	   MAGIC_SYSRQ; do
	grep -q "^CONFIG_$opt=y" "$out/kernel.config" || die "$kpkg lacks CONFIG_$opt=y"
done

# guest-check: one static binary.
gcc -static -O2 -Wall -Wextra -o "$work/guest-check" "$here/guest-check.c" "$here/ce_guest.c"

root=$work/root
mkdir -p "$root/bin" "$root/sbin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp"
cp "$bb" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$work/guest-check" "$root/bin/guest-check"
cp "$here/init" "$root/init"
chmod 0755 "$root/init" "$root/bin/guest-check"
# A console node for the kernel's first open, when we may create one; /init
# reopens /dev/console from devtmpfs anyway.
mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null || true
(cd "$root" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc 2>/dev/null) |
	gzip -9n >"$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
echo "$kpkg" >"$out/kernel.pkg"
rm -rf "$work"
echo "build.sh: $out/vmlinuz ($kpkg), $out/initramfs.cpio.gz" \
     "($(wc -c <"$out/initramfs.cpio.gz") bytes)"
