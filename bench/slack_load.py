"""Slack load benchmark: 50 conversations streaming ~600-token answers at once in one workspace.

The fake Slack enforces the real limits (chat.update 50 per 60 s per workspace, chat.postMessage
1/s per channel with a burst of 3; no time scaling). Two workspaces run side by side in the same
run: ours (the real adapter: Socket Mode, Bolt, responder, SlackSurface) and a naive bot that
edits every 20 deltas (a refused partial edit is dropped) and retries its placeholder and final
edit up to 3 times after Retry-After; a run stops waiting after 100 s. Both get the same
answers from one fake Anthropic (~90 tokens/s unloaded). The fakes run on their own event-loop
thread and the naive bot on another, so neither bot waits on the other's loop. Half the
conversations are DMs, half mentions in five channels (five each).

Figures (median of the runs): 429s received (all methods), replies whose final text differs
from the model's, time to first visible sign p50/p95 (event → placeholder or reaction),
staleness p95 (seconds from the bot receiving a delta to Slack showing it; never shown counts
until the run ended), final text shown after the model finished p50/p95, chat.update calls per
reply (attempted and accepted).

Run: python -m bench.slack_load [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import math
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bench.common import median, percentile, write_result
from bot.adapters.slack import app as slack
from bot.adapters.slack.surface import retry_after
from bot.config import load_settings
from bot.conversation import Platform, Prompt, StreamEnd, Turn
from bot.llm import AnthropicClient, ModelOptions
from bot.logs import configure_logging
from bot.mrkdwn import to_mrkdwn
from bot.prompts import PromptBook
from bot.runtime import open_runtime
from bot.streaming import TYPING_MARKER, split_pages, utf8_size
from bot.transport import AiohttpTransport
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack

T = TypeVar("T")
CONVERSATIONS = 50
WORDS = 450  # about 600 output tokens
DELTA_INTERVAL = 0.022  # ~2 words a delta → ~90 tokens/s, about 5 s per answer
FIRST_TOKEN_DELAY = 0.3
NAIVE_EVERY = 20
NAIVE_ATTEMPTS = 3
DEADLINE = 100.0  # a run stops waiting for replies after this long
MODEL = ModelOptions("claude-haiku-5-5", None, 0.3, "low")
PLACEHOLDER_START = "_Looking into it"  # both bots' first sign; it shows none of the answer


@dataclass(frozen=True)
class Convo:
    """One conversation: where it is asked, and the question (unique, so answers are too)."""

    n: int
    channel: str
    thread: str
    question: str
    dm: bool

    def event(self) -> dict[str, Any]:
        user = f"U{self.n:03d}"
        if self.dm:
            return ev.message(self.question, channel=self.channel, ts=self.thread, user=user)
        text = f"<@UBOT> {self.question}"
        return ev.app_mention(text, channel=self.channel, ts=self.thread, user=user)


def conversations() -> list[Convo]:
    """Half DMs, half mentions spread over five channels (five per channel), as people ask."""
    found = []
    for n in range(CONVERSATIONS):
        dm = n % 2 == 0
        channel = f"D{n:03d}" if dm else f"C{n % 5}"
        question = f"Question {n} how do I rotate the key for project {n}"
        found.append(Convo(n, channel, ev.next_ts(), question, dm))
    return found


@dataclass
class Streams:
    """When the bot received each delta: (time, length of the answer so far), per question."""

    deltas: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)

    def add(self, question: str, delta: str) -> None:
        text = self.texts.get(question, "") + delta
        self.texts[question] = text
        self.deltas.setdefault(question, []).append((time.monotonic(), len(text)))


class TimedClient(AnthropicClient):
    """The real model client, noting when each delta reaches the bot (for staleness)."""

    def __init__(self, base_url: str, streams: Streams, **kw: Any) -> None:
        super().__init__("test-key", base_url, MODEL, **kw)
        self.streams = streams

    async def stream(self, prompt: Prompt) -> AsyncGenerator[str | StreamEnd, None]:
        question = prompt.turns[-1].text
        async for item in super().stream(prompt):
            if isinstance(item, str):
                self.streams.add(question, item)
            yield item


class LoopThread:
    """An event loop on its own thread; coroutines are handed to it and awaited from ours."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def final_pages(answer: str) -> list[str]:
    """What Slack must show at the end: the answer in mrkdwn, in 4,000-byte pages."""
    shown = to_mrkdwn(answer)
    return [p.text for p in split_pages(shown, 4000, utf8_size(TYPING_MARKER), utf8_size)]


