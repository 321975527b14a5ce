-- enqueue: ARGV[3..] = 7 values per message: id, queue, body, score (-priority), ready_at,
-- dedup ('' for none, else 'k' .. key), retention. Returns, per message, the id holding its
-- dedup key (its own when written). An id that exists (queued, running or dead) is left as is.
local out, woken, seen = {}, {}, {}
for i = 3, #ARGV, 7 do
  local id, q, body, score, ready_at, dedup, retention =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local holder, key, kk
  if dedup ~= '' then
    key = string.sub(dedup, 2)
    kk = P .. 'k:' .. key
    local held = redis.call('HMGET', kk, 'id', 'x')
    if held[1] and (not held[2] or tonumber(held[2]) > NOW) then
      holder = held[1]
    end
  end
  if not holder then
    holder = id
    local mk = P .. 'm:' .. id
    if redis.call('EXISTS', mk) == 0 then
      local seq = next_seq()
      if key then
        redis.call('HSET', mk, 'q', q, 'b', body, 'p', score, 'r', ready_at, 's', seq, 'c', 0,
          'k', key, 'kr', retention)
        redis.call('DEL', kk)
        redis.call('HSET', kk, 'id', id)
      else
        redis.call('HSET', mk, 'q', q, 'b', body, 'p', score, 'r', ready_at, 's', seq, 'c', 0)
      end
      redis.call('DEL', P .. 'res:' .. id) -- a new run of an id replaces its old result
      if not seen[q] then
        seen[q] = true
        redis.call('SADD', P .. 'queues', q)
      end
      schedule(q, score, seq, id, ready_at, woken)
    end
  end
  out[#out + 1] = holder
end
wake(woken)
return out
