"""Checks of the fake Anthropic server itself, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic import PREFILL_MESSAGE, Fail, FakeAnthropic, Reply

HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
ROOT = Path(__file__).resolve().parent.parent
Event = tuple[str, dict[str, Any]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url, headers=HEADERS, timeout=10) as http:
        yield http


def request(
    model: str = "claude-haiku-5-5", text: str = "How do I reset my password?", **extra: Any
) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


async def stream(client: httpx.AsyncClient, body: dict[str, Any]) -> list[Event]:
    """POST with stream=true and parse the SSE events, checking names match data types."""
    events: list[Event] = []
    name = ""
    async with client.stream("POST", "/v1/messages", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                assert data["type"] == name
                events.append((name, data))
    return events


def text_of(events: list[Event]) -> str:
    return "".join(
        data["delta"]["text"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "text_delta"
    )


async def test_haiku_55_stream_has_thinking_block_before_text(
    fake: FakeAnthropic, client: httpx.AsyncClient
) -> None:
    fake.script(Reply(text="Open Settings, then choose Reset password."))
    events = await stream(client, request())
    names = [name for name, _ in events]
    assert names[:5] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
    ]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    thinking = events[1][1]
    assert thinking["index"] == 0 and thinking["content_block"]["type"] == "thinking"
    assert events[2][1]["delta"]["type"] == "signature_delta"  # thinking text is omitted
    text_start = events[5][1]
    assert text_start["index"] == 1 and text_start["content_block"] == {"type": "text", "text": ""}
    assert text_of(events) == "Open Settings, then choose Reset password."
    assert fake.last_text_sent() == "Open Settings, then choose Reset password."
    message = events[0][1]["message"]
    assert message["id"].startswith("msg_") and message["content"] == []
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


async def test_default_text_echoes_question_and_respects_word_count(
    fake: FakeAnthropic, client: httpx.AsyncClient
) -> None:
    fake.script(Reply(words=90))
    events = await stream(client, request(model="claude-3-haiku-20240307"))
    text = text_of(events)
    assert text.startswith('Answer to "How do I reset my password?": ')
    assert "\n\n" in text and text.endswith(".")
    assert len(text.split()) == 90 + len('Answer to "How do I reset my password?":'.split())
    deltas = [d for n, d in events if n == "content_block_delta"]
    assert all(1 <= len(d["delta"]["text"].split()) <= 3 for d in deltas)
    assert [n for n, _ in events][1:3] == ["ping", "content_block_start"]  # no thinking


async def test_temperature_rejected_on_haiku_55_only(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=request(temperature=0.3))
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "temperature" in body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]
    ok = await client.post("/v1/messages", json=request("claude-3-haiku-20240307", temperature=0.3))
    assert ok.status_code == 200


async def test_prefill_rejected_on_55_family(client: httpx.AsyncClient) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure,"}]
    for model, status in (
        ("claude-haiku-5-5", 400),
        ("claude-sonnet-5-5", 400),
        ("claude-haiku-4-5", 200),
    ):
        response = await client.post("/v1/messages", json={**request(model), "messages": messages})
        assert response.status_code == status, model
    response = await client.post("/v1/messages", json={**request(), "messages": messages})
    assert response.json()["error"]["message"] == PREFILL_MESSAGE


async def test_prompt_too_long_message() -> None:
    async with (
        FakeAnthropic(context_window=50) as server,
        httpx.AsyncClient(base_url=server.base_url, headers=HEADERS) as http,
    ):
        response = await http.post("/v1/messages", json=request(text="x" * 320))
    assert response.status_code == 400
    # 320 characters at 3.2 characters per token on the 5.5 family.
    assert response.json()["error"]["message"] == "prompt is too long: 100 tokens > 50 maximum"


async def test_scripted_429_carries_retry_after_then_recovers(
    fake: FakeAnthropic, client: httpx.AsyncClient
) -> None:
    fake.script(Fail(429, retry_after=2))
    limited = await client.post("/v1/messages", json=request())
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert limited.headers["request-id"].startswith("req_")
    after = await client.post("/v1/messages", json=request())
    assert after.status_code == 200 and after.json()["type"] == "message"
    assert len(fake.requests) == 2


async def test_mid_stream_error_event_ends_the_stream(
    fake: FakeAnthropic, client: httpx.AsyncClient
) -> None:
    fake.script(Reply(text="one two three four five six seven eight nine", error_after_deltas=2))
    events = await stream(client, request())
    text_deltas = [
        d for n, d in events if n == "content_block_delta" and d["delta"]["type"] == "text_delta"
    ]
    assert len(text_deltas) == 2
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    assert "message_stop" not in [n for n, _ in events]
    assert fake.last_text_sent() == text_of(events)


async def test_count_tokens_uses_model_ratio_and_image_cost(client: httpx.AsyncClient) -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    content = [{"type": "text", "text": "y" * 100}, image]
    body = {"system": "z" * 60, "messages": [{"role": "user", "content": content}]}
    for model, expected in (
        ("claude-haiku-5-5", math.ceil(160 / 3.2) + 1000),
        ("claude-3-haiku-20240307", 40 + 1000),
    ):
        response = await client.post("/v1/messages/count_tokens", json={**body, "model": model})
        assert response.json() == {"input_tokens": expected}


async def test_prompt_cache_writes_then_reads(client: httpx.AsyncClient) -> None:
    system = [{"type": "text", "text": "s" * 3200, "cache_control": {"type": "ephemeral"}}]
    body = request(system=system)
    first = (await client.post("/v1/messages", json=body)).json()["usage"]
    second = (await client.post("/v1/messages", json=body)).json()["usage"]
    assert first["cache_creation_input_tokens"] == 1000 and first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == 1000
    assert second["cache_creation_input_tokens"] == 0
    assert second["input_tokens"] == first["input_tokens"] > 0


async def test_missing_key_and_unknown_model(client: httpx.AsyncClient) -> None:
    anonymous = await client.post("/v1/messages", json=request(), headers={"x-api-key": ""})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    missing = await client.post("/v1/messages", json=request("claude-nope"))
    assert missing.status_code == 404
    assert missing.json()["error"] == {"type": "not_found_error", "message": "model: claude-nope"}


async def test_cli_prints_ready_and_exits_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.anthropic",
        "--port",
        "0",
        "--api-key",
        "k",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert line.startswith("READY http://127.0.0.1:")
        url = line.split()[1]
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            await http.post("/_fake/script", json=[{"kind": "fail", "status": 529}])
            headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
            failed = await http.post("/v1/messages", json=request(), headers=headers)
            stats = (await http.get("/_fake/stats")).json()
        assert failed.status_code == 529
        assert stats["requests"] == 1 and stats["cpu_seconds"] > 0
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
