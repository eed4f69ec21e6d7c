--[[
  caps-count: count jobs already running against a GPU cap that was just
  set (src/accounting/gpu-caps.ts runs it over the open reservations in
  chunks). Each job given is added once, atomically with its record: its
  'caps' field gains the cap and the cap's counter its gpus, so settle takes
  them off again (includes/caps.lua). A job already counted (reserve or
  release counted it, or an earlier pass), settled, exempt or not reserved
  is skipped; so chunks may overlap and a pass may run twice.

  Input:
    KEYS[1]    open-reservations zset (only to route the call to the slot of the hash tag)
    ARGV[1]    key base (see reserve.lua)
    ARGV[2]    cap base, e.g. 'gpus-project:alpha'
    ARGV[3..]  job id, gpus, job id, gpus, ...

  Output: how many jobs it added.
]]
local base, cap = ARGV[1], ARGV[2]
local counter = base .. 'scope:' .. cap
local added = 0
for a = 3, #ARGV, 2 do
  local resKey = base .. 'res:' .. ARGV[a]
  local r = redis.call('HMGET', resKey, 'state', 'caps', 'exempt', 'gpus')
  if r[1] == 'reserved' and r[3] ~= '1' and not string.find(',' .. (r[2] or '') .. ',', ',' .. cap .. ',', 1, true) then
    local gpus = r[4] or ARGV[a + 1]
    redis.call('HSET', resKey, 'caps', r[2] and (r[2] .. ',' .. cap) or cap, 'gpus', gpus)
    redis.call('HINCRBY', counter, 'reserved', gpus)
    added = added + 1
  end
end
return added
