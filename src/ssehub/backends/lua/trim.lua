-- Removes the oldest entries of a stream beyond `maxlen`, and those older than `minid`, keeping
-- the user-id index in step and remembering the SSE id of the newest event removed (a client
-- resuming from exactly that event has missed nothing). The index field "\n" can never be a
-- user id: ids may not contain LF (nor can "\ne", the channel's epoch, or "\nt", the stream id of
-- that newest event removed, whose g tells a resume across channels whether the channel lost an
-- event it was owed). Put before each of the other scripts, with `sid_after` and `g_of`.

-- Whether stream id `a` comes after stream id `b` ('' comes before every id).
local function sid_after(a, b)
  if a == '' then return false end
  if b == '' then return true end
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  if ams ~= bms then return ams > bms end
  return tonumber(aseq) > tonumber(bseq)
end
-- The g of stream id `sid` (its sequence part: the prefix's counter when the event was
-- published), or nil for '' or another shape.
local function g_of(sid)
  local g = string.match(sid or '', '^%d+-(%d+)$')
  if g then return tonumber(g) end
  return nil
end
local function trim(stream, index, maxlen, minid)
  local len = redis.call('XLEN', stream)
  local removed = {}
  if len > maxlen then
    removed = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - maxlen)
  end
  if minid then
    local old = redis.call('XRANGE', stream, '-', '(' .. minid)
    if #old > #removed then removed = old end
  end
  if #removed == 0 then return end
  local ids = {}
  for i, entry in ipairs(removed) do
    local sid, fields, uid = entry[1], entry[2], nil
    for j = 1, #fields, 2 do
      if fields[j] == 'u' then uid = fields[j + 1] end
    end
    if uid and redis.call('HGET', index, uid) == sid then redis.call('HDEL', index, uid) end
    if i == #removed and maxlen > 0 then
      redis.call('HSET', index, '\n', uid or sid, '\nt', sid)
    end
    ids[#ids + 1] = sid
    if #ids == 500 then redis.call('XDEL', stream, unpack(ids)); ids = {} end
  end
  if #ids > 0 then redis.call('XDEL', stream, unpack(ids)) end
end
