"""A local fake of the Anthropic Messages API (aiohttp, 127.0.0.1 only) for tests and benchmarks.

It speaks the real wire format (headers, error bodies, SSE events) and imitates the per-model
rules in DESIGN.md; answers are scripted with Reply/Fail or generated deterministically.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import math
import re
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

JSON = dict[str, Any]

MAX_REQUEST_BYTES = 32 * 1024 * 1024
IMAGE_MAX_BYTES = 5 * 1024 * 1024  # enforced on the base64 string, as the real API does
IMAGE_TOKENS = 1000
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MAX_CACHE_BREAKPOINTS = 4
WORDS_PER_TOKEN = 0.75
EFFORT_THINKING_TOKENS = {"low": 24, "medium": 96, "high": 320}
BUDGET_THINKING_TOKENS = 160  # what a budget-thinking model actually spends, at most
PREFILL_MESSAGE = (
    "This model does not support assistant message prefill. "
    "The conversation must end with a user message."
)
THINKING_SUMMARY = "The user asks a support question; answer briefly from the passages given."


# ---------------------------------------------------------------- public values


@dataclass(frozen=True)
class Reply:
    """One scripted successful answer; unset fields fall back to the server's defaults."""

    text: str | None = None
    words: int | None = None
    stop_reason: str = "end_turn"
    first_token_delay: float | None = None
    delta_interval: float | None = None
    error_after_deltas: int | None = None
    when: str | None = None


@dataclass(frozen=True)
class Fail:
    """One scripted HTTP failure, with the real API's error body and an optional retry-after."""

    status: int
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = None
    when: str | None = None


Step = Reply | Fail


@dataclass(frozen=True)
class RecordedRequest:
    """A /v1/messages request as the fake received it."""

    path: str
    headers: dict[str, str]
    body: JSON
    received: float


@dataclass(frozen=True)
class ModelSpec:
    """The facts the fake enforces for one model (kept here on purpose: no import of the bot)."""

    id: str
    display_name: str
    created_at: str
    max_output: int
    min_cacheable: int
    context: int = 200_000
    chars_per_token: float = 4.0
    sampling: str = "all"  # "none" | "one" (temperature or top_p, not both) | "all"
    thinking: str = "none"  # "adaptive" | "budget" | "none"
    can_disable_thinking: bool = True
    prefill: bool = True


_FAMILY_5_5: dict[str, Any] = {
    "max_output": 128_000,
    "min_cacheable": 512,
    "context": 1_000_000,
    "chars_per_token": 3.2,  # the newer tokenizer counts ~30 % more tokens for the same text
    "sampling": "none",
    "thinking": "adaptive",
    "prefill": False,
}
MODELS = {
    spec.id: spec
    for spec in (
        ModelSpec("claude-haiku-5-5", "Claude Haiku 5.5", "2026-10-07T00:00:00Z", **_FAMILY_5_5),
        # Sonnet 5.5's release date is not known here; the value only fills the model object.
        ModelSpec(
            "claude-sonnet-5-5",
            "Claude Sonnet 5.5",
            "2026-10-07T00:00:00Z",
            **{**_FAMILY_5_5, "can_disable_thinking": False},
        ),
        ModelSpec(
            "claude-haiku-4-5",
            "Claude Haiku 4.5",
            "2025-10-01T00:00:00Z",
            max_output=64_000,
            min_cacheable=4096,
            sampling="one",
            thinking="budget",
        ),
        ModelSpec(
            "claude-3-haiku-20240307",
            "Claude Haiku 3",
            "2024-03-07T00:00:00Z",
            max_output=4096,
            min_cacheable=2048,
        ),
    )
}

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    401: "invalid x-api-key",
    404: "Not found",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of requests has exceeded your rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}


# ---------------------------------------------------------------- internal values


