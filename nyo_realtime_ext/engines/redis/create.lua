-- KEYS: the tenant's channels and created (keys.Keys.registry). ARGV: pub/sub command,
-- name, record, creator ('' = none). Returns 1 and the record when it was stored, else
-- 0 and the record that was there.
local channels, created = KEYS[1], KEYS[2]
local name, record, creator = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HSETNX', channels, name, record) == 0 then
  return {0, redis.call('HGET', channels, name)}
end
if creator ~= '' then
  redis.call('HINCRBY', created, creator, 1)
end
return {1, record}
