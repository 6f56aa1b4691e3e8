-- KEYS: the channel's presence keys. ARGV: pub/sub command, name, node, lastSeen,
-- frames.LUA_PIECES. The node stops: its connections here leave.
local K = presence_keys()
local name, node, lastseen = ARGV[2], ARGV[3], ARGV[4]
local all = redis.call('HGETALL', K.conns)
for i = 1, #all, 2 do
  local owner = cjson.decode(all[i + 1])
  if owner[2] == node then
    leave(K, name, all[i], owner[1], lastseen)
  end
end
redis.call('ZREM', K.nodes, node)
return 1
