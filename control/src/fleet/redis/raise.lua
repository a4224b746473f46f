-- The flush's script: see RAISE_SCRIPT in ../redis.rs for its arguments.
local totals = KEYS[1]
redis.call('HSET', totals, 'lim', ARGV[1])
local first = redis.call('HGET', totals, 'p1')
local shared = false
local at = 4
for g = 2, #KEYS do
  local bucket_key = KEYS[g]
  local field = ARGV[at]
  local keep = tonumber(ARGV[at + 1])
  local n = tonumber(ARGV[at + 2])
  at = at + 3
  local proxies, counts = {}, {}
  for i = 1, n do
    proxies[i] = ARGV[at]
    counts[i] = tonumber(ARGV[at + 1])
    at = at + 2
  end
  if not first then
    first = proxies[1]
    redis.call('HSET', totals, 'p1', first)
  end
  local held = redis.call('HMGET', bucket_key, unpack(proxies))
  local raised, added = {}, 0
  for i = 1, n do
    if proxies[i] ~= first then
      shared = true
    end
    local was = tonumber(held[i] or '0') or 0
    if counts[i] > was then
      raised[#raised + 1] = proxies[i]
      raised[#raised + 1] = counts[i]
      added = added + counts[i] - was
    end
  end
  if #raised > 0 then
    redis.call('HSET', bucket_key, unpack(raised))
    redis.call('HINCRBY', totals, field, added)
  end
  if redis.call('PTTL', bucket_key) < keep then
    redis.call('PEXPIRE', bucket_key, keep)
  end
end
if shared then
  redis.call('HSET', totals, 'shared', '1')
end
-- Old buckets are forgotten once a key holds a few dozen more fields than its windows' buckets
-- (walking every field on every call was most of the script's time); readers skip buckets
-- outside their window anyway.
if ARGV[3] ~= '' and redis.call('HLEN', totals) > 80 then
  local below = {}
  for window, width, oldest in string.gmatch(ARGV[3], '(%d+):(%d+):(%d+)') do
    below[window .. ':' .. width] = tonumber(oldest)
  end
  for _, field in ipairs(redis.call('HKEYS', totals)) do
    local window, width, bucket = string.match(field, '^(%d+):(%d+):(%d+)$')
    if window then
      local oldest = below[window .. ':' .. width]
      if oldest and tonumber(bucket) < oldest then
        redis.call('HDEL', totals, field)
      end
    end
  end
end
if redis.call('PTTL', totals) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', totals, ARGV[2])
end
return redis.call('HGETALL', totals)
