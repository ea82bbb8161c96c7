"""A bot killed mid-answer (kill -9) or stopped with questions still queued finishes every
reply on its next start: answered again into the same message(s), or closed with a note."""

from __future__ import annotations

import signal
from pathlib import Path

from bot.adapters.discord.pages import NOTE_CONTINUED
from bot.mrkdwn import to_mrkdwn
from bot.notices import NOTE_RESTARTED
from bot.streaming import TYPING_MARKER
from tests.e2e.processes import BotProcess, bot_env
from tests.e2e.test_discord import _identified as identified
from tests.e2e.test_discord import answered, bot_messages
from tests.e2e.test_slack import BOT, Bot, bot_posts, env_for, finished
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, Reply, message_text
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeMessage, FakeSlack


async def start_slack_bot(tmp: Path, slack: FakeSlack, model: FakeAnthropic, **env: str) -> Bot:
    bot = await Bot(BotProcess(tmp, env_for(tmp, slack, model, **env), "run")).start()
    await slack.wait_connected(20)
    return bot


async def kill(bot: Bot) -> None:
    proc = bot.process.proc
    assert proc is not None
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    await bot.stop()


async def killed_mid_answer(
    tmp: Path, slack: FakeSlack, anthropic: FakeAnthropic, **env: str
) -> tuple[str, FakeMessage]:
    """A mention whose answer is streaming when the bot is killed: its ts and the stuck reply."""
    bot = await start_slack_bot(tmp, slack, anthropic, **env)
    mention = ev.app_mention(f"<@{BOT}> how do I rotate my key?", channel="C1")
    await slack.push_event(mention)
    await slack.wait_for(lambda: slack.count("chat.update") >= 1, 20)
    await kill(bot)
    [stuck] = bot_posts(slack, "C1", mention["ts"])
    assert stuck.text.endswith(TYPING_MARKER)  # what a crash leaves behind
    return mention["ts"], stuck


async def finished_after_restart(
    tmp: Path, slack: FakeSlack, anthropic: FakeAnthropic, thread: str, **env: str
) -> FakeMessage:
    """Start the bot again, wait for the thread's one reply to be final; that reply."""
    bot = await start_slack_bot(tmp, slack, anthropic, **env)
    try:
        await slack.wait_for(finished(slack, "C1", thread), 20)
    finally:
        code = await bot.stop()
    assert code == 0, "".join(bot.log)
    [reply] = bot_posts(slack, "C1", thread)
    return reply


async def test_slack_reply_killed_mid_stream_is_answered_again_in_the_same_message(
    tmp_path: Path, anthropic: FakeAnthropic, db_target: str
) -> None:
    anthropic.script(Reply(words=300, delta_interval=0.05),
                     Reply(text="Step 1: open **Settings**."))
    async with FakeSlack() as slack:  # on each engine: the journal survives a kill -9
        thread, stuck = await killed_mid_answer(tmp_path, slack, anthropic,
                                                SUPPORTBOT_DB=db_target)
        reply = await finished_after_restart(tmp_path, slack, anthropic, thread,
                                             SUPPORTBOT_DB=db_target)
    assert reply.ts == stuck.ts  # the same message, never a second answer
    assert reply.text == "Step 1: open *Settings*."
    assert len(anthropic.requests) == 2
    assert anthropic.requests[-1].question() == "how do I rotate my key?"


async def test_slack_reply_too_old_to_answer_again_gets_a_note_instead_of_the_marker(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=300, delta_interval=0.05))
    async with FakeSlack() as slack:
        thread, stuck = await killed_mid_answer(tmp_path, slack, anthropic)
        reply = await finished_after_restart(tmp_path, slack, anthropic, thread,
                                             SUPPORTBOT_RESUME_MINUTES="0")
    partial = stuck.text.removesuffix(TYPING_MARKER).rstrip()
    assert reply.ts == stuck.ts and reply.text.startswith(partial)
    assert reply.text.endswith(to_mrkdwn(NOTE_RESTARTED))
    assert len(anthropic.requests) == 1  # nothing asked again


