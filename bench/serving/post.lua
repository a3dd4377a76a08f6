-- wrk script: POSTs the JSON body in the file BENCH_BODY, with X-API-Key from BENCH_KEY when
-- set, and counts responses outside 2xx (run.py fails the run when "bench_non2xx" is not 0).

local path = os.getenv("BENCH_BODY")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
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
