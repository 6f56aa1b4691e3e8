-- KEYS: meta, state (keys.Keys.snapshot). A channel's shared state (state.lua's hash)
-- and its position in the sequence, read in one step: the position says which writes
-- the snapshot holds. Returns epoch, seq, the hash's fields and values.
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
return {m[1] or '', tonumber(m[2] or '0'), redis.call('HGETALL', KEYS[2])}
