-- KEYS: the channel's presence keys. ARGV: pub/sub command, name, user, now, status
-- ('' = unchanged), meta and its json_key ('' = unchanged), frames.LUA_PIECES. Returns
-- the member and its connection ids when something changed: meta compares by its
-- json_key, as the memory engine by same_json.
local K = presence_keys()
local name, user, now = ARGV[2], ARGV[3], ARGV[4]
local status, meta, sorted_meta = ARGV[5], ARGV[6], ARGV[7]
local users = K.users
local old = redis.call('HMGET', users, 'p:' .. user, 's:' .. user, 'k:' .. user)
if not old[1] then
  return nil
end
local changed = false
if status ~= '' and status ~= old[2] then
  redis.call('HSET', users, 's:' .. user, status)
  changed = true
end
if meta ~= '' and sorted_meta ~= old[3] then
  redis.call('HSET', users, 'm:' .. user, meta, 'k:' .. user, sorted_meta)
  changed = true
end
redis.call('HSET', users, 'l:' .. user, now)
if not changed then
  return nil
end
local conns = conns_of(users, user)
local member = member_json(users, user, #conns)
event(K, name, 'presence:updated', member, '-')
return {member, conns}
