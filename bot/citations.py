"""Sources the code shows, not the model (pure).

Passages go to the model numbered; the model cites them as [n]. When the answer is complete,
citations to numbers it was not given are removed, and a short "Sources" line names the
passages it cited, with links, in each platform's own form: Slack and Discord get Markdown
links (Discord's in angle brackets, so no embed previews unfold), the console plain text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.conversation import Passage, Platform
from bot.docs_parse import PATH_SEPARATOR
from bot.dont_know import MARKERS, MarkerWatch
from bot.notices import docs_sections, place_of

_CITATION = re.compile(r"[ \t]?\[(\d{1,3})\]")
MAX_SOURCES = 4


def cited(text: str, given: int) -> tuple[str, list[int]]:
    """The text without citations to passages that were not given, and the numbers of the
    given ones it cites, in order of first use."""
    used: list[int] = []

    def keep(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if not 1 <= number <= given:
            return ""
        if number not in used:
            used.append(number)
        return match.group(0)

    return _CITATION.sub(keep, text), used


def short_title(passage: Passage) -> str:
    """The last two steps of the heading path: enough to recognise the page and section."""
    steps = [s for s in passage.heading.split(PATH_SEPARATOR) if s] or [passage.source]
    return PATH_SEPARATOR.join(steps[-2:])


def sources_line(passages: Sequence[Passage], used: Sequence[int], platform: Platform) -> str:
    """"Sources: [1] title · [2] title", linked where the passage has a URL; "" if none."""
    items: list[str] = []
    for number in list(used)[:MAX_SOURCES]:
        passage = passages[number - 1]
        title = short_title(passage).replace("[", "(").replace("]", ")")
        if platform is Platform.CONSOLE:
            items.append(f"[{number}] {title}{place_of(passage)}")
        elif passage.url and platform is Platform.DISCORD:
            items.append(f"[{number}] [{title}](<{passage.url}>)")
        elif passage.url:
            items.append(f"[{number}] [{title}]({passage.url})")
        else:
            items.append(f"[{number}] {title} ({passage.source})")
    if not items:
        return ""
    label = "Sources:" if platform is Platform.CONSOLE else "**Sources:**"
    return f"{label} " + " · ".join(items)


@dataclass(frozen=True)
class Grounding:
    """What one reply was given from the docs, and how its platform shows sources."""

    passages: Sequence[Passage]
    words: Sequence[str]  # the question's search words, for matching lines
    platform: Platform
    watch: MarkerWatch = field(default_factory=MarkerWatch)  # the model's markers
    offer: str = ""  # the "I don't know" reply's last line: how to reach a person
    question_cut: bool = False  # the message was longer than the bot reads

    def titles(self) -> tuple[tuple[str, str], ...]:
        """(title, link or file) of each passage given, for the record and the handover."""
        return tuple((p.heading or p.source, p.url or p.source) for p in self.passages)

    def fallback(self) -> str:
        """The closest sections, for when the model cannot be reached."""
        return docs_sections(self.passages, self.words) if self.passages else ""

    def closing(self, text: str) -> tuple[str, str]:
        """The answer with only valid citations, and the Sources note to put under it."""
        for marker in MARKERS:  # never shown, wherever a model put one, even cut off at the end
            if marker in text:
                text = text.replace(marker, "").rstrip()
            cut = next((n for n in range(len(marker) - 1, 1, -1)
                        if text.rstrip().endswith(marker[:n])), 0)
            if cut:
                text = text.rstrip()[:-cut].rstrip()
        clean, used = cited(text, len(self.passages))
        line = sources_line(self.passages, used, self.platform)
        return clean, ("\n\n" + line if line else "")
