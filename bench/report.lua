-- wrk script of every measured run: no per-request Lua (wrk stays on its fast path); done() prints
-- the run's totals and latency percentiles (microseconds) as one JSON line for `cargo xtask bench`.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'STICKY-BENCH-RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
