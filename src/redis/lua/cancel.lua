--[[
  cancel: an admin cancels a held job. It leaves the held lists and lines and is
  remembered as cancelled (so a late retry of its intake job is rejected, not
  held again). Nothing was reserved for it, so no counter changes.

  Input:
    KEYS[1]    all-held zset
    ARGV[1]    key base, '<prefix>:' (see release.lua)
    ARGV[2]    job id
    ARGV[3]    seconds to remember the cancellation
    ARGV[4]    now, epoch ms (the wake signal's time)

  Output:
    { 1 }           cancelled now
    { -1, state }   not held (state: 'reserved', 'settled', 'cancelled' or 'missing')
]]
-- @include wake
-- @include unhold

local allHeldKey = KEYS[1]
local base, jobId, retain, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local r = redis.call('HMGET', base .. 'res:' .. jobId, 'state', 'meta', 'lines')
if r[1] ~= 'held' then
  return { -1, r[1] or 'missing' }
end
wakeNonEmpty(base, unhold(base, allHeldKey, jobId, cjson.decode(r[2]).project, r[3], retain), now)
return { 1 }
