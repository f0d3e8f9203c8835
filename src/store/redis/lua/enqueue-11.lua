--[[
  Adds a pending job: checks the user's pending limit, numbers it, indexes it, updates the
  user's heads.

  KEYS[1] heads, seq order           <p>heads:seq
  KEYS[2] heads, prio order          <p>heads:prio
  KEYS[3] last served, by user       <p>served:user
  KEYS[4] running count, by user     <p>running
  KEYS[5] head changes, by user      <p>heads:changed
  KEYS[6] head change clock          <p>heads:meta
  KEYS[7] seq counter                <p>seq
  KEYS[8] front counter              <p>front
  KEYS[9] settings hash              <p>settings
  KEYS[10] index of all jobs          <p>idx:all
  KEYS[11] users with jobs            <p>users

  ARGV[1] key prefix
  ARGV[2] job id
  ARGV[3] user
  ARGV[4] priority
  ARGV[5] '1' to enqueue moved to the front, else '0'
  ARGV[6] now (createdAt)
  ARGV[7] prompt JSON
  ARGV[8] models JSON
  ARGV[9] metadata JSON
  ARGV[10] the user's pending limit under the store's defaults (used while no settings are stored)

  Returns {'ok', seq, front} | {'conflict'} | {'limit', limit}
]]
--- @include "common"
--- @include "heads"

local H = headsKeys()
local id, user, priority, now = ARGV[2], ARGV[3], ARGV[4], ARGV[6]
local jk = jobKey(id)
if redis.call('EXISTS', jk) == 1 then return { 'conflict' } end

local limit
local s = redis.call('HMGET', KEYS[9], 'maxPendingPerUser', 'userLimits')
if s[1] then
  limit = tonumber(s[1])
  if s[2] and s[2] ~= '{}' then
    local ok, ul = pcall(cjson.decode, s[2])
    if ok and type(ul) == 'table' and type(ul[user]) == 'table' and type(ul[user].maxPendingPerUser) == 'number' then
      limit = ul[user].maxPendingPerUser
    end
  end
else
  limit = tonumber(ARGV[10])
end
if redis.call('ZCARD', idxUserStatusKey('pending', user)) >= limit then
  return { 'limit', tostring(limit) }
end

local seq = redis.call('INCR', KEYS[7])
local front = 0
if ARGV[5] == '1' then front = redis.call('INCR', KEYS[8]) end

redis.call('HSET', jk, 'id', id, 'seq', seq, 'user', user, 'status', 'pending', 'priority', priority,
  'front', front, 'prompt', ARGV[7], 'models', ARGV[8], 'metadata', ARGV[9], 'attempts', 0, 'skips', 0,
  'createdAt', now, 'outputs', '[]')
redis.call('ZADD', KEYS[10], seq, id)
redis.call('ZADD', idxStatusKey('pending'), seq, id)
redis.call('ZADD', idxUserKey(user), seq, id)
redis.call('ZADD', idxUserStatusKey('pending', user), seq, id)
addPending(user, id, seq, front, priority)
refreshHeads(H, user)
redis.call('SADD', KEYS[11], user)
touchActivity(user, id, now)
return { 'ok', seq, front }
