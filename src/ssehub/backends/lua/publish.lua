-- KEYS: stream_1, index_1, ..., stream_n, index_n, counter. ARGV: maxlen, ttl_ms (0: none),
-- feed, body, head, uid, has_uid, new_epoch, private, floor, expire_ms (0: keys kept forever),
-- the feed's command (PUBLISH, or SPUBLISH on a Cluster), channel_1, ..., channel_n.
-- One event to n channels: XADD (the same stream id in every stream), exact trim, PUBLISH on the
-- feed, atomically; returns the stream id, with ' dup' after it for a duplicate (one bulk
-- string: a broadcast parses 10,000 of them). A uid still in
-- the retained history of any of the channels is a duplicate: nothing is stored or published.
-- Each channel's epoch (index field "\ne", see head.lua) is made when its stream is.
--
-- The stream id is "<ms>-<g>": g is the prefix's counter (INCR, never below `floor`, the
-- newest g the publishing hub has seen, so that a Redis that lost the counter does not hand
-- out a number twice to a hub that saw it), ms is Redis's clock. g orders events across every
-- channel (the feed carries them in that order too), and is the last item of their position.
-- On a Cluster, every key (and the feed, a shard channel) is in one slot: see redis.py.
local n = (#KEYS - 1) / 2
local counter = KEYS[#KEYS]
local maxlen, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local feed, body, head, uid, has_uid = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7] == '1'
local fresh, private, floor = ARGV[8], ARGV[9] == '1', tonumber(ARGV[10])
local expire, fan_out = tonumber(ARGV[11]), ARGV[12]
if fan_out ~= 'SPUBLISH' then fan_out = 'PUBLISH' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epochs = {}
for i = 1, n do epochs[i] = '' end
if maxlen > 0 then
  for i = 1, n do
    local stream, index = KEYS[2 * i - 1], KEYS[2 * i]
    if ttl > 0 then trim(stream, index, maxlen, string.format('%d-0', now - ttl)) end
    local epoch = redis.call('HGET', index, '\ne')
    if not epoch then
      -- A stream older than epochs keeps the empty one; a new stream starts a new epoch.
      epoch = ''
      if redis.call('EXISTS', stream) == 0 then epoch = fresh end
      redis.call('HSET', index, '\ne', epoch)
    end
    epochs[i] = epoch
  end
  if has_uid then
    for i = 1, n do
      local known = redis.call('HGET', KEYS[2 * i], uid)
      if known and #redis.call('XRANGE', KEYS[2 * i - 1], known, known) == 1 then
        return known .. ' dup'
      end
    end
  end
end
local g = redis.call('INCR', counter)
if g <= floor then
  g = floor + 1
  redis.call('SET', counter, string.format('%d', g))
end
local ms = now
local sid = string.format('%d-%d', ms, g)
if maxlen > 0 then
  -- The entry's fields; each channel's epoch is put last ('e'), replaced from one to the next.
  local fields = {'b', body, 'h', head}
  if has_uid then fields[#fields + 1] = 'u'; fields[#fields + 1] = uid end
  if private then fields[#fields + 1] = 'p'; fields[#fields + 1] = '1' end
  local base = #fields
  local function with_epoch(epoch)
    if epoch == '' then
      fields[base + 1] = nil; fields[base + 2] = nil
    else
      fields[base + 1] = 'e'; fields[base + 2] = epoch
    end
    return fields
  end
  for i = 1, n do
    local got = redis.pcall('XADD', KEYS[2 * i - 1], sid, unpack(with_epoch(epochs[i])))
    if type(got) == 'table' and got.err then
      -- A stream's last id is not below ms-g: Redis's clock went back, or the counter did. Take
      -- the next id above every target stream's last one, and append it everywhere again.
      for j = 1, n do
        local info = redis.pcall('XINFO', 'STREAM', KEYS[2 * j - 1])
        if type(info) == 'table' and not info.err then
          for k = 1, #info, 2 do
            if info[k] == 'last-generated-id' then
              local lms, lseq = string.match(info[k + 1], '^(%d+)-(%d+)$')
              lms, lseq = tonumber(lms), tonumber(lseq)
              if lms > ms then ms = lms end
              if lseq >= g then g = lseq + 1 end
            end
          end
        end
      end
      if g > tonumber(redis.call('GET', counter)) then
        redis.call('SET', counter, string.format('%d', g))
      end
      for j = 1, i - 1 do redis.call('XDEL', KEYS[2 * j - 1], sid) end
      sid = string.format('%d-%d', ms, g)
      for j = 1, n do
        redis.call('XADD', KEYS[2 * j - 1], sid, unpack(with_epoch(epochs[j])))
      end
      break
    end
  end
  local minid = nil
  if ttl > 0 then minid = string.format('%d-0', ms - ttl) end
  for i = 1, n do
    local stream, index = KEYS[2 * i - 1], KEYS[2 * i]
    if has_uid then redis.call('HSET', index, uid, sid) end
    trim(stream, index, maxlen, minid)
    if expire > 0 then
      -- An idle channel's keys go `expire` ms after its last publish (bounded keys).
      redis.call('PEXPIRE', stream, expire)
      redis.call('PEXPIRE', index, expire)
    end
  end
end
local sse = sid
local ulen = -1
if has_uid then sse = uid; ulen = #uid end
local event = head .. 'id: ' .. sse .. '\n' .. body
if n == 1 and not private then
  -- The one-channel header, as before: "<sid> <channel len> <uid len> <epoch len>\n".
  redis.call(fan_out, feed, sid .. ' ' .. #ARGV[13] .. ' ' .. ulen .. ' ' .. #epochs[1] .. '\n'
    .. ARGV[13] .. (has_uid and uid or '') .. epochs[1] .. event)
else
  -- "<sid> <uid len> <private> <channel len> <epoch len>...\n", then each channel and its
  -- epoch, the uid and the event.
  local header = {sid, ulen, private and 1 or 0}
  local names = {}
  for i = 1, n do
    header[#header + 1] = #ARGV[12 + i]
    header[#header + 1] = #epochs[i]
    names[#names + 1] = ARGV[12 + i] .. epochs[i]
  end
  redis.call(fan_out, feed, table.concat(header, ' ') .. '\n' .. table.concat(names)
    .. (has_uid and uid or '') .. event)
end
return sid
