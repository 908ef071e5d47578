#!/bin/bash
# SPDX-License-Identifier: MIT
# `p2pbuf bench mmap --json --plot DIR`, short (2 MiB, 3 rounds): the JSON
# still parses and carries every figure's spread, the series (rounds,
# settled) and each target's verdict and band; the plot is a valid SVG with
# the figures' series in its legend.  The same, shorter, for `bench iova`
# (2 rounds) and `bench vfio-user` (4 MiB BAR, 3 rounds: the region
# placements, the revoke parts).  Verdicts are not checked (a loaded
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
if len(r["targets"]) != 3:  # a/b, d/b (fresh) and a/b (populated)
    bad.append("targets")
if bad:
    print("FAIL: JSON: " + ", ".join(bad))
    sys.exit(1)
print("bench mmap --json: %d figures with spreads, targets %s" % (
    len(r["medians_ms"]), " ".join(t["verdict"] for t in r["targets"])))
PY
# iova and vfio-user: every figure with its spread, every ratio with its
# spread, series capped at the rounds asked, every target with a verdict
# and a band.
iova=$("$bin" bench iova --json -n 2 --max-rounds 2 "${plot[@]}" 2>&1) || {
	echo "FAIL: bench iova exit $?"; echo "$iova"; exit 1; }
vu=$("$bin" bench vfio-user --json -n 3 --max-rounds 3 -s 4M "${plot[@]}" 2>&1) || {
	echo "FAIL: bench vfio-user exit $?"; echo "$vu"; exit 1; }
python3 - "$iova" "$vu" <<'PY' || exit 1
import json, sys
bad = []
def common(r, rounds, nseries, ntargets):
    for m, v in r["medians_ms"].items():
        lo, hi = r["spreads_ms"][m]
        if not lo <= v <= hi:
            bad.append("%s: spread of %s" % (r["bench"], m))
    for k, v in r["ratios"].items():
        if k not in r["ratio_spreads"]:
            bad.append("%s: ratio %s without a spread" % (r["bench"], k))
            continue
        lo, hi = r["ratio_spreads"][k]
        if not lo <= v <= hi:
            bad.append("%s: ratio spread of %s" % (r["bench"], k))
    if len(r["series"]) != nseries or \
            any(s["rounds"] != rounds or not isinstance(s["settled"], bool) for s in r["series"]):
        bad.append("%s: series %s" % (r["bench"], r["series"]))
    for t in r["targets"]:
        lo, hi = t["band"]
        if t["verdict"] not in ("met", "missed", "unsettled") or \
                t["met"] != (t["verdict"] == "met") or not lo <= t["value"] <= hi:
            bad.append("%s: target %s" % (r["bench"], t))
    if len(r["targets"]) != ntargets:
        bad.append("%s: %d targets" % (r["bench"], len(r["targets"])))
iova = json.loads(sys.argv[1])
# 3 area counts x memory/dma-buf; targets at 10 000 and 100 000 areas, random order.
common(iova, 2, 6, 4)
for k in ("translate_dmabuf_100000_random", "lookup_memory_10_sequential"):
    if k not in iova["medians_ms"]:
        bad.append("iova: no " + k)
vu = json.loads(sys.argv[2])
# region: 3 placements x 4 (2 judged), bar, dma, revoke 1 and 16
common(vu, 3, 16, 12)
for k in ("region_read_4_1cpu", "raw_rr_32_36_2cpu", "region_write_4096_sched",
          "revoke_1_part_notice", "revoke_1_part_client_to_unrevoke",
          "revoke_1_part_client_cpu", "revoke_16_part_server_cpu",
          "local_unprefaulted_revoke_1_cpu",
          "local_unprefaulted_revoke_16"):
    if k not in vu["medians_ms"]:
        bad.append("vfio-user: no " + k)
if "revoke_1/(local_unprefaulted+rtts)" not in vu["ratios"] or \
        "region sched placement" not in vu["facts"]:
    bad.append("vfio-user: the revoke's other baseline or the placement fact")
if bad:
    print("FAIL: JSON: " + ", ".join(bad))
    sys.exit(1)
print("bench iova, vfio-user --json: %d + %d figures with spreads, targets %s / %s" % (
    len(iova["medians_ms"]), len(vu["medians_ms"]),
    " ".join(t["verdict"] for t in iova["targets"]),
    " ".join(t["verdict"] for t in vu["targets"])))
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
python3 - "$dir/iova.svg" "$dir/vfio-user.svg" <<'PY' || exit 1
import sys, xml.etree.ElementTree as ET
want = {sys.argv[1]: ["p2pbuf translate", "bare binary search", "memory 10000 random",
                      "dmabuf 100000 sequential"],
        sys.argv[2]: ["p2pbuf", "raw baseline", "read 4 B 1cpu", "write 4096 B 2cpu",
                      "bar 4 MiB", "dma 4 MiB", "revoke 16"]}
for f, labels in want.items():
    try:
        root = ET.parse(f).getroot()
    except Exception as e:
        print("FAIL: %s is not valid XML: %s" % (f, e))
        sys.exit(1)
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    miss = [w for w in labels if w not in text]
    if miss:
        print("FAIL: %s: missing labels %s" % (f, miss))
        sys.exit(1)
print("bench iova, vfio-user --plot: valid SVGs, every label")
PY
