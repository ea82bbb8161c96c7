"""Slack's budgets shared by every instance through Redis (SUPPORTBOT_REDIS_URL).

The same rules as pacing.py — partials only while every reply streaming in the workspace, on
any instance, keeps a slot for its final; finals in the order they asked; a 429 pauses the
workspace everywhere — decided by one script on the Redis server per call. If Redis stops
answering, a budget falls back to its in-process rules (logged once) rather than stop replies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from bot.adapters.slack.pacing import (
    MIN_INTERVAL,
    ChannelPacer,
    Clock,
    EditBudget,
    Figures,
    SlackPacing,
    Tiers,
    WorkspacePacing,
)
from bot.shared import SharedError, SharedLimits, WindowAnswer, new_ticket

log = logging.getLogger(__name__)

POLL = 0.25  # longest sleep of a waiting final: it says it is still waiting this often
_STEPS = 100_000  # bound on the passes of one wait


async def pause_everywhere(shared: SharedLimits, name: str, seconds: float) -> SharedError | None:
    """Block budget `name` on every instance for a 429's Retry-After; the error if Redis
    could not be told (this instance has paused itself already)."""
    try:
        await shared.block(name, seconds)
    except SharedError as error:
        return error
    return None


class SharedEditBudget(EditBudget):
    """One method tier of one workspace, counted on the Redis server for all instances."""

    def __init__(self, shared: SharedLimits, name: str, limit: int, window: float,
                 min_interval: float, lease: float, clock: Clock = time.monotonic) -> None:
        super().__init__(limit, window, min_interval, clock)
        self.shared = shared
        self.name = name
        self.lease = lease
        self.everywhere = 0  # replies streaming here on every instance, as last heard
        self.queued = 0  # finals waiting on every instance, as last heard
        self.last_wait = 0.0
        self._fallen_back = False  # Redis failed: this process's own count decides meanwhile

    def interval(self) -> float:
        active = max(1, self.active, 0 if self._fallen_back else self.everywhere)
        spare = self.limit - active
        if spare <= 0:
            return self.window
        return max(self.min_interval, self.window * active / spare)

    @property
    def finals_waiting(self) -> bool:
        return super().finals_waiting or (not self._fallen_back and self.queued > 0)

    def final_wait(self) -> float:
        return super().final_wait() if self._fallen_back else self.last_wait

    async def take_partial(self) -> bool:
        answer = await self._ask("partial", new_ticket())
        return self.try_partial() if answer is None else answer.taken

    async def pause(self, seconds: float) -> None:
        self.watch.limited()
        self.back_off(seconds)
        failed = await pause_everywhere(self.shared, self.name, seconds)
        if failed is not None:
            self._fall_back(failed)

    async def _acquire_final(self, timeout: float) -> None:
        """Wait for this workspace's next slot, in line with every instance's finals."""
        deadline = self.clock() + timeout
        async with self._finals:
            ticket = new_ticket()
            try:
                for _ in range(_STEPS):
                    answer = await self._ask("final", ticket)
                    if answer is None:  # Redis is gone: this process's own budget decides
                        break
                    if answer.taken:
                        return
                    wait = answer.wait_ms / 1000
                    if self.clock() + min(wait, POLL) > deadline:
                        raise TimeoutError("no Slack rate-limit slot before the deadline")
                    await asyncio.sleep(min(wait, POLL))
            except BaseException:
                await self._drop(ticket)
                raise
        await super()._acquire_final(max(0.0, deadline - self.clock()))

    async def _ask(self, kind: str, ticket: str) -> WindowAnswer | None:
        try:
            answer = await self.shared.window(self.name, self.limit, self.window, self.active,
                                              self.lease, kind, ticket)
        except SharedError as error:
            self._fall_back(error)
            return None
        if self._fallen_back:
            log.info("Redis answers again; Slack's %s budget is shared again",
                     self.name.rsplit(":", 1)[-1])
            self._fallen_back = False
        self.everywhere, self.queued = answer.active, answer.finals_queued
        self.last_wait = answer.wait_ms / 1000
        if answer.taken:
            self._sent.append(self.clock())  # the local count backs a fall-back
        return answer

    async def _drop(self, ticket: str) -> None:
        try:
            await asyncio.shield(self.shared.window(self.name, self.limit, self.window,
                                                    self.active, self.lease, "drop", ticket))
        except SharedError:
            pass  # a ticket not refreshed is pruned within seconds by the next call anyway

    def _fall_back(self, error: SharedError) -> None:
        if not self._fallen_back:
            log.error("%s; Slack's %s budget is kept by this instance alone until it answers",
                      error, self.name.rsplit(":", 1)[-1])
            self._fallen_back = True


class SharedChannelPacer(ChannelPacer):
    """chat.postMessage in one channel, one token bucket on the Redis server."""

    def __init__(self, shared: SharedLimits, name: str, rate: float, burst: int,
                 clock: Clock = time.monotonic) -> None:
        super().__init__(rate, burst, clock)
        self.shared = shared
        self.name = name

    async def take_now(self) -> bool:
        if self._lock.locked():
            return False
        wait = await self._ask(take=True)
        return self.try_take() if wait is None else wait == 0

    async def _take(self, timeout: float) -> None:
        deadline = self.clock() + timeout
        async with self._lock:
            for _ in range(_STEPS):
                wait = await self._ask(take=True)
                if wait is None:
                    break
                if wait == 0:
                    return
                if self.clock() + wait > deadline:
                    raise TimeoutError("no chat.postMessage slot before the deadline")
                await asyncio.sleep(wait)
        await super()._take(max(0.0, deadline - self.clock()))

    async def pause(self, seconds: float) -> None:
        self.watch.limited()
        self.back_off(seconds)
        failed = await pause_everywhere(self.shared, self.name, seconds)
        if failed is not None:
            log.error("%s; pausing this instance only", failed)

    async def _ask(self, take: bool) -> float | None:
        try:
            return await self.shared.bucket(self.name, self.rate, self.burst, take)
        except SharedError as error:
            log.error("%s; chat.postMessage paced by this instance alone", error)
            return None


@dataclass
class SharedWorkspacePacing(WorkspacePacing):
    """WorkspacePacing whose budgets live on the Redis server."""

    shared: SharedLimits | None = None
    team: str = ""
    lease: float = 15.0

    def budget(self, method: str, limit: int, min_interval: float = MIN_INTERVAL) -> EditBudget:
        assert self.shared is not None
        return SharedEditBudget(self.shared, f"slack:{self.team}:{method}", limit,
                                self.tiers.window, min_interval, self.lease, self.clock)

    def pacer(self, channel: str) -> ChannelPacer:
        assert self.shared is not None
        return SharedChannelPacer(self.shared, f"slack:{self.team}:post:{channel}",
                                  self.tiers.post_rate, self.tiers.post_burst, self.clock)


class SharedSlackPacing(SlackPacing):
    """One SharedWorkspacePacing per workspace."""

    def __init__(self, shared: SharedLimits, lease: float, tiers: Tiers | None = None,
                 clock: Clock = time.monotonic, figures: Figures | None = None) -> None:
        super().__init__(tiers, clock, figures)
        self.shared = shared
        self.lease = lease

    def made(self, team_id: str) -> WorkspacePacing:
        return SharedWorkspacePacing(self.tiers, self.clock, figures=self.figures,
                                     shared=self.shared, team=team_id, lease=self.lease)
