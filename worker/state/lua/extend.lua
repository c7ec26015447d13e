for _, e in ipairs(split(ARGV[3])) do
  redis.call('ZADD', ARGV[1] .. ':inflight', 'XX', ARGV[2], e)
end
return 1
