--[[
  Sets the priority of a pending or running job (a pending job moves in the priority head order).

  KEYS[1] heads, seq order           <p>heads:seq
  KEYS[2] heads, prio order          <p>heads:prio
  KEYS[3] last served, by user       <p>served:user
  KEYS[4] running count, by user     <p>running
  KEYS[5] head changes, by user      <p>heads:changed
  KEYS[6] head change clock          <p>heads:meta

  ARGV[1] key prefix
  ARGV[2] job id
  ARGV[3] priority

  Returns {'ok', job (flat hash)} | {'not_found'}
]]
--- @include "common"
--- @include "heads"

local H = headsKeys()
local id, priority = ARGV[2], ARGV[3]
local jk = jobKey(id)
local f = redis.call('HMGET', jk, 'status', 'user', 'seq', 'front')
if not f[1] then return { 'not_found' } end
if f[1] == 'pending' or f[1] == 'running' then
  redis.call('HSET', jk, 'priority', priority)
  if f[1] == 'pending' then
    redis.call('ZADD', pqPrioKey(f[2]), prioScore(f[3], f[4], priority), id)
    refreshHeads(H, f[2])
  end
end
return { 'ok', redis.call('HGETALL', jk) }
