-- wrk script for bench/gateway/run.py. GET with a bearer token (BENCH_TOKEN), or POST of the
-- JSON body in the file BENCH_BODY with X-API-Key from BENCH_KEY. Counts responses outside
-- 2xx; run.py fails the run when "bench_non2xx" is not 0.

local body_path = os.getenv("BENCH_BODY")
if body_path ~= nil and body_path ~= "" then
  local file = assert(io.open(body_path, "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
else
  wrk.method = "GET"
end
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["X-API-Key"] = key
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  responses = 0
  non2xx = 0
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local total, bad = 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("responses")
    bad = bad + thread:get("non2xx")
  end
  io.write(string.format("bench_responses: %d\n", total))
  io.write(string.format("bench_non2xx: %d\n", bad))
end
