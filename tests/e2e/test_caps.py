"""Spend and abuse caps, end to end: `supportbot run` against the fake Slack and Anthropic."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.streaming import TYPING_MARKER
from tests.e2e.processes import bot_env
from tests.e2e.test_discord import discord_bot, done
from tests.e2e.test_slack import BOT, answered, bot_for, bot_posts
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack

WAIT = "Please wait"
NOT_HERE = "I only answer questions in <#C1>. Please ask there, or send me a direct message."


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


async def ask(slack: FakeSlack, text: str, user: str = "U123", channel: str = "C1") -> str:
    """Mention the bot; the ts of the new thread."""
    mention = ev.app_mention(f"<@{BOT}> {text}", user=user, channel=channel)
    await slack.push_event(mention)
    return str(mention["ts"])


async def test_a_person_past_the_hourly_cap_is_asked_to_wait_and_others_are_not(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(*(Reply(text=f"Answer {n}.") for n in range(3)))
    async with bot_for(tmp_path, slack, anthropic, SUPPORTBOT_USER_RATE="2"):
        for n in range(2):
            thread = await ask(slack, f"question number {n}?")
            assert await answered(slack, "C1", thread) == f"Answer {n}."
        thread = await ask(slack, "and a third one?")
        text = await answered(slack, "C1", thread)
        assert "Please wait 60 minutes" in text or "Please wait 59 minutes" in text
        # The cap is per person: someone else is answered at once.
        other = await ask(slack, "my own question?", user="U999")
        assert await answered(slack, "C1", other) == "Answer 2."
    assert len(anthropic.requests) == 3  # the capped question never reached the model


async def test_past_the_daily_budget_replies_come_from_the_docs_with_a_note(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="A model answer."))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "reports.md").write_text("# Reports\n\n## Importing a report\n\nOpen Reports "
                                     "and press Import to import a report from a CSV file.\n")
    indexed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "kb", "add", str(docs), cwd=tmp_path, env=bot_env(tmp_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(indexed.wait(), 60) == 0
    # The first reply costs more than this, so the budget is reached mid-day.
    async with bot_for(tmp_path, slack, anthropic, SUPPORTBOT_DAILY_BUDGET_USD="0.000001"):
        first = await ask(slack, "how do I import a report from a CSV file?")
        assert await answered(slack, "C1", first) == "A model answer."
        second = await ask(slack, "can I import reports from CSV?")
        text = await answered(slack, "C1", second)
    assert text.startswith("Today's budget for AI answers is used up.")
    assert "Open Reports and press Import" in text  # the docs' closest section, shown
    assert len(anthropic.requests) == 1
    stats = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "stats", "--since", "1d", cwd=tmp_path, env=bot_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(stats.communicate(), 30)
    assert stats.returncode == 0, err.decode()
    assert "over budget" in out.decode()


async def test_outside_the_allowed_channels_it_says_once_where_it_answers(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Answered in C1."), Reply(text="Answered in a DM."))
    async with bot_for(tmp_path, slack, anthropic, SUPPORTBOT_ALLOWED_CHANNELS="C1"):
        first = await ask(slack, "help?", channel="C2")
        text = await answered(slack, "C2", first)
        assert text == NOT_HERE
        second = await ask(slack, "help again?", channel="C2")
        allowed = await ask(slack, "help?", channel="C1")
        assert await answered(slack, "C1", allowed) == "Answered in C1."
        dm = ev.message("help in private?", channel="D1")
        await slack.push_event(dm)
        assert await answered(slack, "D1", str(dm["ts"])) == "Answered in a DM."
        await asyncio.sleep(0.3)
        assert bot_posts(slack, "C2", second) == []  # said once, then silence there
    assert len(anthropic.requests) == 2


async def test_outside_the_allowed_workspaces_it_does_not_answer(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    async with bot_for(tmp_path, slack, anthropic, SUPPORTBOT_ALLOWED_WORKSPACES="T0OTHER"):
        thread = await ask(slack, "help?")
        text = await answered(slack, "C1", thread)
    assert text.startswith("I'm not set up to answer here")
    assert anthropic.requests == []


async def test_a_burst_of_100_questions_from_one_person_reaches_the_model_only_up_to_the_cap(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(*(Reply(text=f"Answer {n}.") for n in range(6)))
    async with bot_for(tmp_path, slack, anthropic, SUPPORTBOT_USER_RATE="5"):
        threads = await asyncio.gather(*(ask(slack, f"flood question {n}?") for n in range(100)))
        await slack.wait_for(lambda: sum(
            1 for t in threads for m in bot_posts(slack, "C1", t)
            if TYPING_MARKER not in m.text) >= 6, 30)
        other = await ask(slack, "a question of my own?", user="U999")
        assert await answered(slack, "C1", other) == "Answer 5."
        await asyncio.sleep(0.5)  # time for any reply that should not come
        replies = [m.text for t in threads for m in bot_posts(slack, "C1", t)]
    assert len(anthropic.requests) == 6  # the cap (5) for the flood, and the other person
    assert sorted(r for r in replies if r.startswith("Answer")) == [f"Answer {n}." for n in
                                                                    range(5)]
    # Told once when to come back, not 95 times; the rest kept without a reply.
    assert len([r for r in replies if WAIT in r]) == 1
    assert len(replies) == 6


async def test_a_burst_outside_the_allowed_channels_gets_one_note_and_no_model_call(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    async with bot_for(tmp_path, slack, anthropic, SUPPORTBOT_ALLOWED_CHANNELS="C1"):
        threads = await asyncio.gather(
            *(ask(slack, f"help {n}?", channel="C2") for n in range(100)))
        await slack.wait_for(lambda: any(bot_posts(slack, "C2", t) for t in threads), 30)
        await asyncio.sleep(0.5)
        replies = [m.text for t in threads for m in bot_posts(slack, "C2", t)]
    assert replies == [NOT_HERE]
    assert anthropic.requests == []


async def ask_in_turn(tmp_path: Path, anthropic: FakeAnthropic, count: int,
                      **env: str) -> list[str]:
    """/ask `count` times, one after another, with the bot run with `env`; each final text."""
    async with FakeDiscord() as fake, discord_bot(tmp_path, fake, anthropic, **env):
        asks = [await fake.dispatch_slash("ask", {"question": f"question {n}?"})
                for n in range(count)]
        await fake.wait_for(lambda: all(done(fake.interaction_original(a.id)) for a in asks), 20)
        return [fake.interaction_original(a.id).content  # type: ignore[union-attr]
                for a in asks]


async def test_a_slash_command_past_a_cap_is_never_left_thinking(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    """A deferred /ask shows "thinking…" until edited: where a mention would get silence (told
    once already), the command still gets its line."""
    anthropic.script(Reply(text="The one answer."))
    texts = await ask_in_turn(tmp_path, anthropic, 4, SUPPORTBOT_USER_RATE="1")
    assert texts[0] == "The one answer."
    assert all(WAIT in text for text in texts[1:])
    assert len(anthropic.requests) == 1


async def test_a_slash_command_outside_the_allowed_channels_is_told_each_time(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    texts = await ask_in_turn(tmp_path, anthropic, 3,
                              SUPPORTBOT_ALLOWED_CHANNELS="1100000000000000999")
    assert texts == ["I only answer questions in <#1100000000000000999>. Please ask there, or "
                     "send me a direct message."] * 3
    assert anthropic.requests == []
