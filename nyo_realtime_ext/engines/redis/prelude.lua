-- Shared by every script of the Redis engine (scripts.py puts it before each).
-- Every key is in KEYS (keys.py names them and lists each script's, one hash tag per
-- script, so a script is one atomic step on one shard of a Redis Cluster); no script
-- builds a key name. ARGV[1] is always the pub/sub command: PUBLISH, or SPUBLISH on a
-- cluster with sharded pub/sub.
--
-- Per channel: meta (hash: epoch, seq, t), hist (stream, ids 0-<seq>), conns (hash:
-- connection -> JSON [user, node], node '' for an HTTP lease), users (hash: p:<user>
-- the member's head, frames.member_head, s: status, m: meta JSON as given, k: its text
-- for comparing (presence.json_key), l: lastSeen ms, c: JSON list of the user's
-- connection ids, v: the version of the profile shown), gone (hash: user -> offline
-- member JSON), nodes (zset: node -> its lease on its connections here, ms), leases
-- (zset: HTTP connection -> expiry ms), pend (hash: user -> "<version> <shown piece>",
-- a profile change that came before the user's join finished), and the pub/sub
-- channel ps.
--
-- No script writes a JSON key of a frame: the pieces come from frames.py (see its
-- docstring), the values were encoded there.

local PUB = ARGV[1]

-- The presence keys of a channel, in keys.Keys.presence's order.
local function presence_keys()
  return {conns = KEYS[1], users = KEYS[2], gone = KEYS[3], nodes = KEYS[4],
    leases = KEYS[5], pend = KEYS[6], ps = KEYS[7]}
end

-- The next (epoch, seq) of a channel (meta: epoch, seq), for a message or a state
-- write. The sequence is new or was lost, or it is behind ids a node has seen (Redis
-- came back older than its last writes, seen_epoch/seen_seq): a new epoch `fresh`, so
-- that no id is given twice, and no stream (hist) of the old one.
local function next_seq(meta, hist, fresh, seen_epoch, seen_seq)
  local m = redis.call('HMGET', meta, 'epoch', 'seq')
  local epoch = m[1]
  if not epoch or (epoch == seen_epoch and tonumber(m[2]) < seen_seq) then
    epoch = fresh
    redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
    redis.call('HDEL', meta, 'cut', 'lm')
    redis.call('DEL', hist)
  end
  return epoch, redis.call('HINCRBY', meta, 'seq', 1)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The user's connection ids on the channel (a short list: tabs, not people).
local function conns_of(users, user)
  local raw = redis.call('HGET', users, 'c:' .. user)
  if not raw then
    return {}
  end
  return cjson.decode(raw)
end

-- The pieces of frames.py that scripts join (frames.LUA_PIECES, the last ARGV of
-- every script that builds members or presence events): Lua writes no JSON key.
local pieces_cache = nil
local function pieces()
  if not pieces_cache then
    pieces_cache = cjson.decode(ARGV[#ARGV])
  end
  return pieces_cache
end

-- The member's wire JSON, assembled from its fields, or nil (frames.stored_member).
local function member_json(users, user, connections)
  local f = redis.call('HMGET', users, 'p:' .. user, 's:' .. user, 'm:' .. user, 'l:' .. user)
  if not f[1] then
    return nil
  end
  local k = pieces()
  return f[1] .. k.status .. f[2] .. k.meta .. f[3] .. k.lastSeen .. f[4]
    .. k.connections .. connections .. k.close
end

-- A presence event, on the channel's pub/sub, in order with its messages.
-- Channel names need no JSON escaping: they are [A-Za-z0-9_:.@/=+-].
local function event(K, name, type, member, skip)
  local k = pieces()
  redis.call(PUB, K.ps, 'p ' .. skip .. '\n' .. k[type] .. name .. k.member .. member .. k.close)
end

-- Where a head's name-and-colour part starts and ends (the byte after it): from its
-- name to the first of avatar_url or joinedAt, which no encoded string can contain.
local function shown_bounds(head)
  local k = pieces()
  local s = string.find(head, k.name, 1, true)
  local e = string.find(head, k.joinedAt, 1, true)
  local a = string.find(head, k.avatar, 1, true)
  if a and (not e or a < e) then
    e = a
  end
  return s, e
end

-- `head` with `shown` as its name-and-colour part.
local function with_shown(head, shown)
  local s, e = shown_bounds(head)
  if not s or not e or e < s then
    return head
  end
  return string.sub(head, 1, s - 1) .. shown .. string.sub(head, e)
end

-- Remove one connection; when it was its user's last, the user leaves:
-- one `user:left`, and an offline record. Returns the member JSON or nil.
local function leave(K, name, conn, user, lastseen)
  if redis.call('HDEL', K.conns, conn) == 0 then
    return nil
  end
  redis.call('ZREM', K.leases, conn)
  local users = K.users
  redis.call('HSET', users, 'l:' .. user, lastseen)
  local rest = {}
  for _, id in ipairs(conns_of(users, user)) do
    if id ~= conn then
      table.insert(rest, id)
    end
  end
  if #rest > 0 then
    redis.call('HSET', users, 'c:' .. user, cjson.encode(rest))
    return nil
  end
  redis.call('HSET', users, 's:' .. user, 'offline')
  local member = member_json(users, user, 0)
  redis.call('HDEL', users, 'p:' .. user, 's:' .. user, 'm:' .. user, 'k:' .. user, 'l:' .. user,
    'c:' .. user, 'v:' .. user)
  if member then
    redis.call('HSET', K.gone, user, member)
    event(K, name, 'user:left', member, '-')
  end
  return member
end

-- The connections here of nodes whose lease ran out, and expired HTTP leases, leave:
-- at most `budget` of them (the rest next time). Returns what is left of the budget.
local function reap(K, name, lastseen, budget)
  local now = now_ms()
  local dead = redis.call('ZRANGEBYSCORE', K.nodes, '-inf', '(' .. now, 'LIMIT', 0, 10)
  if #dead > 0 then
    local is_dead, unfinished = {}, {}
    for _, node in ipairs(dead) do
      is_dead[node] = true
    end
    local all = redis.call('HGETALL', K.conns)
    for i = 1, #all, 2 do
      local owner = cjson.decode(all[i + 1])
      if is_dead[owner[2]] then
        if budget > 0 then
          leave(K, name, all[i], owner[1], lastseen)
          budget = budget - 1
        else
          unfinished[owner[2]] = true
        end
      end
    end
    for _, node in ipairs(dead) do
      if not unfinished[node] then
        redis.call('ZREM', K.nodes, node)
      end
    end
  end
  if budget > 0 then
    for _, conn in ipairs(redis.call('ZRANGEBYSCORE', K.leases, '-inf', now, 'LIMIT', 0, budget)) do
      local raw = redis.call('HGET', K.conns, conn)
      redis.call('ZREM', K.leases, conn)
      if raw then
        leave(K, name, conn, cjson.decode(raw)[1], lastseen)
        budget = budget - 1
      end
    end
  end
  return budget
end
