local base, now, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local pending, inflight, settling = base .. ':pending', base .. ':inflight', base .. ':settling'
local out = {}
for _, e in ipairs(split(ARGV[4])) do
  local held = tonumber(redis.call('ZSCORE', inflight, e) or '0')
  local settle = tonumber(redis.call('ZSCORE', settling, e) or '0')
  if redis.call('ZSCORE', pending, e) and held <= now and settle <= now then
    redis.call('ZREM', pending, e)
    redis.call('ZADD', inflight, lease, e)
    describe(base, e, out)
  end
end
return table.concat(out, '\31')
