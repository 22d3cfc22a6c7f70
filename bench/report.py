#!/usr/bin/env python3
"""Writes the benchmark report from bench/run.sh's raw results.

usage: report.py RESULTS.jsonl META.lines OUT.md

Every figure comes from RESULTS (one JSON line per measured run, labelled
"group/side/round" or "criterion/<id>"). Ratios are paired: for each round r the ratio
A_r / B_r of that round's two runs (taken minutes apart at most), then the median of those
ratios and their min–max.
"""
import json
import statistics
import sys
from collections import defaultdict

res_path, meta_path, out_path = sys.argv[1:4]
runs = defaultdict(dict)  # "group/side" -> {round: record}
crit = {}
for line in open(res_path):
    line = line.strip()
    if not line:
        continue
    rec = json.loads(line)
    if rec["kind"] == "criterion":
        crit[rec["label"][len("criterion/"):]] = rec
        continue
    group, side, rnd = rec["label"].split("/")
    runs[f"{group}/{side}"][int(rnd)] = rec
meta = {}
for line in open(meta_path):
    if line.strip():
        m = json.loads(line)
        meta[m["key"]] = m["value"]

MIB = 1024 * 1024


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# Metric extractors: record -> value for that round.
METRICS = {
    "rps": (lambda r: r["rps"], "req/s", "{:,.0f}"),
    "p99": (lambda r: r["p99_us"] / 1000, "ms", "{:.2f}"),
    "p50": (lambda r: r["p50_us"] / 1000, "ms", "{:.2f}"),
    "mibs_wrk": (lambda r: r["bytes"] / (r["duration_us"] / 1e6) / MIB, "MiB/s", "{:,.0f}"),
    "lat_p50": (lambda r: statistics.median(r["secs"]) * 1000, "ms", "{:.3f}"),
    "lat_p99": (lambda r: pct(r["secs"], 99) * 1000, "ms", "{:.3f}"),
    "mibs": (lambda r: r["bytes"] / statistics.median(r["secs"]) / MIB, "MiB/s", "{:,.0f}"),
}


def series(key, metric):
    f = METRICS[metric][0]
    return {rnd: f(rec) for rnd, rec in runs.get(key, {}).items()}


def fmt(metric, v):
    return METRICS[metric][2].format(v)


def summary(key, metric):
    s = list(series(key, metric).values())
    if not s:
        return "n/a"
    return f"{fmt(metric, statistics.median(s))} ({fmt(metric, min(s))}–{fmt(metric, max(s))}) {METRICS[metric][1]}"


def paired(a, b, metric):
    sa, sb = series(a, metric), series(b, metric)
    rs = [sa[r] / sb[r] for r in sorted(sa) if r in sb and sb[r]]
    return rs


def verdict(value, op, target):
    if value != value:  # nan
        return "n/a"
    ok = value >= target if op == ">=" else value <= target
    return "**met**" if ok else "**missed**"


rows = []  # (pair, what, A, B, ratio, target, met)


def pair_row(pair, what, a, b, metric, op=None, target=None):
    rs = paired(a, b, metric)
    if rs:
        med = statistics.median(rs)
        ratio = f"{med:.2f} ({min(rs):.2f}–{max(rs):.2f})"
    else:
        med, ratio = float("nan"), "n/a"
    if not runs.get(a) or not runs.get(b):
        return
    rows.append((pair, what, f"{a.split('/')[1]}: {summary(a, metric)}",
                 f"{b.split('/')[1]}: {summary(b, metric)}", ratio,
                 f"{op} {target}" if op else "context",
                 verdict(med, op, target) if op else "—"))


