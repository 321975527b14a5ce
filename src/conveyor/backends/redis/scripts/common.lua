-- Shared head of every conveyor script (the loader puts it in front of each one).
--
-- ARGV[1] is the key prefix, ARGV[2] the caller's clock (`now`, epoch seconds). Time never
-- comes from the server: every expiry is an explicit timestamp compared with `now`.
--
-- Keys (P = "<prefix>:"):
--   P m:<id>      hash: one message. q queue, b body, p score (= -priority), r ready_at,
--                 s seq (16 hex digits), c delivery_count, t token, l lease_until,
--                 k dedup key, kr its retention, dead/why/da once buried
--   P r:<queue>   zset: ready messages, score -priority, member s..id (so FIFO on ties)
--   P d:<queue>   zset: delayed messages by ready_at, member id
--   P l:<queue>   zset: leased messages by lease_until, member id
--   P dead        zset: dead letters by died_at, member s..id
--   P res:<id>    hash: stored result. s state, d data, u updated_at, x expires_at
--   P k:<key>     hash: dedup key. id holder, x expires_at (absent while the holder lives)
--   P lock:<key>  hash: o owner, x expires_at      P ctr:<key>  hash: v value, x expires_at
--   P exp         zset: what expires when (members r<id>, k<key>, L<key>, c<key>)
--   P queues      set of queue names         P seq   counter        P workers  hash
--   P idle:<queue> list: channels of idle worker threads waiting for that queue
--   P idle        list: the same, for threads waiting for any queue (also on each list above)
--   P idlers      set of those lists' names (housekeeping drops channels nobody hears)
-- Channels: P w:<random>, one per worker thread (an enqueue pops one idle worker per ready
-- message and tells it, so one task wakes one worker, not all), and P done:<id> (a result
-- was stored; small ones travel in the message).
local P = ARGV[1] .. ':'
local NOW_S = ARGV[2]
local NOW = tonumber(NOW_S)
local PROMOTE_MAX = 1000 -- due delayed/expired messages moved to ready per queue per claim
local INLINE_MAX = 4096 -- results up to this size ride along in the wake-up message

local function fmt(x)
  return string.format('%.17g', x)
end

local function next_seq()
  return string.format('%016x', redis.call('INCR', P .. 'seq'))
end

-- Put a message that is not leased where a claim finds it: ready now, or delayed.
local function schedule(q, score, seq, id, ready_at, woken)
  if tonumber(ready_at) <= NOW then
    redis.call('ZADD', P .. 'r:' .. q, score, seq .. id)
    woken[q] = (woken[q] or 0) + 1
  else
    redis.call('ZADD', P .. 'd:' .. q, ready_at, id)
  end
end

-- Tell idle workers that work arrived: one per ready message, most recently idle first. A
-- channel nobody listens to any more (a worker gone) reaches nobody and is dropped. Workers
-- of every queue stand on each known queue's list too, so the list `P idle` is only looked
-- at for a queue that is new (`fresh`).
local function wake(woken, fresh)
  for q, n in pairs(woken) do
    local lists = { P .. 'idle:' .. q }
    if fresh and fresh[q] then
      lists[2] = P .. 'idle'
    end
    for _, lk in ipairs(lists) do
      while n > 0 do
        local ch = redis.call('LPOP', lk)
        if not ch then
          break
        end
        if redis.call('PUBLISH', ch, q) > 0 then
          n = n - 1
        end
      end
    end
  end
end

-- The idle lists a worker of `queues` (nil: every queue) stands on.
local function idle_lists(queues, me)
  if me == '' then
    return {}
  end
  local lists = {}
  if queues == nil then
    lists[1] = P .. 'idle'
    queues = redis.call('SMEMBERS', P .. 'queues')
  end
  for _, q in ipairs(queues) do
    lists[#lists + 1] = P .. 'idle:' .. q
  end
  return lists
end

-- A worker thread whose claim found nothing waits on channel `me`: enqueues may wake it.
local function register_idle(lists, me)
  for _, lk in ipairs(lists) do
    redis.call('LREM', lk, 0, me)
    redis.call('LPUSH', lk, me)
    redis.call('SADD', P .. 'idlers', lk) -- for housekeeping
  end
end

-- A settled (acked, buried, purged) message's dedup key: freed, or kept for its retention.
local function release_key(id, key, retention)
  if not key then
    return
  end
  local kk = P .. 'k:' .. key
  if redis.call('HGET', kk, 'id') ~= id then
    return
  end
  local keep = tonumber(retention) or 0
  if keep > 0 then
    local x = fmt(NOW + keep)
    redis.call('HSET', kk, 'x', x)
    redis.call('ZADD', P .. 'exp', x, 'k' .. key)
  else
    redis.call('DEL', kk)
  end
end

-- Store a result and tell whoever waits for it (small results travel in the message).
local function store_result(id, state, has_data, data, expires)
  local rk = P .. 'res:' .. id
  local note
  if has_data then
    redis.call('HSET', rk, 's', state, 'u', NOW_S, 'x', expires, 'd', data)
    if #data <= INLINE_MAX then
      note = '1' .. state .. '\n' .. NOW_S .. '\n' .. expires .. '\n' .. data
    else
      note = '2' .. state .. '\n' .. NOW_S .. '\n' .. expires .. '\n'
    end
  else
    redis.call('HDEL', rk, 'd')
    redis.call('HSET', rk, 's', state, 'u', NOW_S, 'x', expires)
    note = '0' .. state .. '\n' .. NOW_S .. '\n' .. expires .. '\n'
  end
  redis.call('ZADD', P .. 'exp', expires, 'r' .. id)
  redis.call('PUBLISH', P .. 'done:' .. id, note)
end

-- When work may next be claimable in these queues: '0' if some is ready now, else the
-- earliest ready_at / lease_until as a string, or '' when nothing waits at all.
local function earliest(queues)
  local best
  for _, q in ipairs(queues) do
    if redis.call('EXISTS', P .. 'r:' .. q) == 1 then
      return '0'
    end
    for _, src in ipairs({ P .. 'd:' .. q, P .. 'l:' .. q }) do
      local head = redis.call('ZRANGE', src, 0, 0, 'WITHSCORES')
      if head[2] then
        local t = tonumber(head[2])
        if not best or t < best then
          best = t
        end
      end
    end
  end
  if best then
    return fmt(best)
  end
  return ''
end