# ----- the naive bot ---------------------------------------------------------------------------


class NaiveBot:
    """Edits every 20 deltas; on 429 sleeps Retry-After and tries again, up to 3 times."""

    def __init__(self, fake: FakeSlack, anthropic_url: str, streams: Streams) -> None:
        self.client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        # Read as the events come (no bites under load), so "every 20 deltas" is every 20
        # of the model's deltas, as a naive bot reading its stream would see them.
        self.llm = TimedClient(anthropic_url, streams,
                               transport=AiohttpTransport(stream_reads=math.inf))
        self.streams = streams
        self.system = PromptBook.load().system_for(Platform.SLACK)

    async def answer(self, convos: list[Convo]) -> None:
        tasks = [asyncio.create_task(self.reply(c)) for c in convos]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), DEADLINE)
        except TimeoutError:
            pass  # replies still retrying count as not finished
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.llm.aclose()

    async def reply(self, convo: Convo) -> None:
        self.streams.started[convo.question] = time.monotonic()
        posted = await self.call("chat_postMessage", channel=convo.channel,
                                 thread_ts=convo.thread, text="_Looking into it…_")
        ts = str(posted["ts"]) if posted else ""
        turn = Turn("user", convo.question, 20)
        text, count = "", 0
        async for item in self.llm.stream(Prompt(self.system, "", (turn,), 1024)):
            if isinstance(item, str):
                text, count = text + item, count + 1
                if ts and count % NAIVE_EVERY == 0:
                    await self.call("chat_update", 1, channel=convo.channel, ts=ts,
                                    text=to_mrkdwn(text) + TYPING_MARKER)
        if ts:
            await self.call("chat_update", channel=convo.channel, ts=ts,
                            text=final_pages(text)[0])

    async def call(self, method: str, attempts: int = NAIVE_ATTEMPTS, **params: Any) -> Any:
        """The call, retried after Retry-After while attempts remain; None if it never went."""
        for attempt in range(attempts):
            try:
                return await getattr(self.client, method)(**params)
            except SlackApiError as error:
                wait = retry_after(error)
                if wait is None or attempt == attempts - 1:
                    return None
                await asyncio.sleep(wait)
        return None


# ----- one run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What one fake workspace saw, copied on its own loop so nothing changes while we read."""

    calls: list[tuple[str, float, int, dict[str, Any]]]
    deliveries: dict[str, float]  # event ts → when the event was sent to the bot
    threads: dict[str, list[str]]  # thread ts → the bot's messages' texts, in order
    owners: dict[str, str]  # message ts → its thread ts
    rate_limited: int


async def seen(fake: FakeSlack, convos: list[Convo]) -> Seen:
    calls = [(c.method, c.time, c.status, dict(c.params)) for c in fake.calls]
    deliveries = {}
    # Events were pushed in order, one per conversation; later deliveries are redeliveries.
    for convo, delivery in zip(convos, fake.deliveries[: len(convos)], strict=False):
        deliveries[convo.thread] = delivery.sent_at
    threads, owners = {}, {}
    for convo in convos:
        mine = [m for m in fake.messages(convo.channel, convo.thread) if m.user == fake.bot_user_id]
        threads[convo.thread] = [m.text for m in mine]
        owners.update({m.ts: convo.thread for m in mine})
    return Seen(calls, deliveries, threads, owners, fake.rate_limited)


