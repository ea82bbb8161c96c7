"""The responder: the one place that joins the store, the docs, the model and a Surface.

Replies within a conversation run one at a time in arrival order; different conversations
run concurrently up to a global cap. Whatever fails, the user's message ends in an honest
final text, never a stuck typing marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

from bot.adapters.base import Surface
from bot.conversation import Answer, ConversationKey, Incoming, Usage
from bot.knowledge import Knowledge
from bot.llm import (
    AnthropicClient,
    LLMError,
    PromptTooLongError,
    StreamEnd,
)
from bot.models import ModelProfile, cost_usd, estimate_tokens, profile
from bot.notices import (
    EMPTY_QUESTION,
    NO_TEXT,
    NO_TEXT_CUT,
    NOTE_CUT,
    NOTE_INTERRUPTED,
    REFUSAL,
    failure_message,
    kb_only_answer,
    unexpected_failure,
)
from bot.prompts import Passage, Prompt, PromptBook, build_prompt
from bot.store import RecordedQuestion, Store
from bot.streaming import LiveReply, Snapshot
from bot.trimming import history_budget, history_window

log = logging.getLogger(__name__)

FINISH_TIMEOUT = 10.0  # a reply's last word on shutdown, whatever happened before it
WRITE_GRACE = 2.0  # how long a shutdown lets a platform write already sent come back
STOP_WAIT = 1.0  # then how long a cancelled write may take to unwind
NOTE_TIMEOUT = FINISH_TIMEOUT - WRITE_GRACE - STOP_WAIT  # so the whole stays within the first
SKIPPED_RETRY = 0.25  # seconds before offering a skipped partial update again


@dataclass(frozen=True)
class ReplyPolicy:
    """The settings a reply depends on, taken from Settings once."""

    model: str
    max_tokens: int
    history_tokens: int
    max_concurrent: int
    passages: int = 4


class Responder:
    """Turns each Incoming into a streamed, recorded reply on its Surface."""

    def __init__(
        self,
        policy: ReplyPolicy,
        store: Store,
        knowledge: Knowledge,
        llm: AnthropicClient | None,
        book: PromptBook,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.store = store
        self.knowledge = knowledge
        self.llm = llm
        self.book = book
        self.clock = clock
        self._slots = asyncio.Semaphore(policy.max_concurrent)
        self._tails: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def model(self) -> ModelProfile:
        return profile(self.policy.model)

    async def submit(self, incoming: Incoming, surface: Surface) -> asyncio.Task[None] | None:
        """Record the question and start its reply; None when seen before or shutting down."""
        if self._closing:
            log.info("shutting down; not taking %s", incoming.event_id)
            return None
        text = question_text(incoming)
        tokens = estimate_tokens(text, self.model, len(incoming.images))
        question = await self.store.record_question(replace(incoming, text=text), tokens)
        if question is None:
            log.info("event %s already handled; not answering twice", incoming.event_id)
            return None
        before, turn = self._take_turn(incoming.key)
        task = asyncio.create_task(self._reply(incoming, text, question, surface, before, turn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self, timeout: float = FINISH_TIMEOUT) -> None:
        """Finish replies in flight with an 'interrupted' note, then return (idempotent).

        Each reply is cancelled once, so its note is never cut short by a second cancel.
        """
        if not self._closing:
            self._closing = True
            for task in self._tasks:
                task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def _reply(
        self,
        incoming: Incoming,
        text: str,
        question: RecordedQuestion,
        surface: Surface,
        before: asyncio.Future[None] | None,
        turn: Turnstile,
    ) -> None:
        started = self.clock()
        live = LiveReply(surface.limit, surface.render, size=surface.size)
        answer = _failed_answer(self.policy.model)
        try:
            await _quietly(surface.start(), "show the first sign")
            if before is not None:
                await asyncio.shield(before)  # the previous reply in this conversation
            async with self._slots:
                answer = await self._answer(incoming, text, question, surface, live, started)
        except asyncio.CancelledError:
            answer = replace(answer, text=live.text, outcome="interrupted")
            marked = surface.finish(live.final(NOTE_INTERRUPTED))
            await _quietly(marked, "mark interrupted", NOTE_TIMEOUT)
            raise
        except Exception:
            log.exception("reply failed in %s", incoming.key.id)
            note = "\n\n" if live.text else ""
            await _quietly(surface.finish(live.final(note + unexpected_failure())), "finish")
        finally:
            try:
                total_ms = (self.clock() - started) * 1000
                tokens = estimate_tokens(answer.text, self.model)
                await asyncio.shield(
                    self.store.record_answer(incoming.key, question, answer, tokens, total_ms)
                )
            finally:
                turn.leave()  # only now: the next reply must see this answer in its history

    async def _answer(
        self,
        incoming: Incoming,
        text: str,
        question: RecordedQuestion,
        surface: Surface,
        live: LiveReply,
        started: float,
    ) -> Answer:
        if not incoming.text.strip() and not incoming.images:
            return await _finish_with(surface, live, EMPTY_QUESTION, self.policy.model)
        passages = await self.knowledge.search(text, self.policy.passages)
        if self.llm is None:
            return await _finish_with(surface, live, kb_only_answer(passages), "", "kb_only")
        budget = self._budget(incoming, passages)
        for attempt in range(2):  # one retry with a tighter window on "prompt is too long"
            turns = await self.store.history(incoming.key, question, budget)
            if turns:
                turns[-1] = replace(turns[-1], images=incoming.images)
            window = history_window(turns, budget, self.model)
            prompt = build_prompt(
                self.book, incoming.key.platform, passages, window, self.policy.max_tokens
            )
            try:
                return await self._stream(self.llm, prompt, surface, live, started)
            except PromptTooLongError as error:
                if attempt == 1 or live.text:
                    raise
                # Shrink what we sent by the API's own over-run ratio, with a margin.
                used = sum(turn.tokens for turn in window)
                budget = max(256, int(used * error.maximum / max(error.tokens, 1) * 0.8))
                log.warning("prompt too long (%d > %d); retrying with %d history tokens",
                            error.tokens, error.maximum, budget)
        raise AssertionError("unreachable")

    def _budget(self, incoming: Incoming, passages: list[Passage]) -> int:
        system = self.book.system_for(incoming.key.platform)
        context = "".join(p.text for p in passages)
        return history_budget(
            self.model,
            self.policy.history_tokens,
            estimate_tokens(system, self.model),
            estimate_tokens(context, self.model) + 64 * len(passages),
        )

    async def _stream(
        self,
        llm: AnthropicClient,
        prompt: Prompt,
        surface: Surface,
        live: LiveReply,
        started: float,
    ) -> Answer:
        end: StreamEnd | None = None
        first_text_ms: float | None = None
        try:
            async with self._painting(live, surface) as wake, contextlib.aclosing(
                llm.stream(prompt)
            ) as stream:
                async for item in stream:
                    if isinstance(item, StreamEnd):
                        end = item
                        break
                    if first_text_ms is None:
                        first_text_ms = (self.clock() - started) * 1000
                    live.feed(item)
                    wake.set()
        except LLMError as error:
            log.warning("model API error: %s %s (request %s)", error.status, error.error_type,
                        error.request_id or "-")
            if isinstance(error, PromptTooLongError) and not live.text:
                raise
            note = ("\n\n" if live.text else "") + failure_message(error)
            await _settle(surface, live.final(note))
            return Answer(live.text, self.policy.model, "error", Usage(), None, first_text_ms,
                          "failed")
        assert end is not None, "stream ended without StreamEnd"
        return await self._conclude(end, surface, live, first_text_ms)

    async def _conclude(
        self, end: StreamEnd, surface: Surface, live: LiveReply, first_text_ms: float | None
    ) -> Answer:
        cost = cost_usd(end.usage, profile(end.model))
        if end.stop_reason == "refusal":
            refused = LiveReply(surface.limit, surface.render, size=surface.size)
            refused.feed(REFUSAL)
            await _settle(surface, refused.final())
            return Answer(REFUSAL, end.model, end.stop_reason, end.usage, cost, first_text_ms,
                          "refused")
        cut = end.stop_reason in ("max_tokens", "model_context_window_exceeded")
        note = NOTE_CUT if cut else ""
        if not live.text.strip():
            note = NO_TEXT_CUT if cut else NO_TEXT
        snapshot = live.final(note)
        await _settle(surface, snapshot)
        return Answer(snapshot.text, end.model, end.stop_reason, end.usage, cost, first_text_ms)

    @contextlib.asynccontextmanager
    async def _painting(self, live: LiveReply, surface: Surface) -> AsyncIterator[asyncio.Event]:
        """Run the painter beside the stream; on exit let its last update land, then stop it."""
        wake = asyncio.Event()
        stop = asyncio.Event()
        painter = asyncio.create_task(self._paint(live, surface, wake, stop))
        interrupted = False
        try:
            yield wake
        except asyncio.CancelledError:
            interrupted = True
            raise
        finally:
            stop.set()
            wake.set()
            if interrupted:  # shutdown mid-stream: a write already sent gets a grace, no more
                await _let_land(painter)
            else:
                try:
                    await asyncio.shield(painter)  # its last update lands before the final
                except asyncio.CancelledError:  # a shutdown now: the same grace
                    await _let_land(painter)
                    raise

    async def _paint(
        self, live: LiveReply, surface: Surface, wake: asyncio.Event, stop: asyncio.Event
    ) -> None:
        """Show the newest text as soon as allowed: first text at once, then once per interval."""
        while not stop.is_set():
            now = self.clock()
            due = live.due_at(surface.interval())
            if due is None or due > now:
                wake.clear()
                timeout = None if due is None else due - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
                continue
            try:
                shown = await surface.update(live.take(now))
                pause = min(surface.interval(), SKIPPED_RETRY)
            except Exception as error:  # a lost partial edit is harmless; the final one retries
                log.warning("partial update failed: %s", type(error).__name__)
                shown, pause = False, SKIPPED_RETRY  # never retry a failure in a tight loop
            if shown is False:  # skipped (no budget) or failed: offer the text again soon
                live.retract()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(pause, 0.01))

    def _take_turn(self, key: ConversationKey) -> tuple[asyncio.Future[None] | None, Turnstile]:
        """Queue a reply behind the conversation's previous one, at submit time.

        Taking the place synchronously keeps arrival order even when the replies' first
        platform calls finish in a different order.
        """
        before = self._tails.get(key.id)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key.id] = mine
        return before, Turnstile(key.id, mine, self._tails)


class Turnstile:
    """A reply's place in its conversation's line; `leave()` lets the next one in."""

    def __init__(
        self, key: str, mine: asyncio.Future[None], tails: dict[str, asyncio.Future[None]]
    ) -> None:
        self.key = key
        self.mine = mine
        self.tails = tails

    def leave(self) -> None:
        if not self.mine.done():
            self.mine.set_result(None)
        if self.tails.get(self.key) is self.mine:
            del self.tails[self.key]


def question_text(incoming: Incoming) -> str:
    """The question as the model sees it: the text plus notes about unreadable attachments."""
    if not incoming.notes:
        return incoming.text
    notes = "\n".join(f"[{note}]" for note in incoming.notes)
    return f"{incoming.text}\n\n{notes}".strip()


def _failed_answer(model: str) -> Answer:
    return Answer("", model, "error", Usage(), None, None, "failed")


async def _finish_with(
    surface: Surface, live: LiveReply, text: str, model: str, outcome: str = "answered"
) -> Answer:
    live.feed(text)
    await _settle(surface, live.final())
    return Answer(text, model, "end_turn", Usage(), None, None, outcome)


async def _settle(surface: Surface, snapshot: Snapshot) -> None:
    """Show the final text; a shutdown arriving meanwhile waits for it instead of cutting it.

    The platform may apply a write the bot already sent even when the bot stops waiting for
    the answer; an "interrupted" note written after it would post a second message, or mark
    a complete answer as cut. So once the final write is on its way the reply completes
    (within WRITE_GRACE), and the shutdown's cancellation is absorbed.
    """
    write = asyncio.ensure_future(surface.finish(snapshot))
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        if not await _let_land(write):
            raise
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        log.info("shutdown waited for a final text already being written")


async def _let_land(write: asyncio.Future[None]) -> bool:
    """After a cancel, give a platform write already under way WRITE_GRACE to finish.

    True when it finished without error. It never outlives this call: past the grace, or on
    a second cancel, it is cancelled and waited for (briefly) before returning.
    """
    try:
        await asyncio.wait({write}, timeout=WRITE_GRACE)
    finally:
        if not write.done():
            write.cancel()
            await asyncio.wait({write}, timeout=STOP_WAIT)
    if write.cancelled():
        return False
    error = write.exception()
    if error is not None:
        log.warning("a write during shutdown failed: %s", type(error).__name__)
    return error is None


async def _quietly(step: Awaitable[None], what: str, timeout: float = FINISH_TIMEOUT) -> None:
    """Await a surface call whose failure must not stop the reply (it is logged)."""
    try:
        await asyncio.wait_for(step, timeout)
    except Exception as error:
        log.warning("could not %s: %s", what, type(error).__name__)
