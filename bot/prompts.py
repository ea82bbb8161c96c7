"""The request we send the model: system prompt from prompts/*.md, docs passages, history (pure).

Files are read once when a PromptBook is made, so editing the prompts takes effect on restart.
The defaults ship inside the package (built from the top-level prompts/ folder); a team points
SUPPORTBOT_PROMPTS at its own folder to replace them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bot.conversation import Passage, Platform, Prompt, Turn

_PACKAGE = Path(__file__).resolve().parent


def shipped_prompts() -> Path:
    """The default prompts: inside the installed package, or prompts/ in a source checkout."""
    installed = _PACKAGE / "default_prompts"  # the wheel maps prompts/ here
    if (installed / "system.md").is_file():
        return installed
    return _PACKAGE.parent / "prompts"


@dataclass(frozen=True)
class PromptBook:
    """The editable prompt texts: the base system prompt and one style hint per platform."""

    system: str
    platform_hints: dict[Platform, str]

    @classmethod
    def load(cls, folder: Path | None = None) -> PromptBook:
        """Read system.md and the platform_*.md hints (missing hints are empty)."""
        folder = folder or shipped_prompts()
        system = (folder / "system.md").read_text(encoding="utf-8").strip()
        hints = {}
        for platform in Platform:
            path = folder / f"platform_{platform.value}.md"
            hints[platform] = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
        return cls(system=system, platform_hints=hints)

    def system_for(self, platform: Platform) -> str:
        hint = self.platform_hints.get(platform, "")
        return f"{self.system}\n\n{hint}" if hint else self.system


def context_block(passages: Sequence[Passage]) -> str:
    """The docs passages as one block the system prompt refers to."""
    if not passages:
        return (
            "<documentation>\nNo passage of the team's documentation matched this question."
            "\n</documentation>"
        )
    parts = [
        f'<passage index="{n}" source="{_attribute(p.source)}" section="{_attribute(p.heading)}">'
        f"\n{_inside(p.text)}\n</passage>"
        for n, p in enumerate(passages, start=1)
    ]
    return "<documentation>\n" + "\n".join(parts) + "\n</documentation>"


# A page that writes "</passage>" or "</documentation>" (an HTML tutorial, or a planted page)
# must not close the block early and have what follows read as the bot's own words.
_CLOSING_TAG = re.compile(r"<(/?)\s*(passage|documentation)\b", re.IGNORECASE)


def _inside(text: str) -> str:
    return _CLOSING_TAG.sub(lambda m: f"‹{m.group(1)}{m.group(2)}", text)


def _attribute(value: str) -> str:
    return _inside(value).replace('"', "'").replace("\n", " ")


def build_prompt(
    book: PromptBook,
    platform: Platform,
    passages: Sequence[Passage],
    window: Sequence[Turn],
    max_tokens: int,
) -> Prompt:
    """The full request content for one reply."""
    return Prompt(
        system=book.system_for(platform),
        context=context_block(passages),
        # A message cannot open a documentation block of its own either.
        turns=tuple(replace(t, text=_inside(t.text)) for t in window),
        max_tokens=max_tokens,
    )
