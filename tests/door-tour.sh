#!/bin/bash
# SPDX-License-Identifier: MIT
# The door act of `make run`: examples/door_tour.c, a program written
# against the kernel's VFIO, iommufd and dma-buf uAPI only, run through
# `p2pbuf exec`, must behave as the kernel does in every step; run bare
# (no door) it must skip rather than touch the host.
# Usage: door-tour.sh PATH/TO/p2pbuf.  Exit 0 pass, 1 fail.
set -u
bin=$1
tour=$(dirname "$bin")/../examples/door-tour
out=$("$bin" exec -q -- "$tour" 2>&1)
rc=$?
if [ $rc != 0 ] || [[ $out != *"ran unmodified on p2pbuf"* ]] || [[ $out == *FAILED* ]]; then
	echo "FAIL: door-tour under p2pbuf exec (exit $rc):"
	echo "$out"
	exit 1
fi
[ "$(grep -c '^    ok:' <<<"$out")" -ge 15 ] || { echo "FAIL: fewer steps than expected:"; echo "$out"; exit 1; }
out=$("$tour" 2>&1)
rc=$?
if [ $rc != 77 ]; then
	echo "FAIL: door-tour without the door: exit $rc, not 77 (skip):"
	echo "$out"
	exit 1
fi
echo "door-tour: ok"
