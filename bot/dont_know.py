""""I don't know" instead of invention (pure).

Two signals lead to the same honest reply: the search's gate (the docs hold too little of the
question) and the model's own marker, which the prompt asks it to put at the very start of an
answer the passages do not support. The marker is never shown: while the start of a streamed
answer could still become it, nothing is shown; once it is complete, the rest is held back
and replaced by the honest reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from bot.conversation import Passage
from bot.notices import docs_links

MARKER = "[[NOT_IN_DOCS]]"  # documented in prompts/system.md
HANDOFF_MARKER = "[[HANDOFF]]"  # the person asked for a human (prompts/system.md)
MARKERS = (MARKER, HANDOFF_MARKER)
MIN_WORDS = 2  # a question with fewer search words (a greeting, "thanks") is not gated


class Verdict(Enum):
    UNDECIDED = "undecided"
    ANSWER = "answer"
    DECLINED = "declined"


class MarkerWatch:
    """Decides from the first characters of a streamed answer whether it is a marker."""

    def __init__(self) -> None:
        self.verdict = Verdict.UNDECIDED
        self.marker = ""  # which marker, once declined
        self._held = ""

    def feed(self, delta: str) -> str:
        """The part of `delta` that may be shown now ("" while undecided or declined)."""
        if self.verdict is Verdict.ANSWER:
            return delta
        if self.verdict is Verdict.DECLINED:
            return ""
        self._held += delta
        head = self._held.lstrip()
        for marker in MARKERS:
            if head.startswith(marker):
                self.verdict, self.marker = Verdict.DECLINED, marker
                return ""
        if any(marker.startswith(head) for marker in MARKERS):
            return ""  # may still become a marker
        self.verdict = Verdict.ANSWER
        held, self._held = self._held, ""
        return held

    def flush(self) -> str:
        """At the end of the stream: text held back that turned out not to be the marker."""
        if self.verdict is Verdict.UNDECIDED:
            self.verdict = Verdict.ANSWER
            held, self._held = self._held, ""
            return held
        return ""

    @property
    def declined(self) -> bool:
        """The model said the passages do not answer."""
        return self.verdict is Verdict.DECLINED and self.marker == MARKER

    @property
    def wants_person(self) -> bool:
        """The model recognised a request for a human."""
        return self.verdict is Verdict.DECLINED and self.marker == HANDOFF_MARKER


def marked(watch: MarkerWatch, text: str) -> str:
    """What a finished answer's marker asks for: "wants_person", "declined", or "" for an
    answer. The marker belongs at the start; a model that puts it later still means it."""
    if watch.wants_person or HANDOFF_MARKER in text:
        return "wants_person"
    if watch.declined or MARKER in text:
        return "declined"
    return ""


def honest_reply(closest: Sequence[Passage], contact: str = "") -> str:
    """What the bot says when the docs do not answer: what it could not find, the closest
    pages, and an offer of a person."""
    parts = ["I couldn't find the answer to this in our docs, and I'd rather not guess."]
    if closest:
        parts.append("The closest pages I found:\n" + docs_links(closest))
    parts.append(contact or "A person from the team can help: please contact them directly.")
    return "\n\n".join(parts)
