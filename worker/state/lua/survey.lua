-- What the audit needs of each user, in one reply: in an audience (1/0), what Klaviyo was
-- last told (the ``applied`` code, '' for never) and when (ms, '' for never), per email of the
-- \x1f-separated list.
local base = ARGV[1]
local applied, applied_at = base .. K_APPLIED, base .. K_APPLIED_AT
local out = {}
for _, e in ipairs(split(ARGV[2])) do
  local member = '0'
  for _, v in ipairs(redis.call('HVALS', base .. K_USER .. e)) do
    if string.sub(v, 1, 1) == ENTER then member = '1' break end
  end
  out[#out + 1] = member
  out[#out + 1] = redis.call('HGET', applied, e) or ''
  out[#out + 1] = redis.call('HGET', applied_at, e) or ''
end
return table.concat(out, ITEM_SEP)
