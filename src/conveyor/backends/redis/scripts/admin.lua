-- administration, ARGV[3] the operation. Work that may touch many messages is done CHUNK at a
-- time (the caller repeats until a call returns 0), so Redis is never blocked for long.
local op = ARGV[3]

local function queue_list(i)
  -- ARGV[i] = number of queues (-1: every known queue), then the names. Also returns the
  -- names as given (nil for every queue).
  local n = tonumber(ARGV[i])
  if n < 0 then
    return redis.call('SMEMBERS', P .. 'queues'), nil
  end
  local qs = {}
  for j = 1, n do
    qs[j] = ARGV[i + j]
  end
  return qs, qs
end

local function forget(id)
  -- delete a waiting message (and a result of an earlier run) and settle its dedup key
  local mk = P .. 'm:' .. id
  local m = redis.call('HMGET', mk, 'k', 'kr')
  release_key(id, m[1], m[2])
  redis.call('DEL', mk, P .. 'res:' .. id)
end

if op == 'stats' then
  local out = {}
  for _, q in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
    local dk, lk = P .. 'd:' .. q, P .. 'l:' .. q
    local due = redis.call('ZCOUNT', dk, '-inf', NOW_S)
    local lost = redis.call('ZCOUNT', lk, '-inf', NOW_S)
    local n = #out
    out[n + 1] = q
    out[n + 2] = redis.call('ZCARD', P .. 'r:' .. q) + due + lost
    out[n + 3] = redis.call('ZCARD', dk) - due
    out[n + 4] = redis.call('ZCARD', lk) - lost
  end
  return out
elseif op == 'dead' then
  local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
  local out = {}
  if limit <= 0 then
    return out
  end
  for _, member in ipairs(redis.call('ZRANGE', P .. 'dead', offset, offset + limit - 1)) do
    local id = string.sub(member, 17)
    local m = redis.call('HMGET', P .. 'm:' .. id, 'q', 'b', 'why', 'da', 'c')
    local n = #out
    out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5], out[n + 6] =
      id, m[1], m[2], m[3], m[4], m[5]
  end
  return out
elseif op == 'retry' or op == 'purgedead' then
  -- ARGV[4] = 'all' (then ARGV[5] = chunk) or 'ids' (then the ids)
  local members = {}
  if ARGV[4] == 'all' then
    members = redis.call('ZRANGE', P .. 'dead', 0, tonumber(ARGV[5]) - 1)
  else
    for i = 5, #ARGV do
      local m = redis.call('HMGET', P .. 'm:' .. ARGV[i], 's', 'dead')
      if m[2] then
        members[#members + 1] = m[1] .. ARGV[i]
      end
    end
  end
  local out, woken, fresh = {}, {}, {}
  for _, member in ipairs(members) do
    local id = string.sub(member, 17)
    local mk = P .. 'm:' .. id
    -- the same id may be named twice: only the first one finds it dead
    if redis.call('ZREM', P .. 'dead', member) == 1 then
      if op == 'retry' then
        local m = redis.call('HMGET', mk, 'q', 'p')
        local seq = next_seq()
        redis.call('HDEL', mk, 'dead', 'why', 'da', 'k', 'kr', 'rv')
        redis.call('HSET', mk, 'c', 0, 'r', NOW_S, 's', seq)
        redis.call('DEL', P .. 'res:' .. id)
        if redis.call('SADD', P .. 'queues', m[1]) == 1 then
          fresh[m[1]] = true
        end
        schedule(m[1], m[2], seq, id, NOW_S, woken)
      else
        redis.call('DEL', mk)
      end
      out[#out + 1] = id
    end
  end
  wake(woken, fresh)
  return out
elseif op == 'purge' then
  -- ARGV[4] chunk, then the queue list. Waiting messages go; running ones stay.
  local chunk = tonumber(ARGV[4])
  local count = 0
  for _, q in ipairs((queue_list(5))) do
    local rk, dk, lk = P .. 'r:' .. q, P .. 'd:' .. q, P .. 'l:' .. q
    local ready = redis.call('ZRANGE', rk, 0, chunk - 1)
    for _, member in ipairs(ready) do
      forget(string.sub(member, 17))
    end
    if #ready > 0 then
      redis.call('ZREM', rk, unpack(ready))
    end
    local later = redis.call('ZRANGE', dk, 0, chunk - 1)
    local lost = redis.call('ZRANGEBYSCORE', lk, '-inf', NOW_S, 'LIMIT', 0, chunk)
    for _, pair in ipairs({ { dk, later }, { lk, lost } }) do
      for _, id in ipairs(pair[2]) do
        forget(id)
      end
      if #pair[2] > 0 then
        redis.call('ZREM', pair[1], unpack(pair[2]))
      end
    end
    count = count + #ready + #later + #lost
  end
  return count
elseif op == 'hk' then
  -- ARGV[4] chunk: drop what expired by `now`; forget queues with nothing in them.
  local kinds = { r = 'res:', k = 'k:', L = 'lock:', c = 'ctr:' }
  local due = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', NOW_S, 'LIMIT', 0, tonumber(ARGV[4]))
  for _, member in ipairs(due) do
    local key = P .. kinds[string.sub(member, 1, 1)] .. string.sub(member, 2)
    local x = redis.call('HGET', key, 'x')
    if x and tonumber(x) > NOW then
      redis.call('ZADD', P .. 'exp', x, member) -- renewed meanwhile
    else
      if x then
        redis.call('DEL', key)
      end
      redis.call('ZREM', P .. 'exp', member)
    end
  end
  if #due == 0 then
    for _, q in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
      if redis.call('EXISTS', P .. 'r:' .. q, P .. 'd:' .. q, P .. 'l:' .. q) == 0 then
        redis.call('SREM', P .. 'queues', q)
      end
    end
    -- idle workers that are gone (nobody listens on their channel any more)
    for _, lk in ipairs(redis.call('SMEMBERS', P .. 'idlers')) do
      local chans = redis.call('LRANGE', lk, 0, 999)
      if #chans > 0 then
        local subs = redis.call('PUBSUB', 'NUMSUB', unpack(chans))
        for j = 1, #subs, 2 do
          if subs[j + 1] == 0 then
            redis.call('LREM', lk, 0, subs[j])
          end
        end
      end
      if redis.call('EXISTS', lk) == 0 then
        redis.call('SREM', P .. 'idlers', lk)
      end
    end
  end
  return #due
elseif op == 'peek' then
  -- ARGV[4] the caller's wake-up channel, then the queue list: register it idle, and say
  -- when work is next due
  local queues, named = queue_list(5)
  register_idle(idle_lists(named, ARGV[4]), ARGV[4])
  return earliest(queues)
end
return redis.error_reply('unknown operation ' .. tostring(op))
