--[[
  One row per user who has any job: counts by status, GPU time, latest activity.

  KEYS[1] users with jobs            <p>users
  KEYS[2] GPU time, by user          <p>gpu

  ARGV[1] key prefix

  Returns {{user, pending, running, completed, failed, cancelled, gpuMs, lastActivityAt or ''}...}
]]
--- @include "common"

local rows = {}
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local row = { u }
  for _, s in ipairs({ 'pending', 'running', 'completed', 'failed', 'cancelled' }) do
    row[#row + 1] = redis.call('ZCARD', idxUserStatusKey(s, u))
  end
  row[#row + 1] = redis.call('HGET', KEYS[2], u) or '0'
  local last = redis.call('ZRANGE', activityKey(u), -1, -1, 'WITHSCORES')
  row[#row + 1] = last[2] or ''
  rows[#rows + 1] = row
end
return rows
