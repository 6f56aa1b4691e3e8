-- KEYS: the channel's presence keys, meta, hist, state (keys.Keys.collect). ARGV:
-- pub/sub command, name, not used since (seconds), the record's createdAt (seconds),
-- reap (1 or 0), lastSeen for the reaped, REAP_BATCH, frames.LUA_PIECES. Forgets the
-- channel's data if it is still idle: nobody present, no message nor presence since
-- then. The check and the deletion are one step, so a publish or join that lands while
-- a node collects is either seen here (the channel stays) or comes after it (and makes
-- the channel anew). The record, on the tenant's slot, goes next (unlist.lua).
-- Returns 1 when the channel's data went.
local K = presence_keys()
local meta, hist, state = KEYS[8], KEYS[9], KEYS[10]
local name, before, created_at = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[5] == '1' then
  reap(K, name, ARGV[6], tonumber(ARGV[7]))
end
if redis.call('HLEN', K.conns) > 0 or redis.call('HLEN', K.users) > 0 then
  return 0
end
local last = redis.call('HGET', meta, 't') -- the last message, ms
if last then
  last = tonumber(last) / 1000
else
  last = created_at
end
if last >= before then
  return 0
end
-- Someone who left lately used it too (as the embedded engine counts them).
for _, member in ipairs(redis.call('HVALS', K.gone)) do
  if cjson.decode(member).lastSeen / 1000 >= before then
    return 0
  end
end
redis.call('DEL', meta, hist, K.users, K.conns, K.gone, K.nodes, K.leases, K.pend, state)
return 1
