"""What several instances share through Redis (SUPPORTBOT_REDIS_URL): the platforms' write
budgets and a fast dedupe of event ids.

Each budget is one Lua script run on the server, so taking a slot is one atomic round trip and
the clock is Redis's own (instances' clocks never disagree about a window). The store stays
the guarantee where one exists (an event's unique key); Redis makes the common case cheap.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bot.config import Settings

log = logging.getLogger(__name__)

PREFIX = "supportbot:"
FINAL_STALE_MS = 3_000  # a waiting final not seen this long belongs to a dead waiter
COOL_DOWN = 5.0  # after Redis fails, seconds before it is asked again (budgets count alone)
DEDUPE_SECONDS = 3_600  # Slack redelivers within minutes; an hour is plenty

# A sliding window of calls for one method in one place (a Slack workspace), with one call
# kept back for every reply streaming there on any instance, and finals served in the order
# they asked, across instances.
# KEYS: calls (zset), actives (hash instance -> "n:expires"), finals (zset ticket -> asked),
#       finals_seen (hash ticket -> last seen), blocked (ms until which nothing goes)
# ARGV: limit, window ms, instance, its active replies, lease ms, kind, ticket
_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local kind, ticket = ARGV[6], ARGV[7]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4] .. ':' .. (now + tonumber(ARGV[5])))
local active = 0
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local n, exp = string.match(fields[i + 1], '^(%d+):(%d+)$')
  if n == nil or tonumber(exp) < now then
    redis.call('HDEL', KEYS[2], fields[i])
  else
    active = active + tonumber(n)
  end
end
if kind == 'final' then
  redis.call('ZADD', KEYS[3], 'NX', now, ticket)
  redis.call('HSET', KEYS[4], ticket, now)
elseif kind == 'drop' then
  redis.call('ZREM', KEYS[3], ticket)
  redis.call('HDEL', KEYS[4], ticket)
end
local tickets = redis.call('ZRANGE', KEYS[3], 0, 99)
for _, waiting in ipairs(tickets) do
  local seen = tonumber(redis.call('HGET', KEYS[4], waiting) or '0')
  if seen < now - tonumber(ARGV[8]) then
    redis.call('ZREM', KEYS[3], waiting)
    redis.call('HDEL', KEYS[4], waiting)
  end
end
local queued = redis.call('ZCARD', KEYS[3])
local used = redis.call('ZCARD', KEYS[1])
local wait = math.max(0, tonumber(redis.call('GET', KEYS[5]) or '0') - now)
if wait == 0 and used >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = math.max(1, tonumber(oldest[2]) + window - now)
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], window * 2) end
if kind == 'partial' then
  if wait > 0 or queued > 0 or used + 1 + active > limit then
    return {0, math.max(wait, 1), active, queued}
  end
elseif kind == 'final' then
  if redis.call('ZRANGE', KEYS[3], 0, 0)[1] ~= ticket then
    return {0, math.max(wait, 50), active, queued}
  end
  if wait > 0 then return {0, wait, active, queued} end
  redis.call('ZREM', KEYS[3], ticket)
  redis.call('HDEL', KEYS[4], ticket)
  queued = queued - 1
else
  return {0, wait, active, queued}
end
redis.call('ZADD', KEYS[1], now, ticket)
redis.call('PEXPIRE', KEYS[1], window * 2)
return {1, 0, active, queued}
"""

# A token bucket (chat.postMessage in one channel: about one a second, short bursts).
# KEYS: bucket (hash tokens, at), blocked. ARGV: tokens per second, burst, take (1/0).
# Returns the ms to wait (0: a token was taken, when asked to take).
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local wait = math.max(0, tonumber(redis.call('GET', KEYS[2]) or '0') - now)
if wait == 0 and tokens < 1 then wait = math.ceil((1 - tokens) * 1000 / rate) end
if wait == 0 and ARGV[3] == '1' then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""

