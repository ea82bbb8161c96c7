"""A full disk, as SQLite reports it (SQLITE_FULL, made here with PRAGMA max_page_count on the
bot's own connection): the asker is told honestly, nothing is half-written, and the bot answers
again once there is room."""

from __future__ import annotations

import asyncio

import pytest

from bot.conversation import Arrival, Incoming, PageRef
from bot.journal import JournalingSurface
from bot.notices import STORAGE_TROUBLE
from bot.store import Store
from bot.surface import Snapshot
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.surfaces import RecordingSurface
from tests.test_journal import ShowingSurface
from tests.test_responder import KEY, answer, ask, responder, wait_until


async def disk_full(store: Store, full: bool) -> None:
    """No page past the ones the file has now (full), or room again."""
    def pragma() -> None:
        db = store.sqlite.db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages if full else 1_073_741_823}")

    await store.sqlite.call(pragma)


async def user_texts(store: Store) -> list[str]:
    rows = await store.sqlite.call(lambda: store.sqlite.db.execute(
        "SELECT text FROM messages WHERE role = 'user' ORDER BY id").fetchall())
    return [row[0] for row in rows]


async def test_a_full_disk_gets_an_honest_reply_and_the_next_question_is_answered(
    store: Store, anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    anthropic.script(Reply(text="Answered once there was room."))
    r = responder(store, anthropic)
    await disk_full(store, True)
    told = RecordingSurface()
    # Longer than a page (4,096 bytes): storing it needs a page the disk cannot give.
    said = await r.submit(ask("my log: " + "line " * 1_200, "E1"), told)
    assert said is not None
    await asyncio.wait_for(said, 5)
    assert told.final.text == STORAGE_TROUBLE
    assert "the disk is full" in caplog.text  # SQLite's SQLITE_FULL, named as such
    assert len(anthropic.requests) == 0 and await user_texts(store) == []  # nothing half-written
    assert await store.journal.unfinished(KEY.platform) == []
    await disk_full(store, False)
    later = RecordingSurface()
    await answer(r, ask("and now?", "E2"), later)
    assert later.final.text == "Answered once there was room."
    assert await user_texts(store) == ["and now?"]
    await r.aclose()
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_a_disk_that_fills_during_a_reply_still_shows_the_whole_answer(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    long = " ".join(f"step{n}" for n in range(800))  # over a page, to store
    async with FakeAnthropic(delta_interval=0.002) as model:
        model.script(Reply(text=long), Reply(text="Back to normal."))
        r = responder(store, model)
        surface = RecordingSurface()
        task = await r.submit(ask("the whole list please", "E1"), surface)
        assert task is not None
        await wait_until(lambda: len(surface.updates) >= 1)
        await disk_full(store, True)
        await asyncio.wait_for(task, 10)
        assert surface.final.text == long  # what was shown is whole, and not marked failed
        assert "could not store" in caplog.text
        await disk_full(store, False)
        later = RecordingSurface()
        await answer(r, ask("and now?", "E2"), later)
        assert later.final.text == "Back to normal."
        await r.aclose()
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_a_full_disk_never_holds_back_what_the_asker_is_shown(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    incoming = Incoming(KEY, "U1", "the whole list please", "E1", Arrival.MENTION)
    question = await store.record_question(incoming, 10, ShowingSurface().where())
    assert question is not None
    inner = ShowingSurface()
    surface = JournalingSurface(inner, store.journal, question)
    await surface.start()
    await disk_full(store, True)
    words = [f"step{n}" for n in range(1_500)]
    for end in (500, 1_000):  # each longer than a page: noting it needs room
        text = " ".join(words[:end])
        assert await surface.update(Snapshot((text,), text, False))
        assert inner.shown == text
    whole = " ".join(words)
    await surface.finish(Snapshot((whole,), whole, True))
    assert inner.shown == whole
    assert caplog.text.count("could not note a reply's pages") == 1  # said once, not per write
    await disk_full(store, False)
    await surface.finish(Snapshot((whole,), whole, True))
    [entry] = await store.journal.unfinished(KEY.platform)
    assert entry.pages == (PageRef("m1", whole),)  # noted again once there was room
