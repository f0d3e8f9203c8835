--[[
  Keeping the users' heads up to date. The scripts that include this take the "heads group" as
  their first four KEYS, in this order:

    heads, seq order           <p>heads:seq
    heads, prio order          <p>heads:prio
    last served, by user       <p>served:user
    running count, by user     <p>running

  A head is the policy's Candidate for the user's first pending job plus the user's serve state,
  as JSON: [id, user, seq, priority, front, skips, models, lastServed, running]. It must be
  refreshed whenever any of those change: the user's pending jobs, the head's priority, front or
  skips, the user's lastServed or running count. Needs "common" first; never run on its own.
]]
local function headsKeys()
  return { seq = KEYS[1], prio = KEYS[2], served = KEYS[3], running = KEYS[4] }
end

local function candidateJson(H, id, served, running)
  local f = redis.call('HMGET', jobKey(id), 'user', 'seq', 'priority', 'front', 'skips', 'models')
  return '[' .. cjson.encode(id) .. ',' .. cjson.encode(f[1]) .. ',' .. f[2] .. ',"' .. f[3] .. '",' .. f[4] .. ','
    .. f[5] .. ',' .. (f[6] or '[]') .. ',' .. served .. ',' .. running .. ']'
end

-- The user's lastServed and running count, as the strings Redis keeps ('0' when absent).
local function serveState(H, user)
  return redis.call('HGET', H.served, user) or '0', redis.call('HGET', H.running, user) or '0'
end

-- Recomputes the user's head under both head orders.
local function refreshHeads(H, user)
  local served, running = serveState(H, user)
  local a = redis.call('ZRANGE', pqSeqKey(user), 0, 0)[1]
  local aJson
  if a then
    aJson = candidateJson(H, a, served, running)
    redis.call('HSET', H.seq, user, aJson)
  else
    redis.call('HDEL', H.seq, user)
  end
  local b = redis.call('ZRANGE', pqPrioKey(user), 0, 0)[1]
  if b then
    if b ~= a then aJson = candidateJson(H, b, served, running) end
    redis.call('HSET', H.prio, user, aJson)
  else
    redis.call('HDEL', H.prio, user)
  end
end

local function decRunning(H, user)
  if redis.call('HINCRBY', H.running, user, -1) <= 0 then
    redis.call('HDEL', H.running, user)
  end
end
