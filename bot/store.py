"""The session store: conversations, their messages, processed events and usage, in the
embedded SQLite file or in PostgreSQL (bot/engine.py is the seam; the SQL here runs on both).

The database migrates itself on open. Callers see plain values, never SQL.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bot.config import is_postgres_url
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
from bot.database import SQLiteThread
from bot.engine import Engine, SQLiteEngine, Tx
from bot.handoff import AGENT_LABEL
from bot.handoff_rows import HandoffRows
from bot.journal_rows import JournalRows
from bot.postgres import PostgresEngine

log = logging.getLogger(__name__)

T = TypeVar("T")
_BATCH = 256  # rows read per step when walking a thread back from its newest end
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
    """Conversations and their history; every write is durable before it returns.

    `sqlite` is the local file the knowledge base lives in: the store's own file on SQLite,
    and a per-instance index beside a PostgreSQL store (the docs are its source).
    """

    def __init__(self, engine: Engine, sqlite: SQLiteThread) -> None:
        self.engine = engine
        self.sqlite = sqlite
        self.journal = JournalRows(engine)
        self.handoffs = HandoffRows(engine)

    @classmethod
    async def open(cls, db: Path | str, kb_index: Path | None = None,
                   pool_size: int = 10) -> Store:
        """The store at `db`: a SQLite file, or a postgresql:// URL (then the knowledge base
        is indexed into the file `kb_index`)."""
        if isinstance(db, str) and is_postgres_url(db):
            engine = await PostgresEngine.open(db, pool_size)
            sqlite = SQLiteThread(kb_index or Path("supportbot-kb.db"), "SUPPORTBOT_KB_INDEX")
            try:
                await sqlite.open()
            except BaseException:
                await engine.close()
                raise
            return cls(engine, sqlite)
        sqlite = SQLiteThread(Path(db))
        await sqlite.open()
        return cls(SQLiteEngine(sqlite), sqlite)

    async def close(self) -> None:
        try:
            if self.engine.kind != "sqlite":
                await self.sqlite.close()
        finally:
            await self.engine.close()

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
        now, key = time.time(), incoming.key
        event_key = f"{key.platform.value}:{incoming.event_id}"
        async def body(tx: Tx) -> RecordedQuestion | None:
            # The unique key decides, not a read-then-write: two deliveries can race here.
            taken = await tx.execute(
                "INSERT INTO events (key, conversation_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING", [event_key, key.id, now])
            if taken.rowcount == 0:
                return None
            await touch_conversation(tx, key, now)
            if rate and incoming.author_id:  # racing questions of one asker take turns
                await tx.lock(f"cap:{key.platform.value}:{incoming.author_id}")
            wait = await _wait_for_cap(tx, incoming, rate, now) if rate else 0.0
            message_id = await _insert_message(tx, key, role, incoming.text, tokens, now,
                                               incoming)
            position = message_id * 2
            await tx.execute("UPDATE messages SET position = ?, admitted = ? WHERE id = ?",
                             [position, int(wait == 0 and counted), message_id])
            await tx.execute("UPDATE events SET message_id = ? WHERE key = ?",
                             [message_id, event_key])
            if place is not None:
                await self.journal.insert(tx, message_id, incoming, place, now)
            return RecordedQuestion(message_id=message_id, position=position,
                                    wait_seconds=wait, ready_at=round(now + wait) if wait else 0.0)

        return await self.engine.run(body)

    async def history(
        self, key: ConversationKey, upto: RecordedQuestion, budget: int
    ) -> list[Turn]:
        """Turns up to and including `upto`, newest first until `budget` tokens are covered.

        Returned oldest first. Reads from the newest end by index, so its cost does not grow
        with the length of the thread.
        """
        turns: list[Turn] = []
        used, position = 0, upto.position
        for _ in range(1_000_000):  # bounded: each pass consumes a batch or stops
            rows = (await self.engine.execute(
                "SELECT position, role, text, tokens FROM messages"
                " WHERE conversation_id = ? AND position <= ? ORDER BY position DESC LIMIT ?",
                [key.id, position, _BATCH],
            )).rows
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
        await self.engine.execute(
            "INSERT INTO docs_gaps (conversation_id, question, reason, confidence, closest,"
            " created_at, author_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [key.id, question, reason, round(confidence, 4), found, time.time(), author_id],
        )

    async def docs_gaps(self, since: float = 0.0) -> list[tuple[str, str, float, str]]:
        """(question, reason, confidence, closest JSON) of recorded gaps, newest first."""
        rows = (await self.engine.execute(
            "SELECT question, reason, confidence, closest FROM docs_gaps"
            " WHERE created_at >= ? ORDER BY id DESC", [since],
        )).rows
        return [(str(r[0]), str(r[1]), float(r[2]), str(r[3])) for r in rows]

    async def earlier_questions(
        self, key: ConversationKey, before: RecordedQuestion, count: int = 2
    ) -> list[str]:
        """The thread's last `count` questions before this one, oldest first (for search)."""
        rows = (await self.engine.execute(
            "SELECT text FROM messages WHERE conversation_id = ? AND position < ?"
            " AND role = 'user' ORDER BY position DESC LIMIT ?",
            [key.id, before.position, count],
        )).rows
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
        now = time.time()
        sources = json.dumps([list(source) for source in answer.sources])
        async def body(tx: Tx) -> None:
            await tx.lock(f"reply:{question.message_id}")  # a vote on it waits (HandoffRows)
            if await self.journal.taken_by_another(question.message_id, tx):
                return  # another instance took this reply over: its answer is the one kept
            if answer.outcome != "interrupted":
                await self.journal.delete(tx, question.message_id)
            answer_id = 0
            # A refusal is kept too, so the refused question is not merged into the next one.
            kept = ("answered", "kb_only", "refused", "not_in_docs", "over_budget",
                    "rate_limited", "handed_over")
            if answer.text.strip() and answer.outcome in kept:
                answer_id = await _insert_message(
                    tx, key, "assistant", answer.text, tokens, now,
                    position=question.position + 1)
            await tx.execute(
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
                    sources,
                    first_sign_ms,
                ],
            )
            # Votes cast while this was being written learn what they were about.
            await tx.execute("UPDATE feedback SET model = ?, sources = ? WHERE question_id = ?"
                             " AND model = ''", [answer.model, sources, question.message_id])

        await self.engine.run(body)

    async def event_seen(self, platform: Platform, event_id: str) -> bool:
        """True when this event was taken in before (a quick look before slow preparation)."""
        found = await self.engine.execute("SELECT 1 FROM events WHERE key = ?",
                                          [f"{platform.value}:{event_id}"])
        return found.first() is not None

    async def conversation_exists(self, key: ConversationKey) -> bool:
        return await self.conversation_updated_at(key) is not None

    async def conversation_updated_at(self, key: ConversationKey) -> float | None:
        """Unix time of the conversation's last question, None if it never had one."""
        row = (await self.engine.execute(
            "SELECT updated_at FROM conversations WHERE id = ?", [key.id])).first()
        return None if row is None else float(row[0])

    async def get_value(self, name: str) -> str | None:
        row = (await self.engine.execute("SELECT value FROM kv WHERE key = ?", [name])).first()
        return None if row is None else str(row[0])

    async def set_value(self, name: str, value: str) -> None:
        await self.engine.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value", [name, value])

    async def first_time(self, name: str) -> bool:
        """True the first time `name` is asked about, False ever after (kept in kv)."""
        taken = await self.engine.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            [name, str(time.time())])
        return taken.rowcount == 1

    async def spent_since(self, since: float) -> float:
        """Dollars the model's replies cost since a Unix time (replies of unknown price: 0)."""
        row = (await self.engine.execute(
            "SELECT coalesce(sum(cost_usd), 0) FROM replies WHERE created_at >= ?", [since]
        )).first()
        return float(row[0]) if row else 0.0

    async def usage_totals(self, since: float = 0.0) -> UsageTotals:
        """Replies, tokens and dollars since a Unix time."""
        row = (await self.engine.execute(
            "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
            " coalesce(sum(cache_read_input_tokens), 0),"
            " coalesce(sum(cache_creation_input_tokens), 0), coalesce(sum(cost_usd), 0),"
            " sum(CASE WHEN cost_usd IS NULL AND output_tokens > 0 THEN 1 ELSE 0 END),"
            " sum(CASE WHEN outcome IN ('failed', 'interrupted') THEN 1 ELSE 0 END),"
            " count(DISTINCT conversation_id)"
            " FROM replies WHERE created_at >= ?",
            [since],
        )).rows[0]
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


