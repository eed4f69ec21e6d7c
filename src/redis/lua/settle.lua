--[[
  settle: replace a job's reservation by the GPU time it actually used, in
  every scope it was reserved against. Idempotent per job id: the second and
  later calls change nothing, so duplicate or late completion signals and a
  reconciler restarted mid-sweep never count hours twice. The counters are
  those of the periods it was admitted in (its scope ids carry them), so a job
  admitted at 23:59 and finished after midnight is charged to the day it was
  admitted in. An exempt job moves exemptReserved to exemptUsed instead.
  A job that ran over its estimate may cross a threshold: THRESHOLD_CROSSED
  events as in reserve.lua, in the same atomic step.

  Input:
    KEYS[1]    reservation hash of this job
    KEYS[2]    open-reservations zset
    KEYS[3]    ledger stream
    KEYS[4..]  counter hash of each scope the job was reserved against

    ARGV[1]    job id
    ARGV[2]    actual, integer GPU-ms >= 0 (0 releases the reservation)
    ARGV[3]    now, epoch ms
    ARGV[4]    ledger kind: 'settle' (ran) or 'release' (never ran)
    ARGV[5]    seconds to remember the settled reservation (blocks re-admission of a late retry)
    ARGV[6]    note for the ledger (why it was settled this way), may be ''
    ARGV[7..]  scope ids, same order as KEYS[4..]; must equal the reservation's own

  Output:
    { 1, reserved, actual }     settled now
    { 2, reserved, actual }     settled before; nothing changed
    { -1 }                      no reservation for this job (none, or held or cancelled)
    { -2, scopes }              the given scopes are not the reservation's (caller bug)
]]
-- @include scopes

local resKey    = KEYS[1]
local openKey   = KEYS[2]
local ledgerKey = KEYS[3]

local jobId   = ARGV[1]
local actual  = ARGV[2]
local now     = ARGV[3]
local kind    = ARGV[4]
local retain  = ARGV[5]
local note    = ARGV[6]
local nScopes = #KEYS - 3

if not string.match(actual, '^%d+$') then
  return redis.error_reply('settle: actual must be a whole number of GPU-ms, got ' .. actual)
end
local r = redis.call('HMGET', resKey, 'amount', 'scopes', 'state', 'actual', 'meta', 'admittedAt', 'exempt')
if r[3] == 'settled' then
  return { 2, tonumber(r[1]), tonumber(r[4]) }
end
if r[3] ~= 'reserved' then
  return { -1 }
end
local given = {}
for i = 1, nScopes do given[i] = ARGV[6 + i] end
if table.concat(given, ',') ~= r[2] then
  return { -2, r[2] }
end

local amount = r[1]
local exempt = r[7] == '1'
local reservedField, usedField = 'reserved', 'used'
if exempt then reservedField, usedField = 'exemptReserved', 'exemptUsed' end
for i = 1, nScopes do
  redis.call('HINCRBY', KEYS[3 + i], reservedField, '-' .. amount)
  redis.call('HINCRBY', KEYS[3 + i], usedField, actual)
end
-- Registered for the drift audit (same key base as 'open').
if #given > 0 then redis.call('SADD', string.sub(openKey, 1, -5) .. 'counters', unpack(given)) end
if not exempt and tonumber(actual) > tonumber(amount) then
  -- Usage grew: judge thresholds as reserve does (same key base as 'open').
  local base = string.sub(openKey, 1, -5)
  local events = {}
  for i = 1, nScopes do
    local id = ARGV[6 + i]
    local scopeBase = string.match(id, '^([^@]+)')
    local d = redis.call('HMGET', base .. 'def:' .. scopeBase, 'limit', 'thresholds')
    if d[1] then
      local c = redis.call('HMGET', KEYS[3 + i], 'used', 'reserved', 'carry', 'adjust', 'crossed', 'crossedLimit')
      local st = { base = scopeBase, id = id, key = KEYS[3 + i], used = tonumber(c[1] or '0'), reserved = tonumber(c[2] or '0'),
        limit = tonumber(d[1]) + tonumber(c[3] or '0') + tonumber(c[4] or '0'), thresholds = {} }
      for t in string.gmatch(d[2] or '75,90,100', '%d+') do st.thresholds[#st.thresholds + 1] = tonumber(t) end
      loadCrossed(st, c[5], c[6])
      crossings(st, jobId, events)
      writeCrossed(st)
    end
  end
  emit(base, events, now)
end
redis.call('HSET', resKey, 'state', 'settled', 'actual', actual, 'settledAt', now)
redis.call('EXPIRE', resKey, retain)
redis.call('ZREM', openKey, jobId)
redis.call('XADD', ledgerKey, '*', 'kind', kind, 'at', now, 'note', note,
  'jobId', jobId, 'estimated', amount, 'actual', actual, 'admittedAt', r[6], 'scopes', r[2], 'meta', r[5], 'exempt', exempt and '1' or '0')
return { 1, tonumber(amount), tonumber(actual) }
