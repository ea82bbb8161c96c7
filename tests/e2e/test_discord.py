"""`supportbot run` as a subprocess against the local fake Discord and fake Anthropic servers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from bot.streaming import TYPING_MARKER
from tests.e2e.processes import BotProcess, bot_env
from tests.fakes.anthropic import FakeAnthropic, Reply, default_text, message_text
from tests.fakes.discord import FakeDiscord, FakeMessage

EPHEMERAL = 1 << 6
OTHER_USER = 1_100_000_000_000_000_400
OTHER_BOT = 1_100_000_000_000_000_500
INTERACTION_TOKEN_PREFIX = "aW50ZXJhY3Rpb24"  # how the fake's interaction tokens begin


@contextlib.asynccontextmanager
async def discord_bot(
    workdir: Path, fake: FakeDiscord, model: FakeAnthropic, **env: str
) -> AsyncIterator[BotProcess]:
    """The bot connected to the fakes; on exit it must stop cleanly and never log the token."""
    before = fake.identify
    settings = bot_env(
        workdir,
        ANTHROPIC_API_KEY="test-key",
        ANTHROPIC_BASE_URL=model.base_url,
        DISCORD_BOT_TOKEN=fake.token,
        DISCORD_API_URL=fake.api_url,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        **env,
    )
    bot = await BotProcess(workdir, settings, "run").start()
    try:
        await _identified(bot, fake, before)
        yield bot
        log = await _terminate(bot)
        (workdir / "bot.log").write_text(log)  # kept beside the test's DB for a failure's story
        assert fake.token not in log
        assert INTERACTION_TOKEN_PREFIX not in log  # interaction tokens (in webhook URLs)
    finally:
        await bot.stop()


async def _identified(bot: BotProcess, fake: FakeDiscord, before: object) -> None:
    assert bot.proc is not None
    for _ in range(2000):  # 20 s
        if fake.identify is not None and fake.identify is not before:
            break
        if bot.proc.returncode is not None:
            raise AssertionError(f"bot exited: {await _stderr(bot)}")
        await asyncio.sleep(0.01)
    else:
        raise TimeoutError("the bot never identified on the gateway")
    await asyncio.sleep(0.1)  # READY and GUILD_CREATE reach the bot before the test's events


async def _terminate(bot: BotProcess) -> str:
    assert bot.proc is not None
    bot.proc.terminate()
    code = await asyncio.wait_for(bot.proc.wait(), 20)
    log = await _stderr(bot)
    assert code == 0, log
    return log


async def _stderr(bot: BotProcess) -> str:
    assert bot.proc is not None and bot.proc.stderr is not None
    return (await bot.proc.stderr.read()).decode()


def bot_messages(fake: FakeDiscord, channel_id: int) -> list[FakeMessage]:
    """The bot's own channel messages (not interaction responses)."""
    return [
        m for m in fake.messages(channel_id)
        if m.author_id == fake.bot_user_id and m.interaction_id is None
    ]


def done(message: FakeMessage | None) -> bool:
    """A reply whose text is final: something shown, and no typing marker left."""
    return message is not None and bool(message.content) and TYPING_MARKER not in message.content


def answered(fake: FakeDiscord, channel_id: int, text: str) -> Callable[[], bool]:
    return lambda: any(m.content == text for m in bot_messages(fake, channel_id))


def asked(model: FakeAnthropic) -> list[object]:
    """The conversation the model saw last, as plain contents."""
    return [message_text(m) for m in model.requests[-1].body["messages"]]


