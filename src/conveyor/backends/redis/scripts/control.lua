-- progress reports and revocation. ARGV[3] the operation, then:
--   progress id token data      -> 1 stored, 0 not the holder (fenced like a settle)
--   revoke terminate data result_expires id... -> per id '1' revoked or marked, '0' not
--   revoked id...                -> per id its mark: '' none, '1' revoked, '2' to be stopped
-- Message fields (see common): pg progress data, pt the token that stored it, pu when;
-- rv the revoke mark. They live in the message hash, so they go with it.
local op = ARGV[3]
if op == 'progress' then
  local mk = P .. 'm:' .. ARGV[4]
  local m = redis.call('HMGET', mk, 't', 'dead')
  if m[1] ~= ARGV[5] or m[2] then
    return 0
  end
  redis.call('HSET', mk, 'pg', ARGV[6], 'pt', ARGV[5], 'pu', NOW_S)
  return 1
elseif op == 'revoke' then
  local mark, data, expires = ARGV[4], ARGV[5], ARGV[6]
  local out = {}
  for i = 7, #ARGV do
    local id = ARGV[i]
    local mk = P .. 'm:' .. id
    local m = redis.call('HMGET', mk, 'q', 's', 't', 'l', 'dead', 'k', 'kr', 'rv')
    if not m[1] or m[5] then
      out[#out + 1] = '0'
    elseif m[3] and tonumber(m[4]) > NOW then -- running: mark it for its worker
      if not m[8] or m[8] < mark then
        redis.call('HSET', mk, 'rv', mark)
      end
      out[#out + 1] = '1'
    else -- waiting (ready, delayed, or a lease that ran out): it never runs (again)
      local q = m[1]
      redis.call('ZREM', P .. 'r:' .. q, m[2] .. id)
      redis.call('ZREM', P .. 'd:' .. q, id)
      redis.call('ZREM', P .. 'l:' .. q, id)
      redis.call('DEL', mk)
      release_key(id, m[6], m[7])
      store_result(id, 'REVOKED', true, data, expires)
      out[#out + 1] = '1'
    end
  end
  return out
elseif op == 'revoked' then
  local out = {}
  for i = 4, #ARGV do
    local m = redis.call('HMGET', P .. 'm:' .. ARGV[i], 'rv', 'dead')
    if m[1] and not m[2] then
      out[#out + 1] = m[1]
    else
      out[#out + 1] = ''
    end
  end
  return out
end
return redis.error_reply('unknown operation ' .. tostring(op))
