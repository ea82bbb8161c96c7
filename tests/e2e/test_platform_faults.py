"""Platform faults while an answer streams, end to end: a moderator deletes the bot's message
mid-answer. The reply stops there (it is not posted again over the moderator's decision),
nothing is retried for ever, and the bot goes on answering."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.streaming import TYPING_MARKER
from tests.e2e.test_discord import answered as discord_answered
from tests.e2e.test_discord import bot_messages, discord_bot
from tests.e2e.test_slack import BOT, answered, bot_for, bot_posts
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_events import Json

LONG = " ".join(f"step{n}" for n in range(120))  # ~6 s at 0.05 s a word
DISCORD_CHANNEL = 1_100_000_000_000_000_200


async def slack_long_answer_showing(slack: FakeSlack, channel: str = "C1") -> Json:
    """Mention the bot for LONG and wait until its first words show; the mention."""
    mention = ev.app_mention(f"<@{BOT}> a long answer please", channel=channel)
    await slack.push_event(mention)
    await slack.wait_for(lambda: any("step" in m.text
                                     for m in bot_posts(slack, channel, mention["ts"])), 15)
    return mention


async def discord_long_answer_showing(fake: FakeDiscord,
                                      channel: int = DISCORD_CHANNEL) -> None:
    """Mention the bot for LONG and wait until its first words show in the channel."""
    await fake.dispatch_message("a long answer please", mentions_bot=True, channel_id=channel)
    await fake.wait_for(lambda: any("step" in m.content
                                    for m in bot_messages(fake, channel)), 15)


async def test_slack_a_message_deleted_mid_answer_ends_the_reply(tmp_path: Path) -> None:
    model = FakeAnthropic(delta_interval=0.05)
    model.script(Reply(text=LONG, when="long"), Reply(text="Still here.", when="later"))
    async with FakeSlack() as slack, model, bot_for(tmp_path, slack, model) as bot:
        first = await slack_long_answer_showing(slack)
        [shown] = bot_posts(slack, "C1", first["ts"])
        slack.delete_as_moderator("C1", shown.ts)
        await asyncio.sleep(7)  # the rest of the stream, and the final edit
        assert bot_posts(slack, "C1", first["ts"]) == []  # not posted again
        later = ev.app_mention(f"<@{BOT}> later question", channel="C1")
        await slack.push_event(later)
        assert await answered(slack, "C1", later["ts"]) == "Still here."
    assert slack.count("chat.update", error="message_not_found") == 1  # then it stopped
    log = "".join(bot.log)
    assert "Traceback" not in log and "was deleted" in log


async def test_discord_a_message_deleted_mid_answer_ends_the_reply(tmp_path: Path) -> None:
    model = FakeAnthropic(delta_interval=0.05)
    model.script(Reply(text=LONG, when="long"), Reply(text="Still here.", when="later"))
    channel = DISCORD_CHANNEL
    async with FakeDiscord() as fake, model, \
            discord_bot(tmp_path, fake, model, DISCORD_MESSAGE_CONTENT="true"):
        await discord_long_answer_showing(fake)
        [shown] = bot_messages(fake, channel)
        fake.delete_as_moderator(shown.id)
        await asyncio.sleep(7)
        assert bot_messages(fake, channel) == []  # not posted again
        await fake.dispatch_message("later question", mentions_bot=True)
        await fake.wait_for(discord_answered(fake, channel, "Still here."), 15)
    log = (tmp_path / "bot.log").read_text()
    assert "Traceback" not in log and "was deleted" in log
    assert not any(TYPING_MARKER in m.content for m in bot_messages(fake, channel))


async def test_slack_server_errors_on_edits_and_pages_still_end_in_the_exact_text(
    tmp_path: Path,
) -> None:
    # A two-page answer: 5xx on a partial edit, on the final edit and on the new page's post.
    text = " ".join(f"word{n}" for n in range(700))  # ~5,300 characters: two Slack pages
    model = FakeAnthropic(delta_interval=0.002)
    model.script(Reply(text=text))
    async with FakeSlack() as slack, model, bot_for(tmp_path, slack, model) as bot:
        slack.fail_next("chat.update", 500, 503)
        mention = ev.app_mention(f"<@{BOT}> the whole list please", channel="C1")
        await slack.push_event(mention)
        await slack.wait_for(lambda: len(bot_posts(slack, "C1", mention["ts"])) >= 1, 15)
        slack.fail_next("chat.postMessage", 502)
        shown = await answered(slack, "C1", mention["ts"], count=2)
    assert shown.split() == text.split()
    assert slack.count("chat.update", status=500) + slack.count("chat.update", status=503) == 2
    log = "".join(bot.log)
    assert "Traceback" not in log


async def test_slack_a_channel_the_bot_was_removed_from_ends_the_reply_and_others_go_on(
    tmp_path: Path,
) -> None:
    model = FakeAnthropic()
    model.script(Reply(text="Answer one.", when="first"), Reply(text="Answer two.", when="next"))
    async with FakeSlack() as slack, model, bot_for(tmp_path, slack, model) as bot:
        slack.fail_next("chat.postMessage", *["not_in_channel"] * 5, channel="C9")
        lost = ev.app_mention(f"<@{BOT}> first question", channel="C9")
        await slack.push_event(lost)
        await asyncio.sleep(3)
        later = ev.app_mention(f"<@{BOT}> next question", channel="C1")
        await slack.push_event(later)
        assert await answered(slack, "C1", later["ts"]) == "Answer two."
    assert slack.count("chat.postMessage", error="not_in_channel") <= 3  # not for ever
    log = "".join(bot.log)
    assert "Traceback" not in log and "not_in_channel" in log


async def test_discord_a_channel_the_bot_lost_access_to_drops_the_reply_and_others_go_on(
    tmp_path: Path,
) -> None:
    model = FakeAnthropic(delta_interval=0.05)
    model.script(Reply(text=LONG, when="long"), Reply(text="Answer two.", when="next"))
    lost, other = 1_100_000_000_000_000_200, 1_100_000_000_000_000_201
    async with FakeDiscord() as fake, model, \
            discord_bot(tmp_path, fake, model, DISCORD_MESSAGE_CONTENT="true"):
        await discord_long_answer_showing(fake, lost)
        fake.revoke_access(lost)  # kicked mid-answer: every write there now answers 50001
        await asyncio.sleep(7)  # the rest of the stream and the final write
        await fake.dispatch_message("next question", mentions_bot=True, channel_id=other)
        await fake.wait_for(discord_answered(fake, other, "Answer two."), 15)
    refused = [c for c in fake.calls if c.status == 403 and str(lost) in c.path]
    assert 1 <= len(refused) <= 2  # a refused write ends the reply: no retries
    log = (tmp_path / "bot.log").read_text()
    assert "Traceback" not in log and "cannot write in" in log


async def test_discord_a_429_and_server_errors_on_edits_and_pages_still_end_in_the_exact_text(
    tmp_path: Path,
) -> None:
    # A two-page answer (Discord shows 2,000 characters a message): an unpredicted 429 and a
    # 500 on edits of the first page, a 502 on posting the second.
    text = " ".join(f"word{n}" for n in range(450))  # ~3,600 characters
    model = FakeAnthropic(delta_interval=0.01)
    model.script(Reply(text=text))
    channel = DISCORD_CHANNEL
    async with FakeDiscord() as fake, model, \
            discord_bot(tmp_path, fake, model, DISCORD_MESSAGE_CONTENT="true"):
        await fake.dispatch_message("the whole list please", mentions_bot=True,
                                    channel_id=channel)
        await fake.wait_for(lambda: any("word" in m.content
                                        for m in bot_messages(fake, channel)), 15)
        fake.fail_next("PATCH", 429, 500, retry_after=1.0)
        fake.fail_next("POST", 502)

        def whole() -> bool:
            pages = bot_messages(fake, channel)
            return len(pages) == 2 and all(TYPING_MARKER not in p.content for p in pages) \
                and " ".join(p.content for p in pages).split() == text.split()

        await fake.wait_for(whole, 30)
    edits = [c for c in fake.calls if c.method == "PATCH" and str(channel) in c.path]
    posts = [c for c in fake.calls if c.method == "POST" and c.path.endswith("/messages")]
    limited = [i for i, c in enumerate(edits) if c.status == 429]
    assert len(limited) == 1 and [c.status for c in edits].count(500) == 1
    after = edits[limited[0] + 1]
    assert after.time - edits[limited[0]].time >= 1.0  # Retry-After was honoured
    assert [c.status for c in posts].count(502) == 1 and fake.faults == {"PATCH": [], "POST": []}
    assert fake.rate_limited == 0  # the bot's own pacing was never refused
    log = (tmp_path / "bot.log").read_text()
    assert "Traceback" not in log


async def test_slack_an_edit_refused_as_msg_too_long_is_posted_anew_and_ends_exact(
    tmp_path: Path,
) -> None:
    # Slack measures what it takes differently than we do (entities, blocks): when it refuses
    # an edit as too long, the answer continues in a new message rather than being lost.
    model = FakeAnthropic(delta_interval=0.03)
    model.script(Reply(text=LONG))
    async with FakeSlack() as slack, model, bot_for(tmp_path, slack, model) as bot:
        first = await slack_long_answer_showing(slack)
        slack.fail_next("chat.update", "msg_too_long")
        await slack.wait_for(lambda: finished_text(slack, first["ts"]) is not None, 30)
        shown = finished_text(slack, first["ts"])
    assert shown is not None and shown.split() == LONG.split()
    assert slack.count("chat.update", error="msg_too_long") == 1
    assert "Traceback" not in "".join(bot.log)


def finished_text(slack: FakeSlack, thread: str) -> str | None:
    """The bot's pages in the thread joined, once none shows the typing marker."""
    pages = bot_posts(slack, "C1", thread)
    if not pages or any(TYPING_MARKER in page.text for page in pages):
        return None
    return " ".join(page.text for page in pages)
