-- wrk script: random known and unknown addresses of the generated mirror.
local users = tonumber(os.getenv("ROSTER_BENCH_USERS") or "333334")
local key = os.getenv("ROSTER_BENCH_KEY")
wrk.headers["Authorization"] = "Bearer " .. key
math.randomseed(os.time())

request = function()
  local r = math.random()
  local i = math.random(1, users)
  local path
  if r < 0.4 then
    path = "/v1/recipients/first" .. i .. ".last" .. i .. "@contoso.com"
  elseif r < 0.6 then
    path = "/v1/recipients/u" .. i .. "+tag@contoso.com"
  elseif r < 0.7 then
    path = "/v1/recipients/alias" .. i .. "@fabrikam.com"
  else
    path = "/v1/recipients/nobody" .. i .. "@contoso.com"
  end
  return wrk.format("GET", path)
end

-- Count answers by status so the report shows accepts, rejects and any error.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for status, n in pairs(c) do
      total[status] = (total[status] or 0) + n
    end
  end
  for status, n in pairs(total) do
    io.write(string.format("status %d: %d\n", status, n))
  end
end
