-- KEYS: stream, index. ARGV: last_event_id, maxlen, ttl_ms. Returns {found, entries}.
local stream, index = KEYS[1], KEYS[2]
local last, maxlen, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if ttl > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  trim(stream, index, maxlen, string.format('%d-0', now - ttl))
end
local sid = redis.call('HGET', index, last)
if sid then
  if #redis.call('XRANGE', stream, sid, sid) == 0 then sid = nil end
elseif string.match(last, '^%d+%-%d+$') then
  local got = redis.pcall('XRANGE', stream, last, last)
  if type(got) == 'table' and #got == 1 then
    sid = last
    local fields = got[1][2]
    for j = 1, #fields, 2 do
      if fields[j] == 'u' then sid = nil end
    end
  end
end
if sid then return {1, redis.call('XRANGE', stream, '(' .. sid, '+')} end
local entries = redis.call('XRANGE', stream, '-', '+')
if redis.call('HGET', index, '\n') == last then return {1, entries} end
return {0, entries}
