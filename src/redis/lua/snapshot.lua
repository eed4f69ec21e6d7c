--[[
  snapshot: the counters of the given scopes and the ledger stream's position,
  read at one instant. Every script that changes used/reserved appends its
  ledger entry in the same call, so these counters reflect exactly the ledger
  entries up to the returned id: the drift audit compares them with the
  Postgres ledger rows up to that id.

  Input:
    KEYS[1]    ledger stream
    ARGV[1..]  counter hash keys

  Output: { last ledger entry id ('0-0' if none), { used, reserved, exemptUsed, exemptReserved } per key }
]]
local last = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
end
local out = {}
for i = 1, #ARGV do
  local c = redis.call('HMGET', ARGV[i], 'used', 'reserved', 'exemptUsed', 'exemptReserved')
  out[i] = { c[1] or '0', c[2] or '0', c[3] or '0', c[4] or '0' }
end
return { last, out }
