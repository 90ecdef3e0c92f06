-- wrk script for bench/intake.py: replays pre-signed raw HTTP requests, each thread its own share,
-- so that every request is a distinct delivery of a distinct run. Signing happens in Python before the
-- run (wrk's LuaJIT has no HMAC); the timestamps stay inside the verifier's tolerance for a round.
-- Usage: wrk -s bench/intake.lua URL -- REQUESTS_FILE THREADS
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local reqs = {}
local idx = 0

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  local nthreads = tonumber(args[2])
  local i = 0
  for r in string.gmatch(data, "([^%z]+)%z") do
    if i % nthreads == tid then
      reqs[#reqs + 1] = r
    end
    i = i + 1
  end
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local s = summary
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    s.requests, s.duration, s.errors.status, s.errors.connect, s.errors.read, s.errors.write,
    s.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
