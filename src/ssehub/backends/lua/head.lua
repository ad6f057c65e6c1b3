-- KEYS: stream, index. ARGV: known_epoch, last_sid, new_epoch, expire_ms. Returns {epoch, newest
-- sid}.
-- Called by a hub's feed after it reconnected, with the epoch and the stream id of the last
-- event it delivered. Stream ids only grow, so a newest id below the last one delivered, under
-- the same epoch, means Redis lost events it had acknowledged (say, it restarted from an older
-- snapshot): the channel then gets a new epoch, so every hub and every resuming client whose id
-- predates the loss learns of the gap. Bumped once: the next hub sees the epoch has changed.
local stream, index = KEYS[1], KEYS[2]
local known, last, fresh, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4] or '0')
local epoch = redis.call('HGET', index, '\ne') or ''
local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local nsid = ''
if #newest > 0 then nsid = newest[1][1] end
if epoch == known and last ~= '' and not sid_after(nsid, last) and nsid ~= last then
  redis.call('HSET', index, '\ne', fresh)
  epoch = fresh
end
if epoch ~= known then
  -- Events up to the last one this hub delivered may be lost: "\neg" keeps the newest such g,
  -- so that a resume across channels from an id at or before it is told about the gap.
  local lost = g_of(last)
  local marked = tonumber(redis.call('HGET', index, '\neg') or '-1')
  if lost and lost > marked then
    redis.call('HSET', index, '\neg', string.format('%d', lost))
    if ttl > 0 and redis.call('PTTL', index) == -1 then redis.call('PEXPIRE', index, ttl) end
  end
end
return {epoch, nsid}
