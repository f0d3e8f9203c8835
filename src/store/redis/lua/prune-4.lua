--[[
  Deletes terminal jobs that finished before a time, oldest first, at most ARGV[3] per call.

  KEYS[1] index of all jobs          <p>idx:all
  KEYS[2] finished jobs by time      <p>idx:finished
  KEYS[3] users with jobs            <p>users
  KEYS[4] GPU time, by user          <p>gpu

  ARGV[1] key prefix
  ARGV[2] before (exclusive)
  ARGV[3] batch size

  Returns {examined, deleted}
]]
--- @include "common"

local K = { all = KEYS[1], finished = KEYS[2], users = KEYS[3], gpu = KEYS[4] }
local ids = redis.call('ZRANGEBYSCORE', K.finished, '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local deleted = 0
for _, id in ipairs(ids) do
  local n = deleteTerminalJob(K, id, nil)
  if n == 0 then redis.call('ZREM', K.finished, id) end
  deleted = deleted + n
end
return { #ids, deleted }