pair_row("1", "cached 4 KiB GET, 64 conns: req/s (FM/nginx tuned: open_file_cache, no sendfile)", "small4k/fm_bearer", "small4k/nginx_tuned", "rps", ">=", 1.0)
pair_row("1", "cached 4 KiB GET, 64 conns: p99 latency (FM/nginx tuned)", "small4k/fm_bearer", "small4k/nginx_tuned", "p99", "<=", 1.0)
pair_row("1", "cached 4 KiB GET, 64 conns: req/s (FM/nginx common config: sendfile, tcp_nopush)", "small4k/fm_bearer", "small4k/nginx", "rps")
pair_row("1", "cached 4 KiB GET, 64 conns: p99 latency (FM/nginx common config)", "small4k/fm_bearer", "small4k/nginx", "p99")
pair_row("1", "nginx tuned / nginx common config, req/s", "small4k/nginx_tuned", "small4k/nginx", "rps")
pair_row("1", "the HTTP stack alone (hyper + tokio, no handler work) / nginx tuned, req/s: the ceiling of pair 1 for any service on this stack", "small4k/hyper_bare", "small4k/nginx_tuned", "rps")
pair_row("1", "FM / the HTTP stack alone, req/s: what FileManager's own work per request costs", "small4k/fm_bearer", "small4k/hyper_bare", "rps")
pair_row("2", "cached 1 MiB GET, 64 conns: throughput (FM/nginx tuned: open_file_cache, sendfile)", "m1/fm", "m1/nginx_tuned", "mibs_wrk", ">=", 0.9)
pair_row("2", "cached 1 MiB GET, 64 conns: throughput (FM/nginx common config)", "m1/fm", "m1/nginx", "mibs_wrk")
pair_row("3", "uncached 4 KiB GET from Garage, encrypted: p50 latency (FM/raw S3 on a kept-alive connection with TCP_QUICKACK)", "s3small/fm_enc", "s3small/raw_enc_qa", "lat_p50", "<=", 1.2)
pair_row("3", "uncached 4 KiB GET from Garage, plain: p50 latency (FM/raw S3, kept-alive, TCP_QUICKACK)", "s3small/fm_plain", "s3small/raw_plain_qa", "lat_p50", "<=", 1.2)
pair_row("3", "uncached 4 KiB GET, encrypted: p50 latency (FM/raw S3 through reqwest on a kept-alive connection: Garage's 40 ms stall)", "s3small/fm_enc", "s3small/raw_enc", "lat_p50")
pair_row("3", "uncached 4 KiB GET, encrypted: p50 latency (FM/raw S3 on a NEW connection per request)", "s3small/fm_enc", "s3small/raw_enc_fresh", "lat_p50")
pair_row("3", "uncached 4 KiB GET, plain: p50 latency (a bare nginx reverse proxy in front of Garage / raw S3, kept-alive, TCP_QUICKACK): what one more HTTP hop costs", "s3small/nginx_proxy", "s3small/raw_plain_qa", "lat_p50")
pair_row("3", "uncached 4 KiB GET, plain: p50 latency (FM/the bare nginx proxy)", "s3small/fm_plain", "s3small/nginx_proxy", "lat_p50")
pair_row("3", "uncached 64 MiB GET, plain: throughput (FM/raw S3)", "big64/fm_plain", "big64/raw_plain", "mibs", ">=", 0.9)
pair_row("3", "uncached 64 MiB GET, plain: throughput (the bare nginx proxy in front of Garage / raw S3): what one more hop costs", "big64/nginx_proxy", "big64/raw_plain", "mibs")
pair_row("3", "uncached 64 MiB GET, plain: throughput (FM/the bare nginx proxy)", "big64/fm_plain", "big64/nginx_proxy", "mibs")
pair_row("3", "uncached 64 MiB GET, encrypted: throughput (FM/raw S3)", "big64/fm_enc", "big64/raw_enc", "mibs", ">=", 0.8)
pair_row("4", "upload 256 MiB encrypted: throughput (FM/raw S3 PUT)", "up256/fm_enc", "up256/raw", "mibs", ">=", 0.8)
pair_row("4", "upload 256 MiB encrypted+zstd: throughput (FM/raw S3 PUT)", "up256/fm_enc_zstd", "up256/raw", "mibs", ">=", 0.8)
pair_row("4", "object_store multipart, signed payload / raw presigned PUT", "up256/os_signed", "up256/raw", "mibs")
pair_row("4", "object_store multipart, UNSIGNED-PAYLOAD / raw presigned PUT", "up256/os_unsigned", "up256/raw", "mibs")
pair_row("4", "FM encrypted upload / object_store multipart signed (the client FM uses)", "up256/fm_enc", "up256/os_signed", "mibs")
pair_row("5", "cached 4 KiB GET, 64 conns: req/s (FM/rclone)", "small4k/fm_bearer", "small4k/rclone", "rps", ">=", 3.0)
pair_row("5", "64 MiB encrypted GET, both from their local disk cache: throughput (FM/rclone)", "big64/fm_enc_cached", "big64/rclone", "mibs", ">=", 1.5)
pair_row("5", "64 MiB GET of an UNENCRYPTED file from FM's large-file tier / rclone's plaintext VFS cache (what decryption costs)", "big64/fm_plain_cached", "big64/rclone", "mibs")
pair_row("5", "64 MiB encrypted GET, FM uncached (?cache=false) / rclone with its VFS cache", "big64/fm_enc", "big64/rclone", "mibs")
pair_row("5", "64 MiB encrypted GET, both uncached: throughput (FM/rclone without VFS cache)", "big64/fm_enc", "big64/rclone_nocache", "mibs")
pair_row("7", "cached 4 KiB GET, 64 conns: req/s (presigned/bearer)", "small4k/fm_presigned", "small4k/fm_bearer", "rps", ">=", 0.95)

