"""How well the process keeps up: event-loop lag, sampled while `run` serves.

A reply streams only as smoothly as the loop wakes its tasks. Lag is how late a short sleep
comes back: near zero on a healthy loop, long when something blocks it (a slow query on the
loop, a huge message parsed at once). A blocked loop is logged when it happens; at shutdown
one line gives the run's percentiles, so an operator (or a soak benchmark) can read them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import Callable

log = logging.getLogger(__name__)

EVERY = 0.1  # seconds between samples
KEPT = 36_000  # the last hour of samples, in a buffer allocated once
BLOCKED = 0.5  # a single lag this long is worth a warning
WARN_EVERY = 60.0  # seconds between two such warnings


class LoopLag:
    def __init__(self, every: float = EVERY, kept: int = KEPT,
                 on_sample: Callable[[float], None] | None = None) -> None:
        self.every = every
        self.on_sample = on_sample  # the /metrics gauge, say
        self._samples = array("d", bytes(8 * kept))
        self._count = 0
        self._warned_at = -WARN_EVERY

    def add(self, lag: float) -> None:
        self._samples[self._count % len(self._samples)] = lag
        self._count += 1
        if self.on_sample is not None:
            self.on_sample(lag)
        now = time.monotonic()
        if lag >= BLOCKED and now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning("the event loop was blocked for %.1f s: replies stall while it is", lag)

    def percentiles(self) -> dict[str, float] | None:
        """p50, p99 and max lag in milliseconds over the kept samples; None before any."""
        held = min(self._count, len(self._samples))
        if held == 0:
            return None
        ordered = sorted(self._samples[:held])

        def rank(pct: float) -> float:
            return ordered[min(held - 1, max(0, round(pct / 100 * held) - 1))] * 1000

        return {"samples": held, "p50_ms": rank(50), "p99_ms": rank(99),
                "max_ms": ordered[-1] * 1000}

    async def watch(self) -> None:
        """Sample until cancelled. Timed by the clock itself, not the loop's: uvloop's time
        is the start of the loop's current pass, to the millisecond."""
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.every)
            self.add(max(0.0, time.monotonic() - asked - self.every))

    def report(self) -> None:
        figures = self.percentiles()
        if figures is not None:
            log.info("event loop lag over %d samples: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                     figures["samples"], figures["p50_ms"], figures["p99_ms"],
                     figures["max_ms"])
