"""The session store: conversations, their messages, processed events and usage, in SQLite.

The database migrates itself on open. All SQLite work runs on one dedicated thread so the
event loop never blocks; callers see plain values, never SQL.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from sqlite_utils.db import Table

from bot.conversation import (
    Answer,
    ConversationKey,
    Incoming,
    Passage,
    Place,
    Platform,
    RecordedQuestion,
    Turn,
)
from bot.database import SQLiteThread, touch_conversation
from bot.handoff import AGENT_LABEL
from bot.handoff_rows import HandoffRows
from bot.journal_rows import JournalRows

log = logging.getLogger(__name__)

T = TypeVar("T")
_BATCH = 64  # rows read per step when walking a thread back from its newest end
HOUR = 3600.0


@dataclass(frozen=True)
class UsageTotals:
    replies: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cost_usd: float
    unpriced_replies: int
    failed: int
    conversations: int



class Store:
    """Conversations and their history; every write is durable before it returns."""

    def __init__(self, sqlite: SQLiteThread) -> None:
        self.sqlite = sqlite
        self.journal = JournalRows(sqlite)
        self.handoffs = HandoffRows(sqlite)

    @classmethod
    async def open(cls, path: Path) -> Store:
        sqlite = SQLiteThread(path)
        await sqlite.open()
        return cls(sqlite)

    async def close(self) -> None:
        await self.sqlite.close()

    def _table(self, name: str) -> Table:
        return cast(Table, self.sqlite.db[name])

    async def record_question(
        self, incoming: Incoming, tokens: int, place: Place | None = None, rate: int = 0,
        role: str = "user", counted: bool = True,
    ) -> RecordedQuestion | None:
        """Write the question before any reply; None if its event id was seen before.

        With a `place`, the reply is journaled in the same transaction, so a crash at any
        later moment leaves a row that says where its messages are. With a `rate`, a question
        beyond the asker's `rate` admitted questions in the last hour is kept but not
        admitted: its `wait_seconds` says when the next one will be. A message kept while a
        person handles the thread is not `counted` against the cap, and its `role` is
        "agent" when the team wrote it.
        """
        return await self.sqlite.call(self._record_question, incoming, tokens, place, rate,
                                      role, counted)

    def _record_question(
        self, incoming: Incoming, tokens: int, place: Place | None, rate: int, role: str,
        counted: bool,
    ) -> RecordedQuestion | None:
        db, now = self.sqlite.db, time.time()
        key = incoming.key
        with db.atomic():
            # The unique key decides, not a read-then-write: two deliveries can race here.
            cursor = db.execute(
                "INSERT OR IGNORE INTO events (key, conversation_id, created_at) VALUES (?, ?, ?)",
                [f"{key.platform.value}:{incoming.event_id}", key.id, now],
            )
            if cursor.rowcount == 0:
                return None
            touch_conversation(self.sqlite.db, key, now)
            wait = self._wait_for_cap(incoming, rate, now) if rate else 0.0
            message_id = self._insert_message(key, role, incoming.text, tokens, now, incoming)
            position = message_id * 2
            db.execute("UPDATE messages SET position = ?, admitted = ? WHERE id = ?",
                       [position, int(wait == 0 and counted), message_id])
            db.execute(
                "UPDATE events SET message_id = ? WHERE key = ?",
                [message_id, f"{key.platform.value}:{incoming.event_id}"],
            )
            if place is not None:
                self.journal.insert(message_id, incoming, place, now)
        return RecordedQuestion(message_id=message_id, position=position, wait_seconds=wait,
                                ready_at=round(now + wait) if wait else 0.0)

    def _wait_for_cap(self, incoming: Incoming, rate: int, now: float) -> float:
        """Seconds until the asker may ask again, 0 when this question is within the cap."""
        if not incoming.author_id:
            return 0.0
        rows = self.sqlite.db.execute(
            "SELECT created_at FROM messages WHERE author_id = ? AND created_at > ?"
            " AND admitted = 1 AND role = 'user' AND conversation_id LIKE ?"
            " ORDER BY created_at DESC LIMIT ?",
            [incoming.author_id, now - HOUR, f"{incoming.key.platform.value}:%", rate],
        ).fetchall()
        if len(rows) < rate:
            return 0.0
        return max(1.0, float(rows[-1][0]) + HOUR - now)  # when the oldest leaves the hour

    def _insert_message(
        self,
        key: ConversationKey,
        role: str,
        text: str,
        tokens: int,
        now: float,
        incoming: Incoming | None = None,
        position: int | None = None,
    ) -> int:
        cursor = self.sqlite.db.execute(
            "INSERT INTO messages (conversation_id, position, role, text, tokens, author_id,"
            " image_count, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                key.id,
                position,
                role,
                text,
                tokens,
                incoming.author_id if incoming else "",
                len(incoming.images) if incoming else 0,
                now,
            ],
        )
        return int(cursor.lastrowid or 0)

    async def history(
        self, key: ConversationKey, upto: RecordedQuestion, budget: int
    ) -> list[Turn]:
        """Turns up to and including `upto`, newest first until `budget` tokens are covered.

        Returned oldest first. Reads from the newest end by index, so its cost does not grow
        with the length of the thread.
        """
        return await self.sqlite.call(self._history, key, upto.position, budget)

    def _history(self, key: ConversationKey, position: int, budget: int) -> list[Turn]:
        turns: list[Turn] = []
        used = 0
        for _ in range(1_000_000):  # bounded: each pass consumes a batch or stops
            rows = self.sqlite.db.execute(
                "SELECT position, role, text, tokens FROM messages"
                " WHERE conversation_id = ? AND position <= ? ORDER BY position DESC LIMIT ?",
                [key.id, position, _BATCH],
            ).fetchall()
            for row_position, role, text, tokens in rows:
                if role == "agent":  # a person from the team, while the bot was quiet
                    role, text = "assistant", f"{AGENT_LABEL} {text}"
                turns.append(Turn(role=role, text=text, tokens=tokens))
                used += tokens
                position = row_position - 1
                if used > budget:
                    break
            if used > budget or len(rows) < _BATCH:
                break
        turns.reverse()
        return turns

    async def record_gap(
        self, key: ConversationKey, question: str, reason: str, confidence: float,
        closest: Sequence[Passage], author_id: str = "",
    ) -> None:
        """Note a question the docs did not answer, with the closest passages found."""
        found = json.dumps([[p.source, p.heading, p.score] for p in closest])
        await self.sqlite.call(
            lambda: self.sqlite.db.execute(
                "INSERT INTO docs_gaps (conversation_id, question, reason, confidence, closest,"
                " created_at, author_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [key.id, question, reason, round(confidence, 4), found, time.time(), author_id],
            )
        )

    async def docs_gaps(self, since: float = 0.0) -> list[tuple[str, str, float, str]]:
        """(question, reason, confidence, closest JSON) of recorded gaps, newest first."""
        rows = await self.sqlite.call(
            lambda: self.sqlite.db.execute(
                "SELECT question, reason, confidence, closest FROM docs_gaps"
                " WHERE created_at >= ? ORDER BY id DESC", [since],
            ).fetchall()
        )
        return [(str(r[0]), str(r[1]), float(r[2]), str(r[3])) for r in rows]

    async def earlier_questions(
        self, key: ConversationKey, before: RecordedQuestion, count: int = 2
    ) -> list[str]:
        """The thread's last `count` questions before this one, oldest first (for search)."""
        rows = await self.sqlite.call(
            lambda: self.sqlite.db.execute(
                "SELECT text FROM messages WHERE conversation_id = ? AND position < ?"
                " AND role = 'user' ORDER BY position DESC LIMIT ?",
                [key.id, before.position, count],
            ).fetchall()
        )
        return [str(row[0]) for row in reversed(rows)]

    async def record_answer(
        self,
        key: ConversationKey,
        question: RecordedQuestion,
        answer: Answer,
        tokens: int,
        total_ms: float,
        first_sign_ms: float | None = None,
    ) -> None:
        """Store what the user saw as the assistant's turn, with its usage and cost.

        The reply leaves the journal unless it was interrupted: an interrupted reply stays
        there for the next start to finish.
        """
        await self.sqlite.call(self._record_answer, key, question, answer, tokens, total_ms,
                               first_sign_ms)

    def _record_answer(
        self,
        key: ConversationKey,
        question: RecordedQuestion,
        answer: Answer,
        tokens: int,
        total_ms: float,
        first_sign_ms: float | None,
    ) -> None:
        db, now = self.sqlite.db, time.time()
        with db.atomic():
            if answer.outcome != "interrupted":
                self.journal.delete(question.message_id)
            answer_id = 0
            # A refusal is kept too, so the refused question is not merged into the next one.
            kept = ("answered", "kb_only", "refused", "not_in_docs", "over_budget",
                    "rate_limited", "handed_over")
            if answer.text.strip() and answer.outcome in kept:
                answer_id = self._insert_message(
                    key, "assistant", answer.text, tokens, now, position=question.position + 1
                )
            # Plain SQL: sqlite-utils' insert() inspects the table on every call.
            db.execute(
                "INSERT INTO replies (conversation_id, question_id, answer_id, model,"
                " stop_reason, outcome, input_tokens, output_tokens,"
                " cache_creation_input_tokens, cache_read_input_tokens, cost_usd,"
                " first_text_ms, total_ms, created_at, sources, first_sign_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    key.id,
                    question.message_id,
                    answer_id or None,
                    answer.model,
                    answer.stop_reason,
                    answer.outcome,
                    answer.usage.input_tokens,
                    answer.usage.output_tokens,
                    answer.usage.cache_creation_input_tokens,
                    answer.usage.cache_read_input_tokens,
                    answer.cost_usd,
                    answer.first_text_ms,
                    total_ms,
                    now,
                    json.dumps([list(source) for source in answer.sources]),
                    first_sign_ms,
                ],
            )
            # Votes cast while this was being written learn what they were about.
            db.execute("UPDATE feedback SET model = ?, sources = ? WHERE question_id = ?"
                       " AND model = ''", [answer.model, json.dumps(
                           [list(source) for source in answer.sources]), question.message_id])

    async def event_seen(self, platform: Platform, event_id: str) -> bool:
        """True when this event was taken in before (a quick look before slow preparation)."""
        return await self.sqlite.call(self._event_seen, f"{platform.value}:{event_id}")

    def _event_seen(self, key: str) -> bool:
        row = self.sqlite.db.execute("SELECT 1 FROM events WHERE key = ?", [key]).fetchone()
        return row is not None

    async def conversation_exists(self, key: ConversationKey) -> bool:
        return await self.sqlite.call(self._conversation_updated, key) is not None

    async def conversation_updated_at(self, key: ConversationKey) -> float | None:
        """Unix time of the conversation's last question, None if it never had one."""
        return await self.sqlite.call(self._conversation_updated, key)

    def _conversation_updated(self, key: ConversationKey) -> float | None:
        row = self.sqlite.db.execute(
            "SELECT updated_at FROM conversations WHERE id = ?", [key.id]
        ).fetchone()
        return None if row is None else float(row[0])

    async def get_value(self, name: str) -> str | None:
        return await self.sqlite.call(self._get_value, name)

    def _get_value(self, name: str) -> str | None:
        row = self.sqlite.db.execute("SELECT value FROM kv WHERE key = ?", [name]).fetchone()
        return None if row is None else str(row[0])

    async def set_value(self, name: str, value: str) -> None:
        await self.sqlite.call(self._set_value, name, value)

    def _set_value(self, name: str, value: str) -> None:
        with self.sqlite.db.atomic():
            self._table("kv").upsert({"key": name, "value": value}, pk="key")

    async def first_time(self, name: str) -> bool:
        """True the first time `name` is asked about, False ever after (kept in kv)."""
        return await self.sqlite.call(self._first_time, name)

    def _first_time(self, name: str) -> bool:
        with self.sqlite.db.atomic():
            cursor = self.sqlite.db.execute(
                "INSERT OR IGNORE INTO kv (key, value) VALUES (?, ?)", [name, str(time.time())]
            )
        return cursor.rowcount == 1

    async def spent_since(self, since: float) -> float:
        """Dollars the model's replies cost since a Unix time (replies of unknown price: 0)."""
        row = await self.sqlite.call(
            lambda: self.sqlite.db.execute(
                "SELECT total(cost_usd) FROM replies WHERE created_at >= ?", [since]
            ).fetchone()
        )
        return float(row[0])

    async def usage_totals(self, since: float = 0.0) -> UsageTotals:
        """Replies, tokens and dollars since a Unix time."""
        return await self.sqlite.call(self._usage_totals, since)

    def _usage_totals(self, since: float) -> UsageTotals:
        row = self.sqlite.db.execute(
            "SELECT count(*), total(input_tokens), total(output_tokens),"
            " total(cache_read_input_tokens), total(cache_creation_input_tokens),"
            " total(cost_usd), sum(cost_usd IS NULL AND output_tokens > 0),"
            " sum(outcome IN ('failed', 'interrupted')), count(DISTINCT conversation_id)"
            " FROM replies WHERE created_at >= ?",
            [since],
        ).fetchone()
        return UsageTotals(
            replies=int(row[0]),
            input_tokens=int(row[1]),
            output_tokens=int(row[2]),
            cache_read_input_tokens=int(row[3]),
            cache_creation_input_tokens=int(row[4]),
            cost_usd=float(row[5]),
            unpriced_replies=int(row[6] or 0),
            failed=int(row[7] or 0),
            conversations=int(row[8]),
        )
