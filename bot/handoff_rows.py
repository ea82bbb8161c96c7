"""The rows behind handovers and feedback: which conversations a person handles, the turns
said there while the bot was quiet, and votes on replies. SQL for either engine."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from bot.conversation import ConversationKey
from bot.engine import Engine, Tx
from bot.handoff import Handoff


class HandoffRows:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def open_for(self, key: ConversationKey) -> Handoff | None:
        """The conversation's open handover, if a person handles it now."""
        row = (await self.engine.execute(
            "SELECT id, asker_id, summary FROM handoffs WHERE conversation_id = ?"
            " AND state = 'open' ORDER BY id DESC LIMIT 1", [key.id])).first()
        return None if row is None else Handoff(int(row[0]), key, str(row[1]), str(row[2]))

    async def start(self, key: ConversationKey, asker_id: str, reason: str) -> int | None:
        """Open a handover; None when one is already open (two clicks, a redelivery)."""
        async def body(tx: Tx) -> int | None:
            await tx.lock(f"handoff:{key.id}")  # two instances, one click each: one opens
            open_already = (await tx.execute(
                "SELECT 1 FROM handoffs WHERE conversation_id = ? AND state = 'open'", [key.id]
            )).first()
            if open_already:
                return None
            return await tx.insert(
                "INSERT INTO handoffs (conversation_id, state, asker_id, reason, posted, summary,"
                " requested_at) VALUES (?, 'open', ?, ?, 0, '', ?)",
                [key.id, asker_id, reason, time.time()],
            )

        return await self.engine.run(body)

    async def posted(self, handoff_id: int, summary_place: str, link: str = "") -> None:
        await self.engine.execute(
            "UPDATE handoffs SET posted = 1, summary = ?, link = ? WHERE id = ?",
            [summary_place, link, handoff_id])

    async def not_posted(self, handoff_id: int) -> None:
        """Recorded, but nobody was reached: the bot keeps answering in the thread."""
        await self.engine.execute(
            "UPDATE handoffs SET state = 'not_posted' WHERE id = ?", [handoff_id])

    async def close(self, handoff_id: int, by: str = "person") -> bool:
        """Mark resolved; False when it was no longer open (a second ✅)."""
        done = await self.engine.execute(
            "UPDATE handoffs SET state = 'resolved', resolved_at = ?, resolved_by = ?"
            " WHERE id = ? AND state = 'open'", [time.time(), by, handoff_id])
        return bool(done.rowcount)

    async def by_summary(self, summary_place: str) -> str | None:
        """The conversation id of the open handover whose summary is at `summary_place`."""
        row = (await self.engine.execute(
            "SELECT conversation_id FROM handoffs WHERE summary = ? AND state = 'open'",
            [summary_place])).first()
        return None if row is None else str(row[0])

    async def last_exchange(self, key: ConversationKey, question_id: int = 0
                            ) -> tuple[str, str, str, list[list[str]]]:
        """For the summary: who asked, the question, the bot's answer to it and that answer's
        sources. The question is `question_id` when given, else the conversation's last one
        the bot answered."""
        row = (await self.engine.execute(
            "SELECT m.author_id, m.text, a.text, r.sources FROM messages m"
            " LEFT JOIN replies r ON r.question_id = m.id"
            " LEFT JOIN messages a ON a.id = r.answer_id"
            " WHERE m.conversation_id = ? AND m.role = 'user' AND (m.id = ? OR (? = 0"
            " AND r.outcome IS NOT NULL AND r.outcome NOT IN ('handed_over', 'rate_limited')))"
            " ORDER BY m.position DESC LIMIT 1", [key.id, question_id, question_id],
        )).first()
        if row is None:
            return "", "", "", []
        return (str(row[0] or ""), str(row[1] or ""), str(row[2] or ""),
                json.loads(row[3] or "[]"))

    async def previous_outcome(self, key: ConversationKey, before_position: int) -> str:
        """How the conversation's reply before this question ended ("" for none)."""
        row = (await self.engine.execute(
            "SELECT r.outcome FROM replies r JOIN messages m ON m.id = r.question_id"
            " WHERE m.conversation_id = ? AND m.position < ? ORDER BY m.position DESC LIMIT 1",
            [key.id, before_position])).first()
        return "" if row is None else str(row[0])

    async def first_asker(self, key: ConversationKey) -> str:
        """Who started the conversation ("" when nobody has asked in it yet)."""
        row = (await self.engine.execute(
            "SELECT author_id FROM messages WHERE conversation_id = ? AND role = 'user'"
            " ORDER BY position LIMIT 1", [key.id])).first()
        return "" if row is None else str(row[0] or "")

    async def conversation_of(self, question_id: int) -> str | None:
        """The conversation id a reply (known by its question's id) belongs to."""
        row = (await self.engine.execute(
            "SELECT conversation_id FROM messages WHERE id = ?", [question_id])).first()
        return None if row is None else str(row[0])

    async def vote(self, question_id: int, voter: str, vote: int) -> bool:
        """Record or change one person's vote on a reply; False for an unknown reply."""
        now = time.time()

        async def body(tx: Tx) -> bool:
            # Taken in turn with record_answer: a vote cast while the answer is being stored
            # reads it once stored, or is there for that write to fill in.
            await tx.lock(f"reply:{question_id}")
            reply = (await tx.execute("SELECT model, sources FROM replies WHERE question_id = ?"
                                      " ORDER BY id DESC LIMIT 1", [question_id])).first()
            if reply is None:  # a click before the reply's record is written (it fills in)
                if (await tx.execute("SELECT 1 FROM messages WHERE id = ? AND role = 'user'",
                                     [question_id])).first() is None:
                    return False
                reply = ("", "[]")
            await tx.execute(
                "INSERT INTO feedback (question_id, voter, vote, comment, model, sources,"
                " created_at, updated_at) VALUES (?, ?, ?, '', ?, ?, ?, ?)"
                " ON CONFLICT (question_id, voter) DO UPDATE SET vote = excluded.vote,"
                " comment = CASE WHEN feedback.vote = excluded.vote THEN feedback.comment"
                " ELSE '' END, updated_at = excluded.updated_at",
                [question_id, voter, vote, reply[0] or "", reply[1] or "[]", now, now])
            return True

        return await self.engine.run(body)

    async def comment(self, question_id: int, voter: str, text: str) -> None:
        await self.engine.execute(
            "UPDATE feedback SET comment = ?, updated_at = ? WHERE question_id = ? AND voter = ?",
            [text[:2000], time.time(), question_id, voter])

    async def votes(self, since: float) -> tuple[int, int, list[str]]:
        """👍 and 👎 counts since a time, and the questions of the 👎 replies."""
        rows: Sequence[tuple[int, str]] = (await self.engine.execute(
            "SELECT f.vote, coalesce(m.text, '') FROM feedback f"
            " LEFT JOIN messages m ON m.id = f.question_id WHERE f.updated_at >= ?",
            [since])).rows
        up = sum(1 for vote, _ in rows if vote > 0)
        down = [text for vote, text in rows if vote < 0 and text]
        return up, len(rows) - up, down
