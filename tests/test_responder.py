import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from bot.conversation import Arrival, ConversationKey, Incoming, Platform
from bot.knowledge import Knowledge, Search
from bot.llm import AnthropicClient, ModelOptions
from bot.notices import EMPTY_QUESTION, NOTE_CUT, NOTE_INTERRUPTED, REFUSAL
from bot.policy import ReplyPolicy
from bot.prompts import PromptBook
from bot.responder import Responder
from bot.store import Store
from bot.streaming import TYPING_MARKER
from tests.fakes.anthropic import Fail, FakeAnthropic, Reply, message_text
from tests.surfaces import RecordingSurface

KEY = ConversationKey(Platform.SLACK, "T1", "C1", "100.1")


def ask(text: str, event: str, key: ConversationKey = KEY) -> Incoming:
    return Incoming(key=key, author_id="U1", text=text, event_id=event, arrival=Arrival.MENTION)


def responder(store: Store, fake: FakeAnthropic | None, **policy: int) -> Responder:
    llm = None
    if fake is not None:
        options = ModelOptions("claude-haiku-5-5", None, 0.3, "low")
        llm = AnthropicClient("test-key", fake.base_url, options, backoff_base=0.01)
    return Responder(
        ReplyPolicy(
            model="claude-haiku-5-5",
            max_tokens=1024,
            history_tokens=policy.get("history_tokens", 20_000),
            max_concurrent=policy.get("max_concurrent", 8),
        ),
        store,
        Knowledge(store.sqlite),
        llm,
        PromptBook.load(),
    )


async def answer(r: Responder, incoming: Incoming, surface: RecordingSurface) -> None:
    task = await r.submit(incoming, surface)
    assert task is not None
    await asyncio.wait_for(task, 10)


