-- KEYS: the user's profile, the user's channels. ARGV: pub/sub command, changes JSON
-- ({"name"?, "color"?}, null clears). Stores what the user chose (`j`) and counts a
-- version (`v`); returns the choice (JSON), its version, and the channels the user
-- entered with when (a flat list: name, stamp, ...). The node then shows the change on
-- each channel (reprofile.lua), one step per channel, each on its own shard.
local profile, changes = KEYS[1], cjson.decode(ARGV[2])
local raw = redis.call('HGET', profile, 'j')
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
  redis.call('HSET', profile, 'j', answer)
else
  redis.call('HDEL', profile, 'j')
end
local version = redis.call('HINCRBY', profile, 'v', 1)
return {answer, version, redis.call('HGETALL', KEYS[2])}
