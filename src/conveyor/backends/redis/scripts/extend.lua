-- extend: ARGV[3] lease_until, then (id, token) pairs. Returns the tokens still held.
local UNTIL = ARGV[3]
local held = {}
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local mk = P .. 'm:' .. id
  local m = redis.call('HMGET', mk, 't', 'q', 's', 'dead')
  if m[1] == token and not m[4] then
    redis.call('HSET', mk, 'l', UNTIL)
    -- Its lease may have run out and a claim may have put it back among the ready ones.
    if redis.call('ZADD', P .. 'l:' .. m[2], UNTIL, id) == 1 then
      redis.call('ZREM', P .. 'r:' .. m[2], m[3] .. id)
    end
    held[#held + 1] = token
  end
end
return held
