"""Discord load benchmark, three ways an answer reaches Discord, against the out-of-process
fake Discord (its buckets slide like Discord's: 5 writes per 5 s per channel, creates and
edits counted apart; 5 per 2 s per interaction webhook; 50 requests/s overall).

- /ask: 30 conversations streaming ~600-token answers at once in one channel, each in its
  own interaction webhook, side by side with a naive policy that edits on every 20th delta
  (both on discord.py in this process, same page splitting and rendering).
- mention: 1, then 30 mentions in one channel, all replies sharing that channel's bucket.
- dm: 1, then 30 DMs at once, each in its own DM channel.

Mentions and DMs stream ~600-token answers (> 2,000 characters, so two messages each) at
80 tokens/s after 0.4 s. Figures per run: 429s, replies unfinished at the end (pages not
whole, or a typing marker left), staleness (how long each received delta waits until
Discord shows it), edits per reply and the lag from the model's last token to the full
text on Discord; the reported figure is the median over runs (fewer runs for the ~1.5
minute "30 mentions" case).

Run: python -m bench.discord_load [ask|mention|dm ...]   (default: all three)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import httpx
from discord import app_commands

from bench.common import RESULTS, FakeProcess, median, percentile, write_result
from bot.adapters.discord.client import SupportClient, local_endpoints
from bot.adapters.discord.pacing import WriteBudget
from bot.adapters.discord.pages import Interaction, InteractionPages, PageWriter
from bot.adapters.discord.replies import DiscordTiming, Replies
from bot.adapters.discord.surface import MessageSurface, channel_id, safe_mentions
from bot.config import Settings, load_settings
from bot.conversation import Platform, Prompt, StreamEnd, Turn
from bot.formatting import neutralise_discord
from bot.inbound import Inbound
from bot.knowledge import Knowledge
from bot.llm import AnthropicClient, ModelOptions
from bot.policy import ReplyPolicy
from bot.ports import Ports
from bot.prompts import PromptBook, build_prompt
from bot.responder import Responder
from bot.runtime import Runtime
from bot.store import Store
from bot.streaming import TYPING_MARKER, LiveReply
from bot.transport import AiohttpTransport

REPLIES = 30
RUNS = 5
WORDS = 450  # about 600 output tokens
DELTA_INTERVAL = 0.015  # ~180 tokens/s, a brisk Haiku
CHANNEL_DELTA_INTERVAL = 0.0333  # ~80 tokens/s (deltas of 1-3 words, ~2.7 tokens each)
FIRST_TOKEN_DELAY = 0.4
CHANNEL_CASES = (("mention", 1, 5), ("mention", 30, 3), ("dm", 1, 5), ("dm", 30, 5))
NAIVE_BATCH = 20
TOKEN = "test-discord-token"
FINISH_TIMEOUT = 180.0


class RecordingModel(AnthropicClient):
    """The real model client, noting when each delta arrived from the model (per question).

    A reader task drains the HTTP stream as it arrives, so a consumer that blocks on Discord
    (the naive policy) cannot hide how long text waited: arrival is stamped on receipt.
    """

    def __init__(self, base_url: str, paced: bool = True) -> None:
        # Unpaced, the stream is read as its events come (no bites under load): the naive
        # policy's "every 20 deltas" are then the model's deltas.
        super().__init__("test-key", base_url, ModelOptions("claude-haiku-5-5", None, 0.3, "low"),
                         transport=None if paced else AiohttpTransport(stream_reads=math.inf))
        self.deltas: dict[str, list[tuple[float, int]]] = {}
        self.texts: dict[str, str] = {}

    async def stream(self, prompt: Prompt) -> AsyncGenerator[str | StreamEnd, None]:
        queue: asyncio.Queue[str | StreamEnd | BaseException] = asyncio.Queue()
        reader = asyncio.create_task(self._read(prompt, queue))
        try:
            for _ in range(1_000_000):  # one pass per delta; the stream ends with StreamEnd
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, StreamEnd):
                    return
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, prompt: Prompt, queue: asyncio.Queue[Any]) -> None:
        question = prompt.turns[-1].text
        received = self.deltas.setdefault(question, [])
        text = ""
        try:
            async for item in super().stream(prompt):
                if isinstance(item, str):
                    text += item
                    received.append((time.monotonic(), len(text)))
                    self.texts[question] = text
                queue.put_nowait(item)
        except Exception as error:
            queue.put_nowait(error)


class NaiveClient(discord.Client):
    """The common pattern: defer, then edit on every 20th delta, awaiting each edit."""

    def __init__(self, model: RecordingModel, book: PromptBook) -> None:
        super().__init__(intents=discord.Intents.none(), guild_ready_timeout=0.05)
        self.model = model
        self.book = book
        self.tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(self)
        self.tree.command(name="ask", description="Ask")(self._ask)

    async def _ask(self, interaction: Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)
        pages = InteractionPages(interaction, False, safe_mentions(interaction.user.id))
        unpaced = PageWriter(pages, WriteBudget(1_000_000, 1e-6), shown=[""])
        live = LiveReply(2000, neutralise_discord)
        turns = [Turn("user", question, 16)]
        prompt = build_prompt(self.book, Platform.DISCORD, [], turns, 1024)
        count = 0
        async for item in self.model.stream(prompt):
            if isinstance(item, StreamEnd):
                break
            live.feed(item)
            count += 1
            if count % NAIVE_BATCH == 0:
                await unpaced.partial(live.take(time.monotonic()).pages)
        await unpaced.final(live.final().pages)


@dataclass(frozen=True)
class Fakes:
    discord_url: str
    anthropic_url: str

    @property
    def api_url(self) -> str:
        return self.discord_url + "/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.discord_url.replace("http://", "ws://", 1) + "/gateway"


def bot_settings(fakes: Fakes, folder: Path) -> Settings:
    return load_settings(
        {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": fakes.anthropic_url,
            "SUPPORTBOT_DB": str(folder / "bench.db"),
            "SUPPORTBOT_FALLBACK_MODEL": "",
            "DISCORD_BOT_TOKEN": TOKEN,
            "DISCORD_API_URL": fakes.api_url,
            "DISCORD_GATEWAY_URL": fakes.gateway_url,
            "LOG_LEVEL": "WARNING",
        },
        dotenv_path=None,
    )


@contextlib.asynccontextmanager
async def ours(settings: Settings, model: RecordingModel) -> AsyncIterator[discord.Client]:
    """The bot as shipped: responder, store, LiveReply pacing and the Discord surfaces."""
    store = await Store.open(settings.db_path)
    policy = ReplyPolicy("claude-haiku-5-5", 1024, 20_000, 64)
    knowledge = Knowledge(store.sqlite)
    responder = Responder(policy, store, knowledge, model, PromptBook.load())
    inbound = Inbound(responder.submit, store.event_seen)
    runtime = Runtime(settings, store, knowledge, responder, model, inbound)
    try:
        yield SupportClient(runtime.ports(Platform.DISCORD), guild_ready_timeout=0.05)
    finally:
        await inbound.aclose()
        await responder.aclose()
        await store.close()


@contextlib.asynccontextmanager
async def naive(settings: Settings, model: RecordingModel) -> AsyncIterator[discord.Client]:
    yield NaiveClient(model, PromptBook.load())


Connected = contextlib.AbstractAsyncContextManager[discord.Client]
Policy = Callable[[Settings, RecordingModel], Connected]


@contextlib.asynccontextmanager
async def connected(client: discord.Client) -> AsyncIterator[None]:
    """Run `client` until it is identified on the fake's gateway; close it afterwards."""
    task = asyncio.create_task(client.start(TOKEN))
    try:
        for _ in range(1000):
            if client.is_ready():
                break
            await asyncio.sleep(0.01)
        yield
    finally:
        await client.close()
        await asyncio.wait_for(task, 15)


