--[[
  Held lines, shared by reserve and release: one zset per scope base,
  'line:<base>', member job id, score submission order. A job waits behind
  the older members only: a lower order, or the same order and a lower id
  (custom ids in the same ms; as Redis sorts the members of one score).
  Jobs reach Redis out of submission order (concurrent processing, several
  gatekeepers), so a newer job held first must not hold back an older one.
]]

--[[ olderInLine(key, order, jobId): members of the line at `key` before this job (order as a string; '+inf' for none). ]]
local function olderInLine(key, order, jobId)
  local older = redis.call('ZCOUNT', key, '-inf', '(' .. order)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, order, order)) do
    if m < jobId then older = older + 1 end
  end
  return older
end

--[[
  lineCache(base): the lines one reserve call reads, each read once and kept
  up to date as the call holds jobs (it writes them only at the end):
    of(b)                    { key, n, lo, hi (what Redis has: how many, the
                             lowest and highest order), added (orders and ids
                             this call added), addedMax }
    older(L, o, order, id)   members of line L before this job; a new job is
                             usually the newest, answered without a Redis call
    add(b, o, id)            this call holds the job in b's line
    probe(bases)             one EXISTS over the lines of `bases` not read
                             yet: when none exists (no one held: the common
                             case) they are all known empty without a ZCARD
                             each (docs/benchmarks.md, reserve instructions)
    probeList(lists, bases)  before a scope list's lines are first read: the
                             first time, probe every base of `lists` (each
                             { bases }); if some line had anyone, probe this
                             list's `bases` alone (when there are several)
]]
local function lineCache(base)
  local cache = {}
  -- A line known empty and not added to: one shared entry, never written
  -- (add() gives the base its own entry first).
  local EMPTY = { n = 0, added = {}, addedMax = -math.huge }
  local function probe(bases)
    local keys, unread = {}, {}
    for i = 1, #bases do
      if not cache[bases[i]] then
        unread[#unread + 1] = bases[i]
        keys[#keys + 1] = base .. 'line:' .. bases[i]
      end
    end
    -- Chunks of 200: Lua's unpack stops at about 8,000 values.
    for first = 1, #keys, 200 do
      if redis.call('EXISTS', unpack(keys, first, math.min(first + 199, #keys))) > 0 then return false end
    end
    for i = 1, #unread do cache[unread[i]] = EMPTY end
    return true
  end
  local probedAll, allKnown = false, false
  local function probeList(lists, bases)
    if not probedAll then
      probedAll = true
      local all, seen = {}, {}
      for _, l in ipairs(lists) do
        for _, b in ipairs(l.bases) do
          if not seen[b] then seen[b] = true; all[#all + 1] = b end
        end
      end
      allKnown = probe(all)
    end
    if not allKnown and #lists > 1 then probe(bases) end
  end
  local function of(b)
    local L = cache[b]
    if not L then
      local key = base .. 'line:' .. b
      L = { key = key, n = redis.call('ZCARD', key), added = {}, addedMax = -math.huge }
      if L.n > 0 then
        L.lo = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
        L.hi = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
      end
      cache[b] = L
    end
    return L
  end
  local function older(L, o, order, jobId)
    local n = 0
    if L.n > 0 and o >= L.lo then
      n = o > L.hi and L.n or olderInLine(L.key, order, jobId)
    end
    local added = L.added
    if o > L.addedMax then return n + #added / 2 end
    for i = 1, #added, 2 do
      if added[i] < o or (added[i] == o and added[i + 1] < jobId) then n = n + 1 end
    end
    return n
  end
  local function add(b, o, jobId)
    local L = of(b)
    if L == EMPTY then
      L = { key = base .. 'line:' .. b, n = 0, added = {}, addedMax = -math.huge }
      cache[b] = L
    end
    L.added[#L.added + 1] = o
    L.added[#L.added + 1] = jobId
    if o > L.addedMax then L.addedMax = o end
  end
  return { of = of, older = older, add = add, probe = probe, probeList = probeList }
end