# Peak RSS of the service during uploads (VmHWM reset before each upload).
hwm = {k: v for k, v in meta.items() if k.startswith("vmhwm_kib/")}
for side in ("fm_enc", "fm_enc_zstd"):
    vals = [v / 1024 for k, v in hwm.items() if k.split("/")[2] == side]
    if vals:
        peak = max(vals)
        rows.append(("4", f"peak RSS (VmHWM) of the service during a 256 MiB upload, {side}",
                     f"max {peak:.1f} MiB (median {statistics.median(vals):.1f}, n={len(vals)})",
                     "—", "—", "<= 100 MiB", verdict(peak, "<=", 100)))

# Pair 6: library overhead, interleaved rounds of `benches/paired.rs` (raw time / FM time, so
# above 1 means FileManager is faster).
for op in ("upload", "download"):
    for size in ("4KiB", "64MiB"):
        pair_row("6", f"library {op} {size}, local disk, no codec/cache: time per op (raw/FM)",
                 f"lib-{op}-{size}/raw", f"lib-{op}-{size}/fm", "lat_p50", ">=", 0.95)
        pair_row("6", f"library {op} {size}: raw writing/reading a file as long as FM's (its record envelope + the bytes) / FM: the code's cost without the format's",
                 f"lib-{op}-{size}/raw_sized", f"lib-{op}-{size}/fm", "lat_p50")
# Criterion's sequential figures for the same cases, as context.
for op in ("upload", "download"):
    for size in ("4KiB", "64MiB"):
        raw = crit.get(f"{op}/{size}/raw_object_store/{size}")
        fm = crit.get(f"{op}/{size}/filemanager/{size}")
        if raw and fm:
            ratio = raw["median_ns"] / fm["median_ns"]
            rows.append(("6", f"library {op} {size}, criterion, sequential (raw/FM medians)",
                         f"filemanager: {fm['median_ns'] / 1000:,.1f} µs",
                         f"raw object_store: {raw['median_ns'] / 1000:,.1f} µs",
                         f"{ratio:.2f}", "context", "—"))

out = []
w = out.append
mode = meta.get("mode", "?")
w("# FileManager benchmarks\n")
w("Generated by `bench/run.sh` — do not edit by hand; every figure below was measured in the run "
  "described here. Not part of CI; nothing asserts a time.\n")
w(f"- **Run**: `{'bench/run.sh' if mode == 'full' else 'bench/run.sh --quick'}` (mode {mode}), "
  f"{meta.get('date', '?')}")
w(f"- **Machine**: {meta.get('nproc', '?')} cores (`nproc`), CPU `{meta.get('cpu', '?')}`, "
  f"kernel {meta.get('kernel', '?')}")
w(f"- **Tools**: {meta.get('versions', '?')}")
w(f"- **Method**: {meta.get('rounds', '?')} rounds; each round runs every side of a group once, "
  "A B A B … (order reversed every other round), so drift and other load hit both sides alike. "
  "Figures are *median (min–max over rounds)*; a ratio is the median of the per-round paired "
  "ratios A_r/B_r (min–max in brackets).")
w(f"- **Pinning**: request-rate tests (groups 1–2): the server under test (FileManager, nginx "
  f"`worker_processes 1`, rclone) on core 0 — tokio and Go size their pools from the affinity "
  f"mask, so one worker each — and wrk (`-t1 -c{meta.get('connections', 64)} -d{meta.get('wrk_duration_s', '?')}s`) on core 1. "
  "Transfers through Garage (groups 3–5) are unpinned: client, service and Garage share both cores "
  "(for the rclone 64 MiB side, rclone is given both cores too).")