async def run_once(policy: Policy, fakes: Fakes, run: int, folder: Path) -> dict[str, float]:
    settings = bot_settings(fakes, folder)
    model = RecordingModel(fakes.anthropic_url, paced=policy is not naive)
    async with httpx.AsyncClient(base_url=fakes.discord_url, timeout=30) as http:
        before = (await http.get("/_fake/stats")).json()["rate_limited"]
        since = (await http.get("/_fake/calls", params={"since": 10**9})).json()["next"]
        async with policy(settings, model) as client, connected(client):
            questions = [f"Run {run} question {i}: how do I export?" for i in range(REPLIES)]
            interactions = await asyncio.gather(*(slash(http, q) for q in questions))
            results = await finished(http, [i["id"] for i in interactions])
        calls = (await http.get("/_fake/calls", params={"since": since})).json()["calls"]
        limited = (await http.get("/_fake/stats")).json()["rate_limited"] - before
    await model.aclose()
    return measure(questions, interactions, results, calls, model, limited)


async def slash(http: httpx.AsyncClient, question: str) -> dict[str, Any]:
    body = {"name": "ask", "options": {"question": question}}
    response = await http.post("/_fake/slash", json=body)
    return dict(response.json())


async def finished(http: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    """Poll until every reply shows a final text (no typing marker), or the timeout passes."""
    deadline = time.monotonic() + FINISH_TIMEOUT
    results: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        results = [(await http.get(f"/_fake/interactions/{i}")).json() for i in ids]
        if all(final_pages(r) is not None for r in results):
            break
        await asyncio.sleep(0.25)
    return results


def final_pages(result: dict[str, Any]) -> list[str] | None:
    original = result.get("original")
    if not original or not original["content"]:
        return None
    pages = [original["content"]] + [f["content"] for f in result["followups"]]
    return None if any(TYPING_MARKER in page for page in pages) else pages


def measure(
    questions: list[str],
    interactions: list[dict[str, Any]],
    results: list[dict[str, Any]],
    calls: list[dict[str, Any]],
    model: RecordingModel,
    limited: int,
) -> dict[str, float]:
    first_signs, staleness, edits, lags = [], [], [], []
    mismatches = 0
    for question, interaction, result in zip(questions, interactions, results, strict=True):
        mine = [c for c in calls if interaction["token"] in c["path"]]
        callback = result["callback"]
        first_signs.append(callback[1] * 1000 if callback else FINISH_TIMEOUT * 1000)
        writes = visible_writes(mine, result)
        deltas = model.deltas.get(question, [])
        staleness += [seen_after(writes, at, size) for at, size in deltas]
        edits.append(sum(1 for c in mine if c["method"] == "PATCH"))
        if deltas and writes:
            lags.append((writes[-1][0] - deltas[-1][0]) * 1000)
        shown = final_pages(result)
        mismatches += shown is None or "".join(shown) != model.texts.get(question)
    return {
        "rate_limited_429": float(limited),
        "final_text_mismatches": float(mismatches),
        "first_sign_ms_p50": percentile(first_signs, 50),
        "first_sign_ms_p95": percentile(first_signs, 95),
        "staleness_ms_p50": percentile(staleness, 50) * 1000,
        "staleness_ms_p95": percentile(staleness, 95) * 1000,
        "edits_per_reply": sum(edits) / len(edits),
        "finish_lag_ms_p95": percentile(lags, 95) if lags else float("inf"),
    }


def visible_writes(calls: list[dict[str, Any]], result: dict[str, Any]) -> list[tuple[float, int]]:
    """(time, characters of the answer shown) after each successful page write of one reply."""
    followup_ids = [str(f["id"]) for f in result["followups"]]
    pages: dict[int, str] = {}
    shown: list[tuple[float, int]] = []
    created = 0
    for call in calls:
        if call["status"] >= 300 or call["json"] is None or "content" not in call["json"]:
            continue
        if call["method"] == "POST":  # a followup: the next page
            created += 1
            index = created
        else:
            target = call["path"].rsplit("/", 1)[1]
            index = 0 if target == "@original" else 1 + followup_ids.index(target)
        pages[index] = call["json"]["content"]
        size = sum(len(page.removesuffix(TYPING_MARKER)) for page in pages.values())
        shown.append((call["time"], size))
    return shown


def seen_after(writes: list[tuple[float, int]], at: float, size: int) -> float:
    """Seconds from a delta's arrival until a write showed text that far (or the run's end)."""
    for written_at, shown in writes:
        if written_at >= at and shown >= size:
            return written_at - at
    return FINISH_TIMEOUT


# --- mentions and DMs: replies as channel messages ------------------------------------------


class RecordingReplies(Replies):
    """The adapter's Replies, also noting each message surface by asker (to find the pages)."""

    def __init__(self, ports: Ports, timing: DiscordTiming) -> None:
        super().__init__(ports, timing)
        self.surfaces: dict[int, MessageSurface] = {}

    def message_surface(
        self,
        channel: discord.abc.Messageable,
        channel_id: int,
        asker_id: int,
        reply_to: discord.MessageReference | None = None,
    ) -> MessageSurface:
        surface = super().message_surface(channel, channel_id, asker_id, reply_to)
        self.surfaces[asker_id] = surface
        return surface


async def channel_run(kind: str, replies: int, fakes: Fakes, run: int, folder: Path
                      ) -> dict[str, float]:
    """`replies` mentions in one channel, or DMs from as many people, answered at once."""
    settings = bot_settings(fakes, folder)
    model = RecordingModel(fakes.anthropic_url)
    asked = {1_100_000_000_000_000_400 + i: f"Run {run} {kind} {i}: how do I export?"
             for i in range(replies)}
    async with httpx.AsyncClient(base_url=fakes.discord_url, timeout=30) as http:
        before = (await http.get("/_fake/stats")).json()["rate_limited"]
        since = (await http.get("/_fake/calls", params={"since": 10**9})).json()["next"]
        async with ours(settings, model) as client, connected(client):
            assert isinstance(client, SupportClient)
            recording = RecordingReplies(client.ports, client.replies.timing)
            client.replies = recording  # mentions and DMs go through it from now on
            for author, question in asked.items():
                body = {"content": question, "author_id": str(author),
                        "mentions_bot": kind == "mention", "guild": kind == "mention"}
                await http.post("/_fake/message", json=body)
            pages = await whole(http, recording.surfaces, asked, model)
        calls = (await http.get("/_fake/calls", params={"since": since})).json()["calls"]
        limited = (await http.get("/_fake/stats")).json()["rate_limited"] - before
    await model.aclose()
    return channel_figures(asked, pages, calls, model, limited)


Pages = dict[int, list[dict[str, Any]]]  # asker -> the reply's messages as the fake has them


async def whole(http: httpx.AsyncClient, surfaces: dict[int, MessageSurface],
                asked: dict[int, str], model: RecordingModel) -> Pages:
    """Poll until every reply shows the model's whole answer, or the timeout passes."""
    deadline = time.monotonic() + FINISH_TIMEOUT
    pages: Pages = {}
    while time.monotonic() < deadline:
        pages = await reply_pages(http, surfaces)
        if all(text_of(pages.get(a, [])) == model.texts.get(q) for a, q in asked.items()):
            break
        await asyncio.sleep(0.25)
    return pages


async def reply_pages(http: httpx.AsyncClient, surfaces: dict[int, MessageSurface]) -> Pages:
    found: Pages = {}
    by_channel: dict[int, list[dict[str, Any]]] = {}
    for asker, surface in list(surfaces.items()):
        channel = channel_id(surface.channel)
        if channel not in by_channel:
            response = await http.get("/_fake/messages", params={"channel": channel})
            by_channel[channel] = response.json()
        ids = {page.id for page in surface.pages()}
        found[asker] = [m for m in by_channel[channel] if m["id"] in ids]
    return found


def text_of(messages: list[dict[str, Any]]) -> str | None:
    """The reply's text as shown, or None while a page still has the typing marker."""
    contents = [m["content"] for m in messages]
    return None if any(TYPING_MARKER in c for c in contents) else "".join(contents)


def channel_figures(asked: dict[int, str], pages: Pages, calls: list[dict[str, Any]],
                    model: RecordingModel, limited: int) -> dict[str, float]:
    staleness, edits, lags = [], [], []
    unfinished = 0
    for asker, question in asked.items():
        messages = pages.get(asker, [])
        writes = message_writes(messages, calls)
        deltas = model.deltas.get(question, [])
        staleness += [seen_after(writes, at, size) for at, size in deltas]
        ids = {m["id"] for m in messages}
        edits.append(sum(1 for c in calls
                         if c["method"] == "PATCH" and c["path"].rsplit("/", 1)[1] in ids))
        finished = text_of(messages) == model.texts.get(question)
        unfinished += not finished
        if deltas and writes and finished:
            lags.append((writes[-1][0] - deltas[-1][0]) * 1000)
    return {
        "rate_limited_429": float(limited),
        "unfinished_replies": float(unfinished),
        "staleness_ms_p50": percentile(staleness, 50) * 1000,
        "staleness_ms_p95": percentile(staleness, 95) * 1000,
        "edits_per_reply": sum(edits) / len(edits),
        "finish_lag_ms_p50": percentile(lags, 50) if lags else float("inf"),
        "finish_lag_ms_p95": percentile(lags, 95) if lags else float("inf"),
    }


def message_writes(messages: list[dict[str, Any]], calls: list[dict[str, Any]]
                   ) -> list[tuple[float, int]]:
    """(time, characters of the answer shown) after each write of one reply's pages."""
    changes = [(m["created_at"], m["id"], m["history"][0]) for m in messages if m["history"]]
    ids = {m["id"] for m in messages}
    for call in calls:
        target = call["path"].rsplit("/", 1)[1]
        if call["method"] == "PATCH" and target in ids and call["status"] < 300:
            changes.append((call["time"], target, (call["json"] or {}).get("content", "")))
    shown: dict[str, str] = {}
    writes: list[tuple[float, int]] = []
    for at, message, content in sorted(changes):
        shown[message] = content
        writes.append((at, sum(len(c.removesuffix(TYPING_MARKER)) for c in shown.values())))
    return writes


# --- running and reporting ---------------------------------------------------------------


async def main(modes: list[str]) -> None:
    ask_args = ("--default-words", str(WORDS), "--delta-interval", str(DELTA_INTERVAL))
    channel_args = ("--default-words", str(WORDS), "--delta-interval",
                    str(CHANNEL_DELTA_INTERVAL), "--first-token-delay", str(FIRST_TOKEN_DELAY))
    figures: dict[str, Any] = {}
    async with (
        FakeProcess("tests.fakes.discord") as discord_fake,
        FakeProcess("tests.fakes.anthropic", *ask_args) as ask_model,
        FakeProcess("tests.fakes.anthropic", *channel_args) as channel_model,
    ):
        with tempfile.TemporaryDirectory() as folder:
            fakes = Fakes(discord_fake.base_url, ask_model.base_url)
            with local_endpoints(bot_settings(fakes, Path(folder))):
                if "ask" in modes:
                    figures["ask"] = await ask_mode(fakes, Path(folder))
                channel_fakes = Fakes(discord_fake.base_url, channel_model.base_url)
                for kind, replies, runs in CHANNEL_CASES:
                    if kind in modes:
                        name = f"{kind}_{replies}"
                        figures[name] = await channel_mode(kind, replies, runs, channel_fakes,
                                                           Path(folder))
    save(figures)


async def ask_mode(fakes: Fakes, folder: Path) -> dict[str, Any]:
    policies: dict[str, Policy] = {"ours": ours, "naive": naive}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in policies}
    for run in range(RUNS):
        for name, policy in policies.items():  # interleaved, so drift hits both
            runs[name].append(await run_once(policy, fakes, run, folder))
            print(f"/ask run {run + 1}/{RUNS} {name}: {runs[name][-1]}", flush=True)
    figures = {name: medians(per_run) for name, per_run in runs.items()}
    print(f"\n{REPLIES} /ask replies of ~{WORDS} words at once in one channel, "
          f"median of {RUNS} runs:")
    print(f"  {'figure':<24}{'ours':>12}{'naive (every 20 deltas)':>26}")
    for key in figures["ours"]:
        print(f"  {key:<24}{figures['ours'][key]:>12}{figures['naive'][key]:>26}")
    return {"replies_per_run": REPLIES, "runs": RUNS, "delta_interval_s": DELTA_INTERVAL,
            "naive_batch_deltas": NAIVE_BATCH, **figures, "per_run": runs}


