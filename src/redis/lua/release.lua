--[[
  release: re-run admission for held jobs, in the order given (the caller
  passes them oldest first), or admit one regardless of budget (override).

  First in, first out per project: in 'fifo' mode a job leaves only when no
  older held job of its project remains, so a newer job never overtakes an
  older one. ('override' admits the one job it is given, at once.)

  Input:
    KEYS[1]    open-reservations zset
    KEYS[2]    ledger stream
    KEYS[3]    all-held zset
    ARGV[1]    now, epoch ms
    ARGV[2]    mode: 'fifo' | 'override'
    ARGV[3]    note for the ledger (who released it, and why)
    ARGV[4]    key base, '<prefix>:' of every gatekeeper key (KEYS[1] without 'open');
               reservation, scope and held keys are built from it. They carry
               the same hash tag as KEYS, so they live in the same cluster slot.
    ARGV[5..]  job ids, oldest first

  Output: one entry per job, in order:
    { 1, amount }               admitted now (reserved; take it off gpu-held, add to gpu-exec)
    { 0, amount, n, <shortfall> * n }
                                does not fit: still held (shortfall: scope id, code,
                                limit, used, reserved; as in reserve.lua)
    { 4, ahead }                still held: `ahead` older held jobs of its project go first
    { -1, state }               not held (state: 'reserved', 'settled', 'cancelled' or 'missing')
]]
-- @include shortfalls

local openKey, ledgerKey, allHeldKey = KEYS[1], KEYS[2], KEYS[3]
local now, mode, note, base = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function scopeKeysOf(scopeIds)
  local keys = {}
  for i, id in ipairs(scopeIds) do keys[i] = base .. 'scope:' .. id end
  return keys
end

local results = {}
for a = 5, #ARGV do
  local jobId = ARGV[a]
  local resKey = base .. 'res:' .. jobId
  local r = redis.call('HMGET', resKey, 'amount', 'state', 'scopes', 'meta')
  local out
  if r[2] ~= 'held' then
    out = { -1, r[2] or 'missing' }
  else
    local heldKey = base .. 'held:' .. cjson.decode(r[4]).project
    local rank = redis.call('ZRANK', heldKey, jobId) or 0
    local ids = split(r[3])
    local keys = scopeKeysOf(ids)
    local need = tonumber(r[1])
    if mode == 'fifo' and rank > 0 then
      out = { 4, rank }
    end
    if not out and mode ~= 'override' then
      local short = shortfalls(readCounter, keys, ids, need)
      if #short > 0 then
        out = { 0, need, #short / 5 }
        for _, v in ipairs(short) do out[#out + 1] = v end
      end
    end
    if not out then
      for i = 1, #keys do redis.call('HINCRBY', keys[i], 'reserved', r[1]) end
      redis.call('HSET', resKey, 'state', 'reserved', 'admittedAt', now)
      redis.call('ZREM', heldKey, jobId)
      redis.call('ZREM', allHeldKey, jobId)
      redis.call('ZADD', openKey, now, jobId)
      redis.call('XADD', ledgerKey, '*', 'kind', 'reserve', 'at', now, 'note', note,
        'override', mode == 'override' and '1' or '0',
        'jobId', jobId, 'estimated', r[1], 'scopes', r[3], 'meta', r[4])
      out = { 1, need }
    end
  end
  results[#results + 1] = out
end
return results