w("- **Cache settings**: defaults (`CACHE_MAX_ITEM_BYTES` 1 MiB, so the 1 MiB file of group 2 is at the limit).")
loads = [(k.split("/", 1)[1], v) for k, v in meta.items() if k.startswith("loadavg/")]
if loads:
    w("- **Other load on the machine** (`/proc/loadavg` 1/5/15 min, at the start of each group; "
      "the machine is shared with other builds and tests, hence the interleaving): "
      + "; ".join(f"{k}: {v}" for k, v in loads) + ".")
w("- **Logging**: FileManager `FM_LOG=warn` (no per-request log line), nginx `access_log off`.")
w(f"- **Cache checks**: `X-Cache: hit` checked with curl before/after every FileManager cached run; "
  f"misses seen: {meta.get('cache_misses_seen', '?')}. `?cache=false` checked to answer `miss`.")
w("")
w("## Results against the targets\n")
w("| pair | what | A | B | ratio A/B | target | met? |")
w("|---|---|---|---|---|---|---|")
for r in sorted(rows, key=lambda r: r[0]):  # stable: pairs in order, rows as added
    w("| " + " | ".join(r) + " |")
w("")



def med(key, metric):
    v = list(series(key, metric).values())
    return statistics.median(v) if v else float("nan")


w("## Reading the results\n")
w("Only figures of this run are quoted. What limits the pairs that miss their targets (profiles, "
  "what was changed because of them, what is left) is in `docs/performance.md`.\n")
if runs.get("s3small/raw_enc_qa"):
    w(f"- **Small uncached GETs through Garage (pair 3)**: Garage writes a response's head and "
      "body in two writes with Nagle's algorithm on, and a client that delays its ACK of the head "
      "(Linux does on a kept-alive connection) gets the body ~40 ms late: a raw GET through reqwest "
      f"on a reused connection takes {fmt('lat_p50', med('s3small/raw_enc', 'lat_p50'))} ms at the median, "
      f"on a new connection {fmt('lat_p50', med('s3small/raw_enc_fresh', 'lat_p50'))} ms, and on a reused "
      "connection that sets TCP_QUICKACK after each request (the driver's `--quickack`) "
      f"{fmt('lat_p50', med('s3small/raw_enc_qa', 'lat_p50'))} ms. FileManager's client for plain-http S3 "
      "endpoints sets TCP_QUICKACK the same way, so the targets are taken against that raw side: "
      f"FileManager takes {fmt('lat_p50', med('s3small/fm_enc', 'lat_p50'))} ms (encrypted).")
if runs.get("s3small/nginx_proxy"):
    w(f"- **One more hop (pair 3)**: FileManager is a service in front of S3, so each of its "
      "uncached answers crosses two HTTP connections where the raw GET crosses one. A bare nginx "
      "reverse proxy in front of the same Garage (one worker, `proxy_buffering off`, a new upstream "
      "connection per request, since nginx cannot set TCP_QUICKACK on a kept-alive one) answers "
      f"the plain 4 KiB GET in {fmt('lat_p50', med('s3small/nginx_proxy', 'lat_p50'))} ms at the "
      f"median against {fmt('lat_p50', med('s3small/raw_plain_qa', 'lat_p50'))} ms raw, FileManager in "
      f"{fmt('lat_p50', med('s3small/fm_plain', 'lat_p50'))} ms. The proxy pays a TCP connect per "
      "request that FileManager (which keeps its connection to Garage alive and sets TCP_QUICKACK) "
      "does not, so it bounds what a hop costs from above, not from below; that a C proxy which "
      "does nothing else lands near FileManager says where the rest of pair 3's gap comes from.")
if runs.get("big64/nginx_proxy"):
    w(f"- **One more hop, 64 MiB (pair 3)**: the same proxy relays the plain 64 MiB object at "
      f"{fmt('mibs', med('big64/nginx_proxy', 'mibs'))} MiB/s against "
      f"{fmt('mibs', med('big64/raw_plain', 'mibs'))} MiB/s raw; FileManager relays it at "
      f"{fmt('mibs', med('big64/fm_plain', 'mibs'))} MiB/s. On two cores shared by Garage, the "
      "relay and the client, every byte a relay receives and sends again is CPU that Garage and "
      "the client do not get.")
