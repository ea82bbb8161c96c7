"""WriteBudget: never more writes than the bucket allows, finals first, partials skipped."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.adapters.discord.pacing import ChannelBudgets, Priority, WriteBudget
from bot.adapters.discord.pages import PageWriter


def test_partial_writes_stop_one_short_of_the_limit_until_the_window_passes() -> None:
    # The bucket's last write stays in reserve: discord.py sleeps out the window inside it.
    now = [0.0]
    budget = WriteBudget(4, 5.0, clock=lambda: now[0])
    for _ in range(3):
        assert budget.try_take()
        budget.release()
    assert not budget.try_take()
    now[0] = 4.9
    assert not budget.try_take()
    now[0] = 5.01
    assert budget.try_take()


def test_a_write_in_flight_counts_until_its_response() -> None:
    now = [0.0]
    budget = WriteBudget(1, 1.0, clock=lambda: now[0])
    assert budget.try_take()
    now[0] = 10.0  # long after sending, but no response yet
    assert not budget.try_take()
    budget.release()
    assert not budget.try_take()  # counted for a window after its response
    now[0] = 11.01
    assert budget.try_take()


def test_interval_shares_the_bucket_among_active_replies() -> None:
    budget = WriteBudget(6, 5.0)  # five writes to spend per 5 s
    assert budget.interval() == 1.0
    for _ in range(10):
        budget.join()
    assert budget.interval() == 10.0
    for _ in range(10):
        budget.leave()
    assert budget.interval() == 1.0


async def test_waiting_writes_stay_under_the_limit_in_any_window() -> None:
    budget = WriteBudget(4, 0.2)
    sent: list[float] = []

    async def write() -> None:
        await budget.take(Priority.NEW_PAGE)
        sent.append(time.monotonic())
        await asyncio.sleep(0.005)
        budget.release()

    await asyncio.wait_for(asyncio.gather(*(write() for _ in range(10))), 5)
    assert len(sent) == 10
    for i, at in enumerate(sent):
        assert sum(1 for other in sent[i:] if other < at + 0.2) <= 3


async def test_finals_go_before_new_pages_and_partials_wait_for_both() -> None:
    budget = WriteBudget(1, 0.1)
    assert budget.try_take()
    order: list[str] = []

    async def wait(name: str, priority: Priority) -> None:
        await budget.take(priority)
        order.append(name)
        budget.release()

    page = asyncio.create_task(wait("page", Priority.NEW_PAGE))
    await asyncio.sleep(0.01)
    final = asyncio.create_task(wait("final", Priority.FINAL))
    await asyncio.sleep(0.01)
    budget.release()
    assert not budget.try_take()  # someone is waiting: a partial edit does not jump the queue
    await asyncio.wait_for(asyncio.gather(page, final), 2)
    assert order == ["final", "page"]


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    budget = WriteBudget(1, 0.05)
    assert budget.try_take()
    waiter = asyncio.create_task(budget.take(Priority.FINAL))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    budget.release()
    await asyncio.sleep(0.06)
    assert budget.try_take()


async def test_an_impatient_waiter_keeps_its_turn_when_it_comes_back() -> None:
    budget = WriteBudget(2, 0.05)
    assert budget.try_take()  # the only write, in flight
    mine = budget.place()
    assert not await budget.take(Priority.NEW_PAGE, mine, patience=0.02)  # gave up in time
    order: list[str] = []

    async def later() -> None:
        await budget.take(Priority.NEW_PAGE)
        order.append("later")
        budget.release()

    other = asyncio.create_task(later())  # joined the line after `mine` was handed out
    await asyncio.sleep(0.01)
    budget.release()
    assert await asyncio.wait_for(budget.take(Priority.NEW_PAGE, mine), 2)
    order.append("mine")
    budget.release()
    await asyncio.wait_for(other, 2)
    assert order == ["mine", "later"]


async def test_a_write_that_waited_too_long_is_logged_then_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A write that never comes back holds the bucket; the next one must not wait in silence.
    budget = WriteBudget(2, 10.0, name="channel 7", max_wait=0.05)
    assert budget.try_take()  # in flight, never released
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="bot.adapters.discord.pacing"):
        await asyncio.wait_for(budget.take(Priority.FINAL), 2)
    assert 0.04 <= time.monotonic() - started < 1.0
    assert "no free write to channel 7 after 0.05 s (1 in flight, 0 waiting)" in caplog.text


def test_channel_budgets_are_shared_per_channel_and_idle_ones_dropped() -> None:
    now = [0.0]
    budgets = ChannelBudgets(5, 5.0, clock=lambda: now[0])
    first = budgets(1)
    assert budgets(1) is first and budgets(2) is not first
    now[0] = 1.0
    budgets(3)
    assert len(budgets) == 3  # just handed out: kept even before a reply joins
    first.join()
    now[0] = 100.0
    budgets(3)
    assert len(budgets) == 2  # channel 2 was idle and forgotten; channel 1 still streams
    assert budgets(1) is first


class Pages:
    """A PageTarget that records its writes."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, int, str]] = []

    async def create(self, index: int, text: str, view: object = None) -> None:
        self.writes.append(("create", index, text))

    async def edit(self, index: int, text: str, view: object = None) -> None:
        self.writes.append(("edit", index, text))

    async def delete(self, index: int) -> None:
        self.writes.append(("delete", index, ""))


async def test_ahead_is_awaited_right_before_a_write_and_never_for_a_skipped_one() -> None:
    now = [0.0]
    budget = WriteBudget(2, 5.0, clock=lambda: now[0])  # one partial write per window
    target = Pages()
    writer = PageWriter(target, budget, shown=["…"])
    told: list[int] = []

    async def ahead() -> bool:
        told.append(len(target.writes))  # how many writes had gone out when it was told
        return True

    assert await writer.partial(["one"], ahead) is True
    assert told == [0] and target.writes == [("edit", 0, "one")]
    assert await writer.partial(["one two"], ahead) is False  # no room: nothing written
    assert told == [0]

    async def refused() -> bool:  # the reply is no longer this instance's to write
        return False

    now[0] = 10.0
    assert await writer.partial(["never shown"], refused) is True
    assert target.writes == [("edit", 0, "one")] and writer.shown == ["one"]
    now[0] = 15.1
    assert budget.try_take()  # the write taken for it was given back, not held for ever
    budget.release()

    async def failing() -> bool:  # the journal could not be written, or a stop came
        raise ConnectionError("database gone")

    now[0] = 30.0
    with pytest.raises(ConnectionError):
        await writer.partial(["never shown either"], failing)
    now[0] = 45.0
    assert budget.idle()  # nothing left in flight: given back too
