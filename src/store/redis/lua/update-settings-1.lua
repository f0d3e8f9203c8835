--[[
  Merges a patch into the stored queue settings, storing the defaults first when none are stored.

  KEYS[1] settings hash              <p>settings

  ARGV[1] default mode
  ARGV[2] default paused, '1' or '0'
  ARGV[3] default maxPendingPerUser
  ARGV[4] default maxRunningPerUser
  ARGV[5] default userLimits JSON
  ARGV[6...] pairs: field, value to set

  Returns the stored settings (flat hash).
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'mode', ARGV[1], 'paused', ARGV[2], 'maxPendingPerUser', ARGV[3],
    'maxRunningPerUser', ARGV[4], 'userLimits', ARGV[5])
end
if #ARGV >= 7 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
return redis.call('HGETALL', KEYS[1])
