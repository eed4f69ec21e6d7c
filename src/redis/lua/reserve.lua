--[[
  reserve: for each intake job of a batch, in order, hold its estimated GPU
  time against every scope it touches (project budget, user quotas, run cap;
  see includes/scopes.lua), all or nothing per job. A job that does not fit
  is recorded as held, in line for each scope it waits on. Each job's decision
  sees the jobs before it, exactly as if each had its own call; a batch only
  shares the cost of the call and of the writes. Idempotent per job id: a
  retried job changes nothing and says where it is.

  First in, first out per scope: a held job waits in the line of every scope
  it did not fit. While a scope's line is not empty, a new job that touches
  that scope is held behind it even if it would fit; jobs leave lines by
  release (an admin, or the scheduler when a quota period renews). So one
  user's exhausted quota holds that user's jobs, not the whole project's.

  Exempt job types (a set admins configure) are admitted without counting
  against any limit; their hours are tracked in exemptReserved/exemptUsed.

  Events (appended to the events stream in the same atomic step, see
  includes/scopes.lua): THRESHOLD_CROSSED once per threshold per crossing,
  BUDGET_EXHAUSTED when a job is held at a hard limit, JOB_HELD per new hold.

  Input:
    KEYS[1]    open-reservations zset     (member job id, score admittedAt)
    KEYS[2]    ledger stream              (drained into Postgres)
    KEYS[3]    all-held zset              (member job id, score submission order)
    KEYS[4]    exempt job types set
    ARGV[1]    now, epoch ms
    ARGV[2]    a required scope with no limit (an unknown project): 'hold' the job, or 'reject' it
    ARGV[3]    key base, '<prefix>:' of every gatekeeper key (KEYS[1] without
               'open'); reservation, held, line, definition and counter keys
               are built from it. They carry the same hash tag as KEYS, so
               they live in the same cluster slot.
    ARGV[4]    periods now, JSON: { day|week|month: { label, prev, prevStart } }
    ARGV[5]    the batch, JSON: one array per job, in order:
                 [ job id, submission order (the held lines are sorted by it),
                   amount (integer GPU-ms > 0, as a string), project,
                   job metadata (a JSON string, copied to the ledger),
                   [ scope base, ... ], job type ('' if none) ]
               One argument rather than several per job: Node encodes one JSON
               string much faster than the client encodes many small arguments.
    ARGV[6]    '1': a dry run (preflight): decide every job exactly as above,
               write nothing, and answer { results, warnings } where warnings
               lists the events the batch would raise as { type, scope,
               threshold or '' } (JOB_HELD left out: results say it).

  Output: one entry per job, in order:
    { 1, amount, scope ids, soft, exempt }
                                reserved now; scope ids comma separated (the
                                counters it was reserved in); soft: bases of
                                soft limits it passed (comma separated, may be
                                ''); exempt: 1 if its type is exempt
    { 2, amount, state, scope ids, exempt }
                                reserved before (a retry); state 'reserved' or 'settled'
    { 0, n, <misfit> * n }      does not fit: held now; five fields per scope
                                (base, code, limit, used, reserved), codes as in
                                includes/scopes.lua misfits()
    { 3, n, <misfit> * n }      held before (a retry): still held; misfits as of now
    { 4, ahead, line, n, <misfit> * n }
                                held now behind `ahead` older held jobs in the
                                line of scope `line` (with its own misfits, if any)
    { 5 }                       cancelled by an admin before
    { 7, scope }                rejected: `scope` has no limit and ARGV[2] is 'reject'

  Every read comes before the first write. Counter deltas are summed as Lua
  numbers (exact below 2^53 GPU-ms) and written with %.0f, never tostring
  (which keeps only 14 digits).
]]
-- @include scopes

local openKey, ledgerKey, allHeldKey, exemptKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, noLimit, base, dry = ARGV[1], ARGV[2], ARGV[3], ARGV[6] == '1'
local scopeOf = scopeReader(base, cjson.decode(ARGV[4]), tonumber(now))
local batch = cjson.decode(ARGV[5])

