-- wrk script: POST JSON bodies read from a file (one per line), cycling; prints a JSON summary.
-- usage: wrk -t1 -cN -dS --latency -s post_bodies.lua URL -- BODIES.jsonl
local bodies = {}
local counter = 0

function init(args)
  local path = args[1]
  for line in io.lines(path) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  if #bodies == 0 then error("no bodies in " .. tostring(path)) end
  -- threads start at different offsets so they do not send the same body in lockstep
  counter = math.random(0, #bodies - 1)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = bodies[(counter % #bodies) + 1]
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99)))
end
