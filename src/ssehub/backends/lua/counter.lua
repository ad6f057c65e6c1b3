-- KEYS: counter. ARGV: floor. Returns the counter (the g of the newest event published), raised
-- to `floor` first when it is below: a hub's feed calls it when it (re)connects, with the newest
-- g it has seen, so that a Redis that lost the counter (restarted from an older snapshot, or
-- empty) does not hand out again a g that hubs and clients already hold.
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if value < floor then
  redis.call('SET', KEYS[1], string.format('%d', floor))
  value = floor
end
return value
