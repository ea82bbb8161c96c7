"""Soak: `supportbot run` serving Slack and Discord at once, for minutes of mixed traffic.

One bot process (the shipped entry point, Socket Mode and the gateway together) against the
local fakes: mentions, follow-ups in their threads, DMs and /ask; Slack redeliveries of events
already sent; model faults on 5 % of questions (overloaded, 500, an error or a lost connection
mid-stream); one Socket Mode refresh and one gateway drop. Then every question is accounted
for: answered, or honestly failed (a ⚠️ note), never lost, never answered twice, never left
showing the typing marker. The bot's RSS and open file descriptors are read from /proc while
it runs; its event-loop lag is the line it logs on the way out.

    python -m bench.soak                 # 20 minutes, bench/results/soak.json
    python -m bench.soak --runs 3        # three runs, the medians (and each run) written
    python -m bench.soak --minutes 2     # the version `make test` runs (tests/e2e/test_soak.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import median, write_result
from bot.streaming import TYPING_MARKER
from tests.e2e.processes import BotProcess, bot_env
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import Fail, FakeAnthropic, Reply
from tests.fakes.anthropic_text import default_text
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack

BOT = "UBOT"  # the fake Slack's bot user
WORDS = 40  # each answer: one message on both platforms
RATE = 1.0  # questions per second, both platforms together
FAULTS = 0.05  # of questions, one in 20
REDELIVERED = 0.05  # Slack events sent a second time
SAMPLE_EVERY = 2.0  # seconds between /proc readings
SETTLE = 120.0  # seconds the replies in flight get to end after the last question
TAIL = default_text("x", WORDS)[-24:]  # the end of every complete answer
LAG_LINE = re.compile(r"event loop lag over (\d+) samples: p50 ([\d.]+) ms, p99 ([\d.]+) ms, "
                      r"max ([\d.]+) ms")
SLACK_USERS = [f"U{n:05d}" for n in range(120)]
DISCORD_USERS = [1_100_000_000_000_010_000 + n for n in range(60)]
TARGETS = {"rss_growth": 0.20, "loop_lag_p99_ms": 100.0, "fd_change": 5}

Where = tuple[Any, ...]  # ("slack", channel, thread) | ("ask", id) | ("ref", channel, message)
# | ("channel", id): where a question's reply is found


@dataclass
class Traffic:
    asked: dict[Where, list[str]] = field(default_factory=dict)  # where → question ids
    kinds: Counter[str] = field(default_factory=Counter)
    redeliveries: int = 0
    faults: int = 0
    slack_threads: list[tuple[str, str, str]] = field(default_factory=list)  # channel, ts, user

    def add(self, where: Where, qid: str, kind: str) -> None:
        self.asked.setdefault(where, []).append(qid)
        self.kinds[kind] += 1

    @property
    def questions(self) -> int:
        return sum(len(ids) for ids in self.asked.values())


@dataclass
class Readings:
    at: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def take(self, pid: int, started: float) -> None:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            rss = next(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            self.at.append(time.monotonic() - started)
            self.rss_kb.append(rss)
            self.fds.append(fds)

    def around(self, moment: float, values: list[int]) -> float:
        """The median of the readings within 5 s of `moment` (seconds since the start)."""
        near = [v for t, v in zip(self.at, values, strict=True) if abs(t - moment) <= 5]
        return median([float(v) for v in near]) if near else float(values[-1])


class Soak:
    def __init__(self, slack: FakeSlack, discord: FakeDiscord, model: FakeAnthropic,
                 seed: int) -> None:
        self.slack, self.discord, self.model = slack, discord, model
        self.random = random.Random(seed)
        self.traffic = Traffic()
        self.count = 0
        self.discord_paused = asyncio.Event()
        self.discord_paused.set()  # set: slash commands may go
        self._tasks: set[asyncio.Task[None]] = set()
        self.problems: list[str] = []  # what account() found missing, for a closer look

    def question(self, kind: str) -> str:
        self.count += 1
        qid = f"q{self.count:05d}"
        if self.count % round(1 / FAULTS) == 3:  # every 20th: each kind of fault in turn
            faults: list[Reply | Fail] = [
                Fail(529, "overloaded_error", when=qid), Reply(error_after_deltas=4, when=qid),
                Fail(500, "api_error", when=qid), Reply(drop_after_deltas=4, when=qid)]
            self.model.script(faults[self.traffic.faults % len(faults)])
            self.traffic.faults += 1
        return f"{qid} how do I set up {kind} number {self.count} for my team?"

    async def one(self) -> None:
        roll = self.random.random()
        if roll < 0.30:
            await self.slack_mention()
        elif roll < 0.45 and self.traffic.slack_threads:
            await self.slack_follow_up()
        elif roll < 0.55:
            await self.slack_dm()
        elif roll < 0.75:
            await self.discord_ask()
        elif roll < 0.90:
            await self.discord_mention()
        else:
            await self.discord_dm()

    async def slack_push(self, event: dict[str, Any], retry_attempt: int = 0) -> None:
        """Push as Slack does: while the bot reconnects, the event waits for its socket."""
        for _ in range(3):
            try:
                await self.slack.push_event(event, retry_attempt=retry_attempt)
                return
            except RuntimeError:  # no Socket Mode client at this moment
                await self.slack.wait_connected(20)
        raise RuntimeError("the bot did not come back to Socket Mode")

    async def slack_sent(self, event: dict[str, Any]) -> None:
        await self.slack_push(event)
        if self.random.random() < REDELIVERED:
            self.traffic.redeliveries += 1
            self._spawn(self._redeliver(event))

    async def _redeliver(self, event: dict[str, Any]) -> None:
        await asyncio.sleep(self.random.uniform(0.2, 3.0))
        await self.slack_push(event, retry_attempt=1)

    async def slack_mention(self) -> None:
        user, channel = self.random.choice(SLACK_USERS), self.random.choice(["C1", "C2", "C3"])
        text = self.question("a mention")
        event = ev.app_mention(f"<@{BOT}> {text}", user=user, channel=channel)
        self.traffic.add(("slack", channel, str(event["ts"])), text[:6], "slack mention")
        self.traffic.slack_threads.append((channel, str(event["ts"]), user))
        await self.slack_sent(event)

    async def slack_follow_up(self) -> None:
        channel, thread, user = self.random.choice(self.traffic.slack_threads[-30:])
        text = self.question("a follow-up")
        event = ev.message(text, user=user, channel=channel, thread_ts=thread)
        self.traffic.add(("slack", channel, thread), text[:6], "slack follow-up")
        await self.slack_sent(event)

    async def slack_dm(self) -> None:
        user = self.random.choice(SLACK_USERS)
        text = self.question("a direct message")
        event = ev.message(text, user=user, channel=f"D{user[1:]}")
        self.traffic.add(("slack", f"D{user[1:]}", str(event["ts"])), text[:6], "slack DM")
        await self.slack_sent(event)

    async def discord_ask(self) -> None:
        await asyncio.wait_for(self.discord_paused.wait(), 30)
        text = self.question("a slash command")
        asked = await self.discord.dispatch_slash(
            "ask", {"question": text}, user_id=self.random.choice(DISCORD_USERS))
        self.traffic.add(("ask", asked.id), text[:6], "discord /ask")

    async def discord_mention(self) -> None:
        channel = self.random.choice(self.discord.channel_ids)
        text = self.question("a mention")
        mention = await self.discord.dispatch_message(
            text, channel_id=channel, author_id=self.random.choice(DISCORD_USERS),
            mentions_bot=True)
        self.traffic.add(("ref", channel, mention), text[:6], "discord mention")

    async def discord_dm(self) -> None:
        user = self.random.choice(DISCORD_USERS[:20])  # a few people write several DMs
        text = self.question("a direct message")
        await self.discord.dispatch_message(text, author_id=user, guild=False)
        self.traffic.add(("channel", self.discord.dm_channel(user)), text[:6], "discord DM")

    async def gateway_drop(self) -> None:
        """Close the gateway (4000): the bot resumes and gets the events it missed. Slash
        commands wait for the resume (Discord fails them at once while the bot is away)."""
        self.discord_paused.clear()
        before = self.discord.resumes
        await self.discord.drop_gateway(4000)
        try:
            await self.discord.wait_for(lambda: self.discord.resumes > before, 30)
        finally:
            self.discord_paused.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)

    # ----- accounting ---------------------------------------------------------------------

    def replies(self, where: Where) -> list[str]:
        """The bot's replies at `where`, each its text (one message per reply here)."""
        if where[0] == "slack":
            return [m.text for m in self.slack.messages(where[1], where[2]) if m.user == BOT]
        if where[0] == "ask":
            original = self.discord.interaction_original(where[1])
            return [original.content] if original is not None and original.content else []
        mine = [m for m in self.discord.messages(where[1])
                if m.author_id == self.discord.bot_user_id and m.interaction_id is None]
        if where[0] == "ref":
            mine = [m for m in mine if m.message_reference is not None
                    and m.message_reference.get("message_id") == str(where[2])]
        return [m.content for m in mine]

    def settled(self) -> bool:
        return all(len(self.replies(w)) >= len(ids) and not any(
            TYPING_MARKER in text for text in self.replies(w))
            for w, ids in self.traffic.asked.items())

    def account(self) -> dict[str, int]:
        answered = failed = broken = stuck = lost = extra = 0
        seen: Counter[str] = Counter()
        for where, ids in self.traffic.asked.items():
            texts = self.replies(where)
            lost += max(0, len(ids) - len(texts))
            extra += max(0, len(texts) - len(ids))
            for text in texts:
                if "⚠️" not in text:  # after an honest failure, the next answer in the thread
                    # is given both questions (one model turn), so its echo starts with the first
                    seen.update(qid for qid in ids if f'Answer to "{qid}' in text)
                if TYPING_MARKER in text:
                    stuck += 1
                elif "⚠️" in text:
                    failed += 1
                elif text.endswith(TAIL):
                    answered += 1
                else:
                    broken += 1  # neither a whole answer nor an honest note
        duplicated = extra + sum(n - 1 for n in seen.values() if n > 1)
        self.problems = [f"{where}: asked {ids}, replies {[t[-160:] for t in texts]}"
                         for where, ids in self.traffic.asked.items()
                         for texts in [self.replies(where)]
                         if len(texts) != len(ids) or any(
                             TYPING_MARKER in t or ("⚠️" not in t and not t.endswith(TAIL))
                             for t in texts)]
        return {"questions": self.traffic.questions, "answered": answered,
                "honestly_failed": failed, "lost": lost, "duplicated": duplicated,
                "stuck_typing": stuck, "incomplete_without_note": broken}


