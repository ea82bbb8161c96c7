"""What we know about each Claude model: limits, prices and which parameters it accepts.

This is the one place these facts live. An unknown model id gets a conservative profile
and an unknown cost.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from bot.conversation import Usage

Sampling = Literal["all", "one", "none"]  # "one": temperature or top_p, never both
Thinking = Literal["adaptive", "budget", "none"]


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


@dataclass(frozen=True)
class ModelProfile:
    id: str
    context_window: int
    max_output: int
    price: Price | None
    min_cacheable: int
    sampling: Sampling
    thinking: Thinking
    can_disable_thinking: bool = True
    # Prompts above this many tokens are billed at long_price (None: one price for all).
    long_threshold: int | None = None
    long_price: Price | None = None
    # Conservative characters per token; the 5.5 tokenizer counts ~30 % more tokens.
    chars_per_token: float = 3.0
    known: bool = True


_PROFILES = {
    p.id: p
    for p in (
        ModelProfile(
            id="claude-haiku-5-5",
            context_window=1_000_000,
            max_output=128_000,
            price=Price(0.10, 0.50, 0.125, 0.01),
            long_threshold=100_000,
            long_price=Price(0.50, 2.50, 0.625, 0.05),
            min_cacheable=512,
            sampling="none",
            thinking="adaptive",
            chars_per_token=2.5,
        ),
        ModelProfile(
            id="claude-sonnet-5-5",
            context_window=1_000_000,
            max_output=128_000,
            price=Price(2.0, 10.0, 2.50, 0.20),
            min_cacheable=512,
            sampling="none",
            thinking="adaptive",
            can_disable_thinking=False,
            chars_per_token=2.5,
        ),
        ModelProfile(
            id="claude-haiku-4-5",
            context_window=200_000,
            max_output=64_000,
            price=Price(1.0, 5.0, 1.25, 0.10),
            min_cacheable=4096,
            sampling="one",
            thinking="budget",
            chars_per_token=3.2,
        ),
        ModelProfile(
            id="claude-3-haiku-20240307",
            context_window=200_000,
            max_output=4096,
            price=Price(0.25, 1.25, 0.30, 0.03),
            min_cacheable=2048,
            sampling="all",
            thinking="none",
            chars_per_token=3.2,
        ),
    )
}

DEFAULT_MODEL = "claude-haiku-5-5"
DEFAULT_FALLBACK_MODEL = "claude-sonnet-5-5"
# Per-message framing the API adds around each turn; counted so estimates stay on the safe side.
MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_TOKENS = 1600  # a large image costs at most about this much


# Amazon Bedrock names a model "anthropic.<id>", run in the caller's region; a prefix picks
# a cross-region inference profile: "global." (any region) or a geography ("us.", "eu."…).
BEDROCK_PREFIX = "anthropic."
BEDROCK_GEOGRAPHIES = ("global.", "us.", "eu.", "apac.", "jp.", "au.", "us-gov.")
_BEDROCK_SUFFIX = re.compile(r"-v\d+(?::\d+)?$")  # "-v1:0" on the older, dated model ids
_DATED = re.compile(r"(?:-|@)(\d{8})$")  # "-20251001" (Bedrock), "@20251001" (Vertex)
# Claude on Bedrock and Vertex: from Claude Sonnet 4.5 and Haiku 4.5 on, regional and
# multi-region endpoints cost 10 % more than the global one, which is priced as the Claude
# API (Anthropic's pricing page, "Third-party platform pricing"; AWS's and Google's pages).
REGIONAL_PREMIUM = 1.10
BATCH_DISCOUNT = 0.5  # the Message Batches API charges half the price, tokens of every kind
_NO_PREMIUM = frozenset({"claude-3-haiku-20240307"})


def canonical_model_id(model_id: str) -> str:
    """The Claude API id behind a Bedrock or Vertex id: "us.anthropic.claude-haiku-4-5-
    20251001-v1:0" and "claude-haiku-4-5@20251001" are both "claude-haiku-4-5"."""
    name = model_id
    for geography in BEDROCK_GEOGRAPHIES:
        if name.startswith(geography + BEDROCK_PREFIX):
            name = name[len(geography):]
            break
    name = name.removeprefix(BEDROCK_PREFIX)
    name = _BEDROCK_SUFFIX.sub("", name)
    if name in _PROFILES:
        return name
    undated = _DATED.sub("", name)
    if undated in _PROFILES:
        return undated
    return name.replace("@", "-")


def bedrock_model_id(model_id: str) -> str:
    """The id Bedrock knows: a Claude API id gets "anthropic."; a Bedrock id is kept."""
    if model_id.startswith(BEDROCK_PREFIX) or model_id.startswith(BEDROCK_GEOGRAPHIES):
        return model_id
    return BEDROCK_PREFIX + model_id


def regional_premium(model_id: str, global_endpoint: bool) -> float:
    """The price factor of a Bedrock or Vertex endpoint for this model."""
    if global_endpoint or canonical_model_id(model_id) in _NO_PREMIUM:
        return 1.0
    return REGIONAL_PREMIUM


def profile(model_id: str) -> ModelProfile:
    """The profile for a model id (a Bedrock or Vertex id finds its Claude API profile);
    unknown ids get a small, cautious one with unknown price."""
    known = _PROFILES.get(model_id) or _PROFILES.get(canonical_model_id(model_id))
    if known is not None:
        return known
    return ModelProfile(
        id=model_id,
        context_window=200_000,
        max_output=4096,
        price=None,
        min_cacheable=4096,
        sampling="none",
        thinking="none",
        chars_per_token=2.5,
        known=False,
    )


def estimate_tokens(text: str, model: ModelProfile, images: int = 0) -> int:
    """A conservative (never low) token estimate for one message of text."""
    return (
        math.ceil(len(text) / model.chars_per_token)
        + MESSAGE_OVERHEAD_TOKENS
        + images * IMAGE_TOKENS
    )


def cost_usd(usage: Usage, model: ModelProfile, factor: float = 1.0) -> float | None:
    """Dollar cost of one request, using the long-context price when the prompt crosses it;
    `factor`: the endpoint's premium over list price (a regional cloud endpoint: 1.1)."""
    price = model.price
    if price is None:
        return None
    if model.long_threshold is not None and usage.prompt_tokens > model.long_threshold:
        price = model.long_price or price
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_creation_input_tokens * price.cache_write
        + usage.cache_read_input_tokens * price.cache_read
    )
    return total * factor / 1_000_000
