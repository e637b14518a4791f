"""Token buckets for rate limits: in this process's memory, or in Redis shared by all replicas.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; a request takes one
token or is refused with the time until one is there.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

from lookalike.core.errors import Misconfigured

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    # Seconds until the refused request would be allowed; 0 when allowed.
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1 (the header has no fractions)."""
        return str(max(1, math.ceil(self.retry_after_s)))


ALLOWED = Verdict(True)


class TokenBuckets(Protocol):
    async def take(self, key: str, rate: float, burst: int) -> Verdict: ...

    async def aclose(self) -> None: ...


class MemoryTokenBuckets:
    """Buckets in a dict. `clock` (seconds, monotonic) can be replaced in tests."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    async def take(self, key: str, rate: float, burst: int) -> Verdict:
        return self.take_now(key, rate, burst)

    def take_now(self, key: str, rate: float, burst: int) -> Verdict:
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + max(0.0, now - at) * rate)
            if tokens >= 1.0:
                self._store(key, tokens - 1.0, now, rate, burst)
                return ALLOWED
            self._store(key, tokens, now, rate, burst)
            return Verdict(False, (1.0 - tokens) / rate)

    def _store(self, key: str, tokens: float, now: float, rate: float, burst: int) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            # Many distinct clients: forget buckets that have refilled (they start full anyway).
            full_after = burst / rate
            self._buckets = {
                k: v for k, v in self._buckets.items() if now - v[1] < full_after or k == key
            }

    async def aclose(self) -> None:
        return None


# Atomic refill-and-take in Redis. The server's clock is the one clock all replicas share.
# Numbers go back as strings: Redis truncates Lua numbers to integers.
_TAKE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


class RedisTokenBuckets:
    """Buckets in Redis (`redis_url`), one Lua script call per request.

    When Redis cannot be reached the request is let through (and that is logged, once a
    minute): an outage of the limiter must not take the API down with it.
    """

    def __init__(self, url: str, prefix: str = "lookalike:") -> None:
        self.url = url
        self.prefix = prefix
        # redis.asyncio connections belong to the event loop that opened them.
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Redis, AsyncScript]
        ] = weakref.WeakKeyDictionary()
        self._last_warning = -math.inf

    def _script(self) -> AsyncScript:
        import redis.asyncio

        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            client = redis.asyncio.Redis.from_url(
                self.url, socket_connect_timeout=1.0, socket_timeout=1.0
            )
            entry = (client, client.register_script(_TAKE_LUA))
            self._clients[loop] = entry
        return entry[1]

    async def take(self, key: str, rate: float, burst: int) -> Verdict:
        import redis.exceptions

        try:
            allowed, wait = await self._script()(keys=[self.prefix + key], args=[rate, burst])
        except (redis.exceptions.RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("rate limits not enforced: Redis at %s failed: %s", self.url, exc)
            return ALLOWED
        if int(allowed):
            return ALLOWED
        return Verdict(False, float(wait))

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        entry = self._clients.pop(loop, None)
        if entry is not None:
            await entry[0].aclose()


def open_token_buckets(redis_url: str | None, prefix: str) -> TokenBuckets:
    """Redis buckets when `redis_url` is set, else in-memory ones."""
    if not redis_url:
        return MemoryTokenBuckets()
    try:
        import redis  # noqa: F401
    except ImportError:
        raise Misconfigured(
            "LOOKALIKE_REDIS_URL is set but the Redis client is not installed; "
            "run `pip install 'lookalike[redis]'`"
        ) from None
    return RedisTokenBuckets(redis_url, prefix)