def all_final(fake: FakeSlack, convos: list[Convo]) -> bool:
    for convo in convos:
        mine = [m for m in fake.messages(convo.channel, convo.thread) if m.user == fake.bot_user_id]
        if not mine or any(TYPING_MARKER in m.text for m in mine):
            return False
    return True


async def wait_final(fake: FakeSlack, convos: list[Convo]) -> None:
    with contextlib.suppress(TimeoutError):
        await fake.wait_for(lambda: all_final(fake, convos), DEADLINE)


async def run_ours(fakes: LoopThread, fake: FakeSlack, anthropic_url: str, convos: list[Convo],
                   streams: Streams, folder: Path) -> None:
    """The real adapter against its fake workspace, from connection to the last final text."""
    settings = load_settings({
        "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": anthropic_url,
        "SUPPORTBOT_FALLBACK_MODEL": "", "SUPPORTBOT_DB": str(folder / "ours.db"),
        "SLACK_BOT_TOKEN": fake.bot_token, "SLACK_APP_TOKEN": fake.app_token,
        "SLACK_API_URL": fake.api_url, "LOG_LEVEL": "WARNING",
    }, dotenv_path=None)
    stop = asyncio.Event()
    async with open_runtime(settings) as runtime:
        timed = TimedClient(anthropic_url, streams)
        runtime.responder.llm = timed  # same client, with delta times noted
        serving = asyncio.create_task(slack.serve(runtime.ports(Platform.SLACK), stop))
        try:
            await fakes.run(fake.wait_connected(20))
            for convo in convos:
                await fakes.run(fake.push_event(convo.event()))
            await fakes.run(wait_final(fake, convos))
        finally:
            stop.set()
            await serving
            await timed.aclose()


async def one_run(run: int) -> dict[str, dict[str, float]]:
    fakes, naive_loop = LoopThread("fakes"), LoopThread("naive")
    convos_ours, convos_naive = conversations(), conversations()
    ours_streams, naive_streams = Streams(), Streams()

    async def start_fakes() -> tuple[FakeAnthropic, FakeSlack, FakeSlack]:
        anthropic = FakeAnthropic(default_words=WORDS, delta_interval=DELTA_INTERVAL,
                                  first_token_delay=FIRST_TOKEN_DELAY)
        await anthropic.start()
        ours, naive = FakeSlack(), FakeSlack()
        await ours.start()
        await naive.start()
        return anthropic, ours, naive

    anthropic, ours, naive = await fakes.run(start_fakes())
    try:
        with tempfile.TemporaryDirectory() as folder:
            naive_bot = NaiveBot(naive, anthropic.base_url, naive_streams)
            await asyncio.gather(
                run_ours(fakes, ours, anthropic.base_url, convos_ours, ours_streams, Path(folder)),
                naive_loop.run(naive_bot.answer(convos_naive)),
            )
        ended = time.monotonic()
        seen_ours = await fakes.run(seen(ours, convos_ours))
        seen_naive = await fakes.run(seen(naive, convos_naive))
    finally:
        async def stop_fakes() -> None:
            for server in (ours, naive):
                await server.stop()
            await anthropic.stop()

        await fakes.run(stop_fakes())
        fakes.close()
        naive_loop.close()
    return {
        "ours": figures(seen_ours, convos_ours, ours_streams, None, ended),
        "naive": figures(seen_naive, convos_naive, naive_streams, naive_streams.started, ended),
    }


# ----- figures ---------------------------------------------------------------------------------


