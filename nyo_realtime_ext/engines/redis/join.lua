-- KEYS: the channel's presence keys (keys.Keys.presence); on one Redis, then the user's
-- profile and channels (keys.Keys.profile), and this script does enter.lua's step too.
-- ARGV: pub/sub command, name, conn, user, head (frames.member_head, shown as the
-- profile the node read in `enter` makes it), status, meta, its json_key, now, node (''
-- for an HTTP lease), lease ms, that profile's version, the identity's name (JSON) and
-- colour (JSON or ''), frames.LUA_PIECES. Returns the member, whether the user just
-- joined, and its connection ids.
local K = presence_keys()
local name, conn, user, head = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local status, meta, sorted_meta, now = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local node, lease, version = ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
local users = K.users
if KEYS[9] then
  -- One Redis: no slots to keep apart, so enter.lua's step is this one's (one round
  -- trip): the channel noted among the user's, and the head shown as the user chose.
  redis.call('HSET', KEYS[9], name, now_ms())
  local chosen = redis.call('HMGET', KEYS[8], 'n', 'c', 'v')
  version = tonumber(chosen[3] or '0')
  if chosen[1] or chosen[2] then
    local k = pieces()
    local color = chosen[2] or ARGV[14]
    local shown = k.name .. (chosen[1] or ARGV[13])
    if color ~= '' then
      shown = shown .. k.color .. color
    end
    head = with_shown(head, shown)
  end
end
if node == '' then
  redis.call('ZADD', K.leases, now_ms() + lease, conn)
else
  redis.call('ZADD', K.nodes, now_ms() + lease, node)
end
local joined = 0
local conns = conns_of(users, user)
if redis.call('HSETNX', K.conns, conn, cjson.encode({user, node})) == 1 then
  table.insert(conns, conn)
  redis.call('HSET', users, 'c:' .. user, cjson.encode(conns))
  if #conns == 1 then
    joined = 1
    -- A profile change that reached this channel between the node's read of the
    -- profile and now (reprofile.lua kept it here): shown if it is newer.
    local pending = redis.call('HGET', K.pend, user)
    if pending then
      local cut = string.find(pending, ' ', 1, true)
      local pending_version = tonumber(string.sub(pending, 1, cut - 1))
      if pending_version > version then
        head = with_shown(head, string.sub(pending, cut + 1))
        version = pending_version
      end
      redis.call('HDEL', K.pend, user)
    end
    redis.call('HSET', users, 'p:' .. user, head, 's:' .. user, status, 'm:' .. user, meta,
      'k:' .. user, sorted_meta, 'v:' .. user, version)
    redis.call('HDEL', K.gone, user)
  end
end
redis.call('HSET', users, 'l:' .. user, now)
local member = member_json(users, user, #conns)
if joined == 1 then
  event(K, name, 'user:joined', member, conn)
end
return {member, joined, conns}
