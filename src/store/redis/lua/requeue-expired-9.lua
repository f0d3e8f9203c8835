--[[
  Running jobs whose lease deadline is <= now go back to the queue at their old place (attempts
  kept), or fail with reason 'worker_lost' once they reached the most attempts. Handles at most
  ARGV[4] jobs per call; the caller repeats while a full batch came back.

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
  ARGV[2] now
  ARGV[3] max attempts
  ARGV[4] batch size

  Returns {examined, {requeued jobs (flat hashes)}, {failed jobs (flat hashes)}}
]]
--- @include "common"
--- @include "heads"
--- @include "transition"

local K = transitionKeys()
local now, maxAttempts = ARGV[2], tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', K.leases, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local requeued, failed = {}, {}
for _, id in ipairs(ids) do
  local f = readForTransition(id)
  if not f or f.status ~= 'running' then
    redis.call('ZREM', K.leases, id)
  elseif tonumber(f.attempts) >= maxAttempts then
    -- Worded exactly as the SQLite store does: a store migration must not change what users see.
    local message = 'The worker running this job stopped renewing its lease; gave up after '
      .. f.attempts .. ' attempt(s).'
    redis.call('HSET', jobKey(id), 'error', cjson.encode({ reason = 'worker_lost', message = message }),
      'lostLease', '1')
    endJob(K, id, f, 'failed', now)
    failed[#failed + 1] = redis.call('HGETALL', jobKey(id))
  else
    requeueRunning(K, id, f, 0)
    requeued[#requeued + 1] = redis.call('HGETALL', jobKey(id))
  end
end
return { #ids, requeued, failed }
