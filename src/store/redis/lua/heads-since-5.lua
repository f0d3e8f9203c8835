--[[
  What a claim needs to pick a job, in one round trip: the stored settings and the active users'
  heads under the mode's head order, either all of them or only those that changed since the
  caller's cached copy (same epoch and mode, tick not ahead of the clock).

  KEYS[1] settings hash              <p>settings
  KEYS[2] heads, seq order           <p>heads:seq
  KEYS[3] heads, prio order          <p>heads:prio
  KEYS[4] head changes, by user      <p>heads:changed
  KEYS[5] head change clock          <p>heads:meta

  ARGV[1] default mode (used while no settings are stored)
  ARGV[2] default paused, '1' or '0'
  ARGV[3] mode of the caller's cache, or '' for none
  ARGV[4] epoch of the caller's cache
  ARGV[5] tick of the caller's cache

  Returns {settings (flat hash), 'paused'} when paused, else
    {settings, 'full' | 'delta', epoch, tick, pairs (flat: user, head JSON or '' when removed)}.
]]
local s = redis.call('HGETALL', KEYS[1])
local mode, paused = ARGV[1], ARGV[2]
for i = 1, #s, 2 do
  if s[i] == 'mode' then mode = s[i + 1] elseif s[i] == 'paused' then paused = s[i + 1] end
end
if paused == '1' then return { s, 'paused' } end

local headsKey = KEYS[2]
if mode == 'priority' then headsKey = KEYS[3] end
local meta = redis.call('HMGET', KEYS[5], 'epoch', 'tick')
local epoch, tick = meta[1] or '', meta[2] or '0'
if epoch == '' or epoch ~= ARGV[4] or mode ~= ARGV[3] or tonumber(ARGV[5]) > tonumber(tick) then
  return { s, 'full', epoch, tick, redis.call('HGETALL', headsKey) }
end

local users = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[5], '+inf')
local out = {}
for i = 1, #users, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #users) do chunk[#chunk + 1] = users[j] end
  local vals = redis.call('HMGET', headsKey, unpack(chunk))
  for j = 1, #chunk do
    out[#out + 1] = chunk[j]
    out[#out + 1] = vals[j] or ''
  end
end
return { s, 'delta', epoch, tick, out }
