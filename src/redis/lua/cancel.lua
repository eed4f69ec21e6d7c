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

local allHeldKey = KEYS[1]
local base, jobId, retain, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local resKey = base .. 'res:' .. jobId

local r = redis.call('HMGET', resKey, 'state', 'meta', 'lines')
if r[1] ~= 'held' then
  return { -1, r[1] or 'missing' }
end
local project = cjson.decode(r[2]).project
redis.call('ZREM', base .. 'held:' .. project, jobId)
redis.call('HINCRBY', base .. 'held-count', project, -1)
redis.call('ZREM', allHeldKey, jobId)
local left = {}
for l in string.gmatch(r[3] or '', '[^,]+') do
  redis.call('ZREM', base .. 'line:' .. l, jobId)
  left[#left + 1] = l
end
wakeNonEmpty(base, left, now)
redis.call('HSET', resKey, 'state', 'cancelled')
redis.call('EXPIRE', resKey, retain)
return { 1 }
