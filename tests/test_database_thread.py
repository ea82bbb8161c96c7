"""The database thread: calls run one at a time and in order, each caller gets its own result
or error, and the calls waiting when the thread wakes come back to the loop together."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import bot.database as database
from bot.database import SQLiteThread, StorageUnavailable


@pytest.fixture
async def sqlite(tmp_path: Path) -> Any:
    thread = SQLiteThread(tmp_path / "t.db")
    await thread.open()
    yield thread
    await thread.close()


async def test_calls_made_at_once_run_in_order_and_come_back_in_a_few_wake_ups(
    sqlite: SQLiteThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled: list[int] = []
    settle = database._settle

    def counting(outcomes: list[Any]) -> None:
        settled.append(len(outcomes))
        settle(outcomes)

    monkeypatch.setattr(database, "_settle", counting)
    gate = threading.Event()
    ran: list[int] = []

    def work(n: int) -> int:
        if n == 0:
            gate.wait(10)  # the others queue up behind the first
        ran.append(n)
        return n * n

    calls = [asyncio.ensure_future(sqlite.call(work, n)) for n in range(200)]
    await asyncio.sleep(0.05)  # all 200 are queued while the first holds the thread
    gate.set()
    assert await asyncio.gather(*calls) == [n * n for n in range(200)]
    assert ran == list(range(200))
    assert sum(settled) == 200
    assert len(settled) <= 3, settled  # one wake-up per call was 200


async def test_each_caller_gets_its_own_error_and_the_others_their_results(
    sqlite: SQLiteThread,
) -> None:
    def fail() -> None:
        raise ValueError("this one")

    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5

    def busy() -> None:
        raise locked

    first, bad, outside, last = await asyncio.gather(
        sqlite.call(lambda: 1), sqlite.call(fail), sqlite.call(busy), sqlite.call(lambda: 2),
        return_exceptions=True)
    assert (first, last) == (1, 2)
    assert isinstance(bad, ValueError) and str(bad) == "this one"
    assert isinstance(outside, StorageUnavailable)
    assert "SUPPORTBOT_DB=" in str(outside) and "locked" in str(outside)


async def test_a_call_that_raises_stopiteration_fails_alone(sqlite: SQLiteThread) -> None:
    def stop() -> None:
        raise StopIteration  # a future cannot hold it: it would strand the batch

    gate = threading.Event()
    first = asyncio.ensure_future(sqlite.call(gate.wait, 10))
    await asyncio.sleep(0.05)
    bad, after = asyncio.ensure_future(sqlite.call(stop)), asyncio.ensure_future(
        sqlite.call(lambda: 42))
    await asyncio.sleep(0.01)
    gate.set()  # the three come back in one batch
    done = await asyncio.wait_for(
        asyncio.gather(first, bad, after, return_exceptions=True), 5)
    assert done[0] is True and done[2] == 42
    assert isinstance(done[1], RuntimeError) and "StopIteration" in str(done[1])


async def test_no_call_after_close(tmp_path: Path) -> None:
    sqlite = SQLiteThread(tmp_path / "t.db")
    await sqlite.open()
    await sqlite.close()
    with pytest.raises(RuntimeError, match="closed"):
        await sqlite.call(lambda: 1)
    assert sqlite._thread is None  # no new thread was started for it


async def test_a_call_cancelled_before_its_turn_does_not_run(sqlite: SQLiteThread) -> None:
    gate = threading.Event()
    ran: list[str] = []

    def hold() -> None:
        gate.wait(10)
        ran.append("hold")

    holding = asyncio.ensure_future(sqlite.call(hold))
    await asyncio.sleep(0.05)
    dropped = asyncio.ensure_future(sqlite.call(ran.append, "dropped"))
    await asyncio.sleep(0.01)
    dropped.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    await holding
    await sqlite.call(ran.append, "after")
    assert ran == ["hold", "after"]


async def test_close_ends_the_thread(tmp_path: Path) -> None:
    sqlite = SQLiteThread(tmp_path / "t.db")
    await sqlite.open()
    thread = sqlite._thread
    assert thread is not None and thread.is_alive() and thread.name == "supportbot-db"
    await sqlite.close()
    assert not thread.is_alive()