def content_lines(text: str) -> list[str]:
    """The text's non-empty lines other than fence markers (which page breaks may add)."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("```")]


async def test_ask_defers_at_once_then_streams_into_the_original_response(
    tmp_path: Path,
) -> None:
    model = FakeAnthropic(first_token_delay=1.0, delta_interval=0.02, default_words=150)
    # At DEBUG discord.py logs webhook URLs, which carry interaction tokens: they must be masked.
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model, LOG_LEVEL="DEBUG"):
        ask = await fake.dispatch_slash("ask", {"question": "How do I reset my password?"})
        private = await fake.dispatch_slash("ask", {"question": "My invoice?", "private": True})
        await fake.wait_for(
            lambda: all(done(fake.interaction_original(i.id)) for i in (ask, private)), 15
        )

    callback = fake.interaction_callback(ask.id)
    assert callback is not None and callback[0] == 5  # deferred ("thinking…")...
    assert callback[1] < 0.5  # ...long before the model's first token (1 s)
    original = fake.interaction_original(ask.id)
    assert original is not None and original.history[0] == ""
    assert original.content.startswith('Answer to "How do I reset my password?":')
    partials = [text for text in original.history if text.endswith(TYPING_MARKER)]
    assert len(partials) >= 2 and len(original.history) == len(partials) + 2
    edits = [c.time for c in fake.calls if c.method == "PATCH" and ask.token in c.path]
    gaps = [later - earlier for earlier, later in zip(edits, edits[1:-1], strict=False)]
    assert gaps and min(gaps) >= 0.9  # partial edits about once a second
    secret = fake.interaction_original(private.id)
    assert secret is not None and secret.flags & EPHEMERAL and done(secret)
    assert fake.rate_limited == 0


async def test_slow_model_still_beats_the_interaction_deadline(tmp_path: Path) -> None:
    model = FakeAnthropic(first_token_delay=5.0, default_words=20)
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model):
        ask = await fake.dispatch_slash("ask", {"question": "Is the API down?"})
        await fake.wait_for(lambda: done(fake.interaction_original(ask.id)), 15)

    callback = fake.interaction_callback(ask.id)
    assert callback is not None and callback[0] == 5 and callback[1] < 3.0
    original = fake.interaction_original(ask.id)
    assert original is not None and original.content.startswith('Answer to "Is the API down?"')


@pytest.mark.parametrize("private_allowed", [True, False])
async def test_support_opens_a_thread_and_a_follow_up_there_continues(
    tmp_path: Path, private_allowed: bool
) -> None:
    model = FakeAnthropic()
    model.script(
        Reply(text="Check the invoice page.", when="Billing is wrong"),
        Reply(text="Refunds take five days.", when="refund"),
    )
    fake = FakeDiscord(private_threads_allowed=private_allowed)
    async with fake, model, discord_bot(tmp_path, fake, model, DISCORD_MESSAGE_CONTENT="true"):
        support = await fake.dispatch_slash("support", {"topic": "Billing is wrong"})
        await fake.wait_for(lambda: len(fake.threads) == 1, 10)
        thread = fake.threads[0]
        await fake.wait_for(answered(fake, thread.id, "Check the invoice page."), 10)
        await fake.dispatch_message("How long does a refund take?", channel_id=thread.id)
        await fake.wait_for(answered(fake, thread.id, "Refunds take five days."), 10)

    assert thread.type == (12 if private_allowed else 11)
    assert fake.default_user_id in fake.threads[0].members
    topic = bot_messages(fake, thread.id)[0]
    assert topic.content == f"<@{fake.default_user_id}> asked: Billing is wrong"
    original = fake.interaction_original(support.id)
    assert original is not None and original.flags & EPHEMERAL
    assert f"<#{thread.id}>" in original.content
    assert asked(model) == [
        "Billing is wrong", "Check the invoice page.", "How long does a refund take?"
    ]


async def test_mention_gets_a_reply_and_a_thread_for_follow_ups(tmp_path: Path) -> None:
    model = FakeAnthropic()
    model.script(
        Reply(text="Use Settings, then Export.", when="export"),
        Reply(text="CSV and JSON.", when="formats"),
    )
    channel = 1_100_000_000_000_000_200
    async with FakeDiscord() as fake, model:
        async with discord_bot(tmp_path, fake, model, DISCORD_MESSAGE_CONTENT="true"):
            question = await fake.dispatch_message("how do I export my data?", mentions_bot=True)
            await fake.wait_for(answered(fake, channel, "Use Settings, then Export."), 10)
            await fake.dispatch_message("which formats?", channel_id=question)
            await fake.wait_for(answered(fake, question, "CSV and JSON."), 10)

    (reply,) = bot_messages(fake, channel)
    assert reply.message_reference is not None
    assert reply.message_reference["message_id"] == str(question)
    (thread,) = fake.threads
    assert (thread.id, thread.parent_id) == (question, channel)
    assert asked(model) == ["how do I export my data?", "Use Settings, then Export.",
                            "which formats?"]
    typing = [at for channel_id, at in fake.typing if channel_id == channel]
    (mention,) = [m for m in fake.messages(channel) if m.id == question]
    assert typing and typing[0] - mention.created_at < 0.5  # typing: the first visible sign


async def test_dm_is_one_conversation_until_reset(tmp_path: Path) -> None:
    model = FakeAnthropic()
    model.script(
        Reply(text="Hello, A.", when="first"),
        Reply(text="Still here, B.", when="second"),
        Reply(text="Fresh start, C.", when="third"),
    )
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model):
        dm = fake.dm_channel()
        await fake.dispatch_message("first question", guild=False)
        await fake.wait_for(answered(fake, dm, "Hello, A."), 10)
        await fake.dispatch_message("second question", guild=False)
        await fake.wait_for(answered(fake, dm, "Still here, B."), 10)
        history = asked(model)
        reset = await fake.dispatch_slash("reset", {}, guild=False)
        await fake.wait_for(lambda: fake.interaction_original(reset.id) is not None, 10)
        await fake.dispatch_message("third question", guild=False)
        await fake.wait_for(answered(fake, dm, "Fresh start, C."), 10)

    assert history == ["first question", "Hello, A.", "second question"]
    assert asked(model) == ["third question"]
    confirmation = fake.interaction_original(reset.id)
    assert confirmation is not None and confirmation.flags & EPHEMERAL
    assert "new conversation" in confirmation.content


async def test_own_and_other_bots_messages_are_ignored(tmp_path: Path) -> None:
    model = FakeAnthropic()
    model.script(Reply(text=f"Only once, <@{1_100_000_000_000_000_001}>.", when="human"))
    async with FakeDiscord() as fake, model:
        async with discord_bot(tmp_path, fake, model, DISCORD_MESSAGE_CONTENT="true"):
            await fake.dispatch_message("hi", author_id=OTHER_BOT, author_bot=True,
                                        mentions_bot=True)
            await fake.dispatch_message("hi in private", author_id=OTHER_BOT, author_bot=True,
                                        guild=False)
            await fake.dispatch_message("me myself", author_id=fake.bot_user_id,
                                        mentions_bot=True)
            await fake.dispatch_message("a human asks", guild=False)
            await fake.wait_for(lambda: any(done(m) for m in bot_messages(fake, fake.dm_channel())),
                                10)
            await asyncio.sleep(1.0)  # room for the bot to (wrongly) answer its own reply

    assert len(model.requests) == 1 and asked(model) == ["a human asks"]
    assert len(bot_messages(fake, fake.dm_channel())) == 1
    assert bot_messages(fake, fake.dm_channel(OTHER_BOT)) == []


async def test_long_answer_is_split_in_three_with_code_fences_intact(tmp_path: Path) -> None:
    code = "\n".join(f"result_{i} = compute(step={i}, retries=3)  # step {i}" for i in range(50))
    intro = " ".join(["Configure the exporter first, then run the script below."] * 5)
    prose = " ".join(["After it runs, the export appears on the Downloads page."] * 16)
    text = f"{intro}\n\n```python\n{code}\n```\n\n{prose}\n\n{prose}"
    assert 4500 <= len(text) <= 4700  # the code block crosses the first page break
    model = FakeAnthropic()
    model.script(Reply(text=text))
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model):
        ask = await fake.dispatch_slash("ask", {"question": "Show me the export script"})

        def pages() -> list[FakeMessage | None]:
            return [fake.interaction_original(ask.id), *fake.followups(ask.id)]

        await fake.wait_for(lambda: len(pages()) == 3 and all(done(p) for p in pages()), 15)
        await asyncio.sleep(0.3)  # any further (wrong) edit would land now

    shown = [page.content for page in pages() if page is not None]
    assert len(shown) == 3 and all(len(page) <= 2000 for page in shown)
    assert all(page.count("```") % 2 == 0 for page in shown)  # every page's fences close
    assert shown[1].startswith("```python\n")  # the fence reopened after the break
    assert content_lines("\n".join(shown)) == content_lines(text)  # nothing lost or repeated


async def test_a_mention_answer_over_two_messages_ends_final_in_both(tmp_path: Path) -> None:
    # ~600 tokens (~2,800 characters): page 2 starts near the end of the stream.
    model = FakeAnthropic(first_token_delay=0.4, delta_interval=0.01, default_words=450)
    question = "How do I export everything?"
    answer = default_text(question, 450)
    assert 2000 < len(answer) < 4000
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model):
        channel = fake.channel_ids[0]
        asked_id = await fake.dispatch_message(question, mentions_bot=True)

        def pages() -> list[FakeMessage]:
            return bot_messages(fake, channel)

        def whole() -> bool:  # the answer in full, every page without the marker
            return "".join(page.content for page in pages()) == answer

        await fake.wait_for(whole, 30)
        await asyncio.sleep(0.3)  # any further (wrong) edit would land now

    first, second = pages()
    assert first.message_reference is not None
    assert first.message_reference["message_id"] == str(asked_id)
    assert len(first.content) <= 2000 and len(second.content) <= 2000
    assert first.content + second.content == answer  # whole, in order, no marker left
    assert fake.rate_limited == 0


async def test_a_dm_answer_over_several_messages_ends_final_in_all(tmp_path: Path) -> None:
    code = "\n".join(f"    rows = export(part={i}, fmt='csv')  # step {i}" for i in range(50))
    prose = " ".join(["Open Settings, choose Export, then wait for the e-mail."] * 16)
    text = f"{prose}\n\n```python\ndef export_all():\n{code}\n```\n\n{prose}\n\n{prose}"
    assert 4500 <= len(text) <= 5500
    model = FakeAnthropic(first_token_delay=0.4, delta_interval=0.003)  # ~400 tokens/s
    model.script(Reply(text=text))
    async with FakeDiscord() as fake, model, discord_bot(
        tmp_path, fake, model, SUPPORTBOT_MAX_TOKENS="4096"
    ):
        dm = fake.dm_channel()
        await fake.dispatch_message("Show me the export script", guild=False)

        def pages() -> list[FakeMessage]:
            return bot_messages(fake, dm)

        def whole() -> bool:  # the answer's text in full, every page without the marker
            joined = "\n".join(page.content for page in pages())
            return all(map(done, pages())) and content_lines(joined) == content_lines(text)

        await fake.wait_for(whole, 30)
        await asyncio.sleep(0.3)  # any further (wrong) edit would land now

    shown = [page.content for page in pages()]
    assert len(shown) >= 3 and all(len(page) <= 2000 for page in shown)
    assert all(page.count("```") % 2 == 0 for page in shown)  # every page's fences close
    assert shown[1].startswith("```python\n")  # the block crossed the break and reopened
    assert content_lines("\n".join(shown)) == content_lines(text)  # nothing lost or repeated
    assert fake.rate_limited == 0


async def test_everyone_in_model_output_does_not_ping(tmp_path: Path) -> None:
    model = FakeAnthropic()
    async with FakeDiscord() as fake, model:
        loud = f"@everyone and @here: ask <@&{fake.support_role_id}> or <@{OTHER_USER}>."
        model.script(Reply(text=loud, when="contact"), Reply(text=loud, when="escalate"))
        async with discord_bot(tmp_path, fake, model):
            await fake.dispatch_message("who should I contact?", mentions_bot=True)
            ask = await fake.dispatch_slash("ask", {"question": "how do I escalate?"})
            channel = fake.channel_ids[0]
            await fake.wait_for(lambda: any(done(m) for m in bot_messages(fake, channel)), 10)
            await fake.wait_for(lambda: done(fake.interaction_original(ask.id)), 10)

    (reply,) = bot_messages(fake, channel)
    assert reply.pinged == {f"user:{fake.default_user_id}"}  # only the asker, by the reply
    assert reply.allowed_mentions is not None and reply.allowed_mentions["parse"] == []
    original = fake.interaction_original(ask.id)
    assert original is not None and original.pinged == frozenset()
    assert "everyone" in original.content  # still readable, just harmless


async def test_images_reach_the_model_and_other_files_are_named(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    model = FakeAnthropic()
    model.script(Reply(text="That is the export dialog.", when="what is this"),
                 Reply(text="Another screenshot.", when="and this"))
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model):
        shot = fake.add_attachment("screen.png", "image/png", png)
        pdf = fake.add_attachment("report.pdf", "application/pdf", b"%PDF-1.4 ...")
        big = fake.add_attachment("huge.png", "image/png", bytes(4 * 1024 * 1024))
        await fake.dispatch_message("what is this?", mentions_bot=True,
                                    attachments=[shot, pdf, big])
        channel = fake.channel_ids[0]
        await fake.wait_for(answered(fake, channel, "That is the export dialog."), 10)
        mention_request = model.requests[-1].body
        second = fake.add_attachment("two.png", "image/png", png)
        ask = await fake.dispatch_slash("ask", {"question": "and this?", "image": second})
        await fake.wait_for(lambda: done(fake.interaction_original(ask.id)), 10)

    for request in (mention_request, model.requests[-1].body):
        blocks = request["messages"][-1]["content"]
        images = [b for b in blocks if b["type"] == "image"]
        assert [base64.b64decode(b["source"]["data"]) for b in images] == [png]
    text = " ".join(b["text"] for b in mention_request["messages"][-1]["content"]
                    if b["type"] == "text")
    assert "report.pdf was attached but I can't read that type of file" in text
    assert "huge.png was attached but is over" in text


async def test_commands_are_registered_once_and_not_again_on_restart(tmp_path: Path) -> None:
    model = FakeAnthropic()
    async with FakeDiscord() as fake, model:
        guild = str(fake.guild_id)
        for _ in range(2):
            async with discord_bot(tmp_path, fake, model, DISCORD_GUILD_ID=guild):
                pass
        in_guild = fake.registered_commands
        async with discord_bot(tmp_path, fake, model):  # DISCORD_GUILD_ID unset: go global
            pass

    syncs = [c.path for c in fake.calls if c.method == "PUT" and c.path.endswith("/commands")]
    app = fake.application_id
    assert syncs == [f"/applications/{app}/guilds/{guild}/commands",  # once for two starts
                     f"/applications/{app}/commands",
                     f"/applications/{app}/guilds/{guild}/commands"]  # the guild copies cleared
    assert sorted(c["name"] for c in in_guild) == ["ask", "escalate", "reset", "resolve", "support"]
    assert all(c.get("guild_id") == guild for c in in_guild)
    # Now only the global commands are left: the guild does not list each command twice.
    assert sorted(c["name"] for c in fake.registered_commands) == [
        "ask", "escalate", "reset", "resolve", "support"]
    assert not any("guild_id" in c for c in fake.registered_commands)
    logins = [c for c in fake.calls if c.path == "/users/@me"]
    assert len(logins) == 3  # it did start three times


async def test_commands_the_application_lost_are_registered_again(tmp_path: Path) -> None:
    model = FakeAnthropic()
    async with FakeDiscord() as fake, model:
        global_path = f"/applications/{fake.application_id}/commands"
        async with discord_bot(tmp_path, fake, model):
            pass
        fake.delete_commands()  # deleted in the developer portal; the bot's DB still has them
        async with discord_bot(tmp_path, fake, model):
            pass
        # Another deployment of the same application, with its own database, replaces them.
        async with aiohttp.ClientSession() as session:
            other = [{"name": "ask", "description": "Ask the old bot", "type": 1}]
            auth = {"Authorization": f"Bot {fake.token}"}
            async with session.put(fake.api_url + global_path, json=other, headers=auth) as put:
                assert put.status == 200
        async with discord_bot(tmp_path, fake, model):
            pass
        async with discord_bot(tmp_path, fake, model):  # nothing changed: nothing written
            pass

    puts = [c for c in fake.calls if c.method == "PUT" and c.path == global_path]
    gets = [c for c in fake.calls if c.method == "GET" and c.path == global_path]
    assert len(gets) == 4  # one look per start
    assert len(puts) == 4  # first start, after the deletion, the other deployment's, after it
    assert puts[-1].time < gets[-1].time  # the last start found its commands and wrote none
    held = {c["name"]: c["description"] for c in fake.registered_commands}
    assert held == {"ask": "Ask the support bot a question",
                    "support": "Open a private support thread with the bot",
                    "reset": "Start a fresh conversation in DMs",
                    "escalate": "Hand this thread to a person from the team",
                    "resolve": "Give this thread back to the bot (the team)"}


async def test_a_guild_that_refuses_the_commands_is_named_and_retried(tmp_path: Path) -> None:
    model = FakeAnthropic()
    async with FakeDiscord() as fake, model:
        real_guild = fake.guild_id
        async with discord_bot(tmp_path, fake, model, DISCORD_GUILD_ID=str(real_guild)):
            pass
        fake.guild_id = real_guild + 7  # the bot is no longer in that development server
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        wrong = bot_env(fresh, ANTHROPIC_API_KEY="test-key", DISCORD_BOT_TOKEN=fake.token,
                        DISCORD_API_URL=fake.api_url, DISCORD_GATEWAY_URL=fake.gateway_url,
                        ANTHROPIC_BASE_URL=model.base_url, DISCORD_GUILD_ID=str(real_guild))
        refused = await BotProcess(fresh, wrong, "run").start()
        try:
            code = await asyncio.wait_for(refused.proc.wait(), 20)  # type: ignore[union-attr]
            failure = await _stderr(refused)
        finally:
            await refused.stop()
        async with discord_bot(tmp_path, fake, model):  # global: clearing the guild fails...
            pass
        fake.guild_id = real_guild
        async with discord_bot(tmp_path, fake, model):  # ...so the next start tries again
            pass

    assert code != 0 and f"DISCORD_GUILD_ID={real_guild}" in failure  # named, with the fix
    guild_path = f"/applications/{fake.application_id}/guilds/{real_guild}/commands"
    guild_gets = [c.status for c in fake.calls if c.method == "GET" and c.path == guild_path]
    guild_puts = [c.status for c in fake.calls if c.method == "PUT" and c.path == guild_path]
    assert guild_gets == [200, 403]  # what the guild holds: read, then refused
    assert guild_puts == [200, 403, 200]  # registered, clear refused, cleared
    assert not any("guild_id" in c for c in fake.registered_commands)


async def test_without_message_content_mentions_are_still_answered(tmp_path: Path) -> None:
    model = FakeAnthropic()
    model.script(Reply(text="Yes, SSO works.", when="SSO"),
                 Reply(text="In the thread, too.", when="again"))
    channel = 1_100_000_000_000_000_200
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model):
        question = await fake.dispatch_message("does SSO work?", mentions_bot=True)
        await fake.wait_for(answered(fake, channel, "Yes, SSO works."), 10)
        await fake.dispatch_message("no mention here", channel_id=question)
        await fake.dispatch_message("again with a mention", channel_id=question,
                                    mentions_bot=True)
        await fake.wait_for(answered(fake, question, "In the thread, too."), 10)

    assert fake.identify is not None and not fake.identify["intents"] & (1 << 15)
    assert len(model.requests) == 2  # the message without a mention was not answered
    assert asked(model)[-1] == "again with a mention"



async def test_shutdown_mid_answer_leaves_an_interrupted_note(tmp_path: Path) -> None:
    model = FakeAnthropic(delta_interval=0.05, default_words=400)
    channel = 1_100_000_000_000_000_200
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model):
        await fake.dispatch_message("tell me everything", mentions_bot=True)

        def streaming() -> bool:
            return any(TYPING_MARKER in m.content for m in bot_messages(fake, channel))

        await fake.wait_for(streaming, 10)
        # Leaving the block sends SIGTERM: the reply must end with a note, not a marker.
    (reply,) = bot_messages(fake, channel)
    assert TYPING_MARKER not in reply.content
    assert "Interrupted: the bot is restarting" in reply.content


async def test_a_dm_with_an_image_is_answered_before_the_next_dm(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    model = FakeAnthropic()
    model.script(Reply(text="A screenshot.", when="screenshot"), Reply(text="Thanks.", when="ok"))
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model):
        fake.attachment_delay = 0.5  # the screenshot's download is slow
        dm = fake.dm_channel()
        shot = fake.add_attachment("screen.png", "image/png", png)
        await fake.dispatch_message("see my screenshot", guild=False, attachments=[shot])
        await fake.dispatch_message("ok", guild=False)
        await fake.wait_for(answered(fake, dm, "Thanks."), 10)
    # The second question was answered second, with the first one in its history.
    history = asked(model)
    assert history[1:] == ["A screenshot.", "ok"]