# Nothing from this budget until `ms` from now (a 429's Retry-After), never shortened.
_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') < until_ms then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000)
end
return until_ms
"""


class SharedError(Exception):
    """Redis could not be reached or refused a command; the message names the variable."""


@dataclass(frozen=True)
class WindowAnswer:
    """What a window said: a slot taken or not, ms to wait, replies streaming everywhere, and
    finals waiting everywhere."""

    taken: bool
    wait_ms: int
    active: int
    finals_queued: int


class SharedLimits:
    """A Redis connection and the scripts the budgets run; one per process."""

    def __init__(self, client: Any, shown: str, instance: str, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._down_until = 0.0  # Redis failed: not asked again before this (monotonic)
        self.shown = shown  # the URL without its password, for messages
        self.instance = instance
        self._window = client.register_script(_WINDOW)
        self._bucket = client.register_script(_BUCKET)
        self._block = client.register_script(_BLOCK)

    @classmethod
    async def open(cls, settings: Settings, instance: str) -> SharedLimits:
        """Connect and check the server answers; SharedError naming the variable if not."""
        import redis.asyncio as redis

        client = redis.Redis.from_url(settings.redis_url.value, socket_timeout=5.0,
                                      socket_connect_timeout=5.0, health_check_interval=30,
                                      client_name=f"supportbot-{instance}")
        shared = cls(client, settings.redis_shown, instance, settings.redis_prefix)
        try:
            await shared.call(client.ping())
        except SharedError:
            await client.aclose()
            raise
        return shared

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, pending: Any) -> Any:
        """Await one Redis command; its failure becomes a SharedError without the password.
        For COOL_DOWN seconds after a failure Redis is not asked at all (a hung server would
        make every write wait out the socket timeout)."""
        from redis.exceptions import RedisError

        if time.monotonic() < self._down_until:
            with contextlib.suppress(Exception):
                pending.close()  # a coroutine never awaited
            raise SharedError(f"SUPPORTBOT_REDIS_URL={self.shown}: not answering; asked again "
                              "in a few seconds")
        try:
            return await pending
        except (RedisError, OSError) as error:
            self._down_until = time.monotonic() + COOL_DOWN
            raise SharedError(f"SUPPORTBOT_REDIS_URL={self.shown}: "
                              f"{type(error).__name__}: {_reason(error)}") from None

    def _key(self, name: str, part: str) -> str:
        # One hash tag per budget: a Redis Cluster keeps a script's keys on one node.
        return f"{self.prefix}{{{name}}}:{part}"

    async def window(self, name: str, limit: int, window: float, active: int, lease: float,
                     kind: str, ticket: str) -> WindowAnswer:
        """Run the window script for budget `name` (kind: partial / final / drop / peek)."""
        keys = [self._key(name, part) for part in
                ("calls", "actives", "finals", "finals_seen", "blocked")]
        # An instance's reserve of finals lasts two windows past its last call: a reply may
        # stream that long between two partial edits when the budget is shared by many.
        held = max(lease, 2 * window)
        args = [limit, int(window * 1000), self.instance, active, int(held * 1000), kind,
                ticket, FINAL_STALE_MS]
        taken, wait, everywhere, queued = await self.call(self._window(keys=keys, args=args))
        return WindowAnswer(bool(taken), int(wait), int(everywhere), int(queued))

    async def bucket(self, name: str, rate: float, burst: int, take: bool) -> float:
        """Seconds until the bucket `name` has a token (0: taken now, when `take`)."""
        keys = [self._key(name, "bucket"), self._key(name, "blocked")]
        wait = await self.call(self._bucket(keys=keys, args=[rate, burst, int(take)]))
        return int(wait) / 1000

    async def block(self, name: str, seconds: float) -> None:
        """Nothing from budget `name` for `seconds` (a 429's Retry-After), on every instance."""
        await self.call(self._block(keys=[self._key(name, "blocked")],
                                    args=[max(1, int(seconds * 1000))]))

    async def handled(self, event: str) -> bool:
        """True when an instance has stored `event` (within the hour): the fast dedupe."""
        return bool(await self.call(self.client.exists(f"{self.prefix}event:{event}")))

    async def mark_handled(self, event: str) -> None:
        await self.call(self.client.set(f"{self.prefix}event:{event}", self.instance,
                                        ex=DEDUPE_SECONDS))


def new_ticket() -> str:
    return uuid.uuid4().hex


def _reason(error: BaseException) -> str:
    """The first line of the error's text, cut short (redis-py names the address it
    dialled, never the password)."""
    text = str(error).split("\n", 1)[0]
    return text[:200] or "no answer"
