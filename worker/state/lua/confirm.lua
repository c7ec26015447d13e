-- The list shows these users (recent joiners of a double opt-in list): record what that means.
-- ``wait`` (awaiting confirmation) becomes ``in``: out of ``awaiting_confirmation``, into
-- ``added``. ``try`` (a subscribe whose answer was lost) becomes ``in`` too, into ``added``.
-- ``outw`` (left before confirming, then confirmed anyway) becomes ``in``, into ``added``, and
-- is pending again, so a flush removes them (counted removed) unless they re-entered meanwhile.
-- Anyone else (already ``in``, removed while a member, never told) is left alone.
local base, now = ARGV[1], ARGV[2]
local applied = base .. K_APPLIED
local emails = split(ARGV[3])
local confirmed, recovered, rejoined = 0, 0, 0
local function fields_of(value, code)
  return string.sub(value, #code + #FIELDS_SEP + 1)
end
for _, email in ipairs(emails) do
  local prev = redis.call('HGET', applied, email)
  if prev and string.sub(prev, 1, #APPLIED_WAIT + 1) == APPLIED_WAIT .. FIELDS_SEP then
    redis.call('HSET', applied, email, APPLIED_IN .. FIELDS_SEP .. fields_of(prev, APPLIED_WAIT))
    confirmed = confirmed + 1
  elseif prev and string.sub(prev, 1, #APPLIED_TRY + 1) == APPLIED_TRY .. FIELDS_SEP then
    redis.call('HSET', applied, email, APPLIED_IN .. FIELDS_SEP .. fields_of(prev, APPLIED_TRY))
    recovered = recovered + 1
  elseif prev == OUT_AWAITING then
    redis.call('HSET', applied, email, APPLIED_IN .. FIELDS_SEP)
    local member = false
    for _, v in ipairs(redis.call('HVALS', base .. K_USER .. email)) do
      if string.sub(v, 1, 1) == ENTER then member = true end
    end
    if not member then redis.call('ZADD', base .. K_PENDING, 'LT', now, email) end
    rejoined = rejoined + 1
  end
end
local counters = base .. K_COUNTERS
if confirmed + recovered + rejoined > 0 then
  redis.call('HINCRBY', counters, C_ADDED, confirmed + recovered + rejoined)
end
if confirmed > 0 then redis.call('HINCRBY', counters, C_AWAITING, -confirmed) end
return {confirmed, recovered, rejoined}
