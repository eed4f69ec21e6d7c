--[[
  writeAdmitted(admitted, openKey, ledgerKey, now, chunk): reserve's writes
  for the jobs it admitted: each job's record, its place in the open set, and
  the ledger entries. admitted: { resKey, jobId, amount, counter ids, meta,
  exempt, group index, submitted at ('' if unknown), GPU caps counted (csv,
  '' for none; never for an exempt job), gpus, rate text 'unitsMilli|usdMicro',
  factor text, charge text } per job, in order.
  A record keeps 'rate' ('unitsMilli|usdMicro'), 'factor' and 'charge'
  ('gpuMs|milliUnits|microUsd'): settle prices the actual hours with them.
]]
-- Ledger entries, one per chunk: a header, each distinct group once, then
-- one field per job (src/ledger/writer.ts parseEntry reads it):
--   kind reserve  at <now>  groups <n>
--   g  <counter ids> TAB <meta> TAB <1 if exempt, else 0> TAB <unitsMilli|usdMicro|factor>   (n times)
--   <job id>  <amount>,<group number>,<submitted at or ''>,<gpuMs|milliUnits|microUsd>      (per job)
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
      local rate = a[11]
      -- No 'bases' (a held record's scope list): only release reads it, of held
      -- jobs, and the counter ids in 'scopes' name the same scopes.
      local rec = { 'HSET', a[1], 'amount', a[3], 'scopes', a[4], 'state', 'reserved', 'admittedAt', now, 'meta', a[5],
        'rate', rate, 'factor', a[12], 'charge', a[13] }
      if a[8] ~= '' then rec[#rec + 1] = 'ts'; rec[#rec + 1] = a[8] end
      if a[6] then rec[#rec + 1] = 'exempt'; rec[#rec + 1] = '1' end
      -- Counted against GPU caps: settle takes its gpus off each (includes/caps.lua).
      if a[9] ~= '' then
        rec[#rec + 1] = 'caps'; rec[#rec + 1] = a[9]
        rec[#rec + 1] = 'gpus'; rec[#rec + 1] = a[10]
      end
      redis.call(unpack(rec))
      zadd[#zadd + 1] = now; zadd[#zadd + 1] = a[2]
      -- A group's jobs share their exemption, rate and factor (each read once
      -- per call), so those go with the group.
      local g = number[a[7]]
      if not g then
        groupCount = groupCount + 1
        g = tostring(groupCount)
        number[a[7]] = g
        xadd[#xadd + 1] = 'g'
        xadd[#xadd + 1] = a[4] .. '\t' .. a[5] .. '\t' .. (a[6] and '1' or '0') .. '\t' .. rate .. '|' .. a[12]
      end
      local n = #jobs
      jobs[n + 1] = a[2]; jobs[n + 2] = a[3] .. ',' .. g .. ',' .. a[8] .. ',' .. a[13]
    end
    xadd[9] = tostring(groupCount)
    local n = #xadd
    for i = 1, #jobs do xadd[n + i] = jobs[i] end
    redis.call(unpack(zadd))
    redis.call(unpack(xadd))
  end
end
