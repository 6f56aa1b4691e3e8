-- KEYS: the channel's state hash. ARGV: prefix, ck, name, not used since (seconds). Forgets the channel if it is
-- still idle: ownerless, nobody present, no message nor presence since then. The
-- check and the deletion are one step, so a publish or join that lands while a node
-- collects is either seen here (the channel stays) or comes after it (and makes the
-- channel anew). Returns 1 when the channel went.
local ck, name, before = ARGV[2], ARGV[3], tonumber(ARGV[4])
local tp = tenant_part(ck, name)
local channels = P .. ':channels:' .. tp
local raw = redis.call('HGET', channels, name)
if not raw then
  return 0
end
local record = cjson.decode(raw)
if record.owner ~= cjson.null then
  return 0
end
-- A user's fields stay in `users` while any connection of theirs is on the channel.
if redis.call('HLEN', key('users', ck)) > 0 then
  return 0
end
local last = redis.call('HGET', key('meta', ck), 't') -- the last message, ms
if last then
  last = tonumber(last) / 1000
else
  last = record.createdAt
end
if last >= before then
  return 0
end
-- Someone who left lately used it too (as the embedded engine counts them).
for _, member in ipairs(redis.call('HVALS', key('gone', ck))) do
  if cjson.decode(member).lastSeen / 1000 >= before then
    return 0
  end
end
redis.call('HDEL', channels, name)
redis.call('DEL', key('meta', ck), key('hist', ck), key('users', ck), key('conns', ck), key('gone', ck))
redis.call('DEL', KEYS[1]) -- its shared state (state.lua), whose key comes in KEYS
if record.createdBy and record.createdBy ~= cjson.null then
  redis.call('HINCRBY', P .. ':created:' .. tp, record.createdBy, -1)
end
return 1
