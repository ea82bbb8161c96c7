"""LiveReply: how a stream of text deltas becomes what the user sees (pure, no I/O).

The first text is shown at once; after that at most one update per interval, always the
newest text (updates coalesce and never go backwards). While streaming, the last page ends
with a typing marker; the final text is exact and has none. Text longer than the platform's
limit is split into pages at paragraph, line, sentence or word boundaries, and a code fence
open at a page break is closed on that page and reopened on the next.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.formatting import visible_text
from bot.surface import Snapshot

TYPING_MARKER = " ▍"
FENCE_CLOSE = "\n```"
_FENCE_LINE = re.compile(r"^ {0,3}(```+|~~~+)(.*)$")
_SENTENCE_END = re.compile(r"[.!?:;][)\"'*_]*\s")
_MAX_LANG = 20


@dataclass(frozen=True)
class Page:
    """One platform message: `body` is an exact slice of the answer, `text` is what is shown."""

    body: str
    text: str


def split_pages(
    text: str, limit: int, reserve: int = 0, size: Callable[[str], int] = len
) -> list[Page]:
    """Split `text` into pages whose shown size is at most `limit - reserve` each.

    `size` measures what the platform counts (characters by default, UTF-8 bytes for some).
    """
    if limit - reserve < 32:
        raise ValueError("page limit too small to split text sensibly")
    pages: list[Page] = []
    pos = 0
    opener = ""
    for _ in range(len(text) + 1):  # each pass consumes at least one character
        room = limit - reserve - size(opener)
        rest = text[pos:]
        if size(rest) <= room:
            pages.append(Page(body=rest, text=opener + rest))
            return pages
        cut = best_cut(rest, fitting_prefix(rest, room - size(FENCE_CLOSE), size))
        cut = _not_after_fence_opening(text, pos, cut)
        body = rest[:cut]
        pos += cut
        lang = open_fence(text[:pos])
        shown = opener + body
        if lang is not None:
            shown = shown.rstrip("\n") + FENCE_CLOSE
            opener = f"```{lang}\n"
        else:
            opener = ""
        pages.append(Page(body=body, text=shown))
    raise AssertionError("unreachable: split_pages made no progress")


def fitting_prefix(text: str, room: int, size: Callable[[str], int] = len) -> int:
    """How many leading characters of `text` fit in `room` as measured by `size`."""
    if size is len:
        return max(1, min(len(text), room))
    low, high = 1, min(len(text), room)  # no character measures less than one unit
    while low < high:
        mid = (low + high + 1) // 2
        if size(text[:mid]) <= room:
            low = mid
        else:
            high = mid - 1
    return low


def utf8_size(text: str) -> int:
    """Size in UTF-8 bytes, for platforms whose limits count bytes."""
    return len(text.encode("utf-8"))


def _not_after_fence_opening(text: str, pos: int, cut: int) -> int:
    """Move a cut that would end a page on a code fence's opening line to before that line."""
    body = text[pos : pos + cut]
    line_start = body.rstrip("\n").rfind("\n") + 1
    last_line = body[line_start:].strip("\n")
    if line_start == 0 or not _FENCE_LINE.match(last_line):
        return cut
    opens_here = open_fence(text[: pos + cut]) is not None
    return line_start if opens_here else cut


def best_cut(text: str, room: int) -> int:
    """Where to end a page of at most `room` characters: the latest natural boundary."""
    window = text[:room]
    floor = room // 4  # a boundary this early would leave a near-empty page
    for boundary in ("\n\n", "\n"):
        at = window.rfind(boundary)
        if at >= floor:
            return at + len(boundary)
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] >= floor:
        return ends[-1]
    at = window.rfind(" ")
    if at >= floor:
        return at + 1
    return room


def open_fence(text: str) -> str | None:
    """The language of the code fence still open at the end of `text` ("" if none named)."""
    lang: str | None = None
    fence = ""
    for line in text.split("\n"):
        match = _FENCE_LINE.match(line)
        if match is None:
            continue
        marker, info = match.group(1), match.group(2).strip()
        if lang is None:
            lang, fence = info.split(" ")[0][:_MAX_LANG] if info else "", marker[:3]
        elif marker.startswith(fence) and not info:
            lang = None
    return lang


class LiveReply:
    """The visible state of one streaming answer, fed deltas and asked for snapshots."""

    def __init__(
        self,
        limit: int,
        render: Callable[[str], str] = str,
        marker: str = TYPING_MARKER,
        size: Callable[[str], int] = len,
    ) -> None:
        self.limit = limit
        self.render = render
        self.marker = marker
        self.size = size
        self._text = ""
        self._shown_len = 0
        self.reply_id = ""  # set for a reply that shows feedback and handover buttons
        # What the model's own text goes through before it is shown (notes the bot adds
        # under it do not): no reordering characters; the responder also has it unmask
        # links the docs did not give.
        self.guard: Callable[[str], str] = visible_text
        self._shown_at: float | None = None
        self._before_take: tuple[int, float | None] = (0, None)

    @property
    def text(self) -> str:
        return self._text

    def feed(self, delta: str) -> None:
        self._text += delta

    def has_news(self) -> bool:
        return len(self._text) > self._shown_len and bool(self._text.strip())

    def due_at(self, interval: float) -> float | None:
        """When the next update may go out (None: nothing new to show)."""
        if not self.has_news():
            return None
        if self._shown_at is None:
            return float("-inf")  # the first text goes out as soon as it arrives
        return self._shown_at + interval

    def take(self, now: float) -> Snapshot:
        """The current text as pages with the typing marker; remembered as shown."""
        shown = self.render(self.guard(self._text))
        pages = [p.text for p in split_pages(shown, self.limit, self.size(self.marker), self.size)]
        pages[-1] += self.marker
        self._before_take = (self._shown_len, self._shown_at)
        self._shown_len = len(self._text)
        self._shown_at = now
        return Snapshot(pages=tuple(pages), text=self._text, final=False)

    def retract(self) -> None:
        """Forget the last take: the surface skipped it, so that text is still news."""
        self._shown_len, self._shown_at = self._before_take

    def final(self, note: str = "", text: str | None = None) -> Snapshot:
        """The exact final text (plus an optional note), split the same way, no marker.
        `text` replaces what was streamed (the answer with its citations checked)."""
        text = self.guard(self._text if text is None else text) + note
        shown = self.render(text)
        reserve = self.size(self.marker)
        pages = tuple(p.text for p in split_pages(shown, self.limit, reserve, self.size))
        return Snapshot(pages=pages, text=text, final=True, reply_id=self.reply_id)
