-- KEYS: stream, index. ARGV: channel, maxlen, ttl_ms (0: none), feed, body, head, uid, has_uid,
-- new_epoch. XADD, exact trim, PUBLISH on the feed, atomically; returns {stream id, duplicate,
-- epoch}. A uid still in the retained history is a duplicate: nothing is stored or published.
-- The channel's epoch (index field "\ne", see head.lua) is made when its stream is.
local stream, index = KEYS[1], KEYS[2]
local channel, maxlen, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local feed, body, head, uid, has_uid = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8] == '1'
local epoch = ''
if maxlen > 0 then
  if ttl > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    trim(stream, index, maxlen, string.format('%d-0', now - ttl))
  end
  epoch = redis.call('HGET', index, '\ne')
  if not epoch then
    -- A stream older than epochs keeps the empty one; a new stream starts a new epoch.
    epoch = ''
    if redis.call('EXISTS', stream) == 0 then epoch = ARGV[9] end
    redis.call('HSET', index, '\ne', epoch)
  end
  if has_uid then
    local known = redis.call('HGET', index, uid)
    if known and #redis.call('XRANGE', stream, known, known) == 1 then
      return {known, 1, epoch}
    end
  end
end
local fields = {'b', body, 'h', head}
if has_uid then fields[#fields + 1] = 'u'; fields[#fields + 1] = uid end
if epoch ~= '' then fields[#fields + 1] = 'e'; fields[#fields + 1] = epoch end
local sid = redis.call('XADD', stream, '*', unpack(fields))
if has_uid and maxlen > 0 then redis.call('HSET', index, uid, sid) end
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
redis.call('PUBLISH', feed, sid .. ' ' .. #channel .. ' ' .. ulen .. ' ' .. #epoch .. '\n'
  .. channel .. (has_uid and uid or '') .. epoch .. head .. 'id: ' .. sse .. '\n' .. body)
return {sid, 0, epoch}
