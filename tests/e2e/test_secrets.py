"""No secret in any log line at any level: the bot run end to end at DEBUG with every
secret set, through a reconnect and a model that refuses the key, and its whole stderr
searched for each secret and for Socket Mode's one-use connection ticket."""

from __future__ import annotations

from pathlib import Path

from tests.databases import postgres_schema
from tests.e2e.processes import BotProcess, bot_env, chat_once
from tests.e2e.test_slack import BOT, Bot, answered, env_for
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.slack import FakeSlack

SECRETS = {
    "ANTHROPIC_API_KEY": "e2e-anthropic-key-8f3a9c21",
    "SLACK_SIGNING_SECRET": "e2e-signing-secret-77c1d0",
}


async def test_debug_logs_hold_no_secret_and_no_connection_ticket(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Rotate it under Settings."))
    async with FakeSlack(bot_token="xoxb-e2e-bot-token-5d1e",
                         app_token="xapp-e2e-app-token-93b2") as slack:
        env = env_for(tmp_path, slack, anthropic, LOG_LEVEL="DEBUG", **SECRETS)
        bot = await Bot(BotProcess(tmp_path, env, "run")).start()
        try:
            await slack.wait_connected(20)
            first = ev.app_mention(f"<@{BOT}> how do I rotate my key?", channel="C1")
            await slack.push_event(first)
            await answered(slack, "C1", first["ts"])
            # Slack refreshes Socket Mode connections: a new URL with a new ticket.
            connections = slack.count("apps.connections.open")
            await slack.send_disconnect()
            await slack.wait_for(lambda: slack.count("apps.connections.open") > connections, 20)
            await slack.wait_connected(20)
            second = ev.app_mention(f"<@{BOT}> and the old one?", channel="C1")
            await slack.push_event(second)
            await answered(slack, "C1", second["ts"])
        finally:
            code = await bot.stop()
    log = "".join(bot.log)
    assert code == 0, log
    assert "DEBUG" in log and "socket" in log.lower()  # the debug lines are there to search
    for name, value in {**SECRETS, "SLACK_BOT_TOKEN": slack.bot_token,
                        "SLACK_APP_TOKEN": slack.app_token}.items():
        assert value not in log, f"{name} leaked into the log"
    assert "ticket=" not in log


async def test_the_database_password_is_in_no_log_line_or_message(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    # PostgreSQL at DEBUG, the password given as a parameter (trust auth lets any through):
    # a chat, then `check`; neither the output nor the log may hold it.
    anthropic.script(Reply(text="Under Settings."))
    password = "e2e-db-password-4c7e"
    async with postgres_schema() as url:
        db = f"{url}&password={password}"
        env = bot_env(tmp_path, ANTHROPIC_API_KEY="test-key",
                      ANTHROPIC_BASE_URL=anthropic.base_url, LOG_LEVEL="DEBUG",
                      SUPPORTBOT_DB=db)
        out, err = await chat_once(tmp_path, env, "where do I rotate my key?")
        check = BotProcess(tmp_path, env, "check")
        await check.start()
        _, check_out, check_err = await check.finish(60)
    assert "Under Settings." in out and "DEBUG" in err
    for text in (out, err, check_out, check_err):
        assert password not in text
    assert "password=***" in check_out
