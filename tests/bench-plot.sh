#!/bin/bash
# SPDX-License-Identifier: MIT
# `p2pbuf bench mmap --json --plot DIR`, short (2 MiB, 3 rounds): the JSON
# still parses and carries every figure's spread, the series (rounds,
# settled) and each target's verdict and band; the plot is a valid SVG with
# the figures' series in its legend.  Verdicts are not checked (a loaded
# machine says nothing about them).  Skips the plot part, with the reason,
# when gnuplot is missing.
# Usage: bench-plot.sh PATH/TO/p2pbuf.  Exit 0 pass, 1 fail, 77 skip.
set -u
bin=$1
command -v python3 >/dev/null || { echo "SKIP: python3 not found"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
have_gnuplot=1
command -v gnuplot >/dev/null || have_gnuplot=0
plot=()
[ $have_gnuplot = 1 ] && plot=(--plot "$dir")
out=$("$bin" bench mmap --json -n 3 --max-rounds 3 -s 2M "${plot[@]}" 2>&1)
rc=$?
if [ $rc != 0 ]; then
	echo "FAIL: bench mmap exit $rc"
	echo "$out"
	exit 1
fi
python3 - "$out" <<'PY' || exit 1
import json, sys
r = json.loads(sys.argv[1])
bad = []
for m in ("a_p2pbuf", "b_raw_populate", "c_raw_page_by_page", "a_p2pbuf_populated"):
    lo, hi = r["spreads_ms"][m]
    if not (0 < lo <= r["medians_ms"][m] <= hi):
        bad.append("spread of " + m)
for k in ("a/b", "c/a", "a/b_populated"):
    lo, hi = r["ratio_spreads"][k]
    if not (0 < lo <= r["ratios"][k] <= hi):
        bad.append("ratio spread of " + k)
if [s["name"] for s in r["series"]] != ["fresh", "populated"] or \
        any(s["rounds"] != 3 or not isinstance(s["settled"], bool) for s in r["series"]):
    bad.append("series " + str(r["series"]))
for t in r["targets"]:
    lo, hi = t["band"]
    if t["verdict"] not in ("met", "missed", "unsettled") or t["met"] != (t["verdict"] == "met") \
            or not lo <= t["value"] <= hi:
        bad.append("target " + str(t))
if len(r["targets"]) != 2:
    bad.append("targets")
if bad:
    print("FAIL: JSON: " + ", ".join(bad))
    sys.exit(1)
print("bench mmap --json: %d figures with spreads, targets %s" % (
    len(r["medians_ms"]), " ".join(t["verdict"] for t in r["targets"])))
PY
# A usage error is one: a bad --max-rounds.
"$bin" bench mmap --max-rounds 0 >/dev/null 2>&1
[ $? = 2 ] || { echo "FAIL: --max-rounds 0 was accepted"; exit 1; }
if [ $have_gnuplot = 0 ]; then
	echo "SKIP: gnuplot not found (Debian: gnuplot-nox): the --plot part did not run"
	exit 77
fi
python3 - "$dir/mmap.svg" <<'PY' || exit 1
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as e:
    print("FAIL: %s is not valid XML: %s" % (sys.argv[1], e))
    sys.exit(1)
text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
want = ["p2pbuf dma-buf mmap", "raw MAP_POPULATE", "raw page by page", "fresh, 2 MiB",
        "populated, 2 MiB"]
miss = [w for w in want if w not in text]
paths = sum(1 for t in root.iter() if t.tag.endswith("path"))
if root.tag != "{http://www.w3.org/2000/svg}svg" or miss or paths < 6:
    print("FAIL: %s: root %s, missing labels %s, %d paths" % (sys.argv[1], root.tag, miss, paths))
    sys.exit(1)
print("bench mmap --plot: valid SVG, %d paths, every label" % paths)
PY
