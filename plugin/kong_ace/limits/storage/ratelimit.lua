-- kong-ace rate-limit counters. ARGV[1] names the operation; all work for one request happens in
-- one call, so it is atomic across every window and every gateway node.
local op = ARGV[1]

if op == "acquire" then
  -- KEYS: current, previous counter of window 1, then of window 2, ...
  -- ARGV[2..]: limit, weight of the previous window, ttl (seconds) per window.
  -- Returns {allowed (0|1), current 1, previous 1, current 2, previous 2, ...} before charging.
  local out = {0}
  local ok = true
  local n = #KEYS / 2
  for i = 1, n do
    local a = 2 + (i - 1) * 3
    local limit = tonumber(ARGV[a])
    local weight = tonumber(ARGV[a + 1])
    local cur = tonumber(redis.call("GET", KEYS[2 * i - 1]) or 0)
    local prev = 0
    if weight > 0 then
      prev = tonumber(redis.call("GET", KEYS[2 * i]) or 0)
    end
    -- Same expression as the in-memory store, so both decide identically.
    if cur + prev * weight + 1 > limit then
      ok = false
    end
    out[2 * i] = cur
    out[2 * i + 1] = prev
  end
  if ok then
    out[1] = 1
    for i = 1, n do
      local key = KEYS[2 * i - 1]
      redis.call("INCR", key)
      redis.call("EXPIRE", key, ARGV[2 + (i - 1) * 3 + 2])
    end
  end
  return out
end

if op == "sync" then
  -- KEYS: counters. ARGV[2..]: delta, ttl per counter. Adds each node-local delta and returns
  -- the cluster totals, so one call both pushes and pulls.
  local out = {}
  for i = 1, #KEYS do
    local delta = tonumber(ARGV[2 * i])
    if delta ~= 0 then
      out[i] = redis.call("INCRBY", KEYS[i], delta)
      redis.call("EXPIRE", KEYS[i], ARGV[2 * i + 1])
    else
      out[i] = tonumber(redis.call("GET", KEYS[i]) or 0)
    end
  end
  return out
end

return redis.error_reply("kong-ace ratelimit.lua: unknown operation " .. tostring(op))
