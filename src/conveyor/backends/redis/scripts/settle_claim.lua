-- settle and/or claim, in one atomic step (the worker's hot path).
-- ARGV[3] lease_until, ARGV[4] limit (0: settle only), ARGV[5] token nonce, ARGV[6] the
-- caller's wake-up channel ('' if it does not listen), ARGV[7] '1' if it is registered idle,
-- ARGV[8] number of settlements, then 7 values each:
--   'A', id, token, has_data, data, state, result_expires
--   'R', id, token, ready_at, has_body, body, attempted
--   'B', id, token, reason, has_data, data, result_expires
-- then the number of queues (-1: every known queue) and their names.
-- Returns {settled flags ('1'/'0' per settlement), earliest (see common), then six values per
-- delivery: id, queue, body, score, delivery_count, token}.
local UNTIL = ARGV[3]
local LIMIT = tonumber(ARGV[4])
local NONCE = ARGV[5]
local ME = ARGV[6]
local REGISTERED = ARGV[7] == '1'
local woken = {}

local function settle(kind, id, token, a, b, c, d)
  local mk = P .. 'm:' .. id
  local m = redis.call('HMGET', mk, 't', 'q', 'p', 's', 'dead', 'k', 'kr')
  if m[1] ~= token or m[5] then
    return '0'
  end
  local q, score, seq = m[2], m[3], m[4]
  -- Leased, or back among the ready ones if its lease ran out and nobody claimed it since.
  if redis.call('ZREM', P .. 'l:' .. q, id) == 0 then
    redis.call('ZREM', P .. 'r:' .. q, seq .. id)
  end
  if kind == 'A' then
    redis.call('DEL', mk)
    release_key(id, m[6], m[7])
    if a == '1' then
      store_result(id, c, true, b, d)
    else -- nothing to store; what an earlier run of the id stored goes
      redis.call('DEL', P .. 'res:' .. id)
    end
  elseif kind == 'R' then
    redis.call('HDEL', mk, 't', 'l')
    if b == '1' then
      redis.call('HSET', mk, 'b', c)
    end
    if d == '1' then -- an attempt: to the back of the line
      seq = next_seq()
      redis.call('HSET', mk, 'r', a, 's', seq)
    else -- never started: un-count the claim, keep the place
      local count = tonumber(redis.call('HGET', mk, 'c'))
      redis.call('HSET', mk, 'r', a, 'c', math.max(0, count - 1))
    end
    schedule(q, score, seq, id, a, woken)
  else
    redis.call('HDEL', mk, 't', 'l')
    redis.call('HSET', mk, 'dead', '1', 'why', a, 'da', NOW_S)
    redis.call('ZADD', P .. 'dead', NOW_S, seq .. id)
    release_key(id, m[6], m[7])
    store_result(id, 'FAILURE', b == '1', c, d)
  end
  return '1'
end

local flags = {}
local i = 9
for j = 1, tonumber(ARGV[8]) do
  flags[j] = settle(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
    ARGV[i + 6])
  i = i + 7
end
local out = { table.concat(flags), '' }

if LIMIT > 0 then
  local queues, named
  local nq = tonumber(ARGV[i])
  if nq < 0 then
    queues = redis.call('SMEMBERS', P .. 'queues')
  else
    queues = {}
    for j = 1, nq do
      queues[j] = ARGV[i + j]
    end
    named = queues
  end
  -- Lazy upkeep: due delayed messages and expired leases become ready (an expired lease
  -- keeps its token until a claim takes the message, so a slow holder may still settle).
  for _, q in ipairs(queues) do
    local rk = P .. 'r:' .. q
    for _, src in ipairs({ P .. 'd:' .. q, P .. 'l:' .. q }) do
      local due = redis.call('ZRANGEBYSCORE', src, '-inf', NOW_S, 'LIMIT', 0, PROMOTE_MAX)
      if #due > 0 then
        for _, id in ipairs(due) do
          local h = redis.call('HMGET', P .. 'm:' .. id, 'p', 's')
          if h[1] then
            redis.call('ZADD', rk, h[1], h[2] .. id)
          end
        end
        redis.call('ZREM', src, unpack(due))
      end
    end
  end
  local picked = {}
  if #queues == 1 then
    local popped = redis.call('ZPOPMIN', P .. 'r:' .. queues[1], LIMIT)
    for j = 1, #popped, 2 do
      picked[#picked + 1] = { queues[1], popped[j] }
    end
  elseif #queues > 1 then
    -- Highest priority first across the queues, then FIFO by sequence number.
    local cands = {}
    for _, q in ipairs(queues) do
      local head = redis.call('ZRANGE', P .. 'r:' .. q, 0, LIMIT - 1, 'WITHSCORES')
      for j = 1, #head, 2 do
        cands[#cands + 1] = { q, head[j], tonumber(head[j + 1]),
          tonumber(string.sub(head[j], 1, 16), 16) }
      end
    end
    table.sort(cands, function(x, y)
      if x[3] ~= y[3] then
        return x[3] < y[3]
      end
      return x[4] < y[4]
    end)
    for j = 1, math.min(LIMIT, #cands) do
      picked[j] = cands[j]
      redis.call('ZREM', P .. 'r:' .. cands[j][1], cands[j][2])
    end
  end
  for j, pick in ipairs(picked) do
    local q = pick[1]
    local id = string.sub(pick[2], 17)
    local mk = P .. 'm:' .. id
    local token = NONCE .. j
    local count = redis.call('HINCRBY', mk, 'c', 1)
    redis.call('HSET', mk, 't', token, 'l', UNTIL)
    redis.call('ZADD', P .. 'l:' .. q, UNTIL, id)
    local h = redis.call('HMGET', mk, 'b', 'p')
    local n = #out
    out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5], out[n + 6] =
      id, q, h[1], h[2], count, token
  end
  if #picked < LIMIT then
    out[2] = earliest(queues)
  end
  local lists = idle_lists(named, ME)
  if #picked == 0 then
    register_idle(lists, ME)
  elseif REGISTERED then
    for _, lk in ipairs(lists) do
      redis.call('LREM', lk, 0, ME)
    end
  end
end
wake(woken)
return out
