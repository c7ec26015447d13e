local function split(s)
  local out, start = {}, 1
  if s == '' then return out end
  while true do
    local i = string.find(s, ITEM_SEP, start, true)
    if not i then out[#out + 1] = string.sub(s, start) return out end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end
