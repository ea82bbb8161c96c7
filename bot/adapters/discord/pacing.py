"""Discord's write limits as budgets that the replies streaming at once share (no I/O).

Message writes in one channel share one bucket (about 5 per 5 s), and each interaction's
webhook has its own (about 5 per 2 s). A WriteBudget keeps every sliding window one write
under the limit, counting a write from when it is sent until `window` seconds after its
response (the server counts it somewhere in between). The last write is kept in reserve
because discord.py sleeps out the rest of the window inside the call that spends it: that
write would come back seconds after Discord applied it. Final edits wait first in line, new
pages next; partial edits are taken only when a write is free at once, otherwise skipped —
the next one carries newer text anyway. discord.py's own limiter stays as the last line of
defence.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from enum import IntEnum

log = logging.getLogger(__name__)

Clock = Callable[[], float]
MIN_INTERVAL = 1.0  # one reply alone edits about once a second
MAX_WAIT = 120.0  # past this a write goes anyway (logged) and discord.py's limiter decides
_WAKE_STEPS = 100_000  # bound on wake-ups while waiting for one write


class Priority(IntEnum):
    """Who goes first when writes are scarce (lower goes first)."""

    FINAL = 0
    NEW_PAGE = 1


class WriteBudget:
    """At most `limit - 1` writes in any `window` seconds for a bucket of `limit` (see above)."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Clock = time.monotonic,
        name: str = "a Discord bucket",
        max_wait: float = MAX_WAIT,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a budget needs a positive limit and window")
        self.name = name
        self.max_wait = max_wait
        self.limit = limit
        self.spendable = max(1, limit - 1)
        self.window = window
        self.clock = clock
        self.active = 0  # replies streaming through this bucket now
        self.touched = clock()  # last time it was handed out or used
        self._in_flight = 0
        self._done: deque[float] = deque()  # completion times of recent writes
        self._queue: list[tuple[int, int]] = []  # (priority, ticket), a heap
        self._tickets = itertools.count()
        self._wakers: dict[tuple[int, int], asyncio.Future[None]] = {}  # by ticket

    def join(self) -> None:
        """A reply starts streaming through this bucket."""
        self.active += 1

    def leave(self) -> None:
        self.active = max(0, self.active - 1)

    def interval(self) -> float:
        """Seconds between one reply's partial edits, so the active replies share the bucket."""
        return max(MIN_INTERVAL, max(1, self.active) * self.window / self.spendable)

    def idle(self) -> bool:
        """Nothing streaming, waiting or remembered lately: the budget can be forgotten."""
        now = self.clock()
        self._forget(now)
        busy = self.active or self._in_flight or self._queue or self._done
        return not busy and now - self.touched >= self.window

    def try_take(self) -> bool:
        """Claim a write if one is free now and nobody is waiting (for partial edits)."""
        if self._queue or not self._has_room(self.clock()):
            return False
        self._in_flight += 1
        return True

    def place(self) -> int:
        """A place in line to keep across several take() calls (see `take`)."""
        return next(self._tickets)

    async def take(
        self, priority: Priority, place: int | None = None, patience: float | None = None
    ) -> bool:
        """Wait for a write; finals before new pages, each in arrival order.

        With `patience`, give up after that many seconds and return False (no write taken);
        a caller that comes back with the same `place` keeps its turn meanwhile.
        """
        ticket = (int(priority), self.place() if place is None else place)
        heapq.heappush(self._queue, ticket)
        now = self.clock()
        deadline = now + self.max_wait
        give_up = deadline if patience is None else min(deadline, now + patience)
        try:
            for _ in range(_WAKE_STEPS):
                now = self.clock()
                first = self._queue[0] == ticket
                if first and self._has_room(now):
                    break
                if patience is not None and now >= give_up:
                    return False
                if now >= deadline:  # never wait in silence: say so, then send anyway
                    log.warning("no free write to %s after %.3g s (%d in flight, %d waiting); "
                                "sending anyway", self.name, self.max_wait, self._in_flight,
                                len(self._queue) - 1)
                    break
                # Only the first in line is woken when a write frees up; the others wait for
                # their turn (or their patience), not for every write in the channel.
                await self._pause(ticket, self._wait_time(now, give_up) if first
                                  else max(0.0, give_up - now))
        finally:
            self._queue.remove(ticket)
            heapq.heapify(self._queue)
            self._notify()
        self._in_flight += 1
        return True

    def release(self) -> None:
        """A write taken with take/try_take got its response (or failed)."""
        self._in_flight = max(0, self._in_flight - 1)
        self._done.append(self.clock())
        self._notify()

    def _forget(self, now: float) -> None:
        while self._done and self._done[0] <= now - self.window:
            self._done.popleft()

    def _has_room(self, now: float) -> bool:
        self._forget(now)
        return self._in_flight + len(self._done) < self.spendable

    def _wait_time(self, now: float, deadline: float) -> float:
        """How long until a write may free up (until the deadline if only a response can)."""
        if self._done and self._in_flight < self.spendable:
            return min(self._done[0] + self.window - now, deadline - now)
        return max(0.0, deadline - now)

    async def _pause(self, ticket: tuple[int, int], seconds: float) -> None:
        waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakers[ticket] = waker
        try:
            await asyncio.wait_for(waker, max(seconds, 0.001))
        except TimeoutError:
            pass  # time alone may have freed a write; the caller checks again
        finally:
            if self._wakers.get(ticket) is waker:
                del self._wakers[ticket]

    def _notify(self) -> None:
        """Wake the first in line: a write came back, or the line moved."""
        waker = self._wakers.pop(self._queue[0], None) if self._queue else None
        if waker is not None and not waker.done():
            waker.set_result(None)


class ChannelBudgets:
    """One WriteBudget per channel, shared by every reply streaming in that channel."""

    def __init__(self, limit: int, window: float, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._budgets: dict[int, WriteBudget] = {}

    def __call__(self, channel_id: int) -> WriteBudget:
        """The channel's budget (made on first use; idle ones are dropped as we go)."""
        for other in [c for c, b in self._budgets.items() if c != channel_id and b.idle()]:
            del self._budgets[other]
        if channel_id not in self._budgets:
            self._budgets[channel_id] = WriteBudget(
                self.limit, self.window, self.clock, name=f"channel {channel_id}"
            )
        budget = self._budgets[channel_id]
        budget.touched = self.clock()  # a reply about to join keeps it from being dropped
        return budget

    def __len__(self) -> int:
        return len(self._budgets)
