-- ARGV: prefix, node, lastSeen, frames.LUA_PIECES. This node stops: all its connections leave.
local node, lastseen = ARGV[2], ARGV[3]
local set = P .. ':node:' .. node
for _, entry in ipairs(redis.call('SMEMBERS', set)) do
  leave_entry(entry, lastseen)
end
redis.call('DEL', set)
redis.call('ZREM', P .. ':nodes', node)
return 1
