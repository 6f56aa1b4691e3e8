-- Shared by every script of the Redis engine (scripts.py puts it before each).
-- ARGV[1] is always the key prefix, ARGV[2] a channel's key part ("<len>:<tenant>:<name>").
--
-- Per channel: meta (hash: epoch, seq), hist (stream, ids 0-<seq>), conns (hash:
-- connection -> user), users (hash: p:<user> the member's head, frames.member_head,
-- s: status, m: meta JSON as given, k: its text for comparing (presence.json_key),
-- l: lastSeen ms, c: JSON list of the user's connection ids), gone (hash: user -> offline
-- member JSON), and the pub/sub channel ps. Per tenant ("<len>:<tenant>"): profiles
-- (hash: user -> JSON of what they chose, {"name"?, "color"?}) and pwire (hash: n:<user>,
-- c:<user>, the chosen name and colour as frames.py encoded them); per user of a tenant:
-- uch:<tenant part>:<user> (set of the channel names the user is a member of, so
-- that a profile change reaches each). Per deployment: nodes (zset: node ->
-- lease expiry ms), node:<id> (set of that node's presence entries), leases
-- (zset: HTTP presence entry -> expiry ms).
--
-- No script writes a JSON key of a frame: the pieces come from frames.py (see its
-- docstring), the values were encoded there.

local P = ARGV[1]

local function key(kind, ck)
  return P .. ':' .. kind .. ':' .. ck
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- "<len>:<tenant>" of a channel's key part "<len>:<tenant>:<name>". Cut by the name's
-- length: <len> counts characters, Lua counts bytes, and names are ASCII.
local function tenant_part(ck, name)
  return string.sub(ck, 1, #ck - #name - 1)
end

-- The set of the channels (names) the user is a member of, in the channel's tenant.
local function user_channels(tp, user)
  return P .. ':uch:' .. tp .. ':' .. user
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
local function event(ck, name, type, member, skip)
  local k = pieces()
  redis.call('PUBLISH', key('ps', ck), 'p ' .. skip .. '\n' .. k[type] .. name .. k.member
    .. member .. k.close)
end

-- What the user chose to be shown as, encoded by frames.py: per tenant, the hash
-- pwire:<tp> holds n:<user> (the chosen name, JSON) and c:<user> (the colour, JSON).
local function chosen_wire(tp, user)
  return redis.call('HMGET', P .. ':pwire:' .. tp, 'n:' .. user, 'c:' .. user)
end

-- The name-and-colour part of a member head (frames.shown_piece): the chosen
-- values over the identity's (own_name: JSON; own_color: JSON or '').
local function shown_piece(name_json, color_json)
  local k = pieces()
  if color_json and color_json ~= '' then
    return k.name .. name_json .. k.color .. color_json
  end
  return k.name .. name_json
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
local function leave(ck, name, conn, user, lastseen)
  if redis.call('HDEL', key('conns', ck), conn) == 0 then
    return nil
  end
  local users = key('users', ck)
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
  redis.call('HDEL', users, 'p:' .. user, 's:' .. user, 'm:' .. user, 'k:' .. user, 'l:' .. user, 'c:' .. user)
  redis.call('SREM', user_channels(tenant_part(ck, name), user), name)
  if member then
    redis.call('HSET', key('gone', ck), user, member)
    event(ck, name, 'user:left', member, '-')
  end
  return member
end

-- Every entry of a dead node, or an expired lease, leaves.
local function leave_entry(entry, lastseen)
  local e = cjson.decode(entry)
  return leave(e[1], e[2], e[3], e[4], lastseen)
end
