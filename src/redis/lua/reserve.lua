--[[
  reserve: for each intake job of a batch, in order, hold its estimated GPU
  time against every scope it touches (project budget, user quotas, run cap;
  see includes/scopes.lua), all or nothing per job. A job that does not fit
  is recorded as held, in line for each scope it waits on. Each job's decision
  sees the jobs before it, exactly as if each had its own call; a batch only
  shares the cost of the call and of the writes. Idempotent per job: a
  retried job changes nothing and says where it is.

  A job is its intake id and its submission time (BullMQ's timestamp, kept
  as the record's 'ts'): a queue whose id counter restarted (obliterated)
  hands out ids that have records already. A job whose id has a record with
  another 'ts' is a new job, reserved as '<id>@<ts>' (its id everywhere
  after: gpu-exec, gpu-held, the ledger) and placed in held lines by its
  submission time. (A record without 'ts' is taken as the job's own.)

  First in, first out per scope: a held job waits in the line of every scope
  it did not fit. While an older job (a lower submission order) waits in a
  scope's line, a new job that touches that scope is held behind it even if
  it would fit, and waits in that line too; a newer one that reached Redis
  first holds nobody back. Jobs leave lines by release (the waker when room
  appears, an admin, the scheduler when a period renews). So one user's
  exhausted quota holds that user's jobs, not the whole project's.
  (test/fifo-model.test.ts holds these rules against a model.) GPU caps
  are scopes too, counted in GPUs (includes/caps.lua). Exempt job types are
  admitted counting against nothing (exemptReserved/exemptUsed track them).

  Rate limits come first (includes/rate.lua): a new job over its user's or
  project's submission rate is throttled before any budget is read, booking
  its slot in each bucket it is over. Back at its due time (same id and ts)
  it skips the buckets it paid and is decided as a new job; back early, it
  is throttled again with the same due time. Exempt types are not limited.

  Units (includes/pricing.lua, charges.lua): a job is priced once per call at
  its GPU type's rate in force and its job type's factor (0: exempt) and
  charged in each scope in the scope's unit; its record keeps rate, factor
  and charge for settle. Reply 8 says why a job's GPU type refuses it.

  Events (appended to the events stream in the same atomic step, see
  includes/scopes.lua): THRESHOLD_CROSSED once per threshold per crossing,
  BUDGET_EXHAUSTED when a job is held at a hard limit, JOB_HELD per new hold.

  Input:
    KEYS[1]    open-reservations zset     (member job id, score admittedAt)
    KEYS[2]    ledger stream              (drained into Postgres)
    KEYS[3]    all-held zset              (member job id, score submission order)
    KEYS[4]    usage factors hash         (job type -> thousandths; 0: exempt)
    ARGV[1]    now, epoch ms
    ARGV[2]    a required scope with no limit (an unknown project): 'hold' the job, or 'reject' it
    ARGV[3]    key base, '<prefix>:' of every gatekeeper key (KEYS[1] without
               'open'); reservation, held, line, definition and counter keys
               are built from it. They carry the same hash tag as KEYS, so
               they live in the same cluster slot.
    ARGV[4]    periods now, JSON: { day|week|month: { label, prev, prevStart } }
    ARGV[5]    the batch, JSON: { sigs = [ [ scope base, ... ], ... ],
                              groups = [ group, ... ], jobs = [ job, ... ] }
               sigs: each distinct list of scope bases in the batch, once
               (a batch's jobs share a few: a project and its users);
               groups: each distinct (scope list, metadata) pair, once, as
                 [ index of its scope list in sigs (1-based), project,
                   job metadata (a JSON string, copied to the ledger),
                   job type ('' if none), GPU type ('' if none) ]
               jobs, in order, each
                 [ job id, submission order (the held lines are sorted by it),
                   amount (integer GPU-ms > 0, as a string),
                   index of its group in groups (1-based),
                   submitted at (epoch ms, as a string; '' if unknown: then
                   a record under the id is always the job's own) ]
               One argument rather than several per job: Node encodes one JSON
               string much faster than the client encodes many small arguments;
               and a job's metadata, the same for most of a user's jobs, is
               decoded once per group rather than per job.
    ARGV[6]    '1': a dry run (preflight): decide every job exactly as above,
               write nothing, and also answer warnings: the events the batch
               would raise as { type, scope, threshold or '' } (JOB_HELD left
               out: results say it).
    ARGV[7]    a GPU type with no rate: 'default' (the default rate) or 'reject'

  Output: { ids, results, renamed, prices } (a dry run: { ids, results, renamed, prices, warnings }).
  prices: { group index, 'unitsMilli|usdMicro|factor', ... } for each group
  a decided job of the batch was priced with (a job's charge follows from
  its amount, includes/pricing.lua).
  renamed: { index in the batch (1-based), id it was decided under, ... } for
  each job whose id was used before by another job (see above); usually empty.
  ids: { scope base, counter id, ... } for every scope base a decided job of
  the batch touches (the counter id names the period it counts in). results: one entry per job,
  in order:
    1                           reserved now in the counters `ids` names, no
                                soft limit passed, not exempt (the common case,
                                kept to one integer: it is most of the reply)
    { 1, amount, scope ids, soft, exempt }
                                reserved now, past a soft limit or exempt:
                                scope ids comma separated; soft: bases of soft
                                limits it passed (comma separated, may be '');
                                exempt: 1 if its type is exempt
    { 2, amount, state, scope ids, exempt, charge }
                                reserved before (a retry); state 'reserved' or
                                'settled'; charge 'gpuMs|milliUnits|microUsd' as
                                it was admitted ('' for a record older than rates)
    { 0, n, <misfit> * n }      does not fit: held now; seven fields per scope
                                (base, code, limit, used, reserved, unit, need),
                                as in includes/charges.lua misfits()
    { 3, n, <misfit> * n }      held before (a retry): still held; misfits as of now
    { 4, ahead, line, n, <misfit> * n, lines }
                                held now behind `ahead` older held jobs in the
                                line of scope `line` (with its own misfits, if
                                any); lines: the bases of every line it waits in
                                (its misfits' and those with older jobs), comma
                                separated. (Held with code 0, it waits in its
                                misfits' lines only.)
    { 5 }                       cancelled by an admin before
    { 6, due, retried, by }     throttled: over its submission rate until due
                                (epoch ms); retried 1 if it was throttled
                                before; by: 'scope|jpm|burst' of each bucket
                                over, joined by ';'
    { 7, scope }                rejected: `scope` has no limit and ARGV[2] is 'reject'
    { 8, gpu type, why }        rejected for its GPU type ('' if none): 'unknown', it has
                                no rate and ARGV[7] is 'reject' (else: the default
                                rate); 'not-allowed', its project may not use it;
                                'too-costly', its charge passes 2^53 in a unit

  Every read comes before the first write. Counter deltas are summed as Lua
  numbers (exact below 2^53 GPU-ms) and written with %.0f or %d, never
  tostring (which keeps only 14 digits).
]]
-- @include scopes
-- @include charges
-- @include lines
-- @include admitted
-- @include held
-- @include rate
-- @include pricing

local openKey, ledgerKey, allHeldKey = KEYS[1], KEYS[2], KEYS[3]
local now, noLimit, base, dry, rejectUnpriced = ARGV[1], ARGV[2], ARGV[3], ARGV[6] == '1', ARGV[7] == 'reject'
local nowMs = tonumber(now)
local price = pricer(base, nowMs)
local scopeOf = scopeReader(base, cjson.decode(ARGV[4]), nowMs, true)
local input = cjson.decode(ARGV[5])
local batch = input.jobs

-- Keys and the registry, the open zset and the ledger entries go to Redis in
-- chunks of CHUNK: Lua's unpack (and redis.call's argument list) stop at
-- about 8,000 values, and a failure there would come after the counter writes.
local CHUNK = 200

-- Most batches are only new jobs, and most deployments set no rate limit.
-- One EXISTS over the rate index and the batch's reservation keys says
-- both, instead of one HGET per job; only a batch with a known job in it (a
-- retry) reads each job's state, and only a set rate limit reads a bucket.
local resKeys, renamed, ratesKey, capsKey = {}, {}, base .. 'rate-scopes', base .. 'caps'
for j = 1, #batch do resKeys[j] = base .. 'res:' .. batch[j][1] end
local found = redis.call('EXISTS', ratesKey, capsKey, unpack(resKeys, 1, math.min(CHUNK, #resKeys)))
local ratesOn = found > 0 and redis.call('EXISTS', ratesKey) == 1
local capsOn = found > 0 and redis.call('EXISTS', capsKey) == 1
local anyKnown = found > (ratesOn and 1 or 0) + (capsOn and 1 or 0)
for first = CHUNK + 1, #resKeys, CHUNK do
  if anyKnown then break end
  anyKnown = redis.call('EXISTS', unpack(resKeys, first, math.min(first + CHUNK - 1, #resKeys))) > 0
end
local rate = (ratesOn or anyKnown) and rateModule(base, ratesOn)  -- includes/rate.lua (no rate limit, no known job: none)

local touched = {}      -- scope states to write, in first-touch order
-- Scope lists: { bases, scopes, ids, caps, limited, free, blocked, soft,
-- freeSum, basesCsv (once a job is held) }, the scopes read once per call,
-- when a job of the list is decided (a batch of retries reads none). Only
-- the limited scopes are asked; the free ones (a user with no quota: most)
-- are only counted: an admitted job adds to the list's freeSum, written to
-- each once. blocked: a free scope needs a limit (an unknown project: nothing
-- fits); soft: a limited one is soft. Limits do not change within a call.
-- (Per job at 256 per call: 69.0k -> 66.0k Redis instructions.) A group's
-- GPU caps that are set make a list of their own (includes/caps.lua).
local sigs = {}
for i, bases in ipairs(input.sigs) do sigs[i] = { bases = bases } end
local groups = input.groups
local withCaps = capJoiner(capsOn, capsKey, sigs)
local function resolve(sig)
  if not sig.scopes then
    local scopes, limited, free, blocked, soft = {}, {}, {}, false, false
    for _, b in ipairs(sig.bases) do
      local sc = scopeOf(b)  -- nil: a GPU cap no longer set
      if sc then
        scopes[#scopes + 1] = sc
        if not touched[b] then touched[b] = true; touched[#touched + 1] = sc end
        if sc.limit then
          limited[#limited + 1] = sc
          soft = soft or sc.soft
        else
          free[#free + 1] = sc
          blocked = blocked or not sc.optional
        end
      end
    end
    sig.scopes, sig.ids, sig.caps = scopes, ids(scopes), capsOf(scopes)
    sig.limited, sig.free, sig.blocked, sig.soft, sig.freeSum = limited, free, blocked, soft, { 0, 0, 0 }
  end
  return sig.scopes
end

local priceGroup, prices = groupPricer(base, price)  -- each group's rate, factor and allowed GPU type (includes/pricing.lua)
local lines = lineCache(base)  -- includes/lines.lua
-- Whether any line of a scope list's scopes has anyone in it: kept per list
-- until a hold in this call lengthens a line (linesChanged), so a batch that
-- holds nothing asks once per list, not per job.
local linesChanged = 0
local function anyLine(sig)
  if not sig.probed then sig.probed = true; lines.probeList(sigs, sig.bases) end
  if sig.linesSeen ~= linesChanged then
    local any, bases = false, sig.bases
    for k = 1, #bases do
      local L = lines.of(bases[k])
      if L.n > 0 or #L.added > 0 then any = true; break end
    end
    sig.anyLine, sig.linesSeen = any, linesChanged
  end
  return sig.anyLine
end

local results = {}
local events = {}
local admitted, held = {}, {}
local seenHere = {}     -- reservation key -> its result here (admitted: its index in `admitted`), for a job listed twice in one batch
for j = 1, #batch do
  local job = batch[j]
  local group = groups[job[4]]
  local jobId, order, amount, ts = job[1], job[2], job[3], job[5] or ''
  local rsig, project, meta, jobType = sigs[group[1]], group[2], group[3], group[4]
  local sig, gpus = withCaps(rsig, job[4], group)
  local resKey = resKeys[j]
  local bases = sig.bases

  -- A known job's state, and the rest for a retry (false: no record).
  local state = false
  if anyKnown then
    local known = redis.call('HMGET', resKey, 'state', 'ts')
    state = known[1]
    if state and ts ~= '' and known[2] and known[2] ~= '' and known[2] ~= ts then
      -- The id is another job's: this one is new, under its own id.
      jobId = jobId .. '@' .. ts
      resKey = base .. 'res:' .. jobId
      order = ts
      renamed[#renamed + 1] = j
      renamed[#renamed + 1] = jobId
      state = redis.call('HGET', resKey, 'state')
    end
  end
  local r
  local again = seenHere[resKey]
  -- Over its rate: throttled before any budget is read (it counts against none).
  local fresh = not again and (not state or state == 'throttled')
  local charge = fresh and groupCharge(price, priceGroup(job[4], group), amount)
  -- A GPU type its project may not use, with no rate where every type must have one, or a charge past 2^53: rejected before its rate is spent.
  local unpriced = fresh and ((not group.allowed and 'not-allowed') or (rejectUnpriced and not group.rate.known and 'unknown') or (not charge and 'too-costly'))
  local gated = rate and not again and not unpriced and (state == 'throttled' or (ratesOn and not state)) and group.factor ~= 0
    and rate.gate(rsig, rate.bucketOf, resKey, jobId, state, nowMs, ts)
  if again then
    if type(again) == 'number' then
      local a = admitted[again]
      r = { 2, tonumber(a[3]), 'reserved', a[4], a[6] and 1 or 0, a[13] }  -- what the first listing reserved
    else
      r = again
    end
  elseif unpriced then
    r = { 8, group[5] or '', unpriced }
  elseif gated then
    r = gated
  elseif state == 'reserved' or state == 'settled' then
    local prior = redis.call('HMGET', resKey, 'amount', 'scopes', 'exempt', 'charge')
    r = { 2, tonumber(prior[1]), state, prior[2], prior[3] == '1' and 1 or 0, prior[4] or '' }
  elseif state == 'cancelled' then
    r = { 5 }
  else
    priceGroup(job[4], group)
    local need = tonumber(amount)
    -- nil only for a job held before whose price now passes 2^53: it stays held (release rejects it).
    charge = charge or groupCharge(price, group, amount) or { 0, 0, 0 }
    local scopes = resolve(sig)
    local exempt = state ~= 'held' and group.factor == 0
    local short = (exempt or fitsList(sig, charge, gpus)) and NONE or misfits(scopes, charge, gpus)
    local unknown = nil
    for i = 2, #short, MISFIT_WIDTH do
      if short[i] == 1 then unknown = short[i - 1]; break end
    end
    -- The scopes whose lines hold an older job; ahead: the most in one of them (line).
    local ahead, line, behind, o = 0, nil, nil, nil
    if not exempt and state ~= 'held' and anyLine(sig) then
      o = tonumber(order)
      for k = 1, #bases do
        local n = lines.older(lines.of(bases[k]), o, order, jobId)
        if n > 0 then
          behind = behind or {}
          behind[#behind + 1] = bases[k]
          if n > ahead then ahead, line = n, bases[k] end
        end
      end
    end
    if noLimit == 'reject' and unknown and state ~= 'held' then
      r = { 7, unknown }
    elseif state == 'held' then
      r = { 3, #short / MISFIT_WIDTH }
      for _, v in ipairs(short) do r[#r + 1] = v end
    elseif ahead > 0 or #short > 0 then
      -- In line for every scope it did not fit and every scope it waits behind.
      local joined, inLine = {}, {}
      for i = 1, #short, MISFIT_WIDTH do joined[#joined + 1] = short[i]; inLine[short[i]] = true end
      if behind then
        for _, b in ipairs(behind) do
          if not inLine[b] then joined[#joined + 1] = b end
        end
      end
      o = o or tonumber(order)
      for _, b in ipairs(joined) do lines.add(b, o, jobId) end
      linesChanged = linesChanged + 1
      local byBase = {}
      for _, sc in ipairs(scopes) do byBase[sc.base] = sc end
      for i = 1, #short, MISFIT_WIDTH do
        if short[i + 1] == 2 then exhausted(byBase[short[i]], jobId, events) end
      end
      local flat = misfitsText(short)
      events[#events + 1] = { 'JOB_HELD', 'jobId', jobId, 'meta', meta, 'amount', amount,
        'ahead', tostring(ahead), 'line', line or '', 'misfits', flat }
      sig.basesCsv = sig.basesCsv or table.concat(bases, ',')
      held[#held + 1] = { resKey, project, jobId, amount, sig.basesCsv, meta, order, joined, ts, flat }
      r = ahead > 0 and { 4, ahead, line, #short / MISFIT_WIDTH } or { 0, #short / MISFIT_WIDTH }
      for _, v in ipairs(short) do r[#r + 1] = v end
      if ahead > 0 then r[#r + 1] = table.concat(joined, ',') end
    else
      local soft = (exempt or not sig.soft) and NONE or softOver(scopes, charge)
      -- Numeric loops and a guard before each call: this runs for every job
      -- and scope, and Lua 5.1 pays for ipairs and calls (measured with
      -- callgrind, see docs/benchmarks.md).
      if exempt then
        -- Exempt: counted nowhere, GPU caps included.
        for k = 1, #scopes do
          local s = scopes[k]
          if not s.perGpu then s.exemptDelta = s.exemptDelta + need end
        end
      else
        local limited = sig.limited
        for k = 1, #limited do
          local s = limited[k]
          if s.perGpu then
            s.reserved = s.reserved + gpus
            s.delta = s.delta + gpus
          else
            s.reserved = s.reserved + charge[s.unit]
            addCharge(s, charge)
          end
          if s.nextAt ~= false then crossings(s, jobId, events) end
          if s.crossed.x then rearmExhausted(s) end
        end
        local f = sig.freeSum
        f[1] = f[1] + charge[1]; f[2] = f[2] + charge[2]; f[3] = f[3] + charge[3]
      end
      admitted[#admitted + 1] = { resKey, jobId, amount, sig.ids, meta, exempt, job[4], ts, (not exempt) and sig.caps or '', gpus,
        group.rate.text, group.factorText, charge.text }
      if exempt or #soft > 0 then
        r = { 1, need, sig.ids, table.concat(soft, ','), exempt and 1 or 0 }
      else
        r = 1
      end
    end
    if r == 1 or r[1] == 1 then
      seenHere[resKey] = #admitted
    elseif r[1] == 7 then
      seenHere[resKey] = r
    else
      seenHere[resKey] = { 3, 0 }
    end
  end
  if gated then seenHere[resKey] = { 6, gated[2], 1, gated[4] } end
  -- A state was read, so the rate module was made (a known job in the batch).
  if state == 'throttled' and not again and not gated then rate.decided(jobId, r) end
  results[#results + 1] = r
end

addFree(sigs)  -- what each list's admitted jobs add to its scopes without a limit (includes/charges.lua)

local idList = {}
for _, s in ipairs(touched) do
  if not s.perGpu then idList[#idList + 1] = s.base; idList[#idList + 1] = s.id end
end

if dry then return { idList, results, renamed, prices, dryWarnings(events) } end
callChunked('SADD', base .. 'counters', writeTouched(touched), CHUNK)  -- includes/charges.lua
writeAdmitted(admitted, openKey, ledgerKey, now, CHUNK)  -- includes/admitted.lua
writeHeld(held, base, allHeldKey, now, CHUNK)  -- includes/held.lua
if rate then rate.write(rate.buckets, nowMs, CHUNK) end
emit(base, events, now)
return { idList, results, renamed, prices }
