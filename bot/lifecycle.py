"""The team's data duties: purge old conversations' text, export conversations as JSONL, and
forget one person. SQL for either engine; callers get counts and plain dicts.

Usage and cost rows (`replies`) hold no text, so they stay when text goes: the figures in
`stats` survive a purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.conversation import Platform
from bot.engine import Engine, Tx

log = logging.getLogger(__name__)

PURGE_BATCH = 5_000  # rows deleted per transaction, so other writers wait only briefly
MAX_BATCHES = 10_000  # bounded: 50 million rows per purge


@dataclass(frozen=True)
class Forgotten:
    questions: int
    answers: int
    docs_gaps: int
    votes: int
    handovers: int
    drafts: int

    def lines(self) -> list[str]:
        return [f"{self.questions} messages from them", f"{self.answers} answers to them",
                f"{self.docs_gaps} docs-gap records", f"{self.votes} feedback votes",
                f"{self.handovers} handover records", f"{self.drafts} kb suggest drafts"]


def parse_person(text: str) -> tuple[Platform, str]:
    """`slack:U0123ABC` or `discord:80351110224678912` → (platform, id)."""
    platform, _, person = text.partition(":")
    try:
        where = Platform(platform.strip().lower())
    except ValueError:
        raise ValueError(f"{text!r}: give PLATFORM:ID, e.g. slack:U0123ABC or "
                         "discord:80351110224678912") from None
    if not person.strip() or any(c.isspace() for c in person.strip()):
        raise ValueError(f"{text!r}: the id after {platform}: is missing")
    person = person.strip()
    return where, person.upper() if where is Platform.SLACK else person  # Slack ids: capitals


class Lifecycle:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def purge_before(self, cutoff: float) -> int:
        """Delete the text of everything older than `cutoff` (messages, docs gaps); a count."""
        total = 0
        for _ in range(MAX_BATCHES):
            done = await self._purge_batch(cutoff)
            total += done
            if done < PURGE_BATCH:
                break
        return total

    async def _purge_batch(self, cutoff: float) -> int:
        async def body(tx: Tx) -> int:
            # A thread a person still handles keeps its text: they are reading it.
            ids = [row[0] for row in (await tx.execute(
                "SELECT id FROM messages WHERE created_at < ? AND conversation_id NOT IN"
                " (SELECT conversation_id FROM handoffs WHERE state = 'open') LIMIT ?",
                [cutoff, PURGE_BATCH])).rows]
            marks = ",".join("?" * len(ids))
            if ids:
                # A reply still journaled for an old question is closed with it.
                await tx.execute(f"DELETE FROM reply_journal WHERE question_id IN ({marks})", ids)
                await tx.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)
            counts = [len(ids)]
            for sql in (
                "DELETE FROM docs_gaps WHERE created_at < ?",
                "DELETE FROM feedback WHERE updated_at < ?",
                # Handovers stay as figures (stats count them); only their thread links go.
                "UPDATE handoffs SET link = '' WHERE requested_at < ? AND state != 'open'"
                " AND link != ''",
                # Drafts may have been reviewed into the team's docs: only the note goes.
                "DELETE FROM kb_drafts WHERE created_at < ?",
                # The Slack thread read when the bot was first mentioned into it.
                "DELETE FROM kv WHERE key LIKE 'slack:thread-context:%' AND"
                " substr(key, 22) IN (SELECT id FROM conversations WHERE updated_at < ?)",
            ):
                counts.append(max((await tx.execute(sql, [cutoff])).rowcount, 0))
            return sum(counts)

        return await self.engine.run(body)

    async def export(self, since: float) -> list[dict[str, Any]]:
        """Conversations with a message since `since`, each with its messages, oldest first."""
        conversations = (await self.engine.execute(
            "SELECT id, platform, workspace, channel, thread, created_at FROM conversations"
            " WHERE id IN (SELECT conversation_id FROM messages WHERE created_at >= ?)"
            " ORDER BY created_at", [since],
        )).rows
        records = []
        for cid, platform, workspace, channel, thread, created in conversations:
            rows = (await self.engine.execute(
                "SELECT m.role, m.author_id, m.text, m.created_at, r.outcome, r.model"
                " FROM messages m LEFT JOIN replies r ON r.answer_id = m.id"
                " WHERE m.conversation_id = ? AND m.created_at >= ? ORDER BY m.position",
                [cid, since],
            )).rows
            messages = []
            for role, author, text, at, outcome, model in rows:
                message = {"role": role, "text": text, "at": at}
                if role in ("user", "agent"):  # the asker, or a person from the team
                    message["author"] = f"{platform}:{author}"
                if role == "assistant":
                    message.update(outcome=outcome or "answered", model=model or "")
                messages.append(message)
            records.append({"conversation": cid, "platform": platform, "workspace": workspace,
                            "channel": channel, "thread": thread, "started": created,
                            "messages": messages})
        return records

    async def forget(self, platform: Platform, person: str) -> Forgotten:
        """Delete one person's questions, the answers to them, and their docs-gap records."""
        theirs_like = f"{platform.value}:%"

        async def body(tx: Tx) -> Forgotten:
            theirs = (await tx.execute(
                "SELECT id, conversation_id, position, text FROM messages"
                " WHERE author_id = ? AND role IN ('user', 'agent') AND conversation_id LIKE ?",
                [person, theirs_like],
            )).rows
            # What the team wrote to them while a person handled their thread.
            answers = (await tx.execute(
                "DELETE FROM messages WHERE role = 'agent' AND conversation_id IN"
                " (SELECT conversation_id FROM handoffs WHERE asker_id = ?"
                "  AND conversation_id LIKE ?)", [person, theirs_like])).rowcount
            voter = f"{platform.value}:{person}"
            votes = (await tx.execute("DELETE FROM feedback WHERE voter = ?", [voter])).rowcount
            handovers = (await tx.execute(
                "DELETE FROM handoffs WHERE asker_id = ? AND conversation_id LIKE ?",
                [person, theirs_like])).rowcount
            drafts = await _delete_drafts(tx, person, theirs_like)
            draft_files.extend(drafts)
            # Thread context read where they wrote (it quotes them).
            await tx.execute(
                "DELETE FROM kv WHERE key LIKE 'slack:thread-context:%' AND substr(key, 22) IN"
                " (SELECT conversation_id FROM messages WHERE author_id = ?"
                "  AND conversation_id LIKE ?)", [person, theirs_like])
            gaps = (await tx.execute(
                "DELETE FROM docs_gaps WHERE author_id = ? AND conversation_id LIKE ?",
                [person, theirs_like],
            )).rowcount
            for message_id, conversation, position, text in theirs:
                await tx.execute("DELETE FROM reply_journal WHERE question_id = ?", [message_id])
                votes += (await tx.execute("DELETE FROM feedback WHERE question_id = ?",
                                           [message_id])).rowcount
                answers += (await tx.execute(
                    "DELETE FROM messages WHERE conversation_id = ? AND position = ?"
                    " AND role = 'assistant'", [conversation, position + 1],
                )).rowcount
                # Gaps recorded before their author was kept are found by question and place.
                gaps += (await tx.execute(
                    "DELETE FROM docs_gaps WHERE conversation_id = ? AND question = ?"
                    " AND author_id = ''", [conversation, text],
                )).rowcount
                await tx.execute("DELETE FROM messages WHERE id = ?", [message_id])
            return Forgotten(len(theirs), answers, gaps, votes, handovers, len(drafts))

        draft_files: list[str] = []
        gone = await self.engine.run(body)
        for path in draft_files:  # only once their records are gone for good
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()
        log.info("forgot a person: %d messages, %d answers, %d gaps, %d votes, %d handovers, "
                 "%d drafts", gone.questions, gone.answers, gone.docs_gaps, gone.votes,
                 gone.handovers, gone.drafts)
        return gone


