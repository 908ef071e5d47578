#!/bin/sh
# SPDX-License-Identifier: MIT
# The test guest checked on QEMU's own devices, no VFIO needed:
#   plain     the default machine's devices are listed and found, DMA memory works
#   bar+dma   ivshmem-plain's BAR2 as the "gpu" (mmap rw), edu DMAs the
#             guest's DMA memory to its buffer and back
#   hugepage  the same edu DMA from a hugepage found through pagemap
#
#   tests/guest/selftest.sh OUTDIR     (builds OUTDIR first if needed)
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: $0 OUTDIR}
[ -f "$out/initramfs.cpio.gz" ] || "$here/build.sh" "$out" || exit 1
pass=0 fail=0
run() {
	name=$1
	shift
	echo "== $name"
	if P2P_BOOT_LOG="$out/console-$name.log" "$here/boot.sh" "$out" "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
}
# i440fx host bridge, PIIX3 ISA bridge and IDE, std VGA
P2P_APPEND="p2p.expect=8086:1237,8086:7000,8086:7010,1234:1111" run plain
P2P_APPEND="p2p.gpu=1af4:1110 p2p.edu=1234:11e8" run bar+dma \
	-object memory-backend-ram,id=ivm,size=4M -device ivshmem-plain,memdev=ivm -device edu
P2P_APPEND="p2p.dma=hugepage p2p.edu=1234:11e8 p2p.edu.mask=0x1fffffff" run hugepage \
	-device edu,dma_mask=0x1fffffff
echo "guest selftest: $pass passed, $fail failed"
[ $fail -eq 0 ]
