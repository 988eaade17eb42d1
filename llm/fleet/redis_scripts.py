"""The Lua scripts of `RedisStore` (`llm.fleet.redis_store`): each store operation is one script, run atomically by
the server. Times are the server's (`TIME`, integer milliseconds), so the processes of a fleet need no synchronised
clocks.

Keys (`KEYS[n]`) are named by the caller, `{prefix}:{<backend>}:<what>`:

    rl:log         sorted set of admissions in the window, member "<id>:<tokens>", score = admission time (ms)
    rl:tokens      the tokens the log holds (kept with it, so an admission costs O(log n), not a sum over the log)
    rl:seq         the id counter
    members        sorted set of the stores (one per process and manager) that asked in the last window: the fleet
                   size, by which each process divides the limits while Redis is down
    pause          time (ms) a Retry-After pause lasts until
    breaker        hash: a `Circuit`'s fields (times in ms; until 0 = closed): until, quota, probe, opened, consec,
                   cooldown
    breaker:window hash: "s:<bucket>" / "f:<bucket>" -> successes / failures counted in that bucket

Every key expires: the window keys one window (plus 1 s) after their last write, the breaker record an hour after its
open period (or quota lockout) ends.
"""

from __future__ import annotations

from llm.health.breaker import BUCKETS

__all__ = ["RECORD_TTL_MS", "SCRIPTS"]
#: A breaker record outlives its open period by this long, then expires (an absent record means closed).
RECORD_TTL_MS = 3_600_000

# Server time in integer milliseconds, and the token count a window member ("<id>:<tokens>") carries.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function tokens_of(member) return tonumber(string.match(member, ':(%d+)$')) end
"""

# Admissions, batched: the calls that queue up while one batch is in flight go to the server together (one command,
# one reply). KEYS: window log (zset), token total, pause, id sequence, members. ARGV: this store's member id, then per
# admission: rpm, tpm, tokens, window ms (rpm/tpm 0: no such limit). Returns one answer per admission, in order:
# {granted, wait ms, reason or entry id, requests left, tokens left (-1: not limited), stores that asked through this
# backend's window in the last window}. A request above the whole TPM is refused for good ('too_large', `TOO_LARGE`).
_ADMIT = _PRELUDE + """
local members
local function admit(rpm, tpm, tokens, window)
  if tpm > 0 and tokens > tpm then return {0, 0, 'too_large', -1, -1, members} end
  local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
  if paused > now then return {0, paused - now, 'paused', -1, -1, members} end
  if rpm == 0 and tpm == 0 then return {1, 0, '', -1, -1, members} end
  local cutoff = now - window
  local total = tonumber(redis.call('GET', KEYS[2]) or '0')
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  for _, member in ipairs(old) do total = total - tokens_of(member) end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff) end
  local count = redis.call('ZCARD', KEYS[1])
  if count == 0 or total < 0 then total = 0 end
  local wait, reason = 0, ''
  if rpm > 0 and count >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], count - rpm, count - rpm, 'WITHSCORES')
    wait, reason = tonumber(oldest[2]) + window - now, 'rpm'
  end
  if tpm > 0 and total + tokens > tpm then
    local need, freed = total + tokens - tpm, 0
    local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      freed = freed + tokens_of(entries[i])
      if freed >= need then
        local w = tonumber(entries[i + 1]) + window - now
        if w > wait then wait, reason = w, 'tpm' end
        break
      end
    end
  end
  local ttl = window + 1000
  local function left(limit, used) if limit > 0 then return math.max(0, limit - used) end return -1 end
  if wait > 0 then
    redis.call('SET', KEYS[2], total, 'PX', ttl)
    redis.call('PEXPIRE', KEYS[1], ttl)
    return {0, wait, reason, left(rpm, count), left(tpm, total), members}
  end
  local id = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[1], now, id .. ':' .. tokens)
  total = total + tokens
  redis.call('SET', KEYS[2], total, 'PX', ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
  return {1, 0, tostring(id), left(rpm, count + 1), left(tpm, total), members}
end
local horizon = tonumber(ARGV[5])  -- the first admission's window
redis.call('ZADD', KEYS[5], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - horizon)
redis.call('PEXPIRE', KEYS[5], horizon + 1000)
members = redis.call('ZCARD', KEYS[5])
local answers = {}
for i = 2, #ARGV, 4 do
  answers[#answers + 1] = admit(tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]),
                                tonumber(ARGV[i + 3]))
end
return answers
"""

# Corrections, batched. KEYS: window log, token total. ARGV per correction: member "<id>:<tokens>", id, new tokens,
# drop (1: remove the admission). An admission already out of the window is left alone.
_ADJUST = """
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
local ttl = redis.call('PTTL', KEYS[1])  -- read first: removing the last member deletes the key
if ttl <= 0 then ttl = 1000 end
for i = 1, #ARGV, 4 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score then
    redis.call('ZREM', KEYS[1], ARGV[i])
    total = total - tonumber(string.match(ARGV[i], ':(%d+)$'))
    if ARGV[i + 3] == '0' then
      total = total + tonumber(ARGV[i + 2])
      redis.call('ZADD', KEYS[1], score, ARGV[i + 1] .. ':' .. ARGV[i + 2])
    end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('SET', KEYS[2], math.max(0, total), 'PX', ttl)
return 1
"""

# KEYS: pause. ARGV: pause ms. Returns the pause in force, ms.
_PAUSE = _PRELUDE + """
local ms = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + ms > current then
  redis.call('SET', KEYS[1], now + ms, 'PX', ms)
  return ms
end
return current - now
"""

# KEYS: window log, token total, pause. ARGV: window ms. Returns {requests, tokens, pause ms}; read-only.
_USAGE = _PRELUDE + """
local cutoff = now - tonumber(ARGV[1])
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)) do total = total - tokens_of(member) end
local count = redis.call('ZCOUNT', KEYS[1], '(' .. cutoff, '+inf')
if count == 0 then total = 0 end
local paused = tonumber(redis.call('GET', KEYS[3]) or '0') - now
return {count, math.max(0, total), math.max(0, paused)}
"""

# The breaker: `llm.health.breaker.Circuit` in Lua, transition for transition (keep the two alike; the property test
# in tests/fleet/test_stores.py plays both). KEYS: record hash, window hash. ARGV[1..5]: the `BreakerRules` (bucket
# width ms, min_calls, failure_rate, cooldown ms, cooldown_max ms); ARGV[6..]: per script. Each script returns
# `record()`: {state, open_for ms, probe taken (1/0), successes, failures, consecutive failures, times opened}.
_CIRCUIT = _PRELUDE + """
local width, min_calls, rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local base, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local bucket = math.floor(now / width)
local h = redis.call('HMGET', KEYS[1], 'until', 'quota', 'probe', 'opened', 'consec', 'cooldown')
local c = {open_until = tonumber(h[1] or '0'), quota = tonumber(h[2] or '0'), probe = tonumber(h[3] or '0'),
           opened = tonumber(h[4] or '0'), consec = tonumber(h[5] or '0'), cooldown = tonumber(h[6] or ARGV[4])}
