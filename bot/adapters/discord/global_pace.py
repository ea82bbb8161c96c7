"""Discord's global limit: a bot makes at most 50 REST requests a second over all its routes,
shards and processes (interaction callbacks and webhooks aside). A burst of new questions —
typing, replies, threads, 25 channels at once — would pass it and draw global 429s, which
discord.py then waits out for every route. So every request the client sends waits for a
token here first; with Redis (SUPPORTBOT_REDIS_URL) one bucket serves every instance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import discord

from bot.shared import SharedError, SharedLimits
from bot.token_bucket import TokenBucket

log = logging.getLogger(__name__)

RATE = 45.0  # requests a second: a margin under Discord's 50
BURST = 45
MAX_WAIT = 60.0  # past this a request goes anyway, and discord.py's limiter decides
_EXEMPT = ("/webhooks/", "/interactions/")


class GlobalPace:
    """A token bucket of REST requests for one bot token (in Redis when it is shared)."""

    def __init__(self, shared: SharedLimits | None = None, rate: float = RATE,
                 burst: int = BURST, clock: Callable[[], float] = time.monotonic,
                 bot: str = "") -> None:
        self.shared = shared
        self.name = f"discord:{bot}:global"  # one bucket per bot token, not per Redis
        self._alone = False  # Redis failed: this process counts alone until it answers
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._bucket = TokenBucket(rate, burst, clock)  # when Redis is not there to ask
        self._lock = asyncio.Lock()

    async def take(self, max_wait: float = MAX_WAIT) -> None:
        """Wait for a request's token; after `max_wait` go anyway (logged)."""
        started = self.clock()
        async with self._lock:  # requests in the order they asked
            for _ in range(int(max_wait * self.rate) + 100):
                wait = await self._try()
                if wait <= 0:
                    break
                if self.clock() - started + wait > max_wait:
                    log.warning("no Discord request slot within %.0f s; sending anyway",
                                max_wait)
                    break
                await asyncio.sleep(wait)

    async def _try(self) -> float:
        if self.shared is not None:
            try:
                wait = await self.shared.bucket(self.name, self.rate, self.burst, True)
            except SharedError as error:
                if not self._alone:
                    log.error("%s; Discord's global limit is kept by this instance alone",
                              error)
                self._alone = True
            else:
                self._alone = False
                return wait
        wait = self._bucket.wait()
        if wait <= 0:
            self._bucket.take()
        return wait


def paced(client: discord.Client, pace: GlobalPace) -> None:
    """Make every REST request of `client`, but interaction callbacks and webhooks, wait for
    `pace` before discord.py sends it."""
    send = client.http.request

    async def request(route: discord.http.Route, **kwargs: Any) -> Any:
        if not route.path.startswith(_EXEMPT):
            await pace.take()
        return await send(route, **kwargs)

    client.http.request = request  # type: ignore[method-assign]
