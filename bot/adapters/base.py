"""The seam between the responder and a platform: a Surface shows one reply as it grows."""

from __future__ import annotations

from typing import Protocol

from bot.streaming import Snapshot


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

    async def update(self, snapshot: Snapshot) -> bool | None:
        """Show a newer partial text; return False if it was skipped (no budget right now)."""
        ...

    async def finish(self, snapshot: Snapshot) -> None:
        """Show the final text exactly; must not give up while the platform is reachable."""
        ...
