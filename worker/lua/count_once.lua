-- Count people once: add them to the counter's own set, raise the counter by the newcomers.
local base, field = ARGV[1], ARGV[2]
local added = 0
for _, e in ipairs(split(ARGV[3])) do
  added = added + redis.call('SADD', base .. ':' .. field, e)
end
if added > 0 then redis.call('HINCRBY', base .. ':counters', field, added) end
return added