class ApiError(Exception):
    """An error the fake answers with, in the real API's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or default_error_type(status)
        self.headers = headers or {}

    @classmethod
    def from_fail(cls, fail: Fail) -> ApiError:
        headers = {} if fail.retry_after is None else {"retry-after": _seconds(fail.retry_after)}
        message = fail.message or ERROR_MESSAGES.get(fail.status, "Error")
        return cls(fail.status, message, fail.error_type, headers)


@dataclass(frozen=True)
class CacheMark:
    tokens: int
    key: str
    ttl: float


@dataclass(frozen=True)
class Prompt:
    tokens: int
    marks: tuple[CacheMark, ...]
    last_user_text: str


@dataclass(frozen=True)
class Thinking:
    tokens: int
    visible: bool  # summarized thinking text is streamed; otherwise only the signature


@dataclass(frozen=True)
class Call:
    spec: ModelSpec
    max_tokens: int
    prompt: Prompt
    thinking: Thinking | None


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


@dataclass(frozen=True)
class Answer:
    text: str
    stop_reason: str
    output_tokens: int
    thinking: Thinking | None


def default_error_type(status: int) -> str:
    """The error type the real API uses for a status code."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _dumps(data: Any) -> str:
    # Compact separators, as the real API sends them.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _new_id(prefix: str) -> str:
    return f"{prefix}_011{uuid.uuid4().hex[:21]}"


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


def _cut_words(text: str, max_words: int) -> tuple[str, bool]:
    tokens = re.findall(r"\S+\s*", text)
    if len(tokens) <= max_words:
        return text, False
    return "".join(tokens[:max_words]).rstrip(), True


def _text_tokens(text: str) -> int:
    return math.ceil(len(text.split()) / WORDS_PER_TOKEN)


# ---------------------------------------------------------------- request validation


def _model(model_id: Any) -> ModelSpec:
    spec = MODELS.get(model_id) if isinstance(model_id, str) else None
    if spec is None:
        raise ApiError(404, f"model: {model_id}")
    return spec


def _require(body: JSON, names: Sequence[str]) -> None:
    for name in names:
        if name not in body:
            raise invalid(f"{name}: Field required")


def _max_tokens(value: Any, spec: ModelSpec) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid("max_tokens: Input should be a valid integer")
    if value < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1")
    if value > spec.max_output:
        raise invalid(
            f"max_tokens: {value} > {spec.max_output}, which is the maximum allowed number "
            f"of output tokens for {spec.id}"
        )
    return value


def _check_messages(messages: Any) -> list[JSON]:
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages.{i}: Input should be a valid dictionary")
        if message.get("role") not in ("user", "assistant"):
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        final_assistant = i == len(messages) - 1 and message["role"] == "assistant"
        _check_content(message.get("content"), f"messages.{i}", final_assistant)
    if messages[0]["role"] != "user":
        raise invalid('messages: first message must use the "user" role')
    return messages


def _check_content(content: Any, where: str, final_assistant: bool) -> None:
    if content is None:
        raise invalid(f"{where}.content: Field required")
    if not isinstance(content, str | list):
        raise invalid(f"{where}.content: Input should be a valid string or list")
    if not content and not final_assistant:
        raise invalid(
            f"{where}: all messages must have non-empty content except for the optional "
            "final assistant message"
        )
    for j, block in enumerate(content if isinstance(content, list) else []):
        _check_block(block, f"{where}.content.{j}")


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise invalid(f"{where}.type: Field required")
    if block["type"] == "text":
        if not isinstance(block.get("text"), str):
            raise invalid(f"{where}.text: Field required")
        if not block["text"]:
            raise invalid("messages: text content blocks must be non-empty")
    elif block["type"] == "image":
        _check_image(block.get("source"), f"{where}.image.source")