async def test_streams_then_finishes_with_the_exact_text(
    store: Store, tmp_path: Path
) -> None:
    async with FakeAnthropic(delta_interval=0.01, default_words=80) as fake:
        r = responder(store, fake)
        surface = RecordingSurface()
        await answer(r, ask("How do I rotate my API key?", "E1"), surface)
        assert surface.kinds[0] == "start"
        assert surface.kinds[-1] == "finish"
        assert len(surface.updates) >= 2  # it streamed, not just one final edit
        assert all(u.pages[-1].endswith(TYPING_MARKER) for u in surface.updates)
        assert surface.final.text == fake.last_text_sent()
        assert TYPING_MARKER not in surface.final.pages[-1]
        totals = await store.usage_totals()
        assert totals.replies == 1 and totals.output_tokens > 0 and totals.cost_usd > 0
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_follow_up_sees_the_history_in_order(store: Store, anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply(text="First answer."), Reply(text="Second answer."))
    r = responder(store, anthropic)
    one, two = RecordingSurface(), RecordingSurface()
    t1 = await r.submit(ask("first question", "E1"), one)
    t2 = await r.submit(ask("second question", "E2"), two)
    assert t1 is not None and t2 is not None
    await asyncio.wait_for(asyncio.gather(t1, t2), 10)
    messages = anthropic.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [message_text(m) for m in messages] == ["first question", "First answer.",
                                                  "second question"]
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_arrival_order_holds_when_the_first_start_is_slow(
    store: Store, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="First answer.", when="first"), Reply(text="Second answer."))
    r = responder(store, anthropic)
    slow, fast = RecordingSurface(start_delay=0.3), RecordingSurface()
    t1 = await r.submit(ask("first question", "E1"), slow)
    t2 = await r.submit(ask("second question", "E2"), fast)
    assert t1 is not None and t2 is not None
    await asyncio.wait_for(asyncio.gather(t1, t2), 10)
    assert [message_text(m) for m in anthropic.requests[-1].body["messages"]] == [
        "first question", "First answer.", "second question"
    ]
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_different_conversations_run_concurrently(store: Store) -> None:
    async with FakeAnthropic(delta_interval=0.02, default_words=40) as fake:
        r = responder(store, fake)
        surfaces = [RecordingSurface() for _ in range(4)]
        tasks = []
        for i, surface in enumerate(surfaces):
            key = ConversationKey(Platform.SLACK, "T1", "C1", f"t{i}")
            tasks.append(await r.submit(ask("question", f"E{i}", key), surface))
        await asyncio.wait_for(asyncio.gather(*[t for t in tasks if t]), 20)
        first_updates = [next(t for k, t, _ in s.events if k == "update") for s in surfaces]
        finishes = [next(t for k, t, _ in s.events if k == "finish") for s in surfaces]
        # Every reply was already streaming before any of them finished: they overlapped.
        assert max(first_updates) < min(finishes)
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_global_cap_limits_replies_in_flight(store: Store) -> None:
    async with FakeAnthropic(delta_interval=0.02, default_words=30) as fake:
        r = responder(store, fake, max_concurrent=1)
        surfaces = [RecordingSurface() for _ in range(2)]
        tasks = []
        for i, surface in enumerate(surfaces):
            key = ConversationKey(Platform.SLACK, "T1", "C1", f"t{i}")
            tasks.append(await r.submit(ask("question", f"E{i}", key), surface))
        await asyncio.wait_for(asyncio.gather(*[t for t in tasks if t]), 20)
        one, two = surfaces
        finish_one = next(t for k, t, _ in one.events if k == "finish")
        first_update_two = next(t for k, t, _ in two.events if k == "update")
        assert finish_one <= first_update_two
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_a_redelivered_event_is_answered_once(store: Store, anthropic: FakeAnthropic) -> None:
    r = responder(store, anthropic)
    results = await asyncio.gather(
        *[r.submit(ask("same", "E-dup"), RecordingSurface()) for _ in range(5)]
    )
    tasks = [t for t in results if t is not None]
    assert len(tasks) == 1
    await asyncio.wait_for(tasks[0], 10)
    assert len(anthropic.requests) == 1
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_rejected_key_gives_an_honest_message(store: Store) -> None:
    async with FakeAnthropic(api_key="another-key") as fake:
        r = responder(store, fake)
        surface = RecordingSurface()
        await answer(r, ask("hi", "E1"), surface)
        assert "rejected my credentials" in surface.final.text
        assert "supportbot check" in surface.final.text
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_mid_stream_error_keeps_partial_text_and_says_so(
    store: Store, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=60, error_after_deltas=6))
    r = responder(store, anthropic)
    surface = RecordingSurface()
    await answer(r, ask("hi", "E1"), surface)
    final = surface.final
    assert final.text.startswith('Answer to "hi"')
    assert "interrupted by an error" in final.text
    assert TYPING_MARKER not in final.pages[-1]
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_shutdown_marks_replies_in_flight_interrupted(store: Store) -> None:
    async with FakeAnthropic(delta_interval=0.05, default_words=200) as fake:
        r = responder(store, fake)
        surface = RecordingSurface()
        task = await r.submit(ask("long one", "E1"), surface)
        assert task is not None
        for _ in range(100):
            if surface.updates:
                break
            await asyncio.sleep(0.02)
        await r.aclose()
        assert task.done()
        assert surface.final.text.endswith(NOTE_INTERRUPTED)
        totals = await store.usage_totals()
        assert totals.failed == 1
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_refusal_is_answered_politely(store: Store, anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply(text="I", stop_reason="refusal"))
    r = responder(store, anthropic)
    surface = RecordingSurface()
    await answer(r, ask("bad request", "E1"), surface)
    assert surface.final.text == REFUSAL
    assert len(anthropic.requests) == 1  # a refusal is not retried
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_cut_answers_say_so(store: Store, anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply(text="Step one, step two", stop_reason="max_tokens"))
    r = responder(store, anthropic)
    surface = RecordingSurface()
    await answer(r, ask("steps?", "E1"), surface)
    assert surface.final.text == "Step one, step two" + NOTE_CUT
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_without_a_key_it_answers_from_the_docs(store: Store, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "keys.md").write_text("# API keys\n\n## Rotating a key\n\nOpen Settings > API keys "
                                  "and press Rotate. The old key stops working after 24 hours.\n")
    r = responder(store, None)
    await r.knowledge.index_folder(docs)
    surface = RecordingSurface()
    await answer(r, ask("how do I rotate a key", "E1"), surface)
    assert "no ANTHROPIC_API_KEY is set" in surface.final.text
    assert "press Rotate" in surface.final.text
    assert "keys.md" in surface.final.text


