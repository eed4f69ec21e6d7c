--[[
  Submission rate limits, for reserve: a token bucket per user and per
  project, kept as integer GCRA ("virtual scheduling").

  A bucket, '<key base>rate:<scope>' (scope 'user:<u>' or 'project:<p>'), is
  a hash (and its scope is in the set '<key base>rate-scopes', in the same
  MULTI: reserve reads buckets only while that set is not empty):
    jpm, burst   what an admin set (src/accounting/definitions.ts writes
                 them; no jpm: no rate limit)
    t            '<tat>:<rem>:<scale>': the theoretical arrival time of the
                 next job, tat ms plus rem/scale of a ms (scale is the jpm
                 it was counted in, so a changed jpm keeps the instant)
  Time is counted in units of 1/jpm ms, so a job is exactly 60,000 units
  (one minute / jpm) and the tolerance (burst - 1) * 60,000 units: integers
  only. tat * jpm itself would pass 2^53 (epoch ms times a million), so only
  differences to now are scaled, and those stay far below it.

  A job over a bucket's rate books its slot there (the bucket's tat moves on
  for it, so jobs keep their order and come back spread out, not as a herd)
  and is due when that slot conforms. A bucket the job fits is only charged
  when the job goes on to the budget decision: a user's flood, throttled by
  the user's bucket, does not use up the project's tokens for the project's
  other users while it waits. A returning job skips the buckets it paid.

  A throttled job's record ('<key base>res:<id>'): state 'throttled', due
  (epoch ms), paid (the scopes it booked, comma separated), by (the buckets
  that throttled it last, 'scope|jpm|burst' joined by ';'), ts; it expires
  THROTTLED_KEEP_MS after its due time (a job that never came back). The
  zset '<key base>throttled' holds the ids of throttled jobs by due time
  (the throttled-jobs gauge counts it). A job rejected when it comes back
  leaves both, as a job rejected at once leaves no record.
]]
--[[
  rateModule(keyBase, on): { bucketOf, buckets, gate, decided, write };
  bucketOf reads buckets when `on` (a rate limit is set somewhere), else
  finds none; buckets lists those read. The module keeps what the call's
  decisions leave to write (jobs throttled now, and jobs throttled before
  and decided now) until write. Made only for a call that needs it
  (a limit is set, or a job of the batch is known): Lua makes a script's
  top-level functions again on every call, and at top level these cost a
  one-job call about 7,000 Redis instructions (1 %; callgrind).
]]
local function rateModule(keyBase, on)
  local RATE_UNIT = 60000
  local THROTTLED_KEEP_MS = 86400000  -- src/redis/wire.ts THROTTLED_KEEP_MS
  local throttled, cleared, dropped = {}, {}, {}

  --[[
    rateBuckets(keyBase): a function scope -> bucket state (false: no limit),
    each read once per call, and the list of buckets read (for writeRates).
  ]]
  local function rateBuckets(keyBase)
    local cache, list = {}, {}
    return function(scope)
      local b = cache[scope]
      if b ~= nil then return b end
      local key = keyBase .. 'rate:' .. scope
      local r = redis.call('HMGET', key, 'jpm', 'burst', 't')
      b = false
      if r[1] then
        local jpm = tonumber(r[1])
        local burst = tonumber(r[2])
        b = { scope = scope, key = key, jpm = jpm, burst = burst, tolerance = (burst - 1) * RATE_UNIT, tat = 0, rem = 0, dirty = false }
        local tat, rem, scale = string.match(r[3] or '', '^(%d+):(%d+):(%d+)$')
        if tat then
          b.tat, rem, scale = tonumber(tat), tonumber(rem), tonumber(scale)
          -- rem < scale, so rem * jpm / scale < jpm: the same instant, rounded up.
          if scale ~= jpm then rem = math.ceil(rem * jpm / scale) end
          if rem >= jpm then b.tat, rem = b.tat + 1, rem - jpm end
          b.rem = rem
        end
        list[#list + 1] = b
      end
      cache[scope] = b
      return b
    end, list
  end

  --[[
    rateScopesOf(sig): the buckets a scope list's jobs pass, cached on it:
    'user:<u>' of its 'user-day:<u>' scope (every job's user has one, see
    src/accounting/scopes.ts), then 'project:<p>' of its 'project:<p>'.
  ]]
  local function rateScopesOf(sig)
    if not sig.rates then
      local user, project = nil, nil
      for _, b in ipairs(sig.bases) do
        user = user or string.match(b, '^user%-day:(.+)$')
        project = project or string.match(b, '^project:(.+)$')
      end
      sig.rates = {}
      if user then sig.rates[#sig.rates + 1] = 'user:' .. user end
      if project then sig.rates[#sig.rates + 1] = 'project:' .. project end
    end
    return sig.rates
  end

  --[[ rateTake(b, now): a job takes the bucket's next slot. ]]
  local function rateTake(b, now)
    if b.tat < now then b.tat, b.rem = now, 0 end
    local total = b.rem + RATE_UNIT
    local ms = math.floor(total / b.jpm)
    b.tat, b.rem, b.dirty = b.tat + ms, total - ms * b.jpm, true
  end

  --[[
    rateGate(sig, bucketOf, resKey, jobId, state, now, ts): nil
    when the job goes on to the budget decision (each bucket it had not paid
    took a slot), or its reply { 6, due, retried, by } when it is
    throttled: then its record is queued on `throttled` (unless it came
    back early: that changes nothing). state: false (a new job) or
    'throttled'. A bucket is over when its next slot is more than the
    tolerance ahead of now: (tat - now) * jpm + rem > (burst - 1) * 60,000.
  ]]
  local function rateGate(sig, bucketOf, resKey, jobId, state, now, ts)
    -- The scope list's buckets with a limit, found once per call.
    local list = sig.rateBuckets
    if not list then
      list = {}
      for _, scope in ipairs(rateScopesOf(sig)) do
        local b = bucketOf(scope)
        if b then list[#list + 1] = b end
      end
      sig.rateBuckets = list
    end
    local paid = false
    if state == 'throttled' then
      local rec = redis.call('HMGET', resKey, 'due', 'paid', 'by')
      local due = tonumber(rec[1] or '0')
      if due > now then return { 6, due, 1, rec[3] or '' } end
      paid = {}
      for scope in string.gmatch(rec[2] or '', '[^,]+') do paid[scope] = true; paid[#paid + 1] = scope end
    end
    local due, over = 0, false
    for i = 1, #list do
      local b = list[i]
      if not (paid and paid[b.scope]) then
        local x = (b.tat - now) * b.jpm + b.rem - b.tolerance
        if x > 0 then
          local d = now + math.ceil(x / b.jpm)
          if d > due then due = d end
          over = over or {}
          over[#over + 1] = b
        end
      end
    end
    if not over then
      for i = 1, #list do
        local b = list[i]
        if not (paid and paid[b.scope]) then rateTake(b, now) end
      end
      return nil
    end
    -- Every bucket it will pass at `due` is booked for that instant: the
    -- ones it is over, and again the ones it had paid for an earlier return
    -- (that slot went unused). A slot booked for an instant before the job
    -- really goes would let another job through closer than the rate.
    local by, book = {}, {}
    for i, b in ipairs(over) do
      book[#book + 1] = b
      by[i] = b.scope .. '|' .. b.jpm .. '|' .. b.burst
    end
    if paid then
      for i = 1, #list do
        local b = list[i]
        if paid[b.scope] then
          book[#book + 1] = b
          local x = (b.tat - now) * b.jpm + b.rem - b.tolerance
          if x > 0 and now + math.ceil(x / b.jpm) > due then due = now + math.ceil(x / b.jpm) end
        end
      end
    end
    local scopes = {}
    for i, b in ipairs(book) do
      rateTake(b, due)
      scopes[i] = b.scope
    end
    by = table.concat(by, ';')
    throttled[#throttled + 1] = { jobId, due, table.concat(scopes, ','), by, ts }
    return { 6, due, 0, by }
  end

  --[[
    decided(jobId, r): a job throttled before was decided now (reply r, not
    throttled again): admitted or held, its record becomes the decision's
    alone; rejected (reply 7 or 8), its record goes, as a job rejected at
    once leaves none.
  ]]
  local function decided(jobId, r)
    if r ~= 1 and (r[1] == 7 or r[1] == 8) then dropped[#dropped + 1] = jobId else cleared[#cleared + 1] = jobId end
  end

  --[[
    writeRates(buckets, now, chunk): the buckets' new state; the throttled
    jobs' records, and their places in the throttled zset (score: due); and
    what decided kept: cleared records lose their throttle fields, dropped
    ones go, and both leave the zset.
  ]]
  local function writeRates(buckets, now, chunk)
    for _, b in ipairs(buckets) do
      if b.dirty then redis.call('HSET', b.key, 't', string.format('%d:%d:%d', b.tat, b.rem, b.jpm)) end
    end
    local zset, places = keyBase .. 'throttled', {}
    for _, t in ipairs(throttled) do
      local key, due = keyBase .. 'res:' .. t[1], string.format('%d', t[2])
      if t[5] == '' then
        redis.call('HSET', key, 'state', 'throttled', 'due', due, 'paid', t[3], 'by', t[4])
      else
        redis.call('HSET', key, 'state', 'throttled', 'due', due, 'paid', t[3], 'by', t[4], 'ts', t[5])
      end
      -- Relative to the call's now, not Redis' clock: now is the caller's (injected) time.
      redis.call('PEXPIRE', key, string.format('%d', t[2] - now + THROTTLED_KEEP_MS))
      places[#places + 1] = due; places[#places + 1] = t[1]
    end
    callChunked('ZADD', zset, places, 2 * chunk)  -- includes/held.lua
    for _, id in ipairs(cleared) do
      local key = keyBase .. 'res:' .. id
      redis.call('HDEL', key, 'due', 'paid', 'by')
      redis.call('PERSIST', key)
    end
    callChunked('ZREM', zset, cleared, chunk)
    for _, id in ipairs(dropped) do redis.call('DEL', keyBase .. 'res:' .. id) end
    callChunked('ZREM', zset, dropped, chunk)
  end

  local bucketOf, buckets = function() return false end, {}
  if on then bucketOf, buckets = rateBuckets(keyBase) end
  return { bucketOf = bucketOf, buckets = buckets, gate = rateGate, decided = decided, write = writeRates }
end
