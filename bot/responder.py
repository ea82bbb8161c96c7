"""The responder: the one place that joins the store, the docs, the model and a Surface.

Replies within a conversation run one at a time in arrival order; different conversations
run concurrently up to a global cap. Whatever fails, the user's message ends in an honest
final text, never a stuck typing marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from bot.admission import Admission
from bot.citations import Grounding
from bot.conversation import (
    Answer,
    ConversationKey,
    Incoming,
    Passage,
    Platform,
    Prompt,
    RecordedQuestion,
    StreamEnd,
    Usage,
)
from bot.database import StorageUnavailable
from bot.dont_know import MIN_WORDS, honest_reply, marked
from bot.errors import LLMError, PromptTooLongError, ReplyTimeoutError, StreamInterruptedError
from bot.formatting import doc_urls, shown_safely, visible_text
from bot.handoff import ALREADY_HANDLED
from bot.handovers import Handovers
from bot.instance_rows import InstanceRows
from bot.journal import JournalingSurface, closing_pages
from bot.journal_rows import Unfinished
from bot.knowledge import Knowledge
from bot.metrics import Metrics
from bot.model_client import ModelClient
from bot.models import ModelProfile, cost_usd, estimate_tokens, profile
from bot.notices import (
    EMPTY_QUESTION,
    NO_KEY,
    NO_TEXT,
    NO_TEXT_CUT,
    NOTE_CUT,
    NOTE_INTERRUPTED,
    NOTE_LONG_QUESTION,
    NOTE_RESTARTED,
    OVER_BUDGET,
    REFUSAL,
    STORAGE_TROUBLE,
    failure_message,
    is_social,
    kb_only_answer,
    please_wait,
    unexpected_failure,
)
from bot.painting import (
    FINISH_TIMEOUT,
    NOTE_TIMEOUT,
    finish_with,
    painting,
    quietly,
    replace_with,
    settle,
)
from bot.policy import ReplyPolicy
from bot.prompts import PromptBook, build_prompt
from bot.retrieval import terms
from bot.store import Store
from bot.streaming import LiveReply
from bot.surface import Journaled, Placeholder, Restore, Snapshot, Surface
from bot.trimming import history_budget, history_window
from bot.turnstile import MAX_QUESTION_CHARS, Turnstile, is_cut, question_text

log = logging.getLogger(__name__)

ABANDON_AFTER = 24 * 3600.0  # an unfinished reply no start could close for this long is dropped


class Responder:
    """Turns each Incoming into a streamed, recorded reply on its Surface."""

    def __init__(
        self,
        policy: ReplyPolicy,
        store: Store,
        knowledge: Knowledge,
        llm: ModelClient | None,
        book: PromptBook,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.handovers = Handovers(store, policy.contact)
        self.admission = Admission(policy, store)
        self.knowledge = knowledge
        self.llm = llm
        self.book = book
        self.clock = clock
        self._slots = asyncio.Semaphore(policy.max_concurrent)
        self._tails: dict[str, asyncio.Future[None]] = {}
        # Insertion-ordered, so a shutdown cancels replies (and posts their notes) in the
        # order the questions came.
        self._tasks: dict[asyncio.Task[None], None] = {}
        self._closing = False
        self.metrics = metrics or Metrics("supportbot")  # the runtime's: /metrics serves it
        # Set when several instances may share the journal: who is dead decides what is
        # taken over. None: every unfinished reply of the platform is this process's.
        self.instances: InstanceRows | None = None
        self.in_line_patience = IN_LINE_PATIENCE  # the runtime adds the lease to it

    @property
    def model(self) -> ModelProfile:
        return profile(self.policy.model)

    async def submit(self, incoming: Incoming, surface: Surface) -> asyncio.Task[None] | None:
        """Record the question and start its reply; None when seen before or shutting down.
        When the database cannot take it (locked by another process, disk full), the asker
        is told so at once: nothing was recorded, so nothing is half-written."""
        try:
            return await self._submit(incoming, surface)
        except StorageUnavailable as error:
            log.error("could not take a question in %s: %s", incoming.key.id, error)
            return None if self._closing else self._say_once(surface, STORAGE_TROUBLE)

    async def _submit(self, incoming: Incoming, surface: Surface) -> asyncio.Task[None] | None:
        text = question_text(incoming)
        tokens = estimate_tokens(text, self.model, len(incoming.images))
        # Silence is an answer only where nothing is on screen yet.
        must_reply = isinstance(surface, Placeholder) and surface.awaits_reply()
        refusal = await self.admission.refusal(incoming, must_reply)
        if refusal is not None:
            return self._say_once(surface, refusal) if refusal and not self._closing else None
        if await self.handovers.kept_quiet(replace(incoming, text=text), tokens):
            # A person handles this thread now: kept, not answered.
            return None
        place = surface.where() if isinstance(surface, Journaled) else None
        if self._closing and place is None:
            log.warning("shutting down; a question arrived that cannot be kept (%s)",
                        incoming.event_id)
            return None
        question = await self.store.record_question(
            replace(incoming, text=text), tokens, place, self.policy.rate_for(incoming.key.platform)
        )
        if question is None:
            log.info("event %s already handled; not answering twice", incoming.event_id)
            return None
        if self._closing:  # journaled above: the next start answers it
            log.info("shutting down; %s is kept for the next start", incoming.event_id)
            return None
        if question.wait_seconds and not must_reply and not await self.store.first_time(
                f"told-wait:{incoming.key.platform.value}:{incoming.author_id}:"
                f"{question.ready_at:.0f}"):
            # Past the cap and already told when to come back: a flood of questions gets
            # one "please wait", not one each. Kept, not answered.
            log.info("%s is past the hourly cap again; already told to wait", incoming.event_id)
            if place is not None:
                await self.store.journal.close(question)
            return None
        return self._start(incoming, text, question, surface)

    def _say_once(self, surface: Surface, text: str) -> asyncio.Task[None]:
        """Where the bot does not answer: say where it does (channel links are the
        platform's own syntax, <#C…>, so this text is not rendered)."""

        async def say() -> None:
            await quietly(surface.start(), "show the first sign")
            await settle(surface, Snapshot((text,), text, True))

        return self._own(say())

    async def resume(self, platform: Platform, restore: Restore) -> list[asyncio.Task[None]]:
        """Finish the replies of `platform` that a stop left unfinished; their tasks.

        A question younger than resume_minutes is answered again into the same messages;
        an older one gets an honest note in place of its typing marker.
        """
        tasks: list[asyncio.Task[None]] = []
        try:
            unfinished = await self._claim(platform)
        except StorageUnavailable as error:  # they stay in the journal for the next start
            log.error("could not read the replies a stop left unfinished: %s", error)
            return tasks
        for entry in unfinished:
            age = time.time() - entry.asked_at
            if age > ABANDON_AFTER:  # unreachable for a day: nobody is waiting any more
                with contextlib.suppress(StorageUnavailable):  # closed at a later start
                    await self.store.journal.close(entry.question)
                continue
            try:
                surface = await restore(entry.place, entry.pages)
            except Exception as error:  # one unreachable reply must not stop the others
                log.warning("could not reach an unfinished reply (%s); the next start tries "
                            "again", type(error).__name__)
                surface = None
            if surface is None or self._closing:
                # Not ours to finish (another workspace), unreachable, or shutting down: it
                # goes back to where it was, for another instance or the next start.
                await self._give_back(entry)
                continue
            if age < self.policy.resume_minutes * 60:
                log.info("answering again a question a stop cut off (%s)", entry.incoming.key.id)
                task = self._start(entry.incoming, entry.incoming.text, entry.question, surface)
            else:
                task = self._own(self._close_old(entry, surface))
            tasks.append(task)
        return tasks

    async def _wait_in_line(self, key: ConversationKey, question: RecordedQuestion) -> None:
        """Several instances: wait until the conversation's earlier replies, wherever they
        run, are finished (their journal rows are the line, in the order the store took the
        questions), so each answer sees the one before in its history. Bounded: a line that
        does not move within IN_LINE_PATIENCE is left, and said."""
        patience = self.in_line_patience
        deadline = self.clock() + patience
        for _ in range(int(patience / IN_LINE_POLL) + 1):
            try:
                if await self.store.journal.first_in_line(key.id, question.message_id):
                    return
            except StorageUnavailable:
                return  # the reply itself then meets the database's trouble, and says so
            if self.clock() >= deadline:
                break
            await asyncio.sleep(IN_LINE_POLL)
        log.warning("an earlier reply in %s did not finish within %.0f s; answering anyway",
                    key.id, patience)

    async def _give_back(self, entry: Unfinished) -> None:
        if self.instances is not None and entry.owner != self.store.journal.owner:
            with contextlib.suppress(StorageUnavailable):  # then it waits for this one's end
                await self.store.journal.release(entry.question.message_id, entry.owner)

    async def _claim(self, platform: Platform) -> list[Unfinished]:
        """The unfinished replies this process is now to finish: all of them when it is
        alone; else those whose instance is dead, each taken by exactly one instance."""
        if self.instances is None:
            return await self.store.journal.unfinished(platform)
        return await self.store.journal.claim(platform, await self.instances.dead_check())

    async def _close_old(self, entry: Unfinished, surface: Surface) -> None:
        closing = closing_pages(entry.pages, surface, NOTE_RESTARTED, NOTE_INTERRUPTED)
        if await quietly(surface.finish(closing), "close an interrupted reply"):
            await self.store.journal.close(entry.question)

    def _start(
        self, incoming: Incoming, text: str, question: RecordedQuestion, surface: Surface
    ) -> asyncio.Task[None]:
        if isinstance(surface, Journaled):
            surface = JournalingSurface(surface, self.store.journal, question)
        # A reply taken over joins this process's line like any other. A follow-up that came
        # here while it was still another instance's stops waiting for it once it is ours
        # (own rows never hold the line), so the two never wait for each other.
        before, turn = self._take_turn(incoming.key)
        return self._own(self._reply(incoming, text, question, surface, before, turn))

    def _own(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks[task] = None
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def aclose(self, timeout: float = FINISH_TIMEOUT) -> None:
        """Finish replies in flight with an 'interrupted' note, then return (idempotent).

        Each reply is cancelled once, so its note is never cut short by a second cancel.
        """
        if not self._closing:
            self._closing = True
            for task in list(self._tasks):
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
        live.reply_id = str(question.message_id)  # its buttons: feedback, talk to a person
        answer = _failed_answer(self.policy.model)
        first_sign_ms: float | None = None
        self.metrics.reply_started(incoming.key.platform.value)
        try:
            if await quietly(surface.start(), "show the first sign"):
                first_sign_ms = (self.clock() - started) * 1000
            if before is not None:
                await asyncio.shield(before)  # the previous reply in this conversation
            if self.instances is not None and incoming.key.platform is not Platform.CONSOLE:
                await self._wait_in_line(incoming.key, question)  # ... on other instances
            async with self._slots:
                answer = await self._answer(incoming, text, question, surface, live, started)
        except asyncio.CancelledError:
            # The reply stays in the journal: the next start finishes it, note or not.
            answer = replace(answer, text=live.text, outcome="interrupted")
            marked = surface.finish(live.final(NOTE_INTERRUPTED if live.text else
                                               NOTE_INTERRUPTED.lstrip()))
            await quietly(marked, "mark interrupted", NOTE_TIMEOUT)
            raise
        except Exception:
            log.exception("reply failed in %s", incoming.key.id)
            note = "\n\n" if live.text else ""
            await quietly(surface.finish(live.final(note + unexpected_failure())), "finish")
        finally:
            try:
                total_ms = (self.clock() - started) * 1000
                count_answer(self.metrics, incoming.key.platform.value, answer, total_ms)
                tokens = estimate_tokens(answer.text, self.model)
                await asyncio.shield(self.store.record_answer(
                    incoming.key, question, answer, tokens, total_ms, first_sign_ms))
            except StorageUnavailable as error:
                # The reader has the answer; its journal entry stays, so the next start
                # answers it again into the same message and stores it then.
                log.error("could not store the answer in %s: %s", incoming.key.id, error)
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
        if not visible_text(incoming.text).strip() and not incoming.images:
            return await finish_with(surface, live, EMPTY_QUESTION, self.policy.model)
        if await self.store.handoffs.open_for(incoming.key) is not None:
            # Handed to a person while this question waited for the one before it.
            return await replace_with(surface, Answer(ALREADY_HANDLED, "", "end_turn", Usage(),
                                                      None, None, "handed_over"))
        if question.wait_seconds:  # the buttons stay: a person can still be asked for
            return await finish_with(surface, live, please_wait(question.wait_seconds), "",
                                     "rate_limited")
        # A follow-up ("and in async?") searches with the thread's earlier questions too.
        earlier = await self.store.earlier_questions(incoming.key, question)
        found = await self.knowledge.rank(text, self.policy.passages, earlier)
        passages = found.passages if found.confident else []
        words = terms(text)
        silent = not found.confident and len(words) >= MIN_WORDS  # the docs hold too little
        if silent:
            await self.store.record_gap(incoming.key, text, "gate", found.confidence,
                                        found.passages, incoming.author_id)
        over_budget = self.llm is not None and await self.admission.over_budget()
        if self.llm is None or over_budget:
            why, outcome = (OVER_BUDGET, "over_budget") if over_budget else (NO_KEY, "kb_only")
            if not passages and not is_social(words):
                outcome = "not_in_docs"  # nothing from the docs was shown: not an answer
            offline = kb_only_answer(passages, words, why, indexed=found.indexed,
                                     closest=found.passages)
            return await finish_with(surface, live, offline, "", outcome)
        offer = self.handovers.offer(incoming.key.platform)
        # After "I couldn't find this", the answer may be "yes, a person please" in any
        # language: the model (given no passages) recognises that, or says not-in-docs again.
        replying_to_offer = silent and await self.store.handoffs.previous_outcome(
            incoming.key, question.position) == "not_in_docs"
        if silent and not replying_to_offer:  # the model would find no passages to answer
            return await finish_with(surface, live, honest_reply(found.passages, offer), "",
                                      "not_in_docs")
        grounding = Grounding(passages, words, incoming.key.platform, offer=offer,
                              question_cut=is_cut(incoming))
        trusted = doc_urls([*(p.url for p in passages if p.url), *(p.text for p in passages)])
        live.guard = functools.partial(shown_safely, trusted=trusted)
        budget = self._budget(incoming, passages)
        for attempt in range(2):  # one retry with a tighter window on "prompt is too long"
            turns = await self.store.history(incoming.key, question, budget)
            if turns:
                # The question as the model should see it (a resumed one says its image is
                # gone), with this reply's images.
                turns[-1] = replace(turns[-1], text=text, images=incoming.images)
            window = history_window(turns, budget, self.model)
            prompt = build_prompt(
                self.book, incoming.key.platform, passages, window, self.policy.max_tokens
            )
            try:
                answer = await self._stream(self.llm, prompt, surface, live, started, grounding)
                if answer.outcome == "wants_person":
                    told = await self.handovers.hand_over(
                        incoming.key, incoming.author_id, incoming.author_name,
                        "dont_know" if replying_to_offer else "words", request=text)
                    return await replace_with(surface, replace(answer, text=told,
                                                                outcome="handed_over"))
                if answer.outcome == "not_in_docs":
                    await self.store.record_gap(incoming.key, text, "model", found.confidence,
                                                passages, incoming.author_id)
                return answer
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
        llm: ModelClient,
        prompt: Prompt,
        surface: Surface,
        live: LiveReply,
        started: float,
        grounding: Grounding,
    ) -> Answer:
        end: StreamEnd | None = None
        first_text_ms: float | None = None
        loop = asyncio.get_running_loop()
        slack = min(1.0, self.policy.stall_timeout / 20)  # how late a stall may be noticed
        try:
            async with painting(live, surface, self.clock) as wake, contextlib.aclosing(
                llm.stream(prompt)
            ) as stream:
                try:
                    # One deadline until the first text, whatever retries and fallback take;
                    # then each silence of the stream is bounded on its own.
                    async with asyncio.timeout(self.policy.reply_timeout) as limit:
                        async for item in stream:
                            if isinstance(item, StreamEnd):
                                end = item
                                break
                            if first_text_ms is None:
                                first_text_ms = (self.clock() - started) * 1000
                            quiet_until = loop.time() + self.policy.stall_timeout
                            when = limit.when()
                            # Moved now and then, not per delta: each move is a new timer.
                            if when is None or abs(quiet_until - when) > slack:
                                limit.reschedule(quiet_until)
                            shown = grounding.watch.feed(item)  # the marker is never shown
                            if shown:
                                live.feed(shown)
                                wake.set()
                except TimeoutError:
                    raise _silence(live.text, self.policy) from None
        except LLMError as error:
            log.warning("model API error: %s %s (request %s)", error.status, error.error_type,
                        error.request_id or "-")
            if isinstance(error, PromptTooLongError) and not live.text:
                raise
            note = ("\n\n" if live.text else "") + failure_message(error)
            if grounding.passages and not live.text:  # the closest sections still help
                note += "\n\n" + grounding.fallback()
            await settle(surface, live.final(note))
            return Answer(live.text, self.policy.model, "error", Usage(), None, first_text_ms,
                          "failed")
        assert end is not None, "stream ended without StreamEnd"
        live.feed(grounding.watch.flush())  # held back, and not the marker after all
        return await self._conclude(end, surface, live, first_text_ms, grounding)

    async def _conclude(
        self, end: StreamEnd, surface: Surface, live: LiveReply, first_text_ms: float | None,
        grounding: Grounding,
    ) -> Answer:
        cost = cost_usd(end.usage, profile(end.model), end.price_factor)
        asks = marked(grounding.watch, live.text)
        declined = asks == "declined"
        if asks == "wants_person":
            return Answer("", end.model, end.stop_reason, end.usage, cost, first_text_ms,
                          "wants_person")
        if end.stop_reason == "refusal" or declined:
            text = honest_reply(grounding.passages, grounding.offer) if declined else REFUSAL
            return await replace_with(surface, Answer(
                text, end.model, end.stop_reason, end.usage, cost, first_text_ms,
                "not_in_docs" if declined else "refused"), live.reply_id)
        cut = end.stop_reason in ("max_tokens", "model_context_window_exceeded")
        text, sources = grounding.closing(live.text)
        long = NOTE_LONG_QUESTION.format(limit=MAX_QUESTION_CHARS) if grounding.question_cut \
            else ""
        note = (NOTE_CUT if cut else "") + long + sources
        if not live.text.strip():
            note = NO_TEXT_CUT if cut else NO_TEXT
        snapshot = live.final(note, text)
        await settle(surface, snapshot)
        return Answer(snapshot.text, end.model, end.stop_reason, end.usage, cost, first_text_ms,
                      sources=grounding.titles())

    def _take_turn(self, key: ConversationKey) -> tuple[asyncio.Future[None] | None, Turnstile]:
        """Queue a reply behind the conversation's previous one, at submit time.

        Taking the place synchronously keeps arrival order even when the replies' first
        platform calls finish in a different order.
        """
        before = self._tails.get(key.id)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key.id] = mine
        return before, Turnstile(key.id, mine, self._tails)


