--[[
  Charges meeting scopes, shared by reserve and release: whether a job's
  charge triple (includes/pricing.lua) fits each scope in the scope's unit,
  the misfits it reports when it does not, and the sums a call writes.
]]
-- @include scopes
--[[ writeSums(s): add the charges admitted in this call to every unit's reserved counter. ]]
local function writeSums(s)
  local sum = s.sum
  for i = 1, 3 do
    if sum[i] > 0 then redis.call('HINCRBY', s.key, RESERVED[i], string.format('%d', sum[i])) end
  end
end

--[[ addCharge(s, c): a job's charge triple joins what this call adds to s. ]]
local function addCharge(s, c)
  local sum = s.sum
  sum[1] = sum[1] + c[1]; sum[2] = sum[2] + c[2]; sum[3] = sum[3] + c[3]
end

--[[
  misfits(scopes, charge, gpus): the scopes a job charged `charge` (a triple,
  includes/pricing.lua) on `gpus` GPUs does not fit, as a flat list of seven
  fields each (scope base, code, limit, used, reserved, unit, need):
  code 1 = no limit on a scope that needs one (limit -1), 2 = would pass a hard limit,
  3 = would pass a soft limit's grace (limit = the ceiling), 4 = would pass a
  GPU cap (in GPUs: limit = the cap now, used = the job's gpus, reserved =
  the GPUs in flight, unit 'g'). Amounts are in the scope's unit (h, u or d)
  and need is the job's charge in it.
]]
local function misfits(scopes, charge, gpus)
  local out = {}
  for _, s in ipairs(scopes) do
    local code, limit = nil, s.limit
    local need = s.perGpu and gpus or charge[s.unit]
    if not s.limit then
      if not s.optional then code, limit = 1, -1 end
    elseif s.perGpu then
      if s.reserved + gpus > s.ceiling then code = 4 end
    elseif s.ceiling and s.used + s.reserved + need > s.ceiling then
      code = s.soft and 3 or 2
      limit = s.ceiling
    end
    if code then
      local m = #out
      out[m + 1] = s.base; out[m + 2] = code; out[m + 3] = limit; out[m + 4] = code == 4 and gpus or s.used; out[m + 5] = s.reserved
      out[m + 6] = s.perGpu and 'g' or UNIT_LETTER[s.unit]; out[m + 7] = need
    end
  end
  return out
end

--[[
  fitsList(sig, charge, gpus): true when misfits(sig.scopes, charge, gpus)
  would be empty, asking only a resolved scope list's limited scopes (no
  table built; reserve.lua's resolve sets sig.limited and sig.blocked).
]]
local function fitsList(sig, charge, gpus)
  if sig.blocked then return false end
  local limited = sig.limited
  for i = 1, #limited do
    local sc = limited[i]
    if sc.ceiling and sc.used + sc.reserved + (sc.perGpu and gpus or charge[sc.unit]) > sc.ceiling then return false end
  end
  return true
end

--[[
  misfitsText(short): misfits as stored on a held record and in JOB_HELD:
  'base|code|limit|used|reserved|unit|need' joined by ';' (numbers exact, %.0f).
]]
local function misfitsText(short)
  local flat = {}
  for i = 1, #short, MISFIT_WIDTH do
    flat[#flat + 1] = table.concat({ short[i], short[i + 1], string.format('%.0f', short[i + 2]),
      string.format('%.0f', short[i + 3]), string.format('%.0f', short[i + 4]), short[i + 5], string.format('%.0f', short[i + 6]) }, '|')
  end
  return table.concat(flat, ';')
end

--[[ softOver(scopes, charge): bases of soft scopes this job takes past their limit (warn). ]]
local function softOver(scopes, charge)
  local out = nil
  for i = 1, #scopes do
    local s = scopes[i]
    if s.soft and s.limit and not s.perGpu and s.used + s.reserved + charge[s.unit] > s.limit then
      out = out or {}
      out[#out + 1] = s.base
    end
  end
  return out or NONE
end

--[[
  writeTouched(touched): write what a call added to each scope it touched
  (carry, crossed thresholds, every unit's reserved sum, exempt GPU-ms, a
  GPU cap's GPUs); the counter ids to add to the counters set.
]]
local function writeTouched(touched)
  local counted = {}
  for _, s in ipairs(touched) do
    writeInit(s)
    writeCrossed(s)
    -- %d: exact for these integers (Lua 5.1 formats it as a 64-bit long) and
    -- cheaper than %.0f's floating-point path (docs/benchmarks.md).
    local wrote = s.exemptDelta > 0
    if s.perGpu then
      if s.delta > 0 then redis.call('HINCRBY', s.key, 'reserved', string.format('%d', s.delta)) end
    else
      writeSums(s)
      wrote = wrote or s.sum[1] > 0 or s.sum[2] > 0 or s.sum[3] > 0
    end
    if s.exemptDelta > 0 then redis.call('HINCRBY', s.key, 'exemptReserved', string.format('%d', s.exemptDelta)) end
    if wrote and not s.perGpu and not s.counted then counted[#counted + 1] = s.id end
  end
  return counted
end

--[[ dryWarnings(events): a dry run's events as { type, scope, threshold or '' }, JOB_HELD left out (results say it). ]]
local function dryWarnings(events)
  local warnings = {}
  for _, e in ipairs(events) do
    if e[1] ~= 'JOB_HELD' then
      local f = {}
      for i = 2, #e, 2 do f[e[i]] = e[i + 1] end
      warnings[#warnings + 1] = { e[1], f.scope, f.threshold or '' }
    end
  end
  return warnings
end

--[[ addFree(sigs): each scope list's admitted charges (freeSum) join its scopes without a limit, once per call. ]]
local function addFree(sigs)
  for _, sig in ipairs(sigs) do
    local f = sig.freeSum
    if f and (f[1] > 0 or f[2] > 0 or f[3] > 0) then
      for _, s in ipairs(sig.free) do
        s.reserved = s.reserved + f[s.unit]
        addCharge(s, f)
      end
    end
  end
end
