"""A model endpoint that goes quiet never holds a reply: one deadline until the first text
(retries and the fallback model included), a stall bound after it; long answers are never cut."""

from __future__ import annotations

import asyncio
import time

from bot.knowledge import Knowledge
from bot.llm import AnthropicClient, ModelOptions
from bot.policy import ReplyPolicy
from bot.prompts import PromptBook
from bot.responder import Responder
from bot.store import Store
from bot.streaming import TYPING_MARKER
from tests.fakes.anthropic import Fail, FakeAnthropic, Reply
from tests.surfaces import RecordingSurface
from tests.test_responder import ask


def responder(store: Store, fake: FakeAnthropic, fallback: str | None = None) -> Responder:
    options = ModelOptions("claude-haiku-5-5", fallback, 0.3, "low")
    llm = AnthropicClient("test-key", fake.base_url, options, backoff_base=0.01)
    policy = ReplyPolicy(model="claude-haiku-5-5", max_tokens=1024, history_tokens=20_000,
                         max_concurrent=8, reply_timeout=1.0, stall_timeout=0.5)
    return Responder(policy, store, Knowledge(store.sqlite), llm, PromptBook.load())


async def reply_in(r: Responder, surface: RecordingSurface, question: str) -> float:
    started = time.monotonic()
    task = await r.submit(ask(question, f"E-{question}"), surface)
    assert task is not None
    await asyncio.wait_for(task, 10)
    assert r.llm is not None
    await r.llm.aclose()
    return time.monotonic() - started


async def test_an_endpoint_that_never_answers_ends_the_reply_at_the_deadline(
    store: Store, anthropic: FakeAnthropic
) -> None:
    # Both models accept the request and never answer, on every attempt.
    anthropic.script(*[Reply(silent=True) for _ in range(10)])
    surface = RecordingSurface()
    took = await reply_in(responder(store, anthropic, "claude-sonnet-5-5"), surface, "hello")
    assert took < 3.0  # the 1 s deadline covers every attempt and the fallback together
    assert surface.final.text == "⚠️ The AI service did not answer in time. " \
        "Please try again in a few minutes."
    assert TYPING_MARKER not in "".join(surface.final.pages)


async def test_the_deadline_covers_retries_and_the_fallback_together(
    store: Store, anthropic: FakeAnthropic
) -> None:
    # Every attempt is refused as overloaded with a 0.3 s retry-after: one model's retries
    # alone would take 1.2 s, both models' 2.4 s; the 1 s deadline ends it first.
    anthropic.script(*[Fail(529, "overloaded_error", retry_after=0.3) for _ in range(10)])
    surface = RecordingSurface()
    took = await reply_in(responder(store, anthropic, "claude-sonnet-5-5"), surface, "hello")
    assert took < 1.6 and len(anthropic.requests) >= 3  # it did retry, within the deadline
    assert surface.final.text.startswith("⚠️ The AI service did not answer in time.")


async def test_a_stream_that_goes_quiet_mid_answer_keeps_its_text_and_says_so(
    store: Store, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=60, stall_after_deltas=10, delta_interval=0.01))
    surface = RecordingSurface()
    took = await reply_in(responder(store, anthropic), surface, "hello")
    assert took < 3.0
    final = surface.final.text
    assert final.startswith(anthropic.last_text_sent()) and anthropic.last_text_sent()
    assert final.endswith("interrupted by an error at the AI service. Please ask again.")


async def test_a_long_answer_that_keeps_streaming_is_never_cut(
    store: Store, anthropic: FakeAnthropic
) -> None:
    # Three seconds of steady text: three times the deadline, six times the stall bound.
    anthropic.script(Reply(words=300, delta_interval=0.02, first_token_delay=0.6))
    surface = RecordingSurface()
    took = await reply_in(responder(store, anthropic), surface, "hello")
    assert took > 2.0
    assert surface.final.text == anthropic.last_text_sent()
