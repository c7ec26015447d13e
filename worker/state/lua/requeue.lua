-- Hand users the audit found out of place back to the engine (``audit --repair``), keeping
-- ``added - removed`` equal to the list: ``rejoin`` a member Klaviyo does not show (uncounted,
-- ``applied`` forgotten, so the next flush subscribes them again); ``remove`` a person on the
-- list who is in no audience (counted in, ``applied`` an ``in``, so the next flush removes
-- them). A user pending or held by a flusher, or whose desired state changed since the audit
-- read it, is left alone. Returns how many users were queued.
local base, now = ARGV[1], ARGV[2]
local applied, pending, inflight = base .. K_APPLIED, base .. K_PENDING, base .. K_INFLIGHT
local items = split(ARGV[3])
local queued, added = 0, 0
local function is_member(e)
  for _, v in ipairs(redis.call('HVALS', base .. K_USER .. e)) do
    if string.sub(v, 1, 1) == ENTER then return true end
  end
  return false
end
for i = 1, #items, 2 do
  local email, mode = items[i], items[i+1]
  if not redis.call('ZSCORE', inflight, email) and not redis.call('ZSCORE', pending, email) then
    local prev = redis.call('HGET', applied, email)
    local was_in = prev and string.sub(prev, 1, #APPLIED_IN + 1) == APPLIED_IN .. FIELDS_SEP
    local member = is_member(email)
    if mode == 'rejoin' and member then
      if was_in then added = added - 1 end
      redis.call('HDEL', applied, email)
      redis.call('HSET', base .. K_APPLIED_AT, email, now)
      redis.call('ZADD', pending, now, email)
      queued = queued + 1
    elseif mode == 'remove' and not member then
      if not was_in then
        added = added + 1
        redis.call('HSET', applied, email, APPLIED_IN .. FIELDS_SEP)
        redis.call('HSET', base .. K_APPLIED_AT, email, now)
      end
      redis.call('ZADD', pending, now, email)
      queued = queued + 1
    end
  end
end
if added ~= 0 then redis.call('HINCRBY', base .. K_COUNTERS, C_ADDED, added) end
return queued
