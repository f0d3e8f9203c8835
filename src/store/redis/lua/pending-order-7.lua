--[[
  The pending jobs the service order is computed from: for each active user the first k jobs
  under the mode's head order (k per user, default ARGV[4]) and how many the user has. An
  automatic default k gives each user twice its share of the n jobs.

  KEYS[1] heads, seq order           <p>heads:seq
  KEYS[2] heads, prio order          <p>heads:prio
  KEYS[3] last served, by user       <p>served:user
  KEYS[4] running count, by user     <p>running
  KEYS[5] head changes, by user      <p>heads:changed
  KEYS[6] head change clock          <p>heads:meta
  KEYS[7] settings hash              <p>settings

  ARGV[1] key prefix
  ARGV[2] default mode (used while no settings are stored)
  ARGV[3] n, the number of jobs wanted
  ARGV[4] default k, or 0 for min(n, max(2, ceil(2n / users)))
  ARGV[5...] pairs: user, k for that user

  Returns {mode, users JSON [user...], pending counts JSON [n...],
    candidates JSON [[id, user, seq, priority, front, skips, models, lastServed, running]...]}
]]
--- @include "common"
--- @include "heads"

local H = headsKeys()
local mode = redis.call('HGET', KEYS[7], 'mode') or ARGV[2]
local headsKey = H.seq
if mode == 'priority' then headsKey = H.prio end
local override = {}
for i = 5, #ARGV - 1, 2 do override[ARGV[i]] = tonumber(ARGV[i + 1]) end
local users = redis.call('HKEYS', headsKey)
local n, defaultK = tonumber(ARGV[3]), tonumber(ARGV[4])
if defaultK == 0 and #users > 0 then defaultK = math.min(n, math.max(2, math.ceil(2 * n / #users))) end

local names, counts, cands = {}, {}, {}
for i, u in ipairs(users) do
  local key
  if mode == 'priority' then key = pqPrioKey(u) else key = pqSeqKey(u) end
  names[i] = cjson.encode(u)
  counts[i] = redis.call('ZCARD', key)
  local served, running = serveState(H, u)
  -- The first job is the head, whose JSON is kept in the heads hash already.
  cands[#cands + 1] = redis.call('HGET', headsKey, u)
  for _, id in ipairs(redis.call('ZRANGE', key, 1, (override[u] or defaultK) - 1)) do
    cands[#cands + 1] = candidateJson(H, id, served, running)
  end
end
return { mode, '[' .. table.concat(names, ',') .. ']', '[' .. table.concat(counts, ',') .. ']',
  '[' .. table.concat(cands, ',') .. ']' }
