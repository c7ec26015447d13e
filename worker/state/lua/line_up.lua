-- Line up one deferred flush of a job on one queue, unless one is lined up already.
-- KEYS[1]: the queue's flush-due key (the due time, ms, of the flush lined up there).
-- ARGV: due (ms), time to live (ms).
-- A flush lined up at or before `due` covers this one: 0, send nothing. Otherwise (none, or
-- a later one) this one is lined up: 1, send it (a later one still runs, and finds less).
local current = tonumber(redis.call('GET', KEYS[1]))
if current and current <= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
