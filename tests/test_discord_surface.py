"""Discord surfaces: page diffs (pure), and the real client in-process against the fakes for
pacing under load and the hand-over before an interaction token expires."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.discord.client import SupportClient, check, local_endpoints
from bot.adapters.discord.events import invite_permissions
from bot.adapters.discord.pages import NOTE_CONTINUED, PageOp, page_ops
from bot.adapters.discord.replies import DiscordTiming, Replies
from bot.config import Settings, load_settings
from bot.conversation import Arrival, Incoming, Platform
from bot.runtime import open_runtime
from bot.streaming import TYPING_MARKER
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.discord import FakeDiscord, FakeMessage

CHANNEL_ROUTES = (
    "POST /channels/{channel_id}/messages",
    "PATCH /channels/{channel_id}/messages/{message_id}",
)


def settings_for(tmp_path: Path, fake: FakeDiscord, model: FakeAnthropic, **env: str) -> Settings:
    return load_settings(
        {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": model.base_url,
            "SUPPORTBOT_DB": str(tmp_path / "bot.db"),
            "SUPPORTBOT_FALLBACK_MODEL": "",
            "DISCORD_BOT_TOKEN": fake.token,
            "DISCORD_API_URL": fake.api_url,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            **env,
        },
        dotenv_path=None,
    )


@contextlib.asynccontextmanager
async def live_client(settings: Settings, fake: FakeDiscord, timing: DiscordTiming
                      ) -> AsyncIterator[SupportClient]:
    """SupportClient connected to the fake in this process, closed cleanly afterwards."""
    async with open_runtime(settings) as runtime:
        with local_endpoints(settings):
            client = SupportClient(runtime.ports(Platform.DISCORD), timing,
                                   guild_ready_timeout=0.05)
            task = asyncio.create_task(client.start(fake.token))
            try:
                await fake.wait_ready(10)
                await asyncio.sleep(0.1)
                yield client
            finally:
                await client.close()
                await asyncio.wait_for(task, 10)


def done(message: FakeMessage) -> bool:
    return bool(message.content) and TYPING_MARKER not in message.content


def shown(messages: list[FakeMessage]) -> list[str]:
    return [m.content for m in messages]


# --- page diffs ------------------------------------------------------------------------------


def test_page_ops_edit_only_what_changed_and_create_new_pages() -> None:
    assert page_ops(["a", "b ▍"], ["a", "bc", "d ▍"], final=False) == [
        PageOp("edit", 1, "bc"),
        PageOp("create", 2, "d ▍"),
    ]
    assert page_ops(["a"], ["a"], final=True) == []


def test_page_ops_delete_surplus_pages_only_when_final() -> None:
    assert page_ops(["a", "b", "c"], ["x"], final=False) == [PageOp("edit", 0, "x")]
    assert page_ops(["a", "b", "c"], ["x"], final=True) == [
        PageOp("edit", 0, "x"),
        PageOp("delete", 2),
        PageOp("delete", 1),
    ]


# --- the live client --------------------------------------------------------------------------


async def test_many_replies_in_one_channel_share_its_bucket_without_429(tmp_path: Path) -> None:
    fake = FakeDiscord(channel_bucket_limit=5, channel_bucket_window=1.0)
    model = FakeAnthropic(delta_interval=0.02, default_words=120)
    timing = DiscordTiming(channel_writes=5, channel_window=1.0)
    async with fake, model:
        settings = settings_for(tmp_path, fake, model)
        async with live_client(settings, fake, timing):
            asked = [await fake.dispatch_message(f"question {i}?", mentions_bot=True)
                     for i in range(8)]

            def replies() -> list[FakeMessage]:
                return [m for m in fake.messages(fake.channel_ids[0]) if m.author_bot]

            def finished() -> bool:
                done = [m for m in replies() if m.content and TYPING_MARKER not in m.content]
                return len(done) == len(asked)

            await fake.wait_for(finished, 30)

    writes = sorted(c.time for c in fake.calls if c.route in CHANNEL_ROUTES)
    busiest = max(sum(1 for t in writes if start <= t < start + 1.0) for start in writes)
    assert fake.rate_limited == 0 and busiest <= 5
    for message in replies():
        question = message.history[-1].split('"')[1]
        assert message.content.startswith(f'Answer to "{question}":')
        assert message.content.endswith(".")


async def test_replies_waiting_in_line_keep_typing_and_are_written_once_whole(
    tmp_path: Path,
) -> None:
    # One write a second for six replies whose answers stream for ~1 s: most wait in line
    # past their model's end. They must not post their first words then edit (two writes
    # where one does), and the channel must not look idle meanwhile.
    fake = FakeDiscord(channel_bucket_limit=2, channel_bucket_window=1.0)
    model = FakeAnthropic(delta_interval=0.03, default_words=60)
    timing = DiscordTiming(channel_writes=2, channel_window=1.0, typing_every=0.3)
    async with fake, model:
        settings = settings_for(tmp_path, fake, model)
        async with live_client(settings, fake, timing):
            for i in range(6):
                await fake.dispatch_message(f"question {i}?", mentions_bot=True)
            channel = fake.channel_ids[0]

            def replies() -> list[FakeMessage]:
                return [m for m in fake.messages(channel) if m.author_bot]

            await fake.wait_for(lambda: len(replies()) == 6 and all(map(done, replies())), 30)

    writes = sum(len(m.history) for m in replies())
    assert writes <= 6 + 2  # at most the first ones streamed; the rest went out whole, once
    for message in replies():
        question = message.content.split('"')[1]
        assert message.content.startswith(f'Answer to "{question}":')
        assert message.content.endswith(".")
    last = max(m.created_at for m in replies())
    typing = [at for channel_id, at in fake.typing if channel_id == channel]
    assert any(last - 1.0 < at < last for at in typing)  # still "typing…" until the last one
    assert fake.rate_limited == 0


async def test_a_write_discord_is_slow_to_answer_is_logged_and_still_awaited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeDiscord()
    model = FakeAnthropic()
    model.script(Reply(text="Slow but whole."))
    async with fake, model:
        fake.write_delay = 0.5  # Discord applies each write at once but answers late
        settings = settings_for(tmp_path, fake, model)
        with caplog.at_level(logging.WARNING, logger="bot.adapters.discord.surface"):
            async with live_client(settings, fake, DiscordTiming(slow_write=0.15)):
                await fake.dispatch_message("slow?", mentions_bot=True)
                channel = fake.channel_ids[0]
                await fake.wait_for(lambda: "Slow but whole." in shown(fake.messages(channel)), 10)
                await asyncio.sleep(0.6)  # the last answer comes back too

    assert f"Discord has not answered the create of page 1 in channel {channel} for 0.15 s" \
        in caplog.text  # said, not silent...
    (reply,) = [m for m in fake.messages(channel) if m.author_bot]
    assert reply.content == "Slow but whole." and fake.rate_limited == 0  # ...and not cut


async def test_ask_continues_in_the_channel_before_the_token_expires(tmp_path: Path) -> None:
    fake = FakeDiscord(interaction_token_ttl=60)
    model = FakeAnthropic(delta_interval=0.03, default_words=120)
    async with fake, model:
        settings = settings_for(tmp_path, fake, model)
        async with live_client(settings, fake, DiscordTiming(handoff_after=1.0)):
            ask = await fake.dispatch_slash("ask", {"question": "Explain the export."})
            private = await fake.dispatch_slash("ask", {"question": "Quietly?", "private": True})
            channel, dm = fake.channel_ids[0], fake.dm_channel()

            def continued() -> list[FakeMessage]:
                return [m for m in fake.messages(channel) if m.interaction_id is None]

            def finished() -> bool:
                return all(
                    msgs and TYPING_MARKER not in msgs[-1].content
                    for msgs in (continued(), fake.messages(dm))
                )

            await fake.wait_for(finished, 15)

    original = fake.interaction_original(ask.id)
    assert original is not None and original.content == NOTE_CONTINUED
    assert any(TYPING_MARKER in text for text in original.history)  # it streamed there first
    (rest,) = continued()
    assert rest.content.startswith('Answer to "Explain the export."') and rest.content[-1] == "."
    (secret,) = fake.messages(dm)  # a private answer continues in a DM, not in the channel
    pointer = fake.interaction_original(private.id)
    assert pointer is not None and pointer.content == NOTE_CONTINUED and pointer.flags & 64
    assert secret.content.startswith('Answer to "Quietly?"')
    assert fake.rate_limited == 0


async def test_an_expired_token_also_hands_over(tmp_path: Path) -> None:
    fake = FakeDiscord(interaction_token_ttl=1.0)
    model = FakeAnthropic()
    model.script(Reply(text="Late but complete.", first_token_delay=1.5))
    async with fake, model:
        settings = settings_for(tmp_path, fake, model)
        async with live_client(settings, fake, DiscordTiming()):
            await fake.dispatch_slash("ask", {"question": "Slow one?"})
            channel = fake.channel_ids[0]

            def answered() -> bool:
                return "Late but complete." in shown(fake.messages(channel))

            await fake.wait_for(answered, 10)

    statuses = [c.status for c in fake.calls if "/webhooks/" in c.path]
    assert 401 in statuses  # the token had died; the answer still arrived


async def test_dm_conversation_starts_over_after_the_idle_gap(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, FakeAnthropic() as model:
        idle = settings_for(tmp_path, fake, model, SUPPORTBOT_SESSION_IDLE_HOURS="0.00002")
        async with open_runtime(idle) as runtime:
            replies = Replies(runtime.ports(Platform.DISCORD), DiscordTiming())
            first = await replies.dm_conversation(7, 70)
            assert await replies.dm_conversation(7, 70) == first  # nothing said yet
            incoming = Incoming(first, "7", "hello", "m1", Arrival.DM)
            await runtime.store.record_question(incoming, 5)
            await asyncio.sleep(0.1)  # longer than 0.00002 hours
            later = await replies.dm_conversation(7, 70)
            await replies.reset_dm(7)
            after_reset = await replies.dm_conversation(7, 70)

    assert first.thread == "1" and later.thread == "2" and after_reset.thread == "3"


async def test_check_prints_the_invite_url_and_rejects_a_bad_token(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, FakeAnthropic() as model:
        lines = await check(settings_for(tmp_path, fake, model))
        wrong = settings_for(tmp_path, fake, model, DISCORD_BOT_TOKEN="not-the-token")
        try:
            await check(wrong)
            rejected = False
        except Exception as error:  # discord.LoginFailure
            rejected = "Improper token" in str(error)

    invite = (
        f"invite: https://discord.com/oauth2/authorize?client_id={fake.application_id}"
        f"&scope=bot%20applications.commands&permissions={invite_permissions()}"
    )
    assert invite in lines
    assert any("supportbot" in line and str(fake.application_id) in line for line in lines)
    assert rejected


async def test_typing_is_renewed_while_the_model_thinks_and_stops_once_text_shows(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord()
    model = FakeAnthropic(delta_interval=0.03)
    model.script(Reply(words=60, first_token_delay=1.3))  # ~1.8 s of text after the think
    async with fake, model:
        settings = settings_for(tmp_path, fake, model)
        async with live_client(settings, fake, DiscordTiming(typing_every=0.3)):
            await fake.dispatch_message("a hard one?", mentions_bot=True)
            channel = fake.channel_ids[0]

            def replied() -> list[FakeMessage]:
                return [m for m in fake.messages(channel) if m.author_bot]

            await fake.wait_for(lambda: any(map(done, replied())), 15)

    typing = [at for channel_id, at in fake.typing if channel_id == channel]
    (reply,) = replied()
    assert len(reply.history) >= 2  # it streamed: a partial text, then the final one
    assert len([at for at in typing if at < reply.created_at]) >= 3  # kept alive ~1.3 s
    assert len([at for at in typing if at > reply.created_at]) <= 1  # and stopped with text


async def test_replies_in_one_channel_share_one_typing_indicator(tmp_path: Path) -> None:
    # Typing shows for the bot in the whole channel, and its route has its own rate limit:
    # five replies thinking at once must not each keep their own indicator alive.
    fake = FakeDiscord()
    model = FakeAnthropic()
    model.script(*[Reply(text=f"Answer {i}.", first_token_delay=1.3) for i in range(5)])
    async with fake, model:
        settings = settings_for(tmp_path, fake, model)
        async with live_client(settings, fake, DiscordTiming(typing_every=0.3)):
            for i in range(5):
                await fake.dispatch_message(f"question {i}?", mentions_bot=True)
            channel = fake.channel_ids[0]

            def replied() -> list[FakeMessage]:
                return [m for m in fake.messages(channel) if m.author_bot and done(m)]

            await fake.wait_for(lambda: len(replied()) == 5, 15)

    typing = [at for channel_id, at in fake.typing if channel_id == channel]
    first_text = min(m.created_at for m in replied())
    # One indicator renewed every 0.3 s over the ~1.3 s think: about five triggers, where
    # five replies each renewing their own would make about twenty-five.
    assert 3 <= len([at for at in typing if at < first_text]) <= 8
    # Five finals in one 5-write bucket, then an immediate shutdown: each answer shown once,
    # complete (a write spending the bucket's last slot would come back seconds late and be
    # cut by the shutdown, leaving an "interrupted" second message).
    assert sorted(shown(replied())) == [f"Answer {i}." for i in range(5)]
