"""What the bot says when it cannot simply answer: empty questions, cut or interrupted
answers, refusals, model failures, and the docs-only fallback. Pure text, no I/O."""

from __future__ import annotations

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
NO_TEXT_CUT = (
    "I ran out of room before I could write an answer (SUPPORTBOT_MAX_TOKENS may be too low "
    "for this question). Please try again, or contact the team directly."
)


def kb_only_answer(passages: list[Passage]) -> str:
    """What to say without a model: the best passages, and that this is all we can do."""
    intro = "I can't reach the AI model right now (no ANTHROPIC_API_KEY is set)"
    if not passages:
        return f"{intro}, and I found nothing in the docs about this. A person will need to help."
    parts = [f"{intro}, so here is what the docs say:"]
    for passage in passages[:3]:
        excerpt = passage.text if len(passage.text) <= 600 else passage.text[:600] + "…"
        parts.append(f"**{passage.heading}** ({passage.source})\n{excerpt}")
    return "\n\n".join(parts)


def failure_message(error: LLMError) -> str:
    """A short, honest sentence for the user; details stay in the log."""
    if isinstance(error, AuthenticationError):
        return ("⚠️ I can't reach the AI service: its API key was rejected. "
                "An admin needs to check ANTHROPIC_API_KEY.")
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
