--[[
  reserve: hold a job's estimated GPU time against every scope it touches,
  all or nothing, in one atomic step. Idempotent per job id: a retried call
  for a job that already has a reservation changes nothing and says so.

  Input:
    KEYS[1]    reservation hash of this job   (amount, scopes, state, ...)
    KEYS[2]    open-reservations zset         (member job id, score admittedAt)
    KEYS[3]    ledger stream                  (drained into Postgres)
    KEYS[4..]  one counter hash per scope     (limit, used, reserved; GPU-ms)

    ARGV[1]    job id
    ARGV[2]    amount, integer GPU-ms > 0
    ARGV[3]    now, epoch ms
    ARGV[4]    job metadata, JSON (project, user, jobType, gpuType), copied to the ledger
    ARGV[5..]  scope ids, same order as KEYS[4..]

  Output:
    { 1, amount }               reserved now
    { 2, amount, state }        reserved before (a retry); state is 'reserved' or 'settled'
    { 0, n, scope, code, limit, used, reserved, ... }
                                does not fit; n failing scopes follow, five fields each;
                                code 1 = no limit configured, 2 = would pass the limit
  All checks come before the first write: Redis has no rollback.
]]
local resKey    = KEYS[1]
local openKey   = KEYS[2]
local ledgerKey = KEYS[3]

local jobId  = ARGV[1]
local amount = ARGV[2]          -- kept as a string: HINCRBY needs the exact digits
local now    = ARGV[3]
local meta   = ARGV[4]
local nScopes = #KEYS - 3

local prior = redis.call('HMGET', resKey, 'amount', 'state')
if prior[1] then
  return { 2, tonumber(prior[1]), prior[2] }
end

local need = tonumber(amount)
local failures = {}
local nFail = 0
for i = 1, nScopes do
  local c = redis.call('HMGET', KEYS[3 + i], 'limit', 'used', 'reserved')
  local used = tonumber(c[2] or '0')
  local reserved = tonumber(c[3] or '0')
  if not c[1] then
    nFail = nFail + 1
    table.insert(failures, ARGV[4 + i]); table.insert(failures, 1)
    table.insert(failures, -1); table.insert(failures, used); table.insert(failures, reserved)
  elseif used + reserved + need > tonumber(c[1]) then
    nFail = nFail + 1
    table.insert(failures, ARGV[4 + i]); table.insert(failures, 2)
    table.insert(failures, tonumber(c[1])); table.insert(failures, used); table.insert(failures, reserved)
  end
end
if nFail > 0 then
  local out = { 0, nFail }
  for _, v in ipairs(failures) do table.insert(out, v) end
  return out
end

local scopeIds = {}
for i = 1, nScopes do
  redis.call('HINCRBY', KEYS[3 + i], 'reserved', amount)
  scopeIds[i] = ARGV[4 + i]
end
local scopes = table.concat(scopeIds, ',')
redis.call('HSET', resKey, 'amount', amount, 'scopes', scopes, 'state', 'reserved',
  'admittedAt', now, 'meta', meta)
redis.call('ZADD', openKey, now, jobId)
redis.call('XADD', ledgerKey, '*', 'kind', 'reserve', 'jobId', jobId, 'estimated', amount,
  'at', now, 'scopes', scopes, 'meta', meta)
return { 1, need }
