"""Shared limits in Redis, for processes on many machines; every change is one Lua script, so it is atomic.

Keys (one hash tag per endpoint, so a Redis Cluster keeps them on one node): ``{<name>}:leases``, a sorted set of
lease ids scored by expiry; ``{<name>}:state``, a hash of the bucket levels and stamps and ``paused_until``.
Times are the Redis server's clock (``TIME``), the same for every machine; tests pass their own ``now``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

from pref_assets.clients.shared_limits import FULL_POLL, Budget, SharedLimitsError

# state kept after the last change: longer than any pause or bucket refill
STATE_TTL_S = 3600

_NOW = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function level(name, rate, cap)
  local l = tonumber(redis.call('HGET', KEYS[2], name .. ':level'))
  local s = tonumber(redis.call('HGET', KEYS[2], name .. ':stamp'))
  if not l or not s then return cap end
  return math.min(cap, l + math.max(0, now - s) * rate)
end
"""

# ARGV: now|'', lease, ttl, max_concurrency, poll, then per bucket (requests, tokens): rate|'', capacity, amount
ACQUIRE = (
    _NOW
    + """
local paused = tonumber(redis.call('HGET', KEYS[2], 'paused_until')) or 0
if paused > now then return tostring(paused - now) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return ARGV[5] end
local wait, levels = 0, {}
for i, name in ipairs({'requests', 'tokens'}) do
  local rate = tonumber(ARGV[3 + 3 * i])
  if rate then
    local cap, amount = tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i])
    local l = level(name, rate, cap)
    local need = math.min(amount, cap)
    if l < need then wait = math.max(wait, (need - l) / rate) end
    levels[name] = l - amount
  end
end
if wait > 0 then return tostring(wait) end
for name, l in pairs(levels) do
  redis.call('HSET', KEYS[2], name .. ':level', tostring(l), name .. ':stamp', tostring(now))
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 2))
redis.call('EXPIRE', KEYS[2], """
    + str(STATE_TTL_S)
    + """)
return '0'
"""
)

# ARGV: now|'', token rate|'', token capacity, tokens to charge, pause seconds, released lease ids...
SETTLE = (
    _NOW
    + """
for i = 6, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
local rate, charge = tonumber(ARGV[2]), tonumber(ARGV[4])
if rate and charge ~= 0 then
  local l = level('tokens', rate, tonumber(ARGV[3])) - charge
  redis.call('HSET', KEYS[2], 'tokens:level', tostring(l), 'tokens:stamp', tostring(now))
end
local pause = tonumber(ARGV[5])
if pause > 0 then
  local until_ = now + pause
  if until_ > (tonumber(redis.call('HGET', KEYS[2], 'paused_until')) or 0) then
    redis.call('HSET', KEYS[2], 'paused_until', tostring(until_))
    redis.call('EXPIRE', KEYS[2], math.max("""
    + str(STATE_TTL_S)
    + """, math.ceil(pause)))
  end
end
return 0
"""
)

# ARGV: now|'', ttl, lease ids... (only leases still present are extended)
RENEW = (
    _NOW
    + """
local expires = now + tonumber(ARGV[2])
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 2))
return 0
"""
)


class RedisStore:
    """An endpoint's shared limits under the keys ``{name}:*`` of the Redis at ``url``.

    ``clock`` (seconds) replaces the server's clock, for tests; acquiring uses an asyncio client per event loop,
    renewing and settling a blocking one (they run in the limits thread).
    """

    def __init__(self, url: str, name: str, *, lease_ttl: float, clock: Any = None) -> None:
        self.url = url
        self.keys = [f"{{{name}}}:leases", f"{{{name}}}:state"]
        self.lease_ttl = lease_ttl
        self.clock = clock
        self._sync = redis.Redis.from_url(url)
        self._settle = self._sync.register_script(SETTLE)
        self._renew = self._sync.register_script(RENEW)
        self._acquire_sync = self._sync.register_script(ACQUIRE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acquire_async: Any = None

    async def acquire(self, lease: str, budget: Budget, tokens: float) -> float:
        """Take a lease and one request's budget and return 0, or return how long to wait."""
        script = self._script_of_loop()
        try:
            return float(await script(keys=self.keys, args=self._acquire_args(lease, budget, tokens)))
        except redis.RedisError as err:
            raise SharedLimitsError(f"shared limits in Redis: {type(err).__name__}: {err}") from err

    def acquire_now(self, lease: str, budget: Budget, tokens: float) -> float:
        """``acquire``, blocking."""
        return float(self._acquire_sync(keys=self.keys, args=self._acquire_args(lease, budget, tokens)))

    def settle(self, released: Sequence[str], budget: Budget, tokens: float, pause: float) -> None:
        """Drop ``released`` leases, charge ``tokens`` to the token bucket, pause ``pause`` seconds from now."""
        rate, capacity = budget.rate(budget.tpm) or ("", 0.0)
        self._settle(keys=self.keys, args=[self._now(), rate, capacity, tokens, pause, *released])

    def renew(self, leases: Sequence[str]) -> None:
        """Extend ``leases`` to ``lease_ttl`` from now."""
        self._renew(keys=self.keys, args=[self._now(), self.lease_ttl, *leases])

    def in_flight(self) -> int:
        """Return how many unexpired leases there are."""
        now = self.clock() if self.clock else float("-inf")
        if self.clock is None:
            seconds, micros = self._sync.time()
            now = seconds + micros / 1e6
        return int(self._sync.zcount(self.keys[0], f"({now}", "+inf"))

    def _acquire_args(self, lease: str, budget: Budget, tokens: float) -> list[Any]:
        args: list[Any] = [self._now(), lease, self.lease_ttl, budget.max_concurrency, FULL_POLL]
        for per_minute, amount in ((budget.rpm, 1.0), (budget.tpm, tokens)):
            rate, capacity = budget.rate(per_minute) or ("", 0.0)
            args += [rate, capacity, amount]
        return args

    def _now(self) -> str | float:
        return self.clock() if self.clock is not None else ""

    def _script_of_loop(self) -> Any:
        """Return the acquire script bound to a client of the running event loop (a new loop gets a new client)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            client = redis.asyncio.Redis.from_url(self.url)
            self._loop, self._acquire_async = loop, client.register_script(ACQUIRE)
        return self._acquire_async
