#!/bin/bash
# SPDX-License-Identifier: MIT
# `p2pbuf bench preload --json`, short (one round, a 4 MiB BAR): the
# children run plainly and under the door (each checks the door answered
# or did not), and the report has every figure, ratio and target.  The
# targets' verdicts are not checked here: a loaded CI machine says nothing
# about them (docs/door.md has measured figures).
# Usage: bench-preload.sh PATH/TO/p2pbuf.  Exit 0 pass, 1 fail, 77 skip.
set -u
bin=$1
command -v python3 >/dev/null || { echo "SKIP: python3 not found"; exit 77; }
out=$("$bin" bench preload --json -n 1 -s 4M 2>&1)
rc=$?
if [ $rc != 0 ]; then
	echo "FAIL: exit $rc"
	echo "$out"
	exit 1
fi
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
keys = ["open_close", "open_close_devnull", "pread_4k", "ioctl_pipe", "ioctl_socket",
        "mmap_memfd", "region_info", "ioas_map_unmap", "bar_map_touch"]
bad = []
for k in keys:
    base = "native" if k in ("region_info", "ioas_map_unmap", "bar_map_touch") else "plain"
    for m in (base + "_" + k, "door_" + k):
        if not r["medians_ms"].get(m, 0) > 0:
            bad.append("median " + m)
    if not r["ratios"].get(k + "_door/" + base, 0) > 0:
        bad.append("ratio " + k)
names = [t["name"] for t in r["targets"]]
if len(names) != len(keys) or any(not isinstance(t["met"], bool) for t in r["targets"]):
    bad.append("targets " + str(names))
if bad:
    print("FAIL: missing or bad: " + ", ".join(bad))
    sys.exit(1)
print("bench preload: %d figures, ratios %s" % (len(keys), " ".join(
    "%.2f" % r["ratios"][t["name"]] for t in r["targets"])))
PY
