-- record, then claim the same users when nobody holds them, in one step: a backfill chunk's
-- users go straight from their event to the flusher's lease, without a trip through pending.
local base, now, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local pending, inflight, settling = base .. K_PENDING, base .. K_INFLIGHT, base .. K_SETTLING
local items = split(ARGV[4])
local order, dirty = {}, {}
for i = 1, #items, 5 do
  local e = items[i]
  if dirty[e] == nil then order[#order + 1] = e; dirty[e] = false end
  if apply_mark(base, e, items[i+1], items[i+2], items[i+3], items[i+4]) then dirty[e] = true end
end
local out, changed = {}, 0
for _, e in ipairs(order) do
  if dirty[e] then changed = changed + 1 end
  -- an expired lease is a flusher that died: its users are claimable, as in claim
  local held = redis.call('ZSCORE', inflight, e)
  -- a pending score in the future is a deferred check: not due unless the chunk changed it
  local due = tonumber(redis.call('ZSCORE', pending, e) or 'inf') <= now
  if dirty[e] or held or due then
    local settle = tonumber(redis.call('ZSCORE', settling, e) or '0')
    if tonumber(held or '0') <= now and settle <= now then
      redis.call('ZREM', pending, e)
      redis.call('ZADD', inflight, lease, e)
      describe(base, e, out)
    elseif dirty[e] then
      redis.call('ZADD', pending, 'LT', ARGV[2], e)
    end
  end
end
return {table.concat(out, ITEM_SEP), changed}
