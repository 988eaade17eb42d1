"""`RedisStore`: the `StateStore` of `llm.fleet.store` kept in a Redis-protocol server (Redis >= 5 or Valkey), so
every process given the same URL and backend name shares rate-limit windows, Retry-After pauses and breakers. Each
operation is one Lua script (`llm.fleet.redis_scripts`) sent through `llm.fleet.redis_client`; while the server is
down or slow, the store's `LocalStore` serves instead. Behaviour: README.md, "Running a fleet".
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from llm.core.secrets import SecretURL, mask_url
from llm.errors import LLMConfigError
from llm.fleet.redis_client import _Batches, _Connection, _Down, _redis_error, _WrongReply
from llm.fleet.store import Admission, BreakerRecord, Entry, LocalStore, WindowUsage
from llm.health.breaker import BreakerEvent, BreakerRules, BreakerState, Ticket

__all__ = ["RedisStore"]

logger = logging.getLogger("llm.shared_state")

T = TypeVar("T")

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")

#: The type each key of a backend holds (`llm.fleet.redis_scripts` says what is in them).
_KEY_TYPES = {"rl:log": "zset", "rl:tokens": "string", "rl:seq": "string", "members": "zset", "pause": "string",
              "breaker": "hash", "breaker:window": "hash"}


def _key_part(backend: str) -> str:
    """A backend name as it appears inside a key's hash tag (anything but [A-Za-z0-9_.-] percent-encoded)."""
    return _UNSAFE_KEY_CHARS.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), backend)


