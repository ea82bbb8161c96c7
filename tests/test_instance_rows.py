"""Instances' heartbeat leases and the takeover of a dead instance's unfinished replies, on
both engines: a live instance's replies are never taken, a dead one's are taken by exactly
one instance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.conversation import (
    Answer,
    Arrival,
    ConversationKey,
    Incoming,
    PageRef,
    Place,
    Platform,
    Usage,
)
from bot.instance_rows import Instance, InstanceRows
from bot.store import Store
from tests.databases import sql_on

KEY = ConversationKey(Platform.SLACK, "T1", "C1", "100.1")
PLACE = Place("test", (("channel", "C1"),))


async def open_as(target: str, tmp_path: Path, name: str, pid: int,
                  host: str = "host-a") -> tuple[Store, InstanceRows]:
    """A store opened as one instance would (each has its own docs index file)."""
    store = await Store.open(target if "://" in target else Path(target),
                             tmp_path / f"kb-{name}.db")
    me = Instance(f"{host}:{pid}:{name}", host, pid)
    store.journal.owner = me.id
    return store, InstanceRows(store.engine, me)


Opened = tuple[Store, InstanceRows]


@pytest.fixture
async def pair(db_target: str, tmp_path: Path) -> AsyncIterator[tuple[Opened, Opened]]:
    """Two instances on one database, on different hosts (only leases tell who is dead)."""
    a = await open_as(db_target, tmp_path, "a", 1, host="host-a")
    b = await open_as(db_target, tmp_path, "b", 2, host="host-b")
    yield a, b
    await a[0].close()
    await b[0].close()


async def ask(store: Store, n: int) -> None:
    incoming = Incoming(key=KEY, author_id="U1", text=f"question {n}", event_id=f"Ev{n}",
                        arrival=Arrival.MENTION)
    assert await store.record_question(incoming, 5, PLACE) is not None


async def test_a_live_instance_keeps_its_replies_and_a_dead_one_loses_them_once(
    db_target: str, tmp_path: Path
) -> None:
    # Hosts differ, so only the lease can tell who is dead (no process look-up).
    a, rows_a = await open_as(db_target, tmp_path, "a", 101, host="host-a")
    b, rows_b = await open_as(db_target, tmp_path, "b", 102, host="host-b")
    c, rows_c = await open_as(db_target, tmp_path, "c", 103, host="host-c")
    try:
        for rows in (rows_a, rows_b, rows_c):
            await rows.beat(lease=30)
        for n in range(3):
            await ask(a, n)  # three replies in flight on instance a
        check = await rows_b.dead_check()
        assert await b.journal.claim(Platform.SLACK, check) == []  # a is alive: not taken
        await rows_a.beat(lease=-1)  # a's lease has run out (it stopped beating)
        assert [p.id for p in await rows_b.live_peers()] == [rows_c.me.id]
        checks = [await rows_b.dead_check(), await rows_c.dead_check()]
        taken = await asyncio.gather(b.journal.claim(Platform.SLACK, checks[0]),
                                     c.journal.claim(Platform.SLACK, checks[1]))
        # b and c raced: together they hold each reply exactly once.
        texts = sorted(entry.incoming.text for claimed in taken for entry in claimed)
        assert texts == ["question 0", "question 1", "question 2"]
        # Taken means owned: nobody takes them again while the new owner lives.
        again = await c.journal.claim(Platform.SLACK, await rows_c.dead_check())
        assert again == []
        assert await a.journal.claim(Platform.DISCORD, await rows_a.dead_check()) == []
    finally:
        for store in (a, b, c):
            await store.close()


async def test_a_stopped_process_on_the_same_host_is_dead_before_its_lease_runs_out(
    db_target: str, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()  # a pid that no longer runs
    assert proc.pid is not None
    gone, rows_gone = await open_as(db_target, tmp_path, "gone", proc.pid)
    me, rows_me = await open_as(db_target, tmp_path, "me", 999_999_999)
    try:
        await rows_gone.beat(lease=600)
        await ask(gone, 1)
        assert await rows_me.live_peers() == []
        taken = await me.journal.claim(Platform.SLACK, await rows_me.dead_check())
        assert [entry.incoming.text for entry in taken] == ["question 1"]
    finally:
        await gone.close()
        await me.close()


async def test_a_clean_stop_leaves_no_lease_and_old_rows_are_forgotten(
    pair: tuple[Opened, Opened],
) -> None:
    (a, rows_a), (b, rows_b) = pair
    await rows_a.beat(lease=30)
    assert [p.id for p in await rows_b.live_peers()] == [rows_a.me.id]
    await rows_a.leave()
    assert await rows_b.peers() == []
    await rows_a.beat(lease=-2 * 86_400)  # a row left by a machine lost two days ago
    assert len(await rows_b.peers()) == 1
    await rows_b.forget_expired()
    assert await rows_b.peers() == []


async def test_an_owner_that_lost_its_reply_neither_notes_nor_stores_it(
    db_target: str, pair: tuple[Opened, Opened]
) -> None:
    """A lease that lapsed (the database was away) and a takeover meanwhile: the old owner is
    fenced off, the new one finishes and its answer alone is kept."""
    (a, rows_a), (b, rows_b) = pair
    await rows_a.beat(lease=-1)
    await rows_b.beat(lease=30)
    incoming = Incoming(key=KEY, author_id="U1", text="question", event_id="Ev1",
                        arrival=Arrival.MENTION)
    question = await a.record_question(incoming, 5, PLACE)
    assert question is not None
    assert await a.journal.note_pages(question, (PageRef("1.1", "half"),))
    (taken,) = await b.journal.claim(Platform.SLACK, await rows_b.dead_check())
    assert taken.owner == rows_a.me.id
    assert not await a.journal.note_pages(question, (PageRef("1.1", "stale"),))
    await a.record_answer(KEY, question, Answer("old owner's", "m", "end_turn", Usage(),
                                                 None), 3, 10.0)
    await b.record_answer(KEY, question, Answer("new owner's", "m", "end_turn", Usage(),
                                                 None), 3, 10.0)
    answers = await sql_on(db_target, "SELECT text FROM messages WHERE role = 'assistant'")
    assert answers == [("new owner's",)]
    replies = await sql_on(db_target, "SELECT count(*) FROM replies")
    assert replies == [(1,)]


async def test_a_claimed_reply_that_cannot_be_continued_goes_back_and_own_rows_do_not_block(
    db_target: str, pair: tuple[Opened, Opened]
) -> None:
    (a, rows_a), (b, rows_b) = pair
    await rows_a.beat(lease=-1)
    await rows_b.beat(lease=30)
    await ask(a, 1)
    (taken,) = await b.journal.claim(Platform.SLACK, await rows_b.dead_check())
    await b.journal.release(taken.question.message_id, taken.owner)
    assert await b.journal.owner_of(taken.question.message_id) == rows_a.me.id
    # a's row is earlier in the conversation: b's next question waits for it; a's own
    # next question does not (a orders its own replies in memory).
    await ask(b, 2)
    latest = await sql_on(db_target, "SELECT max(question_id) FROM reply_journal")
    second = int(str(latest[0][0]))
    assert not await b.journal.first_in_line(KEY.id, second)
    assert await a.journal.first_in_line(KEY.id, taken.question.message_id)
