"""SlackSurface and NativeStreamSurface against the local fake Slack, over real sockets."""

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.pacing import SlackPacing, Tiers
from bot.adapters.slack.stream import NativeStreamSurface
from bot.adapters.slack.surface import PLACEHOLDER, ReplyPlace, SlackSurface
from bot.mrkdwn import defuse_markdown, to_mrkdwn
from bot.streaming import TYPING_MARKER, LiveReply
from tests.fakes.slack import FakeSlack

PLACE = ReplyPlace(team="T0001", channel="C1", thread_ts="100.000001", user="U1",
                   message_ts="100.000001")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)


def live_for(surface: SlackSurface | NativeStreamSurface, text: str) -> LiveReply:
    live = LiveReply(surface.limit, surface.render, size=surface.size)
    live.feed(text)
    return live


def texts(fake: FakeSlack) -> list[str]:
    return [m.text for m in fake.messages("C1", PLACE.thread_ts)]


async def test_placeholder_then_edits_then_the_exact_final_text(slack: FakeSlack) -> None:
    pacing = SlackPacing().workspace("T0001")
    surface = SlackSurface(client(slack), PLACE, pacing)
    await surface.start()
    assert texts(slack) == [PLACEHOLDER] and pacing.edits.active == 1
    live = live_for(surface, "First **words**")
    await surface.update(live.take(0.0))
    assert texts(slack) == ["First *words*" + TYPING_MARKER]
    live.feed(" and the rest.")
    await surface.finish(live.final())
    assert texts(slack) == ["First *words* and the rest."]
    assert slack.messages("C1")[0].thread_ts == PLACE.thread_ts
    assert pacing.edits.active == 0  # the reply no longer counts against the budget


async def test_long_answer_continues_in_new_messages_and_leftovers_are_removed(
    slack: FakeSlack,
) -> None:
    surface = SlackSurface(client(slack), PLACE, SlackPacing().workspace("T0001"))
    await surface.start()
    long = "\n\n".join(f"Paragraph {n}: " + "é" * 300 for n in range(15))  # 9,000+ bytes
    snapshot = live_for(surface, long).take(0.0)
    assert len(snapshot.pages) == 3  # the channel's burst allows the two new posts at once
    await surface.update(snapshot)
    assert texts(slack) == list(snapshot.pages)
    short = live_for(surface, "Actually, the short answer.").final()
    await surface.finish(short)
    assert texts(slack) == ["Actually, the short answer."]


async def test_a_leftover_page_whose_delete_is_rate_limited_is_deleted_after_retry_after(
) -> None:
    async with FakeSlack(tier3_limit=2, update_window=1.0) as slack:
        web = client(slack)
        surface = SlackSurface(web, PLACE, SlackPacing().workspace("T0001"))
        await surface.start()
        long = "\n\n".join(f"Paragraph {n}: " + "é" * 300 for n in range(15))
        await surface.update(live_for(surface, long).take(0.0))
        for _ in range(2):  # another reply spent the workspace's chat.delete window
            other = await web.chat_postMessage(channel="C2", text="x")
            await web.chat_delete(channel="C2", ts=str(other["ts"]))
        await surface.finish(live_for(surface, "Actually, the short answer.").final())
        assert slack.count("chat.delete", status=429) >= 1
        assert texts(slack) == ["Actually, the short answer."]  # no stale page left behind


async def test_partial_edits_are_skipped_when_the_budget_is_spent(slack: FakeSlack) -> None:
    pacing = SlackPacing(Tiers(update=2)).workspace("T0001")
    surface = SlackSurface(client(slack), PLACE, pacing)
    await surface.start()
    live = live_for(surface, "one")
    await surface.update(live.take(0.0))
    live.feed(" two")
    await surface.update(live.take(1.0))  # over budget: skipped, not queued
    assert slack.count("chat.update") == 1
    live.feed(" three")
    await surface.finish(live.final())  # the slot kept for the final
    assert texts(slack) == ["one two three"] and slack.count("chat.update") == 2


