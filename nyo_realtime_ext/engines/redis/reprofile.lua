-- KEYS: the channel's presence keys. ARGV: pub/sub command, name, user, profile
-- version, the shown piece (frames.shown_piece of the effective name and colour),
-- frames.LUA_PIECES. Shows a profile change on one channel: one `presence:updated` if
-- what the member shows changed; an older version than the one shown changes nothing.
-- Returns 1 if the user is a member here, else 0 (and the change is kept a while in
-- pend for a join under way, which read the profile before it changed).
local K = presence_keys()
local name, user, version, shown = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local users = K.users
local head = redis.call('HGET', users, 'p:' .. user)
if not head then
  local pending = redis.call('HGET', K.pend, user)
  if not pending or tonumber(string.sub(pending, 1, string.find(pending, ' ', 1, true) - 1)) < version then
    redis.call('HSET', K.pend, user, version .. ' ' .. shown)
  end
  redis.call('PEXPIRE', K.pend, 60000) -- a join takes far less (POOL_WAIT at most)
  return 0
end
if tonumber(redis.call('HGET', users, 'v:' .. user) or '0') >= version then
  return 1
end
redis.call('HSET', users, 'v:' .. user, version)
local s, e = shown_bounds(head)
if s and e and string.sub(head, s, e - 1) ~= shown then
  redis.call('HSET', users, 'p:' .. user, with_shown(head, shown))
  local member = member_json(users, user, #conns_of(users, user))
  event(K, name, 'presence:updated', member, '-')
end
return 1
