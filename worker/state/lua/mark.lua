-- Apply one event to a user's desired state; true when Klaviyo must hear of the change.
-- Per (user, audience) the newest event by the source's timestamp wins (a tie: exit wins);
-- the newest mapped fields are kept while the user is a member.
local function apply_mark(base, email, aud, act, ts, fjson)
  local ukey = base .. K_USER .. email
  local dirty = false
  if act ~= CHANGE then
    local cur = redis.call('HGET', ukey, aud)
    local newer = true
    if cur then
      local cts = string.sub(cur, 3)
      if ts < cts then newer = false
      elseif ts == cts then newer = (act == EXIT and string.sub(cur, 1, 1) == ENTER) end
    end
    if newer then
      redis.call('HSET', ukey, aud, act .. EVENT_SEP .. ts)
      dirty = (not cur) or string.sub(cur, 1, 1) ~= act
    end
  end
  local member = act == ENTER
  if act == CHANGE then
    for _, v in ipairs(redis.call('HVALS', ukey)) do
      if string.sub(v, 1, 1) == ENTER then member = true end
    end
  end
  if fjson ~= '' and member then
    local fkey = base .. K_FIELDS .. email
    local cur = redis.call('GET', fkey)
    if (not cur) or string.sub(cur, 1, 20) < ts then
      if (not cur) or string.sub(cur, 22) ~= fjson then dirty = true end
      redis.call('SET', fkey, ts .. FIELDS_SEP .. fjson)
    end
  end
  return dirty
end
