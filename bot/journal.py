"""The reply journal's policy: what a reply records about its messages, and how a reply that
a stop left unfinished is closed when it is too old to answer again."""

from __future__ import annotations

import logging

from bot.conversation import PageRef, RecordedQuestion
from bot.database import StorageUnavailable
from bot.journal_rows import JournalRows
from bot.streaming import TYPING_MARKER
from bot.surface import Ahead, Journaled, Snapshot, Surface

log = logging.getLogger(__name__)


class JournalingSurface:
    """Wraps a Journaled surface; after each write it tells the journal what the pages show.

    Platform writes are rate-limited to about one per second per reply, far slower than a
    local database write, so noting each one costs little and keeps the journal exact.
    """

    def __init__(self, inner: Surface, journal: JournalRows, question: RecordedQuestion) -> None:
        assert isinstance(inner, Journaled)  # once (a Protocol check is slow): inner is both
        self.inner = inner
        self.journal = journal
        self.question = question
        self._noted: tuple[PageRef, ...] = ()
        self._unnoted = False  # a note failed (the database is locked or the disk full)
        # Another instance took this reply over (this one was taken for dead: a lease that
        # lapsed while the database was away): it writes no more, the new owner finishes.
        self.deposed = False

    @property
    def limit(self) -> int:
        return self.inner.limit

    def interval(self) -> float:
        return self.inner.interval()

    def render(self, markdown: str) -> str:
        return self.inner.render(markdown)

    def size(self, text: str) -> int:
        return self.inner.size(text)

    async def start(self) -> None:
        await self.inner.start()
        await self._note()

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool | None:
        """Note what the pages are about to show right before the write, not before the
        attempt: most attempts under load find no budget and write nothing, and noting
        them cost two database writes each (ahead, then back)."""
        if self.deposed:
            return True

        async def noted_ahead() -> bool:
            if ahead is not None and not await ahead():
                return False
            await self._note(ahead=snapshot)
            return not self.deposed

        shown = await self.inner.update(snapshot, noted_ahead)
        await self._note()
        return shown

    async def finish(self, snapshot: Snapshot) -> None:
        await self._note(ahead=snapshot)
        if self.deposed:
            return
        try:
            await self.inner.finish(snapshot)
        finally:
            await self._note()

    async def _note(self, ahead: Snapshot | None = None) -> None:
        """Record the pages as shown; with `ahead`, first what the messages that exist are
        about to show. A stop can land between a write and its note: a journal ahead of the
        platform then finishes the reply with the text the asker was getting, where one
        behind would write an older text over what they had already read."""
        pages = self.inner.pages()
        if ahead is not None:
            pages = tuple(PageRef(ref.id, ahead.pages[i]) if i < len(ahead.pages) else ref
                          for i, ref in enumerate(pages))
        if pages == self._noted or self.deposed:
            return
        try:
            if not await self.journal.note_pages(self.question, pages):
                await self._check_owner()
        except StorageUnavailable as error:
            # The journal only helps a later start; the asker still gets every write.
            if not self._unnoted:
                log.warning("could not note a reply's pages: %s", error)
            self._unnoted = True
        else:
            self._noted = pages

    async def _check_owner(self) -> None:
        if await self.journal.taken_by_another(self.question.message_id):
            log.warning("another instance took over a reply in progress; this one stops "
                        "writing it")
            self.deposed = True


def closing_pages(
    pages: tuple[PageRef, ...], surface: Surface, note: str, replaces: str = ""
) -> Snapshot:
    """The final look of a reply too old to answer again: the pages as they were, with the
    typing marker on the last one (or an earlier note, `replaces`, that promised more) replaced
    by `note`, or the note alone on a page of its own when it does not fit there."""
    note_text = surface.render(note.strip())
    texts = [page.text for page in pages] or [""]
    last = texts[-1].removesuffix(TYPING_MARKER).rstrip()
    if replaces:
        last = last.removesuffix(surface.render(replaces.strip())).rstrip()
    with_note = f"{last}\n\n{note_text}" if last else note_text
    if surface.size(with_note) <= surface.limit:
        texts[-1] = with_note
    else:
        texts[-1:] = [last, note_text]
    return Snapshot(pages=tuple(texts), text="\n\n".join(texts), final=True)
