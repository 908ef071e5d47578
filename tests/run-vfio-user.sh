#!/bin/bash
# SPDX-License-Identifier: MIT
# `p2pbuf run`'s vfio-user act: the GPU served by `p2pbuf serve` in a second
# process, this process and a second client process exporting its BAR over
# the wire, a reset revoking it in every process, the restore, the server
# stopped.  Each of its steps must report success, and nothing may be left
# behind (server or client processes, the temporary socket directory).
# Usage: run-vfio-user.sh PATH/TO/p2pbuf.  Exit 0 pass, 1 fail, 77 skip.
set -u
bin=$1
before=$(ls -d /tmp/p2pbuf-run-vu-* 2>/dev/null | sort)
out=$("$bin" run --vram 16M 2>&1)
rc=$?
fail=0
expect() { # description, command...
	local what=$1; shift
	if ! "$@"; then echo "FAIL: $what"; fail=1; fi
}
if grep -q "The vfio-user door: skipped" <<<"$out"; then
	echo "SKIP: $(grep -m1 'vfio-user act is skipped' <<<"$out")"
	exit 77
fi
vu=$(printf '%s\n' "$out" | sed -n '/over vfio-user: `p2pbuf serve` in a second process/,/^Summary/p')
expect "exit status 0 (was $rc)" test "$rc" = 0
expect "the vfio-user act ran" test -n "$vu"
for what in "the server listens on DIR/<BDF>" \
	"the server granted the p2pbuf extension" \
	"a dma-buf fd of the served BAR, mmap'd here" \
	"reads back through the IOAS" \
	"client 2 sees the same bytes" \
	"COMMAND.MEM off succeeded" \
	"client 2: its own mapping raises SIGBUS" \
	"this process: the mapping raises SIGBUS" \
	"this process: DMA through the IOAS area faults" \
	"this process acked in time" \
	"COMMAND.MEM on: client 2's own mapping works again" \
	"IOAS: unmap + MAP_FILE at the same IOVA, DMA works again" \
	"client 2 unmapped, disconnected and exited 0" \
	"p2pbuf serve exited 0 and removed its socket" \
	"the dma-buf is revoked for good"; do
	expect "ok: ...$what" bash -c 'grep -F "$2" <<<"$1" | grep -q "^    ok: "' _ "$vu" "$what"
done
expect "the restore: the same mapping or a new export works" \
	grep -qE "ok: (the same mapping works again|a new export maps and works)" <<<"$vu"
expect "six steps" test "$(grep -c '^\[[0-9]*\]' <<<"$vu")" = 6
expect "nothing unexpected" bash -c '! grep -q UNEXPECTED <<<"$1"' _ "$out"
expect "the socket directory is removed" \
	test "$(ls -d /tmp/p2pbuf-run-vu-* 2>/dev/null | sort)" = "$before"
if [ "$fail" != 0 ]; then
	printf '%s\n' "$vu" | head -60
	exit 1
fi
exit 0
