-- KEYS: the user's profile, the user's channels. ARGV: pub/sub command, changes JSON
-- ({"name"?, "color"?}, null clears), the changed name and colour as frames.py encodes
-- them ('' where not set). Stores what the user chose (`j`; `n`, `c`: as encoded, for
-- join.lua on one Redis) and counts a version (`v`); returns the choice (JSON), its version, and the channels the user
-- entered with when (a flat list: name, stamp, ...). The node then shows the change on
-- each channel (reprofile.lua), one step per channel, each on its own shard.
local profile, changes = KEYS[1], cjson.decode(ARGV[2])
local wire = {name = ARGV[3], color = ARGV[4]}
local raw = redis.call('HGET', profile, 'j')
local chosen = raw and cjson.decode(raw) or {}
for _, field in ipairs({'name', 'color'}) do
  local value = changes[field]
  if value == cjson.null then
    chosen[field] = nil
    redis.call('HDEL', profile, string.sub(field, 1, 1))
  elseif value ~= nil then
    chosen[field] = value
    redis.call('HSET', profile, string.sub(field, 1, 1), wire[field])
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
