-- KEYS: the channel's presence keys. ARGV: pub/sub command, name, reap (1 or 0),
-- lastSeen for the reaped, REAP_BATCH, frames.LUA_PIECES. The members' fields, after
-- the connections of dead nodes and expired leases left: a channel no live node
-- maintains shows no ghost either.
local K = presence_keys()
if ARGV[3] == '1' then
  reap(K, ARGV[2], ARGV[4], tonumber(ARGV[5]))
end
return redis.call('HGETALL', K.users)
