-- ARGV: prefix, ck, name, conn, user, head (frames.member_head, with the identity's
-- name and colour), status, meta, its json_key, now, node ('' for a lease), lease ms,
-- the identity's name (JSON) and colour (JSON or ''), frames.LUA_PIECES. Returns the
-- member, whether the user just joined, and its connection ids.
local ck, name, conn, user = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local profile, status, meta, sorted_meta = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local now, node, lease = ARGV[10], ARGV[11], ARGV[12]
local own_name, own_color = ARGV[13], ARGV[14]
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
      local wire = chosen_wire(tp, user)
      chosen = cjson.decode(chosen)
      -- Chosen before pwire was kept: encoded here, once (cjson escapes `/`).
      local name_json = wire[1] or (chosen.name and cjson.encode(chosen.name)) or own_name
      local color_json = wire[2] or (chosen.color and cjson.encode(chosen.color)) or own_color
      profile = with_shown(profile, shown_piece(name_json, color_json))
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
