-- ARGV: prefix, node, lease ms, reap (1 or 0), lastSeen for the reaped, at most how
-- many entries to reap (REAP_BATCH; a dead node with more finishes next time),
-- frames.LUA_PIECES. Returns
-- whether this node's lease was still there (0 after it was reaped or Redis lost it).
local node, lease, reap, lastseen = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local nodes = P .. ':nodes'
local now = now_ms()
local had = redis.call('ZSCORE', nodes, node) and 1 or 0
redis.call('ZADD', nodes, now + lease, node)
if reap == '1' then
  local budget = tonumber(ARGV[6])
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', now, 'LIMIT', 0, 10)) do
    local set = P .. ':node:' .. dead
    for _, entry in ipairs(redis.call('SPOP', set, budget)) do
      leave_entry(entry, lastseen)
      budget = budget - 1
    end
    if redis.call('SCARD', set) == 0 then
      redis.call('ZREM', nodes, dead)
    end
  end
  for _, entry in ipairs(redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, budget)) do
    redis.call('ZREM', P .. ':leases', entry)
    leave_entry(entry, lastseen)
  end
end
return had
