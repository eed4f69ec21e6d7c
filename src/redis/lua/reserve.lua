--[[
  reserve: for each job of a batch, in order, hold its estimated GPU time
  against every scope it touches, all or nothing per job. Each job's decision
  sees the reservations of the jobs before it, exactly as if each had its own
  call; a batch only shares the cost of the call and of the counter writes.
  Idempotent per job id: a job that already has a reservation changes nothing
  and says so.

  Input:
    KEYS[1]    open-reservations zset         (member job id, score admittedAt)
    KEYS[2]    ledger stream                  (drained into Postgres)
    then, per job, in ARGV order:
      its reservation hash                    (amount, scopes, state, admittedAt, meta)
      one counter hash per scope              (limit, used, reserved; GPU-ms)

    ARGV[1]    now, epoch ms
    then, per job:
      job id
      amount, integer GPU-ms > 0
      job metadata, JSON, copied to the ledger
      number of scopes n
      n scope ids, in the same order as the job's scope keys

  Output: one entry per job, in order:
    { 1, amount }               reserved now
    { 2, amount, state }        reserved before (a retry); state 'reserved' or 'settled'
    { 0, n, scope, code, limit, used, reserved, ... }
                                does not fit; n failing scopes, five fields each;
                                code 1 = no limit configured (limit -1), 2 = would pass it

  Writes: per job its reservation hash; per batch one HINCRBY per scope
  touched, one ZADD and one XADD (fields: kind, at, then per job jobId,
  estimated, scopes, meta). Every read comes before the first write.
  Counter deltas are summed as Lua numbers (exact below 2^53 GPU-ms) and
  written with %.0f, never tostring (which keeps only 14 digits).
]]
local openKey   = KEYS[1]
local ledgerKey = KEYS[2]
local now       = ARGV[1]

local counters = {}   -- scope key -> { limit, used, reserved, delta }
local function counter(key)
  local c = counters[key]
  if not c then
    local h = redis.call('HMGET', key, 'limit', 'used', 'reserved')
    c = { limit = h[1] and tonumber(h[1]), used = tonumber(h[2] or '0'),
          reserved = tonumber(h[3] or '0'), delta = 0 }
    counters[key] = c
  end
  return c
end

local results, admitted = {}, {}
local admittedHere = {}   -- reservation key -> amount, for a job listed twice in one batch
local k, a = 3, 2     -- next key, next arg
while a <= #ARGV do
  local jobId, amount, meta, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local resKey, need = KEYS[k], tonumber(ARGV[a + 1])
  local prior = redis.call('HMGET', resKey, 'amount', 'state')
  if prior[1] then
    results[#results + 1] = { 2, tonumber(prior[1]), prior[2] }
  elseif admittedHere[resKey] then
    results[#results + 1] = { 2, admittedHere[resKey], 'reserved' }
  else
    local fail = { 0, 0 }
    for i = 1, n do
      local c = counter(KEYS[k + i])
      local code = nil
      if not c.limit then code = 1
      elseif c.used + c.reserved + need > c.limit then code = 2 end
      if code then
        fail[2] = fail[2] + 1
        local m = #fail
        fail[m + 1] = ARGV[a + 3 + i]; fail[m + 2] = code
        fail[m + 3] = c.limit or -1;   fail[m + 4] = c.used; fail[m + 5] = c.reserved
      end
    end
    if fail[2] > 0 then
      results[#results + 1] = fail
    else
      local ids = {}
      for i = 1, n do
        local c = counter(KEYS[k + i])
        c.reserved = c.reserved + need
        c.delta = c.delta + need
        ids[i] = ARGV[a + 3 + i]
      end
      admitted[#admitted + 1] = { resKey, jobId, amount, table.concat(ids, ','), meta }
      admittedHere[resKey] = need
      results[#results + 1] = { 1, need }
    end
  end
  k = k + 1 + n
  a = a + 4 + n
end

if #admitted > 0 then
  for key, c in pairs(counters) do
    if c.delta > 0 then
      redis.call('HINCRBY', key, 'reserved', string.format('%.0f', c.delta))
    end
  end
  local zadd, xadd = { 'ZADD', openKey }, { 'XADD', ledgerKey, '*', 'kind', 'reserve', 'at', now }
  for _, r in ipairs(admitted) do
    redis.call('HSET', r[1], 'amount', r[3], 'scopes', r[4], 'state', 'reserved', 'admittedAt', now, 'meta', r[5])
    zadd[#zadd + 1] = now; zadd[#zadd + 1] = r[2]
    local x = #xadd
    xadd[x + 1] = 'jobId'; xadd[x + 2] = r[2]; xadd[x + 3] = 'estimated'; xadd[x + 4] = r[3]
    xadd[x + 5] = 'scopes'; xadd[x + 6] = r[4]; xadd[x + 7] = 'meta'; xadd[x + 8] = r[5]
  end
  redis.call(unpack(zadd))
  redis.call(unpack(xadd))
end
return results
