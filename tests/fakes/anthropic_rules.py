"""The fake Anthropic API's model table and request validation, with the real API's messages.

Every check raises ApiError in the shape the real API answers with; the server in
tests/fakes/anthropic.py turns it into an HTTP error response.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

MAX_REQUEST_BYTES = 32 * 1024 * 1024
IMAGE_MAX_BYTES = 5 * 1024 * 1024  # enforced on the base64 string, as the real API does
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
EFFORT_THINKING_TOKENS = {"low": 24, "medium": 96, "high": 320}
BUDGET_THINKING_TOKENS = 160  # what a budget-thinking model actually spends, at most
PREFILL_MESSAGE = (
    "This model does not support assistant message prefill. "
    "The conversation must end with a user message."
)


# ---------------------------------------------------------------- models


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


@dataclass(frozen=True)
class Thinking:
    tokens: int
    visible: bool  # summarized thinking text is streamed; otherwise only the signature


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


def find_model(model_id: Any) -> ModelSpec:
    """The model's spec, or the real API's 404 for an unknown model."""
    spec = MODELS.get(model_id) if isinstance(model_id, str) else None
    if spec is None:
        raise ApiError(404, f"model: {model_id}")
    return spec


def model_object(spec: ModelSpec) -> JSON:
    """The model as GET /v1/models describes it."""
    return {
        "type": "model",
        "id": spec.id,
        "display_name": spec.display_name,
        "created_at": spec.created_at,
        "max_input_tokens": spec.context,
        "max_tokens": spec.max_output,
    }


# ---------------------------------------------------------------- errors

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


def default_error_type(status: int) -> str:
    """The error type the real API uses for a status code."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


# ---------------------------------------------------------------- request body


def parse_body(raw: bytes, allow_list: bool = False) -> Any:
    """The JSON object (or list, if allowed) in a request body; None for anything else."""
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) or (allow_list and isinstance(body, list)) else None


def require_object(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise invalid("There was an issue with the format of your request: expected a JSON object")
    return body


def check_headers(headers: Mapping[str, str], api_key: str | None) -> None:
    """The API key (unless the fake runs without one) and the version header."""
    key = headers.get("x-api-key")
    if api_key is not None and key is None:
        raise ApiError(401, "x-api-key header is required")
    if api_key is not None and key != api_key:
        raise ApiError(401, "invalid x-api-key")
    if not headers.get("anthropic-version"):
        raise invalid("anthropic-version: header is required")


def check_message_request(body: JSON) -> tuple[ModelSpec, int, Thinking | None]:
    """Validate a /v1/messages body; its model, max_tokens and the thinking it asks for."""
    _require_fields(body, ("model", "max_tokens", "messages"))
    spec = find_model(body["model"])
    max_tokens = _check_max_tokens(body["max_tokens"], spec)
    messages = _check_messages(body["messages"])
    _check_system(body.get("system"))
    if not spec.prefill and messages[-1]["role"] == "assistant":
        raise invalid(PREFILL_MESSAGE)
    _check_sampling(body, spec)
    return spec, max_tokens, _check_thinking(body, spec, max_tokens)


def check_count_request(body: JSON) -> ModelSpec:
    """Validate a /v1/messages/count_tokens body; its model."""
    _require_fields(body, ("model", "messages"))
    spec = find_model(body["model"])
    _check_messages(body["messages"])
    _check_system(body.get("system"))
    return spec


def _require_fields(body: JSON, names: Sequence[str]) -> None:
    for name in names:
        if name not in body:
            raise invalid(f"{name}: Field required")


def _check_max_tokens(value: Any, spec: ModelSpec) -> int:
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


# ---------------------------------------------------------------- thinking


def _check_thinking(body: JSON, spec: ModelSpec, max_tokens: int) -> Thinking | None:
    """The thinking the request asks of this model, or None; ApiError if the model refuses it."""
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
