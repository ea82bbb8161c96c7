"""The history window: which turns of a conversation fit the model's budget (pure).

The newest turns are kept whole; the current question is always kept (shortened with a
marker if it alone is too long); the result is a valid Messages API sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bot.conversation import Turn
from bot.models import ModelProfile, estimate_tokens

TRUNCATION_MARKER = "\n[… message shortened to fit the model's context …]"
# Headroom for framing we do not count exactly (roles, the system prompt's block structure).
SAFETY_TOKENS = 256


def history_budget(
    model: ModelProfile,
    history_tokens: int,
    system_tokens: int,
    passage_tokens: int,
) -> int:
    """Tokens left for history: the configured budget, capped by what the context allows.

    On models with a long-context price, the whole prompt stays under that threshold.
    """
    fixed = system_tokens + passage_tokens + SAFETY_TOKENS
    # Room for the longest answer the model can give (max_tokens never exceeds it).
    room = model.context_window - model.max_output - fixed
    if model.long_threshold is not None:
        room = min(room, model.long_threshold - fixed)
    return max(0, min(history_tokens, room))


def history_window(turns: Sequence[Turn], budget: int, model: ModelProfile) -> list[Turn]:
    """The newest turns whose token estimates fit `budget`, oldest first.

    `turns` is oldest first and ends with the current question. The result starts with a
    user turn and alternates roles (same-role neighbours merged).
    """
    if not turns:
        return []
    question = _fit(turns[-1], budget, model)
    kept = [question]
    used = question.tokens
    for turn in reversed(turns[:-1]):
        if used + turn.tokens > budget:
            break
        kept.append(turn)
        used += turn.tokens
    kept.reverse()
    return normalise(kept)


def normalise(turns: Sequence[Turn]) -> list[Turn]:
    """Drop leading assistant turns and merge neighbours with the same role."""
    start = 0
    while start < len(turns) and turns[start].role != "user":
        start += 1
    merged: list[Turn] = []
    for turn in turns[start:]:
        if merged and merged[-1].role == turn.role:
            last = merged[-1]
            merged[-1] = Turn(
                role=turn.role,
                text=f"{last.text}\n\n{turn.text}",
                tokens=last.tokens + turn.tokens,
                images=last.images + turn.images,
            )
        else:
            merged.append(turn)
    return merged


def _fit(turn: Turn, budget: int, model: ModelProfile) -> Turn:
    """The turn itself if it fits, else its text shortened to fit, with a visible marker."""
    if turn.tokens <= budget:
        return turn
    images = len(turn.images)
    keep_chars = int((budget - estimate_tokens("", model, images)) * model.chars_per_token)
    keep_chars = max(0, keep_chars - len(TRUNCATION_MARKER))
    text = turn.text[:keep_chars] + TRUNCATION_MARKER
    return replace(turn, text=text, tokens=estimate_tokens(text, model, images))
