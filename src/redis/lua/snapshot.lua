--[[
  snapshot: every counter with amounts (the registry set the scripts keep)
  and the ledger stream's position, read at one instant. Every script that
  changes used/reserved registers the counter and appends its ledger entry in
  the same call, so these counters reflect exactly the ledger entries up to
  the returned id: the drift audit compares them with the Postgres ledger
  rows up to that id.

  Input:
    KEYS[1]    ledger stream
    KEYS[2]    counter registry set (counter ids)
    ARGV[1]    key base ('<prefix>:'; counter hashes are '<base>scope:<id>')

  Output: { position, 1 if the stream exists else 0, { id, used, reserved, exemptUsed, exemptReserved,
    unitsUsed, unitsReserved, usdUsed, usdReserved } per counter }
    position: the stream's last entry id; with no stream (nothing yet, or
    Redis lost it) the last id of the previous millisecond by the server's
    clock, which orders after every entry written before now and before every
    one written from now on (even within this same millisecond).
]]
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = string.format('%.0f', ms - 1) .. '-9223372036854775807' -- (the largest sequence the ledger's bigint column holds)
local exists = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    -- A stream made again after a loss (a consumer group's MKSTREAM) reads
    -- '0-0' until its first entry: that is "no stream" too.
    if info[i] == 'last-generated-id' and info[i + 1] ~= '0-0' then
      last = info[i + 1]
      exists = 1
    end
  end
end
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local c = redis.call('HMGET', ARGV[1] .. 'scope:' .. id, 'used', 'reserved', 'exemptUsed', 'exemptReserved',
    'unitsUsed', 'unitsReserved', 'usdUsed', 'usdReserved')
  local row = { id }
  for i = 1, 8 do row[i + 1] = c[i] or '0' end
  out[#out + 1] = row
end
return { last, exists, out }
