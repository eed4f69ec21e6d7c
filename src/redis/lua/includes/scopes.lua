--[[
  Scopes, shared by reserve, release, settle and scope.

  A scope *base* names one budget or quota: 'project:acme', 'user-day:alice',
  'user-week:alice', 'run:acme/r1' (tests use other kinds too). Its definition
  hash, '<base key>def:<scope base>', holds what an admin set:
    limit        integer GPU-ms (absent: no limit set)
    policy       'hard' (hold at the limit; the default) or 'soft'
    grace        soft only: whole percent past the limit still admitted
                 (absent: a soft limit only warns, it never holds)
    period       'none' (one-off), 'day', 'week' or 'month'; user-day and
                 user-week bases are always 'day' and 'week'
    rollover     '1': a new period starts with the previous one's unused part
    rolloverCap  integer GPU-ms: the most that rolls over (absent: all of it)
    setAt        epoch ms the budget was first set
    thresholds   percents of the effective limit that raise a warning event
                 when used + reserved reaches them (absent: 75,90,100; '' none)
    unit         'gpuHours' (absent), 'units' or 'usd': what limit, rolloverCap
                 and the period's carry and adjust count (includes/pricing.lua)
    c            the fields above in one, as readDef reads them:
                 limit|policy|grace|period|rollover|rolloverCap|setAt|unit|thresholds,
                 an absent grace or rolloverCap empty, unit h, u or d, absent
                 thresholds '*'
                 (src/accounting/definitions.ts writes it; a definition
                 without it is read field by field)
  Its counters live per period, '<base key>scope:<scope id>', where the scope
  id is the base for one-off scopes and '<base>@<period label>' otherwise, so a
  new period starts at zero by itself, whatever ran (or did not) at midnight:
    used, reserved                  charged GPU-ms (a job's GPU-ms times its usage factor)
    unitsUsed, unitsReserved        charged milli-units
    usdUsed, usdReserved            charged micro-dollars
                                    (every scope counts all three; its limit
                                    reads the pair of its unit)
    exemptUsed, exemptReserved      GPU-ms of exempt job types (factor 0; never counted)
    carry                           rolled over from the previous period
    adjust                          admins' manual adjustment of this period
    init                            '1' once carry has been computed
    crossed, crossedLimit           thresholds crossed this period (and 'x' once a
                                    job was held at the hard limit), and the limit
                                    they were judged against: each fires once per
                                    crossing; a changed limit that brings usage back
                                    under one re-arms it (settling for less does not)

  The effective limit of a period is limit + carry + adjust.

  Kinds that are optional (user quotas, run caps, a project's budget for
  one GPU type, 'project-type:<p>/<t>') without a limit admit
  everything and still count it; any other kind without a limit is unknown
  (code 1: the caller's policy holds or rejects the job).

  Defaults (thresholds, the events stream's cap, the event version) come
  from src/redis/wire.ts through the generated include `defaults`.

  Exactness: all values are integers below 2^53 (limits are capped by the
  API), summed as Lua numbers and written with %.0f.
]]
-- @include defaults
-- @include caps
local FIXED_PERIOD = { ['user-day'] = 'day', ['user-week'] = 'week' }
-- An empty list shared by the common case (no misfits, no soft limits
-- passed) instead of a new table per job. Never written to.
local NONE = {}
local OPTIONAL = { ['user-day'] = true, ['user-week'] = true, ['run'] = true, ['project-type'] = true }
-- A limit's unit: its index in a charge triple (includes/pricing.lua), and the counter fields of each.
local UNIT_INDEX = { h = 1, u = 2, d = 3, gpuHours = 1, units = 2, usd = 3 }
local UNIT_LETTER = { 'h', 'u', 'd' }
local USED = { 'used', 'unitsUsed', 'usdUsed' }
local RESERVED = { 'reserved', 'unitsReserved', 'usdReserved' }

--[[ at(limit, pct): the usage at which pct percent of limit is reached, exactly (no 2^53 overflow). ]]
local function at(limit, pct)
  local whole = math.floor(limit / 100)
  return whole * pct + math.ceil((limit - whole * 100) * pct / 100)
end

--[[
  loadCrossed(s, csv, crossedLimit): the thresholds crossed so far this
  period. If the limit changed since they were judged (an admin raised it),
  one that usage is now under re-arms, so the next crossing fires again.
]]
local function loadCrossed(s, csv, crossedLimit)
  s.crossed, s.crossedDirty, s.nextAt = {}, false, nil
  -- HMGET answers false for a field never written: nothing judged yet, nothing to re-arm.
  local changed = crossedLimit and tonumber(crossedLimit) ~= s.limit or false
  if csv then
    for t in string.gmatch(csv, '[^,]+') do
      local pct = tonumber(t)
      if changed and pct and s.used + s.reserved < at(s.limit, pct) then
        s.crossedDirty = true
      else
        s.crossed[t] = true
      end
    end
  end
  if changed then s.crossedDirty = true end
end

--[[ writeCrossed(s): persist the crossed set if it changed. ]]
local function writeCrossed(s)
  if not s.crossedDirty then return end
  local out = {}
  for t in pairs(s.crossed) do out[#out + 1] = t end
  table.sort(out)
  redis.call('HSET', s.key, 'crossed', table.concat(out, ','), 'crossedLimit', string.format('%.0f', s.limit))
  s.crossedDirty = false
end

--[[
  crossings(s, jobId, events): after usage of s grew (a job admitted, or one
  that settled above its estimate), add a THRESHOLD_CROSSED event for each
  threshold now reached that had not fired this period.
]]
local function crossings(s, jobId, events)
  if not s.limit or not s.thresholds then return end
  local total = s.used + s.reserved
  -- s.nextAt: the usage at which the lowest threshold not yet crossed fires
  -- (false: none left). Judged once, then one comparison per job: a batch of
  -- 128 jobs over three scopes would otherwise compute ~1,000 threshold points.
  if s.nextAt == nil then
    s.nextAt = false
    local list, keys = s.thresholds, s.thresholds.keys
    for i = 1, #list do
      if not s.crossed[keys[i]] then
        local a = at(s.limit, list[i])
        if not s.nextAt or a < s.nextAt then s.nextAt = a end
      end
    end
  end
  if not s.nextAt or total < s.nextAt then return end
  local list, keys = s.thresholds, s.thresholds.keys
  for i = 1, #list do
    local key = keys[i]
    if not s.crossed[key] and total >= at(s.limit, list[i]) then
      s.crossed[key], s.crossedDirty = true, true
      events[#events + 1] = { 'THRESHOLD_CROSSED', 'jobId', jobId, 'scope', s.base, 'counterId', s.id,
        'threshold', key, 'used', string.format('%.0f', s.used), 'reserved', string.format('%.0f', s.reserved),
        'limit', string.format('%.0f', s.limit), 'unit', UNIT_LETTER[s.unit] }
    end
  end
  s.nextAt = nil
end

--[[
  exhausted(s, jobId, events): a job was held at s's hard limit: a
  BUDGET_EXHAUSTED event, once until a job is admitted against s again.
]]
local function exhausted(s, jobId, events)
  if not s.limit or not s.crossed or s.crossed.x then return end
  s.crossed.x, s.crossedDirty = true, true
  events[#events + 1] = { 'BUDGET_EXHAUSTED', 'jobId', jobId, 'scope', s.base, 'counterId', s.id,
    'used', string.format('%.0f', s.used), 'reserved', string.format('%.0f', s.reserved),
    'limit', string.format('%.0f', s.limit), 'unit', UNIT_LETTER[s.unit] }
end

--[[ rearmExhausted(s): a job fits s again. ]]
local function rearmExhausted(s)
  if s.crossed and s.crossed.x then s.crossed.x, s.crossedDirty = nil, true end
end

--[[
  emit(keyBase, events, now): append the events to the events stream (after
  every other write of the call, so one call's events are atomic with it).
  The stream is capped; Postgres keeps them all.
]]
local function emit(keyBase, events, now)
  for _, e in ipairs(events) do
    local args = { 'XADD', keyBase .. 'events', 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'type', e[1], 'v', EVENT_VERSION, 'at', now }
    for i = 2, #e do args[#args + 1] = e[i] end
    redis.call(unpack(args))
  end
end

-- Threshold lists parsed once per call per distinct text (most scopes share
-- the default): shared tables, never written. keys: each as the crossed set
-- names it (tostring costs about as much as a table, docs/benchmarks.md).
local parsedThresholds = {}
local function thresholdsOf(csv)
  local list = parsedThresholds[csv]
  if not list then
    list = { keys = {} }
    for t in string.gmatch(csv, '%d+') do
      local pct = tonumber(t)
      list[#list + 1] = pct
      list.keys[#list] = tostring(pct)
    end
    parsedThresholds[csv] = list
  end
  return list
end

--[[
  scopeState(keyBase, scopeBase, kind, id, d, c, p, now): one scope's state from its
  definition `d` (HMGET of the def hash: limit, policy, grace, period,
  rollover, rolloverCap, setAt, thresholds, unit) and its counters `c` (HMGET of
  the counter hash: used and reserved of its unit, carry, adjust, crossed,
  crossedLimit, and init for a rollover limit). `p`, the period's { label, prev, prevStart }: a period not
  yet initialised computes its carry (nil: the period was initialised when a
  job was admitted in it, as settle knows). State:
    { base, id, key, unit, used, reserved, limit|nil, ceiling|nil, soft, optional,
      sum, exemptDelta, initCarry|nil, thresholds, crossed, counted }
  `unit`: 1, 2 or 3 (GPU-ms, milli-units, micro-dollars); used, reserved,
  limit and ceiling are in it. `sum`: the charge triple admitted in this
  call, written to all three counter pairs (a GPU cap's is `delta`, in GPUs).
  `counted`: the counters hold 'reserved', so their id is in the counters
  set already (every writer of 'reserved' adds it there).
  `ceiling` is where admission stops: the limit (hard), the limit plus grace
  (soft with grace), or nil (soft without grace).
]]
local function scopeState(keyBase, scopeBase, kind, id, d, c, p, now)
  local unit = UNIT_INDEX[d[9] or 'h'] or 1
  local s = { base = scopeBase, id = id, key = keyBase .. 'scope:' .. id, optional = OPTIONAL[kind] or false, unit = unit,
        used = tonumber(c[1] or '0'), reserved = tonumber(c[2] or '0'),
        sum = { 0, 0, 0 }, exemptDelta = 0, soft = d[2] == 'soft', counted = c[2] and true or false }
  local carry = tonumber(c[3] or '0')
  if p and d[1] and d[5] == '1' and not c[7] then
    -- First touch of this period: carry what the previous one left unused
    -- (its open reservations count as spent). A previous period nobody
    -- touched left its whole limit unused, if the budget existed then.
    local q = redis.call('HMGET', keyBase .. 'scope:' .. scopeBase .. '@' .. p.prev, USED[unit], RESERVED[unit], 'carry', 'adjust')
    local unused = 0
    if q[1] or q[2] or q[3] or q[4] then
      unused = tonumber(d[1]) + tonumber(q[3] or '0') + tonumber(q[4] or '0')
        - tonumber(q[1] or '0') - tonumber(q[2] or '0')
    elseif tonumber(d[7] or now) < p.prevStart then
      unused = tonumber(d[1])
    end
    if unused < 0 then unused = 0 end
    if d[6] and unused > tonumber(d[6]) then unused = tonumber(d[6]) end
    carry = unused
    s.initCarry = carry
  end
  if d[1] then
    s.limit = tonumber(d[1]) + carry + tonumber(c[4] or '0')
    if not s.soft then
      s.ceiling = s.limit
    elseif d[3] then
      -- limit * (100 + grace) / 100 without passing 2^53 on the way
      local g = 100 + tonumber(d[3])
      local whole = math.floor(s.limit / 100)
      s.ceiling = whole * g + math.floor((s.limit - whole * 100) * g / 100)
    end
    s.thresholds = thresholdsOf(d[8] or DEFAULT_THRESHOLDS)
    loadCrossed(s, c[5], c[6])
  end
  return s
end

-- A scope without a definition (most users): no limit. Never written.
local NO_DEF = {}

--[[
  readDef(keyBase, scopeBase): a scope's definition, the fields scopeState
  reads, from its compact copy 'c' when there is one: a hash field costs
  Redis and Lua more than a pattern match does (docs/benchmarks.md). A
  definition written without 'c' (or with one that does not parse) is
  read field by field.
]]
local function readDef(keyBase, scopeBase)
  local key = keyBase .. 'def:' .. scopeBase
  local r = redis.call('HMGET', key, 'c', 'limit')
  if r[1] then
    local limit, policy, grace, period, rollover, cap, setAt, unit, th =
      string.match(r[1], '^(%d+)|(%a+)|(%d*)|(%a+)|([01])|(%d*)|(%d+)|([hud])|(.*)$')
    if limit then
      return { limit, policy, grace ~= '' and grace, period, rollover, cap ~= '' and cap, setAt, th ~= '*' and th, unit }
    end
  elseif not r[2] then
    return NO_DEF
  end
  return redis.call('HMGET', key, 'limit', 'policy', 'grace', 'period', 'rollover', 'rolloverCap', 'setAt', 'thresholds', 'unit')
end

--[[
  readCounters(key, withInit, unit): a period's counters, the fields scopeState
  reads (used and reserved of the limit's unit letter, nil for GPU-ms);
  'init' only for a rollover limit, the only one that reads it (each field
  read costs, docs/benchmarks.md).
]]
local function readCounters(key, withInit, unit)
  local i = UNIT_INDEX[unit or 'h'] or 1
  if withInit then
    return redis.call('HMGET', key, USED[i], RESERVED[i], 'carry', 'adjust', 'crossed', 'crossedLimit', 'init')
  end
  return redis.call('HMGET', key, USED[i], RESERVED[i], 'carry', 'adjust', 'crossed', 'crossedLimit')
end

--[[ scopeAt(keyBase, id): the state of counter id '<base>' or '<base>@<period label>' (settle: a period already initialised). ]]
local function scopeAt(keyBase, id)
  local scopeBase = string.match(id, '^([^@]+)')
  local d = readDef(keyBase, scopeBase)
  return scopeState(keyBase, scopeBase, string.match(scopeBase, '^([^:]+):') or scopeBase, id, d, readCounters(keyBase .. 'scope:' .. id, false, d[9]), nil, nil)
end

--[[
  scopeReader(keyBase, periods, now, deciding): a function base -> scope
  state in the period of now (a GPU cap's, or nil for a cap not set: see
  includes/caps.lua), read once per call and cached, so every job
  of a batch sees the ones before it through the deltas. `periods` is
  { day|week|month = { label, prev, prevStart } } for now in the configured
  time zone.
  `deciding`: the caller only decides and adds deltas (reserve, release), so
  an optional scope with no limit (a user without a quota) needs no counter
  read: used and reserved only matter against a limit. Most users have no
  quota, and this saves a read per such scope per call. (An unknown project
  is still read: its misfit reports its usage.) A caller that shows the
  numbers (scope.lua) passes nil.
]]
local function scopeReader(keyBase, periods, now, deciding)
  local cache = {}
  return function(scopeBase)
    local s = cache[scopeBase]
    if s ~= nil then return s or nil end
    local kind = string.match(scopeBase, '^([^:]+):') or scopeBase
    if CAP_KINDS[kind] then
      -- A GPU cap (includes/caps.lua): nil when none is set (false in the cache).
      s = capState(keyBase, scopeBase, periods.wm) or false
      cache[scopeBase] = s
      return s or nil
    end
    local d = readDef(keyBase, scopeBase)
    local p = periods[FIXED_PERIOD[kind] or d[4] or 'none']
    local id = p and (scopeBase .. '@' .. p.label) or scopeBase
    local c = (d[1] or not deciding or not OPTIONAL[kind]) and readCounters(keyBase .. 'scope:' .. id, d[5] == '1', d[9]) or NONE
    s = scopeState(keyBase, scopeBase, kind, id, d, c, p, now)
    cache[scopeBase] = s
    return s
  end
end

--[[ ids(scopes): the counter ids, comma separated, as a reservation records them. ]]
local function ids(scopes)
  local out = {}
  for _, s in ipairs(scopes) do
    if not s.perGpu then out[#out + 1] = s.id end
  end
  return table.concat(out, ',')
end

--[[ capsOf(scopes): the GPU caps among scopes, comma separated, as a reservation records them ('caps'). ]]
local function capsOf(scopes)
  local out = {}
  for _, s in ipairs(scopes) do
    if s.perGpu then out[#out + 1] = s.base end
  end
  return table.concat(out, ',')
end

--[[ writeInit(s): persist a period's computed carry (idempotent: same value every time). ]]
local function writeInit(s)
  if s.initCarry then
    redis.call('HSET', s.key, 'carry', string.format('%.0f', s.initCarry), 'init', '1')
    s.initCarry = nil
  end
end

--[[ split(s): the comma-separated parts of s. ]]
local function split(s)
  local parts = {}
  for p in string.gmatch(s or '', '[^,]+') do parts[#parts + 1] = p end
  return parts
end
