"""The shared rate gate's two Lua scripts (private; see :mod:`fto_async.redisgate`).

Both run atomically on the Redis server, on its own clock (``TIME``). The state of one
account is a hash (``tat``, the adaptive ``dec_rate``/``dec_at``/``est``, the UTC ``day``
and its ``count``, the ``epoch`` that tells a restarted Redis apart) and a short list of
``time:successes`` entries. Every float travels as a string: Redis would truncate Lua
numbers in a reply to integers, and ``tostring`` keeps only 14 digits.
"""

from __future__ import annotations

__all__ = ["ACQUIRE_LUA", "THROTTLE_LUA"]

_DECREASE = 0.7  # the rate's factor on a new throttling episode (as the local gate)
_PROBE = 0.05  # of qps, per second: the slow climb above the estimate
_STATE_TTL_MS = 48 * 3600 * 1000  # the hash outlives a UTC day of idleness
_LOG_TTL_MS = 10_000  # the success log only matters for the last second

# The current adaptive rate, as a function of Redis time (shared by both scripts).
# Reads: f_dec_rate, f_dec_at, f_est; ceiling, floor, qps, recovery; now.
_RATE_LUA = """
local function current_rate(dec_rate, dec_at, est, ceiling, floor_, qps, recovery, now)
  if not dec_at then return ceiling end
  local e = now - dec_at
  local r
  if est > floor_ then
    r = dec_rate + (est - floor_) * e / recovery
    if r >= est then
      local e1 = (est - dec_rate) * recovery / (est - floor_)
      r = est + qps * @PROBE@ * (e - e1)
    end
  else
    r = est + qps * @PROBE@ * e
  end
  return math.min(ceiling, math.max(floor_, r))
end
""".replace("@PROBE@", repr(_PROBE))

# KEYS: state hash, success log. ARGV: ceiling, tau, floor, qps, recovery, horizon,
# daily_limit (0: none), my_epoch ('' before the first grant), my_calls_today, unsynced,
# log_cap, successes (answers without 67200002 since this process's last request).
# Returns {status, a, now, epoch, count, rate, healed}: status 1 = granted (a = send
# time), 0 = wait (a = seconds), 2 = daily limit reached; healed = the stored ``tat`` that
# lay beyond any time a grant could set (reset to now), else ''. Floats travel as strings (Redis
# would truncate Lua numbers to integers).
ACQUIRE_LUA = (
    _RATE_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ceiling, tau, floor_ = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local qps, recovery, horizon = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local limit, my_epoch = tonumber(ARGV[7]), ARGV[8]
local mine, unsynced, cap = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local ok = tonumber(ARGV[12])
if ok > 0 then
  redis.call('LPUSH', KEYS[2], string.format('%.6f:%d', now, ok))
  redis.call('LTRIM', KEYS[2], 0, cap - 1)
  redis.call('PEXPIRE', KEYS[2], @LOGTTL@)
end
local f = redis.call('HMGET', KEYS[1], 'tat', 'dec_rate', 'dec_at', 'est', 'day', 'count',
                     'epoch')
local tat = tonumber(f[1]) or 0
local healed = ''
if tat ~= tat or tat > now + horizon + tau + 1 / floor_ + 2 then
  -- beyond any time a grant could have set (far future, inf, nan): heal, and say so
  healed, tat = string.format('%.6f', tat), now
end
local day = math.floor(now / 86400)
local count = 0
if tonumber(f[5]) == day then count = tonumber(f[6]) or 0 end
local epoch = f[7]
if not epoch then
  epoch = string.format('%.6f', now)
  if my_epoch ~= '' then
    -- Redis lost the account's state (a restart): the gateway may still hold calls.
    tat = math.max(tat, now + 1 + tau)
  end
end
if my_epoch ~= '' and epoch ~= my_epoch then
  count = count + mine  -- this process's calls of the day, lost with the old state
elseif unsynced > 0 then
  count = count + unsynced  -- calls admitted by the local fallback
end
local rate = current_rate(tonumber(f[2]), tonumber(f[3]), tonumber(f[4]),
                          ceiling, floor_, qps, recovery, now)
local status, a = 1, 0
local allow = math.max(now, tat - tau)
if limit > 0 and count >= limit then
  status = 2
elseif allow - now > horizon then
  status, a = 0, allow - now - horizon
else
  a = allow
  tat = math.max(tat, allow) + 1 / rate
  count = count + 1
end
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat), 'day', day, 'count', count,
           'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], """
    + str(_STATE_TTL_MS)
    + """)
return {status, string.format('%.6f', a), string.format('%.6f', now), epoch, count,
        string.format('%.6f', rate), healed}
"""
)

# KEYS: state hash, success log. ARGV: sent_at, ceiling, tau, floor, qps, recovery,
# headroom, successes (not yet reported), log_cap.
# Returns the new rate as a string, or '' when the answer belongs to a known episode.
THROTTLE_LUA = (
    _RATE_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sent_at, ceiling, tau = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local floor_, qps, recovery = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local headroom, ok, cap = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
if ok > 0 then
  redis.call('LPUSH', KEYS[2], string.format('%.6f:%d', now, ok))
  redis.call('LTRIM', KEYS[2], 0, cap - 1)
  redis.call('PEXPIRE', KEYS[2], @LOGTTL@)
end
local f = redis.call('HMGET', KEYS[1], 'tat', 'dec_rate', 'dec_at', 'est')
local dec_at = tonumber(f[3])
if dec_at and sent_at <= dec_at + 1 then return '' end
local rate = current_rate(tonumber(f[2]), dec_at, tonumber(f[4]),
                          ceiling, floor_, qps, recovery, now)
local share, oldest = 0, nil
for _, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local x, n = string.match(v, '^([^:]+):(%d+)$')
  x = tonumber(x)
  if x and x > now - 1 then
    share = share + tonumber(n)
    if not oldest or x < oldest then oldest = x end
  end
end
local est = math.max(floor_, math.min(ceiling, share * headroom))
local new = math.max(floor_, math.min(rate * """
    + str(_DECREASE)
    + """, est))
local tat = tonumber(f[1]) or 0
if oldest then tat = math.max(tat, oldest + 1 + tau) end
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat), 'dec_rate',
           string.format('%.6f', new), 'dec_at', string.format('%.6f', now),
           'est', string.format('%.6f', est))
redis.call('PEXPIRE', KEYS[1], """
    + str(_STATE_TTL_MS)
    + """)
return string.format('%.6f', new)
"""
)

ACQUIRE_LUA = ACQUIRE_LUA.replace("@LOGTTL@", str(_LOG_TTL_MS))
THROTTLE_LUA = THROTTLE_LUA.replace("@LOGTTL@", str(_LOG_TTL_MS))