if runs.get("up256/os_unsigned"):
    w(f"- **Uploads (pair 4)**: object_store's multipart upload shaped like FileManager's reaches "
      f"{fmt('mibs', med('up256/os_signed', 'mibs'))} MiB/s with a signed payload (SHA-256 of every "
      f"part, verified again by Garage) and {fmt('mibs', med('up256/os_unsigned', 'mibs'))} MiB/s with "
      f"UNSIGNED-PAYLOAD, against {fmt('mibs', med('up256/raw', 'mibs'))} MiB/s for the raw presigned "
      "PUT. FileManager's S3 client sends UNSIGNED-PAYLOAD (the integrity of encrypted files rests "
      "on their AES-GCM tags, of all files in transit on TLS), like the second of these. Every "
      "timed upload sends bytes Garage has not seen (it keeps one copy of equal blocks, and "
      "FileManager's ciphertext is new every time), so no side skips the block writes.")
if runs.get("big64/rclone_nocache"):
    w(f"- **Large downloads vs rclone (pair 5)**: rclone with `--vfs-cache-mode full` serves the "
      "64 MiB file from its local disk cache, which holds the *plaintext*; FileManager's large-file "
      "tier holds the stored, encrypted form and decrypts (AES-256-GCM) on every read"
      + (f": {fmt('mibs', med('big64/fm_enc_cached', 'mibs'))} MiB/s" if runs.get("big64/fm_enc_cached") else "")
      + (f"; an unencrypted file from the same tier gives {fmt('mibs', med('big64/fm_plain_cached', 'mibs'))} MiB/s, "
         "so the gap to rclone is the price of keeping the local copy encrypted (one AES-GCM pass "
         "and one more copy of every byte, on a machine whose second core runs the client)"
         if runs.get("big64/fm_plain_cached") else "")
      + ". Uncached (`?cache=false`) FileManager streams from Garage, bounded by Garage's own GET "
      f"rate (raw: {fmt('mibs', med('big64/raw_enc', 'mibs'))} MiB/s). Without its VFS cache rclone "
      f"gives {fmt('mibs', med('big64/rclone_nocache', 'mibs'))} MiB/s.")
w("- **Errors column**: wrk counts a request still unanswered after 5 s (`--timeout 5s`) as an error; "
  "only rclone, at 64 connections on one core, gets there.")
w("- **Library pairs (pair 6)** run interleaved like the HTTP pairs: each round times a batch of "
  "each side (2,000 operations of 4 KiB, 4 of 64 MiB), A B C then C B A, and the ratio is the "
  "median of the per-round ratios. On local disk FileManager stores its record (content type, "
  "encoding, size, metadata) as a small envelope before the bytes, so a 4 KiB file takes two "
  "filesystem blocks where raw object_store's takes one; the `raw_sized` side writes a file of "
  "FileManager's length with raw object_store, separating what the format costs from what the "
  "code costs. Criterion's sequential figures for the same cases are listed as context.")
w("- **Criterion figures** (codec, cache, and pair 6 as context) come from criterion's own "
  "sequential runs (all raw samples, then all FileManager samples), so on a shared machine they "
  "carry more drift than the interleaved pairs; their confidence intervals are in the table.")
w("- **nginx sides**: one nginx worker with two servers. *Common config*: `sendfile on; "
  "tcp_nopush on`, a file opened per request. *Tuned*: `open_file_cache` (no open/fstat/close "
  "per request), and for the 4 KiB file `sendfile off` (one `pread` + `writev`, faster than "
  "`sendfile` for a page-sized file here); the targets are taken against the tuned one. "
  "FileManager serves decrypted bytes from its memory cache (L1) with one `writev` per response.")
w("- **The HTTP stack alone (`hyper_bare`, pair 1)**: the driver's `serve-bare`, the same hyper "
  "HTTP/1 server and tokio runtime as the service, pinned the same way, answering every request "
  "with the 4 KiB file and the headers of FileManager's cached answer (same names and lengths) "
  "and doing nothing else: no authentication, routing, cache lookup or header building. Its rate "
  "bounds what any service on this stack can reach, and FileManager's ratio to it is the cost of "
  "FileManager's own work per request.")
w("")

