--[[
  Scopes, shared by reserve and release.

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
  Its counters live per period, '<base key>scope:<scope id>', where the scope
  id is the base for one-off scopes and '<base>@<period label>' otherwise, so a
  new period starts at zero by itself, whatever ran (or did not) at midnight:
    used, reserved                  GPU-ms counted against the limit
    exemptUsed, exemptReserved      GPU-ms of exempt job types (never counted)
    carry                           rolled over from the previous period
    adjust                          admins' manual adjustment of this period
    init                            '1' once carry has been computed

  The effective limit of a period is limit + carry + adjust.

  Kinds that are optional (user quotas, run caps) without a limit admit
  everything and still count it; any other kind without a limit is unknown
  (code 1: the caller's policy holds or rejects the job).

  Exactness: all values are integers below 2^53 (limits are capped by the
  API), summed as Lua numbers and written with %.0f.
]]
local FIXED_PERIOD = { ['user-day'] = 'day', ['user-week'] = 'week' }
local OPTIONAL = { ['user-day'] = true, ['user-week'] = true, ['run'] = true }

--[[
  scopeReader(keyBase, periods, now): a function base -> scope state, read
  once per call and cached, so every job of a batch sees the ones before it
  through the deltas. `periods` is { day|week|month = { label, prev,
  prevStart } } for now in the configured time zone. State:
    { base, id, key, used, reserved, limit|nil, ceiling|nil, soft, optional,
      delta, exemptDelta, initCarry|nil }
  `ceiling` is where admission stops: the limit (hard), the limit plus grace
  (soft with grace), or nil (soft without grace).
]]
local function scopeReader(keyBase, periods, now)
  local cache = {}
  return function(scopeBase)
    local s = cache[scopeBase]
    if s then return s end
    local d = redis.call('HMGET', keyBase .. 'def:' .. scopeBase,
      'limit', 'policy', 'grace', 'period', 'rollover', 'rolloverCap', 'setAt')
    local kind = string.match(scopeBase, '^([^:]+):') or scopeBase
    local p = periods[FIXED_PERIOD[kind] or d[4] or 'none']
    local id = p and (scopeBase .. '@' .. p.label) or scopeBase
    local key = keyBase .. 'scope:' .. id
    local c = redis.call('HMGET', key, 'used', 'reserved', 'carry', 'adjust', 'init')
    s = { base = scopeBase, id = id, key = key, optional = OPTIONAL[kind] or false,
          used = tonumber(c[1] or '0'), reserved = tonumber(c[2] or '0'),
          delta = 0, exemptDelta = 0, soft = d[2] == 'soft' }
    local carry = tonumber(c[3] or '0')
    if p and d[1] and d[5] == '1' and not c[5] then
      -- First touch of this period: carry what the previous one left unused
      -- (its open reservations count as spent). A previous period nobody
      -- touched left its whole limit unused, if the budget existed then.
      local q = redis.call('HMGET', keyBase .. 'scope:' .. scopeBase .. '@' .. p.prev, 'used', 'reserved', 'carry', 'adjust')
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
    end
    cache[scopeBase] = s
    return s
  end
end

--[[
  misfits(scopes, need): the scopes a job of `need` GPU-ms does not fit, as a
  flat list of five fields each (scope base, code, limit, used, reserved):
  code 1 = no limit on a scope that needs one (limit -1), 2 = would pass a
  hard limit, 3 = would pass a soft limit's grace (limit = the ceiling).
]]
local function misfits(scopes, need)
  local out = {}
  for _, s in ipairs(scopes) do
    local code, limit = nil, s.limit
    if not s.limit then
      if not s.optional then code, limit = 1, -1 end
    elseif s.ceiling and s.used + s.reserved + need > s.ceiling then
      code = s.soft and 3 or 2
      limit = s.ceiling
    end
    if code then
      local m = #out
      out[m + 1] = s.base; out[m + 2] = code; out[m + 3] = limit; out[m + 4] = s.used; out[m + 5] = s.reserved
    end
  end
  return out
end

--[[ softOver(scopes, need): bases of soft scopes this job takes past their limit (warn). ]]
local function softOver(scopes, need)
  local out = {}
  for _, s in ipairs(scopes) do
    if s.soft and s.limit and s.used + s.reserved + need > s.limit then out[#out + 1] = s.base end
  end
  return out
end

--[[ ids(scopes): the counter ids, comma separated, as a reservation records them. ]]
local function ids(scopes)
  local out = {}
  for i, s in ipairs(scopes) do out[i] = s.id end
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
