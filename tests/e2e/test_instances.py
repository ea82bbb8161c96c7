"""Several `supportbot run` processes answering as one: one PostgreSQL database, one Redis,
the Slack and Discord fakes. Slack's chat.update budget is scaled up in both the fake and the
bot (the same ratio as Slack's 50 and our 45 a minute) so a hundred answers take seconds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bot.mrkdwn import to_mrkdwn
from bot.streaming import TYPING_MARKER
from tests.databases import REDIS_URL, postgres_schema
from tests.e2e.processes import BotProcess, bot_env
from tests.e2e.test_slack import BOT, Bot, bot_posts, env_for, free_port, wait_healthy
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, message_text
from tests.fakes.anthropic_text import default_text
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord_gateway import shard_of
from tests.fakes.slack import FakeSlack

UPDATES = 600  # the fake's chat.update limit a minute (Slack's Tier 3: 50)
OURS = 540  # what the bots allow themselves together (45 of 50, scaled)
WORDS = 60


@contextlib.asynccontextmanager
async def instances(
    tmp: Path, count: int, slack: FakeSlack, model: FakeAnthropic, db: str, prefix: str,
    **extra: str,
) -> AsyncIterator[list[Bot]]:
    """`count` bots on one database and one Redis, each with its own Socket Mode connection,
    started one after the other (connection n is instance n)."""
    bots: list[Bot] = []
    try:
        for n in range(count):
            folder = tmp / f"instance{n}"
            folder.mkdir()
            env = env_for(folder, slack, model, SUPPORTBOT_DB=db, SUPPORTBOT_REDIS_URL=REDIS_URL,
                          SUPPORTBOT_REDIS_PREFIX=prefix, SUPPORTBOT_USER_RATE="0",
                          SUPPORTBOT_SLACK_UPDATES_PER_MINUTE=str(OURS), LOG_LEVEL="INFO",
                          **extra)
            bots.append(await Bot(BotProcess(folder, env, "run")).start())
            await slack.wait_for(lambda n=n: live_connections(slack) == n + 1, 30)  # type: ignore[misc]
        yield bots
    finally:
        for bot in bots:
            await bot.stop()


def live_connections(slack: FakeSlack) -> int:
    return sum(1 for ws in slack.socket_mode._sockets if not ws.closed)


def expected(question: str) -> str:
    return to_mrkdwn(default_text(question, WORDS))


def all_final(slack: FakeSlack, asked: list[tuple[str, str, str]]) -> bool:
    for channel, ts, _ in asked:
        posts = bot_posts(slack, channel, ts)
        if not posts or any(TYPING_MARKER in m.text for m in posts):
            return False
    return True


def assert_each_answered_once(slack: FakeSlack, asked: list[tuple[str, str, str]]) -> None:
    for channel, ts, question in asked:
        posts = bot_posts(slack, channel, ts)
        assert [m.text for m in posts] == [expected(question)], (channel, ts)


async def test_three_instances_answer_a_hundred_mentions_once_each_within_the_shared_budget(
    tmp_path: Path, redis_prefix: str
) -> None:
    model = FakeAnthropic(default_words=WORDS, delta_interval=0.03)
    async with postgres_schema() as db, model, FakeSlack(update_limit=UPDATES) as slack, \
            instances(tmp_path, 3, slack, model, db, redis_prefix) as bots:
        asked: list[tuple[str, str, str]] = []
        events = []
        for n in range(100):
            channel, question = f"C{n % 10}", f"question number {n} about exports"
            mention = ev.app_mention(f"<@{BOT}> {question}", channel=channel, user=f"U{n % 7}")
            asked.append((channel, mention["ts"], question))
            events.append(mention)
            await slack.push_event(mention)
            await asyncio.sleep(0.02)
        # Slack redelivers an event it thinks unacknowledged, maybe to another connection.
        first_to = list(slack.socket_mode.delivered_to)
        for mention in events[:12]:
            await slack.push_event(mention, retry_attempt=1)
        await slack.wait_for(lambda: all_final(slack, asked), 90)
        await asyncio.sleep(1.0)  # a second answer to a redelivery would show by now
        logs = ["".join(bot.log) for bot in bots]

    assert_each_answered_once(slack, asked)
    assert len(model.requests) == 100  # each question went to the model once
    assert slack.rate_limited == 0, "a shared budget let Slack refuse a call"
    assert slack.count("chat.update") > 100  # partial edits streamed, within the budget
    redelivered_to = slack.socket_mode.delivered_to[100:]
    assert any(again != first for again, first in zip(redelivered_to, first_to, strict=False))
    assert set(first_to) == {0, 1, 2}  # Slack spread the events over the three connections
    for log in logs:
        assert "Traceback" not in log
        assert "answering again" not in log


async def test_killing_one_of_three_mid_stream_its_replies_are_finished_once_by_another(
    tmp_path: Path, redis_prefix: str
) -> None:
    model = FakeAnthropic(default_words=WORDS, delta_interval=0.12)  # about 7 s a reply
    lease = 3.0
    async with postgres_schema() as db, model, FakeSlack(update_limit=UPDATES) as slack, \
            instances(tmp_path, 3, slack, model, db, redis_prefix,
                      SUPPORTBOT_LEASE_SECONDS=str(lease)) as bots:
        asked = []
        for n in range(12):
            question = f"question number {n} about single sign-on"
            mention = ev.app_mention(f"<@{BOT}> {question}", channel=f"C{n % 4}")
            asked.append((f"C{n % 4}", mention["ts"], question))
            await slack.push_event(mention)
        victims = [a for a, to in zip(asked, slack.socket_mode.delivered_to, strict=True)
                   if to == 0]
        # Instance 0 is streaming its replies: each shows text, none is final yet.
        await slack.wait_for(lambda: all(
            any(TYPING_MARKER in m.text and len(m.text) > 40 for m in bot_posts(slack, c, ts))
            for c, ts, _ in victims), 30)
        proc = bots[0].process.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await slack.wait_for(lambda: all_final(slack, asked), 60)
        took = time.monotonic() - killed_at
        await asyncio.sleep(1.0)
        survivors = ["".join(bot.log) for bot in bots[1:]]

    assert victims
    assert_each_answered_once(slack, asked)  # the same message finished, no second one
    assert took < lease + 2 + 8  # the lease, a heartbeat, a reply streamed again
    retaken = sum(log.count("answering again") for log in survivors)
    assert retaken == len(victims)  # each taken over by exactly one instance
    assert len(model.requests) == 12 + len(victims)
    assert slack.rate_limited == 0


async def test_a_second_instance_on_postgresql_without_redis_refuses_to_start(
    tmp_path: Path
) -> None:
    model = FakeAnthropic()
    async with postgres_schema() as db, model, FakeSlack() as slack:
        first_dir, second_dir = tmp_path / "one", tmp_path / "two"
        first_dir.mkdir()
        second_dir.mkdir()
        lease = {"SUPPORTBOT_DB": db, "SUPPORTBOT_LEASE_SECONDS": "3"}  # a short wait first
        first = await Bot(BotProcess(first_dir, env_for(first_dir, slack, model, **lease),
                                     "run")).start()
        try:
            await slack.wait_connected(30)
            second = BotProcess(second_dir, env_for(second_dir, slack, model, **lease), "run")
            await second.start()
            code, _, err = await second.finish(30)
        finally:
            assert await first.stop() == 0
    assert code != 0
    assert "SUPPORTBOT_REDIS_URL" in err and "another supportbot instance" in err
    assert "Traceback" not in err


async def test_discord_shards_split_over_two_instances_each_event_answered_on_its_shard(
    tmp_path: Path, redis_prefix: str
) -> None:
    model = FakeAnthropic(default_words=12)
    async with postgres_schema() as db, model, FakeDiscord() as fake:
        guild_shard = shard_of(fake.guild_id, 2)
        bots = []
        try:
            for shard in (0, 1):
                folder = tmp_path / f"shard{shard}"
                folder.mkdir()
                env = bot_env(folder, ANTHROPIC_API_KEY="test-key",
                              ANTHROPIC_BASE_URL=model.base_url, DISCORD_BOT_TOKEN=fake.token,
                              DISCORD_API_URL=fake.api_url, DISCORD_GATEWAY_URL=fake.gateway_url,
                              SUPPORTBOT_DB=db, SUPPORTBOT_REDIS_URL=REDIS_URL,
                              SUPPORTBOT_REDIS_PREFIX=redis_prefix,
                              SUPPORTBOT_DISCORD_SHARDS=f"{shard}/2")
                bots.append(await Bot(BotProcess(folder, env, "run")).start())
                await fake.wait_for(lambda s=shard: len(fake.shards) == s + 1, 30)  # type: ignore[misc]
            # Each shard says it is ready (the guild's after its GUILD_CREATE).
            await fake.wait_for(lambda: all("connected to Discord" in "".join(bot.log)
                                            for bot in bots), 30)
            channel = fake.channel_ids[0]
            await fake.dispatch_message("how do I export my data?", mentions_bot=True)
            await fake.dispatch_message("my invoice is wrong", guild=False)
            dm = fake.dm_channel()

            def final(channel_id: int) -> bool:
                mine = [m for m in fake.messages(channel_id) if m.author_id == fake.bot_user_id]
                return len(mine) == 1 and TYPING_MARKER not in mine[0].content

            await fake.wait_for(lambda: final(channel) and final(dm), 30)
            await asyncio.sleep(1.0)
        finally:
            codes = [await bot.stop() for bot in bots]
        logs = ["".join(bot.log) for bot in bots]

    assert codes == [0, 0]
    assert len(model.requests) == 2  # each answered once, by the instance whose shard got it
    assert all(final(c) for c in (channel, dm))
    # Only the guild's shard is told about the guild (DMs come on shard 0 alone).
    assert f"in 1 servers (shards {guild_shard}-{guild_shard}/2)" in logs[guild_shard]
    assert f"in 0 servers (shards {1 - guild_shard}-{1 - guild_shard}/2)" in logs[1 - guild_shard]


async def test_a_follow_up_on_another_instance_waits_for_the_answer_before_it(
    tmp_path: Path, redis_prefix: str
) -> None:
    model = FakeAnthropic(default_words=WORDS, delta_interval=0.05)  # about 3 s a reply
    async with postgres_schema() as db, model, FakeSlack(update_limit=UPDATES) as slack, \
            instances(tmp_path, 2, slack, model, db, redis_prefix) as bots:
        mention = ev.app_mention(f"<@{BOT}> how do I rotate keys?", channel="C1")
        await slack.push_event(mention)
        await slack.wait_for(lambda: bool(bot_posts(slack, "C1", mention["ts"])), 20)
        await slack.push_event(ev.message("and on staging?", channel="C1",
                                          thread_ts=mention["ts"]))
        await slack.wait_for(lambda: len(model.requests) == 2 and all_final(
            slack, [("C1", mention["ts"], "")]) and len(bot_posts(slack, "C1", mention["ts"]))
            == 2, 30)
        logs = ["".join(bot.log) for bot in bots]

    assert slack.socket_mode.delivered_to[:2] in ([0, 1], [1, 0])  # one question each
    history = model.requests[1].body["messages"]
    first_answer = default_text("how do I rotate keys?", WORDS)
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert message_text(history[1]) == first_answer  # the whole answer, not a half
    assert not any("did not finish within" in log for log in logs)


async def test_metrics_health_and_readiness_are_served_on_the_metrics_port(
    tmp_path: Path, redis_prefix: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    model = FakeAnthropic(default_words=WORDS)
    async with postgres_schema() as db, model, FakeSlack() as slack, \
            instances(tmp_path, 1, slack, model, db, redis_prefix,
                      SUPPORTBOT_METRICS_PORT=str(port), SLACK_HTTP_HOST="127.0.0.1"):
        await wait_healthy(f"{base}/healthz")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 200 and (await response.json())["ready"] is True
            mention = ev.app_mention(f"<@{BOT}> how do I rotate keys?", channel="C1")
            await slack.push_event(mention)
            await slack.wait_for(lambda: all_final(slack, [("C1", mention["ts"], "")]), 20)
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200
                figures = parsed(await response.text())

    assert figures[("supportbot_replies_total", (("outcome", "answered"),
                                                 ("platform", "slack")))] == 1.0
    assert figures[("supportbot_first_text_seconds_count", (("platform", "slack"),))] == 1.0
    model_label = (("kind", "output"), ("model", "claude-haiku-5-5"))
    assert figures[("supportbot_tokens_total", model_label)] > WORDS
    assert figures[("supportbot_cost_usd_total", (("model", "claude-haiku-5-5"),))] > 0
    assert figures[("supportbot_replies_in_flight", ())] == 0.0
    waits = [v for (name, labels), v in figures.items()
             if name == "supportbot_budget_wait_seconds_count" and ("budget", "chat.update")
             in labels]
    assert waits and waits[0] >= 1  # the final edit waited its turn (0 s, but it was counted)


def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page by name and sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}
