--[[
  raise: make a counter hold at least a value, never lowering it.

  Rebuild uses it on BullMQ's job-id counter of gpu-intake. After Redis lost
  everything, BullMQ numbers new jobs from 1 again, and a new job carrying the
  id of one the ledger knows would be taken for a retry of that job (reserve
  answers "settled before") and never run. Raising the counter past every id
  the ledger holds keeps new ids new. Atomic, so a submitter adding jobs at
  the same moment only ever moves the counter up.

  Input:
    KEYS[1]    the counter (a string holding an integer; absent counts as 0)
    ARGV[1]    the least value it must hold (an integer, as a string)

  Output: the counter's value after the call.
]]
local counter, least = KEYS[1], ARGV[1]
local now = tonumber(redis.call('GET', counter) or '0')
if now < tonumber(least) then
  redis.call('SET', counter, least)
  return tonumber(least)
end
return now
