-- KEYS: the channel's presence keys. ARGV: pub/sub command, name, node, lease ms, mine
-- (1: the node has connections here), reap (1 or 0), lastSeen for the reaped, at most
-- how many to reap (REAP_BATCH), frames.LUA_PIECES. Renews the node's lease on its
-- connections here and reaps those of dead nodes and expired HTTP leases, per channel
-- as Centrifugo's presence TTL does. Returns 0 when the node has connections here
-- whose lease had run out or was lost (it puts them back), else 1.
local K = presence_keys()
local name, node, lease, mine = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local had = 1
if mine == '1' then
  local now = now_ms()
  local until_ms = redis.call('ZSCORE', K.nodes, node)
  if not until_ms or tonumber(until_ms) < now then
    had = 0
  end
  redis.call('ZADD', K.nodes, now + lease, node)
end
if ARGV[6] == '1' then
  reap(K, name, ARGV[7], tonumber(ARGV[8]))
end
return had
