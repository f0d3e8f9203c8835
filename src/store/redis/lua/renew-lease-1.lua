--[[
  Extends a lease when the worker still holds this attempt of a running job.

  KEYS[1] leases by deadline         <p>leases

  ARGV[1] key prefix
  ARGV[2] job id
  ARGV[3] worker id
  ARGV[4] attempt
  ARGV[5] new lease deadline (now + leaseMs)

  Returns 1 when renewed, else 0.
]]
--- @include "common"

local jk = jobKey(ARGV[2])
local f = redis.call('HMGET', jk, 'status', 'workerId', 'attempts')
if f[1] ~= 'running' or f[2] ~= ARGV[3] or tonumber(f[3]) ~= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', jk, 'leaseExpiresAt', ARGV[5])
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])
return 1