async def _delete_drafts(tx: Tx, person: str, conversations: str) -> list[str]:
    """Delete the records of the `kb suggest` drafts that hold one person's words (asked by
    them, or answered by them for the team); their files' paths, to remove once this lands."""
    where = ("conversation_id LIKE ? AND (asker_id = ? OR conversation_id IN (SELECT"
             " conversation_id FROM messages WHERE author_id = ?))")
    params = [conversations, person, person]
    paths = [str(row[0]) for row in (await tx.execute(
        "SELECT path FROM kb_drafts WHERE " + where, params)).rows]
    await tx.execute("DELETE FROM kb_drafts WHERE " + where, params)
    return paths


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


DAY = 86400.0


async def purge_daily(lifecycle: Lifecycle, days: float, stop: asyncio.Event,
                      clock: Callable[[], float] = time.time) -> None:
    """`run`'s retention duty: purge at start, then once a day until `stop`."""
    for _ in range(1_000_000):  # one pass a day; ends with `stop`
        try:
            purged = await lifecycle.purge_before(clock() - days * DAY)
        except Exception as error:  # a locked or full disk: try again tomorrow, keep serving
            log.warning("retention purge failed (%s); trying again in a day",
                        type(error).__name__)
        else:
            if purged:
                log.info("retention: deleted %d records older than %g days", purged, days)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), DAY)
        if stop.is_set():
            return
