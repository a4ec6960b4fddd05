-- wrk script for bench/run.py: POST the JSON body in the file named by $BENCH_BODY on
-- every request, and print the run's summary as one line of JSON prefixed "BENCH ".
-- Non-2xx answers count as errors (summary.errors.status), as do socket errors.

local path = os.getenv("BENCH_BODY")
local file = assert(io.open(path, "rb"), "BENCH_BODY must name a readable file")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
