"""Slack's rate limits as budgets shared by every reply in a workspace (no I/O).

chat.update is Tier 3 per workspace (about 50 a minute) and shared by all replies streaming
at once, so one EditBudget per workspace decides: partial edits only while room remains for
every reply's final edit, final edits wait their turn (first come, first served), and a 429
pauses the whole workspace for its Retry-After. chat.postMessage is limited per channel
(about one a second, short bursts allowed), which ChannelPacer follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bot.token_bucket import TokenBucket

Clock = Callable[[], float]
MIN_INTERVAL = 1.0  # one reply alone edits about once a second
_EPSILON = 0.01  # sleep a hair past a slot's expiry so the next check finds it free


@dataclass
class Watch:
    """What a budget tells the figures (/metrics): each 429, and how long each wait took."""

    on_limited: Callable[[], None] | None = None
    on_waited: Callable[[float], None] | None = None

    def limited(self) -> None:
        if self.on_limited is not None:
            self.on_limited()

    @contextlib.contextmanager
    def waiting(self, clock: Clock) -> Iterator[None]:
        started = clock()
        try:
            yield
        finally:
            if self.on_waited is not None:
                self.on_waited(clock() - started)


class EditBudget:
    """A sliding window of calls for one method tier, shared by the replies streaming now."""

    def __init__(
        self,
        limit: int,
        window: float,
        min_interval: float = MIN_INTERVAL,
        clock: Clock = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a budget needs a positive limit and window")
        self.limit = limit
        self.window = window
        self.min_interval = min_interval
        self.clock = clock
        self.active = 0
        self._sent: deque[float] = deque()
        self._blocked_until = float("-inf")
        self._finals = asyncio.Lock()  # asyncio locks are FIFO: finals go in arrival order
        self.watch = Watch()

    def join(self) -> None:
        """A reply starts streaming: it will need one final call from this budget."""
        self.active += 1

    def leave(self) -> None:
        self.active = max(0, self.active - 1)

    def interval(self) -> float:
        """Seconds between one reply's partial calls, so all active replies share the rest."""
        active = max(1, self.active)
        spare = self.limit - active  # one call kept back per active reply, for its final
        if spare <= 0:
            return self.window
        return max(self.min_interval, self.window * active / spare)

    def used(self) -> int:
        """Calls made in the current window."""
        now = self.clock()
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        return len(self._sent)

    def try_partial(self) -> bool:
        """Take a slot for a partial call if one is free beyond the finals' reserve."""
        if self.clock() < self._blocked_until or self.finals_waiting:
            return False
        if self.used() + 1 + self.active > self.limit:
            return False
        self._sent.append(self.clock())
        return True

    @property
    def finals_waiting(self) -> bool:
        return self._finals.locked()

    def final_wait(self) -> float:
        """Seconds until a final call may go (0: now)."""
        now = self.clock()
        blocked = self._blocked_until - now
        if self.used() < self.limit:
            return max(0.0, blocked)
        return max(blocked, self._sent[0] + self.window - now, 0.0)

    async def acquire_final(self, timeout: float) -> None:
        """Wait for a slot (finals in arrival order), take it; TimeoutError after `timeout`."""
        with self.watch.waiting(self.clock):
            await self._acquire_final(timeout)

    async def _acquire_final(self, timeout: float) -> None:
        deadline = self.clock() + timeout
        async with self._finals:
            for _ in range(10_000):  # each pass sleeps until a slot should be free
                wait = self.final_wait()
                if wait <= 0:
                    self._sent.append(self.clock())
                    return
                if self.clock() + wait > deadline:
                    raise TimeoutError("no Slack rate-limit slot before the deadline")
                await asyncio.sleep(wait + _EPSILON)
        raise TimeoutError("no Slack rate-limit slot found")

    def back_off(self, seconds: float) -> None:
        """Slack answered 429: no call from this budget until Retry-After has passed."""
        self._blocked_until = max(self._blocked_until, self.clock() + seconds)

    # What the surfaces call: the same, awaitable, so a budget shared by several instances
    # (shared_pacing.py) can ask Redis.

    async def take_partial(self) -> bool:
        return self.try_partial()

    async def pause(self, seconds: float) -> None:
        self.watch.limited()
        self.back_off(seconds)


