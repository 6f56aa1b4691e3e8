-- One shared-state write: compare-and-set, limits, the channel's next seq, the entry
-- kept, state:changed published, in one step.
-- KEYS: the channel's meta (epoch, seq, as publish.lua keeps it), its history stream
-- (dropped when a new epoch starts, as publish.lua does), its state hash, its pub/sub
-- channel (keys.Keys.state). ARGV: pub/sub command, a fresh epoch, the newest (epoch, seq) the writing node has seen, now
-- (ms), the key, '1' to delete, '1' if conditional, the version asked for ('' = absent),
-- the bytes the entry counts, max keys, max bytes, max deletions kept, the entry's head
-- and tail (frames.state_pieces: entry = head .. version .. tail), the state:changed
-- frame's start.
--
-- The state hash: e:<key> the entry JSON, v:<key> its version, s:<key> the bytes it
-- counts (0: deleted, kept so that resubscribers learn of it); #keys and #bytes of
-- the live keys, #dead the deleted ones kept, #floor the version of the newest
-- deletion forgotten (past max deletions kept, they all go).
-- Returns {'ok', version}, {'conflict', entry or false} or {'limit', setting}.
local meta, hist, state, ps = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fresh, seen_epoch, seen_seq, ts = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local k, deleting, conditional, if_version = ARGV[6], ARGV[7] == '1', ARGV[8] == '1', ARGV[9]
local size, max_keys, max_bytes, max_dead = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local head, tail, start = ARGV[14], ARGV[15], ARGV[16]

local cur = redis.call('HMGET', state, 'e:' .. k, 'v:' .. k, 's:' .. k)
local had = cur[3] and tonumber(cur[3]) > 0 -- a live entry (not a deletion)
local had_dead = cur[3] and tonumber(cur[3]) == 0
if conditional then
  local now_version = ''
  if had then
    now_version = cur[2]
  end
  if now_version ~= if_version then
    return {'conflict', had and cur[1] or false}
  end
end
local t = redis.call('HMGET', state, '#keys', '#bytes', '#dead')
local keys, bytes, dead = tonumber(t[1] or '0'), tonumber(t[2] or '0'), tonumber(t[3] or '0')
local old = had and tonumber(cur[3]) or 0
if not deleting then
  if not had and keys >= max_keys then
    return {'limit', 'max_state_keys'}
  end
  if bytes - old + size > max_bytes then
    return {'limit', 'max_state_bytes'}
  end
end

-- The channel's sequence, as publish.lua numbers it.
local epoch, seq = next_seq(meta, hist, fresh, seen_epoch, seen_seq)
redis.call('HSET', meta, 't', ts)
local version = epoch .. '-' .. seq
local entry = head .. version .. tail

if had then
  keys, bytes = keys - 1, bytes - old
end
if had_dead then
  dead = dead - 1
end
if deleting then
  size, dead = 0, dead + 1
else
  keys, bytes = keys + 1, bytes + size
end
redis.call('HSET', state, 'e:' .. k, entry, 'v:' .. k, version, 's:' .. k, size)
if dead > max_dead then
  local all = redis.call('HGETALL', state)
  for i = 1, #all, 2 do
    local field = all[i]
    if string.sub(field, 1, 2) == 's:' and tonumber(all[i + 1]) == 0 then
      local name = string.sub(field, 3)
      redis.call('HDEL', state, 'e:' .. name, 'v:' .. name, 's:' .. name)
    end
  end
  dead = 0
  redis.call('HSET', state, '#floor', version)
end
redis.call('HSET', state, '#keys', keys, '#bytes', bytes, '#dead', dead)
redis.call(PUB, ps, 's ' .. epoch .. ' ' .. seq .. '\n' .. start .. string.sub(entry, 2))
return {'ok', version}
