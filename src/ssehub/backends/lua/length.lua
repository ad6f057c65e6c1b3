-- KEYS: stream, index. ARGV: maxlen, ttl_ms. Drops expired events; returns the stream's length.
local stream, index = KEYS[1], KEYS[2]
local maxlen, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
trim(stream, index, maxlen, string.format('%d-0', now - ttl))
return redis.call('XLEN', stream)