def _check_image(source: Any, where: str) -> None:
    if not isinstance(source, dict):
        raise invalid(f"{where}: Field required")
    if source.get("type") != "base64":
        return  # url and file sources are not fetched by the fake
    if source.get("media_type") not in IMAGE_TYPES:
        raise invalid(
            f"{where}.base64.media_type: Input should be 'image/jpeg', 'image/png', "
            "'image/gif' or 'image/webp'"
        )
    data = source.get("data")
    if not isinstance(data, str):
        raise invalid(f"{where}.base64.data: Field required")
    if len(data) > IMAGE_MAX_BYTES:
        raise invalid(
            f"{where}.base64: image exceeds 5 MB maximum: "
            f"{len(data)} bytes > {IMAGE_MAX_BYTES} bytes"
        )
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}.base64.data: Invalid base64 data") from None


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"system.{i}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            raise invalid(f"system.{i}.text: Field required")


def _check_sampling(body: JSON, spec: ModelSpec) -> None:
    given = [name for name in ("temperature", "top_p", "top_k") if body.get(name) is not None]
    if spec.sampling == "none" and given:
        raise invalid(f"`{given[0]}` is deprecated for this model.")
    if spec.sampling == "one" and "temperature" in given and "top_p" in given:
        raise invalid(
            "`temperature` and `top_p` cannot both be specified for this model. "
            "Please use only one."
        )
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= 1):
            raise invalid(f"{name}: Input should be a number between 0 and 1")


def _effort(body: JSON, spec: ModelSpec) -> str:
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    if effort is None:
        return "high"
    if spec.thinking != "adaptive":
        raise invalid(f"output_config.effort: effort is not supported for {spec.id}")
    if effort not in EFFORT_THINKING_TOKENS:
        raise invalid("output_config.effort: Input should be 'low', 'medium' or 'high'")
    return str(effort)


def _thinking(body: JSON, spec: ModelSpec, max_tokens: int) -> Thinking | None:
    config = body.get("thinking")
    kind = config.get("type") if isinstance(config, dict) else None
    if config is not None and kind not in ("adaptive", "enabled", "disabled"):
        raise invalid("thinking.type: Input should be 'adaptive', 'enabled' or 'disabled'")
    effort = _effort(body, spec)
    if spec.thinking == "adaptive":
        plan = _adaptive(config, kind, spec, effort)
    elif spec.thinking == "budget":
        plan = _budget(config, kind, body, spec, max_tokens)
    elif kind in ("adaptive", "enabled"):
        raise invalid(f"thinking: extended thinking is not supported for {spec.id}")
    else:
        plan = None
    if plan is None:
        return None
    return Thinking(min(plan.tokens, max_tokens), plan.visible)


def _adaptive(config: Any, kind: Any, spec: ModelSpec, effort: str) -> Thinking | None:
    if kind == "disabled":
        if not spec.can_disable_thinking:
            raise invalid(
                f"thinking.type: 'disabled' is not supported for {spec.id}; "
                "use output_config.effort 'low' instead"
            )
        return None
    if kind == "enabled":
        raise invalid(
            f"thinking.type: 'enabled' is not supported for {spec.id}. "
            "Use thinking.type 'adaptive' and output_config.effort instead."
        )
    display = config.get("display", "omitted") if isinstance(config, dict) else "omitted"
    if display not in ("omitted", "summarized"):
        raise invalid("thinking.display: Input should be 'summarized' or 'omitted'")
    return Thinking(EFFORT_THINKING_TOKENS[effort], display == "summarized")


def _budget(
    config: Any, kind: Any, body: JSON, spec: ModelSpec, max_tokens: int
) -> Thinking | None:
    if kind in (None, "disabled"):
        return None
    if kind == "adaptive":
        raise invalid(f"thinking.type: 'adaptive' is not supported for {spec.id}")
    budget = config.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        raise invalid(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        )
    if budget >= max_tokens:
        raise invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    if body.get("temperature") not in (None, 1):
        raise invalid("`temperature` may only be set to 1 when thinking is enabled")
    if body.get("top_k") is not None:
        raise invalid("`top_k` is not supported when thinking is enabled")
    # Claude 4 models stream summarized thinking by default.
    return Thinking(min(budget, BUDGET_THINKING_TOKENS), True)