@contextlib.asynccontextmanager
async def bot_process(folder: Path, slack: FakeSlack, discord: FakeDiscord,
                      model: FakeAnthropic) -> AsyncIterator[tuple[BotProcess, list[str]]]:
    """`supportbot run` on both platforms; its stderr lines are kept as they come."""
    env = bot_env(
        folder, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=model.base_url,
        SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token,
        SLACK_API_URL=slack.api_url, DISCORD_BOT_TOKEN=discord.token,
        DISCORD_API_URL=discord.api_url, DISCORD_GATEWAY_URL=discord.gateway_url,
        LOG_LEVEL="INFO",
        # No hourly cap: the traffic gives a few simulated people over 20 questions an hour,
        # and a capped question is answered "please wait" (or, told once, kept quietly) by
        # design — tests/e2e/test_caps.py holds that; this counts losses, not caps.
        SUPPORTBOT_USER_RATE="0",
    )
    bot = await BotProcess(folder, env, "run").start()
    assert bot.proc is not None and bot.proc.stderr is not None
    lines: list[str] = []
    stderr = bot.proc.stderr

    async def drain() -> None:
        for _ in range(10_000_000):  # a line per pass; ends at EOF
            line = await stderr.readline()
            if not line:
                return
            lines.append(line.decode(errors="replace"))

    reader = asyncio.create_task(drain())
    try:
        yield bot, lines
    finally:
        if bot.proc.returncode is None:
            bot.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bot.proc.wait(), 60)
        await bot.stop()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(reader, 10)


