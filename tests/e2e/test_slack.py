"""`supportbot run` as a subprocess against the local fake Slack and fake Anthropic servers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from bot.mrkdwn import to_mrkdwn
from bot.streaming import TYPING_MARKER
from tests.e2e.processes import BotProcess, bot_env
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, Reply, message_text
from tests.fakes.anthropic_text import default_text
from tests.fakes.slack import FakeMessage, FakeSlack

BOT = "UBOT"
SECRET = "e2e-signing-secret"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class Bot:
    """The bot process plus everything it wrote to stderr (drained so it never blocks)."""

    def __init__(self, process: BotProcess) -> None:
        self.process = process
        self.log: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> Bot:
        await self.process.start()
        self._drain = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        proc = self.process.proc
        assert proc is not None and proc.stderr is not None
        for _ in range(100_000):  # one pass per log line; ends at EOF
            line = await proc.stderr.readline()
            if not line:
                return
            self.log.append(line.decode(errors="replace"))

    async def stop(self) -> int | None:
        """SIGTERM and wait for a clean exit (killed if it takes too long); the exit code."""
        proc = self.process.proc
        code = None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                code = await asyncio.wait_for(proc.wait(), 20)
        await self.process.stop()
        if self._drain is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._drain, 5)
        return code


def env_for(tmp: Path, slack: FakeSlack, anthropic: FakeAnthropic, **extra: str) -> dict[str, str]:
    base = {
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": anthropic.base_url,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_API_URL": slack.api_url,
        "LOG_LEVEL": "WARNING",
    }
    return bot_env(tmp, **{**base, **extra})


@contextlib.asynccontextmanager
async def bot_for(
    tmp: Path, slack: FakeSlack, anthropic: FakeAnthropic, **extra: str
) -> AsyncIterator[Bot]:
    """The bot in Socket Mode, connected to the fake before the test goes on."""
    bot = await Bot(BotProcess(tmp, env_for(tmp, slack, anthropic, **extra), "run")).start()
    try:
        await slack.wait_connected(20)
        yield bot
    finally:
        code = await bot.stop()
        assert code == 0, "".join(bot.log)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def bot_posts(slack: FakeSlack, channel: str, thread: str) -> list[FakeMessage]:
    return [m for m in slack.messages(channel, thread) if m.user == BOT]


def finished(slack: FakeSlack, channel: str, thread: str, count: int = 1) -> Callable[[], bool]:
    """True once the bot's messages in the thread number `count` and none shows the marker."""

    def check() -> bool:
        posts = bot_posts(slack, channel, thread)
        return len(posts) >= count and not any(TYPING_MARKER in m.text for m in posts)

    return check


async def answered(slack: FakeSlack, channel: str, thread: str, count: int = 1) -> str:
    """Wait for the bot's finished reply in the thread; its text (pages joined by newlines)."""
    await slack.wait_for(finished(slack, channel, thread, count), 20)
    return "\n".join(m.text for m in bot_posts(slack, channel, thread))


# ----- mentions, follow-ups and DMs ------------------------------------------------------------