local exemptTypes = {}  -- job type -> bool, read once per batch
local function isExempt(jobType)
  if jobType == '' then return false end
  if exemptTypes[jobType] == nil then exemptTypes[jobType] = redis.call('SISMEMBER', exemptKey, jobType) == 1 end
  return exemptTypes[jobType]
end
local lineLength = {}   -- scope base -> jobs in its line (read once, then counted here)
local function waiting(scopeBase)
  local n = lineLength[scopeBase]
  if not n then
    n = redis.call('ZCARD', base .. 'line:' .. scopeBase)
    lineLength[scopeBase] = n
  end
  return n
end

local results = {}
local events = {}
local touched = {}      -- scope states to write, in first-touch order
local admitted, held = {}, {}
local seenHere = {}     -- reservation key -> result, for a job listed twice in one batch
for j = 1, #batch do
  local job = batch[j]
  local jobId, order, amount, project, meta, bases, jobType = job[1], job[2], job[3], job[4], job[5], job[6], job[7]
  local resKey, need = base .. 'res:' .. jobId, tonumber(amount)

  local prior = redis.call('HMGET', resKey, 'amount', 'state', 'scopes', 'exempt')
  local r
  if seenHere[resKey] then
    r = seenHere[resKey]
  elseif prior[2] == 'reserved' or prior[2] == 'settled' then
    r = { 2, tonumber(prior[1]), prior[2], prior[3], prior[4] == '1' and 1 or 0 }
  elseif prior[2] == 'cancelled' then
    r = { 5 }
  else
    local scopes = {}
    for i, b in ipairs(bases) do
      scopes[i] = scopeOf(b)
      if not touched[b] then touched[b] = true; touched[#touched + 1] = scopes[i] end
    end
    local exempt = prior[2] ~= 'held' and isExempt(jobType)
    local short = exempt and {} or misfits(scopes, need)
    local unknown = nil
    for i = 2, #short, 5 do
      if short[i] == 1 then unknown = short[i - 1]; break end
    end
    local ahead, line = 0, nil
    if not exempt and prior[2] ~= 'held' then
      for _, b in ipairs(bases) do
        local n = waiting(b)
        if n > ahead then ahead, line = n, b end
      end
    end
    if noLimit == 'reject' and unknown and prior[2] ~= 'held' then
      r = { 7, unknown }
    elseif prior[2] == 'held' then
      r = { 3, #short / 5 }
      for _, v in ipairs(short) do r[#r + 1] = v end
    elseif ahead > 0 or #short > 0 then
      -- In line for every scope it did not fit and every scope it waits behind.
      local lines, inLine = {}, {}
      for i = 1, #short, 5 do lines[#lines + 1] = short[i]; inLine[short[i]] = true end
      for _, b in ipairs(bases) do
        if not inLine[b] and waiting(b) > 0 then lines[#lines + 1] = b end
      end
      for _, b in ipairs(lines) do lineLength[b] = waiting(b) + 1 end
      local byBase = {}
      for _, sc in ipairs(scopes) do byBase[sc.base] = sc end
      local flat = {}
      for i = 1, #short, 5 do
        if short[i + 1] == 2 then exhausted(byBase[short[i]], jobId, events) end
        flat[#flat + 1] = table.concat({ short[i], short[i + 1], string.format('%.0f', short[i + 2]),
          string.format('%.0f', short[i + 3]), string.format('%.0f', short[i + 4]) }, '|')
      end
      events[#events + 1] = { 'JOB_HELD', 'jobId', jobId, 'meta', meta, 'amount', amount,
        'ahead', tostring(ahead), 'line', line or '', 'misfits', table.concat(flat, ';') }
      held[#held + 1] = { resKey, project, jobId, amount, table.concat(bases, ','), meta, order, lines }
      r = ahead > 0 and { 4, ahead, line, #short / 5 } or { 0, #short / 5 }
      for _, v in ipairs(short) do r[#r + 1] = v end
    else
      local soft = exempt and {} or softOver(scopes, need)
      for _, s in ipairs(scopes) do
        if exempt then
          s.exemptDelta = s.exemptDelta + need
        else
          s.reserved = s.reserved + need
          s.delta = s.delta + need
          crossings(s, jobId, events)
          rearmExhausted(s)
        end
      end
      local scopeIds = ids(scopes)
      admitted[#admitted + 1] = { resKey, jobId, amount, scopeIds, meta, table.concat(bases, ','), exempt }
      r = { 1, need, scopeIds, table.concat(soft, ','), exempt and 1 or 0 }
    end
    if r[1] == 1 then
      seenHere[resKey] = { 2, need, 'reserved', r[3], r[5] }
    elseif r[1] == 7 then
      seenHere[resKey] = r
    else
      seenHere[resKey] = { 3, 0 }
    end
  end
  results[#results + 1] = r
end

if dry then
  local warnings = {}
  for _, e in ipairs(events) do
    if e[1] ~= 'JOB_HELD' then
      local f = {}
      for i = 2, #e, 2 do f[e[i]] = e[i + 1] end
      warnings[#warnings + 1] = { e[1], f.scope, f.threshold or '' }
    end
  end
  return { results, warnings }
end
for _, s in ipairs(touched) do
  writeInit(s)
  writeCrossed(s)
  if s.delta > 0 then redis.call('HINCRBY', s.key, 'reserved', string.format('%.0f', s.delta)) end
  if s.exemptDelta > 0 then redis.call('HINCRBY', s.key, 'exemptReserved', string.format('%.0f', s.exemptDelta)) end
  if s.delta > 0 or s.exemptDelta > 0 then redis.call('SADD', base .. 'counters', s.id) end
end
-- The open zset and the ledger entries go in chunks of CHUNK jobs: Lua's
-- unpack (and redis.call's argument list) stop at about 8,000 values, and a
-- failure there would come after the counter writes above.
local CHUNK = 200
for first = 1, #admitted, CHUNK do
  local zadd, xadd = { 'ZADD', openKey }, { 'XADD', ledgerKey, '*', 'kind', 'reserve', 'at', now }
  for j = first, math.min(first + CHUNK - 1, #admitted) do
    local a = admitted[j]
    if a[7] then
      redis.call('HSET', a[1], 'amount', a[3], 'bases', a[6], 'scopes', a[4], 'state', 'reserved', 'admittedAt', now, 'meta', a[5], 'exempt', '1')
    else
      redis.call('HSET', a[1], 'amount', a[3], 'bases', a[6], 'scopes', a[4], 'state', 'reserved', 'admittedAt', now, 'meta', a[5])
    end
    zadd[#zadd + 1] = now; zadd[#zadd + 1] = a[2]
    local x = #xadd
    xadd[x + 1] = 'jobId'; xadd[x + 2] = a[2]; xadd[x + 3] = 'estimated'; xadd[x + 4] = a[3]
    xadd[x + 5] = 'scopes'; xadd[x + 6] = a[4]; xadd[x + 7] = 'meta'; xadd[x + 8] = a[5]
    xadd[x + 9] = 'exempt'; xadd[x + 10] = a[7] and '1' or '0'
  end
  redis.call(unpack(zadd))
  redis.call(unpack(xadd))
end
for _, h in ipairs(held) do
  redis.call('HSET', h[1], 'amount', h[4], 'bases', h[5], 'state', 'held', 'heldAt', now, 'meta', h[6], 'lines', table.concat(h[8], ','))
  redis.call('ZADD', base .. 'held:' .. h[2], h[7], h[3])
  redis.call('ZADD', allHeldKey, h[7], h[3])
  redis.call('HINCRBY', base .. 'held-count', h[2], 1)
  for _, b in ipairs(h[8]) do redis.call('ZADD', base .. 'line:' .. b, h[7], h[3]) end
end
emit(base, events, now)
return results
