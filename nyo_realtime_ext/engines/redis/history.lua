-- KEYS: meta, hist. ARGV: pub/sub command, mode ('latest' or 'after'), since epoch
-- ('' = current), since seq, limit, max bytes (-1 = no bound), not before (ms). The
-- stream holds at most history_size entries; only what is returned leaves Redis.
-- Returns epoch, last seq, whether `since` is known, the entries, more, and ('after')
-- whether none is missing.
local meta, hist = KEYS[1], KEYS[2]
local mode, since_epoch, since_seq = ARGV[2], ARGV[3], tonumber(ARGV[4])
local limit, budget, not_before = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local m = redis.call('HMGET', meta, 'epoch', 'seq', 'cut', 'lm')
local epoch, last = m[1] or '', tonumber(m[2] or '0')
-- The highest seq of a message no longer in history (publish.lua keeps it as the
-- stream is trimmed; a stream expired whole took every message with it; and entries
-- older than the ttl are gone though still there): `since` before it misses some.
local cut = tonumber(m[3] or '0')
if redis.call('EXISTS', hist) == 0 then
  cut = math.max(cut, tonumber(m[4] or '0'))
end
-- Entries in the order given, up to `limit` and `budget` (the first always);
-- and 1 when some that qualify were left out.
local function take(entries)
  local kept, used = {}, 0
  for _, entry in ipairs(entries) do
    local fields = entry[2] -- 'f', frame, 't', ts
    if tonumber(fields[4]) < not_before then
      cut = math.max(cut, tonumber(string.sub(entry[1], 3)))
    else
      if #kept >= limit or (#kept > 0 and budget >= 0 and used + #fields[2] > budget) then
        return kept, 1
      end
      used = used + #fields[2]
      table.insert(kept, entry)
    end
  end
  return kept, 0
end
if mode == 'latest' then
  local kept, more = take(redis.call('XREVRANGE', hist, '+', '-'))
  return {epoch, last, 1, kept, more}
end
local known = 0
local after = 0
if (since_epoch == '' or since_epoch == epoch) and since_seq <= last then
  known, after = 1, since_seq
end
local kept, more = take(redis.call('XRANGE', hist, '(0-' .. after, '+'))
local complete = 0
if known == 1 and cut <= after then
  complete = 1
end
return {epoch, last, known, kept, more, complete}
