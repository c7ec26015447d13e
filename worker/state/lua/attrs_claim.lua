-- Claim up to max_n members whose mapped fields wait for an attribute import, oldest first,
-- under a lease, with their newest fields. Expired leases (a drain that died) go back first.
-- A user an unexpired drain still holds is skipped (its newer fields follow that import, so
-- two imports of one profile are never in flight at once); a user who is no longer a member,
-- or has no fields, is dropped.
local base, now, lease, max_n = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local pending, inflight = base .. K_ATTRS_PENDING, base .. K_ATTRS_INFLIGHT
for _, e in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 10000)) do
  redis.call('ZREM', inflight, e)
  redis.call('ZADD', pending, 'LT', now, e)
end
local out, n = {}, 0
for _, e in ipairs(redis.call('ZRANGE', pending, 0, 2 * max_n - 1)) do
  if tonumber(redis.call('ZSCORE', inflight, e) or '0') <= now then
    redis.call('ZREM', pending, e)
    local f = redis.call('GET', base .. K_FIELDS .. e)
    local member = false
    for _, v in ipairs(redis.call('HVALS', base .. K_USER .. e)) do
      if string.sub(v, 1, 1) == ENTER then member = true end
    end
    if f and member then
      redis.call('ZADD', inflight, lease, e)
      out[#out + 1] = e
      out[#out + 1] = f
      n = n + 1
      if n >= max_n then break end
    end
  end
end
return table.concat(out, ITEM_SEP)
