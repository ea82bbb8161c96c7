"""Scale: what one instance holds, and what a second and third add.

`burst`: one `supportbot run` (Slack and Discord at once) gets a burst of replies streaming
at the same time — 600-token answers, half in 10 Slack workspaces of an org-wide app, half
in 10 Discord channels — first 50 (the plain baseline, the load of bench.slack_load), then
500, each with a fresh process. Read from /proc: the bot's CPU per reply and its peak RSS;
from its log: event-loop lag; from the fakes: 429s, and every answer complete.

`instances`: 1, 2 and 3 instances on one PostgreSQL database and one Redis, Slack only (10
workspaces, Socket Mode, one connection each), the same stream of questions (15 a second
for 40 s): replies a minute, 429s, and each instance's CPU. Slack allows about 45 edits a
minute per workspace and every reply needs at least its final one, so 10 workspaces cap it
near 450 a minute: the ceiling should be the platform's, not the bot's.

`ceiling`: the same with one workspace asked faster than Slack lets it answer, for over two
minutes: the replies a minute after the first minute are Slack's ceiling, or the bot's.

    python -m bench.scale burst --runs 3
    python -m bench.scale instances --runs 3
    python -m bench.scale ceiling --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import FakeProcess, median, write_result
from bot.streaming import TYPING_MARKER
from tests.databases import POSTGRES_URL, REDIS_URL, with_schema
from tests.e2e.processes import BotProcess, bot_env
from tests.fakes import slack_events as ev
from tests.fakes.anthropic_text import default_text
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack

WORDS = 450  # about 600 tokens
TAIL = default_text("x", WORDS)[-24:]  # the end of every complete answer
TEAMS = [f"T{n:02d}" for n in range(10)]
SLACK_CHANNELS = 5  # per workspace
DISCORD_CHANNELS = [1_100_000_000_000_000_200 + n for n in range(10)]
LAG_LINE = re.compile(r"event loop lag over (\d+) samples: p50 ([\d.]+) ms, p99 ([\d.]+) ms, "
                      r"max ([\d.]+) ms")
TARGETS = {"loop_lag_p99_ms": 100.0, "peak_rss_mb": 300.0, "cpu_ms_per_reply": 10.0}
TICKS = os.sysconf("SC_CLK_TCK")
FINISH = 900.0  # seconds a burst may take to end before what is left counts as lost


@dataclass
class Bot:
    """One `supportbot run`, its log lines, and /proc readings of it."""

    process: BotProcess
    lines: list[str] = field(default_factory=list)
    peak_rss_kb: int = 0

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime

    def sample(self) -> None:
        with contextlib.suppress(OSError, StopIteration):
            status = Path(f"/proc/{self.pid}/status").read_text()
            rss = next(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:"))
            self.peak_rss_kb = max(self.peak_rss_kb, rss)

    def lag(self) -> dict[str, float]:
        for line in reversed(self.lines):
            found = LAG_LINE.search(line)
            if found:
                return {"lag_p50_ms": float(found.group(2)), "lag_p99_ms": float(found.group(3)),
                        "lag_max_ms": float(found.group(4))}
        return {}


@contextlib.asynccontextmanager
async def running(folder: Path, env: dict[str, str]) -> AsyncIterator[Bot]:
    """`supportbot run` until the block ends (then SIGTERM, so it logs its lag)."""
    folder.mkdir(parents=True, exist_ok=True)
    bot = Bot(await BotProcess(folder, bot_env(folder, **env), "run").start())
    proc = bot.process.proc
    assert proc is not None and proc.stderr is not None
    stderr = proc.stderr

    async def drain() -> None:
        for _ in range(10_000_000):  # a line per pass; ends at EOF
            line = await stderr.readline()
            if not line:
                return
            bot.lines.append(line.decode(errors="replace"))

    reader = asyncio.create_task(drain())
    try:
        yield bot
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 60)
        await bot.process.stop()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(reader, 10)


def common_env(model_url: str, slack: FakeSlack) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model_url,
            "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_APP_TOKEN": slack.app_token,
            "SLACK_API_URL": slack.api_url, "LOG_LEVEL": "INFO", "SUPPORTBOT_USER_RATE": "0",
            "SUPPORTBOT_MAX_CONCURRENT": "600", "SUPPORTBOT_MAX_TOKENS": "2048"}


def slack_done(slack: FakeSlack) -> tuple[int, int]:
    """(complete answers, messages still typing) among the bot's Slack messages."""
    complete = typing = 0
    for channel in {c for team in TEAMS for c in team_channels(team)}:
        for message in slack.messages(channel):
            if message.user != "UBOT":
                continue
            typing += TYPING_MARKER in message.text
            complete += message.text.endswith(TAIL)
    return complete, typing


def discord_done(discord: FakeDiscord) -> tuple[int, int]:
    complete = typing = 0
    for channel in DISCORD_CHANNELS:
        for message in discord.messages(channel):
            if message.author_id != discord.bot_user_id:
                continue
            typing += TYPING_MARKER in message.content
            complete += message.content.endswith(TAIL)
    return complete, typing


