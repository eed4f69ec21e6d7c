--[[
  settle: replace a job's reservation by the GPU time it actually used, in
  every scope it was reserved against. Idempotent per job id: the second and
  later calls change nothing, so duplicate or late completion signals and a
  reconciler restarted mid-sweep never count hours twice. The counters are
  those of the periods it was admitted in (its scope ids carry them), so a job
  admitted at 23:59 and finished after midnight is charged to the day it was
  admitted in. An exempt job moves exemptReserved to exemptUsed instead.
  Units (includes/pricing.lua): the actual GPU-ms are priced at the rate and
  usage factor the job was admitted with (its record's 'rate' and 'factor'),
  whatever the rate card says now, and every unit's reserved charge is
  replaced by its actual charge. A record from before rates (no 'charge')
  was charged its GPU-ms and nothing else.
  A job that ran over its estimate may cross a threshold: THRESHOLD_CROSSED
  events as in reserve.lua, in the same atomic step.

  Input:
    KEYS[1]    reservation hash of this job
    KEYS[2]    open-reservations zset
    KEYS[3]    ledger stream
    KEYS[4..]  counter hash of each scope the job was reserved against

    ARGV[1]    key base, '<prefix>:' of every gatekeeper key (see reserve.lua)
    ARGV[2]    job id
    ARGV[3]    actual, integer GPU-ms >= 0 (0 releases the reservation)
    ARGV[4]    now, epoch ms
    ARGV[5]    ledger kind: 'settle' (ran) or 'release' (never ran)
    ARGV[6]    seconds to remember the settled reservation (blocks re-admission of a late retry)
    ARGV[7]    note for the ledger (why it was settled this way), may be ''
    ARGV[8..]  scope ids, same order as KEYS[4..]; must equal the reservation's own

  A job counted against GPU caps (its record's 'caps' and 'gpus') gives its
  GPUs back to each, and their lines are signalled like the others.

  A job that used less than it reserved makes room: each of its scopes with
  held jobs in line is added to the wake set ('<base>wake', member scope
  base, score the first signal's time), where the waker (workers/waker.ts)
  decides their heads again.

  Output:
    { 1, reserved, actual, capped }
                                settled now; capped: the letters (h, u, d) of
                                units whose charge passed 2^53, '' if none
    { 2, reserved, actual }     settled before; nothing changed
    { -1 }                      no reservation for this job (none, or held or cancelled)
    { -2, scopes }              the given scopes are not the reservation's (caller bug)

  Every read comes before the first write.
]]
-- @include scopes
-- @include wake
-- @include pricing

local resKey, openKey, ledgerKey = KEYS[1], KEYS[2], KEYS[3]
local base, jobId, actual, now, kind, retain, note = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local nScopes = #KEYS - 3

if not string.match(actual, '^%d+$') then
  return redis.error_reply('settle: actual must be a whole number of GPU-ms, got ' .. actual)
end
local r = redis.call('HMGET', resKey, 'amount', 'scopes', 'state', 'actual', 'meta', 'admittedAt', 'exempt', 'caps', 'gpus', 'rate', 'factor', 'charge')
if r[3] == 'settled' then
  return { 2, tonumber(r[1]), tonumber(r[4]) }
end
if r[3] ~= 'reserved' then
  return { -1 }
end
local given = {}
for i = 1, nScopes do given[i] = ARGV[7 + i] end
if table.concat(given, ',') ~= r[2] then
  return { -2, r[2] }
end

local amount = r[1]
local exempt = r[7] == '1'
local est = parseTriple(r[12])
local rate, factor
if est then
  local u, d = string.match(r[10] or '', '^(%d+)|(%d+)$')
  factor = tonumber(r[11] or '')
  if not u or not factor then return redis.error_reply('settle: job ' .. jobId .. ' has a charge but no rate or factor') end
  rate = { tonumber(u), tonumber(d) }
else
  est, rate, factor = { tonumber(amount), 0, 0 }, { 0, 0 }, 1000
end
-- Past 2^53 in a unit (an extreme rate and factor on a huge job): counted as
-- the most a counter holds exactly, and said in the ledger note, never an
-- error, which would leave the job unsettled for ever.
local got, capped = { 0, 0, 0 }, ''
if not exempt then got, capped = chargeSaturated(tonumber(actual), rate, factor) end
if capped ~= '' then note = note .. (note == '' and '' or '; ') .. 'charge past 2^53 in unit ' .. capped .. ': counted as 2^53 - 1' end
-- Usage grew past the estimate: judge thresholds as reserve does, on the
-- scopes as they will be after this settle (read now, written below).
local grown = {}
if not exempt then
  for i = 1, nScopes do
    local s = scopeAt(base, given[i])
    if s.limit and got[s.unit] > est[s.unit] then
      s.reserved = s.reserved - est[s.unit]
      s.used = s.used + got[s.unit]
      grown[#grown + 1] = s
    end
  end
end

for i = 1, nScopes do
  if exempt then
    redis.call('HINCRBY', KEYS[3 + i], 'exemptReserved', '-' .. amount)
    redis.call('HINCRBY', KEYS[3 + i], 'exemptUsed', actual)
  else
    for u = 1, 3 do
      if est[u] > 0 then redis.call('HINCRBY', KEYS[3 + i], RESERVED[u], string.format('-%d', est[u])) end
      if got[u] > 0 or u == 1 then redis.call('HINCRBY', KEYS[3 + i], USED[u], string.format('%d', got[u])) end
    end
  end
end
-- Registered for the drift audit.
if #given > 0 then redis.call('SADD', base .. 'counters', unpack(given)) end
if #grown > 0 then
  local events = {}
  for _, s in ipairs(grown) do
    crossings(s, jobId, events)
    writeCrossed(s)
  end
  emit(base, events, now)
end
-- Its GPUs leave every cap it counted against (includes/caps.lua); that is room too.
if r[8] then
  local caps = split(r[8])
  for _, cap in ipairs(caps) do redis.call('HINCRBY', base .. 'scope:' .. cap, 'reserved', '-' .. r[9]) end
  wakeNonEmpty(base, caps, now)
end
if not exempt and (got[1] < est[1] or got[2] < est[2] or got[3] < est[3]) then
  local lineKeys, bases = {}, {}
  for i = 1, nScopes do
    bases[i] = string.match(given[i], '^([^@]+)')
    lineKeys[i] = base .. 'line:' .. bases[i]
  end
  -- One EXISTS over the lines: most settles find nobody waiting.
  if redis.call('EXISTS', unpack(lineKeys)) > 0 then wakeNonEmpty(base, bases, now) end
end
redis.call('HSET', resKey, 'state', 'settled', 'actual', actual, 'settledAt', now)
redis.call('EXPIRE', resKey, retain)
redis.call('ZREM', openKey, jobId)
redis.call('XADD', ledgerKey, '*', 'kind', kind, 'at', now, 'note', note,
  'jobId', jobId, 'estimated', amount, 'actual', actual, 'admittedAt', r[6], 'scopes', r[2], 'meta', r[5], 'exempt', exempt and '1' or '0',
  'price', rate[1] .. '|' .. rate[2] .. '|' .. factor, 'charge', chargeText(est), 'actualCharge', chargeText(got))
return { 1, tonumber(amount), tonumber(actual), capped }
