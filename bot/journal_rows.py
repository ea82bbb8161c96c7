"""The reply journal's rows: which replies have not ended, and where their messages are.

The write that opens a row runs inside the store's question transaction (see Store); the rest
are small calls of their own. Callers see plain values, never SQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.conversation import (
    Arrival,
    ConversationKey,
    Incoming,
    PageRef,
    Place,
    Platform,
    RecordedQuestion,
)
from bot.engine import Engine, Tx


@dataclass(frozen=True)
class Unfinished:
    """A reply that a stop (a crash, a kill, a shutdown) left without its end."""

    question: RecordedQuestion
    incoming: Incoming  # as asked, without images (those are not kept)
    place: Place
    pages: tuple[PageRef, ...]
    asked_at: float
    owner: str = ""  # the instance that wrote it before (claimed: the dead one)


class JournalRows:
    """reply_journal, on either engine."""

    def __init__(self, engine: Engine, owner: str = "") -> None:
        self.engine = engine
        self.owner = owner  # this instance: replies it opens are its own to finish

    async def insert(self, tx: Tx, question_id: int, incoming: Incoming, place: Place,
                     now: float) -> None:
        """Open a reply's row (inside the question's transaction)."""
        await tx.execute(
            "INSERT INTO reply_journal (question_id, conversation_id, event_id,"
            " author_id, author_name, arrival, place_kind, place, pages, asked_at, updated_at,"
            " owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]', ?, ?, ?)",
            [question_id, incoming.key.id, incoming.event_id, incoming.author_id,
             incoming.author_name, incoming.arrival.value, place.kind,
             json.dumps(dict(place.fields)), now, now, self.owner],
        )

    async def delete(self, tx: Tx | Engine, question_id: int) -> None:
        """Close a reply's row (inside the answer's transaction)."""
        await tx.execute("DELETE FROM reply_journal WHERE question_id = ?", [question_id])

    async def note_pages(self, question: RecordedQuestion, pages: tuple[PageRef, ...]) -> bool:
        """Remember the platform messages a reply has written so far; False when the reply
        is no longer this instance's (another took it over, or it was closed)."""
        rows = json.dumps([[page.id, page.text] for page in pages])
        noted = await self.engine.execute(
            "UPDATE reply_journal SET pages = ?, updated_at = ? WHERE question_id = ?"
            " AND owner = ?",
            [rows, time.time(), question.message_id, self.owner],
        )
        return noted.rowcount > 0

    async def owner_of(self, question_id: int, db: Tx | Engine | None = None) -> str | None:
        """Who owns the reply's journal row (None: it has none); inside `db`'s transaction
        when one is given."""
        row = (await (db or self.engine).execute(
            "SELECT owner FROM reply_journal WHERE question_id = ?", [question_id])).first()
        return None if row is None else str(row[0])

    async def taken_by_another(self, question_id: int, db: Tx | Engine | None = None) -> bool:
        """The reply's journal row now belongs to another instance (a takeover)."""
        owner = await self.owner_of(question_id, db)
        return owner is not None and owner not in ("", self.owner)

    async def release(self, question_id: int, owner: str) -> None:
        """Give a claimed reply back to `owner` (it could not be continued here)."""
        await self.engine.execute(
            "UPDATE reply_journal SET owner = ? WHERE question_id = ? AND owner = ?",
            [owner, question_id, self.owner])

    async def close(self, question: RecordedQuestion) -> None:
        """Forget a reply that was settled without a new answer (an honest note, say)."""
        await self.delete(self.engine, question.message_id)

    async def unfinished(self, platform: Platform) -> list[Unfinished]:
        """This platform's replies that have not ended, oldest question first."""
        rows = (await self.engine.execute(_UNFINISHED + " ORDER BY j.question_id",
                                          [platform.value])).rows
        return [_unfinished(row) for row in rows[:MAX_CLAIMED]]

    async def claim(self, platform: Platform, dead: Callable[[str], bool]) -> list[Unfinished]:
        """Make this instance the owner of the platform's unfinished replies whose instance
        is `dead`, and return them: each is claimed by exactly one instance (a row changes
        owner only from the owner read, and claims take turns)."""
        async def body(tx: Tx) -> list[Unfinished]:
            await tx.lock(f"takeover:{platform.value}")
            rows = (await tx.execute(_UNFINISHED + " AND j.owner <> ? ORDER BY j.question_id",
                                     [platform.value, self.owner])).rows
            claimed: list[Unfinished] = []
            for row in rows:
                if len(claimed) >= MAX_CLAIMED or not dead(str(row[-1])):
                    continue
                moved = await tx.execute(
                    "UPDATE reply_journal SET owner = ? WHERE question_id = ? AND owner = ?",
                    [self.owner, row[0], row[-1]])
                if moved.rowcount:
                    claimed.append(_unfinished(row))
            return claimed

        return await self.engine.run(body)


    async def first_in_line(self, conversation_id: str, question_id: int) -> bool:
        """True when no earlier reply of the conversation is unfinished on another instance
        (this instance's own replies keep their order in memory: see Responder)."""
        row = (await self.engine.execute(
            "SELECT min(question_id) FROM reply_journal WHERE conversation_id = ?"
            " AND owner <> ?", [conversation_id, self.owner])).first()
        earliest = row[0] if row else None
        return earliest is None or int(str(earliest)) >= question_id


MAX_CLAIMED = 10_000  # replies taken over in one pass; the rest wait for the next
_UNFINISHED = (
    "SELECT j.question_id, m.position, m.text, m.image_count, c.platform, c.workspace,"
    " c.channel, c.thread, j.event_id, j.author_id, j.author_name, j.arrival,"
    " j.place_kind, j.place, j.pages, j.asked_at, m.admitted, j.owner"
    " FROM reply_journal j JOIN messages m ON m.id = j.question_id"
    " JOIN conversations c ON c.id = j.conversation_id"
    " WHERE c.platform = ?"
)


def _unfinished(row: tuple[object, ...]) -> Unfinished:
    (question_id, position, text, image_count, platform, workspace, channel, thread, event_id,
     author_id, author_name, arrival, kind, place, pages, asked_at, admitted, owner) = row
    key = ConversationKey(Platform(str(platform)), str(workspace), str(channel), str(thread))
    question = str(text)
    if image_count:  # images are not stored; say so rather than answer as if there were none
        question += "\n\n[an image was attached, but it is not available after a restart]"
    incoming = Incoming(key=key, author_id=str(author_id), text=question.strip(),
                        event_id=str(event_id), arrival=Arrival(str(arrival)),
                        author_name=str(author_name))
    fields = json.loads(str(place))
    # A question past its asker's hourly cap stays so when answered again after a restart.
    wait = 0.0 if admitted else max(60.0, float(str(asked_at)) + 3600 - time.time())
    return Unfinished(
        question=RecordedQuestion(message_id=int(str(question_id)), position=int(str(position)),
                                  wait_seconds=wait),
        incoming=incoming,
        place=Place.of(str(kind), **{str(k): str(v) for k, v in fields.items()}),
        pages=tuple(PageRef(str(i), str(t)) for i, t in json.loads(str(pages))),
        asked_at=float(str(asked_at)),
        owner=str(owner),
    )
