"""A reply's place in its conversation's line, and the question as the model sees it."""

from __future__ import annotations

import asyncio

from bot.conversation import Incoming
from bot.formatting import visible_text


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


# The most of one message the bot reads: a pasted log or a flood stops here, so one message
# can neither fill the context window nor run up the bill (about 3,000 tokens).
MAX_QUESTION_CHARS = 12_000


def question_text(incoming: Incoming) -> str:
    """The question as the model sees it: the text (its first MAX_QUESTION_CHARS, with a
    note saying the rest was cut) plus notes about unreadable attachments.

    Text that cannot be stored as UTF-8 (lone surrogates from a broken terminal or a JSON
    escape) keeps a replacement character instead of failing the question.
    """
    text = visible_text(incoming.text)  # stored and quoted to the team as it reads
    if len(text) > MAX_QUESTION_CHARS:
        kept = text[:MAX_QUESTION_CHARS]
        at = kept.rfind(" ", MAX_QUESTION_CHARS - 200)  # not in the middle of a word
        kept = kept[:at] if at > 0 else kept
        text = (f"{kept}\n\n[The rest of this message, {len(text) - len(kept):,} more "
                f"characters, was cut: the bot reads the first {MAX_QUESTION_CHARS:,}.]")
    if incoming.notes:
        notes = "\n".join(f"[{note}]" for note in incoming.notes)
        text = f"{text}\n\n{notes}".strip()
    return text.encode("utf-8", "replace").decode("utf-8")


def is_cut(incoming: Incoming) -> bool:
    """Whether the message is longer than the bot reads."""
    return len(visible_text(incoming.text)) > MAX_QUESTION_CHARS