async def test_mention_is_answered_in_a_thread_under_it(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Open **Settings** and click *Rotate*."))
    async with bot_for(tmp_path, slack, anthropic):
        mention = ev.app_mention(f"<@{BOT}> how do I rotate my API key?", channel="C1")
        await slack.push_event(mention)
        text = await answered(slack, "C1", mention["ts"])
    assert text == "Open *Settings* and click _Rotate_."
    [reply] = bot_posts(slack, "C1", mention["ts"])
    assert reply.thread_ts == mention["ts"]
    question = anthropic.requests[-1].question()
    assert question == "how do I rotate my API key?"  # the @mention itself is stripped


async def test_mention_inside_a_thread_reads_it_once_and_replies_there(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    parent = ev.next_ts()
    slack.add_history("C1", [
        {"ts": parent, "text": "Our deploys fail with error E42", "user": "U1"},
        {"ts": ev.next_ts(), "text": "Same here since Monday", "user": "U2", "thread_ts": parent},
    ])
    async with bot_for(tmp_path, slack, anthropic):
        first = ev.app_mention(f"<@{BOT}> any idea?", user="U2", channel="C1", thread_ts=parent)
        await slack.push_event(first)
        await answered(slack, "C1", parent)
        again = ev.app_mention(f"<@{BOT}> still there?", user="U2", channel="C1", thread_ts=parent)
        await slack.push_event(again)
        await answered(slack, "C1", parent, count=2)
    assert all(m.thread_ts == parent for m in bot_posts(slack, "C1", parent))
    first_question = anthropic.requests[0].question()
    assert "Earlier in this Slack thread" in first_question
    assert "Our deploys fail with error E42" in first_question and "since Monday" in first_question
    assert first_question.endswith("any idea?")
    assert slack.count("conversations.replies") == 1  # read once, then the store has it
    history = anthropic.requests[1].body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]


async def test_follow_up_in_the_thread_continues_without_a_mention(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Use the dashboard."), Reply(text="Staging works the same way."))
    async with bot_for(tmp_path, slack, anthropic):
        mention = ev.app_mention(f"<@{BOT}> how do I rotate keys?", channel="C1")
        await slack.push_event(mention)
        await answered(slack, "C1", mention["ts"])
        stranger = ev.message("unrelated chatter", channel="C1", thread_ts=ev.next_ts())
        await slack.push_event(stranger)
        await slack.push_event(ev.message("and on staging?", channel="C1", thread_ts=mention["ts"]))
        text = await answered(slack, "C1", mention["ts"], count=2)
    assert text.endswith("Staging works the same way.")
    assert len(anthropic.requests) == 2  # the thread the bot is not part of got nothing
    messages = anthropic.requests[-1].body["messages"]
    assert [message_text(m) for m in messages] == [
        "how do I rotate keys?", "Use the dashboard.", "and on staging?"
    ]


async def test_each_dm_opens_a_thread_and_replies_in_it_continue(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    async with bot_for(tmp_path, slack, anthropic):
        first = ev.message("my invoice is wrong", channel="D1")
        await slack.push_event(first)
        await answered(slack, "D1", first["ts"])
        await slack.push_event(ev.message("it says $0", channel="D1", thread_ts=first["ts"]))
        await answered(slack, "D1", first["ts"], count=2)
        second = ev.message("new topic: SSO", channel="D1")
        await slack.push_event(second)
        await answered(slack, "D1", second["ts"])
    assert {m.thread_ts for m in bot_posts(slack, "D1", first["ts"])} == {first["ts"]}
    continued, fresh = anthropic.requests[1].body, anthropic.requests[2].body
    assert len(continued["messages"]) == 3
    assert [message_text(m) for m in fresh["messages"]] == ["new topic: SSO"]


# ----- answering once --------------------------------------------------------------------------


async def test_twin_and_redelivered_events_are_answered_once_even_after_restart(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    mention = ev.app_mention(f"<@{BOT}> reset my password", channel="C1")
    twin = ev.message(mention["text"], channel="C1", ts=mention["ts"])  # message.channels copy
    async with bot_for(tmp_path, slack, anthropic):
        await slack.push_event(mention)
        await slack.push_event(twin)
        await slack.push_event(mention, retry_attempt=1)
        await answered(slack, "C1", mention["ts"])
        await ask_and_wait(slack, "D9")
    async with bot_for(tmp_path, slack, anthropic):
        await slack.push_event(mention, retry_attempt=2)
        await ask_and_wait(slack, "D8")  # processed after the redelivery
    assert len(bot_posts(slack, "C1", mention["ts"])) == 1
    questions = [r.question() for r in anthropic.requests]
    assert questions.count("reset my password") == 1


async def ask_and_wait(slack: FakeSlack, channel: str) -> None:
    """A fresh DM answered: proof that the events pushed before it were processed."""
    fresh = ev.message("are you there?", channel=channel)
    await slack.push_event(fresh)
    await answered(slack, channel, fresh["ts"])


async def test_own_edited_deleted_and_bot_messages_are_ignored(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    async with FakeSlack(echo_bot_messages=True) as slack:
        async with bot_for(tmp_path, slack, anthropic):
            mention = ev.app_mention(f"<@{BOT}> first question", channel="C1")
            await slack.push_event(mention)
            await answered(slack, "C1", mention["ts"])  # its own posts and edits echo back
            ts = mention["ts"]
            for event in (
                ev.message(f"<@{BOT}> edited", subtype="message_changed", ts=ts, channel="C1"),
                ev.message(subtype="message_deleted", ts=ts, channel="C1"),
                ev.message("beep", subtype="bot_message", channel="D1"),
                ev.message("from an app", user="U7", bot_id="B7", channel="D1"),
                ev.message("hello", user=BOT, bot_id="BBOT", channel="D1"),
                ev.message("joined", subtype="channel_join", channel="C1", thread_ts=ts),
            ):
                await slack.push_event(event)
            await ask_and_wait(slack, "D2")
        assert len(anthropic.requests) == 2
        assert len(bot_posts(slack, "C1", mention["ts"])) == 1


async def test_http_mode_checks_signatures_and_answers_signed_events(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    # A slow model: were the answer worked out before the ack, the ack would take 2 s.
    anthropic.script(Reply(text="Hello over HTTP.", first_token_delay=2.0))
    bot, url = await http_mode_bot(tmp_path, slack, anthropic)
    try:
        mention = ev.app_mention(f"<@{BOT}> hello over HTTP", channel="C1")
        body = ev.event_callback(mention)
        forged = await ev.send_signed_event(url, body, SECRET, bad_signature=True)
        challenge = await ev.send_signed_event(url, ev.url_verification("xyz"), SECRET)
        signed = await ev.send_signed_event(url, body, SECRET)
        retried = await ev.send_signed_event(url, body, SECRET, retry_num=1)
        await answered(slack, "C1", mention["ts"])
        await asyncio.sleep(0.3)  # a second answer would have started by now
    finally:
        code = await bot.stop()
    assert forged.status == 401
    assert challenge.json() == {"challenge": "xyz"}
    assert (signed.status, retried.status) == (200, 200)
    assert signed.elapsed < 1.0  # acknowledged at once, long before Slack's 3 s and the model
    assert len(bot_posts(slack, "C1", mention["ts"])) == 1 and len(anthropic.requests) == 1
    assert code == 0, "".join(bot.log)


async def http_mode_bot(
    tmp: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> tuple[Bot, str]:
    """The bot in HTTP mode on a free local port, healthy; and its Events API URL."""
    port = free_port()
    env = env_for(tmp, slack, anthropic, SLACK_APP_TOKEN="", SLACK_SIGNING_SECRET=SECRET,
                  PORT=str(port), SLACK_HTTP_HOST="127.0.0.1")
    bot = await Bot(BotProcess(tmp, env, "run")).start()
    try:
        await wait_healthy(f"http://127.0.0.1:{port}/healthz")
    except BaseException:
        await bot.stop()
        raise
    return bot, f"http://127.0.0.1:{port}/slack/events"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_healthy(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} never answered")


# ----- what the reply looks like ----------------------------------------------------------------


async def test_long_answer_splits_into_two_messages_with_code_fences_intact(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    code = "\n".join(f"    step_{n:03d}(config, retries=3)  # keep going" for n in range(100))
    answer = "Here is the script:\n\n```python\n" + code + "\n```\n\n" + "Done. " * 240
    assert 6_000 <= len(answer) <= 7_000
    anthropic.script(Reply(text=answer))
    async with bot_for(tmp_path, slack, anthropic):
        mention = ev.app_mention(f"<@{BOT}> give me the script", channel="C1")
        await slack.push_event(mention)
        await answered(slack, "C1", mention["ts"], count=2)
    pages = [m.text for m in bot_posts(slack, "C1", mention["ts"])]
    assert len(pages) == 2
    assert all(len(page.encode()) <= 4_000 for page in pages)
    assert all(page.count("```") % 2 == 0 for page in pages)  # every page closes its fence
    shown_code = [line for page in pages for line in page.split("\n") if "step_" in line]
    assert "\n".join(shown_code) == code


async def test_broadcast_mentions_in_model_output_never_ping(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Tell <!channel> and <!here>, <!everyone>, "
                                "<!subteam^S123|@support> and <@U999>; or just @here."))
    async with bot_for(tmp_path, slack, anthropic):
        mention = ev.app_mention(f"<@{BOT}> who should I tell?", channel="C1")
        await slack.push_event(mention)
        text = await answered(slack, "C1", mention["ts"])
    assert "<!" not in text and "<@" not in text
    assert "&lt;!channel&gt;" in text and re.search(r"@\u200bhere", text)


async def test_images_reach_the_model_and_other_files_are_named(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    shot = slack.add_file("screenshot.png", "image/png", PNG)
    pdf = slack.add_file("report.pdf", "application/pdf", b"%PDF-1.4 fake")
    huge = slack.add_file("huge.jpg", "image/jpeg", b"\xff\xd8" + b"0" * 4_000_000)
    slack.file_delay = 1.0  # a slow download: the ack must not wait for it
    async with bot_for(tmp_path, slack, anthropic):
        event = ev.message("what is this error?", channel="D1", subtype="file_share",
                           files=[shot, pdf, huge])
        envelope = await slack.push_event(event)
        await answered(slack, "D1", event["ts"])
    content = anthropic.requests[-1].body["messages"][-1]["content"]
    [image] = [block for block in content if block["type"] == "image"]
    assert base64.b64decode(image["source"]["data"]) == PNG
    assert image["source"]["media_type"] == "image/png"
    text = anthropic.requests[-1].question()  # the question's text (docs passages aside)
    assert text.startswith("what is this error?")
    assert "report.pdf was attached but I can't read that type of file" in text
    assert "huge.jpg is too large" in text
    assert [authorized for _, authorized in slack.downloads] == [True]  # only the PNG, with token
    assert slack.acks[envelope] < 0.5  # the download did not hold up the ack


async def test_a_slow_file_does_not_let_the_next_message_jump_the_queue(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="A screenshot.", when="screenshot"), Reply(text="Thanks.",
                                                                           when="ok"))
    slack.file_delay = 0.5
    shot = slack.add_file("screenshot.png", "image/png", PNG)
    async with bot_for(tmp_path, slack, anthropic):
        first = ev.message("see my screenshot", channel="D1", subtype="file_share", files=[shot])
        await slack.push_event(first)
        await slack.push_event(ev.message("ok", channel="D1", thread_ts=first["ts"]))
        await answered(slack, "D1", first["ts"], count=2)
    # The follow-up was answered second, with the screenshot question in its history.
    contents = [message_text(m) for m in anthropic.requests[-1].body["messages"]]
    assert contents[1:] == ["A screenshot.", "ok"]


# ----- pacing within Slack's limits ---------------------------------------------------------


async def test_many_replies_at_once_share_the_workspace_budget_without_429(
    tmp_path: Path, slack: FakeSlack
) -> None:
    # 20 replies editing once a second each would need ~60 edits in this window; the
    # workspace allows 50 a minute, so only a budget shared by all of them stays clear.
    async with FakeAnthropic(delta_interval=0.03, default_words=120) as model:
        async with bot_for(tmp_path, slack, model):
            mentions = [
                ev.app_mention(f"<@{BOT}> question number {n}?", channel=f"C{n % 4}")
                for n in range(20)
            ]
            for mention in mentions:
                await slack.push_event(mention)
            for mention in mentions:
                await slack.wait_for(finished(slack, mention["channel"], mention["ts"]), 60)
    assert slack.rate_limited == 0
    for n, mention in enumerate(mentions):
        (reply,) = bot_posts(slack, mention["channel"], mention["ts"])
        assert reply.text == to_mrkdwn(default_text(f"question number {n}?", 120))


async def test_a_429_is_honoured_and_the_final_text_is_exact(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=90, delta_interval=0.04))
    async with FakeSlack(update_limit=1, update_window=4.0) as slack:
        async with bot_for(tmp_path, slack, anthropic):
            mention = ev.app_mention(f"<@{BOT}> explain the limits", channel="C1")
            await slack.push_event(mention)
            text = await answered(slack, "C1", mention["ts"])
        updates = [c for c in slack.calls if c.method == "chat.update"]
    assert text == to_mrkdwn(anthropic.last_text_sent())
    limited = [c for c in updates if c.status == 429]
    assert limited, "the fake's tiny budget should have answered 429 once"
    after = [c.time for c in updates if c.time > limited[0].time]
    assert after and after[0] - limited[0].time >= 1.0  # the bot waited out Retry-After
    assert len(limited) == 1  # and did not hammer the API while it waited


async def test_first_visible_sign_within_150_ms_of_the_event(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    async with bot_for(tmp_path, slack, anthropic):
        delays = []
        for channel in ("C1", "C2", "D3"):
            mention = ev.app_mention(f"<@{BOT}> quick one", channel=channel)
            envelope = await slack.push_event(mention)
            await answered(slack, channel, mention["ts"])
            [sent] = [d.sent_at for d in slack.deliveries if d.envelope_id == envelope]
            posts = [c.time for c in slack.calls if c.method == "chat.postMessage"
                     and c.params.get("thread_ts") == mention["ts"]]
            delays.append(posts[0] - sent)
    assert max(delays) < 0.150, delays


# ----- native streaming and shutdown ------------------------------------------------------------


async def test_native_streaming_when_enabled(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=80, delta_interval=0.02, text=None))
    async with FakeSlack(native_streaming=True) as slack:
        async with bot_for(tmp_path, slack, anthropic, SLACK_NATIVE_STREAMING="true"):
            mention = ev.app_mention(f"<@{BOT}> stream it", channel="C1")
            await slack.push_event(mention)
            await slack.wait_for(lambda: slack.count("chat.stopStream") == 1, 20)
        [reply] = bot_posts(slack, "C1", mention["ts"])
    assert reply.text == anthropic.last_text_sent() and not reply.streaming
    assert reply.appends >= 1 and slack.count("chat.update") == 0
    actions = [e["action_id"] for b in reply.blocks or () for e in b.get("elements") or []]
    assert actions == ["supportbot_helpful", "supportbot_not_helpful", "supportbot_handoff"]


async def test_native_streaming_falls_back_to_updates_when_refused(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    async with bot_for(tmp_path, slack, anthropic, SLACK_NATIVE_STREAMING="true"):
        mention = ev.app_mention(f"<@{BOT}> stream it", channel="C1")
        await slack.push_event(mention)
        text = await answered(slack, "C1", mention["ts"])
    assert slack.count("chat.startStream", error="unknown_method") == 1
    assert text == to_mrkdwn(anthropic.last_text_sent())


async def test_sigterm_mid_reply_ends_it_with_a_note(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=400, delta_interval=0.05))
    bot = await Bot(BotProcess(tmp_path, env_for(tmp_path, slack, anthropic), "run")).start()
    try:
        await slack.wait_connected(20)
        mention = ev.app_mention(f"<@{BOT}> long answer please", channel="C1")
        await slack.push_event(mention)
        await slack.wait_for(lambda: slack.count("chat.update") >= 1, 20)
    finally:
        code = await bot.stop()
    assert code == 0, "".join(bot.log)
    [reply] = bot_posts(slack, "C1", mention["ts"])
    assert "Interrupted" in reply.text and TYPING_MARKER not in reply.text


async def test_check_reports_the_workspace(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    env = env_for(tmp_path, slack, anthropic, SUPPORTBOT_ESCALATION_SLACK_CHANNEL="C0ESC",
                  SUPPORTBOT_ESCALATION_MENTION="S0TEAM")
    bot = BotProcess(tmp_path, env, "check")
    await bot.start()
    try:
        code, out, err = await bot.finish()
    finally:
        await bot.stop()
    assert code == 0, out + err
    assert "slack: handovers mention @support-team (S0TEAM)" in out
    assert "all checks passed" in out
    wrong = BotProcess(tmp_path, {**env, "SUPPORTBOT_ESCALATION_MENTION": "S0NOPE"}, "check")
    await wrong.start()
    try:
        code, warned, _ = await wrong.finish()
    finally:
        await wrong.stop()
    assert code == 0 and "WARNING: SUPPORTBOT_ESCALATION_MENTION=S0NOPE" in warned
    assert "checks passed, with warnings" in warned
    assert "slack: connected to workspace Fake Workspace (T0001) as @supportbot" in out
    assert "slack: Socket Mode: the app token opens a connection" in out
    assert slack.bot_token not in out + err


async def test_a_refused_app_token_stops_the_bot_with_a_clear_message(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    env = env_for(tmp_path, slack, anthropic, SLACK_APP_TOKEN="xapp-revoked-token")
    bot = BotProcess(tmp_path, env, "run")
    await bot.start()
    try:
        code, _, err = await bot.finish()
    finally:
        await bot.stop()
    assert code != 0
    assert "Slack refused SLACK_APP_TOKEN (invalid_auth)" in err
    assert "xapp-revoked-token" not in err
    assert "Unclosed" not in err  # every session the Socket Mode handler opened was closed
