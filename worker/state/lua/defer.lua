-- Hand back users whose removal waits for their Klaviyo profile: pending again, due at their
-- own time (a new event brings them forward), and remember when the wait began.
local base = ARGV[1]
local items = split(ARGV[2])
for i = 1, #items, 3 do
  local email = items[i]
  redis.call('ZREM', base .. K_INFLIGHT, email)
  redis.call('ZADD', base .. K_PENDING, 'LT', items[i+1], email)
  redis.call('HSETNX', base .. K_REMOVAL_WAITS, email, items[i+2])
end
return 1
