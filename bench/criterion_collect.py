#!/usr/bin/env python3
"""Prints one JSON line per criterion benchmark found under CRITERION_HOME (argument):
the median estimate (ns) with its confidence interval, and the throughput unit if any."""
import json
import os
import sys

root = sys.argv[1]
for dirpath, _dirs, files in sorted(os.walk(root)):
    if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        bench = json.load(f)
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    med = est["median"]
    tp = bench.get("throughput") or {}
    print(json.dumps({
        "label": "criterion/" + bench["full_id"],
        "kind": "criterion",
        "median_ns": med["point_estimate"],
        "median_lo_ns": med["confidence_interval"]["lower_bound"],
        "median_hi_ns": med["confidence_interval"]["upper_bound"],
        "throughput_bytes": tp.get("Bytes") or tp.get("BytesDecimal"),
    }))
