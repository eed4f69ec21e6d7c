--[[
  Pricing, shared by reserve, release and settle: what a job costs in each
  unit, in exact integers (src/accounting/pricing.ts is the same rule in
  BigInt; test/pricing.test.ts holds the two together).

  A charge is a triple indexed by unit: [1] GPU-ms, [2] milli-units,
  [3] micro-dollars. For g GPU-ms at a rate (milli-units and micro-dollars
  per GPU-hour) with usage factor f (thousandths):
    [1] ceil(g * f / 1000)
    [2] ceil(g * f * unitsMilli / 3,600,000,000)
    [3] ceil(g * f * usdMicro   / 3,600,000,000)
  Lua numbers are doubles, exact below 2^53 only, and g * f * rate passes
  that for a large job; so the products are kept in base-10^6 limbs and
  divided limb by limb. Rates are at most 10^9 and factors 10^5 (the API
  refuses more), which keeps every intermediate below 2^53. A charge itself
  past 2^53 (an extreme rate and factor on a huge job) is not counted:
  chargeOf answers nil, reserve and release reject the job ('too-costly')
  and settle, which must record what ran, counts such a unit as
  MAX_CHARGE (chargeSaturated).

  Rates: the hash '<base key>rates', field = GPU type ('*': the default), value
  'from:unitsMilli:usdMicro' entries joined by ';', ascending by from (epoch
  ms); the entry in force at now is the last whose from <= now.
  Factors: the hash '<base key>factors', field = job type, value the factor
  in thousandths (absent: 1000; 0: exempt).
]]
local LIMB = 1000000
local HOUR_FACTOR = 3600000000
local TWO53 = 9007199254740992
local MAX_CHARGE = TWO53 - 1
-- A job type with no factor set, and a GPU type with no rate while no default is set.
local FULL_FACTOR = 1000
local BUILTIN_RATE = { 1000, 0 }

--[[ divmod(a, b): a = q * b + r with 0 <= r < b, exactly (math.floor(a / b) alone may be one off near 2^53). ]]
local function divmod(a, b)
  local q = math.floor(a / b)
  local r = a - q * b
  if r < 0 then q, r = q - 1, r + b elseif r >= b then q, r = q + 1, r - b end
  return q, r
end