class RedisStore:
    """State shared through a Redis-protocol server, with a `LocalStore` fallback.

    Redis unreachable, failing, slower than `timeout` (connect included) or answering wrongly (anything it says is
    untrusted: a reply of the wrong shape, bytes that are not UTF-8, a key of the wrong type): the operation is served
    by the fallback, with one WARNING for the outage; a background check every `reconnect_interval` seconds (never on
    a caller's path: a PING, and the keys of the call that failed hold what the scripts expect) switches back, and the
    first shared answer after it ends the outage, with a WARNING saying so. No caller waits on Redis longer than
    `timeout` (twice that for a batched call queued behind a batch in flight). While down, each process enforces the
    limits divided by the number of stores that used the backend's shared window during the last window. State is not
    merged across an outage: what was recorded locally stays local, and a restarted Redis starts empty.

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
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (reading it checks it: a port out of range raises ValueError)
        except ValueError as exc:
            raise LLMConfigError(f"SCOUT_LLM_REDIS_URL is not a valid URL ({exc}): {mask_url(url)!r}") from None
        if parts.scheme not in ("redis", "rediss"):
            raise LLMConfigError(f"SCOUT_LLM_REDIS_URL must start with redis:// or rediss://, got {mask_url(url)!r}")
        if not (timeout > 0 and math.isfinite(timeout)) or not (reconnect_interval > 0):
            raise LLMConfigError("the Redis timeout and reconnect interval must be positive numbers of seconds")
        try:
            import redis.asyncio  # noqa: F401  (checked here so a missing extra fails at start-up, not per call)
        except ImportError as exc:
            raise LLMConfigError("Shared state needs redis-py: pip install 'scout-llm[redis]'") from exc
        self.url = SecretURL(url)
        self.where = mask_url(url)
        self.prefix = prefix
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.local = fallback if fallback is not None else LocalStore()
        self._conn: _Connection | None = None
        self._down = False
        self._said_down = False  # the outage was reported (and its end is not yet)
        self._suspects: set[str] = set()  # keys of the calls that failed: the reconnect check reads them
        self._next_probe = 0.0
        self._probe: asyncio.Task[None] | None = None
        self._fleet: dict[str, int] = {}
        self.member = uuid.uuid4().hex
        self._admits = _Batches(self._run, "admit", [self.member], self._orphan)
        self._adjusts = _Batches(self._run, "adjust", [], None)
        self._orphans: set[asyncio.Task[None]] = set()

    @property
    def shared(self) -> bool:
        return not self._down

    def _keys(self, backend: str, *names: str) -> list[str]:
        """`{prefix}:{<backend>}:<name>`: the braces are a Redis Cluster hash tag (one backend's keys share a slot)."""
        base = f"{self.prefix}:{{{_key_part(backend)}}}"
        return [f"{base}:{name}" for name in names]

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._conn is None or self._conn.loop is not loop:
            # A new loop (successive asyncio.run calls) cannot use sockets of the old one: a new pool.
            self._conn = _Connection(self.url, self.timeout, loop)
        return self._conn

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run `script` on Redis within `timeout`."""
        if self._down:
            raise _Down("shared state unavailable")
        async with asyncio.timeout(self.timeout):
            return await self._connection().run(script, keys, args)

    async def _shared(self, script: str, keys: list[str], args: list[Any],
                      local: Callable[[], Awaitable[T]], convert: Callable[[Any], T]) -> T:
        """Run `script` on Redis within `timeout`; on any Redis failure (or while down) run `local` instead."""
        return await self._either(lambda: self._run(script, keys, args), local, convert, keys)

    async def _either(self, run: Callable[[], Awaitable[Any]], local: Callable[[], Awaitable[T]],
                      convert: Callable[[Any], T], keys: list[str]) -> T:
        """`convert` of what Redis answers to `run`; `local` instead while down, or when Redis fails or answers
        wrongly (`convert` raises `_WrongReply` for a reply of the wrong shape)."""
        if not self._down:
            try:
                result = convert(await run())
            except (OSError, TimeoutError, _Down, _WrongReply, _redis_error()) as exc:
                self._went_down(exc, keys)
            else:
                if self._said_down:
                    self._said_down = False
                    logger.warning("shared state at %s reachable again; using it", self.where)
                return result
        self._maybe_reconnect()
        return await local()

    def _went_down(self, exc: BaseException, keys: list[str]) -> None:
        if self._down or isinstance(exc, _Down):
            return
        self._suspects.update(keys)  # the reconnect check reads them: a key of the wrong type keeps the store local
        self._down = True
        self._next_probe = time.monotonic() + self.reconnect_interval
        level, self._said_down = (logging.DEBUG if self._said_down else logging.WARNING), True
        logger.log(level, "shared state at %s unavailable (%s: %s); using in-process state, retrying every %gs",
                   self.where, type(exc).__name__, exc, self.reconnect_interval)

    def _maybe_reconnect(self) -> None:
        if self._down and self._probe is None and time.monotonic() >= self._next_probe:
            self._next_probe = time.monotonic() + self.reconnect_interval
            self._probe = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            conn = self._connection()
            await conn.client.connection_pool.disconnect()  # sockets of the old server are dead
            suspects = sorted(self._suspects)
            async with asyncio.timeout(self.timeout):
                await conn.check(suspects, _KEY_TYPES)
        except (OSError, TimeoutError, _WrongReply, _redis_error()) as exc:
            logger.debug("shared state at %s still unavailable: %s: %s", self.where, type(exc).__name__, exc)
        else:
            self._suspects.difference_update(suspects)
            self._down = False  # the next shared answer says it is back
        finally:
            self._probe = None

    # -- the limiter ----------------------------------------------------------------------------------------------

    async def admit(self, backend: str, rpm: int, tpm: int, tokens: int, window: float) -> Admission:
        keys = self._keys(backend, "rl:log", "rl:tokens", "pause", "rl:seq", "members")

        async def local() -> Admission:
            # Down: this process takes its share of each limit, so the fleet as a whole stays within it (a request
            # within the whole TPM but above the share counts as the share; one above the whole TPM is refused).
            fleet = self._fleet.get(backend, 1)
            share = _share(tpm, fleet)
            counted = min(tokens, share) if 0 < tokens <= tpm else tokens
            return self.local.admit_now(backend, _share(rpm, fleet), share, counted, window)

        def convert(reply: Any) -> Admission:
            admission, fleet = _admission(reply, tokens)
            self._fleet[backend] = max(1, fleet)
            return admission

        args = [rpm, tpm, tokens, _ms(window)]
        return await self._either(lambda: self._admits.run(backend, keys, args), local, convert, keys)

    def _orphan(self, backend: str, args: list[Any], reply: Any) -> None:
        """An admission granted to a caller that gave up waiting (cancelled): hand it back."""
        try:
            admission, _ = _admission(reply, int(args[2]))
        except _WrongReply:  # nothing to hand back that can be trusted; the entry expires with its window
            return
        if admission.entry is not None:
            entry = admission.entry
            task = asyncio.get_running_loop().create_task(self.adjust(backend, entry, None, int(args[3]) / 1000))
            self._orphans.add(task)
            task.add_done_callback(self._orphans.discard)

    def fleet_size(self, backend: str) -> int:
        """How many stores (processes) used `backend`'s shared window lately, as last seen (1 before the first)."""
        return self._fleet.get(backend, 1)

    async def adjust(self, backend: str, entry: Entry, tokens: int | None, window: float) -> None:
        if not entry.shared:
            await self.local.adjust(backend, entry, tokens, window)
            return
        keys = self._keys(backend, "rl:log", "rl:tokens")
        args = [f"{entry.id}:{entry.tokens}", entry.id, tokens or 0, 1 if tokens is None else 0]

        async def nothing() -> None:  # the entry lives in Redis; while it is down there is nothing to correct
            return None

        await self._either(lambda: self._adjusts.run(backend, keys, args), nothing, lambda reply: None, keys)

    async def pause(self, backend: str, seconds: float) -> float:
        return await self._shared("pause", self._keys(backend, "pause"), [max(1, _ms(seconds))],
                                  lambda: self.local.pause(backend, seconds),
                                  lambda reply: _counts(reply, 1, "pause")[0] / 1000)

    async def usage(self, backend: str, window: float) -> WindowUsage:
        def convert(reply: Any) -> WindowUsage:
            requests, tokens, paused = _counts(reply, 3, "usage")
            return WindowUsage(requests, tokens, paused / 1000, True)

        keys = self._keys(backend, "rl:log", "rl:tokens", "pause")
        return await self._shared("usage", keys, [_ms(window)], lambda: self.local.usage(backend, window), convert)

    # -- breakers -----------------------------------------------------------------------------------------------

    async def _breaker(self, name: str, backend: str, rules: BreakerRules, extra: list[Any],
                       local: Callable[[], Awaitable[T]], convert: Callable[[Any], T]) -> T:
        keys = self._keys(backend, "breaker", "breaker:window")
        args = [max(1, _ms(rules.bucket)), rules.min_calls, rules.failure_rate, _ms(rules.cooldown),
                _ms(rules.cooldown_max), *extra]
        return await self._shared(name, keys, args, local, convert)

    async def breaker_state(self, backend: str, rules: BreakerRules) -> BreakerRecord:
        return await self._breaker("breaker_state", backend, rules, [],
                                   lambda: self.local.breaker_state(backend, rules), _record)

    async def breaker_admit(self, backend: str, rules: BreakerRules,
                            lease: float) -> tuple[Ticket | None, BreakerRecord]:
        def convert(reply: Any) -> tuple[Ticket | None, BreakerRecord]:
            if not (isinstance(reply, list) and len(reply) == 8 and reply[7] in ("pass", "probe", "refused")):
                raise _WrongReply(f"breaker_admit: expected a record and a verdict, got {_shape(reply)}")
            verdict = reply[7]
            return (None if verdict == "refused" else Ticket(probe=verdict == "probe")), _record(reply[:7])

        return await self._breaker("breaker_admit", backend, rules, [max(1, _ms(lease))],
                                   lambda: self.local.breaker_admit(backend, rules, lease), convert)

    async def breaker_event(self, backend: str, rules: BreakerRules, event: BreakerEvent, probe: bool,
                            seconds: float = 0.0) -> BreakerRecord:
        return await self._breaker("breaker_event", backend, rules, [event, 1 if probe else 0, max(1, _ms(seconds))],
                                   lambda: self.local.breaker_event(backend, rules, event, probe, seconds), _record)

    async def aclose(self) -> None:
        """Close the connection pool (of the running loop's client) and stop any reconnection attempt."""
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        await self._admits.drain()  # batches in flight finish (bounded by `timeout` each), and hand-backs with them
        if self._orphans:
            await asyncio.gather(*self._orphans, return_exceptions=True)
        await self._adjusts.drain()
        conn, self._conn = self._conn, None
        if conn is not None and conn.loop is asyncio.get_running_loop():
            conn.keeper.cancel()
            await conn.close()


def _ms(seconds: float) -> int:
    return int(math.ceil(seconds * 1000))


def _share(limit: int, fleet: int) -> int:
    return max(1, limit // fleet) if limit else 0


# What the scripts answer is checked before it is used: a server that answers wrongly (another program on the port, a
# proxy, keys another program wrote) raises `_WrongReply`, which sends the store to its local state.


def _shape(reply: Any) -> str:
    """What a reply is, for a message (never its content)."""
    return f"a list of {len(reply)}" if isinstance(reply, list) else f"a {type(reply).__name__}"


def _is_count(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < 2**63


def _counts(reply: Any, count: int, script: str) -> list[int]:
    """A reply of `count` integers >= 0 (a bare integer when `count` is 1)."""
    values = [reply] if count == 1 and not isinstance(reply, list) else reply
    if not (isinstance(values, list) and len(values) == count and all(_is_count(value) for value in values)):
        raise _WrongReply(f"{script}: expected {count} integers >= 0, got {_shape(reply)}")
    return values


def _admission(reply: Any, tokens: int) -> tuple[Admission, int]:
    """The admission a reply of `admit` says, and the fleet size it reports."""
    if not (isinstance(reply, list) and len(reply) == 6 and isinstance(reply[2], str) and reply[0] in (0, 1)
            and _is_count(reply[1]) and _is_count(reply[3], -1) and _is_count(reply[4], -1) and _is_count(reply[5])):
        raise _WrongReply(f"admit: expected [granted, wait, tag, left, left, fleet], got {_shape(reply)}")
    granted, wait, tag, requests_left, tokens_left, fleet = reply
    requests = None if requests_left < 0 else requests_left
    left = None if tokens_left < 0 else tokens_left
    if not granted:
        return Admission(False, wait / 1000, tag, None, requests, left, True), fleet
    entry = None if tag == "" else Entry(tag, tokens, True)
    return Admission(True, 0.0, "", entry, requests, left, True), fleet


_STATES: frozenset[str] = frozenset({"closed", "open", "half_open"})


def _record(reply: Any) -> BreakerRecord:
    if not (isinstance(reply, list) and len(reply) == 7 and isinstance(reply[0], str) and reply[0] in _STATES
            and reply[2] in (0, 1) and all(_is_count(value) for value in reply[1:7])):
        raise _WrongReply(f"breaker: expected [state, open ms, probe, ok, failed, consecutive, opened], "
                          f"got {_shape(reply)}")
    state = cast(BreakerState, reply[0])
    open_for, probe, ok, failed, consecutive, opened = reply[1:7]
    return BreakerRecord(state, open_for / 1000, probe == 1, ok, failed, consecutive, opened, True)
