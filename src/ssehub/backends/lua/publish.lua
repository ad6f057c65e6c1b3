-- KEYS: stream, index. ARGV: channel, maxlen, ttl_ms (0: none), feed, body, head, uid, has_uid.
-- XADD, exact trim, PUBLISH on the feed, atomically; returns the stream id.
local stream, index = KEYS[1], KEYS[2]
local channel, maxlen, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local feed, body, head, uid, has_uid = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8] == '1'
local sid
if has_uid then
  sid = redis.call('XADD', stream, '*', 'b', body, 'h', head, 'u', uid)
  if maxlen > 0 then redis.call('HSET', index, uid, sid) end
else
  sid = redis.call('XADD', stream, '*', 'b', body, 'h', head)
end
local minid = nil
if ttl > 0 then
  local ms = tonumber(string.match(sid, '^(%d+)'))
  minid = string.format('%d-0', ms - ttl)
end
trim(stream, index, maxlen, minid)
if ttl > 0 then
  redis.call('PEXPIRE', stream, ttl)
  redis.call('PEXPIRE', index, ttl)
end
local sse = sid
local ulen = -1
if has_uid then sse = uid; ulen = #uid end
redis.call('PUBLISH', feed, sid .. ' ' .. #channel .. ' ' .. ulen .. '\n' .. channel
  .. (has_uid and uid or '') .. head .. 'id: ' .. sse .. '\n' .. body)
return sid
