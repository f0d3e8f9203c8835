--[[
  Moves a pending job to the front: it gets the next front number, so it outranks every job not
  moved and every job moved before it.

  KEYS[1] heads, seq order           <p>heads:seq
  KEYS[2] heads, prio order          <p>heads:prio
  KEYS[3] last served, by user       <p>served:user
  KEYS[4] running count, by user     <p>running
  KEYS[5] head changes, by user      <p>heads:changed
  KEYS[6] head change clock          <p>heads:meta
  KEYS[7] front counter              <p>front

  ARGV[1] key prefix
  ARGV[2] job id

  Returns {'ok', job (flat hash)} | {'not_found'}
]]
--- @include "common"
--- @include "heads"

local H = headsKeys()
local id = ARGV[2]
local jk = jobKey(id)
local f = redis.call('HMGET', jk, 'status', 'user', 'seq', 'priority')
if not f[1] then return { 'not_found' } end
if f[1] == 'pending' then
  local front = redis.call('INCR', KEYS[7])
  redis.call('HSET', jk, 'front', front)
  addPending(f[2], id, f[3], front, f[4])
  refreshHeads(H, f[2])
end
return { 'ok', redis.call('HGETALL', jk) }
