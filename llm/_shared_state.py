"""Where a fleet's per-backend state lives: the rate limiter's windows, Retry-After pauses and circuit-breaker records.

Two stores with one interface (`StateStore`):

* `LocalStore`: in-process dicts; what a single process uses, and every `RedisStore`'s fallback.
* `RedisStore`: the same state in a Redis-protocol server (Redis or Valkey), so every process given the same URL and
  the same backend name shares it. Each operation is one server-side Lua script (atomic, one round trip), timed by the
  server's clock (`TIME`), so processes on different machines need no synchronised clocks; every duration crossing
  the interface is relative seconds for the same reason. Keys are `{prefix}:{<backend>}:<what>` (the braces are a
  Redis Cluster hash tag: one backend's keys share a slot) and all expire.

When Redis is unreachable or slower than `timeout`, a `RedisStore` logs one WARNING and serves from its `LocalStore`
until a background PING (every `reconnect_interval` seconds, never on a caller's path) succeeds; no caller ever waits
longer than `timeout` for Redis, and no operation fails because Redis is down. State is not merged across an outage:
windows recorded locally stay local, and a restarted Redis starts empty.

The limiter (`llm.ratelimit`) drives `admit`/`adjust`/`pause`/`usage`. The circuit breaker uses the breaker records:
`breaker_state`, `record_outcome` (returns the failure-window counts), `open_breaker`, `claim_probe` (one half-open
probe across the fleet) and `close_breaker`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from llm.errors import LLMConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = [
    "Admission",
    "BreakerRecord",
    "Entry",
    "LocalStore",
    "RedisStore",
    "StateStore",
    "WindowUsage",
    "open_state_store",
]

logger = logging.getLogger("llm.shared_state")

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]

#: Buckets a breaker's failure window is counted in (its granularity is window / BUCKETS).
BUCKETS = 10
#: A breaker record outlives its open period by this long, then expires (an absent record means closed).
_RECORD_TTL_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One admission recorded in a backend's window, to be corrected later (`adjust`)."""

    id: str
    tokens: int
    shared: bool


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to `admit`.

    Attributes:
        granted: admitted now; else wait `wait` seconds before asking again.
        wait: seconds until capacity frees up (0 when granted).
        reason: why it was refused: "paused", "rpm" or "tpm" ("" when granted).
        entry: the recorded admission (None when granted with no limit configured, or refused).
        requests_left / tokens_left: capacity left in the window after this answer; None when not limited.
        shared: whether the answer came from the shared store.
    """

    granted: bool
    wait: float
    reason: str
    entry: Entry | None
    requests_left: int | None
    tokens_left: int | None
    shared: bool


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """What a backend's window holds now: admissions and tokens in the last `window` seconds, pause left."""

    requests: int
    tokens: int
    paused_for: float
    shared: bool


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """A backend's breaker state as the fleet sees it.

    Attributes:
        state: "closed"; "open" until `open_for` elapses; then "half_open" (a probe may go) until closed or reopened.
        open_for: seconds the open period still lasts (0 when closed or elapsed).
        probe_taken: a half-open probe is claimed by some process and its lease has not run out.
        successes / failures: outcomes recorded in the failure window (bucketed: window / `BUCKETS` granularity).
        consecutive_failures: failures since the last recorded success.
        times_opened: how often the breaker went from not-open to open (while the record lived).
        shared: whether the record came from the shared store.
    """

    state: BreakerState
    open_for: float
    probe_taken: bool
    successes: int
    failures: int
    consecutive_failures: int
    times_opened: int
    shared: bool