async def test_ahead_is_awaited_right_before_an_edit_and_never_for_a_skipped_one(
    slack: FakeSlack,
) -> None:
    pacing = SlackPacing(Tiers(update=2)).workspace("T0001")
    surface = SlackSurface(client(slack), PLACE, pacing)
    await surface.start()
    seen: list[list[str]] = []

    async def ahead() -> bool:
        seen.append(texts(slack))  # what the platform shows when the journal is told
        return True

    live = live_for(surface, "one")
    assert await surface.update(live.take(0.0), ahead) is True
    assert seen == [[PLACEHOLDER]] and texts(slack) == ["one" + TYPING_MARKER]
    live.feed(" two")
    assert await surface.update(live.take(1.0), ahead) is False  # no budget: no write
    assert len(seen) == 1

    quiet = replace(PLACE, channel="C3")  # a channel with its post burst unspent
    long = SlackSurface(client(slack), quiet, SlackPacing().workspace("T0003"))
    await long.start()
    told: list[int] = []

    async def counted() -> bool:
        told.append(len(slack.messages("C3", PLACE.thread_ts)))
        return True

    pages = live_for(long, "\n\n".join(f"Paragraph {n}: " + "é" * 300 for n in range(15)))
    snapshot = pages.take(0.0)
    assert len(snapshot.pages) == 3 and await long.update(snapshot, counted) is True
    assert told == [1]  # once, before the edit and the two new pages
    assert len(slack.messages("C3", PLACE.thread_ts)) == 3

    async def refused() -> bool:  # the reply is no longer this instance's to write
        return False

    other = SlackSurface(client(slack), PLACE, SlackPacing().workspace("T0002"))
    await other.start()
    assert await other.update(live_for(other, "never shown").take(0.0), refused) is True
    assert "never shown" not in "".join(texts(slack))


async def test_final_edit_waits_out_a_429_and_lands_exactly() -> None:
    async with FakeSlack(update_limit=1, update_window=1.2) as slack:
        surface = SlackSurface(client(slack), PLACE, SlackPacing().workspace("T0001"))
        await surface.start()
        live = live_for(surface, "partial")
        await surface.update(live.take(0.0))
        live.feed(" and final")
        await surface.finish(live.final())
        assert texts(slack) == ["partial and final"]
        assert slack.rate_limited == 1 and slack.count("chat.update", status=200) == 2


async def test_a_deleted_placeholder_ends_the_reply_instead_of_coming_back(
    slack: FakeSlack,
) -> None:
    # Someone removed the bot's message (a moderator): posting the answer again would
    # overrule them, so the reply stops, after one refused edit.
    web = client(slack)
    surface = SlackSurface(web, PLACE, SlackPacing().workspace("T0001"))
    await surface.start()
    await web.chat_delete(channel="C1", ts=surface.posted[0])
    await surface.finish(live_for(surface, "Still here.").final())
    assert texts(slack) == [] and surface.removed
    assert slack.count("chat.update", error="message_not_found") == 1


async def test_native_stream_appends_and_stops_with_the_exact_markdown() -> None:
    async with FakeSlack(native_streaming=True) as slack:
        surface = NativeStreamSurface(client(slack), PLACE, SlackPacing().workspace("T0001"))
        await surface.start()
        live = live_for(surface, "Tell <!here> about **this** and mo")
        await surface.update(live.take(0.0))
        [msg] = slack.messages("C1")
        assert msg.streaming and msg.text == "Tell <\u200b!here> about **this** and "
        live.feed("re.")
        await surface.finish(live.final())
        [msg] = slack.messages("C1")
        assert msg.text == defuse_markdown(live.text) and not msg.streaming
        assert slack.count("chat.update") == 0


