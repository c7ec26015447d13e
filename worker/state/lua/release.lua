-- Record each user's outcome (codes: worker/state/desired.py). Count each person's transitions once:
-- ``added`` when a user becomes ``in`` from anything else, ``removed`` when a counted-in user
-- leaves (``out``, or ``out?`` when no profile appeared in time, also counted as drift).
local base, now, settle_until = ARGV[1], ARGV[2], ARGV[3]
local applied, counters = base .. ':applied', base .. ':counters'
local waits, drift = base .. ':removal-waits', base .. ':drift'
local items = split(ARGV[4])
local added, removed, drifted = 0, 0, 0
for i = 1, #items, 2 do
  local email, val = items[i], items[i+1]
  redis.call('ZREM', base .. ':inflight', email)
  if val == 'retry' then
    redis.call('ZADD', base .. ':pending', 'LT', now, email)
  else
    redis.call('HDEL', waits, email)
  end
  if val ~= 'retry' and val ~= '' then
    local prev = redis.call('HGET', applied, email)
    local was_in = prev and string.sub(prev, 1, 3) == 'in|'
    if string.sub(val, 1, 3) == 'out' then
      if was_in then removed = removed + 1 end
      if val == 'out?' then
        if prev ~= 'out?' then drifted = drifted + 1 end
        redis.call('ZADD', drift, now, email)
      else
        redis.call('ZREM', drift, email)
      end
      redis.call('HSET', applied, email, val)
    else
      if not was_in then added = added + 1 end
      redis.call('HSET', applied, email, val)
      redis.call('ZREM', drift, email)
      if tonumber(settle_until) > 0 then
        redis.call('ZADD', base .. ':settling', settle_until, email)
      end
    end
  end
end
if added > 0 then redis.call('HINCRBY', counters, 'added', added) end
if removed > 0 then redis.call('HINCRBY', counters, 'removed', removed) end
if drifted > 0 then redis.call('HINCRBY', counters, 'drift:remove_unconfirmed', drifted) end
return 1
