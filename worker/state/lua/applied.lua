-- Set (or, for an empty value, delete) users' ``applied`` codes without releasing them: a
-- subscribe about to be sent is recorded as ``try`` first, and restored if Klaviyo refused it.
local applied = ARGV[1] .. K_APPLIED
local items = split(ARGV[2])
for i = 1, #items, 2 do
  if items[i+1] == FORGET then
    redis.call('HDEL', applied, items[i])
  else
    redis.call('HSET', applied, items[i], items[i+1])
  end
end
return 1