def team_channels(team: str) -> list[str]:
    return [f"C{team}{n}" for n in range(SLACK_CHANNELS)]


async def ask_slack(slack: FakeSlack, count: int, per_second: float = 0.0,
                    teams: list[str] = TEAMS) -> None:
    for n in range(count):
        team = teams[n % len(teams)]
        channel = team_channels(team)[(n // len(teams)) % SLACK_CHANNELS]
        await slack.push_event(ev.app_mention(f"<@UBOT> question {n} about exports",
                                              channel=channel, team=team, user=f"U{n:05d}"))
        if per_second:
            await asyncio.sleep(1 / per_second)


async def ask_discord(discord: FakeDiscord, count: int) -> None:
    for n in range(count):
        await discord.dispatch_message(f"question {n} about exports", mentions_bot=True,
                                       channel_id=DISCORD_CHANNELS[n % len(DISCORD_CHANNELS)],
                                       author_id=1_100_000_000_000_010_000 + n)


async def until(check: Any, timeout: float, bots: list[Bot],
                progress: Any = None) -> bool:
    """Poll `check()` (sampling the bots' memory) until true or `timeout`; True if it was.
    `progress()` is printed every 15 s meanwhile."""
    started = time.monotonic()
    said = started
    for _ in range(int(timeout / 0.25) + 1):
        for bot in bots:
            bot.sample()
        if check():
            return True
        now = time.monotonic()
        if now - started >= timeout:
            return False
        if progress is not None and now - said >= 15:
            said = now
            print(f"  {now - started:.0f} s: {progress()}", flush=True)
        await asyncio.sleep(0.25)
    return False


async def burst(size: int, model_url: str, folder: Path) -> dict[str, float]:
    """One instance, `size` replies at once (half Slack, half Discord); its figures."""
    slack_count, discord_count = size // 2, size - size // 2
    async with FakeSlack() as slack, FakeDiscord(channel_ids=DISCORD_CHANNELS) as discord:
        env = {**common_env(model_url, slack), "DISCORD_BOT_TOKEN": discord.token,
               "DISCORD_API_URL": discord.api_url, "DISCORD_GATEWAY_URL": discord.gateway_url}
        async with running(folder, env) as bot:
            await slack.wait_connected(60)
            await discord.wait_ready(60)
            await asyncio.sleep(2.0)  # the slash commands registered, the gateway settled
            cpu_before, started = bot.cpu_seconds(), time.monotonic()
            await asyncio.gather(ask_slack(slack, slack_count), ask_discord(discord, discord_count))

            def done() -> bool:
                (s, s_typing), (d, d_typing) = slack_done(slack), discord_done(discord)
                return s >= slack_count and d >= discord_count and not s_typing + d_typing

            await until(done, FINISH, [bot], lambda: (
                f"slack {slack_done(slack)}, discord {discord_done(discord)} (complete, "
                f"typing); 429s {slack.rate_limited}/{discord.rate_limited}"))
            wall = time.monotonic() - started
            cpu = bot.cpu_seconds() - cpu_before
        (slack_complete, slack_typing), (discord_complete, discord_typing) = \
            slack_done(slack), discord_done(discord)
        # A Discord answer over 2,000 characters is two messages; count replies by their end.
        lost = (slack_count - slack_complete) + (discord_count - discord_complete)
        return {"replies": size, "wall_s": wall, "cpu_ms_per_reply": cpu / size * 1000,
                "peak_rss_mb": bot.peak_rss_kb / 1024, **bot.lag(),
                "slack_429": slack.rate_limited, "discord_429": discord.rate_limited,
                "lost": lost, "still_typing": slack_typing + discord_typing}


@dataclass(frozen=True)
class Load:
    """The questions an `instances` run sends: how many, how fast, over which workspaces."""

    questions: int = 600  # 15 a second for 40 s, over 10 workspaces
    per_second: float = 15.0
    teams: int = 10


# One workspace, asked faster than Slack lets it answer (about 90 long replies a minute: a
# chat.update or a repost with chat.delete each, 45 a minute apiece), for over two minutes.
CEILING = Load(questions=240, per_second=4.0, teams=1)


async def instances(count: int, model_url: str, folder: Path, prefix: str,
                    load: Load = Load()) -> dict[str, float]:
    """`count` instances on PostgreSQL and Redis, Slack only: replies a minute at 0 × 429,
    overall and after the first minute (Slack's windows start empty)."""
    schema = f"scale_{os.getpid()}_{count}_{int(time.time())}"
    admin = await _pg()
    await admin.execute(f"CREATE SCHEMA {schema}")
    questions, teams = load.questions, TEAMS[:load.teams]
    timeline: list[tuple[float, int]] = []
    try:
        async with FakeSlack() as slack, contextlib.AsyncExitStack() as stack:
            env = {**common_env(model_url, slack),
                   "SUPPORTBOT_DB": with_schema(POSTGRES_URL, schema),
                   "SUPPORTBOT_REDIS_URL": REDIS_URL, "SUPPORTBOT_REDIS_PREFIX": prefix}
            bots = []
            for n in range(count):
                bots.append(await stack.enter_async_context(
                    running(folder / f"i{count}_{n}", env)))
                live = n + 1
                await until(lambda live=live: sum(
                    not ws.closed for ws in slack.socket_mode._sockets) == live, 60, bots)
            cpu_before = [bot.cpu_seconds() for bot in bots]
            started = time.monotonic()
            asking = asyncio.create_task(ask_slack(slack, questions, load.per_second, teams))

            def done() -> bool:
                complete, typing = slack_done(slack)
                timeline.append((time.monotonic() - started, complete))
                if complete >= questions and not typing:
                    return True
                # Nothing typing and nothing finished for a minute: what is left is lost.
                moved = [t for t, n in timeline if n != complete]
                quiet = timeline[-1][0] - (moved[-1] if moved else 0.0)
                return not typing and asking.done() and quiet > 60

            await until(done, FINISH, bots, lambda: f"slack {slack_done(slack)}, 429s "
                        f"{slack.rate_limited}")
            await asking
            wall = time.monotonic() - started
            cpu = [bot.cpu_seconds() - before for bot, before in zip(bots, cpu_before,
                                                                      strict=True)]
            complete, _ = slack_done(slack)
            return {"instances": count, "replies": complete, "wall_s": wall,
                    "replies_per_minute": complete / wall * 60, "slack_429": slack.rate_limited,
                    "lost": questions - complete,
                    "cpu_busy_per_instance": max(cpu) / wall,
                    "cpu_ms_per_reply": sum(cpu) / max(1, complete) * 1000,
                    "updates_per_minute": slack.count("chat.update") / wall * 60,
                    "after_first_minute_per_minute": after_first_minute(timeline)}
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def after_first_minute(timeline: list[tuple[float, int]]) -> float:
    """Replies finished a minute from 60 s on (0 when the run was shorter)."""
    later = [(t, n) for t, n in timeline if t >= 60.0]
    if len(later) < 2 or later[-1][0] - later[0][0] < 10:
        return 0.0
    return (later[-1][1] - later[0][1]) / (later[-1][0] - later[0][0]) * 60


async def _pg() -> Any:
    import asyncpg

    return await asyncpg.connect(POSTGRES_URL, timeout=10)


async def main(mode: str, runs: int, only: str = "") -> dict[str, Any]:
    args = ("--default-words", str(WORDS), "--delta-interval", "0.02",
            "--first-token-delay", "0.3")
    per_run: dict[str, list[dict[str, float]]] = {}
    async with FakeProcess("tests.fakes.anthropic", *args) as model:
        with tempfile.TemporaryDirectory(prefix="supportbot-scale-") as tmp:
            for run in range(runs):
                cases = ([("50", 50), ("500", 500)] if mode == "burst"
                         else [("1", 1), ("2", 2), ("3", 3)])
                load = CEILING if mode == "ceiling" else Load()
                for name, n in [c for c in cases if not only or c[0] in only.split(",")]:
                    folder = Path(tmp) / f"run{run}_{name}"
                    figures = (await burst(n, model.base_url, folder) if mode == "burst" else
                               await instances(n, model.base_url, folder,
                                               f"scale{os.getpid()}r{run}n{n}:", load))
                    print(f"run {run + 1}, {mode} {name}: " + ", ".join(
                        f"{k} {v:.4g}" for k, v in figures.items()), flush=True)
                    per_run.setdefault(name, []).append(figures)
    return {name: {"median": {k: median([r[k] for r in rows if k in r]) for k in rows[0]},
                   "runs": rows} for name, rows in per_run.items()}


def report(mode: str, results: dict[str, Any]) -> None:
    print(f"\nmedians of each case ({mode}):")
    for name, figures in results.items():
        print(f"  {name:>4}: " + ", ".join(f"{k} {v:.4g}" for k, v in figures["median"].items()))
    if mode == "burst":
        big = results["500"]["median"]
        misses = [f"{k} {big.get(k.replace('loop_', ''), big.get(k))}" for k in TARGETS
                  if big.get("lag_p99_ms" if k == "loop_lag_p99_ms" else k, 0) > TARGETS[k]]
        print("targets at 500: " + ("all met" if not misses else "MISSED " + ", ".join(misses)))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["burst", "instances", "ceiling"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="cases to run, e.g. 500 or 1,3")
    args = parser.parse_args()
    results = asyncio.run(main(args.mode, args.runs, args.only))
    report(args.mode, results)
    path = write_result(f"scale_{args.mode}", {"runs": args.runs, "targets": TARGETS,
                                               "cases": results})
    print(f"written to {path}")


if __name__ == "__main__":
    cli()