IN_LINE_PATIENCE = 180.0  # a reply fits in this; a takeover adds the lease
IN_LINE_POLL = 0.1


def count_answer(metrics: Metrics, platform: str, answer: Answer, total_ms: float) -> None:
    """A finished reply's figures for /metrics: outcome and time, first text, tokens, cost."""
    metrics.reply_ended(platform, answer.outcome, total_ms / 1000)
    if answer.first_text_ms is not None:
        metrics.first_text(platform, answer.first_text_ms / 1000)
    usage = answer.usage
    for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens),
                        ("cache_write", usage.cache_creation_input_tokens),
                        ("cache_read", usage.cache_read_input_tokens)):
        if count:
            metrics.tokens(answer.model, kind, count)
    if answer.cost_usd:
        metrics.cost(answer.model, answer.cost_usd)


def _failed_answer(model: str) -> Answer:
    return Answer("", model, "error", Usage(), None, None, "failed")


def _silence(shown: str, policy: ReplyPolicy) -> LLMError:
    """The error for a stream that went quiet: before any text, or in the middle."""
    if shown:
        return StreamInterruptedError(
            f"the model API sent nothing for {policy.stall_timeout:g} s mid-answer")
    return ReplyTimeoutError(f"no answer from the model API within {policy.reply_timeout:g} s")
