-- ARGV: prefix, tenant part ("<len>:<tenant>"), user, changes JSON ({"name"?, "color"?},
-- null clears), the identity's name, the identity's colour ('' = none). Stores the
-- profile, then shows the effective values on every channel the user is a member of,
-- with one `presence:updated` where they changed. Returns what is chosen now (JSON).
local tp, user, changes = ARGV[2], ARGV[3], cjson.decode(ARGV[4])
local own_name, own_color = ARGV[5], ARGV[6]
local profiles = P .. ':profiles:' .. tp
local raw = redis.call('HGET', profiles, user)
local chosen = raw and cjson.decode(raw) or {}
for _, field in ipairs({'name', 'color'}) do
  local value = changes[field]
  if value == cjson.null then
    chosen[field] = nil
  elseif value ~= nil then
    chosen[field] = value
  end
end
local answer = '{}'
if chosen.name or chosen.color then
  answer = cjson.encode(chosen)
  redis.call('HSET', profiles, user, answer)
else
  redis.call('HDEL', profiles, user)
end
local name = chosen.name or own_name
local color = chosen.color
if not color and own_color ~= '' then
  color = own_color
end
local uch = user_channels(tp, user)
for _, channel in ipairs(redis.call('SMEMBERS', uch)) do
  local ck = tp .. ':' .. channel
  local users = key('users', ck)
  local raw_shown = redis.call('HGET', users, 'p:' .. user)
  if not raw_shown then
    redis.call('SREM', uch, channel) -- left meanwhile without telling: forget it
  else
    local shown = cjson.decode(raw_shown .. '}')
    if shown.name ~= name or shown.color ~= color then
      shown.name, shown.color = name, color
      redis.call('HSET', users, 'p:' .. user, string.sub(cjson.encode(shown), 1, -2))
      local member = member_json(users, user, #conns_of(users, user))
      event(ck, channel, 'presence:updated', member, '-')
    end
  end
end
return answer
