"""Medians of an ab.sh run: per case and metric, old and new, and the
new/old ratio taken within each round (steadier than a ratio of medians
on a shared machine)."""
import statistics as st
import sys
from collections import defaultdict

METRICS = ("msgs_per_s", "p50_us", "p99_us", "cpu_us_per_msg")
vals = defaultdict(dict)  # (link, consumer, case, metric) -> {round: value}
loads = []
for line in open(sys.argv[1]):
    fields = dict(x.split("=", 1) for x in line.split())
    if "case" not in fields:
        if "load" in fields:
            loads.append(float(fields["load"]))
        continue
    for m in METRICS:
        if m in fields:
            key = (fields["link"], fields["consumer"], fields["case"], m)
            vals[key][int(fields["round"])] = float(fields[m])


def spread(xs):
    return f"median {st.median(xs):.1f} [{min(xs):.1f}..{max(xs):.1f}]"


print(f"rounds: {len(loads)}; 1-min load at round start {min(loads)}..{max(loads)}")
for consumer in ("simple", "batch"):
    for case in ("lockstep", "pipelined", "concurrent"):
        for m in METRICS:
            old = vals.get(("old", consumer, case, m))
            new = vals.get(("new", consumer, case, m))
            if not old or not new:
                continue
            ratios = [new[r] / old[r] for r in old if r in new]
            print(
                f"{consumer:6} {case:10} {m:14} old {spread(list(old.values()))}"
                f"  new {spread(list(new.values()))}"
                f"  new/old per round {spread(ratios)}"
            )
