-- KEYS: the tenant's channels and created. ARGV: pub/sub command, name, the record
-- collect.lua's caller read, creator ('' = none). After collect.lua forgot a channel:
-- its record goes, and its creator's count, unless the record changed meanwhile.
local channels, created = KEYS[1], KEYS[2]
local name, record, creator = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', channels, name) ~= record then
  return 0
end
redis.call('HDEL', channels, name)
if creator ~= '' then
  redis.call('HINCRBY', created, creator, -1)
end
return 1
