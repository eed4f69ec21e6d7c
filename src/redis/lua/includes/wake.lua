--[[
  The wake set, shared by settle, release and cancel: a zset '<base>wake' of
  scope bases whose line may now move (room appeared, or a job left the
  line), scored by the first signal's time. The waker (workers/waker.ts)
  takes them oldest first and decides each line's head again, as release
  does; a member whose line is empty by then costs it one read.
]]

--[[ wakeLines(base, bases, now): signal each scope base in `bases` (NX: an earlier signal keeps its place). ]]
local function wakeLines(base, bases, now)
  local args = { 'ZADD', base .. 'wake', 'NX' }
  for i = 1, #bases do
    args[#args + 1] = now
    args[#args + 1] = bases[i]
  end
  if #bases > 0 then redis.call(unpack(args)) end
end

--[[ wakeNonEmpty(base, bases, now): wakeLines for those of `bases` whose line still has someone in it. ]]
local function wakeNonEmpty(base, bases, now)
  local waiting = {}
  for i = 1, #bases do
    if redis.call('EXISTS', base .. 'line:' .. bases[i]) == 1 then waiting[#waiting + 1] = bases[i] end
  end
  wakeLines(base, waiting, now)
end
