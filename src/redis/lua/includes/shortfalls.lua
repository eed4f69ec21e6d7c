--[[
  shortfalls(counterOf, scopeKeys, scopeIds, need): the scopes a job of
  `need` GPU-ms does not fit, as a flat list of five fields each
  (scope id, code, limit, used, reserved); code 1 = no limit (limit -1),
  2 = would pass the limit. Empty when it fits everywhere. `counterOf(key)`
  returns { limit, used, reserved } (numbers; limit nil when unset).
]]
local function shortfalls(counterOf, scopeKeys, scopeIds, need)
  local out = {}
  for i = 1, #scopeKeys do
    local c = counterOf(scopeKeys[i])
    local code = nil
    if not c.limit then code = 1
    elseif c.used + c.reserved + need > c.limit then code = 2 end
    if code then
      local m = #out
      out[m + 1] = scopeIds[i]; out[m + 2] = code
      out[m + 3] = c.limit or -1; out[m + 4] = c.used; out[m + 5] = c.reserved
    end
  end
  return out
end

--[[ readCounter(key): a scope's counters, read now. ]]
local function readCounter(key)
  local h = redis.call('HMGET', key, 'limit', 'used', 'reserved')
  return { limit = h[1] and tonumber(h[1]), used = tonumber(h[2] or '0'), reserved = tonumber(h[3] or '0') }
end

--[[ split(s): the comma-separated parts of s. ]]
local function split(s)
  local parts = {}
  for p in string.gmatch(s, '[^,]+') do parts[#parts + 1] = p end
  return parts
end
