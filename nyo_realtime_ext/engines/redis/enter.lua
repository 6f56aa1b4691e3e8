-- KEYS: the user's profile, the user's channels (keys.Keys.profile). ARGV: pub/sub
-- command, channel name. Before a join: the channel is noted among the user's (so that
-- a profile change from now on reaches it), then what the user chose is read, with its
-- version; join.lua shows it, or a newer change that reached the channel meanwhile.
redis.call('HSET', KEYS[2], ARGV[2], now_ms())
return redis.call('HMGET', KEYS[1], 'j', 'v')
