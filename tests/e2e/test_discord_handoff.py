"""Handover and feedback on Discord, end to end: buttons under answers, the 👎 form, the
summary that pings only the team's role, /escalate, /resolve and a ✅ on the summary."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.adapters.discord.buttons import FORM_FIELD, custom_id
from bot.handoff import GIVEN_BACK
from tests.e2e.test_discord import answered, bot_messages, discord_bot
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.discord import FakeDiscord, FakeMessage

CHANNEL, ESCALATION = 1_100_000_000_000_000_200, 1_100_000_000_000_000_201
TEAM_MEMBER = 1_100_000_000_000_000_400


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


def env(fake: FakeDiscord) -> dict[str, str]:
    return {"SUPPORTBOT_ESCALATION_DISCORD_CHANNEL": str(ESCALATION),
            "SUPPORTBOT_ESCALATION_MENTION": str(fake.support_role_id)}


def original_text(fake: FakeDiscord, interaction_id: int) -> str:
    original = fake.interaction_original(interaction_id)
    return "" if original is None else original.content


async def first_answer(fake: FakeDiscord, text: str) -> FakeMessage:
    await fake.wait_for(answered(fake, CHANNEL, text), 10)
    [reply] = bot_messages(fake, CHANNEL)
    return reply


async def test_buttons_under_an_answer_take_votes_and_the_not_helpful_form(
    tmp_path: Path,
) -> None:
    model = FakeAnthropic()
    model.script(Reply(text="Use Settings, then Export."))
    db = tmp_path / "bot.db"
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model):
        await fake.dispatch_message("how do I export my data?", mentions_bot=True)
        reply = await first_answer(fake, "Use Settings, then Export.")
        [up, down, person] = reply.buttons
        assert person.startswith("supportbot:person:")
        await fake.press(reply.id, up)
        await fake.wait_for(lambda: rows(db, "SELECT vote FROM feedback") == [(1,)], 10)
        pressed = await fake.press(reply.id, down)  # changed: still one vote
        await fake.wait_for(lambda: fake.interaction_callback(pressed.id) is not None, 10)
        callback = fake.interaction_callback(pressed.id)
        assert callback is not None and callback[0] == 9  # the modal opened
        form = await fake.submit_modal(pressed, {FORM_FIELD: "It is under Account now."})
        await fake.wait_for(lambda: fake.interaction_callback(form.id) is not None, 10)
        await fake.wait_for(lambda: rows(db, "SELECT vote, comment FROM feedback") == [
            (-1, "It is under Account now.")], 10)


async def test_talk_to_a_person_pings_only_the_role_and_a_check_mark_gives_it_back(
    tmp_path: Path,
) -> None:
    model = FakeAnthropic()
    model.script(Reply(text="Refunds take 5 days."), Reply(text="It is in EUR."))
    async with FakeDiscord() as fake, model, discord_bot(
            tmp_path, fake, model, DISCORD_MESSAGE_CONTENT="true", **env(fake)):
        question = await fake.dispatch_message("where is my refund?", mentions_bot=True)
        reply = await first_answer(fake, "Refunds take 5 days.")
        await fake.press(reply.id, reply.buttons[2])
        await fake.wait_for(lambda: len(bot_messages(fake, ESCALATION)) == 1, 10)
        [summary] = bot_messages(fake, ESCALATION)
        assert summary.content.startswith(f"<@&{fake.support_role_id}> **Handover:**")
        assert summary.pinged == {f"role:{fake.support_role_id}"}  # the only ping there is
        assert "where is my refund?" in summary.content
        assert summary.buttons == [custom_id("resolve", f"discord:{fake.guild_id}:{CHANNEL}:"
                                                        f"{question}")]
        # While a person handles the thread, the bot is quiet and keeps what is said.
        handed_over_at = summary.created_at
        await fake.dispatch_message("Sent today.", channel_id=question, author_id=TEAM_MEMBER)
        await fake.dispatch_message("thanks!", channel_id=question)
        kept = "SELECT role, text FROM messages WHERE role = 'agent' OR text = 'thanks!'"
        await fake.wait_for(lambda: len(rows(tmp_path / "bot.db", kept)) == 2, 10)
        assert rows(tmp_path / "bot.db", kept) == [("agent", "Sent today."), ("user", "thanks!")]
        assert not [at for channel, at in fake.typing if channel == question and
                    at > handed_over_at]  # no "typing…" for an answer that will not come
        await fake.react(summary.id, "✅", user_id=TEAM_MEMBER)
        await fake.wait_for(answered(fake, question, GIVEN_BACK), 10)
        await fake.dispatch_message("which currency?", channel_id=question)
        await fake.wait_for(answered(fake, question, "It is in EUR."), 10)
    history = "\n".join(str(m) for m in model.requests[-1].body["messages"])
    assert "(A person from the team replied:) Sent today." in history
    assert len(model.requests) == 2


async def test_escalate_and_resolve_commands_in_a_thread(tmp_path: Path) -> None:
    model = FakeAnthropic()
    model.script(Reply(text="Try turning it off and on."))
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model, **env(fake)):
        question = await fake.dispatch_message("the app crashes", mentions_bot=True)
        await first_answer(fake, "Try turning it off and on.")
        outside = await fake.dispatch_slash("escalate", {})  # not in a thread: explained
        escalate = await fake.dispatch_slash("escalate", {}, channel_id=question)
        await fake.wait_for(lambda: len(bot_messages(fake, ESCALATION)) == 1, 10)
        await fake.wait_for(lambda: "asked a person" in original_text(fake, escalate.id), 10)
        original = fake.interaction_original(outside.id)
        assert original is not None and "in the thread of your question" in original.content
        mine = await fake.dispatch_slash("resolve", {}, channel_id=question)
        await fake.wait_for(lambda: "Only someone from the team" in original_text(fake, mine.id),
                            10)
        theirs = await fake.dispatch_slash("resolve", {}, channel_id=question,
                                           user_id=TEAM_MEMBER)
        await fake.wait_for(answered(fake, question, GIVEN_BACK), 10)
        assert fake.interaction_original(theirs.id) is not None
    assert rows(tmp_path / "bot.db", "SELECT state, reason FROM handoffs") == [
        ("resolved", "command")]


async def test_mark_resolved_on_the_summary_gives_the_thread_back(tmp_path: Path) -> None:
    model = FakeAnthropic()
    model.script(Reply(text="[[HANDOFF]]"))
    async with FakeDiscord() as fake, model, discord_bot(tmp_path, fake, model, **env(fake)):
        question = await fake.dispatch_message("a human please", mentions_bot=True)
        await fake.wait_for(lambda: len(bot_messages(fake, ESCALATION)) == 1, 10)
        await fake.wait_for(lambda: any(m.content.startswith("I've asked a person")
                                        for m in bot_messages(fake, CHANNEL)), 10)
        [reply] = bot_messages(fake, CHANNEL)
        assert not reply.buttons  # nothing to rate on a handover note
        [summary] = bot_messages(fake, ESCALATION)
        await fake.press(summary.id, summary.buttons[0], user_id=TEAM_MEMBER)
        await fake.wait_for(answered(fake, question, GIVEN_BACK), 10)
        await fake.wait_for(lambda: "Resolved by" in bot_messages(fake, ESCALATION)[0].content,
                            10)
        assert bot_messages(fake, ESCALATION)[0].buttons == []
