--[[
  scope: read scopes exactly as admission sees them now: the counters of the
  current period, the effective limit (limit + carry + adjust) and where
  admission stops. Computes and stores a new period's carry on first touch,
  as reserve would (the scheduler calls this at each boundary; running it
  twice, or on two instances at once, stores the same value).

  Input:
    KEYS[1]    open-reservations zset (only to route the call to the slot of the hash tag)
    ARGV[1]    now, epoch ms
    ARGV[2]    key base (see reserve.lua)
    ARGV[3]    periods now, JSON (as in reserve.lua)
    ARGV[4..]  scope bases

  Output: one entry per base:
    { scope id, limit, ceiling, used, reserved, carry, adjust, exemptUsed, exemptReserved,
      unit, gpu-ms used, gpu-ms reserved, units used, units reserved, usd used, usd reserved }
    limit, ceiling, used, reserved, carry and adjust are in the limit's unit
    (h, u or d: GPU-ms, milli-units, micro-dollars); the last six are every
    unit's counters (includes/scopes.lua).
    limit '': none set; ceiling '': none (soft without grace, or no limit).
    (Not -1: an adjustment can take an effective limit to -1 GPU-ms.)
    Numbers are returned as strings (%.0f), exact beyond 2^31.
]]
-- @include scopes

local now, base = ARGV[1], ARGV[2]
local scopeOf = scopeReader(base, cjson.decode(ARGV[3]), tonumber(now))
local out = {}
for a = 4, #ARGV do
  local s = scopeOf(ARGV[a])
  -- A GPU cap not set: nothing counted against it.
  s = s or { id = ARGV[a], key = base .. 'scope:' .. ARGV[a], used = 0, reserved = 0 }
  writeInit(s)
  writeCrossed(s)
  local c = redis.call('HMGET', s.key, 'carry', 'adjust', 'exemptUsed', 'exemptReserved',
    'used', 'reserved', 'unitsUsed', 'unitsReserved', 'usdUsed', 'usdReserved')
  local f = function(n) return string.format('%.0f', n) end
  local row = { s.id, s.limit and f(s.limit) or '', s.ceiling and f(s.ceiling) or '', f(s.used), f(s.reserved),
    c[1] or '0', c[2] or '0', c[3] or '0', c[4] or '0', s.perGpu and 'g' or UNIT_LETTER[s.unit] or 'g' }
  for i = 5, 10 do row[#row + 1] = c[i] or '0' end
  out[#out + 1] = row
end
return out
