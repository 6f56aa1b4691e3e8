-- KEYS: meta, hist, ps. ARGV: pub/sub command, a fresh epoch, history size, ttl, head,
-- skip, now, the newest (epoch, seq) of the channel the publishing node has seen, and
-- tail. The frame is head .. id .. tail (frames.message_pieces).
local meta, hist, ps = KEYS[1], KEYS[2], KEYS[3]
local fresh, keep, ttl, head, skip, ts = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local seen_epoch, seen_seq, tail = ARGV[8], tonumber(ARGV[9]), ARGV[10]
local m = redis.call('HMGET', meta, 'epoch', 'seq')
local epoch = m[1]
if not epoch or (epoch == seen_epoch and tonumber(m[2]) < seen_seq) then
  -- The sequence is new or was lost, or it is behind ids a node has seen (Redis came
  -- back older than its last writes): a new epoch, so that no id is given twice, and
  -- no stream of the old one.
  epoch = fresh
  redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
  redis.call('DEL', hist)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('HSET', meta, 't', ts) -- last use, for the collection of idle channels
local id = epoch .. '-' .. seq
local frame = head .. id .. tail
if keep > 0 then
  redis.call('XADD', hist, 'MAXLEN', keep, '0-' .. seq, 'f', frame, 't', ts)
  redis.call('EXPIRE', hist, ttl)
end
redis.call(PUB, ps, 'm ' .. epoch .. ' ' .. seq .. ' ' .. skip .. '\n' .. frame)
return id
