--[[
  release: re-run admission for held jobs, in the order given (the caller
  passes them oldest first), or admit one regardless of budget (override).

  First in, first out per scope: in 'fifo' mode a job leaves only when no
  older held job waits in the line of any scope it touches (see reserve.lua),
  so a newer job never overtakes an older one waiting for the same scope. ('override' admits the
  one job it is given, at once, whatever its lines and limits.) A job that
  still does not fit moves to the lines of the scopes it now misses.

  A job that leaves a line (admitted, or moved to other lines) may let the
  jobs behind it go: each such line that still has jobs in it is signalled
  in the wake set (includes/wake.lua).

  Events: JOB_RELEASED (fifo) or JOB_OVERRIDDEN (override) per job admitted,
  and THRESHOLD_CROSSED as in reserve.lua.

  GPU caps (includes/caps.lua) are those set now for the job's project,
  user and GPU type, whatever was set when it was held: it counts its gpus
  against them when admitted.

  Scopes are resolved for the periods of now (a job held yesterday by its
  daily quota is measured against today's), see includes/scopes.lua. A job
  is priced as it is decided, at the rate and usage factor in force now
  (includes/pricing.lua): it is admitted now, so it keeps today's rate. One
  whose job type became exempt (factor 0) is admitted counting nowhere. One
  whose project may no longer use its GPU type (gpuAllowed) is rejected
  ('fifo' and 'wake'; an override admits it), as is one whose GPU type has
  no rate when the policy for that is to reject (UNKNOWN_GPU_TYPE_POLICY,
  set since it was held), and so is one whose charge
  now passes 2^53 in a unit (in every mode: it cannot be counted): it
  leaves the held lists and lines as a cancelled job does
  (includes/unhold.lua), so the jobs behind it go on in this call; the
  caller moves it to gpu-rejected with the reason.

  Input:
    KEYS[1]    open-reservations zset
    KEYS[2]    ledger stream
    KEYS[3]    all-held zset
    ARGV[1]    now, epoch ms
    ARGV[2]    mode: 'fifo' | 'override' | 'wake' (fifo, but no job after the
               first that stays held is decided: the waker's, whose jobs
               are one line's first ones, each behind the one before, read
               before this call: another waker may have decided them since,
               so it also stops at a held job no longer in that line, or
               waiting in a line an admin releases, 'release' 'manual')
    ARGV[3]    note for the ledger (who released it, and why)
    ARGV[4]    key base, '<prefix>:' of every gatekeeper key (KEYS[1] without 'open');
               reservation, scope and held keys are built from it. They carry
               the same hash tag as KEYS, so they live in the same cluster slot.
    ARGV[5]    periods now, JSON (as in reserve.lua)
    ARGV[6]    seconds to remember a rejected job (as cancel.lua)
    ARGV[7]    a job whose GPU type has no rate: 'default' (priced at the
               default rate) or 'reject' (as reserve.lua's ARGV[7])
    ARGV[8]    'wake': the scope base of the line woken; otherwise ''
    ARGV[9..]  job ids, oldest first

  Output: one entry per job, in order (in 'wake' mode, up to the first that
  stays held):
    { 1, amount, scope ids, price, charge, exempt }
                                admitted now (reserved; take it off gpu-held, add to
                                gpu-exec); price 'unitsMilli|usdMicro|factor', charge
                                'gpuMs|milliUnits|microUsd', exempt 1 or 0
    { 0, amount, n, <misfit> * n }
                                does not fit: still held (misfit: scope base, code,
                                limit, used, reserved, unit, need; as in reserve.lua)
    { 4, ahead, line, amount, n, <misfit> * n }
                                still held: `ahead` older held jobs go first in the
                                line of scope `line`; its own misfits as of now (if any)
    { 8, gpuType, why }         rejected: its project may not use its GPU type now
                                ('not-allowed'), the type has no rate ('unknown') or
                                its charge passes 2^53 ('too-costly')
                                (no longer held, remembered as cancelled)
    { -1, state }               not held (state: 'reserved', 'settled', 'cancelled' or 'missing')

  Every job's record is read and checked before the first write, so a bad
  record fails the call with nothing changed.
]]
-- @include scopes
-- @include charges
-- @include lines
-- @include wake
-- @include pricing
-- @include unhold

local openKey, ledgerKey, allHeldKey = KEYS[1], KEYS[2], KEYS[3]
local now, mode, note, base = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local scopeOf = scopeReader(base, cjson.decode(ARGV[5]), tonumber(now), true)
local price = pricer(base, tonumber(now))
local allows = gpuAllowed(base)
local rejectUnpriced = ARGV[7] == 'reject'
local wokenLine = ARGV[8]

-- 'wake': is a held job still one the waker may decide (in the line woken, in no manual line)?
local manualLine = {}
local function wakeable(jobId, lines)
  if not redis.call('ZSCORE', base .. 'line:' .. wokenLine, jobId) then return false end
  for _, l in ipairs(lines) do
    if manualLine[l] == nil then manualLine[l] = redis.call('HGET', base .. 'def:' .. l, 'release') == 'manual' end
    if manualLine[l] then return false end
  end
  return true
end

-- Every record read and decoded first: a bad one fails the call before any write.
local records = {}
for a = 9, #ARGV do
  local jobId = ARGV[a]
  local resKey = base .. 'res:' .. jobId
  local r = redis.call('HMGET', resKey, 'amount', 'state', 'bases', 'meta', 'lines', 'ts')
  local rec = { jobId = jobId, resKey = resKey, r = r }
  if r[2] == 'held' then
    rec.need = tonumber(r[1])
    if not rec.need then return redis.error_reply('release: job ' .. jobId .. ' has no amount') end
    local meta = cjson.decode(r[4])
    rec.project, rec.gpus = meta.project, tonumber(meta.gpus) or 1
    rec.gpuType = type(meta.gpuType) == 'string' and meta.gpuType or ''
    rec.allowed = allows(rec.project, rec.gpuType)
    rec.rate = price.rateOf(rec.gpuType)
    rec.factor = price.factorOf(type(meta.jobType) == 'string' and meta.jobType or '')
    rec.charge = price.charge(r[1], rec.rate, rec.factor)
    -- Why it is rejected for its GPU type, as reserve.lua words it (an override passes the first two).
    rec.refused = (mode ~= 'override' and ((not rec.allowed and 'not-allowed') or (rejectUnpriced and not rec.rate.known and 'unknown')))
      or (not rec.charge and 'too-costly') or nil
    rec.bases, rec.lines = split(r[3]), split(r[5])
    -- The GPU caps it may count against now, whatever was set when it was held.
    for _, cap in ipairs(capsOfJob(meta)) do
      if not string.find(',' .. r[3] .. ',', ',' .. cap .. ',', 1, true) then rec.bases[#rec.bases + 1] = cap end
    end
  end
  records[#records + 1] = rec
end

local results = {}
local events = {}
local decided = {}  -- job id -> its result in this call (a job listed twice is decided once)
local left, leftSeen = {}, {}  -- lines a job left in this call, each once
local function leave(l)
  if not leftSeen[l] then leftSeen[l] = true; left[#left + 1] = l end
end
for _, rec in ipairs(records) do
  local jobId, resKey, r = rec.jobId, rec.resKey, rec.r
  local out
  local before = decided[jobId]
  if before then
    out = before[1] == 1 and { -1, 'reserved' } or before
  elseif r[2] ~= 'held' then
    out = { -1, r[2] or 'missing' }
  elseif mode == 'wake' and not wakeable(jobId, rec.lines) then
    break
  elseif rec.refused then
    for _, l in ipairs(unhold(base, allHeldKey, jobId, rec.project, r[5], ARGV[6])) do leave(l) end
    out = { 8, rec.gpuType, rec.refused }
  else
    local need, lines, project, charge = rec.need, rec.lines, rec.project, rec.charge
    local exempt = rec.factor == 0
    if mode ~= 'override' and not exempt then
      -- Older held jobs waiting for any scope this job touches go first, whether
      -- or not this job is in that line yet (it joins lines as its misfits change).
      local order = redis.call('ZSCORE', allHeldKey, jobId) or '+inf'
      for _, b in ipairs(rec.bases) do
        local older = olderInLine(base .. 'line:' .. b, order, jobId)
        if older > 0 then
          out = { 4, older, b }
          -- It waits in that line too, as reserve puts a job behind an older
          -- one: so the line's signal reaches it when the older job leaves,
          -- even if that empties every line the older job was in.
          if order ~= '+inf' and not string.find(',' .. (r[5] or '') .. ',', ',' .. b .. ',', 1, true) then
            redis.call('ZADD', base .. 'line:' .. b, order, jobId)
            lines[#lines + 1] = b
            redis.call('HSET', resKey, 'lines', table.concat(lines, ','))
          end
          break
        end
      end
    end
    local scopes = {}
    for _, b in ipairs(rec.bases) do
      local sc = scopeOf(b)  -- nil: a GPU cap not set
      if sc then scopes[#scopes + 1] = sc end
    end
    if out then
      -- Behind an older job: say too what it would miss now, so its reason stays whole.
      local short = misfits(scopes, charge, rec.gpus)
      out[4], out[5] = need, #short / MISFIT_WIDTH
      for _, v in ipairs(short) do out[#out + 1] = v end
    end
    if not out and mode ~= 'override' and not exempt then
      local short = misfits(scopes, charge, rec.gpus)
      if #short > 0 then
        out = { 0, need, #short / MISFIT_WIDTH }
        for _, v in ipairs(short) do out[#out + 1] = v end
        -- Wait in the lines of what it misses now, at its old place (its submission order).
        local order = redis.call('ZSCORE', allHeldKey, jobId)
        local missing, keep = {}, {}
        for i = 1, #short, MISFIT_WIDTH do missing[#missing + 1] = short[i]; keep[short[i]] = true end
        for _, l in ipairs(lines) do
          if not keep[l] then redis.call('ZREM', base .. 'line:' .. l, jobId); leave(l) end
        end
        for _, l in ipairs(missing) do redis.call('ZADD', base .. 'line:' .. l, order, jobId) end
        redis.call('HSET', resKey, 'lines', table.concat(missing, ','), 'misfits', misfitsText(short))
      end
    end
    if not out then
      local counted = {}
      for _, s in ipairs(scopes) do
        if s.perGpu then
          -- Exempt: counted nowhere, GPU caps included (as reserve.lua).
          if not exempt then
            redis.call('HINCRBY', s.key, 'reserved', rec.gpus)
            s.reserved = s.reserved + rec.gpus
            counted[#counted + 1] = s
          end
        elseif exempt then
          writeInit(s)  -- this may be the period's first touch, as in reserve.lua
          redis.call('HINCRBY', s.key, 'exemptReserved', r[1])
          redis.call('SADD', base .. 'counters', s.id)
          counted[#counted + 1] = s
        else
          writeInit(s)
          addCharge(s, charge)
          writeSums(s)
          s.sum = { 0, 0, 0 }
          redis.call('SADD', base .. 'counters', s.id)
          s.reserved = s.reserved + charge[s.unit]
          crossings(s, jobId, events)
          rearmExhausted(s)
          writeCrossed(s)
          counted[#counted + 1] = s
        end
      end
      local scopeIds, caps = ids(counted), capsOf(counted)
      local priceText, chargeTxt = price.priceText(rec.rate, rec.factor), chargeText(charge)
      redis.call('HSET', resKey, 'state', 'reserved', 'admittedAt', now, 'scopes', scopeIds,
        'rate', rec.rate[1] .. '|' .. rec.rate[2], 'factor', rec.factor, 'charge', chargeTxt)
      if exempt then redis.call('HSET', resKey, 'exempt', '1') end
      if caps ~= '' then redis.call('HSET', resKey, 'caps', caps, 'gpus', rec.gpus) end
      redis.call('HDEL', resKey, 'lines', 'bases', 'heldAt', 'misfits')  -- now an admitted record, as reserve.lua writes one
      redis.call('ZREM', base .. 'held:' .. project, jobId)
      redis.call('ZREM', allHeldKey, jobId)
      redis.call('HINCRBY', base .. 'held-count', project, -1)
      for _, l in ipairs(lines) do redis.call('ZREM', base .. 'line:' .. l, jobId); leave(l) end
      redis.call('ZADD', openKey, now, jobId)
      local entry = { 'XADD', ledgerKey, '*', 'kind', 'reserve', 'at', now, 'note', note,
        'override', mode == 'override' and '1' or '0',
        'jobId', jobId, 'estimated', r[1], 'scopes', scopeIds, 'meta', r[4], 'exempt', exempt and '1' or '0',
        'price', priceText, 'charge', chargeTxt }
      -- Its submission time (with its id, the job's identity: reserve.lua), for a rebuild.
      if r[6] then entry[#entry + 1] = 'ts'; entry[#entry + 1] = r[6] end
      redis.call(unpack(entry))
      events[#events + 1] = { mode == 'override' and 'JOB_OVERRIDDEN' or 'JOB_RELEASED', 'jobId', jobId,
        'meta', r[4], 'amount', r[1], 'note', note, 'charge', chargeTxt }
      out = { 1, need, scopeIds, priceText, chargeTxt, exempt and 1 or 0 }
    end
  end
  decided[jobId] = decided[jobId] or out
  results[#results + 1] = out
  if mode == 'wake' and (out[1] == 0 or out[1] == 4) then break end
end
wakeNonEmpty(base, left, now)
emit(base, events, now)
return results
