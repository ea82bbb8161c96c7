"""What the fake Anthropic API says and counts: the answer to a validated request (scripted or
generated text, cut to max_tokens), the token estimate of a prompt, and the prompt cache that
turns cache_control breakpoints into cache reads and writes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.fakes.anthropic_rules import JSON, ModelSpec, Thinking, invalid

IMAGE_TOKENS = 1000
MAX_CACHE_BREAKPOINTS = 4
WORDS_PER_TOKEN = 0.75
THINKING_SUMMARY = "The user asks a support question; answer briefly from the passages given."


def compact_json(data: Any) -> str:
    """JSON with compact separators, as the real API sends it."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class CacheMark:
    tokens: int
    key: str
    ttl: float
    block: int = 0  # the index of the block it is on, among all prompt blocks


@dataclass(frozen=True)
class Prompt:
    tokens: int
    marks: tuple[CacheMark, ...]
    last_user_text: str
    # (tokens, key) of the prefix ending at each block, for the API's look-back: a breakpoint
    # also finds a prefix cached at any of the LOOKBACK_BLOCKS block boundaries before it.
    boundaries: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Call:
    """A validated /v1/messages request: what an answer is composed for."""

    spec: ModelSpec
    max_tokens: int
    prompt: Prompt
    thinking: Thinking | None


@dataclass(frozen=True)
class Answer:
    text: str
    stop_reason: str
    output_tokens: int
    thinking: Thinking | None


# ---------------------------------------------------------------- generated text

_SENTENCES = (
    "the support team checked your question against the documentation",
    "you can change this setting from the account page",
    "save the page and every member of the workspace sees the update",
    "if anything still looks wrong reply here with the details",
    "the change applies to new conversations right away",
    "older threads keep the settings they started with",
)
# Each filler word with whether it ends its sentence, so periods fall where prose puts them.
_FILLER = tuple(
    (word, n == len(sentence.split()) - 1)
    for sentence in _SENTENCES
    for n, word in enumerate(sentence.split())
)
_PARAGRAPH_WORDS = 40
_DELTA_WORDS = (1, 2, 3, 2)


def default_text(question: str, words: int) -> str:
    """Deterministic prose: an echo of the question, then `words` filler words."""
    echo = " ".join(question.split())
    if len(echo) > 60:
        echo = echo[:60].rstrip() + "…"
    prefix = f'Answer to "{echo}":'
    return f"{prefix} {_filler(words)}" if words > 0 else prefix


def _filler(words: int) -> str:
    pieces: list[str] = []
    in_paragraph = 0
    for i in range(words):
        word, ends = _FILLER[i % len(_FILLER)]
        if i == 0 or _FILLER[(i - 1) % len(_FILLER)][1]:
            word = word.capitalize()
        in_paragraph += 1
        last = i == words - 1
        word += "." if ends or last else ""
        if last:
            separator = ""
        elif ends and in_paragraph >= _PARAGRAPH_WORDS:
            separator, in_paragraph = "\n\n", 0
        else:
            separator = " "
        pieces.append(word + separator)
    return "".join(pieces)


def split_deltas(text: str) -> list[str]:
    """Split text into ordered deltas of 1-3 words whose concatenation is exactly `text`."""
    tokens = re.findall(r"\S+\s*", text)
    lead = text[: len(text) - len(text.lstrip())]
    if not tokens:
        return [text] if text else []
    tokens[0] = lead + tokens[0]
    deltas: list[str] = []
    sizes = itertools.cycle(_DELTA_WORDS)
    start = 0
    while start < len(tokens):  # bounded: start grows by at least 1 each turn
        size = next(sizes)
        deltas.append("".join(tokens[start : start + size]))
        start += size
    return deltas


def cut_words(text: str, max_words: int) -> tuple[str, bool]:
    """The first `max_words` words of text, and whether anything was cut."""
    tokens = re.findall(r"\S+\s*", text)
    if len(tokens) <= max_words:
        return text, False
    return "".join(tokens[:max_words]).rstrip(), True


def text_tokens(text: str) -> int:
    """Output tokens billed for an answer's text."""
    return math.ceil(len(text.split()) / WORDS_PER_TOKEN)


def compose_answer(
    call: Call, text: str | None, words: int | None, stop_reason: str, default_words: int
) -> Answer:
    """The scripted text as is, or `words` generated words cut to fit max_tokens.

    Unset `words` means `default_words`, or as many as fit when the stop reason is max_tokens.
    """
    thinking_tokens = call.thinking.tokens if call.thinking else 0
    max_words = math.floor((call.max_tokens - thinking_tokens) * WORDS_PER_TOKEN)
    if text is not None:
        stop = stop_reason
    else:
        if words is None:
            words = max_words if stop_reason == "max_tokens" else default_words
        text, cut = cut_words(default_text(call.prompt.last_user_text, words), max_words)
        stop = "max_tokens" if cut else stop_reason
    if stop == "max_tokens":
        output = call.max_tokens
    else:
        output = thinking_tokens + text_tokens(text)
    return Answer(text, stop, output, call.thinking)