async def test_a_resumed_answer_shorter_than_the_cut_one_leaves_one_message(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    # Cut off after its second 4,000-byte page; the second answer fits in one message.
    anthropic.script(Reply(words=1400, delta_interval=0.015), Reply(text="Short answer."),
                     Reply(text="Noted."))
    async with FakeSlack() as slack:
        # Room for the long answer: its second page streams for seconds, edited meanwhile.
        bot = await start_slack_bot(tmp_path, slack, anthropic, SUPPORTBOT_MAX_TOKENS="4096")
        mention = ev.app_mention(f"<@{BOT}> tell me everything", channel="C1")
        await slack.push_event(mention)
        def second_page_streaming() -> bool:
            # ... and edited since it was posted: the journal noted the page before that edit.
            # (A kill between a new page's post and its note leaves the next start unaware
            # of that page; this test is about a page it knows.)
            posts = bot_posts(slack, "C1", mention["ts"])
            return len(posts) == 2 and posts[1].text.endswith(TYPING_MARKER) and any(
                call.method == "chat.update" and call.params.get("ts") == posts[1].ts
                for call in slack.calls)

        await slack.wait_for(second_page_streaming, 30)
        await kill(bot)
        first, _ = bot_posts(slack, "C1", mention["ts"])[:2]

        bot = await start_slack_bot(tmp_path, slack, anthropic)
        try:
            await slack.wait_for(finished(slack, "C1", mention["ts"]), 20)
            posts = bot_posts(slack, "C1", mention["ts"])
            assert len(posts) == 1, [(p.ts, p.text[:40], p.text[-40:]) for p in posts]
            [reply] = posts
            follow_up = ev.message("and then?", channel="C1", thread_ts=mention["ts"])
            await slack.push_event(follow_up)
            await slack.wait_for(lambda: len(anthropic.requests) == 3, 20)
        finally:
            code = await bot.stop()
    assert code == 0, "".join(bot.log)
    assert reply.ts == first.ts and reply.text == "Short answer."  # the extra page is gone
    # Recorded as answered: the follow-up's history holds it.
    history = [message_text(m) for m in anthropic.requests[-1].body["messages"]]
    assert history[-2:] == ["Short answer.", "and then?"]


async def test_sigterm_with_questions_queued_leaves_none_unanswered_after_the_next_start(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    # Five questions in one thread queue behind each other; the stop comes during the first.
    anthropic.script(Reply(words=300, delta_interval=0.05))
    async with FakeSlack() as slack:
        bot = await start_slack_bot(tmp_path, slack, anthropic)
        first = ev.app_mention(f"<@{BOT}> question 0", channel="C1")
        await slack.push_event(first)
        for n in range(1, 5):
            await slack.push_event(ev.message(f"question {n}", channel="C1",
                                                    thread_ts=first["ts"]))
        await slack.wait_for(lambda: slack.count("chat.update") >= 1, 20)
        code = await bot.stop()
        assert code == 0, "".join(bot.log)

        # Each question got its note, or (arriving during the stop) was only journaled.
        stopped = bot_posts(slack, "C1", first["ts"])
        assert len(stopped) <= 5 and not any(TYPING_MARKER in r.text for r in stopped)

        def all_answered() -> bool:
            texts = [r.text for r in bot_posts(slack, "C1", first["ts"])]
            expected = [f'Answer to "question {n}"' for n in range(5)]
            return len(texts) == 5 and all(map(str.startswith, texts, expected))

        bot = await start_slack_bot(tmp_path, slack, anthropic)
        try:
            await slack.wait_for(all_answered, 30)
        finally:
            code = await bot.stop()
    assert code == 0, "".join(bot.log)
    replies = bot_posts(slack, "C1", first["ts"])
    assert {r.ts for r in stopped} <= {r.ts for r in replies}  # in place, none posted twice
    assert not any(TYPING_MARKER in r.text for r in replies)


async def test_console_question_killed_mid_answer_is_answered_on_the_next_chat(
    tmp_path: Path,
) -> None:
    async with FakeAnthropic(delta_interval=0.05, default_words=80) as model:
        env = bot_env(tmp_path, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=model.base_url)
        bot = await BotProcess(tmp_path, env).start()
        try:
            await bot.send("How do I rotate my key?")
            await bot.read_until('Answer to "How do I rotate')
            assert bot.proc is not None
            bot.proc.send_signal(signal.SIGKILL)
            await bot.proc.wait()
        finally:
            await bot.stop()
        again = await BotProcess(tmp_path, env).start()
        try:
            code, out, err = await again.finish(timeout=30)
        finally:
            await again.stop()
    assert code == 0, err
    assert "answering again your question that a restart cut off" in out
    assert f"bot> {model.last_text_sent()}\n\n" in out
    assert [r.question() for r in model.requests] == [
        "How do I rotate my key?"] * 2


# ----- Discord ------------------------------------------------------------------------------


async def start_discord_bot(tmp: Path, fake: FakeDiscord, model: FakeAnthropic) -> BotProcess:
    before = fake.identify
    settings = bot_env(tmp, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=model.base_url,
                       DISCORD_BOT_TOKEN=fake.token, DISCORD_API_URL=fake.api_url,
                       DISCORD_GATEWAY_URL=fake.gateway_url)
    bot = await BotProcess(tmp, settings, "run").start()
    await identified(bot, fake, before)
    return bot


async def kill_process(bot: BotProcess) -> None:
    assert bot.proc is not None
    bot.proc.send_signal(signal.SIGKILL)
    await bot.stop()


async def answered_after_restart(
    tmp: Path, fake: FakeDiscord, model: FakeAnthropic, text: str
) -> None:
    """Start the bot again and wait until a bot message in the channel says `text`."""
    bot = await start_discord_bot(tmp, fake, model)
    try:
        await fake.wait_for(answered(fake, fake.channel_ids[0], text), 20)
    finally:
        await bot.stop()


async def test_discord_mention_killed_mid_stream_is_answered_again_in_the_same_message(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=300, delta_interval=0.05), Reply(text="Open **Settings**."))
    async with FakeDiscord() as fake:
        channel = fake.channel_ids[0]
        bot = await start_discord_bot(tmp_path, fake, anthropic)
        try:
            await fake.dispatch_message("how do I rotate my key?", mentions_bot=True)
            await fake.wait_for(lambda: any(len(m.history) >= 2
                                            for m in bot_messages(fake, channel)), 20)
        finally:
            await kill_process(bot)
        [stuck] = bot_messages(fake, channel)
        assert stuck.content.endswith(TYPING_MARKER)

        await answered_after_restart(tmp_path, fake, anthropic, "Open **Settings**.")
        [reply] = bot_messages(fake, channel)
    assert reply.id == stuck.id and reply.content == "Open **Settings**."
    assert [r.question() for r in anthropic.requests] == [
        "how do I rotate my key?"] * 2


async def test_discord_ask_killed_mid_stream_is_answered_in_its_channel_and_pointed_to(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(words=300, delta_interval=0.05), Reply(text="Open **Settings**."))
    async with FakeDiscord() as fake:
        channel = fake.channel_ids[0]
        bot = await start_discord_bot(tmp_path, fake, anthropic)
        try:
            ask = await fake.dispatch_slash("ask", {"question": "how do I rotate my key?"})

            def streaming() -> bool:
                original = fake.interaction_original(ask.id)
                return original is not None and original.content.endswith(TYPING_MARKER)

            await fake.wait_for(streaming, 20)
        finally:
            await kill_process(bot)

        await answered_after_restart(tmp_path, fake, anthropic, "Open **Settings**.")
    original = fake.interaction_original(ask.id)
    assert original is not None and original.content == NOTE_CONTINUED  # no marker left
    assert [m.content for m in bot_messages(fake, channel)] == ["Open **Settings**."]
