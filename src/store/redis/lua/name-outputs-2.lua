--[[
  Numbers a job's output names (JobStore.nameOutputs): one counter per (user, subfolder, prefix),
  each new claim taking the next number above its floor; a claim the job already made answers
  the number it got then. Both hashes are blob namespaces (see src/store/output-names.ts).

  KEYS[1] counters                  <p>blob:output-counters
  KEYS[2] the jobs' names           <p>blob:output-names

  ARGV[1] job id
  ARGV[2..] triples: counter field, claim field, floor

  Returns the numbers, in claim order.
]]
local names = {}
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if raw then names = cjson.decode(raw) end
local out = {}
local changed = false
for i = 2, #ARGV, 3 do
  local claim = ARGV[i + 1]
  local n = names[claim]
  if not n then
    local last = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
    local floor = tonumber(ARGV[i + 2])
    if floor > last then last = floor end
    n = last + 1
    redis.call('HSET', KEYS[1], ARGV[i], tostring(n))
    names[claim] = n
    changed = true
  end
  out[#out + 1] = n
end
if changed then redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(names)) end
return out
