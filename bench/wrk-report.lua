-- wrk script of bench/run.sh: at the end of a run, appends one JSON line with the summary
-- (requests/s, latency percentiles in microseconds, errors) to the file named by $OUT,
-- labelled with $LABEL. No per-request Lua, so it does not slow wrk down.
done = function(summary, latency, requests)
  local e = summary.errors
  local line = string.format(
    '{"label":"%s","kind":"wrk","requests":%d,"duration_us":%d,"bytes":%d,"rps":%.1f,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    os.getenv("LABEL") or "", summary.requests, summary.duration, summary.bytes,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout)
  local f = assert(io.open(os.getenv("OUT"), "a"))
  f:write(line)
  f:close()
end