class StateStore(Protocol):
    """Per-backend state for the limiter and the circuit breaker; durations are seconds, relative to now."""

    @property
    def shared(self) -> bool:
        """Whether operations currently go to the shared engine."""
        ...

    async def admit(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        """Record one admission of `tokens` when the window has room (rpm/tpm 0: no such limit) and no pause runs."""
        ...

    async def adjust(self, backend: str, entry: Entry, tokens: int | None, window: float) -> None:
        """Correct a recorded admission to `tokens`; None removes it (request and tokens) from the window."""
        ...

    async def pause(self, backend: str, seconds: float) -> float:
        """Pause admissions for `seconds` (never shortens a longer pause); returns the pause now in force."""
        ...

    async def usage(self, backend: str, window: float) -> WindowUsage: ...

    async def breaker_state(self, backend: str, window: float = 60.0) -> BreakerRecord: ...

    async def record_outcome(self, backend: str, ok: bool, window: float = 60.0) -> BreakerRecord:
        """Count one success or counted failure in the failure window; returns the record with the new counts."""
        ...

    async def open_breaker(self, backend: str, seconds: float, window: float = 60.0) -> BreakerRecord:
        """Open (or keep open) for at least `seconds`; clears any probe claim."""
        ...

    async def claim_probe(self, backend: str, lease: float) -> bool:
        """Take the one half-open probe for `lease` seconds; False when not half-open or another process holds it."""
        ...

    async def close_breaker(self, backend: str, window: float = 60.0) -> BreakerRecord:
        """Close: clear the open period, the probe claim and the failure window."""
        ...

    async def aclose(self) -> None: ...


# -- in-process -------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _LocalEntry:
    at: float
    id: str
    tokens: int


@dataclass(slots=True)
class _LocalWindow:
    entries: deque[_LocalEntry] = field(default_factory=deque)
    by_id: dict[str, _LocalEntry] = field(default_factory=dict)
    tokens: int = 0

    def expire(self, now: float, window: float) -> None:
        entries = self.entries
        while entries and entries[0].at <= now - window:
            gone = entries.popleft()
            self.tokens -= gone.tokens
            del self.by_id[gone.id]
        if not entries:
            self.tokens = 0


@dataclass(slots=True)
class _LocalBreaker:
    until: float = 0.0  # 0: closed
    probe_until: float = 0.0
    opened: int = 0
    consecutive: int = 0
    buckets: dict[tuple[bool, int], int] = field(default_factory=dict)


class LocalStore:
    """In-process state: one process's view (and a `RedisStore`'s fallback). Not thread-safe; one event loop.

    Args:
        clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._windows: dict[str, _LocalWindow] = {}
        self._pauses: dict[str, float] = {}
        self._breakers: dict[str, _LocalBreaker] = {}
        self._seq = 0

    @property
    def shared(self) -> bool:
        return False

    async def admit(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        return self.admit_now(backend, rpm, tpm, tokens, window)

    def admit_now(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        """`admit`, synchronously (the same algorithm as the Redis script `_ADMIT`)."""
        now = self.clock()
        paused = self._pauses.get(backend, 0.0) - now
        if paused > 0:
            return Admission(False, paused, "paused", None, None, None, False)
        if not rpm and not tpm:
            return Admission(True, 0.0, "", None, None, None, False)
        win = self._windows.setdefault(backend, _LocalWindow())
        win.expire(now, window)
        count = len(win.entries)
        tokens = min(tokens, tpm) if tpm else tokens
        wait, reason = 0.0, ""
        if rpm and count >= rpm:
            wait, reason = win.entries[count - rpm].at + window - now, "rpm"
        if tpm and win.tokens + tokens > tpm:
            need, freed = win.tokens + tokens - tpm, 0
            for entry in win.entries:
                freed += entry.tokens
                if freed >= need:
                    if entry.at + window - now > wait:
                        wait, reason = entry.at + window - now, "tpm"
                    break
        if wait > 0:
            return Admission(False, wait, reason, None, _left(rpm, count), _left(tpm, win.tokens), False)
        self._seq += 1
        local = _LocalEntry(now, str(self._seq), tokens)
        win.entries.append(local)
        win.by_id[local.id] = local
        win.tokens += tokens
        return Admission(True, 0.0, "", Entry(local.id, tokens, False), _left(rpm, count + 1),
                         _left(tpm, win.tokens), False)

    async def adjust(self, backend: str, entry: Entry, tokens: int | None, window: float) -> None:
        win = self._windows.get(backend)
        local = win.by_id.get(entry.id) if win is not None else None
        if win is None or local is None:
            return  # already outside the window
        win.tokens -= local.tokens
        if tokens is None:
            win.entries.remove(local)
            del win.by_id[local.id]
        else:
            local.tokens = tokens
            win.tokens += tokens

    async def pause(self, backend: str, seconds: float) -> float:
        now = self.clock()
        until = max(self._pauses.get(backend, 0.0), now + seconds)
        self._pauses[backend] = until
        return until - now

    async def usage(self, backend: str, window: float) -> WindowUsage:
        now = self.clock()
        win = self._windows.get(backend)
        if win is not None:
            win.expire(now, window)
        paused = max(0.0, self._pauses.get(backend, 0.0) - now)
        return WindowUsage(len(win.entries) if win else 0, win.tokens if win else 0, paused, False)

    # -- breaker records ------------------------------------------------------------------------------------------

    async def breaker_state(self, backend: str, window: float = 60.0) -> BreakerRecord:
        return self._record(backend, window)

    async def record_outcome(self, backend: str, ok: bool, window: float = 60.0) -> BreakerRecord:
        breaker = self._breakers.setdefault(backend, _LocalBreaker())
        key = (ok, math.floor(self.clock() / (window / BUCKETS)))
        breaker.buckets[key] = breaker.buckets.get(key, 0) + 1
        breaker.consecutive = 0 if ok else breaker.consecutive + 1
        return self._record(backend, window)

    async def open_breaker(self, backend: str, seconds: float, window: float = 60.0) -> BreakerRecord:
        breaker = self._breakers.setdefault(backend, _LocalBreaker())
        now = self.clock()
        if breaker.until <= now:
            breaker.opened += 1
        breaker.until = max(breaker.until, now + seconds)
        breaker.probe_until = 0.0
        return self._record(backend, window)

    async def claim_probe(self, backend: str, lease: float) -> bool:
        breaker = self._breakers.get(backend)
        now = self.clock()
        if breaker is None or not 0 < breaker.until <= now or breaker.probe_until > now:
            return False
        breaker.probe_until = now + lease
        return True

    async def close_breaker(self, backend: str, window: float = 60.0) -> BreakerRecord:
        breaker = self._breakers.setdefault(backend, _LocalBreaker())
        breaker.until = breaker.probe_until = 0.0
        breaker.consecutive = 0
        breaker.buckets.clear()
        return self._record(backend, window)

    def _record(self, backend: str, window: float) -> BreakerRecord:
        breaker = self._breakers.get(backend) or _LocalBreaker()
        now = self.clock()
        bucket = math.floor(now / (window / BUCKETS))
        for key in [key for key in breaker.buckets if key[1] <= bucket - BUCKETS]:
            del breaker.buckets[key]
        ok = sum(n for (success, _), n in breaker.buckets.items() if success)
        failed = sum(n for (success, _), n in breaker.buckets.items() if not success)
        return _breaker_record(breaker.until and breaker.until - now, breaker.until == 0,
                               breaker.probe_until > now, ok, failed, breaker.consecutive, breaker.opened, False)

    async def aclose(self) -> None:
        return None


def _left(limit: int, used: int) -> int | None:
    return max(0, limit - used) if limit else None


def _breaker_record(open_for: float, closed: bool, probe: bool, ok: int, failed: int, consecutive: int,
                    opened: int, shared: bool) -> BreakerRecord:
    state: BreakerState = "closed" if closed else "open" if open_for > 0 else "half_open"
    return BreakerRecord(state, max(0.0, open_for) if not closed else 0.0, probe, ok, failed, consecutive, opened,
                         shared)


# -- Redis ------------------------------------------------------------------------------------------------------------

# Server time in integer milliseconds, and the token count a window member ("<id>:<tokens>") carries.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function tokens_of(member) return tonumber(string.match(member, ':(%d+)$')) end
"""

# KEYS: window log (zset), token total, pause, id sequence. ARGV: rpm, tpm, tokens, window ms (0: no such limit).
# Returns {granted, wait ms, reason or entry id, requests left, tokens left} (-1: not limited).
_ADMIT = _PRELUDE + """
local rpm, tpm, tokens, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then return {0, paused - now, 'paused', -1, -1} end
if rpm == 0 and tpm == 0 then return {1, 0, '', -1, -1} end
local cutoff = now - window
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
for _, member in ipairs(old) do total = total - tokens_of(member) end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff) end
local count = redis.call('ZCARD', KEYS[1])
if count == 0 or total < 0 then total = 0 end
if tpm > 0 and tokens > tpm then tokens = tpm end
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
  return {0, wait, reason, left(rpm, count), left(tpm, total)}
end
local id = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[1], now, id .. ':' .. tokens)
total = total + tokens
redis.call('SET', KEYS[2], total, 'PX', ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
return {1, 0, tostring(id), left(rpm, count + 1), left(tpm, total)}
"""

# KEYS: window log, token total. ARGV: member "<id>:<tokens>", id, new tokens, drop (1: remove the admission).
_ADJUST = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local old = tonumber(string.match(ARGV[1], ':(%d+)$'))
local ttl = redis.call('PTTL', KEYS[1])  -- read first: removing the last member deletes the key
if ttl <= 0 then ttl = 1000 end
redis.call('ZREM', KEYS[1], ARGV[1])
local new = 0
if ARGV[4] == '0' then
  new = tonumber(ARGV[3])
  redis.call('ZADD', KEYS[1], score, ARGV[2] .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local total = math.max(0, tonumber(redis.call('GET', KEYS[2]) or '0') - old + new)
redis.call('SET', KEYS[2], total, 'PX', ttl)
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

# Breaker scripts. KEYS: record hash (until, probe, opened, consec), window hash ("s:<bucket>"/"f:<bucket>" -> n).
# ARGV[1]: bucket width ms; ARGV[2..]: per script. All but claim_probe return `record()`.
_BREAKER_PRELUDE = _PRELUDE + """
local width = tonumber(ARGV[1])
local bucket = math.floor(now / width)
local function refresh_ttl(until_)
  local ttl = math.max(0, until_ - now) + @RECORD_TTL
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], width * @BUCKETS + 1000)
end
local function record()
  local ok, failed = 0, 0
  local fields = redis.call('HGETALL', KEYS[2])
  for i = 1, #fields, 2 do
    local kind, b = string.match(fields[i], '^(%a):(%d+)$')
    if tonumber(b) <= bucket - @BUCKETS then redis.call('HDEL', KEYS[2], fields[i])
    elseif kind == 's' then ok = ok + tonumber(fields[i + 1])
    else failed = failed + tonumber(fields[i + 1]) end
  end
  local h = redis.call('HMGET', KEYS[1], 'until', 'probe', 'opened', 'consec')
  local until_, probe = tonumber(h[1] or '0'), tonumber(h[2] or '0')
  local closed = 0
  if until_ == 0 then closed = 1 end
  local probe_taken = 0
  if probe > now then probe_taken = 1 end
  return {closed, until_ - now, probe_taken, ok, failed, tonumber(h[4] or '0'), tonumber(h[3] or '0')}
end
""".replace("@RECORD_TTL", str(_RECORD_TTL_MS)).replace("@BUCKETS", str(BUCKETS))

_BREAKER_STATE = _BREAKER_PRELUDE + "return record()"

# ARGV[2]: 1 success, 0 failure.
_RECORD_OUTCOME = _BREAKER_PRELUDE + """
local kind = 'f:'
if ARGV[2] == '1' then kind = 's:' end
redis.call('HINCRBY', KEYS[2], kind .. string.format('%d', bucket), 1)
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'consec', 0) else redis.call('HINCRBY', KEYS[1], 'consec', 1) end
refresh_ttl(tonumber(redis.call('HGET', KEYS[1], 'until') or '0'))
return record()
"""

# ARGV[2]: open period ms.
_OPEN_BREAKER = _BREAKER_PRELUDE + """
local current = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if current <= now then redis.call('HINCRBY', KEYS[1], 'opened', 1) end
local until_ = math.max(current, now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'until', until_, 'probe', 0)
refresh_ttl(until_)
return record()
"""

# ARGV[2]: probe lease ms. Returns 1 when this caller got the probe.
_CLAIM_PROBE = _BREAKER_PRELUDE + """
local h = redis.call('HMGET', KEYS[1], 'until', 'probe')
local until_, probe = tonumber(h[1] or '0'), tonumber(h[2] or '0')
if until_ == 0 or until_ > now or probe > now then return 0 end
redis.call('HSET', KEYS[1], 'probe', now + tonumber(ARGV[2]))
return 1
"""

_CLOSE_BREAKER = _BREAKER_PRELUDE + """
redis.call('HSET', KEYS[1], 'until', 0, 'probe', 0, 'consec', 0)
redis.call('DEL', KEYS[2])
refresh_ttl(0)
return record()
"""

_SCRIPTS = {
    "admit": _ADMIT, "adjust": _ADJUST, "pause": _PAUSE, "usage": _USAGE, "breaker_state": _BREAKER_STATE,
    "record_outcome": _RECORD_OUTCOME, "open_breaker": _OPEN_BREAKER, "claim_probe": _CLAIM_PROBE,
    "close_breaker": _CLOSE_BREAKER,
}

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


def _key_part(backend: str) -> str:
    """A backend name as it appears inside a key's hash tag (anything but [A-Za-z0-9_.-] percent-encoded)."""
    return _UNSAFE_KEY_CHARS.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), backend)


