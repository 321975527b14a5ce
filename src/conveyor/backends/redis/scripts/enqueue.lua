-- enqueue: ARGV[3..] = 7 values per message: id, queue, body, score (-priority), ready_at,
-- dedup ('' for none, else 'k' .. key), retention. Returns, per message, the id holding its
-- dedup key (its own when written). An id that exists (queued, running or dead) is left as is.
-- A result of an earlier run of the id is not read while the message exists; an ack of the
-- new run overwrites it, and an ack without a result or a purge deletes it. (Deleting it here
-- would cost every enqueue a command.) The delivery count starts absent, read as 0.
local out, woken, seen, fresh = {}, {}, {}, {}
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
        redis.call('HSET', mk, 'q', q, 'b', body, 'p', score, 'r', ready_at, 's', seq,
          'k', key, 'kr', retention)
        redis.call('DEL', kk)
        redis.call('HSET', kk, 'id', id)
      else
        redis.call('HSET', mk, 'q', q, 'b', body, 'p', score, 'r', ready_at, 's', seq)
      end
      if not seen[q] then
        seen[q] = true
        fresh[q] = redis.call('SADD', P .. 'queues', q) == 1
      end
      schedule(q, score, seq, id, ready_at, woken)
    end
  end
  out[#out + 1] = holder
end
wake(woken, fresh)
return out
