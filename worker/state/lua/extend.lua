for _, e in ipairs(split(ARGV[3])) do
  redis.call('ZADD', ARGV[1] .. K_INFLIGHT, 'XX', ARGV[2], e)
end
return 1