async def test_native_stream_refused_falls_back_to_edits(slack: FakeSlack) -> None:
    pacing = SlackPacing().workspace("T0001")
    surface = NativeStreamSurface(client(slack), PLACE, pacing)
    await surface.start()
    assert pacing.native_off and texts(slack) == [PLACEHOLDER]
    await surface.finish(live_for(surface, "**Done**").final())
    assert texts(slack) == ["*Done*"]


async def test_native_stream_broken_midway_finishes_with_chat_update() -> None:
    async with FakeSlack(native_streaming=True) as slack:
        web = client(slack)
        pacing = SlackPacing().workspace("T0001")
        surface = NativeStreamSurface(web, PLACE, pacing)
        await surface.start()
        assert pacing.appends.active == 1
        live = live_for(surface, "Part one ")
        await surface.update(live.take(0.0))
        await web.chat_stopStream(channel="C1", ts=slack.messages("C1")[0].ts)  # gone stale
        live.feed("and part **two**.")
        await surface.update(live.take(1.0))
        await surface.finish(live.final())
        assert texts(slack) == [to_mrkdwn(live.text)]
        assert slack.count("chat.appendStream", error="message_not_in_streaming_state") == 1
        assert pacing.appends.active == 0  # the broken stream no longer holds a share


async def test_with_the_edit_budget_taken_the_final_is_posted_anew(slack: FakeSlack) -> None:
    pacing = SlackPacing(Tiers(update=1)).workspace("T0001")
    surface = SlackSurface(client(slack), PLACE, pacing)
    await surface.start()
    await pacing.edits.acquire_final(1.0)  # another reply's final took the minute's only edit
    await surface.finish(live_for(surface, "Here it is.").final())
    assert texts(slack) == ["Here it is."]
    assert slack.count("chat.update") == 0 and slack.count("chat.delete") == 1


async def test_when_the_channel_is_busy_a_reaction_comes_first(slack: FakeSlack) -> None:
    slack.add_history("C1", [{"ts": PLACE.message_ts, "text": "question", "user": "U1"}])
    pacing = SlackPacing(Tiers(post_burst=1)).workspace("T0001")
    web = client(slack)
    first = SlackSurface(web, PLACE, pacing)
    await first.start()  # takes the channel's only token
    second = SlackSurface(web, PLACE, pacing)
    await second.start()  # has to wait about a second for the channel: reacts meanwhile
    calls = [c.method for c in slack.calls]
    assert calls == ["chat.postMessage", "reactions.add", "chat.postMessage", "reactions.remove"]
    assert slack.calls[1].time - slack.calls[0].time < 0.15
    assert slack.calls[2].time - slack.calls[0].time >= 0.9
    assert slack.messages("C1")[0].reactions == ()  # removed once the placeholder was up


async def test_buttons_ride_on_the_last_page_or_come_in_their_own_message(
    slack: FakeSlack,
) -> None:
    short = SlackSurface(client(slack), PLACE, SlackPacing().workspace("T0001"))
    await short.start()
    live = live_for(short, "A short answer.")
    live.reply_id = "42"
    await short.finish(live.final())
    [message] = slack.messages("C1", PLACE.thread_ts)
    assert message.blocks is not None and message.blocks[0]["text"]["text"] == "A short answer."
    assert [b["value"] for b in message.blocks[1]["elements"]] == ["42", "42", "42"]
    # A last page longer than a section block (3,000 characters) keeps its text as text.
    other = ReplyPlace("T0001", "C2", "200.000001", "U1", "200.000001")
    long = SlackSurface(client(slack), other, SlackPacing().workspace("T0001"))
    await long.start()
    live = live_for(long, "word " * 700)  # 3,500 characters, one page
    live.reply_id = "43"
    await long.finish(live.final())
    [answer, controls] = slack.messages("C2", other.thread_ts)
    assert answer.text.startswith("word word") and not answer.blocks
    assert controls.blocks is not None and controls.blocks[0]["type"] == "actions"
    assert long.posted == [answer.ts]  # the buttons' message is not a page of the answer
