"""The seam between the responder and a platform: a Surface shows one reply as it grows.

Platforms implement these protocols; the core depends on them and never on an adapter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.conversation import ConversationKey, PageRef, Place
from bot.handoff import HandoffSummary

# What a partial update awaits just before its first write (see Surface.update).
Ahead = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Snapshot:
    """What to show now: one string per platform message, and whether this is the last word."""

    pages: tuple[str, ...]
    text: str
    final: bool
    reply_id: str = ""  # a final answer's id: platforms with buttons put theirs under it


class Surface(Protocol):
    """One reply on one platform: a first visible sign, edits while streaming, a final text.

    Implementations own their platform's limits: `limit` is the most characters one message
    may hold, `interval()` the seconds to wait between edits right now (it may grow when a
    shared rate-limit budget is busy), and `render()` turns the model's Markdown into the
    platform's format with mentions made harmless.
    """

    @property
    def limit(self) -> int: ...

    def interval(self) -> float: ...

    def render(self, markdown: str) -> str: ...

    def size(self, text: str) -> int:
        """How the platform measures text against `limit` (characters, or UTF-8 bytes)."""
        ...

    async def start(self) -> None:
        """Show that an answer is coming (placeholder message, typing indicator, deferral)."""
        ...

    async def update(self, snapshot: Snapshot, ahead: Ahead | None = None) -> bool | None:
        """Show a newer partial text; return False if it was skipped (no budget right now).

        `ahead` is awaited once, right before the update's first platform write, never for
        an update skipped without one; when it returns False nothing is written (and the
        update counts as done).
        """
        ...

    async def finish(self, snapshot: Snapshot) -> None:
        """Show the final text exactly; must not give up while the platform is reachable."""
        ...


@runtime_checkable
class Journaled(Protocol):
    """A Surface whose messages can be found again after a restart."""

    def where(self) -> Place:
        """Where the reply goes, known before its first write."""
        ...

    def pages(self) -> tuple[PageRef, ...]:
        """The platform messages written so far, with the text each was last given."""
        ...


@runtime_checkable
class Placeholder(Protocol):
    """A Surface whose first sign stays on screen until a reply replaces it (Discord's
    "thinking…" of a deferred /ask): it is never left without one, even where the bot
    would otherwise stay silent."""

    def awaits_reply(self) -> bool: ...


# A platform's way back to a journaled reply: a Surface that continues in its messages, or
# None when the reply is not this process's to finish (another user's console, say).
Restore = Callable[[Place, tuple[PageRef, ...]], Awaitable[Surface | None]]


@dataclass(frozen=True)
class Posted:
    """Where a handover summary landed, and the link to the asker's thread."""

    place: str  # sorted-key JSON of the summary message: its ✅ finds the handover by it
    thread_link: str = ""


class Escalation(Protocol):
    """A platform's way to reach the team: its escalation channel, and the thread itself."""

    @property
    def configured(self) -> bool:
        """Whether an escalation channel is set for this platform."""
        ...

    async def post(self, summary: HandoffSummary) -> Posted | None:
        """Post the summary (with the team's mention); None when it was not posted."""
        ...

    async def say(self, key: ConversationKey, text: str) -> None:
        """A plain message from the bot in the conversation (the thread is given back)."""
        ...

    def is_private(self, key: ConversationKey) -> bool:
        """Whether the conversation is a direct message the team cannot see or reply in."""
        ...

    async def mark_resolved(self, summary_place: str, resolver: str) -> None:
        """Show on the summary who resolved the thread, and take its button away."""
        ...
