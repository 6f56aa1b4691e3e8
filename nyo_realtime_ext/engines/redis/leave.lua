-- KEYS: the channel's presence keys. ARGV: pub/sub command, name, conn, user, now,
-- frames.LUA_PIECES. Returns the member who left, or nil.
local name, conn, user, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
return leave(presence_keys(), name, conn, user, now)
