-- Record each user's outcome (codes: worker/state/codes.py). Count each person's transitions once:
-- ``added`` when a user becomes ``in`` from anything else (``wait`` included: a confirmation),
-- ``awaiting_confirmation`` while a user is ``wait`` (subscribed to a double opt-in list, not
-- confirmed), ``removed`` when a counted-in user leaves (``out``, or ``out?`` when no profile
-- appeared in time, also counted as drift). A ``wait`` user who leaves is ``outw``: out of
-- ``awaiting_confirmation``, never counted removed. A ``wait`` outcome for a user already ``in``
-- stays ``in`` (the list showed them before the subscribe's answer was recorded).
local base, now, settle_until = ARGV[1], ARGV[2], ARGV[3]
local applied, counters = base .. K_APPLIED, base .. K_COUNTERS
local waits, drift = base .. K_REMOVAL_WAITS, base .. K_DRIFT
local items = split(ARGV[4])
local added, removed, drifted, awaiting = 0, 0, 0, 0
local function is(code, value)
  return value and string.sub(value, 1, #code + 1) == code .. FIELDS_SEP
end
for i = 1, #items, 2 do
  local email, val = items[i], items[i+1]
  redis.call('ZREM', base .. K_INFLIGHT, email)
  if val == RETRY then
    redis.call('ZADD', base .. K_PENDING, 'LT', now, email)
  else
    redis.call('HDEL', waits, email)
  end
  if val ~= RETRY and val ~= FORGET then
    redis.call('HSET', base .. K_APPLIED_AT, email, now)
    local prev = redis.call('HGET', applied, email)
    local was_in, was_waiting = is(APPLIED_IN, prev), is(APPLIED_WAIT, prev)
    if string.sub(val, 1, #OUT) == OUT then
      if was_in then removed = removed + 1 end
      if was_waiting then
        awaiting = awaiting - 1
        if val == OUT then val = OUT_AWAITING end
      end
      if val == OUT_UNCONFIRMED then
        if prev ~= OUT_UNCONFIRMED then drifted = drifted + 1 end
        redis.call('ZADD', drift, now, email)
      else
        redis.call('ZREM', drift, email)
      end
      redis.call('HSET', applied, email, val)
    else
      if is(APPLIED_WAIT, val) then
        if was_in then
          val = APPLIED_IN .. string.sub(val, #APPLIED_WAIT + 1)
        elseif not was_waiting then
          awaiting = awaiting + 1
        end
      else
        if was_waiting then awaiting = awaiting - 1 end
        if not was_in then added = added + 1 end
      end
      redis.call('HSET', applied, email, val)
      redis.call('ZREM', drift, email)
      if tonumber(settle_until) > 0 then
        redis.call('ZADD', base .. K_SETTLING, settle_until, email)
      end
    end
  end
end
if added > 0 then redis.call('HINCRBY', counters, C_ADDED, added) end
if removed > 0 then redis.call('HINCRBY', counters, C_REMOVED, removed) end
if awaiting ~= 0 then redis.call('HINCRBY', counters, C_AWAITING, awaiting) end
if drifted > 0 then redis.call('HINCRBY', counters, C_REMOVE_UNCONFIRMED, drifted) end
return 1
