-- Apply one event to a user's desired state; true when Klaviyo must hear of the change.
-- Per (user, audience) the newest event by the source's timestamp wins (a tie: exit wins);
-- the newest mapped fields are kept while the user is a member.
local function apply_mark(base, email, aud, act, ts, fjson)
  local ukey = base .. ':u:' .. email
  local dirty = false
  if act ~= 'C' then
    local cur = redis.call('HGET', ukey, aud)
    local newer = true
    if cur then
      local cts = string.sub(cur, 3)
      if ts < cts then newer = false
      elseif ts == cts then newer = (act == 'X' and string.sub(cur, 1, 1) == 'E') end
    end
    if newer then
      redis.call('HSET', ukey, aud, act .. ':' .. ts)
      dirty = (not cur) or string.sub(cur, 1, 1) ~= act
    end
  end
  local member = act == 'E'
  if act == 'C' then
    for _, v in ipairs(redis.call('HVALS', ukey)) do
      if string.sub(v, 1, 1) == 'E' then member = true end
    end
  end
  if fjson ~= '' and member then
    local fkey = base .. ':f:' .. email
    local cur = redis.call('GET', fkey)
    if (not cur) or string.sub(cur, 1, 20) < ts then
      if (not cur) or string.sub(cur, 22) ~= fjson then dirty = true end
      redis.call('SET', fkey, ts .. '|' .. fjson)
    end
  end
  return dirty
end
