--[[
  Deletes a user's terminal jobs: the listed ids (ids of other users or of jobs still pending or
  running are ignored), or when none are listed up to ARGV[3] of them per call.

  KEYS[1] index of all jobs          <p>idx:all
  KEYS[2] finished jobs by time      <p>idx:finished
  KEYS[3] users with jobs            <p>users
  KEYS[4] GPU time, by user          <p>gpu

  ARGV[1] key prefix
  ARGV[2] user
  ARGV[3] batch size (when no ids are listed)
  ARGV[4...] job ids (none: all of the user's terminal jobs)

  Returns {examined, deleted}
]]
--- @include "common"

local K = { all = KEYS[1], finished = KEYS[2], users = KEYS[3], gpu = KEYS[4] }
local user = ARGV[2]
local ids = {}
if #ARGV >= 4 then
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  local batch = tonumber(ARGV[3])
  for _, status in ipairs({ 'completed', 'failed', 'cancelled' }) do
    local room = batch - #ids
    if room <= 0 then break end
    for _, id in ipairs(redis.call('ZRANGE', idxUserStatusKey(status, user), 0, room - 1)) do ids[#ids + 1] = id end
  end
end
local deleted = 0
for _, id in ipairs(ids) do deleted = deleted + deleteTerminalJob(K, id, user) end
return { #ids, deleted }