# ---------------------------------------------------------------- token estimate and caching


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
        return len(_dumps(block)), 0
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
    return len(_dumps(_uncached(block))), 0


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
        return "\n".join(texts)
    return ""


def measure_prompt(body: JSON, spec: ModelSpec) -> Prompt:
    """Token estimate of a validated request, and the cache breakpoints it carries."""
    digest = hashlib.sha256(spec.id.encode())
    chars = images = 0
    marks: list[CacheMark] = []
    for where, role, block in _walk(body):
        block_chars, block_images = _size(block)
        chars, images = chars + block_chars, images + block_images
        # The cache key covers content only, so moving a breakpoint keeps earlier prefixes.
        digest.update(_dumps({"role": role, "block": _uncached(block)}).encode())
        ttl = _cache_ttl(block, where)
        if ttl is not None:
            marks.append(CacheMark(_tokens(chars, images, spec), digest.hexdigest(), ttl))
    if len(marks) > MAX_CACHE_BREAKPOINTS:
        raise invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marks)}."
        )
    return Prompt(_tokens(chars, images, spec), tuple(marks), _last_user_text(body["messages"]))


# ---------------------------------------------------------------- the server


class FakeAnthropic:
    """The fake server; use in-process (async with) or as a subprocess through the CLI."""

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        default_words: int = 40,
        delta_interval: float = 0.0,
        first_token_delay: float = 0.0,
        context_window: int | None = None,
        thinking_delay: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.default_words = default_words
        self.delta_interval = delta_interval
        self.first_token_delay = first_token_delay
        self.context_window = context_window
        self.thinking_delay = thinking_delay
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self._steps: list[Step] = []
        self._cache: dict[str, float] = {}  # prefix key -> monotonic expiry
        self._last_text = ""
        self._runner: web.AppRunner | None = None

    # -- lifecycle

    async def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 and return the base URL."""
        app = web.Application(middlewares=[_errors_middleware], client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/messages", self._on_messages)
        app.router.add_post("/v1/messages/count_tokens", self._on_count_tokens)
        app.router.add_get("/v1/models", self._on_models)
        app.router.add_get("/v1/models/{model_id}", self._on_model)
        app.router.add_post("/_fake/script", self._on_script)
        app.router.add_get("/_fake/requests", self._on_requests)
        app.router.add_get("/_fake/stats", self._on_stats)
        app.router.add_post("/_fake/reset", self._on_reset)
        # A short shutdown timeout so stop() never waits on a slow scripted stream.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{bound}"
        return self.base_url

    async def stop(self) -> None:
        """Close the listener and every open connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAnthropic:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- scripting

    def script(self, *steps: Step) -> None:
        """Queue answers; each request consumes the first step that matches it."""
        self._steps.extend(steps)

    def reset(self) -> None:
        """Forget the script, recorded requests, the prompt cache and the last answer."""
        self._steps.clear()
        self.requests.clear()
        self._cache.clear()
        self._last_text = ""

    def last_text_sent(self) -> str:
        """The text of the last answer, as far as it was sent."""
        return self._last_text

    def _take_step(self, last_user_text: str) -> Step:
        for i, step in enumerate(self._steps):
            if step.when is not None and step.when in last_user_text:
                return self._steps.pop(i)
        for i, step in enumerate(self._steps):
            if step.when is None:
                return self._steps.pop(i)
        return Reply()

    # -- /v1 endpoints

    def _check_headers(self, request: web.Request) -> None:
        key = request.headers.get("x-api-key")
        if self.api_key is not None and key is None:
            raise ApiError(401, "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            raise ApiError(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise invalid("anthropic-version: header is required")

    async def _on_messages(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        body = _parse_body(await request.read())
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(RecordedRequest(request.path, headers, body or {}, received))
        try:
            self._check_headers(request)
            payload = _require_object(body)
            call = self._validate(payload)
            step = self._take_step(call.prompt.last_user_text)
            if isinstance(step, Fail):
                raise ApiError.from_fail(step)
        except ApiError as exc:
            return error_response(exc)
        answer = self._compose(step, call)
        usage = self._cache_usage(call)
        if payload.get("stream") is True:
            return await self._stream(request, call, step, answer, usage)
        return await self._respond(call, step, answer, usage)

    async def _on_count_tokens(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check_headers(request)
            body = _require_object(_parse_body(await request.read()))
            _require(body, ("model", "messages"))
            spec = _model(body["model"])
            _check_messages(body["messages"])
            _check_system(body.get("system"))
            tokens = measure_prompt(body, spec).tokens
        except ApiError as exc:
            return error_response(exc)
        return _json({"input_tokens": tokens})

    async def _on_models(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check_headers(request)
        except ApiError as exc:
            return error_response(exc)
        data = [_model_object(spec) for spec in MODELS.values()]
        return _json(
            {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        )

    async def _on_model(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check_headers(request)
            spec = _model(request.match_info["model_id"])
        except ApiError as exc:
            return error_response(exc)
        return _json(_model_object(spec))

    def _validate(self, body: JSON) -> Call:
        _require(body, ("model", "max_tokens", "messages"))
        spec = _model(body["model"])
        max_tokens = _max_tokens(body["max_tokens"], spec)
        messages = _check_messages(body["messages"])
        _check_system(body.get("system"))
        if not spec.prefill and messages[-1]["role"] == "assistant":
            raise invalid(PREFILL_MESSAGE)
        _check_sampling(body, spec)
        thinking = _thinking(body, spec, max_tokens)
        prompt = measure_prompt(body, spec)
        window = self.context_window or spec.context
        if prompt.tokens > window:
            raise invalid(f"prompt is too long: {prompt.tokens} tokens > {window} maximum")
        return Call(spec, max_tokens, prompt, thinking)

    # -- answers

    def _compose(self, reply: Reply, call: Call) -> Answer:
        thinking_tokens = call.thinking.tokens if call.thinking else 0
        max_words = math.floor((call.max_tokens - thinking_tokens) * WORDS_PER_TOKEN)
        if reply.text is not None:
            text, stop = reply.text, reply.stop_reason
        else:
            words = reply.words
            if words is None:
                words = max_words if reply.stop_reason == "max_tokens" else self.default_words
            text, cut = _cut_words(default_text(call.prompt.last_user_text, words), max_words)
            stop = "max_tokens" if cut else reply.stop_reason
        if stop == "max_tokens":
            output = call.max_tokens
        else:
            output = thinking_tokens + _text_tokens(text)
        return Answer(text, stop, output, call.thinking)

    def _cache_usage(self, call: Call) -> Usage:
        """Bill the longest live cached prefix as a read, the rest up to the last mark as a write.

        Marks below the model's minimum cacheable length are ignored, as the real API does.
        """
        now = time.monotonic()
        marks = [m for m in call.prompt.marks if m.tokens >= call.spec.min_cacheable]
        read = max((m.tokens for m in marks if self._cache.get(m.key, 0.0) > now), default=0)
        written = max(marks[-1].tokens - read, 0) if marks else 0
        for mark in marks:
            self._cache[mark.key] = now + mark.ttl  # a hit refreshes the entry's lifetime
        return Usage(call.prompt.tokens - read - written, written, read)

    def _delays(self, reply: Reply) -> tuple[float, float]:
        first, interval = reply.first_token_delay, reply.delta_interval
        return (
            self.first_token_delay if first is None else first,
            self.delta_interval if interval is None else interval,
        )

    async def _respond(
        self, call: Call, reply: Reply, answer: Answer, usage: Usage
    ) -> web.StreamResponse:
        first, interval = self._delays(reply)
        deltas = split_deltas(answer.text)
        thinking_time = self.thinking_delay if answer.thinking else 0.0
        # Take as long as the stream would have, so timing-sensitive callers see a real wait.
        await asyncio.sleep(thinking_time + first + interval * max(len(deltas) - 1, 0))
        if reply.error_after_deltas is not None:
            return error_response(ApiError(529, "Overloaded"))
        self._last_text = answer.text
        content: list[JSON] = []
        if answer.thinking is not None:
            content.append(_thinking_block(call, answer.thinking))
        content.append({"type": "text", "text": answer.text})
        return _json(
            _message(call, content, answer.stop_reason, usage.as_dict(answer.output_tokens))
        )

    async def _stream(
        self, request: web.Request, call: Call, reply: Reply, answer: Answer, usage: Usage
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": _new_id("req"),
            }
        )
        await response.prepare(request)
        self._last_text = ""
        try:
            await self._events(response, call, reply, answer, usage)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away mid-stream; there is nobody left to answer
        return response

    async def _events(
        self, response: web.StreamResponse, call: Call, reply: Reply, answer: Answer, usage: Usage
    ) -> None:
        start = _message(call, [], None, usage.as_dict(1))
        await _send(response, {"type": "message_start", "message": start})
        index = 0
        if answer.thinking is not None:
            await self._send_thinking(response, call, answer.thinking)
            index = 1
        await _send(response, {"type": "ping"})
        if not await self._send_text(response, index, answer.text, reply):
            return
        await _send(
            response,
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": answer.output_tokens},
            },
        )
        await _send(response, {"type": "message_stop"})

    async def _send_thinking(
        self, response: web.StreamResponse, call: Call, thinking: Thinking
    ) -> None:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        await _send(response, {"type": "content_block_start", "index": 0, "content_block": block})
        # The 5.5 family omits the thinking text by default: only the signature arrives.
        for piece in split_deltas(THINKING_SUMMARY) if thinking.visible else []:
            delta = {"type": "thinking_delta", "thinking": piece}
            await _send(response, {"type": "content_block_delta", "index": 0, "delta": delta})
        await asyncio.sleep(self.thinking_delay)
        delta = {"type": "signature_delta", "signature": _signature(call, thinking)}
        await _send(response, {"type": "content_block_delta", "index": 0, "delta": delta})
        await _send(response, {"type": "content_block_stop", "index": 0})

    async def _send_text(
        self, response: web.StreamResponse, index: int, text: str, reply: Reply
    ) -> bool:
        """Stream the text block; False when a scripted error ended the stream instead."""
        block = {"type": "text", "text": ""}
        await _send(
            response, {"type": "content_block_start", "index": index, "content_block": block}
        )
        first, interval = self._delays(reply)
        limit = reply.error_after_deltas
        for n, piece in enumerate(split_deltas(text)):
            if limit is not None and n >= limit:
                break
            await asyncio.sleep(first if n == 0 else interval)
            delta = {"type": "text_delta", "text": piece}
            await _send(response, {"type": "content_block_delta", "index": index, "delta": delta})
            self._last_text += piece
        if limit is not None:
            error = {"type": "overloaded_error", "message": "Overloaded"}
            await _send(response, {"type": "error", "error": error})
            response.force_close()
            return False
        await _send(response, {"type": "content_block_stop", "index": index})
        return True

    # -- control endpoints (for a fake running as a subprocess)

    async def _on_script(self, request: web.Request) -> web.StreamResponse:
        try:
            raw = _parse_body(await request.read(), allow_list=True)
            if not isinstance(raw, list):
                raise invalid("body: expected a JSON list of steps")
            self.script(*(step_from_dict(item) for item in raw))
        except ApiError as exc:
            return error_response(exc)
        return _json({"queued": len(self._steps)})

    async def _on_requests(self, request: web.Request) -> web.StreamResponse:
        return _json([recorded.body for recorded in self.requests])

    async def _on_stats(self, request: web.Request) -> web.StreamResponse:
        return _json({"requests": len(self.requests), "cpu_seconds": time.process_time()})

    async def _on_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return _json({"ok": True})


# ---------------------------------------------------------------- helpers for responses


def step_from_dict(data: Any) -> Step:
    """A step from its JSON form: the dataclass fields plus "kind": "reply" or "fail"."""
    if not isinstance(data, dict):
        raise invalid("step: expected an object")
    kind = data.get("kind", "reply")
    cls: type[Reply] | type[Fail] = Reply if kind == "reply" else Fail
    if kind not in ("reply", "fail"):
        raise invalid(f"step.kind: expected 'reply' or 'fail', got {kind!r}")
    args = {key: value for key, value in data.items() if key != "kind"}
    unknown = set(args) - {f.name for f in fields(cls)}
    if unknown:
        raise invalid(f"step: unknown fields {sorted(unknown)}")
    try:
        return cls(**args)
    except TypeError as exc:
        raise invalid(f"step: {exc}") from None


def _parse_body(raw: bytes, allow_list: bool = False) -> Any:
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) or (allow_list and isinstance(body, list)) else None


def _require_object(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise invalid("There was an issue with the format of your request: expected a JSON object")
    return body


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"request-id": _new_id("req"), **(headers or {})}
    return web.json_response(data, status=status, headers=all_headers, dumps=_dumps)


def error_response(exc: ApiError) -> web.Response:
    """The real API's error body, with the same request id in the body and the header."""
    request_id = _new_id("req")
    body = {
        "type": "error",
        "error": {"type": exc.error_type, "message": exc.message},
        "request_id": request_id,
    }
    return _json(body, exc.status, {**exc.headers, "request-id": request_id})


def _message(call: Call, content: list[JSON], stop_reason: str | None, usage: JSON) -> JSON:
    return {
        "id": _new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": call.spec.id,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _thinking_block(call: Call, thinking: Thinking) -> JSON:
    text = THINKING_SUMMARY if thinking.visible else ""
    return {"type": "thinking", "thinking": text, "signature": _signature(call, thinking)}


def _signature(call: Call, thinking: Thinking) -> str:
    seed = f"{call.spec.id}:{thinking.tokens}:{call.prompt.last_user_text}".encode()
    return base64.b64encode(hashlib.sha256(seed).digest()).decode()


def _model_object(spec: ModelSpec) -> JSON:
    return {
        "type": "model",
        "id": spec.id,
        "display_name": spec.display_name,
        "created_at": spec.created_at,
        "max_input_tokens": spec.context,
        "max_tokens": spec.max_output,
    }


async def _send(response: web.StreamResponse, data: JSON) -> None:
    await response.write(f"event: {data['type']}\ndata: {_dumps(data)}\n\n".encode())


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer aiohttp's own errors (unknown route, body too large) in the API's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return error_response(ApiError(exc.status, ERROR_MESSAGES.get(exc.status, exc.reason)))


# ---------------------------------------------------------------- command line


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.anthropic",
        description="Serve the fake Anthropic API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-key", help='"" turns the key check off')
    parser.add_argument("--default-words", type=int, default=40)
    parser.add_argument("--delta-interval", type=float, default=0.0)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--thinking-delay", type=float, default=0.0)
    parser.add_argument("--context-window", type=int, default=None)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeAnthropic(
        api_key=args.api_key or None,
        default_words=args.default_words,
        delta_interval=args.delta_interval,
        first_token_delay=args.first_token_delay,
        context_window=args.context_window,
        thinking_delay=args.thinking_delay,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    url = await fake.start(args.port)
    print(f"READY {url}", flush=True)
    await stop.wait()
    await fake.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until SIGTERM or SIGINT; print one READY line once it listens."""
    asyncio.run(_serve(_arguments(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
