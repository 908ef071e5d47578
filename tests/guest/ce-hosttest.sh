#!/bin/sh
# SPDX-License-Identifier: MIT
# The guest's copy-engine driver against p2pbuf's copy engine, on the host
# (see ce-hosttest.c): checks ce_regs.h against include/p2pbuf/devices.h at
# compile time and the ring protocol at run time.
#
#   tests/guest/ce-hosttest.sh [BUILDDIR]     (default: build, made by `make`)
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
b=${1:-$repo/build}
[ -f "$b/build.ninja" ] || make -C "$repo" >/dev/null
ninja -C "$b" libp2pbuf.a >/dev/null
gcc -O2 -Wall -Wextra -Werror -I"$repo/include" -o "$b/ce-hosttest" \
	"$repo/tests/guest/ce-hosttest.c" "$repo/tests/guest/ce_guest.c" \
	"$b/libp2pbuf.a" -luring -lpthread
exec "$b/ce-hosttest"