def _redact(url: str) -> str:
    """The URL without credentials, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


class _Connection:
    """One client (and its one connection pool) bound to the event loop that made it, with the scripts registered."""

    def __init__(self, client: Redis, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.scripts: dict[str, AsyncScript] = {name: client.register_script(text) for name, text in _SCRIPTS.items()}

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.scripts[name](keys=keys, args=args)


class RedisStore:
    """State shared through a Redis-protocol server, with a `LocalStore` fallback (see the module docstring).

    Args:
        url: `redis://` or `rediss://` (credentials and database number as redis-py's `from_url` reads them).
        prefix: the namespace of every key (one per deployment sharing a server).
        timeout: bound on each Redis operation, connect included; past it the call is served locally.
        reconnect_interval: seconds between background reconnection attempts while Redis is down.
        fallback: the in-process store used while Redis is down (a new `LocalStore` by default).

    Raises:
        LLMConfigError: another URL scheme, or redis-py is not installed.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "scout-llm",
        timeout: float = 0.1,
        reconnect_interval: float = 5.0,
        fallback: LocalStore | None = None,
    ) -> None:
        if urlsplit(url).scheme not in ("redis", "rediss"):
            raise LLMConfigError(f"SCOUT_LLM_REDIS_URL must start with redis:// or rediss://, got {_redact(url)!r}")
        if not (timeout > 0 and math.isfinite(timeout)) or not (reconnect_interval > 0):
            raise LLMConfigError("the Redis timeout and reconnect interval must be positive numbers of seconds")
        try:
            import redis.asyncio  # noqa: F401  (checked here so a missing extra fails at start-up, not per call)
        except ImportError as exc:
            raise LLMConfigError("Shared state needs redis-py: pip install 'scout-llm[redis]'") from exc
        self.url = url
        self.where = _redact(url)
        self.prefix = prefix
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.local = fallback if fallback is not None else LocalStore()
        self._conn: _Connection | None = None
        self._down = False
        self._next_probe = 0.0
        self._probe: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return not self._down

    def _keys(self, backend: str, *names: str) -> list[str]:
        base = f"{self.prefix}:{{{_key_part(backend)}}}"
        return [f"{base}:{name}" for name in names]

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._conn is None or self._conn.loop is not loop:
            # A new loop (successive asyncio.run calls) cannot use sockets of the old one: a new pool.
            from redis.asyncio import Redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0), decode_responses=True,  # we retry by falling back, never by waiting
            )
            self._conn = _Connection(client, loop)
        return self._conn

    async def _shared(self, script: str, keys: list[str], args: list[Any],
                      local: Callable[[], Awaitable[T]], convert: Callable[[Any], T]) -> T:
        """Run `script` on Redis within `timeout`; on any Redis failure (or while down) run `local` instead."""
        if not self._down:
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await self._connection().run(script, keys, args)
                return convert(reply)
            except (OSError, TimeoutError, _redis_error()) as exc:
                self._went_down(exc)
        self._maybe_reconnect()
        return await local()

    def _went_down(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            self._next_probe = time.monotonic() + self.reconnect_interval
            logger.warning(
                "shared state at %s unavailable (%s: %s); using in-process state, retrying every %gs",
                self.where, type(exc).__name__, exc, self.reconnect_interval,
            )

    def _maybe_reconnect(self) -> None:
        if self._down and self._probe is None and time.monotonic() >= self._next_probe:
            self._next_probe = time.monotonic() + self.reconnect_interval
            self._probe = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            conn = self._connection()
            await conn.client.connection_pool.disconnect()  # sockets of the old server are dead
            async with asyncio.timeout(self.timeout):
                await conn.client.ping()
        except (OSError, TimeoutError, _redis_error()) as exc:
            logger.debug("shared state at %s still unavailable: %s", self.where, type(exc).__name__)
        else:
            self._down = False
            logger.warning("shared state at %s reachable again; using it", self.where)
        finally:
            self._probe = None

    # -- the limiter ----------------------------------------------------------------------------------------------

    async def admit(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        keys = self._keys(backend, "rl:log", "rl:tokens", "pause", "rl:seq")
        tokens = min(tokens, tpm) if tpm else tokens

        async def local() -> Admission:
            return self.local.admit_now(backend, rpm, tpm, tokens, window)

        return await self._shared("admit", keys, [rpm, tpm, tokens, _ms(window)], local,
                                  lambda reply: _admission(reply, tokens))

    async def adjust(self, backend: str, entry: Entry, tokens: int | None, window: float) -> None:
        if not entry.shared:
            await self.local.adjust(backend, entry, tokens, window)
            return
        keys = self._keys(backend, "rl:log", "rl:tokens")
        args = [f"{entry.id}:{entry.tokens}", entry.id, tokens or 0, 1 if tokens is None else 0]

        async def nothing() -> None:  # the entry lives in Redis; while it is down there is nothing to correct
            return None

        await self._shared("adjust", keys, args, nothing, lambda reply: None)

    async def pause(self, backend: str, seconds: float) -> float:
        return await self._shared("pause", self._keys(backend, "pause"), [max(1, _ms(seconds))],
                                  lambda: self.local.pause(backend, seconds), lambda reply: int(reply) / 1000)

    async def usage(self, backend: str, window: float) -> WindowUsage:
        def convert(reply: Any) -> WindowUsage:
            return WindowUsage(int(reply[0]), int(reply[1]), int(reply[2]) / 1000, True)

        keys = self._keys(backend, "rl:log", "rl:tokens", "pause")
        return await self._shared("usage", keys, [_ms(window)], lambda: self.local.usage(backend, window), convert)

    # -- breaker records ------------------------------------------------------------------------------------------

    async def _breaker(self, name: str, backend: str, window: float, extra: list[Any],
                       local: Callable[[], Awaitable[BreakerRecord]]) -> BreakerRecord:
        keys = self._keys(backend, "breaker", "breaker:window")
        return await self._shared(name, keys, [max(1, _ms(window / BUCKETS)), *extra], local, _record)

    async def breaker_state(self, backend: str, window: float = 60.0) -> BreakerRecord:
        return await self._breaker("breaker_state", backend, window, [],
                                   lambda: self.local.breaker_state(backend, window))

    async def record_outcome(self, backend: str, ok: bool, window: float = 60.0) -> BreakerRecord:
        return await self._breaker("record_outcome", backend, window, [1 if ok else 0],
                                   lambda: self.local.record_outcome(backend, ok, window))

    async def open_breaker(self, backend: str, seconds: float, window: float = 60.0) -> BreakerRecord:
        return await self._breaker("open_breaker", backend, window, [max(1, _ms(seconds))],
                                   lambda: self.local.open_breaker(backend, seconds, window))

    async def claim_probe(self, backend: str, lease: float) -> bool:
        keys = self._keys(backend, "breaker", "breaker:window")
        return await self._shared("claim_probe", keys, [1000, max(1, _ms(lease))],
                                  lambda: self.local.claim_probe(backend, lease), lambda reply: int(reply) == 1)

    async def close_breaker(self, backend: str, window: float = 60.0) -> BreakerRecord:
        return await self._breaker("close_breaker", backend, window, [],
                                   lambda: self.local.close_breaker(backend, window))

    async def aclose(self) -> None:
        """Close the connection pool (of the running loop's client) and stop any reconnection attempt."""
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        conn, self._conn = self._conn, None
        if conn is not None and conn.loop is asyncio.get_running_loop():
            await conn.client.aclose()


def _ms(seconds: float) -> int:
    return int(math.ceil(seconds * 1000))


def _redis_error() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError


def _admission(reply: Any, tokens: int) -> Admission:
    granted, wait, tag, requests_left, tokens_left = reply
    requests = None if int(requests_left) < 0 else int(requests_left)
    left = None if int(tokens_left) < 0 else int(tokens_left)
    if not int(granted):
        return Admission(False, int(wait) / 1000, str(tag), None, requests, left, True)
    entry = None if tag == "" else Entry(str(tag), tokens, True)
    return Admission(True, 0.0, "", entry, requests, left, True)


def _record(reply: Any) -> BreakerRecord:
    closed, open_for, probe, ok, failed, consecutive, opened = (int(value) for value in reply)
    return _breaker_record(open_for / 1000, closed == 1, probe == 1, ok, failed, consecutive, opened, True)


def open_state_store(url: str | None, **options: Any) -> StateStore:
    """The store for a configured `SCOUT_LLM_REDIS_URL`: a `RedisStore` for a URL, else a `LocalStore`.

    `options` go to `RedisStore` (prefix, timeout, reconnect_interval).
    """
    if not url:
        return LocalStore()
    return RedisStore(url, **options)