--[[ mulDivCeil(g, a, b, d): ceil(g * a * b / d), exact; g < 2^53, a and b <= 10^9, d <= 9 * 10^9. nil past 2^53. ]]
local function mulDivCeil(g, a, b, d)
  if g == 0 or a == 0 or b == 0 then return 0 end
  local L, n = {}, g
  while n > 0 do
    local q, m = divmod(n, LIMB)
    L[#L + 1] = m
    n = q
  end
  for _, k in ipairs({ a, b }) do
    if k ~= 1 then
      local carry = 0
      for i = 1, #L do
        local q, m = divmod(L[i] * k + carry, LIMB)
        L[i] = m
        carry = q
      end
      while carry > 0 do
        local q, m = divmod(carry, LIMB)
        L[#L + 1] = m
        carry = q
      end
    end
  end
  local out, rem = 0, 0
  for i = #L, 1, -1 do
    local q, m = divmod(rem * LIMB + L[i], d)
    out = out * LIMB + q
    rem = m
    if out >= TWO53 then return nil end
  end
  if rem > 0 then out = out + 1 end
  if out >= TWO53 then return nil end
  return out
end

--[[ chargeParts(g, rate, factor): the rule above, unit by unit: GPU-ms, milli-units, micro-dollars, each nil past 2^53. ]]
local function chargeParts(g, rate, factor)
  return factor == FULL_FACTOR and g or mulDivCeil(g, factor, 1, 1000), mulDivCeil(g, factor, rate[1], HOUR_FACTOR), mulDivCeil(g, factor, rate[2], HOUR_FACTOR)
end

--[[ chargeOf(g, rate, factor): the charge triple of g GPU-ms at rate { unitsMilli, usdMicro } and factor (thousandths); nil if a unit passes 2^53. ]]
local function chargeOf(g, rate, factor)
  local h, u, d = chargeParts(g, rate, factor)
  if not (h and u and d) then return nil end
  return { h, u, d }
end

--[[
  chargeSaturated(g, rate, factor): chargeOf, with a unit past 2^53 counted
  as MAX_CHARGE; and the letters of those units ('' when none).
]]
local function chargeSaturated(g, rate, factor)
  local h, u, d = chargeParts(g, rate, factor)
  local c, capped = { h, u, d }, ''
  for i, letter in ipairs({ 'h', 'u', 'd' }) do
    if not c[i] then c[i], capped = MAX_CHARGE, capped .. letter end
  end
  return c, capped
end

--[[ chargeText(c): a charge triple as records and the ledger keep it, 'gpuMs|milliUnits|microUsd'. ]]
local function chargeText(c)
  return string.format('%d|%d|%d', c[1], c[2], c[3])
end

--[[ parseTriple(text): 'a|b|c' as three numbers, or nil. ]]
local function parseTriple(text)
  if not text then return nil end
  local a, b, c = string.match(text, '^(%d+)|(%d+)|(%d+)$')
  if not a then return nil end
  return { tonumber(a), tonumber(b), tonumber(c) }
end

--[[
  pricer(keyBase, now): per call, cached lookups.
    rateOf(gpuType): { unitsMilli, usdMicro, known = true|false } in force at
      now; known false: the type has no rate (the default's, or the
      built-in one unit and no dollars per GPU-hour while no default is set),
      or is '*', the default's own field (a job held before the contract
      refused that name).
      A rate's `text` is 'unitsMilli|usdMicro', as records keep it.
    factorOf(jobType): the job type's factor in thousandths.
    priceText(rate, factor): 'unitsMilli|usdMicro|factor' (rate: one of
      rateOf's), made once per call for each rate and factor: a number
      turned into text costs a printf
      (docs/benchmarks.md).
    factorText(factor): the factor as records keep it, made once per call.
    charge(amount, rate, factor): chargeOf the GPU-ms `amount` (its decimal text,
      the memo's key: tostring keeps only 14 digits), memoised (a batch's
      jobs share a few estimates); nil past 2^53.
]]
local function pricer(keyBase, now)
  local rates, factors, memo, factorTexts = {}, {}, {}, {}
  local ratesKey, factorsKey = keyBase .. 'rates', keyBase .. 'factors'
  -- A rate as the call keeps it: its two numbers and its text.
  local function rateEntry(u, d)
    return { u, d, text = string.format('%d|%d', u, d) }
  end
  local function inForce(text)
    if not text then return nil end
    local found = nil
    for from, u, d in string.gmatch(text, '(%d+):(%d+):(%d+)') do
      if tonumber(from) <= now then found = { u, d } end
    end
    return found and rateEntry(tonumber(found[1]), tonumber(found[2]))
  end
  local function rateOf(gpuType)
    local r = rates[gpuType]
    if r then return r end
    local h = redis.call('HMGET', ratesKey, gpuType == '' and '*' or gpuType, '*')
    r = gpuType ~= '' and gpuType ~= '*' and inForce(h[1])
    if r then
      r.known = true
    else
      r = inForce(h[2]) or rateEntry(BUILTIN_RATE[1], BUILTIN_RATE[2])
      r.known = false
    end
    rates[gpuType] = r
    return r
  end
  local function factorOf(jobType)
    if jobType == '' then return FULL_FACTOR end
    local f = factors[jobType]
    if f == nil then
      f = tonumber(redis.call('HGET', factorsKey, jobType) or '') or FULL_FACTOR
      factors[jobType] = f
    end
    return f
  end
  local function factorText(factor)
    local t = factorTexts[factor]
    if not t then
      t = string.format('%d', factor)
      factorTexts[factor] = t
    end
    return t
  end
  local function priceText(rate, factor)
    local byFactor = rate.priced
    if not byFactor then
      byFactor = {}
      rate.priced = byFactor
    end
    local t = byFactor[factor]
    if not t then
      t = rate.text .. '|' .. factorText(factor)
      byFactor[factor] = t
    end
    return t
  end
  local function charge(amount, rate, factor)
    local key = priceText(rate, factor) .. ':' .. amount
    local c = memo[key]
    if c == nil then
      c = chargeOf(tonumber(amount), rate, factor) or false
      memo[key] = c
    end
    return c or nil
  end
  return { rateOf = rateOf, factorOf = factorOf, priceText = priceText, factorText = factorText, charge = charge }
end

--[[
  gpuAllowed(keyBase): allows(project, gpuType), false when the project may
  use only other GPU types ('<base key>gpu-allowed' field project = types
  comma separated; a job naming no type is then refused too). Read only
  while any project has a list: one EXISTS per call, one HGET per project.
]]
local function gpuAllowed(keyBase)
  local allowedKey = keyBase .. 'gpu-allowed'
  local allowedOn = redis.call('EXISTS', allowedKey) == 1
  local allowedIn = {}  -- project -> set of types, or false: any
  return function(project, gpuType)
    if not allowedOn then return true end
    local a = allowedIn[project]
    if a == nil then
      local csv = redis.call('HGET', allowedKey, project)
      a = false
      if csv then
        a = {}
        for t in string.gmatch(csv, '[^,]+') do a[t] = true end
      end
      allowedIn[project] = a
    end
    return not a or (gpuType ~= '' and a[gpuType] == true)
  end
end

--[[
  groupPricer(keyBase, price): reserve's per-group pricing. priceGroup(gi,
  group) sets, once per call, group.rate and group.factor (from `price`, a
  pricer) and group.allowed (gpuAllowed), and adds the group to `prices`
  ({ group index, 'unitsMilli|usdMicro|factor', ... }), which the reply
  carries. group: [ sig, project, meta, job type, GPU type ].
]]
local function groupPricer(keyBase, price)
  local allows = gpuAllowed(keyBase)
  local prices = {}
  local function priceGroup(gi, group)
    if not group.rate then
      group.allowed = allows(group[2], group[5] or '')
      group.rate, group.factor = price.rateOf(group[5] or ''), price.factorOf(group[4])
      group.factorText = price.factorText(group.factor)
      prices[#prices + 1] = gi
      prices[#prices + 1] = price.priceText(group.rate, group.factor)
    end
    return group
  end
  return priceGroup, prices
end

--[[
  groupCharge(price, group, amount): the charge triple of a job of a priced
  group (priceGroup) estimated at `amount` GPU-ms (its decimal text), with
  its text (chargeText) as `text`; the group keeps its last (most of a
  group's jobs share one estimate). nil: past 2^53 (too costly to count).
]]
local function groupCharge(price, group, amount)
  if group.lastAmount ~= amount then
    local c = price.charge(amount, group.rate, group.factor)
    if c then c.text = c.text or chargeText(c) end
    group.lastAmount, group.lastCharge = amount, c or false
  end
  return group.lastCharge or nil
end
