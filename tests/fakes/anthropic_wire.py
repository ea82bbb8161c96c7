"""How the fake Anthropic API writes its answers: JSON bodies, error bodies and SSE streams.

The server in tests/fakes/anthropic.py decides what to answer; this module puts it on the wire
in the real API's shape, at the pace a scripted Reply asks for.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.fakes.anthropic_rules import ERROR_MESSAGES, JSON, ApiError, Thinking
from tests.fakes.anthropic_text import (
    THINKING_SUMMARY,
    Answer,
    Call,
    Usage,
    compact_json,
    split_deltas,
)


@dataclass(frozen=True)
class Pace:
    """How one answer is delivered: its delays, and a scripted error after some deltas."""

    first_token_delay: float
    delta_interval: float
    thinking_delay: float
    error_after_deltas: int | None = None
    drop_after_deltas: int | None = None  # close the connection with no error event
    stall_after_deltas: int | None = None  # go quiet, connection open, for STALL_SECONDS


STALL_SECONDS = 600.0


@dataclass
class SentText:
    """The text of the last answer, as far as it was sent."""

    text: str = ""


def new_id(prefix: str) -> str:
    return f"{prefix}_011{uuid.uuid4().hex[:21]}"


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"request-id": new_id("req"), **(headers or {})}
    return web.json_response(data, status=status, headers=all_headers, dumps=compact_json)


def error_response(exc: ApiError) -> web.Response:
    """The real API's error body, with the same request id in the body and the header."""
    request_id = new_id("req")
    body = {
        "type": "error",
        "error": {"type": exc.error_type, "message": exc.message},
        "request_id": request_id,
    }
    return json_response(body, exc.status, {**exc.headers, "request-id": request_id})


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer aiohttp's own errors (unknown route, body too large) in the API's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return error_response(ApiError(exc.status, ERROR_MESSAGES.get(exc.status, exc.reason)))


# ---------------------------------------------------------------- one JSON message


async def respond(
    call: Call, answer: Answer, usage: Usage, pace: Pace, sent: SentText
) -> web.StreamResponse:
    """The answer as one JSON message, after as long as streaming it would have taken."""
    first, interval = pace.first_token_delay, pace.delta_interval
    deltas = split_deltas(answer.text)
    thinking_time = pace.thinking_delay if answer.thinking else 0.0
    # Take as long as the stream would have, so timing-sensitive callers see a real wait.
    await asyncio.sleep(thinking_time + first + interval * max(len(deltas) - 1, 0))
    if pace.error_after_deltas is not None:
        return error_response(ApiError(529, "Overloaded"))
    sent.text = answer.text
    return json_response(message_object(call, answer, usage))


def message_object(call: Call, answer: Answer, usage: Usage) -> JSON:
    """The whole answer as the API's Message object (a non-streaming reply, a batch result)."""
    content: list[JSON] = []
    if answer.thinking is not None:
        content.append(_thinking_block(call, answer.thinking))
    content.append({"type": "text", "text": answer.text})
    return _message(call, content, answer.stop_reason, usage.as_dict(answer.output_tokens))


# ---------------------------------------------------------------- an SSE stream


async def stream(
    request: web.Request, call: Call, answer: Answer, usage: Usage, pace: Pace, sent: SentText
) -> web.StreamResponse:
    """The answer as the real API's server-sent events, delta by delta."""
    response = web.StreamResponse(
        headers={
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "request-id": new_id("req"),
        }
    )
    await response.prepare(request)
    sent.text = ""
    try:
        await _events(response, call, answer, usage, pace, sent)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away mid-stream; there is nobody left to answer
    return response


async def _events(
    response: web.StreamResponse,
    call: Call,
    answer: Answer,
    usage: Usage,
    pace: Pace,
    sent: SentText,
) -> None:
    start = _message(call, [], None, usage.as_dict(1))
    await _send(response, {"type": "message_start", "message": start})
    index = 0
    if answer.thinking is not None:
        await _send_thinking(response, call, answer.thinking, pace)
        index = 1
    await _send(response, {"type": "ping"})
    if not await _send_text(response, index, answer.text, pace, sent):
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
    response: web.StreamResponse, call: Call, thinking: Thinking, pace: Pace
) -> None:
    block = {"type": "thinking", "thinking": "", "signature": ""}
    await _send(response, {"type": "content_block_start", "index": 0, "content_block": block})
    # The 5.5 family omits the thinking text by default: only the signature arrives.
    for piece in split_deltas(THINKING_SUMMARY) if thinking.visible else []:
        delta = {"type": "thinking_delta", "thinking": piece}
        await _send(response, {"type": "content_block_delta", "index": 0, "delta": delta})
    await asyncio.sleep(pace.thinking_delay)
    delta = {"type": "signature_delta", "signature": _signature(call, thinking)}
    await _send(response, {"type": "content_block_delta", "index": 0, "delta": delta})
    await _send(response, {"type": "content_block_stop", "index": 0})


async def _send_text(
    response: web.StreamResponse, index: int, text: str, pace: Pace, sent: SentText
) -> bool:
    """Stream the text block; False when a scripted error ended the stream instead."""
    block = {"type": "text", "text": ""}
    await _send(response, {"type": "content_block_start", "index": index, "content_block": block})
    limit = pace.error_after_deltas
    if pace.drop_after_deltas is not None:
        limit = pace.drop_after_deltas
    for n, piece in enumerate(split_deltas(text)):
        if n == pace.stall_after_deltas:
            await asyncio.sleep(STALL_SECONDS)
        if limit is not None and n >= limit:
            break
        await asyncio.sleep(pace.first_token_delay if n == 0 else pace.delta_interval)
        delta = {"type": "text_delta", "text": piece}
        await _send(response, {"type": "content_block_delta", "index": index, "delta": delta})
        sent.text += piece
    if pace.drop_after_deltas is not None:  # as a lost connection: no error, no message_stop
        response.force_close()
        return False
    if limit is not None:
        error = {"type": "overloaded_error", "message": "Overloaded"}
        await _send(response, {"type": "error", "error": error})
        response.force_close()
        return False
    await _send(response, {"type": "content_block_stop", "index": index})
    return True


# ---------------------------------------------------------------- pieces


def _message(call: Call, content: list[JSON], stop_reason: str | None, usage: JSON) -> JSON:
    return {
        "id": new_id("msg"),
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


async def _send(response: web.StreamResponse, data: JSON) -> None:
    await response.write(f"event: {data['type']}\ndata: {compact_json(data)}\n\n".encode())