async def soak(minutes: float, folder: Path, seed: int = 7) -> dict[str, Any]:
    """Run the soak for `minutes` of traffic; its figures."""
    duration = minutes * 60
    warm_up = duration / 4
    model = FakeAnthropic(default_words=WORDS, delta_interval=0.03, first_token_delay=0.3)
    async with model, FakeSlack() as slack, FakeDiscord() as discord, \
            bot_process(folder, slack, discord, model) as (bot, log):
        assert bot.proc is not None
        await slack.wait_connected(30)
        await discord.wait_ready(30)
        run = Soak(slack, discord, model, seed)
        readings = Readings()
        started = time.monotonic()
        readings.take(bot.proc.pid, started)
        events = {duration * 0.4: slack.send_disconnect, duration * 0.6: run.gateway_drop}
        next_sample = 0.0
        for _ in range(int(duration * RATE * 3)):  # bounded; time ends it first
            elapsed = time.monotonic() - started
            if elapsed >= duration:
                break
            for at in [at for at in events if at <= elapsed]:
                run._spawn(events.pop(at)())
            if elapsed >= next_sample:
                readings.take(bot.proc.pid, started)
                next_sample = elapsed + SAMPLE_EVERY
            await run.one()
            await asyncio.sleep(run.random.expovariate(RATE))
        await run.aclose()
        sent = time.monotonic() - started
        for _ in range(int(SETTLE * 10)):
            if run.settled():
                break
            await asyncio.sleep(0.1)
        settled = time.monotonic() - started - sent
        await asyncio.sleep(1.0)  # connections of finished replies go back to their pools
        readings.take(bot.proc.pid, started)
        if bot.proc.returncode is not None:
            raise RuntimeError("the bot stopped during the soak:\n" + "".join(log[-40:]))
        counts = run.account()
        if os.environ.get("SOAK_LOG"):  # to look into a miss: the bot's log and the misses
            Path(os.environ["SOAK_LOG"]).write_text(
                "".join(log) + "\n--- misses ---\n" + "\n".join(run.problems) + "\n")
        end_rss, end_fds = readings.rss_kb[-1], readings.fds[-1]
        warm_rss = readings.around(warm_up, readings.rss_kb)
        warm_fds = readings.around(warm_up, readings.fds)
        rate_limited = slack.count("chat.update", error="ratelimited") + \
            slack.count("chat.postMessage", error="ratelimited")
        discord_429 = discord.rate_limited
    lag = LAG_LINE.search("".join(log))
    return {
        **counts,
        "kinds": dict(run.traffic.kinds),
        "redeliveries": run.traffic.redeliveries,
        "model_faults": run.traffic.faults,
        "socket_mode_refreshes": 1,
        "gateway_drops": 1,
        "minutes": minutes,
        "settle_seconds": round(settled, 1),
        "rss_mb_start": round(readings.rss_kb[0] / 1024, 1),
        "rss_mb_after_warm_up": round(warm_rss / 1024, 1),
        "rss_mb_end": round(end_rss / 1024, 1),
        "rss_growth": round(end_rss / warm_rss - 1, 3),
        "fds_start": readings.fds[0],
        "fds_after_warm_up": warm_fds,
        "fds_end": end_fds,
        # Against the reading after warm-up: at the very start the connection pools (Slack,
        # Discord, the model) are still empty, and filling them is not a leak.
        "fd_change": int(end_fds - warm_fds),
        "loop_lag_p50_ms": float(lag.group(2)) if lag else None,
        "loop_lag_p99_ms": float(lag.group(3)) if lag else None,
        "loop_lag_max_ms": float(lag.group(4)) if lag else None,
        "slack_429": rate_limited,
        "discord_429": discord_429,
    }


