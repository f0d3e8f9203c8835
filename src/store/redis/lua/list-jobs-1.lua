--[[
  One page of jobs by seq, filtered by user and/or statuses, from the seq-scored indexes.

  KEYS[1] index of all jobs          <p>idx:all

  ARGV[1] key prefix
  ARGV[2] '1' to filter by user, else '0'
  ARGV[3] user (when ARGV[2] is '1')
  ARGV[4] 'asc' or 'desc'
  ARGV[5] cursor: the seq of the last job of the previous page, or '' for the first page
  ARGV[6] page size
  ARGV[7...] statuses to keep (none: every status)

  Returns {more ('1' or '0'), {jobs (flat hashes)}}
]]
--- @include "common"

local byUser, user, asc, cursor, limit = ARGV[2] == '1', ARGV[3], ARGV[4] == 'asc', ARGV[5], tonumber(ARGV[6])
local keys = {}
if #ARGV >= 7 then
  for i = 7, #ARGV do
    if byUser then keys[#keys + 1] = idxUserStatusKey(ARGV[i], user) else keys[#keys + 1] = idxStatusKey(ARGV[i]) end
  end
elseif byUser then
  keys[1] = idxUserKey(user)
else
  keys[1] = KEYS[1]
end

local entries = {}
for _, k in ipairs(keys) do
  local r
  if asc then
    local min = '-inf'
    if cursor ~= '' then min = '(' .. cursor end
    r = redis.call('ZRANGEBYSCORE', k, min, '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
  else
    local max = '+inf'
    if cursor ~= '' then max = '(' .. cursor end
    r = redis.call('ZREVRANGEBYSCORE', k, max, '-inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
  end
  for i = 1, #r, 2 do entries[#entries + 1] = { tonumber(r[i + 1]), r[i] } end
end
if #keys > 1 then
  if asc then
    table.sort(entries, function(a, b) return a[1] < b[1] end)
  else
    table.sort(entries, function(a, b) return a[1] > b[1] end)
  end
end

local jobs = {}
for i = 1, math.min(#entries, limit) do
  jobs[i] = redis.call('HGETALL', jobKey(entries[i][2]))
end
local more = '0'
if #entries > limit then more = '1' end
return { more, jobs }