async def test_docs_passages_reach_the_model(
    store: Store, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "billing.md").write_text("# Billing\n\nInvoices are sent on the first of the month.")
    r = responder(store, anthropic)
    await r.knowledge.index_folder(docs)
    await answer(r, ask("when are invoices sent?", "E1"), RecordingSurface())
    assert "Invoices are sent on the first" in anthropic.requests[-1].documentation()
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_empty_question_gets_help_without_calling_the_model(
    store: Store, anthropic: FakeAnthropic
) -> None:
    r = responder(store, anthropic)
    surface = RecordingSurface()
    await answer(r, ask("   ", "E1"), surface)
    assert surface.final.text == EMPTY_QUESTION
    assert anthropic.requests == []
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_prompt_too_long_retries_once_with_a_tighter_window(store: Store) -> None:
    async with FakeAnthropic(context_window=3000) as fake:
        r = responder(store, fake)
        for i in range(6):
            fake.script(Reply(text="short"))
            await answer(r, ask(f"question {i} " + "padding " * 300, f"E{i}"), RecordingSurface())
        surface = RecordingSurface()
        await answer(r, ask("final question", "E-final"), surface)
        assert not surface.final.text.startswith("⚠️")
        assert len(fake.requests[-1].body["messages"]) < 13
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_failed_partial_updates_do_not_stop_the_final(store: Store) -> None:
    async with FakeAnthropic(delta_interval=0.02, default_words=60) as fake:
        r = responder(store, fake)
        surface = RecordingSurface(fail_updates=True)
        started = time.monotonic()
        await answer(r, ask("hi", "E1"), surface)
        assert surface.final.text == fake.last_text_sent()
        # A failing update is retried after a pause, never in a tight loop.
        assert surface.attempts <= (time.monotonic() - started) / 0.25 + 2
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_service_unavailable_message(store: Store, anthropic: FakeAnthropic) -> None:
    anthropic.script(*[Fail(500) for _ in range(4)])
    r = responder(store, anthropic)
    surface = RecordingSurface()
    await answer(r, ask("hi", "E1"), surface)
    assert surface.final.text.startswith("⚠️ The AI service is unavailable")
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_a_skipped_update_is_offered_again_soon(store: Store) -> None:
    async with FakeAnthropic(delta_interval=0.02, default_words=80) as fake:
        r = responder(store, fake)
        surface = RecordingSurface(min_interval=30.0, skip_updates=1)
        await answer(r, ask("question", "E1"), surface)
        # The first text was refused for lack of budget; it went out well before the
        # 30-second interval instead of waiting for it (and before the final text).
        assert surface.kinds[:3] == ["start", "skipped", "update"]
        assert surface.kinds[-1] == "finish"
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_a_refused_question_does_not_leak_into_the_next(
    store: Store, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="No", stop_reason="refusal"), Reply(text="Sure."))
    r = responder(store, anthropic)
    await answer(r, ask("refused question", "E1"), RecordingSurface())
    await answer(r, ask("how do I reset my password?", "E2"), RecordingSurface())
    messages = anthropic.requests[-1].body["messages"]
    assert message_text(messages[-1]) == "how do I reset my password?"
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_thinking_that_uses_every_token_says_the_answer_was_cut(
    store: Store, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="", stop_reason="max_tokens"))
    r = responder(store, anthropic)
    surface = RecordingSurface()
    await answer(r, ask("explain everything", "E1"), surface)
    assert surface.final.text.startswith("I ran out of room")
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_connection_lost_mid_answer_keeps_the_partial_text(
    store: Store, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=60, drop_after_deltas=6))
    r = responder(store, anthropic)
    surface = RecordingSurface()
    await answer(r, ask("hi", "E1"), surface)
    assert surface.final.text.startswith('Answer to "hi"')
    assert surface.final.text.endswith(
        "⚠️ The answer was interrupted by an error at the AI service. Please ask again."
    )
    assert len(anthropic.requests) == 1
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_after_close_new_questions_are_not_taken(
    store: Store, anthropic: FakeAnthropic
) -> None:
    r = responder(store, anthropic)
    await r.aclose()
    assert await r.submit(ask("late", "E-late"), RecordingSurface()) is None
    assert anthropic.requests == []
    await r.llm.aclose()  # type: ignore[union-attr]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition not met")


async def slow_write_reply(
    store: Store, anthropic: FakeAnthropic, text: str, delay: float, until: str,
    delta_interval: float | None = None,
) -> tuple[Responder, RecordingSurface, asyncio.Task[None]]:
    """A reply to `text` on a surface whose writes take `delay` s, once a write of kind
    `until` ("update" or "finish") has left."""
    anthropic.script(Reply(text=text, delta_interval=delta_interval))
    r = responder(store, anthropic)
    surface = RecordingSurface(write_delay=delay)
    task = await r.submit(ask("question?", "E1"), surface)
    assert task is not None
    await wait_until(lambda: until in surface.sent)
    return r, surface, task


