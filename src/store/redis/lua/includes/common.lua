--[[
  Helpers shared by the job scripts. The loader inlines this file where a script says
  `--- @include "common"`; it is never run on its own.

  Every script that includes it takes the key prefix as ARGV[1] and derives per-job and per-user
  key names from it (see the key layout in src/store/redis/keys.ts). Global keys arrive in KEYS;
  nothing here reads KEYS.

  Lua numbers passed to redis.call are formatted exactly by Redis (%.17g), but `..` formats with
  %.14g, so numbers that reach a reply or a JSON text are always kept as the strings Redis gave.
]]
local P = ARGV[1]

local TERMINAL = { completed = true, failed = true, cancelled = true }
local PRIORITY_RANK = { instructor = 0, high = 1, normal = 2, low = 3 }
-- Priority score span: level * 2^44 + seq stays an exact double for seq < 2^44.
local PRIORITY_SPAN = 17592186044416

local function jobKey(id) return P .. 'job:' .. id end
local function pqSeqKey(user) return P .. 'pq:seq:' .. user end
local function pqPrioKey(user) return P .. 'pq:prio:' .. user end
local function idxStatusKey(status) return P .. 'idx:s:' .. status end
local function idxUserKey(user) return P .. 'idx:u:' .. user end
local function idxUserStatusKey(status, user) return P .. 'idx:us:' .. status .. ':' .. user end
local function activityKey(user) return P .. 'act:' .. user end

-- Head order for fifo/round_robin: moved-to-front jobs first (latest move first), then seq.
local function seqScore(seq, front)
  local f = tonumber(front)
  if f > 0 then return -f end
  return tonumber(seq)
end

-- Head order for priority mode: front first, then level, then seq.
local function prioScore(seq, front, priority)
  local f = tonumber(front)
  if f > 0 then return -f end
  return (PRIORITY_RANK[priority] or 2) * PRIORITY_SPAN + tonumber(seq)
end

local function addPending(user, id, seq, front, priority)
  redis.call('ZADD', pqSeqKey(user), seqScore(seq, front), id)
  redis.call('ZADD', pqPrioKey(user), prioScore(seq, front, priority), id)
end

local function removePending(user, id)
  redis.call('ZREM', pqSeqKey(user), id)
  redis.call('ZREM', pqPrioKey(user), id)
end

-- Moves the job between the per-status indexes (global and per user), keeping score = seq.
local function moveStatus(id, user, seq, from, to)
  redis.call('ZREM', idxStatusKey(from), id)
  redis.call('ZREM', idxUserStatusKey(from, user), id)
  redis.call('ZADD', idxStatusKey(to), seq, id)
  redis.call('ZADD', idxUserStatusKey(to, user), seq, id)
end

-- The user's latest activity is the highest score in act:<user> (createdAt or finishedAt per job).
local function touchActivity(user, id, at)
  redis.call('ZADD', activityKey(user), 'GT', at, id)
end

-- Deletes a terminal job and every index entry of it. Returns 1 when deleted, else 0.
-- K: all, finished, users, gpu.
local function deleteTerminalJob(K, id, onlyUser)
  local jk = jobKey(id)
  local f = redis.call('HMGET', jk, 'status', 'user', 'startedAt', 'finishedAt')
  local status, user = f[1], f[2]
  if not status or not TERMINAL[status] then return 0 end
  if onlyUser and user ~= onlyUser then return 0 end
  redis.call('ZREM', K.all, id)
  redis.call('ZREM', idxStatusKey(status), id)
  redis.call('ZREM', idxUserKey(user), id)
  redis.call('ZREM', idxUserStatusKey(status, user), id)
  redis.call('ZREM', K.finished, id)
  redis.call('ZREM', activityKey(user), id)
  if f[3] and f[4] then
    redis.call('HINCRBYFLOAT', K.gpu, user, tonumber(f[3]) - tonumber(f[4]))
  end
  redis.call('DEL', jk)
  if redis.call('EXISTS', idxUserKey(user)) == 0 then
    redis.call('SREM', K.users, user)
    redis.call('HDEL', K.gpu, user)
  end
  return 1
end
