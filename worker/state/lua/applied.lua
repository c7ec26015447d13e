-- Set (or, for an empty value, delete) users' ``applied`` codes without releasing them: a
-- subscribe about to be sent is recorded as ``try`` first, and restored if Klaviyo refused it.
-- An accepted code (``in``, ``wait``) is never replaced by one that is not: it means another
-- flusher, holding the same user after this one's lease lapsed, was told yes and released
-- them, and ``try`` over it would count the person as added a second time.
local applied = ARGV[1] .. K_APPLIED
local items = split(ARGV[2])
local function accepted(value)
  if not value then return false end
  local code = string.sub(value, 1, (string.find(value, FIELDS_SEP, 1, true) or 0) - 1)
  return code == APPLIED_IN or code == APPLIED_WAIT
end
for i = 1, #items, 2 do
  local email, val = items[i], items[i+1]
  if accepted(val) or not accepted(redis.call('HGET', applied, email)) then
    if val == FORGET then
      redis.call('HDEL', applied, email)
    else
      redis.call('HSET', applied, email, val)
    end
  end
end
return 1
