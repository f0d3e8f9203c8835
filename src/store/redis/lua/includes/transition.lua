--[[
  Helpers of the transition scripts (finish, release, cancel, requeue-expired), which all take
  the same nine KEYS in this order: the heads group (see "heads") and then

    leases by deadline         <p>leases
    finished jobs by time      <p>idx:finished
    GPU time, by user          <p>gpu

  Needs "common" and "heads" first; never run on its own.
]]
local function transitionKeys()
  return { heads = headsKeys(), leases = KEYS[7], finished = KEYS[8], gpu = KEYS[9] }
end

-- A running job gives up its lease and worker slot (before becoming pending or terminal).
local function leaveRunning(K, id, user)
  redis.call('ZREM', K.leases, id)
  decRunning(K.heads, user)
end

-- A running job goes back to the queue at its old place (same seq, front and priority).
-- `f` holds the job's fields as readForTransition gives them.
local function requeueRunning(K, id, f, attemptsDelta)
  local jk = jobKey(id)
  leaveRunning(K, id, f.user)
  -- The user gets back the turn the claim used: their last-served mark returns to its value
  -- before the claim, unless it is lower already (another of their jobs was handed back too).
  local before = tonumber(redis.call('HGET', jk, 'servedBefore'))
  local cur = tonumber(redis.call('HGET', K.heads.served, f.user) or '0')
  if before and before < cur then redis.call('HSET', K.heads.served, f.user, before) end
  redis.call('HDEL', jk, 'workerId', 'leaseExpiresAt', 'startedAt', 'servedBefore')
  redis.call('HSET', jk, 'status', 'pending', 'attempts', tonumber(f.attempts) + attemptsDelta)
  moveStatus(id, f.user, f.seq, 'running', 'pending')
  addPending(f.user, id, f.seq, f.front, f.priority)
  refreshHeads(K.heads, f.user)
end

-- A pending or running job ends as `to` (a terminal status) at `now`.
local function endJob(K, id, f, to, now)
  local jk = jobKey(id)
  if f.status == 'running' then
    leaveRunning(K, id, f.user)
    redis.call('HDEL', jk, 'leaseExpiresAt')
    if f.startedAt then
      redis.call('HINCRBYFLOAT', K.gpu, f.user, tonumber(now) - tonumber(f.startedAt))
    end
  elseif f.status == 'pending' then
    removePending(f.user, id)
  end
  refreshHeads(K.heads, f.user)
  redis.call('HSET', jk, 'status', to, 'finishedAt', now)
  moveStatus(id, f.user, f.seq, f.status, to)
  redis.call('ZADD', K.finished, now, id)
  touchActivity(f.user, id, now)
end

-- The fields the transition scripts look at, by name; nil when the job does not exist.
local function readForTransition(id)
  local v = redis.call('HMGET', jobKey(id), 'status', 'attempts', 'user', 'seq', 'front', 'priority',
    'startedAt', 'workerId', 'lostLease')
  if not v[1] then return nil end
  return {
    status = v[1], attempts = v[2], user = v[3], seq = v[4], front = v[5], priority = v[6],
    startedAt = v[7] or nil, workerId = v[8] or nil, lostLease = v[9] == '1',
  }
end
