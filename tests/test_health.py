"""The event-loop lag sampler: it sees a blocked loop, keeps a bounded hour, and says so."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from bot.health import LoopLag


async def test_a_blocked_loop_shows_in_the_lag_and_a_quiet_one_does_not() -> None:
    lag = LoopLag(every=0.02)
    watcher = asyncio.create_task(lag.watch())
    await asyncio.sleep(0.3)
    quiet = lag.percentiles()
    time.sleep(0.3)  # something blocks the loop
    await asyncio.sleep(0.1)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    blocked = lag.percentiles()
    assert quiet is not None and quiet["max_ms"] < 200
    assert blocked is not None and blocked["max_ms"] >= 250


def test_only_the_kept_samples_count_and_a_block_is_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lag = LoopLag(kept=4)
    with caplog.at_level(logging.WARNING, logger="bot.health"):
        for value in (2.0, 0.9, 0.001, 0.002, 0.003, 0.004):
            lag.add(value)
    figures = lag.percentiles()
    assert figures is not None and figures["samples"] == 4
    assert figures["max_ms"] == pytest.approx(4.0)  # 2.0 and 0.9 s have left the buffer
    assert [r.getMessage() for r in caplog.records] == [
        "the event loop was blocked for 2.0 s: replies stall while it is"]
    assert LoopLag().percentiles() is None
