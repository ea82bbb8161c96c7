"""`supportbot kb suggest`: a draft docs page from each thread a person resolved, for the team
to review and then `kb add`. The draft holds the question, the person's answer and a link;
drafts are noted, so a thread is drafted once and `forget --user` can delete theirs."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.engine import Engine

SLUG_WORDS = 8


@dataclass(frozen=True)
class Resolved:
    """A thread a person resolved, with what was said in it."""

    conversation_id: str
    asker_id: str
    link: str
    resolved_at: float
    questions: tuple[str, ...]  # the asker's messages
    answers: tuple[str, ...]  # the team's messages while they handled it


def slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:SLUG_WORDS]
    return "-".join(words) or "question"


def draft_page(thread: Resolved) -> str:
    """The draft as Markdown with front matter (`kb add` reads the title and link)."""
    question = thread.questions[0] if thread.questions else "(question not kept)"
    title = " ".join(question.split())[:80].replace("\\", "/").replace('"', "'")
    when = datetime.fromtimestamp(thread.resolved_at, UTC).strftime("%Y-%m-%d")
    lines = ["---", f'title: "{title}"']
    if thread.link:
        lines.append(f"url: {thread.link}")
    lines += ["---", "", f"# {title}", "", "## The question", ""]
    lines += [f"> {line}" for q in thread.questions for line in q.splitlines()]
    lines += ["", "## The team's answer", ""]
    lines += ["\n\n".join(thread.answers), ""]
    source = f"[the support thread]({thread.link})" if thread.link else "a support thread"
    lines.append(f"_Drafted by supportbot from {source} a person resolved on {when}. Check it, "
                 "make it general, then add it to your docs._")
    return "\n".join(lines) + "\n"


class Suggestions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def resolved_since(self, since: float) -> list[Resolved]:
        """Resolved threads not drafted yet, oldest first."""
        handoffs = (await self.engine.execute(
            "SELECT h.conversation_id, h.asker_id, h.link, h.requested_at, h.resolved_at"
            " FROM handoffs h WHERE h.state = 'resolved' AND h.resolved_at >= ?"
            # Drafted once: the team may have moved the draft into the docs since.
            " AND NOT EXISTS (SELECT 1 FROM kb_drafts d"
            "   WHERE d.conversation_id = h.conversation_id) ORDER BY h.resolved_at", [since],
        )).rows
        found = []
        for conversation, asker, link, requested, resolved in handoffs:
            said = (await self.engine.execute(
                "SELECT role, text, created_at FROM messages WHERE conversation_id = ?"
                " AND created_at <= ? AND (role = 'agent' OR (role = 'user' AND author_id = ?))"
                " ORDER BY position", [conversation, resolved, asker],
            )).rows
            # The question(s) that led to the handover, not what came after the answer.
            questions = tuple(text for role, text, at in said
                              if role == "user" and at <= requested + 1)
            answers = tuple(text for role, text, at in said if role == "agent" and at >= requested)
            found.append(Resolved(str(conversation), str(asker), str(link or ""),
                                  float(resolved), questions, answers))
        return found

    async def write(self, thread: Resolved, folder: Path) -> Path:
        """Write the draft (never over another file) and note it."""
        when = datetime.fromtimestamp(thread.resolved_at, UTC).strftime("%Y-%m-%d")
        base = f"{when}-{slug(thread.questions[0] if thread.questions else '')}"
        path = folder / f"{base}.md"
        for n in range(2, 1000):  # bounded: a thousand drafts of one question on one day
            if not path.exists():
                break
            path = folder / f"{base}-{n}.md"
        # Customers' words: readable by the owner only, like the database and exports.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(draft_page(thread))
        await self.engine.execute(
            "INSERT INTO kb_drafts (path, conversation_id, asker_id, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
            " conversation_id = excluded.conversation_id, asker_id = excluded.asker_id,"
            " created_at = excluded.created_at",
            [str(path.resolve()), thread.conversation_id, thread.asker_id, time.time()])
        return path
