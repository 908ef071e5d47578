#!/bin/bash
# SPDX-License-Identifier: MIT
# Regenerate docs/bench/*.svg, docs/bench/results.json and docs/benchmarks.md
# from one run of `p2pbuf bench all --json --plot docs/bench`, with the
# machine it ran on (kernel, CPU model, cores, load before and after).
# Usage: scripts/bench-docs.sh [extra bench options]; needs gnuplot and python3.
set -eu
cd "$(dirname "$0")/.."
bin=build/tools/p2pbuf
mkdir -p docs/bench
load0=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date -u '+%Y-%m-%d %H:%M UTC')
t0=$(date +%s)
"$bin" bench all --json --plot docs/bench "$@" >docs/bench/results.json
secs=$(($(date +%s) - t0))
load1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$start" "$secs" "$load0" "$load1" "$*" <<'PY'
import json, os, platform, subprocess, sys
start, secs, load0, load1, extra = sys.argv[1:6]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
thp = open("/sys/kernel/mm/transparent_hugepage/shmem_enabled").read().strip()
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
reports = [json.loads(l) for l in open("docs/bench/results.json") if l.strip()]
o = []
o.append("# Benchmarks: one run, plotted\n")
o.append("`p2pbuf bench all --json --plot docs/bench%s` (scripts/bench-docs.sh), commit %s, %s, %s s.\n"
         % (" " + extra if extra else "", rev, start, secs))
o.append("How to read the figures, the interleaving, the settling rule and the verdicts: "
         "`man p2pbuf` (p2pbuf bench) and the README. Every bar is a median; its error bar "
         "runs from the fastest to the slowest sample. A target is *unsettled* when its "
         "limit lies inside the noise band of its median: the machine was too noisy to say.\n")
o.append("## The machine\n")
o.append("| what | value |\n| --- | --- |")
o.append("| kind | the workplace's `c` machine: 2 cores, 24 GiB (its env notes); shared with other sessions building and testing at the same time |")
o.append("| nproc | %d |" % os.cpu_count())
o.append("| kernel | %s %s |" % (platform.system(), platform.release()))
o.append("| CPU | %s |" % cpu)
o.append("| shmem THP | %s |" % thp)
o.append("| load average (1, 5, 15 min) | before %s, after %s |\n" % (load0, load1))
for r in reports:
    b = r["bench"]
    o.append("## %s\n" % b)
    if os.path.exists("docs/bench/%s.svg" % b):
        o.append("![%s](bench/%s.svg)\n" % (b, b))
    if r.get("series"):
        o.append("| series | rounds | settled | median moved | undecided | seconds |\n| --- | --- | --- | --- | --- | --- |")
        for s in r["series"]:
            o.append("| %s | %d | %s | %.1f%% | %d | %.1f |" % (s["name"], s["rounds"],
                     "yes" if s["settled"] else "**no**", 100 * s["drift"], s.get("undecided", 0), s["seconds"]))
        o.append("")
    if r["targets"]:
        o.append("| target | rule | value | band | verdict |\n| --- | --- | --- | --- | --- |")
        for t in r["targets"]:
            band = "%.3f - %.3f" % tuple(t["band"]) if "band" in t else "(median only)"
            v = t.get("verdict", "met" if t["met"] else "missed")
            o.append("| %s | %s | %.3f | %s | %s |" % (t["name"], t["target"], t["value"], band,
                     v if v == "met" else "**%s**" % v))
        o.append("")
open("docs/benchmarks.md", "w").write("\n".join(o) + "\n")
print("docs/benchmarks.md: %d benchmarks" % len(reports))
PY
