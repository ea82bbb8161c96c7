"""A reply's place in its conversation's line, and the question as the model sees it."""

from __future__ import annotations

import asyncio

from bot.conversation import Incoming


class Turnstile:
    """A reply's place in its conversation's line; `leave()` lets the next one in."""

    def __init__(
        self, key: str, mine: asyncio.Future[None], tails: dict[str, asyncio.Future[None]]
    ) -> None:
        self.key = key
        self.mine = mine
        self.tails = tails

    def leave(self) -> None:
        if not self.mine.done():
            self.mine.set_result(None)
        if self.tails.get(self.key) is self.mine:
            del self.tails[self.key]


def question_text(incoming: Incoming) -> str:
    """The question as the model sees it: the text plus notes about unreadable attachments.

    Text that cannot be stored as UTF-8 (lone surrogates from a broken terminal or a JSON
    escape) keeps a replacement character instead of failing the question.
    """
    text = incoming.text
    if incoming.notes:
        notes = "\n".join(f"[{note}]" for note in incoming.notes)
        text = f"{text}\n\n{notes}".strip()
    return text.encode("utf-8", "replace").decode("utf-8")