async def test_shutdown_during_the_final_write_lets_it_land(
    store: Store, anthropic: FakeAnthropic
) -> None:
    # The platform may apply a final write the bot stops waiting for: a note written after it
    # would post a second message, or mark a complete answer as interrupted.
    answer = "Rotate it under Settings → API keys."
    r, surface, task = await slow_write_reply(store, anthropic, answer, 0.3, until="finish")
    await r.aclose()
    assert task.done() and not task.cancelled() and task.cancelling() == 0  # cancel absorbed
    assert surface.sent.count("finish") == 1 and surface.lost == 0
    assert surface.final.text == answer
    totals = await store.usage_totals()
    assert totals.failed == 0 and totals.replies == 1
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_shutdown_lets_a_partial_write_in_flight_come_back(
    store: Store, anthropic: FakeAnthropic
) -> None:
    # The stream ends while the first partial update is still on its way; the shutdown
    # arrives then. Cutting that update off would leave a message the bot does not know of.
    answer = "Short answer, streamed at once."  # three deltas, 0.12 s apart: three reads
    r, surface, task = await slow_write_reply(store, anthropic, answer, 0.5, until="update",
                                              delta_interval=0.12)
    await asyncio.sleep(0.35)  # the stream is over; the painter's write is still out
    await r.aclose()
    assert task.done()
    assert surface.lost == 0  # the update sent before the shutdown came back
    assert len(surface.updates) == 1 and surface.final.text.endswith(NOTE_INTERRUPTED)
    await r.llm.aclose()  # type: ignore[union-attr]


async def test_a_second_cancel_stops_the_final_write_before_the_note(
    store: Store, anthropic: FakeAnthropic
) -> None:
    # Past the grace (here: a second cancel) the final write is stopped and waited for, so
    # the interrupted note never races it on the same message.
    r, surface, task = await slow_write_reply(store, anthropic, "Complete answer.", 1.0,
                                              until="finish")
    task.cancel()
    await asyncio.sleep(0.1)
    task.cancel()  # e.g. asyncio.run cancelling what is left
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert surface.sent == ["finish", "finish"] and surface.lost == 1
    assert surface.most_in_flight == 1  # the note started only after the cut write ended
    assert surface.final.text.endswith(NOTE_INTERRUPTED)
    await r.llm.aclose()  # type: ignore[union-attr]


class SlowKnowledge(Knowledge):
    """A knowledge base whose search takes a while, noting what the asker saw meanwhile."""

    def __init__(self, store: Store, surface: RecordingSurface) -> None:
        super().__init__(store.sqlite)
        self.surface = surface
        self.seen_during_search: list[str] = []

    async def rank(self, question: str, limit: int = 4, earlier: Sequence[str] = ()) -> Search:
        self.seen_during_search = list(self.surface.kinds)
        await asyncio.sleep(0.2)
        return await super().rank(question, limit, earlier)


async def test_the_first_sign_goes_up_before_the_docs_are_searched(
    store: Store, tmp_path: Path
) -> None:
    async with FakeAnthropic(delta_interval=0.01, default_words=10) as fake:
        r = responder(store, fake)
        surface = RecordingSurface()
        r.knowledge = SlowKnowledge(store, surface)
        await answer(r, ask("How do I rotate my API key?", "E1"), surface)
        assert r.knowledge.seen_during_search == ["start"]
        assert surface.kinds[-1] == "finish"
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_a_follow_up_hands_the_thread_s_earlier_questions_to_search(
    store: Store, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "reports.md").write_text("# Reports\n\n## Exporting a report\n\nPress Export and "
                                     "pick CSV or PDF.\n")
    async with FakeAnthropic(delta_interval=0.01, default_words=10) as fake:
        r = responder(store, fake)
        await r.knowledge.index_folder(docs)
        await answer(r, ask("How do I export a report?", "E1"), RecordingSurface())
        await answer(r, ask("and what about the other format?", "E2"), RecordingSurface())
        assert "Press Export and pick CSV or PDF." in fake.requests[-1].documentation()
        await r.llm.aclose()  # type: ignore[union-attr]


async def test_unfinished_replies_that_cannot_be_read_wait_for_the_next_start(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.database import StorageUnavailable

    async def unreadable(platform: Platform) -> list[object]:
        raise StorageUnavailable("SUPPORTBOT_DB=x: a statement waited over 10 s")

    r = responder(store, None)
    store.journal.unfinished = unreadable  # type: ignore[assignment, method-assign]
    assert await r.resume(Platform.SLACK, lambda place, pages: None) == []  # type: ignore[arg-type, return-value]
    assert "could not read the replies a stop left unfinished" in caplog.text