# ---------------------------------------------------------------- token estimate


def _walk(body: JSON) -> Iterator[tuple[str, str, Any]]:
    """Every prompt block in cache-prefix order (tools, system, messages) with its path."""
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        yield f"tools.{i}", "tools", tool
    system = body.get("system")
    if isinstance(system, str):
        yield "system", "system", {"type": "text", "text": system}
    for i, block in enumerate(system if isinstance(system, list) else []):
        yield f"system.{i}", "system", block
    for i, message in enumerate(body.get("messages") or []):
        content = message["content"]
        if isinstance(content, str):
            yield f"messages.{i}.content", message["role"], {"type": "text", "text": content}
            continue
        for j, block in enumerate(content):
            yield f"messages.{i}.content.{j}", message["role"], block


def _size(block: Any) -> tuple[int, int]:
    """Characters and images in one block."""
    if not isinstance(block, dict):
        return len(compact_json(block)), 0
    kind = block.get("type")
    if kind == "text":
        return len(str(block.get("text", ""))), 0
    if kind == "image":
        return 0, 1
    if kind == "tool_result" and isinstance(block.get("content"), list):
        sizes = [_size(part) for part in block["content"]]
        return sum(c for c, _ in sizes), sum(i for _, i in sizes)
    if kind == "tool_result":
        return len(str(block.get("content", ""))), 0
    return len(compact_json(_uncached(block))), 0


def _uncached(block: Any) -> Any:
    if not isinstance(block, dict):
        return block
    return {key: value for key, value in block.items() if key != "cache_control"}


def _cache_ttl(block: Any, where: str) -> float | None:
    control = block.get("cache_control") if isinstance(block, dict) else None
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise invalid(f"{where}.cache_control.type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        raise invalid(f"{where}.cache_control.ttl: Input should be '5m' or '1h'")
    return 300.0 if ttl == "5m" else 3600.0


def _tokens(chars: int, images: int, spec: ModelSpec) -> int:
    return math.ceil(chars / spec.chars_per_token) + images * IMAGE_TOKENS


def _last_user_text(messages: list[JSON]) -> str:
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            return content
        texts = [b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text"]
        # The answer is about the question: a block of reference material before it (the
        # bot's docs passages) is context, not what was asked.
        return texts[-1] if texts else ""
    return ""


def measure_prompt(body: JSON, spec: ModelSpec) -> Prompt:
    """Token estimate of a validated request, and the cache breakpoints it carries."""
    digest = hashlib.sha256(spec.id.encode())
    chars = images = 0
    marks: list[CacheMark] = []
    boundaries: list[tuple[int, str]] = []
    for where, role, block in _walk(body):
        block_chars, block_images = _size(block)
        chars, images = chars + block_chars, images + block_images
        # The cache key covers content only, so moving a breakpoint keeps earlier prefixes.
        digest.update(compact_json({"role": role, "block": _uncached(block)}).encode())
        boundaries.append((_tokens(chars, images, spec), digest.hexdigest()))
        ttl = _cache_ttl(block, where)
        if ttl is not None:
            marks.append(CacheMark(_tokens(chars, images, spec), digest.hexdigest(), ttl,
                                   len(boundaries) - 1))
    if len(marks) > MAX_CACHE_BREAKPOINTS:
        raise invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marks)}."
        )
    return Prompt(_tokens(chars, images, spec), tuple(marks), _last_user_text(body["messages"]),
                  tuple(boundaries))


# ---------------------------------------------------------------- prompt cache


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int

    def as_dict(self, output_tokens: int) -> JSON:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": output_tokens,
        }


LOOKBACK_BLOCKS = 20  # "about 20 blocks before" each breakpoint (prompt caching docs)


class PromptCache:
    """The cached prompt prefixes the fake remembers, each with its expiry."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}  # prefix key -> monotonic expiry

    def clear(self) -> None:
        self._expiry.clear()

    def bill(self, prompt: Prompt, min_cacheable: int) -> Usage:
        """Bill the longest live cached prefix as a read, the rest up to the last mark as a write.

        Marks below the model's minimum cacheable length are ignored, as the real API does.
        """
        now = time.monotonic()
        marks = [m for m in prompt.marks if m.tokens >= min_cacheable]
        # Each breakpoint also looks back over the block boundaries before it, as the API
        # does, so a thread whose breakpoint moved on still reads the prefix cached last turn.
        looked = {(tokens, key) for m in marks
                  for tokens, key in prompt.boundaries[max(0, m.block - LOOKBACK_BLOCKS):m.block]}
        looked |= {(m.tokens, m.key) for m in marks}
        read = max((t for t, key in looked if self._expiry.get(key, 0.0) > now), default=0)
        written = max(marks[-1].tokens - read, 0) if marks else 0
        for mark in marks:
            self._expiry[mark.key] = now + mark.ttl  # a hit refreshes the entry's lifetime
        return Usage(prompt.tokens - read - written, written, read)
