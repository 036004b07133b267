-- wrk script: POST a unique booking per request (booking_ref = prefix-thread-counter); the summary
-- is printed as one RESULT line that benchmarks/service_throughput.py parses.
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  prefix = args[1] or "R"
end
request = function()
  counter = counter + 1
  local ref = prefix .. "-" .. tid .. "-" .. counter
  local body = '{"customer_id":"c' .. tid .. '-' .. counter .. '","parent_name":"Test Parent","child_name":"Test Child","phone":"+919876543210","event_name":"Camp","venue":"Hall","event_date":"2030-01-01","booking_ref":"' .. ref .. '","amount":"1500","payment_method":"UPI"}'
  return wrk.format("POST", "/api/bookings", {["Content-Type"]="application/json"}, body)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f connect=%d read=%d write=%d timeout=%d status=%d\n",
    summary.requests, summary.duration/1e6, summary.requests/(summary.duration/1e6), latency:percentile(50)/1000, latency:percentile(99)/1000, latency.max/1000,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status))
end
