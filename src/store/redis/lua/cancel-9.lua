--[[
  Cancels a pending or running job.

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
  ARGV[3] now (finishedAt)

  Returns {'ok' | 'terminal', job (flat hash)} | {'not_found'}
]]
--- @include "common"
--- @include "heads"
--- @include "transition"

local K = transitionKeys()
local id = ARGV[2]
local f = readForTransition(id)
if not f then return { 'not_found' } end
if TERMINAL[f.status] then return { 'terminal', redis.call('HGETALL', jobKey(id)) } end
endJob(K, id, f, 'cancelled', ARGV[3])
return { 'ok', redis.call('HGETALL', jobKey(id)) }
