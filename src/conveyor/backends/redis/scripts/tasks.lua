-- tasks: read-only listings for the Inspector (the dashboard's tasks view); ARGV[3] the op.
--
-- 'messages', ARGV[4] kind (ready/scheduled/running), ARGV[5] queue ('' every queue),
-- ARGV[6] limit, ARGV[7] offset. Returns 7 values per message: id, queue, body, score
-- (-priority), ready_at, delivery_count, lease_until ('' unless running). Each queue gives its
-- first offset+limit candidates (ties on the cut-off score too), which are merged and sorted:
-- ready by (score, seq) = claim order, scheduled by (ready_at, seq), running by
-- (lease_until, seq). Ready ones are the ready zset plus due delayed messages and expired
-- leases not yet moved there by a claim (PROMOTE_MAX of each per queue, as a claim moves).
--
-- 'results', ARGV[4] state ('' any), ARGV[5] limit, ARGV[6] offset, ARGV[7] budget. Walks
-- the expiry index from the latest expiry down (ties: member, so id, descending), looking at
-- `budget` entries at most (results, dedup keys, locks and counters share it); returns 5
-- values per result whose message is gone: id, state, data, updated_at, expires_at.
--
-- 'record', ARGV[4] id: the message fields q b p r c t l dead why da s, then the result
-- fields s d u x (false where absent).
local op = ARGV[3]

if op == 'messages' then
  local kind, only = ARGV[4], ARGV[5]
  local limit, offset = tonumber(ARGV[6]), tonumber(ARGV[7])
  local n = limit + offset
  local out = {}
  if limit <= 0 then
    return out
  end
  local queues = { only }
  if only == '' then
    queues = redis.call('SMEMBERS', P .. 'queues')
  end
  local cands = {}
  local function take_scored(key, min, max)
    local got = redis.call('ZRANGEBYSCORE', key, min, max, 'WITHSCORES', 'LIMIT', 0, n)
    local last
    for j = 1, #got, 2 do
      cands[#cands + 1] = { id = got[j], key = tonumber(got[j + 1]) }
      last = got[j + 1]
    end
    if #got == 2 * n then -- members tied with the last one may come first by seq
      local ties = redis.call('ZRANGEBYSCORE', key, last, last, 'LIMIT', 0, PROMOTE_MAX)
      for _, id in ipairs(ties) do
        cands[#cands + 1] = { id = id, key = tonumber(last) }
      end
    end
  end
  for _, q in ipairs(queues) do
    if kind == 'running' then
      take_scored(P .. 'l:' .. q, '(' .. NOW_S, '+inf')
    elseif kind == 'scheduled' then
      take_scored(P .. 'd:' .. q, '(' .. NOW_S, '+inf')
    else
      local got = redis.call('ZRANGE', P .. 'r:' .. q, 0, n - 1)
      for _, member in ipairs(got) do
        cands[#cands + 1] = { id = string.sub(member, 17) }
      end
      for _, src in ipairs({ P .. 'd:' .. q, P .. 'l:' .. q }) do
        for _, id in ipairs(redis.call('ZRANGEBYSCORE', src, '-inf', NOW_S, 'LIMIT', 0,
          PROMOTE_MAX)) do
          cands[#cands + 1] = { id = id }
        end
      end
    end
  end
  local found, seen = {}, {}
  for _, c in ipairs(cands) do
    if not seen[c.id] then
      seen[c.id] = true
      local m = redis.call('HMGET', P .. 'm:' .. c.id, 'q', 'b', 'p', 'r', 'c', 'l', 's', 'dead')
      if m[1] and not m[8] then
        local key = c.key
        if kind == 'ready' then
          key = tonumber(m[3])
        end
        found[#found + 1] = { c.id, m, key }
      end
    end
  end
  table.sort(found, function(a, b)
    if a[3] ~= b[3] then
      return a[3] < b[3]
    end
    return a[2][7] < b[2][7]
  end)
  for i = offset + 1, math.min(#found, n) do
    local id, m = found[i][1], found[i][2]
    local lease = ''
    if kind == 'running' then
      lease = m[6]
    end
    local k = #out
    out[k + 1], out[k + 2], out[k + 3], out[k + 4] = id, m[1], m[2], m[3]
    out[k + 5], out[k + 6], out[k + 7] = m[4], m[5] or '0', lease
  end
  return out
elseif op == 'results' then
  local want, limit, offset = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
  local budget = tonumber(ARGV[7])
  local out = {}
  local pos, skipped, kept = 0, 0, 0
  while kept < limit and pos < budget do
    local page = redis.call('ZREVRANGEBYSCORE', P .. 'exp', '+inf', '(' .. NOW_S, 'LIMIT', pos,
      math.min(500, budget - pos))
    if #page == 0 then
      break
    end
    pos = pos + #page
    for _, member in ipairs(page) do
      if kept >= limit then
        break
      end
      if string.sub(member, 1, 1) == 'r' then
        local id = string.sub(member, 2)
        local r = redis.call('HMGET', P .. 'res:' .. id, 's', 'd', 'u', 'x')
        if r[1] and tonumber(r[4]) > NOW and (want == '' or r[1] == want)
          and redis.call('EXISTS', P .. 'm:' .. id) == 0 then
          if skipped < offset then
            skipped = skipped + 1
          else
            local k = #out
            out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5] = id, r[1], r[2], r[3], r[4]
            kept = kept + 1
          end
        end
      end
    end
  end
  return out
elseif op == 'record' then
  local id = ARGV[4]
  local m = redis.call('HMGET', P .. 'm:' .. id, 'q', 'b', 'p', 'r', 'c', 't', 'l', 'dead', 'why',
    'da', 's')
  local r = redis.call('HMGET', P .. 'res:' .. id, 's', 'd', 'u', 'x')
  local out = {}
  for i = 1, 11 do
    out[i] = m[i]
  end
  for i = 1, 4 do
    out[11 + i] = r[i]
  end
  return out
end
return redis.error_reply('unknown tasks op ' .. tostring(op))
