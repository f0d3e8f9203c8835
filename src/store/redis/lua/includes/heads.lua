--[[
  Keeping the users' heads up to date. The scripts that include this take the "heads group" as
  their first six KEYS, in this order:

    heads, seq order           <p>heads:seq
    heads, prio order          <p>heads:prio
    last served, by user       <p>served:user
    running count, by user     <p>running
    head changes, by user      <p>heads:changed   zset user → tick of the user's last head change
    head change clock          <p>heads:meta      hash tick (counter), epoch (set by the store)

  A head is the policy's Candidate for the user's first pending job plus the user's serve state,
  as JSON: [id, user, seq, priority, front, skips, models, lastServed, running]. It must be
  refreshed whenever any of those change: the user's pending jobs, the head's priority, front or
  skips, the user's lastServed or running count. Every real change ticks the clock and records
  the tick in heads:changed, so a claimer that cached the heads at tick T fetches only the users
  changed since (see heads-since). Needs "common" first; never run on its own.
]]
local function headsKeys()
  return { seq = KEYS[1], prio = KEYS[2], served = KEYS[3], running = KEYS[4], changed = KEYS[5], meta = KEYS[6] }
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

-- Stores (or, for nil, removes) one head; true when that changed anything.
local function setHead(key, user, json)
  local old = redis.call('HGET', key, user)
  if json then
    if old == json then return false end
    redis.call('HSET', key, user, json)
    return true
  end
  if not old then return false end
  redis.call('HDEL', key, user)
  return true
end

-- Recomputes the user's head under both head orders.
local function refreshHeads(H, user)
  local served, running = serveState(H, user)
  local a = redis.call('ZRANGE', pqSeqKey(user), 0, 0)[1]
  local b = redis.call('ZRANGE', pqPrioKey(user), 0, 0)[1]
  local aJson, bJson
  if a then aJson = candidateJson(H, a, served, running) end
  if b then
    if b == a then bJson = aJson else bJson = candidateJson(H, b, served, running) end
  end
  local changed = setHead(H.seq, user, aJson)
  changed = setHead(H.prio, user, bJson) or changed
  if changed then
    redis.call('ZADD', H.changed, redis.call('HINCRBY', H.meta, 'tick', 1), user)
  end
end

local function decRunning(H, user)
  if redis.call('HINCRBY', H.running, user, -1) <= 0 then
    redis.call('HDEL', H.running, user)
  end
end
