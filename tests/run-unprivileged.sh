#!/bin/bash
# SPDX-License-Identifier: MIT
# `p2pbuf run` as an unprivileged user: it must say at the start what it
# cannot do and why (no userfaultfd with vm.unprivileged_userfaultfd=0,
# RLIMIT_MEMLOCK too small for io_uring's registered buffers), then behave
# as the kernel does in every step it runs.  As root the binary is copied
# where nobody can run it and run as nobody; as a non-root user it runs as is.
# Usage: run-unprivileged.sh PATH/TO/p2pbuf.  Exit 0 pass, 1 fail, 77 skip.
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$(id -u)" = 0 ]; then
	command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) not found"; exit 77; }
	chmod 755 "$tmp"
	cp "$bin" "$tmp/p2pbuf" && chmod 755 "$tmp/p2pbuf"
	cd "$tmp" || exit 1
	run=(setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/p2pbuf")
else
	run=("$bin")
fi
out=$("${run[@]}" run --vram 16M 2>&1)
rc=$?
fail=0
expect() { # description, command...
	local what=$1; shift
	if ! "$@"; then echo "FAIL: $what"; fail=1; fi
}
before_step1=$(printf '%s\n' "$out" | sed -n '1,/^\[1\]/p')
expect "exit status 0 (was $rc)" test "$rc" = 0
expect "ends with every step behaving as the kernel does" \
	grep -q "all steps behaved as the kernel does" <<<"$out"
uffd=$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null || echo 1)
if [ "$uffd" = 0 ]; then
	expect "the revocation means is named before step 1" \
		grep -q "CPU revocation: remapping to an empty memfd" <<<"$before_step1"
	expect "the missing userfaultfd, why and what to change, before step 1" \
		grep -q "vm.unprivileged_userfaultfd=1" <<<"$before_step1"
fi
memlock=$(ulimit -l)
if [ "$memlock" != unlimited ] && [ "$memlock" -lt $((16 * 1024 + 1024)) ]; then
	expect "RLIMIT_MEMLOCK named before step 1, with the fix" \
		grep -q "ulimit -l" <<<"$before_step1"
	expect "the io_uring checks are skipped, not failed" \
		grep -q "io_uring: skipped" <<<"$out"
fi
expect "nothing unexpected" bash -c '! grep -q UNEXPECTED <<<"$1"' _ "$out"
if [ "$fail" != 0 ]; then
	printf '%s\n' "$out" | head -40
	exit 1
fi
exit 0
