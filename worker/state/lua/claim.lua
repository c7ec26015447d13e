local base, now, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local max_n, scan_n = tonumber(ARGV[4]), tonumber(ARGV[5])
local pending, inflight, settling = base .. K_PENDING, base .. K_INFLIGHT, base .. K_SETTLING
for _, e in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 10000)) do
  redis.call('ZREM', inflight, e)
  redis.call('ZADD', pending, 'LT', now, e)
end
redis.call('ZREMRANGEBYSCORE', settling, '-inf', now)
local out, blocked_until = {}, 0
-- a pending score in the future is a deferred check (a removal waiting for its profile)
local later = redis.call('ZRANGEBYSCORE', pending, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if later[2] then blocked_until = tonumber(later[2]) end
for _, e in ipairs(redis.call('ZRANGEBYSCORE', pending, '-inf', now, 'LIMIT', 0, scan_n)) do
  local held = tonumber(redis.call('ZSCORE', inflight, e) or '0')
  local settle = tonumber(redis.call('ZSCORE', settling, e) or '0')
  local until_ms = math.max(held, settle)
  if until_ms > now then
    if blocked_until == 0 or until_ms < blocked_until then blocked_until = until_ms end
  else
    redis.call('ZREM', pending, e)
    redis.call('ZADD', inflight, lease, e)
    describe(base, e, out)
    if #out >= 4 * max_n then break end
  end
end
return {table.concat(out, ITEM_SEP), tostring(blocked_until)}
