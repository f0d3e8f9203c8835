--[[
  A worker gives a claimed job back unrun: it is pending again at its old place and the attempt
  does not count.

  KEYS[1] heads, seq order           <p>heads:seq
  KEYS[2] heads, prio order          <p>heads:prio
  KEYS[3] last served, by user       <p>served:user
  KEYS[4] running count, by user     <p>running
  KEYS[5] head changes, by user      <p>heads:changed
  KEYS[6] head change clock          <p>heads:meta
  KEYS[7] leases by deadline         <p>leases
  KEYS[8] finished jobs by time      <p>idx:finished
  KEYS[9] GPU time, by user          <p>gpu

  ARGV[1] key prefix
  ARGV[2] job id
  ARGV[3] attempt

  Returns {'ok' | 'stale' | 'terminal', job (flat hash)} | {'not_found'}
]]
--- @include "common"
--- @include "heads"
--- @include "transition"

local K = transitionKeys()
local id = ARGV[2]
local f = readForTransition(id)
if not f then return { 'not_found' } end
if TERMINAL[f.status] then return { 'terminal', redis.call('HGETALL', jobKey(id)) } end
if f.status ~= 'running' or tonumber(f.attempts) ~= tonumber(ARGV[3]) then
  return { 'stale', redis.call('HGETALL', jobKey(id)) }
end
requeueRunning(K, id, f, -1)
return { 'ok', redis.call('HGETALL', jobKey(id)) }