w("## All sides\n")
groups = [
    ("Group 1 — cached 4 KiB GET, 64 connections (wrk)", "small4k", ["rps", "p50", "p99"]),
    ("Group 2 — cached 1 MiB GET, 64 connections (wrk)", "m1", ["rps", "mibs_wrk", "p99"]),
    ("Group 3 — uncached 4 KiB GET via Garage, sequential, one keep-alive connection (`_qa`: TCP_QUICKACK after each request; `_fresh`: a new connection per request) (driver)", "s3small", ["lat_p50", "lat_p99"]),
    ("Group 4 — 64 MiB GET, sequential (driver)", "big64", ["mibs", "lat_p50"]),
    ("Group 5 — 256 MiB PUT (driver)", "up256", ["mibs"]),
]
for op in ("upload", "download"):
    for size in ("4KiB", "64MiB"):
        groups.append((f"Library {op} {size}, local disk, interleaved batches (`benches/paired.rs`); lat_p50 is the median time per operation",
                       f"lib-{op}-{size}", ["lat_p50"]))
for title, g, metrics in groups:
    keys = sorted(k for k in runs if k.startswith(g + "/"))
    if not keys:
        continue
    w(f"### {title}\n")
    w("| side | " + " | ".join(m.replace("_wrk", "") for m in metrics) + " | errors |")
    w("|---|" + "---|" * (len(metrics) + 1))
    for k in keys:
        errs = sum(rec.get("err_connect", 0) + rec.get("err_read", 0) + rec.get("err_write", 0)
                   + rec.get("err_status", 0) + rec.get("err_timeout", 0) for rec in runs[k].values())
        w(f"| {k.split('/')[1]} | " + " | ".join(summary(k, m) for m in metrics) + f" | {errs} |")
    w("")

if crit:
    w("## Criterion microbenchmarks (full mode)\n")
    w("Medians of criterion's samples (95% confidence interval of the median in brackets). "
      "Criterion runs the variants one after the other, not interleaved.\n")
    w("| benchmark | median | throughput |")
    w("|---|---|---|")
    for name in sorted(crit):
        c = crit[name]
        ns = c["median_ns"]
        t = f"{ns / 1e6:,.3f} ms" if ns >= 1e6 else (f"{ns / 1e3:,.2f} µs" if ns >= 1e3 else f"{ns:,.1f} ns")
        ci = f" ({c['median_lo_ns'] / ns:.3f}–{c['median_hi_ns'] / ns:.3f}×)"
        tp = f"{c['throughput_bytes'] / ns:.2f} GB/s" if c.get("throughput_bytes") else ""
        w(f"| `{name}` | {t}{ci} | {tp} |")
    w("")
    ratios = []

    def cr(label, a, b):
        if a in crit and b in crit:
            ratios.append((label, crit[a]["median_ns"] / crit[b]["median_ns"]))

    for k in ("encrypt", "decrypt", "zstd1_encode", "zstd1_decode"):
        cr(f"codec: {k} time / memcpy time (64 MiB)", f"64MiB/{k}", "64MiB/memcpy")
    cr("cache: cache.get_content / bare moka get (L1 hit, 4 KiB)", "l1_hit_4KiB/cache.get_content", "l1_hit_4KiB/bare_moka.get")
    cr("cache: cache.get_or_load_content / bare moka get", "l1_hit_4KiB/cache.get_or_load_content", "l1_hit_4KiB/bare_moka.get")
    cr("cache: L2 disk hit / L1 hit (4 KiB)", "l2_vs_l1_4KiB/l2_disk_hit", "l2_vs_l1_4KiB/l1_hit")
    import os
    notes = os.path.join(os.path.dirname(os.path.abspath(res_path)), "full-notes.txt")
    if os.path.exists(notes):
        for line in open(notes):
            w("- codec bench said: " + line.lstrip("# ").strip())
        w("")
    if ratios:
        w("| ratio of medians | value |")
        w("|---|---|")
        for label, v in ratios:
            w(f"| {label} | {v:.2f} |")
        w("")

d = meta.get("wrk_duration_s", "?")
ln, fn, bn, un = (meta.get(k, "?") for k in ("lat_n", "fresh_n", "big_n", "up_n"))
w("## Commands\n")
w("Repeat everything: `bench/run.sh` (full) or `bench/run.sh --quick`. What each side runs "
  "(`$FM` = the FileManager service, `$KEY` its service key, `D` = "
  "`bench/driver/target/release/fm-bench-driver`, all URLs on 127.0.0.1):\n")