local ok, failed = 0, 0
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local kind, b = string.match(fields[i], '^(%a):(%d+)$')
  if tonumber(b) <= bucket - @BUCKETS then redis.call('HDEL', KEYS[2], fields[i])
  elseif kind == 's' then ok = ok + tonumber(fields[i + 1])
  else failed = failed + tonumber(fields[i + 1]) end
end
local function state()
  if now < c.quota then return 'open' end
  if c.open_until == 0 then return 'closed' end
  if now < c.open_until and c.probe <= now then return 'open' end
  return 'half_open'
end
local function clear()
  redis.call('DEL', KEYS[2])
  ok, failed = 0, 0
end
local function open()
  c.opened = c.opened + 1
  c.open_until = now + c.cooldown
  clear()
end
local function count(is_failure)
  if is_failure then failed = failed + 1 else ok = ok + 1 end
  local kind = 's:'
  if is_failure then kind = 'f:' end
  redis.call('HINCRBY', KEYS[2], kind .. string.format('%d', bucket), 1)
  redis.call('PEXPIRE', KEYS[2], width * @BUCKETS + 1000)
end
local function save()
  redis.call('HSET', KEYS[1], 'until', c.open_until, 'quota', c.quota, 'probe', c.probe, 'opened', c.opened,
             'consec', c.consec, 'cooldown', c.cooldown)
  redis.call('PEXPIRE', KEYS[1], math.max(0, c.open_until - now, c.quota - now) + @RECORD_TTL)
end
local function record()
  local probe_taken = 0
  if c.probe > now then probe_taken = 1 end
  return {state(), math.max(0, c.quota - now, c.open_until - now), probe_taken, ok, failed, c.consec, c.opened}
end
""".replace("@RECORD_TTL", str(RECORD_TTL_MS)).replace("@BUCKETS", str(BUCKETS))

_BREAKER_STATE = _CIRCUIT + "return record()"

# `Circuit.admit`. ARGV[6]: probe lease ms. Returns `record()` and the verdict: "pass", "probe" or "refused".
_BREAKER_ADMIT = _CIRCUIT + """
local verdict = 'pass'
local s = state()
if s == 'open' or (s == 'half_open' and c.probe > now) then verdict = 'refused'
elseif s == 'half_open' then
  c.probe = now + tonumber(ARGV[6])
  save()
  verdict = 'probe'
end
local answer = record()
answer[#answer + 1] = verdict
return answer
"""

# `Circuit.apply`. ARGV[6]: the event ("success", "failure", "quota", "release"); ARGV[7]: 1 for a probe's outcome;
# ARGV[8]: a quota trip's length, ms.
_BREAKER_EVENT = _CIRCUIT + """
local event, probe = ARGV[6], ARGV[7] == '1'
if event == 'success' then
  c.consec = 0
  if probe then
    c.probe, c.open_until, c.cooldown = 0, 0, base
    clear()
  elseif c.open_until == 0 then count(false) end
elseif event == 'failure' then
  c.consec = c.consec + 1
  if probe then
    c.probe = 0
    c.cooldown = math.min(c.cooldown * 2, cap)
    open()
  elseif c.open_until == 0 then
    count(true)
    if ok + failed >= min_calls and failed / (ok + failed) >= rate then open() end
  end
elseif event == 'quota' then
  if probe then c.probe = 0 end
  if state() ~= 'open' then c.opened = c.opened + 1 end
  c.quota = math.max(c.quota, now + tonumber(ARGV[8]))
elseif probe then
  c.probe = 0
end
save()
return record()
"""

SCRIPTS = {
    "admit": _ADMIT, "adjust": _ADJUST, "pause": _PAUSE, "usage": _USAGE, "breaker_state": _BREAKER_STATE,
    "breaker_admit": _BREAKER_ADMIT, "breaker_event": _BREAKER_EVENT,
}
