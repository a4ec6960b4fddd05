-- wrk script for bench/run.py: POST the JSON bodies in the file named by $BENCH_BODY, one
-- per line, in turn (each wrk thread starts at a different line), and print the run's
-- summary as one line of JSON prefixed "BENCH ". Non-2xx answers count as errors
-- (summary.errors.status), as do socket errors.

local path = os.getenv("BENCH_BODY")
local counter = 0

function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end

local requests = {}
local index = 0

function init(args)
  local file = assert(io.open(path, "rb"), "BENCH_BODY must name a readable file")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  for line in file:lines() do
    if #line > 0 then
      requests[#requests + 1] = wrk.format(nil, nil, nil, line)
    end
  end
  file:close()
  assert(#requests > 0, "BENCH_BODY holds no body")
  -- Threads start spread over the bodies, so they do not send the same one at once.
  index = ((offset or 0) * 7) % #requests
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
