--[[
  Reserve's writes for the jobs it held: each job's record, and its places
  in the held lists and lines, gathered per key (a burst past a limit holds
  most of a batch). held: { resKey, project, jobId, amount, bases csv, meta,
  order, lines it joins, submitted at ('' if unknown), misfits text } per job.
]]
--[[ callChunked(cmd, key, list, step): cmd key list..., `step` values per call. ]]
local function callChunked(cmd, key, list, step)
  for first = 1, #list, step do
    redis.call(cmd, key, unpack(list, first, math.min(first + step - 1, #list)))
  end
end
--[[ writeHeld(held, base, allHeldKey, now, CHUNK): see above. ]]
local function writeHeld(held, base, allHeldKey, now, CHUNK)
  local places, placeKeys = {}, {}
  local heldProjects, heldIn = {}, {}  -- projects in first-hold order; project -> jobs held now
  local function place(key, score, member)
    local list = places[key]
    if not list then list = {}; places[key] = list; placeKeys[#placeKeys + 1] = key end
    list[#list + 1] = score; list[#list + 1] = member
  end
  for _, h in ipairs(held) do
    if h[9] == '' then
      redis.call('HSET', h[1], 'amount', h[4], 'bases', h[5], 'state', 'held', 'heldAt', now, 'meta', h[6], 'lines', table.concat(h[8], ','), 'misfits', h[10])
    else
      redis.call('HSET', h[1], 'amount', h[4], 'bases', h[5], 'state', 'held', 'heldAt', now, 'meta', h[6], 'lines', table.concat(h[8], ','), 'misfits', h[10], 'ts', h[9])
    end
    place(base .. 'held:' .. h[2], h[7], h[3])
    place(allHeldKey, h[7], h[3])
    for _, b in ipairs(h[8]) do place(base .. 'line:' .. b, h[7], h[3]) end
    if not heldIn[h[2]] then heldIn[h[2]] = 0; heldProjects[#heldProjects + 1] = h[2] end
    heldIn[h[2]] = heldIn[h[2]] + 1
  end
  for _, key in ipairs(placeKeys) do callChunked('ZADD', key, places[key], 2 * CHUNK) end
  for _, project in ipairs(heldProjects) do redis.call('HINCRBY', base .. 'held-count', project, heldIn[project]) end
end
