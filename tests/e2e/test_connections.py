"""Connections that drop while answers stream, end to end: Slack refreshing the Socket Mode
connection and the Discord gateway closing. The bot reconnects on its own, the answer in
flight ends complete, and questions after the drop are answered once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.streaming import TYPING_MARKER
from tests.e2e.processes import BotProcess, bot_env
from tests.e2e.test_discord import answered as discord_answered
from tests.e2e.test_discord import bot_messages, discord_bot
from tests.e2e.test_platform_faults import (
    DISCORD_CHANNEL,
    LONG,
    discord_long_answer_showing,
    slack_long_answer_showing,
)
from tests.e2e.test_slack import BOT, answered, bot_for, bot_posts
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack


async def test_slack_refresh_mid_answer_reconnects_and_the_answer_ends_complete(
    tmp_path: Path,
) -> None:
    model = FakeAnthropic(delta_interval=0.05)
    model.script(Reply(text=LONG, when="long"), Reply(text="After the refresh.", when="after"))
    async with FakeSlack() as slack, model, bot_for(tmp_path, slack, model):
        first = await slack_long_answer_showing(slack)
        opened = slack.count("apps.connections.open")
        await slack.send_disconnect()  # Slack recycles the connection
        await slack.wait_for(lambda: slack.count("apps.connections.open") > opened, 15)
        await slack.wait_connected(15)
        assert await answered(slack, "C1", first["ts"]) == LONG  # the reply in flight
        second = ev.app_mention(f"<@{BOT}> and after?", channel="C1")
        await slack.push_event(second)
        assert await answered(slack, "C1", second["ts"]) == "After the refresh."
        await asyncio.sleep(0.5)
    assert len(model.requests) == 2  # each question once
    assert not any(TYPING_MARKER in m.text for m in bot_posts(slack, "C1", first["ts"]))


async def test_discord_gateway_drop_mid_answer_resumes_and_replays_what_it_missed(
    tmp_path: Path,
) -> None:
    model = FakeAnthropic(delta_interval=0.05)
    model.script(Reply(text=LONG, when="long"), Reply(text="Sent while away.", when="away"))
    channel = DISCORD_CHANNEL
    async with FakeDiscord() as fake, model, \
            discord_bot(tmp_path, fake, model, DISCORD_MESSAGE_CONTENT="true"):
        await discord_long_answer_showing(fake)
        before = fake.identifies
        await fake.drop_gateway(4000)  # "unknown error": the client reconnects and RESUMEs
        await fake.dispatch_message("sent while away?", mentions_bot=True)  # kept for it
        await fake.wait_for(lambda: fake.resumes == 1, 20)
        await fake.wait_for(discord_answered(fake, channel, "Sent while away."), 15)
        await fake.wait_for(discord_answered(fake, channel, LONG), 15)  # the reply in flight
        await asyncio.sleep(0.5)
    assert fake.identifies == before  # resumed, not a new session
    assert len(model.requests) == 2  # each question once
    assert not any(TYPING_MARKER in m.content for m in bot_messages(fake, channel))


async def test_discord_gateway_asking_for_a_new_session_is_identified_again(
    tmp_path: Path,
) -> None:
    model = FakeAnthropic(delta_interval=0.05)
    model.script(Reply(text=LONG, when="long"), Reply(text="After the drop.", when="after"))
    channel = DISCORD_CHANNEL
    async with FakeDiscord() as fake, model, \
            discord_bot(tmp_path, fake, model, DISCORD_MESSAGE_CONTENT="true"):
        await discord_long_answer_showing(fake)
        before = fake.identifies
        fake.refuse_resumes()
        await fake.drop_gateway(4009)  # "session timed out": a new session is needed
        await fake.wait_for(lambda: fake.identifies > before, 20)
        await fake.wait_for(discord_answered(fake, channel, LONG), 15)  # the reply in flight
        await fake.dispatch_message("and after?", mentions_bot=True)
        await fake.wait_for(discord_answered(fake, channel, "After the drop."), 15)
        await asyncio.sleep(0.5)
    assert len(model.requests) == 2
    assert not any(TYPING_MARKER in m.content for m in bot_messages(fake, channel))


@pytest.mark.parametrize(("code", "says"), [
    (4004, "DISCORD_BOT_TOKEN"),
    (4011, "needs sharding"),
    (4014, "Message Content Intent"),
])
async def test_a_gateway_close_discord_will_not_take_back_stops_the_bot_saying_why(
    tmp_path: Path, code: int, says: str
) -> None:
    async with FakeDiscord() as fake, FakeAnthropic() as model:
        env = bot_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=model.base_url,
                      DISCORD_BOT_TOKEN=fake.token, DISCORD_API_URL=fake.api_url,
                      DISCORD_GATEWAY_URL=fake.gateway_url)
        bot = await BotProcess(tmp_path, env, "run").start()
        try:
            await fake.wait_ready(20)
            await fake.drop_gateway(code)
            assert bot.proc is not None
            exit_code = await asyncio.wait_for(bot.proc.wait(), 20)
            _, err = await bot.proc.communicate()
        finally:
            await bot.stop()
    log = err.decode()
    assert exit_code == 1 and says in log and "Traceback" not in log
    assert fake.identifies == 1  # it did not try again against Discord's refusal
