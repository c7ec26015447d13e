local base, now = ARGV[1], ARGV[2]
local items = split(ARGV[3])
local changed = 0
for i = 1, #items, 5 do
  if apply_mark(base, items[i], items[i+1], items[i+2], items[i+3], items[i+4]) then
    -- LT: a new event brings a deferred check forward to now
    redis.call('ZADD', base .. K_PENDING, 'LT', now, items[i])
    changed = changed + 1
  end
end
return changed