async def channel_mode(kind: str, replies: int, runs: int, fakes: Fakes, folder: Path
                       ) -> dict[str, Any]:
    per_run = []
    for run in range(runs):
        per_run.append(await channel_run(kind, replies, fakes, run, folder))
        print(f"{kind} x{replies} run {run + 1}/{runs}: {per_run[-1]}", flush=True)
    figures = medians(per_run)
    what = f"{replies} mention{'s in one channel' if replies > 1 else ''}"
    if kind == "dm":
        what = f"{replies} DM{'s at once, each in its own channel' if replies > 1 else ''}"
    print(f"\n{what}, ~{WORDS}-word answers at ~80 tokens/s, median of {runs} runs:")
    for key, value in figures.items():
        print(f"  {key:<24}{value:>12}")
    return {"replies_per_run": replies, "runs": runs, **figures, "per_run": per_run}


def medians(per_run: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(median([r[key] for r in per_run]), 1) for key in per_run[0]}


def save(figures: dict[str, Any]) -> None:
    """Write bench/results/discord_load.json; modes not run this time keep their figures."""
    path = RESULTS / "discord_load.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    modes = {key: kept[key] for key in ("ask", *(f"{k}_{n}" for k, n, _ in CHANNEL_CASES))
             if key in kept}
    written = write_result("discord_load", {
        "words_per_reply": WORDS,
        "channel_workload": "80 tokens/s after 0.4 s",
        "buckets": "channel 5 per 5 s (creates and edits apart), webhook 5 per 2 s, "
                   "50 requests/s overall; sliding windows",
        **modes, **figures,
    })
    print(f"wrote {written}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["ask", "mention", "dm"]))
