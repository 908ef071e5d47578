#!/bin/sh
# Install the Debian packages p2pbuf needs, when they are missing.
# As root it runs apt-get; otherwise it names what to install and fails.
set -e
need=""
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pc() { pkg-config --exists "$1" 2>/dev/null; }

have_cmd meson || need="$need meson"
have_cmd ninja || need="$need ninja-build"
have_cmd pkg-config || need="$need pkg-config"
have_cmd gcc || need="$need gcc"
have_cmd clang || need="$need clang"
have_pc liburing || need="$need liburing-dev"
have_pc json-c || need="$need libjson-c-dev"
# tests/qemu-vfio.sh: Debian's QEMU runs a guest under p2pbuf exec (the guest
# itself is built from .debs fetched with apt-get download, not installed).
have_cmd qemu-system-x86_64 || need="$need qemu-system-x86"
# p2pbuf bench --plot (and tests/bench-plot.sh) draw with gnuplot.
have_cmd gnuplot || need="$need gnuplot-nox"
# ASan/UBSan come with gcc; the TSan build uses clang, whose runtimes are only
# recommended by the clang package: ask for them explicitly.
# libFuzzer (make fuzz, the fuzz part of make check) is in the same package
# (libclang-rt-14-dev on Debian 12, through libclang-rt-dev).
if [ -z "$(find /usr/lib/llvm-* -name 'libclang_rt.tsan-x86_64.a' 2>/dev/null | head -1)" ] ||
	[ -z "$(find /usr/lib/llvm-* -name 'libclang_rt.fuzzer-x86_64.a' 2>/dev/null | head -1)" ]; then
	need="$need libclang-rt-dev"
fi

[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "p2pbuf: missing Debian packages:$need (run as root, or: apt-get install$need)" >&2
	exit 1
fi
echo "p2pbuf: installing missing Debian packages:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null
echo "p2pbuf: packages installed"