async def touch_conversation(tx: Tx, key: ConversationKey, now: float) -> None:
    """Create the conversation's row, or note that it was just used."""
    await tx.execute(
        "INSERT INTO conversations (id, platform, workspace, channel, thread, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at",
        [key.id, key.platform.value, key.workspace, key.channel, key.thread, now, now],
    )


async def _wait_for_cap(tx: Tx, incoming: Incoming, rate: int, now: float) -> float:
    """Seconds until the asker may ask again, 0 when this question is within the cap."""
    if not incoming.author_id:
        return 0.0
    rows = (await tx.execute(
        "SELECT created_at FROM messages WHERE author_id = ? AND created_at > ?"
        " AND admitted = 1 AND role = 'user' AND conversation_id LIKE ?"
        " ORDER BY created_at DESC LIMIT ?",
        [incoming.author_id, now - HOUR, f"{incoming.key.platform.value}:%", rate],
    )).rows
    if len(rows) < rate:
        return 0.0
    return max(1.0, float(rows[-1][0]) + HOUR - now)  # when the oldest leaves the hour


async def _insert_message(
    tx: Tx,
    key: ConversationKey,
    role: str,
    text: str,
    tokens: int,
    now: float,
    incoming: Incoming | None = None,
    position: int | None = None,
) -> int:
    return await tx.insert(
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
