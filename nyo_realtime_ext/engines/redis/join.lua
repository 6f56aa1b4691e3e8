-- ARGV: prefix, ck, name, conn, user, profile, status, meta, its json_key, now,
-- node ('' for a lease), lease ms. Returns the member, whether the user just
-- joined, and its connection ids.
local ck, name, conn, user = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local profile, status, meta, sorted_meta = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local now, node, lease = ARGV[10], ARGV[11], ARGV[12]
local users = key('users', ck)
local entry = cjson.encode({ck, name, conn, user})
if node == '' then
  redis.call('ZADD', P .. ':leases', now_ms() + tonumber(lease), entry)
else
  redis.call('SADD', P .. ':node:' .. node, entry)
end
local joined = 0
local conns = conns_of(users, user)
if redis.call('HSETNX', key('conns', ck), conn, user) == 1 then
  table.insert(conns, conn)
  redis.call('HSET', users, 'c:' .. user, cjson.encode(conns))
  if #conns == 1 then
    joined = 1
    -- Shown with what the user chose over the identity's values, read in this same
    -- step, so that a concurrent profile change either finds the member or is seen here.
    local tp = tenant_part(ck, name)
    local chosen = redis.call('HGET', P .. ':profiles:' .. tp, user)
    if chosen then
      chosen = cjson.decode(chosen)
      local shown = cjson.decode(profile .. '}')
      shown.name = chosen.name or shown.name
      shown.color = chosen.color or shown.color
      profile = string.sub(cjson.encode(shown), 1, -2)
    end
    redis.call('HSET', users, 'p:' .. user, profile, 's:' .. user, status, 'm:' .. user, meta,
      'k:' .. user, sorted_meta)
    redis.call('HDEL', key('gone', ck), user)
    redis.call('SADD', user_channels(tp, user), name)
  end
end
redis.call('HSET', users, 'l:' .. user, now)
local member = member_json(users, user, #conns)
if joined == 1 then
  event(ck, name, 'user:joined', member, conn)
end
return {member, joined, conns}
