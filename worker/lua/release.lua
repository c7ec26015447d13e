local base, now, settle_until = ARGV[1], ARGV[2], ARGV[3]
local applied, counters = base .. ':applied', base .. ':counters'
local items = split(ARGV[4])
local added, removed = 0, 0
for i = 1, #items, 2 do
  local email, val = items[i], items[i+1]
  redis.call('ZREM', base .. ':inflight', email)
  if val == 'retry' then
    redis.call('ZADD', base .. ':pending', 'NX', now, email)
  elseif val ~= '' then
    local prev = redis.call('HGET', applied, email)
    local was_in = prev and string.sub(prev, 1, 2) == 'in'
    if string.sub(val, 1, 3) == 'out' then
      if val == 'out' and prev ~= 'out' and prev ~= 'out0' then removed = removed + 1 end
      redis.call('HSET', applied, email, val)
    else
      if not was_in then added = added + 1 end
      redis.call('HSET', applied, email, val)
      if tonumber(settle_until) > 0 then
        redis.call('ZADD', base .. ':settling', settle_until, email)
      end
    end
  end
end
if added > 0 then redis.call('HINCRBY', counters, 'added', added) end
if removed > 0 then redis.call('HINCRBY', counters, 'removed', removed) end
return 1
