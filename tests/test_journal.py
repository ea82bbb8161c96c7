"""The reply journal is never behind what the asker can see: a stop between a platform write
and its note must not leave an older text to be written over the newer one."""

from __future__ import annotations

import asyncio

import pytest

from bot.conversation import (
    Arrival,
    ConversationKey,
    Incoming,
    PageRef,
    Place,
    Platform,
    RecordedQuestion,
)
from bot.journal import JournalingSurface
from bot.store import Store
from bot.surface import Ahead, Snapshot

KEY = ConversationKey(Platform.SLACK, "T1", "C1", "100.1")


@pytest.fixture
def store(any_store: Store) -> Store:
    """Every test here that takes `store` runs on SQLite and on PostgreSQL."""
    return any_store


class StallingSurface:
    """One message; its edits reach the platform and then the call never returns, as when
    the process is killed while the platform's answer is on its way back."""

    limit = 4000

    def __init__(self) -> None:
        self.shown = ""
        self.landed = asyncio.Event()

    def interval(self) -> float:
        return 0.0

    def render(self, markdown: str) -> str:
        return markdown

    def size(self, text: str) -> int:
        return len(text)

    async def start(self) -> None:
        self.shown = "…"

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool | None:
        if ahead is not None and not await ahead():
            return True
        self.shown = snapshot.pages[0]
        self.landed.set()
        await asyncio.Event().wait()  # the stop lands here
        return True

    async def finish(self, snapshot: Snapshot) -> None:
        self.shown = snapshot.pages[0]

    def where(self) -> Place:
        return Place("test", (("channel", "C1"),))

    def pages(self) -> tuple[PageRef, ...]:
        return (PageRef("m1", "…"),) if self.shown else ()


async def test_the_journal_holds_the_text_of_a_write_cut_off_by_a_stop(store: Store) -> None:
    incoming = Incoming(KEY, "U1", "how do I rotate my key?", "E1", Arrival.MENTION)
    question = await store.record_question(incoming, 10, Place("test", (("channel", "C1"),)))
    assert question is not None
    inner = StallingSurface()
    surface = JournalingSurface(inner, store.journal, question)
    await surface.start()
    writing = asyncio.create_task(surface.update(Snapshot(("Open Settings and",), "x", False)))
    await asyncio.wait_for(inner.landed.wait(), 5)
    await asyncio.sleep(0.05)
    writing.cancel()  # the process stops while the write is out
    [entry] = await store.journal.unfinished(Platform.SLACK)
    assert entry.pages == (PageRef("m1", "Open Settings and"),)  # not the older "…"


class ShowingSurface(StallingSurface):
    """One journaled message that shows each write (and never stalls)."""

    limit = 40_000

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool | None:
        if ahead is not None and not await ahead():
            return True
        self.shown = snapshot.pages[0]
        return True

    def pages(self) -> tuple[PageRef, ...]:
        return (PageRef("m1", self.shown),) if self.shown else ()


class BusySurface(ShowingSurface):
    """Its partial edits find no budget until `room` is set."""

    room = False

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool | None:
        if not self.room:
            return False  # skipped before any write: `ahead` is not awaited
        return await super().update(snapshot, ahead)


async def test_updates_skipped_for_want_of_budget_write_nothing_to_the_journal(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    incoming = Incoming(KEY, "U1", "how do I rotate my key?", "E1", Arrival.MENTION)
    question = await store.record_question(incoming, 10, Place("test", (("channel", "C1"),)))
    assert question is not None
    notes: list[tuple[PageRef, ...]] = []
    note_pages = store.journal.note_pages

    async def counted(asked: RecordedQuestion, pages: tuple[PageRef, ...]) -> bool:
        notes.append(pages)
        return await note_pages(asked, pages)

    monkeypatch.setattr(store.journal, "note_pages", counted)
    inner = BusySurface()
    surface = JournalingSurface(inner, store.journal, question)
    await surface.start()
    assert notes == [(PageRef("m1", "…"),)]
    for n in range(5):  # under load most attempts find the budget spent
        assert await surface.update(Snapshot((f"Open Settings {n}",), "x", False)) is False
    assert len(notes) == 1  # each used to cost two writes: the text ahead, then back
    inner.room = True
    assert await surface.update(Snapshot(("Open Settings and",), "x", False)) is True
    assert notes[1:] == [(PageRef("m1", "Open Settings and"),)]  # noted before it was shown
    [entry] = await store.journal.unfinished(Platform.SLACK)
    assert entry.pages == (PageRef("m1", "Open Settings and"),)


async def test_a_question_past_the_hourly_cap_stays_so_after_a_restart(store: Store) -> None:
    place = Place("test", (("channel", "C1"),))
    first = Incoming(KEY, "U1", "one", "E1", Arrival.MENTION)
    second = Incoming(KEY, "U1", "two", "E2", Arrival.MENTION)
    assert await store.record_question(first, 5, place, rate=1) is not None
    capped = await store.record_question(second, 5, place, rate=1)
    assert capped is not None and capped.wait_seconds > 0
    waits = {e.incoming.text: e.question.wait_seconds
             for e in await store.journal.unfinished(Platform.SLACK)}
    assert waits["one"] == 0 and 3500 < waits["two"] <= 3600
