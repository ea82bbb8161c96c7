"""What the bot says when it cannot simply answer: empty questions, cut or interrupted
answers, refusals, model failures, and the docs-only fallback. Pure text, no I/O."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from bot.conversation import Passage
from bot.errors import (
    AuthenticationError,
    BadRequestError,
    LLMError,
    RateLimitError,
    ReplyTimeoutError,
    StreamInterruptedError,
)

EMPTY_QUESTION = (
    "Hi! Ask me your question in the same message, for example: "
    "*how do I reset my password?*"
)
NOTE_CUT = "\n\n_(The answer was cut short here. Ask me to continue.)_"
NOTE_LONG_QUESTION = (
    "\n\n_(Your message was long: I read its first {limit:,} characters. Send the part that "
    "matters most, or attach a file, if I missed it.)_"
)
NOTE_INTERRUPTED = (
    "\n\n_(Interrupted: the bot is restarting. It finishes this answer when it is back; "
    "if nothing changes here within a few minutes, please ask again.)_"
)
NOTE_RESTARTED = (
    "_(Interrupted: the bot restarted before it could finish this answer. "
    "Please ask your question again.)_"
)
REFUSAL = (
    "I can't help with that request. If you think this is a mistake, please contact the team "
    "directly."
)
NO_TEXT = "I don't have an answer to that. Please contact the team directly."
STORAGE_TROUBLE = (
    "I couldn't take your question just now (my storage is not available). Please ask again "
    "in a minute; if it keeps happening, contact the team directly."
)
NO_TEXT_CUT = (
    "I ran out of room before I could write an answer (SUPPORTBOT_MAX_TOKENS may be too low "
    "for this question). Please try again, or contact the team directly."
)


NO_KEY = "I can't reach the AI model right now (no ANTHROPIC_API_KEY is set)"
OVER_BUDGET = "Today's budget for AI answers is used up"


def please_wait(seconds: float) -> str:
    """The reply to a question past its asker's hourly cap (SUPPORTBOT_USER_RATE)."""
    minutes = max(1, int(-(-seconds // 60)))
    when = "a minute" if minutes == 1 else f"{minutes} minutes"
    return (f"You've asked a lot of questions in the last hour. Please wait {when} and ask "
            "again; I'll be glad to help then.")


def not_here(channels: Collection[str]) -> str:
    """Said once in a channel outside SUPPORTBOT_ALLOWED_CHANNELS / _WORKSPACES."""
    if not channels:
        return "I'm not set up to answer here. Please ask the team where to get help."
    places = ", ".join(f"<#{channel}>" for channel in sorted(channels)[:10])
    return f"I only answer questions in {places}. Please ask there, or send me a direct message."
# Words of a message that only greets or thanks: nothing in it to look up in the docs.
SOCIAL_WORDS = frozenset(
    "hi hello hey hiya yo thanks thank thx ty cheers ok okay great cool nice perfect awesome "
    "bye goodbye morning afternoon evening good much lot helped works worked got".split())
THANKS_WORDS = frozenset("thanks thank thx ty cheers helped".split())
DOCS_LABEL = "**From the docs** (the closest sections, not a written answer):"
MATCHING_LINES = 3


def kb_only_answer(
    passages: list[Passage], words: Sequence[str] = (), why: str = NO_KEY, *,
    indexed: bool = True, closest: Sequence[Passage] = (),
) -> str:
    """What to say without a model: the closest sections of the docs, each with its title,
    its link and the lines that match the question, under a label that says what this is.
    `passages` come through the search's don't-know gate: none when the docs are silent,
    and then `closest` (what the search found anyway) is named as pages to look at."""
    if is_social(words):  # a greeting or thanks: nothing to look up
        if any(word in THANKS_WORDS for word in words):
            return "Glad it helped! Ask me anything else about the docs."
        return f"Hi! {why}, so I can only show what the docs say: ask me a question about them."
    if passages:
        return f"{why}.\n\n{docs_sections(passages, words)}"
    if not indexed:
        return (f"{why}, and I have no docs to look in yet. A person from the team will need "
                "to help.")
    found = f"\n\nThe closest pages I found:\n{docs_links(closest)}" if closest else ""
    return (f"{why}, and I couldn't find this in the docs.{found}\n\n"
            "A person from the team will need to help.")


def is_social(words: Sequence[str]) -> bool:
    """A message that only greets or thanks (no words at all counts too)."""
    return all(word in SOCIAL_WORDS for word in words)


def docs_sections(passages: Sequence[Passage], words: Sequence[str]) -> str:
    """The labelled list of the closest sections (for offline answers and failures)."""
    parts = [DOCS_LABEL]
    for passage in passages[:3]:
        title, where = _title_and_place(passage)
        lines = "\n".join(f"> {line}" for line in matching_lines(passage.text, words))
        parts.append(f"**{title}**{where}\n{lines}")
    return "\n\n".join(parts)


def docs_links(passages: Sequence[Passage], most: int = 3) -> str:
    """One line per page: its title, and its link (or file name)."""
    lines = []
    for passage in passages[:most]:
        title, where = _title_and_place(passage)
        lines.append(f"• {title}{where}")
    return "\n".join(lines)


def _title_and_place(passage: Passage) -> tuple[str, str]:
    return passage.heading or passage.source, place_of(passage)


def place_of(passage: Passage) -> str:
    """Where a passage is, after its title: " — its link", or " (its file)" without one."""
    return f" — {passage.url}" if passage.url else f" ({passage.source})"


def matching_lines(text: str, words: Sequence[str], most: int = MATCHING_LINES) -> list[str]:
    """The passage's lines that contain the question's words (by their first five letters),
    best first in the passage's order; its first lines when none do. A line of code is
    shown as code (`acme export --format pdf`), not as prose."""
    stems = {w[:5] for w in words}
    lines: list[str] = []
    in_code = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            in_code = not in_code
        elif line:
            lines.append(f"`{line}`" if in_code and "`" not in line else line)

    def hits(line: str) -> int:
        lowered = line.lower()
        return sum(1 for stem in stems if stem in lowered)

    ranked = sorted(range(len(lines)), key=lambda i: -hits(lines[i]))
    chosen = sorted(i for i in ranked[:most] if hits(lines[i]) > 0) or list(range(len(lines)))[
        :most]
    return [_clip(lines[i]) for i in chosen]


def _clip(line: str, limit: int = 240) -> str:
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def failure_message(error: LLMError) -> str:
    """A short, honest sentence for the user; details stay in the log."""
    if isinstance(error, AuthenticationError):
        return ("⚠️ I can't reach the AI service: it rejected my credentials. "
                "An admin needs to run `supportbot check`, which names the setting to fix.")
    if isinstance(error, ReplyTimeoutError):
        return "⚠️ The AI service did not answer in time. Please try again in a few minutes."
    if isinstance(error, StreamInterruptedError):
        return "⚠️ The answer was interrupted by an error at the AI service. Please ask again."
    if isinstance(error, RateLimitError):
        return "⚠️ The AI service is rate-limiting us right now. Please try again in a minute."
    if isinstance(error, BadRequestError):
        return "⚠️ The AI service could not take this question. Please contact the team directly."
    return "⚠️ The AI service is unavailable right now. Please try again in a few minutes."


def unexpected_failure() -> str:
    return "⚠️ Something went wrong on my side while answering. Please try again."
