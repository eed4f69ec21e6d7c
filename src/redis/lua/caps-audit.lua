--[[
  caps-audit: for the drift audit (src/accounting/drift.ts), each GPU cap's
  counter of GPUs in flight and the sum of the gpus of the open reservations
  whose record lists it, at one instant. It reads every open reservation's
  record (two fields each), so it runs for about a microsecond per open
  reservation; with no cap set it reads nothing.

  Input:
    KEYS[1]    open-reservations zset
    ARGV[1]    key base (see reserve.lua)

  Output: { cap, counter, sum, cap, counter, sum, ... } for every cap set and
  every cap an open reservation lists (numbers as strings).
]]
local base = ARGV[1]
local capsKey = base .. 'caps'
if redis.call('EXISTS', capsKey) == 0 then return {} end
local sums, order = {}, {}
local function add(cap, n)
  if not sums[cap] then sums[cap] = 0; order[#order + 1] = cap end
  sums[cap] = sums[cap] + n
end
for _, cap in ipairs(redis.call('HKEYS', capsKey)) do add(cap, 0) end
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local r = redis.call('HMGET', base .. 'res:' .. id, 'caps', 'gpus')
  if r[1] then
    for cap in string.gmatch(r[1], '[^,]+') do add(cap, tonumber(r[2]) or 0) end
  end
end
local out = {}
for _, cap in ipairs(order) do
  out[#out + 1] = cap
  out[#out + 1] = redis.call('HGET', base .. 'scope:' .. cap, 'reserved') or '0'
  out[#out + 1] = string.format('%d', sums[cap])
end
return out
