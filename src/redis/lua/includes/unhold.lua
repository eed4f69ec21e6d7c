--[[
  unhold(base, allHeldKey, jobId, project, linesCsv, retain): a held job
  leaves the held lists and every line it waits in, and is remembered as
  cancelled for `retain` seconds (so a late retry of its intake job is
  rejected, not held again). Nothing was reserved for it: no counter
  changes. Returns the lines it left (the caller signals them: wake.lua).
]]
local function unhold(base, allHeldKey, jobId, project, linesCsv, retain)
  redis.call('ZREM', base .. 'held:' .. project, jobId)
  redis.call('HINCRBY', base .. 'held-count', project, -1)
  redis.call('ZREM', allHeldKey, jobId)
  local left = {}
  for l in string.gmatch(linesCsv or '', '[^,]+') do
    redis.call('ZREM', base .. 'line:' .. l, jobId)
    left[#left + 1] = l
  end
  local resKey = base .. 'res:' .. jobId
  redis.call('HSET', resKey, 'state', 'cancelled')
  redis.call('EXPIRE', resKey, retain)
  return left
end
