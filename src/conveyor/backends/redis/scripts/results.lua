-- results: ARGV[3..] ids. Returns twelve values per id: the message's ready_at,
-- delivery_count, token held ('1' or nil), lease_until, dead ('1' or nil), died_at, then the
-- stored result's state, data, updated_at, expires_at (read only when the message is not
-- live), then the progress data and its time (only when stored under the token held now).
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local m = redis.call('HMGET', P .. 'm:' .. id, 'r', 'c', 't', 'l', 'dead', 'da', 'pt', 'pg', 'pu')
  local res = { false, false, false, false }
  if not m[1] or m[5] then
    res = redis.call('HMGET', P .. 'res:' .. id, 's', 'd', 'u', 'x')
  end
  local pg, pu = false, false
  if m[3] and m[7] == m[3] and not m[5] then
    pg, pu = m[8], m[9]
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = m[1], m[2], m[3] and '1', m[4], m[5]
  out[n + 6], out[n + 7], out[n + 8], out[n + 9], out[n + 10] = m[6], res[1], res[2], res[3], res[4]
  out[n + 11], out[n + 12] = pg, pu
end
return out
