-- KEYS: stream, index. ARGV: last_event_id, maxlen, ttl_ms. Returns {found, entries, epoch,
-- newest stream id ('' when the stream is empty)}: the newest id, read in the same atomic step
-- as the entries, is where the hub's feed takes over (the replay/live seam).
local stream, index = KEYS[1], KEYS[2]
local last, maxlen, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if ttl > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  trim(stream, index, maxlen, string.format('%d-0', now - ttl))
end
local epoch = redis.call('HGET', index, '\ne') or ''
local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local nsid = ''
if #newest > 0 then nsid = newest[1][1] end
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end
local sid, anchor = nil, nil
local indexed = redis.call('HGET', index, last)
if indexed then
  local got = redis.call('XRANGE', stream, indexed, indexed)
  if #got == 1 then sid = indexed; anchor = got[1][2] end
elseif string.match(last, '^%d+%-%d+$') then
  local got = redis.pcall('XRANGE', stream, last, last)
  if type(got) == 'table' and #got == 1 and not field(got[1][2], 'u') then
    sid = last
    anchor = got[1][2]
  end
end
if sid then
  local after = redis.call('XRANGE', stream, '(' .. sid, '+')
  if (field(anchor, 'e') or '') == epoch then return {1, after, epoch, nsid} end
  -- The id is from an older epoch: events after it were lost. The client is owed what follows
  -- it and everything of the current epoch (whose ids may be lower, on a clock that went back).
  local entries = {}
  if epoch ~= '' then
    for _, entry in ipairs(redis.call('XRANGE', stream, '-', sid)) do
      if field(entry[2], 'e') == epoch then entries[#entries + 1] = entry end
    end
  end
  for _, entry in ipairs(after) do entries[#entries + 1] = entry end
  return {0, entries, epoch, nsid}
end
if redis.call('HGET', index, '\n') == last then
  return {1, redis.call('XRANGE', stream, '-', '+'), epoch, nsid}
end
if string.match(last, '^%d+%-%d+$') then
  -- A stream id history does not hold: trimmed (all retained events follow it) or lost (only
  -- the events after it are new to the client).
  local after = redis.pcall('XRANGE', stream, '(' .. last, '+')
  if type(after) == 'table' then return {0, after, epoch, nsid} end
end
return {0, redis.call('XRANGE', stream, '-', '+'), epoch, nsid}
