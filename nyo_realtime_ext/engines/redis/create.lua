-- ARGV: prefix, tenant part, name, record, creator ('' = none). Returns 1 and the
-- record when it was stored, else 0 and the record that was there.
local tp, name, record, creator = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local channels = P .. ':channels:' .. tp
if redis.call('HSETNX', channels, name, record) == 0 then
  return {0, redis.call('HGET', channels, name)}
end
if creator ~= '' then
  redis.call('HINCRBY', P .. ':created:' .. tp, creator, 1)
end
return {1, record}