w("```sh")
w("# groups 1-2 (pairs 1, 2, 5, 7): wrk on core 1, the server pinned to core 0")
w(f"taskset -c 1 wrk -t1 -c64 -d{d}s --timeout 5s -s bench/wrk-report.lua -H \"Authorization: Bearer $KEY\" $FM/v1/files/bench/app/hot/small4k.bin")
w(f"taskset -c 1 wrk -t1 -c64 -d{d}s --timeout 5s -s bench/wrk-report.lua $NGINX/small4k.bin    # nginx: same bytes, plaintext on disk")
w(f"taskset -c 1 wrk -t1 -c64 -d{d}s --timeout 5s -s bench/wrk-report.lua $RCLONE/small4k.bin   # rclone serve http gcrypt: --vfs-cache-mode full")
w(f"taskset -c 1 wrk -t1 -c64 -d{d}s --timeout 5s -s bench/wrk-report.lua \"$PRESIGNED_FM_URL\"   # from POST /v1/urls/download")
w(f"taskset -c 1 wrk -t1 -c64 -d{d}s --timeout 5s -s bench/wrk-report.lua -H \"Authorization: Bearer $KEY\" $FM/v1/files/bench/app/hot/m1.bin   # and $NGINX/m1.bin")
w(f"# group 3 (pair 3): {ln} sequential GETs (+20 warm-up) per side per round on one keep-alive connection; raw_enc and raw_enc_fresh: {fn} (+5)")
w(f"D get \"$FM/v1/files/bench/app/s3/small4k-enc.bin?cache=false\" -H \"Authorization: Bearer $KEY\" --count {ln} --warmup 20   # also small4k-plain.bin")
w(f"D get \"$(D presign GET bench/app/s3/small4k-enc.bin)\" --count {ln} --warmup 20 --quickack   # _qa: raw SigV4-presigned GET of the object FileManager stored")
w(f"D get \"$(D presign GET bench/app/s3/small4k-enc.bin)\" --count {fn} --warmup 5 [--fresh]       # raw_enc (reqwest, kept alive) / raw_enc_fresh")
w(f"D get \"$NGINX_PROXY/<the raw URL's path and query>\" --count {ln} --warmup 20   # nginx_proxy: proxy_pass to Garage, Host set to Garage's (see run.sh)")
w(f"# group 4 (pairs 3, 5): {bn} sequential 64 MiB GETs per side per round")
w(f"D get \"$FM/v1/files/bench/app/s3/big64-enc.bin?cache=false\" -H \"Authorization: Bearer $KEY\" --count {bn}   # also big64-plain.bin (uploaded with encrypt=false)")
w(f"D get \"$(D presign GET bench/app/s3/big64-enc.bin)\" --count {bn}   # also big64-plain.bin, and through $NGINX_PROXY (nginx_proxy)")
w(f"D get $RCLONE/big64.bin --count {bn}; D get $RCLONE_NOCACHE/big64.bin --count {bn}   # rclone --vfs-cache-mode full / off")
w(f"D get \"$FM/v1/files/bench/app/s3/big64-enc.bin\" -H \"Authorization: Bearer $KEY\" --count {bn}   # fm_enc_cached: through the large-file tier (copy made by a first GET)")
w(f"# group 5 (pair 4): {un} 256 MiB PUT per side per round; VmHWM reset (echo 5 > /proc/PID/clear_refs) before each FileManager upload, read after")
w("D put \"$FM/v1/files/bench/app/s3/up256.bin?encrypt=true&cache=false\" --size 268435456 -H \"Authorization: Bearer $KEY\"   # and &compress=true")
w("D put \"$(D presign PUT bench/app/raw/up256.bin)\" --size 268435456                 # raw: one presigned PUT (UNSIGNED-PAYLOAD)")
w("D s3put bench/app/raw/os256.bin --size 268435456 [--unsigned]                      # object_store multipart, 8 MiB parts, 2 in flight")
w("# pair 6: interleaved library rounds (15 in full mode, 5 in quick), one JSON line per batch")
w("FM_PAIRED_ROUNDS=15 cargo bench -p filemanager --bench paired")
w("# criterion (full mode only), with CRITERION_HOME in a temp dir; medians read from its estimates.json")
w("cargo bench -p filemanager --bench overhead; cargo bench -p filemanager-codec; cargo bench -p filemanager-cache")
w("```\n")
with open(out_path, "w") as f:
    f.write("\n".join(out) + "\n")
