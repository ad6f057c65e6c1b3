-- KEYS: stream, index. ARGV: last_event_id, start (a g; -1: every entry; -2: none unless the id
-- is placed here), fixed ('1': read after `start`, do not place the id), private ('1': private
-- entries too), maxlen, ttl_ms.
-- One channel's part of a resume across channels (RedisBackend.replay_selected). Returns
-- {anchor sid ('' when the id is not placed here), anchor of the current epoch (1/0), g of the
-- newest entry trimmed away (-1: none), g up to which the channel may have lost events (-1),
-- stream exists (1/0), Redis time in ms, the g after which entries were read (-2: none read),
-- entries}. Entries are in g order within a stream, so those after a g are a suffix, read from
-- the end.
local stream, index = KEYS[1], KEYS[2]
local last, start, fixed = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local private, maxlen, ttl = ARGV[4] == '1', tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ttl > 0 then trim(stream, index, maxlen, string.format('%d-0', now - ttl)) end
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end
local epoch = redis.call('HGET', index, '\ne') or ''
local anchor, current = '', 0
if not fixed then
  local entry = nil
  local indexed = redis.call('HGET', index, last)
  if indexed then
    local got = redis.call('XRANGE', stream, indexed, indexed)
    if #got == 1 then entry = got[1] end
  elseif string.match(last, '^%d+%-%d+$') then
    local got = redis.pcall('XRANGE', stream, last, last)
    if type(got) == 'table' and #got == 1 and not field(got[1][2], 'u') then entry = got[1] end
  end
  if entry then
    anchor = entry[1]
    if (field(entry[2], 'e') or '') == epoch then current = 1 end
  elseif redis.call('HGET', index, '\n') == last then
    -- The newest event trimmed away: the client has every event of this channel before it.
    anchor = redis.call('HGET', index, '\nt') or last
    current = 1
  end
  local g = g_of(anchor)
  if g then start = g else anchor = '' end
end
local trimmed = -1
local newest_trimmed = redis.call('HGET', index, '\nt') or redis.call('HGET', index, '\n')
if newest_trimmed then
  -- An index older than "\nt" may hold a user id there: its g is unknown, count it as lost.
  trimmed = g_of(newest_trimmed) or 4503599627370496
end
local regressed = tonumber(redis.call('HGET', index, '\neg') or '-1')
local entries = {}
if start == -1 then
  entries = redis.call('XRANGE', stream, '-', '+')
elseif start >= 0 then
  local upper = '+'
  local reversed = {}
  while true do
    local page = redis.call('XREVRANGE', stream, upper, '-', 'COUNT', 100)
    local done = #page < 100
    for _, entry in ipairs(page) do
      if (g_of(entry[1]) or 0) <= start then done = true; break end
      reversed[#reversed + 1] = entry
    end
    if done then break end
    upper = '(' .. page[#page][1]
  end
  for i = #reversed, 1, -1 do entries[#entries + 1] = reversed[i] end
end
if not private then
  local public = {}
  for _, entry in ipairs(entries) do
    if field(entry[2], 'p') ~= '1' then public[#public + 1] = entry end
  end
  entries = public
end
return {anchor, current, trimmed, regressed, redis.call('EXISTS', stream), now, start, entries}
