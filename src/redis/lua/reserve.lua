--[[
  reserve: for each intake job of a batch, in order, hold its estimated GPU
  time against every scope it touches, all or nothing per job; a job that
  does not fit is recorded as held, in its project's first-in first-out held
  list. Each job's decision sees the jobs before it, exactly as if each had
  its own call; a batch only shares the cost of the call and of the writes.
  Idempotent per job id: a retried job changes nothing and says where it is.

  First in, first out: while a project has held jobs, a new job of that
  project is held behind them even if it would fit; they leave by release.

  Input:
    KEYS[1]    open-reservations zset     (member job id, score admittedAt)
    KEYS[2]    ledger stream              (drained into Postgres)
    KEYS[3]    all-held zset              (member job id, score submission order)
    ARGV[1]    now, epoch ms
    ARGV[2]    a scope with no limit configured: 'hold' the job, or 'reject' it
    ARGV[3]    key base, '<prefix>:' of every gatekeeper key (KEYS[1] without
               'open'); each job's reservation hash, its project's held zset
               and its scopes' counter hashes are built from it. They carry the
               same hash tag as KEYS, so they live in the same cluster slot.
    ARGV[4]    the batch, JSON: one array per job, in order:
                 [ job id, submission order (the held line is sorted by it),
                   amount (integer GPU-ms > 0, as a string), project,
                   job metadata (a JSON string, copied to the ledger),
                   [ scope id, ... ] ]
               One argument rather than several per job: Node encodes one JSON
               string much faster than the client encodes many small arguments.

  Output: one entry per job, in order:
    { 1, amount }               reserved now
    { 2, amount, state }        reserved before (a retry); state 'reserved' or 'settled'
    { 0, n, <shortfall> * n }   does not fit: held now; five fields per failing scope
                                (scope id, code, limit, used, reserved), code 1 = no
                                limit configured (limit -1), 2 = would pass the limit
    { 3, n, <shortfall> * n }   held before (a retry): still held; shortfalls as of now
    { 4, ahead, n, <shortfall> * n }
                                held now behind `ahead` older held jobs of its project
                                (with its own shortfalls, if any)
    { 5 }                       cancelled by an admin before
    { 7, scope }                rejected: `scope` has no limit and ARGV[2] is 'reject'

  Every read comes before the first write. Counter deltas are summed as Lua
  numbers (exact below 2^53 GPU-ms) and written with %.0f, never tostring
  (which keeps only 14 digits).
]]
-- @include shortfalls

local openKey, ledgerKey, allHeldKey = KEYS[1], KEYS[2], KEYS[3]
local now, noLimit, base = ARGV[1], ARGV[2], ARGV[3]
local batch = cjson.decode(ARGV[4])

local counters = {}   -- scope key -> { limit, used, reserved, delta }
local function counter(key)
  local c = counters[key]
  if not c then
    c = readCounter(key)
    c.delta = 0
    counters[key] = c
  end
  return c
end

local results = {}
local admitted, held = {}, {}
local seenHere = {}     -- reservation key -> result, for a job listed twice in one batch
local heldCount = {}    -- project held key -> jobs in its line (read once, then counted here)
for j = 1, #batch do
  local job = batch[j]
  local jobId, order, amount, meta, scopeIds = job[1], job[2], job[3], job[5], job[6]
  local resKey, heldKey, need = base .. 'res:' .. jobId, base .. 'held:' .. job[4], tonumber(amount)
  local n = #scopeIds
  local scopeKeys = {}
  for i = 1, n do scopeKeys[i] = base .. 'scope:' .. scopeIds[i] end

  local prior = redis.call('HMGET', resKey, 'amount', 'state')
  local r
  if seenHere[resKey] then
    r = seenHere[resKey]
  elseif prior[2] == 'reserved' or prior[2] == 'settled' then
    r = { 2, tonumber(prior[1]), prior[2] }
  elseif prior[2] == 'cancelled' then
    r = { 5 }
  else
    local short = shortfalls(counter, scopeKeys, scopeIds, need)
    local unknown = nil
    for i = 2, #short, 5 do
      if short[i] == 1 then unknown = short[i - 1]; break end
    end
    if noLimit == 'reject' and unknown and prior[2] ~= 'held' then
      r = { 7, unknown }
    elseif prior[2] == 'held' then
      r = { 3, #short / 5 }
      for _, v in ipairs(short) do r[#r + 1] = v end
    else
      local ahead = heldCount[heldKey]
      if not ahead then ahead = redis.call('ZCARD', heldKey) end
      heldCount[heldKey] = ahead
      if ahead > 0 or #short > 0 then
        heldCount[heldKey] = ahead + 1
        held[#held + 1] = { resKey, heldKey, jobId, amount, table.concat(scopeIds, ','), meta, order }
        if ahead > 0 then
          r = { 4, ahead, #short / 5 }
        else
          r = { 0, #short / 5 }
        end
        for _, v in ipairs(short) do r[#r + 1] = v end
      else
        for i = 1, n do
          local c = counter(scopeKeys[i])
          c.reserved = c.reserved + need
          c.delta = c.delta + need
        end
        admitted[#admitted + 1] = { resKey, jobId, amount, table.concat(scopeIds, ','), meta }
        r = { 1, need }
      end
    end
    seenHere[resKey] = (r[1] == 1 and { 2, need, 'reserved' }) or (r[1] == 7 and r) or { 3, 0 }
  end
  results[#results + 1] = r
end

if #admitted > 0 then
  for key, c in pairs(counters) do
    if c.delta > 0 then
      redis.call('HINCRBY', key, 'reserved', string.format('%.0f', c.delta))
    end
  end
  local zadd, xadd = { 'ZADD', openKey }, { 'XADD', ledgerKey, '*', 'kind', 'reserve', 'at', now }
  for _, r in ipairs(admitted) do
    redis.call('HSET', r[1], 'amount', r[3], 'scopes', r[4], 'state', 'reserved', 'admittedAt', now, 'meta', r[5])
    zadd[#zadd + 1] = now; zadd[#zadd + 1] = r[2]
    local x = #xadd
    xadd[x + 1] = 'jobId'; xadd[x + 2] = r[2]; xadd[x + 3] = 'estimated'; xadd[x + 4] = r[3]
    xadd[x + 5] = 'scopes'; xadd[x + 6] = r[4]; xadd[x + 7] = 'meta'; xadd[x + 8] = r[5]
  end
  redis.call(unpack(zadd))
  redis.call(unpack(xadd))
end
for _, h in ipairs(held) do
  redis.call('HSET', h[1], 'amount', h[4], 'scopes', h[5], 'state', 'held', 'heldAt', now, 'meta', h[6])
  redis.call('ZADD', h[2], h[7], h[3])
  redis.call('ZADD', allHeldKey, h[7], h[3])
end
return results
