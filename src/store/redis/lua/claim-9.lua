--[[
  Applies a claim chosen by the policy, if the chosen job is still pending: the job starts
  running under the worker's lease, the user's last-served mark and running count move (the old
  mark is kept on the job as `servedBefore`), and every
  job affinity passed over (and still pending) gets one more skip.

  KEYS[1] heads, seq order           <p>heads:seq
  KEYS[2] heads, prio order          <p>heads:prio
  KEYS[3] last served, by user       <p>served:user
  KEYS[4] running count, by user     <p>running
  KEYS[5] head changes, by user      <p>heads:changed
  KEYS[6] head change clock          <p>heads:meta
  KEYS[7] settings hash              <p>settings
  KEYS[8] serve counter              <p>served
  KEYS[9] leases by deadline         <p>leases

  ARGV[1] key prefix
  ARGV[2] default paused, '1' or '0'
  ARGV[3] job id
  ARGV[4] worker id
  ARGV[5] now (startedAt)
  ARGV[6] lease deadline (now + leaseMs)
  ARGV[7...] ids of the jobs passed over

  Returns {'ok', job (flat hash)} | {'lost'} (no longer pending) | {'paused'}
]]
--- @include "common"
--- @include "heads"

local H = headsKeys()
local paused = redis.call('HGET', KEYS[7], 'paused') or ARGV[2]
if paused == '1' then return { 'paused' } end

local id, now, deadline = ARGV[3], ARGV[5], ARGV[6]
local jk = jobKey(id)
local f = redis.call('HMGET', jk, 'status', 'user', 'seq')
if f[1] ~= 'pending' then return { 'lost' } end
local user, seq = f[2], f[3]

removePending(user, id)
moveStatus(id, user, seq, 'pending', 'running')
redis.call('HINCRBY', jk, 'attempts', 1)
redis.call('HSET', jk, 'status', 'running', 'workerId', ARGV[4], 'leaseExpiresAt', deadline, 'startedAt', now)
redis.call('ZADD', KEYS[9], deadline, id)
-- The user's mark before this claim, so a hand-back can give the turn back (requeueRunning).
redis.call('HSET', jk, 'servedBefore', redis.call('HGET', H.served, user) or '0')
redis.call('HSET', H.served, user, redis.call('INCR', KEYS[8]))
redis.call('HINCRBY', H.running, user, 1)

for i = 7, #ARGV do
  local sk = jobKey(ARGV[i])
  local sf = redis.call('HMGET', sk, 'status', 'user')
  if sf[1] == 'pending' then
    redis.call('HINCRBY', sk, 'skips', 1)
    refreshHeads(H, sf[2])
  end
end
refreshHeads(H, user)
return { 'ok', redis.call('HGETALL', jk) }
