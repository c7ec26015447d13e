local function describe(base, e, out)
  local member = 0
  for _, v in ipairs(redis.call('HVALS', base .. K_USER .. e)) do
    if string.sub(v, 1, 1) == ENTER then member = 1 end
  end
  out[#out + 1] = e
  out[#out + 1] = member
  out[#out + 1] = redis.call('GET', base .. K_FIELDS .. e) or ''
  out[#out + 1] = redis.call('HGET', base .. K_APPLIED, e) or ''
end
