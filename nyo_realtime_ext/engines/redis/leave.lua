-- ARGV: prefix, ck, name, conn, user, now, node ('' for a lease), frames.LUA_PIECES
local ck, name, conn, user, now, node = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local entry = cjson.encode({ck, name, conn, user})
if node == '' then
  redis.call('ZREM', P .. ':leases', entry)
else
  redis.call('SREM', P .. ':node:' .. node, entry)
end
return leave(ck, name, conn, user, now)
