--[[
  writeAdmitted(admitted, openKey, ledgerKey, now, chunk): reserve's writes
  for the jobs it admitted: each job's record, its place in the open set, and
  the ledger entries. admitted: { resKey, jobId, amount, counter ids, meta,
  exempt, group index, submitted at ('' if unknown), GPU caps counted (csv,
  '' for none; never for an exempt job), gpus } per job, in order.
]]
-- Ledger entries, one per chunk: a header, each distinct group once, then
-- one field per job (src/ledger/writer.ts parseEntry reads it):
--   kind reserve  at <now>  groups <n>
--   g  <counter ids> TAB <meta> [TAB 1 if exempt]     (n times)
--   <job id>  <amount>,<group number>[,<submitted at>] (per job)
-- A group's scope ids and metadata, the same for most of a batch, are copied
-- once per entry instead of once per job: 69.3k instead of 75.6k Redis
-- instructions per job of this script at 256 per call (bench:instructions'
-- jobs). Neither half can hold a tab: counter ids are built from validated
-- names, and the metadata is JSON, which escapes tabs.
local function writeAdmitted(admitted, openKey, ledgerKey, now, chunk)
  for first = 1, #admitted, chunk do
    local zadd, xadd = { 'ZADD', openKey }, { 'XADD', ledgerKey, '*', 'kind', 'reserve', 'at', now, 'groups', '' }
    local jobs, number, groupCount = {}, {}, 0
    for j = first, math.min(first + chunk - 1, #admitted) do
      local a = admitted[j]
      -- No 'bases' (a held record's scope list): only release reads it, of held
      -- jobs, and the counter ids in 'scopes' name the same scopes. One field
      -- fewer per job, on every record kept for SETTLED_RETAIN_SECONDS.
      if a[9] ~= '' then
        -- Counted against GPU caps: settle takes its gpus off each (includes/caps.lua).
        redis.call('HSET', a[1], 'amount', a[3], 'scopes', a[4], 'state', 'reserved', 'admittedAt', now, 'meta', a[5], 'ts', a[8], 'caps', a[9], 'gpus', a[10])
      elseif a[8] == '' then
        if a[6] then
          redis.call('HSET', a[1], 'amount', a[3], 'scopes', a[4], 'state', 'reserved', 'admittedAt', now, 'meta', a[5], 'exempt', '1')
        else
          redis.call('HSET', a[1], 'amount', a[3], 'scopes', a[4], 'state', 'reserved', 'admittedAt', now, 'meta', a[5])
        end
      elseif a[6] then
        redis.call('HSET', a[1], 'amount', a[3], 'scopes', a[4], 'state', 'reserved', 'admittedAt', now, 'meta', a[5], 'ts', a[8], 'exempt', '1')
      else
        redis.call('HSET', a[1], 'amount', a[3], 'scopes', a[4], 'state', 'reserved', 'admittedAt', now, 'meta', a[5], 'ts', a[8])
      end
      zadd[#zadd + 1] = now; zadd[#zadd + 1] = a[2]
      -- An admitted job is exempt exactly when its group's job type is (the
      -- set is read once per call), so exempt goes with the group.
      local g = number[a[7]]
      if not g then
        groupCount = groupCount + 1
        g = tostring(groupCount)
        number[a[7]] = g
        xadd[#xadd + 1] = 'g'
        xadd[#xadd + 1] = a[6] and (a[4] .. '\t' .. a[5] .. '\t1') or (a[4] .. '\t' .. a[5])
      end
      local n = #jobs
      jobs[n + 1] = a[2]; jobs[n + 2] = a[8] == '' and (a[3] .. ',' .. g) or (a[3] .. ',' .. g .. ',' .. a[8])
    end
    xadd[9] = tostring(groupCount)
    local n = #xadd
    for i = 1, #jobs do xadd[n + i] = jobs[i] end
    redis.call(unpack(zadd))
    redis.call(unpack(xadd))
  end
end
