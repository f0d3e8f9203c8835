--[[
  A worker still runs this attempt (it says so after reconnecting, or while its leases could not
  be renewed): renew the lease when it holds the job, or take the job back from the queue for it
  when its lease lapsed and nobody claimed it since (pending, same attempt). The attempt is not
  counted again; taken back from the queue, it uses its user's turn again as its claim did (the
  hand-back gave the turn back), keeping the old mark as `servedBefore`.

  KEYS[1] heads, seq order           <p>heads:seq
  KEYS[2] heads, prio order          <p>heads:prio
  KEYS[3] last served, by user       <p>served:user
  KEYS[4] running count, by user     <p>running
  KEYS[5] head changes, by user      <p>heads:changed
  KEYS[6] head change clock          <p>heads:meta
  KEYS[7] leases by deadline         <p>leases
  KEYS[8] finished jobs by time      <p>idx:finished
  KEYS[9] GPU time, by user          <p>gpu
  KEYS[10] serve counter             <p>served

  ARGV[1] key prefix
  ARGV[2] job id
  ARGV[3] worker id
  ARGV[4] attempt
  ARGV[5] now (startedAt when taken back)
  ARGV[6] lease deadline (now + leaseMs)

  Returns 1 when the worker holds the job now, else 0.
]]
--- @include "common"
--- @include "heads"
--- @include "transition"

local K = transitionKeys()
local id, workerId, attempt, now, deadline = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local jk = jobKey(id)
local f = readForTransition(id)
if not f or attempt < 1 or tonumber(f.attempts) ~= attempt then return 0 end
if f.status == 'running' then
  if f.workerId ~= workerId then return 0 end
  redis.call('HSET', jk, 'leaseExpiresAt', deadline)
  redis.call('ZADD', K.leases, deadline, id)
  return 1
end
if f.status ~= 'pending' then return 0 end

removePending(f.user, id)
moveStatus(id, f.user, f.seq, 'pending', 'running')
redis.call('HSET', jk, 'status', 'running', 'workerId', workerId, 'leaseExpiresAt', deadline, 'startedAt', now)
redis.call('ZADD', K.leases, deadline, id)
redis.call('HINCRBY', K.heads.running, f.user, 1)
redis.call('HSET', jk, 'servedBefore', redis.call('HGET', K.heads.served, f.user) or '0')
redis.call('HSET', K.heads.served, f.user, redis.call('INCR', KEYS[10]))
refreshHeads(K.heads, f.user)
return 1
