"""Handover to a person and feedback, end to end on Slack: buttons under answers, the summary
in the escalation channel, silence while a person handles the thread, and giving it back."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.slack.controls import (
    FORM_BLOCK,
    FORM_INPUT,
    HANDOFF,
    HELPFUL,
    NOT_HELPFUL,
    RESOLVE,
)
from bot.handoff import GIVEN_BACK
from tests.e2e.processes import bot_env
from tests.e2e.test_slack import BOT, SECRET, answered, bot_for, bot_posts, http_mode_bot
from tests.fakes import slack_events as ev
from tests.fakes.anthropic import FakeAnthropic, Reply, message_text
from tests.fakes.slack import FakeMessage, FakeSlack

ESCALATION = {"SUPPORTBOT_ESCALATION_SLACK_CHANNEL": "C0ESC",
              "SUPPORTBOT_ESCALATION_MENTION": "S0TEAM"}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


async def ask(slack: FakeSlack, text: str, user: str = "UASK") -> str:
    mention = ev.app_mention(f"<@{BOT}> {text}", user=user, channel="C1")
    await slack.push_event(mention)
    return str(mention["ts"])


async def say_in_thread(slack: FakeSlack, thread: str, text: str, user: str) -> None:
    await slack.push_event(ev.message(text, user=user, channel="C1", thread_ts=thread))


async def cli(tmp: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=tmp, env=bot_env(tmp),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def buttons(message: FakeMessage) -> list[str]:
    return [e["action_id"] for b in message.blocks or () for e in b.get("elements") or []]


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


async def settle(slack: FakeSlack, check: object, timeout: float = 10) -> None:
    await slack.wait_for(check, timeout)  # type: ignore[arg-type]


async def test_an_answer_carries_feedback_buttons_and_votes_are_kept_and_changeable(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Open *Settings* and click Export."))
    db = tmp_path / "bot.db"
    async with bot_for(tmp_path, slack, anthropic):
        thread = await ask(slack, "how do I export my data?")
        await answered(slack, "C1", thread)
        [reply] = bot_posts(slack, "C1", thread)
        assert buttons(reply) == [HELPFUL, NOT_HELPFUL, HANDOFF]
        assert reply.blocks is not None and reply.blocks[0]["text"]["text"] == reply.text
        await slack.click("C1", reply.ts, HELPFUL, user="UASK")
        await settle(slack, lambda: rows(db, "SELECT vote FROM feedback") == [(1,)])
        await slack.click("C1", reply.ts, NOT_HELPFUL, user="UASK")  # changed, still one
        await settle(slack, lambda: bool(slack.interactions.views))
        [(view_id, view)] = slack.interactions.views.items()
        assert view["title"]["text"] == "What was wrong?"
        await slack.submit_view(view_id, "UASK", {FORM_BLOCK: {FORM_INPUT: "It was for v1."}})
        await settle(slack, lambda: rows(db, "SELECT vote, comment, model FROM feedback") == [
            (-1, "It was for v1.", "claude-haiku-5-5")])
        await slack.click("C1", reply.ts, HELPFUL, user="UOTHER")  # one vote per person
        await settle(slack, lambda: len(rows(db, "SELECT * FROM feedback")) == 2)
    report = json.loads(await cli(tmp_path, "stats", "--json"))
    assert (report["helpful"], report["not_helpful"]) == (1, 1)
    assert 0 < report["first_sign_ms"][0] <= report["first_words_ms"][0]
    assert report["gaps"] == [{"count": 1, "example": "how do I export my data?"}]
    forgotten = await cli(tmp_path, "forget", "--user", "slack:UASK")
    assert "2 feedback votes" in forgotten  # theirs, and the other vote on the answer to them


async def test_talk_to_a_person_posts_a_summary_and_the_bot_stays_quiet_until_resolved(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Refunds take 5 days."), Reply(text="Glad it's sorted."))
    async with bot_for(tmp_path, slack, anthropic, **ESCALATION):
        thread = await ask(slack, "where is my refund?")
        await answered(slack, "C1", thread)
        [reply] = bot_posts(slack, "C1", thread)
        await slack.click("C1", reply.ts, HANDOFF, user="UASK")
        await settle(slack, lambda: len(slack.messages("C0ESC")) == 1)
        [summary] = slack.messages("C0ESC")
        assert summary.text.startswith("<!subteam^S0TEAM> *Handover:* uask (`UASK`) pressed")
        assert "<@UASK>" not in summary.text  # named, not pinged
        assert "where is my refund?" in summary.text and "Refunds take 5 days." in summary.text
        assert f"https://fake.slack.com/archives/C1/p{thread.replace('.', '')}" in summary.text
        assert buttons(summary) == [RESOLVE]
        await settle(slack, lambda: len(bot_posts(slack, "C1", thread)) == 2)
        told = bot_posts(slack, "C1", thread)[-1].text
        assert told.startswith("I've asked a person from the team to take over")
        # A person answers in the thread; the asker follows up: the bot says nothing.
        await say_in_thread(slack, thread, "Your refund went out today.", user="UAGENT")
        await say_in_thread(slack, thread, "thanks, got it", user="UASK")
        await asyncio.sleep(0.5)
        assert len(bot_posts(slack, "C1", thread)) == 2
        assert len(anthropic.requests) == 1
        # A ✅ from the team on the summary gives the thread back.
        await slack.react("C0ESC", summary.ts, user="UAGENT")
        await settle(slack, lambda: bot_posts(slack, "C1", thread)[-1].text == GIVEN_BACK)
        await settle(slack, lambda: "✅ Resolved by <@UAGENT>." in slack.messages("C0ESC")[0].text)
        assert not buttons(slack.messages("C0ESC")[0])  # no stale Mark resolved
        await say_in_thread(slack, thread, "one more thing: is it in EUR?", user="UASK")
        await answered(slack, "C1", thread, count=4)
    report = json.loads(await cli(tmp_path, "stats", "--json"))
    assert (report["handed_over"], report["resolved_by_person"]) == (1, 1)
    # The person's answer becomes a draft page the team can review and `kb add`.
    wrote = await cli(tmp_path, "kb", "suggest", "--since", "1d", "--out", "drafts")
    [draft] = (tmp_path / "drafts").glob("*.md")
    assert str(draft.name) in wrote and draft.name.endswith("-where-is-my-refund.md")
    page = draft.read_text()
    assert 'title: "where is my refund?"' in page and "Your refund went out today." in page
    assert f"url: https://fake.slack.com/archives/C1/p{thread.replace('.', '')}" in page
    assert "no new threads" in await cli(tmp_path, "kb", "suggest", "--out", "drafts")
    forgotten = await cli(tmp_path, "forget", "--user", "slack:UASK")
    assert "1 kb suggest drafts" in forgotten and not draft.exists()
    history = [message_text(m) for m in anthropic.requests[-1].body["messages"]]
    assert "(A person from the team replied:) Your refund went out today." in "\n".join(history)
    assert "thanks, got it" in "\n".join(history)


async def test_asking_in_words_hands_over_and_mark_resolved_gives_it_back(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="[[HANDOFF]]"))
    async with bot_for(tmp_path, slack, anthropic, **ESCALATION):
        thread = await ask(slack, "je veux parler à un humain")
        text = await answered(slack, "C1", thread)
        assert text.startswith("I've asked a person from the team to take over")
        assert "[[" not in text and not buttons(bot_posts(slack, "C1", thread)[0])
        await settle(slack, lambda: len(slack.messages("C0ESC")) == 1)
        [summary] = slack.messages("C0ESC")
        assert "asked for a person" in summary.text
        await slack.click("C0ESC", summary.ts, RESOLVE, user="UAGENT")
        await settle(slack, lambda: bot_posts(slack, "C1", thread)[-1].text == GIVEN_BACK)
        await settle(slack, lambda: "Resolved by <@UAGENT>" in slack.messages("C0ESC")[0].text)
        assert not buttons(slack.messages("C0ESC")[0])


async def test_without_an_escalation_channel_the_asker_is_told_how_to_reach_the_team(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="[[HANDOFF]]"), Reply(text="Still here to help."))
    contact = "Email help@acme.test and we'll reply within a day."
    async with bot_for(tmp_path, slack, anthropic, SUPPORTBOT_ESCALATION_CONTACT=contact):
        thread = await ask(slack, "get me a human please")
        text = await answered(slack, "C1", thread)
        assert text == f"A person from the team can help with this. {contact}"
        await say_in_thread(slack, thread, "ok, and how do I export?", user="UASK")
        await answered(slack, "C1", thread, count=2)  # nobody was told: the bot stays on
    assert rows(tmp_path / "bot.db", "SELECT state, reason FROM handoffs") == [
        ("not_posted", "words")]


async def test_in_http_mode_signed_clicks_are_taken_and_forged_ones_refused(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Open Settings."))
    bot, url = await http_mode_bot(tmp_path, slack, anthropic)
    try:
        mention = ev.app_mention(f"<@{BOT}> where are the settings?", channel="C1")
        await ev.send_signed_event(url, ev.event_callback(mention), SECRET)
        await answered(slack, "C1", str(mention["ts"]))
        [reply] = bot_posts(slack, "C1", str(mention["ts"]))
        payload = slack.click_payload("C1", reply.ts, HELPFUL, user="UASK")
        forged = await ev.send_signed_interaction(url, payload, SECRET, bad_signature=True)
        signed = await ev.send_signed_interaction(url, payload, SECRET)
        await settle(slack, lambda: rows(tmp_path / "bot.db", "SELECT voter, vote FROM feedback")
                     == [("slack:UASK", 1)])
    finally:
        code = await bot.stop()
    assert (forged.status, signed.status) == (401, 200)
    assert signed.elapsed < 1.0
    assert code == 0, "".join(bot.log)


async def test_a_check_mark_on_the_question_gives_it_back_unless_the_asker_puts_it(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="[[HANDOFF]]"))
    async with bot_for(tmp_path, slack, anthropic, **ESCALATION):
        thread = await ask(slack, "talk to a human please")
        await answered(slack, "C1", thread)
        await slack.react("C1", thread, user="UASK")  # the asker cannot close their own case
        await asyncio.sleep(0.5)
        assert rows(tmp_path / "bot.db", "SELECT state FROM handoffs") == [("open",)]
        await slack.react("C1", thread, user="UAGENT")
        await settle(slack, lambda: bot_posts(slack, "C1", thread)[-1].text == GIVEN_BACK)
        # The summary says so too, and its button goes.
        await settle(slack, lambda: "✅ Resolved by <@UAGENT>." in slack.messages("C0ESC")[0].text)
        assert not buttons(slack.messages("C0ESC")[0])
    assert rows(tmp_path / "bot.db", "SELECT state FROM handoffs") == [("resolved",)]


async def test_only_the_asker_can_hand_their_thread_over_and_a_dm_is_said_to_be_private(
    tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic
) -> None:
    anthropic.script(Reply(text="Refunds take 5 days."), Reply(text="[[HANDOFF]]"))
    async with bot_for(tmp_path, slack, anthropic, **ESCALATION):
        thread = await ask(slack, "where is my refund?")
        await answered(slack, "C1", thread)
        [reply] = bot_posts(slack, "C1", thread)
        await slack.click("C1", reply.ts, HANDOFF, user="UBYSTANDER")
        await settle(slack, lambda: any(e["user"] == "UBYSTANDER" for e in slack.ephemerals))
        assert "Only the person who asked" in slack.ephemerals[-1]["text"]
        assert slack.messages("C0ESC") == [] and len(bot_posts(slack, "C1", thread)) == 1
        dm = ev.message("I want to talk to a human", user="UASK", channel="D1")
        await slack.push_event(dm)
        told = await answered(slack, "D1", str(dm["ts"]))
        assert "This conversation is private, so they'll message you directly" in told
        await settle(slack, lambda: len(slack.messages("C0ESC")) == 1)
        assert "in a direct message with the bot" in slack.messages("C0ESC")[0].text
        assert "I want to talk to a human" in slack.messages("C0ESC")[0].text