def verdict(figures: dict[str, Any]) -> list[str]:
    """What missed its target; empty when everything held."""
    misses = []
    for name in ("lost", "duplicated", "stuck_typing", "incomplete_without_note"):
        if figures[name]:
            misses.append(f"{name}: {figures[name]}")
    if figures["answered"] + figures["honestly_failed"] != figures["questions"]:
        misses.append("answered + honestly failed != questions")
    if figures["rss_growth"] > TARGETS["rss_growth"]:
        misses.append(f"RSS grew {figures['rss_growth']:.0%} after warm-up")
    lag = figures["loop_lag_p99_ms"]
    if lag is None or lag > TARGETS["loop_lag_p99_ms"]:
        misses.append(f"event-loop lag p99 {lag} ms")
    if abs(figures["fd_change"]) > TARGETS["fd_change"]:
        misses.append(f"open files changed by {figures['fd_change']}")
    if figures["slack_429"] or figures["discord_429"]:
        misses.append(f"429s: Slack {figures['slack_429']}, Discord {figures['discord_429']}")
    return misses


def report(figures: dict[str, Any]) -> None:
    print(f"soak: {figures['minutes']} min, {figures['questions']} questions "
          f"({', '.join(f'{k} {v}' for k, v in sorted(figures['kinds'].items()))}), "
          f"{figures['redeliveries']} redeliveries, {figures['model_faults']} model faults, "
          f"{figures['socket_mode_refreshes']} Socket Mode refresh(es), "
          f"{figures['gateway_drops']} gateway drop(s)")
    print(f"  answered {figures['answered']}, honestly failed {figures['honestly_failed']}, "
          f"lost {figures['lost']}, duplicated {figures['duplicated']}, "
          f"stuck typing {figures['stuck_typing']}, "
          f"incomplete without a note {figures['incomplete_without_note']}")
    print(f"  RSS {figures['rss_mb_start']} MB at start, {figures['rss_mb_after_warm_up']} MB "
          f"after warm-up, {figures['rss_mb_end']} MB at the end "
          f"({figures['rss_growth']:+.1%}; target ≤ +20 %)")
    print(f"  event-loop lag p50 {figures['loop_lag_p50_ms']} ms, p99 "
          f"{figures['loop_lag_p99_ms']} ms (target ≤ 100), max {figures['loop_lag_max_ms']} ms")
    print(f"  open files {figures['fds_start']} at start, {figures['fds_after_warm_up']} after "
          f"warm-up, {figures['fds_end']} at the end (target: within 5 of the warm-up reading)")
    print(f"  429s: Slack {figures['slack_429']}, Discord {figures['discord_429']}; replies "
          f"settled {figures['settle_seconds']} s after the last question")
    misses = verdict(figures)
    print("  all targets held" if not misses else "  MISSED: " + "; ".join(misses))


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs as one: counts summed (questions, answers, misses: one miss is too many),
    the other figures (memory, lag, open files) their medians."""
    summed = ("questions", "answered", "honestly_failed", "lost", "duplicated", "stuck_typing",
              "incomplete_without_note", "slack_429", "discord_429", "redeliveries",
              "model_faults", "socket_mode_refreshes", "gateway_drops", "minutes")
    figures: dict[str, Any] = {}
    for name, first in runs[0].items():
        values = [run[name] for run in runs]
        if name in summed:
            figures[name] = sum(values)
        elif isinstance(first, dict):
            figures[name] = dict(sum((Counter(v) for v in values), Counter()))
        elif isinstance(first, (int, float)) and not isinstance(first, bool) and \
                None not in values:
            figures[name] = median([float(v) for v in values])
        else:
            figures[name] = first
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1, help="runs one after another (seeds "
                        "SEED, SEED+1, …); the figures are their medians")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON (and not "
                        "into bench/results)")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    for n in range(max(1, args.runs)):
        with tempfile.TemporaryDirectory() as folder:
            figures = asyncio.run(soak(args.minutes, Path(folder), args.seed + n))
        report(figures)
        runs.append(figures)
        if len(runs) > 1:
            print(f"{len(runs)} runs: counts summed, the other figures their medians")
            report(medians(runs))
        written = save(runs, args)  # after each run: a stopped series keeps what it had
    print(f"wrote {written}")


def save(runs: list[dict[str, Any]], args: argparse.Namespace) -> Path:
    figures = runs[0] if len(runs) == 1 else {**medians(runs), "runs": runs}
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        return Path(args.out)
    return write_result("soak" if args.minutes >= 20 else f"soak_{args.minutes:g}min", figures)


if __name__ == "__main__":
    main()
