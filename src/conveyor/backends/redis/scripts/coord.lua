-- locks and counters. ARGV[3] operation, ARGV[4] key, then:
--   lock owner until  -> 1 taken or renewed, 0 held by another
--   unlock owner      -> 1 released, 0 not the owner
--   incr by until     -> the new value (a window that ran out starts again at 0)
--   read key...       -> key, value, ... of the live counters among the keys (ARGV[4] on)
--   incrs (key by until)... -> 0: `incr` for each triple (from ARGV[4] on), in one script
local op, key = ARGV[3], ARGV[4]
if op == 'lock' then
  local lk = P .. 'lock:' .. key
  local owner, expires = ARGV[5], ARGV[6]
  local held = redis.call('HMGET', lk, 'o', 'x')
  if held[1] and held[1] ~= owner and tonumber(held[2]) > NOW then
    return 0
  end
  redis.call('HSET', lk, 'o', owner, 'x', expires)
  redis.call('ZADD', P .. 'exp', expires, 'L' .. key)
  return 1
elseif op == 'unlock' then
  local lk = P .. 'lock:' .. key
  if redis.call('HGET', lk, 'o') ~= ARGV[5] then
    return 0
  end
  redis.call('DEL', lk)
  redis.call('ZREM', P .. 'exp', 'L' .. key)
  return 1
elseif op == 'incr' or op == 'incrs' then
  local function incr(k, by, expires)
    local ck = P .. 'ctr:' .. k
    local x = redis.call('HGET', ck, 'x')
    if not x or tonumber(x) <= NOW then
      redis.call('HSET', ck, 'v', 0, 'x', expires)
      redis.call('ZADD', P .. 'exp', expires, 'c' .. k)
    end
    return redis.call('HINCRBY', ck, 'v', by)
  end
  if op == 'incr' then
    return incr(key, ARGV[5], ARGV[6])
  end
  for i = 4, #ARGV, 3 do
    incr(ARGV[i], ARGV[i + 1], ARGV[i + 2])
  end
  return 0
elseif op == 'read' then
  local out = {}
  for i = 4, #ARGV do
    local held = redis.call('HMGET', P .. 'ctr:' .. ARGV[i], 'v', 'x')
    if held[1] and tonumber(held[2]) > NOW then
      out[#out + 1] = ARGV[i]
      out[#out + 1] = held[1]
    end
  end
  return out
end
return redis.error_reply('unknown operation ' .. tostring(op))
