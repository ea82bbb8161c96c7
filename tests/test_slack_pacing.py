"""The per-workspace edit budget and the per-channel posting pace."""

import asyncio
import time

import pytest

from bot.adapters.slack.pacing import ChannelPacer, EditBudget, SlackPacing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_reply_edits_about_once_a_second_and_many_share_the_budget() -> None:
    budget = EditBudget(limit=45, window=60.0)
    budget.join()
    assert 1.0 <= budget.interval() < 1.5
    for _ in range(9):
        budget.join()
    assert budget.interval() == pytest.approx(60 * 10 / 35)  # ten replies: ~17 s each
    for _ in range(40):
        budget.join()
    assert budget.interval() == 60.0  # fifty replies: no partial edits at all


def test_partials_leave_room_for_every_active_reply_s_final() -> None:
    clock = Clock()
    budget = EditBudget(limit=10, window=60.0, clock=clock)
    for _ in range(3):
        budget.join()
    taken = sum(budget.try_partial() for _ in range(20))
    assert taken == 10 - 3  # three slots kept for the three finals
    assert budget.final_wait() == 0
    clock.now += 60.0
    assert budget.try_partial()  # the window slid on


def test_a_429_pauses_the_whole_budget_for_retry_after() -> None:
    clock = Clock()
    budget = EditBudget(limit=45, window=60.0, clock=clock)
    budget.back_off(3.0)
    assert not budget.try_partial()
    assert budget.final_wait() == pytest.approx(3.0)
    clock.now += 3.0
    assert budget.try_partial()


async def test_finals_wait_for_a_slot_in_arrival_order_and_partials_yield_to_them() -> None:
    budget = EditBudget(limit=2, window=0.3)
    budget.join()
    assert budget.try_partial() is True  # 1 used, 1 kept for the final
    assert budget.try_partial() is False
    await budget.acquire_final(1.0)  # the kept slot
    order: list[int] = []

    async def final(n: int) -> None:
        await budget.acquire_final(2.0)
        order.append(n)

    started = time.monotonic()
    waiting = [asyncio.create_task(final(n)) for n in range(3)]
    await asyncio.sleep(0.05)
    assert budget.try_partial() is False  # finals are queued: partials give way
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2]
    assert time.monotonic() - started >= 0.25  # the third needed the window to slide


async def test_final_gives_up_at_its_deadline() -> None:
    budget = EditBudget(limit=1, window=10.0)
    await budget.acquire_final(1.0)
    with pytest.raises(TimeoutError):
        await budget.acquire_final(0.2)


async def test_channel_pacer_allows_a_burst_then_one_a_second() -> None:
    clock = Clock()
    pacer = ChannelPacer(rate=1.0, burst=3, clock=clock)
    assert [pacer.try_take() for _ in range(4)] == [True, True, True, False]
    assert pacer.wait() == pytest.approx(1.0)
    clock.now += 1.0
    assert pacer.try_take()
    pacer.back_off(5.0)
    clock.now += 2.0
    assert pacer.wait() == pytest.approx(3.0)


def test_budgets_are_per_workspace_and_channels_per_channel() -> None:
    pacing = SlackPacing()
    a, b = pacing.workspace("T1"), pacing.workspace("T2")
    assert a is pacing.workspace("T1") and a.edits is not b.edits
    assert a.channel("C1") is a.channel("C1") and a.channel("C1") is not a.channel("C2")
