"""The Message Batches client against the fake's batch endpoints and their limits."""

from __future__ import annotations

from typing import Any

import pytest

import bot.batches as batches_module
from bot.batches import MessageBatches, chunks
from bot.errors import AuthenticationError, BadRequestError
from bot.providers import AnthropicAPI
from tests.fakes.anthropic import Fail, FakeAnthropic, Reply


def params(question: str, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-5-5", "max_tokens": 200,
            "messages": [{"role": "user", "content": question}], **extra}


def client(fake: FakeAnthropic, key: str = "test-key") -> MessageBatches:
    return MessageBatches(AnthropicAPI(key, fake.base_url))


async def test_a_batch_ends_with_one_result_per_request(anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply(text="Use SSO.", when="sso"), Fail(529, "overloaded_error",
                                                              when="busy"))
    anthropic.batches.expire.add("late")
    seen: list[str] = []
    batches = client(anthropic)
    try:
        status = await batches.create([
            {"custom_id": "sso", "params": params("how does sso work?")},
            {"custom_id": "busy", "params": params("are you busy?")},
            {"custom_id": "late", "params": params("too late?")},
            {"custom_id": "streamed", "params": params("stream it", stream=True)},
        ])
        assert status.status == "in_progress" and status.counts["processing"] == 4
        with pytest.raises(BadRequestError, match="still processing"):  # not ended yet
            await batches._call("GET", f"/v1/messages/batches/{status.id}/results")
        ended = await batches.wait(status.id, lambda s: seen.append(s.status),
                                   first_poll=0.05)
        results = {r.custom_id: r for r in await batches.results(ended)}
    finally:
        await batches.aclose()
    assert seen[0] == "in_progress" and seen[-1] == "ended"
    assert ended.counts == {"processing": 0, "succeeded": 1, "errored": 2, "canceled": 0,
                            "expired": 1}
    assert results["sso"].kind == "succeeded"
    assert results["sso"].message["content"][-1]["text"] == "Use SSO."
    assert results["busy"].kind == "errored" and "Overloaded" in results["busy"].error
    assert results["late"].kind == "expired"
    assert "cannot stream" in results["streamed"].error


async def test_the_limits_of_a_batch_are_enforced(anthropic: FakeAnthropic) -> None:
    anthropic.batches.max_requests = 2
    batches = client(anthropic)
    try:
        with pytest.raises(BadRequestError, match="at most 2 requests"):
            await batches.create([{"custom_id": f"q{i}", "params": params("q")}
                                  for i in range(3)])
        with pytest.raises(BadRequestError, match="not unique"):
            await batches.create([{"custom_id": "same", "params": params("q")}] * 2)
        with pytest.raises(BadRequestError, match="custom_id"):
            await batches.create([{"custom_id": "has space", "params": params("q")}])
        anthropic.batches.max_bytes = 500
        with pytest.raises(BadRequestError, match="byte limit"):
            await batches.create([{"custom_id": "big", "params": params("x" * 600)}])
    finally:
        await batches.aclose()
    assert anthropic.batches.batches == {}


async def test_a_cancelled_batch_ends_with_its_requests_canceled(
    anthropic: FakeAnthropic
) -> None:
    anthropic.batches.processing_seconds = 60
    batches = client(anthropic)
    try:
        status = await batches.create([{"custom_id": "a", "params": params("q")}])
        await batches.cancel(status.id)
        ended = await batches.wait(status.id, first_poll=0.01)
        results = await batches.results(ended)
    finally:
        await batches.aclose()
    assert [r.kind for r in results] == ["canceled"] and ended.counts["canceled"] == 1


async def test_a_wrong_key_is_refused(anthropic: FakeAnthropic) -> None:
    batches = client(anthropic, key="wrong")
    try:
        with pytest.raises(AuthenticationError):
            await batches.create([{"custom_id": "a", "params": params("q")}])
    finally:
        await batches.aclose()


def test_requests_are_split_within_the_api_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    many = [(f"q{i}", {"n": i}) for i in range(100_001)]
    assert [len(b) for b in chunks(many)] == [100_000, 1]
    monkeypatch.setattr(batches_module, "MAX_BYTES", 250)
    split = chunks([(f"q{i}", {"text": "x" * 60}) for i in range(5)])
    assert [len(b) for b in split] == [2, 2, 1]
    with pytest.raises(ValueError, match="custom_id"):
        chunks([("not ok!", {})])


async def test_an_interrupted_wait_cancels_the_batch(anthropic: FakeAnthropic) -> None:
    import asyncio

    from bot.eval_answers import Asked, by_batch
    from bot.kb_eval import EvalQuestion

    anthropic.batches.processing_seconds = 60
    asked = [Asked(0, EvalQuestion("q", ("a.md",), None, True), [], params("q"))]
    batches = client(anthropic)
    try:
        task = asyncio.create_task(by_batch(batches, asked, first_poll=0.05))
        for _ in range(100):  # until the batch exists and is being polled
            await asyncio.sleep(0.02)
            if anthropic.batches.polls:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await batches.aclose()
    [batch] = anthropic.batches.batches.values()
    assert batch.canceled_at is not None  # stopped, not left to run and be billed
