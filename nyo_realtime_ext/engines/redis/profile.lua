-- ARGV: prefix, tenant part ("<len>:<tenant>"), user, changes JSON ({"name"?, "color"?},
-- null clears), the identity's name (JSON), the identity's colour (JSON, '' = none), the
-- changed name and colour as frames.py encodes them ('' where not set), frames.LUA_PIECES.
-- Stores the profile, then shows the effective values on every channel the user is a
-- member of, with one `presence:updated` where they changed. Returns what is chosen now
-- (JSON).
local tp, user, changes = ARGV[2], ARGV[3], cjson.decode(ARGV[4])
local own_name, own_color = ARGV[5], ARGV[6]
local set_wire = {name = ARGV[7], color = ARGV[8]}
local pwire = P .. ':pwire:' .. tp
local profiles = P .. ':profiles:' .. tp
local raw = redis.call('HGET', profiles, user)
local chosen = raw and cjson.decode(raw) or {}
for _, field in ipairs({'name', 'color'}) do
  local value = changes[field]
  local wire_field = string.sub(field, 1, 1) .. ':' .. user
  if value == cjson.null then
    chosen[field] = nil
    redis.call('HDEL', pwire, wire_field)
  elseif value ~= nil then
    chosen[field] = value
    redis.call('HSET', pwire, wire_field, set_wire[field])
  end
end
local answer = '{}'
if chosen.name or chosen.color then
  answer = cjson.encode(chosen)
  redis.call('HSET', profiles, user, answer)
else
  redis.call('HDEL', profiles, user)
end
local wire = chosen_wire(tp, user)
-- Chosen before pwire was kept: encoded here, once (cjson escapes `/`).
local name = wire[1] or (chosen.name and cjson.encode(chosen.name)) or own_name
local color = wire[2] or (chosen.color and cjson.encode(chosen.color)) or own_color
local shown_now = shown_piece(name, color)
local uch = user_channels(tp, user)
for _, channel in ipairs(redis.call('SMEMBERS', uch)) do
  local ck = tp .. ':' .. channel
  local users = key('users', ck)
  local raw_shown = redis.call('HGET', users, 'p:' .. user)
  if not raw_shown then
    redis.call('SREM', uch, channel) -- left meanwhile without telling: forget it
  else
    local s, e = shown_bounds(raw_shown)
    if s and e and string.sub(raw_shown, s, e - 1) ~= shown_now then
      redis.call('HSET', users, 'p:' .. user, with_shown(raw_shown, shown_now))
      local member = member_json(users, user, #conns_of(users, user))
      event(ck, channel, 'presence:updated', member, '-')
    end
  end
end
return answer
