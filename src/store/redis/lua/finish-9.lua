--[[
  Ends a running attempt as completed or failed. Idempotent per (job, attempt): repeating the
  call that already ended this attempt answers 'duplicate' and changes nothing. An attempt that
  requeue-expired failed (lease lost) was not ended by the worker: its late fail is 'terminal'.
  A late finish of an attempt that lost its lease but did run is accepted ('late'): the job waits
  in the queue under that same attempt, or a later attempt has claimed it since (first finish wins).

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
  ARGV[4] target status: 'completed' or 'failed'
  ARGV[5] field to store: 'outputs' or 'error'
  ARGV[6] its JSON value
  ARGV[7] now (finishedAt)

  Returns {'ok' | 'late' | 'duplicate' | 'stale' | 'terminal', job (flat hash)} | {'not_found'}
]]
--- @include "common"
--- @include "heads"
--- @include "transition"

local K = transitionKeys()
local id, to, now = ARGV[2], ARGV[4], ARGV[7]
local f = readForTransition(id)
if not f then return { 'not_found' } end
local sameAttempt = tonumber(f.attempts) == tonumber(ARGV[3])
if f.status == to and sameAttempt and not f.lostLease then
  return { 'duplicate', redis.call('HGETALL', jobKey(id)) }
end
if TERMINAL[f.status] then return { 'terminal', redis.call('HGETALL', jobKey(id)) } end
local attempt, held = tonumber(ARGV[3]), tonumber(f.attempts)
local late = attempt >= 1
  and ((f.status == 'pending' and held == attempt) or (f.status == 'running' and held > attempt))
if not late and (f.status ~= 'running' or not sameAttempt) then
  return { 'stale', redis.call('HGETALL', jobKey(id)) }
end

redis.call('HSET', jobKey(id), ARGV[5], ARGV[6])
endJob(K, id, f, to, now)
if late then return { 'late', redis.call('HGETALL', jobKey(id)) } end
return { 'ok', redis.call('HGETALL', jobKey(id)) }
