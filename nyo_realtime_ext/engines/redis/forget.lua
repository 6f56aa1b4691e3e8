-- KEYS: the user's profile, the user's channels. ARGV: pub/sub command, then pairs of
-- channel name and the stamp profile.lua saw. Forgets the channels a profile change
-- found the user gone from, unless entered again since (the stamp changed) or lately
-- (a join may be under way: its member is not there yet).
local chans, now = KEYS[2], now_ms()
for i = 2, #ARGV - 1, 2 do
  local stamp = redis.call('HGET', chans, ARGV[i])
  if stamp == ARGV[i + 1] and now - tonumber(stamp) > 60000 then
    redis.call('HDEL', chans, ARGV[i])
  end
end
return 1
