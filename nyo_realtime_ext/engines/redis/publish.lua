-- KEYS: meta, hist, ps. ARGV: pub/sub command, a fresh epoch, history size, ttl, head,
-- skip, now, the newest (epoch, seq) of the channel the publishing node has seen, and
-- tail. The frame is head .. id .. tail (frames.message_pieces).
local meta, hist, ps = KEYS[1], KEYS[2], KEYS[3]
local fresh, keep, ttl, head, skip, ts = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local seen_epoch, seen_seq, tail = ARGV[8], tonumber(ARGV[9]), ARGV[10]
local epoch, seq = next_seq(meta, hist, fresh, seen_epoch, seen_seq)
-- t: last use, for the collection of idle channels; lm: the last message's seq (state
-- writes take seqs too, so it is not always `seq`).
redis.call('HSET', meta, 't', ts, 'lm', seq)
local id = epoch .. '-' .. seq
local frame = head .. id .. tail
if keep > 0 then
  -- cut: the highest seq of a message no longer in history. The seqs of messages have
  -- gaps (state writes), so what XADD trims is looked at before it does.
  local over = redis.call('XLEN', hist) - keep + 1
  if over > 0 then
    local trimmed = redis.call('XRANGE', hist, '-', '+', 'COUNT', over)
    local last = trimmed[#trimmed][1]
    redis.call('HSET', meta, 'cut', string.sub(last, 3))
  end
  redis.call('XADD', hist, 'MAXLEN', keep, '0-' .. seq, 'f', frame, 't', ts)
  redis.call('EXPIRE', hist, ttl)
else
  redis.call('HSET', meta, 'cut', seq)
end
redis.call(PUB, ps, 'm ' .. epoch .. ' ' .. seq .. ' ' .. skip .. '\n' .. frame)
return id
