"""Slack's budgets shared by several instances through a real Redis server: each budget object
here stands for one instance's, all on one workspace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from bot.adapters.slack.shared_pacing import SharedChannelPacer, SharedEditBudget
from bot.shared import SharedError, SharedLimits, WindowAnswer
from tests.databases import REDIS_URL


@pytest.fixture
async def instances(redis_prefix: str) -> AsyncIterator[list[SharedLimits]]:
    opened = [SharedLimits(redis.Redis.from_url(REDIS_URL), "redis://127.0.0.1", f"i{n}",
                           redis_prefix) for n in range(3)]
    yield opened
    for shared in opened:
        await shared.close()


def edits(shared: SharedLimits, limit: int = 10, window: float = 2.0) -> SharedEditBudget:
    return SharedEditBudget(shared, "slack:T1:update", limit, window, 0.1, lease=5.0)


async def test_three_instances_never_take_more_than_the_workspace_limit_in_a_window(
    instances: list[SharedLimits],
) -> None:
    budgets = [edits(shared) for shared in instances]
    taken = [sum([await b.take_partial() for _ in range(10)]) for b in budgets]
    # 10 a window, none streaming: all 10, spread over whoever asked first.
    assert sum(taken) == 10 and taken[0] == 10
    assert not await budgets[2].take_partial()
    await asyncio.sleep(2.1)  # the window slides on: room again, for any instance
    assert await budgets[1].take_partial()


async def test_partials_keep_a_final_for_every_reply_streaming_on_any_instance(
    instances: list[SharedLimits],
) -> None:
    budgets = [edits(shared) for shared in instances]
    for budget in budgets:
        budget.join()
        budget.join()  # two replies streaming on each instance: six finals to keep
    taken = 0
    for _ in range(6):
        for budget in budgets:
            taken += await budget.take_partial()
    assert taken == 10 - 6
    assert budgets[0].everywhere == 6  # each instance learns how many stream everywhere
    assert budgets[0].interval() == pytest.approx(2.0 * 6 / 4)
    for budget in budgets:  # every final still finds its slot at once
        for _ in range(2):
            await budget.acquire_final(0.5)
            budget.leave()


async def test_finals_go_in_the_order_they_asked_across_instances_and_partials_yield(
    instances: list[SharedLimits],
) -> None:
    budgets = [edits(shared, limit=2, window=1.0) for shared in instances]
    # Spent, the two slots freeing 0.3 s apart (two freed at once could land in either order).
    assert await budgets[0].take_partial()
    await asyncio.sleep(0.3)
    assert await budgets[0].take_partial()
    order: list[int] = []

    async def final(n: int) -> None:
        await budgets[n].acquire_final(5.0)
        order.append(n)

    tasks = []
    for n in (2, 0, 1):  # they ask in this order, each on its own instance
        tasks.append(asyncio.create_task(final(n)))
        await asyncio.sleep(0.05)
    assert not await budgets[1].take_partial()  # finals are waiting somewhere: partials yield
    await asyncio.wait_for(asyncio.gather(*tasks), 5.0)
    assert order == [2, 0, 1]


async def test_a_429_on_one_instance_pauses_the_workspace_on_all(
    instances: list[SharedLimits],
) -> None:
    budgets = [edits(shared) for shared in instances]
    await budgets[0].pause(1.0)
    assert not await budgets[1].take_partial()
    started = time.monotonic()
    await budgets[2].acquire_final(3.0)
    assert time.monotonic() - started >= 0.9


async def test_a_final_gives_up_at_its_deadline_and_leaves_the_line(
    instances: list[SharedLimits],
) -> None:
    budgets = [edits(shared, limit=1, window=3.0) for shared in instances]
    await budgets[0].acquire_final(1.0)
    with pytest.raises(TimeoutError):
        await budgets[1].acquire_final(0.5)
    await asyncio.sleep(0.1)
    # The one that gave up no longer stands in line: partials are held back only by the window.
    answer = await instances[2].window("slack:T1:update", 1, 3.0, 0, 5.0, "peek", "x")
    assert answer.finals_queued == 0


async def test_posts_in_one_channel_share_one_bucket(instances: list[SharedLimits]) -> None:
    pacers = [SharedChannelPacer(shared, "slack:T1:post:C1", rate=2.0, burst=3)
              for shared in instances]
    taken = [await pacer.take_now() for pacer in pacers for _ in range(2)]
    assert taken.count(True) == 3  # the burst, whichever instance posts
    started = time.monotonic()
    await pacers[1].take(2.0)  # the next token, at the bucket's rate
    assert 0.3 <= time.monotonic() - started <= 1.5


async def test_without_redis_a_budget_falls_back_to_its_own_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = SharedLimits(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1),
                        "redis://127.0.0.1:1/0", "i0")
    budget = edits(gone, limit=3)
    try:
        assert [await budget.take_partial() for _ in range(4)] == [True, True, True, False]
        started = time.monotonic()
        await budget.acquire_final(3.0)  # the local window is full: its oldest call expires
        assert time.monotonic() - started >= 1.5
    finally:
        await gone.close()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "SUPPORTBOT_REDIS_URL=redis://127.0.0.1:1/0" in errors[0].message
    with pytest.raises(SharedError, match="SUPPORTBOT_REDIS_URL"):
        await gone.handled("x")


class FailingLimits(SharedLimits):
    """Redis that stops answering after the first answers (a seam of our own, not redis-py)."""

    failing = False

    async def window(self, name: str, limit: int, window: float, active: int, lease: float,
                     kind: str, ticket: str) -> WindowAnswer:
        if self.failing:
            raise SharedError("SUPPORTBOT_REDIS_URL=redis://127.0.0.1: ConnectionError")
        return await super().window(name, limit, window, active, lease, kind, ticket)


async def test_when_redis_fails_mid_wait_finals_and_partials_follow_the_local_count(
    redis_prefix: str,
) -> None:
    shared = FailingLimits(redis.Redis.from_url(REDIS_URL), "redis://127.0.0.1", "i0",
                           redis_prefix)
    budget = edits(shared, limit=5)
    try:
        budget.join()
        assert await budget.take_partial()
        budget.queued, budget.last_wait = 2, 0.05  # Redis last said: finals wait elsewhere
        shared.failing = True
        assert await budget.take_partial()  # the local count has room: no stale queue
        started = time.monotonic()
        await budget.acquire_final(2.0)
        assert time.monotonic() - started < 0.5  # not the stale wait, over and over
    finally:
        await shared.close()
