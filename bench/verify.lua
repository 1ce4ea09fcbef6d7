-- wrk script of the warm-up run: counts every response by body ("bN\n" names backend bN), by
-- Set-Cookie header and by status, so `cargo xtask bench` checks who served the traffic under load.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  set_cookie = 0
  not_200 = 0
end

function response(status, headers, body)
  if status ~= 200 then
    not_200 = not_200 + 1
  end
  for name, _ in pairs(headers) do
    if string.lower(name) == "set-cookie" then
      set_cookie = set_cookie + 1
    end
  end
  local backend = string.match(body, "^(b%d+)\n$") or "other"
  bodies[backend] = (bodies[backend] or 0) + 1
end

function done(summary, latency, requests)
  local totals, set, bad = {}, 0, 0
  for _, thread in ipairs(threads) do
    for backend, n in pairs(thread:get("bodies")) do
      totals[backend] = (totals[backend] or 0) + n
    end
    set = set + thread:get("set_cookie")
    bad = bad + thread:get("not_200")
  end
  local parts = {}
  for backend, n in pairs(totals) do
    table.insert(parts, string.format('"%s":%d', backend, n))
  end
  io.write(string.format('STICKY-BENCH-VERIFY {"responses":%d,"set_cookie":%d,"not_200":%d,"bodies":{%s}}\n',
    summary.requests, set, bad, table.concat(parts, ",")))
end
