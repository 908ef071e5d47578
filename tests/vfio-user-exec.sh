#!/bin/bash
# p2pbuf exec --connect: kernel-uAPI programs (tests/door/remote.c) on
# devices served by `p2pbuf serve` in another process.
#   tests/vfio-user-exec.sh [PATH_TO_P2PBUF]      (default build/tools/p2pbuf)
# 1. one program maps the served GPU's BAR2 and writes a pattern; 2. another
# (two --connect) sees it, drives the copy engine served on its own socket
# to DMA between its memory (fd-backed and anonymous) and into a dma-buf of
# the GPU's BAR2, and a reset revokes that; examples/door-tour runs on the
# served GPU; 3. the server is killed while a
# program holds the GPU: the function is removed.  Exit 0 pass, 1 fail,
# 77 skip.
set -u
cd "$(dirname "$0")/.."
p2pbuf=${1:-build/tools/p2pbuf}
build=$(dirname "$(dirname "$p2pbuf")")
prog=$build/tests/door/door-remote
[ -x "$prog" ] || { echo "SKIP: $prog not built"; exit 77; }
dir=$(mktemp -d)
srv=
cleanup() {
	[ -n "$srv" ] && { kill -9 "$srv"; wait "$srv"; } 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

cat >"$dir/devices.conf" <<C
gpu 0000:01:00.0 group=1 bar0=16K bar2=4M,64,pf
copy-engine 0000:02:00.0 group=2
C
start_server() {
	rm -f "$dir/0000:01:00.0" "$dir/0000:02:00.0"
	"$p2pbuf" serve --config "$dir/devices.conf" --socket-dir "$dir" >"$dir/serve.log" 2>&1 &
	srv=$!
	for _ in $(seq 200); do
		[ -S "$dir/0000:02:00.0" ] && return 0
		sleep 0.02
	done
	echo "FAIL: p2pbuf serve did not start: $(cat "$dir/serve.log")"
	exit 1
}
start_server
gpu=$dir/0000:01:00.0 ce=$dir/0000:02:00.0

# Usage errors before anything runs.
out=$("$p2pbuf" exec -q --connect "$dir/nothing" -- true 2>&1)
[ $? = 2 ] && grep -q "nothing" <<<"$out" || bad "--connect of a missing socket: not exit 2 ($out)"
out=$("$p2pbuf" exec -q --connect "$dir/devices.conf" -- true 2>&1)
[ $? = 2 ] && grep -q "not a socket" <<<"$out" || bad "--connect of a file: not exit 2 ($out)"

out=$(timeout 60 "$p2pbuf" exec -q --connect "$gpu" -- "$prog" write 5 2>&1) ||
	bad "write: $out"
out=$(timeout 60 "$p2pbuf" exec -q --connect "$gpu" --connect "$ce" -- "$prog" dma 5 2>&1) ||
	bad "dma: $out"
out=$(timeout 60 "$p2pbuf" exec -q --connect "$gpu" -- "$prog" check 2>&1) ||
	bad "check: $out"
# The README's example: the tour of the kernel uAPI on the served GPU (its
# memory-off, restore and reset steps check the same mapping works again as
# soon as the config write or the reset returns).
out=$(timeout 60 "$p2pbuf" exec -q --connect "$gpu" -- "$build/examples/door-tour" 2>&1) ||
	bad "door-tour: $(grep -m3 FAILED <<<"$out")"

# The server dies under a program holding the GPU.
mkfifo "$dir/in"
timeout 60 "$p2pbuf" exec -q --connect "$gpu" -- "$prog" dead <"$dir/in" >"$dir/dead.out" 2>&1 &
prog_pid=$!
exec 3>"$dir/in"
for _ in $(seq 500); do
	grep -q ready "$dir/dead.out" 2>/dev/null && break
	sleep 0.02
done
grep -q ready "$dir/dead.out" || bad "dead: the program did not get ready: $(cat "$dir/dead.out")"
{ kill -9 "$srv"; wait "$srv"; } 2>/dev/null
srv=
sleep 0.3
echo go >&3
exec 3>&-
wait $prog_pid || bad "dead: $(cat "$dir/dead.out")"
[ $fail = 0 ] && echo "vfio-user-exec: ok"
exit $fail
