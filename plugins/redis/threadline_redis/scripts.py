"""The Lua scripts every write (and the multi-key reads) run as, one atomic step each.

Redis runs a script alone: nothing interleaves between its reads and writes, so a seq
or a version taken with ``HINCRBY`` inside one can never collide or skip, in any number
of processes, and a write either happens whole or (refused after its checks) not at all.
Every script gets ``ARGV[1]`` the key prefix, ``ARGV[2]`` now in ms since the epoch and
``ARGV[3]`` now as a time key (:func:`threadline_redis.codec.time_key`); the rest is its own.
Scripts name their keys from the prefix, so the store needs one Redis (not a cluster).

The key layout is described in the README (section "Data layout").
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

_PRELUDE = r"""
local P, NOW, NOWK = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local GRACE = 86400000
local FIELDS = {'t', 'us', 'ag', 'row', 'c', 'u', 'exp'}
local ROLES = {'system', 'user', 'assistant', 'tool'}

local function skey(sid) return P .. ':s:' .. sid end

-- the session exists (for tenant, when given) and has not expired
local function alive(sid, tenant)
  local t, exp = unpack(redis.call('HMGET', skey(sid), 't', 'exp'))
  if not t then return false end
  if exp and tonumber(exp) <= NOW then return false end
  return tenant == nil or t == tenant
end

