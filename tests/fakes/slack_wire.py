"""Web API wire helpers for the fake Slack: replies, parameters, tokens and cursors."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from aiohttp import web

from tests.fakes.slack_events import Json
from tests.fakes.slack_state import MARKDOWN_MAX_CHARS, ApiError, _Reply


def _ok(**fields: Any) -> _Reply:
    return _Reply({"ok": True, **fields})


def _rate_limited(wait: float) -> _Reply:
    """HTTP 429 as Slack sends it: integer Retry-After (≥ 1 s) and error "ratelimited"."""
    retry_after = str(max(1, math.ceil(wait)))
    return _Reply({"ok": False, "error": "ratelimited"}, 429, {"Retry-After": retry_after})


def _str(params: Json, name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value)


def _need(params: Json, name: str, error: str) -> str:
    value = _str(params, name)
    if not value:
        raise ApiError(error)
    return value


def _int(params: Json, name: str, default: int) -> int:
    try:
        return int(params.get(name) or default)
    except (TypeError, ValueError) as exc:
        raise ApiError("invalid_arguments") from exc


def _content(params: Json) -> tuple[str | None, list[Json] | None]:
    """The text (or markdown_text) and blocks of a chat.postMessage/chat.update call."""
    markdown = params.get("markdown_text")
    if markdown is not None and len(str(markdown)) > MARKDOWN_MAX_CHARS:
        raise ApiError("msg_too_long")
    text = params.get("text", markdown)
    blocks = _json_list(params.get("blocks"), "invalid_blocks")
    if not text and not blocks and not params.get("attachments"):
        raise ApiError("no_text")
    return (None if text is None else str(text)), blocks


def _json_list(value: Any, error: str) -> list[Json] | None:
    """Blocks/chunks arrive as a list (JSON body) or a JSON string (form body)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ApiError(error) from exc
    if not isinstance(value, list):
        raise ApiError(error)
    return value


async def _read_params(request: web.Request) -> tuple[Json, str | None]:
    """Merge query string and body; also return a token sent as a form-body field.

    Slack ignores a token inside a JSON body (JSON needs the Authorization header) and, for
    apps created since February 2021, a token in the query string.
    """
    params: Json = {k: v for k, v in request.query.items() if k != "token"}
    if request.content_type == "application/json":
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError as exc:
            raise ApiError("invalid_json") from exc
        if not isinstance(body, dict):
            raise ApiError("invalid_json")
        body.pop("token", None)
        return {**params, **body}, None
    form = await request.post() if request.can_read_body else {}
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    token = fields.pop("token", None)
    return {**params, **fields}, token


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else None


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        kind, _, ts = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError("invalid_cursor") from exc
    if kind != "next_ts" or not ts:
        raise ApiError("invalid_cursor")
    return ts