class ChannelPacer:
    """chat.postMessage in one channel: a token bucket, paused by a 429's Retry-After."""

    def __init__(self, rate: float = 1.0, burst: int = 3, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._bucket = TokenBucket(rate, burst, clock)
        self._blocked_until = float("-inf")
        self._lock = asyncio.Lock()
        self.watch = Watch()

    def wait(self) -> float:
        """Seconds until a post may go (0: now)."""
        return max(self._bucket.wait(), self._blocked_until - self.clock(), 0.0)

    def busy(self, within: float) -> bool:
        """True when a post now would wait longer than `within` seconds."""
        return self._lock.locked() or self.wait() > within

    def try_take(self) -> bool:
        """Take a token if one is free now, without waiting."""
        if self._lock.locked() or self.wait() > 0:
            return False
        self._bucket.take()
        return True

    async def take(self, timeout: float) -> None:
        """Wait for a token (posts in arrival order), take it; TimeoutError after `timeout`."""
        with self.watch.waiting(self.clock):
            await self._take(timeout)

    async def _take(self, timeout: float) -> None:
        deadline = self.clock() + timeout
        async with self._lock:
            for _ in range(10_000):  # each pass sleeps until a token should be free
                wait = self.wait()
                if wait <= 0:
                    self._bucket.take()
                    return
                if self.clock() + wait > deadline:
                    raise TimeoutError("no chat.postMessage slot before the deadline")
                await asyncio.sleep(wait + _EPSILON)
        raise TimeoutError("no chat.postMessage slot found")

    def back_off(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, self.clock() + seconds)

    async def take_now(self) -> bool:
        return self.try_take()

    async def pause(self, seconds: float) -> None:
        self.watch.limited()
        self.back_off(seconds)


@dataclass(frozen=True)
class Tiers:
    """Calls per minute we allow ourselves, a margin below Slack's published tiers."""

    update: int = 45  # chat.update, Tier 3 (50+)
    delete: int = 45  # chat.delete, Tier 3, a budget of its own
    reactions: int = 45  # reactions.add and reactions.remove, Tier 3 each
    append: int = 90  # chat.appendStream, Tier 4 (100+)
    stream_ends: int = 18  # chat.startStream and chat.stopStream, Tier 2 (20+)
    window: float = 60.0
    # chat.postMessage per channel per second: Slack allows about 1; the margin absorbs the
    # jitter between when we send and when Slack counts the call.
    post_rate: float = 0.8
    post_burst: int = 3


@dataclass
class WorkspacePacing:
    """Every budget one workspace's replies share."""

    tiers: Tiers
    clock: Clock = time.monotonic
    edits: EditBudget = field(init=False)
    deletes: EditBudget = field(init=False)
    reactions: EditBudget = field(init=False)
    appends: EditBudget = field(init=False)
    starts: EditBudget = field(init=False)
    stops: EditBudget = field(init=False)
    channels: dict[str, ChannelPacer] = field(default_factory=dict)
    native_off: bool = False  # set when the workspace refused native streaming
    figures: Figures | None = None  # /metrics: 429s and waits, per method

    def __post_init__(self) -> None:
        t = self.tiers
        self.edits = self._watched("chat.update", self.budget("update", t.update))
        self.deletes = self._watched("chat.delete", self.budget("delete", t.delete))
        self.reactions = self._watched("reactions", self.budget("reactions", t.reactions))
        self.appends = self._watched("chat.appendStream",
                                     self.budget("append", t.append, min_interval=0.5))
        self.starts = self._watched("chat.startStream", self.budget("start", t.stream_ends))
        self.stops = self._watched("chat.stopStream", self.budget("stop", t.stream_ends))

    def _watched(self, method: str, budget: B) -> B:
        if self.figures is not None:
            budget.watch = self.figures.watch(method)
        return budget

    def budget(self, method: str, limit: int, min_interval: float = MIN_INTERVAL) -> EditBudget:
        """The budget of one method tier in this workspace."""
        return EditBudget(limit, self.tiers.window, min_interval, self.clock)

    def pacer(self, channel: str) -> ChannelPacer:
        """The chat.postMessage pace of one channel."""
        return ChannelPacer(self.tiers.post_rate, self.tiers.post_burst, self.clock)

    def channel(self, channel: str) -> ChannelPacer:
        pacer = self.channels.get(channel)
        if pacer is None:
            pacer = self.channels[channel] = self._watched("chat.postMessage", self.pacer(channel))
        return pacer


class Figures(Protocol):
    """Where budgets report (bot.metrics.Metrics, for one platform)."""

    def watch(self, method: str) -> Watch: ...


B = TypeVar("B", EditBudget, ChannelPacer)


class SlackPacing:
    """One WorkspacePacing per Slack workspace, made on first use."""

    def __init__(self, tiers: Tiers | None = None, clock: Clock = time.monotonic,
                 figures: Figures | None = None) -> None:
        self.tiers = tiers or Tiers()
        self.clock = clock
        self.figures = figures
        self._teams: dict[str, WorkspacePacing] = {}

    def workspace(self, team_id: str) -> WorkspacePacing:
        pacing = self._teams.get(team_id)
        if pacing is None:
            pacing = self._teams[team_id] = self.made(team_id)
        return pacing

    def made(self, team_id: str) -> WorkspacePacing:
        return WorkspacePacing(self.tiers, self.clock, figures=self.figures)