local function bulky(sid)
  local keys = {P .. ':m:' .. sid, P .. ':c:' .. sid, P .. ':k:' .. sid,
                P .. ':a:' .. sid, P .. ':ab:' .. sid}
  for _, role in ipairs(ROLES) do keys[#keys + 1] = P .. ':r:' .. sid .. ':' .. role end
  return keys
end

local function index_keys(t, us, ag, fk)
  local keys = {P .. ':t:' .. t .. ':s'}
  if us and us ~= '' then keys[#keys + 1] = P .. ':t:' .. t .. ':u:' .. us .. ':s' end
  if ag and ag ~= '' then keys[#keys + 1] = P .. ':t:' .. t .. ':a:' .. ag .. ':s' end
  -- the forks of session fk (metadata forked_from.session_id)
  if fk and fk ~= '' then keys[#keys + 1] = P .. ':t:' .. t .. ':f:' .. fk .. ':s' end
  return keys
end

-- record fk as the session's origin (forked_from), moving its entry in the forks indexes
local function set_fork(sid, tenant, fk)
  local was, u = unpack(redis.call('HMGET', skey(sid), 'fk', 'u'))
  if (was or '') == fk then return end
  local base = P .. ':t:' .. tenant .. ':f:'
  if was and was ~= '' then redis.call('ZREM', base .. was .. ':s', u .. sid) end
  if fk ~= '' then redis.call('ZADD', base .. fk .. ':s', 0, u .. sid) end
  redis.call('HSET', skey(sid), 'fk', fk)
end

local function set_updated(sid, newu)
  local s = skey(sid)
  local t, us, ag, u, fk = unpack(redis.call('HMGET', s, 't', 'us', 'ag', 'u', 'fk'))
  for _, key in ipairs(index_keys(t, us, ag, fk)) do
    redis.call('ZREM', key, u .. sid)
    redis.call('ZADD', key, 0, newu .. sid)
  end
  redis.call('HSET', s, 'u', newu)
end

-- a session with a TTL lives ttl ms from now; its keys outlive that by a grace period
local function refresh(sid)
  local s = skey(sid)
  local ttl = redis.call('HGET', s, 'ttl')
  if not ttl then return end
  ttl = tonumber(ttl)
  redis.call('HSET', s, 'exp', NOW + ttl)
  redis.call('ZADD', P .. ':exp', NOW + ttl, sid)
  redis.call('PEXPIRE', s, ttl + 2 * GRACE)
  for _, key in ipairs(bulky(sid)) do redis.call('PEXPIRE', key, ttl + GRACE) end
end

-- activity: updated_at moves to now (never back) and the TTL starts again
local function touch(sid)
  local u = redis.call('HGET', skey(sid), 'u')
  if u and NOWK > u then set_updated(sid, NOWK) end
  refresh(sid)
end

local function hdel_all(key, fields)
  for i = 1, #fields, 1000 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 999, #fields)))
  end
end

-- remove a session with everything in it and every index entry naming it
local function drop(sid)
  local s = skey(sid)
  local t, us, ag, u, c, fk = unpack(redis.call('HMGET', s, 't', 'us', 'ag', 'u', 'c', 'fk'))
  if not t then return false end
  local m = P .. ':m:' .. sid
  local n = redis.call('ZCARD', m)
  for i = 0, n - 1, 1000 do
    local ids = {}
    for j, member in ipairs(redis.call('ZRANGE', m, i, i + 999)) do
      ids[j] = string.sub(member, 3, 38)
    end
    if #ids > 0 then hdel_all(P .. ':mi', ids) end
  end
  local checkpoints = redis.call('ZRANGE', P .. ':c:' .. sid, 0, -1)
  if #checkpoints > 0 then hdel_all(P .. ':ck', checkpoints) end
  local calls = {}
  for j, member in ipairs(redis.call('ZRANGE', P .. ':a:' .. sid, 0, -1)) do
    calls[j] = string.sub(member, 19)
  end
  if #calls > 0 then hdel_all(P .. ':ac', calls) end
  for _, key in ipairs(index_keys(t, us, ag, fk)) do redis.call('ZREM', key, u .. sid) end
  redis.call('ZREM', P .. ':t:' .. t .. ':c', c .. sid)
  redis.call('ZREM', P .. ':exp', sid)
  redis.call('DEL', s, unpack(bulky(sid)))
  local base = P .. ':t:' .. t
  if redis.call('ZCARD', base .. ':c') == 0 and redis.call('HLEN', base .. ':codes') == 0
     and redis.call('SCARD', base .. ':prov') == 0 then
    redis.call('SREM', P .. ':tenants', t)
  end
  return true
end

-- an id index entry whose session is gone or expired no longer holds the id
local function held(owner)
  if alive(owner, nil) then return true end
  if redis.call('EXISTS', skey(owner)) == 1 then drop(owner) end
  return false
end

-- a checkpoint's record (its fields too when full), then with chain its ancestors back to
-- the snapshot (record, depth and tag only): header, id, fields or '', record each
local function walk(k, cid, chain, out)
  local full = true
  while cid do
    local h, c, r
    if full then
      h, c, r = unpack(redis.call('HMGET', k, 'h:' .. cid, 'c:' .. cid, 'r:' .. cid))
    else
      h, r = unpack(redis.call('HMGET', k, 'h:' .. cid, 'r:' .. cid))
      c = ''
    end
    if not h then return out end
    out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = h, cid, c, r
    local depth, parent = string.match(h, '^(%S+) %S+ (%S+)')
    if not chain or depth == '0' or parent == '-' then return out end
    cid, full = parent, false
  end
  return out
end

local function session_row(sid)
  return redis.call('HMGET', skey(sid), unpack(FIELDS))
end
"""

_BODIES: dict[str, str] = {}

_BODIES["create_session"] = r"""
local tenant, sid, us, ag, row, ck, uk, ttl, fk =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local s = skey(sid)
local t = redis.call('HGET', s, 't')
if t then
  if alive(sid, nil) then
    if t ~= tenant then return {'conflict'} end
    return {'ok', unpack(session_row(sid))}
  end
  drop(sid)
end
redis.call('HSET', s, 't', tenant, 'us', us, 'ag', ag, 'row', row, 'c', ck, 'u', uk,
           'seq', 0, 'ver', 0)
if ttl ~= '' then redis.call('HSET', s, 'ttl', ttl) end
if fk ~= '' then redis.call('HSET', s, 'fk', fk) end
for _, key in ipairs(index_keys(tenant, us, ag, fk)) do redis.call('ZADD', key, 0, uk .. sid) end
redis.call('ZADD', P .. ':t:' .. tenant .. ':c', 0, ck .. sid)
redis.call('SADD', P .. ':tenants', tenant)
redis.call('HSETNX', P .. ':meta', 'schema', '2')
refresh(sid)
return {'ok', unpack(session_row(sid))}
"""

_BODIES["list_sessions"] = r"""
local key, want, offset, limit = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local start = ARGV[8]  -- '+', or '(' .. the cursor's member: keyset paging
local wantu = ARGV[9]  -- a user, when the key is not the user's index
local out, skipped, pos, found = {}, 0, 0, 0
while found < limit do
  local page = redis.call('ZRANGE', key, start, '-', 'BYLEX', 'REV', 'LIMIT', pos, 200)
  for _, member in ipairs(page) do
    local sid = string.sub(member, 19)
    local row = session_row(sid)
    if not row[1] then
      redis.call('ZREM', key, member)  -- its session expired out of Redis
      pos = pos - 1
    elseif (row[7] and tonumber(row[7]) <= NOW) or (want ~= '' and row[3] ~= want)
           or (wantu ~= '' and row[2] ~= wantu) then
      -- expired (the sweep removes it) or another agent's or user's
    elseif skipped < offset then
      skipped = skipped + 1
    elseif found < limit then
      found = found + 1
      out[#out + 1] = sid
      for i = 1, 7 do out[#out + 1] = row[i] end
    end
  end
  if #page < 200 then break end
  pos = pos + 200
end
return out
"""

_BODIES["replace_session"] = r"""
local tenant, sid, row, uk, fk = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if not alive(sid, tenant) then return {} end
set_fork(sid, tenant, fk)  -- the metadata may name another origin
redis.call('HSET', skey(sid), 'row', row)
if redis.call('HGET', skey(sid), 'u') ~= uk then set_updated(sid, uk) end
refresh(sid)
return session_row(sid)
"""

_BODIES["delete_session"] = r"""
local tenant, sid = ARGV[4], ARGV[5]
if redis.call('HGET', skey(sid), 't') ~= tenant then return 0 end
local live = alive(sid, tenant)
drop(sid)
return live and 1 or 0
"""

_BODIES["sweep"] = r"""
local due = redis.call('ZRANGEBYSCORE', P .. ':exp', '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[4]))
for _, sid in ipairs(due) do
  if not alive(sid, nil) then drop(sid) end
  redis.call('ZREM', P .. ':exp', sid)
  local exp = redis.call('HGET', skey(sid), 'exp')
  if exp then redis.call('ZADD', P .. ':exp', exp, sid) end
end
return #due
"""

_BODIES["list_tenants"] = r"""
local out = {}
for _, t in ipairs(redis.call('SMEMBERS', P .. ':tenants')) do
  local base = P .. ':t:' .. t
  if redis.call('ZCARD', base .. ':s') > 0 or redis.call('HLEN', base .. ':codes') > 0
     or redis.call('SCARD', base .. ':prov') > 0 then
    out[#out + 1] = t
  else
    redis.call('SREM', P .. ':tenants', t)
  end
end
return out
"""

_BODIES["save_messages"] = r"""
local tenant, sid, n = ARGV[4], ARGV[5], tonumber(ARGV[6])
if not alive(sid, tenant) then return {'nf'} end
local mi, m = P .. ':mi', P .. ':m:' .. sid
local out, fresh = {'ok'}, {}
for i = 1, n do
  local id = ARGV[4 + 3 * i]
  local at = redis.call('HGET', mi, id)
  local stored = false
  if at then
    local seq, owner = string.match(at, '^(%d+):(.+)$')
    if owner == sid then
      stored = redis.call('ZRANGE', m, seq, seq, 'BYSCORE')[1]
      if stored then out[2 * i], out[2 * i + 1] = seq, stored end
    elseif held(owner) then
      return {'conflict', id}
    end
  end
  if not stored then fresh[#fresh + 1] = i end
end
local s = skey(sid)
for _, i in ipairs(fresh) do
  local id, role, member = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  local seq = redis.call('HINCRBY', s, 'seq', 1)
  redis.call('ZADD', m, seq, member)
  redis.call('ZADD', P .. ':r:' .. sid .. ':' .. role, seq, seq)
  redis.call('HSET', mi, id, seq .. ':' .. sid)
  out[2 * i], out[2 * i + 1] = seq, ''
end
if #fresh > 0 then touch(sid) end
return out
"""

_BODIES["read_messages"] = r"""
local tenant, sid, after, before, limit, rev, role =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9] == '1', ARGV[10]
if not alive(sid, tenant) then return {} end
local m = P .. ':m:' .. sid
local lo, hi = '(' .. after, before == '' and '+inf' or '(' .. before
local function range(key, scores)
  local a = rev and {key, hi, lo, 'BYSCORE', 'REV'} or {key, lo, hi, 'BYSCORE'}
  if limit ~= '' then a[#a + 1], a[#a + 2], a[#a + 3] = 'LIMIT', 0, limit end
  if scores then a[#a + 1] = 'WITHSCORES' end
  return redis.call('ZRANGE', unpack(a))
end
if role == '' then return range(m, true) end
local out = {}
for _, seq in ipairs(range(P .. ':r:' .. sid .. ':' .. role, false)) do
  out[#out + 1] = redis.call('ZRANGE', m, seq, seq, 'BYSCORE')[1]
  out[#out + 1] = seq
end
return out
"""

_BODIES["rewrite_messages"] = r"""
-- ARGV: tenant, n, activity ('1'/'0'), only_streaming ('1'/'0'), (id, new tail) * n
local tenant, n, activity, streaming = ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1', ARGV[7] == '1'
local mi, found = P .. ':mi', {}
for i = 1, n do
  local id = ARGV[6 + 2 * i]
  local at = redis.call('HGET', mi, id)
  local seq, owner
  if at then seq, owner = string.match(at, '^(%d+):(.+)$') end
  if not owner or not alive(owner, tenant) then return {'nf', id} end
  found[i] = {seq, owner}
end
local touched, count = {}, 0
for i = 1, n do
  local seq, owner = found[i][1], found[i][2]
  local m = P .. ':m:' .. owner
  local old = redis.call('ZRANGE', m, seq, seq, 'BYSCORE')[1]
  local cut = string.find(old, '\n', 1, true)
  -- the stored status is the tail's third value (decoded only to read it)
  if not streaming or cjson.decode(string.sub(old, cut + 1))[3] == 'streaming' then
    redis.call('ZREMRANGEBYSCORE', m, seq, seq)
    redis.call('ZADD', m, seq, string.sub(old, 1, cut) .. ARGV[7 + 2 * i])
    touched[owner] = true
    count = count + 1
  end
end
if activity then
  for owner in pairs(touched) do touch(owner) end
end
return {'ok', count}
"""

_BODIES["delete_messages"] = r"""
local tenant, sid, after = ARGV[4], ARGV[5], ARGV[6]
if not alive(sid, tenant) then return 0 end
local m, ids = P .. ':m:' .. sid, {}
local doomed = redis.call('ZRANGE', m, '(' .. after, '+inf', 'BYSCORE', 'WITHSCORES')
for i = 1, #doomed, 2 do
  local member, seq = doomed[i], doomed[i + 1]
  ids[#ids + 1] = string.sub(member, 3, 38)
  local role = string.match(member, '^%["[^"]*","(%a+)"')
  redis.call('ZREMRANGEBYSCORE', P .. ':r:' .. sid .. ':' .. role, seq, seq)
end
if #ids == 0 then return 0 end
hdel_all(P .. ':mi', ids)
redis.call('ZREMRANGEBYSCORE', m, '(' .. after, '+inf')
touch(sid)
return #ids
"""

_BODIES["insert_record"] = r"""
local tenant, sid, cid, parent, ptag, depth, tag, agent, body, record =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]
if not alive(sid, tenant) then return {'nf'} end
local k = P .. ':k:' .. sid
local owner = redis.call('HGET', P .. ':ck', cid)
if owner == sid then
  local h = redis.call('HGET', k, 'h:' .. cid)
  if h then
    return walk(k, cid, false, {'exists'})
  end
elseif owner and held(owner) then
  return {'conflict'}
end
if parent ~= '' then
  local ph = redis.call('HGET', k, 'h:' .. parent)
  if not ph then return {'noparent'} end
  if ptag ~= '' and string.match(ph, '^%S+ (%S+)') ~= ptag then return {'stale'} end
end
local ver = redis.call('HINCRBY', skey(sid), 'ver', 1)
local h = depth .. ' ' .. tag .. ' ' .. (parent == '' and '-' or parent) .. ' ' .. ver .. ' '
  .. (agent == '' and '-' or agent)
redis.call('HSET', k, 'h:' .. cid, h, 'c:' .. cid, body, 'r:' .. cid, record)
redis.call('ZADD', P .. ':c:' .. sid, ver, cid)
redis.call('HSET', P .. ':ck', cid, sid)
touch(sid)
return {'ok', h}
"""

_BODIES["read_records"] = r"""
local tenant, cid, chain = ARGV[4], ARGV[5], ARGV[6] == '1'
local sid = redis.call('HGET', P .. ':ck', cid)
if not sid or not alive(sid, tenant) then return {} end
return walk(P .. ':k:' .. sid, cid, chain, {sid})
"""

_BODIES["list_records"] = r"""
local tenant, sid, agent, latest = ARGV[4], ARGV[5], ARGV[6], ARGV[7] == '1'
if not alive(sid, tenant) then return {} end
local k, c, out = P .. ':k:' .. sid, P .. ':c:' .. sid, {}
local function wanted(h) return agent == '' or string.match(h, '(%S+)$') == agent end
if latest then  -- the newest (of the agent), then its chain
  local pos = 0
  while true do
    local page = redis.call('ZRANGE', c, pos, pos + 49, 'REV')
    for _, cid in ipairs(page) do
      if wanted(redis.call('HGET', k, 'h:' .. cid)) then return walk(k, cid, true, out) end
    end
    if #page < 50 then return out end
    pos = pos + 50
  end
end
for _, cid in ipairs(redis.call('ZRANGE', c, 0, -1)) do
  local h = redis.call('HGET', k, 'h:' .. cid)
  if wanted(h) then walk(k, cid, false, out) end
end
return out
"""

_BODIES["rewrite_records"] = r"""
-- ARGV: tenant, session, n records, m expected tags, (id depth tag record) * n,
-- (id tag) * m, then the ids to delete
local tenant, sid, n, m = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
if not alive(sid, tenant) then return -1 end
local k, count = P .. ':k:' .. sid, 0
local tags = 8 + 4 * n
if redis.call('ZCARD', P .. ':c:' .. sid) ~= m then return -2 end
for i = tags, tags + 2 * m - 1, 2 do
  local h = redis.call('HGET', k, 'h:' .. ARGV[i])
  if not h or string.match(h, '^%S+ (%S+)') ~= ARGV[i + 1] then return -2 end
end
for i = 0, n - 1 do
  local at = 8 + 4 * i
  local cid, depth, tag, record = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local h = redis.call('HGET', k, 'h:' .. cid)
  if h then
    local rest = string.match(h, '^%S+ %S+ (.*)$')
    redis.call('HSET', k, 'h:' .. cid, depth .. ' ' .. tag .. ' ' .. rest, 'r:' .. cid, record)
    count = count + 1
  end
end
for i = tags + 2 * m, #ARGV do
  local cid = ARGV[i]
  if redis.call('HDEL', k, 'h:' .. cid, 'c:' .. cid, 'r:' .. cid) > 0 then
    redis.call('ZREM', P .. ':c:' .. sid, cid)
    redis.call('HDEL', P .. ':ck', cid)
    count = count + 1
  end
end
return count
"""

_BODIES["save_call"] = r"""
local tenant, sid, id, ck, body = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if not alive(sid, tenant) then return {'nf'} end
local at = redis.call('HGET', P .. ':ac', id)
if at then
  local owner = string.match(at, '^(%S+)')
  if owner == sid then
    local stored = redis.call('HGET', P .. ':ab:' .. sid, id)
    if stored then return {'exists', stored} end
  elseif held(owner) then
    return {'conflict'}
  end
end
redis.call('HSET', P .. ':ab:' .. sid, id, body)
redis.call('ZADD', P .. ':a:' .. sid, 0, ck .. id)
redis.call('HSET', P .. ':ac', id, sid .. ' ' .. ck)
touch(sid)
return {'ok'}
"""

_BODIES["list_calls"] = r"""
local tenant, sid = ARGV[4], ARGV[5]
if not alive(sid, tenant) then return {} end
local ids = {}
for j, member in ipairs(redis.call('ZRANGE', P .. ':a:' .. sid, 0, -1)) do
  ids[j] = string.sub(member, 19)
end
if #ids == 0 then return {} end
return redis.call('HMGET', P .. ':ab:' .. sid, unpack(ids))
"""

_BODIES["delete_calls"] = r"""
local tenant, count = ARGV[4], 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local at = redis.call('HGET', P .. ':ac', id)
  if at then
    local owner, ck = string.match(at, '^(%S+) (%S+)$')
    if alive(owner, tenant) then
      redis.call('HDEL', P .. ':ab:' .. owner, id)
      redis.call('ZREM', P .. ':a:' .. owner, ck .. id)
      redis.call('HDEL', P .. ':ac', id)
      count = count + 1
    end
  end
end
return count
"""

_BODIES["save_agent"] = r"""
local tenant, aid, code, body, pid, pbody = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local own, codes = P .. ':own', P .. ':t:' .. tenant .. ':codes'
local t = redis.call('HGET', own, 'a:' .. aid)
if t and t ~= tenant then return 'agent' end
if pid ~= '' then
  local pt = redis.call('HGET', own, 'p:' .. pid)
  if pt and pt ~= tenant then return 'provider' end
end
local holder = redis.call('HGET', codes, code)
if holder and holder ~= aid then return 'code' end
local old = redis.call('HGET', P .. ':acode', aid)
if old and old ~= code then redis.call('HDEL', codes, old) end
if pid ~= '' then
  redis.call('HSET', P .. ':pr', pid, pbody)
  redis.call('HSET', own, 'p:' .. pid, tenant)
  redis.call('SADD', P .. ':t:' .. tenant .. ':prov', pid)
end
redis.call('HSET', P .. ':ag', aid, body)
redis.call('HSET', own, 'a:' .. aid, tenant)
redis.call('HSET', codes, code, aid)
redis.call('HSET', P .. ':acode', aid, code)
redis.call('SADD', P .. ':tenants', tenant)
redis.call('HSETNX', P .. ':meta', 'schema', '2')
return 'ok'
"""

_BODIES["save_provider"] = r"""
local tenant, pid, body = ARGV[4], ARGV[5], ARGV[6]
local t = redis.call('HGET', P .. ':own', 'p:' .. pid)
if t and t ~= tenant then return 'provider' end
redis.call('HSET', P .. ':pr', pid, body)
redis.call('HSET', P .. ':own', 'p:' .. pid, tenant)
redis.call('SADD', P .. ':t:' .. tenant .. ':prov', pid)
redis.call('SADD', P .. ':tenants', tenant)
redis.call('HSETNX', P .. ':meta', 'schema', '2')
return 'ok'
"""

# Layout 2 (0002_fork_index): a session written by layout 1 gets its forks index entry
# from the forked_from its metadata records (only a canonical id, as the writers index).
_BODIES["index_fork"] = r"""
local sid = ARGV[4]
local t, row = unpack(redis.call('HMGET', skey(sid), 't', 'row'))
if not t or not row then return 0 end
local fk, ok, decoded = '', pcall(cjson.decode, row)
if ok and type(decoded) == 'table' and type(decoded[2]) == 'table' then
  local origin = decoded[2]['forked_from']
  if type(origin) == 'table' and type(origin['session_id']) == 'string' then
    fk = origin['session_id']
  end
end
local hex = '[0-9a-f]'
local canonical = '^' .. string.rep(hex, 8) .. '%-' .. string.rep(hex, 4) .. '%-'
  .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 4) .. '%-' .. string.rep(hex, 12) .. '$'
if not string.match(fk, canonical) then fk = '' end
set_fork(sid, t, fk)
return fk ~= '' and 1 or 0
"""

SCRIPTS: dict[str, str] = {name: _PRELUDE + body for name, body in _BODIES.items()}
"""Each script's whole Lua source (the shared helpers, then its body)."""