def figures(seen: Seen, convos: list[Convo], streams: Streams,
            started: dict[str, float] | None, ended: float) -> dict[str, float]:
    """The reported figures for one policy in one run."""
    firsts, stale, lag, differ = [], [], [], 0
    for convo in convos:
        answer = streams.texts.get(convo.question, "")
        if not answer or seen.threads[convo.thread] != final_pages(answer):
            differ += 1
        begin = (started or {}).get(convo.question, seen.deliveries.get(convo.thread, 0.0))
        shown = visible(seen, convo.thread)
        first = first_sign(seen, convo.thread)
        if first is not None:
            firsts.append(first - begin)
        deltas = streams.deltas.get(convo.question, [])
        stale.extend(staleness(shown, deltas, ended))
        if deltas:
            lag.append(staleness(shown, deltas[-1:], ended)[0])
    updates = [c for c in seen.calls if c[0] == "chat.update"]
    found = {
        "rate_limited_429": seen.rate_limited,
        "replies_final_text_differs": differ,
        "first_sign_p50_s": percentile(firsts, 50),
        "first_sign_p95_s": percentile(firsts, 95),
        "staleness_p95_s": percentile(stale, 95),
        "final_after_stream_end_p50_s": percentile(lag, 50),
        "final_after_stream_end_p95_s": percentile(lag, 95),
        "chat_update_calls_per_reply": len(updates) / len(convos),
        "chat_update_ok_per_reply": sum(c[2] == 200 for c in updates) / len(convos),
    }
    return {name: round(value, 3) for name, value in found.items()}


def first_sign(seen: Seen, thread: str) -> float | None:
    """When the asker first saw something: the placeholder in the thread, or a reaction."""
    for method, at, status, params in seen.calls:
        posted = method == "chat.postMessage" and params.get("thread_ts") == thread
        reacted = method == "reactions.add" and params.get("timestamp") == thread
        if status == 200 and (posted or reacted):
            return at
    return None


def visible(seen: Seen, thread: str) -> list[tuple[float, int]]:
    """(time, characters of the answer shown) after each successful post or edit in a thread."""
    out = []
    for method, at, status, params in seen.calls:
        if status != 200 or method not in ("chat.postMessage", "chat.update"):
            continue
        owner = params.get("thread_ts") if method == "chat.postMessage" else None
        if (owner or seen.owners.get(str(params.get("ts")))) != thread:
            continue
        text = str(params.get("text", ""))
        placeholder = text.startswith(PLACEHOLDER_START)
        out.append((at, 0 if placeholder else len(text.removesuffix(TYPING_MARKER))))
    return out


def staleness(shown: list[tuple[float, int]], deltas: list[tuple[float, int]],
              ended: float) -> list[float]:
    """For each delta: seconds until Slack showed it (never shown: until the run ended)."""
    out = []
    for received, length in deltas:
        when = next((at for at, chars in shown if chars >= length and at >= received), ended)
        out.append(when - received)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure_logging("WARNING", [])
    runs = []
    for run in range(args.runs):
        started = time.monotonic()
        runs.append(asyncio.run(one_run(run)))
        print(f"run {run + 1}/{args.runs}: {time.monotonic() - started:.0f} s", flush=True)
    report(runs)


def report(runs: list[dict[str, dict[str, float]]]) -> None:
    names = list(runs[0]["ours"])
    table = {policy: {n: round(median([r[policy][n] for r in runs]), 3) for n in names}
             for policy in ("ours", "naive")}
    print(f"\n{CONVERSATIONS} conversations x ~600 tokens, one workspace, chat.update 50/60 s; "
          f"median of {len(runs)} runs")
    print(f"  {'figure':<30}{'ours':>12}{'naive (every 20)':>20}")
    for name in names:
        print(f"  {name:<30}{table['ours'][name]:>12}{table['naive'][name]:>20}")
    path = write_result("slack_load", {
        "conversations": CONVERSATIONS, "words_per_answer": WORDS,
        "delta_interval_s": DELTA_INTERVAL, "chat_update_budget": "50 per 60 s (fake Slack)",
        "runs": len(runs), "median": table, "per_run": runs,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
