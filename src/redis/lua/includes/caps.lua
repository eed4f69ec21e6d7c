--[[
  GPUs in flight, shared by reserve, release, settle and scope. A cap base
  names where GPUs are counted: 'gpus-project:<p>', 'gpus-user:<u>',
  'gpus-type:<p>/<gpu type>', 'gpus-global:all'. Its definition is one field
  of the hash '<base key>caps' (absent when no cap is set anywhere):
    max|peakMax|days|from|to
  max, peakMax: GPUs; days: one bit per weekday (1 Monday … 64 Sunday); from,
  to: minutes of the day, from < to. peakMax, days, from and to are empty
  without a peak window. The window is read in GATEKEEPER_TIMEZONE: callers
  pass the local minute of the week now (Monday 00:00 = 0) as periods.wm.
  Its counter is '<base key>scope:<cap base>', field 'reserved': the gpus of
  every unsettled reservation whose record lists the cap in its 'caps'
  field (reserve and release write them; settle takes them off; a new cap's
  count pass, caps-count.lua, adds the jobs already running).
  A cap state is a scope state (scopes.lua) with perGpu: a job counts its
  gpus against it, not its GPU-ms. It has no period, thresholds or crossed
  set, and it is never in the counters set, a reservation's scope ids or the
  ledger (which count hours). A cap not set (or no longer) has no state.
]]
local CAP_KINDS = { ['gpus-project'] = true, ['gpus-user'] = true, ['gpus-type'] = true, ['gpus-global'] = true }

--[[ capMax(def, wm): the cap's GPUs at local minute of the week `wm` (its peak value inside the window), or nil for a bad definition. ]]
local function capMax(def, wm)
  local max, peak, days, from, to = string.match(def, '^(%d+)|(%d*)|(%d*)|(%d*)|(%d*)$')
  if not max then return nil end
  if peak ~= '' and wm then
    local day, minute = math.floor(wm / 1440), wm % 1440
    if math.floor(tonumber(days) / 2 ^ day) % 2 == 1 and minute >= tonumber(from) and minute < tonumber(to) then
      return tonumber(peak)
    end
  end
  return tonumber(max)
end

--[[ capState(keyBase, capBase, wm): the state of a set cap, or nil. ]]
local function capState(keyBase, capBase, wm)
  local def = redis.call('HGET', keyBase .. 'caps', capBase)
  local max = def and capMax(def, wm)
  if not max then return nil end
  local key = keyBase .. 'scope:' .. capBase
  return { base = capBase, id = capBase, key = key, perGpu = true, optional = true, soft = false,
    used = 0, reserved = tonumber(redis.call('HGET', key, 'reserved') or '0'), limit = max, ceiling = max,
    delta = 0, exemptDelta = 0, counted = true, nextAt = false, crossed = {} }
end

--[[ capsOfJob(meta): the caps a job may count against (set or not), from its metadata; src/accounting/scopes.ts capsForJob names them alike. ]]
local function capsOfJob(meta)
  local out = { 'gpus-project:' .. meta.project, 'gpus-user:' .. meta.user }
  -- Only a GPU type a cap can be set on (a name: src/api validates it so) has one.
  if type(meta.gpuType) == 'string' and string.match(meta.gpuType, '^[%w._-]+$') then out[#out + 1] = 'gpus-type:' .. meta.project .. '/' .. meta.gpuType end
  out[#out + 1] = 'gpus-global:all'
  return out
end

--[[
  capJoiner(on, capsKey, lists): reserve's function (list, group index,
  group) -> list, gpus. The caps of a group's project, user and GPU type
  that are set join its scope list, as a list of its own per distinct
  combination (appended to `lists`, so its deltas are written like the
  others'), and its jobs count their gpus against them and wait in their
  lines like any scope. Decided once per group. With no cap set anywhere
  (`on` false) a list is its own and a job counts 1 GPU nowhere.
]]
local function capJoiner(on, capsKey, lists)
  local groupCaps, listOf = {}, {}
  return function(sig, gi, group)
    if not on then return sig, 1 end
    local g = groupCaps[gi]
    if not g then
      local m = cjson.decode(group[3])
      local cand = capsOfJob(m)
      local set = redis.call('HMGET', capsKey, unpack(cand))
      local bases, key = {}, group[1] .. '|'
      for i = 1, #sig.bases do bases[i] = sig.bases[i] end
      for i = 1, #cand do
        if set[i] then bases[#bases + 1] = cand[i]; key = key .. cand[i] .. ',' end
      end
      local c = sig
      if #bases > #sig.bases then
        c = listOf[key]
        if not c then c = { bases = bases }; listOf[key] = c; lists[#lists + 1] = c end
      end
      g = { c, tonumber(m.gpus) or 1 }
      groupCaps[gi] = g
    end
    return g[1], g[2]
  end
end
